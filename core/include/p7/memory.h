/* p7 device memory: a caching, size-bucketed allocator per device.
 *
 * Freed blocks go back to a per-device cache, keyed by their size class, and are
 * handed out again before new OpenCL buffers are created (clCreateBuffer costs a
 * syscall and, on some drivers, a page-zeroing pass). When OpenCL reports
 * CL_MEM_OBJECT_ALLOCATION_FAILURE or CL_OUT_OF_RESOURCES, or a request would pass
 * the device's memory limit, the allocator waits for the queue, frees its whole
 * cache and retries once; if that fails too it returns P7_ERROR_OUT_OF_MEMORY with
 * a message giving the bytes asked for and the bytes held.
 *
 * On CPU devices (PoCL) device buffers are host memory: before creating one the
 * allocator also checks that it fits what the process may still map (MemAvailable and
 * the address-space limit, ulimit -v, less what the process maps, keeping 256 MiB for
 * the rest of the process), frees its cache and retries once, and otherwise returns
 * P7_ERROR_OUT_OF_MEMORY naming the request and the limit. (PoCL itself would abort.)
 *
 * Most users never call these: tensors allocate through them.
 */
#ifndef P7_MEMORY_H
#define P7_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include <CL/cl.h>

#include "p7/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct p7_buffer p7_buffer;

typedef struct p7_memory_stats {
    uint64_t bytes_in_use;      /* size-class bytes of live blocks */
    uint64_t bytes_cached;      /* size-class bytes of freed blocks kept for reuse */
    uint64_t peak_bytes_in_use; /* maximum of bytes_in_use since open or reset */
    uint64_t buffers_created;   /* clCreateBuffer calls that succeeded */
    uint64_t cache_hits;        /* allocations served from the cache */
    uint64_t cache_flushes;     /* times the cache was emptied to retry an allocation */
} p7_memory_stats;

/* A block of at least `bytes` bytes. Contents are undefined (PoCL does not zero). */
P7_API p7_status p7_buffer_alloc(p7_device *device, size_t bytes, p7_buffer **out);

/* Return a block to the device's cache. NULL is a no-op. */
P7_API void p7_buffer_free(p7_buffer *buffer);

/* Blocking copies between host memory and the first `bytes` of the block. */
P7_API p7_status p7_buffer_upload(p7_buffer *buffer, const void *host, size_t bytes);
P7_API p7_status p7_buffer_download(const p7_buffer *buffer, void *host, size_t bytes);

/* Enqueue a device-side copy of `bytes` from `src` (at byte src_offset) into `dst` (at
 * byte dst_offset). Does not wait: the host is not involved. */
P7_API p7_status p7_buffer_copy(p7_device *device, cl_mem src, size_t src_offset, p7_buffer *dst, size_t dst_offset,
                         size_t bytes);

P7_API cl_mem p7_buffer_mem(const p7_buffer *buffer);
P7_API size_t p7_buffer_size(const p7_buffer *buffer); /* usable bytes (the size class) */

P7_API p7_status p7_memory_get_stats(const p7_device *device, p7_memory_stats *out);
P7_API void p7_memory_reset_peak(p7_device *device);

/* The most memory the allocator can hold at once on a device, and the limit that sets
 * it: the smallest of the device's global memory, p7_device_options.memory_limit and, on
 * CPU devices, the host memory this process may still take plus what p7 holds already. */
typedef struct p7_memory_budget {
    uint64_t bytes;
    char limit[512];   /* that limit in words, with its numbers */
} p7_memory_budget;

P7_API p7_status p7_memory_get_budget(p7_device *device, p7_memory_budget *out);

/* Release every cached (free) block back to OpenCL. */
P7_API p7_status p7_memory_release_cache(p7_device *device);

/* The size class a request of `bytes` is rounded up to. */
P7_API size_t p7_memory_size_class(size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
