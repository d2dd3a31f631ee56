#include "quant/aqlm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fpconv.h"
#include "kernels/aqlm_kernels.h"
#include "kernels/sgemm.h"

/* ===================================================================== */
/* === Parameters and bit accounting                                  === */
/* ===================================================================== */

Status aqlm_params_check(const AqlmParams *p, int64_t n_out, int64_t n_in, Err *err) {
    if (p->M < 1) return err_set(err, ST_ERR_ARG, "aqlm: %d codebooks (M must be >= 1)", p->M);
    if (p->B < 1 || p->B > 16)
        return err_set(err, ST_ERR_ARG, "aqlm: %d bits per code (B must be 1..16)", p->B);
    if ((int64_t)p->M * p->B > 32)
        return err_set(err, ST_ERR_ARG, "aqlm: M*B = %d*%d = %d bits per group exceeds 32", p->M,
                       p->B, p->M * p->B);
    if (p->g < 1 || p->g > 64)
        return err_set(err, ST_ERR_ARG, "aqlm: group size %d (must be 1..64)", p->g);
    if (n_in > 0) {
        if (n_out < 1) return err_set(err, ST_ERR_ARG, "aqlm: %lld output rows", (long long)n_out);
        if (n_in % p->g != 0)
            return err_set(err, ST_ERR_ARG, "aqlm: group %d does not divide input dim %lld", p->g,
                           (long long)n_in);
    } else if (n_in < 0) {
        return err_set(err, ST_ERR_ARG, "aqlm: input dim %lld", (long long)n_in);
    }
    return ST_OK;
}

Status aqlm_params_parse(const char *s, AqlmParams *p, Err *err) {
    int M = 0, B = 0, g = 8, n = 0;
    if (!s) return err_set(err, ST_ERR_ARG, "aqlm: empty spec (expected MxB or MxBgG, e.g. 2x8g8)");
    int got = sscanf(s, "%dx%d%n", &M, &B, &n);
    if (got != 2) return err_set(err, ST_ERR_ARG, "aqlm: '%s' is not MxB or MxBgG (e.g. 2x8g8)", s);
    if (s[n] == 'g') {
        int n2 = 0;
        if (sscanf(s + n + 1, "%d%n", &g, &n2) != 1)
            return err_set(err, ST_ERR_ARG, "aqlm: '%s': expected a group size after 'g'", s);
        n += 1 + n2;
    }
    if (s[n] != '\0') return err_set(err, ST_ERR_ARG, "aqlm: '%s': trailing '%s'", s, s + n);
    AqlmParams q = {.M = M, .B = B, .g = g};
    Status st = aqlm_params_check(&q, 0, 0, err);
    if (st != ST_OK) return st;
    *p = q;
    return ST_OK;
}

char *aqlm_params_name(const AqlmParams *p, char *buf, size_t n) {
    snprintf(buf, n, "%dx%dg%d", p->M, p->B, p->g);
    return buf;
}

uint64_t aqlm_codebook_bits(const AqlmParams *p) {
    return 16ull * (uint64_t)p->g * (uint64_t)p->M * (1ull << p->B);
}

uint64_t aqlm_bits(const AqlmParams *p, int64_t n_out, int64_t n_in) {
    uint64_t groups = (uint64_t)n_out * (uint64_t)(n_in / p->g);
    return aqlm_codebook_bits(p) + groups * (uint64_t)p->B * (uint64_t)p->M + 16ull * (uint64_t)n_out;
}

size_t aqlm_bytes(const AqlmParams *p, int64_t n_out, int64_t n_in) {
    return (size_t)((aqlm_bits(p, n_out, n_in) + 7) / 8);
}

double aqlm_bpw(const AqlmParams *p, int64_t n_out, int64_t n_in) {
    return (double)aqlm_bits(p, n_out, n_in) / ((double)n_out * (double)n_in);
}

double aqlm_code_bpw(const AqlmParams *p) { return (double)p->B * p->M / p->g; }

void aqlm_tensor_done(AqlmTensor *t) {
    if (!t) return;
    free(t->codebooks);
    free(t->codes);
    free(t->scales);
    t->codebooks = NULL;
    t->codes = NULL;
    t->scales = NULL;
}

static AqlmPacked aqlm_pack_view(const AqlmTensor *t, const float *cb, const float *scales) {
    AqlmPacked pk = {.M = t->p.M, .B = t->p.B, .g = t->p.g, .n_out = t->n_out, .n_in = t->n_in,
                     .n_groups = t->n_groups, .K = t->K, .cb = cb, .cbt = NULL, .codes8 = NULL,
                     .codes16 = t->codes, .scales = scales};
    return pk;
}

void aqlm_dequant(const AqlmTensor *t, float *W) {
    AqlmPacked pk = aqlm_pack_view(t, t->codebooks, t->scales);
    aqlm_decode_rows(&pk, 0, t->n_out, W);
}

static float fp16_round(float x) { return fp16_to_f32(f32_to_fp16(x)); }

double aqlm_loss(const float *W, const float *Wq, int64_t n_out, int64_t n_in, const double *H) {
    double L = 0;
    if (!H) {
        for (int64_t i = 0; i < n_out * n_in; i++) {
            double d = (double)W[i] - Wq[i];
            L += d * d;
        }
        return L;
    }
    /* Row by row in double: r H rᵀ. O(n_out·n_in²), fine for tests and reports. */
    double *r = malloc((size_t)n_in * sizeof *r);
    if (!r) return NAN;
    for (int64_t i = 0; i < n_out; i++) {
        for (int64_t c = 0; c < n_in; c++) r[c] = (double)W[i * n_in + c] - Wq[i * n_in + c];
        for (int64_t a = 0; a < n_in; a++) {
            if (r[a] == 0) continue;
            const double *h = H + a * n_in;
            double s = 0;
            for (int64_t b = 0; b < n_in; b++) s += h[b] * r[b];
            L += r[a] * s;
        }
    }
    free(r);
    return L;
}

void aqlm_opts_default(AqlmOpts *o) {
    memset(o, 0, sizeof *o);
    o->beam = 1;
    o->max_iters = 10;
    o->tau = 0.01;
    o->kmeans_iters = 10;
    o->cg_iters = 4;
    o->seed = 1;
    o->init = AQLM_INIT_KMEANS;
}

