/* Winograd F(2x2, 3x3) for 3x3, stride 1, padding 1 convolutions (core/src/ops/conv2d.c,
 * conv2d_winograd_*): each 2x2 output tile is A^T [(G g G^T) . (B^T d B)] A over the 4x4
 * input patch d around it, so the 36 multiplies per tile and channel pair of the direct
 * form become 16, done as 16 products (one per position k of the 4x4 transformed tile):
 *
 *   U_k [O, C]  = (G g G^T)_k       the weights, transformed (conv2d_winograd_weights)
 *   V_k [C, P]  = (B^T d B)_k       every tile p of every image (conv2d_winograd_input),
 *                                   written as p7 GEMM's packed B panels
 *   M_k [O, P]  = U_k V_k           p7_gemm_packed_batched, one launch
 *   y           = A^T M A (+ bias)  (conv2d_winograd_output), the plane of image n and
 *                                   channel o at n * n_stride + o * o_stride: NCHW, or
 *                                   the [O, images * H * W] the evaluation stage reads
 *
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 * A^T = [1 1 1 0; 0 1 -1 -1]. The gradient of the input is the same convolution of dy with
 * the kernels flipped and the channel axes swapped (`flip`). P = images * (H/2) * (W/2);
 * H and W even. k = 4 * row + column of the 4x4 tile. */

#define WINO_PANEL 32

/* U_k = (G g G^T)_k as the GEMM's packed A (gemm_packed.h): panels of WINO_MR rows (the
 * GEMM tile's MR, a build option), u[k * u_stride + (panel * cols + col) * WINO_MR + r] for
 * row panel * WINO_MR + r, the rows past U's zero. Forward (flip 0) U_k[o, c] from
 * g = w[o, c]; input gradient (flip 1) U_k[c, o] from w[o, c] turned by 180 degrees. One
 * work-item per (run of WINO_COLS columns, panel): each U_k receives WINO_COLS * WINO_MR
 * contiguous floats. Written packed here, the 16 products need no packing pass. */
#ifndef WINO_MR
#define WINO_MR 8
#endif
#define WINO_COLS 4
__kernel void conv2d_winograd_weights(__global const float *restrict w, const ulong w_off,
                                      __global float *restrict u, const ulong u_stride, const uint channels,
                                      const uint outputs, const int flip)
{
    const uint run = get_global_id(0), panel = get_global_id(1);
    const uint cols = flip ? outputs : channels, rows = flip ? channels : outputs;
    for (uint cc = 0; cc < WINO_COLS; ++cc) {
        const uint col = run * WINO_COLS + cc;
        if (col >= cols) return;
        __global float *dst = u + ((ulong)panel * cols + col) * WINO_MR;
        float v[16][WINO_MR];
#pragma unroll
        for (int r = 0; r < WINO_MR; ++r) {
            const uint row = panel * WINO_MR + r;
            float k[9];
            const uint o = flip ? col : row, c = flip ? row : col;
            const __global float *g = w + w_off + ((ulong)o * channels + c) * 9;
#pragma unroll
            for (int q = 0; q < 9; ++q) k[q] = row < rows ? (flip ? g[8 - q] : g[q]) : 0.0f;
            /* t = G g: 4 x 3 */
            float t[12];
#pragma unroll
            for (int j = 0; j < 3; ++j) {
                const float g0 = k[j], g1 = k[3 + j], g2 = k[6 + j];
                t[j] = g0;
                t[3 + j] = 0.5f * (g0 + g1 + g2);
                t[6 + j] = 0.5f * (g0 - g1 + g2);
                t[9 + j] = g2;
            }
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const float a = t[3 * q], b = t[3 * q + 1], d = t[3 * q + 2];
                v[4 * q + 0][r] = a;
                v[4 * q + 1][r] = 0.5f * (a + b + d);
                v[4 * q + 2][r] = 0.5f * (a - b + d);
                v[4 * q + 3][r] = d;
            }
        }
#pragma unroll
        for (int q = 0; q < 16; ++q)
#pragma unroll
            for (int r = 0; r < WINO_MR; ++r) dst[(ulong)q * u_stride + r] = v[q][r];
    }
}

