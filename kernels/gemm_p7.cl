/* p7's own GEMM: C = alpha * op(A) * op(B) + beta * C, row-major float32.
 *
 * Two packing passes copy op(A) and op(B) into panels, then a register-tiled
 * micro-kernel computes one MR x NR tile of C per work-item from one A panel and
 * one B panel. Packing absorbs transposes, leading dimensions, offsets and the
 * ragged edges (zero rows/columns), so the micro-kernel's inner loop is branch-free
 * unit-stride loads and multiply-adds.
 *
 * Packed layouts (K is the full depth, not rounded):
 *   A panel p (rows p*MR .. p*MR+MR-1): ap[(p*K + k)*MR + r]  = op(A)[p*MR + r][k]
 *   B panel q (cols q*NR .. q*NR+NR-1): bp[(q*K + k)*NR + j]  = op(B)[k][q*NR + j]
 * Rows/columns past M/N are zero, so the micro-kernel never tests them while
 * accumulating; only the C write-back is bounds-checked.
 *
 * On a CPU runtime (PoCL) each micro-kernel work-item is one work-group of size 1,
 * and its 16 float16 accumulators live in AVX-512 registers. The MR rows are
 * spelled out by macros (a fully unrolled loop that does not depend on the
 * compiler honouring a pragma): a rolled loop over rows ran at about a third of the
 * speed (../shared/reference/perf-baseline.md, section 6, beside the checkout). OpenCL C 1.2 only, so it also builds on GPUs,
 * where it is correct but not tuned (CLBlast is the GPU backend).
 */

#define MR 8
#define NR 32

/* Packing. A panel of width W (MR for A, NR for B) is built from a source where
 * either the W values for one k are contiguous (transposed A, plain B: "copy"), or
 * k is contiguous along each of W stored rows (plain A, transposed B: "gather").
 * `rows` is M or N; values past it are written as zeros. */

/* Work-item x: VW consecutive values of one panel row (panel x / (W / VW)); y: k.
 * A work-group of LX x LY items then reads LY stored rows in runs of LX * VW floats
 * and writes LY consecutive rows of each panel it touches: both sides stay in long
 * runs within a few pages. (One work-item per k over whole panels reads 128 bytes
 * per stored row and ran at a third of copy bandwidth.) */
#define P7_PACK_COPY(W, VW)                                                            \
    __kernel void gemm_p7_pack_copy_##W(const uint rows, const uint k_total,            \
                                        __global const float *src, const ulong offset,  \
                                        const ulong ld, __global float *dst,            \
                                        const ulong dst_offset)                         \
    {                                                                                   \
        const uint x = get_global_id(0);                                                \
        const uint k = get_global_id(1);                                                \
        const uint p = x / (W / VW);                                                    \
        const uint r0 = x * VW;                                                         \
        if (k >= k_total || p * W >= rows) return;                                      \
        const __global float *s = src + offset + (size_t)k * ld + r0;                   \
        __global float *d = dst + dst_offset + ((size_t)p * k_total + k) * W + (r0 - p * W); \
        if (r0 + VW <= rows) {                                                          \
            vstore##VW(vload##VW(0, s), 0, d);                                          \
        } else {                                                                        \
            for (uint i = 0; i < VW; ++i) d[i] = (r0 + i < rows) ? s[i] : 0.0f;         \
        }                                                                               \
    }

/* Work-item x: a run of P7_PACK_KB = 16 consecutive k of one panel. Groups of 8
 * stored rows are read as float16 runs and transposed in registers into 16 panel
 * rows of 8 floats (component selection compiles to shuffles), so every load and
 * store is a vector. Element-wise transposes through a private array compiled to
 * AVX-512 scatters or scalar inserts and ran at a third of the speed. */