/* ===================================================================== */
/* === Quantizer state                                                === */
/* ===================================================================== */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

static double rng_normal(uint64_t *s) {
    double u1 = rng_unit(s), u2 = rng_unit(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Row blocks of the code search: rows in a block share each H slice read. */
#define AQLM_ROW_BLOCK 16
/* Largest per-group table of codeword energies c·H_jj·c kept for a whole pass. */
#define AQLM_QTAB_MAX ((int64_t)1 << 25)

typedef struct ThreadScratch {
    float *scores;           /* (max(beam, 2), K) */
    float *qtmp;             /* (M, K) energies for one group when the full table is too big */
    float *dblk;             /* (AQLM_ROW_BLOCK, g) group residual changes of a block */
    uint16_t *bcodes;        /* (2, beam, M) beam states, current and next */
    float *bv;               /* (2, beam, g) decoded group sums of the states */
    float *bd;               /* (2, beam) loss change of each state */
} ThreadScratch;

typedef struct Ctx {
    const float *W;          /* (n_out, n_in) borrowed */
    int64_t n_out, n_in, ng, K;
    int M, B, g;
    float *H;                /* (n_in, n_in) float copy of H, NULL for identity */
    float *Hjj;              /* (ng, g, g) diagonal blocks of H (identity blocks if H is NULL) */
    float *wdiag;            /* (n_in) diag(H) / mean diag(H): k-means coordinate weights, NULL if H is NULL */
    float *cb;               /* (M, K, g) */
    float *cbt;              /* (M, g, K) */
    uint16_t *codes;         /* (n_out, ng, M) */
    float *s;                /* (n_out) */
    float *ones;             /* (n_out) all 1 */
    float *WH;               /* (n_out, n_in) W·H */
    float *RH;               /* (n_out, n_in) (W - W^)·H */
    float *D;                /* (n_out, n_in) scratch: decoded matrices */
    float *T;                /* (n_out, n_in) scratch: products with H */
    float *qtab;             /* (ng or 1, M, K) c·H_jj·c, NULL when too large */
    int64_t *perm;           /* (ng) group order of a pass */
    int64_t *csr_off;        /* (M*K + 1) */
    int64_t *csr_cur;        /* (M*K) fill cursors */
    int64_t *csr_idx;        /* (n_out*ng*M) entries i*ng + j, grouped by (m, code) */
    ThreadScratch *ts;       /* (nth) */
    int nth, beam;
    Pool *pool;
    Progress *prog;
    _Atomic int cancelled;
} Ctx;

static void ctx_free(Ctx *c) {
    free(c->H);
    free(c->Hjj);
    free(c->wdiag);
    free(c->cbt);
    free(c->ones);
    free(c->WH);
    free(c->RH);
    free(c->D);
    free(c->T);
    free(c->qtab);
    free(c->perm);
    free(c->csr_off);
    free(c->csr_cur);
    free(c->csr_idx);
    if (c->ts)
        for (int t = 0; t < c->nth; t++) {
            free(c->ts[t].scores);
            free(c->ts[t].qtmp);
            free(c->ts[t].dblk);
            free(c->ts[t].bcodes);
            free(c->ts[t].bv);
            free(c->ts[t].bd);
        }
    free(c->ts);
}

static AqlmPacked ctx_view(const Ctx *c, const float *cb, const float *scales) {
    AqlmPacked pk = {.M = c->M, .B = c->B, .g = c->g, .n_out = c->n_out, .n_in = c->n_in,
                     .n_groups = c->ng, .K = c->K, .cb = cb, .cbt = NULL, .codes8 = NULL,
                     .codes16 = c->codes, .scales = scales};
    return pk;
}

/* Y (n_out, n_in) = X · H (H symmetric, so X·Hᵀ); the identity copies. */
static void ctx_hmul(const Ctx *c, const float *X, float *Y) {
    if (!c->H) {
        memcpy(Y, X, (size_t)c->n_out * (size_t)c->n_in * sizeof *Y);
        return;
    }
    sgemm_mul_nt(c->n_out, c->n_in, c->n_in, X, c->n_in, c->H, c->n_in, 0.0f, Y, c->n_in);
}

typedef struct {
    Ctx *c;
    AqlmPacked pk;
    float *out;
} DecodeJob;

static void job_decode(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    DecodeJob *j = arg;
    aqlm_decode_rows(&j->pk, b, e, j->out + b * j->c->n_in);
}

/* out = rows of the matrix decoded from codebooks cb with the given scales. */
static void ctx_decode(Ctx *c, const float *cb, const float *scales, float *out) {
    DecodeJob j = {.c = c, .pk = ctx_view(c, cb, scales), .out = out};
    pool_for(c->pool, c->n_out, 16, job_decode, &j);
}

static void ctx_transpose_cb(Ctx *c) {
    for (int m = 0; m < c->M; m++)
        for (int64_t k = 0; k < c->K; k++)
            for (int a = 0; a < c->g; a++)
                c->cbt[((int64_t)m * c->g + a) * c->K + k] = c->cb[((int64_t)m * c->K + k) * c->g + a];
}

/* Recomputes everything that depends on codes/codebooks: D (unscaled W^),
 * T = D·H, optionally the least-squares scales s_i = (w_i H d_iᵀ)/(d_i H d_iᵀ)
 * (exact per row for fixed codes and codebooks, then rounded to fp16),
 * RH = WH - s·T, and returns the loss sum_i (w_i - s_i d_i)·RH_i. */
static double ctx_refresh(Ctx *c, int update_scales) {
    ctx_decode(c, c->cb, c->ones, c->D);
    ctx_hmul(c, c->D, c->T);
    double L = 0;
    for (int64_t i = 0; i < c->n_out; i++) {
        const float *w = c->W + i * c->n_in, *d = c->D + i * c->n_in, *t = c->T + i * c->n_in;
        const float *wh = c->WH + i * c->n_in;
        float *rh = c->RH + i * c->n_in;
        if (update_scales) {
            double num = 0, den = 0;
            for (int64_t k = 0; k < c->n_in; k++) {
                num += (double)w[k] * t[k];
                den += (double)d[k] * t[k];
            }
            if (den > 1e-30 && isfinite(num / den)) c->s[i] = fp16_round((float)(num / den));
        }
        float si = c->s[i];
        double Li = 0;
        for (int64_t k = 0; k < c->n_in; k++) {
            rh[k] = wh[k] - si * t[k];
            Li += ((double)w[k] - (double)si * d[k]) * rh[k];
        }
        L += Li;
    }
    return L;
}

/* ===================================================================== */
/* === Residual k-means initialisation                                === */
/* ===================================================================== */

typedef struct {
    const float *X;          /* (n, g) points */
    const int64_t *idx;      /* (n) indices into X, or NULL for identity */
    const float *CT;         /* (g, K) */
    const float *cn;         /* (K) squared norms (unweighted case) */
    const float *C2T;        /* (g, K) squared entries (weighted case) */
    const float *wdiag;      /* (ng*g) coordinate weights diag(H)/mean, NULL = unweighted */
    int64_t ng;
    int64_t K;
    int g;
    int32_t *assign;         /* (n) */
    float **scores;          /* per thread (K) */
} AssignJob;

static void job_assign(void *arg, int64_t b, int64_t e, int tid) {
    AssignJob *j = arg;
    float *sc = j->scores[tid];
    float *tmp = sc + j->K;
    float u[64], v[64];
    for (int64_t n = b; n < e; n++) {
        int64_t pt = j->idx ? j->idx[n] : n;
        const float *x = j->X + pt * j->g;
        if (j->wdiag) {
            /* Σ_a w_a (x_a - c_a)² - const = Σ_a w_a c_a² - 2 Σ_a w_a x_a c_a */
            const float *w = j->wdiag + (pt % j->ng) * j->g;
            for (int a = 0; a < j->g; a++) {
                v[a] = w[a];
                u[a] = -2.0f * w[a] * x[a];
            }
            aqlm_dots(j->C2T, j->K, j->g, v, NULL, 0.0f, tmp);
            aqlm_dots(j->CT, j->K, j->g, u, tmp, 1.0f, sc);
        } else {
            for (int a = 0; a < j->g; a++) u[a] = -2.0f * x[a];
            /* ||x - c||² - ||x||² = ||c||² - 2 x·c */
            aqlm_dots(j->CT, j->K, j->g, u, j->cn, 1.0f, sc);
        }
        j->assign[n] = (int32_t)aqlm_argmin(sc, j->K);
    }
}

static void kmeans_prepare(const float *C, int64_t K, int g, float *CT, float *C2T, float *cn) {
    for (int64_t k = 0; k < K; k++) {
        double s = 0;
        for (int a = 0; a < g; a++) {
            CT[(int64_t)a * K + k] = C[k * g + a];
            C2T[(int64_t)a * K + k] = C[k * g + a] * C[k * g + a];
            s += (double)C[k * g + a] * C[k * g + a];
        }
        cn[k] = (float)s;
    }
}

/* One codebook of the residual k-means: trains C (K, g) on (a sample of) the
 * residual points Z (N, g), assigns every point, and subtracts its codeword. */
static Status ctx_kmeans_round(Ctx *c, float *Z, int m, int iters, AqlmInit init, uint64_t *rng,
                               Err *err) {
    Status st = ST_OK;
    int64_t N = c->n_out * c->ng, K = c->K;
    int g = c->g;
    float *C = c->cb + (int64_t)m * K * g;
    float *CT = c->cbt + (int64_t)m * g * K;
    /* faiss's rule of thumb: 256 training points per centroid are plenty. */
    int64_t n_train = N > 256 * K ? 256 * K : N;
    int64_t *idx = malloc((size_t)N * sizeof *idx);
    int32_t *asg = malloc((size_t)N * sizeof *asg);
    float *cn = malloc((size_t)K * sizeof *cn);
    float *C2T = malloc((size_t)K * g * sizeof *C2T);
    double *sum = malloc((size_t)K * g * sizeof *sum);
    double *wsum = malloc((size_t)K * g * sizeof *wsum);
    int64_t *cnt = malloc((size_t)K * sizeof *cnt);
    float **scores = calloc((size_t)c->nth, sizeof *scores);
    if (!idx || !asg || !cn || !C2T || !sum || !wsum || !cnt || !scores) {
        st = err_set(err, ST_ERR_NOMEM, "aqlm: k-means buffers for %lld points", (long long)N);
        goto done;
    }
    for (int t = 0; t < c->nth; t++) scores[t] = c->ts[t].scores;
    for (int64_t n = 0; n < N; n++) idx[n] = n;
    /* Partial Fisher-Yates: idx[0, n_train) is a uniform sample without replacement. */
    for (int64_t n = 0; n < n_train; n++) {
        int64_t r = n + (int64_t)(rng_next(rng) % (uint64_t)(N - n));
        int64_t t = idx[n];
        idx[n] = idx[r];
        idx[r] = t;
    }
    if (init == AQLM_INIT_RANDOM) {
        /* Gaussian codewords with the residual's per-coordinate spread. */
        for (int a = 0; a < g; a++) {
            double v = 0;
            for (int64_t n = 0; n < N; n++) v += (double)Z[n * g + a] * Z[n * g + a];
            double sd = sqrt(v / (double)N);
            for (int64_t k = 0; k < K; k++) C[k * g + a] = (float)(sd * rng_normal(rng));
        }
        iters = 0;
    } else {
        for (int64_t k = 0; k < K; k++) {
            int64_t src = idx[k % n_train];
            if (k >= n_train) src = idx[rng_next(rng) % (uint64_t)n_train];
            memcpy(C + k * g, Z + src * g, (size_t)g * sizeof *C);
        }
    }
    for (int it = 0; it < iters; it++) {
        if (progress_cancelled(c->prog)) {
            st = err_set(err, ST_ERR_CANCELLED, "aqlm: cancelled during k-means");
            goto done;
        }
        kmeans_prepare(C, K, g, CT, C2T, cn);
        AssignJob aj = {.X = Z, .idx = idx, .CT = CT, .C2T = C2T, .cn = cn, .wdiag = c->wdiag,
                        .ng = c->ng, .K = K, .g = g, .assign = asg, .scores = scores};
        pool_for(c->pool, n_train, 256, job_assign, &aj);
        memset(sum, 0, (size_t)K * g * sizeof *sum);
        memset(wsum, 0, (size_t)K * g * sizeof *wsum);
        memset(cnt, 0, (size_t)K * sizeof *cnt);
        for (int64_t n = 0; n < n_train; n++) {
            const float *x = Z + idx[n] * g;
            const float *w = c->wdiag ? c->wdiag + (idx[n] % c->ng) * g : NULL;
            cnt[asg[n]]++;
            for (int a = 0; a < g; a++) {
                double wa = w ? w[a] : 1.0;
                sum[(int64_t)asg[n] * g + a] += wa * x[a];
                wsum[(int64_t)asg[n] * g + a] += wa;
            }
        }
        for (int64_t k = 0; k < K; k++) {
            if (cnt[k] == 0) {
                /* Empty cluster: reseed on a random training point. */
                memcpy(C + k * g, Z + idx[rng_next(rng) % (uint64_t)n_train] * g,
                       (size_t)g * sizeof *C);
                continue;
            }
            /* Weighted mean per coordinate; a coordinate with no weight keeps its value. */
            for (int a = 0; a < g; a++)
                if (wsum[k * g + a] > 0) C[k * g + a] = (float)(sum[k * g + a] / wsum[k * g + a]);
        }
        progress_add(c->prog, 1);
    }
    for (int64_t k = 0; k < K * g; k++) C[k] = fp16_round(C[k]);
    kmeans_prepare(C, K, g, CT, C2T, cn);
    AssignJob aj = {.X = Z, .idx = NULL, .CT = CT, .C2T = C2T, .cn = cn, .wdiag = c->wdiag,
                    .ng = c->ng, .K = K, .g = g, .assign = asg, .scores = scores};
    pool_for(c->pool, N, 256, job_assign, &aj);
    for (int64_t n = 0; n < N; n++) {
        c->codes[n * c->M + m] = (uint16_t)asg[n];
        const float *cw = C + (int64_t)asg[n] * g;
        for (int a = 0; a < g; a++) Z[n * g + a] -= cw[a];
    }
    progress_add(c->prog, 1);
done:
    free(idx);
    free(asg);
    free(cn);
    free(C2T);
    free(sum);
    free(wsum);
    free(cnt);
    free(scores);
    return st;
}

/* Scales from row RMS, then M rounds of k-means on the residual of W/s. */
static Status ctx_init(Ctx *c, const AqlmOpts *o, Err *err) {
    uint64_t rng = o->seed ^ 0xA0761D6478BD642Full;
    for (int64_t i = 0; i < c->n_out; i++) {
        const float *w = c->W + i * c->n_in;
        double ss = 0;
        for (int64_t k = 0; k < c->n_in; k++) ss += (double)w[k] * w[k];
        float s = fp16_round((float)sqrt(ss / (double)c->n_in));
        c->s[i] = (s > 0 && isfinite(s)) ? s : 1.0f;
    }
    /* D holds the residual points (n_out·ng, g) = rows of W/s. */
    float *Z = c->D;
    for (int64_t i = 0; i < c->n_out; i++)
        for (int64_t k = 0; k < c->n_in; k++) Z[i * c->n_in + k] = c->W[i * c->n_in + k] / c->s[i];
    progress_begin(c->prog, "aqlm k-means", (int64_t)c->M * ((o->init == AQLM_INIT_KMEANS ? o->kmeans_iters : 0) + 1));
    for (int m = 0; m < c->M; m++) {
        Status st = ctx_kmeans_round(c, Z, m, o->kmeans_iters, o->init, &rng, err);
        if (st != ST_OK) return st;
    }
    ctx_transpose_cb(c);
    return ST_OK;
}

/* ===================================================================== */
/* === Codebook update: preconditioned CG on the normal equations      === */
/* ===================================================================== */

/* Groups the (row, group) entries by (codebook, code): list (m, k) holds every
 * i*ng + j with code(i, j, m) == k. Counting sort, so the order is fixed. */
static void ctx_build_csr(Ctx *c) {
    int64_t MK = (int64_t)c->M * c->K, NG = c->n_out * c->ng;
    memset(c->csr_off, 0, (size_t)(MK + 1) * sizeof *c->csr_off);
    for (int64_t e = 0; e < NG; e++)
        for (int m = 0; m < c->M; m++) c->csr_off[(int64_t)m * c->K + c->codes[e * c->M + m] + 1]++;
    for (int64_t t = 0; t < MK; t++) c->csr_off[t + 1] += c->csr_off[t];
    memcpy(c->csr_cur, c->csr_off, (size_t)MK * sizeof *c->csr_cur);
    for (int64_t e = 0; e < NG; e++)
        for (int m = 0; m < c->M; m++) {
            int64_t t = (int64_t)m * c->K + c->codes[e * c->M + m];
            c->csr_idx[c->csr_cur[t]++] = e;
        }
}

typedef struct {
    Ctx *c;
    const float *src;        /* (n_out, n_in) */
    double *out;             /* (M, K, g) */
    const double *add;       /* (M, K, g) or NULL: out += lambda * add */
    double lambda;
} GatherJob;

/* out[m, k, :] = sum over entries (i, j) of list (m, k) of s_i * src[i, j-group]. */
static void job_gather(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    GatherJob *j = arg;
    Ctx *c = j->c;
    int g = c->g;
    for (int64_t t = b; t < e; t++) {
        double acc[64] = {0};
        for (int64_t p = c->csr_off[t]; p < c->csr_off[t + 1]; p++) {
            int64_t ent = c->csr_idx[p], i = ent / c->ng, jg = ent % c->ng;
            const float *v = j->src + i * c->n_in + jg * g;
            double si = c->s[i];
            for (int a = 0; a < g; a++) acc[a] += si * v[a];
        }
        for (int a = 0; a < g; a++)
            j->out[t * g + a] = acc[a] + (j->add ? j->lambda * j->add[t * g + a] : 0.0);
    }
}

typedef struct {
    Ctx *c;
    double *P;               /* (M*K, g, g) Cholesky factors */
    double lambda;
} PrecJob;

/* P_mk = sum over entries (i, j) of s_i² H_jj + lambda I, then its Cholesky factor. */
static void job_prec(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    PrecJob *j = arg;
    Ctx *c = j->c;
    int g = c->g;
    for (int64_t t = b; t < e; t++) {
        double *P = j->P + t * g * g;
        memset(P, 0, (size_t)g * g * sizeof *P);
        for (int64_t p = c->csr_off[t]; p < c->csr_off[t + 1]; p++) {
            int64_t ent = c->csr_idx[p], i = ent / c->ng, jg = ent % c->ng;
            const float *h = c->Hjj + jg * g * g;
            double s2 = (double)c->s[i] * c->s[i];
            for (int q = 0; q < g * g; q++) P[q] += s2 * h[q];
        }
        for (int a = 0; a < g; a++) P[a * g + a] += j->lambda;
        /* In-place Cholesky (lower); a non-positive pivot falls back to the diagonal. */
        for (int a = 0; a < g; a++) {
            for (int bb = 0; bb <= a; bb++) {
                double s = P[a * g + bb];
                for (int k = 0; k < bb; k++) s -= P[a * g + k] * P[bb * g + k];
                if (a == bb) P[a * g + a] = sqrt(s > j->lambda * 1e-3 ? s : (j->lambda > 0 ? j->lambda : 1e-30));
                else P[a * g + bb] = s / P[bb * g + bb];
            }
        }
    }
}

static void prec_apply(const double *P, int64_t MK, int g, const double *r, double *z) {
    for (int64_t t = 0; t < MK; t++) {
        const double *L = P + t * g * g;
        const double *rt = r + t * g;
        double *zt = z + t * g;
        for (int a = 0; a < g; a++) {
            double s = rt[a];
            for (int k = 0; k < a; k++) s -= L[a * g + k] * zt[k];
            zt[a] = s / L[a * g + a];
        }
        for (int a = g - 1; a >= 0; a--) {
            double s = zt[a];
            for (int k = a + 1; k < g; k++) s -= L[k * g + a] * zt[k];
            zt[a] = s / L[a * g + a];
        }
    }
}

/* Minimises the loss over the codebooks with codes and scales fixed. The loss
 * is a quadratic in θ = all codewords: L(θ) = sum_i (w_i - s_i D_i θ) H (.)ᵀ,
 * with normal equations A θ = b, A = sum_i s_i² D_iᵀ H D_i (codewords coupled
 * through every off-diagonal g×g block H_jj' of two groups of a row), b =
 * sum_i s_i D_iᵀ H w_iᵀ. We run preconditioned CG warm-started at the current
 * codebooks, matrix-free (A p = decode p, multiply by H, gather back), with a
 * block-Jacobi preconditioner built from the diagonal blocks H_jj, plus a
 * tiny ridge lambda·I that keeps unused codewords where they are. Needs RH
 * current on entry (the residual r0 = b - Aθ0 is the gather of RH). */
static Status ctx_update_codebooks(Ctx *c, int cg_iters, Err *err) {
    int64_t MK = (int64_t)c->M * c->K, P = MK * c->g;
    int g = c->g;
    Status st = ST_OK;
    double *theta = malloc((size_t)P * sizeof *theta), *r = malloc((size_t)P * sizeof *r);
    double *z = malloc((size_t)P * sizeof *z), *p = malloc((size_t)P * sizeof *p);
    double *Ap = malloc((size_t)P * sizeof *Ap);
    double *prec = malloc((size_t)MK * g * g * sizeof *prec);
    float *pf = malloc((size_t)P * sizeof *pf);
    if (!theta || !r || !z || !p || !Ap || !prec || !pf) {
        st = err_set(err, ST_ERR_NOMEM, "aqlm: codebook update buffers (%lld unknowns)", (long long)P);
        goto done;
    }
    ctx_build_csr(c);
    /* lambda: 1e-6 of the mean diagonal of the used blocks. */
    double diag = 0;
    int64_t used = 0;
    for (int64_t ent = 0; ent < c->n_out * c->ng; ent++) {
        int64_t i = ent / c->ng, jg = ent % c->ng;
        double tr = 0;
        for (int a = 0; a < g; a++) tr += c->Hjj[jg * g * g + a * g + a];
        diag += (double)c->s[i] * c->s[i] * tr / g * c->M;
        used += c->M;
    }
    double lambda = used > 0 && diag > 0 ? 1e-6 * diag / (double)MK : 1e-12;
    PrecJob pj = {.c = c, .P = prec, .lambda = lambda};
    pool_for(c->pool, MK, 64, job_prec, &pj);
    for (int64_t q = 0; q < P; q++) theta[q] = c->cb[q];
    GatherJob gj = {.c = c, .src = c->RH, .out = r};
    pool_for(c->pool, MK, 64, job_gather, &gj);
    prec_apply(prec, MK, g, r, z);
    memcpy(p, z, (size_t)P * sizeof *p);
    double rz = 0, rz0;
    for (int64_t q = 0; q < P; q++) rz += r[q] * z[q];
    rz0 = rz;
    for (int it = 0; it < cg_iters && rz > 1e-20 * rz0 && rz > 0; it++) {
        if (progress_cancelled(c->prog)) {
            st = err_set(err, ST_ERR_CANCELLED, "aqlm: cancelled during codebook update");
            goto done;
        }
        for (int64_t q = 0; q < P; q++) pf[q] = (float)p[q];
        ctx_decode(c, pf, c->s, c->D);
        ctx_hmul(c, c->D, c->T);
        GatherJob aj = {.c = c, .src = c->T, .out = Ap, .add = p, .lambda = lambda};
        pool_for(c->pool, MK, 64, job_gather, &aj);
        double pAp = 0;
        for (int64_t q = 0; q < P; q++) pAp += p[q] * Ap[q];
        if (!(pAp > 0)) break;
        double alpha = rz / pAp;
        for (int64_t q = 0; q < P; q++) {
            theta[q] += alpha * p[q];
            r[q] -= alpha * Ap[q];
        }
        prec_apply(prec, MK, g, r, z);
        double rz_new = 0;
        for (int64_t q = 0; q < P; q++) rz_new += r[q] * z[q];
        double beta = rz_new / rz;
        rz = rz_new;
        for (int64_t q = 0; q < P; q++) p[q] = z[q] + beta * p[q];
    }
    for (int64_t q = 0; q < P; q++) {
        float v = fp16_round((float)theta[q]);
        if (isfinite(v)) c->cb[q] = v;
    }
    ctx_transpose_cb(c);
done:
    free(theta);
    free(r);
    free(z);
    free(p);
    free(Ap);
    free(prec);
    free(pf);
    return st;
}

/* ===================================================================== */
/* === Code update: beam search over groups with incremental loss      === */
/* ===================================================================== */

/* q[m, k] = C_m[k]ᵀ H_jj C_m[k] for one group j. */
static void ctx_energies(const Ctx *c, int64_t j, float *q) {
    int g = c->g;
    const float *h = c->Hjj + j * g * g;
    for (int m = 0; m < c->M; m++)
        for (int64_t k = 0; k < c->K; k++) {
            const float *cw = c->cb + ((int64_t)m * c->K + k) * g;
            double s = 0;
            for (int a = 0; a < g; a++) {
                double t = 0;
                for (int b = 0; b < g; b++) t += (double)h[a * g + b] * cw[b];
                s += t * cw[a];
            }
            q[(int64_t)m * c->K + k] = (float)s;
        }
}

static void job_energies(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    Ctx *c = arg;
    for (int64_t j = b; j < e; j++) ctx_energies(c, j, c->qtab + j * c->M * c->K);
}

/* Beam search for the codes of group j of row i. Returns the loss change of
 * the best state (<= 0; 0 means keep) and writes its codes into best and the
 * change of the group's W^ values into delta (g). */
static float row_group_search(const Ctx *c, ThreadScratch *ts, int64_t i, int64_t j,
                              const float *q, uint16_t *best, float *delta) {
    int M = c->M, g = c->g, beam = c->beam;
    int64_t K = c->K;
    const float *h = c->Hjj + j * g * g;
    const float *r = c->RH + i * c->n_in + j * g;
    const uint16_t *cur = c->codes + (i * c->ng + j) * M;
    float s = c->s[i], s2 = s * s;
    float v0[64], e[64], u[64];
    for (int a = 0; a < g; a++) v0[a] = 0;
    for (int m = 0; m < M; m++) {
        const float *cw = c->cb + ((int64_t)m * K + cur[m]) * g;
        for (int a = 0; a < g; a++) v0[a] += cw[a];
    }
    uint16_t *bc = ts->bcodes, *nc = ts->bcodes + (size_t)beam * M;
    float *bv = ts->bv, *nv = ts->bv + (size_t)beam * g;
    float *bd = ts->bd, *nd = ts->bd + beam;
    int nb = 1;
    memcpy(bc, cur, (size_t)M * sizeof *bc);
    memcpy(bv, v0, (size_t)g * sizeof *bv);
    bd[0] = 0;
    for (int m = 0; m < M; m++) {
        const float *CT = c->cbt + (int64_t)m * g * K;
        const float *qm = q + (int64_t)m * K;
        int nn = 0;
        for (int b = 0; b < nb; b++) {
            const float *cw = c->cb + ((int64_t)m * K + bc[b * M + m]) * g;
            for (int a = 0; a < g; a++) e[a] = bv[b * g + a] - cw[a] - v0[a];
            /* Δ(k) = const + u·c_k + s² c_kᵀ H_jj c_k with
             * u = -2 s r + 2 s² H_jj e and const = -2 s e·r + s² eᵀ H_jj e. */
            double cst = 0;
            for (int a = 0; a < g; a++) {
                double he = 0;
                for (int bb = 0; bb < g; bb++) he += (double)h[a * g + bb] * e[bb];
                u[a] = (float)(-2.0 * s * r[a] + 2.0 * s2 * he);
                cst += -2.0 * s * e[a] * r[a] + s2 * e[a] * he;
            }
            float *sc = ts->scores + (size_t)b * K;
            aqlm_dots(CT, K, g, u, qm, s2, sc);
            if (beam == 1) {
                int64_t kb = aqlm_argmin(sc, K);
                float d = (float)(cst + sc[kb]);
                memcpy(nc, bc, (size_t)M * sizeof *nc);
                nc[m] = (uint16_t)kb;
                const float *cn = c->cb + ((int64_t)m * K + kb) * g;
                for (int a = 0; a < g; a++) nv[a] = e[a] + v0[a] + cn[a];
                nd[0] = d;
                nn = 1;
                continue;
            }
            for (int64_t k = 0; k < K; k++) {
                float d = (float)(cst + sc[k]);
                if (nn == beam && d >= nd[nn - 1]) continue;
                /* Skip a state already in the next beam (reached from another parent). */
                int dup = -1;
                for (int t = 0; t < nn && dup < 0; t++) {
                    if (nc[t * M + m] != k) continue;
                    int same = 1;
                    for (int mm = 0; mm < M && same; mm++)
                        if (mm != m && nc[t * M + mm] != bc[b * M + mm]) same = 0;
                    if (same) dup = t;
                }
                if (dup >= 0) continue;
                int pos = nn < beam ? nn : beam - 1;
                while (pos > 0 && nd[pos - 1] > d) {
                    memcpy(nc + pos * M, nc + (pos - 1) * M, (size_t)M * sizeof *nc);
                    memcpy(nv + pos * g, nv + (pos - 1) * g, (size_t)g * sizeof *nv);
                    nd[pos] = nd[pos - 1];
                    pos--;
                }
                memcpy(nc + pos * M, bc + b * M, (size_t)M * sizeof *nc);
                nc[pos * M + m] = (uint16_t)k;
                const float *cn = c->cb + ((int64_t)m * K + k) * g;
                for (int a = 0; a < g; a++) nv[pos * g + a] = e[a] + v0[a] + cn[a];
                nd[pos] = d;
                if (nn < beam) nn++;
            }
        }
        /* swap beams */
        uint16_t *tc = bc; bc = nc; nc = tc;
        float *tv = bv; bv = nv; nv = tv;
        float *td = bd; bd = nd; nd = td;
        nb = nn;
    }
    int bi = 0;
    for (int b = 1; b < nb; b++)
        if (bd[b] < bd[bi]) bi = b;
    if (!(bd[bi] < 0)) return 0.0f;
    memcpy(best, bc + bi * M, (size_t)M * sizeof *best);
    for (int a = 0; a < g; a++) delta[a] = s * (bv[bi * g + a] - v0[a]);
    return bd[bi];
}

typedef struct {
    Ctx *c;
    double *gain;            /* per row block: sum of accepted Δ */
} PassJob;

static void job_pass(void *arg, int64_t b, int64_t e, int tid) {
    PassJob *pj = arg;
    Ctx *c = pj->c;
    ThreadScratch *ts = &c->ts[tid];
    int g = c->g, M = c->M;
    for (int64_t blk = b; blk < e; blk++) {
        if (c->cancelled || progress_cancelled(c->prog)) {
            c->cancelled = 1;
            return;
        }
        int64_t i0 = blk * AQLM_ROW_BLOCK;
        int64_t i1 = i0 + AQLM_ROW_BLOCK < c->n_out ? i0 + AQLM_ROW_BLOCK : c->n_out;
        double gain = 0;
        for (int64_t jj = 0; jj < c->ng; jj++) {
            int64_t j = c->perm[jj];
            const float *q;
            if (c->qtab) {
                q = c->qtab + (c->H ? j * M * c->K : 0);
            } else {
                ctx_energies(c, j, ts->qtmp);
                q = ts->qtmp;
            }
            int any = 0;
            for (int64_t i = i0; i < i1; i++) {
                uint16_t bestc[32];
                float *d = ts->dblk + (i - i0) * g;
                float dl = row_group_search(c, ts, i, j, q, bestc, d);
                if (dl < 0) {
                    memcpy(c->codes + (i * c->ng + j) * M, bestc, (size_t)M * sizeof *bestc);
                    gain += dl;
                    any = 1;
                } else {
                    memset(d, 0, (size_t)g * sizeof *d);
                }
            }
            if (!any) continue;
            /* R loses d at group j, so R·H loses d·H[j-block rows, :]. */
            if (c->H) {
                aqlm_rank_update(c->RH + i0 * c->n_in, c->n_in, i1 - i0, ts->dblk, g,
                                 c->H + j * g * c->n_in, c->n_in, c->n_in);
            } else {
                for (int64_t i = i0; i < i1; i++)
                    for (int a = 0; a < g; a++)
                        c->RH[i * c->n_in + j * g + a] -= ts->dblk[(i - i0) * g + a];
            }
        }
        pj->gain[blk] = gain;
        progress_add(c->prog, 1);
    }
}

/* One pass of the code search over all groups (in a random order shared by
 * all rows) of all rows (row blocks in parallel). Returns the summed Δ. */
static double ctx_code_pass(Ctx *c, uint64_t seed, double *gain_buf) {
    uint64_t rng = seed;
    for (int64_t j = 0; j < c->ng; j++) c->perm[j] = j;
    for (int64_t j = c->ng - 1; j > 0; j--) {
        int64_t r = (int64_t)(rng_next(&rng) % (uint64_t)(j + 1));
        int64_t t = c->perm[j];
        c->perm[j] = c->perm[r];
        c->perm[r] = t;
    }
    if (c->qtab) {
        if (c->H) pool_for(c->pool, c->ng, 4, job_energies, c);
        else ctx_energies(c, 0, c->qtab);
    }
    int64_t nblk = (c->n_out + AQLM_ROW_BLOCK - 1) / AQLM_ROW_BLOCK;
    PassJob pj = {.c = c, .gain = gain_buf};
    memset(gain_buf, 0, (size_t)nblk * sizeof *gain_buf);
    pool_for(c->pool, nblk, 1, job_pass, &pj);
    double tot = 0;
    for (int64_t b = 0; b < nblk; b++) tot += gain_buf[b];
    return tot;
}

/* ===================================================================== */
/* === Driver                                                         === */
/* ===================================================================== */

static Status ctx_alloc(Ctx *c, const double *H, const AqlmOpts *o, Err *err) {
    size_t nn = (size_t)c->n_out * (size_t)c->n_in;
    int64_t MK = (int64_t)c->M * c->K;
    c->nth = pool_size(c->pool);
    if (c->nth < 1) c->nth = 1;
    c->beam = o->beam;
    if (H) {
        c->H = malloc((size_t)c->n_in * c->n_in * sizeof *c->H);
        if (!c->H) goto nomem;
        for (int64_t q = 0; q < c->n_in * c->n_in; q++) c->H[q] = (float)H[q];
    }
    c->Hjj = malloc((size_t)c->ng * c->g * c->g * sizeof *c->Hjj);
    c->cbt = malloc((size_t)MK * c->g * sizeof *c->cbt);
    c->ones = malloc((size_t)c->n_out * sizeof *c->ones);
    c->WH = malloc(nn * sizeof *c->WH);
    c->RH = malloc(nn * sizeof *c->RH);
    c->D = malloc(nn * sizeof *c->D);
    c->T = malloc(nn * sizeof *c->T);
    c->perm = malloc((size_t)c->ng * sizeof *c->perm);
    c->csr_off = malloc((size_t)(MK + 1) * sizeof *c->csr_off);
    c->csr_cur = malloc((size_t)MK * sizeof *c->csr_cur);
    c->csr_idx = malloc((size_t)c->n_out * c->ng * c->M * sizeof *c->csr_idx);
    c->ts = calloc((size_t)c->nth, sizeof *c->ts);
    if (!c->Hjj || !c->cbt || !c->ones || !c->WH || !c->RH || !c->D || !c->T || !c->perm ||
        !c->csr_off || !c->csr_cur || !c->csr_idx || !c->ts)
        goto nomem;
    int64_t qn = (c->H ? c->ng : 1) * MK;
    if (qn <= AQLM_QTAB_MAX) {
        c->qtab = malloc((size_t)qn * sizeof *c->qtab);
        if (!c->qtab) goto nomem;
    }
    for (int t = 0; t < c->nth; t++) {
        ThreadScratch *ts = &c->ts[t];
        ts->scores = malloc((size_t)(o->beam > 2 ? o->beam : 2) * c->K * sizeof *ts->scores);
        ts->qtmp = c->qtab ? NULL : malloc((size_t)MK * sizeof *ts->qtmp);
        ts->dblk = malloc((size_t)AQLM_ROW_BLOCK * c->g * sizeof *ts->dblk);
        ts->bcodes = malloc((size_t)2 * o->beam * c->M * sizeof *ts->bcodes);
        ts->bv = malloc((size_t)2 * o->beam * c->g * sizeof *ts->bv);
        ts->bd = malloc((size_t)2 * o->beam * sizeof *ts->bd);
        if (!ts->scores || (!c->qtab && !ts->qtmp) || !ts->dblk || !ts->bcodes || !ts->bv ||
            !ts->bd)
            goto nomem;
    }
    if (c->H) {
        c->wdiag = malloc((size_t)c->n_in * sizeof *c->wdiag);
        if (!c->wdiag) goto nomem;
        double mean = 0;
        for (int64_t k = 0; k < c->n_in; k++) mean += H[k * c->n_in + k];
        mean /= (double)c->n_in;
        for (int64_t k = 0; k < c->n_in; k++)
            c->wdiag[k] = mean > 0 ? (float)(H[k * c->n_in + k] / mean) : 1.0f;
    }
    for (int64_t i = 0; i < c->n_out; i++) c->ones[i] = 1.0f;
    for (int64_t j = 0; j < c->ng; j++)
        for (int a = 0; a < c->g; a++)
            for (int b = 0; b < c->g; b++)
                c->Hjj[(j * c->g + a) * c->g + b] =
                    c->H ? c->H[(j * c->g + a) * c->n_in + j * c->g + b] : (a == b ? 1.0f : 0.0f);
    return ST_OK;
nomem:
    return err_set(err, ST_ERR_NOMEM, "aqlm: buffers for a %lldx%lld matrix", (long long)c->n_out,
                   (long long)c->n_in);
}

Status aqlm_quantize(const float *W, int64_t n_out, int64_t n_in, const double *H,
                     const AqlmParams *p, const AqlmOpts *o, Pool *pool, Progress *prog,
                     AqlmTensor *out, AqlmReport *rep, Err *err) {
    memset(out, 0, sizeof *out);
    Status st = aqlm_params_check(p, n_out, n_in, err);
    if (st != ST_OK) return st;
    AqlmOpts def;
    if (!o) {
        aqlm_opts_default(&def);
        o = &def;
    }
    if (o->beam < 1 || o->beam > 64)
        return err_set(err, ST_ERR_ARG, "aqlm: beam width %d (must be 1..64)", o->beam);
    if (o->max_iters < 0 || o->max_iters > AQLM_MAX_TRACE)
        return err_set(err, ST_ERR_ARG, "aqlm: iteration cap %d (must be 0..%d)", o->max_iters,
                       AQLM_MAX_TRACE);
    if (o->kmeans_iters < 0 || o->cg_iters < 0 || !(o->tau >= 0))
        return err_set(err, ST_ERR_ARG, "aqlm: negative k-means/CG iterations or tau");
    for (int64_t q = 0; q < n_out * n_in; q++)
        if (!isfinite(W[q]))
            return err_set(err, ST_ERR_NUMERIC, "aqlm: non-finite weight at row %lld, column %lld",
                           (long long)(q / n_in), (long long)(q % n_in));
    if (H)
        for (int64_t q = 0; q < n_in * n_in; q++)
            if (!isfinite(H[q]))
                return err_set(err, ST_ERR_NUMERIC, "aqlm: non-finite H at (%lld, %lld)",
                               (long long)(q / n_in), (long long)(q % n_in));

    Ctx c = {0};
    c.W = W;
    c.n_out = n_out;
    c.n_in = n_in;
    c.M = p->M;
    c.B = p->B;
    c.g = p->g;
    c.ng = n_in / p->g;
    c.K = (int64_t)1 << p->B;
    c.pool = pool;
    c.prog = prog;
    int64_t nblk = (n_out + AQLM_ROW_BLOCK - 1) / AQLM_ROW_BLOCK;
    double *gain = NULL;
    AqlmReport rp = {0};

    out->p = *p;
    out->n_out = n_out;
    out->n_in = n_in;
    out->n_groups = c.ng;
    out->K = c.K;
    out->codebooks = malloc((size_t)c.M * c.K * c.g * sizeof *out->codebooks);
    out->codes = malloc((size_t)n_out * c.ng * c.M * sizeof *out->codes);
    out->scales = malloc((size_t)n_out * sizeof *out->scales);
    gain = malloc((size_t)nblk * sizeof *gain);
    if (!out->codebooks || !out->codes || !out->scales || !gain) {
        st = err_set(err, ST_ERR_NOMEM, "aqlm: result arrays");
        goto fail;
    }
    c.cb = out->codebooks;
    c.codes = out->codes;
    c.s = out->scales;
    st = ctx_alloc(&c, H, o, err);
    if (st != ST_OK) goto fail;

    ctx_hmul(&c, W, c.WH);
    for (int64_t q = 0; q < n_out * n_in; q++) rp.loss_zero += (double)W[q] * c.WH[q];

    st = ctx_init(&c, o, err);
    if (st != ST_OK) goto fail;
    rp.loss[0] = ctx_refresh(&c, 0);
    progress_begin(prog, "aqlm optimise", (int64_t)o->max_iters * nblk);
    if (prog && rp.loss_zero > 0) atomic_store(&prog->value, rp.loss[0] / rp.loss_zero);

    double L = rp.loss[0];
    for (int it = 1; it <= o->max_iters; it++) {
        /* (a) codebooks (PCG on the normal equations) and scales (per-row LS). */
        st = ctx_update_codebooks(&c, o->cg_iters, err);
        if (st != ST_OK) goto fail;
        double Lcb = ctx_refresh(&c, 1);
        /* (b) codes by beam search with incremental loss changes. */
        double gsum = ctx_code_pass(&c, o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)it, gain);
        if (c.cancelled) {
            st = err_set(err, ST_ERR_CANCELLED, "aqlm: cancelled in iteration %d", it);
            goto fail;
        }
        /* The pass's Δs are exact changes of the loss; the next refresh
         * recomputes R·H from scratch, so float drift does not accumulate. */
        double Ln = Lcb + gsum;
        rp.loss[it] = Ln;
        rp.iters = it;
        if (prog && rp.loss_zero > 0) atomic_store(&prog->value, Ln / rp.loss_zero);
        double rel = L > 0 ? (L - Ln) / L : 0;
        L = Ln;
        if (rel < o->tau) break;
    }
    /* The reported final loss is recomputed exactly. */
    if (rp.iters > 0) rp.loss[rp.iters] = ctx_refresh(&c, 0);
    ctx_free(&c);
    free(gain);
    if (rep) *rep = rp;
    return ST_OK;
fail:
    ctx_free(&c);
    free(gain);
    aqlm_tensor_done(out);
    return st;
}
