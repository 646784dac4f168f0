/* libivon.so: IVON, the Improved Variational Online Newton method (Shen et al. 2024),
 * implemented from the specification in optimizers.md section 1: a diagonal Gaussian
 * posterior N(mu, 1/(ess*(h+wd))) whose mean lives in the parameters, the
 * reparameterisation ("price") Hessian estimator, Welford means over MC samples and the
 * Riemannian-corrected update of h.
 *
 * Protocol per step: k >= 1 times { sample(); forward + backward; restore(accumulate=1) },
 * then step(). Evaluation with a sampled model: sample(); forward; restore(0).
 *
 * State slots per parameter: momentum g, hess h, avg_grad, avg_nxg (the per-step Welford
 * means), mean (mu while sampled weights are in place) and noise (the scaled noise n of
 * the current sample, needed at restore for n*grad). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "p7/optimizer_plugin.h"

enum {
    HP_LR, HP_ESS, HP_HESS_INIT, HP_BETA1, HP_BETA2, HP_WEIGHT_DECAY, HP_MC_SAMPLES, HP_CLIP_RADIUS, HP_RESCALE_LR,
    HP_DEBIAS, HP_COUNT
};

static const p7_opt_hparam ivon_hparams[HP_COUNT] = {
    {"lr", 0.1, 0.0, HUGE_VAL, P7_OPT_REAL, 0,
     "learning rate (the reference has no default; the paper used 0.2 on CIFAR)"},
    {"ess", 1.0, 0.0, HUGE_VAL, P7_OPT_REAL, P7_OPT_HP_MIN_OPEN | P7_OPT_HP_DATASET_SIZE,
     "effective sample size: set it to the training-set size (the app does when it knows it)"},
    {"hess_init", 1.0, 0.0, HUGE_VAL, P7_OPT_REAL, P7_OPT_HP_MIN_OPEN, "initial Hessian estimate h0"},
    {"beta1", 0.9, 0.0, 1.0, P7_OPT_REAL, 0, "momentum of the gradient average"},
    {"beta2", 0.99999, 0.0, 1.0, P7_OPT_REAL, 0, "averaging factor of the Hessian estimate"},
    {"weight_decay", 1e-4, 0.0, HUGE_VAL, P7_OPT_REAL, 0, "prior precision delta, added to h everywhere"},
    {"mc_samples", 1.0, 1.0, 1e6, P7_OPT_INT, 0, "weight samples per step (the training loop reads it)"},
    {"clip_radius", HUGE_VAL, 0.0, HUGE_VAL, P7_OPT_REAL, P7_OPT_HP_MIN_OPEN | P7_OPT_HP_ALLOW_INF,
     "element-wise clip of the preconditioned step (inf: off)"},
    {"rescale_lr", 1.0, 0.0, 1.0, P7_OPT_BOOL, 0, "effective lr = lr*(hess_init+weight_decay)"},
    {"debias", 1.0, 0.0, 1.0, P7_OPT_BOOL, 0, "divide the momentum by 1-beta1^t"},
};

enum { SLOT_MOMENTUM, SLOT_HESS, SLOT_AVG_GRAD, SLOT_AVG_NXG, SLOT_MEAN, SLOT_NOISE, SLOT_COUNT };
static const char *const ivon_slots[SLOT_COUNT] = {"momentum", "hess", "avg_grad", "avg_nxg", "mean", "noise"};

/* FP_CONTRACT OFF keeps each product and sum rounded on its own, as the reference's
 * tensor ops are, so the float32 results stay within a few ulp of it. Each kernel takes
 * eight floats per work-item and the ragged end one at a time through the same macro:
 * PoCL does not vectorise a kernel whose work-items may return early (the one-float
 * kernels took 23 ms of a VGG11-BN step). Vector arithmetic rounds lane by lane, so both
 * paths give the same bits. */
