/* The H = XᵀX store (analysis/hstore.h): float32 block products summed in
 * float64 (or float32 in the file mapping) against a float64 reference within
 * the stated bound, thread-count independence, the OpenBLAS fallback, header
 * validation, per-matrix checksums catching a corrupted range, a full disk
 * reported as ENOSPC rather than killing the process with SIGBUS, and the
 * layered store of the layer-streamed calibration. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "analysis/hstore.h"
#include "core/pool.h"
#include "kernels/cpu.h"
#include "kernels/sgemm.h"
#include "testlib.h"

enum { L = 2, T = 37, NB = 5, WMAX = 390 };
/* 390 > two 192-row blocks: a full block, a full one and a partial one. */
static const int64_t width[HSTORE_TAPS] = {24, 24, 200, WMAX};
static float *X[NB];

static void make_batches(void) {
    for (int b = 0; b < NB; b++) {
        X[b] = malloc(sizeof(float) * T * WMAX);
        for (int i = 0; i < T * WMAX; i++) X[b][i] = testlib_gauss() * (i % 7 == 5 ? 30.0f : 1.0f);
    }
}

static char tmpdir[] = "/tmp/qs_test_hstoreXXXXXX";

static const char *tpath(const char *name) {
    return testlib_path(tmpdir, name);
}

static int files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Builds a store at path from the NB batches (each (layer, tap) sees the
 * first width[tap] columns of the same rows, read with stride width[tap]). */
static void build(const char *path, Pool *pool, uint64_t id) {
    Err err;
    err_init(&err);
    HStore hs;
    unlink(path);
    CHECK_OK(hstore_create(&hs, path, L, width, T, pool, &err), err);
    CHECK(hs.bytes == hstore_bytes(L, width));
    for (int b = 0; b < NB; b++)
        for (int l = 0; l < L; l++)
            for (int t = 0; t < HSTORE_TAPS; t++) hstore_add(&hs, l, t, X[b], T);
    CHECK(hs.n_rows == NB * T);
    CHECK_OK(hstore_finish(&hs, id, &err), err);
    hstore_close(&hs);
}

/* Every element within the stated bound of the float64 sum: γ_T for the
 * float32 dot of one batch, NB more roundings when batches are summed in
 * float32, one for the float32 storage, all relative to Σ|x_i x_j|. */
static void check_against_f64(const char *path, int f32_sums) {
    Err err;
    err_init(&err);
    HStore hs;
    CHECK_OK(hstore_open(&hs, path, 42, L, width, &err), err);
    CHECK(hs.n_rows == NB * T);
    double *H = malloc(sizeof(double) * WMAX * WMAX);
    float *Hf = malloc(sizeof(float) * WMAX * WMAX);
    const double u = 0x1p-24, bound = (T + 2 + (f32_sums ? NB : 0)) * u;
    double worst = 0;
    for (int l = 0; l < L; l++)
        for (int t = 0; t < HSTORE_TAPS; t++) {
            int64_t w = width[t];
            CHECK_OK(hstore_load_f64(&hs, l, t, H, &err), err);
            CHECK_OK(hstore_load_f32(&hs, l, t, Hf, &err), err);
            for (int64_t i = 0; i < w; i++)
                for (int64_t j = 0; j < w; j++) {
                    double s = 0, sa = 0;
                    for (int b = 0; b < NB; b++)
                        for (int r = 0; r < T; r++) {
                            double p = (double)X[b][r * w + i] * X[b][r * w + j];
                            s += p;
                            sa += fabs(p);
                        }
                    double e = fabs(H[i * w + j] - s) / sa;
                    worst = e > worst ? e : worst;
                    CHECKF(e <= bound, "layer %d tap %d H[%lld][%lld] %.9g vs %.9g: %.3g > %.3g", l, t, (long long)i,
                           (long long)j, H[i * w + j], s, e, bound);
                    CHECK(H[i * w + j] == H[j * w + i] && (float)H[i * w + j] == Hf[i * w + j]);
                }
        }
    printf("  H vs float64 (%s): worst |error| / Σ|x_i x_j| = %.2e (bound %.2e)\n",
           f32_sums ? "float32 sums in the mapping" : "float64 sums", worst, bound);
    free(H);
    free(Hf);
    hstore_close(&hs);
}


