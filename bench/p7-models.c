/* p7-models: p7 against PyTorch CPU on whole models, training (forward, backward, Adam
 * step) and inference (eval mode, no gradients), in one run.
 *
 * Models: SimpleCNN (batch 256), VGG11-BN (batch 128) and BatchEnsemble VGG11-BN with
 * M = 4 members (batch 32 per member, so 128 rows like the plain model). The peer is
 * ONE long-lived python process (bench/pytorch-models.py, Debian's torch, 2 threads)
 * driven over a pipe, so torch starts once and the timed steps alternate: p7 rep, torch
 * NCHW rep, torch channels_last rep, ... and load drift hits all three alike. Ratios are
 * p7 against the faster PyTorch layout, from the medians of the reps.
 *
 * Memory (VGG11-BN training step): each side in a fresh process of its own, so nothing
 * else it ran counts: p7's peak device bytes (p7_memory_stats.peak_bytes_in_use) and
 * both sides' host peak RSS (getrusage ru_maxrss).
 *
 * --profile adds, per model and mode, p7's device time per op kind and kernel label, the
 * host's share of the step and the convolution/GEMM FLOP rate against an estimate of the
 * CPU's FMA peak (bench_profile.c).
 *
 * --short (ctest): tiny batches, 1 rep; checks nothing about speed, only that every row
 * prints. Without torch every PyTorch cell says the peer is unavailable. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "p7/p7.h"

#include "bench_profile.h"
#include "bench_clock.h"

#define MEMBERS 4

#define CHECK(call)                                                                      \
    do {                                                                                 \
        if ((call) != P7_SUCCESS) {                                                      \
            fprintf(stderr, "p7-models: %s: %s\n", #call, p7_last_error());              \
            return -1;                                                                   \
        }                                                                                \
    } while (0)

/* ---- the models ---- */

typedef struct model_spec {
    const char *name;     /* the peer's name too */
    const char *title;
    p7_arch arch;
    int members;
    int batch, short_batch; /* images per step (per member for BatchEnsemble) */
} model_spec;

static const model_spec models[] = {
    {"simple", "SimpleCNN", P7_ARCH_SIMPLE, 1, 256, 4},
    {"vgg11", "VGG11-BN", P7_ARCH_VGG11, 1, 128, 4},
    {"be-vgg11", "BatchEnsemble VGG11-BN M=4", P7_ARCH_VGG11, MEMBERS, 32, 1},
};
enum { MODEL_COUNT = sizeof models / sizeof *models };
static const char *const modes[] = {"train", "infer"};

/* The network a model_spec names (its FLOPs: bench_network_flops). */
static p7_network_config model_config(const model_spec *m)
{
    return (p7_network_config){.arch = m->arch, .classes = 10, .batchnorm = 1, .members = m->members,
                               .member_kind = m->members > 1 ? P7_MEMBERS_BATCHENSEMBLE : P7_MEMBERS_DEFAULT,
                               .alpha_init = 0.5f, .gamma_init = 0.5f};
}

typedef struct p7_workload {
    p7_model *model;
    p7_optimizer *opt;
    p7_tape *tape;
    p7_tensor *x;
    p7_buffer *labels;
    int training, rows;
} p7_workload;

static void workload_destroy(p7_workload *w)
{
    p7_optimizer_destroy(w->opt);
    p7_tape_destroy(w->tape);
    p7_tensor_release(w->x);
    p7_buffer_free(w->labels);
    p7_model_destroy(w->model);
    memset(w, 0, sizeof *w);
}

