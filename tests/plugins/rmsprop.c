/* RMSprop (torch.optim.RMSprop's rule, without weight decay) with state slots that depend
 * on its hyperparameters (ABI 1.1's slots_used): the momentum buffer exists only with
 * momentum > 0, the gradient average only when centered. tests/test_optimizer_slots.c.
 *     v <- alpha v + (1 - alpha) g^2;  centered: a <- alpha a + (1 - alpha) g, d = sqrt(v - a^2) + eps
 *     otherwise d = sqrt(v) + eps;  momentum: b <- momentum b + g / d, theta -= lr b
 *     otherwise theta -= lr g / d */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "p7/optimizer_plugin.h"

enum { HP_LR, HP_ALPHA, HP_EPS, HP_MOMENTUM, HP_CENTERED, HP_COUNT };
enum { SLOT_SQUARE_AVG, SLOT_MOMENTUM, SLOT_GRAD_AVG, SLOT_COUNT };

static const p7_opt_hparam hparams[HP_COUNT] = {
    {"lr", 0.01, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "step size"},
    {"alpha", 0.99, 0.0, 1.0, P7_OPT_REAL, P7_OPT_HP_MAX_OPEN, "smoothing of the squared gradient"},
    {"eps", 1e-8, 0.0, HUGE_VAL, P7_OPT_REAL, P7_OPT_HP_MIN_OPEN, "added to the denominator"},
    {"momentum", 0.0, 0.0, 1.0, P7_OPT_REAL, P7_OPT_HP_MAX_OPEN, "momentum (0: no momentum buffer)"},
    {"centered", 0.0, 0.0, 1.0, P7_OPT_BOOL, 0, "normalise by the variance (keeps a gradient average)"},
};

static const char *const slots[SLOT_COUNT] = {"square_avg", "momentum_buffer", "grad_avg"};

static const char source[] =
    "__kernel void rmsprop_step(__global float *p, const ulong po, __global const float *g, const ulong go,\n"
    "                           __global float *v, const ulong vo, __global float *b, const ulong bo,\n"
    "                           __global float *a, const ulong ao, const ulong n, const float lr,\n"
    "                           const float alpha, const float eps, const float momentum, const int centered)\n"
    "{\n"
    "    const ulong i = get_global_id(0);\n"
    "    if (i >= n) return;\n"
    "    const float gr = g[go + i];\n"
    "    const float vv = alpha * v[vo + i] + (1.0f - alpha) * gr * gr;\n"
    "    v[vo + i] = vv;\n"
    "    float d;\n"
    "    if (centered) {\n"
    "        const float aa = alpha * a[ao + i] + (1.0f - alpha) * gr;\n"
    "        a[ao + i] = aa;\n"
    "        d = sqrt(vv - aa * aa) + eps;\n"
    "    } else {\n"
    "        d = sqrt(vv) + eps;\n"
    "    }\n"
    "    if (momentum > 0.0f) {\n"
    "        const float bb = momentum * b[bo + i] + gr / d;\n"
    "        b[bo + i] = bb;\n"
    "        p[po + i] -= lr * bb;\n"
    "    } else {\n"
    "        p[po + i] -= lr * gr / d;\n"
    "    }\n"
    "}\n";

struct p7_opt_instance {
    const p7_opt_host *host;
    cl_kernel step;
    double hp[P7_OPT_MAX_GROUPS][HP_COUNT];
};

static uint32_t slots_used(const double *values, uint32_t groups)
{
    uint32_t used = 1u << SLOT_SQUARE_AVG;
    for (uint32_t g = 0; g < groups; g++) {
        if (values[g * HP_COUNT + HP_MOMENTUM] > 0.0) used |= 1u << SLOT_MOMENTUM;
        if (values[g * HP_COUNT + HP_CENTERED] != 0.0) used |= 1u << SLOT_GRAD_AVG;
    }
    return used;
}

static p7_status create(const p7_opt_host *h, const double *values, uint32_t groups, const p7_opt_param *params,
                        size_t count, p7_opt_instance **out)
{
    (void)params;
    (void)count;
    p7_opt_instance *s = calloc(1, sizeof *s);
    if (!s) return h->fail(h, P7_ERROR_OUT_OF_MEMORY, "out of host memory");
    s->host = h;
    memcpy(s->hp, values, (size_t)groups * HP_COUNT * sizeof(double));
    p7_status st = h->build_kernel(h, "rmsprop.cl", source, NULL, "rmsprop_step", &s->step);
    if (st != P7_SUCCESS) {
        free(s);
        return st;
    }
    *out = s;
    return P7_SUCCESS;
}

