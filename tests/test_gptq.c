/* GPTQ: the factorization kernels against their scalar twins, the blocked
 * implementation against a plain unblocked GPTQ written here, GPTQ's output
 * error below RTN's (synthetic correlated H, and every projection of
 * stories260K with H from its real activations), error cases; AdaDim's choice. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "kernels/cpu.h"
#include "kernels/linalg.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "quant/adadim.h"
#include "quant/ggml_type.h"
#include "quant/gptq.h"
#include "quant/rtn.h"
#include "tests/testlib.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static double urand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void) { /* Box-Muller */
    double u = urand(), v = urand();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* tr(D H Dᵀ) with D = A - B (n_out, n_in); B NULL means D = A. */
static double out_err(const float *A, const float *B, int64_t n_out, int64_t n_in, const double *H) {
    double tot = 0;
    double *d = malloc((size_t)n_in * sizeof *d);
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t c = 0; c < n_in; c++) d[c] = (double)A[r * n_in + c] - (B ? (double)B[r * n_in + c] : 0.0);
        for (int64_t i = 0; i < n_in; i++) {
            double s = 0;
            for (int64_t j = 0; j < n_in; j++) s += H[i * n_in + j] * d[j];
            tot += d[i] * s;
        }
    }
    free(d);
    return tot;
}

/* X (T, n) with correlated columns and a few loud channels; H = XᵀX. */
static double *synth_h(int64_t n, int64_t T, int n_dead) {
    double *X = malloc((size_t)(T * n) * sizeof *X), *H = calloc((size_t)(n * n), sizeof *H);
    double *z = malloc((size_t)n * sizeof *z);
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < n; j++) z[j] = nrand();
        for (int64_t j = 0; j < n; j++) {
            /* a random walk across channels gives neighbouring correlation */
            double v = j ? 0.8 * X[t * n + j - 1] + 0.6 * z[j] : z[j];
            X[t * n + j] = v;
        }
        for (int64_t j = 0; j < n; j++) {
            if (j % 17 == 3) X[t * n + j] *= 8.0; /* outlier channels */
            if (j >= n - n_dead) X[t * n + j] = 0;
        }
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) H[i * n + j] += X[t * n + i] * X[t * n + j];
    free(X);
    free(z);
    return H;
}

static float *synth_w(int64_t n_out, int64_t n_in) {
    float *W = malloc((size_t)(n_out * n_in) * sizeof *W);
    for (int64_t i = 0; i < n_out * n_in; i++) W[i] = (float)(nrand() * 0.05);
    for (int64_t r = 0; r < n_out; r += 7) W[r * n_in + (r % n_in)] = 0.6f; /* weight outliers */
    return W;
}

/* === factorization kernels vs their twins === */

