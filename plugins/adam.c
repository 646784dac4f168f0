/* libadam.so: Adam with torch.optim.Adam semantics (coupled L2 weight decay, amsgrad,
 * maximize) and a decoupled switch that makes it torch.optim.AdamW. One fused kernel
 * launch per parameter tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "p7/optimizer_plugin.h"

enum { HP_LR, HP_BETA1, HP_BETA2, HP_EPS, HP_WEIGHT_DECAY, HP_DECOUPLED, HP_AMSGRAD, HP_MAXIMIZE, HP_COUNT };

static const p7_opt_hparam adam_hparams[HP_COUNT] = {
    {"lr", 1e-3, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "learning rate"},
    {"beta1", 0.9, 0.0, 1.0, P7_OPT_REAL, P7_OPT_HP_MAX_OPEN, "decay of the gradient average m"},
    {"beta2", 0.999, 0.0, 1.0, P7_OPT_REAL, P7_OPT_HP_MAX_OPEN, "decay of the squared-gradient average v"},
    {"eps", 1e-8, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "added to sqrt(v_hat) in the denominator"},
    {"weight_decay", 0.0, 0.0, HUGE_VAL, P7_OPT_REAL, 0,
     "L2 penalty (coupled: added to the gradient; decoupled: theta *= 1 - lr*wd; AdamW uses 0.01)"},
    {"decoupled", 0.0, 0.0, 1.0, P7_OPT_BOOL, 0, "decoupled weight decay, i.e. AdamW"},
    {"amsgrad", 0.0, 0.0, 1.0, P7_OPT_BOOL, 0, "divide by the running maximum of v (AMSGrad)"},
    {"maximize", 0.0, 0.0, 1.0, P7_OPT_BOOL, 0, "ascend instead of descend"},
};

static const char *const adam_slots[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};

/* FP_CONTRACT OFF: torch rounds each operation separately. The host passes the scalars
 * torch computes in double (1-beta, lr/bc1, sqrt(bc2), 1-lr*wd) already rounded to float.
 * Eight floats per work-item, the ragged end one at a time: PoCL does not vectorise a
 * kernel whose work-items may return early, and one float per work-item left the step at
 * ~16 ms for VGG11-BN's 9.2M parameters. Vector arithmetic rounds lane by lane, so both
 * paths give the same bits. */
#define ADAM_VEC 8
#define ADAM_STR2(x) #x
#define ADAM_STR(x) ADAM_STR2(x)
static const char adam_source[] =
    "#pragma OPENCL FP_CONTRACT OFF\n"
    "#define ADAM_VEC " ADAM_STR(ADAM_VEC) "\n"
    /* one update of T-typed values; LD(ptr) / ST(value, ptr) read and write at j */
    "#define ADAM_UPDATE(T, LD, ST)                                                    \\\n"
    "    {                                                                             \\\n"
    "        T theta = LD(p + po);                                                     \\\n"
    "        T gr = maximize ? -LD(g + go) : LD(g + go);                               \\\n"
    "        if (wd != 0.0f) {                                                         \\\n"
    "            if (decoupled) theta = theta * decay_factor; /* AdamW: before the moments */ \\\n"
    "            else gr = gr + wd * theta;                   /* Adam: L2 in the gradient */  \\\n"
    "        }                                                                         \\\n"
    "        const T mm = beta1 * LD(m + mo) + one_minus_beta1 * gr;                   \\\n"
    "        const T vv = beta2 * LD(v + vo) + one_minus_beta2 * (gr * gr);            \\\n"
    "        ST(mm, m + mo);                                                           \\\n"
    "        ST(vv, v + vo);                                                           \\\n"
    "        T vd = vv;                                                                \\\n"
    "        if (amsgrad) {                                                            \\\n"
    "            vd = fmax(LD(vmax + xo), vv); /* max of the raw v, as torch's code does */ \\\n"
    "            ST(vd, vmax + xo);                                                    \\\n"
    "        }                                                                         \\\n"
    "        const T den = sqrt(vd) / sqrt_bc2 + eps; /* eps after the bias correction */ \\\n"
    "        ST(theta - step_size * (mm / den), p + po);                               \\\n"
    "    }\n"
    "#define LD_VEC(q) vload8(0, (q) + i)\n"
    "#define ST_VEC(x, q) vstore8((x), 0, (q) + i)\n"
    "#define LD_ONE(q) (q)[j]\n"
    "#define ST_ONE(x, q) ((q)[j] = (x))\n"
    "__kernel void adam_step(__global float *p, const ulong po, __global const float *g, const ulong go,\n"
    "                        __global float *m, const ulong mo, __global float *v, const ulong vo,\n"
    "                        __global float *vmax, const ulong xo, const ulong n,\n"
    "                        const float beta1, const float one_minus_beta1, const float beta2,\n"
    "                        const float one_minus_beta2, const float eps, const float wd,\n"
    "                        const int decoupled, const float decay_factor, const int amsgrad,\n"
    "                        const int maximize, const float step_size, const float sqrt_bc2)\n"
    "{\n"
    "    const ulong i = get_global_id(0) * ADAM_VEC;\n"
    "    if (i + ADAM_VEC <= n) {\n"
    "        ADAM_UPDATE(float8, LD_VEC, ST_VEC)\n"
    "    } else {\n"
    "        for (ulong j = i; j < n; ++j) ADAM_UPDATE(float, LD_ONE, ST_ONE)\n"
    "    }\n"
    "}\n";

