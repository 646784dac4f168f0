/* The devices of array tasks and --jobs workers (see p7bench_devices.h). */
#include "p7bench_devices.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/status.h"

p7bench_gpu_grant p7bench_gpu_grant_from_environment(void)
{
    return (p7bench_gpu_grant){.cuda_visible_devices = getenv("CUDA_VISIBLE_DEVICES"),
                               .rocr_visible_devices = getenv("ROCR_VISIBLE_DEVICES"),
                               .gpu_device_ordinal = getenv("GPU_DEVICE_ORDINAL"),
                               .slurm_step_gpus = getenv("SLURM_STEP_GPUS"),
                               .slurm_job_gpus = getenv("SLURM_JOB_GPUS")};
}

static int is_cpu_spec(const char *spec)
{
    return spec && (strcmp(spec, "cpu") == 0 || strcmp(spec, "pocl") == 0);
}

static int is_index_spec(const char *spec)
{
    unsigned p, d;
    char end;
    return spec && sscanf(spec, "%u:%u%c", &p, &d, &end) == 2;
}

size_t p7bench_devices_matching(const char *spec, const p7_device_info *infos, size_t count, size_t *out, size_t cap)
{
    size_t n = 0;
    if (!spec || !*spec) {
        for (size_t i = 0; i < count && n < cap; i++)
            if (infos[i].kind == P7_DEVICE_KIND_GPU) out[n++] = i;
        if (n) return n;
        spec = "cpu";
    }
    /* p7_device_select names the first match; take it out and ask again, keeping the
     * matches of the first one's kind (a vendor word's CPU fallback is not one of its GPUs) */
    p7_device_info *rest = malloc((count ? count : 1) * sizeof *rest);
    size_t *origin = malloc((count ? count : 1) * sizeof *origin);
    if (!rest || !origin) {
        free(rest);
        free(origin);
        return 0;
    }
    memcpy(rest, infos, count * sizeof *rest);
    for (size_t i = 0; i < count; i++) origin[i] = i;
    size_t left = count;
    p7_device_kind kind = P7_DEVICE_KIND_OTHER;
    while (left && n < cap) {
        size_t at;
        if (p7_device_select(spec, rest, left, &at) != P7_SUCCESS) {
            p7_clear_error();
            break;
        }
        if (n == 0) kind = rest[at].kind;
        else if (rest[at].kind != kind) break;
        out[n++] = origin[at];
        if (is_index_spec(spec)) break;
        memmove(rest + at, rest + at + 1, (left - at - 1) * sizeof *rest);
        memmove(origin + at, origin + at + 1, (left - at - 1) * sizeof *origin);
        left--;
    }
    free(rest);
    free(origin);
    return n;
}

/* The first index of a grant list ("2,3", "2"), or -1 when it names none or not by number
 * (an NVIDIA UUID: GPU-...). *listed receives how many entries the list has. */
static long first_granted(const char *list, size_t *listed)
{
    *listed = 0;
    if (!list || !*list || strcmp(list, "NoDevFiles") == 0) return -1;
    *listed = 1;
    for (const char *p = list; *p; p++) *listed += *p == ',';
    char *end;
    long v = strtol(list, &end, 10);
    return end != list && (*end == ',' || *end == '\0') && v >= 0 ? v : -2;
}