/* (B^T d B) of one 4x4 patch d, row-major in and out. */
static inline void wino_input_tile(const float d[16], float v[16])
{
    float r[16];
#pragma unroll
    for (int j = 0; j < 4; ++j) { /* rows: B^T d */
        r[j] = d[j] - d[8 + j];
        r[4 + j] = d[4 + j] + d[8 + j];
        r[8 + j] = d[8 + j] - d[4 + j];
        r[12 + j] = d[4 + j] - d[12 + j];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) { /* columns: (B^T d) B */
        const float a = r[4 * i], b = r[4 * i + 1], e = r[4 * i + 2], f = r[4 * i + 3];
        v[4 * i + 0] = a - e;
        v[4 * i + 1] = b + e;
        v[4 * i + 2] = e - b;
        v[4 * i + 3] = b - f;
    }
}

/* (A^T m A) of one tile's 16 products, plus bias: the 2x2 outputs e[2 * i + j]. */
static inline void wino_output_tile(const float v[16], const float bias, float e[4])
{
    float s[8];
#pragma unroll
    for (int j = 0; j < 4; ++j) { /* rows: A^T v */
        s[j] = v[j] + v[4 + j] + v[8 + j];
        s[4 + j] = v[4 + j] - v[8 + j] - v[12 + j];
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        e[2 * i] = s[4 * i] + s[4 * i + 1] + s[4 * i + 2] + bias;
        e[2 * i + 1] = s[4 * i + 1] - s[4 * i + 2] - s[4 * i + 3] + bias;
    }
}

/* conv2d_winograd_input for 4x4 planes (VGG's conv5 and conv6 on CIFAR): one work-item
 * per (image, channel) loads the plane as one float16 and writes its 4 tiles, which are
 * neighbouring columns of one panel, as a float4 per V_k. The last image also writes the
 * zero columns that end the last panel. */
__kernel void conv2d_winograd_input_p4(__global const float *restrict x, const ulong x_off,
                                       __global float *restrict vp, const ulong v_stride, const uint n_img,
                                       const uint channels)
{
    const uint n = get_global_id(0), c = get_global_id(1);
    if (n >= n_img || c >= channels) return;
    const float16 plane = vload16(0, x + x_off + ((ulong)n * channels + c) * 16);
    float px[36]; /* the plane inside a ring of zeros: 6 x 6 */
#pragma unroll
    for (int i = 0; i < 36; ++i) px[i] = 0.0f;
    px[7] = plane.s0; px[8] = plane.s1; px[9] = plane.s2; px[10] = plane.s3;
    px[13] = plane.s4; px[14] = plane.s5; px[15] = plane.s6; px[16] = plane.s7;
    px[19] = plane.s8; px[20] = plane.s9; px[21] = plane.sa; px[22] = plane.sb;
    px[25] = plane.sc; px[26] = plane.sd; px[27] = plane.se; px[28] = plane.sf;
    float v[4][16];
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        const int y0 = 2 * (t / 2), x0 = 2 * (t % 2);
        float d[16];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) d[4 * i + j] = px[(y0 + i) * 6 + x0 + j];
        wino_input_tile(d, v[t]);
    }
    const uint p = 4 * n;
    __global float *dst = vp + ((ulong)(p / WINO_PANEL) * channels + c) * WINO_PANEL + p % WINO_PANEL;
#pragma unroll
    for (int k = 0; k < 16; ++k) vstore4((float4)(v[0][k], v[1][k], v[2][k], v[3][k]), 0, dst + (ulong)k * v_stride);
    if (n + 1 == n_img && (4 * n_img) % WINO_PANEL != 0)
        for (uint z = p % WINO_PANEL + 4; z < WINO_PANEL; ++z)
            for (int k = 0; k < 16; ++k) dst[(ulong)k * v_stride + z - p % WINO_PANEL] = 0.0f;
}

/* conv2d_winograd_input for 2x2 planes (conv7 and conv8): one tile per image, the plane
 * inside a ring of zeros. One work-item per (panel of 32 images, channel). */
__kernel void conv2d_winograd_input_p2(__global const float *restrict x, const ulong x_off,
                                       __global float *restrict vp, const ulong v_stride, const uint n_img,
                                       const uint channels)
{
    const uint q = get_global_id(0), c = get_global_id(1);
    if (c >= channels) return;
    __global float *dst = vp + ((ulong)q * channels + c) * WINO_PANEL;
    for (uint j = 0; j < WINO_PANEL; ++j) {
        const uint n = q * WINO_PANEL + j;
        float v[16];
        if (n < n_img) {
            const float4 e = vload4(0, x + x_off + ((ulong)n * channels + c) * 4);
            const float d[16] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, e.s0, e.s1, 0.0f,
                                 0.0f, e.s2, e.s3, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            wino_input_tile(d, v);
        } else {
#pragma unroll
            for (int k = 0; k < 16; ++k) v[k] = 0.0f;
        }
#pragma unroll
        for (int k = 0; k < 16; ++k) dst[(ulong)k * v_stride + j] = v[k];
    }
}

