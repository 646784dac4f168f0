/* The trainer: epochs of training steps (MC samples, ensembles' tiled labels, the joint
 * loss, four loaders, clipping, the schedule), then validation and test metrics, IVON's
 * Bayesian model average, early stopping with its restore. docs/training.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p7/faithful.h"
#include "p7/ops.h"
#include "p7/train.h"
#include "runtime/runtime.h"

/* How often the training loss is read back to catch a diverging run: every read waits
 * for the queue, so not every step; a NaN also survives in the epoch's sum, which is read
 * at the end of every epoch anyway. */
enum { LOSS_CHECK_EVERY = 25 };
/* The original's CIFAR-20 combined regime: four loaders per step (seed-study 7). */
enum { MAX_LOADERS = 4 };
/* Validation augmentation (P7_FAITHFUL_VAL_AUGMENT) draws from its own stream of the run seed. */
#define VAL_AUGMENT_SEED_XOR 0x56414c41554755ull /* "VALAUGU" */

struct p7_trainer {
    p7_device *device;
    p7_model *model;
    p7_optimizer *opt;
    const p7_dataset *train, *val, *test;
    p7_train_config c;
    int members, classes, loaders;
    size_t batches;              /* steps per epoch */
    int chunk;                   /* images per forward/backward: the batch, or less when a whole
                                    batch's step does not fit the device (gradients accumulate) */
    p7_tape *tape;
    p7_pipeline *pipes[MAX_LOADERS];
    p7_buffer *tiled;            /* tiled labels, one slot of members*batch per loader */
    p7_tensor *loss_sum;         /* the epoch's summed loss, on the device */
    p7_tensor *grad_norm;        /* [1]: the last clip's norm before clipping */
    p7_tensor *loader_scale;     /* [1] = 1/loaders: the mean of the loaders' losses */
    p7_tensor **grads;           /* scratch: one per parameter */
    size_t nparams;
    p7_metrics *metrics, *bma_metrics;
    const p7_dataset *metrics_of; /* the set whose complete evaluation `metrics` holds; NULL: none */
    float *host_out;             /* scratch: downloaded logits or probabilities */
    size_t host_cap;
    p7_weights_snapshot *best;
    p7_early_stopping_state es;
    p7_ensemble_rule rule;
    int bma_samples;
    double base_lr, lr_now;
    int epoch;                   /* epochs completed */
    uint64_t step;
    int done;
    /* the epoch in progress, kept across an interruption (on_step) or a resume */
    size_t epoch_steps;          /* steps done in it */
    size_t epoch_images;         /* images trained on since it started or resumed */
    double epoch_seconds;        /* training time of the calls before an interruption */
    double mean_loss;            /* as last read back; NaN before */
    int resume_sum;              /* set_state mid-epoch: loss_sum starts from resume_sum_value */
    float resume_sum_value;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int p7_default_bma_samples(const p7_device *device)
{
    const p7_device_info *info = device ? p7_device_get_info(device) : NULL;
    return info && info->kind == P7_DEVICE_KIND_CPU ? 8 : 32;
}

void p7_trainer_destroy(p7_trainer *t)
{
    if (!t) return;
    for (int i = 0; i < MAX_LOADERS; i++) p7_pipeline_destroy(t->pipes[i]);
    p7_buffer_free(t->tiled);
    p7_tensor_release(t->loss_sum);
    p7_tensor_release(t->grad_norm);
    p7_tensor_release(t->loader_scale);
    free(t->grads);
    p7_metrics_destroy(t->metrics);
    p7_metrics_destroy(t->bma_metrics);
    free(t->host_out);
    p7_weights_snapshot_destroy(t->best);
    p7_tape_destroy(t->tape);
    free(t);
}

static p7_status check_config(const p7_train_config *c, const p7_dataset *train)
{
    const char *fn = "p7_trainer_create";
    if (c->epochs < 1) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: epochs %d, expected >= 1", fn, c->epochs);
    if (c->batch < 1) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: batch %d, expected >= 1", fn, c->batch);
    if (!(c->clip_norm >= 0) || isinf(c->clip_norm))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: clip_norm %g, expected a finite value >= 0 (0: off)", fn, c->clip_norm);
    if (c->patience < 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: patience %d, expected >= 0 (0: off)", fn, c->patience);
    if (!(c->min_delta >= 0) || isinf(c->min_delta))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: min_delta %g, expected a finite value >= 0", fn, c->min_delta);
    if (c->augment & ~(P7_AUGMENT_CROP | P7_AUGMENT_FLIP))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: augment flags 0x%x, expected P7_AUGMENT_CROP | P7_AUGMENT_FLIP",
                       fn, (unsigned)c->augment);
    if (c->max_loss < 0 || isnan(c->max_loss))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: max_loss %g, expected > 0 (0: 1e4)", fn, c->max_loss);
    if (c->chunk < 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: chunk %d, expected >= 0 (0: the batch)", fn, c->chunk);
    if (c->ece_bins < 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: ece_bins %d, expected >= 1 (0: 15)", fn, c->ece_bins);
    if (p7_batch_count(train->count, (size_t)c->batch, 0) == 0)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: the training set '%s' holds no image", fn, train->name);
    return P7_SUCCESS;
}

p7_status p7_trainer_create(p7_device *device, p7_model *model, p7_optimizer *opt, const p7_dataset *train,
                            const p7_dataset *val, const p7_dataset *test, const p7_train_config *config,
                            p7_trainer **out)
{
    if (!device || !model || !opt || !train || !config || !out)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_create: NULL device, model, optimizer, training set, "
                                                  "config or out");
    *out = NULL;
    P7_TRY(check_config(config, train));
    if ((config->faithful & P7_FAITHFUL_TEST_AS_VAL) && !test)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_create: faithful test-as-val needs a test set");
    p7_trainer *t = calloc(1, sizeof *t);
    if (!t) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_trainer_create: out of host memory");
    t->device = device;
    t->model = model;
    t->opt = opt;
    t->train = train;
    t->val = (config->faithful & P7_FAITHFUL_TEST_AS_VAL) ? test : val;
    t->test = test;
    t->c = *config;
    if (t->c.max_loss == 0) t->c.max_loss = 1e4;
    if (t->c.ece_bins == 0) t->c.ece_bins = 15;
    if (t->c.norm.std[0] == 0) t->c.norm = p7_normalization_cifar10();
    t->members = p7_model_members(model);
    t->classes = train->classes;
    t->loaders = (config->faithful & P7_FAITHFUL_FOUR_LOADERS) ? MAX_LOADERS : 1;
    t->batches = p7_batch_count(train->count, (size_t)config->batch, 0);
    t->rule = (config->faithful & P7_FAITHFUL_MEAN_LOGITS) ? P7_ENSEMBLE_MEAN_LOGITS : P7_ENSEMBLE_MEAN_PROBS;
    t->bma_samples = config->bma_samples < 0 ? p7_default_bma_samples(device) : config->bma_samples;
    if (!p7_optimizer_samples_weights(opt)) t->bma_samples = 0;
    p7_early_stopping_init(&t->es);
    p7_status st = P7_SUCCESS;
    if (t->c.schedule.kind != P7_SCHEDULE_CONSTANT) {
        st = p7_optimizer_get(opt, 0, "lr", &t->base_lr);
        if (st != P7_SUCCESS)
            st = p7_fail(st, "a learning-rate schedule needs the optimizer's 'lr' hyperparameter: %s", p7_last_error());
    }
    t->lr_now = t->base_lr;
    t->mean_loss = NAN;
    if (st == P7_SUCCESS) {
        /* Refuse a step that cannot fit before training: otherwise PoCL would map buffers
         * until it aborts, or a GPU would fail mid-epoch. Four loaders hold four graphs. */
        p7_training_shape shape = {.batch = config->batch * t->loaders,
                                   .optimizer_slots = p7_optimizer_slots_in_use(opt)};
        int fits = 0;
        t->chunk = config->chunk > 0 && config->chunk < config->batch ? config->chunk : config->batch;
        if (t->chunk < config->batch) {
            shape.batch = t->chunk;
            shape.input_batch = config->batch;
        }
        st = p7_model_check_training_memory(model, &shape, config->model_label, &fits);
        /* A step that does not fit runs in chunks of the batch with the gradients summed:
         * the same step, up to the order of float additions, unless BatchNorm's batch
         * statistics would see chunks instead of the batch. */
        if (st == P7_SUCCESS && t->chunk < config->batch && (t->loaders > 1 || p7_model_has_batch_statistics(model)))
            st = p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_create: chunk %d: a step in chunks needs one loader and "
                         "a model without BatchNorm (its batch statistics would see chunks)", config->chunk);
        else if (st == P7_ERROR_OUT_OF_MEMORY && t->chunk == config->batch && t->loaders == 1 &&
                 !p7_model_has_batch_statistics(model)) {
            /* the largest chunk that fits beside the pipeline's whole batches */
            p7_training_shape chunked = shape;
            chunked.input_batch = config->batch;
            st = p7_model_check_training_memory(model, &chunked, config->model_label, &fits);
            if (st == P7_ERROR_OUT_OF_MEMORY && fits > 0) st = P7_SUCCESS;
            t->chunk = fits;
        } else if (st == P7_ERROR_OUT_OF_MEMORY && fits > 0 && p7_model_has_batch_statistics(model)) {
            st = p7_fail(st, "%s; running the batch in chunks of %d would change BatchNorm's batch statistics, so "
                             "p7 does not: lower the batch size", p7_last_error(), fits);
        }
    }
    if (st == P7_SUCCESS) st = p7_tape_create(device, &t->tape);
    if (st == P7_SUCCESS) st = p7_metrics_create(t->classes, t->members, t->c.ece_bins, t->rule, &t->metrics);
    if (st == P7_SUCCESS && t->bma_samples > 0)
        st = p7_metrics_create(t->classes, t->members, t->c.ece_bins, t->rule, &t->bma_metrics);
    const int64_t one[1] = {1};
    if (st == P7_SUCCESS) st = p7_tensor_create(device, 1, one, &t->grad_norm);
    if (st == P7_SUCCESS) st = p7_tensor_fill(t->grad_norm, 0.0f);
    if (st == P7_SUCCESS && t->loaders > 1) {
        st = p7_tensor_create(device, 1, one, &t->loader_scale);
        if (st == P7_SUCCESS) st = p7_tensor_fill(t->loader_scale, 1.0f / (float)t->loaders);
    }
    t->nparams = p7_model_param_count(model);
    if (st == P7_SUCCESS && !(t->grads = calloc(t->nparams ? t->nparams : 1, sizeof *t->grads)))
        st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_trainer_create: out of host memory");
    if (st == P7_SUCCESS && t->val && config->patience > 0 && !(config->faithful & P7_FAITHFUL_ES_NO_RESTORE))
        st = p7_weights_snapshot_create(model, &t->best);
    if (st != P7_SUCCESS) {
        p7_trainer_destroy(t);
        return st;
    }
    *out = t;
    return P7_SUCCESS;
}

int p7_trainer_done(const p7_trainer *t) { return !t || t->done; }

p7_status p7_trainer_get_state(const p7_trainer *t, p7_trainer_state *out)
{
    if (!t || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_get_state: NULL argument");
    memset(out, 0, sizeof *out);
    out->epoch = t->epoch;
    out->step = t->step;
    out->early_stopping = t->es;
    out->batch = t->epoch_steps;
    if (t->epoch_steps > 0 && t->loss_sum) P7_TRY(p7_tensor_download(t->loss_sum, &out->loss_sum, 1));
    else if (t->epoch_steps > 0) out->loss_sum = t->resume_sum_value; /* resumed, no step since */
    return P7_SUCCESS;
}

p7_status p7_trainer_set_state(p7_trainer *t, const p7_trainer_state *s)
{
    if (!t || !s) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_set_state: NULL argument");
    if (t->pipes[0] || t->epoch > 0)
        return p7_fail(P7_ERROR_STATE, "p7_trainer_set_state: the trainer has already run an epoch");
    if (s->epoch < 0 || s->epoch > t->c.epochs)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_set_state: epoch %d is outside 0 .. %d", s->epoch,
                       t->c.epochs);
    if (s->batch >= t->batches || (s->batch > 0 && s->epoch == t->c.epochs))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_set_state: batch %zu of epoch %d, but an epoch has %zu "
                       "batches and the run %d epochs", s->batch, s->epoch + 1, t->batches, t->c.epochs);
    if (s->step != (uint64_t)s->epoch * t->batches + s->batch)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_set_state: step %llu, but epoch %d and batch %zu with %zu "
                       "batches an epoch make %llu: the state is of another run (batch size or training set)",
                       (unsigned long long)s->step, s->epoch, s->batch, t->batches,
                       (unsigned long long)((uint64_t)s->epoch * t->batches + s->batch));
    t->epoch = s->epoch;
    t->step = s->step;
    t->es = s->early_stopping;
    t->epoch_steps = s->batch;
    t->resume_sum = s->batch > 0;
    t->resume_sum_value = s->loss_sum;
    t->mean_loss = NAN;
    t->lr_now = NAN; /* the next set_lr always reaches the optimizer */
    t->done = t->epoch >= t->c.epochs || t->es.stopped;
    return P7_SUCCESS;
}

