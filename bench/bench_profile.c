/* See bench_profile.h. */
#include "bench_profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int has_flag(const char *flags, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = flags; (p = strstr(p, flag)) != NULL; p += n)
        if ((p == flags || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static const char *field_value(const char *line)
{
    const char *colon = strchr(line, ':');
    if (!colon) return "";
    colon++;
    while (*colon == ' ' || *colon == '\t') colon++;
    return colon;
}

int bench_cpu_peak_estimate(const char *cpuinfo_path, int cores, bench_cpu_peak *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(cpuinfo_path ? cpuinfo_path : "/proc/cpuinfo", "r");
    if (!f) return -1;
    char line[8192], flags[8192] = "", vendor[64] = "";
    int processors = 0, family = 0;
    double mhz = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "processor", 9)) processors++;
        else if (!strncmp(line, "model name", 10) && !out->cpu[0])
            snprintf(out->cpu, sizeof out->cpu, "%.*s", (int)strcspn(field_value(line), "\n"), field_value(line));
        else if (!strncmp(line, "vendor_id", 9) && !vendor[0])
            snprintf(vendor, sizeof vendor, "%.*s", (int)strcspn(field_value(line), "\n"), field_value(line));
        else if (!strncmp(line, "cpu family", 10) && !family) family = atoi(field_value(line));
        else if (!strncmp(line, "cpu MHz", 7) && mhz == 0) mhz = atof(field_value(line));
        else if (!strncmp(line, "flags", 5) && !flags[0]) snprintf(flags, sizeof flags, "%s", field_value(line));
    }
    fclose(f);
    out->cores = cores > 0 ? cores : processors;
    out->ghz = mhz / 1000.0;
    out->pipes = 2;
    if (has_flag(flags, "avx512f")) {
        /* Zen 4 (AMD family 25) executes 512-bit FMAs on 256-bit pipes; Zen 5 and Intel's
         * server cores have 512-bit pipes (some Intel parts only one: hence "estimate"). */
        const int amd_zen4 = !strcmp(vendor, "AuthenticAMD") && family == 25;
        out->lanes = amd_zen4 ? 8 : 16;
        snprintf(out->isa, sizeof out->isa, "%s", amd_zen4 ? "AVX-512 (256-bit datapath)" : "AVX-512");
    } else if (has_flag(flags, "avx2") && has_flag(flags, "fma")) {
        out->lanes = 8;
        snprintf(out->isa, sizeof out->isa, "AVX2+FMA");
    } else {
        out->lanes = 4;
        out->pipes = 1;
        snprintf(out->isa, sizeof out->isa, "SSE (no FMA)");
    }
    out->gflops = out->cores * out->pipes * out->lanes * 2.0 * out->ghz;
    return 0;
}

void bench_cpu_peak_describe(const bench_cpu_peak *p, char *buf, size_t size)
{
    if (!p || p->gflops <= 0) {
        snprintf(buf, size, "unknown (cpuinfo unreadable, or without a clock)");
        return;
    }
    snprintf(buf, size,
             "~%.0f GFLOP/s = %d cores x %d FMA pipes x %d lanes x 2 x %.2f GHz (%s, %s; cpuinfo's clock, "
             "often the nominal one: an estimate)",
             p->gflops, p->cores, p->pipes, p->lanes, p->ghz, p->isa, p->cpu);
}

/* The zoo's channel count at the config's width (nn_zoo_plan.c's rounding). */
static int scaled_width(const p7_network_config *c, int channels)
{
    if (c->width <= 0.0f || c->width == 1.0f) return channels;
    const int scaled = (int)lroundf((float)channels * c->width);
    return scaled < 1 ? 1 : scaled;
}

