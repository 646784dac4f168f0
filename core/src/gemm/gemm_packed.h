/* What the GEMM layer offers the layers above beyond p7/gemm.h (internal): a GEMM whose
 * B operand is already packed in p7's panel layout, which conv2d's im2col writes
 * directly on CPU devices, and the workspace each call takes, for the memory estimate.
 * Both go through the dispatcher in gemm.c, which checks the arguments; nothing above
 * this layer calls a backend itself. */
#ifndef P7_GEMM_PACKED_H
#define P7_GEMM_PACKED_H

#include "runtime/runtime.h"
#include "p7/gemm.h"

/* Width of p7's B panels (NR in kernels/gemm_p7.cl). */
#define P7_GEMM_P7_PANEL 32

/* Nonzero when `backend` (P7_GEMM_AUTO: the device's; device may be NULL otherwise)
 * takes packed B operands. */
int p7_gemm_takes_packed_b(const p7_device *device, p7_gemm_backend backend);

/* Floats of the packed B for a K x N operand: bp[(q*K + k)*32 + j] = B[k][q*32 + j], zero
 * past column N. */
size_t p7_gemm_packed_b_floats(size_t n, size_t k);

/* C = alpha * op(A) * B + beta * C with B packed at element offset bp_offset of bp
 * (desc's B fields are ignored). Checks sizes and buffer extents like p7_gemm; fails
 * with P7_ERROR_UNSUPPORTED on a device whose backend does not take packed B. */
p7_status p7_gemm_packed_b(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem bp, size_t bp_offset,
                           cl_mem c);

/* Rows of the device's packed A panels (p7's tile MR): A packed is
 * ap[(p*K + k)*MR + r] = A[p*MR + r][k], zero (or anything: those rows are never stored)
 * past row M. Fails with P7_ERROR_UNSUPPORTED where the backend takes no packed operands. */
p7_status p7_gemm_packed_a_rows(p7_device *device, int *mr);

/* Floats of a packed A of m x k in panels of mr rows. */
size_t p7_gemm_packed_a_floats(size_t m, size_t k, int mr);

/* `batch` products C_s = alpha * A_s * B_s + beta * C_s in one launch per K block (desc's
 * trans flags, lda, ldb and A/B offsets are ignored): A_s packed at ap_offset + s*a_stride,
 * B_s packed at bp_offset + s*b_stride, C_s at desc->c_offset + s*c_stride (ldc). Winograd's
 * 16 products per convolution go through here. */
p7_status p7_gemm_packed_batched(p7_device *device, const p7_gemm_desc *desc, size_t batch, cl_mem ap,
                                 size_t ap_offset, size_t a_stride, cl_mem bp, size_t bp_offset, size_t b_stride,
                                 cl_mem c, size_t c_stride);

/* Bytes of device workspace one GEMM of m x n x k takes on `backend` (0 when the backend
 * keeps its own, as CLBlast does); b_packed for p7_gemm_packed_b. The p7 backend's depends
 * on the device's tile (resolved here if it is not yet); with device NULL, the most any
 * tile takes. */
size_t p7_gemm_workspace_bytes(p7_device *device, p7_gemm_backend backend, size_t m, size_t n, size_t k,
                               int b_packed);

#endif
