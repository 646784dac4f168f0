/* p7bench: the studies driver. Today it opens the chosen device, reports it, runs the
 * GEMM self-check on both backends, then one training run (model, optimizer plugin,
 * real CIFAR data or the synthetic fallback) with results in a CSV file. The study
 * grids (BatchEnsemble, optimizers, parameter sharing) build on this run. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/optimizer.h"
#include "p7/p7.h"
#include "p7bench_plot.h"
#include "p7bench_train.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p7bench [options]\n"
            "  --device SPEC      nvidia, amd, intel, gpu, cpu, pocl, P:D, or part of a device name\n"
            "                     (default: $P7_DEVICE, else the first GPU, else the first CPU)\n"
            "  --optimizer X      optimizer plugin: sgd, adam, ivon (found in the plugins folder beside\n"
            "                     the program, then $P7_PLUGIN_PATH) or a path such as plugins/libivon.so\n"
            "                     (default adam)\n"
            "  --hparams A        optimizer hyperparameters, e.g. \"lr=0.001,weight_decay=0.0001\"; each\n"
            "                     replaces that key of the optimizer's recipe (printed at start)\n"
            "  --schedule S       learning-rate schedule: constant, cosine or warmup-cosine, with options\n"
            "                     :per=epoch|step,warmup=EPOCHS|P%%,start=F,floor=F (default: the recipe's)\n"
            "  --clip X           clip the gradients' global L2 norm to X (default 0: off)\n"
            "  --patience N       early stopping on the validation loss after N epochs without improvement,\n"
            "                     restoring the best weights (default 0: off)   --min-delta X (default 0)\n"
            "  --augment on|off   random crop (4-pixel padding) and flip of training images (default: on for\n"
            "                     cifar20, off for cifar10, as the original)\n"
            "  --bma-samples S    IVON: Bayesian model average over S weight samples (default 8 on CPUs,\n"
            "                     32 on GPUs; 0: off)\n"
            "  --faithful[=LIST]  the original study's semantics; LIST names switches (default: all):\n"
            "                     see p7/faithful.h and docs/training.md\n"
            "  --data DIR         data root holding cifar10/ and cifar100/ (default $P7_DATA, else ./data);\n"
            "                     when neither --data nor --dataset is given and the default folder has no\n"
            "                     CIFAR-10, the built-in synthetic set is used, and every output says so\n"
            "  --dataset NAME     cifar10 (default), cifar20 (CIFAR-100 superclasses) or synthetic\n"
            "  --model NAME       simple (default), heads, complex, vgg11, vgg11-bn, vgg11-10conv\n"
            "                     (docs/networks.md)   --bn on|off: BatchNorm after every conv (default:\n"
            "                     the model's; complex: off single, on BatchEnsemble)\n"
            "  --members M        ensemble members (default 1: a single network)\n"
            "  --member-kind K    be (BatchEnsemble: shared weights, rank-1 factors) or independent (whole\n"
            "                     copies); default: be for simple/heads/complex, independent for vgg11*\n"
            "  --within P         within-model sharing preset none|early|deep|all (ties same-shape convs of\n"
            "                     the 10-conv layout: early the 256->256, deep the 512->512, all both)\n"
            "  --between P        what independent members share: none|early (conv1-2 blocks)|deep (conv3 on)\n"
            "                     |all (one network); --within and --between together: combined sharing\n"
            "  --tie LIST         tie same-shape convs, e.g. conv5,conv6,conv7 (groups separated by ';')\n"
            "  --width W          scale every channel count by W (0 < W <= 1; a quick smoke run)\n"
            "  --alpha V --gamma V  BatchEnsemble fast-weight init, needs --members 2 or more\n"
            "                     (0 <= v <= 1: random signs with P(+1) = v; v < 0: N(1, |v|); default 0.5)\n"
            "  --epochs E         (default 3)   --batch B (default 128)   --seed S (default 42)\n"
            "  --seeds LIST       run each seed of a comma-separated list in turn (e.g. 42,43,44)\n"
            "  --limit N          train on at most N images (a quick look)\n"
            "  --out FILE         results CSV, appended (default results/p7bench.csv); a file with other\n"
            "                     columns is refused, never appended to\n"
            "  --max-loss X       a mean training loss above X, or NaN/inf, stops the run as diverged\n"
            "                     (exit code 3, status 'diverged' in the CSV; default 10000)\n"
            "  --self-check       only the device report and the GEMM self-check\n"
            "  --gemm NAME        GEMM backend (default: $P7_GEMM, else p7 on CPUs, CLBlast on GPUs)\n"
            "  --list-devices     print every OpenCL device and exit\n"
            "exit codes: 0 done, 1 error, 2 bad arguments, 3 training diverged\n"
            "Every argument, the optimizer's hyperparameters, the data folder and the results file are\n"
            "checked before the device opens; the training step's memory is checked against the device\n"
            "(and, on CPU devices, the host) before the first step.\n");
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

/* Whole-string numbers only: "--epochs 2x" is an error, not 2. */
static int parse_int(const char *option, const char *text, long long min, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min) {
        fprintf(stderr, "p7bench: %s '%s': expected an integer >= %lld\n", option, text, min);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_double(const char *option, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) {
        fprintf(stderr, "p7bench: %s '%s': expected a finite number\n", option, text);
        return 0;
    }
    *out = v;
    return 1;
}

