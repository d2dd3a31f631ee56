#include "analysis/sensitivity.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/hstore.h"
#include "core/alloc.h"
#include "core/assert.h"
#include "core/mapfile.h"
#include "kernels/f32gemm.h"
#include "kernels/sgemm.h"
#include "quant/ggml_type.h"
#include "quant/qtensor.h"
#include "quant/rtn.h"

/* The candidates are the formats whose traits give them a map position
 * (quant/format.c); their count is part of the stats file layout. */
static QFormat sens_fmts[SENS_NFMT];
static pthread_once_t sens_once = PTHREAD_ONCE_INIT;

static void sens_init(void) {
    int n = qformat_list(QLIST_SENS, sens_fmts, SENS_NFMT);
    ASSERT(n == SENS_NFMT);
}
static const char *const sens_group_names[SG_COUNT] = {"tensor", "oc", "ic", "oc-g", "ic-g", "blk"};

/* Rows per GEMM: bounds the per-thread scratch (BMAX x n_in floats, twice). */
#define BMAX 1024
/* Most directions of H deflated (SensOpts.rank is capped to it). */
#define SENS_MAX_RANK 128
/* Products Qt·H of the subspace iteration (h_deflate). */
#define SENS_DEFLATE_ITERS 4
/* Rows a cell quantizes first (cell_est). */
#define SENS_START_ROWS 256
/* A row through H (n_in² multiply-adds in the GEMM) costs about n_in/350
 * quantized rows (rtn, ‖δ‖², the diagonal and ΔW·Q: ~13 ns per weight per
 * cell against ~0.036 ns per multiply-add on the AVX2 EPYC, BENCHMARKS.md):
 * cell_est's plan and sens_site_cost weigh the two by it. */
#define SENS_ROW_COST 350.0

int sens_cell_applies(int fmt, SensGroup g) {
    const QFormatTraits *t = qformat_traits(sens_fmt(fmt));
    if (fmt < 0 || fmt >= SENS_NFMT || (unsigned)g >= SG_COUNT) return 0;
    return (t->family == QFAM_GGML) == (g == SG_BLOCK);
}

int sens_fmt_cells(int fmt) {
    int n = 0;
    for (int g = 0; g < SG_COUNT; g++) n += sens_cell_applies(fmt, (SensGroup)g);
    return n;
}

QFormat sens_fmt(int i) {
    pthread_once(&sens_once, sens_init);
    return (i >= 0 && i < SENS_NFMT) ? sens_fmts[i] : QF_F32;
}

int sens_fmt_index(QFormat f) {
    pthread_once(&sens_once, sens_init);
    for (int i = 0; i < SENS_NFMT; i++)
        if (sens_fmts[i] == f) return i;
    return -1;
}

const char *sens_group_name(SensGroup g) { return (unsigned)g < SG_COUNT ? sens_group_names[g] : "?"; }

GroupDim sens_group_dim(SensGroup g) {
    switch (g) {
    case SG_OC: case SG_OC_G: case SG_BLOCK: return GROUP_OC;
    case SG_IC: case SG_IC_G: return GROUP_IC;
    default: return GROUP_TENSOR;
    }
}

int64_t sens_group_size(int64_t n, int64_t g) {
    for (int64_t d = (g / 4) * 4; d >= 4; d -= 4)
        if (n % d == 0) return d;
    return 0;
}

int sens_cell_params(int fmt, SensGroup g, int64_t n_out, int64_t n_in, int64_t group, QParams *qp) {
    if (!sens_cell_applies(fmt, g)) return 0;
    QParams q = {.fmt = sens_fmt(fmt), .sym = 1, .dim = sens_group_dim(g), .group = 0};
    if (g == SG_OC_G) q.group = sens_group_size(n_in, group);
    if (g == SG_IC_G) q.group = sens_group_size(n_out, group);
    if ((g == SG_OC_G || g == SG_IC_G) && q.group == 0) return 0;
    const QFormatTraits *t = qformat_traits(q.fmt);
    if (t->family == QFAM_GGML && n_in % ggml_type_traits((uint32_t)t->ggml_type)->block_size != 0) return 0;
    *qp = q;
    return 1;
}

Status sens_map_init(SensMap *sm, int64_t n_layers, int64_t group, Err *err) {
    memset(sm, 0, sizeof *sm);
    if (n_layers <= 0 || group < 0) return err_set(err, ST_ERR_ARG, "sensitivity map: %lld layers, group %lld",
                                                   (long long)n_layers, (long long)group);
    size_t n = (size_t)n_layers * PROJ_COUNT * SENS_NFMT * SG_COUNT;
    sm->n_layers = n_layers;
    sm->group = group;
    sm->werr = core_calloc(n, sizeof *sm->werr);
    sm->oerr = core_calloc(n, sizeof *sm->oerr);
    sm->gsize = core_calloc((size_t)n_layers * PROJ_COUNT * SG_COUNT, sizeof *sm->gsize);
    sm->done = core_calloc((size_t)n_layers * PROJ_COUNT * SENS_NFMT, sizeof *sm->done);
    if (!sm->werr || !sm->oerr || !sm->gsize || !sm->done) {
        sens_map_done(sm);
        return err_set(err, ST_ERR_NOMEM, "sensitivity map");
    }
    for (size_t i = 0; i < n; i++) sm->werr[i] = sm->oerr[i] = NAN;
    return ST_OK;
}

void sens_map_done(SensMap *sm) {
    free(sm->werr);
    free(sm->oerr);
    free(sm->gsize);
    free(sm->done);
    memset(sm, 0, sizeof *sm);
}

/* Candidates of site s (layer * PROJ_COUNT + proj) still to compute. */
static int site_missing(const SensMap *sm, int64_t s) {
    int n = 0;
    for (int f = 0; f < SENS_NFMT; f++) n += !sm->done[s * SENS_NFMT + f];
    return n;
}

/* Their cells (the cost unit). */
static int site_missing_cells(const SensMap *sm, int64_t s) {
    int n = 0;
    for (int f = 0; f < SENS_NFMT; f++) n += sm->done[s * SENS_NFMT + f] ? 0 : sens_fmt_cells(f);
    return n;
}

int64_t sens_map_sites_done(const SensMap *sm) {
    if (!sm->done) return 0;
    int64_t n = 0;
    for (int64_t s = 0; s < sm->n_layers * PROJ_COUNT; s++) n += site_missing(sm, s) == 0;
    return n;
}

int sens_map_complete(const SensMap *sm) {
    return sm->done && sens_map_sites_done(sm) == sm->n_layers * PROJ_COUNT;
}

double sens_site_cost(int64_t n_out, int64_t n_in, int n_cells) {
    double q = n_out < 1100 ? (double)n_out : 1100.0, h = n_out < 40 ? (double)n_out : 40.0;
    return (double)n_cells * (SENS_ROW_COST * q * (double)n_in + h * (double)n_in * (double)n_in +
                              30.0 * (double)n_out * (double)n_in);
}

