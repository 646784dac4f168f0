/* p7-gemm: p7's own GEMM backend against CLBlast (through the same p7_gemm_with
 * entry point) and OpenBLAS on the host, side by side in one run, on the VGG11
 * im2col shapes of ../shared/reference/perf-baseline.md section 3 (batch 128) and a square 1024.
 *
 * Each backend runs once as a warm-up (that call also builds its kernels) and is
 * checked against OpenBLAS with C prefilled with NaN; then it is timed in reps of
 * back-to-back calls lasting at least a minimum time each, ending with
 * p7_device_finish, and the median rep is reported. p7's time includes its packing
 * passes and CLBlast's its pad/copy kernels: both are part of one GEMM call.
 *
 *   p7-gemm [--device SPEC] [--quick] [--no-clblast] [--shapes fwd|all]
 *
 * Exits 1 when a backend gives a wrong result or fails, 2 on bad usage.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "p7/device.h"
#include "p7/gemm.h"
#include "p7/status.h"
#include "p7/tensor.h"
#include "bench_clock.h"

/* OpenBLAS's own extension; declared here because not every cblas.h carries it. */
void openblas_set_num_threads(int num_threads);

typedef struct shape {
    const char *name;
    int forward;
    int ta, tb;
    size_t m, n, k;
} shape;

static const shape shapes[] = {
    {"L1 fwd", 1, 0, 0, 64, 131072, 27},     {"L2 fwd", 1, 0, 0, 128, 32768, 576},
    {"L3 fwd", 1, 0, 0, 256, 8192, 1152},    {"L4 fwd", 1, 0, 0, 256, 8192, 2304},
    {"L5 fwd", 1, 0, 0, 512, 2048, 2304},    {"L6 fwd", 1, 0, 0, 512, 2048, 4608},
    {"L7/8 fwd", 1, 0, 0, 512, 512, 4608},   {"L2 bwdD", 0, 1, 0, 576, 32768, 128},
    {"L4 bwdD", 0, 1, 0, 2304, 8192, 256},   {"L6 bwdD", 0, 1, 0, 4608, 2048, 512},
    {"L2 bwdW", 0, 0, 1, 128, 576, 32768},   {"L4 bwdW", 0, 0, 1, 256, 2304, 8192},
    {"L6 bwdW", 0, 0, 1, 512, 4608, 2048},   {"square 1024", 0, 0, 0, 1024, 1024, 1024},
};
enum { SHAPE_COUNT = sizeof shapes / sizeof *shapes };

/* Worse than this relative to max |C| is a wrong result: float32 sums over K up to
 * 32768 stay near 1e-5 (../shared/reference/perf-baseline.md), a skipped or misplaced element is O(1). */
static const double max_rel_error = 1e-4;

enum { MAX_REPS = 16 };

typedef struct settings {
    const char *device;
    int quick, clblast, all_shapes;
    double min_seconds;
    int reps;
} settings;

static int report_failure(const char *what, p7_status st)
{
    fprintf(stderr, "p7-gemm: %s failed: %s: %s\n", what, p7_status_string(st), p7_last_error());
    return 1;
}

/* max |x - ref| / max |ref|; NaN anywhere in x counts as infinitely wrong. */
static double relative_error(const float *x, const float *ref, size_t n)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) return INFINITY;
        double d = fabs((double)x[i] - (double)ref[i]);
        if (d > diff) diff = d;
        if (fabs((double)ref[i]) > scale) scale = fabs((double)ref[i]);
    }
    return diff / (scale > 0.0 ? scale : 1.0);
}

typedef struct operands {
    const shape *s;
    p7_gemm_desc desc;
    const float *a, *b; /* host copies, for OpenBLAS */
    float *c_host;
    p7_tensor *ta, *tb, *tc;
} operands;

