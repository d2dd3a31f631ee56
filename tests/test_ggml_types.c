/* ggml storage types: each block layout is built here from chosen quants and
 * scales (the encoder's view, written independently of the decoder), then
 * decoded and checked element by element; reference quantizers are checked
 * against derived error bounds and, byte for byte, against the tensors
 * llama.cpp's llama-quantize wrote into the shared stories260K files. */
#include <stdint.h>
#include <string.h>

#include "core/fpconv.h"
#include "model/gguf.h"
#include "quant/ggml_type.h"
#include "tests/testlib.h"

static uint64_t lcg_state = 12345;

static uint32_t lcg(void) {
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(lcg_state >> 33);
}

static void put_f16(unsigned char *p, float f) {
    uint16_t h = f32_to_fp16(f);
    p[0] = (unsigned char)h;
    p[1] = (unsigned char)(h >> 8);
}

static void dequant(uint32_t type, const void *blk, float *out, int64_t n) {
    const GgmlTypeTraits *t = ggml_type_traits(type);
    CHECK(t != NULL && t->dequant != NULL);
    t->dequant(blk, out, n);
}

/* === traits === */

static void test_traits(void) {
    static const struct { uint32_t type; const char *name; int64_t bs; size_t bb; } want[] = {
        {GGML_F32, "F32", 1, 4}, {GGML_F16, "F16", 1, 2}, {GGML_BF16, "BF16", 1, 2},
        {GGML_Q4_0, "Q4_0", 32, 18}, {GGML_Q4_1, "Q4_1", 32, 20}, {GGML_Q5_0, "Q5_0", 32, 22},
        {GGML_Q5_1, "Q5_1", 32, 24}, {GGML_Q8_0, "Q8_0", 32, 34}, {GGML_Q2_K, "Q2_K", 256, 84},
        {GGML_Q3_K, "Q3_K", 256, 110}, {GGML_Q4_K, "Q4_K", 256, 144}, {GGML_Q5_K, "Q5_K", 256, 176},
        {GGML_Q6_K, "Q6_K", 256, 210}, {GGML_Q8_K, "Q8_K", 256, 292},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const GgmlTypeTraits *t = ggml_type_traits(want[i].type);
        CHECK(t != NULL);
        CHECK(strcmp(t->name, want[i].name) == 0);
        CHECK(t->block_size == want[i].bs);
        CHECK(t->block_bytes == want[i].bb);
    }
    CHECK(ggml_type_traits(4) == NULL); /* Q4_2, removed from ggml */
    CHECK(ggml_type_traits(99) == NULL);
    CHECK(ggml_type_traits(GGML_Q8_1) == NULL); /* never stored in model files */
    CHECK(ggml_row_bytes(GGML_Q4_0, 64) == 36);
    CHECK(ggml_row_bytes(GGML_Q4_0, 33) == 0);
    CHECK(ggml_row_bytes(GGML_Q6_K, 4096) == 16 * 210);
    CHECK(ggml_row_bytes(GGML_F32, 5) == 20);
    CHECK(ggml_row_bytes(99, 32) == 0);
    CHECK(ggml_row_bytes(GGML_F32, INT64_MAX) == 0); /* overflow */
}

/* === plain floats === */

static void test_float_types(void) {
    float src[8] = {0.0f, 1.0f, -2.5f, 65504.0f, 1e-3f, -0.1f, 3.140625f, 1.0f / 3.0f};
    unsigned char buf[32];
    float out[8];
    const GgmlTypeTraits *f16 = ggml_type_traits(GGML_F16), *bf = ggml_type_traits(GGML_BF16);
    f16->quant_ref(src, buf, 8);
    CHECK(buf[2] == 0x00 && buf[3] == 0x3C); /* 1.0 = 0x3C00 little-endian */
    f16->dequant(buf, out, 8);
    for (int i = 0; i < 8; i++) CHECK_NEAR(out[i], src[i], fabsf(src[i]) * 0x1p-11f + 1e-7);
    CHECK(out[3] == 65504.0f && out[6] == 3.140625f);
    bf->quant_ref(src, buf, 8);
    CHECK(buf[2] == 0x80 && buf[3] == 0x3F); /* 1.0 = 0x3F80 */
    bf->dequant(buf, out, 8);
    for (int i = 0; i < 8; i++) CHECK_NEAR(out[i], src[i], fabsf(src[i]) * 0x1p-8f);
    ggml_type_traits(GGML_F32)->dequant(src, out, 8);
    CHECK(memcmp(out, src, sizeof src) == 0);
}

