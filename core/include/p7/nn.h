/* p7 layers and models.
 *
 * A model holds layers (the parameters, each a tensor with a name) and a program:
 * the sequence of steps its forward pass runs. A step names the layer it applies,
 * so one layer applied by several steps shares its parameters; autograd sums the
 * gradient contributions of every use. The counts that parameter-sharing studies
 * report come from the program, exactly:
 *   unique  elements of all parameter tensors, each tensor once;
 *   used    elements of the tensors the forward pass touches;
 *   shared  elements of the tensors it touches more than once.
 *
 * BatchEnsemble (members M > 1): BE layers keep one shared weight W and rank-1 fast
 * weights per member: alpha [M, in] scales the inputs, gamma [M, out] the outputs, a
 * per-member bias [M, out] is added; member m computes ((x * alpha_m) W) * gamma_m +
 * bias_m. Inputs are tiled member-major (P7_STEP_TILE_MEMBERS); BE BatchNorm pools
 * its statistics over all members and applies a per-member affine.
 *
 * Independent members (member groups): p7_model_add_member_layers adds M ordinary
 * layers, one per member, applied by one P7_STEP_MEMBER_LAYERS step: member m's rows
 * (member-major, as for BatchEnsemble) go through member m's layer. A shared part of
 * the network is an ordinary layer: it runs once, on B rows before the first member
 * group, or on all M*B rows after it (one launch for every member).
 *
 * Outputs: an ensemble's forward returns every member's logits, [M*B, C] (row m*B + b is
 * member m on sample b), in training and in evaluation. p7_model_output_rule says how a
 * caller combines them; the faithful rules of the original study end the program with
 * a MEMBER_MEAN step instead. */
#ifndef P7_NN_H
#define P7_NN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "p7/autograd.h"
#include "p7/memory.h"
#include "p7/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum p7_layer_kind {
    P7_LAYER_CONV2D = 1,
    P7_LAYER_LINEAR,
    P7_LAYER_BATCHNORM2D,
    P7_LAYER_BE_CONV2D,
    P7_LAYER_BE_LINEAR,
    P7_LAYER_BE_BATCHNORM2D
} p7_layer_kind;

typedef enum p7_weight_init {
    P7_INIT_PYTORCH_DEFAULT = 0,    /* weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    P7_INIT_KAIMING_NORMAL_FAN_OUT, /* weight N(0, 2/fan_out) (relu gain), bias 0 */
    P7_INIT_NORMAL_STD_0_01         /* weight N(0, 0.01^2), bias 0 (the CIFAR-20 combined cells' linears) */
} p7_weight_init;

typedef struct p7_layer_config {
    p7_layer_kind kind;
    int in, out;                  /* channels or features (BatchNorm: in = out = C) */
    int kernel, stride, pad;      /* convolutions */
    int bias;                     /* plain layers: with a bias */
    int affine;                   /* BatchNorm2d: learnable weight and bias */
    float momentum, eps;          /* BatchNorm2d; 0 means 0.1 and 1e-5 */
    p7_weight_init init;
    /* BatchEnsemble layers: the fast weights' init value v (seed-study section 2.4,
     * with the documented meaning): v >= 0 random signs with P(+1) = v; v < 0
     * Normal(1, |v|). has_alpha / has_gamma choose which fast weights exist. */
    int has_alpha, has_gamma;
    float alpha_init, gamma_init;
    /* nonzero: the original's effective fast-weight init instead (seed-study 2.4, B2):
     * v <= 0 all -1, v >= 1 all +1, else random signs with P(+1) = v */
    int original_fast_init;
} p7_layer_config;

typedef enum p7_step_kind {
    P7_STEP_LAYER = 1,       /* apply layer `layer` */
    P7_STEP_RELU,
    P7_STEP_MAXPOOL,         /* window `a`, stride `b` */
    P7_STEP_FLATTEN,
    P7_STEP_TILE_MEMBERS,    /* [B,...] -> [M*B,...] */
    P7_STEP_MEMBER_MEAN,     /* [M*B,...] -> [B,...] mean of the members' outputs; in evaluation
                                only, or also in training when `a` = 1 */
    P7_STEP_MEMBER_LAYERS    /* the member group whose first layer is `layer`: a = 0: the input
                                has M*B rows and member m's rows go through layer + m; a = 1:
                                the input has B rows (a shared trunk's output) and every member
                                takes all of them. Output M*B rows, member-major. */
} p7_step_kind;

typedef struct p7_model p7_model;

/* An empty model of `members` BatchEnsemble members (1 for a plain network). The
 * seed drives every initialisation (stream per parameter), so a seed gives the same
 * initial weights on every device. */
