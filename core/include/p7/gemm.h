/* p7 GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, float32.
 *
 * op(A) is M x K and op(B) is K x N; op(X) is X, or X transposed when trans_x is set
 * (then A is stored K x M, B is stored N x K). Leading dimensions are in elements, of
 * the matrices as stored; offsets are in elements from the start of each buffer.
 * With beta == 0, C is not read (NaN in C does not propagate), like BLAS.
 *
 * Two backends sit behind this one entry point (see p7_device_set_gemm_backend):
 * CLBlast, the default on GPUs, and p7's own packed-panel kernel, the default on CPU
 * devices, where CLBlast reaches 3-12% of peak. The call is enqueued; it does not wait.
 */
#ifndef P7_GEMM_H
#define P7_GEMM_H

#include <stddef.h>

#include <CL/cl.h>

#include "p7/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct p7_gemm_desc {
    int trans_a, trans_b;
    size_t m, n, k;
    float alpha, beta;
    size_t lda, ldb, ldc;
    size_t a_offset, b_offset, c_offset;
} p7_gemm_desc;

/* Fills lda/ldb/ldc for tightly packed matrices, offsets 0. */
P7_API p7_gemm_desc p7_gemm_desc_packed(int trans_a, int trans_b, size_t m, size_t n, size_t k,
                                 float alpha, float beta);

P7_API p7_status p7_gemm(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem b, cl_mem c);

/* The same with an explicit backend, regardless of the device's choice (tests, benchmarks). */
P7_API p7_status p7_gemm_with(p7_device *device, p7_gemm_backend backend, const p7_gemm_desc *desc,
                       cl_mem a, cl_mem b, cl_mem c);

/* ---- the p7 backend's kernel shape, tuned per device ----
 *
 * p7's GEMM computes C in register tiles of tile_rows x tile_cols, held as vectors of
 * vector_width floats, over K blocks of at most k_block. The best tile depends on the
 * device's vector registers (AVX-512: 32 of 16 floats, 8 x 32; AVX2: 16 of 8, 6 x 16).
 * On first use on a device p7 picks it: P7_GEMM_TILE (e.g. "6x16" or "6x16/8", with
 * P7_GEMM_KC for the K block) overrides everything; else a choice stored earlier for this
 * device, driver and kernel source (in P7_CACHE_DIR/tuning, default ~/.cache/p7/tuning);
 * else, with P7_GEMM_TUNING=auto (the default), a measurement of a few candidates on
 * three GEMM shapes (about a second with a warm PoCL cache, a few seconds cold), which
 * is then stored; P7_GEMM_TUNING=quick measures two candidates on small shapes,
 * P7_GEMM_TUNING=off never measures (without a stored choice: the default for the
 * device's preferred vector width). A stored file that is unreadable or written for another device is ignored
 * and replaced; the reason is in p7_gemm_tuning.note (and on stderr with P7_VERBOSE=1). */
typedef enum p7_gemm_tuning_origin {
    P7_GEMM_TUNING_DEFAULT = 0,  /* from the device's preferred vector width, not measured */
    P7_GEMM_TUNING_MEASURED = 1, /* measured by this process (and stored) */
    P7_GEMM_TUNING_STORED = 2,   /* measured earlier, read from the store */
    P7_GEMM_TUNING_OVERRIDE = 3  /* P7_GEMM_TILE / P7_GEMM_KC */
} p7_gemm_tuning_origin;

typedef struct p7_gemm_tuning {
    int tile_rows, tile_cols;     /* MR x NR */
    int vector_width;             /* floats per vector of a tile row */
    int k_block;                  /* deepest K block (KC) */
    p7_gemm_tuning_origin origin;
    double gflops;                /* the choice's GFLOP/s over the tuning shapes; 0 if not measured */
    char path[1024];              /* the store file for this device ("" when there is none) */
    char note[512];               /* what went wrong with a stored file or a setting, "" if nothing */
} p7_gemm_tuning;

/* The device's tuning, resolved (and measured, see above) on the first call. */
P7_API p7_status p7_gemm_tuning_get(p7_device *device, p7_gemm_tuning *out);

/* "default", "measured", "stored", "override". */
P7_API const char *p7_gemm_tuning_origin_name(p7_gemm_tuning_origin origin);

/* Receives one line of progress (a candidate's GFLOP/s per shape, the choice). */
typedef void (*p7_gemm_tune_report)(void *context, const char *line);

enum {
    P7_GEMM_TUNE_QUICK = 1,       /* two candidates on small shapes (tests) */
    P7_GEMM_TUNE_KEEP_STORED = 2, /* a valid stored choice is returned without measuring */
    P7_GEMM_TUNE_ALL = 4          /* measure every candidate, not only the device class's */
};

/* Measures the candidates now, stores the best for this device and applies it (P7_GEMM_TILE
 * and P7_GEMM_TUNING are not consulted). `report` may be NULL. */
P7_API p7_status p7_gemm_tune(p7_device *device, unsigned flags, p7_gemm_tune_report report, void *context,
                              p7_gemm_tuning *out);

#ifdef __cplusplus
}
#endif

#endif
