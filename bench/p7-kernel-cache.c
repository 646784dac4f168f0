/* p7-kernel-cache: does p7's on-disk program-binary cache speed up kernel builds on
 * this device, on top of whatever the driver caches itself?
 *
 * Each measurement runs in a fresh child process (a process builds each program
 * once, so only a new process shows start-up cost) that builds every embedded
 * kernel file and reports the wall time. Four situations, in one run:
 *   cold       driver cache empty, p7 cache off      (first run on a new machine)
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

#include "p7_internal.h"

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
    for (size_t i = 0; i < p7_kernel_source_count; i++) {
        cl_program program;
        if (p7_program_get(device, p7_kernel_sources[i].file, "", &program) != P7_SUCCESS) {
            fprintf(stderr, "p7-kernel-cache: %s\n", p7_last_error());
            return 1;
        }
    }
    double t2 = now_ms();
    printf("%.1f %.1f\n", t1 - t0, t2 - t1);
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

    printf("p7-kernel-cache: building %zu embedded kernel files in a fresh process, median of %d\n",
           p7_kernel_source_count, reps);
    printf("| situation | open ms | build ms |\n|---|---|---|\n");
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        double best[16];
        int n = reps > 16 ? 16 : reps;
        for (int i = 0; i < n; i++) {
            if (rows[r].wipe_pocl) {
                char cmd[600];
                snprintf(cmd, sizeof cmd, "rm -rf '%s'", pocl_dir);
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
