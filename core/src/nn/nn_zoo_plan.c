/* A network plan to layers and steps (nn_zoo_internal.h). The rows flowing through
 * the program are either one copy of the batch (B rows) or the members' rows (M*B,
 * member-major); the first per-member layer switches from the one to the other: a
 * member group takes the B rows as they are (every member reads them), a BatchEnsemble
 * layer needs them tiled first. Shared layers run on whatever rows reach them. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn_zoo_internal.h"

int zoo_width(const p7_network_config *c, int channels)
{
    if (c->width <= 0.0f || c->width == 1.0f) return channels;
    int scaled = (int)lroundf((float)channels * c->width);
    return scaled < 1 ? 1 : scaled;
}

p7_status zoo_add_item(zoo_plan *p, zoo_item item)
{
    if (p->count >= ZOO_MAX_ITEMS)
        return p7_fail(P7_ERROR_STATE, "network plan: more than %d items", ZOO_MAX_ITEMS);
    int stage = 0;
    for (int i = 0; i < p->count; i++) stage += p->items[i].kind == ZOO_POOL;
    item.stage = stage;
    if (item.kind != ZOO_CONV && item.kind != ZOO_LINEAR) item.tie = -1;
    p->items[p->count++] = item;
    return P7_SUCCESS;
}

int zoo_find(const zoo_plan *p, const char *name)
{
    for (int i = 0; i < p->count; i++)
        if ((p->items[i].kind == ZOO_CONV || p->items[i].kind == ZOO_LINEAR) && strcmp(p->items[i].name, name) == 0)
            return i;
    return -1;
}

typedef struct emitter {
    p7_model *m;
    const zoo_plan *p;
    int tiled;  /* the rows are the members' M*B rows */
} emitter;

/* One layer of `item`, per member as its part says: *group / *be tell how it was made. */
static p7_status make_layer(emitter *e, const zoo_item *item, const char *name, p7_layer_config cfg, int *id,
                            int *group, int *be)
{
    const zoo_plan *p = e->p;
    const int per_member = (p->members > 1 || p->be_single) && item->part != ZOO_SHARED;
    *group = per_member && (item->part == ZOO_GROUP || p->kind == P7_MEMBERS_INDEPENDENT);
    *be = per_member && !*group;
    if (*be) {
        cfg.kind = cfg.kind == P7_LAYER_CONV2D        ? P7_LAYER_BE_CONV2D
                   : cfg.kind == P7_LAYER_LINEAR      ? P7_LAYER_BE_LINEAR
                                                      : P7_LAYER_BE_BATCHNORM2D;
        cfg.has_alpha = cfg.has_gamma = 1;
        cfg.alpha_init = p->alpha_init;
        cfg.gamma_init = p->gamma_init;
        cfg.original_fast_init = p->original_fast_init;
    }
    return *group ? p7_model_add_member_layers(e->m, name, &cfg, id) : p7_model_add_layer(e->m, name, &cfg, id);
}

static p7_status apply(emitter *e, int id, int group, int be)
{
    if (group) {
        P7_TRY(p7_model_add_step(e->m, P7_STEP_MEMBER_LAYERS, id, !e->tiled, 0));
        e->tiled = 1;
        return P7_SUCCESS;
    }
    if (be && !e->tiled) {
        P7_TRY(p7_model_add_step(e->m, P7_STEP_TILE_MEMBERS, 0, 0, 0));
        e->tiled = 1;
    }
    return p7_model_add_step(e->m, P7_STEP_LAYER, id, 0, 0);
}

