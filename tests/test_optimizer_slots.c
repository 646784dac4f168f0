/* State slots that depend on hyperparameters (optimizer ABI 1.1, slots_used), with the
 * RMSprop test plugin (tests/plugins/rmsprop.c): only the slots in use are allocated,
 * the step matches a float64 reference with and without them, a change or checkpoint
 * that needs a missing slot is refused and changes nothing, and a plugin built against
 * the ABI 1.0 header (tests/plugins/abi-1.0) still loads and trains. */
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

P7_TEST_FILE_DEVICE

#define N 6
static const float THETA0[N] = {0.5f, -1.0f, 1.5f, -0.25f, 0.75f, 2.0f};
static const float G[3][N] = {
    {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f},
    {-0.05f, 0.15f, -0.25f, 0.35f, -0.45f, 0.55f},
    {0.2f, 0.2f, -0.1f, -0.1f, 0.05f, 0.01f},
};

static const char *test_plugin(const char *name)
{
    static char path[4096];
    const char *build = getenv("P7_BUILD_DIR");
    snprintf(path, sizeof path, "%s/tests/plugins/lib%s.so", build ? build : ".", name);
    return path;
}

static p7_tensor *param(void)
{
    int64_t n = N;
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, 1, &n, &t));
    P7_ASSERT_OK(p7_tensor_upload(t, THETA0, N));
    return t;
}

static p7_optimizer *make(const char *plugin, const char *hparams, p7_tensor *p)
{
    p7_optimizer_options o = {0};
    o.hparams = hparams;
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create(device, test_plugin(plugin), &p, 1, &o, &opt));
    return opt;
}

#define EXPECT_FAIL(call, code, needle)                                                            \
    do {                                                                                           \
        assert_int_equal((call), (code));                                                          \
        if (!strstr(p7_last_error(), (needle))) fail_msg("message lacks '%s': %s", (needle), p7_last_error()); \
    } while (0)

/* torch.optim.RMSprop's rule in float64 (no weight decay). */
static void rmsprop_reference(double momentum, int centered, int steps, double *theta)
{
    const double lr = 0.01, alpha = 0.9, eps = 1e-8;
    double v[N] = {0}, a[N] = {0}, b[N] = {0};
    for (int i = 0; i < N; i++) theta[i] = THETA0[i];
    for (int t = 0; t < steps; t++)
        for (int i = 0; i < N; i++) {
            double g = G[t][i];
            v[i] = alpha * v[i] + (1 - alpha) * g * g;
            double d;
            if (centered) {
                a[i] = alpha * a[i] + (1 - alpha) * g;
                d = sqrt(v[i] - a[i] * a[i]) + eps;
            } else {
                d = sqrt(v[i]) + eps;
            }
            if (momentum > 0) {
                b[i] = momentum * b[i] + g / d;
                theta[i] -= lr * b[i];
            } else {
                theta[i] -= lr * g / d;
            }
        }
}

