/* p7bench --profile (see p7bench_profile.h). */
#define _POSIX_C_SOURCE 200809L
#include "p7bench_profile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Labels a VGG11 BatchEnsemble step makes with per-layer scopes number a few hundred. */
enum { PROFILE_LABELS_MAX = 4096 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int p7bench_profile_begin(p7bench_profile *p, p7_device *device, const p7_network_config *network, int batch,
                          double peak_gflops, char *err, size_t err_size)
{
    memset(p, 0, sizeof *p);
    p->device = device;
    p->session_step0 = UINT64_MAX;
    p->flops_per_step = bench_network_flops(network, batch, 1);
    p->capacity = PROFILE_LABELS_MAX;
    p->rows = calloc(p->capacity, sizeof *p->rows);
    p->scratch = calloc(p->capacity, sizeof *p->scratch);
    if (!p->rows || !p->scratch) {
        p7bench_profile_release(p);
        return snprintf(err, err_size, "--profile: out of host memory"), 1;
    }
    const p7_device_info *info = p7_device_get_info(device);
    if (peak_gflops > 0) {
        p->peak.gflops = peak_gflops;
        snprintf(p->peak_text, sizeof p->peak_text, "%.0f GFLOP/s (given with --peak-gflops)", peak_gflops);
    } else if (info && info->kind == P7_DEVICE_KIND_CPU &&
               bench_cpu_peak_estimate(NULL, (int)info->compute_units, &p->peak) == 0 && p->peak.gflops > 0) {
        bench_cpu_peak_describe(&p->peak, p->peak_text, sizeof p->peak_text);
    } else {
        memset(&p->peak, 0, sizeof p->peak);
        snprintf(p->peak_text, sizeof p->peak_text, "unknown (not a CPU device, or cpuinfo without a clock; give "
                                                    "--peak-gflops)");
    }
    /* whatever came before (model build, an earlier cell) is not this cell's */
    size_t n = 0;
    if (p7_profile_collect(device, NULL, 0, &n) != P7_SUCCESS) {
        snprintf(err, err_size, "--profile: %s (the device must be opened with profiling)", p7_last_error());
        p7bench_profile_release(p);
        return 1;
    }
    return 0;
}

static void fail(p7bench_profile *p, const char *what)
{
    if (!p->error[0]) snprintf(p->error, sizeof p->error, "--profile: %s: %s", what, p7_last_error());
    p->measuring = 0;
}

/* The events since the last boundary, forgotten. */
static int drop_events(p7bench_profile *p)
{
    size_t n = 0;
    if (p7_profile_collect(p->device, NULL, 0, &n) != P7_SUCCESS) return fail(p, "collecting the events"), 1;
    return 0;
}

/* The events since the start boundary, added to the epoch's and the cell's sums. The
 * wall time ends when the collection has waited for the queue: the steps enqueued last
 * are only then done. */
static int take_events(p7bench_profile *p, int steps)
{
    size_t n = 0;
    if (p7_profile_collect(p->device, p->scratch, p->capacity, &n) != P7_SUCCESS)
        return fail(p, "collecting the events"), 1;
    const double wall_s = now_s() - p->start_time;
    if (n > p->capacity) {
        p->labels_lost += n - p->capacity;
        n = p->capacity;
    }
    for (size_t i = 0; i < n; i++) {
        const p7_profile_row *r = &p->scratch[i];
        const char *slash = strchr(r->label, '/'), *op = slash ? slash + 1 : r->label;
        p->epoch_device_ms += r->total_ms;
        if (!strncmp(op, "gemm", 4)) p->epoch_gemm_ms += r->total_ms;
        size_t j = 0;
        while (j < p->count && strcmp(p->rows[j].label, r->label) != 0) j++;
        if (j == p->count) {
            if (p->count == p->capacity) {
                p->labels_lost++;
                continue;
            }
            p->rows[p->count++] = (p7_profile_row){.launches = 0, .total_ms = 0};
            memcpy(p->rows[j].label, r->label, sizeof r->label);
        }
        p->rows[j].launches += r->launches;
        p->rows[j].total_ms += r->total_ms;
    }
    p->epoch_steps += steps;
    p->epoch_wall_s += wall_s;
    p->steps += steps;
    p->wall_s += wall_s;
    return 0;
}

void p7bench_profile_on_step(p7bench_profile *p, const p7_step_progress *s)
{
    if (!p || !p->rows || p->error[0]) return;
    if (p->session_step0 == UINT64_MAX) p->session_step0 = s->step - 1;
    if (s->epoch != p->epoch) { /* a new epoch (or the first of a resumed session) */
        p->epoch = s->epoch;
        p->epoch_steps = 0;
        p->epoch_wall_s = p->epoch_device_ms = p->epoch_gemm_ms = 0;
        p->measuring = 0;
    }
    const int last_call = s->batch + 1 >= s->batches; /* on_step does not see the epoch's last step */
    if (!p->measuring) {
        if (s->step - p->session_step0 < P7BENCH_PROFILE_WARMUP_STEPS || last_call) return;
        if (drop_events(p)) return;
        p->measuring = 1;
        p->start_batch = s->batch;
        p->start_time = now_s();
        return;
    }
    if (!last_call) return;
    if (take_events(p, (int)(s->batch - p->start_batch)) == 0) p->measuring = 0;
}

int p7bench_profile_epoch_end(p7bench_profile *p, int epoch)
{
    if (!p || !p->rows) return 0;
    if (epoch != p->epoch) { /* no on_step in this epoch (one batch, or too few) */
        p->epoch = epoch;
        p->epoch_steps = 0;
        p->epoch_wall_s = p->epoch_device_ms = p->epoch_gemm_ms = 0;
    }
    p->measuring = 0;
    if (!p->error[0]) drop_events(p);
    return p->error[0] != 0;
}

void p7bench_profile_epoch_lines(const p7bench_profile *p, char lines[3][320])
{
    if (p->epoch_steps <= 0) {
        snprintf(lines[0], 320, "  profile, epoch %d: no training step measured (the session's first %d steps, the "
                                "first of later epochs and the last of each are left out)", p->epoch,
                 P7BENCH_PROFILE_WARMUP_STEPS);
        lines[1][0] = lines[2][0] = '\0';
        return;
    }
    const double wall_ms = 1e3 * p->epoch_wall_s / p->epoch_steps, dev_ms = p->epoch_device_ms / p->epoch_steps;
    snprintf(lines[0], 320, "  profile, epoch %d: %d training steps measured (warm-up, each epoch's first and last "
                            "step, and evaluation left out)", p->epoch, p->epoch_steps);
    snprintf(lines[1], 320, "    per step: wall %.2f ms, device %.2f ms (sum of kernel events; GEMM %.2f ms), host "
                            "overhead %.2f ms (%.1f%% of wall)", wall_ms, dev_ms, p->epoch_gemm_ms / p->epoch_steps,
             wall_ms - dev_ms, wall_ms > 0 ? 100.0 * (wall_ms - dev_ms) / wall_ms : 0.0);
    const double gflop = p->flops_per_step * 1e-9, rate = wall_ms > 0 ? gflop / (wall_ms * 1e-3) : 0;
    if (p->peak.gflops > 0)
        snprintf(lines[2], 320, "    conv and linear %.3f GFLOP per step: %.1f GFLOP/s over the wall time, %.1f%% of "
                                "the FMA peak (%.0f GFLOP/s%s)", gflop, rate, 100.0 * rate / p->peak.gflops,
                 p->peak.gflops, strstr(p->peak_text, "--peak-gflops") ? ", given" : ", estimated");
    else
        snprintf(lines[2], 320, "    conv and linear %.3f GFLOP per step: %.1f GFLOP/s over the wall time (peak "
                                "unknown: --peak-gflops)", gflop, rate);
}

static int by_ms_desc(const void *a, const void *b)
{
    const double x = ((const p7_profile_row *)a)->total_ms, y = ((const p7_profile_row *)b)->total_ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

int p7bench_profile_write(const p7bench_profile *p, const char *path, const char *title, char *err, size_t err_size)
{
    FILE *f = fopen(path, "w");
    if (!f) return snprintf(err, err_size, "%s: %s", path, strerror(errno)), 1;
    fprintf(f, "# Profile: %s\n\n", title);
    fprintf(f, "- device: %s\n", p7_device_describe(p->device));
    fprintf(f, "- FMA peak: %s\n", p->peak_text);
    fprintf(f, "- measured: %d training steps, %.2f s of wall time (this session; left out: the first %d steps "
               "(kernel builds), the first step of every later epoch, and each epoch's last step together with the "
               "validation and test passes that follow it)\n", p->steps, p->wall_s, P7BENCH_PROFILE_WARMUP_STEPS);
    if (p->labels_lost)
        fprintf(f, "- %zu kernel labels beyond the first %zu are missing from the tables\n", p->labels_lost,
                p->capacity);
    if (p->error[0]) fprintf(f, "- the profile stopped early: %s\n", p->error);
    if (p->steps <= 0) {
        fprintf(f, "\nNo training step was measured: give the cell more batches per epoch.\n");
    } else {
        p7_profile_row *sorted = malloc((p->count ? p->count : 1) * sizeof *sorted);
        if (!sorted) {
            fclose(f);
            return snprintf(err, err_size, "out of host memory"), 1;
        }
        memcpy(sorted, p->rows, p->count * sizeof *sorted);
        qsort(sorted, p->count, sizeof *sorted, by_ms_desc);
        const bench_profile_input in = {.rows = sorted, .count = p->count, .steps = p->steps, .wall_s = p->wall_s,
                                        .gemm_flops_per_step = p->flops_per_step, .peak = &p->peak};
        bench_profile_print(f, &in);
        free(sorted);
    }
    if (fclose(f) != 0) return snprintf(err, err_size, "%s: %s", path, strerror(errno)), 1;
    return 0;
}

void p7bench_profile_release(p7bench_profile *p)
{
    if (!p) return;
    free(p->rows);
    free(p->scratch);
    p->rows = p->scratch = NULL;
}
