/* Every op of P7_OP_LIST through the op-test harness (tests/support/p7_op_harness.h):
 * one row per case, each with its float64 reference; the harness checks forwards,
 * gradients against finite differences, NaN-prefilled outputs, the accumulate path
 * and shape errors. One cmocka test per op, generated from the op list, fails when
 * its op has no row. Kernel-level paths without an op-level equivalent (views at
 * offsets, NULL gradient outputs, packed im2col, running statistics, walk and
 * precision variants) stay in the test_ops_*.c files. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_op_harness.h"
#include "p7_test_support.h"

#define SHAPE1(a) {1, {a}}
#define SHAPE2(a, b) {2, {a, b}}
#define SHAPE3(a, b, c) {3, {a, b, c}}
#define SHAPE4(a, b, c, d) {4, {a, b, c, d}}

static size_t numel_of(const p7_oph_row *row, int input) { return p7_oph_numel(&row->in[input]); }

/* ---- float64 references ---- */

static void ref_conv2d(const p7_oph_row *row, const double *const *in, double *y)
{
    const int64_t *xs = row->in[0].dims, *ws = row->in[1].dims, *ys = row->out.dims;
    const int s = row->ints[0], p = row->ints[1];
    const double *x = in[0], *w = in[1], *b = in[2];
    for (int64_t n = 0; n < ys[0]; n++)
        for (int64_t o = 0; o < ys[1]; o++)
            for (int64_t oh = 0; oh < ys[2]; oh++)
                for (int64_t ow = 0; ow < ys[3]; ow++) {
                    double acc = b ? b[o] : 0.0;
                    for (int64_t c = 0; c < xs[1]; c++)
                        for (int64_t ky = 0; ky < ws[2]; ky++) {
                            const int64_t ih = oh * s - p + ky;
                            if (ih < 0 || ih >= xs[2]) continue;
                            for (int64_t kx = 0; kx < ws[3]; kx++) {
                                const int64_t iw = ow * s - p + kx;
                                if (iw < 0 || iw >= xs[3]) continue;
                                acc += x[((n * xs[1] + c) * xs[2] + ih) * xs[3] + iw] *
                                       w[((o * ws[1] + c) * ws[2] + ky) * ws[3] + kx];
                            }
                        }
                    y[((n * ys[1] + o) * ys[2] + oh) * ys[3] + ow] = acc;
                }
}

static void ref_linear(const p7_oph_row *row, const double *const *in, double *y)
{
    const int64_t rows = row->in[0].dims[0], inner = row->in[0].dims[1], outs = row->in[1].dims[0];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < outs; o++) {
            double acc = in[2] ? in[2][o] : 0.0;
            for (int64_t i = 0; i < inner; i++) acc += in[0][r * inner + i] * in[1][o * inner + i];
            y[r * outs + o] = acc;
        }
}

static void ref_relu(const p7_oph_row *row, const double *const *in, double *y)
{
    for (size_t i = 0; i < numel_of(row, 0); i++) y[i] = in[0][i] > 0 ? in[0][i] : 0.0;
}

static void ref_maxpool2d(const p7_oph_row *row, const double *const *in, double *y)
{
    const int64_t *xs = row->in[0].dims, *ys = row->out.dims;
    const int k = row->ints[0], s = row->ints[1];
    for (int64_t nc = 0; nc < xs[0] * xs[1]; nc++)
        for (int64_t oh = 0; oh < ys[2]; oh++)
            for (int64_t ow = 0; ow < ys[3]; ow++) {
                double best = -INFINITY;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) best = fmax(best, in[0][(nc * xs[2] + oh * s + ky) * xs[3] + ow * s + kx]);
                y[(nc * ys[2] + oh) * ys[3] + ow] = best;
            }
}

static void ref_copy(const p7_oph_row *row, const double *const *in, double *y)
{
    memcpy(y, in[0], numel_of(row, 0) * sizeof *y);
}

static void ref_add(const p7_oph_row *row, const double *const *in, double *y)
{
    for (size_t i = 0; i < numel_of(row, 0); i++) y[i] = in[0][i] + in[1][i];
}

static void ref_mul(const p7_oph_row *row, const double *const *in, double *y)
{
    for (size_t i = 0; i < numel_of(row, 0); i++) y[i] = in[0][i] * in[1][i];
}

/* y = x op v[member, channel]: rows are member-major, positions follow the channel. */
static void ref_channel(const p7_oph_row *row, const double *const *in, double *y, int is_mul)
{
    const size_t n = numel_of(row, 0), rows = (size_t)row->in[0].dims[0];
    const size_t ch = row->in[0].ndim > 1 ? (size_t)row->in[0].dims[1] : 1, hw = n / (rows * ch);
    const size_t rows_per_member = rows / (size_t)row->ints[0];
    for (size_t i = 0; i < n; i++) {
        const size_t plane = i / hw, c = plane % ch, m = plane / ch / rows_per_member;
        const double v = in[1][m * ch + c];
        y[i] = is_mul ? in[0][i] * v : in[0][i] + v;
    }
}

