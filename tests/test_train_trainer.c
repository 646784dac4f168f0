/* The trainer on the built-in synthetic set: the loss falls, one seed gives one run,
 * clipping bounds the step, the schedule reaches the optimizer, early stopping restores
 * the best epoch's weights, IVON reports its model average, ensembles and the faithful
 * switches (test as validation, four loaders, the joint loss) run, divergence ends the run,
 * a run stopped mid-epoch and resumed from saved state ends bit for bit the same, and the
 * final test's calibration bins are there only after the final test and add up to its ECE. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

static const double pi = 3.14159265358979323846;

P7_TEST_FILE_DEVICE

typedef struct fixture {
    p7_dataset train, val, test;
    p7_model *model;
    p7_optimizer *opt;
    p7_trainer *trainer;
} fixture;

static void setup_run(fixture *f, size_t n_train, int members, const char *optimizer, const char *hparams,
                      uint64_t seed, const p7_train_config *c)
{
    memset(f, 0, sizeof *f);
    P7_ASSERT_OK(p7_synthetic_shapes10(n_train, 3, P7_SPLIT_TRAIN, &f->train));
    P7_ASSERT_OK(p7_synthetic_shapes10(200, 4, P7_SPLIT_TRAIN, &f->val));
    P7_ASSERT_OK(p7_synthetic_shapes10(300, 3, P7_SPLIT_TEST, &f->test));
    P7_ASSERT_OK(p7_model_simple_cnn(device, members, 10, 0.5f, 0.5f, seed, &f->model));
    p7_optimizer_options oo = {.hparams = hparams, .seed = seed, .dataset_size = n_train};
    P7_ASSERT_OK(p7_optimizer_create_for_model(f->model, p7_test_plugin(optimizer), &oo, &f->opt));
    P7_ASSERT_OK(p7_trainer_create(device, f->model, f->opt, &f->train, &f->val, &f->test, c, &f->trainer));
}

static void teardown_run(fixture *f)
{
    p7_trainer_destroy(f->trainer);
    p7_optimizer_destroy(f->opt);
    p7_model_destroy(f->model);
    p7_dataset_free(&f->train);
    p7_dataset_free(&f->val);
    p7_dataset_free(&f->test);
}

static void run_all(fixture *f, p7_epoch_report *reports, int capacity, int *count)
{
    *count = 0;
    while (!p7_trainer_done(f->trainer)) {
        assert_true(*count < capacity);
        P7_ASSERT_OK(p7_trainer_run_epoch(f->trainer, &reports[*count]));
        (*count)++;
    }
}

static void test_loss_falls_and_seed_repeats(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 3, .batch = 64, .seed = 5, .test_every_epoch = 1};
    p7_epoch_report a[3], b[3], other[3];
    int na, nb, no;
    fixture f;
    setup_run(&f, 1024, 1, "adam", "lr=2e-3", 5, &c);
    run_all(&f, a, 3, &na);
    teardown_run(&f);
    setup_run(&f, 1024, 1, "adam", "lr=2e-3", 5, &c);
    run_all(&f, b, 3, &nb);
    teardown_run(&f);
    c.seed = 6;
    setup_run(&f, 1024, 1, "adam", "lr=2e-3", 6, &c);
    run_all(&f, other, 3, &no);
    teardown_run(&f);
    assert_int_equal(na, 3);
    print_message("  train loss %.4f -> %.4f, val acc %.3f -> %.3f\n", a[0].train_loss, a[2].train_loss,
                  a[0].val.accuracy, a[2].val.accuracy);
    assert_true(a[2].train_loss < 0.8 * a[0].train_loss);
    assert_true(a[2].val.accuracy > 0.3); /* chance is 0.1 */
    assert_int_equal(a[2].step, 3 * 16);
    assert_true(a[0].has_val && a[0].has_test && !a[0].has_bma);
    assert_int_equal(a[0].val.count, 200);
    assert_int_equal(a[0].test.count, 300);
    for (int e = 0; e < 3; e++) { /* the same seed: the same run, bit for bit */
        assert_true(a[e].train_loss == b[e].train_loss);
        assert_true(a[e].val.nll == b[e].val.nll && a[e].test.nll == b[e].test.nll);
        assert_true(a[e].val.ece == b[e].val.ece && a[e].test.brier == b[e].test.brier);
    }
    assert_true(a[2].train_loss != other[2].train_loss); /* another seed: another run */
}

