/* qscope: entry point. Subcommands live in cli/; with no subcommand (or a
 * model path first) the TUI opens. This is the only file that calls exit(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

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
    {"session", cmd_session, "create (new) or inspect (show) a session file"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f) {
    fprintf(f, "usage: qscope [MODEL] [--session S]      open the workbench TUI\n"
               "       qscope COMMAND [args] [--help]\n\ncommands:\n");
    for (const Command *c = cli_commands; c->name; c++) fprintf(f, "  %-12s %s\n", c->name, c->summary);
    fprintf(f, "\nMODEL is a .gguf file, a Hugging Face checkpoint directory, or a llama2.c .bin\n"
               "with --tokenizer TOK.bin.\n");
}

int main(int argc, char **argv) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        usage(stdout);
        exit(0);
    }
    if (argc >= 2) {
        for (const Command *c = cli_commands; c->name; c++)
            if (strcmp(argv[1], c->name) == 0) exit(c->fn(argc - 1, argv + 1));
    }
    for (const Command *c = cli_commands; c->name; c++)
        if (strcmp(c->name, "tui") == 0) exit(c->fn(argc, argv));
    if (argc >= 2 && argv[1][0] != '-') {
        fprintf(stderr, "qscope: unknown command '%s' (try qscope --help)\n", argv[1]);
    } else {
        usage(stderr);
    }
    exit(2);
}