static void test_accuracy(Pool *pool) {
    setenv("QS_H_RAM_MB", "64", 1); /* float64 sums in RAM */
    build(tpath("a.h64"), NULL, 42);
    check_against_f64(tpath("a.h64"), 0);
    build(tpath("b.h64"), pool, 42); /* two threads: byte-identical */
    CHECK(files_equal(tpath("a.h64"), tpath("b.h64")));
    setenv("QS_H_RAM_MB", "0", 1); /* float32 sums in the file mapping */
    build(tpath("c.h64"), pool, 42);
    check_against_f64(tpath("c.h64"), 1);
    setenv("QS_CPU", "scalar", 1); /* no AVX-512: OpenBLAS blocks */
    cpu_refresh();
    setenv("QS_H_RAM_MB", "64", 1);
    build(tpath("d.h64"), pool, 42);
    check_against_f64(tpath("d.h64"), 0);
    unsetenv("QS_CPU");
    cpu_refresh();
    unsetenv("QS_H_RAM_MB");
    unlink(tpath("b.h64"));
    unlink(tpath("c.h64"));
    unlink(tpath("d.h64"));
}

static void test_header_and_checksums(void) {
    const char *p = tpath("a.h64");
    Err err;
    err_init(&err);
    HStore hs;
    CHECK(hstore_open(&hs, p, 1, L, width, &err) == ST_ERR_MISMATCH);
    CHECK(strstr(err.detail, p) && strstr(err.detail, "id"));
    CHECK(hstore_open(&hs, p, 42, L + 1, width, &err) == ST_ERR_FORMAT);
    CHECK(strstr(err.detail, "size"));
    /* Zero 600 bytes inside the H of layer 1, tap 3 (the store's own layout:
     * header, then page-aligned packed matrices in (layer, tap) order). */
    size_t off = hstore_header_bytes(L);
    for (int l = 0; l < L; l++)
        for (int t = 0; t < HSTORE_TAPS; t++) {
            if (l == 1 && t == 3) break;
            size_t b = (size_t)width[t] * (size_t)(width[t] + 1) / 2 * sizeof(float);
            off += (b + HSTORE_ALIGN - 1) / HSTORE_ALIGN * HSTORE_ALIGN;
        }
    FILE *f = fopen(p, "r+b");
    CHECK(f && fseek(f, (long)off + 5000, SEEK_SET) == 0);
    for (int i = 0; i < 600; i++) fputc(0, f);
    fclose(f);
    CHECK_OK(hstore_open(&hs, p, 42, L, width, &err), err); /* verified lazily, per matrix */
    float *H = malloc(sizeof(float) * WMAX * WMAX);
    CHECK_OK(hstore_load_f32(&hs, 0, 3, H, &err), err);
    CHECK_OK(hstore_load_f32(&hs, 1, 2, H, &err), err);
    CHECK(hstore_load_f32(&hs, 1, 3, H, &err) == ST_ERR_FORMAT);
    CHECK(strstr(err.detail, "layer 1 tap 3") && strstr(err.detail, "checksum") && strstr(err.detail, p));
    const double *Hd = NULL;
    CHECK(hstore_get_f64(&hs, 1, 3, &Hd, &err) == ST_ERR_FORMAT && Hd == NULL);
    CHECK_OK(hstore_get_f64(&hs, 0, 3, &Hd, &err), err);
    CHECK(Hd != NULL && Hd[0] > 0);
    hstore_close(&hs);
    /* a wrong magic, and a truncated file */
    f = fopen(p, "r+b");
    fputc('X', f);
    fclose(f);
    CHECK(hstore_open(&hs, p, 42, L, width, &err) == ST_ERR_FORMAT && strstr(err.detail, "magic"));
    CHECK(truncate(p, 1000) == 0);
    CHECK(hstore_open(&hs, p, 42, L, width, &err) == ST_ERR_FORMAT && strstr(err.detail, "size"));
    /* hstore_create never writes through a planted symlink */
    unlink(p);
    CHECK(symlink(tpath("target"), p) == 0);
    CHECK(hstore_create(&hs, p, L, width, T, NULL, &err) == ST_ERR_IO && strstr(err.detail, "cannot create"));
    CHECK(access(tpath("target"), F_OK) != 0);
    unlink(p);
    free(H);
}

/* A store larger than a 256 KiB tmpfs: before, the sparse file was written
 * through MAP_SHARED and the process died of SIGBUS; now creation reserves
 * the blocks and fails with ENOSPC by name, leaving no file. */
