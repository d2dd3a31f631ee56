/* GGUF reader and writer: synth output reads back exactly and re-writes to the
 * same bytes; llama.cpp's shared GGUFs open with the expected metadata; and
 * malformed files built byte by byte here (truncations at every header
 * offset, absurd counts and lengths, bad offsets, types, shapes, alignment)
 * fail with an error naming the file and the problem, never a crash. */
#include <stdint.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fpconv.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/synth.h"
#include "quant/ggml_type.h"
#include "tests/testlib.h"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    return testlib_path(tmpdir, name);
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)sz + 1);
    CHECK(p && fread(p, 1, (size_t)sz, f) == (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static int64_t kv_int(const Gguf *g, const char *key) {
    int64_t v = -1;
    CHECKF(gguf_get_int(g, key, &v), "missing int %s", key);
    return v;
}

/* === synth round trip === */

static Synth *make_synth(const char *preset, uint64_t seed, uint32_t type, const char *spikes) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset(preset, &cfg, &err), err);
    cfg.seed = seed;
    cfg.type = type;
    if (spikes) CHECK_OK(synth_parse_spikes(spikes, &cfg, &err), err);
    Synth *s = NULL;
    CHECK_OK(synth_new(&cfg, &s, &err), err);
    return s;
}

/* Re-writes every KV and tensor of g through the writer. */
static void copy_gguf(const Gguf *g, const char *path) {
    Err err;
    err_init(&err);
    GgufWriter *w = gguf_writer_new();
    CHECK(w);
    for (int64_t i = 0; i < g->n_kv; i++) {
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)g->kv[i].key.len, g->kv[i].key.s);
        CHECK(gguf_writer_add_value(w, key, &g->kv[i].value) == ST_OK);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.s);
        CHECK(gguf_writer_add_tensor(w, name, t->type, (int)t->n_dims, t->ne, t->data) == ST_OK);
    }
    CHECK_OK(gguf_writer_write(w, path, &err), err);
    gguf_writer_free(w);
}

