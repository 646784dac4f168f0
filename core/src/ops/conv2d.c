/* conv2d forward and backward as im2col + one whole-batch GEMM (kernels/conv2d.cl).
 *
 * Forward:  col = im2col(x)             [C*K*K, N*P]      (P = OH*OW)
 *           T   = W[O, C*K*K] * col     [O, N*P]          one GEMM for the batch
 *           y   = T as [N, O, P] + b                       one contiguous copy per (n, o)
 * Backward: T   = dy as [O, N*P]
 *           db  = row sums of T
 *           dW  = T * col^T              (col recomputed: the op keeps no state)
 *           dcol = W^T * T, dx = col2im(dcol), a gather.
 *
 * Why [O, N*P] rather than one GEMM row per output pixel: its rows are whole
 * NCHW planes, so reaching NCHW costs a copy of contiguous runs, not a transpose.
 * col and T live in two device workspaces (conv_workspaces), and a batch whose col or T
 * would pass the device's cap (p7_device_options.conv_scratch_floats, 32 MiB each by
 * default) runs in chunks of images, each a call of its own on views of x, y, dy and dx:
 * VGG11's second conv at batch 128 needs a 75 MiB col, which a training step would hold
 * for nothing most of the time. A chunk's GEMM still has thousands of columns.
 *
 * 3x3 "same" convolutions of 64 or more channels each way take Winograd F(2x2, 3x3)
 * instead, in every pass (winograd_conv, winograd_dw; kernels/conv2d_winograd.cl).
 */
#include <stdio.h>

#include "ops/conv2d_internal.h"
#include "ops/fused_internal.h"
#include "gemm/gemm_packed.h"
#include "ops/op_kernels.h"
#include "runtime/p7_kernels.h"
#include "p7/gemm.h"

_Static_assert(P7_CONV_PANEL == P7_GEMM_P7_PANEL, "packed im2col must match the GEMM's B panel width");
_Static_assert(P7_CONV_PANEL == 32, "kernels/conv2d_winograd.cl writes panels of WINO_PANEL = 32");

#define CONV_FILE (&p7_kernels_conv2d)
#define WINOGRAD_FILE (&p7_kernels_conv2d_winograd)
/* Columns of U per work-item of conv2d_winograd_weights (WINO_COLS there). */
#define WINO_WEIGHT_COLS 4

/* Winograd's products have K = the input channels (C forward, O for the input gradient)
 * and their transforms cost in proportion to C + O against the products' C * O: below 64
 * channels each way it lost (SimpleCNN's conv2, 32 -> 64 on 16x16 planes: inference 15.6
 * -> 19.2 ms a batch, training 67.6 -> 70.3 ms), from there it won (VGG11-BN's conv2,
 * 64 -> 128). conv_winograd = 2 takes it from 16 channels, so tests cover small shapes. */
#define P7_WINOGRAD_MIN_CHANNELS 64
#define P7_WINOGRAD_MIN_CHANNELS_ANY 16

/* Input rows up to this width use the per-pixel col2im (see p7_conv2d_backward). */
#define P7_CONV_FLAT_COL2IM_MAX_W 4

/* Work-group sizes of conv2d_col2im_same and conv2d_im2col_packed_same (along channels).
 * Each work-item already moves whole vectors; sizes 1-16 measured within noise. */
#define P7_CONV_SAME_LOCAL 16
#define P7_CONV_SAME_LOCAL_C 4

/* Default cap on col and T per call, in floats (p7_device_options.conv_scratch_floats).
 * Idle Zen 5, VGG11-BN batch 128, alternating runs: 16 MiB chunked the deep layers, whose
 * weights are then packed once per chunk, and cost ~8% of inference; 32 MiB kept the
 * training step's host RSS at 640 MiB (16 MiB: 619; no chunks: 752). */
#define P7_CONV_SCRATCH_FLOATS ((size_t)8 << 20)

/* The "same" kernels divide pixel indices in float, exact up to 2^22 (kernels/conv2d.cl). */
#define P7_CONV_SAME_MAX_PLANE ((size_t)1 << 22)

typedef struct conv_dims {
    size_t n, c, h, w, o, k, oh, ow, plane, np, ckk;
    int stride, pad;
} conv_dims;

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static p7_status launch_rows(p7_device *device, cl_kernel kernel, size_t items, const char *label)
{
    /* Small groups: each work-item already loops over a whole row. */
    size_t local = 8;
    size_t global = round_up(items ? items : 1, local);
    return p7_launch(device, kernel, 1, &global, &local, label);
}

static const char *fmt(const p7_tensor *t, char *buf, size_t size)
{
    if (!t) {
        snprintf(buf, size, "(none)");
        return buf;
    }
    return p7_shape_format(p7_tensor_ndim(t), p7_tensor_shape(t), buf, size);
}

/* Checks x, w and b and derives the dimensions. */
static p7_status conv_check_inputs(const char *op, const p7_tensor *x, const p7_tensor *w, const p7_tensor *b,
                                   int stride, int pad, conv_dims *d)
{
    if (!x || !w) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", op);
    char sx[128], sw[128], sb[128];
    if (p7_tensor_ndim(x) != 4 || p7_tensor_ndim(w) != 4)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: x %s and w %s must both be 4-D (NCHW, OCKK)", op,
                       fmt(x, sx, sizeof sx), fmt(w, sw, sizeof sw));
    if (stride < 1 || pad < 0)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: stride %d must be >= 1 and padding %d >= 0", op, stride,
                       pad);
    d->n = (size_t)p7_tensor_dim(x, 0);
    d->c = (size_t)p7_tensor_dim(x, 1);
    d->h = (size_t)p7_tensor_dim(x, 2);
    d->w = (size_t)p7_tensor_dim(x, 3);
    d->o = (size_t)p7_tensor_dim(w, 0);
    d->k = (size_t)p7_tensor_dim(w, 2);
    d->stride = stride;
    d->pad = pad;
    if ((size_t)p7_tensor_dim(w, 1) != d->c || (size_t)p7_tensor_dim(w, 3) != d->k)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "%s: w %s must be [O, C, K, K] with C = %zu, the channels of x %s", op,
                       fmt(w, sw, sizeof sw), d->c, fmt(x, sx, sizeof sx));
    if (d->h + 2 * (size_t)pad < d->k || d->w + 2 * (size_t)pad < d->k)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: kernel %zu does not fit x %s with padding %d", op, d->k,
                       fmt(x, sx, sizeof sx), pad);
    if (d->k > 16 || pad > 64)
        return p7_fail(P7_ERROR_UNSUPPORTED, "%s: kernel size %zu / padding %d above the supported 16 / 64", op,
                       d->k, pad);
    d->oh = (d->h + 2 * (size_t)pad - d->k) / (size_t)stride + 1;
    d->ow = (d->w + 2 * (size_t)pad - d->k) / (size_t)stride + 1;
    d->plane = d->oh * d->ow;
    d->np = d->n * d->plane;
    d->ckk = d->c * d->k * d->k;
    if (b && p7_tensor_numel(b) != d->o)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: bias %s must have %zu elements (the O of w %s)", op,
                       fmt(b, sb, sizeof sb), d->o, fmt(w, sw, sizeof sw));
    /* The kernels index rows and planes with 32-bit integers. */
    if (d->n * d->c * (d->h > d->oh ? d->h : d->oh) > 0xFFFFFFF0u || d->n * d->o > 0xFFFFFFF0u ||
        d->plane > 0xFFFFFFF0u)
        return p7_fail(P7_ERROR_UNSUPPORTED, "%s: x %s is too large for 32-bit row indices", op,
                       fmt(x, sx, sizeof sx));
    p7_device *dev = p7_tensor_device(x);
    if (p7_tensor_device(w) != dev || (b && p7_tensor_device(b) != dev))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: tensors are on different devices", op);
    return P7_SUCCESS;
}

/* out must be [want0, want1, want2, want3] on x's device. */
static p7_status check_output(const char *op, const p7_tensor *x, const p7_tensor *w, const p7_tensor *out,
                              const int64_t want[4], int stride, int pad)
{
    char sx[128], sw[128], so[128], sy[128];
    if (!out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", op);
    const int64_t *got = p7_tensor_shape(out);
    if (p7_tensor_ndim(out) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] ||
        got[3] != want[3])
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "%s: output %s does not match %s for x %s, w %s, stride %d, padding %d", op,
                       fmt(out, so, sizeof so), p7_shape_format(4, want, sy, sizeof sy), fmt(x, sx, sizeof sx),
                       fmt(w, sw, sizeof sw), stride, pad);
    if (p7_tensor_device(out) != p7_tensor_device(x))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: tensors are on different devices", op);
    return P7_SUCCESS;
}

