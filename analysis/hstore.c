#include "analysis/hstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/assert.h"
#include "core/dist.h"
#include "core/mapfile.h"
#include "kernels/cpu.h"
#include "kernels/f32gemm.h"
#include "kernels/sgemm.h"

/* Rows per block of the upper block triangle: a multiple of the GEMM's 12-row
 * tile; the diagonal squares computed in full cost HB/w extra (9 % at 2048). */
#define HB 192
/* Rows per panel of the OpenBLAS path: fixed, so the bytes of H do not depend
 * on the thread count (which element a ssyrk or a sgemm computes changes its
 * float32 rounding). */
#define PB (2 * HB)

struct HStoreAux {
    double *acc;             /* in_ram: packed float64 upper triangles, all matrices */
    size_t *acc_off;         /* (n_layers * 4) element offset of each matrix in acc */
    float *xt;               /* (max width, max_T) the batch transposed (AVX-512 path only) */
    float *blk;              /* (n_threads, HB * max width) GEMM output per thread; OpenBLAS: (PB, max width) */
    int n_threads;
    struct GemmWork *gw;     /* NULL: no AVX-512 GEMM here (OpenBLAS, add_blas) */
    uint64_t *sums;          /* (n_layers * 4) checksum of each stored matrix */
    unsigned char *verified; /* (n_layers * 4) checksum checked once */
    int dfd;                 /* layered: the file opened O_DIRECT for the layer writes, -1: none */
    double *cache[HSTORE_TAPS]; /* hstore_get_f64: the matrix of cache_layer per tap */
    int64_t cache_layer[HSTORE_TAPS];
};

/* === Layout === */

static size_t packed_len(int64_t w) { return (size_t)w * (size_t)(w + 1) / 2; }

static size_t align_up(size_t n) { return (n + HSTORE_ALIGN - 1) / HSTORE_ALIGN * HSTORE_ALIGN; }

size_t hstore_header_bytes(int64_t n_layers) {
    return align_up(64 + (size_t)(n_layers > 0 ? n_layers : 0) * HSTORE_TAPS * 8);
}

size_t hstore_bytes(int64_t n_layers, const int64_t width[HSTORE_TAPS]) {
    if (n_layers <= 0 || n_layers > ((int64_t)1 << 20)) return 0;
    size_t per = 0;
    for (int t = 0; t < HSTORE_TAPS; t++) {
        if (width[t] <= 0 || width[t] > ((int64_t)1 << 20)) return 0;
        per += align_up(packed_len(width[t]) * sizeof(float));
    }
    size_t all;
    if (!core_mul_ok(per, (size_t)n_layers, &all)) return 0;
    size_t h = hstore_header_bytes(n_layers);
    return all + h < all ? 0 : all + h;
}

/* Byte offset of matrix (layer, tap) in the file. */
static size_t file_off(const HStore *hs, int64_t layer, int tap) {
    size_t per = 0, pre = 0;
    for (int t = 0; t < HSTORE_TAPS; t++) {
        size_t b = align_up(packed_len(hs->width[t]) * sizeof(float));
        if (t < tap) pre += b;
        per += b;
    }
    return hstore_header_bytes(hs->n_layers) + (size_t)layer * per + pre;
}

/* Element offset of row i in a packed (w, w) upper triangle. */
static size_t row_off(int64_t w, int64_t i) { return (size_t)(i * w - i * (i - 1) / 2); }

/* === Checksum ===
 * xxHash64-style: four 64-bit lanes over 32-byte stripes, streaming, so the
 * converter can hash a matrix in pieces. A zeroed or shifted range changes it. */
#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

typedef struct HSum {
    uint64_t v[4];
    uint64_t n;
} HSum;

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static void hsum_init(HSum *s) {
    s->v[0] = P1 + P2;
    s->v[1] = P2;
    s->v[2] = 0;
    s->v[3] = 0 - P1;
    s->n = 0;
}

static uint64_t rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only (x86-64); the file is little-endian */
}

/* n must be a multiple of 32 except on the last call. */
static void hsum_add(HSum *s, const void *data, size_t n) {
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) s->v[k] = rotl(s->v[k] + rd64(p + i + 8 * k) * P2, 31) * P1;
    if (i < n) {
        unsigned char tail[32] = {0};
        memcpy(tail, p + i, n - i);
        for (int k = 0; k < 4; k++) s->v[k] = rotl(s->v[k] + rd64(tail + 8 * k) * P2, 31) * P1;
    }
    s->n += n;
}