/* With plain SGD (no momentum, lr 1) one step moves the parameters by exactly the
 * clipped gradient: its norm is the clip threshold when the raw norm is above it. */
static void test_clipping_bounds_the_step(void **state)
{
    (void)state;
    const double clip = 0.01;
    p7_train_config c = {.epochs = 1, .batch = 64, .seed = 1, .clip_norm = clip};
    fixture f;
    setup_run(&f, 64, 1, "sgd", "lr=1", 1, &c); /* one step */
    size_t np = p7_model_param_count(f.model);
    float **before = calloc(np, sizeof *before);
    for (size_t i = 0; i < np; i++) before[i] = p7_test_download(p7_model_param(f.model, i, NULL));
    p7_epoch_report r;
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_int_equal(r.step, 1);
    double moved = 0;
    for (size_t i = 0; i < np; i++) {
        float *after = p7_test_download(p7_model_param(f.model, i, NULL));
        for (size_t j = 0; j < p7_tensor_numel(p7_model_param(f.model, i, NULL)); j++) {
            double d = (double)after[j] - (double)before[i][j];
            moved += d * d;
        }
        free(after);
        free(before[i]);
    }
    free(before);
    moved = sqrt(moved);
    print_message("  raw gradient norm %.4f, step norm %.6f (clip %.3f)\n", r.grad_norm, moved, clip);
    assert_true(r.grad_norm > 10 * clip); /* the clip did bite */
    assert_true(fabs(moved - clip) < 1e-3 * clip + 1e-6);
    teardown_run(&f);
}

static void test_schedule_reaches_the_optimizer(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 2, .batch = 64, .seed = 1};
    P7_ASSERT_OK(p7_schedule_parse("cosine", &c.schedule));
    fixture f;
    setup_run(&f, 128, 1, "sgd", "lr=0.04,momentum=0.9", 1, &c);
    p7_epoch_report r;
    double lr;
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    P7_ASSERT_OK(p7_optimizer_get(f.opt, 0, "lr", &lr));
    assert_true(r.lr == 0.04 && lr == 0.04);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    P7_ASSERT_OK(p7_optimizer_get(f.opt, 0, "lr", &lr));
    assert_true(fabs(r.lr - 0.02) < 1e-15 && lr == r.lr); /* cos(pi/2) halfway */
    teardown_run(&f);

    /* per step: the last step of 2 epochs x 2 steps is position 3 of 4 */
    P7_ASSERT_OK(p7_schedule_parse("cosine:per=step", &c.schedule));
    setup_run(&f, 128, 1, "sgd", "lr=0.04", 1, &c);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_true(fabs(r.lr - 0.02 * (1 + cos(pi / 4))) < 1e-15);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_true(fabs(r.lr - 0.02 * (1 + cos(3 * pi / 4))) < 1e-15);
    teardown_run(&f);
}

/* min_delta huge: only the first epoch improves, so patience 1 stops after epoch 2 and
 * the test metrics are those of epoch 1's weights, restored. */
static void test_early_stopping_restores(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 5, .batch = 64, .seed = 2, .patience = 1, .min_delta = 1e9, .test_every_epoch = 1};
    fixture f;
    setup_run(&f, 256, 1, "adam", "lr=2e-3", 2, &c);
    p7_epoch_report r[5];
    int n;
    run_all(&f, r, 5, &n);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].improved, 1);
    assert_int_equal(r[1].outcome, P7_EPOCH_EARLY_STOP);
    assert_int_equal(r[1].restored_epoch, 1);
    assert_true(r[1].test.nll == r[0].test.nll && r[1].test.accuracy == r[0].test.accuracy);
    p7_trainer_state s;
    P7_ASSERT_OK(p7_trainer_get_state(f.trainer, &s));
    assert_int_equal(s.epoch, 2);
    assert_int_equal(s.early_stopping.best_epoch, 1);
    assert_true(s.early_stopping.stopped);
    p7_epoch_report extra;
    assert_int_equal(p7_trainer_run_epoch(f.trainer, &extra), P7_ERROR_STATE);
    teardown_run(&f);

    /* the original's early stopping keeps the last weights */
    c.faithful = P7_FAITHFUL_ES_NO_RESTORE;
    setup_run(&f, 256, 1, "adam", "lr=2e-3", 2, &c);
    run_all(&f, r, 5, &n);
    assert_int_equal(n, 2);
    assert_int_equal(r[1].restored_epoch, 0);
    assert_true(r[1].test.nll != r[0].test.nll);
    teardown_run(&f);
}

