/* The device memory of one training step, from the model's program and layer shapes
 * alone (nothing is allocated), and the check that refuses a step that cannot fit.
 *
 * The estimate replays, in order, every allocation and release a training step makes
 * through the caching allocator, in its size classes, and keeps the peak of the bytes
 * in use: what p7_memory_stats.peak_bytes_in_use measures. Why a replay rather than a
 * sum: the tape releases each op's output, saved tensors and output gradient right after
 * the op's backward has run (autograd.c), while the gradients of earlier outputs are still
 * being made, so the peak depends on the order of the two and on which scratch buffers
 * are live between them. The allocator's cache does not
 * add to the need: when a new buffer would pass a limit it frees the cache first.
 *
 * What one step allocates (ops.c and the kernels' files):
 *   persistent  parameters, BatchNorm running statistics, optimizer state slots, the
 *               data pipeline's two batch slots (images and labels), BatchEnsemble's
 *               tiled labels, p7 GEMM's workspace (grown to its largest request);
 *   forward     each op's output; max-pool's argmax indices, BatchNorm's mean and
 *               inverse std, cross-entropy's probabilities; conv2d's col and T
 *               in two device workspaces (grown to the largest layer's need, like
 *               the GEMM's) and cross-entropy's row scratch, freed at once;
 *   backward    a gradient for every tensor that requires one, freed with the node that
 *               produced the tensor; conv2d's T and col workspaces again, BatchNorm's
 *               sums, freed at once; then the node's own output and saved tensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/conv2d_internal.h"
#include "gemm/gemm_packed.h"
#include "nn/nn_model_internal.h"

enum { PARAMS, GRADS, OPT_STATE, INPUTS, ACTIVATIONS, ACTIVATION_GRADS, WORKSPACES, PARTS };

/* The device workspaces a step grows (p7_device_workspace): p7 GEMM's packed operands,
 * conv2d's column matrix and its T = W * col. */
enum { WS_GEMM, WS_CONV_COL, WS_CONV_T, WS_CONV_U, WS_COUNT };

/* Cross-entropy and reductions accumulate in at most 8 bytes per row (fp64). */
#define ACC_BYTES 8

/* Up to this many members in one member group (the tape's rows_concat limit). */
#define MAX_COPIES 16

/* A backward step to replay: gradients to create, then scratch, then GEMMs, then the
 * node's release. */
typedef struct bw_node {
    uint64_t x_grad;              /* bytes of the input's gradient; 0 when it needs none */
    unsigned x_grad_copies;       /* separate gradients of x_grad bytes (rows_concat's inputs); 0 means 1 */
    int x_owner[MAX_COPIES];      /* per copy, the node whose release frees it (the input's producer); -1: none */
    uint64_t own;                 /* activation bytes freed at its release: its output and saved tensors */
    uint64_t pending;             /* during the replay: size-classed gradient bytes its release frees */
    const p7_tensor *params[3];   /* parameters whose gradient this node writes (NULL: none) */
    uint64_t scratch;             /* bytes, allocated after the gradients, freed at the end */
    uint64_t conv_t, conv_col, conv_u; /* conv2d workspace requests (bytes) */
    uint64_t gemm[2];             /* GEMM workspace requests while the scratch lives */
} bw_node;

typedef struct replay {
    const p7_model *model;
    p7_gemm_backend backend;
    uint64_t live[PARTS], at_peak[PARTS], peak;
    uint64_t largest;             /* largest single request */
    const char *owner;            /* the layer or step allocating now */
    char largest_owner[64];       /* ... and the one that made the largest request */
    uint64_t ws[WS_COUNT], ws_max[WS_COUNT]; /* device workspaces (WS_*): size class now; the largest request */
    bw_node *nodes;
    size_t count, capacity;
    const p7_tensor **with_grad;  /* parameters whose gradient exists */
    size_t with_grad_count;
    uint64_t untaped_tile;        /* a tiled input no node recorded: the next node's input, freed with it */
} replay;

