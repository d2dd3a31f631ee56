#include "analysis/statsfile.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/bytes.h"
#include "core/hash.h"
#include "core/mapfile.h"

/* Sanity bounds on read: far above any real model, low enough that a corrupt
 * count cannot make us allocate absurd amounts before the length check. */
#define MAX_LAYERS 4096
#define MAX_WIDTH (1 << 20)
#define MAX_SENS_NAMES 64

/* === writer === */

static void put_str(ByteWriter *b, const char *s) {
    size_t n = strnlen(s, 65535);
    bytes_put_u32(b, (uint32_t)n);
    bytes_put(b, s, n);
}

static void put_tap(ByteWriter *b, const TapStats *ts) {
    bytes_put_i64(b, ts->width);
    bytes_put_i64(b, ts->n_rows);
    bytes_put_f32(b, ts->absmax);
    bytes_put_i64(b, ts->mom.n);
    bytes_put_f64(b, ts->mom.mean);
    bytes_put_f64(b, ts->mom.m2);
    bytes_put_f64(b, ts->mom.m3);
    bytes_put_f64(b, ts->mom.m4);
    bytes_put_u32(b, HIST_NBINS);
    for (int i = 0; i < HIST_NBINS; i++) bytes_put_u64(b, ts->hist[i]);
    for (int64_t c = 0; c < ts->width; c++) bytes_put_f64(b, ts->ch_sum[c]);
    for (int64_t c = 0; c < ts->width; c++) bytes_put_f64(b, ts->ch_sumsq[c]);
    for (int64_t c = 0; c < ts->width; c++) bytes_put_f32(b, ts->ch_absmax[c]);
    bytes_put_u32(b, (uint32_t)ts->n_top);
    for (int32_t i = 0; i < ts->n_top; i++) {
        const Spike *s = &ts->top[i];
        bytes_put_f32(b, s->value);
        bytes_put_u32(b, (uint32_t)s->channel);
        bytes_put_u32(b, (uint32_t)s->token);
        bytes_put_u32(b, (uint32_t)s->pos);
        bytes_put_i64(b, s->seq);
        put_str(b, s->text);
    }
    bytes_put_u32(b, (uint32_t)ts->has_act);
    for (int m = 0; m < ACT_MODE_COUNT; m++) bytes_put_f64(b, ts->act_ref[m]);
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACT_MODE_COUNT; m++) bytes_put_f64(b, ts->act_err[f][m]);
}