static void test_test_as_val(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 1, .batch = 64, .seed = 1};
    fixture f;
    setup_run(&f, 128, 1, "adam", NULL, 1, &c);
    p7_epoch_report r;
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_int_equal(r.val.count, 200);
    teardown_run(&f);
    c.faithful = P7_FAITHFUL_TEST_AS_VAL;
    setup_run(&f, 128, 1, "adam", NULL, 1, &c);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_int_equal(r.val.count, 300); /* the test set's size */
    assert_true(r.val.nll == r.test.nll);
    teardown_run(&f);
}

static void test_ivon_reports_bma(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 1, .batch = 64, .seed = 3, .bma_samples = 4};
    fixture f;
    setup_run(&f, 256, 1, "ivon", "lr=0.2,hess_init=0.5", 3, &c);
    p7_epoch_report r;
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_true(r.has_bma);
    assert_int_equal(r.bma_samples, 4);
    assert_int_equal(r.test_bma.count, 300);
    assert_true(isfinite(r.test_bma.nll) && r.test_bma.nll > 0);
    /* the model average is another prediction than the mean weights' */
    assert_true(r.test_bma.nll != r.test.nll);
    teardown_run(&f);
    /* an optimizer that does not sample has no model average */
    setup_run(&f, 128, 1, "adam", NULL, 3, &c);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_false(r.has_bma);
    teardown_run(&f);
}

static void test_ensembles_and_faithful_loaders(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 1, .batch = 32, .seed = 4};
    fixture f;
    p7_epoch_report r;
    setup_run(&f, 128, 2, "adam", NULL, 4, &c); /* tiled labels */
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_true(isfinite(r.train_loss) && r.has_val);
    assert_int_equal(r.val.members, 2);
    double tiled_loss = r.train_loss;
    teardown_run(&f);

    c.joint_loss = 1; /* CE of the members' mean logits: another loss */
    setup_run(&f, 128, 2, "adam", NULL, 4, &c);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_true(isfinite(r.train_loss) && r.train_loss != tiled_loss);
    teardown_run(&f);

    c.joint_loss = 0;
    c.faithful = P7_FAITHFUL_FOUR_LOADERS; /* four batches per step, as many steps */
    setup_run(&f, 128, 2, "adam", NULL, 4, &c);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_int_equal(r.step, 4);
    assert_true(isfinite(r.train_loss));
    teardown_run(&f);
}

static void test_divergence_ends_the_run(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 3, .batch = 64, .seed = 1};
    fixture f;
    setup_run(&f, 256, 1, "sgd", "lr=1e30", 1, &c);
    p7_epoch_report r;
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_int_equal(r.outcome, P7_EPOCH_DIVERGED);
    assert_false(r.has_val);
    assert_true(p7_trainer_done(f.trainer));
    assert_int_equal(p7_trainer_run_epoch(f.trainer, &r), P7_ERROR_STATE);
    teardown_run(&f);

    p7_train_config bad = {.epochs = 0, .batch = 64};
    p7_trainer *t;
    p7_dataset d = {0};
    assert_int_equal(p7_trainer_create(device, (p7_model *)&d, (p7_optimizer *)&d, &d, NULL, NULL, &bad, &t),
                     P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "epochs 0"));
}

/* on_step: stop once at (stop_epoch, stop_batch). */
typedef struct stop_at {
    int epoch;
    size_t batch;
    int calls;
} stop_at;

static int stop_when(const p7_step_progress *p, void *user)
{
    stop_at *s = user;
    s->calls++;
    assert_true(p->batch >= 1 && p->batch < p->batches);
    return p->epoch == s->epoch && p->batch == s->batch;
}