double sens_cell_bpw(int fmt, SensGroup g, const int32_t *gs, int64_t n_out, int64_t n_in) {
    if (!sens_cell_applies(fmt, g)) return NAN;
    const QFormatTraits *t = qformat_traits(sens_fmt(fmt));
    if (g == SG_BLOCK) {
        const GgmlTypeTraits *b = ggml_type_traits((uint32_t)t->ggml_type);
        return 8.0 * (double)b->block_bytes / (double)b->block_size;
    }
    QParams qp = {.fmt = sens_fmt(fmt), .sym = 1, .dim = sens_group_dim(g), .group = 0};
    if (g == SG_OC_G || g == SG_IC_G) qp.group = gs[g];
    if (((g == SG_OC_G || g == SG_IC_G) && qp.group <= 0) || n_in <= 0) return NAN;
    if (n_out <= 0) { /* the scale count needs n_out except per output channel and along the input */
        if (g == SG_TENSOR) return t->bits; /* one scale: < 1e-5 bits per weight on any real matrix */
        if (g == SG_OC) return t->bits + 16.0 / (double)n_in;
        if (g == SG_OC_G) return t->bits + 16.0 / (double)qp.group;
        return NAN;
    }
    return (double)qparams_bits(&qp, n_out, n_in) / ((double)n_out * (double)n_in);
}

void sens_opts_default(SensOpts *o) {
    memset(o, 0, sizeof *o);
    o->exact = 0;
    o->min_rows = 32;
    o->rel_se = 0.01;
    o->rank = SENS_DEFAULT_RANK;
}


/* splitmix64, for the seeded row order of each site. */
static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One site's shared inputs and the per-thread scratch of the cell jobs. */
typedef struct SiteJob {
    const float *W;          /* (no, ni) */
    int64_t no, ni;
    const float *Hf;         /* (ni, ni) or NULL */
    const int64_t *perm;     /* (no) row order of the subsample */
    int p;                   /* deflated directions (0: none) */
    const float *Qt;         /* (p, ni) H's top eigen-directions (approximate), rows orthonormal */
    const double *lam;       /* (p) Rayleigh quotients: Qt H Qtᵀ = diag(lam) */
    const float *rii;        /* (ni) diag of R = H − Qtᵀ diag(lam) Qt (diag H when p is 0) */
    double wnorm;
    double *num;             /* (SENS_NFMT * SG_COUNT) tr(ΔW H ΔWᵀ) per cell, then divided by denom */
    double denom;            /* tr(W H Wᵀ), the site's job 0 */
    const SensOpts *o;
    int64_t layer;
    int proj;
    SensMap *sm;
    GemmWork *gw;
    const GemmPackedB *hp;   /* Hf packed for the GEMMs of rows_quad (NULL: pack per call) */
    float **wq, **dsub, **g; /* [thread] (no*ni), (BMAX*ni), (BMAX*ni) */
    double **rdiag;          /* [thread] (no) the exactly computed part c_r of each row */
    double **wrow;           /* [thread] (no) ‖δ_r‖² of each sampled row */
    const int64_t *iota;     /* (no) 0, 1, 2, ... */
    float *lo[SG_COUNT], *hi[SG_COUNT]; /* [grouping] W's group ranges (rtn_ranges), shared by the fits of the
                                           grouping's scaled formats; NULL: none (each cell runs rtn_fit) */
    float **y;               /* [thread] (no, p) ΔW·Q */
    float **yt;              /* [thread] (p, no) its transpose, as rows_q's GEMM writes it */
    Progress *prog;          /* a cancel stops the cells (the site is then not done) */
    _Atomic int next;
    _Atomic int finished;    /* jobs (the denominator and the cells) computed or skipped */
    _Atomic int failed;
    Status st;
    Err err;
} SiteJob;

/* Σ_{r in rows} δ_r H δ_rᵀ for the given rows of D (no, ni), GEMMs of up to
 * BMAX rows on thread tid's scratch; per-row values to out (may be NULL). */
static double rows_quad(const SiteJob *j, int tid, const float *D, const int64_t *rows, int64_t n, double *out) {
    int64_t ni = j->ni;
    double s = 0;
    for (int64_t b0 = 0; b0 < n; b0 += BMAX) {
        int64_t nb = n - b0 < BMAX ? n - b0 : BMAX;
        float *A = j->dsub[tid], *G = j->g[tid];
        for (int64_t r = 0; r < nb; r++) memcpy(A + r * ni, D + rows[b0 + r] * ni, (size_t)ni * sizeof *A);
        if (j->hp) gemm_f32_nt_packed(j->gw, tid, nb, A, ni, j->hp, G, ni);
        else if (j->gw) gemm_f32_nt(j->gw, tid, nb, ni, ni, A, ni, j->Hf, ni, 0.0f, G, ni);
        else sgemm_mul_nn(nb, ni, ni, A, ni, j->Hf, ni, 0.0f, G, ni); /* one thread at a time: see sens_compute */
        for (int64_t r = 0; r < nb; r++) {
            double q = 0;
            const float *a = A + r * ni, *g = G + r * ni;
            for (int64_t i = 0; i < ni; i++) q += (double)a[i] * g[i];
            if (out) out[b0 + r] = q;
            s += q;
        }
    }
    return s;
}

/* Y (n, p) = D (n, ni)·Q, the rows' coordinates on H's deflated directions.
 * With the own GEMM it runs as Yᵀ = Qt·Dᵀ, so that the tall D is packed as
 * the GEMM's B (register transposes) instead of its A (a scalar copy, 8 %
 * of the map's time); each element's sum runs over K in the same order
 * either way, so Y has the same bits. */
static void rows_q(const SiteJob *j, int tid, const float *D, int64_t n, float *Y) {
    int64_t ni = j->ni;
    int p = j->p;
    if (!j->gw) {
        sgemm_mul_nt(n, p, ni, D, ni, j->Qt, ni, 0.0f, Y, p);
        return;
    }
    float *T = j->yt[tid];
    gemm_f32_nt(j->gw, tid, p, n, ni, j->Qt, ni, D, ni, 0.0f, T, n);
    for (int64_t r = 0; r < n; r++)
        for (int a = 0; a < p; a++) Y[r * p + a] = T[(int64_t)a * n + r];
}

/* tr(D H Dᵀ) over all rows, exactly (GEMMs of BMAX rows). */
static double quad_exact(const SiteJob *j, int tid, const float *D) {
    double s = 0;
    int64_t rows[BMAX];
    for (int64_t r0 = 0; r0 < j->no; r0 += BMAX) {
        int64_t n = j->no - r0 < BMAX ? j->no - r0 : BMAX;
        for (int64_t r = 0; r < n; r++) rows[r] = r0 + r;
        s += rows_quad(j, tid, D, rows, n, NULL);
    }
    return s;
}

/* One row's Σ_i d_i² and Σ_i h_i d_i² (into *dn, *dg), d = wq − w written
 * over wq (w NULL: d is wq as given). Float sums in eight lanes over blocks
 * of 256 (vectorizable, a fixed order: the map does not depend on threads),
 * the blocks summed in double: relative error ~1e-6, far below what the map
 * resolves. */