static void test_disk_full(void) {
    char mnt[300];
    snprintf(mnt, sizeof mnt, "%s/small", tmpdir);
    CHECK(mkdir(mnt, 0700) == 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k") != 0) {
        printf("  note: cannot mount a small tmpfs here (%s): disk-full test skipped\n", strerror(errno));
        rmdir(mnt);
        return;
    }
    char path[400];
    snprintf(path, sizeof path, "%s/full.h64", mnt);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("QS_H_RAM_MB", "0", 1); /* the file-mapping path that used to SIGBUS */
        Err err;
        err_init(&err);
        HStore hs;
        Status st = hstore_create(&hs, path, L, width, T, NULL, &err);
        if (st == ST_OK) {
            for (int l = 0; l < L; l++)
                for (int t = 0; t < HSTORE_TAPS; t++) hstore_add(&hs, l, t, X[0], T);
            st = hstore_finish(&hs, 1, &err);
            hstore_close(&hs);
        }
        _exit(st == ST_ERR_IO && strstr(err.detail, "ENOSPC") && strstr(err.detail, path) ? 0 : 3);
    }
    int ws = 0;
    CHECK(waitpid(pid, &ws, 0) == pid);
    CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child: %s %d", WIFSIGNALED(ws) ? "killed by signal" : "exit",
           WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws));
    CHECK(access(path, F_OK) != 0); /* nothing left behind */
    CHECK(umount(mnt) == 0);
    rmdir(mnt);
}

/* Batches as long as calibration's (T = 1100 rows, more than one K block of
 * the GEMMs) on a width spanning a full and a partial panel: every element of
 * H within (T + 2)·2⁻²⁴·Σ|x_i x_j| of the float64 sum, on this CPU's path and
 * on the OpenBLAS path (run with one OpenBLAS thread: its products round
 * differently with its thread count, within the same bound); the bytes do
 * not depend on the pool's size. */
static void test_long_batches(Pool *pool) {
    enum { LT = 1100, LB = 2, LW = 450 };
    const int64_t lw[HSTORE_TAPS] = {8, 8, 8, LW};
    Err err;
    err_init(&err);
    float *x = malloc(sizeof(float) * LB * LT * LW);
    for (int i = 0; i < LB * LT * LW; i++) x[i] = testlib_gauss() * (i % 11 == 3 ? 40.0f : 1.0f);
    double *ref = calloc((size_t)LW * LW, sizeof(double)), *abs_ref = calloc((size_t)LW * LW, sizeof(double));
    for (int r = 0; r < LB * LT; r++)
        for (int i = 0; i < LW; i++)
            for (int j = i; j < LW; j++) {
                double p = (double)x[r * LW + i] * x[r * LW + j];
                ref[i * LW + j] += p;
                abs_ref[i * LW + j] += fabs(p);
            }
    double *H = malloc(sizeof(double) * LW * LW);
    setenv("QS_H_RAM_MB", "64", 1);
    for (int path = 0; path < 2; path++) {
        if (path == 1) {
            setenv("QS_CPU", "scalar", 1);
            cpu_refresh();
        }
        int blas_threads = sgemm_threads();
        if (path == 1) sgemm_set_threads(1);
        for (int run = 0; run < 2; run++) {
            const char *p = tpath(run ? "long2.h64" : "long1.h64");
            HStore hs;
            CHECK_OK(hstore_create(&hs, p, 1, lw, LT, run ? pool : NULL, &err), err);
            for (int b = 0; b < LB; b++)
                for (int t = 0; t < HSTORE_TAPS; t++) hstore_add(&hs, 0, t, x + (size_t)b * LT * LW, LT);
            CHECK_OK(hstore_finish(&hs, 7, &err), err);
            hstore_close(&hs);
        }
        sgemm_set_threads(blas_threads);
        CHECKF(files_equal(tpath("long1.h64"), tpath("long2.h64")), "%s path: H depends on the pool's size",
               path ? "OpenBLAS" : cpu_describe());
        HStore hs;
        CHECK_OK(hstore_open(&hs, tpath("long1.h64"), 7, 1, lw, &err), err);
        CHECK_OK(hstore_load_f64(&hs, 0, HSTORE_TAPS - 1, H, &err), err);
        hstore_close(&hs);
        const double bound = (LT + 2) * 0x1p-24;
        double worst = 0;
        for (int i = 0; i < LW; i++)
            for (int j = i; j < LW; j++) {
                double e = fabs(H[i * LW + j] - ref[i * LW + j]) / abs_ref[i * LW + j];
                worst = e > worst ? e : worst;
                CHECKF(e <= bound, "H[%d][%d] %.9g vs %.9g: %.3g > %.3g", i, j, H[i * LW + j], ref[i * LW + j], e,
                       bound);
            }
        printf("  %d x %d rows, width %d (%s): worst |error| / Σ|x_i x_j| = %.2e (bound %.2e)\n", LB, LT, LW,
               path ? "OpenBLAS ssyrk/sgemm panels" : cpu_describe(), worst, bound);
        unlink(tpath("long1.h64"));
        unlink(tpath("long2.h64"));
    }
    unsetenv("QS_CPU");
    cpu_refresh();
    unsetenv("QS_H_RAM_MB");
    free(x);
    free(ref);
    free(abs_ref);
    free(H);
}