/* The training pipelines, from the epoch the run is at. Loader i shuffles with seed +
 * 1000 i: loader 0 is the run's own order; the others reproduce the original's
 * per-head loaders (seeds 42 + 1000 i for run seed 42). */
static p7_status open_pipelines(p7_trainer *t)
{
    for (int i = 0; i < t->loaders; i++) {
        p7_pipeline_options po = {.batch_size = (size_t)t->c.batch, .shuffle = 1, .seed = t->c.seed + 1000ull * (uint64_t)i,
                                  .augment = t->c.augment, .start_epoch = (uint64_t)t->epoch,
                                  .start_batch = t->epoch_steps, .norm = t->c.norm};
        P7_TRY(p7_pipeline_create(t->device, t->train, &po, &t->pipes[i]));
    }
    return P7_SUCCESS;
}

static p7_status set_lr(p7_trainer *t, uint64_t position, uint64_t total, uint64_t per_epoch)
{
    if (t->c.schedule.kind == P7_SCHEDULE_CONSTANT) return P7_SUCCESS;
    double lr = p7_schedule_lr(&t->c.schedule, t->base_lr, position, total, per_epoch);
    if (lr == t->lr_now && position > 0) return P7_SUCCESS;
    t->lr_now = lr;
    /* through the plugin ABI's set_hparam: host-side, no device sync */
    return p7_optimizer_set(t->opt, "lr", lr);
}

