/* The optimizer loader and host side: every loader error (missing file, not a plugin,
 * ABI too old / too new, a declining plugin, unknown hyperparameter, value out of range,
 * IVON step without a sample), short-name search, hyperparameters by name, and the state
 * save/load round trip (3 steps, save, load into a fresh instance, 3 more == 6 steps,
 * bit for bit) for each bundled plugin. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "p7/optimizer.h"
#include "tensor/tensor_internal.h"
#include "p7_test_support.h"

static p7_device *device;

static int setup(void **state)
{
    (void)state;
    device = p7_test_open_device(NULL);
    return device ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    p7_device_close(device);
    return 0;
}

static const char *build_dir(void)
{
    const char *dir = getenv("P7_BUILD_DIR");
    return dir ? dir : ".";
}

/* <build>/<sub>/lib<name>.so */
static const char *lib(const char *sub, const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s/lib%s.so", build_dir(), sub, name);
    return path;
}

#define EXPECT_FAIL(call, status, needle)                                                            \
    do {                                                                                             \
        p7_status st_ = (call);                                                                      \
        if (st_ != (status) || !strstr(p7_last_error(), (needle))) {                                 \
            print_error("%s: got %s \"%s\", want %s containing \"%s\"\n", #call, p7_status_string(st_), \
                        p7_last_error(), p7_status_string(status), (needle));                        \
            fail();                                                                                  \
        }                                                                                            \
    } while (0)

static p7_tensor *vec(size_t n, float base)
{
    int64_t shape = (int64_t)n;
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, 1, &shape, &t));
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = base + 0.1f * (float)i - 0.05f * (float)(i * i % 7);
    P7_ASSERT_OK(p7_tensor_upload(t, v, n));
    free(v);
    P7_ASSERT_OK(p7_tensor_set_requires_grad(t, 1));
    return t;
}

static void set_grad(p7_tensor *p, const float *g)
{
    if (!p->grad) P7_ASSERT_OK(p7_tensor_create(p->device, p->ndim, p->shape, &p->grad));
    P7_ASSERT_OK(p7_tensor_upload(p->grad, g, p7_tensor_numel(p)));
}

/* ---- loader errors ---- */

static void test_missing_file(void **s)
{
    (void)s;
    p7_optimizer_plugin *p = NULL;
    EXPECT_FAIL(p7_optimizer_plugin_open("nosuch", &p), P7_ERROR_PLUGIN, "not found");
    assert_non_null(strstr(p7_last_error(), "plugins/libnosuch.so")); /* lists where it looked */
    assert_null(p);
    EXPECT_FAIL(p7_optimizer_plugin_open("/nonexistent/dir/libsgd.so", &p), P7_ERROR_PLUGIN, "no such file");
    p7_tensor *t = vec(4, 0.0f);
    p7_optimizer *opt = NULL;
    EXPECT_FAIL(p7_optimizer_create(device, "nosuch", &t, 1, NULL, &opt), P7_ERROR_PLUGIN, "not found");
    assert_null(opt);
    p7_tensor_release(t);
}

static void test_not_a_plugin(void **s)
{
    (void)s;
    p7_optimizer_plugin *p = NULL;
    EXPECT_FAIL(p7_optimizer_plugin_open(lib("tests/plugins", "no_entry"), &p), P7_ERROR_PLUGIN,
                "is not a p7 optimizer plugin");
    assert_non_null(strstr(p7_last_error(), P7_OPT_ENTRY_SYMBOL));
    /* a file that is no shared object at all */
    char path[4096];
    snprintf(path, sizeof path, "%s/CMakeCache.txt", build_dir());
    EXPECT_FAIL(p7_optimizer_plugin_open(path, &p), P7_ERROR_PLUGIN, "could not be loaded");
}