/* === 32-element blocks === */

static void test_q4_0_q4_1(void) {
    unsigned char b[20];
    float out[32];
    int q[32];
    for (int i = 0; i < 32; i++) q[i] = (int)(lcg() % 16);
    put_f16(b, 0.5f);
    for (int j = 0; j < 16; j++) b[2 + j] = (unsigned char)(q[j] | (q[j + 16] << 4));
    dequant(GGML_Q4_0, b, out, 32);
    for (int i = 0; i < 32; i++) CHECK(out[i] == (float)(q[i] - 8) * 0.5f);

    put_f16(b, 0.25f);
    put_f16(b + 2, -1.5f);
    for (int j = 0; j < 16; j++) b[4 + j] = (unsigned char)(q[j] | (q[j + 16] << 4));
    dequant(GGML_Q4_1, b, out, 32);
    for (int i = 0; i < 32; i++) CHECK(out[i] == (float)q[i] * 0.25f - 1.5f);
}

static void test_q5(void) {
    unsigned char b[24];
    float out[32];
    int q[32];
    for (int i = 0; i < 32; i++) q[i] = (int)(lcg() % 32);
    q[0] = 31, q[31] = 16, q[16] = 0; /* extremes and the high bit of both halves */
    uint32_t qh = 0;
    for (int i = 0; i < 32; i++) qh |= (uint32_t)(q[i] >> 4) << i;
    /* Q5_0 {d, qh[4], qs[16]} */
    put_f16(b, 0.125f);
    for (int k = 0; k < 4; k++) b[2 + k] = (unsigned char)(qh >> (8 * k));
    for (int j = 0; j < 16; j++) b[6 + j] = (unsigned char)((q[j] & 15) | ((q[j + 16] & 15) << 4));
    dequant(GGML_Q5_0, b, out, 32);
    for (int i = 0; i < 32; i++) CHECK(out[i] == (float)(q[i] - 16) * 0.125f);
    /* Q5_1 {d, m, qh[4], qs[16]} */
    put_f16(b, 2.0f);
    put_f16(b + 2, 0.75f);
    for (int k = 0; k < 4; k++) b[4 + k] = (unsigned char)(qh >> (8 * k));
    for (int j = 0; j < 16; j++) b[8 + j] = (unsigned char)((q[j] & 15) | ((q[j + 16] & 15) << 4));
    dequant(GGML_Q5_1, b, out, 32);
    for (int i = 0; i < 32; i++) CHECK(out[i] == (float)q[i] * 2.0f + 0.75f);
}

static void test_q8_0(void) {
    unsigned char b[34 * 2];
    float out[64];
    put_f16(b, 0.0625f);
    put_f16(b + 34, -3.0f);
    for (int j = 0; j < 32; j++) {
        b[2 + j] = (unsigned char)(int8_t)(j * 8 - 128);
        b[36 + j] = (unsigned char)(int8_t)(127 - j);
    }
    dequant(GGML_Q8_0, b, out, 64);
    for (int j = 0; j < 32; j++) {
        CHECK(out[j] == (float)(j * 8 - 128) * 0.0625f);
        CHECK(out[32 + j] == (float)(127 - j) * -3.0f);
    }
}

/* === k-quants === */

/* Packs 8 six-bit scales and mins the way Q4_K/Q5_K store them. */
static void pack_k4_scales(unsigned char *s, const int *sc, const int *m) {
    memset(s, 0, 12);
    for (int j = 0; j < 4; j++) {
        s[j] = (unsigned char)sc[j];
        s[j + 4] = (unsigned char)m[j];
    }
    for (int j = 4; j < 8; j++) {
        s[j + 4] = (unsigned char)((sc[j] & 15) | ((m[j] & 15) << 4));
        s[j - 4] |= (unsigned char)((sc[j] >> 4) << 6);
        s[j] |= (unsigned char)((m[j] >> 4) << 6);
    }
}

