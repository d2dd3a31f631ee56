/* The H = XᵀX store: one symmetric (w, w) matrix per (layer, linear input)
 * for the four projection inputs (TAP_QKV .. TAP_DOWN), the calibration
 * matrix GPTQ, AdaDim, AQLM, SmoothQuant and the sensitivity map read.
 *
 * Accumulation. Each batch (one calibration sequence, T rows) is multiplied
 * in float32 by the AVX-512 GEMM of kernels/f32gemm.h, upper block triangle
 * only (192-row blocks, threads taking blocks from a shared counter), and
 * the float32 product is added into a float64 accumulator; so rounding grows
 * with the rows of one batch (K = T terms summed in float32: relative error
 * ~ sqrt(T)·2^-24 typical, T·2^-24 bound, 3e-5 for T = 512) and not with the
 * number of batches. When the float64 accumulators exceed hstore_ram_limit()
 * the float32 products are added straight into the file mapping instead
 * (float32 sums across batches: n_batches·2^-24 more, stated in
 * docs/calibration.md). tests/test_hstore.c bounds the error against a float64
 * reference.
 *
 * Storage. float32, upper triangle packed row by row (row i holds columns
 * i..w-1), each matrix starting on a 4096-byte boundary so a layer's H pages
 * in alone; a 7B (4096/11008, 32 layers) needs 11 GB. Why float32 is the
 * precision GPTQ needs: GPTQ adds a damping λ = 1 % of mean(diag H) and
 * factorizes in float64; storing H in float32 perturbs each element by at
 * most 2^-24 relative, far below both λ and the sampling noise of H itself
 * (different calibration windows change H by percents), and the reference
 * implementations (GPTQ, AutoGPTQ, llm-compressor) accumulate and factorize H
 * in float32 throughout. test_hstore.c checks GPTQ on a float32-stored H
 * against the float64 H.
 *
 * Integrity. The header holds a checksum of every matrix, verified the first
 * time the matrix is loaded (hstore_load_*); the file is reserved in full at
 * creation (posix_fallocate: a full disk is reported as ENOSPC before any
 * work, never as SIGBUS through the mapping) and fsynced by hstore_finish.
 *
 * File layout (little-endian): "QSH6", u32 version (2), u64 id, i64 n_layers,
 * i64 width[4], i64 n_rows, u64 checksum[n_layers][4], zero padding to
 * hstore_header_bytes(); then the matrices in (layer, tap) order. */
#ifndef QS_ANALYSIS_HSTORE_H
#define QS_ANALYSIS_HSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"

#define HSTORE_TAPS 4
#define HSTORE_VERSION 2
#define HSTORE_ALIGN 4096

struct GemmWork;
struct HStoreAux;

typedef struct HStore {
    char *path;              /* file being written or read (owned) */
    int fd;                  /* valid when has_fd */
    int has_fd;
    unsigned char *map;      /* (bytes) file mapping (readers; writers when !in_ram) */
    size_t bytes;
    int writable;
    int in_ram;              /* float64 accumulators in anonymous memory, converted at finish */
    int layered;             /* hstore_create_layered: float64 sums of one layer at a time,
                                written by hstore_layer_done */
    int64_t layers_done;     /* layers passed to hstore_layer_done */
    int64_t n_layers;
    int64_t width[HSTORE_TAPS];
    int64_t n_rows;          /* rows folded in (each tap sees every row) */
    uint64_t id;             /* ties the file to its stats file */
    int64_t max_T;
    Pool *pool;              /* borrowed; hstore_add runs its update on it (NULL: inline) */
    struct HStoreAux *aux;   /* owned: accumulators, scratch, checksums, verified flags */
} HStore;

/* Bytes of float64 accumulators kept in RAM rather than adding into the file
 * mapping: env QS_H_RAM_MB (MiB) if set, else a quarter of physical memory. */
size_t hstore_ram_limit(void);

/* Header bytes for n_layers (a multiple of HSTORE_ALIGN). */
size_t hstore_header_bytes(int64_t n_layers);

/* Returns the file size for these dimensions (0 on size_t overflow). */
size_t hstore_bytes(int64_t n_layers, const int64_t width[HSTORE_TAPS]);

/* Creates (truncates) path, never through a symlink (O_NOFOLLOW), reserves its full size on disk
 * (ENOSPC reported by name), and prepares accumulation of batches up to
 * max_T rows on pool (borrowed, may be NULL). On error nothing is left on
 * disk. Caller closes with hstore_close (which keeps the file). */
Status hstore_create(HStore *hs, const char *path, int64_t n_layers, const int64_t width[HSTORE_TAPS],
                     int64_t max_T, Pool *pool, Err *err);

