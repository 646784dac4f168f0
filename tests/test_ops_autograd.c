/* Autograd: gradient accumulation under parameter sharing, BatchEnsemble layers
 * against their definition, graph lifetime and no-grad mode. The ops' own math is
 * checked against finite differences in tests/test_ops.c and tests/test_ops_*.c; here the question is
 * whether the tape routes and sums gradients right. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/autograd_internal.h"
#include "ops/op_kernels.h"
#include "p7_test_support.h"

P7_TEST_FILE_DEVICE

static p7_tensor *tensor_from(int ndim, const int64_t *shape, const float *values, int requires_grad)
{
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, ndim, shape, &t));
    P7_ASSERT_OK(p7_tensor_upload(t, values, p7_tensor_numel(t)));
    if (requires_grad) P7_ASSERT_OK(p7_tensor_set_requires_grad(t, 1));
    return t;
}

static void assert_close(const float *a, const float *b, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double scale = 1.0 + fabs((double)b[i]);
        if (!(fabs((double)a[i] - (double)b[i]) <= tol * scale))
            fail_msg("%s[%zu]: %.9g vs %.9g", what, i, a[i], b[i]);
    }
}

/* y = sum(relu(conv(relu(conv(relu(conv(x, w)), w)), w)) * r): one 4->4 conv used three
 * times. Its gradient must equal the sum of the gradients of three separate copies. */
static void run_three_convs(p7_tensor *x, p7_tensor *w1, p7_tensor *w2, p7_tensor *w3, p7_tensor *r, p7_tape *tape)
{
    p7_tensor *h = p7_tensor_retain(x), *t, *loss;
    p7_tensor *ws[3] = {w1, w2, w3};
    for (int i = 0; i < 3; i++) {
        P7_ASSERT_OK(p7_conv2d(tape, h, ws[i], NULL, 1, 1, &t));
        p7_tensor_release(h);
        P7_ASSERT_OK(p7_relu(tape, t, &h));
        p7_tensor_release(t);
    }
    P7_ASSERT_OK(p7_mul(tape, h, r, &t));
    p7_tensor_release(h);
    P7_ASSERT_OK(p7_sum(tape, t, &loss));
    p7_tensor_release(t);
    P7_ASSERT_OK(p7_tape_backward(tape, loss));
    assert_int_equal(p7_tape_node_count(tape), 0); /* the graph is freed */
    p7_tensor_release(loss);
}

static void test_shared_conv_sums_contributions(void **state)
{
    (void)state;
    const int64_t xs[4] = {2, 4, 6, 6}, ws[4] = {4, 4, 3, 3};
    float xv[288], wv[144], rv[288];
    p7_test_fill_uniform(xv, 288, 1, -1.0f, 1.0f);
    p7_test_fill_uniform(wv, 144, 2, -0.4f, 0.4f);
    p7_test_fill_uniform(rv, 288, 3, -1.0f, 1.0f);
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    p7_tensor *x = tensor_from(4, xs, xv, 1), *r = tensor_from(4, xs, rv, 0);

    p7_tensor *w = tensor_from(4, ws, wv, 1);
    run_three_convs(x, w, w, w, r, tape);
    float *shared = p7_test_download(p7_tensor_grad(w)), *dx_shared = p7_test_download(p7_tensor_grad(x));

    p7_tensor *c1 = tensor_from(4, ws, wv, 1), *c2 = tensor_from(4, ws, wv, 1), *c3 = tensor_from(4, ws, wv, 1);
    p7_tensor_zero_grad(x);
    run_three_convs(x, c1, c2, c3, r, tape);
    float *g1 = p7_test_download(p7_tensor_grad(c1)), *g2 = p7_test_download(p7_tensor_grad(c2)), *g3 = p7_test_download(p7_tensor_grad(c3));
    float sum[144];
    for (int i = 0; i < 144; i++) sum[i] = g1[i] + g2[i] + g3[i];
    assert_close(shared, sum, 144, 1e-5, "shared conv gradient");
    float *dx_copies = p7_test_download(p7_tensor_grad(x));
    assert_close(dx_shared, dx_copies, 288, 1e-6, "input gradient");
    /* each use contributes: no single copy's gradient equals the total */
    double diff = 0;
    for (int i = 0; i < 144; i++) diff += fabs(shared[i] - g1[i]);
    assert_true(diff > 1e-3);

    /* gradients accumulate across backward passes until zero_grad */
    run_three_convs(x, w, w, w, r, tape);
    float *twice = p7_test_download(p7_tensor_grad(w));
    for (int i = 0; i < 144; i++) sum[i] = 2.0f * shared[i];
    assert_close(twice, sum, 144, 1e-5, "accumulated gradient");
    p7_tensor_zero_grad(w);
    assert_null(p7_tensor_grad(w));

    free(shared); free(dx_shared); free(dx_copies); free(g1); free(g2); free(g3); free(twice);
    p7_tensor *all[] = {x, r, w, c1, c2, c3};
    for (int i = 0; i < 6; i++) p7_tensor_release(all[i]);
    p7_tape_destroy(tape);
}

