/* p7-conv: per-layer time of conv2d forward and backward on the VGG11 convolutions at
 * batch 128 (im2col, GEMM, layout copies and col2im included), with the device-time
 * breakdown by kernel label from OpenCL profiling events, so it shows where the time
 * of a training step's convolutions goes.
 *
 * usage: p7-conv [--device SPEC] [--batch N] [--reps R] [--gemm auto|p7|clblast] [--layer I]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/conv2d_internal.h"
#include "ops/op_kernels.h"
#include "p7/p7.h"
#include "bench_clock.h"

typedef struct layer { const char *name; int c, o, hw; } layer;

static const layer vgg11[] = {
    {"L1 3->64 @32", 3, 64, 32},      {"L2 64->128 @16", 64, 128, 16},  {"L3 128->256 @8", 128, 256, 8},
    {"L4 256->256 @8", 256, 256, 8},  {"L5 256->512 @4", 256, 512, 4},  {"L6 512->512 @4", 512, 512, 4},
    {"L7 512->512 @2", 512, 512, 2},  {"L8 512->512 @2", 512, 512, 2},
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

#define CHECK(call)                                                                              \
    do {                                                                                         \
        p7_status st_ = (call);                                                                  \
        if (st_ != P7_SUCCESS) {                                                                 \
            fprintf(stderr, "p7-conv: %s failed: %s: %s\n", #call, p7_status_string(st_), p7_last_error()); \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)

/* Prints "label ms" pairs of one phase, averaged over reps. */
static int print_breakdown(p7_device *device, int reps)
{
    p7_profile_row rows[32];
    size_t count = 0;
    CHECK(p7_profile_collect(device, rows, 32, &count));
    if (count > 32) count = 32;
    for (size_t i = 0; i < count; i++)
        printf("%s %s %.2f", i ? "," : "", rows[i].label, rows[i].total_ms / reps);
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *spec = getenv("P7_DEVICE");
    int batch = 128, reps = 3, only = -1;
    p7_gemm_backend backend = P7_GEMM_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) spec = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--layer") && i + 1 < argc) only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gemm") && i + 1 < argc) {
            if (p7_gemm_backend_parse(argv[++i], &backend) != P7_SUCCESS) {
                fprintf(stderr, "p7-conv: %s\n", p7_last_error());
                return 2;
            }
        } else {
            fprintf(stderr, "usage: p7-conv [--device SPEC] [--batch N] [--reps R] [--gemm auto|p7|clblast] [--layer I]\n");
            return 2;
        }
    }
    if (batch < 1 || reps < 1) return 2;

    p7_device_options opts;
    memset(&opts, 0, sizeof opts);
    opts.profiling = 1;
    opts.gemm = backend;
    p7_device *device;
    CHECK(p7_device_open(spec ? spec : "pocl", &opts, &device));
    printf("device: %s\nbatch %d, median of %d reps after one warm-up; breakdown = device ms per call by kernel label\n",
           p7_device_describe(device), batch, reps);
    printf("%-16s %9s %9s %9s %9s\n", "layer", "fwd ms", "GFLOP/s", "bwd ms", "GFLOP/s");

    double sum_fwd = 0, sum_bwd = 0, flop_fwd = 0, flop_bwd = 0;
    for (size_t li = 0; li < sizeof vgg11 / sizeof vgg11[0]; li++) {
        if (only >= 0 && (size_t)only != li) continue;
        const layer *l = &vgg11[li];
        int64_t xs[4] = {batch, l->c, l->hw, l->hw}, ws[4] = {l->o, l->c, 3, 3};
        int64_t ys[4] = {batch, l->o, l->hw, l->hw}, bs[1] = {l->o};
        p7_tensor *x, *w, *b, *y, *dy, *dx, *dw, *db;
        CHECK(p7_tensor_create(device, 4, xs, &x));
        CHECK(p7_tensor_create(device, 4, ws, &w));
        CHECK(p7_tensor_create(device, 1, bs, &b));
        CHECK(p7_tensor_create(device, 4, ys, &y));
        CHECK(p7_tensor_create(device, 4, ys, &dy));
        CHECK(p7_tensor_create(device, 4, xs, &dx));
        CHECK(p7_tensor_create(device, 4, ws, &dw));
        CHECK(p7_tensor_create(device, 1, bs, &db));
        CHECK(p7_tensor_fill(x, 0.5f));
        CHECK(p7_tensor_fill(w, 0.01f));
        CHECK(p7_tensor_fill(b, 0.1f));
        CHECK(p7_tensor_fill(dy, 0.25f));
        /* The first layer's input gradient is never needed in training. */
        p7_tensor *want_dx = li == 0 ? NULL : dx;

        double flop = 2.0 * l->o * (9.0 * l->c) * ((double)batch * l->hw * l->hw);
        double fb = want_dx ? 2.0 * flop : flop;

        /* warm-up: builds programs, fills the allocator cache */
        CHECK(p7_conv2d_forward(x, w, b, 1, 1, y));
        CHECK(p7_conv2d_backward(x, w, dy, 1, 1, want_dx, 0, dw, 0, db, 0));
        CHECK(p7_device_finish(device));
        p7_profile_row scratch[32];
        size_t nrows;
        CHECK(p7_profile_collect(device, scratch, 32, &nrows));

        double tf[64], tb[64];
        int r = reps > 64 ? 64 : reps;
        for (int i = 0; i < r; i++) {
            double t0 = now_ms();
            CHECK(p7_conv2d_forward(x, w, b, 1, 1, y));
            CHECK(p7_device_finish(device));
            tf[i] = now_ms() - t0;
        }
        qsort(tf, (size_t)r, sizeof *tf, bench_cmp_double);
        printf("%-16s %9.2f %9.1f", l->name, tf[r / 2], flop / (tf[r / 2] * 1e6));
        /* hold the forward breakdown until the backward's numbers are printed */
        p7_profile_row fwd_rows[32];
        size_t fwd_count = 0;
        CHECK(p7_profile_collect(device, fwd_rows, 32, &fwd_count));
        if (fwd_count > 32) fwd_count = 32;

        for (int i = 0; i < r; i++) {
            double t0 = now_ms();
            CHECK(p7_conv2d_backward(x, w, dy, 1, 1, want_dx, 0, dw, 0, db, 0));
            CHECK(p7_device_finish(device));
            tb[i] = now_ms() - t0;
        }
        qsort(tb, (size_t)r, sizeof *tb, bench_cmp_double);
        printf(" %9.2f %9.1f%s\n", tb[r / 2], fb / (tb[r / 2] * 1e6), want_dx ? "" : "  (no dx)");
        printf("  fwd:");
        for (size_t i = 0; i < fwd_count; i++)
            printf("%s %s %.2f", i ? "," : "", fwd_rows[i].label, fwd_rows[i].total_ms / r);
        printf("\n  bwd:");
        if (print_breakdown(device, r)) return 1;

        /* What im2col into the GEMM's B panels (no pack_b pass) costs on this layer. */
        size_t floats = p7_conv2d_packed_col_floats(x, 3, 1, 1);
        p7_buffer *bp;
        CHECK(p7_buffer_alloc(device, floats * sizeof(float), &bp));
        double tp[64];
        for (int i = 0; i <= r; i++) {
            double t0 = now_ms();
            CHECK(p7_conv2d_im2col_packed(x, 3, 1, 1, p7_buffer_mem(bp), 0));
            CHECK(p7_device_finish(device));
            if (i) tp[i - 1] = now_ms() - t0; /* the first call builds the kernel */
        }
        qsort(tp, (size_t)r, sizeof *tp, bench_cmp_double);
        CHECK(p7_profile_collect(device, scratch, 32, &nrows));
        p7_buffer_free(bp);
        printf("  im2col straight into B panels (proposal, replaces im2col + pack_b): %.2f ms wall\n", tp[r / 2]);

        sum_fwd += tf[r / 2];
        sum_bwd += tb[r / 2];
        flop_fwd += flop;
        flop_bwd += fb;
        p7_tensor_release(x); p7_tensor_release(w); p7_tensor_release(b); p7_tensor_release(y);
        p7_tensor_release(dy); p7_tensor_release(dx); p7_tensor_release(dw); p7_tensor_release(db);
    }
    printf("%-16s %9.2f %9.1f %9.2f %9.1f\n", "all convs", sum_fwd, flop_fwd / (sum_fwd * 1e6), sum_bwd,
           flop_bwd / (sum_bwd * 1e6));
    printf("conv fwd+bwd per step: %.1f ms (%.1f GFLOP/s); at batch %d that bounds training at %.0f img/s\n",
           sum_fwd + sum_bwd, (flop_fwd + flop_bwd) / ((sum_fwd + sum_bwd) * 1e6), batch,
           batch * 1e3 / (sum_fwd + sum_bwd));
    p7_device_close(device);
    return 0;
}
