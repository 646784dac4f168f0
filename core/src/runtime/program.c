/* Building OpenCL programs from the embedded kernel files, once per device, file and
 * build options; and the kernel objects made from them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

/* Embedded sources have no include path, so `#include "name.clh"` lines naming an
 * embedded file are replaced by its text here (one level: headers include nothing).
 * Returns a malloc'd copy, or NULL when out of memory; *missing names an unknown one. */
static char *splice_includes(const char *source, const char **missing)
{
    static const char directive[] = "#include \"";
    size_t cap = strlen(source) + 1, len = 0;
    for (const char *p = source; (p = strstr(p, directive)) != NULL; p++) {
        const char *name = p + sizeof directive - 1, *end = strchr(name, '"');
        if (!end) break;
        for (size_t i = 0; i < p7_kernel_source_count; i++)
            if (strlen(p7_kernel_sources[i]->file) == (size_t)(end - name) &&
                strncmp(p7_kernel_sources[i]->file, name, (size_t)(end - name)) == 0)
                cap += strlen(p7_kernel_sources[i]->text);
    }
    char *out = malloc(cap);
    if (!out) return NULL;
    const char *p = source;
    for (;;) {
        const char *d = strstr(p, directive);
        const char *name = d ? d + sizeof directive - 1 : NULL, *end = name ? strchr(name, '"') : NULL;
        if (!d || !end) {
            memcpy(out + len, p, strlen(p) + 1);
            return out;
        }
        memcpy(out + len, p, (size_t)(d - p));
        len += (size_t)(d - p);
        const char *text = NULL;
        for (size_t i = 0; i < p7_kernel_source_count && !text; i++)
            if (strlen(p7_kernel_sources[i]->file) == (size_t)(end - name) &&
                strncmp(p7_kernel_sources[i]->file, name, (size_t)(end - name)) == 0)
                text = p7_kernel_sources[i]->text;
        if (!text) {
            *missing = name;
            free(out);
            return NULL;
        }
        memcpy(out + len, text, strlen(text));
        len += strlen(text);
        p = end + 1;
    }
}

static char *join_key(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + (c ? strlen(c) : 0) + 3;
    char *key = malloc(n);
    if (key) snprintf(key, n, "%s\n%s\n%s", a, b, c ? c : "");
    return key;
}

static p7_status build_failure(p7_device *device, cl_program program, cl_int err, const char *name,
                               const char *options)
{
    size_t size = 0;
    clGetProgramBuildInfo(program, device->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &size);
    char *log = malloc(size + 1);
    if (log) {
        if (clGetProgramBuildInfo(program, device->id, CL_PROGRAM_BUILD_LOG, size, log, NULL) != CL_SUCCESS)
            size = 0;
        log[size] = '\0';
    }
    p7_status st = p7_fail(P7_ERROR_KERNEL_BUILD,
                           "building OpenCL program %s (options '%s') for %s failed with %s; compiler log:\n%s",
                           name, options ? options : "", device->info.name,
                           p7_status_string((p7_status)err), log ? log : "(no log)");
    free(log);
    return st;
}

p7_status p7_program_build_source(p7_device *device, const char *name, const char *source,
                                  const char *options, cl_program *out)
{
    if (!device || !source || !out)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_program_build_source: NULL argument");
    if (!options) options = "";
    if (device->kernel_cache && p7_program_cache_load(device, source, options, out)) {
        device->program_cache_hits++;
        return P7_SUCCESS;
    }

    cl_int err;
    cl_program program = clCreateProgramWithSource(device->context, 1, &source, NULL, &err);
    if (err != CL_SUCCESS) return p7_fail_cl(err, "clCreateProgramWithSource");
    p7_compiler_output hold;
    p7_compiler_output_hold(&hold);
    err = clBuildProgram(program, 1, &device->id, options, NULL, NULL);
    p7_compiler_output_release(&hold, err != CL_SUCCESS);
    if (err != CL_SUCCESS) {
        p7_status st = build_failure(device, program, err, name, options);
        clReleaseProgram(program);
        return st;
    }
    if (device->kernel_cache) p7_program_cache_store(device, source, options, program);
    *out = program;
    return P7_SUCCESS;
}

p7_status p7_program_get(p7_device *device, const p7_kernel_source *source_file, const char *options,
                         cl_program *out)
{
    if (!source_file) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_program_get: NULL kernel file");
    const char *file = source_file->file, *source = source_file->text;
    if (!options) options = "";
    for (p7_program_entry *e = device->programs; e; e = e->next) {
        size_t fl = strlen(file);
        if (strncmp(e->key, file, fl) == 0 && e->key[fl] == '\n' && strcmp(e->key + fl + 1, options) == 0) {
            *out = e->program;
            return P7_SUCCESS;
        }
    }

    char name[256];
    snprintf(name, sizeof name, "kernels/%s", file);
    const char *missing = NULL;
    char *spliced = splice_includes(source, &missing);
    if (!spliced) {
        if (missing)
            return p7_fail(P7_ERROR_KERNEL_NOT_FOUND, "kernels/%s includes %.*s, which is not embedded in this libp7",
                           file, (int)(strchr(missing, '"') - missing), missing);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_program_get: out of host memory");
    }
    cl_program program;
    p7_status st = p7_program_build_source(device, name, spliced, options, &program);
    free(spliced);
    if (st != P7_SUCCESS) return st;

    p7_program_entry *e = calloc(1, sizeof *e);
    size_t n = strlen(file) + strlen(options) + 2;
    char *key = malloc(n);
    if (!e || !key) {
        free(e);
        free(key);
        clReleaseProgram(program);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_program_get: out of host memory");
    }
    snprintf(key, n, "%s\n%s", file, options);
    e->key = key;
    e->program = program;
    e->next = device->programs;
    device->programs = e;
    *out = program;
    return P7_SUCCESS;
}

p7_status p7_kernel_get(p7_device *device, const p7_kernel_source *source_file, const char *options,
                        const char *kernel_name, cl_kernel *out)
{
    if (!source_file || !kernel_name) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_kernel_get: NULL argument");
    const char *file = source_file->file;
    if (!options) options = "";
    char *key = join_key(file, options, kernel_name);
    if (!key) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_kernel_get: out of host memory");
    for (p7_kernel_entry *e = device->kernels; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            free(key);
            *out = e->kernel;
            return P7_SUCCESS;
        }
    cl_program program;
    p7_status st = p7_program_get(device, source_file, options, &program);
    if (st != P7_SUCCESS) { free(key); return st; }
    cl_int err;
    cl_kernel kernel = clCreateKernel(program, kernel_name, &err);
    if (err != CL_SUCCESS) {
        free(key);
        return p7_fail(err == CL_INVALID_KERNEL_NAME ? P7_ERROR_KERNEL_NOT_FOUND : (p7_status)err,
                       "kernels/%s has no kernel named %s (%s)", file, kernel_name,
                       p7_status_string((p7_status)err));
    }
    p7_kernel_entry *e = calloc(1, sizeof *e);
    if (!e) {
        free(key);
        clReleaseKernel(kernel);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_kernel_get: out of host memory");
    }
    e->key = key;
    e->kernel = kernel;
    e->next = device->kernels;
    device->kernels = e;
    *out = kernel;
    return P7_SUCCESS;
}
