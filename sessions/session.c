#include "sessions/session.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analysis/eval.h"
#include "core/alloc.h"
#include "core/atomicfile.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "model/model.h"
#include "quant/plan.h"
#include "sessions/json.h"
#include "sessions/plan_json.h"

#ifndef QS_BUILD_VERSION
#define QS_BUILD_VERSION "dev"
#endif

#define SESSION_MAX_BYTES ((size_t)256 << 20)

struct Session {
    cJSON *root;             /* source of truth; everything below points into it */
    SessionModelRef model;
    SessionCalib calib;
    SessionResult *results;  /* (n_results) */
    int64_t n_results;
    SessionAction *actions;  /* (n_actions) */
    int64_t n_actions;
};


/* === Validation and typed views (rebuilt from the tree after every change) === */

static Status check_model(Session *s, const cJSON *mo, const char *where, Err *err) {
    SessionModelRef *r = &s->model;
    memset(r, 0, sizeof *r);
    if (!cJSON_IsObject(mo)) return err_set(err, ST_ERR_FORMAT, "%s: missing object member 'model'", where);
    Status st;
    if ((st = json_get_str(mo, "path", 1, &r->path, where, "model", err))) return st;
    if ((st = json_get_str(mo, "tokenizer", 0, &r->tokenizer, where, "model", err))) return st;
    if ((st = json_get_hex(mo, "fingerprint", 1, &r->fingerprint, where, "model", err))) return st;
    const char *arch;
    if ((st = json_get_str(mo, "arch", 0, &arch, where, "model", err))) return st;
    snprintf(r->arch, sizeof r->arch, "%s", arch ? arch : "");
    const int64_t BIG = (int64_t)1 << 52;
    struct { const char *k; int64_t *v; } ints[] = {
        {"file_bytes", &r->file_bytes}, {"n_layers", &r->n_layers}, {"dim", &r->dim},
        {"hidden_dim", &r->hidden_dim}, {"n_heads", &r->n_heads}, {"n_kv_heads", &r->n_kv_heads},
        {"vocab_size", &r->vocab_size}, {"head_dim", &r->head_dim},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((st = json_get_int(mo, ints[i].k, 0, BIG, 0, ints[i].v, where, "model", err))) return st;
    const cJSON *tv = json_get(mo, "tied_embeddings");
    if (tv && !cJSON_IsBool(tv)) return err_set(err, ST_ERR_FORMAT, "%s: model.tied_embeddings: expected true/false", where);
    r->tied_embeddings = cJSON_IsTrue(tv);
    return ST_OK;
}

static Status check_calib(Session *s, const cJSON *co, const char *where, Err *err) {
    SessionCalib *c = &s->calib;
    memset(c, 0, sizeof *c);
    if (!co || cJSON_IsNull(co)) return ST_OK;
    if (!cJSON_IsObject(co)) return err_set(err, ST_ERR_FORMAT, "%s: calibration: expected an object", where);
    c->present = 1;
    Status st;
    const char *P = "calibration", *mode;
    const int64_t BIG = (int64_t)1 << 52;
    int64_t seed, sens;
    if ((st = json_get_str(co, "text", 0, &c->text, where, P, err))) return st;
    if ((st = json_get_hex(co, "text_hash", 0, &c->text_hash, where, P, err))) return st;
    if ((st = json_get_int(co, "text_bytes", 0, BIG, 0, &c->text_bytes, where, P, err))) return st;
    if ((st = json_get_int(co, "samples", 0, BIG, 0, &c->samples, where, P, err))) return st;
    if ((st = json_get_int(co, "seqlen", 0, BIG, 0, &c->seqlen, where, P, err))) return st;
    if ((st = json_get_int(co, "seed", 0, BIG, 0, &seed, where, P, err))) return st;
    if ((st = json_get_int(co, "group", 0, BIG, 0, &c->group, where, P, err))) return st;
    if ((st = json_get_int(co, "topk", 0, BIG, 0, &c->topk, where, P, err))) return st;
    if ((st = json_get_str(co, "mode", 0, &mode, where, P, err))) return st;
    if ((st = json_get_str(co, "stats", 0, &c->stats, where, P, err))) return st;
    if ((st = json_get_int(co, "kept", 0, BIG, 0, &c->kept, where, P, err))) return st;
    if ((st = json_get_int(co, "sensitivity_sites", 0, BIG, 0, &c->sens_sites, where, P, err))) return st;
    if ((st = json_get_int(co, "sensitivity_sites_done", 0, c->sens_sites, 0, &c->sens_sites_done, where, P, err)))
        return st;
    const cJSON *sv = json_get(co, "sensitivity");
    if (sv && !cJSON_IsBool(sv)) return err_set(err, ST_ERR_FORMAT, "%s: calibration.sensitivity: expected true/false", where);
    sens = cJSON_IsTrue(sv);
    c->seed = (uint64_t)seed;
    c->sensitivity = (int)sens;
    snprintf(c->mode, sizeof c->mode, "%s", mode ? mode : "");
    return ST_OK;
}

/* Plan names seen so far: an open-addressing hash set, so checking n plans
 * for repeated names is linear (it compared each with all before it). */
typedef struct NameIndex {
    const char **name; /* (mask + 1) borrowed from the JSON */
    int64_t *at;       /* (mask + 1) index of the plan holding the name */
    size_t mask;
} NameIndex;

/* Adds name (plan i); returns -1 when new, the earlier index when repeated. */
static int64_t names_add(NameIndex *ix, const char *name, int64_t i) {
    size_t h = (size_t)hash_bytes(HASH_SEED, name, strlen(name)) & ix->mask;
    for (; ix->name[h]; h = (h + 1) & ix->mask)
        if (!strcmp(ix->name[h], name)) return ix->at[h];
    ix->name[h] = name;
    ix->at[h] = i;
    return -1;
}

static Status check_plan_items(const cJSON *pl, NameIndex *names, const char *where, Err *err) {
    int64_t i = 0;
    for (const cJSON *e = pl->child; e; e = e->next, i++) {
        char path[96];
        snprintf(path, sizeof path, "plans[%" PRId64 "]", i);
        if (!cJSON_IsObject(e)) return err_set(err, ST_ERR_FORMAT, "%s: %s: expected an object", where, path);
        const char *name;
        Status st = json_get_str(e, "name", 1, &name, where, path, err);
        if (st) return st;
        if (!name[0]) return err_set(err, ST_ERR_FORMAT, "%s: %s.name: empty", where, path);
        int64_t j = names_add(names, name, i);
        if (j >= 0)
            return err_set(err, ST_ERR_FORMAT, "%s: %s.name: '%.64s' repeats plans[%" PRId64 "]", where, path,
                           name, j);
        const cJSON *po = json_get(e, "plan");
        if (!cJSON_IsObject(po)) return err_set(err, ST_ERR_FORMAT, "%s: %s: missing object member 'plan'", where, path);
        char w[600];
        snprintf(w, sizeof w, "%s: %s.plan", where, path);
        Plan tmp;
        st = plan_json_parse(po, w, NULL, &tmp, err);
        plan_done(&tmp);
        if (st) return st;
    }
    return ST_OK;
}

static Status check_plans(const cJSON *root, const char *where, Err *err) {
    const cJSON *pl = json_get(root, "plans");
    if (!pl || cJSON_IsNull(pl)) return ST_OK;
    if (!cJSON_IsArray(pl)) return err_set(err, ST_ERR_FORMAT, "%s: plans: expected an array", where);
    size_t cap = 16;
    while (cap < (size_t)cJSON_GetArraySize(pl) * 2) cap *= 2;
    NameIndex names = {core_calloc(cap, sizeof(char *)), core_calloc(cap, sizeof(int64_t)), cap - 1};
    Status st = names.name && names.at ? check_plan_items(pl, &names, where, err)
                                       : err_set(err, ST_ERR_NOMEM, "%s: plans", where);
    free(names.name);
    free(names.at);
    if (st) return st;
    const cJSON *cur = json_get(root, "current_plan");
    if (cur && !cJSON_IsNull(cur) && !cJSON_IsString(cur))
        return err_set(err, ST_ERR_FORMAT, "%s: current_plan: expected a string", where);
    return ST_OK;
}

static Status check_results(Session *s, const cJSON *root, const char *where, Err *err) {
    const cJSON *rl = json_get(root, "results");
    free(s->results);
    s->results = NULL;
    s->n_results = 0;
    if (!rl || cJSON_IsNull(rl)) return ST_OK;
    if (!cJSON_IsArray(rl)) return err_set(err, ST_ERR_FORMAT, "%s: results: expected an array", where);
    int64_t n = cJSON_GetArraySize(rl);
    if (n > 0 && !(s->results = core_calloc((size_t)n, sizeof *s->results)))
        return err_set(err, ST_ERR_NOMEM, "%s: results", where);
    const int64_t BIG = (int64_t)1 << 52;
    int64_t i = 0;
    for (const cJSON *e = rl->child; e; e = e->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "results[%" PRId64 "]", i);
        SessionResult *r = &s->results[i];
        s->n_results = i + 1;
        if (!cJSON_IsObject(e)) return err_set(err, ST_ERR_FORMAT, "%s: %s: expected an object", where, path);
        Status st;
        if ((st = json_get_int(e, "id", 0, BIG, i + 1, &r->id, where, path, err))) return st;
        if ((st = json_get_str(e, "plan", 1, &r->plan, where, path, err))) return st;
        if ((st = json_get_str(e, "time", 0, &r->time, where, path, err))) return st;
        if ((st = json_get_str(e, "build", 0, &r->build, where, path, err))) return st;
        if ((st = json_get_int(e, "threads", 0, 1 << 20, 0, &r->threads, where, path, err))) return st;
        const cJSON *so = json_get(e, "settings");
        if (so && !cJSON_IsObject(so)) return err_set(err, ST_ERR_FORMAT, "%s: %s.settings: expected an object", where, path);
        if (so) {
            char sp[80];
            snprintf(sp, sizeof sp, "%s.settings", path);
            if ((st = json_get_str(so, "text", 0, &r->text, where, sp, err))) return st;
            if ((st = json_get_str(so, "gguf", 0, &r->gguf, where, sp, err))) return st;
            if ((st = json_get_hex(so, "text_hash", 0, &r->text_hash, where, sp, err))) return st;
            if ((st = json_get_int(so, "ctx", 0, BIG, 0, &r->ctx, where, sp, err))) return st;
            if ((st = json_get_int(so, "chunks", 0, BIG, 0, &r->chunks, where, sp, err))) return st;
        }
        const cJSON *mo = json_get(e, "metrics");
        if (!cJSON_IsObject(mo)) return err_set(err, ST_ERR_FORMAT, "%s: %s: missing object member 'metrics'", where, path);
        for (const cJSON *m = mo->child; m; m = m->next)
            if (!cJSON_IsNumber(m) && !cJSON_IsNull(m) && !cJSON_IsArray(m) && !cJSON_IsString(m) && !cJSON_IsBool(m))
                return err_set(err, ST_ERR_FORMAT, "%s: %s.metrics.%.64s: unexpected object", where, path, m->string);
        const struct { const char *k; double *v; } nums[] = {
            {"ppl", &r->ppl}, {"ppl_base", &r->ppl_base}, {"kld_mean", &r->kld_mean},
            {"kld_median", &r->kld_median}, {"kld_p90", &r->kld_p90}, {"kld_p99", &r->kld_p99},
            {"kld_max", &r->kld_max}, {"top1_agree", &r->top1_agree}, {"bpw", &r->bpw},
            {"prefill_tps", &r->prefill_tps}, {"decode_tps", &r->decode_tps}, {"seconds", &r->seconds},
            {"quantize_seconds", &r->quantize_seconds},
        };
        for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) *nums[k].v = json_number(mo, nums[k].k);
        double b = json_number(mo, "bytes"), t = json_number(mo, "tokens_scored");
        r->bytes = isfinite(b) && b >= 0 && b < 9e15 ? (int64_t)b : 0;
        r->tokens_scored = isfinite(t) && t >= 0 && t < 9e15 ? (int64_t)t : 0;
        r->cancelled = cJSON_IsTrue(json_get(mo, "cancelled"));
    }
    return ST_OK;
}

