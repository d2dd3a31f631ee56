/* Small helpers shared by the subcommands (their option tables are
 * cli/opts.h's): number parsing with range checks, model loading from
 * (path, --tokenizer), and a stderr progress bar. */
#ifndef QS_CLI_ARGS_H
#define QS_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

#include "core/progress.h"
#include "sessions/json.h"
#include "model/forward.h"
#include "model/model.h"

/* Parses a whole decimal integer in [lo, hi]; prints "cmd: opt: ..." and returns 0 on error. */
int args_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);

/* Parses a float in [lo, hi]; prints an error and returns 0 on failure. */
int args_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);

/* Prints a command's --json object o on one line of stdout
 * (sessions/json.h's json_print_line, 9 significant digits where a number
 * has no format of its own) and deletes o. o NULL means memory ran out: says
 * so ("qscope CMD: out of memory") and returns -1; else returns 0. */
int args_print_json(const char *cmd, cJSON *o);
/* Parses --numerics's value (exact | llamacpp, model/forward.h); prints an error
 * naming cmd and returns 0 for anything else. */
int args_numerics(const char *cmd, const char *s, Numerics *out);

/* Loads a model, printing "qscope: <detail>" on failure; returns NULL then. */
Model *args_load_model(const char *path, const char *tokenizer_path);

/* Prints an error from a status: "qscope CMD: message: detail". */
void args_print_err(const char *cmd, const Err *err);

/* A progress bar on stderr, redrawn at most ~10x/s. Silent when stderr is not
 * a terminal unless QS_PROGRESS=1. */
typedef struct ProgressBar {
    const char *label;
    double t0, last;
    int tty;
} ProgressBar;
void progress_bar_init(ProgressBar *pb, const char *label);
/* Draws done/total with an ETA and an optional extra text (may be NULL). */
void progress_bar_draw(ProgressBar *pb, int64_t done, int64_t total, const char *extra);
void progress_bar_finish(ProgressBar *pb);

/* Wall clock seconds (monotonic): the same clock as core/clock.h clock_now(). */
double args_now(void);

/* Installs a SIGINT handler that sets p->cancel (first Ctrl-C) so long jobs stop
 * cleanly; a second Ctrl-C restores the default action. p must stay valid. */
void args_cancel_on_sigint(Progress *p);

#endif
