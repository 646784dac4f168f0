/* Golden vectors for the optimizer plugins: every case of optimizers.md section 6 (SGD
 * S1-S3, Adam A1-A5 including AdamW and AMSGrad, IVON I1-I3 with injected noise), run on
 * the device in float32 and compared within 1e-6 absolute, plus IVON's behavioural checks
 * (bit-exact restore, Welford averaging, positivity of h + delta, no-gradient skipping).
 * The expected values are the float64 reference numbers, copied verbatim. Only the public
 * API is used (p7_tensor_set_grad, p7_optimizer_state_by_name): a plugin author can copy
 * this file as the model of their own step-by-step test. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7/optimizer.h"
#include "p7_test_support.h"

#define TOL 1e-6

static const float THETA0[6] = {0.5f, -1.0f, 1.5f, -0.25f, 0.75f, 2.0f};
static const float G[3][6] = {
    {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f},
    {-0.05f, 0.15f, -0.25f, 0.35f, -0.45f, 0.55f},
    {0.2f, 0.2f, -0.1f, -0.1f, 0.05f, 0.0f},
};
static const float GA[3][6] = {
    {1.0f, -2.0f, 0.5f, 0.0f, 3.0f, -1.0f},
    {0.1f, -0.1f, 0.1f, -0.1f, 0.1f, -0.1f},
    {0.01f, 0.02f, -0.03f, 0.04f, -0.05f, 0.06f},
};
static const float E[3][6] = {
    {0.3f, -1.2f, 0.9f, 0.05f, -0.6f, 1.5f},
    {-0.7f, 0.4f, -0.1f, 1.1f, 0.9f, -0.3f},
    {1.0f, 0.0f, -1.0f, 0.5f, -0.5f, 0.25f},
};
static const double X_S1[3][6] = {
    {0.4895, -0.979, 1.4685, -0.20975, 0.69925, 2.058},
    {0.4845605, -0.974121, 1.4636815, -0.20831525, 0.69787575, 2.053142},
    {0.4596303895, -0.988755779, 1.467881168, -0.1968156597, 0.6909410492, 2.046716658},
};
static const double X_S2[3][6] = {
    {0.48005, -0.9601, 1.44015, -0.173525, 0.653575, 2.1102},
    {0.480132905, -0.96976581, 1.459398715, -0.2070928025, 0.6967257075, 2.04867062},
    {0.437227312, -1.001986574, 1.471745836, -0.1865665209, 0.6848257829, 2.040800884},
};
static const double X_S3[3][6] = {
    {0.49, -0.98, 1.47, -0.21, 0.7, 2.06},
    {0.4835, -0.9695, 1.4555, -0.1915, 0.6775, 2.0865},
    {0.46765, -0.97005, 1.44745, -0.16985, 0.65475, 2.11035},
};
static const double X_A1[3][6] = {
    {0.490000001, -0.9900000005, 1.49, -0.2400000002, 0.7400000002, 2.01},
    {0.4873366309, -0.9891067505, 1.48961878, -0.2398599556, 0.7400000002, 2.009908551},
    {0.4807555154, -0.9925603778, 1.490919206, -0.2385715092, 0.7395261142, 2.009837861},
};
static const double X_A2[3][6] = {
    {0.4900000007, -0.9900000003, 1.49, -0.2400000002, 0.7400000002, 2.01},
    {0.4833492006, -0.9846420313, 1.485092634, -0.2392148153, 0.7384668315, 2.006580143},
    {0.4752235506, -0.9827373384, 1.480651204, -0.237182495, 0.7361662892, 2.002540142},
};
static const double X_A3[3][6] = {
    {0.489500001, -0.9890000005, 1.4885, -0.2397500002, 0.7392500002, 2.008},
    {0.4863471309, -0.9871177505, 1.48663028, -0.2393702056, 0.7385107502, 2.005900551},
    {0.4792796683, -0.98958426, 1.486444075, -0.237842389, 0.7372983535, 2.00382396},
};
static const double X_A4[3][6] = {
    {0.4900000001, -0.99, 1.49, -0.25, 0.74, 2.01},
    {0.4835539745, -0.9838762757, 1.482909372, -0.2435539752, 0.7339837095, 2.016446025},
    {0.479111846, -0.9797514421, 1.478369615, -0.2411132455, 0.7299646408, 2.020546452},
};
static const double X_A5[3][6] = {
    {0.495, -0.9933333333, 1.4925, -0.242, 0.7416666667, 2.008571429},
    {0.4938241714, -0.9927628308, 1.492220135, -0.2418893876, 0.7416666667, 2.008493517},
    {0.4900757704, -0.9950039882, 1.493129667, -0.2409135421, 0.7412896229, 2.008435233},
};
static const double X_I1_theta[3][6] = {
    {0.4888952217, -0.9834169942, 1.476122736, -0.2043598442, 0.667627357, 2.102802917},
    {0.4860181626, -0.981344867, 1.474071082, -0.2038386685, 0.6655286059, 2.095924998},
    {0.4776359759, -0.9861646814, 1.475295655, -0.2003119612, 0.6563114877, 2.088942096},
};
static const double X_I1_h[3][6] = {
    {0.4722248456, 0.6358419017, 0.6628157668, 0.4397684036, 0.3042123288, 0.2777350256},
    {0.449851783, 0.6206590715, 0.6185976937, 0.7050075339, 0.1522345566, 0.1849500417},
    {0.5494241525, 0.5616472525, 0.6362635747, 0.6011222334, 0.1289131586, 0.1673323525},
};
static const double X_I1_g[3][6] = {
    {0.01, -0.02, 0.03, -0.04, 0.05, -0.06},
    {0.004, -0.003, 0.002, -0.001, 0.0, 0.001},
    {0.0236, 0.0173, -0.0082, -0.0109, 0.005, 0.0009},
};
static const double X_I2_theta[3][6] = {
    {0.4975847734, -0.99, 1.498533833, -0.26, 0.7461251489, 1.99},
    {0.4926744394, -0.98, 1.496246249, -0.27, 0.7388550367, 1.98},
    {0.4858307247, -0.97, 1.492718856, -0.28, 0.7288550367, 1.97},
};
static const double X_I2_h[3][6] = {
    {0.9859257569, 1.095022074, 0.9991249852, 1.145564673, 1.003816174, 1.164050647},
    {0.9937813448, 0.9736913798, 0.9771598, 1.19043055, 0.9994816977, 1.051461932},
    {0.9861113816, 1.007447188, 0.9794596666, 1.038578136, 0.9844500265, 1.048570615},
};
static const double X_I2_g[3][6] = {
    {0.04717298603, -0.3113080559, 0.02782701397, 0.3325106607, 0.07712026048, 0.3254431257},
    {0.09719659012, -0.5619671167, 0.04325390954, 0.6071462105, 0.1447261595, 0.5653322803},
    {0.1346174977, -0.807500231, 0.06767309612, 0.7969714641, 0.201311301, 0.8038329393},
};
static const double X_I3_theta[3][6] = {
    {0.4899949949, -0.9799913185, 1.469987262, -0.209996847, 0.6999872558, 2.059997672},
    {0.4878848329, -0.9784026901, 1.468920009, -0.2094684817, 0.6999802542, 2.059450561},
    {0.4791719358, -0.9847762565, 1.471930864, -0.2054445269, 0.6981277528, 2.059097734},
};
static const double X_I3_h[3][6] = {
    {0.9999994873, 1.000065901, 1.000075389, 0.9999836753, 0.9998951324, 0.9997054242},
    {1.000000556, 1.000074875, 1.000073294, 1.000095434, 0.9997570711, 0.9996432566},
    {1.000053806, 1.000064875, 1.000094919, 1.000069621, 0.9997391685, 0.9996332602},
};

/* ---- helpers ---- */

