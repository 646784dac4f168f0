/* batchnorm2d forward/backward (plain and BatchEnsemble) against a float64 host
 * reference and float64 central finite differences. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/op_kernels.h"
#include "p7_test_support.h"

/* Forward values are a handful of float operations on O(1) numbers: 1e-5 relative
 * (about 100 float ulps) leaves room for the device's reduction order only. */
#define FWD_TOL 1e-5
/* Float kernels against double finite differences (whose own error is ~1e-9 here):
 * the BN gradient subtracts terms of similar size, so allow 1e-3 of the largest
 * gradient entry (normwise relative error). */
#define FD_TOL 1e-3
#define FD_STEP 1e-5

/* ---- float64 host reference ---- */

typedef struct bn_shape { int n, c, hw, m; } bn_shape;

static size_t bn_numel(bn_shape s) { return (size_t)s.n * s.c * s.hw; }

/* Batch mean and biased variance per channel. */
static void host_stats(bn_shape s, const double *x, double *mean, double *var)
{
    const double count = (double)s.n * s.hw;
    for (int c = 0; c < s.c; c++) {
        double sum = 0.0, sq = 0.0;
        for (int n = 0; n < s.n; n++)
            for (int p = 0; p < s.hw; p++) sum += x[((size_t)n * s.c + c) * s.hw + p];
        mean[c] = sum / count;
        for (int n = 0; n < s.n; n++)
            for (int p = 0; p < s.hw; p++) {
                double dd = x[((size_t)n * s.c + c) * s.hw + p] - mean[c];
                sq += dd * dd;
            }
        var[c] = sq / count;
    }
}

/* y from x with the given per-channel mean/var; w, b [M, C] or NULL. */
static void host_apply(bn_shape s, const double *x, const double *mean, const double *var, const double *w,
                       const double *b, double eps, double *y)
{
    const int rpm = s.n / s.m;
    for (int n = 0; n < s.n; n++)
        for (int c = 0; c < s.c; c++) {
            const int m = n / rpm;
            const double is = 1.0 / sqrt(var[c] + eps);
            const double wm = w ? w[m * s.c + c] : 1.0, bm = b ? b[m * s.c + c] : 0.0;
            for (int p = 0; p < s.hw; p++) {
                size_t i = ((size_t)n * s.c + c) * s.hw + p;
                y[i] = (x[i] - mean[c]) * is * wm + bm;
            }
        }
}

/* L = sum(dy * y): training uses batch statistics, eval the fixed rm/rv. */
static double host_objective(bn_shape s, const double *x, const double *w, const double *b, int training,
                             const double *rm, const double *rv, double eps, const double *dy)
{
    double *mean = malloc(s.c * sizeof *mean), *var = malloc(s.c * sizeof *var);
    double *y = malloc(bn_numel(s) * sizeof *y);
    if (training) {
        host_stats(s, x, mean, var);
    } else {
        memcpy(mean, rm, s.c * sizeof *mean);
        memcpy(var, rv, s.c * sizeof *var);
    }
    host_apply(s, x, mean, var, w, b, eps, y);
    double l = 0.0;
    for (size_t i = 0; i < bn_numel(s); i++) l += dy[i] * y[i];
    free(mean);
    free(var);
    free(y);
    return l;
}

/* Central differences of the objective with respect to every element of p[0..n). */
static void fd_gradient(bn_shape s, double *x, double *w, double *b, int training, const double *rm,
                        const double *rv, double eps, const double *dy, double *p, size_t n, double *g)
{
    for (size_t i = 0; i < n; i++) {
        const double v = p[i];
        p[i] = v + FD_STEP;
        const double lp = host_objective(s, x, w, b, training, rm, rv, eps, dy);
        p[i] = v - FD_STEP;
        const double lm = host_objective(s, x, w, b, training, rm, rv, eps, dy);
        p[i] = v;
        g[i] = (lp - lm) / (2 * FD_STEP);
    }
}

/* One forward + backward on the device, checked against the host: forward values,
 * saved statistics, running statistics, and dx/dweight/dbias against FD. */
