/* Memory guards: the training-step estimate against the allocator's measured peak,
 * the check that refuses a step before allocating anything, and the allocator's host
 * check under a lowered address-space limit (a big request is an error, not PoCL's
 * abort). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "p7_test_support.h"

/* The estimate replays the step's allocations in the allocator's size classes, so it
 * should match the measured peak up to what it deliberately rounds up: reduction
 * scratch counted at 8 bytes a row (fp64) and the GEMM workspace at its largest from the
 * first step on. Measured <= estimate keeps it a safe bound; 5% above is far below the
 * size classes' own 12.5% granularity, so a missed or extra activation shows. */
#define ESTIMATE_SLACK 1.05

/* A VGG-style net with BatchNorm, small enough for the CPU: three conv-BN-ReLU-pool
 * blocks and a linear head; BatchEnsemble layers when members > 1. */
static p7_model *small_vgg_bn(p7_device *device, int members)
{
    p7_model *m;
    P7_ASSERT_OK(p7_model_create(device, members, 7, &m));
    const int be = members > 1, widths[3] = {16, 32, 32};
    int in = 3, id;
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_TILE_MEMBERS, 0, 0, 0));
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "conv%d", i + 1);
        p7_layer_config conv = {.kind = be ? P7_LAYER_BE_CONV2D : P7_LAYER_CONV2D, .in = in, .out = widths[i],
                                .kernel = 3, .stride = 1, .pad = 1, .bias = 1, .has_alpha = 1, .has_gamma = 1,
                                .alpha_init = 0.5f, .gamma_init = 0.5f};
        P7_ASSERT_OK(p7_model_add_layer(m, name, &conv, &id));
        P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
        snprintf(name, sizeof name, "bn%d", i + 1);
        p7_layer_config bn = {.kind = be ? P7_LAYER_BE_BATCHNORM2D : P7_LAYER_BATCHNORM2D, .in = widths[i],
                              .out = widths[i], .affine = 1};
        P7_ASSERT_OK(p7_model_add_layer(m, name, &bn, &id));
        P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
        P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
        P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
        in = widths[i];
    }
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
    p7_layer_config fc = {.kind = be ? P7_LAYER_BE_LINEAR : P7_LAYER_LINEAR, .in = 32 * 4 * 4, .out = 10, .bias = 1,
                          .has_alpha = 1, .has_gamma = 1, .alpha_init = 0.5f, .gamma_init = 0.5f};
    P7_ASSERT_OK(p7_model_add_layer(m, "fc", &fc, &id));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MEMBER_MEAN, 0, 0, 0));
    return m;
}

/* Independent members (member groups), with every kind of group: a shared conv on B
 * rows, a group that takes the shared output (a = 1), per-member BatchNorm and a conv
 * on the members' rows (a = 0), shared layers over all M*B rows, per-member heads. */
static p7_model *small_independent_members(p7_device *device, int members)
{
    p7_model *m;
    P7_ASSERT_OK(p7_model_create(device, members, 7, &m));
    int id;
    p7_layer_config conv = {.kind = P7_LAYER_CONV2D, .in = 3, .out = 8, .kernel = 3, .stride = 1, .pad = 1, .bias = 1};
    P7_ASSERT_OK(p7_model_add_layer(m, "conv1", &conv, &id));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    conv.in = 8, conv.out = 16;
    P7_ASSERT_OK(p7_model_add_member_layers(m, "conv2", &conv, &id));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MEMBER_LAYERS, id, 1, 0));
    p7_layer_config bn = {.kind = P7_LAYER_BATCHNORM2D, .in = 16, .out = 16, .affine = 1};
    P7_ASSERT_OK(p7_model_add_member_layers(m, "bn2", &bn, &id));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MEMBER_LAYERS, id, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
    conv.in = 16, conv.out = 16;
    P7_ASSERT_OK(p7_model_add_member_layers(m, "conv3", &conv, &id));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MEMBER_LAYERS, id, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
    conv.in = 16, conv.out = 32;
    P7_ASSERT_OK(p7_model_add_layer(m, "conv4", &conv, &id));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
    p7_layer_config fc = {.kind = P7_LAYER_LINEAR, .in = 32 * 4 * 4, .out = 10, .bias = 1};
    P7_ASSERT_OK(p7_model_add_member_layers(m, "fc", &fc, &id));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MEMBER_LAYERS, id, 0, 0));
    return m;
}

