/* qscope report: read a stats cache and print one of its maps as a table,
 * JSON or CSV (hand-printed: no JSON library in cli/). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/calib.h"
#include "analysis/sensitivity.h"
#include "quant/ggml_type.h"
#include "analysis/spikes.h"
#include "analysis/statsfile.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/mapfile.h"

typedef enum { OUT_TEXT, OUT_JSON, OUT_CSV } OutFmt;

typedef struct ReportOpts {
    int64_t layer;           /* -1: all */
    int tap;                 /* -1: all; else a TapPoint */
    int proj;                /* -1: all or by tap; else a Proj */
    int64_t top;             /* 0: default of the view */
    OutFmt out;
    const Tokenizer *tok;    /* tokens view: the windows' tokens for context (NULL: none) */
    const int32_t *seqs;     /* (n_seqs, seqlen) the calibration windows, or NULL */
    int64_t n_seqs;
} ReportOpts;

static const char REPORT_USAGE[] =
    "usage: qscope report [MODEL] --stats STATS --what VIEW [options]\n"
    "Prints a map from a stats cache written by `qscope calib`. MODEL (optional) is\n"
    "only loaded to check that the stats are not stale (a warning if they are).\n";

enum { VIEW_SPIKES, VIEW_SENSITIVITY, VIEW_ACTQUANT, VIEW_CHANNELS, VIEW_TOKENS, VIEW_RESID };
static const OptChoice VIEWS[] = {{"spikes", VIEW_SPIKES},     {"sensitivity", VIEW_SENSITIVITY},
                                  {"actquant", VIEW_ACTQUANT}, {"channels", VIEW_CHANNELS},
                                  {"tokens", VIEW_TOKENS},     {"resid", VIEW_RESID},
                                  {NULL, 0}};

/* === output helpers === */

/* One row of a --json array on a line of its own ("[\n  {...},\n  {...}\n]"),
 * built with sessions/json.h (numbers with 9 significant digits, null when
 * not finite); row is deleted. -1 after an error message when memory ran out. */
static int json_row(cJSON *row, int ok, int first) {
    char *line = ok && row ? json_print_line(row, 9) : NULL;
    cJSON_Delete(row);
    if (!line) {
        fprintf(stderr, "qscope report: out of memory\n");
        return -1;
    }
    printf("%s\n  %s", first ? "" : ",", line);
    free(line);
    return 0;
}

/* The largest activation of a tap as the object "top" of r (or of the row itself: r == row). */
static int spike_json(cJSON *r, const Spike *sp) {
    return json_set_num(r, "value", sp->value) && json_set_num(r, "channel", sp->channel) &&
           json_set_num(r, "token", sp->token) && json_set_str(r, "text", sp->text) && json_set_num(r, "pos", sp->pos) &&
           json_set_num(r, "seq", (double)sp->seq);
}

/* CSV field: quoted, quotes doubled. */
static void csv_str(const char *s) {
    putchar('"');
    for (const char *p = s; *p; p++) {
        if (*p == '"') putchar('"');
        putchar(*p == '\n' ? ' ' : *p);
    }
    putchar('"');
}

/* Token text for a terminal table: control bytes shown as escapes. */
static void text_show(const char *s, char *out, size_t cap) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 5 < cap; p++) {
        if (*p == '\n') n += (size_t)snprintf(out + n, cap - n, "\\n");
        else if (*p < 0x20) n += (size_t)snprintf(out + n, cap - n, "\\x%02x", *p);
        else out[n++] = (char)*p;
    }
    out[n] = '\0';
}

static int sel_layer(const ReportOpts *o, int64_t l) { return o->layer < 0 || o->layer == l; }

static int sel_tap(const ReportOpts *o, TapPoint t) {
    if (o->tap >= 0) return o->tap == (int)t;
    if (o->proj >= 0) return proj_tap((Proj)o->proj) == t;
    return 1;
}