static void row_err(const float *w, float *d, const float *h, int64_t n, double *dn, double *dg) {
    double sn = 0, sg = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t e = i0 + 256 < n ? i0 + 256 : n, i = i0;
        float a[8] = {0}, b[8] = {0};
        if (w)
            for (; i + 8 <= e; i += 8)
                for (int l = 0; l < 8; l++) {
                    float x = d[i + l] - w[i + l];
                    d[i + l] = x;
                    a[l] += x * x;
                    b[l] += h[i + l] * (x * x);
                }
        else
            for (; i + 8 <= e; i += 8)
                for (int l = 0; l < 8; l++) {
                    float x = d[i + l];
                    a[l] += x * x;
                    b[l] += h[i + l] * (x * x);
                }
        for (; i < e; i++) {
            float x = w ? d[i] - w[i] : d[i];
            if (w) d[i] = x; /* without w, d may be the mapped weights: read only */
            a[0] += x * x;
            b[0] += h[i] * (x * x);
        }
        for (int l = 0; l < 8; l++) {
            sn += a[l];
            sg += b[l];
        }
    }
    *dn = sn;
    *dg = sg;
}

/* tr(D H Dᵀ) estimated over a matrix whose rows are all at hand (the
 * site's denominator, D = W); rd (no) holds each row's Σ_i R_ii d_i² on
 * entry (row_err). With Q (ni, p) and Λ from h_deflate and R = H − Q Λ Qᵀ,
 * each row's
 *   d H dᵀ = Σ_a λ_a (d·q_a)² + Σ_i R_ii d_i² + Σ_{i≠j} R_ij d_i d_j.
 * The first two terms (c_r) are computed for every row: a GEMM D·Q of
 * no·ni·p and the closed form. Only the last, o_r, is estimated, from the
 * site's seeded random row order, doubling from min_rows until the total's
 * standard error (from the sample's variance, with the finite population
 * correction) is at most rel_se of the estimate; all rows at the end: exact.
 * Σ c_r + no·mean(o) is unbiased whatever Q is (Q Λ Qᵀ + R = H is an
 * identity; Q only sets the variance).
 *
 * Why few rows suffice: for quantization noise (the entries of δ nearly
 * independent, mean zero) var(o_r) ≈ 2 Σ_{i≠j} R_ij² σ_i² σ_j², the part of
 * H that neither the diagonal nor Q carries. An H dominated by a few
 * directions (a mean activation, outlier channels mixed by the layer before)
 * has nearly all of its off-diagonal mass in its top eigen-directions; what
 * R keeps is like the off-diagonal of a Wishart matrix (‖R_off‖_F / tr R ≈
 * 1/√tokens). On the tinyllama synth, o_r's standard deviation is 6 % of
 * the mean row total with 16 directions and 0.9 % with 64, against 70 % of
 * the total carried by Q (BENCHMARKS.md); with the diagonal alone (rank 0)
 * half of the rows or all of them were needed. */
static double quad_est(const SiteJob *j, int tid, const float *D, double *rd, double rel_se) {
    int64_t no = j->no;
    int p = j->p;
    float *Y = j->y[tid];
    if (p > 0) {
        rows_q(j, tid, D, no, Y);
    }
    double c = 0;
    for (int64_t r = 0; r < no; r++) {
        const float *y = Y + r * p;
        double q = rd[r];
        for (int a = 0; a < p; a++) q += j->lam[a] * ((double)y[a] * y[a]);
        rd[r] = q;
        c += q;
    }
    double so = 0, so2 = 0, full[BMAX];
    int64_t m = 0, step = j->o->min_rows > 0 ? j->o->min_rows : 64;
    for (;;) {
        int64_t n = no - m < step ? no - m : step;
        if (n > BMAX) n = BMAX;
        rows_quad(j, tid, D, j->perm + m, n, full);
        for (int64_t r = 0; r < n; r++) {
            double o = full[r] - rd[j->perm[m + r]];
            so += o;
            so2 += o * o;
        }
        m += n;
        if (m >= no) return c + so;
        double est = c + (double)no * so / (double)m;
        double var = (so2 - so * so / (double)m) / (double)(m - 1);
        double se = (double)no * sqrt((var > 0 ? var : 0) / (double)m * (1.0 - (double)m / (double)no));
        if (se <= rel_se * fabs(est)) return est;
        step = m; /* double the sample */
    }
}

/* Eigen-decomposition of the symmetric A (p, p) by cyclic Jacobi rotations:
 * A's diagonal becomes the eigenvalues, V (p, p) the eigenvectors (columns). */
static void jacobi_eig(double *A, double *V, int p) {
    for (int i = 0; i < p * p; i++) V[i] = 0;
    for (int i = 0; i < p; i++) V[i * p + i] = 1;
    for (int sweep = 0; sweep < 50; sweep++) {
        double off = 0, tot = 0;
        for (int i = 0; i < p; i++)
            for (int k = 0; k < p; k++) {
                double x = A[i * p + k] * A[i * p + k];
                if (i == k) tot += x;
                else off += x;
            }
        if (off <= 1e-30 * (tot + off) || off == 0) return;
        for (int a = 0; a < p; a++)
            for (int b = a + 1; b < p; b++) {
                double apq = A[a * p + b];
                if (apq == 0) continue;
                double th = (A[b * p + b] - A[a * p + a]) / (2 * apq);
                double t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1));
                double cs = 1 / sqrt(t * t + 1), sn = t * cs;
                for (int k = 0; k < p; k++) { /* A ← Jᵀ A J */
                    double x = A[k * p + a], y = A[k * p + b];
                    A[k * p + a] = cs * x - sn * y;
                    A[k * p + b] = sn * x + cs * y;
                }
                for (int k = 0; k < p; k++) {
                    double x = A[a * p + k], y = A[b * p + k];
                    A[a * p + k] = cs * x - sn * y;
                    A[b * p + k] = sn * x + cs * y;
                }
                for (int k = 0; k < p; k++) {
                    double x = V[k * p + a], y = V[k * p + b];
                    V[k * p + a] = cs * x - sn * y;
                    V[k * p + b] = sn * x + cs * y;
                }
            }
    }
}

/* The deflated subspace of one H (n, n): Qt (p, n) with orthonormal rows
 * spanning approximately H's top p eigen-directions, by seeded randomized
 * subspace iteration (iters products Qt·H, each p·n², re-orthonormalized in
 * float64), rotated to the eigenvectors of B = Qt H Qtᵀ (Rayleigh-Ritz) so
 * that B = diag(lam); rii = diag(H − Qtᵀ diag(lam) Qt). Only the variance of
 * the estimate depends on how good the subspace is (quad_est), so a few
 * iterations suffice. Yt (p, n), qd (p, n) and B, V (p, p) are scratch. */
