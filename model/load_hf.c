/* Hugging Face checkpoint directories: config.json (LlamaForCausalLM,
 * MistralForCausalLM with its sliding window, Qwen2ForCausalLM with q/k/v
 * biases, Phi3ForCausalLM whose fused qkv_proj / gate_up_proj are split into
 * row ranges of the mapping), model.safetensors or model.safetensors.index.json plus
 * shards, tokenizer.json. HF q/k weights are stored for the rotate_half RoPE
 * convention; they are used as stored and the config says ROPE_NEOX, which the
 * forward pass implements, so no rows are permuted here. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "core/jsontext.h"
#include "core/mapfile.h"
#include "model/load_internal.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

#define HF_MAX_JSON ((size_t)64 << 20)

typedef enum { HA_LLAMA, HA_MISTRAL, HA_QWEN2, HA_PHI3 } HfArch;

typedef struct HfFiles {
    Safetensors **shards;    /* (n_shards), owned by the model via model_keep */
    int64_t n_shards;
    const char *where;       /* the index (sharded) or model.safetensors, for "missing tensor" */
    const ModelConfig *cfg;
    int arch;                /* HfArch */
    char name[176];
} HfFiles;

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void release_safetensors(void *p) { safetensors_free(p); }

/* Reads and parses a JSON file into *out (caller deletes). */
static Status read_json(const char *path, cJSON **out, Err *err) {
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    Status s = file_read_all(path, HF_MAX_JSON, &text, &len, err);
    if (s != ST_OK) return s;
    if ((s = jsontext_check_nul(text, len, path, err)) != ST_OK) {
        free(text);
        return s;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        free(text);
        return err_set(err, ST_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", path, at);
    }
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return err_set(err, ST_ERR_FORMAT, "%s: top level is not a JSON object", path);
    }
    *out = j;
    return ST_OK;
}

/* === config.json ======================================================== */

/* Reads an integer key. Returns ST_OK with *out set, ST_OK leaving *out
 * untouched when the key is absent/null and not required, or an error. */
static Status cfg_int(const cJSON *cfg, const char *path, const char *key, int required, int64_t *out,
                      Err *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return err_set(err, ST_ERR_FORMAT, "%s: missing key '%s'", path, key);
        return ST_OK;
    }
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!(v >= 1 && v <= 2147483647.0) || floor(v) != v)
        return err_set(err, ST_ERR_FORMAT, "%s: '%s' must be a positive integer", path, key);
    *out = (int64_t)v;
    return ST_OK;
}

static Status cfg_float(const cJSON *cfg, const char *path, const char *key, float *out, Err *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) return ST_OK;
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0) || !isfinite(j->valuedouble))
        return err_set(err, ST_ERR_FORMAT, "%s: '%s' must be a positive number", path, key);
    *out = (float)j->valuedouble;
    return ST_OK;
}

/* A number inside rope_scaling; required keys fail when absent. */
static Status rs_num(const cJSON *rs, const char *path, const char *key, int required, double *out, Err *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(rs, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return err_set(err, ST_ERR_FORMAT, "%s: rope_scaling lacks '%s'", path, key);
        return ST_OK;
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
        return err_set(err, ST_ERR_FORMAT, "%s: rope_scaling '%s' is not a number", path, key);
    *out = j->valuedouble;
    return ST_OK;
}

/* rope_scaling: null or "default" (none), "linear" (positions / factor) and
 * "llama3" (per-pair frequency factors, with original_max_position_embeddings
 * read from inside rope_scaling as transformers does). Every other type is
 * refused by name. */
static Status parse_rope_scaling(Model *m, const char *path, const cJSON *cfg, Err *err) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) {
        /* transformers 5 writes rope_parameters {rope_type, rope_theta, factor, ...} instead. */
        rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
        if (!rs || cJSON_IsNull(rs)) return ST_OK;
        if (!cJSON_IsObject(rs)) return err_set(err, ST_ERR_FORMAT, "%s: rope_parameters is not an object", path);
        Status s = cfg_float(rs, path, "rope_theta", &m->cfg.rope_theta, err);
        if (s != ST_OK) return s;
    }
    if (!cJSON_IsObject(rs)) return err_set(err, ST_ERR_FORMAT, "%s: rope_scaling is not an object", path);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rs, "type"); /* the older spelling */
    if (!cJSON_IsString(ty))
        return err_set(err, ST_ERR_FORMAT, "%s: rope_scaling has no string 'rope_type' (or 'type')", path);
    const char *t = ty->valuestring;
    if (strcmp(t, "default") == 0) return ST_OK;
    if (strcmp(t, "linear") != 0 && strcmp(t, "llama3") != 0) {
        static const char *const refused[] = {"yarn", "dynamic", "longrope", "su", "ntk", "mrope", "proportional"};
        for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
            if (strcmp(t, refused[i]) == 0)
                return err_set(err, ST_ERR_UNSUPPORTED,
                               "%s: rope_scaling type '%s' is not supported (supported: default, linear, llama3)",
                               path, t);
        return err_set(err, ST_ERR_UNSUPPORTED,
                       "%s: rope_scaling type '%.64s' is unknown (supported: default, linear, llama3)", path, t);
    }
    double factor = 0.0;
    Status s = rs_num(rs, path, "factor", 1, &factor, err);
    if (s != ST_OK) return s;
    if (strcmp(t, "linear") == 0) {
        if (!(factor > 0)) return err_set(err, ST_ERR_FORMAT, "%s: rope_scaling factor %g is not positive", path, factor);
        m->cfg.rope_freq_scale = (float)(1.0 / factor);
        return ST_OK;
    }
    double lo = 0.0, hi = 0.0, orig = 0.0; /* llama3 */
    if ((s = rs_num(rs, path, "low_freq_factor", 1, &lo, err)) != ST_OK) return s;
    if ((s = rs_num(rs, path, "high_freq_factor", 1, &hi, err)) != ST_OK) return s;
    if ((s = rs_num(rs, path, "original_max_position_embeddings", 1, &orig, err)) != ST_OK) return s;
    return model_set_llama3_rope(m, factor, lo, hi, orig, path, err);
}

