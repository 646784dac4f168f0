/* The model's layers and forward program (internal): nn_model.c builds and runs
 * them; nn_memory.c walks the same program to size a training step. */
#ifndef P7_NN_MODEL_INTERNAL_H
#define P7_NN_MODEL_INTERNAL_H

#include "tensor/tensor_internal.h"
#include "p7/nn.h"

typedef struct layer {
    char name[48];
    p7_layer_config cfg;
    p7_tensor *weight, *bias, *alpha, *gamma; /* parameters (NULL where absent) */
    p7_tensor *running_mean, *running_var;    /* BatchNorm buffers (not parameters) */
    int group_size;        /* member groups: the first layer holds M, its followers -1; else 0 */
    int printed_shared;    /* faithful: the original's count_parameters_* called it shared */
} layer;

typedef struct step { p7_step_kind kind; int layer, a, b; } step;

typedef struct param { char name[64]; p7_tensor *tensor; int layer; } param;

struct p7_model {
    p7_device *device;
    int members;
    uint64_t seed;
    layer *layers;
    size_t layer_count, layer_capacity;
    step *steps;
    size_t step_count, step_capacity;
    param *params;
    size_t param_count, param_capacity;
    int has_printed_counts;  /* a faithful sharing model: the original printed its counts */
    int fuse_eval;           /* evaluation forwards run fused output stages (nn_fuse.c) */
    size_t fused_last;       /* fused stages the last forward ran (tests check fusion happened) */
    size_t fused_steps_last; /* program steps those stages covered */
};

/* If step i starts a fusable run (conv or conv group, then BatchNorm, ReLU, max pooling),
 * runs it in its fused evaluation form: *y receives the output and *steps the number
 * of program steps it covered. *steps = 0 (and *y NULL) when step i does not match.
 * x is borrowed. Evaluation only: never records. */
p7_status nn_forward_fused(p7_model *m, size_t i, p7_tensor *x, p7_tensor **y, size_t *steps);

#endif