/* conv2d_winograd_output for 4x4 planes: one work-item per (image, o) reads its 4 tiles'
 * products as a float4 per M_k and writes the plane as one float16 (+= with acc). */
__kernel void conv2d_winograd_output_p4(__global const float *restrict m, const ulong m_stride,
                                        __global float *restrict y, const ulong y_off, const ulong n_stride,
                                        const ulong o_stride, __global const float *restrict b, const ulong b_off,
                                        const int has_bias, const int acc, const uint n_img, const uint outputs)
{
    const uint n = get_global_id(0), o = get_global_id(1);
    if (n >= n_img || o >= outputs) return;
    const __global float *src = m + (ulong)o * (4 * n_img) + 4 * n;
    float v[4][16];
#pragma unroll
    for (int k = 0; k < 16; ++k) {
        const float4 t = vload4(0, src + (ulong)k * m_stride);
        v[0][k] = t.s0;
        v[1][k] = t.s1;
        v[2][k] = t.s2;
        v[3][k] = t.s3;
    }
    const float bias = has_bias ? b[b_off + o] : 0.0f;
    float e[4][4];
#pragma unroll
    for (int t = 0; t < 4; ++t) wino_output_tile(v[t], bias, e[t]);
    /* tile t = 2 ty + tx holds rows 2ty, 2ty + 1 and columns 2tx, 2tx + 1 */
    float16 plane = (float16)(e[0][0], e[0][1], e[1][0], e[1][1], e[0][2], e[0][3], e[1][2], e[1][3],
                              e[2][0], e[2][1], e[3][0], e[3][1], e[2][2], e[2][3], e[3][2], e[3][3]);
    __global float *dst = y + y_off + (ulong)n * n_stride + (ulong)o * o_stride;
    if (acc) plane += vload16(0, dst);
    vstore16(plane, 0, dst);
}

/* conv2d_winograd_output for 2x2 planes: one work-item per (panel of 32 images, o). */
__kernel void conv2d_winograd_output_p2(__global const float *restrict m, const ulong m_stride,
                                        __global float *restrict y, const ulong y_off, const ulong n_stride,
                                        const ulong o_stride, __global const float *restrict b, const ulong b_off,
                                        const int has_bias, const int acc, const uint n_img, const uint outputs)
{
    const uint q = get_global_id(0), o = get_global_id(1);
    if (o >= outputs) return;
    const float bias = has_bias ? b[b_off + o] : 0.0f;
    const uint end = min((q + 1) * WINO_PANEL, n_img);
    for (uint n = q * WINO_PANEL; n < end; ++n) {
        float v[16], e[4];
#pragma unroll
        for (int k = 0; k < 16; ++k) v[k] = m[(ulong)k * m_stride + (ulong)o * n_img + n];
        wino_output_tile(v, bias, e);
        float4 plane = (float4)(e[0], e[1], e[2], e[3]);
        __global float *dst = y + y_off + (ulong)n * n_stride + (ulong)o * o_stride;
        if (acc) plane += vload4(0, dst);
        vstore4(plane, 0, dst);
    }
}

/* V_k = (B^T d B)_k for the tiles of x [n_img, C, H, W] as packed B panels:
 * vp[k * v_stride + (q * C + c) * 32 + j] for tile p = 32 q + j. One work-item per
 * (panel q, channel c) walks its 32 tiles in order (one division per panel, then steps),
 * writing every column of the panel: zeros past the last tile. */
