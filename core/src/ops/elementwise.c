/* Elementwise ops and BatchEnsemble's member/channel plumbing (kernels/elementwise.cl). */
#include <stdio.h>

#include "ops/op_kernels.h"
#include "runtime/p7_kernels.h"

#define EW_FILE (&p7_kernels_elementwise)

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static p7_status launch_1d(p7_device *device, cl_kernel kernel, size_t n, const char *label)
{
    size_t global = round_up(n ? n : 1, 64);
    return p7_launch(device, kernel, 1, &global, NULL, label);
}

/* A (hw, planes) range for the per-plane channel kernels: one work-group row per plane,
 * up to 256 positions of it per group. */
enum { PLANES_GROUP_WIDTH = 256 };

static p7_status launch_planes(p7_device *device, cl_kernel kernel, size_t hw, size_t planes, const char *label)
{
    size_t local[2] = {hw < PLANES_GROUP_WIDTH ? hw : PLANES_GROUP_WIDTH, 1};
    size_t global[2] = {round_up(hw, local[0]), planes};
    return p7_launch(device, kernel, 2, global, local, label);
}

/* The groups tile hw exactly, so the _exact kernels (no bounds check) apply. */
static int planes_exact(size_t hw) { return hw < PLANES_GROUP_WIDTH || hw % PLANES_GROUP_WIDTH == 0; }

/* The planes form pays off once a plane holds a vector's worth of floats. */
enum { CHANNEL_PLANES_MIN_HW = 16 };

/* Floats per work-item of the ReLU kernels (RELU_VEC in kernels/elementwise.cl). */
enum { RELU_VEC = 16 };

static p7_status same_count(const char *op, const p7_tensor *a, const p7_tensor *b)
{
    if (!a || !b) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", op);
    if (p7_tensor_numel(a) != p7_tensor_numel(b)) {
        char sa[128], sb[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: shapes %s and %s have different element counts", op,
                       p7_shape_format(p7_tensor_ndim(a), p7_tensor_shape(a), sa, sizeof sa),
                       p7_shape_format(p7_tensor_ndim(b), p7_tensor_shape(b), sb, sizeof sb));
    }
    if (p7_tensor_device(a) != p7_tensor_device(b))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: tensors are on different devices", op);
    return P7_SUCCESS;
}

p7_status p7_relu_forward(const p7_tensor *x, p7_tensor *y)
{
    P7_TRY(same_count("relu", x, y));
    p7_device *d = p7_tensor_device(x);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_relu_forward", &k));
    cl_mem xm = p7_tensor_mem(x), ym = p7_tensor_mem(y);
    cl_ulong xo = p7_tensor_offset(x), yo = p7_tensor_offset(y), n = p7_tensor_numel(x);
    P7_TRY(P7_SET_ARGS(k, "relu", P7_ARG(xm), P7_ARG(xo), P7_ARG(ym), P7_ARG(yo), P7_ARG(n)));
    return launch_1d(d, k, (n + RELU_VEC - 1) / RELU_VEC, "relu.forward");
}

p7_status p7_relu_backward(const p7_tensor *y, const p7_tensor *dy, p7_tensor *dx, int dx_accumulate)
{
    P7_TRY(same_count("relu backward", y, dy));
    P7_TRY(same_count("relu backward", y, dx));
    p7_device *d = p7_tensor_device(y);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_relu_backward", &k));
    cl_mem ym = p7_tensor_mem(y), dym = p7_tensor_mem(dy), dxm = p7_tensor_mem(dx);
    cl_ulong yo = p7_tensor_offset(y), dyo = p7_tensor_offset(dy), dxo = p7_tensor_offset(dx);
    cl_ulong n = p7_tensor_numel(y);
    cl_int acc = dx_accumulate != 0;
    P7_TRY(P7_SET_ARGS(k, "relu backward", P7_ARG(ym), P7_ARG(yo), P7_ARG(dym), P7_ARG(dyo), P7_ARG(dxm),
                       P7_ARG(dxo), P7_ARG(n), P7_ARG(acc)));
    return launch_1d(d, k, (n + RELU_VEC - 1) / RELU_VEC, "relu.backward");
}