#define P7_PACK_KB 16
#define P7_T8(kk, W)                                                                \
    vstore8((float8)(v0.s##kk, v1.s##kk, v2.s##kk, v3.s##kk, v4.s##kk, v5.s##kk,   \
                     v6.s##kk, v7.s##kk),                                          \
            0, d + 0x##kk * (W) + g);
#define P7_PACK_GATHER(W)                                                               \
    __kernel void gemm_p7_pack_gather_##W(const uint rows, const uint k_total,          \
                                          __global const float *src, const ulong offset, \
                                          const ulong ld, __global float *dst,          \
                                          const ulong dst_offset)                       \
    {                                                                                   \
        const uint k0 = get_global_id(0) * P7_PACK_KB;                                  \
        const uint p = get_global_id(1);                                                \
        if (k0 >= k_total) return;                                                      \
        const uint r0 = p * W;                                                          \
        const uint kn = min((uint)P7_PACK_KB, k_total - k0);                            \
        const __global float *s = src + offset + (size_t)r0 * ld + k0;                  \
        __global float *d = dst + dst_offset + ((size_t)p * k_total + k0) * W;          \
        if (r0 + W <= rows && kn == P7_PACK_KB) {                                       \
            for (uint g = 0; g < W; g += 8) {                                           \
                const __global float *sg = s + (size_t)g * ld;                          \
                const float16 v0 = vload16(0, sg), v1 = vload16(0, sg + ld);            \
                const float16 v2 = vload16(0, sg + 2 * ld), v3 = vload16(0, sg + 3 * ld); \
                const float16 v4 = vload16(0, sg + 4 * ld), v5 = vload16(0, sg + 5 * ld); \
                const float16 v6 = vload16(0, sg + 6 * ld), v7 = vload16(0, sg + 7 * ld); \
                P7_T8(0, W) P7_T8(1, W) P7_T8(2, W) P7_T8(3, W) P7_T8(4, W) P7_T8(5, W) P7_T8(6, W) P7_T8(7, W) \
                P7_T8(8, W) P7_T8(9, W) P7_T8(a, W) P7_T8(b, W) P7_T8(c, W) P7_T8(d, W) P7_T8(e, W) P7_T8(f, W) \
            }                                                                           \
        } else {                                                                        \
            for (uint kk = 0; kk < kn; ++kk) {                                          \
                for (uint r = 0; r < W; ++r)                                            \
                    d[(size_t)kk * W + r] = (r0 + r < rows) ? s[(size_t)r * ld + kk] : 0.0f; \
            }                                                                           \
        }                                                                               \
    }

P7_PACK_COPY(8, 8)
P7_PACK_COPY(32, 16)
P7_PACK_GATHER(8)
P7_PACK_GATHER(32)

/* Writes columns [0, cols) of one accumulated row; beta == 0 never reads C. */
static void gemm_p7_store_row(float16 lo, float16 hi, __global float *dst, const uint cols,
                              const float alpha, const float beta)
{
    if (cols == NR) {
        if (beta == 0.0f) {
            vstore16(alpha * lo, 0, dst);
            vstore16(alpha * hi, 0, dst + 16);
        } else {
            vstore16(alpha * lo + beta * vload16(0, dst), 0, dst);
            vstore16(alpha * hi + beta * vload16(0, dst + 16), 0, dst + 16);
        }
    } else {
        float t[NR];
        vstore16(lo, 0, t);
        vstore16(hi, 0, t + 16);
        for (uint j = 0; j < cols; ++j)
            dst[j] = (beta == 0.0f) ? alpha * t[j] : alpha * t[j] + beta * dst[j];
    }
}

/* fma, not mad: PoCL lowers mad to a separate multiply and add, which halves the
 * throughput; a device without fused multiply-add hardware is not a target here. */
#define P7_ROW_FMA(r)                                   \
    {                                                   \
        const float16 av = (float16)(a[(size_t)k * MR + r]); \
        c##r##0 = fma(av, b0, c##r##0);                 \
        c##r##1 = fma(av, b1, c##r##1);                 \
    }

#define P7_ROW_STORE(r)                                                          \
    if (r < rows) gemm_p7_store_row(c##r##0, c##r##1, cp + (size_t)(r) * ldc, cols, alpha, beta);

/* One MR x NR tile per work-item over depth [k_begin, k_begin + k_len) of the packed
 * panels; the host splits a deep K into blocks (beta = 1 after the first) so that
 * one B panel block stays in L2 while the A panels stream past it.
 * Work-groups run in order of dimension 0 first. With n_fastest == 0, dimension 0 is
 * the A panel: consecutive work-groups share one B panel block. With a shallow K the
 * tiles are cheap and writing C dominates; n_fastest == 1 then walks each row band
 * of C left to right instead of striding down its columns. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_p7_tile(const uint m, const uint n, const uint k_total, const uint k_begin,
                  const uint k_len, const int n_fastest, __global const float *restrict ap,
                  const ulong ap_offset, __global const float *restrict bp,
                  const ulong bp_offset, __global float *restrict c,
                  const ulong c_offset, const ulong ldc, const float alpha, const float beta)
{
    const uint p = (uint)get_global_id(n_fastest ? 1 : 0);
    const uint q = (uint)get_global_id(n_fastest ? 0 : 1);
    const __global float *a = ap + ap_offset + ((size_t)p * k_total + k_begin) * MR;
    const __global float *b = bp + bp_offset + ((size_t)q * k_total + k_begin) * NR;

    float16 c00 = 0.0f, c01 = 0.0f, c10 = 0.0f, c11 = 0.0f, c20 = 0.0f, c21 = 0.0f;
    float16 c30 = 0.0f, c31 = 0.0f, c40 = 0.0f, c41 = 0.0f, c50 = 0.0f, c51 = 0.0f;
    float16 c60 = 0.0f, c61 = 0.0f, c70 = 0.0f, c71 = 0.0f;

    for (uint k = 0; k < k_len; ++k) {
        const float16 b0 = vload16(0, b + (size_t)k * NR);
        const float16 b1 = vload16(0, b + (size_t)k * NR + 16);
        P7_ROW_FMA(0) P7_ROW_FMA(1) P7_ROW_FMA(2) P7_ROW_FMA(3)
        P7_ROW_FMA(4) P7_ROW_FMA(5) P7_ROW_FMA(6) P7_ROW_FMA(7)
    }

    const uint i0 = p * MR, j0 = q * NR;
    const uint rows = min((uint)MR, m - i0);
    const uint cols = min((uint)NR, n - j0);
    __global float *cp = c + c_offset + (size_t)i0 * ldc + j0;
    P7_ROW_STORE(0) P7_ROW_STORE(1) P7_ROW_STORE(2) P7_ROW_STORE(3)
    P7_ROW_STORE(4) P7_ROW_STORE(5) P7_ROW_STORE(6) P7_ROW_STORE(7)
}
