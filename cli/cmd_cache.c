/* qscope cache list|clean: what the cache directory holds (calibration stats,
 * their H files, evaluation references, plan files) and removing it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "core/cache.h"

static void cache_usage(FILE *f) {
    fprintf(f, "usage: qscope cache list [--dir D]\n"
               "       qscope cache clean [KIND ...] [--dir D]\n\n"
               "The cache ($XDG_CACHE_HOME/qscope, else ~/.cache/qscope) holds calibration stats\n"
               "(stats), their H = XᵀX files (H: GBs on a 7B model), evaluation references\n"
               "(reference) and the workbench's plan files (plan). `list` prints every file with its\n"
               "size, largest first, and the totals by kind; `clean` removes the files of the kinds\n"
               "named (default: all). Sizes in MB are 10^6 bytes.\n\n"
               "  --dir D   another cache directory\n");
}

int cmd_cache(int argc, char **argv) {
    const char *dir = NULL;
    const char *verb = NULL;
    int kinds[CACHE_KIND_COUNT] = {0}, any_kind = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cache_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--dir")) {
            if (++i >= argc) {
                fprintf(stderr, "qscope cache: --dir needs a directory\n");
                return 2;
            }
            dir = argv[i];
        } else if (!verb) {
            verb = argv[i];
            if (strcmp(verb, "list") && strcmp(verb, "clean")) {
                fprintf(stderr, "qscope cache: '%s' is not list or clean\n", verb);
                cache_usage(stderr);
                return 2;
            }
        } else if (!strcmp(verb, "clean")) {
            int k = !strcmp(argv[i], "all") ? CACHE_KIND_COUNT : cache_kind_parse(argv[i]);
            if (k < 0) {
                fprintf(stderr, "qscope cache clean: '%s' is not one of stats, H, reference, plan, other, all\n",
                        argv[i]);
                return 2;
            }
            if (k == CACHE_KIND_COUNT)
                for (int j = 0; j < CACHE_KIND_COUNT; j++) kinds[j] = 1;
            else kinds[k] = 1;
            any_kind = 1;
        } else {
            fprintf(stderr, "qscope cache list: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!verb) {
        cache_usage(stderr);
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
