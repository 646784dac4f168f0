/* The evaluation forward with fused output stages (nn_fuse.c) equals the separate ops'
 * forward (p7_model_set_fusion(model, 0), the reference) to float32 rounding on the
 * study's networks: SimpleCNN, VGG11-BN, BatchEnsemble VGG11-BN with 4 members, and
 * the between-member sharing models (member groups on a shared trunk and a shared
 * deep part on the members' rows). BatchNorm statistics and affines, and the
 * BatchEnsemble factors, are set to random trained-looking values first, so a fold
 * that dropped a term would show. Every conv -> BatchNorm -> ReLU -> max pooling of
 * these networks runs as one stage. Fusion is checked to have happened (stage counts),
 * never to happen in training or while a tape records, and the comparison is shown
 * able to fail (statistics off by 1e-3). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nn/nn_model_internal.h"
#include "p7_test_support.h"

P7_TEST_FILE_DEVICE

static int ends_with(const char *s, const char *tail)
{
    const size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

/* Random values where a fresh model has constants: BatchNorm running statistics,
 * BatchNorm weights and biases, BatchEnsemble fast weights. */
static void randomise(p7_model *m, uint64_t seed)
{
    for (size_t i = 0; i < p7_model_buffer_count(m); i++) {
        const char *name;
        p7_tensor *t = p7_model_buffer(m, i, &name);
        if (ends_with(name, "running_mean")) P7_ASSERT_OK(p7_tensor_fill_uniform(t, seed, 100 + i, -0.3f, 0.3f));
        else P7_ASSERT_OK(p7_tensor_fill_uniform(t, seed, 100 + i, 0.5f, 2.0f));
    }
    for (size_t i = 0; i < p7_model_param_count(m); i++) {
        const char *name;
        p7_tensor *t = p7_model_param(m, i, &name);
        const int bn = strncmp(name, "bn", 2) == 0;
        if (bn && ends_with(name, ".weight")) P7_ASSERT_OK(p7_tensor_fill_uniform(t, seed, 200 + i, 0.5f, 1.5f));
        if (bn && ends_with(name, ".bias")) P7_ASSERT_OK(p7_tensor_fill_uniform(t, seed, 200 + i, -0.2f, 0.2f));
        if (ends_with(name, ".alpha") || ends_with(name, ".gamma"))
            P7_ASSERT_OK(p7_tensor_fill_uniform(t, seed, 200 + i, 0.5f, 1.5f));
    }
}

static float *logits_of(p7_model *m, p7_tape *tape, p7_tensor *x, int training, size_t *n)
{
    p7_tensor *y;
    P7_ASSERT_OK(p7_model_forward(m, tape, x, training, &y));
    *n = p7_tensor_numel(y);
    float *v = p7_test_download(y);
    p7_tensor_release(y);
    return v;
}

/* max |a - b| / max |b| */
static double relative_error(const float *a, const float *b, size_t n)
{
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    assert_true(scale > 0.0);
    return isfinite(worst) ? worst / scale : INFINITY;
}

typedef struct fuse_case {
    const char *what;
    p7_network_config config;
    size_t stages; /* fused stages expected per evaluation forward */
    size_t steps;  /* program steps they cover */
} fuse_case;