static void test_linalg(void) {
    int64_t sizes[] = {1, 7, 64, 131};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        double *H = synth_h(n, 3 * n + 5, 0);
        for (int64_t i = 0; i < n; i++) H[i * n + i] += 1.0;
        double *A = malloc((size_t)(n * n) * sizeof *A), *B = malloc((size_t)(n * n) * sizeof *B);
        memcpy(A, H, (size_t)(n * n) * sizeof *A);
        memcpy(B, H, (size_t)(n * n) * sizeof *B);
        CHECK(linalg_cholesky_lower(A, n) == 0);
        CHECK(linalg_cholesky_lower_ref(B, n) == 0);
        double md = 0, mx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) {
                md = fmax(md, fabs(A[i * n + j] - B[i * n + j]));
                mx = fmax(mx, fabs(B[i * n + j]));
            }
        CHECKF(md <= 1e-12 * mx, "cholesky n=%lld diff %g", (long long)n, md);
        /* L·Lᵀ reproduces H */
        double rec = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) {
                double v = 0;
                for (int64_t k = 0; k <= j; k++) v += B[i * n + k] * B[j * n + k];
                rec = fmax(rec, fabs(v - H[i * n + j]));
            }
        CHECKF(rec <= 1e-10 * mx * mx, "cholesky reconstruction %g", rec);
        /* inverse */
        CHECK(linalg_trinv_lower(A, n) == 0);
        CHECK(linalg_trinv_lower_ref(B, n) == 0);
        md = 0;
        mx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) {
                md = fmax(md, fabs(A[i * n + j] - B[i * n + j]));
                mx = fmax(mx, fabs(B[i * n + j]));
            }
        CHECKF(md <= 1e-10 * mx, "trinv n=%lld diff %g", (long long)n, md);
        free(A);
        free(B);
        free(H);
    }
    /* axpy: every SIMD level against the twin, odd lengths for the tails */
    static const char *const levels[] = {"scalar", "avx2", NULL};
    const char *env = getenv("QS_CPU");
    char saved[32] = "";
    if (env) snprintf(saved, sizeof saved, "%s", env);
    for (int lv = 0; lv < 3; lv++) {
        if (levels[lv]) setenv("QS_CPU", levels[lv], 1);
        else unsetenv("QS_CPU");
        cpu_refresh();
        for (int64_t n = 0; n < 70; n += 3) {
            float x[70], y[70], yr[70], a = (float)nrand();
            for (int64_t i = 0; i < n; i++) { x[i] = (float)nrand(); y[i] = yr[i] = (float)nrand(); }
            linalg_axpy_f32(n, a, x, y);
            linalg_axpy_f32_ref(n, a, x, yr);
            for (int64_t i = 0; i < n; i++)
                CHECKF(fabsf(y[i] - yr[i]) <= 2.4e-7f * (fabsf(a * x[i]) + fabsf(yr[i])), "axpy %s n %lld i %lld",
                       levels[lv] ? levels[lv] : "native", (long long)n, (long long)i);
        }
    }
    if (env) setenv("QS_CPU", saved, 1); /* the caller's level for the rest of the run */
    cpu_refresh();
    /* the pool versions (our blocked AVX-512 code, or OpenBLAS) against the twins */
    Pool *pool = NULL;
    Err err;
    err_init(&err);
    CHECK_OK(pool_new(3, &pool, &err), err);
    int64_t psizes[] = {1, 7, 64, 127, 128, 129, 300, 517};
    for (size_t s = 0; s < sizeof psizes / sizeof psizes[0]; s++) {
        int64_t n = psizes[s];
        double *H = synth_h(n, n + 40, 0);
        for (int64_t i = 0; i < n; i++) H[i * n + i] += 0.5;
        double *A = malloc((size_t)(n * n) * sizeof *A), *B = malloc((size_t)(n * n) * sizeof *B);
        memcpy(A, H, (size_t)(n * n) * sizeof *A);
        memcpy(B, H, (size_t)(n * n) * sizeof *B);
        for (int64_t i = 0; i < n; i++) /* the pool versions read only the lower triangle */
            for (int64_t j = i + 1; j < n; j++) A[i * n + j] = NAN;
        CHECK(linalg_cholesky_lower_pool(A, n, pool) == 0);
        CHECK(linalg_cholesky_lower_ref(B, n) == 0);
        double md = 0, mx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) {
                md = fmax(md, fabs(A[i * n + j] - B[i * n + j]));
                mx = fmax(mx, fabs(B[i * n + j]));
            }
        CHECKF(md <= 1e-12 * mx, "cholesky_pool n=%lld diff %g", (long long)n, md);
        CHECK(linalg_trinv_lower_pool(A, n, pool) == 0);
        CHECK(linalg_trinv_lower_ref(B, n) == 0);
        md = 0;
        mx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) {
                md = fmax(md, fabs(A[i * n + j] - B[i * n + j]));
                mx = fmax(mx, fabs(B[i * n + j]));
            }
        CHECKF(md <= 1e-10 * mx, "trinv_pool n=%lld diff %g", (long long)n, md);
        /* an indefinite minor deep inside: the same index as the twin */
        if (n > 200) {
            memcpy(A, H, (size_t)(n * n) * sizeof *A);
            memcpy(B, H, (size_t)(n * n) * sizeof *B);
            A[200 * n + 200] = B[200 * n + 200] = -1.0;
            CHECK(linalg_cholesky_lower_pool(A, n, pool) == 201);
            CHECK(linalg_cholesky_lower_ref(B, n) == 201);
        }
        free(A);
        free(B);
        free(H);
    }
    pool_free(pool);
    /* not positive definite: the failing minor is reported */
    double bad[9] = {1, 0, 0, 0, -1, 0, 0, 0, 1}, bad2[9];
    memcpy(bad2, bad, sizeof bad);
    CHECK(linalg_cholesky_lower(bad, 3) == 2);
    CHECK(linalg_cholesky_lower_ref(bad2, 3) == 2);
    double sing[4] = {1, 0, 2, 0};
    CHECK(linalg_trinv_lower_ref(sing, 2) == 2);
}

/* === a plain unblocked GPTQ === */

static void naive_chol(double *A, int64_t n) { CHECK(linalg_cholesky_lower_ref(A, n) == 0); }

typedef struct RefOut {
    float *wq;               /* (n_out, n_in) dequantized, original order */
    int *codes;              /* (n_out, n_in) */
} RefOut;

static int64_t ref_group(const QParams *p, int64_t n_out, int64_t n_in, int64_t r, int64_t c) {
    return qtensor_group_of(p, n_out, n_in, r, c);
}

