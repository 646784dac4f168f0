/* p7's own GEMM: C = alpha * op(A) * op(B) + beta * C, row-major float32.
 *
 * Two packing passes copy op(A) and op(B) into panels, then a register-tiled
 * micro-kernel computes one MR x NR tile of C per work-item from one A panel and
 * one B panel. Packing absorbs transposes, leading dimensions, offsets and the
 * ragged edges (zero rows/columns), so the micro-kernel's inner loop is branch-free
 * unit-stride loads and multiply-adds.
 *
 * The tile is a build option, chosen per device (core/src/gemm/gemm_tuning.c): the
 * host builds this file once per option set with
 *   -DP7_GEMM_MR=rows -DP7_GEMM_NR=columns -DP7_GEMM_VW=floats per vector
 *   -DP7_GEMM_A_VW=... -DP7_GEMM_B_VW=...   (vector widths of the copy packers)
 * MR is even and at most 12; NR is 1 to 4 vectors of VW (4, 8 or 16) floats. The
 * accumulators are MR x NR/VW vectors: they have to fit the register file with the
 * NR/VW B vectors and one broadcast (AVX-512: 32 registers of 16 floats, so 8 x 32;
 * AVX2: 16 registers of 8, so 6 x 16).
 *
 * Packed layouts (K is the full depth, not rounded):
 *   A panel p (rows p*MR .. p*MR+MR-1): ap[(p*K + k)*MR + r]  = op(A)[p*MR + r][k]
 *   B panel q (cols q*W .. q*W+W-1):    bp[(q*K + k)*W + j]   = op(B)[k][q*W + j]
 * where W, the B panel width, is NR when the host packs B and 32 when conv2d's
 * im2col wrote it (then NR divides 32 and each tile reads its NR columns of a panel).
 * Rows/columns past M/N are zero, so the micro-kernel never tests them while
 * accumulating; only the C write-back is bounds-checked.
 *
 * On a CPU runtime (PoCL) each micro-kernel work-item is one work-group of size 1,
 * and its accumulators live in vector registers. The MR rows and the vectors of a
 * row are spelled out by macros (a fully unrolled loop that does not depend on the
 * compiler honouring a pragma): a rolled loop over rows ran at about a third of the
 * speed (../shared/reference/perf-baseline.md, section 6, beside the checkout). OpenCL
 * C 1.2 only, so it also builds on GPUs, where it is correct but not tuned (CLBlast
 * is the GPU backend).
 */

#if !defined(P7_GEMM_MR) || !defined(P7_GEMM_NR) || !defined(P7_GEMM_VW) || !defined(P7_GEMM_A_VW) || \
    !defined(P7_GEMM_B_VW)
#error "gemm_p7.cl needs -DP7_GEMM_MR, _NR, _VW, _A_VW and _B_VW (core/src/gemm/gemm_p7.c passes them)"
#endif
#define MR P7_GEMM_MR
#define NR P7_GEMM_NR

#if NR == P7_GEMM_VW
#define P7_GEMM_NV 1
#elif NR == 2 * P7_GEMM_VW
#define P7_GEMM_NV 2
#elif NR == 3 * P7_GEMM_VW
#define P7_GEMM_NV 3
#elif NR == 4 * P7_GEMM_VW
#define P7_GEMM_NV 4
#else
#error "P7_GEMM_NR must be 1 to 4 vectors of P7_GEMM_VW floats"
#endif

#define P7_CAT_(a, b) a##b
#define P7_CAT(a, b) P7_CAT_(a, b)
#define VEC P7_CAT(float, P7_GEMM_VW)
#define VLOAD P7_CAT(vload, P7_GEMM_VW)
#define VSTORE P7_CAT(vstore, P7_GEMM_VW)

