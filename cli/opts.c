#include "cli/opts.h"

#include <string.h>
#include <strings.h>

#include "cli/args.h"

#define HELP_COL 20 /* the column help text starts in */

const Opt *opts_find(const Opt *t, const char *name) {
    for (; t && t->kind != OPTK_END; t++)
        if (!strcmp(t->name, name) || (t->alias && !strcmp(t->alias, name))) return t;
    return NULL;
}

/* The option argv[i] names (as `--name` or `--name=value`) in spec, or NULL;
 * *eq points at the '=' of the second form, else NULL. */
static const Opt *find_arg(const OptSpec *spec, const char *a, const char **eq) {
    *eq = NULL;
    for (int k = 0; k < OPTS_MAX_TABLES && spec->tables[k]; k++) {
        const Opt *o = opts_find(spec->tables[k], a);
        if (o) return o;
    }
    const char *e = strchr(a, '=');
    if (!e || e == a) return NULL;
    char name[64];
    size_t n = (size_t)(e - a);
    if (n >= sizeof name) return NULL;
    memcpy(name, a, n);
    name[n] = '\0';
    for (int k = 0; k < OPTS_MAX_TABLES && spec->tables[k]; k++) {
        const Opt *o = opts_find(spec->tables[k], name);
        if (o && o->kind != OPTK_FLAG) {
            *eq = e;
            return o;
        }
    }
    return NULL;
}

static int take_enum(const char *cmd, const Opt *o, const char *val) {
    for (const OptChoice *c = o->choices; c->name; c++)
        if (!strcasecmp(c->name, val)) {
            *o->flag = c->value;
            return 1;
        }
    fprintf(stderr, "qscope %s: %s: '%s' is not one of ", cmd, o->name, val);
    for (const OptChoice *c = o->choices; c->name; c++) fprintf(stderr, "%s%s", c == o->choices ? "" : ", ", c->name);
    fputc('\n', stderr);
    return 0;
}

/* Stores val into o's target; 1, or 0 after printing the error. */
static int take(const char *cmd, const Opt *o, const char *val) {
    switch (o->kind) {
    case OPTK_STR: *o->str = val; return 1;
    case OPTK_INT: return args_int(cmd, o->name, val, o->lo, o->hi, o->i64);
    case OPTK_FLOAT: return args_double(cmd, o->name, val, o->dlo, o->dhi, o->f64);
    case OPTK_ENUM: return take_enum(cmd, o, val);
    case OPTK_PARSE: {
        int v = o->parse(val);
        if (v < 0) {
            fprintf(stderr, "qscope %s: %s: '%s' is not %s\n", cmd, o->name, val, o->expect);
            return 0;
        }
        *o->flag = v;
        return 1;
    }
    case OPTK_FN: return o->fn(cmd, o, val);
    case OPTK_FLAG:
    case OPTK_END: break;
    }
    return 0;
}

int opts_parse(const OptSpec *spec, int argc, char **argv) {
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            opts_usage(spec, stdout);
            return OPTS_EXIT_HELP;
        }
        /* a lone "-" is an argument (stdin's usual name), not an option */
        const Opt *o = a[0] == '-' && a[1] ? find_arg(spec, a, &eq) : NULL;
        if (o && o->kind == OPTK_FLAG) {
            *o->flag = o->set_to;
        } else if (o) {
            const char *val = eq ? eq + 1 : NULL;
            if (!val && i + 1 >= argc) {
                fprintf(stderr, "qscope %s: option %s needs a value (%s)\n", spec->cmd, o->name,
                        o->metavar ? o->metavar : "a value");
                return OPTS_EXIT_ERR;
            }
            if (!val) val = argv[++i];
            if (!take(spec->cmd, o, val)) return OPTS_EXIT_ERR;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "qscope %s: unknown option '%s' (try qscope %s --help)\n", spec->cmd, a, spec->cmd);
            return OPTS_EXIT_ERR;
        } else if (n_pos < 4 && spec->pos[n_pos]) {
            *spec->pos[n_pos++] = a;
        } else if (spec->more_pos) {
            if (!spec->more_pos(spec->cmd, a, spec->more_user)) return OPTS_EXIT_ERR;
        } else {
            fprintf(stderr, "qscope %s: unexpected argument '%s'\n", spec->cmd, a);
            return OPTS_EXIT_ERR;
        }
    }
    return OPTS_OK;
}

void opts_help_table(const Opt *t, FILE *f) {
    for (; t && t->kind != OPTK_END; t++) {
        if (!t->help) continue;
        char head[96];
        int n = snprintf(head, sizeof head, "  %s%s%s", t->name, t->metavar ? " " : "", t->metavar ? t->metavar : "");
        const char *h = t->help;
        if (n >= HELP_COL) fprintf(f, "%s\n%*s", head, HELP_COL, "");
        else fprintf(f, "%-*s", HELP_COL, head);
        for (;;) {
            const char *nl = strchr(h, '\n');
            if (!nl) {
                fprintf(f, "%s\n", h);
                break;
            }
            fprintf(f, "%.*s\n%*s", (int)(nl - h), h, HELP_COL, "");
            h = nl + 1;
        }
        if (t->help_more) t->help_more(f);
    }
}

void opts_usage(const OptSpec *spec, FILE *f) {
    if (spec->usage) fputs(spec->usage, f);
    if (spec->usage_fn) spec->usage_fn(f);
    for (int k = 0; k < OPTS_MAX_TABLES && spec->tables[k]; k++) opts_help_table(spec->tables[k], f);
    if (spec->epilog) fputs(spec->epilog, f);
}
