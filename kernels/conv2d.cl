/* conv2d as im2col + one whole-batch GEMM (core/src/conv2d.c).
 *
 * The column matrix is col[(c*K + ky)*K + kx][n*P + oh*OW + ow], P = OH*OW: one row per
 * filter tap, one column per output pixel of the whole batch, so the forward is the
 * single GEMM T[O, N*P] = W[O, C*K*K] * col and the weight gradient is the single
 * GEMM dW = T * col^T over the same matrix (T = dy as [O, N*P]).
 *
 * The kernel size, stride and padding are compile-time constants (CONV_K, CONV_S,
 * CONV_P): the tap loops unroll, the stride-1 rows become plain copies the compiler
 * can vectorise, and the divisions by the stride become shifts or vanish. A network
 * uses a handful of configurations, so the extra programs cost little.
 */
#ifndef CONV_K
#define CONV_K 3
#endif
#ifndef CONV_S
#define CONV_S 1
#endif
#ifndef CONV_P
#define CONV_P 0
#endif
#define CONV_KK (CONV_K * CONV_K)

/* First output column whose tap kx lands inside [0, in_w), and one past the last. */
static uint conv_first_valid(const int kx, const uint out_w)
{
    const int num = CONV_P - kx; /* ow*S >= P - kx */
    const uint lo = num > 0 ? (uint)((num + CONV_S - 1) / CONV_S) : 0u;
    return min(lo, out_w);
}

static uint conv_end_valid(const int kx, const uint in_w, const uint out_w)
{
    const int num = (int)in_w - 1 + CONV_P - kx; /* ow*S <= W - 1 + P - kx */
    return num < 0 ? 0u : min(out_w, (uint)(num / CONV_S) + 1u);
}

/* One work-item per (n, c, oh): it reads the K input rows that output row needs and
 * writes the K*K column-matrix runs of OW values, one per tap. Every run is a
 * contiguous store and, at stride 1, a contiguous load, so the work-item loops are
 * memcpy-like instead of the branchy per-element gather of a naive im2col. */
__kernel void conv_im2col(__global const float *restrict x, const ulong x_off,
                          __global float *restrict col, const uint n_img, const uint channels,
                          const uint in_h, const uint in_w, const uint out_h, const uint out_w)
{
    const uint i = get_global_id(0);
    if (i >= n_img * channels * out_h) return;
    const uint oh = i % out_h;
    const uint nc = i / out_h;
    const uint c = nc % channels;
    const uint n = nc / channels;
    const ulong plane = (ulong)out_h * out_w;
    const ulong np = plane * n_img;
    const __global float *xp = x + x_off + (ulong)nc * in_h * in_w;
    __global float *dst0 = col + (ulong)c * CONV_KK * np + (ulong)n * plane + (ulong)oh * out_w;

#pragma unroll
    for (int ky = 0; ky < CONV_K; ++ky) {
        const int ih = (int)(oh * CONV_S) - CONV_P + ky;
        const int row_ok = ih >= 0 && ih < (int)in_h;
        const __global float *src = xp + (ulong)(row_ok ? ih : 0) * in_w;
#pragma unroll
        for (int kx = 0; kx < CONV_K; ++kx) {
            __global float *dst = dst0 + (ulong)(ky * CONV_K + kx) * np;
            if (!row_ok) {
                for (uint ow = 0; ow < out_w; ++ow) dst[ow] = 0.0f;
                continue;
            }
            const uint lo = conv_first_valid(kx, out_w);
            const uint hi = max(lo, conv_end_valid(kx, in_w, out_w));
            for (uint ow = 0; ow < lo; ++ow) dst[ow] = 0.0f;
#if CONV_S == 1
            /* src + ow + kx - P, with the pointer formed at a valid column. */
            const __global float *s = src + (lo + kx) - CONV_P;
            __global float *d = dst + lo;
            const uint len = hi - lo;
            uint j = 0;
            for (; j + 8 <= len; j += 8) vstore8(vload8(0, s + j), 0, d + j);
            for (; j < len; ++j) d[j] = s[j];
#else
            for (uint ow = lo; ow < hi; ++ow) dst[ow] = src[(int)(ow * CONV_S) + kx - CONV_P];
#endif
            for (uint ow = hi; ow < out_w; ++ow) dst[ow] = 0.0f;
        }
    }
}

/* The adjoint of conv_im2col, as a gather: one work-item per (n, c, h) input row sums,
 * for each pixel of the row, every column-matrix entry that im2col copied from it, in
 * a fixed tap order (ky, kx), so the result is deterministic without atomics.
 * acc == 0 overwrites dx, acc == 1 adds to it. */
