/* The one home of qscope's own JSON (STYLE: analysis returns structs; sessions
 * and the CLI build JSON with cJSON): typed member access with errors that
 * name the place, member setters, the JSON form of an evaluation, and the
 * one-line printer the CLI's --json outputs use. model/'s readers of Hugging
 * Face files keep their own getters (foreign formats, their own messages). */
#ifndef QS_SESSIONS_JSON_H
#define QS_SESSIONS_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "core/status.h"

struct EvalResult;
struct QModel;

/* === Reading === */

/* Parses the len bytes at text (not NUL-terminated necessarily) as one JSON
 * value into *out (caller cJSON_Delete's). ST_ERR_FORMAT naming where and the
 * byte: a \u0000 escape (core/jsontext.h), text cut short (unclosed brackets),
 * text that is not JSON, or anything but whitespace after the value. */
Status json_parse_text(const char *text, size_t len, const char *where, cJSON **out, Err *err);

/* Member k of o (case-sensitive), or NULL (also when o is not an object);
 * borrowed from o. */
cJSON *json_get(const cJSON *o, const char *k);

/* Member k's string (borrowed from o), or NULL when absent or not a string. */
const char *json_string(const cJSON *o, const char *k);

/* Member k's number, or NaN when absent or not a number. */
double json_number(const cJSON *o, const char *k);

/* Typed members with an error that names where they are: messages read
 * "<where>: <path>.<k>: <what is wrong>" (ST_ERR_FORMAT). A member that is
 * absent or JSON null is "absent": *out gets def (json_get_int), NULL
 * (json_get_str: an error when required), 0 (json_get_hex), or is left
 * alone (json_get_num, json_get_bool), and *present (may be NULL) says 0. */
Status json_get_int(const cJSON *o, const char *k, int64_t lo, int64_t hi, int64_t def, int64_t *out,
                    const char *where, const char *path, Err *err);
Status json_get_num(const cJSON *o, const char *k, double lo, double hi, int integer, double *out, int *present,
                    const char *where, const char *path, Err *err);
Status json_get_bool(const cJSON *o, const char *k, int *out, int *present, const char *where, const char *path,
                     Err *err);
Status json_get_str(const cJSON *o, const char *k, int required, const char **out, const char *where,
                    const char *path, Err *err);
/* A 64-bit value stored as 16 hex digits (fingerprints, hashes). */
Status json_get_hex(const cJSON *o, const char *k, int required, uint64_t *out, const char *where,
                    const char *path, Err *err);

/* The 16 lower-case hex digits of v into buf; returns buf. */
char *json_hex64(uint64_t v, char buf[17]);

/* Parses exactly 16 hex digits; 1 on success, else 0 (*out untouched). */
int json_parse_hex64(const char *s, uint64_t *out);

/* === Building === */

/* Replaces (or adds, at the end) member k of o with v, taking v; returns 1,
 * or 0 when v is NULL or memory ran out (v freed). */
int json_set(cJSON *o, const char *k, cJSON *v);
int json_set_str(cJSON *o, const char *k, const char *v); /* v NULL: JSON null */
int json_set_num(cJSON *o, const char *k, double v);      /* not finite: JSON null */
int json_set_bool(cJSON *o, const char *k, int v);
int json_set_hex(cJSON *o, const char *k, uint64_t v);
/* An array of n numbers (non-finite ones as null). */
int json_set_nums(cJSON *o, const char *k, const double *v, int64_t n);

/* A number as a command formats it (printf's fmt), kept as text and printed
 * as it is by json_print_line (a raw item: for output, not for a session);
 * a non-finite value ("nan", "inf") becomes null. NULL when memory runs out. */
cJSON *json_numf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int json_setf(cJSON *o, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends v to the array a, taking v; 0 (v freed) when v is NULL or memory
 * ran out (a may be NULL: then 0). */
int json_push(cJSON *a, cJSON *v);

/* A new empty array / object set as member k of o (borrowed from o), or NULL
 * when memory ran out. */
cJSON *json_add_array(cJSON *o, const char *k);
cJSON *json_add_object(cJSON *o, const char *k);

/* o when ok, else NULL after deleting o: the end of building a tree whose
 * steps were and-ed into ok. */
cJSON *json_finish(cJSON *o, int ok);

/* The JSON object of one evaluation (analysis/eval.h's EvalResult of the
 * quantized model qm, which may be NULL; plan_name may be NULL): keys plan,
 * model, ppl, ppl_base, kld_mean, kld_median, kld_p90, kld_p99, kld_max,
 * top1_agree, bpw, prefill_tps, decode_tps, prefill_cpu_tps, decode_cpu_tps,
 * seconds, bytes, chunks, tokens_scored, cancelled, then with qm params,
 * bits, kernel_bytes, quantize_seconds, then layer_rel_err, running_ppl,
 * running_kld and notes (qm's). The ppl ... seconds group and layer_rel_err
 * hold the exact doubles (a replay demands bit-identical numbers); the
 * CPU rates and the running curves 9 significant digits, quantize_seconds 4
 * decimals (what sessions have always stored). `qscope eval --json` prints
 * it, the session stores it as a result's metrics. Caller cJSON_Delete's;
 * NULL when memory runs out. */
cJSON *json_eval_result(const struct EvalResult *res, const struct QModel *qm, const char *plan_name);

/* === Printing === */

/* o on one line the way the CLI's --json outputs read: `{"k": v, "k2": [1, 2]}`
 * (": " and ", " separators), strings escaped (", \ and control bytes as
 * \u00XX; other bytes as they are), integral numbers below 2^53 in full,
 * other numbers with `digits` significant digits (%.*g), non-finite ones as
 * null, raw items (cJSON_CreateRaw: numbers a command formats itself) as
 * they are. Heap string (caller frees), NULL when memory runs out. */
char *json_print_line(const cJSON *o, int digits);

#endif