static void h_deflate(const float *H, int64_t n, int p, int iters, float *Qt, float *Yt, double *qd, double *B,
                      double *V, double *lam, float *rii, Pool *pool, GemmWork *gw) {
    uint64_t rs = 0x51ed2701u + (uint64_t)n;
    for (int64_t i = 0; i < (int64_t)p * n; i++) Yt[i] = (float)((double)(sm64(&rs) >> 11) * 0x1p-53 - 0.5);
    for (int it = 0; it <= iters; it++) {
        /* orthonormalize the rows of Yt (modified Gram-Schmidt, twice) into Qt */
        for (int64_t i = 0; i < (int64_t)p * n; i++) qd[i] = Yt[i];
        for (int pass = 0; pass < 2; pass++)
            for (int a = 0; a < p; a++) {
                double *qa = qd + (int64_t)a * n;
                for (int b = 0; b < a; b++) {
                    const double *qb = qd + (int64_t)b * n;
                    double t = 0;
                    for (int64_t i = 0; i < n; i++) t += qa[i] * qb[i];
                    for (int64_t i = 0; i < n; i++) qa[i] -= t * qb[i];
                }
                double nn = 0;
                for (int64_t i = 0; i < n; i++) nn += qa[i] * qa[i];
                double sc = nn > 1e-300 ? 1.0 / sqrt(nn) : 0.0; /* a null direction stays 0: it deflates nothing */
                for (int64_t i = 0; i < n; i++) qa[i] *= sc;
            }
        for (int64_t i = 0; i < (int64_t)p * n; i++) Qt[i] = (float)qd[i];
        if (gw) gemm_f32_nt_pool(pool, gw, p, n, n, Qt, n, H, n, 0.0f, Yt, n);
        else sgemm_mul_nt(p, n, n, Qt, n, H, n, 0.0f, Yt, n);
    }
    /* B = Qt·H·Qtᵀ from the last product, then its eigenvectors rotate Qt */
    for (int a = 0; a < p; a++)
        for (int b = 0; b <= a; b++) {
            double t = 0;
            for (int64_t i = 0; i < n; i++) t += (double)Yt[(int64_t)a * n + i] * Qt[(int64_t)b * n + i];
            B[a * p + b] = B[b * p + a] = t;
        }
    jacobi_eig(B, V, p);
    for (int64_t i = 0; i < (int64_t)p * n; i++) qd[i] = 0;
    for (int a = 0; a < p; a++) {
        lam[a] = B[a * p + a];
        for (int b = 0; b < p; b++) {
            double v = V[b * p + a];
            const float *qb = Qt + (int64_t)b * n;
            double *qa = qd + (int64_t)a * n;
            for (int64_t i = 0; i < n; i++) qa[i] += v * qb[i];
        }
    }
    for (int64_t i = 0; i < (int64_t)p * n; i++) Qt[i] = (float)qd[i];
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int a = 0; a < p; a++) s += lam[a] * (double)Qt[(int64_t)a * n + i] * Qt[(int64_t)a * n + i];
        rii[i] = (float)((double)H[i * n + i] - s);
    }
}

/* One cell estimated on a row subsample (the default): ‖ΔW‖² into *dn and
 * tr(ΔW H ΔWᵀ) into *num (when H is there). The site's rows are taken in
 * its seeded random order; only the first m1 are quantized (rtn_fit on all
 * rows, then rtn_fit_rows: each sampled row gets exactly the values the
 * whole matrix's quantization gives it, in every grouping), and of those
 * only the first m2 ≤ m1 pay the n_in² product with H. With c_r and o_r as
 * in quad_est, the two-phase estimate
 *   tr ≈ no·(mean_{m1} c + mean_{m2} o),   ‖ΔW‖² ≈ no·mean_{m1} ‖δ_r‖²
 * has a variance estimated from the samples (finite population corrections,
 * and the covariance of the nested means); m1 and m2 grow (from
 * SENS_START_ROWS and min_rows, planned at the least cost for the target
 * once the variances are known) until both standard errors are at most
 * rel_se of their estimates. At m1 = m2 = no both are exact.
 *
 * The 5 % promise: with rel_se 1 %, 5 % is 5 standard errors, P ≈ 6·10⁻⁷
 * per cell for a normal estimate (a 32-layer map has 11,200 cells: < 1 %
 * that any one is off by more); the sums are over hundreds of rows, so the
 * normal approximation holds unless a handful of rows dominate, and the
 * variances come from at least SENS_START_ROWS rows (c) and min_rows rows
 * (o, whose share is small: see quad_est). Rows differ mostly through the
 * random projection of their δ on H's top directions (c_r's coefficient of
 * variation ≈ 0.27 on the tinyllama synth, 0.35 with per-row scales), so m1
 * settles near 10³ rows whatever the matrix's height: most rows of a 7B's
 * 4096- and 11008-row sites are never quantized. test_calib, test_sensrun
 * and BENCHMARKS.md check every cell against the exact path. */
