/* linear: the forward against a float64 host reference and every gradient against
 * central finite differences of L = sum(dy_fixed * y) in double precision; views at
 * offsets, [N, C, 1, 1] inputs, NaN-prefilled outputs, accumulation, NULL gradient
 * outputs, bit-identical reruns, VGG11's classifier shape and shape errors. */
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

typedef struct lin { int n, in, out; const double *x, *w, *b, *dyf; } lin;

static double forward_ref(const lin *l, const double *x, const double *w, const double *b, double *y)
{
    double loss = 0.0;
    for (int r = 0; r < l->n; r++)
        for (int o = 0; o < l->out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < l->in; i++) acc += x[(size_t)r * l->in + i] * w[(size_t)o * l->in + i];
            if (y) y[(size_t)r * l->out + o] = acc;
            loss += l->dyf[(size_t)r * l->out + o] * acc;
        }
    return loss;
}

static void check(const char *what, const float *got, const double *want, const float *pre, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double w = want[i] + (pre ? pre[i] : 0.0);
        if (!(fabs(got[i] - w) <= 2e-5 * (1.0 + fabs(w)))) {
            print_error("%s[%zu]: got %.9g, want %.9g\n", what, i, got[i], w);
            fail();
        }
    }
}

/* four_d: x is [N, I, 1, 1] instead of [N, I]. */
static void run_case(p7_device *device, int n, int in, int out, size_t offset, int bias, int four_d)
{
    size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc((size_t)out * sizeof *b);
    float *dyf = malloc(ny * sizeof *dyf);
    p7_test_fill_uniform(x, nx, 51, -1.0f, 1.0f);
    p7_test_fill_uniform(w, nw, 52, -1.0f, 1.0f);
    p7_test_fill_uniform(b, (size_t)out, 53, -1.0f, 1.0f);
    p7_test_fill_uniform(dyf, ny, 54, -1.0f, 1.0f);
    int64_t xs4[4] = {n, in, 1, 1}, xs[2] = {n, in}, ws[2] = {out, in}, ys[2] = {n, out}, bs[1] = {out};
    p7_tensor *tx = four_d ? p7_test_view(device, 4, xs4, offset, x) : p7_test_view(device, 2, xs, offset, x);
    p7_tensor *tw = p7_test_view(device, 2, ws, offset, w), *tb = bias ? p7_test_view(device, 1, bs, offset, b) : NULL;
    p7_tensor *ty = p7_test_view(device, 2, ys, offset, NULL), *tdy = p7_test_view(device, 2, ys, offset, dyf);

    double *xd = p7_test_to_double(x, nx), *wd = p7_test_to_double(w, nw), *bd = p7_test_to_double(b, (size_t)out);
    double *dyd = p7_test_to_double(dyf, ny), *yref = malloc(ny * sizeof *yref);
    lin l = {n, in, out, xd, wd, bd, dyd};
    forward_ref(&l, xd, wd, bias ? bd : NULL, yref);
    P7_ASSERT_OK(p7_linear_forward(tx, tw, tb, ty));
    float *y = p7_test_download(ty);
    check("y", y, yref, NULL, ny);

    /* finite differences */
    const double h = 1e-2;
    double *gx = malloc(nx * sizeof *gx), *gw = malloc(nw * sizeof *gw), *gb = malloc((size_t)out * sizeof *gb);
    struct { double *v, *g; size_t n; } params[3] = {{xd, gx, nx}, {wd, gw, nw}, {bd, gb, (size_t)out}};
    for (int p = 0; p < 3; p++)
        for (size_t i = 0; i < params[p].n; i++) {
            double keep = params[p].v[i];
            params[p].v[i] = keep + h;
            double lp = forward_ref(&l, xd, wd, bd, NULL);
            params[p].v[i] = keep - h;
            double lm = forward_ref(&l, xd, wd, bd, NULL);
            params[p].v[i] = keep;
            params[p].g[i] = (lp - lm) / (2.0 * h);
        }

    p7_tensor *tdx = four_d ? p7_test_view(device, 4, xs4, offset, NULL) : p7_test_view(device, 2, xs, offset, NULL);
    p7_tensor *tdw = p7_test_view(device, 2, ws, offset, NULL), *tdb = p7_test_view(device, 1, bs, offset, NULL);
    P7_ASSERT_OK(p7_linear_backward(tx, tw, tdy, tdx, 0, tdw, 0, tdb, 0));
    float *dx = p7_test_download(tdx), *dw = p7_test_download(tdw), *db = p7_test_download(tdb);
    check("dx", dx, gx, NULL, nx);
    check("dw", dw, gw, NULL, nw);
    check("db", db, gb, NULL, (size_t)out);

    P7_ASSERT_OK(p7_linear_backward(tx, tw, tdy, tdx, 0, tdw, 0, tdb, 0));
    float *dx2 = p7_test_download(tdx), *dw2 = p7_test_download(tdw), *db2 = p7_test_download(tdb);
    assert_memory_equal(dx, dx2, nx * sizeof *dx);
    assert_memory_equal(dw, dw2, nw * sizeof *dw);
    assert_memory_equal(db, db2, (size_t)out * sizeof *db);

    float *px = malloc(nx * sizeof *px), *pw = malloc(nw * sizeof *pw), *pb = malloc((size_t)out * sizeof *pb);
    p7_test_fill_uniform(px, nx, 61, -2.0f, 2.0f);
    p7_test_fill_uniform(pw, nw, 62, -2.0f, 2.0f);
    p7_test_fill_uniform(pb, (size_t)out, 63, -2.0f, 2.0f);
    P7_ASSERT_OK(p7_tensor_upload(tdx, px, nx));
    P7_ASSERT_OK(p7_tensor_upload(tdw, pw, nw));
    P7_ASSERT_OK(p7_tensor_upload(tdb, pb, (size_t)out));
    P7_ASSERT_OK(p7_linear_backward(tx, tw, tdy, tdx, 1, tdw, 1, tdb, 1));
    float *ax = p7_test_download(tdx), *aw = p7_test_download(tdw), *ab = p7_test_download(tdb);
    check("dx (accumulated)", ax, gx, px, nx);
    check("dw (accumulated)", aw, gw, pw, nw);
    check("db (accumulated)", ab, gb, pb, (size_t)out);

    /* only dw requested: dx and db stay untouched */
    P7_ASSERT_OK(p7_tensor_fill(tdx, NAN));
    P7_ASSERT_OK(p7_linear_backward(tx, tw, tdy, NULL, 0, tdw, 0, NULL, 0));
    float *ow = p7_test_download(tdw);
    check("dw alone", ow, gw, NULL, nw);

    free(x); free(w); free(b); free(dyf); free(xd); free(wd); free(bd); free(dyd); free(yref); free(y);
    free(gx); free(gw); free(gb); free(dx); free(dw); free(db); free(dx2); free(dw2); free(db2);
    free(px); free(pw); free(pb); free(ax); free(aw); free(ab); free(ow);
    p7_tensor_release(tx); p7_tensor_release(tw); p7_tensor_release(tb); p7_tensor_release(ty);
    p7_tensor_release(tdy); p7_tensor_release(tdx); p7_tensor_release(tdw); p7_tensor_release(tdb);
}