static int sel_proj(const ReportOpts *o, Proj p) {
    if (o->proj >= 0) return o->proj == (int)p;
    if (o->tap >= 0) return proj_tap(p) == (TapPoint)o->tap;
    return 1;
}

/* === views === */

static int view_spikes(const CalibStats *cs, const ReportOpts *o) {
    Err err;
    err_init(&err);
    SpikeScore *s = NULL;
    int64_t n = 0;
    if (spikes_score(cs, &s, &n, &err) != ST_OK) {
        args_print_err("report", &err);
        return 1;
    }
    int64_t k = o->top > 0 ? o->top : SPIKES_DEFAULT_K;
    int first = 1;
    if (o->out == OUT_JSON) printf("[");
    else if (o->out == OUT_CSV) printf("rank,layer,proj,max,median,ratio,p99,p999,kurtosis,rank_max,candidate,top_token,top_text,top_pos,top_channel\n");
    else printf("%4s %5s %-7s %10s %10s %8s %10s %9s %4s  %s\n", "rank", "layer", "proj", "max", "median",
                "ratio", "p99.9", "kurtosis", "cand", "largest (token@pos, channel)");
    for (int64_t i = 0; i < n; i++) {
        const SpikeScore *e = &s[i];
        if (!sel_layer(o, e->layer) || !sel_tap(o, e->tap)) continue;
        const TapStats *ts = calib_tap(cs, e->layer, e->tap);
        const Spike *sp = ts->n_top > 0 ? &ts->top[0] : NULL;
        int cand = spikes_is_candidate(e, k);
        if (o->out == OUT_JSON) {
            cJSON *r = cJSON_CreateObject(), *top;
            int ok = r && json_set_num(r, "layer", (double)e->layer) && json_set_str(r, "proj", tap_name(e->tap)) &&
                     json_set_num(r, "max", e->max) && json_set_num(r, "median", e->median) &&
                     json_set_num(r, "ratio", e->ratio) && json_set_num(r, "rank", (double)e->rank) &&
                     json_set_num(r, "rank_max", (double)e->rank_max) && json_set_num(r, "p99", e->p99) &&
                     json_set_num(r, "p999", e->p999) && json_set_num(r, "kurtosis", e->kurtosis) &&
                     json_set_bool(r, "candidate", cand) && (!sp || ((top = json_add_object(r, "top")) && spike_json(top, sp)));
            if (json_row(r, ok, first)) {
                free(s);
                return 1;
            }
        } else if (o->out == OUT_CSV) {
            printf("%lld,%lld,%s,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%lld,%d,", (long long)e->rank, (long long)e->layer,
                   tap_name(e->tap), e->max, e->median, e->ratio, e->p99, e->p999, e->kurtosis,
                   (long long)e->rank_max, cand);
            if (sp) {
                printf("%d,", sp->token);
                csv_str(sp->text);
                printf(",%d,%d\n", sp->pos, sp->channel);
            } else {
                printf(",,,\n");
            }
        } else {
            char t[64] = "";
            if (sp) text_show(sp->text, t, sizeof t);
            printf("%4lld %5lld %-7s %10.4g %10.4g %8.1f %10.4g %9.1f %4s", (long long)e->rank, (long long)e->layer,
                   tap_name(e->tap), e->max, e->median, e->ratio, e->p999, e->kurtosis, cand ? "*" : "");
            if (sp) printf("  %+.4g '%s'@%d, ch %d", sp->value, t, sp->pos, sp->channel);
            printf("\n");
        }
        first = 0;
    }
    if (o->out == OUT_JSON) printf("\n]\n");
    else if (o->out == OUT_TEXT) printf("* = spike-aware candidate set (top %lld by max/median)\n", (long long)k);
    free(s);
    return 0;
}

