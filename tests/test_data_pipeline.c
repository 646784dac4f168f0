/* The device input pipeline: every batch that reaches the device equals the host
 * reference (same order, augmentation, normalisation, labels), across epochs, with
 * the last partial batch kept or dropped, and a resumed pipeline matches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7/data.h"
#include "tensor/tensor_internal.h"
#include "p7_test_support.h"

P7_TEST_FILE_DEVICE

/* Checks `epochs` epochs of `p` against p7_batch_fill, starting at batch `first_batch`
 * of `first_epoch`. */
static void check_epochs_from(p7_pipeline *p, const p7_dataset *ds, const p7_pipeline_options *o,
                              uint64_t first_epoch, size_t first_batch, int epochs)
{
    size_t bs = o->batch_size;
    float *got = malloc(bs * 3072 * sizeof *got), *want = malloc(bs * 3072 * sizeof *want);
    int32_t *got_labels = malloc(bs * sizeof *got_labels), *want_labels = malloc(bs * sizeof *want_labels);
    uint32_t *order = malloc(ds->count * sizeof *order);
    assert_true(got && want && got_labels && want_labels && order);
    size_t expected_batches = p7_batch_count(ds->count, bs, o->drop_last);
    assert_int_equal(p7_pipeline_batches_per_epoch(p), expected_batches);
    for (int e = 0; e < epochs; e++) {
        uint64_t epoch = first_epoch + (uint64_t)e;
        if (o->shuffle) p7_epoch_permutation(o->seed, epoch, order, ds->count);
        for (size_t b = e == 0 ? first_batch : 0;; b++) {
            p7_batch batch;
            P7_ASSERT_OK(p7_pipeline_next(p, &batch));
            assert_int_equal(batch.epoch, epoch);
            if (batch.count == 0) {
                assert_int_equal(b, expected_batches);
                break;
            }
            assert_int_equal(batch.index, b);
            size_t start = b * bs;
            size_t count = ds->count - start < bs ? ds->count - start : bs;
            assert_int_equal(batch.count, count);
            assert_int_equal(p7_tensor_dim(batch.images, 0), (int64_t)count);
            assert_int_equal(p7_tensor_dim(batch.images, 1), 3);
            P7_ASSERT_OK(p7_batch_fill(ds, o->shuffle ? order : NULL, start, count, &o->norm, o->augment,
                                       o->seed, epoch, want, want_labels));
            P7_ASSERT_OK(p7_tensor_download(batch.images, got, count * 3072));
            assert_int_equal(clEnqueueReadBuffer(device->queue, batch.labels, CL_TRUE, 0,
                                                 count * sizeof(int32_t), got_labels, 0, NULL, NULL),
                             CL_SUCCESS);
            assert_memory_equal(got, want, count * 3072 * sizeof(float));
            assert_memory_equal(got_labels, want_labels, count * sizeof(int32_t));
            assert_memory_equal(batch.labels_host, want_labels, count * sizeof(int32_t));
        }
    }
    free(got);
    free(want);
    free(got_labels);
    free(want_labels);
    free(order);
}

static void check_epochs(p7_pipeline *p, const p7_dataset *ds, const p7_pipeline_options *o,
                         uint64_t first_epoch, int epochs)
{
    check_epochs_from(p, ds, o, first_epoch, 0, epochs);
}

static void test_pipeline_matches_host(void **state)
{
    (void)state;
    p7_dataset ds = {0};
    P7_ASSERT_OK(p7_synthetic_shapes10(1000, 3, P7_SPLIT_TRAIN, &ds));
    p7_pipeline_options o = {0};
    o.batch_size = 128;
    o.shuffle = 1;
    o.seed = 77;
    o.augment = P7_AUGMENT_CROP | P7_AUGMENT_FLIP;
    o.norm = p7_normalization_cifar10();
    o.start_epoch = 2;
    p7_pipeline *p;
    P7_ASSERT_OK(p7_pipeline_create(device, &ds, &o, &p));
    check_epochs(p, &ds, &o, 2, 3); /* 8 batches a epoch, the last of 104 */
    p7_pipeline_destroy(p);

    /* A pipeline resumed at epoch 4 produces what the first one did in epoch 4. */
    o.start_epoch = 4;
    P7_ASSERT_OK(p7_pipeline_create(device, &ds, &o, &p));
    check_epochs(p, &ds, &o, 4, 1);
    p7_pipeline_destroy(p);

    /* Resumed mid-epoch, at batch 5 of epoch 3: the rest of that epoch (the seeded order
     * and augmentation of epoch 3), then epoch 4 whole. */
    o.start_epoch = 3;
    o.start_batch = 5;
    P7_ASSERT_OK(p7_pipeline_create(device, &ds, &o, &p));
    check_epochs_from(p, &ds, &o, 3, 5, 2);
    p7_pipeline_destroy(p);
    o.start_batch = 0;

    /* drop_last, no shuffle, no augmentation, CIFAR-100 constants. */
    o.start_epoch = 0;
    o.drop_last = 1;
    o.shuffle = 0;
    o.augment = 0;
    o.norm = p7_normalization_cifar100();
    o.batch_size = 300;
    P7_ASSERT_OK(p7_pipeline_create(device, &ds, &o, &p));
    check_epochs(p, &ds, &o, 0, 2);
    p7_pipeline_destroy(p);

    /* Destroying mid-epoch with batches in flight is clean. */
    o.batch_size = 64;
    P7_ASSERT_OK(p7_pipeline_create(device, &ds, &o, &p));
    p7_batch batch;
    P7_ASSERT_OK(p7_pipeline_next(p, &batch));
    P7_ASSERT_OK(p7_pipeline_next(p, &batch));
    p7_pipeline_destroy(p);
    P7_ASSERT_OK(p7_device_finish(device));
    p7_dataset_free(&ds);
}

static void test_pipeline_errors(void **state)
{
    (void)state;
    p7_dataset ds = {0};
    P7_ASSERT_OK(p7_synthetic_shapes10(10, 3, P7_SPLIT_TRAIN, &ds));
    p7_pipeline_options o = {0};
    p7_pipeline *p = NULL;
    assert_int_equal(p7_pipeline_create(device, &ds, &o, &p), P7_ERROR_INVALID_ARGUMENT);
    assert_null(p);
    p7_dataset empty = {0};
    o.batch_size = 4;
    assert_int_equal(p7_pipeline_create(device, &empty, &o, &p), P7_ERROR_INVALID_ARGUMENT);
    /* A start batch past the epoch's last (10 images in batches of 4: 3 batches). */
    o.start_batch = 3;
    assert_int_equal(p7_pipeline_create(device, &ds, &o, &p), P7_ERROR_INVALID_ARGUMENT);
    assert_null(p);
    o.start_batch = 0;
    /* Fewer images than one batch with drop_last: every call reports the epoch end. */
    o.batch_size = 16;
    o.drop_last = 1;
    P7_ASSERT_OK(p7_pipeline_create(device, &ds, &o, &p));
    p7_batch batch;
    for (int i = 0; i < 3; i++) {
        P7_ASSERT_OK(p7_pipeline_next(p, &batch));
        assert_int_equal(batch.count, 0);
        assert_int_equal(batch.epoch, (uint64_t)i);
    }
    p7_pipeline_destroy(p);
    p7_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_matches_host),
        cmocka_unit_test(test_pipeline_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
