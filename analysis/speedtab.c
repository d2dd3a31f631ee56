#include "analysis/speedtab.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/atomicfile.h"
#include "core/cache.h"
#include "core/clock.h"
#include "core/hash.h"
#include "kernels/cpu.h"
#include "quant/qlinear.h"
#include "quant/qlinear_build.h"
#include "quant/rtn.h"

/* The kernel-relevant code of e: its plan_entry_code with the method and
 * SmoothQuant dropped. */
static void speed_code(const PlanEntry *e, char *buf, size_t n) {
    PlanEntry k = *e;
    k.method = QM_RTN;
    k.smooth_alpha = 0;
    plan_entry_code(&k, buf, n);
}

Status speedtab_path(const char *cache_dir, int threads, char *buf, size_t n, Err *err) {
    char dir[1024];
    if (!cache_dir) {
        Status st = cache_dir_default(dir, sizeof dir, err);
        if (st) return st;
        cache_dir = dir;
    }
    char key[256];
    snprintf(key, sizeof key, "%s threads=%d", cpu_describe(), threads);
    snprintf(buf, n, "%s/speed-%016" PRIx64 ".txt", cache_dir, hash_bytes(HASH_SEED, key, strlen(key)));
    return ST_OK;
}

void speedtab_done(SpeedTab *t) {
    free(t->rows);
    memset(t, 0, sizeof *t);
}

Status speedtab_add(SpeedTab *t, const SpeedRow *r, Err *err) {
    if (t->n == t->cap) {
        int64_t nc = t->cap ? 2 * t->cap : 64;
        SpeedRow *nr = realloc(t->rows, (size_t)nc * sizeof *nr);
        if (!nr) return err_set(err, ST_ERR_NOMEM, "speed table (%lld rows)", (long long)nc);
        t->rows = nr;
        t->cap = nc;
    }
    t->rows[t->n++] = *r;
    return ST_OK;
}