__kernel void conv2d_winograd_input(__global const float *restrict x, const ulong x_off,
                                    __global float *restrict vp, const ulong v_stride, const uint n_img,
                                    const uint channels, const uint in_h, const uint in_w)
{
    const uint q = get_global_id(0), c = get_global_id(1);
    if (c >= channels) return;
    const uint tw = in_w / 2, tiles = (in_h / 2) * tw, np = n_img * tiles;
    const uint p0 = q * WINO_PANEL;
    uint n = p0 / tiles, t = p0 - n * tiles;
    uint ty = t / tw, tx = t - ty * tw;
    const ulong plane_size = (ulong)in_h * in_w;
    __global float *dst = vp + ((ulong)q * channels + c) * WINO_PANEL;
    for (uint j = 0; j < WINO_PANEL; ++j) {
        float v[16];
        if (p0 + j < np) {
            const __global float *plane = x + x_off + ((ulong)n * channels + c) * plane_size;
            const int y0 = 2 * (int)ty - 1, x0 = 2 * (int)tx - 1;
            float d[16];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int jj = 0; jj < 4; ++jj) {
                    const int yy = y0 + i, xx = x0 + jj;
                    const int ok = yy >= 0 && yy < (int)in_h && xx >= 0 && xx < (int)in_w;
                    d[4 * i + jj] = ok ? plane[yy * (int)in_w + xx] : 0.0f;
                }
            wino_input_tile(d, v);
            if (++tx == tw) {
                tx = 0;
                if (++ty == in_h / 2) {
                    ty = 0;
                    ++n;
                }
            }
        } else {
#pragma unroll
            for (int k = 0; k < 16; ++k) v[k] = 0.0f;
        }
#pragma unroll
        for (int k = 0; k < 16; ++k) dst[(ulong)k * v_stride + j] = v[k];
    }
}

/* y[n, o][2ty + i, 2tx + j] (=, or += with acc) (A^T M A)[i, j] + bias[o] from
 * M_k [outputs, P] (row-major, m_stride floats apart). One work-item per (run of 32
 * tiles, o), stepping through the run's tiles in order. */
__kernel void conv2d_winograd_output(__global const float *restrict m, const ulong m_stride,
                                     __global float *restrict y, const ulong y_off, const ulong n_stride,
                                     const ulong o_stride, __global const float *restrict b,
                                     const ulong b_off, const int has_bias, const int acc, const uint n_img,
                                     const uint outputs, const uint out_h, const uint out_w)
{
    const uint q = get_global_id(0), o = get_global_id(1);
    if (o >= outputs) return;
    const uint tw = out_w / 2, tiles = (out_h / 2) * tw, np = n_img * tiles;
    const uint p0 = q * WINO_PANEL;
    const uint end = min(p0 + WINO_PANEL, np);
    uint n = p0 / tiles, t = p0 - n * tiles;
    uint ty = t / tw, tx = t - ty * tw;
    const float bias = has_bias ? b[b_off + o] : 0.0f;
    const __global float *src = m + (ulong)o * np;
    for (uint p = p0; p < end; ++p) {
        float v[16];
#pragma unroll
        for (int k = 0; k < 16; ++k) v[k] = src[(ulong)k * m_stride + p];
        float e[4];
        wino_output_tile(v, bias, e);
        __global float *dst = y + y_off + (ulong)n * n_stride + (ulong)o * o_stride + 2 * ty * out_w + 2 * tx;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            __global float *row = dst + i * out_w;
            row[0] = acc ? row[0] + e[2 * i] : e[2 * i];
            row[1] = acc ? row[1] + e[2 * i + 1] : e[2 * i + 1];
        }
        if (++tx == tw) {
            tx = 0;
            if (++ty == out_h / 2) {
                ty = 0;
                ++n;
            }
        }
    }
}

/* conv2d_winograd_input for planes 16 wide (8 tiles a row): one work-item per row of tiles
 * (image n, tile row ty) and channel, the four input rows as float16 loads. The row
 * transform runs on whole rows at once: with b = the even columns, e = the odd ones,
 * a = e one tile to the right (column 2tx - 1) and f = b one tile to the left (2tx + 2),
 * the four columns of every tile's (d B) are a - e, b + e, e - b, b - f. A row of 8 tiles
 * lies inside one 32-tile panel, so each V_k row is one float8 store. The run that ends
 * the last panel early also writes its zero columns. */
