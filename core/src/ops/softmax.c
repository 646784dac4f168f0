/* Softmax, log-softmax and cross-entropy over the last axis of [N, K]
 * (kernels/softmax.cl). */
#include "ops/op_kernels.h"
#include "ops/op_reduce_config.h"
#include "runtime/p7_kernels.h"

#define SM_FILE (&p7_kernels_softmax)

/* x must be [N, K]; writes N and K. */
static p7_status rows_of(const char *op, const char *name, const p7_tensor *x, cl_uint *n, cl_uint *k)
{
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL %s", op, name);
    char sx[128];
    if (p7_tensor_ndim(x) != 2)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s must be [N, K]", op, name,
                       p7_shape_format(p7_tensor_ndim(x), p7_tensor_shape(x), sx, sizeof sx));
    const int64_t rows = p7_tensor_dim(x, 0), cols = p7_tensor_dim(x, 1);
    if (rows > UINT32_MAX || cols > UINT32_MAX)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s is too large", op, name,
                       p7_shape_format(p7_tensor_ndim(x), p7_tensor_shape(x), sx, sizeof sx));
    *n = (cl_uint)rows;
    *k = (cl_uint)cols;
    return P7_SUCCESS;
}

/* b must have a's shape and device. */
static p7_status same_shape(const char *op, const char *an, const p7_tensor *a, const char *bn, const p7_tensor *b)
{
    if (!b) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL %s", op, bn);
    char sa[128], sb[128];
    int same = p7_tensor_ndim(a) == p7_tensor_ndim(b);
    for (int i = 0; same && i < p7_tensor_ndim(a); i++) same = p7_tensor_dim(a, i) == p7_tensor_dim(b, i);
    if (!same)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s and %s %s must have the same shape", op, an,
                       p7_shape_format(p7_tensor_ndim(a), p7_tensor_shape(a), sa, sizeof sa), bn,
                       p7_shape_format(p7_tensor_ndim(b), p7_tensor_shape(b), sb, sizeof sb));
    if (p7_tensor_device(a) != p7_tensor_device(b))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %s and %s are on different devices", op, an, bn);
    return P7_SUCCESS;
}

static p7_status softmax_forward(const char *op, const p7_tensor *x, p7_tensor *y, cl_int log_out)
{
    cl_uint n = 0, k = 0;
    P7_TRY(rows_of(op, "x", x, &n, &k));
    P7_TRY(same_shape(op, "x", x, "y", y));
    p7_device *d = p7_tensor_device(x);
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    cl_kernel kern;
    P7_TRY(p7_kernel_get(d, SM_FILE, cfg.options, "softmax_forward", &kern));
    cl_mem xm = p7_tensor_mem(x), ym = p7_tensor_mem(y);
    cl_ulong xo = p7_tensor_offset(x), yo = p7_tensor_offset(y);
    P7_TRY(P7_SET_ARGS(kern, op, P7_ARG(xm), P7_ARG(xo), P7_ARG(ym), P7_ARG(yo), P7_ARG(k), P7_ARG(log_out)));
    size_t global = (size_t)n * cfg.wg, local = cfg.wg;
    return p7_launch(d, kern, 1, &global, &local, log_out ? "log_softmax.forward" : "softmax.forward");
}

static p7_status softmax_backward(const char *op, const p7_tensor *y, const p7_tensor *dy, p7_tensor *dx,
                                  int dx_accumulate, cl_int log_out)
{
    cl_uint n = 0, k = 0;
    P7_TRY(rows_of(op, "y", y, &n, &k));
    P7_TRY(same_shape(op, "y", y, "dy", dy));
    if (!dx) return P7_SUCCESS;
    P7_TRY(same_shape(op, "y", y, "dx", dx));
    p7_device *d = p7_tensor_device(y);
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    cl_kernel kern;
    P7_TRY(p7_kernel_get(d, SM_FILE, cfg.options, "softmax_backward", &kern));
    cl_mem ym = p7_tensor_mem(y), dym = p7_tensor_mem(dy), dxm = p7_tensor_mem(dx);
    cl_ulong yo = p7_tensor_offset(y), dyo = p7_tensor_offset(dy), dxo = p7_tensor_offset(dx);
    cl_int acc = dx_accumulate != 0;
    P7_TRY(P7_SET_ARGS(kern, op, P7_ARG(ym), P7_ARG(yo), P7_ARG(dym), P7_ARG(dyo), P7_ARG(dxm), P7_ARG(dxo),
                       P7_ARG(k), P7_ARG(log_out), P7_ARG(acc)));
    size_t global = (size_t)n * cfg.wg, local = cfg.wg;
    return p7_launch(d, kern, 1, &global, &local, log_out ? "log_softmax.backward" : "softmax.backward");
}

p7_status p7_softmax_forward(const p7_tensor *x, p7_tensor *y) { return softmax_forward("softmax", x, y, 0); }

p7_status p7_log_softmax_forward(const p7_tensor *x, p7_tensor *y)
{
    return softmax_forward("log_softmax", x, y, 1);
}

p7_status p7_softmax_backward(const p7_tensor *y, const p7_tensor *dy, p7_tensor *dx, int dx_accumulate)
{
    return softmax_backward("softmax backward", y, dy, dx, dx_accumulate, 0);
}

p7_status p7_log_softmax_backward(const p7_tensor *y, const p7_tensor *dy, p7_tensor *dx, int dx_accumulate)
{
    return softmax_backward("log_softmax backward", y, dy, dx, dx_accumulate, 1);
}

