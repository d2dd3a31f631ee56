/* qscope plan: write a plan JSON from a preset; and the plan options the
 * quant and eval commands share. */
#include "cli/cmd_plan.h"

#include <stdlib.h>
#include <string.h>

#include "analysis/qmodel.h"
#include "analysis/spikes.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "quant/format.h"
#include "quant/preset.h"
#include "sessions/plan_json.h"
#include "sessions/qmodel_file.h"

void plancli_init(PlanCli *o) {
    memset(o, 0, sizeof *o);
    o->group = -1;
    o->spike_k = SPIKES_DEFAULT_K;
    o->seed = 1;
    o->alpha = -1;
}

/* --spike-format: one of the three high-precision formats, spelled as
 * quant/format.h reads it (names, codes and aliases, any case). */
static int take_spike_format(const char *cmd, const Opt *o, const char *val) {
    int f = qformat_parse(val);
    if (f != QF_F16 && f != QF_FP8_E4M3 && f != QF_FP8_E5M2) {
        fprintf(stderr, "qscope %s: %s: '%s' is not one of fp16, fp8-e4m3, fp8-e5m2\n", cmd, o->name, val);
        return 0;
    }
    *(const char **)o->user = val;
    return 1;
}

static void preset_list(FILE *f) {
    int n;
    const PresetInfo *p = plan_presets(&n);
    for (int i = 0; i < n; i++) fprintf(f, "                      %-18s %s\n", p[i].name, p[i].desc);
}

void plancli_opts(PlanCli *o, int with_plan_file, Opt t[PLANCLI_NOPTS]) {
    const Opt opts[PLANCLI_NOPTS] = {
        OPT_STR("--plan", &o->plan_path, "FILE", with_plan_file ? "plan JSON (from `qscope plan` or the TUI)" : NULL),
        {.name = "--preset", .kind = OPTK_STR, .str = &o->preset, .metavar = "NAME",
         .help = "a preset instead of a plan file:", .help_more = preset_list},
        OPT_INT("--group", &o->group, 0, 1 << 20, "G",
                "group size of the preset (default 128; 0 = per-channel); where G\n"
                "does not divide a dimension the plan falls back visibly (notes)"),
        OPT_INT("--spike-k", &o->spike_k, 1, 64, "K",
                "spike-aware-w8a8: the top K sites of --stats' spike ranking kept in\n"
                "high precision (default 3); random-k keeps as many projections at\n"
                "random (with --stats: as many as spike-aware would; else K)"),
        OPT_FN("--spike-format", take_spike_format, &o->spike_format, "F",
               "fp16 (default), fp8-e4m3 or fp8-e5m2 for those sites"),
        OPT_INT("--seed", &o->seed, 0, INT64_MAX, "S", "random-k seed (default 1)"),
        OPT_FLOAT("--alpha", &o->alpha, 1e-6, 1, "A", "smoothquant-w8a8 alpha (default 0.5)"),
        OPT_FLAG("--act-static", &o->act_static, "w8a8 presets: static activation scales from --stats"),
        OPT_FLAG("--skip-first", &o->skip_first, "w8a8 presets: leave token 0 out of the activation range"),
        OPT_END,
    };
    memcpy(t, opts, sizeof opts);
}

Status plancli_build(const PlanCli *o, const Model *m, const QStatsFile *stats, Plan *out, Err *err) {
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    plan_init(out);
    if (o->plan_path && o->preset)
        return err_set(err, ST_ERR_ARG, "give either --plan or --preset, not both");
    if (o->plan_path) return plan_json_load(o->plan_path, &pm, out, err);
    if (!o->preset) return err_set(err, ST_ERR_ARG, "no plan: pass --plan FILE or --preset NAME");
    PresetOpts po;
    preset_opts_default(&po);
    if (o->group >= 0) po.group = o->group;
    if (o->spike_format) po.spike_fmt = (QFormat)qformat_parse(o->spike_format);
    po.seed = (uint64_t)o->seed;
    if (o->alpha > 0) po.alpha = (float)o->alpha;
    po.act_static = o->act_static;
    po.act_skip_first = o->skip_first;
    char **sites = NULL;
    int64_t n_sites = 0;
    Status st;
    int spike_aware = !strcmp(o->preset, "spike-aware-w8a8"), random_k = !strcmp(o->preset, "random-k");
    if (spike_aware && (!stats || !stats->cs))
        return err_set(err, ST_ERR_ARG, "preset 'spike-aware-w8a8' needs the spike ranking: pass --stats STATS from `qscope calib`");
    if ((spike_aware || random_k) && stats && stats->cs) {
        if ((st = spikes_top_sites(stats->cs, o->spike_k, &sites, &n_sites, err))) return st;
        po.spikes = (const char *const *)sites;
        po.n_spikes = n_sites;
    }
    /* random-k with the ranking: as many projections as spike-aware keeps (the
     * paper's control); without it: --spike-k projections */
    po.random_k = random_k && n_sites ? 0 : o->spike_k;
    st = plan_preset(out, o->preset, &po, &pm, err);
    for (int64_t i = 0; i < n_sites; i++) free(sites[i]);
    free(sites);
    if (st) return st;
    if (n_sites && spike_aware &&
        (st = plan_add_note(out, err, "spike-aware: top %lld sites by calibration's max/median ranking (%s)",
                            (long long)n_sites, stats->cs->params.text_path)))
        return st;
    return plan_validate(out, &pm, err);
}

