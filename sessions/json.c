#include "sessions/json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/eval.h"
#include "analysis/qmodel.h"
#include "core/jsontext.h"
#include "core/strbuf.h"

/* === Reading === */

/* Brackets still open (plus 1 inside a string) at the end of text, or -1
 * when a closing bracket has no opener: a positive count with a parse error
 * means the file was cut short rather than damaged. */
static int64_t json_open_depth(const char *text, size_t len) {
    int64_t depth = 0;
    int in_str = 0, esc = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') in_str = 1;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (--depth < 0) return -1;
        }
    }
    return depth + in_str;
}

Status json_parse_text(const char *text, size_t len, const char *where, cJSON **out, Err *err) {
    *out = NULL;
    Status nul = jsontext_check_nul(text, len, where, err);
    if (nul) return nul;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        int64_t open = json_open_depth(text, len);
        if (open > 0 || off >= len)
            return err_set(err, ST_ERR_FORMAT,
                           "%s: truncated JSON (the text ends at byte %zu with %" PRId64 " unclosed brackets "
                           "or string; parse stopped at byte %zu)", where, len, open, off);
        return err_set(err, ST_ERR_FORMAT, "%s: not valid JSON (parse error at byte %zu)", where, off);
    }
    /* Anything but whitespace after the value means a damaged file. */
    size_t off = (size_t)(end - text);
    while (off < len && (text[off] == ' ' || text[off] == '\n' || text[off] == '\r' || text[off] == '\t')) off++;
    if (off < len && text[off] != '\0') {
        cJSON_Delete(root);
        return err_set(err, ST_ERR_FORMAT, "%s: trailing data after the JSON value at byte %zu", where, off);
    }
    *out = root;
    return ST_OK;
}

cJSON *json_get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

