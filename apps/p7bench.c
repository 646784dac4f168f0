/* p7bench: the studies driver. `p7bench STUDY [flags]` runs a study, a grid of cells
 * (p7bench_cells.h), into a results folder (p7bench_study_results.h), each cell through
 * checkpoints (p7bench_cell_run.h), then draws the plots (p7bench_plot.h). `p7bench run`
 * is one configuration; no subcommand is the quick study, single network against
 * BatchEnsemble, with a table on the console. This file only turns the command line into
 * a plan and walks it. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p7/optimizer.h"
#include "p7/p7.h"
#include "p7bench_cell_list.h"
#include "p7bench_cell_run.h"
#include "p7bench_cells.h"
#include "p7bench_devices.h"
#include "p7bench_merge.h"
#include "p7bench_plot.h"
#include "p7bench_slurm.h"
#include "p7bench_study_results.h"
#include "p7bench_train.h"
#include "p7bench_walk.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p7bench [STUDY] [options]      p7bench plot DIR      p7bench merge DIR\n"
            "studies (docs/studies.md):\n"
            "  (none)             quick: a single network against BatchEnsemble (M=4) with the chosen optimizer\n"
            "                     and its recipe, a few epochs, a table on the console (VGG11-BN on a GPU; the\n"
            "                     simple CNN on 20,000 images for 10 epochs on a CPU, minutes)\n"
            "  alpha-gamma        BE fast-weight init alpha x gamma over {-1,-0.8,-0.5,-0.2,0,0.2,0.5,0.8,1}^2\n"
            "  ensemble-size      M in 2..10 x lr in {0.02, 0.002, 0.0002}\n"
            "  optimizers         sgd, adam, ivon (or plugin paths) x M in {1, 2, 4, 8}\n"
            "  sharing            --regime within|between|combined --dataset cifar10|cifar20: the four sharing\n"
            "                     intensities (combined: the diagonal, or --pairs all)\n"
            "  run                one configuration\n"
            "cells:\n"
            "  --list             print the study's cells (id and settings) and exit\n"
            "  --cell ID          run only this cell (repeatable)\n"
            "  --seeds N          repeat every cell with seeds seed, seed+1, ..., seed+N-1\n"
            "  --out DIR          the results folder (default results/<study>/); rerunning the same command\n"
            "                     resumes: finished cells are skipped, an interrupted one continues from its\n"
            "                     checkpoint; a folder of other settings is refused\n"
            "  --set KEY=VALUE    any cell setting (docs/studies.md); an axis of the study takes a list\n"
            "parallel and cluster runs (docs/cluster.md):\n"
            "  --jobs N           N cells at once, one OpenCL device each (worker processes sharing --out)\n"
            "  --devices LIST     the workers' devices: indices among those --device names (0,1,2) or device specs\n"
            "  --emit slurm       write DIR/slurm/STUDY.sbatch, a job array of one task per cell, and exit\n"
            "  --partition P  --time T  --account A  --gpus-per-task G  --cpus-per-task C  --mem M\n"
            "  --array-limit N  --sbatch LINE   the script's #SBATCH lines (each only when given)\n"
            "  --array-task       run the cell of DIR/cells.list at $SLURM_ARRAY_TASK_ID (the emitted script does)\n"
            "  --cell-index K     run the cell at index K of DIR/cells.list\n"
            "settings (each overrides the study's default; an axis takes a comma-separated list):\n"
            "  --model NAME       simple, heads, complex, vgg11, vgg11-bn, vgg11-10conv (docs/networks.md)\n"
            "  --bn on|off        BatchNorm after every conv (default: the model's)\n"
            "  --members M        ensemble members (1: a single network)\n"
            "  --member-kind K    be (BatchEnsemble) or independent (whole copies)\n"
            "  --regime R         sharing regime: within, between or combined\n"
            "  --within P         within-model sharing none|early|deep|all (alone: --regime within)\n"
            "  --between P        what members share: none|early|deep|all (alone: --regime between; both: combined)\n"
            "  --pairs diagonal|all  the combined regime's (within, between) pairs\n"
            "  --tie LIST         tie same-shape convs, e.g. conv5,conv6,conv7 (groups separated by ';')\n"
            "  --width W          scale every channel count by W (0.125: a quick smoke run; above 1 widens)\n"
            "  --alpha V --gamma V  BatchEnsemble fast-weight init (0 <= v <= 1: random signs with P(+1) = v;\n"
            "                     v < 0: N(1, |v|))\n"
            "  --optimizer X      sgd, adam, ivon or a plugin path such as plugins/libivon.so\n"
            "  --lr X             learning rate (replaces the recipe's)\n"
            "  --hparams A        optimizer hyperparameters, e.g. \"weight_decay=0.0001\"; each replaces that key\n"
            "                     of the recipe\n"
            "  --weight-decay X   the optimizer's weight decay\n"
            "  --schedule S       constant, cosine or warmup-cosine[:per=epoch|step,warmup=EPOCHS|P%%,\n"
            "                     min-warmup=N,start=F,floor=F]\n"
            "  --clip X           clip the gradients' global L2 norm to X (0: off)\n"
            "  --patience N       early stopping after N epochs without improvement (needs --val-split)\n"
            "  --min-delta X      the improvement early stopping asks for\n"
            "  --val-split N      validation images split off the training set (0: none; the test set is then\n"
            "                     measured every epoch, as the original's BE studies did)\n"
            "  --augment on|off   random crop and flip (default: on for cifar20, off for cifar10)\n"
            "  --bma-samples S    IVON: Bayesian model average over S samples (default 8 on CPUs, 32 on GPUs)\n"
            "  --faithful[=LIST]  the original study's semantics (p7/faithful.h, docs/training.md)\n"
            "  --epochs E  --batch B  --seed S  --limit N (train on at most N images)\n"
            "  --dataset NAME     cifar10, cifar20 (CIFAR-100 superclasses) or synthetic\n"
            "  --max-loss X       a mean training loss above X, or NaN/inf, marks the cell diverged\n"
            "machine:\n"
            "  --data DIR         data root holding cifar10/ and cifar100/ (default $P7_DATA, else ./data);\n"
            "                     without --data and --dataset, missing CIFAR-10 falls back to a synthetic set\n"
            "  --device SPEC      nvidia, amd, intel, gpu, cpu, pocl, P:D, or part of a device name\n"
            "  --gemm NAME        GEMM backend (default: $P7_GEMM, else p7 on CPUs, CLBlast on GPUs)\n"
            "  --self-check       only the device report and the GEMM self-check\n"
            "  --profile          time the training steps from OpenCL events: per epoch 3 lines (device time\n"
            "                     per step, host overhead, GFLOP/s and share of the FMA peak); per cell the\n"
            "                     tables per op kind, layer and kernel in cells/<id>/profile.md (docs/performance.md)\n"
            "  --peak-gflops G    the device's FP32 peak for --profile (default: estimated from /proc/cpuinfo\n"
            "                     on CPU devices)\n"
            "  --list-devices     print every OpenCL device and exit\n"
            "exit codes: 0 done, 1 error, 2 bad arguments, 3 a cell diverged, 130 interrupted (Ctrl-C: the\n"
            "current step finishes, the checkpoint is written; the same command resumes), 143 the same by SIGTERM\n"
            "(kill, scancel, a SLURM time limit)\n");
}

static int list_devices(void)
{
    size_t count = 0;
    p7_status st = p7_device_list(NULL, 0, &count);
    if (st != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        return 1;
    }
    p7_device_info *infos = calloc(count, sizeof *infos);
    if (!infos) return 1;
    p7_device_list(infos, count, &count);
    for (size_t i = 0; i < count; i++)
        printf("%u:%u  %-40s %-4s %s | %s | driver %s\n", infos[i].platform_index, infos[i].device_index,
               infos[i].name, infos[i].kind == P7_DEVICE_KIND_GPU ? "GPU" : infos[i].kind == P7_DEVICE_KIND_CPU ? "CPU" : "other",
               infos[i].vendor, infos[i].platform_name, infos[i].driver_version);
    free(infos);
    return 0;
}

static unsigned long long lcg = 12345;
static float next_uniform(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((lcg >> 40) * (1.0 / 16777216.0)) - 0.5f;
}

/* One GEMM of a VGG11-like shape against a float64 host reference, on one backend;
 * C is pre-filled with NaN so an element the kernel skips fails the check. */