double bench_network_flops(const p7_network_config *c, int batch, int training)
{
    /* channels per conv, 0 = a 2x2 max-pool (nn_zoo_simple.c, nn_zoo_vgg.c) */
    static const int simple_plan[] = {32, 0, 64, 0};
    static const int vgg_plan[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
    static const int ten_conv_plan[] = {64, 64, 0, 128, 0, 256, 256, 256, 0, 512, 512, 0, 512, 512, 0};
    const int simple = c->arch == P7_ARCH_SIMPLE || c->arch == P7_ARCH_HEADS;
    const int *plan = simple ? simple_plan : c->arch == P7_ARCH_VGG11_10CONV ? ten_conv_plan : vgg_plan;
    const size_t n = simple ? 4 : c->arch == P7_ARCH_VGG11_10CONV ? 15 : 13;
    const int members = c->between == P7_SHARE_ALL || c->members < 1 ? 1 : c->members;
    /* the heads model's trunk is shared by independent heads; between-member sharing
     * shares the convs up to the second pool (early) or after it (deep) */
    const int heads_shared = c->arch == P7_ARCH_HEADS && members > 1 && c->member_kind == P7_MEMBERS_INDEPENDENT;
    const double one = (double)batch, all = (double)batch * members;
    double fwd = 0, first = 0;
    int channels = 3, hw = 32, stage = 0;
    for (size_t i = 0; i < n; i++) {
        if (!plan[i]) {
            hw /= 2;
            stage++;
            continue;
        }
        const int out = scaled_width(c, plan[i]);
        const int shared = heads_shared || (members > 1 && ((c->between == P7_SHARE_EARLY && stage <= 1) ||
                                                             (c->between == P7_SHARE_DEEP && stage > 1)));
        const double f = 2.0 * (shared ? one : all) * hw * hw * (double)out * channels * 9;
        if (fwd == 0) first = f;
        fwd += f;
        channels = out;
    }
    const double features = (double)channels * hw * hw;
    if (c->arch == P7_ARCH_HEADS) {
        const int hidden = scaled_width(c, 128);
        fwd += 2.0 * (heads_shared ? one : all) * features * hidden + 2.0 * all * hidden * c->classes;
    } else if (c->arch == P7_ARCH_COMPLEX) {
        const int hidden = scaled_width(c, 512);
        fwd += 2.0 * all * (features * hidden + (double)hidden * c->classes);
    } else {
        fwd += 2.0 * all * features * c->classes;
    }
    return training ? 3 * fwd - first : fwd;
}

typedef struct kind_row {
    char kind[48];
    double launches, ms;
} kind_row;

static int kind_by_ms_desc(const void *a, const void *b)
{
    double x = ((const kind_row *)a)->ms, y = ((const kind_row *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Adds a row's time to the group named `name` (found or appended). */
static void add_to_group(kind_row *groups, size_t *n, const char *name, const p7_profile_row *r)
{
    size_t j = 0;
    while (j < *n && strcmp(groups[j].kind, name) != 0) j++;
    if (j == *n) snprintf(groups[(*n)++].kind, sizeof groups->kind, "%s", name);
    groups[j].launches += (double)r->launches;
    groups[j].ms += r->total_ms;
}

static void print_groups(FILE *out, kind_row *groups, size_t n, const char *title, const char *column, int steps,
                         double total)
{
    qsort(groups, n, sizeof *groups, kind_by_ms_desc);
    fprintf(out, "\n%s (%d steps; ms per step):\n\n", title, steps);
    fprintf(out, "| %s | launches/step | ms/step | share of device time |\n|---|---:|---:|---:|\n", column);
    for (size_t j = 0; j < n; j++)
        fprintf(out, "| %s | %.0f | %.2f | %.1f%% |\n", groups[j].kind, groups[j].launches / steps,
                groups[j].ms / steps, 100.0 * groups[j].ms / total);
}

void bench_profile_print(FILE *out, const bench_profile_input *in)
{
    const int steps = in->steps > 0 ? in->steps : 1;
    double device_ms = 0, gemm_ms = 0;
    /* A label is "op.kernel", or "layer/op.kernel" from a device profiling per layer. */
    kind_row *kinds = calloc(in->count + 1, sizeof *kinds), *layers = calloc(in->count + 1, sizeof *layers);
    size_t nk = 0, nl = 0;
    int scoped = 0;
    for (size_t i = 0; i < in->count; i++) {
        const p7_profile_row *r = &in->rows[i];
        const char *slash = strchr(r->label, '/'), *op = slash ? slash + 1 : r->label;
        device_ms += r->total_ms;
        if (!strncmp(op, "gemm", 4)) gemm_ms += r->total_ms;
        if (!kinds || !layers) continue;
        char name[48];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(op, "."), op);
        add_to_group(kinds, &nk, name, r);
        if (slash) {
            scoped = 1;
            snprintf(name, sizeof name, "%.*s", (int)(slash - r->label), r->label);
        } else {
            snprintf(name, sizeof name, "(outside the model: loss, optimizer)");
        }
        add_to_group(layers, &nl, name, r);
    }
    const double total = device_ms > 0 ? device_ms : 1;
    if (kinds && layers) {
        print_groups(out, kinds, nk, "Device time per op kind", "op kind", steps, total);
        if (scoped)
            print_groups(out, layers, nl, "Device time per layer (forward and backward)", "layer", steps, total);
    }
    free(kinds);
    free(layers);
    fprintf(out, "\nPer kernel label:\n\n| label | launches/step | ms/step | ms/launch | share |\n"
                 "|---|---:|---:|---:|---:|\n");
    const size_t shown = in->count < 40 ? in->count : 40;
    for (size_t i = 0; i < shown; i++) {
        const p7_profile_row *r = &in->rows[i];
        fprintf(out, "| %s | %.0f | %.2f | %.3f | %.1f%% |\n", r->label, (double)r->launches / steps,
                r->total_ms / steps, r->launches ? r->total_ms / (double)r->launches : 0.0,
                100.0 * r->total_ms / total);
    }
    if (shown < in->count) fprintf(out, "| (%zu more labels) | | | | |\n", in->count - shown);
    const double wall_ms = 1e3 * in->wall_s / steps, dev_ms = device_ms / steps;
    fprintf(out, "\n| per step | ms |\n|---|---:|\n");
    fprintf(out, "| wall (host clock) | %.2f |\n| device (sum of kernel events) | %.2f |\n", wall_ms, dev_ms);
    fprintf(out, "| host overhead (wall - device) | %.2f (%.1f%% of wall) |\n", wall_ms - dev_ms,
            wall_ms > 0 ? 100.0 * (wall_ms - dev_ms) / wall_ms : 0.0);
    fprintf(out, "| GEMM kernels (labels gemm*) | %.2f |\n", gemm_ms / steps);
    if (in->gemm_flops_per_step > 0 && wall_ms > 0) {
        const double gf = in->gemm_flops_per_step * 1e-9;
        const double over_wall = gf / (wall_ms * 1e-3);
        const double over_gemm = gemm_ms > 0 ? gf / (gemm_ms / steps * 1e-3) : 0;
        fprintf(out,
                "\nConvolution and linear FLOPs: %.3g GFLOP per step, counted from the layer shapes as direct\n"
                "convolutions. Layers that run Winograd F(2x2, 3x3) do 2.25x fewer multiplies, so these rates\n"
                "are effective ones and can pass the FMA peak (P7_WINOGRAD=0 gives the im2col figures).\n\n",
                gf);
        if (in->peak && in->peak->gflops > 0) {
            fprintf(out, "| rate | GFLOP/s | share of the estimated FMA peak (%.0f GFLOP/s) |\n|---|---:|---:|\n",
                    in->peak->gflops);
            fprintf(out, "| over the wall time | %.1f | %.1f%% |\n", over_wall, 100.0 * over_wall / in->peak->gflops);
            if (over_gemm > 0)
                fprintf(out, "| over the GEMM kernels' time | %.1f | %.1f%% |\n", over_gemm,
                        100.0 * over_gemm / in->peak->gflops);
        } else {
            fprintf(out, "| rate | GFLOP/s |\n|---|---:|\n| over the wall time | %.1f |\n", over_wall);
            if (over_gemm > 0) fprintf(out, "| over the GEMM kernels' time | %.1f |\n", over_gemm);
        }
    }
}
