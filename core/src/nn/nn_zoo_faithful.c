/* The original notebooks' sharing modules, as they were (seed-study 6.2-6.5, 7; bugs
 * B11-B13), for --faithful: VGG11SharedWeights builds three shared convs whatever the
 * option and uses some of them; VGG11ParameterSharing and VGG11CombinedSharing give
 * every head the same conv objects, so the "members" are one trunk with linear heads
 * whose logits are averaged. Modules the original built but never called are layers
 * that no step applies: the unique count includes them, the used count does not. Each
 * layer the original's count_parameters_* called shared is marked, so
 * p7_model_printed_counts gives the numbers the notebooks printed. PyTorch default init,
 * except the CIFAR-20 combined cells' explicit init (switch explicit-init). */
#include <stdio.h>
#include <string.h>

#include "nn/nn_model_internal.h"
#include "nn/nn_zoo_internal.h"

typedef struct fconv { const char *name; int in, out, pool_after; } fconv;

/* PyTorch's default init, except in the CIFAR-20 notebook's combined cells (seed-study 7,
 * cell 0), which initialise explicitly (_initialize_weights; its per-head reseeding only
 * rewrote the same aliased tensors). */
static int explicit_init(const p7_network_config *nc)
{
    return nc->sharing == P7_SHARING_COMBINED && nc->classes == 20 && (nc->faithful & P7_FAITHFUL_EXPLICIT_INIT);
}

static p7_status conv_layer(p7_model *m, const p7_network_config *nc, const char *name, int in, int out,
                            int printed_shared, int *id)
{
    p7_layer_config c = {.kind = P7_LAYER_CONV2D, .in = in, .out = out, .kernel = 3, .stride = 1, .pad = 1, .bias = 1,
                         .init = explicit_init(nc) ? P7_INIT_KAIMING_NORMAL_FAN_OUT : P7_INIT_PYTORCH_DEFAULT};
    P7_TRY(p7_model_add_layer(m, name, &c, id));
    m->layers[*id].printed_shared = printed_shared;
    return P7_SUCCESS;
}

static p7_status linear_layer(p7_model *m, const p7_network_config *nc, const char *name, int in, int out,
                              int printed_shared, int *id)
{
    p7_layer_config c = {.kind = P7_LAYER_LINEAR, .in = in, .out = out, .bias = 1,
                         .init = explicit_init(nc) ? P7_INIT_NORMAL_STD_0_01 : P7_INIT_PYTORCH_DEFAULT};
    P7_TRY(p7_model_add_layer(m, name, &c, id));
    m->layers[*id].printed_shared = printed_shared;
    return P7_SUCCESS;
}