static int gemm_check(p7_device *device, p7_gemm_backend backend, int ta, int tb, size_t m, size_t n, size_t k)
{
    size_t na = m * k, nb = k * n, nc = m * n;
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
    p7_tensor *ta_t = NULL, *tb_t = NULL, *tc_t = NULL;
    int ok = 0;
    if (!a || !b || !c) goto done;
    for (size_t i = 0; i < na; i++) a[i] = next_uniform();
    for (size_t i = 0; i < nb; i++) b[i] = next_uniform();
    int64_t sa[1] = {(int64_t)na}, sb[1] = {(int64_t)nb}, sc[1] = {(int64_t)nc};
    if (p7_tensor_create(device, 1, sa, &ta_t) || p7_tensor_create(device, 1, sb, &tb_t) ||
        p7_tensor_create(device, 1, sc, &tc_t) || p7_tensor_upload(ta_t, a, na) || p7_tensor_upload(tb_t, b, nb) ||
        p7_tensor_fill(tc_t, NAN))
        goto fail;
    p7_gemm_desc d = p7_gemm_desc_packed(ta, tb, m, n, k, 1.0f, 0.0f);
    if (p7_gemm_with(device, backend, &d, p7_tensor_mem(ta_t), p7_tensor_mem(tb_t), p7_tensor_mem(tc_t)) ||
        p7_tensor_download(tc_t, c, nc))
        goto fail;
    double max_err = 0.0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double ref = 0.0;
            for (size_t p = 0; p < k; p++)
                ref += (double)(ta ? a[p * m + i] : a[i * k + p]) * (double)(tb ? b[j * k + p] : b[p * n + j]);
            double err = fabs((double)c[i * n + j] - ref) / (1.0 + fabs(ref));
            if (!(err <= max_err)) max_err = err; /* NaN lands here too */
        }
    ok = max_err < 1e-4;
    printf("  gemm %-7s m=%-4zu n=%-5zu k=%-5zu trans_a=%d trans_b=%d  max rel error %.2e  %s\n",
           p7_gemm_backend_name(backend), m, n, k, ta, tb, max_err, ok ? "PASS" : "FAIL");
    goto done;
fail:
    fprintf(stderr, "p7bench: GEMM self-check failed: %s\n", p7_last_error());
done:
    p7_tensor_release(ta_t);
    p7_tensor_release(tb_t);
    p7_tensor_release(tc_t);
    free(a);
    free(b);
    free(c);
    return ok;
}


