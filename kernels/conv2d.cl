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
__kernel void conv2d_im2col(__global const float *restrict x, const ulong x_off,
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

/* The adjoint of conv2d_im2col, as a gather: one work-item per (n, c, h) input row sums,
 * for each pixel of the row, every column-matrix entry that im2col copied from it, in
 * a fixed tap order (ky, kx), so the result is deterministic without atomics.
 * acc == 0 overwrites dx, acc == 1 adds to it. */
#define COL2IM_CHUNK 16
__kernel void conv2d_col2im(__global const float *restrict col, __global float *restrict dx,
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
__kernel void conv2d_unfold_output(__global const float *restrict t, __global float *restrict y,
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

/* The evaluation output stage: T[O, N*P] -> y[N, O, P] with a per-channel affine
 * y = T * scale[m, o] + shift[m, o] and an optional ReLU, where m = n / rows_per_member
 * is the member of image n. It is conv bias, BatchEnsemble scaling and bias, and an
 * evaluation BatchNorm folded into one pass over the output (kernels/batchnorm.cl,
 * batchnorm_fold_eval). member_stride is O for [M, O] vectors and 0 for shared [O]
 * ones; a missing scale is 1, a missing shift 0. */
__kernel void conv2d_unfold_output_affine(__global const float *restrict t, __global float *restrict y,
                                          const ulong y_off, __global const float *restrict scale,
                                          const ulong s_off, const int has_scale,
                                          __global const float *restrict shift, const ulong h_off,
                                          const int has_shift, const uint member_stride,
                                          const uint rows_per_member, const int relu, const uint n_img,
                                          const uint out_c, const uint plane)
{
    const uint i = get_global_id(0);
    if (i >= n_img * out_c) return;
    const uint o = i % out_c;
    const uint n = i / out_c;
    const ulong v = (ulong)(n / rows_per_member) * member_stride + o;
    const float sv = has_scale ? scale[s_off + v] : 1.0f;
    const float hv = has_shift ? shift[h_off + v] : 0.0f;
    const __global float *src = t + ((ulong)o * n_img + n) * plane;
    __global float *dst = y + y_off + (ulong)i * plane;
    if (relu) {
        /* fmax as elementwise_relu_forward, so the fused and separate passes agree */
        for (uint p = 0; p < plane; ++p) dst[p] = fmax(src[p] * sv + hv, 0.0f);
    } else {
        for (uint p = 0; p < plane; ++p) dst[p] = src[p] * sv + hv;
    }
}

/* The same stage followed by a max pooling (window pool_k, stride pool_s, no padding)
 * of each output plane [out_h, out_w] into y [N, O, pool_h, pool_w]: the full-size
 * activation is never written. NaN wins the window as in pool_max_forward. */
__kernel void conv2d_unfold_output_affine_pool(__global const float *restrict t, __global float *restrict y,
                                               const ulong y_off, __global const float *restrict scale,
                                               const ulong s_off, const int has_scale,
                                               __global const float *restrict shift, const ulong h_off,
                                               const int has_shift, const uint member_stride,
                                               const uint rows_per_member, const int relu, const uint n_img,
                                               const uint out_c, const uint out_w, const uint plane,
                                               const uint pool_h, const uint pool_w, const uint pool_k,
                                               const uint pool_s)
{
    const uint i = get_global_id(0);
    if (i >= n_img * out_c) return;
    const uint o = i % out_c;
    const uint n = i / out_c;
    const ulong v = (ulong)(n / rows_per_member) * member_stride + o;
    const float sv = has_scale ? scale[s_off + v] : 1.0f;
    const float hv = has_shift ? shift[h_off + v] : 0.0f;
    const __global float *src = t + ((ulong)o * n_img + n) * plane;
    __global float *dst = y + y_off + (ulong)i * pool_h * pool_w;
    for (uint py = 0; py < pool_h; ++py)
        for (uint px = 0; px < pool_w; ++px) {
            const __global float *win = src + py * pool_s * out_w + px * pool_s;
            float best = -INFINITY;
            for (uint ky = 0; ky < pool_k; ++ky)
                for (uint kx = 0; kx < pool_k; ++kx) {
                    float a = win[ky * out_w + kx] * sv + hv;
                    if (relu) a = fmax(a, 0.0f);
                    if (a > best || isnan(a)) best = a;
                }
            dst[py * pool_w + px] = best;
        }
}

/* The 2x2 / stride 2 case of conv2d_unfold_output_affine_pool (every VGG pooling):
 * fixed windows; rows of 16 or more pooled pixels as float16 loads split into even
 * and odd lanes (measured 3x faster than one work-item per pooled pixel on PoCL). */
#define P7_POOL_WIN(a, b) (((a) > (b) || isnan(a)) ? (a) : (b))
__kernel void conv2d_unfold_output_affine_pool2(__global const float *restrict t, __global float *restrict y,
                                                const ulong y_off, __global const float *restrict scale,
                                                const ulong s_off, const int has_scale,
                                                __global const float *restrict shift, const ulong h_off,
                                                const int has_shift, const uint member_stride,
                                                const uint rows_per_member, const int relu, const uint n_img,
                                                const uint out_c, const uint out_w, const uint plane,
                                                const uint pool_h, const uint pool_w)
{
    const uint i = get_global_id(0);
    if (i >= n_img * out_c) return;
    const uint o = i % out_c;
    const uint n = i / out_c;
    const ulong v = (ulong)(n / rows_per_member) * member_stride + o;
    const float sv = has_scale ? scale[s_off + v] : 1.0f;
    const float hv = has_shift ? shift[h_off + v] : 0.0f;
    const __global float *src = t + ((ulong)o * n_img + n) * plane;
    __global float *dst = y + y_off + (ulong)i * pool_h * pool_w;
    if (pool_w % 8 == 0) {
        /* 8 pooled pixels from 16 values of each of the two rows, as vectors */
        for (uint py = 0; py < pool_h; ++py) {
            const __global float *r0 = src + 2 * py * out_w, *r1 = r0 + out_w;
            for (uint q = 0; q < pool_w / 8; ++q) {
                float16 a = vload16(q, r0) * sv + hv, b = vload16(q, r1) * sv + hv;
                if (relu) {
                    a = fmax(a, 0.0f);
                    b = fmax(b, 0.0f);
                }
                const float8 ae = a.even, ao = a.odd, be = b.even, bo = b.odd;
                const float8 m0 = select(ao, ae, (ae > ao) | isnan(ae));
                const float8 m1 = select(bo, be, (be > bo) | isnan(be));
                vstore8(select(m1, m0, (m0 > m1) | isnan(m0)), py * (pool_w / 8) + q, dst);
            }
        }
        return;
    }
    for (uint py = 0; py < pool_h; ++py) {
        const __global float *r0 = src + 2 * py * out_w, *r1 = r0 + out_w;
        for (uint px = 0; px < pool_w; ++px) {
            float2 a = vload2(px, r0) * sv + hv, b = vload2(px, r1) * sv + hv;
            if (relu) {
                a = fmax(a, 0.0f);
                b = fmax(b, 0.0f);
            }
            const float m0 = P7_POOL_WIN(a.x, a.y), m1 = P7_POOL_WIN(b.x, b.y);
            dst[py * pool_w + px] = P7_POOL_WIN(m0, m1);
        }
    }
}
#undef P7_POOL_WIN

/* dy[N, O, P] -> T[O, N*P], the layout both backward GEMMs read. */
__kernel void conv2d_fold_grad(__global const float *restrict dy, const ulong dy_off,
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
__kernel void conv2d_bias_grad(__global const float *restrict t, const ulong len,
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
__kernel void conv2d_col2im_flat(__global const float *restrict col, __global float *restrict dx,
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
 * its PANEL pixels once for all taps. Stride-1 "same" convolutions use the vector
 * kernel conv2d_im2col_packed_same below instead. */
#ifndef CONV_PANEL
#define CONV_PANEL 32
#endif
__kernel void conv2d_im2col_packed(__global const float *restrict x, const ulong x_off,
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

/* ---- Stride-1 "same" convolutions (2P = K - 1, so OH = H and OW = W) ----
 * There an output pixel's offset in its plane equals its input pixel's, so a tap reads
 * x[n][c] at pix + (ky - P) * W + (kx - P): 16 consecutive output pixels of one image
 * are one contiguous run of x, whatever the row width. Each run becomes one vector
 * load with the padding lanes masked to zero, instead of 16 branchy scalar gathers
 * (which held the naive packed im2col to a few GB/s). The host uses these when the
 * plane is a multiple of 16 pixels, so a run never crosses images, or a power of two
 * below 16 with N*P % 16 == 0, so a run holds whole planes of 16 / P images (2x2
 * layers: each tap is a 16-lane gather there, still branch-free). */
#if CONV_S == 1 && 2 * CONV_P == CONV_K - 1

/* The tap at row shift dy, column shift dx for the 16 pixels pix0 + lane of the plane
 * xc, whose rows and columns are ohv and owv; lanes outside the image are zero. The
 * run is one vector load, masked, whenever it lies inside xc[lo, hi), the extent of
 * the whole tensor: on planes of a few rows most taps leave the plane, and only the
 * tensor's first and last planes need the lane-by-lane gather (from the lane's own
 * pixel where masked, so every address read is valid). */
static float16 conv_same_tap16(const __global float *xc, const int pix0, const int16 ohv, const int16 owv,
                               const int dy, const int dx, const int in_h, const int in_w, const long lo,
                               const long hi)
{
    const int16 ih = ohv + dy, iw = owv + dx;
    const int16 ok = (ih >= 0) & (ih < in_h) & (iw >= 0) & (iw < in_w);
    const int start = pix0 + dy * in_w + dx;
    float16 v;
    if (start >= lo && start + 16 <= hi) {
        v = vload16(0, xc + start);
    } else {
        const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const int16 at = select((int16)(pix0) + lane, (int16)(start) + lane, ok);
        v = (float16)(xc[at.s0], xc[at.s1], xc[at.s2], xc[at.s3], xc[at.s4], xc[at.s5], xc[at.s6], xc[at.s7],
                      xc[at.s8], xc[at.s9], xc[at.sa], xc[at.sb], xc[at.sc], xc[at.sd], xc[at.se], xc[at.sf]);
    }
    return select((float16)(0.0f), v, ok);
}

/* The same tap for 16 pixels that span several images of a plane smaller than 16
 * pixels: off holds each lane's own pixel, relative to xc, so the loads are gathers
 * (from the lane's own pixel where masked, a valid address). */
static float16 conv_small_tap16(const __global float *xc, const int16 off, const int16 ohv, const int16 owv,
                                const int dy, const int dx, const int in_h, const int in_w)
{
    const int16 ih = ohv + dy, iw = owv + dx;
    const int16 ok = (ih >= 0) & (ih < in_h) & (iw >= 0) & (iw < in_w);
    const int16 at = select(off, off + (dy * in_w + dx), ok);
    const float16 v = (float16)(xc[at.s0], xc[at.s1], xc[at.s2], xc[at.s3], xc[at.s4], xc[at.s5], xc[at.s6],
                                xc[at.s7], xc[at.s8], xc[at.s9], xc[at.sa], xc[at.sb], xc[at.sc], xc[at.sd],
                                xc[at.se], xc[at.sf]);
    return select((float16)(0.0f), v, ok);
}

/* Each lane's pixel in x for 16 pixels starting a plane, when the plane is a power of
 * two below 16: lane / plane images on (image stride channels * plane), lane mod plane
 * into the plane. */
static int16 conv_small_offsets16(const uint plane, const uint channels)
{
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int sh = 31 - (int)clz(plane);
    return (lane >> sh) * (int)(channels * plane) + (lane & (int)(plane - 1));
}

/* Rows and columns of the 16 pixels pix0 + lane of a plane of 16 or more pixels, or
 * of the pixels lane mod plane when the plane is smaller (a power of two that
 * repeats across the run: consecutive images). The division goes through float and
 * one correction step: vector integer division is scalarised, and 16 divisions per
 * work-item measured as a third of the col2im time. Exact while pixels < 2^22, which
 * the host checks. */
static void conv_same_coords16(const int pix0, const int in_w, const int plane, int16 *ohv, int16 *owv)
{
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int16 p = plane >= 16 ? (int16)(pix0) + lane : lane & (plane - 1);
    int16 q = convert_int16_rtz(convert_float16(p) * (1.0f / (float)in_w));
    int16 r = p - q * in_w;
    q = select(q, q + 1, r >= in_w);
    r = select(r, r - in_w, r >= in_w);
    q = select(q, q - 1, r < 0);
    r = select(r, r + in_w, r < 0);
    *ohv = q;
    *owv = r;
}

/* conv2d_im2col_packed for stride-1 "same" convolutions (the host needs plane % 16 == 0,
 * or 16 % plane == 0 and N*P % 16 == 0): one work-item per (channel c, panel q)
 * writes, per tap, the panel row as two 16-pixel runs. Channels vary fastest, so
 * consecutive work-items write consecutive blocks of the panel. With in_scale (not
 * NULL), x[n, c] is multiplied by in_scale[m, c] on the way, m = n / rows_per_member:
 * the BatchEnsemble input scaling of an evaluation forward without a pass of its own. */
static void conv_im2col_packed_same(__global const float *restrict x, const ulong x_off,
                                    __global float *restrict bp, const ulong bp_off, const uint n_img,
                                    const uint channels, const uint in_h, const uint in_w,
                                    const __global float *restrict in_scale, const ulong is_off,
                                    const uint rows_per_member)
{
    const uint c = get_global_id(0);
    const uint q = get_global_id(1);
    const uint plane = in_h * in_w;
    const uint np = n_img * plane;
    if (q * CONV_PANEL >= np || c >= channels) return;
    const ulong ckk = (ulong)channels * CONV_KK;
    __global float *dst = bp + bp_off + ((ulong)q * ckk + (ulong)c * CONV_KK) * CONV_PANEL;
    for (uint h = 0; h < CONV_PANEL; h += 16) {
        const uint j0 = q * CONV_PANEL + h;
        __global float *d = dst + h;
        if (j0 >= np) {
#pragma unroll
            for (int t = 0; t < CONV_KK; ++t) vstore16((float16)(0.0f), 0, d + t * CONV_PANEL);
            continue;
        }
        const uint n = j0 / plane;
        const int pix0 = (int)(j0 - n * plane);
        const long before = ((long)n * channels + c) * plane, after = (long)channels * np - before;
        const __global float *xc = x + x_off + before;
        int16 ohv, owv;
        conv_same_coords16(pix0, (int)in_w, (int)plane, &ohv, &owv);
        if (plane < 16) {
            const int16 off = conv_small_offsets16(plane, channels);
            float16 sv = (float16)(1.0f);
            if (in_scale) {
                /* the run's 16 / plane images may belong to different members */
                const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                const int16 at = ((int16)(n) + (lane >> (31 - (int)clz(plane)))) / (int)rows_per_member *
                                 (int)channels + (int)c;
                const __global float *sc = in_scale + is_off;
                sv = (float16)(sc[at.s0], sc[at.s1], sc[at.s2], sc[at.s3], sc[at.s4], sc[at.s5], sc[at.s6],
                               sc[at.s7], sc[at.s8], sc[at.s9], sc[at.sa], sc[at.sb], sc[at.sc], sc[at.sd],
                               sc[at.se], sc[at.sf]);
            }
#pragma unroll
            for (int ky = 0; ky < CONV_K; ++ky) {
#pragma unroll
                for (int kx = 0; kx < CONV_K; ++kx)
                    vstore16(sv * conv_small_tap16(xc, off, ohv, owv, ky - CONV_P, kx - CONV_P, (int)in_h,
                                                   (int)in_w),
                             0, d + (ky * CONV_K + kx) * CONV_PANEL);
            }
            continue;
        }
        const float s = in_scale ? in_scale[is_off + (ulong)(n / rows_per_member) * channels + c] : 1.0f;
#pragma unroll
        for (int ky = 0; ky < CONV_K; ++ky) {
#pragma unroll
            for (int kx = 0; kx < CONV_K; ++kx)
                vstore16(s * conv_same_tap16(xc, pix0, ohv, owv, ky - CONV_P, kx - CONV_P, (int)in_h, (int)in_w,
                                             -before, after),
                         0, d + (ky * CONV_K + kx) * CONV_PANEL);
        }
    }
}

__kernel void conv2d_im2col_packed_same(__global const float *restrict x, const ulong x_off,
                                      __global float *restrict bp, const ulong bp_off, const uint n_img,
                                      const uint channels, const uint in_h, const uint in_w)
{
    conv_im2col_packed_same(x, x_off, bp, bp_off, n_img, channels, in_h, in_w, 0, 0, 1);
}

/* The same with the per-(member, channel) input scale in_scale [M, C]. */
__kernel void conv2d_im2col_packed_same_scaled(__global const float *restrict x, const ulong x_off,
                                             __global float *restrict bp, const ulong bp_off, const uint n_img,
                                             const uint channels, const uint in_h, const uint in_w,
                                             __global const float *restrict in_scale, const ulong is_off,
                                             const uint rows_per_member)
{
    conv_im2col_packed_same(x, x_off, bp, bp_off, n_img, channels, in_h, in_w, in_scale, is_off, rows_per_member);
}

/* col^T packed as the B operand of the weight-gradient GEMM dW = T * col^T, whose
 * depth is the pixel and whose columns are the taps:
 *   bp[(q*NP + j)*PANEL + jj] = col[q*PANEL + jj][j], zero for taps past C*K*K,
 * so neither col nor a transposing pack pass over it is needed. One work-item per
 * (16 pixels, panel q): eight taps at a time are loaded as 16-pixel runs and
 * transposed in registers into 16 rows of 8 (component selection compiles to
 * shuffles), the same scheme as gemm_p7_pack_gather in kernels/gemm_p7.cl. Planes
 * smaller than 16 pixels gather each run from 16 / plane images. */
#define CONV_T8(kk, g)                                                                      \
    vstore8((float8)(v0.s##kk, v1.s##kk, v2.s##kk, v3.s##kk, v4.s##kk, v5.s##kk, v6.s##kk, v7.s##kk), 0, \
            d + 0x##kk * CONV_PANEL + (g));
__kernel void conv2d_im2col_packed_t(__global const float *restrict x, const ulong x_off,
                                   __global float *restrict bp, const ulong bp_off, const uint n_img,
                                   const uint channels, const uint in_h, const uint in_w)
{
    const uint j0 = get_global_id(0) * 16;
    const uint q = get_global_id(1);
    const uint plane = in_h * in_w;
    const uint np = n_img * plane;
    const uint ckk = channels * CONV_KK;
    if (j0 >= np || q * CONV_PANEL >= ckk) return;
    const uint n = j0 / plane;
    const int pix0 = (int)(j0 - n * plane);
    const long before = (long)n * channels * plane, total = (long)channels * np;
    const __global float *xn = x + x_off + before;
    __global float *d = bp + bp_off + ((ulong)q * np + j0) * CONV_PANEL;
    int16 ohv, owv;
    conv_same_coords16(pix0, (int)in_w, (int)plane, &ohv, &owv);
    const int small = plane < 16;
    const int16 off = small ? conv_small_offsets16(plane, channels) : (int16)(0);
    /* The tap q*PANEL as (channel, ky, kx), stepped one tap at a time below. */
    uint t = q * CONV_PANEL;
    uint c = t / CONV_KK;
    int ky = (int)(t - c * CONV_KK) / CONV_K;
    int kx = (int)(t - c * CONV_KK) - ky * CONV_K;
#define CONV_TAP(v)                                                                                  \
    const float16 v = t >= ckk ? (float16)(0.0f)                                                   \
                      : small  ? conv_small_tap16(xn + (ulong)c * plane, off, ohv, owv, ky - CONV_P,   \
                                                  kx - CONV_P, (int)in_h, (int)in_w)                 \
                               : conv_same_tap16(xn + (ulong)c * plane, pix0, ohv, owv, ky - CONV_P,   \
                                                 kx - CONV_P, (int)in_h, (int)in_w,                  \
                                                 -(before + (long)c * plane),                        \
                                                 total - before - (long)c * plane);                  \
    ++t;                                                                                             \
    if (++kx == CONV_K) {                                                                            \
        kx = 0;                                                                                      \
        if (++ky == CONV_K) {                                                                        \
            ky = 0;                                                                                  \
            ++c;                                                                                     \
        }                                                                                            \
    }
    for (uint g = 0; g < CONV_PANEL; g += 8) {
        CONV_TAP(v0) CONV_TAP(v1) CONV_TAP(v2) CONV_TAP(v3) CONV_TAP(v4) CONV_TAP(v5) CONV_TAP(v6) CONV_TAP(v7)
        CONV_T8(0, g) CONV_T8(1, g) CONV_T8(2, g) CONV_T8(3, g) CONV_T8(4, g) CONV_T8(5, g) CONV_T8(6, g)
        CONV_T8(7, g) CONV_T8(8, g) CONV_T8(9, g) CONV_T8(a, g) CONV_T8(b, g) CONV_T8(c, g) CONV_T8(d, g)
        CONV_T8(e, g) CONV_T8(f, g)
    }
#undef CONV_TAP
}
#undef CONV_T8

/* conv2d_col2im for stride-1 "same" convolutions: input pixel pix takes tap (ky, kx)
 * from output pixel pix - (ky - P) * W - (kx - P) of the same image, so each tap of
 * 16 consecutive col columns is a contiguous run of that tap's col row, read with the
 * same masked vector loads as the packed im2col. One work-item per 16 columns of one
 * channel, which is 16 pixels of one plane, or whole planes of several images when
 * the plane is smaller (the host needs plane % 16 == 0 or 16 % plane == 0, and
 * N*P % 16 == 0). Taps are added in a fixed order (deterministic). Work-items run in
 * (c, column) order so that consecutive ones walk along the same K*K col rows: in
 * (n, c) order each 64-byte read landed K*K rows away from the last and the loads
 * ran at a third of the speed on small planes.
 * acc == 0 overwrites dx, acc == 1 adds to it. */
__kernel void conv2d_col2im_same(__global const float *restrict col, __global float *restrict dx,
                               const ulong dx_off, const int acc, const uint n_img, const uint channels,
                               const uint in_h, const uint in_w)
{
    const uint i = get_global_id(0);
    const uint plane = in_h * in_w;
    const uint np = n_img * plane;
    const uint blocks = np / 16;
    if (i >= channels * blocks) return;
    const uint c = i / blocks;
    const uint j0 = (i - c * blocks) * 16;
    const uint n = j0 / plane;
    const int pix0 = (int)(j0 - n * plane);
    /* The runs start at the plane, or at the block when it holds several planes. */
    const int whole = plane >= 16;
    const long base = (long)c * CONV_KK * np + j0 - (whole ? pix0 : 0), total = (long)CONV_KK * channels * np;
    const __global float *cb = col + base;
    const int at0 = whole ? pix0 : 0;
    int16 ohv, owv;
    conv_same_coords16(pix0, (int)in_w, (int)plane, &ohv, &owv);
    float16 a = (float16)(0.0f);
#pragma unroll
    for (int ky = 0; ky < CONV_K; ++ky) {
#pragma unroll
        for (int kx = 0; kx < CONV_K; ++kx)
            a += conv_same_tap16(cb + (ulong)(ky * CONV_K + kx) * np, at0, ohv, owv, CONV_P - ky, CONV_P - kx,
                                 (int)in_h, (int)in_w, -(base + (long)(ky * CONV_K + kx) * np),
                                 total - base - (long)(ky * CONV_K + kx) * np);
    }
    if (whole) {
        __global float *d = dx + dx_off + ((ulong)n * channels + c) * plane + pix0;
        if (acc) a += vload16(0, d);
        vstore16(a, 0, d);
        return;
    }
    float t[16];
    vstore16(a, 0, t);
    for (uint l = 0; l < 16; ++l) {
        const uint m = l / plane;
        __global float *d = dx + dx_off + ((ulong)(n + m) * channels + c) * plane + (l - m * plane);
        *d = acc ? *d + t[l] : t[l];
    }
}

#endif
