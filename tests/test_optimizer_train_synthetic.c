/* End to end: the built-in synthetic dataset through the pipeline into SimpleCNN,
 * trained with the Adam plugin, must be learnable: well above the 10% of chance
 * after two short epochs. This is the fallback every app uses without real data,
 * so it has to teach a CNN something. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

static double accuracy(p7_device *device, p7_model *model, const p7_dataset *data)
{
    p7_pipeline_options po = {.batch_size = 100, .norm = p7_normalization_cifar10()};
    p7_pipeline *pipe;
    P7_ASSERT_OK(p7_pipeline_create(device, data, &po, &pipe));
    size_t correct = 0, seen = 0;
    for (;;) {
        p7_batch b;
        P7_ASSERT_OK(p7_pipeline_next(pipe, &b));
        if (b.count == 0) break;
        p7_tensor *logits;
        P7_ASSERT_OK(p7_model_forward(model, NULL, b.images, 0, &logits));
        float *l = p7_test_download(logits);
        for (size_t i = 0; i < b.count; i++) {
            int best = 0;
            for (int j = 1; j < 10; j++)
                if (l[i * 10 + j] > l[i * 10 + best]) best = j;
            correct += best == b.labels_host[i];
        }
        seen += b.count;
        free(l);
        p7_tensor_release(logits);
    }
    p7_pipeline_destroy(pipe);
    return 100.0 * (double)correct / (double)seen;
}

static void test_simple_cnn_learns_synthetic_shapes(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    p7_dataset train = {0}, test = {0};
    P7_ASSERT_OK(p7_synthetic_shapes10(3000, 5, P7_SPLIT_TRAIN, &train));
    P7_ASSERT_OK(p7_synthetic_shapes10(1000, 5, P7_SPLIT_TEST, &test));
    assert_true(train.synthetic);
    assert_non_null(strstr(train.name, P7_SYNTHETIC_NAME));

    p7_model *model;
    P7_ASSERT_OK(p7_model_simple_cnn(device, 1, 10, 0.0f, 0.0f, 1, &model));
    p7_optimizer_options oo = {.hparams = "lr=0.002"};
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create_for_model(model, "adam", &oo, &opt));
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    double before = accuracy(device, model, &test);

    p7_pipeline_options po = {.batch_size = 64, .shuffle = 1, .seed = 3, .norm = p7_normalization_cifar10()};
    p7_pipeline *pipe;
    P7_ASSERT_OK(p7_pipeline_create(device, &train, &po, &pipe));
    for (int epoch = 0; epoch < 2; epoch++) {
        for (;;) {
            p7_batch b;
            P7_ASSERT_OK(p7_pipeline_next(pipe, &b));
            if (b.count == 0) break;
            p7_tensor *logits, *loss;
            p7_model_zero_grad(model);
            P7_ASSERT_OK(p7_model_forward(model, tape, b.images, 1, &logits));
            P7_ASSERT_OK(p7_cross_entropy(tape, logits, b.labels, 0, &loss));
            P7_ASSERT_OK(p7_tape_backward(tape, loss));
            P7_ASSERT_OK(p7_optimizer_step(opt));
            p7_tensor_release(logits);
            p7_tensor_release(loss);
        }
    }
    double after = accuracy(device, model, &test);
    print_message("  synthetic-shapes10 test accuracy: %.1f%% before, %.1f%% after 2 epochs\n", before, after);
    assert_true(after > 60.0);
    assert_true(after > before + 30.0);

    p7_pipeline_destroy(pipe);
    p7_tape_destroy(tape);
    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    p7_dataset_free(&train);
    p7_dataset_free(&test);
    p7_device_close(device);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_simple_cnn_learns_synthetic_shapes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