static p7_status binary(const char *op, const p7_tensor *a, const p7_tensor *b, p7_tensor *y, cl_int code)
{
    P7_TRY(same_count(op, a, b));
    P7_TRY(same_count(op, a, y));
    p7_device *d = p7_tensor_device(a);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_binary", &k));
    cl_mem am = p7_tensor_mem(a), bm = p7_tensor_mem(b), ym = p7_tensor_mem(y);
    cl_ulong ao = p7_tensor_offset(a), bo = p7_tensor_offset(b), yo = p7_tensor_offset(y), n = p7_tensor_numel(a);
    P7_TRY(P7_SET_ARGS(k, op, P7_ARG(am), P7_ARG(ao), P7_ARG(bm), P7_ARG(bo), P7_ARG(ym), P7_ARG(yo), P7_ARG(n),
                       P7_ARG(code)));
    return launch_1d(d, k, n, op);
}

p7_status p7_add_forward(const p7_tensor *a, const p7_tensor *b, p7_tensor *y) { return binary("add", a, b, y, 0); }
p7_status p7_mul_forward(const p7_tensor *a, const p7_tensor *b, p7_tensor *y) { return binary("mul", a, b, y, 1); }

p7_status p7_axpy(float alpha, const p7_tensor *x, p7_tensor *out, int accumulate)
{
    P7_TRY(same_count("axpy", x, out));
    p7_device *d = p7_tensor_device(x);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_axpy", &k));
    cl_mem xm = p7_tensor_mem(x), om = p7_tensor_mem(out);
    cl_ulong xo = p7_tensor_offset(x), oo = p7_tensor_offset(out), n = p7_tensor_numel(x);
    cl_int acc = accumulate != 0;
    P7_TRY(P7_SET_ARGS(k, "axpy", P7_ARG(alpha), P7_ARG(xm), P7_ARG(xo), P7_ARG(om), P7_ARG(oo), P7_ARG(n),
                       P7_ARG(acc)));
    return launch_1d(d, k, n, "axpy");
}

/* x [N, C, ...] against v [M, C]: fills channels, hw (product of the trailing axes) and
 * rows per member. */
typedef struct channel_geometry { cl_uint channels, hw, rows_per_member, members; } channel_geometry;

static p7_status channel_geometry_of(const char *op, const p7_tensor *x, const p7_tensor *v, int members,
                                     channel_geometry *g)
{
    if (!x || !v) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", op);
    char sx[128], sv[128];
    p7_shape_format(p7_tensor_ndim(x), p7_tensor_shape(x), sx, sizeof sx);
    p7_shape_format(p7_tensor_ndim(v), p7_tensor_shape(v), sv, sizeof sv);
    if (p7_tensor_ndim(x) < 2)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: x %s needs at least 2 axes (rows, channels)", op, sx);
    int64_t n = p7_tensor_dim(x, 0), c = p7_tensor_dim(x, 1);
    if (members < 1 || n % members != 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %d members do not divide the %lld rows of x %s", op, members,
                       (long long)n, sx);
    if (p7_tensor_numel(v) != (size_t)(members * c))
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: v %s must be [%d, %lld] (members, channels) for x %s", op, sv,
                       members, (long long)c, sx);
    g->channels = (cl_uint)c;
    g->hw = (cl_uint)(p7_tensor_numel(x) / (size_t)(n * c));
    g->rows_per_member = (cl_uint)(n / members);
    g->members = (cl_uint)members;
    return P7_SUCCESS;
}

static p7_status channel_broadcast(const char *op, const p7_tensor *x, const p7_tensor *v, int members,
                                   p7_tensor *y, cl_int code)
{
    channel_geometry g;
    P7_TRY(channel_geometry_of(op, x, v, members, &g));
    P7_TRY(same_count(op, x, y));
    p7_device *d = p7_tensor_device(x);
    cl_kernel k;
    cl_mem xm = p7_tensor_mem(x), vm = p7_tensor_mem(v), ym = p7_tensor_mem(y);
    cl_ulong xo = p7_tensor_offset(x), vo = p7_tensor_offset(v), yo = p7_tensor_offset(y), n = p7_tensor_numel(x);
    if (g.hw >= CHANNEL_PLANES_MIN_HW) {
        P7_TRY(p7_kernel_get(d, EW_FILE, NULL,
                             planes_exact(g.hw) ? "elementwise_channel_broadcast_planes_exact"
                                                : "elementwise_channel_broadcast_planes",
                             &k));
        P7_TRY(P7_SET_ARGS(k, op, P7_ARG(xm), P7_ARG(xo), P7_ARG(vm), P7_ARG(vo), P7_ARG(ym), P7_ARG(yo),
                           P7_ARG(g.channels), P7_ARG(g.hw), P7_ARG(g.rows_per_member), P7_ARG(code)));
        return launch_planes(d, k, g.hw, (size_t)n / g.hw, op);
    }
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_channel_broadcast", &k));
    P7_TRY(P7_SET_ARGS(k, op, P7_ARG(xm), P7_ARG(xo), P7_ARG(vm), P7_ARG(vo), P7_ARG(ym), P7_ARG(yo), P7_ARG(n),
                       P7_ARG(g.channels), P7_ARG(g.hw), P7_ARG(g.rows_per_member), P7_ARG(code)));
    return launch_1d(d, k, n, op);
}