static int view_sensitivity(const CalibStats *cs, const ReportOpts *o) {
    if (!cs->has_sens) {
        fprintf(stderr, "qscope report: the stats file has no sensitivity map (calibrated with --no-sensitivity or cancelled)\n");
        return 1;
    }
    const SensMap *sm = &cs->sens;
    if (!sens_map_complete(sm))
        fprintf(stderr, "qscope report: the sensitivity map is partial: %lld of %lld sites (a cancelled pass: calib "
                        "with the same settings resumes it); the missing cells are n/a\n",
                (long long)sens_map_sites_done(sm), (long long)(cs->n_layers * PROJ_COUNT));
    int first = 1;
    if (o->out == OUT_JSON) printf("[");
    else if (o->out == OUT_CSV) printf("layer,proj,format,grouping,group,weight_err,output_err,bpw\n");
    for (int64_t l = 0; l < cs->n_layers; l++) {
        if (!sel_layer(o, l)) continue;
        for (int p = 0; p < PROJ_COUNT; p++) {
            if (!sel_proj(o, (Proj)p)) continue;
            const int32_t *gs = sm->gsize + (l * PROJ_COUNT + p) * SG_COUNT;
            int64_t no = p == PROJ_DOWN ? cs->dim : p == PROJ_GATE || p == PROJ_UP ? cs->hidden_dim
                       : p == PROJ_O ? cs->dim : (int64_t)0;
            int64_t ni = p == PROJ_DOWN ? cs->hidden_dim : p == PROJ_O ? cs->q_dim : cs->dim;
            if (p == PROJ_Q) no = cs->q_dim;
            if (p == PROJ_K || p == PROJ_V) no = 0; /* the KV width is not in the stats: ic overhead unknown */
            if (o->out == OUT_TEXT) {
                printf("layer %lld %s  output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) [weight error ‖ΔW‖²/‖W‖²]"
                       "  oc-g=%d ic-g=%d\n",
                       (long long)l, proj_name((Proj)p), gs[SG_OC_G], gs[SG_IC_G]);
                printf("%-9s", "format");
                for (int g = 0; g < SG_COUNT; g++) printf(" %21s", sens_group_name((SensGroup)g));
                printf("  adadim\n");
                printf("%-9s", "+bpw");
                for (int g = 0; g < SG_BLOCK; g++) {
                    double b = sens_cell_bpw(0, (SensGroup)g, gs, no, ni) - qformat_traits(sens_fmt(0))->bits;
                    char cell[32];
                    if (isnan(b)) snprintf(cell, sizeof cell, "?");
                    else snprintf(cell, sizeof cell, "+%.4f", b);
                    printf(" %21s", cell);
                }
                printf(" %21s  (scale bits per weight: a cell costs the format's bits plus this; blk: the ggml "
                       "formats' own blocks, scales included%s)\n", "",
                       no ? "" : "; ?: per-ic scales depend on the K/V width, which the stats file does not hold");
            }
            for (int f = 0; f < SENS_NFMT; f++) {
                const char *fname = qformat_traits(sens_fmt(f))->name;
                GroupDim c0 = sens_adadim_choice(sm, l, p, f, 0), c1 = sens_adadim_choice(sm, l, p, f, 1);
                if (o->out == OUT_TEXT) printf("%-9s", fname);
                for (int g = 0; g < SG_COUNT; g++) {
                    /* only the cells a candidate has (scaled formats: five groupings; ggml: its blocks) */
                    if (!sens_cell_applies(f, (SensGroup)g)) {
                        if (o->out == OUT_TEXT) printf(" %21s", "");
                        continue;
                    }
                    int64_t ix = sens_index(l, p, f, g);
                    double we = sm->werr[ix], oe = sm->oerr[ix];
                    int grp = (g == SG_OC_G || g == SG_IC_G) ? gs[g] : 0;
                    double bpw = sens_cell_bpw(f, (SensGroup)g, gs, no, ni);
                    if (isnan(we)) bpw = NAN;
                    if (o->out == OUT_JSON) {
                        int ada = g == SG_OC || g == SG_IC || g == SG_OC_G || g == SG_IC_G;
                        cJSON *r = cJSON_CreateObject();
                        int ok = r && json_set_num(r, "layer", (double)l) && json_set_str(r, "proj", proj_name((Proj)p)) &&
                                 json_set_str(r, "format", fname) &&
                                 json_set_str(r, "grouping", sens_group_name((SensGroup)g)) &&
                                 json_set_num(r, "group", grp) && json_set_num(r, "weight_err", we) &&
                                 json_set_num(r, "output_err", oe) && json_set_num(r, "bpw", bpw) &&
                                 (!ada || json_set_str(r, "adadim_choice",
                                                       group_dim_name((g == SG_OC || g == SG_IC) ? c0 : c1)));
                        if (json_row(r, ok, first)) return 1;
                        first = 0;
                    } else if (o->out == OUT_CSV) {
                        printf("%lld,%s,%s,%s,%d,%.9g,%.9g,%.6g\n", (long long)l, proj_name((Proj)p), fname,
                               sens_group_name((SensGroup)g), grp, we, oe, bpw);
                    } else {
                        char cell[32];
                        if (isnan(we)) snprintf(cell, sizeof cell, "n/a");
                        else snprintf(cell, sizeof cell, "%.3e [%.2e]", oe, we);
                        printf(" %21s", cell);
                    }
                }
                if (o->out == OUT_TEXT) {
                    if (sens_cell_applies(f, SG_TENSOR)) printf("  %s/%s\n", group_dim_name(c0), group_dim_name(c1));
                    else printf("\n");
                }
            }
        }
    }
    if (o->out == OUT_JSON) printf("\n]\n");
    else if (o->out == OUT_TEXT)
        printf("adadim: the per-channel / grouped choice between input- (ic) and output-channel (oc) scales\n");
    return 0;
}

