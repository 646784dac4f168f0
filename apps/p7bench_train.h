/* What one p7bench training run is made of, resolved from a cell's settings: the network,
 * the optimizer with its recipe, the schedule, and the data (real CIFAR or the synthetic
 * fallback). Everything that can be checked without a device is checked here, before the
 * device opens; p7bench_cell_run.h runs it. */
#ifndef P7BENCH_TRAIN_H
#define P7BENCH_TRAIN_H

#include <stdint.h>

#include "p7/p7.h"

typedef struct p7bench_train_options {
    const char *data_dir;     /* --data, else P7_DATA, else ./data */
    const char *dataset;      /* "cifar10", "cifar20" or "synthetic" */
    int dataset_given;        /* --dataset was on the command line: no synthetic fallback */
    const char *model;        /* --model: an architecture name (p7_arch_parse) or "vgg11-bn" */
    p7_network_config network;/* resolved by p7bench_resolve_network from the model, --bn, members,
                                 --member-kind, the sharing regime, --tie, --width and --faithful */
    const char *regime;       /* sharing regime: NULL (plain), "within", "between" or "combined" */
    const char *optimizer;    /* plugin name or path */
    const char *hparams;      /* the user's "lr=...,..." or NULL */
    double lr;                /* the cell's learning rate (replaces the recipe's); NaN: the recipe's */
    double weight_decay;      /* > 0: the optimizer's weight_decay hyperparameter */
    const char *schedule;     /* the user's --schedule text or NULL */
    /* Resolved before the device opens (p7bench_resolve_recipe): the recipe merged with
     * the cell's lr and the user's hyperparameters, and the schedule in use; resolved
     * again once the data gives run_steps (the recipe may scale a rate to the run). */
    uint64_t run_steps;       /* optimizer steps of the whole run; 0: not known yet */
    char run_hparams[1024];
    char run_schedule[256];
    p7_schedule parsed_schedule;
    int members;              /* ensemble size, 1 = plain */
    float alpha_init, gamma_init;
    int epochs;
    int batch;
    uint64_t seed;
    size_t limit;             /* at most this many training images (0: all) */
    size_t val_split;         /* validation images split off the training set (0: none, and the test
                                 set is measured every epoch, as the original's BE studies) */
    double max_loss;          /* a training loss above this (or NaN/inf) means diverged */
    double clip;              /* global gradient-norm clip (0: off) */
    int patience;             /* early stopping (0: off) */
    double min_delta;
    int augment;              /* -1: where the original did (CIFAR-20), 0 off, 1 on */
    int bma_samples;          /* -1: the device's default */
    unsigned faithful;        /* P7_FAITHFUL_* */
} p7bench_train_options;

/* Where the data is: resolved without a device. */
typedef struct p7bench_plan {
    int synthetic;            /* train on the built-in synthetic set */
    char data_dir[4096];      /* the dataset's folder, when not synthetic */
} p7bench_plan;

/* p7bench's exit codes. */
enum { P7BENCH_OK = 0, P7BENCH_FAILED = 1, P7BENCH_USAGE = 2, P7BENCH_DIVERGED = 3, P7BENCH_INTERRUPTED = 130 };

/* "--faithful" text ("all" or switch names, comma-separated) into P7_FAITHFUL_* bits.
 * Returns 0, or 1 after printing the switches. */
int p7bench_parse_faithful(const char *text, unsigned *out);

/* The model name and network settings into options->network; 1 after printing what is wrong. */
int p7bench_resolve_network(p7bench_train_options *options);

/* Opens the optimizer plugin: with --faithful's optimizer-is-adam every name becomes
 * adam; then the plugin's recipe (p7/train.h) merged with the cell's lr and weight decay
 * and the user's --hparams, and the schedule, checked against the plugin. Prints the
 * plugin's help and the recipe the first time a plugin is seen (verbose), the resolved
 * settings always. Returns 0, 1 (error) or 2 (bad arguments) after printing what is wrong. */
int p7bench_resolve_recipe(p7bench_train_options *options, int verbose);

/* Resolves the data without a device. The synthetic set stands in only when neither
 * --data nor --dataset was given and the default folder has no data; an explicit request
 * that does not resolve is an error. Prints what is wrong and returns nonzero. */
int p7bench_prepare(const p7bench_train_options *options, p7bench_plan *plan);

/* Loads the training set (all of it) and the test set. Prints what is wrong, returns nonzero. */
int p7bench_load_data(const p7bench_train_options *options, const p7bench_plan *plan, p7_dataset *train_all,
                      p7_dataset *test);

#endif