p7_status p7_channel_mul_forward(const p7_tensor *x, const p7_tensor *v, int members, p7_tensor *y)
{
    return channel_broadcast("channel_mul", x, v, members, y, 0);
}

p7_status p7_channel_add_forward(const p7_tensor *x, const p7_tensor *v, int members, p7_tensor *y)
{
    return channel_broadcast("channel_add", x, v, members, y, 1);
}

p7_status p7_channel_reduce_backward(const p7_tensor *dy, const p7_tensor *x, int members, p7_tensor *dv,
                                     int dv_accumulate)
{
    channel_geometry g;
    P7_TRY(channel_geometry_of("channel backward (dv)", dy, dv, members, &g));
    if (x) P7_TRY(same_count("channel backward (dv)", dy, x));
    p7_device *d = p7_tensor_device(dy);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL,
                         g.hw % 16 == 0 ? "elementwise_channel_reduce_v16" : "elementwise_channel_reduce", &k));
    cl_mem dym = p7_tensor_mem(dy), xm = x ? p7_tensor_mem(x) : dym, dvm = p7_tensor_mem(dv);
    cl_ulong dyo = p7_tensor_offset(dy), xo = x ? p7_tensor_offset(x) : 0, dvo = p7_tensor_offset(dv);
    cl_int has_x = x != NULL, acc = dv_accumulate != 0;
    P7_TRY(P7_SET_ARGS(k, "channel backward (dv)", P7_ARG(dym), P7_ARG(dyo), P7_ARG(xm), P7_ARG(xo),
                       P7_ARG(has_x), P7_ARG(dvm), P7_ARG(dvo), P7_ARG(g.members), P7_ARG(g.channels), P7_ARG(g.hw),
                       P7_ARG(g.rows_per_member), P7_ARG(acc)));
    return launch_1d(d, k, (size_t)g.members * g.channels, "channel.backward_v");
}

p7_status p7_channel_mul_backward_x(const p7_tensor *dy, const p7_tensor *v, int members, p7_tensor *dx,
                                    int dx_accumulate)
{
    channel_geometry g;
    P7_TRY(channel_geometry_of("channel_mul backward (dx)", dy, v, members, &g));
    P7_TRY(same_count("channel_mul backward (dx)", dy, dx));
    p7_device *d = p7_tensor_device(dy);
    cl_kernel k;
    cl_mem dym = p7_tensor_mem(dy), vm = p7_tensor_mem(v), dxm = p7_tensor_mem(dx);
    cl_ulong dyo = p7_tensor_offset(dy), vo = p7_tensor_offset(v), dxo = p7_tensor_offset(dx), n = p7_tensor_numel(dy);
    cl_int acc = dx_accumulate != 0;
    if (g.hw >= CHANNEL_PLANES_MIN_HW) {
        P7_TRY(p7_kernel_get(d, EW_FILE, NULL,
                             planes_exact(g.hw) ? "elementwise_channel_mul_backward_x_planes_exact"
                                                : "elementwise_channel_mul_backward_x_planes",
                             &k));
        P7_TRY(P7_SET_ARGS(k, "channel_mul backward (dx)", P7_ARG(dym), P7_ARG(dyo), P7_ARG(vm), P7_ARG(vo),
                           P7_ARG(dxm), P7_ARG(dxo), P7_ARG(g.channels), P7_ARG(g.hw), P7_ARG(g.rows_per_member),
                           P7_ARG(acc)));
        return launch_planes(d, k, g.hw, (size_t)n / g.hw, "channel_mul.backward_x");
    }
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_channel_mul_backward_x", &k));
    P7_TRY(P7_SET_ARGS(k, "channel_mul backward (dx)", P7_ARG(dym), P7_ARG(dyo), P7_ARG(vm), P7_ARG(vo),
                       P7_ARG(dxm), P7_ARG(dxo), P7_ARG(n), P7_ARG(g.channels), P7_ARG(g.hw),
                       P7_ARG(g.rows_per_member), P7_ARG(acc)));
    return launch_1d(d, k, n, "channel_mul.backward_x");
}