static void ref_gptq(const float *W, int64_t n_out, int64_t n_in, const double *H, const QParams *p, double damp,
                     int act_order, int static_groups, RefOut *o) {
    int64_t n = n_in;
    double *Hc = malloc((size_t)(n * n) * sizeof *Hc);
    memcpy(Hc, H, (size_t)(n * n) * sizeof *Hc);
    int *dead = calloc((size_t)n, sizeof *dead);
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    for (int64_t j = 0; j < n; j++) {
        perm[j] = j;
        if (Hc[j * n + j] == 0) { dead[j] = 1; Hc[j * n + j] = 1; }
    }
    if (act_order) /* stable insertion sort by descending diagonal */
        for (int64_t i = 1; i < n; i++)
            for (int64_t k = i; k > 0 && Hc[perm[k] * n + perm[k]] > Hc[perm[k - 1] * n + perm[k - 1]]; k--) {
                int64_t t = perm[k]; perm[k] = perm[k - 1]; perm[k - 1] = t;
            }
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += Hc[j * n + j];
    mean /= (double)n;
    /* permuted, damped H; Hinv = L^-T L^-1; U = upper Cholesky of Hinv */
    double *A = malloc((size_t)(n * n) * sizeof *A), *Li = calloc((size_t)(n * n), sizeof *Li);
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) A[a * n + b] = Hc[perm[a] * n + perm[b]] + (a == b ? damp * mean : 0);
    naive_chol(A, n);
    for (int64_t j = 0; j < n; j++) { /* Li = L^-1 column by column */
        Li[j * n + j] = 1.0 / A[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            double s = 0;
            for (int64_t k = j; k < i; k++) s += A[i * n + k] * Li[k * n + j];
            Li[i * n + j] = -s / A[i * n + i];
        }
    }
    double *Hi = malloc((size_t)(n * n) * sizeof *Hi);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = i > j ? i : j; k < n; k++) s += Li[k * n + i] * Li[k * n + j];
            Hi[i * n + j] = s;
        }
    naive_chol(Hi, n); /* lower Lh with Hinv = Lh Lhᵀ; U = Lhᵀ */
    float *Wp = malloc((size_t)(n_out * n) * sizeof *Wp);
    for (int64_t r = 0; r < n_out; r++)
        for (int64_t j = 0; j < n; j++) Wp[r * n + j] = dead[perm[j]] ? 0.0f : W[r * n_in + perm[j]];
    int64_t ng = qparams_n_groups(p, n_out, n_in);
    float *scale = calloc((size_t)ng, sizeof *scale), *zero = calloc((size_t)ng, sizeof *zero);
    int dyn = p->dim == GROUP_OC && p->group > 0 && !static_groups && !act_order;
    if (!dyn) {
        float *lo = malloc((size_t)ng * sizeof *lo), *hi = malloc((size_t)ng * sizeof *hi);
        for (int64_t g = 0; g < ng; g++) { lo[g] = INFINITY; hi[g] = -INFINITY; }
        for (int64_t r = 0; r < n_out; r++)
            for (int64_t c = 0; c < n_in; c++) {
                int64_t g = ref_group(p, n_out, n_in, r, c);
                float v = dead[c] ? 0.0f : W[r * n_in + c];
                lo[g] = fminf(lo[g], v);
                hi[g] = fmaxf(hi[g], v);
            }
        for (int64_t g = 0; g < ng; g++) CHECK(rtn_fit_group(p->fmt, p->sym, lo[g], hi[g], &scale[g], &zero[g], NULL) == ST_OK);
        free(lo);
        free(hi);
    }
    for (int64_t j = 0; j < n; j++) {
        int64_t c = perm[j];
        float d = (float)Hi[j * n + j];
        for (int64_t r = 0; r < n_out; r++) {
            if (dyn && j % p->group == 0) {
                float lo = INFINITY, hi = -INFINITY;
                for (int64_t k = j; k < j + p->group; k++) { lo = fminf(lo, Wp[r * n + k]); hi = fmaxf(hi, Wp[r * n + k]); }
                int64_t g = ref_group(p, n_out, n_in, r, c);
                CHECK(rtn_fit_group(p->fmt, p->sym, lo, hi, &scale[g], &zero[g], NULL) == ST_OK);
            }
            int64_t g = ref_group(p, n_out, n_in, r, c);
            int code;
            float w = Wp[r * n + j];
            float q = rtn_quant_value(p->fmt, p->sym, scale[g], zero[g], w, &code);
            o->wq[r * n_in + c] = q;
            o->codes[r * n_in + c] = code;
            float e = (w - q) / d;
            for (int64_t k = j + 1; k < n; k++) Wp[r * n + k] -= e * (float)Hi[k * n + j];
        }
    }
    free(Hc); free(dead); free(perm); free(A); free(Li); free(Hi); free(Wp); free(scale); free(zero);
}

typedef struct Case {
    QParams p;
    int act_order, static_groups;
    int64_t block;
} Case;

