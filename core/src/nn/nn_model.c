/* Layers (parameters and their initialisation) and the model's forward program. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor_internal.h"
#include "p7/autograd.h"
#include "p7/nn.h"
#include "p7/ops.h"
#include "nn/nn_model_internal.h"

static void *grow(void *array, size_t *capacity, size_t count, size_t size)
{
    if (count < *capacity) return array;
    size_t cap = *capacity ? *capacity * 2 : 16;
    void *grown = realloc(array, cap * size);
    if (grown) *capacity = cap;
    return grown;
}

p7_status p7_model_create(p7_device *device, int members, uint64_t seed, p7_model **out)
{
    if (!device || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_create: NULL argument");
    if (members < 1) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_create: %d members; expected >= 1", members);
    p7_model *m = calloc(1, sizeof *m);
    if (!m) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_model_create: out of host memory");
    m->device = device;
    m->members = members;
    m->seed = seed;
    /* P7_FUSE=0 turns the evaluation fusion off for every model (a reference run) */
    const char *fuse = getenv("P7_FUSE");
    m->fuse_eval = !(fuse && strcmp(fuse, "0") == 0);
    *out = m;
    return P7_SUCCESS;
}

void p7_model_destroy(p7_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->layer_count; i++) {
        layer *l = &m->layers[i];
        p7_tensor *ts[] = {l->weight, l->bias, l->alpha, l->gamma, l->running_mean, l->running_var};
        for (size_t j = 0; j < sizeof ts / sizeof *ts; j++) p7_tensor_release(ts[j]);
    }
    free(m->layers);
    free(m->steps);
    free(m->params);
    free(m);
}

/* A parameter's init stream: FNV-1a of its full name, so a parameter draws the same
 * values whatever else the model holds ("conv1.weight" of a BatchEnsemble network
 * starts as "conv1.weight" of the plain one). */
static uint64_t name_stream(const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) h = (h ^ *c) * 1099511628211ull;
    return h;
}

/* A parameter tensor, registered by name; its init stream comes from the name. */
static p7_status new_param(p7_model *m, int layer_id, const char *suffix, int ndim, const int64_t *shape,
                           p7_tensor **slot, uint64_t *stream)
{
    param *grown = grow(m->params, &m->param_capacity, m->param_count, sizeof *m->params);
    if (!grown) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "model: out of host memory");
    m->params = grown;
    P7_TRY(p7_tensor_create(m->device, ndim, shape, slot));
    P7_TRY(p7_tensor_set_requires_grad(*slot, 1));
    param *p = &m->params[m->param_count];
    snprintf(p->name, sizeof p->name, "%s.%s", m->layers[layer_id].name, suffix);
    p->tensor = *slot;
    p->layer = layer_id;
    *stream = name_stream(p->name);
    m->param_count++;
    return P7_SUCCESS;
}

/* The BatchEnsemble fast-weight init of seed-study section 2.4, with its documented
 * meaning (the original's Gaussian branch was dead code; section 9). */
static p7_status init_fast_weight(p7_tensor *t, uint64_t seed, uint64_t stream, float v, int original)
{
    /* the original overwrote every init with random_sign_(v): rand < v, never true for v <= 0 */
    if (original) return p7_tensor_fill_sign(t, seed, stream, v > 0.0f ? v : 0.0f);
    return v >= 0.0f ? p7_tensor_fill_sign(t, seed, stream, v) : p7_tensor_fill_normal(t, seed, stream, 1.0f, -v);
}