static Status check_actions(Session *s, const cJSON *root, const char *where, Err *err) {
    const cJSON *al = json_get(root, "actions");
    free(s->actions);
    s->actions = NULL;
    s->n_actions = 0;
    if (!al || cJSON_IsNull(al)) return ST_OK;
    if (!cJSON_IsArray(al)) return err_set(err, ST_ERR_FORMAT, "%s: actions: expected an array", where);
    int64_t n = cJSON_GetArraySize(al);
    if (n > 0 && !(s->actions = core_calloc((size_t)n, sizeof *s->actions)))
        return err_set(err, ST_ERR_NOMEM, "%s: actions", where);
    int64_t i = 0;
    for (const cJSON *e = al->child; e; e = e->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "actions[%" PRId64 "]", i);
        if (!cJSON_IsObject(e)) return err_set(err, ST_ERR_FORMAT, "%s: %s: expected an object", where, path);
        Status st;
        if ((st = json_get_str(e, "action", 1, &s->actions[i].name, where, path, err))) return st;
        if ((st = json_get_str(e, "time", 0, &s->actions[i].time, where, path, err))) return st;
        const cJSON *a = json_get(e, "args");
        if (a && !cJSON_IsObject(a) && !cJSON_IsNull(a))
            return err_set(err, ST_ERR_FORMAT, "%s: %s.args: expected an object", where, path);
        s->n_actions = i + 1;
    }
    return ST_OK;
}