static int view_actquant(const CalibStats *cs, const ReportOpts *o) {
    int first = 1;
    if (o->out == OUT_JSON) printf("[");
    else if (o->out == OUT_CSV) printf("layer,proj,format,mode,rel_err\n");
    else {
        printf("relative error ‖x - Q(x)‖²/‖x‖² of the projection inputs (static: scale from earlier sequences)\n");
        printf("%5s %-7s", "layer", "proj");
        for (int f = ACT_INT8; f < ACT_COUNT; f++)
            for (int m = 0; m < ACT_MODE_COUNT; m++) {
                char h[40];
                snprintf(h, sizeof h, "%s/%s", f == 0 ? "i8" : f == 1 ? "e4m3" : "e5m2",
                         m == 0 ? "t-stat" : m == 1 ? "t-dyn" : "tok");
                printf(" %12s", h);
            }
        printf("\n");
    }
    for (int64_t l = 0; l < cs->n_layers; l++) {
        if (!sel_layer(o, l)) continue;
        for (int t = 0; t < TAP_RESID; t++) {
            if (!sel_tap(o, (TapPoint)t)) continue;
            const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
            if (o->out == OUT_TEXT) printf("%5lld %-7s", (long long)l, tap_name((TapPoint)t));
            for (int f = ACT_INT8; f < ACT_COUNT; f++)
                for (int m = 0; m < ACT_MODE_COUNT; m++) {
                    double e = tapstats_act_rel_err(ts, (ActFormat)f, (ActMode)m);
                    if (o->out == OUT_JSON) {
                        cJSON *r = cJSON_CreateObject();
                        int ok = r && json_set_num(r, "layer", (double)l) && json_set_str(r, "proj", tap_name((TapPoint)t)) &&
                                 json_set_str(r, "format", act_format_name((ActFormat)f)) &&
                                 json_set_str(r, "mode", act_mode_name((ActMode)m)) && json_set_num(r, "rel_err", e);
                        if (json_row(r, ok, first)) return 1;
                        first = 0;
                    } else if (o->out == OUT_CSV) {
                        printf("%lld,%s,%s,%s,%.9g\n", (long long)l, tap_name((TapPoint)t), act_format_name((ActFormat)f),
                               act_mode_name((ActMode)m), e);
                    } else {
                        printf(" %12.3e", e);
                    }
                }
            if (o->out == OUT_TEXT) printf("\n");
        }
    }
    if (o->out == OUT_JSON) printf("\n]\n");
    return 0;
}