const char *json_string(const cJSON *o, const char *k) {
    const cJSON *v = json_get(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double json_number(const cJSON *o, const char *k) {
    const cJSON *v = json_get(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The member, or NULL when it is absent or null. */
static const cJSON *member(const cJSON *o, const char *k) {
    const cJSON *v = json_get(o, k);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

Status json_get_num(const cJSON *o, const char *k, double lo, double hi, int integer, double *out, int *present,
                    const char *where, const char *path, Err *err) {
    const cJSON *v = member(o, k);
    if (present) *present = v != NULL;
    if (!v) return ST_OK;
    if (!cJSON_IsNumber(v)) return err_set(err, ST_ERR_FORMAT, "%s: %s.%s: expected a number", where, path, k);
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi)
        return err_set(err, ST_ERR_FORMAT, "%s: %s.%s: %g is outside [%g, %g]", where, path, k, d, lo, hi);
    if (integer && d != floor(d))
        return err_set(err, ST_ERR_FORMAT, "%s: %s.%s: %g is not an integer", where, path, k, d);
    *out = d;
    return ST_OK;
}

Status json_get_int(const cJSON *o, const char *k, int64_t lo, int64_t hi, int64_t def, int64_t *out,
                    const char *where, const char *path, Err *err) {
    const cJSON *v = member(o, k);
    *out = def;
    if (!v) return ST_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return err_set(err, ST_ERR_FORMAT, "%s: %s.%s: expected an integer in [%" PRId64 ", %" PRId64 "]", where,
                       path, k, lo, hi);
    *out = (int64_t)v->valuedouble;
    return ST_OK;
}

Status json_get_bool(const cJSON *o, const char *k, int *out, int *present, const char *where, const char *path,
                     Err *err) {
    const cJSON *v = member(o, k);
    if (present) *present = v != NULL;
    if (!v) return ST_OK;
    if (!cJSON_IsBool(v)) return err_set(err, ST_ERR_FORMAT, "%s: %s.%s: expected true or false", where, path, k);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return ST_OK;
}

Status json_get_str(const cJSON *o, const char *k, int required, const char **out, const char *where,
                    const char *path, Err *err) {
    const cJSON *v = member(o, k);
    *out = NULL;
    if (!v) {
        if (required) return err_set(err, ST_ERR_FORMAT, "%s: %s: missing string member '%s'", where, path, k);
        return ST_OK;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return err_set(err, ST_ERR_FORMAT, "%s: %s.%s: expected a string", where, path, k);
    *out = v->valuestring;
    return ST_OK;
}

Status json_get_hex(const cJSON *o, const char *k, int required, uint64_t *out, const char *where,
                    const char *path, Err *err) {
    const char *s;
    Status st = json_get_str(o, k, required, &s, where, path, err);
    if (st) return st;
    *out = 0;
    if (s && !json_parse_hex64(s, out))
        return err_set(err, ST_ERR_FORMAT, "%s: %s.%s: '%.40s' is not 16 hex digits", where, path, k, s);
    return ST_OK;
}

char *json_hex64(uint64_t v, char buf[17]) {
    snprintf(buf, 17, "%016" PRIx64, v);
    return buf;
}

int json_parse_hex64(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

/* === Building === */

int json_set(cJSON *o, const char *k, cJSON *v) {
    if (!v) return 0;
    if (json_get(o, k)) return cJSON_ReplaceItemInObjectCaseSensitive(o, k, v) ? 1 : (cJSON_Delete(v), 0);
    return cJSON_AddItemToObject(o, k, v) ? 1 : (cJSON_Delete(v), 0);
}

int json_set_str(cJSON *o, const char *k, const char *v) {
    return json_set(o, k, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

int json_set_num(cJSON *o, const char *k, double v) {
    return json_set(o, k, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

int json_set_bool(cJSON *o, const char *k, int v) { return json_set(o, k, cJSON_CreateBool(v)); }

int json_set_hex(cJSON *o, const char *k, uint64_t v) {
    char b[17];
    return json_set_str(o, k, json_hex64(v, b));
}

int json_set_nums(cJSON *o, const char *k, const double *v, int64_t n) {
    cJSON *arr = cJSON_CreateArray();
    for (int64_t i = 0; arr && i < n; i++) {
        cJSON *e = isfinite(v[i]) ? cJSON_CreateNumber(v[i]) : cJSON_CreateNull();
        if (!e || !cJSON_AddItemToArray(arr, e)) {
            cJSON_Delete(e);
            cJSON_Delete(arr);
            arr = NULL;
        }
    }
    return json_set(o, k, arr);
}

static cJSON *numv(const char *fmt, va_list ap) {
    char b[64];
    int k = vsnprintf(b, sizeof b, fmt, ap);
    if (k < 0 || (size_t)k >= sizeof b) return NULL;
    /* printf's spellings of what JSON cannot hold */
    const char *t = b[0] == '-' || b[0] == '+' ? b + 1 : b;
    if (!strncmp(t, "nan", 3) || !strncmp(t, "inf", 3) || !strncmp(t, "NAN", 3) || !strncmp(t, "INF", 3))
        return cJSON_CreateNull();
    return cJSON_CreateRaw(b);
}

cJSON *json_numf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cJSON *v = numv(fmt, ap);
    va_end(ap);
    return v;
}

int json_setf(cJSON *o, const char *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cJSON *v = numv(fmt, ap);
    va_end(ap);
    return json_set(o, k, v);
}

int json_push(cJSON *a, cJSON *v) {
    if (!v) return 0;
    if (!cJSON_AddItemToArray(a, v)) {
        cJSON_Delete(v);
        return 0;
    }
    return 1;
}

cJSON *json_add_array(cJSON *o, const char *k) { return json_set(o, k, cJSON_CreateArray()) ? json_get(o, k) : NULL; }

cJSON *json_add_object(cJSON *o, const char *k) { return json_set(o, k, cJSON_CreateObject()) ? json_get(o, k) : NULL; }

cJSON *json_finish(cJSON *o, int ok) {
    if (ok) return o;
    cJSON_Delete(o);
    return NULL;
}

/* v as %.*g prints it and reads back: the value a reader of that text gets. */
static double rounded(double v, const char *fmt) {
    if (!isfinite(v)) return v;
    char b[64];
    snprintf(b, sizeof b, fmt, v);
    return strtod(b, NULL);
}

static int set_nums_9(cJSON *o, const char *k, const double *v, int64_t n) {
    double *r = n > 0 ? malloc((size_t)n * sizeof *r) : NULL;
    if (n > 0 && !r) return 0;
    for (int64_t i = 0; i < n; i++) r[i] = rounded(v[i], "%.9g");
    int ok = json_set_nums(o, k, r, n);
    free(r);
    return ok;
}

cJSON *json_eval_result(const EvalResult *res, const QModel *qm, const char *plan_name) {
    cJSON *o = cJSON_CreateObject();
    int ok = o && json_set_str(o, "plan", plan_name ? plan_name : "") &&
             json_set_str(o, "model", qm && qm->model.path ? qm->model.path : "");
    const struct { const char *k; double v; int digits9; } nums[] = {
        {"ppl", res->ppl, 0},
        {"ppl_base", res->ppl_base, 0},
        {"kld_mean", res->kld_mean, 0},
        {"kld_median", res->kld_median, 0},
        {"kld_p90", res->kld_p90, 0},
        {"kld_p99", res->kld_p99, 0},
        {"kld_max", res->kld_max, 0},
        {"top1_agree", res->top1_agree, 0},
        {"bpw", res->bpw, 0},
        {"prefill_tps", res->prefill_tps, 0},
        {"decode_tps", res->decode_tps, 0},
        {"prefill_cpu_tps", res->prefill_cpu_tps, 1},
        {"decode_cpu_tps", res->decode_cpu_tps, 1},
        {"seconds", res->seconds, 0},
        {"bytes", (double)res->bytes, 0},
        {"chunks", (double)res->chunks, 0},
        {"tokens_scored", (double)res->tokens_scored, 0},
    };
    for (size_t i = 0; ok && i < sizeof nums / sizeof nums[0]; i++)
        ok = json_set_num(o, nums[i].k, nums[i].digits9 ? rounded(nums[i].v, "%.9g") : nums[i].v);
    ok = ok && json_set_bool(o, "cancelled", res->cancelled);
    if (ok && qm)
        ok = json_set_num(o, "params", (double)qm->params) && json_set_num(o, "bits", (double)qm->bits) &&
             json_set_num(o, "kernel_bytes", (double)qm->kernel_bytes) &&
             json_set_num(o, "quantize_seconds", rounded(qm->seconds, "%.4f"));
    ok = ok && json_set_nums(o, "layer_rel_err", res->layer_rel_err, res->layer_rel_err ? res->n_layers : 0) &&
         set_nums_9(o, "running_ppl", res->running_ppl, res->running_ppl ? res->chunks : 0) &&
         set_nums_9(o, "running_kld", res->running_kld, res->running_kld ? res->chunks : 0);
    cJSON *notes = ok ? cJSON_CreateArray() : NULL;
    for (int64_t i = 0; notes && qm && i < qm->n_notes; i++) {
        cJSON *s = cJSON_CreateString(qm->notes[i]);
        if (!s || !cJSON_AddItemToArray(notes, s)) {
            cJSON_Delete(s);
            cJSON_Delete(notes);
            notes = NULL;
        }
    }
    if (!ok || !json_set(o, "notes", notes)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* === Printing === */

static void put_str(StrBuf *b, const char *s) {
    strbuf_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': strbuf_printf(b, "\\\""); break;
        case '\\': strbuf_printf(b, "\\\\"); break;
        case '\n': strbuf_printf(b, "\\n"); break;
        case '\r': strbuf_printf(b, "\\r"); break;
        case '\t': strbuf_printf(b, "\\t"); break;
        default:
            if (*p < 0x20 || *p == 0x7f) strbuf_printf(b, "\\u%04x", *p);
            else strbuf_printf(b, "%c", *p);
        }
    }
    strbuf_printf(b, "\"");
}

static void put_item(StrBuf *b, const cJSON *v, int digits) {
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        int obj = cJSON_IsObject(v);
        strbuf_printf(b, obj ? "{" : "[");
        for (const cJSON *c = v->child; c; c = c->next) {
            if (c != v->child) strbuf_printf(b, ", ");
            if (obj) {
                put_str(b, c->string);
                strbuf_printf(b, ": ");
            }
            put_item(b, c, digits);
        }
        strbuf_printf(b, obj ? "}" : "]");
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d)) strbuf_printf(b, "null");
        else if (d == floor(d) && fabs(d) < 9007199254740992.0) strbuf_printf(b, "%lld", (long long)d);
        else strbuf_printf(b, "%.*g", digits, d);
    } else if (cJSON_IsString(v)) {
        put_str(b, v->valuestring);
    } else if (cJSON_IsRaw(v)) {
        strbuf_printf(b, "%s", v->valuestring ? v->valuestring : "null");
    } else if (cJSON_IsBool(v)) {
        strbuf_printf(b, cJSON_IsTrue(v) ? "true" : "false");
    } else {
        strbuf_printf(b, "null");
    }
}

char *json_print_line(const cJSON *o, int digits) {
    StrBuf b = {0};
    put_item(&b, o, digits);
    return strbuf_take(&b);
}