/* The allocator's size class of a buffer of `bytes`; 0 for no buffer. */
static uint64_t size_class(uint64_t bytes) { return bytes ? p7_memory_size_class(bytes) : 0; }

static void take(replay *r, int part, uint64_t bytes)
{
    if (!bytes) return;
    if (bytes > r->largest) {
        r->largest = bytes;
        snprintf(r->largest_owner, sizeof r->largest_owner, "%s", r->owner ? r->owner : "the step");
    }
    r->live[part] += size_class(bytes);
    uint64_t total = 0;
    for (int i = 0; i < PARTS; i++) total += r->live[i];
    if (total > r->peak) {
        r->peak = total;
        memcpy(r->at_peak, r->live, sizeof r->live);
    }
}

static void give(replay *r, int part, uint64_t bytes)
{
    if (bytes) r->live[part] -= size_class(bytes);
}

/* p7_device_workspace: reused while big enough, else released and allocated anew. */
static void workspace(replay *r, int slot, uint64_t bytes)
{
    if (!bytes) return;
    if (bytes > r->ws_max[slot]) r->ws_max[slot] = bytes;
    if (bytes <= r->ws[slot]) return;
    give(r, WORKSPACES, r->ws[slot]);
    take(r, WORKSPACES, bytes);
    r->ws[slot] = size_class(bytes);
}

static void gemm(replay *r, uint64_t bytes) { workspace(r, WS_GEMM, bytes); }

static p7_status push(replay *r, const bw_node *n)
{
    if (r->count == r->capacity) {
        size_t cap = r->capacity ? 2 * r->capacity : 64;
        bw_node *grown = realloc(r->nodes, cap * sizeof *grown);
        if (!grown) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "memory estimate: out of host memory");
        r->nodes = grown;
        r->capacity = cap;
    }
    r->nodes[r->count++] = *n;
    return P7_SUCCESS;
}

static uint64_t tensor_bytes(const p7_tensor *t) { return t ? (uint64_t)p7_tensor_numel(t) * sizeof(float) : 0; }

/* The activation flowing through the program. */
typedef struct act {
    uint64_t n, c, h, w;   /* h = w = 1 after flatten or a linear layer */
    int spatial;           /* 4-D [N, C, H, W] (else [N, C]) */
    int needs_grad;
    int producer;          /* the node whose output it is (its gradient dies with that node); -1: none */
} act;

static uint64_t act_bytes(const act *a) { return a->n * a->c * a->h * a->w * sizeof(float); }

/* Push n, whose input is x: x's gradient dies with x's producer. Returns n's index. */
static p7_status push_on(replay *r, bw_node n, const act *x, int *index)
{
    for (int c = 0; c < MAX_COPIES; c++) n.x_owner[c] = -1;
    n.x_owner[0] = x ? x->producer : -1;
    n.own += r->untaped_tile;
    r->untaped_tile = 0;
    P7_TRY(push(r, &n));
    if (index) *index = (int)r->count - 1;
    return P7_SUCCESS;
}

/* An op with a new output of `out_bytes`, recorded on the tape (it lives to the end of
 * backward); the input's gradient is created in backward when the input needs one. */
static p7_status simple_op(replay *r, act *x, uint64_t out_bytes, uint64_t saved_bytes)
{
    take(r, ACTIVATIONS, out_bytes);
    take(r, ACTIVATIONS, saved_bytes);
    bw_node n = {.x_grad = x->needs_grad ? act_bytes(x) : 0,
                 .own = size_class(out_bytes) + size_class(saved_bytes)};
    return push_on(r, n, x, &x->producer);
}