/* Checks x, w, b and the output-shaped tensor (y or dy) and derives the dimensions. */
static p7_status conv_check(const char *op, const p7_tensor *x, const p7_tensor *w, const p7_tensor *b,
                            const p7_tensor *out, int stride, int pad, conv_dims *d)
{
    if (!out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", op);
    P7_TRY(conv_check_inputs(op, x, w, b, stride, pad, d));
    const int64_t want[4] = {(int64_t)d->n, (int64_t)d->o, (int64_t)d->oh, (int64_t)d->ow};
    return check_output(op, x, w, out, want, stride, pad);
}

static p7_status conv_kernel(p7_device *device, const conv_dims *d, const char *name, cl_kernel *out)
{
    char options[96];
    snprintf(options, sizeof options, "-DCONV_K=%zu -DCONV_S=%d -DCONV_P=%d", d->k, d->stride, d->pad);
    return p7_kernel_get(device, CONV_FILE, options, name, out);
}

static p7_status im2col(p7_device *device, const conv_dims *d, const p7_tensor *x, cl_mem col)
{
    cl_kernel k;
    P7_TRY(conv_kernel(device, d, "conv2d_im2col", &k));
    cl_mem xm = p7_tensor_mem(x);
    cl_ulong xo = p7_tensor_offset(x);
    cl_uint n = (cl_uint)d->n, c = (cl_uint)d->c, h = (cl_uint)d->h, w = (cl_uint)d->w;
    cl_uint oh = (cl_uint)d->oh, ow = (cl_uint)d->ow;
    P7_TRY(P7_SET_ARGS(k, "conv2d.im2col", P7_ARG(xm), P7_ARG(xo), P7_ARG(col), P7_ARG(n), P7_ARG(c),
                       P7_ARG(h), P7_ARG(w), P7_ARG(oh), P7_ARG(ow)));
    return launch_rows(device, k, d->n * d->c * d->oh, "conv2d.im2col");
}

/* Stride-1 "same" convolution whose pixels split into runs of 16 that are either
 * inside one plane or whole planes of several images: the "same" kernels then move
 * each tap of a run as one vector (kernels/conv2d.cl). */
static int same16(const conv_dims *d)
{
    return d->stride == 1 && 2 * (size_t)d->pad + 1 == d->k && d->plane <= P7_CONV_SAME_MAX_PLANE &&
           (d->plane % 16 == 0 || (16 % d->plane == 0 && d->np % 16 == 0));
}

static size_t packed_panels(size_t n) { return (n + P7_CONV_PANEL - 1) / P7_CONV_PANEL; }

/* Winograd F(2x2, 3x3) (kernels/conv2d_winograd.cl) serves the forward and the input
 * gradient of 3x3, stride-1, padding-1 convolutions on even planes, where the GEMM takes
 * packed B operands (p7's GEMM: CPU devices): 16 products of 1/36 of the multiplies each
 * instead of one GEMM, 2.25x fewer in all. The weight gradient takes the same transforms'
 * adjoint (winograd_dw), the evaluation stage the forward (forward_t). */
static int winograd_ok(const p7_device *device, const conv_dims *d)
{
    const size_t min = device->conv_winograd == 2 ? P7_WINOGRAD_MIN_CHANNELS_ANY : P7_WINOGRAD_MIN_CHANNELS;
    return device->conv_winograd > 0 && d->k == 3 && d->stride == 1 && d->pad == 1 && d->h % 2 == 0 &&
           d->w % 2 == 0 && d->c >= min && d->o >= min &&
           p7_gemm_takes_packed_b(device, p7_device_gemm_backend((p7_device *)device));
}

/* Floats of the 16 packed V_k for `tiles` tiles of `channels` channels. */
static size_t winograd_v_floats(size_t tiles, size_t channels)
{
    return 16 * packed_panels(tiles) * P7_CONV_PANEL * channels;
}

/* Floats of Winograd's weight-gradient operands for `tiles` tiles: D (16 packed A of
 * outputs x tiles, rows rounded up to mr) and V^T (16 packed B of tiles x channels). */
static size_t winograd_dw_a_floats(size_t tiles, size_t outputs, int mr)
{
    return 16 * p7_gemm_packed_a_floats(outputs, tiles, mr);
}

static size_t winograd_dw_b_floats(size_t tiles, size_t channels)
{
    return 16 * p7_gemm_packed_b_floats(channels, tiles);
}

/* Images per call so that col ([C*K*K, images*P], or its packed panels) and T ([O,
 * images*P]) each stay within the device's cap: all of them when they fit, else equal
 * chunks (at least one image). On planes below 16 pixels the "same" kernels need runs
 * of 16 pixels, so chunks there hold a multiple of 16 / P images. */
static size_t chunk_images(const p7_device *device, const conv_dims *d)
{
    const size_t cap = device->conv_scratch_floats ? device->conv_scratch_floats : P7_CONV_SCRATCH_FLOATS;
    size_t rows = d->ckk > d->o ? d->ckk : d->o;
    size_t slack = rows * P7_CONV_PANEL; /* packed panels round a call's columns up */
    if (winograd_ok(device, d)) {
        /* no column matrix: per image of plane / 4 tiles, V and M take 16 C or 16 O floats
         * a tile, dW's V^T 16 C rounded up to 32, its D 16 O rounded up to the tile's rows */
        const size_t c32 = round_up(d->c, 32), o16 = round_up(d->o, 16);
        const size_t wide = c32 > o16 ? c32 : o16;
        rows = 4 * wide;
        slack = 16 * wide * P7_CONV_PANEL;
    }
    const size_t per_image = rows * d->plane;
    size_t per = cap > slack ? (cap - slack) / (per_image ? per_image : 1) : 0;
    if (per < 1) per = 1;
    if (per >= d->n) return d->n;
    const size_t chunks = (d->n + per - 1) / per;
    per = (d->n + chunks - 1) / chunks;
    if (d->plane < 16 && 16 % d->plane == 0) {
        const size_t m = 16 / d->plane;
        per = (per + m - 1) / m * m;
    }
    return per < d->n ? per : d->n;
}

/* col^T packed as the dW GEMM's B panels (conv2d_im2col_packed_t), into bp from offset 0. */
static p7_status im2col_packed_t(p7_device *device, const conv_dims *d, const p7_tensor *x, cl_mem bp)
{
    cl_kernel k;
    P7_TRY(conv_kernel(device, d, "conv2d_im2col_packed_t", &k));
    cl_mem xm = p7_tensor_mem(x);
    cl_ulong xo = p7_tensor_offset(x), bo = 0;
    cl_uint n = (cl_uint)d->n, c = (cl_uint)d->c, h = (cl_uint)d->h, w = (cl_uint)d->w;
    P7_TRY(P7_SET_ARGS(k, "conv2d.im2col_packed_t", P7_ARG(xm), P7_ARG(xo), P7_ARG(bp), P7_ARG(bo), P7_ARG(n),
                       P7_ARG(c), P7_ARG(h), P7_ARG(w)));
    size_t local[2] = {P7_CONV_SAME_LOCAL_C, 1};
    size_t global[2] = {round_up(d->np / 16, P7_CONV_SAME_LOCAL_C), packed_panels(d->ckk)};
    return p7_launch(device, k, 2, global, local, "conv2d.im2col_packed_t");
}

/* The scratch buffers and GEMM workspaces of one conv2d, decided in one place so the
 * training-memory estimate (nn_memory.c) sees what the passes allocate. */
static void scratch_of(p7_device *device, const conv_dims *d, p7_gemm_backend backend, int need_dx, int need_dw,
                       p7_conv2d_scratch *s)
{
    const int p7_gemm = p7_gemm_takes_packed_b(NULL, backend);
    /* With p7's GEMM, im2col can write the GEMM's packed B panels directly and save
     * the pack pass. The stride-1 "same" kernel (every VGG layer) moves vectors and
     * beats im2col + pack on every plane size (bench/p7-conv: L2 ~4 ms against
     * 5.8 + 8.9 ms); the scalar general kernel wins only on small planes. */
    s->forward_packed = p7_gemm && (d->plane <= P7_CONV_PACKED_MAX_PLANE || same16(d));
    s->forward_col_floats = s->forward_packed ? packed_panels(d->np) * P7_CONV_PANEL * d->ckk : d->ckk * d->np;
    s->t_floats = d->o * d->np;
    /* With p7's GEMM on "same" planes, dW's B operand (col^T) is written packed
     * straight from x: no col, and no transposing pack pass over it (that pack ran
     * at ~8 GB/s and was most of gemm_p7.pack_b). The col buffer still holds dcol. */
    s->backward_packed_t = need_dw && p7_gemm && same16(d);
    s->backward_col_floats = 0;
    if (need_dx || need_dw) {
        s->backward_col_floats = d->ckk * d->np;
        if (s->backward_packed_t && packed_panels(d->ckk) * P7_CONV_PANEL * d->np > s->backward_col_floats)
            s->backward_col_floats = packed_panels(d->ckk) * P7_CONV_PANEL * d->np;
    }
    s->forward_gemm_bytes = p7_gemm_workspace_bytes(device, backend, d->o, d->np, d->ckk, s->forward_packed);
    s->backward_dw_gemm_bytes =
        need_dw ? p7_gemm_workspace_bytes(device, backend, d->o, d->ckk, d->np, s->backward_packed_t) : 0;
    s->backward_dx_gemm_bytes = need_dx ? p7_gemm_workspace_bytes(device, backend, d->ckk, d->np, d->o, 0) : 0;
    s->winograd = device && backend == p7_device_gemm_backend(device) && winograd_ok(device, d);
    s->u_floats = 0;
    if (s->winograd) {
        /* No im2col at all. col: the forward's V, then dx's V (of dy), then dW's V^T; T:
         * the forward's M, then dx's M, then dW's D (and dy folded, for a bias gradient);
         * U: the transformed weights, then dW's M. Both GEMM operands come packed, so the
         * products take no GEMM workspace. */
        const size_t tiles = d->np / 4;
        int mr = 0;
        if (p7_gemm_packed_a_rows(device, &mr) != P7_SUCCESS) {
            p7_clear_error();
            mr = 16; /* more than any tile's rows: an upper bound */
        }
        s->forward_col_floats = winograd_v_floats(tiles, d->c);
        s->t_floats = 16 * d->o * tiles;
        s->u_floats = 16 * p7_gemm_packed_a_floats(d->o, d->c, mr);
        size_t col = 0, t = s->t_floats, u = s->u_floats;
        if (need_dx) {
            col = winograd_v_floats(tiles, d->o);
            if (16 * d->c * tiles > t) t = 16 * d->c * tiles;
            if (16 * p7_gemm_packed_a_floats(d->c, d->o, mr) > u) u = 16 * p7_gemm_packed_a_floats(d->c, d->o, mr);
        }
        if (need_dw) {
            if (winograd_dw_b_floats(tiles, d->c) > col) col = winograd_dw_b_floats(tiles, d->c);
            if (winograd_dw_a_floats(tiles, d->o, mr) > t) t = winograd_dw_a_floats(tiles, d->o, mr);
            if (16 * d->o * d->c > u) u = 16 * d->o * d->c;
        }
        s->backward_col_floats = col;
        s->t_floats = t;
        s->u_floats = u;
        s->forward_gemm_bytes = 0;
        s->backward_dx_gemm_bytes = 0;
        s->backward_dw_gemm_bytes = 0;
    }
}

void p7_conv2d_scratch_of(size_t n, size_t c, size_t h, size_t w, size_t o, size_t k, int stride, int pad,
                          p7_device *device, p7_gemm_backend backend, int need_dx, int need_dw,
                          p7_conv2d_scratch *out)
{
    conv_dims d = {.n = n, .c = c, .h = h, .w = w, .o = o, .k = k, .stride = stride, .pad = pad};
    d.oh = (h + 2 * (size_t)pad - k) / (size_t)stride + 1;
    d.ow = (w + 2 * (size_t)pad - k) / (size_t)stride + 1;
    d.plane = d.oh * d.ow;
    d.ckk = c * k * k;
    d.n = chunk_images(device, &d); /* the largest chunk's needs */
    d.np = d.n * d.plane;
    scratch_of(device, &d, backend, need_dx, need_dw, out);
}

static p7_status alloc_floats(p7_device *device, size_t count, p7_buffer **out)
{
    return p7_buffer_alloc(device, count * sizeof(float), out);
}

/* The column matrix and the [O, N*P] product T of every convolution on a device, forward
 * and backward, live in two device workspaces that grow to the largest layer's need. As
 * buffers of their own, each layer's sizes differed from every activation's, so once freed
 * they sat in the allocator's cache unused by anything else: VGG11-BN's training step kept
 * ~245 MiB of such blocks beside its 505 MiB in use. Only one convolution runs at a time
 * on the in-order queue, and none keeps either past its call. */
typedef struct conv_scratch_state {
    p7_buffer *col, *t, *u; /* u: Winograd's transformed weights */
    int u_ready;            /* u already holds this call's weights (a later chunk of one call) */
} conv_scratch_state;

static const char conv_scratch_key = 0;

static void conv_scratch_destroy(p7_device *device, void *state)
{
    (void)device;
    conv_scratch_state *s = state;
    p7_buffer_release(s->col);
    p7_buffer_release(s->t);
    p7_buffer_release(s->u);
}

static p7_status scratch_state(p7_device *device, conv_scratch_state **out)
{
    void *state;
    P7_TRY(p7_device_state(device, &conv_scratch_key, sizeof(conv_scratch_state), conv_scratch_destroy, &state));
    *out = state;
    return P7_SUCCESS;
}

/* The chunks of one call share their weights: after the first chunk, Winograd's U stays. */
static void winograd_keep_weights(p7_device *device, int keep)
{
    conv_scratch_state *s;
    if (scratch_state(device, &s) == P7_SUCCESS) s->u_ready = keep;
}

static p7_status conv_workspaces(p7_device *device, size_t col_floats, cl_mem *col, size_t t_floats, cl_mem *t)
{
    void *state;
    P7_TRY(p7_device_state(device, &conv_scratch_key, sizeof(conv_scratch_state), conv_scratch_destroy, &state));
    conv_scratch_state *s = state;
    if (col_floats) P7_TRY(p7_device_workspace(device, &s->col, col_floats * sizeof(float), col));
    if (t_floats) P7_TRY(p7_device_workspace(device, &s->t, t_floats * sizeof(float), t));
    return P7_SUCCESS;
}


/* Where Winograd's output goes: the plane of image n, channel o at element offset
 * offset + n * image_stride + o * channel_stride of mem. */
typedef struct wino_output {
    cl_mem mem;
    size_t offset, image_stride, channel_stride;
} wino_output;

/* An NCHW tensor [n, channels, h, w] as Winograd's output. */
static wino_output wino_nchw(p7_tensor *y, size_t channels, size_t plane)
{
    return (wino_output){p7_tensor_mem(y), p7_tensor_offset(y), channels * plane, plane};
}

/* Winograd F(2x2, 3x3) (kernels/conv2d_winograd.cl): out (=, or += with acc) the 3x3,
 * padding-1 correlation of `in` [n, in_c, h, w] with w [O, C, 3, 3] (flip 0: in_c = C,
 * out_c = O) or with w turned 180 degrees and its channel axes swapped (flip 1: the input
 * gradient, in = dy with in_c = O, out_c = C), plus b (NULL: none). */
static p7_status winograd_conv(p7_device *device, size_t n, size_t in_c, size_t out_c, size_t h, size_t w_,
                               const p7_tensor *in, const p7_tensor *w, int flip, const p7_tensor *b,
                               const wino_output *out, int acc)
{
    const size_t tiles = n * (h / 2) * (w_ / 2);
    const size_t v_stride = packed_panels(tiles) * P7_CONV_PANEL * in_c, m_stride = out_c * tiles;
    int mr = 0;
    P7_TRY(p7_gemm_packed_a_rows(device, &mr));
    const size_t u_stride = p7_gemm_packed_a_floats(out_c, in_c, mr);
    cl_mem um, vm, mm;
    conv_scratch_state *state;
    P7_TRY(scratch_state(device, &state));
    P7_TRY(p7_device_workspace(device, &state->u, 16 * u_stride * sizeof(float), &um));
    P7_TRY(conv_workspaces(device, 16 * v_stride, &vm, 16 * m_stride, &mm));
    cl_kernel k;
    /* U_k from the weights, as packed A panels: w is [O, C] = [out_c, in_c] forward,
     * [in_c, out_c] flipped. A later chunk of the same call finds them there. */
    if (!state->u_ready) {
        char options[32];
        snprintf(options, sizeof options, "-DWINO_MR=%d", mr);
        P7_TRY(p7_kernel_get(device, WINOGRAD_FILE, options, "conv2d_winograd_weights", &k));
        cl_mem wm = p7_tensor_mem(w);
        cl_ulong wo = p7_tensor_offset(w), us = u_stride;
        cl_uint wc = (cl_uint)(flip ? out_c : in_c), wout = (cl_uint)(flip ? in_c : out_c);
        cl_int fl = flip != 0;
        P7_TRY(P7_SET_ARGS(k, "conv2d.winograd_weights", P7_ARG(wm), P7_ARG(wo), P7_ARG(um), P7_ARG(us),
                           P7_ARG(wc), P7_ARG(wout), P7_ARG(fl)));
        const size_t panels = (out_c + (size_t)mr - 1) / (size_t)mr;
        size_t wl[2] = {1, 1}, wg[2] = {(in_c + WINO_WEIGHT_COLS - 1) / WINO_WEIGHT_COLS, panels};
        P7_TRY(p7_launch(device, k, 2, wg, wl, "conv2d.winograd_weights"));
    }
    /* V_k from the input: planes 16 or 8 wide move whole rows of tiles as vectors, 4x4 and
     * 2x2 planes whole planes; other shapes take the general kernel */
    const int rows16 = w_ == 16, rows8 = w_ == 8, plane4 = h == 4 && w_ == 4, plane2 = h == 2 && w_ == 2;
    const int by_rows = rows16 || rows8;
    cl_mem xm = p7_tensor_mem(in);
    cl_ulong xo = p7_tensor_offset(in), vs = v_stride;
    cl_uint nu = (cl_uint)n, cu = (cl_uint)in_c, hu = (cl_uint)h, wu = (cl_uint)w_;
    const size_t tile_rows = n * (h / 2);
    size_t il[2] = {1, 16};
    size_t ig[2] = {by_rows ? tile_rows : plane4 ? n : packed_panels(tiles), round_up(in_c, 16)};
    if (plane4 || plane2) {
        P7_TRY(p7_kernel_get(device, WINOGRAD_FILE, NULL,
                             plane4 ? "conv2d_winograd_input_p4" : "conv2d_winograd_input_p2", &k));
        P7_TRY(P7_SET_ARGS(k, "conv2d.winograd_input", P7_ARG(xm), P7_ARG(xo), P7_ARG(vm), P7_ARG(vs), P7_ARG(nu),
                           P7_ARG(cu)));
    } else {
        P7_TRY(p7_kernel_get(device, WINOGRAD_FILE, NULL,
                             rows16 ? "conv2d_winograd_input_w16"
                             : rows8 ? "conv2d_winograd_input_w8"
                                     : "conv2d_winograd_input",
                             &k));
        P7_TRY(P7_SET_ARGS(k, "conv2d.winograd_input", P7_ARG(xm), P7_ARG(xo), P7_ARG(vm), P7_ARG(vs), P7_ARG(nu),
                           P7_ARG(cu), P7_ARG(hu), P7_ARG(wu)));
    }
    P7_TRY(p7_launch(device, k, 2, ig, il, "conv2d.winograd_input"));
    /* M_k = U_k V_k, all 16 in one launch */
    p7_gemm_desc g = p7_gemm_desc_packed(0, 0, out_c, tiles, in_c, 1.0f, 0.0f);
    P7_TRY(p7_gemm_packed_batched(device, &g, 16, um, 0, u_stride, vm, 0, v_stride, mm, m_stride));
    /* out from M */
    cl_mem ym = out->mem, bm = b ? p7_tensor_mem(b) : mm;
    cl_ulong ms = m_stride, yo = out->offset, bo = b ? p7_tensor_offset(b) : 0;
    cl_ulong ns = out->image_stride, os = out->channel_stride;
    cl_int has_b = b != NULL, ac = acc != 0;
    cl_uint ou = (cl_uint)out_c;
    if (plane4 || plane2) {
        P7_TRY(p7_kernel_get(device, WINOGRAD_FILE, NULL,
                             plane4 ? "conv2d_winograd_output_p4" : "conv2d_winograd_output_p2", &k));
        P7_TRY(P7_SET_ARGS(k, "conv2d.winograd_output", P7_ARG(mm), P7_ARG(ms), P7_ARG(ym), P7_ARG(yo), P7_ARG(ns),
                           P7_ARG(os), P7_ARG(bm), P7_ARG(bo), P7_ARG(has_b), P7_ARG(ac), P7_ARG(nu),
                           P7_ARG(ou)));
    } else {
        P7_TRY(p7_kernel_get(device, WINOGRAD_FILE, NULL,
                             rows16 ? "conv2d_winograd_output_w16"
                             : rows8 ? "conv2d_winograd_output_w8"
                                     : "conv2d_winograd_output",
                             &k));
        P7_TRY(P7_SET_ARGS(k, "conv2d.winograd_output", P7_ARG(mm), P7_ARG(ms), P7_ARG(ym), P7_ARG(yo), P7_ARG(ns),
                           P7_ARG(os), P7_ARG(bm), P7_ARG(bo), P7_ARG(has_b), P7_ARG(ac), P7_ARG(nu), P7_ARG(ou),
                           P7_ARG(hu), P7_ARG(wu)));
    }
    size_t ol[2] = {1, 16};
    size_t og[2] = {by_rows ? tile_rows : plane4 ? n : packed_panels(tiles), round_up(out_c, 16)};
    return p7_launch(device, k, 2, og, ol, "conv2d.winograd_output");
}

/* dW (=, or += with acc) by Winograd F(2x2, 3x3)'s adjoint (kernels/conv2d_winograd.cl):
 * D_k from dy into the T workspace, V_k^T from x into col, the 16 products M_k [O, C] into
 * the U workspace (a later chunk transforms the weights again), then dW = G^T M G. */
static p7_status winograd_dw(p7_device *device, const conv_dims *d, const p7_tensor *x, const p7_tensor *dy,
                             p7_tensor *dw, int acc)
{
    const size_t tiles = d->np / 4;
    int mr = 0;
    P7_TRY(p7_gemm_packed_a_rows(device, &mr));
    const size_t a_stride = winograd_dw_a_floats(tiles, d->o, mr) / 16;
    const size_t b_stride = winograd_dw_b_floats(tiles, d->c) / 16, m_stride = d->o * d->c;
    conv_scratch_state *state;
    P7_TRY(scratch_state(device, &state));
    cl_mem am, bm, mm;
    P7_TRY(conv_workspaces(device, 16 * b_stride, &bm, 16 * a_stride, &am));
    P7_TRY(p7_device_workspace(device, &state->u, 16 * m_stride * sizeof(float), &mm));
    state->u_ready = 0;
    char options[32];
    snprintf(options, sizeof options, "-DWINO_MR=%d", mr);
    cl_uint nu = (cl_uint)d->n, ou = (cl_uint)d->o, cu = (cl_uint)d->c, hu = (cl_uint)d->h, wu = (cl_uint)d->w;
    cl_kernel k;
    /* D_k from dy */
    P7_TRY(p7_kernel_get(device, WINOGRAD_FILE, options, "conv2d_winograd_dw_grad", &k));
    cl_mem dym = p7_tensor_mem(dy);
    cl_ulong dyo = p7_tensor_offset(dy), as = a_stride;
    P7_TRY(P7_SET_ARGS(k, "conv2d.winograd_dw_grad", P7_ARG(dym), P7_ARG(dyo), P7_ARG(am), P7_ARG(as), P7_ARG(nu),
                       P7_ARG(ou), P7_ARG(hu), P7_ARG(wu)));
    size_t gl[2] = {1, 1}, gg[2] = {d->n, (d->o + (size_t)mr - 1) / (size_t)mr};
    P7_TRY(p7_launch(device, k, 2, gg, gl, "conv2d.winograd_dw_grad"));
    /* V_k^T from x */
    P7_TRY(p7_kernel_get(device, WINOGRAD_FILE, options, "conv2d_winograd_dw_input", &k));
    cl_mem xm = p7_tensor_mem(x);
    cl_ulong xo = p7_tensor_offset(x), bs = b_stride;
    P7_TRY(P7_SET_ARGS(k, "conv2d.winograd_dw_input", P7_ARG(xm), P7_ARG(xo), P7_ARG(bm), P7_ARG(bs), P7_ARG(nu),
                       P7_ARG(cu), P7_ARG(hu), P7_ARG(wu)));
    size_t il[2] = {P7_CONV_PANEL, 1}, ig[2] = {round_up(d->c, P7_CONV_PANEL), tiles};
    P7_TRY(p7_launch(device, k, 2, ig, il, "conv2d.winograd_dw_input"));
    /* M_k = D_k V_k^T, all 16 in one launch */
    p7_gemm_desc g = p7_gemm_desc_packed(0, 0, d->o, d->c, tiles, 1.0f, 0.0f);
    P7_TRY(p7_gemm_packed_batched(device, &g, 16, am, 0, a_stride, bm, 0, b_stride, mm, m_stride));
    /* dW from M */
    P7_TRY(p7_kernel_get(device, WINOGRAD_FILE, options, "conv2d_winograd_dw_output", &k));
    cl_mem dwm = p7_tensor_mem(dw);
    cl_ulong dwo = p7_tensor_offset(dw), ms = m_stride;
    cl_int ac = acc != 0;
    P7_TRY(P7_SET_ARGS(k, "conv2d.winograd_dw_output", P7_ARG(mm), P7_ARG(ms), P7_ARG(dwm), P7_ARG(dwo), P7_ARG(ac),
                       P7_ARG(cu), P7_ARG(ou)));
    size_t ol[2] = {16, 1}, og[2] = {round_up(d->c, 16), d->o};
    return p7_launch(device, k, 2, og, ol, "conv2d.winograd_dw_output");
}

/* The packed "same" im2col with x[n, c] scaled by in_scale[n / (N / members), c] on the
 * way (conv2d_im2col_packed_same_scaled). */
static p7_status im2col_packed_scaled(p7_device *device, const conv_dims *d, const p7_tensor *x,
                                      const p7_tensor *in_scale, int members, cl_mem bp)
{
    cl_kernel k;
    P7_TRY(conv_kernel(device, d, "conv2d_im2col_packed_same_scaled", &k));
    cl_mem xm = p7_tensor_mem(x), sm = p7_tensor_mem(in_scale);
    cl_ulong xo = p7_tensor_offset(x), bo = 0, so = p7_tensor_offset(in_scale);
    cl_uint n = (cl_uint)d->n, c = (cl_uint)d->c, h = (cl_uint)d->h, w = (cl_uint)d->w;
    cl_uint rows_per_member = (cl_uint)(d->n / (size_t)members);
    P7_TRY(P7_SET_ARGS(k, "conv2d.im2col_packed", P7_ARG(xm), P7_ARG(xo), P7_ARG(bp), P7_ARG(bo), P7_ARG(n),
                       P7_ARG(c), P7_ARG(h), P7_ARG(w), P7_ARG(sm), P7_ARG(so), P7_ARG(rows_per_member)));
    size_t local[2] = {P7_CONV_SAME_LOCAL_C, 1};
    size_t global[2] = {round_up(d->c, P7_CONV_SAME_LOCAL_C), packed_panels(d->np)};
    return p7_launch(device, k, 2, global, local, "conv2d.im2col_packed");
}

/* x scaled per (member, input channel) by in_scale [M, C], into a new tensor. */
static p7_status scaled_input(const p7_tensor *x, const p7_tensor *in_scale, int members, p7_tensor **scaled)
{
    P7_TRY(p7_tensor_create(p7_tensor_device(x), 4, p7_tensor_shape(x), scaled));
    return p7_channel_mul_forward(x, in_scale, members, *scaled);
}

/* col = im2col(x), T[O, N*P] = W * col: the forward pass up to its output stage, for
 * shapes that do not take Winograd (forward_t routes those). *t
 * receives T (the caller frees it after enqueueing its last reader). With in_scale
 * [M, C] (NULL: none) x is first scaled per (member, input channel): inside the packed
 * "same" im2col where that runs, else by a channel_mul pass into a scratch tensor. */
static p7_status forward_gemm(p7_device *device, const conv_dims *d, const p7_tensor *x, const p7_tensor *w,
                              const p7_tensor *in_scale, int members, cl_mem *t)
{
    p7_conv2d_scratch plan;
    scratch_of(device, d, p7_device_gemm_backend(device), 0, 0, &plan);
    const int scale_in_im2col = in_scale && plan.forward_packed && same16(d);
    p7_tensor *scaled = NULL;
    p7_status st = P7_SUCCESS;
    if (in_scale && !scale_in_im2col) {
        st = scaled_input(x, in_scale, members, &scaled);
        if (st != P7_SUCCESS) goto done;
        x = scaled;
    }
    cl_mem colm, tm;
    st = conv_workspaces(device, plan.forward_col_floats, &colm, plan.t_floats, &tm);
    if (st != P7_SUCCESS) goto done;
    *t = tm;
    p7_gemm_desc g = p7_gemm_desc_packed(0, 0, d->o, d->np, d->ckk, 1.0f, 0.0f);
    g.a_offset = p7_tensor_offset(w);
    if (plan.forward_packed) {
        st = scale_in_im2col ? im2col_packed_scaled(device, d, x, in_scale, members, colm)
                             : p7_conv2d_im2col_packed(x, (int)d->k, d->stride, d->pad, colm, 0);
        if (st == P7_SUCCESS) st = p7_gemm_packed_b(device, &g, p7_tensor_mem(w), colm, 0, tm);
    } else {
        st = im2col(device, d, x, colm);
        if (st == P7_SUCCESS) st = p7_gemm(device, &g, p7_tensor_mem(w), colm, tm);
    }
done:
    p7_tensor_release(scaled); /* in-order queue: the im2col reading it is enqueued */
    return st;
}

/* T [O, N*P] for the evaluation stage, in a conv2d workspace (*t): by Winograd where the
 * plain forward takes it, else im2col + GEMM (forward_gemm). Winograd's V lives in the col
 * workspace and is spent once the products ran, so T goes there (in-order queue); x is
 * first scaled per (member, input channel) by in_scale when there is one. */
static p7_status forward_t(p7_device *device, const conv_dims *d, const p7_tensor *x, const p7_tensor *w,
                           const p7_tensor *in_scale, int members, cl_mem *t)
{
    if (!winograd_ok(device, d)) return forward_gemm(device, d, x, w, in_scale, members, t);
    const size_t tiles = d->np / 4, t_floats = d->o * d->np;
    const size_t v_floats = winograd_v_floats(tiles, d->c);
    p7_tensor *scaled = NULL;
    p7_status st = P7_SUCCESS;
    if (in_scale) {
        st = scaled_input(x, in_scale, members, &scaled);
        if (st != P7_SUCCESS) goto done;
        x = scaled;
    }
    cl_mem colm;
    st = conv_workspaces(device, v_floats > t_floats ? v_floats : t_floats, &colm, 0, NULL);
    if (st != P7_SUCCESS) goto done;
    const wino_output out = {colm, 0, d->plane, d->np};
    st = winograd_conv(device, d->n, d->c, d->o, d->h, d->w, x, w, 0, NULL, &out, 0);
    if (st == P7_SUCCESS) *t = colm;
done:
    p7_tensor_release(scaled); /* in-order queue: the transform reading it is enqueued */
    return st;
}

/* Images [start, start + count) of the NCHW tensor t as a view (NULL stays NULL). */
static p7_status rows_of(const p7_tensor *t, size_t start, size_t count, p7_tensor **view)
{
    *view = NULL;
    if (!t) return P7_SUCCESS;
    const int64_t *s = p7_tensor_shape(t);
    const int64_t shape[4] = {(int64_t)count, s[1], s[2], s[3]};
    const size_t per_image = (size_t)(s[1] * s[2] * s[3]);
    return p7_tensor_view((p7_tensor *)t, start * per_image, 4, shape, view);
}

static p7_status conv2d_forward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *b, int stride, int pad,
                                p7_tensor *y, int whole);

