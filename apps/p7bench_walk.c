/* Walking a study's cells, here or in --jobs workers (see p7bench_walk.h). */
#define _POSIX_C_SOURCE 200809L
#include "p7bench_walk.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "p7bench_cell_list.h"
#include "p7bench_devices.h"

static int finished_status(const char *status) { return strcmp(status, "ok") == 0 || strcmp(status, "diverged") == 0; }

/* The cell's last row in `rows` says finished, or its own result.csv does. */
static int finished(const char *dir, const p7bench_cell_result *rows, size_t n, const char *id)
{
    int done = 0;
    for (size_t i = 0; i < n; i++) /* the last row of a cell wins */
        if (strcmp(rows[i].cell, id) == 0) done = finished_status(rows[i].status);
    if (done) return 1;
    char path[4400], err[512];
    struct stat sb;
    snprintf(path, sizeof path, "%s/cells/%s/result.csv", dir, id);
    if (stat(path, &sb) != 0) return 0;
    p7bench_cell_result *own;
    size_t count;
    if (p7bench_results_read(path, &own, &count, err, sizeof err) != 0) return 0;
    done = count > 0 && finished_status(own[count - 1].status);
    p7bench_results_free(own, count);
    return done;
}

void p7bench_walk_cells(p7bench_runner *runner, const p7bench_cell *const *cells, size_t count,
                        const p7bench_cell_result *done, size_t done_count, const char *prefix, p7bench_walk *w)
{
    const char *dir = p7bench_study_folder_dir(runner->folder);
    for (size_t i = 0; i < count && !w->interrupted; i++) {
        runner->cell_index = i;
        if (finished(dir, done, done_count, cells[i]->id)) {
            fprintf(stderr, "p7bench: %scell %zu/%zu %s: finished before (in results.csv), skipped\n", prefix, i + 1,
                    count, cells[i]->id);
            continue;
        }
        char cell_dir[4400], holder[300], err[1024];
        snprintf(cell_dir, sizeof cell_dir, "%s/cells/%s", dir, cells[i]->id);
        mkdir(cell_dir, 0755);
        int claim;
        int got = p7bench_cell_claim(dir, cells[i]->id, &claim, holder, sizeof holder, err, sizeof err);
        if (got == 1) {
            fprintf(stderr, "p7bench: %scell %zu/%zu %s: being run by %s, skipped\n", prefix, i + 1, count,
                    cells[i]->id, holder);
            w->busy++;
            continue;
        }
        if (got < 0) {
            fprintf(stderr, "p7bench: %scell %s: cannot claim it: %s\n", prefix, cells[i]->id, err);
            w->any_failed = 1;
            continue;
        }
        /* another walker may have finished it between the check and the claim */
        if (finished(dir, NULL, 0, cells[i]->id)) {
            p7bench_cell_unclaim(claim);
            continue;
        }
        p7bench_cell_result scratch;
        p7bench_cell_result *row = w->results ? &w->results[w->ran] : &scratch;
        int rc = p7bench_cell_run(runner, cells[i], row);
        p7bench_cell_unclaim(claim);
        if (rc == P7BENCH_INTERRUPTED) {
            p7bench_cell_result_release(row);
            w->interrupted = p7bench_interrupt_signal() ? p7bench_interrupt_signal() : SIGINT;
            break;
        }
        if (!w->results) p7bench_cell_result_release(row);
        w->ran++;
        w->any_failed |= rc == P7BENCH_FAILED;
        w->any_diverged |= rc == P7BENCH_DIVERGED;
        /* a signal while the cell was being evaluated: it is done, the walk stops */
        if (p7bench_interrupted()) w->interrupted = p7bench_interrupt_signal();
    }
}

int p7bench_walk_exit_code(const p7bench_walk *w)
{
    return w->interrupted ? 128 + w->interrupted : w->any_failed ? P7BENCH_FAILED : w->any_diverged ? P7BENCH_DIVERGED : 0;
}

/* ---------------------------------------------------------------- --jobs */

