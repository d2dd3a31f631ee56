/* qscope info: what a model file holds — format, architecture, config,
 * parameter count, tokenizer, every tensor (grouped by kind, with totals) and
 * what loading it costs in memory. --json prints the same as one object. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "quant/ggml_type.h"

static const char *const kinds[] = {"embedding", "attention", "ffn", "norm", "output"};
#define N_KINDS ((int)(sizeof kinds / sizeof kinds[0]))

static const char INFO_USAGE[] =
    "usage: qscope info MODEL [--tokenizer TOK.bin] [--json]\n\n"
    "Shows a model's format, architecture, config, parameter count, tokenizer,\n"
    "tensors (name, stored type, shape as rows x cols, bytes in the file, whether\n"
    "used in place or converted to float32) grouped by kind, and memory use.\n\n"
    "MODEL is a .gguf file, a Hugging Face checkpoint directory (config.json +\n"
    "safetensors), or a llama2.c .bin together with --tokenizer TOK.bin.\n\n"
    "options:\n";

static const char *format_name(ModelFormat f) {
    switch (f) {
    case FMT_GGUF: return "gguf";
    case FMT_HF: return "hf";
    case FMT_LLAMA2C: return "llama2c";
    }
    return "?";
}

static const char *type_name(uint32_t t) {
    const GgmlTypeTraits *tr = ggml_type_traits(t);
    return tr ? tr->name : "?";
}

/* "1.13 MiB" style, into buf. */
static const char *human_bytes(char *buf, size_t cap, double b) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", b, unit[u]);
    return buf;
}

/* Norm gains and biases are vectors: shown as [n], not 1 x n. */
static int is_vector(const TensorEntry *e) {
    size_t n = strlen(e->name);
    return e->ne[1] == 1 &&
           (strcmp(e->kind ? e->kind : "", "norm") == 0 || (n > 5 && strcmp(e->name + n - 5, ".bias") == 0));
}

static int print_json(const Model *m) {
    const ModelConfig *c = &m->cfg;
    char fp[17];
    cJSON *o = cJSON_CreateObject(), *ta = NULL;
    int ok = o && json_set_str(o, "path", m->path) && json_set_str(o, "format", format_name(m->format)) &&
             json_set_str(o, "arch", c->arch) && json_set_num(o, "dim", (double)c->dim) &&
             json_set_num(o, "hidden_dim", (double)c->hidden_dim) && json_set_num(o, "n_layers", (double)c->n_layers) &&
             json_set_num(o, "n_heads", (double)c->n_heads) && json_set_num(o, "n_kv_heads", (double)c->n_kv_heads) &&
             json_set_num(o, "head_dim", (double)c->head_dim) && json_set_num(o, "vocab_size", (double)c->vocab_size) &&
             json_set_num(o, "context_length", (double)c->max_seq_len) &&
             json_setf(o, "rope_theta", "%.7g", (double)c->rope_theta) &&
             json_set_str(o, "rope_style", c->rope_style == ROPE_NEOX ? "neox" : "norm") &&
             json_setf(o, "norm_eps", "%.7g", (double)c->norm_eps) &&
             json_setf(o, "rope_freq_scale", "%.7g", c->rope_freq_scale > 0.0f ? (double)c->rope_freq_scale : 1.0) &&
             json_set_bool(o, "rope_freq_factors", m->rope_freqs != NULL) &&
             json_set_num(o, "sliding_window", (double)c->sliding_window) &&
             json_set_bool(o, "tied_embeddings", c->tied_embeddings) &&
             json_set_num(o, "params", (double)model_param_count(m)) && json_set_num(o, "file_bytes", (double)m->file_bytes) &&
             json_set_num(o, "owned_bytes", (double)m->owned_bytes) &&
             json_set_str(o, "fingerprint", json_hex64(m->fingerprint, fp)) &&
             json_set_str(o, "tokenizer", m->tok ? tokenizer_describe(m->tok) : NULL) &&
             (ta = json_add_array(o, "tensors"));
    for (int64_t i = 0; ok && i < m->n_tensors; i++) {
        const TensorEntry *e = &m->tensors[i];
        cJSON *t = cJSON_CreateObject(), *sh = NULL;
        ok = json_push(ta, t) && json_set_str(t, "name", e->name) && json_set_str(t, "kind", e->kind ? e->kind : "?") &&
             json_set_num(t, "layer", e->layer) && json_set_str(t, "type", type_name(e->src_type)) &&
             (sh = json_add_array(t, "shape")) &&
             (is_vector(e) ? json_push(sh, cJSON_CreateNumber((double)e->ne[0]))
                           : json_push(sh, cJSON_CreateNumber((double)e->ne[1])) &&
                                 json_push(sh, cJSON_CreateNumber((double)e->ne[0]))) &&
             json_set_num(t, "bytes", (double)e->file_bytes) && json_set_bool(t, "in_place", e->borrowed);
    }
    return args_print_json("info", json_finish(o, ok));
}