static void test_abi_mismatch(void **s)
{
    (void)s;
    p7_optimizer_plugin *p = NULL;
    EXPECT_FAIL(p7_optimizer_plugin_open(lib("tests/plugins", "abi_old"), &p), P7_ERROR_PLUGIN, "too old");
    EXPECT_FAIL(p7_optimizer_plugin_open(lib("tests/plugins", "abi_new"), &p), P7_ERROR_PLUGIN, "too new");
    EXPECT_FAIL(p7_optimizer_plugin_open(lib("tests/plugins", "declines"), &p), P7_ERROR_PLUGIN, "declined");
    /* the one missing function, not the list of all seven; a short table says what to do */
    EXPECT_FAIL(p7_optimizer_plugin_open(lib("tests/plugins", "faulty_null_step"), &p), P7_ERROR_PLUGIN,
                "is malformed: the required function step is NULL");
    EXPECT_FAIL(p7_optimizer_plugin_open(lib("tests/plugins", "faulty_small_table"), &p), P7_ERROR_PLUGIN,
                "set struct_size to sizeof(p7_opt_plugin) and rebuild it");
    assert_null(p);
}

/* Short names: the build tree's plugins folder beside tests/, then P7_PLUGIN_PATH. */
static void test_short_names(void **s)
{
    (void)s;
    const char *names[] = {"sgd", "adam", "ivon"};
    for (int i = 0; i < 3; i++) {
        p7_optimizer_plugin *p;
        P7_ASSERT_OK(p7_optimizer_plugin_open(names[i], &p));
        assert_string_equal(p7_optimizer_plugin_table(p)->name, names[i]);
        char help[4096];
        p7_optimizer_plugin_help(p, help, sizeof help);
        assert_non_null(strstr(help, "lr"));
        p7_optimizer_plugin_close(p);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "/nonexistent:%s/tests/plugins", build_dir());
    setenv("P7_PLUGIN_PATH", dir, 1);
    p7_optimizer_plugin *p = NULL;
    /* found through P7_PLUGIN_PATH, then refused for its ABI: proof it was found */
    EXPECT_FAIL(p7_optimizer_plugin_open("abi_new", &p), P7_ERROR_PLUGIN, "too new");
    EXPECT_FAIL(p7_optimizer_plugin_open("nosuch2", &p), P7_ERROR_PLUGIN, "/nonexistent/libnosuch2.so");
    unsetenv("P7_PLUGIN_PATH");
}

/* The text is checked against the schema alone, before any device work: repeated names,
 * words that are not booleans, and values of any length keep the reason in the message. */
static void test_check_hparams_without_an_instance(void **s)
{
    (void)s;
    p7_optimizer_plugin *p = NULL;
    P7_ASSERT_OK(p7_optimizer_plugin_open("sgd", &p));
    P7_ASSERT_OK(p7_optimizer_plugin_check_hparams(p, NULL));
    P7_ASSERT_OK(p7_optimizer_plugin_check_hparams(p, "lr=0.1, momentum=0.9, nesterov=on"));
    EXPECT_FAIL(p7_optimizer_plugin_check_hparams(p, "lr=0.1,momentum=0.9,lr=0.01"), P7_ERROR_PLUGIN,
                "lr is given twice");
    EXPECT_FAIL(p7_optimizer_plugin_check_hparams(p, "nesterov=maybe"), P7_ERROR_PLUGIN,
                "'maybe' is not a boolean: expected true/false, yes/no, on/off or 1/0");
    EXPECT_FAIL(p7_optimizer_plugin_check_hparams(p, "lr=-1"), P7_ERROR_PLUGIN, "lr = -1 is out of range");
    EXPECT_FAIL(p7_optimizer_plugin_check_hparams(p, "lrr=1"), P7_ERROR_PLUGIN, "no hyperparameter 'lrr'");
    char text[6000] = "lr=";
    memset(text + 3, '7', sizeof text - 5);
    text[sizeof text - 2] = 'x';
    text[sizeof text - 1] = '\0';
    EXPECT_FAIL(p7_optimizer_plugin_check_hparams(p, text), P7_ERROR_PLUGIN, "' is not a number");
    memset(text, 'k', sizeof text - 3);
    memcpy(text + sizeof text - 3, "=1", 3);
    EXPECT_FAIL(p7_optimizer_plugin_check_hparams(p, text), P7_ERROR_PLUGIN, "'; valid: lr, momentum");
    EXPECT_FAIL(p7_optimizer_plugin_check_hparams(NULL, "lr=1"), P7_ERROR_INVALID_ARGUMENT, "NULL plugin");
    p7_optimizer_plugin_close(p);

    /* an instance refuses repeated names too */
    p7_tensor *t = vec(3, 1.0f);
    p7_optimizer *opt = NULL;
    p7_optimizer_options o = {0};
    o.hparams = "lr=0.1,lr=0.2";
    EXPECT_FAIL(p7_optimizer_create(device, "adam", &t, 1, &o, &opt), P7_ERROR_PLUGIN, "lr is given twice");
    assert_null(opt);
    p7_tensor_release(t);
}