static void run_openblas(const operands *o, float *c)
{
    const p7_gemm_desc *d = &o->desc;
    cblas_sgemm(CblasRowMajor, d->trans_a ? CblasTrans : CblasNoTrans, d->trans_b ? CblasTrans : CblasNoTrans,
                (int)d->m, (int)d->n, (int)d->k, d->alpha, o->a, (int)d->lda, o->b, (int)d->ldb, d->beta, c,
                (int)d->ldc);
}

static p7_status run_p7(p7_device *dev, p7_gemm_backend backend, const operands *o)
{
    return p7_gemm_with(dev, backend, &o->desc, p7_tensor_mem(o->ta), p7_tensor_mem(o->tb),
                        p7_tensor_mem(o->tc));
}

/* GFLOP/s of one rep of one backend (backend < 0: OpenBLAS): as many back-to-back
 * calls as fit in the minimum time. */
static p7_status time_rep(p7_device *dev, int backend, const operands *o, const settings *cfg, double *gflops)
{
    const double flop = 2.0 * (double)o->desc.m * (double)o->desc.n * (double)o->desc.k;
    long calls = 0;
    double start = bench_now_s(), elapsed;
    do {
        if (backend < 0) {
            run_openblas(o, o->c_host);
        } else {
            p7_status st = run_p7(dev, (p7_gemm_backend)backend, o);
            /* A wait after every call (25-50 us) is small against one GEMM (ms) and
             * keeps queued work from leaking out of the measured time. */
            if (st == P7_SUCCESS) st = p7_device_finish(dev);
            if (st != P7_SUCCESS) return st;
        }
        calls++;
        elapsed = bench_now_s() - start;
    } while (elapsed < cfg->min_seconds);
    *gflops = flop * (double)calls / elapsed * 1e-9;
    return P7_SUCCESS;
}

/* Warm-up call on NaN-filled C, compared with the OpenBLAS reference. */
static p7_status check_backend(p7_gemm_backend backend, p7_device *dev, const operands *o, const float *ref,
                               const float *nan_c, float *out, double *err)
{
    size_t nc = o->desc.m * o->desc.n;
    p7_status st = p7_tensor_upload(o->tc, nan_c, nc);
    if (st == P7_SUCCESS) st = run_p7(dev, backend, o);
    if (st == P7_SUCCESS) st = p7_tensor_download(o->tc, out, nc);
    if (st == P7_SUCCESS) *err = relative_error(out, ref, nc);
    return st;
}

static p7_tensor *upload(p7_device *dev, const float *host, size_t n, p7_status *st)
{
    int64_t extent = (int64_t)n;
    p7_tensor *t = NULL;
    *st = p7_tensor_create(dev, 1, &extent, &t);
    if (*st == P7_SUCCESS) *st = p7_tensor_upload(t, host, n);
    return t;
}

static float random_unit(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*state >> 40) & 0xffffff) / (float)0x1000000 - 0.5f;
}

/* The host CPU's model name and its widest vector extension, from /proc/cpuinfo
 * ("unknown" elsewhere): the GEMM's tiling depends on it. */
static void describe_cpu(char *model, size_t model_size, const char **vectors)
{
    snprintf(model, model_size, "unknown");
    *vectors = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[4096];
    int have_model = 0, have_flags = 0;
    while (fgets(line, sizeof line, f) && !(have_model && have_flags)) {
        if (!have_model && strncmp(line, "model name", 10) == 0) {
            const char *v = strchr(line, ':');
            if (v) {
                snprintf(model, model_size, "%s", v + 2);
                model[strcspn(model, "\n")] = '\0';
                have_model = 1;
            }
        } else if (!have_flags && strncmp(line, "flags", 5) == 0) {
            *vectors = strstr(line, " avx512f") ? "AVX-512 (avx512f)" : strstr(line, " avx2") ? "AVX2, no AVX-512"
                                                                                             : "no AVX2";
            have_flags = 1;
        }
    }
    fclose(f);
}

static void usage(void)
{
    fprintf(stderr, "usage: p7-gemm [--device SPEC] [--quick] [--no-clblast] [--shapes fwd|all]\n");
}