/* The loss of one batch from the model's training logits: the CE over all rows (an
 * ensemble's M*B rows against tiled labels: the mean of the members' CEs), or with the
 * joint loss the CE of the members' mean logits. */
static p7_status batch_loss(p7_trainer *t, p7_tensor *images, cl_mem labels, size_t label_offset, size_t count,
                            int loader, p7_tensor **loss)
{
    p7_tensor *logits = NULL, *mean = NULL;
    P7_TRY(p7_model_forward(t->model, t->tape, images, 1, &logits));
    p7_status st = P7_SUCCESS;
    size_t rows = (size_t)p7_tensor_dim(logits, 0), m = (size_t)t->members;
    if (m > 1 && rows == m * count && t->c.joint_loss) {
        st = p7_member_mean(t->tape, logits, t->members, &mean);
        if (st == P7_SUCCESS) st = p7_cross_entropy(t->tape, mean, labels, label_offset, loss);
    } else if (m > 1 && rows == m * count) {
        /* labels tiled the same way, by device-side copies (no host sync); one slot per
         * loader, as every loader's CE reads its labels again in backward (a chunk's
         * backward runs before the next chunk reuses the slot, in queue order) */
        size_t bytes = count * sizeof(int32_t), slot = (size_t)loader * m * (size_t)t->c.batch;
        if (!t->tiled)
            st = p7_buffer_alloc(t->device, (size_t)t->loaders * m * (size_t)t->c.batch * sizeof(int32_t), &t->tiled);
        for (size_t k = 0; k < m && st == P7_SUCCESS; k++)
            st = p7_buffer_copy(t->device, labels, label_offset * sizeof(int32_t), t->tiled,
                                (slot + k * count) * sizeof(int32_t), bytes);
        if (st == P7_SUCCESS) st = p7_cross_entropy(t->tape, logits, p7_buffer_mem(t->tiled), slot, loss);
    } else if (rows == count) {
        st = p7_cross_entropy(t->tape, logits, labels, label_offset, loss);
    } else {
        st = p7_fail(P7_ERROR_INVALID_SHAPE, "trainer: the model gave %zu rows of logits for a batch of %zu with %d member(s)",
                     rows, count, t->members);
    }
    p7_tensor_release(mean);
    p7_tensor_release(logits);
    return st;
}