static int workload_create(p7_device *device, const model_spec *m, int batch, int training, p7_workload *w)
{
    memset(w, 0, sizeof *w);
    const p7_network_config cfg = model_config(m);
    CHECK(p7_model_build(device, &cfg, 42, &w->model));
    w->training = training;
    w->rows = batch * m->members;
    const int64_t xs[4] = {batch, 3, 32, 32};
    CHECK(p7_tensor_create(device, 4, xs, &w->x));
    CHECK(p7_tensor_fill_normal(w->x, 2, 0, 0.0f, 1.0f));
    if (!training) return 0;
    int32_t *labels = malloc((size_t)w->rows * sizeof *labels);
    if (!labels) return -1;
    for (int i = 0; i < w->rows; i++) labels[i] = (int32_t)((i * 7) % 10);
    p7_status st = p7_buffer_alloc(device, (size_t)w->rows * sizeof *labels, &w->labels);
    if (st == P7_SUCCESS) st = p7_buffer_upload(w->labels, labels, (size_t)w->rows * sizeof *labels);
    free(labels);
    CHECK(st);
    CHECK(p7_tape_create(device, &w->tape));
    p7_optimizer_options o = {.hparams = "lr=1e-4"};
    CHECK(p7_optimizer_create_for_model(w->model, "adam", &o, &w->opt));
    return 0;
}

/* One step, enqueued; the caller finishes the queue. */
static int workload_step(p7_workload *w)
{
    p7_tensor *logits = NULL, *loss = NULL;
    if (!w->training) {
        CHECK(p7_model_forward(w->model, NULL, w->x, 0, &logits));
        p7_tensor_release(logits);
        return 0;
    }
    p7_model_zero_grad(w->model);
    CHECK(p7_model_forward(w->model, w->tape, w->x, 1, &logits));
    CHECK(p7_cross_entropy(w->tape, logits, p7_buffer_mem(w->labels), 0, &loss));
    CHECK(p7_tape_backward(w->tape, loss));
    p7_tensor_release(logits);
    p7_tensor_release(loss);
    CHECK(p7_optimizer_step(w->opt));
    return 0;
}

static int workload_time(p7_device *device, p7_workload *w, int steps, double *seconds_per_step)
{
    double t0 = bench_now_s();
    for (int i = 0; i < steps; i++)
        if (workload_step(w)) return -1;
    CHECK(p7_device_finish(device));
    *seconds_per_step = (bench_now_s() - t0) / steps;
    return 0;
}

/* ---- the PyTorch peer: one process, a line protocol (bench/pytorch-models.py) ---- */

typedef struct peer {
    FILE *in, *out; /* we write commands to `in`, read answers from `out` */
    pid_t pid;
    char version[64];
    int threads;
    char why[2560]; /* why it is unavailable ("" while it works) */
} peer;

static void peer_start(peer *p, const char *python, const char *script, int threads)
{
    memset(p, 0, sizeof *p);
    p->pid = -1;
    int to_child[2], from_child[2];
    if (pipe(to_child) || pipe(from_child)) {
        snprintf(p->why, sizeof p->why, "pipe: %s", strerror(errno));
        return;
    }
    char threads_arg[16], members_arg[16];
    snprintf(threads_arg, sizeof threads_arg, "%d", threads);
    snprintf(members_arg, sizeof members_arg, "%d", MEMBERS);
    fflush(NULL);
    p->pid = fork();
    if (p->pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[0]); close(to_child[1]); close(from_child[0]); close(from_child[1]);
        execl(python, python, script, "--threads", threads_arg, "--members", members_arg, (char *)NULL);
        fprintf(stderr, "p7-models: cannot run %s: %s\n", python, strerror(errno));
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    if (p->pid < 0) {
        snprintf(p->why, sizeof p->why, "fork: %s", strerror(errno));
        close(to_child[1]); close(from_child[0]);
        return;
    }
    p->in = fdopen(to_child[1], "w");
    p->out = fdopen(from_child[0], "r");
    char line[256];
    if (!p->in || !p->out || !fgets(line, sizeof line, p->out) ||
        sscanf(line, "ready torch %63s threads %d", p->version, &p->threads) != 2)
        snprintf(p->why, sizeof p->why, "%s %s did not start (is python3-torch installed?)", python, script);
}

static int peer_ok(const peer *p) { return p->why[0] == '\0'; }

/* Sends one command, reads one answer line into `answer`; marks the peer unavailable
 * (with the reason) when it fails. Returns 0 when the answer is not an error. */
