/* p7 training: learning-rate schedules, early stopping, per-optimizer recipes and the
 * trainer that runs epochs of a model, an optimizer and the data (docs/training.md).
 *
 *     p7_train_config c = {.epochs = 3, .batch = 128, .seed = 42};
 *     p7_schedule_parse("warmup-cosine:warmup=10%,per=step", &c.schedule);
 *     p7_trainer *t;
 *     p7_trainer_create(device, model, opt, &train, &val, &test, &c, &t);
 *     p7_epoch_report r;
 *     while (!p7_trainer_done(t)) { p7_trainer_run_epoch(t, &r); print r; }
 *     p7_trainer_destroy(t);
 *
 * Everything random derives from seeds the caller passes: the model's init seed, the
 * optimizer's seed (IVON's noise) and c.seed (data order, augmentation). p7bench passes
 * the run seed to all three, so one seed gives one run, the same on the same device. */
#ifndef P7_TRAIN_H
#define P7_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "p7/data.h"
#include "p7/device.h"
#include "p7/metrics.h"
#include "p7/nn.h"
#include "p7/optimizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- learning-rate schedules (schedule.c) ---- */

typedef enum p7_schedule_kind {
    P7_SCHEDULE_CONSTANT = 0,     /* lr throughout */
    P7_SCHEDULE_COSINE = 1,       /* floor + (lr - floor) (1 + cos(pi t / T)) / 2 */
    P7_SCHEDULE_WARMUP_COSINE = 2 /* linear from start*lr to lr over the warm-up, then cosine over the rest */
} p7_schedule_kind;

/* Zero-initialised: constant, per epoch. */
typedef struct p7_schedule {
    p7_schedule_kind kind;
    int per_step;          /* 0: the lr changes at each epoch's start; 1: before every optimizer step */
    double warmup_epochs;  /* warm-up length in epochs (fractions count when per_step) */
    double warmup_fraction;/* > 0: the warm-up is this fraction of the run instead */
    double min_warmup;     /* the warm-up lasts at least this many positions (steps when per_step) */
    double start;          /* first warm-up lr as a fraction of lr; 0 means 0.2 (lr/5, as the IVON scripts) */
    double floor;          /* the cosine ends at floor * lr (0: at zero) */
} p7_schedule;

/* The learning rate at `position` (0-based) of a run of `total` positions, a position
 * being an epoch (per_step 0) or an optimizer step (per_step 1); `per_epoch` positions
 * make one epoch (1 when stepping per epoch; it converts warmup_epochs). Pure. */
P7_API double p7_schedule_lr(const p7_schedule *schedule, double base_lr, uint64_t position, uint64_t total,
                             uint64_t per_epoch);

/* Text form: NAME[:key=value,...] with NAME constant, cosine or warmup-cosine and keys
 * per=epoch|step, warmup=EPOCHS or warmup=PERCENT% (of the run), min-warmup=POSITIONS,
 * start=FRACTION, floor=FRACTION; e.g. "warmup-cosine:warmup=2", "cosine:per=step,floor=0.01",
 * "warmup-cosine:per=step,warmup=5%,min-warmup=100" (5%, but at least 100 steps). Errors
 * name the key or value at fault and list the valid ones. */
P7_API p7_status p7_schedule_parse(const char *text, p7_schedule *out);
/* The canonical text of a schedule (parses back to it); returns buf, always terminated. */
P7_API const char *p7_schedule_format(const p7_schedule *schedule, char *buf, size_t size);

/* ---- early stopping (early_stopping.c) ---- */

/* What early stopping remembers; plain data, saved with a run to resume it. */
typedef struct p7_early_stopping_state {
    double best_loss;    /* +inf before the first observation */
    int best_epoch;      /* 1-based epoch of best_loss; 0 before the first */
    int bad_epochs;      /* epochs since the last improvement */
    int stopped;         /* patience ran out */
} p7_early_stopping_state;

P7_API void p7_early_stopping_init(p7_early_stopping_state *state);
/* One epoch's validation loss. An improvement is val_loss < best_loss - min_delta (NaN
 * never improves); it resets the counter, else the counter grows and `stopped` is set
 * once it reaches patience (patience <= 0: never). Returns 1 on an improvement. */
P7_API int p7_early_stopping_observe(p7_early_stopping_state *state, int patience, double min_delta, int epoch,
                                     double val_loss);

/* A device-side copy of a model's parameters and buffers (BatchNorm statistics): take
 * it at the best epoch, restore it at the end. Copies are enqueued; no host round trip. */
typedef struct p7_weights_snapshot p7_weights_snapshot;
P7_API p7_status p7_weights_snapshot_create(p7_model *model, p7_weights_snapshot **out);
P7_API p7_status p7_weights_snapshot_take(p7_weights_snapshot *snapshot);
P7_API p7_status p7_weights_snapshot_restore(p7_weights_snapshot *snapshot);
P7_API void p7_weights_snapshot_destroy(p7_weights_snapshot *snapshot); /* NULL is a no-op */
/* Exchanges the model's parameters and buffers with the snapshot's copies (through one
 * device scratch buffer of the largest tensor), so the snapshot can be saved and loaded
 * with the model's own files: swap, p7_model_save_stream, swap back. Afterwards the
 * snapshot counts as taken. */
