/* maxpool2d forward/backward (kernels/pool.cl): window k, stride s, no padding, floor
 * output size, argmax indices kept by the caller for the backward gather. */
#include <stdio.h>

#include "ops/op_kernels.h"
#include "runtime/p7_kernels.h"

#define POOL_FILE (&p7_kernels_pool)

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static p7_status launch_rows(p7_device *device, cl_kernel kernel, size_t items, const char *label)
{
    size_t local = 8;
    size_t global = round_up(items ? items : 1, local);
    return p7_launch(device, kernel, 1, &global, &local, label);
}

typedef struct pool_dims { size_t planes, h, w, oh, ow; } pool_dims;

/* An input-shaped [N, C, H, W] tensor against an output-shaped [N, C, OH, OW] one. */
static p7_status pool_check(const char *op, const p7_tensor *big, const p7_tensor *small, int k, int s,
                            pool_dims *d)
{
    if (!big || !small) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", op);
    char sb[128], ss[128], sx[128];
    if (k < 1 || s < 1) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: window %d and stride %d must be >= 1", op, k, s);
    if (p7_tensor_ndim(big) != 4)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: input %s must be 4-D (NCHW)", op,
                       p7_shape_format(p7_tensor_ndim(big), p7_tensor_shape(big), sb, sizeof sb));
    const int64_t *xs = p7_tensor_shape(big);
    if (xs[2] < k || xs[3] < k)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: window %d is larger than the input %s", op, k,
                       p7_shape_format(4, xs, sb, sizeof sb));
    int64_t want[4] = {xs[0], xs[1], (xs[2] - k) / s + 1, (xs[3] - k) / s + 1};
    const int64_t *ys = p7_tensor_shape(small);
    if (p7_tensor_ndim(small) != 4 || ys[0] != want[0] || ys[1] != want[1] || ys[2] != want[2] || ys[3] != want[3])
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: output %s does not match %s for input %s, window %d, stride %d",
                       op, p7_shape_format(p7_tensor_ndim(small), ys, ss, sizeof ss),
                       p7_shape_format(4, want, sb, sizeof sb),
                       p7_shape_format(4, xs, sx, sizeof sx), k, s);
    if (p7_tensor_device(big) != p7_tensor_device(small))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: tensors are on different devices", op);
    d->planes = (size_t)(xs[0] * xs[1]);
    d->h = (size_t)xs[2];
    d->w = (size_t)xs[3];
    d->oh = (size_t)want[2];
    d->ow = (size_t)want[3];
    if (d->planes * (d->h > d->oh ? d->h : d->oh) > 0xFFFFFFF0u || d->h * d->w > 0x7FFFFFFFu)
        return p7_fail(P7_ERROR_UNSUPPORTED, "%s: input %s is too large for 32-bit indices", op,
                       p7_shape_format(4, xs, sb, sizeof sb));
    return P7_SUCCESS;
}

/* The common 2x2 / stride 2 pool has one-output-per-work-item kernels; their flat
 * indices must fit 32 bits. */
static int is_2x2(const pool_dims *d, int k, int s)
{
    return k == 2 && s == 2 && d->planes * d->h * d->w <= 0xFFFFFFF0u;
}

/* ... whose planes are even and a multiple of 16 wide also have per-row kernels that load
 * 16 columns at a time (kernels/pool.cl pool_max2_*_rows). */
static int is_2x2_rows(const pool_dims *d, int k, int s)
{
    return is_2x2(d, k, s) && d->h % 2 == 0 && d->w % 16 == 0;
}

static p7_status launch_elements(p7_device *device, cl_kernel kernel, size_t items, const char *label)
{
    size_t local = 256; /* every OpenCL GPU allows 256; PoCL runs best with large groups */
    size_t global = round_up(items ? items : 1, local);
    return p7_launch(device, kernel, 1, &global, &local, label);
}

static p7_status check_indices(const char *op, const p7_buffer *indices, size_t count)
{
    if (!indices) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL indices buffer", op);
    if (p7_buffer_size(indices) < count * sizeof(cl_int))
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: indices buffer holds %zu bytes; %zu output elements need %zu",
                       op, p7_buffer_size(indices), count, count * sizeof(cl_int));
    return P7_SUCCESS;
}

