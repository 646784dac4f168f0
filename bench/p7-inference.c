/* p7-inference: VGG11-BN inference throughput (evaluation, no tape, batch 128,
 * 3x32x32) with the fused output stages (conv -> BatchNorm -> ReLU in one pass) and
 * without them (p7_model_set_fusion(model, 0)), alternating round by round so both see
 * the same machine load; then PyTorch CPU on the same model in both memory layouts
 * (bench/pytorch-inference.py, Debian's python3-torch). Prints images/s and ratios.
 * --members M > 1 runs the BatchEnsemble VGG11-BN (images/s counts the B input rows). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p7/p7.h"
#include "bench_clock.h"

#define CHECK(call)                                                                      \
    do {                                                                                 \
        if ((call) != P7_SUCCESS) {                                                      \
            fprintf(stderr, "p7-inference: %s: %s\n", #call, p7_last_error());           \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

/* Seconds for `steps` evaluation forwards, waited for. */
static int timed_forwards(p7_device *device, p7_model *model, p7_tensor *x, int steps, double *seconds)
{
    double t0 = bench_now_s();
    for (int i = 0; i < steps; i++) {
        p7_tensor *logits;
        CHECK(p7_model_forward(model, NULL, x, 0, &logits));
        p7_tensor_release(logits);
    }
    CHECK(p7_device_finish(device));
    *seconds = (bench_now_s() - t0) / steps;
    return 0;
}

static void print_profile(p7_device *device, const char *title, int steps)
{
    p7_profile_row prof[64];
    size_t nrows = 0;
    if (p7_profile_collect(device, prof, 64, &nrows) != P7_SUCCESS) return;
    double total = 0;
    for (size_t i = 0; i < nrows && i < 64; i++) total += prof[i].total_ms;
    printf("\n%s: device time per forward\n| op | launches | ms | share |\n|---|---|---|---|\n", title);
    for (size_t i = 0; i < nrows && i < 64; i++)
        printf("| %s | %.0f | %.1f | %.1f%% |\n", prof[i].label, (double)prof[i].launches / steps,
               prof[i].total_ms / steps, 100.0 * prof[i].total_ms / total);
    printf("| (sum of kernels) | | %.1f | |\n", total / steps);
}

int main(int argc, char **argv)
{
    const char *spec = NULL, *script = NULL;
    int rounds = 5, steps = 2, batch = 128, members = 1, run_peer = 1, profile = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) spec = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--members") && i + 1 < argc) members = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--peer-script") && i + 1 < argc) script = argv[++i];
        else if (!strcmp(argv[i], "--no-peer")) run_peer = 0;
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else {
            fprintf(stderr, "usage: p7-inference [--device SPEC] [--rounds R] [--steps S] [--batch B] [--members M]\n"
                            "                    [--profile] [--no-peer] [--peer-script PATH]\n");
            return 2;
        }
    }
    if (rounds < 1 || steps < 1 || batch < 1 || members < 1) {
        fprintf(stderr, "p7-inference: bad --rounds/--steps/--batch/--members\n");
        return 2;
    }
    p7_device_options opts = {.profiling = profile};
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

    /* warm-up of both forms: kernel builds, allocator cache, PoCL's per-size JIT */
    double s;
    for (int fused = 0; fused < 2; fused++) {
        p7_model_set_fusion(model, fused);
        if (timed_forwards(device, model, x, 1, &s)) return 1;
    }
    size_t nrows;
    if (profile) CHECK(p7_profile_collect(device, NULL, 0, &nrows)); /* drop the warm-up's events */

    double *t = malloc(2 * (size_t)rounds * sizeof *t); /* [form][round] */
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            /* alternate which form goes first, so neither always follows the other */
            const int fused = (r + k) % 2;
            p7_model_set_fusion(model, fused);
            if (timed_forwards(device, model, x, steps, &t[(size_t)fused * rounds + r])) return 1;
            if (profile && r == 0) print_profile(device, fused ? "fused" : "separate", steps);
        }
        fprintf(stderr, "  round %d/%d: separate %.3f s, fused %.3f s per forward\n", r + 1, rounds, t[r],
                t[rounds + r]);
    }
    double ratio[64];
    int nratio = rounds < 64 ? rounds : 64;
    for (int r = 0; r < nratio; r++) ratio[r] = t[r] / t[rounds + r];
    qsort(ratio, (size_t)nratio, sizeof *ratio, bench_cmp_double);
    qsort(t, (size_t)rounds, sizeof *t, bench_cmp_double);
    qsort(t + rounds, (size_t)rounds, sizeof *t, bench_cmp_double);
    const double sep_ips = batch / t[rounds / 2], fused_ips = batch / t[rounds + rounds / 2];

    printf("\nVGG11-BN inference (evaluation, no gradients), batch %d, members %d:\n", batch, members);
    printf("| system | s/forward (median of %d rounds x %d) | images/s |\n|---|---|---|\n", rounds, steps);
    printf("| p7 separate ops | %.3f | %.1f |\n", t[rounds / 2], sep_ips);
    printf("| p7 fused output stages | %.3f | %.1f |\n", t[rounds + rounds / 2], fused_ips);
    printf("\nfused / separate = %.3fx (median of the per-round ratios; range %.3f-%.3f)\n", ratio[nratio / 2],
           ratio[0], ratio[nratio - 1]);

    if (run_peer && members == 1) {
        char cmd[2048], def[1024];
        if (!script) {
            const char *src = getenv("P7_SOURCE_DIR");
            snprintf(def, sizeof def, "%s/bench/pytorch-inference.py", src ? src : P7_SOURCE_DIR_DEFAULT);
            script = def;
        }
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' --threads 2 --steps %d --batch %d", script,
                 rounds * steps, batch);
        FILE *p = popen(cmd, "r");
        char layout[32];
        double ips, sps;
        int threads, any = 0;
        double best = 0;
        while (p && fscanf(p, "pytorch %31s %lf %lf %d\n", layout, &ips, &sps, &threads) == 4) {
            printf("| PyTorch CPU %s (%d threads) | %.3f | %.1f |\n", layout, threads, sps, ips);
            if (ips > best) best = ips;
            any = 1;
        }
        if (any) printf("\np7 fused / PyTorch's faster layout = %.2fx (separate: %.2fx)\n", fused_ips / best,
                        sep_ips / best);
        else printf("(PyTorch peer unavailable: %s failed; install python3-torch)\n", cmd);
        if (p) pclose(p);
    }
    free(t);
    p7_tensor_release(x);
    p7_model_destroy(model);
    p7_device_close(device);
    return 0;
}