static void ref_channel_mul(const p7_oph_row *row, const double *const *in, double *y) { ref_channel(row, in, y, 1); }
static void ref_channel_add(const p7_oph_row *row, const double *const *in, double *y) { ref_channel(row, in, y, 0); }

static void ref_tile_members(const p7_oph_row *row, const double *const *in, double *y)
{
    const size_t n = numel_of(row, 0);
    for (int m = 0; m < row->ints[0]; m++) memcpy(y + (size_t)m * n, in[0], n * sizeof *y);
}

/* rows [ints[0], ints[0] + ints[1]) of input 0 */
static void ref_rows_slice(const p7_oph_row *row, const double *const *in, double *y)
{
    const size_t per_row = numel_of(row, 0) / (size_t)row->in[0].dims[0];
    memcpy(y, in[0] + (size_t)row->ints[0] * per_row, (size_t)row->ints[1] * per_row * sizeof *y);
}

/* the present inputs one after another */
static void ref_rows_concat(const p7_oph_row *row, const double *const *in, double *y)
{
    for (int i = 0; i < P7_OPH_MAX_INPUTS && row->in[i].ndim; i++) {
        memcpy(y, in[i], numel_of(row, i) * sizeof *y);
        y += numel_of(row, i);
    }
}

static void ref_member_mean(const p7_oph_row *row, const double *const *in, double *y)
{
    const size_t per = numel_of(row, 0) / (size_t)row->ints[0];
    for (size_t i = 0; i < per; i++) {
        double s = 0.0;
        for (int m = 0; m < row->ints[0]; m++) s += in[0][(size_t)m * per + i];
        y[i] = s / row->ints[0];
    }
}

static void host_softmax(const double *x, int64_t n, int64_t k, int log_out, double *y)
{
    for (int64_t r = 0; r < n; r++) {
        const double *xr = x + r * k;
        double m = -INFINITY, s = 0.0;
        for (int64_t j = 0; j < k; j++) m = fmax(m, xr[j]);
        for (int64_t j = 0; j < k; j++) s += exp(xr[j] - m);
        for (int64_t j = 0; j < k; j++) y[r * k + j] = log_out ? xr[j] - m - log(s) : exp(xr[j] - m) / s;
    }
}

static void ref_softmax(const p7_oph_row *row, const double *const *in, double *y)
{
    host_softmax(in[0], row->in[0].dims[0], row->in[0].dims[1], 0, y);
}

static void ref_log_softmax(const p7_oph_row *row, const double *const *in, double *y)
{
    host_softmax(in[0], row->in[0].dims[0], row->in[0].dims[1], 1, y);
}

static void ref_cross_entropy(const p7_oph_row *row, const double *const *in, double *y)
{
    const int64_t n = row->in[0].dims[0], k = row->in[0].dims[1];
    double *lp = malloc((size_t)(n * k) * sizeof *lp), l = 0.0;
    assert_non_null(lp);
    host_softmax(in[0], n, k, 1, lp);
    for (int64_t r = 0; r < n; r++) l -= lp[r * k + row->labels[r]];
    free(lp);
    y[0] = l / (double)n;
}

static void ref_sum(const p7_oph_row *row, const double *const *in, double *y)
{
    double s = 0.0;
    for (size_t i = 0; i < numel_of(row, 0); i++) s += in[0][i];
    y[0] = row->op == P7_OP_MEAN ? s / (double)numel_of(row, 0) : s;
}

/* Training normalises with the batch's mean and biased variance, evaluation with the
 * running statistics (inputs 3 and 4); weight and bias are [M, C] or absent. */
static void ref_batchnorm2d(const p7_oph_row *row, const double *const *in, double *y)
{
    const int64_t n = row->in[0].dims[0], c = row->in[0].dims[1];
    const int64_t hw = (int64_t)numel_of(row, 0) / (n * c), rows_per_member = n / row->ints[0];
    const double eps = row->floats[1];
    for (int64_t ch = 0; ch < c; ch++) {
        double mean = 0.0, var = 0.0;
        if (row->ints[1]) {
            for (int64_t r = 0; r < n; r++)
                for (int64_t p = 0; p < hw; p++) mean += in[0][(r * c + ch) * hw + p];
            mean /= (double)(n * hw);
            for (int64_t r = 0; r < n; r++)
                for (int64_t p = 0; p < hw; p++) {
                    const double d = in[0][(r * c + ch) * hw + p] - mean;
                    var += d * d;
                }
            var /= (double)(n * hw);
        } else {
            mean = in[3][ch];
            var = in[4][ch];
        }
        const double invstd = 1.0 / sqrt(var + eps);
        for (int64_t r = 0; r < n; r++) {
            const int64_t m = r / rows_per_member;
            const double w = in[1] ? in[1][m * c + ch] : 1.0, b = in[2] ? in[2][m * c + ch] : 0.0;
            for (int64_t p = 0; p < hw; p++) {
                const int64_t i = (r * c + ch) * hw + p;
                y[i] = (in[0][i] - mean) * invstd * w + b;
            }
        }
    }
}

/* ---- the p7 calls ---- */

