/* Opening and closing a device: context, in-order queue, GEMM backend choice, and
 * kernel launches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

const char *p7_gemm_backend_name(p7_gemm_backend backend)
{
    switch (backend) {
    case P7_GEMM_CLBLAST: return "clblast";
    case P7_GEMM_P7: return "p7";
    default: return "auto";
    }
}

p7_status p7_gemm_backend_parse(const char *text, p7_gemm_backend *out)
{
    if (!text || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm_backend_parse: NULL argument");
    if (strcmp(text, "clblast") == 0) *out = P7_GEMM_CLBLAST;
    else if (strcmp(text, "p7") == 0) *out = P7_GEMM_P7;
    else if (strcmp(text, "auto") == 0 || text[0] == '\0') *out = P7_GEMM_AUTO;
    else
        return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                       "GEMM backend '%s' is unknown; expected clblast, p7 or auto", text);
    return P7_SUCCESS;
}

/* CLBlast's kernels are tuned for GPUs and reach 3-12% of peak on PoCL, where p7's
 * packed-panel kernel reaches 60-98% (bench/p7-gemm; README, Performance), so CPUs get p7's kernel. */
static p7_gemm_backend default_gemm_backend(const p7_device *device)
{
    return device->info.kind == P7_DEVICE_KIND_CPU ? P7_GEMM_P7 : P7_GEMM_CLBLAST;
}

static void update_description(p7_device *device)
{
    snprintf(device->description, sizeof device->description,
             "%u:%u %s (%s, %s) driver %s, %.1f GiB, %u compute units, GEMM backend %s",
             device->info.platform_index, device->info.device_index, device->info.name,
             device->info.vendor, device->info.platform_name, device->info.driver_version,
             (double)device->info.global_mem_bytes / (1024.0 * 1024.0 * 1024.0),
             device->info.compute_units, p7_gemm_backend_name(device->gemm_backend));
}

p7_status p7_device_set_gemm_backend(p7_device *device, p7_gemm_backend backend)
{
    if (!device) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_device_set_gemm_backend: NULL device");
    if (backend != P7_GEMM_AUTO && backend != P7_GEMM_CLBLAST && backend != P7_GEMM_P7)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_device_set_gemm_backend: unknown backend %d", (int)backend);
    device->gemm_backend = backend == P7_GEMM_AUTO ? default_gemm_backend(device) : backend;
    update_description(device);
    return P7_SUCCESS;
}

p7_gemm_backend p7_device_gemm_backend(const p7_device *device)
{
    return device ? device->gemm_backend : P7_GEMM_AUTO;
}

static int resolve_kernel_cache(const p7_device *device, int requested)
{
    if (requested != 0) return requested > 0;
    const char *env = getenv("P7_KERNEL_CACHE");
    if (env && *env) return strcmp(env, "0") != 0;
    /* PoCL and NVIDIA already cache compiled programs on disk; a second cache on top
     * measured no gain on PoCL (docs/kernel-cache.md) and costs a generic-binary build. */
    if (device->is_pocl || p7_contains_nocase(device->info.platform_name, "nvidia")) return 0;
    return 1;
}

/* Program binaries go to cache_dir, per-device tuning (the GEMM's register tile) to
 * tuning_dir: P7_CACHE_DIR and P7_CACHE_DIR/tuning, else $XDG_CACHE_HOME/p7/{kernels,tuning},
 * else ~/.cache/p7/{kernels,tuning}. */
