/* p7bench --profile: where a cell's training step spends its time, from the OpenCL
 * profiling events of a device opened with profiling = 2 (labels name the layer).
 *
 * Only training steps are measured. The session's first steps are dropped (kernel builds
 * and first allocations), and so is the first step of every later epoch; an epoch's last
 * step is dropped with the validation and test passes that follow it, since the trainer
 * runs them in the same p7_trainer_run_epoch call with no hook in between. The events of
 * what is dropped are collected and forgotten, so they never mix with the training rows.
 * Every boundary is a p7_profile_collect, which waits for the queue: the wall time
 * between two of them is the measured steps' own, and the results stay bit for bit those
 * of a run without --profile (a wait changes no arithmetic). */
#ifndef P7BENCH_PROFILE_H
#define P7BENCH_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "bench_profile.h"
#include "p7/p7.h"

enum { P7BENCH_PROFILE_WARMUP_STEPS = 3 }; /* the session's first steps, dropped */

typedef struct p7bench_profile {
    p7_device *device;
    double flops_per_step;    /* convolutions and linear layers, bench_network_flops */
    bench_cpu_peak peak;      /* gflops 0: unknown (not a CPU, and no --peak-gflops) */
    char peak_text[640];
    uint64_t session_step0;   /* the optimizer step the session started at; UINT64_MAX: not seen yet */
    int measuring;            /* between a start boundary and the epoch's last on_step */
    size_t start_batch;
    double start_time;
    /* the epoch in progress / just ended */
    int epoch, epoch_steps;
    double epoch_wall_s, epoch_device_ms, epoch_gemm_ms;
    /* the cell's measured steps, rows summed by label */
    p7_profile_row *rows, *scratch;
    size_t count, capacity;
    size_t labels_lost;       /* labels beyond capacity (their time is missing) */
    int steps;
    double wall_s;
    char error[512];          /* the first failure, reported at the epoch's end */
} p7bench_profile;

/* Starts a cell's profile: the device must profile (p7_device_options.profiling). The
 * peak is --peak-gflops when > 0, else the cpuinfo estimate on a CPU device, else unknown.
 * Returns 0, or 1 with err filled. */
int p7bench_profile_begin(p7bench_profile *p, p7_device *device, const p7_network_config *network, int batch,
                          double peak_gflops, char *err, size_t err_size);

/* From the trainer's on_step: the boundaries described above. Never stops the run; a
 * failure is kept in p->error. */
void p7bench_profile_on_step(p7bench_profile *p, const p7_step_progress *progress);

/* After p7_trainer_run_epoch returned: forgets the events since the last boundary (the
 * last step, the evaluation). Returns 0, or 1 when the profile failed (p->error). */
int p7bench_profile_epoch_end(p7bench_profile *p, int epoch);

/* Three console lines about the epoch just ended (each without its newline). */
void p7bench_profile_epoch_lines(const p7bench_profile *p, char lines[3][320]);

/* The cell's profile.md: what was measured, then bench_profile_print's tables. `title`
 * names the cell. Returns 0, or 1 with err filled. */
int p7bench_profile_write(const p7bench_profile *p, const char *path, const char *title, char *err,
                          size_t err_size);

void p7bench_profile_release(p7bench_profile *p); /* NULL-safe */

#endif
