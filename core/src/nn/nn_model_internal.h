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
};

#endif
