/* Models: exact parameter counts (against the figures computed for the original
 * study in seed-study.md section 3), sharing counts, init rules, and the device RNG
 * against the host generator. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

P7_TEST_FILE_DEVICE

static uint64_t unique_params(p7_model *m)
{
    p7_param_counts c;
    P7_ASSERT_OK(p7_model_count_params(m, &c));
    assert_int_equal(c.used, c.unique); /* the zoo's networks use every parameter once */
    assert_int_equal(c.shared, 0);
    return c.unique;
}

static void test_simple_cnn_counts(void **state)
{
    (void)state;
    /* seed-study 3.1 and 3.3: 60,554 plain; 69,326 / 78,396 / 96,536 for M = 2 / 4 / 8 */
    const int members[4] = {1, 2, 4, 8};
    const uint64_t expected[4] = {60554, 69326, 78396, 96536};
    for (int i = 0; i < 4; i++) {
        p7_model *m;
        P7_ASSERT_OK(p7_model_simple_cnn(device, members[i], 10, 1.0f, 0.5f, 42, &m));
        assert_int_equal(unique_params(m), expected[i]);
        p7_model_destroy(m);
    }
}

static void test_vgg11_counts(void **state)
{
    (void)state;
    /* seed-study 3.5: ComplexCNN (no BN, Linear 512-512-10) has 9,488,266 parameters;
     * 3.6: its BatchEnsemble version with BN has 9,484,992 + 15,319 M. */
    p7_vgg_options o = {.batchnorm = 0, .members = 1, .classes = 10, .hidden = 512};
    p7_model *m;
    P7_ASSERT_OK(p7_model_vgg11(device, &o, 1, &m));
    assert_int_equal(unique_params(m), 9488266);
    p7_model_destroy(m);
    const int members[3] = {2, 4, 8};
    for (int i = 0; i < 3; i++) {
        o = (p7_vgg_options){.batchnorm = 1, .members = members[i], .classes = 10, .hidden = 512,
                             .init = P7_INIT_KAIMING_NORMAL_FAN_OUT, .alpha_init = 1.0f, .gamma_init = 0.5f};
        P7_ASSERT_OK(p7_model_vgg11(device, &o, 1, &m));
        assert_int_equal(unique_params(m), 9484992u + 15319u * (uint64_t)members[i]);
        p7_model_destroy(m);
    }
}

/* One conv layer applied three times, one applied once, one never: the counts and
 * the tape's observed uses agree. */
static void test_sharing_counts(void **state)
{
    (void)state;
    p7_model *m;
    P7_ASSERT_OK(p7_model_create(device, 1, 3, &m));
    int shared, once, unused;
    p7_layer_config c = {.kind = P7_LAYER_CONV2D, .in = 4, .out = 4, .kernel = 3, .stride = 1, .pad = 1, .bias = 1};
    P7_ASSERT_OK(p7_model_add_layer(m, "shared", &c, &shared));
    P7_ASSERT_OK(p7_model_add_layer(m, "once", &c, &once));
    P7_ASSERT_OK(p7_model_add_layer(m, "unused", &c, &unused));
    for (int i = 0; i < 3; i++) {
        P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, shared, 0, 0));
        P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    }
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, once, 0, 0));
    assert_int_equal(p7_model_add_step(m, P7_STEP_LAYER, 9, 0, 0), P7_ERROR_INVALID_ARGUMENT);
    p7_param_counts counts;
    P7_ASSERT_OK(p7_model_count_params(m, &counts));
    const uint64_t per_layer = 4 * 4 * 9 + 4;
    assert_int_equal(counts.unique, 3 * per_layer);
    assert_int_equal(counts.used, 2 * per_layer);
    assert_int_equal(counts.shared, per_layer);
    assert_int_equal(counts.tensors_shared, 2);

    const int64_t xs[4] = {2, 4, 5, 5};
    p7_tensor *x, *y;
    P7_ASSERT_OK(p7_tensor_create(device, 4, xs, &x));
    P7_ASSERT_OK(p7_tensor_fill(x, 0.5f));
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    P7_ASSERT_OK(p7_model_forward(m, tape, x, 1, &y));
    for (size_t i = 0; i < p7_model_param_count(m); i++) {
        const char *name;
        p7_tensor *p = p7_model_param(m, i, &name);
        unsigned expect = strncmp(name, "shared", 6) == 0 ? 3 : strncmp(name, "once", 4) == 0 ? 1 : 0;
        assert_int_equal(p7_tape_uses(tape, p), expect);
    }
    p7_tensor_release(x);
    p7_tensor_release(y);
    p7_tape_destroy(tape);
    p7_model_destroy(m);
}

