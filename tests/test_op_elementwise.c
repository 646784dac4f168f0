/* The elementwise ops and the BatchEnsemble plumbing (relu, add, mul, per-(member,
 * channel) scale and shift, member tiling and mean, reshape), through the public op
 * API on a tape: forwards against a float64 host reference, every input's gradient
 * against central finite differences of L = sum(r * op(inputs)) computed on the host
 * in double precision, NaN-free outputs, and gradient accumulation on reuse. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/op_kernels.h"
#include "p7_test_support.h"

static p7_device *device;
static int setup(void **state) { (void)state; device = p7_test_open_device(NULL); return 0; }
static int teardown(void **state) { (void)state; p7_device_close(device); return 0; }

enum { OP_RELU, OP_ADD, OP_MUL, OP_CHANNEL_MUL, OP_CHANNEL_ADD, OP_TILE, OP_MEMBER_MEAN, OP_RESHAPE };

typedef struct problem {
    int op, members;
    int ndim_a;
    int64_t shape_a[4];
    int ndim_b; /* 0: unary */
    int64_t shape_b[4];
} problem;

static size_t count(int ndim, const int64_t *s)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)s[i];
    return n;
}

/* Host reference in double: y from a (and b). Returns the output size. */
static size_t host_forward(const problem *p, const double *a, const double *b, double *y)
{
    size_t na = count(p->ndim_a, p->shape_a);
    size_t rows = (size_t)p->shape_a[0], ch = p->ndim_a > 1 ? (size_t)p->shape_a[1] : 1;
    size_t hw = na / (rows * ch);
    switch (p->op) {
    case OP_RELU: for (size_t i = 0; i < na; i++) y[i] = a[i] > 0 ? a[i] : 0; return na;
    case OP_ADD: for (size_t i = 0; i < na; i++) y[i] = a[i] + b[i]; return na;
    case OP_MUL: for (size_t i = 0; i < na; i++) y[i] = a[i] * b[i]; return na;
    case OP_CHANNEL_MUL:
    case OP_CHANNEL_ADD:
        for (size_t i = 0; i < na; i++) {
            size_t plane = i / hw, c = plane % ch, r = plane / ch, m = r / (rows / (size_t)p->members);
            double v = b[m * ch + c];
            y[i] = p->op == OP_CHANNEL_MUL ? a[i] * v : a[i] + v;
        }
        return na;
    case OP_TILE:
        for (int m = 0; m < p->members; m++) memcpy(y + (size_t)m * na, a, na * sizeof *y);
        return na * (size_t)p->members;
    case OP_MEMBER_MEAN: {
        size_t per = na / (size_t)p->members;
        for (size_t i = 0; i < per; i++) {
            double s = 0;
            for (int m = 0; m < p->members; m++) s += a[(size_t)m * per + i];
            y[i] = s / p->members;
        }
        return per;
    }
    case OP_RESHAPE: memcpy(y, a, na * sizeof *y); return na;
    }
    return 0;
}

static p7_status device_forward(const problem *p, p7_tape *tape, p7_tensor *a, p7_tensor *b, p7_tensor **y)
{
    switch (p->op) {
    case OP_RELU: return p7_relu(tape, a, y);
    case OP_ADD: return p7_add(tape, a, b, y);
    case OP_MUL: return p7_mul(tape, a, b, y);
    case OP_CHANNEL_MUL: return p7_channel_mul(tape, a, b, p->members, y);
    case OP_CHANNEL_ADD: return p7_channel_add(tape, a, b, p->members, y);
    case OP_TILE: return p7_tile_members(tape, a, p->members, y);
    case OP_MEMBER_MEAN: return p7_member_mean(tape, a, p->members, y);
    case OP_RESHAPE: return p7_flatten(tape, a, y);
    }
    return P7_ERROR_INVALID_ARGUMENT;
}