static void check_case(p7_device *d, bn_shape s, int affine, int training, uint64_t seed)
{
    const size_t nx = bn_numel(s), nmc = (size_t)s.m * s.c;
    const float eps = 1e-5f, momentum = 0.1f;
    float *x = malloc(nx * sizeof *x), *dy = malloc(nx * sizeof *dy);
    float w[64], b[64], rm[16], rv[16];
    assert_true(nmc <= 64 && s.c <= 16);
    p7_test_fill_uniform(x, nx, seed, -2.0f, 3.0f);
    p7_test_fill_uniform(dy, nx, seed + 1, -1.0f, 1.0f);
    p7_test_fill_uniform(w, nmc, seed + 2, 0.5f, 1.5f);
    p7_test_fill_uniform(b, nmc, seed + 3, -0.5f, 0.5f);
    p7_test_fill_uniform(rm, (size_t)s.c, seed + 4, -0.3f, 0.3f);
    p7_test_fill_uniform(rv, (size_t)s.c, seed + 5, 0.5f, 2.0f);

    const int64_t xs[4] = {s.n, s.c, 1, s.hw}, ms[2] = {s.m, s.c}, cs[1] = {s.c};
    p7_tensor *tx = p7_test_tensor(d, 4, xs, x), *tdy = p7_test_tensor(d, 4, xs, dy);
    p7_tensor *tw = affine ? p7_test_tensor(d, 2, ms, w) : NULL, *tb = affine ? p7_test_tensor(d, 2, ms, b) : NULL;
    p7_tensor *trm = p7_test_tensor(d, 1, cs, rm), *trv = p7_test_tensor(d, 1, cs, rv);
    p7_tensor *ty = p7_test_tensor(d, 4, xs, NULL), *tmean = p7_test_tensor(d, 1, cs, NULL), *tinv = p7_test_tensor(d, 1, cs, NULL);
    P7_ASSERT_OK(p7_batchnorm2d_forward(tx, tw, tb, s.m, trm, trv, training, momentum, eps, tmean, tinv, ty));

    double *xd = p7_test_to_double(x, nx), *dyd = p7_test_to_double(dy, nx), *wd = p7_test_to_double(w, nmc), *bd = p7_test_to_double(b, nmc);
    double *rmd = p7_test_to_double(rm, (size_t)s.c), *rvd = p7_test_to_double(rv, (size_t)s.c);
    double mean[16], var[16];
    if (training) {
        host_stats(s, xd, mean, var);
    } else {
        memcpy(mean, rmd, s.c * sizeof *mean);
        memcpy(var, rvd, s.c * sizeof *var);
    }
    double *y = malloc(nx * sizeof *y);
    host_apply(s, xd, mean, var, affine ? wd : NULL, affine ? bd : NULL, eps, y);

    float *gy = p7_test_download(ty), *gmean = p7_test_download(tmean), *ginv = p7_test_download(tinv);
    float *grm = p7_test_download(trm), *grv = p7_test_download(trv);
    p7_test_assert_close("y", gy, y, nx, FWD_TOL);
    double inv[16], erm[16], erv[16];
    const double count = (double)s.n * s.hw;
    for (int c = 0; c < s.c; c++) {
        inv[c] = 1.0 / sqrt(var[c] + eps);
        erm[c] = training ? (1 - momentum) * rmd[c] + momentum * mean[c] : rmd[c];
        erv[c] = training ? (1 - momentum) * rvd[c] + momentum * var[c] * count / (count - 1) : rvd[c];
    }
    p7_test_assert_close("save_mean", gmean, mean, (size_t)s.c, FWD_TOL);
    p7_test_assert_close("save_invstd", ginv, inv, (size_t)s.c, FWD_TOL);
    p7_test_assert_close("running_mean", grm, erm, (size_t)s.c, FWD_TOL);
    p7_test_assert_close("running_var", grv, erv, (size_t)s.c, FWD_TOL);

    /* backward, every output NaN-prefilled so a skipped element shows */
    p7_tensor *tdx = p7_test_tensor(d, 4, xs, NULL);
    p7_tensor *tdw = affine ? p7_test_tensor(d, 2, ms, NULL) : NULL, *tdb = affine ? p7_test_tensor(d, 2, ms, NULL) : NULL;
    P7_ASSERT_OK(p7_batchnorm2d_backward(tx, tw, s.m, training, tmean, tinv, tdy, tdx, 0, tdw, 0, tdb, 0));
    double *fd = malloc(nx * sizeof *fd);
    fd_gradient(s, xd, affine ? wd : NULL, affine ? bd : NULL, training, rmd, rvd, eps, dyd, xd, nx, fd);
    float *gdx = p7_test_download(tdx);
    p7_test_assert_normwise("dx", gdx, fd, nx, FD_TOL);
    if (affine) {
        double fdw[64], fdb[64];
        fd_gradient(s, xd, wd, bd, training, rmd, rvd, eps, dyd, wd, nmc, fdw);
        fd_gradient(s, xd, wd, bd, training, rmd, rvd, eps, dyd, bd, nmc, fdb);
        float *gdw = p7_test_download(tdw), *gdb = p7_test_download(tdb);
        p7_test_assert_normwise("dweight", gdw, fdw, nmc, FD_TOL);
        p7_test_assert_normwise("dbias", gdb, fdb, nmc, FD_TOL);

        /* accumulate=1 adds to what is there: prefill with known values */
        float *pre_x = malloc(nx * sizeof *pre_x), pre_w[64], pre_b[64];
        p7_test_fill_uniform(pre_x, nx, seed + 9, -4.0f, 4.0f);
        p7_test_fill_uniform(pre_w, nmc, seed + 10, -4.0f, 4.0f);
        p7_test_fill_uniform(pre_b, nmc, seed + 11, -4.0f, 4.0f);
        P7_ASSERT_OK(p7_tensor_upload(tdx, pre_x, nx));
        P7_ASSERT_OK(p7_tensor_upload(tdw, pre_w, nmc));
        P7_ASSERT_OK(p7_tensor_upload(tdb, pre_b, nmc));
        P7_ASSERT_OK(p7_batchnorm2d_backward(tx, tw, s.m, training, tmean, tinv, tdy, tdx, 1, tdw, 1, tdb, 1));
        float *adx = p7_test_download(tdx), *adw = p7_test_download(tdw), *adb = p7_test_download(tdb);
        for (size_t i = 0; i < nx; i++) assert_true(fabsf(adx[i] - (pre_x[i] + gdx[i])) <= 1e-6f * (1 + fabsf(adx[i])));
        for (size_t i = 0; i < nmc; i++) {
            assert_true(fabsf(adw[i] - (pre_w[i] + gdw[i])) <= 1e-6f * (1 + fabsf(adw[i])));
            assert_true(fabsf(adb[i] - (pre_b[i] + gdb[i])) <= 1e-6f * (1 + fabsf(adb[i])));
        }
        free(pre_x);
        free(adx);
        free(adw);
        free(adb);
        free(gdw);
        free(gdb);
    }

    free(fd);
    free(gdx);
    free(gy);
    free(gmean);
    free(ginv);
    free(grm);
    free(grv);
    free(y);
    free(xd);
    free(dyd);
    free(wd);
    free(bd);
    free(rmd);
    free(rvd);
    free(x);
    free(dy);
    p7_tensor *all[] = {tx, tdy, tw, tb, trm, trv, ty, tmean, tinv, tdx, tdw, tdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) p7_tensor_release(all[i]);
}

