/* qscope [MODEL] [--tokenizer T] [--session S] [--text F] [--threads N]:
 * the workbench TUI. Without MODEL the shared stories260K (beside the
 * binary's directory) is opened; the text defaults to the shared TinyStories
 * sample. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "tui/app.h"
#include "tui/keys.h"

static void tui_usage(FILE *f) {
    fprintf(f,
            "usage: qscope [MODEL] [--tokenizer T] [--session S] [--text F] [--calib-text C] [--threads N]\n"
            "              [--ctx N] [--chunks N] [--samples N] [--seqlen L]\n"
            "Opens the workbench: model, activation and sensitivity maps, plan editor,\n"
            "evaluation, log (press ? inside for the keys).\n"
            "  MODEL         .gguf file, Hugging Face directory, or llama2.c .bin (with --tokenizer);\n"
            "                default: ../shared/models/stories260K/stories260K-f32.gguf beside the binary\n"
            "  --text F      evaluation text, and calibration's unless --calib-text (default:\n"
            "                ../shared/text/tinystories_sample.txt beside the binary, if present);\n"
            "                serving both, it is split: evaluation scores its first chunks and\n"
            "                calibration draws from the last min(4096 tokens, half) past them\n"
            "  --calib-text C  calibrate on C instead of the --text F that evaluation scores\n"
            "                (keeps the plan from being tuned on the text it is scored on)\n"
            "  --session S   session file (shown in the title)\n"
            "  --threads N   worker threads for jobs (default: all CPUs)\n"
            "  --ctx N       evaluation chunk length (default 512, or the model's context if\n"
            "                shorter; longer is accepted with a warning, as in eval)\n"
            "  --chunks N    evaluate at most N chunks (default: all, or all but calibration's\n"
            "                part when --text serves both); calibration draws past them\n"
            "  --samples N   calibration sequences (default 16)\n"
            "  --seqlen L    calibration sequence length (default 256, or the model's context\n"
            "                if shorter; longer is accepted with a warning, as in calib)\n"
            "Calibration stats and written plans go to $XDG_CACHE_HOME/qscope (or ~/.cache/qscope).\n");
}

/* dir of the running binary + "/" + rel, if that file exists; else NULL. */
static const char *beside_binary(const char *rel, char *buf, size_t n) {
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return NULL;
    exe[k] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    char joined[PATH_MAX + 256];
    snprintf(joined, sizeof joined, "%s/%s", exe, rel);
    if (access(joined, R_OK) != 0) return NULL;
    if (!realpath(joined, buf)) snprintf(buf, n, "%s", joined);
    return buf;
}

static void print_line(void *user, const char *line) { fprintf(user, "%s\n", line); }

int cmd_tui(int argc, char **argv) {
    TuiOpts o = {0};
    const char *threads = NULL, *ctx = NULL, *chunks = NULL, *samples = NULL, *seqlen = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            tui_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--keys-markdown") == 0) { /* for docs/tui.md and the README (not in --help) */
            keys_markdown(print_line, stdout);
            return 0;
        }
        int r;
        if ((r = args_opt(argc, argv, &i, "--tokenizer", &o.tokenizer)) ||
            (r = args_opt(argc, argv, &i, "--session", &o.session)) ||
            (r = args_opt(argc, argv, &i, "--text", &o.text_path)) ||
            (r = args_opt(argc, argv, &i, "--calib-text", &o.calib_text_path)) ||
            (r = args_opt(argc, argv, &i, "--threads", &threads)) || (r = args_opt(argc, argv, &i, "--ctx", &ctx)) ||
            (r = args_opt(argc, argv, &i, "--chunks", &chunks)) ||
            (r = args_opt(argc, argv, &i, "--samples", &samples)) ||
            (r = args_opt(argc, argv, &i, "--seqlen", &seqlen))) {
            if (r < 0) return 2;
            continue;
        }
        if (a[0] == '-' || o.model_path) {
            fprintf(stderr, "qscope: unknown argument '%s' (see qscope tui --help)\n", a);
            return 2;
        }
        o.model_path = a;
    }
    if (threads) {
        int64_t v;
        if (!args_int("tui", "--threads", threads, 1, 256, &v)) return 2;
        o.threads = (int)v;
    }
    if (ctx && !args_int("tui", "--ctx", ctx, 2, 1 << 20, &o.ctx)) return 2;
    if (chunks && !args_int("tui", "--chunks", chunks, 1, INT64_MAX, &o.chunks)) return 2;
    if (samples && !args_int("tui", "--samples", samples, 1, 1 << 24, &o.samples)) return 2;
    if (seqlen && !args_int("tui", "--seqlen", seqlen, 2, 1 << 20, &o.seqlen)) return 2;
    char mbuf[PATH_MAX], tbuf[PATH_MAX]; /* realpath needs PATH_MAX bytes */
    if (!o.model_path) {
        o.model_path = beside_binary("../shared/models/stories260K/stories260K-f32.gguf", mbuf, sizeof mbuf);
        if (!o.model_path) {
            fprintf(stderr, "qscope: no MODEL given and no ../shared/models/stories260K/stories260K-f32.gguf "
                            "beside the binary (see qscope --help)\n");
            return 2;
        }
    }
    if (!o.text_path) o.text_path = beside_binary("../shared/text/tinystories_sample.txt", tbuf, sizeof tbuf);
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "qscope: the workbench needs a terminal (for scripts use the subcommands: qscope --help)\n");
        return 2;
    }
    return tui_run(&o);
}
