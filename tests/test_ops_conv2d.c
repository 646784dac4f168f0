/* conv2d forward against a float64 direct-convolution reference, and every gradient
 * against central finite differences of L = sum(dy_fixed * y) computed on the host in
 * double precision; strides 1 and 2, padding 0 and 1, odd and non-square planes,
 * tensors that are views at nonzero offsets, NaN-prefilled outputs, accumulation,
 * NULL gradient outputs, bit-identical reruns, shape errors, and one real VGG11 layer
 * (64 -> 128 channels at 16x16) checked on sampled elements. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/conv2d_internal.h"
#include "ops/op_kernels.h"
#include "p7_test_support.h"

static size_t count_of(int ndim, const int64_t *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

typedef struct conv_case {
    int n, c, h, w, o, k, s, p;
    int bias;
    size_t offset; /* view offset of every tensor */
} conv_case;

static int out_h(const conv_case *cc) { return (cc->h + 2 * cc->p - cc->k) / cc->s + 1; }
static int out_w(const conv_case *cc) { return (cc->w + 2 * cc->p - cc->k) / cc->s + 1; }

/* Direct convolution in double. */
static void conv_ref(const conv_case *cc, const double *x, const double *w, const double *b, double *y)
{
    const int oh_n = out_h(cc), ow_n = out_w(cc);
    for (int n = 0; n < cc->n; n++)
        for (int o = 0; o < cc->o; o++)
            for (int oh = 0; oh < oh_n; oh++)
                for (int ow = 0; ow < ow_n; ow++) {
                    double acc = b ? b[o] : 0.0;
                    for (int c = 0; c < cc->c; c++)
                        for (int ky = 0; ky < cc->k; ky++) {
                            int ih = oh * cc->s - cc->p + ky;
                            if (ih < 0 || ih >= cc->h) continue;
                            for (int kx = 0; kx < cc->k; kx++) {
                                int iw = ow * cc->s - cc->p + kx;
                                if (iw < 0 || iw >= cc->w) continue;
                                acc += x[((size_t)(n * cc->c + c) * cc->h + ih) * cc->w + iw] *
                                       w[((size_t)(o * cc->c + c) * cc->k + ky) * cc->k + kx];
                            }
                        }
                    y[((size_t)(n * cc->o + o) * oh_n + oh) * ow_n + ow] = acc;
                }
}

typedef struct fd_problem {
    const conv_case *cc;
    double *x, *w, *b, *dyf, *y;
    size_t ny;
} fd_problem;

static double objective(fd_problem *pr)
{
    conv_ref(pr->cc, pr->x, pr->w, pr->b, pr->y);
    double l = 0.0;
    for (size_t i = 0; i < pr->ny; i++) l += pr->dyf[i] * pr->y[i];
    return l;
}

/* Central differences of L with respect to every element of v. */
static void finite_diff(fd_problem *pr, double *v, size_t count, double *grad)
{
    const double h = 1e-2;
    for (size_t i = 0; i < count; i++) {
        double keep = v[i];
        v[i] = keep + h;
        double lp = objective(pr);
        v[i] = keep - h;
        double lm = objective(pr);
        v[i] = keep;
        grad[i] = (lp - lm) / (2.0 * h);
    }
}

static void expect_close(const char *what, const float *got, const double *want, const double *pre, size_t n,
                         double tol)
{
    for (size_t i = 0; i < n; i++) {
        double w = want[i] + (pre ? pre[i] : 0.0);
        double err = fabs((double)got[i] - w);
        if (!(err <= tol * (1.0 + fabs(w)))) {
            print_error("%s[%zu]: got %.9g, want %.9g (error %.3g)\n", what, i, got[i], w, err);
            fail();
        }
    }
}

