/* sum/mean and global-norm gradient clipping against float64 host references. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/op_kernels.h"
#include "ops/op_reduce_config.h"
#include "p7_test_support.h"

/* A sum of up to 10^5 floats in [-1, 1): the device accumulates in double (or float
 * trees of short runs), so 1e-5 of the sum of |x| bounds its error with margin. */
#define SUM_TOL 1e-5
#define FD_TOL 1e-3
#define FD_STEP 1e-3

static void check_sum(p7_device *d, size_t n, float scale, uint64_t seed)
{
    /* x is a view at element 5 of a larger tensor */
    float *big = malloc((n + 9) * sizeof *big);
    p7_test_fill_uniform(big, n + 9, seed, -1.0f, 1.0f);
    const int64_t bs[1] = {(int64_t)n + 9}, xs[1] = {(int64_t)n}, one[1] = {1};
    p7_tensor *pool = p7_test_tensor(d, 1, bs, big), *tx, *ty = p7_test_tensor(d, 1, one, NULL);
    P7_ASSERT_OK(p7_tensor_view(pool, 5, 1, xs, &tx));
    P7_ASSERT_OK(p7_sum_forward(tx, scale, ty));
    double ref = 0.0, mag = 0.0;
    for (size_t i = 0; i < n; i++) {
        ref += big[5 + i];
        mag += fabs(big[5 + i]);
    }
    ref *= scale;
    mag *= fabs(scale);
    float got;
    P7_ASSERT_OK(p7_tensor_download(ty, &got, 1));
    if (!(fabs(got - ref) <= SUM_TOL * mag + 1e-30)) {
        print_error("sum of %zu (scale %g): got %.9g, expected %.9g\n", n, (double)scale, (double)got, ref);
        fail();
    }
    p7_tensor_release(tx);
    p7_tensor_release(ty);
    p7_tensor_release(pool);
    free(big);
}

static void test_sum_forward(void **state)
{
    const size_t sizes[] = {1, 7, 1000, 1025, 100003};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        check_sum(*state, sizes[i], 1.0f, 300 + i);
        check_sum(*state, sizes[i], 1.0f / (float)sizes[i], 310 + i); /* mean */
    }
    const p7_device_options float_path = {.reduce_in_float = 1};
    p7_device *device = p7_test_open_device(&float_path);
    p7_reduce_config cfg;
    P7_ASSERT_OK(p7_reduce_config_get(device, &cfg));
    assert_int_equal(cfg.fp64, 0); /* the option takes the float path even on fp64 devices */
    assert_int_equal(cfg.acc_bytes, 4);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) check_sum(device, sizes[i], 1.0f, 320 + i);
    p7_device_close(device);
}

/* L = w * y with y = scale * sum(x): the gradient is w * scale everywhere. Checked
 * against float64 central differences of that objective like every other backward. */
static void test_sum_backward(void **state)
{
    p7_device *d = *state;
    const size_t n = 37;
    const float scale = 1.0f / 37.0f, w = -1.75f;
    float x[37], pre[37];
    p7_test_fill_uniform(x, n, 330, -2.0f, 2.0f);
    p7_test_fill_uniform(pre, n, 331, -2.0f, 2.0f);
    const int64_t xs[2] = {37, 1}, one[1] = {1};
    p7_tensor *tdy = p7_test_tensor(d, 1, one, &w), *tdx = p7_test_tensor(d, 2, xs, NULL);
    P7_ASSERT_OK(p7_sum_backward(tdy, scale, tdx, 0));
    float *g = p7_test_download(tdx);
    for (size_t i = 0; i < n; i++) {
        double xd[37], lp = 0.0, lm = 0.0;
        for (size_t j = 0; j < n; j++) xd[j] = x[j];
        xd[i] += FD_STEP;
        for (size_t j = 0; j < n; j++) lp += w * (double)scale * xd[j];
        xd[i] -= 2 * FD_STEP;
        for (size_t j = 0; j < n; j++) lm += w * (double)scale * xd[j];
        const double fd = (lp - lm) / (2 * FD_STEP);
        assert_true(fabs(g[i] - fd) <= FD_TOL * fabs(fd));
    }
    P7_ASSERT_OK(p7_tensor_upload(tdx, pre, n));
    P7_ASSERT_OK(p7_sum_backward(tdy, scale, tdx, 1));
    float *a = p7_test_download(tdx);
    for (size_t i = 0; i < n; i++) assert_true(a[i] == pre[i] + g[i]);
    P7_ASSERT_OK(p7_sum_backward(tdy, scale, NULL, 0));
    free(g);
    free(a);
    p7_tensor_release(tdy);
    p7_tensor_release(tdx);
}

