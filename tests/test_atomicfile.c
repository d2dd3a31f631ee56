/* core/atomicfile.h and the ByteWriter of core/bytes.h: replacement, the
 * backup, symlinks, stale temporaries, every crash point (QS_FAULT_AT kills a
 * child there and the file must be the old or the new one, never a mix),
 * a full disk (injected, and a real 64 KiB tmpfs when mount is allowed),
 * the private cache directory and the entry lock. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/atomicfile.h"
#include "core/bytes.h"
#include "core/hash.h"
#include "tests/testlib.h"

static char g_dir[256];

static const char *tpath(const char *name) {
    return testlib_path(g_dir, name);
}

static unsigned char *slurp(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    CHECK(p && fread(p, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* Entries of g_dir whose name contains ".tmp.". */
static int count_tmps(void) {
    DIR *d = opendir(g_dir);
    CHECK(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void rm_tmps(void) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) unlink(tpath(e->d_name));
    closedir(d);
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((i * 2654435761u + seed) >> 13);
}

static void test_basic(void) {
    Err err;
    err_init(&err);
    const char *p = tpath("a.bin");
    CHECK_OK(afile_save(p, "hello", 5, &err), err);
    size_t n;
    unsigned char *b = slurp(p, &n);
    CHECK(n == 5 && !memcmp(b, "hello", 5));
    free(b);
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && (sb.st_mode & 0777) == (0666 & ~(unsigned)umask(022)));
    /* a replacement with a backup keeps the old bytes as .bak */
    AtomicFile af;
    CHECK_OK(afile_open(&af, p, &err), err);
    af.keep_backup = 1;
    CHECK_OK(afile_write(&af, "world!", 6, &err), err);
    CHECK(count_tmps() == 1);
    CHECK_OK(afile_commit(&af, &err), err);
    b = slurp(p, &n);
    CHECK(n == 6 && !memcmp(b, "world!", 6));
    free(b);
    b = slurp(tpath("a.bin.bak"), &n);
    CHECK(n == 5 && !memcmp(b, "hello", 5));
    free(b);
    CHECK(count_tmps() == 0);
    /* abort leaves nothing and the file alone */
    CHECK_OK(afile_open(&af, p, &err), err);
    CHECK_OK(afile_write(&af, "xx", 2, &err), err);
    afile_abort(&af);
    afile_abort(&af); /* twice is a no-op */
    CHECK(count_tmps() == 0);
    b = slurp(p, &n);
    CHECK(n == 6);
    free(b);
    /* a missing directory is an error naming the path */
    CHECK(afile_save(tpath("nodir/x.bin"), "x", 1, &err) == ST_ERR_IO);
    CHECKF(strstr(err.detail, "nodir/x.bin") && strstr(err.detail, "No such file"), "%s", err.detail);
}

/* The final name a symlink to another file: the link is replaced, its target
 * never written (today's "<out>.tmp" names were opened through planted links). */
static void test_symlink(void) {
    Err err;
    err_init(&err);
    const char *victim = tpath("victim"), *p = tpath("link.bin");
    CHECK_OK(afile_save(victim, "keep", 4, &err), err);
    CHECK(symlink(victim, p) == 0);
    CHECK_OK(afile_save(p, "new", 3, &err), err);
    size_t n;
    unsigned char *b = slurp(victim, &n);
    CHECK(n == 4 && !memcmp(b, "keep", 4));
    free(b);
    struct stat sb;
    CHECK(lstat(p, &sb) == 0 && S_ISREG(sb.st_mode));
}

/* Temporaries of dead processes are reclaimed by the next save of the same
 * path; a live process's temporary and other files' temporaries are kept. */
static void test_stale(void) {
    Err err;
    err_init(&err);
    pid_t dead = fork();
    CHECK(dead >= 0);
    if (dead == 0) _exit(0);
    CHECK(waitpid(dead, NULL, 0) == dead);
    char name[128];
    snprintf(name, sizeof name, "s.bin.tmp.%ld.abcdef", (long)dead);
    CHECK_OK(afile_save(tpath(name), "x", 1, &err), err);
    snprintf(name, sizeof name, "s.bin.tmp.%ld.ghijkl", (long)getppid());
    CHECK_OK(afile_save(tpath(name), "x", 1, &err), err);
    snprintf(name, sizeof name, "other.bin.tmp.%ld.abcdef", (long)dead);
    CHECK_OK(afile_save(tpath(name), "x", 1, &err), err);
    CHECK(count_tmps() == 3);
    CHECK_OK(afile_save(tpath("s.bin"), "y", 1, &err), err);
    CHECK(count_tmps() == 2);
    snprintf(name, sizeof name, "s.bin.tmp.%ld.ghijkl", (long)getppid());
    CHECK(access(tpath(name), F_OK) == 0);
    rm_tmps();
}

