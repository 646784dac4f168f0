/* Max pooling without padding (core/src/pool.c). idx holds, per output element, the
 * flat position (ih * W + iw) of the chosen input inside its image plane. */

/* One work-item per (n*C + c, oh) output row. NaN wins, like PyTorch, so a NaN input
 * shows in the output instead of being pooled away. */
__kernel void pool_max_forward(__global const float *restrict x, const ulong x_off,
                               __global float *restrict y, const ulong y_off,
                               __global int *restrict idx, const uint planes, const uint in_h,
                               const uint in_w, const uint out_h, const uint out_w, const uint k,
                               const uint s)
{
    const uint i = get_global_id(0);
    if (i >= planes * out_h) return;
    const uint oh = i % out_h;
    const uint nc = i / out_h;
    const __global float *xp = x + x_off + (ulong)nc * in_h * in_w;
    const ulong row = (ulong)i * out_w;
    for (uint ow = 0; ow < out_w; ++ow) {
        const uint h0 = oh * s, w0 = ow * s;
        float best = -INFINITY;
        int best_i = (int)(h0 * in_w + w0);
        for (uint ky = 0; ky < k; ++ky) {
            const __global float *r = xp + (h0 + ky) * in_w + w0;
            for (uint kx = 0; kx < k; ++kx) {
                const float v = r[kx];
                if (v > best || isnan(v)) {
                    best = v;
                    best_i = (int)((h0 + ky) * in_w + w0 + kx);
                }
            }
        }
        y[y_off + row + ow] = best;
        idx[row + ow] = best_i;
    }
}

/* The gradient as a gather: one work-item per (n*C + c, h) input row; each pixel sums
 * dy over the windows that contain it and chose it, in a fixed order (no atomics, so
 * overlapping windows stay deterministic). acc == 1 adds to dx. */
__kernel void pool_max_backward(__global const float *restrict dy, const ulong dy_off,
                                __global const int *restrict idx, __global float *restrict dx,
                                const ulong dx_off, const int acc, const uint planes,
                                const uint in_h, const uint in_w, const uint out_h,
                                const uint out_w, const uint k, const uint s)
{
    const uint i = get_global_id(0);
    if (i >= planes * in_h) return;
    const uint h = i % in_h;
    const uint nc = i / in_h;
    const ulong obase = (ulong)nc * out_h * out_w;
    __global float *d = dx + dx_off + (ulong)i * in_w;
    /* Windows oh with oh*s <= h <= oh*s + k - 1. */
    const uint oh_lo = h >= k ? (h - k) / s + 1 : 0;
    const uint oh_hi = min(h / s + 1, out_h); /* exclusive */
    for (uint w = 0; w < in_w; ++w) {
        const uint ow_lo = w >= k ? (w - k) / s + 1 : 0;
        const uint ow_hi = min(w / s + 1, out_w);
        const int me = (int)(h * in_w + w);
        float g = 0.0f;
        for (uint oh = oh_lo; oh < oh_hi; ++oh) {
            for (uint ow = ow_lo; ow < ow_hi; ++ow) {
                const ulong j = obase + (ulong)oh * out_w + ow;
                if (idx[j] == me) g += dy[dy_off + j];
            }
        }
        d[w] = acc ? d[w] + g : g;
    }
}

/* The 2x2, stride 2 case (every VGG pool), one work-item per element so the
 * compiler vectorises across work-items: the generic kernels above walk whole rows
 * with run-time window loops, which PoCL cannot vectorise. Same arguments, same
 * results (first maximum in row-major window order, NaN wins). */
__kernel void pool_max2_forward(__global const float *restrict x, const ulong x_off,
                                __global float *restrict y, const ulong y_off,
                                __global int *restrict idx, const uint planes, const uint in_h,
                                const uint in_w, const uint out_h, const uint out_w, const uint k,
                                const uint s)
{
    const uint i = get_global_id(0);
    if (i >= planes * out_h * out_w) return;
    const uint ow = i % out_w, rest = i / out_w;
    const uint oh = rest % out_h, nc = rest / out_h;
    const uint p0 = (2 * oh) * in_w + 2 * ow;
    const __global float *xp = x + x_off + (ulong)nc * in_h * in_w + p0;
    const float v0 = xp[0], v1 = xp[1], v2 = xp[in_w], v3 = xp[in_w + 1];
    /* select chains, no branches: later elements win only when strictly greater, or NaN */
    float best = v0;
    uint at = 0;
    const int t1 = v1 > best || isnan(v1);
    best = t1 ? v1 : best;
    at = t1 ? 1u : at;
    const int t2 = v2 > best || isnan(v2);
    best = t2 ? v2 : best;
    at = t2 ? in_w : at;
    const int t3 = v3 > best || isnan(v3);
    best = t3 ? v3 : best;
    at = t3 ? in_w + 1 : at;
    y[y_off + i] = best;
    idx[i] = (int)(p0 + at);
}

/* One work-item per output element writes its whole 2x2 window: the windows do
 * not overlap, so this is deterministic without atomics, and the reads of dy and
 * idx are contiguous (a per-input gather reads them scattered, which PoCL cannot
 * vectorise). With odd planes the item at the last column / row also writes the
 * pixels no window covers (gradient 0). */
inline void p7_put(__global float *d, const ulong at, const float g, const int acc)
{
    d[at] = acc ? d[at] + g : g;
}

