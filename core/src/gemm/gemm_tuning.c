/* Which register tile p7's GEMM uses on a device, and how it is chosen: an override
 * (P7_GEMM_TILE, P7_GEMM_KC), else a stored choice, else a short measurement of the
 * candidates of the device's class (P7_GEMM_TUNING=auto) or the class's default
 * (P7_GEMM_TUNING=off). p7/gemm.h describes it for users.
 *
 * The class comes from CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, which PoCL sets from
 * the CPU's widest vector unit: 16 floats with AVX-512, 8 with AVX2. A tile needs
 * MR x NR/VW accumulators + NR/VW B vectors + 1 broadcast registers: AVX-512 has 32
 * (8x32/16: 16 + 2 + 1), AVX2 16 (6x16/8: 12 + 2 + 1). Candidates that overflow the
 * register file a little (8x16/8: 19) are measured too: spills into L1 sometimes cost
 * less than the smaller tile's extra loads. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm/gemm_tuning.h"

typedef enum tile_class { CLASS_AVX512 = 0, CLASS_AVX2 = 1, CLASS_GENERIC = 2 } tile_class;

typedef struct candidate {
    tile_class cls;
    p7_gemm_p7_params params;
} candidate;

/* The first of each class is its default. K blocks: a B block of kc x NR floats stays
 * in L2 (768 x 32 floats = 96 KiB measured best on Zen 4; the tuning tries others). */
static const candidate candidates[] = {
    {CLASS_AVX512, {8, 32, 16, 768}},  {CLASS_AVX512, {6, 32, 16, 768}}, {CLASS_AVX512, {4, 32, 16, 768}},
    {CLASS_AVX512, {12, 16, 16, 768}}, {CLASS_AVX2, {6, 16, 8, 768}},    {CLASS_AVX2, {4, 16, 8, 768}},
    {CLASS_AVX2, {8, 16, 8, 768}},     {CLASS_AVX2, {8, 8, 8, 768}},
    {CLASS_GENERIC, {4, 8, 4, 256}},   {CLASS_GENERIC, {4, 16, 4, 256}}, {CLASS_GENERIC, {8, 8, 4, 256}},
};
enum { CANDIDATE_COUNT = sizeof candidates / sizeof *candidates };

size_t p7_gemm_p7_candidate_count(void) { return CANDIDATE_COUNT; }

const p7_gemm_p7_params *p7_gemm_p7_candidate(size_t index)
{
    return index < CANDIDATE_COUNT ? &candidates[index].params : NULL;
}

const char *p7_gemm_p7_params_problem(const p7_gemm_p7_params *p)
{
    static _Thread_local char why[160];
    if (p->mr < 2 || p->mr > P7_GEMM_MR_MAX || p->mr % 2 != 0)
        snprintf(why, sizeof why, "tile rows %d: expected an even number from 2 to %d", p->mr, P7_GEMM_MR_MAX);
    else if (p->nr != 8 && p->nr != 16 && p->nr != 32)
        snprintf(why, sizeof why, "tile columns %d: expected 8, 16 or 32 (dividing the 32-wide packed B panels)",
                 p->nr);
    else if (p->vw != 4 && p->vw != 8 && p->vw != 16)
        snprintf(why, sizeof why, "vector width %d: expected 4, 8 or 16", p->vw);
    else if (p->nr % p->vw != 0 || p->nr / p->vw > 4)
        snprintf(why, sizeof why, "tile columns %d are not 1 to 4 vectors of %d floats", p->nr, p->vw);
    else if (p->kc < P7_GEMM_KC_MIN || p->kc > P7_GEMM_KC_MAX)
        snprintf(why, sizeof why, "K block %d: expected %d to %d", p->kc, P7_GEMM_KC_MIN, P7_GEMM_KC_MAX);
    else
        return NULL;
    return why;
}