P7_API p7_status p7_weights_snapshot_swap(p7_weights_snapshot *snapshot);

/* ---- recipes (recipe.c) ---- */

/* The settings an optimizer trains with when the user gives none. */
typedef struct p7_recipe {
    const char *optimizer; /* the plugin's name ("sgd", "adam", "ivon") */
    const char *hparams;   /* "name=value,..." for p7_optimizer_options.hparams */
    const char *schedule;  /* p7_schedule_parse text */
    const char *why;       /* one line: where the values come from */
    /* A hyperparameter set from the run's length by p7_recipe_hparams_for_run (NULL:
     * none): an EMA rate whose average spans `horizon` of the run, as IVON's authors'
     * beta2 = 0.99999 spans half of their 200,000 steps. */
    const char *horizon_hparam;
    double horizon, horizon_min, horizon_max; /* fraction of the run; the rate's bounds */
} p7_recipe;

/* The recipe of a bundled optimizer by its plugin name; NULL when there is none. */
P7_API const p7_recipe *p7_recipe_find(const char *optimizer_name);
/* The recipe's assignments with the user's replacing the same names and the user's
 * other names appended: "lr=0.2,wd=1" + "lr=0.1" -> "lr=0.1,wd=1". Either may be NULL. */
P7_API p7_status p7_recipe_merge_hparams(const char *recipe, const char *user, char *out, size_t size);
/* The recipe's assignments for a run of `steps` optimizer steps: its horizon_hparam
 * becomes 1 - 1/(horizon * steps), within [horizon_min, horizon_max]. steps = 0 (not
 * known yet) or a recipe without one gives recipe->hparams as written. */
P7_API p7_status p7_recipe_hparams_for_run(const p7_recipe *recipe, uint64_t steps, char *out, size_t size);

/* ---- the trainer (trainer.c) ---- */

/* Where a run is, after each optimizer step (p7_train_config.on_step). */
typedef struct p7_step_progress {
    int epoch;               /* the epoch in progress, 1-based */
    size_t batch, batches;   /* steps done in this epoch; steps per epoch */
    uint64_t step;           /* optimizer steps so far */
    double loss;             /* the epoch's mean training loss as last read back (every 25 steps); NaN before */
    double images_per_s;     /* training images per second in this epoch (since a resume) */
    double seconds;          /* wall time of this epoch so far (since a resume) */
} p7_step_progress;

/* Called after every optimizer step, on the host, with no device synchronisation.
 * Returning nonzero stops the epoch after this step (a user's Ctrl-C: the trainer needs no
 * signal handling of its own): p7_trainer_run_epoch then reports P7_EPOCH_INTERRUPTED. */
typedef int (*p7_step_callback)(const p7_step_progress *progress, void *user);

typedef struct p7_train_config {
    int epochs;              /* > 0 */
    int batch;               /* images per step (an ensemble tiles them M times) */
    uint64_t seed;           /* data order and augmentation */
    p7_schedule schedule;    /* applied through p7_optimizer_set(opt, "lr", ...) */
    double clip_norm;        /* > 0: clip the gradients' global L2 norm to this after every backward */
    int patience;            /* > 0: early stopping on the validation NLL */
    double min_delta;
    int augment;             /* P7_AUGMENT_* flags, training batches only */
    int bma_samples;         /* < 0: p7_default_bma_samples; 0: no BMA; else S */
    unsigned faithful;       /* P7_FAITHFUL_* (p7/faithful.h): the training switches act here */
    int joint_loss;          /* ensembles: train on the CE of the mean logits (the sharing models) */
    int test_every_epoch;    /* 0: the test set once, after the last epoch (or the early stop) */
    double max_loss;         /* a training loss above this (or NaN, inf) is divergence; 0 means 1e4 */
    int ece_bins;            /* 0 means 15 */
    int chunk;               /* > 0: images per forward/backward, the chunks' gradients summed into
                                one step (no BatchNorm); 0: the batch, or what fits the device */
    p7_normalization norm;   /* zero std: the CIFAR-10 constants */
    const char *model_label; /* names the model in messages (the memory check); NULL: "the model" */
    p7_step_callback on_step;/* may be NULL */
    void *on_step_user;
} p7_train_config;

typedef enum p7_epoch_outcome {
    P7_EPOCH_OK = 0,
    P7_EPOCH_DIVERGED = 1,   /* the training loss went non-finite or above max_loss: no evaluation */
    P7_EPOCH_EARLY_STOP = 2, /* patience ran out after this epoch */
    P7_EPOCH_INTERRUPTED = 3 /* on_step asked to stop mid-epoch: no evaluation; the next
                                p7_trainer_run_epoch continues the same epoch, and
                                p7_trainer_get_state gives the position to resume from */
} p7_epoch_outcome;

