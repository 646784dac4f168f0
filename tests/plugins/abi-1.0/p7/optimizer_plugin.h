/* p7 optimizer plugins: the ABI between libp7 (the host) and an optimizer shared object.
 *
 * This is the only header a plugin needs. A plugin is a shared object that exports one
 * symbol, P7_OPT_ENTRY_SYMBOL, returning a const function table (p7_opt_plugin). The
 * plugin calls nothing in libp7 by name: every service it needs (build a kernel from
 * its own OpenCL source, launch, fill, copy, normal random numbers, log, report an
 * error) comes through the p7_opt_host table it receives at create. So a plugin links
 * against nothing but the C library, and one binary works with every libp7 of the same
 * ABI major. See docs/plugins.md for a step-by-step guide.
 *
 * Versioning (the OpenCL-dispatch / SQLite rule): P7_OPT_ABI_MAJOR changes only on an
 * incompatible change, and the host refuses a plugin of another major. Within a major,
 * both tables only grow at the end; each starts with its own struct_size, and a reader
 * checks struct_size before touching a field newer than the minor it was compiled with.
 * Optional function pointers may be NULL.
 *
 * Ownership: the host owns every cl_mem (parameters, gradients, state slots) and every
 * kernel built through host->build_kernel (released after destroy). The plugin owns
 * its instance. The plugin must not keep cl_mem handles between calls (they are passed
 * anew every call, and a gradient buffer may change between steps), must enqueue all
 * work on host->queue through host->launch, and must never block, print, abort or exit.
 *
 * Errors: every function returns P7_SUCCESS (0) or a negative p7_status; on failure it
 * records a message with host->fail (which returns the code it was given, so
 * `return h->fail(h, P7_ERROR_STATE, "...")` is one line).
 */
#ifndef P7_OPTIMIZER_PLUGIN_H
#define P7_OPTIMIZER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <CL/cl.h>

#include "p7/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define P7_OPT_ABI_MAJOR 1
#define P7_OPT_ABI_MINOR 0

/* The one exported symbol; its type is p7_opt_entry_fn. */
#define P7_OPT_ENTRY_SYMBOL "p7_optimizer_plugin_entry"

#if defined(_WIN32)
#define P7_OPT_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#define P7_OPT_EXPORT __attribute__((visibility("default")))
#else
#define P7_OPT_EXPORT
#endif

#define P7_OPT_MAX_SLOTS 8   /* state buffers per parameter tensor */
#define P7_OPT_MAX_GROUPS 16 /* parameter groups per optimizer */

/* A window of a device buffer: `offset` counts float elements from the buffer start. */
typedef struct p7_opt_buf {
    cl_mem mem;
    uint64_t offset;
} p7_opt_buf;

/* One parameter tensor as the host shows it to the plugin, rebuilt for every call.
 * Every buffer holds `count` contiguous floats starting at its offset. grad.mem is
 * NULL when the parameter received no gradient (PyTorch's grad None): SGD and Adam
 * then leave the parameter and its state untouched. state[s] is the host-allocated
 * slot s (s < p7_opt_plugin.slot_count), initialised by p7_opt_plugin.init_state. */
typedef struct p7_opt_param {
    p7_opt_buf param;
    p7_opt_buf grad;
    p7_opt_buf state[P7_OPT_MAX_SLOTS];
    uint64_t count;
    uint32_t group;     /* parameter group, < P7_OPT_MAX_GROUPS: hyperparameters are per group */
    uint32_t index;     /* position in the optimizer's parameter list (stable: keys RNG streams) */
    const char *name;   /* e.g. "conv1.weight", or "" */
} p7_opt_param;

/* ---- hyperparameter schema ---- */

typedef enum p7_opt_hparam_kind {
    P7_OPT_REAL = 0,
    P7_OPT_INT = 1,   /* an integral value */
    P7_OPT_BOOL = 2   /* 0 or 1 */
} p7_opt_hparam_kind;