static p7_status init_weight_and_bias(p7_model *m, layer *l, uint64_t ws, uint64_t bs, int fan_in, int fan_out)
{
    if (l->cfg.init == P7_INIT_KAIMING_NORMAL_FAN_OUT) {
        P7_TRY(p7_tensor_fill_normal(l->weight, m->seed, ws, 0.0f, sqrtf(2.0f / (float)fan_out)));
        if (l->bias) P7_TRY(p7_tensor_fill(l->bias, 0.0f));
        return P7_SUCCESS;
    }
    if (l->cfg.init == P7_INIT_NORMAL_STD_0_01) {
        P7_TRY(p7_tensor_fill_normal(l->weight, m->seed, ws, 0.0f, 0.01f));
        if (l->bias) P7_TRY(p7_tensor_fill(l->bias, 0.0f));
        return P7_SUCCESS;
    }
    /* PyTorch: kaiming_uniform(a = sqrt(5)) gives bound 1/sqrt(fan_in) for the weight;
     * the bias uses the same bound. */
    float bound = 1.0f / sqrtf((float)fan_in);
    P7_TRY(p7_tensor_fill_uniform(l->weight, m->seed, ws, -bound, bound));
    /* A BatchEnsemble layer's per-member bias [M, out] draws as the plain bias does, one
     * row per member (row 0 equals the plain layer's bias), so a BE network with one
     * member and all-+1 fast weights starts as the plain network. */
    if (l->bias) P7_TRY(p7_tensor_fill_uniform(l->bias, m->seed, bs, -bound, bound));
    return P7_SUCCESS;
}

p7_status p7_model_add_layer(p7_model *m, const char *name, const p7_layer_config *cfg, int *layer_id)
{
    if (!m || !name || !cfg || !layer_id) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_add_layer: NULL argument");
    if (cfg->in < 1 || cfg->out < 1)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "layer %s: in %d, out %d; expected >= 1", name, cfg->in, cfg->out);
    int is_conv = cfg->kind == P7_LAYER_CONV2D || cfg->kind == P7_LAYER_BE_CONV2D;
    if (is_conv && (cfg->kernel < 1 || cfg->stride < 1 || cfg->pad < 0))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "layer %s: kernel %d, stride %d, pad %d are not a convolution", name,
                       cfg->kernel, cfg->stride, cfg->pad);
    layer *grown = grow(m->layers, &m->layer_capacity, m->layer_count, sizeof *m->layers);
    if (!grown) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "model: out of host memory");
    m->layers = grown;
    int id = (int)m->layer_count++;
    layer *l = &m->layers[id];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->cfg = *cfg;
    if (l->cfg.momentum == 0.0f) l->cfg.momentum = 0.1f;
    if (l->cfg.eps == 0.0f) l->cfg.eps = 1e-5f;
    const int64_t M = m->members, in = cfg->in, out = cfg->out, k = cfg->kernel;
    uint64_t ws = 0, bs = 0, as = 0, gs = 0;

    switch (cfg->kind) {
    case P7_LAYER_CONV2D:
    case P7_LAYER_BE_CONV2D:
    case P7_LAYER_LINEAR:
    case P7_LAYER_BE_LINEAR: {
        int be = cfg->kind == P7_LAYER_BE_CONV2D || cfg->kind == P7_LAYER_BE_LINEAR;
        const int64_t wconv[4] = {out, in, k, k}, wlin[2] = {out, in};
        P7_TRY(new_param(m, id, "weight", is_conv ? 4 : 2, is_conv ? wconv : wlin, &l->weight, &ws));
        if (be) {
            const int64_t ma[2] = {M, in}, mg[2] = {M, out};
            if (cfg->has_alpha) P7_TRY(new_param(m, id, "alpha", 2, ma, &l->alpha, &as));
            if (cfg->has_gamma) P7_TRY(new_param(m, id, "gamma", 2, mg, &l->gamma, &gs));
            P7_TRY(new_param(m, id, "bias", 2, mg, &l->bias, &bs));
            if (l->alpha) P7_TRY(init_fast_weight(l->alpha, m->seed, as, cfg->alpha_init, cfg->original_fast_init));
            if (l->gamma) P7_TRY(init_fast_weight(l->gamma, m->seed, gs, cfg->gamma_init, cfg->original_fast_init));
        } else if (cfg->bias) {
            const int64_t b[1] = {out};
            P7_TRY(new_param(m, id, "bias", 1, b, &l->bias, &bs));
        }
        int kk = is_conv ? cfg->kernel * cfg->kernel : 1;
        P7_TRY(init_weight_and_bias(m, l, ws, bs, cfg->in * kk, cfg->out * kk));
        break;
    }
    case P7_LAYER_BATCHNORM2D:
    case P7_LAYER_BE_BATCHNORM2D: {
        int be = cfg->kind == P7_LAYER_BE_BATCHNORM2D;
        const int64_t c[1] = {out}, mc[2] = {M, out};
        if (cfg->affine || be) {
            P7_TRY(new_param(m, id, "weight", be ? 2 : 1, be ? mc : c, &l->weight, &ws));
            P7_TRY(new_param(m, id, "bias", be ? 2 : 1, be ? mc : c, &l->bias, &bs));
            P7_TRY(p7_tensor_fill(l->weight, 1.0f));
            P7_TRY(p7_tensor_fill(l->bias, 0.0f));
        }
        P7_TRY(p7_tensor_create(m->device, 1, c, &l->running_mean));
        P7_TRY(p7_tensor_create(m->device, 1, c, &l->running_var));
        P7_TRY(p7_tensor_fill(l->running_mean, 0.0f));
        P7_TRY(p7_tensor_fill(l->running_var, 1.0f));
        break;
    }
    default:
        m->layer_count--;
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "layer %s: unknown kind %d", name, (int)cfg->kind);
    }
    *layer_id = id;
    return P7_SUCCESS;
}

