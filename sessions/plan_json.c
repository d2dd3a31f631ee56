/* Plan <-> JSON (see the header for the layout). */
#include "sessions/plan_json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomicfile.h"
#include "core/mapfile.h"
#include "core/suggest.h"
#include "quant/aqlm.h"
#include "quant/format.h"
#include "quant/gptq.h"
#include "sessions/json.h"

#define PLAN_JSON_MAX_BYTES ((size_t)64 << 20)

/* Names of the PF_* bits, in bit order. */
static const char *const FIELD_NAMES[PF_NFIELDS] = {"format", "group", "method", "act", "smooth"};

/* === Writing === */

/* Adds the keys of the field groups in `fields` to obj; returns 0 on OOM. */
static int entry_add(cJSON *obj, const PlanEntry *e, unsigned fields) {
    if (fields & PF_FMT) {
        const QFormatTraits *t = qformat_traits(e->w.fmt);
        if (!cJSON_AddStringToObject(obj, "format", t ? t->name : "?")) return 0;
        if (!cJSON_AddBoolToObject(obj, "sym", e->w.sym != 0)) return 0;
    }
    if (fields & PF_GROUP) {
        if (!cJSON_AddStringToObject(obj, "group_dim", group_dim_name(e->w.dim))) return 0;
        if (!cJSON_AddNumberToObject(obj, "group", (double)e->w.group)) return 0;
    }
    if (fields & PF_METHOD) {
        if (!cJSON_AddStringToObject(obj, "method", qmethod_name(e->method))) return 0;
        cJSON *g = cJSON_AddObjectToObject(obj, "gptq");
        if (!g) return 0;
        if (!cJSON_AddNumberToObject(g, "damp", e->gptq.damp)) return 0;
        if (!cJSON_AddBoolToObject(g, "act_order", e->gptq.act_order != 0)) return 0;
        if (!cJSON_AddNumberToObject(g, "block", (double)e->gptq.block)) return 0;
        if (!cJSON_AddBoolToObject(g, "static_groups", e->gptq.static_groups != 0)) return 0;
        if (!cJSON_AddStringToObject(obj, "adadim_base", qmethod_name(e->adadim_base))) return 0;
        char buf[32];
        if (!cJSON_AddStringToObject(obj, "aqlm", aqlm_params_name(&e->aqlm, buf, sizeof buf))) return 0;
    }
    if (fields & PF_ACT) {
        if (!cJSON_AddStringToObject(obj, "act", act_format_name(e->act))) return 0;
        if (!cJSON_AddStringToObject(obj, "act_gran", act_gran_name(e->act_gran))) return 0;
        if (!cJSON_AddStringToObject(obj, "act_scale", act_scale_name(e->act_scale))) return 0;
        if (!cJSON_AddBoolToObject(obj, "act_skip_first", e->act_skip_first != 0)) return 0;
    }
    if (fields & PF_SMOOTH) {
        if (!cJSON_AddNumberToObject(obj, "smooth_alpha", (double)e->smooth_alpha)) return 0;
    }
    return 1;
}

