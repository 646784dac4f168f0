/* signSGD with momentum ("Signum", Bernstein et al. 2018) as a p7 optimizer plugin:
 *     m <- beta * m + (1 - beta) * g          (m = g when beta = 0)
 *     theta <- theta * (1 - lr * weight_decay) - lr * sign(m)
 * A complete plugin: the schema, one state slot, one OpenCL kernel, save/load. It needs
 * only p7/optimizer_plugin.h and links nothing from libp7. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "p7/optimizer_plugin.h"

enum { HP_LR, HP_BETA, HP_WEIGHT_DECAY, HP_COUNT };

static const p7_opt_hparam hparams[HP_COUNT] = {
    {"lr", 1e-3, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "step size: every weight moves by lr per step"},
    {"beta", 0.9, 0.0, 1.0, P7_OPT_REAL, P7_OPT_HP_MAX_OPEN, "momentum of the gradient before the sign"},
    {"weight_decay", 0.0, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "decoupled decay: theta *= 1 - lr*weight_decay"},
};

static const char *const slots[] = {"momentum"};

static const char source[] =
    "#pragma OPENCL FP_CONTRACT OFF\n"
    "__kernel void signsgd_step(__global float *p, const ulong po, __global const float *g, const ulong go,\n"
    "                           __global float *m, const ulong mo, const ulong n, const float lr,\n"
    "                           const float beta, const float one_minus_beta, const float decay)\n"
    "{\n"
    "    const ulong i = get_global_id(0);\n"
    "    if (i >= n) return;\n"
    "    const float mm = fma(one_minus_beta, g[go + i], beta * m[mo + i]);\n"
    "    m[mo + i] = mm;\n"
    "    /* sign(NaN) is 0 in OpenCL: keep a NaN so the run reports it, never hides it */\n"
    "    p[po + i] = p[po + i] * decay - lr * (isnan(mm) ? mm : sign(mm));\n"
    "}\n";

struct p7_opt_instance {
    const p7_opt_host *host;
    cl_kernel step;
    uint32_t groups;
    double hp[P7_OPT_MAX_GROUPS][HP_COUNT];
    uint64_t steps;
};

static p7_status create(const p7_opt_host *h, const double *values, uint32_t groups, const p7_opt_param *params,
                        size_t count, p7_opt_instance **out)
{
    (void)params;
    (void)count;
    p7_opt_instance *s = calloc(1, sizeof *s);
    if (!s) return h->fail(h, P7_ERROR_OUT_OF_MEMORY, "out of host memory");
    s->host = h;
    s->groups = groups;
    memcpy(s->hp, values, (size_t)groups * HP_COUNT * sizeof(double));
    p7_status st = h->build_kernel(h, "signsgd.cl", source, NULL, "signsgd_step", &s->step);
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
    for (size_t i = 0; i < count; i++) {
        p7_status st = s->host->fill(s->host, params[i].state[0], params[i].count, 0.0f);
        if (st != P7_SUCCESS) return st;
    }
    return P7_SUCCESS;
}

static p7_status set_hparam(p7_opt_instance *s, uint32_t group, uint32_t index, double value)
{
    s->hp[group][index] = value; /* the host has checked group, index and range */
    return P7_SUCCESS;
}

static p7_status step(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    const p7_opt_host *h = s->host;
    for (size_t i = 0; i < count; i++) {
        const p7_opt_param *v = &params[i];
        if (!v->grad.mem) continue; /* this parameter got no gradient */
        const double *hp = s->hp[v->group];
        /* 1 - beta in double, rounded once: (1.0f - beta) in the kernel differs from
         * PyTorch's (1 - beta) by up to 3 ulp and showed as 3-4 ulp in the momentum. */
        float lr = (float)hp[HP_LR], beta = (float)hp[HP_BETA], one_minus_beta = (float)(1.0 - hp[HP_BETA]);
        float decay = (float)(1.0 - hp[HP_LR] * hp[HP_WEIGHT_DECAY]);
        cl_ulong po = v->param.offset, go = v->grad.offset, mo = v->state[0].offset, n = v->count;
        const p7_opt_arg args[] = {
            P7_OPT_ARG(v->param.mem), P7_OPT_ARG(po), P7_OPT_ARG(v->grad.mem), P7_OPT_ARG(go),
            P7_OPT_ARG(v->state[0].mem), P7_OPT_ARG(mo), P7_OPT_ARG(n), P7_OPT_ARG(lr),
            P7_OPT_ARG(beta), P7_OPT_ARG(one_minus_beta), P7_OPT_ARG(decay),
        };
        p7_status st = h->launch(h, s->step, "signsgd.step", (size_t)v->count, sizeof args / sizeof args[0], args);
        if (st != P7_SUCCESS) return st;
    }
    s->steps++;
    return P7_SUCCESS;
}

/* The scalar state is just the step count (8 bytes, little-endian hosts). */
static p7_status save(const p7_opt_instance *s, void *blob, size_t capacity, size_t *size)
{
    *size = sizeof s->steps;
    if (blob && capacity >= sizeof s->steps) memcpy(blob, &s->steps, sizeof s->steps);
    return P7_SUCCESS;
}

static p7_status load(p7_opt_instance *s, uint32_t state_version, const void *blob, size_t size)
{
    if (state_version != 1 || size != sizeof s->steps)
        return s->host->fail(s->host, P7_ERROR_FORMAT, "cannot read state version %u", state_version);
    memcpy(&s->steps, blob, sizeof s->steps);
    return P7_SUCCESS;
}

static const p7_opt_plugin table = {
    .struct_size = sizeof(p7_opt_plugin),
    .abi_major = P7_OPT_ABI_MAJOR,
    .abi_minor = P7_OPT_ABI_MINOR,
    .name = "signsgd",
    .description = "signSGD with momentum (Signum) and decoupled weight decay",
    .version = 1,
    .state_version = 1,
    .slot_count = 1,
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
};

P7_OPT_EXPORT const p7_opt_plugin *p7_optimizer_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor)
{
    (void)host_abi_major;
    (void)host_abi_minor;
    return &table;
}
