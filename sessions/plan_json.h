/* The JSON form of a quantization plan (quant/plan.h), read and written with
 * cJSON. Layout (schema_version 1):
 *
 * {
 *   "schema_version": 1,
 *   "name": "int4-gptq",
 *   "default": ENTRY,            every linear projection starts from this
 *   "embed":   ENTRY,            token embedding
 *   "output":  ENTRY,            output head
 *   "rules": [ {"pattern": "*.down", "fields": ["group"], ...ENTRY keys}, ... ],
 *   "notes": ["*.down: group 128 -> 4 (172 = 4·43)", ...]
 * }
 *
 * ENTRY = {
 *   "format": "int4",            quant/format.h names (fp32 fp16 bf16 fp8-e4m3
 *                                fp8-e5m2 int8 int6 int5 int4 int3 int2 aqlm)
 *   "sym": true,
 *   "group_dim": "oc",           "tensor" | "oc" | "ic"
 *   "group": 128,                0 = whole row / column
 *   "method": "gptq",            "rtn" | "gptq" | "adadim" | "aqlm" | "imatrix" (ggml formats)
 *   "gptq": {"damp": 0.01, "act_order": true, "block": 128, "static_groups": false},
 *   "adadim_base": "rtn",        "rtn" | "gptq"
 *   "aqlm": "2x8g8",             MxB[gG] (aqlm_params_parse)
 *   "act": "int8",               "none" | "int8" | "fp8-e4m3" | "fp8-e5m2"
 *   "act_gran": "tensor",        "tensor" | "token"
 *   "act_scale": "dynamic",      "dynamic" | "static"
 *   "act_skip_first": false,
 *   "smooth_alpha": 0.5          0 = off
 * }
 *
 * Writing emits every key. Reading starts each entry from
 * plan_entry_default, so any key may be left out; a rule's "fields" lists
 * which groups of keys it sets ("format", "group", "method", "act",
 * "smooth"; see PF_* in quant/plan.h) and defaults to the groups whose keys
 * the rule names. A plan file (plan_json_read / plan_json_load) may hold no
 * other key: a misspelt one ("fromat") would leave its value at the default
 * and the plan would quietly mean something else, so it is an error naming
 * the key, the place and the file ("p.json: rules[0]: unknown key 'fromat'
 * (did you mean 'format'?)"). A plan inside a session (plan_json_parse)
 * tolerates unknown keys, so sessions of newer writers stay readable. Every present key is type- and value-checked; errors name the
 * place and the key: "plan.json: rules[2].format: 'int9' is not a format".
 * With a PlanModel the parsed plan is also plan_validate'd against it, so a
 * rule naming layer 40 of a 5-layer model or a group not dividing 172 fails
 * on load with plan_validate's message prefixed by the file name.
 *
 * The cJSON-level functions take `struct cJSON` so this header does not pull
 * <cjson/cJSON.h> into includers outside sessions/ (the TUI uses the string
 * and file functions). */
#ifndef QS_SESSIONS_PLAN_JSON_H
#define QS_SESSIONS_PLAN_JSON_H

#include <stddef.h>

#include "core/status.h"
#include "quant/plan.h"

#define PLAN_JSON_SCHEMA_VERSION 1

struct cJSON;

/* Builds the JSON object of p (every field). Returns a new cJSON tree owned
 * by the caller (cJSON_Delete), or NULL when memory runs out. */
struct cJSON *plan_json_build(const Plan *p);

/* Reads a plan from a cJSON object (borrowed for the call) into *out
 * (initialised here; caller plan_done's it, also on error — it is left
 * initialised and empty then). `where` prefixes every error detail (a file
 * name, or "session.json: plans[1]"). m may be NULL: then only
 * model-independent checks run (names, ranges, pattern syntax); with m the
 * plan is plan_validate'd too. Unknown keys are ignored (sessions' plans).
 * Errors: ST_ERR_FORMAT for structure / type / name errors, ST_ERR_ARG for a
 * plan that does not fit m, ST_ERR_NOMEM. */
Status plan_json_parse(const struct cJSON *obj, const char *where, const PlanModel *m, Plan *out, Err *err);

/* Serialises p as indented JSON text ending in a newline. *out is heap
 * (caller frees). */
Status plan_json_write(const Plan *p, char **out, Err *err);

/* Parses JSON text (len bytes, need not be NUL-terminated) like
 * plan_json_parse, but an unknown key is an ST_ERR_FORMAT error (a plan
 * file); a text that is not JSON fails with ST_ERR_FORMAT naming `where` and
 * the byte offset of the parse error. */
Status plan_json_read(const char *text, size_t len, const char *where, const PlanModel *m, Plan *out, Err *err);

/* Writes p to path atomically (temporary file in the same directory, then
 * rename). Errors name the path. */
Status plan_json_save(const Plan *p, const char *path, Err *err);

/* Reads and parses the plan file at path (errors prefixed by the path);
 * m may be NULL as in plan_json_parse. */
Status plan_json_load(const char *path, const PlanModel *m, Plan *out, Err *err);

#endif
