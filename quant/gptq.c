#include "quant/gptq.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "kernels/f32gemm.h"
#include "kernels/linalg.h"
#include "kernels/sgemm.h"
#include "quant/ggml_type.h"
#include "quant/rtn.h"

void gptq_opts_default(GptqOpts *o) {
    o->damp = 0.01;
    o->act_order = 0;
    o->block = 128;
    o->static_groups = 0;
}

/* Rows handled together inside a lazy batch: 128 columns x 256 rows of the
 * transposed weight stay in L2 while the batch's rank-1 updates sweep them. */
#define GPTQ_ROW_TILE 256

typedef struct GptqCtx {
    const QParams *p;
    int64_t n_out, n_in;
    float *Wt;               /* (n_in, n_out): Wt[j] = current W[:, perm[j]] */
    float *E;                /* (block, n_out): (q - w) / U_jj of the batch's columns */
    float *Ub;               /* (block, block): U[i1:i2, i1:i2] row-major */
    const int64_t *perm;     /* (n_in) processing order -> original column */
    int64_t i1, nb;          /* batch start and width */
    int dyn;                 /* OC groups fitted on reaching their first column */
    int64_t go;              /* group length along the grouped dimension */
    float *scale, *zero;     /* (n_groups) */
    uint8_t *codes;          /* (n_out, n_in) one-byte codes (int or fp8), original column order */
    const float *L;          /* (n_in, n_in) lower: Uᵀ */
    /* ggml block formats: the block headers are fitted (the type's own
     * quantizer on the block's current values), the codes chosen by the sweep */
    const GgmlTypeTraits *gt;  /* NULL for int/fp8 formats */
    uint32_t gtype;
    GgmlGrid grid;
    uint8_t *blk;            /* (n_out, rb) the QTensor's blocks */
    size_t rb;               /* bytes per row of blocks */
    const float *qw;         /* (n_in) importance of each input (diag H) for the fit, or NULL: reference fit */
    GemmWork *gw;            /* per-thread GEMM buffers, or NULL: the caller runs OpenBLAS */
    _Atomic int fit_failed;
} GptqCtx;

static inline int64_t gptq_group(const GptqCtx *c, int64_t r, int64_t col) {
    if (c->gt) return r * (c->n_in / c->grid.sub) + col / c->grid.sub;
    if (c->p->dim == GROUP_OC) return r * (c->n_in / c->go) + col / c->go;
    if (c->p->dim == GROUP_IC) return (r / c->go) * c->n_in + col;
    return 0;
}

/* Fits the header of block b of row r from its current values x
 * (block_size): the type's weighted quantizer under the inputs' importance
 * when it has one and qw is set, else its reference quantizer; then reads
 * the sub-blocks' steps and offsets into the scale / zero slots. */
static void gptq_fit_block(const GptqCtx *c, int64_t r, int64_t b, const float *x) {
    int64_t bs = c->gt->block_size;
    uint8_t *blk = c->blk + (size_t)r * c->rb + (size_t)b * c->gt->block_bytes;
    if (c->qw && c->gt->quant_w) c->gt->quant_w(x, blk, bs, c->qw + b * bs);
    else c->gt->quant_ref(x, blk, bs);
    int64_t gi = gptq_group(c, r, b * bs);
    ggml_block_steps(c->gtype, blk, c->scale + gi, c->zero + gi);
}

/* The nearest code of w on a ggml sub-block's grid, and the value it stands for. */
static inline float gptq_grid_quant(const GgmlGrid *g, float step, float offset, float w, int *code) {
    float x = step != 0.0f ? rtn_round_even((w + offset) / step) + (float)g->zoff : (float)g->zoff;
    int q = (int)rtn_clamp(x, 0.0f, (float)g->qmax);
    *code = q;
    return step * (float)(q - g->zoff) - offset;
}

/* One lazy batch for rows [r0, r1): quantize each column, record its scaled
 * error in E and push it onto the batch's later columns. */