P7_API p7_status p7_model_create(p7_device *device, int members, uint64_t seed, p7_model **out);
P7_API void p7_model_destroy(p7_model *model); /* NULL is a no-op */

/* Adds a layer and initialises its parameters; *layer receives its id. */
P7_API p7_status p7_model_add_layer(p7_model *model, const char *name, const p7_layer_config *config, int *layer);
/* Adds the model's `members` layers of one member group, named "<name>.m<k>" (their
 * parameters "conv3.m2.weight"), each initialised as p7_model_add_layer initialises a
 * plain layer (its own random stream); *first receives the first one's id, the others
 * follow. cfg must be a plain kind (conv, linear, BatchNorm: per-member statistics);
 * at most P7_ROWS_CONCAT_MAX members. */
P7_API p7_status p7_model_add_member_layers(p7_model *model, const char *name, const p7_layer_config *config,
                                            int *first);
/* Appends a step to the forward program. */
P7_API p7_status p7_model_add_step(p7_model *model, p7_step_kind kind, int layer, int a, int b);

/* Runs the program and returns its output. training selects batch statistics in
 * BatchNorm and, when `tape` records, the graph for backward. x is [B, 3, H, W]; the
 * output has p7_model_output_members(model, training) * B rows (see the rule below). */
P7_API p7_status p7_model_forward(p7_model *model, p7_tape *tape, p7_tensor *x, int training, p7_tensor **logits);

P7_API int p7_model_members(const p7_model *model);

/* Evaluation fusion (on by default; the environment variable P7_FUSE=0 turns it off
 * for every model created after): a forward in evaluation with no tape recording runs
 * conv -> BatchNorm -> ReLU (and conv -> ReLU, BatchEnsemble convs, member groups) as
 * one convolution whose output stage applies the folded affine and the ReLU. Same
 * results to float32 rounding; training and recording forwards never fuse. */
P7_API void p7_model_set_fusion(p7_model *model, int enabled);
P7_API int p7_model_fusion(const p7_model *model);
/* Nonzero when a layer normalises with batch statistics in training (BatchNorm), so a
 * batch split into chunks would not train the same. */
P7_API int p7_model_has_batch_statistics(const p7_model *model);

/* How the caller turns the output into a loss and a prediction. */
typedef enum p7_output_rule {
    /* [M*B, C] always (M = 1: a single network). Loss: cross-entropy over the M*B rows
     * with the labels tiled M times = the mean of the members' cross-entropies.
     * Prediction: the mean over members of the softmax probabilities. */
    P7_OUTPUT_MEMBER_LOGITS = 1,
    /* The original BatchEnsemble (seed-study 2.7, faithful): trains as above, but
     * evaluation returns the mean of the members' logits, [B, C]; predict its softmax. */
    P7_OUTPUT_MEMBER_LOGITS_EVAL_MEAN,
    /* The original sharing ensembles and heads (faithful): the mean of the members'
     * logits, [B, C], in training and evaluation; the loss is its cross-entropy with
     * untiled labels (the members train jointly). */
    P7_OUTPUT_MEAN_LOGITS
} p7_output_rule;

P7_API p7_output_rule p7_model_output_rule(const p7_model *model);
/* Member blocks in the output: M, or 1 where the rule averages (0 for NULL). Labels
 * for the loss are tiled this many times. */
P7_API int p7_model_output_members(const p7_model *model, int training);

/* Parameters by identity: index 0 .. count-1, with names such as "conv3.weight". */
P7_API size_t p7_model_param_count(const p7_model *model);
P7_API p7_tensor *p7_model_param(const p7_model *model, size_t index, const char **name);

/* Non-parameter state (BatchNorm's "bn1.running_mean", "bn1.running_var"): by index
 * 0 .. count-1, or by name (NULL when absent). Checkpoints save these with the
 * parameters. */
P7_API size_t p7_model_buffer_count(const p7_model *model);
P7_API p7_tensor *p7_model_buffer(const p7_model *model, size_t index, const char **name);
P7_API p7_tensor *p7_model_find_buffer(const p7_model *model, const char *name);

/* ---- model state files (nn_state.c) ----
 * Every parameter and buffer by name, shape and float32 values, after a magic number
 * ("P7MODEL"), a byte-order mark and a format version, so a file written on one device
 * loads on any other. Save writes a temporary file and renames it, so an interrupted
 * save never leaves a torn checkpoint. Load is strict and all-or-nothing: the file must
 * hold exactly the model's tensors with the model's shapes, and nothing in the model
 * changes unless every check passes. Errors name the file, the tensor and the shapes. */