static int peer_ask(peer *p, const char *command, char *answer, size_t size)
{
    if (!peer_ok(p)) return -1;
    if (fprintf(p->in, "%s\n", command) < 0 || fflush(p->in) || !fgets(answer, (int)size, p->out)) {
        snprintf(p->why, sizeof p->why, "the PyTorch process ended during \"%s\"", command);
        return -1;
    }
    answer[strcspn(answer, "\n")] = '\0';
    if (!strncmp(answer, "error", 5)) {
        fprintf(stderr, "p7-models: PyTorch peer: \"%s\": %s\n", command, answer);
        return -1;
    }
    return 0;
}

static void peer_stop(peer *p)
{
    if (p->in) { fprintf(p->in, "quit\n"); fclose(p->in); }
    if (p->out) fclose(p->out);
    if (p->pid > 0) waitpid(p->pid, NULL, 0);
    p->in = p->out = NULL;
    p->pid = -1;
}

/* ---- memory: each side in a fresh process ---- */

typedef struct memory_result {
    int ok;
    double device_peak, rss_peak, rss_before; /* bytes */
    double estimate; /* p7_model_estimate_training_memory */
} memory_result;

static double rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages_total = 0, pages_resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
        fclose(f);
    }
    return (double)pages_resident * (double)sysconf(_SC_PAGESIZE);
}

static int p7_memory_child(const char *spec, const model_spec *m, int batch, int fd)
{
    p7_device *device;
    CHECK(p7_device_open(spec, NULL, &device));
    double before = rss_now();
    p7_workload w;
    if (workload_create(device, m, batch, 1, &w)) return -1;
    p7_training_shape shape = {.batch = batch, .optimizer_slots = p7_optimizer_slots_in_use(w.opt)};
    p7_memory_estimate est = {0};
    CHECK(p7_model_estimate_training_memory(w.model, &shape, &est));
    p7_memory_reset_peak(device);
    double s;
    if (workload_time(device, &w, 3, &s)) return -1;
    p7_memory_stats stats;
    CHECK(p7_memory_get_stats(device, &stats));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char line[256];
    int n = snprintf(line, sizeof line, "%.0f %.0f %.0f %.0f\n", (double)stats.peak_bytes_in_use,
                     (double)ru.ru_maxrss * 1024.0, before, (double)est.total);
    if (write(fd, line, (size_t)n) != n) return -1;
    workload_destroy(&w);
    p7_device_close(device);
    return 0;
}

static memory_result p7_memory(const char *spec, const model_spec *m, int batch)
{
    memory_result r = {0};
    int fds[2];
    if (pipe(fds)) return r;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        _exit(p7_memory_child(spec, m, batch, fds[1]) ? 1 : 0);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    if (f && fscanf(f, "%lf %lf %lf %lf", &r.device_peak, &r.rss_peak, &r.rss_before, &r.estimate) == 4) r.ok = 1;
    if (f) fclose(f); else close(fds[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return r;
}

static memory_result torch_memory(const char *python, const char *script, const char *layout, int batch,
                                  int threads)
{
    memory_result r = {0};
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s' --threads %d --memory vgg11 train %s %d", python, script, threads, layout,
             batch);
    fflush(NULL);
    FILE *f = popen(cmd, "r");
    if (f && fscanf(f, " memory %lf %lf", &r.rss_peak, &r.rss_before) == 2) r.ok = 1;
    if (f) pclose(f);
    return r;
}

/* ---- the run ---- */

typedef struct options {
    const char *spec, *python, *script;
    int reps, short_mode, profile, peer, threads, memory;
    int gap_ms; /* idle time before each timed rep, so neither side's leftovers (spinning threads) overlap the other's */
    int warm_steps; /* untimed steps of the same side between the gap and its timed step */
    double peak_gflops; /* > 0: replaces the cpuinfo estimate */
    unsigned model_mask;
} options;

typedef struct row {
    double p7, nchw, cl; /* images (member-images) per second; 0 = not measured */
} row;

static double faster(const row *r) { return r->nchw > r->cl ? r->nchw : r->cl; }

static void print_ips(double ips)
{
    if (ips > 0) printf(" %.1f |", ips);
    else printf(" n/a |");
}

/* GNU OpenMP keeps PyTorch's threads spinning for a while after each parallel region; a p7
 * rep started at once shares the 2 cores with them (VGG11-BN inference measured 0.143-0.162 s
 * against 0.104-0.107 s alone). A short idle gap before every timed rep, on both sides, keeps
 * each side's tail out of the other's measurement without changing either side's settings.
 * The gap has a cost of its own: the first ~50 ms of work after it run slowly (on the KVM
 * Zen 5 of docs/performance.md, p7's VGG11-BN inference step took 0.129 s after a 200 ms gap
 * and 0.112 s without one, and its conv2 and conv3 GEMMs 1.4-1.8x longer). A training loop or
 * an evaluation runs its steps back to back, so after the gap each side first runs
 * --warm-steps untimed steps of its own (default 1), and only then the timed one. */
static void settle(int ms)
{
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Adds `n` collected rows into the running sums `acc` (by label), largest total first. */
static int by_ms_desc(const void *a, const void *b)
{
    const double x = ((const p7_profile_row *)a)->total_ms, y = ((const p7_profile_row *)b)->total_ms;
    return (x < y) - (x > y);
}

static void profile_merge(p7_profile_row *acc, size_t *nacc, size_t cap, const p7_profile_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < *nacc && strcmp(acc[j].label, rows[i].label) != 0) j++;
        if (j == *nacc) {
            if (*nacc == cap) continue; /* the smallest labels beyond cap are dropped */
            acc[(*nacc)++] = rows[i];
            continue;
        }
        acc[j].launches += rows[i].launches;
        acc[j].total_ms += rows[i].total_ms;
    }
    qsort(acc, *nacc, sizeof *acc, by_ms_desc);
}