/* One forward call on a chunk's views of x and y. */
typedef p7_status (*forward_chunk_fn)(const p7_tensor *x, p7_tensor *y, const void *call);

/* A forward in chunks of `per` images (chunk_images): x and y by rows. */
static p7_status forward_chunks(const p7_tensor *x, p7_tensor *y, size_t n, size_t per, forward_chunk_fn run,
                                const void *call)
{
    p7_status st = P7_SUCCESS;
    for (size_t start = 0; start < n && st == P7_SUCCESS; start += per) {
        const size_t count = n - start < per ? n - start : per;
        p7_tensor *xv, *yv = NULL;
        st = rows_of(x, start, count, &xv);
        if (st == P7_SUCCESS) st = rows_of(y, start, count, &yv);
        if (st == P7_SUCCESS) st = run(xv, yv, call);
        winograd_keep_weights(p7_tensor_device(x), 1);
        p7_tensor_release(xv);
        p7_tensor_release(yv);
    }
    winograd_keep_weights(p7_tensor_device(x), 0);
    return st;
}

typedef struct plain_call {
    const p7_tensor *w, *b;
    int stride, pad;
} plain_call;

static p7_status plain_chunk(const p7_tensor *x, p7_tensor *y, const void *call)
{
    const plain_call *c = call;
    return conv2d_forward(x, c->w, c->b, c->stride, c->pad, y, 1);
}