static void gptq_batch_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    GptqCtx *c = arg;
    const QParams *p = c->p;
    int64_t n_out = c->n_out, n_in = c->n_in, nb = c->nb;
    const QFormatTraits *t = qformat_traits(p->fmt);
    for (int64_t rs = r0; rs < r1; rs += GPTQ_ROW_TILE) {
        int64_t re = rs + GPTQ_ROW_TILE < r1 ? rs + GPTQ_ROW_TILE : r1;
        for (int64_t i = 0; i < nb; i++) {
            int64_t j = c->i1 + i, col = c->perm[j];
            float *w = c->Wt + j * n_out;
            if (c->dyn && c->gt && j % c->go == 0) {
                /* as below, for a whole ggml block (a K-quant's super-block) */
                float x[256];
                for (int64_t r = rs; r < re; r++) {
                    for (int64_t k = 0; k < c->go; k++) x[k] = c->Wt[(j + k) * n_out + r];
                    gptq_fit_block(c, r, j / c->go, x);
                }
            } else if (c->dyn && j % c->go == 0) {
                /* the group's columns j..j+go-1 lie in this batch and have
                 * received every earlier column's update */
                for (int64_t r = rs; r < re; r++) {
                    float lo = INFINITY, hi = -INFINITY;
                    for (int64_t k = j; k < j + c->go; k++) {
                        float v = c->Wt[k * n_out + r];
                        lo = fminf(lo, v);
                        hi = fmaxf(hi, v);
                    }
                    int64_t gi = gptq_group(c, r, col);
                    if (rtn_fit_group(p->fmt, p->sym, lo, hi, &c->scale[gi], &c->zero[gi], NULL) != ST_OK)
                        atomic_store(&c->fit_failed, 1);
                }
            }
            float d = c->Ub[i * nb + i];
            float *e = c->E + i * n_out;
            for (int64_t r = rs; r < re; r++) {
                int64_t gi = gptq_group(c, r, col);
                int code;
                float v = c->gt ? gptq_grid_quant(&c->grid, c->scale[gi], c->zero[gi], w[r], &code)
                                : t->quant(t, p->sym, c->scale[gi], c->zero[gi], w[r], &code);
                c->codes[r * n_in + col] = (uint8_t)code;
                e[r] = (v - w[r]) / d;
            }
            for (int64_t k = i + 1; k < nb; k++)
                linalg_axpy_f32(re - rs, c->Ub[i * nb + k], e + rs, c->Wt + (c->i1 + k) * n_out + rs);
        }
    }
    /* The batch's errors update every later column at once, for these rows
     * only (rows never interact): Wt[i2:, r0:r1] += L[i2:, i1:i2] · E[:, r0:r1]. */
    int64_t i2 = c->i1 + nb;
    if (c->gw && i2 < n_in)
        gemm_f32_nn(c->gw, tid, n_in - i2, r1 - r0, nb, c->L + i2 * n_in + c->i1, n_in, c->E + r0, n_out, 1.0f,
                    c->Wt + i2 * n_out + r0, n_out);
}

/* Group ranges of the (dead-column-zeroed) original W, for every grouping
 * except dynamic OC groups. */
static Status gptq_fit_static(const float *W, const uint8_t *dead, GptqCtx *c, Err *err) {
    const QParams *p = c->p;
    int64_t n_out = c->n_out, n_in = c->n_in;
    int64_t ng = qparams_n_groups(p, n_out, n_in);
    float *lo = malloc((size_t)ng * sizeof *lo), *hi = malloc((size_t)ng * sizeof *hi);
    Status st = ST_OK;
    if (!lo || !hi) { st = err_set(err, ST_ERR_NOMEM, "gptq group ranges"); goto out; }
    for (int64_t g = 0; g < ng; g++) { lo[g] = INFINITY; hi[g] = -INFINITY; }
    for (int64_t r = 0; r < n_out; r++)
        for (int64_t col = 0; col < n_in; col++) {
            float v = dead[col] ? 0.0f : W[r * n_in + col];
            int64_t g = gptq_group(c, r, col);
            lo[g] = fminf(lo[g], v);
            hi[g] = fmaxf(hi[g], v);
        }
    for (int64_t g = 0; g < ng && !st; g++) st = rtn_fit_group(p->fmt, p->sym, lo[g], hi[g], &c->scale[g], &c->zero[g], err);
out:
    free(lo);
    free(hi);
    return st;
}