#define WINO_ROWS_BODY(TW, floatT, floatR, vloadR, vstoreT, SHIFT_IN, SHIFT_OUT)                                \
    const uint r = get_global_id(0), c = get_global_id(1);                                                    \
    const uint th = in_h / 2, n = r / th, ty = r - n * th, tiles = th * (TW), np = n_img * tiles;              \
    if (r >= n_img * th || c >= channels) return;                                                             \
    const __global float *plane = x + x_off + ((ulong)n * channels + c) * in_h * (2 * (TW));                   \
    floatT h[4][4];                                                                                           \
    for (int i = 0; i < 4; ++i) {                                                                             \
        const int yy = 2 * (int)ty - 1 + i;                                                                   \
        const floatR row = yy >= 0 && yy < (int)in_h ? vloadR(0, plane + yy * (2 * (TW))) : (floatR)(0.0f);   \
        const floatT b = row.even, e = row.odd;                                                               \
        const floatT a = SHIFT_IN(e), f = SHIFT_OUT(b);                                                       \
        h[i][0] = a - e;                                                                                      \
        h[i][1] = b + e;                                                                                      \
        h[i][2] = e - b;                                                                                      \
        h[i][3] = b - f;                                                                                      \
    }                                                                                                         \
    const uint p = n * tiles + ty * (TW);                                                                     \
    __global float *dst = vp + ((ulong)(p / WINO_PANEL) * channels + c) * WINO_PANEL + p % WINO_PANEL;        \
    for (int j = 0; j < 4; ++j) {                                                                             \
        vstoreT(h[0][j] - h[2][j], 0, dst + (ulong)(0 + j) * v_stride);                                       \
        vstoreT(h[1][j] + h[2][j], 0, dst + (ulong)(4 + j) * v_stride);                                       \
        vstoreT(h[2][j] - h[1][j], 0, dst + (ulong)(8 + j) * v_stride);                                       \
        vstoreT(h[1][j] - h[3][j], 0, dst + (ulong)(12 + j) * v_stride);                                      \
    }                                                                                                         \
    if (p + (TW) == np && np % WINO_PANEL != 0)                                                               \
        for (uint z = p % WINO_PANEL + (TW); z < WINO_PANEL; ++z)                                             \
            for (int k = 0; k < 16; ++k) dst[(ulong)k * v_stride + z - p % WINO_PANEL] = 0.0f;

#define WINO_SHIFT_IN8(v) ((float8)(0.0f, (v).s0, (v).s1, (v).s2, (v).s3, (v).s4, (v).s5, (v).s6))
#define WINO_SHIFT_OUT8(v) ((float8)((v).s1, (v).s2, (v).s3, (v).s4, (v).s5, (v).s6, (v).s7, 0.0f))
#define WINO_SHIFT_IN4(v) ((float4)(0.0f, (v).s0, (v).s1, (v).s2))
#define WINO_SHIFT_OUT4(v) ((float4)((v).s1, (v).s2, (v).s3, 0.0f))

__kernel void conv2d_winograd_input_w16(__global const float *restrict x, const ulong x_off,
                                        __global float *restrict vp, const ulong v_stride, const uint n_img,
                                        const uint channels, const uint in_h, const uint in_w)
{
    WINO_ROWS_BODY(8, float8, float16, vload16, vstore8, WINO_SHIFT_IN8, WINO_SHIFT_OUT8)
}

/* The same for planes 8 wide (4 tiles a row). */
__kernel void conv2d_winograd_input_w8(__global const float *restrict x, const ulong x_off,
                                       __global float *restrict vp, const ulong v_stride, const uint n_img,
                                       const uint channels, const uint in_h, const uint in_w)
{
    WINO_ROWS_BODY(4, float4, float8, vload8, vstore4, WINO_SHIFT_IN4, WINO_SHIFT_OUT4)
}

/* conv2d_winograd_output for planes 16 (8) wide: one work-item per (row of tiles, o); the
 * 16 M_k runs of the row as float8 (float4) loads, the column transform on whole rows, and
 * the two output rows written as float16 (float8) stores, even and odd columns woven. */
