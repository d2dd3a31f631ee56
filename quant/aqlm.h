/* AQLM: additive multi-codebook quantization (Egiazarian et al., 2024).
 *
 * A weight W (n_out, n_in) is cut along the input dimension into groups of g
 * consecutive elements. Each group of row i is the sum of M codewords, one
 * from each of M codebooks of K = 2^B codewords of dimension g, times one
 * scale per output row:
 *   W^[i, j*g : j*g+g] = s_i * sum_m C_m[code(i, j, m)].
 * Storage: codebooks in fp16 (16·g·M·2^B bits), codes in B bits each
 * (n_out·(n_in/g)·M·B bits), scales in fp16 (16·n_out bits), so
 *   b̄ = (16·g·M·2^B + n_out·(n_in/g)·B·M + 16·n_out) / (n_out·n_in).
 * The quantizer minimises tr((W - W^) H (W - W^)ᵀ) with H = XᵀX from
 * calibration (or the identity). See docs/aqlm.md for the method. */
#ifndef QS_QUANT_AQLM_H
#define QS_QUANT_AQLM_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"

typedef struct AqlmParams {
    int M;                   /* codebooks, >= 1 */
    int B;                   /* bits per code, 1..16 (K = 2^B codewords per codebook); M·B <= 32 */
    int g;                   /* group size along the input dimension (default 8) */
} AqlmParams;

/* Checks p alone (M >= 1, 1 <= B <= 16, M·B <= 32, 1 <= g <= 64) and, when
 * n_in > 0, that g divides n_in and that n_out >= 1. Errors are ST_ERR_ARG
 * with a detail like "aqlm: group 8 does not divide input dim 172". */
Status aqlm_params_check(const AqlmParams *p, int64_t n_out, int64_t n_in, Err *err);

/* Parses "MxB" or "MxBgG" (e.g. "2x8", "1x16g8", "1x8g4"; g defaults to 8)
 * into *p and checks it (without a shape). */
Status aqlm_params_parse(const char *s, AqlmParams *p, Err *err);

/* Writes "2x8g8"-style text into buf (size n); returns buf. */
char *aqlm_params_name(const AqlmParams *p, char *buf, size_t n);

/* Exact storage bits of an (n_out, n_in) matrix: 16·g·M·2^B + n_out·(n_in/g)·B·M
 * + 16·n_out. p must pass aqlm_params_check for that shape. */
uint64_t aqlm_bits(const AqlmParams *p, int64_t n_out, int64_t n_in);

/* Total bytes: aqlm_bits rounded up to whole bytes. */
size_t aqlm_bytes(const AqlmParams *p, int64_t n_out, int64_t n_in);

/* Total bits per weight b̄ = aqlm_bits / (n_out·n_in), codebooks and scales included. */
double aqlm_bpw(const AqlmParams *p, int64_t n_out, int64_t n_in);

/* Code bits per weight B·M/g (what the codes alone cost; no codebooks or scales). */
double aqlm_code_bpw(const AqlmParams *p);

/* Codebook bits alone (16·g·M·2^B), for showing where a small matrix's bits go. */
uint64_t aqlm_codebook_bits(const AqlmParams *p);

/* A quantized matrix in unpacked form. Codebook entries and scales hold
 * values exactly representable in fp16 (what aqlm_bits accounts for). */
typedef struct AqlmTensor {
    AqlmParams p;
    int64_t n_out, n_in;
    int64_t n_groups;        /* n_in / g */
    int64_t K;               /* 2^B */
    float *codebooks;        /* (M, K, g) */
    uint16_t *codes;         /* (n_out, n_groups, M) */
    float *scales;           /* (n_out) */
} AqlmTensor;

/* Frees the arrays of an embedded AqlmTensor; safe on a zeroed one. */
void aqlm_tensor_done(AqlmTensor *t);

/* Writes W^ (n_out, n_in) represented by t into W. */
void aqlm_dequant(const AqlmTensor *t, float *W);

typedef enum { AQLM_INIT_KMEANS, AQLM_INIT_RANDOM } AqlmInit;

typedef struct AqlmOpts {
    int beam;                /* beam width of the code search, >= 1 (default 1) */
    int max_iters;           /* cap on alternating iterations (default 10); 0 = init only */
    double tau;              /* stop when (L_prev - L) / L_prev < tau (default 0.01) */
    int kmeans_iters;        /* Lloyd iterations per codebook in the init (default 10) */
    int cg_iters;            /* preconditioned CG steps per codebook update (default 4) */
    uint64_t seed;           /* everything random derives from it (default 1) */
    AqlmInit init;           /* AQLM_INIT_KMEANS (default) or AQLM_INIT_RANDOM
                                (Gaussian codebooks; for comparisons) */
} AqlmOpts;

/* Fills the defaults above. */
void aqlm_opts_default(AqlmOpts *o);

#define AQLM_MAX_TRACE 64

/* What a run did. loss[0] is tr((W - W^) H (W - W^)ᵀ) after the
 * initialisation, loss[t] after alternating iteration t (t <= iters). */
typedef struct AqlmReport {
    int iters;
    double loss[AQLM_MAX_TRACE + 1];
    double loss_zero;        /* tr(W H Wᵀ): the loss of W^ = 0, for relative numbers */
} AqlmReport;

/* Quantizes W (n_out, n_in) into *out (allocated here; release with
 * aqlm_tensor_done). H (n_in, n_in), symmetric positive semi-definite, is
 * borrowed for the call; NULL means the identity (plain weight MSE). pool
 * (may be NULL) runs rows in parallel; prog (may be NULL) receives progress
 * and is polled for cancel (ST_ERR_CANCELLED, *out left empty). rep may be
 * NULL. The result depends only on the inputs and o->seed, not on the pool
 * size (OpenBLAS's sgemm, used for products with H, may round differently
 * with its own thread count). Fails with ST_ERR_ARG (aqlm_params_check, beam
 * outside 1..64, iteration cap outside 0..AQLM_MAX_TRACE), ST_ERR_NUMERIC (a
 * non-finite weight or H entry), ST_ERR_NOMEM. */
Status aqlm_quantize(const float *W, int64_t n_out, int64_t n_in, const double *H,
                     const AqlmParams *p, const AqlmOpts *o, Pool *pool, Progress *prog,
                     AqlmTensor *out, AqlmReport *rep, Err *err);

/* Returns tr((W - Wq) H (W - Wq)ᵀ) (H NULL: squared Frobenius norm), in double. */
double aqlm_loss(const float *W, const float *Wq, int64_t n_out, int64_t n_in, const double *H);

#endif
