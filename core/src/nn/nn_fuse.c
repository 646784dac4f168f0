/* The evaluation forward's fused output stages (nn_model_internal.h).
 *
 * In evaluation a BatchNorm is a per-channel affine of its running statistics, so
 * conv -> BatchNorm -> ReLU (-> max pooling) is one convolution whose output stage
 * applies max(0, T * scale + shift) and pools: one pass over the activation instead
 * of three or four. The BatchEnsemble conv's per-member gamma and bias join the same
 * stage (its alpha goes into the im2col), and member groups (conv group -> BatchNorm
 * group -> ReLU) run it per member. Matching walks the step program; anything else
 * runs the separate ops. Nothing here records on a tape: p7_model_forward calls it
 * only when nothing records. */
#include "nn/nn_model_internal.h"
#include "ops/fused_internal.h"
#include "p7/ops.h"

static int is_conv(const layer *l) { return l->cfg.kind == P7_LAYER_CONV2D || l->cfg.kind == P7_LAYER_BE_CONV2D; }
static int is_bn(const layer *l)
{
    return l->cfg.kind == P7_LAYER_BATCHNORM2D || l->cfg.kind == P7_LAYER_BE_BATCHNORM2D;
}

/* What one fused stage covers: a conv (or conv group), the BatchNorm (group) after
 * it if any, a ReLU if any, a max pooling if any, and how many steps of the program
 * that is. */
typedef struct fusion {
    int conv, bn; /* layer ids; bn -1 when absent */
    int relu;
    int pool_k, pool_s; /* 0: no pooling */
    size_t steps;
} fusion;

static int is_layer_step(const p7_model *m, size_t i, int (*kind)(const layer *))
{
    return i < m->step_count && m->steps[i].kind == P7_STEP_LAYER && kind(&m->layers[m->steps[i].layer]);
}

/* A member-group step (on the members' rows when `own_rows`) whose layers are `kind`. */
static int is_group_step(const p7_model *m, size_t i, int (*kind)(const layer *), int own_rows)
{
    return i < m->step_count && m->steps[i].kind == P7_STEP_MEMBER_LAYERS && (!own_rows || m->steps[i].a == 0) &&
           kind(&m->layers[m->steps[i].layer]);
}

static int match(const p7_model *m, size_t i, fusion *f)
{
    const step *s = &m->steps[i];
    f->bn = -1;
    f->relu = f->pool_k = f->pool_s = 0;
    size_t j = i + 1;
    if (is_layer_step(m, i, is_conv)) {
        if (is_layer_step(m, j, is_bn)) f->bn = m->steps[j++].layer;
    } else if (is_group_step(m, i, is_conv, 0)) {
        if (is_group_step(m, j, is_bn, 1) &&
            m->layers[m->steps[j].layer].group_size == m->layers[s->layer].group_size)
            f->bn = m->steps[j++].layer;
    } else {
        return 0;
    }
    if (j < m->step_count && m->steps[j].kind == P7_STEP_RELU) {
        f->relu = 1;
        j++;
    }
    /* Pooling is per image and per channel, so it commutes with the member groups'
     * stacking; the stage pools each output plane before writing it. */
    if (j < m->step_count && m->steps[j].kind == P7_STEP_MAXPOOL && m->steps[j].a >= 1 && m->steps[j].b >= 1) {
        f->pool_k = m->steps[j].a;
        f->pool_s = m->steps[j].b;
        j++;
    }
    f->conv = s->layer;
    f->steps = j - i;
    /* A lone plain conv already adds its bias in the unfold pass: nothing to gain. A
     * lone BatchEnsemble conv saves its scaling and bias passes. */
    return f->bn >= 0 || f->relu || f->pool_k || m->layers[f->conv].cfg.kind == P7_LAYER_BE_CONV2D;
}

/* One conv layer with its stage (bn NULL when none); x is borrowed, *y a new tensor.
 * Per-member vectors split the rows into the model's M members when the conv or the
 * BatchNorm is a BatchEnsemble layer; plain layers' vectors are shared. */