/* X(r) for each row r of the tile; Y(r, v) for each vector v of row r. */
#define P7_ROWS_2(X) X(0) X(1)
#define P7_ROWS_4(X) P7_ROWS_2(X) X(2) X(3)
#define P7_ROWS_6(X) P7_ROWS_4(X) X(4) X(5)
#define P7_ROWS_8(X) P7_ROWS_6(X) X(6) X(7)
#define P7_ROWS_10(X) P7_ROWS_8(X) X(8) X(9)
#define P7_ROWS_12(X) P7_ROWS_10(X) X(10) X(11)
#define P7_FOR_ROWS(X) P7_CAT(P7_ROWS_, MR)(X)
#define P7_VECS_1(Y, r) Y(r, 0)
#define P7_VECS_2(Y, r) P7_VECS_1(Y, r) Y(r, 1)
#define P7_VECS_3(Y, r) P7_VECS_2(Y, r) Y(r, 2)
#define P7_VECS_4(Y, r) P7_VECS_3(Y, r) Y(r, 3)
#define P7_FOR_VECS(Y, r) P7_CAT(P7_VECS_, P7_GEMM_NV)(Y, r)

/* Packing. A panel of width W (MR for A, NR for B) is built from a source where
 * either the W values for one k are contiguous (transposed A, plain B: "copy"), or
 * k is contiguous along each of W stored rows (plain A, transposed B: "gather").
 * `rows` is M or N; values past it are written as zeros. */

/* Work-item x: VW consecutive values of one panel row (panel x / (W / VW)); y: k.
 * A work-group of LX x LY items then reads LY stored rows in runs of LX * VW floats
 * and writes LY consecutive rows of each panel it touches: both sides stay in long
 * runs within a few pages. (One work-item per k over whole panels reads 128 bytes
 * per stored row and ran at a third of copy bandwidth.) */
#define P7_PACK_COPY(NAME, W, VW)                                                      \
    __kernel void gemm_p7_pack_copy_##NAME(const uint rows, const uint k_total,         \
                                           __global const float *src, const ulong offset, \
                                           const ulong ld, __global float *dst,         \
                                           const ulong dst_offset)                      \
    {                                                                                   \
        const uint x = get_global_id(0);                                                \
        const uint k = get_global_id(1);                                                \
        const uint p = x / (W / VW);                                                    \
        const uint r0 = x * VW;                                                         \
        if (k >= k_total || p * W >= rows) return;                                      \
        const __global float *s = src + offset + (size_t)k * ld + r0;                   \
        __global float *d = dst + dst_offset + ((size_t)p * k_total + k) * W + (r0 - p * W); \
        if (r0 + VW <= rows) {                                                          \
            P7_CAT(vstore, VW)(P7_CAT(vload, VW)(0, s), 0, d);                          \
        } else {                                                                        \
            for (uint i = 0; i < VW; ++i) d[i] = (r0 + i < rows) ? s[i] : 0.0f;         \
        }                                                                               \
    }

/* Work-item x: a run of P7_PACK_KB = 16 consecutive k of one panel. Groups of 8 (then
 * 4) stored rows are read as float16 runs and transposed in registers into 16 panel
 * rows of 8 (4) floats (component selection compiles to shuffles), so every load and
 * store is a vector; a remainder of 2 rows (MR = 6 or 10) is copied by element.
 * Element-wise transposes through a private array compiled to AVX-512 scatters or
 * scalar inserts and ran at a third of the speed. */
