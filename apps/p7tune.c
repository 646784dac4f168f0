/* p7tune: measures p7's GEMM register tiles on a device, stores the best for it and
 * says where; or (--show) reports the tiling a program would use now.
 *
 *   p7tune [--device SPEC] [--gemm] [--force] [--quick] [--all] [--show]
 *
 * Without --force, a choice already stored for the device is reported, not remeasured.
 * Exits 0 on success, 1 when the device or the tuning fails, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/device.h"
#include "p7/gemm.h"
#include "p7/status.h"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: p7tune [--device SPEC] [--gemm] [--force] [--quick] [--all] [--show]\n"
            "  --device SPEC  the device (default: P7_DEVICE, else the first GPU, else the first CPU)\n"
            "  --gemm         tune p7's GEMM (the only tuning p7 has today, so the default)\n"
            "  --force        measure even when a choice is stored for the device\n"
            "  --quick        two candidates on small shapes (seconds less, a rougher choice)\n"
            "  --all          every candidate tile, not only those shaped for the device's vectors\n"
            "  --show         no measuring unless a program would: print the tiling it would use now\n"
            "                 (P7_GEMM_TUNING, P7_GEMM_TILE and P7_GEMM_KC apply)\n");
}

static void print_line(void *context, const char *line)
{
    (void)context;
    printf("%s\n", line);
    fflush(stdout);
}

static void print_tuning(const p7_gemm_tuning *t)
{
    printf("tuning: tile %dx%d vector %d kc %d origin %s", t->tile_rows, t->tile_cols, t->vector_width, t->k_block,
           p7_gemm_tuning_origin_name(t->origin));
    if (t->gflops > 0.0) printf(" gflops %.1f", t->gflops);
    printf("\n");
    if (t->origin == P7_GEMM_TUNING_MEASURED || t->origin == P7_GEMM_TUNING_STORED)
        printf("stored in: %s\n", t->path);
    if (t->note[0]) printf("note: %s\n", t->note);
}

int main(int argc, char **argv)
{
    const char *spec = NULL;
    int show = 0;
    unsigned flags = P7_GEMM_TUNE_KEEP_STORED;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else if (strcmp(argv[i], "--gemm") == 0) continue;
        else if (strcmp(argv[i], "--force") == 0) flags &= ~(unsigned)P7_GEMM_TUNE_KEEP_STORED;
        else if (strcmp(argv[i], "--quick") == 0) flags |= P7_GEMM_TUNE_QUICK;
        else if (strcmp(argv[i], "--all") == 0) flags |= P7_GEMM_TUNE_ALL;
        else if (strcmp(argv[i], "--show") == 0) show = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "p7tune: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    p7_device *device = NULL;
    p7_status st = p7_device_open(spec, NULL, &device);
    if (st != P7_SUCCESS) {
        fprintf(stderr, "p7tune: %s: %s\n", p7_status_string(st), p7_last_error());
        return 1;
    }
    printf("device: %s\n", p7_device_describe(device));
    if (p7_device_note(device)[0]) printf("note: %s\n", p7_device_note(device));
    fflush(stdout);

    p7_gemm_tuning t;
    if (show) {
        st = p7_gemm_tuning_get(device, &t);
    } else {
        st = p7_gemm_tune(device, flags, print_line, NULL, &t);
        if (st == P7_SUCCESS && t.origin == P7_GEMM_TUNING_STORED)
            printf("a choice is stored for this device (--force measures again)\n");
    }
    if (st != P7_SUCCESS) {
        fprintf(stderr, "p7tune: %s: %s\n", p7_status_string(st), p7_last_error());
        p7_device_close(device);
        return 1;
    }
    print_tuning(&t);
    p7_device_close(device);
    return 0;
}