static void check_case(const fuse_case *fc)
{
    p7_model *m;
    P7_ASSERT_OK(p7_model_build(device, &fc->config, 7, &m));
    randomise(m, 11);
    const int64_t xs[4] = {4, 3, 32, 32};
    p7_tensor *x;
    P7_ASSERT_OK(p7_tensor_create(device, 4, xs, &x));
    P7_ASSERT_OK(p7_tensor_fill_uniform(x, 3, 0, -1.0f, 1.0f));

    assert_true(p7_model_fusion(m));
    p7_model_set_fusion(m, 0);
    size_t n_ref, n;
    float *ref = logits_of(m, NULL, x, 0, &n_ref);
    assert_int_equal(m->fused_last, 0);
    p7_model_set_fusion(m, 1);
    float *got = logits_of(m, NULL, x, 0, &n);
    assert_int_equal(n, n_ref);
    if (m->fused_last != fc->stages || m->fused_steps_last != fc->steps) {
        print_error("%s: %zu fused stages over %zu steps, expected %zu over %zu\n", fc->what, m->fused_last,
                    m->fused_steps_last, fc->stages, fc->steps);
        fail();
    }
    const double err = relative_error(got, ref, n);
    print_message("%s: %zu fused stages, relative error %.3g\n", fc->what, m->fused_last, err);
    assert_true(err <= 1e-5);
    free(got);

    /* never in training, nor while a tape records */
    free(logits_of(m, NULL, x, 1, &n));
    assert_int_equal(m->fused_last, 0);
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    free(logits_of(m, tape, x, 0, &n));
    assert_int_equal(m->fused_last, 0);
    p7_tape_set_enabled(tape, 0);
    free(logits_of(m, tape, x, 0, &n));
    assert_int_equal(m->fused_last, fc->stages);
    p7_tape_destroy(tape);

    /* able to fail: running variances off by 1e-3 move the fused logits past the bound */
    for (size_t i = 0; i < p7_model_buffer_count(m); i++) {
        const char *name;
        p7_tensor *t = p7_model_buffer(m, i, &name);
        if (!ends_with(name, "running_var")) continue;
        const size_t c = p7_tensor_numel(t);
        float *v = p7_test_download(t);
        for (size_t j = 0; j < c; j++) v[j] *= 1.001f;
        P7_ASSERT_OK(p7_tensor_upload(t, v, c));
        free(v);
    }
    got = logits_of(m, NULL, x, 0, &n);
    assert_true(relative_error(got, ref, n) > 1e-5);
    free(got);
    free(ref);
    p7_tensor_release(x);
    p7_model_destroy(m);
}

static void test_simple_cnn(void **state)
{
    (void)state;
    const fuse_case fc = {"SimpleCNN", {.arch = P7_ARCH_SIMPLE, .classes = 10, .batchnorm = 1, .members = 1,
                                        .width = 0.5f}, 2, 8};
    check_case(&fc);
}

static void test_vgg11_bn(void **state)
{
    (void)state;
    const fuse_case fc = {"VGG11-BN", {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 1, .members = 1,
                                       .width = 0.25f}, 8, 29};
    check_case(&fc);
}

static void test_batchensemble_vgg11_bn(void **state)
{
    (void)state;
    const fuse_case fc = {"BE-VGG11-BN M=4",
                          {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 1, .members = 4,
                           .member_kind = P7_MEMBERS_BATCHENSEMBLE, .alpha_init = 0.5f, .gamma_init = 0.5f,
                           .width = 0.125f},
                          8, 29};
    check_case(&fc);
}

/* Member-group steps in a model's program (the between-member sharing models' members
 * are whole networks: member groups, not BatchEnsemble layers). */
static size_t group_steps(const p7_network_config *c)
{
    p7_model *m;
    P7_ASSERT_OK(p7_model_build(device, c, 7, &m));
    size_t n = 0;
    for (size_t i = 0; i < m->step_count; i++) n += m->steps[i].kind == P7_STEP_MEMBER_LAYERS;
    p7_model_destroy(m);
    return n;
}