P7_TEST_FILE_DEVICE

static p7_tensor *param_2x3(const float *values)
{
    int64_t shape[2] = {2, 3};
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, 2, shape, &t));
    P7_ASSERT_OK(p7_tensor_upload(t, values, 6));
    P7_ASSERT_OK(p7_tensor_set_requires_grad(t, 1));
    return t;
}

/* Stands in for a backward pass: the gradient tensor autograd would have written. */
static void set_grad(p7_tensor *p, const float *g) { P7_ASSERT_OK(p7_tensor_set_grad(p, g, p7_tensor_numel(p))); }

static p7_tensor *slot(const p7_optimizer *opt, const char *name)
{
    p7_tensor *t;
    P7_ASSERT_OK(p7_optimizer_state_by_name(opt, 0, name, &t));
    return t;
}

static void expect_close(const char *what, int t, const p7_tensor *x, const double *want)
{
    float got[6];
    P7_ASSERT_OK(p7_tensor_download(x, got, 6));
    for (int i = 0; i < 6; i++)
        if (!(fabs((double)got[i] - want[i]) <= TOL)) {
            print_error("%s t%d [%d]: got %.10g, want %.10g (|diff| %.3g)\n", what, t, i, (double)got[i], want[i],
                        fabs((double)got[i] - want[i]));
            fail();
        }
}

