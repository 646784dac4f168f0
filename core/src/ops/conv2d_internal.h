/* conv2d pieces that are not ops (internal): the im2col that writes the p7 GEMM's
 * packed B panels directly, used by p7_conv2d_forward with p7's GEMM. */
#ifndef P7_CONV2D_INTERNAL_H
#define P7_CONV2D_INTERNAL_H

#include "tensor/tensor_internal.h"

/* Width of a B panel in the p7 GEMM (NR in kernels/gemm_p7.cl). */
#define P7_CONV_PANEL 32

/* Output planes up to this many pixels use the packed im2col in the forward pass
 * (stride-1 "same" convolutions use it on any plane; see p7_conv2d_forward). */
#define P7_CONV_PACKED_MAX_PLANE 16

/* Floats needed for the packed col matrix of x [N,C,H,W] with kernel k, stride s, pad p:
 * ceil(N*OH*OW / 32) panels of C*k*k rows of 32. */
size_t p7_conv2d_packed_col_floats(const p7_tensor *x, int k, int stride, int pad);

/* Writes the packed col matrix into bp at element offset bp_offset (enqueued only). */
p7_status p7_conv2d_im2col_packed(const p7_tensor *x, int k, int stride, int pad, cl_mem bp, size_t bp_offset);

/* What one conv2d of x [n, c, h, w] with o filters of k x k allocates besides its
 * output: the col matrix and the [O, N*P] matrix T (floats), and the p7 GEMM workspace
 * each GEMM asks for (bytes; 0 with CLBlast, which keeps its own). */
typedef struct p7_conv2d_scratch {
    int forward_packed;           /* im2col writes the GEMM's packed B panels */
    int backward_packed_t;        /* dW's col^T is written packed straight from x */
    size_t forward_col_floats;
    size_t backward_col_floats;   /* col^T for dW, then dcol for dx; 0 when neither is needed */
    size_t t_floats;              /* both passes */
    size_t u_floats;              /* Winograd's transformed weights, then its dW products; 0 without it */
    int winograd;                 /* every pass runs as Winograd F(2x2, 3x3): no im2col */
    size_t forward_gemm_bytes, backward_dw_gemm_bytes, backward_dx_gemm_bytes;
} p7_conv2d_scratch;

void p7_conv2d_scratch_of(size_t n, size_t c, size_t h, size_t w, size_t o, size_t k, int stride, int pad,
                          p7_device *device, p7_gemm_backend backend, int need_dx, int need_dw,
                          p7_conv2d_scratch *out);

#endif
