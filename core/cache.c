/* The cache directory: where it is, what it holds, cleaning it (see cache.h). */
#include "core/atomicfile.h"
#include "core/cache.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cache_kind_name(CacheKind k) {
    static const char *const n[CACHE_KIND_COUNT] = {"stats", "H", "reference", "plan", "other"};
    return (unsigned)k < CACHE_KIND_COUNT ? n[k] : "?";
}

int cache_kind_parse(const char *s) {
    for (int k = 0; k < CACHE_KIND_COUNT; k++)
        if (strcasecmp(s, cache_kind_name((CacheKind)k)) == 0) return k;
    return -1;
}

static int mkdir_p(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

Status cache_dir_default(char *buf, size_t n, Err *err) {
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (x && *x) snprintf(buf, n, "%s/qscope", x);
    else if (h && *h) snprintf(buf, n, "%s/.cache/qscope", h);
    else {
        /* a shared place: the directory must be ours and private (core/atomicfile.h) */
        snprintf(buf, n, "/tmp/qscope-cache-%d", (int)getuid());
        return afile_private_dir(buf, err);
    }
    if (mkdir_p(buf) != 0) return err_set(err, ST_ERR_IO, "%s: cannot create the cache directory: %s", buf, strerror(errno));
    return ST_OK;
}

static CacheKind kind_of(const char *rel) {
    size_t l = strlen(rel);
    if (strncmp(rel, "plans/", 6) == 0) return CACHE_PLAN;
    if (l > 4 && strcmp(rel + l - 4, ".h64") == 0) return CACHE_H;
    if (strncmp(rel, "stats-", 6) == 0) return CACHE_STATS;
    if (strncmp(rel, "evalref-", 8) == 0) return CACHE_REF;
    return CACHE_OTHER;
}

static int by_size(const void *a, const void *b) {
    const CacheEntry *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : strcmp(x->path, y->path);
}

/* Appends the regular files of dir/sub ("" or "plans") to *out. */
static Status list_dir(const char *dir, const char *sub, CacheEntry **out, int64_t *n, int64_t *cap, Err *err) {
    char d[1024];
    snprintf(d, sizeof d, "%s%s%s", dir, sub[0] ? "/" : "", sub);
    DIR *dp = opendir(d);
    if (!dp) return errno == ENOENT ? ST_OK : err_set(err, ST_ERR_IO, "%s: %s", d, strerror(errno));
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (de->d_name[0] == '.') continue;
        char full[2048];
        snprintf(full, sizeof full, "%s/%s", d, de->d_name);
        struct stat st;
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (*n == *cap) {
            int64_t c = *cap ? 2 * *cap : 32;
            CacheEntry *g = realloc(*out, (size_t)c * sizeof *g);
            if (!g) {
                closedir(dp);
                return err_set(err, ST_ERR_NOMEM, "%s: listing", d);
            }
            *out = g;
            *cap = c;
        }
        CacheEntry *e = &(*out)[(*n)++];
        snprintf(e->path, sizeof e->path, "%s%s%s", sub, sub[0] ? "/" : "", de->d_name);
        e->kind = kind_of(e->path);
        e->bytes = (size_t)st.st_size;
        e->mtime = (int64_t)st.st_mtime;
    }
    closedir(dp);
    return ST_OK;
}

Status cache_list(const char *dir, CacheEntry **out, int64_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    int64_t cap = 0;
    Status st = list_dir(dir, "", out, n, &cap, err);
    if (st == ST_OK) st = list_dir(dir, "plans", out, n, &cap, err);
    if (st != ST_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
        return st;
    }
    if (*n) qsort(*out, (size_t)*n, sizeof **out, by_size);
    return ST_OK;
}

size_t cache_total_bytes(const char *dir) {
    CacheEntry *e;
    int64_t n;
    Err err;
    err_init(&err);
    if (cache_list(dir, &e, &n, &err) != ST_OK) return 0;
    size_t t = 0;
    for (int64_t i = 0; i < n; i++) t += e[i].bytes;
    free(e);
    return t;
}

Status cache_clean(const char *dir, int k, int64_t *removed, size_t *bytes, Err *err) {
    CacheEntry *e;
    int64_t n;
    if (removed) *removed = 0;
    if (bytes) *bytes = 0;
    Status st = cache_list(dir, &e, &n, err);
    if (st != ST_OK) return st;
    for (int64_t i = 0; i < n; i++) {
        if (k >= 0 && (int)e[i].kind != k) continue;
        char full[2048];
        snprintf(full, sizeof full, "%s/%s", dir, e[i].path);
        if (unlink(full) != 0) {
            st = err_set(err, ST_ERR_IO, "%s: cannot remove: %s", full, strerror(errno));
            break;
        }
        if (removed) (*removed)++;
        if (bytes) *bytes += e[i].bytes;
    }
    free(e);
    return st;
}