Status plancli_load(const PlanCli *o, const Model *m, const char *stats_path, const char *qfile, QStatsFile *sf,
                    Plan *plan, QStored **stored, Err *err) {
    Status st;
    if (stats_path && (st = qstats_open(stats_path, m, sf, err))) return st;
    if (qfile) return qmodel_file_load(qfile, m, plan, stored, err);
    return plancli_build(o, m, stats_path ? sf : NULL, plan, err);
}

int plancli_write(const Plan *p, const char *out_path) {
    Err err;
    err_init(&err);
    char *json = NULL;
    if (out_path ? plan_json_save(p, out_path, &err) : plan_json_write(p, &json, &err)) {
        args_print_err("plan", &err);
        return -1;
    }
    if (out_path) fprintf(stderr, "plan: wrote %s\n", out_path);
    else fputs(json, stdout);
    free(json);
    return 0;
}

static void plan_usage(FILE *f) {
    fprintf(f, "usage: qscope plan MODEL --preset NAME [--stats STATS] [options] -o PLAN.json\n"
               "       qscope plan MODEL --auto (--bpw B | --bytes N) --stats STATS [...] (see --auto --help)\n"
               "Builds a preset plan for MODEL's shape and writes it as JSON (schema_version %d),\n"
               "printing its fallbacks, size and bits per weight.\n",
            PLAN_JSON_SCHEMA_VERSION);
}

int cmd_plan(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *stats_path = NULL, *out_path = NULL;
    PlanCli pc;
    plancli_init(&pc);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--auto")) return cmd_plan_auto(argc, argv);
    const Opt opts[] = {
        OPT_STR("--tokenizer", &tok_path, "T", "llama2.c tokenizer .bin (for .bin models)"),
        OPT_STR("--stats", &stats_path, "STATS", "stats file from `qscope calib` (spike-aware needs its ranking)"),
        OPT_STR("-o", &out_path, "PLAN.json", "output path (default: print the JSON on stdout)"),
        OPT_END,
    };
    Opt plan_opts[PLANCLI_NOPTS];
    plancli_opts(&pc, 0, plan_opts);
    const OptSpec spec = {.cmd = "plan", .usage_fn = plan_usage, .tables = {opts, plan_opts}, .pos = {&model_path}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!model_path || !pc.preset || pc.plan_path) {
        fprintf(stderr, "qscope plan: need MODEL and --preset NAME\n");
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
    Model *m = args_load_model(model_path, tok_path);
    if (!m) goto done;
    if (plancli_load(&pc, m, stats_path, NULL, &sf, &plan, NULL, &err)) {
        args_print_err("plan", &err);
        goto done;
    }
    for (int64_t i = 0; i < plan.n_notes; i++) fprintf(stderr, "plan: note: %s\n", plan.notes[i]);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    PlanSize sz;
    if (plan_size(&plan, &pm, NULL, &sz, &err)) {
        args_print_err("plan", &err);
        goto done;
    }
    fprintf(stderr, "plan '%s': %lld rules, %.4f bits per weight (linear layers %.4f), %zu bytes%s\n", plan.name,
            (long long)plan.n_rules, sz.bpw_all, sz.bpw_lin, sz.all_bytes,
            qmodel_plan_needs_stats(&plan, &pm, NULL) ? "; needs --stats to quantize" : "");
    if (plancli_write(&plan, out_path)) goto done;
    rc = 0;
done:
    plan_done(&plan);
    qstats_close(&sf);
    model_free(m);
    return rc;
}
