/* The stored GEMM tuning: one small text file per device, driver and kernel source,
 *
 *   p7-gemm-tuning 1
 *   device pthread-skylake-avx512-AMD EPYC
 *   driver 3.1+debian
 *   platform OpenCL 3.0 PoCL 3.1 ...
 *   kernel <SHA-256 of kernels/gemm_p7.cl>
 *   tile 8x32/16
 *   kc 768
 *   gflops 151.2
 *
 * named by the SHA-256 of the format version and the identity lines, so a driver
 * update or an edited kernel finds no file and tunes again. The identity is also
 * inside, so a file copied from another machine or renamed is refused by content.
 * Text, so a user can read and edit it. Written to a temporary file and renamed, like
 * the program cache, so concurrent processes (SLURM array tasks sharing $HOME) never
 * read a torn file. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemm/gemm_tuning.h"
#include "runtime/digest.h"
#include "runtime/p7_kernels.h"

#define STORE_MAGIC "p7-gemm-tuning"
#define STORE_FORMAT 1

void p7_gemm_tuning_identity_of(const p7_device *device, p7_gemm_tuning_identity *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->device, sizeof out->device, "%s", device->info.name);
    snprintf(out->driver, sizeof out->driver, "%s", device->info.driver_version);
    snprintf(out->platform, sizeof out->platform, "%s", device->info.platform_version);
    p7_sha256 h;
    uint8_t digest[P7_SHA256_BYTES];
    p7_sha256_init(&h);
    p7_sha256_update(&h, p7_kernels_gemm_p7.text, strlen(p7_kernels_gemm_p7.text));
    p7_sha256_final(&h, digest);
    p7_digest_hex(digest, sizeof digest, out->kernel);
}

void p7_gemm_tuning_store_path(const char *tuning_dir, const p7_gemm_tuning_identity *id, char *path, size_t size)
{
    p7_sha256 h;
    uint8_t digest[P7_SHA256_BYTES];
    char hex[2 * P7_SHA256_BYTES + 1];
    int format = STORE_FORMAT;
    p7_sha256_init(&h);
    p7_sha256_update(&h, &format, sizeof format);
    const char *parts[] = {id->device, id->driver, id->platform, id->kernel};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        p7_sha256_update(&h, parts[i], strlen(parts[i]) + 1); /* the NUL separates fields */
    p7_sha256_final(&h, digest);
    p7_digest_hex(digest, sizeof digest, hex);
    snprintf(path, size, "%s/gemm-%.16s.txt", tuning_dir, hex);
}

/* The folder part of a path ("." when there is none). */
static void folder_of(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, size, ".");
    else snprintf(out, size, "%.*s", (int)(slash - path), path);
}

p7_status p7_gemm_tuning_store_write(const char *path, const p7_gemm_tuning_identity *id,
                                     const p7_gemm_p7_params *params, double gflops)
{
    const char *problem = p7_gemm_p7_params_problem(params);
    if (problem) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "GEMM tuning store %s: not storing %s", path, problem);
    char folder[1100];
    folder_of(path, folder, sizeof folder);
    if (p7_make_dirs(folder) != 0)
        return p7_fail(P7_ERROR_IO, "GEMM tuning store: cannot create the folder %s: %s", p7_abbrev(folder),
                       strerror(errno));
    /* One name per process and call: two threads of one process never share it either. */
    static atomic_uint serial;
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.%ld.%u.tmp", path, (long)getpid(), atomic_fetch_add(&serial, 1u));
    FILE *f = fopen(tmp, "w");
    if (!f) return p7_fail(P7_ERROR_IO, "GEMM tuning store: cannot write %s: %s", p7_abbrev(tmp), strerror(errno));
    int ok = fprintf(f, "%s %d\ndevice %s\ndriver %s\nplatform %s\nkernel %s\ntile %dx%d/%d\nkc %d\ngflops %.1f\n",
                     STORE_MAGIC, STORE_FORMAT, id->device, id->driver, id->platform, id->kernel, params->mr,
                     params->nr, params->vw, params->kc, gflops) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        remove(tmp);
        return p7_fail(P7_ERROR_IO, "GEMM tuning store: cannot write %s: %s", p7_abbrev(path), strerror(err));
    }
    return P7_SUCCESS;
}

