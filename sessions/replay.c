#include "sessions/replay.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analysis/spikes.h"
#include "analysis/calib.h"
#include "analysis/eval.h"
#include "analysis/evaluate.h"
#include "analysis/planner.h"
#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "core/alloc.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/strlist.h"
#include "core/suggest.h"
#include "model/model.h"
#include "quant/plan.h"
#include "quant/plan_edit.h"
#include "quant/preset.h"
#include "sessions/json.h"
#include "sessions/plan_json.h"

#define REPLAY_MAX_TEXT ((size_t)1 << 31)
#define REPLAY_MAX_SCRIPT ((size_t)256 << 20)

/* One undo/redo step: a plan as it was before a change. */
typedef struct Snapshot {
    char name[64];
    int existed;
    Plan plan;
    char current[64];        /* the current plan at that time ("" = none) */
} Snapshot;

typedef struct TextBuf {
    char *path;              /* as given in the action */
    char *data;
    size_t len;
    uint64_t hash;
} TextBuf;

typedef struct RefEntry {
    char *text;
    int64_t ctx, chunks;
    Numerics numerics;
    EvalRef *ref;
} RefEntry;

typedef struct Replay {
    const ReplayOpts *o;
    const char *path;        /* the script (messages, relative paths) */
    ReplayReport *rep;
    Model *m;
    PlanModel pm;
    Pool *pool;
    Session *out;
    QStatsFile sf;
    int have_stats;
    PlanUndo hist;           /* of Snapshots, as the editor's undo (quant/plan_edit.h) */
    TextBuf *texts;
    int64_t n_texts;
    RefEntry *refs;
    int64_t n_refs;
    int64_t n_calib;
    const cJSON *rec_results; /* recorded results (session input) or NULL */
    int64_t n_eval;
    char edit_key[80];       /* grouping key of the last set_rule / set_cell ("" after other actions) */
    double edit_id;          /* the "edit" id the output logged with the last set_rule / set_cell */
} Replay;

void replay_opts_default(ReplayOpts *o) { memset(o, 0, sizeof *o); }

/* === Report helpers === */

static void add_note(ReplayReport *rep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Out of memory the note is dropped: the report is only shorter. */
static void add_note(ReplayReport *rep, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    (void)strlist_vaddf(&rep->notes, &rep->n_notes, fmt, ap);
    va_end(ap);
}

static ReplayDiff *add_diff(ReplayReport *rep) {
    ReplayDiff *nd = realloc(rep->diffs, (size_t)(rep->n_diffs + 1) * sizeof *nd);
    if (!nd) return NULL;
    rep->diffs = nd;
    ReplayDiff *d = &rep->diffs[rep->n_diffs++];
    memset(d, 0, sizeof *d);
    d->tol = NAN;
    return d;
}

void replay_report_done(ReplayReport *rep) {
    if (!rep) return;
    session_free(rep->out);
    for (int64_t i = 0; i < rep->n_notes; i++) free(rep->notes[i]);
    free(rep->notes);
    free(rep->diffs);
    memset(rep, 0, sizeof *rep);
}

char *replay_diff_text(const ReplayReport *rep) {
    size_t cap = 256 + (size_t)rep->n_diffs * 400, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    b[0] = '\0';
    for (int64_t i = 0; i < rep->n_diffs; i++) {
        const ReplayDiff *d = &rep->diffs[i];
        char head[48];
        if (d->result > 0) snprintf(head, sizeof head, "result %" PRId64 ": ", d->result);
        else head[0] = '\0';
        if (isnan(d->tol)) {
            n += (size_t)snprintf(b + n, cap - n, "  %s%s: %s\n", head, d->what, d->text);
        } else {
            double delta = d->replayed - d->recorded;
            char tol[48];
            if (d->tol == 0) snprintf(tol, sizeof tol, "must be bit-identical");
            else snprintf(tol, sizeof tol, "allowed %.3g", d->tol);
            n += (size_t)snprintf(b + n, cap - n, "  %s%-16s recorded %.17g  replayed %.17g  delta %+.3g (%s)\n", head,
                                  d->what, d->recorded, d->replayed, delta, tol);
        }
        if (n >= cap) break;
    }
    return b;
}

/* === Small helpers === */

/* Integer argument k of a: absent -> def; otherwise an integer in [lo, hi]. */
static Status a_int(const cJSON *a, const char *k, int64_t lo, int64_t hi, int64_t def, int64_t *out, Err *err) {
    const cJSON *v = json_get(a, k);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return ST_OK;
    }
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return ST_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return err_set(err, ST_ERR_ARG, "argument '%s' must be an integer in [%" PRId64 ", %" PRId64 "]", k, lo, hi);
    *out = (int64_t)v->valuedouble;
    return ST_OK;
}

/* A file named in the script: as given, else relative to the script's directory. */
static void resolve_path(const Replay *r, const char *p, char *buf, size_t cap) {
    struct stat sb;
    snprintf(buf, cap, "%s", p);
    if (p[0] == '/' || stat(p, &sb) == 0) return;
    const char *slash = strrchr(r->path, '/');
    if (!slash) return;
    char alt[4096];
    snprintf(alt, sizeof alt, "%.*s/%s", (int)(slash - r->path), r->path, p);
    if (stat(alt, &sb) == 0) snprintf(buf, cap, "%s", alt);
}

static Status get_text(Replay *r, const char *path, TextBuf **out, Err *err) {
    for (int64_t i = 0; i < r->n_texts; i++)
        if (!strcmp(r->texts[i].path, path)) {
            *out = &r->texts[i];
            return ST_OK;
        }
    char full[4096];
    resolve_path(r, path, full, sizeof full);
    TextBuf t = {0};
    Status st = file_read_all(full, REPLAY_MAX_TEXT, &t.data, &t.len, err);
    if (st) return st;
    t.path = core_strdup(path);
    TextBuf *nt = realloc(r->texts, (size_t)(r->n_texts + 1) * sizeof *nt);
    if (!t.path || !nt) {
        free(t.path);
        free(t.data);
        if (nt) r->texts = nt;
        return err_set(err, ST_ERR_NOMEM, "%s", path);
    }
    t.hash = hash_bytes(HASH_SEED, t.data, t.len);
    r->texts = nt;
    r->texts[r->n_texts] = t;
    *out = &r->texts[r->n_texts++];
    return ST_OK;
}

/* The plan an action names ("plan" argument, else the current plan). */
static const char *plan_arg(const Replay *r, const cJSON *a) {
    const char *p = json_string(a, "plan");
    return p ? p : session_current_plan(r->out);
}

/* === Undo / redo over the session's plans === */

static void snap_done(Snapshot *s) { plan_done(&s->plan); }

static Status snap_take(Replay *r, const char *name, Snapshot *s, Err *err) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    const char *cur = session_current_plan(r->out);
    snprintf(s->current, sizeof s->current, "%s", cur ? cur : "");
    s->existed = session_find_plan(r->out, name) >= 0;
    if (s->existed) return session_get_plan(r->out, name, &s->plan, err);
    plan_init(&s->plan);
    return ST_OK;
}

