/* p7-train-step: VGG11-BN training-step throughput (batch 128, 3x32x32, forward +
 * backward, no optimizer step) with a per-op device-time breakdown from OpenCL
 * profiling events, and PyTorch CPU on the same model measured in the same run by
 * bench/pytorch-train-step.py (Debian's python3-torch, 2 threads). Prints the ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p7/p7.h"
#include "bench_clock.h"

#define CHECK(call)                                                                      \
    do {                                                                                 \
        if ((call) != P7_SUCCESS) {                                                      \
            fprintf(stderr, "p7-train-step: %s: %s\n", #call, p7_last_error());          \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

static int train_step(p7_model *model, p7_tape *tape, p7_tensor *x, cl_mem labels)
{
    p7_tensor *logits, *loss;
    p7_model_zero_grad(model);
    CHECK(p7_model_forward(model, tape, x, 1, &logits));
    CHECK(p7_cross_entropy(tape, logits, labels, 0, &loss));
    CHECK(p7_tape_backward(tape, loss));
    p7_tensor_release(logits);
    p7_tensor_release(loss);
    return 0;
}

int main(int argc, char **argv)
{
    const char *spec = NULL, *script = NULL;
    int steps = 5, batch = 128, members = 1, run_peer = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) spec = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--members") && i + 1 < argc) members = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--peer-script") && i + 1 < argc) script = argv[++i];
        else if (!strcmp(argv[i], "--no-peer")) run_peer = 0;
        else {
            fprintf(stderr, "usage: p7-train-step [--device SPEC] [--steps N] [--batch B] [--members M] "
                            "[--no-peer] [--peer-script PATH]\n");
            return 2;
        }
    }
    if (steps < 1 || batch < 1 || members < 1) { fprintf(stderr, "p7-train-step: bad --steps/--batch/--members\n"); return 2; }
    p7_device_options opts = {.profiling = 1};
    p7_device *device;
    CHECK(p7_device_open(spec, &opts, &device));
    printf("device: %s\n", p7_device_describe(device));

    p7_vgg_options vo = {.batchnorm = 1, .members = members, .classes = 10, .alpha_init = 0.5f, .gamma_init = 0.5f};
    p7_model *model;
    CHECK(p7_model_vgg11(device, &vo, 1, &model));
    const int64_t xs[4] = {batch, 3, 32, 32};
    p7_tensor *x;
    CHECK(p7_tensor_create(device, 4, xs, &x));
    CHECK(p7_tensor_fill_normal(x, 2, 0, 0.0f, 1.0f));
    size_t rows = (size_t)batch * (size_t)members;
    int32_t *labels = malloc(rows * sizeof *labels);
    for (size_t i = 0; i < rows; i++) labels[i] = (int32_t)((i * 7) % 10);
    p7_buffer *lb;
    CHECK(p7_buffer_alloc(device, rows * sizeof *labels, &lb));
    CHECK(p7_buffer_upload(lb, labels, rows * sizeof *labels));
    p7_tape *tape;
    CHECK(p7_tape_create(device, &tape));

    /* warm-up: kernel builds, allocator cache, PoCL's per-local-size JIT */
    for (int i = 0; i < 2; i++) {
        if (train_step(model, tape, x, p7_buffer_mem(lb))) return 1;
        CHECK(p7_device_finish(device));
    }
    size_t nrows;
    CHECK(p7_profile_collect(device, NULL, 0, &nrows)); /* drop warm-up events */

    double *t = malloc((size_t)steps * sizeof *t);
    for (int i = 0; i < steps; i++) {
        double t0 = bench_now_s();
        if (train_step(model, tape, x, p7_buffer_mem(lb))) return 1;
        CHECK(p7_device_finish(device));
        t[i] = bench_now_s() - t0;
        fprintf(stderr, "  step %d/%d: %.3f s\n", i + 1, steps, t[i]);
    }
    qsort(t, (size_t)steps, sizeof *t, bench_cmp_double);
    double median = t[steps / 2], p7_ips = batch / median;

    p7_profile_row prof[64];
    CHECK(p7_profile_collect(device, prof, 64, &nrows));
    double total = 0;
    for (size_t i = 0; i < nrows && i < 64; i++) total += prof[i].total_ms;
    printf("\nper-op device time over %d steps (ms per step):\n| op | launches/step | ms/step | share |\n|---|---|---|---|\n", steps);
    for (size_t i = 0; i < nrows && i < 64; i++)
        printf("| %s | %.0f | %.1f | %.1f%% |\n", prof[i].label, (double)prof[i].launches / steps,
               prof[i].total_ms / steps, 100.0 * prof[i].total_ms / total);
    printf("| (sum of kernels) | | %.1f | |\n", total / steps);

    printf("\nVGG11-BN training step (forward + backward), batch %d, members %d:\n", batch, members);
    printf("| system | s/step (median of %d) | images/s |\n|---|---|---|\n", steps);
    printf("| p7 | %.3f | %.1f |\n", median, p7_ips);

    int rc = 0;
    if (run_peer) {
        char cmd[2048], def[1024];
        if (!script) {
            const char *src = getenv("P7_SOURCE_DIR");
            snprintf(def, sizeof def, "%s/bench/pytorch-train-step.py", src ? src : P7_SOURCE_DIR_DEFAULT);
            script = def;
        }
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' --threads 2 --steps %d --batch %d", script, steps, batch);
        FILE *p = popen(cmd, "r");
        double ips = 0, sps = 0;
        int threads = 0;
        if (p && fscanf(p, "pytorch %lf %lf %d", &ips, &sps, &threads) == 3) {
            printf("| PyTorch CPU (%d threads) | %.3f | %.1f |\n", threads, sps, ips);
            printf("\np7 / PyTorch = %.2fx\n", p7_ips / ips);
        } else {
            printf("(PyTorch peer unavailable: %s failed; install python3-torch)\n", cmd);
            rc = 0;
        }
        if (p) pclose(p);
    }
    free(t);
    free(labels);
    p7_tensor_release(x);
    p7_buffer_free(lb);
    p7_tape_destroy(tape);
    p7_model_destroy(model);
    p7_device_close(device);
    return rc;
}
