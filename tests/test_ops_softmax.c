/* softmax, log_softmax and cross-entropy kernels: gradients against finite differences,
 * accumulation into known contents, NULL gradient outputs, label offsets, bad labels,
 * views, the float path and determinism. The op-level forwards (rows short, long and
 * far from zero) are rows of tests/test_ops.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/op_kernels.h"
#include "p7_test_support.h"

/* exp/log in float are accurate to a few ulps; 1e-5 relative leaves room for the
 * row-sum order and nothing more. */
#define FWD_TOL 1e-5
/* Float kernels against double finite differences (their own error ~1e-9): normwise
 * 1e-3 of the largest gradient entry. */
#define FD_TOL 1e-3
#define FD_STEP 1e-5

/* Labels as the data pipeline hands them over: int32 in a cl_mem, at an offset. */
static p7_buffer *upload_labels(p7_device *d, const int *labels, size_t n)
{
    p7_buffer *b = NULL;
    P7_ASSERT_OK(p7_buffer_alloc(d, n * sizeof(int), &b));
    assert_int_equal(clEnqueueWriteBuffer(d->queue, p7_buffer_mem(b), CL_TRUE, 0, n * sizeof(int), labels, 0, NULL,
                                          NULL),
                     CL_SUCCESS);
    return b;
}

/* ---- float64 host reference ---- */

static void host_softmax(const double *x, int n, int k, int log_out, double *y)
{
    for (int r = 0; r < n; r++) {
        const double *xr = x + (size_t)r * k;
        double m = -INFINITY, s = 0.0;
        for (int j = 0; j < k; j++) m = fmax(m, xr[j]);
        for (int j = 0; j < k; j++) s += exp(xr[j] - m);
        for (int j = 0; j < k; j++) y[(size_t)r * k + j] = log_out ? xr[j] - m - log(s) : exp(xr[j] - m) / s;
    }
}

static double host_cross_entropy(const double *x, int n, int k, const int *labels)
{
    double *lp = malloc((size_t)n * k * sizeof *lp), l = 0.0;
    host_softmax(x, n, k, 1, lp);
    for (int r = 0; r < n; r++) l -= lp[(size_t)r * k + labels[r]];
    free(lp);
    return l / n;
}

static double objective(const double *x, int n, int k, int log_out, const double *dy)
{
    double *y = malloc((size_t)n * k * sizeof *y), l = 0.0;
    host_softmax(x, n, k, log_out, y);
    for (size_t i = 0; i < (size_t)n * k; i++) l += dy[i] * y[i];
    free(y);
    return l;
}

static void check_backward(p7_device *d, int n, int k, int log_out, uint64_t seed)
{
    const size_t nx = (size_t)n * k;
    float *x = malloc(nx * sizeof *x), *dy = malloc(nx * sizeof *dy), *pre = malloc(nx * sizeof *pre);
    p7_test_fill_uniform(x, nx, seed, -3.0f, 3.0f);
    p7_test_fill_uniform(dy, nx, seed + 1, -1.0f, 1.0f);
    p7_test_fill_uniform(pre, nx, seed + 2, -5.0f, 5.0f);
    const int64_t xs[2] = {n, k};
    p7_tensor *tx = p7_test_tensor(d, 2, xs, x), *tdy = p7_test_tensor(d, 2, xs, dy), *ty = p7_test_tensor(d, 2, xs, NULL);
    p7_tensor *tdx = p7_test_tensor(d, 2, xs, NULL);
    P7_ASSERT_OK(log_out ? p7_log_softmax_forward(tx, ty) : p7_softmax_forward(tx, ty));
    P7_ASSERT_OK(log_out ? p7_log_softmax_backward(ty, tdy, tdx, 0) : p7_softmax_backward(ty, tdy, tdx, 0));
    float *g = p7_test_download(tdx);

    double *xd = malloc(nx * sizeof *xd), *dyd = malloc(nx * sizeof *dyd), *fd = malloc(nx * sizeof *fd);
    for (size_t i = 0; i < nx; i++) { xd[i] = x[i]; dyd[i] = dy[i]; }
    for (size_t i = 0; i < nx; i++) {
        const double v = xd[i];
        xd[i] = v + FD_STEP;
        const double lp = objective(xd, n, k, log_out, dyd);
        xd[i] = v - FD_STEP;
        const double lm = objective(xd, n, k, log_out, dyd);
        xd[i] = v;
        fd[i] = (lp - lm) / (2 * FD_STEP);
    }
    p7_test_assert_normwise(log_out ? "log_softmax dx" : "softmax dx", g, fd, nx, FD_TOL);

    /* accumulate=1 adds to known contents */
    P7_ASSERT_OK(p7_tensor_upload(tdx, pre, nx));
    P7_ASSERT_OK(log_out ? p7_log_softmax_backward(ty, tdy, tdx, 1) : p7_softmax_backward(ty, tdy, tdx, 1));
    float *a = p7_test_download(tdx);
    for (size_t i = 0; i < nx; i++) assert_true(fabsf(a[i] - (pre[i] + g[i])) <= 1e-6f * (1 + fabsf(a[i])));
    /* a NULL gradient output is a no-op */
    P7_ASSERT_OK(log_out ? p7_log_softmax_backward(ty, tdy, NULL, 0) : p7_softmax_backward(ty, tdy, NULL, 0));

    free(a);
    free(g);
    free(x);
    free(dy);
    free(pre);
    free(xd);
    free(dyd);
    free(fd);
    p7_tensor_release(tx);
    p7_tensor_release(tdy);
    p7_tensor_release(ty);
    p7_tensor_release(tdx);
}