/* Forward and backward of one loader's batch in chunks of t->chunk images, each chunk's
 * mean loss weighted by its share of the batch, so the summed gradients and *loss are
 * those of the whole batch. */
static p7_status chunked_backward(p7_trainer *t, const p7_batch *b, p7_tensor **loss)
{
    p7_status st = P7_SUCCESS;
    *loss = NULL;
    for (size_t start = 0; start < b->count && st == P7_SUCCESS; start += (size_t)t->chunk) {
        size_t n = b->count - start < (size_t)t->chunk ? b->count - start : (size_t)t->chunk;
        const int64_t one[1] = {1};
        p7_tensor *images = NULL, *part = NULL, *weight = NULL, *weighted = NULL, *sum = NULL;
        st = p7_rows_slice(NULL, b->images, (int64_t)start, (int64_t)n, &images);
        if (st == P7_SUCCESS) st = batch_loss(t, images, b->labels, start, n, 0, &part);
        if (st == P7_SUCCESS) st = p7_tensor_create(t->device, 1, one, &weight);
        if (st == P7_SUCCESS) st = p7_tensor_fill(weight, (float)((double)n / (double)b->count));
        if (st == P7_SUCCESS) st = p7_mul(t->tape, part, weight, &weighted);
        if (st == P7_SUCCESS) st = p7_tape_backward(t->tape, weighted);
        else p7_tape_clear(t->tape);
        if (st == P7_SUCCESS && *loss) {
            st = p7_add(NULL, *loss, weighted, &sum);
            p7_tensor_release(*loss);
            *loss = sum;
        } else if (st == P7_SUCCESS) {
            *loss = p7_tensor_retain(weighted);
        }
        p7_tensor_release(images);
        p7_tensor_release(part);
        p7_tensor_release(weight);
        p7_tensor_release(weighted);
    }
    if (st != P7_SUCCESS) {
        p7_tensor_release(*loss);
        *loss = NULL;
    }
    return st;
}

