/* An optimizer instance: the host side of the plugin ABI (services, state slots,
 * hyperparameters, checkpoints, prediction). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optimizer/optimizer_internal.h"
#include "p7/ops.h"
#include "tensor/tensor_internal.h"
#include "runtime/p7_kernels.h"

typedef struct opt_program {
    char *key;           /* source name "\n" options */
    cl_program program;
} opt_program;

struct p7_optimizer {
    p7_device *device;
    p7_optimizer_plugin *plugin;
    const p7_opt_plugin *vt;
    p7_opt_host host;
    p7_opt_instance *inst;

    size_t count;
    p7_tensor **params;      /* retained */
    char **names;
    uint32_t *groups;
    uint32_t ngroups;
    p7_tensor **state;       /* count * slot_count, parameter-major; NULL for an unused slot */
    uint32_t slots_in_use;   /* bit s: slot s is allocated (slots_used at create) */
    double *hp;              /* ngroups * hparam_count, group-major */
    p7_opt_param *views;     /* rebuilt before every plugin call */
    p7_opt_buf *eps;         /* scratch for sample_noise */

    opt_program *programs;
    size_t nprograms;
    cl_kernel *kernels;
    size_t nkernels;
};

/* ---- host services ---- */

static p7_optimizer *opt_of(const p7_opt_host *h) { return (p7_optimizer *)h->host_data; }

static p7_status host_fail(const p7_opt_host *h, p7_status status, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (status >= 0) status = P7_ERROR_PLUGIN; /* a failure must not read as success */
    return p7_fail(status, "%s: %s", opt_of(h)->vt->name, msg);
}

