/* Elementwise ops and the BatchEnsemble broadcast plumbing.
 * Offsets are element offsets of tensor views; `acc` selects out = v (0) or out += v (1). */

/* ReLU takes 16 floats per work-item, the ragged end one at a time: PoCL does not
 * vectorise a kernel whose work-items may return early, and one float per work-item ran
 * at a third of the memory's speed (relu.backward 1.16 ms on VGG11-BN's conv1 output). */
#define RELU_VEC 16

__kernel void elementwise_relu_forward(__global const float *x, const ulong xo, __global float *y, const ulong yo,
                              const ulong n)
{
    const size_t i = get_global_id(0) * RELU_VEC;
    if (i + RELU_VEC <= n) {
        vstore16(fmax(vload16(0, x + xo + i), (float16)(0.0f)), 0, y + yo + i);
    } else {
        for (size_t j = i; j < n; ++j) y[yo + j] = fmax(x[xo + j], 0.0f);
    }
}

/* ReLU's gradient passes where the output is positive (y > 0 <=> x > 0). */
__kernel void elementwise_relu_backward(__global const float *y, const ulong yo, __global const float *dy, const ulong dyo,
                               __global float *dx, const ulong dxo, const ulong n, const int acc)
{
    const size_t i = get_global_id(0) * RELU_VEC;
    if (i + RELU_VEC <= n) {
        const int16 pass = isgreater(vload16(0, y + yo + i), (float16)(0.0f));
        float16 g = select((float16)(0.0f), vload16(0, dy + dyo + i), pass);
        if (acc) g += vload16(0, dx + dxo + i);
        vstore16(g, 0, dx + dxo + i);
    } else {
        for (size_t j = i; j < n; ++j) {
            const float g = y[yo + j] > 0.0f ? dy[dyo + j] : 0.0f;
            dx[dxo + j] = acc ? dx[dxo + j] + g : g;
        }
    }
}

/* op 0: a + b, op 1: a * b */
__kernel void elementwise_binary(__global const float *a, const ulong ao, __global const float *b, const ulong bo,
                        __global float *y, const ulong yo, const ulong n, const int op)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const float u = a[ao + i], v = b[bo + i];
    y[yo + i] = op == 0 ? u + v : u * v;
}

__kernel void elementwise_axpy(const float alpha, __global const float *x, const ulong xo, __global float *out,
                      const ulong oo, const ulong n, const int acc)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const float v = alpha * x[xo + i];
    out[oo + i] = acc ? out[oo + i] + v : v;
}

/* x [N, C, HW], v [M, C]; row r is member r / rows_per_member. op 0: mul, op 1: add. */
__kernel void elementwise_channel_broadcast(__global const float *x, const ulong xo, __global const float *v, const ulong vo,
                                   __global float *y, const ulong yo, const ulong n, const uint channels,
                                   const uint hw, const uint rows_per_member, const int op)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const size_t plane = i / hw;
    const uint c = (uint)(plane % channels);
    const uint m = (uint)(plane / channels) / rows_per_member;
    const float s = v[vo + (size_t)m * channels + c];
    y[yo + i] = op == 0 ? x[xo + i] * s : x[xo + i] + s;
}

/* The same over a 2-D range (hw positions, N*C planes), for hw >= 16: a plane's scale is
 * one value for the whole work-group and neighbouring work-items touch neighbouring floats,
 * so CPU OpenCL compilers vectorise it; the 1-D form's 64-bit division per element ran
 * at a tenth of the memory's speed on PoCL. */
inline void channel_broadcast_at(__global const float *x, const ulong xo, __global const float *v, const ulong vo,
                                 __global float *y, const ulong yo, const uint channels, const uint hw,
                                 const uint rows_per_member, const int op, const uint p, const uint plane)
{
    const uint c = plane % channels, m = plane / channels / rows_per_member;
    const float s = v[vo + (size_t)m * channels + c];
    const size_t i = (size_t)plane * hw + p;
    y[yo + i] = op == 0 ? x[xo + i] * s : x[xo + i] + s;
}