static p7_status clip_gradients(p7_trainer *t)
{
    for (size_t i = 0; i < t->nparams; i++) t->grads[i] = p7_tensor_grad(p7_model_param(t->model, i, NULL));
    return p7_clip_grad_norm(t->grads, t->nparams, (float)t->c.clip_norm, t->grad_norm);
}

/* One optimizer step over `batches` (one per loader). */
static p7_status train_step(p7_trainer *t, const p7_batch *batches)
{
    unsigned samples = p7_optimizer_mc_samples(t->opt);
    for (unsigned s = 0; s < samples; s++) {
        P7_TRY(p7_optimizer_sample(t->opt));
        p7_model_zero_grad(t->model);
        p7_tensor *loss = NULL;
        p7_status st = P7_SUCCESS;
        int chunked = t->chunk < (int)batches[0].count; /* one loader only: see p7_trainer_create */
        if (chunked) st = chunked_backward(t, &batches[0], &loss);
        for (int i = 0; i < t->loaders && st == P7_SUCCESS && !chunked; i++) {
            p7_tensor *li = NULL, *sum = NULL;
            st = batch_loss(t, batches[i].images, batches[i].labels, 0, batches[i].count, i, &li);
            if (st == P7_SUCCESS && loss) {
                st = p7_add(t->tape, loss, li, &sum);
                p7_tensor_release(loss);
                p7_tensor_release(li);
                loss = sum;
            } else {
                loss = li;
            }
        }
        if (st == P7_SUCCESS && t->loaders > 1) { /* the mean of the loaders' CEs */
            p7_tensor *mean = NULL;
            st = p7_mul(t->tape, loss, t->loader_scale, &mean);
            p7_tensor_release(loss);
            loss = mean;
        }
        if (st == P7_SUCCESS && !chunked) st = p7_tape_backward(t->tape, loss);
        else if (st != P7_SUCCESS) p7_tape_clear(t->tape);
        if (st == P7_SUCCESS && t->c.clip_norm > 0) st = clip_gradients(t);
        /* restore even after a failure, so the model keeps its mean weights */
        p7_status rs = p7_optimizer_restore(t->opt, 1);
        if (st == P7_SUCCESS) st = rs;
        if (st == P7_SUCCESS && s == 0 && !t->loss_sum && t->resume_sum) {
            /* resumed mid-epoch: the sum goes on from the float the device held */
            st = p7_tensor_create(t->device, p7_tensor_ndim(loss), p7_tensor_shape(loss), &t->loss_sum);
            if (st == P7_SUCCESS) st = p7_tensor_fill(t->loss_sum, t->resume_sum_value);
            t->resume_sum = 0;
        }
        if (st == P7_SUCCESS && s == 0) { /* the epoch's loss stays on the device: no sync per step */
            if (t->loss_sum) {
                p7_tensor *sum = NULL;
                st = p7_add(NULL, t->loss_sum, loss, &sum);
                p7_tensor_release(t->loss_sum);
                t->loss_sum = sum;
            } else {
                t->loss_sum = p7_tensor_retain(loss);
            }
        }
        p7_tensor_release(loss);
        if (st != P7_SUCCESS) return st;
    }
    return p7_optimizer_step(t->opt);
}