static Status parse_config(Model *m, const char *path, const cJSON *cfg, int *tied, HfArch *ha, Err *err) {
    static const struct {
        const char *name;
        HfArch a;
        const char *arch;
    } known[] = {
        {"LlamaForCausalLM", HA_LLAMA, "llama"},
        {"MistralForCausalLM", HA_MISTRAL, "llama"},
        {"Qwen2ForCausalLM", HA_QWEN2, "qwen2"},
        {"Phi3ForCausalLM", HA_PHI3, "phi3"},
    };
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
    if (!arch) return err_set(err, ST_ERR_FORMAT, "%s: missing key 'architectures'", path);
    if (!cJSON_IsArray(arch))
        return err_set(err, ST_ERR_FORMAT, "%s: 'architectures' must be a list of strings (e.g. [\"LlamaForCausalLM\"])",
                       path);
    int found = -1;
    const char *first = "?";
    if (cJSON_IsArray(arch)) {
        for (const cJSON *a = arch->child; a && found < 0; a = a->next) {
            if (!cJSON_IsString(a)) continue;
            if (first[0] == '?') first = a->valuestring;
            for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
                if (strcmp(a->valuestring, known[k].name) == 0) found = (int)k;
        }
    }
    if (found < 0)
        return err_set(err, ST_ERR_UNSUPPORTED,
                       "%s: architecture '%.64s' is not supported (LlamaForCausalLM, MistralForCausalLM, "
                       "Qwen2ForCausalLM, Phi3ForCausalLM)", path, first);
    *ha = known[found].a;
    ModelConfig *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "%s", known[found].arch);
    Status s;
    if ((s = cfg_int(cfg, path, "hidden_size", 1, &c->dim, err)) != ST_OK) return s;
    if ((s = cfg_int(cfg, path, "intermediate_size", 1, &c->hidden_dim, err)) != ST_OK) return s;
    if ((s = cfg_int(cfg, path, "num_hidden_layers", 1, &c->n_layers, err)) != ST_OK) return s;
    if ((s = cfg_int(cfg, path, "num_attention_heads", 1, &c->n_heads, err)) != ST_OK) return s;
    if ((s = cfg_int(cfg, path, "vocab_size", 1, &c->vocab_size, err)) != ST_OK) return s;
    c->n_kv_heads = c->n_heads;
    if ((s = cfg_int(cfg, path, "num_key_value_heads", 0, &c->n_kv_heads, err)) != ST_OK) return s;
    c->max_seq_len = 2048; /* transformers' LlamaConfig default */
    if ((s = cfg_int(cfg, path, "max_position_embeddings", 0, &c->max_seq_len, err)) != ST_OK) return s;
    /* transformers: head_dim defaults to hidden_size / num_attention_heads (floor) */
    c->head_dim = c->dim / c->n_heads;
    if ((s = cfg_int(cfg, path, "head_dim", 0, &c->head_dim, err)) != ST_OK) return s;
    c->norm_eps = 1e-6f;   /* LlamaConfig default */
    c->rope_theta = 10000.0f;
    if ((s = cfg_float(cfg, path, "rms_norm_eps", &c->norm_eps, err)) != ST_OK) return s;
    if ((s = cfg_float(cfg, path, "rope_theta", &c->rope_theta, err)) != ST_OK) return s;
    c->rope_style = ROPE_NEOX;
    const cJSON *prf = cJSON_GetObjectItemCaseSensitive(cfg, "partial_rotary_factor");
    if (prf && !cJSON_IsNull(prf) && !(cJSON_IsNumber(prf) && prf->valuedouble == 1.0))
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: partial_rotary_factor is not 1 (partial RoPE is not supported)",
                       path);

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: hidden_act must be \"silu\"", path);
    /* Llama/Mistral attention_bias also biases o_proj; only q/k/v biases
     * (Qwen2's, always on) are implemented. */
    static const char *const bias_keys[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, bias_keys[i])))
            return err_set(err, ST_ERR_UNSUPPORTED, "%s: %s is true; biased o/MLP projections are not supported", path,
                           bias_keys[i]);
    /* Sliding window: Mistral's (and Phi-3's) applies to every layer;
     * transformers masks keys older than W positions (query i sees i-W+1..i).
     * Qwen2 uses it only with use_sliding_window, per layer: refused. */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(cfg, "sliding_window");
    if (*ha == HA_QWEN2) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "use_sliding_window")))
            return err_set(err, ST_ERR_UNSUPPORTED,
                           "%s: use_sliding_window is true (Qwen2 per-layer sliding window is not supported)", path);
    } else if (*ha == HA_MISTRAL || *ha == HA_PHI3) {
        if (sw && !cJSON_IsNull(sw) && (s = cfg_int(cfg, path, "sliding_window", 0, &c->sliding_window, err)) != ST_OK)
            return s;
    }
    if ((s = parse_rope_scaling(m, path, cfg, err)) != ST_OK) return s;
    *tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings"));
    return model_check_config(m, path, err);
}