enum {
    P7_OPT_HP_MIN_OPEN = 1u << 0,     /* value must be > min (default: >= min) */
    P7_OPT_HP_MAX_OPEN = 1u << 1,     /* value must be < max (default: <= max) */
    P7_OPT_HP_DATASET_SIZE = 1u << 2, /* the host sets it to the training-set size when it
                                         knows that and the user did not set it (IVON's ess) */
    P7_OPT_HP_ALLOW_INF = 1u << 3     /* +-infinity is a valid value ("off", e.g. a clip radius);
                                         without it infinite values are refused */
};

/* One hyperparameter. The host validates every value against kind and range before the
 * plugin sees it (NaN is always refused), so plugins only check cross-parameter rules
 * (e.g. Nesterov needs momentum > 0). Use HUGE_VAL / -HUGE_VAL for an unbounded side;
 * infinity itself is accepted only with P7_OPT_HP_ALLOW_INF. */
typedef struct p7_opt_hparam {
    const char *name;
    double default_value;
    double min, max;
    uint32_t kind;   /* p7_opt_hparam_kind */
    uint32_t flags;  /* P7_OPT_HP_* */
    const char *doc; /* one line, shown in help and error messages */
} p7_opt_hparam;

/* ---- host services ---- */

/* A kernel argument for host->launch: P7_OPT_ARG(x) gives its size and address. */
typedef struct p7_opt_arg {
    size_t size;
    const void *value;
} p7_opt_arg;
#define P7_OPT_ARG(x) { sizeof(x), &(x) }

typedef enum p7_opt_log_level {
    P7_OPT_LOG_DEBUG = 0,
    P7_OPT_LOG_INFO = 1,
    P7_OPT_LOG_WARN = 2
} p7_opt_log_level;

typedef struct p7_opt_host p7_opt_host;

/* One table per optimizer instance; it outlives the instance. All work is enqueued on
 * `queue` (in order), so consecutive launches see each other's results. */
struct p7_opt_host {
    uint32_t struct_size;
    uint16_t abi_major, abi_minor;
    void *host_data;                 /* the host's; plugins do not touch it */

    cl_context context;
    cl_device_id device;
    cl_command_queue queue;
    uint64_t seed;                   /* the optimizer's RNG seed (p7_optimizer_options.seed) */

    /* Build `kernel_name` from the plugin's own OpenCL C source. `source_name` names it
     * in build-error messages (which carry the compiler log). The host owns the kernel
     * and releases it after destroy; build each kernel once, at create. Argument slots
     * belong to this instance only. */
    p7_status (*build_kernel)(const p7_opt_host *host, const char *source_name, const char *source,
                              const char *options, const char *kernel_name, cl_kernel *out);

    /* Set the `nargs` arguments in order and enqueue a 1-D range of `global` work-items
     * (global >= 1; the kernel must ignore ids >= its element count). `label` names the
     * launch in profiles and errors. Never waits. */
    p7_status (*launch)(const p7_opt_host *host, cl_kernel kernel, const char *label, size_t global,
                        unsigned nargs, const p7_opt_arg *args);

    /* dst[0 .. count) = value (enqueued). */
    p7_status (*fill)(const p7_opt_host *host, p7_opt_buf dst, uint64_t count, float value);

    /* dst[0 .. count) = src[0 .. count) (enqueued; the windows must not overlap). */
    p7_status (*copy)(const p7_opt_host *host, p7_opt_buf dst, p7_opt_buf src, uint64_t count);

    /* dst[i] = standard normal number i of Philox stream `stream` of `seed` (p7/rng.h's
     * convention, as p7_tensor_fill_normal): counter-based, so (seed, stream) reproduces
     * the draw exactly, e.g. after a checkpoint. */
    p7_status (*randn)(const p7_opt_host *host, p7_opt_buf dst, uint64_t count, uint64_t seed,
                       uint64_t stream);

    /* Optional diagnostics (the host decides whether and where to show them). */
    void (*log)(const p7_opt_host *host, int level, const char *fmt, ...);

    /* Record the error message the caller of libp7 will read (p7_last_error) and return
     * `status`, which must be negative. */
    p7_status (*fail)(const p7_opt_host *host, p7_status status, const char *fmt, ...);
};

/* ---- the plugin's function table ---- */

