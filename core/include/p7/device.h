/* p7 devices: OpenCL platform/device discovery, selection and the per-device context.
 *
 * A p7_device owns one cl_context and one in-order command queue for the life of the
 * process (or until p7_device_close). Everything p7 does on a device is enqueued on
 * that queue without waiting; the host blocks only where it reads a value back
 * (p7_tensor_download, p7_device_finish).
 *
 * Device specs (from a --device flag or the P7_DEVICE environment variable):
 *   "nvidia" "amd" "intel"  vendor words (matched against vendor and platform names)
 *   "gpu" "cpu"             device kinds
 *   "pocl"                  the Portable Computing Language CPU runtime
 *   "P:D"                   platform index P, device index D within that platform
 *   anything else           case-insensitive substring of the device name
 * NULL or "" means: P7_DEVICE if set, else the first GPU, else the first CPU device.
 * When several devices match a word, the first one (in platform, device order) wins.
 */
#ifndef P7_DEVICE_H
#define P7_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "p7/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct p7_device p7_device;

typedef enum p7_device_kind {
    P7_DEVICE_KIND_OTHER = 0,
    P7_DEVICE_KIND_CPU = 1,
    P7_DEVICE_KIND_GPU = 2,
    P7_DEVICE_KIND_ACCELERATOR = 3
} p7_device_kind;

/* What p7 knows about one OpenCL device before opening it. Plain data. */
typedef struct p7_device_info {
    unsigned platform_index;
    unsigned device_index;
    p7_device_kind kind;
    char platform_name[128];
    char platform_version[128];
    char vendor[128];
    char name[128];
    char driver_version[64];
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    unsigned compute_units;
} p7_device_info;

typedef enum p7_gemm_backend {
    P7_GEMM_AUTO = 0,    /* p7's own kernel on CPU devices, CLBlast elsewhere */
    P7_GEMM_CLBLAST = 1,
    P7_GEMM_P7 = 2
} p7_gemm_backend;

/* Options for p7_device_open. Zero-initialise, then set what you need. */
typedef struct p7_device_options {
    int profiling;           /* nonzero: queue records profiling events (per-op timing); 2: each
                                label also names the model part that ran it ("conv3/gemm_p7.tile",
                                backward included), for a per-layer profile */
    uint64_t memory_limit;   /* nonzero: the allocator treats this many bytes as the device's
                                capacity (tests use it to force the out-of-memory path) */
    int kernel_cache;        /* -1 off, 1 on, 0 auto (P7_KERNEL_CACHE, else per device) */
    p7_gemm_backend gemm;    /* P7_GEMM_AUTO: P7_GEMM env, else by device kind */
    int poison_allocations;  /* nonzero: every new tensor starts as quiet NaNs, so an op that
                                leaves an output element unwritten shows (tests; costs a fill) */
    int reduce_in_float;     /* nonzero: reductions accumulate in float even where the device
                                has fp64, the path devices without fp64 take (tests cover it) */
    int batchnorm_walk;      /* 0: by device kind (whole planes per work-item on CPUs,
                                interleaved elements elsewhere), 1: planes, 2: interleaved */
    size_t conv_scratch_floats; /* 0: the default, 8M floats (32 MiB). conv2d runs the batch in
                                chunks of images whose column matrix and GEMM output fit in
                                this many floats each (tests set it small to cover chunks) */
    int conv_winograd;       /* 0: auto (on; P7_WINOGRAD=0 turns it off), 1: on, -1: off,
                                2: on from 16 channels (tests). Winograd F(2x2, 3x3) for 3x3
                                stride-1 padding-1 convolutions of 64 or more channels each way
                                on even planes (forward, both gradients, the evaluation stage),
                                where the GEMM takes packed operands (p7's GEMM: CPU devices) */
} p7_device_options;

/* Enumerate every device of every platform. Writes up to `capacity` entries to `infos`
 * (which may be NULL when capacity is 0) and the total count to `*count`.
 * Fails with P7_ERROR_NO_PLATFORM, with install advice, when no OpenCL platform exists. */
P7_API p7_status p7_device_list(p7_device_info *infos, size_t capacity, size_t *count);

/* Pick a device from a list by spec (see above); pure, so it is testable without OpenCL.
 * On no match, fails with P7_ERROR_DEVICE_NOT_FOUND and a message listing the devices. */
P7_API p7_status p7_device_select(const char *spec, const p7_device_info *infos, size_t count,
                           size_t *index);

/* What a user should be told about how `spec` was resolved to `chosen`: today, that a
 * vendor word ("amd") found no GPU of that vendor and fell back to its CPU device. Pure;
 * writes "" when there is nothing to say. Always NUL-terminated; returns buf. */
P7_API const char *p7_device_spec_note(const char *spec, const p7_device_info *chosen, char *buf, size_t size);

/* Open the device that `spec` selects. `options` may be NULL. */
P7_API p7_status p7_device_open(const char *spec, const p7_device_options *options, p7_device **out);

/* Waits for queued work, releases caches, programs, queue and context. NULL is a no-op.
 * Every tensor of the device must have been released first. */
P7_API void p7_device_close(p7_device *device);

P7_API const p7_device_info *p7_device_get_info(const p7_device *device);

/* Block until everything enqueued on the device has finished. */
P7_API p7_status p7_device_finish(p7_device *device);

/* The GEMM backend in use, and a way to change it (P7_GEMM_AUTO re-applies the default). */
P7_API p7_gemm_backend p7_device_gemm_backend(const p7_device *device);
P7_API p7_status p7_device_set_gemm_backend(p7_device *device, p7_gemm_backend backend);
P7_API const char *p7_gemm_backend_name(p7_gemm_backend backend);

/* Parses "clblast", "p7" or "auto". */
P7_API p7_status p7_gemm_backend_parse(const char *text, p7_gemm_backend *out);

/* ---- profiling (a device opened with options.profiling, or P7_PROFILE=1; per layer:
 * profiling = 2 or P7_PROFILE=layers) ---- */

typedef struct p7_profile_row {
    char label[48];     /* the op's kernel label, e.g. "gemm_p7.kernel", "relu.forward" */
    uint64_t launches;
    double total_ms;    /* device time, from OpenCL profiling events */
} p7_profile_row;

/* Waits for the queue, then sums the recorded events by label (largest total first)
 * and forgets them. Writes up to `capacity` rows; *count receives how many labels
 * there were. Fails with P7_ERROR_STATE when the device does not profile. */
P7_API p7_status p7_profile_collect(p7_device *device, p7_profile_row *rows, size_t capacity, size_t *count);

/* One line for logs: platform, device, driver version, GEMM backend. */
P7_API const char *p7_device_describe(const p7_device *device);

/* The p7_device_spec_note of the spec this device was opened with ("" when none):
 * apps print it, since the library does not. */
P7_API const char *p7_device_note(const p7_device *device);

#ifdef __cplusplus
}
#endif

#endif