/* === weights ============================================================ */

static Status open_shard(Model *m, HfFiles *hf, const char *path, Err *err) {
    Safetensors *st = NULL;
    Status s = safetensors_open(path, &st, err);
    if (s != ST_OK) return s;
    s = model_keep(m, release_safetensors, st, err);
    if (s != ST_OK) return s;
    hf->shards[hf->n_shards++] = st;
    return ST_OK;
}

/* Opens the shards an index names and checks that each tensor it maps is in
 * the shard it says. */
static Status open_indexed(Model *m, HfFiles *hf, const char *dir, const char *index_path, Err *err) {
    cJSON *idx = NULL;
    char **names = NULL;
    int64_t n_names = 0;
    char *p = NULL;
    Status s = read_json(index_path, &idx, err);
    if (s != ST_OK) return s;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        s = err_set(err, ST_ERR_FORMAT, "%s: missing or empty 'weight_map'", index_path);
        goto fail;
    }
    int count = cJSON_GetArraySize(wm);
    names = core_calloc((size_t)count, sizeof *names);
    hf->shards = core_calloc((size_t)count, sizeof *hf->shards);
    if (!names || !hf->shards) {
        s = err_set(err, ST_ERR_NOMEM, "%s: out of memory", index_path);
        goto fail;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            s = err_set(err, ST_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name", index_path, e->string);
            goto fail;
        }
        const char *f = e->valuestring;
        if (!f[0] || strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0) {
            s = err_set(err, ST_ERR_FORMAT, "%s: weight_map names shard '%.128s', which is not a plain file name",
                        index_path, f);
            goto fail;
        }
        int64_t k = 0;
        while (k < n_names && strcmp(names[k], f) != 0) k++;
        if (k < n_names) continue;
        names[n_names++] = (char *)f;
        p = path_join(dir, f);
        if (!p) {
            s = err_set(err, ST_ERR_NOMEM, "%s: out of memory", index_path);
            goto fail;
        }
        if (!file_exists(p)) {
            s = err_set(err, ST_ERR_IO, "%s: weight_map names shard '%.128s', which is missing", index_path, f);
            goto fail;
        }
        s = open_shard(m, hf, p, err);
        if (s != ST_OK) goto fail;
        free(p);
        p = NULL;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        int64_t k = 0;
        while (strcmp(names[k], e->valuestring) != 0) k++;
        if (!safetensors_find(hf->shards[k], e->string)) {
            s = err_set(err, ST_ERR_FORMAT, "%s: weight_map puts tensor '%.128s' in '%.128s', which lacks it",
                        index_path, e->string, e->valuestring);
            goto fail;
        }
    }
    s = ST_OK;
fail:
    free(p);
    free(names);
    cJSON_Delete(idx);
    return s;
}