#define IVON_VEC 8
static const char ivon_source[] =
    "#pragma OPENCL FP_CONTRACT OFF\n"
    "#define LD_VEC(q) vload8(0, (q) + i)\n"
    "#define ST_VEC(x, q) vstore8((x), 0, (q) + i)\n"
    "#define LD_ONE(q) (q)[j]\n"
    "#define ST_ONE(x, q) ((q)[j] = (x))\n"
    /* the body once as float8 at i, then as float at each j of a ragged end */
    "#define IVON_EACH(BODY)                                                           \\\n"
    "    const ulong i = get_global_id(0) * 8;                                         \\\n"
    "    if (i + 8 <= n) {                                                             \\\n"
    "        BODY(float8, LD_VEC, ST_VEC)                                              \\\n"
    "    } else {                                                                      \\\n"
    "        for (ulong j = i; j < n; ++j) BODY(float, LD_ONE, ST_ONE)                 \\\n"
    "    }\n"
    /* noise holds a standard normal draw on entry and the scaled noise on exit */
    "#define IVON_SAMPLE(T, LD, ST)                                                    \\\n"
    "    {                                                                             \\\n"
    "        const T nz = LD(noise + no) / sqrt(ess * (LD(h + ho) + wd));              \\\n"
    "        const T mu = LD(p + po);                                                  \\\n"
    "        ST(mu, mean + mo);                                                        \\\n"
    "        ST(nz, noise + no);                                                       \\\n"
    "        ST(mu + nz, p + po);                                                      \\\n"
    "    }\n"
    "__kernel void ivon_sample(__global float *p, const ulong po, __global const float *h, const ulong ho,\n"
    "                          __global float *mean, const ulong mo, __global float *noise, const ulong no,\n"
    "                          const ulong n, const float ess, const float wd)\n"
    "{\n"
    "    IVON_EACH(IVON_SAMPLE)\n"
    "}\n"
    /* the weights back to the mean: a copy, not mu + n - n, so no drift; with accumulate,
     * Welford means of the gradient and of noise x gradient: avg += (x - avg) / k */
    "#define IVON_RESTORE(T, LD, ST)                                                   \\\n"
    "    {                                                                             \\\n"
    "        ST(LD(mean + mo), p + po);                                                \\\n"
    "        if (accumulate) {                                                         \\\n"
    "            const T gr = has_grad ? LD(g + go) : (T)(0.0f);                       \\\n"
    "            const T nxg = LD(noise + no) * gr;                                    \\\n"
    "            if (k == 1.0f) {                                                      \\\n"
    "                ST(gr, ag + ao);                                                  \\\n"
    "                ST(nxg, an + bo);                                                 \\\n"
    "            } else {                                                              \\\n"
    "                const T a = LD(ag + ao), b = LD(an + bo);                         \\\n"
    "                ST(a + (gr - a) / k, ag + ao);                                    \\\n"
    "                ST(b + (nxg - b) / k, an + bo);                                   \\\n"
    "            }                                                                     \\\n"
    "        }                                                                         \\\n"
    "    }\n"
    "__kernel void ivon_restore(__global float *p, const ulong po, __global const float *g, const ulong go,\n"
    "                           const int has_grad, __global const float *mean, const ulong mo,\n"
    "                           __global const float *noise, const ulong no, __global float *ag,\n"
    "                           const ulong ao, __global float *an, const ulong bo, const ulong n,\n"
    "                           const int accumulate, const float k)\n"
    "{\n"
    "    IVON_EACH(IVON_RESTORE)\n"
    "}\n"
    /* u = (new momentum / debias + wd mu) / (new h + wd), clipped by a comparison, not
     * fmin/fmax, which return the other operand for NaN: a NaN gradient must reach the
     * weight as NaN (a diverged loss), never as +-clip or inf. hhat is the
     * reparameterisation estimator with the old h. */
    "#define IVON_STEP(T, LD, ST)                                                      \\\n"
    "    {                                                                             \\\n"
    "        const T mom = beta1 * LD(m + mo) + one_minus_beta1 * LD(ag + ao);         \\\n"
    "        const T hh = LD(h + ho);                                                  \\\n"
    "        const T hpd = hh + wd;                                                    \\\n"
    "        const T hhat = ess * hpd * LD(an + bo);                                   \\\n"
    "        const T d = hh - hhat;                                                    \\\n"
    "        const T hn = beta2 * hh + one_minus_beta2 * hhat + 0.5f * one_minus_beta2_sq * (d * d) / hpd; \\\n"
    "        const T mu = LD(p + po);                                                  \\\n"
    "        T u = (mom / debias + wd * mu) / (hn + wd);                               \\\n"
    "        u = select(u, copysign((T)(clip), u), isgreater(fabs(u), (T)(clip)));     \\\n"
    "        ST(mu - lr * u, p + po);                                                  \\\n"
    "        ST(mom, m + mo);                                                          \\\n"
    "        ST(hn, h + ho);                                                           \\\n"
    "    }\n"
    "__kernel void ivon_step(__global float *p, const ulong po, __global float *m, const ulong mo,\n"
    "                        __global float *h, const ulong ho, __global const float *ag, const ulong ao,\n"
    "                        __global const float *an, const ulong bo, const ulong n, const float beta1,\n"
    "                        const float one_minus_beta1, const float beta2, const float one_minus_beta2,\n"
    "                        const float one_minus_beta2_sq, const float ess, const float wd,\n"
    "                        const float lr, const float debias, const float clip)\n"
    "{\n"
    "    IVON_EACH(IVON_STEP)\n"
    "}\n";

