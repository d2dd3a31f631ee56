#include "core/atomicfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AFILE_BUF (1u << 20)

/* === fault injection (tests) === */

static int g_fault_hits;

/* Returns 1 when QS_FAULT_AT names stage and this is its N-th hit (for
 * "enospc-write" the caller fails the write); kills the process otherwise. */
static int fault(const char *stage) {
    const char *env = getenv("QS_FAULT_AT");
    if (!env || !*env) return 0;
    size_t sl = strlen(stage);
    if (strncmp(env, stage, sl) != 0 || (env[sl] != 0 && env[sl] != ':')) return 0;
    int want = env[sl] == ':' ? atoi(env + sl + 1) : 1;
    int hit = __atomic_add_fetch(&g_fault_hits, 1, __ATOMIC_SEQ_CST);
    if (hit != want) return 0;
    if (!strcmp(stage, "enospc-write")) return 1;
    raise(SIGKILL);
    return 0;
}

/* === errors === */

static Status io_err(Err *err, const char *path, const char *what, int e) {
    if (e == ENOSPC || e == EDQUOT)
        return err_set(err, ST_ERR_IO, "%s: %s failed: the disk is full (%s)", path, what,
                       e == ENOSPC ? "ENOSPC" : "EDQUOT: quota exceeded");
    return err_set(err, ST_ERR_IO, "%s: %s failed: %s", path, what, strerror(e));
}

/* "dir/" part of path ("." when none). Caller frees. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

void afile_sync_dir(const char *path) {
    char *dir = dir_of(path);
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* some file systems refuse (EINVAL); the rename stands either way */
        close(fd);
    }
    free(dir);
}

/* === stale temporaries === */

/* Returns the pid when name is "<base>.tmp.<pid>.<6 chars>", else 0. */
static long tmp_owner(const char *name, const char *base) {
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0 || strncmp(name + bl, ".tmp.", 5) != 0) return 0;
    const char *p = name + bl + 5;
    char *end;
    long pid = strtol(p, &end, 10);
    if (end == p || pid <= 0 || *end != '.' || strlen(end + 1) != 6) return 0;
    return pid;
}

/* Removes the temporaries for path left by processes of this user that no
 * longer exist (a kill -9 or power loss mid-write). A live pid keeps its file,
 * so a concurrent writer is never disturbed. */
static void sweep_stale(const char *path) {
    char *dir = dir_of(path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        free(dir);
        return;
    }
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = tmp_owner(e->d_name, base);
        if (!pid || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat sb;
        if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) continue;
        (void)unlinkat(dfd, e->d_name, 0);
    }
    closedir(d);
    free(dir);
}

/* === open / write / commit === */

static uint64_t rnd_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Status afile_open(AtomicFile *af, const char *path, Err *err) {
    memset(af, 0, sizeof *af);
    af->fd = -1;
    size_t n = strlen(path) + 40;
    if (!(af->path = strdup(path)) || !(af->tmp = malloc(n)) || !(af->buf = malloc(AFILE_BUF))) {
        afile_abort(af);
        return err_set(err, ST_ERR_NOMEM, "%s: write buffer", path);
    }
    af->cap = AFILE_BUF;
    sweep_stale(path);
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    static uint64_t counter;
    uint64_t s = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32) ^
                 (uint64_t)(uintptr_t)af ^ __atomic_add_fetch(&counter, 0x632be59bd9b4e019ull, __ATOMIC_RELAXED);
    if (!s) s = 1;
    int e = 0;
    for (int tries = 0; tries < 100; tries++) {
        char sfx[7];
        for (int i = 0; i < 6; i++) sfx[i] = abc[rnd_next(&s) % (sizeof abc - 1)];
        sfx[6] = 0;
        snprintf(af->tmp, n, "%s.tmp.%ld.%s", path, (long)getpid(), sfx);
        af->fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (af->fd >= 0) return ST_OK;
        e = errno;
        if (e != EEXIST) break;
    }
    free(af->tmp);
    af->tmp = NULL;
    Status st = io_err(err, path, "creating a temporary file beside it", e);
    afile_abort(af);
    return st;
}

static Status flush_buf(AtomicFile *af, const unsigned char *p, size_t n, Err *err) {
    while (n > 0) {
        fault("before-write");
        ssize_t w = fault("enospc-write") ? (errno = ENOSPC, -1) : write(af->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return io_err(err, af->tmp, "write", errno);
        }
        fault("after-write");
        p += w;
        n -= (size_t)w;
    }
    return ST_OK;
}

Status afile_write(AtomicFile *af, const void *p, size_t n, Err *err) {
    if (af->fd < 0) return err_set(err, ST_ERR_STATE, "%s: write after close", af->path ? af->path : "?");
    af->written += n;
    if (af->len + n <= af->cap) {
        if (n) memcpy(af->buf + af->len, p, n);
        af->len += n;
        return ST_OK;
    }
    Status st = flush_buf(af, af->buf, af->len, err);
    af->len = 0;
    if (st) {
        close(af->fd);
        af->fd = -1;
        return st;
    }
    if (n >= af->cap) {
        if ((st = flush_buf(af, p, n, err))) {
            close(af->fd);
            af->fd = -1;
        }
        return st;
    }
    memcpy(af->buf, p, n);
    af->len = n;
    return ST_OK;
}

