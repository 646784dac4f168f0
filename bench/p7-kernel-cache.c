/* p7-kernel-cache: does p7's on-disk program-binary cache speed up kernel builds on
 * this device, on top of whatever the driver caches itself?
 *
 * Each measurement runs in a fresh child process (a process builds each program
 * once, so only a new process shows start-up cost) that runs what a user's first
 * step runs: a VGG11-BN forward and backward on a batch of 2, which builds every
 * kernel the training step needs with the options it really uses, and reports
 * the wall time. Four situations, in one run:
 *   cold       driver cache empty, p7 cache off      (first run on a new machine)
 *   cold+store both caches empty,  p7 cache on       (what filling p7's cache costs)
 *   driver     driver cache warm,  p7 cache off      (the default on PoCL/NVIDIA)
 *   p7         driver cache off,   p7 cache warm     (what p7's cache alone buys)
 *   both       driver cache warm,  p7 cache warm     (p7's cache on top of PoCL's)
 * The driver cache is controlled with PoCL's variables (POCL_CACHE_DIR,
 * POCL_KERNEL_CACHE); on other drivers those rows measure p7's cache only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "p7/p7.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int child(const char *spec)
{
    double t0 = now_ms();
    p7_device *device;
    if (p7_device_open(spec, NULL, &device) != P7_SUCCESS) {
        fprintf(stderr, "p7-kernel-cache: %s\n", p7_last_error());
        return 1;
    }
    double t1 = now_ms();
    p7_vgg_options vo = {.batchnorm = 1, .members = 1, .classes = 10};
    p7_model *model;
    p7_tape *tape;
    p7_tensor *x, *logits, *loss;
    p7_buffer *labels;
    const int64_t xs[4] = {2, 3, 32, 32};
    const int32_t y[2] = {1, 7};
    if (p7_model_vgg11(device, &vo, 1, &model) || p7_tape_create(device, &tape) ||
        p7_tensor_create(device, 4, xs, &x) || p7_tensor_fill_normal(x, 1, 0, 0.0f, 1.0f) ||
        p7_buffer_alloc(device, sizeof y, &labels) || p7_buffer_upload(labels, y, sizeof y) ||
        p7_model_forward(model, tape, x, 1, &logits) ||
        p7_cross_entropy(tape, logits, p7_buffer_mem(labels), 0, &loss) || p7_tape_backward(tape, loss) ||
        p7_device_finish(device)) {
        fprintf(stderr, "p7-kernel-cache: %s\n", p7_last_error());
        return 1;
    }
    double t2 = now_ms();
    printf("%.1f %.1f\n", t1 - t0, t2 - t1);
    p7_tensor_release(logits);
    p7_tensor_release(loss);
    p7_tensor_release(x);
    p7_buffer_free(labels);
    p7_tape_destroy(tape);
    p7_model_destroy(model);
    p7_device_close(device);
    return 0;
}

static int run(const char *self, const char *spec, double *open_ms, double *build_ms)
{
    int fds[2];
    if (pipe(fds) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl(self, self, "--child", spec ? spec : "", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[128] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    return sscanf(buf, "%lf %lf", open_ms, build_ms) == 2 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--child") == 0) return child(argc > 2 ? argv[2] : NULL);
    const char *spec = NULL;
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: p7-kernel-cache [--device SPEC] [--reps N]\n"); return 2; }
    }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return 1;
    self[len] = '\0';

    char base[] = "/tmp/p7-kernel-cache-XXXXXX";
    if (!mkdtemp(base)) return 1;
    char pocl_dir[512], p7_dir[512];
    snprintf(pocl_dir, sizeof pocl_dir, "%s/pocl", base);
    snprintf(p7_dir, sizeof p7_dir, "%s/p7", base);

    struct { const char *name; const char *pocl_cache; const char *p7_cache; int wipe_pocl; } rows[] = {
        {"cold   (driver cache empty, p7 cache off)", "1", "0", 1},
        {"cold+store (both caches empty, p7 cache on)", "1", "1", 2},
        {"driver (driver cache warm,  p7 cache off)", "1", "0", 0},
        {"p7     (driver cache off,   p7 cache warm)", "0", "1", 0},
        {"both   (driver cache warm,  p7 cache warm)", "1", "1", 0},
    };
    setenv("POCL_CACHE_DIR", pocl_dir, 1);
    setenv("P7_CACHE_DIR", p7_dir, 1);
    /* warm p7's cache once (driver cache off so the binary is fetched from a build) */
    setenv("POCL_KERNEL_CACHE", "0", 1);
    setenv("P7_KERNEL_CACHE", "1", 1);
    double o, b;
    if (run(self, spec, &o, &b) != 0) { fprintf(stderr, "p7-kernel-cache: warm-up failed\n"); return 1; }

    printf("p7-kernel-cache: first VGG11-BN training step (batch 2) in a fresh process, median of %d\n", reps);
    printf("| situation | device open ms | first step ms |\n|---|---|---|\n");
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        double best[16];
        int n = reps > 16 ? 16 : reps;
        for (int i = 0; i < n; i++) {
            if (rows[r].wipe_pocl) {
                char cmd[1200];
                if (rows[r].wipe_pocl == 2) snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", pocl_dir, p7_dir);
                else snprintf(cmd, sizeof cmd, "rm -rf '%s'", pocl_dir);
                if (system(cmd) != 0) return 1;
            }
            setenv("POCL_KERNEL_CACHE", rows[r].pocl_cache, 1);
            setenv("P7_KERNEL_CACHE", rows[r].p7_cache, 1);
            if (run(self, spec, &o, &best[i]) != 0) { fprintf(stderr, "p7-kernel-cache: run failed\n"); return 1; }
        }
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && best[j] < best[j - 1]; j--) { double t = best[j]; best[j] = best[j - 1]; best[j - 1] = t; }
        printf("| %s | %.1f | %.1f |\n", rows[r].name, o, best[n / 2]);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : 1;
}