/* Validates the whole tree and rebuilds the typed views. */
static Status session_refresh(Session *s, const char *where, Err *err) {
    const cJSON *root = s->root;
    if (!cJSON_IsObject(root)) return err_set(err, ST_ERR_FORMAT, "%s: not a JSON object", where);
    const cJSON *v = json_get(root, "schema_version");
    if (!v) return err_set(err, ST_ERR_FORMAT, "%s: missing 'schema_version' (not a qscope session?)", where);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return err_set(err, ST_ERR_FORMAT, "%s: schema_version: expected an integer", where);
    if (v->valuedouble > SESSION_SCHEMA_VERSION)
        return err_set(err, ST_ERR_UNSUPPORTED,
                       "%s: schema_version %.0f was written by a newer qscope; this build reads version %d "
                       "(the file was not changed)", where, v->valuedouble, SESSION_SCHEMA_VERSION);
    if (v->valuedouble < 1)
        return err_set(err, ST_ERR_UNSUPPORTED,
                       "%s: schema_version %.0f is not a session version (versions start at 1)", where,
                       v->valuedouble);
    const cJSON *kind = json_get(root, "kind");
    /* a plan file (sessions/plan_json.h) has a schema_version too: say what it is */
    if (!kind && !json_get(root, "model") && !json_get(root, "actions") &&
        (json_get(root, "rules") || json_get(root, "default")))
        return err_set(err, ST_ERR_FORMAT,
                       "%s: this is a plan, not a session (a plan goes to `qscope eval MODEL --plan FILE`; "
                       "--session takes a session file, or a new name to start one)", where);
    if (kind && (!cJSON_IsString(kind) || strcmp(kind->valuestring, "qscope-session")))
        return err_set(err, ST_ERR_FORMAT, "%s: kind: expected \"qscope-session\"", where);
    const cJSON *view = json_get(root, "view");
    if (view && !cJSON_IsObject(view) && !cJSON_IsNull(view))
        return err_set(err, ST_ERR_FORMAT, "%s: view: expected an object", where);
    Status st;
    if ((st = check_model(s, json_get(root, "model"), where, err))) return st;
    if ((st = check_calib(s, json_get(root, "calibration"), where, err))) return st;
    if ((st = check_plans(root, where, err))) return st;
    if ((st = check_results(s, root, where, err))) return st;
    return check_actions(s, root, where, err);
}

/* After a change made here: the tree is ours, so a failure is a bug or ENOMEM. */
static Status refresh_after(Session *s, Err *err) { return session_refresh(s, "session", err); }

/* === Life cycle === */

static cJSON *model_ref_json(const Model *m, const char *tokenizer) {
    cJSON *mo = cJSON_CreateObject();
    if (!mo) return NULL;
    const ModelConfig *c = &m->cfg;
    int ok = json_set_str(mo, "path", m->path ? m->path : "") && json_set_str(mo, "tokenizer", tokenizer) &&
             json_set_hex(mo, "fingerprint", m->fingerprint) && json_set_num(mo, "file_bytes", (double)m->file_bytes) &&
             json_set_str(mo, "arch", c->arch) && json_set_num(mo, "n_layers", (double)c->n_layers) &&
             json_set_num(mo, "dim", (double)c->dim) && json_set_num(mo, "hidden_dim", (double)c->hidden_dim) &&
             json_set_num(mo, "n_heads", (double)c->n_heads) && json_set_num(mo, "n_kv_heads", (double)c->n_kv_heads) &&
             json_set_num(mo, "vocab_size", (double)c->vocab_size) && json_set_num(mo, "head_dim", (double)c->head_dim) &&
             json_set(mo, "tied_embeddings", cJSON_CreateBool(c->tied_embeddings != 0));
    if (!ok) {
        cJSON_Delete(mo);
        return NULL;
    }
    return mo;
}