const char *p7_gemm_p7_params_format(const p7_gemm_p7_params *p, char *buf, size_t size)
{
    snprintf(buf, size, "%dx%d/%d kc %d", p->mr, p->nr, p->vw, p->kc);
    return buf;
}

int p7_gemm_p7_tile_parse(const char *text, p7_gemm_p7_params *out)
{
    int mr = 0, nr = 0, vw = 0, used = 0;
    if (!text) return -1;
    if (sscanf(text, "%dx%d/%d%n", &mr, &nr, &vw, &used) == 3 && text[used] == '\0') {
    } else if (used = 0, vw = 0, sscanf(text, "%dx%d%n", &mr, &nr, &used) == 2 && text[used] == '\0') {
    } else {
        return -1;
    }
    out->mr = mr;
    out->nr = nr;
    out->vw = vw;
    return 0;
}

/* ---- the device's class ---- */

static int preferred_vector_width(const p7_device *device)
{
    cl_uint width = 0;
    if (clGetDeviceInfo(device->id, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof width, &width, NULL) !=
        CL_SUCCESS)
        width = 0;
    return (int)width;
}

static tile_class class_of(const p7_device *device)
{
    if (device->info.kind != P7_DEVICE_KIND_CPU) return CLASS_GENERIC;
    int width = preferred_vector_width(device);
    return width >= 16 ? CLASS_AVX512 : width >= 8 ? CLASS_AVX2 : CLASS_GENERIC;
}

static p7_gemm_p7_params class_default(tile_class cls)
{
    for (size_t i = 0; i < CANDIDATE_COUNT; i++)
        if (candidates[i].cls == cls) return candidates[i].params;
    return candidates[0].params;
}

/* ---- per-device state ---- */

typedef struct tuning_state {
    int resolved;
    p7_gemm_p7_params params;
    p7_gemm_tuning tuning; /* what p7_gemm_tuning_get reports */
} tuning_state;

static const char tuning_state_key = 0;

static p7_status state_of(p7_device *device, tuning_state **out)
{
    void *slot;
    P7_TRY(p7_device_state(device, &tuning_state_key, sizeof(tuning_state), NULL, &slot));
    *out = slot;
    return P7_SUCCESS;
}

static void set_tuning(tuning_state *s, const p7_gemm_p7_params *p, p7_gemm_tuning_origin origin, double gflops)
{
    s->resolved = 1;
    s->params = *p;
    s->tuning.tile_rows = p->mr;
    s->tuning.tile_cols = p->nr;
    s->tuning.vector_width = p->vw;
    s->tuning.k_block = p->kc;
    s->tuning.origin = origin;
    s->tuning.gflops = gflops;
}

/* A problem the user should hear about: kept in the tuning's note, and on stderr with
 * P7_VERBOSE=1 (p7 prints nothing otherwise). Once per device: resolution runs once. */
static void note(tuning_state *s, const char *fmt, const char *detail)
{
    size_t used = strlen(s->tuning.note);
    if (used + 2 >= sizeof s->tuning.note) return;
    snprintf(s->tuning.note + used, sizeof s->tuning.note - used, "%s%s%s", used ? "; " : "", fmt, detail);
    const char *verbose = getenv("P7_VERBOSE");
    if (verbose && *verbose && strcmp(verbose, "0") != 0) fprintf(stderr, "p7: %s%s\n", fmt, detail);
}

/* ---- measuring ---- */

typedef struct tune_shape {
    const char *name;
    int ta, tb;
    size_t m, n, k;
} tune_shape;

/* One of each kind of GEMM a conv layer runs (forward, data gradient with A transposed,
 * weight gradient with B transposed and a deep K), about 1.2 GFLOP each (~10 ms on a
 * 2-core CPU): big enough that packing and launches weigh as in training, small enough
 * that a candidate takes ~0.1 s. */