static p7_status conv_op(replay *r, const layer *l, act *x, const p7_tensor *bias, act *y)
{
    const p7_layer_config *c = &l->cfg;
    p7_conv2d_scratch s;
    p7_conv2d_scratch_of(x->n, x->c, x->h, x->w, (size_t)c->out, (size_t)c->kernel, c->stride, c->pad,
                         r->model->device, r->backend,
                         x->needs_grad, 1, &s);
    *y = (act){x->n, (uint64_t)c->out, (x->h + 2 * (uint64_t)c->pad - (uint64_t)c->kernel) / (uint64_t)c->stride + 1,
               (x->w + 2 * (uint64_t)c->pad - (uint64_t)c->kernel) / (uint64_t)c->stride + 1, 1, 1, -1};
    take(r, ACTIVATIONS, act_bytes(y));
    workspace(r, WS_CONV_COL, s.forward_col_floats * sizeof(float));
    workspace(r, WS_CONV_T, s.t_floats * sizeof(float));
    workspace(r, WS_CONV_U, s.u_floats * sizeof(float));
    gemm(r, s.forward_gemm_bytes);
    bw_node n = {.x_grad = x->needs_grad ? act_bytes(x) : 0, .params = {l->weight, bias},
                 .conv_t = s.t_floats * sizeof(float), .conv_col = s.backward_col_floats * sizeof(float),
                 .conv_u = s.u_floats * sizeof(float),
                 .gemm = {s.backward_dw_gemm_bytes, s.backward_dx_gemm_bytes},
                 .own = size_class(act_bytes(y))};
    return push_on(r, n, x, &y->producer);
}

static p7_status linear_op(replay *r, const layer *l, act *x, const p7_tensor *bias, act *y)
{
    const uint64_t in = x->c * x->h * x->w, out = (uint64_t)l->cfg.out;
    *y = (act){x->n, out, 1, 1, 0, 1, -1};
    take(r, ACTIVATIONS, act_bytes(y));
    const p7_gemm_backend b = r->backend;
    gemm(r, p7_gemm_workspace_bytes(r->model->device, b, x->n, out, in, 0));
    bw_node n = {.x_grad = x->needs_grad ? act_bytes(x) : 0, .params = {l->weight, bias},
                 .gemm = {x->needs_grad ? p7_gemm_workspace_bytes(r->model->device, b, x->n, in, out, 0) : 0,
                          p7_gemm_workspace_bytes(r->model->device, b, out, in, x->n, 0)},
                 .own = size_class(act_bytes(y))};
    return push_on(r, n, x, &y->producer);
}

static p7_status batchnorm_op(replay *r, const layer *l, act *x)
{
    const int be = l->cfg.kind == P7_LAYER_BE_BATCHNORM2D;
    const uint64_t groups = l->weight ? (uint64_t)(be ? r->model->members : 1) : 1;
    take(r, ACTIVATIONS, act_bytes(x));
    take(r, ACTIVATIONS, x->c * sizeof(float)); /* saved mean */
    take(r, ACTIVATIONS, x->c * sizeof(float)); /* saved inverse std */
    bw_node n = {.x_grad = x->needs_grad ? act_bytes(x) : 0, .params = {l->weight, l->bias},
                 .scratch = (2 * groups * x->c + 2 * x->c) * sizeof(float),
                 .own = size_class(act_bytes(x)) + 2 * size_class(x->c * sizeof(float))};
    const int wants = x->needs_grad || l->weight != NULL;
    P7_TRY(push_on(r, n, x, &x->producer));
    x->needs_grad = wants;
    return P7_SUCCESS;
}

/* x * v[member, c] or x + v[member, c]: a new output, gradients for x and v. */
static p7_status channel_op(replay *r, act *x, const p7_tensor *v)
{
    take(r, ACTIVATIONS, act_bytes(x));
    bw_node n = {.x_grad = x->needs_grad ? act_bytes(x) : 0, .params = {v},
                 .own = size_class(act_bytes(x))};
    P7_TRY(push_on(r, n, x, &x->producer));
    x->needs_grad = 1;
    return P7_SUCCESS;
}