/* ggml blocks fitted up front from the (dead-column-zeroed) original W. */
static Status gptq_fit_static_ggml(const float *W, const uint8_t *dead, GptqCtx *c, Err *err) {
    int64_t bs = c->gt->block_size;
    float *x = malloc((size_t)bs * sizeof *x);
    if (!x) return err_set(err, ST_ERR_NOMEM, "gptq block values");
    for (int64_t r = 0; r < c->n_out; r++)
        for (int64_t b = 0; b < c->n_in / bs; b++) {
            for (int64_t k = 0; k < bs; k++) x[k] = dead[b * bs + k] ? 0.0f : W[r * c->n_in + b * bs + k];
            gptq_fit_block(c, r, b, x);
        }
    free(x);
    return ST_OK;
}

/* Sort key for act-order: descending diag H, ties by index (deterministic). */
static int cmp_desc_diag(const void *a, const void *b, void *arg) {
    const double *diag = arg;
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    double di = diag[i], dj = diag[j];
    if (di != dj) return di > dj ? -1 : 1;
    return (i > j) - (i < j);
}

/* Builds A = J·P·(H + lambda·I)·Pᵀ·J (lower triangle; J reverses the order,
 * P the act-order permutation) with dead diagonals set to 1. */
static void gptq_build_a(double *A, const double *Hd, const float *Hf, const int64_t *perm, const uint8_t *dead,
                         int64_t n, double lambda) {
    for (int64_t a = 0; a < n; a++) {
        int64_t pa = perm[n - 1 - a];
        for (int64_t b = 0; b <= a; b++) {
            int64_t pb = perm[n - 1 - b];
            int64_t i = pa < pb ? pa : pb, j = pa < pb ? pb : pa; /* upper triangle only */
            double h = Hd ? Hd[i * n + j] : (double)Hf[i * n + j];
            if (a == b) h = (dead[pa] ? 1.0 : h) + lambda;
            A[a * n + b] = h;
        }
    }
}

struct GptqFactor {
    int64_t n;
    int act_order;
    double damp;             /* the option it was built with */
    float *L;                /* (n, n) lower: Uᵀ, in processing order */
    int64_t *perm;           /* (n) processing order -> original column */
    uint8_t *dead;           /* (n) original columns with H_jj == 0 */
    float *diag;             /* (n) H_jj in original order (1 for dead columns): ggml fits' importance */
    GptqStats st;            /* damp_used, dead_cols, retries, sec_factor */
};

void gptq_factor_free(GptqFactor *f) {
    if (!f) return;
    core_free_aligned(f->L);
    free(f->perm);
    free(f->dead);
    free(f->diag);
    free(f);
}

int64_t gptq_factor_dim(const GptqFactor *f) { return f->n; }