static void resolve_cache_dir(p7_device *device)
{
    const char *dir = getenv("P7_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char base[900];
    if (dir && *dir) {
        snprintf(device->cache_dir, sizeof device->cache_dir, "%s", dir);
        snprintf(device->tuning_dir, sizeof device->tuning_dir, "%.900s/tuning", dir);
        return;
    }
    if (xdg && *xdg) snprintf(base, sizeof base, "%s/p7", xdg);
    else if (home && *home) snprintf(base, sizeof base, "%s/.cache/p7", home);
    else {
        snprintf(device->cache_dir, sizeof device->cache_dir, "/tmp/p7-kernel-cache");
        snprintf(device->tuning_dir, sizeof device->tuning_dir, "/tmp/p7-tuning");
        return;
    }
    snprintf(device->cache_dir, sizeof device->cache_dir, "%s/kernels", base);
    snprintf(device->tuning_dir, sizeof device->tuning_dir, "%s/tuning", base);
}

static p7_status find_cl_ids(const p7_device_info *info, cl_platform_id *platform, cl_device_id *device)
{
    cl_uint nplat = 0;
    P7_CL_TRY(clGetPlatformIDs(0, NULL, &nplat), "clGetPlatformIDs");
    if (info->platform_index >= nplat)
        return p7_fail(P7_ERROR_DEVICE_NOT_FOUND, "platform %u disappeared", info->platform_index);
    cl_platform_id plats[64];
    if (nplat > 64) nplat = 64;
    P7_CL_TRY(clGetPlatformIDs(nplat, plats, NULL), "clGetPlatformIDs");
    cl_uint ndev = 0;
    P7_CL_TRY(clGetDeviceIDs(plats[info->platform_index], CL_DEVICE_TYPE_ALL, 0, NULL, &ndev), "clGetDeviceIDs");
    if (info->device_index >= ndev || ndev > 256)
        return p7_fail(P7_ERROR_DEVICE_NOT_FOUND, "device %u:%u disappeared", info->platform_index, info->device_index);
    cl_device_id devs[256];
    P7_CL_TRY(clGetDeviceIDs(plats[info->platform_index], CL_DEVICE_TYPE_ALL, ndev, devs, NULL), "clGetDeviceIDs");
    *platform = plats[info->platform_index];
    *device = devs[info->device_index];
    return P7_SUCCESS;
}

/* Limits the ops consult on every call, read from the driver once. */
static p7_status read_limits(p7_device *device)
{
    P7_CL_TRY(clGetDeviceInfo(device->id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof device->max_work_group_size,
                              &device->max_work_group_size, NULL),
              "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)");
    size_t size = 0;
    device->has_fp64 = 0;
    if (clGetDeviceInfo(device->id, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS || size == 0)
        return P7_SUCCESS; /* no extension list: the float paths, always correct */
    char *ext = malloc(size + 1);
    if (!ext) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_device_open: out of host memory");
    if (clGetDeviceInfo(device->id, CL_DEVICE_EXTENSIONS, size, ext, NULL) == CL_SUCCESS) {
        ext[size] = '\0';
        device->has_fp64 = strstr(ext, "cl_khr_fp64") != NULL;
    }
    free(ext);
    return P7_SUCCESS;
}

p7_status p7_device_open(const char *spec, const p7_device_options *options, p7_device **out)
{
    if (!out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_device_open: NULL output");
    *out = NULL;
    p7_device_options opts;
    memset(&opts, 0, sizeof opts);
    if (options) opts = *options;
    if (!spec || !*spec) spec = getenv("P7_DEVICE");

    size_t count = 0;
    P7_TRY(p7_device_list(NULL, 0, &count));
    p7_device_info *infos = calloc(count, sizeof *infos);
    if (!infos) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_device_open: out of host memory");
    p7_status st = p7_device_list(infos, count, &count);
    size_t index = 0;
    if (st == P7_SUCCESS) st = p7_device_select(spec, infos, count, &index);
    if (st != P7_SUCCESS) { free(infos); return st; }

    p7_device *device = calloc(1, sizeof *device);
    if (!device) { free(infos); return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_device_open: out of host memory"); }
    device->info = infos[index];
    free(infos);
    p7_device_spec_note(spec, &device->info, device->spec_note, sizeof device->spec_note);

    st = find_cl_ids(&device->info, &device->platform, &device->id);
    if (st != P7_SUCCESS) { free(device); return st; }
    device->is_pocl = p7_contains_nocase(device->info.platform_name, "portable computing language");

    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)device->platform, 0};
    device->context = clCreateContext(props, 1, &device->id, NULL, NULL, &err);
    if (err != CL_SUCCESS) { free(device); return p7_fail_cl(err, "clCreateContext"); }

    const char *prof_env = getenv("P7_PROFILE");
    device->profiling = opts.profiling ? (opts.profiling >= 2 ? 2 : 1) : 0;
    if (!device->profiling && prof_env && *prof_env && strcmp(prof_env, "0") != 0)
        device->profiling = !strcmp(prof_env, "layers") ? 2 : 1;
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    /* clCreateCommandQueue is the 1.2 call; PoCL and NVIDIA still ship 1.2-only paths. */
    device->queue = clCreateCommandQueue(device->context, device->id,
                                         device->profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    if (err != CL_SUCCESS) {
        clReleaseContext(device->context);
        free(device);
        return p7_fail_cl(err, "clCreateCommandQueue");
    }

    device->memory_limit = opts.memory_limit;
    device->poison_allocations = opts.poison_allocations != 0;
    device->reduce_in_float = opts.reduce_in_float != 0;
    device->batchnorm_walk = opts.batchnorm_walk;
    device->conv_scratch_floats = opts.conv_scratch_floats;
    device->conv_winograd = opts.conv_winograd;
    if (device->conv_winograd == 0) {
        const char *wino = getenv("P7_WINOGRAD");
        device->conv_winograd = wino && !strcmp(wino, "0") ? -1 : 1;
    }
    if (opts.conv_winograd < -1 || opts.conv_winograd > 2) {
        p7_device_close(device);
        return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                       "p7_device_open: conv_winograd %d: expected -1 (off), 0 (auto), 1 (on) or 2 (from 16 channels)",
                       opts.conv_winograd);
    }
    if (opts.batchnorm_walk < 0 || opts.batchnorm_walk > 2) {
        p7_device_close(device);
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_device_open: batchnorm_walk %d: expected 0, 1 or 2",
                       opts.batchnorm_walk);
    }
    st = read_limits(device);
    if (st != P7_SUCCESS) {
        p7_device_close(device);
        return st;
    }
    device->host_backed = device->is_pocl || device->info.kind == P7_DEVICE_KIND_CPU;
    device->kernel_cache = resolve_kernel_cache(device, opts.kernel_cache);
    resolve_cache_dir(device);

    p7_gemm_backend backend = opts.gemm;
    const char *gemm_env = getenv("P7_GEMM");
    if (backend == P7_GEMM_AUTO && gemm_env && *gemm_env) {
        st = p7_gemm_backend_parse(gemm_env, &backend);
        if (st != P7_SUCCESS) {
            p7_fail(st, "P7_GEMM='%s' is not a GEMM backend; expected clblast, p7 or auto", gemm_env);
            p7_device_close(device);
            return st;
        }
    }
    p7_device_set_gemm_backend(device, backend);
    *out = device;
    return P7_SUCCESS;
}

p7_status p7_device_state(p7_device *device, const void *key, size_t size, p7_device_state_destroy_fn destroy,
                          void **state)
{
    for (p7_device_state_entry *e = device->states; e; e = e->next)
        if (e->key == key) {
            *state = e->state;
            return P7_SUCCESS;
        }
    p7_device_state_entry *e = calloc(1, sizeof *e);
    void *fresh = calloc(1, size ? size : 1);
    if (!e || !fresh) {
        free(e);
        free(fresh);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_device_state: out of host memory");
    }
    e->key = key;
    e->state = fresh;
    e->destroy = destroy;
    e->next = device->states;
    device->states = e;
    *state = fresh;
    return P7_SUCCESS;
}

void p7_device_close(p7_device *device)
{
    if (!device) return;
    if (device->queue) clFinish(device->queue);
    p7_profile_shutdown(device);
    /* Newest first, and before the allocator goes: a layer's state may hold buffers. */
    for (p7_device_state_entry *e = device->states, *next; e; e = next) {
        next = e->next;
        if (e->destroy) e->destroy(device, e->state);
        free(e->state);
        free(e);
    }
    p7_memory_shutdown(device);
    for (p7_kernel_entry *k = device->kernels, *next; k; k = next) {
        next = k->next;
        clReleaseKernel(k->kernel);
        free(k->key);
        free(k);
    }
    for (p7_program_entry *p = device->programs, *next; p; p = next) {
        next = p->next;
        clReleaseProgram(p->program);
        free(p->key);
        free(p);
    }
    if (device->queue) clReleaseCommandQueue(device->queue);
    if (device->context) clReleaseContext(device->context);
    free(device);
}

const p7_device_info *p7_device_get_info(const p7_device *device)
{
    return device ? &device->info : NULL;
}

const char *p7_device_note(const p7_device *device) { return device ? device->spec_note : ""; }

const char *p7_device_describe(const p7_device *device)
{
    return device ? device->description : "(no device)";
}

p7_status p7_device_finish(p7_device *device)
{
    if (!device) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_device_finish: NULL device");
    P7_CL_TRY(clFinish(device->queue), "clFinish");
    return P7_SUCCESS;
}

p7_status p7_set_args(cl_kernel kernel, const char *label, int count, ...)
{
    cl_uint expected = 0;
    P7_CL_TRY(clGetKernelInfo(kernel, CL_KERNEL_NUM_ARGS, sizeof expected, &expected, NULL), "clGetKernelInfo");
    if ((cl_uint)count != expected) {
        char name[96] = "";
        clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
        name[sizeof name - 1] = '\0';
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: kernel %s takes %u arguments; the host passes %d", label, name,
                       (unsigned)expected, count);
    }
    va_list args;
    va_start(args, count);
    for (int i = 0; i < count; i++) {
        size_t size = va_arg(args, size_t);
        const void *value = va_arg(args, const void *);
        cl_int err = clSetKernelArg(kernel, (cl_uint)i, size, value);
        if (err != CL_SUCCESS) {
            va_end(args);
            return p7_fail((p7_status)err, "%s: clSetKernelArg(%d) failed: %s", label, i,
                           p7_status_string((p7_status)err));
        }
    }
    va_end(args);
    return P7_SUCCESS;
}