/* Like hstore_create, for a caller that adds every batch of layer l before
 * any batch of layer l + 1 and calls hstore_layer_done(l) in between
 * (layer-streamed calibration): float64 sums for one layer only (their
 * bytes: Σ_t w_t(w_t+1)/2 · 8, 686 MB for a 7B) are converted and written
 * (pwrite, not through a mapping) when the layer is done, so the values are
 * those hstore_create's float64 mode gives and the process never holds more
 * than one layer of H. When even one layer's sums exceed hstore_ram_limit()
 * it behaves as hstore_create (hs->layered == 0).
 * path NULL: sums only, no file (the MPI ranks other than 0, whose sums
 * hstore_layer_sum_ranks adds into rank 0's); fails with ST_ERR_NOMEM when
 * one layer's sums exceed hstore_ram_limit(). */
Status hstore_create_layered(HStore *hs, const char *path, int64_t n_layers, const int64_t width[HSTORE_TAPS],
                             int64_t max_T, Pool *pool, Err *err);

/* Marks layer (= the number of layers done so far) complete: in the layered
 * mode writes its four matrices (float32) and their checksums and clears the
 * sums for the next layer; otherwise only counts it. */
Status hstore_layer_done(HStore *hs, int64_t layer, Err *err);

/* Under MPI (core/dist.h): replaces rank 0's float64 sums of the current
 * layer of a layered store by their sum over all ranks (every rank calls it,
 * before hstore_layer_done; the other ranks' sums are then discarded). Each rank holds its own sequences' products summed in
 * its order, so the result equals the single-process sums when those float64
 * additions are exact (they are unless an element's per-sequence float32
 * products differ by more than ~2^28 in magnitude); otherwise by at most
 * n·2^-53 of Σ|products| before the float32 rounding. Identity with one
 * rank; ST_ERR_STATE when the store is not layered. */
Status hstore_layer_sum_ranks(HStore *hs, Err *err);

/* H(layer, tap) += xᵀx for x (T, width[tap]) row-major, as described above.
 * Counts the rows at (layer 0, tap 0): every (layer, tap) sees the same rows.
 * Not from inside a pool job. */
void hstore_add(HStore *hs, int64_t layer, int tap, const float *x, int64_t T);

/* Writes the matrices (float32), their checksums and the header with id,
 * and fsyncs the file. The file keeps its name (the caller renames it: see
 * calib_commit). Afterwards the store is read-only and can be loaded from. */
Status hstore_finish(HStore *hs, uint64_t id, Err *err);

/* Maps an existing file read-only and validates its header against the
 * expected id and dimensions; every mismatch names the file and the field. */
Status hstore_open(HStore *hs, const char *path, uint64_t id, int64_t n_layers,
                   const int64_t width[HSTORE_TAPS], Err *err);

/* Writes the full symmetric (w, w) matrix of (layer, tap) into out (w·w
 * values, caller's buffer), verifying the matrix's checksum the first time
 * it is loaded (ST_ERR_FORMAT naming the file, layer and tap on mismatch).
 * Only after hstore_finish or hstore_open. */
Status hstore_load_f32(const HStore *hs, int64_t layer, int tap, float *out, Err *err);
Status hstore_load_f64(const HStore *hs, int64_t layer, int tap, double *out, Err *err);

/* Returns in *out the full float64 (w, w) matrix of (layer, tap), loaded
 * (and verified) into a cache of one matrix per tap: the pointer stays valid
 * until the next call for the same tap with another layer, or hstore_close.
 * The matrix's file pages are dropped once copied (they would otherwise stay
 * resident as mapped page cache), so walking the layers in order keeps one
 * layer's H resident (GPTQ, AdaDim, AQLM and SmoothQuant read it through here). */
Status hstore_get_f64(const HStore *hs, int64_t layer, int tap, const double **out, Err *err);

/* Frees hstore_get_f64's cached matrices (a 7B's four are 1.4 GB of
 * float64), invalidating the pointers it returned; the next call loads again.
 * For the end of a walk over the layers. */
void hstore_cache_drop(const HStore *hs);

/* Best effort, for a walk over the layers (the sensitivity map): asks the
 * kernel to read layer's matrices into the page cache now (MADV_WILLNEED),
 * so that a load of them a while later finds them there instead of waiting
 * on the disk. May block while the reads are queued: call it off the
 * threads that compute. No-op out of range or before hstore_open. */
void hstore_prefetch(const HStore *hs, int64_t layer);

/* Best effort: drops this process's resident file pages of layer's
 * matrices (those wholly inside them) once the caller is done with them, so
 * a walk over the layers keeps one layer's H mapped; a later load reads
 * them again (from the page cache where they still are). */
void hstore_release(const HStore *hs, int64_t layer);

/* Unmaps and closes; frees accumulators; safe on a zeroed or closed HStore.
 * Does not delete the file. */
void hstore_close(HStore *hs);

#endif
