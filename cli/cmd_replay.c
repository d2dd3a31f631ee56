/* qscope replay: run a session's action log (or a hand-written action list)
 * headlessly, write the resulting session, and with --check compare every
 * recorded evaluation with the re-run. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "sessions/replay.h"
#include "sessions/session.h"

static const char REPLAY_USAGE[] =
    "usage: qscope replay FILE [-o OUT] [--check] [--json] [--model M] [--tokenizer T]\n"
    "                     [--threads N] [--work-dir D] [--cache DIR] [--speed]\n\n"
    "Runs the actions of FILE — a session, or a hand-written list: [{\"action\": \"calibrate\",\n"
    "\"args\": {...}}, ...] or {\"model\": M, \"actions\": [...]} — headlessly: calibrate,\n"
    "apply_preset, set_rule / set_cell / remove_rule / set_plan, undo / redo,\n"
    "rename_plan / copy_plan / delete_plan / select_plan, evaluate (see sessions/session.h\n"
    "for their arguments). Other recorded actions (view moves) are kept and skipped.\n\n";

typedef struct {
    int quiet;
} ReplayView;

static void on_action(void *user, int64_t i, const char *name, const char *summary) {
    ReplayView *v = user;
    if (!v->quiet) fprintf(stderr, "[%" PRId64 "] %s: %s\n", i, name, summary);
}

/* Removes the files replay wrote into a temporary work directory, then it. */
static void remove_work_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "replay-", 7)) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The --json summary: the run, the output and the check's differences
 * (recorded and replayed values with all 17 digits). */
static int print_json(const char *in, const char *out, int check, int rc, Status st, const Err *err,
                      const ReplayReport *rep, double seconds) {
    cJSON *o = cJSON_CreateObject(), *ck = NULL, *da = NULL;
    int ok = o && json_set_str(o, "file", in) && json_set_bool(o, "ok", rc == 0) &&
             json_set_num(o, "actions", (double)rep->n_actions) && json_set_num(o, "run", (double)rep->n_run) &&
             json_set_num(o, "skipped", (double)rep->n_skipped) && json_set_num(o, "threads", rep->threads) &&
             json_set_num(o, "recorded_threads", (double)rep->recorded_threads) &&
             json_set_num(o, "results", rep->out ? (double)session_n_results(rep->out) : 0) &&
             json_setf(o, "seconds", "%.3f", seconds) && (!st || json_set_str(o, "error", err->detail)) &&
             (!out || st || json_set_str(o, "output", out));
    if (ok && check && !st)
        ok = (ck = json_add_object(o, "check")) && json_set_num(ck, "compared", (double)rep->n_compared) &&
             json_set_bool(ck, "bit_identical", rep->recorded_threads == 0 || rep->recorded_threads == rep->threads) &&
             (da = json_add_array(ck, "differences"));
    for (int64_t i = 0; ok && da && i < rep->n_diffs; i++) {
        const ReplayDiff *d = &rep->diffs[i];
        cJSON *e = cJSON_CreateObject();
        ok = json_push(da, e) && json_set_num(e, "result", (double)d->result) && json_set_str(e, "what", d->what) &&
             (isnan(d->tol) ? json_set_str(e, "text", d->text)
                            : json_setf(e, "recorded", "%.17g", d->recorded) &&
                                  json_setf(e, "replayed", "%.17g", d->replayed) &&
                                  json_setf(e, "tolerance", "%.17g", d->tol));
    }
    return args_print_json("replay", json_finish(o, ok));
}

