#include "analysis/sensrun.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/hstore.h"
#include "analysis/statsfile.h"
#include "core/clock.h"

int sensrun_resumable(const CalibStats *cs, const Model *m, const CalibParams *p, char *why, size_t cap) {
    char buf[256];
    if (!why) why = buf, cap = sizeof buf;
    const CalibParams *q = &cs->params;
    if (statsfile_is_stale(cs, m, why, cap)) return 0;
    if (cs->n_seqs < cs->n_planned) {
        snprintf(why, cap, "the calibration was cancelled after %lld of %lld sequences", (long long)cs->n_seqs,
                 (long long)cs->n_planned);
        return 0;
    }
    if (q->text_hash != p->text_hash || q->text_bytes != p->text_bytes) {
        snprintf(why, cap, "it was calibrated on another text");
        return 0;
    }
    if (q->samples != p->samples || q->seqlen != p->seqlen || q->seed != p->seed || q->mode != p->mode ||
        q->topk != p->topk || q->group != p->group || q->tok_from != p->tok_from) {
        snprintf(why, cap, "its settings differ (%lld x %lld tokens, %s, seed %llu, group %lld, top-%d)",
                 (long long)q->samples, (long long)q->seqlen, calib_mode_name(q->mode), (unsigned long long)q->seed,
                 (long long)q->group, q->topk);
        return 0;
    }
    if (cs->has_sens && sens_map_complete(&cs->sens)) {
        snprintf(why, cap, "its sensitivity map is complete");
        return 0;
    }
    if (cap) why[0] = '\0';
    return 1;
}

typedef struct SaveCtx {
    CalibStats *cs;
    const char *path;
    double every, last;
    SensSiteFn next;         /* the caller's own callback */
    void *next_user;
} SaveCtx;

static Status save_site(void *user, const SensMap *sm, int64_t layer, int proj, Err *err) {
    SaveCtx *c = user;
    Status st = ST_OK;
    double now = clock_now();
    if (now - c->last >= c->every) {
        st = statsfile_save(c->cs, c->path, err);
        c->last = now;
    }
    if (!st && c->next) st = c->next(c->next_user, sm, layer, proj, err);
    return st;
}

Status sensrun_map(const Model *m, CalibStats *cs, const char *stats_path, const SensOpts *o, double save_secs,
                   Pool *pool, Progress *prog, Err *err) {
    HStore hs;
    memset(&hs, 0, sizeof hs);
    Status st = ST_OK;
    if (cs->has_h) {
        char *hp = statsfile_h_path(stats_path, cs->h_id);
        if (!hp) return err_set(err, ST_ERR_NOMEM, "path");
        const int64_t w[HSTORE_TAPS] = {cs->width[0], cs->width[1], cs->width[2], cs->width[3]};
        st = hstore_open(&hs, hp, cs->h_id, cs->n_layers, w, err);
        free(hp);
        if (st) return st;
    }
    if (!cs->has_sens) {
        if ((st = sens_map_init(&cs->sens, cs->n_layers, cs->params.group, err))) goto done;
        cs->has_sens = 1;
    }
    cs->params.sensitivity = 1;
    SensOpts so;
    if (o) so = *o;
    else sens_opts_default(&so);
    SaveCtx ctx = {.cs = cs, .path = stats_path, .every = save_secs, .last = clock_now(), .next = so.on_site,
                   .next_user = so.user};
    so.on_site = save_site;
    so.user = &ctx;
    st = sens_compute_opts(m, cs->has_h ? &hs : NULL, &so, pool, prog, &cs->sens, err);
    /* whatever stopped the pass, the finished sites (done flags set) are kept */
    Err e2;
    err_init(&e2);
    Status s2 = statsfile_save(cs, stats_path, &e2);
    if (s2 && (st == ST_OK || st == ST_ERR_CANCELLED)) {
        st = s2;
        *err = e2;
    }
done:
    hstore_close(&hs);
    return st;
}