static p7_status check_in(const layer *l, const act *x, uint64_t in)
{
    int is_conv = l->cfg.kind == P7_LAYER_CONV2D || l->cfg.kind == P7_LAYER_BE_CONV2D;
    if (is_conv && !x->spatial)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "memory estimate: layer %s is a convolution but its input is flat",
                       l->name);
    if (is_conv && (x->h + 2 * (uint64_t)l->cfg.pad < (uint64_t)l->cfg.kernel ||
                    x->w + 2 * (uint64_t)l->cfg.pad < (uint64_t)l->cfg.kernel))
        return p7_fail(P7_ERROR_INVALID_SHAPE, "memory estimate: layer %s's %dx%d kernel does not fit its %llux%llu input",
                       l->name, l->cfg.kernel, l->cfg.kernel, (unsigned long long)x->h, (unsigned long long)x->w);
    if (in != (uint64_t)l->cfg.in)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "memory estimate: layer %s takes %d input %s, but the program gives it %llu", l->name,
                       l->cfg.in, is_conv || l->cfg.kind == P7_LAYER_BATCHNORM2D ? "channels" : "features",
                       (unsigned long long)in);
    return P7_SUCCESS;
}

static p7_status layer_op(replay *r, const layer *l, act *x)
{
    const int M = r->model->members;
    r->owner = l->name;
    const int is_linear = l->cfg.kind == P7_LAYER_LINEAR || l->cfg.kind == P7_LAYER_BE_LINEAR;
    P7_TRY(check_in(l, x, is_linear ? x->c * x->h * x->w : x->c));
    act y;
    switch (l->cfg.kind) {
    case P7_LAYER_CONV2D: P7_TRY(conv_op(r, l, x, l->bias, &y)); break;
    case P7_LAYER_LINEAR: P7_TRY(linear_op(r, l, x, l->bias, &y)); break;
    case P7_LAYER_BATCHNORM2D:
    case P7_LAYER_BE_BATCHNORM2D: return batchnorm_op(r, l, x);
    case P7_LAYER_BE_CONV2D:
    case P7_LAYER_BE_LINEAR:
        /* ((x * alpha_m) W) * gamma_m + bias_m: four ops (nn_model.c) */
        if (x->n % (uint64_t)M != 0)
            return p7_fail(P7_ERROR_INVALID_SHAPE,
                           "memory estimate: layer %s is BatchEnsemble with %d members, but %llu rows reach it "
                           "(is the input tiled?)", l->name, M, (unsigned long long)x->n);
        if (l->alpha) P7_TRY(channel_op(r, x, l->alpha));
        P7_TRY(l->cfg.kind == P7_LAYER_BE_CONV2D ? conv_op(r, l, x, NULL, &y) : linear_op(r, l, x, NULL, &y));
        if (l->gamma) P7_TRY(channel_op(r, &y, l->gamma));
        P7_TRY(channel_op(r, &y, l->bias));
        break;
    default: return p7_fail(P7_ERROR_STATE, "memory estimate: layer %s has unknown kind %d", l->name, (int)l->cfg.kind);
    }
    *x = y;
    return P7_SUCCESS;
}

/* A member group (nn_model.c): a = 0 slices x into members' rows (views: their
 * gradients come in backward, one full gradient of x for all slices), runs each member's
 * layer, and stacks the outputs (rows_concat: a copy; in backward one gradient per
 * member output). a = 1 gives every member all of x, whose gradient the members share. */