static void assert_same_report(const p7_epoch_report *a, const p7_epoch_report *b)
{
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->step, b->step);
    assert_int_equal(a->outcome, b->outcome);
    assert_true(a->train_loss == b->train_loss && a->lr == b->lr);
    assert_true(a->val.nll == b->val.nll && a->val.accuracy == b->val.accuracy && a->val.ece == b->val.ece);
    assert_true(a->test.nll == b->test.nll && a->test.accuracy == b->test.accuracy);
    assert_int_equal(a->has_bma, b->has_bma);
    assert_true(!a->has_bma || (a->test_bma.nll == b->test_bma.nll && a->test_bma.accuracy == b->test_bma.accuracy));
    assert_int_equal(a->restored_epoch, b->restored_epoch);
}

/* A run stopped mid-epoch by on_step, saved (model, optimizer, best weights, trainer
 * state) and resumed in fresh objects ends bit for bit as the uninterrupted run: IVON
 * (its noise and MC samples), a per-step warm-up cosine schedule, augmentation, and early
 * stopping whose best epoch (1: min_delta keeps later epochs from improving) is restored
 * at the end from the saved snapshot. Stopping and continuing in place changes nothing
 * either. */
static void test_resume_mid_epoch_is_bit_identical(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 3, .batch = 64, .seed = 9, .patience = 5, .min_delta = 1e9,
                         .test_every_epoch = 1, .bma_samples = 2, .augment = P7_AUGMENT_CROP | P7_AUGMENT_FLIP};
    P7_ASSERT_OK(p7_schedule_parse("warmup-cosine:warmup=1,per=step", &c.schedule));
    const char *hp = "lr=0.1,hess_init=0.5";
    p7_epoch_report want[3], got[3];
    int n;
    fixture f;
    setup_run(&f, 640, 1, "ivon", hp, 9, &c); /* 10 batches an epoch */
    run_all(&f, want, 3, &n);
    assert_int_equal(n, 3);
    assert_int_equal(want[2].restored_epoch, 1);
    size_t np = p7_model_param_count(f.model);
    float **final = calloc(np, sizeof *final);
    for (size_t i = 0; i < np; i++) final[i] = p7_test_download(p7_model_param(f.model, i, NULL));
    teardown_run(&f);

    /* stopped at batch 4 of epoch 3 and continued in place */
    stop_at stop = {.epoch = 3, .batch = 4};
    c.on_step = stop_when;
    c.on_step_user = &stop;
    setup_run(&f, 640, 1, "ivon", hp, 9, &c);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &got[0]));
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &got[1]));
    p7_epoch_report interrupted;
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &interrupted));
    assert_int_equal(interrupted.outcome, P7_EPOCH_INTERRUPTED);
    assert_false(interrupted.has_val || interrupted.has_test);
    assert_false(p7_trainer_done(f.trainer));
    p7_trainer_state s;
    P7_ASSERT_OK(p7_trainer_get_state(f.trainer, &s));
    assert_int_equal(s.epoch, 2);
    assert_int_equal(s.batch, 4);
    assert_int_equal(s.step, 24);
    assert_int_equal(s.early_stopping.best_epoch, 1);
    assert_true(s.loss_sum > 0);
    FILE *saved = tmpfile();
    assert_non_null(saved);
    P7_ASSERT_OK(p7_model_save_stream(f.model, saved, "checkpoint"));
    P7_ASSERT_OK(p7_optimizer_save_stream(f.opt, saved));
    p7_weights_snapshot *best = p7_trainer_best_weights(f.trainer);
    assert_non_null(best);
    P7_ASSERT_OK(p7_weights_snapshot_swap(best));
    P7_ASSERT_OK(p7_model_save_stream(f.model, saved, "checkpoint best"));
    P7_ASSERT_OK(p7_weights_snapshot_swap(best));
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &got[2]));
    for (int e = 0; e < 3; e++) assert_same_report(&want[e], &got[e]);
    teardown_run(&f);

    /* resumed in new objects from the saved point */
    c.on_step = NULL;
    setup_run(&f, 640, 1, "ivon", hp, 9, &c);
    rewind(saved);
    P7_ASSERT_OK(p7_model_load_stream(f.model, saved, "checkpoint"));
    P7_ASSERT_OK(p7_optimizer_load_stream(f.opt, saved));
    best = p7_trainer_best_weights(f.trainer);
    P7_ASSERT_OK(p7_weights_snapshot_swap(best));
    P7_ASSERT_OK(p7_model_load_stream(f.model, saved, "checkpoint best"));
    P7_ASSERT_OK(p7_weights_snapshot_swap(best));
    fclose(saved);
    P7_ASSERT_OK(p7_trainer_set_state(f.trainer, &s));
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &got[2]));
    assert_same_report(&want[2], &got[2]);
    assert_true(p7_trainer_done(f.trainer));
    for (size_t i = 0; i < np; i++) {
        p7_tensor *t = p7_model_param(f.model, i, NULL);
        float *now = p7_test_download(t);
        assert_memory_equal(now, final[i], p7_tensor_numel(t) * sizeof(float));
        free(now);
        free(final[i]);
    }
    free(final);

    /* a state of another shape of run is refused */
    teardown_run(&f);
    setup_run(&f, 640, 1, "ivon", hp, 9, &c);
    p7_trainer_state odd = s;
    odd.step = 23;
    assert_int_equal(p7_trainer_set_state(f.trainer, &odd), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "step 23"));
    odd = s;
    odd.batch = 10;
    assert_int_equal(p7_trainer_set_state(f.trainer, &odd), P7_ERROR_INVALID_ARGUMENT);
    teardown_run(&f);
}