/* Keeps the current path as path.bak: a hard link (no copy, and path itself is
 * never absent), else an fsynced copy; a missing current file is no error. */
static Status keep_backup(const char *path, Err *err) {
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return ST_OK;
    size_t n = strlen(path) + 8;
    char *bak = malloc(n);
    if (!bak) return err_set(err, ST_ERR_NOMEM, "%s", path);
    snprintf(bak, n, "%s.bak", path);
    AtomicFile b;
    Status st = afile_open(&b, bak, err);
    if (!st) {
        /* the fresh temporary name is ours alone: swap it for a link */
        if (unlink(b.tmp) == 0 && link(path, b.tmp) == 0) {
            close(b.fd);
            b.fd = -1;
            if (rename(b.tmp, bak) != 0) {
                st = io_err(err, bak, "rename", errno);
                afile_abort(&b);
            } else {
                free(b.tmp);
                b.tmp = NULL;
                afile_abort(&b);
            }
        } else {
            close(b.fd);
            b.fd = open(b.tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
            FILE *f = b.fd >= 0 ? fopen(path, "rb") : NULL;
            if (!f) {
                st = io_err(err, b.fd < 0 ? b.tmp : path, "copy for the backup", errno);
                afile_abort(&b);
            } else {
                unsigned char chunk[65536];
                size_t r;
                while (!st && (r = fread(chunk, 1, sizeof chunk, f)) > 0) st = afile_write(&b, chunk, r, err);
                if (!st && ferror(f)) st = err_set(err, ST_ERR_IO, "%s: read error", path);
                fclose(f);
                if (st) afile_abort(&b);
                else st = afile_commit(&b, err);
            }
        }
    }
    free(bak);
    return st;
}

Status afile_commit(AtomicFile *af, Err *err) {
    Status st = af->fd < 0 ? err_set(err, ST_ERR_IO, "%s: an earlier write failed", af->path) : ST_OK;
    if (!st) st = flush_buf(af, af->buf, af->len, err);
    af->len = 0;
    if (!st) {
        fault("before-fsync");
        if (fsync(af->fd) != 0) st = io_err(err, af->tmp, "fsync", errno);
        else fault("after-fsync");
    }
    if (af->fd >= 0 && close(af->fd) != 0 && !st) st = io_err(err, af->tmp, "close", errno);
    af->fd = -1;
    if (!st && af->keep_backup) st = keep_backup(af->path, err);
    if (!st) {
        fault("before-rename");
        if (rename(af->tmp, af->path) != 0) {
            st = io_err(err, af->path, "renaming the temporary file into place", errno);
        } else {
            fault("after-rename");
            free(af->tmp);
            af->tmp = NULL;
            afile_sync_dir(af->path);
            fault("after-dirsync");
        }
    }
    afile_abort(af);
    return st;
}

void afile_abort(AtomicFile *af) {
    if (af->fd >= 0) close(af->fd);
    af->fd = -1;
    if (af->tmp) unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    free(af->buf);
    af->tmp = af->path = NULL;
    af->buf = NULL;
    af->len = af->cap = 0;
}

Status afile_save(const char *path, const void *p, size_t n, Err *err) {
    AtomicFile af;
    Status st = afile_open(&af, path, err);
    if (st) return st;
    if ((st = afile_write(&af, p, n, err))) {
        afile_abort(&af);
        return st;
    }
    return afile_commit(&af, err);
}

/* === directories and locks === */

Status afile_private_dir(const char *dir, Err *err) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return io_err(err, dir, "mkdir", errno);
    struct stat sb;
    if (lstat(dir, &sb) != 0) return io_err(err, dir, "stat", errno);
    if (!S_ISDIR(sb.st_mode))
        return err_set(err, ST_ERR_STATE, "%s: exists and is not a directory (a symlink or file planted there?)", dir);
    if (sb.st_uid != geteuid())
        return err_set(err, ST_ERR_STATE, "%s: owned by uid %ld, not by this user (uid %ld); refusing to use it", dir,
                       (long)sb.st_uid, (long)geteuid());
    if (sb.st_mode & (S_IWGRP | S_IWOTH))
        return err_set(err, ST_ERR_STATE, "%s: writable by other users (mode %03o); refusing to use it", dir,
                       (unsigned)(sb.st_mode & 0777));
    return ST_OK;
}

Status afile_lock(const char *path, int wait, int *fd, Err *err) {
    *fd = -1;
    size_t n = strlen(path) + 8;
    char *lp = malloc(n);
    if (!lp) return err_set(err, ST_ERR_NOMEM, "%s", path);
    snprintf(lp, n, "%s.lock", path);
    int f = open(lp, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f < 0) {
        Status st = io_err(err, lp, "opening the lock file", errno);
        free(lp);
        return st;
    }
    while (flock(f, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
        if (errno == EINTR) continue;
        Status st = errno == EWOULDBLOCK ? err_set(err, ST_ERR_STATE, "%s: held by another process", lp)
                                         : io_err(err, lp, "flock", errno);
        close(f);
        free(lp);
        return st;
    }
    free(lp);
    *fd = f;
    return ST_OK;
}

void afile_unlock(int fd) {
    if (fd >= 0) close(fd);
}

Status afile_printf(AtomicFile *af, Err *err, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    if ((size_t)k >= sizeof line) k = (int)sizeof line - 1;
    return afile_write(af, line, (size_t)k, err);
}