int p7bench_device_for_task(const char *spec, const p7_device_info *infos, size_t count, const p7bench_gpu_grant *g,
                            size_t *index, char *note, size_t note_size)
{
    const char *names[5] = {"CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "SLURM_STEP_GPUS",
                            "SLURM_JOB_GPUS"};
    const char *values[5] = {g->cuda_visible_devices, g->rocr_visible_devices, g->gpu_device_ordinal,
                             g->slurm_step_gpus, g->slurm_job_gpus};
    int which = -1;
    size_t listed = 0;
    long granted = -1;
    for (int i = 0; i < 5 && which < 0; i++) {
        granted = first_granted(values[i], &listed);
        if (listed) which = i;
    }
    if (is_cpu_spec(spec) || is_index_spec(spec) || (spec && *spec && which < 0)) {
        /* asked for by name: obeyed */
        if (p7_device_select(spec, infos, count, index) != P7_SUCCESS) {
            snprintf(note, note_size, "%s", p7_last_error());
            p7_clear_error();
            return 1;
        }
        snprintf(note, note_size, "device %u:%u (--device %s)", infos[*index].platform_index,
                 infos[*index].device_index, spec);
        return 0;
    }
    if (which < 0) { /* no GPU granted: a CPU task */
        size_t cpu[1];
        if (p7bench_devices_matching("cpu", infos, count, cpu, 1) == 0) {
            snprintf(note, note_size, "SLURM granted this task no GPU, and OpenCL shows no CPU device");
            return 1;
        }
        *index = cpu[0];
        snprintf(note, note_size, "no GPU granted (no CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, GPU_DEVICE_ORDINAL, "
                                  "SLURM_STEP_GPUS or SLURM_JOB_GPUS): the CPU device %u:%u",
                 infos[*index].platform_index, infos[*index].device_index);
        return 0;
    }
    size_t gpus[P7BENCH_DEVICES_MAX];
    size_t n = p7bench_devices_matching(spec && *spec ? spec : NULL, infos, count, gpus, P7BENCH_DEVICES_MAX);
    if (n == 0 || infos[gpus[0]].kind != P7_DEVICE_KIND_GPU) {
        snprintf(note, note_size, "SLURM granted GPU %s (%s) but OpenCL shows no GPU%s%s", values[which], names[which],
                 spec && *spec ? " matching --device " : "", spec && *spec ? spec : "");
        return 1;
    }
    size_t pick = 0;
    const char *how;
    if (n <= listed) how = "OpenCL shows only the granted GPUs: the first";
    else if (granted >= 0 && (size_t)granted < n) pick = (size_t)granted, how = "OpenCL shows every GPU of the node: that one";
    else how = "not an index of the node's GPUs: the first GPU";
    *index = gpus[pick];
    snprintf(note, note_size, "SLURM granted %s=%s; %s, device %u:%u", names[which], values[which], how,
             infos[*index].platform_index, infos[*index].device_index);
    return 0;
}

int p7bench_devices_for_jobs(const char *spec, const char *list, size_t jobs, const p7_device_info *infos, size_t count,
                             size_t *out, size_t *n, char *err, size_t err_size)
{
    size_t named[P7BENCH_DEVICES_MAX];
    size_t m = p7bench_devices_matching(spec, infos, count, named, P7BENCH_DEVICES_MAX);
    *n = 0;
    if (!list) {
        if (m == 0) return snprintf(err, err_size, "--device %s names no OpenCL device", spec ? spec : "(default)"), 1;
        for (size_t i = 0; i < m && *n < jobs; i++) out[(*n)++] = named[i];
        return 0;
    }
    char item[128];
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item) return snprintf(err, err_size, "--devices '%s': an empty or long item", list), 1;
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        p += len + (p[len] == ',');
        int digits = 1;
        for (const char *c = item; *c; c++) digits &= isdigit((unsigned char)*c) != 0;
        size_t at;
        if (digits) {
            unsigned long k = strtoul(item, NULL, 10);
            if (k >= m)
                return snprintf(err, err_size, "--devices: %s: %s names %zu device(s), numbered from 0", item,
                                spec && *spec ? spec : "the default (the GPUs, else the CPU)", m), 1;
            at = named[k];
        } else if (p7_device_select(item, infos, count, &at) != P7_SUCCESS) {
            snprintf(err, err_size, "--devices: %s", p7_last_error());
            p7_clear_error();
            return 1;
        }
        if (*n == P7BENCH_DEVICES_MAX) return snprintf(err, err_size, "--devices: more than %d", P7BENCH_DEVICES_MAX), 1;
        out[(*n)++] = at;
    }
    if (*n == 0) return snprintf(err, err_size, "--devices '%s' lists no device", list), 1;
    return 0;
}
