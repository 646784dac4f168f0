/* maxpool2d: forward values and argmax indices against a host reference, the gradient
 * against central finite differences of L = sum(dy_fixed * y) in double precision
 * (inputs are distinct and far apart, so no step changes an argmax), overlapping
 * windows (k 3, s 2), odd planes, views at offsets, NaN-prefilled outputs,
 * accumulation, bit-identical reruns, NaN propagation and shape errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/op_kernels.h"
#include "p7_test_support.h"

typedef struct pool_case { int n, c, h, w, k, s; size_t offset; } pool_case;

/* Host forward in double; idx may be NULL. */
static void pool_ref(const pool_case *pc, const double *x, double *y, int *idx)
{
    int oh_n = (pc->h - pc->k) / pc->s + 1, ow_n = (pc->w - pc->k) / pc->s + 1;
    for (int nc = 0; nc < pc->n * pc->c; nc++)
        for (int oh = 0; oh < oh_n; oh++)
            for (int ow = 0; ow < ow_n; ow++) {
                double best = -INFINITY;
                int bi = 0;
                for (int ky = 0; ky < pc->k; ky++)
                    for (int kx = 0; kx < pc->k; kx++) {
                        int ih = oh * pc->s + ky, iw = ow * pc->s + kx;
                        double v = x[((size_t)nc * pc->h + ih) * pc->w + iw];
                        if (v > best) best = v, bi = ih * pc->w + iw;
                    }
                size_t o = ((size_t)nc * oh_n + oh) * ow_n + ow;
                y[o] = best;
                if (idx) idx[o] = bi;
            }
}

static void run_case(p7_device *device, const pool_case *pc)
{
    int oh = (pc->h - pc->k) / pc->s + 1, ow = (pc->w - pc->k) / pc->s + 1;
    int64_t xs[4] = {pc->n, pc->c, pc->h, pc->w}, ys[4] = {pc->n, pc->c, oh, ow};
    size_t nx = (size_t)(pc->n * pc->c * pc->h * pc->w), ny = (size_t)(pc->n * pc->c * oh * ow);

    /* distinct values 0.05 apart, in a shuffled order */
    float *x = malloc(nx * sizeof *x), *dyf = malloc(ny * sizeof *dyf), *r = malloc(nx * sizeof *r);
    p7_test_fill_uniform(r, nx, 41, 0.0f, 1.0f);
    for (size_t i = 0; i < nx; i++) x[i] = 0.05f * (float)i - 10.0f;
    for (size_t i = nx; i > 1; i--) {
        size_t j = (size_t)(r[i - 1] * (float)i) % i;
        float t = x[i - 1];
        x[i - 1] = x[j], x[j] = t;
    }
    p7_test_fill_uniform(dyf, ny, 42, -1.0f, 1.0f);

    p7_tensor *tx = p7_test_view(device, 4, xs, pc->offset, x), *ty = p7_test_view(device, 4, ys, pc->offset, NULL);
    p7_tensor *tdy = p7_test_view(device, 4, ys, pc->offset, dyf), *tdx = p7_test_view(device, 4, xs, pc->offset, NULL);
    p7_buffer *idx;
    P7_ASSERT_OK(p7_buffer_alloc(device, ny * sizeof(int), &idx));

    P7_ASSERT_OK(p7_maxpool2d_forward(tx, pc->k, pc->s, ty, idx));
    double *xd = malloc(nx * sizeof *xd), *yref = malloc(ny * sizeof *yref);
    int *iref = malloc(ny * sizeof *iref), *igot = malloc(ny * sizeof *igot);
    for (size_t i = 0; i < nx; i++) xd[i] = x[i];
    pool_ref(pc, xd, yref, iref);
    float *y = p7_test_download(ty);
    /* The indices are internal plumbing; read them through the device's queue. */
    assert_int_equal(clEnqueueReadBuffer(device->queue, p7_buffer_mem(idx), CL_TRUE, 0, ny * sizeof(int), igot, 0,
                                         NULL, NULL), CL_SUCCESS);
    for (size_t i = 0; i < ny; i++) {
        assert_true(y[i] == (float)yref[i]);
        assert_int_equal(igot[i], iref[i]);
    }

    /* finite differences of L = sum(dyf * pool(x)) */
    double *grad = malloc(nx * sizeof *grad), *yt = malloc(ny * sizeof *yt);
    const double h = 1e-3;
    for (size_t i = 0; i < nx; i++) {
        double keep = xd[i], lp = 0.0, lm = 0.0;
        xd[i] = keep + h;
        pool_ref(pc, xd, yt, NULL);
        for (size_t j = 0; j < ny; j++) lp += dyf[j] * yt[j];
        xd[i] = keep - h;
        pool_ref(pc, xd, yt, NULL);
        for (size_t j = 0; j < ny; j++) lm += dyf[j] * yt[j];
        xd[i] = keep;
        grad[i] = (lp - lm) / (2.0 * h);
    }
    P7_ASSERT_OK(p7_maxpool2d_backward(tdy, idx, pc->k, pc->s, tdx, 0));
    float *dx = p7_test_download(tdx);
    for (size_t i = 0; i < nx; i++) {
        if (!(fabs(dx[i] - grad[i]) <= 1e-5 * (1.0 + fabs(grad[i])))) {
            print_error("dx[%zu]: got %.9g, want %.9g\n", i, dx[i], grad[i]);
            fail();
        }
    }
    /* bit-identical rerun */
    P7_ASSERT_OK(p7_maxpool2d_backward(tdy, idx, pc->k, pc->s, tdx, 0));
    float *dx2 = p7_test_download(tdx);
    assert_memory_equal(dx, dx2, nx * sizeof *dx);
    /* accumulate */
    float *pre = malloc(nx * sizeof *pre);
    p7_test_fill_uniform(pre, nx, 43, -2.0f, 2.0f);
    P7_ASSERT_OK(p7_tensor_upload(tdx, pre, nx));
    P7_ASSERT_OK(p7_maxpool2d_backward(tdy, idx, pc->k, pc->s, tdx, 1));
    float *acc = p7_test_download(tdx);
    for (size_t i = 0; i < nx; i++) assert_float_equal(acc[i], pre[i] + dx[i], 1e-6);
    /* a NULL dx is a no-op */
    P7_ASSERT_OK(p7_maxpool2d_backward(tdy, idx, pc->k, pc->s, NULL, 0));

    free(x); free(dyf); free(r); free(xd); free(yref); free(iref); free(igot); free(y);
    free(grad); free(yt); free(dx); free(dx2); free(pre); free(acc);
    p7_buffer_free(idx);
    p7_tensor_release(tx); p7_tensor_release(ty); p7_tensor_release(tdy); p7_tensor_release(tdx);
}

