/* qscope synth: write a random-weight LLaMA GGUF of a real shape. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "model/synth.h"
#include "quant/ggml_type.h"

static const char SYNTH_USAGE[] =
    "usage: qscope synth --preset NAME -o OUT.gguf [--layers N] [--vocab N] [--seed S]\n"
    "                    [--type f32|f16|bf16|q8_0] [--arch A] [--head-dim N] [--spikes SPEC]\n\n"
    "Writes a LLaMA GGUF with seeded random weights (rows ~ N(0, 1/fan_in), norms 1)\n"
    "and a valid SentencePiece vocabulary (<unk> <s> </s>, 256 byte tokens, pieces),\n"
    "loadable by llama.cpp. The same options always give the same bytes.\n\n"
    "presets:\n"
    "  tiny        dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads (stories260K shape)\n"
    "  tinyllama   dim 2048, hidden 5632, 32 heads, 4 KV heads, 4 layers, ctx 2048\n"
    "  llama2-7b   dim 4096, hidden 11008, 32/32 heads, 4 layers by default (the real\n"
    "              model has 32: --layers 32), ctx 4096\n"
    "  every preset defaults to vocab 512 (--vocab N, at least 260)\n\n"
    "options:\n";

static const OptChoice SYNTH_TYPES[] = {
    {"f32", GGML_F32}, {"f16", GGML_F16}, {"bf16", GGML_BF16}, {"q8_0", GGML_Q8_0}, {NULL, 0}};

typedef struct BarJob {
    Progress *p;
    _Atomic int stop;
} BarJob;

static void *bar_thread(void *arg) {
    BarJob *j = arg;
    ProgressBar pb;
    progress_bar_init(&pb, "synth");
    while (!j->stop) {
        progress_bar_draw(&pb, atomic_load(&j->p->done), atomic_load(&j->p->total), "bytes");
        usleep(100000);
    }
    progress_bar_draw(&pb, atomic_load(&j->p->done), atomic_load(&j->p->total), "bytes");
    progress_bar_finish(&pb);
    return NULL;
}

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *out = NULL, *spikes = NULL, *arch = NULL;
    int64_t layers = -1, vocab = -1, seed = -1, head_dim = -1; /* -1: the preset's */
    int type = -1;
    const Opt opts[] = {
        OPT_STR("--preset", &preset, "NAME", "one of the presets above"),
        OPT_INT("--layers", &layers, 1, 1024, "N", "number of blocks"),
        OPT_INT("--vocab", &vocab, 260, 1 << 20, "N", "vocabulary size"),
        OPT_INT("--seed", &seed, 0, INT64_MAX, "S", "PRNG seed (default 0)"),
        OPT_ENUM("--type", &type, SYNTH_TYPES, "T",
                 "storage of the 2-D weights: f32 (default), f16, bf16, q8_0 (q8_0 falls\n"
                 "back to f16 where the row length is not a multiple of 32)"),
        OPT_STR("--arch", &arch, "A",
                "file layout: llama (default), llama3 (llama + Llama 3.1 rope_freqs:\n"
                "factor 8, low 1, high 4, original context 8192; theta 500000),\n"
                "qwen2 (q/k/v biases ~ N(0, 0.25), NEOX RoPE; theta 1e6), phi3\n"
                "(attn_qkv = [q; k; v], ffn_up = [gate; up], NEOX RoPE). The weight\n"
                "rows are the same in every layout. A sliding window (Mistral) has\n"
                "no GGUF form llama.cpp reads."),
        OPT_INT("--head-dim", &head_dim, 2, 4096, "N",
                "per-head width when it is not dim / heads (llama, llama3): q is\n"
                "(heads x N, dim), o (dim, heads x N)"),
        OPT_STR("--spikes", &spikes, "SPEC",
                "plant massive activations on the first token (BOS) only:\n"
                "SPEC = ITEM[,ITEM...], ITEM = LAYER.SITE:CHANNEL[:FACTOR]\n"
                "SITE down: channel CHANNEL (< hidden) of layer LAYER's down_proj\n"
                "  input silu(gate)*up becomes ~FACTOR x the median |input| of a\n"
                "  random layer; a random layer's own max/median is already\n"
                "  ~40-80 (more with width and tokens): FACTOR >= 300 stands clear\n"
                "SITE o: channel CHANNEL (< dim) of the o_proj input (attention\n"
                "  output) becomes FACTOR x median|N(0,1)|, the typical |v|; with\n"
                "  GQA the same channel of every query head sharing that KV head\n"
                "  spikes too. Planting o spikes gives all non-BOS embeddings a\n"
                "  shared direction (so later tokens do not attend to BOS there).\n"
                "FACTOR defaults to 100, range [1, 10000]; BOS's embedding is 16x\n"
                "the others' whenever spikes are planted.\n"
                "e.g. --spikes 1.down:7:100,3.down:20:50,31.o:5"),
        OPT_STR("-o", &out, "OUT.gguf", "output path (written atomically)"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "synth", .usage = SYNTH_USAGE, .tables = {opts}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!preset || !out) {
        fprintf(stderr, "qscope synth: --preset and -o are required (see qscope synth --help)\n");
        return 2;
    }
    Err err;
    err_init(&err);
    SynthConfig cfg;
    if (synth_preset(preset, &cfg, &err) != ST_OK) {
        args_print_err("synth", &err);
        return 2;
    }
    if (arch && synth_parse_arch(arch, &cfg, &err) != ST_OK) {
        args_print_err("synth", &err);
        return 2;
    }
    if (head_dim >= 0) cfg.head_dim = head_dim;
    if (layers >= 0) cfg.n_layers = layers;
    if (vocab >= 0) cfg.vocab_size = vocab;
    if (seed >= 0) cfg.seed = (uint64_t)seed;
    if (type >= 0) cfg.type = (uint32_t)type;
    if (spikes && synth_parse_spikes(spikes, &cfg, &err) != ST_OK) {
        args_print_err("synth", &err);
        return 2;
    }
    Synth *s = NULL;
    if (synth_new(&cfg, &s, &err) != ST_OK) {
        args_print_err("synth", &err);
        return 1;
    }
    Progress prog;
    progress_init(&prog);
    args_cancel_on_sigint(&prog);
    BarJob job = {.p = &prog, .stop = 0};
    pthread_t th;
    int have_bar = pthread_create(&th, NULL, bar_thread, &job) == 0;
    double t0 = args_now();
    Status st = synth_write(s, out, &prog, &err);
    job.stop = 1;
    if (have_bar) pthread_join(th, NULL);
    synth_free(s);
    if (st != ST_OK) {
        args_print_err("synth", &err);
        return 1;
    }
    fprintf(stderr, "qscope synth: wrote %s (%lld bytes of tensors, %.2f s)\n", out,
            (long long)atomic_load(&prog.total), args_now() - t0);
    return 0;
}