p7_status p7_model_add_member_layers(p7_model *m, const char *name, const p7_layer_config *cfg, int *first)
{
    if (!m || !name || !cfg || !first)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_add_member_layers: NULL argument");
    if (cfg->kind != P7_LAYER_CONV2D && cfg->kind != P7_LAYER_LINEAR && cfg->kind != P7_LAYER_BATCHNORM2D)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                       "member group %s: layer kind %d; members of a group are plain layers (conv, linear, "
                       "BatchNorm), the BatchEnsemble kinds hold their members themselves", name, (int)cfg->kind);
    if (m->members > P7_ROWS_CONCAT_MAX)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "member group %s: %d members; at most %d", name, m->members,
                       P7_ROWS_CONCAT_MAX);
    for (int k = 0; k < m->members; k++) {
        char member_name[sizeof m->layers->name];
        int id;
        if (snprintf(member_name, sizeof member_name, "%s.m%d", name, k) >= (int)sizeof member_name)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "member group %s: the name is too long", name);
        P7_TRY(p7_model_add_layer(m, member_name, cfg, &id));
        m->layers[id].group_size = k == 0 ? m->members : -1;
        if (k == 0) *first = id;
    }
    return P7_SUCCESS;
}

p7_status p7_model_add_step(p7_model *m, p7_step_kind kind, int layer_id, int a, int b)
{
    if (!m) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_add_step: NULL model");
    if (kind == P7_STEP_LAYER && (layer_id < 0 || (size_t)layer_id >= m->layer_count))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_add_step: no layer %d (the model has %zu)", layer_id,
                       m->layer_count);
    if (kind == P7_STEP_MEMBER_LAYERS &&
        (layer_id < 0 || (size_t)layer_id >= m->layer_count || m->layers[layer_id].group_size < 1))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                       "p7_model_add_step: a member-layers step names a group's first layer; %d is not one", layer_id);
    if (kind < P7_STEP_LAYER || kind > P7_STEP_MEMBER_LAYERS)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_add_step: unknown step kind %d", (int)kind);
    step *grown = grow(m->steps, &m->step_capacity, m->step_count, sizeof *m->steps);
    if (!grown) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "model: out of host memory");
    m->steps = grown;
    m->steps[m->step_count++] = (step){kind, layer_id, a, b};
    return P7_SUCCESS;
}