Status session_new(const Model *m, const char *tokenizer, Session **out, Err *err) {
    *out = NULL;
    Session *s = core_calloc(1, sizeof *s);
    if (!s) return err_set(err, ST_ERR_NOMEM, "session");
    char now[32];
    s->root = cJSON_CreateObject();
    int ok = s->root && json_set_num(s->root, "schema_version", SESSION_SCHEMA_VERSION) &&
             json_set_str(s->root, "kind", "qscope-session") && json_set_str(s->root, "created", session_time_now(now, sizeof now)) &&
             json_set_str(s->root, "build", session_build_version()) && json_set(s->root, "model", model_ref_json(m, tokenizer)) &&
             json_set(s->root, "calibration", cJSON_CreateNull()) && json_set(s->root, "current_plan", cJSON_CreateNull()) &&
             json_set(s->root, "plans", cJSON_CreateArray()) && json_set(s->root, "results", cJSON_CreateArray()) &&
             json_set(s->root, "view", cJSON_CreateObject()) && json_set(s->root, "actions", cJSON_CreateArray());
    if (!ok) {
        session_free(s);
        return err_set(err, ST_ERR_NOMEM, "session");
    }
    Status st = refresh_after(s, err);
    if (st) {
        session_free(s);
        return st;
    }
    *out = s;
    return ST_OK;
}

void session_free(Session *s) {
    if (!s) return;
    cJSON_Delete(s->root);
    free(s->results);
    free(s->actions);
    free(s);
}

Status session_parse(const char *text, size_t len, const char *where, Session **out, Err *err) {
    *out = NULL;
    if (!where) where = "session";
    if (len == 0) return err_set(err, ST_ERR_FORMAT, "%s: empty file", where);
    cJSON *root;
    Status pst = json_parse_text(text, len, where, &root, err);
    if (pst) return pst;
    Session *s = core_calloc(1, sizeof *s);
    if (!s) {
        cJSON_Delete(root);
        return err_set(err, ST_ERR_NOMEM, "%s", where);
    }
    s->root = root;
    Status st = session_refresh(s, where, err);
    if (st) {
        session_free(s);
        return st;
    }
    *out = s;
    return ST_OK;
}

Status session_load(const char *path, Session **out, Err *err) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    Status st = file_read_all(path, SESSION_MAX_BYTES, &text, &len, err);
    if (st) return st;
    st = session_parse(text, len, path, out, err);
    free(text);
    return st;
}

Status session_write(const Session *s, char **out, size_t *len, Err *err) {
    *out = NULL;
    char *t = cJSON_Print(s->root);
    if (!t) return err_set(err, ST_ERR_NOMEM, "session: serialising");
    size_t n = strlen(t);
    char *b = malloc(n + 2);
    if (!b) {
        cJSON_free(t);
        return err_set(err, ST_ERR_NOMEM, "session: serialising");
    }
    memcpy(b, t, n);
    b[n] = '\n';
    b[n + 1] = '\0';
    cJSON_free(t);
    *out = b;
    if (len) *len = n + 1;
    return ST_OK;
}

/* === Atomic save === */

Status session_save(const Session *s, const char *path, Err *err) {
    char *buf = NULL;
    size_t len = 0;
    Status st = session_write(s, &buf, &len, err);
    if (st) return st;
    AtomicFile af;
    if (!(st = afile_open(&af, path, err))) {
        af.keep_backup = 1;
        if ((st = afile_write(&af, buf, len, err))) afile_abort(&af);
        else st = afile_commit(&af, err);
    }
    free(buf);
    return st;
}

/* === Model reference === */

const SessionModelRef *session_model(const Session *s) { return &s->model; }

SessionModelCheck session_check_model(const Session *s, const Model *m, char *msg, size_t cap) {
    const SessionModelRef *r = &s->model;
    const ModelConfig *c = &m->cfg;
    char tmp[8];
    if (!msg) {
        msg = tmp;
        cap = sizeof tmp;
    }
    if (r->n_layers != c->n_layers || r->dim != c->dim || r->hidden_dim != c->hidden_dim ||
        r->n_heads != c->n_heads || r->n_kv_heads != c->n_kv_heads || r->vocab_size != c->vocab_size ||
        (r->head_dim && r->head_dim != c->head_dim)) {
        snprintf(msg, cap,
                 "model %s has a different shape than the session's %s (layers %" PRId64 " vs %" PRId64
                 ", dim %" PRId64 " vs %" PRId64 ", hidden %" PRId64 " vs %" PRId64 ", vocab %" PRId64 " vs %" PRId64
                 "): its plans, statistics and results do not apply",
                 m->path ? m->path : "?", r->path, c->n_layers, r->n_layers, c->dim, r->dim, c->hidden_dim,
                 r->hidden_dim, c->vocab_size, r->vocab_size);
        return SESSION_MODEL_SHAPE;
    }
    if (r->fingerprint != m->fingerprint) {
        snprintf(msg, cap,
                 "model %s changed since the session was saved (fingerprint %016" PRIx64 " -> %016" PRIx64
                 "): its statistics and results no longer apply; recalibrate before evaluating",
                 m->path ? m->path : r->path, r->fingerprint, m->fingerprint);
        return SESSION_MODEL_CHANGED;
    }
    if (cap) msg[0] = '\0';
    return SESSION_MODEL_OK;
}