static const tune_shape full_shapes[] = {
    {"fwd 256x2048x1152", 0, 0, 256, 2048, 1152},
    {"bwd-data 1152x2048x256 (tA)", 1, 0, 1152, 2048, 256},
    {"bwd-weight 256x1152x2048 (tB)", 0, 1, 256, 1152, 2048},
};
static const tune_shape quick_shapes[] = {
    {"fwd 64x512x256", 0, 0, 64, 512, 256},
    {"bwd-weight 64x256x1024 (tB)", 0, 1, 64, 256, 1024},
};

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct bench {
    p7_device *device;
    const tune_shape *shapes;
    size_t shape_count;
    int reps;
    cl_mem a, b, c;
    p7_gemm_tune_report report;
    void *context;
} bench;

static void say(const bench *b, const char *fmt, ...) P7_PRINTF(2, 3);
static void say(const bench *b, const char *fmt, ...)
{
    if (!b->report) return;
    char line[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    b->report(b->context, line);
}

static p7_status run_timed(const bench *b, const p7_gemm_p7_params *p, const tune_shape *s, double *seconds)
{
    p7_gemm_desc d = p7_gemm_desc_packed(s->ta, s->tb, s->m, s->n, s->k, 1.0f, 0.0f);
    double t0 = now_seconds();
    P7_TRY(p7_gemm_p7_run_with(b->device, p, &d, b->a, b->b, b->c));
    P7_TRY(p7_device_finish(b->device));
    *seconds = now_seconds() - t0;
    return P7_SUCCESS;
}

enum { MAX_SET = 16, MAX_SHAPES = 4 };

/* GFLOP/s of each of `count` params over all shapes: total flop / the sum of each
 * shape's fastest run. A first untimed round builds the kernels; then the timed rounds
 * go through every candidate in turn, so load from elsewhere on the machine (2 cores,
 * shared) falls on all of them alike instead of on whichever ran during it. */
static p7_status measure_set(const bench *b, const p7_gemm_p7_params *set, size_t count, double *gflops)
{
    double best[MAX_SET][MAX_SHAPES];
    for (size_t c = 0; c < count; c++)
        for (size_t i = 0; i < b->shape_count; i++) {
            double t;
            P7_TRY(run_timed(b, &set[c], &b->shapes[i], &t));
            best[c][i] = INFINITY;
        }
    for (int r = 0; r < b->reps; r++)
        for (size_t c = 0; c < count; c++)
            for (size_t i = 0; i < b->shape_count; i++) {
                double t;
                P7_TRY(run_timed(b, &set[c], &b->shapes[i], &t));
                if (t < best[c][i]) best[c][i] = t;
            }
    for (size_t c = 0; c < count; c++) {
        double flop = 0.0, seconds = 0.0;
        char line[400], name[48];
        int used = snprintf(line, sizeof line, "  %-18s", p7_gemm_p7_params_format(&set[c], name, sizeof name));
        for (size_t i = 0; i < b->shape_count; i++) {
            const tune_shape *s = &b->shapes[i];
            double f = 2.0 * (double)s->m * (double)s->n * (double)s->k;
            flop += f;
            seconds += best[c][i];
            if (used > 0 && (size_t)used < sizeof line)
                used += snprintf(line + used, sizeof line - (size_t)used, "  %7.1f", f / best[c][i] * 1e-9);
        }
        gflops[c] = flop / seconds * 1e-9;
        if (used > 0 && (size_t)used < sizeof line)
            snprintf(line + used, sizeof line - (size_t)used, "  | %7.1f", gflops[c]);
        say(b, "%s", line);
    }
    return P7_SUCCESS;
}

/* The index of the fastest; the first (the incumbent) stays unless another is at
 * least 3% faster, so noise does not move the choice away from the default. */
static size_t fastest(const double *gflops, size_t count)
{
    size_t best = 0;
    for (size_t c = 1; c < count; c++)
        if (gflops[c] > gflops[best] && gflops[c] > gflops[0] * 1.03) best = c;
    return best;
}

static p7_status bench_buffers(bench *b, p7_buffer **bufs)
{
    size_t floats = 0;
    for (size_t i = 0; i < b->shape_count; i++) {
        const tune_shape *s = &b->shapes[i];
        size_t sizes[3] = {s->m * s->k, s->k * s->n, s->m * s->n};
        for (int j = 0; j < 3; j++)
            if (sizes[j] > floats) floats = sizes[j];
    }
    float *host = malloc(floats * sizeof *host);
    if (!host) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "GEMM tuning: out of host memory");
    /* small values of both signs, no denormals: the speed of real data */
    for (size_t i = 0; i < floats; i++) host[i] = (float)((int)(i * 7919u % 2001u) - 1000) * 1e-3f;
    p7_status st = P7_SUCCESS;
    for (int j = 0; j < 3 && st == P7_SUCCESS; j++) {
        st = p7_buffer_alloc(b->device, floats * sizeof(float), &bufs[j]);
        if (st == P7_SUCCESS) st = p7_buffer_upload(bufs[j], host, floats * sizeof(float));
    }
    free(host);
    P7_TRY(st);
    b->a = p7_buffer_mem(bufs[0]);
    b->b = p7_buffer_mem(bufs[1]);
    b->c = p7_buffer_mem(bufs[2]);
    return P7_SUCCESS;
}