static void run_case(p7_device *device, const conv_case *cc)
{
    const int oh = out_h(cc), ow = out_w(cc);
    int64_t xs[4] = {cc->n, cc->c, cc->h, cc->w}, ws[4] = {cc->o, cc->c, cc->k, cc->k};
    int64_t ys[4] = {cc->n, cc->o, oh, ow}, bs[1] = {cc->o};
    size_t nx = count_of(4, xs), nw = count_of(4, ws), ny = count_of(4, ys), nb = (size_t)cc->o;

    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(nb * sizeof *b);
    float *dyf = malloc(ny * sizeof *dyf);
    p7_test_fill_uniform(x, nx, 11 + (uint64_t)cc->k, -1.0f, 1.0f);
    p7_test_fill_uniform(w, nw, 12 + (uint64_t)cc->s, -1.0f, 1.0f);
    p7_test_fill_uniform(b, nb, 13, -1.0f, 1.0f);
    p7_test_fill_uniform(dyf, ny, 14 + (uint64_t)cc->p, -1.0f, 1.0f);

    p7_tensor *tx = p7_test_view(device, 4, xs, cc->offset, x), *tw = p7_test_view(device, 4, ws, cc->offset, w);
    p7_tensor *tb = cc->bias ? p7_test_view(device, 1, bs, cc->offset, b) : NULL;
    p7_tensor *ty = p7_test_view(device, 4, ys, cc->offset, NULL), *tdy = p7_test_view(device, 4, ys, cc->offset, dyf);

    /* forward */
    P7_ASSERT_OK(p7_conv2d_forward(tx, tw, tb, cc->s, cc->p, ty));
    fd_problem pr = {cc, p7_test_to_double(x, nx), p7_test_to_double(w, nw), cc->bias ? p7_test_to_double(b, nb) : NULL,
                     p7_test_to_double(dyf, ny), malloc(ny * sizeof(double)), ny};
    double *yref = malloc(ny * sizeof *yref);
    conv_ref(cc, pr.x, pr.w, pr.b, yref);
    float *y = p7_test_download(ty);
    expect_close("y", y, yref, NULL, ny, 1e-5);

    /* finite-difference gradients */
    double *gx = malloc(nx * sizeof *gx), *gw = malloc(nw * sizeof *gw), *gb = malloc(nb * sizeof *gb);
    finite_diff(&pr, pr.x, nx, gx);
    finite_diff(&pr, pr.w, nw, gw);
    if (cc->bias) finite_diff(&pr, pr.b, nb, gb);
    else {
        /* db is the sum of dy per channel whether or not the forward had a bias */
        double *zb = calloc(nb, sizeof *zb);
        pr.b = zb;
        finite_diff(&pr, zb, nb, gb);
        pr.b = NULL;
        free(zb);
    }

    /* backward into NaN-filled outputs */
    p7_tensor *tdx = p7_test_view(device, 4, xs, cc->offset, NULL), *tdw = p7_test_view(device, 4, ws, cc->offset, NULL);
    p7_tensor *tdb = p7_test_view(device, 1, bs, cc->offset, NULL);
    P7_ASSERT_OK(p7_conv2d_backward(tx, tw, tdy, cc->s, cc->p, tdx, 0, tdw, 0, tdb, 0));
    float *dx = p7_test_download(tdx), *dw = p7_test_download(tdw), *db = p7_test_download(tdb);
    expect_close("dx", dx, gx, NULL, nx, 2e-5);
    expect_close("dw", dw, gw, NULL, nw, 2e-5);
    expect_close("db", db, gb, NULL, nb, 2e-5);

    /* a rerun is bit-identical */
    P7_ASSERT_OK(p7_conv2d_backward(tx, tw, tdy, cc->s, cc->p, tdx, 0, tdw, 0, tdb, 0));
    P7_ASSERT_OK(p7_conv2d_forward(tx, tw, tb, cc->s, cc->p, ty));
    float *dx2 = p7_test_download(tdx), *dw2 = p7_test_download(tdw), *db2 = p7_test_download(tdb), *y2 = p7_test_download(ty);
    assert_memory_equal(dx, dx2, nx * sizeof *dx);
    assert_memory_equal(dw, dw2, nw * sizeof *dw);
    assert_memory_equal(db, db2, nb * sizeof *db);
    assert_memory_equal(y, y2, ny * sizeof *y);

    /* accumulate = 1 adds to what is there */
    float *px = malloc(nx * sizeof *px), *pw = malloc(nw * sizeof *pw), *pb = malloc(nb * sizeof *pb);
    p7_test_fill_uniform(px, nx, 21, -2.0f, 2.0f);
    p7_test_fill_uniform(pw, nw, 22, -2.0f, 2.0f);
    p7_test_fill_uniform(pb, nb, 23, -2.0f, 2.0f);
    P7_ASSERT_OK(p7_tensor_upload(tdx, px, nx));
    P7_ASSERT_OK(p7_tensor_upload(tdw, pw, nw));
    P7_ASSERT_OK(p7_tensor_upload(tdb, pb, nb));
    P7_ASSERT_OK(p7_conv2d_backward(tx, tw, tdy, cc->s, cc->p, tdx, 1, tdw, 1, tdb, 1));
    double *dpx = p7_test_to_double(px, nx), *dpw = p7_test_to_double(pw, nw), *dpb = p7_test_to_double(pb, nb);
    float *ax = p7_test_download(tdx), *aw = p7_test_download(tdw), *ab = p7_test_download(tdb);
    expect_close("dx (accumulated)", ax, gx, dpx, nx, 2e-5);
    expect_close("dw (accumulated)", aw, gw, dpw, nw, 2e-5);
    expect_close("db (accumulated)", ab, gb, dpb, nb, 2e-5);

    /* NULL gradient outputs: each one alone, into fresh NaN-filled tensors */
    for (int which = 0; which < 3; which++) {
        p7_tensor *ox = which == 0 ? p7_test_view(device, 4, xs, cc->offset, NULL) : NULL;
        p7_tensor *ow_ = which == 1 ? p7_test_view(device, 4, ws, cc->offset, NULL) : NULL;
        p7_tensor *ob = which == 2 ? p7_test_view(device, 1, bs, cc->offset, NULL) : NULL;
        P7_ASSERT_OK(p7_conv2d_backward(tx, tw, tdy, cc->s, cc->p, ox, 0, ow_, 0, ob, 0));
        p7_tensor *t = ox ? ox : ow_ ? ow_ : ob;
        float *g = p7_test_download(t);
        expect_close(which == 0 ? "dx alone" : which == 1 ? "dw alone" : "db alone", g,
                     which == 0 ? gx : which == 1 ? gw : gb, NULL, p7_tensor_numel(t), 2e-5);
        free(g);
        p7_tensor_release(t);
    }
    P7_ASSERT_OK(p7_conv2d_backward(tx, tw, tdy, cc->s, cc->p, NULL, 0, NULL, 0, NULL, 0));

    free(x); free(w); free(b); free(dyf); free(y); free(y2); free(yref);
    free(pr.x); free(pr.w); free(pr.b); free(pr.dyf); free(pr.y);
    free(gx); free(gw); free(gb); free(dx); free(dw); free(db); free(dx2); free(dw2); free(db2);
    free(px); free(pw); free(pb); free(dpx); free(dpw); free(dpb); free(ax); free(aw); free(ab);
    p7_tensor_release(tx); p7_tensor_release(tw); p7_tensor_release(tb); p7_tensor_release(ty);
    p7_tensor_release(tdy); p7_tensor_release(tdx); p7_tensor_release(tdw); p7_tensor_release(tdb);
}