static Status snap_restore(Replay *r, Snapshot *s, Err *err) {
    Status st;
    if (s->existed) st = session_set_plan(r->out, s->name, &s->plan, err);
    else st = session_find_plan(r->out, s->name) >= 0 ? session_delete_plan(r->out, s->name, err) : ST_OK;
    if (!st) st = session_set_current(r->out, s->current[0] ? s->current : NULL, err);
    return st;
}

static void snap_release(void *s) { snap_done(s); }

/* Records plan `name` before an edit; clears the redo history. */
static Status before_edit(Replay *r, const char *name, Err *err) {
    Snapshot s;
    Status st = snap_take(r, name, &s, err);
    if (st) {
        snap_done(&s);
        return st;
    }
    return plan_undo_push(&r->hist, &s, err);
}

/* Undo / redo as the editor does: the plan the step concerns, as it is now,
 * goes on the other stack; the recorded one is restored. */
static Status undo_redo(Replay *r, int redo, const char **summary, Err *err) {
    const Snapshot *s = plan_undo_peek(&r->hist, redo);
    if (!s) {
        *summary = "nothing to do";
        return ST_OK;
    }
    Snapshot now;
    Status st = snap_take(r, s->name, &now, err);
    if (st) {
        snap_done(&now);
        return st;
    }
    plan_undo_step(&r->hist, redo, &now); /* now: the snapshot to restore */
    st = snap_restore(r, &now, err);
    snap_done(&now);
    *summary = redo ? "redone" : "undone";
    return st;
}

/* Stores p as plan `name` after validating it on the model. */
static Status store_plan(Replay *r, const char *name, const Plan *p, Err *err) {
    Status st = plan_validate(p, &r->pm, err);
    if (st) return err_wrap(err, "plan '%.64s'", name);
    return session_set_plan(r->out, name, p, err);
}

/* === Actions === */

/* One context policy (ppl, calib, eval, the workbench): a length above the
 * model's declared context runs, with a warning appended to the summary. */
static void warn_context(const Replay *r, const char *what, int64_t n, char *sum, size_t cap) {
    int64_t ctx = r->m->cfg.max_seq_len;
    size_t at = strlen(sum);
    if (ctx > 0 && n > ctx && at < cap)
        snprintf(sum + at, cap - at, " (warning: %s %" PRId64 " is above the model's context %" PRId64 ")", what, n, ctx);
}

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


static Status act_calibrate(Replay *r, const cJSON *a, cJSON *logged, char *sum, size_t cap, Err *err) {
    const char *text = json_string(a, "text");
    if (!text) return err_set(err, ST_ERR_ARG, "calibrate needs a 'text' argument");
    ReplayCalibArgs ca;
    replay_calib_args_default(&ca);
    Status st;
    int64_t v;
    if ((st = a_int(a, "samples", CALIB_SAMPLES_MIN, CALIB_SAMPLES_MAX, -1, &ca.samples, err))) return st;
    if ((st = a_int(a, "seqlen", CALIB_SEQLEN_MIN, CALIB_SEQLEN_MAX, -1, &ca.seqlen, err))) return st;
    if ((st = a_int(a, "seed", 0, (int64_t)1 << 52, -1, &ca.seed, err))) return st;
    if ((st = a_int(a, "group", CALIB_GROUP_MIN, CALIB_GROUP_MAX, -1, &ca.group, err))) return st;
    if ((st = a_int(a, "topk", CALIB_TOPK_MIN, CALIB_TOPK_MAX, -1, &ca.topk, err))) return st;
    if ((st = a_int(a, "sensitivity", 0, 1, -1, &v, err))) return st;
    ca.sensitivity = (int)v;
    if ((st = a_int(a, "sens_exact", 0, 1, 0, &v, err))) return st;
    ca.sens_exact = (int)v;
    if ((st = a_int(a, "h", 0, 1, 1, &v, err))) return st;
    ca.no_h = !v;
    if ((st = a_int(a, "from", 0, (int64_t)1 << 40, 0, &ca.tok_from, err))) return st;
    if ((st = a_int(a, "kept", 1, 1 << 24, -1, &ca.kept, err))) return st;
    ca.mode = json_string(a, "mode");
    TextBuf *t;
    if ((st = get_text(r, text, &t, err))) return st;
    char stats[4096];
    snprintf(stats, sizeof stats, "%s/replay-%" PRId64 ".stats", r->o->work_dir, ++r->n_calib);
    qstats_close(&r->sf);
    r->have_stats = 0;
    SessionCalib sc;
    if ((st = replay_calibrate(r->m, text, t->data, t->len, &ca, stats, r->pool, &sc, err))) return st;
    if ((st = session_set_calib(r->out, &sc, err))) return st;
    if ((st = qstats_open(stats, r->m, &r->sf, err))) return st;
    r->have_stats = 1;
    cJSON_DeleteItemFromObjectCaseSensitive(logged, "stats");
    cJSON_AddStringToObject(logged, "stats", stats);
    char part[48] = "";
    if (ca.tok_from) snprintf(part, sizeof part, " from token %" PRId64, ca.tok_from);
    snprintf(sum, cap, "%" PRId64 " x %" PRId64 " tokens of %s%s (seed %" PRIu64 ") -> %s", sc.samples, sc.seqlen, text,
             part, sc.seed, stats);
    warn_context(r, "seqlen", sc.seqlen, sum, cap);
    return ST_OK;
}

static Status act_load_stats(Replay *r, const cJSON *a, char *sum, size_t cap, Err *err) {
    const char *p = json_string(a, "stats");
    if (!p) return err_set(err, ST_ERR_ARG, "load_stats needs a 'stats' argument");
    char full[4096];
    resolve_path(r, p, full, sizeof full);
    qstats_close(&r->sf);
    r->have_stats = 0;
    Status st = qstats_open(full, r->m, &r->sf, err);
    if (st) return st;
    r->have_stats = 1;
    SessionCalib sc = *session_calib(r->out);
    sc.stats = full;
    if (!sc.present) sc.text = r->sf.cs->params.text_path;
    snprintf(sum, cap, "%s", full);
    return session_set_calib(r->out, &sc, err);
}