static p7_status call_conv2d(const p7_oph_call *c, p7_tensor **y)
{
    return p7_conv2d(c->tape, c->in[0], c->in[1], c->in[2], c->ints[0], c->ints[1], y);
}
static p7_status call_linear(const p7_oph_call *c, p7_tensor **y) { return p7_linear(c->tape, c->in[0], c->in[1], c->in[2], y); }
static p7_status call_relu(const p7_oph_call *c, p7_tensor **y) { return p7_relu(c->tape, c->in[0], y); }
static p7_status call_maxpool2d(const p7_oph_call *c, p7_tensor **y)
{
    return p7_maxpool2d(c->tape, c->in[0], c->ints[0], c->ints[1], y);
}
static p7_status call_reshape(const p7_oph_call *c, p7_tensor **y)
{
    return p7_reshape(c->tape, c->in[0], c->row->out.ndim, c->row->out.dims, y);
}
static p7_status call_flatten(const p7_oph_call *c, p7_tensor **y) { return p7_flatten(c->tape, c->in[0], y); }
static p7_status call_add(const p7_oph_call *c, p7_tensor **y) { return p7_add(c->tape, c->in[0], c->in[1], y); }
static p7_status call_mul(const p7_oph_call *c, p7_tensor **y) { return p7_mul(c->tape, c->in[0], c->in[1], y); }
static p7_status call_channel_mul(const p7_oph_call *c, p7_tensor **y)
{
    return p7_channel_mul(c->tape, c->in[0], c->in[1], c->ints[0], y);
}
static p7_status call_channel_add(const p7_oph_call *c, p7_tensor **y)
{
    return p7_channel_add(c->tape, c->in[0], c->in[1], c->ints[0], y);
}
static p7_status call_tile_members(const p7_oph_call *c, p7_tensor **y)
{
    return p7_tile_members(c->tape, c->in[0], c->ints[0], y);
}
static p7_status call_rows_slice(const p7_oph_call *c, p7_tensor **y)
{
    return p7_rows_slice(c->tape, c->in[0], c->ints[0], c->ints[1], y);
}
static p7_status call_rows_concat(const p7_oph_call *c, p7_tensor **y)
{
    int n = 0;
    while (n < P7_OPH_MAX_INPUTS && c->in[n]) n++;
    return p7_rows_concat(c->tape, c->in, n, y);
}
static p7_status call_member_mean(const p7_oph_call *c, p7_tensor **y)
{
    return p7_member_mean(c->tape, c->in[0], c->ints[0], y);
}
static p7_status call_softmax(const p7_oph_call *c, p7_tensor **y) { return p7_softmax(c->tape, c->in[0], y); }
static p7_status call_log_softmax(const p7_oph_call *c, p7_tensor **y) { return p7_log_softmax(c->tape, c->in[0], y); }
static p7_status call_cross_entropy(const p7_oph_call *c, p7_tensor **y)
{
    return p7_cross_entropy(c->tape, c->in[0], c->labels, 0, y);
}
static p7_status call_sum(const p7_oph_call *c, p7_tensor **y) { return p7_sum(c->tape, c->in[0], y); }
static p7_status call_mean(const p7_oph_call *c, p7_tensor **y) { return p7_mean(c->tape, c->in[0], y); }
static p7_status call_batchnorm2d(const p7_oph_call *c, p7_tensor **y)
{
    return p7_batchnorm2d(c->tape, c->in[0], c->in[1], c->in[2], c->ints[0], c->in[3], c->in[4], c->ints[1],
                          c->row->floats[0], c->row->floats[1], y);
}

/* ---- input shaping ---- */

/* Finite differences across relu's kink are meaningless: keep inputs 0.05 away. */
static void away_from_zero(const p7_oph_row *row, int input, float *v, size_t n)
{
    (void)row, (void)input;
    for (size_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] + 0.05f : v[i] - 0.05f;
}

/* Distinct values 0.05 apart in a shuffled order, so no finite-difference step moves
 * a window's argmax. */
static void distinct_shuffled(const p7_oph_row *row, int input, float *v, size_t n)
{
    (void)row, (void)input;
    float *order = malloc(n * sizeof *order);
    assert_non_null(order);
    memcpy(order, v, n * sizeof *order); /* uniform in [0, 1) from the row's range */
    for (size_t i = 0; i < n; i++) v[i] = 0.05f * (float)i - 10.0f;
    for (size_t i = n; i > 1; i--) {
        const size_t j = (size_t)(order[i - 1] * (float)i) % i;
        const float t = v[i - 1];
        v[i - 1] = v[j], v[j] = t;
    }
    free(order);
}

/* Row 0 far from zero: exp would overflow without the max subtraction. */
static void first_row_at_500(const p7_oph_row *row, int input, float *v, size_t n)
{
    (void)input, (void)n;
    for (int64_t j = 0; j < row->in[0].dims[1]; j++) v[j] += 500.0f;
}

/* ---- the rows ---- */

/* Elementwise ops: a few float operations per element. */
#define ELEMENTWISE .forward_tol = 1e-6, .grad_tol = 1e-4, .fd_step = 1e-4, .lo = {-1.0f, -1.5f}, .hi = {1.0f, 1.5f}