static void test_cases(void **state)
{
    p7_device *device = *state;
    static const pool_case cases[] = {
        {2, 3, 6, 8, 2, 2, 3},  /* VGG's 2x2 s2 */
        {2, 3, 4, 32, 2, 2, 5}, /* even planes 16k wide: the per-row 16-column kernels */
        {1, 2, 6, 16, 2, 2, 0},
        {2, 3, 7, 5, 2, 2, 0},  /* odd planes: the last row/column is dropped */
        {2, 2, 7, 7, 3, 2, 1},  /* overlapping windows: pixels chosen twice */
        {1, 2, 5, 6, 3, 1, 2},
        {1, 1, 4, 4, 4, 4, 0},  /* global */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(device, &cases[i]);
}

static void test_nan_propagates(void **state)
{
    p7_device *device = *state;
    int64_t xs[4] = {1, 1, 2, 2}, ys[4] = {1, 1, 1, 1};
    float x[4] = {1.0f, NAN, 3.0f, 2.0f}, y;
    p7_tensor *tx = p7_test_view(device, 4, xs, 0, x), *ty = p7_test_view(device, 4, ys, 0, NULL);
    p7_buffer *idx;
    P7_ASSERT_OK(p7_buffer_alloc(device, sizeof(int), &idx));
    P7_ASSERT_OK(p7_maxpool2d_forward(tx, 2, 2, ty, idx));
    P7_ASSERT_OK(p7_tensor_download(ty, &y, 1));
    assert_true(isnan(y));
    p7_buffer_free(idx);
    p7_tensor_release(tx);
    p7_tensor_release(ty);
}

/* The per-row kernels (planes 16k wide) keep the per-element rules: on ties the first
 * element of the window in row-major order wins, a NaN anywhere in a window wins, and the
 * gradient goes only to the chosen pixel. */
static void test_rows_ties_and_nan(void **state)
{
    p7_device *device = *state;
    enum { H = 2, W = 16, OW = 8 };
    int64_t xs[4] = {1, 1, H, W}, ys[4] = {1, 1, 1, OW};
    float x[H * W];
    for (int i = 0; i < H * W; i++) x[i] = 1.0f; /* ties everywhere */
    x[W + 5] = NAN;                              /* window 2, bottom right */
    x[1] = NAN;                                  /* window 0, top right */
    x[6] = 3.0f, x[W + 6] = 3.0f;                /* window 3: a tie between top and bottom left */
    x[W + 9] = 2.0f;                             /* window 4: bottom right alone */
    p7_tensor *tx = p7_test_view(device, 4, xs, 0, x), *ty = p7_test_view(device, 4, ys, 0, NULL);
    p7_tensor *tdy = p7_test_view(device, 4, ys, 0, NULL), *tdx = p7_test_view(device, 4, xs, 0, NULL);
    p7_buffer *idx;
    P7_ASSERT_OK(p7_buffer_alloc(device, OW * sizeof(int), &idx));
    P7_ASSERT_OK(p7_maxpool2d_forward(tx, 2, 2, ty, idx));
    float y[OW];
    int got[OW];
    P7_ASSERT_OK(p7_tensor_download(ty, y, OW));
    assert_int_equal(clEnqueueReadBuffer(device->queue, p7_buffer_mem(idx), CL_TRUE, 0, sizeof got, got, 0, NULL,
                                         NULL), CL_SUCCESS);
    const int want_idx[OW] = {1, 2, W + 5, 6, W + 9, 10, 12, 14};
    for (int o = 0; o < OW; o++) {
        assert_int_equal(got[o], want_idx[o]);
        if (o == 0 || o == 2) assert_true(isnan(y[o]));
        else assert_true(y[o] == (o == 3 ? 3.0f : o == 4 ? 2.0f : 1.0f));
    }
    float dy[OW], dx[H * W];
    for (int o = 0; o < OW; o++) dy[o] = (float)(o + 1);
    P7_ASSERT_OK(p7_tensor_upload(tdy, dy, OW));
    P7_ASSERT_OK(p7_maxpool2d_backward(tdy, idx, 2, 2, tdx, 0));
    P7_ASSERT_OK(p7_tensor_download(tdx, dx, H * W));
    for (int i = 0; i < H * W; i++) {
        float want = 0.0f;
        for (int o = 0; o < OW; o++)
            if (want_idx[o] == i) want = dy[o];
        assert_true(dx[i] == want);
    }
    p7_buffer_free(idx);
    p7_tensor_release(tx); p7_tensor_release(ty); p7_tensor_release(tdy); p7_tensor_release(tdx);
}

static void test_shape_errors(void **state)
{
    p7_device *device = *state;
    int64_t xs[4] = {2, 3, 8, 8}, ys[4] = {2, 3, 4, 4}, ybad[4] = {2, 3, 4, 3};
    p7_tensor *x = p7_test_view(device, 4, xs, 0, NULL), *y = p7_test_view(device, 4, ys, 0, NULL), *yb = p7_test_view(device, 4, ybad, 0, NULL);
    p7_buffer *idx, *small;
    P7_ASSERT_OK(p7_buffer_alloc(device, 96 * sizeof(int), &idx));
    P7_ASSERT_OK(p7_buffer_alloc(device, 16, &small));
    assert_int_equal(p7_maxpool2d_forward(x, 2, 2, yb, idx), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "maxpool2d"));
    assert_int_equal(p7_maxpool2d_forward(x, 2, 2, y, small), P7_ERROR_INVALID_SHAPE);
    assert_int_equal(p7_maxpool2d_backward(yb, idx, 2, 2, x, 0), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "maxpool2d backward"));
    assert_int_equal(p7_maxpool2d_forward(x, 0, 2, y, idx), P7_ERROR_INVALID_ARGUMENT);
    p7_buffer_free(idx);
    p7_buffer_free(small);
    p7_tensor_release(x); p7_tensor_release(y); p7_tensor_release(yb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_nan_propagates),
        cmocka_unit_test(test_rows_ties_and_nan),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, p7_test_setup_device, p7_test_teardown_device);
}