struct p7_opt_instance {
    const p7_opt_host *host;
    cl_kernel step;
    uint32_t groups;
    double hp[P7_OPT_MAX_GROUPS][HP_COUNT];
    size_t count;
    uint64_t *steps; /* per parameter, as torch: a parameter without a gradient does not count */
};

static p7_status adam_create(const p7_opt_host *h, const double *hparams, uint32_t groups, const p7_opt_param *params,
                             size_t count, p7_opt_instance **out)
{
    (void)params;
    if (groups > P7_OPT_MAX_GROUPS) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "too many groups");
    p7_opt_instance *s = calloc(1, sizeof *s);
    uint64_t *steps = calloc(count ? count : 1, sizeof *steps);
    if (!s || !steps) {
        free(s);
        free(steps);
        return h->fail(h, P7_ERROR_OUT_OF_MEMORY, "out of host memory");
    }
    s->host = h;
    s->groups = groups;
    s->count = count;
    s->steps = steps;
    memcpy(s->hp, hparams, (size_t)groups * HP_COUNT * sizeof(double));
    p7_status st = h->build_kernel(h, "adam.cl", adam_source, NULL, "adam_step", &s->step);
    if (st != P7_SUCCESS) {
        free(steps);
        free(s);
        return st;
    }
    *out = s;
    return P7_SUCCESS;
}

static void adam_destroy(p7_opt_instance *s)
{
    if (!s) return;
    free(s->steps);
    free(s);
}

/* max_exp_avg_sq (slot 2) only where some group runs AMSGrad, as torch allocates it: a
 * third parameter-sized buffer VGG11-BN's step would carry for nothing (35.5 MiB). */
static uint32_t adam_slots_used(const double *hparams, uint32_t groups)
{
    uint32_t used = 0x3;
    for (uint32_t g = 0; g < groups; g++)
        if (hparams[(size_t)g * HP_COUNT + HP_AMSGRAD] != 0.0) used |= 0x4;
    return used;
}

static p7_status adam_init_state(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    for (size_t i = 0; i < count; i++)
        for (unsigned k = 0; k < 3; k++) {
            if (!params[i].state[k].mem) continue; /* a slot slots_used left out */
            p7_status st = s->host->fill(s->host, params[i].state[k], params[i].count, 0.0f);
            if (st != P7_SUCCESS) return st;
        }
    return P7_SUCCESS;
}

static p7_status adam_set_hparam(p7_opt_instance *s, uint32_t group, uint32_t index, double value)
{
    if (group >= s->groups || index >= HP_COUNT) return s->host->fail(s->host, P7_ERROR_INVALID_ARGUMENT, "bad index");
    s->hp[group][index] = value;
    return P7_SUCCESS;
}