p7_status p7_maxpool2d_forward(const p7_tensor *x, int k, int s, p7_tensor *y, p7_buffer *indices)
{
    const char *op = "maxpool2d forward";
    pool_dims d;
    P7_TRY(pool_check(op, x, y, k, s, &d));
    P7_TRY(check_indices(op, indices, p7_tensor_numel(y)));
    p7_device *device = p7_tensor_device(x);
    cl_kernel kern;
    const int fast = is_2x2(&d, k, s), rows = is_2x2_rows(&d, k, s);
    P7_TRY(p7_kernel_get(device, POOL_FILE, NULL,
                         rows ? "pool_max2_forward_rows" : fast ? "pool_max2_forward" : "pool_max_forward", &kern));
    cl_mem xm = p7_tensor_mem(x), ym = p7_tensor_mem(y), im = p7_buffer_mem(indices);
    cl_ulong xo = p7_tensor_offset(x), yo = p7_tensor_offset(y);
    cl_uint planes = (cl_uint)d.planes, h = (cl_uint)d.h, w = (cl_uint)d.w, oh = (cl_uint)d.oh, ow = (cl_uint)d.ow;
    cl_uint ku = (cl_uint)k, su = (cl_uint)s;
    P7_TRY(P7_SET_ARGS(kern, "maxpool2d.forward", P7_ARG(xm), P7_ARG(xo), P7_ARG(ym), P7_ARG(yo), P7_ARG(im),
                       P7_ARG(planes), P7_ARG(h), P7_ARG(w), P7_ARG(oh), P7_ARG(ow), P7_ARG(ku), P7_ARG(su)));
    if (rows) return launch_rows(device, kern, d.planes * d.oh, "maxpool2d.forward");
    if (fast) return launch_elements(device, kern, d.planes * d.oh * d.ow, "maxpool2d.forward");
    return launch_rows(device, kern, d.planes * d.oh, "maxpool2d.forward");
}

p7_status p7_maxpool2d_backward(const p7_tensor *dy, const p7_buffer *indices, int k, int s, p7_tensor *dx,
                                int dx_accumulate)
{
    const char *op = "maxpool2d backward";
    if (!dx) return dy ? P7_SUCCESS : p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL dy", op);
    pool_dims d;
    P7_TRY(pool_check(op, dx, dy, k, s, &d));
    P7_TRY(check_indices(op, indices, p7_tensor_numel(dy)));
    p7_device *device = p7_tensor_device(dx);
    cl_kernel kern;
    const int fast = is_2x2(&d, k, s), rows = is_2x2_rows(&d, k, s);
    P7_TRY(p7_kernel_get(device, POOL_FILE, NULL,
                         rows ? "pool_max2_backward_rows" : fast ? "pool_max2_backward" : "pool_max_backward", &kern));
    cl_mem dym = p7_tensor_mem(dy), dxm = p7_tensor_mem(dx), im = p7_buffer_mem(indices);
    cl_ulong dyo = p7_tensor_offset(dy), dxo = p7_tensor_offset(dx);
    cl_int acc = dx_accumulate != 0;
    cl_uint planes = (cl_uint)d.planes, h = (cl_uint)d.h, w = (cl_uint)d.w, oh = (cl_uint)d.oh, ow = (cl_uint)d.ow;
    cl_uint ku = (cl_uint)k, su = (cl_uint)s;
    P7_TRY(P7_SET_ARGS(kern, "maxpool2d.backward", P7_ARG(dym), P7_ARG(dyo), P7_ARG(im), P7_ARG(dxm),
                       P7_ARG(dxo), P7_ARG(acc), P7_ARG(planes), P7_ARG(h), P7_ARG(w), P7_ARG(oh), P7_ARG(ow),
                       P7_ARG(ku), P7_ARG(su)));
    if (rows) return launch_rows(device, kern, d.planes * d.oh, "maxpool2d.backward");
    if (fast) return launch_elements(device, kern, d.planes * d.oh * d.ow, "maxpool2d.backward");
    return launch_rows(device, kern, d.planes * d.h, "maxpool2d.backward");
}