/* Work-items for a parameter: IVON_VEC floats each. */
static size_t items(const p7_opt_param *v) { return ((size_t)v->count + IVON_VEC - 1) / IVON_VEC; }

struct p7_opt_instance {
    const p7_opt_host *host;
    cl_kernel sample, restore, step;
    uint32_t groups;
    double hp[P7_OPT_MAX_GROUPS][HP_COUNT];
    size_t count;
    uint64_t t;        /* steps taken (global, as the reference) */
    uint64_t draws;    /* sample() calls so far: keys the RNG stream of each draw */
    uint32_t k;        /* train-mode samples gathered since the last step */
    uint32_t sampled;  /* sampled weights are in place */
    unsigned char *got_grad; /* per parameter: a gradient came in since the last step */
};

static const double *group_hp(const p7_opt_instance *s, uint32_t group)
{
    return s->hp[group < s->groups ? group : 0];
}

static p7_status ivon_create(const p7_opt_host *h, const double *hparams, uint32_t groups, const p7_opt_param *params,
                             size_t count, p7_opt_instance **out)
{
    (void)params;
    if (groups > P7_OPT_MAX_GROUPS) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "too many groups");
    if (count >= (1u << 24)) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "more than 2^24 parameter tensors");
    p7_opt_instance *s = calloc(1, sizeof *s);
    if (!s) return h->fail(h, P7_ERROR_OUT_OF_MEMORY, "out of host memory");
    s->host = h;
    s->groups = groups;
    s->count = count;
    s->got_grad = calloc(count ? count : 1, 1);
    if (!s->got_grad) {
        free(s);
        return h->fail(h, P7_ERROR_OUT_OF_MEMORY, "out of host memory");
    }
    memcpy(s->hp, hparams, (size_t)groups * HP_COUNT * sizeof(double));
    p7_status st = h->build_kernel(h, "ivon.cl", ivon_source, NULL, "ivon_sample", &s->sample);
    if (st == P7_SUCCESS) st = h->build_kernel(h, "ivon.cl", ivon_source, NULL, "ivon_restore", &s->restore);
    if (st == P7_SUCCESS) st = h->build_kernel(h, "ivon.cl", ivon_source, NULL, "ivon_step", &s->step);
    if (st != P7_SUCCESS) {
        free(s->got_grad);
        free(s);
        return st;
    }
    *out = s;
    return P7_SUCCESS;
}

static void ivon_destroy(p7_opt_instance *s)
{
    free(s->got_grad);
    free(s);
}

