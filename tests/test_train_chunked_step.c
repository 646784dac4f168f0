/* A training step that does not fit the device runs in chunks of the batch, with the
 * chunks' gradients summed: the same step as the whole batch's, up to the order of float
 * additions. A model with BatchNorm is refused instead (chunks would change its batch
 * statistics), with a message that says so. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

static const p7_network_config no_bn = {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 0, .members = 1,
                                        .width = 0.25f};

/* One epoch of two SGD steps of batch 64; the weights after it, flattened (malloc'd). */
static float *train_one_epoch(p7_device *device, const p7_network_config *nc, int *chunk, size_t *count,
                              float **before)
{
    p7_dataset train = {0};
    P7_ASSERT_OK(p7_synthetic_shapes10(128, 3, P7_SPLIT_TRAIN, &train));
    p7_model *model;
    P7_ASSERT_OK(p7_model_build(device, nc, 7, &model));
    p7_optimizer *opt;
    p7_optimizer_options oo = {.hparams = "lr=0.05", .seed = 7, .dataset_size = train.count};
    P7_ASSERT_OK(p7_optimizer_create_for_model(model, p7_test_plugin("sgd"), &oo, &opt));
    size_t n = 0;
    for (size_t i = 0; i < p7_model_param_count(model); i++) n += (size_t)p7_tensor_numel(p7_model_param(model, i, NULL));
    float *w0 = malloc(n * sizeof *w0), *w1 = malloc(n * sizeof *w1);
    assert_non_null(w0);
    assert_non_null(w1);
    for (size_t i = 0, at = 0; i < p7_model_param_count(model); i++) {
        p7_tensor *p = p7_model_param(model, i, NULL);
        P7_ASSERT_OK(p7_tensor_download(p, w0 + at, (size_t)p7_tensor_numel(p)));
        at += (size_t)p7_tensor_numel(p);
    }
    p7_train_config c = {.epochs = 1, .batch = 64, .seed = 7, .bma_samples = 0};
    p7_trainer *t;
    P7_ASSERT_OK(p7_trainer_create(device, model, opt, &train, NULL, NULL, &c, &t));
    *chunk = p7_trainer_chunk(t);
    p7_epoch_report r;
    P7_ASSERT_OK(p7_trainer_run_epoch(t, &r));
    for (size_t i = 0, at = 0; i < p7_model_param_count(model); i++) {
        p7_tensor *p = p7_model_param(model, i, NULL);
        P7_ASSERT_OK(p7_tensor_download(p, w1 + at, (size_t)p7_tensor_numel(p)));
        at += (size_t)p7_tensor_numel(p);
    }
    p7_trainer_destroy(t);
    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    p7_dataset_free(&train);
    *count = n;
    *before = w0;
    return w1;
}

/* The largest allocation budget under which batch 64 does not fit but 24 does. */
static uint64_t budget_for_chunks(p7_device *device, const p7_network_config *nc)
{
    p7_model *model;
    P7_ASSERT_OK(p7_model_build(device, nc, 7, &model));
    p7_memory_estimate e;
    p7_training_shape shape = {.batch = 24, .optimizer_slots = 1};
    P7_ASSERT_OK(p7_model_estimate_training_memory(model, &shape, &e));
    p7_model_destroy(model);
    return e.total + ((uint64_t)1 << 20);
}

static void test_chunked_step_equals_whole_batch(void **state)
{
    (void)state;
    p7_device *whole_device = p7_test_open_device(NULL);
    uint64_t limit = budget_for_chunks(whole_device, &no_bn);
    p7_device_options small = {.memory_limit = limit};
    p7_device *small_device = p7_test_open_device(&small);
    int chunk_whole, chunk_small;
    size_t n_whole, n_small;
    float *w0_whole, *w0_small;
    float *whole = train_one_epoch(whole_device, &no_bn, &chunk_whole, &n_whole, &w0_whole);
    float *chunked = train_one_epoch(small_device, &no_bn, &chunk_small, &n_small, &w0_small);
    print_message("  budget %.1f MiB: chunks of %d images (whole device: %d)\n", (double)limit / 1048576.0,
                  chunk_small, chunk_whole);
    assert_int_equal(chunk_whole, 64);
    assert_true(chunk_small >= 1 && chunk_small < 64);
    assert_int_equal(n_whole, n_small);
    /* same initial weights; the two steps' updates agree to float rounding */
    double max_update = 0, max_diff = 0;
    for (size_t i = 0; i < n_whole; i++) {
        assert_true(w0_whole[i] == w0_small[i]);
        max_update = fmax(max_update, fabs((double)whole[i] - w0_whole[i]));
        max_diff = fmax(max_diff, fabs((double)whole[i] - chunked[i]));
    }
    print_message("  largest update %.3e, largest difference chunked vs whole %.3e\n", max_update, max_diff);
    assert_true(max_update > 0);
    assert_true(max_diff <= 1e-4 * max_update);
    free(whole);
    free(chunked);
    free(w0_whole);
    free(w0_small);
    p7_device_close(small_device);
    p7_device_close(whole_device);
}