static Status act_apply_preset(Replay *r, const cJSON *a, cJSON *logged, char *sum, size_t cap, Err *err) {
    const char *preset = json_string(a, "preset");
    if (!preset) return err_set(err, ST_ERR_ARG, "apply_preset needs a 'preset' argument");
    const char *name = json_string(a, "plan");
    if (!name) name = preset;
    PresetOpts po;
    preset_opts_default(&po);
    Status st;
    int64_t v;
    if ((st = a_int(a, "group", 0, 1 << 20, po.group, &po.group, err))) return st;
    if ((st = a_int(a, "sym", -1, 1, po.sym, &v, err))) return st;
    po.sym = (int)v;
    if ((st = a_int(a, "seed", 0, (int64_t)1 << 52, (int64_t)po.seed, &v, err))) return st;
    po.seed = (uint64_t)v;
    if ((st = a_int(a, "random_k", 0, 1 << 20, po.random_k, &po.random_k, err))) return st;
    if ((st = a_int(a, "act_static", 0, 1, po.act_static, &v, err))) return st;
    po.act_static = (int)v;
    if ((st = a_int(a, "act_skip_first", 0, 1, po.act_skip_first, &v, err))) return st;
    po.act_skip_first = (int)v;
    if ((st = a_int(a, "fix_groups", 0, 1, po.fix_groups, &v, err))) return st;
    po.fix_groups = (int)v;
    const cJSON *al = json_get(a, "alpha");
    if (cJSON_IsNumber(al)) po.alpha = (float)al->valuedouble;
    const char *sf = json_string(a, "spike_format");
    if (sf) {
        int f = qformat_parse(sf);
        if (f < 0) return err_set(err, ST_ERR_ARG, "spike_format '%.32s' is not a format", sf);
        po.spike_fmt = (QFormat)f;
    }
    /* Spike sites: recorded ones, else the top spike_k of the current statistics. */
    char **sites = NULL;
    int64_t n_sites = 0;
    const cJSON *sl = json_get(a, "spikes");
    int64_t spike_k;
    if ((st = a_int(a, "spike_k", 0, 1 << 10, 0, &spike_k, err))) return st;
    if (cJSON_IsArray(sl)) {
        int64_t n = cJSON_GetArraySize(sl);
        sites = core_calloc((size_t)(n ? n : 1), sizeof *sites);
        if (!sites) return err_set(err, ST_ERR_NOMEM, "spikes");
        for (const cJSON *e = sl->child; e; e = e->next) {
            if (!cJSON_IsString(e)) {
                st = err_set(err, ST_ERR_ARG, "spikes: expected strings like \"1.down\"");
                goto done;
            }
            sites[n_sites++] = e->valuestring;
        }
    } else if (spike_k > 0) {
        if (!r->have_stats) return err_set(err, ST_ERR_STATE, "spike_k needs calibration statistics (calibrate first)");
        if ((st = spikes_top_sites(r->sf.cs, spike_k, &sites, &n_sites, err))) return st;
        cJSON *arr = cJSON_CreateStringArray((const char *const *)sites, (int)n_sites);
        if (arr) cJSON_AddItemToObject(logged, "spikes_ranked", arr);
    }
    po.spikes = (const char *const *)sites;
    po.n_spikes = n_sites;
    if (!po.random_k) po.random_k = n_sites;
    Plan p;
    st = plan_preset(&p, preset, &po, &r->pm, err);
    if (!st) {
        snprintf(p.name, sizeof p.name, "%s", name);
        st = before_edit(r, name, err);
        if (!st) st = store_plan(r, name, &p, err);
        if (!st) st = session_set_current(r->out, name, err);
    }
    plan_done(&p);
    snprintf(sum, cap, "plan '%s' = %s", name, preset);
done:
    if (sites && !cJSON_IsArray(sl))
        for (int64_t i = 0; i < n_sites; i++) free(sites[i]);
    free(sites);
    return st;
}

/* A rule's entry from the action's {fields, entry} through plan_json, so
 * actions spell entries exactly as plan files do. */
static Status rule_from_args(const cJSON *a, const char *pattern, PlanRule *out, Err *err) {
    const cJSON *e = json_get(a, "entry");
    if (e && !cJSON_IsObject(e)) return err_set(err, ST_ERR_ARG, "'entry' must be an object");
    cJSON *wrap = cJSON_CreateObject(), *rules = cJSON_CreateArray();
    cJSON *rule = e ? cJSON_Duplicate(e, 1) : cJSON_CreateObject();
    Status st = ST_OK;
    if (!wrap || !rules || !rule) {
        cJSON_Delete(wrap);
        cJSON_Delete(rules);
        cJSON_Delete(rule);
        return err_set(err, ST_ERR_NOMEM, "rule");
    }
    cJSON_AddNumberToObject(wrap, "schema_version", PLAN_JSON_SCHEMA_VERSION);
    cJSON_AddItemToObject(wrap, "rules", rules);
    cJSON_AddItemToArray(rules, rule);
    cJSON_DeleteItemFromObjectCaseSensitive(rule, "pattern");
    cJSON_AddStringToObject(rule, "pattern", pattern);
    const cJSON *f = json_get(a, "fields");
    if (f) {
        cJSON_DeleteItemFromObjectCaseSensitive(rule, "fields");
        cJSON_AddItemToObject(rule, "fields", cJSON_Duplicate(f, 1));
    }
    Plan tmp;
    char where[64];
    snprintf(where, sizeof where, "args");
    st = plan_json_parse(wrap, where, NULL, &tmp, err);
    if (!st && tmp.n_rules != 1) st = err_set(err, ST_ERR_ARG, "args: no rule");
    if (!st) *out = tmp.rules[0];
    plan_done(&tmp);
    cJSON_Delete(wrap);
    return st;
}

/* The sites a rule pattern names on the model, matched as plan_resolve
 * matches (a one-rule plan): marks (n_layers * PLAN_NPROJ, 1 = named) for
 * "LAYERS.PROJS" patterns, *end = PE_END_EMBED / PE_END_OUTPUT for "embed" /
 * "output" (else -1). A layer the model lacks is ST_ERR_ARG naming the
 * pattern. */
static Status pattern_sites(const Replay *r, const char *pat, unsigned char *marks, int *end, Err *err) {
    Plan one;
    plan_init(&one);
    PlanEntry e;
    plan_entry_default(&e);
    PlanResolved res = {0};
    Status st = plan_add_rule(&one, pat, PF_ALL, &e, err);
    if (!st) st = plan_resolve(&one, &r->pm, &res, err);
    if (!st) {
        *end = res.embed.src[0] == 0 ? PE_END_EMBED : res.output.src[0] == 0 ? PE_END_OUTPUT : -1;
        for (int64_t i = 0; i < res.n_layers * PLAN_NPROJ; i++) marks[i] = res.lin[i].src[0] == 0;
    } else if (!strncmp(err->detail, "rule 1 ", 7)) { /* the one-rule plan's numbering means nothing here */
        char d[sizeof err->detail];
        snprintf(d, sizeof d, "%s", err->detail + 7);
        err_set(err, st, "pattern %s", d);
    }
    plan_resolved_done(&res);
    plan_done(&one);
    return st;
}

/* set_rule / set_cell: the plan is edited as the workbench's Plan view edits
 * it, through quant/plan_edit.h: each pattern's sites get the action's
 * fields (plan_edit_apply on them as a marked set, or plan_edit_apply_end
 * for the embedding and the head), with the editor's consistency rules and
 * group fallbacks, and the plan is stored as the editor stores it
 * (plan_edit_to_plan). same_edit: a later rule of one editor edit (no new
 * undo step). */