typedef struct ChanRank { int64_t c; float max; } ChanRank;

static int chan_cmp(const void *a, const void *b) {
    const ChanRank *x = a, *y = b;
    if (x->max != y->max) return x->max > y->max ? -1 : 1;
    return x->c < y->c ? -1 : 1;
}

static int view_channels(const CalibStats *cs, const ReportOpts *o) {
    int64_t k = o->top > 0 ? o->top : 10;
    int first = 1;
    if (o->out == OUT_JSON) printf("[");
    else if (o->out == OUT_CSV) printf("layer,proj,channel,max,mean,rms\n");
    for (int64_t l = 0; l < cs->n_layers; l++) {
        if (!sel_layer(o, l)) continue;
        for (int t = 0; t < TAP_COUNT; t++) {
            if (!sel_tap(o, (TapPoint)t)) continue;
            const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
            ChanRank *r = malloc(sizeof *r * (size_t)ts->width);
            if (!r) return 1;
            for (int64_t c = 0; c < ts->width; c++) r[c] = (ChanRank){c, ts->ch_absmax[c]};
            qsort(r, (size_t)ts->width, sizeof *r, chan_cmp);
            double nr = ts->n_rows > 0 ? (double)ts->n_rows : 1;
            if (o->out == OUT_TEXT)
                printf("layer %lld %s: top %lld of %lld channels by max|x| (%lld tokens)\n%8s %12s %12s %12s\n",
                       (long long)l, tap_name((TapPoint)t), (long long)(k < ts->width ? k : ts->width),
                       (long long)ts->width, (long long)ts->n_rows, "channel", "max|x|", "mean", "rms");
            for (int64_t i = 0; i < k && i < ts->width; i++) {
                int64_t c = r[i].c;
                double mean = ts->ch_sum[c] / nr, rms = sqrt(ts->ch_sumsq[c] / nr);
                if (o->out == OUT_JSON) {
                    cJSON *row = cJSON_CreateObject();
                    int ok = row && json_set_num(row, "layer", (double)l) &&
                             json_set_str(row, "proj", tap_name((TapPoint)t)) && json_set_num(row, "channel", (double)c) &&
                             json_set_num(row, "max", r[i].max) && json_set_num(row, "mean", mean) &&
                             json_set_num(row, "rms", rms);
                    if (json_row(row, ok, first)) {
                        free(r);
                        return 1;
                    }
                    first = 0;
                } else if (o->out == OUT_CSV) {
                    printf("%lld,%s,%lld,%.9g,%.9g,%.9g\n", (long long)l, tap_name((TapPoint)t), (long long)c,
                           r[i].max, mean, rms);
                } else {
                    printf("%8lld %12.4g %12.4g %12.4g\n", (long long)c, r[i].max, mean, rms);
                }
            }
            free(r);
        }
    }
    if (o->out == OUT_JSON) printf("\n]\n");
    return 0;
}

/* The calibration windows for the tokens view's context, from text_path (else
 * the path the stats record): o->seqs (owned by the caller, *seqs) and
 * o->tok (m's tokenizer); without them, a note and no context. */
static void report_windows(const CalibStats *cs, const Model *m, const char *text_path, ReportOpts *o, int32_t **seqs) {
    const char *path = text_path ? text_path : cs->params.text_path;
    Err err;
    err_init(&err);
    char *text = NULL;
    size_t len = 0;
    if (file_read_all(path, (size_t)1 << 31, &text, &len, &err) == ST_OK &&
        spikes_windows(cs, m, text, len, seqs, &o->n_seqs, &err) == ST_OK) {
        o->seqs = *seqs;
        o->tok = m->tok;
    } else {
        fprintf(stderr, "qscope report: note: no context for the tokens (%s; --text gives the calibration text)\n",
                err.detail);
    }
    free(text);
}

