/* qscope plan-export / plan-import: a plan to the deployment tools' formats
 * (llama.cpp tensor types, GPTQModel dynamic config, llm-compressor recipe)
 * with a report of what they cannot express, and llama.cpp's back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/atomicfile.h"
#include "core/mapfile.h"
#include "quant/plan.h"
#include "sessions/export.h"
#include "sessions/plan_json.h"
#include "sessions/session.h"

static const char EXPORT_USAGE[] =
    "usage: qscope plan-export PLAN --to llamacpp|gptqmodel|llmcompressor\n"
    "                          [--model M [--tokenizer T]] [--name N] [-o OUT]\n\n"
    "Writes PLAN (a plan JSON, or a session: its current plan or --name N) for a deployment\n"
    "tool, resolved on the model's shape (from --model, or the session's model reference),\n"
    "and prints on stderr what the target cannot express (approximated, or kept 16-bit):\n"
    "  llamacpp       llama-quantize --tensor-type-file entries, one anchored regex per tensor\n"
    "                 (^blk\\.1\\.ffn_down\\.weight$=q4_k); run it with the base type Q8_0\n"
    "  gptqmodel      GPTQModel QuantizeConfig JSON with a `dynamic` map of per-module overrides\n"
    "  llmcompressor  llm-compressor recipe YAML (weight-only int, W8A8, fp8-e4m3, SmoothQuant)\n"
    "The mapping and what is approximate is described in sessions/export.h.\n\n";

static const char IMPORT_USAGE[] =
    "usage: qscope plan-import FILE --from llamacpp -o PLAN.json [--model M [--tokenizer T]]\n\n"
    "Reads a llama.cpp tensor-type file or --tensor-type arguments (NAME=TYPE entries\n"
    "separated by blanks or newlines) into a plan: q8_0 -> int8 sym oc32, q4_0 -> int4\n"
    "sym oc32, q4_1/q4_k -> int4 asym oc32, q5_*, q6_k, q3_k, q2_k alike, f32/f16/bf16 as\n"
    "themselves. With --model, each NAME is matched as llama-quantize does (a regex,\n"
    "first match wins) against the model's tensors, and the plan is validated on it;\n"
    "without, only literal names (blk.N.<tensor>[.weight], <tensor>, token_embd,\n"
    "^output\\.weight$) are read.\n\n";

/* A plan's shape facts from a session's model reference. */
static PlanModel pm_from_ref(const SessionModelRef *r) {
    PlanModel pm = {.n_layers = r->n_layers, .dim = r->dim, .hidden_dim = r->hidden_dim, .n_heads = r->n_heads,
                    .n_kv_heads = r->n_kv_heads, .head_dim = r->head_dim ? r->head_dim : (r->n_heads ? r->dim / r->n_heads : 0),
                    .vocab_size = r->vocab_size, .tied_embeddings = r->tied_embeddings};
    return pm;
}

static int write_out(const char *cmd, const char *out, const char *text) {
    if (!out) {
        fputs(text, stdout);
        return 0;
    }
    /* atomically (core/atomicfile.h), so a failed write leaves no half file under OUT's name */
    Err err;
    err_init(&err);
    if (afile_save(out, text, strlen(text), &err)) {
        fprintf(stderr, "qscope %s: cannot write %s: %s\n", cmd, out, err.detail);
        return 1;
    }
    return 0;
}

