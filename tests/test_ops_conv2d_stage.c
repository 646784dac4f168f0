/* The convolution's evaluation output stage (ops/fused_internal.h) against a float64
 * host reference: direct convolution of the input scaled per (member, input channel),
 * then the per-(member, channel) affine, the
 * evaluation BatchNorm and the ReLU computed in double from their definitions (not
 * from the folded scale and shift the device computes). Shared and per-member vectors,
 * missing ones, strides 1 and 2, the packed and the general im2col, max pooling after
 * the stage (2x2 and an overlapping 3 / 2 window), views at nonzero
 * offsets into NaN-filled buffers; the comparison is shown able to fail (a reference
 * with a BatchNorm variance off by 1e-3 must not pass); shape errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/fused_internal.h"
#include "p7_test_support.h"

P7_TEST_FILE_DEVICE

/* How a stage vector is given: absent, shared [O], or per member [M, O]. */
enum { NONE = 0, SHARED = 1, MEMBER = 2 };

typedef struct stage_case {
    int n, c, h, w, o, k, s, p, members;
    int in_scale;            /* NONE / MEMBER: the BatchEnsemble alpha [M, C_in] */
    int scale, shift;        /* NONE / SHARED / MEMBER */
    int bn, bn_weight, bn_bias;
    int relu;
    int pool_k, pool_s;      /* max pooling after the stage; 0: none */
    size_t offset;           /* view offset of every tensor */
} stage_case;

/* The convolution's output plane, and the stage's (pooled when it pools). */
static int conv_h(const stage_case *sc) { return (sc->h + 2 * sc->p - sc->k) / sc->s + 1; }
static int conv_w(const stage_case *sc) { return (sc->w + 2 * sc->p - sc->k) / sc->s + 1; }
static int out_h(const stage_case *sc) { return sc->pool_k ? (conv_h(sc) - sc->pool_k) / sc->pool_s + 1 : conv_h(sc); }
static int out_w(const stage_case *sc) { return sc->pool_k ? (conv_w(sc) - sc->pool_k) / sc->pool_s + 1 : conv_w(sc); }

typedef struct host_vectors {
    double *in_scale;                             /* [M*C] or NULL */
    double *scale, *shift, *mean, *var, *bw, *bb; /* NULL where absent; [M*O] or [O] as given */
    int scale_kind, shift_kind, bw_kind, bb_kind;
    double eps;
} host_vectors;

/* Element (m, o) of a vector given as `kind`. */
static double vec(const double *v, int kind, int m, int o, int out_c, double absent)
{
    if (kind == NONE) return absent;
    return v[(kind == MEMBER ? (size_t)m * out_c : 0) + o];
}

/* y and its magnitude (the same sums over absolute values), so the tolerance follows
 * the size of the terms rather than of their cancelling sum; before pooling. */
static void unpooled_ref(const stage_case *sc, const double *x, const double *w, const host_vectors *v, double *y,
                         double *mag)
{
    const int oh_n = conv_h(sc), ow_n = conv_w(sc), rows_per_member = sc->n / sc->members;
    for (int n = 0; n < sc->n; n++)
        for (int o = 0; o < sc->o; o++) {
            const int m = n / rows_per_member;
            const double g = vec(v->scale, v->scale_kind, m, o, sc->o, 1.0);
            const double h = vec(v->shift, v->shift_kind, m, o, sc->o, 0.0);
            double k = 1.0, mean = 0.0, beta = 0.0;
            if (sc->bn) {
                k = vec(v->bw, v->bw_kind, m, o, sc->o, 1.0) / sqrt(v->var[o] + v->eps);
                mean = v->mean[o];
                beta = vec(v->bb, v->bb_kind, m, o, sc->o, 0.0);
            }
            for (int oy = 0; oy < oh_n; oy++)
                for (int ox = 0; ox < ow_n; ox++) {
                    double acc = 0.0, abs_acc = 0.0;
                    for (int c = 0; c < sc->c; c++)
                        for (int ky = 0; ky < sc->k; ky++) {
                            const int iy = oy * sc->s - sc->p + ky;
                            if (iy < 0 || iy >= sc->h) continue;
                            for (int kx = 0; kx < sc->k; kx++) {
                                const int ix = ox * sc->s - sc->p + kx;
                                if (ix < 0 || ix >= sc->w) continue;
                                const double a = v->in_scale ? v->in_scale[(size_t)m * sc->c + c] : 1.0;
                                const double t = x[((size_t)(n * sc->c + c) * sc->h + iy) * sc->w + ix] * a *
                                                 w[((size_t)(o * sc->c + c) * sc->k + ky) * sc->k + kx];
                                acc += t;
                                abs_acc += fabs(t);
                            }
                        }
                    const double z = acc * g + h;
                    double out = sc->bn ? (z - mean) * k + beta : z;
                    if (sc->relu && out < 0.0) out = 0.0;
                    const size_t i = ((size_t)(n * sc->o + o) * oh_n + oy) * ow_n + ox;
                    y[i] = out;
                    mag[i] = (abs_acc * fabs(g) + fabs(h) + fabs(mean)) * fabs(k) + fabs(beta);
                }
        }
}