SessionModelCheck session_model_status(const Session *s, const char *session_path, char *msg, size_t cap) {
    struct stat sb;
    const char *p = s->model.path;
    if (cap && msg) msg[0] = '\0';
    if (p[0] && stat(p, &sb) == 0) return SESSION_MODEL_OK;
    if (p[0] && p[0] != '/' && session_path) {
        const char *slash = strrchr(session_path, '/');
        if (slash) {
            char buf[4096];
            snprintf(buf, sizeof buf, "%.*s/%s", (int)(slash - session_path), session_path, p);
            if (stat(buf, &sb) == 0) return SESSION_MODEL_OK;
        }
    }
    if (msg && cap)
        snprintf(msg, cap,
                 "model file '%s' of the session is missing: plans and results are kept; pass the model's "
                 "new location (qscope MODEL --session S, or replay --model M) to work on", p);
    return SESSION_MODEL_MISSING;
}

Status session_set_model(Session *s, const Model *m, const char *tokenizer, Err *err) {
    if (!json_set(s->root, "model", model_ref_json(m, tokenizer))) return err_set(err, ST_ERR_NOMEM, "session: model");
    return refresh_after(s, err);
}

/* === Calibration === */

const SessionCalib *session_calib(const Session *s) { return &s->calib; }

Status session_set_calib(Session *s, const SessionCalib *c, Err *err) {
    cJSON *co = cJSON_CreateObject();
    int ok = co && json_set_str(co, "text", c->text) && json_set_hex(co, "text_hash", c->text_hash) &&
             json_set_num(co, "text_bytes", (double)c->text_bytes) && json_set_num(co, "samples", (double)c->samples) &&
             json_set_num(co, "seqlen", (double)c->seqlen) && json_set_num(co, "seed", (double)c->seed) &&
             json_set_str(co, "mode", c->mode) && json_set_num(co, "group", (double)c->group) &&
             json_set_num(co, "topk", (double)c->topk) && json_set(co, "sensitivity", cJSON_CreateBool(c->sensitivity)) &&
             json_set_str(co, "stats", c->stats);
    /* a cancelled calibration says so: partial, with the sequences it kept */
    if (ok && c->kept > 0)
        ok = json_set(co, "partial", cJSON_CreateBool(1)) && json_set_num(co, "kept", (double)c->kept);
    /* a cancelled sensitivity pass: the sites it kept (the stats file holds them; c resumes) */
    if (ok && c->sens_sites > 0 && c->sens_sites_done < c->sens_sites)
        ok = json_set(co, "sensitivity_partial", cJSON_CreateBool(1)) &&
             json_set_num(co, "sensitivity_sites", (double)c->sens_sites) &&
             json_set_num(co, "sensitivity_sites_done", (double)c->sens_sites_done);
    if (!ok) {
        cJSON_Delete(co);
        return err_set(err, ST_ERR_NOMEM, "session: calibration");
    }
    if (c->seed > ((uint64_t)1 << 52)) {
        cJSON_Delete(co);
        return err_set(err, ST_ERR_RANGE, "session: calibration seed %" PRIu64 " above 2^52", c->seed);
    }
    if (!json_set(s->root, "calibration", co)) return err_set(err, ST_ERR_NOMEM, "session: calibration");
    return refresh_after(s, err);
}

/* === Plans === */

static cJSON *plans_array(Session *s) {
    cJSON *pl = json_get(s->root, "plans");
    if (!cJSON_IsArray(pl)) {
        if (!json_set(s->root, "plans", cJSON_CreateArray())) return NULL;
        pl = json_get(s->root, "plans");
    }
    return pl;
}

int64_t session_n_plans(const Session *s) {
    const cJSON *pl = json_get(s->root, "plans");
    return cJSON_IsArray(pl) ? cJSON_GetArraySize(pl) : 0;
}

static cJSON *plan_item(const Session *s, int64_t i) {
    const cJSON *pl = json_get(s->root, "plans");
    if (!cJSON_IsArray(pl) || i < 0 || i >= cJSON_GetArraySize(pl)) return NULL;
    return cJSON_GetArrayItem(pl, (int)i);
}

const char *session_plan_name(const Session *s, int64_t i) {
    const cJSON *e = plan_item(s, i);
    return e ? json_string(e, "name") : NULL;
}

int64_t session_find_plan(const Session *s, const char *name) {
    if (!name) return -1;
    const cJSON *pl = json_get(s->root, "plans");
    if (!cJSON_IsArray(pl)) return -1;
    int64_t i = 0; /* one walk of the list (indexing each item walked it again) */
    for (const cJSON *e = pl->child; e; e = e->next, i++)
        if (!strcmp(json_string(e, "name"), name)) return i;
    return -1;
}

Status session_get_plan(const Session *s, const char *name, Plan *out, Err *err) {
    int64_t i = session_find_plan(s, name);
    if (i < 0) {
        plan_init(out);
        if (!name) return err_set(err, ST_ERR_ARG, "the session has no plans yet (make one in the workbench or with replay)");
        return err_set(err, ST_ERR_ARG, "session has no plan named '%.64s'", name);
    }
    char where[128];
    snprintf(where, sizeof where, "session: plans[%" PRId64 "].plan", i);
    return plan_json_parse(json_get(plan_item(s, i), "plan"), where, NULL, out, err);
}

Status session_set_plan(Session *s, const char *name, const Plan *p, Err *err) {
    if (!name || !name[0]) return err_set(err, ST_ERR_ARG, "session: a plan needs a name");
    cJSON *po = plan_json_build(p);
    if (!po) return err_set(err, ST_ERR_NOMEM, "session: plan '%.64s'", name);
    int64_t i = session_find_plan(s, name);
    if (i >= 0) {
        if (!json_set(plan_item(s, i), "plan", po)) return err_set(err, ST_ERR_NOMEM, "session: plan");
    } else {
        cJSON *e = cJSON_CreateObject(), *pl = plans_array(s);
        if (!e || !pl || !json_set_str(e, "name", name) || !json_set(e, "plan", po)) {
            if (!e || !pl) cJSON_Delete(po);
            cJSON_Delete(e);
            return err_set(err, ST_ERR_NOMEM, "session: plan");
        }
        if (!cJSON_AddItemToArray(pl, e)) {
            cJSON_Delete(e);
            return err_set(err, ST_ERR_NOMEM, "session: plan");
        }
    }
    return refresh_after(s, err);
}