/* A step in chunks of 24 of a batch of 64 peaks where the estimate says (whole batches in
 * the pipeline, one chunk's graph at a time). */
static void test_chunked_peak_matches_estimate(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    p7_dataset train = {0};
    P7_ASSERT_OK(p7_synthetic_shapes10(128, 3, P7_SPLIT_TRAIN, &train));
    p7_model *model;
    P7_ASSERT_OK(p7_model_build(device, &no_bn, 7, &model));
    p7_optimizer *opt;
    p7_optimizer_options oo = {.hparams = "lr=0.05", .seed = 7, .dataset_size = train.count};
    P7_ASSERT_OK(p7_optimizer_create_for_model(model, p7_test_plugin("sgd"), &oo, &opt));
    p7_training_shape shape = {.batch = 24, .input_batch = 64, .optimizer_slots = 1};
    p7_memory_estimate e;
    P7_ASSERT_OK(p7_model_estimate_training_memory(model, &shape, &e));
    p7_train_config c = {.epochs = 1, .batch = 64, .seed = 7, .chunk = 24, .bma_samples = 0};
    p7_trainer *t;
    P7_ASSERT_OK(p7_trainer_create(device, model, opt, &train, NULL, NULL, &c, &t));
    assert_int_equal(p7_trainer_chunk(t), 24);
    p7_memory_reset_peak(device);
    p7_epoch_report r;
    P7_ASSERT_OK(p7_trainer_run_epoch(t, &r));
    p7_memory_stats ms;
    P7_ASSERT_OK(p7_memory_get_stats(device, &ms));
    print_message("  chunked step: measured peak %llu, estimate %llu (ratio %.4f)\n",
                  (unsigned long long)ms.peak_bytes_in_use, (unsigned long long)e.total,
                  (double)ms.peak_bytes_in_use / (double)e.total);
    assert_true(ms.peak_bytes_in_use <= e.total);
    assert_true((double)e.total <= 1.05 * (double)ms.peak_bytes_in_use);
    p7_trainer_destroy(t);
    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    p7_dataset_free(&train);
    p7_device_close(device);
}

static void test_batchnorm_model_is_refused(void **state)
{
    (void)state;
    p7_network_config bn = no_bn;
    bn.batchnorm = 1;
    p7_device *probe = p7_test_open_device(NULL);
    p7_device_options small = {.memory_limit = budget_for_chunks(probe, &bn)};
    p7_device_close(probe);
    p7_device *device = p7_test_open_device(&small);
    p7_dataset train = {0};
    P7_ASSERT_OK(p7_synthetic_shapes10(128, 3, P7_SPLIT_TRAIN, &train));
    p7_model *model;
    P7_ASSERT_OK(p7_model_build(device, &bn, 7, &model));
    p7_optimizer *opt;
    p7_optimizer_options oo = {.hparams = "lr=0.05", .seed = 7, .dataset_size = train.count};
    P7_ASSERT_OK(p7_optimizer_create_for_model(model, p7_test_plugin("sgd"), &oo, &opt));
    p7_train_config c = {.epochs = 1, .batch = 64, .seed = 7};
    p7_trainer *t = NULL;
    assert_int_equal(p7_trainer_create(device, model, opt, &train, NULL, NULL, &c, &t), P7_ERROR_OUT_OF_MEMORY);
    assert_null(t);
    assert_non_null(strstr(p7_last_error(), "BatchNorm's batch statistics"));
    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    p7_dataset_free(&train);
    p7_device_close(device);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunked_step_equals_whole_batch),
        cmocka_unit_test(test_chunked_peak_matches_estimate),
        cmocka_unit_test(test_batchnorm_model_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
