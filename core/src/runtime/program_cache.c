/* On-disk cache of compiled OpenCL program binaries.
 *
 * Key: SHA-256 of (format version, source, build options, device name, driver version,
 * platform version), so a driver update or an edited kernel never loads a stale
 * binary. One file per entry: an 8-byte magic, a format version and the binary.
 * Written to a temporary file and renamed, so a crash or a concurrent writer (SLURM
 * array tasks sharing $HOME) never leaves a torn entry. Any problem reading an entry
 * falls back silently to building from source: the cache can only save time.
 * Default on, except PoCL and NVIDIA, which cache on disk themselves
 * (docs/kernel-cache.md has the measurements). P7_KERNEL_CACHE=0/1, P7_CACHE_DIR. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/digest.h"
#include "runtime/runtime.h"

#define CACHE_MAGIC "P7KCACHE"
#define CACHE_FORMAT 1u

static void cache_path(const p7_device *device, const char *source, const char *options, char *path, size_t size)
{
    p7_sha256 h;
    uint8_t digest[P7_SHA256_BYTES];
    char hex[2 * P7_SHA256_BYTES + 1];
    unsigned format = CACHE_FORMAT;
    p7_sha256_init(&h);
    p7_sha256_update(&h, &format, sizeof format);
    const char *parts[] = {source, options, device->info.name, device->info.driver_version,
                           device->info.platform_version};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        p7_sha256_update(&h, parts[i], strlen(parts[i]) + 1); /* the NUL separates fields */
    p7_sha256_final(&h, digest);
    p7_digest_hex(digest, sizeof digest, hex);
    snprintf(path, size, "%s/%s.bin", device->cache_dir, hex);
}

int p7_program_cache_load(p7_device *device, const char *source, const char *options, cl_program *out)
{
    char path[1200];
    cache_path(device, source, options, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[8];
    unsigned format = 0;
    unsigned long long size = 0;
    unsigned char *binary = NULL;
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, CACHE_MAGIC, 8) == 0 &&
             fread(&format, sizeof format, 1, f) == 1 && format == CACHE_FORMAT &&
             fread(&size, sizeof size, 1, f) == 1 && size > 0 && size < (1ull << 30);
    if (ok) {
        binary = malloc((size_t)size);
        ok = binary && fread(binary, 1, (size_t)size, f) == size;
    }
    fclose(f);
    if (!ok) { free(binary); return 0; }

    cl_int err, binary_status;
    size_t length = (size_t)size;
    const unsigned char *bins[] = {binary};
    cl_program program = clCreateProgramWithBinary(device->context, 1, &device->id, &length, bins,
                                                   &binary_status, &err);
    free(binary);
    if (err != CL_SUCCESS || binary_status != CL_SUCCESS) {
        if (err == CL_SUCCESS) clReleaseProgram(program);
        return 0;
    }
    p7_compiler_output hold;
    p7_compiler_output_hold(&hold);
    cl_int built = clBuildProgram(program, 1, &device->id, options, NULL, NULL);
    p7_compiler_output_release(&hold, 0); /* a stale binary is rebuilt from source, which shows its own */
    if (built != CL_SUCCESS) {
        clReleaseProgram(program);
        return 0;
    }
    *out = program;
    return 1;
}

int p7_make_dirs(const char *dir)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return (mkdir(tmp, 0755) != 0 && errno != EEXIST) ? -1 : 0;
}

void p7_program_cache_store(p7_device *device, const char *source, const char *options, cl_program program)
{
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
        return;
    unsigned char *binary = malloc(size);
    if (!binary) return;
    unsigned char *bins[] = {binary};
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS ||
        p7_make_dirs(device->cache_dir) != 0) {
        free(binary);
        return;
    }
    char path[1200], tmp[1300];
    cache_path(device, source, options, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (f) {
        unsigned format = CACHE_FORMAT;
        unsigned long long length = size;
        int ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&format, sizeof format, 1, f) == 1 &&
                 fwrite(&length, sizeof length, 1, f) == 1 && fwrite(binary, 1, size, f) == size;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, path) != 0) remove(tmp);
    }
    free(binary);
}