static p7_optimizer *make(const char *name, const char *hparams, p7_tensor *p)
{
    p7_optimizer_options o = {0};
    o.hparams = hparams;
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create(device, p7_test_plugin(name), &p, 1, &o, &opt));
    return opt;
}

/* SGD / Adam: three steps with fixed gradients, theta compared after each. Then again
 * on a [5, 6] parameter whose rows each repeat the case: 30 floats are whole vectors of
 * the kernels' 8- or 16-float paths plus a ragged end, and every row must match. */
enum { TILED_ROWS = 5 };

static void run_first_order(const char *name, const char *hparams, const float grads[3][6], const double want[3][6],
                            const char *label)
{
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make(name, hparams, p);
    for (int t = 0; t < 3; t++) {
        set_grad(p, grads[t]);
        P7_ASSERT_OK(p7_optimizer_step(opt));
        expect_close(label, t + 1, p, want[t]);
    }
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);

    float theta[TILED_ROWS * 6], g[TILED_ROWS * 6], got[TILED_ROWS * 6];
    for (int i = 0; i < TILED_ROWS * 6; i++) theta[i] = THETA0[i % 6];
    const int64_t shape[2] = {TILED_ROWS, 6};
    P7_ASSERT_OK(p7_tensor_create(device, 2, shape, &p));
    P7_ASSERT_OK(p7_tensor_upload(p, theta, TILED_ROWS * 6));
    P7_ASSERT_OK(p7_tensor_set_requires_grad(p, 1));
    opt = make(name, hparams, p);
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < TILED_ROWS * 6; i++) g[i] = grads[t][i % 6];
        set_grad(p, g);
        P7_ASSERT_OK(p7_optimizer_step(opt));
        P7_ASSERT_OK(p7_tensor_download(p, got, TILED_ROWS * 6));
        for (int i = 0; i < TILED_ROWS * 6; i++)
            if (!(fabs((double)got[i] - want[t][i % 6]) <= TOL)) {
                print_error("%s [%d, 6] t%d [%d]: got %.10g, want %.10g\n", label, TILED_ROWS, t + 1, i,
                            (double)got[i], want[t][i % 6]);
                fail();
            }
        /* the last row runs the ragged end's scalar path, the others the vector path */
        for (int r = 0; r + 1 < TILED_ROWS; r++)
            if (memcmp(got + r * 6, got + (TILED_ROWS - 1) * 6, 6 * sizeof(float)) != 0) {
                print_error("%s [%d, 6] t%d: row %d differs in its bits from the last row\n", label, TILED_ROWS,
                            t + 1, r);
                fail();
            }
    }
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