static void test_synth_roundtrip(void) {
    Err err;
    err_init(&err);
    Synth *s = make_synth("tiny", 7, GGML_F32, NULL);
    const char *a = tmp_path("tiny.gguf");
    CHECK_OK(synth_write(s, a, NULL, &err), err);
    Gguf *g = NULL;
    CHECK_OK(gguf_open(a, &g, &err), err);
    CHECK(g->version == 3 && g->alignment == 32 && g->data_offset % 32 == 0);
    GgufStr str;
    CHECK(gguf_get_str(g, "general.architecture", &str) && gguf_str_eq(str, "llama"));
    CHECK(gguf_get_str(g, "tokenizer.ggml.model", &str) && gguf_str_eq(str, "llama"));
    CHECK(kv_int(g, "llama.embedding_length") == 64);
    CHECK(kv_int(g, "llama.feed_forward_length") == 172);
    CHECK(kv_int(g, "llama.block_count") == 5);
    CHECK(kv_int(g, "llama.attention.head_count") == 8);
    CHECK(kv_int(g, "llama.attention.head_count_kv") == 4);
    CHECK(kv_int(g, "llama.rope.dimension_count") == 8);
    CHECK(kv_int(g, "llama.context_length") == 512);
    CHECK(kv_int(g, "llama.vocab_size") == 512);
    CHECK(kv_int(g, "general.alignment") == 32);
    CHECK(kv_int(g, "tokenizer.ggml.bos_token_id") == 1);
    CHECK(kv_int(g, "tokenizer.ggml.eos_token_id") == 2);
    CHECK(kv_int(g, "tokenizer.ggml.unknown_token_id") == 0);
    double f;
    CHECK(gguf_get_double(g, "llama.rope.freq_base", &f) && f == 10000.0);
    CHECK(gguf_get_double(g, "llama.attention.layer_norm_rms_epsilon", &f) && f == (double)1e-5f);
    int b;
    CHECK(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) && b == 1);
    const GgufValue *tok = gguf_get_arr(g, "tokenizer.ggml.tokens");
    const GgufValue *typ = gguf_get_arr(g, "tokenizer.ggml.token_type");
    const GgufValue *sc = gguf_get_arr(g, "tokenizer.ggml.scores");
    CHECK(tok && tok->v.arr.elem_type == GGUF_STRING && tok->v.arr.n == 512);
    CHECK(typ && typ->v.arr.elem_type == GGUF_INT32 && typ->v.arr.n == 512);
    CHECK(sc && sc->v.arr.elem_type == GGUF_FLOAT32 && sc->v.arr.n == 512);
    CHECK(gguf_str_eq(tok->v.arr.strs[0], "<unk>") && gguf_arr_int(typ, 0) == 2);
    CHECK(gguf_str_eq(tok->v.arr.strs[1], "<s>") && gguf_arr_int(typ, 1) == 3);
    CHECK(gguf_str_eq(tok->v.arr.strs[2], "</s>") && gguf_arr_int(typ, 2) == 3);
    CHECK(gguf_str_eq(tok->v.arr.strs[3], "<0x00>") && gguf_arr_int(typ, 3) == 6);
    CHECK(gguf_str_eq(tok->v.arr.strs[3 + 0x41], "<0x41>") && gguf_arr_int(typ, 3 + 0x41) == 6);
    CHECK(gguf_str_eq(tok->v.arr.strs[258], "<0xFF>") && gguf_arr_int(typ, 258) == 6);
    CHECK(gguf_str_eq(tok->v.arr.strs[259], "\xe2\x96\x81") && gguf_arr_int(typ, 259) == 1);
    CHECK(gguf_str_eq(tok->v.arr.strs[260], "\xe2\x96\x81" "a"));
    CHECK(gguf_arr_double(sc, 260) < gguf_arr_double(sc, 259));
    /* every piece distinct */
    for (uint64_t i = 0; i < tok->v.arr.n; i++)
        for (uint64_t j = i + 1; j < tok->v.arr.n; j++)
            CHECK(!(tok->v.arr.strs[i].len == tok->v.arr.strs[j].len &&
                    memcmp(tok->v.arr.strs[i].s, tok->v.arr.strs[j].s, tok->v.arr.strs[i].len) == 0));
    /* tensors: names, shapes, and bytes equal to the generator's values */
    CHECK(g->n_tensors == 1 + 5 * 9 + 2 && synth_n_tensors(s) == g->n_tensors);
    static const char *const names[] = {"token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight",
                                        "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight",
                                        "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight",
                                        "blk.0.ffn_down.weight"};
    for (int i = 0; i < 10; i++) CHECK(gguf_str_eq(g->tensors[i].name, names[i]));
    CHECK(gguf_str_eq(g->tensors[46].name, "output_norm.weight"));
    CHECK(gguf_str_eq(g->tensors[47].name, "output.weight"));
    const GgufTensor *t = gguf_find_tensor(g, "blk.4.ffn_down.weight");
    CHECK(t && t->n_dims == 2 && t->ne[0] == 172 && t->ne[1] == 64 && t->type == GGML_F32);
    t = gguf_find_tensor(g, "blk.2.attn_k.weight");
    CHECK(t && t->ne[0] == 64 && t->ne[1] == 32);
    t = gguf_find_tensor(g, "blk.2.attn_norm.weight");
    CHECK(t && t->n_dims == 1 && t->ne[0] == 64 && ((const float *)t->data)[5] == 1.0f);
    float *buf = malloc(512 * 172 * sizeof(float));
    CHECK(buf);
    double sumsq = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        int64_t ne0, ne1;
        synth_tensor_f32(s, i, buf, &ne0, &ne1);
        CHECK(gguf_str_eq(g->tensors[i].name, synth_tensor_name(s, i)));
        CHECK(g->tensors[i].ne[0] == ne0 && g->tensors[i].ne[1] == ne1);
        CHECK(g->tensors[i].nbytes == (size_t)(ne0 * ne1) * 4);
        CHECK(memcmp(g->tensors[i].data, buf, g->tensors[i].nbytes) == 0);
        if (gguf_str_eq(g->tensors[i].name, "blk.1.ffn_gate.weight"))
            for (int64_t k = 0; k < ne0 * ne1; k++) sumsq += (double)buf[k] * buf[k], cnt++;
    }
    /* init scale: rows ~ N(0, 1/fan_in) */
    CHECK_NEAR(sumsq / (double)cnt, 1.0 / 64.0, 0.1 / 64.0);
    free(buf);

    /* writer(reader(file)) reproduces the file byte for byte */
    const char *c = tmp_path("copy.gguf");
    copy_gguf(g, c);
    size_t na, nc;
    unsigned char *pa = read_file(a, &na), *pc = read_file(c, &nc);
    CHECK(na == nc && memcmp(pa, pc, na) == 0);
    free(pc);
    /* same seed, same bytes; another seed, other weights */
    const char *a2 = tmp_path("tiny2.gguf");
    CHECK_OK(synth_write(s, a2, NULL, &err), err);
    pc = read_file(a2, &nc);
    CHECK(na == nc && memcmp(pa, pc, na) == 0);
    free(pc);
    Synth *s8 = make_synth("tiny", 8, GGML_F32, NULL);
    CHECK_OK(synth_write(s8, a2, NULL, &err), err);
    pc = read_file(a2, &nc);
    CHECK(na == nc && memcmp(pa, pc, na) != 0);
    free(pc);
    free(pa);
    synth_free(s8);
    gguf_free(g);
    synth_free(s);
}