/* The stage's reference: unpooled_ref, then each pooling window's maximum (and the
 * magnitude of the element that won it). */
static void stage_ref(const stage_case *sc, const double *x, const double *w, const host_vectors *v, double *y,
                      double *mag)
{
    if (!sc->pool_k) {
        unpooled_ref(sc, x, w, v, y, mag);
        return;
    }
    const int ch = conv_h(sc), cw = conv_w(sc), ph = out_h(sc), pw = out_w(sc);
    const size_t full = (size_t)sc->n * sc->o * ch * cw;
    double *yf = malloc(full * sizeof *yf), *mf = malloc(full * sizeof *mf);
    unpooled_ref(sc, x, w, v, yf, mf);
    for (int plane = 0; plane < sc->n * sc->o; plane++)
        for (int py = 0; py < ph; py++)
            for (int px = 0; px < pw; px++) {
                size_t best = 0;
                int first = 1;
                for (int ky = 0; ky < sc->pool_k; ky++)
                    for (int kx = 0; kx < sc->pool_k; kx++) {
                        const size_t j = ((size_t)plane * ch + py * sc->pool_s + ky) * cw + px * sc->pool_s + kx;
                        if (first || yf[j] > yf[best]) best = j;
                        first = 0;
                    }
                const size_t i = ((size_t)plane * ph + py) * pw + px;
                y[i] = yf[best];
                mag[i] = mf[best];
            }
    free(yf);
    free(mf);
}

/* Elements where |got - ref| exceeds 1e-5 of the terms' magnitude (NaN counts). */
static size_t mismatches(const float *got, const double *ref, const double *mag, size_t n, int report)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - ref[i]);
        if (!(err <= 1e-5 * mag[i] + 1e-7)) {
            if (report && bad < 5) print_error("y[%zu]: got %.9g, want %.9g (error %.3g)\n", i, got[i], ref[i], err);
            bad++;
        }
    }
    return bad;
}

/* A device vector of `kind` (NULL for NONE) with host values in *host (double). */
static p7_tensor *make_vector(const stage_case *sc, int kind, uint64_t seed, float lo, float hi, double **host)
{
    *host = NULL;
    if (kind == NONE) return NULL;
    const size_t n = (size_t)(kind == MEMBER ? sc->members : 1) * (size_t)sc->o;
    float *f = malloc(n * sizeof *f);
    p7_test_fill_uniform(f, n, seed, lo, hi);
    const int64_t shape2[2] = {sc->members, sc->o}, shape1[1] = {sc->o};
    p7_tensor *t = kind == MEMBER ? p7_test_view(device, 2, shape2, sc->offset, f)
                                  : p7_test_view(device, 1, shape1, sc->offset, f);
    *host = p7_test_to_double(f, n);
    free(f);
    return t;
}