__kernel void pool_max2_backward(__global const float *restrict dy, const ulong dy_off,
                                 __global const int *restrict idx, __global float *restrict dx,
                                 const ulong dx_off, const int acc, const uint planes,
                                 const uint in_h, const uint in_w, const uint out_h,
                                 const uint out_w, const uint k, const uint s)
{
    const uint i = get_global_id(0);
    if (i >= planes * out_h * out_w) return;
    const uint ow = i % out_w, rest = i / out_w;
    const uint oh = rest % out_h, nc = rest / out_h;
    const float g = dy[dy_off + i];
    const uint chosen = (uint)idx[i];
    const uint p0 = (2 * oh) * in_w + 2 * ow;
    __global float *d = dx + dx_off + (ulong)nc * in_h * in_w;
    p7_put(d, p0, chosen == p0 ? g : 0.0f, acc);
    p7_put(d, p0 + 1, chosen == p0 + 1 ? g : 0.0f, acc);
    p7_put(d, p0 + in_w, chosen == p0 + in_w ? g : 0.0f, acc);
    p7_put(d, p0 + in_w + 1, chosen == p0 + in_w + 1 ? g : 0.0f, acc);
    const int last_col = (in_w & 1) && ow == out_w - 1, last_row = (in_h & 1) && oh == out_h - 1;
    if (last_col) {
        p7_put(d, p0 + 2, 0.0f, acc);
        p7_put(d, p0 + in_w + 2, 0.0f, acc);
    }
    if (last_row) {
        p7_put(d, p0 + 2 * in_w, 0.0f, acc);
        p7_put(d, p0 + 2 * in_w + 1, 0.0f, acc);
        if (last_col) p7_put(d, p0 + 2 * in_w + 2, 0.0f, acc);
    }
}

/* The 2x2, stride 2 case on even planes whose width is a multiple of 16 (VGG's 32- and
 * 16-wide planes; the study's CPU devices): one work-item per output row, 8 pooled pixels
 * at a time from float16 loads of the two input rows split into even and odd lanes, as
 * the fused evaluation stage pools (conv2d_unfold_output_affine_pool2). The per-element
 * kernels above read their windows two floats apart, which PoCL turns into gathers:
 * SimpleCNN's first pool took 8 ms for 34 MB. Same results: first maximum in row-major
 * window order, NaN wins. */
__kernel void pool_max2_forward_rows(__global const float *restrict x, const ulong x_off,
                                     __global float *restrict y, const ulong y_off,
                                     __global int *restrict idx, const uint planes, const uint in_h,
                                     const uint in_w, const uint out_h, const uint out_w, const uint k,
                                     const uint s)
{
    const uint i = get_global_id(0);
    if (i >= planes * out_h) return;
    const uint oh = i % out_h, nc = i / out_h;
    const __global float *ra = x + x_off + ((ulong)nc * in_h + 2 * oh) * in_w;
    const __global float *rb = ra + in_w;
    __global float *yr = y + y_off + (ulong)i * out_w;
    __global int *ir = idx + (ulong)i * out_w;
    const int8 lane = (int8)(0, 2, 4, 6, 8, 10, 12, 14);
    const int row0 = (int)(2 * oh * in_w), w = (int)in_w;
    for (uint q = 0; q < out_w / 8; q++) {
        const float16 a = vload16(q, ra), b = vload16(q, rb);
        const float8 v1 = a.odd, v2 = b.even, v3 = b.odd;
        float8 best = a.even;
        int8 at = (int8)(0);
        int8 t = isgreater(v1, best) | isnan(v1);
        best = select(best, v1, t);
        at = select(at, (int8)(1), t);
        t = isgreater(v2, best) | isnan(v2);
        best = select(best, v2, t);
        at = select(at, (int8)(w), t);
        t = isgreater(v3, best) | isnan(v3);
        best = select(best, v3, t);
        at = select(at, (int8)(w + 1), t);
        vstore8(best, q, yr);
        vstore8((int8)(row0 + 16 * (int)q) + lane + at, q, ir);
    }
}

/* Its gradient: one work-item per output row writes the two input rows under it, each
 * pixel dy where its window chose it and 0 elsewhere (windows do not overlap, so no
 * atomics), as float16 stores interleaving the even and odd columns. */
__kernel void pool_max2_backward_rows(__global const float *restrict dy, const ulong dy_off,
                                      __global const int *restrict idx, __global float *restrict dx,
                                      const ulong dx_off, const int acc, const uint planes,
                                      const uint in_h, const uint in_w, const uint out_h,
                                      const uint out_w, const uint k, const uint s)
{
    const uint i = get_global_id(0);
    if (i >= planes * out_h) return;
    const uint oh = i % out_h, nc = i / out_h;
    const __global float *g = dy + dy_off + (ulong)i * out_w;
    const __global int *ir = idx + (ulong)i * out_w;
    __global float *da = dx + dx_off + ((ulong)nc * in_h + 2 * oh) * in_w;
    __global float *db = da + in_w;
    const int8 lane = (int8)(0, 2, 4, 6, 8, 10, 12, 14);
    const uint16 weave = (uint16)(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    const int row0 = (int)(2 * oh * in_w), w = (int)in_w;
    const float8 zero = (float8)(0.0f);
    for (uint q = 0; q < out_w / 8; q++) {
        const float8 g8 = vload8(q, g);
        const int8 chosen = vload8(q, ir), p = (int8)(row0 + 16 * (int)q) + lane;
        const float8 g0 = select(zero, g8, chosen == p), g1 = select(zero, g8, chosen == p + 1);
        const float8 g2 = select(zero, g8, chosen == p + w), g3 = select(zero, g8, chosen == p + w + 1);
        float16 top = shuffle2(g0, g1, weave), bottom = shuffle2(g2, g3, weave);
        if (acc) {
            top += vload16(q, da);
            bottom += vload16(q, db);
        }
        vstore16(top, q, da);
        vstore16(bottom, q, db);
    }
}