/* Two training steps as p7bench runs them (pipeline, tape, Adam); returns the peak of
 * bytes in use from just before the first step. */
static uint64_t measured_peak(p7_device *device, p7_model *model, p7_optimizer *opt, int batch)
{
    p7_dataset data = {0};
    P7_ASSERT_OK(p7_synthetic_shapes10((size_t)batch * 2, 3, P7_SPLIT_TRAIN, &data));
    p7_pipeline_options po = {.batch_size = (size_t)batch, .shuffle = 1, .seed = 3, .norm = p7_normalization_cifar10()};
    p7_pipeline *pipe;
    P7_ASSERT_OK(p7_pipeline_create(device, &data, &po, &pipe));
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    const int members = p7_model_members(model);
    p7_buffer *tiled = NULL;
    if (members > 1) P7_ASSERT_OK(p7_buffer_alloc(device, (size_t)batch * (size_t)members * sizeof(int32_t), &tiled));
    p7_memory_reset_peak(device);
    for (int step = 0; step < 2; step++) {
        p7_batch b;
        P7_ASSERT_OK(p7_pipeline_next(pipe, &b));
        assert_int_equal(b.count, (size_t)batch);
        cl_mem labels = b.labels;
        for (int m = 0; members > 1 && m < members; m++)
            P7_ASSERT_OK(p7_buffer_copy(device, b.labels, 0, tiled, (size_t)m * b.count * sizeof(int32_t),
                                        b.count * sizeof(int32_t)));
        if (tiled) labels = p7_buffer_mem(tiled);
        p7_tensor *logits, *loss;
        p7_model_zero_grad(model);
        P7_ASSERT_OK(p7_model_forward(model, tape, b.images, 1, &logits));
        P7_ASSERT_OK(p7_cross_entropy(tape, logits, labels, 0, &loss));
        P7_ASSERT_OK(p7_tape_backward(tape, loss));
        P7_ASSERT_OK(p7_optimizer_step(opt));
        p7_tensor_release(logits);
        p7_tensor_release(loss);
    }
    P7_ASSERT_OK(p7_device_finish(device));
    p7_memory_stats s;
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    p7_buffer_free(tiled);
    p7_tape_destroy(tape);
    p7_pipeline_destroy(pipe);
    p7_dataset_free(&data);
    return s.peak_bytes_in_use;
}

static void expect_estimate_matches(const char *what, int vgg, int members, int batch)
{
    p7_device *device = p7_test_open_device(NULL);
    p7_model *model;
    if (vgg == 2) model = small_independent_members(device, members);
    else if (vgg) model = small_vgg_bn(device, members);
    else P7_ASSERT_OK(p7_model_simple_cnn(device, members, 10, 0.5f, 0.5f, 11, &model));
    p7_optimizer_options oo = {0};
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create_for_model(model, p7_test_plugin("adam"), &oo, &opt));
    p7_training_shape shape = {.batch = batch, .optimizer_slots = p7_optimizer_slots_in_use(opt)};
    assert_int_equal(shape.optimizer_slots, 2); /* Adam without AMSGrad: exp_avg, exp_avg_sq */
    p7_memory_estimate e;
    P7_ASSERT_OK(p7_model_estimate_training_memory(model, &shape, &e));
    uint64_t peak = measured_peak(device, model, opt, batch);
    printf("%s, batch %d: estimate %llu bytes (activations %llu, activation grads %llu, scratch %llu), measured "
           "peak %llu, ratio %.4f\n",
           what, batch, (unsigned long long)e.total, (unsigned long long)e.activations,
           (unsigned long long)e.activation_grads, (unsigned long long)e.workspaces, (unsigned long long)peak,
           (double)e.total / (double)peak);
    assert_true(e.total == e.parameters + e.gradients + e.optimizer_state + e.inputs + e.activations +
                               e.activation_grads + e.workspaces);
    assert_true(e.total >= peak);
    assert_true((double)e.total <= ESTIMATE_SLACK * (double)peak);
    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    p7_device_close(device);
}

