/* core/bytes: the bounds-checked read cursor the binary readers (eval
 * reference cache, quantized-model files, stats files) share. Reads up to the
 * last byte succeed; one byte more fails with the file, field and offset named
 * and neither the cursor nor the destination changed. */
#include <stdint.h>
#include <string.h>

#include "core/bytes.h"
#include "testlib.h"

int main(void) {
    (void)testlib_shared; /* this test needs no shared files */
    const unsigned char buf[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    ByteReader r;
    bytes_init(&r, buf, sizeof buf, "x.bin");
    CHECK(r.off == 0 && r.n == 11);
    Err err;
    err_init(&err);

    uint32_t u = 0;
    CHECK_OK(bytes_read(&r, &u, 4, "head", &err), err);
    CHECK(u == 0x04030201u && r.off == 4);
    CHECK_OK(bytes_read(&r, NULL, 0, "empty", &err), err);
    CHECK(r.off == 4);

    uint64_t v = 0xdeadbeefull;
    CHECK(bytes_read(&r, &v, 8, "body", &err) == ST_ERR_FORMAT);
    CHECKF(!strcmp(err.detail, "x.bin: truncated at field 'body' (offset 4: need 8 bytes, 7 left)"), "%s", err.detail);
    CHECK(v == 0xdeadbeefull && r.off == 4);

    err_init(&err);
    CHECK_OK(bytes_need(&r, 7, "rest", &err), err);
    CHECK(bytes_need(&r, 8, "rest", &err) == ST_ERR_FORMAT && r.off == 4);
    CHECK(strstr(err.detail, "field 'rest' (offset 4: need 8 bytes, 7 left)") != NULL);

    unsigned char rest[7] = {0};
    CHECK_OK(bytes_read(&r, rest, 7, "rest", &err), err);
    CHECK(r.off == 11 && rest[0] == 5 && rest[6] == 11);
    /* at the end: nothing is left, a huge length must not wrap around */
    CHECK_OK(bytes_need(&r, 0, "end", &err), err);
    CHECK(bytes_need(&r, 1, "end", &err) == ST_ERR_FORMAT);
    CHECK(bytes_need(&r, SIZE_MAX, "end", &err) == ST_ERR_FORMAT);
    CHECK(strstr(err.detail, "0 left") != NULL);

    /* an empty file (a mapping of an empty file has data == NULL) */
    ByteReader e;
    bytes_init(&e, NULL, 0, "empty.bin");
    CHECK(bytes_read(&e, &u, 4, "magic", &err) == ST_ERR_FORMAT);
    CHECK(!strcmp(err.detail, "empty.bin: truncated at field 'magic' (offset 0: need 4 bytes, 0 left)"));
    return testlib_done("test_bytes");
}