/* Applies one layer; x is borrowed, *y is a new reference. */
static p7_status layer_forward(p7_model *m, layer *l, p7_tape *tape, p7_tensor *x, int training, p7_tensor **y)
{
    const int M = m->members;
    p7_layer_config *c = &l->cfg;
    switch (c->kind) {
    case P7_LAYER_CONV2D: return p7_conv2d(tape, x, l->weight, l->bias, c->stride, c->pad, y);
    case P7_LAYER_LINEAR: return p7_linear(tape, x, l->weight, l->bias, y);
    case P7_LAYER_BATCHNORM2D:
    case P7_LAYER_BE_BATCHNORM2D:
        return p7_batchnorm2d(tape, x, l->weight, l->bias, c->kind == P7_LAYER_BE_BATCHNORM2D ? M : 1,
                              l->running_mean, l->running_var, training, c->momentum, c->eps, y);
    case P7_LAYER_BE_CONV2D:
    case P7_LAYER_BE_LINEAR: {
        /* ((x * alpha_m) W) * gamma_m + bias_m, member by row */
        p7_tensor *h = p7_tensor_retain(x), *t = NULL;
        p7_status st = P7_SUCCESS;
        if (l->alpha) {
            st = p7_channel_mul(tape, h, l->alpha, M, &t);
            p7_tensor_release(h);
            h = t;
        }
        if (st == P7_SUCCESS) {
            st = c->kind == P7_LAYER_BE_CONV2D ? p7_conv2d(tape, h, l->weight, NULL, c->stride, c->pad, &t)
                                               : p7_linear(tape, h, l->weight, NULL, &t);
            p7_tensor_release(h);
            h = st == P7_SUCCESS ? t : NULL;
        }
        if (st == P7_SUCCESS && l->gamma) {
            st = p7_channel_mul(tape, h, l->gamma, M, &t);
            p7_tensor_release(h);
            h = st == P7_SUCCESS ? t : NULL;
        }
        if (st == P7_SUCCESS) {
            st = p7_channel_add(tape, h, l->bias, M, &t);
            p7_tensor_release(h);
            h = st == P7_SUCCESS ? t : NULL;
        }
        *y = h;
        return st;
    }
    }
    return p7_fail(P7_ERROR_STATE, "layer %s: unknown kind", l->name);
}

/* A member group: member k's layer on its rows (a = 0) or on all of x (a = 1, x shared
 * by the members), the outputs stacked member-major. x is borrowed. */
static p7_status member_layers_forward(p7_model *m, const step *s, p7_tape *tape, p7_tensor *x, int training,
                                       p7_tensor **y)
{
    const int M = m->layers[s->layer].group_size;
    const int64_t rows = s->a ? x->shape[0] : x->shape[0] / M;
    if (!s->a && x->shape[0] % M != 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "member group %s: %lld rows do not split into %d members",
                       m->layers[s->layer].name, (long long)x->shape[0], M);
    p7_tensor *outs[P7_ROWS_CONCAT_MAX] = {0};
    p7_status st = P7_SUCCESS;
    for (int k = 0; k < M && st == P7_SUCCESS; k++) {
        p7_tensor *in = NULL;
        if (s->a) in = p7_tensor_retain(x);
        else st = p7_rows_slice(tape, x, k * rows, rows, &in);
        if (st == P7_SUCCESS) st = layer_forward(m, &m->layers[s->layer + k], tape, in, training, &outs[k]);
        p7_tensor_release(in);
    }
    if (st == P7_SUCCESS) st = p7_rows_concat(tape, outs, M, y);
    for (int k = 0; k < M; k++) p7_tensor_release(outs[k]);
    return st;
}

/* What a per-layer profile calls a step: its layer's name, else the step's kind. */
static const char *step_scope(const p7_model *m, const step *s)
{
    switch (s->kind) {
    case P7_STEP_LAYER:
    case P7_STEP_MEMBER_LAYERS: return m->layers[s->layer].name;
    case P7_STEP_RELU: return "relu";
    case P7_STEP_MAXPOOL: return "maxpool";
    case P7_STEP_FLATTEN: return "flatten";
    case P7_STEP_TILE_MEMBERS: return "tile_members";
    case P7_STEP_MEMBER_MEAN: return "member_mean";
    }
    return "";
}

