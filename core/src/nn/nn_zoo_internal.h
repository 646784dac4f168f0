/* The networks of the studies (internal): a network is first written as a plan, a list
 * of items (convs, linears, pools) that say which part of the ensemble each belongs to
 * and which earlier layer each reuses; nn_zoo_plan.c turns a plan into layers and
 * steps. nn_zoo_simple.c and nn_zoo_vgg.c write the plans; nn_zoo_faithful.c builds the
 * original notebooks' sharing modules directly; nn_zoo.c is the public entry. */
#ifndef P7_NN_ZOO_INTERNAL_H
#define P7_NN_ZOO_INTERNAL_H

#include "tensor/tensor_internal.h"
#include "p7/faithful.h"
#include "p7/nn.h"

typedef enum zoo_item_kind { ZOO_CONV = 1, ZOO_LINEAR, ZOO_POOL, ZOO_FLATTEN } zoo_item_kind;

typedef enum zoo_part {
    ZOO_PER_MEMBER = 0, /* one per member, of the plan's member kind (plain when M = 1) */
    ZOO_SHARED,         /* one layer for all members: runs once on B rows, or on all M*B rows */
    ZOO_GROUP           /* one independent layer per member whatever the member kind (heads) */
} zoo_part;

typedef struct zoo_item {
    zoo_item_kind kind;
    char name[16];
    int in, out;          /* channels or features */
    int bn, relu;         /* BatchNorm2d after a conv; ReLU after the layer (and its BN) */
    zoo_part part;
    int tie;              /* -1, or the index of the earlier item whose layer this one applies again */
    int stage;            /* pools before this item */
    p7_weight_init init;
    int layer;            /* filled in by zoo_emit: the layer (group's first) id */
} zoo_item;

enum { ZOO_MAX_ITEMS = 40 };

typedef struct zoo_plan {
    zoo_item items[ZOO_MAX_ITEMS];
    int count;
    int members;
    p7_member_kind kind;      /* resolved: BATCHENSEMBLE or INDEPENDENT */
    int be_single;            /* BatchEnsemble layers even for one member (asked for explicitly) */
    float alpha_init, gamma_init;
    int original_fast_init;
    int member_mean;          /* 0: none; 1: MEMBER_MEAN in evaluation only; 2: also in training */
} zoo_plan;

/* Channel count c at the configured width (at least 1). */
int zoo_width(const p7_network_config *c, int channels);

p7_status zoo_add_item(zoo_plan *p, zoo_item item);
int zoo_find(const zoo_plan *p, const char *name);
p7_status zoo_emit(p7_model *m, zoo_plan *p);

p7_status zoo_plan_simple(const p7_network_config *c, zoo_plan *p);
p7_status zoo_plan_heads(const p7_network_config *c, zoo_plan *p);
p7_status zoo_plan_vgg(const p7_network_config *c, int ten_conv, int hidden, zoo_plan *p);
p7_status zoo_apply_between(const p7_network_config *c, zoo_plan *p);
p7_status zoo_apply_ties(zoo_plan *p, const char *ties, const char *what);

/* The faithful sharing modules; *handled = 0 when the config asks for none of them. */
p7_status zoo_build_faithful_sharing(p7_device *device, const p7_network_config *c, uint64_t seed, p7_model **out,
                                     int *handled);

#endif