int cmd_replay(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *model = NULL, *tok = NULL, *work = NULL, *cache = NULL;
    int64_t threads = 0;
    int check = 0, json = 0, speed = 0;
    const Opt opts[] = {
        OPT_STR("-o", &out, "OUT", "write the resulting session to OUT (atomically)"),
        OPT_FLAG("--check", &check,
                 "compare every recorded evaluation with the re-run and the recorded\n"
                 "plans with the replayed ones; exit 1 with a diff on any mismatch.\n"
                 "At the recorded thread count results must be bit-identical; at\n"
                 "another: |dppl|/ppl <= 1e-4, |dkld| <= 1e-5 + 1e-3*kld, top-1 within\n"
                 "one position, layer errors within 1e-6 + 1e-3*value; bpw, bytes,\n"
                 "chunks and tokens always exact; speeds and times never compared"),
        OPT_FLAG("--json", &json, "print a JSON summary on stdout"),
        OPT_STR("--model", &model, "M",
                "replay on another model of the same architecture (a plan naming\n"
                "layers M lacks is an error)"),
        OPT_STR("--tokenizer", &tok, "T", "llama2.c tokenizer .bin (for a llama2.c --model)"),
        OPT_INT("--threads", &threads, 1, 256, "N", "threads (default: the recorded results' count, else all CPUs)"),
        OPT_STR("--work-dir", &work, "D",
                "where calibrate writes stats files (default: OUT.d with -o,\n"
                "else a temporary directory removed afterwards)"),
        OPT_STR("--cache", &cache, "DIR", "evaluation reference cache (default: none)"),
        OPT_FLAG("--speed", &speed, "measure prefill/decode speed in evaluations (not compared)"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "replay", .usage = REPLAY_USAGE, .tables = {opts}, .pos = {&in}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!in) {
        fprintf(stderr, "qscope replay: need a session or action-list FILE\n");
        opts_usage(&spec, stderr);
        return 2;
    }
    char workbuf[4096];
    int temp_work = 0;
    if (!work) {
        if (out) {
            snprintf(workbuf, sizeof workbuf, "%s.d", out);
        } else {
            const char *tmp = getenv("TMPDIR");
            snprintf(workbuf, sizeof workbuf, "%s/qscope-replay.XXXXXX", tmp && *tmp ? tmp : "/tmp");
            if (!mkdtemp(workbuf)) {
                fprintf(stderr, "qscope replay: cannot create a temporary work directory in %s\n",
                        tmp && *tmp ? tmp : "/tmp");
                return 1;
            }
            temp_work = 1;
        }
        work = workbuf;
    }
    /* a directory that cannot be made (a read-only file system, a missing
     * parent) is reported here, not as a later stats or cache write failure */
    const char *dirs[2] = {work, cache};
    for (int k = 0; k < 2; k++) {
        if (!dirs[k]) continue;
        struct stat sb;
        int made = mkdir(dirs[k], 0777) == 0 || errno == EEXIST;
        if (!made || stat(dirs[k], &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "qscope replay: cannot make the %s directory %s: %s\n", k ? "cache" : "work", dirs[k],
                    made ? "it exists and is not a directory" : strerror(errno));
            if (temp_work) rmdir(workbuf);
            return 1;
        }
    }

    ReplayOpts o;
    replay_opts_default(&o);
    o.model_path = model;
    o.tokenizer = tok;
    o.threads = (int)threads;
    o.work_dir = work;
    o.cache_dir = cache;
    o.check = check;
    o.speed = speed;
    ReplayView view = {.quiet = json};
    o.on_action = on_action;
    o.user = &view;
    Err err;
    err_init(&err);
    ReplayReport rep;
    double t0 = args_now();
    Status st = replay_run(in, &o, &rep, &err);
    int rc = 0;
    if (st) {
        args_print_err("replay", &err);
        rc = 1;
    }
    for (int64_t i = 0; i < rep.n_notes; i++) fprintf(stderr, "replay: note: %s\n", rep.notes[i]);
    if (!st && out && rep.out) {
        if (session_save(rep.out, out, &err)) {
            args_print_err("replay", &err);
            rc = 1;
        }
    }
    char *diff = NULL;
    if (!st && check) {
        diff = replay_diff_text(&rep);
        if (rep.n_diffs) rc = 1;
    }
    if (json) {
        if (print_json(in, out, check, rc, st, &err, &rep, args_now() - t0) && !rc) rc = 1;
    } else if (!st) {
        printf("replayed %" PRId64 " actions (%" PRId64 " run, %" PRId64 " skipped) with %d threads in %.2f s%s%s\n",
               rep.n_actions, rep.n_run, rep.n_skipped, rep.threads, args_now() - t0, out ? " -> " : "",
               out ? out : "");
        if (check) {
            int same = rep.recorded_threads == 0 || rep.recorded_threads == rep.threads;
            if (rep.n_diffs == 0)
                printf("check: OK, %" PRId64 " values match (%s)\n", rep.n_compared,
                       same ? "bit-identical at the recorded thread count" : "within tolerance at another thread count");
            else
                printf("check: FAILED, %" PRId64 " of %" PRId64 " values differ (%s):\n%s", rep.n_diffs, rep.n_compared,
                       same ? "bit-identical required" : "tolerances apply", diff ? diff : "");
        }
    }
    free(diff);
    replay_report_done(&rep);
    if (temp_work) remove_work_dir(workbuf);
    return rc;
}