static void run_case(const stage_case *sc)
{
    const int oh = out_h(sc), ow = out_w(sc);
    const int64_t xs[4] = {sc->n, sc->c, sc->h, sc->w}, ws[4] = {sc->o, sc->c, sc->k, sc->k};
    const int64_t ys[4] = {sc->n, sc->o, oh, ow}, cs[1] = {sc->o};
    const size_t nx = (size_t)sc->n * sc->c * sc->h * sc->w, nw = (size_t)sc->o * sc->c * sc->k * sc->k;
    const size_t ny = (size_t)sc->n * sc->o * oh * ow;
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w);
    p7_test_fill_uniform(x, nx, 21 + (uint64_t)sc->k, -1.0f, 1.0f);
    p7_test_fill_uniform(w, nw, 22 + (uint64_t)sc->s, -1.0f, 1.0f);
    p7_tensor *tx = p7_test_view(device, 4, xs, sc->offset, x), *tw = p7_test_view(device, 4, ws, sc->offset, w);
    p7_tensor *ty = p7_test_view(device, 4, ys, sc->offset, NULL);

    host_vectors hv = {.scale_kind = sc->scale, .shift_kind = sc->shift, .eps = 1e-5};
    p7_conv_output_stage stage = {.members = sc->members, .relu = sc->relu, .bn_eps = 1e-5f,
                                  .pool_k = sc->pool_k, .pool_s = sc->pool_s};
    p7_tensor *tscale = make_vector(sc, sc->scale, 31, -1.5f, 1.5f, &hv.scale);
    p7_tensor *tin = NULL;
    if (sc->in_scale) {
        /* [M, C_in]: built as the [M, O] vectors are, with C_in in O's place */
        stage_case in_shape = *sc;
        in_shape.o = sc->c;
        tin = make_vector(&in_shape, MEMBER, 37, -1.5f, 1.5f, &hv.in_scale);
    }
    stage.in_scale = tin;
    p7_tensor *tshift = make_vector(sc, sc->shift, 32, -1.0f, 1.0f, &hv.shift);
    p7_tensor *tmean = NULL, *tvar = NULL, *tbw = NULL, *tbb = NULL;
    if (sc->bn) {
        /* trained-looking statistics: nonzero means, variances away from 1 */
        tmean = make_vector(sc, SHARED, 33, -2.0f, 2.0f, &hv.mean);
        tvar = make_vector(sc, SHARED, 34, 0.05f, 4.0f, &hv.var);
        tbw = make_vector(sc, sc->bn_weight, 35, -2.0f, 2.0f, &hv.bw);
        tbb = make_vector(sc, sc->bn_bias, 36, -1.0f, 1.0f, &hv.bb);
        hv.bw_kind = sc->bn_weight;
        hv.bb_kind = sc->bn_bias;
    }
    stage.scale = tscale;
    stage.shift = tshift;
    stage.bn_mean = tmean;
    stage.bn_var = tvar;
    stage.bn_weight = tbw;
    stage.bn_bias = tbb;
    P7_ASSERT_OK(p7_conv2d_forward_stage(tx, tw, sc->s, sc->p, &stage, ty));
    float *y = p7_test_download(ty);

    double *xd = p7_test_to_double(x, nx), *wd = p7_test_to_double(w, nw);
    double *yref = malloc(ny * sizeof *yref), *mag = malloc(ny * sizeof *mag);
    stage_ref(sc, xd, wd, &hv, yref, mag);
    size_t positive = 0;
    for (size_t i = 0; i < ny; i++) positive += yref[i] > 0.0;
    assert_true(positive > 0 && positive < ny); /* the ReLU or the signs are really exercised */
    assert_int_equal(mismatches(y, yref, mag, ny, 1), 0);

    /* The comparison can fail: a reference whose statistics differ from the device's by
     * 1e-3 (a wrong scale) or whose ReLU is dropped must be told apart. */
    if (sc->bn) {
        for (int o = 0; o < sc->o; o++) hv.var[o] *= 1.001;
        stage_ref(sc, xd, wd, &hv, yref, mag);
        assert_true(mismatches(y, yref, mag, ny, 0) > 0);
    } else if (hv.scale) {
        hv.scale[0] *= 1.001;
        stage_ref(sc, xd, wd, &hv, yref, mag);
        assert_true(mismatches(y, yref, mag, ny, 0) > 0);
    }
    if (sc->relu) {
        stage_case plain = *sc;
        plain.relu = 0;
        stage_ref(&plain, xd, wd, &hv, yref, mag);
        assert_true(mismatches(y, yref, mag, ny, 0) > 0);
    }

    free(x), free(w), free(y), free(xd), free(wd), free(yref), free(mag);
    double *hs[] = {hv.in_scale, hv.scale, hv.shift, hv.mean, hv.var, hv.bw, hv.bb};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) free(hs[i]);
    p7_tensor *ts[] = {tx, tw, ty, tin, tscale, tshift, tmean, tvar, tbw, tbb};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) p7_tensor_release(ts[i]);
    (void)cs;
}