static void test_hparams(void **s)
{
    (void)s;
    p7_tensor *t = vec(5, 1.0f);
    p7_optimizer *opt = NULL;
    p7_optimizer_options o = {0};
    o.hparams = "lrr=0.1";
    EXPECT_FAIL(p7_optimizer_create(device, "sgd", &t, 1, &o, &opt), P7_ERROR_PLUGIN,
                "no hyperparameter 'lrr'; valid: lr, momentum, dampening, weight_decay, nesterov");
    o.hparams = "lr=0.1, beta1 = 1.5";
    EXPECT_FAIL(p7_optimizer_create(device, "adam", &t, 1, &o, &opt), P7_ERROR_PLUGIN, "beta1 = 1.5 is out of range");
    o.hparams = "lr=abc";
    EXPECT_FAIL(p7_optimizer_create(device, "adam", &t, 1, &o, &opt), P7_ERROR_PLUGIN, "not a number");
    o.hparams = "nesterov=1";
    EXPECT_FAIL(p7_optimizer_create(device, "sgd", &t, 1, &o, &opt), P7_ERROR_PLUGIN, "nesterov needs momentum");
    o.hparams = "mc_samples=2.5";
    EXPECT_FAIL(p7_optimizer_create(device, "ivon", &t, 1, &o, &opt), P7_ERROR_PLUGIN, "out of range");
    assert_null(opt);

    o.hparams = "lr=0.5, momentum=0.9, nesterov=yes";
    P7_ASSERT_OK(p7_optimizer_create(device, "sgd", &t, 1, &o, &opt));
    double v;
    P7_ASSERT_OK(p7_optimizer_get(opt, 0, "nesterov", &v));
    assert_true(v == 1.0);
    P7_ASSERT_OK(p7_optimizer_set(opt, "lr", 0.25));
    P7_ASSERT_OK(p7_optimizer_get(opt, 0, "lr", &v));
    assert_true(v == 0.25);
    EXPECT_FAIL(p7_optimizer_set(opt, "lr", -1.0), P7_ERROR_PLUGIN, "lr = -1 is out of range");
    EXPECT_FAIL(p7_optimizer_set(opt, "lr", NAN), P7_ERROR_PLUGIN, "out of range");
    EXPECT_FAIL(p7_optimizer_set(opt, "lr", INFINITY), P7_ERROR_PLUGIN, "out of range");
    EXPECT_FAIL(p7_optimizer_set(opt, "betas", 0.9), P7_ERROR_PLUGIN, "valid: lr,");
    EXPECT_FAIL(p7_optimizer_set(opt, "momentum", 0.0), P7_ERROR_PLUGIN, "nesterov needs momentum");
    P7_ASSERT_OK(p7_optimizer_get(opt, 0, "momentum", &v));
    assert_true(v == 0.9); /* a refused value leaves the old one */
    P7_ASSERT_OK(p7_optimizer_set_text(opt, "nesterov=off, momentum=0"));
    assert_int_equal(p7_optimizer_mc_samples(opt), 1);
    assert_false(p7_optimizer_samples_weights(opt));
    P7_ASSERT_OK(p7_optimizer_sample(opt)); /* no-ops for a plugin that does not sample */
    P7_ASSERT_OK(p7_optimizer_restore(opt, 1));
    p7_optimizer_destroy(opt);

    /* ess from the training-set size, unless set explicitly */
    o.hparams = "mc_samples=3";
    o.dataset_size = 50000;
    P7_ASSERT_OK(p7_optimizer_create(device, "ivon", &t, 1, &o, &opt));
    P7_ASSERT_OK(p7_optimizer_get(opt, 0, "ess", &v));
    assert_true(v == 50000.0);
    assert_int_equal(p7_optimizer_mc_samples(opt), 3);
    assert_true(p7_optimizer_samples_weights(opt));
    p7_optimizer_destroy(opt);
    o.hparams = "ess=10, clip_radius=inf";
    P7_ASSERT_OK(p7_optimizer_create(device, "ivon", &t, 1, &o, &opt));
    P7_ASSERT_OK(p7_optimizer_get(opt, 0, "ess", &v));
    assert_true(v == 10.0);
    p7_optimizer_destroy(opt);
    p7_tensor_release(t);
}