static uint64_t hsum_final(const HSum *s) {
    uint64_t h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18) + s->n;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

/* === Create / accumulate === */

size_t hstore_ram_limit(void) {
    const char *e = getenv("QS_H_RAM_MB");
    if (e && *e) return (size_t)strtoull(e, NULL, 10) << 20;
    long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || ps <= 0) return 0;
    return (size_t)pages * (size_t)ps / 4;
}

static int64_t max_width(const HStore *hs) {
    int64_t m = 0;
    for (int t = 0; t < HSTORE_TAPS; t++) m = hs->width[t] > m ? hs->width[t] : m;
    return m;
}

static void aux_free(struct HStoreAux *a) {
    if (!a) return;
    core_free_aligned(a->acc);
    free(a->acc_off);
    core_free_aligned(a->xt);
    core_free_aligned(a->blk);
    gemm_work_free(a->gw);
    if (a->dfd >= 0) close(a->dfd);
    free(a->sums);
    free(a->verified);
    for (int t = 0; t < HSTORE_TAPS; t++) core_free_aligned(a->cache[t]);
    free(a);
}

static Status aux_new(HStore *hs, Err *err) {
    size_t nm = (size_t)hs->n_layers * HSTORE_TAPS;
    hs->aux = core_calloc(1, sizeof *hs->aux);
    if (!hs->aux) return err_set(err, ST_ERR_NOMEM, "%s: H store", hs->path);
    hs->aux->dfd = -1;
    hs->aux->sums = core_calloc(nm, sizeof *hs->aux->sums);
    hs->aux->verified = core_calloc(nm, 1);
    if (!hs->aux->sums || !hs->aux->verified) return err_set(err, ST_ERR_NOMEM, "%s: H checksums", hs->path);
    return ST_OK;
}

static Status hstore_create_mode(HStore *hs, const char *path, int64_t n_layers, const int64_t width[HSTORE_TAPS],
                                 int64_t max_T, Pool *pool, int layered, Err *err);

static Status err_disk(Err *err, const char *path, const char *what, int e, size_t bytes) {
    if (e == ENOSPC)
        return err_set(err, ST_ERR_IO, "%s: the disk is full (ENOSPC) %s (H needs %zu bytes)", path, what, bytes);
    return err_set(err, ST_ERR_IO, "%s: %s: %s", path, what, strerror(e));
}

/* Bytes of float64 accumulators for one layer's four matrices. */
static size_t layer_acc_elems(const int64_t width[HSTORE_TAPS]) {
    size_t n = 0;
    for (int t = 0; t < HSTORE_TAPS; t++) n += packed_len(width[t]);
    return n;
}

Status hstore_create(HStore *hs, const char *path, int64_t n_layers, const int64_t width[HSTORE_TAPS],
                     int64_t max_T, Pool *pool, Err *err) {
    return hstore_create_mode(hs, path, n_layers, width, max_T, pool, 0, err);
}

Status hstore_create_layered(HStore *hs, const char *path, int64_t n_layers, const int64_t width[HSTORE_TAPS],
                             int64_t max_T, Pool *pool, Err *err) {
    return hstore_create_mode(hs, path, n_layers, width, max_T, pool, 1, err);
}