P7_API p7_status p7_model_save(const p7_model *model, const char *path);
P7_API p7_status p7_model_load(p7_model *model, const char *path);
/* The same on an open stream (to combine model, optimizer and run state in one file);
 * `name` labels the stream in error messages. */
P7_API p7_status p7_model_save_stream(const p7_model *model, FILE *f, const char *name);
P7_API p7_status p7_model_load_stream(p7_model *model, FILE *f, const char *name);

typedef struct p7_param_counts {
    uint64_t unique;   /* elements, every parameter tensor once */
    uint64_t used;     /* elements of tensors used by the forward pass */
    uint64_t shared;   /* elements of tensors used more than once */
    size_t tensors_unique, tensors_used, tensors_shared;
} p7_param_counts;

P7_API p7_status p7_model_count_params(const p7_model *model, p7_param_counts *out);

/* Drop every parameter's gradient (see p7_tensor_zero_grad). */
P7_API void p7_model_zero_grad(p7_model *model);

/* ---- the device memory of a training step (nn_memory.c) ----
 * Estimated from the model's program and layer shapes, without allocating: the peak of
 * the bytes the allocator holds in use (p7_memory_stats.peak_bytes_in_use, in its size
 * classes) during one training step: forward with the tape, cross-entropy, backward,
 * optimizer step, with the data pipeline's two batch slots. The tape keeps every
 * output and intermediate gradient until backward ends, so the peak is late in backward. */

typedef struct p7_training_shape {
    int batch;                    /* images per step, before BatchEnsemble's M-times tiling */
    int channels, height, width;  /* one input image; 0 means CIFAR's 3 x 32 x 32 */
    unsigned optimizer_slots;     /* optimizer state tensors per parameter (p7_opt_plugin.slot_count:
                                     SGD 1, Adam 3) */
    int input_batch;              /* images per pipeline batch when the step runs in chunks of
                                     `batch` (p7_trainer_chunk); 0 means batch */
} p7_training_shape;

/* The peak and what is live at it, in bytes (size classes). */
typedef struct p7_memory_estimate {
    uint64_t total;
    uint64_t parameters;          /* parameters and BatchNorm running statistics */
    uint64_t gradients;           /* the parameters' gradients */
    uint64_t optimizer_state;
    uint64_t inputs;              /* the pipeline's two image and label slots, tiled labels */
    uint64_t activations;         /* op outputs and what ops save for backward */
    uint64_t activation_grads;    /* gradients of those outputs */
    uint64_t workspaces;          /* im2col / GEMM scratch, p7 GEMM's workspace */
    uint64_t largest_buffer;      /* the largest single allocation of the step */
    char largest_buffer_owner[64];/* the layer (or step) that makes it */
} p7_memory_estimate;

P7_API p7_status p7_model_estimate_training_memory(const p7_model *model, const p7_training_shape *shape,
                                            p7_memory_estimate *out);

/* Refuses, with P7_ERROR_OUT_OF_MEMORY and before anything is allocated, a training step
 * that does not fit p7_memory_get_budget (the device's global memory, its memory_limit
 * option, and on CPU devices the host memory this process may still take), or whose
 * largest buffer passes the device's per-buffer maximum. The message gives the need and
 * its parts, the limit, and the largest batch that fits; *max_batch (may be NULL)
 * receives that batch (shape->batch when it fits, 0 when nothing does). `label` names the
 * model in the message (NULL: "the model"). Call it after creating the model and the
 * optimizer: what they hold already counts as available. */
P7_API p7_status p7_model_check_training_memory(const p7_model *model, const p7_training_shape *shape, const char *label,
                                         int *max_batch);

/* ---- the networks of the studies (nn_zoo*.c; docs/networks.md) ---- */

typedef enum p7_arch {
    P7_ARCH_SIMPLE = 1,   /* SimpleCNN: conv(3-32)-BN-pool-conv(32-64)-BN-pool-Linear(4096, C) */
    P7_ARCH_HEADS,        /* SimpleCNN trunk, shared Linear(4096, 128), ReLU, one head Linear(128, C) per member */
    P7_ARCH_COMPLEX,      /* ComplexCNN: VGG11 convs, Linear(512, 512), ReLU, Linear(512, C) */
    P7_ARCH_VGG11,        /* VGG11 convs (64-M-128-M-256-256-M-512-512-M-512-512-M), Linear(512, C) */
    P7_ARCH_VGG11_10CONV  /* the within-sharing layout: 64-64-M-128-M-256-256-256-M-512-512-M-512-512-M */
} p7_arch;