static void test_ivon_protocol_errors(void **s)
{
    (void)s;
    p7_tensor *t = vec(5, 1.0f);
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create(device, "ivon", &t, 1, NULL, &opt));
    EXPECT_FAIL(p7_optimizer_step(opt), P7_ERROR_STATE, "step() without a sample");
    EXPECT_FAIL(p7_optimizer_restore(opt, 1), P7_ERROR_STATE, "restore() without a sample()");
    P7_ASSERT_OK(p7_optimizer_sample(opt));
    EXPECT_FAIL(p7_optimizer_sample(opt), P7_ERROR_STATE, "call restore() first");
    EXPECT_FAIL(p7_optimizer_step(opt), P7_ERROR_STATE, "sampled weights are in place");
    P7_ASSERT_OK(p7_optimizer_restore(opt, 0));
    EXPECT_FAIL(p7_optimizer_step(opt), P7_ERROR_STATE, "step() without a sample");
    /* a parameter with no gradient counts as zero gradient */
    P7_ASSERT_OK(p7_optimizer_sample(opt));
    P7_ASSERT_OK(p7_optimizer_restore(opt, 1));
    P7_ASSERT_OK(p7_optimizer_step(opt));
    p7_optimizer_destroy(opt);
    p7_tensor_release(t);
}

static void test_create_arguments(void **s)
{
    (void)s;
    p7_tensor *t = vec(3, 0.0f);
    p7_tensor *twice[2] = {t, t};
    p7_optimizer *opt = NULL;
    assert_int_equal(p7_optimizer_create(device, "sgd", twice, 2, NULL, &opt), P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_optimizer_create(device, "sgd", &t, 0, NULL, &opt), P7_ERROR_INVALID_ARGUMENT);
    uint32_t bad_group = P7_OPT_MAX_GROUPS;
    p7_optimizer_options o = {0};
    o.groups = &bad_group;
    assert_int_equal(p7_optimizer_create(device, "sgd", &t, 1, &o, &opt), P7_ERROR_INVALID_ARGUMENT);
    assert_null(opt);
    p7_tensor_release(t);
}