static void test_estimate_simple_cnn(void **state)
{
    (void)state;
    expect_estimate_matches("SimpleCNN", 0, 1, 64);
}

static void test_estimate_simple_cnn_batchensemble(void **state)
{
    (void)state;
    expect_estimate_matches("SimpleCNN BatchEnsemble M=2", 0, 2, 32);
}

static void test_estimate_vgg_bn(void **state)
{
    (void)state;
    expect_estimate_matches("small VGG-BN", 1, 1, 48);
}

static void test_estimate_vgg_bn_batchensemble(void **state)
{
    (void)state;
    expect_estimate_matches("small VGG-BN BatchEnsemble M=2", 1, 2, 24);
}

static void test_estimate_independent_members(void **state)
{
    (void)state;
    expect_estimate_matches("small independent members M=3", 2, 3, 24);
}

/* The estimate grows with the batch and with the optimizer's slots. */
static void test_estimate_monotonic(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    p7_model *model;
    P7_ASSERT_OK(p7_model_simple_cnn(device, 1, 10, 0.5f, 0.5f, 11, &model));
    p7_memory_estimate a, b, c;
    p7_training_shape s = {.batch = 100, .optimizer_slots = 1};
    P7_ASSERT_OK(p7_model_estimate_training_memory(model, &s, &a));
    s.batch = 200;
    P7_ASSERT_OK(p7_model_estimate_training_memory(model, &s, &b));
    s.optimizer_slots = 3;
    P7_ASSERT_OK(p7_model_estimate_training_memory(model, &s, &c));
    assert_true(b.total > a.total && b.activations > a.activations);
    assert_true(c.optimizer_state == 3 * b.optimizer_state && c.total > b.total);
    s.batch = 0;
    assert_int_equal(p7_model_estimate_training_memory(model, &s, &a), P7_ERROR_INVALID_ARGUMENT);
    p7_model_destroy(model);
    p7_device_close(device);
}

/* Over the limit: refused with P7_ERROR_OUT_OF_MEMORY before anything is allocated,
 * with the need, the limit and the largest batch that fits in the message. */
static void test_check_refuses_before_allocating(void **state)
{
    (void)state;
    p7_device_options options = {.memory_limit = (uint64_t)64 << 20};
    p7_device *device = p7_test_open_device(&options);
    p7_model *model;
    P7_ASSERT_OK(p7_model_simple_cnn(device, 1, 10, 0.5f, 0.5f, 11, &model));
    p7_optimizer_options oo = {0};
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create_for_model(model, p7_test_plugin("adam"), &oo, &opt));
    p7_memory_stats before, after;
    P7_ASSERT_OK(p7_memory_get_stats(device, &before));

    p7_training_shape shape = {.batch = 4096, .optimizer_slots = 3};
    int max_batch = -1;
    assert_int_equal(p7_model_check_training_memory(model, &shape, "simple", &max_batch), P7_ERROR_OUT_OF_MEMORY);
    const char *msg = p7_last_error();
    printf("refusal: %s\n", msg);
    assert_non_null(strstr(msg, "simple at batch 4096 needs"));
    assert_non_null(strstr(msg, "activations"));
    assert_non_null(strstr(msg, "memory limit"));
    assert_non_null(strstr(msg, "use a batch of"));
    P7_ASSERT_OK(p7_memory_get_stats(device, &after));
    assert_int_equal(after.buffers_created, before.buffers_created);
    assert_int_equal(after.bytes_in_use, before.bytes_in_use);
    assert_int_equal(after.peak_bytes_in_use, before.peak_bytes_in_use);

    /* the advised batch is the largest that passes */
    assert_true(max_batch > 0 && max_batch < 4096);
    char advice[64];
    snprintf(advice, sizeof advice, "use a batch of %d or less", max_batch);
    assert_non_null(strstr(msg, advice));
    shape.batch = max_batch;
    int fits = -1;
    P7_ASSERT_OK(p7_model_check_training_memory(model, &shape, "simple", &fits));
    assert_int_equal(fits, max_batch);
    shape.batch = max_batch + 1;
    assert_int_equal(p7_model_check_training_memory(model, &shape, "simple", NULL), P7_ERROR_OUT_OF_MEMORY);

    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    p7_device_close(device);
}