Status statsfile_save(const CalibStats *cs, const char *path, Err *err) {
    const CalibParams *p = &cs->params;
    AtomicFile af;
    Status st = afile_open(&af, path, err);
    if (st) return st;
    ByteWriter b;
    bytes_writer_init(&b, &af, err);
    bytes_put(&b, "QSST", 4);
    bytes_put_u32(&b, STATSFILE_VERSION);
    bytes_put_u64(&b, cs->fingerprint);
    put_str(&b, p->text_path);
    bytes_put_u64(&b, p->text_hash);
    bytes_put_i64(&b, p->text_bytes);
    bytes_put_i64(&b, p->samples);
    bytes_put_i64(&b, p->seqlen);
    bytes_put_u64(&b, p->seed);
    bytes_put_u32(&b, (uint32_t)p->mode);
    bytes_put_i64(&b, p->group);
    bytes_put_u32(&b, (uint32_t)p->topk);
    bytes_put_u32(&b, (uint32_t)p->sensitivity);
    bytes_put_i64(&b, p->tok_from); /* version 3 */
    bytes_put_i64(&b, cs->n_layers);
    bytes_put_i64(&b, cs->dim);
    bytes_put_i64(&b, cs->hidden_dim);
    bytes_put_i64(&b, cs->q_dim);
    bytes_put_i64(&b, cs->vocab_size);
    for (int t = 0; t < TAP_COUNT; t++) bytes_put_i64(&b, cs->width[t]);
    bytes_put_i64(&b, cs->n_planned);
    bytes_put_i64(&b, cs->n_seqs);
    bytes_put_i64(&b, cs->n_tokens);
    for (int64_t i = 0; i < cs->n_layers * TAP_COUNT; i++) put_tap(&b, &cs->taps[i]);
    int64_t np = cs->n_layers * p->seqlen;
    for (int64_t i = 0; i < np; i++) bytes_put_f64(&b, cs->resid_rms_sum[i]);
    for (int64_t i = 0; i < np; i++) bytes_put_f32(&b, cs->resid_rms_max[i]);
    bytes_put_u32(&b, (uint32_t)cs->has_sens);
    if (cs->has_sens) {
        /* The candidates and groupings by name, so a later build with other
         * candidates maps the cells it knows and resumes the rest. */
        const SensMap *sm = &cs->sens;
        int64_t nc = cs->n_layers * PROJ_COUNT * SENS_NFMT * SG_COUNT;
        bytes_put_i64(&b, sm->group);
        bytes_put_u32(&b, SENS_NFMT);
        for (int f = 0; f < SENS_NFMT; f++) put_str(&b, qformat_traits(sens_fmt(f))->name);
        bytes_put_u32(&b, SG_COUNT);
        for (int g = 0; g < SG_COUNT; g++) put_str(&b, sens_group_name((SensGroup)g));
        for (int64_t i = 0; i < nc; i++) bytes_put_f32(&b, sm->werr[i]);
        for (int64_t i = 0; i < nc; i++) bytes_put_f32(&b, sm->oerr[i]);
        for (int64_t i = 0; i < cs->n_layers * PROJ_COUNT * SG_COUNT; i++) bytes_put_u32(&b, (uint32_t)sm->gsize[i]);
        bytes_put(&b, sm->done, (size_t)(cs->n_layers * PROJ_COUNT * SENS_NFMT));
    }
    bytes_put_u32(&b, (uint32_t)cs->has_h);
    bytes_put_u64(&b, cs->h_id);
    bytes_put_u64(&b, (uint64_t)cs->h_bytes);
    if ((st = bytes_put_hash(&b))) {
        afile_abort(&af);
        return st;
    }
    return afile_commit(&af, err);
}

/* === reader === */

/* A cursor whose first error sticks: later reads return 0 and leave err alone,
 * so a run of reads is checked once at its end. */
typedef struct Rd {
    ByteReader b;
    Err *err;
    int bad;
} Rd;