enum { PROFILE_ROWS = 512 };

static int time_model(p7_device *device, peer *py, const options *o, const model_spec *m, int mode,
                      const bench_cpu_peak *peak, p7_workload *w, row *out)
{
    const int training = mode == 0, batch = o->short_mode ? m->short_batch : m->batch;
    const int reps = o->reps, warmup = o->short_mode ? 1 : 2, steps_per_rep = 1;
    double s;
    for (int i = 0; i < warmup; i++)
        if (workload_time(device, w, 1, &s)) return -1;
    static const char *const layouts[2] = {"nchw", "cl"};
    int have[2] = {0, 0};
    char cmd[256], answer[256];
    for (int l = 0; l < 2; l++) {
        snprintf(cmd, sizeof cmd, "prepare %s %s %s %d", m->name, modes[mode], layouts[l], batch);
        have[l] = peer_ask(py, cmd, answer, sizeof answer) == 0;
    }
    size_t nrows = 0;
    if (o->profile) CHECK(p7_profile_collect(device, NULL, 0, &nrows)); /* forget the warm-up */
    static p7_profile_row prof[PROFILE_ROWS], rep_rows[PROFILE_ROWS];
    size_t nprof = 0;
    double *t = calloc((size_t)reps * 3, sizeof *t);
    if (!t) return -1;
    double p7_wall = 0;
    for (int r = 0; r < reps; r++) {
        settle(o->gap_ms);
        if (o->warm_steps > 0 && workload_time(device, w, o->warm_steps, &s)) { free(t); return -1; }
        size_t got = 0;
        if (o->profile && p7_profile_collect(device, NULL, 0, &got) != P7_SUCCESS) { /* not the warm steps */
            free(t);
            return -1;
        }
        if (workload_time(device, w, steps_per_rep, &t[r])) { free(t); return -1; }
        if (o->profile) {
            if (p7_profile_collect(device, rep_rows, PROFILE_ROWS, &got) != P7_SUCCESS) {
                fprintf(stderr, "p7-models: p7_profile_collect: %s\n", p7_last_error());
                free(t);
                return -1;
            }
            profile_merge(prof, &nprof, PROFILE_ROWS, rep_rows, got < PROFILE_ROWS ? got : PROFILE_ROWS);
        }
        p7_wall += t[r] * steps_per_rep;
        for (int l = 0; l < 2; l++) {
            if (!have[l]) continue;
            snprintf(cmd, sizeof cmd, "run %s %s %s %d %d %d", m->name, modes[mode], layouts[l], batch, steps_per_rep,
                     o->warm_steps);
            settle(o->gap_ms);
            if (peer_ask(py, cmd, answer, sizeof answer) == 0) t[(size_t)(l + 1) * reps + r] = atof(answer);
            else have[l] = 0;
        }
        fprintf(stderr, "  %s %s rep %d/%d: p7 %.3f s", m->name, modes[mode], r + 1, reps, t[r]);
        for (int l = 0; l < 2; l++)
            if (have[l]) fprintf(stderr, ", torch %s %.3f s", layouts[l], t[(size_t)(l + 1) * reps + r]);
        fprintf(stderr, "\n");
    }
    const double rows = (double)batch * m->members;
    out->p7 = rows / bench_median(t, reps);
    if (have[0]) out->nchw = rows / bench_median(t + reps, reps);
    if (have[1]) out->cl = rows / bench_median(t + 2 * (size_t)reps, reps);
    free(t);
    if (peer_ok(py)) peer_ask(py, "forget", answer, sizeof answer);

    if (o->profile) {
        printf("\n### p7 profile: %s, %s, batch %d%s\n", m->title, training ? "training" : "inference", batch,
               m->members > 1 ? " per member" : "");
        const p7_network_config cfg = model_config(m);
        bench_profile_input in = {.rows = prof, .count = nprof, .steps = reps * steps_per_rep,
                                  .wall_s = p7_wall, .gemm_flops_per_step = bench_network_flops(&cfg, batch, training),
                                  .peak = peak};
        bench_profile_print(stdout, &in);
    }
    return 0;
}