int cmd_plan_export(int argc, char **argv) {
    const char *in = NULL, *model = NULL, *tok = NULL, *name = NULL, *out = NULL;
    int t = -1;
    const Opt opts[] = {
        OPT_PARSE("--to", &t, export_target_parse, "llamacpp, gptqmodel or llmcompressor", "TARGET",
                  "llamacpp, gptqmodel or llmcompressor (above)"),
        OPT_STR("--model", &model, "M", "the model whose shape the plan is resolved on"),
        OPT_STR("--tokenizer", &tok, "T", "llama2.c tokenizer .bin (for a .bin --model)"),
        OPT_STR("--name", &name, "N", "the session's plan named N (default: its current plan)"),
        OPT_STR("-o", &out, "OUT", "write to OUT (default stdout)"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "plan-export", .usage = EXPORT_USAGE, .tables = {opts}, .pos = {&in}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!in || t < 0) {
        fprintf(stderr, "qscope plan-export: need PLAN and --to TARGET\n");
        opts_usage(&spec, stderr);
        return 2;
    }
    Err err;
    err_init(&err);
    int rc = 1;
    Plan p;
    plan_init(&p);
    Model *m = NULL;
    Session *s = NULL;
    char *text = NULL, *res = NULL, *rt = NULL;
    size_t len = 0;
    ExportReport rep;
    memset(&rep, 0, sizeof rep);
    PlanModel pm;
    if (file_read_all(in, (size_t)256 << 20, &text, &len, &err)) {
        args_print_err("plan-export", &err);
        goto done;
    }
    if (strstr(text, "\"qscope-session\"")) {
        if (session_parse(text, len, in, &s, &err)) {
            args_print_err("plan-export", &err);
            goto done;
        }
        if (!name) name = session_current_plan(s);
        if (!name && session_n_plans(s) > 0) name = session_plan_name(s, session_n_plans(s) - 1);
        plan_done(&p);
        if (session_get_plan(s, name, &p, &err)) {
            err_wrap(&err, "%s", in);
            args_print_err("plan-export", &err);
            goto done;
        }
        pm = pm_from_ref(session_model(s));
    } else {
        plan_done(&p);
        if (plan_json_read(text, len, in, NULL, &p, &err)) {
            args_print_err("plan-export", &err);
            goto done;
        }
        if (!model) {
            fprintf(stderr, "qscope plan-export: a plan file needs --model M for the tensor shapes "
                            "(a session carries them)\n");
            rc = 2;
            goto done;
        }
    }
    if (model) {
        if (!(m = args_load_model(model, tok))) goto done;
        pm = (PlanModel)PLAN_MODEL_FROM_CONFIG(&m->cfg);
    }
    /* Phi-3 files stack q/k/v (attn_qkv / qkv_proj) and gate/up (ffn_up /
     * gate_up_proj): per-projection names would match no tensor in
     * llama-quantize or the HF quantizers, so the export would silently do
     * nothing there. */
    const char *arch = m ? m->cfg.arch : s ? session_model(s)->arch : "";
    if (strcmp(arch, "phi3") == 0) {
        fprintf(stderr, "qscope plan-export: phi3 stores q/k/v and gate/up as stacked tensors (attn_qkv, ffn_up; "
                        "qkv_proj, gate_up_proj); exporting per-projection formats to them is not supported\n");
        goto done;
    }
    if (plan_export(&p, &pm, (ExportTarget)t, &res, &rep, &err)) {
        err_wrap(&err, "%s", in);
        args_print_err("plan-export", &err);
        goto done;
    }
    if (write_out("plan-export", out, res)) goto done;
    rt = export_report_text(&rep);
    fprintf(stderr, "plan-export: '%s' for %s: %s", p.name, export_target_name((ExportTarget)t), rt ? rt : "\n");
    rc = 0;
done:
    export_report_done(&rep);
    free(rt);
    free(res);
    free(text);
    plan_done(&p);
    session_free(s);
    model_free(m);
    return rc;
}

int cmd_plan_import(int argc, char **argv) {
    const char *in = NULL, *from = NULL, *model = NULL, *tok = NULL, *out = NULL;
    const Opt opts[] = {
        OPT_STR("--from", &from, "llamacpp", "the file's format (llama.cpp's tensor types only)"),
        OPT_STR("-o", &out, "PLAN.json", "the plan to write"),
        OPT_STR("--model", &model, "M", "match the names against this model's tensors and validate on it"),
        OPT_STR("--tokenizer", &tok, "T", "llama2.c tokenizer .bin (for a .bin --model)"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "plan-import", .usage = IMPORT_USAGE, .tables = {opts}, .pos = {&in}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!in || !out || !from) {
        fprintf(stderr, "qscope plan-import: need FILE, --from llamacpp and -o PLAN.json\n");
        opts_usage(&spec, stderr);
        return 2;
    }
    if (export_target_parse(from) != EXPORT_LLAMACPP) {
        fprintf(stderr, "qscope plan-import: --from '%s': only llamacpp tensor-type files are imported\n", from);
        return 2;
    }
    Err err;
    err_init(&err);
    int rc = 1;
    char *text = NULL;
    size_t len = 0;
    Model *m = NULL;
    Plan p;
    plan_init(&p);
    PlanModel pm;
    if (file_read_all(in, (size_t)64 << 20, &text, &len, &err)) {
        args_print_err("plan-import", &err);
        goto done;
    }
    if (model) {
        if (!(m = args_load_model(model, tok))) goto done;
        pm = (PlanModel)PLAN_MODEL_FROM_CONFIG(&m->cfg);
    }
    plan_done(&p);
    if (plan_import_llamacpp(text, len, in, m ? &pm : NULL, &p, &err)) {
        args_print_err("plan-import", &err);
        goto done;
    }
    if (plan_json_save(&p, out, &err)) {
        args_print_err("plan-import", &err);
        goto done;
    }
    fprintf(stderr, "plan-import: %s -> %s (%lld rules)\n", in, out, (long long)p.n_rules);
    rc = 0;
done:
    plan_done(&p);
    model_free(m);
    free(text);
    return rc;
}