/* Per-group hyperparameters: group 1 without weight decay. */
static void test_groups(void **s)
{
    (void)s;
    p7_tensor *a = vec(4, 1.0f), *b = vec(4, 1.0f);
    p7_tensor *ps[2] = {a, b};
    uint32_t groups[2] = {0, 1};
    p7_optimizer_options o = {0};
    o.hparams = "lr=0.1,weight_decay=0.5";
    o.groups = groups;
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create(device, "sgd", ps, 2, &o, &opt));
    P7_ASSERT_OK(p7_optimizer_set_group(opt, 1, "weight_decay", 0.0));
    EXPECT_FAIL(p7_optimizer_set_group(opt, 2, "lr", 0.1), P7_ERROR_INVALID_ARGUMENT, "group 2");
    float zero[4] = {0}, va[4], vb[4], v0[4];
    P7_ASSERT_OK(p7_tensor_download(a, v0, 4));
    set_grad(a, zero);
    set_grad(b, zero);
    P7_ASSERT_OK(p7_optimizer_step(opt));
    P7_ASSERT_OK(p7_tensor_download(a, va, 4));
    P7_ASSERT_OK(p7_tensor_download(b, vb, 4));
    for (int i = 0; i < 4; i++) {
        assert_true(fabsf(va[i] - v0[i] * (1.0f - 0.05f)) < 1e-6f);
        assert_true(vb[i] == v0[i]);
    }
    p7_optimizer_destroy(opt);
    p7_tensor_release(a);
    p7_tensor_release(b);
}

/* ---- save / load ---- */

typedef struct run {
    p7_tensor *params[2];
    p7_optimizer *opt;
} run;

static void run_open(run *r, const char *name, const char *hparams)
{
    r->params[0] = vec(6, 0.5f);
    r->params[1] = vec(11, -0.3f);
    p7_optimizer_options o = {0};
    o.hparams = hparams;
    o.seed = 1234;
    P7_ASSERT_OK(p7_optimizer_create(device, name, r->params, 2, &o, &r->opt));
}

static void run_close(run *r)
{
    p7_optimizer_destroy(r->opt);
    p7_tensor_release(r->params[0]);
    p7_tensor_release(r->params[1]);
}

/* Gradient of sum_i c_i (theta_i - 0.2)^2 at the current (possibly sampled) weights, so a
 * sampler's noise reaches the state; step t also scales it, so each step differs. */
static void grads_from_weights(run *r, int t)
{
    for (int k = 0; k < 2; k++) {
        size_t n = p7_tensor_numel(r->params[k]);
        float w[16], g[16];
        P7_ASSERT_OK(p7_tensor_download(r->params[k], w, n));
        for (size_t i = 0; i < n; i++) g[i] = (1.0f + 0.1f * (float)(i % 5)) * (w[i] - 0.2f) * (1.0f + 0.05f * (float)t);
        set_grad(r->params[k], g);
    }
}

static void one_step(run *r, int t)
{
    unsigned mc = p7_optimizer_mc_samples(r->opt);
    for (unsigned s = 0; s < mc; s++) {
        P7_ASSERT_OK(p7_optimizer_sample(r->opt));
        grads_from_weights(r, t);
        P7_ASSERT_OK(p7_optimizer_restore(r->opt, 1));
    }
    if (!p7_optimizer_samples_weights(r->opt)) grads_from_weights(r, t);
    P7_ASSERT_OK(p7_optimizer_step(r->opt));
}

static void same_bits(const p7_tensor *a, const p7_tensor *b)
{
    float x[16], y[16];
    size_t n = p7_tensor_numel(a);
    P7_ASSERT_OK(p7_tensor_download(a, x, n));
    P7_ASSERT_OK(p7_tensor_download(b, y, n));
    assert_memory_equal(x, y, n * sizeof *x);
}

/* fresh_hparams: the second instance's, other than hparams so that load must restore
 * them, but with the same state slots (those are fixed at create) */
