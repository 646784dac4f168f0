/* BatchNorm2d over NCHW (H*W = hw; [N, C] is hw = 1), plain and BatchEnsemble.
 *
 * Built with -DP7_WG=<work-group size, a power of two> and, on fp64 devices,
 * -DP7_FP64=1. Statistics are reductions by one work-group per channel (or per
 * (member, channel)): each work-item sums a fixed, strided subset sequentially, then a
 * fixed tree combines the work-items, so results are bit-reproducible. Offsets are the
 * element offsets of tensor views. */

#include "reduce_tree.clh"

#ifdef P7_FP64
/* double has headroom enough for a plain running sum */
#define ACC_DECL(v) acc_t v = 0
#define ACC_ADD(v, x) (v += (acc_t)(x))
#else
/* Kahan compensation: a work-item may sum ~10^5 floats of one channel */
#define ACC_DECL(v) float v = 0.0f, v##_c = 0.0f
#define ACC_ADD(v, x)                    \
    do {                                 \
        const float y_ = (x) - v##_c;    \
        const float t_ = v + y_;         \
        v##_c = (t_ - v) - y_;           \
        v = t_;                          \
    } while (0)
#endif

/* The elements of channel c in rows [0, rows) of a member block, visited in a fixed
 * per-work-item order, one statement per element (`body` sees the flat element index
 * `i_` relative to the block's first row).
 *
 * P7_BN_PLANES (CPU devices): work-item lid takes whole planes n = lid, lid + P7_WG, ...
 * and runs through each plane's hw contiguous values, which a CPU streams fastest.
 * Otherwise (GPUs): neighbouring work-items take neighbouring elements (coalesced);
 * the flat index i = n * hw + p advances by P7_WG, split into whole rows and a
 * remainder so the walk needs no division per element. */
#ifdef P7_BN_PLANES
#define CHANNEL_WALK(rows, hw, channels, c, body)                                     \
    for (uint n_ = get_local_id(0); n_ < (rows); n_ += P7_WG) {                      \
        const ulong base_ = ((ulong)n_ * (channels) + (c)) * (hw);                     \
        for (uint p_ = 0; p_ < (hw); p_++) {                                          \
            const ulong i_ = base_ + p_;                                              \
            body;                                                                     \
        }                                                                             \
    }
#else
#define CHANNEL_WALK(rows, hw, channels, c, body)                                     \
    {                                                                                 \
        const uint step_rows_ = P7_WG / (hw), step_p_ = P7_WG % (hw);                \
        uint n_ = get_local_id(0) / (hw), p_ = get_local_id(0) % (hw);               \
        for (; n_ < (rows); n_ += step_rows_, p_ += step_p_, (p_ >= (hw) ? (p_ -= (hw), n_++) : 0)) { \
            const ulong i_ = ((ulong)n_ * (channels) + (c)) * (hw) + p_;              \
            body;                                                                     \
        }                                                                             \
    }
#endif

/* Work-item 0 stores channel c's mean and inverse std and updates the running estimates
 * (PyTorch keeps the unbiased variance in its running estimate). */
static void store_stats(const uint c, const acc_t mean, const acc_t var, const ulong count, const float momentum,
                        const float eps, __global float *save_mean, const ulong smo, __global float *save_invstd,
                        const ulong sio, __global float *running_mean, const ulong rmo, __global float *running_var,
                        const ulong rvo, const int has_running)
{
    if (get_local_id(0) != 0) return;
    save_mean[smo + c] = (float)mean;
    save_invstd[sio + c] = (float)((acc_t)1 / sqrt(var + (acc_t)eps));
    if (has_running) {
        const acc_t unbiased = var * (acc_t)count / (acc_t)(count - 1);
        running_mean[rmo + c] = (float)((1 - (acc_t)momentum) * running_mean[rmo + c] + (acc_t)momentum * mean);
        running_var[rvo + c] = (float)((1 - (acc_t)momentum) * running_var[rvo + c] + (acc_t)momentum * unbiased);
    }
}