static void test_vs_reference(Pool *pool) {
    const int64_t n_out = 40, n_in = 192;
    double *H = synth_h(n_in, 400, 3); /* three dead inputs */
    float *W = synth_w(n_out, n_in);
    Case cases[] = {
        {{QF_INT4, 1, GROUP_OC, 0}, 0, 0, 32},
        {{QF_INT4, 1, GROUP_OC, 0}, 1, 0, 48},
        {{QF_INT3, 0, GROUP_OC, 32}, 0, 0, 64},   /* dynamic groups, 2 per batch */
        {{QF_INT3, 0, GROUP_OC, 64}, 0, 0, 16},   /* block rounded up to the group */
        {{QF_INT4, 0, GROUP_OC, 32}, 1, 0, 32},   /* act-order: static groups */
        {{QF_INT4, 1, GROUP_OC, 16}, 0, 1, 128},  /* static groups */
        {{QF_INT4, 1, GROUP_IC, 0}, 0, 0, 32},    /* GPTQ-IC */
        {{QF_INT3, 0, GROUP_IC, 8}, 1, 0, 32},
        {{QF_INT8, 1, GROUP_TENSOR, 0}, 0, 0, 50},
        {{QF_FP8_E4M3, 1, GROUP_OC, 0}, 0, 0, 32},
        {{QF_INT2, 0, GROUP_OC, 0}, 1, 0, 128},
    };
    Err err;
    err_init(&err);
    float *wq = malloc((size_t)(n_out * n_in) * sizeof *wq);
    RefOut ro = {malloc((size_t)(n_out * n_in) * sizeof(float)), malloc((size_t)(n_out * n_in) * sizeof(int))};
    double base = out_err(W, NULL, n_out, n_in, H);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Case *cs = &cases[k];
        GptqOpts o;
        gptq_opts_default(&o);
        o.act_order = cs->act_order;
        o.static_groups = cs->static_groups;
        o.block = cs->block;
        QTensor q;
        GptqStats gs;
        CHECK_OK(gptq_quantize(W, n_out, n_in, H, NULL, &cs->p, &o, pool, NULL, &q, &gs, &err), err);
        CHECK(gs.dead_cols == 3 && gs.retries == 0);
        qtensor_dequant(&q, wq);
        ref_gptq(W, n_out, n_in, H, &cs->p, o.damp, o.act_order, o.static_groups, &ro);
        int64_t same = 0, n = n_out * n_in;
        for (int64_t i = 0; i < n; i++) {
            int code = q.q ? q.q[i] : q.f8[i];
            same += code == ro.codes[i];
        }
        double e_blk = out_err(W, wq, n_out, n_in, H), e_ref = out_err(W, ro.wq, n_out, n_in, H);
        printf("gptq case %zu (%s %s g%lld ao%d): codes equal %.4f%%, err %.6g vs ref %.6g (rel %.3g)\n", k,
               qformat_traits(cs->p.fmt)->name, group_dim_name(cs->p.dim), (long long)cs->p.group, cs->act_order,
               100.0 * (double)same / (double)n, e_blk, e_ref, e_blk / base);
        /* float summation order (GEMM vs sequential) may flip a rare tie */
        CHECKF(same >= n - n / 500, "case %zu: %lld of %lld codes differ", k, (long long)(n - same), (long long)n);
        CHECKF(fabs(e_blk - e_ref) <= 0.01 * e_ref, "case %zu: error %g vs %g", k, e_blk, e_ref);
        /* dead inputs quantize to zero */
        for (int64_t r = 0; r < n_out; r++) CHECK(wq[r * n_in + n_in - 1] == 0.0f);
        /* same result without a pool (rows are independent inside a batch) */
        QTensor q1;
        CHECK_OK(gptq_quantize(W, n_out, n_in, H, NULL, &cs->p, &o, NULL, NULL, &q1, NULL, &err), err);
        CHECK(q.q ? !memcmp(q.q, q1.q, (size_t)n) : !memcmp(q.f8, q1.f8, (size_t)n));
        CHECK(!memcmp(q.scale, q1.scale, (size_t)q.n_groups * sizeof *q.scale));
        qtensor_done(&q1);
        qtensor_done(&q);
    }
    /* float H gives the same codes as the same values in double */
    float *Hf = malloc((size_t)(n_in * n_in) * sizeof *Hf);
    double *Hr = malloc((size_t)(n_in * n_in) * sizeof *Hr);
    for (int64_t i = 0; i < n_in * n_in; i++) { Hf[i] = (float)H[i]; Hr[i] = Hf[i]; }
    QParams p4 = {QF_INT4, 1, GROUP_OC, 0};
    QTensor a, b;
    CHECK_OK(gptq_quantize(W, n_out, n_in, NULL, Hf, &p4, NULL, pool, NULL, &a, NULL, &err), err);
    CHECK_OK(gptq_quantize(W, n_out, n_in, Hr, NULL, &p4, NULL, pool, NULL, &b, NULL, &err), err);
    CHECK(!memcmp(a.q, b.q, (size_t)(n_out * n_in)));
    qtensor_done(&b);
    /* only the upper triangle is read: garbage below the diagonal changes nothing */
    GptqOpts oa;
    gptq_opts_default(&oa);
    oa.act_order = 1;
    QTensor c1, c2;
    CHECK_OK(gptq_quantize(W, n_out, n_in, Hr, NULL, &p4, &oa, pool, NULL, &c1, NULL, &err), err);
    for (int64_t i = 0; i < n_in; i++)
        for (int64_t j = 0; j < i; j++) Hr[i * n_in + j] = -1e30;
    CHECK_OK(gptq_quantize(W, n_out, n_in, Hr, NULL, &p4, &oa, pool, NULL, &c2, NULL, &err), err);
    CHECK(!memcmp(c1.q, c2.q, (size_t)(n_out * n_in)));
    qtensor_done(&c1);
    qtensor_done(&c2);
    qtensor_done(&a);
    /* one shared factor gives exactly what separate calls give (q/k/v style) */
    GptqOpts of;
    gptq_opts_default(&of);
    of.act_order = 1;
    GptqFactor *fac = NULL;
    CHECK_OK(gptq_factor_new(H, NULL, n_in, &of, pool, &fac, &err), err);
    CHECK(gptq_factor_dim(fac) == n_in);
    QParams shared[2] = {{QF_INT4, 0, GROUP_OC, 32}, {QF_INT3, 1, GROUP_IC, 0}};
    for (int k = 0; k < 2; k++) {
        QTensor s1, s2;
        GptqStats st1;
        CHECK_OK(gptq_quantize_factored(W, n_out, n_in, fac, &shared[k], &of, pool, NULL, &s1, &st1, &err), err);
        CHECK_OK(gptq_quantize(W, n_out, n_in, H, NULL, &shared[k], &of, pool, NULL, &s2, NULL, &err), err);
        CHECK(!memcmp(s1.q, s2.q, (size_t)(n_out * n_in)) && st1.dead_cols == 3);
        qtensor_done(&s1);
        qtensor_done(&s2);
    }
    CHECK(gptq_quantize_factored(W, n_out, n_in - 8, fac, &p4, &of, pool, NULL, &a, NULL, &err) == ST_ERR_MISMATCH);
    gptq_factor_free(fac);
    /* errors */
    CHECK(gptq_quantize(W, n_out, n_in, NULL, NULL, &p4, NULL, pool, NULL, &a, NULL, &err) == ST_ERR_ARG);
    CHECK(gptq_quantize(W, n_out, n_in, H, Hf, &p4, NULL, pool, NULL, &a, NULL, &err) == ST_ERR_ARG);
    QParams p16 = {QF_F16, 1, GROUP_OC, 0};
    CHECK(gptq_quantize(W, n_out, n_in, H, NULL, &p16, NULL, pool, NULL, &a, NULL, &err) == ST_ERR_ARG);
    QParams pg = {QF_INT4, 1, GROUP_OC, 50};
    CHECK(gptq_quantize(W, n_out, n_in, H, NULL, &pg, NULL, pool, NULL, &a, NULL, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "group 50 does not divide the input dim 192"));
    Progress pr;
    progress_init(&pr);
    progress_cancel(&pr);
    CHECK(gptq_quantize(W, n_out, n_in, H, NULL, &p4, NULL, pool, &pr, &a, NULL, &err) == ST_ERR_CANCELLED);
    CHECK(a.q == NULL);
    double h0 = H[5 * n_in + 5];
    H[5 * n_in + 5] = NAN;
    CHECK(gptq_quantize(W, n_out, n_in, H, NULL, &p4, NULL, pool, NULL, &a, NULL, &err) == ST_ERR_NUMERIC);
    /* fewer calibration rows than inputs: H is singular; without damping the
     * Cholesky fails and the retry adds some, and says so */
    H[5 * n_in + 5] = h0;
    double *Hs = synth_h(n_in, 100, 0);
    GptqOpts o0;
    gptq_opts_default(&o0);
    o0.damp = 0;
    GptqStats gs;
    CHECK_OK(gptq_quantize(W, n_out, n_in, Hs, NULL, &p4, &o0, pool, NULL, &a, &gs, &err), err);
    CHECK(gs.retries >= 1 && gs.damp_used > 0);
    free(Hs);
    qtensor_done(&a);
    free(Hf);
    free(Hr);
    free(ro.wq);
    free(ro.codes);
    free(wq);
    free(W);
    free(H);
}