/* relu in place: the same values and gradients as p7_relu on a graph where the input is an
 * intermediate (a = x * r, loss = sum(relu(a) * q)), checked against the host; a's storage
 * holds relu(a) afterwards, and a parameter (a leaf that requires gradients) is refused. */
static void test_relu_inplace(void **state)
{
    (void)state;
    const int64_t s[2] = {4, 5};
    enum { N = 20 };
    float xv[N], rv[N], qv[N];
    p7_test_fill_uniform(xv, N, 31, -1.0f, 1.0f);
    p7_test_fill_uniform(rv, N, 32, 0.5f, 1.5f);
    p7_test_fill_uniform(qv, N, 33, -1.0f, 1.0f);
    for (int i = 0; i < N; i++)
        if (fabsf(xv[i]) < 0.05f) xv[i] = 0.1f; /* keep away from relu's kink */
    float grads[2][N], outs[2][N];
    for (int inplace = 0; inplace < 2; inplace++) {
        p7_tensor *x = tensor_from(2, s, xv, 1), *r = tensor_from(2, s, rv, 0), *q = tensor_from(2, s, qv, 0);
        p7_tensor *a, *y, *yq, *loss;
        p7_tape *tape;
        P7_ASSERT_OK(p7_tape_create(device, &tape));
        P7_ASSERT_OK(p7_mul(tape, x, r, &a));
        P7_ASSERT_OK(inplace ? p7_relu_inplace(tape, a, &y) : p7_relu(tape, a, &y));
        P7_ASSERT_OK(p7_mul(tape, y, q, &yq));
        P7_ASSERT_OK(p7_sum(tape, yq, &loss));
        P7_ASSERT_OK(p7_tensor_download(y, outs[inplace], N));
        float av[N];
        P7_ASSERT_OK(p7_tensor_download(a, av, N));
        for (int i = 0; i < N; i++) {
            const float want = fmaxf(xv[i] * rv[i], 0.0f);
            assert_true(outs[inplace][i] == want);
            assert_true(av[i] == (inplace ? want : xv[i] * rv[i])); /* overwritten only in place */
        }
        P7_ASSERT_OK(p7_tape_backward(tape, loss));
        P7_ASSERT_OK(p7_tensor_download(p7_tensor_grad(x), grads[inplace], N));
        for (int i = 0; i < N; i++) {
            const double want = xv[i] * rv[i] > 0 ? (double)rv[i] * qv[i] : 0.0;
            assert_true(fabs(grads[inplace][i] - want) <= 1e-6 * (1.0 + fabs(want)));
        }
        p7_tensor *all[] = {x, r, q, a, y, yq, loss};
        for (int i = 0; i < 7; i++) p7_tensor_release(all[i]);
        p7_tape_destroy(tape);
    }
    assert_memory_equal(grads[0], grads[1], sizeof grads[0]);
    p7_tensor *w = tensor_from(2, s, xv, 1), *y = NULL;
    assert_int_equal(p7_relu_inplace(NULL, w, &y), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "parameter"));
    assert_null(y);
    p7_tensor_release(w);
}