#define P7_PACK_KB 16
#define P7_T8(kk, W)                                                                \
    vstore8((float8)(v0.s##kk, v1.s##kk, v2.s##kk, v3.s##kk, v4.s##kk, v5.s##kk,   \
                     v6.s##kk, v7.s##kk),                                          \
            0, d + 0x##kk * (W) + g);
#define P7_T4(kk, W) vstore4((float4)(v0.s##kk, v1.s##kk, v2.s##kk, v3.s##kk), 0, d + 0x##kk * (W) + g);
#define P7_ALL_K(T, W)                                                                  \
    T(0, W) T(1, W) T(2, W) T(3, W) T(4, W) T(5, W) T(6, W) T(7, W)                     \
    T(8, W) T(9, W) T(a, W) T(b, W) T(c, W) T(d, W) T(e, W) T(f, W)
#define P7_PACK_GATHER(NAME, W)                                                         \
    __kernel void gemm_p7_pack_gather_##NAME(const uint rows, const uint k_total,       \
                                             __global const float *src, const ulong offset, \
                                             const ulong ld, __global float *dst,       \
                                             const ulong dst_offset)                    \
    {                                                                                   \
        const uint k0 = get_global_id(0) * P7_PACK_KB;                                  \
        const uint p = get_global_id(1);                                                \
        if (k0 >= k_total) return;                                                      \
        const uint r0 = p * W;                                                          \
        const uint kn = min((uint)P7_PACK_KB, k_total - k0);                            \
        const __global float *s = src + offset + (size_t)r0 * ld + k0;                  \
        __global float *d = dst + dst_offset + ((size_t)p * k_total + k0) * W;          \
        if (r0 + W <= rows && kn == P7_PACK_KB) {                                       \
            uint g = 0;                                                                 \
            for (; g + 8 <= W; g += 8) {                                                \
                const __global float *sg = s + (size_t)g * ld;                          \
                const float16 v0 = vload16(0, sg), v1 = vload16(0, sg + ld);            \
                const float16 v2 = vload16(0, sg + 2 * ld), v3 = vload16(0, sg + 3 * ld); \
                const float16 v4 = vload16(0, sg + 4 * ld), v5 = vload16(0, sg + 5 * ld); \
                const float16 v6 = vload16(0, sg + 6 * ld), v7 = vload16(0, sg + 7 * ld); \
                P7_ALL_K(P7_T8, W)                                                      \
            }                                                                           \
            if (g + 4 <= W) {                                                           \
                const __global float *sg = s + (size_t)g * ld;                          \
                const float16 v0 = vload16(0, sg), v1 = vload16(0, sg + ld);            \
                const float16 v2 = vload16(0, sg + 2 * ld), v3 = vload16(0, sg + 3 * ld); \
                P7_ALL_K(P7_T4, W)                                                      \
                g += 4;                                                                 \
            }                                                                           \
            for (; g < W; ++g)                                                          \
                for (uint kk = 0; kk < P7_PACK_KB; ++kk)                                \
                    d[(size_t)kk * W + g] = s[(size_t)g * ld + kk];                     \
        } else {                                                                        \
            for (uint kk = 0; kk < kn; ++kk) {                                          \
                for (uint r = 0; r < W; ++r)                                            \
                    d[(size_t)kk * W + r] = (r0 + r < rows) ? s[(size_t)r * ld + kk] : 0.0f; \
            }                                                                           \
        }                                                                               \
    }

P7_PACK_COPY(a, MR, P7_GEMM_A_VW)
P7_PACK_COPY(b, NR, P7_GEMM_B_VW)
P7_PACK_GATHER(a, MR)
P7_PACK_GATHER(b, NR)

/* fma, not mad: PoCL lowers mad to a separate multiply and add, which halves the
 * throughput; a device without fused multiply-add hardware is not a target here. */
#define P7_ACC_DECLARE(r, v) VEC c##r##_##v = 0.0f;
#define P7_ROW_DECLARE(r) P7_FOR_VECS(P7_ACC_DECLARE, r)
#define P7_B_LOAD(r, v) const VEC b##v = VLOAD(0, bk + (v) * P7_GEMM_VW);
#define P7_ACC_FMA(r, v) c##r##_##v = fma(av, b##v, c##r##_##v);
#define P7_ROW_FMA(r)                                   \
    {                                                   \
        const VEC av = (VEC)(ak[r]);                    \
        P7_FOR_VECS(P7_ACC_FMA, r)                      \
    }

/* Write-back of row r: whole rows as vectors, a ragged last tile through a private
 * copy; beta == 0 never reads C. */
#define P7_ACC_STORE(r, v) VSTORE(alpha * c##r##_##v, 0, dst + (v) * P7_GEMM_VW);
#define P7_ACC_UPDATE(r, v) \
    VSTORE(alpha * c##r##_##v + beta * VLOAD(0, dst + (v) * P7_GEMM_VW), 0, dst + (v) * P7_GEMM_VW);
#define P7_ACC_SPILL(r, v) VSTORE(c##r##_##v, 0, t + (v) * P7_GEMM_VW);
#define P7_ROW_STORE(r)                                                              \
    if (r < rows) {                                                                  \
        __global float *dst = cp + (size_t)(r) * ldc;                                \
        if (cols == NR) {                                                            \
            if (beta == 0.0f) {                                                      \
                P7_FOR_VECS(P7_ACC_STORE, r)                                         \
            } else {                                                                 \
                P7_FOR_VECS(P7_ACC_UPDATE, r)                                        \
            }                                                                        \
        } else {                                                                     \
            float t[NR];                                                             \
            P7_FOR_VECS(P7_ACC_SPILL, r)                                             \
            for (uint j = 0; j < cols; ++j)                                          \
                dst[j] = (beta == 0.0f) ? alpha * t[j] : alpha * t[j] + beta * dst[j]; \
        }                                                                            \
    }

/* One MR x NR tile per work-item over depth [k_begin, k_begin + k_len) of the packed
 * panels; the host splits a deep K into blocks (beta = 1 after the first) so that
 * one B panel block stays in L2 while the A panels stream past it. Where C is small
 * (few tiles, so one launch per block would be mostly launch cost) the blocks run in
 * one launch as parts along dimension 2, each into its own C, and gemm_p7_split_sum
 * adds them. Dimension 2 also runs a batch of independent products (Winograd's 16):
 * part s starts part_k deeper in K (split K) or part_a, part_b and part_c floats further
 * on in the panels and C (a batch). Tile column q
 * reads columns (q % (b_width / NR)) * NR .. + NR - 1 of B panel q / (b_width / NR).
 * Work-groups run in order of dimension 0 first. With n_fastest == 0, dimension 0 is
 * the A panel: consecutive work-groups share one B panel block. With a shallow K the
 * tiles are cheap and writing C dominates; n_fastest == 1 then walks each row band
 * of C left to right instead of striding down its columns. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_p7_tile(const uint m, const uint n, const uint k_total, const uint k_begin,
                  const uint k_len, const int n_fastest, __global const float *restrict ap,
                  const ulong ap_offset, __global const float *restrict bp,
                  const ulong bp_offset, const uint b_width, __global float *restrict c,
                  const ulong c_offset, const ulong ldc, const float alpha, const float beta,
                  const uint part_k, const ulong part_a, const ulong part_b, const ulong part_c)
{
    const uint p = (uint)get_global_id(n_fastest ? 1 : 0);
    const uint q = (uint)get_global_id(n_fastest ? 0 : 1);
    /* Part s (dimension 2) covers [k_begin + s part_k, ...) of K (a split K's last part
     * may be shorter) and writes its own C, part_c floats after part s - 1's. */
    const uint s = (uint)get_global_id(2);
    const uint kb = k_begin + s * part_k;
    const uint kn = min(k_len, k_total - kb);
    const uint tiles_per_panel = b_width / NR;
    const uint b_panel = q / tiles_per_panel, b_column = (q % tiles_per_panel) * NR;
    const __global float *a = ap + ap_offset + s * part_a + ((size_t)p * k_total + kb) * MR;
    const __global float *b = bp + bp_offset + s * part_b + ((size_t)b_panel * k_total + kb) * b_width + b_column;

    P7_FOR_ROWS(P7_ROW_DECLARE)

    for (uint k = 0; k < kn; ++k) {
        const __global float *ak = a + (size_t)k * MR;
        const __global float *bk = b + (size_t)k * b_width;
        P7_FOR_VECS(P7_B_LOAD, 0)
        P7_FOR_ROWS(P7_ROW_FMA)
    }

    const uint i0 = p * MR, j0 = q * NR;
    const uint rows = min((uint)MR, m - i0);
    const uint cols = min((uint)NR, n - j0);
    __global float *cp = c + c_offset + s * part_c + (size_t)i0 * ldc + j0;
    P7_FOR_ROWS(P7_ROW_STORE)
}

/* C = alpha * (sum over the parts of a split K, in part order) + beta * C: one work-item
 * per element of C [m, n]; part s of element (i, j) is at parts[s * m * n + i * n + j].
 * The fixed order keeps the result the same run to run. */
__kernel void gemm_p7_split_sum(__global const float *restrict parts, const ulong parts_offset,
                                const uint splits, const uint m, const uint n,
                                __global float *restrict c, const ulong c_offset, const ulong ldc,
                                const float alpha, const float beta)
{
    const uint j = (uint)get_global_id(0), i = (uint)get_global_id(1);
    if (j >= n || i >= m) return;
    const size_t plane = (size_t)m * n;
    const __global float *src = parts + parts_offset + (size_t)i * n + j;
    float acc = 0.0f;
    for (uint s = 0; s < splits; ++s) acc += src[(size_t)s * plane];
    __global float *dst = c + c_offset + (size_t)i * ldc + j;
    *dst = beta == 0.0f ? alpha * acc : alpha * acc + beta * *dst;
}
