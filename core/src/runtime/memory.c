/* The caching device allocator: size classes, a free list per device, and the
 * free-the-cache-and-retry-once path on allocation failure. */
#include <stdio.h>
#include <stdlib.h>

#include "runtime/runtime.h"

struct p7_buffer {
    p7_device *device;
    cl_mem mem;
    size_t size;
};

/* Small requests round up to a power of two; from 1 MiB on, to one of 8 steps per
 * octave, so that a class wastes at most 12.5% while repeated training steps (the
 * same shapes every step) still hit the cache exactly. */
size_t p7_memory_size_class(size_t bytes)
{
    if (bytes <= 256) return 256;
    size_t pow2 = 256;
    while (pow2 < bytes && pow2 < ((size_t)1 << 62)) pow2 <<= 1;
    if (pow2 <= ((size_t)1 << 20)) return pow2;
    size_t step = (pow2 >> 1) / 8;
    return (bytes + step - 1) / step * step;
}

static p7_status flush_cache(p7_device *device)
{
    if (!device->free_blocks) return P7_SUCCESS;
    /* Queued kernels may still use cached blocks' former contents only through live
     * buffers, but waiting makes the driver's deferred frees actually happen now. */
    clFinish(device->queue);
    p7_memory_shutdown(device);
    device->mem.cache_flushes++;
    return P7_SUCCESS;
}

p7_status p7_memory_release_cache(p7_device *device)
{
    if (!device) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_memory_release_cache: NULL device");
    return flush_cache(device);
}

static int is_oom(cl_int err)
{
    return err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
           err == CL_OUT_OF_HOST_MEMORY;
}

static int over_limit(const p7_device *device, size_t size)
{
    return device->memory_limit &&
           device->mem.bytes_in_use + device->mem.bytes_cached + size > device->memory_limit;
}

static p7_status oom_error(const p7_device *device, size_t asked, size_t size, const char *why)
{
    return p7_fail(P7_ERROR_OUT_OF_MEMORY,
                   "out of device memory on %s: asked for %zu bytes (size class %zu) while %llu bytes "
                   "are in use and %llu cached, after freeing the cache and retrying (%s)",
                   device->info.name, asked, size, (unsigned long long)device->mem.bytes_in_use,
                   (unsigned long long)device->mem.bytes_cached, why);
}

/* Requests from this size on re-read the host limits; smaller ones count against the
 * last reading until 64 MiB of them have been created since. Reading costs two small
 * /proc files, and creating buffers happens only on cache misses. */
#define HOST_REREAD_BYTES ((uint64_t)1 << 20)
#define HOST_REREAD_AFTER ((uint64_t)64 << 20)

/* Does a new host-backed buffer of `size` bytes fit what the process may still map,
 * with P7_HOST_RESERVE_BYTES left over? `limit` receives the binding limit's text. */
static int host_fits(p7_device *device, size_t size, int reread, char *limit, size_t limit_size,
                     uint64_t *headroom)
{
    if (reread || !device->host_read || size >= HOST_REREAD_BYTES ||
        device->host_created_since >= HOST_REREAD_AFTER) {
        device->host_headroom = p7_host_memory_headroom(limit, limit_size);
        device->host_created_since = 0;
        device->host_read = 1;
    }
    uint64_t left = device->host_headroom > device->host_created_since
                        ? device->host_headroom - device->host_created_since
                        : 0;
    *headroom = left;
    return left >= P7_HOST_RESERVE_BYTES && size <= left - P7_HOST_RESERVE_BYTES;
}

static p7_status host_oom_error(const p7_device *device, size_t asked, size_t size, uint64_t headroom,
                                const char *limit)
{
    return p7_fail(P7_ERROR_OUT_OF_MEMORY,
                   "out of host memory on %s (a CPU device keeps its buffers in host memory): asked for %zu bytes "
                   "(size class %zu) while %llu bytes are in use, after freeing the cache; %s leaves %llu bytes, "
                   "of which p7 keeps %llu for the rest of the process",
                   device->info.name, asked, size, (unsigned long long)device->mem.bytes_in_use,
                   limit[0] ? limit : "the host", (unsigned long long)headroom,
                   (unsigned long long)P7_HOST_RESERVE_BYTES);
}

/* PoCL maps a buffer's memory at the first command that uses it, inside that enqueue
 * call, and a failed allocation there is an assertion (abort), not an error. A
 * migration with undefined content makes it map the memory now, right after host_fits
 * said it fits, so that later readings of the address space include it. */