/* The member-stacked tensor has members * (element count of the per-member one). */
static p7_status check_members(const char *op, const p7_tensor *small, const p7_tensor *big, int members)
{
    if (!small || !big) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", op);
    if (members < 1 || p7_tensor_numel(big) != (size_t)members * p7_tensor_numel(small)) {
        char ss[128], sb[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s is not %d member copies of %s", op,
                       p7_shape_format(p7_tensor_ndim(big), p7_tensor_shape(big), sb, sizeof sb), members,
                       p7_shape_format(p7_tensor_ndim(small), p7_tensor_shape(small), ss, sizeof ss));
    }
    return P7_SUCCESS;
}

p7_status p7_tile_members_forward(const p7_tensor *x, int members, p7_tensor *y)
{
    P7_TRY(check_members("tile_members", x, y, members));
    p7_device *d = p7_tensor_device(x);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_tile_members", &k));
    cl_mem xm = p7_tensor_mem(x), ym = p7_tensor_mem(y);
    cl_ulong xo = p7_tensor_offset(x), yo = p7_tensor_offset(y), size = p7_tensor_numel(x);
    cl_uint m = (cl_uint)members;
    P7_TRY(P7_SET_ARGS(k, "tile_members", P7_ARG(xm), P7_ARG(xo), P7_ARG(ym), P7_ARG(yo), P7_ARG(size), P7_ARG(m)));
    return launch_1d(d, k, size, "tile_members");
}

static p7_status sum_members(const char *op, const p7_tensor *big, int members, float scale, p7_tensor *out,
                             int accumulate)
{
    P7_TRY(check_members(op, out, big, members));
    p7_device *d = p7_tensor_device(big);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_sum_members", &k));
    cl_mem xm = p7_tensor_mem(big), om = p7_tensor_mem(out);
    cl_ulong xo = p7_tensor_offset(big), oo = p7_tensor_offset(out), size = p7_tensor_numel(out);
    cl_uint m = (cl_uint)members;
    cl_int acc = accumulate != 0;
    P7_TRY(P7_SET_ARGS(k, op, P7_ARG(xm), P7_ARG(xo), P7_ARG(om), P7_ARG(oo), P7_ARG(size), P7_ARG(m),
                       P7_ARG(scale), P7_ARG(acc)));
    return launch_1d(d, k, size, op);
}

p7_status p7_tile_members_backward(const p7_tensor *dy, int members, p7_tensor *dx, int dx_accumulate)
{
    return sum_members("tile_members.backward", dy, members, 1.0f, dx, dx_accumulate);
}

p7_status p7_member_mean_forward(const p7_tensor *x, int members, p7_tensor *y)
{
    return sum_members("member_mean", x, members, 1.0f / (float)members, y, 0);
}

p7_status p7_member_mean_backward(const p7_tensor *dy, int members, p7_tensor *dx, int dx_accumulate)
{
    P7_TRY(check_members("member_mean.backward", dy, dx, members));
    p7_device *d = p7_tensor_device(dy);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, EW_FILE, NULL, "elementwise_spread_members", &k));
    cl_mem dym = p7_tensor_mem(dy), om = p7_tensor_mem(dx);
    cl_ulong dyo = p7_tensor_offset(dy), oo = p7_tensor_offset(dx), size = p7_tensor_numel(dy);
    cl_uint m = (cl_uint)members;
    float scale = 1.0f / (float)members;
    cl_int acc = dx_accumulate != 0;
    P7_TRY(P7_SET_ARGS(k, "member_mean.backward", P7_ARG(dym), P7_ARG(dyo), P7_ARG(om), P7_ARG(oo), P7_ARG(size),
                       P7_ARG(m), P7_ARG(scale), P7_ARG(acc)));
    return launch_1d(d, k, size, "member_mean.backward");
}
