/* p7bench's training run: one model, one optimizer, real data or the synthetic
 * fallback; per-epoch lines on stderr, results in a CSV file. Everything that can be
 * checked without a device (the data's whereabouts, the results file) is checked by
 * p7bench_prepare before the device opens. */
#ifndef P7BENCH_TRAIN_H
#define P7BENCH_TRAIN_H

#include <stdint.h>

#include "p7/p7.h"
#include "p7bench_results.h"

enum { P7BENCH_MAX_SEEDS = 64 };

typedef struct p7bench_train_options {
    const char *data_dir;     /* --data, else P7_DATA, else ./data */
    const char *dataset;      /* "cifar10", "cifar20" or "synthetic" */
    int dataset_given;        /* --dataset was on the command line: no synthetic fallback */
    const char *model;        /* --model: an architecture name (p7_arch_parse) or "vgg11-bn" */
    p7_network_config network;/* resolved from --model, --bn, --members, --member-kind, --within,
                                 --between, --tie, --width and the network --faithful switches */
    const char *optimizer;    /* plugin name or path */
    const char *hparams;      /* the user's "lr=...,..." or NULL */
    const char *schedule;     /* the user's --schedule text or NULL */
    /* Resolved before the device opens (p7bench_resolve_recipe): the recipe merged with
     * the user's hyperparameters, and the schedule in use. */
    char run_hparams[1024];
    char run_schedule[256];
    p7_schedule parsed_schedule;
    const char *out_csv;      /* results file */
    int members;              /* BatchEnsemble size, 1 = plain */
    float alpha_init, gamma_init;
    int epochs;
    int batch;
    uint64_t seeds[P7BENCH_MAX_SEEDS]; /* --seeds (or --seed): one run each, in turn */
    int seed_count;
    size_t limit;             /* at most this many training images (0: all) */
    double max_loss;          /* a training loss above this (or NaN/inf) means diverged */
    double clip;              /* global gradient-norm clip (0: off) */
    int patience;             /* early stopping (0: off) */
    double min_delta;
    int augment;              /* -1: where the original did (CIFAR-20), 0 off, 1 on */
    int bma_samples;          /* -1: the device's default */
    unsigned faithful;        /* P7_FAITHFUL_* */
} p7bench_train_options;

/* What p7bench_prepare found: where the data is, and the open results file. */
typedef struct p7bench_plan {
    int synthetic;            /* train on the built-in synthetic set */
    char data_dir[4096];      /* the dataset's folder, when not synthetic */
    p7bench_results *results;
} p7bench_plan;

/* p7bench_train's return codes (also p7bench's exit codes). */
enum { P7BENCH_OK = 0, P7BENCH_FAILED = 1, P7BENCH_DIVERGED = 3 };

/* Opens the optimizer plugin: with --faithful's optimizer-is-adam every name becomes
 * adam; then the plugin's recipe (p7/train.h) merged with the user's --hparams and
 * --schedule, checked against the plugin, printed. Returns 0, 1 (error) or 2 (bad
 * arguments) after printing what is wrong. */
int p7bench_resolve_recipe(p7bench_train_options *options);

/* Resolves the data and opens the results file, without a device. The synthetic set
 * stands in only when neither --data nor --dataset was given and the default folder has
 * no data; an explicit request that does not resolve is an error. Prints what is wrong
 * and returns nonzero. */
int p7bench_prepare(const p7bench_train_options *options, p7bench_plan *plan);
void p7bench_plan_release(p7bench_plan *plan);

/* Returns P7BENCH_OK, P7BENCH_DIVERGED (the loss went non-finite or above max_loss: the
 * run stops and its row says so), or P7BENCH_FAILED after printing what went wrong. */
int p7bench_train(p7_device *device, const p7bench_train_options *options, p7bench_plan *plan);

#endif