static p7_status ivon_init_state(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    const p7_opt_host *h = s->host;
    for (size_t i = 0; i < count; i++)
        for (unsigned k = 0; k < SLOT_COUNT; k++) {
            float value = k == SLOT_HESS ? (float)group_hp(s, params[i].group)[HP_HESS_INIT] : 0.0f;
            p7_status st = h->fill(h, params[i].state[k], params[i].count, value);
            if (st != P7_SUCCESS) return st;
        }
    return P7_SUCCESS;
}

static p7_status ivon_set_hparam(p7_opt_instance *s, uint32_t group, uint32_t index, double value)
{
    if (group >= s->groups || index >= HP_COUNT) return s->host->fail(s->host, P7_ERROR_INVALID_ARGUMENT, "bad index");
    /* h already holds hess_init; changing it later only changes rescale_lr's factor, as
     * in the reference, where hess_init is read at every step. */
    s->hp[group][index] = value;
    return P7_SUCCESS;
}

static p7_status ivon_sample(p7_opt_instance *s, const p7_opt_param *params, size_t count, const p7_opt_buf *eps)
{
    const p7_opt_host *h = s->host;
    if (count != s->count) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "%zu parameters, created with %zu", count, s->count);
    if (s->sampled)
        return h->fail(h, P7_ERROR_STATE, "sample() while sampled weights are in place: call restore() first");
    for (size_t i = 0; i < count; i++) {
        const p7_opt_param *v = &params[i];
        const double *hp = group_hp(s, v->group);
        /* One stream per (draw, parameter): counter-based, so a resumed run redraws the
         * same noise from the saved draw count. */
        p7_status st = eps ? h->copy(h, v->state[SLOT_NOISE], eps[i], v->count)
                           : h->randn(h, v->state[SLOT_NOISE], v->count, h->seed, (s->draws << 24) | v->index);
        if (st != P7_SUCCESS) return st;
        float ess = (float)hp[HP_ESS], wd = (float)hp[HP_WEIGHT_DECAY];
        cl_ulong po = v->param.offset, ho = v->state[SLOT_HESS].offset, mo = v->state[SLOT_MEAN].offset,
                 no = v->state[SLOT_NOISE].offset, n = v->count;
        const p7_opt_arg args[] = {
            P7_OPT_ARG(v->param.mem), P7_OPT_ARG(po), P7_OPT_ARG(v->state[SLOT_HESS].mem), P7_OPT_ARG(ho),
            P7_OPT_ARG(v->state[SLOT_MEAN].mem), P7_OPT_ARG(mo), P7_OPT_ARG(v->state[SLOT_NOISE].mem), P7_OPT_ARG(no),
            P7_OPT_ARG(n), P7_OPT_ARG(ess), P7_OPT_ARG(wd),
        };
        st = h->launch(h, s->sample, "ivon.sample", items(v), sizeof args / sizeof args[0], args);
        if (st != P7_SUCCESS) return st;
    }
    s->draws++;
    s->sampled = 1;
    return P7_SUCCESS;
}

static p7_status ivon_restore(p7_opt_instance *s, const p7_opt_param *params, size_t count, int accumulate)
{
    const p7_opt_host *h = s->host;
    if (count != s->count) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "%zu parameters, created with %zu", count, s->count);
    if (!s->sampled) return h->fail(h, P7_ERROR_STATE, "restore() without a sample(): nothing to restore");
    float k = accumulate ? (float)(s->k + 1) : 1.0f;
    for (size_t i = 0; i < count; i++) {
        const p7_opt_param *v = &params[i];
        /* A parameter without a gradient counts as gradient zero in this sample (the
         * reference crashes); its buffer argument must still be valid, so the mean
         * stands in for it. One that gets none in any sample is skipped by step. */
        cl_int has_grad = v->grad.mem != NULL, acc = accumulate != 0;
        cl_mem g = has_grad ? v->grad.mem : v->state[SLOT_MEAN].mem;
        cl_ulong po = v->param.offset, go = has_grad ? v->grad.offset : v->state[SLOT_MEAN].offset,
                 mo = v->state[SLOT_MEAN].offset, no = v->state[SLOT_NOISE].offset,
                 ao = v->state[SLOT_AVG_GRAD].offset, bo = v->state[SLOT_AVG_NXG].offset, n = v->count;
        const p7_opt_arg args[] = {
            P7_OPT_ARG(v->param.mem), P7_OPT_ARG(po), P7_OPT_ARG(g), P7_OPT_ARG(go), P7_OPT_ARG(has_grad),
            P7_OPT_ARG(v->state[SLOT_MEAN].mem), P7_OPT_ARG(mo), P7_OPT_ARG(v->state[SLOT_NOISE].mem), P7_OPT_ARG(no),
            P7_OPT_ARG(v->state[SLOT_AVG_GRAD].mem), P7_OPT_ARG(ao), P7_OPT_ARG(v->state[SLOT_AVG_NXG].mem),
            P7_OPT_ARG(bo), P7_OPT_ARG(n), P7_OPT_ARG(acc), P7_OPT_ARG(k),
        };
        p7_status st = h->launch(h, s->restore, "ivon.restore", items(v), sizeof args / sizeof args[0], args);
        if (st != P7_SUCCESS) return st;
        if (accumulate && has_grad) s->got_grad[i] = 1;
    }
    s->sampled = 0;
    if (accumulate) s->k++;
    return P7_SUCCESS;
}