Status gptq_factor_new(const double *Hd, const float *Hf, int64_t n, const GptqOpts *o, Pool *pool,
                       GptqFactor **out, Err *err) {
    *out = NULL;
    GptqOpts defo;
    if (!o) { gptq_opts_default(&defo); o = &defo; }
    if ((Hd == NULL) == (Hf == NULL)) return err_set(err, ST_ERR_ARG, "gptq: give H as float64 or float32 (exactly one)");
    if (n <= 0) return err_set(err, ST_ERR_ARG, "gptq: H dimension %lld", (long long)n);
    if (!(o->damp >= 0 && o->damp < 1))
        return err_set(err, ST_ERR_ARG, "gptq: damp %g must be in [0, 1)", o->damp);
    size_t nn = (size_t)n * (size_t)n;
    Status st = ST_OK;
    double *A = NULL, *diag = NULL;
    GptqFactor *f = core_calloc(1, sizeof *f);
    if (!f) return err_set(err, ST_ERR_NOMEM, "gptq factor");
    f->n = n;
    f->act_order = o->act_order;
    f->damp = o->damp;
    A = core_alloc_aligned(nn, sizeof *A);
    f->L = core_alloc_aligned(nn, sizeof *f->L);
    diag = malloc((size_t)n * sizeof *diag);
    f->perm = malloc((size_t)n * sizeof *f->perm);
    f->dead = calloc((size_t)n, 1);
    f->diag = malloc((size_t)n * sizeof *f->diag);
    if (!A || !f->L || !diag || !f->perm || !f->dead || !f->diag) {
        st = err_set(err, ST_ERR_NOMEM, "gptq: factor buffers for n = %lld", (long long)n);
        goto fail;
    }
    double t0 = clock_now();
    /* dead inputs and damping */
    double mean = 0;
    for (int64_t j = 0; j < n; j++) {
        double h = Hd ? Hd[j * n + j] : (double)Hf[j * n + j];
        if (!isfinite(h) || h < 0) {
            st = err_set(err, ST_ERR_NUMERIC, "gptq: H[%lld][%lld] = %g", (long long)j, (long long)j, h);
            goto fail;
        }
        if (h == 0) { f->dead[j] = 1; f->st.dead_cols++; h = 1; }
        diag[j] = h;
        f->diag[j] = (float)h;
        mean += h;
    }
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++) f->perm[j] = j;
    if (o->act_order) qsort_r(f->perm, (size_t)n, sizeof *f->perm, cmp_desc_diag, diag);
    /* U = upper Cholesky factor of (H + lambda I)^-1, via the reversal
     * identity: if J·H·J = M·Mᵀ (M lower), then H^-1 = UᵀU with U = J·M^-1·J. */
    double lambda = o->damp * mean;
    for (;;) {
        gptq_build_a(A, Hd, Hf, f->perm, f->dead, n, lambda);
        int r = linalg_cholesky_lower_pool(A, n, pool);
        if (r == 0) break;
        if (r < 0) { st = err_set(err, ST_ERR_NOMEM, "gptq: factorization scratch for n = %lld", (long long)n); goto fail; }
        if (f->st.retries == 0) /* no damping cures a NaN: say where it is (checked once, on failure only) */
            for (size_t k = 0; k < nn; k++) {
                double h = Hd ? Hd[k] : (double)Hf[k];
                if (!isfinite(h)) {
                    st = err_set(err, ST_ERR_NUMERIC,
                                 "gptq: H[%lld][%lld] = %g: the calibration saw non-finite activations; recalibrate",
                                 (long long)(k / (size_t)n), (long long)(k % (size_t)n), h);
                    goto fail;
                }
            }
        if (++f->st.retries > 6) {
            st = err_set(err, ST_ERR_NUMERIC, "gptq: H is not positive definite even with damping %g", lambda);
            goto fail;
        }
        lambda = lambda > 0 ? lambda * 10 : 1e-6 * mean;
    }
    int ri = linalg_trinv_lower_pool(A, n, pool);
    if (ri) {
        st = ri < 0 ? err_set(err, ST_ERR_NOMEM, "gptq: inversion scratch for n = %lld", (long long)n)
                    : err_set(err, ST_ERR_NUMERIC, "gptq: singular Cholesky factor");
        goto fail;
    }
    /* L = Uᵀ (lower): L[a][b] = U[b][a] = M^-1[n-1-b][n-1-a] */
    for (int64_t a0 = 0; a0 < n; a0 += 64) /* 64x64 tiles: one side of a transpose is strided */
        for (int64_t b0 = 0; b0 <= a0; b0 += 64)
            for (int64_t a = a0; a < a0 + 64 && a < n; a++)
                for (int64_t b = b0; b < b0 + 64 && b <= a; b++) f->L[a * n + b] = (float)A[(n - 1 - b) * n + (n - 1 - a)];
    f->st.damp_used = lambda;
    f->st.sec_factor = clock_now() - t0;
    core_free_aligned(A);
    free(diag);
    *out = f;
    return ST_OK;
fail:
    core_free_aligned(A);
    free(diag);
    gptq_factor_free(f);
    return st;
}

/* GPTQ needs scales to fit: an int or fp8 grid, or a ggml block type whose codes it can choose. */
static Status gptq_format_check(QFormat fmt, Err *err) {
    const QFormatTraits *t = qformat_traits(fmt);
    GgmlGrid g;
    if (t->fit || (t->family == QFAM_GGML && ggml_type_grid((uint32_t)t->ggml_type, &g) == 0)) return ST_OK;
    return err_set(err, ST_ERR_ARG, "gptq: format %s has no scales to fit (int, fp8 or a ggml block type)", t->name);
}