static void test_backward(void **state)
{
    check_backward(*state, 4, 6, 0, 210);
    check_backward(*state, 4, 6, 1, 211);
    check_backward(*state, 2, 150, 0, 212); /* rows longer than a work-group */
    check_backward(*state, 2, 150, 1, 213);
}

static void check_cross_entropy(p7_device *d, int n, int k, uint64_t seed)
{
    const size_t nx = (size_t)n * k;
    float *x = malloc(nx * sizeof *x), *pre = malloc(nx * sizeof *pre);
    p7_test_fill_uniform(x, nx, seed, -4.0f, 4.0f);
    p7_test_fill_uniform(pre, nx, seed + 1, -2.0f, 2.0f);
    /* three junk labels in front: the op must honour labels_offset */
    int *labels = malloc((size_t)(n + 3) * sizeof *labels);
    labels[0] = labels[1] = labels[2] = -7;
    for (int r = 0; r < n; r++) labels[3 + r] = (r * 7 + 3) % k;
    p7_buffer *lb = upload_labels(d, labels, (size_t)n + 3);
    const int64_t xs[2] = {n, k}, one[1] = {1};
    const float dloss_value = 0.75f;
    p7_tensor *tx = p7_test_tensor(d, 2, xs, x), *tp = p7_test_tensor(d, 2, xs, NULL), *tl = p7_test_tensor(d, 1, one, NULL);
    p7_tensor *tdl = p7_test_tensor(d, 1, one, &dloss_value), *tdx = p7_test_tensor(d, 2, xs, NULL);
    P7_ASSERT_OK(p7_cross_entropy_forward(tx, p7_buffer_mem(lb), 3, tp, tl));
    P7_ASSERT_OK(p7_cross_entropy_backward(tp, p7_buffer_mem(lb), 3, tdl, tdx, 0));

    double *xd = malloc(nx * sizeof *xd), *probs = malloc(nx * sizeof *probs), *fd = malloc(nx * sizeof *fd);
    for (size_t i = 0; i < nx; i++) xd[i] = x[i];
    host_softmax(xd, n, k, 0, probs);
    const double loss = host_cross_entropy(xd, n, k, labels + 3);
    float *gl = p7_test_download(tl), *gp = p7_test_download(tp), *g = p7_test_download(tdx);
    p7_test_assert_close("cross_entropy loss", gl, &loss, 1, FWD_TOL);
    for (size_t i = 0; i < nx; i++) assert_true(fabs(gp[i] - probs[i]) <= FWD_TOL * fmax(probs[i], 1e-3));
    for (size_t i = 0; i < nx; i++) {
        const double v = xd[i];
        xd[i] = v + FD_STEP;
        const double lp = host_cross_entropy(xd, n, k, labels + 3);
        xd[i] = v - FD_STEP;
        const double lm = host_cross_entropy(xd, n, k, labels + 3);
        xd[i] = v;
        fd[i] = dloss_value * (lp - lm) / (2 * FD_STEP);
    }
    p7_test_assert_normwise("cross_entropy dlogits", g, fd, nx, FD_TOL);

    P7_ASSERT_OK(p7_tensor_upload(tdx, pre, nx));
    P7_ASSERT_OK(p7_cross_entropy_backward(tp, p7_buffer_mem(lb), 3, tdl, tdx, 1));
    float *a = p7_test_download(tdx);
    for (size_t i = 0; i < nx; i++) assert_true(fabsf(a[i] - (pre[i] + g[i])) <= 1e-6f * (1 + fabsf(a[i])));

    free(a);
    free(gl);
    free(gp);
    free(g);
    free(xd);
    free(probs);
    free(fd);
    free(x);
    free(pre);
    free(labels);
    p7_buffer_free(lb);
    p7_tensor *all[] = {tx, tp, tl, tdl, tdx};
    for (size_t i = 0; i < 5; i++) p7_tensor_release(all[i]);
}