static void test_sgd_s1(void **s) { (void)s; run_first_order("sgd", "lr=0.1,momentum=0.9,weight_decay=0.01", G, X_S1, "S1"); }
static void test_sgd_s2(void **s)
{
    (void)s;
    run_first_order("sgd", "lr=0.1,momentum=0.9,weight_decay=0.01,nesterov=1", G, X_S2, "S2");
}
static void test_sgd_s3(void **s) { (void)s; run_first_order("sgd", "lr=0.1,momentum=0.9,dampening=0.5", G, X_S3, "S3"); }
static void test_adam_a1(void **s) { (void)s; run_first_order("adam", "lr=0.01", G, X_A1, "A1"); }
static void test_adam_a2(void **s) { (void)s; run_first_order("adam", "lr=0.01,weight_decay=0.1", G, X_A2, "A2"); }
static void test_adamw_a3(void **s)
{
    (void)s;
    run_first_order("adam", "lr=0.01,weight_decay=0.1,decoupled=true", G, X_A3, "A3");
}
static void test_amsgrad_a4(void **s) { (void)s; run_first_order("adam", "lr=0.01,beta2=0.5,amsgrad=1", GA, X_A4, "A4"); }
static void test_adam_a5(void **s) { (void)s; run_first_order("adam", "lr=0.01,eps=0.1", G, X_A5, "A5"); }

/* maximize negates the gradient: SGD S1 with -g and maximize equals S1. */
static void test_sgd_maximize(void **s)
{
    (void)s;
    float neg[3][6];
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 6; i++) neg[t][i] = -G[t][i];
    run_first_order("sgd", "lr=0.1,momentum=0.9,weight_decay=0.01,maximize=1", (const float(*)[6])neg, X_S1, "S1max");
}

/* A parameter without a gradient keeps its value and its state (torch skips it). */
static void test_no_grad_is_skipped(void **s)
{
    (void)s;
    const char *cases[][2] = {{"sgd", "lr=0.1,momentum=0.9,weight_decay=0.01"}, {"adam", "lr=0.01,weight_decay=0.1"}};
    for (size_t c = 0; c < 2; c++) {
        p7_tensor *p = param_2x3(THETA0);
        p7_optimizer *opt = make(cases[c][0], cases[c][1], p);
        P7_ASSERT_OK(p7_optimizer_step(opt)); /* no gradient yet */
        float got[6];
        P7_ASSERT_OK(p7_tensor_download(p, got, 6));
        assert_memory_equal(got, THETA0, sizeof got);
        /* and the first real step is still a first step (S1 t1 / A2 t1) */
        set_grad(p, G[0]);
        P7_ASSERT_OK(p7_optimizer_step(opt));
        expect_close(cases[c][0], 1, p, c == 0 ? X_S1[0] : X_A2[0]);
        p7_optimizer_destroy(opt);
        p7_tensor_release(p);
    }
}

/* ---- IVON ---- */

static p7_tensor *noise(const float *e, float sign);

/* A parameter that got no gradient in any sample of a step keeps its weight and state,
 * as SGD and Adam skip it; IVON used to count it as gradient zero and decay it. */
static void test_ivon_no_grad_is_skipped(void **s)
{
    (void)s;
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make("ivon", "lr=0.1,ess=100,hess_init=0.5,beta1=0.9,beta2=0.9,weight_decay=0.01", p);
    p7_tensor *eps = noise(E[0], 1.0f);
    P7_ASSERT_OK(p7_optimizer_sample_noise(opt, &eps));
    P7_ASSERT_OK(p7_optimizer_restore(opt, 1)); /* no gradient */
    P7_ASSERT_OK(p7_optimizer_step(opt));
    float got[6], h[6];
    P7_ASSERT_OK(p7_tensor_download(p, got, 6));
    assert_memory_equal(got, THETA0, sizeof got);
    P7_ASSERT_OK(p7_tensor_download(slot(opt, "hess"), h, 6));
    for (int i = 0; i < 6; i++) assert_true(h[i] == 0.5f);
    p7_tensor_release(eps);
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

static p7_tensor *noise(const float *e, float sign)
{
    float v[6];
    for (int i = 0; i < 6; i++) v[i] = sign * e[i];
    int64_t n = 6;
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, 1, &n, &t));
    P7_ASSERT_OK(p7_tensor_upload(t, v, 6));
    return t;
}

