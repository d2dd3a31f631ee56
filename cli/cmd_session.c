/* qscope session: create and inspect session files from the command line. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "sessions/session.h"

static void session_usage(FILE *f) {
    fprintf(f,
            "usage: qscope session new MODEL -o S.json [--tokenizer T]\n"
            "       qscope session show S.json\n\n"
            "new   writes an empty session for MODEL (path, fingerprint, shape)\n"
            "show  prints the model reference (and whether the file is still there), the\n"
            "      calibration, the plans, every result and the action log's length; a corrupt,\n"
            "      truncated or newer-version file is an error naming the problem\n");
}

static int session_show(const char *path) {
    Err err;
    err_init(&err);
    Session *s;
    if (session_load(path, &s, &err)) {
        args_print_err("session", &err);
        return 1;
    }
    const SessionModelRef *m = session_model(s);
    char msg[600];
    SessionModelCheck mc = session_model_status(s, path, msg, sizeof msg);
    printf("model      %s (fingerprint %016" PRIx64 ", %" PRId64 " layers, dim %" PRId64 ", hidden %" PRId64
           ", vocab %" PRId64 ")%s\n", m->path, m->fingerprint, m->n_layers, m->dim, m->hidden_dim, m->vocab_size,
           mc == SESSION_MODEL_MISSING ? "  [missing]" : "");
    if (mc == SESSION_MODEL_MISSING) fprintf(stderr, "qscope session: %s\n", msg);
    const SessionCalib *c = session_calib(s);
    if (c->present)
        printf("calibrate  %s: %" PRId64 " x %" PRId64 " tokens, seed %" PRIu64 ", %s -> %s\n", c->text ? c->text : "?",
               c->samples, c->seqlen, c->seed, c->mode, c->stats ? c->stats : "(no stats file)");
    else
        printf("calibrate  (not yet)\n");
    const char *cur = session_current_plan(s);
    for (int64_t i = 0; i < session_n_plans(s); i++)
        printf("plan       %s%s\n", session_plan_name(s, i),
               cur && !strcmp(cur, session_plan_name(s, i)) ? "  (current)" : "");
    if (session_n_results(s)) printf("results    %-4s %-20s %10s %10s %10s %7s %7s %4s\n", "id", "plan", "ppl", "ppl_base",
                                     "kld_mean", "top-1", "bpw", "thr");
    for (int64_t i = 0; i < session_n_results(s); i++) {
        const SessionResult *r = session_result(s, i);
        printf("           %-4" PRId64 " %-20.20s %10.4f %10.4f %10.6f %7.4f %7.3f %4" PRId64 "\n", r->id, r->plan, r->ppl,
               r->ppl_base, r->kld_mean, r->top1_agree, r->bpw, r->threads);
    }
    int64_t n = session_n_actions(s);
    printf("actions    %" PRId64 "%s%s%s\n", n, n ? " (last: " : "", n ? session_action(s, n - 1)->name : "", n ? ")" : "");
    session_free(s);
    return 0;
}

static int session_create(int argc, char **argv) {
    const char *model = NULL, *tok = NULL, *out = NULL;
    const Opt opts[] = {
        OPT_STR("-o", &out, "S.json", "the session file to write"),
        OPT_STR("--tokenizer", &tok, "T", "llama2.c tokenizer .bin (for a .bin MODEL)"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "session new", .usage = "usage: qscope session new MODEL -o S.json [--tokenizer T]\n",
                          .tables = {opts}, .pos = {&model}};
    int pr = opts_parse(&spec, argc - 1, argv + 1); /* argv[1] is "new" */
    if (pr != OPTS_OK) return pr;
    if (!model || !out) {
        fprintf(stderr, "qscope session new: need MODEL and -o S.json\n");
        return 2;
    }
    Model *m = args_load_model(model, tok);
    if (!m) return 1;
    Err err;
    err_init(&err);
    Session *s = NULL;
    int rc = 0;
    if (session_new(m, tok, &s, &err) || session_save(s, out, &err)) {
        args_print_err("session", &err);
        rc = 1;
    }
    session_free(s);
    model_free(m);
    return rc;
}

int cmd_session(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        session_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "new")) return session_create(argc, argv);
    if (!strcmp(argv[1], "show")) {
        if (argc != 3) {
            fprintf(stderr, "qscope session show: need exactly one session file\n");
            return 2;
        }
        return session_show(argv[2]);
    }
    fprintf(stderr, "qscope session: unknown subcommand '%s' (new, show)\n", argv[1]);
    return 2;
}
