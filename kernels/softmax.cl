/* Softmax, log-softmax and cross-entropy over the last axis of [N, K].
 *
 * Built with -DP7_WG=<work-group size, a power of two> and, on fp64 devices,
 * -DP7_FP64=1. One work-group per row: rows may be thousands long, and the row's max
 * and sums come from a fixed-order tree, so results are bit-reproducible. Offsets are
 * the element offsets of tensor views. */

#include "reduce_tree.clh"

/* NaN-propagating max: a NaN logit must poison its row, as it would in exp-sum. */
static float nan_max(float a, float b) { return (isnan(a) || a > b) ? a : b; }

static float tree_max(__local float *buf, float v)
{
    const uint lid = get_local_id(0);
    buf[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = P7_WG / 2; s > 0; s >>= 1) {
        if (lid < s) buf[lid] = nan_max(buf[lid], buf[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = buf[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* Row max and sum(exp(x - max)) of row x[0..k). */
static void row_stats(__global const float *x, const uint k, __local float *fbuf, __local acc_t *abuf,
                      float *max_out, acc_t *sum_out)
{
    const uint lid = get_local_id(0);
    float m = -INFINITY;
    for (uint j = lid; j < k; j += P7_WG) m = nan_max(m, x[j]);
    m = tree_max(fbuf, m);
    acc_t s = 0;
    for (uint j = lid; j < k; j += P7_WG) s += (acc_t)exp(x[j] - m);
    *max_out = m;
    *sum_out = tree_sum(abuf, s);
}

/* log_out 0: y = softmax(x); 1: y = log_softmax(x) = x - max - log(sum). */
__kernel void softmax_forward(__global const float *x, const ulong xo, __global float *y, const ulong yo,
                                 const uint k, const int log_out)
{
    __local float fbuf[P7_WG];
    __local acc_t abuf[P7_WG];
    const ulong row = get_group_id(0);
    __global const float *xr = x + xo + row * k;
    __global float *yr = y + yo + row * k;
    float m;
    acc_t s;
    row_stats(xr, k, fbuf, abuf, &m, &s);
    const uint lid = get_local_id(0);
    if (log_out) {
        const float shift = m + (float)log(s);
        for (uint j = lid; j < k; j += P7_WG) yr[j] = xr[j] - shift;
    } else {
        const float inv = (float)((acc_t)1 / s);
        for (uint j = lid; j < k; j += P7_WG) yr[j] = exp(xr[j] - m) * inv;
    }
}

/* From the saved output y:
 *   softmax:     dx = y * (dy - sum(dy * y))
 *   log_softmax: dx = dy - exp(y) * sum(dy) */
__kernel void softmax_backward(__global const float *y, const ulong yo, __global const float *dy,
                                  const ulong dyo, __global float *dx, const ulong dxo, const uint k,
                                  const int log_out, const int acc)
{
    __local acc_t abuf[P7_WG];
    const ulong row = get_group_id(0);
    const uint lid = get_local_id(0);
    __global const float *yr = y + yo + row * k;
    __global const float *dyr = dy + dyo + row * k;
    __global float *dxr = dx + dxo + row * k;
    acc_t s = 0;
    if (log_out) {
        for (uint j = lid; j < k; j += P7_WG) s += (acc_t)dyr[j];
    } else {
        for (uint j = lid; j < k; j += P7_WG) s += (acc_t)dyr[j] * (acc_t)yr[j];
    }
    const float t = (float)tree_sum(abuf, s);
    for (uint j = lid; j < k; j += P7_WG) {
        const float v = log_out ? dyr[j] - exp(yr[j]) * t : yr[j] * (dyr[j] - t);
        dxr[j] = acc ? dxr[j] + v : v;
    }
}

/* probs = softmax(logits) per row, and the row's loss -log softmax[label] computed in
 * log space (max + log(sum) - x[label]) so a tiny probability does not underflow.
 * A label outside [0, k) gives NaN. */
__kernel void softmax_cross_entropy_rows(__global const float *x, const ulong xo, __global const int *labels,
                                    const ulong lo, __global float *probs, const ulong po, const uint k,
                                    __global acc_t *row_loss)
{
    __local float fbuf[P7_WG];
    __local acc_t abuf[P7_WG];
    const ulong row = get_group_id(0);
    __global const float *xr = x + xo + row * k;
    __global float *pr = probs + po + row * k;
    float m;
    acc_t s;
    row_stats(xr, k, fbuf, abuf, &m, &s);
    const uint lid = get_local_id(0);
    const float inv = (float)((acc_t)1 / s);
    for (uint j = lid; j < k; j += P7_WG) pr[j] = exp(xr[j] - m) * inv;
    if (lid == 0) {
        const int label = labels[lo + row];
        row_loss[row] = (label >= 0 && (uint)label < k) ? (acc_t)m + log(s) - (acc_t)xr[label] : (acc_t)NAN;
    }
}

/* loss = mean of the n row losses: one work-group, fixed order. */
__kernel void softmax_cross_entropy_mean(__global const acc_t *row_loss, const uint n, __global float *loss,
                                    const ulong lo)
{
    __local acc_t abuf[P7_WG];
    acc_t s = 0;
    for (uint i = get_local_id(0); i < n; i += P7_WG) s += row_loss[i];
    s = tree_sum(abuf, s);
    if (get_local_id(0) == 0) loss[lo] = (float)(s / (acc_t)n);
}

/* dlogits = dloss[0] * (probs - onehot(label)) / n for global (k, n); a row with a bad
 * label gets NaN, like its loss. */
__kernel void softmax_cross_entropy_backward(__global const float *probs, const ulong po, __global const int *labels,
                                        const ulong lo, __global const float *dloss, const ulong dlo,
                                        const float inv_n, __global float *dx, const ulong dxo, const int acc)
{
    const uint j = get_global_id(0), row = get_global_id(1);
    const uint k = get_global_size(0);
    const int label = labels[lo + row];
    const ulong i = (ulong)row * k + j;
    float v;
    if (label < 0 || (uint)label >= k) {
        v = NAN;
    } else {
        const float target = (uint)label == j ? 1.0f : 0.0f;
        v = dloss[dlo] * inv_n * (probs[po + i] - target);
    }
    dx[dxo + i] = acc ? dx[dxo + i] + v : v;
}