static p7_status conv_step(p7_model *m, int id, int pool_after)
{
    P7_TRY(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
    P7_TRY(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    return pool_after ? p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2) : P7_SUCCESS;
}

enum { SC64, SC256, SC512, SC_COUNT };
static const char *const sc_names[SC_COUNT] = {"shared_conv_64", "shared_conv_256", "shared_conv_512"};
static const int sc_channels[SC_COUNT] = {64, 256, 512};

/* The three intra-shared convs, always built; `named` marks the ones the option names. */
static p7_status shared_convs(p7_model *m, const p7_network_config *c, p7_share option, int ids[SC_COUNT])
{
    for (int k = 0; k < SC_COUNT; k++) {
        const int named = (k == SC64 && (option == P7_SHARE_EARLY || option == P7_SHARE_ALL)) ||
                          (k != SC64 && (option == P7_SHARE_DEEP || option == P7_SHARE_ALL));
        P7_TRY(conv_layer(m, c, sc_names[k], sc_channels[k], sc_channels[k], named, &ids[k]));
    }
    return P7_SUCCESS;
}

/* ---- 6.2 (v1, 9 convs) and 6.3 (v2, 10 convs): VGG11SharedWeights ---- */

/* which shared conv replaces conv i under early (e) and deep (d); -1: none */
typedef struct within_conv { fconv conv; int early, deep; } within_conv;

static const within_conv within_v1[] = {
    {{"conv1", 3, 64, 0}, -1, -1},      {{"conv2", 64, 64, 1}, SC64, -1},    {{"conv3", 64, 128, 1}, -1, -1},
    {{"conv4", 128, 256, 0}, -1, -1},   {{"conv5", 256, 256, 1}, -1, SC256}, {{"conv6", 256, 512, 0}, -1, -1},
    {{"conv7", 512, 512, 1}, -1, SC512}, {{"conv8", 512, 512, 0}, -1, SC512}, {{"conv9", 512, 512, 1}, -1, SC512}};
static const within_conv within_v2[] = {
    {{"conv1", 3, 64, 0}, -1, -1},       {{"conv2", 64, 64, 1}, SC64, -1},     {{"conv3", 64, 128, 1}, -1, -1},
    {{"conv4", 128, 256, 0}, -1, -1},    {{"conv5", 256, 256, 0}, -1, SC256},  {{"conv6", 256, 256, 1}, -1, SC256},
    {{"conv7", 256, 512, 0}, -1, -1},    {{"conv8", 512, 512, 1}, -1, SC512},  {{"conv9", 512, 512, 0}, -1, SC512},
    {{"conv10", 512, 512, 1}, -1, SC512}};

static p7_status build_within(p7_model *m, const p7_network_config *c)
{
    const int v2 = c->arch == P7_ARCH_VGG11_10CONV;
    const within_conv *convs = v2 ? within_v2 : within_v1;
    const int n = v2 ? (int)(sizeof within_v2 / sizeof *within_v2) : (int)(sizeof within_v1 / sizeof *within_v1);
    const p7_share o = c->within;
    int sc[SC_COUNT], ids[16];
    for (int i = 0; i < n; i++) {
        const int e = o == P7_SHARE_EARLY || o == P7_SHARE_ALL ? convs[i].early : -1;
        const int d = o == P7_SHARE_DEEP || o == P7_SHARE_ALL ? convs[i].deep : -1;
        ids[i] = e >= 0 ? -1 - e : d >= 0 ? -1 - d : 0; /* replaced: -1 - the shared conv */
        if (!ids[i]) P7_TRY(conv_layer(m, c, convs[i].conv.name, convs[i].conv.in, convs[i].conv.out, 0, &ids[i]));
    }
    P7_TRY(shared_convs(m, c, o, sc));
    if (v2 && c->original_cell == 3) {
        int unused;
        P7_TRY(conv_layer(m, c, "shared_conv_128", 128, 128, 0, &unused));
    }
    for (int i = 0; i < n; i++) P7_TRY(conv_step(m, ids[i] < 0 ? sc[-1 - ids[i]] : ids[i], convs[i].conv.pool_after));
    int fc;
    P7_TRY(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
    P7_TRY(linear_layer(m, c, "fc", 512, c->classes, 0, &fc));
    return p7_model_add_step(m, P7_STEP_LAYER, fc, 0, 0);
}

/* ---- the heads of 6.4 / 6.5: one trunk, a linear head per member, mean of logits ---- */

static p7_status heads(p7_model *m, const p7_network_config *c, int members, int all, int all_has_heads)
{
    P7_TRY(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
    int id;
    if (!all) {
        p7_layer_config h = {.kind = P7_LAYER_LINEAR, .in = 512, .out = c->classes, .bias = 1,
                             .init = explicit_init(c) ? P7_INIT_NORMAL_STD_0_01 : P7_INIT_PYTORCH_DEFAULT};
        P7_TRY(p7_model_add_member_layers(m, "head", &h, &id));
        P7_TRY(p7_model_add_step(m, P7_STEP_MEMBER_LAYERS, id, 1, 0));
        return p7_model_add_step(m, P7_STEP_MEMBER_MEAN, 0, 1, 0);
    }
    /* all: the shared classifier answers; the heads exist, are counted, and get no gradient */
    P7_TRY(linear_layer(m, c, "classifier", 512, c->classes, 1, &id));
    P7_TRY(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
    for (int k = 0; all_has_heads && k < members; k++) {
        char name[24];
        snprintf(name, sizeof name, "head.m%d", k);
        P7_TRY(linear_layer(m, c, name, 512, c->classes, 0, &id));
    }
    return P7_SUCCESS;
}

/* ---- 6.4: VGG11ParameterSharing ---- */

static const fconv vgg11_convs[] = {{"conv1", 3, 64, 1},    {"conv2", 64, 128, 1},  {"conv3", 128, 256, 0},
                                    {"conv4", 256, 256, 1}, {"conv5", 256, 512, 0}, {"conv6", 512, 512, 1},
                                    {"conv7", 512, 512, 0}, {"conv8", 512, 512, 1}};

static p7_status build_between(p7_model *m, const p7_network_config *c, int members)
{
    const p7_share o = c->between;
    for (int i = 0; i < 8; i++) {
        const int shared = o == P7_SHARE_ALL || (o == P7_SHARE_EARLY && i < 2) || (o == P7_SHARE_DEEP && i >= 2);
        int id;
        P7_TRY(conv_layer(m, c, vgg11_convs[i].name, vgg11_convs[i].in, vgg11_convs[i].out, shared, &id));
        P7_TRY(conv_step(m, id, vgg11_convs[i].pool_after));
    }
    return heads(m, c, members, o == P7_SHARE_ALL, 1);
}

/* ---- 6.5: VGG11CombinedSharing ---- */

typedef struct combined_conv { fconv conv; int inter_early, intra_early, intra_deep; } combined_conv;

static const combined_conv combined[] = {
    {{"conv1_1", 3, 64, 0}, 1, -1, -1},     {{"conv1_2", 64, 64, 1}, 1, SC64, -1},
    {{"conv2_1", 64, 128, 1}, 0, -1, -1},   {{"conv3_1", 128, 256, 0}, 0, -1, -1},
    {{"conv4_1", 256, 256, 1}, 0, -1, SC256}, {{"conv5_1", 256, 512, 0}, 0, -1, -1},
    {{"conv6_1", 512, 512, 1}, 0, -1, SC512}, {{"conv7_1", 512, 512, 0}, 0, -1, SC512},
    {{"conv8_1", 512, 512, 1}, 0, -1, SC512}};

static p7_status build_combined(p7_model *m, const p7_network_config *c, int members)
{
    const p7_share inter = c->between, intra = c->within;
    const int n = (int)(sizeof combined / sizeof *combined);
    int ids[16], sc[SC_COUNT];
    for (int i = 0; i < n; i++) {
        const combined_conv *k = &combined[i];
        const int shared = inter == P7_SHARE_ALL || (inter == P7_SHARE_EARLY && k->inter_early) ||
                           (inter == P7_SHARE_DEEP && !k->inter_early);
        P7_TRY(conv_layer(m, c, k->conv.name, k->conv.in, k->conv.out, shared, &ids[i]));
    }
    P7_TRY(shared_convs(m, c, intra, sc));
    for (int i = 0; i < n; i++) {
        const combined_conv *k = &combined[i];
        const int inter_shared = m->layers[ids[i]].printed_shared;
        /* intra sharing swaps only layers the heads build themselves (not inter-shared) */
        int use = ids[i];
        if (!inter_shared && (intra == P7_SHARE_EARLY || intra == P7_SHARE_ALL) && k->intra_early >= 0)
            use = sc[k->intra_early];
        if (!inter_shared && (intra == P7_SHARE_DEEP || intra == P7_SHARE_ALL) && k->intra_deep >= 0)
            use = sc[k->intra_deep];
        P7_TRY(conv_step(m, use, k->conv.pool_after));
    }
    return heads(m, c, members, inter == P7_SHARE_ALL, c->original_cell != 4);
}

p7_status zoo_build_faithful_sharing(p7_device *device, const p7_network_config *c, uint64_t seed, p7_model **out,
                                     int *handled)
{
    *handled = 0;
    const int within = c->sharing == P7_SHARING_WITHIN && (c->faithful & P7_FAITHFUL_WITHIN_ORIGINAL);
    const int between = c->sharing == P7_SHARING_BETWEEN && (c->faithful & P7_FAITHFUL_ALIASED_MEMBERS);
    const int comb = c->sharing == P7_SHARING_COMBINED && (c->faithful & P7_FAITHFUL_ALIASED_MEMBERS);
    if (!within && !between && !comb) return P7_SUCCESS;
    *handled = 1;
    if (within && (c->members > 1 || c->between != P7_SHARE_NONE))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: the original within-sharing model is one network "
                                                  "(members %d, between %s)", c->members, p7_share_name(c->between));
    if (within && c->arch != P7_ARCH_VGG11 && c->arch != P7_ARCH_VGG11_10CONV)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: the original within-sharing model is VGG11 (6.2) or "
                                                  "VGG11 with 10 convs (6.3), not %s", p7_arch_name(c->arch));
    if (c->width > 0.0f && c->width != 1.0f)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: the original sharing modules come at full width only");
    if (!within && c->member_kind == P7_MEMBERS_BATCHENSEMBLE)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: the original sharing ensembles have no BatchEnsemble "
                                                  "members");
    const int members = within ? 1 : c->members >= 2 ? c->members : 8;
    const int one = within || c->between == P7_SHARE_ALL;
    P7_TRY(p7_model_create(device, one ? 1 : members, seed, out));
    p7_model *m = *out;
    m->has_printed_counts = 1;
    p7_status st = within ? build_within(m, c) : between ? build_between(m, c, members) : build_combined(m, c, members);
    if (st != P7_SUCCESS) {
        p7_model_destroy(m);
        *out = NULL;
    }
    return st;
}
