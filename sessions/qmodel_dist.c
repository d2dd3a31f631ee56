/* Plan execution over MPI ranks (see the header). */
#include "sessions/qmodel_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/bytes.h"
#include "core/clock.h"
#include "core/dist.h"
#include "quant/aqlm.h"
#include "quant/format.h"
#include "quant/qlinear_build.h"
#include "quant/rtn.h"
#include "sessions/qmodel_file.h"

/* === Assignment === */

/* Units per layer: {q, k, v}, {o}, {gate, up}, {down}; first site and count. */
static const int UNIT_FIRST[4] = {PROJ_Q, PROJ_O, PROJ_GATE, PROJ_DOWN}, UNIT_N[4] = {3, 1, 2, 1};

/* A format whose values are fitted (scales, or ggml's blocks), as plan execution decides. */
static int has_scales(const QFormatTraits *t) { return t && (t->needs_scale || t->family == QFAM_GGML); }

static int uses_gptq(const PlanEntry *e) {
    return has_scales(qformat_traits(e->w.fmt)) &&
           (e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ));
}

/* Relative cost of quantizing one site (multiply-adds, roughly). */
static double site_cost(const PlanEntry *e, int64_t n_out, int64_t n_in) {
    double mn = (double)n_out * (double)n_in, mnn = mn * (double)n_in;
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (e->w.fmt == QF_AQLM || e->method == QM_AQLM) return 8 * mnn;
    if (!has_scales(t) || e->method == QM_RTN || e->method == QM_IMATRIX) return mn;
    if (e->method == QM_ADADIM) return 2 * mnn; /* two quantizations and two output errors */
    return mnn;                                 /* gptq */
}