static const char *const hf_layer_names[ROLE_COUNT] = {
    [ROLE_ATTN_NORM] = "input_layernorm",   [ROLE_Q] = "self_attn.q_proj", [ROLE_K] = "self_attn.k_proj",
    [ROLE_V] = "self_attn.v_proj",          [ROLE_O] = "self_attn.o_proj",
    [ROLE_FFN_NORM] = "post_attention_layernorm", [ROLE_GATE] = "mlp.gate_proj", [ROLE_UP] = "mlp.up_proj",
    [ROLE_DOWN] = "mlp.down_proj",          [ROLE_Q_BIAS] = "self_attn.q_proj", [ROLE_K_BIAS] = "self_attn.k_proj",
    [ROLE_V_BIAS] = "self_attn.v_proj",
};

/* The layer index of a tensor named "model.layers.N.…", else -1. */
static int64_t hf_layer_index(const char *name) {
    static const char prefix[] = "model.layers.";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0) return -1;
    const char *p = name + sizeof prefix - 1, *q = p;
    int64_t v = 0;
    for (; *q >= '0' && *q <= '9' && v < ((int64_t)1 << 40); q++) v = v * 10 + (*q - '0');
    return q > p && *q == '.' ? v : -1;
}

/* Points out at tensor hf->name in whichever shard holds it (absent: data NULL). */
static void hf_src(HfFiles *hf, SrcTensor *out) {
    out->name = hf->name;
    out->file = hf->where;
    for (int64_t i = 0; i < hf->n_shards; i++) {
        const StTensor *t = safetensors_find(hf->shards[i], hf->name);
        if (!t) continue;
        out->file = hf->shards[i]->mf.path;
        out->type = t->type;
        out->n_dims = t->n_dims > 4 ? 5 : t->n_dims;
        for (int d = 0; d < 4; d++) out->ne[d] = d < t->n_dims ? t->shape[t->n_dims - 1 - d] : 1;
        out->data = t->data;
        out->nbytes = t->nbytes;
        out->outer_first = 1;
        return;
    }
}

static Status hf_find(void *ctx, TensorRole role, int64_t layer, SrcTensor *out, Err *err) {
    HfFiles *hf = ctx;
    int qkv = role == ROLE_Q || role == ROLE_K || role == ROLE_V;
    if (hf->arch == HA_PHI3 && (qkv || role == ROLE_GATE || role == ROLE_UP)) {
        /* Phi-3's qkv_proj is [q; k; v] and gate_up_proj [gate; up] (Phi3MLP:
         * gate, up = chunk(2); up * silu(gate)): the parts are row ranges. */
        snprintf(hf->name, sizeof hf->name, "model.layers.%lld.%s.weight", (long long)layer,
                 qkv ? "self_attn.qkv_proj" : "mlp.gate_up_proj");
        hf_src(hf, out);
        return model_src_split(hf->cfg, role, out, hf->name, sizeof hf->name, err);
    }
    if (role == ROLE_EMBD)
        snprintf(hf->name, sizeof hf->name, "model.embed_tokens.weight");
    else if (role == ROLE_OUT_NORM)
        snprintf(hf->name, sizeof hf->name, "model.norm.weight");
    else if (role == ROLE_OUTPUT)
        snprintf(hf->name, sizeof hf->name, "lm_head.weight");
    else if (role == ROLE_Q_BIAS || role == ROLE_K_BIAS || role == ROLE_V_BIAS)
        snprintf(hf->name, sizeof hf->name, "model.layers.%lld.%s.bias", (long long)layer, hf_layer_names[role]);
    else
        snprintf(hf->name, sizeof hf->name, "model.layers.%lld.%s.weight", (long long)layer, hf_layer_names[role]);
    hf_src(hf, out);
    if (hf->arch == HA_QWEN2 && !out->data &&
        (role == ROLE_Q_BIAS || role == ROLE_K_BIAS || role == ROLE_V_BIAS)) /* Qwen2Attention always has them */
        return err_set(err, ST_ERR_FORMAT, "%s: missing tensor '%s' (Qwen2 q/k/v projections are biased)", out->file,
                       hf->name);
    return ST_OK;
}

/* Any bias other than q/k/v's would change the computation and is not
 * implemented: refuse it by name rather than drop it. */
