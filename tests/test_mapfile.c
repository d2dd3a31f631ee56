/* core/mapfile: mapping a file and mapfile_prefault (the weights' page-in
 * before a forward pass). A fresh mapping has nothing resident in this
 * process (the Rss of its /proc/self/smaps entry is 0 kB); after a prefault
 * all of it is, and the bytes are the file's. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "testlib.h"

/* Rss in kB of the mapping that starts at p (from /proc/self/smaps), -1 if not found. */
static long mapping_rss_kb(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0;
    long rss = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ' ') && !strncmp(strchr(line, ' ') + 1, "r", 1)) {
            in = lo == (unsigned long)(uintptr_t)p;
            continue;
        }
        if (in && sscanf(line, "Rss: %ld kB", &rss) == 1) break;
    }
    fclose(f);
    return rss;
}

int main(void) {
    (void)testlib_shared;
    Err err;
    err_init(&err);
    char path[] = "/tmp/qs_test_mapfile_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const size_t n = (size_t)8 << 20; /* 8 MB: 2048 pages */
    unsigned char *buf = malloc(n);
    CHECK(buf != NULL);
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 2654435761u >> 13);
    CHECK(write(fd, buf, n) == (ssize_t)n);
    close(fd);

    MappedFile mf;
    CHECK_OK(mapfile_open(&mf, path, &err), err);
    CHECK(mf.size == n);
    CHECK(mapping_rss_kb(mf.data) == 0); /* nothing touched yet */
    mapfile_prefault(NULL, 0);           /* no-op */
    mapfile_prefault(mf.data, 0);        /* no-op */
    CHECK(mapping_rss_kb(mf.data) == 0);
    /* An unaligned range inside the mapping: the whole pages around it are populated. */
    mapfile_prefault(mf.data + 100, n - 200);
    long rss = mapping_rss_kb(mf.data);
#ifdef MADV_POPULATE_READ
    /* Only when this kernel knows MADV_POPULATE_READ (5.14+); otherwise
     * mapfile_prefault is documented as a no-op. */
    if (madvise((void *)mf.data, 4096, MADV_POPULATE_READ) == 0) {
        printf("resident after mapfile_prefault: %ld of %zu kB\n", rss, n >> 10);
        CHECKF(rss == (long)(n >> 10), "Rss %ld kB after prefaulting %zu kB", rss, n >> 10);
    } else {
        printf("MADV_POPULATE_READ unsupported here: residency not checked (%ld kB)\n", rss);
    }
#endif
    CHECK(memcmp(mf.data, buf, n) == 0);
    /* mapfile_release: the pages lying wholly inside the range leave this
     * process, and read back the same bytes. (The two edge pages are not
     * released, but the kernel may unmap them too: a file page mapped as part
     * of a huge page is unmapped with it, to be faulted back.) */
    long pg = sysconf(_SC_PAGESIZE);
    CHECK(mapping_rss_kb(mf.data) > 0);
    CHECK(mapfile_release(mf.data + 100, n - 200) == n - 2 * (size_t)pg);
    CHECKF(mapping_rss_kb(mf.data) <= 2 * pg / 1024, "Rss %ld kB after releasing all but the edge pages",
           mapping_rss_kb(mf.data));
    CHECK(mapfile_release(mf.data + 100, (size_t)pg) == 0); /* within two pages, none of them whole */
    CHECK(mapfile_release(mf.data, n) == n);
    CHECKF(mapping_rss_kb(mf.data) == 0, "Rss %ld kB after mapfile_release", mapping_rss_kb(mf.data));
    CHECK(memcmp(mf.data, buf, n) == 0);
    /* a read-only shared mapping of the file (the H store's) is released too */
    int sfd = open(path, O_RDONLY);
    CHECK(sfd >= 0);
    unsigned char *sh = mmap(NULL, n, PROT_READ, MAP_SHARED, sfd, 0);
    CHECK(sh != MAP_FAILED);
    CHECK(memcmp(sh, buf, n) == 0 && mapping_rss_kb(sh) > 0);
    CHECK(mapfile_release(sh, n) == n);
    CHECKF(mapping_rss_kb(sh) == 0, "Rss %ld kB of the shared mapping after mapfile_release", mapping_rss_kb(sh));
    CHECK(memcmp(sh, buf, n) == 0);
    munmap(sh, n);
    close(sfd);
    /* ... but heap memory is never released (MADV_DONTNEED would zero it) */
    unsigned char *heap = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(heap != MAP_FAILED);
    memcpy(heap, buf, n);
    CHECK(mapfile_release(heap, n) == 0 && memcmp(heap, buf, n) == 0);
    munmap(heap, n);
    CHECK(mapfile_release(NULL, n) == 0 && mapfile_release(buf, 0) == 0);
    mapfile_close(&mf);
    unlink(path);
    free(buf);
    return testlib_done("test_mapfile");
}
