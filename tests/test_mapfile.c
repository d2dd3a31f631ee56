/* core/mapfile: mapping a file and mapfile_prefault (the weights' page-in
 * before a forward pass). After a prefault, reading every page of the mapping
 * must take (almost) no page faults, and the bytes must be the file's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "testlib.h"

static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
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
    /* An unaligned range inside the mapping: the whole pages around it are populated. */
    mapfile_prefault(mf.data + 100, n - 200);
    mapfile_prefault(NULL, 0); /* no-op */
    long f0 = minor_faults();
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i += 4096) sum += mf.data[i];
    long faults = minor_faults() - f0;
    CHECK(memcmp(mf.data, buf, n) == 0);
    CHECK(sum > 0);
#ifdef MADV_POPULATE_READ
    /* Only when this kernel knows MADV_POPULATE_READ (5.14+); otherwise
     * mapfile_prefault is documented as a no-op. */
    if (madvise((void *)mf.data, 4096, MADV_POPULATE_READ) == 0) {
        printf("page faults reading 2048 prefaulted pages: %ld\n", faults);
        CHECKF(faults <= 8, "%ld page faults after mapfile_prefault", faults);
    } else {
        printf("MADV_POPULATE_READ unsupported here: fault count not checked (%ld)\n", faults);
    }
#endif
    mapfile_close(&mf);
    unlink(path);
    free(buf);
    return testlib_done("test_mapfile");
}