#define WINO_OUT_ROWS_BODY(TW, floatT, floatR, vloadT, vloadR, vstoreR, WEAVE)                                  \
    const uint r = get_global_id(0), o = get_global_id(1);                                                    \
    const uint th = out_h / 2, n = r / th, ty = r - n * th, tiles = th * (TW), np = n_img * tiles;             \
    if (r >= n_img * th || o >= outputs) return;                                                              \
    const uint p = n * tiles + ty * (TW);                                                                     \
    const __global float *src = m + (ulong)o * np + p;                                                        \
    floatT s[2][4];                                                                                           \
    for (int j = 0; j < 4; ++j) {                                                                             \
        const floatT v0 = vloadT(0, src + (ulong)(0 + j) * m_stride), v1 = vloadT(0, src + (ulong)(4 + j) * m_stride); \
        const floatT v2 = vloadT(0, src + (ulong)(8 + j) * m_stride), v3 = vloadT(0, src + (ulong)(12 + j) * m_stride); \
        s[0][j] = v0 + v1 + v2;                                                                               \
        s[1][j] = v1 - v2 - v3;                                                                               \
    }                                                                                                         \
    const float bias = has_bias ? b[b_off + o] : 0.0f;                                                        \
    __global float *dst = y + y_off + (ulong)n * n_stride + (ulong)o * o_stride + 2 * ty * (2 * (TW));            \
    for (int i = 0; i < 2; ++i) {                                                                             \
        const floatT e0 = s[i][0] + s[i][1] + s[i][2] + bias, e1 = s[i][1] - s[i][2] - s[i][3] + bias;         \
        floatR row = shuffle2(e0, e1, WEAVE);                                                                 \
        __global float *out = dst + i * (2 * (TW));                                                           \
        if (acc) row += vloadR(0, out);                                                                       \
        vstoreR(row, 0, out);                                                                                 \
    }

__kernel void conv2d_winograd_output_w16(__global const float *restrict m, const ulong m_stride,
                                         __global float *restrict y, const ulong y_off, const ulong n_stride,
                                         const ulong o_stride, __global const float *restrict b, const ulong b_off,
                                        const int has_bias, const int acc, const uint n_img, const uint outputs, const uint out_h,
                                         const uint out_w)
{
    WINO_OUT_ROWS_BODY(8, float8, float16, vload8, vload16, vstore16,
                       ((uint16)(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15)))
}

__kernel void conv2d_winograd_output_w8(__global const float *restrict m, const ulong m_stride,
                                        __global float *restrict y, const ulong y_off, const ulong n_stride,
                                        const ulong o_stride, __global const float *restrict b, const ulong b_off,
                                        const int has_bias, const int acc, const uint n_img, const uint outputs, const uint out_h,
                                        const uint out_w)
{
    WINO_OUT_ROWS_BODY(4, float4, float8, vload4, vload8, vstore8, ((uint8)(0, 4, 1, 5, 2, 6, 3, 7)))
}

/* ---- The weight gradient: dW = G^T [sum over tiles t of (A dy_t A^T) . V_t] G ----
 *
 * The forward of one tile is y_t = A^T [(G w G^T) . V_t] A with V_t = B^T d_t B, linear in
 * w; its adjoint gives dW[o, c] = G^T [sum_t (A dy_t A^T) . V_t] G, where dy_t is the
 * tile's 2x2 of dy and V_t the forward's own input transform. The sum over tiles is 16
 * products M_k [O, C] = D_k [O, T] V_k^T [T, C] with K = T, the tiles of every image
 * (p7_gemm_packed_batched): 2.25x fewer multiplies than dW = dy * im2col(x)^T. */

/* D_k = (A dy_t A^T)_k as the products' packed A: panels of WINO_MR rows (channels o of
 * dy) along K = tiles, ap[k * a_stride + ((o / WINO_MR) * tiles + t) * WINO_MR + o % WINO_MR],
 * zero past the last channel. One work-item per (image, panel) walks the image's tiles in
 * order, so each D_k receives one contiguous run of tiles * WINO_MR floats. */
__kernel void conv2d_winograd_dw_grad(__global const float *restrict dy, const ulong dy_off,
                                      __global float *restrict ap, const ulong a_stride, const uint n_img,
                                      const uint outputs, const uint out_h, const uint out_w)
{
    const uint n = get_global_id(0), panel = get_global_id(1);
    if (n >= n_img) return;
    const uint tw = out_w / 2, th = out_h / 2, tiles_img = th * tw;
    const ulong plane = (ulong)out_h * out_w;
    __global float *dst = ap + ((ulong)panel * n_img * tiles_img + (ulong)n * tiles_img) * WINO_MR;
    const __global float *src = dy + dy_off + ((ulong)n * outputs + panel * WINO_MR) * plane;
    for (uint ty = 0; ty < th; ++ty)
        for (uint tx = 0; tx < tw; ++tx, dst += WINO_MR) {
            float v[16][WINO_MR];
#pragma unroll
            for (int r = 0; r < WINO_MR; ++r) {
                float2 top = (float2)(0.0f), bottom = (float2)(0.0f);
                if (panel * WINO_MR + r < outputs) {
                    const __global float *p = src + r * plane + 2 * ty * out_w + 2 * tx;
                    top = vload2(0, p);
                    bottom = vload2(0, p + out_w);
                }
                /* A dy: rows [a, b], [a + c, b + d], [a - c, b - d], [-c, -d]; then each
                 * row [p, q] times A^T: [p, p + q, p - q, -q] */
                const float2 rows[4] = {top, top + bottom, top - bottom, -bottom};
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    v[4 * j + 0][r] = rows[j].x;
                    v[4 * j + 1][r] = rows[j].x + rows[j].y;
                    v[4 * j + 2][r] = rows[j].x - rows[j].y;
                    v[4 * j + 3][r] = -rows[j].y;
                }
            }
#pragma unroll
            for (int k = 0; k < 16; ++k)
#pragma unroll
                for (int r = 0; r < WINO_MR; ++r) dst[(ulong)k * a_stride + r] = v[k][r];
        }
}