/* The budget names its limit; on the PoCL test device that is host memory-aware. */
static void test_budget(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    p7_memory_budget b;
    P7_ASSERT_OK(p7_memory_get_budget(device, &b));
    assert_true(b.bytes > 0 && b.bytes <= p7_device_get_info(device)->global_mem_bytes);
    assert_true(strlen(b.limit) > 0);
    p7_device_close(device);
}

#if defined(__SANITIZE_ADDRESS__)
#define P7_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define P7_UNDER_ASAN 1
#endif
#endif

static long mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    if (f) {
        if (fscanf(f, "%ld", &pages) != 1) pages = 0;
        fclose(f);
    }
    return pages * sysconf(_SC_PAGESIZE);
}

/* Child: under an address-space limit 512 MiB above what it maps, a 1 GiB buffer must
 * be P7_ERROR_OUT_OF_MEMORY naming the limit; a small one must still work. PoCL maps a
 * buffer at its first use and aborts when it cannot, so a buffer that "succeeds" is
 * used at once: before the host check that was a SIGABRT. */
#define HOST_LIMIT_CHILD "--host-limit-child"

static int host_limit_child(void)
{
    p7_device *device;
    if (p7_device_open(NULL, NULL, &device) != P7_SUCCESS) return 10;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0) return 11;
    rl.rlim_cur = (rlim_t)(mapped_bytes() + (512L << 20));
    if (setrlimit(RLIMIT_AS, &rl) != 0) return 11;
    p7_buffer *big = NULL;
    p7_status st = p7_buffer_alloc(device, (size_t)1 << 30, &big);
    if (st == P7_SUCCESS) {
        float one = 1.0f;
        p7_buffer_upload(big, &one, sizeof one); /* PoCL maps it here */
        fprintf(stderr, "child: a 1 GiB buffer was created under a 512 MiB headroom\n");
        return 12;
    }
    const char *msg = p7_last_error();
    fprintf(stderr, "child: %s\n", msg);
    if (st != P7_ERROR_OUT_OF_MEMORY || !strstr(msg, "address-space limit") || !strstr(msg, "1073741824")) return 13;
    p7_buffer *small;
    if (p7_buffer_alloc(device, (size_t)1 << 20, &small) != P7_SUCCESS) return 14;
    float v[4] = {1, 2, 3, 4}, w[4] = {0};
    if (p7_buffer_upload(small, v, sizeof v) != P7_SUCCESS || p7_buffer_download(small, w, sizeof w) != P7_SUCCESS ||
        memcmp(v, w, sizeof v) != 0)
        return 15;
    p7_buffer_free(small);
    p7_device_close(device);
    return 0;
}

static void test_host_limit_is_an_error_not_a_signal(void **state)
{
    (void)state;
#ifdef P7_UNDER_ASAN
    skip(); /* ASan reserves terabytes of shadow memory: an address-space limit cannot work */
#else
    fflush(stdout);
    fflush(stderr);
    /* A fresh process: a forked copy of this one would inherit PoCL's state without its
     * worker threads and hang. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_nn_memory_budget", HOST_LIMIT_CHILD, (char *)NULL);
        _exit(20);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) fail_msg("the child died of signal %d instead of getting an error", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
#endif
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], HOST_LIMIT_CHILD) == 0) return host_limit_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate_simple_cnn),
        cmocka_unit_test(test_estimate_simple_cnn_batchensemble),
        cmocka_unit_test(test_estimate_vgg_bn),
        cmocka_unit_test(test_estimate_vgg_bn_batchensemble),
        cmocka_unit_test(test_estimate_independent_members),
        cmocka_unit_test(test_estimate_monotonic),
        cmocka_unit_test(test_check_refuses_before_allocating),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_host_limit_is_an_error_not_a_signal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