static void test_device_rng_matches_host(void **state)
{
    (void)state;
    const size_t n = 1003; /* not a multiple of 4: the tail block */
    const int64_t s[1] = {(int64_t)n};
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, 1, s, &t));
    float *dev = malloc(n * sizeof *dev);
    p7_rng rng;

    P7_ASSERT_OK(p7_tensor_fill_uniform(t, 1234, 7, -2.0f, 3.0f));
    P7_ASSERT_OK(p7_tensor_download(t, dev, n));
    p7_rng_init(&rng, 1234, 7);
    for (size_t i = 0; i < n; i++) {
        float u = p7_rng_uniform(&rng);
        assert_true(dev[i] == -2.0f + 5.0f * u);
    }

    P7_ASSERT_OK(p7_tensor_fill_sign(t, 99, 3, 0.3f));
    P7_ASSERT_OK(p7_tensor_download(t, dev, n));
    p7_rng_init(&rng, 99, 3);
    size_t plus = 0;
    for (size_t i = 0; i < n; i++) {
        float expect = p7_rng_uniform(&rng) < 0.3f ? 1.0f : -1.0f;
        assert_true(dev[i] == expect);
        plus += dev[i] > 0;
    }
    assert_true(plus > 250 && plus < 360); /* ~30% of 1003 */

    P7_ASSERT_OK(p7_tensor_fill_normal(t, 5, 11, 1.0f, 0.5f));
    P7_ASSERT_OK(p7_tensor_download(t, dev, n));
    p7_rng_init(&rng, 5, 11);
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t w1 = p7_rng_u32(&rng), w2 = p7_rng_u32(&rng);
        double u1 = ((w1 >> 8) + 1.0) / 16777216.0, u2 = (w2 >> 8) / 16777216.0;
        double z = 1.0 + 0.5 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        assert_true(fabs(dev[i] - z) < 1e-5); /* same bits in; float log/cos out */
        mean += dev[i];
    }
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) var += (dev[i] - mean) * (dev[i] - mean);
    var /= (double)(n - 1);
    assert_true(fabs(mean - 1.0) < 0.05);
    assert_true(fabs(sqrt(var) - 0.5) < 0.05);
    /* element i is the same float whatever the count: the kernel's vector body and its
     * ragged end (16 floats a work-item) must do the same arithmetic */
    const size_t counts[] = {37, 16, 5};
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        const int64_t sc[1] = {(int64_t)counts[c]};
        p7_tensor *u;
        float head[37];
        P7_ASSERT_OK(p7_tensor_create(device, 1, sc, &u));
        P7_ASSERT_OK(p7_tensor_fill_normal(u, 5, 11, 1.0f, 0.5f));
        P7_ASSERT_OK(p7_tensor_download(u, head, counts[c]));
        assert_memory_equal(head, dev, counts[c] * sizeof(float));
        p7_tensor_release(u);
    }
    free(dev);
    p7_tensor_release(t);
}

static void test_init_rules(void **state)
{
    (void)state;
    /* v = 0 gives all -1 signs, v = 1 all +1, v < 0 Normal(1, |v|) (the documented
     * meaning; the original's Gaussian branch was dead) */
    const float vs[3] = {0.0f, 1.0f, -0.5f};
    for (int k = 0; k < 3; k++) {
        p7_model *m;
        P7_ASSERT_OK(p7_model_create(device, 4, 11, &m));
        int id;
        p7_layer_config c = {.kind = P7_LAYER_BE_LINEAR, .in = 300, .out = 200, .has_alpha = 1, .has_gamma = 1,
                             .alpha_init = vs[k], .gamma_init = vs[k], .init = P7_INIT_KAIMING_NORMAL_FAN_OUT};
        P7_ASSERT_OK(p7_model_add_layer(m, "fc", &c, &id));
        const char *name;
        p7_tensor *alpha = p7_model_param(m, 1, &name);
        assert_string_equal(name, "fc.alpha");
        size_t n = p7_tensor_numel(alpha);
        float *a = malloc(n * sizeof *a);
        P7_ASSERT_OK(p7_tensor_download(alpha, a, n));
        double mean = 0, sq = 0;
        for (size_t i = 0; i < n; i++) { mean += a[i]; sq += a[i] * a[i]; }
        mean /= (double)n;
        double sd = sqrt(sq / (double)n - mean * mean);
        if (k == 0) for (size_t i = 0; i < n; i++) assert_true(a[i] == -1.0f);
        if (k == 1) for (size_t i = 0; i < n; i++) assert_true(a[i] == 1.0f);
        if (k == 2) { assert_true(fabs(mean - 1.0) < 0.06); assert_true(fabs(sd - 0.5) < 0.05); }
        /* shared weight: N(0, 2 / fan_out) with fan_out = 200 */
        p7_tensor *w = p7_model_param(m, 0, NULL);
        size_t nw = p7_tensor_numel(w);
        float *wv = malloc(nw * sizeof *wv);
        P7_ASSERT_OK(p7_tensor_download(w, wv, nw));
        sq = 0;
        for (size_t i = 0; i < nw; i++) sq += wv[i] * wv[i];
        assert_true(fabs(sqrt(sq / (double)nw) - sqrt(2.0 / 200.0)) < 0.005);
        free(wv);
        free(a);
        p7_model_destroy(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_cnn_counts),
        cmocka_unit_test(test_vgg11_counts),
        cmocka_unit_test(test_sharing_counts),
        cmocka_unit_test(test_device_rng_matches_host),
        cmocka_unit_test(test_init_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