static Status cell_est(const SiteJob *j, int tid, const QParams *qp, SensGroup g, double *dn, double *num, Err *err) {
    int64_t no = j->no, ni = j->ni;
    int p = j->p, hq = j->Hf != NULL;
    float *D = j->wq[tid], *Y = j->y[tid];
    double *rd = j->rdiag[tid], *wr = j->wrow[tid], full[BMAX];
    double rel = j->o->rel_se;
    int64_t m1 = 0, m2 = 0, want1 = no < SENS_START_ROWS ? no : SENS_START_ROWS;
    int64_t want2 = j->o->min_rows > 0 ? j->o->min_rows : 64;
    double sc = 0, sc2 = 0, sw = 0, sw2 = 0, so = 0, so2 = 0, sco = 0;
    RtnFit fit;
    Status st = j->lo[g] ? rtn_fit_ranges(qp, no, ni, j->lo[g], j->hi[g], &fit, err) : rtn_fit(j->W, no, ni, qp, &fit, err);
    if (st) return st;
    for (;;) {
        if (want2 > want1) want2 = want1;
        if (want2 - m2 > BMAX) want2 = m2 + BMAX; /* full[] holds BMAX */
        if (want1 > m1) {
            if ((st = rtn_fit_rows(&fit, j->W, j->perm + m1, want1 - m1, D + m1 * ni, err))) break;
            for (int64_t r = m1; r < want1; r++) row_err(j->W + j->perm[r] * ni, D + r * ni, j->rii, ni, &wr[r], &rd[r]);
            if (hq && p > 0) {
                rows_q(j, tid, D + m1 * ni, want1 - m1, Y + m1 * p);
            }
            for (int64_t r = m1; r < want1; r++) {
                const float *y = p > 0 ? Y + r * p : NULL;
                double q = rd[r];
                for (int a = 0; hq && a < p; a++) q += j->lam[a] * ((double)y[a] * y[a]);
                rd[r] = q;
                sc += q;
                sc2 += q * q;
                sw += wr[r];
                sw2 += wr[r] * wr[r];
            }
            m1 = want1;
        }
        if (hq && want2 > m2) {
            rows_quad(j, tid, D, j->iota + m2, want2 - m2, full); /* D's rows m2.. are contiguous */
            for (int64_t r = m2; r < want2; r++) {
                double o = full[r - m2] - rd[r];
                so += o;
                so2 += o * o;
                sco += o * rd[r];
            }
            m2 = want2;
        }
        double N = (double)no, f1 = 1.0 - (double)m1 / N, f2 = 1.0 - (double)m2 / N;
        double mw = sw / (double)m1, vw = m1 > 1 ? (sw2 - sw * mw) / (double)(m1 - 1) : 0;
        double ew = N * mw, sew = N * sqrt((vw > 0 ? vw : 0) / (double)m1 * f1);
        int ok_w = sew <= rel * ew;
        if (!hq) {
            if (ok_w || m1 == no) {
                *dn = m1 == no ? sw : ew;
                break;
            }
            want1 = 2 * m1 < no ? 2 * m1 : no;
            continue;
        }
        double mc = sc / (double)m1, vc = m1 > 1 ? (sc2 - sc * mc) / (double)(m1 - 1) : 0;
        double mo = so / (double)m2, vo = m2 > 1 ? (so2 - so * mo) / (double)(m2 - 1) : 0;
        /* the c_r of the m2 rows, for their covariance with o_r */
        double sc_2 = 0;
        for (int64_t r = 0; r < m2; r++) sc_2 += rd[r];
        double vco = m2 > 1 ? (sco - sc_2 * mo) / (double)(m2 - 1) : 0;
        double var = N * N * ((vc > 0 ? vc : 0) / (double)m1 * f1 + (vo > 0 ? vo : 0) / (double)m2 * f2 +
                              2.0 * vco / (double)m1 * f1);
        double est = N * (mc + mo), se = sqrt(var > 0 ? var : 0);
        if ((m1 == no && m2 == no) || (se <= rel * fabs(est) && ok_w)) {
            *dn = m1 == no ? sw : ew;
            *num = m1 == no && m2 == no ? sc + so : est;
            break;
        }
        /* Not there yet: plan both samples for the target with a 10 % margin, at the
         * least cost m1·ni + m2·ni²/SENS_ROW_COST (a quantized row against a row
         * through H): m_k ∝ √(V_k / cost_k) (Lagrange), V_c, V_o the per-row
         * variances relative to the estimate; never shrinking, at least ×1.5 for
         * the sample that misses, and m2 ≤ m1. */
        double t2 = 0.81 * rel * rel * est * est / (N * N), cc = 1.0, co = (double)ni / SENS_ROW_COST;
        double Vc = vc > 0 ? vc : 0, Vo = vo > 0 ? vo : 0;
        if (co < 1) co = 1;
        double S = sqrt(Vc * cc) + sqrt(Vo * co);
        double n1 = t2 > 0 ? sqrt(Vc / cc) * S / t2 : (double)no, n2 = t2 > 0 ? sqrt(Vo / co) * S / t2 : (double)no;
        if (!ok_w && vw > 0) {
            double nw = vw / (0.81 * rel * rel * mw * mw);
            n1 = nw > n1 ? nw : n1;
        }
        int64_t w1 = n1 < (double)no ? (int64_t)n1 + 1 : no, w2 = n2 < (double)no ? (int64_t)n2 + 1 : no;
        if (w1 < m1) w1 = m1;
        if (w2 < m2) w2 = m2;
        if (w1 == m1 && w2 == m2) { /* the plan says done but the check did not: grow the larger error */
            double sec = Vc / (double)m1, seo = Vo / (double)m2;
            if ((sec >= seo || m2 == m1 || !ok_w) && m1 < no) w1 = m1 + m1 / 2 + 1;
            else w2 = m2 + m2 / 2 + 1;
        }
        want1 = w1 < no ? w1 : no;
        want2 = w2 < want1 ? w2 : want1;
    }
    rtn_fit_done(&fit);
    return st;
}

static void job_fail(SiteJob *j, Status st, const Err *e, const char *what) {
    if (!atomic_exchange(&j->failed, 1)) {
        j->st = st;
        j->err = *e;
        err_wrap(&j->err, "layer %lld %s %s", (long long)j->layer, proj_name((Proj)j->proj), what);
    }
}

/* Job 0 is the site's denominator tr(W H Wᵀ), job 1 + c cell c. */
static void cell_job(void *arg, int64_t b, int64_t e, int tid) {
    (void)b;
    (void)e;
    SiteJob *j = arg;
    int64_t no = j->no, ni = j->ni;
    for (;;) {
        int c = atomic_fetch_add(&j->next, 1) - 1;
        if (c >= SENS_NFMT * SG_COUNT || atomic_load(&j->failed) || progress_cancelled(j->prog)) break;
        double *rd = j->rdiag[tid];
        if (c < 0) { /* the denominator (shared by the site's cells: a quarter of their standard error) */
            if (j->Hf && j->o->exact) j->denom = quad_exact(j, tid, j->W);
            else if (j->Hf) {
                for (int64_t r = 0; r < no; r++) {
                    double dn;
                    row_err(NULL, (float *)(uintptr_t)(j->W + r * ni), j->rii, ni, &dn, &rd[r]);
                }
                j->denom = quad_est(j, tid, j->W, rd, j->o->rel_se / 4);
            }
            atomic_fetch_add(&j->finished, 1);
            continue;
        }
        int f = c / SG_COUNT, g = c % SG_COUNT;
        QParams qp;
        if (j->sm->done[(j->layer * PROJ_COUNT + j->proj) * SENS_NFMT + f] ||
            !sens_cell_params(f, (SensGroup)g, no, ni, j->sm->group, &qp)) {
            atomic_fetch_add(&j->finished, 1);
            continue;
        }
        float *Wq = j->wq[tid];
        Err e2;
        err_init(&e2);
        int64_t idx = sens_index(j->layer, j->proj, f, g);
        if (!j->o->exact) {
            double dn = 0, nm = NAN;
            Status st = cell_est(j, tid, &qp, (SensGroup)g, &dn, &nm, &e2);
            if (st) {
                char what[64];
                snprintf(what, sizeof what, "%s/%s", qformat_traits(qp.fmt)->name, sens_group_names[g]);
                job_fail(j, st, &e2, what);
                break;
            }
            j->sm->werr[idx] = j->wnorm > 0 ? (float)(dn / j->wnorm) : 0.0f;
            if (j->Hf) j->num[c] = nm;
            atomic_fetch_add(&j->finished, 1);
            continue;
        }
        Status st = rtn_fake_quantize(j->W, no, ni, &qp, Wq, &e2);
        if (st) {
            char what[64];
            snprintf(what, sizeof what, "%s/%s", qformat_traits(qp.fmt)->name, sens_group_names[g]);
            job_fail(j, st, &e2, what);
            break;
        }
        double dn = 0;
        for (int64_t r = 0; r < no; r++) {
            double d;
            row_err(j->W + r * ni, Wq + r * ni, j->rii, ni, &d, &rd[r]);
            dn += d;
        }
        j->sm->werr[idx] = j->wnorm > 0 ? (float)(dn / j->wnorm) : 0.0f;
        if (j->Hf) j->num[c] = quad_exact(j, tid, Wq);
        atomic_fetch_add(&j->finished, 1);
    }
}

/* Job g of the site's groupings: W's group ranges under g (the dim and
 * group of its scaled formats), into j->lo[g], j->hi[g]; left NULL when the
 * grouping has no scaled cell, on no memory or on a non-finite weight (the
 * cells then fit on their own, and rtn_fit reports the error). Taking the
 * ranges once per grouping instead of once per format makes the fits of the
 * 8 scaled formats cost one pass over W (they were 12 % of the map). */