/* Training statistics of channel c = group id. mean and the biased variance (two
 * passes: the second sums centred squares, which does not cancel catastrophically). */
__kernel void batchnorm_stats(__global const float *x, const ulong xo, const uint channels, const uint hw,
                          const uint rows, const float momentum, const float eps, __global float *save_mean,
                          const ulong smo, __global float *save_invstd, const ulong sio,
                          __global float *running_mean, const ulong rmo, __global float *running_var,
                          const ulong rvo, const int has_running)
{
    __local acc_t buf[P7_WG];
    const uint c = get_group_id(0);
    const ulong count = (ulong)rows * hw;

    /* Summing x - x0 (x0: the channel's first value) keeps a large common offset out of
     * the float accumulators, where it would cost the mean its low bits. */
    const float x0 = x[xo + (ulong)c * hw];
    ACC_DECL(s);
    CHANNEL_WALK(rows, hw, channels, c, ACC_ADD(s, x[xo + i_] - x0))
    const acc_t mean = (acc_t)x0 + tree_sum(buf, s) / (acc_t)count;

    ACC_DECL(q);
    CHANNEL_WALK(rows, hw, channels, c, const acc_t d = (acc_t)x[xo + i_] - mean; ACC_ADD(q, d * d))
    const acc_t var = tree_sum(buf, q) / (acc_t)count;
    store_stats(c, mean, var, count, momentum, eps, save_mean, smo, save_invstd, sio, running_mean, rmo, running_var,
                rvo, has_running);
}

#ifdef P7_BN_PLANES
/* The same statistics for planes of a multiple of 16 values (every plane of the study's
 * networks down to 4x4), on CPU devices: the scalar walk above is one dependent add per
 * value, which ran at ~4 GB/s per core on PoCL. Here a work-item sums each of its planes
 * in 16 float lanes (at most hw/16 values per lane), folds the lanes by a fixed tree and
 * adds the plane's total to its acc_t sum, so the order stays fixed and the float part
 * covers one plane only. The second pass centres on the float mean mf and corrects in
 * acc_t: sum (x - mean)^2 = sum (x - mf)^2 - 2 delta sum (x - mf) + count delta^2 with
 * delta = mean - mf. */
static float lanes_sum16(const float16 a)
{
    const float8 b = a.lo + a.hi;
    const float4 c = b.lo + b.hi;
    const float2 d = c.lo + c.hi;
    return d.lo + d.hi;
}

__kernel void batchnorm_stats_v16(__global const float *x, const ulong xo, const uint channels, const uint hw,
                                  const uint rows, const float momentum, const float eps, __global float *save_mean,
                                  const ulong smo, __global float *save_invstd, const ulong sio,
                                  __global float *running_mean, const ulong rmo, __global float *running_var,
                                  const ulong rvo, const int has_running)
{
    __local acc_t buf[P7_WG];
    const uint c = get_group_id(0), nv = hw / 16;
    const ulong count = (ulong)rows * hw;
    const float x0 = x[xo + (ulong)c * hw];
    ACC_DECL(s);
    for (uint n = get_local_id(0); n < rows; n += P7_WG) {
        const __global float *p = x + xo + ((ulong)n * channels + c) * hw;
        float16 a = (float16)(0.0f);
        for (uint v = 0; v < nv; v++) a += vload16(v, p) - x0;
        ACC_ADD(s, lanes_sum16(a));
    }
    const acc_t mean = (acc_t)x0 + tree_sum(buf, s) / (acc_t)count;
    const float mf = (float)mean;
    const acc_t delta = mean - (acc_t)mf;

    ACC_DECL(l);
    ACC_DECL(q);
    for (uint n = get_local_id(0); n < rows; n += P7_WG) {
        const __global float *p = x + xo + ((ulong)n * channels + c) * hw;
        float16 a = (float16)(0.0f), b = (float16)(0.0f);
        for (uint v = 0; v < nv; v++) {
            const float16 d = vload16(v, p) - mf;
            a += d;
            b += d * d;
        }
        ACC_ADD(l, lanes_sum16(a));
        ACC_ADD(q, lanes_sum16(b));
    }
    const acc_t sl = tree_sum(buf, l);
    const acc_t sq = tree_sum(buf, q);
    acc_t var = (sq - (acc_t)2 * delta * sl + (acc_t)count * delta * delta) / (acc_t)count;
    var = var > (acc_t)0 ? var : (acc_t)0;
    store_stats(c, mean, var, count, momentum, eps, save_mean, smo, save_invstd, sio, running_mean, rmo, running_var,
                rvo, has_running);
}
#endif

