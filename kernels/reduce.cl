/* Sums, their gradient, and global-norm gradient clipping.
 *
 * Built with -DP7_WG=<work-group size, a power of two> and, on fp64 devices,
 * -DP7_FP64=1. A reduction runs in two fixed stages: work-group g sums the contiguous
 * chunk [g*chunk, (g+1)*chunk) into partials[g], then one work-group sums the
 * partials. The chunking depends only on the element count, so results are
 * bit-reproducible. Offsets are the element offsets of tensor views. */

#include "reduce_tree.clh"

/* squares 0: sum of x; 1: sum of x*x. Writes partials[po + group]. */
__kernel void reduce_partial(__global const float *x, const ulong xo, const ulong n, const ulong chunk,
                                const int squares, __global acc_t *partials, const ulong po)
{
    __local acc_t buf[P7_WG];
    const ulong g = get_group_id(0);
    const ulong begin = g * chunk;
    const ulong end = min(n, begin + chunk);
    acc_t s = 0;
    for (ulong i = begin + get_local_id(0); i < end; i += P7_WG) {
        const acc_t v = x[xo + i];
        s += squares ? v * v : v;
    }
    s = tree_sum(buf, s);
    if (get_local_id(0) == 0) partials[po + g] = s;
}

/* One work-group over `count` partials. norm 0: out = scale * sum; 1: out = sqrt(sum). */
__kernel void reduce_final(__global const acc_t *partials, const uint count, const float scale, const int norm,
                              __global float *out, const ulong oo)
{
    __local acc_t buf[P7_WG];
    acc_t s = 0;
    for (uint i = get_local_id(0); i < count; i += P7_WG) s += partials[i];
    s = tree_sum(buf, s);
    if (get_local_id(0) == 0) out[oo] = norm ? (float)sqrt(s) : (float)((acc_t)scale * s);
}

/* dx = scale * dy[0] (acc: dx += ...). */
__kernel void reduce_sum_backward(__global const float *dy, const ulong dyo, const float scale, __global float *dx,
                              const ulong dxo, const ulong n, const int acc)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const float v = scale * dy[dyo];
    dx[dxo + i] = acc ? dx[dxo + i] + v : v;
}

/* g *= min(1, max_norm / (norm + 1e-6)), the factor read on the device. A NaN norm
 * gives a NaN factor and poisons g, as PyTorch's clip_grad_norm_ does. */
__kernel void reduce_clip_scale(__global float *g, const ulong go, const ulong n, __global const float *norm,
                            const ulong no, const float max_norm)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const float coef = max_norm / (norm[no] + 1e-6f);
    if (!(coef >= 1.0f)) g[go + i] *= coef;
}
