/* p7bench's training run (see p7bench_train.h). */
#include "p7bench_train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TRY(call)                                                                 \
    do {                                                                          \
        if ((call) != P7_SUCCESS) {                                               \
            fprintf(stderr, "p7bench: %s\n", p7_last_error());                    \
            goto fail;                                                            \
        }                                                                         \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static const char csv_header[] = "dataset,model,members,optimizer,hparams,seed,epoch,train_images,train_loss,val_loss,"
                                 "val_acc,test_loss,test_acc,seconds,status";

int p7bench_prepare(const p7bench_train_options *o, p7bench_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    int cifar20 = strcmp(o->dataset, "cifar20") == 0;
    if (strcmp(o->dataset, "synthetic") == 0) {
        if (o->data_dir) {
            fprintf(stderr, "p7bench: --data names a data folder, but --dataset synthetic reads none; give one of them\n");
            return 1;
        }
        plan->synthetic = 1;
    } else {
        char root[4096];
        const char *env = getenv("P7_DATA");
        if (p7_data_dir(o->data_dir, root, sizeof root) != P7_SUCCESS) {
            fprintf(stderr, "p7bench: %s\n", p7_last_error());
            return 1;
        }
        /* A folder the user named must exist; only ./data, the default, may be absent. */
        if ((o->data_dir || (env && *env)) && !is_dir(root)) {
            fprintf(stderr, "p7bench: %s: no such folder (%s): %s\n", o->data_dir ? "--data" : "P7_DATA",
                    strerror(errno), root);
            return 1;
        }
        p7_status st = cifar20 ? p7_cifar100_find(root, plan->data_dir, sizeof plan->data_dir)
                               : p7_cifar10_find(root, plan->data_dir, sizeof plan->data_dir);
        if (st != P7_SUCCESS) {
            if (o->data_dir || o->dataset_given) {
                fprintf(stderr, "p7bench: %s was asked for, but %s\n(get it with: p7data fetch %s --out %s/%s)\n",
                        o->dataset, p7_last_error(), cifar20 ? "cifar100" : "cifar10", root,
                        cifar20 ? "cifar100" : "cifar10");
                return 1;
            }
            fprintf(stderr, "p7bench: no %s under %s (%s)\n", o->dataset, root, p7_last_error());
            fprintf(stderr,
                    "p7bench: USING THE BUILT-IN SYNTHETIC DATASET %s, NOT CIFAR: results say so in every line "
                    "(--dataset or --data makes missing data an error instead)\n",
                    P7_SYNTHETIC_NAME);
            plan->synthetic = 1;
        }
    }
    char err[1024];
    if (p7bench_results_open(o->out_csv, csv_header, &plan->results, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench: --out: %s\n", err);
        return 1;
    }
    return 0;
}

void p7bench_plan_release(p7bench_plan *plan)
{
    p7bench_results_close(plan->results);
    plan->results = NULL;
}

static int load_data(const p7bench_train_options *o, const p7bench_plan *plan, p7_dataset *train_all,
                     p7_dataset *test)
{
    p7_status st;
    if (plan->synthetic) {
        st = p7_synthetic_shapes10(10000, o->seed, P7_SPLIT_TRAIN, train_all);
        if (st == P7_SUCCESS) st = p7_synthetic_shapes10(2000, o->seed, P7_SPLIT_TEST, test);
    } else if (strcmp(o->dataset, "cifar20") == 0) {
        st = p7_cifar100_load(plan->data_dir, P7_SPLIT_TRAIN, P7_LABELS_CIFAR20, train_all);
        if (st == P7_SUCCESS) st = p7_cifar100_load(plan->data_dir, P7_SPLIT_TEST, P7_LABELS_CIFAR20, test);
    } else {
        st = p7_cifar10_load(plan->data_dir, P7_SPLIT_TRAIN, train_all);
        if (st == P7_SUCCESS) st = p7_cifar10_load(plan->data_dir, P7_SPLIT_TEST, test);
    }
    if (st != P7_SUCCESS) { /* present but broken: that is an error, not a fallback */
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        return 1;
    }
    if (!plan->synthetic)
        fprintf(stderr, "p7bench: %s from %s: %zu training, %zu test images\n", o->dataset, plan->data_dir,
                train_all->count, test->count);
    return 0;
}

static p7_status build_model(p7_device *device, const p7bench_train_options *o, int classes, p7_model **out)
{
    if (strcmp(o->model, "simple") == 0)
        return p7_model_simple_cnn(device, o->members, classes, o->alpha_init, o->gamma_init, o->seed, out);
    p7_vgg_options vo = {.batchnorm = strcmp(o->model, "vgg11-bn") == 0, .members = o->members, .classes = classes,
                         .hidden = 0, .alpha_init = o->alpha_init, .gamma_init = o->gamma_init,
                         .init = o->members > 1 ? P7_INIT_KAIMING_NORMAL_FAN_OUT : P7_INIT_PYTORCH_DEFAULT};
    return p7_model_vgg11(device, &vo, o->seed, out);
}

/* Loss and accuracy of the model (evaluation mode) over a dataset. An ensemble predicts
 * the mean of its members' softmax probabilities (p7_model_output_rule): the accuracy is
 * its argmax and the loss its negative log-likelihood, computed here from the logits. */
static p7_status evaluate(p7_device *device, p7_model *model, const p7_dataset *data, int batch, double *loss,
                          double *accuracy)
{
    p7_pipeline_options po = {.batch_size = (size_t)batch, .norm = p7_normalization_cifar10()};
    p7_pipeline *pipe;
    p7_status st = p7_pipeline_create(device, data, &po, &pipe);
    if (st != P7_SUCCESS) return st;
    const size_t blocks = (size_t)p7_model_output_members(model, 0);
    double total_loss = 0;
    size_t correct = 0, seen = 0;
    float *logits_host = NULL;
    double *probs = NULL;
    for (;;) {
        p7_batch b;
        if ((st = p7_pipeline_next(pipe, &b)) != P7_SUCCESS || b.count == 0) break;
        p7_tensor *logits = NULL;
        st = p7_model_forward(model, NULL, b.images, 0, &logits);
        size_t k = st == P7_SUCCESS ? (size_t)p7_tensor_dim(logits, 1) : 0;
        const size_t rows = blocks * b.count;
        float *grown = st == P7_SUCCESS ? realloc(logits_host, rows * k * sizeof *logits_host) : NULL;
        double *grown_p = st == P7_SUCCESS ? realloc(probs, k * sizeof *probs) : NULL;
        if (grown) logits_host = grown;
        if (grown_p) probs = grown_p;
        if (st == P7_SUCCESS && (!grown || !grown_p)) st = P7_ERROR_OUT_OF_MEMORY;
        if (st == P7_SUCCESS) st = p7_tensor_download(logits, logits_host, rows * k);
        p7_tensor_release(logits);
        if (st != P7_SUCCESS) break;
        for (size_t i = 0; i < b.count; i++) {
            for (size_t j = 0; j < k; j++) probs[j] = 0;
            for (size_t m = 0; m < blocks; m++) {
                const float *z = logits_host + (m * b.count + i) * k;
                double top = z[0], sum = 0;
                for (size_t j = 1; j < k; j++) top = z[j] > top ? z[j] : top;
                for (size_t j = 0; j < k; j++) sum += exp((double)z[j] - top);
                for (size_t j = 0; j < k; j++) probs[j] += exp((double)z[j] - top) / sum / (double)blocks;
            }
            size_t best = 0;
            for (size_t j = 1; j < k; j++)
                if (probs[j] > probs[best]) best = j;
            correct += (int32_t)best == b.labels_host[i];
            const int32_t label = b.labels_host[i];
            total_loss += label >= 0 && (size_t)label < k ? -log(probs[label] > 1e-300 ? probs[label] : 1e-300) : NAN;
        }
        seen += b.count;
    }
    free(logits_host);
    free(probs);
    p7_pipeline_destroy(pipe);
    *loss = seen ? total_loss / (double)seen : 0;
    *accuracy = seen ? 100.0 * (double)correct / (double)seen : 0;
    return st;
}

/* CSV text field: quoted, with quotes doubled (RFC 4180), so any --hparams text is one field. */
static void csv_quote(const char *text, char *out, size_t size)
{
    size_t used = 0;
    if (size < 3) return;
    out[used++] = '"';
    for (const char *c = text ? text : ""; *c && used + 3 < size; c++) {
        if (*c == '"') out[used++] = '"';
        out[used++] = *c;
    }
    out[used++] = '"';
    out[used] = '\0';
}

/* How often the training loss is read back to catch a diverging run: every read waits
 * for the queue, so not every step; a NaN also survives in the epoch's sum, which is read
 * at the end of every epoch anyway. */
enum { LOSS_CHECK_EVERY = 25 };

/* Nonzero when the mean loss so far says the run has diverged. */
static int diverged(double loss, double max_loss) { return !(loss <= max_loss); } /* NaN, +inf */

int p7bench_train(p7_device *device, const p7bench_train_options *o, p7bench_plan *plan)
{
    p7_dataset all = {0}, train = {0}, val = {0}, test = {0};
    p7_model *model = NULL;
    p7_optimizer *opt = NULL;
    p7_tape *tape = NULL;
    p7_pipeline *pipe = NULL;
    p7_buffer *tiled = NULL; /* BatchEnsemble's tiled labels */
    p7_tensor *loss_sum = NULL;
    int rc = P7BENCH_FAILED;
    char err[1024];
    if (load_data(o, plan, &all, &test)) return P7BENCH_FAILED;
    /* the original study's 45,000 / 5,000 split (seed 42), scaled for the synthetic set */
    size_t n_val = all.synthetic ? all.count / 10 : P7_SPLIT_VALIDATION;
    TRY(p7_dataset_split(&all, n_val, P7_SPLIT_SEED, &train, &val));
    if (o->limit && o->limit < train.count) train.count = o->limit; /* a prefix of a seeded permutation */
    const char *dataset_name = all.synthetic ? P7_SYNTHETIC_NAME : o->dataset;

    TRY(build_model(device, o, all.classes, &model));
    p7_param_counts counts;
    TRY(p7_model_count_params(model, &counts));
    p7_optimizer_options oo = {.hparams = o->hparams, .seed = o->seed, .dataset_size = train.count};
    TRY(p7_optimizer_create_for_model(model, o->optimizer, &oo, &opt));
    /* Refuse a step that cannot fit before training: otherwise PoCL would map buffers
     * until it aborts, or a GPU would fail mid-epoch. */
    p7_training_shape shape = {.batch = o->batch, .optimizer_slots = p7_optimizer_table(opt)->slot_count};
    TRY(p7_model_check_training_memory(model, &shape, o->model, NULL));
    TRY(p7_tape_create(device, &tape));
    fprintf(stderr, "p7bench: model %s (members %d, %llu parameters), optimizer %s, batch %d, %d epoch(s), %zu training images\n",
            o->model, o->members, (unsigned long long)counts.unique, p7_optimizer_name(opt), o->batch, o->epochs,
            train.count);

    p7_pipeline_options po = {.batch_size = (size_t)o->batch, .shuffle = 1, .seed = o->seed,
                              .norm = p7_normalization_cifar10()};
    TRY(p7_pipeline_create(device, &train, &po, &pipe));
    size_t batches = p7_pipeline_batches_per_epoch(pipe);
    const int members = p7_model_members(model);
    /* A live per-batch line only on a terminal: in a log, carriage returns pile up. */
    const int live_progress = isatty(STDERR_FILENO);
    char hparams_field[1024];
    csv_quote(o->hparams, hparams_field, sizeof hparams_field);
    for (int epoch = 1; epoch <= o->epochs; epoch++) {
        double t0 = now_s();
        size_t steps = 0;
        float mean_loss = 0;
        for (size_t bi = 0;; bi++) {
            p7_batch b;
            TRY(p7_pipeline_next(pipe, &b));
            if (b.count == 0) break;
            /* BatchEnsemble trains on the M-times tiled batch: labels tiled the same way,
             * by device-side copies into one buffer kept for the run (no host sync). */
            cl_mem labels = b.labels;
            if (members > 1) {
                size_t bytes = b.count * sizeof(int32_t);
                if (!tiled) TRY(p7_buffer_alloc(device, (size_t)o->batch * (size_t)members * sizeof(int32_t), &tiled));
                for (int m = 0; m < members; m++)
                    TRY(p7_buffer_copy(device, b.labels, 0, tiled, (size_t)m * bytes, bytes));
                labels = p7_buffer_mem(tiled);
            }
            for (unsigned s = 0; s < p7_optimizer_mc_samples(opt); s++) {
                p7_tensor *logits, *loss, *sum;
                TRY(p7_optimizer_sample(opt));
                p7_model_zero_grad(model);
                TRY(p7_model_forward(model, tape, b.images, 1, &logits));
                TRY(p7_cross_entropy(tape, logits, labels, 0, &loss));
                TRY(p7_tape_backward(tape, loss));
                TRY(p7_optimizer_restore(opt, 1));
                if (s == 0) { /* the epoch's loss stays on the device: no sync per step */
                    if (loss_sum) {
                        TRY(p7_add(NULL, loss_sum, loss, &sum));
                        p7_tensor_release(loss_sum);
                        loss_sum = sum;
                    } else {
                        loss_sum = p7_tensor_retain(loss);
                    }
                }
                p7_tensor_release(logits);
                p7_tensor_release(loss);
            }
            TRY(p7_optimizer_step(opt));
            steps++;
            int last = bi + 1 == batches;
            if (steps % LOSS_CHECK_EVERY == 0 || last) {
                float sum_host = 0;
                TRY(p7_tensor_download(loss_sum, &sum_host, 1));
                mean_loss = sum_host / (float)steps;
                if (diverged(mean_loss, o->max_loss)) break;
            }
            if (!live_progress) {
                /* into a file or a pipe: the per-epoch line below is the progress */
            } else if (steps >= LOSS_CHECK_EVERY)
                fprintf(stderr, "\r  epoch %d/%d  batch %zu/%zu  loss %.4f", epoch, o->epochs, bi + 1, batches,
                        (double)mean_loss);
            else
                fprintf(stderr, "\r  epoch %d/%d  batch %zu/%zu", epoch, o->epochs, bi + 1, batches);
        }
        p7_tensor_release(loss_sum);
        loss_sum = NULL;
        double dt = now_s() - t0;
        char row[2048];
        if (steps == 0) {
            fprintf(stderr, "p7bench: %zu training images make no batch of %d; lower --batch\n", train.count, o->batch);
            goto fail;
        }
        if (diverged(mean_loss, o->max_loss)) {
            fprintf(stderr, "%sp7bench: training DIVERGED in epoch %d after %zu step(s): mean training loss %g %s; "
                            "the run stops here. Lower the learning rate (--hparams lr=...).\n",
                    live_progress ? "\n" : "", epoch, steps, (double)mean_loss,
                    mean_loss == mean_loss ? "is above --max-loss" : "is not a number");
            snprintf(row, sizeof row, "%s,%s,%d,%s,%s,%llu,%d,%zu,%g,,,,,%.2f,diverged", dataset_name, o->model,
                     o->members, p7_optimizer_name(opt), hparams_field, (unsigned long long)o->seed, epoch,
                     train.count, (double)mean_loss, dt);
            if (p7bench_results_append(plan->results, row, err, sizeof err) != 0)
                fprintf(stderr, "p7bench: %s: %s\n", o->out_csv, err);
            rc = P7BENCH_DIVERGED;
            goto fail;
        }
        double val_loss, val_acc, test_loss = -1, test_acc = -1;
        TRY(evaluate(device, model, &val, o->batch, &val_loss, &val_acc));
        if (epoch == o->epochs) TRY(evaluate(device, model, &test, o->batch, &test_loss, &test_acc));
        dt = now_s() - t0;
        fprintf(stderr, "%s  epoch %d/%d  train loss %.4f  val loss %.4f  val acc %.2f%%", live_progress ? "\r" : "",
                epoch, o->epochs, (double)mean_loss, val_loss, val_acc);
        if (epoch == o->epochs) fprintf(stderr, "  test acc %.2f%%", test_acc);
        fprintf(stderr, "  (%.1f s, %s)\n", dt, dataset_name);
        snprintf(row, sizeof row, "%s,%s,%d,%s,%s,%llu,%d,%zu,%.6f,%.6f,%.3f,%.6f,%.3f,%.2f,ok", dataset_name,
                 o->model, o->members, p7_optimizer_name(opt), hparams_field, (unsigned long long)o->seed, epoch,
                 train.count, (double)mean_loss, val_loss, val_acc, test_loss, test_acc, dt);
        if (p7bench_results_append(plan->results, row, err, sizeof err) != 0) {
            fprintf(stderr, "p7bench: %s: %s\n", o->out_csv, err);
            goto fail;
        }
    }
    printf("p7bench: results appended to %s (dataset %s)\n", o->out_csv, dataset_name);
    rc = P7BENCH_OK;
fail:
    p7_tensor_release(loss_sum);
    p7_buffer_free(tiled);
    p7_pipeline_destroy(pipe);
    p7_tape_destroy(tape);
    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    p7_dataset_free(&all);
    p7_dataset_free(&train);
    p7_dataset_free(&val);
    p7_dataset_free(&test);
    return rc;
}