static int rd_need(Rd *r, size_t n, const char *field) {
    if (r->bad) return 0;
    if (bytes_need(&r->b, n, field, r->err)) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static uint64_t get_u64(Rd *r, const char *field) {
    if (!rd_need(r, 8, field)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)r->b.p[r->b.off + i] << (8 * i);
    r->b.off += 8;
    return v;
}
static uint32_t get_u32(Rd *r, const char *field) {
    if (!rd_need(r, 4, field)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)r->b.p[r->b.off + i] << (8 * i);
    r->b.off += 4;
    return v;
}
static int64_t get_i64(Rd *r, const char *field) { return (int64_t)get_u64(r, field); }
static double get_f64(Rd *r, const char *field) {
    uint64_t u = get_u64(r, field);
    double v;
    memcpy(&v, &u, 8);
    return v;
}
static float get_f32(Rd *r, const char *field) {
    uint32_t u = get_u32(r, field);
    float v;
    memcpy(&v, &u, 4);
    return v;
}
/* Reads a string into dst (cap bytes incl. NUL); longer strings are an error. */
static void get_str(Rd *r, char *dst, size_t cap, const char *field) {
    size_t at = r->b.off;
    uint32_t n = get_u32(r, field);
    if (r->bad) return;
    if (n >= cap) {
        err_set(r->err, ST_ERR_FORMAT, "%s: field '%s' (offset %zu): length %u, at most %zu", r->b.path, field, at,
                n, cap - 1);
        r->bad = 1;
        return;
    }
    if (!rd_need(r, n, field)) return;
    memcpy(dst, r->b.p + r->b.off, n);
    dst[n] = '\0';
    r->b.off += n;
}
/* Checks lo <= v <= hi for a field read at offset at. */
static int rd_range(Rd *r, int64_t v, int64_t lo, int64_t hi, const char *field, size_t at) {
    if (r->bad) return 0;
    if (v < lo || v > hi) {
        err_set(r->err, ST_ERR_FORMAT, "%s: field '%s' (offset %zu) is %lld, expected %lld..%lld", r->b.path, field,
                at, (long long)v, (long long)lo, (long long)hi);
        r->bad = 1;
        return 0;
    }
    return 1;
}

static int64_t get_checked(Rd *r, int64_t lo, int64_t hi, const char *field) {
    size_t at = r->b.off;
    int64_t v = get_i64(r, field);
    rd_range(r, v, lo, hi, field, at);
    return v;
}
static int64_t get_checked32(Rd *r, int64_t lo, int64_t hi, const char *field) {
    size_t at = r->b.off;
    int64_t v = (int32_t)get_u32(r, field);
    rd_range(r, v, lo, hi, field, at);
    return v;
}

static void get_tap(Rd *r, TapStats *ts, int64_t width) {
    get_checked(r, width, width, "tap.width");
    ts->n_rows = get_checked(r, 0, INT64_MAX, "tap.n_rows");
    ts->absmax = get_f32(r, "tap.absmax");
    ts->mom.n = get_checked(r, 0, INT64_MAX, "tap.moments.n");
    ts->mom.mean = get_f64(r, "tap.moments.mean");
    ts->mom.m2 = get_f64(r, "tap.moments.m2");
    ts->mom.m3 = get_f64(r, "tap.moments.m3");
    ts->mom.m4 = get_f64(r, "tap.moments.m4");
    get_checked32(r, HIST_NBINS, HIST_NBINS, "tap.hist.nbins");
    if (!rd_need(r, (size_t)HIST_NBINS * 8, "tap.hist")) return;
    for (int i = 0; i < HIST_NBINS; i++) ts->hist[i] = get_u64(r, "tap.hist");
    if (!rd_need(r, (size_t)width * 20, "tap.channels")) return;
    for (int64_t c = 0; c < width; c++) ts->ch_sum[c] = get_f64(r, "tap.ch_sum");
    for (int64_t c = 0; c < width; c++) ts->ch_sumsq[c] = get_f64(r, "tap.ch_sumsq");
    for (int64_t c = 0; c < width; c++) ts->ch_absmax[c] = get_f32(r, "tap.ch_absmax");
    ts->n_top = (int32_t)get_checked32(r, 0, ts->k, "tap.n_top");
    for (int32_t i = 0; i < ts->n_top && !r->bad; i++) {
        Spike *s = &ts->top[i];
        s->value = get_f32(r, "spike.value");
        s->channel = (int32_t)get_checked32(r, 0, width - 1, "spike.channel");
        s->token = (int32_t)get_checked32(r, -1, INT32_MAX, "spike.token");
        s->pos = (int32_t)get_checked32(r, 0, INT32_MAX, "spike.pos");
        s->seq = get_checked(r, 0, INT64_MAX, "spike.seq");
        get_str(r, s->text, sizeof s->text, "spike.text");
    }
    ts->has_act = (int)get_checked32(r, 0, 1, "tap.has_act");
    for (int m = 0; m < ACT_MODE_COUNT; m++) ts->act_ref[m] = get_f64(r, "tap.act_ref");
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACT_MODE_COUNT; m++) ts->act_err[f][m] = get_f64(r, "tap.act_err");
}

/* The sensitivity map: its cells are mapped by candidate and grouping name
 * onto this build's map, so a file from a build with fewer candidates loads
 * as a partial map (the new candidates not done) and a candidate since
 * dropped is skipped. */