/* GPTQ's output error vs RTN's on one matrix; returns the ratio gptq/rtn. */
static double gptq_vs_rtn(const float *W, int64_t n_out, int64_t n_in, const double *H, const QParams *p, int act_order,
                          Pool *pool) {
    Err err;
    err_init(&err);
    float *wr = malloc((size_t)(n_out * n_in) * sizeof *wr), *wg = malloc((size_t)(n_out * n_in) * sizeof *wg);
    CHECK_OK(rtn_fake_quantize(W, n_out, n_in, p, wr, &err), err);
    GptqOpts o;
    gptq_opts_default(&o);
    o.act_order = act_order;
    QTensor q;
    CHECK_OK(gptq_quantize(W, n_out, n_in, H, NULL, p, &o, pool, NULL, &q, NULL, &err), err);
    qtensor_dequant(&q, wg);
    qtensor_done(&q);
    double er = out_err(W, wr, n_out, n_in, H), eg = out_err(W, wg, n_out, n_in, H);
    free(wr);
    free(wg);
    return eg / er;
}

static void test_synthetic_vs_rtn(Pool *pool) {
    const int64_t n_out = 64, n_in = 256;
    double *H = synth_h(n_in, 600, 0);
    float *W = synth_w(n_out, n_in);
    QFormat fmts[] = {QF_INT4, QF_INT3};
    for (int f = 0; f < 2; f++)
        for (int ao = 0; ao <= 1; ao++) {
            QParams p = {fmts[f], 0, GROUP_OC, 64};
            double r = gptq_vs_rtn(W, n_out, n_in, H, &p, ao, pool);
            printf("synthetic %s oc64 act_order %d: gptq/rtn output error %.3f\n", qformat_traits(fmts[f])->name, ao, r);
            CHECKF(r < 0.8, "gptq/rtn %g", r);
        }
    free(W);
    free(H);
}

/* GPTQ on ggml block grids. On a correlated H its output error is below
 * RTN's (ggml's reference quantizer, byte-identical to llama-quantize) for
 * every type, with and without act-order. On a diagonal H (no error to
 * propagate) each block's header is RTN's own (the importance-weighted
 * quantizer under diag H where the type has one, as method imatrix) and every
 * code the nearest on that grid, so no element's error exceeds RTN's. */