Status session_rename_plan(Session *s, const char *from, const char *to, Err *err) {
    int64_t i = session_find_plan(s, from);
    if (i < 0) return err_set(err, ST_ERR_ARG, "rename_plan: no plan named '%.64s'", from ? from : "(null)");
    if (!to || !to[0]) return err_set(err, ST_ERR_ARG, "rename_plan: empty new name");
    if (session_find_plan(s, to) >= 0 && strcmp(from, to))
        return err_set(err, ST_ERR_ARG, "rename_plan: a plan named '%.64s' exists", to);
    const char *cur = session_current_plan(s);
    int was_current = cur && !strcmp(cur, from);
    if (!json_set_str(plan_item(s, i), "name", to)) return err_set(err, ST_ERR_NOMEM, "rename_plan");
    if (was_current && !json_set_str(s->root, "current_plan", to)) return err_set(err, ST_ERR_NOMEM, "rename_plan");
    return refresh_after(s, err);
}

Status session_delete_plan(Session *s, const char *name, Err *err) {
    int64_t i = session_find_plan(s, name);
    if (i < 0) return err_set(err, ST_ERR_ARG, "delete_plan: no plan named '%.64s'", name ? name : "(null)");
    const char *cur = session_current_plan(s);
    if (cur && !strcmp(cur, name) && !json_set(s->root, "current_plan", cJSON_CreateNull()))
        return err_set(err, ST_ERR_NOMEM, "delete_plan");
    cJSON_DeleteItemFromArray(json_get(s->root, "plans"), (int)i);
    return refresh_after(s, err);
}

const char *session_current_plan(const Session *s) { return json_string(s->root, "current_plan"); }

Status session_set_current(Session *s, const char *name, Err *err) {
    if (!json_set_str(s->root, "current_plan", name)) return err_set(err, ST_ERR_NOMEM, "session: current_plan");
    return ST_OK;
}

/* === Results === */

int64_t session_n_results(const Session *s) { return s->n_results; }

const SessionResult *session_result(const Session *s, int64_t i) {
    return i >= 0 && i < s->n_results ? &s->results[i] : NULL;
}

Status session_add_result(Session *s, const SessionEvalInfo *info, const char *metrics_json, int64_t *id,
                          Err *err) {
    cJSON *mo = metrics_json ? cJSON_Parse(metrics_json) : NULL;
    if (!cJSON_IsObject(mo)) {
        cJSON_Delete(mo);
        return err_set(err, ST_ERR_FORMAT, "session: evaluation metrics are not a JSON object");
    }
    int64_t next = 1;
    for (int64_t i = 0; i < s->n_results; i++)
        if (s->results[i].id >= next) next = s->results[i].id + 1;
    char now[32];
    cJSON *r = cJSON_CreateObject(), *so = cJSON_CreateObject();
    int ok = r && so && json_set_num(r, "id", (double)next) && json_set_str(r, "plan", info->plan ? info->plan : "") &&
             json_set_str(r, "time", session_time_now(now, sizeof now)) && json_set_str(r, "build", session_build_version()) &&
             json_set_num(r, "threads", (double)info->threads) && json_set_str(so, "text", info->text) &&
             json_set_hex(so, "text_hash", info->text_hash) && json_set_num(so, "ctx", (double)info->ctx) &&
             json_set_num(so, "chunks", (double)info->chunks) && (!info->gguf || json_set_str(so, "gguf", info->gguf));
    if (ok) {
        ok = json_set(r, "settings", so);
        so = NULL;
    }
    if (ok && info->plan_eval) {
        cJSON *pj = plan_json_build(info->plan_eval);
        ok = pj && json_set(r, "plan_json", pj);
    }
    if (ok) {
        ok = json_set(r, "metrics", mo);
        mo = NULL;
    }
    cJSON *rl = json_get(s->root, "results");
    if (ok && !cJSON_IsArray(rl)) {
        ok = json_set(s->root, "results", cJSON_CreateArray());
        rl = json_get(s->root, "results");
    }
    if (!ok || !cJSON_AddItemToArray(rl, r)) {
        cJSON_Delete(r);
        cJSON_Delete(so);
        cJSON_Delete(mo);
        return err_set(err, ST_ERR_NOMEM, "session: result");
    }
    if (id) *id = next;
    return refresh_after(s, err);
}

Status session_add_eval(Session *s, const SessionEvalInfo *info, const EvalResult *res, const QModel *qm, int64_t *id,
                        Err *err) {
    cJSON *mo = json_eval_result(res, qm, info->plan);
    int ok = mo != NULL;
    if (ok && qm && qm->site_rel_err && qm->n_layers > 0) {
        /* squared, the one "relative error" of quant, report and the Sensitivity view */
        int64_t n = qm->n_layers * PROJ_COUNT;
        double *e2 = malloc((size_t)n * sizeof *e2);
        for (int64_t i = 0; e2 && i < n; i++) e2[i] = qm->site_rel_err[i] * qm->site_rel_err[i];
        ok = e2 && json_set_nums(mo, "site_werr", e2, n);
        free(e2);
    }
    if (ok && qm && qm->seconds > 0) ok = json_set_num(mo, "quantize_seconds", qm->seconds); /* to an ulp or two */
    if (ok && qm && qm->site_seconds && qm->n_layers > 0)
        ok = json_set_nums(mo, "site_quantize_seconds", qm->site_seconds, qm->n_layers * PROJ_COUNT);
    /* Stored through its text, so the session holds the numbers its file
     * will (cJSON prints 15 digits when they read back within an epsilon):
     * a replay's check then compares like with like. */
    char *t = ok ? cJSON_PrintUnformatted(mo) : NULL;
    cJSON_Delete(mo);
    if (!t) return err_set(err, ST_ERR_NOMEM, "session: evaluation metrics");
    Status st = session_add_result(s, info, t, id, err);
    cJSON_free(t);
    return st;
}

