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
#include "cli/opts.h"
#include "tui/app.h"
#include "tui/keys.h"

static const char TUI_USAGE[] =
    "usage: qscope [MODEL] [--tokenizer T] [--session S] [--text F] [--calib-text C] [--threads N]\n"
    "              [--ctx N] [--chunks N] [--samples N] [--seqlen L] [--numerics M]\n"
    "Opens the workbench: model, activation and sensitivity maps, plan editor,\n"
    "evaluation, log (press ? inside for the keys).\n"
    "  MODEL             .gguf file, Hugging Face directory, or llama2.c .bin (with --tokenizer);\n"
    "                    default: ../shared/models/stories260K/stories260K-f32.gguf beside the binary\n";

static const char TUI_EPILOG[] =
    "Calibration stats and written plans go to $XDG_CACHE_HOME/qscope (or ~/.cache/qscope).\n";

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
    int64_t threads = 0;
    int keys_md = 0, numerics = NUMERICS_EXACT;
    static const OptChoice numerics_choices[] = {{"exact", NUMERICS_EXACT}, {"llamacpp", NUMERICS_LLAMACPP}, {NULL, 0}};
    const Opt opts[] = {
        OPT_STR("--tokenizer", &o.tokenizer, "T", "llama2.c tokenizer .bin (for .bin models)"),
        OPT_STR("--text", &o.text_path, "F",
                "evaluation text, and calibration's unless --calib-text (default:\n"
                "../shared/text/tinystories_sample.txt beside the binary, if present);\n"
                "serving both, it is split: evaluation scores its first chunks and\n"
                "calibration draws from the last min(4096 tokens, half) past them"),
        OPT_STR("--calib-text", &o.calib_text_path, "C",
                "calibrate on C instead of the --text F that evaluation scores\n"
                "(keeps the plan from being tuned on the text it is scored on)"),
        OPT_STR("--session", &o.session, "S", "session file (shown in the title)"),
        OPT_INT("--threads", &threads, 1, 256, "N", "worker threads for jobs (default: all CPUs)"),
        OPT_INT("--ctx", &o.ctx, 2, 1 << 20, "N",
                "evaluation chunk length (default 512, or the model's context if\n"
                "shorter; longer is accepted with a warning, as in eval)"),
        OPT_INT("--chunks", &o.chunks, 1, INT64_MAX, "N",
                "evaluate at most N chunks (default: all, or all but calibration's\n"
                "part when --text serves both); calibration draws past them"),
        OPT_INT("--samples", &o.samples, 1, 1 << 24, "N", "calibration sequences (default 16)"),
        OPT_ENUM("--numerics", &numerics, numerics_choices, "M",
                 "evaluations in exact (default) or llamacpp numerics (as qscope eval)"),
        OPT_INT("--seqlen", &o.seqlen, 2, 1 << 20, "L",
                "calibration sequence length (default 256, or the model's context\n"
                "if shorter; longer is accepted with a warning, as in calib)"),
        OPT_FLAG("--keys-markdown", &keys_md, NULL), /* for docs/tui.md and the README (not in --help) */
        OPT_END,
    };
    const OptSpec spec = {.cmd = "tui", .usage = TUI_USAGE, .epilog = TUI_EPILOG, .tables = {opts}, .pos = {&o.model_path}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (keys_md) {
        keys_markdown(print_line, stdout);
        return 0;
    }
    o.threads = (int)threads;
    o.numerics = (Numerics)numerics;
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