static void print_text(const Model *m) {
    const ModelConfig *c = &m->cfg;
    char b1[32], b2[32];
    printf("model        %s\n", m->path);
    printf("format       %s, architecture %s\n",
           m->format == FMT_GGUF ? "GGUF" : m->format == FMT_HF ? "Hugging Face safetensors" : "llama2.c",
           c->arch);
    printf("config       dim %" PRId64 ", hidden %" PRId64 ", %" PRId64 " layers, %" PRId64 " heads (%" PRId64
           " KV, head_dim %" PRId64 "), vocab %" PRId64 ", context %" PRId64 "\n",
           c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
           c->max_seq_len);
    printf("rope         %s, theta %g; RMSNorm eps %g\n",
           c->rope_style == ROPE_NEOX ? "neox (pairs i, i+head_dim/2; HF rotate_half)"
                                      : "norm (adjacent pairs 2i, 2i+1)",
           (double)c->rope_theta, (double)c->norm_eps);
    if (c->rope_freq_scale > 0.0f && c->rope_freq_scale != 1.0f)
        printf("rope scaling linear, factor %g (positions x %g)\n", 1.0 / (double)c->rope_freq_scale,
               (double)c->rope_freq_scale);
    if (m->rope_freqs) {
        printf("rope scaling per-pair frequency factors (Llama 3.1):");
        for (int64_t i = 0; i < c->head_dim / 2; i++) printf(" %.4g", (double)m->rope_freqs[i]);
        printf("\n");
    }
    if (c->sliding_window > 0)
        printf("attention    sliding window %" PRId64 " (query i sees keys i-%" PRId64 "..i)\n", c->sliding_window,
               c->sliding_window - 1);
    printf("output head  %s\n", c->tied_embeddings ? "tied to the token embedding" : "separate tensor");
    int64_t params = model_param_count(m);
    printf("parameters   %" PRId64 " (%.3f M)\n", params, (double)params / 1e6);
    printf("tokenizer    %s\n", m->tok ? tokenizer_describe(m->tok) : "none found");
    printf("fingerprint  %016" PRIx64 "\n", m->fingerprint);

    int name_w = 4;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        int n = (int)strlen(m->tensors[i].name);
        if (n > name_w) name_w = n;
    }
    printf("\n  %-*s  %-5s  %-13s  %12s  %s\n", name_w, "tensor", "type", "shape", "bytes", "storage");
    int64_t tot_n = 0, tot_params = 0;
    size_t tot_bytes = 0;
    for (int k = 0; k < N_KINDS; k++) {
        int64_t n = 0, kp = 0;
        size_t kb = 0;
        for (int64_t i = 0; i < m->n_tensors; i++) {
            const TensorEntry *e = &m->tensors[i];
            if (!e->kind || strcmp(e->kind, kinds[k]) != 0) continue;
            if (n == 0) printf("  [%s]\n", kinds[k]);
            char shape[48];
            if (is_vector(e))
                snprintf(shape, sizeof shape, "%" PRId64, e->ne[0]);
            else
                snprintf(shape, sizeof shape, "%" PRId64 " x %" PRId64, e->ne[1], e->ne[0]);
            printf("  %-*s  %-5s  %-13s  %12zu  %s\n", name_w, e->name, type_name(e->src_type), shape, e->file_bytes,
                   e->borrowed ? "in place" : "converted");
            n++;
            kp += e->ne[0] * e->ne[1];
            kb += e->file_bytes;
        }
        if (n == 0) continue;
        printf("  %-*s  %" PRId64 " tensor%s, %" PRId64 " params, %s\n", name_w, "", n, n == 1 ? "" : "s", kp,
               human_bytes(b1, sizeof b1, (double)kb));
        tot_n += n;
        tot_params += kp;
        tot_bytes += kb;
    }
    printf("  total: %" PRId64 " tensors, %" PRId64 " params, %s in the file%s\n", tot_n, tot_params,
           human_bytes(b1, sizeof b1, (double)tot_bytes),
           c->tied_embeddings ? " (head shares the embedding)" : "");
    int64_t n_conv = 0;
    for (int64_t i = 0; i < m->n_tensors; i++) n_conv += !m->tensors[i].borrowed;
    printf("\nmemory       mapped %s (the weight files; matrices are used in place in their own dtype)\n"
           "             owned %s (%" PRId64 " tensor%s copied or converted: non-F32 norm vectors as float32,\n"
           "             misaligned tensors)\n",
           human_bytes(b1, sizeof b1, (double)m->file_bytes), human_bytes(b2, sizeof b2, (double)m->owned_bytes),
           n_conv, n_conv == 1 ? "" : "s");
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *tok = NULL;
    int json = 0;
    const Opt opts[] = {
        OPT_STR("--tokenizer", &tok, "T", "llama2.c tokenizer .bin (required for llama2.c checkpoints)"),
        OPT_FLAG("--json", &json,
                 "print one JSON object instead of the table; tensor shapes are\n"
                 "[rows, cols] ([n] for vectors), bytes are bytes in the file"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "info", .usage = INFO_USAGE, .tables = {opts}, .pos = {&model}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!model) {
        opts_usage(&spec, stderr);
        return 2;
    }
    Model *m = args_load_model(model, tok);
    if (!m) return 1;
    int rc = 0;
    if (json) rc = print_json(m) ? 1 : 0;
    else print_text(m);
    model_free(m);
    return rc;
}