/* The flags that are cell settings: flag, key. */
static const struct { const char *flag, *key; } setting_flags[] = {
    {"--model", "model"},          {"--members", "members"},       {"--alpha", "alpha"},
    {"--gamma", "gamma"},          {"--epochs", "epochs"},         {"--batch", "batch"},
    {"--lr", "lr"},                {"--optimizer", "optimizer"},   {"--hparams", "hparams"},
    {"--dataset", "dataset"},      {"--seed", "seed"},             {"--limit", "limit"},
    {"--width", "width"},          {"--regime", "regime"},         {"--within", "intra"},
    {"--between", "inter"},        {"--weight-decay", "weight_decay"}, {"--val-split", "val_split"},
    {"--patience", "patience"},    {"--clip", "clip"},             {"--max-loss", "max_loss"},
    {"--schedule", "schedule"},    {"--min-delta", "min_delta"},   {"--augment", "augment"},
    {"--bma-samples", "bma_samples"}, {"--bn", "bn"},              {"--member-kind", "member_kind"},
    {"--tie", "tie"},              {"--seeds", "seeds"},           {"--pairs", "pairs"},
};
#define SETTING_FLAGS (sizeof setting_flags / sizeof setting_flags[0])
enum { MAX_OVERRIDES = 64, MAX_CELLS = 64 };

typedef struct command {
    const char *study;
    char *overrides[MAX_OVERRIDES];
    size_t override_count;
    const char *cells[MAX_CELLS];
    size_t cell_count;
    const char *spec, *gemm, *out;
    p7bench_data_choice data;
    int list, self_check;
    const char *emit, *devices;
    p7bench_slurm_options slurm;
    int slurm_given, array_task;
    long cell_index, jobs; /* -1: no --cell-index; 0: no --jobs */
    int model_given, limit_given, epochs_given, bma_given, regime_given, within_given, between_given, fast_weights_given;
    int profile;        /* --profile */
    double peak_gflops; /* --peak-gflops (0: the cpuinfo estimate) */
} command;

static int add_override(command *c, const char *key, const char *value)
{
    if (c->override_count == MAX_OVERRIDES) {
        fprintf(stderr, "p7bench: more than %d settings\n", MAX_OVERRIDES);
        return 0;
    }
    size_t n = strlen(key) + strlen(value) + 2;
    char *o = malloc(n);
    if (!o) return 0;
    snprintf(o, n, "%s=%s", key, value);
    c->overrides[c->override_count++] = o;
    return 1;
}

static int whole_number(const char *flag, const char *v, long min, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < min) {
        fprintf(stderr, "p7bench: %s '%s': expected a whole number of at least %ld\n", flag, v, min);
        return 0;
    }
    *out = n;
    return 1;
}

/* The flags of parallel and cluster runs: 1 taken, 0 not one of them, -1 bad. */
static int parse_parallel_flag(command *c, const char *a, const char *v)
{
    static const char *const sbatch_flags[] = {"--partition", "--time", "--account", "--mem", "--gpus-per-task",
                                               "--cpus-per-task"};
    p7bench_slurm_options *o = &c->slurm;
    const char **sbatch_values[] = {&o->partition, &o->time, &o->account, &o->mem, &o->gpus_per_task, &o->cpus_per_task};
    for (size_t i = 0; i < sizeof sbatch_flags / sizeof sbatch_flags[0]; i++)
        if (strcmp(a, sbatch_flags[i]) == 0) {
            *sbatch_values[i] = v;
            c->slurm_given = 1;
            return 1;
        }
    if (strcmp(a, "--sbatch") == 0) {
        if (o->extra_count == P7BENCH_SBATCH_EXTRA_MAX) {
            fprintf(stderr, "p7bench: more than %d --sbatch\n", P7BENCH_SBATCH_EXTRA_MAX);
            return -1;
        }
        o->extra[o->extra_count++] = v;
        c->slurm_given = 1;
        return 1;
    }
    if (strcmp(a, "--array-limit") == 0) return c->slurm_given = 1, whole_number(a, v, 1, &o->array_limit) ? 1 : -1;
    if (strcmp(a, "--emit") == 0) {
        if (strcmp(v, "slurm") != 0) {
            fprintf(stderr, "p7bench: --emit '%s': the one kind is slurm (a job-array script)\n", v);
            return -1;
        }
        c->emit = v;
        return 1;
    }
    if (strcmp(a, "--cell-index") == 0) return whole_number(a, v, 0, &c->cell_index) ? 1 : -1;
    if (strcmp(a, "--jobs") == 0) return whole_number(a, v, 1, &c->jobs) ? 1 : -1;
    if (strcmp(a, "--devices") == 0) {
        c->devices = v;
        return 1;
    }
    return 0;
}

/* The parallel flags fit together, before anything starts. */
static int check_parallel_flags(const command *c)
{
    const int quick = strcmp(c->study, "quick") == 0, one = c->array_task || c->cell_index >= 0;
    const char *what = c->emit ? "--emit" : one ? (c->array_task ? "--array-task" : "--cell-index")
                     : c->jobs || c->devices ? "--jobs" : NULL;
    if (what && quick) {
        fprintf(stderr, "p7bench: %s runs the cells of a study: name one (alpha-gamma, ensemble-size, optimizers, "
                        "sharing, run)\n", what);
        return 1;
    }
    if (c->slurm_given && !c->emit) {
        fprintf(stderr, "p7bench: --partition, --time, --account, --gpus-per-task, --cpus-per-task, --mem, --array-limit "
                        "and --sbatch are the job script's: give them with --emit slurm\n");
        return 1;
    }
    if (c->array_task && c->cell_index >= 0) {
        fprintf(stderr, "p7bench: --array-task and --cell-index both choose the cell; give one\n");
        return 1;
    }
    if ((one || c->emit) && (c->jobs || c->devices)) {
        fprintf(stderr, "p7bench: %s with --jobs/--devices: an array task or an emitted script runs one cell per task\n",
                what);
        return 1;
    }
    if (one && c->cell_count) {
        fprintf(stderr, "p7bench: %s and --cell both choose the cell; give one\n", what);
        return 1;
    }
    if (c->emit && one) {
        fprintf(stderr, "p7bench: --emit writes the script that runs --array-task; give one of them\n");
        return 1;
    }
    if ((c->emit || one || c->jobs || c->devices) && c->list) {
        fprintf(stderr, "p7bench: --list prints the cells; it runs nothing, in parallel or not\n");
        return 1;
    }
    return 0;
}