static void test_q4_k_q5_k(void) {
    unsigned char b[176];
    float out[256];
    int sc[8], mn[8], q[256];
    for (int j = 0; j < 8; j++) sc[j] = (int)(lcg() % 64), mn[j] = (int)(lcg() % 64);
    sc[7] = 63, mn[5] = 63, sc[4] = 48, mn[6] = 17; /* exercise the high bits of the j >= 4 entries */
    const float d = 0.03125f, dmin = 0.0078125f;

    for (int i = 0; i < 256; i++) q[i] = (int)(lcg() % 16);
    put_f16(b, d);
    put_f16(b + 2, dmin);
    pack_k4_scales(b + 4, sc, mn);
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++) b[16 + 32 * p + l] = (unsigned char)(q[64 * p + l] | (q[64 * p + 32 + l] << 4));
    dequant(GGML_Q4_K, b, out, 256);
    for (int i = 0; i < 256; i++) {
        int j = i / 32;
        CHECK_NEAR(out[i], d * sc[j] * q[i] - dmin * mn[j], 1e-6);
    }

    for (int i = 0; i < 256; i++) q[i] = (int)(lcg() % 32);
    put_f16(b, d);
    put_f16(b + 2, dmin);
    pack_k4_scales(b + 4, sc, mn);
    memset(b + 16, 0, 32);
    for (int i = 0; i < 256; i++) b[16 + i % 32] |= (unsigned char)((q[i] >> 4) << (i / 32));
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++)
            b[48 + 32 * p + l] = (unsigned char)((q[64 * p + l] & 15) | ((q[64 * p + 32 + l] & 15) << 4));
    dequant(GGML_Q5_K, b, out, 256);
    for (int i = 0; i < 256; i++) {
        int j = i / 32;
        CHECK_NEAR(out[i], d * sc[j] * q[i] - dmin * mn[j], 1e-6);
    }
}

static void test_q6_k(void) {
    unsigned char b[210];
    float out[256];
    int q[256], sc[16];
    for (int i = 0; i < 256; i++) q[i] = (int)(lcg() % 64);
    for (int k = 0; k < 16; k++) sc[k] = (int)(lcg() % 256) - 128;
    q[0] = 63, q[255] = 0;
    memset(b, 0, sizeof b);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
        int qlb = 64 * h + l + 32 * (k & 1);
        b[qlb] |= (unsigned char)((q[e] & 15) << (k >= 2 ? 4 : 0));
        b[128 + 32 * h + l] |= (unsigned char)((q[e] >> 4) << (2 * k));
    }
    for (int k = 0; k < 16; k++) b[192 + k] = (unsigned char)(int8_t)sc[k];
    put_f16(b + 208, 0.015625f);
    dequant(GGML_Q6_K, b, out, 256);
    for (int e = 0; e < 256; e++) CHECK_NEAR(out[e], 0.015625f * sc[e / 16] * (q[e] - 32), 1e-6);
}