/* --type f16 / q8_0: storage types and values within the format's error. */
static void test_synth_types(void) {
    Err err;
    err_init(&err);
    static const uint32_t types[] = {GGML_F16, GGML_Q8_0};
    float *x = malloc(512 * 172 * sizeof(float)), *y = malloc(512 * 172 * sizeof(float));
    CHECK(x && y);
    for (int k = 0; k < 2; k++) {
        Synth *s = make_synth("tiny", 3, types[k], NULL);
        const char *p = tmp_path("typed.gguf");
        CHECK_OK(synth_write(s, p, NULL, &err), err);
        Gguf *g = NULL;
        CHECK_OK(gguf_open(p, &g, &err), err);
        CHECK(kv_int(g, "general.file_type") == (types[k] == GGML_F16 ? 1 : 7));
        for (int64_t i = 0; i < g->n_tensors; i++) {
            const GgufTensor *t = &g->tensors[i];
            uint32_t want = t->n_dims == 1 ? GGML_F32 : (t->ne[0] % 32 ? GGML_F16 : types[k]);
            CHECK(t->type == want);
            int64_t ne0, ne1;
            synth_tensor_f32(s, i, x, &ne0, &ne1);
            ggml_type_traits(t->type)->dequant(t->data, y, ne0 * ne1);
            for (int64_t j = 0; j < ne0 * ne1; j++) {
                double tol = t->type == GGML_Q8_0 ? 0.1 : fabs(x[j]) * 0x1p-11 + 6e-8;
                CHECK_NEAR(y[j], x[j], tol);
            }
        }
        gguf_free(g);
        synth_free(s);
    }
    free(x);
    free(y);
}

/* === shared files === */

static void test_shared(void) {
    Err err;
    err_init(&err);
    Gguf *g = NULL;
    CHECK_OK(gguf_open(testlib_shared("models/stories260K/stories260K-f32.gguf"), &g, &err), err);
    CHECK(g->version == 3 && g->n_tensors == 48 && g->n_kv == 19);
    GgufStr s;
    CHECK(gguf_get_str(g, "general.architecture", &s) && gguf_str_eq(s, "llama"));
    CHECK(kv_int(g, "llama.embedding_length") == 64);
    CHECK(kv_int(g, "llama.feed_forward_length") == 172);
    CHECK(kv_int(g, "llama.attention.head_count_kv") == 4);
    CHECK(kv_int(g, "tokenizer.ggml.padding_token_id") == 4294967295LL);
    const GgufValue *tok = gguf_get_arr(g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->v.arr.n == 512 && gguf_str_eq(tok->v.arr.strs[1], "<s>"));
    const GgufTensor *t = gguf_find_tensor(g, "blk.0.ffn_down.weight");
    CHECK(t && t->type == GGML_F32 && t->ne[0] == 172 && t->ne[1] == 64 && t->nbytes == 172 * 64 * 4);
    CHECK((const unsigned char *)t->data == g->mf.data + g->data_offset + t->offset);
    for (int64_t i = 0; i < g->n_tensors; i++) CHECK(g->tensors[i].type == GGML_F32);
    CHECK(gguf_find_tensor(g, "nope") == NULL && gguf_find(g, "nope") == NULL);
    gguf_free(g);

    CHECK_OK(gguf_open(testlib_shared("vocab/ggml-vocab-llama-spm.gguf"), &g, &err), err);
    CHECK(g->n_tensors == 0);
    tok = gguf_get_arr(g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->v.arr.n == 32000);
    CHECK(gguf_str_eq(tok->v.arr.strs[29871], "\xe2\x96\x81"));
    const GgufValue *sc = gguf_get_arr(g, "tokenizer.ggml.scores");
    CHECK(sc && sc->v.arr.n == 32000 && gguf_arr_double(sc, 260) == -1.0);
    CHECK(gguf_str_eq(tok->v.arr.strs[260], "\xe2\x96\x81" "t"));
    gguf_free(g);

    CHECK_OK(gguf_open(testlib_shared("vocab/ggml-vocab-gpt-2.gguf"), &g, &err), err);
    CHECK(g->n_tensors == 0);
    CHECK(gguf_get_arr(g, "tokenizer.ggml.merges")->v.arr.n == 50000);
    CHECK(gguf_get_str(g, "tokenizer.ggml.pre", &s) && gguf_str_eq(s, "gpt-2"));
    CHECK(kv_int(g, "tokenizer.ggml.bos_token_id") == 50256);
    gguf_free(g);
}

