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

#ifdef __cplusplus
}
#endif

#endif