static void host_log(const p7_opt_host *h, int level, const char *fmt, ...)
{
    /* p7 does not print on its own: plugin diagnostics appear only on request. */
    const char *env = getenv("P7_OPTIMIZER_LOG"); /* 1: info and warnings, 2: also debug */
    int want = env ? atoi(env) : 0;
    if (want <= 0 || (level <= P7_OPT_LOG_DEBUG && want < 2)) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[p7 optimizer %s] ", opt_of(h)->vt->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static p7_status host_build_kernel(const p7_opt_host *h, const char *source_name, const char *source,
                                   const char *options, const char *kernel_name, cl_kernel *out)
{
    p7_optimizer *o = opt_of(h);
    if (!source || !kernel_name || !out) return host_fail(h, P7_ERROR_INVALID_ARGUMENT, "build_kernel: NULL argument");
    if (!source_name) source_name = "plugin source";
    if (!options) options = "";
    size_t klen = strlen(source_name) + strlen(options) + 2;
    char *key = malloc(klen);
    if (!key) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer: out of host memory");
    snprintf(key, klen, "%s\n%s", source_name, options);
    cl_program program = NULL;
    for (size_t i = 0; i < o->nprograms; i++)
        if (strcmp(o->programs[i].key, key) == 0) program = o->programs[i].program;
    if (!program) {
        opt_program *grown = realloc(o->programs, (o->nprograms + 1) * sizeof *grown);
        if (!grown) { free(key); return p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer: out of host memory"); }
        o->programs = grown;
        char name[512];
        snprintf(name, sizeof name, "%s plugin: %s", o->vt->name, source_name);
        p7_status st = p7_program_build_source(o->device, name, source, options, &program);
        if (st != P7_SUCCESS) { free(key); return st; }
        o->programs[o->nprograms].key = key;
        o->programs[o->nprograms].program = program;
        o->nprograms++;
    } else {
        free(key);
    }
    cl_kernel *grown = realloc(o->kernels, (o->nkernels + 1) * sizeof *grown);
    if (!grown) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer: out of host memory");
    o->kernels = grown;
    cl_int err;
    cl_kernel k = clCreateKernel(program, kernel_name, &err);
    if (err != CL_SUCCESS)
        return p7_fail(err == CL_INVALID_KERNEL_NAME ? P7_ERROR_KERNEL_NOT_FOUND : (p7_status)err,
                       "%s plugin: %s has no kernel named %s (%s)", o->vt->name, source_name, kernel_name,
                       p7_status_string((p7_status)err));
    o->kernels[o->nkernels++] = k;
    *out = k;
    return P7_SUCCESS;
}

static p7_status host_launch(const p7_opt_host *h, cl_kernel kernel, const char *label, size_t global,
                             unsigned nargs, const p7_opt_arg *args)
{
    p7_optimizer *o = opt_of(h);
    if (!kernel || global == 0 || (nargs && !args))
        return host_fail(h, P7_ERROR_INVALID_ARGUMENT, "launch %s: NULL kernel, no work-items or no arguments",
                         label ? label : "");
    if (!label) label = o->vt->name;
    for (unsigned i = 0; i < nargs; i++) {
        cl_int err = clSetKernelArg(kernel, i, args[i].size, args[i].value);
        if (err != CL_SUCCESS)
            return p7_fail((p7_status)err, "%s: clSetKernelArg(%u, %zu bytes) failed: %s", label, i, args[i].size,
                           p7_status_string((p7_status)err));
    }
    return p7_launch(o->device, kernel, 1, &global, NULL, label);
}

static p7_status host_fill(const p7_opt_host *h, p7_opt_buf dst, uint64_t count, float value)
{
    if (count == 0) return P7_SUCCESS;
    P7_CL_TRY(clEnqueueFillBuffer(h->queue, dst.mem, &value, sizeof value, (size_t)dst.offset * sizeof(float),
                                  (size_t)count * sizeof(float), 0, NULL, NULL),
              "optimizer fill");
    return P7_SUCCESS;
}

static p7_status host_copy(const p7_opt_host *h, p7_opt_buf dst, p7_opt_buf src, uint64_t count)
{
    if (count == 0) return P7_SUCCESS;
    P7_CL_TRY(clEnqueueCopyBuffer(h->queue, src.mem, dst.mem, (size_t)src.offset * sizeof(float),
                                  (size_t)dst.offset * sizeof(float), (size_t)count * sizeof(float), 0, NULL, NULL),
              "optimizer copy");
    return P7_SUCCESS;
}

static p7_status host_randn(const p7_opt_host *h, p7_opt_buf dst, uint64_t count, uint64_t seed, uint64_t stream)
{
    return p7_fill_normal_mem(opt_of(h)->device, dst.mem, dst.offset, count, seed, stream, 0.0f, 1.0f,
                              "optimizer randn");
}

/* ---- views ---- */

static void build_views(p7_optimizer *o)
{
    unsigned slots = o->vt->slot_count;
    for (size_t i = 0; i < o->count; i++) {
        p7_opt_param *v = &o->views[i];
        memset(v, 0, sizeof *v);
        v->param.mem = p7_tensor_mem(o->params[i]);
        v->param.offset = p7_tensor_offset(o->params[i]);
        p7_tensor *g = p7_tensor_grad(o->params[i]);
        if (g) {
            v->grad.mem = p7_tensor_mem(g);
            v->grad.offset = p7_tensor_offset(g);
        }
        for (unsigned s = 0; s < slots; s++) {
            p7_tensor *t = o->state[i * slots + s];
            v->state[s].mem = p7_tensor_mem(t);
            v->state[s].offset = p7_tensor_offset(t);
        }
        v->count = p7_tensor_numel(o->params[i]);
        v->group = o->groups[i];
        v->index = (uint32_t)i;
        v->name = o->names[i];
    }
}

/* ---- create / destroy ---- */

typedef struct assign_ctx {
    p7_optimizer *o;
    int group; /* -1: every group */
} assign_ctx;

static p7_status assign_initial(void *ctx, int index, double value)
{
    assign_ctx *a = ctx;
    for (uint32_t g = 0; g < a->o->ngroups; g++) a->o->hp[g * a->o->vt->hparam_count + (uint32_t)index] = value;
    return P7_SUCCESS;
}

static int lowest_bit(uint32_t mask)
{
    int bit = 0;
    while (mask && !(mask & 1u)) {
        mask >>= 1;
        bit++;
    }
    return bit;
}

/* The slots a plugin uses with hyperparameters `hp` (every slot unless it says otherwise). */
static p7_status slots_used(const p7_opt_plugin *vt, const double *hp, uint32_t ngroups, uint32_t *mask)
{
    uint32_t all = vt->slot_count >= 32 ? UINT32_MAX : (1u << vt->slot_count) - 1;
    *mask = all;
    if (!P7_OPT_PLUGIN_HAS(vt, slots_used) || !vt->slots_used) return P7_SUCCESS;
    uint32_t used = vt->slots_used(hp, ngroups);
    if (used & ~all)
        return p7_fail(P7_ERROR_PLUGIN, "%s: slots_used returned 0x%x, which names slots beyond its %u (bit %d)",
                       vt->name, (unsigned)used, (unsigned)vt->slot_count, lowest_bit(used & ~all));
    *mask = used;
    return P7_SUCCESS;
}

/* P7_SUCCESS when hyperparameters `hp` need no slot beyond those allocated; else an error
 * naming the first missing slot and `what` (the change asked for). */
static p7_status check_slots_for(const p7_optimizer *o, const double *hp, const char *what)
{
    uint32_t need;
    P7_TRY(slots_used(o->vt, hp, o->ngroups, &need));
    uint32_t missing = need & ~o->slots_in_use;
    if (!missing) return P7_SUCCESS;
    int s = lowest_bit(missing);
    return p7_fail(P7_ERROR_PLUGIN,
                   "%s: %s needs state slot '%s', which this optimizer did not allocate (its hyperparameters at "
                   "create did not use it); create the optimizer with that setting instead",
                   o->vt->name, what, o->vt->slot_names[s] ? o->vt->slot_names[s] : "(unnamed)");
}

void p7_optimizer_destroy(p7_optimizer *o)
{
    if (!o) return;
    /* The plugin goes first, while its kernels and the state still exist; dlclose last,
     * since destroy's code lives in the plugin. */
    if (o->inst) o->vt->destroy(o->inst);
    if (o->device) p7_device_finish(o->device);
    for (size_t i = 0; i < o->nkernels; i++) clReleaseKernel(o->kernels[i]);
    for (size_t i = 0; i < o->nprograms; i++) {
        clReleaseProgram(o->programs[i].program);
        free(o->programs[i].key);
    }
    free(o->kernels);
    free(o->programs);
    if (o->state)
        for (size_t i = 0; i < o->count * o->vt->slot_count; i++) p7_tensor_release(o->state[i]);
    if (o->params)
        for (size_t i = 0; i < o->count; i++) p7_tensor_release(o->params[i]);
    if (o->names)
        for (size_t i = 0; i < o->count; i++) free(o->names[i]);
    free(o->names);
    free(o->params);
    free(o->state);
    free(o->groups);
    free(o->hp);
    free(o->views);
    free(o->eps);
    p7_optimizer_plugin_close(o->plugin);
    free(o);
}

static p7_status create_common(p7_device *device, const char *spec, p7_tensor *const *params, const char *const *names,
                               size_t count, const p7_optimizer_options *options, p7_optimizer **out)
{
    if (!device || !spec || !out || (count && !params))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_create: NULL argument");
    *out = NULL;
    if (count == 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_create: no parameters");
    p7_optimizer_options defaults = {0};
    if (!options) options = &defaults;
    for (size_t i = 0; i < count; i++) {
        if (!params[i]) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_create: parameter %zu is NULL", i);
        if (p7_tensor_device(params[i]) != device)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_create: parameter %zu is on another device", i);
        for (size_t j = 0; j < i; j++)
            if (params[j] == params[i])
                return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                               "p7_optimizer_create: parameter %zu is listed twice (also at %zu)", i, j);
        if (options->groups && options->groups[i] >= P7_OPT_MAX_GROUPS)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_create: parameter %zu has group %u >= %d", i,
                           (unsigned)options->groups[i], P7_OPT_MAX_GROUPS);
    }

    p7_optimizer *o = calloc(1, sizeof *o);
    if (!o) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_optimizer_create: out of host memory");
    p7_status st = p7_optimizer_plugin_open(spec, &o->plugin);
    if (st != P7_SUCCESS) { free(o); return st; }
    o->vt = o->plugin->vt;
    o->device = device;
    const p7_opt_plugin *vt = o->vt;
    unsigned slots = vt->slot_count;

    o->count = count;
    o->params = calloc(count, sizeof *o->params);
    o->names = calloc(count, sizeof *o->names);
    o->groups = calloc(count, sizeof *o->groups);
    o->state = calloc(count * (slots ? slots : 1), sizeof *o->state);
    o->views = calloc(count, sizeof *o->views);
    o->eps = calloc(count, sizeof *o->eps);
    if (!o->params || !o->names || !o->groups || !o->state || !o->views || !o->eps) {
        p7_optimizer_destroy(o);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_optimizer_create: out of host memory");
    }
    o->ngroups = 1;
    for (size_t i = 0; i < count; i++) {
        o->params[i] = p7_tensor_retain(params[i]);
        o->names[i] = strdup(names && names[i] ? names[i] : "");
        o->groups[i] = options->groups ? options->groups[i] : 0;
        if (o->groups[i] + 1 > o->ngroups) o->ngroups = o->groups[i] + 1;
        if (!o->names[i]) { p7_optimizer_destroy(o); return p7_fail(P7_ERROR_OUT_OF_MEMORY, "out of host memory"); }
    }

    o->hp = calloc((size_t)o->ngroups * (vt->hparam_count ? vt->hparam_count : 1), sizeof *o->hp);
    unsigned char *set = calloc(vt->hparam_count ? vt->hparam_count : 1, 1);
    if (!o->hp || !set) {
        free(set);
        p7_optimizer_destroy(o);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_optimizer_create: out of host memory");
    }
    assign_ctx actx = {o, -1};
    for (uint32_t i = 0; i < vt->hparam_count; i++) assign_initial(&actx, (int)i, vt->hparams[i].default_value);
    st = p7_opt_parse_assignments(vt, options->hparams, assign_initial, &actx, set);
    for (uint32_t i = 0; st == P7_SUCCESS && i < vt->hparam_count; i++)
        if ((vt->hparams[i].flags & P7_OPT_HP_DATASET_SIZE) && !set[i] && options->dataset_size) {
            st = p7_opt_hparam_check(vt, (int)i, (double)options->dataset_size);
            if (st == P7_SUCCESS) assign_initial(&actx, (int)i, (double)options->dataset_size);
        }
    /* The schema's own defaults are checked too: a plugin whose default is outside its
     * range is a plugin bug worth reporting at once. */
    for (uint32_t i = 0; st == P7_SUCCESS && i < vt->hparam_count; i++) st = p7_opt_hparam_check(vt, (int)i, o->hp[i]);
    free(set);
    if (st != P7_SUCCESS) { p7_optimizer_destroy(o); return st; }

    st = slots_used(vt, o->hp, o->ngroups, &o->slots_in_use);
    for (size_t i = 0; i < count && st == P7_SUCCESS; i++)
        for (unsigned s = 0; s < slots && st == P7_SUCCESS; s++) {
            int64_t n = (int64_t)p7_tensor_numel(params[i]);
            if (o->slots_in_use & (1u << s)) st = p7_tensor_create(device, 1, &n, &o->state[i * slots + s]);
        }
    if (st != P7_SUCCESS) { p7_optimizer_destroy(o); return st; }

    o->host.struct_size = sizeof o->host;
    o->host.abi_major = P7_OPT_ABI_MAJOR;
    o->host.abi_minor = P7_OPT_ABI_MINOR;
    o->host.host_data = o;
    o->host.context = device->context;
    o->host.device = device->id;
    o->host.queue = device->queue;
    o->host.seed = options->seed;
    o->host.build_kernel = host_build_kernel;
    o->host.launch = host_launch;
    o->host.fill = host_fill;
    o->host.copy = host_copy;
    o->host.randn = host_randn;
    o->host.log = host_log;
    o->host.fail = host_fail;

    build_views(o);
    st = vt->create(&o->host, o->hp, o->ngroups, o->views, count, &o->inst);
    if (st == P7_SUCCESS && !o->inst) st = p7_fail(P7_ERROR_PLUGIN, "%s: create returned no instance", vt->name);
    if (st == P7_SUCCESS) st = vt->init_state(o->inst, o->views, count);
    if (st != P7_SUCCESS) { p7_optimizer_destroy(o); return st; }
    *out = o;
    return P7_SUCCESS;
}