__kernel void elementwise_channel_broadcast_planes(__global const float *x, const ulong xo, __global const float *v,
                                          const ulong vo, __global float *y, const ulong yo, const uint channels,
                                          const uint hw, const uint rows_per_member, const int op)
{
    const uint p = get_global_id(0), plane = get_global_id(1);
    if (p >= hw) return;
    channel_broadcast_at(x, xo, v, vo, y, yo, channels, hw, rows_per_member, op, p, plane);
}

/* The same when the work-groups tile hw exactly, with no bounds check: PoCL does not
 * vectorise a work-group whose items may return early, and without the check this ran
 * 15-20x faster on a VGG conv1 output (2.5 against 60 ms per launch, 2 cores). */
__kernel void elementwise_channel_broadcast_planes_exact(__global const float *x, const ulong xo,
                                                __global const float *v, const ulong vo, __global float *y,
                                                const ulong yo, const uint channels, const uint hw,
                                                const uint rows_per_member, const int op)
{
    channel_broadcast_at(x, xo, v, vo, y, yo, channels, hw, rows_per_member, op, get_global_id(0), get_global_id(1));
}

inline void channel_mul_backward_x_at(__global const float *dy, const ulong dyo, __global const float *v,
                                      const ulong vo, __global float *dx, const ulong dxo, const uint channels,
                                      const uint hw, const uint rows_per_member, const int acc, const uint p,
                                      const uint plane)
{
    const uint c = plane % channels, m = plane / channels / rows_per_member;
    const float s = v[vo + (size_t)m * channels + c];
    const size_t i = (size_t)plane * hw + p;
    const float g = dy[dyo + i] * s;
    dx[dxo + i] = acc ? dx[dxo + i] + g : g;
}

__kernel void elementwise_channel_mul_backward_x_planes(__global const float *dy, const ulong dyo,
                                               __global const float *v, const ulong vo, __global float *dx,
                                               const ulong dxo, const uint channels, const uint hw,
                                               const uint rows_per_member, const int acc)
{
    const uint p = get_global_id(0), plane = get_global_id(1);
    if (p >= hw) return;
    channel_mul_backward_x_at(dy, dyo, v, vo, dx, dxo, channels, hw, rows_per_member, acc, p, plane);
}

/* Without the bounds check, as elementwise_channel_broadcast_planes_exact. */
__kernel void elementwise_channel_mul_backward_x_planes_exact(__global const float *dy, const ulong dyo,
                                                     __global const float *v, const ulong vo,
                                                     __global float *dx, const ulong dxo, const uint channels,
                                                     const uint hw, const uint rows_per_member, const int acc)
{
    channel_mul_backward_x_at(dy, dyo, v, vo, dx, dxo, channels, hw, rows_per_member, acc, get_global_id(0),
                              get_global_id(1));
}

/* dx = dy * v[member, c] */
__kernel void elementwise_channel_mul_backward_x(__global const float *dy, const ulong dyo, __global const float *v,
                                        const ulong vo, __global float *dx, const ulong dxo, const ulong n,
                                        const uint channels, const uint hw, const uint rows_per_member,
                                        const int acc)
{
    const size_t i = get_global_id(0);
    if (i >= n) return;
    const size_t plane = i / hw;
    const uint c = (uint)(plane % channels);
    const uint m = (uint)(plane / channels) / rows_per_member;
    const float g = dy[dyo + i] * v[vo + (size_t)m * channels + c];
    dx[dxo + i] = acc ? dx[dxo + i] + g : g;
}

/* dv[m, c] = sum over member m's rows and the hw positions of dy (* x when has_x).
 * One work-item per (m, c), summing in a fixed order: deterministic. The sums are
 * short (rows_per_member * hw, at most a few hundred thousand) and there are M*C of
 * them, enough to fill the device. */