#define COL2IM_CHUNK 16
__kernel void conv_col2im(__global const float *restrict col, __global float *restrict dx,
                          const ulong dx_off, const int acc, const uint n_img, const uint channels,
                          const uint in_h, const uint in_w, const uint out_h, const uint out_w)
{
    const uint i = get_global_id(0);
    if (i >= n_img * channels * in_h) return;
    const uint h = i % in_h;
    const uint nc = i / in_h;
    const uint c = nc % channels;
    const uint n = nc / channels;
    const ulong plane = (ulong)out_h * out_w;
    const ulong np = plane * n_img;
    const __global float *cb = col + (ulong)c * CONV_KK * np + (ulong)n * plane;
    __global float *d = dx + dx_off + (ulong)nc * in_h * in_w + (ulong)h * in_w;

    for (uint w0 = 0; w0 < in_w; w0 += COL2IM_CHUNK) {
        const uint wn = min((uint)COL2IM_CHUNK, in_w - w0);
        float a[COL2IM_CHUNK];
#pragma unroll
        for (uint j = 0; j < COL2IM_CHUNK; ++j) a[j] = 0.0f;
#pragma unroll
        for (int ky = 0; ky < CONV_K; ++ky) {
            const int t = (int)h + CONV_P - ky; /* oh * S */
            if (t < 0 || t % CONV_S != 0 || t / CONV_S >= (int)out_h) continue;
            const __global float *rowp = cb + (ulong)(t / CONV_S) * out_w;
#pragma unroll
            for (int kx = 0; kx < CONV_K; ++kx) {
                const __global float *src = rowp + (ulong)(ky * CONV_K + kx) * np;
#if CONV_S == 1
                /* ow = w0 + j + P - kx must lie in [0, OW). */
                const int base = (int)w0 + CONV_P - kx;
                const int jlo = max(0, -base);
                const int jhi = min((int)wn, (int)out_w - base);
                for (int j = jlo; j < jhi; ++j) a[j] += src[base + j];
#else
                for (uint j = 0; j < wn; ++j) {
                    const int u = (int)(w0 + j) + CONV_P - kx; /* ow * S */
                    if (u >= 0 && u % CONV_S == 0 && u / CONV_S < (int)out_w) a[j] += src[u / CONV_S];
                }
#endif
            }
        }
        if (acc) {
            for (uint j = 0; j < wn; ++j) d[w0 + j] += a[j];
        } else {
            for (uint j = 0; j < wn; ++j) d[w0 + j] = a[j];
        }
    }
}

/* GEMM result T[O, N*P] -> y[N, O, P], adding the bias on the way. One work-item per
 * (n, o): a contiguous run of P values in both layouts. */
__kernel void conv_unfold_output(__global const float *restrict t, __global float *restrict y,
                                 const ulong y_off, __global const float *restrict bias,
                                 const ulong b_off, const int has_bias, const uint n_img,
                                 const uint out_c, const uint plane)
{
    const uint i = get_global_id(0);
    if (i >= n_img * out_c) return;
    const uint o = i % out_c;
    const uint n = i / out_c;
    const __global float *src = t + ((ulong)o * n_img + n) * plane;
    __global float *dst = y + y_off + (ulong)i * plane;
    if (has_bias) {
        const float bv = bias[b_off + o];
        for (uint p = 0; p < plane; ++p) dst[p] = src[p] + bv;
    } else {
        for (uint p = 0; p < plane; ++p) dst[p] = src[p];
    }
}

/* dy[N, O, P] -> T[O, N*P], the layout both backward GEMMs read. */
__kernel void conv_fold_grad(__global const float *restrict dy, const ulong dy_off,
                             __global float *restrict t, const uint n_img, const uint out_c,
                             const uint plane)
{
    const uint i = get_global_id(0);
    if (i >= n_img * out_c) return;
    const uint o = i % out_c;
    const uint n = i / out_c;
    const __global float *src = dy + dy_off + (ulong)i * plane;
    __global float *dst = t + ((ulong)o * n_img + n) * plane;
    for (uint p = 0; p < plane; ++p) dst[p] = src[p];
}

/* db[o] (+)= sum of row o of T[O, len]. One work-item per channel; 16 lane sums per
 * block of 256 values, blocks added in order: fixed order (deterministic), and the
 * error grows with len/256 instead of len. */
__kernel void conv_bias_grad(__global const float *restrict t, const ulong len,
                             __global float *restrict db, const ulong db_off, const int acc,
                             const uint out_c)
{
    const uint o = get_global_id(0);
    if (o >= out_c) return;
    const __global float *row = t + (ulong)o * len;
    float total = 0.0f;
    ulong j = 0;
    for (; j + 256 <= len; j += 256) {
        float16 s = vload16(0, row + j);
#pragma unroll
        for (uint q = 1; q < 16; ++q) s += vload16(q, row + j);
        const float8 s8 = s.lo + s.hi;
        const float4 s4 = s8.lo + s8.hi;
        const float2 s2 = s4.lo + s4.hi;
        total += s2.x + s2.y;
    }
    float tail = 0.0f;
    for (; j < len; ++j) tail += row[j];
    total += tail;
    db[db_off + o] = acc ? db[db_off + o] + total : total;
}