p7_status p7_model_forward(p7_model *m, p7_tape *tape, p7_tensor *x, int training, p7_tensor **logits)
{
    if (!m || !x || !logits) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_forward: NULL argument");
    *logits = NULL;
    /* Fused output stages only where nothing can need the separate ops' results: in
     * evaluation (running statistics) and with no tape recording. */
    const int fuse = m->fuse_eval && !training && !p7_tape_enabled(tape);
    m->fused_last = m->fused_steps_last = 0;
    p7_tensor *h = p7_tensor_retain(x);
    /* h was made by the step before (a layer or a member group) and only this loop and
     * that step's tape node hold it, and neither reads it again: a ReLU may overwrite it.
     * (Never the caller's x, never a view or a pass-through.) */
    int h_fresh = 0;
    for (size_t i = 0; i < m->step_count; i++) {
        const step *s = &m->steps[i];
        p7_tensor *next = NULL;
        p7_status st;
        /* a fused stage is named after its first step's layer (the conv it starts with) */
        p7_profile_set_scope(x->device, step_scope(m, s));
        size_t fused = 0;
        if (fuse) {
            st = nn_forward_fused(m, i, h, &next, &fused);
            if (st != P7_SUCCESS) {
                p7_profile_set_scope(x->device, NULL);
                p7_tensor_release(h);
                return st;
            }
        }
        if (fused) {
            p7_tensor_release(h);
            h = next;
            h_fresh = 0;
            i += fused - 1;
            m->fused_last++;
            m->fused_steps_last += fused;
            continue;
        }
        switch (s->kind) {
        case P7_STEP_LAYER: st = layer_forward(m, &m->layers[s->layer], tape, h, training, &next); break;
        case P7_STEP_RELU: st = h_fresh ? p7_relu_inplace(tape, h, &next) : p7_relu(tape, h, &next); break;
        case P7_STEP_MAXPOOL: st = p7_maxpool2d(tape, h, s->a, s->b, &next); break;
        case P7_STEP_FLATTEN: st = p7_flatten(tape, h, &next); break;
        case P7_STEP_TILE_MEMBERS:
            st = m->members > 1 ? p7_tile_members(tape, h, m->members, &next) : P7_SUCCESS;
            if (m->members == 1) next = p7_tensor_retain(h);
            break;
        case P7_STEP_MEMBER_LAYERS: st = member_layers_forward(m, s, tape, h, training, &next); break;
        case P7_STEP_MEMBER_MEAN:
            if ((training && !s->a) || m->members == 1) {
                st = P7_SUCCESS;
                next = p7_tensor_retain(h);
            } else {
                st = p7_member_mean(tape, h, m->members, &next);
            }
            break;
        default: st = p7_fail(P7_ERROR_STATE, "model: unknown step %d", (int)s->kind);
        }
        p7_tensor_release(h);
        if (st != P7_SUCCESS) { p7_profile_set_scope(x->device, NULL); return st; }
        h = next;
        h_fresh = s->kind == P7_STEP_LAYER || s->kind == P7_STEP_MEMBER_LAYERS;
    }
    p7_profile_set_scope(x->device, NULL);
    *logits = h;
    return P7_SUCCESS;
}

int p7_model_members(const p7_model *m) { return m ? m->members : 0; }

void p7_model_set_fusion(p7_model *m, int enabled)
{
    if (m) m->fuse_eval = enabled != 0;
}

int p7_model_fusion(const p7_model *m) { return m ? m->fuse_eval : 0; }