/* The value of line `key` ("key value"), without its newline; NULL when absent. */
static const char *field(char lines[][256], size_t count, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < count; i++)
        if (strncmp(lines[i], key, n) == 0 && lines[i][n] == ' ') return lines[i] + n + 1;
    return NULL;
}

static p7_status identity_matches(const char *path, char lines[][256], size_t count, const char *key,
                                  const char *expected)
{
    const char *v = field(lines, count, key);
    if (!v)
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: no '%s' line (a truncated file?)", p7_abbrev(path),
                       key);
    if (strcmp(v, expected) != 0)
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: written for %s '%s', but this is '%s'",
                       p7_abbrev(path), key, v, expected);
    return P7_SUCCESS;
}

p7_status p7_gemm_tuning_store_read(const char *path, const p7_gemm_tuning_identity *id,
                                    p7_gemm_p7_params *params, double *gflops)
{
    FILE *f = fopen(path, "r");
    if (!f) return p7_fail(P7_ERROR_IO, "GEMM tuning store %s: %s", p7_abbrev(path), strerror(errno));
    enum { MAX_LINES = 16 };
    char lines[MAX_LINES][256];
    size_t count = 0;
    int complete = 1; /* every line ends with a newline */
    while (count < MAX_LINES && fgets(lines[count], sizeof lines[count], f)) {
        size_t n = strlen(lines[count]);
        if (n == 0 || lines[count][n - 1] != '\n') complete = 0;
        else lines[count][n - 1] = '\0';
        count++;
    }
    fclose(f);

    int format = 0;
    char magic[32] = "";
    if (count == 0 || sscanf(lines[0], "%31s %d", magic, &format) != 2 || strcmp(magic, STORE_MAGIC) != 0)
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: not a p7 GEMM tuning file (expected a first line '%s %d')",
                       p7_abbrev(path), STORE_MAGIC, STORE_FORMAT);
    if (format != STORE_FORMAT)
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: format version %d, expected %d", p7_abbrev(path),
                       format, STORE_FORMAT);
    if (!complete)
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: a line is cut off or too long (a truncated file?)",
                       p7_abbrev(path));
    P7_TRY(identity_matches(path, lines, count, "device", id->device));
    P7_TRY(identity_matches(path, lines, count, "driver", id->driver));
    P7_TRY(identity_matches(path, lines, count, "platform", id->platform));
    P7_TRY(identity_matches(path, lines, count, "kernel", id->kernel));

    p7_gemm_p7_params p = {0, 0, 0, 0};
    const char *tile = field(lines, count, "tile"), *kc = field(lines, count, "kc");
    const char *perf = field(lines, count, "gflops");
    if (!tile || !kc || !perf)
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: no '%s' line (a truncated file?)", p7_abbrev(path),
                       !tile ? "tile" : !kc ? "kc" : "gflops");
    char *end;
    if (p7_gemm_p7_tile_parse(tile, &p) != 0 || p.vw == 0)
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: tile '%s' is not of the form MRxNR/VW (e.g. 8x32/16)",
                       p7_abbrev(path), tile);
    long kc_value = strtol(kc, &end, 10);
    if (end == kc || *end != '\0' || kc_value < 0 || kc_value > P7_GEMM_KC_MAX)
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: kc '%s' is not a block depth", p7_abbrev(path), kc);
    p.kc = (int)kc_value;
    double g = strtod(perf, &end);
    if (end == perf || *end != '\0' || !(g >= 0.0))
        return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: gflops '%s' is not a number", p7_abbrev(path), perf);
    const char *problem = p7_gemm_p7_params_problem(&p);
    if (problem) return p7_fail(P7_ERROR_FORMAT, "GEMM tuning store %s: %s", p7_abbrev(path), problem);
    *params = p;
    if (gflops) *gflops = g;
    return P7_SUCCESS;
}