static Status act_set_rule(Replay *r, const cJSON *a, int cell, int same_edit, char *sum, size_t cap, Err *err) {
    const char *name = plan_arg(r, a);
    if (!name) return err_set(err, ST_ERR_STATE, "no plan to edit (apply a preset first)");
    if (session_find_plan(r->out, name) < 0) return err_set(err, ST_ERR_ARG, "no plan named '%.64s'", name);
    char pats[64][64];
    int64_t n = 0;
    Status st;
    if (cell) {
        int64_t layer;
        if ((st = a_int(a, "layer", 0, 1 << 20, -1, &layer, err))) return st;
        const char *proj = json_string(a, "proj");
        if (layer < 0 || !proj) return err_set(err, ST_ERR_ARG, "set_cell needs 'layer' and 'proj'");
        snprintf(pats[n++], sizeof pats[0], "%" PRId64 ".%s", layer, proj);
    } else {
        const char *p = json_string(a, "pattern");
        const cJSON *pl = json_get(a, "patterns");
        if (p && strlen(p) >= sizeof pats[0]) return err_set(err, ST_ERR_ARG, "pattern longer than 63 bytes");
        if (p) snprintf(pats[n++], sizeof pats[0], "%s", p);
        if (cJSON_IsArray(pl))
            for (const cJSON *e = pl->child; e; e = e->next) {
                if (!cJSON_IsString(e) || n == 64 || strlen(e->valuestring) >= sizeof pats[0])
                    return err_set(err, ST_ERR_ARG, "'patterns' must be at most 64 strings of < 64 bytes (use "
                                   "more set_rule actions sharing an \"edit\" id)");
                snprintf(pats[n++], sizeof pats[0], "%s", e->valuestring);
            }
        if (n == 0) return err_set(err, ST_ERR_ARG, "set_rule needs 'pattern' or 'patterns'");
    }
    Plan p;
    if ((st = session_get_plan(r->out, name, &p, err))) {
        plan_done(&p);
        return st;
    }
    PlanEdit pe;
    st = plan_edit_init(&pe, &r->pm, &p, err);
    plan_done(&p);
    if (st) return err_wrap(err, "plan '%.64s'", name);
    unsigned char *marks = core_calloc((size_t)(r->pm.n_layers * PLAN_NPROJ) + 1, 1);
    if (!marks) st = err_set(err, ST_ERR_NOMEM, "plan '%.64s'", name);
    for (int64_t i = 0; i < n && !st; i++) {
        PlanRule ru;
        int end = -1;
        if ((st = rule_from_args(a, pats[i], &ru, err))) break;
        st = pattern_sites(r, pats[i], marks, &end, err);
        if (!st && end < 0) st = plan_edit_apply(&pe, PE_MARKED, 0, 0, marks, ru.fields, &ru.e, NULL, err);
        else if (!st && (ru.fields & ~(unsigned)(PF_FMT | PF_GROUP)))
            st = err_set(err, ST_ERR_ARG, "'%s' takes only the fields format and group", pats[i]);
        else if (!st) st = plan_edit_apply_end(&pe, (PeEnd)end, ru.fields, &ru.e, NULL, err);
        if (st) err_wrap(err, "plan '%.64s'", name);
    }
    Plan q;
    plan_init(&q);
    if (!st) st = plan_edit_to_plan(&pe, &q, err);
    if (!st && !same_edit) st = before_edit(r, name, err);
    if (!st) st = store_plan(r, name, &q, err);
    plan_done(&q);
    plan_edit_done(&pe);
    free(marks);
    snprintf(sum, cap, "plan '%s': %s%s", name, pats[0], n > 1 ? " ..." : "");
    return st;
}

static Status act_remove_rule(Replay *r, const cJSON *a, char *sum, size_t cap, Err *err) {
    const char *name = plan_arg(r, a);
    if (!name || session_find_plan(r->out, name) < 0)
        return err_set(err, ST_ERR_ARG, "no plan named '%.64s'", name ? name : "(current)");
    int64_t idx;
    Status st = a_int(a, "index", 0, 1 << 30, -1, &idx, err);
    if (st) return st;
    if (idx < 0) return err_set(err, ST_ERR_ARG, "remove_rule needs 'index'");
    Plan p;
    if ((st = session_get_plan(r->out, name, &p, err))) {
        plan_done(&p);
        return st;
    }
    st = plan_remove_rule(&p, idx, err);
    if (!st) st = before_edit(r, name, err);
    if (!st) st = store_plan(r, name, &p, err);
    plan_done(&p);
    snprintf(sum, cap, "plan '%s': rule %" PRId64 " removed", name, idx);
    return st;
}

static Status act_set_plan(Replay *r, const cJSON *a, char *sum, size_t cap, Err *err) {
    const char *name = json_string(a, "plan");
    const cJSON *j = json_get(a, "json");
    if (!name || !cJSON_IsObject(j)) return err_set(err, ST_ERR_ARG, "set_plan needs 'plan' and a 'json' object");
    Plan p;
    Status st = plan_json_parse(j, "args.json", &r->pm, &p, err);
    if (!st) st = before_edit(r, name, err);
    if (!st) st = store_plan(r, name, &p, err);
    if (!st) st = session_set_current(r->out, name, err);
    plan_done(&p);
    snprintf(sum, cap, "plan '%s' set", name);
    return st;
}

static Status act_plan_admin(Replay *r, const char *act, const cJSON *a, char *sum, size_t cap, Err *err) {
    const char *from = json_string(a, "from"), *to = json_string(a, "to");
    if (!strcmp(act, "rename_plan")) {
        snprintf(sum, cap, "'%s' -> '%s'", from ? from : "?", to ? to : "?");
        return session_rename_plan(r->out, from, to, err);
    }
    if (!strcmp(act, "copy_plan")) {
        if (!to) return err_set(err, ST_ERR_ARG, "copy_plan needs 'from' and 'to'");
        Plan p;
        Status st = session_get_plan(r->out, from, &p, err);
        if (!st) {
            snprintf(p.name, sizeof p.name, "%s", to);
            st = session_set_plan(r->out, to, &p, err);
        }
        plan_done(&p);
        snprintf(sum, cap, "'%s' -> '%s'", from ? from : "?", to);
        return st;
    }
    const char *name = json_string(a, "plan");
    if (!name || session_find_plan(r->out, name) < 0)
        return err_set(err, ST_ERR_ARG, "no plan named '%.64s'", name ? name : "(null)");
    snprintf(sum, cap, "'%s'", name);
    if (!strcmp(act, "delete_plan")) return session_delete_plan(r->out, name, err);
    return session_set_current(r->out, name, err);
}

/* === Evaluation and its check === */

static Status get_ref(Replay *r, TextBuf *t, const EvalOpts *eo, EvalRef **out, Err *err) {
    for (int64_t i = 0; i < r->n_refs; i++)
        if (!strcmp(r->refs[i].text, t->path) && r->refs[i].ctx == eo->n_ctx && r->refs[i].chunks == eo->max_chunks &&
            r->refs[i].numerics == eo->numerics) {
            *out = r->refs[i].ref;
            return ST_OK;
        }
    RefEntry re = {.ctx = eo->n_ctx, .chunks = eo->max_chunks, .numerics = eo->numerics};
    Status st = eval_ref_get(r->m, t->data, t->len, eo, r->o->cache_dir, r->pool, NULL, &re.ref, NULL, err);
    if (st) return err_wrap(err, "%s", t->path);
    RefEntry *nr = realloc(r->refs, (size_t)(r->n_refs + 1) * sizeof *nr);
    re.text = core_strdup(t->path);
    if (!nr || !re.text) {
        if (nr) r->refs = nr;
        free(re.text);
        eval_ref_free(re.ref);
        return err_set(err, ST_ERR_NOMEM, "eval reference");
    }
    r->refs = nr;
    r->refs[r->n_refs++] = re;
    *out = re.ref;
    return ST_OK;
}

typedef enum { CMP_EXACT, CMP_REL, CMP_KLD, CMP_TOP1, CMP_LAYER } CmpKind;