/* Runs one save of new (n bytes, 1 MiB writes) over path in a child with
 * QS_FAULT_AT=fault; returns the child's wait status. */
static int crash_save(const char *path, const unsigned char *data, size_t n, const char *fault, int backup) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("QS_FAULT_AT", fault, 1);
        Err e;
        err_init(&e);
        AtomicFile af;
        if (afile_open(&af, path, &e)) _exit(3);
        af.keep_backup = backup;
        for (size_t off = 0; off < n; off += 300000) {
            size_t k = n - off < 300000 ? n - off : 300000;
            if (afile_write(&af, data + off, k, &e)) {
                afile_abort(&af);
                _exit(4);
            }
        }
        _exit(afile_commit(&af, &e) ? 5 : 0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

static void test_crash_points(void) {
    Err err;
    err_init(&err);
    size_t n_old = 1500000, n_new = 2600000; /* three buffer flushes for the new file */
    unsigned char *old = malloc(n_old), *nw = malloc(n_new);
    fill(old, n_old, 1);
    fill(nw, n_new, 2);
    static const char *const stages[] = {"before-write", "after-write", "before-fsync", "after-fsync",
                                         "before-rename", "after-rename", "after-dirsync"};
    char p[512];
    snprintf(p, sizeof p, "%s", tpath("crash.bin"));
    int points = 0;
    for (int backup = 0; backup < 2; backup++)
        for (size_t s = 0; s < sizeof stages / sizeof *stages; s++)
            for (int k = 1; k <= 4; k++) {
                int multi = !strcmp(stages[s], "before-write") || !strcmp(stages[s], "after-write");
                if (k > 1 && !multi) break;
                CHECK_OK(afile_save(p, old, n_old, &err), err);
                char fault[64];
                snprintf(fault, sizeof fault, "%s:%d", stages[s], k);
                int status = crash_save(p, nw, n_new, fault, backup);
                /* writes happen in 1 MiB flushes: the 4th write is never reached */
                if (multi && k == 4) {
                    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s", fault);
                } else {
                    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s: status %d", fault, status);
                }
                points++;
                size_t n;
                unsigned char *b = slurp(p, &n);
                int renamed = !strcmp(stages[s], "after-rename") || !strcmp(stages[s], "after-dirsync") || k == 4;
                if (renamed) CHECKF(b && n == n_new && !memcmp(b, nw, n), "%s: not the new file", fault);
                else CHECKF(b && n == n_old && !memcmp(b, old, n), "%s: not the old file", fault);
                free(b);
                if (backup && (renamed || !strcmp(stages[s], "before-rename"))) {
                    b = slurp(tpath("crash.bin.bak"), &n);
                    CHECKF(b && n == n_old && !memcmp(b, old, n), "%s: .bak is not the old file (%zu bytes)", fault, n);
                    free(b);
                }
                /* the killed writer's temporary is reclaimed by the next save */
                CHECK_OK(afile_save(p, "z", 1, &err), err);
                CHECKF(count_tmps() == 0, "%s: %d temporaries left", fault, count_tmps());
            }
    CHECK(points == 2 * (4 * 2 + 5));
    free(old);
    free(nw);
}

/* A full disk: injected at the first write, and for real on a 64 KiB tmpfs. */
static void check_enospc(const char *p, size_t n, const char *fault) {
    Err err;
    err_init(&err);
    CHECK_OK(afile_save(p, "old", 3, &err), err);
    unsigned char *big = calloc(1, n);
    if (fault) setenv("QS_FAULT_AT", fault, 1);
    Status st = afile_save(p, big, n, &err);
    unsetenv("QS_FAULT_AT");
    free(big);
    CHECK(st == ST_ERR_IO);
    CHECKF(strstr(err.detail, "the disk is full (ENOSPC)") && strstr(err.detail, ".tmp."), "%s", err.detail);
    size_t len;
    unsigned char *b = slurp(p, &len);
    CHECK(len == 3 && !memcmp(b, "old", 3));
    free(b);
}

static void test_disk_full(void) {
    check_enospc(tpath("full.bin"), 3u << 20, "enospc-write:1");
    CHECK(count_tmps() == 0);
    char mnt[300];
    snprintf(mnt, sizeof mnt, "%s/tmpfs", g_dir);
    CHECK(mkdir(mnt, 0700) == 0);
    if (mount("qs-test", mnt, "tmpfs", 0, "size=64k") != 0) {
        printf("test_atomicfile: note: real disk-full test skipped (mount tmpfs: %s; needs root)\n", strerror(errno));
        rmdir(mnt);
        return;
    }
    char p[400];
    snprintf(p, sizeof p, "%s/full.bin", mnt);
    check_enospc(p, 200000, NULL);
    DIR *d = opendir(mnt);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    CHECK(n == 1); /* only full.bin: the temporary is gone */
    CHECK(umount(mnt) == 0);
    rmdir(mnt);
}

static void test_private_dir(void) {
    Err err;
    err_init(&err);
    const char *d = tpath("cache");
    CHECK_OK(afile_private_dir(d, &err), err);
    struct stat sb;
    CHECK(stat(d, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    CHECK_OK(afile_private_dir(d, &err), err); /* exists: fine */
    CHECK(chmod(d, 0777) == 0);
    CHECK(afile_private_dir(d, &err) == ST_ERR_STATE);
    CHECKF(strstr(err.detail, "writable by other users"), "%s", err.detail);
    const char *l = tpath("cache-link");
    CHECK(symlink(d, l) == 0);
    CHECK(afile_private_dir(l, &err) == ST_ERR_STATE);
    CHECKF(strstr(err.detail, "not a directory"), "%s", err.detail);
    if (geteuid() == 0) { /* root can plant a directory owned by someone else */
        const char *o = tpath("cache-other");
        CHECK(mkdir(o, 0700) == 0 && chown(o, 12345, 12345) == 0);
        CHECK(afile_private_dir(o, &err) == ST_ERR_STATE);
        CHECKF(strstr(err.detail, "owned by uid 12345"), "%s", err.detail);
    }
}

static void test_lock(void) {
    Err err;
    err_init(&err);
    int fd;
    const char *p = tpath("entry.qsst");
    CHECK_OK(afile_lock(p, 1, &fd, &err), err);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int f2;
        Err e;
        err_init(&e);
        Status st = afile_lock(p, 0, &f2, &e);
        _exit(st == ST_ERR_STATE && strstr(e.detail, "held by another process") ? 0 : 1);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    afile_unlock(fd);
    CHECK_OK(afile_lock(p, 0, &fd, &err), err);
    afile_unlock(fd);
    afile_unlock(-1);
}

/* ByteWriter: little-endian numbers, the hash of everything before it. */
static void test_byte_writer(void) {
    Err err;
    err_init(&err);
    const char *p = tpath("bw.bin");
    AtomicFile af;
    CHECK_OK(afile_open(&af, p, &err), err);
    ByteWriter w;
    bytes_writer_init(&w, &af, &err);
    bytes_put(&w, "QS", 2);
    bytes_put_u8(&w, 7);
    bytes_put_u32(&w, 0x01020304u);
    bytes_put_i32(&w, -2);
    bytes_put_u64(&w, 0x1122334455667788ull);
    bytes_put_i64(&w, -3);
    bytes_put_f32(&w, 1.5f);
    bytes_put_f64(&w, -0.25);
    CHECK_OK(bytes_put_hash(&w), err);
    CHECK_OK(afile_commit(&af, &err), err);
    static const unsigned char want[] = {'Q', 'S', 7, 4, 3, 2, 1, 0xfe, 0xff, 0xff, 0xff, 0x88, 0x77, 0x66, 0x55,
                                         0x44, 0x33, 0x22, 0x11, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0, 0, 0xc0, 0x3f, 0, 0, 0, 0, 0, 0, 0xd0, 0xbf};
    size_t n;
    unsigned char *b = slurp(p, &n);
    CHECK(n == sizeof want + 8 && !memcmp(b, want, sizeof want));
    uint64_t h = hash_bytes(HASH_SEED, want, sizeof want), got = 0;
    for (int i = 0; i < 8; i++) got |= (uint64_t)b[sizeof want + (size_t)i] << (8 * i);
    CHECK(got == h);
    free(b);
    /* a failure sticks and names the file */
    CHECK_OK(afile_open(&af, p, &err), err);
    bytes_writer_init(&w, &af, &err);
    CHECK(bytes_fail(&w, ST_ERR_NOMEM, "packing codes") == ST_ERR_NOMEM);
    bytes_put_u32(&w, 1);
    CHECK(bytes_put_hash(&w) == ST_ERR_NOMEM);
    CHECKF(strstr(err.detail, "bw.bin: packing codes"), "%s", err.detail);
    afile_abort(&af);
    b = slurp(p, &n);
    CHECK(n == sizeof want + 8);
    free(b);
}

int main(void) {
    (void)testlib_shared;
    snprintf(g_dir, sizeof g_dir, "/tmp/qs-test-atomicfile-%ld", (long)getpid());
    CHECK(mkdir(g_dir, 0700) == 0);
    test_basic();
    test_symlink();
    test_stale();
    test_crash_points();
    test_disk_full();
    test_private_dir();
    test_lock();
    test_byte_writer();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    CHECK(system(cmd) == 0);
    return testlib_done("test_atomicfile");
}