typedef struct p7_epoch_report {
    int epoch;               /* 1-based */
    uint64_t step;           /* optimizer steps so far */
    p7_epoch_outcome outcome;
    double lr;               /* the learning rate of the epoch's last step */
    double train_loss;       /* mean over the epoch's steps (first MC sample) */
    double grad_norm;        /* with clip_norm: the last step's norm before clipping, else 0 */
    double train_seconds, seconds, images_per_s; /* images/s of training alone */
    int has_val, has_test, has_bma;
    p7_metrics_summary val, test;
    p7_metrics_summary test_bma; /* Bayesian model average over bma_samples draws (has_bma) */
    int bma_samples;
    int improved;            /* early stopping: a new best validation loss */
    int restored_epoch;      /* > 0: the test metrics are of the weights restored from this epoch */
} p7_epoch_report;

typedef struct p7_trainer p7_trainer;

/* A trainer over a model and an optimizer created for it (both stay the caller's and
 * must outlive the trainer); the datasets too. val may be NULL (no validation, no early
 * stopping); P7_FAITHFUL_TEST_AS_VAL makes test the validation set. Checks that a
 * training step fits the device's memory. */
P7_API p7_status p7_trainer_create(p7_device *device, p7_model *model, p7_optimizer *optimizer,
                                   const p7_dataset *train, const p7_dataset *val, const p7_dataset *test,
                                   const p7_train_config *config, p7_trainer **out);
P7_API void p7_trainer_destroy(p7_trainer *trainer); /* NULL is a no-op */

/* One epoch: training, then validation (and test) metrics. After the last epoch, an
 * early stop or a divergence, p7_trainer_done is true and the call fails with
 * P7_ERROR_STATE. */
P7_API p7_status p7_trainer_run_epoch(p7_trainer *trainer, p7_epoch_report *report);
P7_API int p7_trainer_done(const p7_trainer *trainer);
/* Images per forward/backward pass: the batch, or fewer when a whole batch's step does
 * not fit the device and the model has no BatchNorm (whose batch statistics chunks would
 * change); the chunks' gradients are summed into the batch's step. */
P7_API int p7_trainer_chunk(const p7_trainer *trainer);

/* Runs epochs until done; `on_epoch` (may be NULL) sees each report and stops the run by
 * returning nonzero. An interrupted epoch (P7_EPOCH_INTERRUPTED) ends the call without
 * on_epoch. *last (may be NULL) receives the last report. */
typedef int (*p7_epoch_callback)(const p7_epoch_report *report, void *user);
P7_API p7_status p7_trainer_run(p7_trainer *trainer, p7_epoch_callback on_epoch, void *user, p7_epoch_report *last);

/* What a resumed run needs besides the model and optimizer state (and, with early
 * stopping, the best weights: p7_trainer_best_weights). */
typedef struct p7_trainer_state {
    int epoch;               /* epochs completed */
    uint64_t step;           /* optimizer steps taken */
    p7_early_stopping_state early_stopping;
    size_t batch;            /* steps done in the unfinished epoch `epoch + 1` (0: at an epoch boundary) */
    float loss_sum;          /* their summed training loss, the float the device holds */
} p7_trainer_state;
/* Reads the partial epoch's loss sum back from the device when mid-epoch. */
P7_API p7_status p7_trainer_get_state(const p7_trainer *trainer, p7_trainer_state *out);
/* Before the first step only: continue at batch state->batch of epoch state->epoch + 1
 * (the data pipeline starts there, the schedule's learning rate is set again, the loss sum
 * carries on from state->loss_sum), so with the model and optimizer loaded from the same
 * point the run goes on bit for bit as an uninterrupted one. */
P7_API p7_status p7_trainer_set_state(p7_trainer *trainer, const p7_trainer_state *state);

/* The early-stopping snapshot of the best epoch's weights (borrowed), or NULL when the
 * run keeps none (no validation set, patience 0, or faithful es-no-restore). A checkpoint
 * saves it when early_stopping.best_epoch > 0 (p7_weights_snapshot_swap). */
P7_API p7_weights_snapshot *p7_trainer_best_weights(p7_trainer *trainer);

/* The reliability diagram of the last test evaluation (with test_every_epoch 0, the final
 * one: after the last epoch or the early stop), at the mean weights (not IVON's model
 * average): bin j of p7_trainer_ece_bins equal-width confidence bins, as p7_metrics_bin
 * gives it. Fails with P7_ERROR_STATE when the last evaluation was not of the test set
 * (none yet, a validation pass after it, a divergence that skipped it), and with
 * P7_ERROR_INVALID_ARGUMENT for a bin out of range. */
P7_API p7_status p7_trainer_test_bins(const p7_trainer *trainer, int bin, size_t *count, double *accuracy,
                                      double *confidence);
/* The number of calibration bins (p7_train_config.ece_bins, 15 when it was 0). */
P7_API int p7_trainer_ece_bins(const p7_trainer *trainer);

/* The BMA samples used when the config says "default": 8 on CPU devices, 32 elsewhere
 * (the authors use 64; more samples mostly improve NLL, and a CPU pays S forward passes). */
P7_API int p7_default_bma_samples(const p7_device *device);

#ifdef __cplusplus
}
#endif

#endif