static Status get_sens(Rd *r, CalibStats *cs, int64_t nl) {
    int64_t g = get_checked(r, 0, MAX_WIDTH, "sens.group");
    int nf = (int)get_checked32(r, 1, MAX_SENS_NAMES, "sens.n_formats");
    int fmap[MAX_SENS_NAMES], gmap[MAX_SENS_NAMES];
    char name[32];
    for (int f = 0; f < nf && !r->bad; f++) {
        get_str(r, name, sizeof name, "sens.format");
        int q = qformat_parse(name);
        fmap[f] = q < 0 ? -1 : sens_fmt_index((QFormat)q);
    }
    int ng = (int)get_checked32(r, 1, MAX_SENS_NAMES, "sens.n_groupings");
    int seen[SG_COUNT] = {0};
    for (int k = 0; k < ng && !r->bad; k++) {
        get_str(r, name, sizeof name, "sens.grouping");
        gmap[k] = -1;
        for (int j = 0; j < SG_COUNT; j++)
            if (strcmp(name, sens_group_name((SensGroup)j)) == 0) gmap[k] = j, seen[j] = 1;
    }
    if (r->bad) return ST_ERR_FORMAT;
    int64_t ns = nl * PROJ_COUNT, nc = ns * nf * ng;
    if (!rd_need(r, (size_t)nc * 8 + (size_t)(ns * ng) * 4 + (size_t)(ns * nf), "sens")) return ST_ERR_FORMAT;
    Status st = sens_map_init(&cs->sens, nl, g, r->err);
    if (st) return st;
    SensMap *sm = &cs->sens;
    for (int pass = 0; pass < 2; pass++) {
        float *dst = pass ? sm->oerr : sm->werr;
        for (int64_t s = 0; s < ns; s++)
            for (int f = 0; f < nf; f++)
                for (int k = 0; k < ng; k++) {
                    float v = get_f32(r, pass ? "sens.oerr" : "sens.werr");
                    if (fmap[f] >= 0 && gmap[k] >= 0) dst[(s * SENS_NFMT + fmap[f]) * SG_COUNT + gmap[k]] = v;
                }
    }
    for (int64_t s = 0; s < ns; s++)
        for (int k = 0; k < ng; k++) {
            int32_t v = (int32_t)get_checked32(r, 0, MAX_WIDTH, "sens.gsize");
            if (gmap[k] >= 0) sm->gsize[s * SG_COUNT + gmap[k]] = v;
        }

    for (int64_t s = 0; s < ns; s++)
        for (int f = 0; f < nf; f++) {
            uint32_t d = r->bad ? 0 : r->b.p[r->b.off];
            if (!rd_range(r, d, 0, 1, "sens.done", r->b.off)) break;
            r->b.off++;
            /* a grouping the file lacks leaves the candidates with cells there to recompute */
            int whole = 1;
            for (int j = 0; fmap[f] >= 0 && j < SG_COUNT; j++)
                if (sens_cell_applies(fmap[f], (SensGroup)j) && !seen[j]) whole = 0;
            if (fmap[f] >= 0) sm->done[s * SENS_NFMT + fmap[f]] = (uint8_t)(d && whole);
        }
    return r->bad ? ST_ERR_FORMAT : ST_OK;
}