p7_status p7_launch(p7_device *device, cl_kernel kernel, cl_uint work_dim, const size_t *global,
                    const size_t *local, const char *label)
{
    cl_event event = NULL;
    cl_int err = clEnqueueNDRangeKernel(device->queue, kernel, work_dim, NULL, global, local, 0, NULL,
                                        device->profiling ? &event : NULL);
    if (err != CL_SUCCESS)
        return p7_fail((p7_status)err, "%s: clEnqueueNDRangeKernel failed: %s (global %zu x %zu x %zu)",
                       label, p7_status_string((p7_status)err), global[0],
                       work_dim > 1 ? global[1] : 1, work_dim > 2 ? global[2] : 1);
    if (event) p7_profile_record(device, label, event);
    return P7_SUCCESS;
}

p7_status p7_device_workspace(p7_device *device, p7_buffer **slot, size_t bytes, cl_mem *out)
{
    if (*slot && p7_buffer_size(*slot) >= bytes) {
        *out = p7_buffer_mem(*slot);
        return P7_SUCCESS;
    }
    /* The old workspace may still be read by queued kernels, which OpenCL lets finish.
     * It goes back to OpenCL, not to the cache: a workspace only grows, so nothing asks
     * for its old size again, and a cached copy would only add to the process's memory. */
    p7_buffer_release(*slot);
    *slot = NULL;
    P7_TRY(p7_buffer_alloc(device, bytes, slot));
    *out = p7_buffer_mem(*slot);
    return P7_SUCCESS;
}