static int view_tokens(const CalibStats *cs, const ReportOpts *o) {
    int first = 1;
    if (o->out == OUT_JSON) printf("[");
    else if (o->out == OUT_CSV) printf("layer,proj,rank,value,channel,token,text,pos,seq,count,context\n");
    int64_t ntop = 0;
    for (int64_t i = 0; i < cs->n_layers * TAP_COUNT; i++) ntop = cs->taps[i].n_top > ntop ? cs->taps[i].n_top : ntop;
    char (*ctx)[128] = calloc((size_t)(ntop ? ntop : 1), sizeof *ctx);
    const char **cp = calloc((size_t)(ntop ? ntop : 1), sizeof *cp);
    int64_t *keep = calloc((size_t)(ntop ? ntop : 1), sizeof *keep), *count = calloc((size_t)(ntop ? ntop : 1), sizeof *count);
    if (!ctx || !cp || !keep || !count) {
        free(ctx), free(cp), free(keep), free(count);
        fprintf(stderr, "qscope report: out of memory\n");
        return 1;
    }
    for (int64_t l = 0; l < cs->n_layers; l++) {
        if (!sel_layer(o, l)) continue;
        for (int t = 0; t < TAP_COUNT; t++) {
            if (!sel_tap(o, (TapPoint)t)) continue;
            const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
            for (int64_t i = 0; i < ts->n_top; i++) {
                spikes_context(o->tok, o->seqs, o->n_seqs, cs->params.seqlen, &ts->top[i], ctx[i], sizeof ctx[i]);
                cp[i] = ctx[i];
            }
            int64_t nk = spikes_merge(ts->top, ts->n_top, o->seqs ? cp : NULL, keep, count);
            int64_t k = o->top > 0 && o->top < nk ? o->top : nk;
            if (o->out == OUT_TEXT)
                printf("layer %lld %s: largest |x|\n%4s %12s %8s %7s %-16s %6s %5s %5s  %s\n", (long long)l,
                       tap_name((TapPoint)t), "#", "value", "channel", "token", "text", "pos", "seq", "count",
                       o->seqs ? "context" : "");
            for (int64_t r = 0; r < k; r++) {
                const Spike *s = &ts->top[keep[r]];
                const char *c = ctx[keep[r]];
                if (o->out == OUT_JSON) {
                    cJSON *row = cJSON_CreateObject();
                    int ok = row && json_set_num(row, "layer", (double)l) &&
                             json_set_str(row, "proj", tap_name((TapPoint)t)) && json_set_num(row, "rank", (double)r + 1) &&
                             spike_json(row, s) && json_set_num(row, "count", (double)count[r]) &&
                             json_set_str(row, "context", c);
                    if (json_row(row, ok, first)) {
                        free(ctx), free(cp), free(keep), free(count);
                        return 1;
                    }
                    first = 0;
                } else if (o->out == OUT_CSV) {
                    printf("%lld,%s,%lld,%.9g,%d,%d,", (long long)l, tap_name((TapPoint)t), (long long)r + 1,
                           s->value, s->channel, s->token);
                    csv_str(s->text);
                    printf(",%d,%lld,%lld,", s->pos, (long long)s->seq, (long long)count[r]);
                    csv_str(c);
                    printf("\n");
                } else {
                    char tx[64];
                    text_show(s->text, tx, sizeof tx);
                    char q[72];
                    snprintf(q, sizeof q, "'%s'", tx);
                    char n[24] = "";
                    if (count[r] > 1) snprintf(n, sizeof n, "x%lld", (long long)count[r]);
                    printf("%4lld %12.4g %8d %7d %-16s %6d %5lld %5s  %s\n", (long long)r + 1, s->value, s->channel,
                           s->token, q, s->pos, (long long)s->seq, n, c);
                }
            }
        }
    }
    free(ctx), free(cp), free(keep), free(count);
    if (o->out == OUT_JSON) printf("\n]\n");
    return 0;
}