int session_result_metric(const Session *s, int64_t i, const char *key, double *out) {
    const cJSON *rl = json_get(s->root, "results");
    if (!cJSON_IsArray(rl) || i < 0 || i >= cJSON_GetArraySize(rl)) return 0;
    const cJSON *v = json_get(json_get(cJSON_GetArrayItem(rl, (int)i), "metrics"), key);
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valuedouble;
    return 1;
}

int64_t session_result_array(const Session *s, int64_t i, const char *key, double *out, int64_t cap) {
    const cJSON *rl = json_get(s->root, "results");
    if (!cJSON_IsArray(rl) || i < 0 || i >= cJSON_GetArraySize(rl)) return 0;
    const cJSON *a = json_get(json_get(cJSON_GetArrayItem(rl, (int)i), "metrics"), key);
    if (!cJSON_IsArray(a)) return 0;
    int64_t n = 0;
    for (const cJSON *v = a->child; v; v = v->next, n++)
        if (n < cap) out[n] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    return n;
}

Status session_result_plan(const Session *s, int64_t i, Plan *out, Err *err) {
    plan_init(out);
    const cJSON *rl = json_get(s->root, "results");
    if (!cJSON_IsArray(rl) || i < 0 || i >= cJSON_GetArraySize(rl))
        return err_set(err, ST_ERR_ARG, "session has no result %" PRId64, i + 1);
    const cJSON *pj = json_get(cJSON_GetArrayItem(rl, (int)i), "plan_json");
    if (!cJSON_IsObject(pj)) return err_set(err, ST_ERR_ARG, "result %" PRId64 " has no stored plan", i + 1);
    char where[64];
    snprintf(where, sizeof where, "session: results[%" PRId64 "].plan_json", i);
    plan_done(out);
    return plan_json_parse(pj, where, NULL, out, err);
}

/* === View state === */

char *session_view_get(const Session *s) {
    const cJSON *v = json_get(s->root, "view");
    if (!cJSON_IsObject(v)) return core_strdup("{}");
    char *t = cJSON_PrintUnformatted(v);
    char *r = t ? core_strdup(t) : NULL;
    cJSON_free(t);
    return r;
}

Status session_view_set(Session *s, const char *json, Err *err) {
    cJSON *v = json ? cJSON_Parse(json) : NULL;
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        return err_set(err, ST_ERR_FORMAT, "session: view state is not a JSON object");
    }
    if (!json_set(s->root, "view", v)) return err_set(err, ST_ERR_NOMEM, "session: view");
    return ST_OK;
}

/* === Action log === */

int64_t session_n_actions(const Session *s) { return s->n_actions; }

const SessionAction *session_action(const Session *s, int64_t i) {
    return i >= 0 && i < s->n_actions ? &s->actions[i] : NULL;
}

char *session_action_args(const Session *s, int64_t i) {
    const cJSON *al = json_get(s->root, "actions");
    if (!cJSON_IsArray(al) || i < 0 || i >= cJSON_GetArraySize(al)) return NULL;
    const cJSON *a = json_get(cJSON_GetArrayItem(al, (int)i), "args");
    if (!cJSON_IsObject(a)) return core_strdup("{}");
    char *t = cJSON_PrintUnformatted(a);
    char *r = t ? core_strdup(t) : NULL;
    cJSON_free(t);
    return r;
}

static const cJSON *action_arg(const Session *s, int64_t i, const char *key) {
    const cJSON *al = json_get(s->root, "actions");
    if (!cJSON_IsArray(al) || i < 0 || i >= cJSON_GetArraySize(al)) return NULL;
    return json_get(json_get(cJSON_GetArrayItem(al, (int)i), "args"), key);
}

int session_action_arg_num(const Session *s, int64_t i, const char *key, double *out) {
    const cJSON *v = action_arg(s, i, key);
    if (cJSON_IsNumber(v)) *out = v->valuedouble;
    else if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else return 0;
    return 1;
}