/* BatchEnsemble's fast-weight init value (p7_tensor_fill_sign and its normal form). */
static int parse_fast_weight_init(const char *option, const char *text, float *out)
{
    double v;
    if (!parse_double(option, text, &v)) return 0;
    if (v > 1.0) {
        fprintf(stderr,
                "p7bench: %s %s: expected a value <= 1 (0 <= v <= 1: random signs with P(+1) = v; "
                "v < 0: N(1, |v|))\n",
                option, text);
        return 0;
    }
    *out = (float)v;
    return 1;
}

/* "--seeds 42,43,44": whole non-negative integers, at most P7BENCH_MAX_SEEDS. */
static int parse_seeds(const char *text, p7bench_train_options *t)
{
    const char *p = text;
    t->seed_count = 0;
    for (;;) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || end == p || *p == '-' || *p == '+' || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "p7bench: --seeds '%s': expected comma-separated integers >= 0 such as 42,43,44\n", text);
            return 0;
        }
        if (t->seed_count == P7BENCH_MAX_SEEDS) {
            fprintf(stderr, "p7bench: --seeds '%s': more than %d seeds\n", text, P7BENCH_MAX_SEEDS);
            return 0;
        }
        t->seeds[t->seed_count++] = v;
        if (*end == '\0') return 1;
        p = end + 1;
    }
}

/* "--faithful" alone: every switch; "--faithful=a,b": those of P7_FAITHFUL_LIST. */
static int parse_faithful(const char *arg, unsigned *out)
{
    if (strcmp(arg, "--faithful") == 0) {
        *out = P7_FAITHFUL_ALL;
        return 1;
    }
    const char *p = arg + strlen("--faithful=");
    *out = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        unsigned bit = 0;
#define P7BENCH_FAITHFUL_NAME(id, name, b, what) \
    if (len == strlen(name) && strncmp(p, name, len) == 0) bit = P7_FAITHFUL_##id;
        P7_FAITHFUL_LIST(P7BENCH_FAITHFUL_NAME)
#undef P7BENCH_FAITHFUL_NAME
        if (!bit) {
            fprintf(stderr, "p7bench: --faithful: no switch '%.*s'; the switches are:", (int)len, p);
#define P7BENCH_FAITHFUL_LIST(id, name, b, what) fprintf(stderr, " %s", name);
            P7_FAITHFUL_LIST(P7BENCH_FAITHFUL_LIST)
#undef P7BENCH_FAITHFUL_LIST
            fprintf(stderr, "\n");
            return 0;
        }
        *out |= bit;
        if (!comma) return 1;
        p = comma + 1;
    }
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

/* --model and the network flags into one p7_network_config; the build itself checks
 * ties and presets against the layout (on the device, but before any training). */