static void test_ggml_grids(Pool *pool) {
    Err err;
    err_init(&err);
    const int64_t n_out = 48, n_in = 512;
    double *H = synth_h(n_in, 1200, 2);
    float *W = synth_w(n_out, n_in);
    int n_types = 0;
    for (int f = 0; f < QF_COUNT; f++) {
        const QFormatTraits *t = qformat_traits((QFormat)f);
        if (t->family != QFAM_GGML) continue;
        n_types++;
        QParams p = {(QFormat)f, 1, GROUP_OC, 0};
        double r0 = gptq_vs_rtn(W, n_out, n_in, H, &p, 0, pool), r1 = gptq_vs_rtn(W, n_out, n_in, H, &p, 1, pool);
        CHECKF(r0 < 0.9 && r1 < 0.9, "%s: gptq/rtn %g (act_order %g)", t->name, r0, r1);
        const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
        double ri = 0; /* against method imatrix (RTN weighted by diag H) */
        if (g->quant_w) {
            float *qw = malloc((size_t)n_in * sizeof *qw), *wi = malloc((size_t)(n_out * n_in) * sizeof *wi);
            for (int64_t i = 0; i < n_in; i++) qw[i] = (float)H[i * n_in + i];
            QTensor qi;
            CHECK_OK(rtn_quantize_weighted(W, n_out, n_in, &p, qw, &qi, &err), err);
            qtensor_dequant(&qi, wi);
            qtensor_done(&qi);
            QTensor qg;
            float *wg = malloc((size_t)(n_out * n_in) * sizeof *wg);
            CHECK_OK(gptq_quantize(W, n_out, n_in, H, NULL, &p, NULL, pool, NULL, &qg, NULL, &err), err);
            qtensor_dequant(&qg, wg);
            qtensor_done(&qg);
            ri = out_err(W, wg, n_out, n_in, H) / out_err(W, wi, n_out, n_in, H);
            CHECKF(ri < 0.9, "%s: gptq/imatrix %g", t->name, ri);
            free(qw); free(wi); free(wg);
        }
        printf("synthetic %s: gptq/rtn output error %.3f, act_order %.3f; gptq/imatrix %.3f\n", t->name, r0, r1, ri);
        /* one block per row, diagonal H */
        int64_t bs = g->block_size, m = 24;
        double *D = calloc((size_t)(bs * bs), sizeof *D);
        for (int64_t i = 0; i < bs; i++) D[i * bs + i] = 1.0 + (double)(i % 5);
        float *wb = malloc((size_t)(m * bs) * sizeof *wb), *vr = malloc((size_t)(m * bs) * sizeof *vr);
        float *vg = malloc((size_t)(m * bs) * sizeof *vg);
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < bs; c++) wb[r * bs + c] = W[r * n_in + c];
        QTensor qr, qg;
        float *qw = malloc((size_t)bs * sizeof *qw);
        for (int64_t i = 0; i < bs; i++) qw[i] = (float)D[i * bs + i];
        /* GPTQ fits with the type's importance-weighted quantizer under diag H where it has one */
        if (g->quant_w) CHECK_OK(rtn_quantize_weighted(wb, m, bs, &p, qw, &qr, &err), err);
        else CHECK_OK(rtn_quantize(wb, m, bs, &p, &qr, &err), err);
        free(qw);
        GptqOpts o;
        gptq_opts_default(&o);
        o.damp = 0;
        CHECK_OK(gptq_quantize(wb, m, bs, D, NULL, &p, &o, pool, NULL, &qg, NULL, &err), err);
        qtensor_dequant(&qr, vr);
        qtensor_dequant(&qg, vg);
        int worse = 0;
        for (int64_t i = 0; i < m * bs; i++)
            if (fabsf(wb[i] - vg[i]) > fabsf(wb[i] - vr[i]) * (1 + 1e-6f) + 1e-12f) worse++;
        CHECKF(worse == 0, "%s: %d elements off the nearest code of RTN's grid", t->name, worse);
        /* the same headers: every sub-block's step and offset */
        GgmlGrid gr;
        CHECK(ggml_type_grid((uint32_t)t->ggml_type, &gr) == 0);
        float s1[16], o1[16], s2[16], o2[16];
        int same = 1;
        for (int64_t r = 0; r < m; r++) {
            ggml_block_steps((uint32_t)t->ggml_type, qr.blk + r * g->block_bytes, s1, o1);
            ggml_block_steps((uint32_t)t->ggml_type, qg.blk + r * g->block_bytes, s2, o2);
            same &= !memcmp(s1, s2, (size_t)(bs / gr.sub) * sizeof *s1) && !memcmp(o1, o2, (size_t)(bs / gr.sub) * sizeof *o1);
        }
        CHECKF(same, "%s: gptq's block headers differ from rtn's on a diagonal H", t->name);
        qtensor_done(&qr);
        qtensor_done(&qg);
        free(D); free(wb); free(vr); free(vg);
    }
    CHECK(n_types == 10);
    /* formats without a grid GPTQ can choose */
    QParams pf = {QF_F16, 1, GROUP_OC, 0};
    QTensor q;
    CHECK(gptq_quantize(W, n_out, n_in, H, NULL, &pf, NULL, pool, NULL, &q, NULL, &err) == ST_ERR_ARG);
    free(W);
    free(H);
}

/* AdaDim on planted structure: a loud input column favours per-IC scales, a
 * loud output row favours per-OC scales; with GPTQ as the base the reported
 * errors are those of gptq_quantize's own results. */