/* p7_device_list in a child process, the entries sent back through a pipe. */
static int probe_devices(p7_device_info *infos, size_t cap, size_t *count)
{
    int fds[2];
    *count = 0;
    if (pipe(fds) != 0) return 1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        size_t n = 0;
        p7_device_info *all = NULL;
        if (p7_device_list(NULL, 0, &n) == P7_SUCCESS && n > 0 && (all = calloc(n, sizeof *all)) &&
            p7_device_list(all, n, &n) == P7_SUCCESS) {
            if (n > cap) n = cap;
            if (write(fds[1], &n, sizeof n) == (ssize_t)sizeof n) {
                const char *p = (const char *)all;
                size_t left = n * sizeof *all;
                while (left) {
                    ssize_t w = write(fds[1], p, left);
                    if (w <= 0) break;
                    p += w;
                    left -= (size_t)w;
                }
            }
        } else fprintf(stderr, "p7bench: %s\n", p7_last_error());
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    int rc = 1;
    if (read(fds[0], &n, sizeof n) == (ssize_t)sizeof n && n <= cap) {
        char *p = (char *)infos;
        size_t left = n * sizeof *infos;
        while (left) {
            ssize_t r = read(fds[0], p, left);
            if (r <= 0) break;
            p += r;
            left -= (size_t)r;
        }
        if (left == 0) *count = n, rc = 0;
    }
    close(fds[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    return rc;
}

static volatile sig_atomic_t stop_signals, any_stop;
static pid_t workers[P7BENCH_DEVICES_MAX];
static volatile sig_atomic_t worker_count;

/* The parent passes a stop on to its workers (they run in their own process groups, so a
 * terminal's Ctrl-C reaches them only this way, and only once); a second Ctrl-C kills them. */
static void forward_stop(int sig)
{
    any_stop = sig;
    int kill_now = sig == SIGINT && stop_signals++ > 0;
    for (int i = 0; i < worker_count; i++)
        if (workers[i] > 0) kill(workers[i], kill_now ? SIGKILL : sig);
}

static int worker_main(const p7bench_runner *base, const p7_device_info *info, size_t number, size_t total,
                       const p7_device_options *options, const p7bench_cell *const *cells, size_t count,
                       const p7bench_cell_result *done, size_t done_count)
{
    char spec[32], prefix[32];
    snprintf(spec, sizeof spec, "%u:%u", info->platform_index, info->device_index);
    snprintf(prefix, sizeof prefix, "worker %zu/%zu: ", number, total);
    p7_device *device = NULL;
    if (p7_device_open(spec, options, &device) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s%s\n", prefix, p7_last_error());
        return P7BENCH_FAILED;
    }
    printf("p7bench: %sdevice %s\n", prefix, p7_device_describe(device));
    p7bench_runner runner = *base;
    runner.device = device;
    runner.live = 0; /* several workers' live lines would overwrite each other */
    runner.cache = NULL;
    runner.verbose = number == 1;
    p7bench_walk w = {0};
    p7bench_walk_cells(&runner, cells, count, done, done_count, prefix, &w);
    p7bench_runner_release(&runner);
    p7_device_close(device);
    printf("p7bench: %sran %zu cell(s)%s\n", prefix, w.ran,
           w.interrupted ? ", stopped by a signal; its cell's checkpoint is written" : "");
    return p7bench_walk_exit_code(&w);
}

int p7bench_run_jobs(const p7bench_runner *base, const char *spec, const char *devices, size_t jobs,
                     const p7_device_options *options, const p7bench_cell *const *cells, size_t count,
                     const p7bench_cell_result *done, size_t done_count, char *single_spec, size_t spec_size)
{
    static p7_device_info infos[256];
    size_t n_infos, chosen[P7BENCH_DEVICES_MAX], n;
    char err[3072];
    fflush(NULL);
    if (probe_devices(infos, sizeof infos / sizeof infos[0], &n_infos) != 0 || n_infos == 0) {
        fprintf(stderr, "p7bench: --jobs: no OpenCL device could be listed\n");
        return P7BENCH_FAILED;
    }
    if (p7bench_devices_for_jobs(spec, devices, jobs, infos, n_infos, chosen, &n, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench: %s\n", err);
        return P7BENCH_USAGE;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (chosen[i] == chosen[j]) {
                fprintf(stderr, "p7bench: --devices names device %u:%u twice; one worker per device\n",
                        infos[chosen[i]].platform_index, infos[chosen[i]].device_index);
                return P7BENCH_USAGE;
            }
    if (devices && n != jobs && jobs > 1)
        fprintf(stderr, "p7bench: --jobs %zu with %zu device(s) in --devices: %zu worker(s), one per device\n", jobs, n, n);
    else if (!devices && n < jobs && n > 1)
        fprintf(stderr, "p7bench: --jobs %zu: %s names %zu device(s): %zu worker(s), one per device\n", jobs,
                spec && *spec ? spec : "the default (the GPUs, else the CPU)", n, n);
    if (n == 1) {
        const p7_device_info *d = &infos[chosen[0]];
        if (d->kind == P7_DEVICE_KIND_CPU)
            fprintf(stderr, "p7bench: --jobs %zu on one CPU device: the cells run one at a time, each on all its cores "
                            "(two cells at once, each on half the cores, measured no faster on PoCL: docs/cluster.md)\n",
                    jobs);
        else if (jobs > 1) fprintf(stderr, "p7bench: --jobs %zu on one device: the cells run one at a time\n", jobs);
        snprintf(single_spec, spec_size, "%u:%u", d->platform_index, d->device_index);
        return -1;
    }
    printf("p7bench: %zu workers, one device each, %zu cell(s)\n", n, count);
    fflush(NULL);
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_stop;
    sigemptyset(&sa.sa_mask);
    /* the handler is in place before the first fork: a stop in between reaches everyone */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    pid_t parent = getpid();
    for (size_t i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "p7bench: fork: %s\n", strerror(errno));
            break;
        }
        if (pid == 0) {
            worker_count = 0; /* the inherited handler must not reach the other workers */
            setpgid(0, 0); /* a terminal's Ctrl-C goes to the parent, which passes it on once */
#ifdef __linux__
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* the parent killed outright: stop, checkpointed */
#endif
            if (getppid() != parent) _exit(P7BENCH_FAILED);
            p7bench_catch_interrupt();
            if (any_stop) _exit(128 + any_stop); /* stopped before it began */
            _exit(worker_main(base, &infos[chosen[i]], i + 1, n, options, cells, count, done, done_count));
        }
        workers[i] = pid;
        worker_count = (sig_atomic_t)(i + 1);
    }
    int stopped = 0, failed = worker_count < (sig_atomic_t)n, diverged = 0;
    for (int i = 0; i < worker_count; i++) {
        int status;
        while (waitpid(workers[i], &status, 0) < 0)
            if (errno != EINTR) break;
        workers[i] = -1;
        if (WIFEXITED(status)) {
            int code = WEXITSTATUS(status);
            if (code == 128 + SIGINT || code == 128 + SIGTERM) stopped = code;
            else if (code == P7BENCH_DIVERGED) diverged = 1;
            else if (code != 0) failed = 1;
        } else {
            fprintf(stderr, "p7bench: worker %d ended by signal %d\n", i + 1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && stop_signals > 1) stopped = 128 + SIGINT;
            else failed = 1;
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    worker_count = 0;
    return stopped ? stopped : failed ? P7BENCH_FAILED : diverged ? P7BENCH_DIVERGED : 0;
}
