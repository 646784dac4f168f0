/* linear: y[N, O] = x[N, I] w[O, I]^T + b[O], forward and backward on the p7 GEMM
 * (bias helpers in kernels/linear.cl). x may be any tensor whose first axis is N
 * (e.g. [N, C, 1, 1]); its remaining axes are flattened into I. */
#include <stdio.h>

#include "ops/op_kernels.h"
#include "runtime/p7_kernels.h"
#include "p7/gemm.h"

#define LINEAR_FILE (&p7_kernels_linear)

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

typedef struct linear_dims { size_t n, in, out; } linear_dims;

static const char *fmt(const p7_tensor *t, char *buf, size_t size)
{
    return p7_shape_format(p7_tensor_ndim(t), p7_tensor_shape(t), buf, size);
}

/* `out` is y or dy: [N, O] (trailing extents of 1 allowed). */
static p7_status linear_check(const char *op, const p7_tensor *x, const p7_tensor *w, const p7_tensor *b,
                              const p7_tensor *out, linear_dims *d)
{
    if (!x || !w || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", op);
    char sx[128], sw[128], so[128];
    if (p7_tensor_ndim(w) != 2)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: w %s must be 2-D [O, I]", op, fmt(w, sw, sizeof sw));
    d->n = (size_t)p7_tensor_dim(x, 0);
    d->in = p7_tensor_numel(x) / d->n;
    d->out = (size_t)p7_tensor_dim(w, 0);
    if ((size_t)p7_tensor_dim(w, 1) != d->in || p7_tensor_ndim(x) < 2)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: x %s (N x %zu features) does not match w %s", op,
                       fmt(x, sx, sizeof sx), d->in, fmt(w, sw, sizeof sw));
    if (p7_tensor_ndim(out) < 2 || (size_t)p7_tensor_dim(out, 0) != d->n || p7_tensor_numel(out) != d->n * d->out)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: output %s must be [%zu, %zu] for x %s and w %s", op,
                       fmt(out, so, sizeof so), d->n, d->out, fmt(x, sx, sizeof sx), fmt(w, sw, sizeof sw));
    if (b && p7_tensor_numel(b) != d->out) {
        char sb[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: bias %s must have %zu elements (the O of w %s)", op,
                       fmt(b, sb, sizeof sb), d->out, fmt(w, sw, sizeof sw));
    }
    p7_device *dev = p7_tensor_device(x);
    if (p7_tensor_device(w) != dev || p7_tensor_device(out) != dev || (b && p7_tensor_device(b) != dev))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: tensors are on different devices", op);
    if (d->n * d->out > 0xFFFFFFF0u)
        return p7_fail(P7_ERROR_UNSUPPORTED, "%s: output %s is too large for 32-bit indices", op,
                       fmt(out, so, sizeof so));
    return P7_SUCCESS;
}

p7_status p7_linear_forward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *b, p7_tensor *y)
{
    linear_dims d;
    P7_TRY(linear_check("linear forward", x, w, b, y, &d));
    p7_device *device = p7_tensor_device(x);
    if (b) {
        cl_kernel k;
        P7_TRY(p7_kernel_get(device, LINEAR_FILE, NULL, "linear_bias_rows", &k));
        cl_mem ym = p7_tensor_mem(y), bm = p7_tensor_mem(b);
        cl_ulong yo = p7_tensor_offset(y), bo = p7_tensor_offset(b);
        cl_uint rows = (cl_uint)d.n, cols = (cl_uint)d.out;
        P7_TRY(P7_SET_ARGS(k, "linear.bias_rows", P7_ARG(ym), P7_ARG(yo), P7_ARG(bm), P7_ARG(bo), P7_ARG(rows),
                           P7_ARG(cols)));
        size_t global = round_up(d.n * d.out, 64);
        P7_TRY(p7_launch(device, k, 1, &global, NULL, "linear.bias_rows"));
    }
    /* y[N, O] (+)= x[N, I] * w[O, I]^T */
    p7_gemm_desc g = p7_gemm_desc_packed(0, 1, d.n, d.out, d.in, 1.0f, b ? 1.0f : 0.0f);
    g.a_offset = p7_tensor_offset(x);
    g.b_offset = p7_tensor_offset(w);
    g.c_offset = p7_tensor_offset(y);
    return p7_gemm(device, &g, p7_tensor_mem(x), p7_tensor_mem(w), p7_tensor_mem(y));
}

