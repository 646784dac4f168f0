/* p7's own GEMM backend: pack op(A) and op(B) into panels in the device's GEMM
 * workspace, then run the register-tiled micro-kernel over K blocks
 * (kernels/gemm_p7.cl describes the layouts). Everything is enqueued on the
 * device's in-order queue; nothing here waits. */
#include <limits.h>
#include <stdio.h>
#include <stdint.h>

#include "gemm/gemm_internal.h"
#include "gemm/gemm_tuning.h"
#include "runtime/runtime.h"
#include "runtime/p7_kernels.h"

/* Must match P7_PACK_KB in kernels/gemm_p7.cl. The tile (MR, NR, vector width) and
 * the K block come from the device's tuning (gemm_tuning.c). */
enum { P7_GEMM_PACK_KB = 16 };

/* Below this depth a tile costs less than writing it back, so tiles walk C row-wise. */
enum { P7_GEMM_SHALLOW_K = 64 };

/* Width of B panels that conv2d's im2col writes (gemm_packed.h); the tile's NR divides it. */
enum { P7_GEMM_B_PANEL = P7_GEMM_P7_PANEL };

/* Work-group shapes of the packing kernels. Copy: 16 vectors along a stored row by
 * 4 rows (k), so reads and writes both come in runs of at least 256 bytes; gather:
 * 4 runs of 16 k. Measured on PoCL/Zen 4 against smaller and larger groups; the
 * differences were within 20%. */
enum { P7_GEMM_COPY_LX = 16, P7_GEMM_COPY_LY = 4, P7_GEMM_GATHER_LX = 4 };

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

/* Split K: where C is small and K deep (conv1's weight gradient: C 64 x 27, K = 131,072
 * at batch 128), launching the K blocks one after the other costs a launch per block
 * for a handful of tiles each (172 launches of ~0.09 ms, mostly overhead). Then all
 * blocks run in one launch, each into its own copy of C in the workspace, and one pass
 * adds them. That moves no more memory than the blocks' read-modify-write of C; the
 * cap keeps the copies (and the workspace) under 4 MiB. */
enum { P7_GEMM_SPLIT_MAX_FLOATS = 1 << 20 };

static size_t k_blocks(const p7_gemm_p7_params *p, size_t k) { return (k + (size_t)p->kc - 1) / (size_t)p->kc; }

/* The parts of a split K (1: no split) for `p`, or an upper bound over every tuning when
 * p is NULL. */
static size_t split_parts(const p7_gemm_p7_params *p, size_t m, size_t n, size_t k)
{
    const size_t blocks = p ? k_blocks(p, k) : (k + P7_GEMM_KC_MIN - 1) / P7_GEMM_KC_MIN;
    if (blocks < 2 || m == 0 || n == 0 || m * n > P7_GEMM_SPLIT_MAX_FLOATS / 2) return 1;
    if (blocks <= P7_GEMM_SPLIT_MAX_FLOATS / (m * n)) return blocks;
    return p ? 1 : P7_GEMM_SPLIT_MAX_FLOATS / (m * n);
}

/* The widest vector (16, 8, 4 or 2 floats) that divides a panel width: the copy
 * packer's vector (-DP7_GEMM_A_VW / _B_VW). Widths are even (params_problem). */
static int copy_vector_width(int width)
{
    return width % 16 == 0 ? 16 : width % 8 == 0 ? 8 : width % 4 == 0 ? 4 : 2;
}

/* The build options of kernels/gemm_p7.cl for `p`. */
static void build_options(const p7_gemm_p7_params *p, char *buf, size_t size)
{
    snprintf(buf, size, "-DP7_GEMM_MR=%d -DP7_GEMM_NR=%d -DP7_GEMM_VW=%d -DP7_GEMM_A_VW=%d -DP7_GEMM_B_VW=%d",
             p->mr, p->nr, p->vw, copy_vector_width(p->mr), copy_vector_width(p->nr));
}

/* Packs one operand ('a' into MR-wide panels, 'b' into NR-wide ones). `copy` means the
 * panel's values for one k lie contiguously in the source (A transposed, B not);
 * otherwise k runs along the stored rows. */
