/* The out-of-tree plugin example (docs/examples/signsgd) as a stranger would build it:
 * `cmake --install` this build tree into a temporary prefix, configure and build the
 * example against it with find_package(p7), run its documented step-by-step check (a
 * program linked with p7::p7 from the installed tree, no source tree involved) and the
 * installed `p7plugin check` on it, then
 * load the resulting libsignsgd.so and train a small model with it until the loss falls. */
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
#include "p7_test_support.h"

#define BATCH 24
#define CLASSES 3

static p7_device *device;
static char tmp[256];

static int setup(void **state)
{
    (void)state;
    device = p7_test_open_device(NULL);
    snprintf(tmp, sizeof tmp, "/tmp/p7_plugin_example_XXXXXX");
    return device && mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    p7_device_close(device);
    if (tmp[0] && !getenv("P7_KEEP_TMP")) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
    return 0;
}

static void run_or_fail(const char *what, const char *cmd)
{
    char full[8192];
    snprintf(full, sizeof full, "%s >> '%s/log.txt' 2>&1", cmd, tmp);
    if (system(full) != 0) {
        print_error("%s failed: %s\n(see %s/log.txt; P7_KEEP_TMP=1 keeps it)\n", what, cmd, tmp);
        char show[512];
        snprintf(show, sizeof show, "tail -n 30 '%s/log.txt' >&2", tmp);
        if (system(show) != 0) print_error("(no log)\n");
        fail();
    }
}

/* Under -DP7_SANITIZE=ON the installed libp7.so needs the sanitizer runtime first in the
 * program that loads it, so the example's check program is built with it too. */
#if defined(__SANITIZE_ADDRESS__)
#define EXAMPLE_FLAGS "-DCMAKE_C_FLAGS=-fsanitize=address,undefined -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EXAMPLE_FLAGS "-DCMAKE_C_FLAGS=-fsanitize=address,undefined -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"
#endif
#endif
#ifndef EXAMPLE_FLAGS
#define EXAMPLE_FLAGS ""
#endif