static void cmp_value(Replay *r, int64_t k, const char *what, double rec, double now, CmpKind kind, int same_threads,
                      double tokens) {
    ReplayReport *rep = r->rep;
    rep->n_compared++;
    if (isnan(rec) && isnan(now)) return;
    double tol = 0;
    if (!same_threads) switch (kind) {
        case CMP_EXACT: tol = 0; break;
        case CMP_REL: tol = 1e-4 * fabs(rec); break;
        case CMP_KLD: tol = 1e-5 + 1e-3 * fabs(rec); break;
        case CMP_TOP1: tol = tokens > 0 ? fmax(1e-3, 1.0 / tokens) : 1e-3; break;
        case CMP_LAYER: tol = 1e-6 + 1e-3 * fabs(rec); break;
        }
    int ok = tol == 0 ? rec == now : fabs(now - rec) <= tol;
    if (ok) return;
    ReplayDiff *d = add_diff(rep);
    if (!d) return;
    d->result = k;
    snprintf(d->what, sizeof d->what, "%s", what);
    d->recorded = rec;
    d->replayed = now;
    d->tol = tol;
}

/* Compares recorded result k (1-based; JSON object) with the replay's. */
static void check_result(Replay *r, int64_t k, const cJSON *rec, const cJSON *now) {
    const cJSON *rm = json_get(rec, "metrics"), *nm = json_get(now, "metrics");
    double rt = json_number(rec, "threads");
    int same = rt == (double)r->rep->threads;
    static const struct { const char *k; CmpKind kind; } KEYS[] = {
        {"ppl", CMP_REL}, {"ppl_base", CMP_REL}, {"kld_mean", CMP_KLD}, {"kld_median", CMP_KLD},
        {"kld_p90", CMP_KLD}, {"kld_p99", CMP_KLD}, {"kld_max", CMP_KLD}, {"top1_agree", CMP_TOP1},
        {"bpw", CMP_EXACT}, {"bytes", CMP_EXACT}, {"chunks", CMP_EXACT}, {"tokens_scored", CMP_EXACT},
    };
    const char *rp = json_string(rec, "plan"), *np = json_string(now, "plan");
    if (!rp) rp = "?";
    if (!np) np = "?";
    if (strcmp(rp, np)) {
        ReplayDiff *d = add_diff(r->rep);
        if (d) {
            d->result = k;
            snprintf(d->what, sizeof d->what, "plan");
            snprintf(d->text, sizeof d->text, "recorded '%.64s', replayed '%.64s'", rp, np);
        }
    }
    double tokens = json_number(rm, "tokens_scored");
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        cmp_value(r, k, KEYS[i].k, json_number(rm, KEYS[i].k), json_number(nm, KEYS[i].k), KEYS[i].kind, same, tokens);
    const cJSON *rl = json_get(rm, "layer_rel_err"), *nl = json_get(nm, "layer_rel_err");
    int rn = cJSON_IsArray(rl) ? cJSON_GetArraySize(rl) : 0, nn = cJSON_IsArray(nl) ? cJSON_GetArraySize(nl) : 0;
    if (rn != nn) {
        ReplayDiff *d = add_diff(r->rep);
        if (d) {
            d->result = k;
            snprintf(d->what, sizeof d->what, "layer_rel_err");
            snprintf(d->text, sizeof d->text, "recorded %d layers, replayed %d", rn, nn);
        }
        return;
    }
    for (int i = 0; i < rn; i++) {
        const cJSON *a = cJSON_GetArrayItem(rl, i), *b = cJSON_GetArrayItem(nl, i);
        char what[32];
        snprintf(what, sizeof what, "layer_rel_err[%d]", i);
        cmp_value(r, k, what, cJSON_IsNumber(a) ? a->valuedouble : NAN, cJSON_IsNumber(b) ? b->valuedouble : NAN,
                  CMP_LAYER, same, tokens);
    }
}

static Status act_evaluate(Replay *r, const cJSON *a, char *sum, size_t cap, Err *err) {
    const char *name = plan_arg(r, a), *text = json_string(a, "text"), *gguf = json_string(a, "gguf");
    if (gguf) { /* a shipped file is named by its file name, as in the workbench and eval */
        const char *slash = strrchr(gguf, '/');
        name = slash ? slash + 1 : gguf;
    }
    if (!name) return err_set(err, ST_ERR_STATE, "no plan to evaluate");
    if (!text) return err_set(err, ST_ERR_ARG, "evaluate needs a 'text' argument");
    TextBuf *t;
    Status st = get_text(r, text, &t, err);
    if (st) return st;
    EvalSpec es;
    evaluate_spec_init(&es, r->m, t->data, t->len);
    if ((st = a_int(a, "ctx", 4, 1 << 20, es.opts.n_ctx, &es.opts.n_ctx, err))) return st;
    if ((st = a_int(a, "chunks", 0, (int64_t)1 << 40, 0, &es.opts.max_chunks, err))) return st;
    const char *nm = json_string(a, "numerics"); /* absent in sessions written before it existed: exact */
    if (nm && !numerics_parse(nm, &es.opts.numerics))
        return err_set(err, ST_ERR_ARG, "evaluate: numerics '%s' is not exact or llamacpp", nm);
    es.opts.speed = r->o->speed;
    es.pool = r->pool;
    Plan p;
    plan_init(&p);
    Evaluation ev;
    memset(&ev, 0, sizeof ev);
    char full[4096];
    if (gguf) {
        resolve_path(r, gguf, full, sizeof full);
        es.gguf_path = full;
    } else {
        if ((st = session_get_plan(r->out, name, &p, err))) goto done;
        es.plan = &p;
        if (r->have_stats) es.stats = (QModelStats){r->sf.cs, r->sf.h};
    }
    EvalRef *ref = NULL;
    if ((st = get_ref(r, t, &es.opts, &ref, err))) goto done;
    es.ref = ref;
    if ((st = evaluate(&es, &ev, err))) goto done;
    const EvalResult *res = &ev.res;
    SessionEvalInfo info = {.plan = name, .text = text, .text_hash = t->hash, .ctx = es.opts.n_ctx,
                            .chunks = es.opts.max_chunks, .threads = r->rep->threads, .plan_eval = gguf ? NULL : &p,
                            .gguf = gguf};
    if ((st = session_add_eval(r->out, &info, res, ev.qm, NULL, err))) goto done;
    r->n_eval++;
    snprintf(sum, cap, "plan '%s' on %s: ppl %.6f (base %.6f), kld %.6g, top-1 %.4f, %.3f bpw", name, text, res->ppl,
             res->ppl_base, res->kld_mean, res->top1_agree, res->bpw);
    warn_context(r, "ctx", es.opts.n_ctx, sum, cap);
    if (r->o->check && r->rec_results) {
        const cJSON *rec = cJSON_GetArrayItem(r->rec_results, (int)(r->n_eval - 1));
        const cJSON *all = json_get(session_json(r->out), "results");
        const cJSON *now = cJSON_GetArrayItem(all, cJSON_GetArraySize(all) - 1);
        if (rec) check_result(r, r->n_eval, rec, now);
    }
done:
    evaluation_done(&ev);
    plan_done(&p);
    return st;
}