p7_status p7_optimizer_create(p7_device *device, const char *name_or_path, p7_tensor *const *params, size_t count,
                              const p7_optimizer_options *options, p7_optimizer **out)
{
    return create_common(device, name_or_path, params, NULL, count, options, out);
}

p7_status p7_optimizer_create_for_model(p7_model *model, const char *name_or_path,
                                        const p7_optimizer_options *options, p7_optimizer **out)
{
    if (!model || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_create_for_model: NULL argument");
    size_t n = p7_model_param_count(model);
    if (n == 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_create_for_model: the model has no parameters");
    p7_tensor **params = calloc(n, sizeof *params);
    const char **names = calloc(n, sizeof *names);
    if (!params || !names) {
        free(params);
        free(names);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_optimizer_create_for_model: out of host memory");
    }
    for (size_t i = 0; i < n; i++) params[i] = p7_model_param(model, i, &names[i]);
    p7_status st = create_common(p7_tensor_device(params[0]), name_or_path, params, names, n, options, out);
    free(params);
    free(names);
    return st;
}

const p7_opt_plugin *p7_optimizer_table(const p7_optimizer *o) { return o ? o->vt : NULL; }
const char *p7_optimizer_name(const p7_optimizer *o) { return o ? o->vt->name : ""; }

p7_tensor *p7_optimizer_state(const p7_optimizer *o, size_t param, unsigned slot)
{
    if (!o || param >= o->count || slot >= o->vt->slot_count) return NULL;
    return o->state[param * o->vt->slot_count + slot];
}

p7_status p7_optimizer_state_by_name(const p7_optimizer *o, size_t param, const char *slot_name, p7_tensor **out)
{
    if (out) *out = NULL;
    if (!o || !slot_name || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_state_by_name: NULL argument");
    if (param >= o->count)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: parameter %zu is out of range: the optimizer has %zu parameters",
                       o->vt->name, param, o->count);
    const p7_opt_plugin *vt = o->vt;
    for (unsigned s = 0; s < vt->slot_count; s++)
        if (vt->slot_names[s] && strcmp(vt->slot_names[s], slot_name) == 0) {
            if (!(o->slots_in_use & (1u << s)))
                return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                               "%s: state slot '%s' is not in use with this optimizer's hyperparameters", vt->name,
                               vt->slot_names[s]);
            *out = o->state[param * vt->slot_count + s];
            return P7_SUCCESS;
        }
    char names[512] = "";
    size_t used = 0;
    for (unsigned s = 0; s < vt->slot_count && used < sizeof names; s++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", s ? ", " : "",
                                 vt->slot_names[s] ? vt->slot_names[s] : "(unnamed)");
    return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s has no state slot named '%s'; its slots are: %s", vt->name,
                   p7_abbrev(slot_name), vt->slot_count ? names : "(none)");
}