static int view_resid(const CalibStats *cs, const ReportOpts *o) {
    int64_t L = cs->params.seqlen;
    int first = 1;
    if (o->out == OUT_JSON) printf("[");
    else if (o->out == OUT_CSV) printf("layer,pos,rms_mean,rms_max\n");
    else printf("residual-stream RMS after each block (mean over %lld sequences)\n%5s %10s %10s %10s %10s %8s\n",
                (long long)cs->n_seqs, "layer", "mean", "max", "pos0 mean", "pos1+ mean", "max pos");
    for (int64_t l = 0; l < cs->n_layers; l++) {
        if (!sel_layer(o, l)) continue;
        double tot = 0, rest = 0, mx = 0;
        int64_t argmax = 0;
        for (int64_t p = 0; p < L; p++) {
            double v = calib_resid_mean(cs, l, p);
            tot += v;
            if (p > 0) rest += v;
            if (cs->resid_rms_max[l * L + p] > mx) {
                mx = cs->resid_rms_max[l * L + p];
                argmax = p;
            }
        }
        if (o->out == OUT_JSON) {
            cJSON *r = cJSON_CreateObject(), *pm = NULL, *px = NULL;
            int ok = r && json_set_num(r, "layer", (double)l) && json_set_num(r, "mean", tot / (double)L) &&
                     json_set_num(r, "max", mx) && json_set_num(r, "max_pos", (double)argmax) &&
                     (pm = json_add_array(r, "pos_mean")) && (px = json_add_array(r, "pos_max"));
            for (int64_t p = 0; ok && p < L; p++) {
                double a = calib_resid_mean(cs, l, p), b = cs->resid_rms_max[l * L + p];
                ok = json_push(pm, isfinite(a) ? cJSON_CreateNumber(a) : cJSON_CreateNull()) &&
                     json_push(px, isfinite(b) ? cJSON_CreateNumber(b) : cJSON_CreateNull());
            }
            if (json_row(r, ok, first)) return 1;
            first = 0;
        } else if (o->out == OUT_CSV) {
            for (int64_t p = 0; p < L; p++)
                printf("%lld,%lld,%.9g,%.9g\n", (long long)l, (long long)p, calib_resid_mean(cs, l, p),
                       cs->resid_rms_max[l * L + p]);
        } else {
            printf("%5lld %10.4g %10.4g %10.4g %10.4g %8lld\n", (long long)l, tot / (double)L, mx,
                   calib_resid_mean(cs, l, 0), L > 1 ? rest / (double)(L - 1) : 0, (long long)argmax);
        }
    }
    if (o->out == OUT_JSON) printf("\n]\n");
    return 0;
}