static int diverged(double loss, double max_loss) { return !(loss <= max_loss); } /* NaN, +inf */

static p7_status grow_host(p7_trainer *t, size_t n)
{
    if (n <= t->host_cap) return P7_SUCCESS;
    float *grown = realloc(t->host_out, n * sizeof *grown);
    if (!grown) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "trainer: out of host memory for %zu outputs", n);
    t->host_out = grown;
    t->host_cap = n;
    return P7_SUCCESS;
}

/* An ensemble's per-member probabilities [M*B, C] into their mean [B, C], in place. */
static void mean_over_members(float *p, size_t batch, int members, int classes)
{
    for (size_t b = 0; b < batch; b++)
        for (int j = 0; j < classes; j++) {
            double sum = 0;
            for (int m = 0; m < members; m++) sum += p[((size_t)m * batch + b) * (size_t)classes + (size_t)j];
            p[b * (size_t)classes + (size_t)j] = (float)(sum / members);
        }
}

/* Metrics of the model in evaluation mode over `data`: at the current (mean) weights
 * into `out`, and with bma_samples > 0 the Bayesian model average into `bma`. Works
 * whether the model returns member logits [M*B, C] or combined ones [B, C]. */
static p7_status evaluate(p7_trainer *t, const p7_dataset *data, int augment, int bma_samples,
                          p7_metrics_summary *out, p7_metrics_summary *bma)
{
    p7_pipeline_options po = {.batch_size = (size_t)t->c.batch, .augment = augment,
                              .seed = t->c.seed ^ VAL_AUGMENT_SEED_XOR, .start_epoch = (uint64_t)t->epoch,
                              .norm = t->c.norm};
    p7_pipeline *pipe;
    P7_TRY(p7_pipeline_create(t->device, data, &po, &pipe));
    p7_metrics_reset(t->metrics);
    t->metrics_of = NULL; /* until the pass completes */
    if (bma_samples > 0) p7_metrics_reset(t->bma_metrics);
    p7_status st;
    for (;;) {
        p7_batch b;
        if ((st = p7_pipeline_next(pipe, &b)) != P7_SUCCESS || b.count == 0) break;
        p7_tensor *logits = NULL, *probs = NULL;
        st = p7_model_forward(t->model, NULL, b.images, 0, &logits);
        size_t rows = st == P7_SUCCESS ? (size_t)p7_tensor_dim(logits, 0) : 0;
        if (st == P7_SUCCESS) st = grow_host(t, rows * (size_t)t->classes);
        if (st == P7_SUCCESS) st = p7_tensor_download(logits, t->host_out, rows * (size_t)t->classes);
        if (st == P7_SUCCESS) st = p7_metrics_add_logits(t->metrics, t->host_out, rows, b.labels_host, b.count);
        if (st == P7_SUCCESS && bma_samples > 0) {
            st = p7_optimizer_predict(t->opt, t->model, b.images, (unsigned)bma_samples, &probs);
            rows = st == P7_SUCCESS ? (size_t)p7_tensor_dim(probs, 0) : 0;
            if (st == P7_SUCCESS) st = grow_host(t, rows * (size_t)t->classes);
            if (st == P7_SUCCESS) st = p7_tensor_download(probs, t->host_out, rows * (size_t)t->classes);
            if (st == P7_SUCCESS && rows != b.count) {
                if (rows == (size_t)t->members * b.count) mean_over_members(t->host_out, b.count, t->members, t->classes);
                else st = p7_fail(P7_ERROR_INVALID_SHAPE, "trainer: BMA gave %zu rows for a batch of %zu", rows, b.count);
            }
            if (st == P7_SUCCESS) st = p7_metrics_add_probs(t->bma_metrics, t->host_out, b.labels_host, b.count);
        }
        p7_tensor_release(logits);
        p7_tensor_release(probs);
        if (st != P7_SUCCESS) break;
    }
    p7_pipeline_destroy(pipe);
    if (st == P7_SUCCESS) st = p7_metrics_get(t->metrics, out);
    if (st == P7_SUCCESS && bma_samples > 0) st = p7_metrics_get(t->bma_metrics, bma);
    if (st == P7_SUCCESS) t->metrics_of = data;
    return st;
}