static double objective(const problem *p, const double *a, const double *b, const double *r, double *scratch)
{
    size_t n = host_forward(p, a, b, scratch);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += r[i] * scratch[i];
    return s;
}

static p7_tensor *make(int ndim, const int64_t *shape, const float *v)
{
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, ndim, shape, &t));
    P7_ASSERT_OK(p7_tensor_upload(t, v, p7_tensor_numel(t)));
    P7_ASSERT_OK(p7_tensor_set_requires_grad(t, 1));
    return t;
}

static void check_problem(const problem *p, uint64_t seed)
{
    size_t na = count(p->ndim_a, p->shape_a), nb = p->ndim_b ? count(p->ndim_b, p->shape_b) : 0;
    size_t ny_max = na * (size_t)(p->members > 1 ? p->members : 1);
    float *af = malloc(na * sizeof *af), *bf = malloc((nb + 1) * sizeof *bf), *rf = malloc(ny_max * sizeof *rf);
    double *a = malloc(na * sizeof *a), *b = calloc(nb + 1, sizeof *b), *r = malloc(ny_max * sizeof *r);
    double *y = malloc(ny_max * sizeof *y), *scratch = malloc(ny_max * sizeof *scratch);
    p7_test_fill_uniform(af, na, seed, -1.0f, 1.0f);
    p7_test_fill_uniform(bf, nb + 1, seed + 1, -1.5f, 1.5f);
    p7_test_fill_uniform(rf, ny_max, seed + 2, -1.0f, 1.0f);
    /* keep relu inputs away from the kink, where finite differences are meaningless */
    if (p->op == OP_RELU)
        for (size_t i = 0; i < na; i++) af[i] = af[i] >= 0 ? af[i] + 0.05f : af[i] - 0.05f;
    for (size_t i = 0; i < na; i++) a[i] = af[i];
    for (size_t i = 0; i < nb; i++) b[i] = bf[i];
    size_t ny = host_forward(p, a, b, y);
    for (size_t i = 0; i < ny; i++) r[i] = rf[i];

    p7_tensor *ta = make(p->ndim_a, p->shape_a, af), *tb = nb ? make(p->ndim_b, p->shape_b, bf) : NULL;
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    p7_tensor *ty, *tr, *prod, *loss;
    P7_ASSERT_OK(device_forward(p, tape, ta, tb, &ty));
    assert_int_equal(p7_tensor_numel(ty), ny);
    float *yd = malloc(ny * sizeof *yd);
    P7_ASSERT_OK(p7_tensor_download(ty, yd, ny));
    for (size_t i = 0; i < ny; i++)
        if (!(fabs(yd[i] - y[i]) <= 1e-6 * (1 + fabs(y[i])))) fail_msg("op %d forward[%zu]: %g vs %g", p->op, i, yd[i], y[i]);

    /* L = sum(r * y) through the tape */
    P7_ASSERT_OK(p7_tensor_create(device, p7_tensor_ndim(ty), p7_tensor_shape(ty), &tr));
    P7_ASSERT_OK(p7_tensor_upload(tr, rf, ny));
    P7_ASSERT_OK(p7_mul(tape, ty, tr, &prod));
    P7_ASSERT_OK(p7_sum(tape, prod, &loss));
    P7_ASSERT_OK(p7_tape_backward(tape, loss));

    p7_tensor *inputs[2] = {ta, tb};
    double *host[2] = {a, b};
    size_t sizes[2] = {na, nb};
    for (int k = 0; k < (nb ? 2 : 1); k++) {
        float *g = malloc(sizes[k] * sizeof *g);
        assert_non_null(p7_tensor_grad(inputs[k]));
        P7_ASSERT_OK(p7_tensor_download(p7_tensor_grad(inputs[k]), g, sizes[k]));
        double worst = 0, scale = 0;
        for (size_t i = 0; i < sizes[k]; i++) {
            const double h = 1e-4, keep = host[k][i];
            host[k][i] = keep + h;
            double up = objective(p, a, b, r, scratch);
            host[k][i] = keep - h;
            double down = objective(p, a, b, r, scratch);
            host[k][i] = keep;
            double fd = (up - down) / (2 * h);
            if (!(fabs(g[i] - fd) <= worst)) worst = fabs(g[i] - fd);
            if (fabs(fd) > scale) scale = fabs(fd);
        }
        if (!(worst <= 1e-4 * (scale > 1 ? scale : 1)))
            fail_msg("op %d: gradient of input %d differs from finite differences by %.3e (scale %.3e)", p->op, k,
                     worst, scale);
        free(g);
    }
    p7_tensor *all[] = {ta, tb, ty, tr, prod, loss};
    for (int i = 0; i < 6; i++) p7_tensor_release(all[i]);
    p7_tape_destroy(tape);
    free(af); free(bf); free(rf); free(a); free(b); free(r); free(y); free(scratch); free(yd);
}

