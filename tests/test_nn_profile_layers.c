/* Per-layer profiles (p7_device_options.profiling = 2): each kernel label names the
 * model step that ran it, in forward and in backward (the tape keeps the scope of each
 * op) and in a fused evaluation stage, nothing outside the model is attributed to a
 * layer, and profiling = 1 keeps the plain labels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

enum { BATCH = 2, ROWS = 64 };

/* conv1 -> relu -> conv2 -> flatten -> fc on [2, 3, 8, 8] */
static p7_model *small_model(p7_device *device)
{
    p7_model *m;
    int conv1, conv2, fc;
    P7_ASSERT_OK(p7_model_create(device, 1, 42, &m));
    p7_layer_config c1 = {.kind = P7_LAYER_CONV2D, .in = 3, .out = 4, .kernel = 3, .stride = 1, .pad = 1, .bias = 1};
    p7_layer_config c2 = c1;
    c2.in = 4;
    p7_layer_config l = {.kind = P7_LAYER_LINEAR, .in = 4 * 8 * 8, .out = 3, .bias = 1};
    P7_ASSERT_OK(p7_model_add_layer(m, "conv1", &c1, &conv1));
    P7_ASSERT_OK(p7_model_add_layer(m, "conv2", &c2, &conv2));
    P7_ASSERT_OK(p7_model_add_layer(m, "fc", &l, &fc));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, conv1, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, conv2, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, fc, 0, 0));
    return m;
}

/* Runs forward (with backward when `train`) and returns the profile's labels. Forward
 * runs in training mode either way (evaluation without a tape may fuse steps: see
 * test_fused_evaluation_is_named_too), so the two profiles differ by backward alone. */
static size_t profile_step(p7_device *device, int train, p7_profile_row *rows, size_t capacity)
{
    p7_model *m = small_model(device);
    const int64_t xs[4] = {BATCH, 3, 8, 8};
    p7_tensor *x, *logits, *loss;
    P7_ASSERT_OK(p7_tensor_create(device, 4, xs, &x));
    P7_ASSERT_OK(p7_tensor_fill_normal(x, 1, 0, 0.0f, 1.0f));
    const int32_t labels[BATCH] = {0, 2};
    p7_buffer *lb;
    P7_ASSERT_OK(p7_buffer_alloc(device, sizeof labels, &lb));
    P7_ASSERT_OK(p7_buffer_upload(lb, labels, sizeof labels));
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    size_t n;
    P7_ASSERT_OK(p7_profile_collect(device, NULL, 0, &n)); /* forget set-up fills */
    P7_ASSERT_OK(p7_model_forward(m, train ? tape : NULL, x, 1, &logits));
    P7_ASSERT_OK(p7_cross_entropy(train ? tape : NULL, logits, p7_buffer_mem(lb), 0, &loss));
    if (train) P7_ASSERT_OK(p7_tape_backward(tape, loss));
    P7_ASSERT_OK(p7_profile_collect(device, rows, capacity, &n));
    assert_true(n <= capacity);
    p7_tensor_release(logits);
    p7_tensor_release(loss);
    p7_tensor_release(x);
    p7_buffer_free(lb);
    p7_tape_destroy(tape);
    p7_model_destroy(m);
    return n;
}

static int has_label(const p7_profile_row *rows, size_t n, const char *label)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].label, label)) return 1;
    return 0;
}

static int count_prefix(const p7_profile_row *rows, size_t n, const char *prefix)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) k += !strncmp(rows[i].label, prefix, strlen(prefix));
    return k;
}

static void test_labels_name_the_layer_in_forward_and_backward(void **state)
{
    (void)state;
    p7_device_options o = {.profiling = 2};
    p7_device *device = p7_test_open_device(&o);
    assert_non_null(device);
    p7_profile_row fwd[ROWS], train[ROWS];
    const size_t nf = profile_step(device, 0, fwd, ROWS), nt = profile_step(device, 1, train, ROWS);

    /* every step of the forward pass is named, each once per kernel label */
    assert_true(count_prefix(fwd, nf, "conv1/") > 0);
    assert_true(count_prefix(fwd, nf, "conv2/") > 0);
    assert_true(count_prefix(fwd, nf, "fc/") > 0);
    assert_true(has_label(fwd, nf, "relu/relu.forward"));
    /* backward runs under the scope its forward op recorded: conv2 gains kernels
     * (weight and input gradients), relu its backward */
    assert_true(count_prefix(train, nt, "conv2/") > count_prefix(fwd, nf, "conv2/"));
    assert_true(count_prefix(train, nt, "fc/") > count_prefix(fwd, nf, "fc/"));
    assert_true(has_label(train, nt, "relu/relu.backward"));
    /* the loss is outside the model: its kernels, forward and backward, carry no layer */
    assert_true(count_prefix(train, nt, "cross_entropy") > 0);
    for (size_t i = 0; i < nt; i++)
        if (strstr(train[i].label, "cross_entropy")) assert_null(strchr(train[i].label, '/'));
    p7_device_close(device);
}

/* Evaluation without a tape, where the model may fuse conv, relu and pooling into one
 * stage: every kernel of the model still carries a layer's name. */
static void test_fused_evaluation_is_named_too(void **state)
{
    (void)state;
    p7_device_options o = {.profiling = 2};
    p7_device *device = p7_test_open_device(&o);
    assert_non_null(device);
    p7_model *m = small_model(device);
    const int64_t xs[4] = {BATCH, 3, 8, 8};
    p7_tensor *x, *logits;
    P7_ASSERT_OK(p7_tensor_create(device, 4, xs, &x));
    P7_ASSERT_OK(p7_tensor_fill_normal(x, 1, 0, 0.0f, 1.0f));
    size_t n;
    P7_ASSERT_OK(p7_profile_collect(device, NULL, 0, &n));
    P7_ASSERT_OK(p7_model_forward(m, NULL, x, 0, &logits));
    p7_profile_row rows[ROWS];
    P7_ASSERT_OK(p7_profile_collect(device, rows, ROWS, &n));
    assert_true(n > 0 && n <= ROWS);
    for (size_t i = 0; i < n; i++) {
        const int named = !strncmp(rows[i].label, "conv1/", 6) || !strncmp(rows[i].label, "relu/", 5) ||
                          !strncmp(rows[i].label, "conv2/", 6) || !strncmp(rows[i].label, "flatten/", 8) ||
                          !strncmp(rows[i].label, "fc/", 3);
        if (!named) fail_msg("evaluation kernel \"%s\" names no step of the model", rows[i].label);
    }
    p7_tensor_release(logits);
    p7_tensor_release(x);
    p7_model_destroy(m);
    p7_device_close(device);
}

static void test_plain_profiling_keeps_op_labels(void **state)
{
    (void)state;
    p7_device_options o = {.profiling = 1};
    p7_device *device = p7_test_open_device(&o);
    assert_non_null(device);
    p7_profile_row rows[ROWS];
    const size_t n = profile_step(device, 1, rows, ROWS);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) assert_null(strchr(rows[i].label, '/'));
    assert_true(has_label(rows, n, "relu.backward"));
    p7_device_close(device);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_name_the_layer_in_forward_and_backward),
        cmocka_unit_test(test_fused_evaluation_is_named_too),
        cmocka_unit_test(test_plain_profiling_keeps_op_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