static p7_status same_shape(const char *op, const char *name, const p7_tensor *grad, const p7_tensor *like)
{
    int same = p7_tensor_ndim(grad) == p7_tensor_ndim(like);
    for (int i = 0; same && i < p7_tensor_ndim(like); i++) same = p7_tensor_dim(grad, i) == p7_tensor_dim(like, i);
    if (!same) {
        char sg[128], sl[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s must have the shape %s", op, name, fmt(grad, sg, sizeof sg),
                       fmt(like, sl, sizeof sl));
    }
    if (p7_tensor_device(grad) != p7_tensor_device(like))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %s is on another device", op, name);
    return P7_SUCCESS;
}

p7_status p7_linear_backward(const p7_tensor *x, const p7_tensor *w, const p7_tensor *dy, p7_tensor *dx,
                             int dx_accumulate, p7_tensor *dw, int dw_accumulate, p7_tensor *db, int db_accumulate)
{
    const char *op = "linear backward";
    linear_dims d;
    P7_TRY(linear_check(op, x, w, NULL, dy, &d));
    if (dx) P7_TRY(same_shape(op, "dx", dx, x));
    if (dw) P7_TRY(same_shape(op, "dw", dw, w));
    if (db && (p7_tensor_numel(db) != d.out || p7_tensor_device(db) != p7_tensor_device(x))) {
        char sb[128], sw[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: db %s must have %zu elements (the O of w %s)", op,
                       fmt(db, sb, sizeof sb), d.out, fmt(w, sw, sizeof sw));
    }
    p7_device *device = p7_tensor_device(x);
    cl_mem xm = p7_tensor_mem(x), wm = p7_tensor_mem(w), dym = p7_tensor_mem(dy);
    if (dx) {
        /* dx[N, I] (+)= dy[N, O] * w[O, I] */
        p7_gemm_desc g = p7_gemm_desc_packed(0, 0, d.n, d.in, d.out, 1.0f, dx_accumulate ? 1.0f : 0.0f);
        g.a_offset = p7_tensor_offset(dy);
        g.b_offset = p7_tensor_offset(w);
        g.c_offset = p7_tensor_offset(dx);
        P7_TRY(p7_gemm(device, &g, dym, wm, p7_tensor_mem(dx)));
    }
    if (dw) {
        /* dw[O, I] (+)= dy[N, O]^T * x[N, I] */
        p7_gemm_desc g = p7_gemm_desc_packed(1, 0, d.out, d.in, d.n, 1.0f, dw_accumulate ? 1.0f : 0.0f);
        g.a_offset = p7_tensor_offset(dy);
        g.b_offset = p7_tensor_offset(x);
        g.c_offset = p7_tensor_offset(dw);
        P7_TRY(p7_gemm(device, &g, dym, xm, p7_tensor_mem(dw)));
    }
    if (db) {
        cl_kernel k;
        P7_TRY(p7_kernel_get(device, LINEAR_FILE, NULL, "linear_bias_grad", &k));
        cl_mem dbm = p7_tensor_mem(db);
        cl_ulong dyo = p7_tensor_offset(dy), dbo = p7_tensor_offset(db);
        cl_int acc = db_accumulate != 0;
        cl_uint rows = (cl_uint)d.n, cols = (cl_uint)d.out;
        P7_TRY(P7_SET_ARGS(k, "linear.bias_grad", P7_ARG(dym), P7_ARG(dyo), P7_ARG(dbm), P7_ARG(dbo), P7_ARG(acc),
                           P7_ARG(rows), P7_ARG(cols)));
        size_t global = round_up(d.out, 8), local = 8;
        P7_TRY(p7_launch(device, k, 1, &global, &local, "linear.bias_grad"));
    }
    return P7_SUCCESS;
}