static void round_trip(const char *name, const char *hparams, const char *fresh_hparams)
{
    char path[] = "/tmp/p7_opt_state_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);

    run whole, first, second;
    run_open(&whole, name, hparams);
    for (int t = 0; t < 6; t++) one_step(&whole, t);

    run_open(&first, name, hparams);
    for (int t = 0; t < 3; t++) one_step(&first, t);
    P7_ASSERT_OK(p7_optimizer_save(first.opt, path));
    /* a fresh instance with other hyperparameters: load must restore them too */
    run_open(&second, name, fresh_hparams);
    for (int k = 0; k < 2; k++) {
        float w[16];
        size_t n = p7_tensor_numel(first.params[k]);
        P7_ASSERT_OK(p7_tensor_download(first.params[k], w, n));
        P7_ASSERT_OK(p7_tensor_upload(second.params[k], w, n));
    }
    P7_ASSERT_OK(p7_optimizer_load_state(second.opt, path));
    for (int t = 3; t < 6; t++) one_step(&second, t);

    const p7_opt_plugin *vt = p7_optimizer_table(whole.opt);
    for (int k = 0; k < 2; k++) {
        same_bits(whole.params[k], second.params[k]);
        for (unsigned sl = 0; sl < vt->slot_count; sl++) {
            p7_tensor *a = p7_optimizer_state(whole.opt, (size_t)k, sl), *b = p7_optimizer_state(second.opt, (size_t)k, sl);
            assert_int_equal(a != NULL, b != NULL); /* the same slots in use */
            if (a) same_bits(a, b);
        }
    }

    /* a state file of another plugin is refused */
    run other;
    run_open(&other, strcmp(name, "sgd") == 0 ? "adam" : "sgd", NULL);
    EXPECT_FAIL(p7_optimizer_load_state(other.opt, path), P7_ERROR_FORMAT, "written by plugin");
    run_close(&other);

    run_close(&whole);
    run_close(&first);
    run_close(&second);
    unlink(path);
}

static void test_round_trip_sgd(void **s) { (void)s; round_trip("sgd", "lr=0.05,momentum=0.9,weight_decay=0.01,nesterov=1", "lr=0.0123"); }
static void test_round_trip_adam(void **s)
{
    (void)s;
    /* AMSGrad's max_exp_avg_sq exists only where create asked for it */
    round_trip("adam", "lr=0.01,weight_decay=0.1,decoupled=1,amsgrad=1", "lr=0.0123,amsgrad=1");
    round_trip("adam", "lr=0.01,weight_decay=0.1,decoupled=1", "lr=0.0123");
}
static void test_round_trip_ivon(void **s) { (void)s; round_trip("ivon", "lr=0.1,ess=200,mc_samples=2,beta2=0.99", "lr=0.0123"); }

static void test_load_garbage(void **s)
{
    (void)s;
    char path[] = "/tmp/p7_opt_bad_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a state file at all", 23), 23);
    close(fd);
    run r;
    run_open(&r, "sgd", NULL);
    EXPECT_FAIL(p7_optimizer_load_state(r.opt, path), P7_ERROR_FORMAT, "bad magic");
    run_close(&r);
    unlink(path);
}

/* ---- all-or-nothing loading ---- */

typedef struct bytes {
    char *data;
    size_t size;
} bytes;

static bytes save_bytes(p7_optimizer *opt)
{
    bytes b = {0};
    FILE *f = open_memstream(&b.data, &b.size);
    assert_non_null(f);
    P7_ASSERT_OK(p7_optimizer_save_stream(opt, f));
    assert_int_equal(fclose(f), 0);
    return b;
}

static p7_status load_bytes(p7_optimizer *opt, const bytes *b)
{
    FILE *f = fmemopen(b->data, b->size, "rb");
    assert_non_null(f);
    p7_status st = p7_optimizer_load_stream(opt, f);
    fclose(f);
    return st;
}

/* The file's value of hyperparameter `name` (group 0): it follows the name. */
static double *hparam_in_file(bytes *b, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i + n + 8 <= b->size; i++)
        if (memcmp(b->data + i, name, n) == 0) return (double *)(void *)(b->data + i + n);
    fail_msg("no %s in the state file", name);
    return NULL;
}

/* A refused file leaves the optimizer exactly as it was: the slots are not
 * overwritten before the blob and the hyperparameters are checked. */