static void test_small_cases(void **state)
{
    p7_device *device = *state;
    static const conv_case cases[] = {
        /* n c  h  w  o  k  s  p  bias offset */
        {2, 3, 6, 7, 4, 3, 1, 1, 1, 5},  /* VGG's 3x3 s1 p1, non-square */
        {2, 3, 5, 5, 4, 3, 1, 0, 1, 0},
        {2, 3, 7, 7, 4, 3, 2, 0, 0, 3},  /* no bias */
        {2, 3, 6, 5, 4, 3, 2, 1, 1, 1},
        {2, 3, 5, 6, 4, 1, 1, 0, 1, 2},  /* 1x1 */
        {2, 2, 6, 6, 3, 2, 2, 0, 1, 0},  /* even kernel */
        {1, 2, 5, 37, 3, 3, 1, 1, 1, 4}, /* rows longer than the vector and chunk widths */
        {2, 3, 4, 4, 4, 3, 1, 1, 1, 2},  /* narrow rows: the per-pixel col2im */
        {2, 3, 5, 3, 4, 3, 2, 1, 1, 1},
        {2, 2, 2, 2, 3, 3, 1, 1, 1, 0},  /* VGG's last layers: 2x2 planes */
        {4, 3, 2, 2, 5, 3, 1, 1, 1, 3},
        {8, 2, 2, 4, 3, 3, 1, 1, 1, 1},
        {16, 2, 1, 1, 3, 3, 1, 1, 0, 2},
        {32, 3, 1, 2, 3, 3, 1, 1, 1, 2},
        {2, 2, 4, 8, 3, 3, 1, 1, 1, 0},
        {1, 3, 4, 4, 2, 1, 1, 0, 1, 1},
        {2, 2, 8, 2, 3, 5, 1, 2, 1, 1},
        {3, 5, 16, 16, 4, 3, 1, 1, 1, 7},
        {5, 4, 4, 4, 6, 3, 1, 1, 1, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(device, &cases[i]);
}

/* Batches whose col or T pass the device's cap (p7_device_options.conv_scratch_floats)
 * run in chunks of images, dw and db adding up over the chunks: every check of run_case,
 * on equal chunks with a smaller last one, 2x2 planes (chunks of a multiple of 4 images
 * for the "same" kernels' runs of 16 pixels) and one image per chunk. */
static void test_chunked_batches(void **state)
{
    (void)state;
    static const struct {
        conv_case cc;
        size_t cap;
    } cases[] = {
        {{5, 3, 6, 7, 4, 3, 1, 1, 1, 5}, 4500},    /* 27 * 42 floats an image past 27 * 32 of slack: 3, 2 */
        {{8, 2, 2, 2, 3, 3, 1, 1, 1, 0}, 720},     /* 2x2 planes: 2 a chunk, rounded up to 4 */
        {{3, 5, 16, 16, 4, 3, 1, 1, 1, 7}, 30000}, /* chunks 2, 1 */
        {{4, 3, 7, 7, 4, 3, 2, 0, 0, 3}, 200},     /* stride 2, no bias: one image a chunk */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const p7_device_options o = {.conv_scratch_floats = cases[i].cap};
        p7_device *capped = p7_test_open_device(&o);
        run_case(capped, &cases[i].cc);
        p7_device_close(capped);
    }
}

/* 3x3, stride-1, padding-1 convolutions on even planes run as Winograd F(2x2, 3x3) (the
 * forward and both gradients) from 64 channels each way, or from 16 with conv_winograd = 2:
 * every check of run_case against the float64 reference on such shapes (every plane kernel,
 * ragged panels, rows of U past a tile), with Winograd and with it turned off (im2col),
 * and in chunks of images. */
static void test_winograd(void **state)
{
    /* 64 channels each way: Winograd by default (one 2x2 image: the finite differences
     * cost a reference forward per weight) */
    const conv_case vgg = {1, 64, 2, 2, 64, 3, 1, 1, 0, 1};
    run_case(*state, &vgg);
    const p7_device_options any = {.conv_winograd = 2};
    p7_device *device = p7_test_open_device(&any);
    static const conv_case cases[] = {
        {2, 16, 4, 6, 16, 3, 1, 1, 1, 3}, /* non-square plane, bias, offset */
        {3, 16, 2, 2, 17, 3, 1, 1, 0, 0}, /* VGG's 2x2 planes, no bias */
        {1, 17, 8, 4, 16, 3, 1, 1, 1, 1},
        {2, 16, 6, 8, 16, 3, 1, 1, 1, 2},  /* planes 8 wide: the row kernels (4 tiles a row) */
        {1, 16, 4, 16, 18, 3, 1, 1, 1, 0}, /* 16 wide: 8 tiles a row */
        {3, 16, 2, 16, 16, 3, 1, 1, 0, 1}, /* 24 tiles: the last panel's zero columns */
        {3, 16, 2, 8, 16, 3, 1, 1, 1, 3},  /* 12 tiles */
        {3, 16, 4, 4, 18, 3, 1, 1, 1, 1},  /* 4x4 planes (VGG's conv5, conv6): 12 tiles, 18 rows of U */
        {8, 24, 4, 4, 16, 3, 1, 1, 0, 0},  /* 4x4: 32 tiles, one whole panel */
        {33, 16, 2, 2, 20, 3, 1, 1, 1, 2}, /* 2x2 planes: a panel and one image of the next */
    };
    const p7_device_options off = {.conv_winograd = -1};
    p7_device *im2col = p7_test_open_device(&off);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(device, &cases[i]);
        run_case(im2col, &cases[i]);
    }
    p7_device_close(im2col);
    p7_device_close(device);
    /* 16 * 9 floats a pixel, 16 pixels an image, past 16 * 16 * 32 of slack: chunks 2, 2, 1 */
    const p7_device_options capped_options = {.conv_scratch_floats = 12800, .conv_winograd = 2};
    p7_device *capped = p7_test_open_device(&capped_options);
    const conv_case chunked = {5, 16, 4, 4, 16, 3, 1, 1, 1, 2};
    run_case(capped, &chunked);
    p7_device_close(capped);
    const p7_device_options bad = {.conv_winograd = 3};
    p7_device *refused = NULL;
    assert_int_equal(p7_device_open(getenv("P7_DEVICE"), &bad, &refused), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "conv_winograd 3"));
    assert_null(refused);
}