p7_status zoo_emit(p7_model *m, zoo_plan *p)
{
    emitter e = {.m = m, .p = p};
    int made_group[ZOO_MAX_ITEMS] = {0}, made_be[ZOO_MAX_ITEMS] = {0};
    for (int i = 0; i < p->count; i++) {
        zoo_item *it = &p->items[i];
        if (it->kind == ZOO_POOL) {
            P7_TRY(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
            continue;
        }
        if (it->kind == ZOO_FLATTEN) {
            P7_TRY(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
            continue;
        }
        const int conv = it->kind == ZOO_CONV;
        if (it->tie >= 0) {
            it->layer = p->items[it->tie].layer;
            made_group[i] = made_group[it->tie];
            made_be[i] = made_be[it->tie];
        } else {
            p7_layer_config cfg = {.kind = conv ? P7_LAYER_CONV2D : P7_LAYER_LINEAR, .in = it->in, .out = it->out,
                                   .kernel = conv ? 3 : 0, .stride = 1, .pad = conv ? 1 : 0, .bias = 1,
                                   .init = it->init};
            P7_TRY(make_layer(&e, it, it->name, cfg, &it->layer, &made_group[i], &made_be[i]));
        }
        P7_TRY(apply(&e, it->layer, made_group[i], made_be[i]));
        if (it->bn) {
            char name[24];
            int id, group, be;
            snprintf(name, sizeof name, "bn%s", strncmp(it->name, "conv", 4) == 0 ? it->name + 4 : it->name);
            p7_layer_config cfg = {.kind = P7_LAYER_BATCHNORM2D, .in = it->out, .out = it->out, .affine = 1};
            P7_TRY(make_layer(&e, it, name, cfg, &id, &group, &be));
            P7_TRY(apply(&e, id, group, be));
        }
        if (it->relu) P7_TRY(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    }
    if (p->members > 1 && !e.tiled)
        return p7_fail(P7_ERROR_STATE, "network plan: %d members but no per-member layer", p->members);
    if (p->member_mean) P7_TRY(p7_model_add_step(m, P7_STEP_MEMBER_MEAN, 0, p->member_mean == 2, 0));
    return P7_SUCCESS;
}

static int conv_count(const zoo_plan *p)
{
    int n = 0;
    for (int k = 0; k < p->count; k++) n += p->items[k].kind == ZOO_CONV;
    return n;
}

/* "conv5,conv6;conv8,conv9,conv10": in each group the earliest conv's layer is applied in
 * the others' places. Tied convs must have one shape and one part of the ensemble. */
p7_status zoo_apply_ties(zoo_plan *p, const char *ties, const char *what)
{
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", ties) >= (int)sizeof buf)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s \"%.40s...\": too long", what, ties);
    char *save_group = NULL;
    for (char *group = strtok_r(buf, ";", &save_group); group; group = strtok_r(NULL, ";", &save_group)) {
        char *save = NULL;
        int members[ZOO_MAX_ITEMS], n = 0;
        for (char *name = strtok_r(group, ", ", &save); name; name = strtok_r(NULL, ", ", &save)) {
            int i = zoo_find(p, name);
            if (i < 0 || p->items[i].kind != ZOO_CONV)
                return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: \"%s\" is not a conv of this network (conv1 .. conv%d)",
                               what, name, conv_count(p));
            for (int k = 0; k < n; k++)
                if (members[k] == i) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %s is named twice", what, name);
            if (p->items[i].tie >= 0)
                return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %s is tied already", what, name);
            if (n < ZOO_MAX_ITEMS) members[n++] = i;
        }
        if (n < 2) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: a group names fewer than two convs", what);
        int owner = members[0];
        for (int k = 1; k < n; k++) owner = members[k] < owner ? members[k] : owner;
        const zoo_item *o = &p->items[owner];
        for (int k = 0; k < n; k++) {
            zoo_item *t = &p->items[members[k]];
            if (members[k] == owner) continue;
            if (t->in != o->in || t->out != o->out)
                return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                               "%s: %s is %d->%d channels but %s is %d->%d; tied convs need one shape", what, o->name,
                               o->in, o->out, t->name, t->in, t->out);
            if (t->part != o->part)
                return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                               "%s: %s and %s lie on different sides of the members' sharing (one shared, one per "
                               "member); a tie needs both on one side", what, o->name, t->name);
            if (o->tie >= 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %s is tied already", what, o->name);
        }
        for (int k = 0; k < n; k++)
            if (members[k] != owner) p->items[members[k]].tie = owner;
    }
    return P7_SUCCESS;
}
