/* Early stopping's decisions on a scripted loss sequence, and the weight snapshot: a
 * restore brings back the parameters and BatchNorm buffers bit for bit. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

P7_TEST_FILE_DEVICE

static void test_decisions(void **state)
{
    (void)state;
    /* patience 2, min_delta 0.05: 1.0 improves (first); 0.97 is within delta (bad 1);
     * 0.90 improves; 0.90 (bad 1); NaN (bad 2: stop). */
    const double losses[] = {1.0, 0.97, 0.90, 0.90, NAN};
    const int improved[] = {1, 0, 1, 0, 0}, bad[] = {0, 1, 0, 1, 2}, stopped[] = {0, 0, 0, 0, 1};
    p7_early_stopping_state s;
    p7_early_stopping_init(&s);
    assert_true(isinf(s.best_loss) && s.best_loss > 0);
    for (int e = 0; e < 5; e++) {
        assert_int_equal(p7_early_stopping_observe(&s, 2, 0.05, e + 1, losses[e]), improved[e]);
        assert_int_equal(s.bad_epochs, bad[e]);
        assert_int_equal(s.stopped, stopped[e]);
    }
    assert_int_equal(s.best_epoch, 3);
    assert_true(s.best_loss == 0.90);

    /* strict improvement with delta 0: an equal loss is no improvement */
    p7_early_stopping_init(&s);
    assert_int_equal(p7_early_stopping_observe(&s, 1, 0.0, 1, 0.5), 1);
    assert_int_equal(p7_early_stopping_observe(&s, 1, 0.0, 2, 0.5), 0);
    assert_true(s.stopped);
    /* patience 0 never stops */
    p7_early_stopping_init(&s);
    for (int e = 1; e <= 20; e++) p7_early_stopping_observe(&s, 0, 0.0, e, 1.0);
    assert_false(s.stopped);
    assert_int_equal(s.bad_epochs, 19);
}

static float *model_values(p7_model *model, size_t *n)
{
    size_t np = p7_model_param_count(model), nb = p7_model_buffer_count(model), total = 0;
    for (size_t i = 0; i < np + nb; i++)
        total += p7_tensor_numel(i < np ? p7_model_param(model, i, NULL) : p7_model_buffer(model, i - np, NULL));
    float *all = malloc(total * sizeof *all);
    size_t at = 0;
    for (size_t i = 0; i < np + nb; i++) {
        p7_tensor *t = i < np ? p7_model_param(model, i, NULL) : p7_model_buffer(model, i - np, NULL);
        P7_ASSERT_OK(p7_tensor_download(t, all + at, p7_tensor_numel(t)));
        at += p7_tensor_numel(t);
    }
    *n = total;
    return all;
}

static void test_snapshot_restores_bit_identical(void **state)
{
    (void)state;
    p7_model *model;
    P7_ASSERT_OK(p7_model_simple_cnn(device, 2, 10, 0.5f, 0.5f, 7, &model));
    assert_true(p7_model_buffer_count(model) > 0); /* BatchNorm statistics are part of it */
    p7_weights_snapshot *snap;
    P7_ASSERT_OK(p7_weights_snapshot_create(model, &snap));
    assert_int_equal(p7_weights_snapshot_restore(snap), P7_ERROR_STATE); /* nothing taken yet */
    P7_ASSERT_OK(p7_weights_snapshot_take(snap));
    size_t n, n2;
    float *before = model_values(model, &n);

    /* change every parameter and buffer: one SGD step on a batch, in training mode
     * (which also moves the BatchNorm running statistics) */
    p7_optimizer_options oo = {.hparams = "lr=0.5"};
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create_for_model(model, p7_test_plugin("sgd"), &oo, &opt));
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    const int64_t shape[4] = {4, 3, 32, 32};
    float *x = malloc(4 * 3072 * sizeof *x);
    p7_test_fill_uniform(x, 4 * 3072, 11, -1, 1);
    p7_tensor *tx = p7_test_tensor(device, 4, shape, x), *logits, *loss;
    P7_ASSERT_OK(p7_model_forward(model, tape, tx, 1, &logits));
    P7_ASSERT_OK(p7_sum(tape, logits, &loss));
    P7_ASSERT_OK(p7_tape_backward(tape, loss));
    P7_ASSERT_OK(p7_optimizer_step(opt));
    float *changed = model_values(model, &n2);
    assert_int_equal(n, n2);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += memcmp(&before[i], &changed[i], sizeof(float)) != 0;
    assert_true(differ > n / 2);

    P7_ASSERT_OK(p7_weights_snapshot_restore(snap));
    float *after = model_values(model, &n2);
    assert_int_equal(memcmp(before, after, n * sizeof(float)), 0);

    free(x);
    free(before);
    free(changed);
    free(after);
    p7_tensor_release(tx);
    p7_tensor_release(logits);
    p7_tensor_release(loss);
    p7_tape_destroy(tape);
    p7_optimizer_destroy(opt);
    p7_weights_snapshot_destroy(snap);
    p7_model_destroy(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decisions),
        cmocka_unit_test(test_snapshot_restores_bit_identical),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