/* Gradients of different sizes, one of them a view; NULL entries are skipped. */
static void check_clip(p7_device *d, float max_norm, int expect_clip)
{
    const size_t sizes[4] = {5, 1000, 70001, 3};
    float *host[4];
    p7_tensor *grads[5] = {NULL};
    p7_tensor *pool = NULL;
    double sq = 0.0;
    for (int t = 0; t < 4; t++) {
        host[t] = malloc(sizes[t] * sizeof(float));
        p7_test_fill_uniform(host[t], sizes[t], 340 + t, -0.5f, 0.5f);
        for (size_t i = 0; i < sizes[t]; i++) sq += (double)host[t][i] * host[t][i];
        const int64_t s[1] = {(int64_t)sizes[t]};
        if (t == 3) {
            /* a view at offset 4 of a 10-element buffer: the rest must stay untouched */
            float raw[10];
            for (int i = 0; i < 10; i++) raw[i] = 100.0f + (float)i;
            memcpy(raw + 4, host[t], 3 * sizeof(float));
            const int64_t ps[1] = {10};
            pool = p7_test_tensor(d, 1, ps, raw);
            P7_ASSERT_OK(p7_tensor_view(pool, 4, 1, s, &grads[4]));
        } else {
            grads[t] = p7_test_tensor(d, 1, s, host[t]);
        }
    }
    grads[3] = NULL; /* a parameter that received no gradient */
    const double norm = sqrt(sq);
    const int64_t one[1] = {1};
    p7_tensor *tn = p7_test_tensor(d, 1, one, NULL);
    P7_ASSERT_OK(p7_clip_grad_norm(grads, 5, max_norm, tn));
    float got_norm;
    P7_ASSERT_OK(p7_tensor_download(tn, &got_norm, 1));
    assert_true(fabs(got_norm - norm) <= 1e-6 * norm);
    const double coef = max_norm / (norm + 1e-6);
    assert_int_equal(coef < 1.0, expect_clip);
    for (int t = 0; t < 4; t++) {
        p7_tensor *g = grads[t == 3 ? 4 : t];
        float *got = p7_test_download(g);
        for (size_t i = 0; i < sizes[t]; i++) {
            if (expect_clip) {
                const double want = host[t][i] * coef;
                assert_true(fabs(got[i] - want) <= 1e-6 * fmax(fabs(want), 1e-6));
            } else {
                assert_true(got[i] == host[t][i]); /* untouched, bit for bit */
            }
        }
        free(got);
    }
    float raw_after[10];
    P7_ASSERT_OK(p7_tensor_download(pool, raw_after, 10));
    for (int i = 0; i < 10; i++)
        if (i < 4 || i >= 7) assert_true(raw_after[i] == 100.0f + (float)i);
    for (int t = 0; t < 4; t++) free(host[t]);
    for (int t = 0; t < 5; t++) p7_tensor_release(grads[t]);
    p7_tensor_release(pool);
    p7_tensor_release(tn);
}

static void test_clip_grad_norm(void **state)
{
    /* the norm is about sqrt(71009 / 12) ~ 77 */
    check_clip(*state, 1.0f, 1);
    check_clip(*state, 1000.0f, 0);
    const p7_device_options float_path = {.reduce_in_float = 1};
    p7_device *device = p7_test_open_device(&float_path);
    check_clip(device, 5.0f, 1);
    p7_device_close(device);
}

static void test_clip_empty(void **state)
{
    p7_device *d = *state;
    const int64_t one[1] = {1};
    p7_tensor *tn = p7_test_tensor(d, 1, one, NULL);
    P7_ASSERT_OK(p7_clip_grad_norm(NULL, 0, 1.0f, tn));
    float v;
    P7_ASSERT_OK(p7_tensor_download(tn, &v, 1));
    assert_true(v == 0.0f);
    assert_int_equal(p7_clip_grad_norm(NULL, 0, 0.0f, tn), P7_ERROR_INVALID_ARGUMENT);
    const int64_t two[1] = {2};
    p7_tensor *t2 = p7_test_tensor(d, 1, two, NULL);
    assert_int_equal(p7_clip_grad_norm(&t2, 1, 1.0f, t2), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "clip_grad_norm"));
    assert_non_null(strstr(p7_last_error(), "[2]"));
    assert_int_equal(p7_sum_forward(t2, 1.0f, t2), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "sum"));
    p7_tensor_release(tn);
    p7_tensor_release(t2);
}

static void test_deterministic(void **state)
{
    p7_device *d = *state;
    const size_t n = 200003;
    float *x = malloc(n * sizeof *x);
    p7_test_fill_uniform(x, n, 350, -1.0f, 1.0f);
    const int64_t xs[1] = {(int64_t)n}, one[1] = {1};
    float out[2][3];
    for (int r = 0; r < 2; r++) {
        p7_tensor *tx = p7_test_tensor(d, 1, xs, x), *ty = p7_test_tensor(d, 1, one, NULL), *tn = p7_test_tensor(d, 1, one, NULL);
        P7_ASSERT_OK(p7_sum_forward(tx, 1.0f, ty));
        P7_ASSERT_OK(p7_clip_grad_norm(&tx, 1, 0.5f, tn));
        P7_ASSERT_OK(p7_tensor_download(ty, &out[r][0], 1));
        P7_ASSERT_OK(p7_tensor_download(tn, &out[r][1], 1));
        float last;
        const int64_t lastshape[1] = {1};
        p7_tensor *tl;
        P7_ASSERT_OK(p7_tensor_view(tx, n - 1, 1, lastshape, &tl));
        P7_ASSERT_OK(p7_tensor_download(tl, &last, 1));
        out[r][2] = last;
        p7_tensor_release(tl);
        p7_tensor_release(tx);
        p7_tensor_release(ty);
        p7_tensor_release(tn);
    }
    assert_memory_equal(out[0], out[1], sizeof out[0]);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_forward),
        cmocka_unit_test(test_sum_backward),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_clip_empty),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, p7_test_setup_device, p7_test_teardown_device);
}
