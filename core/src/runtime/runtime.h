/* The runtime layer's internals, shared by every layer above it: the device
 * structure, error helpers, programs and launches. Not installed; nothing outside
 * core/ (and its tests) may include it. */
#ifndef P7_RUNTIME_H
#define P7_RUNTIME_H

#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "p7/device.h"
#include "p7/memory.h"
#include "p7/status.h"

#if defined(__GNUC__)
#define P7_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define P7_PRINTF(f, a)
#endif

/* ---- errors (status.c) ---- */

/* Record a message for this thread and return `status`, so call sites read
 * `return p7_fail(P7_ERROR_INVALID_SHAPE, "gemm: ...", ...);` */
p7_status p7_fail(p7_status status, const char *fmt, ...) P7_PRINTF(2, 3);

/* A user-supplied string (path, spec, hyperparameter text) as it goes into a message:
 * over 160 bytes it keeps its head and tail around "...", so the reason that follows it
 * is never cut off by the message buffer. Returns one of 4 thread-local buffers in turn,
 * so up to 4 can appear in one p7_fail. NULL gives "(null)". */
const char *p7_abbrev(const char *text);

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

/* One embedded file. Each kernel file X.cl is the symbol p7_kernels_X, declared in the
 * generated "runtime/p7_kernels.h"; the table lists those and the .clh headers they
 * include. */
typedef struct p7_kernel_source {
    const char *file;   /* e.g. "gemm_p7.cl" */
    const char *text;
} p7_kernel_source;

extern const p7_kernel_source *const p7_kernel_sources[];
extern const size_t p7_kernel_source_count;

/* ---- the compiler's own stderr output (compiler_output.c) ----
 * Between hold and release, what the OpenCL compiler writes to stderr is captured;
 * release(show = 1) passes it on (a failed build), show = 0 drops it. P7_VERBOSE=1
 * disables the capture. Holds are serialised process-wide. */
typedef struct p7_compiler_output { int saved_fd; FILE *capture; } p7_compiler_output;
void p7_compiler_output_hold(p7_compiler_output *hold);
void p7_compiler_output_release(p7_compiler_output *hold, int show);

/* ---- programs (program.c) ---- */

/* A built program from an embedded kernel file, cached per device, file and options:
 * built once per process. The device keeps ownership; do not release it. */
p7_status p7_program_get(p7_device *device, const p7_kernel_source *file, const char *options,
                         cl_program *out);

/* Build `source` for the device (not cached in memory; the on-disk cache applies).
 * `name` names the source in error messages. The caller releases the program. */
p7_status p7_program_build_source(p7_device *device, const char *name, const char *source,
                                  const char *options, cl_program *out);

/* A kernel object from an embedded file (kernels are named <family>_<verb>, the family
 * being the file's name), cached per device: its argument slots are shared, so set
 * every argument before each launch, on one thread at a time. */
p7_status p7_kernel_get(p7_device *device, const p7_kernel_source *file, const char *options,
                        const char *kernel_name, cl_kernel *out);

/* ---- launches (device.c) ---- */

/* Enqueue `kernel` on the device's queue. `local` may be NULL. `label` names the op in
 * profiling records and error messages. Never waits. */
p7_status p7_launch(p7_device *device, cl_kernel kernel, cl_uint work_dim, const size_t *global,
                    const size_t *local, const char *label);

/* Set every argument of a kernel in order: P7_SET_ARGS(kernel, label, P7_ARG(a),
 * P7_ARG(b), ...). P7_ARG(x) expands to sizeof and address, and the macro counts the
 * arguments itself; p7_set_args checks that count against the kernel's own, so a host
 * call that passes one argument too few or too many fails with both numbers instead of
 * launching with a stale slot. */
#define P7_ARG(x) sizeof(x), &(x)
#define P7_SET_ARGS(kernel, label, ...) p7_set_args((kernel), (label), P7_COUNT_ARG_PAIRS(__VA_ARGS__), __VA_ARGS__)
p7_status p7_set_args(cl_kernel kernel, const char *label, int count, ...);