/* V_k^T as the products' packed B: 32-wide panels of channels c along K = tiles,
 * bp[k * b_stride + ((c / 32) * tiles + t) * 32 + c % 32], zero past the last channel.
 * One work-item per (c, t), c along dimension 0 so that neighbouring work-items write
 * neighbouring floats. */
__kernel void conv2d_winograd_dw_input(__global const float *restrict x, const ulong x_off,
                                       __global float *restrict bp, const ulong b_stride, const uint n_img,
                                       const uint channels, const uint in_h, const uint in_w)
{
    const uint c = get_global_id(0), t = get_global_id(1);
    const uint tw = in_w / 2, tiles_img = (in_h / 2) * tw, tiles = n_img * tiles_img;
    if (t >= tiles) return;
    __global float *dst = bp + ((ulong)(c / WINO_PANEL) * tiles + t) * WINO_PANEL + c % WINO_PANEL;
    float v[16];
    if (c < channels) {
        const uint n = t / tiles_img, r = t - n * tiles_img, ty = r / tw, tx = r - ty * tw;
        const __global float *plane = x + x_off + ((ulong)n * channels + c) * in_h * in_w;
        const int y0 = 2 * (int)ty - 1, x0 = 2 * (int)tx - 1;
        float d[16];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int yy = y0 + i, xx = x0 + j;
                d[4 * i + j] = yy >= 0 && yy < (int)in_h && xx >= 0 && xx < (int)in_w ? plane[yy * (int)in_w + xx] : 0.0f;
            }
        wino_input_tile(d, v);
    } else {
#pragma unroll
        for (int k = 0; k < 16; ++k) v[k] = 0.0f;
    }
#pragma unroll
    for (int k = 0; k < 16; ++k) dst[(ulong)k * b_stride] = v[k];
}

/* dW[o, c] (=, or += with acc) G^T M_(o, c) G from M_k [O, C] (row-major, m_stride floats
 * apart). One work-item per (c, o), c along dimension 0. */
__kernel void conv2d_winograd_dw_output(__global const float *restrict m, const ulong m_stride,
                                        __global float *restrict dw, const ulong dw_off, const int acc,
                                        const uint channels, const uint outputs)
{
    const uint c = get_global_id(0), o = get_global_id(1);
    if (c >= channels || o >= outputs) return;
    const __global float *src = m + (ulong)o * channels + c;
    float v[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) v[k] = src[(ulong)k * m_stride];
    /* G^T v: 3 x 4, rows v0 + (v1 + v2) / 2, (v1 - v2) / 2, (v1 + v2) / 2 + v3 */
    float s[12];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float a = v[j], b = v[4 + j], e = v[8 + j], f = v[12 + j];
        s[j] = a + 0.5f * (b + e);
        s[4 + j] = 0.5f * (b - e);
        s[8 + j] = 0.5f * (b + e) + f;
    }
    __global float *dst = dw + dw_off + ((ulong)o * channels + c) * 9;
#pragma unroll
    for (int i = 0; i < 3; ++i) { /* (G^T v) G */
        const float a = s[4 * i], b = s[4 * i + 1], e = s[4 * i + 2], f = s[4 * i + 3];
        const float g0 = a + 0.5f * (b + e), g1 = 0.5f * (b - e), g2 = 0.5f * (b + e) + f;
        dst[3 * i + 0] = acc ? dst[3 * i + 0] + g0 : g0;
        dst[3 * i + 1] = acc ? dst[3 * i + 1] + g1 : g1;
        dst[3 * i + 2] = acc ? dst[3 * i + 2] + g2 : g2;
    }
}
