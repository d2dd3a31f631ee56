#include "analysis/spikes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define SPIKE_TAPS 4

static int score_cmp_ratio(const void *a, const void *b) {
    const SpikeScore *x = a, *y = b;
    if (x->ratio != y->ratio) return x->ratio > y->ratio ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (int)x->tap - (int)y->tap;
}

static int score_cmp_max(const void *a, const void *b) {
    const SpikeScore *x = a, *y = b;
    if (x->max != y->max) return x->max > y->max ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (int)x->tap - (int)y->tap;
}

Status spikes_score(const CalibStats *cs, SpikeScore **out, int64_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    int64_t cnt = cs->n_layers * SPIKE_TAPS;
    SpikeScore *s = core_calloc((size_t)cnt, sizeof *s);
    if (!s) return err_set(err, ST_ERR_NOMEM, "spike scores");
    for (int64_t l = 0; l < cs->n_layers; l++)
        for (int t = 0; t < SPIKE_TAPS; t++) {
            const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
            SpikeScore *e = &s[l * SPIKE_TAPS + t];
            e->layer = l;
            e->tap = (TapPoint)t;
            e->max = ts->absmax;
            e->median = hist_percentile(ts->hist, 0.5, ts->absmax);
            e->p99 = hist_percentile(ts->hist, 0.99, ts->absmax);
            e->p999 = hist_percentile(ts->hist, 0.999, ts->absmax);
            e->kurtosis = moments_kurtosis(&ts->mom);
            double med = e->median > 0x1p-20 ? e->median : 0x1p-20;
            e->ratio = e->max / med;
        }
    qsort(s, (size_t)cnt, sizeof *s, score_cmp_max);
    for (int64_t i = 0; i < cnt; i++) s[i].rank_max = i + 1;
    qsort(s, (size_t)cnt, sizeof *s, score_cmp_ratio);
    for (int64_t i = 0; i < cnt; i++) s[i].rank = i + 1;
    *out = s;
    *n = cnt;
    return ST_OK;
}

int spikes_is_candidate(const SpikeScore *s, int64_t k) { return s->rank <= k; }

Status spikes_windows(const CalibStats *cs, const Model *m, const char *text, size_t len, int32_t **seqs,
                      int64_t *n_seqs, Err *err) {
    *seqs = NULL;
    *n_seqs = 0;
    const CalibParams *p = &cs->params;
    if (!m->tok) return err_set(err, ST_ERR_STATE, "%s: the model has no tokenizer", m->path);
    if (!calib_same_text(p, text, len))
        return err_set(err, ST_ERR_MISMATCH, "%s: not the text the stats were calibrated on (its size or hash differ)",
                       p->text_path);
    int32_t *toks = NULL;
    int64_t n = 0;
    Status st = tokenizer_encode(m->tok, text, len, 0, &toks, &n, err); /* as calib_run: no BOS */
    if (st) return st;
    if (p->tok_from > 0 && p->tok_from < n) { /* the part past evaluation's chunks (calib_run) */
        n -= p->tok_from;
        memmove(toks, toks + p->tok_from, (size_t)n * sizeof *toks);
    }
    st = calib_sample(toks, n, tokenizer_bos(m->tok), p, seqs, n_seqs, err);
    free(toks);
    return st;
}

/* Appends the display form of bytes b (k) to buf at *at (n bytes in all). */
static void ctx_put(char *buf, size_t n, size_t *at, const char *b, size_t k) {
    for (size_t i = 0; i < k && *at + 5 < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '\n') *at += (size_t)snprintf(buf + *at, n - *at, "\\n");
        else if (c < 0x20) *at += (size_t)snprintf(buf + *at, n - *at, "\\x%02x", c);
        else buf[(*at)++] = (char)c;
    }
    buf[*at] = 0;
}

void spikes_context(const Tokenizer *t, const int32_t *seqs, int64_t n_seqs, int64_t seqlen, const Spike *s,
                    char *buf, size_t n) {
    size_t at = 0;
    if (n) buf[0] = 0;
    if (!t || !seqs || s->seq < 0 || s->seq >= n_seqs || s->pos < 0 || s->pos >= seqlen || n < 8) return;
    const int32_t *w = seqs + s->seq * seqlen;
    int64_t from = s->pos > SPIKE_CONTEXT ? s->pos - SPIKE_CONTEXT : 0;
    if (from > 0) ctx_put(buf, n, &at, "\xe2\x80\xa6", 3); /* … */
    char piece[64];
    for (int64_t i = from; i <= s->pos; i++) {
        size_t k = tokenizer_decode(t, w[i], piece, sizeof piece);
        if (k == 0) { /* BOS and other control tokens: their vocab piece */
            const char *pc = tokenizer_piece(t, w[i]);
            k = strlen(pc);
            if (k > sizeof piece) k = sizeof piece;
            memcpy(piece, pc, k);
        }
        if (i == s->pos) ctx_put(buf, n, &at, "[", 1);
        ctx_put(buf, n, &at, piece, k);
        if (i == s->pos) ctx_put(buf, n, &at, "]", 1);
    }
}

int64_t spikes_merge(const Spike *s, int64_t n, const char *const *ctx, int64_t *keep, int64_t *count) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = 0;
        for (; j < k; j++) {
            const Spike *a = &s[keep[j]];
            if (a->channel != s[i].channel || a->token != s[i].token) continue;
            int by_ctx = ctx && ctx[i][0] && ctx[keep[j]][0];
            if (by_ctx ? strcmp(ctx[keep[j]], ctx[i]) == 0 : a->value == s[i].value) break;
        }
        if (j < k) {
            count[j]++;
        } else {
            keep[k] = i;
            count[k++] = 1;
        }
    }
    return k;
}

Status spikes_top_sites(const CalibStats *cs, int64_t k, char ***sites, int64_t *n, Err *err) {
    *sites = NULL;
    *n = 0;
    SpikeScore *sc = NULL;
    int64_t n_sc = 0;
    Status st = spikes_score(cs, &sc, &n_sc, err);
    if (st) return st;
    if (k > n_sc) k = n_sc;
    char **out = calloc((size_t)(k > 0 ? k : 1), sizeof *out);
    if (!out) {
        free(sc);
        return err_set(err, ST_ERR_NOMEM, "spike sites");
    }
    for (int64_t i = 0; i < k; i++) {
        out[i] = malloc(48);
        if (!out[i]) {
            for (int64_t j = 0; j < i; j++) free(out[j]);
            free(out);
            free(sc);
            return err_set(err, ST_ERR_NOMEM, "spike sites");
        }
        snprintf(out[i], 48, "%lld.%s", (long long)sc[i].layer, tap_name(sc[i].tap));
    }
    free(sc);
    *sites = out;
    *n = k;
    return ST_OK;
}
