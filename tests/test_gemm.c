/* GEMM, both backends, against a float64 host reference: every VGG11 im2col shape of
 * ../shared/reference/perf-baseline.md (beside the checkout) at batch 128 (forward, data gradient with A transposed, weight
 * gradient with B transposed), odd sizes, alpha/beta/offsets/leading dimensions, and
 * argument errors. Outputs are pre-filled with NaN so a skipped element fails. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

typedef struct gemm_shape { const char *name; int ta, tb; size_t m, n, k; } gemm_shape;

static const gemm_shape vgg11_shapes[] = {
    {"L1 fwd", 0, 0, 64, 131072, 27},     {"L2 fwd", 0, 0, 128, 32768, 576},
    {"L3 fwd", 0, 0, 256, 8192, 1152},    {"L4 fwd", 0, 0, 256, 8192, 2304},
    {"L5 fwd", 0, 0, 512, 2048, 2304},    {"L6 fwd", 0, 0, 512, 2048, 4608},
    {"L7/8 fwd", 0, 0, 512, 512, 4608},   {"L2 bwdD", 1, 0, 576, 32768, 128},
    {"L4 bwdD", 1, 0, 2304, 8192, 256},   {"L6 bwdD", 1, 0, 4608, 2048, 512},
    {"L2 bwdW", 0, 1, 128, 576, 32768},   {"L4 bwdW", 0, 1, 256, 2304, 8192},
    {"L6 bwdW", 0, 1, 512, 4608, 2048},
    /* conv1's weight gradient: C 64 x 27 over K = 131,072, the split-K path's case */
    {"L1 bwdW", 0, 1, 64, 27, 131072},
};

typedef struct fixture { p7_device *device; } fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->device = p7_test_open_device(NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    p7_device_close(f->device);
    free(f);
    return 0;
}

static double ref_element(const gemm_shape *s, const float *a, size_t lda, const float *b, size_t ldb, size_t i, size_t j)
{
    double acc = 0.0;
    for (size_t p = 0; p < s->k; p++)
        acc += (double)(s->ta ? a[p * lda + i] : a[i * lda + p]) * (double)(s->tb ? b[j * ldb + p] : b[p * ldb + j]);
    return acc;
}

/* Rows and columns whose products are compared with the reference: every index
 * near the start (all residues of the 8-row and 32-column register tiles), the
 * last ones (partial panels), and a stride through the middle. Every element of C
 * is checked for NaN (skipped writes). */
static int sampled(size_t i, size_t n, size_t stride)
{
    return i < 40 || i + 40 >= n || i % stride == 0;
}

static void check_vgg_shapes(p7_device *device, p7_gemm_backend backend)
{
    for (size_t si = 0; si < sizeof vgg11_shapes / sizeof *vgg11_shapes; si++) {
        const gemm_shape *s = &vgg11_shapes[si];
        size_t na = s->m * s->k, nb = s->k * s->n, nc = s->m * s->n;
        float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(c);
        p7_test_fill_uniform(a, na, 11 + si, -1.0f, 1.0f);
        p7_test_fill_uniform(b, nb, 97 + si, -1.0f, 1.0f);
        p7_tensor *ta = p7_test_upload(device, a, na), *tb = p7_test_upload(device, b, nb), *tc;
        int64_t cs[1] = {(int64_t)nc};
        P7_ASSERT_OK(p7_tensor_create(device, 1, cs, &tc));
        P7_ASSERT_OK(p7_tensor_fill(tc, NAN));
        p7_gemm_desc d = p7_gemm_desc_packed(s->ta, s->tb, s->m, s->n, s->k, 1.0f, 0.0f);
        P7_ASSERT_OK(p7_gemm_with(device, backend, &d, p7_tensor_mem(ta), p7_tensor_mem(tb), p7_tensor_mem(tc)));
        P7_ASSERT_OK(p7_tensor_download(tc, c, nc));

        size_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
        double worst = 0.0;
        size_t checked = 0, nans = 0;
        for (size_t i = 0; i < s->m; i++) {
            for (size_t j = 0; j < s->n; j++) {
                if (isnan(c[i * s->n + j])) nans++;
                if (!sampled(i, s->m, 61) || !sampled(j, s->n, 509)) continue;
                double ref = ref_element(s, a, lda, b, ldb, i, j);
                /* fp32 accumulation error grows like sqrt(K) * |a||b|; scale by that */
                double err = fabs((double)c[i * s->n + j] - ref) / (sqrt((double)s->k) + fabs(ref));
                if (!(err <= worst)) worst = err;
                checked++;
            }
        }
        print_message("  %-8s %-9s m=%-5zu n=%-6zu k=%-6zu checked %zu, NaN %zu, max scaled error %.2e\n",
                      p7_gemm_backend_name(backend), s->name, s->m, s->n, s->k, checked, nans, worst);
        assert_int_equal(nans, 0);
        assert_true(worst < 1e-5);
        p7_tensor_release(ta);
        p7_tensor_release(tb);
        p7_tensor_release(tc);
        free(a);
        free(b);
        free(c);
    }
}

static void test_vgg11_shapes_p7(void **state) { check_vgg_shapes(((fixture *)*state)->device, P7_GEMM_P7); }
static void test_vgg11_shapes_clblast(void **state) { check_vgg_shapes(((fixture *)*state)->device, P7_GEMM_CLBLAST); }

/* Full comparison on odd sizes with every transpose combination, alpha and beta,
 * element offsets and padded leading dimensions. */