/* auto_plan: the planner (analysis/planner.h) on the current statistics,
 * its request from the arguments; the plan is stored under "plan" (default
 * its own name) and made current. The site scales are measured on "text"
 * into the work directory (a replay reproduces them at the recorded thread
 * count) or, without text, the loss is uncalibrated. */
static Status act_auto_plan(Replay *r, const cJSON *a, cJSON *logged, char *sum, size_t cap, Err *err) {
    if (!r->have_stats) return err_set(err, ST_ERR_STATE, "auto_plan needs calibration statistics (calibrate first)");
    PlannerRequest rq;
    planner_request_default(&rq);
    Status st;
    const cJSON *v = json_get(a, "bpw");
    if (cJSON_IsNumber(v)) rq.bpw = v->valuedouble;
    int64_t i64;
    if ((st = a_int(a, "bytes", 0, (int64_t)1 << 50, 0, &i64, err))) return st;
    rq.bytes = (size_t)i64;
    if ((rq.bpw > 0) == (rq.bytes > 0)) return err_set(err, ST_ERR_ARG, "auto_plan needs one of 'bpw' or 'bytes'");
    const char *t = json_string(a, "target");
    if (t) {
        int k = planner_target_parse(t);
        if (k < 0) return err_set(err, ST_ERR_ARG, "target '%.32s' is not any or llamacpp", t);
        rq.target = (PlannerTarget)k;
    }
    const char *meth = json_string(a, "method");
    if (meth) {
        int k = qmethod_parse(meth);
        if (k != QM_RTN && k != QM_GPTQ) return err_set(err, ST_ERR_ARG, "method '%.32s' is not rtn or gptq", meth);
        rq.method = k;
    }
    const char *price = json_string(a, "price");
    if (price && strcmp(price, "own") && strcmp(price, "rtn"))
        return err_set(err, ST_ERR_ARG, "price '%.32s' is not own or rtn", price);
    rq.price_method = !price || !strcmp(price, "own");
    if ((st = a_int(a, "oerr_rows", 0, 1 << 30, rq.oerr_rows, &rq.oerr_rows, err))) return st;
    const cJSON *spv = json_get(a, "speed");
    if (cJSON_IsNumber(spv) && spv->valuedouble > 0) { /* the machine's speed table, from the cache dir */
        rq.min_decode_tps = spv->valuedouble;
        rq.speed_cache = r->o->cache_dir;
    }
    const cJSON *fl = json_get(a, "formats");
    for (const cJSON *e = cJSON_IsArray(fl) ? fl->child : NULL; e; e = e->next) {
        int f = cJSON_IsString(e) ? qformat_parse(e->valuestring) : -1;
        if (f < 0) return err_set(err, ST_ERR_ARG, "formats: expected format names like \"int4\"");
        rq.formats |= 1u << f;
    }
    const cJSON *gl = json_get(a, "groups");
    if (cJSON_IsArray(gl)) {
        rq.n_groups = 0;
        for (const cJSON *e = gl->child; e && rq.n_groups < 4; e = e->next) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 4 || e->valuedouble > 65536)
                return err_set(err, ST_ERR_ARG, "groups: expected group sizes in [4, 65536]");
            rq.groups[rq.n_groups++] = (int64_t)e->valuedouble;
        }
    }
    const char *text = json_string(a, "text");
    char cal[4200];
    if (text) {
        TextBuf *tb;
        if ((st = get_text(r, text, &tb, err))) return st;
        rq.text = tb->data;
        rq.text_len = tb->len;
        if ((st = a_int(a, "ctx", 0, 1 << 20, 0, &rq.ctx, err))) return st;
        if ((st = a_int(a, "chunks", 0, (int64_t)1 << 40, rq.chunks, &rq.chunks, err))) return st;
        snprintf(cal, sizeof cal, "%s/replay-%" PRId64 ".sitecal", r->o->work_dir, r->n_calib);
        rq.sitecal = cal;
        rq.cache_dir = r->o->cache_dir;
        cJSON_DeleteItemFromObjectCaseSensitive(logged, "text_hash");
        char hx[24];
        snprintf(hx, sizeof hx, "%016" PRIx64, tb->hash);
        cJSON_AddStringToObject(logged, "text_hash", hx);
    }
    PlannerResult res;
    int measured = 0;
    if ((st = planner_run(r->m, &r->sf, &rq, r->pool, NULL, &res, &measured, err))) return st;
    const char *name = json_string(a, "plan");
    if (!name) name = res.plan.name;
    char nm[64];
    snprintf(nm, sizeof nm, "%s", name);
    snprintf(res.plan.name, sizeof res.plan.name, "%s", nm);
    st = before_edit(r, nm, err);
    if (!st) st = store_plan(r, nm, &res.plan, err);
    if (!st) st = session_set_current(r->out, nm, err);
    cJSON_DeleteItemFromObjectCaseSensitive(logged, "predicted_loss");
    cJSON_AddNumberToObject(logged, "predicted_loss", res.sol.loss);
    snprintf(sum, cap, "plan '%s' = auto (%s, %s%s): predicted loss %.6g%s", nm, planner_target_name(rq.target),
             rq.bpw > 0 ? "bpw" : "bytes", text ? ", calibrated" : "", res.sol.loss,
             measured ? ", site scales measured" : "");
    planner_result_done(&res);
    return st;
}

Status replay_log_auto_plan(Session *s, const char *plan, const PlannerRequest *rq, const char *text_path,
                            double predicted_loss, Err *err) {
    SessionArg args[18];
    int n = 0;
    const char *fmts[QF_COUNT];
    int nf = 0;
    for (int f = 0; f < QF_COUNT; f++)
        if (rq->formats & (1u << f)) fmts[nf++] = qformat_traits((QFormat)f)->name;
    char groups[64] = "[", hx[24];
    for (int g = 0; g < rq->n_groups && g < 4; g++)
        snprintf(groups + strlen(groups), sizeof groups - strlen(groups), "%s%lld", g ? ", " : "", (long long)rq->groups[g]);
    strcat(groups, "]");
    args[n++] = SESSION_ARG_STR("plan", plan);
    if (rq->bpw > 0) args[n++] = SESSION_ARG_NUM("bpw", rq->bpw);
    else args[n++] = SESSION_ARG_INT("bytes", (int64_t)rq->bytes);
    args[n++] = SESSION_ARG_STR("target", planner_target_name(rq->target));
    if (rq->method >= 0) args[n++] = SESSION_ARG_STR("method", qmethod_name((QMethod)rq->method));
    if (nf) args[n++] = SESSION_ARG_STRS("formats", fmts, nf);
    args[n++] = SESSION_ARG_JSON("groups", groups);
    args[n++] = SESSION_ARG_STR("price", rq->price_method ? "own" : "rtn");
    args[n++] = SESSION_ARG_INT("oerr_rows", rq->oerr_rows);
    if (rq->min_decode_tps > 0) args[n++] = SESSION_ARG_NUM("speed", rq->min_decode_tps);
    if (rq->text && text_path) {
        snprintf(hx, sizeof hx, "%016" PRIx64, hash_bytes(HASH_SEED, rq->text, rq->text_len));
        args[n++] = SESSION_ARG_STR("text", text_path);
        args[n++] = SESSION_ARG_STR("text_hash", hx);
        args[n++] = SESSION_ARG_INT("ctx", rq->ctx);
        args[n++] = SESSION_ARG_INT("chunks", rq->chunks);
    }
    args[n++] = SESSION_ARG_NUM("predicted_loss", predicted_loss);
    return session_log_action(s, "auto_plan", args, n, err);
}