static Status hstore_create_mode(HStore *hs, const char *path, int64_t n_layers, const int64_t width[HSTORE_TAPS],
                                 int64_t max_T, Pool *pool, int layered, Err *err) {
    memset(hs, 0, sizeof *hs);
    Status st = ST_OK;
    int created = 0;
    size_t bytes = hstore_bytes(n_layers, width);
    int no_file = path == NULL; /* layered sums only (another MPI rank writes the file) */
    if (no_file) path = "H sums of this rank";
    if (bytes == 0 || max_T <= 0) return err_set(err, ST_ERR_ARG, "%s: bad H store dimensions", path);
    hs->n_layers = n_layers;
    memcpy(hs->width, width, sizeof hs->width);
    hs->max_T = max_T;
    hs->pool = pool;
    hs->bytes = bytes;
    hs->path = core_strdup(path);
    if (!hs->path) return err_set(err, ST_ERR_NOMEM, "path");
    if ((st = aux_new(hs, err))) goto fail;
    struct HStoreAux *a = hs->aux;
    int64_t wmax = max_width(hs);
    a->n_threads = pool ? pool_size(pool) : 1;
    size_t blk_rows = (size_t)a->n_threads * HB > PB ? (size_t)a->n_threads * HB : PB;
    a->blk = core_alloc_aligned(blk_rows * (size_t)wmax, sizeof(float));
    if (!a->blk) {
        st = err_set(err, ST_ERR_NOMEM, "%s: H staging buffers", path);
        goto fail;
    }
    /* the own GEMM's tiles where AVX-512 runs them; else OpenBLAS's ssyrk in
     * fixed 384-row panels (add_blas), faster than the AVX2 dot kernel here */
    if (cpu_has_avx512f()) {
        if ((st = gemm_work_new(a->n_threads, &a->gw, err))) goto fail;
        if (!(a->xt = core_alloc_aligned((size_t)wmax * (size_t)max_T, sizeof(float)))) {
            st = err_set(err, ST_ERR_NOMEM, "%s: H staging buffers", path);
            goto fail;
        }
    }
    /* Layered: float64 sums of one layer at a time, if they fit the RAM limit. */
    hs->layered = layered && layer_acc_elems(width) * sizeof(double) <= hstore_ram_limit();
    size_t nm = hs->layered ? HSTORE_TAPS : (size_t)n_layers * HSTORE_TAPS, acc_elems = 0;
    a->acc_off = core_calloc(nm, sizeof *a->acc_off);
    if (!a->acc_off) {
        st = err_set(err, ST_ERR_NOMEM, "%s: H offsets", path);
        goto fail;
    }
    for (size_t i = 0; i < nm; i++) {
        a->acc_off[i] = acc_elems;
        acc_elems += packed_len(width[i % HSTORE_TAPS]);
    }
    if (no_file) {
        if (!hs->layered || !(a->acc = core_alloc_aligned(acc_elems, sizeof(double)))) {
            st = err_set(err, ST_ERR_NOMEM, "%s: one layer's float64 H (%zu bytes) does not fit QS_H_RAM_MB", path,
                         acc_elems * sizeof(double));
            goto fail;
        }
        memset(a->acc, 0, acc_elems * sizeof(double));
        hs->in_ram = 1;
        hs->writable = 1;
        return ST_OK;
    }
    hs->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (hs->fd < 0) {
        st = err_set(err, ST_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    hs->has_fd = 1;
    created = 1;
    /* Reserve every block now: a full disk fails here, by name, before the
     * pass, instead of as SIGBUS when a write through the mapping finds no block. */
    int e = posix_fallocate(hs->fd, 0, (off_t)bytes);
    if (e != 0) {
        st = err_disk(err, path, "cannot reserve the file", e, bytes);
        goto fail;
    }
    hs->in_ram = acc_elems * sizeof(double) <= hstore_ram_limit();
    if (hs->in_ram) {
        a->acc = core_alloc_aligned(acc_elems, sizeof(double));
        if (!a->acc) hs->in_ram = hs->layered = 0;
        else memset(a->acc, 0, acc_elems * sizeof(double));
    }
    if (!hs->in_ram) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, hs->fd, 0);
        if (p == MAP_FAILED) {
            st = err_set(err, ST_ERR_IO, "%s: cannot map %zu bytes: %s", path, bytes, strerror(errno));
            goto fail;
        }
        hs->map = p;
    }
    /* The layer writes bypass the page cache where the file system allows it
     * (O_DIRECT): no copy of H through the kernel (on the tinyllama synth that
     * copy was 7 % of calibration's CPU time) and no gigabytes of dirty cache
     * on the shared machine. Elsewhere (tmpfs) plain pwrite. */
    if (hs->layered) a->dfd = open(path, O_WRONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC);
    hs->writable = 1;
    return ST_OK;
fail:
    if (created) unlink(path);
    hstore_close(hs);
    return st;
}

typedef struct AddJob {
    HStore *hs;
    int64_t w, T;
    double *acc64;           /* one of these two: the packed matrix */
    float *acc32;
    _Atomic int64_t next;
    int64_t nb;
    int64_t i0;              /* OpenBLAS panels: the panel's first row */
} AddJob;