static void test_no_grad_and_errors(void **state)
{
    (void)state;
    const int64_t s[2] = {3, 4};
    float v[12];
    p7_test_fill_uniform(v, 12, 4, -1.0f, 1.0f);
    p7_tensor *a = tensor_from(2, s, v, 1), *y, *loss;
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    p7_tape_set_enabled(tape, 0);
    P7_ASSERT_OK(p7_relu(tape, a, &y));
    P7_ASSERT_OK(p7_sum(tape, y, &loss));
    assert_int_equal(p7_tape_node_count(tape), 0);
    assert_int_equal(p7_tape_backward(tape, loss), P7_ERROR_STATE);
    assert_non_null(strstr(p7_last_error(), "not computed by ops recorded"));
    p7_tensor_release(y);
    p7_tensor_release(loss);
    p7_tape_set_enabled(tape, 1);
    P7_ASSERT_OK(p7_relu(tape, a, &y));
    assert_int_equal(p7_tape_node_count(tape), 1);
    assert_int_equal(p7_tape_uses(tape, a), 1);
    assert_int_equal(p7_tape_backward(tape, y), P7_ERROR_INVALID_SHAPE); /* 12 elements, not a scalar */
    p7_tape_clear(tape);
    assert_int_equal(p7_tape_node_count(tape), 0);
    assert_int_equal(p7_tape_uses(tape, a), 0);
    p7_tensor_release(y);
    p7_tensor_release(a);
    p7_tape_destroy(tape);
}

/* Recording that runs out of host memory leaves the tape as it was: the inputs keep
 * their reference counts and use counts, and clearing the tape afterwards releases
 * only what earlier records retained. Both of the tape's allocations are made to fail:
 * the node array and the leaf list. */
static void test_record_out_of_memory_leaves_tape_intact(void **state)
{
    (void)state;
    const int64_t s[2] = {2, 3};
    float v[6];
    p7_test_fill_uniform(v, 6, 5, -1.0f, 1.0f);
    for (int failing = 1; failing <= 2; failing++) {
        p7_tensor *a = tensor_from(2, s, v, 1), *b = tensor_from(2, s, v, 1), *y = (p7_tensor *)0x1;
        p7_tape *tape;
        P7_ASSERT_OK(p7_tape_create(device, &tape));
        const int refs_a = a->refs, refs_b = b->refs;
        p7_tape_fail_allocation_after(failing); /* 1: the node array, 2: the leaf list */
        assert_int_equal(p7_add(tape, a, b, &y), P7_ERROR_OUT_OF_MEMORY);
        p7_tape_fail_allocation_after(0);
        assert_null(y);
        assert_int_equal(p7_tape_node_count(tape), 0);
        assert_int_equal(p7_tape_uses(tape, a), 0);
        assert_int_equal(p7_tape_uses(tape, b), 0);
        assert_int_equal(a->refs, refs_a);
        assert_int_equal(b->refs, refs_b);
        assert_non_null(strstr(p7_last_error(), "recording add"));
        /* the tape still works, and clearing it balances every retain */
        P7_ASSERT_OK(p7_add(tape, a, b, &y));
        assert_int_equal(p7_tape_node_count(tape), 1);
        assert_int_equal(p7_tape_uses(tape, a), 1);
        p7_tape_clear(tape);
        assert_int_equal(a->refs, refs_a);
        assert_int_equal(b->refs, refs_b);
        assert_int_equal(y->refs, 1);
        p7_tensor_release(y);
        p7_tape_destroy(tape);
        p7_tensor_release(a);
        p7_tensor_release(b);
    }
}

/* BatchEnsemble conv of M members against M plain convs with the fast weights
 * W_m[o, i] = W[o, i] * gamma[m, o] * alpha[m, i] and bias_m, on each member's rows. */