static void range_job(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    SiteJob *j = arg;
    for (int64_t g = b; g < e; g++) {
        QParams qp;
        int f = 0;
        while (f < SENS_NFMT && !(qformat_traits(sens_fmt(f))->needs_scale &&
                                  sens_cell_params(f, (SensGroup)g, j->no, j->ni, j->sm->group, &qp)))
            f++;
        if (f == SENS_NFMT) continue;
        int64_t ng = qparams_n_groups(&qp, j->no, j->ni);
        float *lo = malloc((size_t)ng * sizeof *lo), *hi = malloc((size_t)ng * sizeof *hi);
        Err e2;
        err_init(&e2);
        if (!lo || !hi || rtn_ranges(j->W, j->no, j->ni, &qp, lo, hi, &e2) != ST_OK) {
            free(lo);
            free(hi);
            continue;
        }
        j->lo[g] = lo;
        j->hi[g] = hi;
    }
}

/* Read-ahead of the next layer while this one computes: its mapped weights
 * and its H are asked into the page cache (MADV_WILLNEED) on a thread of
 * their own, as queuing ~750 MB of reads (a 7B layer) can block. The whole
 * 7B map reads 24 GB, more than the page cache holds beside the rest, so
 * without it every layer began by waiting on the disk with both threads
 * idle. */
typedef struct Prefetch {
    const Model *m;
    const HStore *h;
    int64_t layer;
    pthread_t th;
    int running;
} Prefetch;

static void *prefetch_main(void *arg) {
    const Prefetch *pf = arg;
    const LayerWeights *L = &pf->m->layers[pf->layer];
    for (int p = 0; p < PROJ_COUNT; p++)
        if (L->proj[p].mapped) mapfile_willneed(L->proj[p].data, weight_bytes(&L->proj[p]));
    hstore_prefetch(pf->h, pf->layer);
    return NULL;
}

static void prefetch_wait(Prefetch *pf) {
    if (pf->running) pthread_join(pf->th, NULL);
    pf->running = 0;
}

/* Starts the read-ahead of layer (after the previous one finished); best
 * effort: nothing when a thread cannot be made. */
static void prefetch_start(Prefetch *pf, const Model *m, const HStore *h, int64_t layer) {
    prefetch_wait(pf);
    pf->m = m;
    pf->h = h;
    pf->layer = layer;
    pf->running = pthread_create(&pf->th, NULL, prefetch_main, pf) == 0;
}

/* tr(W H Wᵀ), exact, with the GEMM spread over the pool. */
static double site_denom(const float *W, int64_t no, int64_t ni, const float *Hf, float *G, Pool *pool,
                         GemmWork *gw) {
    double s = 0;
    for (int64_t r0 = 0; r0 < no; r0 += BMAX) {
        int64_t nb = no - r0 < BMAX ? no - r0 : BMAX;
        if (gw) gemm_f32_nt_pool(pool, gw, nb, ni, ni, W + r0 * ni, ni, Hf, ni, 0.0f, G, ni);
        else sgemm_mul_nn(nb, ni, ni, W + r0 * ni, ni, Hf, ni, 0.0f, G, ni);
        for (int64_t i = 0; i < nb * ni; i++) s += (double)W[r0 * ni + i] * G[i];
    }
    return s;
}

Status sens_compute(const Model *m, const HStore *h, Pool *pool, Progress *prog, SensMap *sm, Err *err) {
    SensOpts o;
    sens_opts_default(&o);
    return sens_compute_opts(m, h, &o, pool, prog, sm, err);
}