/* Measures the candidates of the device's class (every candidate with P7_GEMM_TUNE_ALL;
 * the class's first two with P7_GEMM_TUNE_QUICK), then K blocks around the winner's. */
static p7_status tune(p7_device *device, unsigned flags, p7_gemm_tune_report report, void *context,
                      p7_gemm_p7_params *best, double *best_gflops)
{
    int quick = (flags & P7_GEMM_TUNE_QUICK) != 0;
    bench b = {device,
               quick ? quick_shapes : full_shapes,
               quick ? sizeof quick_shapes / sizeof *quick_shapes : sizeof full_shapes / sizeof *full_shapes,
               quick ? 2 : 4,
               NULL, NULL, NULL, report, context};
    tile_class cls = class_of(device);
    say(&b, "device class: %s (preferred float vector width %d)",
        cls == CLASS_AVX512 ? "AVX-512-like" : cls == CLASS_AVX2 ? "AVX2-like" : "generic", preferred_vector_width(device));
    char header[400];
    int used = snprintf(header, sizeof header, "  %-18s", "tile/vector, kc");
    for (size_t i = 0; i < b.shape_count && used > 0 && (size_t)used < sizeof header; i++)
        used += snprintf(header + used, sizeof header - (size_t)used, "  [%zu]", i + 1);
    for (size_t i = 0; i < b.shape_count; i++) say(&b, "shape [%zu]: %s", i + 1, b.shapes[i].name);
    say(&b, "%s  | GFLOP/s over all shapes", header);

    p7_buffer *bufs[3] = {NULL, NULL, NULL};
    p7_status st = bench_buffers(&b, bufs);
    *best = class_default(cls);
    *best_gflops = 0.0;
    /* the tiles, the class's default first */
    p7_gemm_p7_params set[MAX_SET];
    double gflops[MAX_SET];
    size_t count = 0;
    set[count++] = *best;
    for (size_t i = 0; i < CANDIDATE_COUNT && count < MAX_SET; i++) {
        if (!(flags & P7_GEMM_TUNE_ALL) && candidates[i].cls != cls) continue;
        if (memcmp(&candidates[i].params, best, sizeof *best) == 0) continue;
        if (quick && count == 2) break;
        set[count++] = candidates[i].params;
    }
    if (st == P7_SUCCESS) st = measure_set(&b, set, count, gflops);
    if (st == P7_SUCCESS) {
        size_t c = fastest(gflops, count);
        *best = set[c];
        *best_gflops = gflops[c];
    }
    /* The K block of the winner: its B block of kc x NR floats should stay in L2, whose
     * size OpenCL does not report; half and double the default bracket 256 KiB to 2 MiB. */
    if (st == P7_SUCCESS && !quick) {
        p7_gemm_p7_params kcs[3] = {*best, *best, *best};
        kcs[1].kc = best->kc / 2;
        kcs[2].kc = best->kc * 2;
        st = measure_set(&b, kcs, 3, gflops);
        if (st == P7_SUCCESS) {
            size_t c = fastest(gflops, 3);
            *best = kcs[c];
            *best_gflops = gflops[c];
        }
    }
    for (int j = 0; j < 3; j++) p7_buffer_free(bufs[j]);
    if (st == P7_SUCCESS) {
        char name[48];
        say(&b, "chosen: %s, %.1f GFLOP/s", p7_gemm_p7_params_format(best, name, sizeof name), *best_gflops);
    }
    return st;
}

