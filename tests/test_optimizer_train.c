/* A small model trains with each bundled optimizer plugin and its loss falls: a conv
 * layer, ReLU and a linear classifier on a separable synthetic task, trained through the
 * generic loop (sample / backward / restore per MC draw, then step), so IVON runs through
 * the same code as SGD and Adam. The loss is measured at the mean weights, without a
 * tape, before and after training; IVON's BMA prediction is checked too. */
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

#define BATCH 24
#define CLASSES 3

P7_TEST_FILE_DEVICE

typedef struct task {
    p7_model *model;
    p7_tensor *x;
    p7_buffer *labels;
    int32_t y[BATCH];
} task;

/* Class c lights up channel c of a 3x4x4 image, on top of uniform noise. */
static void task_open(task *t)
{
    P7_ASSERT_OK(p7_model_create(device, 1, 7, &t->model));
    int conv, fc;
    p7_layer_config c = {.kind = P7_LAYER_CONV2D, .in = 3, .out = 4, .kernel = 3, .stride = 1, .pad = 1, .bias = 1};
    P7_ASSERT_OK(p7_model_add_layer(t->model, "conv", &c, &conv));
    p7_layer_config l = {.kind = P7_LAYER_LINEAR, .in = 4 * 4 * 4, .out = CLASSES, .bias = 1};
    P7_ASSERT_OK(p7_model_add_layer(t->model, "fc", &l, &fc));
    P7_ASSERT_OK(p7_model_add_step(t->model, P7_STEP_LAYER, conv, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(t->model, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(t->model, P7_STEP_FLATTEN, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(t->model, P7_STEP_LAYER, fc, 0, 0));

    static float x[BATCH * 3 * 16];
    p7_test_fill_uniform(x, sizeof x / sizeof x[0], 99, 0.0f, 0.5f);
    for (int b = 0; b < BATCH; b++) {
        t->y[b] = b % CLASSES;
        for (int i = 0; i < 16; i++) x[(b * 3 + t->y[b]) * 16 + i] += 1.0f;
    }
    const int64_t shape[4] = {BATCH, 3, 4, 4};
    P7_ASSERT_OK(p7_tensor_create(device, 4, shape, &t->x));
    P7_ASSERT_OK(p7_tensor_upload(t->x, x, sizeof x / sizeof x[0]));
    P7_ASSERT_OK(p7_buffer_alloc(device, sizeof t->y, &t->labels));
    P7_ASSERT_OK(p7_buffer_upload(t->labels, t->y, sizeof t->y));
}

static void task_close(task *t)
{
    p7_buffer_free(t->labels);
    p7_tensor_release(t->x);
    p7_model_destroy(t->model);
}

static float loss_at_mean(task *t)
{
    p7_tensor *logits, *loss;
    P7_ASSERT_OK(p7_model_forward(t->model, NULL, t->x, 0, &logits));
    P7_ASSERT_OK(p7_cross_entropy(NULL, logits, p7_buffer_mem(t->labels), 0, &loss));
    float v;
    P7_ASSERT_OK(p7_tensor_download(loss, &v, 1));
    p7_tensor_release(logits);
    p7_tensor_release(loss);
    return v;
}

static void train_step(task *t, p7_optimizer *opt, p7_tape *tape)
{
    unsigned mc = p7_optimizer_mc_samples(opt);
    for (unsigned s = 0; s < mc; s++) {
        P7_ASSERT_OK(p7_optimizer_sample(opt));
        p7_model_zero_grad(t->model);
        p7_tensor *logits, *loss;
        P7_ASSERT_OK(p7_model_forward(t->model, tape, t->x, 1, &logits));
        P7_ASSERT_OK(p7_cross_entropy(tape, logits, p7_buffer_mem(t->labels), 0, &loss));
        P7_ASSERT_OK(p7_tape_backward(tape, loss));
        p7_tensor_release(logits);
        p7_tensor_release(loss);
        P7_ASSERT_OK(p7_optimizer_restore(opt, 1));
    }
    P7_ASSERT_OK(p7_optimizer_step(opt));
}

static void train(const char *name, const char *hparams, int steps)
{
    task t;
    task_open(&t);
    p7_optimizer_options o = {0};
    o.hparams = hparams;
    o.seed = 5;
    p7_optimizer *opt;
    P7_ASSERT_OK(p7_optimizer_create_for_model(t.model, p7_test_plugin(name), &o, &opt));
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    float before = loss_at_mean(&t);
    for (int i = 0; i < steps; i++) train_step(&t, opt, tape);
    float after = loss_at_mean(&t);
    print_message("%s: loss %.4f -> %.4f after %d steps\n", name, (double)before, (double)after, steps);
    assert_true(isfinite(after));
    assert_true(after < 0.5f * before);

    /* Prediction: at the mean, and a 4-sample BMA; both are distributions over classes,
     * and the weights are the mean again afterwards. */
    p7_tensor *pm, *pb;
    P7_ASSERT_OK(p7_optimizer_predict(opt, t.model, t.x, 0, &pm));
    P7_ASSERT_OK(p7_optimizer_predict(opt, t.model, t.x, 4, &pb));
    float m[BATCH * CLASSES], b[BATCH * CLASSES];
    P7_ASSERT_OK(p7_tensor_download(pm, m, BATCH * CLASSES));
    P7_ASSERT_OK(p7_tensor_download(pb, b, BATCH * CLASSES));
    int correct = 0;
    for (int r = 0; r < BATCH; r++) {
        float sm = 0, sb = 0;
        int best = 0;
        for (int c = 0; c < CLASSES; c++) {
            sm += m[r * CLASSES + c];
            sb += b[r * CLASSES + c];
            if (b[r * CLASSES + c] > b[r * CLASSES + best]) best = c;
        }
        assert_true(fabsf(sm - 1.0f) < 1e-4f && fabsf(sb - 1.0f) < 1e-4f);
        correct += best == t.y[r];
    }
    assert_true(correct >= BATCH * 2 / 3);
    assert_true(fabsf(loss_at_mean(&t) - after) == 0.0f);
    p7_tensor_release(pm);
    p7_tensor_release(pb);
    p7_tape_destroy(tape);
    p7_optimizer_destroy(opt);
    task_close(&t);
}

static void test_train_sgd(void **s) { (void)s; train("sgd", "lr=0.1,momentum=0.9", 30); }
static void test_train_adam(void **s) { (void)s; train("adam", "lr=0.02", 30); }
static void test_train_adamw(void **s) { (void)s; train("adam", "lr=0.02,decoupled=1,weight_decay=0.01", 30); }
static void test_train_ivon(void **s) { (void)s; train("ivon", "lr=0.2,ess=2000,hess_init=0.5,mc_samples=2", 30); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_sgd),
        cmocka_unit_test(test_train_adam),
        cmocka_unit_test(test_train_adamw),
        cmocka_unit_test(test_train_ivon),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