Status sens_compute_opts(const Model *m, const HStore *h, const SensOpts *o, Pool *pool, Progress *prog,
                         SensMap *sm, Err *err) {
    const ModelConfig *c = &m->cfg;
    if (sm->n_layers != c->n_layers) return err_set(err, ST_ERR_ARG, "sensitivity map has %lld layers, model %lld",
                                                    (long long)sm->n_layers, (long long)c->n_layers);
    Status st = ST_OK;
    size_t max_w = 0, max_in = 0, max_out = 0;
    for (int p = 0; p < PROJ_COUNT; p++) {
        const Weight *w = &m->layers[0].proj[p];
        size_t n = (size_t)w->n_out * (size_t)w->n_in;
        max_w = n > max_w ? n : max_w;
        max_in = (size_t)w->n_in > max_in ? (size_t)w->n_in : max_in;
        max_out = (size_t)w->n_out > max_out ? (size_t)w->n_out : max_out;
    }
    /* Cells run in parallel, one per thread, each with its own GEMMs; without
     * the own GEMM OpenBLAS runs them (its own threads) one at a time. */
    int nt = pool ? pool_size(pool) : 1;
    if (h && !gemm_f32_available()) nt = 1;
    float *Hf = h ? core_alloc_aligned(max_in * max_in, sizeof(float)) : NULL;
    float *rif = core_alloc_aligned(max_in, sizeof(float)); /* diag of R (of H when rank is 0) */
    double num[SENS_NFMT * SG_COUNT];
    int64_t *perm = core_calloc(max_out, sizeof *perm);
    float **wq = core_calloc((size_t)nt, sizeof *wq), **dsub = core_calloc((size_t)nt, sizeof *dsub);
    float **gb = core_calloc((size_t)nt, sizeof *gb);
    double **rdiag = core_calloc((size_t)nt, sizeof *rdiag);
    float **yb = core_calloc((size_t)nt, sizeof *yb), **ytb = core_calloc((size_t)nt, sizeof *ytb);
    double **wrow = core_calloc((size_t)nt, sizeof *wrow);
    int64_t *iota = core_calloc(max_out, sizeof *iota);
    /* the deflated subspace of the loaded H (cell_quad) */
    int P = h && !o->exact && o->rank > 0 ? o->rank : 0;
    if (P > SENS_MAX_RANK) P = SENS_MAX_RANK;
    if ((size_t)P > max_in) P = (int)max_in;
    float *Qt = P ? core_alloc_aligned((size_t)P * max_in, sizeof(float)) : NULL;
    float *Yt = P ? core_alloc_aligned((size_t)P * max_in, sizeof(float)) : NULL;
    double *qd = P ? core_calloc((size_t)P * max_in, sizeof *qd) : NULL;
    double *Bq = P ? core_calloc((size_t)P * P * 2 + P, sizeof *Bq) : NULL; /* B, V, lam */
    float *Wconv = NULL; /* (max_w) a non-F32 weight decoded; allocated on first need */
    GemmWork *gw = NULL;
    GemmPackedB *hp = NULL; /* the loaded H, packed once for rows_quad */
    Prefetch pf;
    memset(&pf, 0, sizeof pf);
    for (size_t r = 0; iota && r < max_out; r++) iota[r] = (int64_t)r;
    if ((h && !Hf) || !rif || !perm || !wq || !dsub || !gb || !rdiag || !yb || !ytb || !wrow || !iota || (P && (!Qt || !Yt || !qd || !Bq)))
        goto nomem;
    for (int t = 0; t < nt; t++) {
        wq[t] = core_alloc_aligned(max_w, sizeof(float));
        rdiag[t] = core_calloc(max_out, sizeof(double));
        wrow[t] = core_calloc(max_out, sizeof(double));
        if (!wq[t] || !rdiag[t] || !wrow[t]) goto nomem;
        if (P && !(yb[t] = core_alloc_aligned(max_out * (size_t)P, sizeof(float)))) goto nomem;
        if (P && !(ytb[t] = core_alloc_aligned(max_out * (size_t)P, sizeof(float)))) goto nomem;
        if (h) {
            dsub[t] = core_alloc_aligned((size_t)BMAX * max_in, sizeof(float));
            gb[t] = core_alloc_aligned((size_t)BMAX * max_in, sizeof(float));
            if (!dsub[t] || !gb[t]) goto nomem;
        }
    }
    if (h && gemm_f32_available()) {
        st = gemm_work_new(pool ? pool_size(pool) : 1, &gw, err);
        if (st) goto done;
    }
    /* Progress in thousandths of the remaining cost, so the ETA weighs each site by its cost. */
    double cost_total = 0, cost_done = 0;
    int64_t sites_total = c->n_layers * PROJ_COUNT, sites_done = sens_map_sites_done(sm), ran = 0, ticks = 0;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++) {
            const Weight *w = &m->layers[l].proj[p];
            cost_total += sens_site_cost(w->n_out, w->n_in, site_missing_cells(sm, l * PROJ_COUNT + p));
        }
    progress_begin(prog, "sensitivity", 1000);
    if (prog) snprintf(prog->stage, sizeof prog->stage, "sensitivity %lld/%lld sites", (long long)sites_done,
                       (long long)sites_total);
    for (int64_t l = 0; l < c->n_layers; l++) {
        int loaded_tap = -1, ran_layer = 0;
        /* the next layer with missing sites reads ahead while this one computes */
        for (int64_t n = l + 1; n < c->n_layers; n++) {
            int miss = 0;
            for (int p = 0; p < PROJ_COUNT; p++) miss += site_missing(sm, n * PROJ_COUNT + p) > 0;
            if (!miss) continue;
            for (int p = 0; p < PROJ_COUNT && !ran_layer; p++) ran_layer = site_missing(sm, l * PROJ_COUNT + p) > 0;
            if (ran_layer) prefetch_start(&pf, m, h, n);
            break;
        }
        for (int p = 0; p < PROJ_COUNT; p++) {
            if (site_missing(sm, l * PROJ_COUNT + p) == 0) continue;
            int missing = site_missing_cells(sm, l * PROJ_COUNT + p);
            if (progress_cancelled(prog) || (o->max_sites > 0 && ran >= o->max_sites)) {
                st = err_set(err, ST_ERR_CANCELLED, "sensitivity stopped at layer %lld %s: %lld of %lld sites done (kept)",
                             (long long)l, proj_name((Proj)p), (long long)sites_done, (long long)sites_total);
                goto done;
            }
            const Weight *w = &m->layers[l].proj[p];
            int64_t no = w->n_out, ni = w->n_in, n = no * ni;
            int tap = (int)proj_tap((Proj)p);
            const float *W = weight_f32_data(w);
            if (!W) {
                if (!Wconv && !(Wconv = core_alloc_aligned(max_w, sizeof(float)))) {
                    st = err_set(err, ST_ERR_NOMEM, "sensitivity: decoding a weight (%zu floats)", max_w);
                    goto done;
                }
                weight_rows_f32(w, 0, no, Wconv);
                W = Wconv;
            }
            SiteJob j = {.W = W, .no = no, .ni = ni, .Hf = h ? Hf : NULL, .perm = perm, .o = o, .p = P, .Qt = Qt,
                         .lam = Bq ? Bq + 2 * P * P : NULL, .rii = rif, .num = num, .layer = l, .proj = p, .sm = sm,
                         .gw = gw, .wq = wq, .dsub = dsub, .g = gb, .rdiag = rdiag, .wrow = wrow, .iota = iota, .y = yb, .yt = ytb, .prog = prog};
            for (int ci = 0; ci < SENS_NFMT * SG_COUNT; ci++) num[ci] = NAN;
            for (int64_t i = 0; i < n; i++) j.wnorm += (double)W[i] * W[i];
            if (h) {
                if (tap != loaded_tap) {
                    if ((st = hstore_load_f32(h, l, tap, Hf, err))) goto done;
                    if (P)
                        h_deflate(Hf, ni, P, SENS_DEFLATE_ITERS, Qt, Yt, qd, Bq, Bq + P * P, Bq + 2 * P * P, rif,
                                  pool, gw);
                    else
                        for (int64_t i = 0; i < ni; i++) rif[i] = Hf[i * ni + i];
                    gemm_packed_b_free(hp);
                    hp = NULL;
                    if (gw && (st = gemm_f32_pack_b(ni, ni, Hf, ni, &hp, err))) goto done;
                    loaded_tap = tap;
                }
                j.hp = hp;
            }
            /* the rows of the subsample: a seeded shuffle per site */
            uint64_t rs = (uint64_t)(l * PROJ_COUNT + p) + 1;
            for (int64_t r = 0; r < no; r++) perm[r] = r;
            for (int64_t r = no - 1; r > 0; r--) {
                int64_t k = (int64_t)(sm64(&rs) % (uint64_t)(r + 1)), t = perm[r];
                perm[r] = perm[k];
                perm[k] = t;
            }
            int32_t *gs = sm->gsize + (l * PROJ_COUNT + p) * SG_COUNT;
            gs[SG_OC_G] = (int32_t)sens_group_size(ni, sm->group);
            gs[SG_IC_G] = (int32_t)sens_group_size(no, sm->group);
            atomic_init(&j.next, 0);
            atomic_init(&j.finished, 0);
            atomic_init(&j.failed, 0);
            err_init(&j.err);
            if (!o->exact) {
                if (pool) pool_for(pool, SG_COUNT, 1, range_job, &j);
                else range_job(&j, 0, SG_COUNT, 0);
            }
            if (nt > 1) pool_for(pool, nt, 1, cell_job, &j);
            else cell_job(&j, 0, 1, 0);
            for (int g = 0; g < SG_COUNT; g++) {
                free(j.lo[g]);
                free(j.hi[g]);
            }
            if (atomic_load(&j.failed)) {
                st = j.st;
                *err = j.err;
                goto done;
            }
            if (atomic_load(&j.finished) < SENS_NFMT * SG_COUNT + 1) { /* cancelled inside the site: not kept */
                st = err_set(err, ST_ERR_CANCELLED, "sensitivity cancelled in layer %lld %s: %lld of %lld sites done (kept)",
                             (long long)l, proj_name((Proj)p), (long long)sites_done, (long long)sites_total);
                goto done;
            }
            for (int ci = 0; ci < SENS_NFMT * SG_COUNT; ci++)
                if (!isnan(num[ci]))
                    sm->oerr[sens_index(l, p, ci / SG_COUNT, ci % SG_COUNT)] =
                        j.denom > 0 ? (float)(num[ci] / j.denom) : 0.0f;
            memset(sm->done + (l * PROJ_COUNT + p) * SENS_NFMT, 1, SENS_NFMT);
            sites_done++;
            ran++;
            if (o->on_site && (st = o->on_site(o->user, sm, l, p, err))) goto done;
            cost_done += sens_site_cost(no, ni, missing);
            int64_t t = cost_total > 0 ? (int64_t)(1000.0 * cost_done / cost_total) : 1000;
            if (prog) snprintf(prog->stage, sizeof prog->stage, "sensitivity %lld/%lld sites", (long long)sites_done,
                               (long long)sites_total);
            progress_add(prog, t - ticks);
            ticks = t;
        }
        /* done with this layer: its weights and H stop counting towards RSS (they stay in the page cache) */
        for (int p = 0; p < PROJ_COUNT; p++) weight_release(&m->layers[l].proj[p]);
        hstore_release(h, l);
    }
    goto done;