Status statsfile_load(const char *path, CalibStats **out, Err *err) {
    *out = NULL;
    MappedFile mf;
    Status st = mapfile_open(&mf, path, err);
    if (st) return st;
    CalibStats *cs = NULL;
    Rd r = {.err = err};
    bytes_init(&r.b, mf.data, mf.size, path);
    if (!rd_need(&r, 8, "magic")) goto bad;
    if (memcmp(mf.data, "QSST", 4) != 0) {
        err_set(err, ST_ERR_FORMAT, "%s: offset 0: magic is not QSST (not a qscope stats file)", path);
        goto bad;
    }
    r.b.off = 4;
    uint32_t ver = get_u32(&r, "version");
    if (ver != STATSFILE_VERSION && ver != 2) { /* 2: no tok_from (the whole text) */
        err_set(err, ST_ERR_FORMAT, "%s: offset 4: version %u, this build reads %d (recalibrate)", path, ver,
                STATSFILE_VERSION);
        goto bad;
    }
    CalibParams p;
    memset(&p, 0, sizeof p);
    uint64_t fp = get_u64(&r, "fingerprint");
    get_str(&r, p.text_path, sizeof p.text_path, "params.text_path");
    p.text_hash = get_u64(&r, "params.text_hash");
    p.text_bytes = get_checked(&r, 0, INT64_MAX, "params.text_bytes");
    p.samples = get_checked(&r, CALIB_SAMPLES_MIN, CALIB_SAMPLES_MAX, "params.samples");
    p.seqlen = get_checked(&r, CALIB_SEQLEN_MIN, CALIB_SEQLEN_MAX, "params.seqlen");
    p.seed = get_u64(&r, "params.seed");
    p.mode = (CalibMode)get_checked32(&r, 0, 1, "params.mode");
    p.group = get_checked(&r, CALIB_GROUP_MIN, CALIB_GROUP_MAX, "params.group");
    p.topk = (int32_t)get_checked32(&r, CALIB_TOPK_MIN, CALIB_TOPK_MAX, "params.topk");
    p.sensitivity = (int32_t)get_checked32(&r, 0, 1, "params.sensitivity");
    if (ver >= 3) p.tok_from = get_checked(&r, 0, (int64_t)1 << 40, "params.tok_from");
    int64_t nl = get_checked(&r, 1, MAX_LAYERS, "n_layers");
    int64_t dim = get_checked(&r, 1, MAX_WIDTH, "dim");
    int64_t hid = get_checked(&r, 1, MAX_WIDTH, "hidden_dim");
    int64_t qd = get_checked(&r, 1, MAX_WIDTH, "q_dim");
    int64_t vocab = get_checked(&r, 1, INT32_MAX, "vocab_size");
    int64_t width[TAP_COUNT];
    const int64_t want[TAP_COUNT] = {dim, qd, dim, hid, dim};
    for (int t = 0; t < TAP_COUNT; t++) width[t] = get_checked(&r, want[t], want[t], "width");
    if (r.bad) goto bad;
    /* Per-layer bytes are bounded below, so a huge n_layers or seqlen in a
     * short file fails here, before any allocation. */
    size_t per_layer = (size_t)TAP_COUNT * (HIST_NBINS * 8 + 100) + (size_t)p.seqlen * 12;
    for (int t = 0; t < TAP_COUNT; t++) per_layer += (size_t)width[t] * 20; /* channel arrays */
    size_t min_bytes = (size_t)nl * per_layer;
    if (!rd_need(&r, min_bytes, "layers")) goto bad;
    st = calib_stats_new(nl, width, p.seqlen, p.topk, &cs, err);
    if (st) goto fail;
    cs->fingerprint = fp;
    cs->params = p;
    cs->dim = dim;
    cs->hidden_dim = hid;
    cs->q_dim = qd;
    cs->vocab_size = vocab;
    cs->n_planned = get_checked(&r, 1, INT64_MAX, "n_planned");
    cs->n_seqs = get_checked(&r, 0, cs->n_planned, "n_seqs");
    cs->n_tokens = get_checked(&r, 0, INT64_MAX, "n_tokens");
    for (int64_t i = 0; i < nl * TAP_COUNT && !r.bad; i++) get_tap(&r, &cs->taps[i], width[i % TAP_COUNT]);
    int64_t np = nl * p.seqlen;
    if (!rd_need(&r, (size_t)np * 12, "resid")) goto bad;
    for (int64_t i = 0; i < np; i++) cs->resid_rms_sum[i] = get_f64(&r, "resid_rms_sum");
    for (int64_t i = 0; i < np; i++) cs->resid_rms_max[i] = get_f32(&r, "resid_rms_max");
    cs->has_sens = (int)get_checked32(&r, 0, 1, "has_sens");
    if (r.bad) goto bad;
    if (cs->has_sens && (st = get_sens(&r, cs, nl)) != ST_OK) goto fail;
    if (r.bad) goto bad;
    cs->has_h = (int)get_checked32(&r, 0, 1, "has_h");
    cs->h_id = get_u64(&r, "h_id");
    cs->h_bytes = (size_t)get_u64(&r, "h_bytes");
    size_t body = r.b.off;
    uint64_t sum = get_u64(&r, "checksum");
    if (r.bad) goto bad;
    if (r.b.off != r.b.n) {
        err_set(err, ST_ERR_FORMAT, "%s: %zu unexpected bytes after the checksum (offset %zu)", path, r.b.n - r.b.off,
                r.b.off);
        goto bad;
    }
    if (sum != hash_bytes(HASH_SEED, mf.data, body)) {
        err_set(err, ST_ERR_FORMAT, "%s: field 'checksum' (offset %zu) does not match the contents: the file is corrupt",
                path, body);
        goto bad;
    }
    mapfile_close(&mf);
    *out = cs;
    return ST_OK;
bad:
    st = ST_ERR_FORMAT;
fail:
    calib_stats_free(cs);
    mapfile_close(&mf);
    return st;
}