static p7_status adam_step(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    const p7_opt_host *h = s->host;
    if (count != s->count) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "%zu parameters, created with %zu", count, s->count);
    for (size_t i = 0; i < count; i++) {
        const p7_opt_param *v = &params[i];
        if (!v->grad.mem) continue;
        const double *hp = s->hp[v->group < s->groups ? v->group : 0];
        uint64_t t = ++s->steps[i];
        double lr = hp[HP_LR], b1 = hp[HP_BETA1], b2 = hp[HP_BETA2];
        double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
        float beta1 = (float)b1, omb1 = (float)(1.0 - b1), beta2 = (float)b2, omb2 = (float)(1.0 - b2);
        float eps = (float)hp[HP_EPS], wd = (float)hp[HP_WEIGHT_DECAY];
        float decay_factor = (float)(1.0 - lr * hp[HP_WEIGHT_DECAY]);
        float step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
        cl_int decoupled = hp[HP_DECOUPLED] != 0.0, amsgrad = hp[HP_AMSGRAD] != 0.0, maximize = hp[HP_MAXIMIZE] != 0.0;
        cl_ulong po = v->param.offset, go = v->grad.offset, mo = v->state[0].offset, vo = v->state[1].offset,
                 xo = v->state[2].offset, n = v->count;
        /* without AMSGrad there is no slot 2: the kernel never reads vmax then, but an
         * argument may not be NULL on every platform */
        cl_mem vmax = v->state[2].mem ? v->state[2].mem : v->state[1].mem;
        const p7_opt_arg args[] = {
            P7_OPT_ARG(v->param.mem), P7_OPT_ARG(po), P7_OPT_ARG(v->grad.mem), P7_OPT_ARG(go),
            P7_OPT_ARG(v->state[0].mem), P7_OPT_ARG(mo), P7_OPT_ARG(v->state[1].mem), P7_OPT_ARG(vo),
            P7_OPT_ARG(vmax), P7_OPT_ARG(xo), P7_OPT_ARG(n), P7_OPT_ARG(beta1), P7_OPT_ARG(omb1),
            P7_OPT_ARG(beta2), P7_OPT_ARG(omb2), P7_OPT_ARG(eps), P7_OPT_ARG(wd), P7_OPT_ARG(decoupled),
            P7_OPT_ARG(decay_factor), P7_OPT_ARG(amsgrad), P7_OPT_ARG(maximize), P7_OPT_ARG(step_size),
            P7_OPT_ARG(sqrt_bc2),
        };
        const size_t items = ((size_t)v->count + ADAM_VEC - 1) / ADAM_VEC;
        p7_status st = h->launch(h, s->step, "adam.step", items, sizeof args / sizeof args[0], args);
        if (st != P7_SUCCESS) return st;
    }
    return P7_SUCCESS;
}

/* Blob: u32 layout 1, u64 parameter count, u64 step count per parameter. */
static p7_status adam_save(const p7_opt_instance *s, void *blob, size_t capacity, size_t *size)
{
    size_t need = 12 + 8 * s->count;
    *size = need;
    if (!blob) return P7_SUCCESS;
    if (capacity < need) return s->host->fail(s->host, P7_ERROR_INVALID_ARGUMENT, "save: blob too small");
    unsigned char *b = blob;
    uint32_t layout = 1;
    uint64_t n = s->count;
    memcpy(b, &layout, 4);
    memcpy(b + 4, &n, 8);
    memcpy(b + 12, s->steps, 8 * s->count);
    return P7_SUCCESS;
}

static p7_status adam_load(p7_opt_instance *s, uint32_t state_version, const void *blob, size_t size)
{
    const p7_opt_host *h = s->host;
    uint32_t layout;
    uint64_t n;
    if (state_version != 1) return h->fail(h, P7_ERROR_FORMAT, "state version %u; this plugin reads version 1", state_version);
    if (size < 12) return h->fail(h, P7_ERROR_FORMAT, "state blob of %zu bytes; it has 12 at least", size);
    memcpy(&layout, blob, 4);
    memcpy(&n, (const unsigned char *)blob + 4, 8);
    if (layout != 1) return h->fail(h, P7_ERROR_FORMAT, "state blob layout %u is not 1", layout);
    if (n != s->count)
        return h->fail(h, P7_ERROR_FORMAT, "state is for %llu parameters, this optimizer has %zu", (unsigned long long)n,
                       s->count);
    if (size != 12 + 8 * n)
        return h->fail(h, P7_ERROR_FORMAT, "state blob of %zu bytes; %llu parameters need %llu", size,
                       (unsigned long long)n, (unsigned long long)(12 + 8 * n));
    memcpy(s->steps, (const unsigned char *)blob + 12, 8 * s->count);
    return P7_SUCCESS;
}

static const p7_opt_plugin adam_plugin = {
    .struct_size = sizeof(p7_opt_plugin),
    .abi_major = P7_OPT_ABI_MAJOR,
    .abi_minor = P7_OPT_ABI_MINOR,
    .name = "adam",
    .description = "Adam / AdamW (decoupled=1) / AMSGrad with torch.optim semantics",
    .version = 1,
    .state_version = 1,
    .caps = 0,
    .slot_count = 3,
    .slot_names = adam_slots,
    .hparam_count = HP_COUNT,
    .hparams = adam_hparams,
    .create = adam_create,
    .destroy = adam_destroy,
    .init_state = adam_init_state,
    .set_hparam = adam_set_hparam,
    .step = adam_step,
    .save = adam_save,
    .load = adam_load,
    .slots_used = adam_slots_used,
};

P7_OPT_EXPORT const p7_opt_plugin *p7_optimizer_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor)
{
    (void)host_abi_major; /* the host compares ABI numbers and explains a mismatch */
    (void)host_abi_minor;
    return &adam_plugin;
}