static void test_adadim(Pool *pool) {
    Err err;
    err_init(&err);
    const int64_t n_out = 64, n_in = 128;
    double *H = synth_h(n_in, 300, 0);
    float *W = synth_w(n_out, n_in);
    for (int64_t r = 0; r < n_out; r++) W[r * n_in + 9] *= 40.0f; /* loud column */
    QParams p = {QF_INT4, 1, GROUP_OC, 0};
    AdaDimResult res;
    CHECK_OK(adadim_choose(W, n_out, n_in, H, &p, NULL, pool, NULL, &res, &err), err);
    printf("adadim, loud column: err oc %.4g ic %.4g (ref %.4g)\n", res.err_oc, res.err_ic, res.err_ref);
    CHECK(res.dim == GROUP_IC && res.err_ic < 0.5 * res.err_oc);
    CHECK_NEAR(res.err_ref, out_err(W, NULL, n_out, n_in, H), 1e-4 * res.err_ref);
    /* both paths of adadim_output_error against the plain double loop */
    const char *env0 = getenv("QS_CPU");
    char env[32] = "";
    if (env0) snprintf(env, sizeof env, "%s", env0);
    for (int lv = 0; lv < 2; lv++) {
        if (lv) setenv("QS_CPU", "avx2", 1);
        cpu_refresh();
        float *wz = malloc((size_t)(n_out * n_in) * sizeof *wz);
        for (int64_t i = 0; i < n_out * n_in; i++) wz[i] = W[i] * 0.9f;
        double e0 = out_err(W, wz, n_out, n_in, H), e1 = adadim_output_error(W, wz, n_out, n_in, H, pool);
        CHECKF(fabs(e1 - e0) <= (lv ? 1e-12 : 1e-5) * e0, "output error path %d: %.10g vs %.10g", lv, e1, e0);
        free(wz);
        if (env0) setenv("QS_CPU", env, 1);
        else unsetenv("QS_CPU");
        cpu_refresh();
    }
    qtensor_done(&res.q);
    free(W);
    W = synth_w(n_out, n_in);
    for (int64_t c = 0; c < n_in; c++) W[3 * n_in + c] *= 40.0f; /* loud row */
    CHECK_OK(adadim_choose(W, n_out, n_in, H, &p, NULL, pool, NULL, &res, &err), err);
    printf("adadim, loud row: err oc %.4g ic %.4g\n", res.err_oc, res.err_ic);
    CHECK(res.dim == GROUP_OC && res.err_oc < 0.8 * res.err_ic);
    qtensor_done(&res.q);
    /* GPTQ base, groups of 16 both ways */
    GptqOpts o;
    gptq_opts_default(&o);
    QParams pg = {QF_INT3, 0, GROUP_IC, 16}; /* dim is ignored */
    CHECK_OK(adadim_choose(W, n_out, n_in, H, &pg, &o, pool, NULL, &res, &err), err);
    float *wq = malloc((size_t)(n_out * n_in) * sizeof *wq);
    for (int d = GROUP_OC; d <= GROUP_IC; d++) {
        QParams pd = pg;
        pd.dim = (GroupDim)d;
        QTensor q;
        CHECK_OK(gptq_quantize(W, n_out, n_in, H, NULL, &pd, &o, pool, NULL, &q, NULL, &err), err);
        qtensor_dequant(&q, wq);
        double e = out_err(W, wq, n_out, n_in, H);
        CHECK_NEAR(d == GROUP_OC ? res.err_oc : res.err_ic, e, 1e-4 * e);
        if (d == (int)res.dim) CHECK(!memcmp(q.q, res.q.q, (size_t)(n_out * n_in)) && res.q.p.dim == res.dim);
        qtensor_done(&q);
    }
    /* a shared factor (as qmodel gives q/k/v) changes nothing, bit for bit */
    GptqFactor *gf = NULL;
    CHECK_OK(gptq_factor_new(H, NULL, n_in, &o, pool, &gf, &err), err);
    AdaDimResult rf;
    CHECK_OK(adadim_choose_factored(W, n_out, n_in, H, gf, &pg, &o, pool, NULL, &rf, &err), err);
    CHECK(rf.dim == res.dim && rf.err_oc == res.err_oc && rf.err_ic == res.err_ic && rf.err_ref == res.err_ref);
    CHECK(!memcmp(rf.q.q, res.q.q, (size_t)(n_out * n_in)) &&
          !memcmp(rf.q.scale, res.q.scale, (size_t)res.q.n_groups * sizeof *res.q.scale));
    qtensor_done(&rf.q);
    CHECK(adadim_choose_factored(W, n_out, 64, H, gf, &pg, &o, pool, NULL, &rf, &err) == ST_ERR_MISMATCH);
    gptq_factor_free(gf);
    qtensor_done(&res.q);
    /* the group must divide both dims */
    QParams bad = {QF_INT4, 1, GROUP_OC, 32};
    CHECK(adadim_choose(W, 48, 128, H, &bad, NULL, pool, NULL, &res, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "group 32 does not divide the output dim 48"));
    QParams f16 = {QF_F16, 1, GROUP_OC, 0};
    CHECK(adadim_choose(W, n_out, n_in, H, &f16, NULL, pool, NULL, &res, &err) == ST_ERR_ARG);
    free(wq);
    free(W);
    free(H);
}

/* === stories260K: H from real activations through the forward taps === */

typedef struct TapAcc {
    int64_t n_layers, dim, hidden;
    double *H[64][TAP_COUNT]; /* (width, width) per layer and tap */
} TapAcc;

static void tap_acc(void *user, int64_t layer, TapPoint point, const float *x, int64_t T, int64_t width,
                    const int32_t *tokens, int64_t pos0) {
    (void)tokens;
    (void)pos0;
    TapAcc *a = user;
    if (point == TAP_RESID) return;
    double *H = a->H[layer][point];
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < width; i++) {
            double xi = x[t * width + i];
            for (int64_t j = 0; j < width; j++) H[i * width + j] += xi * x[t * width + j];
        }
}

