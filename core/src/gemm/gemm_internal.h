/* The GEMM backends behind p7_gemm (internal). Arguments are already checked by
 * the dispatcher in gemm.c: sizes >= 1, leading dimensions and buffer extents fit. */
#ifndef P7_GEMM_INTERNAL_H
#define P7_GEMM_INTERNAL_H

#include "gemm/gemm_packed.h"
#include "gemm/gemm_tuning.h"

/* p7's packed-panel kernel (gemm_p7.c, kernels/gemm_p7.cl). */
p7_status p7_gemm_p7_run(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem b, cl_mem c);

/* The same with B already packed, as im2col can write it (conv2d on CPU devices):
 * bp[(q*K + k)*32 + j] = B[k][q*32 + j], zero past column N, at element offset
 * bp_offset. Only A is packed here; desc's B fields are ignored. */
p7_status p7_gemm_p7_run_packed_b(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem bp,
                                  size_t bp_offset, cl_mem c);

/* Bytes of the device's GEMM workspace that p7_gemm_p7_run (b_packed 0) or
 * p7_gemm_p7_run_packed_b (b_packed 1) asks for with tile `params`: the memory estimate
 * uses it too. params NULL: the most any allowed tile asks for. */
size_t p7_gemm_p7_workspace_bytes(const p7_gemm_p7_params *params, size_t m, size_t n, size_t k, int b_packed);

/* CLBlast (gemm_clblast.c). */
p7_status p7_gemm_clblast_run(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem b, cl_mem c);

#endif
