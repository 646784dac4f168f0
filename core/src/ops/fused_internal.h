/* Evaluation-only fused forms (internal): a convolution whose output stage applies a
 * per-channel affine (conv bias, BatchEnsemble scaling and bias, an evaluation
 * BatchNorm folded in) and an optional ReLU in the one pass that already moves the
 * GEMM's result into NCHW. No tape: the model uses these only when nothing records
 * (nn_fuse.c), and keeps the separate ops for training. */
#ifndef P7_FUSED_INTERNAL_H
#define P7_FUSED_INTERNAL_H

#include "tensor/tensor_internal.h"

/* y = relu?(BN?(conv(x * in_scale, w) * scale + shift)) per member m and channel c, where
 * image n of y belongs to member n / (N / members). Every vector is [C] (shared by the
 * members) or [M, C]; NULL scale means 1, NULL shift 0; without BatchNorm, a scale and a
 * shift given together must be the same kind (the BatchNorm fold takes any mix).
 * in_scale (the BatchEnsemble alpha, NULL: none) is [M, C_in], applied to x inside the
 * packed im2col where the conv is a stride-1 "same" one on p7's GEMM, else as a pass of
 * its own.
 * With bn_mean set, an evaluation BatchNorm follows the affine:
 *   (z - bn_mean[c]) / sqrt(bn_var[c] + bn_eps) * bn_weight[m, c] + bn_bias[m, c]
 * (NULL weight 1, NULL bias 0), folded into one scale and shift on the device.
 * With pool_k > 0, a max pooling (window pool_k, stride pool_s, no padding) follows and
 * y is the pooled [N, O, PH, PW]: the full-size activation is never written. */
typedef struct p7_conv_output_stage {
    int members;
    const p7_tensor *in_scale;
    const p7_tensor *scale, *shift;
    const p7_tensor *bn_mean, *bn_var, *bn_weight, *bn_bias;
    float bn_eps;
    int relu;
    int pool_k, pool_s;
} p7_conv_output_stage;

/* conv2d forward (im2col + GEMM as p7_conv2d_forward) with `stage` applied while
 * unfolding T[O, N*P] into y [N, O, OH, OW], or the pooled [N, O, PH, PW]
 * (kernels/conv2d.cl, conv2d_unfold_output_affine[_pool]). Enqueues only. */
p7_status p7_conv2d_forward_stage(const p7_tensor *x, const p7_tensor *w, int stride, int pad,
                                  const p7_conv_output_stage *stage, p7_tensor *y);

/* The folded BatchNorm of a stage: writes scale [M, C] at element 0 of out and shift
 * [M, C] right after it (kernels/batchnorm.cl, batchnorm_fold_eval). C is the number of
 * elements of running_mean; every other vector is NULL, [C] or [M, C]. Enqueues only. */
p7_status p7_batchnorm2d_fold_eval(const p7_tensor *running_mean, const p7_tensor *running_var, float eps,
                                   const p7_tensor *weight, const p7_tensor *bias, const p7_tensor *pre_scale,
                                   const p7_tensor *pre_shift, int members, cl_mem out);

#endif