static void test_cross_entropy(void **state)
{
    check_cross_entropy(*state, 5, 10, 220);
    check_cross_entropy(*state, 3, 300, 221);
}

/* Many rows (more than a work-group), to check the mean over rows. */
static void test_cross_entropy_many_rows(void **state)
{
    p7_device *d = *state;
    const int n = 700, k = 10;
    const size_t nx = (size_t)n * k;
    float *x = malloc(nx * sizeof *x);
    p7_test_fill_uniform(x, nx, 230, -6.0f, 6.0f);
    int *labels = malloc((size_t)n * sizeof *labels);
    for (int r = 0; r < n; r++) labels[r] = (r * 3) % k;
    p7_buffer *lb = upload_labels(d, labels, (size_t)n);
    const int64_t xs[2] = {n, k}, one[1] = {1};
    p7_tensor *tx = p7_test_tensor(d, 2, xs, x), *tp = p7_test_tensor(d, 2, xs, NULL), *tl = p7_test_tensor(d, 1, one, NULL);
    P7_ASSERT_OK(p7_cross_entropy_forward(tx, p7_buffer_mem(lb), 0, tp, tl));
    double *xd = malloc(nx * sizeof *xd);
    for (size_t i = 0; i < nx; i++) xd[i] = x[i];
    const double loss = host_cross_entropy(xd, n, k, labels);
    float *gl = p7_test_download(tl);
    p7_test_assert_close("cross_entropy loss (700 rows)", gl, &loss, 1, FWD_TOL);
    free(gl);
    free(xd);
    free(x);
    free(labels);
    p7_buffer_free(lb);
    p7_tensor_release(tx);
    p7_tensor_release(tp);
    p7_tensor_release(tl);
}

/* A label outside 0..K-1 (either side) must give a NaN loss. */
static void test_bad_label_gives_nan(void **state)
{
    p7_device *d = *state;
    const int n = 4, k = 5;
    float x[20];
    p7_test_fill_uniform(x, 20, 240, -1.0f, 1.0f);
    const int64_t xs[2] = {n, k}, one[1] = {1};
    const int cases[2][4] = {{0, 1, 5, 2}, {0, -1, 3, 4}};
    for (int c = 0; c < 2; c++) {
        p7_buffer *lb = upload_labels(d, cases[c], 4);
        p7_tensor *tx = p7_test_tensor(d, 2, xs, x), *tp = p7_test_tensor(d, 2, xs, NULL), *tl;
        const float zero = 0.0f, dl = 1.0f;
        tl = p7_test_tensor(d, 1, one, &zero);
        P7_ASSERT_OK(p7_cross_entropy_forward(tx, p7_buffer_mem(lb), 0, tp, tl));
        float loss;
        P7_ASSERT_OK(p7_tensor_download(tl, &loss, 1));
        assert_true(isnan(loss));
        p7_tensor *tdl = p7_test_tensor(d, 1, one, &dl), *tdx = p7_test_tensor(d, 2, xs, x);
        P7_ASSERT_OK(p7_cross_entropy_backward(tp, p7_buffer_mem(lb), 0, tdl, tdx, 0));
        float *g = p7_test_download(tdx);
        const int bad_row = c == 0 ? 2 : 1;
        for (int j = 0; j < k; j++) assert_true(isnan(g[bad_row * k + j]));
        for (int j = 0; j < k; j++) assert_false(isnan(g[0 * k + j]));
        free(g);
        p7_buffer_free(lb);
        p7_tensor_release(tx);
        p7_tensor_release(tp);
        p7_tensor_release(tl);
        p7_tensor_release(tdl);
        p7_tensor_release(tdx);
    }
}

/* Views at element offsets, and the float accumulation path. */
static void test_views_and_float_path(void **state)
{
    const p7_device_options float_path = {.reduce_in_float = 1};
    p7_device *float_device = p7_test_open_device(&float_path);
    const int n = 3, k = 40;
    const size_t nx = (size_t)n * k;
    float big[400];
    p7_test_fill_uniform(big, 400, 250, -3.0f, 3.0f);
    const int64_t bs[1] = {400}, xs[2] = {n, k};
    for (int pass = 0; pass < 2; pass++) {
        p7_device *d = pass == 0 ? (p7_device *)*state : float_device;
        p7_tensor *pool = p7_test_tensor(d, 1, bs, big), *tx, *ty;
        P7_ASSERT_OK(p7_tensor_view(pool, 7, 2, xs, &tx));
        P7_ASSERT_OK(p7_tensor_view(pool, 200, 2, xs, &ty));
        P7_ASSERT_OK(p7_log_softmax_forward(tx, ty));
        float after[400];
        P7_ASSERT_OK(p7_tensor_download(pool, after, 400));
        double xd[120], y[120];
        for (size_t i = 0; i < nx; i++) xd[i] = big[7 + i];
        host_softmax(xd, n, k, 1, y);
        p7_test_assert_close("log_softmax view", after + 200, y, nx, FWD_TOL);
        for (int i = 0; i < 400; i++)
            if (i < 200 || i >= 200 + (int)nx) assert_true(after[i] == big[i]);
        p7_tensor_release(tx);
        p7_tensor_release(ty);
        p7_tensor_release(pool);
    }
    p7_device_close(float_device);
}

