/* Internal to libp7: the device structure, error helpers, programs and launches.
 * Not installed; nothing outside core/ may include it. */
#ifndef P7_INTERNAL_H
#define P7_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "p7/device.h"
#include "p7/memory.h"
#include "p7/status.h"
#include "p7/tensor.h"

#if defined(__GNUC__)
#define P7_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define P7_PRINTF(f, a)
#endif

/* ---- errors (status.c) ---- */

/* Record a message for this thread and return `status`, so call sites read
 * `return p7_fail(P7_ERROR_INVALID_SHAPE, "gemm: ...", ...);` */
p7_status p7_fail(p7_status status, const char *fmt, ...) P7_PRINTF(2, 3);

/* "1.25 GiB" or "37.0 MiB", for messages; returns buf. */
const char *p7_format_bytes(uint64_t bytes, char *buf, size_t size);

/* For an OpenCL call that returned `err`: names the call and the code. */
p7_status p7_fail_cl(cl_int err, const char *what);

/* Evaluate an OpenCL call; on error record "<what>: CL_..." and return its code. */
#define P7_CL_TRY(call, what)                                   \
    do {                                                        \
        cl_int p7_err_ = (call);                                \
        if (p7_err_ != CL_SUCCESS) return p7_fail_cl(p7_err_, (what)); \
    } while (0)

#define P7_TRY(call)                            \
    do {                                        \
        p7_status p7_st_ = (call);              \
        if (p7_st_ != P7_SUCCESS) return p7_st_; \
    } while (0)

/* ---- embedded kernel sources (generated from the kernels folder at build time) ---- */

typedef struct p7_kernel_source {
    const char *file;   /* e.g. "gemm_p7.cl" */
    const char *text;
} p7_kernel_source;

extern const p7_kernel_source p7_kernel_sources[];
extern const size_t p7_kernel_source_count;

/* ---- programs (program.c) ---- */

/* A built program from an embedded kernel file, cached per device, file and options:
 * built once per process. The device keeps ownership; do not release it. */
p7_status p7_program_get(p7_device *device, const char *file, const char *options,
                         cl_program *out);

/* Build `source` for the device (not cached in memory; the on-disk cache applies).
 * `name` names the source in error messages. The caller releases the program. */
p7_status p7_program_build_source(p7_device *device, const char *name, const char *source,
                                  const char *options, cl_program *out);

/* A kernel object from an embedded file, cached per device (so its argument slots are
 * shared: set every argument before each launch, on one thread at a time). */
p7_status p7_kernel_get(p7_device *device, const char *file, const char *options,
                        const char *kernel_name, cl_kernel *out);

/* ---- launches (device.c) ---- */

/* Enqueue `kernel` on the device's queue. `local` may be NULL. `label` names the op in
 * profiling records and error messages. Never waits. */
p7_status p7_launch(p7_device *device, cl_kernel kernel, cl_uint work_dim, const size_t *global,
                    const size_t *local, const char *label);

/* Set kernel arguments in order: P7_ARG(x) expands to sizeof and address. */
#define P7_ARG(x) sizeof(x), &(x)
p7_status p7_set_args(cl_kernel kernel, const char *label, int count, ...);

/* Record an event for profiling (takes ownership of `event`); no-op when profiling is off. */
void p7_profile_record(p7_device *device, const char *label, cl_event event);

/* ---- the device ---- */

typedef struct p7_program_entry {
    char *key;          /* file "\n" options */
    cl_program program;
    struct p7_program_entry *next;
} p7_program_entry;

typedef struct p7_kernel_entry {
    char *key;          /* file "\n" options "\n" kernel */
    cl_kernel kernel;
    struct p7_kernel_entry *next;
} p7_kernel_entry;

typedef struct p7_free_block {
    cl_mem mem;
    size_t size;
    struct p7_free_block *next;
} p7_free_block;

typedef struct p7_profile_entry {
    char label[48];
    cl_event event;
} p7_profile_entry;

struct p7_device {
    p7_device_info info;
    cl_platform_id platform;
    cl_device_id id;
    cl_context context;
    cl_command_queue queue;
    int profiling;
    int kernel_cache;            /* resolved: 1 on, 0 off */
    unsigned program_cache_hits; /* programs built from the disk cache (tests read it) */
    char cache_dir[1024];
    p7_gemm_backend gemm_backend;
    int is_pocl;
    char description[512];

    p7_program_entry *programs;
    p7_kernel_entry *kernels;

    /* allocator (memory.c) */
    uint64_t memory_limit;
    int host_backed;                 /* buffers live in host memory (CPU devices, PoCL) */
    uint64_t host_headroom;          /* p7_host_memory_headroom at the last reading */
    uint64_t host_created_since;     /* bytes of buffers created since that reading */
    int host_read;                   /* host_headroom holds a reading */
    p7_free_block *free_blocks;
    p7_memory_stats mem;
    uint64_t live_buffers;

    /* GEMM backends (gemm_*.c) */
    void *clblast_state;
    p7_buffer *gemm_workspace;  /* grown monotonically; packing panels for p7 GEMM */

    /* profiling (profile.c) */
    p7_profile_entry *profile;
    size_t profile_count, profile_capacity;
};

/* ---- tensors (tensor.c); the struct is shared with autograd and the ops ---- */

typedef struct p7_storage {
    p7_buffer *buffer;
    size_t elements;
    int refs;
} p7_storage;

struct p7_tensor {
    p7_device *device;
    p7_storage *storage;
    size_t offset;
    int ndim;
    int64_t shape[P7_MAX_DIMS];
    size_t numel;
    int refs;
    /* autograd (autograd.c) */
    int requires_grad;   /* a leaf set by the user, or the output of a recorded op */
    int is_leaf;         /* set by p7_tensor_set_requires_grad: gradients persist */
    p7_tensor *grad;     /* owned; NULL until a backward pass writes it */
    unsigned uses;       /* times used as an op input since the tape was last cleared */
};

/* Allocator hooks used by device open/close. */
void p7_memory_shutdown(p7_device *device);

/* Host memory (host_memory.c): bytes this process may still take, the smaller of
 * MemAvailable and the address-space limit (RLIMIT_AS) less what it maps now;
 * UINT64_MAX when neither is known. `limit` (may be NULL) receives which one binds,
 * in words with its numbers. */
uint64_t p7_host_memory_headroom(char *limit, size_t size);

/* Host memory that host-backed devices leave to the rest of the process (the OpenCL
 * runtime's compiler, thread stacks, host staging buffers). */
#define P7_HOST_RESERVE_BYTES ((uint64_t)256 << 20)

/* A scratch buffer of at least `bytes`, owned by the device, reused across calls.
 * Only valid until the next call that asks for it; ops on the in-order queue can
 * rely on that. */
p7_status p7_device_workspace(p7_device *device, p7_buffer **slot, size_t bytes, cl_mem *out);

/* Program-binary disk cache (program_cache.c). Returns 1 on a hit with *out built. */
int p7_program_cache_load(p7_device *device, const char *source, const char *options,
                          cl_program *out);
void p7_program_cache_store(p7_device *device, const char *source, const char *options,
                            cl_program program);

/* Case-insensitive substring test. */
int p7_contains_nocase(const char *haystack, const char *needle);

#endif
