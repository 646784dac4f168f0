/* The GEMM backends behind p7_gemm (internal). Arguments are already checked by
 * the dispatcher in gemm.c: sizes >= 1, leading dimensions and buffer extents fit. */
#ifndef P7_GEMM_INTERNAL_H
#define P7_GEMM_INTERNAL_H

#include "p7_internal.h"
#include "p7/gemm.h"

/* p7's packed-panel kernel (gemm_p7.c, kernels/gemm_p7.cl). */
p7_status p7_gemm_p7_run(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem b, cl_mem c);

/* CLBlast (gemm_clblast.c). */
p7_status p7_gemm_clblast_run(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem b, cl_mem c);
void p7_gemm_clblast_shutdown(p7_device *device);

#endif
