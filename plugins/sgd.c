/* libsgd.so: stochastic gradient descent with PyTorch's torch.optim.SGD semantics
 * (momentum, dampening, Nesterov, coupled weight decay, maximize). One fused kernel
 * launch per parameter tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "p7/optimizer_plugin.h"

enum { HP_LR, HP_MOMENTUM, HP_DAMPENING, HP_WEIGHT_DECAY, HP_NESTEROV, HP_MAXIMIZE, HP_COUNT };

static const p7_opt_hparam sgd_hparams[HP_COUNT] = {
    {"lr", 1e-3, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "learning rate"},
    {"momentum", 0.0, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "momentum factor (0: plain SGD)"},
    {"dampening", 0.0, 0.0, 1.0, P7_OPT_REAL, 0, "scales the new gradient in the momentum buffer by 1-dampening"},
    {"weight_decay", 0.0, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "L2 penalty added to the gradient (coupled)"},
    {"nesterov", 0.0, 0.0, 1.0, P7_OPT_BOOL, 0, "Nesterov momentum (needs momentum > 0, dampening 0)"},
    {"maximize", 0.0, 0.0, 1.0, P7_OPT_BOOL, 0, "ascend instead of descend"},
};

static const char *const sgd_slots[] = {"momentum_buffer"};

/* FP_CONTRACT OFF: torch rounds each multiply and add separately; fused multiply-adds
 * would move results by an ulp here and there. Eight floats per work-item and the ragged
 * end one at a time, as libadam's kernel: PoCL does not vectorise a kernel whose
 * work-items may return early. Vector arithmetic rounds lane by lane: the same bits. */
#define SGD_VEC 8
static const char sgd_source[] =
    "#pragma OPENCL FP_CONTRACT OFF\n"
    /* one update of T-typed values; LD(ptr) / ST(value, ptr) read and write at the index */
    "#define SGD_UPDATE(T, LD, ST)                                                     \\\n"
    "    {                                                                             \\\n"
    "        const T theta = LD(p + po);                                               \\\n"
    "        T d = maximize ? -LD(g + go) : LD(g + go);                                \\\n"
    "        if (wd != 0.0f) d = d + wd * theta;                                       \\\n"
    "        if (momentum != 0.0f) {                                                   \\\n"
    "            /* torch: the first buffer is a copy of d, without the dampening factor */ \\\n"
    "            const T b = first ? d : momentum * LD(buf + bo) + one_minus_dampening * d; \\\n"
    "            ST(b, buf + bo);                                                      \\\n"
    "            d = nesterov ? d + momentum * b : b;                                  \\\n"
    "        }                                                                         \\\n"
    "        ST(theta - lr * d, p + po);                                               \\\n"
    "    }\n"
    "#define LD_VEC(q) vload8(0, (q) + i)\n"
    "#define ST_VEC(x, q) vstore8((x), 0, (q) + i)\n"
    "#define LD_ONE(q) (q)[j]\n"
    "#define ST_ONE(x, q) ((q)[j] = (x))\n"
    "__kernel void sgd_step(__global float *p, const ulong po, __global const float *g, const ulong go,\n"
    "                       __global float *buf, const ulong bo, const ulong n, const float lr,\n"
    "                       const float momentum, const float one_minus_dampening, const float wd,\n"
    "                       const int nesterov, const int maximize, const int first)\n"
    "{\n"
    "    const ulong i = get_global_id(0) * 8;\n"
    "    if (i + 8 <= n) {\n"
    "        SGD_UPDATE(float8, LD_VEC, ST_VEC)\n"
    "    } else {\n"
    "        for (ulong j = i; j < n; ++j) SGD_UPDATE(float, LD_ONE, ST_ONE)\n"
    "    }\n"
    "}\n";

struct p7_opt_instance {
    const p7_opt_host *host;
    cl_kernel step;
    uint32_t groups;
    double hp[P7_OPT_MAX_GROUPS][HP_COUNT];
    size_t count;
    unsigned char *has_buffer; /* per parameter: its momentum buffer exists (torch creates it lazily) */
};

static p7_status check_group(const p7_opt_host *h, const double *hp)
{
    if (hp[HP_NESTEROV] != 0.0 && (hp[HP_MOMENTUM] <= 0.0 || hp[HP_DAMPENING] != 0.0))
        return h->fail(h, P7_ERROR_PLUGIN, "nesterov needs momentum > 0 and dampening = 0 (momentum %g, dampening %g)",
                       hp[HP_MOMENTUM], hp[HP_DAMPENING]);
    return P7_SUCCESS;
}

static p7_status sgd_create(const p7_opt_host *h, const double *hparams, uint32_t groups, const p7_opt_param *params,
                            size_t count, p7_opt_instance **out)
{
    (void)params;
    if (groups > P7_OPT_MAX_GROUPS) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "too many groups");
    for (uint32_t g = 0; g < groups; g++) {
        p7_status st = check_group(h, hparams + (size_t)g * HP_COUNT);
        if (st != P7_SUCCESS) return st;
    }
    p7_opt_instance *s = calloc(1, sizeof *s);
    unsigned char *flags = calloc(count ? count : 1, 1);
    if (!s || !flags) {
        free(s);
        free(flags);
        return h->fail(h, P7_ERROR_OUT_OF_MEMORY, "out of host memory");
    }
    s->host = h;
    s->groups = groups;
    s->count = count;
    s->has_buffer = flags;
    memcpy(s->hp, hparams, (size_t)groups * HP_COUNT * sizeof(double));
    p7_status st = h->build_kernel(h, "sgd.cl", sgd_source, NULL, "sgd_step", &s->step);
    if (st != P7_SUCCESS) {
        free(flags);
        free(s);
        return st;
    }
    *out = s;
    return P7_SUCCESS;
}