/* Returns -1 to go on, else the exit code. */
static int parse_command(int argc, char **argv, command *c)
{
    int i = 1;
    const char *const *names = p7bench_study_names();
    c->study = "quick";
    if (argc > 1 && argv[1][0] != '-') {
        int known = 0;
        for (size_t k = 0; names[k]; k++) known |= strcmp(names[k], argv[1]) == 0;
        if (!known) {
            fprintf(stderr, "p7bench: no study '%s'; the studies are alpha-gamma, ensemble-size, optimizers, sharing, "
                            "run (and plot DIR)\n", argv[1]);
            return 2;
        }
        c->study = argv[1];
        i = 2;
    }
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); return 0; }
        if (strcmp(a, "--list-devices") == 0) return list_devices();
        if (strcmp(a, "--self-check") == 0) { c->self_check = 1; continue; }
        if (strcmp(a, "--list") == 0) { c->list = 1; continue; }
        if (strcmp(a, "--array-task") == 0) { c->array_task = 1; continue; }
        if (strcmp(a, "--profile") == 0) { c->profile = 1; continue; }
        if (strcmp(a, "--faithful") == 0 || strncmp(a, "--faithful=", 11) == 0) {
            unsigned bits;
            const char *list = a[10] == '=' ? a + 11 : "all";
            if (p7bench_parse_faithful(list, &bits) != 0) return 2;
            if (!add_override(c, "faithful", list)) return 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "p7bench: unknown option, or an option without its value: '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--device") == 0) { c->spec = v; continue; }
        if (strcmp(a, "--gemm") == 0) { c->gemm = v; continue; }
        if (strcmp(a, "--out") == 0) { c->out = v; continue; }
        if (strcmp(a, "--data") == 0) { c->data.data_dir = v; continue; }
        if (strcmp(a, "--peak-gflops") == 0) {
            char *end;
            c->peak_gflops = strtod(v, &end);
            if (*end || !(c->peak_gflops > 0) || c->peak_gflops > 1e9) {
                fprintf(stderr, "p7bench: --peak-gflops '%s': expected a positive number of GFLOP/s\n", v);
                return 2;
            }
            continue;
        }
        int parallel = parse_parallel_flag(c, a, v);
        if (parallel > 0) continue;
        if (parallel < 0) return 2;
        if (strcmp(a, "--cell") == 0) {
            if (c->cell_count == MAX_CELLS) { fprintf(stderr, "p7bench: more than %d --cell\n", MAX_CELLS); return 2; }
            c->cells[c->cell_count++] = v;
            continue;
        }
        if (strcmp(a, "--set") == 0) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) { fprintf(stderr, "p7bench: --set '%s': expected KEY=VALUE\n", v); return 2; }
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
            if (!add_override(c, key, eq + 1)) return 1;
            continue;
        }
        size_t k = 0;
        while (k < SETTING_FLAGS && strcmp(setting_flags[k].flag, a) != 0) k++;
        if (k == SETTING_FLAGS) {
            fprintf(stderr, "p7bench: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        const char *key = setting_flags[k].key;
        if (strcmp(key, "dataset") == 0) c->data.dataset_given = 1;
        if (strcmp(key, "model") == 0) c->model_given = 1;
        if (strcmp(key, "limit") == 0) c->limit_given = 1;
        if (strcmp(key, "epochs") == 0) c->epochs_given = 1;
        if (strcmp(key, "bma_samples") == 0) c->bma_given = 1;
        if (strcmp(key, "regime") == 0) c->regime_given = 1;
        if (strcmp(key, "intra") == 0) c->within_given = 1;
        if (strcmp(key, "inter") == 0) c->between_given = 1;
        if (strcmp(key, "alpha") == 0 || strcmp(key, "gamma") == 0) c->fast_weights_given = 1;
        if (!add_override(c, key, v)) return 1;
    }
    if (check_parallel_flags(c) != 0) return 2;
    /* --within / --between alone choose their regime (the sharing study names it itself) */
    if (!c->regime_given && strcmp(c->study, "sharing") != 0 && (c->within_given || c->between_given))
        if (!add_override(c, "regime", c->within_given && c->between_given ? "combined"
                                       : c->within_given                  ? "within"
                                                                          : "between"))
            return 1;
    return -1;
}

/* The quick study on a CPU: the simple CNN on 20,000 images for 10 epochs, IVON's model
 * average over 16 samples; about 8 minutes on 2 cores. At 3 epochs (the GPU's length) the
 * network is still underfit (training loss = test NLL) and the model average cannot pay:
 * it lost to the mean weights under every h0 and beta2 tried; over 10 epochs it wins
 * (docs/training.md). 16 samples: the S-sample average's NLL overstates the exact one by
 * about 0.07/S nats here, which at 2 samples hid the gain. VGG11-BN as on a GPU when the
 * user names a model. */