static p7_status pack(p7_device *device, const char *options, const p7_gemm_desc *d, int copy, char operand,
                      int width, cl_uint rows, cl_mem src, size_t src_offset, size_t ld, size_t panels, cl_mem dst,
                      size_t dst_offset, const char *label)
{
    char name[32];
    snprintf(name, sizeof name, "gemm_p7_pack_%s_%c", copy ? "copy" : "gather", operand);
    cl_kernel kernel;
    P7_TRY(p7_kernel_get(device, &p7_kernels_gemm_p7, options, name, &kernel));
    cl_uint k_total = (cl_uint)d->k;
    cl_ulong offset = src_offset, ld64 = ld, dst_off = dst_offset;
    P7_TRY(P7_SET_ARGS(kernel, label, P7_ARG(rows), P7_ARG(k_total), P7_ARG(src), P7_ARG(offset),
                       P7_ARG(ld64), P7_ARG(dst), P7_ARG(dst_off)));
    size_t global[2], local[2];
    if (copy) {
        /* x: vectors of one panel row; y: k */
        size_t vectors = panels * (size_t)(width / copy_vector_width(width));
        local[0] = P7_GEMM_COPY_LX;
        local[1] = P7_GEMM_COPY_LY;
        global[0] = round_up(vectors, local[0]);
        global[1] = round_up(d->k, local[1]);
    } else {
        /* x: runs of P7_GEMM_PACK_KB k; y: panels */
        local[0] = P7_GEMM_GATHER_LX;
        local[1] = 1;
        global[0] = round_up((d->k + P7_GEMM_PACK_KB - 1) / P7_GEMM_PACK_KB, local[0]);
        global[1] = panels;
    }
    return p7_launch(device, kernel, 2, global, local, label);
}

/* Per device: the packed-panel workspace, grown monotonically and reused by every call. */
typedef struct gemm_p7_state {
    p7_buffer *workspace;
} gemm_p7_state;

static const char gemm_p7_state_key = 0;

static void gemm_p7_state_destroy(p7_device *device, void *state)
{
    (void)device;
    p7_buffer_free(((gemm_p7_state *)state)->workspace);
}

static p7_status workspace(p7_device *device, size_t bytes, cl_mem *ws)
{
    void *slot;
    P7_TRY(p7_device_state(device, &gemm_p7_state_key, sizeof(gemm_p7_state), gemm_p7_state_destroy, &slot));
    return p7_device_workspace(device, &((gemm_p7_state *)slot)->workspace, bytes, ws);
}

/* One workspace holds both packed operands; B starts on a 64-float (256-byte)
 * boundary so its panels keep the vector alignment the kernel's loads like. */
static size_t b_panels_offset(size_t m_rows, size_t k) { return round_up(m_rows * k, 64); }

/* Where a split K's parts start: after the packed panels, on a 64-float boundary. */
static size_t parts_offset(size_t a_rows, size_t b_cols, size_t k, int b_packed)
{
    return b_packed ? round_up(a_rows * k, 64) : round_up(b_panels_offset(a_rows, k) + b_cols * k, 64);
}

size_t p7_gemm_p7_workspace_bytes(const p7_gemm_p7_params *p, size_t m, size_t n, size_t k, int b_packed)
{
    /* Without a tile: A panels round M up by less than MR_MAX rows; B panels of an NR
     * that divides 32 round N up no further than 32-wide ones. */
    const size_t a_rows = p ? (m + (size_t)p->mr - 1) / (size_t)p->mr * (size_t)p->mr : m + P7_GEMM_MR_MAX - 1;
    const size_t b_cols = p ? round_up(n, (size_t)p->nr) : round_up(n, P7_GEMM_NR_MAX);
    const size_t parts = split_parts(p, m, n, k);
    if (parts < 2) {
        if (b_packed) return a_rows * k * sizeof(float);
        return (b_panels_offset(a_rows, k) + b_cols * k) * sizeof(float);
    }
    return (parts_offset(a_rows, b_cols, k, b_packed) + parts * m * n) * sizeof(float);
}

