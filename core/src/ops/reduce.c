/* Sum/mean reductions and global-norm gradient clipping (kernels/reduce.cl). */
#include "ops/op_kernels.h"
#include "ops/op_reduce_config.h"
#include "runtime/p7_kernels.h"
#include "p7/ops.h"

#define RD_FILE (&p7_kernels_reduce)
#define RD_MAX_GROUPS 1024

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* How a tensor of n elements is cut into contiguous chunks, one per work-group. Each
 * work-item gets about 8 elements before the chunk count caps; the layout depends only
 * on n and the work-group size, which keeps the sums reproducible. */
static void chunking(size_t n, size_t wg, size_t *groups, size_t *chunk)
{
    size_t gcount = (n + wg * 8 - 1) / (wg * 8);
    if (gcount < 1) gcount = 1;
    if (gcount > RD_MAX_GROUPS) gcount = RD_MAX_GROUPS;
    *chunk = (n + gcount - 1) / gcount;
    *groups = (n + *chunk - 1) / *chunk;
}

static p7_status enqueue_partial(p7_device *d, const p7_reduce_config *cfg, const p7_tensor *x, cl_int squares,
                                 cl_mem partials, size_t first_slot, size_t *groups_out, const char *label)
{
    size_t groups, chunk;
    chunking(p7_tensor_numel(x), cfg->wg, &groups, &chunk);
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, RD_FILE, cfg->options, "reduce_partial", &k));
    cl_mem xm = p7_tensor_mem(x);
    cl_ulong xo = p7_tensor_offset(x), n = p7_tensor_numel(x), ch = chunk, po = first_slot;
    P7_TRY(P7_SET_ARGS(k, label, P7_ARG(xm), P7_ARG(xo), P7_ARG(n), P7_ARG(ch), P7_ARG(squares),
                       P7_ARG(partials), P7_ARG(po)));
    size_t global = groups * cfg->wg, local = cfg->wg;
    P7_TRY(p7_launch(d, k, 1, &global, &local, label));
    *groups_out = groups;
    return P7_SUCCESS;
}

static p7_status enqueue_final(p7_device *d, const p7_reduce_config *cfg, cl_mem partials, size_t count, float scale,
                               cl_int norm, p7_tensor *out, const char *label)
{
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, RD_FILE, cfg->options, "reduce_final", &k));
    cl_uint cnt = (cl_uint)count;
    cl_mem om = p7_tensor_mem(out);
    cl_ulong oo = p7_tensor_offset(out);
    P7_TRY(P7_SET_ARGS(k, label, P7_ARG(partials), P7_ARG(cnt), P7_ARG(scale), P7_ARG(norm), P7_ARG(om),
                       P7_ARG(oo)));
    size_t global = cfg->wg, local = cfg->wg;
    return p7_launch(d, k, 1, &global, &local, label);
}

static p7_status check_scalar(const char *op, const char *name, const p7_tensor *t)
{
    if (!t) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL %s", op, name);
    if (p7_tensor_numel(t) != 1) {
        char st[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s must hold one element", op, name,
                       p7_shape_format(p7_tensor_ndim(t), p7_tensor_shape(t), st, sizeof st));
    }
    return P7_SUCCESS;
}

p7_status p7_sum_forward(const p7_tensor *x, float scale, p7_tensor *y)
{
    const char *op = "sum";
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL x", op);
    P7_TRY(check_scalar(op, "y", y));
    p7_device *d = p7_tensor_device(x);
    if (p7_tensor_device(y) != d) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: x and y are on different devices", op);
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    p7_buffer *scratch = NULL;
    P7_TRY(p7_buffer_alloc(d, RD_MAX_GROUPS * cfg.acc_bytes, &scratch));
    cl_mem partials = p7_buffer_mem(scratch);
    size_t groups = 0;
    p7_status st = enqueue_partial(d, &cfg, x, 0, partials, 0, &groups, "sum.partial");
    if (st == P7_SUCCESS) st = enqueue_final(d, &cfg, partials, groups, scale, 0, y, "sum.final");
    /* The in-order queue runs any later user of this block after these kernels. */
    p7_buffer_free(scratch);
    return st;
}

