/* Option tables for the subcommands: each command declares its options once
 * (name, kind, bounds, where the value goes, help) and opts_parse() generates
 * the parse loop, the value checks with their messages and the --help text
 * from that table, as the TUI's key table generates its help screen.
 *
 * A table is an array of Opt ended by OPT_END, built where the targets live
 * (a command's locals), e.g.
 *     Opt opts[] = {OPT_STR("--text", &text, "FILE", "text to score"),
 *                   OPT_INT("--ctx", &ctx, 4, 1 << 20, "N", "chunk length"), OPT_END};
 * --help and -h are every command's; `--name=value` is accepted beside `--name value`. */
#ifndef QS_CLI_OPTS_H
#define QS_CLI_OPTS_H

#include <stdint.h>
#include <stdio.h>

typedef enum OptKind {
    OPTK_END = 0, /* ends a table */
    OPTK_STR,     /* the value as given: const char * (borrowed from argv) */
    OPTK_INT,     /* a whole number in [lo, hi]: int64_t */
    OPTK_FLOAT,   /* a number in [dlo, dhi]: double */
    OPTK_FLAG,    /* no value: sets an int to set_to */
    OPTK_ENUM,    /* one of choices' names (any case): int set to that choice's value */
    OPTK_PARSE,   /* a name a library's X_parse() knows (>= 0): int set to what it returns */
    OPTK_FN,      /* the value goes through fn (lists, repeated options, ...) */
} OptKind;

typedef struct OptChoice {
    const char *name;
    int value;
} OptChoice;

typedef struct Opt Opt;

/* An OPTK_FN parser: takes val for option o of command cmd into o->user.
 * Returns 1, or 0 after printing "qscope CMD: OPT: ..." to stderr. */
typedef int (*OptFn)(const char *cmd, const Opt *o, const char *val);

struct Opt {
    const char *name;    /* "--ctx", "-o" */
    const char *alias;   /* another spelling, or NULL */
    OptKind kind;
    const char *metavar; /* the value's placeholder in the help ("N"); NULL for flags */
    const char **str;    /* OPTK_STR */
    int64_t *i64;        /* OPTK_INT */
    int64_t lo, hi;
    double *f64; /* OPTK_FLOAT */
    double dlo, dhi;
    int *flag; /* OPTK_FLAG, OPTK_ENUM, OPTK_PARSE */
    int set_to;
    const OptChoice *choices; /* OPTK_ENUM: ended by {NULL, 0} */
    int (*parse)(const char *s); /* OPTK_PARSE: the value, or < 0 when s is none */
    const char *expect;          /* OPTK_PARSE: what is accepted, for the error ("nearest or f16") */
    OptFn fn;                 /* OPTK_FN */
    void *user;
    /* One or more lines (separated by '\n') printed beside the name in --help;
     * NULL keeps the option out of the help (an option for scripts and docs). */
    const char *help;
    void (*help_more)(FILE *f); /* prints further lines after help, or NULL */
};

#define OPT_STR(nm, var, mv, hl) {.name = (nm), .kind = OPTK_STR, .str = (var), .metavar = (mv), .help = (hl)}
#define OPT_INT(nm, var, l, h, mv, hl) \
    {.name = (nm), .kind = OPTK_INT, .i64 = (var), .lo = (l), .hi = (h), .metavar = (mv), .help = (hl)}
#define OPT_FLOAT(nm, var, l, h, mv, hl) \
    {.name = (nm), .kind = OPTK_FLOAT, .f64 = (var), .dlo = (l), .dhi = (h), .metavar = (mv), .help = (hl)}
#define OPT_FLAG(nm, var, hl) {.name = (nm), .kind = OPTK_FLAG, .flag = (var), .set_to = 1, .help = (hl)}
#define OPT_SET(nm, var, val, hl) {.name = (nm), .kind = OPTK_FLAG, .flag = (var), .set_to = (val), .help = (hl)}
#define OPT_ENUM(nm, var, ch, mv, hl) \
    {.name = (nm), .kind = OPTK_ENUM, .flag = (var), .choices = (ch), .metavar = (mv), .help = (hl)}
#define OPT_PARSE(nm, var, fn, ex, mv, hl) \
    {.name = (nm), .kind = OPTK_PARSE, .flag = (var), .parse = (fn), .expect = (ex), .metavar = (mv), .help = (hl)}
#define OPT_FN(nm, f, u, mv, hl) {.name = (nm), .kind = OPTK_FN, .fn = (f), .user = (u), .metavar = (mv), .help = (hl)}
#define OPT_END {.kind = OPTK_END}

/* The most tables one command combines (its own and shared ones such as the
 * plan options of cli/cmd_plan.h). */
#define OPTS_MAX_TABLES 4

/* A command's whole command line. */
typedef struct OptSpec {
    const char *cmd;   /* in messages: "qscope CMD: ..." ("plan --auto") */
    const char *usage; /* printf-free text printed first by --help: synopsis and description */
    void (*usage_fn)(FILE *f); /* or: prints that text (when it is computed); NULL */
    const Opt *tables[OPTS_MAX_TABLES]; /* searched in order; NULL ends the list */
    const char *epilog;                 /* printed after the options, or NULL */
    /* Positional arguments, in order: targets (NULL-terminated) of up to 4. */
    const char **pos[5];
    /* Further positionals (a list of names, say), one call each; NULL: they are
     * errors. Returns 1, or 0 after printing "qscope CMD: ..." to stderr. */
    int (*more_pos)(const char *cmd, const char *arg, void *user);
    void *more_user;
} OptSpec;

/* opts_parse's answers: go on, stop with exit code 0 (--help printed), stop
 * with exit code 2 (the error printed). */
enum { OPTS_OK = -1, OPTS_EXIT_HELP = 0, OPTS_EXIT_ERR = 2 };

/* Parses argv[1..argc-1] (argv[0] is the command name) by spec's tables,
 * storing every value into its target; targets not named keep what they
 * held (the defaults). Prints --help to stdout, and errors that name the
 * option and the bad value to stderr. Returns OPTS_OK, or the exit code
 * the command returns at once. */
int opts_parse(const OptSpec *spec, int argc, char **argv);

/* Prints spec's usage text, then each option's help line (generated from the
 * tables, 20-column layout), then the epilog. */
void opts_usage(const OptSpec *spec, FILE *f);

/* Prints the help lines of one table (for a shared table's own listing). */
void opts_help_table(const Opt *t, FILE *f);

/* Finds an option by its name or alias in t (ended by OPT_END); NULL when absent. */
const Opt *opts_find(const Opt *t, const char *name);

#endif