p7_status p7_trainer_run_epoch(p7_trainer *t, p7_epoch_report *r)
{
    if (!t || !r) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_run_epoch: NULL argument");
    memset(r, 0, sizeof *r);
    if (t->done)
        return p7_fail(P7_ERROR_STATE, "p7_trainer_run_epoch: the run is over (epoch %d of %d%s)", t->epoch,
                       t->c.epochs, t->es.stopped ? ", stopped early" : "");
    if (!t->pipes[0]) P7_TRY(open_pipelines(t));
    const int epoch = t->epoch + 1;
    r->epoch = epoch;
    double t0 = now_s();
    const uint64_t total_steps = (uint64_t)t->c.epochs * t->batches;
    if (t->epoch_steps == 0) {
        t->epoch_images = 0;
        t->epoch_seconds = 0;
        t->mean_loss = NAN;
    }
    if (!t->c.schedule.per_step) P7_TRY(set_lr(t, (uint64_t)(epoch - 1), (uint64_t)t->c.epochs, 1));
    p7_status st = P7_SUCCESS;
    int interrupted = 0;
    for (;;) { /* until the pipeline's end-of-epoch mark */
        p7_batch b[MAX_LOADERS];
        for (int i = 0; i < t->loaders && st == P7_SUCCESS; i++) st = p7_pipeline_next(t->pipes[i], &b[i]);
        if (st != P7_SUCCESS || b[0].count == 0) break;
        if (t->c.schedule.per_step) st = set_lr(t, t->step, total_steps, t->batches);
        if (st == P7_SUCCESS) st = train_step(t, b);
        if (st != P7_SUCCESS) break;
        t->step++;
        t->epoch_steps++;
        for (int i = 0; i < t->loaders; i++) t->epoch_images += b[i].count;
        if (t->epoch_steps % LOSS_CHECK_EVERY == 0 || t->epoch_steps == t->batches) {
            float sum_host = 0;
            if ((st = p7_tensor_download(t->loss_sum, &sum_host, 1)) != P7_SUCCESS) break;
            t->mean_loss = (double)sum_host / (double)t->epoch_steps;
            if (diverged(t->mean_loss, t->c.max_loss)) break; /* the run ends here: no need to drain */
        }
        if (t->c.on_step && t->epoch_steps < t->batches) {
            double seconds = now_s() - t0;
            p7_step_progress p = {.epoch = epoch, .batch = t->epoch_steps, .batches = t->batches, .step = t->step,
                                  .loss = t->mean_loss, .seconds = t->epoch_seconds + seconds,
                                  .images_per_s = t->epoch_seconds + seconds > 0
                                                      ? (double)t->epoch_images / (t->epoch_seconds + seconds)
                                                      : 0};
            if (t->c.on_step(&p, t->c.on_step_user)) {
                interrupted = 1;
                break;
            }
        }
    }
    const double mean_loss = t->mean_loss;
    if (st != P7_SUCCESS) {
        p7_tensor_release(t->loss_sum);
        t->loss_sum = NULL;
        t->done = 1;
        return st;
    }
    if (interrupted) { /* the epoch stays open: loss sum, pipelines and counters as they are */
        t->epoch_seconds += now_s() - t0;
        r->outcome = P7_EPOCH_INTERRUPTED;
        r->step = t->step;
        r->lr = t->lr_now;
        r->train_loss = mean_loss;
        r->train_seconds = r->seconds = t->epoch_seconds;
        r->images_per_s = t->epoch_seconds > 0 ? (double)t->epoch_images / t->epoch_seconds : 0;
        return P7_SUCCESS;
    }
    p7_tensor_release(t->loss_sum);
    t->loss_sum = NULL;
    const size_t images = t->epoch_images;
    t->epoch_steps = 0;
    r->step = t->step;
    r->lr = t->lr_now;
    if (t->c.schedule.kind == P7_SCHEDULE_CONSTANT && p7_optimizer_get(t->opt, 0, "lr", &r->lr) != P7_SUCCESS) {
        r->lr = NAN; /* a plugin without an lr */
        p7_clear_error();
    }
    r->train_loss = mean_loss;
    if (t->c.clip_norm > 0) {
        float norm = 0;
        P7_TRY(p7_tensor_download(t->grad_norm, &norm, 1));
        r->grad_norm = norm;
    }
    r->train_seconds = t->epoch_seconds + (now_s() - t0);
    r->images_per_s = r->train_seconds > 0 ? (double)images / r->train_seconds : 0;
    t->epoch = epoch;
    if (diverged(mean_loss, t->c.max_loss)) {
        r->outcome = P7_EPOCH_DIVERGED;
        r->seconds = t->epoch_seconds + (now_s() - t0);
        t->done = 1;
        return P7_SUCCESS;
    }

    const int last = epoch >= t->c.epochs;
    if (t->val) {
        int augment = (t->c.faithful & P7_FAITHFUL_VAL_AUGMENT) ? t->c.augment : 0;
        P7_TRY(evaluate(t, t->val, augment, 0, &r->val, NULL));
        r->has_val = 1;
        if (t->c.patience > 0) {
            r->improved = p7_early_stopping_observe(&t->es, t->c.patience, t->c.min_delta, epoch, r->val.nll);
            if (r->improved && t->best) P7_TRY(p7_weights_snapshot_take(t->best));
        }
    }
    const int stop = t->es.stopped;
    if ((stop || last) && t->best && t->es.best_epoch > 0 && t->es.best_epoch != epoch) {
        P7_TRY(p7_weights_snapshot_restore(t->best));
        r->restored_epoch = t->es.best_epoch;
    }
    if (t->test && (t->c.test_every_epoch || stop || last)) {
        int bma = (stop || last) ? t->bma_samples : 0;
        if (t->val == t->test && !r->restored_epoch && !bma && r->has_val) r->test = r->val; /* the same pass */
        else P7_TRY(evaluate(t, t->test, 0, bma, &r->test, &r->test_bma));
        r->has_test = 1;
        r->has_bma = bma > 0;
        r->bma_samples = bma;
    }
    r->outcome = stop ? P7_EPOCH_EARLY_STOP : P7_EPOCH_OK;
    r->seconds = t->epoch_seconds + (now_s() - t0);
    t->done = stop || last;
    return P7_SUCCESS;
}