static p7_status member_layers_op(replay *r, const step *s, act *x)
{
    const p7_model *m = r->model;
    const int M = m->layers[s->layer].group_size;
    if (!s->a && x->n % (uint64_t)M != 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "memory estimate: member group %s gets %llu rows, not a multiple of %d",
                       m->layers[s->layer].name, (unsigned long long)x->n, M);
    if (M > MAX_COPIES)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "memory estimate: member group %s has %d members; at most %d",
                       m->layers[s->layer].name, M, MAX_COPIES);
    act y = *x;
    int last[MAX_COPIES];
    for (int k = 0; k < M; k++) {
        act in = *x;
        if (!s->a) {
            in.n = x->n / (uint64_t)M;
            /* the slice's backward creates x's gradient once (the last member's, first in
             * backward); the slice is a view, but its own gradient dies with it */
            bw_node slice = {.x_grad = x->needs_grad && k == M - 1 ? act_bytes(x) : 0};
            P7_TRY(push_on(r, slice, x, &in.producer));
        }
        const size_t before = r->count;
        P7_TRY(layer_op(r, &m->layers[s->layer + k], &in));
        /* a = 1: the members' layers add into one gradient of x, made by the last member's */
        if (s->a && k < M - 1 && r->count > before) r->nodes[before].x_grad = 0;
        last[k] = in.producer;
        y = in;
    }
    y.n *= (uint64_t)M;
    r->owner = m->layers[s->layer].name;
    take(r, ACTIVATIONS, act_bytes(&y));
    bw_node concat = {.x_grad = y.needs_grad ? act_bytes(&y) / (uint64_t)M : 0, .x_grad_copies = (unsigned)M,
                      .own = size_class(act_bytes(&y))};
    P7_TRY(push_on(r, concat, NULL, &y.producer));
    for (int k = 0; k < M; k++) r->nodes[y.producer].x_owner[k] = last[k];
    *x = y;
    return P7_SUCCESS;
}

static p7_status forward(replay *r, act *x)
{
    const p7_model *m = r->model;
    int fresh = 0; /* x came from a layer or member group: a ReLU overwrites it (nn_model.c) */
    for (size_t i = 0; i < m->step_count; i++) {
        const step *s = &m->steps[i];
        static const char *const step_names[] = {"", "a layer", "a relu", "a max-pool", "a flatten",
                                                 "the member tiling", "the member mean", "a member group"};
        r->owner = (unsigned)s->kind < sizeof step_names / sizeof *step_names ? step_names[s->kind] : "a step";
        switch (s->kind) {
        case P7_STEP_LAYER: P7_TRY(layer_op(r, &m->layers[s->layer], x)); break;
        case P7_STEP_MEMBER_LAYERS: P7_TRY(member_layers_op(r, s, x)); break;
        case P7_STEP_RELU: P7_TRY(simple_op(r, x, fresh ? 0 : act_bytes(x), 0)); break;
        case P7_STEP_MAXPOOL: {
            if (!x->spatial || x->h < (uint64_t)s->a || x->w < (uint64_t)s->a || s->a < 1 || s->b < 1)
                return p7_fail(P7_ERROR_INVALID_SHAPE,
                               "memory estimate: step %zu pools %dx%d windows over a %llux%llu input", i, s->a, s->a,
                               (unsigned long long)x->h, (unsigned long long)x->w);
            act y = *x;
            y.h = (x->h - (uint64_t)s->a) / (uint64_t)s->b + 1;
            y.w = (x->w - (uint64_t)s->a) / (uint64_t)s->b + 1;
            /* the output and its argmax indices (one cl_int each) */
            P7_TRY(simple_op(r, x, act_bytes(&y), act_bytes(&y)));
            *x = y;
            break;
        }
        case P7_STEP_FLATTEN: /* a view: no memory, but its own gradient in backward */
            P7_TRY(simple_op(r, x, 0, 0));
            *x = (act){x->n, x->c * x->h * x->w, 1, 1, 0, x->needs_grad, x->producer};
            break;
        case P7_STEP_TILE_MEMBERS:
            if (m->members > 1) {
                act y = *x;
                y.n *= (uint64_t)m->members;
                /* recorded only when the input needs a gradient; kept either way, by the next op
                 * (whose release frees it then) */
                take(r, ACTIVATIONS, act_bytes(&y));
                y.producer = -1;
                if (x->needs_grad) {
                    bw_node n = {.x_grad = act_bytes(x), .own = size_class(act_bytes(&y))};
                    P7_TRY(push_on(r, n, x, &y.producer));
                } else {
                    r->untaped_tile = size_class(act_bytes(&y));
                }
                *x = y;
            }
            break;
        case P7_STEP_MEMBER_MEAN:
            /* a = 0: evaluation only (the loss takes all M*B rows); a = 1: also in training */
            if (s->a && m->members > 1) {
                act y = *x;
                y.n /= (uint64_t)m->members;
                P7_TRY(simple_op(r, x, act_bytes(&y), 0));
                *x = y;
            }
            break;
        default: return p7_fail(P7_ERROR_STATE, "memory estimate: step %zu has unknown kind %d", i, (int)s->kind);
        }
        fresh = s->kind == P7_STEP_LAYER || s->kind == P7_STEP_MEMBER_LAYERS;
    }
    /* the caller holds the logits through backward, so their node's release keeps them */
    if (x->producer >= 0) {
        bw_node *logits = &r->nodes[x->producer];
        const uint64_t held = size_class(act_bytes(x));
        logits->own = logits->own >= held ? logits->own - held : 0;
    }
    /* cross-entropy: the loss, the saved probabilities, the row scratch */
    r->owner = "the cross-entropy";
    take(r, ACTIVATIONS, sizeof(float));
    take(r, ACTIVATIONS, act_bytes(x));
    take(r, WORKSPACES, x->n * ACC_BYTES);
    give(r, WORKSPACES, x->n * ACC_BYTES);
    /* the loss itself stays with the caller */
    bw_node n = {.x_grad = act_bytes(x), .own = size_class(act_bytes(x))};
    return push_on(r, n, x, NULL);
}