static void test_unary_and_binary(void **state)
{
    (void)state;
    const problem ps[] = {
        {OP_RELU, 1, 4, {2, 3, 4, 5}, 0, {0}},
        {OP_ADD, 1, 2, {7, 9}, 2, {7, 9}},
        {OP_MUL, 1, 4, {2, 3, 2, 3}, 4, {2, 3, 2, 3}},
        {OP_RESHAPE, 1, 4, {3, 2, 2, 2}, 0, {0}},
    };
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) check_problem(&ps[i], 10 + i);
}

static void test_batchensemble_plumbing(void **state)
{
    (void)state;
    const problem ps[] = {
        {OP_CHANNEL_MUL, 3, 4, {6, 4, 3, 2}, 2, {3, 4}},  /* 3 members, 2 rows each, 3x2 planes */
        {OP_CHANNEL_ADD, 2, 4, {4, 5, 2, 2}, 2, {2, 5}},
        {OP_CHANNEL_MUL, 4, 2, {8, 6}, 2, {4, 6}},        /* BE linear: [N, C], hw = 1 */
        {OP_CHANNEL_ADD, 1, 4, {3, 4, 2, 3}, 1, {4}},     /* plain per-channel bias */
        {OP_TILE, 3, 4, {2, 3, 2, 2}, 0, {0}},
        {OP_MEMBER_MEAN, 4, 2, {8, 5}, 0, {0}},
    };
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) check_problem(&ps[i], 40 + i);
}

static void assert_all_finite(const p7_tensor *t, const char *what)
{
    float *v = p7_test_download(t);
    for (size_t i = 0; i < p7_tensor_numel(t); i++)
        if (!(v[i] == v[i])) fail_msg("%s: element %zu was not written (NaN prefill survived)", what, i);
    free(v);
}

/* Every kernel-level forward and backward writes every element of its output when
 * asked to overwrite (accumulate = 0): outputs start as NaN, inputs are finite. */