p7_status p7_conv2d_forward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *b, int stride, int pad,
                            p7_tensor *y)
{
    return conv2d_forward(x, w, b, stride, pad, y, 0);
}

/* whole: run the batch as one call (a chunk of a larger one) */
static p7_status conv2d_forward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *b, int stride, int pad,
                                p7_tensor *y, int whole)
{
    conv_dims d;
    P7_TRY(conv_check("conv2d forward", x, w, b, y, stride, pad, &d));
    p7_device *device = p7_tensor_device(x);
    const size_t per = whole ? d.n : chunk_images(device, &d);
    if (per < d.n) {
        const plain_call call = {w, b, stride, pad};
        return forward_chunks(x, y, d.n, per, plain_chunk, &call);
    }
    if (winograd_ok(device, &d)) {
        const wino_output out = wino_nchw(y, d.o, d.plane);
        return winograd_conv(device, d.n, d.c, d.o, d.h, d.w, x, w, 0, b, &out, 0);
    }
    cl_mem tm;
    P7_TRY(forward_gemm(device, &d, x, w, NULL, 1, &tm));

    cl_kernel k;
    p7_status st = conv_kernel(device, &d, "conv2d_unfold_output", &k);
    if (st != P7_SUCCESS) goto done;
    cl_mem ym = p7_tensor_mem(y), bm = b ? p7_tensor_mem(b) : tm;
    cl_ulong yo = p7_tensor_offset(y), bo = b ? p7_tensor_offset(b) : 0;
    cl_int has_bias = b != NULL;
    cl_uint n = (cl_uint)d.n, o = (cl_uint)d.o, plane = (cl_uint)d.plane;
    st = P7_SET_ARGS(k, "conv2d.unfold_output", P7_ARG(tm), P7_ARG(ym), P7_ARG(yo), P7_ARG(bm), P7_ARG(bo),
                     P7_ARG(has_bias), P7_ARG(n), P7_ARG(o), P7_ARG(plane));
    if (st == P7_SUCCESS) st = launch_rows(device, k, d.n * d.o, "conv2d.unfold_output");
done:
    return st;
}