static void test_plain_bias_batchnorm_relu(void **state)
{
    (void)state;
    /* VGG's shape: a stride-1 "same" conv (packed im2col), bias, BatchNorm, ReLU */
    const stage_case sc = {.n = 2, .c = 5, .h = 8, .w = 8, .o = 7, .k = 3, .s = 1, .p = 1, .members = 1,
                           .shift = SHARED, .bn = 1, .bn_weight = SHARED, .bn_bias = SHARED, .relu = 1,
                           .offset = 3};
    run_case(&sc);
}

static void test_batchensemble_members(void **state)
{
    (void)state;
    /* BatchEnsemble: per-member scale (gamma) and shift (bias), per-member BatchNorm affine
     * over shared statistics, 3 members of 2 images */
    const stage_case sc = {.n = 6, .c = 4, .h = 4, .w = 4, .o = 6, .k = 3, .s = 1, .p = 1, .members = 3,
                           .scale = MEMBER, .shift = MEMBER, .bn = 1, .bn_weight = MEMBER, .bn_bias = MEMBER,
                           .relu = 1, .offset = 5};
    run_case(&sc);
    /* with the input scale (alpha): in the packed "same" im2col on a 16-pixel plane; on
     * 2x2 planes, where a run of 16 pixels spans 4 images of 2 members; and as a pass
     * of its own before the general im2col (stride 2) */
    stage_case alpha = sc;
    alpha.in_scale = MEMBER;
    run_case(&alpha);
    const stage_case small = {.n = 8, .c = 3, .h = 2, .w = 2, .o = 4, .k = 3, .s = 1, .p = 1, .members = 4,
                              .in_scale = MEMBER, .scale = MEMBER, .shift = MEMBER, .bn = 1,
                              .bn_weight = MEMBER, .bn_bias = MEMBER, .relu = 1, .offset = 2};
    run_case(&small);
    const stage_case strided = {.n = 4, .c = 3, .h = 7, .w = 7, .o = 4, .k = 3, .s = 2, .p = 0, .members = 2,
                                .in_scale = MEMBER, .scale = MEMBER, .shift = MEMBER, .relu = 1};
    run_case(&strided);
}

static void test_without_batchnorm(void **state)
{
    (void)state;
    /* conv -> ReLU (shift only), and a BatchEnsemble conv without BatchNorm or ReLU */
    const stage_case relu_only = {.n = 3, .c = 3, .h = 7, .w = 5, .o = 4, .k = 3, .s = 2, .p = 0, .members = 1,
                                  .shift = SHARED, .relu = 1};
    run_case(&relu_only);
    const stage_case be = {.n = 4, .c = 3, .h = 6, .w = 6, .o = 5, .k = 3, .s = 1, .p = 1, .members = 2,
                           .scale = MEMBER, .shift = MEMBER, .offset = 1};
    run_case(&be);
}

