/* kernels/actquant.c's activation-quantization error kernels (calibration's
 * statistics): the fp8 rounding against core/fpconv's encoder (every code, the
 * midpoints, saturation), and actq_err_row's AVX-512 and SSE2 paths against
 * the scalar twin within 2e-6 relative (summation order only), plus int8's
 * ties-to-even and saturation. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/fpconv.h"
#include "kernels/actquant.h"
#include "kernels/cpu.h"
#include "testlib.h"

static void test_fp8_round(void) {
    for (int i = 0; i < 200000; i++) {
        float v = (float)((testlib_rnd() - 0.5) * ldexp(1.0, (int)(testlib_rnd() * 40) - 22));
        float a = actq_fp8_round_e4m3(v), b = fp8_e4m3_to_f32(f32_to_fp8_e4m3(v));
        CHECKF(a == b, "e4m3 %.9g: %.9g vs %.9g", v, a, b);
        a = actq_fp8_round_e5m2(v);
        b = fp8_e5m2_to_f32(f32_to_fp8_e5m2(v));
        CHECKF(a == b, "e5m2 %.9g: %.9g vs %.9g", v, a, b);
    }
    /* every code (and the midpoints between neighbours) round-trips */
    for (int c = 0; c < 256; c++) {
        float v = fp8_e4m3_to_f32((uint8_t)c);
        if (!isnan(v)) CHECK(actq_fp8_round_e4m3(v) == v);
        v = fp8_e5m2_to_f32((uint8_t)c);
        if (!isnan(v) && !isinf(v)) CHECK(actq_fp8_round_e5m2(v) == v);
    }
    CHECK(actq_fp8_round_e4m3(1000.0f) == 448.0f && actq_fp8_round_e4m3(-460.0f) == -448.0f);
    CHECK(actq_fp8_round_e5m2(1e6f) == 57344.0f);
}

static void test_act_err_twins(void) {
    for (int trial = 0; trial < 200; trial++) {
        int64_t n = 1 + (int64_t)(testlib_rnd() * 70);
        float x[80];
        for (int64_t i = 0; i < n; i++) x[i] = testlib_gauss() * (float)ldexp(1.0, (int)(testlib_rnd() * 30) - 15);
        float s[ACT_COUNT][ACTQ_ERR_SCALES], inv[ACT_COUNT][ACTQ_ERR_SCALES];
        for (int f = ACT_INT8; f < ACT_COUNT; f++)
            for (int m = 0; m < ACTQ_ERR_SCALES; m++) {
                float amax = (float)ldexp(testlib_rnd() + 0.5, (int)(testlib_rnd() * 30) - 15); /* often saturating */
                if (trial % 17 == 0 && m == 0) amax = 0;
                s[f][m] = amax > 0 ? amax / actq_qmax((ActFormat)f) : 0;
                inv[f][m] = amax > 0 ? actq_qmax((ActFormat)f) / amax : 0;
            }
        double a[ACT_COUNT][ACTQ_ERR_SCALES] = {{0}}, b[ACT_COUNT][ACTQ_ERR_SCALES] = {{0}};
        actq_err_row(x, n, s, inv, a);
        actq_err_row_ref(x, n, s, inv, b);
        for (int f = ACT_INT8; f < ACT_COUNT; f++)
            for (int m = 0; m < ACTQ_ERR_SCALES; m++)
                CHECKF(fabs(a[f][m] - b[f][m]) <= 2e-6 * b[f][m] + 1e-30, "n %lld f %d m %d: %g vs %g",
                       (long long)n, f, m, a[f][m], b[f][m]);
    }
    /* int8 rounding: ties to even, saturation */
    CHECK(actq_quant(ACT_INT8, 2.5f, 1.0f, 1.0f) == 2.0f && actq_quant(ACT_INT8, 3.5f, 1.0f, 1.0f) == 4.0f);
    CHECK(actq_quant(ACT_INT8, -300.0f, 1.0f, 1.0f) == -127.0f && actq_quant(ACT_INT8, 5.0f, 0.0f, 0.0f) == 0.0f);
}

int main(void) {
    (void)testlib_shared; /* no shared files needed here */
    test_fp8_round();
    test_act_err_twins();            /* AVX-512 where the CPU has it */
    setenv("QS_CPU", "scalar", 1);   /* the SSE2 baseline path */
    cpu_refresh();
    test_act_err_twins();
    unsetenv("QS_CPU");
    cpu_refresh();
    return testlib_done("test_actq_err");
}