static void run_rmsprop(const char *hparams, double momentum, int centered, int want_momentum_slot, int want_grad_avg)
{
    p7_tensor *p = param();
    p7_optimizer *opt = make("rmsprop", hparams, p);
    assert_int_equal(p7_optimizer_slots_in_use(opt), 1 + want_momentum_slot + want_grad_avg);
    assert_non_null(p7_optimizer_state(opt, 0, 0));
    assert_int_equal(p7_optimizer_state(opt, 0, 1) != NULL, want_momentum_slot);
    assert_int_equal(p7_optimizer_state(opt, 0, 2) != NULL, want_grad_avg);
    p7_tensor *t;
    if (!want_momentum_slot)
        EXPECT_FAIL(p7_optimizer_state_by_name(opt, 0, "momentum_buffer", &t), P7_ERROR_INVALID_ARGUMENT,
                    "rmsprop: state slot 'momentum_buffer' is not in use with this optimizer's hyperparameters");
    for (int s = 0; s < 3; s++) {
        P7_ASSERT_OK(p7_tensor_set_grad(p, G[s], N));
        P7_ASSERT_OK(p7_optimizer_step(opt));
    }
    double want[N];
    rmsprop_reference(momentum, centered, 3, want);
    float *got = p7_test_download(p);
    p7_test_assert_close(hparams, got, want, N, 1e-5);
    free(got);
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

static void test_only_the_slots_in_use(void **s)
{
    (void)s;
    run_rmsprop("alpha=0.9", 0, 0, 0, 0);
    run_rmsprop("alpha=0.9,momentum=0.5", 0.5, 0, 1, 0);
    run_rmsprop("alpha=0.9,centered=1", 0, 1, 0, 1);
    run_rmsprop("alpha=0.9,momentum=0.5,centered=yes", 0.5, 1, 1, 1);
}

/* The bundled Adam keeps max_exp_avg_sq (slot 2) only with AMSGrad, as torch does; turning
 * AMSGrad on later is refused by name. (Its steps against PyTorch, with and without
 * AMSGrad: test_optimizer_golden.) */
static void test_adam_amsgrad_slot(void **s)
{
    (void)s;
    p7_tensor *p = param();
    p7_optimizer_options o = {.hparams = "lr=0.01"};
    p7_optimizer *plain, *ams;
    P7_ASSERT_OK(p7_optimizer_create(device, p7_test_plugin("adam"), &p, 1, &o, &plain));
    assert_int_equal(p7_optimizer_slots_in_use(plain), 2);
    assert_null(p7_optimizer_state(plain, 0, 2));
    EXPECT_FAIL(p7_optimizer_set(plain, "amsgrad", 1.0), P7_ERROR_PLUGIN, "max_exp_avg_sq");
    P7_ASSERT_OK(p7_tensor_set_grad(p, G[0], N));
    P7_ASSERT_OK(p7_optimizer_step(plain));
    o.hparams = "lr=0.01,amsgrad=1";
    P7_ASSERT_OK(p7_optimizer_create(device, p7_test_plugin("adam"), &p, 1, &o, &ams));
    assert_int_equal(p7_optimizer_slots_in_use(ams), 3);
    assert_non_null(p7_optimizer_state(ams, 0, 2));
    assert_int_equal(p7_optimizer_slots_in_use(NULL), 0);
    p7_optimizer_destroy(plain);
    p7_optimizer_destroy(ams);
    p7_tensor_release(p);
}

/* Turning momentum on after create would need the buffer that was not allocated: refused,
 * with the slot and the setting named, and the hyperparameter keeps its value. Turning it
 * off and on again when the buffer exists is fine. */
static void test_change_needing_a_slot_is_refused(void **s)
{
    (void)s;
    p7_tensor *p = param();
    p7_optimizer *opt = make("rmsprop", "alpha=0.9", p);
    EXPECT_FAIL(p7_optimizer_set(opt, "momentum", 0.5), P7_ERROR_PLUGIN,
                "rmsprop: momentum = 0.5 needs state slot 'momentum_buffer', which this optimizer did not allocate");
    double v;
    P7_ASSERT_OK(p7_optimizer_get(opt, 0, "momentum", &v));
    assert_true(v == 0.0);
    EXPECT_FAIL(p7_optimizer_set_text(opt, "centered=on"), P7_ERROR_PLUGIN, "needs state slot 'grad_avg'");
    p7_optimizer_destroy(opt);

    opt = make("rmsprop", "momentum=0.5", p);
    P7_ASSERT_OK(p7_optimizer_set(opt, "momentum", 0.0));
    P7_ASSERT_OK(p7_optimizer_set(opt, "momentum", 0.9));
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

/* A checkpoint keeps one layout (an unused slot is saved as zeros); it loads into an
 * optimizer with the same slots, and one whose hyperparameters need a slot this optimizer
 * lacks is refused before anything changes. */
static void test_checkpoints(void **s)
{
    (void)s;
    p7_tensor *pa = param(), *pb = param(), *pc = param();
    p7_optimizer *a = make("rmsprop", "alpha=0.9,momentum=0.5", pa);
    p7_optimizer *b = make("rmsprop", "alpha=0.9,momentum=0.5", pb);
    p7_optimizer *plain = make("rmsprop", "alpha=0.9", pc);
    P7_ASSERT_OK(p7_tensor_set_grad(pa, G[0], N));
    P7_ASSERT_OK(p7_optimizer_step(a));
    FILE *f = tmpfile();
    assert_non_null(f);
    P7_ASSERT_OK(p7_optimizer_save_stream(a, f));
    rewind(f);
    P7_ASSERT_OK(p7_optimizer_load_stream(b, f));
    float va[N], vb[N];
    P7_ASSERT_OK(p7_tensor_download(p7_optimizer_state(a, 0, 1), va, N));
    P7_ASSERT_OK(p7_tensor_download(p7_optimizer_state(b, 0, 1), vb, N));
    assert_memory_equal(va, vb, sizeof va);

    rewind(f);
    EXPECT_FAIL(p7_optimizer_load_stream(plain, f), P7_ERROR_PLUGIN,
                "rmsprop: the state file (its hyperparameters) needs state slot 'momentum_buffer'");
    double v;
    P7_ASSERT_OK(p7_optimizer_get(plain, 0, "momentum", &v));
    assert_true(v == 0.0);

    /* the plain optimizer's own file (momentum slot written as zeros) loads into one with the slot */
    FILE *g = tmpfile();
    assert_non_null(g);
    P7_ASSERT_OK(p7_optimizer_save_stream(plain, g));
    rewind(g);
    P7_ASSERT_OK(p7_optimizer_load_stream(b, g));
    P7_ASSERT_OK(p7_tensor_download(p7_optimizer_state(b, 0, 1), vb, N));
    for (int i = 0; i < N; i++) assert_true(vb[i] == 0.0f);
    fclose(g);
    fclose(f);
    p7_optimizer_destroy(a);
    p7_optimizer_destroy(b);
    p7_optimizer_destroy(plain);
    p7_tensor_release(pa);
    p7_tensor_release(pb);
    p7_tensor_release(pc);
}

/* The signsgd example compiled against the ABI 1.0 header: its table is the 1.0 size and
 * has no slots_used; it loads, gets every slot, and trains (a quadratic's distance falls). */
static void test_abi_1_0_plugin_loads_and_trains(void **s)
{
    (void)s;
    p7_optimizer_plugin *pl;
    P7_ASSERT_OK(p7_optimizer_plugin_open(test_plugin("signsgd_abi_1_0"), &pl));
    const p7_opt_plugin *vt = p7_optimizer_plugin_table(pl);
    assert_int_equal(vt->abi_minor, 0);
    assert_int_equal(vt->struct_size, P7_OPT_PLUGIN_MIN_SIZE);
    assert_true(vt->struct_size < sizeof(p7_opt_plugin));
    p7_optimizer_plugin_close(pl);

    p7_tensor *p = param();
    p7_optimizer *opt = make("signsgd_abi_1_0", "lr=0.05,beta=0.5", p);
    p7_tensor *m;
    P7_ASSERT_OK(p7_optimizer_state_by_name(opt, 0, "momentum", &m));
    double before = 0, after = 0;
    for (int i = 0; i < N; i++) before += (double)THETA0[i] * THETA0[i];
    for (int t = 0; t < 10; t++) {
        float w[N];
        P7_ASSERT_OK(p7_tensor_download(p, w, N));
        P7_ASSERT_OK(p7_tensor_set_grad(p, w, N)); /* the gradient of |w|^2 / 2 */
        P7_ASSERT_OK(p7_optimizer_step(opt));
    }
    float w[N];
    P7_ASSERT_OK(p7_tensor_download(p, w, N));
    for (int i = 0; i < N; i++) after += (double)w[i] * w[i];
    print_message("ABI 1.0 signsgd: |w|^2 %.4f -> %.4f\n", before, after);
    assert_true(after < 0.5 * before);
    p7_optimizer_destroy(opt);
    p7_tensor_release(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_the_slots_in_use),
        cmocka_unit_test(test_adam_amsgrad_slot),
        cmocka_unit_test(test_change_needing_a_slot_is_refused),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_abi_1_0_plugin_loads_and_trains),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