size_t p7_optimizer_param_count(const p7_optimizer *o) { return o ? o->count : 0; }

unsigned p7_optimizer_slots_in_use(const p7_optimizer *o)
{
    if (!o) return 0;
    unsigned n = 0;
    for (uint32_t s = 0; s < o->vt->slot_count; s++) n += (o->slots_in_use >> s) & 1u;
    return n;
}

/* ---- hyperparameters ---- */

static p7_status set_one(p7_optimizer *o, int group, int index, double value)
{
    P7_TRY(p7_opt_hparam_check(o->vt, index, value));
    uint32_t n = o->vt->hparam_count;
    if (P7_OPT_PLUGIN_HAS(o->vt, slots_used) && o->vt->slots_used) {
        double *hp = malloc((size_t)o->ngroups * n * sizeof *hp);
        if (!hp) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_optimizer_set: out of host memory");
        memcpy(hp, o->hp, (size_t)o->ngroups * n * sizeof *hp);
        for (uint32_t g = 0; g < o->ngroups; g++)
            if (group < 0 || (uint32_t)group == g) hp[g * n + (uint32_t)index] = value;
        char what[160];
        snprintf(what, sizeof what, "%s = %g", o->vt->hparams[index].name, value);
        p7_status st = check_slots_for(o, hp, what);
        free(hp);
        if (st != P7_SUCCESS) return st;
    }
    for (uint32_t g = 0; g < o->ngroups; g++) {
        if (group >= 0 && (uint32_t)group != g) continue;
        double old = o->hp[g * n + (uint32_t)index];
        o->hp[g * n + (uint32_t)index] = value;
        p7_status st = o->vt->set_hparam(o->inst, g, (uint32_t)index, value);
        if (st != P7_SUCCESS) {
            o->hp[g * n + (uint32_t)index] = old;
            return st;
        }
    }
    return P7_SUCCESS;
}