/* Evaluation: the running statistics stand in for the batch's. */
__kernel void batchnorm_eval_stats(__global const float *running_mean, const ulong rmo, __global const float *running_var,
                               const ulong rvo, const float eps, __global float *save_mean, const ulong smo,
                               __global float *save_invstd, const ulong sio, const uint channels)
{
    const uint c = get_global_id(0);
    if (c >= channels) return;
    save_mean[smo + c] = running_mean[rmo + c];
    save_invstd[sio + c] = (float)((acc_t)1 / sqrt((acc_t)running_var[rvo + c] + (acc_t)eps));
}

/* Evaluation BatchNorm folded into the affine stage before it (a convolution's output
 * stage): z = T * pre_scale[m, c] + pre_shift[m, c], then
 * y = (z - mean[c]) * invstd[c] * w[m, c] + b[m, c] = T * scale[m, c] + shift[m, c] with
 *   scale = pre_scale * invstd * w,  shift = (pre_shift - mean) * invstd * w + b.
 * Each vector is [M, C] (member stride C) or shared [C] (stride 0); missing ones are 1
 * (scales) or 0 (shifts). out: the M * C scales, then the M * C shifts. Computed in acc_t, so on fp64 devices the folded values are
 * the exact ones rounded once. One work-item per (m, c); global M * C. */
__kernel void batchnorm_fold_eval(__global const float *running_mean, const ulong rmo,
                                  __global const float *running_var, const ulong rvo, const float eps,
                                  __global const float *w, const ulong wo, const uint w_stride, const int has_w,
                                  __global const float *b, const ulong bo, const uint b_stride, const int has_b,
                                  __global const float *pre_scale, const ulong pso, const uint ps_stride,
                                  const int has_pre_scale, __global const float *pre_shift, const ulong pho,
                                  const uint ph_stride, const int has_pre_shift, const uint channels,
                                  const uint members, __global float *out)
{
    const uint i = get_global_id(0);
    if (i >= members * channels) return;
    const uint m = i / channels, c = i % channels;
    acc_t k = (acc_t)1 / sqrt((acc_t)running_var[rvo + c] + (acc_t)eps);
    if (has_w) k *= (acc_t)w[wo + (ulong)m * w_stride + c];
    const acc_t g = has_pre_scale ? (acc_t)pre_scale[pso + (ulong)m * ps_stride + c] : (acc_t)1;
    const acc_t h = has_pre_shift ? (acc_t)pre_shift[pho + (ulong)m * ph_stride + c] : (acc_t)0;
    const acc_t beta = has_b ? (acc_t)b[bo + (ulong)m * b_stride + c] : (acc_t)0;
    out[i] = (float)(g * k);                                                   /* scale */
    out[(ulong)members * channels + i] = (float)((h - (acc_t)running_mean[rmo + c]) * k + beta); /* shift */
}