/* One model in one mode: p7's workload lives here, so a failure mid-run still releases
 * its tensors before the device closes. */
static int run_model(p7_device *device, peer *py, const options *o, const model_spec *m, int mode,
                     const bench_cpu_peak *peak, row *out)
{
    p7_workload w;
    memset(out, 0, sizeof *out);
    const int batch = o->short_mode ? m->short_batch : m->batch;
    int rc = workload_create(device, m, batch, mode == 0, &w);
    if (rc == 0) rc = time_model(device, py, o, m, mode, peak, &w, out);
    workload_destroy(&w);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: p7-models [--device SPEC] [--reps N] [--short] [--profile] [--models simple,vgg11,be-vgg11]\n"
            "                 [--no-peer] [--python PATH] [--peer-script PATH] [--threads T] [--no-memory]\n"
            "                 [--peak-gflops G] [--cpuinfo FILE] [--gap-ms MS] [--warm-steps N]\n"
            "--gap-ms MS: idle time before every timed rep of either side (default 200; 0 = none)\n"
            "--warm-steps N: untimed steps each side runs after the gap, before its timed one (default 1)\n"
            "--cpuinfo FILE: print the FMA peak estimated from FILE (a /proc/cpuinfo copy) and exit\n");
}

int main(int argc, char **argv)
{
    options o = {.python = "/usr/bin/python3", .reps = 5, .peer = 1, .threads = 2, .memory = 1, .gap_ms = 200, .warm_steps = 1,
                 .model_mask = (1u << MODEL_COUNT) - 1};
    int reps_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--device") && v) o.spec = argv[++i];
        else if (!strcmp(a, "--reps") && v) { o.reps = atoi(argv[++i]); reps_set = 1; }
        else if (!strcmp(a, "--gap-ms") && v) o.gap_ms = atoi(argv[++i]);
        else if (!strcmp(a, "--warm-steps") && v) o.warm_steps = atoi(argv[++i]);
        else if (!strcmp(a, "--short")) o.short_mode = 1;
        else if (!strcmp(a, "--profile")) o.profile = 1;
        else if (!strcmp(a, "--no-peer")) o.peer = 0;
        else if (!strcmp(a, "--no-memory")) o.memory = 0;
        else if (!strcmp(a, "--python") && v) o.python = argv[++i];
        else if (!strcmp(a, "--peer-script") && v) o.script = argv[++i];
        else if (!strcmp(a, "--threads") && v) o.threads = atoi(argv[++i]);
        else if (!strcmp(a, "--peak-gflops") && v) o.peak_gflops = atof(argv[++i]);
        else if (!strcmp(a, "--cpuinfo") && v) {
            bench_cpu_peak peak;
            char text[512];
            const int ok = bench_cpu_peak_estimate(argv[++i], 0, &peak) == 0 && peak.gflops > 0;
            bench_cpu_peak_describe(ok ? &peak : NULL, text, sizeof text);
            printf("CPU FMA peak: %s\n", text);
            return ok ? 0 : 1;
        }
        else if (!strcmp(a, "--models") && v) {
            o.model_mask = 0;
            char list[256];
            snprintf(list, sizeof list, "%s", argv[++i]);
            for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int k = 0;
                while (k < MODEL_COUNT && strcmp(models[k].name, tok) != 0) k++;
                if (k == MODEL_COUNT) {
                    fprintf(stderr, "p7-models: unknown model \"%s\" (simple, vgg11, be-vgg11)\n", tok);
                    return 2;
                }
                o.model_mask |= 1u << k;
            }
        } else {
            usage();
            return 2;
        }
    }
    if (o.short_mode && !reps_set) o.reps = 1;
    if (o.short_mode) o.gap_ms = 0;
    if (o.gap_ms < 0 || o.gap_ms > 10000) {
        fprintf(stderr, "p7-models: --gap-ms must be 0-10000 (got %d)\n", o.gap_ms);
        return 2;
    }
    if (o.warm_steps < 0 || o.warm_steps > 100) {
        fprintf(stderr, "p7-models: --warm-steps must be 0-100 (got %d)\n", o.warm_steps);
        return 2;
    }
    if (o.reps < 1 || o.threads < 1) {
        fprintf(stderr, "p7-models: --reps and --threads must be >= 1 (got %d, %d)\n", o.reps, o.threads);
        return 2;
    }
    char script_default[1024];
    if (!o.script) {
        const char *src = getenv("P7_SOURCE_DIR");
        snprintf(script_default, sizeof script_default, "%s/bench/pytorch-models.py", src ? src : P7_SOURCE_DIR_DEFAULT);
        o.script = script_default;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that dies must not kill us mid-write */

    /* Memory first, in child processes, before this process opens the device. */
    const model_spec *vgg = &models[1];
    const int vgg_batch = o.short_mode ? vgg->short_batch : vgg->batch;
    memory_result mem_p7 = {0}, mem_torch[2] = {{0}, {0}};
    if (o.memory) {
        fprintf(stderr, "p7-models: memory of the VGG11-BN training step (fresh processes)...\n");
        mem_p7 = p7_memory(o.spec, vgg, vgg_batch);
        if (o.peer) {
            mem_torch[0] = torch_memory(o.python, o.script, "nchw", vgg_batch, o.threads);
            mem_torch[1] = torch_memory(o.python, o.script, "cl", vgg_batch, o.threads);
        }
    }

    p7_device_options dopts = {.profiling = o.profile ? 2 : 0}; /* 2: labels name the layer too */
    p7_device *device;
    if (p7_device_open(o.spec, &dopts, &device) != P7_SUCCESS) {
        fprintf(stderr, "p7-models: %s\n", p7_last_error());
        return 1;
    }
    bench_cpu_peak peak;
    if (bench_cpu_peak_estimate(NULL, (int)p7_device_get_info(device)->compute_units, &peak)) peak.gflops = 0;
    char peak_text[512];
    bench_cpu_peak_describe(&peak, peak_text, sizeof peak_text);
    if (o.peak_gflops > 0) {
        peak.gflops = o.peak_gflops;
        snprintf(peak_text, sizeof peak_text, "%.0f GFLOP/s (given with --peak-gflops)", o.peak_gflops);
    }
    peer py;
    if (o.peer) peer_start(&py, o.python, o.script, o.threads);
    else {
        memset(&py, 0, sizeof py);
        snprintf(py.why, sizeof py.why, "--no-peer");
    }
    printf("p7-models: %s\n", p7_device_describe(device));
    printf("CPU FMA peak: %s\n", peak_text);
    if (peer_ok(&py)) printf("PyTorch peer: torch %s, %d threads (NCHW and channels_last)\n", py.version, py.threads);
    else printf("PyTorch peer unavailable: %s\n", py.why);
    printf("reps: %d per cell, alternating p7 / torch NCHW / torch channels_last; median of each%s\n", o.reps,
           o.short_mode ? " (short mode: tiny batches, timings mean nothing)" : "");

    row results[MODEL_COUNT][2];
    memset(results, 0, sizeof results);
    int rc = 0;
    for (int k = 0; k < MODEL_COUNT && !rc; k++)
        for (int mode = 0; mode < 2 && !rc; mode++)
            if (o.model_mask & (1u << k))
                if (run_model(device, &py, &o, &models[k], mode, &peak, &results[k][mode])) rc = 1;

    printf("\n| model | mode | batch | p7 images/s | torch NCHW images/s | torch channels_last images/s | "
           "p7 / faster torch |\n|---|---|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < MODEL_COUNT; k++) {
        if (!(o.model_mask & (1u << k))) continue;
        const model_spec *m = &models[k];
        for (int mode = 0; mode < 2; mode++) {
            const row *r = &results[k][mode];
            const int batch = o.short_mode ? m->short_batch : m->batch;
            char b[32];
            if (m->members > 1) snprintf(b, sizeof b, "%dx%d", m->members, batch);
            else snprintf(b, sizeof b, "%d", batch);
            printf("| %s | %s | %s |", m->title, modes[mode], b);
            print_ips(r->p7);
            print_ips(r->nchw);
            print_ips(r->cl);
            if (r->p7 > 0 && faster(r) > 0) printf(" %.2fx |\n", r->p7 / faster(r));
            else if (r->p7 <= 0) printf(" n/a (p7 failed: see stderr) |\n");
            else printf(" n/a (PyTorch peer unavailable) |\n");
        }
    }
    if ((o.model_mask & 6u) == 6u) {
        /* BatchEnsemble's cost per member-image against the plain model's per image: the
         * plain model runs 4x32 = 128 images, the same rows as 4 members of 32. */
        printf("\n| BatchEnsemble M=4 cost per member-image / VGG11-BN cost per image | p7 | faster torch |\n"
               "|---|---:|---:|\n");
        for (int mode = 0; mode < 2; mode++) {
            const row *plain = &results[1][mode], *be = &results[2][mode];
            printf("| %s |", modes[mode]);
            if (plain->p7 > 0 && be->p7 > 0) printf(" %.2fx |", plain->p7 / be->p7);
            else printf(" n/a |");
            if (faster(plain) > 0 && faster(be) > 0) printf(" %.2fx |\n", faster(plain) / faster(be));
            else printf(" n/a (PyTorch peer unavailable) |\n");
        }
    }
    if (o.memory) {
        const double mib = 1024.0 * 1024.0;
        printf("\nVGG11-BN training step, batch %d, memory (each side in a fresh process, 3 steps):\n\n", vgg_batch);
        printf("| system | peak device bytes in use | host peak RSS | RSS before the model |\n|---|---:|---:|---:|\n");
        if (mem_p7.ok)
            printf("| p7 | %.1f MiB (estimate %.1f MiB) | %.1f MiB | %.1f MiB |\n", mem_p7.device_peak / mib,
                   mem_p7.estimate / mib, mem_p7.rss_peak / mib, mem_p7.rss_before / mib);
        else
            printf("| p7 | n/a (the measuring process failed) | n/a | n/a |\n");
        static const char *const names[2] = {"torch NCHW", "torch channels_last"};
        for (int l = 0; l < 2; l++) {
            if (mem_torch[l].ok)
                printf("| %s | (host memory: see RSS) | %.1f MiB | %.1f MiB |\n", names[l], mem_torch[l].rss_peak / mib,
                       mem_torch[l].rss_before / mib);
            else
                printf("| %s | n/a | n/a | n/a (PyTorch peer unavailable) |\n", names[l]);
        }
    }
    peer_stop(&py);
    p7_device_close(device);
    return rc;
}