const char *session_action_arg_str(const Session *s, int64_t i, const char *key) {
    const cJSON *v = action_arg(s, i, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

char *session_action_text(const Session *s, int64_t i) {
    const cJSON *al = json_get(s->root, "actions");
    if (!cJSON_IsArray(al) || i < 0 || i >= cJSON_GetArraySize(al)) return NULL;
    const cJSON *a = json_get(cJSON_GetArrayItem(al, (int)i), "args");
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = 0;
    const cJSON *v;
    if (!cJSON_IsObject(a)) a = NULL;
    cJSON_ArrayForEach(v, a) {
        char *js = NULL;
        const char *val;
        if (cJSON_IsString(v)) val = v->valuestring;
        else if (cJSON_IsNull(v)) val = "-";
        else val = js = cJSON_PrintUnformatted(v);
        if (!val) {
            free(out);
            return NULL;
        }
        size_t need = len + strlen(v->string) + strlen(val) + 3;
        if (need > cap) {
            while (cap < need) cap *= 2;
            char *g = realloc(out, cap);
            if (!g) {
                cJSON_free(js);
                free(out);
                return NULL;
            }
            out = g;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s=%s", len ? " " : "", v->string, val);
        cJSON_free(js);
    }
    return out;
}

/* Appends {time, action, args} (args taken over). */
static Status append_action(Session *s, const char *name, cJSON *args, Err *err) {
    char now[32];
    cJSON *a = cJSON_CreateObject();
    int ok = a && json_set_str(a, "time", session_time_now(now, sizeof now)) && json_set_str(a, "action", name);
    if (ok) {
        ok = json_set(a, "args", args);
        args = NULL;
    }
    cJSON *al = json_get(s->root, "actions");
    if (ok && !cJSON_IsArray(al)) {
        ok = json_set(s->root, "actions", cJSON_CreateArray());
        al = json_get(s->root, "actions");
    }
    if (!ok || !cJSON_AddItemToArray(al, a)) {
        cJSON_Delete(a);
        cJSON_Delete(args);
        return err_set(err, ST_ERR_NOMEM, "session: action '%.32s'", name);
    }
    return refresh_after(s, err);
}

Status session_log_action(Session *s, const char *name, const SessionArg *args, int64_t n, Err *err) {
    if (!name || !name[0]) return err_set(err, ST_ERR_ARG, "session: an action needs a name");
    cJSON *ao = cJSON_CreateObject();
    if (!ao) return err_set(err, ST_ERR_NOMEM, "session: action");
    for (int64_t i = 0; i < n; i++) {
        const SessionArg *a = &args[i];
        cJSON *v = NULL;
        switch (a->type) {
        case SARG_STR: v = a->s ? cJSON_CreateString(a->s) : cJSON_CreateNull(); break;
        case SARG_NUM: v = cJSON_CreateNumber(a->num); break;
        case SARG_INT: v = cJSON_CreateNumber((double)a->i); break;
        case SARG_BOOL: v = cJSON_CreateBool(a->i != 0); break;
        case SARG_JSON:
            v = a->s ? cJSON_Parse(a->s) : NULL;
            if (!v) {
                cJSON_Delete(ao);
                return err_set(err, ST_ERR_ARG, "session: action '%.32s': argument '%.32s' is not JSON", name,
                               a->key ? a->key : "?");
            }
            break;
        case SARG_STRS:
            v = cJSON_CreateArray();
            for (int64_t k = 0; v && k < a->i; k++) {
                cJSON *e = cJSON_CreateString(a->strs[k] ? a->strs[k] : "");
                if (!e || !cJSON_AddItemToArray(v, e)) {
                    cJSON_Delete(e);
                    cJSON_Delete(v);
                    v = NULL;
                }
            }
            break;
        }
        if (!a->key || !json_set(ao, a->key, v)) {
            if (!a->key) cJSON_Delete(v);
            cJSON_Delete(ao);
            return err_set(err, a->key ? ST_ERR_NOMEM : ST_ERR_ARG, "session: action '%.32s' arguments", name);
        }
    }
    return append_action(s, name, ao, err);
}

Status session_log_action_json(Session *s, const char *name, const cJSON *args, Err *err) {
    if (!name || !name[0]) return err_set(err, ST_ERR_ARG, "session: an action needs a name");
    if (args && !cJSON_IsObject(args)) return err_set(err, ST_ERR_ARG, "session: action '%.32s': args not an object", name);
    cJSON *a = args ? cJSON_Duplicate(args, 1) : cJSON_CreateObject();
    if (!a) return err_set(err, ST_ERR_NOMEM, "session: action '%.32s'", name);
    return append_action(s, name, a, err);
}

static const char *const FIELD_NAMES[PF_NFIELDS] = {"format", "group", "method", "act", "smooth"};

Status session_log_set_rule(Session *s, const char *plan, const char *pattern, unsigned fields,
                            const PlanEntry *e, Err *err) {
    return session_log_set_rule_edit(s, plan, pattern, fields, e, -1, err);
}

Status session_log_set_rule_edit(Session *s, const char *plan, const char *pattern, unsigned fields,
                                 const PlanEntry *e, int64_t edit, Err *err) {
    /* The entry's JSON comes from plan_json (one rule's keys), so the log
     * and the plan files spell entries the same way. */
    Plan tmp;
    plan_init(&tmp);
    Status st = plan_add_rule(&tmp, pattern, fields ? fields : PF_ALL, e, err);
    cJSON *po = st ? NULL : plan_json_build(&tmp);
    plan_done(&tmp);
    if (st) return st;
    if (!po) return err_set(err, ST_ERR_NOMEM, "session: set_rule");
    cJSON *rule = cJSON_DetachItemFromArray(json_get(po, "rules"), 0);
    cJSON_Delete(po);
    if (!rule) return err_set(err, ST_ERR_NOMEM, "session: set_rule");
    cJSON_DeleteItemFromObjectCaseSensitive(rule, "pattern");
    cJSON_DeleteItemFromObjectCaseSensitive(rule, "fields");
    cJSON *ao = cJSON_CreateObject(), *fl = cJSON_CreateArray();
    int ok = ao && fl;
    for (int k = 0; ok && k < PF_NFIELDS; k++)
        if ((fields ? fields : PF_ALL) & (1u << k)) {
            cJSON *f = cJSON_CreateString(FIELD_NAMES[k]);
            ok = f && cJSON_AddItemToArray(fl, f);
            if (!ok) cJSON_Delete(f);
        }
    if (ok) ok = json_set_str(ao, "plan", plan) && json_set_str(ao, "pattern", pattern);
    if (ok && edit >= 0) ok = json_set_num(ao, "edit", (double)edit);
    if (ok) {
        ok = json_set(ao, "fields", fl);
        fl = NULL;
    }
    if (ok) {
        ok = json_set(ao, "entry", rule);
        rule = NULL;
    }
    if (!ok) {
        cJSON_Delete(ao);
        cJSON_Delete(fl);
        cJSON_Delete(rule);
        return err_set(err, ST_ERR_NOMEM, "session: set_rule");
    }
    return append_action(s, "set_rule", ao, err);
}

/* === Helpers === */

const char *session_build_version(void) { return "qscope " QS_BUILD_VERSION; }

char *session_time_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

cJSON *session_json(const Session *s) { return s->root; }