__kernel void elementwise_channel_reduce(__global const float *dy, const ulong dyo, __global const float *x, const ulong xo,
                                const int has_x, __global float *dv, const ulong dvo, const uint members,
                                const uint channels, const uint hw, const uint rows_per_member, const int acc)
{
    const uint mc = get_global_id(0);
    if (mc >= members * channels) return;
    const uint m = mc / channels, c = mc % channels;
    float total = 0.0f;
    for (uint r = 0; r < rows_per_member; r++) {
        const size_t base = ((size_t)(m * rows_per_member + r) * channels + c) * hw;
        float partial = 0.0f;
        if (has_x)
            for (uint p = 0; p < hw; p++) partial += dy[dyo + base + p] * x[xo + base + p];
        else
            for (uint p = 0; p < hw; p++) partial += dy[dyo + base + p];
        total += partial;
    }
    dv[dvo + mc] = acc ? dv[dvo + mc] + total : total;
}

/* The same for planes of a multiple of 16 values: each row's plane is summed in 16 float
 * lanes, folded by a fixed tree and added to the total in row order (the scalar loop is
 * one dependent add per value: BatchEnsemble VGG11-BN's first conv spent 2.9 ms per
 * launch in it). Deterministic like the scalar kernel, in another fixed order. */
__kernel void elementwise_channel_reduce_v16(__global const float *dy, const ulong dyo, __global const float *x,
                                             const ulong xo, const int has_x, __global float *dv, const ulong dvo,
                                             const uint members, const uint channels, const uint hw,
                                             const uint rows_per_member, const int acc)
{
    const uint mc = get_global_id(0);
    if (mc >= members * channels) return;
    const uint m = mc / channels, c = mc % channels, nv = hw / 16;
    float total = 0.0f;
    for (uint r = 0; r < rows_per_member; r++) {
        const size_t base = ((size_t)(m * rows_per_member + r) * channels + c) * hw;
        const __global float *pd = dy + dyo + base, *px = x + xo + base;
        float16 a = (float16)(0.0f);
        if (has_x)
            for (uint v = 0; v < nv; v++) a += vload16(v, pd) * vload16(v, px);
        else
            for (uint v = 0; v < nv; v++) a += vload16(v, pd);
        const float8 b = a.lo + a.hi;
        const float4 q = b.lo + b.hi;
        const float2 h = q.lo + q.hi;
        total += h.lo + h.hi;
    }
    dv[dvo + mc] = acc ? dv[dvo + mc] + total : total;
}

/* y [M*B, D] from x [B, D]: y[m*B*D + i] = x[i] */
__kernel void elementwise_tile_members(__global const float *x, const ulong xo, __global float *y, const ulong yo,
                              const ulong member_size, const uint members)
{
    const size_t i = get_global_id(0);
    if (i >= member_size) return;
    const float v = x[xo + i];
    for (uint m = 0; m < members; m++) y[yo + m * member_size + i] = v;
}

/* out[i] = scale * sum over m of x[m*member_size + i]: the backward of tiling
 * (scale 1) and the forward of the member mean (scale 1/M). */
__kernel void elementwise_sum_members(__global const float *x, const ulong xo, __global float *out, const ulong oo,
                             const ulong member_size, const uint members, const float scale, const int acc)
{
    const size_t i = get_global_id(0);
    if (i >= member_size) return;
    float s = 0.0f;
    for (uint m = 0; m < members; m++) s += x[xo + m * member_size + i];
    s *= scale;
    out[oo + i] = acc ? out[oo + i] + s : s;
}

/* out[m*member_size + i] (+)= scale * dy[i]: the backward of the member mean. */
__kernel void elementwise_spread_members(__global const float *dy, const ulong dyo, __global float *out, const ulong oo,
                                const ulong member_size, const uint members, const float scale, const int acc)
{
    const size_t i = get_global_id(0);
    if (i >= member_size) return;
    const float g = scale * dy[dyo + i];
    for (uint m = 0; m < members; m++) {
        const size_t j = oo + m * member_size + i;
        out[j] = acc ? out[j] + g : g;
    }
}