/* The number of (size, pointer) pairs in a P7_SET_ARGS list, up to 32 pairs. */
#define P7_COUNT_ARG_PAIRS(...)                                                                                \
    P7_NTH_ARG_(__VA_ARGS__, 32, 31.5, 31, 30.5, 30, 29.5, 29, 28.5, 28, 27.5, 27, 26.5, 26, 25.5, 25, 24.5, \
                24, 23.5, 23, 22.5, 22, 21.5, 21, 20.5, 20, 19.5, 19, 18.5, 18, 17.5, 17, 16.5, 16, 15.5, 15,   \
                14.5, 14, 13.5, 13, 12.5, 12, 11.5, 11, 10.5, 10, 9.5, 9, 8.5, 8, 7.5, 7, 6.5, 6, 5.5, 5, 4.5, \
                4, 3.5, 3, 2.5, 2, 1.5, 1, 0.5)
#define P7_NTH_ARG_(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, \
                    a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31, a32, a33, a34, a35, a36, a37, a38,   \
                    a39, a40, a41, a42, a43, a44, a45, a46, a47, a48, a49, a50, a51, a52, a53, a54, a55, a56,   \
                    a57, a58, a59, a60, a61, a62, a63, a64, n, ...)                                              \
    ((int)(n))

/* Profiling (profile.c). Record an event (takes ownership of `event`); no-op when
 * profiling is off. Shutdown releases what was recorded and not collected. */
void p7_profile_record(p7_device *device, const char *label, cl_event event);
void p7_profile_shutdown(p7_device *device);

/* The part of the model running now ("conv3", "relu"; "" outside a model). With
 * profiling level 2 every recorded label is prefixed with it ("conv3/gemm_p7.tile"), so a
 * profile can be read per layer. The tape keeps each op's scope for its backward. */
#define P7_PROFILE_SCOPE_MAX 24
void p7_profile_set_scope(p7_device *device, const char *scope);
const char *p7_profile_scope(const p7_device *device);

/* State that a layer above the runtime keeps per device (the GEMM backends' caches and
 * workspaces): `size` zero-initialised bytes, created on the first request under `key`
 * (the address of a static of that layer) and destroyed by p7_device_close, newest
 * first, before the allocator shuts down. The runtime thus never names the layers
 * above it. */
typedef void (*p7_device_state_destroy_fn)(p7_device *device, void *state);
p7_status p7_device_state(p7_device *device, const void *key, size_t size, p7_device_state_destroy_fn destroy,
                          void **state);

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

typedef struct p7_device_state_entry {
    const void *key;
    void *state;
    p7_device_state_destroy_fn destroy;
    struct p7_device_state_entry *next;
} p7_device_state_entry;

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
    char tuning_dir[1024];       /* per-device tuning files (the GEMM's; gemm_tuning_store.c) */
    p7_gemm_backend gemm_backend;
    int is_pocl;
    int poison_allocations;      /* options.poison_allocations: tensors start as NaN */
    int reduce_in_float;         /* options.reduce_in_float */
    int batchnorm_walk;          /* options.batchnorm_walk */
    size_t conv_scratch_floats;  /* options.conv_scratch_floats */
    int conv_winograd;           /* options.conv_winograd, P7_WINOGRAD applied: 1 on, 2 on from 16
                                    channels, -1 off */
    /* limits, read once at open: ops consult them on every call */
    size_t max_work_group_size;
    int has_fp64;                /* cl_khr_fp64 */
    char description[512];
    char spec_note[512];         /* p7_device_spec_note of the opening spec */

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

    /* the layers above the runtime (p7_device_state) */
    p7_device_state_entry *states;

    /* profiling (profile.c) */
    p7_profile_entry *profile;
    size_t profile_count, profile_capacity;
    char profile_scope[P7_PROFILE_SCOPE_MAX];
};

/* Allocator hooks used by device open/close. */
void p7_memory_shutdown(p7_device *device);

/* Give a block back to OpenCL instead of the cache: for blocks of a size nothing will
 * ask for again (an outgrown workspace). NULL is a no-op. */
void p7_buffer_release(p7_buffer *buffer);

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
 * rely on that. It only grows, to the largest request made of `slot`. */
p7_status p7_device_workspace(p7_device *device, p7_buffer **slot, size_t bytes, cl_mem *out);

/* Program-binary disk cache (program_cache.c). Returns 1 on a hit with *out built. */
int p7_program_cache_load(p7_device *device, const char *source, const char *options,
                          cl_program *out);
void p7_program_cache_store(p7_device *device, const char *source, const char *options,
                            cl_program program);

/* mkdir -p: 0 on success (or when it exists), -1 otherwise (program_cache.c). */
int p7_make_dirs(const char *dir);

/* Case-insensitive substring test. */
int p7_contains_nocase(const char *haystack, const char *needle);

#endif