/* y = (x - mean[c]) * invstd[c] * w[m, c] + b[m, c]; global (hw, C, N). */
__kernel void batchnorm_apply(__global const float *x, const ulong xo, __global const float *mean, const ulong mo,
                          __global const float *invstd, const ulong io, __global const float *w, const ulong wo,
                          const int has_w, __global const float *b, const ulong bo, const int has_b,
                          const uint rows_per_member, __global float *y, const ulong yo)
{
    const uint p = get_global_id(0), c = get_global_id(1), n = get_global_id(2);
    const uint hw = get_global_size(0), channels = get_global_size(1);
    const uint m = n / rows_per_member;
    float scale = invstd[io + c];
    if (has_w) scale *= w[wo + (ulong)m * channels + c];
    const float shift = has_b ? b[bo + (ulong)m * channels + c] : 0.0f;
    const ulong i = ((ulong)n * channels + c) * hw + p;
    y[yo + i] = (x[xo + i] - mean[mo + c]) * scale + shift;
}

/* Backward reduction for group g = m * C + c over member m's rows (all rows when
 * groups == 1): sum(dy) and sum(dy * xhat). Writes them to sums[g] and sums[G*C + g]
 * for the dx pass and, when asked (mode 1 write, 2 add), to dbias and dweight. */
__kernel void batchnorm_reduce(__global const float *x, const ulong xo, __global const float *dy, const ulong dyo,
                           __global const float *mean, const ulong mo, __global const float *invstd,
                           const ulong io, const uint channels, const uint hw, const uint rows_per_group,
                           const uint groups, __global float *sums, __global float *dw, const ulong dwo,
                           const int dw_mode, __global float *db, const ulong dbo, const int db_mode)
{
    __local acc_t buf[P7_WG];
    const uint g = get_group_id(0);
    const uint c = g % channels, m = g / channels;
    const acc_t mu = mean[mo + c], is = invstd[io + c];
    /* member m's block starts rows_per_group whole rows in */
    const ulong block = (ulong)m * rows_per_group * channels * hw;

    ACC_DECL(sd);
    ACC_DECL(sdx);
    CHANNEL_WALK(rows_per_group, hw, channels, c, const acc_t d = dy[dyo + block + i_]; ACC_ADD(sd, d);
                 ACC_ADD(sdx, d * (((acc_t)x[xo + block + i_] - mu) * is)))
    const acc_t tot_d = tree_sum(buf, sd);
    const acc_t tot_dx = tree_sum(buf, sdx);
    if (get_local_id(0) == 0) {
        sums[g] = (float)tot_d;
        sums[(ulong)groups * channels + g] = (float)tot_dx;
        if (db_mode) db[dbo + g] = (float)tot_d + (db_mode == 2 ? db[dbo + g] : 0.0f);
        if (dw_mode) dw[dwo + g] = (float)tot_dx + (dw_mode == 2 ? dw[dwo + g] : 0.0f);
    }
}

#ifdef P7_BN_PLANES
/* batchnorm_reduce for planes of a multiple of 16 values on CPU devices, in 16 float
 * lanes per plane as batchnorm_stats_v16. mean[c] is a float, so x - mean is centred
 * exactly as the scalar kernel centres it; invstd multiplies the plane totals once. */