/* ---- resolution ---- */

/* P7_GEMM_TILE / P7_GEMM_KC; 1 when they apply (params set), 0 when unset or refused. */
static int override_of(const p7_device *device, tuning_state *s, p7_gemm_p7_params *out)
{
    const char *tile = getenv("P7_GEMM_TILE"), *kc = getenv("P7_GEMM_KC");
    if ((!tile || !*tile) && (!kc || !*kc)) return 0;
    p7_gemm_p7_params p = class_default(class_of(device));
    if (tile && *tile) {
        p7_gemm_p7_params t;
        if (p7_gemm_p7_tile_parse(tile, &t) != 0) {
            note(s, "P7_GEMM_TILE is not of the form MRxNR or MRxNR/VW (e.g. 6x16); ignored: ", p7_abbrev(tile));
            return 0;
        }
        p.mr = t.mr;
        p.nr = t.nr;
        if (t.vw) {
            p.vw = t.vw;
        } else { /* the device's vector width, as far as the columns allow */
            int width = preferred_vector_width(device);
            p.vw = width >= 16 && t.nr % 16 == 0 ? 16 : width >= 8 && t.nr % 8 == 0 ? 8 : 4;
        }
    }
    if (kc && *kc) {
        char *end;
        long v = strtol(kc, &end, 10);
        if (end == kc || *end != '\0' || v < P7_GEMM_KC_MIN || v > P7_GEMM_KC_MAX) {
            note(s, "P7_GEMM_KC is not a block depth from 16 to 65536; ignored: ", p7_abbrev(kc));
            return 0;
        }
        p.kc = (int)v;
    }
    const char *problem = p7_gemm_p7_params_problem(&p);
    if (problem) {
        note(s, "P7_GEMM_TILE/P7_GEMM_KC ignored: ", problem);
        return 0;
    }
    *out = p;
    return 1;
}

static p7_status store_and_apply(p7_device *device, tuning_state *s, const p7_gemm_p7_params *p, double gflops)
{
    p7_gemm_tuning_identity id;
    p7_gemm_tuning_identity_of(device, &id);
    set_tuning(s, p, P7_GEMM_TUNING_MEASURED, gflops);
    if (p7_gemm_tuning_store_write(s->tuning.path, &id, p, gflops) != P7_SUCCESS) note(s, "", p7_last_error());
    return P7_SUCCESS;
}