static void sgd_destroy(p7_opt_instance *s)
{
    if (!s) return;
    free(s->has_buffer);
    free(s);
}

static p7_status sgd_init_state(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    /* Zeros only so a checkpoint of an unused buffer is deterministic. */
    for (size_t i = 0; i < count; i++) {
        p7_status st = s->host->fill(s->host, params[i].state[0], params[i].count, 0.0f);
        if (st != P7_SUCCESS) return st;
    }
    return P7_SUCCESS;
}

static p7_status sgd_set_hparam(p7_opt_instance *s, uint32_t group, uint32_t index, double value)
{
    if (group >= s->groups || index >= HP_COUNT) return s->host->fail(s->host, P7_ERROR_INVALID_ARGUMENT, "bad index");
    double trial[HP_COUNT];
    memcpy(trial, s->hp[group], sizeof trial);
    trial[index] = value;
    p7_status st = check_group(s->host, trial);
    if (st == P7_SUCCESS) s->hp[group][index] = value;
    return st;
}

static p7_status sgd_step(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    const p7_opt_host *h = s->host;
    if (count != s->count) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "%zu parameters, created with %zu", count, s->count);
    for (size_t i = 0; i < count; i++) {
        const p7_opt_param *v = &params[i];
        if (!v->grad.mem) continue; /* no gradient: torch skips the parameter entirely */
        const double *hp = s->hp[v->group < s->groups ? v->group : 0];
        float lr = (float)hp[HP_LR], momentum = (float)hp[HP_MOMENTUM];
        float omd = (float)(1.0 - hp[HP_DAMPENING]), wd = (float)hp[HP_WEIGHT_DECAY];
        cl_int nesterov = hp[HP_NESTEROV] != 0.0, maximize = hp[HP_MAXIMIZE] != 0.0;
        cl_int first = momentum != 0.0f && !s->has_buffer[i];
        cl_ulong po = v->param.offset, go = v->grad.offset, bo = v->state[0].offset, n = v->count;
        const p7_opt_arg args[] = {
            P7_OPT_ARG(v->param.mem), P7_OPT_ARG(po), P7_OPT_ARG(v->grad.mem), P7_OPT_ARG(go),
            P7_OPT_ARG(v->state[0].mem), P7_OPT_ARG(bo), P7_OPT_ARG(n), P7_OPT_ARG(lr),
            P7_OPT_ARG(momentum), P7_OPT_ARG(omd), P7_OPT_ARG(wd), P7_OPT_ARG(nesterov),
            P7_OPT_ARG(maximize), P7_OPT_ARG(first),
        };
        const size_t items = ((size_t)v->count + SGD_VEC - 1) / SGD_VEC; /* 8 floats each, as the kernel */
        p7_status st = h->launch(h, s->step, "sgd.step", items, sizeof args / sizeof args[0], args);
        if (st != P7_SUCCESS) return st;
        if (momentum != 0.0f) s->has_buffer[i] = 1;
    }
    return P7_SUCCESS;
}

/* Blob: u32 layout 1, u64 parameter count, one byte per parameter (buffer exists). */
static p7_status sgd_save(const p7_opt_instance *s, void *blob, size_t capacity, size_t *size)
{
    size_t need = 4 + 8 + s->count;
    *size = need;
    if (!blob) return P7_SUCCESS;
    if (capacity < need) return s->host->fail(s->host, P7_ERROR_INVALID_ARGUMENT, "save: blob too small");
    unsigned char *b = blob;
    uint32_t layout = 1;
    uint64_t n = s->count;
    memcpy(b, &layout, 4);
    memcpy(b + 4, &n, 8);
    memcpy(b + 12, s->has_buffer, s->count);
    return P7_SUCCESS;
}

static p7_status sgd_load(p7_opt_instance *s, uint32_t state_version, const void *blob, size_t size)
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
    if (size != 12 + n)
        return h->fail(h, P7_ERROR_FORMAT, "state blob of %zu bytes; %llu parameters need %llu", size,
                       (unsigned long long)n, (unsigned long long)(12 + n));
    memcpy(s->has_buffer, (const unsigned char *)blob + 12, s->count);
    return P7_SUCCESS;
}

static const p7_opt_plugin sgd_plugin = {
    .struct_size = sizeof(p7_opt_plugin),
    .abi_major = P7_OPT_ABI_MAJOR,
    .abi_minor = P7_OPT_ABI_MINOR,
    .name = "sgd",
    .description = "SGD with momentum, dampening, Nesterov and weight decay (torch.optim.SGD)",
    .version = 1,
    .state_version = 1,
    .caps = 0,
    .slot_count = 1,
    .slot_names = sgd_slots,
    .hparam_count = HP_COUNT,
    .hparams = sgd_hparams,
    .create = sgd_create,
    .destroy = sgd_destroy,
    .init_state = sgd_init_state,
    .set_hparam = sgd_set_hparam,
    .step = sgd_step,
    .save = sgd_save,
    .load = sgd_load,
};

P7_OPT_EXPORT const p7_opt_plugin *p7_optimizer_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor)
{
    /* Always answer: the host compares ABI numbers and explains a mismatch better than
     * a bare NULL could. */
    (void)host_abi_major;
    (void)host_abi_minor;
    return &sgd_plugin;
}