static void build_example(char *plugin_path, size_t size)
{
    const char *build = getenv("P7_BUILD_DIR"), *source = getenv("P7_SOURCE_DIR");
    if (!build || !source) {
        print_error("P7_BUILD_DIR and P7_SOURCE_DIR must be set (ctest sets them)\n");
        fail();
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cmake --install '%s' --prefix '%s/prefix'", build, tmp);
    run_or_fail("install", cmd);
    snprintf(cmd, sizeof cmd, "%s/prefix/lib/cmake/p7/p7Config.cmake", tmp);
    assert_int_equal(access(cmd, R_OK), 0);
    snprintf(cmd, sizeof cmd, "%s/prefix/include/p7/optimizer_plugin.h", tmp);
    assert_int_equal(access(cmd, R_OK), 0);
    snprintf(cmd, sizeof cmd,
             "cmake -S '%s/docs/examples/signsgd' -B '%s/build' -DCMAKE_PREFIX_PATH='%s/prefix' "
             "-DCMAKE_BUILD_TYPE=Release %s",
             source, tmp, tmp, EXAMPLE_FLAGS);
    run_or_fail("configure", cmd);
    snprintf(cmd, sizeof cmd, "cmake --build '%s/build'", tmp);
    run_or_fail("build", cmd);
    snprintf(plugin_path, size, "%s/build/libsignsgd.so", tmp);
    assert_int_equal(access(plugin_path, R_OK), 0);
    /* the documented check, as the author runs it: a program linked with the installed p7::p7 */
    snprintf(cmd, sizeof cmd, "cd '%s' && build/check_signsgd build/libsignsgd.so", tmp);
    run_or_fail("check_signsgd (linked with p7::p7)", cmd);
    snprintf(cmd, sizeof cmd, "readelf -d '%s/build/check_signsgd' | grep -q 'NEEDED.*libp7\\.so'", tmp);
    run_or_fail("check_signsgd links libp7.so", cmd);
    /* and the installed conformance checker passes it */
    snprintf(cmd, sizeof cmd, "cd '%s' && prefix/bin/p7plugin check build/libsignsgd.so", tmp);
    run_or_fail("installed p7plugin check", cmd);
}

static void test_example_builds_and_trains(void **s)
{
    (void)s;
    char path[512];
    build_example(path, sizeof path);

    p7_optimizer_plugin *pl;
    P7_ASSERT_OK(p7_optimizer_plugin_open(path, &pl));
    assert_string_equal(p7_optimizer_plugin_table(pl)->name, "signsgd");
    p7_optimizer_plugin_close(pl);
    /* the installed bundled plugins load too */
    char installed[512];
    snprintf(installed, sizeof installed, "%s/prefix/lib/p7/plugins/libivon.so", tmp);
    P7_ASSERT_OK(p7_optimizer_plugin_open(installed, &pl));
    p7_optimizer_plugin_close(pl);

    /* class c lights up channel c of a 3x4x4 image */
    p7_model *model;
    P7_ASSERT_OK(p7_model_create(device, 1, 11, &model));
    int conv, fc;
    p7_layer_config c = {.kind = P7_LAYER_CONV2D, .in = 3, .out = 4, .kernel = 3, .stride = 1, .pad = 1, .bias = 1};
    P7_ASSERT_OK(p7_model_add_layer(model, "conv", &c, &conv));
    p7_layer_config l = {.kind = P7_LAYER_LINEAR, .in = 64, .out = CLASSES, .bias = 1};
    P7_ASSERT_OK(p7_model_add_layer(model, "fc", &l, &fc));
    P7_ASSERT_OK(p7_model_add_step(model, P7_STEP_LAYER, conv, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(model, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(model, P7_STEP_FLATTEN, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(model, P7_STEP_LAYER, fc, 0, 0));
    static float x[BATCH * 48];
    int32_t y[BATCH];
    p7_test_fill_uniform(x, BATCH * 48, 3, 0.0f, 0.5f);
    for (int b = 0; b < BATCH; b++) {
        y[b] = b % CLASSES;
        for (int i = 0; i < 16; i++) x[(b * 3 + y[b]) * 16 + i] += 1.0f;
    }
    const int64_t shape[4] = {BATCH, 3, 4, 4};
    p7_tensor *xt;
    p7_buffer *labels;
    P7_ASSERT_OK(p7_tensor_create(device, 4, shape, &xt));
    P7_ASSERT_OK(p7_tensor_upload(xt, x, BATCH * 48));
    P7_ASSERT_OK(p7_buffer_alloc(device, sizeof y, &labels));
    P7_ASSERT_OK(p7_buffer_upload(labels, y, sizeof y));

    p7_optimizer_options o = {0};
    o.hparams = "lr=0.01, beta=0.9";
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create_for_model(model, path, &o, &opt));
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    float first = 0, last = 0;
    for (int step = 0; step < 40; step++) {
        p7_model_zero_grad(model);
        p7_tensor *logits, *loss;
        P7_ASSERT_OK(p7_model_forward(model, tape, xt, 1, &logits));
        P7_ASSERT_OK(p7_cross_entropy(tape, logits, p7_buffer_mem(labels), 0, &loss));
        P7_ASSERT_OK(p7_tensor_download(loss, &last, 1));
        if (step == 0) first = last;
        P7_ASSERT_OK(p7_tape_backward(tape, loss));
        p7_tensor_release(logits);
        p7_tensor_release(loss);
        P7_ASSERT_OK(p7_optimizer_step(opt));
    }
    print_message("signsgd (out-of-tree): loss %.4f -> %.4f\n", (double)first, (double)last);
    assert_true(isfinite(last) && last < 0.5f * first);

    p7_tape_destroy(tape);
    p7_optimizer_destroy(opt);
    p7_buffer_free(labels);
    p7_tensor_release(xt);
    p7_model_destroy(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_builds_and_trains),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