static int has_grad(const replay *r, const p7_tensor *p)
{
    for (size_t i = 0; i < r->with_grad_count; i++)
        if (r->with_grad[i] == p) return 1;
    return 0;
}

static void backward(replay *r)
{
    take(r, ACTIVATION_GRADS, sizeof(float)); /* d loss / d loss, freed with the loss's node */
    if (r->count) r->nodes[r->count - 1].pending += size_class(sizeof(float));
    for (size_t i = r->count; i-- > 0;) {
        bw_node *n = &r->nodes[i];
        for (unsigned c = 0; c < (n->x_grad_copies ? n->x_grad_copies : 1); c++) {
            take(r, ACTIVATION_GRADS, n->x_grad);
            const int owner = n->x_owner[c < MAX_COPIES ? c : 0];
            if (n->x_grad && owner >= 0 && (size_t)owner < i) r->nodes[owner].pending += size_class(n->x_grad);
        }
        for (int j = 0; j < 3; j++) {
            if (!n->params[j] || has_grad(r, n->params[j])) continue;
            take(r, GRADS, tensor_bytes(n->params[j]));
            r->with_grad[r->with_grad_count++] = n->params[j];
        }
        take(r, WORKSPACES, n->scratch);
        workspace(r, WS_CONV_COL, n->conv_col);
        workspace(r, WS_CONV_T, n->conv_t);
        workspace(r, WS_CONV_U, n->conv_u);
        gemm(r, n->gemm[0]);
        gemm(r, n->gemm[1]);
        give(r, WORKSPACES, n->scratch);
        /* the node's release (autograd.c): its output gradient, output and saved tensors */
        r->live[ACTIVATION_GRADS] -= n->pending;
        r->live[ACTIVATIONS] -= n->own;
    }
}