static void test_between_member_sharing(void **state)
{
    (void)state;
    /* early shared: plain convs on B rows, then conv groups reading the shared trunk
     * (a = 1) with BatchNorm groups on their own rows (a = 0) */
    const fuse_case early = {"between early, 3 independent members",
                             {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 1, .members = 3,
                              .member_kind = P7_MEMBERS_INDEPENDENT, .between = P7_SHARE_EARLY, .width = 0.125f},
                             8, 29};
    assert_true(group_steps(&early.config) >= 12); /* 6 conv groups, 6 BatchNorm groups, the classifier */
    check_case(&early);
    /* deep shared: conv groups first, then shared convs on the members' M*B rows */
    const fuse_case deep = {"between deep, 2 independent members",
                            {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 1, .members = 2,
                             .member_kind = P7_MEMBERS_INDEPENDENT, .between = P7_SHARE_DEEP, .width = 0.125f},
                            8, 29};
    assert_true(group_steps(&deep.config) >= 4);
    check_case(&deep);
    /* the same sharing with BatchEnsemble members: shared plain convs, then BE layers */
    const fuse_case be = {"between early, 2 BatchEnsemble members",
                          {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 1, .members = 2,
                           .member_kind = P7_MEMBERS_BATCHENSEMBLE, .alpha_init = 0.5f, .gamma_init = 0.5f,
                           .between = P7_SHARE_EARLY, .width = 0.125f},
                          8, 29};
    assert_int_equal(group_steps(&be.config), 0);
    check_case(&be);
}

static void test_without_batchnorm(void **state)
{
    (void)state;
    /* VGG11 without BatchNorm: conv -> ReLU stages (the variance check cannot apply, so
     * this one compares only) */
    p7_network_config c = {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 0, .members = 1, .width = 0.25f};
    p7_model *m;
    P7_ASSERT_OK(p7_model_build(device, &c, 5, &m));
    const int64_t xs[4] = {2, 3, 32, 32};
    p7_tensor *x;
    P7_ASSERT_OK(p7_tensor_create(device, 4, xs, &x));
    P7_ASSERT_OK(p7_tensor_fill_uniform(x, 4, 0, -1.0f, 1.0f));
    size_t n;
    p7_model_set_fusion(m, 0);
    float *ref = logits_of(m, NULL, x, 0, &n);
    p7_model_set_fusion(m, 1);
    float *got = logits_of(m, NULL, x, 0, &n);
    assert_int_equal(m->fused_last, 8);
    assert_int_equal(m->fused_steps_last, 21); /* 8 x (conv, ReLU) and 5 poolings */
    assert_true(relative_error(got, ref, n) <= 1e-5);
    free(ref);
    free(got);
    p7_tensor_release(x);
    p7_model_destroy(m);
}

/* P7_FUSE=0 turns fusion off for models created while it is set. */
static void test_environment_switch(void **state)
{
    (void)state;
    const p7_network_config c = {.arch = P7_ARCH_SIMPLE, .classes = 10, .batchnorm = 1, .members = 1,
                                 .width = 0.25f};
    const int64_t xs[4] = {2, 3, 32, 32};
    p7_tensor *x;
    P7_ASSERT_OK(p7_tensor_create(device, 4, xs, &x));
    P7_ASSERT_OK(p7_tensor_fill_uniform(x, 4, 0, -1.0f, 1.0f));
    assert_int_equal(setenv("P7_FUSE", "0", 1), 0);
    p7_model *off, *on;
    P7_ASSERT_OK(p7_model_build(device, &c, 5, &off));
    assert_int_equal(unsetenv("P7_FUSE"), 0);
    P7_ASSERT_OK(p7_model_build(device, &c, 5, &on));
    assert_false(p7_model_fusion(off));
    assert_true(p7_model_fusion(on));
    size_t n;
    free(logits_of(off, NULL, x, 0, &n));
    assert_int_equal(off->fused_last, 0);
    free(logits_of(on, NULL, x, 0, &n));
    assert_int_equal(on->fused_last, 2);
    p7_model_destroy(off);
    p7_model_destroy(on);
    p7_tensor_release(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_cnn),
        cmocka_unit_test(test_vgg11_bn),
        cmocka_unit_test(test_batchensemble_vgg11_bn),
        cmocka_unit_test(test_between_member_sharing),
        cmocka_unit_test(test_without_batchnorm),
        cmocka_unit_test(test_environment_switch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