/* Adds rows [i0 + rb, i0 + re) of the panel product c (rows from i0, columns
 * [i0, w), row stride w - i0), upper triangle only, into the packed matrix. */
static void add_rows(const AddJob *j, int64_t i0, int64_t rb, int64_t re, const float *c) {
    int64_t w = j->w, N = w - i0;
    for (int64_t r = rb; r < re; r++) {
        int64_t i = i0 + r, len = w - i;
        const float *src = c + r * N + r;
        size_t off = row_off(w, i);
        if (j->acc64) {
            double *dst = j->acc64 + off;
            for (int64_t k = 0; k < len; k++) dst[k] += src[k];
        } else {
            float *dst = j->acc32 + off;
            for (int64_t k = 0; k < len; k++) dst[k] += src[k];
        }
    }
}

static void job_blocks(void *arg, int64_t b, int64_t e, int tid) {
    (void)b;
    (void)e;
    AddJob *j = arg;
    struct HStoreAux *a = j->hs->aux;
    float *c = a->blk + (size_t)tid * HB * (size_t)max_width(j->hs);
    for (;;) {
        int64_t blk = atomic_fetch_add(&j->next, 1);
        if (blk >= j->nb) break;
        int64_t i0 = blk * HB, M = j->w - i0 < HB ? j->w - i0 : HB, N = j->w - i0;
        const float *A = a->xt + i0 * j->T;
        gemm_f32_nt(a->gw, tid, M, N, j->T, A, j->T, A, j->T, 0.0f, c, N);
        add_rows(j, i0, 0, M, c);
    }
}

static void job_panel_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    AddJob *j = arg;
    add_rows(j, j->i0, b, e, j->hs->aux->blk);
}

/* No AVX-512 kernel: OpenBLAS (on threads of its own) straight from x (T, w),
 * in panels of PB rows (the blk buffer): the diagonal square by
 * ssyrk (its upper triangle only: no products below the diagonal), the rest
 * of the panel's rows by one sgemm, then the panel's float32 -> float64 adds
 * split over the pool. Against 192-row sgemm blocks of the transposed batch
 * this skips the transpose and the lower halves of the diagonal squares:
 * 54 -> 82 useful GFLOP per CPU-second at width 2048 on a Zen 3 (AVX2),
 * 68 -> 79 at 5632. */
static void add_blas(AddJob *j, const float *x) {
    struct HStoreAux *a = j->hs->aux;
    int64_t w = j->w, T = j->T;
    for (int64_t i0 = 0; i0 < w; i0 += PB) {
        int64_t M = w - i0 < PB ? w - i0 : PB, N = w - i0;
        ssyrk_upper_tn(M, T, x + i0, w, 0.0f, a->blk, N);
        if (N > M) sgemm_mul_tn(M, N - M, T, x + i0, w, x + i0 + M, w, 0.0f, a->blk + M, N);
        j->i0 = i0;
        pool_for(j->hs->pool, M, 16, job_panel_rows, j);
    }
}

void hstore_add(HStore *hs, int64_t layer, int tap, const float *x, int64_t T) {
    ASSERT(hs->writable && hs->aux && T <= hs->max_T && layer >= 0 && layer < hs->n_layers && tap >= 0 &&
           tap < HSTORE_TAPS);
    if (T <= 0) return;
    struct HStoreAux *a = hs->aux;
    int64_t w = hs->width[tap];
    AddJob j = {.hs = hs, .w = w, .T = T, .nb = (w + HB - 1) / HB};
    atomic_init(&j.next, 0);
    ASSERT(!hs->layered || layer == hs->layers_done);
    size_t mi = hs->layered ? (size_t)tap : (size_t)layer * HSTORE_TAPS + (size_t)tap;
    if (hs->in_ram) j.acc64 = a->acc + a->acc_off[mi];
    else j.acc32 = (float *)(void *)(hs->map + file_off(hs, layer, tap));
    if (a->gw) {
        /* xt (w, T) = xᵀ in 32x32 tiles, so both GEMM operands are row slices of it. */
        for (int64_t r0 = 0; r0 < T; r0 += 32)
            for (int64_t c0 = 0; c0 < w; c0 += 32) {
                int64_t r1 = r0 + 32 < T ? r0 + 32 : T, c1 = c0 + 32 < w ? c0 + 32 : w;
                for (int64_t cc = c0; cc < c1; cc++)
                    for (int64_t r = r0; r < r1; r++) a->xt[cc * T + r] = x[r * w + cc];
            }
        pool_for(hs->pool, a->n_threads, 1, job_blocks, &j);
    } else {
        add_blas(&j, x);
    }
    if (tap == 0 && layer == 0) hs->n_rows += T;
}