/* A split K's parts added into C (alpha, beta as the GEMM's). */
static p7_status sum_parts(p7_device *device, const char *options, const p7_gemm_desc *d, cl_mem c, cl_mem ws,
                           size_t parts_off, size_t parts)
{
    cl_kernel sum;
    P7_TRY(p7_kernel_get(device, &p7_kernels_gemm_p7, options, "gemm_p7_split_sum", &sum));
    cl_ulong off = parts_off, c_off = d->c_offset, ldc = d->ldc;
    cl_uint splits = (cl_uint)parts, m32 = (cl_uint)d->m, n32 = (cl_uint)d->n;
    float alpha = d->alpha, beta = d->beta;
    P7_TRY(P7_SET_ARGS(sum, "gemm_p7.split_sum", P7_ARG(ws), P7_ARG(off), P7_ARG(splits), P7_ARG(m32),
                       P7_ARG(n32), P7_ARG(c), P7_ARG(c_off), P7_ARG(ldc), P7_ARG(alpha), P7_ARG(beta)));
    const size_t local[2] = {16, 4};
    const size_t global[2] = {round_up(d->n, local[0]), round_up(d->m, local[1])};
    return p7_launch(device, sum, 2, global, local, "gemm_p7.split_sum");
}

/* A batch of independent products for the tile kernel's dimension 2: count products,
 * each stride floats after the one before in A's panels, B's panels and C. */
typedef struct tile_batch {
    size_t count, a_stride, b_stride, c_stride;
} tile_batch;

static const tile_batch single_product = {1, 0, 0, 0};

/* The micro-kernel over K blocks, on A panels at ap/ap_off and B panels b_width wide
 * at bp/bp_off, for every product of `batch`; a single product with a workspace ws may
 * split K (parts > 1): its parts go to parts_off in ws, then one pass adds them into C. */
static p7_status run_tiles(p7_device *device, const p7_gemm_p7_params *p, const char *options, const p7_gemm_desc *d,
                           cl_mem ap, size_t ap_offset, cl_mem bp, size_t bp_offset, int b_width, cl_mem c,
                           size_t m_panels, size_t n_tiles, cl_mem ws, size_t parts_off, const tile_batch *batch)
{
    cl_kernel tile;
    P7_TRY(p7_kernel_get(device, &p7_kernels_gemm_p7, options, "gemm_p7_tile", &tile));
    const size_t blocks = k_blocks(p, d->k);
    const size_t kc = (d->k + blocks - 1) / blocks; /* equal blocks, none tiny */
    const size_t parts = batch->count == 1 && ws ? split_parts(p, d->m, d->n, d->k) : 1;
    cl_uint m32 = (cl_uint)d->m, n32 = (cl_uint)d->n, k32 = (cl_uint)d->k, bw = (cl_uint)b_width;
    cl_int n_fastest = d->k < P7_GEMM_SHALLOW_K;
    cl_ulong ap_off = ap_offset, bp_off = bp_offset, c_off = d->c_offset, ldc = d->ldc;
    cl_ulong part_a = batch->a_stride, part_b = batch->b_stride, part_c = batch->c_stride;
    cl_uint part_k = 0;
    float alpha = d->alpha;
    size_t global[3] = {n_fastest ? n_tiles : m_panels, n_fastest ? m_panels : n_tiles, batch->count};
    const size_t local[3] = {1, 1, 1};
    if (parts > 1) {
        /* every block at once, each into its own m x n part: alpha and beta at the sum */
        cl_uint k_begin = 0, k_len = (cl_uint)kc;
        float one = 1.0f, zero = 0.0f;
        cl_ulong part_ld = d->n;
        part_c = (cl_ulong)d->m * d->n;
        part_k = k_len;
        cl_ulong first = parts_off;
        global[2] = (d->k + kc - 1) / kc;
        P7_TRY(P7_SET_ARGS(tile, "gemm_p7.tile", P7_ARG(m32), P7_ARG(n32), P7_ARG(k32), P7_ARG(k_begin),
                           P7_ARG(k_len), P7_ARG(n_fastest), P7_ARG(ap), P7_ARG(ap_off), P7_ARG(bp),
                           P7_ARG(bp_off), P7_ARG(bw), P7_ARG(ws), P7_ARG(first), P7_ARG(part_ld), P7_ARG(one),
                           P7_ARG(zero), P7_ARG(part_k), P7_ARG(part_a), P7_ARG(part_b), P7_ARG(part_c)));
        P7_TRY(p7_launch(device, tile, 3, global, local, "gemm_p7.tile"));
        return sum_parts(device, options, d, c, ws, parts_off, global[2]);
    }
    for (size_t k0 = 0; k0 < d->k; k0 += kc) {
        cl_uint k_begin = (cl_uint)k0;
        cl_uint k_len = (cl_uint)(d->k - k0 < kc ? d->k - k0 : kc);
        /* Later blocks accumulate onto what the earlier ones wrote. */
        float beta = k0 == 0 ? d->beta : 1.0f;
        P7_TRY(P7_SET_ARGS(tile, "gemm_p7.tile", P7_ARG(m32), P7_ARG(n32), P7_ARG(k32), P7_ARG(k_begin),
                           P7_ARG(k_len), P7_ARG(n_fastest), P7_ARG(ap), P7_ARG(ap_off), P7_ARG(bp),
                           P7_ARG(bp_off), P7_ARG(bw), P7_ARG(c), P7_ARG(c_off), P7_ARG(ldc), P7_ARG(alpha),
                           P7_ARG(beta), P7_ARG(part_k), P7_ARG(part_a), P7_ARG(part_b), P7_ARG(part_c)));
        P7_TRY(p7_launch(device, tile, batch->count > 1 ? 3 : 2, global, local, "gemm_p7.tile"));
    }
    return P7_SUCCESS;
}

