/* SimpleCNN and the heads model (seed-study 3.1-3.4) as plans. */
#include <stdio.h>

#include "nn/nn_zoo_internal.h"

/* conv(3-32)-BN-ReLU-pool-conv(32-64)-BN-ReLU-pool-flatten, every layer in `part`. */
static p7_status simple_trunk(const p7_network_config *c, zoo_plan *p, zoo_part part, p7_weight_init init)
{
    const int bn = c->batchnorm < 0 ? 1 : c->batchnorm, c1 = zoo_width(c, 32), c2 = zoo_width(c, 64);
    P7_TRY(zoo_add_item(p, (zoo_item){.kind = ZOO_CONV, .name = "conv1", .in = 3, .out = c1, .bn = bn, .relu = 1,
                                      .part = part, .tie = -1, .init = init}));
    P7_TRY(zoo_add_item(p, (zoo_item){.kind = ZOO_POOL}));
    P7_TRY(zoo_add_item(p, (zoo_item){.kind = ZOO_CONV, .name = "conv2", .in = c1, .out = c2, .bn = bn, .relu = 1,
                                      .part = part, .tie = -1, .init = init}));
    P7_TRY(zoo_add_item(p, (zoo_item){.kind = ZOO_POOL}));
    return zoo_add_item(p, (zoo_item){.kind = ZOO_FLATTEN});
}

static p7_weight_init be_init(const p7_network_config *c, const zoo_plan *p)
{
    return p->members > 1 && p->kind == P7_MEMBERS_BATCHENSEMBLE && (c->faithful & P7_FAITHFUL_BE_KAIMING_INIT)
               ? P7_INIT_KAIMING_NORMAL_FAN_OUT
               : P7_INIT_PYTORCH_DEFAULT;
}

p7_status zoo_plan_simple(const p7_network_config *c, zoo_plan *p)
{
    const p7_weight_init init = be_init(c, p);
    P7_TRY(simple_trunk(c, p, ZOO_PER_MEMBER, init));
    return zoo_add_item(p, (zoo_item){.kind = ZOO_LINEAR, .name = "fc", .in = zoo_width(c, 64) * 8 * 8,
                                      .out = c->classes, .part = ZOO_PER_MEMBER, .tie = -1, .init = init});
}

/* Trunk and hidden layer: shared by independent heads (SharedParametersCNN), BatchEnsemble
 * layers for a BatchEnsemble (SharedParametersBatchEnsembleCNN); then a plain head per
 * member. Corrected: ReLU after the hidden layer; faithful HEADS_LINEAR: none (the mean of
 * linear heads is one linear head, B6). */
p7_status zoo_plan_heads(const p7_network_config *c, zoo_plan *p)
{
    const zoo_part trunk = p->kind == P7_MEMBERS_BATCHENSEMBLE ? ZOO_PER_MEMBER : ZOO_SHARED;
    const p7_weight_init init = be_init(c, p);
    P7_TRY(simple_trunk(c, p, trunk, init));
    const int hidden = zoo_width(c, 128);
    P7_TRY(zoo_add_item(p, (zoo_item){.kind = ZOO_LINEAR, .name = "fc1", .in = zoo_width(c, 64) * 8 * 8,
                                      .out = hidden, .relu = !(c->faithful & P7_FAITHFUL_HEADS_LINEAR), .part = trunk,
                                      .tie = -1, .init = init}));
    /* the original's heads: kaiming_normal fan_out, bias 0 */
    const p7_weight_init head_init =
        c->faithful & P7_FAITHFUL_BE_KAIMING_INIT ? P7_INIT_KAIMING_NORMAL_FAN_OUT : P7_INIT_PYTORCH_DEFAULT;
    return zoo_add_item(p, (zoo_item){.kind = ZOO_LINEAR, .name = "head", .in = hidden, .out = c->classes,
                                      .part = ZOO_GROUP, .tie = -1, .init = head_init});
}