static void expect_bits(const p7_tensor *x, const float *want)
{
    float got[6];
    P7_ASSERT_OK(p7_tensor_download(x, got, 6));
    assert_memory_equal(got, want, sizeof got);
}

/* One MC sample with injected noise and a gradient that may depend on the sampled weights. */
typedef void (*grad_fn)(const float *sampled, int t, float *g);

static void one_sample(p7_optimizer *opt, p7_tensor *p, const float *e, float sign, grad_fn fn, int t)
{
    float mean[6], sampled[6], g[6];
    P7_ASSERT_OK(p7_tensor_download(p, mean, 6));
    p7_tensor *eps = noise(e, sign);
    P7_ASSERT_OK(p7_optimizer_sample_noise(opt, &eps));
    P7_ASSERT_OK(p7_tensor_download(p, sampled, 6));
    fn(sampled, t, g);
    set_grad(p, g);
    P7_ASSERT_OK(p7_optimizer_restore(opt, 1));
    expect_bits(p, mean); /* restore is a copy of the mean, bit for bit */
    p7_tensor_release(eps);
}

static void fixed_grad(const float *sampled, int t, float *g)
{
    (void)sampled;
    memcpy(g, G[t], 6 * sizeof *g);
}

static void quadratic_grad(const float *sampled, int t, float *g)
{
    static const float a[6] = {1, 2, 0.5f, 4, 1, 3}, c[6] = {0, 0.5f, 1, -1, 0, 1};
    (void)t;
    for (int i = 0; i < 6; i++) g[i] = a[i] * (sampled[i] - c[i]);
}

static void check_ivon_state(p7_optimizer *opt, p7_tensor *p, int t, const double theta[3][6], const double h[3][6],
                             const double g[3][6], const char *label)
{
    char what[32];
    snprintf(what, sizeof what, "%s theta", label);
    expect_close(what, t + 1, p, theta[t]);
    snprintf(what, sizeof what, "%s h", label);
    expect_close(what, t + 1, slot(opt, "hess"), h[t]);
    if (g) {
        snprintf(what, sizeof what, "%s g", label);
        expect_close(what, t + 1, slot(opt, "momentum"), g[t]);
    }
}