static int quick_for_cpu(command *c)
{
    if (!c->model_given && !add_override(c, "model", "simple")) return 0;
    if (!c->model_given && !c->limit_given && !add_override(c, "limit", "20000")) return 0;
    if (!c->model_given && !c->epochs_given && !add_override(c, "epochs", "10")) return 0;
    /* each sample is a test pass: 16 add ~10 s for the single network, ~45 s for M=4 */
    if (!c->model_given && !c->bma_given && !add_override(c, "bma_samples", "16")) return 0;
    return 1;
}

static int make_plan(const command *c, p7bench_study_plan *plan)
{
    char err[1024];
    if (p7bench_study_plan_make(c->study, (const char *const *)c->overrides, c->override_count, plan, err, sizeof err)) {
        fprintf(stderr, "p7bench: %s\n", err);
        return 2;
    }
    return 0;
}

/* The cells to run: all, or those named by --cell. */
static int select_cells(const command *c, const p7bench_study_plan *plan, const p7bench_cell **out, size_t *count)
{
    *count = 0;
    if (c->cell_count == 0) {
        for (size_t i = 0; i < plan->count; i++) out[(*count)++] = &plan->cells[i];
        return 0;
    }
    for (size_t i = 0; i < c->cell_count; i++) {
        char err[1024];
        const p7bench_cell *cell = p7bench_study_find_cell(plan, c->cells[i], err, sizeof err);
        if (!cell) {
            fprintf(stderr, "p7bench: --cell: %s\n", err);
            return 2;
        }
        out[(*count)++] = cell;
    }
    return 0;
}

/* Every selected cell's settings resolve without a device, or the run does not start. */
static int check_cells(const command *c, const p7bench_cell *const *cells, size_t count)
{
    int any_ensemble = 0;
    for (size_t i = 0; i < count; i++) {
        p7bench_train_options o;
        p7bench_plan data;
        int rc = p7bench_cell_options(cells[i], &c->data, 0, &o, &data);
        if (rc != 0) return rc;
        any_ensemble |= o.members > 1;
        if (c->fast_weights_given && o.network.member_kind == P7_MEMBERS_INDEPENDENT && o.members > 1) {
            fprintf(stderr, "p7bench: --alpha/--gamma set BatchEnsemble's fast weights, which independent members "
                            "(%s) do not have\n", cells[i]->id);
            return 2;
        }
    }
    if (c->fast_weights_given && !any_ensemble) {
        fprintf(stderr, "p7bench: --alpha/--gamma set BatchEnsemble's fast weights, which a plain network does not have; "
                        "give --members 2 or more\n");
        return 2;
    }
    return 0;
}

/* The results folder of this run: --out, else the study's default. */
static void folder_dir(const command *c, const p7bench_study_plan *plan, char *dir, size_t size)
{
    if (c->out) snprintf(dir, size, "%s", c->out);
    else p7bench_study_default_out(plan, dir, size);
}