static p7_status resolve(p7_device *device, tuning_state *s)
{
    p7_gemm_tuning_identity id;
    p7_gemm_tuning_identity_of(device, &id);
    p7_gemm_tuning_store_path(device->tuning_dir, &id, s->tuning.path, sizeof s->tuning.path);

    p7_gemm_p7_params p;
    if (override_of(device, s, &p)) {
        set_tuning(s, &p, P7_GEMM_TUNING_OVERRIDE, 0.0);
        return P7_SUCCESS;
    }
    const char *mode = getenv("P7_GEMM_TUNING");
    if (!mode || !*mode) mode = "auto";
    int off = strcmp(mode, "off") == 0 || strcmp(mode, "0") == 0;
    int quick = strcmp(mode, "quick") == 0;
    if (!off && !quick && strcmp(mode, "auto") != 0) {
        note(s, "P7_GEMM_TUNING is off, auto or quick; taken as auto: ", p7_abbrev(mode));
    }

    double gflops = 0.0;
    p7_status st = p7_gemm_tuning_store_read(s->tuning.path, &id, &p, &gflops);
    if (st == P7_SUCCESS) {
        set_tuning(s, &p, P7_GEMM_TUNING_STORED, gflops);
        return P7_SUCCESS;
    }
    if (st != P7_ERROR_IO) note(s, "", p7_last_error()); /* no file is the normal first run */
    p7_clear_error();

    p = class_default(class_of(device));
    if (off) {
        set_tuning(s, &p, P7_GEMM_TUNING_DEFAULT, 0.0);
        return P7_SUCCESS;
    }
    st = tune(device, quick ? P7_GEMM_TUNE_QUICK : 0, NULL, NULL, &p, &gflops);
    if (st != P7_SUCCESS) { /* a failed measurement must not fail the GEMM that asked */
        note(s, "GEMM tuning failed, using the default tile: ", p7_last_error());
        p7_clear_error();
        p = class_default(class_of(device));
        set_tuning(s, &p, P7_GEMM_TUNING_DEFAULT, 0.0);
        return P7_SUCCESS;
    }
    return store_and_apply(device, s, &p, gflops);
}

p7_status p7_gemm_p7_device_params(p7_device *device, p7_gemm_p7_params *out)
{
    tuning_state *s;
    P7_TRY(state_of(device, &s));
    if (!s->resolved) P7_TRY(resolve(device, s));
    *out = s->params;
    return P7_SUCCESS;
}

p7_status p7_gemm_tuning_get(p7_device *device, p7_gemm_tuning *out)
{
    if (!device || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm_tuning_get: NULL argument");
    p7_gemm_p7_params p;
    P7_TRY(p7_gemm_p7_device_params(device, &p));
    tuning_state *s;
    P7_TRY(state_of(device, &s));
    *out = s->tuning;
    return P7_SUCCESS;
}

const char *p7_gemm_tuning_origin_name(p7_gemm_tuning_origin origin)
{
    switch (origin) {
    case P7_GEMM_TUNING_DEFAULT: return "default";
    case P7_GEMM_TUNING_MEASURED: return "measured";
    case P7_GEMM_TUNING_STORED: return "stored";
    case P7_GEMM_TUNING_OVERRIDE: return "override";
    default: return "unknown";
    }
}

p7_status p7_gemm_tune(p7_device *device, unsigned flags, p7_gemm_tune_report report, void *context,
                       p7_gemm_tuning *out)
{
    if (!device) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm_tune: NULL device");
    tuning_state *s;
    P7_TRY(state_of(device, &s));
    memset(&s->tuning, 0, sizeof s->tuning);
    s->resolved = 0;
    p7_gemm_tuning_identity id;
    p7_gemm_tuning_identity_of(device, &id);
    p7_gemm_tuning_store_path(device->tuning_dir, &id, s->tuning.path, sizeof s->tuning.path);

    p7_gemm_p7_params p;
    double gflops = 0.0;
    if (flags & P7_GEMM_TUNE_KEEP_STORED) {
        p7_status st = p7_gemm_tuning_store_read(s->tuning.path, &id, &p, &gflops);
        if (st == P7_SUCCESS) {
            set_tuning(s, &p, P7_GEMM_TUNING_STORED, gflops);
            if (out) *out = s->tuning;
            return P7_SUCCESS;
        }
        if (st != P7_ERROR_IO) note(s, "", p7_last_error());
        p7_clear_error();
    }
    P7_TRY(tune(device, flags, report, context, &p, &gflops));
    P7_TRY(store_and_apply(device, s, &p, gflops));
    if (out) *out = s->tuning;
    return P7_SUCCESS;
}