static p7_status materialize(p7_device *device, cl_mem mem)
{
    if (!device->is_pocl) return P7_SUCCESS;
    P7_CL_TRY(clEnqueueMigrateMemObjects(device->queue, 1, &mem, CL_MIGRATE_MEM_OBJECT_CONTENT_UNDEFINED, 0, NULL,
                                         NULL),
              "p7_buffer_alloc: clEnqueueMigrateMemObjects");
    return P7_SUCCESS;
}

p7_status p7_buffer_alloc(p7_device *device, size_t bytes, p7_buffer **out)
{
    if (!device || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_buffer_alloc: NULL argument");
    *out = NULL;
    if (bytes == 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_buffer_alloc: zero bytes requested");
    size_t size = p7_memory_size_class(bytes);
    if (device->info.max_alloc_bytes && size > device->info.max_alloc_bytes) {
        if (bytes > device->info.max_alloc_bytes)
            return p7_fail(P7_ERROR_OUT_OF_MEMORY,
                           "asked for one buffer of %zu bytes; %s allows at most %llu bytes per buffer",
                           bytes, device->info.name, (unsigned long long)device->info.max_alloc_bytes);
        size = bytes; /* the class would pass the limit; the exact size still fits */
    }

    p7_buffer *buffer = malloc(sizeof *buffer);
    if (!buffer) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_buffer_alloc: out of host memory");
    buffer->device = device;
    buffer->size = size;

    for (p7_free_block **link = &device->free_blocks; *link; link = &(*link)->next) {
        if ((*link)->size == size) {
            p7_free_block *hit = *link;
            *link = hit->next;
            buffer->mem = hit->mem;
            free(hit);
            device->mem.bytes_cached -= size;
            device->mem.cache_hits++;
            goto done;
        }
    }

    if (over_limit(device, size)) {
        flush_cache(device);
        if (over_limit(device, size)) {
            free(buffer);
            return oom_error(device, bytes, size, "the device memory limit would be passed");
        }
    }
    if (device->host_backed) {
        char limit[256] = "";
        uint64_t headroom;
        if (!host_fits(device, size, 0, limit, sizeof limit, &headroom)) {
            flush_cache(device);
            if (!host_fits(device, size, 1, limit, sizeof limit, &headroom)) {
                free(buffer);
                return host_oom_error(device, bytes, size, headroom, limit);
            }
        }
    }
    cl_int err;
    buffer->mem = clCreateBuffer(device->context, CL_MEM_READ_WRITE, size, NULL, &err);
    if (is_oom(err)) { /* the cache may hold what the driver needs: give it back, once */
        flush_cache(device);
        buffer->mem = clCreateBuffer(device->context, CL_MEM_READ_WRITE, size, NULL, &err);
    }
    if (err != CL_SUCCESS) {
        free(buffer);
        if (is_oom(err)) return oom_error(device, bytes, size, p7_status_string((p7_status)err));
        return p7_fail_cl(err, "clCreateBuffer");
    }
    if (device->host_backed) {
        p7_status st = materialize(device, buffer->mem);
        if (st != P7_SUCCESS) {
            clReleaseMemObject(buffer->mem);
            free(buffer);
            return st;
        }
        device->host_created_since += size;
    }
    device->mem.buffers_created++;

done:
    device->mem.bytes_in_use += size;
    if (device->mem.bytes_in_use > device->mem.peak_bytes_in_use)
        device->mem.peak_bytes_in_use = device->mem.bytes_in_use;
    device->live_buffers++;
    *out = buffer;
    return P7_SUCCESS;
}

void p7_buffer_free(p7_buffer *buffer)
{
    if (!buffer) return;
    p7_device *device = buffer->device;
    device->mem.bytes_in_use -= buffer->size;
    device->live_buffers--;
    p7_free_block *block = malloc(sizeof *block);
    if (!block) { /* no room to remember it: give it back to OpenCL instead */
        clReleaseMemObject(buffer->mem);
        free(buffer);
        return;
    }
    block->mem = buffer->mem;
    block->size = buffer->size;
    block->next = device->free_blocks;
    device->free_blocks = block;
    device->mem.bytes_cached += buffer->size;
    free(buffer);
}

void p7_buffer_release(p7_buffer *buffer)
{
    if (!buffer) return;
    p7_device *device = buffer->device;
    device->mem.bytes_in_use -= buffer->size;
    device->live_buffers--;
    clReleaseMemObject(buffer->mem); /* OpenCL keeps it until queued commands using it are done */
    free(buffer);
}

p7_status p7_buffer_upload(p7_buffer *buffer, const void *host, size_t bytes)
{
    if (!buffer || !host) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_buffer_upload: NULL argument");
    if (bytes > buffer->size)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_buffer_upload: %zu bytes into a block of %zu", bytes, buffer->size);
    P7_CL_TRY(clEnqueueWriteBuffer(buffer->device->queue, buffer->mem, CL_TRUE, 0, bytes, host, 0, NULL, NULL),
              "p7_buffer_upload: clEnqueueWriteBuffer");
    return P7_SUCCESS;
}

p7_status p7_buffer_download(const p7_buffer *buffer, void *host, size_t bytes)
{
    if (!buffer || !host) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_buffer_download: NULL argument");
    if (bytes > buffer->size)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_buffer_download: %zu bytes from a block of %zu", bytes,
                       buffer->size);
    P7_CL_TRY(clEnqueueReadBuffer(buffer->device->queue, buffer->mem, CL_TRUE, 0, bytes, host, 0, NULL, NULL),
              "p7_buffer_download: clEnqueueReadBuffer");
    return P7_SUCCESS;
}

p7_status p7_buffer_copy(p7_device *device, cl_mem src, size_t src_offset, p7_buffer *dst, size_t dst_offset,
                         size_t bytes)
{
    if (!device || !src || !dst) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_buffer_copy: NULL argument");
    if (dst_offset > dst->size || bytes > dst->size - dst_offset)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_buffer_copy: %zu bytes at offset %zu do not fit a block of %zu",
                       bytes, dst_offset, dst->size);
    if (bytes == 0) return P7_SUCCESS;
    P7_CL_TRY(clEnqueueCopyBuffer(device->queue, src, dst->mem, src_offset, dst_offset, bytes, 0, NULL, NULL),
              "p7_buffer_copy: clEnqueueCopyBuffer");
    return P7_SUCCESS;
}