static void destroy(p7_opt_instance *s) { free(s); }

static p7_status init_state(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    for (size_t i = 0; i < count; i++)
        for (unsigned k = 0; k < SLOT_COUNT; k++) {
            if (!params[i].state[k].mem) continue; /* not in use with these hyperparameters */
            p7_status st = s->host->fill(s->host, params[i].state[k], params[i].count, 0.0f);
            if (st != P7_SUCCESS) return st;
        }
    return P7_SUCCESS;
}

static p7_status set_hparam(p7_opt_instance *s, uint32_t group, uint32_t index, double value)
{
    s->hp[group][index] = value; /* the host refuses a value that needs an unallocated slot */
    return P7_SUCCESS;
}

static p7_status step(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    const p7_opt_host *h = s->host;
    for (size_t i = 0; i < count; i++) {
        const p7_opt_param *v = &params[i];
        if (!v->grad.mem) continue;
        const double *hp = s->hp[v->group];
        float lr = (float)hp[HP_LR], alpha = (float)hp[HP_ALPHA], eps = (float)hp[HP_EPS];
        float momentum = (float)hp[HP_MOMENTUM];
        cl_int centered = hp[HP_CENTERED] != 0.0;
        cl_ulong po = v->param.offset, go = v->grad.offset, vo = v->state[SLOT_SQUARE_AVG].offset,
                 bo = v->state[SLOT_MOMENTUM].offset, ao = v->state[SLOT_GRAD_AVG].offset, n = v->count;
        /* an unused slot's buffer is NULL, a valid kernel argument the kernel never reads */
        const p7_opt_arg args[] = {
            P7_OPT_ARG(v->param.mem), P7_OPT_ARG(po), P7_OPT_ARG(v->grad.mem), P7_OPT_ARG(go),
            P7_OPT_ARG(v->state[SLOT_SQUARE_AVG].mem), P7_OPT_ARG(vo), P7_OPT_ARG(v->state[SLOT_MOMENTUM].mem),
            P7_OPT_ARG(bo), P7_OPT_ARG(v->state[SLOT_GRAD_AVG].mem), P7_OPT_ARG(ao), P7_OPT_ARG(n),
            P7_OPT_ARG(lr), P7_OPT_ARG(alpha), P7_OPT_ARG(eps), P7_OPT_ARG(momentum), P7_OPT_ARG(centered),
        };
        p7_status st = h->launch(h, s->step, "rmsprop.step", (size_t)v->count, sizeof args / sizeof args[0], args);
        if (st != P7_SUCCESS) return st;
    }
    return P7_SUCCESS;
}

static p7_status save(const p7_opt_instance *s, void *blob, size_t capacity, size_t *size)
{
    (void)s;
    (void)blob;
    (void)capacity;
    *size = 0; /* no scalar state */
    return P7_SUCCESS;
}

static p7_status load(p7_opt_instance *s, uint32_t state_version, const void *blob, size_t size)
{
    (void)blob;
    if (state_version != 1 || size != 0)
        return s->host->fail(s->host, P7_ERROR_FORMAT, "state version %u with %zu bytes; expected version 1, 0 bytes",
                             state_version, size);
    return P7_SUCCESS;
}

static const p7_opt_plugin table = {
    .struct_size = sizeof(p7_opt_plugin),
    .abi_major = P7_OPT_ABI_MAJOR,
    .abi_minor = P7_OPT_ABI_MINOR,
    .name = "rmsprop",
    .description = "RMSprop with optional momentum and centering; their buffers exist only when used",
    .version = 1,
    .state_version = 1,
    .slot_count = SLOT_COUNT,
    .slot_names = slots,
    .hparam_count = HP_COUNT,
    .hparams = hparams,
    .create = create,
    .destroy = destroy,
    .init_state = init_state,
    .set_hparam = set_hparam,
    .step = step,
    .save = save,
    .load = load,
    .slots_used = slots_used,
};

P7_OPT_EXPORT const p7_opt_plugin *p7_optimizer_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor)
{
    /* slots_used needs a host of ABI 1.1: an older one would ignore it and allocate every
     * slot, which this plugin handles too, so it serves any 1.x host. */
    (void)host_abi_major;
    (void)host_abi_minor;
    return &table;
}