static void test_batchnorm_variants(void **state)
{
    (void)state;
    /* affine-free BatchNorm (no weight, no bias) after a bias-free conv, general im2col
     * (stride 2, 5x5 kernel); a shared BatchNorm after per-member vectors */
    const stage_case bare = {.n = 2, .c = 3, .h = 9, .w = 9, .o = 5, .k = 5, .s = 2, .p = 2, .members = 1,
                             .bn = 1, .relu = 1, .offset = 2};
    run_case(&bare);
    const stage_case mixed = {.n = 4, .c = 2, .h = 4, .w = 4, .o = 3, .k = 3, .s = 1, .p = 1, .members = 2,
                              .scale = MEMBER, .shift = SHARED, .bn = 1, .bn_weight = SHARED, .bn_bias = MEMBER};
    run_case(&mixed);
}

static void test_pooling(void **state)
{
    (void)state;
    /* VGG's 2x2 / 2 pooling after BatchNorm and ReLU, per member (rows of 4); an overlapping 3 / 2
     * pooling on an odd plane without ReLU (negative values win windows too) */
    const stage_case vgg = {.n = 4, .c = 3, .h = 8, .w = 8, .o = 5, .k = 3, .s = 1, .p = 1, .members = 2,
                            .scale = MEMBER, .shift = MEMBER, .bn = 1, .bn_weight = MEMBER, .bn_bias = MEMBER,
                            .relu = 1, .pool_k = 2, .pool_s = 2, .offset = 3};
    run_case(&vgg);
    /* pooled rows of 8 and 16 (the vector path), one of them without ReLU */
    const stage_case wide = {.n = 2, .c = 2, .h = 16, .w = 32, .o = 3, .k = 3, .s = 1, .p = 1, .members = 1,
                             .shift = SHARED, .bn = 1, .bn_weight = SHARED, .bn_bias = SHARED, .relu = 1,
                             .pool_k = 2, .pool_s = 2, .offset = 1};
    run_case(&wide);
    const stage_case wide_linear = {.n = 2, .c = 2, .h = 16, .w = 16, .o = 3, .k = 3, .s = 1, .p = 1,
                                    .members = 2, .scale = MEMBER, .shift = MEMBER, .pool_k = 2, .pool_s = 2};
    run_case(&wide_linear);
    const stage_case odd = {.n = 2, .c = 2, .h = 9, .w = 7, .o = 3, .k = 3, .s = 1, .p = 1, .members = 1,
                            .shift = SHARED, .bn = 1, .bn_weight = SHARED, .bn_bias = SHARED, .pool_k = 3,
                            .pool_s = 2};
    run_case(&odd);
}

/* A single network's stage in chunks of images (a device with a small conv2d scratch cap):
 * 5 images of 16x32 at 18 * 512 floats each past 18 * 32 of slack, in chunks of 2, 2 and 1. */
static void test_chunked_batches(void **state)
{
    (void)state;
    p7_device *whole = device;
    const p7_device_options o = {.conv_scratch_floats = 20000};
    device = p7_test_open_device(&o);
    const stage_case pooled = {.n = 5, .c = 2, .h = 16, .w = 32, .o = 3, .k = 3, .s = 1, .p = 1, .members = 1,
                               .shift = SHARED, .bn = 1, .bn_weight = SHARED, .bn_bias = SHARED, .relu = 1,
                               .pool_k = 2, .pool_s = 2, .offset = 1};
    run_case(&pooled);
    const stage_case plain = {.n = 5, .c = 2, .h = 16, .w = 32, .o = 3, .k = 3, .s = 1, .p = 1, .members = 1,
                              .scale = SHARED, .shift = SHARED, .offset = 2};
    run_case(&plain);
    p7_device_close(device);
    device = whole;
}

/* Shapes that take Winograd (3x3 "same", 16 channels each way with conv_winograd = 2): the stage writes T from
 * Winograd's output transform, with the input scaled per member first where there is an
 * input scale, on 8x8 and 4x4 planes. Each on a fresh device, so no earlier test has grown
 * the workspaces already (an im2col stage once sized its column matrix from Winograd's
 * smaller plan and failed here). The same cases with Winograd off take im2col. */
