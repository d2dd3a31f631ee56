#include "sessions/replay_calib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/calib.h"
#include "analysis/statsfile.h"
#include "core/progress.h"

void replay_calib_args_default(ReplayCalibArgs *a) {
    a->samples = a->seqlen = a->seed = a->group = a->topk = -1;
    a->mode = NULL;
    a->sensitivity = -1;
    a->sens_exact = 0;
    a->no_h = 0;
    a->tok_from = 0;
    a->kept = -1;
}

Status replay_calibrate(const Model *m, const char *text_path, const char *text, size_t len,
                        const ReplayCalibArgs *a, const char *stats_path, Pool *pool, SessionCalib *out, Err *err) {
    CalibParams p;
    calib_params_default(&p);
    if (a->samples >= 0) p.samples = a->samples;
    if (a->seqlen >= 0) p.seqlen = a->seqlen;
    else if (p.seqlen > m->cfg.max_seq_len && m->cfg.max_seq_len > 0) p.seqlen = m->cfg.max_seq_len;
    if (a->seed >= 0) p.seed = (uint64_t)a->seed;
    if (a->group >= 0) p.group = a->group;
    if (a->topk >= 0) p.topk = (int32_t)a->topk;
    if (a->sensitivity >= 0) p.sensitivity = a->sensitivity;
    p.sens_exact = a->sens_exact;
    p.tok_from = a->tok_from;
    if (a->mode) {
        int mm = calib_mode_parse(a->mode);
        if (mm < 0) return err_set(err, ST_ERR_ARG, "calibrate: mode '%.32s' is not random or chunks", a->mode);
        p.mode = (CalibMode)mm;
    }
    if (p.samples < 1 || p.seqlen < 2 || p.topk < 1)
        return err_set(err, ST_ERR_ARG, "calibrate: samples %lld, seqlen %lld, topk %d out of range",
                       (long long)p.samples, (long long)p.seqlen, (int)p.topk);
    snprintf(p.text_path, sizeof p.text_path, "%s", text_path);
    Status st = calib_output_check(stats_path, err);
    if (st) return st;
    char *hpath = a->no_h ? NULL : calib_h_temp(stats_path);
    if (!hpath && !a->no_h) return err_set(err, ST_ERR_NOMEM, "calibrate");
    CalibStats *cs = NULL;
    Progress prog;
    progress_init(&prog);
    int partial = a->kept > 0 && a->kept < p.samples;
    if (partial) atomic_store(&prog.stop_after, a->kept);
    /* A partial run (kept sequences) exists only in the per-sample pipeline:
     * the layer-streamed one completes no sequence before the last layer. */
    if (partial) p.pipeline = CALIB_PER_SAMPLE;
    st = calib_run(m, text, len, &p, hpath, pool, partial ? &prog : NULL, &cs, err);
    if (!st && partial && cs->n_seqs != a->kept)
        st = err_set(err, ST_ERR_STATE, "calibrate: the recorded run kept %lld sequences, the replay %lld",
                     (long long)a->kept, (long long)cs->n_seqs);
    if (!st) st = calib_commit(cs, hpath, stats_path, err);
    if (!st) {
        memset(out, 0, sizeof *out);
        out->present = 1;
        out->text = text_path;
        out->text_hash = cs->params.text_hash;
        out->text_bytes = cs->params.text_bytes;
        out->samples = p.samples;
        out->seqlen = p.seqlen;
        out->seed = p.seed;
        snprintf(out->mode, sizeof out->mode, "%s", calib_mode_name(p.mode));
        out->group = p.group;
        out->topk = p.topk;
        out->sensitivity = cs->has_sens;
        out->kept = cs->n_seqs < cs->n_planned ? cs->n_seqs : 0;
        out->stats = stats_path;
    }
    calib_stats_free(cs);
    free(hpath);
    return st;
}
