/* p7bench's training run: one model, one optimizer, real data or the synthetic
 * fallback; per-epoch lines on stderr, results in a CSV file. */
#ifndef P7BENCH_TRAIN_H
#define P7BENCH_TRAIN_H

#include <stdint.h>

#include "p7/p7.h"

typedef struct p7bench_train_options {
    const char *data_dir;     /* --data, else P7_DATA, else ./data */
    const char *dataset;      /* "cifar10" or "cifar20" */
    const char *model;        /* "simple", "vgg11", "vgg11-bn" */
    const char *optimizer;    /* plugin name or path */
    const char *hparams;      /* "lr=...,..." or NULL */
    const char *out_csv;      /* results file */
    int members;              /* BatchEnsemble size, 1 = plain */
    float alpha_init, gamma_init;
    int epochs;
    int batch;
    uint64_t seed;
    size_t limit;             /* at most this many training images (0: all) */
} p7bench_train_options;

/* Returns 0 on success; prints what went wrong and returns nonzero otherwise. */
int p7bench_train(p7_device *device, const p7bench_train_options *options);

#endif
