/* The VGG11 family as plans: VGG11, ComplexCNN (VGG11 convs and a 512-unit hidden
 * layer), the 10-conv within-sharing layout, and the between-member presets. */
#include <stdio.h>

#include "nn/nn_zoo_internal.h"

/* Channels per conv, 0 = a 2x2 max-pool. */
static const int vgg11_plan[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
/* seed-study 6.3 version 2's "none" network: two 256->256 convs and a 64->64 one */
static const int vgg11_10conv_plan[] = {64, 64, 0, 128, 0, 256, 256, 256, 0, 512, 512, 0, 512, 512, 0};

p7_status zoo_plan_vgg(const p7_network_config *c, int ten_conv, int hidden, zoo_plan *p)
{
    const int *plan = ten_conv ? vgg11_10conv_plan : vgg11_plan;
    const size_t n = ten_conv ? sizeof vgg11_10conv_plan / sizeof *plan : sizeof vgg11_plan / sizeof *plan;
    const int be = p->members > 1 && p->kind == P7_MEMBERS_BATCHENSEMBLE;
    /* ComplexCNN has no BN as a single network and BN as a BatchEnsemble (as the original) */
    const int bn = c->batchnorm >= 0 ? c->batchnorm : (hidden > 0 && be);
    const p7_weight_init init =
        be && (c->faithful & P7_FAITHFUL_BE_KAIMING_INIT) ? P7_INIT_KAIMING_NORMAL_FAN_OUT : P7_INIT_PYTORCH_DEFAULT;
    int in = 3, conv = 0;
    for (size_t i = 0; i < n; i++) {
        if (!plan[i]) {
            P7_TRY(zoo_add_item(p, (zoo_item){.kind = ZOO_POOL}));
            continue;
        }
        zoo_item it = {.kind = ZOO_CONV, .in = in, .out = zoo_width(c, plan[i]), .bn = bn, .relu = 1, .tie = -1,
                       .init = init};
        snprintf(it.name, sizeof it.name, "conv%d", ++conv);
        P7_TRY(zoo_add_item(p, it));
        in = it.out;
    }
    P7_TRY(zoo_add_item(p, (zoo_item){.kind = ZOO_FLATTEN}));
    if (hidden > 0) {
        const int h = zoo_width(c, hidden);
        P7_TRY(zoo_add_item(p, (zoo_item){.kind = ZOO_LINEAR, .name = "fc1", .in = in, .out = h, .relu = 1, .tie = -1,
                                          .init = init}));
        return zoo_add_item(p, (zoo_item){.kind = ZOO_LINEAR, .name = "fc2", .in = h, .out = c->classes, .tie = -1,
                                          .init = init});
    }
    return zoo_add_item(p, (zoo_item){.kind = ZOO_LINEAR, .name = "fc", .in = in, .out = c->classes, .tie = -1,
                                      .init = init});
}

/* early: the first two stages (every conv before the second pool, and the pools) run
 * once for all members; deep: every conv after it; the classifier stays per member. */
p7_status zoo_apply_between(const p7_network_config *c, zoo_plan *p)
{
    if (c->between == P7_SHARE_NONE || c->between == P7_SHARE_ALL) return P7_SUCCESS;
    for (int i = 0; i < p->count; i++) {
        zoo_item *it = &p->items[i];
        if (it->kind != ZOO_CONV) continue;
        const int early = it->stage <= 1;
        if ((c->between == P7_SHARE_EARLY) == early) it->part = ZOO_SHARED;
    }
    return P7_SUCCESS;
}