static void expect_shape_error(p7_status st)
{
    assert_int_equal(st, P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "conv2d"));
}

static void test_shape_errors(void **state)
{
    p7_device *device = *state;
    int64_t xs[4] = {2, 3, 6, 6}, ws[4] = {4, 3, 3, 3}, wbad[4] = {4, 2, 3, 3}, ys[4] = {2, 4, 6, 6};
    int64_t ybad[4] = {2, 4, 5, 6}, bs[1] = {4}, bbad[1] = {5};
    p7_tensor *x = p7_test_view(device, 4, xs, 0, NULL), *w = p7_test_view(device, 4, ws, 0, NULL);
    p7_tensor *wb = p7_test_view(device, 4, wbad, 0, NULL), *y = p7_test_view(device, 4, ys, 0, NULL);
    p7_tensor *yb = p7_test_view(device, 4, ybad, 0, NULL), *b = p7_test_view(device, 1, bs, 0, NULL);
    p7_tensor *bb = p7_test_view(device, 1, bbad, 0, NULL);
    expect_shape_error(p7_conv2d_forward(x, wb, b, 1, 1, y));
    expect_shape_error(p7_conv2d_forward(x, w, b, 1, 1, yb));
    expect_shape_error(p7_conv2d_forward(x, w, bb, 1, 1, y));
    expect_shape_error(p7_conv2d_forward(x, w, b, 1, 0, y)); /* pad 0 gives 4x4 */
    expect_shape_error(p7_conv2d_backward(x, w, y, 1, 1, w, 0, NULL, 0, NULL, 0)); /* dx shaped like w */
    expect_shape_error(p7_conv2d_backward(x, w, y, 1, 1, NULL, 0, x, 0, NULL, 0));
    expect_shape_error(p7_conv2d_backward(x, w, y, 1, 1, NULL, 0, NULL, 0, bb, 0));
    assert_int_equal(p7_conv2d_forward(x, w, b, 0, 1, y), P7_ERROR_INVALID_ARGUMENT);
    p7_tensor_release(x); p7_tensor_release(w); p7_tensor_release(wb); p7_tensor_release(y);
    p7_tensor_release(yb); p7_tensor_release(b); p7_tensor_release(bb);
}