/* Recorded plans against the replayed ones of the same name, site by site. */
static void check_plans(Replay *r, const Session *in) {
    int64_t n = session_n_plans(in);
    for (int64_t i = 0; i < n; i++) {
        const char *name = session_plan_name(in, i);
        ReplayDiff *d;
        if (session_find_plan(r->out, name) < 0) {
            if ((d = add_diff(r->rep))) {
                snprintf(d->what, sizeof d->what, "plan '%.64s'", name);
                snprintf(d->text, sizeof d->text, "recorded, but the replay did not produce it");
            }
            continue;
        }
        Plan a, b;
        PlanResolved ra = {0}, rb = {0};
        Err e2;
        err_init(&e2);
        Status s1 = session_get_plan(in, name, &a, &e2);
        if (!s1) s1 = plan_resolve(&a, &r->pm, &ra, &e2);
        Status s2 = session_get_plan(r->out, name, &b, &e2);
        if (!s2) s2 = plan_resolve(&b, &r->pm, &rb, &e2);
        if (s1 || s2) {
            if ((d = add_diff(r->rep))) {
                snprintf(d->what, sizeof d->what, "plan '%.64s'", name);
                snprintf(d->text, sizeof d->text, "cannot resolve: %.150s", e2.detail);
            }
        } else {
            int64_t n_sites = ra.n_layers * PLAN_NPROJ;
            r->rep->n_compared += n_sites + 2;
            for (int64_t s = -2; s < n_sites; s++) {
                const PlanEntry *ea = s == -2 ? &ra.embed.e : s == -1 ? &ra.output.e : &ra.lin[s].e;
                const PlanEntry *eb = s == -2 ? &rb.embed.e : s == -1 ? &rb.output.e : &rb.lin[s].e;
                char ca[48], cb[48];
                plan_entry_code(ea, ca, sizeof ca);
                plan_entry_code(eb, cb, sizeof cb);
                if (!strcmp(ca, cb) && ea->smooth_alpha == eb->smooth_alpha && ea->gptq.damp == eb->gptq.damp) continue;
                if (!(d = add_diff(r->rep))) break;
                char site[32];
                if (s == -2) snprintf(site, sizeof site, "embed");
                else if (s == -1) snprintf(site, sizeof site, "output");
                else snprintf(site, sizeof site, "%" PRId64 ".%s", s / PLAN_NPROJ, plan_proj_name((int)(s % PLAN_NPROJ)));
                snprintf(d->what, sizeof d->what, "plan '%.64s' site %s", name, site);
                snprintf(d->text, sizeof d->text, "recorded %s, replayed %s", ca, cb);
            }
        }
        plan_resolved_done(&ra);
        plan_resolved_done(&rb);
        plan_done(&a);
        plan_done(&b);
    }
}

/* === Driver === */

/* Every action name replay knows: those it runs, then those recorded for the
 * record only (a view change) that it skips. Any other name is an error, so
 * a misspelt "evalute" does not pass as a replay with nothing evaluated. */
static const char *const ACTION_NAMES[] = {"calibrate",   "load_stats", "apply_preset", "set_rule",    "set_cell",
                                           "remove_rule", "set_plan",   "undo",         "redo",        "rename_plan",
                                           "copy_plan",   "delete_plan", "select_plan", "evaluate",    "auto_plan",
                                           "view",        "calib_settings"};
#define N_ACTION_NAMES ((int)(sizeof ACTION_NAMES / sizeof *ACTION_NAMES))

static Status unknown_action(const char *name, Err *err) {
    int c = suggest_closest(name, ACTION_NAMES, N_ACTION_NAMES);
    char hint[64] = "";
    if (c >= 0) snprintf(hint, sizeof hint, " (did you mean '%s'?)", ACTION_NAMES[c]);
    return err_set(err, ST_ERR_FORMAT, "unknown action '%s'%s", name, hint);
}

static Status run_action(Replay *r, int64_t i, const cJSON *act, Err *err) {
    const char *name = json_string(act, "action");
    if (!name) return err_set(err, ST_ERR_FORMAT, "missing 'action' name");
    int k = 0;
    while (k < N_ACTION_NAMES && strcmp(name, ACTION_NAMES[k]) != 0) k++;
    if (k == N_ACTION_NAMES) return unknown_action(name, err);
    const cJSON *args = json_get(act, "args");
    if (!cJSON_IsObject(args)) args = act; /* flat form */
    cJSON *logged = cJSON_Duplicate(args, 1);
    if (!logged) return err_set(err, ST_ERR_NOMEM, "action");
    if (args == act) {
        cJSON_DeleteItemFromObjectCaseSensitive(logged, "action");
        cJSON_DeleteItemFromObjectCaseSensitive(logged, "time");
    }
    char sum[400] = "";
    const char *s2 = NULL;
    Status st = ST_OK;
    int known = 1, edit = 0;
    if (!strcmp(name, "calibrate")) st = act_calibrate(r, args, logged, sum, sizeof sum, err);
    else if (!strcmp(name, "load_stats")) st = act_load_stats(r, args, sum, sizeof sum, err);
    else if (!strcmp(name, "apply_preset")) st = act_apply_preset(r, args, logged, sum, sizeof sum, err);
    else if (!strcmp(name, "set_rule") || !strcmp(name, "set_cell")) {
        /* One editor edit may log several rules (a marked set, group fallbacks):
         * consecutive ones with the same "edit" id (else the same time stamp)
         * are one undo step, as in the editor. */
        char key[80];
        const cJSON *ek = json_get(args, "edit");
        const char *tm = json_string(act, "time");
        if (cJSON_IsNumber(ek)) snprintf(key, sizeof key, "edit %.0f", ek->valuedouble);
        else snprintf(key, sizeof key, "time %s", tm ? tm : "");
        int after_edit = r->edit_key[0] != 0;
        int same = after_edit && !strcmp(key, r->edit_key) && (cJSON_IsNumber(ek) || tm);
        st = act_set_rule(r, args, !strcmp(name, "set_cell"), same, sum, sizeof sum, err);
        snprintf(r->edit_key, sizeof r->edit_key, "%s", key);
        edit = 1;
        /* The output logs an edit id on every rule: without one its rules
         * would be grouped by their time stamps, which replay writes alike
         * (to the second) for separate steps, and a replay of the output
         * would undo them as one. A recorded id is kept unless it would
         * join the previous step. */
        double id = cJSON_IsNumber(ek) ? ek->valuedouble : -1;
        if (same) id = r->edit_id;
        else if (!cJSON_IsNumber(ek) || (after_edit && id == r->edit_id)) id = r->edit_id + 1;
        r->edit_id = id;
        const cJSON *lk = json_get(logged, "edit");
        if (!st && !(cJSON_IsNumber(lk) && lk->valuedouble == id) && !json_set_num(logged, "edit", id))
            st = err_set(err, ST_ERR_NOMEM, "action");
    }
    else if (!strcmp(name, "remove_rule")) st = act_remove_rule(r, args, sum, sizeof sum, err);
    else if (!strcmp(name, "set_plan")) st = act_set_plan(r, args, sum, sizeof sum, err);
    else if (!strcmp(name, "undo") || !strcmp(name, "redo")) {
        st = undo_redo(r, !strcmp(name, "redo"), &s2, err);
        if (s2) snprintf(sum, sizeof sum, "%s", s2);
    } else if (!strcmp(name, "rename_plan") || !strcmp(name, "copy_plan") || !strcmp(name, "delete_plan") ||
               !strcmp(name, "select_plan"))
        st = act_plan_admin(r, name, args, sum, sizeof sum, err);
    else if (!strcmp(name, "evaluate")) st = act_evaluate(r, args, sum, sizeof sum, err);
    else if (!strcmp(name, "auto_plan")) st = act_auto_plan(r, args, logged, sum, sizeof sum, err);
    else known = 0;
    if (!edit) r->edit_key[0] = '\0';
    if (!st) st = session_log_action_json(r->out, name, logged, err);
    cJSON_Delete(logged);
    if (st) return st;
    if (known) {
        r->rep->n_run++;
    } else {
        r->rep->n_skipped++;
        snprintf(sum, sizeof sum, "not replayable: recorded, skipped");
    }
    if (r->o->on_action) r->o->on_action(r->o->user, i, name, sum);
    return ST_OK;
}

