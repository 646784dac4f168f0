/* p7 ops: the differentiable operations of the layer set.
 *
 * Each op allocates its output, enqueues the forward kernels, and — when `tape` is
 * recording and an input requires gradients — records itself for the backward pass
 * (see p7/autograd.h). The caller owns one reference to every output (release it
 * with p7_tensor_release; the tape holds its own). Layout is NCHW. BatchEnsemble
 * ops take `members` (M): rows are member-major, row r belongs to member
 * r / (rows / M), and per-member vectors have shape [M, C]. */
#ifndef P7_OPS_H
#define P7_OPS_H

#include <stddef.h>

#include <CL/cl.h>

#include "p7/autograd.h"
#include "p7/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x [N,C,H,W], w [O,C,K,K], b [O] or NULL -> [N,O,OH,OW] */
P7_API p7_status p7_conv2d(p7_tape *tape, p7_tensor *x, p7_tensor *w, p7_tensor *b, int stride, int pad, p7_tensor **y);
/* x [N,I], w [O,I], b [O] or NULL -> [N,O] = x w^T + b */
P7_API p7_status p7_linear(p7_tape *tape, p7_tensor *x, p7_tensor *w, p7_tensor *b, p7_tensor **y);
P7_API p7_status p7_relu(p7_tape *tape, p7_tensor *x, p7_tensor **y);
/* relu in x's own memory: *y is a new tensor over x's storage, and x's values become
 * relu(x). Gradients are as p7_relu's (x and *y keep separate gradients). Only for an x
 * that nothing reads afterwards but this op: no other op takes it, and its producer's
 * backward does not read its own output (true of every op but relu and the softmaxes).
 * Saves one activation per use; the model program uses it after its layers. */
P7_API p7_status p7_relu_inplace(p7_tape *tape, p7_tensor *x, p7_tensor **y);
/* window k, stride s, no padding */
P7_API p7_status p7_maxpool2d(p7_tape *tape, p7_tensor *x, int k, int s, p7_tensor **y);
/* Same elements, new shape (one extent may be -1); p7_flatten keeps axis 0. */
P7_API p7_status p7_reshape(p7_tape *tape, p7_tensor *x, int ndim, const int64_t *shape, p7_tensor **y);
P7_API p7_status p7_flatten(p7_tape *tape, p7_tensor *x, p7_tensor **y);
P7_API p7_status p7_add(p7_tape *tape, p7_tensor *a, p7_tensor *b, p7_tensor **y);
P7_API p7_status p7_mul(p7_tape *tape, p7_tensor *a, p7_tensor *b, p7_tensor **y);
/* x [N,C,...] times / plus v [M,C] broadcast over member rows and positions. With
 * M = 1 this is a per-channel scale / bias. */
P7_API p7_status p7_channel_mul(p7_tape *tape, p7_tensor *x, p7_tensor *v, int members, p7_tensor **y);
P7_API p7_status p7_channel_add(p7_tape *tape, p7_tensor *x, p7_tensor *v, int members, p7_tensor **y);
/* x [B,...] -> [M*B,...] (M member-major copies); and the mean over members back. */
P7_API p7_status p7_tile_members(p7_tape *tape, p7_tensor *x, int members, p7_tensor **y);
P7_API p7_status p7_member_mean(p7_tape *tape, p7_tensor *x, int members, p7_tensor **y);
/* Rows along axis 0. rows_slice: rows [start, start + count) of x, a view (no copy);
 * its backward writes dy into those rows of dx (the other rows get zero). rows_concat:
 * the `n` tensors (1 <= n <= P7_ROWS_CONCAT_MAX, equal trailing extents) one after
 * another along axis 0, copied on the device; its backward slices dy back. Member
 * groups of independent layers (p7/nn.h) run each member on its rows with these. */
#define P7_ROWS_CONCAT_MAX 16
P7_API p7_status p7_rows_slice(p7_tape *tape, p7_tensor *x, int64_t start, int64_t count, p7_tensor **y);
P7_API p7_status p7_rows_concat(p7_tape *tape, p7_tensor *const *xs, int n, p7_tensor **y);
/* over the last axis of [N,K] */
P7_API p7_status p7_softmax(p7_tape *tape, p7_tensor *x, p7_tensor **y);
P7_API p7_status p7_log_softmax(p7_tape *tape, p7_tensor *x, p7_tensor **y);
/* mean over rows of -log softmax(logits)[label]; labels: N int32 at element offset
 * `labels_offset` of a device buffer, kept alive by the tape until backward. */
P7_API p7_status p7_cross_entropy(p7_tape *tape, p7_tensor *logits, cl_mem labels, size_t labels_offset, p7_tensor **loss);
P7_API p7_status p7_sum(p7_tape *tape, p7_tensor *x, p7_tensor **y);
P7_API p7_status p7_mean(p7_tape *tape, p7_tensor *x, p7_tensor **y);
/* BatchNorm2d over x [N,C,H,W] (or [N,C]); weight/bias [M,C] per-member affine or
 * NULL (affine=False); running_mean/var [C] updated in training (may be NULL);
 * training = 0 normalises with the running statistics. BatchEnsemble pools the
 * statistics over all members (as the original study did). */
P7_API p7_status p7_batchnorm2d(p7_tape *tape, p7_tensor *x, p7_tensor *weight, p7_tensor *bias, int members,
                         p7_tensor *running_mean, p7_tensor *running_var, int training, float momentum,
                         float eps, p7_tensor **y);

/* Not an op: scale `count` gradients so their global L2 norm is at most max_norm, on
 * the device (no host round trip); total_norm [1] receives the norm before clipping. */
P7_API p7_status p7_clip_grad_norm(p7_tensor *const *grads, size_t count, float max_norm, p7_tensor *total_norm);

#ifdef __cplusplus
}
#endif

#endif