int statsfile_is_stale(const CalibStats *cs, const Model *m, char *why, size_t cap) {
    const ModelConfig *c = &m->cfg;
    if (cs->fingerprint != m->fingerprint) {
        snprintf(why, cap, "model fingerprint %016llx differs from the calibrated one %016llx",
                 (unsigned long long)m->fingerprint, (unsigned long long)cs->fingerprint);
        return 1;
    }
    if (cs->n_layers != c->n_layers || cs->dim != c->dim || cs->hidden_dim != c->hidden_dim ||
        cs->q_dim != c->n_heads * c->head_dim) {
        snprintf(why, cap, "model shape (%lld layers, dim %lld, hidden %lld) differs from the stats (%lld, %lld, %lld)",
                 (long long)c->n_layers, (long long)c->dim, (long long)c->hidden_dim, (long long)cs->n_layers,
                 (long long)cs->dim, (long long)cs->hidden_dim);
        return 1;
    }
    if (cap) why[0] = '\0';
    return 0;
}

char *statsfile_h_path(const char *stats_path, uint64_t h_id) {
    size_t n = strlen(stats_path) + 24;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s.%016llx.h64", stats_path, (unsigned long long)h_id);
    return s;
}

/* === The stats file with its H store === */

/* Opens out->cs's H store at hpath into out->h (name: the file the messages name). */
static Status open_h(QStatsFile *out, const char *hpath, const char *name, Err *err) {
    out->h = calloc(1, sizeof *out->h);
    if (!out->h) return err_set(err, ST_ERR_NOMEM, "%s: H store", name);
    Status st = hstore_open(out->h, hpath, out->cs->h_id, out->cs->n_layers, out->cs->width, err);
    if (st) {
        free(out->h);
        out->h = NULL;
    }
    return st;
}

Status qstats_open(const char *path, const Model *m, QStatsFile *out, Err *err) {
    memset(out, 0, sizeof *out);
    char *hpath = NULL;
    Status st = statsfile_load(path, &out->cs, err);
    if (st) goto fail;
    char why[256];
    if (m && statsfile_is_stale(out->cs, m, why, sizeof why)) {
        st = err_set(err, ST_ERR_MISMATCH, "%s: statistics were not computed on %s: %s", path, m->path, why);
        goto fail;
    }
    if (out->cs->has_h) {
        hpath = statsfile_h_path(path, out->cs->h_id);
        if (!hpath) {
            st = err_set(err, ST_ERR_NOMEM, "%s: H path", path);
            goto fail;
        }
        if ((st = open_h(out, hpath, path, err))) goto fail;
    }
    free(hpath);
    return ST_OK;
fail:
    free(hpath);
    qstats_close(out);
    return st;
}

static Status calibrate(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                        const char *h_path, int sensitivity, Pool *pool, QStatsFile *out, Err *err) {
    memset(out, 0, sizeof *out);
    CalibParams p;
    calib_params_default(&p);
    p.samples = samples;
    p.seqlen = seqlen;
    p.sensitivity = sensitivity;
    Status st = calib_run(m, text, len, &p, h_path, pool, NULL, &out->cs, err);
    if (st) return st;
    if (h_path && out->cs->has_h && (st = open_h(out, h_path, h_path, err))) qstats_close(out);
    return st;
}

Status qstats_calibrate(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                        const char *h_path, Pool *pool, QStatsFile *out, Err *err) {
    return calibrate(m, text, len, samples, seqlen, h_path, 0, pool, out, err);
}

Status qstats_calibrate_sens(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                             const char *h_path, Pool *pool, QStatsFile *out, Err *err) {
    return calibrate(m, text, len, samples, seqlen, h_path, 1, pool, out, err);
}

void qstats_close(QStatsFile *f) {
    if (!f) return;
    if (f->h) {
        hstore_close(f->h);
        free(f->h);
    }
    calib_stats_free(f->cs);
    memset(f, 0, sizeof *f);
}