typedef struct p7_opt_instance p7_opt_instance; /* the plugin's, opaque to the host */

enum {
    P7_OPT_CAP_SAMPLE = 1u << 0  /* implements sample/restore (weight perturbation, IVON) */
};

typedef struct p7_opt_plugin {
    uint32_t struct_size;            /* sizeof(p7_opt_plugin) as the plugin was compiled */
    uint16_t abi_major, abi_minor;   /* P7_OPT_ABI_MAJOR / _MINOR the plugin was built with */
    const char *name;                /* short name, stored in checkpoints: "sgd", "ivon" */
    const char *description;         /* one line */
    uint32_t version;                /* the plugin's own release number */
    uint32_t state_version;          /* layout of slots + blob; bump when it changes */
    uint32_t caps;                   /* P7_OPT_CAP_* */
    uint32_t slot_count;             /* state buffers per parameter, <= P7_OPT_MAX_SLOTS */
    const char *const *slot_names;   /* slot_count names, for checkpoints and debugging */
    uint32_t hparam_count;
    const p7_opt_hparam *hparams;    /* hparam_count entries; index = position */

    /* A new instance over `count` parameters. `hparams` holds hparam_count values per
     * group, group-major: hparams[g * hparam_count + i], for groups 0 .. groups-1, all
     * validated against the schema. `host` stays valid until destroy. Build kernels here. */
    p7_status (*create)(const p7_opt_host *host, const double *hparams, uint32_t groups,
                        const p7_opt_param *params, size_t count, p7_opt_instance **out);
    void (*destroy)(p7_opt_instance *instance);

    /* Fill the freshly allocated state slots (zeros, IVON's hess_init, ...). */
    p7_status (*init_state)(p7_opt_instance *instance, const p7_opt_param *params, size_t count);

    /* Change hyperparameter `index` of `group` while training (LR schedules). The host has
     * checked the range; the plugin may refuse a combination. Takes effect next step. */
    p7_status (*set_hparam)(p7_opt_instance *instance, uint32_t group, uint32_t index, double value);

    /* One update of every parameter from its gradient (or, for CAP_SAMPLE plugins, from
     * the statistics gathered by restore). */
    p7_status (*step)(p7_opt_instance *instance, const p7_opt_param *params, size_t count);

    /* The scalar state (step counters, RNG position, ...), not the slots, which the host
     * saves. With blob NULL, *size receives the bytes needed. Use a fixed byte order. */
    p7_status (*save)(const p7_opt_instance *instance, void *blob, size_t capacity, size_t *size);
    /* Restore from a blob written by a plugin whose state_version was `state_version`;
     * migrate or refuse (P7_ERROR_FORMAT) when it differs from yours. */
    p7_status (*load)(p7_opt_instance *instance, uint32_t state_version, const void *blob, size_t size);

    /* Optional (CAP_SAMPLE). sample: parameters become a draw (e.g. mean + noise) and the
     * mean is kept in a slot. eps: NULL, or per parameter a buffer of `count` standard
     * normal numbers to use instead of the plugin's RNG (tests inject noise this way).
     * restore: parameters back to the kept mean, bit for bit; with accumulate != 0, the
     * current gradients are folded into the statistics the next step uses. */
    p7_status (*sample)(p7_opt_instance *instance, const p7_opt_param *params, size_t count,
                        const p7_opt_buf *eps);
    p7_status (*restore)(p7_opt_instance *instance, const p7_opt_param *params, size_t count,
                         int accumulate);
    /* New fields go here, after the last one of every earlier minor. */
} p7_opt_plugin;

/* The size of a minor-0 table: the host refuses anything smaller. */
#define P7_OPT_PLUGIN_MIN_SIZE (offsetof(p7_opt_plugin, restore) + sizeof(void (*)(void)))

/* The entry point. Receives the host's ABI numbers; returns the table, or NULL when
 * the plugin cannot serve that host (for example a host minor older than it needs). */
typedef const p7_opt_plugin *(*p7_opt_entry_fn)(uint32_t host_abi_major, uint32_t host_abi_minor);

#ifdef __cplusplus
}
#endif

#endif