static p7_status ivon_step(p7_opt_instance *s, const p7_opt_param *params, size_t count)
{
    const p7_opt_host *h = s->host;
    if (count != s->count) return h->fail(h, P7_ERROR_INVALID_ARGUMENT, "%zu parameters, created with %zu", count, s->count);
    if (s->sampled)
        return h->fail(h, P7_ERROR_STATE, "step() while sampled weights are in place: call restore(accumulate=1) first");
    if (s->k == 0)
        return h->fail(h, P7_ERROR_STATE,
                       "step() without a sample: IVON needs at least one sample(), forward/backward, "
                       "restore(accumulate=1) before each step");
    s->t++;
    for (size_t i = 0; i < count; i++) {
        const p7_opt_param *v = &params[i];
        /* No gradient in any sample: weight, momentum and h stay as they are, as SGD and
         * Adam (and torch) leave a parameter whose grad is None. */
        if (!s->got_grad[i]) continue;
        const double *hp = group_hp(s, v->group);
        double b1 = hp[HP_BETA1], b2 = hp[HP_BETA2], wdd = hp[HP_WEIGHT_DECAY];
        double omb2 = 1.0 - b2; /* formed once and squared: never b2*b2 - 2*b2 + 1 */
        float beta1 = (float)b1, omb1f = (float)(1.0 - b1), beta2 = (float)b2, omb2f = (float)omb2;
        float omb2_sq = (float)(omb2 * omb2), ess = (float)hp[HP_ESS], wd = (float)wdd;
        float lr = (float)(hp[HP_RESCALE_LR] != 0.0 ? hp[HP_LR] * (hp[HP_HESS_INIT] + wdd) : hp[HP_LR]);
        float debias = (float)(hp[HP_DEBIAS] != 0.0 ? 1.0 - pow(b1, (double)s->t) : 1.0);
        float clip = (float)hp[HP_CLIP_RADIUS];
        cl_ulong po = v->param.offset, mo = v->state[SLOT_MOMENTUM].offset, ho = v->state[SLOT_HESS].offset,
                 ao = v->state[SLOT_AVG_GRAD].offset, bo = v->state[SLOT_AVG_NXG].offset, n = v->count;
        const p7_opt_arg args[] = {
            P7_OPT_ARG(v->param.mem), P7_OPT_ARG(po), P7_OPT_ARG(v->state[SLOT_MOMENTUM].mem), P7_OPT_ARG(mo),
            P7_OPT_ARG(v->state[SLOT_HESS].mem), P7_OPT_ARG(ho), P7_OPT_ARG(v->state[SLOT_AVG_GRAD].mem),
            P7_OPT_ARG(ao), P7_OPT_ARG(v->state[SLOT_AVG_NXG].mem), P7_OPT_ARG(bo), P7_OPT_ARG(n),
            P7_OPT_ARG(beta1), P7_OPT_ARG(omb1f), P7_OPT_ARG(beta2), P7_OPT_ARG(omb2f), P7_OPT_ARG(omb2_sq),
            P7_OPT_ARG(ess), P7_OPT_ARG(wd), P7_OPT_ARG(lr), P7_OPT_ARG(debias), P7_OPT_ARG(clip),
        };
        p7_status st = h->launch(h, s->step, "ivon.step", items(v), sizeof args / sizeof args[0], args);
        if (st != P7_SUCCESS) return st;
    }
    s->k = 0;
    memset(s->got_grad, 0, s->count);
    return P7_SUCCESS;
}