Status speedtab_load(const char *path, int threads, SpeedTab *t, Err *err) {
    memset(t, 0, sizeof *t);
    snprintf(t->machine, sizeof t->machine, "%s", cpu_describe());
    t->threads = threads;
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? ST_OK : err_set(err, ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char line[512], want[256];
    snprintf(want, sizeof want, "# qscope speed 1 machine=%s threads=%d\n", t->machine, threads);
    int ln = 0, ours = 0;
    Status st = ST_OK;
    while (fgets(line, sizeof line, f)) {
        ln++;
        if (line[0] == '#') {
            if (ln == 1) ours = !strcmp(line, want);
            continue;
        }
        if (!ours) break; /* another machine's or thread count's table: start empty */
        SpeedRow r;
        memset(&r, 0, sizeof r);
        long long no, ni;
        if (sscanf(line, "%lld %lld %39s %lf %lf", &no, &ni, r.code, &r.decode_s, &r.prefill_s) != 5 || no <= 0 ||
            ni <= 0 || !(r.decode_s > 0) || !(r.prefill_s > 0)) {
            st = err_set(err, ST_ERR_FORMAT, "%s:%d: expected 'N_OUT N_IN CODE DECODE_S PREFILL_S'", path, ln);
            break;
        }
        r.n_out = no;
        r.n_in = ni;
        if ((st = speedtab_add(t, &r, err))) break;
    }
    fclose(f);
    if (st) speedtab_done(t);
    return st;
}

Status speedtab_save(const SpeedTab *t, const char *path, Err *err) {
    AtomicFile af;
    Status st = afile_open(&af, path, err);
    if (st) return st;
    st = afile_printf(&af, err, "# qscope speed 1 machine=%s threads=%d\n", t->machine, t->threads);
    if (!st) st = afile_printf(&af, err, "# n_out n_in entry decode_s(one token) prefill_s(per token, batch %d)\n", SPEED_PREFILL_T);
    for (int64_t i = 0; !st && i < t->n; i++)
        st = afile_printf(&af, err, "%lld %lld %s %.6e %.6e\n", (long long)t->rows[i].n_out, (long long)t->rows[i].n_in,
                 t->rows[i].code, t->rows[i].decode_s, t->rows[i].prefill_s);
    if (st) {
        afile_abort(&af);
        return st;
    }
    return afile_commit(&af, err);
}

int speedtab_lookup(const SpeedTab *t, const PlanEntry *e, int64_t n_out, int64_t n_in, double *decode_s,
                    double *prefill_s) {
    char code[40];
    speed_code(e, code, sizeof code);
    for (int64_t i = 0; i < t->n; i++)
        if (t->rows[i].n_out == n_out && t->rows[i].n_in == n_in && !strcmp(t->rows[i].code, code)) {
            if (decode_s) *decode_s = t->rows[i].decode_s;
            if (prefill_s) *prefill_s = t->rows[i].prefill_s;
            return 1;
        }
    return 0;
}

/* The least wall time of one call of l on T rows of x into *best_s, over
 * repetitions until min_total seconds (at least 3, at most 1000). */
static Status time_forward(const QLinear *l, const float *x, int64_t T, float *y, Pool *pool, double min_total,
                           double *best_s, Err *err) {
    double best = INFINITY, total = 0;
    Status st = qlinear_forward(l, x, T, y, pool, err); /* warm the caches and the pool */
    for (int i = 0; !st && i < 1000 && (i < 3 || total < min_total); i++) {
        double t0 = clock_now();
        st = qlinear_forward(l, x, T, y, pool, err);
        double dt = clock_now() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    *best_s = best;
    return st;
}

Status speedtab_get(SpeedTab *t, const PlanEntry *e, int64_t n_out, int64_t n_in, Pool *pool, double *decode_s,
                    double *prefill_s, Err *err) {
    if (speedtab_lookup(t, e, n_out, n_in, decode_s, prefill_s)) return ST_OK;
    if (e->w.fmt == QF_AQLM || e->method == QM_AQLM)
        return err_set(err, ST_ERR_UNSUPPORTED, "speed table: aqlm entries are not timed");
    SpeedRow r;
    memset(&r, 0, sizeof r);
    r.n_out = n_out;
    r.n_in = n_in;
    speed_code(e, r.code, sizeof r.code);
    int64_t n = n_out * n_in;
    float *W = malloc((size_t)n * sizeof *W);
    float *x = malloc((size_t)(SPEED_PREFILL_T * n_in) * sizeof *x);
    float *y = malloc((size_t)(SPEED_PREFILL_T * n_out) * sizeof *y);
    QTensor q;
    memset(&q, 0, sizeof q);
    QLinear *l = NULL;
    Status st = ST_OK;
    if (!W || !x || !y) {
        st = err_set(err, ST_ERR_NOMEM, "speed table: %lld x %lld", (long long)n_out, (long long)n_in);
        goto done;
    }
    /* seeded uniform values of the usual scale: the kernels' speed does not depend on them */
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    float sc = 1.0f / sqrtf((float)n_in);
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        W[i] = sc * ((float)(s >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
    }
    for (int64_t i = 0; i < SPEED_PREFILL_T * n_in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(s >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
    }
    PlanEntry k = *e;
    k.method = QM_RTN;
    if ((st = rtn_quantize(W, n_out, n_in, &k.w, &q, err))) goto done;
    ActQuant aq = qlinear_act_from_plan(&k, 1.0f);
    if ((st = qlinear_new_from_qtensor(&q, &aq, &l, err))) goto done;
    if ((st = time_forward(l, x, 1, y, pool, t->min_time_s > 0 ? t->min_time_s : 0.02, &r.decode_s, err))) goto done;
    if ((st = time_forward(l, x, SPEED_PREFILL_T, y, pool, t->min_time_s > 0 ? t->min_time_s : 0.05, &r.prefill_s,
                           err)))
        goto done;
    r.prefill_s /= SPEED_PREFILL_T;
    if (!(r.decode_s > 0)) r.decode_s = 1e-9; /* below the clock's resolution */
    if (!(r.prefill_s > 0)) r.prefill_s = 1e-9;
    if ((st = speedtab_add(t, &r, err))) goto done;
    t->n_measured++;
    if (decode_s) *decode_s = r.decode_s;
    if (prefill_s) *prefill_s = r.prefill_s;
done:
    qlinear_free(l);
    qtensor_done(&q);
    free(W);
    free(x);
    free(y);
    if (st) err_wrap(err, "speed of %s on %lld x %lld", r.code, (long long)n_out, (long long)n_in);
    return st;
}

Status speedtab_plan(SpeedTab *t, const Plan *p, const PlanModel *m, Pool *pool, double *decode_tps,
                     double *prefill_tps, Err *err) {
    PlanResolved r;
    Status st = plan_resolve(p, m, &r, err);
    if (st) return st;
    double dec = 0, pre = 0;
    for (int64_t s = -1; s < r.n_layers * PLAN_NPROJ; s++) {
        const PlanSiteEntry *se = s < 0 ? &r.output : &r.lin[s];
        int64_t no = se->n_out, ni = se->n_in;
        if (s < 0) { /* the head: (vocab, dim) */
            no = m->vocab_size;
            ni = m->dim;
        }
        double d, f;
        if (pool) st = speedtab_get(t, &se->e, no, ni, pool, &d, &f, err);
        else if (!speedtab_lookup(t, &se->e, no, ni, &d, &f))
            st = err_set(err, ST_ERR_STATE, "speed table: no row for this entry on %lld x %lld", (long long)no,
                         (long long)ni);
        if (st) break;
        dec += d;
        pre += f;
    }
    plan_resolved_done(&r);
    if (st) return st;
    *decode_tps = dec > 0 ? 1.0 / dec : INFINITY;
    *prefill_tps = pre > 0 ? 1.0 / pre : INFINITY;
    return ST_OK;
}