/* The results folder: created, or checked against this run's settings. */
static int open_folder(const command *c, const p7bench_study_plan *plan, char *dir, size_t size,
                       p7bench_study_folder **folder)
{
    char err[1024];
    folder_dir(c, plan, dir, size);
    if (p7bench_study_folder_open(dir, plan, folder, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench: %s: %s\n", dir, err);
        return 1;
    }
    return 0;
}

/* An array task's cell: index K of DIR/cells.list (K from SLURM_ARRAY_TASK_ID or
 * --cell-index), which these flags must produce. */
static int select_array_cell(const command *c, const p7bench_study_plan *plan, const char *dir,
                             const p7bench_cell **out, size_t *count, long *array_index)
{
    long k = c->cell_index;
    char err[1024];
    if (c->array_task) {
        const char *t = getenv("SLURM_ARRAY_TASK_ID");
        char *end;
        k = t ? strtol(t, &end, 10) : -1;
        if (!t || end == t || *end || k < 0) {
            fprintf(stderr, "p7bench: --array-task: SLURM_ARRAY_TASK_ID is %s%s%s: this is not a SLURM array task (to "
                            "run the K-th cell of %s/cells.list by hand, give --cell-index K)\n",
                    t ? "'" : "not set", t ? t : "", t ? "'" : "", dir);
            return 2;
        }
    }
    p7bench_cell_list list;
    if (p7bench_cell_list_read(dir, &list, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench: %s\n", err);
        return 1;
    }
    if ((size_t)k >= list.count) {
        fprintf(stderr, "p7bench: array index %ld: %s/cells.list lists %zu cell(s)%s; was the script emitted into "
                        "another folder?\n", k, dir, list.count, list.count ? " (indices from 0)" : "");
        p7bench_cell_list_free(&list);
        return 2;
    }
    const p7bench_cell *cell = p7bench_study_find_cell(plan, list.ids[k], err, sizeof err);
    if (!cell) {
        fprintf(stderr, "p7bench: array index %ld is cell %s in %s/cells.list, which the flags of this run do not "
                        "produce: %s. An array task must have the flags of the run that listed its cell (the script's)\n",
                k, list.ids[k], dir, err);
        p7bench_cell_list_free(&list);
        return 2;
    }
    printf("p7bench: array index %ld: cell %s\n", k, cell->id);
    *array_index = k;
    p7bench_cell_list_free(&list);
    out[0] = cell;
    *count = 1;
    return 0;
}

/* path made absolute against the working folder. */
static void absolute_path(const char *path, char *out, size_t size)
{
    char cwd[4096];
    while (path[0] == '.' && path[1] == '/') path += 2;
    if (path[0] == '/' || !getcwd(cwd, sizeof cwd)) snprintf(out, size, "%s", path);
    else snprintf(out, size, "%s/%s", cwd, path);
}

/* The command that runs this study again, for DIR/cells.list and the job script: the
 * binary by absolute path, the flags without those that choose cells, workers or the
 * script's options, and --out made absolute. */
static int rerun_command(int argc, char **argv, const char *dir, char *out, size_t size)
{
    static const char *const dropped_with_value[] = {"--cell", "--cell-index", "--jobs", "--devices", "--emit",
                                                     "--partition", "--time", "--account", "--mem", "--gpus-per-task",
                                                     "--cpus-per-task", "--array-limit", "--sbatch", "--out"};
    char self[8200], abs_dir[8200];
    ssize_t n = readlink("/proc/self/exe", self, 4096);
    if (n > 0) self[n] = '\0';
    else absolute_path(argv[0], self, sizeof self);
    absolute_path(dir, abs_dir, sizeof abs_dir);
    out[0] = '\0';
    if (p7bench_shell_quote(self, out, size)) return 1;
    for (int i = 1; i < argc; i++) {
        int drop = strcmp(argv[i], "--array-task") == 0, value = 0;
        for (size_t k = 0; k < sizeof dropped_with_value / sizeof dropped_with_value[0]; k++)
            if (strcmp(argv[i], dropped_with_value[k]) == 0) drop = value = 1;
        if (drop) {
            i += value;
            continue;
        }
        size_t len = strlen(out);
        if (len + 2 >= size) return 1;
        strcat(out, " ");
        if (p7bench_shell_quote(argv[i], out, size)) return 1;
    }
    size_t len = strlen(out);
    if (len + 8 >= size) return 1;
    strcat(out, " --out ");
    return p7bench_shell_quote(abs_dir, out, size);
}

/* --emit slurm: the cells listed, the script written. */
static int emit_slurm(const command *c, const char *dir, const char *study, const char *command_line,
                      const size_t *index, size_t count)
{
    char abs_dir[8200], cwd[4096], script[8400], err[1024];
    if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "p7bench: the working folder: %s\n", strerror(errno));
        return 1;
    }
    absolute_path(dir, abs_dir, sizeof abs_dir);
    size_t *sorted = malloc((count ? count : 1) * sizeof *sorted), n = 0;
    if (!sorted) return 1;
    for (size_t i = 0; i < count; i++) { /* ascending, once each */
        size_t at = 0;
        while (at < n && sorted[at] < index[i]) at++;
        if (at < n && sorted[at] == index[i]) continue;
        memmove(sorted + at + 1, sorted + at, (n - at) * sizeof *sorted);
        sorted[at] = index[i];
        n++;
    }
    const char *data = getenv("P7_DATA");
    int rc = p7bench_slurm_write_script(abs_dir, study, cwd, command_line, data && *data ? data : NULL, sorted, n,
                                        &c->slurm, script, sizeof script, err, sizeof err);
    free(sorted);
    if (rc != 0) {
        fprintf(stderr, "p7bench: --emit slurm: %s\n", err);
        return 1;
    }
    printf("p7bench: %s: %zu cell(s) as a SLURM job array (indices in %s/cells.list)\n", script, n, abs_dir);
    printf("  submit:  sbatch %s\n  merge:   p7bench merge %s\n", script, abs_dir);
    return 0;
}

/* An array task's device: the GPU SLURM granted, else the CPU (p7bench_devices.h). */
static int task_device_spec(const char *spec, char *out, size_t size)
{
    size_t count = 0, index = 0;
    if (p7_device_list(NULL, 0, &count) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        return 1;
    }
    p7_device_info *infos = calloc(count ? count : 1, sizeof *infos);
    if (!infos) return 1;
    p7_device_list(infos, count, &count);
    char note[1024];
    p7bench_gpu_grant grant = p7bench_gpu_grant_from_environment();
    int rc = p7bench_device_for_task(spec, infos, count, &grant, &index, note, sizeof note);
    if (rc == 0) {
        snprintf(out, size, "%u:%u", infos[index].platform_index, infos[index].device_index);
        printf("p7bench: array task device: %s\n", note);
    } else fprintf(stderr, "p7bench: array task device: %s\n", note);
    free(infos);
    return rc;
}

static void print_quick_table(const p7bench_cell_result *r, size_t n)
{
    printf("\n%-30s %8s %8s %8s %8s %8s %12s %9s\n", "model", "acc %", "NLL", "ECE", "BMA acc", "BMA NLL", "parameters",
           "time");
    for (size_t i = 0; i < n; i++) {
        char name[64], bma[16] = "-", bma_nll[16] = "-";
        if (r[i].members > 1) snprintf(name, sizeof name, "%s BatchEnsemble M=%lld", r[i].model, r[i].members);
        else snprintf(name, sizeof name, "%s single", r[i].model);
        if (r[i].bma_test_acc == r[i].bma_test_acc) snprintf(bma, sizeof bma, "%.2f", r[i].bma_test_acc);
        if (r[i].bma_test_nll == r[i].bma_test_nll) snprintf(bma_nll, sizeof bma_nll, "%.4f", r[i].bma_test_nll);
        printf("%-30s %8.2f %8.4f %8.4f %8s %8s %12lld %8.0fs\n", name, r[i].final_test_acc, r[i].test_nll,
               r[i].test_ece, bma, bma_nll, r[i].params_used, r[i].seconds);
    }
    printf("(%s, %s; test set after the last epoch; ECE over 15 bins)\n", r[0].dataset, r[0].optimizer);
}