int cmd_report(int argc, char **argv) {
    const char *model = NULL, *stats = NULL, *layer = NULL, *proj = NULL, *tok = NULL, *text_path = NULL;
    int32_t *seqs = NULL;
    Tokenizer *own_tok = NULL; /* the model's, kept for the tokens view's context */
    ReportOpts o = {.layer = -1, .tap = -1, .proj = -1, .top = 0, .out = OUT_TEXT};
    int view = -1, out = OUT_TEXT;
    int64_t top = 0;
    const Opt opts[] = {
        OPT_STR("--stats", &stats, "STATS", "stats file from `qscope calib`"),
        OPT_ENUM("--what", &view, VIEWS, "VIEW",
                 "spikes       max|x|, median|x|, ratio and rank per projection input;\n"
                 "             the top K (--top, default 3) are the spike-aware set\n"
                 "sensitivity  relative weight and output error per format × grouping,\n"
                 "             with AdaDim's per-IC/per-OC choice\n"
                 "actquant     relative error of int8/fp8 activations per-tensor\n"
                 "             (static, dynamic) and per-token\n"
                 "channels     top channels by max|x| (--top, default 10)\n"
                 "tokens       the largest activations with token text, position and (with\n"
                 "             MODEL and the calibration text) the tokens before it;\n"
                 "             duplicates (same channel, token and context) merged\n"
                 "resid        residual-stream RMS per layer and position"),
        /* its bound is the stats file's layer count: checked once the file is read */
        OPT_STR("--layer", &layer, "L", "only layer L"),
        OPT_STR("--proj", &proj, "P", "only P: qkv, o, gate_up, down, resid, or q, k, v, gate, up"),
        OPT_INT("--top", &top, 1, 1 << 20, "K", "rows per view (see above)"),
        OPT_SET("--json", &out, OUT_JSON, "a JSON list of objects"),
        OPT_SET("--csv", &out, OUT_CSV, "CSV with a header row"),
        OPT_STR("--tokenizer", &tok, "T", "llama2.c tokenizer (for a .bin MODEL)"),
        OPT_STR("--text", &text_path, "F",
                "the calibration text for the tokens view's context (default: the\n"
                "path the stats record; checked against their text hash)"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "report", .usage = REPORT_USAGE, .tables = {opts}, .pos = {&model}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!stats || view < 0) {
        fprintf(stderr, "qscope report: --stats and --what are required (see qscope report --help)\n");
        return 2;
    }
    o.out = (OutFmt)out;
    o.top = top;
    if (proj) {
        int t = -1;
        for (int i = 0; i < TAP_COUNT; i++)
            if (strcmp(proj, tap_name((TapPoint)i)) == 0) t = i;
        if (t >= 0) o.tap = t;
        else if ((o.proj = proj_parse(proj)) < 0) {
            fprintf(stderr, "qscope report: --proj: '%s' is not qkv, o, gate_up, down, resid or a projection name\n", proj);
            return 2;
        }
    }
    int64_t v;
    Err err;
    err_init(&err);
    CalibStats *cs = NULL;
    if (statsfile_load(stats, &cs, &err) != ST_OK) {
        args_print_err("report", &err);
        return 1;
    }
    if (layer) {
        if (!args_int("report", "--layer", layer, 0, cs->n_layers - 1, &v)) {
            calib_stats_free(cs);
            return 2;
        }
        o.layer = v;
    }
    if (model) {
        Model *m = args_load_model(model, tok);
        if (!m) {
            calib_stats_free(cs);
            return 1;
        }
        char why[256];
        int stale = statsfile_is_stale(cs, m, why, sizeof why);
        if (stale) fprintf(stderr, "qscope report: warning: %s is stale for %s: %s\n", stats, model, why);
        if (view == VIEW_TOKENS && !stale) report_windows(cs, m, text_path, &o, &seqs);
        if (o.tok) { /* kept past the model */
            own_tok = m->tok;
            m->tok = NULL;
        }
        model_free(m);
    }
    if (o.out == OUT_TEXT)
        printf("stats %s: %lld layers, %lld sequences × %lld tokens of %s (%s, seed %llu)%s\n", stats,
               (long long)cs->n_layers, (long long)cs->n_seqs, (long long)cs->params.seqlen, cs->params.text_path,
               calib_mode_name(cs->params.mode), (unsigned long long)cs->params.seed,
               cs->n_seqs < cs->n_planned ? " [cancelled early]" : "");
    int rc;
    switch (view) {
    case VIEW_SPIKES: rc = view_spikes(cs, &o); break;
    case VIEW_SENSITIVITY: rc = view_sensitivity(cs, &o); break;
    case VIEW_ACTQUANT: rc = view_actquant(cs, &o); break;
    case VIEW_CHANNELS: rc = view_channels(cs, &o); break;
    case VIEW_TOKENS: rc = view_tokens(cs, &o); break;
    default: rc = view_resid(cs, &o); break;
    }
    calib_stats_free(cs);
    free(seqs);
    tokenizer_free(own_tok);
    return rc;
}