static p7_status conv_stage(const p7_model *m, const layer *conv, const layer *bn, const fusion *f, p7_tensor *x,
                            p7_tensor **y)
{
    const p7_layer_config *c = &conv->cfg;
    const int be_conv = c->kind == P7_LAYER_BE_CONV2D;
    const int be_bn = bn && bn->cfg.kind == P7_LAYER_BE_BATCHNORM2D;
    p7_conv_output_stage stage = {.members = be_conv || be_bn ? m->members : 1, .relu = f->relu,
                                  .pool_k = f->pool_k, .pool_s = f->pool_s};
    stage.scale = be_conv ? conv->gamma : NULL;
    stage.shift = conv->bias;
    if (bn) {
        stage.bn_mean = bn->running_mean;
        stage.bn_var = bn->running_var;
        stage.bn_weight = bn->weight;
        stage.bn_bias = bn->bias;
        stage.bn_eps = bn->cfg.eps;
    }
    if (x->ndim != 4)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "layer %s: a convolution needs a 4-d input, got %d axes", conv->name,
                       x->ndim);
    const int64_t k = conv->weight->shape[2];
    int64_t oh = (x->shape[2] + 2 * c->pad - k) / c->stride + 1;
    int64_t ow = (x->shape[3] + 2 * c->pad - k) / c->stride + 1;
    if (oh < 1 || ow < 1)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "layer %s: a %lldx%lld kernel does not fit a %lldx%lld input",
                       conv->name, (long long)k, (long long)k, (long long)x->shape[2], (long long)x->shape[3]);
    if (f->pool_k) {
        if (oh < f->pool_k || ow < f->pool_k)
            return p7_fail(P7_ERROR_INVALID_SHAPE, "layer %s: a %dx%d pooling does not fit its %lldx%lld output",
                           conv->name, f->pool_k, f->pool_k, (long long)oh, (long long)ow);
        oh = (oh - f->pool_k) / f->pool_s + 1;
        ow = (ow - f->pool_k) / f->pool_s + 1;
    }

    /* The BatchEnsemble input scaling goes into the im2col (or a pass before it). */
    stage.in_scale = be_conv ? conv->alpha : NULL;
    p7_tensor *out = NULL;
    const int64_t shape[4] = {x->shape[0], conv->weight->shape[0], oh, ow};
    p7_status st = p7_tensor_create(m->device, 4, shape, &out);
    if (st == P7_SUCCESS) st = p7_conv2d_forward_stage(x, conv->weight, c->stride, c->pad, &stage, out);
    if (st != P7_SUCCESS) {
        p7_tensor_release(out);
        return st;
    }
    *y = out;
    return P7_SUCCESS;
}

/* The member groups' form: member k's conv and BatchNorm on its rows (or on all of x
 * when the conv group reads a shared trunk), the outputs stacked member-major. */
static p7_status group_stage(const p7_model *m, const step *s, const fusion *f, p7_tensor *x, p7_tensor **y)
{
    const int M = m->layers[f->conv].group_size;
    const int64_t rows = s->a ? x->shape[0] : x->shape[0] / M;
    if (!s->a && x->shape[0] % M != 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "member group %s: %lld rows do not split into %d members",
                       m->layers[f->conv].name, (long long)x->shape[0], M);
    p7_tensor *outs[P7_ROWS_CONCAT_MAX] = {0};
    p7_status st = P7_SUCCESS;
    for (int k = 0; k < M && st == P7_SUCCESS; k++) {
        p7_tensor *in = NULL;
        if (s->a) in = p7_tensor_retain(x);
        else st = p7_rows_slice(NULL, x, k * rows, rows, &in);
        if (st == P7_SUCCESS)
            st = conv_stage(m, &m->layers[f->conv + k], f->bn >= 0 ? &m->layers[f->bn + k] : NULL, f, in,
                            &outs[k]);
        p7_tensor_release(in);
    }
    if (st == P7_SUCCESS) st = p7_rows_concat(NULL, outs, M, y);
    for (int k = 0; k < M; k++) p7_tensor_release(outs[k]);
    return st;
}

p7_status nn_forward_fused(p7_model *m, size_t i, p7_tensor *x, p7_tensor **y, size_t *steps)
{
    *steps = 0;
    *y = NULL;
    fusion f;
    if (!match(m, i, &f)) return P7_SUCCESS;
    const step *s = &m->steps[i];
    const layer *bn = f.bn >= 0 ? &m->layers[f.bn] : NULL;
    P7_TRY(s->kind == P7_STEP_MEMBER_LAYERS ? group_stage(m, s, &f, x, y)
                                            : conv_stage(m, &m->layers[f.conv], bn, &f, x, y));
    *steps = f.steps;
    return P7_SUCCESS;
}
