/* qscope cache list|clean: what the cache directory holds (calibration stats,
 * their H files, evaluation references, plan files) and removing it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/cache.h"

static const char CACHE_USAGE[] =
    "usage: qscope cache list [--dir D]\n"
    "       qscope cache clean [KIND ...] [--dir D]\n\n"
    "The cache ($XDG_CACHE_HOME/qscope, else ~/.cache/qscope) holds calibration stats\n"
    "(stats), their H = XᵀX files (H: GBs on a 7B model), evaluation references\n"
    "(reference) and the workbench's plan files (plan). `list` prints every file with its\n"
    "size, largest first, and the totals by kind; `clean` removes the files of the kinds\n"
    "named (default: all). Sizes in MB are 10^6 bytes.\n\n";

typedef struct CacheArgs {
    const char *verb;
    int kinds[CACHE_KIND_COUNT], any_kind;
} CacheArgs;

static int verb_ok(const char *cmd, const char *verb) {
    if (!strcmp(verb, "list") || !strcmp(verb, "clean")) return 1;
    fprintf(stderr, "qscope %s: '%s' is not list or clean\n", cmd, verb);
    return 0;
}

/* The KINDs after `clean`. */
static int take_kind(const char *cmd, const char *arg, void *user) {
    CacheArgs *c = user;
    if (!verb_ok(cmd, c->verb)) return 0;
    if (strcmp(c->verb, "clean")) {
        fprintf(stderr, "qscope %s list: unexpected '%s'\n", cmd, arg);
        return 0;
    }
    int k = !strcmp(arg, "all") ? CACHE_KIND_COUNT : cache_kind_parse(arg);
    if (k < 0) {
        fprintf(stderr, "qscope %s clean: '%s' is not one of stats, H, reference, plan, other, all\n", cmd, arg);
        return 0;
    }
    if (k == CACHE_KIND_COUNT)
        for (int j = 0; j < CACHE_KIND_COUNT; j++) c->kinds[j] = 1;
    else c->kinds[k] = 1;
    c->any_kind = 1;
    return 1;
}

int cmd_cache(int argc, char **argv) {
    const char *dir = NULL;
    CacheArgs ca;
    memset(&ca, 0, sizeof ca);
    const Opt opts[] = {
        OPT_STR("--dir", &dir, "D", "another cache directory"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "cache", .usage = CACHE_USAGE, .tables = {opts}, .pos = {&ca.verb},
                          .more_pos = take_kind, .more_user = &ca};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    const char *verb = ca.verb;
    const int *kinds = ca.kinds, any_kind = ca.any_kind;
    if (!verb || !verb_ok("cache", verb)) {
        opts_usage(&spec, stderr);
        return 2;
    }
    Err err;
    err_init(&err);
    char def[1024];
    if (!dir) {
        if (cache_dir_default(def, sizeof def, &err) != ST_OK) {
            args_print_err("cache", &err);
            return 1;
        }
        dir = def;
    }
    if (!strcmp(verb, "clean")) {
        int64_t n_all = 0;
        size_t b_all = 0;
        for (int k = 0; k < CACHE_KIND_COUNT; k++) {
            if (any_kind && !kinds[k]) continue;
            int64_t n;
            size_t b;
            if (cache_clean(dir, k, &n, &b, &err) != ST_OK) {
                args_print_err("cache", &err);
                return 1;
            }
            if (n) printf("removed %lld %s file%s (%.1f MB)\n", (long long)n, cache_kind_name((CacheKind)k),
                          n == 1 ? "" : "s", b / 1e6);
            n_all += n;
            b_all += b;
        }
        printf("cache %s: removed %lld files, %.1f MB\n", dir, (long long)n_all, b_all / 1e6);
        return 0;
    }
    CacheEntry *e;
    int64_t n;
    if (cache_list(dir, &e, &n, &err) != ST_OK) {
        args_print_err("cache", &err);
        return 1;
    }
    size_t total = 0, kb[CACHE_KIND_COUNT] = {0};
    int64_t kn[CACHE_KIND_COUNT] = {0};
    for (int64_t i = 0; i < n; i++) {
        total += e[i].bytes;
        kb[e[i].kind] += e[i].bytes;
        kn[e[i].kind]++;
    }
    printf("cache %s: %lld files, %.1f MB\n", dir, (long long)n, total / 1e6);
    if (n) printf("  %-9s %14s  %-16s  %s\n", "kind", "bytes", "modified (UTC)", "file");
    for (int64_t i = 0; i < n; i++) {
        char when[32];
        time_t t = (time_t)e[i].mtime;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        printf("  %-9s %14zu  %-16s  %s\n", cache_kind_name(e[i].kind), e[i].bytes, when, e[i].path);
    }
    for (int k = 0; k < CACHE_KIND_COUNT; k++)
        if (kn[k]) printf("%-9s %5lld file%s %10.1f MB\n", cache_kind_name((CacheKind)k), (long long)kn[k],
                          kn[k] == 1 ? " " : "s", kb[k] / 1e6);
    if (n) printf("free it with: qscope cache clean [stats|H|reference|plan]\n");
    free(e);
    return 0;
}
