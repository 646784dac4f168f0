/* A readable profile of a timed loop of p7 steps: device time per op kind and per
 * kernel label (OpenCL profiling events, p7_profile_collect), the host's share (wall
 * time minus device time), and the convolution/GEMM FLOPs against an estimate of the
 * CPU's FMA peak. Bench programs call it; p7bench --profile can link it the same way. */
#ifndef P7_BENCH_PROFILE_H
#define P7_BENCH_PROFILE_H

#include <stddef.h>
#include <stdio.h>

#include "p7/p7.h"

/* The FP32 FMA peak of the CPU, estimated from /proc/cpuinfo: cores x FMA pipes x
 * vector lanes x 2 x clock. The clock is cpuinfo's "cpu MHz", which on VMs and with
 * turbo is often the nominal clock, not the one the cores run at: an estimate. */
typedef struct bench_cpu_peak {
    double gflops;          /* 0 when nothing could be read */
    double ghz;
    int cores;
    int lanes;              /* FP32 lanes per FMA pipe: 16 (512-bit), 8 (256-bit), 4 */
    int pipes;              /* FMA pipes per core (assumed: 2 on every x86 core with FMA) */
    char cpu[128];          /* cpuinfo's model name */
    char isa[32];           /* "AVX-512", "AVX-512 (256-bit datapath)", "AVX2+FMA", "SSE" */
} bench_cpu_peak;

/* Reads /proc/cpuinfo (or `cpuinfo_path` when not NULL, for tests); cores <= 0 means
 * every processor listed. Returns 0 on success, -1 when the file cannot be read. */
int bench_cpu_peak_estimate(const char *cpuinfo_path, int cores, bench_cpu_peak *out);

/* One line: "~N GFLOP/s = C cores x P FMA x L lanes x 2 x G GHz (ISA, cpuinfo clock; an estimate)". */
void bench_cpu_peak_describe(const bench_cpu_peak *peak, char *buf, size_t size);

/* Multiply-adds x 2 of the convolutions and linear layers of one step of a zoo network
 * (p7_model_build's plans: 3x3 convs with padding 1 on 32x32 images, 2x2 pools, the
 * width multiplier rounded as the zoo rounds it) for `batch` images, counted from the
 * layer shapes. A layer the members share runs on the batch once, a per-member layer
 * (BatchEnsemble or a member's copy) on every member's rows. Training counts forward,
 * weight gradient and input gradient, less the first conv's input gradient, which
 * nothing needs. BatchEnsemble's rank-1 factors, BatchNorm and pools are not counted;
 * the faithful sharing modules are counted as their plain layout. */
double bench_network_flops(const p7_network_config *config, int batch, int training);

/* What one timed loop measured, for bench_profile_print. */
typedef struct bench_profile_input {
    const p7_profile_row *rows;   /* p7_profile_collect over exactly the timed steps */
    size_t count;
    int steps;                    /* the timed steps the rows cover */
    double wall_s;                /* their total wall time (host clock, each step ended with a finish) */
    double gemm_flops_per_step;   /* FLOPs of the convolutions and linear layers in one step */
    const bench_cpu_peak *peak;   /* may be NULL or have gflops 0: no share of peak */
} bench_profile_input;

/* Markdown tables: per op kind (the label's part before '.'), per layer when the labels
 * name one (a device opened with profiling = 2: "conv3/gemm_p7.tile"), the 40 largest
 * kernel labels, then wall / device / host time per step and the FLOP rates. */
void bench_profile_print(FILE *out, const bench_profile_input *in);

#endif
