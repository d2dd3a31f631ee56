/* qscope export: a plan's quantized model as a GGUF llama.cpp runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/cmd_plan.h"
#include "cli/opts.h"
#include "core/pool.h"
#include "core/progress.h"
#include "sessions/gguf_export.h"

static const char EXPORT_USAGE[] =
    "usage: qscope export MODEL (--plan PLAN | --preset NAME | --quant QFILE) [--stats STATS]\n"
    "                     -o OUT.gguf [--fallback nearest|f16] [--threads N]\n\n"
    "Quantizes MODEL with the plan, or takes a `qscope quant -o` file's weights, and\n"
    "writes a GGUF llama.cpp loads: a GGUF MODEL's metadata, tokenizer and untouched\n"
    "tensors carried over (from a Hugging Face llama directory or a llama2.c .bin they\n"
    "are written from the loaded config and tokenizer, HF q/k rows in GGUF's order),\n"
    "every planned tensor written from qscope's own codes, bit for bit:\n"
    "fp16/bf16 as F16/BF16, ggml formats (q8_0 ... q6_k) as their blocks, int8/int5/int4 symmetric\n"
    "groups of whole 32-blocks along OC (or per row, or per tensor) as Q8_0/Q5_0/Q4_0 and\n"
    "asymmetric int5/int4 as Q5_1/Q4_1 (when the zero point is exact in fp16), so the file\n"
    "dequantizes to exactly the weights qscope evaluated. Entries no ggml type holds\n"
    "(per-IC groups, other group sizes, int8 asym, int6/3/2, fp8, AQLM) are refused unless\n"
    "--fallback says what to write: nearest (the source weights through ggml's reference\n"
    "quantizer of the nearest type qscope has, else F16) or f16. Activation formats are\n"
    "dropped (llama.cpp picks its own) and reported. The file is written atomically and\n"
    "re-read before the command succeeds.\n\n";

int cmd_export(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *stats_path = NULL, *qfile = NULL, *out = NULL;
    int64_t threads = 0;
    int fb = GGUF_FALLBACK_NONE;
    PlanCli pc;
    plancli_init(&pc);
    const Opt opts[] = {
        OPT_STR("--stats", &stats_path, "STATS", "stats file from `qscope calib` (gptq, adadim, aqlm, smoothquant)"),
        OPT_STR("--quant", &qfile, "QFILE", "a quantized model from `qscope quant -o` (no re-quantization)"),
        OPT_STR("-o", &out, "OUT.gguf", "the GGUF to write"),
        OPT_PARSE("--fallback", &fb, gguf_fallback_parse, "nearest or f16", "F",
                  "nearest or f16: what to write for entries no ggml type holds\n(default: refuse them)"),
        OPT_INT("--threads", &threads, 1, 256, "N", "threads (default: all CPUs)"),
        OPT_STR("--tokenizer", &tok_path, "T", "llama2.c tokenizer .bin (for .bin models)"),
        OPT_END,
    };
    Opt plan_opts[PLANCLI_NOPTS];
    plancli_opts(&pc, 1, plan_opts);
    const OptSpec spec = {.cmd = "export", .usage = EXPORT_USAGE, .tables = {opts, plan_opts}, .pos = {&model_path}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!model_path || !out || (!!pc.plan_path + !!pc.preset + !!qfile) != 1) {
        fprintf(stderr, "qscope export: need MODEL, one of --plan PLAN, --preset NAME or --quant QFILE, and -o OUT\n");
        opts_usage(&spec, stderr);
        return 2;
    }
    int rc = 1;
    Err err;
    err_init(&err);
    QStatsFile sf;
    memset(&sf, 0, sizeof sf);
    Plan plan;
    plan_init(&plan);
    Pool *pool = NULL;
    QModel *qm = NULL;
    QStored *stored = NULL;
    ExportReport rep;
    memset(&rep, 0, sizeof rep);
    char *rt = NULL;
    Model *m = args_load_model(model_path, tok_path);
    if (!m) goto done;
    /* refuse an unexportable source before building the plan and quantizing */
    if (gguf_export_check_source(m, &err)) {
        args_print_err("export", &err);
        goto done;
    }
    if (plancli_load(&pc, m, stats_path, qfile, &sf, &plan, &stored, &err) || pool_new((int)threads, &pool, &err)) {
        args_print_err("export", &err);
        goto done;
    }
    Progress prog;
    progress_init(&prog);
    args_cancel_on_sigint(&prog);
    QModelStats qs = {sf.cs, sf.h};
    if (stored ? qmodel_build_stored(m, &plan, stored, pool, &prog, &qm, &err)
               : qmodel_build_keep(m, &plan, &qs, pool, &prog, &qm, &err)) {
        args_print_err("export", &err);
        goto done;
    }
    Status st = gguf_export(m, qm, stored, plan.name, (GgufFallback)fb, out, &rep, &err);
    rt = export_report_text(&rep);
    fprintf(stderr, "export: '%s' -> %s: %s", plan.name, out, rt ? rt : "\n");
    if (st) {
        args_print_err("export", &err);
        goto done;
    }
    struct stat sb;
    if (stat(out, &sb) == 0)
        fprintf(stderr, "export: wrote %s (%lld bytes), re-read and compared\n", out, (long long)sb.st_size);
    rc = 0;
done:
    free(rt);
    export_report_done(&rep);
    qmodel_free(qm);
    qstored_free(stored);
    pool_free(pool);
    plan_done(&plan);
    qstats_close(&sf);
    model_free(m);
    return rc;
}