p7_status p7_optimizer_set_group(p7_optimizer *o, uint32_t group, const char *name, double value)
{
    if (!o || !name) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_set: NULL argument");
    if (group >= o->ngroups)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_set: group %u, but the optimizer has %u", (unsigned)group,
                       (unsigned)o->ngroups);
    int index = p7_opt_hparam_find(o->vt, name);
    if (index < 0) return p7_opt_unknown_hparam(o->vt, name);
    return set_one(o, (int)group, index, value);
}

p7_status p7_optimizer_set(p7_optimizer *o, const char *name, double value)
{
    if (!o || !name) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_set: NULL argument");
    int index = p7_opt_hparam_find(o->vt, name);
    if (index < 0) return p7_opt_unknown_hparam(o->vt, name);
    return set_one(o, -1, index, value);
}

p7_status p7_optimizer_get(const p7_optimizer *o, uint32_t group, const char *name, double *value)
{
    if (!o || !name || !value) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_get: NULL argument");
    if (group >= o->ngroups) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_get: no group %u", (unsigned)group);
    int index = p7_opt_hparam_find(o->vt, name);
    if (index < 0) return p7_opt_unknown_hparam(o->vt, name);
    *value = o->hp[group * o->vt->hparam_count + (uint32_t)index];
    return P7_SUCCESS;
}

static p7_status assign_live(void *ctx, int index, double value)
{
    assign_ctx *a = ctx;
    return set_one(a->o, a->group, index, value);
}

p7_status p7_optimizer_set_text(p7_optimizer *o, const char *assignments)
{
    if (!o) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_set_text: NULL optimizer");
    assign_ctx a = {o, -1};
    return p7_opt_parse_assignments(o->vt, assignments, assign_live, &a, NULL);
}

unsigned p7_optimizer_mc_samples(const p7_optimizer *o)
{
    if (!o) return 1;
    int index = p7_opt_hparam_find(o->vt, "mc_samples");
    if (index < 0) return 1;
    double v = o->hp[index];
    return v >= 1.0 ? (unsigned)v : 1u;
}

int p7_optimizer_samples_weights(const p7_optimizer *o) { return o && (o->vt->caps & P7_OPT_CAP_SAMPLE); }

/* ---- training ---- */

p7_status p7_optimizer_step(p7_optimizer *o)
{
    if (!o) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_step: NULL optimizer");
    build_views(o);
    return o->vt->step(o->inst, o->views, o->count);
}

p7_status p7_optimizer_sample_noise(p7_optimizer *o, p7_tensor *const *eps)
{
    if (!o) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_sample: NULL optimizer");
    if (!(o->vt->caps & P7_OPT_CAP_SAMPLE)) return P7_SUCCESS;
    if (eps)
        for (size_t i = 0; i < o->count; i++) {
            if (!eps[i] || p7_tensor_numel(eps[i]) != p7_tensor_numel(o->params[i]))
                return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                               "p7_optimizer_sample_noise: noise %zu is missing or has %zu elements, not %zu", i,
                               eps[i] ? p7_tensor_numel(eps[i]) : 0, p7_tensor_numel(o->params[i]));
            o->eps[i].mem = p7_tensor_mem(eps[i]);
            o->eps[i].offset = p7_tensor_offset(eps[i]);
        }
    build_views(o);
    return o->vt->sample(o->inst, o->views, o->count, eps ? o->eps : NULL);
}

p7_status p7_optimizer_sample(p7_optimizer *o) { return p7_optimizer_sample_noise(o, NULL); }

p7_status p7_optimizer_restore(p7_optimizer *o, int accumulate)
{
    if (!o) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_restore: NULL optimizer");
    if (!(o->vt->caps & P7_OPT_CAP_SAMPLE)) return P7_SUCCESS;
    build_views(o);
    return o->vt->restore(o->inst, o->views, o->count, accumulate);
}

/* ---- checkpoints ---- */

static const char MAGIC[8] = {'P', '7', 'O', 'P', 'T', 'S', 'T', '\0'};
#define FORMAT_VERSION 1u
#define ENDIAN_MARK 0x01020304u

