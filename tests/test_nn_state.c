/* Model state files: a saved model loads into a fresh one bit for bit (parameters
 * and BatchNorm buffers), and every broken file is refused with a message naming
 * the problem, leaving the model untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "p7_test_support.h"

static p7_device *device;
static char dir[64];

static int setup(void **state)
{
    (void)state;
    device = p7_test_open_device(NULL);
    snprintf(dir, sizeof dir, "/tmp/p7-state-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    p7_device_close(device);
    return system(cmd) == 0 ? 0 : -1;
}

/* All state of a model (parameters, then buffers) as one host array. */
static float *snapshot(const p7_model *m, size_t *total)
{
    size_t n = 0, np = p7_model_param_count(m), nb = p7_model_buffer_count(m);
    for (size_t i = 0; i < np; i++) n += p7_tensor_numel(p7_model_param(m, i, NULL));
    for (size_t i = 0; i < nb; i++) n += p7_tensor_numel(p7_model_buffer(m, i, NULL));
    float *all = malloc(n * sizeof *all), *at = all;
    for (size_t i = 0; i < np + nb; i++) {
        p7_tensor *t = i < np ? p7_model_param(m, i, NULL) : p7_model_buffer(m, i - np, NULL);
        P7_ASSERT_OK(p7_tensor_download(t, at, p7_tensor_numel(t)));
        at += p7_tensor_numel(t);
    }
    *total = n;
    return all;
}

/* One training-mode forward so the BatchNorm running statistics are not the defaults. */
static void touch_running_stats(p7_model *m)
{
    const int64_t xs[4] = {4, 3, 32, 32};
    p7_tensor *x, *y;
    P7_ASSERT_OK(p7_tensor_create(device, 4, xs, &x));
    P7_ASSERT_OK(p7_tensor_fill_normal(x, 9, 0, 0.5f, 1.0f));
    P7_ASSERT_OK(p7_model_forward(m, NULL, x, 1, &y));
    p7_tensor_release(x);
    p7_tensor_release(y);
}

static void test_round_trip(void **state)
{
    (void)state;
    p7_model *a, *b;
    P7_ASSERT_OK(p7_model_simple_cnn(device, 2, 10, 0.5f, -0.5f, 1, &a));
    P7_ASSERT_OK(p7_model_simple_cnn(device, 2, 10, 0.5f, -0.5f, 2, &b));
    touch_running_stats(a);
    assert_int_equal(p7_model_buffer_count(a), 4);
    char path[128];
    snprintf(path, sizeof path, "%s/model.p7", dir);
    P7_ASSERT_OK(p7_model_save(a, path));
    size_t na, nb;
    float *sa = snapshot(a, &na), *sb = snapshot(b, &nb);
    assert_int_equal(na, nb);
    assert_true(memcmp(sa, sb, na * sizeof *sa) != 0); /* different seeds differ */
    P7_ASSERT_OK(p7_model_load(b, path));
    free(sb);
    sb = snapshot(b, &nb);
    assert_memory_equal(sa, sb, na * sizeof *sa);
    free(sa);
    free(sb);
    p7_model_destroy(a);
    p7_model_destroy(b);
}

static void expect_refused(p7_model *m, const char *path, p7_status want, const char *words)
{
    size_t n0, n1;
    float *before = snapshot(m, &n0);
    assert_int_equal(p7_model_load(m, path), want);
    const char *msg = p7_last_error();
    if (!strstr(msg, words)) fail_msg("message '%s' lacks '%s'", msg, words);
    float *after = snapshot(m, &n1);
    assert_memory_equal(before, after, n0 * sizeof *before); /* all or nothing */
    free(before);
    free(after);
}

static void test_broken_files_refused(void **state)
{
    (void)state;
    p7_model *m, *other;
    P7_ASSERT_OK(p7_model_simple_cnn(device, 1, 10, 0, 0, 3, &m));
    char good[128], path[160];
    snprintf(good, sizeof good, "%s/good.p7", dir);
    P7_ASSERT_OK(p7_model_save(m, good));

    snprintf(path, sizeof path, "%s/missing.p7", dir);
    expect_refused(m, path, P7_ERROR_IO, "missing.p7");

    snprintf(path, sizeof path, "%s/text.p7", dir);
    FILE *f = fopen(path, "wb");
    fputs("not a checkpoint at all", f);
    fclose(f);
    expect_refused(m, path, P7_ERROR_FORMAT, "bad magic");

    /* the second half of the file cut off: refused, and nothing half-loaded */
    FILE *in = fopen(good, "rb");
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    char *bytes = malloc((size_t)size);
    assert_true(fread(bytes, 1, (size_t)size, in) == (size_t)size);
    fclose(in);
    snprintf(path, sizeof path, "%s/cut.p7", dir);
    f = fopen(path, "wb");
    fwrite(bytes, 1, (size_t)size / 2, f);
    fclose(f);
    P7_ASSERT_OK(p7_model_simple_cnn(device, 1, 10, 0, 0, 4, &other));
    expect_refused(other, path, P7_ERROR_FORMAT, "truncated");
    free(bytes);

    /* a model with another shape: the file's fc is [10, 4096], this one's [20, 4096] */
    p7_model *wide;
    P7_ASSERT_OK(p7_model_simple_cnn(device, 1, 20, 0, 0, 3, &wide));
    expect_refused(wide, good, P7_ERROR_INVALID_SHAPE, "fc.weight is [10, 4096] in the file but [20, 4096]");
    /* a BatchEnsemble model has more tensors than the plain file */
    p7_model *be;
    P7_ASSERT_OK(p7_model_simple_cnn(device, 2, 10, 0.5f, 0.5f, 3, &be));
    expect_refused(be, good, P7_ERROR_FORMAT, "tensors; the model has");

    p7_model_destroy(m);
    p7_model_destroy(other);
    p7_model_destroy(wide);
    p7_model_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_broken_files_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