/* The kernels count rows, columns and depth in 32-bit integers (element offsets and
 * addresses are 64-bit); anything larger would not fit in device memory as packed
 * panels anyway. */
static p7_status check_sizes(const p7_gemm_desc *d)
{
    if (d->m > UINT_MAX - P7_GEMM_NR_MAX || d->n > UINT_MAX - P7_GEMM_NR_MAX || d->k > UINT_MAX - P7_GEMM_NR_MAX)
        return p7_fail(P7_ERROR_UNSUPPORTED,
                       "p7_gemm (p7 backend, m=%zu n=%zu k=%zu): sizes above 2^32 - 32 are not supported",
                       d->m, d->n, d->k);
    return P7_SUCCESS;
}

p7_status p7_gemm_p7_run_with(p7_device *device, const p7_gemm_p7_params *p, const p7_gemm_desc *d, cl_mem a,
                              cl_mem b, cl_mem c)
{
    const char *problem = p7_gemm_p7_params_problem(p);
    if (problem) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm (p7 backend): %s", problem);
    P7_TRY(check_sizes(d));
    const size_t mr = (size_t)p->mr, nr = (size_t)p->nr;
    const size_t m_panels = (d->m + mr - 1) / mr;
    const size_t n_panels = (d->n + nr - 1) / nr;
    const size_t b_offset = b_panels_offset(m_panels * mr, d->k);
    const size_t b_floats = n_panels * nr * d->k;
    if (b_floats > (SIZE_MAX / sizeof(float)) - b_offset)
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_gemm (p7 backend, m=%zu n=%zu k=%zu): packed panels overflow",
                       d->m, d->n, d->k);

    char options[160];
    build_options(p, options, sizeof options);
    cl_mem ws;
    P7_TRY(workspace(device, p7_gemm_p7_workspace_bytes(p, d->m, d->n, d->k, 0), &ws));

    /* op(A)[i][k]: stored transposed (K x M), the MR values for one k are contiguous. */
    P7_TRY(pack(device, options, d, d->trans_a, 'a', p->mr, (cl_uint)d->m, a, d->a_offset, d->lda, m_panels, ws, 0,
                "gemm_p7.pack_a"));
    /* op(B)[k][j]: stored as is (K x N), the NR values for one k are contiguous. */
    P7_TRY(pack(device, options, d, !d->trans_b, 'b', p->nr, (cl_uint)d->n, b, d->b_offset, d->ldb, n_panels, ws,
                b_offset, "gemm_p7.pack_b"));

    return run_tiles(device, p, options, d, ws, 0, ws, b_offset, p->nr, c, m_panels, n_panels, ws,
                     parts_offset(m_panels * mr, n_panels * nr, d->k, 0), &single_product);
}

