/* Subcommands. Each takes the arguments after its name (argv[0] is the
 * subcommand name), prints to stdout/stderr and returns the process exit code;
 * only main() calls exit(). Shared option helpers live in cli/args.h. */
#ifndef QS_CLI_CLI_H
#define QS_CLI_CLI_H

typedef int (*CmdFn)(int argc, char **argv);

typedef struct Command {
    const char *name;
    CmdFn fn;
    const char *summary;
} Command;

/* The command table (NULL-terminated; static storage). */
extern const Command cli_commands[];

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_calib(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_plan(int argc, char **argv);
/* `qscope plan --auto ...` (cmd_plan hands over when --auto is given). */
int cmd_plan_auto(int argc, char **argv);
int cmd_quant(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_tui(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_plan_export(int argc, char **argv);
int cmd_plan_import(int argc, char **argv);
int cmd_session(int argc, char **argv);
int cmd_cache(int argc, char **argv);

#endif