/* ---- the evaluation output stage (fused_internal.h) ---- */

/* A per-channel vector of the stage: NULL, [O] (member stride 0) or [M, O] (stride O). */
static p7_status stage_vector(const char *name, const p7_tensor *v, const conv_dims *d, int members,
                              p7_device *device, cl_uint *stride)
{
    *stride = 0;
    if (!v) return P7_SUCCESS;
    const size_t n = p7_tensor_numel(v);
    if (n != d->o && n != (size_t)members * d->o) {
        char sv[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "conv2d output stage: %s %s must have %zu (channels) or %d x %zu (members x channels) elements",
                       name, fmt(v, sv, sizeof sv), d->o, members, d->o);
    }
    if (p7_tensor_device(v) != device)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "conv2d output stage: %s is on another device", name);
    *stride = n == d->o ? 0 : (cl_uint)d->o;
    return P7_SUCCESS;
}

static p7_status conv2d_forward_stage(const p7_tensor *x, const p7_tensor *w, int stride, int pad,
                                     const p7_conv_output_stage *stage, p7_tensor *y, int whole);

typedef struct stage_call {
    const p7_tensor *w;
    int stride, pad;
    const p7_conv_output_stage *stage;
} stage_call;

static p7_status stage_chunk(const p7_tensor *x, p7_tensor *y, const void *call)
{
    const stage_call *c = call;
    return conv2d_forward_stage(x, c->w, c->stride, c->pad, c->stage, y, 1);
}