Status gptq_quantize_factored(const float *W, int64_t n_out, int64_t n_in, const GptqFactor *f, const QParams *p,
                              const GptqOpts *o, Pool *pool, Progress *prog, QTensor *out, GptqStats *stats,
                              Err *err) {
    memset(out, 0, sizeof *out);
    GptqOpts defo;
    if (!o) { gptq_opts_default(&defo); o = &defo; }
    if (f->n != n_in)
        return err_set(err, ST_ERR_MISMATCH, "gptq: H is %lld x %lld but the weight has %lld inputs", (long long)f->n,
                       (long long)f->n, (long long)n_in);
    Status st = qparams_check(p, n_out, n_in, err);
    if (st) return err_wrap(err, "gptq");
    if ((st = gptq_format_check(p->fmt, err))) return st;
    if (o->block < 1) return err_set(err, ST_ERR_ARG, "gptq: block %lld must be >= 1", (long long)o->block);
    int64_t n = n_in;
    const float *L = f->L;
    const int64_t *perm = f->perm;
    const QFormatTraits *t = qformat_traits(p->fmt);
    float *Wt = NULL, *E = NULL, *Ub = NULL, *ztmp = NULL, *gscale = NULL, *qw = NULL;
    uint8_t *gcodes = NULL;
    GptqCtx c = {0};
    double t_batch = 0, t_gemm = 0;
    Wt = core_alloc_aligned((size_t)n * (size_t)n_out, sizeof *Wt);
    if (!Wt) { st = err_set(err, ST_ERR_NOMEM, "gptq buffers for (%lld, %lld)", (long long)n_out, (long long)n_in); goto fail; }
    /* Wt[j] = W[:, perm[j]], dead columns zeroed */
    for (int64_t r0 = 0; r0 < n_out; r0 += 64)
        for (int64_t j0 = 0; j0 < n; j0 += 64)
            for (int64_t r = r0; r < r0 + 64 && r < n_out; r++)
                for (int64_t j = j0; j < j0 + 64 && j < n; j++) {
                    float v = W[r * n_in + perm[j]];
                    if (!isfinite(v)) {
                        st = err_set(err, ST_ERR_NUMERIC, "gptq: weight (%lld, %lld) is not finite", (long long)r,
                                     (long long)perm[j]);
                        goto fail;
                    }
                    Wt[j * n_out + r] = f->dead[perm[j]] ? 0.0f : v;
                }
    st = qtensor_alloc(out, p, n_out, n_in, err);
    if (st) goto fail;
    c.p = p;
    c.n_out = n_out;
    c.n_in = n_in;
    c.Wt = Wt;
    c.perm = perm;
    c.go = qparams_group_len(p, n_out, n_in);
    c.dyn = p->dim == GROUP_OC && p->group > 0 && !o->static_groups && !f->act_order;
    c.scale = out->scale;
    c.zero = out->zero;
    if (t->family == QFAM_GGML) {
        /* blocks are runs of consecutive columns, fitted on entry like dynamic
         * OC groups (up front with static groups or act-order) */
        c.gtype = (uint32_t)t->ggml_type;
        c.gt = ggml_type_traits(c.gtype);
        ggml_type_grid(c.gtype, &c.grid);
        c.blk = out->blk;
        c.rb = ggml_row_bytes(c.gtype, n_in);
        c.go = c.gt->block_size;
        c.dyn = !o->static_groups && !f->act_order;
        size_t nsub = (size_t)n_out * (size_t)(n_in / c.grid.sub);
        gscale = malloc(2 * nsub * sizeof *gscale);
        gcodes = malloc((size_t)n_out * (size_t)n_in);
        if (!gscale || !gcodes) { st = err_set(err, ST_ERR_NOMEM, "gptq %s grids", t->name); goto fail; }
        c.scale = gscale;
        c.zero = gscale + nsub;
        if (c.gt->quant_w) { /* the fit llama-quantize --imatrix runs, H's diagonal as the imatrix */
            if (!(qw = malloc((size_t)n_in * sizeof *qw))) { st = err_set(err, ST_ERR_NOMEM, "gptq importance"); goto fail; }
            for (int64_t k = 0; k < n_in; k++) qw[k] = f->diag[k];
            c.qw = qw;
        }
    } else if (!c.zero) {
        if (!(ztmp = core_calloc((size_t)out->n_groups, sizeof *ztmp))) { st = err_set(err, ST_ERR_NOMEM, "gptq zeros"); goto fail; }
        c.zero = ztmp;
    }
    c.codes = c.gt ? gcodes : qtensor_codes(out);
    if (!c.dyn) {
        /* fit ranges on the original order; dead columns count as zero */
        st = c.gt ? gptq_fit_static_ggml(W, f->dead, &c, err) : gptq_fit_static(W, f->dead, &c, err);
        if (st) { err_wrap(err, "gptq"); goto fail; }
    }
    int64_t block = o->block;
    if (c.dyn) block = block >= c.go ? block / c.go * c.go : c.go;
    if (block > n) block = n;
    E = core_alloc_aligned((size_t)block * (size_t)n_out, sizeof *E);
    Ub = malloc((size_t)block * (size_t)block * sizeof *Ub);
    if (!E || !Ub) { st = err_set(err, ST_ERR_NOMEM, "gptq batch buffers"); goto fail; }
    c.E = E;
    c.Ub = Ub;
    c.L = L;
    /* Our GEMM runs inside the pool's row ranges; without it the
     * update is one OpenBLAS call per batch. */
    if (gemm_f32_available()) {
        st = gemm_work_new(pool ? pool_size(pool) : 1, &c.gw, err);
        if (st) goto fail;
    }
    for (int64_t i1 = 0; i1 < n; i1 += block) {
        if (progress_cancelled(prog)) { st = err_set(err, ST_ERR_CANCELLED, "gptq cancelled at column %lld", (long long)i1); goto fail; }
        int64_t nb = i1 + block <= n ? block : n - i1, i2 = i1 + nb;
        for (int64_t i = 0; i < nb; i++)
            for (int64_t k = 0; k < nb; k++) Ub[i * nb + k] = k >= i ? L[(i1 + k) * n + (i1 + i)] : 0.0f;
        c.i1 = i1;
        c.nb = nb;
        double tb = clock_now();
        pool_for(pool, n_out, 64, gptq_batch_rows, &c);
        double tg = clock_now();
        t_batch += tg - tb; /* includes the fused GEMM when c.gw is set */
        if (atomic_load(&c.fit_failed)) {
            st = err_set(err, ST_ERR_RANGE, "gptq: a group's range needs a scale beyond fp16 (columns %lld..%lld)",
                         (long long)i1, (long long)i2 - 1);
            goto fail;
        }
        /* the batch's errors update every later column at once:
         * Wt[i2:] += L[i2:, i1:i2] · E */
        if (!c.gw && i2 < n) sgemm_mul_nn(n - i2, n_out, nb, L + i2 * n + i1, n, E, n_out, 1.0f, Wt + i2 * n_out, n_out);
        t_gemm += clock_now() - tg;
        progress_add(prog, nb);
    }
    if (c.gt) /* the sweep's codes into their blocks, beside the fitted headers */
        for (int64_t r = 0; r < n_out; r++)
            for (int64_t b = 0; b < n_in / c.go; b++)
                ggml_block_put_codes(c.gtype, c.blk + (size_t)r * c.rb + (size_t)b * c.gt->block_bytes,
                                     gcodes + r * n_in + b * c.go);
    if (stats) {
        *stats = f->st;
        stats->sec_batches = t_batch;
        stats->sec_gemm = t_gemm;
    }
    goto done;
fail:
    qtensor_done(out);
done:
    gemm_work_free(c.gw);
    core_free_aligned(Wt);
    core_free_aligned(E);
    free(Ub);
    free(ztmp);
    free(gscale);
    free(gcodes);
    free(qw);
    return st;
}