static void test_small(void **state)
{
    p7_device *device = *state;
    run_case(device, 5, 7, 3, 3, 1, 0);
    run_case(device, 4, 6, 5, 0, 0, 1);
    run_case(device, 1, 9, 2, 1, 1, 1);
}

/* VGG11's classifier, 512 -> 10 at batch 16 (finite differences stay cheap: L is
 * linear, so each step costs one host forward). */
static void test_classifier_shape(void **state)
{
    p7_device *device = *state;
    run_case(device, 16, 512, 10, 0, 1, 1);
}

static void test_shape_errors(void **state)
{
    p7_device *device = *state;
    int64_t xs[2] = {4, 6}, ws[2] = {3, 6}, wbad[2] = {3, 5}, ys[2] = {4, 3}, ybad[2] = {4, 2}, bbad[1] = {4};
    p7_tensor *x = p7_test_view(device, 2, xs, 0, NULL), *w = p7_test_view(device, 2, ws, 0, NULL);
    p7_tensor *wb = p7_test_view(device, 2, wbad, 0, NULL), *y = p7_test_view(device, 2, ys, 0, NULL);
    p7_tensor *yb = p7_test_view(device, 2, ybad, 0, NULL), *bb = p7_test_view(device, 1, bbad, 0, NULL);
    assert_int_equal(p7_linear_forward(x, wb, NULL, y), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "linear"));
    assert_int_equal(p7_linear_forward(x, w, NULL, yb), P7_ERROR_INVALID_SHAPE);
    assert_int_equal(p7_linear_forward(x, w, bb, y), P7_ERROR_INVALID_SHAPE);
    assert_int_equal(p7_linear_backward(x, w, y, w, 0, NULL, 0, NULL, 0), P7_ERROR_INVALID_SHAPE);
    assert_int_equal(p7_linear_backward(x, w, y, NULL, 0, NULL, 0, bb, 0), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "linear backward"));
    p7_tensor_release(x); p7_tensor_release(w); p7_tensor_release(wb); p7_tensor_release(y);
    p7_tensor_release(yb); p7_tensor_release(bb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small),
        cmocka_unit_test(test_classifier_shape),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, p7_test_setup_device, p7_test_teardown_device);
}