/* Element-wise col2im for small planes: one work-item per dx element, the K*K taps
 * unrolled in a fixed order (deterministic). */
__kernel void conv_col2im_flat(__global const float *restrict col, __global float *restrict dx,
                               const ulong dx_off, const int acc, const uint n_img, const uint channels,
                               const uint in_h, const uint in_w, const uint out_h, const uint out_w)
{
    const uint i = get_global_id(0);
    if (i >= n_img * channels * in_h * in_w) return;
    const uint w = i % in_w;
    const uint t = i / in_w;
    const uint h = t % in_h;
    const uint nc = t / in_h;
    const uint c = nc % channels;
    const uint n = nc / channels;
    const ulong plane = (ulong)out_h * out_w;
    const ulong np = plane * n_img;
    const __global float *cb = col + (ulong)c * CONV_KK * np + (ulong)n * plane;
    float a = 0.0f;
#pragma unroll
    for (int ky = 0; ky < CONV_K; ++ky) {
        const int th = (int)h + CONV_P - ky;
        const int okh = th >= 0 && th % CONV_S == 0 && th / CONV_S < (int)out_h;
#pragma unroll
        for (int kx = 0; kx < CONV_K; ++kx) {
            const int tw = (int)w + CONV_P - kx;
            const int ok = okh && tw >= 0 && tw % CONV_S == 0 && tw / CONV_S < (int)out_w;
            const ulong at = (ulong)(ky * CONV_K + kx) * np + (ok ? (ulong)(th / CONV_S) * out_w + tw / CONV_S : 0);
            a += ok ? cb[at] : 0.0f;
        }
    }
    const ulong o = dx_off + i;
    dx[o] = acc ? dx[o] + a : a;
}

/* im2col straight into the p7 GEMM's packed B-panel layout (kernels/gemm_p7.cl):
 *   bp[(q*CKK + k)*PANEL + jj] = col[k][q*PANEL + jj], zero for columns past N*P,
 * so the forward GEMM could skip its own pass over col (write col, read col, write
 * panels becomes one write). One work-item per (panel q, channel c): it writes the
 * K*K*PANEL floats of that channel's taps, one contiguous block, and decodes each of
 * its PANEL pixels once for all taps. Waiting for a GEMM entry point that accepts
 * pre-packed B (see core/src/conv2d_internal.h). */
#ifndef CONV_PANEL
#define CONV_PANEL 32
#endif
__kernel void conv_im2col_packed(__global const float *restrict x, const ulong x_off,
                                 __global float *restrict bp, const ulong bp_off, const uint n_img,
                                 const uint channels, const uint in_h, const uint in_w,
                                 const uint out_h, const uint out_w)
{
    const uint q = get_global_id(0);
    const uint c = get_global_id(1);
    const uint plane = out_h * out_w;
    const uint np = n_img * plane;
    if (q * CONV_PANEL >= np || c >= channels) return;
    const ulong ckk = (ulong)channels * CONV_KK;
    __global float *dst = bp + bp_off + ((ulong)q * ckk + (ulong)c * CONV_KK) * CONV_PANEL;
    int ih0[CONV_PANEL], iw0[CONV_PANEL];
    ulong base[CONV_PANEL];
    for (uint jj = 0; jj < CONV_PANEL; ++jj) {
        const uint j = q * CONV_PANEL + jj;
        const uint n = j / plane;
        const uint pix = j - n * plane;
        const uint oh = pix / out_w;
        ih0[jj] = j < np ? (int)(oh * CONV_S) - CONV_P : -(1 << 20); /* far outside: zero */
        iw0[jj] = (int)((pix - oh * out_w) * CONV_S) - CONV_P;
        base[jj] = x_off + ((ulong)n * channels + c) * in_h * in_w;
    }
#pragma unroll
    for (int ky = 0; ky < CONV_K; ++ky) {
#pragma unroll
        for (int kx = 0; kx < CONV_K; ++kx) {
            __global float *d = dst + (ky * CONV_K + kx) * CONV_PANEL;
            for (uint jj = 0; jj < CONV_PANEL; ++jj) {
                const int ih = ih0[jj] + ky, iw = iw0[jj] + kx;
                const int ok = ih >= 0 && ih < (int)in_h && iw >= 0 && iw < (int)in_w;
                d[jj] = ok ? x[base[jj] + (ulong)ih * in_w + iw] : 0.0f;
            }
        }
    }
}