static void resume_hint(int argc, char **argv, char *out, size_t size)
{
    size_t n = 0;
    for (int i = 0; i < argc && n + 4 < size; i++) {
        const char *a = argv[i];
        int plain = strpbrk(a, " \t'\"$;&|<>()*?") == NULL && *a;
        n += (size_t)snprintf(out + n, size - n, plain ? "%s%s" : "%s'%s'", i ? " " : "", a);
    }
}

static void stopped_message(int signal_number, const char *hint)
{
    fprintf(stderr, "p7bench: stopped by %s. Resume with the same command:\n  %s\n",
            signal_number == SIGTERM ? "SIGTERM" : "Ctrl-C", hint);
}

int main(int argc, char **argv)
{
    /* Line-buffered even into a pipe or log, so the report and the per-epoch lines on
     * stderr stay in order. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "plot") == 0) return p7bench_plot_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "merge") == 0) return p7bench_merge_main(argc - 1, argv + 1);
    command c = {0};
    c.cell_index = -1;
    int rc = parse_command(argc, argv, &c);
    p7bench_study_plan plan = {0};
    const p7bench_cell **cells = NULL;
    size_t count = 0;
    p7_device *device = NULL;
    p7bench_study_folder *folder = NULL;
    p7bench_runner runner = {0};
    p7bench_cell_result *done_rows = NULL;
    p7bench_walk walk = {0};
    size_t done_count = 0, *index = NULL;
    long array_index = -1;
    char out_dir[4096], err[1024], hint[32768], command_line[16384], cwd[4096], task_spec[32];
    const char *spec = NULL;
    p7_device_options opts = {0};
    if (rc >= 0) goto end;
    rc = 2;
    if (c.gemm && p7_gemm_backend_parse(c.gemm, &opts.gemm) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --gemm: %s\n", p7_last_error());
        goto end;
    }
    spec = c.spec;
    if (c.peak_gflops > 0 && !c.profile) {
        fprintf(stderr, "p7bench: --peak-gflops is the profile's: give it with --profile\n");
        goto end;
    }
    opts.profiling = c.profile ? 2 : 0; /* 2: kernel labels name the layer too */
    /* Every check that needs no device comes first: a typo costs milliseconds, not a device
     * start and a data load. */
    if (!c.self_check) {
        if ((rc = make_plan(&c, &plan)) != 0) goto end;
        if (c.list) {
            p7bench_study_print_list(&plan, stdout);
            goto end;
        }
        cells = calloc(plan.count ? plan.count : 1, sizeof *cells);
        if (!cells) goto end;
        folder_dir(&c, &plan, out_dir, sizeof out_dir);
        if (c.array_task || c.cell_index >= 0) rc = select_array_cell(&c, &plan, out_dir, cells, &count, &array_index);
        else rc = select_cells(&c, &plan, cells, &count);
        if (rc != 0 || (rc = check_cells(&c, cells, count)) != 0) goto end;
        /* the quick study's cells depend on the device: its folder is opened below */
        rc = 1;
        if (strcmp(c.study, "quick") != 0 && open_folder(&c, &plan, out_dir, sizeof out_dir, &folder) != 0) goto end;
    }
    if (folder) {
        /* every cell of this run is in the folder's list before any of it runs: the list's
         * order is the grid's, and array indices are fixed from here on */
        if (rerun_command(argc, argv, out_dir, command_line, sizeof command_line) != 0 || !getcwd(cwd, sizeof cwd)) {
            fprintf(stderr, "p7bench: the command line or the working folder is too long to record\n");
            goto end;
        }
        index = calloc(count ? count : 1, sizeof *index);
        if (!index || p7bench_cell_list_add(out_dir, cells, count, cwd, command_line, index, err, sizeof err) != 0) {
            fprintf(stderr, "p7bench: %s\n", index ? err : "out of host memory");
            goto end;
        }
        if (c.emit) {
            rc = emit_slurm(&c, out_dir, plan.study, command_line, index, count);
            goto end;
        }
    }
    char results_csv[4200];
    snprintf(results_csv, sizeof results_csv, "%s/results.csv", out_dir);
    if (folder && p7bench_results_read(results_csv, &done_rows, &done_count, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench: %s: %s\n", results_csv, err);
        goto end;
    }
    resume_hint(argc, argv, hint, sizeof hint);
    if (array_index >= 0) { /* a task resumes by being submitted again */
        char abs_dir[8200];
        absolute_path(out_dir, abs_dir, sizeof abs_dir);
        snprintf(hint, sizeof hint, "sbatch --array=%ld %s/slurm/%s.sbatch   (or, outside SLURM: %s --cell-index %ld)",
                 array_index, abs_dir, plan.study, command_line, array_index);
    }
    if (folder && (c.jobs > 1 || c.devices)) {
        p7bench_runner base = {.study = plan.study, .folder = folder, .data = c.data, .live = 0, .verbose = 1,
                               .resume_hint = hint, .cell_count = count, .profile = c.profile,
                               .peak_gflops = c.peak_gflops};
        p7bench_catch_interrupt(); /* replaced by the forwarding handler while workers run */
        rc = p7bench_run_jobs(&base, c.spec, c.devices, c.jobs ? (size_t)c.jobs : P7BENCH_DEVICES_MAX, &opts, cells,
                              count, done_rows, done_count, task_spec, sizeof task_spec);
        if (rc >= 0) {
            p7bench_merge_folder(out_dir, 0, NULL); /* the workers' rows, in the grid's order */
            p7bench_plot_study(out_dir);
            if (rc == 128 + SIGINT || rc == 128 + SIGTERM) stopped_message(rc - 128, hint);
            else printf("p7bench: results in %s/results.csv, summary in %s/summary.md\n", out_dir, out_dir);
            goto end;
        }
        spec = task_spec; /* one device: this process walks the cells */
    }
    rc = 1;
    if (c.array_task || c.cell_index >= 0) {
        if (task_device_spec(c.spec, task_spec, sizeof task_spec) != 0) goto end;
        spec = task_spec;
    }
    if (p7_device_open(spec, &opts, &device) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        goto end;
    }
    printf("p7bench: device %s\n", p7_device_describe(device));
    if (*p7_device_note(device)) fprintf(stderr, "p7bench: note: %s\n", p7_device_note(device));
    if (c.self_check) {
        printf("p7bench: GEMM self-check (VGG11 conv shapes at batch 4, NaN-prefilled output, float64 reference)\n");
        int ok = 1;
        const p7_gemm_backend backends[2] = {p7_device_gemm_backend(device), p7_device_gemm_backend(device) == P7_GEMM_P7
                                                                                  ? P7_GEMM_CLBLAST
                                                                                  : P7_GEMM_P7};
        for (int bi = 0; bi < 2; bi++) {
            ok &= gemm_check(device, backends[bi], 0, 0, 128, 1024, 576); /* L2 forward */
            ok &= gemm_check(device, backends[bi], 1, 0, 576, 1024, 128); /* L2 data gradient */
            ok &= gemm_check(device, backends[bi], 0, 1, 128, 576, 1024); /* L2 weight gradient */
            ok &= gemm_check(device, backends[bi], 0, 0, 33, 7, 1000);    /* odd sizes */
        }
        printf("p7bench: GEMM self-check %s\n", ok ? "passed" : "FAILED");
        rc = ok ? 0 : 1;
        goto end;
    }
    if (strcmp(c.study, "quick") == 0 && p7_device_get_info(device)->kind == P7_DEVICE_KIND_CPU && !c.model_given &&
        c.cell_count == 0) {
        p7bench_study_plan_release(&plan);
        if (!quick_for_cpu(&c) || (rc = make_plan(&c, &plan)) != 0 || (rc = select_cells(&c, &plan, cells, &count)) != 0)
            goto end;
        rc = 1;
        fprintf(stderr, "p7bench: quick study on a CPU: the simple CNN on 20,000 training images for 10 epochs, BMA over 16 samples "
                        "(give --model vgg11-bn for the GPU's network)\n");
    }
    if (!folder) {
        if (open_folder(&c, &plan, out_dir, sizeof out_dir, &folder) != 0) goto end;
        if (rerun_command(argc, argv, out_dir, command_line, sizeof command_line) != 0 || !getcwd(cwd, sizeof cwd) ||
            p7bench_cell_list_add(out_dir, cells, count, cwd, command_line, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "p7bench: %s: cannot record the cells in cells.list\n", out_dir);
            goto end;
        }
        snprintf(results_csv, sizeof results_csv, "%s/results.csv", out_dir);
        if (p7bench_results_read(results_csv, &done_rows, &done_count, err, sizeof err) != 0) {
            fprintf(stderr, "p7bench: %s: %s\n", results_csv, err);
            goto end;
        }
    }
    runner = (p7bench_runner){.device = device, .study = plan.study, .folder = folder, .data = c.data,
                              .live = isatty(STDERR_FILENO), .verbose = 1, .resume_hint = hint, .cell_count = count,
                              .profile = c.profile, .peak_gflops = c.peak_gflops};
    walk.results = calloc(count ? count : 1, sizeof *walk.results);
    if (!walk.results) goto end;
    p7bench_catch_interrupt();
    printf("p7bench: %s study, %zu cell(s), results in %s\n", plan.study, count, out_dir);
    p7bench_walk_cells(&runner, cells, count, done_rows, done_count, "", &walk);
    if (walk.interrupted) {
        stopped_message(walk.interrupted, hint);
        rc = p7bench_walk_exit_code(&walk);
        goto end;
    }
    if (walk.busy)
        fprintf(stderr, "p7bench: %zu cell(s) were being run by other processes and were skipped; `p7bench merge %s` "
                        "lists what is left once they end\n", walk.busy, out_dir);
    /* an array task leaves the plots to `p7bench merge`: a hundred tasks ending together
     * would each redraw them */
    if (c.array_task || c.cell_index >= 0)
        printf("p7bench: `p7bench merge %s` gathers the results and draws the plots once the tasks are done\n", out_dir);
    else p7bench_plot_study(out_dir);
    if (strcmp(plan.study, "quick") == 0 && walk.ran > 0) print_quick_table(walk.results, walk.ran);
    printf("p7bench: results in %s/results.csv, summary in %s/summary.md\n", out_dir, out_dir);
    rc = p7bench_walk_exit_code(&walk);
end:
    for (size_t i = 0; walk.results && i < walk.ran; i++) p7bench_cell_result_release(&walk.results[i]);
    free(walk.results);
    free(index);
    if (done_rows) p7bench_results_free(done_rows, done_count);
    p7bench_runner_release(&runner);
    p7bench_study_folder_close(folder);
    p7_device_close(device);
    free(cells);
    p7bench_study_plan_release(&plan);
    for (size_t i = 0; i < c.override_count; i++) free(c.overrides[i]);
    return rc;
}