static void test_plain_training(void **state)
{
    check_case(*state, (bn_shape){4, 3, 9, 1}, 1, 1, 11);
}

static void test_plain_eval(void **state)
{
    check_case(*state, (bn_shape){4, 3, 9, 1}, 1, 0, 12);
}

static void test_affine_false(void **state)
{
    check_case(*state, (bn_shape){3, 2, 5, 1}, 0, 1, 13);
    check_case(*state, (bn_shape){3, 2, 5, 1}, 0, 0, 14);
}

static void test_be_training(void **state)
{
    check_case(*state, (bn_shape){6, 3, 4, 3}, 1, 1, 15);
    check_case(*state, (bn_shape){4, 2, 1, 2}, 1, 1, 16); /* [N, C] input, hw = 1 */
}

/* Planes of a multiple of 16 values take the CPU walk's 16-lane kernels
 * (batchnorm_stats_v16, batchnorm_reduce_v16). */
static void test_planes_of_16(void **state)
{
    check_case(*state, (bn_shape){4, 3, 16, 1}, 1, 1, 21);
    check_case(*state, (bn_shape){6, 2, 32, 3}, 1, 1, 22);
    check_case(*state, (bn_shape){3, 2, 48, 1}, 0, 1, 23);
}

static void test_be_eval(void **state)
{
    check_case(*state, (bn_shape){4, 3, 4, 2}, 1, 0, 17);
}