Status qmodel_dist_units(const Model *m, const Plan *p, int64_t *unit_of, int64_t *order, double *cost, Err *err) {
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    PlanResolved r;
    memset(&r, 0, sizeof r);
    Status st = plan_resolve(p, &pm, &r, err);
    if (st) return st;
    int64_t L = r.n_layers, ns = L * PROJ_COUNT, nu = L * 4 + 1;
    double *c = cost ? cost : malloc((size_t)nu * sizeof *c);
    if (!c) {
        st = err_set(err, ST_ERR_NOMEM, "work units");
        goto done;
    }
    for (int64_t l = 0; l < L; l++)
        for (int u = 0; u < 4; u++) {
            double cu = 0;
            int factor = 0;
            int64_t n_in = 0;
            for (int k = 0; k < UNIT_N[u]; k++) {
                const PlanSiteEntry *s = &r.lin[l * PROJ_COUNT + UNIT_FIRST[u] + k];
                cu += site_cost(&s->e, s->n_out, s->n_in);
                factor |= uses_gptq(&s->e);
                n_in = s->n_in;
                unit_of[l * PROJ_COUNT + UNIT_FIRST[u] + k] = l * 4 + u;
            }
            if (factor) cu += (double)n_in * (double)n_in * (double)n_in / 3; /* shared Cholesky + inverse */
            c[l * 4 + u] = cu;
        }
    c[nu - 1] = (double)(r.embed.n_out * r.embed.n_in + r.output.n_out * r.output.n_in);
    unit_of[ns] = unit_of[ns + 1] = nu - 1;
    for (int64_t i = 0; i < nu; i++) order[i] = i;
    /* largest first; ties by unit index (insertion sort: stable, a few hundred units) */
    for (int64_t i = 1; i < nu; i++) {
        int64_t x = order[i], j = i;
        while (j > 0 && c[order[j - 1]] < c[x]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
    if (!cost) free(c);
done:
    plan_resolved_done(&r);
    return st;
}

/* === Exchange ===
 * A site on the wire: the file's site record, then f64 seconds, u32 notes
 * and per note i64 key, u32 length, the bytes; then u8 gain flag and, when
 * set, the smoothed norm gain (dim f32) of the group the site opens. */

typedef struct KeyedNote {
    int64_t key;
    char *text;
} KeyedNote;

/* Site i's note keys: its own (k0) and, for the first site of a norm
 * group (q, gate), the group's SmoothQuant notes (k1). Where there is none
 * (k0 for the ends, k1 for the other sites) the key is -2, which no note
 * carries (the untagged notes have -1). */
static void site_keys(int64_t i, int64_t ns, int64_t *k0, int64_t *k1) {
    int64_t l = i / PROJ_COUNT, pj = i % PROJ_COUNT;
    int g = i < ns && pj == PROJ_Q ? 0 : i < ns && pj == PROJ_GATE ? 1 : -1;
    *k0 = i < ns ? l * QMODEL_NOTE_SLOTS + 2 + pj : -2; /* the ends carry no keyed notes */
    *k1 = g >= 0 ? l * QMODEL_NOTE_SLOTS + g : -2;
}

static int note_is(const QModel *part, int64_t j, int64_t k0, int64_t k1) {
    return j < part->n_key && part->notes[j] && (part->note_key[j] == k0 || part->note_key[j] == k1);
}

/* The SmoothQuant gains of the norm group site i opens, when part replaced them; else NULL. */
static const float *site_gain(const QStored *s, int64_t i, int64_t ns, int64_t dim) {
    int64_t l = i / PROJ_COUNT, pj = i % PROJ_COUNT;
    int g = i < ns && pj == PROJ_Q ? 0 : i < ns && pj == PROJ_GATE ? 1 : -1;
    return g < 0 || !s->smoothed[l * 2 + g] ? NULL : (g ? s->ffn_norm : s->attn_norm) + l * dim;
}

/* Notes of part tagged with one of the keys k0, k1. */
static void put_notes(ByteWriter *w, const QModel *part, int64_t k0, int64_t k1) {
    uint32_t n = 0;
    for (int64_t i = 0; i < part->n_key; i++) n += note_is(part, i, k0, k1);
    bytes_put_u32(w, n);
    for (int64_t i = 0; i < part->n_key; i++)
        if (note_is(part, i, k0, k1)) {
            bytes_put_i64(w, part->note_key[i]);
            bytes_put_u32(w, (uint32_t)strlen(part->notes[i]));
            bytes_put(w, part->notes[i], strlen(part->notes[i]));
        }
}

/* The wire bytes of site i of part (heap, *len bytes). */
static Status site_pack(const QModel *part, const Model *m, int64_t i, unsigned char **out, size_t *len, Err *err) {
    ByteWriter w;
    memset(&w, 0, sizeof w);
    w.err = err;
    int64_t ns = part->n_layers * PROJ_COUNT, dim = m->cfg.dim, k0, k1;
    qmodel_file_put_site(&w, &part->stored->sites[i]);
    bytes_put_f64(&w, i < ns ? part->site_seconds[i] : 0.0);
    site_keys(i, ns, &k0, &k1);
    put_notes(&w, part, k0, k1);
    const float *gain = site_gain(part->stored, i, ns, dim);
    bytes_put_u8(&w, gain != NULL);
    if (gain) bytes_put(&w, gain, (size_t)dim * sizeof *gain);
    if (w.st) {
        free(w.p);
        return w.st;
    }
    *out = w.p;
    *len = w.n;
    return ST_OK;
}

/* Reads site i's wire bytes into s (the site, its gain) and appends its notes to *notes. */
static Status site_unpack(const unsigned char *buf, size_t len, int64_t i, int from, const Model *m, QStored *s,
                          double *seconds, KeyedNote **notes, int64_t *n_notes, Err *err) {
    char site[48];
    int64_t ns = s->n_layers * PROJ_COUNT, dim = m->cfg.dim, l = i / PROJ_COUNT, pj = i % PROJ_COUNT;
    if (i < ns) snprintf(site, sizeof site, "%lld.%s", (long long)l, proj_name((Proj)pj));
    else snprintf(site, sizeof site, "%s", i == ns ? "output" : "embed");
    char where[96];
    snprintf(where, sizeof where, "%ssite %s from rank %d", dist_prefix(), site, from);
    ByteReader r;
    bytes_init(&r, buf, len, where);
    Status st = qmodel_file_read_site(&r, &s->sites[i], site, err);
    uint32_t nn = 0;
    if (!st) st = bytes_read(&r, seconds, 8, "seconds", err);
    if (!st) st = bytes_read(&r, &nn, 4, "notes", err);
    for (uint32_t k = 0; !st && k < nn; k++) {
        int64_t key;
        uint32_t tl;
        if ((st = bytes_read(&r, &key, 8, "note key", err)) || (st = bytes_read(&r, &tl, 4, "note length", err)) ||
            (st = bytes_need(&r, tl, "note", err)))
            break;
        KeyedNote *nw = realloc(*notes, (size_t)(*n_notes + 1) * sizeof *nw);
        char *t = malloc((size_t)tl + 1);
        if (!nw || !t) {
            if (nw) *notes = nw;
            free(t);
            st = err_set(err, ST_ERR_NOMEM, "notes");
            break;
        }
        *notes = nw;
        memcpy(t, buf + r.off, tl);
        t[tl] = 0;
        r.off += tl;
        nw[(*n_notes)++] = (KeyedNote){key, t};
    }
    uint8_t has_gain = 0;
    if (!st) st = bytes_read(&r, &has_gain, 1, "gain flag", err);
    if (!st && has_gain) {
        int g = pj == PROJ_GATE;
        float **dst = g ? &s->ffn_norm : &s->attn_norm;
        if (!*dst && !(*dst = calloc((size_t)(s->n_layers * dim), sizeof **dst))) return err_set(err, ST_ERR_NOMEM, "gains");
        if (!(st = bytes_read(&r, *dst + l * dim, (size_t)dim * sizeof **dst, "gain", err))) s->smoothed[l * 2 + g] = 1;
    }
    if (!st && r.off != len) st = err_set(err, ST_ERR_FORMAT, "%s: %zu trailing bytes", where, len - r.off);
    return st;
}

/* Site i of this rank's own part into s without a copy of its weights:
 * what site_pack + site_unpack would give, with the kernel part built for it
 * moved to *ready (projections only; the ends are rebuilt). */
static Status site_take(QModel *part, const Model *m, int64_t i, QStored *s, double *seconds, QLinear **ready,
                        KeyedNote **notes, int64_t *n_notes, Err *err) {
    int64_t ns = s->n_layers * PROJ_COUNT, dim = m->cfg.dim, l = i / PROJ_COUNT, k0, k1;
    QStoredSite *src = &part->stored->sites[i];
    s->sites[i] = *src;
    memset(src, 0, sizeof *src);
    *seconds = i < ns ? part->site_seconds[i] : 0.0;
    if (i < ns) {
        *ready = part->lin[i];
        part->lin[i] = NULL;
    }
    site_keys(i, ns, &k0, &k1);
    for (int64_t j = 0; j < part->n_key; j++) {
        if (!note_is(part, j, k0, k1)) continue;
        KeyedNote *nw = realloc(*notes, (size_t)(*n_notes + 1) * sizeof *nw);
        if (!nw) return err_set(err, ST_ERR_NOMEM, "notes");
        *notes = nw;
        nw[(*n_notes)++] = (KeyedNote){part->note_key[j], part->notes[j]};
        part->notes[j] = NULL;
    }
    const float *gain = site_gain(part->stored, i, ns, dim);
    if (gain) {
        int g = i % PROJ_COUNT == PROJ_GATE;
        float **dst = g ? &s->ffn_norm : &s->attn_norm;
        if (!*dst && !(*dst = calloc((size_t)(s->n_layers * dim), sizeof **dst))) return err_set(err, ST_ERR_NOMEM, "gains");
        memcpy(*dst + l * dim, gain, (size_t)dim * sizeof *gain);
        s->smoothed[l * 2 + g] = 1;
    }
    return ST_OK;
}

/* Final notes: the stored build's plan notes (the first n_plan), then the
 * parts' keyed notes in key order (one process's order), then the stored
 * build's other untagged notes (the ends, the kernels). */
static Status notes_merge(QModel *qm, int64_t n_plan, KeyedNote *kn, int64_t n_kn, Err *err) {
    for (int64_t i = 1; i < n_kn; i++) { /* stable by key: a site's notes keep their order */
        KeyedNote x = kn[i];
        int64_t j = i;
        while (j > 0 && kn[j - 1].key > x.key) {
            kn[j] = kn[j - 1];
            j--;
        }
        kn[j] = x;
    }
    int64_t n = 0;
    char **out = malloc((size_t)(qm->n_notes + n_kn + 1) * sizeof *out);
    int64_t *keys = malloc((size_t)(qm->n_notes + n_kn + 1) * sizeof *keys);
    if (!out || !keys) {
        free(out);
        free(keys);
        return err_set(err, ST_ERR_NOMEM, "notes");
    }
    for (int64_t i = 0; i < n_plan && i < qm->n_notes; i++, n++) {
        out[n] = qm->notes[i];
        keys[n] = -1;
    }
    for (int64_t i = 0; i < n_kn; i++, n++) {
        out[n] = kn[i].text;
        keys[n] = kn[i].key;
        kn[i].text = NULL;
    }
    for (int64_t i = n_plan; i < qm->n_notes; i++) {
        if (qm->note_key && i < qm->n_key && qm->note_key[i] >= 0) { /* the stored build's "(stored)" notes */
            free(qm->notes[i]);
            continue;
        }
        out[n] = qm->notes[i];
        keys[n++] = -1;
    }
    free(qm->notes);
    free(qm->note_key);
    qm->notes = out;
    qm->note_key = keys;
    qm->n_notes = qm->n_key = n;
    return ST_OK;
}

Status qmodel_build_dist(const Model *m, const Plan *p, const QModelStats *st, int flags, Pool *pool, Progress *prog,
                         QModel **out, Err *err) {
    *out = NULL;
    int nr = dist_size(), me = dist_rank(), keep = (flags & QDIST_KEEP) != 0, root = (flags & QDIST_ROOT) != 0;
    if (nr <= 1) return (keep ? qmodel_build_keep : qmodel_build)(m, p, st, pool, prog, out, err);
    double t0 = clock_now();
    int64_t L = m->cfg.n_layers, ns = L * PROJ_COUNT, nu = L * 4 + 1, n_parts = 0;
    int64_t *unit_of = malloc((size_t)(ns + 2) * sizeof *unit_of), *order = malloc((size_t)nu * sizeof *order);
    int64_t *owner = calloc((size_t)(ns + 2), sizeof *owner), *part_of = malloc((size_t)(ns + 2) * sizeof *part_of);
    uint8_t *only = calloc((size_t)(ns + 2), 1);
    double *secs = calloc((size_t)(ns + 2), sizeof *secs);
    QModel **parts = calloc((size_t)nu, sizeof *parts);
    QStored *all = calloc(1, sizeof *all);
    QLinear **ready = calloc((size_t)ns, sizeof *ready);
    DistCounter *ctr = NULL;
    KeyedNote *kn = NULL;
    int64_t n_kn = 0;
    QModel *qm = NULL;
    unsigned char *buf = NULL;
    Status s;
    if (!unit_of || !order || !owner || !part_of || !only || !secs || !parts || !all || !ready) {
        s = err_set(err, ST_ERR_NOMEM, "distributed build");
        goto done;
    }
    all->fingerprint = m->fingerprint;
    all->n_layers = L;
    all->dim = m->cfg.dim;
    all->vocab = m->cfg.vocab_size;
    all->sites = calloc((size_t)(ns + 2), sizeof *all->sites);
    all->smoothed = calloc((size_t)(L * 2), 1);
    if (!all->sites || !all->smoothed) {
        s = err_set(err, ST_ERR_NOMEM, "distributed build");
        goto done;
    }
    if ((s = qmodel_dist_units(m, p, unit_of, order, NULL, err)) || (s = dist_counter_new(&ctr, err))) goto done;
    /* Each rank takes the next unit, largest first, whenever it is free:
     * the ranks finish within about one small unit of each other however
     * unevenly the machine's other work slows them. A unit's result does not
     * depend on which rank builds it. */
    for (;;) {
        int64_t k;
        if ((s = dist_counter_next(ctr, &k, err))) goto done;
        if (k >= nu) break;
        for (int64_t i = 0; i < ns + 2; i++) only[i] = unit_of[i] == order[k];
        if ((s = qmodel_build_part(m, p, st, only, pool, prog, &parts[n_parts], err))) goto done;
        for (int64_t i = 0; i < ns + 2; i++)
            if (only[i]) {
                owner[i] = me + 1;
                part_of[i] = n_parts;
            }
        n_parts++;
    }
    dist_counter_free(ctr);
    ctr = NULL;
    /* Who built what: each site's owner + 1 from its owner, 0 from the rest. */
    if ((s = dist_sum_i64(owner, ns + 2, err))) goto done;
    for (int64_t i = 0; i < ns + 2; i++) {
        ASSERT(owner[i] >= 1 && owner[i] <= nr); /* every unit was taken exactly once */
        owner[i]--;
    }
    /* Every site, in order, from its builder to every rank (MPI_Bcast), or
     * with QDIST_ROOT to rank 0 alone: `quant` writes and reports on rank 0,
     * so the others would only unpack and build kernels to throw away. A
     * builder keeps its own sites, and the kernels it built for them, with
     * no copy. */
    int need = !root || me == 0; /* does this rank gather the model? */
    for (int64_t i = 0; i < ns + 2; i++) {
        uint64_t len = 0;
        size_t n = 0;
        int from = (int)owner[i];
        QModel *part = from == me ? parts[part_of[i]] : NULL;
        if (part && (!root || from != 0)) { /* someone else needs it */
            if ((s = site_pack(part, m, i, &buf, &n, err))) goto done;
            len = n;
            if (root) s = dist_send(&len, sizeof len, 0, err);
            if (!s) s = root ? dist_send(buf, n, 0, err) : dist_bcast(&len, sizeof len, from, err);
            if (!s && !root) s = dist_bcast(buf, n, from, err);
            free(buf);
            buf = NULL;
            if (s) goto done;
        } else if (!part && need) {
            s = root ? dist_recv(&len, sizeof len, from, err) : dist_bcast(&len, sizeof len, from, err);
            if (s) goto done;
            if (!(buf = malloc(len ? (size_t)len : 1))) {
                s = err_set(err, ST_ERR_NOMEM, "site %lld: %llu bytes", (long long)i, (unsigned long long)len);
                goto done;
            }
            if ((s = root ? dist_recv(buf, (size_t)len, from, err) : dist_bcast(buf, (size_t)len, from, err)) ||
                (s = site_unpack(buf, (size_t)len, i, from, m, all, &secs[i], &kn, &n_kn, err)))
                goto done;
            free(buf);
            buf = NULL;
        }
        if (part && need) {
            if ((s = site_take(part, m, i, all, &secs[i], i < ns ? &ready[i] : NULL, &kn, &n_kn, err))) goto done;
        } else if (part) { /* sent: this rank's copy is no longer needed */
            qtensor_done(&part->stored->sites[i].q);
            aqlm_tensor_done(&part->stored->sites[i].a);
        }
    }
    for (int64_t k = 0; k < n_parts; k++) {
        qmodel_free(parts[k]);
        parts[k] = NULL;
    }
    if (!need) goto done; /* *out stays NULL: rank 0 has the model */
    /* The kernels from the gathered sites, as `eval --quant` builds them
     * (this rank's own sites' kernels taken as built). */
    if ((s = qmodel_build_stored_ready(m, p, all, ready, pool, NULL, &qm, err))) goto done;
    memcpy(qm->site_seconds, secs, (size_t)ns * sizeof *secs);
    if ((s = notes_merge(qm, p->n_notes, kn, n_kn, err))) goto done;
    if (keep) {
        qm->stored = all;
        all = NULL;
    }
    qm->seconds = clock_now() - t0;
    *out = qm;
    qm = NULL;
done:
    /* on failure the counter is left: freeing it waits for every rank */
    for (int64_t i = 0; i < n_kn; i++) free(kn[i].text);
    free(kn);
    free(buf);
    for (int64_t k = 0; parts && k < n_parts; k++) qmodel_free(parts[k]);
    free(parts);
    qmodel_free(qm);
    qstored_free(all);
    for (int64_t i = 0; ready && i < ns; i++) qlinear_free(ready[i]);
    free(ready);
    free(unit_of);
    free(order);
    free(owner);
    free(part_of);
    free(only);
    free(secs);
    return s;
}
