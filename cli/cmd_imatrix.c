/* qscope imatrix: llama.cpp's importance matrix from a stats file, and back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/imatrix.h"
#include "analysis/statsfile.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"

static const char IMATRIX_USAGE[] =
    "usage: qscope imatrix STATS|IMATRIX -o OUT.gguf [--dat]\n"
    "       qscope imatrix --show FILE [--stats STATS]\n\n"
    "Writes the importance matrix of a qscope calibration (STATS from `qscope calib`) in\n"
    "the GGUF layout current llama-imatrix writes (or its legacy .dat with --dat), so\n"
    "`llama-quantize --imatrix OUT.gguf` weights its rounding by qscope's calibration:\n"
    "per projection weight, Σx² of each input channel and the token count. An\n"
    "importance matrix given instead of STATS is rewritten (GGUF <-> .dat).\n"
    "--show reads one (GGUF or .dat, from qscope or llama-imatrix) and prints each\n"
    "entry's channels, tokens and mean x²; with --stats it compares the per-channel\n"
    "mean x² with that calibration's (the largest relative difference per entry).\n\n";

static int show(const char *path, const char *stats) {
    Err err;
    err_init(&err);
    Imatrix *im = NULL;
    CalibStats *cs = NULL;
    Imatrix *ref = NULL;
    int rc = 1;
    if (imatrix_read(path, &im, &err)) goto fail;
    if (stats && (statsfile_load(stats, &cs, &err) || imatrix_from_stats(cs, &ref, &err))) goto fail;
    /* A legacy .dat stores no chunk size and, per entry, the number of calls
     * (chunks) with the values scaled to mean x ncall, not a token count. */
    int dat = im->chunk_size <= 0;
    if (dat)
        printf("%s: %lld entries, %lld chunks (legacy .dat: chunk size not stored), dataset '%s'\n", path,
               (long long)im->n_entries, (long long)im->chunk_count, im->dataset);
    else
        printf("%s: %lld entries, %lld chunks of %lld tokens, dataset '%s'\n", path, (long long)im->n_entries,
               (long long)im->chunk_count, (long long)im->chunk_size, im->dataset);
    double worst = 0;
    for (int64_t i = 0; i < im->n_entries; i++) {
        const ImatrixEntry *e = &im->e[i];
        double s = 0;
        for (int64_t j = 0; j < e->n; j++) s += e->sum2[j];
        printf("  %-28s %6lld ch  %10.0f %s  mean x^2 %.6g", e->name, (long long)e->n, e->count, dat ? "calls" : "tok",
               e->count > 0 ? s / e->count / (double)e->n : 0.0);
        const ImatrixEntry *r = ref ? imatrix_find(ref, e->name) : NULL;
        if (ref && (!r || r->n != e->n)) {
            printf("  (not in %s)", stats);
        } else if (r) {
            double md = 0;
            for (int64_t j = 0; j < e->n; j++) {
                double a = e->sum2[j] / e->count, b = r->sum2[j] / r->count;
                double d = fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), 1e-30);
                if (d > md) md = d;
            }
            if (md > worst) worst = md;
            printf("  max rel diff %.3g", md);
        }
        printf("\n");
    }
    if (ref) printf("largest relative difference of mean x^2 from %s: %.3g\n", stats, worst);
    rc = 0;
fail:
    if (rc) args_print_err("imatrix", &err);
    imatrix_free(im);
    imatrix_free(ref);
    calib_stats_free(cs);
    return rc;
}

int cmd_imatrix(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *shw = NULL, *stats = NULL;
    int dat = 0;
    const Opt opts[] = {
        OPT_STR("-o", &out, "OUT.gguf", "the importance matrix to write"),
        OPT_FLAG("--dat", &dat, "write llama-imatrix's legacy .dat instead of GGUF"),
        OPT_STR("--show", &shw, "FILE", "print the entries of an importance matrix (GGUF or .dat)"),
        OPT_STR("--stats", &stats, "STATS", "with --show: compare with this calibration"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "imatrix", .usage = IMATRIX_USAGE, .tables = {opts}, .pos = {&in}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (shw) return show(shw, stats);
    if (!in || !out) {
        fprintf(stderr, "qscope imatrix: need STATS and -o OUT (or --show FILE)\n");
        opts_usage(&spec, stderr);
        return 2;
    }
    Err err;
    err_init(&err);
    CalibStats *cs = NULL;
    Imatrix *im = NULL;
    int rc = 1;
    /* STATS is a qscope stats file ("QSST"); anything else is read as an
     * importance matrix and rewritten (GGUF <-> .dat). */
    char magic[4] = {0};
    FILE *f = fopen(in, "rb");
    int is_stats = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "QSST", 4);
    if (f) fclose(f);
    if ((is_stats ? statsfile_load(in, &cs, &err) || imatrix_from_stats(cs, &im, &err) : imatrix_read(in, &im, &err)) ||
        imatrix_write(im, out, dat, &err)) {
        args_print_err("imatrix", &err);
        goto done;
    }
    fprintf(stderr, "imatrix: %lld entries from %lld sequences of %lld tokens -> %s (%s)\n",
            (long long)im->n_entries, (long long)im->chunk_count, (long long)im->chunk_size, out,
            dat ? "legacy .dat" : "GGUF");
    rc = 0;
done:
    imatrix_free(im);
    calib_stats_free(cs);
    return rc;
}