p7_status p7_trainer_run(p7_trainer *t, p7_epoch_callback on_epoch, void *user, p7_epoch_report *last)
{
    if (!t) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_run: NULL trainer");
    p7_epoch_report r;
    memset(&r, 0, sizeof r);
    while (!t->done) {
        P7_TRY(p7_trainer_run_epoch(t, &r));
        if (r.outcome == P7_EPOCH_INTERRUPTED) break;
        if (on_epoch && on_epoch(&r, user)) break;
    }
    if (last) *last = r;
    return P7_SUCCESS;
}

int p7_trainer_chunk(const p7_trainer *t) { return t ? t->chunk : 0; }

int p7_trainer_ece_bins(const p7_trainer *t) { return t ? t->c.ece_bins : 0; }

p7_status p7_trainer_test_bins(const p7_trainer *t, int bin, size_t *count, double *accuracy, double *confidence)
{
    if (!t) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_trainer_test_bins: NULL trainer");
    /* the validation pass reuses the same accumulator, so only a test pass that came last
       (the final one: validation runs before it) leaves the test set's bins */
    if (!t->test || t->metrics_of != t->test)
        return p7_fail(P7_ERROR_STATE, "p7_trainer_test_bins: the last evaluation was %s, not the test set (the "
                                       "final test comes after the last epoch or the early stop)",
                       !t->metrics_of ? "none (or it failed)" : "of the validation set");
    return p7_metrics_bin(t->metrics, bin, count, accuracy, confidence);
}

p7_weights_snapshot *p7_trainer_best_weights(p7_trainer *t) { return t ? t->best : NULL; }