static void test_winograd_shapes(void **state)
{
    (void)state;
    p7_device *shared = device;
    const p7_device_options any = {.conv_winograd = 2};
    device = p7_test_open_device(&any);
    const stage_case single = {.n = 4, .c = 16, .h = 8, .w = 8, .o = 16, .k = 3, .s = 1, .p = 1, .members = 1,
                               .shift = SHARED, .bn = 1, .bn_weight = SHARED, .bn_bias = SHARED, .relu = 1,
                               .offset = 1};
    run_case(&single);
    p7_device_close(device);
    device = p7_test_open_device(&any);
    const stage_case be = {.n = 4, .c = 16, .h = 4, .w = 4, .o = 16, .k = 3, .s = 1, .p = 1, .members = 2,
                           .in_scale = MEMBER, .scale = MEMBER, .shift = MEMBER, .bn = 1, .bn_weight = MEMBER,
                           .bn_bias = MEMBER, .relu = 1, .pool_k = 2, .pool_s = 2};
    run_case(&be);
    p7_device_close(device);
    const p7_device_options off = {.conv_winograd = -1};
    device = p7_test_open_device(&off);
    run_case(&single);
    run_case(&be);
    p7_device_close(device);
    device = shared;
}

static void test_shape_errors(void **state)
{
    (void)state;
    const int64_t xs[4] = {4, 2, 4, 4}, ws[4] = {3, 2, 3, 3}, ys[4] = {4, 3, 4, 4}, bad[1] = {5}, c3[1] = {3};
    p7_tensor *x = p7_test_tensor(device, 4, xs, NULL), *w = p7_test_tensor(device, 4, ws, NULL);
    p7_tensor *y = p7_test_tensor(device, 4, ys, NULL), *v5 = p7_test_tensor(device, 1, bad, NULL);
    p7_tensor *v3 = p7_test_tensor(device, 1, c3, NULL);
    p7_conv_output_stage stage = {.members = 3, .relu = 1};
    assert_int_equal(p7_conv2d_forward_stage(x, w, 1, 1, &stage, y), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "3 members do not divide the 4 images"));
    stage.members = 2;
    stage.shift = v5;
    assert_int_equal(p7_conv2d_forward_stage(x, w, 1, 1, &stage, y), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "shift [5]"));
    stage.shift = v3;
    stage.bn_mean = v5;
    stage.bn_var = v5;
    assert_int_equal(p7_conv2d_forward_stage(x, w, 1, 1, &stage, y), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "running statistics must have 3 elements"));
    stage.bn_var = NULL;
    assert_int_equal(p7_conv2d_forward_stage(x, w, 1, 1, &stage, y), P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_conv2d_forward_stage(x, w, 1, 1, NULL, y), P7_ERROR_INVALID_ARGUMENT);
    stage = (p7_conv_output_stage){.members = 2, .in_scale = v3};
    assert_int_equal(p7_conv2d_forward_stage(x, w, 1, 1, &stage, y), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "input scale [3] must be [2, 2]"));
    /* pooling makes the output [4, 3, 2, 2]: the unpooled y no longer fits */
    stage = (p7_conv_output_stage){.members = 1, .pool_k = 2, .pool_s = 2};
    assert_int_equal(p7_conv2d_forward_stage(x, w, 1, 1, &stage, y), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "does not match [4, 3, 2, 2]"));
    stage.pool_k = 5;
    assert_int_equal(p7_conv2d_forward_stage(x, w, 1, 1, &stage, y), P7_ERROR_INVALID_ARGUMENT);
    p7_tensor *ts[] = {x, w, y, v5, v3};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) p7_tensor_release(ts[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_bias_batchnorm_relu),
        cmocka_unit_test(test_batchensemble_members),
        cmocka_unit_test(test_without_batchnorm),
        cmocka_unit_test(test_batchnorm_variants),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_chunked_batches),
        cmocka_unit_test(test_winograd_shapes),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