static void test_q2_k_q3_k(void) {
    unsigned char b[110];
    float out[256];
    int q[256], s[16];
    /* Q2_K {scales[16], qs[64], d, dmin}: scale nibble = d multiplier, high nibble = min */
    for (int i = 0; i < 256; i++) q[i] = (int)(lcg() % 4);
    for (int k = 0; k < 16; k++) s[k] = (int)(lcg() % 256);
    memset(b, 0, sizeof b);
    for (int k = 0; k < 16; k++) b[k] = (unsigned char)s[k];
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, j = r / 32, k = (r % 32) / 16, l = r % 16;
        b[16 + 32 * h + 16 * k + l] |= (unsigned char)(q[e] << (2 * j));
    }
    put_f16(b + 80, 0.5f);
    put_f16(b + 82, 0.25f);
    dequant(GGML_Q2_K, b, out, 256);
    for (int e = 0; e < 256; e++) CHECK_NEAR(out[e], 0.5f * (s[e / 16] & 15) * q[e] - 0.25f * (s[e / 16] >> 4), 1e-6);

    /* Q3_K {hmask[32], qs[64], scales[12], d}: q in [-4, 3], scales 6-bit minus 32 */
    for (int i = 0; i < 256; i++) q[i] = (int)(lcg() % 8) - 4;
    for (int k = 0; k < 16; k++) s[k] = (int)(lcg() % 64);
    s[0] = 63, s[5] = 0, s[10] = 47, s[15] = 33;
    memset(b, 0, sizeof b);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, j = r / 32, k = (r % 32) / 16, l = r % 16;
        int hbit = q[e] >= 0, low = hbit ? q[e] : q[e] + 4;
        b[32 + 32 * h + 16 * k + l] |= (unsigned char)(low << (2 * j));
        if (hbit) b[e % 32] |= (unsigned char)(1u << (4 * h + j));
    }
    unsigned char *sc = b + 96;
    for (int k = 0; k < 16; k++) {
        int lo = s[k] & 15, hi = s[k] >> 4;
        if (k < 8) sc[k] |= (unsigned char)lo;
        else sc[k - 8] |= (unsigned char)(lo << 4);
        sc[8 + k % 4] |= (unsigned char)(hi << (2 * (k / 4)));
    }
    put_f16(b + 108, 0.125f);
    dequant(GGML_Q3_K, b, out, 256);
    for (int e = 0; e < 256; e++) CHECK_NEAR(out[e], 0.125f * (s[e / 16] - 32) * q[e], 1e-6);
}

static void test_q8_k(void) {
    unsigned char b[292];
    float out[256], d = -0.37f;
    memset(b, 0, sizeof b);
    memcpy(b, &d, 4);
    for (int i = 0; i < 256; i++) b[4 + i] = (unsigned char)(int8_t)(i - 128);
    dequant(GGML_Q8_K, b, out, 256);
    for (int i = 0; i < 256; i++) CHECK(out[i] == d * (float)(i - 128));
}

/* === reference quantizers: error bounds === */

/* Q8_0: d = amax/127 stored as fp16 (relative error <= 2^-11), q = round(x/d),
 * |q| <= 127: |x - q*fp16(d)| <= d/2 + 127 * d * 2^-11. */
static void test_quant_bounds(void) {
    enum { N = 32 * 256 };
    static float x[N], y[N];
    static unsigned char q8[N / 32 * 34], q4[N / 32 * 18];
    for (int i = 0; i < N; i++) {
        float u = (float)(lcg() % 2000001) / 1000000.0f - 1.0f;
        x[i] = u * (float)(1 + (i / 32) % 7) * (i % 97 == 0 ? 20.0f : 1.0f);
    }
    const GgmlTypeTraits *t8 = ggml_type_traits(GGML_Q8_0), *t4 = ggml_type_traits(GGML_Q4_0);
    t8->quant_ref(x, q8, N);
    t8->dequant(q8, y, N);
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        double d = amax / 127.0, bound = d * (0.5 + 127.0 / 2048.0) + 1e-6 * amax;
        for (int j = 0; j < 32; j++) CHECK_NEAR(y[32 * b + j], x[32 * b + j], bound);
    }
    /* Q4_0: d = -max/8 (max = the signed value of largest |x|), q = min(15,
     * floor(x/d + 8.5)). x/d lies in [-8, 8]; above 7.5 it clips to 7, so the
     * error is <= |d|/2 there and <= |d| only for those clipped elements;
     * fp16(d) adds <= 8*|d|*2^-11. */
    t4->quant_ref(x, q4, N);
    t4->dequant(q4, y, N);
    int clipped = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[32 * b + j]) > amax) amax = fabsf(x[32 * b + j]), max = x[32 * b + j];
        double d = fabs(max / -8.0);
        for (int j = 0; j < 32; j++) {
            double r = x[32 * b + j] / (max / -8.0);
            double bound = (r > 7.5 ? d : 0.5 * d) + 8.0 * d / 2048.0 + 1e-6 * amax;
            clipped += r > 7.5;
            CHECK_NEAR(y[32 * b + j], x[32 * b + j], bound);
        }
        /* the extreme value itself is exact up to fp16(d) */
        int jm = 0;
        for (int j = 0; j < 32; j++) if (x[32 * b + j] == max) jm = j;
        CHECK_NEAR(y[32 * b + jm], max, 8.0 * d / 2048.0 + 1e-6 * amax);
    }
    CHECK(clipped > 0); /* the clip branch was exercised */
}