static void check_odd_sizes(p7_device *device, p7_gemm_backend backend)
{
    static const size_t sizes[] = {1, 7, 33, 1000};
    static const float alphas[] = {1.0f, -0.5f};
    static const float betas[] = {0.0f, 0.75f};
    int cases = 0;
    for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
    for (size_t mi = 0; mi < 4; mi++)
    for (size_t ni = 0; ni < 4; ni++)
    for (size_t ki = 0; ki < 4; ki++) {
        size_t m = sizes[mi], n = sizes[ni], k = sizes[ki];
        if (m * n * k > 40000000) continue; /* 1000^3 adds nothing the others do not test */
        int variant = (int)(mi + ni + ki) % 2;
        float alpha = alphas[variant], beta = betas[(mi + ki) % 2];
        size_t pad = variant ? 3 : 0, off = variant ? 5 : 0;
        size_t arows = ta ? k : m, acols = ta ? m : k, brows = tb ? n : k, bcols = tb ? k : n;
        size_t lda = acols + pad, ldb = bcols + pad, ldc = n + pad;
        size_t na = off + arows * lda, nb = off + brows * ldb, nc = off + m * ldc;
        float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
        double *ref = malloc(m * n * sizeof *ref);
        p7_test_fill_uniform(a, na, 3 + m, -1.0f, 1.0f);
        p7_test_fill_uniform(b, nb, 5 + n, -1.0f, 1.0f);
        p7_test_fill_uniform(c, nc, 7 + k, -1.0f, 1.0f);
        if (beta == 0.0f) /* C must not be read at all when beta is 0 */
            for (size_t i = 0; i < m; i++) p7_test_fill_nan(c + off + i * ldc, n);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) ref[i * n + j] = c[off + i * ldc + j];
        p7_test_gemm_reference(ta, tb, m, n, k, alpha, a + off, lda, b + off, ldb, beta, ref, n);

        p7_tensor *tA = p7_test_upload(device, a, na), *tB = p7_test_upload(device, b, nb), *tC = p7_test_upload(device, c, nc);
        p7_gemm_desc d = p7_gemm_desc_packed(ta, tb, m, n, k, alpha, beta);
        d.lda = lda; d.ldb = ldb; d.ldc = ldc;
        d.a_offset = d.b_offset = d.c_offset = off;
        P7_ASSERT_OK(p7_gemm_with(device, backend, &d, p7_tensor_mem(tA), p7_tensor_mem(tB), p7_tensor_mem(tC)));
        float *out = malloc(nc * sizeof *out);
        P7_ASSERT_OK(p7_tensor_download(tC, out, nc));
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double err = fabs((double)out[off + i * ldc + j] - ref[i * n + j]);
                if (!(err <= 1e-4 * (sqrt((double)k) + fabs(ref[i * n + j]))))
                    fail_msg("%s: m=%zu n=%zu k=%zu ta=%d tb=%d alpha=%g beta=%g: C[%zu,%zu] = %g, expected %g",
                             p7_gemm_backend_name(backend), m, n, k, ta, tb, alpha, beta, i, j,
                             out[off + i * ldc + j], ref[i * n + j]);
            }
        /* elements outside the m x n window (padding, offset) are left alone */
        for (size_t i = 0; i < off; i++) assert_memory_equal(&out[i], &c[i], sizeof(float));
        for (size_t i = 0; i < m; i++)
            for (size_t j = n; j < ldc; j++) assert_memory_equal(&out[off + i * ldc + j], &c[off + i * ldc + j], sizeof(float));
        p7_tensor_release(tA);
        p7_tensor_release(tB);
        p7_tensor_release(tC);
        free(a); free(b); free(c); free(ref); free(out);
        cases++;
    }
    print_message("  %s: %d odd-size cases match the float64 reference\n", p7_gemm_backend_name(backend), cases);
}

static void test_odd_sizes_p7(void **state) { check_odd_sizes(((fixture *)*state)->device, P7_GEMM_P7); }
static void test_odd_sizes_clblast(void **state) { check_odd_sizes(((fixture *)*state)->device, P7_GEMM_CLBLAST); }

static void test_argument_errors(void **state)
{
    p7_device *device = ((fixture *)*state)->device;
    float host[64] = {0};
    p7_tensor *t = p7_test_upload(device, host, 64);
    cl_mem m = p7_tensor_mem(t);
    p7_gemm_desc d = p7_gemm_desc_packed(0, 0, 4, 4, 4, 1.0f, 0.0f);
    P7_ASSERT_OK(p7_gemm(device, &d, m, m, m));

    d.lda = 3;
    assert_int_equal(p7_gemm(device, &d, m, m, m), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "lda=3"));

    d = p7_gemm_desc_packed(0, 0, 8, 8, 8, 1.0f, 0.0f); /* 64 floats each: fits exactly */
    P7_ASSERT_OK(p7_gemm(device, &d, m, m, m));
    d.c_offset = 1;
    assert_int_equal(p7_gemm(device, &d, m, m, m), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "matrix C"));

    d = p7_gemm_desc_packed(0, 0, 0, 4, 4, 1.0f, 0.0f);
    assert_int_equal(p7_gemm(device, &d, m, m, m), P7_ERROR_INVALID_SHAPE);
    d = p7_gemm_desc_packed(0, 0, 4, 4, 4, 1.0f, 0.0f);
    assert_int_equal(p7_gemm(device, &d, NULL, m, m), P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_gemm(device, NULL, m, m, m), P7_ERROR_INVALID_ARGUMENT);
    p7_tensor_release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argument_errors),
        cmocka_unit_test(test_odd_sizes_p7),
        cmocka_unit_test(test_odd_sizes_clblast),
        cmocka_unit_test(test_vgg11_shapes_p7),
        cmocka_unit_test(test_vgg11_shapes_clblast),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