nomem:
    st = err_set(err, ST_ERR_NOMEM, "sensitivity scratch (%zu weights, %d threads)", max_w, nt);
done:
    prefetch_wait(&pf);
    gemm_packed_b_free(hp);
    gemm_work_free(gw);
    for (int t = 0; t < nt; t++) {
        if (wq) core_free_aligned(wq[t]);
        if (dsub) core_free_aligned(dsub[t]);
        if (gb) core_free_aligned(gb[t]);
        if (rdiag) free(rdiag[t]);
        if (yb) core_free_aligned(yb[t]);
        if (ytb) core_free_aligned(ytb[t]);
        if (wrow) free(wrow[t]);
    }
    free(wrow);
    free(iota);
    free(yb);
    free(ytb);
    core_free_aligned(Qt);
    core_free_aligned(Yt);
    free(qd);
    free(Bq);

    free(wq);
    free(dsub);
    free(gb);
    free(rdiag);
    core_free_aligned(rif);
    free(perm);
    core_free_aligned(Hf);
    core_free_aligned(Wconv);
    return st;
}

static Status rtn_cells(void *user, int k, const float *W, int64_t no, int64_t ni, float *Wq, Err *err) {
    return rtn_fake_quantize(W, no, ni, &((const QParams *)user)[k], Wq, err);
}

Status sens_site_errors(const Model *m, const HStore *h, int64_t layer, int proj, const QParams *qps, int n,
                        Pool *pool, double *werr, double *oerr, Err *err) {
    return sens_site_errors_fn(m, h, layer, proj, n, 0, rtn_cells, (void *)qps, pool, werr, oerr, err);
}

Status sens_site_errors_fn(const Model *m, const HStore *h, int64_t layer, int proj, int n, int64_t max_rows,
                           SensQuantFn fn, void *user, Pool *pool, double *werr, double *oerr, Err *err) {
    const Weight *w = &m->layers[layer].proj[proj];
    int64_t no = w->n_out, ni = w->n_in;
    int64_t ns = max_rows > 0 && max_rows < no ? max_rows : no, nn = ns * ni;
    Status st = ST_OK;
    int64_t gr = ns < BMAX ? ns : BMAX;
    float *Wq = core_alloc_aligned((size_t)nn, sizeof(float));
    float *G = h ? core_alloc_aligned((size_t)(gr * ni), sizeof(float)) : NULL;
    float *Hf = h ? core_alloc_aligned((size_t)(ni * ni), sizeof(float)) : NULL;
    float *Wconv = NULL, *Ws = NULL;
    int64_t *perm = NULL;
    GemmWork *gw = NULL;
    const float *W = weight_f32_data(w);
    if (!Wq || (h && (!G || !Hf))) {
        st = err_set(err, ST_ERR_NOMEM, "sensitivity of one site (%lld weights)", (long long)nn);
        goto done;
    }
    if (!W) {
        if (!(Wconv = core_alloc_aligned((size_t)(no * ni), sizeof(float)))) {
            st = err_set(err, ST_ERR_NOMEM, "sensitivity: decoding a weight");
            goto done;
        }
        weight_rows_f32(w, 0, no, Wconv);
        W = Wconv;
    }
    if (ns < no) {
        /* a seeded subsample of rows, kept in their order */
        perm = core_calloc((size_t)no, sizeof *perm);
        Ws = core_alloc_aligned((size_t)nn, sizeof(float));
        if (!perm || !Ws) {
            st = err_set(err, ST_ERR_NOMEM, "sensitivity: row subsample");
            goto done;
        }
        uint64_t rs = (uint64_t)(layer * PROJ_COUNT + proj) + 1;
        for (int64_t r = 0; r < no; r++) perm[r] = r;
        for (int64_t r = 0; r < ns; r++) { /* partial Fisher-Yates: perm[0..ns) is the sample */
            int64_t k = r + (int64_t)(sm64(&rs) % (uint64_t)(no - r)), t = perm[r];
            perm[r] = perm[k];
            perm[k] = t;
        }
        for (int64_t i = 1; i < ns; i++) /* insertion sort of the sample (small) */
            for (int64_t j = i; j > 0 && perm[j - 1] > perm[j]; j--) {
                int64_t t = perm[j];
                perm[j] = perm[j - 1];
                perm[j - 1] = t;
            }
        for (int64_t r = 0; r < ns; r++) memcpy(Ws + r * ni, W + perm[r] * ni, (size_t)ni * sizeof *Ws);
        W = Ws;
    }
    if (h && gemm_f32_available() && (st = gemm_work_new(pool ? pool_size(pool) : 1, &gw, err))) goto done;
    double wnorm = 0, denom = 0;
    for (int64_t i = 0; i < nn; i++) wnorm += (double)W[i] * W[i];
    if (h) {
        if ((st = hstore_load_f32(h, layer, (int)proj_tap((Proj)proj), Hf, err))) goto done;
        denom = site_denom(W, ns, ni, Hf, G, pool, gw);
    }
    for (int k = 0; k < n; k++) {
        if ((st = fn(user, k, W, ns, ni, Wq, err))) goto done;
        double dn = 0;
        for (int64_t i = 0; i < nn; i++) {
            Wq[i] -= W[i];
            dn += (double)Wq[i] * Wq[i];
        }
        if (werr) werr[k] = wnorm > 0 ? dn / wnorm : 0;
        oerr[k] = h ? (denom > 0 ? site_denom(Wq, ns, ni, Hf, G, pool, gw) / denom : 0) : NAN;
    }
done:
    gemm_work_free(gw);
    core_free_aligned(Wq);
    core_free_aligned(G);
    core_free_aligned(Hf);
    core_free_aligned(Wconv);
    core_free_aligned(Ws);
    free(perm);
    return st;
}

GroupDim sens_adadim_choice(const SensMap *sm, int64_t layer, int proj, int fmt, int grouped) {
    int gi = grouped ? SG_IC_G : SG_IC, go = grouped ? SG_OC_G : SG_OC;
    float ei = sm->oerr[sens_index(layer, proj, fmt, gi)], eo = sm->oerr[sens_index(layer, proj, fmt, go)];
    if (isnan(ei) || isnan(eo)) {
        ei = sm->werr[sens_index(layer, proj, fmt, gi)];
        eo = sm->werr[sens_index(layer, proj, fmt, go)];
    }
    if (isnan(ei) && isnan(eo)) return GROUP_TENSOR;
    if (isnan(ei)) return GROUP_OC;
    if (isnan(eo)) return GROUP_IC;
    return ei < eo ? GROUP_IC : GROUP_OC;
}