#define CONV(n_, c_, h_, w_, o_, k_, s_, p_, bias, seed_, what)                                                   \
    {.op = P7_OP_CONV2D, .label = what, .in = {SHAPE4(n_, c_, h_, w_), SHAPE4(o_, c_, k_, k_), {bias, {o_}}},     \
     .grad_inputs = (bias) ? 7u : 3u, .ints = {s_, p_},                                                            \
     .out = SHAPE4(n_, o_, ((h_) + 2 * (p_) - (k_)) / (s_) + 1, ((w_) + 2 * (p_) - (k_)) / (s_) + 1),             \
     .reference = ref_conv2d, .call = call_conv2d, .fd_step = 1e-2, .forward_tol = 1e-5, .grad_tol = 2e-5,        \
     .seed = seed_}

#define LINEAR(n_, i_, o_, bias, seed_, what)                                                                     \
    {.op = P7_OP_LINEAR, .label = what, .in = {SHAPE2(n_, i_), SHAPE2(o_, i_), {bias, {o_}}},                     \
     .grad_inputs = (bias) ? 7u : 3u, .out = SHAPE2(n_, o_), .reference = ref_linear, .call = call_linear,        \
     .fd_step = 1e-2, .forward_tol = 2e-5, .grad_tol = 2e-5, .seed = seed_}

#define POOL(n_, c_, h_, w_, k_, s_, seed_, what)                                                                 \
    {.op = P7_OP_MAXPOOL2D, .label = what, .in = {SHAPE4(n_, c_, h_, w_)}, .grad_inputs = 1u, .lo = {0.0f},       \
     .hi = {1.0f}, .prepare = distinct_shuffled, .ints = {k_, s_},                                                 \
     .out = SHAPE4(n_, c_, ((h_) - (k_)) / (s_) + 1, ((w_) - (k_)) / (s_) + 1), .reference = ref_maxpool2d,       \
     .call = call_maxpool2d, .fd_step = 1e-3, .forward_tol = 0.0, .grad_tol = 1e-5, .seed = seed_}

/* Softmax-family gradients subtract terms of similar size: 1e-3 of the largest entry. */
#define SOFTMAX(id, n_, k_, range, seed_, what, ...)                                                                     \
    {.op = P7_OP_##id, .label = what, .in = {SHAPE2(n_, k_)}, .grad_inputs = 1u, .lo = {-(range)}, .hi = {range}, \
     .out = SHAPE2(n_, k_), .fd_step = 1e-5, .forward_tol = 1e-5, .grad_tol = 1e-3, .grad_normwise = 1,           \
     .seed = seed_, __VA_ARGS__}

/* x [n, c, 1, hw], weight/bias [m, c] when affine, running statistics [c]. */
#define BATCHNORM(n_, c_, hw_, m_, affine, training, seed_, what)                                                 \
    {.op = P7_OP_BATCHNORM2D, .label = what,                                                                       \
     .in = {SHAPE4(n_, c_, 1, hw_), {(affine) ? 2 : 0, {m_, c_}}, {(affine) ? 2 : 0, {m_, c_}}, SHAPE1(c_),         \
            SHAPE1(c_)},                                                                                           \
     .grad_inputs = (affine) ? 7u : 1u, .lo = {-2.0f, 0.5f, -0.5f, -0.3f, 0.5f}, .hi = {3.0f, 1.5f, 0.5f, 0.3f, 2.0f}, \
     .ints = {m_, training}, .floats = {0.1f, 1e-5f}, .out = SHAPE4(n_, c_, 1, hw_),                              \
     .reference = ref_batchnorm2d, .call = call_batchnorm2d, .fd_step = 1e-5, .forward_tol = 1e-5,                \
     .grad_tol = 1e-3, .grad_normwise = 1, .seed = seed_,                                                          \
     .bad = {{.in = {SHAPE4(4, 3, 2, 2), SHAPE2(2, 4)}, .has_ints = 1, .ints = {2, 1}, .expect = "[2, 4]"},         \
             {.in = {SHAPE4(4, 3, 2, 2)}, .has_ints = 1, .ints = {3, 1}},                                          \
             {.in = {SHAPE3(2, 3, 4)}, .has_ints = 1, .ints = {1, 1}}}}

static const int labels_5x10[5] = {3, 0, 7, 4, 1};    /* (r * 7 + 3) % 10 */
static const int labels_3x300[3] = {3, 10, 17};

