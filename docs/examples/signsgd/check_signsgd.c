/* Checks libsignsgd.so step by step against a float64 reference of its update rule, on
 * fixed parameters and gradients: a plugin author's first test, linked with p7::p7 from
 * an installed p7 (see CMakeLists.txt and docs/plugins.md, "Test it").
 *
 *     check_signsgd build/libsignsgd.so      # exit 0: every step matches
 *
 * It uses only the public API: p7_tensor_set_grad stands in for a backward pass,
 * p7_optimizer_step updates, p7_optimizer_state_by_name reads the "momentum" slot. The
 * device is P7_DEVICE's (or the first GPU, else the CPU). */
#include <math.h>
#include <stdio.h>

#include "p7/p7.h"

#define N 6
#define STEPS 3
#define TOLERANCE 1e-6 /* float32 rounding of values near 1 */

static const float THETA0[N] = {0.5f, -1.0f, 1.5f, -0.25f, 0.75f, 2.0f};
/* No step brings a momentum to exactly 0 (0.9 * 0.05 - 0.1 * 0.45 would, for element 4):
 * sign() jumps there, and float32 and float64 land on either side of it. */
static const float GRADS[STEPS][N] = {
    {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f},
    {-0.05f, 0.15f, -0.25f, 0.35f, -0.4f, 0.55f},
    {0.2f, 0.2f, -0.1f, -0.1f, 0.05f, 0.01f},
};
static const double LR = 0.01, BETA = 0.9, WEIGHT_DECAY = 0.1;

static double sign_of(double x) { return (x > 0) - (x < 0); }

/* The rule of signsgd.c in float64: m = beta m + (1 - beta) g; theta = theta (1 - lr wd) - lr sign(m). */
static void reference_step(double *theta, double *m, const float *g)
{
    for (int i = 0; i < N; i++) {
        m[i] = BETA * m[i] + (1.0 - BETA) * g[i];
        theta[i] = theta[i] * (1.0 - LR * WEIGHT_DECAY) - LR * sign_of(m[i]);
    }
}

static int compare(const char *what, int step, const p7_tensor *t, const double *want)
{
    float got[N];
    if (p7_tensor_download(t, got, N) != P7_SUCCESS) {
        fprintf(stderr, "check_signsgd: %s\n", p7_last_error());
        return 0;
    }
    int ok = 1;
    for (int i = 0; i < N; i++)
        if (!(fabs(got[i] - want[i]) <= TOLERANCE)) {
            fprintf(stderr, "check_signsgd: step %d, %s[%d] = %.9g, reference %.9g (difference %.3g > %.0e)\n", step,
                    what, i, (double)got[i], want[i], fabs(got[i] - want[i]), TOLERANCE);
            ok = 0;
        }
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: check_signsgd PLUGIN.so\n");
        return 2;
    }
    p7_device *device = NULL;
    p7_tensor *theta = NULL;
    p7_optimizer *opt = NULL;
    int64_t shape[1] = {N};
    p7_optimizer_options options = {0};
    options.hparams = "lr=0.01, beta=0.9, weight_decay=0.1";
    p7_status st = p7_device_open(NULL, NULL, &device);
    if (st == P7_SUCCESS) st = p7_tensor_create(device, 1, shape, &theta);
    if (st == P7_SUCCESS) st = p7_tensor_upload(theta, THETA0, N);
    if (st == P7_SUCCESS) st = p7_optimizer_create(device, argv[1], &theta, 1, &options, &opt);

    double want_theta[N], want_m[N] = {0};
    for (int i = 0; i < N; i++) want_theta[i] = THETA0[i];
    int ok = st == P7_SUCCESS;
    for (int t = 0; ok && t < STEPS; t++) {
        p7_tensor *momentum;
        st = p7_tensor_set_grad(theta, GRADS[t], N);
        if (st == P7_SUCCESS) st = p7_optimizer_step(opt);
        if (st == P7_SUCCESS) st = p7_optimizer_state_by_name(opt, 0, "momentum", &momentum);
        if (st != P7_SUCCESS) break;
        reference_step(want_theta, want_m, GRADS[t]);
        ok = compare("theta", t + 1, theta, want_theta) & compare("momentum", t + 1, momentum, want_m);
    }
    if (st != P7_SUCCESS) fprintf(stderr, "check_signsgd: %s\n", p7_last_error());
    else if (ok) printf("check_signsgd: %d steps of %s match the float64 reference within %.0e\n", STEPS, argv[1],
                        TOLERANCE);
    p7_optimizer_destroy(opt);
    p7_tensor_release(theta);
    p7_device_close(device);
    return st == P7_SUCCESS && ok ? 0 : 1;
}