/* === nested arrays and value copying === */

static void test_nested(void) {
    Err err;
    err_init(&err);
    /* [[1, 2], [], [[3]]] as u8 leaves, built by hand */
    unsigned char l12[2] = {1, 2}, l3[1] = {3};
    GgufValue leaf3 = {.type = GGUF_ARRAY};
    leaf3.v.arr.elem_type = GGUF_UINT8, leaf3.v.arr.n = 1, leaf3.v.arr.raw = l3;
    GgufValue items[3];
    memset(items, 0, sizeof items);
    items[0].type = GGUF_ARRAY, items[0].v.arr.elem_type = GGUF_UINT8, items[0].v.arr.n = 2, items[0].v.arr.raw = l12;
    items[1].type = GGUF_ARRAY, items[1].v.arr.elem_type = GGUF_UINT8, items[1].v.arr.n = 0;
    items[2].type = GGUF_ARRAY, items[2].v.arr.elem_type = GGUF_ARRAY, items[2].v.arr.n = 1, items[2].v.arr.items = &leaf3;
    GgufValue top = {.type = GGUF_ARRAY};
    top.v.arr.elem_type = GGUF_ARRAY, top.v.arr.n = 3, top.v.arr.items = items;
    GgufValue i64 = {.type = GGUF_INT64}, f64 = {.type = GGUF_FLOAT64}, u16 = {.type = GGUF_UINT16};
    i64.v.i = -1234567890123LL, f64.v.f = 0.1, u16.v.u = 65535;
    GgufWriter *w = gguf_writer_new();
    CHECK(w);
    CHECK(gguf_writer_add_value(w, "n", &top) == ST_OK);
    CHECK(gguf_writer_add_value(w, "i64", &i64) == ST_OK);
    CHECK(gguf_writer_add_value(w, "f64", &f64) == ST_OK);
    CHECK(gguf_writer_add_value(w, "u16", &u16) == ST_OK);
    CHECK(gguf_writer_add_i32(w, "i32", -5) == ST_OK);
    CHECK(gguf_writer_add_u32(w, "i32", 5) == ST_ERR_ARG); /* duplicate key */
    int64_t ne[2] = {32, 2};
    unsigned char q[2 * 34] = {0};
    CHECK(gguf_writer_add_tensor(w, "q", GGML_Q8_0, 2, ne, q) == ST_OK);
    CHECK(gguf_writer_add_tensor(w, "q", GGML_Q8_0, 2, ne, q) == ST_ERR_ARG); /* duplicate name */
    int64_t bad[1] = {17};
    CHECK(gguf_writer_add_tensor(w, "r", GGML_Q8_0, 1, bad, q) == ST_ERR_ARG); /* not whole blocks */
    CHECK_OK(gguf_writer_write(w, tmp_path("nested.gguf"), &err), err);
    /* unwritable destination: clear error naming the path, no stray file */
    Status st = gguf_writer_write(w, "/nonexistent-qscope-dir/x.gguf", &err);
    CHECK(st == ST_ERR_IO && strstr(err.detail, "/nonexistent-qscope-dir/x.gguf"));
    gguf_writer_free(w);

    Gguf *g = NULL;
    CHECK_OK(gguf_open(tmp_path("nested.gguf"), &g, &err), err);
    const GgufValue *n = gguf_get_arr(g, "n");
    CHECK(n && n->v.arr.elem_type == GGUF_ARRAY && n->v.arr.n == 3);
    CHECK(n->v.arr.items[0].v.arr.n == 2 && gguf_arr_int(&n->v.arr.items[0], 1) == 2);
    CHECK(n->v.arr.items[1].v.arr.n == 0);
    CHECK(n->v.arr.items[2].v.arr.items[0].v.arr.n == 1 && gguf_arr_int(&n->v.arr.items[2].v.arr.items[0], 0) == 3);
    CHECK(kv_int(g, "i64") == -1234567890123LL && kv_int(g, "i32") == -5 && kv_int(g, "u16") == 65535);
    double f;
    CHECK(gguf_get_double(g, "f64", &f) && f == 0.1);
    CHECK(gguf_get_int(g, "f64", &(int64_t){0}) == 0);
    CHECK(g->n_tensors == 1 && g->tensors[0].nbytes == 68);
    gguf_free(g);
}