/* === against llama.cpp's files === */

/* For every Q8_0 / Q4_0 / F16 tensor of a mixed file: (1) our reference
 * quantizer applied to the f32 file's tensor reproduces llama-quantize's bytes
 * exactly, and (2) the dequantized values are within the format's bound of
 * the f32 values: Q8_0 amax/127*(1/2 + 127/2048), Q4_0 amax/8*(1 + 8/2048)
 * per block, F16 |x|*2^-11. Returns the number of quantized tensors checked. */
static int check_mixed(const char *path, uint32_t qtype) {
    Err err;
    err_init(&err);
    Gguf *ref = NULL, *g = NULL;
    CHECK_OK(gguf_open(testlib_shared("models/stories260K/stories260K-f32.gguf"), &ref, &err), err);
    CHECK_OK(gguf_open(path, &g, &err), err);
    int n_quant = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.s);
        const GgufTensor *r = gguf_find_tensor(ref, name);
        CHECKF(r != NULL, "%s missing from the f32 file", name);
        CHECK(r->type == GGML_F32);
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        CHECK(n == r->ne[0] * r->ne[1] * r->ne[2] * r->ne[3]);
        float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
        CHECK(x && y);
        memcpy(x, r->data, (size_t)n * sizeof(float));
        const GgmlTypeTraits *tt = ggml_type_traits(t->type);
        tt->dequant(t->data, y, n);
        if (t->type == GGML_Q8_0 || t->type == GGML_Q4_0) {
            if (t->type == qtype) n_quant++;
            void *requant = malloc(t->nbytes);
            CHECK(requant);
            tt->quant_ref(x, requant, n);
            CHECKF(memcmp(requant, t->data, t->nbytes) == 0, "%s: %s bytes differ from llama-quantize's", name, tt->name);
            free(requant);
            for (int64_t b = 0; b < n / 32; b++) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
                double bound = t->type == GGML_Q8_0 ? amax / 127.0 * (0.5 + 127.0 / 2048.0)
                                                    : amax / 8.0 * (1.0 + 8.0 / 2048.0);
                for (int j = 0; j < 32; j++) CHECK_NEAR(y[32 * b + j], x[32 * b + j], bound + 1e-7);
            }
        } else if (t->type == GGML_F16) {
            for (int64_t k = 0; k < n; k++) CHECK_NEAR(y[k], x[k], fabsf(x[k]) * 0x1p-11 + 6e-8);
        } else {
            CHECK(t->type == GGML_F32);
            CHECK(memcmp(x, y, (size_t)n * sizeof(float)) == 0);
        }
        free(x);
        free(y);
    }
    gguf_free(g);
    gguf_free(ref);
    return n_quant;
}

int main(void) {
    test_traits();
    test_float_types();
    test_q4_0_q4_1();
    test_q5();
    test_q8_0();
    test_q4_k_q5_k();
    test_q6_k();
    test_q2_k_q3_k();
    test_q8_k();
    test_quant_bounds();
    /* Q8_0 file: every 2-D tensor but ffn_down (172 columns) is Q8_0: 5*6 + 2 = 32 */
    CHECK(check_mixed(testlib_shared("models/stories260K/stories260K-Q8_0-mixed.gguf"), GGML_Q8_0) == 32);
    /* Q4_0 file: output.weight is Q8_0 (llama-quantize keeps the head higher) */
    CHECK(check_mixed(testlib_shared("models/stories260K/stories260K-Q4_0-mixed.gguf"), GGML_Q4_0) == 31);
    return testlib_done("test_ggml_types");
}