static void test_be_conv_equals_separate_members(void **state)
{
    (void)state;
    const int M = 4, B = 2, C = 3, O = 5, H = 6;
    const int64_t xs[4] = {B, C, H, H}, ws[4] = {O, C, 3, 3}, as[2] = {M, C}, gs[2] = {M, O};
    float xv[B * C * H * H], wv[O * C * 9], av[M * C], gv[M * O], bv[M * O];
    p7_test_fill_uniform(xv, sizeof xv / 4, 5, -1.0f, 1.0f);
    p7_test_fill_uniform(wv, sizeof wv / 4, 6, -0.5f, 0.5f);
    p7_test_fill_uniform(av, sizeof av / 4, 7, -1.5f, 1.5f);
    p7_test_fill_uniform(gv, sizeof gv / 4, 8, -1.5f, 1.5f);
    p7_test_fill_uniform(bv, sizeof bv / 4, 9, -0.3f, 0.3f);
    p7_tensor *x = tensor_from(4, xs, xv, 0), *w = tensor_from(4, ws, wv, 1), *alpha = tensor_from(2, as, av, 1),
              *gamma = tensor_from(2, gs, gv, 1), *bias = tensor_from(2, gs, bv, 1);

    /* BE path: tile, scale inputs, shared conv, scale outputs, per-member bias */
    p7_tensor *xt, *h1, *h2, *h3, *y;
    P7_ASSERT_OK(p7_tile_members(NULL, x, M, &xt));
    P7_ASSERT_OK(p7_channel_mul(NULL, xt, alpha, M, &h1));
    P7_ASSERT_OK(p7_conv2d(NULL, h1, w, NULL, 1, 1, &h2));
    P7_ASSERT_OK(p7_channel_mul(NULL, h2, gamma, M, &h3));
    P7_ASSERT_OK(p7_channel_add(NULL, h3, bias, M, &y));
    float *be = p7_test_download(y);

    const int64_t bs1[1] = {O};
    for (int m = 0; m < M; m++) {
        float wm[O * C * 9];
        for (int o = 0; o < O; o++)
            for (int i = 0; i < C; i++)
                for (int k = 0; k < 9; k++) wm[(o * C + i) * 9 + k] = wv[(o * C + i) * 9 + k] * gv[m * O + o] * av[m * C + i];
        p7_tensor *wt = tensor_from(4, ws, wm, 0), *bt = tensor_from(1, bs1, bv + m * O, 0), *ym;
        P7_ASSERT_OK(p7_conv2d(NULL, x, wt, bt, 1, 1, &ym));
        float *plain = p7_test_download(ym);
        assert_close(be + (size_t)m * B * O * H * H, plain, (size_t)B * O * H * H, 1e-5, "BE member output");
        free(plain);
        p7_tensor_release(wt);
        p7_tensor_release(bt);
        p7_tensor_release(ym);
    }
    free(be);
    p7_tensor *all[] = {x, w, alpha, gamma, bias, xt, h1, h2, h3, y};
    for (int i = 0; i < 10; i++) p7_tensor_release(all[i]);
}

/* A model's BatchEnsemble conv layer with M = 1 and alpha = gamma = +1 is the plain
 * conv layer: same outputs and same weight gradients. */