/* Channels longer than a work-group, in both walk regimes (hw below and above it). */
static void test_forward_long_channels(void **state)
{
    p7_device *d = *state;
    /* the last two have planes of a multiple of 16 (the CPU walk's 16-lane kernels) */
    const bn_shape shapes[4] = {{6, 3, 49, 2}, {2, 2, 300, 1}, {5, 2, 64, 1}, {4, 2, 256, 2}};
    for (int t = 0; t < 4; t++) {
        bn_shape s = shapes[t];
        size_t nx = bn_numel(s), nmc = (size_t)s.m * s.c;
        float *x = malloc(nx * sizeof *x), w[8], b[8];
        /* a large common offset checks the variance does not cancel catastrophically */
        p7_test_fill_uniform(x, nx, 40 + t, 999.0f, 1001.0f);
        p7_test_fill_uniform(w, nmc, 50 + t, 0.5f, 1.5f);
        p7_test_fill_uniform(b, nmc, 60 + t, -1.0f, 1.0f);
        const int64_t xs[2] = {s.n, (int64_t)s.c * s.hw}, ms[2] = {s.m, s.c}, cs[1] = {s.c};
        const int64_t x4[4] = {s.n, s.c, s.hw, 1};
        p7_tensor *flat = p7_test_tensor(d, 2, xs, x), *tx;
        P7_ASSERT_OK(p7_tensor_reshape(flat, 4, x4, &tx));
        p7_tensor *tw = p7_test_tensor(d, 2, ms, w), *tb = p7_test_tensor(d, 2, ms, b);
        p7_tensor *ty = p7_test_tensor(d, 4, x4, NULL), *tm = p7_test_tensor(d, 1, cs, NULL), *ti = p7_test_tensor(d, 1, cs, NULL);
        P7_ASSERT_OK(p7_batchnorm2d_forward(tx, tw, tb, s.m, NULL, NULL, 1, 0.1f, 1e-5f, tm, ti, ty));
        double *xd = p7_test_to_double(x, nx), *wd = p7_test_to_double(w, nmc), *bd = p7_test_to_double(b, nmc);
        double mean[4], var[4], *y = malloc(nx * sizeof *y);
        host_stats(s, xd, mean, var);
        host_apply(s, xd, mean, var, wd, bd, 1e-5, y);
        float *gy = p7_test_download(ty);
        /* x ~ 1000 +- 1: the float mean (ulp 6e-5 at 1000) over the std (0.58) bounds y's accuracy */
        p7_test_assert_close("y (offset 1000)", gy, y, nx, 2e-4);
        free(gy);
        free(y);
        free(xd);
        free(wd);
        free(bd);
        free(x);
        p7_tensor *all[] = {flat, tx, tw, tb, ty, tm, ti};
        for (size_t i = 0; i < 7; i++) p7_tensor_release(all[i]);
    }
}

/* Same as above on the float accumulation path (devices without fp64). */
static void test_float_path(void **state)
{
    (void)state;
    const p7_device_options options = {.reduce_in_float = 1};
    void *device = p7_test_open_device(&options);
    check_case(device, (bn_shape){6, 3, 4, 3}, 1, 1, 18);
    check_case(device, (bn_shape){6, 2, 32, 3}, 1, 1, 25);
    test_forward_long_channels(&device);
    p7_device_close(device);
}

/* Both channel walks on this device: the interleaved one is what GPUs use. */
static void test_interleaved_walk(void **state)
{
    (void)state;
    for (int walk = 1; walk <= 2; walk++) {
        const p7_device_options options = {.batchnorm_walk = walk};
        void *device = p7_test_open_device(&options);
        check_case(device, (bn_shape){6, 3, 4, 3}, 1, 1, 19);
        check_case(device, (bn_shape){4, 2, 3, 1}, 0, 0, 20);
        check_case(device, (bn_shape){4, 3, 16, 1}, 1, 1, 24);
        test_forward_long_channels(&device);
        p7_device_close(device);
    }
    const p7_device_options bad = {.batchnorm_walk = 3};
    p7_device *device = NULL;
    assert_int_equal(p7_device_open(getenv("P7_DEVICE"), &bad, &device), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "batchnorm_walk 3"));
}