static p7_status check_scalar(const char *op, const char *name, const p7_tensor *t, const p7_tensor *like)
{
    if (!t) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL %s", op, name);
    if (p7_tensor_numel(t) != 1) {
        char st[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s must hold one element", op, name,
                       p7_shape_format(p7_tensor_ndim(t), p7_tensor_shape(t), st, sizeof st));
    }
    if (p7_tensor_device(t) != p7_tensor_device(like))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %s is on another device", op, name);
    return P7_SUCCESS;
}

p7_status p7_cross_entropy_forward(const p7_tensor *logits, cl_mem labels, size_t labels_offset,
                                   p7_tensor *probs, p7_tensor *loss)
{
    const char *op = "cross_entropy";
    cl_uint n = 0, k = 0;
    P7_TRY(rows_of(op, "logits", logits, &n, &k));
    P7_TRY(same_shape(op, "logits", logits, "probs", probs));
    P7_TRY(check_scalar(op, "loss", loss, logits));
    if (!labels) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL labels", op);
    size_t label_bytes = 0;
    P7_CL_TRY(clGetMemObjectInfo(labels, CL_MEM_SIZE, sizeof label_bytes, &label_bytes, NULL),
              "cross_entropy: clGetMemObjectInfo(labels)");
    if ((labels_offset + n) * sizeof(cl_int) > label_bytes)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "cross_entropy: %u labels at element %zu do not fit in a label buffer of %zu bytes", n,
                       labels_offset, label_bytes);

    p7_device *d = p7_tensor_device(logits);
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    p7_buffer *scratch = NULL;
    P7_TRY(p7_buffer_alloc(d, (size_t)n * cfg.acc_bytes, &scratch));
    cl_mem rows = p7_buffer_mem(scratch);

    cl_kernel kern;
    p7_status st = p7_kernel_get(d, SM_FILE, cfg.options, "softmax_cross_entropy_rows", &kern);
    cl_mem xm = p7_tensor_mem(logits), pm = p7_tensor_mem(probs), lm = p7_tensor_mem(loss);
    cl_ulong xo = p7_tensor_offset(logits), po = p7_tensor_offset(probs), lo = p7_tensor_offset(loss);
    cl_ulong lbo = labels_offset;
    if (st == P7_SUCCESS)
        st = P7_SET_ARGS(kern, op, P7_ARG(xm), P7_ARG(xo), P7_ARG(labels), P7_ARG(lbo), P7_ARG(pm), P7_ARG(po),
                         P7_ARG(k), P7_ARG(rows));
    size_t global = (size_t)n * cfg.wg, local = cfg.wg;
    if (st == P7_SUCCESS) st = p7_launch(d, kern, 1, &global, &local, "cross_entropy.rows");
    if (st == P7_SUCCESS) st = p7_kernel_get(d, SM_FILE, cfg.options, "softmax_cross_entropy_mean", &kern);
    if (st == P7_SUCCESS) st = P7_SET_ARGS(kern, op, P7_ARG(rows), P7_ARG(n), P7_ARG(lm), P7_ARG(lo));
    global = cfg.wg;
    if (st == P7_SUCCESS) st = p7_launch(d, kern, 1, &global, &local, "cross_entropy.mean");
    /* The in-order queue runs any later user of this block after these kernels. */
    p7_buffer_free(scratch);
    return st;
}

p7_status p7_cross_entropy_backward(const p7_tensor *probs, cl_mem labels, size_t labels_offset,
                                    const p7_tensor *dloss, p7_tensor *dlogits, int dlogits_accumulate)
{
    const char *op = "cross_entropy backward";
    cl_uint n = 0, k = 0;
    P7_TRY(rows_of(op, "probs", probs, &n, &k));
    P7_TRY(check_scalar(op, "dloss", dloss, probs));
    if (!labels) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL labels", op);
    if (!dlogits) return P7_SUCCESS;
    P7_TRY(same_shape(op, "probs", probs, "dlogits", dlogits));
    size_t label_bytes = 0;
    P7_CL_TRY(clGetMemObjectInfo(labels, CL_MEM_SIZE, sizeof label_bytes, &label_bytes, NULL),
              "cross_entropy backward: clGetMemObjectInfo(labels)");
    if ((labels_offset + n) * sizeof(cl_int) > label_bytes)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "%s: %u labels at element %zu do not fit in a label buffer of %zu bytes", op, n,
                       labels_offset, label_bytes);
    p7_device *d = p7_tensor_device(probs);
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    cl_kernel kern;
    P7_TRY(p7_kernel_get(d, SM_FILE, cfg.options, "softmax_cross_entropy_backward", &kern));
    cl_mem pm = p7_tensor_mem(probs), dlm = p7_tensor_mem(dloss), dxm = p7_tensor_mem(dlogits);
    cl_ulong po = p7_tensor_offset(probs), dlo = p7_tensor_offset(dloss), dxo = p7_tensor_offset(dlogits);
    cl_ulong lbo = labels_offset;
    float inv_n = (float)(1.0 / (double)n);
    cl_int acc = dlogits_accumulate != 0;
    P7_TRY(P7_SET_ARGS(kern, op, P7_ARG(pm), P7_ARG(po), P7_ARG(labels), P7_ARG(lbo), P7_ARG(dlm), P7_ARG(dlo),
                       P7_ARG(inv_n), P7_ARG(dxm), P7_ARG(dxo), P7_ARG(acc)));
    size_t global[2] = {k, n};
    return p7_launch(d, kern, 2, global, NULL, "cross_entropy.backward");
}
