/* qscope export: a plan's quantized model as a GGUF llama.cpp runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/cmd_plan.h"
#include "core/pool.h"
#include "core/progress.h"
#include "sessions/gguf_export.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: qscope export MODEL (--plan PLAN | --preset NAME | --quant QFILE) [--stats STATS]\n"
            "                     -o OUT.gguf [--fallback nearest|f16] [--threads N]\n\n"
            "Quantizes MODEL (a GGUF) with the plan, or takes a `qscope quant -o` file's weights,\n"
            "and writes a GGUF llama.cpp loads: MODEL's metadata, tokenizer and untouched tensors\n"
            "carried over, every planned tensor written from qscope's own codes, bit for bit:\n"
            "fp16/bf16 as F16/BF16, q8_0/q4_0 formats as their blocks, int8/int5/int4 symmetric\n"
            "groups of whole 32-blocks along OC (or per row, or per tensor) as Q8_0/Q5_0/Q4_0 and\n"
            "asymmetric int5/int4 as Q5_1/Q4_1 (when the zero point is exact in fp16), so the file\n"
            "dequantizes to exactly the weights qscope evaluated. Entries no ggml type holds\n"
            "(per-IC groups, other group sizes, int8 asym, int6/3/2, fp8, AQLM) are refused unless\n"
            "--fallback says what to write: nearest (the source weights through ggml's reference\n"
            "quantizer of the nearest type qscope has, else F16) or f16. Activation formats are\n"
            "dropped (llama.cpp picks its own) and reported. The file is written atomically and\n"
            "re-read before the command succeeds.\n\n"
            "  --stats STATS  stats file from `qscope calib` (gptq, adadim, aqlm, smoothquant)\n"
            "  --quant QFILE  a quantized model from `qscope quant -o` (no re-quantization)\n");
    plancli_help(f, 1);
}

int cmd_export(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *stats_path = NULL, *qfile = NULL, *out = NULL, *fbs = NULL,
               *val;
    int64_t threads = 0;
    PlanCli pc;
    plancli_init(&pc);
    for (int i = 1; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((r = plancli_parse(&pc, "export", argc, argv, &i)) != 0) {
            if (r < 0) return 2;
        } else if ((r = args_opt(argc, argv, &i, "--stats", &val)) != 0) {
            if (r < 0) return 2;
            stats_path = val;
        } else if ((r = args_opt(argc, argv, &i, "--quant", &val)) != 0) {
            if (r < 0) return 2;
            qfile = val;
        } else if ((r = args_opt(argc, argv, &i, "--tokenizer", &val)) != 0) {
            if (r < 0) return 2;
            tok_path = val;
        } else if ((r = args_opt(argc, argv, &i, "-o", &val)) != 0) {
            if (r < 0) return 2;
            out = val;
        } else if ((r = args_opt(argc, argv, &i, "--fallback", &val)) != 0) {
            if (r < 0) return 2;
            fbs = val;
        } else if ((r = args_opt(argc, argv, &i, "--threads", &val)) != 0) {
            if (r < 0 || !args_int("export", "--threads", val, 1, 256, &threads)) return 2;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "qscope export: unknown option '%s' (try --help)\n", argv[i]);
            return 2;
        } else if (!model_path) {
            model_path = argv[i];
        } else {
            fprintf(stderr, "qscope export: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    int fb = fbs ? gguf_fallback_parse(fbs) : GGUF_FALLBACK_NONE;
    if (fb < 0) {
        fprintf(stderr, "qscope export: --fallback '%s' is not nearest or f16\n", fbs);
        return 2;
    }
    if (!model_path || !out || (!!pc.plan_path + !!pc.preset + !!qfile) != 1) {
        fprintf(stderr, "qscope export: need MODEL, one of --plan PLAN, --preset NAME or --quant QFILE, and -o OUT\n");
        usage(stderr);
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