static void test_stories(Pool *pool) {
    Err err;
    err_init(&err);
    char *text = NULL;
    size_t len = 0;
    Model *m = testlib_stories(&text, &len);
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    CHECK_OK(tokenizer_encode(m->tok, text, len, 1, &ids, &n_ids, &err), err);
    int64_t T = n_ids < 512 ? n_ids : 512;
    CHECK(T >= 256);
    TapAcc acc = {m->cfg.n_layers, m->cfg.dim, m->cfg.hidden_dim, {{0}}};
    CHECK(m->cfg.n_layers <= 64);
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < TAP_RESID; t++) {
            int64_t w = t == TAP_DOWN ? m->cfg.hidden_dim : t == TAP_O ? m->cfg.n_heads * m->cfg.head_dim : m->cfg.dim;
            acc.H[l][t] = calloc((size_t)(w * w), sizeof(double));
        }
    Forward *f = NULL;
    CHECK_OK(forward_new(m, NULL, T, T, pool, &f, &err), err);
    Taps taps = {tap_acc, &acc, 0};
    CHECK_OK(forward_run(f, ids, T, NULL, 0, &taps, &err), err);
    forward_free(f);
    double worst[2] = {0, 0};
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++) {
            const Weight *w = &m->layers[l].proj[p];
            const float *wf = weight_f32_data(w); /* the test model is F32 */
            CHECK(wf != NULL);
            const double *H = acc.H[l][proj_tap((Proj)p)];
            for (int b = 0; b < 2; b++) {
                /* groups of 4 divide 64 and 172 (the stories260K dims) */
                QParams qp = {b ? QF_INT3 : QF_INT4, 0, GROUP_OC, 4};
                double r = gptq_vs_rtn(wf, w->n_out, w->n_in, H, &qp, 1, pool);
                QParams qc = {b ? QF_INT3 : QF_INT4, 1, GROUP_OC, 0};
                double rc = gptq_vs_rtn(wf, w->n_out, w->n_in, H, &qc, 0, pool);
                CHECKF(r < 1.0 && rc < 1.0, "layer %lld %s %s: gptq/rtn %g (oc4) %g (per-OC)", (long long)l,
                       proj_name((Proj)p), b ? "int3" : "int4", r, rc);
                worst[b] = fmax(worst[b], fmax(r, rc));
            }
        }
    printf("stories260K (%lld tokens): worst gptq/rtn output error over 35 projections: int4 %.3f, int3 %.3f\n",
           (long long)T, worst[0], worst[1]);
    /* ggml's 32-element block types on every projection whose rows are whole
     * blocks (stories260K's 64-wide inputs; K-quants need 256) */
    static const QFormat B32[] = {QF_Q8_0, QF_Q4_0, QF_Q4_1, QF_Q5_0, QF_Q5_1};
    for (size_t k = 0; k < sizeof B32 / sizeof B32[0]; k++) {
        double wk = 0;
        int n_sites = 0;
        for (int64_t l = 0; l < m->cfg.n_layers; l++)
            for (int p = 0; p < PROJ_COUNT; p++) {
                const Weight *w = &m->layers[l].proj[p];
                if (w->n_in % 32) continue;
                QParams qp = {B32[k], 1, GROUP_OC, 0};
                double r = gptq_vs_rtn(weight_f32_data(w), w->n_out, w->n_in, acc.H[l][proj_tap((Proj)p)], &qp, 0, pool);
                CHECKF(r < 1.0, "layer %lld %s %s: gptq/rtn %g", (long long)l, proj_name((Proj)p),
                       qformat_traits(B32[k])->name, r);
                wk = fmax(wk, r);
                n_sites++;
            }
        CHECK(n_sites == 30);
        printf("stories260K %s: worst gptq/rtn output error over %d projections %.3f\n", qformat_traits(B32[k])->name,
               n_sites, wk);
    }
    /* AdaDim picks the variant with the lower calibrated output error */
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++) {
            const Weight *w = &m->layers[l].proj[p];
            const float *wf = weight_f32_data(w); /* the test model is F32 */
            CHECK(wf != NULL);
            const double *H = acc.H[l][proj_tap((Proj)p)];
            QParams qp = {QF_INT3, 0, GROUP_OC, 4};
            AdaDimResult res;
            CHECK_OK(adadim_choose(wf, w->n_out, w->n_in, H, &qp, NULL, pool, NULL, &res, &err), err);
            float *wr = malloc((size_t)(w->n_out * w->n_in) * sizeof *wr);
            QParams oc = qp, ic = qp;
            ic.dim = GROUP_IC;
            CHECK_OK(rtn_fake_quantize(wf, w->n_out, w->n_in, &oc, wr, &err), err);
            double eoc = out_err(wf, wr, w->n_out, w->n_in, H);
            CHECK_OK(rtn_fake_quantize(wf, w->n_out, w->n_in, &ic, wr, &err), err);
            double eic = out_err(wf, wr, w->n_out, w->n_in, H);
            free(wr);
            /* float32 GEMM on AVX-512: ~1e-5 relative */
            CHECK_NEAR(res.err_oc, eoc, 1e-4 * eoc);
            CHECK_NEAR(res.err_ic, eic, 1e-4 * eic);
            if (fabs(eic - eoc) > 1e-3 * fmax(eic, eoc)) CHECK(res.dim == (eic < eoc ? GROUP_IC : GROUP_OC));
            CHECK(res.dim == (res.err_ic < res.err_oc ? GROUP_IC : GROUP_OC));
            CHECK(res.q.p.dim == res.dim);
            qtensor_done(&res.q);
        }
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < TAP_RESID; t++) free(acc.H[l][t]);
    free(ids);
    free(text);
    model_free(m);
}

/* A NaN off the diagonal of H (a calibration that saw non-finite
 * activations) is named as such, not as "not positive definite". */
static void test_nan_h(Pool *pool) {
    Err err;
    err_init(&err);
    const int64_t n = 8;
    double H[64];
    for (int64_t i = 0; i < n * n; i++) H[i] = i % (n + 1) == 0 ? 2.0 : 0.1;
    H[2 * n + 5] = H[5 * n + 2] = NAN;
    GptqOpts o;
    gptq_opts_default(&o);
    GptqFactor *f = NULL;
    CHECK(gptq_factor_new(H, NULL, n, &o, pool, &f, &err) == ST_ERR_NUMERIC && !f);
    CHECKF(strstr(err.detail, "H[2][5] = nan: the calibration saw non-finite activations"), "%s", err.detail);
}

int main(void) {
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(3, &pool, &err), err);
    test_linalg();
    test_vs_reference(pool);
    test_synthetic_vs_rtn(pool);
    test_ggml_grids(pool);
    test_adadim(pool);
    test_stories(pool);
    test_nan_h(pool);
    pool_free(pool);
    return testlib_done("test_gptq");
}