static Status hf_check_bias(const HfFiles *hf, Err *err) {
    static const char *const used[] = {".self_attn.q_proj.bias", ".self_attn.k_proj.bias", ".self_attn.v_proj.bias"};
    for (int64_t i = 0; i < hf->n_shards; i++)
        for (int64_t k = 0; k < hf->shards[i]->n_tensors; k++) {
            const char *nm = hf->shards[i]->tensors[k].name;
            size_t n = strlen(nm);
            if (n < 5 || strcmp(nm + n - 5, ".bias") != 0) continue;
            int ok = 0;
            for (int u = 0; u < 3; u++) {
                size_t un = strlen(used[u]);
                if (n > un && strcmp(nm + n - un, used[u]) == 0) ok = 1;
            }
            if (!ok)
                return err_set(err, ST_ERR_UNSUPPORTED, "%s: has tensor '%s': only q/k/v biases are supported",
                               hf->shards[i]->mf.path, nm);
        }
    return ST_OK;
}

Status load_hf(Model *m, const char *dir, Err *err) {
    cJSON *cfg = NULL;
    char *cfg_path = path_join(dir, "config.json");
    char *index_path = path_join(dir, "model.safetensors.index.json");
    char *single_path = path_join(dir, "model.safetensors");
    char *tok_path = path_join(dir, "tokenizer.json");
    HfFiles hf;
    memset(&hf, 0, sizeof hf);
    Status s;
    if (!cfg_path || !index_path || !single_path || !tok_path) {
        s = err_set(err, ST_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    if (!file_exists(cfg_path)) {
        s = err_set(err, ST_ERR_IO, "%s: directory has no config.json (not a Hugging Face checkpoint)", dir);
        goto fail;
    }
    s = read_json(cfg_path, &cfg, err);
    if (s != ST_OK) goto fail;
    int tied = 0;
    HfArch ha = HA_LLAMA;
    s = parse_config(m, cfg_path, cfg, &tied, &ha, err);
    if (s != ST_OK) goto fail;
    hf.cfg = &m->cfg;
    hf.arch = (int)ha;

    if (file_exists(index_path)) {
        hf.where = index_path;
        s = open_indexed(m, &hf, dir, index_path, err);
    } else if (file_exists(single_path)) {
        hf.where = single_path;
        hf.shards = core_calloc(1, sizeof *hf.shards);
        s = hf.shards ? open_shard(m, &hf, single_path, err) : err_set(err, ST_ERR_NOMEM, "%s: out of memory", dir);
    } else {
        struct stat sb;
        const char *odd = stat(single_path, &sb) == 0 ? single_path : stat(index_path, &sb) == 0 ? index_path : NULL;
        if (odd) /* present, but a directory or a special file */
            s = err_set(err, ST_ERR_FORMAT, "%s: not a regular file", odd);
        else
            s = err_set(err, ST_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    if (s != ST_OK) goto fail;
    /* Binding asks only for layers below num_hidden_layers: a checkpoint with
     * more would run cut short and give wrong numbers. */
    for (int64_t i = 0; i < hf.n_shards && s == ST_OK; i++)
        for (int64_t k = 0; k < hf.shards[i]->n_tensors; k++) {
            const char *nm = hf.shards[i]->tensors[k].name;
            int64_t l = hf_layer_index(nm);
            if (l >= m->cfg.n_layers) {
                s = err_set(err, ST_ERR_MISMATCH, "%s: tensor '%s' is in layer %lld, but num_hidden_layers is %lld",
                            hf.shards[i]->mf.path, nm, (long long)l, (long long)m->cfg.n_layers);
                break;
            }
        }
    if (s == ST_OK) s = hf_check_bias(&hf, err);
    if (s != ST_OK) goto fail;

    if (file_exists(tok_path)) {
        s = tokenizer_from_hf(tok_path, &m->tok, err);
        if (s != ST_OK) goto fail;
    }

    uint64_t h = HASH_SEED;
    char *text = NULL;
    size_t len = 0;
    if (file_read_all(cfg_path, HF_MAX_JSON, &text, &len, NULL) == ST_OK) {
        h = hash_bytes(h, text, len);
        free(text);
    }
    m->file_bytes = 0;
    for (int64_t i = 0; i < hf.n_shards; i++) {
        const Safetensors *st = hf.shards[i];
        m->file_bytes += st->mf.size;
        h = model_hash_file(h, st->mf.data, st->mf.size, st->header_len);
    }
    MappedFile tf;
    if (m->tok && mapfile_open(&tf, tok_path, NULL) == ST_OK) {
        h = model_hash_file(h, tf.data, tf.size, 0);
        mapfile_close(&tf);
    }
    m->fingerprint = h;
    s = model_bind_weights(m, hf_find, &hf, tied, err);
fail:
    cJSON_Delete(cfg);
    free(hf.shards);
    free(cfg_path);
    free(index_path);
    free(single_path);
    free(tok_path);
    return s;
}
