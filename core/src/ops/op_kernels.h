/* Forward/backward function pairs for every op of the layer set (internal).
 *
 * These are the device-level building blocks; core/src/ops/ops.c is the one place that
 * lists every autograd op and calls these for its forward and its backward.
 *
 * Conventions, for every function here:
 * - Layout is NCHW, row-major, float32. A [N, C] tensor is accepted wherever a
 *   [N, C, 1, 1] one is (H = W = 1).
 * - The caller allocates every output; the function only enqueues kernels (never
 *   waits, never reads back to the host). All tensors are on the same device.
 * - Gradient outputs come with an `accumulate` flag: 0 overwrites the output
 *   (out = value), 1 adds to it (out += value). Autograd uses 1 when a tensor
 *   already received a gradient from another use (parameter sharing). A NULL
 *   gradient output means "not needed": skip that work.
 * - Reductions are deterministic: fixed-order trees, no float atomics, so the same
 *   inputs give bit-identical results run after run on one device.
 * - Shapes are checked; a mismatch returns P7_ERROR_INVALID_SHAPE with a message
 *   naming the op and the shapes.
 * - Member-major BatchEnsemble layout: with M members and N rows, row r belongs to
 *   member r / (N / M); M must divide N. Per-member vectors have shape [M, C].
 */
#ifndef P7_OP_KERNELS_H
#define P7_OP_KERNELS_H

#include "tensor/tensor_internal.h"
#include "p7/memory.h"
#include "p7/tensor.h"

/* ---- conv2d (conv2d.c, kernels/conv2d.cl) ----
 * x [N,C,H,W], w [O,C,K,K], b [O] or NULL, y [N,O,OH,OW],
 * OH = (H + 2*pad - K) / stride + 1 (likewise OW). As im2col + ONE whole-batch GEMM
 * per call on the p7 GEMM (never per image). */
p7_status p7_conv2d_forward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *b, int stride,
                            int pad, p7_tensor *y);
p7_status p7_conv2d_backward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *dy, int stride,
                             int pad, p7_tensor *dx, int dx_accumulate, p7_tensor *dw, int dw_accumulate,
                             p7_tensor *db, int db_accumulate);

/* ---- linear (linear.c): y[N,O] = x[N,I] w[O,I]^T + b[O] ---- */
p7_status p7_linear_forward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *b, p7_tensor *y);
p7_status p7_linear_backward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *dy, p7_tensor *dx,
                             int dx_accumulate, p7_tensor *dw, int dw_accumulate, p7_tensor *db,
                             int db_accumulate);

/* ---- maxpool2d (pool.c, kernels/pool.cl): window k, stride s, no padding ----
 * indices (int32, one per y element, allocated by the caller: numel(y)*4 bytes)
 * records the argmax (flat index within the image plane) for the backward pass,
 * which is a gather (each dx element sums the windows that chose it): no atomics. */
p7_status p7_maxpool2d_forward(const p7_tensor *x, int k, int s, p7_tensor *y, p7_buffer *indices);
p7_status p7_maxpool2d_backward(const p7_tensor *dy, const p7_buffer *indices, int k, int s, p7_tensor *dx,
                                int dx_accumulate);

/* ---- batchnorm2d (batchnorm.c, kernels/batchnorm.cl) ----
 * Statistics per channel over all N rows and H*W positions (all BatchEnsemble
 * members pooled, as the original study did); normalisation uses the biased
 * variance, eps inside the square root. weight/bias: per-member affine [M, C]
 * (M = members, 1 for plain BatchNorm2d), or both NULL for affine=False.
 * training != 0: batch statistics; save_mean/save_invstd [C] receive mean and
 * 1/sqrt(var+eps); running_mean/running_var [C] (may be NULL) are updated with
 * momentum and the UNBIASED variance (n/(n-1)), like PyTorch.
 * training == 0: running statistics are used and copied into save_mean/save_invstd. */
p7_status p7_batchnorm2d_forward(const p7_tensor *x, const p7_tensor *weight, const p7_tensor *bias,
                                 int members, p7_tensor *running_mean, p7_tensor *running_var,
                                 int training, float momentum, float eps, p7_tensor *save_mean,
                                 p7_tensor *save_invstd, p7_tensor *y);
