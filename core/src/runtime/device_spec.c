/* Device enumeration and device-spec matching.
 * Matching is a pure function over p7_device_info so the tests can exercise every
 * rule and error path without depending on which OpenCL devices the machine has. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/runtime.h"

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001 /* cl_khr_icd: the loader found no vendor driver */
#endif

int p7_contains_nocase(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0) return 1;
    for (const char *h = haystack; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return 1;
    }
    return 0;
}

static const char *kind_name(p7_device_kind kind)
{
    switch (kind) {
    case P7_DEVICE_KIND_CPU: return "CPU";
    case P7_DEVICE_KIND_GPU: return "GPU";
    case P7_DEVICE_KIND_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

/* Vendor words match the vendor string and the platform name: NVIDIA's platform is
 * "NVIDIA CUDA", AMD's ROCm platform is "AMD Accelerated Parallel Processing", and
 * Intel has vendor "Intel(R) Corporation". */
static int matches_vendor(const p7_device_info *d, const char *word)
{
    if (p7_contains_nocase(d->vendor, word) || p7_contains_nocase(d->platform_name, word)) return 1;
    if (strcmp(word, "amd") == 0) /* AMD's GPUs report vendor "Advanced Micro Devices, Inc." */
        return p7_contains_nocase(d->vendor, "advanced micro devices");
    return 0;
}

static int matches(const p7_device_info *d, const char *spec)
{
    char word[128];
    size_t n = strlen(spec);
    if (n >= sizeof word) n = sizeof word - 1;
    for (size_t i = 0; i < n; i++) word[i] = (char)tolower((unsigned char)spec[i]);
    word[n] = '\0';

    if (strcmp(word, "gpu") == 0) return d->kind == P7_DEVICE_KIND_GPU;
    if (strcmp(word, "cpu") == 0) return d->kind == P7_DEVICE_KIND_CPU;
    if (strcmp(word, "pocl") == 0)
        return p7_contains_nocase(d->platform_name, "portable computing language") ||
               p7_contains_nocase(d->platform_version, "pocl");
    if (strcmp(word, "nvidia") == 0 || strcmp(word, "amd") == 0 || strcmp(word, "intel") == 0)
        return matches_vendor(d, word);
    return p7_contains_nocase(d->name, spec);
}

static int is_vendor_word(const char *spec)
{
    return strcasecmp(spec, "nvidia") == 0 || strcasecmp(spec, "amd") == 0 || strcasecmp(spec, "intel") == 0;
}

/* "P:D" with both parts decimal. */
static int parse_index_spec(const char *spec, unsigned *p, unsigned *d)
{
    char *end;
    if (!isdigit((unsigned char)spec[0])) return 0;
    unsigned long pp = strtoul(spec, &end, 10);
    if (*end != ':' || !isdigit((unsigned char)end[1])) return 0;
    unsigned long dd = strtoul(end + 1, &end, 10);
    if (*end != '\0') return 0;
    *p = (unsigned)pp;
    *d = (unsigned)dd;
    return 1;
}

static void append_device_list(char *buf, size_t size, const p7_device_info *infos, size_t count)
{
    size_t used = strlen(buf);
    for (size_t i = 0; i < count && used + 1 < size; i++) {
        int w = snprintf(buf + used, size - used, "\n  %u:%u  %s  [%s, %s, %s]",
                         infos[i].platform_index, infos[i].device_index, infos[i].name,
                         kind_name(infos[i].kind), infos[i].vendor, infos[i].platform_name);
        if (w < 0) break;
        used += (size_t)w;
        if (used >= size) used = size - 1;
    }
}

p7_status p7_device_select(const char *spec, const p7_device_info *infos, size_t count,
                           size_t *index)
{
    if (!index || (count > 0 && !infos))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_device_select: NULL argument");
    if (count == 0)
        return p7_fail(P7_ERROR_NO_PLATFORM,
                       "no OpenCL device found. For a CPU device install PoCL: "
                       "sudo apt-get install pocl-opencl-icd");

    if (!spec || !*spec) {
        for (size_t i = 0; i < count; i++)
            if (infos[i].kind == P7_DEVICE_KIND_GPU) { *index = i; return P7_SUCCESS; }
        for (size_t i = 0; i < count; i++)
            if (infos[i].kind == P7_DEVICE_KIND_CPU) { *index = i; return P7_SUCCESS; }
        *index = 0;
        return P7_SUCCESS;
    }

    unsigned p, d;
    if (parse_index_spec(spec, &p, &d)) {
        for (size_t i = 0; i < count; i++)
            if (infos[i].platform_index == p && infos[i].device_index == d) {
                *index = i;
                return P7_SUCCESS;
            }
    } else {
        /* A vendor word names the vendor's GPU first: "amd" on a machine with an AMD
         * GPU and PoCL on an AMD CPU means the GPU; without the GPU, the CPU. */
        for (size_t i = 0; i < count; i++)
            if (infos[i].kind == P7_DEVICE_KIND_GPU && is_vendor_word(spec) && matches(&infos[i], spec)) {
                *index = i;
                return P7_SUCCESS;
            }
        for (size_t i = 0; i < count; i++)
            if (matches(&infos[i], spec)) { *index = i; return P7_SUCCESS; }
    }

    char msg[3072];
    snprintf(msg, sizeof msg,
             "device spec '%s' matches no OpenCL device (a spec is nvidia, amd, intel, gpu, cpu, "
             "pocl, P:D, or part of a device name). Devices present:", p7_abbrev(spec));
    append_device_list(msg, sizeof msg, infos, count);
    return p7_fail(P7_ERROR_DEVICE_NOT_FOUND, "%s", msg);
}

const char *p7_device_spec_note(const char *spec, const p7_device_info *chosen, char *buf, size_t size)
{
    if (!buf || !size) return buf;
    buf[0] = '\0';
    /* A vendor word asks for that vendor's GPU; when there is none the vendor's other
     * device (PoCL on an AMD or Intel CPU) is taken, which a user must be told. */
    if (!spec || !chosen || !is_vendor_word(spec) || chosen->kind == P7_DEVICE_KIND_GPU) return buf;
    char upper[8];
    size_t n = strlen(spec);
    for (size_t i = 0; i <= n; i++) upper[i] = (char)toupper((unsigned char)spec[i]);
    snprintf(buf, size, "device spec '%s' found no %s GPU; using the %s %s device %u:%u '%s' (%s)", spec, upper,
             upper, kind_name(chosen->kind), chosen->platform_index, chosen->device_index, chosen->name,
             chosen->platform_name);
    return buf;
}

static void info_string(cl_device_id dev, cl_device_info what, char *out, size_t size)
{
    out[0] = '\0';
    if (clGetDeviceInfo(dev, what, size, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[size - 1] = '\0';
}

p7_status p7_device_list(p7_device_info *infos, size_t capacity, size_t *count)
{
    if (!count || (capacity > 0 && !infos))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_device_list: NULL argument");
    *count = 0;

    cl_uint nplat = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &nplat);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || nplat == 0)
        return p7_fail(P7_ERROR_NO_PLATFORM,
                       "no OpenCL platform is installed (the ICD loader found no vendor driver "
                       "in /etc/OpenCL/vendors). For a CPU device install PoCL: "
                       "sudo apt-get install pocl-opencl-icd");
    if (err != CL_SUCCESS) return p7_fail_cl(err, "clGetPlatformIDs");

    cl_platform_id *plats = calloc(nplat, sizeof *plats);
    if (!plats) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_device_list: out of host memory");
    err = clGetPlatformIDs(nplat, plats, NULL);
    if (err != CL_SUCCESS) { free(plats); return p7_fail_cl(err, "clGetPlatformIDs"); }

    size_t total = 0;
    for (cl_uint p = 0; p < nplat; p++) {
        cl_uint ndev = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &ndev) != CL_SUCCESS || ndev == 0)
            continue; /* a platform without devices is not an error */
        cl_device_id *devs = calloc(ndev, sizeof *devs);
        if (!devs) { free(plats); return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_device_list: out of host memory"); }
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, ndev, devs, NULL) != CL_SUCCESS) ndev = 0;
        for (cl_uint d = 0; d < ndev; d++, total++) {
            if (total >= capacity) continue;
            p7_device_info *info = &infos[total];
            memset(info, 0, sizeof *info);
            info->platform_index = p;
            info->device_index = d;
            clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof info->platform_name, info->platform_name, NULL);
            clGetPlatformInfo(plats[p], CL_PLATFORM_VERSION, sizeof info->platform_version, info->platform_version, NULL);
            info->platform_name[sizeof info->platform_name - 1] = '\0';
            info->platform_version[sizeof info->platform_version - 1] = '\0';
            info_string(devs[d], CL_DEVICE_NAME, info->name, sizeof info->name);
            info_string(devs[d], CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
            info_string(devs[d], CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
            cl_device_type type = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
            info->kind = (type & CL_DEVICE_TYPE_GPU) ? P7_DEVICE_KIND_GPU
                       : (type & CL_DEVICE_TYPE_CPU) ? P7_DEVICE_KIND_CPU
                       : (type & CL_DEVICE_TYPE_ACCELERATOR) ? P7_DEVICE_KIND_ACCELERATOR
                       : P7_DEVICE_KIND_OTHER;
            cl_ulong mem = 0, alloc = 0;
            cl_uint cu = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
            info->global_mem_bytes = mem;
            info->max_alloc_bytes = alloc;
            info->compute_units = cu;
        }
        free(devs);
    }
    free(plats);
    *count = total;
    if (total == 0)
        return p7_fail(P7_ERROR_NO_PLATFORM,
                       "OpenCL platforms exist but expose no device. For a CPU device install "
                       "PoCL: sudo apt-get install pocl-opencl-icd");
    return P7_SUCCESS;
}
