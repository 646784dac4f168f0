/* The p7 GEMM kernel's shape per device (internal): the candidates, the device's
 * choice (gemm_tuning.c) and the file that stores it (gemm_tuning_store.c). */
#ifndef P7_GEMM_TUNING_H
#define P7_GEMM_TUNING_H

#include "runtime/runtime.h"
#include "p7/gemm.h"

/* Build options of kernels/gemm_p7.cl (mr, nr, vw) and the host's K blocking (kc). */
typedef struct p7_gemm_p7_params {
    int mr;  /* tile rows: even, 2..P7_GEMM_MR_MAX */
    int nr;  /* tile columns: 8, 16 or 32, so it divides conv2d's 32-wide packed B panels */
    int vw;  /* floats per vector: 4, 8 or 16, dividing nr into at most 4 vectors */
    int kc;  /* deepest K block */
} p7_gemm_p7_params;

#define P7_GEMM_MR_MAX 12
#define P7_GEMM_NR_MAX 32
#define P7_GEMM_KC_MIN 16
#define P7_GEMM_KC_MAX 65536

/* NULL when `params` is a shape the kernel builds; otherwise what is wrong, for a message. */
const char *p7_gemm_p7_params_problem(const p7_gemm_p7_params *params);

/* "8x32/16 kc 768"; returns buf. */
const char *p7_gemm_p7_params_format(const p7_gemm_p7_params *params, char *buf, size_t size);

/* Parses P7_GEMM_TILE's "MRxNR" or "MRxNR/VW" (vw 0 when not given). 0 on success. */
int p7_gemm_p7_tile_parse(const char *text, p7_gemm_p7_params *out);

/* Every candidate tile, AVX-512-shaped, AVX2-shaped and generic (tests run each). */
size_t p7_gemm_p7_candidate_count(void);
const p7_gemm_p7_params *p7_gemm_p7_candidate(size_t index);

/* The params the device's GEMMs use, resolved on the first call (p7/gemm.h says how). */
p7_status p7_gemm_p7_device_params(p7_device *device, p7_gemm_p7_params *out);

/* p7's GEMM with the given params instead of the device's (tests, tuning). Takes
 * arguments already checked by gemm.c; fails on params the kernel cannot build. */
p7_status p7_gemm_p7_run_with(p7_device *device, const p7_gemm_p7_params *params, const p7_gemm_desc *desc,
                              cl_mem a, cl_mem b, cl_mem c);

/* `batch` products with A and B both packed (gemm_packed.h's p7_gemm_packed_batched),
 * with the device's params or with `params` (A's panels then have params->mr rows). */
p7_status p7_gemm_p7_run_packed_batched(p7_device *device, const p7_gemm_desc *desc, size_t batch, cl_mem ap,
                                        size_t ap_offset, size_t a_stride, cl_mem bp, size_t bp_offset,
                                        size_t b_stride, cl_mem c, size_t c_stride);
p7_status p7_gemm_p7_run_packed_batched_with(p7_device *device, const p7_gemm_p7_params *params,
                                             const p7_gemm_desc *desc, size_t batch, cl_mem ap, size_t ap_offset,
                                             size_t a_stride, cl_mem bp, size_t bp_offset, size_t b_stride,
                                             cl_mem c, size_t c_stride);

/* The same with B packed in conv2d's 32-wide panels (gemm_packed.h's layout). */
p7_status p7_gemm_p7_run_packed_b_with(p7_device *device, const p7_gemm_p7_params *params, const p7_gemm_desc *desc,
                                       cl_mem a, cl_mem bp, size_t bp_offset, cl_mem c);

/* ---- the store (gemm_tuning_store.c) ---- */

/* What a stored choice is valid for. */
typedef struct p7_gemm_tuning_identity {
    char device[128], driver[64], platform[128];
    char kernel[65]; /* SHA-256 (hex) of kernels/gemm_p7.cl */
} p7_gemm_tuning_identity;

void p7_gemm_tuning_identity_of(const p7_device *device, p7_gemm_tuning_identity *out);

/* <tuning_dir>/gemm-<SHA-256 of format, identity>.txt */
void p7_gemm_tuning_store_path(const char *tuning_dir, const p7_gemm_tuning_identity *id, char *path, size_t size);

/* Writes the choice to a temporary file in the same folder and renames it over `path`
 * (creating the folder), so readers never see a torn file. */
p7_status p7_gemm_tuning_store_write(const char *path, const p7_gemm_tuning_identity *id,
                                     const p7_gemm_p7_params *params, double gflops);

/* Reads a stored choice. P7_ERROR_IO when there is no file; P7_ERROR_FORMAT, with a
 * message naming the file and the field, when it is truncated, of another format
 * version, written for another device/driver/kernel, or holds a shape the kernel cannot
 * build. */
p7_status p7_gemm_tuning_store_read(const char *path, const p7_gemm_tuning_identity *id,
                                    p7_gemm_p7_params *params, double *gflops);

#endif