static p7_status launch_elementwise(p7_device *d, cl_kernel k, size_t n, const char *label)
{
    size_t global = round_up(n ? n : 1, 64);
    return p7_launch(d, k, 1, &global, NULL, label);
}

p7_status p7_sum_backward(const p7_tensor *dy, float scale, p7_tensor *dx, int dx_accumulate)
{
    const char *op = "sum backward";
    P7_TRY(check_scalar(op, "dy", dy));
    if (!dx) return P7_SUCCESS;
    p7_device *d = p7_tensor_device(dy);
    if (p7_tensor_device(dx) != d)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: dy and dx are on different devices", op);
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, RD_FILE, cfg.options, "reduce_sum_backward", &k));
    cl_mem dym = p7_tensor_mem(dy), dxm = p7_tensor_mem(dx);
    cl_ulong dyo = p7_tensor_offset(dy), dxo = p7_tensor_offset(dx), n = p7_tensor_numel(dx);
    cl_int acc = dx_accumulate != 0;
    P7_TRY(P7_SET_ARGS(k, op, P7_ARG(dym), P7_ARG(dyo), P7_ARG(scale), P7_ARG(dxm), P7_ARG(dxo), P7_ARG(n),
                       P7_ARG(acc)));
    return launch_elementwise(d, k, n, "sum.backward");
}

p7_status p7_clip_grad_norm(p7_tensor *const *grads, size_t count, float max_norm, p7_tensor *total_norm)
{
    const char *op = "clip_grad_norm";
    P7_TRY(check_scalar(op, "total_norm", total_norm));
    if (count > 0 && !grads) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL gradient list", op);
    p7_device *d = p7_tensor_device(total_norm);
    for (size_t i = 0; i < count; i++)
        if (grads[i] && p7_tensor_device(grads[i]) != d)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: gradient %zu is on another device than total_norm", op, i);
    if (!(max_norm > 0.0f))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: max_norm %g must be positive", op, (double)max_norm);

    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    size_t slots = 0;
    for (size_t i = 0; i < count; i++) {
        if (!grads[i]) continue;
        size_t groups, chunk;
        chunking(p7_tensor_numel(grads[i]), cfg.wg, &groups, &chunk);
        slots += groups;
    }
    if (slots == 0) return p7_tensor_fill(total_norm, 0.0f); /* nothing to clip */
    if (slots > UINT32_MAX)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %zu gradients are too many", op, count);

    p7_buffer *scratch = NULL;
    P7_TRY(p7_buffer_alloc(d, slots * cfg.acc_bytes, &scratch));
    cl_mem partials = p7_buffer_mem(scratch);
    p7_status st = P7_SUCCESS;
    size_t slot = 0;
    /* Missing gradients (parameters no loss reached) contribute nothing. */
    for (size_t i = 0; i < count && st == P7_SUCCESS; i++) {
        if (!grads[i]) continue;
        size_t groups = 0;
        st = enqueue_partial(d, &cfg, grads[i], 1, partials, slot, &groups, "clip_grad_norm.partial");
        slot += groups;
    }
    if (st == P7_SUCCESS) st = enqueue_final(d, &cfg, partials, slots, 1.0f, 1, total_norm, "clip_grad_norm.norm");
    p7_buffer_free(scratch); /* in-order queue: later users of the block run after us */

    cl_kernel k;
    if (st == P7_SUCCESS) st = p7_kernel_get(d, RD_FILE, cfg.options, "reduce_clip_scale", &k);
    cl_mem nm = p7_tensor_mem(total_norm);
    cl_ulong no = p7_tensor_offset(total_norm);
    for (size_t i = 0; i < count && st == P7_SUCCESS; i++) {
        if (!grads[i]) continue;
        cl_mem gm = p7_tensor_mem(grads[i]);
        cl_ulong go = p7_tensor_offset(grads[i]), n = p7_tensor_numel(grads[i]);
        st = P7_SET_ARGS(k, "clip_grad_norm scale", P7_ARG(gm), P7_ARG(go), P7_ARG(n), P7_ARG(nm), P7_ARG(no),
                         P7_ARG(max_norm));
        if (st == P7_SUCCESS) st = launch_elementwise(d, k, n, "clip_grad_norm.scale");
    }
    return st;
}