/* === Finish / open === */

static Status pwrite_all(const HStore *hs, const void *buf, size_t n, size_t off, Err *err);

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static Status pwrite_all(const HStore *hs, const void *buf, size_t n, size_t off, Err *err) {
    const unsigned char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(hs->fd, p + done, n - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return err_disk(err, hs->path, "write", w < 0 ? errno : EIO, hs->bytes);
        done += (size_t)w;
    }
    return ST_OK;
}

enum { PIECE = 1 << 20 }; /* floats converted and written at a time (a multiple of 8) */

/* Writes k floats of stage at byte off. Through the O_DIRECT descriptor
 * when there is one: off is page-aligned (matrices start on HSTORE_ALIGN)
 * and the length is rounded up to a page with zeros, which stay inside the
 * matrix's own padded slot; stage has room (PIECE is a multiple of a page). */
static Status write_piece(HStore *hs, float *stage, size_t k, size_t off, Err *err) {
    struct HStoreAux *a = hs->aux;
    if (a->dfd >= 0) {
        size_t bytes = k * sizeof *stage, padded = align_up(bytes);
        memset((unsigned char *)stage + bytes, 0, padded - bytes);
        size_t done = 0;
        while (done < padded) {
            ssize_t w = pwrite(a->dfd, (unsigned char *)stage + done, padded - done, (off_t)(off + done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0 || (size_t)w % HSTORE_ALIGN) break;
            done += (size_t)w;
        }
        if (done == padded) return ST_OK;
        if (errno == ENOSPC) return err_disk(err, hs->path, "write", ENOSPC, hs->bytes);
        close(a->dfd); /* refused (alignment, file system): the ordinary descriptor from here on */
        a->dfd = -1;
    }
    return pwrite_all(hs, stage, k * sizeof *stage, off, err);
}

/* Writes layer l's four matrices: converted from the float64 sums at acc
 * (offsets acc_off[0..3] from acc_base) and written, or (file-mapped sums)
 * only checksummed; records their checksums. stage: PIECE floats. */
static Status finish_layer(HStore *hs, int64_t l, const double *acc_base, const size_t *acc_off, float *stage,
                           Err *err) {
    struct HStoreAux *a = hs->aux;
    for (int t = 0; t < HSTORE_TAPS; t++) {
        size_t mi = (size_t)l * HSTORE_TAPS + (size_t)t, n = packed_len(hs->width[t]), off = file_off(hs, l, t);
        HSum s;
        hsum_init(&s);
        if (acc_base) {
            const double *src = acc_base + acc_off[t];
            for (size_t i = 0; i < n; i += PIECE) {
                size_t k = n - i < PIECE ? n - i : PIECE;
                for (size_t q = 0; q < k; q++) stage[q] = (float)src[i + q];
                hsum_add(&s, stage, k * sizeof *stage);
                Status st = write_piece(hs, stage, k, off + i * sizeof *stage, err);
                if (st) return st;
            }
        } else {
            hsum_add(&s, hs->map + off, n * sizeof(float));
        }
        a->sums[mi] = hsum_final(&s);
        a->verified[mi] = 1;
    }
    return ST_OK;
}

Status hstore_layer_done(HStore *hs, int64_t layer, Err *err) {
    ASSERT(hs->writable && hs->aux && layer == hs->layers_done && layer < hs->n_layers);
    if (!hs->layered) {
        hs->layers_done++;
        return ST_OK;
    }
    if (!hs->has_fd) { /* sums only: another rank writes them */
        memset(hs->aux->acc, 0, layer_acc_elems(hs->width) * sizeof(double));
        hs->layers_done++;
        return ST_OK;
    }
    float *stage = NULL; /* page-aligned for O_DIRECT */
    if (posix_memalign((void **)&stage, HSTORE_ALIGN, (size_t)PIECE * sizeof *stage) != 0)
        return err_set(err, ST_ERR_NOMEM, "%s: H staging", hs->path);
    Status st = finish_layer(hs, layer, hs->aux->acc, hs->aux->acc_off, stage, err);
    free(stage);
    if (st) return st;
    memset(hs->aux->acc, 0, layer_acc_elems(hs->width) * sizeof(double));
    hs->layers_done++;
    return ST_OK;
}

Status hstore_layer_sum_ranks(HStore *hs, Err *err) {
    if (dist_size() == 1) return ST_OK;
    if (!hs->layered)
        return err_set(err, ST_ERR_STATE, "%s: H is not kept one layer at a time (one layer's float64 sums exceed "
                       "QS_H_RAM_MB): it cannot be summed across MPI ranks", hs->path);
    /* rows are counted at layer 0 (every layer sees the same rows) */
    Status st = hs->layers_done == 0 ? dist_sum_i64(&hs->n_rows, 1, err) : ST_OK;
    return st ? st : dist_reduce_sum_f64(hs->aux->acc, (int64_t)layer_acc_elems(hs->width), 0, err);
}

Status hstore_finish(HStore *hs, uint64_t id, Err *err) {
    ASSERT(hs->writable && hs->aux);
    ASSERT(!hs->layered || hs->layers_done == hs->n_layers);
    struct HStoreAux *a = hs->aux;
    Status st = ST_OK;
    float *stage = NULL;
    if (hs->in_ram && !(stage = malloc((size_t)PIECE * sizeof *stage)))
        return err_set(err, ST_ERR_NOMEM, "%s: H staging", hs->path);
    for (int64_t l = 0; !hs->layered && l < hs->n_layers; l++) {
        const double *base = hs->in_ram ? a->acc : NULL;
        if ((st = finish_layer(hs, l, base, hs->in_ram ? a->acc_off + l * HSTORE_TAPS : NULL, stage, err)))
            goto done;
    }
    unsigned char *h = calloc(1, hstore_header_bytes(hs->n_layers));
    if (!h) {
        st = err_set(err, ST_ERR_NOMEM, "%s: header", hs->path);
        goto done;
    }
    memcpy(h, "QSH6", 4);
    put_u32(h + 4, HSTORE_VERSION);
    put_u64(h + 8, id);
    put_u64(h + 16, (uint64_t)hs->n_layers);
    for (int t = 0; t < HSTORE_TAPS; t++) put_u64(h + 24 + 8 * t, (uint64_t)hs->width[t]);
    put_u64(h + 56, (uint64_t)hs->n_rows);
    for (size_t i = 0; i < (size_t)hs->n_layers * HSTORE_TAPS; i++) put_u64(h + 64 + 8 * i, a->sums[i]);
    st = pwrite_all(hs, h, hstore_header_bytes(hs->n_layers), 0, err);
    free(h);
    if (st) goto done;
    /* Like the stats, session and model writers: on disk before anyone renames it into place. */
    if (fsync(hs->fd) != 0) {
        st = err_disk(err, hs->path, "fsync", errno, hs->bytes);
        goto done;
    }
    hs->id = id;
    hs->writable = 0;
    core_free_aligned(a->acc);
    a->acc = NULL;
    if (!hs->map) {
        void *p = mmap(NULL, hs->bytes, PROT_READ, MAP_SHARED, hs->fd, 0);
        if (p == MAP_FAILED) {
            st = err_set(err, ST_ERR_IO, "%s: cannot map: %s", hs->path, strerror(errno));
            goto done;
        }
        hs->map = p;
    }
done:
    free(stage);
    return st;
}

Status hstore_open(HStore *hs, const char *path, uint64_t id, int64_t n_layers,
                   const int64_t width[HSTORE_TAPS], Err *err) {
    memset(hs, 0, sizeof *hs);
    Status st = ST_OK;
    hs->path = core_strdup(path);
    if (!hs->path) return err_set(err, ST_ERR_NOMEM, "path");
    hs->n_layers = n_layers;
    memcpy(hs->width, width, sizeof hs->width);
    size_t want = hstore_bytes(n_layers, width);
    if (want == 0) {
        st = err_set(err, ST_ERR_FORMAT, "%s: bad H dimensions (%lld layers)", path, (long long)n_layers);
        goto fail;
    }
    if ((st = aux_new(hs, err))) goto fail;
    hs->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (hs->fd < 0) {
        st = err_set(err, ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    hs->has_fd = 1;
    struct stat sb;
    if (fstat(hs->fd, &sb) != 0) {
        st = err_set(err, ST_ERR_IO, "%s: stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != (uint64_t)want) {
        st = err_set(err, ST_ERR_FORMAT, "%s: size %lld bytes, expected %zu for %lld layers (H format %d)", path,
                     (long long)sb.st_size, want, (long long)n_layers, HSTORE_VERSION);
        goto fail;
    }
    void *p = mmap(NULL, want, PROT_READ, MAP_SHARED, hs->fd, 0);
    if (p == MAP_FAILED) {
        st = err_set(err, ST_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        goto fail;
    }
    hs->map = p;
    hs->bytes = want;
    const unsigned char *h = hs->map;
    if (memcmp(h, "QSH6", 4) != 0) {
        st = err_set(err, ST_ERR_FORMAT, "%s: offset 0: magic is not QSH6", path);
        goto fail;
    }
    if (get_u32(h + 4) != HSTORE_VERSION) {
        st = err_set(err, ST_ERR_FORMAT, "%s: offset 4: version %u, expected %d (recalibrate)", path,
                     get_u32(h + 4), HSTORE_VERSION);
        goto fail;
    }
    if (get_u64(h + 8) != id) {
        st = err_set(err, ST_ERR_MISMATCH, "%s: offset 8: id %016llx does not match the stats file (%016llx)",
                     path, (unsigned long long)get_u64(h + 8), (unsigned long long)id);
        goto fail;
    }
    if ((int64_t)get_u64(h + 16) != n_layers) {
        st = err_set(err, ST_ERR_FORMAT, "%s: offset 16: n_layers %lld, expected %lld", path,
                     (long long)get_u64(h + 16), (long long)n_layers);
        goto fail;
    }
    for (int t = 0; t < HSTORE_TAPS; t++)
        if ((int64_t)get_u64(h + 24 + 8 * t) != width[t]) {
            st = err_set(err, ST_ERR_FORMAT, "%s: offset %d: width[%d] %lld, expected %lld", path, 24 + 8 * t,
                         t, (long long)get_u64(h + 24 + 8 * t), (long long)width[t]);
            goto fail;
        }
    hs->n_rows = (int64_t)get_u64(h + 56);
    for (size_t i = 0; i < (size_t)n_layers * HSTORE_TAPS; i++) hs->aux->sums[i] = get_u64(h + 64 + 8 * i);
    hs->id = id;
    return ST_OK;
fail:
    hstore_close(hs);
    return st;
}

/* Checks (once) the stored checksum of (layer, tap); returns its packed data. */
static Status packed_get(const HStore *hs, int64_t layer, int tap, const float **out, Err *err) {
    *out = NULL;
    if (!hs->map || hs->writable || !hs->aux || layer < 0 || layer >= hs->n_layers || tap < 0 || tap >= HSTORE_TAPS)
        return err_set(err, ST_ERR_STATE, "%s: H of layer %lld tap %d is not readable", hs->path ? hs->path : "H",
                       (long long)layer, tap);
    size_t mi = (size_t)layer * HSTORE_TAPS + (size_t)tap, off = file_off(hs, layer, tap);
    const float *p = (const float *)(const void *)(hs->map + off);
    if (!hs->aux->verified[mi]) {
        HSum s;
        hsum_init(&s);
        hsum_add(&s, p, packed_len(hs->width[tap]) * sizeof(float));
        if (hsum_final(&s) != hs->aux->sums[mi])
            return err_set(err, ST_ERR_FORMAT,
                           "%s: H of layer %lld tap %d (bytes %zu..%zu) fails its checksum: the file is corrupt "
                           "(recalibrate)",
                           hs->path, (long long)layer, tap, off, off + packed_len(hs->width[tap]) * sizeof(float));
        hs->aux->verified[mi] = 1;
    }
    *out = p;
    return ST_OK;
}

#define UNPACK(T)                                                                                         \
    do {                                                                                                  \
        const float *p;                                                                                   \
        Status st = packed_get(hs, layer, tap, &p, err);                                                  \
        if (st) return st;                                                                                \
        int64_t w = hs->width[tap];                                                                       \
        for (int64_t i = 0; i < w; i++) {                                                                 \
            const float *src = p + row_off(w, i);                                                         \
            T *dst = out + i * w;                                                                         \
            for (int64_t j = i; j < w; j++) dst[j] = (T)src[j - i];                                       \
        }                                                                                                 \
        enum { TL = 64 };                                                                                 \
        for (int64_t i0 = 0; i0 < w; i0 += TL)                                                            \
            for (int64_t k0 = 0; k0 <= i0; k0 += TL) {                                                    \
                int64_t i1 = i0 + TL < w ? i0 + TL : w, k1 = k0 + TL < w ? k0 + TL : w;                   \
                for (int64_t i = i0; i < i1; i++)                                                         \
                    for (int64_t k = k0; k < k1 && k < i; k++) out[i * w + k] = out[k * w + i];           \
            }                                                                                             \
        return ST_OK;                                                                                     \
    } while (0)

Status hstore_load_f32(const HStore *hs, int64_t layer, int tap, float *out, Err *err) { UNPACK(float); }

Status hstore_load_f64(const HStore *hs, int64_t layer, int tap, double *out, Err *err) { UNPACK(double); }

/* Drops the resident file pages of matrix (layer, tap) (those wholly inside
 * it) once its float64 copy is in the cache: the mapping is read-only and the
 * file complete, so this only unmaps clean pages, and a later read pages them
 * in again. Keeps a walk over the layers at one layer's H. */
static void release_matrix(const HStore *hs, int64_t layer, int tap) {
    if (!hs->map || hs->writable) return;
    (void)mapfile_release(hs->map + file_off(hs, layer, tap), packed_len(hs->width[tap]) * sizeof(float));
}

void hstore_prefetch(const HStore *hs, int64_t layer) {
    if (!hs || !hs->map || hs->writable || layer < 0 || layer >= hs->n_layers) return;
    const unsigned char *b = hs->map + file_off(hs, layer, 0);
    const unsigned char *e =
        hs->map + file_off(hs, layer, HSTORE_TAPS - 1) + packed_len(hs->width[HSTORE_TAPS - 1]) * sizeof(float);
    mapfile_willneed(b, (size_t)(e - b));
}

void hstore_release(const HStore *hs, int64_t layer) {
    if (!hs || layer < 0 || layer >= hs->n_layers) return;
    for (int t = 0; t < HSTORE_TAPS; t++) release_matrix(hs, layer, t);
}

Status hstore_get_f64(const HStore *hs, int64_t layer, int tap, const double **out, Err *err) {
    *out = NULL;
    if (!hs->aux || tap < 0 || tap >= HSTORE_TAPS)
        return err_set(err, ST_ERR_STATE, "%s: H tap %d is not readable", hs->path ? hs->path : "H", tap);
    struct HStoreAux *a = hs->aux;
    int64_t w = hs->width[tap];
    if (!a->cache[tap]) {
        a->cache[tap] = core_alloc_aligned((size_t)w * (size_t)w, sizeof(double));
        if (!a->cache[tap]) return err_set(err, ST_ERR_NOMEM, "%s: H (%lld x %lld)", hs->path, (long long)w, (long long)w);
        a->cache_layer[tap] = -1;
    }
    if (a->cache_layer[tap] != layer) {
        a->cache_layer[tap] = -1;
        Status st = hstore_load_f64(hs, layer, tap, a->cache[tap], err);
        if (st) return st;
        release_matrix(hs, layer, tap);
        a->cache_layer[tap] = layer;
    }
    *out = a->cache[tap];
    return ST_OK;
}

void hstore_cache_drop(const HStore *hs) {
    if (!hs || !hs->aux) return;
    for (int t = 0; t < HSTORE_TAPS; t++) {
        core_free_aligned(hs->aux->cache[t]);
        hs->aux->cache[t] = NULL;
    }
}

void hstore_close(HStore *hs) {
    if (hs->map) munmap(hs->map, hs->bytes);
    if (hs->has_fd) close(hs->fd);
    free(hs->path);
    aux_free(hs->aux);
    memset(hs, 0, sizeof *hs);
}
