/* A small momentum optimizer with a warm-up and a clip, built once correct and once per
 * fault that `p7plugin check` must name (tests/apps/p7plugin_check.sh):
 *     m <- beta m + g;   u <- clip(m, radius);   theta <- theta - lr (1 - 2^-t) u
 * FAULT_NONE           the correct plugin: every check passes
 * FAULT_NONDETERMINISM the step depends on how many instances the process has made
 * FAULT_SAVE_LOAD      save forgets the step counter t, so a loaded run warms up again
 * FAULT_NAN_SWALLOWED  clips with fmin/fmax, which turn a NaN update into +-radius or inf
 * FAULT_DEFAULT_RANGE  beta's default (1.5) lies outside its declared range [0, 1)
 * FAULT_NULL_STEP      the table has no step function (the loader names it)
 * FAULT_SMALL_TABLE    struct_size smaller than ABI 1.0's table (the loader says what to do) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "p7/optimizer_plugin.h"

#define FAULT_NONE 0
#define FAULT_NONDETERMINISM 1
#define FAULT_SAVE_LOAD 2
#define FAULT_NAN_SWALLOWED 3
#define FAULT_DEFAULT_RANGE 4
#define FAULT_NULL_STEP 5
#define FAULT_SMALL_TABLE 6
#ifndef FAULT
#define FAULT FAULT_NONE
#endif

enum { HP_LR, HP_BETA, HP_CLIP, HP_COUNT };

static const p7_opt_hparam hparams[HP_COUNT] = {
    {"lr", 0.1, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "step size"},
    {"beta", FAULT == FAULT_DEFAULT_RANGE ? 1.5 : 0.9, 0.0, 1.0, P7_OPT_REAL, P7_OPT_HP_MAX_OPEN, "momentum"},
    {"clip", HUGE_VAL, 0.0, HUGE_VAL, P7_OPT_REAL, P7_OPT_HP_MIN_OPEN | P7_OPT_HP_ALLOW_INF,
     "element-wise clip of the update (inf: off)"},
};

static const char *const slots[] = {"momentum"};

#if FAULT == FAULT_NAN_SWALLOWED
#define CLIP "    u = fmin(fmax(u, -clip), clip);\n"
#else
#define CLIP "    if (fabs(u) > clip) u = copysign(clip, u);\n"
#endif

static const char source[] =
    "__kernel void faulty_step(__global float *p, const ulong po, __global const float *g, const ulong go,\n"
    "                          __global float *m, const ulong mo, const ulong n, const float lr,\n"
    "                          const float beta, const float clip)\n"
    "{\n"
    "    const ulong i = get_global_id(0);\n"
    "    if (i >= n) return;\n"
    "    float u = beta * m[mo + i] + g[go + i];\n"
    "    m[mo + i] = u;\n" CLIP "    p[po + i] -= lr * u;\n"
    "}\n";

struct p7_opt_instance {
    const p7_opt_host *host;
    cl_kernel step;
    double hp[P7_OPT_MAX_GROUPS][HP_COUNT];
    uint64_t t;
    double drift; /* FAULT_NONDETERMINISM only */
};

static p7_status create(const p7_opt_host *h, const double *values, uint32_t groups, const p7_opt_param *params,
                        size_t count, p7_opt_instance **out)
{
    (void)params;
    (void)count;
    p7_opt_instance *s = calloc(1, sizeof *s);
    if (!s) return h->fail(h, P7_ERROR_OUT_OF_MEMORY, "out of host memory");
    s->host = h;
    memcpy(s->hp, values, (size_t)groups * HP_COUNT * sizeof(double));
#if FAULT == FAULT_NONDETERMINISM
    static unsigned instances; /* the fault: state shared across instances */
    s->drift = 1e-3 * ++instances;
#endif
    p7_status st = h->build_kernel(h, "faulty.cl", source, NULL, "faulty_step", &s->step);
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
    s->hp[group][index] = value;
    return P7_SUCCESS;
}

static p7_status step(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    const p7_opt_host *h = s->host;
    s->t++;
    for (size_t i = 0; i < count; i++) {
        const p7_opt_param *v = &params[i];
        if (!v->grad.mem) continue;
        const double *hp = s->hp[v->group];
        float lr = (float)(hp[HP_LR] * (1.0 - ldexp(1.0, -(int)s->t)) * (1.0 + s->drift));
        float beta = (float)hp[HP_BETA], clip = (float)hp[HP_CLIP];
        cl_ulong po = v->param.offset, go = v->grad.offset, mo = v->state[0].offset, n = v->count;
        const p7_opt_arg args[] = {
            P7_OPT_ARG(v->param.mem), P7_OPT_ARG(po), P7_OPT_ARG(v->grad.mem), P7_OPT_ARG(go),
            P7_OPT_ARG(v->state[0].mem), P7_OPT_ARG(mo), P7_OPT_ARG(n), P7_OPT_ARG(lr),
            P7_OPT_ARG(beta), P7_OPT_ARG(clip),
        };
        p7_status st = h->launch(h, s->step, "faulty.step", (size_t)v->count, sizeof args / sizeof args[0], args);
        if (st != P7_SUCCESS) return st;
    }
    return P7_SUCCESS;
}

static p7_status save(const p7_opt_instance *s, void *blob, size_t capacity, size_t *size)
{
#if FAULT == FAULT_SAVE_LOAD
    (void)s;
    (void)blob;
    (void)capacity;
    *size = 0; /* the fault: t is lost */
#else
    *size = sizeof s->t;
    if (blob && capacity >= sizeof s->t) memcpy(blob, &s->t, sizeof s->t);
#endif
    return P7_SUCCESS;
}

static p7_status load(p7_opt_instance *s, uint32_t state_version, const void *blob, size_t size)
{
#if FAULT == FAULT_SAVE_LOAD
    (void)state_version;
    (void)blob;
    (void)size;
    (void)s;
#else
    if (state_version != 1 || size != sizeof s->t)
        return s->host->fail(s->host, P7_ERROR_FORMAT, "cannot read state version %u", state_version);
    memcpy(&s->t, blob, sizeof s->t);
#endif
    return P7_SUCCESS;
}

static const p7_opt_plugin table = {
    .struct_size = FAULT == FAULT_SMALL_TABLE ? 64 : sizeof(p7_opt_plugin),
    .abi_major = P7_OPT_ABI_MAJOR,
    .abi_minor = P7_OPT_ABI_MINOR,
    .name = "faulty",
    .description = "momentum with warm-up and clip, with one deliberate fault (tests p7plugin check)",
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
    .step = FAULT == FAULT_NULL_STEP ? NULL : step,
    .save = save,
    .load = load,
};

P7_OPT_EXPORT const p7_opt_plugin *p7_optimizer_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor)
{
    (void)host_abi_major;
    (void)host_abi_minor;
    return &table;
}