struct cJSON *plan_json_build(const Plan *p) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    if (!cJSON_AddNumberToObject(root, "schema_version", PLAN_JSON_SCHEMA_VERSION)) goto fail;
    if (!cJSON_AddStringToObject(root, "name", p->name)) goto fail;
    const char *keys[3] = {"default", "embed", "output"};
    const PlanEntry *ents[3] = {&p->def, &p->embed, &p->output};
    for (int i = 0; i < 3; i++) {
        cJSON *o = cJSON_AddObjectToObject(root, keys[i]);
        if (!o || !entry_add(o, ents[i], PF_ALL)) goto fail;
    }
    cJSON *rules = cJSON_AddArrayToObject(root, "rules");
    if (!rules) goto fail;
    for (int64_t r = 0; r < p->n_rules; r++) {
        const PlanRule *ru = &p->rules[r];
        cJSON *o = cJSON_CreateObject();
        if (!o) goto fail;
        cJSON_AddItemToArray(rules, o);
        if (!cJSON_AddStringToObject(o, "pattern", ru->pattern)) goto fail;
        cJSON *f = cJSON_AddArrayToObject(o, "fields");
        if (!f) goto fail;
        for (int k = 0; k < PF_NFIELDS; k++) {
            if (!(ru->fields & (1u << k))) continue;
            cJSON *s = cJSON_CreateString(FIELD_NAMES[k]);
            if (!s) goto fail;
            cJSON_AddItemToArray(f, s);
        }
        if (!entry_add(o, &ru->e, ru->fields)) goto fail;
    }
    cJSON *notes = cJSON_AddArrayToObject(root, "notes");
    if (!notes) goto fail;
    for (int64_t i = 0; i < p->n_notes; i++) {
        cJSON *s = cJSON_CreateString(p->notes[i]);
        if (!s) goto fail;
        cJSON_AddItemToArray(notes, s);
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

Status plan_json_write(const Plan *p, char **out, Err *err) {
    *out = NULL;
    cJSON *root = plan_json_build(p);
    if (!root) return err_set(err, ST_ERR_NOMEM, "plan '%s': building JSON", p->name);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return err_set(err, ST_ERR_NOMEM, "plan '%s': printing JSON", p->name);
    size_t n = strlen(s);
    char *t = malloc(n + 2);
    if (!t) {
        cJSON_free(s);
        return err_set(err, ST_ERR_NOMEM, "plan '%s': printing JSON", p->name);
    }
    memcpy(t, s, n);
    t[n] = '\n';
    t[n + 1] = 0;
    cJSON_free(s);
    *out = t;
    return ST_OK;
}

Status plan_json_save(const Plan *p, const char *path, Err *err) {
    char *text = NULL;
    Status st = plan_json_write(p, &text, err);
    if (st) return st;
    st = afile_save(path, text, strlen(text), err);
    free(text);
    return st;
}

/* === Reading === */

/* Error helper: "<where>: <ctx>.<key>: <msg>". */
#define BAD(...) err_set(err, ST_ERR_FORMAT, __VA_ARGS__)

/* The keys a plan file may use (the strict reading of plan_json_read):
 * ENTRY's, a rule's beyond them, gptq's, and the top level's. */
static const char *const ENTRY_KEYS[] = {"format", "sym", "group_dim", "group", "method", "gptq", "adadim_base",
                                         "aqlm", "act", "act_gran", "act_scale", "act_skip_first", "smooth_alpha",
                                         "pattern", "fields"};
#define N_ENTRY_KEYS 13 /* the rule keys follow */
static const char *const GPTQ_KEYS[] = {"damp", "act_order", "block", "static_groups"};
static const char *const TOP_KEYS[] = {"schema_version", "name", "default", "embed", "output", "rules", "notes"};

/* ST_ERR_FORMAT naming the first key of o not among keys[0..n) ("plan.json:
 * rules[0]: unknown key 'fromat' (did you mean 'format'?)"): a misspelt key
 * would otherwise leave its value at the default without a word. */
static Status check_keys(const cJSON *o, const char *const *keys, int n, const char *where, const char *ctx,
                         Err *err) {
    const cJSON *k;
    cJSON_ArrayForEach(k, o) {
        int i = 0;
        while (i < n && strcmp(k->string, keys[i]) != 0) i++;
        if (i < n) continue;
        int c = suggest_closest(k->string, keys, n);
        char hint[64] = "";
        if (c >= 0) snprintf(hint, sizeof hint, " (did you mean '%s'?)", keys[c]);
        return BAD("%s: %s%sunknown key '%s'%s", where, ctx ? ctx : "", ctx ? ": " : "", k->string, hint);
    }
    return ST_OK;
}

/* Reads the ENTRY keys of o into *e (keys absent leave e's values); *seen
 * receives the PF_* groups that had at least one key. */
static Status entry_parse(const cJSON *o, const char *where, const char *ctx, int strict, int is_rule, PlanEntry *e,
                          unsigned *seen, Err *err) {
    Status st;
    const char *s;
    int pres, b;
    double d;
    *seen = 0;
    if (!cJSON_IsObject(o)) return BAD("%s: %s: expected an object", where, ctx);
    if (strict && (st = check_keys(o, ENTRY_KEYS, is_rule ? (int)(sizeof ENTRY_KEYS / sizeof *ENTRY_KEYS) : N_ENTRY_KEYS,
                                   where, ctx, err)))
        return st;

    if ((st = json_get_str(o, "format", 0, &s, where, ctx, err))) return st;
    if (s) {
        int f = qformat_parse(s);
        if (f < 0) return BAD("%s: %s.format: '%s' is not a format", where, ctx, s);
        e->w.fmt = (QFormat)f;
        *seen |= PF_FMT;
    }
    if ((st = json_get_bool(o, "sym", &b, &pres, where, ctx, err))) return st;
    if (pres) {
        e->w.sym = b;
        *seen |= PF_FMT;
    }

    if ((st = json_get_str(o, "group_dim", 0, &s, where, ctx, err))) return st;
    if (s) {
        int g = group_dim_parse(s);
        if (g < 0) return BAD("%s: %s.group_dim: '%s' is not one of tensor, oc, ic", where, ctx, s);
        e->w.dim = (GroupDim)g;
        *seen |= PF_GROUP;
    }
    if ((st = json_get_num(o, "group", 0, 1 << 30, 1, &d, &pres, where, ctx, err))) return st;
    if (pres) {
        e->w.group = (int64_t)d;
        *seen |= PF_GROUP;
    }

    if ((st = json_get_str(o, "method", 0, &s, where, ctx, err))) return st;
    if (s) {
        int m = qmethod_parse(s);
        if (m < 0) return BAD("%s: %s.method: '%s' is not one of rtn, gptq, adadim, aqlm", where, ctx, s);
        e->method = (QMethod)m;
        *seen |= PF_METHOD;
    }
    const cJSON *g = json_get(o, "gptq");
    if (g) {
        char gctx[128];
        snprintf(gctx, sizeof gctx, "%s.gptq", ctx);
        if (!cJSON_IsObject(g)) return BAD("%s: %s: expected an object", where, gctx);
        if (strict && (st = check_keys(g, GPTQ_KEYS, (int)(sizeof GPTQ_KEYS / sizeof *GPTQ_KEYS), where, gctx, err)))
            return st;
        if ((st = json_get_num(g, "damp", 0, 10, 0, &d, &pres, where, gctx, err))) return st;
        if (pres) e->gptq.damp = d;
        if ((st = json_get_bool(g, "act_order", &b, &pres, where, gctx, err))) return st;
        if (pres) e->gptq.act_order = b;
        if ((st = json_get_num(g, "block", 1, 1 << 20, 1, &d, &pres, where, gctx, err))) return st;
        if (pres) e->gptq.block = (int64_t)d;
        if ((st = json_get_bool(g, "static_groups", &b, &pres, where, gctx, err))) return st;
        if (pres) e->gptq.static_groups = b;
        *seen |= PF_METHOD;
    }
    if ((st = json_get_str(o, "adadim_base", 0, &s, where, ctx, err))) return st;
    if (s) {
        int m = qmethod_parse(s);
        if (m != QM_RTN && m != QM_GPTQ)
            return BAD("%s: %s.adadim_base: '%s' is not one of rtn, gptq", where, ctx, s);
        e->adadim_base = (QMethod)m;
        *seen |= PF_METHOD;
    }
    if ((st = json_get_str(o, "aqlm", 0, &s, where, ctx, err))) return st;
    if (s) {
        Err e2;
        err_init(&e2);
        if (aqlm_params_parse(s, &e->aqlm, &e2))
            return BAD("%s: %s.aqlm: '%s': %s", where, ctx, s, e2.detail);
        *seen |= PF_METHOD;
    }

    if ((st = json_get_str(o, "act", 0, &s, where, ctx, err))) return st;
    if (s) {
        int a = act_format_parse(s);
        if (a < 0) return BAD("%s: %s.act: '%s' is not one of none, int8, fp8-e4m3, fp8-e5m2", where, ctx, s);
        e->act = (ActFormat)a;
        *seen |= PF_ACT;
    }
    if ((st = json_get_str(o, "act_gran", 0, &s, where, ctx, err))) return st;
    if (s) {
        int a = act_gran_parse(s);
        if (a < 0) return BAD("%s: %s.act_gran: '%s' is not one of tensor, token", where, ctx, s);
        e->act_gran = (ActGran)a;
        *seen |= PF_ACT;
    }
    if ((st = json_get_str(o, "act_scale", 0, &s, where, ctx, err))) return st;
    if (s) {
        int a = act_scale_parse(s);
        if (a < 0) return BAD("%s: %s.act_scale: '%s' is not one of dynamic, static", where, ctx, s);
        e->act_scale = (ActScale)a;
        *seen |= PF_ACT;
    }
    if ((st = json_get_bool(o, "act_skip_first", &b, &pres, where, ctx, err))) return st;
    if (pres) {
        e->act_skip_first = b;
        *seen |= PF_ACT;
    }

    if ((st = json_get_num(o, "smooth_alpha", 0, 1, 0, &d, &pres, where, ctx, err))) return st;
    if (pres) {
        e->smooth_alpha = (float)d;
        *seen |= PF_SMOOTH;
    }
    return ST_OK;
}

/* plan_json_parse, rejecting unknown keys when strict (plan files) or
 * ignoring them (plans inside sessions, which tolerate newer writers). */
static Status parse_plan(const cJSON *obj, const char *where, const PlanModel *m, int strict, Plan *out, Err *err) {
    plan_init(out);
    Status st;
    if (!where) where = "plan";
    if (!cJSON_IsObject(obj)) return BAD("%s: expected a JSON object", where);
    if (strict && (st = check_keys(obj, TOP_KEYS, (int)(sizeof TOP_KEYS / sizeof *TOP_KEYS), where, NULL, err)))
        return st;

    const cJSON *ver = json_get(obj, "schema_version");
    if (!ver) return BAD("%s: schema_version: missing", where);
    if (!cJSON_IsNumber(ver) || ver->valuedouble != PLAN_JSON_SCHEMA_VERSION)
        return BAD("%s: schema_version: expected %d, found %s%g", where, PLAN_JSON_SCHEMA_VERSION,
                   cJSON_IsNumber(ver) ? "" : "a non-number ", cJSON_IsNumber(ver) ? ver->valuedouble : 0.0);

    const char *name = NULL;
    if ((st = json_get_str(obj, "name", 0, &name, where, "plan", err))) goto fail;
    if (name) snprintf(out->name, sizeof out->name, "%s", name);

    const char *keys[3] = {"default", "embed", "output"};
    PlanEntry *ents[3] = {&out->def, &out->embed, &out->output};
    for (int i = 0; i < 3; i++) {
        const cJSON *o = json_get(obj, keys[i]);
        if (!o) continue;
        unsigned seen;
        if ((st = entry_parse(o, where, keys[i], strict, 0, ents[i], &seen, err))) goto fail;
    }

    const cJSON *rules = json_get(obj, "rules");
    if (rules && !cJSON_IsArray(rules)) {
        st = BAD("%s: rules: expected an array", where);
        goto fail;
    }
    int64_t ri = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rules) {
        char ctx[48];
        snprintf(ctx, sizeof ctx, "rules[%lld]", (long long)ri);
        if (!cJSON_IsObject(r)) {
            st = BAD("%s: %s: expected an object", where, ctx);
            goto fail;
        }
        const char *pat = NULL;
        if ((st = json_get_str(r, "pattern", 0, &pat, where, ctx, err))) goto fail;
        if (!pat) {
            st = BAD("%s: %s.pattern: missing", where, ctx);
            goto fail;
        }
        PlanEntry e;
        plan_entry_default(&e);
        unsigned seen = 0, fields = 0;
        if ((st = entry_parse(r, where, ctx, strict, 1, &e, &seen, err))) goto fail;
        const cJSON *f = json_get(r, "fields");
        if (f) {
            if (!cJSON_IsArray(f)) {
                st = BAD("%s: %s.fields: expected an array of field names", where, ctx);
                goto fail;
            }
            const cJSON *fn;
            cJSON_ArrayForEach(fn, f) {
                if (!cJSON_IsString(fn) || !fn->valuestring) {
                    st = BAD("%s: %s.fields: expected strings", where, ctx);
                    goto fail;
                }
                int k;
                if (!strcmp(fn->valuestring, "all")) {
                    fields |= PF_ALL;
                    continue;
                }
                for (k = 0; k < PF_NFIELDS; k++)
                    if (!strcmp(fn->valuestring, FIELD_NAMES[k])) break;
                if (k == PF_NFIELDS) {
                    st = BAD("%s: %s.fields: '%s' is not one of format, group, method, act, smooth, all", where,
                             ctx, fn->valuestring);
                    goto fail;
                }
                fields |= 1u << k;
            }
        } else {
            fields = seen;
        }
        if (!fields) {
            st = BAD("%s: %s: the rule sets no field", where, ctx);
            goto fail;
        }
        Err e2;
        err_init(&e2);
        st = plan_add_rule(out, pat, fields, &e, &e2);
        if (st) {
            st = err_set(err, st == ST_ERR_NOMEM ? ST_ERR_NOMEM : ST_ERR_FORMAT, "%s: %s.pattern: %s", where,
                         ctx, e2.detail);
            goto fail;
        }
        ri++;
    }

    const cJSON *notes = json_get(obj, "notes");
    if (notes && !cJSON_IsArray(notes)) {
        st = BAD("%s: notes: expected an array of strings", where);
        goto fail;
    }
    const cJSON *n;
    int64_t ni = 0;
    cJSON_ArrayForEach(n, notes) {
        if (!cJSON_IsString(n) || !n->valuestring) {
            st = BAD("%s: notes[%lld]: expected a string", where, (long long)ni);
            goto fail;
        }
        if ((st = plan_add_note(out, err, "%s", n->valuestring))) goto fail;
        ni++;
    }

    if (m) {
        Err e2;
        err_init(&e2);
        st = plan_validate(out, m, &e2);
        if (st) {
            st = err_set(err, st, "%s: %s", where, e2.detail);
            goto fail;
        }
    }
    return ST_OK;
fail:
    plan_done(out);
    return st;
}

Status plan_json_parse(const struct cJSON *obj, const char *where, const PlanModel *m, Plan *out, Err *err) {
    return parse_plan(obj, where, m, 0, out, err);
}

Status plan_json_read(const char *text, size_t len, const char *where, const PlanModel *m, Plan *out, Err *err) {
    plan_init(out);
    if (!where) where = "plan";
    cJSON *root;
    Status pst = json_parse_text(text, len, where, &root, err);
    if (pst) return pst;
    Status st = parse_plan(root, where, m, 1, out, err);
    cJSON_Delete(root);
    return st;
}

Status plan_json_load(const char *path, const PlanModel *m, Plan *out, Err *err) {
    plan_init(out);
    char *text = NULL;
    size_t len = 0;
    Status st = file_read_all(path, PLAN_JSON_MAX_BYTES, &text, &len, err);
    if (st) return st;
    st = plan_json_read(text, len, path, m, out, err);
    free(text);
    return st;
}