cl_mem p7_buffer_mem(const p7_buffer *buffer) { return buffer ? buffer->mem : NULL; }
size_t p7_buffer_size(const p7_buffer *buffer) { return buffer ? buffer->size : 0; }

p7_status p7_memory_get_stats(const p7_device *device, p7_memory_stats *out)
{
    if (!device || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_memory_get_stats: NULL argument");
    *out = device->mem;
    return P7_SUCCESS;
}

p7_status p7_memory_get_budget(p7_device *device, p7_memory_budget *out)
{
    if (!device || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_memory_get_budget: NULL argument");
    char b[2][32];
    out->bytes = device->info.global_mem_bytes ? device->info.global_mem_bytes : UINT64_MAX;
    snprintf(out->limit, sizeof out->limit, "the global memory of %s (%s)", device->info.name,
             p7_format_bytes(device->info.global_mem_bytes, b[0], sizeof b[0]));
    if (device->memory_limit && device->memory_limit < out->bytes) {
        out->bytes = device->memory_limit;
        snprintf(out->limit, sizeof out->limit, "the memory limit p7_device_options set for %s (%s)",
                 device->info.name, p7_format_bytes(device->memory_limit, b[0], sizeof b[0]));
    }
    if (device->host_backed) {
        char limit[256];
        uint64_t headroom = p7_host_memory_headroom(limit, sizeof limit);
        /* What p7 holds already (live and cached blocks) counts as available to it. */
        uint64_t held = device->mem.bytes_in_use + device->mem.bytes_cached;
        uint64_t usable = headroom > P7_HOST_RESERVE_BYTES ? headroom - P7_HOST_RESERVE_BYTES : 0;
        if (headroom != UINT64_MAX && held + usable < out->bytes) {
            out->bytes = held + usable;
            snprintf(out->limit, sizeof out->limit,
                     "%s, plus the %s p7 holds, less %s kept for the rest of the process (%s keeps its buffers in "
                     "host memory)", limit, p7_format_bytes(held, b[0], sizeof b[0]),
                     p7_format_bytes(P7_HOST_RESERVE_BYTES, b[1], sizeof b[1]), device->info.name);
        }
    }
    return P7_SUCCESS;
}

void p7_memory_reset_peak(p7_device *device)
{
    if (device) device->mem.peak_bytes_in_use = device->mem.bytes_in_use;
}

void p7_memory_shutdown(p7_device *device)
{
    for (p7_free_block *b = device->free_blocks, *next; b; b = next) {
        next = b->next;
        clReleaseMemObject(b->mem);
        free(b);
    }
    device->free_blocks = NULL;
    device->mem.bytes_cached = 0;
}