/* Blob, state version 2: 32 bytes (u32 layout 1, u32 k, u32 sampled, u32 reserved, u64 t,
 * u64 draws), then one byte per parameter: a gradient came in since the last step.
 * Version 1 was the 32 bytes alone, when every parameter took part in every step. */
#define BLOB_HEAD 32

static p7_status ivon_save(const p7_opt_instance *s, void *blob, size_t capacity, size_t *size)
{
    *size = BLOB_HEAD + s->count;
    if (!blob) return P7_SUCCESS;
    if (capacity < *size) return s->host->fail(s->host, P7_ERROR_INVALID_ARGUMENT, "save: blob too small");
    unsigned char *b = blob;
    uint32_t head[4] = {1, s->k, s->sampled, 0};
    memcpy(b, head, 16);
    memcpy(b + 16, &s->t, 8);
    memcpy(b + 24, &s->draws, 8);
    memcpy(b + BLOB_HEAD, s->got_grad, s->count);
    return P7_SUCCESS;
}

static p7_status ivon_load(p7_opt_instance *s, uint32_t state_version, const void *blob, size_t size)
{
    const p7_opt_host *h = s->host;
    size_t want = state_version == 1 ? BLOB_HEAD : BLOB_HEAD + s->count;
    if ((state_version != 1 && state_version != 2) || size != want)
        return h->fail(h, P7_ERROR_FORMAT,
                       "state version %u (%zu bytes); this plugin reads version 1 (%d bytes) and 2 (%zu bytes for %zu "
                       "parameters)",
                       state_version, size, BLOB_HEAD, (size_t)BLOB_HEAD + s->count, s->count);
    const unsigned char *b = blob;
    uint32_t head[4];
    memcpy(head, b, 16);
    if (head[0] != 1) return h->fail(h, P7_ERROR_FORMAT, "blob layout %u is not 1", head[0]);
    s->k = head[1];
    s->sampled = head[2] != 0;
    memcpy(&s->t, b + 16, 8);
    memcpy(&s->draws, b + 24, 8);
    /* version 1 updated every parameter: a step begun under it finishes the same way */
    if (state_version == 1) memset(s->got_grad, s->k > 0, s->count);
    else memcpy(s->got_grad, b + BLOB_HEAD, s->count);
    return P7_SUCCESS;
}

static const p7_opt_plugin ivon_plugin = {
    .struct_size = sizeof(p7_opt_plugin),
    .abi_major = P7_OPT_ABI_MAJOR,
    .abi_minor = P7_OPT_ABI_MINOR,
    .name = "ivon",
    .description = "IVON: variational learning with a diagonal Gaussian posterior (sample/restore per MC draw)",
    .version = 2,
    .state_version = 2,
    .caps = P7_OPT_CAP_SAMPLE,
    .slot_count = SLOT_COUNT,
    .slot_names = ivon_slots,
    .hparam_count = HP_COUNT,
    .hparams = ivon_hparams,
    .create = ivon_create,
    .destroy = ivon_destroy,
    .init_state = ivon_init_state,
    .set_hparam = ivon_set_hparam,
    .step = ivon_step,
    .save = ivon_save,
    .load = ivon_load,
    .sample = ivon_sample,
    .restore = ivon_restore,
};

P7_OPT_EXPORT const p7_opt_plugin *p7_optimizer_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor)
{
    (void)host_abi_major; /* the host compares ABI numbers and explains a mismatch */
    (void)host_abi_minor;
    return &ivon_plugin;
}
