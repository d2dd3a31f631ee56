/* qscope quant: execute a plan and report what each site became. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/cmd_plan.h"
#include "cli/opts.h"
#include "core/dist.h"
#include "core/pool.h"
#include "core/progress.h"
#include "quant/qlinear_aqlm.h"
#include "quant/qlinear_build.h"
#include "sessions/qmodel_dist.h"
#include "sessions/qmodel_file.h"

static const char QUANT_USAGE[] =
    "usage: qscope quant MODEL (--plan PLAN | --preset NAME) [--stats STATS] [--threads N] [--json]\n\n"
    "Quantizes every site of MODEL with the plan (rtn, gptq, adadim, aqlm; SmoothQuant and\n"
    "static activation scales from --stats) and builds the kernels the quantized model runs,\n"
    "then prints per site: the plan code, the kernel, AdaDim's choice, the seconds its\n"
    "quantization took and the relative weight error ‖W - Wq‖²/‖W‖² (squared, like every\n"
    "relative error qscope prints); the exact bits per weight and the weights' bytes. With\n"
    "-o FILE the quantized weights and the plan are stored (sessions/qmodel_file.h) for\n"
    "`qscope eval --quant FILE`, and the file's own size is printed too (it stores the codes\n"
    "unpacked, with f32 scales, the plan and a header).\n\n";

int cmd_quant(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *stats_path = NULL, *out_path = NULL;
    int64_t threads = 0;
    int json = 0;
    PlanCli pc;
    plancli_init(&pc);
    const Opt opts[] = {
        OPT_STR("-o", &out_path, "FILE", "write the quantized model"),
        OPT_STR("--stats", &stats_path, "STATS", "stats file from `qscope calib`"),
        OPT_STR("--tokenizer", &tok_path, "T", "llama2.c tokenizer .bin (for .bin models)"),
        OPT_INT("--threads", &threads, 1, 256, "N", "threads (default: all CPUs)"),
        OPT_FLAG("--json", &json, "one JSON object on stdout"),
        OPT_END,
    };
    Opt plan_opts[PLANCLI_NOPTS];
    plancli_opts(&pc, 1, plan_opts);
    const OptSpec spec = {.cmd = "quant", .usage = QUANT_USAGE, .tables = {opts, plan_opts}, .pos = {&model_path}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!model_path || (!pc.plan_path && !pc.preset)) {
        fprintf(stderr, "qscope quant: need MODEL and --plan PLAN (or --preset NAME)\n");
        opts_usage(&spec, stderr);
        return 2;
    }
    int rc = 1;
    size_t file_bytes = 0;
    Err err;
    err_init(&err);
    QStatsFile sf;
    memset(&sf, 0, sizeof sf);
    Plan plan;
    plan_init(&plan);
    Pool *pool = NULL;
    QModel *qm = NULL;
    Model *m = args_load_model(model_path, tok_path);
    if (!m) goto done;
    if (plancli_load(&pc, m, stats_path, NULL, &sf, &plan, NULL, &err) || pool_new((int)threads, &pool, &err)) {
        args_print_err("quant", &err);
        goto done;
    }
    Progress prog;
    progress_init(&prog);
    args_cancel_on_sigint(&prog);
    QModelStats qs = {sf.cs, sf.h};
    /* Under mpirun the sites are shared out over the ranks and gathered on
     * rank 0, which alone keeps the unpacked weights, writes them and
     * reports; the other ranks are done once they have sent theirs. */
    if (qmodel_build_dist(m, &plan, &qs, QDIST_ROOT | (out_path && dist_rank() == 0 ? QDIST_KEEP : 0), pool, &prog,
                          &qm, &err)) {
        args_print_err("quant", &err);
        goto done;
    }
    if (!qm) { /* a rank other than 0: its sites went to rank 0 */
        rc = 0;
        goto done;
    }
    if (out_path && dist_rank() == 0) {
        if (qmodel_file_save(qm, &plan, out_path, &err)) {
            args_print_err("quant", &err);
            goto done;
        }
        struct stat fst;
        if (stat(out_path, &fst) == 0) file_bytes = (size_t)fst.st_size;
        fprintf(stderr, "quant: wrote %s\n", out_path);
    }
    cJSON *jo = NULL, *sites = NULL, *notes = NULL;
    int ok = 1;
    if (json) {
        jo = cJSON_CreateObject();
        ok = jo && json_set_str(jo, "plan", plan.name) && json_setf(jo, "bpw", "%.6f", qm->bpw) &&
             json_set_num(jo, "bytes", (double)qm->bytes) && json_set_num(jo, "file_bytes", (double)file_bytes) &&
             json_set_num(jo, "params", (double)qm->params) && json_set_num(jo, "bits", (double)qm->bits) &&
             json_set_num(jo, "kernel_bytes", (double)qm->kernel_bytes) && json_setf(jo, "seconds", "%.4f", qm->seconds) &&
             (sites = json_add_array(jo, "sites")) && (notes = json_add_array(jo, "notes"));
    } else {
        printf("%-10s %-22s %-12s %-7s %-9s %s\n", "site", "plan", "kernel", "adadim", "seconds", "rel_err |W-Wq|^2/|W|^2");
    }
    for (int64_t l = 0; ok && l < qm->n_layers; l++)
        for (int p = 0; ok && p < PROJ_COUNT; p++) {
            int64_t i = l * PROJ_COUNT + p;
            char code[64], site[32];
            plan_entry_code(&qm->res.lin[i].e, code, sizeof code);
            snprintf(site, sizeof site, "%lld.%s", (long long)l, proj_name((Proj)p));
            const char *k = qm->lin[i] ? (qlinear_is_aqlm(qm->lin[i]) ? qlinear_aqlm_kernel(qm->lin[i])
                                                                      : qlinear_kernel_name(qm->lin[i]))
                                       : "model-f32";
            const char *ad = qm->adadim_dim[i] == GROUP_OC ? "oc" : qm->adadim_dim[i] == GROUP_IC ? "ic" : "-";
            /* squared, the one "relative error" of report, calib and the Sensitivity view */
            double re2 = qm->site_rel_err[i] * qm->site_rel_err[i];
            if (json) {
                cJSON *so = cJSON_CreateObject();
                ok = json_push(sites, so) && json_set_str(so, "site", site) && json_set_str(so, "code", code) &&
                     json_set_str(so, "kernel", k) && json_set_str(so, "adadim", ad) &&
                     json_setf(so, "rel_err", "%.6g", re2) && json_setf(so, "seconds", "%.4f", qm->site_seconds[i]);
            } else {
                printf("%-10s %-22s %-12s %-7s %-9.4f %.6f\n", site, code, k, ad, qm->site_seconds[i], re2);
            }
        }
    if (json) {
        for (int64_t i = 0; ok && i < qm->n_notes; i++) ok = json_push(notes, cJSON_CreateString(qm->notes[i]));
        if (args_print_json("quant", json_finish(jo, ok))) goto done;
    } else {
        for (int64_t i = 0; i < qm->n_notes; i++) printf("note: %s\n", qm->notes[i]);
        printf("plan %s: %.4f bits per weight, weights %zu bytes (%lld weights), kernels hold %zu bytes, %.2f s\n",
               plan.name, qm->bpw, qm->bytes, (long long)qm->params, qm->kernel_bytes, qm->seconds);
        /* the file holds more than the weights: say how much, so the two sizes are not confused */
        if (out_path && file_bytes)
            printf("file %s: %zu bytes (codes stored a byte or more each with f32 scales, plus the plan and\n"
                   "  a header; the %zu bytes above count the weights packed at their bits)\n",
                   out_path, file_bytes, qm->bytes);
    }
    rc = 0;
done:
    qmodel_free(qm);
    pool_free(pool);
    plan_done(&plan);
    qstats_close(&sf);
    model_free(m);
    return rc;
}