static void test_be_m1_equals_plain(void **state)
{
    (void)state;
    p7_model *be, *plain;
    P7_ASSERT_OK(p7_model_create(device, 1, 7, &be));
    P7_ASSERT_OK(p7_model_create(device, 1, 7, &plain));
    int id;
    p7_layer_config c = {.kind = P7_LAYER_BE_CONV2D, .in = 3, .out = 4, .kernel = 3, .stride = 1, .pad = 1,
                         .has_alpha = 1, .has_gamma = 1, .alpha_init = 1.0f, .gamma_init = 1.0f};
    P7_ASSERT_OK(p7_model_add_layer(be, "conv", &c, &id));
    P7_ASSERT_OK(p7_model_add_step(be, P7_STEP_LAYER, id, 0, 0));
    c.kind = P7_LAYER_CONV2D;
    c.bias = 1;
    P7_ASSERT_OK(p7_model_add_layer(plain, "conv", &c, &id));
    P7_ASSERT_OK(p7_model_add_step(plain, P7_STEP_LAYER, id, 0, 0));
    /* the same initial weight and bias by construction: streams follow the names, and the
     * BE per-member bias draws as the plain bias does */
    const char *name;
    p7_tensor *wb = p7_model_param(be, 0, &name), *wp = p7_model_param(plain, 0, NULL);
    assert_string_equal(name, "conv.weight");
    float *wv = p7_test_download(wb), *wpv = p7_test_download(wp);
    assert_memory_equal(wv, wpv, 108 * sizeof(float));
    float *bb = p7_test_download(p7_model_param(be, 3, &name)), *bp = p7_test_download(p7_model_param(plain, 1, NULL));
    assert_string_equal(name, "conv.bias");
    assert_memory_equal(bb, bp, 4 * sizeof(float));
    free(wpv);
    free(bb);
    free(bp);
    float *alpha = p7_test_download(p7_model_param(be, 1, NULL));
    for (int i = 0; i < 3; i++) assert_true(alpha[i] == 1.0f);

    const int64_t xs[4] = {2, 3, 5, 5};
    float xv[150];
    p7_test_fill_uniform(xv, 150, 10, -1.0f, 1.0f);
    p7_tensor *x = tensor_from(4, xs, xv, 0);
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    float *outs[2], *grads[2];
    p7_model *models[2] = {be, plain};
    for (int k = 0; k < 2; k++) {
        p7_tensor *y, *loss;
        P7_ASSERT_OK(p7_model_forward(models[k], tape, x, 1, &y));
        P7_ASSERT_OK(p7_mean(tape, y, &loss));
        P7_ASSERT_OK(p7_tape_backward(tape, loss));
        outs[k] = p7_test_download(y);
        grads[k] = p7_test_download(p7_tensor_grad(p7_model_param(models[k], 0, NULL)));
        p7_tensor_release(y);
        p7_tensor_release(loss);
    }
    assert_close(outs[0], outs[1], 100, 1e-6, "output");
    assert_close(grads[0], grads[1], 108, 1e-6, "weight gradient");
    for (int k = 0; k < 2; k++) { free(outs[k]); free(grads[k]); }
    free(wv);
    free(alpha);
    p7_tensor_release(x);
    p7_tape_destroy(tape);
    p7_model_destroy(be);
    p7_model_destroy(plain);
}

/* The ReLU kernels take 16 floats per work-item and the ragged end one at a time: on
 * views at offsets that are not multiples of 16, with 5 whole vectors and 3 left over, in
 * both gradient modes (= and +=), against the host; floats outside the views stay. */
static void test_relu_kernels_on_views(void **state)
{
    (void)state;
    enum { POOL = 400, N = 83 };
    float init[POOL], out[POOL];
    p7_test_fill_uniform(init, POOL, 41, -1.0f, 1.0f);
    const int64_t all[1] = {POOL}, n[1] = {N};
    for (int acc = 0; acc < 2; acc++) {
        p7_tensor *pool = tensor_from(1, all, init, 0), *x, *y, *dy, *dx;
        P7_ASSERT_OK(p7_tensor_view(pool, 3, 1, n, &x));
        P7_ASSERT_OK(p7_tensor_view(pool, 101, 1, n, &y));
        P7_ASSERT_OK(p7_tensor_view(pool, 197, 1, n, &dy));
        P7_ASSERT_OK(p7_tensor_view(pool, 290, 1, n, &dx));
        P7_ASSERT_OK(p7_relu_forward(x, y));
        P7_ASSERT_OK(p7_relu_backward(y, dy, dx, acc));
        P7_ASSERT_OK(p7_tensor_download(pool, out, POOL));
        float want[POOL];
        memcpy(want, init, sizeof want);
        for (int i = 0; i < N; i++) want[101 + i] = fmaxf(init[3 + i], 0.0f);
        for (int i = 0; i < N; i++) {
            const float g = want[101 + i] > 0.0f ? init[197 + i] : 0.0f;
            want[290 + i] = acc ? init[290 + i] + g : g;
        }
        for (int i = 0; i < POOL; i++)
            if (out[i] != want[i]) fail_msg("acc %d: pool[%d] = %.9g, expected %.9g", acc, i, out[i], want[i]);
        p7_tensor *ts[] = {pool, x, y, dy, dx};
        for (int i = 0; i < 5; i++) p7_tensor_release(ts[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_conv_sums_contributions),
        cmocka_unit_test(test_no_grad_and_errors),
        cmocka_unit_test(test_relu_inplace),
        cmocka_unit_test(test_relu_kernels_on_views),
        cmocka_unit_test(test_record_out_of_memory_leaves_tape_intact),
        cmocka_unit_test(test_be_conv_equals_separate_members),
        cmocka_unit_test(test_be_m1_equals_plain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