static void test_ivon_i1(void **s)
{
    (void)s;
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make("ivon", "lr=0.1,ess=100,hess_init=0.5,beta1=0.9,beta2=0.9,weight_decay=0.01", p);
    for (int t = 0; t < 3; t++) {
        one_sample(opt, p, E[t], 1.0f, fixed_grad, t);
        P7_ASSERT_OK(p7_optimizer_step(opt));
        check_ivon_state(opt, p, t, X_I1_theta, X_I1_h, X_I1_g, "I1");
    }
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

static void test_ivon_i2(void **s)
{
    (void)s;
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make(
        "ivon", "lr=0.05,ess=50,hess_init=1,beta1=0.9,beta2=0.99,weight_decay=1e-3,clip_radius=0.2,rescale_lr=0,debias=0",
        p);
    /* t=1: (E1, E2); t=2: (E3, -E1); t=3: (-E2, -E3) */
    const float *e[3][2] = {{E[0], E[1]}, {E[2], E[0]}, {E[1], E[2]}};
    const float sign[3][2] = {{1, 1}, {1, -1}, {-1, -1}};
    for (int t = 0; t < 3; t++) {
        for (int k = 0; k < 2; k++) one_sample(opt, p, e[t][k], sign[t][k], quadratic_grad, t);
        P7_ASSERT_OK(p7_optimizer_step(opt));
        check_ivon_state(opt, p, t, X_I2_theta, X_I2_h, X_I2_g, "I2");
    }
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

static void test_ivon_i3_defaults(void **s)
{
    (void)s;
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make("ivon", "lr=0.1,ess=1000", p);
    for (int t = 0; t < 3; t++) {
        one_sample(opt, p, E[t], 1.0f, fixed_grad, t);
        P7_ASSERT_OK(p7_optimizer_step(opt));
        check_ivon_state(opt, p, t, X_I3_theta, X_I3_h, X_I1_g, "I3");
    }
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

/* I1 and I2 again on a [5, 6] parameter whose rows each repeat the case (noise and
 * gradients tiled row by row): 30 floats are whole vectors of IVON's kernels plus a
 * ragged end, every row must match the reference, and bit for bit the last row, which
 * takes the ragged end's scalar path. */
static void expect_rows(const char *what, int t, const p7_tensor *x, const double *want)
{
    float got[TILED_ROWS * 6];
    P7_ASSERT_OK(p7_tensor_download(x, got, TILED_ROWS * 6));
    for (int i = 0; i < TILED_ROWS * 6; i++)
        if (!(fabs((double)got[i] - want[i % 6]) <= TOL)) {
            print_error("%s [%d, 6] t%d [%d]: got %.10g, want %.10g\n", what, TILED_ROWS, t, i, (double)got[i],
                        want[i % 6]);
            fail();
        }
    for (int r = 0; r + 1 < TILED_ROWS; r++)
        if (memcmp(got + r * 6, got + (TILED_ROWS - 1) * 6, 6 * sizeof(float)) != 0) {
            print_error("%s [%d, 6] t%d: row %d differs in its bits from the last row\n", what, TILED_ROWS, t, r);
            fail();
        }
}

static void run_ivon_tiled(const char *hparams, int samples, const float *const e[3][2], const float sign[3][2],
                           grad_fn fn, const double theta[3][6], const double h[3][6], const char *label)
{
    enum { N = TILED_ROWS * 6 };
    float v[N];
    for (int i = 0; i < N; i++) v[i] = THETA0[i % 6];
    const int64_t shape[2] = {TILED_ROWS, 6}, flat = N;
    p7_tensor *p;
    P7_ASSERT_OK(p7_tensor_create(device, 2, shape, &p));
    P7_ASSERT_OK(p7_tensor_upload(p, v, N));
    P7_ASSERT_OK(p7_tensor_set_requires_grad(p, 1));
    p7_optimizer *opt = make("ivon", hparams, p);
    for (int t = 0; t < 3; t++) {
        for (int k = 0; k < samples; k++) {
            float sampled[N], g[N];
            for (int i = 0; i < N; i++) v[i] = sign[t][k] * e[t][k][i % 6];
            p7_tensor *eps;
            P7_ASSERT_OK(p7_tensor_create(device, 1, &flat, &eps));
            P7_ASSERT_OK(p7_tensor_upload(eps, v, N));
            P7_ASSERT_OK(p7_optimizer_sample_noise(opt, &eps));
            P7_ASSERT_OK(p7_tensor_download(p, sampled, N));
            for (int r = 0; r < TILED_ROWS; r++) fn(sampled + r * 6, t, g + r * 6);
            set_grad(p, g);
            P7_ASSERT_OK(p7_optimizer_restore(opt, 1));
            p7_tensor_release(eps);
        }
        P7_ASSERT_OK(p7_optimizer_step(opt));
        char what[32];
        snprintf(what, sizeof what, "%s theta", label);
        expect_rows(what, t + 1, p, theta[t]);
        snprintf(what, sizeof what, "%s h", label);
        expect_rows(what, t + 1, slot(opt, "hess"), h[t]);
    }
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

static void test_ivon_vector_path(void **s)
{
    (void)s;
    const float *const e1[3][2] = {{E[0], NULL}, {E[1], NULL}, {E[2], NULL}};
    const float one[3][2] = {{1, 1}, {1, 1}, {1, 1}};
    run_ivon_tiled("lr=0.1,ess=100,hess_init=0.5,beta1=0.9,beta2=0.9,weight_decay=0.01", 1, e1, one, fixed_grad,
                   X_I1_theta, X_I1_h, "I1");
    const float *const e2[3][2] = {{E[0], E[1]}, {E[2], E[0]}, {E[1], E[2]}};
    const float sign[3][2] = {{1, 1}, {1, -1}, {-1, -1}};
    run_ivon_tiled(
        "lr=0.05,ess=50,hess_init=1,beta1=0.9,beta2=0.99,weight_decay=1e-3,clip_radius=0.2,rescale_lr=0,debias=0", 2,
        e2, sign, quadratic_grad, X_I2_theta, X_I2_h, "I2");
}

/* Two identical samples (same noise, same gradient) give the one-sample result. */
static void test_ivon_two_identical_samples(void **s)
{
    (void)s;
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make("ivon", "lr=0.1,ess=100,hess_init=0.5,beta1=0.9,beta2=0.9,weight_decay=0.01", p);
    for (int t = 0; t < 3; t++) {
        one_sample(opt, p, E[t], 1.0f, fixed_grad, t);
        one_sample(opt, p, E[t], 1.0f, fixed_grad, t);
        P7_ASSERT_OK(p7_optimizer_step(opt));
        check_ivon_state(opt, p, t, X_I1_theta, X_I1_h, X_I1_g, "I1x2");
    }
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

/* An adversarial Hessian estimate (hhat of -1e6) keeps h + delta >= (old h + delta)/2. */
static void test_ivon_positivity(void **s)
{
    (void)s;
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make("ivon", "lr=0.1,ess=100,hess_init=0.5,beta2=0.9,weight_decay=0.01", p);
    /* noise n = eps / sqrt(51); hhat = 51 n g = sqrt(51) eps g; pick g for hhat = -1e6 */
    float e1[6], g[6];
    for (int i = 0; i < 6; i++) {
        e1[i] = 1.0f;
        g[i] = (float)(-1e6 / sqrt(51.0));
    }
    float mean[6];
    P7_ASSERT_OK(p7_tensor_download(p, mean, 6));
    p7_tensor *eps = noise(e1, 1.0f);
    P7_ASSERT_OK(p7_optimizer_sample_noise(opt, &eps));
    set_grad(p, g);
    P7_ASSERT_OK(p7_optimizer_restore(opt, 1));
    P7_ASSERT_OK(p7_optimizer_step(opt));
    float h[6], theta[6];
    P7_ASSERT_OK(p7_tensor_download(slot(opt, "hess"), h, 6));
    P7_ASSERT_OK(p7_tensor_download(p, theta, 6));
    for (int i = 0; i < 6; i++) {
        assert_true(isfinite(h[i]) && isfinite(theta[i]));
        assert_true(h[i] + 0.01f >= 0.5f * (0.5f + 0.01f));
    }
    p7_tensor_release(eps);
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

/* sample/restore(0) leaves the weights bit-identical and gathers nothing: a step after it
 * still fails for want of a train-mode sample. RNG sampling (no injected noise) too. */
static void test_ivon_eval_sample_restores_bits(void **s)
{
    (void)s;
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make("ivon", "lr=0.1,ess=100", p);
    for (int k = 0; k < 3; k++) {
        P7_ASSERT_OK(p7_optimizer_sample(opt));
        float sampled[6];
        P7_ASSERT_OK(p7_tensor_download(p, sampled, 6));
        assert_memory_not_equal(sampled, THETA0, sizeof sampled);
        P7_ASSERT_OK(p7_optimizer_restore(opt, 0));
        expect_bits(p, THETA0);
    }
    assert_int_equal(p7_optimizer_step(opt), P7_ERROR_STATE);
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

/* A NaN gradient must reach the weight as NaN, which the training loop reports as a
 * diverged loss, never as a finite or infinite number. IVON clipped the update with
 * fmin/fmax, which return the other operand for NaN, so the weight became +-inf (or the
 * clip radius) and the NaN was lost. Every bundled plugin, NaN in element 2 only. */
static void test_nan_gradient_reaches_the_weight(void **s)
{
    (void)s;
    const char *cases[][2] = {{"sgd", "lr=0.1,momentum=0.9"},
                              {"adam", "lr=0.01"},
                              {"ivon", "lr=0.1,ess=100"},
                              {"ivon", "lr=0.1,ess=100,clip_radius=0.2"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        p7_tensor *p = param_2x3(THETA0);
        p7_optimizer *opt = make(cases[c][0], cases[c][1], p);
        float g[6];
        memcpy(g, G[0], sizeof g);
        g[2] = NAN;
        if (p7_optimizer_samples_weights(opt)) {
            p7_tensor *eps = noise(E[0], 1.0f);
            P7_ASSERT_OK(p7_optimizer_sample_noise(opt, &eps));
            set_grad(p, g);
            P7_ASSERT_OK(p7_optimizer_restore(opt, 1));
            p7_tensor_release(eps);
        } else {
            set_grad(p, g);
        }
        P7_ASSERT_OK(p7_optimizer_step(opt));
        float got[6];
        P7_ASSERT_OK(p7_tensor_download(p, got, 6));
        for (int i = 0; i < 6; i++)
            if (i == 2 ? !isnan(got[i]) : !isfinite(got[i])) {
                print_error("%s (%s): weight %d is %g after a step with %s gradient; expected %s\n", cases[c][0],
                            cases[c][1], i, (double)got[i], i == 2 ? "a NaN" : "a finite",
                            i == 2 ? "NaN" : "a finite value");
                fail();
            }
        p7_optimizer_destroy(opt);
        p7_tensor_release(p);
    }
}

/* The driving API's errors name the problem: a gradient of the wrong size, an unknown
 * slot (listing the plugin's), a parameter out of range. */
static void test_driving_api_errors(void **s)
{
    (void)s;
    p7_tensor *p = param_2x3(THETA0);
    p7_optimizer *opt = make("adam", "lr=0.01", p);
    assert_int_equal(p7_tensor_set_grad(p, G[0], 5), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "5 floats given for a tensor of shape [2, 3]"));
    assert_null(p7_tensor_grad(p)); /* a refused gradient leaves none behind */
    p7_tensor *t = p;
    assert_int_equal(p7_optimizer_state_by_name(opt, 0, "exp_avg_sqq", &t), P7_ERROR_INVALID_ARGUMENT);
    assert_null(t);
    assert_non_null(strstr(p7_last_error(), "adam has no state slot named 'exp_avg_sqq'; its slots are: exp_avg, "
                                            "exp_avg_sq, max_exp_avg_sq"));
    assert_int_equal(p7_optimizer_state_by_name(opt, 1, "exp_avg", &t), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "parameter 1 is out of range: the optimizer has 1 parameters"));
    assert_int_equal(p7_optimizer_param_count(opt), 1);
    /* the slot read by name is the state the step wrote: exp_avg = (1 - beta1) g after one step */
    set_grad(p, G[0]);
    P7_ASSERT_OK(p7_optimizer_step(opt));
    double want[6];
    for (int i = 0; i < 6; i++) want[i] = 0.1 * G[0][i];
    expect_close("exp_avg", 1, slot(opt, "exp_avg"), want);
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_s1),
        cmocka_unit_test(test_sgd_s2),
        cmocka_unit_test(test_sgd_s3),
        cmocka_unit_test(test_sgd_maximize),
        cmocka_unit_test(test_adam_a1),
        cmocka_unit_test(test_adam_a2),
        cmocka_unit_test(test_adamw_a3),
        cmocka_unit_test(test_amsgrad_a4),
        cmocka_unit_test(test_adam_a5),
        cmocka_unit_test(test_no_grad_is_skipped),
        cmocka_unit_test(test_ivon_no_grad_is_skipped),
        cmocka_unit_test(test_ivon_i1),
        cmocka_unit_test(test_ivon_i2),
        cmocka_unit_test(test_ivon_i3_defaults),
        cmocka_unit_test(test_ivon_vector_path),
        cmocka_unit_test(test_ivon_two_identical_samples),
        cmocka_unit_test(test_ivon_positivity),
        cmocka_unit_test(test_ivon_eval_sample_restores_bits),
        cmocka_unit_test(test_driving_api_errors),
        cmocka_unit_test(test_nan_gradient_reaches_the_weight),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