/* The second VGG11 conv at batch 8: too big for finite differences on the host in a
 * test's time, so forward and gradients are checked on sampled elements against direct
 * sums, with a tolerance scaled by the sum of the absolute terms. */
static void test_vgg_layer(void **state)
{
    p7_device *device = *state;
    const int N = 8, C = 64, H = 16, W = 16, O = 128, K = 3;
    int64_t xs[4] = {N, C, H, W}, ws[4] = {O, C, K, K}, ys[4] = {N, O, H, W}, bs[1] = {O};
    size_t nx = count_of(4, xs), nw = count_of(4, ws), ny = count_of(4, ys);
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(O * sizeof *b);
    float *dy = malloc(ny * sizeof *dy);
    p7_test_fill_uniform(x, nx, 31, -1.0f, 1.0f);
    p7_test_fill_uniform(w, nw, 32, -0.1f, 0.1f);
    p7_test_fill_uniform(b, O, 33, -1.0f, 1.0f);
    p7_test_fill_uniform(dy, ny, 34, -1.0f, 1.0f);
    p7_tensor *tx = p7_test_view(device, 4, xs, 0, x), *tw = p7_test_view(device, 4, ws, 0, w);
    p7_tensor *tb = p7_test_view(device, 1, bs, 0, b), *ty = p7_test_view(device, 4, ys, 0, NULL);
    p7_tensor *tdy = p7_test_view(device, 4, ys, 0, dy), *tdx = p7_test_view(device, 4, xs, 0, NULL);
    p7_tensor *tdw = p7_test_view(device, 4, ws, 0, NULL), *tdb = p7_test_view(device, 1, bs, 0, NULL);
    P7_ASSERT_OK(p7_conv2d_forward(tx, tw, tb, 1, 1, ty));
    P7_ASSERT_OK(p7_conv2d_backward(tx, tw, tdy, 1, 1, tdx, 0, tdw, 0, tdb, 0));
    float *y = p7_test_download(ty), *dx = p7_test_download(tdx), *dw = p7_test_download(tdw), *db = p7_test_download(tdb);

#define X(n, c, h, w_) x[(((size_t)(n) * C + (c)) * H + (h)) * W + (w_)]
#define WT(o, c, ky, kx) w[(((size_t)(o) * C + (c)) * K + (ky)) * K + (kx)]
#define DY(n, o, h, w_) dy[(((size_t)(n) * O + (o)) * H + (h)) * W + (w_)]
    uint64_t s = 12345;
    for (int t = 0; t < 3000; t++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t r = (size_t)(s >> 33);
        int kind = t % 3;
        double ref = 0.0, mag = 0.0;
        float got;
        if (kind == 0) { /* y[n, o, h, w] */
            size_t i = r % ny;
            int w_ = (int)(i % W), h = (int)(i / W % H), o = (int)(i / (W * H) % O), n = (int)(i / ((size_t)W * H * O));
            ref = b[o], mag = fabs(b[o]);
            for (int c = 0; c < C; c++)
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++) {
                        int ih = h - 1 + ky, iw = w_ - 1 + kx;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        double v = (double)X(n, c, ih, iw) * WT(o, c, ky, kx);
                        ref += v, mag += fabs(v);
                    }
            got = y[i];
        } else if (kind == 1) { /* dx[n, c, h, w] */
            size_t i = r % nx;
            int w_ = (int)(i % W), h = (int)(i / W % H), c = (int)(i / (W * H) % C), n = (int)(i / ((size_t)W * H * C));
            for (int o = 0; o < O; o++)
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++) {
                        int oh = h + 1 - ky, ow = w_ + 1 - kx;
                        if (oh < 0 || oh >= H || ow < 0 || ow >= W) continue;
                        double v = (double)DY(n, o, oh, ow) * WT(o, c, ky, kx);
                        ref += v, mag += fabs(v);
                    }
            got = dx[i];
        } else { /* dw[o, c, ky, kx] */
            size_t i = r % nw;
            int kx = (int)(i % K), ky = (int)(i / K % K), c = (int)(i / (K * K) % C), o = (int)(i / ((size_t)K * K * C));
            for (int n = 0; n < N; n++)
                for (int oh = 0; oh < H; oh++)
                    for (int ow = 0; ow < W; ow++) {
                        int ih = oh - 1 + ky, iw = ow - 1 + kx;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        double v = (double)DY(n, o, oh, ow) * X(n, c, ih, iw);
                        ref += v, mag += fabs(v);
                    }
            got = dw[i];
        }
        if (!(fabs(got - ref) <= 1e-5 * mag + 1e-6)) {
            print_error("%s sample %d: got %.9g, want %.9g (scale %.3g)\n", kind == 0 ? "y" : kind == 1 ? "dx" : "dw",
                        t, got, ref, mag);
            fail();
        }
    }
    for (int o = 0; o < O; o++) {
        double ref = 0.0, mag = 0.0;
        for (int n = 0; n < N; n++)
            for (int p = 0; p < H * W; p++) ref += DY(n, o, p / W, p % W), mag += fabs(DY(n, o, p / W, p % W));
        if (!(fabs(db[o] - ref) <= 1e-5 * mag + 1e-6)) {
            print_error("db[%d]: got %.9g, want %.9g\n", o, db[o], ref);
            fail();
        }
    }