/* Running statistics after several training steps: momentum 0.1, unbiased variance. */
static void test_running_stats_steps(void **state)
{
    p7_device *d = *state;
    const bn_shape s = {4, 3, 6, 2};
    const size_t nx = bn_numel(s);
    const int64_t xs[4] = {s.n, s.c, 2, 3}, ms[2] = {s.m, s.c}, cs[1] = {s.c};
    float rm0[3] = {0, 0, 0}, rv0[3] = {1, 1, 1}, w[6], b[6];
    p7_test_fill_uniform(w, 6, 70, 0.5f, 1.5f);
    p7_test_fill_uniform(b, 6, 71, -0.5f, 0.5f);
    p7_tensor *trm = p7_test_tensor(d, 1, cs, rm0), *trv = p7_test_tensor(d, 1, cs, rv0);
    p7_tensor *tw = p7_test_tensor(d, 2, ms, w), *tb = p7_test_tensor(d, 2, ms, b);
    p7_tensor *ty = p7_test_tensor(d, 4, xs, NULL), *tm = p7_test_tensor(d, 1, cs, NULL), *ti = p7_test_tensor(d, 1, cs, NULL);
    double rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
    float *x = malloc(nx * sizeof *x);
    for (int step = 0; step < 4; step++) {
        p7_test_fill_uniform(x, nx, 80 + step, -1.0f + step, 2.0f + 2 * step);
        p7_tensor *tx = p7_test_tensor(d, 4, xs, x);
        P7_ASSERT_OK(p7_batchnorm2d_forward(tx, tw, tb, s.m, trm, trv, 1, 0.1f, 1e-5f, tm, ti, ty));
        p7_tensor_release(tx);
        double *xd = p7_test_to_double(x, nx), mean[3], var[3];
        host_stats(s, xd, mean, var);
        const double count = (double)s.n * s.hw;
        for (int c = 0; c < 3; c++) {
            rm[c] = 0.9 * rm[c] + 0.1 * mean[c];
            rv[c] = 0.9 * rv[c] + 0.1 * var[c] * count / (count - 1);
        }
        free(xd);
    }
    float *grm = p7_test_download(trm), *grv = p7_test_download(trv);
    p7_test_assert_close("running_mean after 4 steps", grm, rm, 3, FWD_TOL);
    p7_test_assert_close("running_var after 4 steps", grv, rv, 3, FWD_TOL);

    /* eval mode then normalises with exactly those running statistics */
    p7_test_fill_uniform(x, nx, 90, -1.0f, 1.0f);
    p7_tensor *tx = p7_test_tensor(d, 4, xs, x);
    P7_ASSERT_OK(p7_batchnorm2d_forward(tx, tw, tb, s.m, trm, trv, 0, 0.1f, 1e-5f, tm, ti, ty));
    double *xd = p7_test_to_double(x, nx), *wd = p7_test_to_double(w, 6), *bd = p7_test_to_double(b, 6), *y = malloc(nx * sizeof *y);
    double grmd[3], grvd[3];
    for (int c = 0; c < 3; c++) { grmd[c] = grm[c]; grvd[c] = grv[c]; }
    host_apply(s, xd, grmd, grvd, wd, bd, 1e-5, y);
    float *gy = p7_test_download(ty), *grm2 = p7_test_download(trm);
    p7_test_assert_close("eval y", gy, y, nx, FWD_TOL);
    assert_memory_equal(grm, grm2, 3 * sizeof(float)); /* eval leaves running stats alone */
    free(grm2);
    free(gy);
    free(y);
    free(xd);
    free(wd);
    free(bd);
    free(grm);
    free(grv);
    free(x);
    p7_tensor *all[] = {trm, trv, tw, tb, ty, tm, ti, tx};
    for (size_t i = 0; i < 8; i++) p7_tensor_release(all[i]);
}