static void test_refused_load_changes_nothing(void **s)
{
    (void)s;
    run target, donor;
    run_open(&target, "adam", "lr=0.01,amsgrad=1");
    for (int t = 0; t < 2; t++) one_step(&target, t);
    run_open(&donor, "adam", "lr=0.02,amsgrad=1");
    for (int t = 0; t < 4; t++) one_step(&donor, t);
    bytes before = save_bytes(target.opt), file = save_bytes(donor.opt);

    /* Adam's blob (the last 28 bytes: layout, count, steps) with an unknown layout;
     * the message names the layout, not a parameter count that is right. */
    file.data[file.size - 28] = 2;
    EXPECT_FAIL(load_bytes(target.opt, &file), P7_ERROR_FORMAT, "blob layout 2 is not 1");
    bytes after = save_bytes(target.opt);
    assert_int_equal(after.size, before.size);
    assert_memory_equal(after.data, before.data, before.size);
    free(after.data);

    /* The blob cut short. */
    file.data[file.size - 28] = 1;
    file.size--;
    EXPECT_FAIL(load_bytes(target.opt, &file), P7_ERROR_FORMAT, "truncated blob");
    after = save_bytes(target.opt);
    assert_memory_equal(after.data, before.data, before.size);
    free(after.data);

    free(before.data);
    free(file.data);
    run_close(&target);
    run_close(&donor);
}

/* SGD refuses nesterov without momentum. A file with momentum 0 and nesterov off is
 * valid, and loads into an optimizer that has nesterov on (momentum, index 1, would
 * go in before nesterov, index 4); a file with nesterov on and momentum 0 is refused
 * without leaving any of its hyperparameters behind. */
static void test_load_hparam_combination(void **s)
{
    (void)s;
    run plain, nesterov;
    run_open(&plain, "sgd", "lr=0.2");
    run_open(&nesterov, "sgd", "lr=0.05,momentum=0.9,nesterov=1");
    bytes file = save_bytes(plain.opt), before = save_bytes(nesterov.opt);
    P7_ASSERT_OK(load_bytes(nesterov.opt, &file));
    double v;
    P7_ASSERT_OK(p7_optimizer_get(nesterov.opt, 0, "momentum", &v));
    assert_true(v == 0.0);
    P7_ASSERT_OK(p7_optimizer_get(nesterov.opt, 0, "lr", &v));
    assert_true(v == 0.2);
    P7_ASSERT_OK(load_bytes(nesterov.opt, &before));

    double one = 1.0;
    memcpy(hparam_in_file(&file, "nesterov"), &one, sizeof one);
    EXPECT_FAIL(load_bytes(nesterov.opt, &file), P7_ERROR_PLUGIN, "nesterov needs momentum");
    bytes after = save_bytes(nesterov.opt);
    assert_int_equal(after.size, before.size);
    assert_memory_equal(after.data, before.data, before.size);
    free(after.data);

    double nan_value = NAN;
    memcpy(hparam_in_file(&file, "nesterov"), &nan_value, sizeof nan_value);
    EXPECT_FAIL(load_bytes(nesterov.opt, &file), P7_ERROR_PLUGIN, "out of range");
    after = save_bytes(nesterov.opt);
    assert_memory_equal(after.data, before.data, before.size);
    free(after.data);

    free(file.data);
    free(before.data);
    run_close(&plain);
    run_close(&nesterov);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_a_plugin),
        cmocka_unit_test(test_abi_mismatch),
        cmocka_unit_test(test_short_names),
        cmocka_unit_test(test_hparams),
        cmocka_unit_test(test_check_hparams_without_an_instance),
        cmocka_unit_test(test_ivon_protocol_errors),
        cmocka_unit_test(test_create_arguments),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_round_trip_sgd),
        cmocka_unit_test(test_round_trip_adam),
        cmocka_unit_test(test_round_trip_ivon),
        cmocka_unit_test(test_load_garbage),
        cmocka_unit_test(test_refused_load_changes_nothing),
        cmocka_unit_test(test_load_hparam_combination),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
