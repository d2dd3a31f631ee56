/* qscope: entry point. Subcommands live in cli/; with no subcommand (or a
 * model path first) the TUI opens. This is the only file that calls exit(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/dist.h"
#include "core/suggest.h"

const Command cli_commands[] = {
    {"info", cmd_info, "architecture, shapes, dtypes, parameters, tokenizer, memory"},
    {"tokenize", cmd_tokenize, "token ids of a text"},
    {"ppl", cmd_ppl, "perplexity (llama.cpp protocol)"},
    {"synth", cmd_synth, "write a random-weight LLaMA GGUF of a real shape"},
    {"calib", cmd_calib, "calibrate: activation statistics, spikes, H, sensitivity -> stats file"},
    {"report", cmd_report, "print a map from a stats file (spikes, sensitivity, actquant, ...)"},
    {"tui", cmd_tui, "open the workbench"},
    {"plan", cmd_plan, "write a quantization plan (JSON) from a preset"},
    {"quant", cmd_quant, "quantize a model with a plan: sizes, kernels, per-site errors"},
    {"eval", cmd_eval, "evaluate a plan against the base model: PPL, KLD, top-1, bpw, speed"},
    {"replay", cmd_replay, "re-run a session's actions headlessly; --check compares the results"},
    {"plan-export", cmd_plan_export, "a plan for llama.cpp, GPTQModel or llm-compressor, with what is lost"},
    {"plan-import", cmd_plan_import, "a llama.cpp tensor-type file back into a plan"},
    {"export", cmd_export, "a plan's quantized weights as a GGUF llama.cpp runs (bit for bit), re-read and checked"},
    {"imatrix", cmd_imatrix, "llama.cpp's importance matrix from a stats file (llama-quantize --imatrix), and back"},
    {"session", cmd_session, "create (new) or inspect (show) a session file"},
    {"cache", cmd_cache, "list or clean the cache (calibration stats, H files, eval references, plans)"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f) {
    fprintf(f, "usage: qscope [MODEL] [--session S]      open the workbench TUI\n"
               "       qscope COMMAND [args] [--help]\n\ncommands:\n");
    for (const Command *c = cli_commands; c->name; c++) fprintf(f, "  %-12s %s\n", c->name, c->summary);
    fprintf(f, "\nMODEL is a .gguf file, a Hugging Face checkpoint directory, or a llama2.c .bin\n"
               "with --tokenizer TOK.bin.\n");
}

/* Commands that split their work over MPI ranks (core/dist.h), or that are
 * cheap enough for every rank to repeat; the others refuse to run under
 * mpirun with more than one rank rather than repeat work or race on files. */
static int dist_ok(const char *name) {
    static const char *const ok[] = {"ppl", "eval", "calib", "quant", "info", "tokenize"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(name, ok[i]) == 0) return 1;
    return 0;
}

/* Under several ranks, ranks other than 0 keep their stderr in a temporary
 * file (progress bars would otherwise print once per rank) and show it,
 * each line prefixed with the rank, only when they fail. */
static FILE *rank_err;      /* the captured stderr, or NULL */
static int rank_err_fd = -1; /* the real stderr */

static void rank_err_capture(void) {
    rank_err = tmpfile();
    if (!rank_err) return;
    fflush(stderr);
    rank_err_fd = dup(2);
    if (rank_err_fd < 0 || dup2(fileno(rank_err), 2) < 0) {
        fclose(rank_err);
        rank_err = NULL;
    }
}

static void rank_err_replay(void) {
    if (!rank_err || rank_err_fd < 0) return;
    fflush(stderr);
    dup2(rank_err_fd, 2);
    rewind(rank_err);
    char line[1024];
    int bol = 1;
    while (fgets(line, sizeof line, rank_err)) {
        if (bol) fputs(dist_prefix(), stderr);
        fputs(line, stderr);
        bol = strchr(line, '\n') != NULL;
    }
    fflush(stderr);
}

/* Ends the process with code; under MPI a failing rank shows its messages,
 * prefixed with the rank, and stops the whole job. */
static void finish(int code) {
    if (code != 0 && dist_size() > 1 && dist_rank() == 0) {
        fflush(stdout);
        fprintf(stderr, "qscope: %sfailed (exit %d): stopping the job\n", dist_prefix(), code);
    }
    if (code != 0) rank_err_replay();
    if (code != 0) dist_abort(code);
    dist_finalize();
    exit(code);
}

/* Runs command c: under several ranks only rank 0 writes to stdout. */
static void run_command(const Command *c, int argc, char **argv) {
    if (dist_size() > 1) {
        if (!dist_ok(c->name)) {
            if (dist_rank() == 0)
                fprintf(stderr, "qscope %s: does not run distributed; run it without mpirun (distributed: ppl, "
                                "eval, calib, quant)\n", c->name);
            finish(2);
        }
        if (dist_rank() != 0) {
            if (!freopen("/dev/null", "w", stdout)) finish(1);
            rank_err_capture();
        }
    }
    finish(c->fn(argc, argv));
}

int main(int argc, char **argv) {
    Err err;
    err_init(&err);
    if (dist_init(&argc, &argv, &err) != ST_OK) {
        fprintf(stderr, "qscope: %s\n", err.detail);
        exit(1);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        if (dist_rank() == 0) usage(stdout);
        finish(0);
    }
    if (argc >= 2) {
        for (const Command *c = cli_commands; c->name; c++)
            if (strcmp(argv[1], c->name) == 0) run_command(c, argc - 1, argv + 1);
    }
    /* A word that is no file and is one typo from a command is a mistyped
     * command ("evl"), not a model path: say which one was meant. */
    struct stat st;
    if (argc >= 2 && argv[1][0] != '-' && !strchr(argv[1], '/') && !strchr(argv[1], '.') && stat(argv[1], &st) != 0) {
        const char *names[64];
        int n = 0;
        for (const Command *c = cli_commands; c->name && n < 64; c++) names[n++] = c->name;
        int k = suggest_closest(argv[1], names, n);
        if (k >= 0) {
            fprintf(stderr, "qscope: unknown command '%s' (did you mean 'qscope %s'? qscope --help lists them)\n",
                    argv[1], names[k]);
            exit(2);
        }
    }
    for (const Command *c = cli_commands; c->name; c++)
        if (strcmp(c->name, "tui") == 0) run_command(c, argc, argv);
    if (argc >= 2 && argv[1][0] != '-') {
        fprintf(stderr, "qscope: unknown command '%s' (try qscope --help)\n", argv[1]);
    } else {
        usage(stderr);
    }
    finish(2);
}