int main(int argc, char **argv)
{
    settings cfg = {NULL, 0, 1, 1, 0.3, 5};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            cfg.device = argv[++i];
        } else if (strcmp(argv[i], "--quick") == 0) {
            cfg.quick = 1;
        } else if (strcmp(argv[i], "--no-clblast") == 0) {
            cfg.clblast = 0;
        } else if (strcmp(argv[i], "--shapes") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "fwd") == 0) cfg.all_shapes = 0;
            else if (strcmp(v, "all") == 0) cfg.all_shapes = 1;
            else { usage(); return 2; }
        } else {
            usage();
            return 2;
        }
    }
    if (cfg.quick) {
        cfg.min_seconds = 0.05;
        cfg.reps = 3;
    }

    p7_device *dev = NULL;
    p7_status st = p7_device_open(cfg.device, NULL, &dev);
    if (st != P7_SUCCESS) return report_failure("p7_device_open", st);
    openblas_set_num_threads(2);

    printf("# p7-gemm: C = A*B, float32, row-major, alpha 1, beta 0\n");
    printf("device: %s\n", p7_device_describe(dev));
    char cpu[256];
    const char *vectors;
    describe_cpu(cpu, sizeof cpu, &vectors);
    printf("host CPU: %s, %s\n", cpu, vectors);
    /* Resolving the tiling may measure it (first use, P7_GEMM_TUNING=auto): before any timing. */
    p7_gemm_tuning tuning;
    double t0 = bench_now_s();
    st = p7_gemm_tuning_get(dev, &tuning);
    if (st != P7_SUCCESS) return report_failure("p7_gemm_tuning_get", st);
    printf("p7 GEMM tiling: tile %dx%d, vector width %d, kc %d, %s", tuning.tile_rows, tuning.tile_cols,
           tuning.vector_width, tuning.k_block, p7_gemm_tuning_origin_name(tuning.origin));
    if (tuning.gflops > 0.0) printf(" (%.1f GFLOP/s on the tuning shapes)", tuning.gflops);
    printf("; resolved in %.2f s%s%s\n", bench_now_s() - t0, tuning.path[0] ? ", file " : "", tuning.path);
    if (tuning.note[0]) printf("tiling note: %s\n", tuning.note);
    printf("OpenBLAS: 2 threads; timing: median of %d rep(s) of >= %.2f s each, after a checked warm-up call\n\n",
           cfg.reps, cfg.min_seconds);
    printf("| shape | M | N | K | p7 GFLOP/s | CLBlast GFLOP/s | OpenBLAS GFLOP/s | p7/OpenBLAS | p7/CLBlast "
           "| p7 rel. err | CLBlast rel. err |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);

    double ratio_blas[SHAPE_COUNT], ratio_clb[SHAPE_COUNT];
    int count = 0, wrong = 0, failed = 0;
    for (size_t si = 0; si < SHAPE_COUNT && !failed; si++) {
        const shape *s = &shapes[si];
        if (!cfg.all_shapes && !s->forward) continue;
        operands o = {s, p7_gemm_desc_packed(s->ta, s->tb, s->m, s->n, s->k, 1.0f, 0.0f), NULL, NULL, NULL,
                      NULL, NULL, NULL};
        size_t na = s->m * s->k, nb = s->k * s->n, nc = s->m * s->n;
        float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
        float *ref = malloc(nc * sizeof *ref), *out = malloc(nc * sizeof *out), *nan_c = malloc(nc * sizeof *nan_c);
        o.c_host = malloc(nc * sizeof *o.c_host);
        if (!a || !b || !ref || !out || !nan_c || !o.c_host) {
            fprintf(stderr, "p7-gemm: out of host memory for %s\n", s->name);
            failed = 1;
        } else {
            uint64_t seed = 0x9e3779b97f4a7c15ULL + si;
            for (size_t i = 0; i < na; i++) a[i] = random_unit(&seed);
            for (size_t i = 0; i < nb; i++) b[i] = random_unit(&seed);
            for (size_t i = 0; i < nc; i++) nan_c[i] = NAN;
            o.a = a;
            o.b = b;
            run_openblas(&o, ref);
            o.ta = upload(dev, a, na, &st);
            if (st == P7_SUCCESS) o.tb = upload(dev, b, nb, &st);
            if (st == P7_SUCCESS) o.tc = upload(dev, nan_c, nc, &st);
            if (st != P7_SUCCESS) failed = report_failure("tensor upload", st);
        }

        double g_p7 = NAN, g_clb = NAN, g_blas = NAN, e_p7 = NAN, e_clb = NAN;
        if (!failed) {
            st = check_backend(P7_GEMM_P7, dev, &o, ref, nan_c, out, &e_p7);
            if (st != P7_SUCCESS) failed = report_failure("p7 backend", st);
        }
        if (!failed && cfg.clblast) {
            st = check_backend(P7_GEMM_CLBLAST, dev, &o, ref, nan_c, out, &e_clb);
            if (st != P7_SUCCESS) failed = report_failure("CLBlast backend", st);
        }
        if (!failed) {
            /* Reps alternate between the backends, so load from elsewhere on the
             * machine (it has 2 cores) hits all three alike and the ratios stay fair. */
            double r_p7[MAX_REPS], r_clb[MAX_REPS], r_blas[MAX_REPS];
            run_openblas(&o, o.c_host); /* first touch of c_host, thread start-up */
            for (int r = 0; r < cfg.reps && !failed; r++) {
                st = time_rep(dev, P7_GEMM_P7, &o, &cfg, &r_p7[r]);
                if (st != P7_SUCCESS) failed = report_failure("p7 backend", st);
                if (!failed && cfg.clblast) {
                    st = time_rep(dev, P7_GEMM_CLBLAST, &o, &cfg, &r_clb[r]);
                    if (st != P7_SUCCESS) failed = report_failure("CLBlast backend", st);
                }
                if (!failed) time_rep(dev, -1, &o, &cfg, &r_blas[r]);
            }
            if (!failed) {
                g_p7 = bench_median(r_p7, cfg.reps);
                if (cfg.clblast) g_clb = bench_median(r_clb, cfg.reps);
                g_blas = bench_median(r_blas, cfg.reps);
            }
        }
        if (!failed) {
            int bad = !(e_p7 <= max_rel_error) || (cfg.clblast && !(e_clb <= max_rel_error));
            wrong |= bad;
            ratio_blas[count] = g_p7 / g_blas;
            ratio_clb[count] = g_p7 / g_clb;
            count++;
            char clb[3][24] = {"-", "-", "-"};
            if (cfg.clblast) {
                snprintf(clb[0], sizeof clb[0], "%.1f", g_clb);
                snprintf(clb[1], sizeof clb[1], "%.2f", g_p7 / g_clb);
                snprintf(clb[2], sizeof clb[2], "%.1e", e_clb);
            }
            printf("| %s | %zu | %zu | %zu | %.1f | %s | %.1f | %.2f | %s | %.1e | %s |%s\n", s->name, s->m, s->n,
                   s->k, g_p7, clb[0], g_blas, g_p7 / g_blas, clb[1], e_p7, clb[2], bad ? " **WRONG**" : "");
            fflush(stdout);
        }
        p7_tensor_release(o.ta);
        p7_tensor_release(o.tb);
        p7_tensor_release(o.tc);
        free(a);
        free(b);
        free(ref);
        free(out);
        free(nan_c);
        free(o.c_host);
    }

    if (count > 0) {
        printf("\nmedian over %d shapes: p7/OpenBLAS %.2f", count, bench_median(ratio_blas, count));
        if (cfg.clblast) printf(", p7/CLBlast %.2f", bench_median(ratio_clb, count));
        printf("\n");
    }
    if (wrong) fprintf(stderr, "p7-gemm: a result differs from OpenBLAS by more than %.0e (relative)\n", max_rel_error);
    p7_device_close(dev);
    return (wrong || failed) ? 1 : 0;
}