p7_status p7_conv2d_forward_stage(const p7_tensor *x, const p7_tensor *w, int stride, int pad,
                                  const p7_conv_output_stage *stage, p7_tensor *y)
{
    return conv2d_forward_stage(x, w, stride, pad, stage, y, 0);
}

/* A single network's stage runs in chunks of images like the plain forward; with members
 * each chunk would need its members' rows of every per-member vector, so a BatchEnsemble
 * stage runs whole. */
static p7_status conv2d_forward_stage(const p7_tensor *x, const p7_tensor *w, int stride, int pad,
                                     const p7_conv_output_stage *stage, p7_tensor *y, int whole)
{
    const char *op = "conv2d output stage";
    conv_dims d;
    if (!stage) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL stage", op);
    P7_TRY(conv_check_inputs(op, x, w, NULL, stride, pad, &d));
    const int pool = stage->pool_k > 0;
    size_t ph = d.oh, pw = d.ow;
    if (pool) {
        if (stage->pool_s < 1 || stage->pool_k > (int)d.oh || stage->pool_k > (int)d.ow)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: max pooling %d / stride %d on a %zux%zu output", op,
                           stage->pool_k, stage->pool_s, d.oh, d.ow);
        ph = (d.oh - (size_t)stage->pool_k) / (size_t)stage->pool_s + 1;
        pw = (d.ow - (size_t)stage->pool_k) / (size_t)stage->pool_s + 1;
    }
    const int64_t want[4] = {(int64_t)d.n, (int64_t)d.o, (int64_t)ph, (int64_t)pw};
    P7_TRY(check_output(op, x, w, y, want, stride, pad));
    const int members = stage->members;
    if (members < 1 || d.n % (size_t)members != 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %d members do not divide the %zu images", op, members, d.n);
    p7_device *device = p7_tensor_device(x);
    const size_t per = whole || members > 1 ? d.n : chunk_images(device, &d);
    if (per < d.n) {
        const stage_call call = {w, stride, pad, stage};
        return forward_chunks(x, y, d.n, per, stage_chunk, &call);
    }
    cl_uint s_stride, h_stride, unused;
    P7_TRY(stage_vector("scale", stage->scale, &d, members, device, &s_stride));
    P7_TRY(stage_vector("shift", stage->shift, &d, members, device, &h_stride));
    if (stage->in_scale && (p7_tensor_numel(stage->in_scale) != (size_t)members * d.c ||
                            p7_tensor_device(stage->in_scale) != device)) {
        char ss[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: input scale %s must be [%d, %zu] (members, input channels)", op,
                       fmt(stage->in_scale, ss, sizeof ss), members, d.c);
    }
    const int fold = stage->bn_mean != NULL;
    if (fold) {
        if (!stage->bn_var) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: BatchNorm mean without variance", op);
        P7_TRY(stage_vector("BatchNorm weight", stage->bn_weight, &d, members, device, &unused));
        P7_TRY(stage_vector("BatchNorm bias", stage->bn_bias, &d, members, device, &unused));
        if (p7_tensor_numel(stage->bn_mean) != d.o || p7_tensor_numel(stage->bn_var) != d.o)
            return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: BatchNorm running statistics must have %zu elements", op,
                           d.o);
    } else if (stage->scale && stage->shift && s_stride != h_stride) {
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: scale and shift are not both per member", op);
    }

    /* The folded vectors: [M, O] scales then [M, O] shifts, written on the device. */
    p7_buffer *folded = NULL;
    cl_mem tm = NULL;
    p7_status st = P7_SUCCESS;
    cl_mem sm = NULL, hm = NULL;
    cl_ulong so = 0, ho = 0;
    cl_int has_scale = stage->scale != NULL, has_shift = stage->shift != NULL;
    cl_uint member_stride = s_stride > h_stride ? s_stride : h_stride;
    if (fold) {
        st = alloc_floats(device, 2 * (size_t)members * d.o, &folded);
        if (st == P7_SUCCESS)
            st = p7_batchnorm2d_fold_eval(stage->bn_mean, stage->bn_var, stage->bn_eps, stage->bn_weight,
                                          stage->bn_bias, stage->scale, stage->shift, members,
                                          p7_buffer_mem(folded));
        if (st != P7_SUCCESS) goto done;
        sm = hm = p7_buffer_mem(folded);
        ho = (cl_ulong)members * d.o;
        has_scale = has_shift = 1;
        member_stride = (cl_uint)d.o;
    } else {
        if (stage->scale) { sm = p7_tensor_mem(stage->scale); so = p7_tensor_offset(stage->scale); }
        if (stage->shift) { hm = p7_tensor_mem(stage->shift); ho = p7_tensor_offset(stage->shift); }
    }

    st = forward_t(device, &d, x, w, stage->in_scale, members, &tm);
    if (st != P7_SUCCESS) goto done;
    if (!sm) sm = tm; /* unread placeholders: a kernel argument cannot be NULL on every platform */
    if (!hm) hm = tm;
    /* 2x2 / 2 (every VGG pooling) has a kernel of its own: fixed windows as vector loads */
    const int pool2 = pool && stage->pool_k == 2 && stage->pool_s == 2;
    const char *name = pool2  ? "conv2d_unfold_output_affine_pool2"
                       : pool ? "conv2d_unfold_output_affine_pool"
                              : "conv2d_unfold_output_affine";
    cl_kernel k;
    st = conv_kernel(device, &d, name, &k);
    if (st != P7_SUCCESS) goto done;
    cl_mem ym = p7_tensor_mem(y);
    cl_ulong yo = p7_tensor_offset(y);
    cl_uint rows_per_member = (cl_uint)(d.n / (size_t)members);
    cl_int relu = stage->relu != 0;
    cl_uint n = (cl_uint)d.n, o = (cl_uint)d.o, plane = (cl_uint)d.plane;
    if (pool2) {
        cl_uint ow = (cl_uint)d.ow, phu = (cl_uint)ph, pwu = (cl_uint)pw;
        st = P7_SET_ARGS(k, "conv2d.unfold_output_affine_pool", P7_ARG(tm), P7_ARG(ym), P7_ARG(yo), P7_ARG(sm),
                         P7_ARG(so), P7_ARG(has_scale), P7_ARG(hm), P7_ARG(ho), P7_ARG(has_shift),
                         P7_ARG(member_stride), P7_ARG(rows_per_member), P7_ARG(relu), P7_ARG(n), P7_ARG(o),
                         P7_ARG(ow), P7_ARG(plane), P7_ARG(phu), P7_ARG(pwu));
    } else if (pool) {
        cl_uint ow = (cl_uint)d.ow, phu = (cl_uint)ph, pwu = (cl_uint)pw;
        cl_uint pk = (cl_uint)stage->pool_k, ps = (cl_uint)stage->pool_s;
        st = P7_SET_ARGS(k, "conv2d.unfold_output_affine_pool", P7_ARG(tm), P7_ARG(ym), P7_ARG(yo), P7_ARG(sm),
                         P7_ARG(so), P7_ARG(has_scale), P7_ARG(hm), P7_ARG(ho), P7_ARG(has_shift),
                         P7_ARG(member_stride), P7_ARG(rows_per_member), P7_ARG(relu), P7_ARG(n), P7_ARG(o),
                         P7_ARG(ow), P7_ARG(plane), P7_ARG(phu), P7_ARG(pwu), P7_ARG(pk), P7_ARG(ps));
    } else {
        st = P7_SET_ARGS(k, "conv2d.unfold_output_affine", P7_ARG(tm), P7_ARG(ym), P7_ARG(yo), P7_ARG(sm),
                         P7_ARG(so), P7_ARG(has_scale), P7_ARG(hm), P7_ARG(ho), P7_ARG(has_shift),
                         P7_ARG(member_stride), P7_ARG(rows_per_member), P7_ARG(relu), P7_ARG(n), P7_ARG(o),
                         P7_ARG(plane));
    }
    if (st == P7_SUCCESS)
        st = launch_rows(device, k, d.n * d.o, pool ? "conv2d.unfold_output_affine_pool" : "conv2d.unfold_output_affine");