p7_output_rule p7_model_output_rule(const p7_model *m)
{
    for (size_t i = 0; m && m->members > 1 && i < m->step_count; i++)
        if (m->steps[i].kind == P7_STEP_MEMBER_MEAN)
            return m->steps[i].a ? P7_OUTPUT_MEAN_LOGITS : P7_OUTPUT_MEMBER_LOGITS_EVAL_MEAN;
    return P7_OUTPUT_MEMBER_LOGITS;
}

int p7_model_output_members(const p7_model *m, int training)
{
    if (!m) return 0;
    switch (p7_model_output_rule(m)) {
    case P7_OUTPUT_MEAN_LOGITS: return 1;
    case P7_OUTPUT_MEMBER_LOGITS_EVAL_MEAN: return training ? m->members : 1;
    default: return m->members;
    }
}
size_t p7_model_param_count(const p7_model *m) { return m ? m->param_count : 0; }

p7_tensor *p7_model_param(const p7_model *m, size_t index, const char **name)
{
    if (!m || index >= m->param_count) return NULL;
    if (name) *name = m->params[index].name;
    return m->params[index].tensor;
}

p7_status p7_model_count_params(const p7_model *m, p7_param_counts *out)
{
    if (!m || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_count_params: NULL argument");
    memset(out, 0, sizeof *out);
    unsigned *uses = calloc(m->layer_count ? m->layer_count : 1, sizeof *uses);
    if (!uses) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_model_count_params: out of host memory");
    for (size_t i = 0; i < m->step_count; i++) {
        const step *s = &m->steps[i];
        if (s->kind == P7_STEP_LAYER) uses[s->layer]++;
        if (s->kind == P7_STEP_MEMBER_LAYERS)
            for (int k = 0; k < m->layers[s->layer].group_size; k++) uses[s->layer + k]++;
    }
    for (size_t i = 0; i < m->param_count; i++) {
        uint64_t n = p7_tensor_numel(m->params[i].tensor);
        unsigned u = uses[m->params[i].layer];
        out->unique += n;
        out->tensors_unique++;
        if (u >= 1) { out->used += n; out->tensors_used++; }
        if (u >= 2) { out->shared += n; out->tensors_shared++; }
    }
    free(uses);
    return P7_SUCCESS;
}

void p7_model_zero_grad(p7_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->param_count; i++) p7_tensor_zero_grad(m->params[i].tensor);
}

size_t p7_model_buffer_count(const p7_model *m)
{
    size_t n = 0;
    for (size_t i = 0; m && i < m->layer_count; i++) n += m->layers[i].running_mean ? 2 : 0;
    return n;
}

p7_tensor *p7_model_buffer(const p7_model *m, size_t index, const char **name)
{
    static _Thread_local char label[64 + 16];
    for (size_t i = 0; m && i < m->layer_count; i++) {
        const layer *l = &m->layers[i];
        if (!l->running_mean) continue;
        if (index < 2) {
            snprintf(label, sizeof label, "%s.%s", l->name, index == 0 ? "running_mean" : "running_var");
            if (name) *name = label;
            return index == 0 ? l->running_mean : l->running_var;
        }
        index -= 2;
    }
    return NULL;
}

p7_tensor *p7_model_find_buffer(const p7_model *m, const char *name)
{
    if (!m || !name) return NULL;
    for (size_t i = 0; i < m->layer_count; i++) {
        const layer *l = &m->layers[i];
        size_t n = strlen(l->name);
        if (strncmp(name, l->name, n) != 0 || name[n] != '.') continue;
        if (strcmp(name + n + 1, "running_mean") == 0) return l->running_mean;
        if (strcmp(name + n + 1, "running_var") == 0) return l->running_var;
    }
    return NULL;
}

int p7_model_has_batch_statistics(const p7_model *model)
{
    if (!model) return 0;
    for (size_t i = 0; i < model->layer_count; i++)
        if (model->layers[i].cfg.kind == P7_LAYER_BATCHNORM2D || model->layers[i].cfg.kind == P7_LAYER_BE_BATCHNORM2D)
            return 1;
    return 0;
}
