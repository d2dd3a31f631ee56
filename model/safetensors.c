#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/jsontext.h"
#include "quant/ggml_type.h"

void safetensors_free(Safetensors *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    free(st->by_name);
    mapfile_close(&st->mf);
    free(st);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static int cmp_data(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    const unsigned char *p = x->data, *q = y->data;
    return p < q ? -1 : p > q ? 1 : 0;
}

static int cmp_key(const void *key, const void *e) { return strcmp(key, (*(const StTensor *const *)e)->name); }

const StTensor *safetensors_find(const Safetensors *st, const char *name) {
    const StTensor *const *t = st->by_name ? bsearch(name, st->by_name, (size_t)st->n_tensors, sizeof *st->by_name, cmp_key)
                                           : NULL;
    return t ? *t : NULL;
}

/* Builds the by-name index and refuses what other readers refuse: a key twice
 * in the header (cJSON keeps both; the second was silently unreachable) and
 * two tensors sharing data bytes. */
static Status index_tensors(Safetensors *st, Err *err) {
    const char *path = st->mf.path;
    int64_t n = st->n_tensors;
    st->by_name = malloc((size_t)(n ? n : 1) * sizeof *st->by_name);
    const StTensor **by_data = malloc((size_t)(n ? n : 1) * sizeof *by_data);
    Status s = ST_OK;
    if (!st->by_name || !by_data) {
        s = err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int64_t nd = 0;
    for (int64_t i = 0; i < n; i++) {
        st->by_name[i] = &st->tensors[i];
        if (st->tensors[i].nbytes) by_data[nd++] = &st->tensors[i];
    }
    qsort(st->by_name, (size_t)n, sizeof *st->by_name, cmp_name);
    for (int64_t i = 1; i < n && !s; i++)
        if (!strcmp(st->by_name[i - 1]->name, st->by_name[i]->name))
            s = err_set(err, ST_ERR_FORMAT, "%s: tensor '%.96s' appears twice in the header", path,
                        st->by_name[i]->name);
    qsort(by_data, (size_t)nd, sizeof *by_data, cmp_data);
    const unsigned char *base = st->mf.data + st->header_len;
    for (int64_t i = 1; i < nd && !s; i++) {
        const StTensor *a = by_data[i - 1], *b = by_data[i];
        if ((const unsigned char *)a->data + a->nbytes > (const unsigned char *)b->data)
            s = err_set(err, ST_ERR_FORMAT, "%s: tensors '%.96s' (data_offsets [%zu, %zu)) and '%.96s' (from %zu) overlap",
                        path, a->name, (size_t)((const unsigned char *)a->data - base),
                        (size_t)((const unsigned char *)a->data - base) + a->nbytes, b->name,
                        (size_t)((const unsigned char *)b->data - base));
    }
done:
    free(by_data);
    return s;
}

/* A JSON number that is a whole value in [0, 2^53]; returns 0 otherwise. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static Status parse_entry(Safetensors *st, const cJSON *e, StTensor *t, Err *err) {
    const char *path = st->mf.path;
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return err_set(err, ST_ERR_FORMAT, "%s: header entry '%s' is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return err_set(err, ST_ERR_FORMAT, "%s: tensor '%s' lacks a dtype string, a shape array or data_offsets",
                       path, name);
    size_t esize;
    if (strcmp(dt->valuestring, "F32") == 0) {
        t->type = GGML_F32;
        esize = 4;
    } else if (strcmp(dt->valuestring, "F16") == 0) {
        t->type = GGML_F16;
        esize = 2;
    } else if (strcmp(dt->valuestring, "BF16") == 0) {
        t->type = GGML_BF16;
        esize = 2;
    } else {
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported dtype '%.32s' (F32, F16, BF16 only)",
                       path, name, dt->valuestring);
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > SAFETENSORS_MAX_DIMS)
        return err_set(err, ST_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", path, name, nd,
                       SAFETENSORS_MAX_DIMS);
    t->n_dims = nd;
    size_t numel = 1;
    int d = 0;
    for (const cJSON *x = sh->child; x; x = x->next, d++) {
        uint64_t v;
        if (!json_uint(x, &v))
            return err_set(err, ST_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                           name, d);
        t->shape[d] = (int64_t)v;
        if (!core_mul_ok(numel, (size_t)v, &numel))
            return err_set(err, ST_ERR_RANGE, "%s: tensor '%s': shape overflows", path, name);
    }
    size_t nbytes;
    if (!core_mul_ok(numel, esize, &nbytes))
        return err_set(err, ST_ERR_RANGE, "%s: tensor '%s': shape overflows", path, name);
    uint64_t b, en;
    if (cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) || !json_uint(off->child->next, &en))
        return err_set(err, ST_ERR_FORMAT, "%s: tensor '%s': data_offsets is not [begin, end]", path, name);
    size_t data_size = st->mf.size - st->header_len;
    if (b > en || en > data_size)
        return err_set(err, ST_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu) out of bounds (data section is %zu bytes)", path,
                       name, (unsigned long long)b, (unsigned long long)en, data_size);
    if (en - b != nbytes)
        return err_set(err, ST_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets span %llu bytes, dtype %s and shape need %zu", path, name,
                       (unsigned long long)(en - b), dt->valuestring, nbytes);
    t->nbytes = nbytes;
    t->data = st->mf.data + st->header_len + b;
    t->name = core_strdup(name);
    if (!t->name) return err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    return ST_OK;
}

Status safetensors_open(const char *path, Safetensors **out, Err *err) {
    *out = NULL;
    cJSON *root = NULL;
    Safetensors *st = core_calloc(1, sizeof *st);
    if (!st) return err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    Status s = mapfile_open(&st->mf, path, err);
    if (s != ST_OK) goto fail;
    if (st->mf.size < 8) {
        s = err_set(err, ST_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors header length", path,
                    st->mf.size);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | st->mf.data[i];
    if (n > st->mf.size - 8 || n > SAFETENSORS_MAX_HEADER) {
        s = err_set(err, ST_ERR_FORMAT,
                    "%s: safetensors header length %llu at offset 0 is longer than the file (%zu bytes) allows",
                    path, (unsigned long long)n, st->mf.size);
        goto fail;
    }
    st->header_len = 8 + (size_t)n;
    if ((s = jsontext_check_nul((const char *)st->mf.data + 8, (size_t)n, path, err)) != ST_OK) goto fail;
    root = cJSON_ParseWithLength((const char *)st->mf.data + 8, (size_t)n);
    if (!root || !cJSON_IsObject(root)) {
        s = err_set(err, ST_ERR_FORMAT, "%s: safetensors header (bytes 8..%zu) is not a JSON object", path,
                    st->header_len);
        goto fail;
    }
    int count = cJSON_GetArraySize(root);
    st->tensors = core_calloc((size_t)count, sizeof *st->tensors);
    if (!st->tensors) {
        s = err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) continue;
        if (strcmp(e->string, "__metadata__") == 0) continue;
        s = parse_entry(st, e, &st->tensors[st->n_tensors], err);
        if (s != ST_OK) goto fail;
        st->n_tensors++;
    }
    if ((s = index_tensors(st, err)) != ST_OK) goto fail;
    cJSON_Delete(root);
    *out = st;
    return ST_OK;
fail:
    cJSON_Delete(root);
    safetensors_free(st);
    return s;
}