static void test_outputs_fully_written(void **state)
{
    (void)state;
    const int M = 2;
    const int64_t xs[4] = {4, 3, 5, 5}, vs[2] = {M, 3}, ts[4] = {8, 3, 5, 5};
    float xv[300], vv[6];
    p7_test_fill_uniform(xv, 300, 70, -1.0f, 1.0f);
    p7_test_fill_uniform(vv, 6, 71, -1.0f, 1.0f);
    p7_tensor *x = p7_test_tensor(device, 4, xs, xv), *v = p7_test_tensor(device, 2, vs, vv), *out;

    out = p7_test_tensor(device, 4, xs, NULL);
    P7_ASSERT_OK(p7_relu_forward(x, out));
    assert_all_finite(out, "relu forward");
    p7_tensor *dx = p7_test_tensor(device, 4, xs, NULL);
    P7_ASSERT_OK(p7_relu_backward(out, x, dx, 0));
    assert_all_finite(dx, "relu backward");
    p7_tensor_release(dx);
    p7_tensor_release(out);

    out = p7_test_tensor(device, 4, xs, NULL);
    P7_ASSERT_OK(p7_add_forward(x, x, out));
    assert_all_finite(out, "add");
    P7_ASSERT_OK(p7_tensor_fill(out, NAN));
    P7_ASSERT_OK(p7_mul_forward(x, x, out));
    assert_all_finite(out, "mul");
    P7_ASSERT_OK(p7_tensor_fill(out, NAN));
    P7_ASSERT_OK(p7_axpy(2.0f, x, out, 0));
    assert_all_finite(out, "axpy");
    P7_ASSERT_OK(p7_tensor_fill(out, NAN));
    P7_ASSERT_OK(p7_channel_mul_forward(x, v, M, out));
    assert_all_finite(out, "channel_mul");
    P7_ASSERT_OK(p7_tensor_fill(out, NAN));
    P7_ASSERT_OK(p7_channel_add_forward(x, v, M, out));
    assert_all_finite(out, "channel_add");
    P7_ASSERT_OK(p7_tensor_fill(out, NAN));
    P7_ASSERT_OK(p7_channel_mul_backward_x(x, v, M, out, 0));
    assert_all_finite(out, "channel_mul backward x");
    p7_tensor *dv = p7_test_tensor(device, 2, vs, NULL);
    P7_ASSERT_OK(p7_channel_reduce_backward(x, x, M, dv, 0));
    assert_all_finite(dv, "channel backward v");
    p7_tensor_release(dv);

    p7_tensor *tiled = p7_test_tensor(device, 4, ts, NULL);
    P7_ASSERT_OK(p7_tile_members_forward(x, M, tiled));
    assert_all_finite(tiled, "tile_members");
    P7_ASSERT_OK(p7_tensor_fill(out, NAN));
    P7_ASSERT_OK(p7_tile_members_backward(tiled, M, out, 0));
    assert_all_finite(out, "tile_members backward");
    P7_ASSERT_OK(p7_tensor_fill(out, NAN));
    P7_ASSERT_OK(p7_member_mean_forward(tiled, M, out));
    assert_all_finite(out, "member_mean");
    P7_ASSERT_OK(p7_tensor_fill(tiled, NAN));
    P7_ASSERT_OK(p7_member_mean_backward(x, M, tiled, 0));
    assert_all_finite(tiled, "member_mean backward");
    p7_tensor_release(tiled);
    p7_tensor_release(out);
    p7_tensor_release(x);
    p7_tensor_release(v);
}

static void test_shape_errors(void **state)
{
    (void)state;
    const int64_t s1[2] = {6, 4}, s2[2] = {3, 4}, s3[2] = {2, 5};
    p7_tensor *x, *v, *w, *y = (p7_tensor *)0x1;
    P7_ASSERT_OK(p7_tensor_create(device, 2, s1, &x));
    P7_ASSERT_OK(p7_tensor_create(device, 2, s2, &v));
    P7_ASSERT_OK(p7_tensor_create(device, 2, s3, &w));
    assert_int_equal(p7_channel_mul(NULL, x, w, 2, &y), P7_ERROR_INVALID_SHAPE); /* v must be [2, 4] */
    assert_null(y);
    assert_int_equal(p7_channel_mul(NULL, x, v, 4, &y), P7_ERROR_INVALID_SHAPE); /* 4 does not divide 6 */
    assert_non_null(strstr(p7_last_error(), "4 members"));
    assert_int_equal(p7_add(NULL, x, w, &y), P7_ERROR_INVALID_SHAPE);
    assert_int_equal(p7_member_mean(NULL, x, 4, &y), P7_ERROR_INVALID_SHAPE);
    p7_tensor_release(x);
    p7_tensor_release(v);
    p7_tensor_release(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_and_binary),
        cmocka_unit_test(test_batchensemble_plumbing),
        cmocka_unit_test(test_outputs_fully_written),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