static const p7_oph_row rows[] = {
    CONV(2, 3, 6, 7, 4, 3, 1, 1, 1, 1, "VGG's 3x3 s1 p1, non-square"),
    CONV(2, 3, 5, 5, 4, 3, 1, 0, 1, 2, "3x3 s1 p0"),
    CONV(2, 3, 7, 7, 4, 3, 2, 0, 0, 3, "no bias, s2"),
    CONV(2, 3, 6, 5, 4, 3, 2, 1, 1, 4, "s2 p1"),
    CONV(2, 3, 5, 6, 4, 1, 1, 0, 1, 5, "1x1"),
    CONV(2, 2, 6, 6, 3, 2, 2, 0, 1, 6, "even kernel"),
    CONV(1, 2, 5, 37, 3, 3, 1, 1, 1, 7, "rows longer than the vector and chunk widths"),
    CONV(2, 3, 4, 4, 4, 3, 1, 1, 1, 8, "narrow rows: the per-pixel col2im"),
    CONV(2, 3, 5, 3, 4, 3, 2, 1, 1, 9, "s2 p1, 5x3"),
    CONV(2, 2, 2, 2, 3, 3, 1, 1, 1, 10, "VGG's last layers: 2x2 planes"),
    CONV(4, 3, 2, 2, 5, 3, 1, 1, 1, 11, "2x2 planes, batch 4"),
    CONV(8, 2, 2, 4, 3, 3, 1, 1, 1, 12, "2x4 planes, batch 8"),
    CONV(16, 2, 1, 1, 3, 3, 1, 1, 0, 13, "1x1 planes, no bias"),
    CONV(32, 3, 1, 2, 3, 3, 1, 1, 1, 14, "1x2 planes, batch 32"),
    CONV(2, 2, 4, 8, 3, 3, 1, 1, 1, 15, "4x8 planes"),
    CONV(1, 3, 4, 4, 2, 1, 1, 0, 1, 16, "1x1, batch 1"),
    CONV(2, 2, 8, 2, 3, 5, 1, 2, 1, 17, "5x5 p2 on 8x2"),
    CONV(3, 5, 16, 16, 4, 3, 1, 1, 1, 18, "16x16 planes"),
    {.op = P7_OP_CONV2D, .label = "5x4x4x4 -> 6, with shape errors",
     .in = {SHAPE4(5, 4, 4, 4), SHAPE4(6, 4, 3, 3), SHAPE1(6)}, .grad_inputs = 7u, .ints = {1, 1},
     .out = SHAPE4(5, 6, 4, 4), .reference = ref_conv2d, .call = call_conv2d, .fd_step = 1e-2, .forward_tol = 1e-5,
     .grad_tol = 2e-5, .seed = 19,
     .bad = {{.in = {SHAPE4(2, 3, 2, 2), SHAPE4(4, 3, 3, 3)}, .has_ints = 1, .ints = {1, 0}, .expect = "does not fit"},
             {.in = {SHAPE3(3, 6, 6), SHAPE4(4, 3, 3, 3)}},
             {.in = {SHAPE4(2, 3, 6, 6), SHAPE4(4, 2, 3, 3)}},
             {.in = {SHAPE4(2, 3, 6, 6), SHAPE4(4, 3, 3, 3), SHAPE1(5)}}}},

    LINEAR(5, 7, 3, 1, 51, "5x7 -> 3"),
    LINEAR(4, 6, 5, 0, 52, "no bias"),
    LINEAR(1, 9, 2, 1, 53, "one row"),
    {.op = P7_OP_LINEAR, .label = "VGG11's classifier, 512 -> 10 at batch 16, with shape errors",
     .in = {SHAPE2(16, 512), SHAPE2(10, 512), SHAPE1(10)}, .grad_inputs = 7u, .out = SHAPE2(16, 10),
     .reference = ref_linear, .call = call_linear, .fd_step = 1e-2, .forward_tol = 2e-5, .grad_tol = 2e-5, .seed = 54,
     .bad = {{.in = {SHAPE2(4, 6), SHAPE2(3, 5)}},
             {.in = {SHAPE2(4, 6), SHAPE2(3, 6), SHAPE1(4)}},
             {.in = {SHAPE3(4, 6, 1), SHAPE2(3, 6)}}}},

    {.op = P7_OP_RELU, .label = "4-d", .in = {SHAPE4(2, 3, 4, 5)}, .grad_inputs = 1u, .prepare = away_from_zero,
     .out = SHAPE4(2, 3, 4, 5), .reference = ref_relu, .call = call_relu, ELEMENTWISE, .seed = 10},

    POOL(2, 3, 6, 8, 2, 2, 41, "VGG's 2x2 s2"),
    POOL(2, 2, 4, 32, 2, 2, 46, "2x2 s2 on planes 16k wide (per-row kernels)"),
    POOL(2, 3, 7, 5, 2, 2, 42, "odd planes: the last row and column are dropped"),
    POOL(2, 2, 7, 7, 3, 2, 43, "overlapping windows: pixels chosen twice"),
    POOL(1, 2, 5, 6, 3, 1, 44, "3x3 s1"),
    {.op = P7_OP_MAXPOOL2D, .label = "global, with shape errors", .in = {SHAPE4(1, 1, 4, 4)}, .grad_inputs = 1u,
     .lo = {0.0f}, .hi = {1.0f}, .prepare = distinct_shuffled, .ints = {4, 4}, .out = SHAPE4(1, 1, 1, 1),
     .reference = ref_maxpool2d, .call = call_maxpool2d, .fd_step = 1e-3, .forward_tol = 0.0, .grad_tol = 1e-5,
     .seed = 45,
     .bad = {{.in = {SHAPE4(1, 1, 3, 3)}, .expect = "at least 4x4"}, {.in = {SHAPE3(1, 8, 8)}}}},

    {.op = P7_OP_RESHAPE, .label = "flatten", .in = {SHAPE4(3, 2, 2, 2)}, .grad_inputs = 1u, .out = SHAPE2(3, 8),
     .reference = ref_copy, .call = call_flatten, ELEMENTWISE, .seed = 13},
    {.op = P7_OP_RESHAPE, .label = "[4, 6] -> [2, 3, 4], with shape errors", .in = {SHAPE2(4, 6)},
     .grad_inputs = 1u, .out = SHAPE3(2, 3, 4), .reference = ref_copy, .call = call_reshape, ELEMENTWISE,
     .seed = 14, .bad = {{.in = {SHAPE2(5, 5)}}}},

    {.op = P7_OP_ADD, .label = "2-d, with shape errors", .in = {SHAPE2(7, 9), SHAPE2(7, 9)}, .grad_inputs = 3u,
     .out = SHAPE2(7, 9), .reference = ref_add, .call = call_add, ELEMENTWISE, .seed = 11,
     /* same element count, other shape: no silent reinterpretation */
     .bad = {{.in = {SHAPE2(6, 4), SHAPE2(2, 5)}}, {.in = {SHAPE2(6, 4), SHAPE2(4, 6)}, .expect = "[4, 6]"}}},
    {.op = P7_OP_MUL, .label = "4-d, with shape errors", .in = {SHAPE4(2, 3, 2, 3), SHAPE4(2, 3, 2, 3)},
     .grad_inputs = 3u, .out = SHAPE4(2, 3, 2, 3), .reference = ref_mul, .call = call_mul, ELEMENTWISE, .seed = 12,
     .bad = {{.in = {SHAPE2(6, 4), SHAPE2(5, 5)}}, {.in = {SHAPE4(2, 3, 2, 3), SHAPE2(6, 6)}, .expect = "[6, 6]"}}},

    {.op = P7_OP_CHANNEL_MUL, .label = "3 members, 2 rows each, 3x2 planes, with shape errors",
     .in = {SHAPE4(6, 4, 3, 2), SHAPE2(3, 4)}, .grad_inputs = 3u, .ints = {3}, .out = SHAPE4(6, 4, 3, 2),
     .reference = ref_channel_mul, .call = call_channel_mul, ELEMENTWISE, .seed = 40,
     .bad = {{.in = {SHAPE2(6, 4), SHAPE2(2, 5)}, .has_ints = 1, .ints = {2}},
             {.in = {SHAPE2(6, 4), SHAPE2(3, 4)}, .has_ints = 1, .ints = {4}, .expect = "4 members"}}},
    {.op = P7_OP_CHANNEL_MUL, .label = "BatchEnsemble linear: [N, C], hw = 1", .in = {SHAPE2(8, 6), SHAPE2(4, 6)},
     .grad_inputs = 3u, .ints = {4}, .out = SHAPE2(8, 6), .reference = ref_channel_mul, .call = call_channel_mul,
     ELEMENTWISE, .seed = 42},
    {.op = P7_OP_CHANNEL_MUL, .label = "2 members, 5x7 planes (the planes kernels, hw >= 16)",
     .in = {SHAPE4(4, 3, 5, 7), SHAPE2(2, 3)}, .grad_inputs = 3u, .ints = {2}, .out = SHAPE4(4, 3, 5, 7),
     .reference = ref_channel_mul, .call = call_channel_mul, ELEMENTWISE, .seed = 45},
    {.op = P7_OP_CHANNEL_MUL, .label = "2 members, 20x20 planes (more than one work-group per plane)",
     .in = {SHAPE4(2, 2, 20, 20), SHAPE2(2, 2)}, .grad_inputs = 3u, .ints = {2}, .out = SHAPE4(2, 2, 20, 20),
     .reference = ref_channel_mul, .call = call_channel_mul, ELEMENTWISE, .seed = 46},
    {.op = P7_OP_CHANNEL_MUL, .label = "2 members, 16x32 planes (the bounds-free kernels, 2 work-groups per plane)",
     .in = {SHAPE4(2, 2, 16, 32), SHAPE2(2, 2)}, .grad_inputs = 3u, .ints = {2}, .out = SHAPE4(2, 2, 16, 32),
     .reference = ref_channel_mul, .call = call_channel_mul, ELEMENTWISE, .seed = 60},
    {.op = P7_OP_CHANNEL_ADD, .label = "2 members, 16x32 planes (the bounds-free kernel)",
     .in = {SHAPE4(2, 2, 16, 32), SHAPE2(2, 2)}, .grad_inputs = 3u, .ints = {2}, .out = SHAPE4(2, 2, 16, 32),
     .reference = ref_channel_add, .call = call_channel_add, ELEMENTWISE, .seed = 61},
    {.op = P7_OP_CHANNEL_ADD, .label = "2 members, 20x20 planes", .in = {SHAPE4(2, 2, 20, 20), SHAPE2(2, 2)},
     .grad_inputs = 3u, .ints = {2}, .out = SHAPE4(2, 2, 20, 20), .reference = ref_channel_add,
     .call = call_channel_add, ELEMENTWISE, .seed = 47},
    {.op = P7_OP_CHANNEL_ADD, .label = "2 members, 2x2 planes, with shape errors",
     .in = {SHAPE4(4, 5, 2, 2), SHAPE2(2, 5)}, .grad_inputs = 3u, .ints = {2}, .out = SHAPE4(4, 5, 2, 2),
     .reference = ref_channel_add, .call = call_channel_add, ELEMENTWISE, .seed = 41,
     .bad = {{.in = {SHAPE2(6, 4), SHAPE2(2, 5)}, .has_ints = 1, .ints = {2}}}},
    {.op = P7_OP_CHANNEL_ADD, .label = "plain per-channel bias", .in = {SHAPE4(3, 4, 2, 3), SHAPE1(4)},
     .grad_inputs = 3u, .ints = {1}, .out = SHAPE4(3, 4, 2, 3), .reference = ref_channel_add,
     .call = call_channel_add, ELEMENTWISE, .seed = 43},

    {.op = P7_OP_TILE_MEMBERS, .label = "3 members", .in = {SHAPE4(2, 3, 2, 2)}, .grad_inputs = 1u, .ints = {3},
     .out = SHAPE4(6, 3, 2, 2), .reference = ref_tile_members, .call = call_tile_members, ELEMENTWISE, .seed = 44},
    {.op = P7_OP_MEMBER_MEAN, .label = "4 members, with shape errors", .in = {SHAPE2(8, 5)}, .grad_inputs = 1u,
     .ints = {4}, .out = SHAPE2(2, 5), .reference = ref_member_mean, .call = call_member_mean, ELEMENTWISE,
     .seed = 45, .bad = {{.in = {SHAPE2(6, 4)}, .has_ints = 1, .ints = {4}}}},
    {.op = P7_OP_ROWS_SLICE, .label = "rows 1..3 of 5, with shape errors", .in = {SHAPE3(5, 3, 2)},
     .grad_inputs = 1u, .ints = {1, 3}, .out = SHAPE3(3, 3, 2), .reference = ref_rows_slice,
     .call = call_rows_slice, ELEMENTWISE, .seed = 46,
     .bad = {{.in = {SHAPE3(5, 3, 2)}, .has_ints = 1, .ints = {3, 3}, .expect = "[3, 6)"},
             {.in = {SHAPE2(4, 2)}, .has_ints = 1, .ints = {0, 0}}}},
    {.op = P7_OP_ROWS_SLICE, .label = "the last row", .in = {SHAPE2(4, 7)}, .grad_inputs = 1u, .ints = {3, 1},
     .out = SHAPE2(1, 7), .reference = ref_rows_slice, .call = call_rows_slice, ELEMENTWISE, .seed = 47},
    {.op = P7_OP_ROWS_CONCAT, .label = "three tensors of 2, 1 and 3 rows, with shape errors",
     .in = {SHAPE3(2, 3, 2), SHAPE3(1, 3, 2), SHAPE3(3, 3, 2)}, .grad_inputs = 7u, .out = SHAPE3(6, 3, 2),
     .reference = ref_rows_concat, .call = call_rows_concat, ELEMENTWISE, .seed = 48,
     .bad = {{.in = {SHAPE3(2, 3, 2), SHAPE3(1, 2, 2)}, .expect = "[1, 2, 2]"},
             {.in = {SHAPE3(2, 3, 2), SHAPE2(2, 3)}}}},
    {.op = P7_OP_ROWS_CONCAT, .label = "only the second input needs a gradient",
     .in = {SHAPE2(2, 5), SHAPE2(4, 5)}, .grad_inputs = 2u, .out = SHAPE2(6, 5), .reference = ref_rows_concat,
     .call = call_rows_concat, ELEMENTWISE, .seed = 49},

    SOFTMAX(SOFTMAX, 4, 6, 3.0f, 210, "4x6, with shape errors", .reference = ref_softmax, .call = call_softmax,
            .forward_floor = 1e-3, .bad = {{.in = {SHAPE3(2, 3, 4)}, .expect = "[2, 3, 4]"}}),
    SOFTMAX(SOFTMAX, 2, 150, 3.0f, 212, "rows longer than a work-group", .reference = ref_softmax, .call = call_softmax,
            .forward_floor = 1e-3),
    /* probabilities: relative to the row's largest, i.e. absolute on [0, 1] */
    SOFTMAX(SOFTMAX, 5, 7, 8.0f, 200, "row 0 at +500", .reference = ref_softmax, .call = call_softmax,
            .forward_floor = 1e-3, .prepare = first_row_at_500),
    SOFTMAX(SOFTMAX, 3, 1000, 8.0f, 201, "1000 classes, row 0 at +500", .reference = ref_softmax, .call = call_softmax,
            .forward_floor = 1e-3, .prepare = first_row_at_500),
    SOFTMAX(SOFTMAX, 2, 1, 8.0f, 202, "one class", .reference = ref_softmax, .call = call_softmax, .forward_floor = 1e-3,
            .prepare = first_row_at_500),
    SOFTMAX(LOG_SOFTMAX, 4, 6, 3.0f, 211, "4x6, with shape errors", .reference = ref_log_softmax,
            .call = call_log_softmax, .bad = {{.in = {SHAPE3(2, 3, 4)}, .expect = "[2, 3, 4]"}}),
    SOFTMAX(LOG_SOFTMAX, 2, 150, 3.0f, 213, "rows longer than a work-group", .reference = ref_log_softmax,
            .call = call_log_softmax),
    SOFTMAX(LOG_SOFTMAX, 5, 7, 8.0f, 203, "row 0 at +500", .reference = ref_log_softmax, .call = call_log_softmax,
            .prepare = first_row_at_500),
    SOFTMAX(LOG_SOFTMAX, 3, 1000, 8.0f, 204, "1000 classes, row 0 at +500", .reference = ref_log_softmax,
            .call = call_log_softmax, .prepare = first_row_at_500),
    SOFTMAX(LOG_SOFTMAX, 2, 1, 8.0f, 205, "one class", .reference = ref_log_softmax, .call = call_log_softmax,
            .prepare = first_row_at_500),

    {.op = P7_OP_CROSS_ENTROPY, .label = "5x10, with shape errors", .in = {SHAPE2(5, 10)}, .grad_inputs = 1u,
     .lo = {-4.0f}, .hi = {4.0f}, .labels = labels_5x10, .out = SHAPE1(1), .reference = ref_cross_entropy,
     .call = call_cross_entropy, .fd_step = 1e-5, .forward_tol = 1e-5, .grad_tol = 1e-3, .grad_normwise = 1,
     .seed = 220, .bad = {{.in = {SHAPE3(5, 2, 5)}}}},
    {.op = P7_OP_CROSS_ENTROPY, .label = "300 classes", .in = {SHAPE2(3, 300)}, .grad_inputs = 1u, .lo = {-4.0f},
     .hi = {4.0f}, .labels = labels_3x300, .out = SHAPE1(1), .reference = ref_cross_entropy,
     .call = call_cross_entropy, .fd_step = 1e-5, .forward_tol = 1e-5, .grad_tol = 1e-3, .grad_normwise = 1,
     .seed = 221},

    /* the gradient is a constant: 1e-3 of it per element, as the kernel test had */
    {.op = P7_OP_SUM, .label = "37 values", .in = {SHAPE2(37, 1)}, .grad_inputs = 1u, .lo = {-2.0f}, .hi = {2.0f},
     .out = SHAPE1(1), .reference = ref_sum, .call = call_sum, .fd_step = 1e-3, .forward_tol = 1e-6,
     .grad_tol = 1e-3, .grad_floor = 1e-12, .seed = 330},
    {.op = P7_OP_SUM, .label = "4-d", .in = {SHAPE4(2, 3, 4, 5)}, .grad_inputs = 1u, .out = SHAPE1(1),
     .reference = ref_sum, .call = call_sum, .fd_step = 1e-3, .forward_tol = 1e-6, .grad_tol = 1e-3,
     .grad_floor = 1e-12, .seed = 332},
    {.op = P7_OP_MEAN, .label = "37 values", .in = {SHAPE2(37, 1)}, .grad_inputs = 1u, .lo = {-2.0f}, .hi = {2.0f},
     .out = SHAPE1(1), .reference = ref_sum, .call = call_mean, .fd_step = 1e-3, .forward_tol = 1e-6,
     .grad_tol = 1e-3, .grad_floor = 1e-12, .seed = 331},

    BATCHNORM(4, 3, 9, 1, 1, 1, 11, "plain, training"),
    BATCHNORM(4, 3, 9, 1, 1, 0, 12, "plain, evaluation"),
    BATCHNORM(3, 2, 5, 1, 0, 1, 13, "affine=False, training"),
    BATCHNORM(3, 2, 5, 1, 0, 0, 14, "affine=False, evaluation"),
    BATCHNORM(6, 3, 4, 3, 1, 1, 15, "BatchEnsemble, 3 members, training"),
    BATCHNORM(4, 2, 1, 2, 1, 1, 16, "BatchEnsemble, [N, C] input, training"),
    BATCHNORM(4, 3, 4, 2, 1, 0, 17, "BatchEnsemble, 2 members, evaluation"),
};

static int setup(void **state)
{
    *state = p7_oph_open_device();
    return 0;
}

static int teardown(void **state)
{
    p7_device_close(*state);
    return 0;
}

/* One test per op of the list: adding an op without a row fails here. */
#define P7_OP_TEST(id, name) \
    static void test_##id(void **state) { p7_oph_run_op(*state, P7_OP_##id, rows, sizeof rows / sizeof *rows); }
P7_OP_LIST(P7_OP_TEST)
#undef P7_OP_TEST

int main(void)
{
    const struct CMUnitTest tests[] = {
#define P7_OP_UNIT_TEST(id, name) cmocka_unit_test(test_##id),
        P7_OP_LIST(P7_OP_UNIT_TEST)
#undef P7_OP_UNIT_TEST
    };
    _Static_assert(sizeof tests / sizeof *tests == P7_OP_COUNT, "one test per op of P7_OP_LIST");
    return cmocka_run_group_tests(tests, setup, teardown);
}