/* BatchEnsemble with identical members equals plain BatchNorm (and M = 1 is plain). */
static void test_be_matches_plain(void **state)
{
    p7_device *d = *state;
    const int n = 4, c = 3, hw = 5;
    const size_t nx = (size_t)n * c * hw;
    const int64_t xs[4] = {n, c, 1, hw}, one[2] = {1, c}, two[2] = {2, c}, cs[1] = {c};
    float x[60], dy[60], w[3], b[3], w2[6], b2[6];
    p7_test_fill_uniform(x, nx, 100, -1.0f, 1.0f);
    p7_test_fill_uniform(dy, nx, 101, -1.0f, 1.0f);
    p7_test_fill_uniform(w, 3, 102, 0.5f, 1.5f);
    p7_test_fill_uniform(b, 3, 103, -0.5f, 0.5f);
    memcpy(w2, w, sizeof w);
    memcpy(w2 + 3, w, sizeof w);
    memcpy(b2, b, sizeof b);
    memcpy(b2 + 3, b, sizeof b);
    p7_tensor *tx = p7_test_tensor(d, 4, xs, x), *tdy = p7_test_tensor(d, 4, xs, dy);
    p7_tensor *tw1 = p7_test_tensor(d, 2, one, w), *tb1 = p7_test_tensor(d, 2, one, b);
    p7_tensor *tw2 = p7_test_tensor(d, 2, two, w2), *tb2 = p7_test_tensor(d, 2, two, b2);
    p7_tensor *y1 = p7_test_tensor(d, 4, xs, NULL), *y2 = p7_test_tensor(d, 4, xs, NULL);
    p7_tensor *m1 = p7_test_tensor(d, 1, cs, NULL), *i1 = p7_test_tensor(d, 1, cs, NULL), *m2 = p7_test_tensor(d, 1, cs, NULL),
              *i2 = p7_test_tensor(d, 1, cs, NULL);
    P7_ASSERT_OK(p7_batchnorm2d_forward(tx, tw1, tb1, 1, NULL, NULL, 1, 0.1f, 1e-5f, m1, i1, y1));
    P7_ASSERT_OK(p7_batchnorm2d_forward(tx, tw2, tb2, 2, NULL, NULL, 1, 0.1f, 1e-5f, m2, i2, y2));
    float *g1 = p7_test_download(y1), *g2 = p7_test_download(y2);
    assert_memory_equal(g1, g2, nx * sizeof(float));
    p7_tensor *dx1 = p7_test_tensor(d, 4, xs, NULL), *dx2 = p7_test_tensor(d, 4, xs, NULL);
    p7_tensor *dw1 = p7_test_tensor(d, 2, one, NULL), *dw2 = p7_test_tensor(d, 2, two, NULL);
    P7_ASSERT_OK(p7_batchnorm2d_backward(tx, tw1, 1, 1, m1, i1, tdy, dx1, 0, dw1, 0, NULL, 0));
    P7_ASSERT_OK(p7_batchnorm2d_backward(tx, tw2, 2, 1, m2, i2, tdy, dx2, 0, dw2, 0, NULL, 0));
    float *gx1 = p7_test_download(dx1), *gx2 = p7_test_download(dx2), *gw1 = p7_test_download(dw1), *gw2 = p7_test_download(dw2);
    for (size_t i = 0; i < nx; i++) assert_true(fabsf(gx1[i] - gx2[i]) <= 1e-5f * (1 + fabsf(gx1[i])));
    /* the per-member weight gradients sum to the shared one */
    for (int ch = 0; ch < c; ch++)
        assert_true(fabsf(gw1[ch] - (gw2[ch] + gw2[c + ch])) <= 1e-5f * (1 + fabsf(gw1[ch])));
    free(g1);
    free(g2);
    free(gx1);
    free(gx2);
    free(gw1);
    free(gw2);
    p7_tensor *all[] = {tx, tdy, tw1, tb1, tw2, tb2, y1, y2, m1, i1, m2, i2, dx1, dx2, dw1, dw2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) p7_tensor_release(all[i]);
}