typedef enum p7_member_kind {
    P7_MEMBERS_DEFAULT = 0,       /* independent for the between-member and combined sharing
                                     networks, BatchEnsemble otherwise */
    P7_MEMBERS_BATCHENSEMBLE,     /* one shared weight plus rank-1 factors per member (asked for with
                                     members = 1: BatchEnsemble layers with one member) */
    P7_MEMBERS_INDEPENDENT        /* a whole copy of each non-shared layer per member */
} p7_member_kind;

typedef enum p7_share { P7_SHARE_NONE = 0, P7_SHARE_EARLY, P7_SHARE_DEEP, P7_SHARE_ALL } p7_share;

/* Which sharing study's network (the faithful mode builds that notebook's module). */
typedef enum p7_sharing {
    P7_SHARING_PLAIN = 0,  /* the architecture, with whatever between / within / tie say */
    P7_SHARING_WITHIN,     /* seed-study 6.2 / 6.3, CIFAR-20 cell 1 */
    P7_SHARING_BETWEEN,    /* 6.4 */
    P7_SHARING_COMBINED    /* 6.5, CIFAR-20 cells 0 and 2: the 10-conv layout */
} p7_sharing;

typedef struct p7_network_config {
    p7_arch arch;
    int classes;
    int batchnorm;            /* -1: the architecture's default (simple, heads: 1; complex: 0 single, 1
                                 BatchEnsemble; vgg11: 0); 0 or 1 otherwise */
    int members;              /* M; 0 or 1 = a single network */
    p7_member_kind member_kind;
    p7_sharing sharing;
    p7_share between;         /* what the members share: early = the first two stages (convs up to the
                                 second pool), deep = every later conv, all = one network */
    p7_share within;          /* ties on the 10-conv layout: early conv5,conv6; deep conv8,conv9,conv10 */
    const char *tie;          /* explicit ties, groups separated by ';': "conv5,conv6;conv8,conv9" */
    float alpha_init, gamma_init;
    float width;              /* channel multiplier for quick runs; 0 or 1 = full width */
    unsigned faithful;        /* P7_FAITHFUL_* bits (p7/faithful.h) */
    int original_cell;        /* faithful only, where the notebook's cells differ: 3 = 6.3 cell 3 (an
                                 unused shared_conv_128 too); 4 = 6.5 cell 4 (under all, heads have no
                                 classifier); 0 = cell 5 / cell 2 */
} p7_network_config;

P7_API p7_status p7_model_build(p7_device *device, const p7_network_config *config, uint64_t seed, p7_model **out);

P7_API const char *p7_arch_name(p7_arch arch);            /* "simple", ..., "vgg11-10conv"; NULL if unknown */
P7_API p7_status p7_arch_parse(const char *name, p7_arch *arch);
P7_API const char *p7_share_name(p7_share share);         /* "none", "early", "deep", "all" */
P7_API p7_status p7_share_parse(const char *name, p7_share *share);

/* The counts the original notebook printed for a faithful sharing model (its
 * count_parameters_intra / _inter / _combined, seed-study 6.2-6.5, 7): total = every
 * parameter tensor once (unused modules included), shared = the modules the option
 * nominally shares, unique = total - shared. P7_ERROR_STATE for any other model. */
typedef struct p7_printed_counts { uint64_t total, unique, shared; } p7_printed_counts;
P7_API p7_status p7_model_printed_counts(const p7_model *model, p7_printed_counts *out);

/* Convenience forms of p7_model_build (kept for their callers). */
typedef struct p7_vgg_options {
    int batchnorm;          /* BatchNorm2d after every conv */
    int members;            /* 1: plain; > 1: BatchEnsemble (BE convs, BE BN, BE linears) */
    int classes;            /* 10 (CIFAR-10) or 20 (CIFAR-20) */
    int hidden;             /* 0: VGG11 (Linear(512, classes)); 512: ComplexCNN */
    p7_weight_init init;    /* KAIMING_NORMAL_FAN_OUT: the original's BatchEnsemble init */
    float alpha_init, gamma_init;
} p7_vgg_options;

P7_API p7_status p7_model_vgg11(p7_device *device, const p7_vgg_options *options, uint64_t seed, p7_model **out);

/* SimpleCNN; with members > 1 its BatchEnsemble version (corrected init). */
P7_API p7_status p7_model_simple_cnn(p7_device *device, int members, int classes, float alpha_init, float gamma_init,
                              uint64_t seed, p7_model **out);

#ifdef __cplusplus
}
#endif

#endif