/* The layered store (layer-streamed calibration): every batch of layer l,
 * then hstore_layer_done(l). With one layer's float64 sums in RAM it writes
 * the same bytes as the all-layers float64 store; under a RAM limit too small
 * for one layer it falls back to float32 sums in the file (within that
 * bound); with no path it keeps sums only and writes nothing. */
static void test_layered(Pool *pool) {
    Err err;
    err_init(&err);
    build(tpath("all.h64"), pool, 42);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) setenv("QS_H_RAM_MB", "0", 1);
        HStore hs;
        const char *p = tpath(pass ? "layered-f32.h64" : "layered.h64");
        CHECK_OK(hstore_create_layered(&hs, p, L, width, T, pool, &err), err);
        CHECK(hs.layered == !pass);
        for (int l = 0; l < L; l++) {
            for (int b = 0; b < NB; b++)
                for (int t = 0; t < HSTORE_TAPS; t++) hstore_add(&hs, l, t, X[b], T);
            CHECK_OK(hstore_layer_done(&hs, l, &err), err);
        }
        CHECK_OK(hstore_finish(&hs, 42, &err), err);
        hstore_close(&hs);
        if (pass == 0) CHECKF(files_equal(tpath("all.h64"), p), "layered H differs from the all-layers float64 H");
        else check_against_f64(p, 1);
        unlink(p);
    }
    unsetenv("QS_H_RAM_MB");
    HStore hs;
    CHECK_OK(hstore_create_layered(&hs, NULL, L, width, T, pool, &err), err);
    CHECK(hs.layered && !hs.has_fd);
    for (int l = 0; l < L; l++) {
        for (int t = 0; t < HSTORE_TAPS; t++) hstore_add(&hs, l, t, X[0], T);
        CHECK_OK(hstore_layer_sum_ranks(&hs, &err), err); /* one process: identity */
        CHECK_OK(hstore_layer_done(&hs, l, &err), err);
    }
    CHECK(hs.n_rows == T);
    hstore_close(&hs);
    setenv("QS_H_RAM_MB", "0", 1);
    CHECK(hstore_create_layered(&hs, NULL, L, width, T, pool, &err) == ST_ERR_NOMEM && strstr(err.detail, "QS_H_RAM_MB"));
    unsetenv("QS_H_RAM_MB");
    unlink(tpath("all.h64"));
    printf("  layered store: same bytes as the float64 store; float32 fallback and sums-only mode\n");
}

int main(void) {
    (void)testlib_shared;
    CHECK(mkdtemp(tmpdir) != NULL);
    make_batches();
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    CHECK(hstore_bytes(L, width) == hstore_header_bytes(L) + 2 * (4096 + 4096 + 81920 + 307200));
    /* 7B (32 layers, 4096/11008): about 11 GB, under the ~22 GB asked for */
    const int64_t w7[HSTORE_TAPS] = {4096, 4096, 4096, 11008};
    CHECK(hstore_bytes(32, w7) < (size_t)11500000000ull);
    test_accuracy(pool);
    test_long_batches(pool);
    test_layered(pool);
    test_header_and_checksums();
    test_disk_full();
    pool_free(pool);
    for (int b = 0; b < NB; b++) free(X[b]);
    rmdir(tmpdir);
    return testlib_done("test_hstore");
}