/* Views: every tensor is a window at a nonzero element offset of a larger one. */
static void test_views_and_null_outputs(void **state)
{
    p7_device *d = *state;
    const bn_shape s = {4, 2, 3, 2};
    const size_t nx = bn_numel(s);
    float big[200], x[24], dy[24], w[4], b[4];
    p7_test_fill_uniform(big, 200, 110, -1.0f, 1.0f);
    p7_test_fill_uniform(x, nx, 111, -1.0f, 2.0f);
    p7_test_fill_uniform(dy, nx, 112, -1.0f, 1.0f);
    p7_test_fill_uniform(w, 4, 113, 0.5f, 1.5f);
    p7_test_fill_uniform(b, 4, 114, -0.5f, 0.5f);
    const int64_t bs[1] = {200}, xs[4] = {s.n, s.c, 1, s.hw}, ms[2] = {s.m, s.c}, cs[1] = {s.c};
    p7_tensor *pool = p7_test_tensor(d, 1, bs, big);
    p7_tensor *tx, *tdy, *tw, *tb, *ty, *tm, *ti, *tdx, *tdw;
    P7_ASSERT_OK(p7_tensor_view(pool, 3, 4, xs, &tx));
    P7_ASSERT_OK(p7_tensor_view(pool, 30, 4, xs, &tdy));
    P7_ASSERT_OK(p7_tensor_view(pool, 57, 2, ms, &tw));
    P7_ASSERT_OK(p7_tensor_view(pool, 63, 2, ms, &tb));
    P7_ASSERT_OK(p7_tensor_view(pool, 70, 4, xs, &ty));
    P7_ASSERT_OK(p7_tensor_view(pool, 101, 1, cs, &tm));
    P7_ASSERT_OK(p7_tensor_view(pool, 105, 1, cs, &ti));
    P7_ASSERT_OK(p7_tensor_view(pool, 111, 4, xs, &tdx));
    P7_ASSERT_OK(p7_tensor_view(pool, 141, 2, ms, &tdw));
    P7_ASSERT_OK(p7_tensor_upload(tx, x, nx));
    P7_ASSERT_OK(p7_tensor_upload(tdy, dy, nx));
    P7_ASSERT_OK(p7_tensor_upload(tw, w, 4));
    P7_ASSERT_OK(p7_tensor_upload(tb, b, 4));
    P7_ASSERT_OK(p7_batchnorm2d_forward(tx, tw, tb, s.m, NULL, NULL, 1, 0.1f, 1e-5f, tm, ti, ty));
    /* dx and dbias not needed: only dweight is written */
    P7_ASSERT_OK(p7_batchnorm2d_backward(tx, tw, s.m, 1, tm, ti, tdy, NULL, 0, tdw, 0, NULL, 0));
    float after[200];
    P7_ASSERT_OK(p7_tensor_download(pool, after, 200));

    double *xd = p7_test_to_double(x, nx), *dyd = p7_test_to_double(dy, nx), *wd = p7_test_to_double(w, 4), *bd = p7_test_to_double(b, 4);
    double mean[2], var[2], y[24], fdw[4];
    host_stats(s, xd, mean, var);
    host_apply(s, xd, mean, var, wd, bd, 1e-5, y);
    p7_test_assert_close("y view", after + 70, y, nx, FWD_TOL);
    fd_gradient(s, xd, wd, bd, 1, NULL, NULL, 1e-5, dyd, wd, 4, fdw);
    p7_test_assert_normwise("dweight view", after + 141, fdw, 4, FD_TOL);
    /* everything outside the outputs is untouched */
    for (int i = 0; i < 200; i++) {
        int out = (i >= 70 && i < 94) || (i >= 101 && i < 103) || (i >= 105 && i < 107) || (i >= 141 && i < 145);
        if (!out && !(i >= 3 && i < 27) && !(i >= 30 && i < 54) && !(i >= 57 && i < 61) && !(i >= 63 && i < 67))
            assert_true(after[i] == big[i]);
    }
    free(xd);
    free(dyd);
    free(wd);
    free(bd);
    p7_tensor *all[] = {pool, tx, tdy, tw, tb, ty, tm, ti, tdx, tdw};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) p7_tensor_release(all[i]);
}

/* Run twice on a larger problem: bit-identical results. */
static void test_deterministic(void **state)
{
    p7_device *d = *state;
    const int n = 16, c = 4, hw = 64, m = 4;
    const size_t nx = (size_t)n * c * hw;
    const int64_t xs[4] = {n, c, 8, 8}, ms[2] = {m, c}, cs[1] = {c};
    float *x = malloc(nx * sizeof *x), *dy = malloc(nx * sizeof *dy), w[16], b[16];
    p7_test_fill_uniform(x, nx, 120, -3.0f, 3.0f);
    p7_test_fill_uniform(dy, nx, 121, -1.0f, 1.0f);
    p7_test_fill_uniform(w, 16, 122, 0.5f, 1.5f);
    p7_test_fill_uniform(b, 16, 123, -0.5f, 0.5f);
    p7_tensor *tx = p7_test_tensor(d, 4, xs, x), *tdy = p7_test_tensor(d, 4, xs, dy), *tw = p7_test_tensor(d, 2, ms, w),
              *tb = p7_test_tensor(d, 2, ms, b);
    float *res[2][4];
    for (int r = 0; r < 2; r++) {
        p7_tensor *ty = p7_test_tensor(d, 4, xs, NULL), *tm = p7_test_tensor(d, 1, cs, NULL), *ti = p7_test_tensor(d, 1, cs, NULL);
        p7_tensor *tdx = p7_test_tensor(d, 4, xs, NULL), *tdw = p7_test_tensor(d, 2, ms, NULL), *tdb = p7_test_tensor(d, 2, ms, NULL);
        P7_ASSERT_OK(p7_batchnorm2d_forward(tx, tw, tb, m, NULL, NULL, 1, 0.1f, 1e-5f, tm, ti, ty));
        P7_ASSERT_OK(p7_batchnorm2d_backward(tx, tw, m, 1, tm, ti, tdy, tdx, 0, tdw, 0, tdb, 0));
        res[r][0] = p7_test_download(ty);
        res[r][1] = p7_test_download(tdx);
        res[r][2] = p7_test_download(tdw);
        res[r][3] = p7_test_download(ti);
        p7_tensor *all[] = {ty, tm, ti, tdx, tdw, tdb};
        for (size_t i = 0; i < 6; i++) p7_tensor_release(all[i]);
    }
    assert_memory_equal(res[0][0], res[1][0], nx * sizeof(float));
    assert_memory_equal(res[0][1], res[1][1], nx * sizeof(float));
    assert_memory_equal(res[0][2], res[1][2], 16 * sizeof(float));
    assert_memory_equal(res[0][3], res[1][3], 4 * sizeof(float));
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 4; i++) free(res[r][i]);
    free(x);
    free(dy);
    p7_tensor *all[] = {tx, tdy, tw, tb};
    for (size_t i = 0; i < 4; i++) p7_tensor_release(all[i]);
}