Status replay_run(const char *path, const ReplayOpts *o, ReplayReport *rep, Err *err) {
    memset(rep, 0, sizeof *rep);
    if (!o->work_dir) return err_set(err, ST_ERR_ARG, "replay: a work directory is required");
    Replay r;
    memset(&r, 0, sizeof r);
    plan_undo_init(&r.hist, sizeof(Snapshot), 0, snap_release);
    r.edit_id = -1;
    r.o = o;
    r.path = path;
    r.rep = rep;
    char *text = NULL;
    size_t len = 0;
    cJSON *script = NULL;
    Session *in = NULL;
    Status st = file_read_all(path, REPLAY_MAX_SCRIPT, &text, &len, err);
    if (st) return st;
    /* A session (schema_version) or a hand-written action list. */
    const cJSON *actions = NULL;
    const char *model_path = NULL, *tok = NULL;
    if ((st = json_parse_text(text, len, path, &script, err))) goto fail;
    if (cJSON_IsObject(script) && json_get(script, "schema_version")) {
        if ((st = session_parse(text, len, path, &in, err))) goto fail;
        actions = json_get(session_json(in), "actions");
        model_path = session_model(in)->path;
        tok = session_model(in)->tokenizer;
        r.rec_results = json_get(session_json(in), "results");
    } else if (cJSON_IsArray(script)) {
        actions = script;
    } else if (cJSON_IsObject(script) && cJSON_IsArray(json_get(script, "actions"))) {
        actions = json_get(script, "actions");
        model_path = json_string(script, "model");
        tok = json_string(script, "tokenizer");
    } else {
        st = err_set(err, ST_ERR_FORMAT, "%s: neither a session nor an action list ({\"model\": ..., \"actions\": [...]})",
                     path);
        goto fail;
    }
    if (!cJSON_IsArray(actions)) {
        st = err_set(err, ST_ERR_FORMAT, "%s: no 'actions' array", path);
        goto fail;
    }
    if (o->model_path) {
        model_path = o->model_path;
        tok = o->tokenizer;
    }
    if (!model_path) {
        st = err_set(err, ST_ERR_ARG, "%s: names no model: pass --model M", path);
        goto fail;
    }
    char mp[4096], tp[4096];
    if (o->model_path) snprintf(mp, sizeof mp, "%s", model_path);
    else resolve_path(&r, model_path, mp, sizeof mp);
    if (tok && !o->model_path) resolve_path(&r, tok, tp, sizeof tp);
    else if (tok) snprintf(tp, sizeof tp, "%s", tok);
    ModelLoadOpts mo = {.tokenizer_path = tok ? tp : NULL};
    if ((st = model_load(mp, &mo, &r.m, err))) goto fail;
    r.pm = (PlanModel)PLAN_MODEL_FROM_CONFIG(&r.m->cfg);
    if (in) {
        char msg[512];
        SessionModelCheck mc = session_check_model(in, r.m, msg, sizeof msg);
        if (mc != SESSION_MODEL_OK) {
            if (o->check && !o->model_path) {
                st = err_set(err, ST_ERR_MISMATCH, "%s: %s", path, msg);
                goto fail;
            }
            add_note(rep, "%s", msg);
            if (o->check) add_note(rep, "--check on another model: results are compared against another model's");
        }
    }
    /* Threads: as recorded (so results must be bit-identical) unless asked otherwise. */
    int threads = o->threads;
    const cJSON *r0 = r.rec_results ? cJSON_GetArrayItem(r.rec_results, 0) : NULL;
    double rt = r0 ? json_number(r0, "threads") : NAN;
    if (isfinite(rt) && rt > 0) rep->recorded_threads = (int64_t)rt;
    if (threads <= 0 && rep->recorded_threads > 0) threads = (int)rep->recorded_threads;
    if ((st = pool_new(threads, &r.pool, err))) goto fail;
    rep->threads = pool_size(r.pool);
    if ((st = session_new(r.m, tok, &r.out, err))) goto fail;
    rep->out = r.out;
    if (in) {
        char *v = session_view_get(in);
        if (v) session_view_set(r.out, v, err);
        free(v);
    }
    rep->n_actions = cJSON_GetArraySize(actions);
    int64_t i = 0;
    for (const cJSON *act = actions->child; act; act = act->next, i++) {
        if (!cJSON_IsObject(act)) {
            st = err_set(err, ST_ERR_FORMAT, "%s: actions[%" PRId64 "]: expected an object", path, i);
            goto fail;
        }
        if ((st = run_action(&r, i, act, err))) {
            const char *nm = json_string(act, "action");
            err_wrap(err, "%s: actions[%" PRId64 "] (%.32s)", path, i, nm ? nm : "?");
            goto fail;
        }
    }
    if (o->check && in) {
        int64_t nrec = cJSON_IsArray(r.rec_results) ? cJSON_GetArraySize(r.rec_results) : 0;
        if (nrec != r.n_eval) {
            ReplayDiff *d = add_diff(rep);
            if (d) {
                snprintf(d->what, sizeof d->what, "results");
                snprintf(d->text, sizeof d->text, "recorded %" PRId64 " results, the replay produced %" PRId64, nrec,
                         r.n_eval);
            }
        }
        check_plans(&r, in);
    }
fail:
    plan_undo_done(&r.hist);
    for (int64_t k = 0; k < r.n_texts; k++) {
        free(r.texts[k].path);
        free(r.texts[k].data);
    }
    free(r.texts);
    for (int64_t k = 0; k < r.n_refs; k++) {
        free(r.refs[k].text);
        eval_ref_free(r.refs[k].ref);
    }
    free(r.refs);
    qstats_close(&r.sf);
    pool_free(r.pool);
    model_free(r.m);
    session_free(in);
    cJSON_Delete(script);
    free(text);
    return st;
}