#undef X
#undef WT
#undef DY
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(db);
    p7_tensor_release(tx); p7_tensor_release(tw); p7_tensor_release(tb); p7_tensor_release(ty);
    p7_tensor_release(tdy); p7_tensor_release(tdx); p7_tensor_release(tdw); p7_tensor_release(tdb);
}

/* The packed im2col writes exactly the B panels p7's GEMM packs from col:
 * bp[(q*CKK + k)*32 + j] = col[k][q*32 + j], zeros past the last column. */
static void check_packed(p7_device *device, int n, int c, int h, int w, int k, int s, int p)
{
    conv_case cc = {n, c, h, w, 1, k, s, p, 0, 0};
    int oh = out_h(&cc), ow = out_w(&cc);
    int64_t xs[4] = {n, c, h, w};
    size_t nx = (size_t)n * c * h * w, np = (size_t)n * oh * ow, ckk = (size_t)c * k * k;
    float *x = malloc(nx * sizeof *x);
    p7_test_fill_uniform(x, nx, 71, -1.0f, 1.0f);
    p7_tensor *tx = p7_test_view(device, 4, xs, 2, x);
    size_t floats = p7_conv2d_packed_col_floats(tx, k, s, p), off = 3;
    size_t panels = (np + 31) / 32;
    assert_int_equal(floats, panels * 32 * ckk);
    float *host = malloc((floats + off) * sizeof *host);
    p7_test_fill_nan(host, floats + off);
    p7_buffer *bp;
    P7_ASSERT_OK(p7_buffer_alloc(device, (floats + off) * sizeof(float), &bp));
    assert_int_equal(clEnqueueWriteBuffer(device->queue, p7_buffer_mem(bp), CL_TRUE, 0, (floats + off) * sizeof(float),
                                          host, 0, NULL, NULL), CL_SUCCESS);
    P7_ASSERT_OK(p7_conv2d_im2col_packed(tx, k, s, p, p7_buffer_mem(bp), off));
    assert_int_equal(clEnqueueReadBuffer(device->queue, p7_buffer_mem(bp), CL_TRUE, 0, (floats + off) * sizeof(float),
                                         host, 0, NULL, NULL), CL_SUCCESS);
    assert_true(isnan(host[0]) && isnan(host[off - 1]));
    for (size_t q = 0; q < panels; q++)
        for (size_t r = 0; r < ckk; r++)
            for (size_t jj = 0; jj < 32; jj++) {
                size_t j = q * 32 + jj;
                float want = 0.0f;
                if (j < np) {
                    int ni = (int)(j / ((size_t)oh * ow)), pix = (int)(j % ((size_t)oh * ow));
                    int ci = (int)(r / (size_t)(k * k)), tap = (int)(r % (size_t)(k * k));
                    int ih = pix / ow * s - p + tap / k, iw = pix % ow * s - p + tap % k;
                    if (ih >= 0 && ih < h && iw >= 0 && iw < w) want = x[(((size_t)ni * c + ci) * h + ih) * w + iw];
                }
                float got = host[off + (q * ckk + r) * 32 + jj];
                if (!(got == want)) {
                    print_error("panel %zu row %zu col %zu: got %g, want %g\n", q, r, jj, got, want);
                    fail();
                }
            }
    p7_buffer_free(bp);
    p7_tensor_release(tx);
    free(x);
    free(host);
}

static void test_im2col_packed(void **state)
{
    p7_device *device = *state;
    check_packed(device, 2, 3, 6, 7, 3, 1, 1); /* 84 columns: a ragged last panel */
    check_packed(device, 3, 2, 5, 5, 3, 2, 0);
    check_packed(device, 2, 4, 8, 8, 3, 1, 1); /* whole panels */
    check_packed(device, 4, 3, 2, 2, 3, 1, 1);
    check_packed(device, 3, 2, 4, 8, 3, 1, 1);
    check_packed(device, 5, 2, 4, 4, 3, 1, 1);
    check_packed(device, 8, 3, 2, 4, 3, 1, 1);
    check_packed(device, 16, 2, 1, 1, 3, 1, 1);
    check_packed(device, 2, 2, 8, 2, 5, 1, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_cases),
        cmocka_unit_test(test_chunked_batches),
        cmocka_unit_test(test_winograd),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_vgg_layer),
        cmocka_unit_test(test_im2col_packed),
    };
    return cmocka_run_group_tests(tests, p7_test_setup_device, p7_test_teardown_device);
}