/* One replay of a step, with the device workspaces already at `ws` bytes. */
static p7_status run(replay *r, const p7_training_shape *shape, const uint64_t ws[WS_COUNT])
{
    const p7_model *m = r->model;
    const uint64_t B = (uint64_t)shape->batch, M = (uint64_t)m->members;
    for (size_t i = 0; i < m->param_count; i++) {
        take(r, PARAMS, tensor_bytes(m->params[i].tensor));
        for (unsigned s = 0; s < shape->optimizer_slots; s++) take(r, OPT_STATE, tensor_bytes(m->params[i].tensor));
    }
    for (size_t i = 0; i < m->layer_count; i++) {
        take(r, PARAMS, tensor_bytes(m->layers[i].running_mean));
        take(r, PARAMS, tensor_bytes(m->layers[i].running_var));
    }
    act x = {B, (uint64_t)(shape->channels ? shape->channels : 3), (uint64_t)(shape->height ? shape->height : 32),
             (uint64_t)(shape->width ? shape->width : 32), 1, 0, -1};
    /* the pipeline's double buffer and the tiled labels hold whole batches, also when the
     * step runs in chunks of B */
    const uint64_t IB = shape->input_batch > 0 ? (uint64_t)shape->input_batch : B;
    act whole = x;
    whole.n = IB;
    for (int slot = 0; slot < 2; slot++) {
        take(r, INPUTS, act_bytes(&whole));
        take(r, INPUTS, IB * sizeof(int32_t));
    }
    if (M > 1) take(r, INPUTS, IB * M * sizeof(int32_t));
    /* a step in chunks keeps scalars through a later chunk's backward that a whole step
     * does not: the chunk's weight, its weighted loss, the batch's loss so far and the sum
     * replacing it, and the epoch's loss sum with its update (measured: six) */
    if (IB > B)
        for (int i = 0; i < 6; i++) take(r, INPUTS, sizeof(float));
    for (int i = 0; i < WS_COUNT; i++) {
        take(r, WORKSPACES, ws[i]);
        r->ws[i] = size_class(ws[i]);
    }
    r->with_grad = calloc(m->param_count ? m->param_count : 1, sizeof *r->with_grad);
    if (!r->with_grad) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "memory estimate: out of host memory");
    /* from the second chunk on, every parameter's gradient exists before the forward (the
     * chunks add into them); the whole step's backward creates them as it goes */
    if (IB > B)
        for (size_t i = 0; i < m->param_count; i++) {
            take(r, GRADS, tensor_bytes(m->params[i].tensor));
            r->with_grad[r->with_grad_count++] = m->params[i].tensor;
        }
    P7_TRY(forward(r, &x));
    backward(r);
    return P7_SUCCESS;
}

p7_status p7_model_estimate_training_memory(const p7_model *model, const p7_training_shape *shape,
                                            p7_memory_estimate *out)
{
    if (!model || !shape || !out)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_estimate_training_memory: NULL argument");
    memset(out, 0, sizeof *out);
    if (shape->batch < 1 || shape->channels < 0 || shape->height < 0 || shape->width < 0)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                       "p7_model_estimate_training_memory: batch %d, image %dx%dx%d; expected a batch >= 1 and "
                       "sizes >= 0 (0: CIFAR's 3x32x32)", shape->batch, shape->channels, shape->height, shape->width);
    /* The nn layer does not know the optimizer ABI's own bound (that layer is above
     * it); any real optimizer keeps far fewer state tensors per parameter than this. */
    enum { MAX_STATE_SLOTS = 64 };
    if (shape->optimizer_slots > MAX_STATE_SLOTS)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_estimate_training_memory: %u optimizer slots; at most %d",
                       shape->optimizer_slots, MAX_STATE_SLOTS);
    /* Twice: the first replay finds the workspaces' largest requests, which from the
     * second step on are allocated before the step begins. */
    uint64_t ws[WS_COUNT] = {0};
    p7_status st = P7_SUCCESS;
    for (int pass = 0; pass < 2 && st == P7_SUCCESS; pass++) {
        replay r = {.model = model, .backend = p7_device_gemm_backend(model->device)};
        st = run(&r, shape, ws);
        memcpy(ws, r.ws_max, sizeof ws);
        if (st == P7_SUCCESS && pass == 1) {
            out->total = r.peak;
            out->parameters = r.at_peak[PARAMS];
            out->gradients = r.at_peak[GRADS];
            out->optimizer_state = r.at_peak[OPT_STATE];
            out->inputs = r.at_peak[INPUTS];
            out->activations = r.at_peak[ACTIVATIONS];
            out->activation_grads = r.at_peak[ACTIVATION_GRADS];
            out->workspaces = r.at_peak[WORKSPACES];
            out->largest_buffer = r.largest;
            snprintf(out->largest_buffer_owner, sizeof out->largest_buffer_owner, "%s", r.largest_owner);
        }
        free(r.nodes);
        free(r.with_grad);
    }
    return st;
}