done:
    p7_buffer_free(folded);
    return st;
}

static p7_status check_grad(const char *op, const char *name, const p7_tensor *grad, const p7_tensor *like,
                            p7_device *device)
{
    if (!grad) return P7_SUCCESS;
    if (p7_tensor_numel(grad) != p7_tensor_numel(like) || p7_tensor_ndim(grad) != p7_tensor_ndim(like)) {
        char sg[128], sl[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s must have the shape %s", op, name,
                       fmt(grad, sg, sizeof sg), fmt(like, sl, sizeof sl));
    }
    for (int i = 0; i < p7_tensor_ndim(like); i++) {
        if (p7_tensor_dim(grad, i) != p7_tensor_dim(like, i)) {
            char sg[128], sl[128];
            return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s must have the shape %s", op, name,
                           fmt(grad, sg, sizeof sg), fmt(like, sl, sizeof sl));
        }
    }
    if (p7_tensor_device(grad) != device)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %s is on another device", op, name);
    return P7_SUCCESS;
}

static p7_status conv2d_backward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *dy, int stride, int pad,
                                p7_tensor *dx, int dx_accumulate, p7_tensor *dw, int dw_accumulate, p7_tensor *db,
                                int db_accumulate, int whole);

/* The backward in chunks of `per` images: dx by rows; dw and db add up over the chunks. */
static p7_status backward_chunks(const p7_tensor *x, const p7_tensor *w, const p7_tensor *dy, int stride, int pad,
                                 p7_tensor *dx, int dx_accumulate, p7_tensor *dw, int dw_accumulate, p7_tensor *db,
                                 int db_accumulate, size_t n, size_t per)
{
    p7_status st = P7_SUCCESS;
    for (size_t start = 0; start < n && st == P7_SUCCESS; start += per) {
        const size_t count = n - start < per ? n - start : per;
        const int later = start > 0;
        p7_tensor *xv, *dyv = NULL, *dxv = NULL;
        st = rows_of(x, start, count, &xv);
        if (st == P7_SUCCESS) st = rows_of(dy, start, count, &dyv);
        if (st == P7_SUCCESS) st = rows_of(dx, start, count, &dxv);
        if (st == P7_SUCCESS)
            st = conv2d_backward(xv, w, dyv, stride, pad, dxv, dx_accumulate, dw, later || dw_accumulate, db,
                                 later || db_accumulate, 1);
        /* the flipped U serves the next chunk's dx unless dW's products overwrote it */
        if (dx && !dw) winograd_keep_weights(p7_tensor_device(x), 1);
        p7_tensor_release(xv);
        p7_tensor_release(dyv);
        p7_tensor_release(dxv);
    }
    winograd_keep_weights(p7_tensor_device(x), 0);
    return st;
}

p7_status p7_conv2d_backward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *dy, int stride, int pad,
                             p7_tensor *dx, int dx_accumulate, p7_tensor *dw, int dw_accumulate, p7_tensor *db,
                             int db_accumulate)
{
    return conv2d_backward(x, w, dy, stride, pad, dx, dx_accumulate, dw, dw_accumulate, db, db_accumulate, 0);
}