static int resolve_network(p7bench_train_options *t, int within_given, int between_given)
{
    p7_network_config *n = &t->network;
    if (strcmp(t->model, "vgg11-bn") == 0) {
        n->arch = P7_ARCH_VGG11;
        if (n->batchnorm < 0) n->batchnorm = 1;
    } else if (p7_arch_parse(t->model, &n->arch) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --model '%s': expected simple, heads, complex, vgg11, vgg11-bn or vgg11-10conv\n",
                t->model);
        return 1;
    }
    n->members = t->members;
    n->alpha_init = t->alpha_init;
    n->gamma_init = t->gamma_init;
    n->faithful = t->faithful;
    n->sharing = within_given && between_given ? P7_SHARING_COMBINED
                 : within_given              ? P7_SHARING_WITHIN
                 : between_given             ? P7_SHARING_BETWEEN
                                             : P7_SHARING_PLAIN;
    if (between_given && t->members < 2 && n->between != P7_SHARE_ALL) {
        fprintf(stderr, "p7bench: --between %s shares layers between ensemble members; give --members 2 or more\n",
                p7_share_name(n->between));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* Line-buffered even into a pipe or log, so the report and the per-epoch lines on
     * stderr stay in order. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "plot") == 0) return p7bench_plot_main(argc - 1, argv + 1);
    const char *spec = NULL, *gemm = NULL, *fast_weight_option = NULL;
    int self_check_only = 0, within_given = 0, between_given = 0;
    p7bench_train_options t = {.dataset = "cifar10", .model = "simple", .optimizer = "adam",
                               .out_csv = "results/p7bench.csv", .members = 1, .alpha_init = 0.5f,
                               .gamma_init = 0.5f, .epochs = 3, .batch = 128, .seeds = {42}, .seed_count = 1,
                               .max_loss = 1e4, .augment = -1, .bma_samples = -1,
                               .network = {.batchnorm = -1}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        long long n;
        if (strcmp(a, "--device") == 0 && v) spec = v;
        else if (strcmp(a, "--gemm") == 0 && v) gemm = v;
        else if (strcmp(a, "--optimizer") == 0 && v) t.optimizer = v;
        else if (strcmp(a, "--hparams") == 0 && v) t.hparams = v;
        else if (strcmp(a, "--data") == 0 && v) t.data_dir = v;
        else if (strcmp(a, "--dataset") == 0 && v) { t.dataset = v; t.dataset_given = 1; }
        else if (strcmp(a, "--model") == 0 && v) t.model = v;
        else if (strcmp(a, "--bn") == 0 && v) {
            if (strcmp(v, "on") == 0) t.network.batchnorm = 1;
            else if (strcmp(v, "off") == 0) t.network.batchnorm = 0;
            else {
                fprintf(stderr, "p7bench: --bn '%s': expected on or off\n", v);
                return 2;
            }
        }
        else if (strcmp(a, "--member-kind") == 0 && v) {
            if (strcmp(v, "be") == 0) t.network.member_kind = P7_MEMBERS_BATCHENSEMBLE;
            else if (strcmp(v, "independent") == 0) t.network.member_kind = P7_MEMBERS_INDEPENDENT;
            else {
                fprintf(stderr, "p7bench: --member-kind '%s': expected be or independent\n", v);
                return 2;
            }
        }
        else if ((strcmp(a, "--within") == 0 || strcmp(a, "--between") == 0) && v) {
            p7_share share;
            if (p7_share_parse(v, &share) != P7_SUCCESS) {
                fprintf(stderr, "p7bench: %s '%s': expected none, early, deep or all\n", a, v);
                return 2;
            }
            if (a[2] == 'w') { t.network.within = share; within_given = 1; }
            else { t.network.between = share; between_given = 1; }
        }
        else if (strcmp(a, "--tie") == 0 && v) t.network.tie = v;
        else if (strcmp(a, "--width") == 0 && v) {
            double w;
            if (!parse_double(a, v, &w) || !(w > 0 && w <= 1)) {
                fprintf(stderr, "p7bench: --width '%s': expected a number in (0, 1]\n", v);
                return 2;
            }
            t.network.width = (float)w;
        }
        else if (strcmp(a, "--members") == 0 && v) { if (!parse_int(a, v, 1, &n)) return 2; t.members = (int)n; }
        else if (strcmp(a, "--alpha") == 0 && v) { if (!parse_fast_weight_init(a, v, &t.alpha_init)) return 2; fast_weight_option = a; }
        else if (strcmp(a, "--gamma") == 0 && v) { if (!parse_fast_weight_init(a, v, &t.gamma_init)) return 2; fast_weight_option = a; }
        else if (strcmp(a, "--epochs") == 0 && v) { if (!parse_int(a, v, 1, &n)) return 2; t.epochs = (int)n; }
        else if (strcmp(a, "--batch") == 0 && v) { if (!parse_int(a, v, 1, &n)) return 2; t.batch = (int)n; }
        else if (strcmp(a, "--seed") == 0 && v) { if (!parse_int(a, v, 0, &n)) return 2; t.seeds[0] = (uint64_t)n; t.seed_count = 1; }
        else if (strcmp(a, "--seeds") == 0 && v) { if (!parse_seeds(v, &t)) return 2; }
        else if (strcmp(a, "--schedule") == 0 && v) t.schedule = v;
        else if (strcmp(a, "--clip") == 0 && v) {
            if (!parse_double(a, v, &t.clip) || t.clip < 0) {
                fprintf(stderr, "p7bench: --clip '%s': expected a number >= 0 (0: off)\n", v);
                return 2;
            }
        }
        else if (strcmp(a, "--patience") == 0 && v) { if (!parse_int(a, v, 0, &n)) return 2; t.patience = (int)n; }
        else if (strcmp(a, "--min-delta") == 0 && v) {
            if (!parse_double(a, v, &t.min_delta) || t.min_delta < 0) {
                fprintf(stderr, "p7bench: --min-delta '%s': expected a number >= 0\n", v);
                return 2;
            }
        }
        else if (strcmp(a, "--augment") == 0 && v) {
            if (strcmp(v, "on") == 0) t.augment = 1;
            else if (strcmp(v, "off") == 0) t.augment = 0;
            else {
                fprintf(stderr, "p7bench: --augment '%s': expected on or off\n", v);
                return 2;
            }
        }
        else if (strcmp(a, "--bma-samples") == 0 && v) { if (!parse_int(a, v, 0, &n)) return 2; t.bma_samples = (int)n; }
        else if (strcmp(a, "--limit") == 0 && v) { if (!parse_int(a, v, 1, &n)) return 2; t.limit = (size_t)n; }
        else if (strcmp(a, "--out") == 0 && v) t.out_csv = v;
        else if (strcmp(a, "--max-loss") == 0 && v) {
            if (!parse_double(a, v, &t.max_loss) || t.max_loss <= 0) {
                fprintf(stderr, "p7bench: --max-loss '%s': expected a positive number\n", v);
                return 2;
            }
        } else takes = 0;
        if (takes) { i++; continue; }
        if (strcmp(a, "--self-check") == 0) self_check_only = 1;
        else if (strcmp(a, "--faithful") == 0 || strncmp(a, "--faithful=", 11) == 0) {
            if (!parse_faithful(a, &t.faithful)) return 2;
        }
        else if (strcmp(a, "--list-devices") == 0) return list_devices();
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); return 0; }
        else {
            fprintf(stderr, "p7bench: unknown option, or an option without its value: '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }

    /* Every check that needs no device comes first: a typo costs milliseconds, not a device
     * start, a GEMM self-check and a data load. */
    if (strcmp(t.dataset, "cifar10") != 0 && strcmp(t.dataset, "cifar20") != 0 && strcmp(t.dataset, "synthetic") != 0) {
        fprintf(stderr, "p7bench: --dataset '%s': expected cifar10, cifar20 or synthetic\n", t.dataset);
        return 2;
    }
    if (resolve_network(&t, within_given, between_given) != 0) return 2;
    if (fast_weight_option && t.network.member_kind == P7_MEMBERS_INDEPENDENT) {
        fprintf(stderr, "p7bench: %s sets BatchEnsemble's fast weights, which independent members (--member-kind "
                        "independent) do not have; drop %s\n", fast_weight_option, fast_weight_option);
        return 2;
    }
    if (fast_weight_option && t.members < 2) {
        fprintf(stderr, "p7bench: %s sets BatchEnsemble's fast weights, which a plain network (--members %d) does not "
                        "have; give --members 2 or more, or drop %s\n",
                fast_weight_option, t.members, fast_weight_option);
        return 2;
    }
    if ((long long)t.members * t.batch > 65536) {
        fprintf(stderr, "p7bench: --members %d x --batch %d rows per step is more than 65536\n", t.members, t.batch);
        return 2;
    }
    p7_device_options opts = {0};
    if (gemm && p7_gemm_backend_parse(gemm, &opts.gemm) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --gemm: %s\n", p7_last_error());
        return 2;
    }
    p7bench_plan plan = {0};
    if (!self_check_only) {
        int rc = p7bench_resolve_recipe(&t);
        if (rc != 0) return rc;
        if (p7bench_prepare(&t, &plan) != 0) return 1;
    }

    p7_device *device = NULL;
    if (p7_device_open(spec, &opts, &device) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        p7bench_plan_release(&plan);
        return 1;
    }
    printf("p7bench: device %s\n", p7_device_describe(device));
    if (*p7_device_note(device)) fprintf(stderr, "p7bench: note: %s\n", p7_device_note(device));
    printf("p7bench: GEMM self-check (VGG11 conv shapes at batch 4, NaN-prefilled output, float64 reference)\n");
    int ok = 1;
    const p7_gemm_backend backends[2] = {p7_device_gemm_backend(device),
                                         p7_device_gemm_backend(device) == P7_GEMM_P7 ? P7_GEMM_CLBLAST : P7_GEMM_P7};
    for (int bi = 0; bi < 2; bi++) {
        ok &= gemm_check(device, backends[bi], 0, 0, 128, 1024, 576);  /* L2 forward */
        ok &= gemm_check(device, backends[bi], 1, 0, 576, 1024, 128);  /* L2 data gradient */
        ok &= gemm_check(device, backends[bi], 0, 1, 128, 576, 1024);  /* L2 weight gradient */
        ok &= gemm_check(device, backends[bi], 0, 0, 33, 7, 1000);     /* odd sizes */
    }
    printf("p7bench: GEMM self-check %s\n", ok ? "passed" : "FAILED");
    int rc = ok ? P7BENCH_OK : P7BENCH_FAILED;
    if (ok && !self_check_only) rc = p7bench_train(device, &t, &plan);
    p7bench_plan_release(&plan);
    p7_device_close(device);
    return rc;
}
