#include "core/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

void mapfile_prefault(const void *addr, size_t len) {
#ifdef MADV_POPULATE_READ
    if (!addr || len == 0) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = (uintptr_t)addr, b = a + len;
    a &= ~(uintptr_t)(pg - 1);
    (void)madvise((void *)a, b - a, MADV_POPULATE_READ);
#else
    (void)addr;
    (void)len;
#endif
}

void mapfile_willneed(const void *addr, size_t len) {
    if (!addr || len == 0) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = (uintptr_t)addr & ~(uintptr_t)(pg - 1), b = (uintptr_t)addr + len;
    (void)madvise((void *)a, b - a, MADV_WILLNEED);
}

size_t mapfile_release(const void *addr, size_t len) {
    if (!addr || len == 0) return 0;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return 0;
    /* whole pages only: the bytes before and after may still be in use */
    uintptr_t a = ((uintptr_t)addr + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1),
              b = ((uintptr_t)addr + len) & ~(uintptr_t)(pg - 1);
    if (b <= a) return 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[4096];
    size_t done = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, inode;
        char perm[8];
        unsigned dmaj, dmin;
        if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perm, &off, &dmaj, &dmin, &inode) != 7) continue;
        if (hi <= a || lo >= b) continue;
        /* read-only (private or shared) and backed by a file: the pages are
         * clean copies of the file's, which the page cache keeps */
        if (inode == 0 || (strcmp(perm, "r--p") != 0 && strcmp(perm, "r--s") != 0)) continue;
        uintptr_t s = a > lo ? a : lo, e = b < hi ? b : hi;
        if (e > s && madvise((void *)s, e - s, MADV_DONTNEED) == 0) done += e - s;
    }
    fclose(f);
    return done;
}

Status mapfile_open(MappedFile *mf, const char *path, Err *err) {
    memset(mf, 0, sizeof *mf);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(err, ST_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, ST_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, ST_ERR_IO, "%s: not a regular file", path);
    }
    mf->path = core_strdup(path);
    if (!mf->path) { close(fd); return err_set(err, ST_ERR_NOMEM, "%s", path); }
    mf->size = (size_t)st.st_size;
    if (mf->size > 0) {
        void *p = mmap(NULL, mf->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(mf->path);
            memset(mf, 0, sizeof *mf);
            return err_set(err, ST_ERR_IO, "%s: mmap: %s", path, strerror(e));
        }
        mf->data = p;
    }
    close(fd);
    return ST_OK;
}

void mapfile_close(MappedFile *mf) {
    if (!mf) return;
    if (mf->data) munmap((void *)mf->data, mf->size);
    free(mf->path);
    memset(mf, 0, sizeof *mf);
}

Status file_read_all(const char *path, size_t max_bytes, char **out, size_t *len, Err *err) {
    *out = NULL;
    if (len) *len = 0;
    /* a directory fails its first read ("read error"), /dev/zero would be read
     * up to max_bytes and a FIFO blocks the open: only regular files are files
     * here (O_NONBLOCK so a FIFO is refused, not waited on) */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return err_set(err, ST_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb = {0};
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(err, ST_ERR_IO, "%s: %s, not a regular file", path,
                       S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO" : S_ISCHR(sb.st_mode) ? "a device" : "a special file");
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return err_set(err, ST_ERR_NOMEM, "%s", path);
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 65536 * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) { free(buf); fclose(f); return err_set(err, ST_ERR_NOMEM, "%s", path); }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, 65536, f);
        n += r;
        if (n > max_bytes) {
            free(buf);
            fclose(f);
            return err_set(err, ST_ERR_RANGE, "%s: larger than %zu bytes", path, max_bytes);
        }
        if (r < 65536) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return err_set(err, ST_ERR_IO, "%s: read error", path); }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return ST_OK;
}
