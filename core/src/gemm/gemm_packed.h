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

/* Bytes of device workspace one GEMM of m x n x k takes on `backend` (0 when the backend
 * keeps its own, as CLBlast does); b_packed for p7_gemm_packed_b. The p7 backend's depends
 * on the device's tile (resolved here if it is not yet); with device NULL, the most any
 * tile takes. */
size_t p7_gemm_workspace_bytes(p7_device *device, p7_gemm_backend backend, size_t m, size_t n, size_t k,
                               int b_packed);

#endif