__kernel void batchnorm_reduce_v16(__global const float *x, const ulong xo, __global const float *dy, const ulong dyo,
                                   __global const float *mean, const ulong mo, __global const float *invstd,
                                   const ulong io, const uint channels, const uint hw, const uint rows_per_group,
                                   const uint groups, __global float *sums, __global float *dw, const ulong dwo,
                                   const int dw_mode, __global float *db, const ulong dbo, const int db_mode)
{
    __local acc_t buf[P7_WG];
    const uint g = get_group_id(0), nv = hw / 16;
    const uint c = g % channels, m = g / channels;
    const float mu = mean[mo + c];
    const acc_t is = invstd[io + c];
    const ulong block = (ulong)m * rows_per_group * channels * hw;

    ACC_DECL(sd);
    ACC_DECL(sdx);
    for (uint n = get_local_id(0); n < rows_per_group; n += P7_WG) {
        const ulong at = block + ((ulong)n * channels + c) * hw;
        const __global float *px = x + xo + at, *pd = dy + dyo + at;
        float16 a = (float16)(0.0f), b = (float16)(0.0f);
        for (uint v = 0; v < nv; v++) {
            const float16 d = vload16(v, pd);
            a += d;
            b += d * (vload16(v, px) - mu);
        }
        ACC_ADD(sd, lanes_sum16(a));
        ACC_ADD(sdx, lanes_sum16(b));
    }
    const acc_t tot_d = tree_sum(buf, sd);
    const acc_t tot_dx = tree_sum(buf, sdx) * is;
    if (get_local_id(0) == 0) {
        sums[g] = (float)tot_d;
        sums[(ulong)groups * channels + g] = (float)tot_dx;
        if (db_mode) db[dbo + g] = (float)tot_d + (db_mode == 2 ? db[dbo + g] : 0.0f);
        if (dw_mode) dw[dwo + g] = (float)tot_dx + (dw_mode == 2 ? dw[dwo + g] : 0.0f);
    }
}
#endif

/* Per channel, the sums of g = dy * w over all rows: totals[c] = sum_m w[m,c] sum(dy),
 * totals[C + c] = sum_m w[m,c] sum(dy * xhat). Fixed member order. */
__kernel void batchnorm_combine(__global const float *sums, __global const float *w, const ulong wo, const int has_w,
                            const uint groups, const uint channels, __global float *totals, const ulong to)
{
    const uint c = get_global_id(0);
    if (c >= channels) return;
    acc_t a = 0, b = 0;
    for (uint m = 0; m < groups; m++) {
        const acc_t wm = has_w ? (acc_t)w[wo + (ulong)m * channels + c] : (acc_t)1;
        a += wm * sums[(ulong)m * channels + c];
        b += wm * sums[(ulong)(groups + m) * channels + c];
    }
    totals[to + c] = (float)a;
    totals[to + channels + c] = (float)b;
}

/* dx for global (hw, C, N), one kernel per (training, acc) so the element loop has no
 * data-dependent branches. Training (batch statistics depend on x):
 *   dx = invstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * w[m, c];
 * evaluation (constant statistics): dx = g * invstd. */
#define BN_DX(name, TRAINING, ACC)                                                                                \
    __kernel void name(__global const float *x, const ulong xo, __global const float *dy, const ulong dyo,       \
                       __global const float *mean, const ulong mo, __global const float *invstd, const ulong io, \
                       __global const float *w, const ulong wo, const int has_w, const uint rows_per_member,     \
                       __global const float *totals, const ulong to, const float inv_count, __global float *dx,  \
                       const ulong dxo)                                                                           \
    {                                                                                                             \
        const uint p = get_global_id(0), c = get_global_id(1), n = get_global_id(2);                              \
        const uint hw = get_global_size(0), channels = get_global_size(1);                                        \
        const ulong i = ((ulong)n * channels + c) * hw + p;                                                       \
        const float wm = has_w ? w[wo + (ulong)(n / rows_per_member) * channels + c] : 1.0f;                       \
        const float is = invstd[io + c];                                                                          \
        float v;                                                                                                  \
        if (TRAINING) {                                                                                           \
            const float xhat = (x[xo + i] - mean[mo + c]) * is;                                                   \
            v = is * (dy[dyo + i] * wm - totals[to + c] * inv_count - xhat * (totals[to + channels + c] * inv_count)); \
        } else {                                                                                                  \
            v = dy[dyo + i] * (wm * is);                                                                          \
        }                                                                                                         \
        if (ACC) v += dx[dxo + i];                                                                                \
        dx[dxo + i] = v;                                                                                          \
    }

BN_DX(batchnorm_dx_train, 1, 0)
BN_DX(batchnorm_dx_train_acc, 1, 1)
BN_DX(batchnorm_dx_eval, 0, 0)
BN_DX(batchnorm_dx_eval_acc, 0, 1)
