#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"

int args_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        fprintf(stderr, "qscope %s: %s: '%s' is not a whole number\n", cmd, opt, s);
        return 0;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "qscope %s: %s: %lld is outside [%lld, %lld]\n", cmd, opt, v,
                (long long)lo, (long long)hi);
        return 0;
    }
    *out = v;
    return 1;
}

int args_numerics(const char *cmd, const char *s, Numerics *out) {
    if (numerics_parse(s, out)) return 1;
    fprintf(stderr, "qscope %s: --numerics: '%s' is not exact or llamacpp\n", cmd, s);
    return 0;
}

int args_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || isnan(v)) {
        fprintf(stderr, "qscope %s: %s: '%s' is not a number\n", cmd, opt, s);
        return 0;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "qscope %s: %s: %g is outside [%g, %g]\n", cmd, opt, v, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

int args_print_json(const char *cmd, cJSON *o) {
    char *line = o ? json_print_line(o, 9) : NULL;
    cJSON_Delete(o);
    if (!line) {
        fprintf(stderr, "qscope %s: out of memory\n", cmd);
        return -1;
    }
    printf("%s\n", line);
    free(line);
    return 0;
}

void args_print_err(const char *cmd, const Err *err) {
    fprintf(stderr, "qscope %s: %s: %s\n", cmd, status_message(err->code), err->detail);
}

Model *args_load_model(const char *path, const char *tokenizer_path) {
    Err err;
    err_init(&err);
    ModelLoadOpts o = {.tokenizer_path = tokenizer_path};
    Model *m = NULL;
    if (model_load(path, &o, &m, &err) != ST_OK) {
        fprintf(stderr, "qscope: cannot load model: %s: %s\n", status_message(err.code), err.detail);
        return NULL;
    }
    return m;
}

double args_now(void) { return clock_now(); }

void progress_bar_init(ProgressBar *pb, const char *label) {
    pb->label = label;
    pb->t0 = args_now();
    pb->last = 0;
    const char *f = getenv("QS_PROGRESS");
    pb->tty = isatty(2) || (f && strcmp(f, "1") == 0);
}

void progress_bar_draw(ProgressBar *pb, int64_t done, int64_t total, const char *extra) {
    if (!pb->tty) return;
    double now = args_now();
    if (done < total && now - pb->last < 0.1) return;
    pb->last = now;
    double frac = total > 0 ? (double)done / (double)total : 0;
    if (frac > 1) frac = 1;
    int width = 30, fill = (int)(frac * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    double el = now - pb->t0;
    double eta = frac > 0 ? el / frac - el : 0;
    fprintf(stderr, "\r%s [%s] %3.0f%% %lld/%lld  %.1fs eta %.1fs %s\033[K", pb->label, bar,
            frac * 100, (long long)done, (long long)total, el, eta, extra ? extra : "");
    fflush(stderr);
}

void progress_bar_finish(ProgressBar *pb) {
    if (pb->tty) fputc('\n', stderr);
}

static Progress *sigint_progress;

static void on_sigint(int sig) {
    (void)sig;
    if (sigint_progress) progress_cancel(sigint_progress);
    signal(SIGINT, SIG_DFL);
}

void args_cancel_on_sigint(Progress *p) {
    sigint_progress = p;
    signal(SIGINT, on_sigint);
}