/* The bins after the final test: they hold every test image, each bin's mean confidence
 * lies in its range, the counts right are whole numbers, and sum_j n_j/N |acc_j - conf_j|
 * gives back the report's ECE. Before the final test (a validation pass came last) and out
 * of range there are none. */
static void test_final_test_bins(void **state)
{
    (void)state;
    p7_train_config c = {.epochs = 2, .batch = 64, .seed = 4};
    fixture f;
    setup_run(&f, 256, 2, "adam", "lr=2e-3", 4, &c);
    size_t count;
    double accuracy, confidence;
    assert_int_equal(p7_trainer_test_bins(f.trainer, 0, &count, &accuracy, &confidence), P7_ERROR_STATE);
    p7_epoch_report r;
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_true(r.has_val && !r.has_test);
    assert_int_equal(p7_trainer_test_bins(f.trainer, 0, &count, &accuracy, &confidence), P7_ERROR_STATE);
    P7_ASSERT_OK(p7_trainer_run_epoch(f.trainer, &r));
    assert_true(r.has_test && p7_trainer_done(f.trainer));
    const int bins = p7_trainer_ece_bins(f.trainer);
    assert_int_equal(bins, 15); /* ece_bins 0 means 15 */
    size_t total = 0;
    double ece = 0;
    for (int j = 0; j < bins; j++) {
        P7_ASSERT_OK(p7_trainer_test_bins(f.trainer, j, &count, &accuracy, &confidence));
        total += count;
        if (!count) continue;
        assert_true(confidence >= (double)j / bins - 1e-12 && confidence <= (double)(j + 1) / bins + 1e-12);
        double right = accuracy * (double)count;
        assert_true(fabs(right - round(right)) < 1e-9);
        ece += (double)count / 300.0 * fabs(accuracy - confidence);
    }
    assert_int_equal(total, 300);
    assert_true(fabs(ece - r.test.ece) < 1e-12);
    assert_int_equal(p7_trainer_test_bins(f.trainer, bins, &count, &accuracy, &confidence), P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_trainer_test_bins(NULL, 0, &count, &accuracy, &confidence), P7_ERROR_INVALID_ARGUMENT);
    teardown_run(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_and_seed_repeats),
        cmocka_unit_test(test_clipping_bounds_the_step),
        cmocka_unit_test(test_schedule_reaches_the_optimizer),
        cmocka_unit_test(test_early_stopping_restores),
        cmocka_unit_test(test_test_as_val),
        cmocka_unit_test(test_ivon_reports_bma),
        cmocka_unit_test(test_ensembles_and_faithful_loaders),
        cmocka_unit_test(test_divergence_ends_the_run),
        cmocka_unit_test(test_resume_mid_epoch_is_bit_identical),
        cmocka_unit_test(test_final_test_bins),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
