/* The networks of the studies, built from layers and steps (p7/nn.h). */
#include <stdio.h>

#include "tensor/tensor_internal.h"
#include "p7/nn.h"

static p7_status add(p7_model *m, const char *name, p7_layer_config c, int *id)
{
    return p7_model_add_layer(m, name, &c, id);
}

/* conv -> [BN] -> ReLU, plain or BatchEnsemble. Plain convs keep their bias before
 * BatchNorm, as nn.Conv2d does by default in the original study (its parameter
 * counts include them). */
static p7_status conv_block(p7_model *m, int index, int in, int out, int bn, int members, p7_weight_init init,
                            float alpha, float gamma)
{
    char name[32];
    int be = members > 1, id;
    snprintf(name, sizeof name, "conv%d", index);
    P7_TRY(add(m, name,
               (p7_layer_config){.kind = be ? P7_LAYER_BE_CONV2D : P7_LAYER_CONV2D, .in = in, .out = out, .kernel = 3,
                                 .stride = 1, .pad = 1, .bias = 1, .init = init, .has_alpha = 1, .has_gamma = 1,
                                 .alpha_init = alpha, .gamma_init = gamma},
               &id));
    P7_TRY(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
    if (bn) {
        snprintf(name, sizeof name, "bn%d", index);
        P7_TRY(add(m, name,
                   (p7_layer_config){.kind = be ? P7_LAYER_BE_BATCHNORM2D : P7_LAYER_BATCHNORM2D, .in = out, .out = out,
                                     .affine = 1},
                   &id));
        P7_TRY(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
    }
    return p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0);
}

static p7_status linear(p7_model *m, const char *name, int in, int out, int members, p7_weight_init init,
                        float alpha, float gamma)
{
    int id, be = members > 1;
    P7_TRY(add(m, name,
               (p7_layer_config){.kind = be ? P7_LAYER_BE_LINEAR : P7_LAYER_LINEAR, .in = in, .out = out, .bias = 1,
                                 .init = init, .has_alpha = 1, .has_gamma = 1, .alpha_init = alpha,
                                 .gamma_init = gamma},
               &id));
    return p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0);
}

static p7_status build_vgg11(p7_model *m, const p7_vgg_options *o)
{
    /* 64-M-128-M-256-256-M-512-512-M-512-512-M */
    static const int plan[] = {64, -1, 128, -1, 256, 256, -1, 512, 512, -1, 512, 512, -1};
    int in = 3, conv = 1;
    P7_TRY(p7_model_add_step(m, P7_STEP_TILE_MEMBERS, 0, 0, 0));
    for (size_t i = 0; i < sizeof plan / sizeof *plan; i++) {
        if (plan[i] < 0) {
            P7_TRY(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
            continue;
        }
        P7_TRY(conv_block(m, conv++, in, plan[i], o->batchnorm, o->members, o->init, o->alpha_init, o->gamma_init));
        in = plan[i];
    }
    P7_TRY(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
    if (o->hidden > 0) {
        P7_TRY(linear(m, "fc1", 512, o->hidden, o->members, o->init, o->alpha_init, o->gamma_init));
        P7_TRY(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
        P7_TRY(linear(m, "fc2", o->hidden, o->classes, o->members, o->init, o->alpha_init, o->gamma_init));
    } else {
        P7_TRY(linear(m, "fc", 512, o->classes, o->members, o->init, o->alpha_init, o->gamma_init));
    }
    return p7_model_add_step(m, P7_STEP_MEMBER_MEAN, 0, 0, 0);
}

p7_status p7_model_vgg11(p7_device *device, const p7_vgg_options *options, uint64_t seed, p7_model **out)
{
    if (!options || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_vgg11: NULL argument");
    if (options->classes < 2)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_vgg11: %d classes; expected >= 2", options->classes);
    P7_TRY(p7_model_create(device, options->members < 1 ? 1 : options->members, seed, out));
    p7_status st = build_vgg11(*out, options);
    if (st != P7_SUCCESS) {
        p7_model_destroy(*out);
        *out = NULL;
    }
    return st;
}

static p7_status build_simple_cnn(p7_model *m, int members, int classes, float alpha, float gamma)
{
    p7_weight_init init = members > 1 ? P7_INIT_KAIMING_NORMAL_FAN_OUT : P7_INIT_PYTORCH_DEFAULT;
    P7_TRY(p7_model_add_step(m, P7_STEP_TILE_MEMBERS, 0, 0, 0));
    P7_TRY(conv_block(m, 1, 3, 32, 1, members, init, alpha, gamma));
    P7_TRY(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
    P7_TRY(conv_block(m, 2, 32, 64, 1, members, init, alpha, gamma));
    P7_TRY(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
    P7_TRY(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
    P7_TRY(linear(m, "fc", 64 * 8 * 8, classes, members, init, alpha, gamma));
    return p7_model_add_step(m, P7_STEP_MEMBER_MEAN, 0, 0, 0);
}

p7_status p7_model_simple_cnn(p7_device *device, int members, int classes, float alpha_init, float gamma_init,
                              uint64_t seed, p7_model **out)
{
    if (!out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_simple_cnn: NULL output");
    P7_TRY(p7_model_create(device, members < 1 ? 1 : members, seed, out));
    p7_status st = build_simple_cnn(*out, members < 1 ? 1 : members, classes, alpha_init, gamma_init);
    if (st != P7_SUCCESS) {
        p7_model_destroy(*out);
        *out = NULL;
    }
    return st;
}