p7_status p7_batchnorm2d_backward(const p7_tensor *x, const p7_tensor *weight, int members, int training,
                                  const p7_tensor *save_mean, const p7_tensor *save_invstd,
                                  const p7_tensor *dy, p7_tensor *dx, int dx_accumulate,
                                  p7_tensor *dweight, int dweight_accumulate, p7_tensor *dbias,
                                  int dbias_accumulate);

/* ---- softmax family (softmax.c, kernels/softmax.cl), over the last axis of [N, K] ---- */
p7_status p7_softmax_forward(const p7_tensor *x, p7_tensor *y);
p7_status p7_softmax_backward(const p7_tensor *y, const p7_tensor *dy, p7_tensor *dx, int dx_accumulate);
p7_status p7_log_softmax_forward(const p7_tensor *x, p7_tensor *y);
p7_status p7_log_softmax_backward(const p7_tensor *y, const p7_tensor *dy, p7_tensor *dx, int dx_accumulate);
/* loss[1] = mean over rows i of -log softmax(logits)[i, labels[i]]. labels: int32 at
 * element offset labels_offset of a cl_mem, values in 0..K-1 (a row whose label is
 * outside that range contributes NaN, so a bad label can never pass silently).
 * probs [N,K] receives softmax(logits) for the backward pass. */
p7_status p7_cross_entropy_forward(const p7_tensor *logits, cl_mem labels, size_t labels_offset,
                                   p7_tensor *probs, p7_tensor *loss);
/* dlogits (+)= dloss[0] * (probs - onehot(labels)) / N */
p7_status p7_cross_entropy_backward(const p7_tensor *probs, cl_mem labels, size_t labels_offset,
                                    const p7_tensor *dloss, p7_tensor *dlogits, int dlogits_accumulate);

/* ---- reductions (reduce.c, kernels/reduce.cl) ---- */
/* y[1] = scale * sum(x) (scale 1/numel gives the mean) */
p7_status p7_sum_forward(const p7_tensor *x, float scale, p7_tensor *y);
/* dx (+)= scale * dy[0] */
p7_status p7_sum_backward(const p7_tensor *dy, float scale, p7_tensor *dx, int dx_accumulate);
/* p7_clip_grad_norm (reduce.c) is public: p7/ops.h. */

/* ---- elementwise and BatchEnsemble plumbing (elementwise.c, kernels/elementwise.cl) ---- */
p7_status p7_relu_forward(const p7_tensor *x, p7_tensor *y);
p7_status p7_relu_backward(const p7_tensor *y, const p7_tensor *dy, p7_tensor *dx, int dx_accumulate);
/* y = a + b, y = a * b (same shapes) */
p7_status p7_add_forward(const p7_tensor *a, const p7_tensor *b, p7_tensor *y);
p7_status p7_mul_forward(const p7_tensor *a, const p7_tensor *b, p7_tensor *y);
/* out (+)= alpha * x, elementwise (same element count): gradient routing, axpy */
p7_status p7_axpy(float alpha, const p7_tensor *x, p7_tensor *out, int accumulate);
/* Per-(member, channel) broadcast over x [N,C,H,W] with v [M,C]:
 * channel_mul: y = x * v[member(r), c];  channel_add: y = x + v[member(r), c]. */
p7_status p7_channel_mul_forward(const p7_tensor *x, const p7_tensor *v, int members, p7_tensor *y);
p7_status p7_channel_add_forward(const p7_tensor *x, const p7_tensor *v, int members, p7_tensor *y);
/* dv[m,c] (+)= sum over member m's rows and H*W of dy (* x for mul) */
p7_status p7_channel_reduce_backward(const p7_tensor *dy, const p7_tensor *x, int members, p7_tensor *dv,
                                     int dv_accumulate);
/* dx (+)= dy * v[member(r), c] */
p7_status p7_channel_mul_backward_x(const p7_tensor *dy, const p7_tensor *v, int members, p7_tensor *dx,
                                    int dx_accumulate);
/* tile: x [B, ...] -> y [M*B, ...] (member-major copies); backward sums the copies.
 * member_mean: x [M*B, ...] -> y [B, ...] mean over members; backward spreads dy/M. */
p7_status p7_tile_members_forward(const p7_tensor *x, int members, p7_tensor *y);
p7_status p7_tile_members_backward(const p7_tensor *dy, int members, p7_tensor *dx, int dx_accumulate);
p7_status p7_member_mean_forward(const p7_tensor *x, int members, p7_tensor *y);
p7_status p7_member_mean_backward(const p7_tensor *dy, int members, p7_tensor *dx, int dx_accumulate);

#endif