p7_status p7_gemm_p7_run(p7_device *device, const p7_gemm_desc *d, cl_mem a, cl_mem b, cl_mem c)
{
    p7_gemm_p7_params p;
    P7_TRY(p7_gemm_p7_device_params(device, &p));
    return p7_gemm_p7_run_with(device, &p, d, a, b, c);
}

p7_status p7_gemm_p7_run_packed_b_with(p7_device *device, const p7_gemm_p7_params *p, const p7_gemm_desc *d,
                                       cl_mem a, cl_mem bp, size_t bp_offset, cl_mem c)
{
    const char *problem = p7_gemm_p7_params_problem(p);
    if (problem) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm (p7 backend): %s", problem);
    P7_TRY(check_sizes(d));
    char options[160];
    build_options(p, options, sizeof options);
    const size_t mr = (size_t)p->mr;
    const size_t m_panels = (d->m + mr - 1) / mr;
    /* B panels are P7_GEMM_B_PANEL wide, each holding B_PANEL / NR tiles; tiles wholly
     * past N are not launched (the kernel's write-back assumes a column below N). */
    const size_t n_tiles = (d->n + (size_t)p->nr - 1) / (size_t)p->nr;
    cl_mem ws;
    P7_TRY(workspace(device, p7_gemm_p7_workspace_bytes(p, d->m, d->n, d->k, 1), &ws));
    P7_TRY(pack(device, options, d, d->trans_a, 'a', p->mr, (cl_uint)d->m, a, d->a_offset, d->lda, m_panels, ws, 0,
                "gemm_p7.pack_a"));
    return run_tiles(device, p, options, d, ws, 0, bp, bp_offset, P7_GEMM_B_PANEL, c, m_panels, n_tiles, ws,
                     parts_offset(m_panels * mr, 0, d->k, 1), &single_product);
}

p7_status p7_gemm_p7_run_packed_b(p7_device *device, const p7_gemm_desc *d, cl_mem a, cl_mem bp, size_t bp_offset,
                                  cl_mem c)
{
    p7_gemm_p7_params p;
    P7_TRY(p7_gemm_p7_device_params(device, &p));
    return p7_gemm_p7_run_packed_b_with(device, &p, d, a, bp, bp_offset, c);
}

p7_status p7_gemm_p7_run_packed_batched_with(p7_device *device, const p7_gemm_p7_params *p, const p7_gemm_desc *d,
                                             size_t batch, cl_mem ap, size_t ap_offset, size_t a_stride, cl_mem bp,
                                             size_t bp_offset, size_t b_stride, cl_mem c, size_t c_stride)
{
    const char *problem = p7_gemm_p7_params_problem(p);
    if (problem) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm (p7 backend): %s", problem);
    P7_TRY(check_sizes(d));
    char options[160];
    build_options(p, options, sizeof options);
    const tile_batch products = {batch, a_stride, b_stride, c_stride};
    const size_t m_panels = (d->m + (size_t)p->mr - 1) / (size_t)p->mr;
    const size_t n_tiles = (d->n + (size_t)p->nr - 1) / (size_t)p->nr;
    /* one product's split K would need a workspace; a batch runs its K blocks in turn */
    return run_tiles(device, p, options, d, ap, ap_offset, bp, bp_offset, P7_GEMM_B_PANEL, c, m_panels, n_tiles,
                     NULL, 0, &products);
}

p7_status p7_gemm_p7_run_packed_batched(p7_device *device, const p7_gemm_desc *d, size_t batch, cl_mem ap,
                                        size_t ap_offset, size_t a_stride, cl_mem bp, size_t bp_offset,
                                        size_t b_stride, cl_mem c, size_t c_stride)
{
    p7_gemm_p7_params p;
    P7_TRY(p7_gemm_p7_device_params(device, &p));
    return p7_gemm_p7_run_packed_batched_with(device, &p, d, batch, ap, ap_offset, a_stride, bp, bp_offset, b_stride,
                                              c, c_stride);
}