static int w_bytes(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }
static int w_u32(FILE *f, uint32_t v) { return w_bytes(f, &v, sizeof v); }
static int w_u64(FILE *f, uint64_t v) { return w_bytes(f, &v, sizeof v); }
static int w_str(FILE *f, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    return w_u32(f, n) && w_bytes(f, s, n);
}
static int r_bytes(FILE *f, void *p, size_t n) { return n == 0 || fread(p, 1, n, f) == n; }
static int r_u32(FILE *f, uint32_t *v) { return r_bytes(f, v, sizeof *v); }
static int r_u64(FILE *f, uint64_t *v) { return r_bytes(f, v, sizeof *v); }
static int r_str(FILE *f, char *buf, size_t size)
{
    uint32_t n;
    if (!r_u32(f, &n) || n >= size) return 0;
    buf[n] = '\0';
    return r_bytes(f, buf, n);
}

p7_status p7_optimizer_save_stream(p7_optimizer *o, FILE *f)
{
    if (!o || !f) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_save: NULL argument");
    const p7_opt_plugin *vt = o->vt;
    size_t blob_size = 0;
    P7_TRY(vt->save(o->inst, NULL, 0, &blob_size));
    unsigned char *blob = blob_size ? malloc(blob_size) : NULL;
    if (blob_size && !blob) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_optimizer_save: out of host memory");
    size_t written = blob_size;
    p7_status st = blob_size ? vt->save(o->inst, blob, blob_size, &written) : P7_SUCCESS;
    if (st != P7_SUCCESS) { free(blob); return st; }

    int ok = w_bytes(f, MAGIC, sizeof MAGIC) && w_u32(f, ENDIAN_MARK) && w_u32(f, FORMAT_VERSION) &&
             w_str(f, vt->name) && w_u32(f, vt->version) && w_u32(f, vt->state_version) &&
             w_u32(f, vt->hparam_count) && w_u32(f, o->ngroups);
    for (uint32_t i = 0; ok && i < vt->hparam_count; i++) {
        ok = w_str(f, vt->hparams[i].name);
        for (uint32_t g = 0; ok && g < o->ngroups; g++)
            ok = w_bytes(f, &o->hp[g * vt->hparam_count + i], sizeof(double));
    }
    ok = ok && w_u64(f, o->count) && w_u32(f, vt->slot_count);
    float *host = NULL;
    size_t host_cap = 0;
    for (size_t i = 0; ok && st == P7_SUCCESS && i < o->count; i++) {
        size_t n = p7_tensor_numel(o->params[i]);
        ok = w_u64(f, n);
        if (n > host_cap) {
            float *grown = realloc(host, n * sizeof *host);
            if (!grown) { st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_optimizer_save: out of host memory"); break; }
            host = grown;
            host_cap = n;
        }
        for (unsigned s = 0; ok && st == P7_SUCCESS && s < vt->slot_count; s++) {
            /* an unused slot is written as zeros: one file layout whatever the hyperparameters */
            p7_tensor *t = o->state[i * vt->slot_count + s];
            if (t) st = p7_tensor_download(t, host, n);
            else memset(host, 0, n * sizeof *host);
            ok = st == P7_SUCCESS && w_bytes(f, host, n * sizeof *host);
        }
    }
    ok = ok && st == P7_SUCCESS && w_u64(f, written) && w_bytes(f, blob, written);
    free(host);
    free(blob);
    if (st != P7_SUCCESS) return st;
    if (!ok) return p7_fail(P7_ERROR_IO, "p7_optimizer_save: write failed");
    return P7_SUCCESS;
}

p7_status p7_optimizer_load_stream(p7_optimizer *o, FILE *f)
{
    if (!o || !f) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_load_state: NULL argument");
    const p7_opt_plugin *vt = o->vt;
    char magic[8], name[256];
    uint32_t mark, format, version, state_version, nhp, ngroups, slots;
    if (!r_bytes(f, magic, sizeof magic) || memcmp(magic, MAGIC, sizeof MAGIC) != 0)
        return p7_fail(P7_ERROR_FORMAT, "optimizer state: not a p7 optimizer state file (bad magic)");
    if (!r_u32(f, &mark) || mark != ENDIAN_MARK)
        return p7_fail(P7_ERROR_FORMAT, "optimizer state: written on a host of another byte order");
    if (!r_u32(f, &format) || format != FORMAT_VERSION)
        return p7_fail(P7_ERROR_FORMAT, "optimizer state: format version %u, this p7 reads %u", (unsigned)format,
                       FORMAT_VERSION);
    if (!r_str(f, name, sizeof name) || !r_u32(f, &version) || !r_u32(f, &state_version) || !r_u32(f, &nhp) ||
        !r_u32(f, &ngroups))
        return p7_fail(P7_ERROR_FORMAT, "optimizer state: truncated header");
    if (strcmp(name, vt->name) != 0)
        return p7_fail(P7_ERROR_FORMAT, "optimizer state was written by plugin '%s', this optimizer is '%s'", name,
                       vt->name);
    if (ngroups != o->ngroups)
        return p7_fail(P7_ERROR_FORMAT, "optimizer state has %u parameter groups, this optimizer %u",
                       (unsigned)ngroups, (unsigned)o->ngroups);

    p7_status st = P7_SUCCESS;
    double *hp = malloc((size_t)o->ngroups * (vt->hparam_count ? vt->hparam_count : 1) * sizeof *hp);
    if (!hp) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer state: out of host memory");
    memcpy(hp, o->hp, (size_t)o->ngroups * vt->hparam_count * sizeof *hp);
    for (uint32_t i = 0; st == P7_SUCCESS && i < nhp; i++) {
        char hname[256];
        double v[P7_OPT_MAX_GROUPS];
        if (!r_str(f, hname, sizeof hname) || ngroups > P7_OPT_MAX_GROUPS || !r_bytes(f, v, ngroups * sizeof(double))) {
            st = p7_fail(P7_ERROR_FORMAT, "optimizer state: truncated hyperparameters");
            break;
        }
        int index = p7_opt_hparam_find(vt, hname);
        if (index < 0) continue; /* a hyperparameter this plugin version dropped */
        for (uint32_t g = 0; g < ngroups; g++) hp[g * vt->hparam_count + (uint32_t)index] = v[g];
    }
    uint64_t count = 0;
    if (st == P7_SUCCESS && (!r_u64(f, &count) || !r_u32(f, &slots)))
        st = p7_fail(P7_ERROR_FORMAT, "optimizer state: truncated");
    if (st == P7_SUCCESS && (count != o->count || slots != vt->slot_count))
        st = p7_fail(P7_ERROR_FORMAT, "optimizer state holds %llu parameters x %u slots; this optimizer has %zu x %u",
                     (unsigned long long)count, (unsigned)slots, o->count, (unsigned)vt->slot_count);
    /* Read and check everything before touching the optimizer: all or nothing. The
     * sizes come from the optimizer, not the file, so a hostile file cannot make the
     * staging area large. */
    size_t total = 0;
    for (size_t i = 0; i < o->count; i++) total += p7_tensor_numel(o->params[i]) * vt->slot_count;
    float *staged = NULL;
    if (st == P7_SUCCESS && total) {
        staged = malloc(total * sizeof *staged);
        if (!staged) st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer state: out of host memory");
    }
    float *at = staged;
    for (size_t i = 0; st == P7_SUCCESS && i < o->count; i++) {
        uint64_t n;
        if (!r_u64(f, &n)) { st = p7_fail(P7_ERROR_FORMAT, "optimizer state: truncated"); break; }
        if (n != p7_tensor_numel(o->params[i])) {
            st = p7_fail(P7_ERROR_FORMAT, "optimizer state: parameter %zu (%s) has %llu elements in the file, %zu here",
                         i, o->names[i], (unsigned long long)n, p7_tensor_numel(o->params[i]));
            break;
        }
        for (unsigned s = 0; st == P7_SUCCESS && s < slots; s++, at += n)
            if (!r_bytes(f, at, (size_t)n * sizeof *at)) st = p7_fail(P7_ERROR_FORMAT, "optimizer state: truncated");
    }
    uint64_t blob_size = 0;
    unsigned char *blob = NULL;
    if (st == P7_SUCCESS && !r_u64(f, &blob_size)) st = p7_fail(P7_ERROR_FORMAT, "optimizer state: truncated");
    if (st == P7_SUCCESS && blob_size > ((uint64_t)1 << 30))
        st = p7_fail(P7_ERROR_FORMAT, "optimizer state: implausible blob of %llu bytes", (unsigned long long)blob_size);
    if (st == P7_SUCCESS && blob_size) {
        blob = malloc((size_t)blob_size);
        if (!blob) st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer state: out of host memory");
        else if (!r_bytes(f, blob, (size_t)blob_size)) st = p7_fail(P7_ERROR_FORMAT, "optimizer state: truncated blob");
    }
    for (uint32_t g = 0; st == P7_SUCCESS && g < o->ngroups; g++)
        for (uint32_t i = 0; st == P7_SUCCESS && i < vt->hparam_count; i++)
            st = p7_opt_hparam_check(vt, (int)i, hp[g * vt->hparam_count + i]);
    if (st == P7_SUCCESS) st = check_slots_for(o, hp, "the state file (its hyperparameters)");
    /* The plugin's own state as it is now, to put back if a later step refuses. */
    size_t old_size = 0;
    unsigned char *old_blob = NULL;
    if (st == P7_SUCCESS) st = vt->save(o->inst, NULL, 0, &old_size);
    if (st == P7_SUCCESS && old_size) {
        old_blob = malloc(old_size);
        if (!old_blob) st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer state: out of host memory");
        else st = vt->save(o->inst, old_blob, old_size, &old_size);
    }
    /* Hyperparameters after the blob: a schedule's current lr is part of the
     * checkpoint. A plugin may refuse a combination on the way (SGD refuses nesterov
     * without momentum, so momentum=0 cannot precede nesterov=0): passes repeat the
     * refused ones until all are in or a pass makes no progress. Undoing the applied
     * ones in reverse order revisits only states the plugin accepted. */
    uint32_t nh = vt->hparam_count, nall = o->ngroups * nh, applied = 0;
    uint32_t *order = NULL;
    unsigned char *done = NULL;
    if (st == P7_SUCCESS && nall) {
        order = malloc(nall * sizeof *order);
        done = calloc(nall, 1);
        if (!order || !done) st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer state: out of host memory");
    }
    if (st == P7_SUCCESS) st = vt->load(o->inst, state_version, blob, (size_t)blob_size);
    free(blob);
    if (st == P7_SUCCESS) {
        for (int progress = 1; progress && applied < nall;) {
            progress = 0;
            for (uint32_t k = 0; k < nall; k++) {
                if (done[k]) continue;
                st = vt->set_hparam(o->inst, k / nh, k % nh, hp[k]);
                if (st == P7_SUCCESS) {
                    done[k] = 1;
                    order[applied++] = k;
                    progress = 1;
                }
            }
        }
        if (applied < nall) { /* st holds the last refusal */
            while (applied-- > 0) {
                uint32_t k = order[applied];
                vt->set_hparam(o->inst, k / nh, k % nh, o->hp[k]);
            }
            vt->load(o->inst, vt->state_version, old_blob, old_size);
        }
    }
    free(order);
    free(done);
    free(old_blob);
    if (st == P7_SUCCESS) memcpy(o->hp, hp, (size_t)o->ngroups * nh * sizeof *hp);
    /* Slots last: once everything is accepted, only a device failure can stop them. */
    at = staged;
    for (size_t i = 0; st == P7_SUCCESS && i < o->count; i++) {
        size_t n = p7_tensor_numel(o->params[i]);
        for (unsigned s = 0; st == P7_SUCCESS && s < slots; s++, at += n)
            if (o->state[i * slots + s]) st = p7_tensor_upload(o->state[i * slots + s], at, n);
    }
    free(staged);
    free(hp);
    return st;
}

p7_status p7_optimizer_save(p7_optimizer *o, const char *path)
{
    if (!o || !path) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_save: NULL argument");
    FILE *f = fopen(path, "wb");
    if (!f) return p7_fail(P7_ERROR_IO, "p7_optimizer_save: cannot create %s", path);
    p7_status st = p7_optimizer_save_stream(o, f);
    if (fclose(f) != 0 && st == P7_SUCCESS) st = p7_fail(P7_ERROR_IO, "p7_optimizer_save: cannot write %s", path);
    return st;
}

p7_status p7_optimizer_load_state(p7_optimizer *o, const char *path)
{
    if (!o || !path) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_load_state: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return p7_fail(P7_ERROR_IO, "p7_optimizer_load_state: cannot open %s", path);
    p7_status st = p7_optimizer_load_stream(o, f);
    fclose(f);
    return st;
}

/* ---- prediction ---- */

/* The ensemble's probabilities [B, C]: the mean over the output's member blocks of
 * their softmax (one block where the model's rule already averaged the logits). */
static p7_status softmax_at_current(p7_model *model, p7_tensor *x, p7_tensor **probs)
{
    p7_tensor *logits = NULL, *member_probs = NULL;
    P7_TRY(p7_model_forward(model, NULL, x, 0, &logits));
    p7_status st = p7_softmax(NULL, logits, &member_probs);
    p7_tensor_release(logits);
    const int blocks = p7_model_output_members(model, 0);
    if (st == P7_SUCCESS && blocks > 1) st = p7_member_mean(NULL, member_probs, blocks, probs);
    else if (st == P7_SUCCESS) *probs = p7_tensor_retain(member_probs);
    p7_tensor_release(member_probs);
    return st;
}

p7_status p7_optimizer_predict(p7_optimizer *o, p7_model *model, p7_tensor *x, unsigned samples, p7_tensor **probs)
{
    if (!o || !model || !x || !probs) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_predict: NULL argument");
    *probs = NULL;
    if (samples == 0) return softmax_at_current(model, x, probs);
    p7_tensor *sum = NULL;
    p7_status st = P7_SUCCESS;
    for (unsigned s = 0; s < samples && st == P7_SUCCESS; s++) {
        st = p7_optimizer_sample(o);
        if (st != P7_SUCCESS) break;
        p7_tensor *p = NULL;
        st = softmax_at_current(model, x, &p);
        /* Restore even after a failed forward, so the model keeps its mean weights. */
        p7_status rs = p7_optimizer_restore(o, 0);
        if (st == P7_SUCCESS) st = rs;
        if (st != P7_SUCCESS) { p7_tensor_release(p); break; }
        if (!sum) {
            sum = p;
            continue;
        }
        p7_tensor *next = NULL;
        st = p7_add(NULL, sum, p, &next);
        p7_tensor_release(p);
        p7_tensor_release(sum);
        sum = next;
    }
    if (st != P7_SUCCESS) { p7_tensor_release(sum); return st; }
    /* The arithmetic mean of probabilities (not of logits): BMA as in optimizers.md 1.6. */
    p7_tensor *scale = NULL;
    st = p7_tensor_create(o->device, p7_tensor_ndim(sum), p7_tensor_shape(sum), &scale);
    if (st == P7_SUCCESS) st = p7_tensor_fill(scale, 1.0f / (float)samples);
    if (st == P7_SUCCESS) st = p7_mul(NULL, sum, scale, probs);
    p7_tensor_release(scale);
    p7_tensor_release(sum);
    return st;
}