static void test_deterministic(void **state)
{
    p7_device *d = *state;
    const int n = 64, k = 3000;
    const size_t nx = (size_t)n * k;
    float *x = malloc(nx * sizeof *x);
    p7_test_fill_uniform(x, nx, 260, -10.0f, 10.0f);
    int *labels = malloc((size_t)n * sizeof *labels);
    for (int r = 0; r < n; r++) labels[r] = (r * 37) % k;
    p7_buffer *lb = upload_labels(d, labels, (size_t)n);
    const int64_t xs[2] = {n, k}, one[1] = {1};
    p7_tensor *tx = p7_test_tensor(d, 2, xs, x);
    float *out[2][3];
    for (int r = 0; r < 2; r++) {
        p7_tensor *ty = p7_test_tensor(d, 2, xs, NULL), *tp = p7_test_tensor(d, 2, xs, NULL), *tl = p7_test_tensor(d, 1, one, NULL);
        P7_ASSERT_OK(p7_softmax_forward(tx, ty));
        P7_ASSERT_OK(p7_cross_entropy_forward(tx, p7_buffer_mem(lb), 0, tp, tl));
        out[r][0] = p7_test_download(ty);
        out[r][1] = p7_test_download(tp);
        out[r][2] = p7_test_download(tl);
        p7_tensor_release(ty);
        p7_tensor_release(tp);
        p7_tensor_release(tl);
    }
    assert_memory_equal(out[0][0], out[1][0], nx * sizeof(float));
    assert_memory_equal(out[0][1], out[1][1], nx * sizeof(float));
    assert_memory_equal(out[0][2], out[1][2], sizeof(float));
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++) free(out[r][i]);
    free(x);
    free(labels);
    p7_buffer_free(lb);
    p7_tensor_release(tx);
}

static void test_bad_shapes(void **state)
{
    p7_device *d = *state;
    const int64_t a[2] = {3, 4}, b[2] = {4, 3}, c3[3] = {2, 3, 4}, two[1] = {2};
    p7_tensor *ta, *tb, *tc, *t2;
    P7_ASSERT_OK(p7_tensor_create(d, 2, a, &ta));
    P7_ASSERT_OK(p7_tensor_create(d, 2, b, &tb));
    P7_ASSERT_OK(p7_tensor_create(d, 3, c3, &tc));
    P7_ASSERT_OK(p7_tensor_create(d, 1, two, &t2));
    assert_int_equal(p7_softmax_forward(ta, tb), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "softmax"));
    assert_non_null(strstr(p7_last_error(), "[3, 4]"));
    assert_non_null(strstr(p7_last_error(), "[4, 3]"));
    assert_int_equal(p7_log_softmax_forward(tc, tc), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "[2, 3, 4]"));
    int labels[3] = {0, 1, 2};
    p7_buffer *lb = upload_labels(d, labels, 3);
    assert_int_equal(p7_cross_entropy_forward(ta, p7_buffer_mem(lb), 0, ta, t2), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "cross_entropy"));
    p7_tensor *t1;
    const int64_t one[1] = {1};
    P7_ASSERT_OK(p7_tensor_create(d, 1, one, &t1));
    /* 3 rows from element 1 overrun a buffer of exactly 3 labels (the allocator would
     * round a p7_buffer up to its size class) */
    cl_int err;
    cl_mem exact = clCreateBuffer(d->context, CL_MEM_READ_WRITE, 3 * sizeof(int), NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(p7_cross_entropy_forward(ta, exact, 1, ta, t1), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "labels"));
    P7_ASSERT_OK(p7_cross_entropy_forward(ta, exact, 0, ta, t1));
    clFinish(d->queue);
    clReleaseMemObject(exact);
    p7_buffer_free(lb);
    p7_tensor *all[] = {ta, tb, tc, t2, t1};
    for (size_t i = 0; i < 5; i++) p7_tensor_release(all[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backward),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_cross_entropy_many_rows),
        cmocka_unit_test(test_bad_label_gives_nan),
        cmocka_unit_test(test_views_and_float_path),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests(tests, p7_test_setup_device, p7_test_teardown_device);
}
