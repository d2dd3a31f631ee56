/* llama.cpp's importance matrix, written from qscope's calibration and read
 * back, so `llama-quantize --imatrix` uses qscope's calibration and qscope
 * can read what `llama-imatrix` measured.
 *
 * An entry per weight the activations multiply ("blk.3.ffn_down.weight"):
 * Σx² over the calibration tokens for each input channel, and the token
 * count. llama-quantize weights each column by sum2/count.
 *
 * Two files, as llama.cpp's tools/imatrix/imatrix.cpp writes them:
 *  - GGUF (save_imatrix): KVs general.type = "imatrix", imatrix.datasets
 *    (array of strings), imatrix.chunk_count and imatrix.chunk_size (u32);
 *    per entry two F32 tensors, "<name>.in_sum2" of shape (n, n_mat) and
 *    "<name>.counts" of shape (1, n_mat), names sorted. qscope writes and
 *    reads n_mat == 1 (dense models; MoE expert stacks are refused).
 *  - legacy .dat (save_imatrix_legacy): i32 n_entries; per entry i32 len,
 *    name bytes, i32 ncall, i32 nval, nval f32 = (sum2/count)·ncall with
 *    ncall = ceil(count/chunk_size); then i32 chunk_count, i32 len and the
 *    dataset name. llama-quantize divides the values by ncall again
 *    (load_legacy_imatrix), so only the mean survives. */
#ifndef QS_ANALYSIS_IMATRIX_H
#define QS_ANALYSIS_IMATRIX_H

#include <stdint.h>

#include "analysis/calib.h"
#include "core/status.h"

typedef struct ImatrixEntry {
    char name[96];           /* "blk.3.ffn_down.weight" */
    int64_t n;               /* input channels */
    double *sum2;            /* (n) Σx² over the tokens */
    double count;            /* tokens (the legacy file keeps ncall: sum2/count is the mean either way) */
} ImatrixEntry;

typedef struct Imatrix {
    int64_t n_entries;
    ImatrixEntry *e;         /* (n_entries) owned, sorted by name */
    int64_t chunk_count, chunk_size;
    char dataset[256];       /* the calibration text's path, as given */
} Imatrix;

/* The importance matrix of a calibration: every layer's seven projection
 * weights, q/k/v from the attention-input tap, o, gate/up from the FFN-input
 * tap, down (Σx² = the taps' ch_sumsq, count = their rows). chunk_count and
 * chunk_size are the sequences and their length. Caller imatrix_free's. */
Status imatrix_from_stats(const CalibStats *cs, Imatrix **out, Err *err);

/* Writes im to path atomically: the legacy .dat layout when legacy is set,
 * else GGUF. err names the path. */
Status imatrix_write(const Imatrix *im, const char *path, int legacy, Err *err);

/* Reads a GGUF or legacy .dat importance matrix (told apart by the "GGUF"
 * magic). Every length is checked; err names the file and what was wrong.
 * Caller imatrix_free's. */
Status imatrix_read(const char *path, Imatrix **out, Err *err);

/* The entry named name, or NULL; borrowed from im. */
const ImatrixEntry *imatrix_find(const Imatrix *im, const char *name);

/* NULL is a no-op. */
void imatrix_free(Imatrix *im);

#endif