/* === malformed files === */

typedef struct Buf {
    unsigned char p[4096];
    size_t n;
} Buf;

static void b_bytes(Buf *b, const void *p, size_t n) {
    CHECK(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void b_u32(Buf *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    b_bytes(b, x, 4);
}
static void b_u64(Buf *b, uint64_t v) {
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}
static void b_str(Buf *b, const char *s) {
    b_u64(b, strlen(s));
    b_bytes(b, s, strlen(s));
}

/* The knobs a malformed file turns; defaults build a valid file. */
typedef struct Spec {
    uint32_t version;
    uint64_t n_tensors, n_kv;   /* header fields (0 = the real counts) */
    uint32_t align;
    uint64_t str_len;           /* length field of "a.str" (0 = real) */
    uint64_t arr_len;           /* length field of "a.arr" (0 = real) */
    int nest;                   /* nesting depth of "a.nested" */
    uint32_t vtype;             /* type of "a.str" (0 = string) */
    uint32_t ttype, n_dims;
    uint64_t ne[5];
    uint64_t offset;
    int dup_tensor, dup_key;
} Spec;

static Spec spec_default(void) {
    Spec s = {.version = 3, .align = 32, .nest = 2, .ttype = GGML_F32, .n_dims = 2, .ne = {32, 2, 1, 1, 1}};
    return s;
}

/* Builds the file; *info_end receives the offset where tensor infos end. */
static void build(Buf *b, const Spec *s, size_t *info_end) {
    b->n = 0;
    b_bytes(b, "GGUF", 4);
    b_u32(b, s->version);
    int n_t = s->dup_tensor ? 2 : 1, n_kv = s->dup_key ? 5 : 4;
    b_u64(b, s->n_tensors ? s->n_tensors : (uint64_t)n_t);
    b_u64(b, s->n_kv ? s->n_kv : (uint64_t)n_kv);
    b_str(b, "general.alignment");
    b_u32(b, GGUF_UINT32);
    b_u32(b, s->align);
    b_str(b, "a.str");
    b_u32(b, s->vtype ? s->vtype : GGUF_STRING);
    b_u64(b, s->str_len ? s->str_len : 5);
    b_bytes(b, "hello", 5);
    b_str(b, "a.arr");
    b_u32(b, GGUF_ARRAY);
    b_u32(b, GGUF_UINT32);
    b_u64(b, s->arr_len ? s->arr_len : 3);
    for (int i = 0; i < 3; i++) b_u32(b, (uint32_t)i);
    b_str(b, "a.nested");
    b_u32(b, GGUF_ARRAY);
    for (int d = 0; d < s->nest; d++) {
        b_u32(b, GGUF_ARRAY);
        b_u64(b, 1);
    }
    b_u32(b, GGUF_UINT8);
    b_u64(b, 2);
    b_bytes(b, "\x01\x02", 2);
    if (s->dup_key) {
        b_str(b, "a.str");
        b_u32(b, GGUF_UINT8);
        b_bytes(b, "\x07", 1);
    }
    for (int k = 0; k < n_t; k++) {
        b_str(b, "x");
        b_u32(b, s->n_dims);
        for (uint32_t d = 0; d < s->n_dims && d < 5; d++) b_u64(b, s->ne[d]);
        b_u32(b, s->ttype);
        b_u64(b, s->offset + (uint64_t)k * 256);
    }
    *info_end = b->n;
    while (b->n % 32) b->p[b->n++] = 0;
    for (int k = 0; k < n_t * 256; k++) b->p[b->n++] = (unsigned char)k;
}

/* Writes the spec'd file, opens it, expects failure with `phrase` and the path. */
static void expect_fail(const char *label, const Spec *s, const char *phrase) {
    Buf b;
    size_t ie;
    build(&b, s, &ie);
    char name[64];
    snprintf(name, sizeof name, "bad-%s.gguf", label);
    const char *path = tmp_path(name);
    write_file(path, b.p, b.n);
    Err err;
    err_init(&err);
    Gguf *g = NULL;
    Status st = gguf_open(path, &g, &err);
    CHECKF(st != ST_OK && g == NULL, "%s: opened", label);
    if (getenv("QS_VERBOSE")) fprintf(stderr, "%-10s %s\n", label, err.detail);
    CHECKF(strstr(err.detail, path) != NULL, "%s: detail lacks path: %s", label, err.detail);
    CHECKF(strstr(err.detail, phrase) != NULL, "%s: '%s' not in: %s", label, phrase, err.detail);
}

static void test_malformed(void) {
    Err err;
    err_init(&err);
    Spec s = spec_default();
    Buf b;
    size_t info_end;
    build(&b, &s, &info_end);
    /* the default spec is valid */
    const char *ok = tmp_path("ok.gguf");
    write_file(ok, b.p, b.n);
    Gguf *g = NULL;
    CHECK_OK(gguf_open(ok, &g, &err), err);
    CHECK(g->n_tensors == 1 && g->n_kv == 4 && g->tensors[0].nbytes == 256);
    CHECK(((const unsigned char *)g->tensors[0].data)[3] == 3);
    gguf_free(g);

    /* truncation at every byte of the header region and at sampled data offsets:
     * short reads, lengths past the end, or counts the remaining bytes cannot hold */
    const char *tp = tmp_path("trunc.gguf");
    for (size_t cut = 0; cut < b.n; cut += cut < info_end + 40 ? 1 : 37) {
        write_file(tp, b.p, cut);
        Status st = gguf_open(tp, &g, &err);
        CHECKF(st != ST_OK, "cut %zu opened", cut);
        CHECKF(strstr(err.detail, tp) && (strstr(err.detail, "truncated") || strstr(err.detail, "past end of file") ||
                                           strstr(err.detail, "impossible") || strstr(err.detail, "cannot fit")),
               "cut %zu: %s", cut, err.detail);
    }

    Spec m;
    {
        Buf bm;
        build(&bm, &s, &info_end);
        bm.p[0] = 'X';
        const char *p = tmp_path("magic.gguf");
        write_file(p, bm.p, bm.n);
        CHECK(gguf_open(p, &g, &err) == ST_ERR_FORMAT && strstr(err.detail, "bad magic") && strstr(err.detail, p));
        /* big-endian: version stored as 00 00 00 03 */
        build(&bm, &s, &info_end);
        bm.p[4] = 0, bm.p[7] = 3;
        write_file(p, bm.p, bm.n);
        CHECK(gguf_open(p, &g, &err) == ST_ERR_UNSUPPORTED && strstr(err.detail, "big-endian"));
    }
    {
        /* v2 has the same layout as v3 (64-bit counts); both open */
        Buf bv;
        m = s, m.version = 2;
        build(&bv, &m, &info_end);
        const char *p = tmp_path("v2.gguf");
        write_file(p, bv.p, bv.n);
        CHECK_OK(gguf_open(p, &g, &err), err);
        CHECK(g->version == 2 && g->n_tensors == 1 && gguf_get_arr(g, "a.arr")->v.arr.n == 3);
        gguf_free(g);
    }
    m = s, m.version = 1; expect_fail("v1", &m, "unsupported GGUF version 1");
    m = s, m.version = 99; expect_fail("v99", &m, "unsupported GGUF version 99");
    m = s, m.n_tensors = 1ull << 40; expect_fail("ntensors", &m, "tensor count 1099511627776 is impossible");
    m = s, m.n_kv = 4294967295u; expect_fail("nkv", &m, "KV count 4294967295 is impossible");
    m = s, m.n_kv = 7; expect_fail("nkv-small", &m, "");
    m = s, m.str_len = 1ull << 50; expect_fail("strlen", &m, "string length 1125899906842624");
    m = s, m.str_len = 4000; expect_fail("strlen2", &m, "past end of file");
    m = s, m.arr_len = 1ull << 40; expect_fail("arrlen", &m, "array length 1099511627776");
    m = s, m.arr_len = 1000; expect_fail("arrlen2", &m, "past end of file");
    m = s, m.nest = 9; expect_fail("nest", &m, "nested too deep");
    m = s, m.vtype = 13; expect_fail("vtype", &m, "unknown value type 13 for key 'a.str'");
    m = s, m.offset = 1u << 20; expect_fail("oob", &m, "data out of bounds");
    m = s, m.ne[1] = 3; expect_fail("oob2", &m, "data out of bounds");
    m = s, m.offset = 4; expect_fail("misaligned", &m, "offset 4 is not aligned to 32");
    m = s, m.align = 64, m.offset = 32; expect_fail("misaligned64", &m, "data offset 32 is not aligned to 64");
    m = s, m.ttype = 99; expect_fail("dtype", &m, "unknown tensor type 99 for tensor 'x'");
    m = s, m.ttype = 4; expect_fail("dtype4", &m, "unknown tensor type 4 for tensor 'x'");
    m = s, m.n_dims = 5; expect_fail("ndims", &m, "n_dims 5");
    m = s, m.ne[0] = 1ull << 40, m.ne[1] = 1ull << 40; expect_fail("neovf", &m, "overflows");
    m = s, m.ne[1] = 1ull << 63; expect_fail("neneg", &m, "negative");
    m = s, m.ttype = GGML_Q4_0, m.ne[0] = 16; expect_fail("blocks", &m, "not a multiple of the Q4_0 block size 32");
    m = s, m.align = 33; expect_fail("align33", &m, "offset 53: general.alignment = 33"); /* 24 + 8+17 + 4 */
    m = s, m.align = 0; expect_fail("align0", &m, "general.alignment = 0");
    m = s, m.dup_tensor = 1; expect_fail("duptensor", &m, "duplicate tensor name 'x'");
    m = s, m.dup_key = 1; expect_fail("dupkey", &m, "duplicate key 'a.str'");
    /* zero-size and missing files */
    write_file(tp, "", 0);
    CHECK(gguf_open(tp, &g, &err) != ST_OK && strstr(err.detail, "truncated"));
    CHECK(gguf_open(tmp_path("missing.gguf"), &g, &err) == ST_ERR_IO && strstr(err.detail, "missing.gguf"));
}

/* === mutation fuzz === */

static int in_map(const Gguf *g, const void *p, uint64_t n) {
    const unsigned char *b = g->mf.data, *q = p;
    if (n == 0) return 1;
    return q >= b && q <= b + g->mf.size && n <= (uint64_t)(b + g->mf.size - q);
}

static void check_value_in_map(const Gguf *g, const GgufValue *v) {
    if (v->type == GGUF_STRING) CHECK(in_map(g, v->v.str.s, v->v.str.len));
    if (v->type != GGUF_ARRAY) return;
    GgufValueType et = v->v.arr.elem_type;
    if (et == GGUF_STRING)
        for (uint64_t i = 0; i < v->v.arr.n; i++) CHECK(in_map(g, v->v.arr.strs[i].s, v->v.arr.strs[i].len));
    else if (et == GGUF_ARRAY)
        for (uint64_t i = 0; i < v->v.arr.n; i++) check_value_in_map(g, &v->v.arr.items[i]);
    else CHECK(in_map(g, v->v.arr.raw, v->v.arr.n * gguf_value_type_size(et)));
}

/* Random byte edits of a valid file: every outcome is either a clean error
 * naming the file or a Gguf whose every borrowed range lies inside the map. */
static void test_fuzz(void) {
    Spec s = spec_default();
    Buf base, b;
    size_t ie;
    build(&base, &s, &ie);
    const char *p = tmp_path("fuzz.gguf");
    uint64_t st = 2024;
    int n_ok = 0;
    for (int it = 0; it < 3000; it++) {
        b = base;
        int edits = 1 + it % 4;
        for (int e = 0; e < edits; e++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)((st >> 33) % ie); /* the header region, where parsing happens */
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            b.p[at] = (st >> 40) % 3 == 0 ? 0xFF : (unsigned char)(st >> 33);
        }
        write_file(p, b.p, b.n);
        Err err;
        err_init(&err);
        Gguf *g = NULL;
        if (gguf_open(p, &g, &err) == ST_OK) {
            n_ok++;
            for (int64_t i = 0; i < g->n_kv; i++) {
                CHECK(in_map(g, g->kv[i].key.s, g->kv[i].key.len));
                check_value_in_map(g, &g->kv[i].value);
            }
            for (int64_t i = 0; i < g->n_tensors; i++) {
                CHECK(in_map(g, g->tensors[i].name.s, g->tensors[i].name.len));
                CHECK(in_map(g, g->tensors[i].data, g->tensors[i].nbytes));
            }
            gguf_free(g);
        } else {
            CHECK(strstr(err.detail, p) != NULL);
        }
    }
    CHECK(n_ok > 0 && n_ok < 3000); /* both outcomes were exercised */
}

/* === many tensors; overlapping data === */

typedef struct {
    unsigned char *p;
    size_t n;
} Bytes;

static void mb_put(Bytes *b, const void *src, size_t n) {
    b->p = realloc(b->p, b->n + n);
    CHECK(b->p);
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void mb_u32(Bytes *b, uint32_t v) { mb_put(b, &v, 4); }
static void mb_u64(Bytes *b, uint64_t v) { mb_put(b, &v, 8); }

/* A GGUF v3 of n f32 tensors "t<i>" of 8 elements (32 bytes each); tensor i's
 * data offset is offs(i) (i * 32 when offs is NULL). */
static void write_many(const char *path, int64_t n, uint64_t (*offs)(int64_t)) {
    Bytes b = {0};
    mb_put(&b, "GGUF", 4);
    mb_u32(&b, 3);
    mb_u64(&b, (uint64_t)n);
    mb_u64(&b, 0);
    for (int64_t i = 0; i < n; i++) {
        char name[32];
        int len = snprintf(name, sizeof name, "t%lld", (long long)i);
        mb_u64(&b, (uint64_t)len);
        mb_put(&b, name, (size_t)len);
        mb_u32(&b, 1);
        mb_u64(&b, 8);
        mb_u32(&b, 0);
        mb_u64(&b, offs ? offs(i) : (uint64_t)i * 32);
    }
    static const unsigned char zero[32];
    mb_put(&b, zero, (32 - b.n % 32) % 32);
    for (int64_t i = 0; i < n; i++) mb_put(&b, zero, 32);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b.p, 1, b.n, f) == b.n && fclose(f) == 0);
    free(b.p);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Looking up every tensor of a 60,000-tensor file by name: a linear scan per
 * lookup (1.8e9 name compares, the quadratic binding of issue 15) takes many
 * seconds; the name index takes milliseconds. CPU time, so load does not count. */
static void test_many_tensors(void) {
    Err err;
    err_init(&err);
    const int64_t n = 60000;
    const char *path = tmp_path("many.gguf");
    write_many(path, n, NULL);
    Gguf *g;
    double t0 = cpu_seconds();
    CHECK_OK(gguf_open(path, &g, &err), err);
    CHECK(g->n_tensors == n);
    for (int64_t i = n - 1; i >= 0; i--) {
        char name[32];
        snprintf(name, sizeof name, "t%lld", (long long)i);
        const GgufTensor *t = gguf_find_tensor(g, name);
        CHECK(t && t == &g->tensors[i]);
    }
    CHECK(gguf_find_tensor(g, "t60000") == NULL && gguf_find_tensor(g, "t") == NULL);
    CHECK(gguf_find(g, "general.alignment") == NULL);
    double dt = cpu_seconds() - t0;
    CHECKF(dt < 1.0, "opening and looking up %lld tensors took %.2f s of CPU", (long long)n, dt);
    gguf_free(g);
}

static uint64_t offs_overlap(int64_t i) { return i == 2 ? 32 : (uint64_t)i * 32; } /* t2 shares t1's bytes */

static void test_overlap(void) {
    Err err;
    err_init(&err);
    const char *path = tmp_path("overlap.gguf");
    write_many(path, 4, offs_overlap);
    Gguf *g = NULL;
    CHECK(gguf_open(path, &g, &err) == ST_ERR_FORMAT && !g);
    CHECKF(strstr(err.detail, "tensors 't1' (data offset 32, 32 bytes) and 't2' (data offset 32) overlap"), "%s",
           err.detail);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/qs_gguf_XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(tmpdir) != NULL);
    test_synth_roundtrip();
    test_synth_types();
    test_shared();
    test_nested();
    test_malformed();
    test_many_tensors();
    test_overlap();
    test_fuzz();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    return testlib_done("test_gguf");
}