Status gptq_quantize(const float *W, int64_t n_out, int64_t n_in, const double *Hd, const float *Hf,
                     const QParams *p, const GptqOpts *o, Pool *pool, Progress *prog, QTensor *out,
                     GptqStats *stats, Err *err) {
    memset(out, 0, sizeof *out);
    GptqOpts defo;
    if (!o) { gptq_opts_default(&defo); o = &defo; }
    /* cheap argument checks before the O(n^3) factorization */
    if ((Hd == NULL) == (Hf == NULL)) return err_set(err, ST_ERR_ARG, "gptq: give H as float64 or float32 (exactly one)");
    Status st = qparams_check(p, n_out, n_in, err);
    if (st) return err_wrap(err, "gptq");
    if ((st = gptq_format_check(p->fmt, err))) return st;
    if (!(o->damp >= 0 && o->damp < 1) || o->block < 1)
        return err_set(err, ST_ERR_ARG, "gptq: damp %g must be in [0, 1) and block %lld >= 1", o->damp, (long long)o->block);
    if (progress_cancelled(prog)) return err_set(err, ST_ERR_CANCELLED, "gptq cancelled");
    GptqFactor *f = NULL;
    st = gptq_factor_new(Hd, Hf, n_in, o, pool, &f, err);
    if (st) return st;
    st = gptq_quantize_factored(W, n_out, n_in, f, p, o, pool, prog, out, stats, err);
    gptq_factor_free(f);
    return st;
}