/* ---- the check ---- */

static int fits(const p7_memory_estimate *e, const p7_memory_budget *b, uint64_t max_alloc)
{
    return e->total <= b->bytes && (!max_alloc || e->largest_buffer <= max_alloc);
}

p7_status p7_model_check_training_memory(const p7_model *model, const p7_training_shape *shape, const char *label,
                                         int *max_batch)
{
    if (!model || !shape)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_check_training_memory: NULL argument");
    if (max_batch) *max_batch = 0;
    p7_memory_estimate e;
    P7_TRY(p7_model_estimate_training_memory(model, shape, &e));
    p7_memory_budget budget;
    P7_TRY(p7_memory_get_budget(model->device, &budget));
    const uint64_t max_alloc = model->device->info.max_alloc_bytes;
    if (fits(&e, &budget, max_alloc)) {
        if (max_batch) *max_batch = shape->batch;
        return P7_SUCCESS;
    }
    /* The largest batch that fits: the estimate grows with the batch. */
    int lo = 0, hi = shape->batch - 1;
    while (lo < hi) {
        p7_training_shape s = *shape;
        s.batch = lo + (hi - lo + 1) / 2;
        p7_memory_estimate t;
        P7_TRY(p7_model_estimate_training_memory(model, &s, &t));
        if (fits(&t, &budget, max_alloc)) lo = s.batch;
        else hi = s.batch - 1;
    }
    if (max_batch) *max_batch = lo;
    char advice[96];
    if (lo > 0) snprintf(advice, sizeof advice, "use a batch of %d or less", lo);
    else snprintf(advice, sizeof advice, "not even a batch of 1 fits: use a smaller model or a larger device");
    char b[8][32], why[700];
    if (e.total > budget.bytes)
        snprintf(why, sizeof why, "%s allows %s", budget.limit, p7_format_bytes(budget.bytes, b[0], sizeof b[0]));
    else
        snprintf(why, sizeof why, "its largest buffer (%s, %llu bytes, in %s) is more than %s allows in one buffer (%s)",
                 p7_format_bytes(e.largest_buffer, b[0], sizeof b[0]), (unsigned long long)e.largest_buffer,
                 e.largest_buffer_owner, model->device->info.name,
                 p7_format_bytes(max_alloc, b[1], sizeof b[1]));
    return p7_fail(P7_ERROR_OUT_OF_MEMORY,
                   "a training step of %s at batch %d needs %s of device memory (activations %s, activation "
                   "gradients %s, scratch %s, parameters %s and their gradients %s, optimizer state %s, input "
                   "batches %s; the largest buffer %llu bytes, in %s); %s; %s",
                   label ? label : "the model", shape->batch, p7_format_bytes(e.total, b[0], sizeof b[0]),
                   p7_format_bytes(e.activations, b[1], sizeof b[1]),
                   p7_format_bytes(e.activation_grads, b[2], sizeof b[2]),
                   p7_format_bytes(e.workspaces, b[3], sizeof b[3]), p7_format_bytes(e.parameters, b[4], sizeof b[4]),
                   p7_format_bytes(e.gradients, b[5], sizeof b[5]),
                   p7_format_bytes(e.optimizer_state, b[6], sizeof b[6]),
                   p7_format_bytes(e.inputs, b[7], sizeof b[7]), (unsigned long long)e.largest_buffer,
                   e.largest_buffer_owner, why, advice);
}