static void test_bad_shapes(void **state)
{
    p7_device *d = *state;
    const int64_t xs[4] = {4, 3, 2, 2}, wbad[2] = {2, 4}, cs[1] = {3}, c4[1] = {4};
    p7_tensor *tx, *tw, *ty, *tm, *ti, *t4;
    P7_ASSERT_OK(p7_tensor_create(d, 4, xs, &tx));
    P7_ASSERT_OK(p7_tensor_create(d, 2, wbad, &tw));
    P7_ASSERT_OK(p7_tensor_create(d, 4, xs, &ty));
    P7_ASSERT_OK(p7_tensor_create(d, 1, cs, &tm));
    P7_ASSERT_OK(p7_tensor_create(d, 1, cs, &ti));
    P7_ASSERT_OK(p7_tensor_create(d, 1, c4, &t4));
    assert_int_equal(p7_batchnorm2d_forward(tx, tw, NULL, 2, NULL, NULL, 1, 0.1f, 1e-5f, tm, ti, ty),
                     P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "batchnorm2d"));
    assert_non_null(strstr(p7_last_error(), "[2, 4]"));
    assert_non_null(strstr(p7_last_error(), "[4, 3, 2, 2]"));
    /* 3 members do not divide 4 rows */
    assert_int_equal(p7_batchnorm2d_forward(tx, NULL, NULL, 3, NULL, NULL, 1, 0.1f, 1e-5f, tm, ti, ty),
                     P7_ERROR_INVALID_SHAPE);
    assert_int_equal(p7_batchnorm2d_forward(tx, NULL, NULL, 1, t4, t4, 1, 0.1f, 1e-5f, tm, ti, ty),
                     P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "running_mean"));
    /* eval without running statistics */
    assert_int_equal(p7_batchnorm2d_forward(tx, NULL, NULL, 1, NULL, NULL, 0, 0.1f, 1e-5f, tm, ti, ty),
                     P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_batchnorm2d_backward(tx, NULL, 1, 1, t4, ti, ty, ty, 0, NULL, 0, NULL, 0),
                     P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "batchnorm2d backward"));
    /* one value per channel cannot give an unbiased variance */
    const int64_t one[2] = {1, 3};
    p7_tensor *t1;
    P7_ASSERT_OK(p7_tensor_create(d, 2, one, &t1));
    assert_int_equal(p7_batchnorm2d_forward(t1, NULL, NULL, 1, NULL, NULL, 1, 0.1f, 1e-5f, tm, ti, t1),
                     P7_ERROR_INVALID_SHAPE);
    p7_tensor *all[] = {tx, tw, ty, tm, ti, t4, t1};
    for (size_t i = 0; i < 7; i++) p7_tensor_release(all[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_training),
        cmocka_unit_test(test_plain_eval),
        cmocka_unit_test(test_affine_false),
        cmocka_unit_test(test_be_training),
        cmocka_unit_test(test_be_eval),
        cmocka_unit_test(test_planes_of_16),
        cmocka_unit_test(test_forward_long_channels),
        cmocka_unit_test(test_float_path),
        cmocka_unit_test(test_interleaved_walk),
        cmocka_unit_test(test_running_stats_steps),
        cmocka_unit_test(test_be_matches_plain),
        cmocka_unit_test(test_views_and_null_outputs),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests(tests, p7_test_setup_device, p7_test_teardown_device);
}