static p7_status conv2d_backward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *dy, int stride, int pad,
                                p7_tensor *dx, int dx_accumulate, p7_tensor *dw, int dw_accumulate, p7_tensor *db,
                                int db_accumulate, int whole)
{
    const char *op = "conv2d backward";
    conv_dims d;
    P7_TRY(conv_check(op, x, w, NULL, dy, stride, pad, &d));
    p7_device *device = p7_tensor_device(x);
    P7_TRY(check_grad(op, "dx", dx, x, device));
    P7_TRY(check_grad(op, "dw", dw, w, device));
    if (db && (p7_tensor_numel(db) != d.o || p7_tensor_device(db) != device)) {
        char sb[128], sw[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: db %s must have %zu elements (the O of w %s)", op,
                       fmt(db, sb, sizeof sb), d.o, fmt(w, sw, sizeof sw));
    }
    if (!dx && !dw && !db) return P7_SUCCESS;
    const size_t per = whole ? d.n : chunk_images(device, &d);
    if (per < d.n)
        return backward_chunks(x, w, dy, stride, pad, dx, dx_accumulate, dw, dw_accumulate, db, db_accumulate, d.n,
                               per);

    p7_conv2d_scratch plan;
    scratch_of(device, &d, p7_device_gemm_backend(device), dx != NULL, dw != NULL, &plan);
    const int packed_t = plan.backward_packed_t;
    cl_mem tm = NULL, col = NULL;
    p7_status st = conv_workspaces(device, (dx || dw) ? plan.backward_col_floats : 0, &col, plan.t_floats, &tm);
    if (st != P7_SUCCESS) goto done;
    cl_uint n = (cl_uint)d.n, o = (cl_uint)d.o, plane = (cl_uint)d.plane;

    cl_kernel k;
    /* T[O, NP] from dy: the bias gradient's and the im2col GEMMs' operand; Winograd
     * reads dy itself */
    const int winograd = winograd_ok(device, &d);
    if (db || !winograd) {
        st = conv_kernel(device, &d, "conv2d_fold_grad", &k);
        if (st != P7_SUCCESS) goto done;
        cl_mem dym = p7_tensor_mem(dy);
        cl_ulong dyo = p7_tensor_offset(dy);
        st = P7_SET_ARGS(k, "conv2d.fold_grad", P7_ARG(dym), P7_ARG(dyo), P7_ARG(tm), P7_ARG(n), P7_ARG(o),
                         P7_ARG(plane));
        if (st == P7_SUCCESS) st = launch_rows(device, k, d.n * d.o, "conv2d.fold_grad");
        if (st != P7_SUCCESS) goto done;
    }

    if (db) {
        st = conv_kernel(device, &d, "conv2d_bias_grad", &k);
        if (st != P7_SUCCESS) goto done;
        cl_mem dbm = p7_tensor_mem(db);
        cl_ulong len = d.np, dbo = p7_tensor_offset(db);
        cl_int acc = db_accumulate != 0;
        st = P7_SET_ARGS(k, "conv2d.bias_grad", P7_ARG(tm), P7_ARG(len), P7_ARG(dbm), P7_ARG(dbo), P7_ARG(acc),
                         P7_ARG(o));
        if (st == P7_SUCCESS) {
            size_t local = 1, global = d.o;
            st = p7_launch(device, k, 1, &global, &local, "conv2d.bias_grad");
        }
        if (st != P7_SUCCESS) goto done;
    }

    if (winograd) {
        /* dx = dy correlated with the flipped kernels, then dW by the adjoint: U, col and T
         * are workspaces the earlier kernels are done with (in-order queue) */
        if (dx) {
            const wino_output out = wino_nchw(dx, d.c, d.h * d.w);
            st = winograd_conv(device, d.n, d.o, d.c, d.h, d.w, dy, w, 1, NULL, &out, dx_accumulate);
            if (st != P7_SUCCESS) goto done;
        }
        if (dw) st = winograd_dw(device, &d, x, dy, dw, dw_accumulate);
        goto done;
    }

    if (dw) {
        cl_mem colm = col;
        /* dW[O, CKK] (+)= T[O, NP] * col[CKK, NP]^T */
        p7_gemm_desc g = p7_gemm_desc_packed(0, 1, d.o, d.ckk, d.np, 1.0f, dw_accumulate ? 1.0f : 0.0f);
        g.c_offset = p7_tensor_offset(dw);
        if (packed_t) {
            st = im2col_packed_t(device, &d, x, colm);
            if (st == P7_SUCCESS) st = p7_gemm_packed_b(device, &g, tm, colm, 0, p7_tensor_mem(dw));
        } else {
            st = im2col(device, &d, x, colm);
            if (st == P7_SUCCESS) st = p7_gemm(device, &g, tm, colm, p7_tensor_mem(dw));
        }
        if (st != P7_SUCCESS) goto done;
    }

    if (dx) {
        /* dcol[CKK, NP] = W[O, CKK]^T * T[O, NP], into the col buffer (the dW GEMM that
         * read it is ahead in the queue). */
        cl_mem colm = col;
        p7_gemm_desc g = p7_gemm_desc_packed(1, 0, d.ckk, d.np, d.o, 1.0f, 0.0f);
        g.a_offset = p7_tensor_offset(w);
        st = p7_gemm(device, &g, p7_tensor_mem(w), tm, colm);
        if (st != P7_SUCCESS) goto done;
        /* "Same" convolutions gather 16 pixels per tap as one vector. Otherwise, rows
         * of a few pixels leave the row gather mostly loop overhead; there one
         * work-item per pixel measured up to 1.6x faster (L7/L8 at 2x2). */
        int same = same16(&d);
        int flat = !same && d.w <= P7_CONV_FLAT_COL2IM_MAX_W;
        st = conv_kernel(device, &d, same ? "conv2d_col2im_same" : flat ? "conv2d_col2im_flat" : "conv2d_col2im", &k);
        if (st != P7_SUCCESS) goto done;
        cl_mem dxm = p7_tensor_mem(dx);
        cl_ulong dxo = p7_tensor_offset(dx);
        cl_int acc = dx_accumulate != 0;
        cl_uint c = (cl_uint)d.c, h = (cl_uint)d.h, wd = (cl_uint)d.w, oh = (cl_uint)d.oh, ow = (cl_uint)d.ow;
        /* conv2d_col2im_same takes no output sizes: they equal the input's. */
        if (same)
            st = P7_SET_ARGS(k, "conv2d.col2im", P7_ARG(colm), P7_ARG(dxm), P7_ARG(dxo), P7_ARG(acc), P7_ARG(n),
                             P7_ARG(c), P7_ARG(h), P7_ARG(wd));
        else
            st = P7_SET_ARGS(k, "conv2d.col2im", P7_ARG(colm), P7_ARG(dxm), P7_ARG(dxo), P7_ARG(acc), P7_ARG(n),
                             P7_ARG(c), P7_ARG(h), P7_ARG(wd), P7_ARG(oh), P7_ARG(ow));
        if (st == P7_SUCCESS && same) {
            size_t local = P7_CONV_SAME_LOCAL, global = round_up(d.c * (d.np / 16), local);
            st = p7_launch(device, k, 1, &global, &local, "conv2d.col2im");
        } else if (st == P7_SUCCESS && flat) {
            size_t local = 64, global = round_up(d.n * d.c * d.h * d.w, 64);
            st = p7_launch(device, k, 1, &global, &local, "conv2d.col2im");
        } else if (st == P7_SUCCESS) st = launch_rows(device, k, d.n * d.c * d.h, "conv2d.col2im");
    }
done:
    return st;
}

/* ---- im2col into packed GEMM panels (conv2d_internal.h) ---- */

static void packed_dims(const p7_tensor *x, int k, int stride, int pad, conv_dims *d)
{
    d->n = (size_t)p7_tensor_dim(x, 0);
    d->c = (size_t)p7_tensor_dim(x, 1);
    d->h = (size_t)p7_tensor_dim(x, 2);
    d->w = (size_t)p7_tensor_dim(x, 3);
    d->k = (size_t)k;
    d->stride = stride;
    d->pad = pad;
    d->oh = (d->h + 2 * (size_t)pad - d->k) / (size_t)stride + 1;
    d->ow = (d->w + 2 * (size_t)pad - d->k) / (size_t)stride + 1;
    d->plane = d->oh * d->ow;
    d->np = d->n * d->plane;
    d->ckk = d->c * d->k * d->k;
}

static p7_status packed_check(const p7_tensor *x, int k, int stride, int pad)
{
    char sx[128];
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "conv2d packed im2col: NULL tensor");
    if (p7_tensor_ndim(x) != 4 || k < 1 || k > 16 || stride < 1 || pad < 0 || pad > 64 ||
        p7_tensor_dim(x, 2) + 2 * pad < k || p7_tensor_dim(x, 3) + 2 * pad < k)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "conv2d packed im2col: x %s with kernel %d, stride %d, padding %d",
                       fmt(x, sx, sizeof sx), k, stride, pad);
    return P7_SUCCESS;
}

size_t p7_conv2d_packed_col_floats(const p7_tensor *x, int k, int stride, int pad)
{
    if (packed_check(x, k, stride, pad) != P7_SUCCESS) return 0;
    conv_dims d;
    packed_dims(x, k, stride, pad, &d);
    return (d.np + P7_CONV_PANEL - 1) / P7_CONV_PANEL * P7_CONV_PANEL * d.ckk;
}

p7_status p7_conv2d_im2col_packed(const p7_tensor *x, int k, int stride, int pad, cl_mem bp, size_t bp_offset)
{
    P7_TRY(packed_check(x, k, stride, pad));
    conv_dims d;
    packed_dims(x, k, stride, pad, &d);
    p7_device *device = p7_tensor_device(x);
    cl_kernel kern;
    if (same16(&d)) {
        P7_TRY(conv_kernel(device, &d, "conv2d_im2col_packed_same", &kern));
        cl_mem xm = p7_tensor_mem(x);
        cl_ulong xo = p7_tensor_offset(x), bo = bp_offset;
        cl_uint n = (cl_uint)d.n, c = (cl_uint)d.c, h = (cl_uint)d.h, w = (cl_uint)d.w;
        P7_TRY(P7_SET_ARGS(kern, "conv2d.im2col_packed", P7_ARG(xm), P7_ARG(xo), P7_ARG(bp), P7_ARG(bo),
                           P7_ARG(n), P7_ARG(c), P7_ARG(h), P7_ARG(w)));
        size_t local[2] = {P7_CONV_SAME_LOCAL_C, 1};
        size_t global[2] = {round_up(d.c, P7_CONV_SAME_LOCAL_C), packed_panels(d.np)};
        return p7_launch(device, kern, 2, global, local, "conv2d.im2col_packed");
    }
    P7_TRY(conv_kernel(device, &d, "conv2d_im2col_packed", &kern));
    cl_mem xm = p7_tensor_mem(x);
    cl_ulong xo = p7_tensor_offset(x), bo = bp_offset;
    cl_uint n = (cl_uint)d.n, c = (cl_uint)d.c, h = (cl_uint)d.h, w = (cl_uint)d.w;
    cl_uint oh = (cl_uint)d.oh, ow = (cl_uint)d.ow;
    P7_TRY(P7_SET_ARGS(kern, "conv2d.im2col_packed", P7_ARG(xm), P7_ARG(xo), P7_ARG(bp), P7_ARG(bo), P7_ARG(n),
                       P7_ARG(c), P7_ARG(h), P7_ARG(w), P7_ARG(oh), P7_ARG(ow)));
    size_t panels = (d.np + P7_CONV_PANEL - 1) / P7_CONV_PANEL;
    size_t local[2] = {1, 1}, global[2] = {panels, d.c};
    return p7_launch(device, kern, 2, global, local, "conv2d.im2col_packed");
}
