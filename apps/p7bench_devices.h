/* Which OpenCL devices p7bench's parallel runs use; pure functions over p7_device_list's
 * entries, so they are tested without a device.
 *
 * A SLURM array task (--array-task) runs on the GPU SLURM granted it. SLURM says which in
 * the environment: CUDA_VISIBLE_DEVICES (NVIDIA), ROCR_VISIBLE_DEVICES or
 * GPU_DEVICE_ORDINAL (AMD), SLURM_STEP_GPUS / SLURM_JOB_GPUS (any gres GPU), each a list
 * of node-wide GPU indices (renumbered from 0 where cgroups hide the others). Some
 * OpenCL drivers apply that list themselves (NVIDIA's hides the other GPUs), some do not
 * (PoCL, older ROCm, Intel): when OpenCL shows no more GPUs than were granted, the task
 * takes the first one it sees; when it shows more, it takes the one at the granted index.
 * A task granted no GPU (none of the variables set, empty, or "NoDevFiles") runs on the
 * CPU device. A --device of the P:D form or naming a CPU is obeyed as given.
 *
 * `--jobs N` runs N worker processes, one device each: the devices --devices lists (each
 * item an index k, the k-th device of those --device names, or any --device spec), else
 * the first N of those --device names (by default the GPUs, else the CPU device). */
#ifndef P7BENCH_DEVICES_H
#define P7BENCH_DEVICES_H

#include <stddef.h>

#include "p7/device.h"

#define P7BENCH_DEVICES_MAX 64

/* The GPUs SLURM granted, as the environment spells them. */
typedef struct p7bench_gpu_grant {
    const char *cuda_visible_devices, *rocr_visible_devices, *gpu_device_ordinal, *slurm_step_gpus, *slurm_job_gpus;
} p7bench_gpu_grant;

/* Reads the variables above from the environment. */
p7bench_gpu_grant p7bench_gpu_grant_from_environment(void);

/* The device of an array task: *index into infos, and a line for the log in note (which
 * variable, which GPU). Returns 0, or nonzero with a reason in note. */
int p7bench_device_for_task(const char *spec, const p7_device_info *infos, size_t count, const p7bench_gpu_grant *grant,
                            size_t *index, char *note, size_t note_size);

/* Every device `spec` names (NULL or "": the GPUs, else the CPU devices): those of the
 * kind of its first match, in list order. Returns how many went to out (at most cap). */
size_t p7bench_devices_matching(const char *spec, const p7_device_info *infos, size_t count, size_t *out, size_t cap);

/* The devices of --jobs: `list` (the --devices text, or NULL) resolved against what `spec`
 * names, else the first `jobs` devices `spec` names. out receives indices into infos (at
 * most P7BENCH_DEVICES_MAX), *n their count. Returns 0, or nonzero with a reason. */
int p7bench_devices_for_jobs(const char *spec, const char *list, size_t jobs, const p7_device_info *infos, size_t count,
                             size_t *out, size_t *n, char *err, size_t err_size);

#endif
