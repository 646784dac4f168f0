/* Every differentiable op of p7, its forward and its backward side by side.
 *
 * The device work is done by the forward/backward function pairs of op_kernels.h;
 * this file says which ones each op calls, what it saves for the backward pass,
 * and how each input's gradient is formed. Gradients are written straight into the
 * inputs' gradient tensors (p7_grad_target), added when the input already received
 * a contribution from another use: that is what makes parameter sharing work. */
#include <stdint.h>
#include <string.h>

#include "ops/autograd_internal.h"
#include "ops/op_kernels.h"
#include "ops/op_list.h"
#include "p7/ops.h"

/* ---- helpers ---- */

static p7_status new_like(const p7_tensor *x, p7_tensor **out)
{
    return p7_tensor_create(x->device, x->ndim, x->shape, out);
}

static p7_status new_shape(p7_device *device, int ndim, const int64_t *shape, p7_tensor **out)
{
    return p7_tensor_create(device, ndim, shape, out);
}

/* The gradient of input i when it needs one, else NULL (the kernels skip that work). */
static p7_status grad_of(p7_tape *tape, p7_node *n, int i, p7_tensor **g, int *acc)
{
    *g = NULL;
    *acc = 0;
    if (!n->in[i] || !n->in[i]->requires_grad) return P7_SUCCESS;
    return p7_grad_target(tape, n->in[i], g, acc);
}

/* Common tail of every op: record if needed, hand the output over. On failure the
 * output is released so nothing leaks. */
static p7_status finish(p7_tape *tape, p7_node *node, p7_tensor *out, p7_tensor **result, p7_status st)
{
    if (st == P7_SUCCESS && p7_tape_should_record(tape, node->in, P7_NODE_MAX_INPUTS)) {
        node->out = out;
        st = p7_tape_record(tape, node);
        node->saved_buffer = NULL; /* the tape owns it now, even on failure */
    }
    p7_buffer_free(node->saved_buffer);
    if (st != P7_SUCCESS) {
        p7_tensor_release(out);
        return st;
    }
    *result = out;
    return P7_SUCCESS;
}

static p7_status check_out(const char *op, p7_tensor **y)
{
    if (!y) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL output pointer", op);
    *y = NULL;
    return P7_SUCCESS;
}

/* ---- conv2d: y = W * x + b ---- */

static p7_status conv2d_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx, *dw, *db;
    int ax, aw, ab;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    P7_TRY(grad_of(tape, n, 1, &dw, &aw));
    P7_TRY(grad_of(tape, n, 2, &db, &ab));
    return p7_conv2d_backward(n->in[0], n->in[1], dy, n->ints[0], n->ints[1], dx, ax, dw, aw, db, ab);
}

p7_status p7_conv2d(p7_tape *tape, p7_tensor *x, p7_tensor *w, p7_tensor *b, int stride, int pad, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_CONV2D), y));
    if (!x || !w) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "conv2d: NULL input or weight");
    if (x->ndim != 4 || w->ndim != 4 || stride < 1 || pad < 0) {
        char sx[128], sw[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "conv2d: x %s, w %s, stride %d, pad %d: expected 4-d x and w, stride >= 1, pad >= 0",
                       p7_shape_format(x->ndim, x->shape, sx, sizeof sx), p7_shape_format(w->ndim, w->shape, sw, sizeof sw),
                       stride, pad);
    }
    int64_t oh = (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1;
    int64_t ow = (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1;
    if (oh < 1 || ow < 1)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "conv2d: a %lldx%lld kernel does not fit a %lldx%lld input with pad %d",
                       (long long)w->shape[2], (long long)w->shape[3], (long long)x->shape[2], (long long)x->shape[3], pad);
    const int64_t shape[4] = {x->shape[0], w->shape[0], oh, ow};
    p7_tensor *out;
    P7_TRY(new_shape(x->device, 4, shape, &out));
    p7_node node = {.op = p7_op_name(P7_OP_CONV2D), .backward = conv2d_backward, .in = {x, w, b}, .ints = {stride, pad}};
    return finish(tape, &node, out, y, p7_conv2d_forward(x, w, b, stride, pad, out));
}

/* ---- linear: y = x W^T + b ---- */

static p7_status linear_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx, *dw, *db;
    int ax, aw, ab;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    P7_TRY(grad_of(tape, n, 1, &dw, &aw));
    P7_TRY(grad_of(tape, n, 2, &db, &ab));
    return p7_linear_backward(n->in[0], n->in[1], dy, dx, ax, dw, aw, db, ab);
}

p7_status p7_linear(p7_tape *tape, p7_tensor *x, p7_tensor *w, p7_tensor *b, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_LINEAR), y));
    if (!x || !w) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "linear: NULL input or weight");
    if (x->ndim != 2 || w->ndim != 2) {
        char sx[128], sw[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "linear: x %s and w %s must be 2-d ([N, in] and [out, in])",
                       p7_shape_format(x->ndim, x->shape, sx, sizeof sx), p7_shape_format(w->ndim, w->shape, sw, sizeof sw));
    }
    const int64_t shape[2] = {x->shape[0], w->shape[0]};
    p7_tensor *out;
    P7_TRY(new_shape(x->device, 2, shape, &out));
    p7_node node = {.op = p7_op_name(P7_OP_LINEAR), .backward = linear_backward, .in = {x, w, b}};
    return finish(tape, &node, out, y, p7_linear_forward(x, w, b, out));
}

/* ---- relu: y = max(x, 0); dx = dy where y > 0 ---- */

static p7_status relu_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    return dx ? p7_relu_backward(n->out, dy, dx, ax) : P7_SUCCESS;
}

p7_status p7_relu(p7_tape *tape, p7_tensor *x, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_RELU), y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "relu: NULL input");
    p7_tensor *out;
    P7_TRY(new_like(x, &out));
    p7_node node = {.op = p7_op_name(P7_OP_RELU), .backward = relu_backward, .in = {x}};
    return finish(tape, &node, out, y, p7_relu_forward(x, out));
}

p7_status p7_relu_inplace(p7_tape *tape, p7_tensor *x, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_RELU), y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "relu in place: NULL input");
    if (x->is_leaf && x->requires_grad)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "relu in place: x is a leaf that requires gradients (a parameter); "
                                                  "overwriting it would change the parameter");
    p7_tensor *out;
    P7_TRY(p7_tensor_reshape(x, x->ndim, x->shape, &out)); /* a second tensor over x's storage */
    /* backward reads only out (relu_backward), which holds relu(x): the mask is the same */
    p7_node node = {.op = p7_op_name(P7_OP_RELU), .backward = relu_backward, .in = {x}};
    return finish(tape, &node, out, y, p7_relu_forward(x, out));
}

/* ---- maxpool2d: y = max over each window; dx gathers dy at the argmax ---- */

static p7_status maxpool2d_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    return dx ? p7_maxpool2d_backward(dy, n->saved_buffer, n->ints[0], n->ints[1], dx, ax) : P7_SUCCESS;
}

p7_status p7_maxpool2d(p7_tape *tape, p7_tensor *x, int k, int s, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_MAXPOOL2D), y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "maxpool2d: NULL input");
    if (x->ndim != 4 || k < 1 || s < 1 || x->shape[2] < k || x->shape[3] < k) {
        char sx[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "maxpool2d: x %s with window %d stride %d: expected a 4-d input at least %dx%d",
                       p7_shape_format(x->ndim, x->shape, sx, sizeof sx), k, s, k, k);
    }
    const int64_t shape[4] = {x->shape[0], x->shape[1], (x->shape[2] - k) / s + 1, (x->shape[3] - k) / s + 1};
    p7_tensor *out;
    P7_TRY(new_shape(x->device, 4, shape, &out));
    p7_node node = {.op = p7_op_name(P7_OP_MAXPOOL2D), .backward = maxpool2d_backward, .in = {x}, .ints = {k, s}};
    p7_status st = p7_buffer_alloc(x->device, out->numel * sizeof(cl_int), &node.saved_buffer);
    if (st == P7_SUCCESS) st = p7_maxpool2d_forward(x, k, s, out, node.saved_buffer);
    return finish(tape, &node, out, y, st);
}

/* ---- reshape: a view; the gradient flows back unchanged ---- */

static p7_status reshape_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    return dx ? p7_axpy(1.0f, dy, dx, ax) : P7_SUCCESS;
}

p7_status p7_reshape(p7_tape *tape, p7_tensor *x, int ndim, const int64_t *shape, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_RESHAPE), y));
    p7_tensor *out;
    P7_TRY(p7_tensor_reshape(x, ndim, shape, &out));
    p7_node node = {.op = p7_op_name(P7_OP_RESHAPE), .backward = reshape_backward, .in = {x}};
    return finish(tape, &node, out, y, P7_SUCCESS);
}

p7_status p7_flatten(p7_tape *tape, p7_tensor *x, p7_tensor **y)
{
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "flatten: NULL input");
    const int64_t shape[2] = {x->shape[0], -1};
    return p7_reshape(tape, x, 2, shape, y);
}

/* ---- add, mul: same shapes ---- */

static p7_status add_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    for (int i = 0; i < 2; i++) {
        p7_tensor *g;
        int acc;
        P7_TRY(grad_of(tape, n, i, &g, &acc));
        if (g) P7_TRY(p7_axpy(1.0f, dy, g, acc));
    }
    return P7_SUCCESS;
}

static p7_status mul_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    for (int i = 0; i < 2; i++) {
        p7_tensor *g;
        int acc;
        P7_TRY(grad_of(tape, n, i, &g, &acc));
        if (!g) continue;
        /* d(a*b)/da = b: multiply dy by the other factor into a temporary, then route */
        p7_tensor *t;
        P7_TRY(new_like(dy, &t));
        p7_status st = p7_mul_forward(dy, n->in[1 - i], t);
        if (st == P7_SUCCESS) st = p7_axpy(1.0f, t, g, acc);
        p7_tensor_release(t);
        P7_TRY(st);
    }
    return P7_SUCCESS;
}

static p7_status binary_op(p7_tape *tape, p7_op_id id, p7_backward_fn backward, p7_tensor *a, p7_tensor *b,
                           p7_tensor **y, int is_mul)
{
    const char *op = p7_op_name(id);
    P7_TRY(check_out(op, y));
    if (!a || !b) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL input", op);
    /* No broadcasting, and no reinterpretation: [6, 4] + [4, 6] has matching element
     * counts but is almost surely a bug, so the shapes must be equal. */
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same) {
        char sa[128], sb[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: shapes %s and %s differ (%s takes two tensors of one shape)", op,
                       p7_shape_format(a->ndim, a->shape, sa, sizeof sa),
                       p7_shape_format(b->ndim, b->shape, sb, sizeof sb), op);
    }
    p7_tensor *out;
    P7_TRY(new_like(a, &out));
    p7_node node = {.op = op, .backward = backward, .in = {a, b}};
    return finish(tape, &node, out, y, is_mul ? p7_mul_forward(a, b, out) : p7_add_forward(a, b, out));
}

p7_status p7_add(p7_tape *tape, p7_tensor *a, p7_tensor *b, p7_tensor **y)
{
    return binary_op(tape, P7_OP_ADD, add_backward, a, b, y, 0);
}

p7_status p7_mul(p7_tape *tape, p7_tensor *a, p7_tensor *b, p7_tensor **y)
{
    return binary_op(tape, P7_OP_MUL, mul_backward, a, b, y, 1);
}

/* ---- channel_mul: y = x * v[member, c]; dx = dy * v, dv = sum dy * x ---- */

static p7_status channel_mul_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx, *dv;
    int ax, av;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    P7_TRY(grad_of(tape, n, 1, &dv, &av));
    if (dx) P7_TRY(p7_channel_mul_backward_x(dy, n->in[1], n->ints[0], dx, ax));
    if (dv) P7_TRY(p7_channel_reduce_backward(dy, n->in[0], n->ints[0], dv, av));
    return P7_SUCCESS;
}

/* ---- channel_add: y = x + v[member, c]; dx = dy, dv = sum dy ---- */

static p7_status channel_add_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx, *dv;
    int ax, av;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    P7_TRY(grad_of(tape, n, 1, &dv, &av));
    if (dx) P7_TRY(p7_axpy(1.0f, dy, dx, ax));
    if (dv) P7_TRY(p7_channel_reduce_backward(dy, NULL, n->ints[0], dv, av));
    return P7_SUCCESS;
}

static p7_status channel_op(p7_tape *tape, p7_op_id id, p7_backward_fn backward, p7_tensor *x, p7_tensor *v,
                            int members, p7_tensor **y, int is_mul)
{
    const char *op = p7_op_name(id);
    P7_TRY(check_out(op, y));
    if (!x || !v) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL input", op);
    p7_tensor *out;
    P7_TRY(new_like(x, &out));
    p7_node node = {.op = op, .backward = backward, .in = {x, v}, .ints = {members}};
    return finish(tape, &node, out, y,
                  is_mul ? p7_channel_mul_forward(x, v, members, out) : p7_channel_add_forward(x, v, members, out));
}

p7_status p7_channel_mul(p7_tape *tape, p7_tensor *x, p7_tensor *v, int members, p7_tensor **y)
{
    return channel_op(tape, P7_OP_CHANNEL_MUL, channel_mul_backward, x, v, members, y, 1);
}

p7_status p7_channel_add(p7_tape *tape, p7_tensor *x, p7_tensor *v, int members, p7_tensor **y)
{
    return channel_op(tape, P7_OP_CHANNEL_ADD, channel_add_backward, x, v, members, y, 0);
}

/* ---- tile_members: y = [x; x; ...]; dx = sum of the copies' gradients ---- */

static p7_status tile_members_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    return dx ? p7_tile_members_backward(dy, n->ints[0], dx, ax) : P7_SUCCESS;
}

p7_status p7_tile_members(p7_tape *tape, p7_tensor *x, int members, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_TILE_MEMBERS), y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "tile_members: NULL input");
    if (members < 1) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "tile_members: %d members; expected >= 1", members);
    int64_t shape[P7_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] *= members;
    p7_tensor *out;
    P7_TRY(new_shape(x->device, x->ndim, shape, &out));
    p7_node node = {.op = p7_op_name(P7_OP_TILE_MEMBERS), .backward = tile_members_backward, .in = {x}, .ints = {members}};
    return finish(tape, &node, out, y, p7_tile_members_forward(x, members, out));
}

/* ---- member_mean: y = mean over members; dx = dy / M for every member ---- */

static p7_status member_mean_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    return dx ? p7_member_mean_backward(dy, n->ints[0], dx, ax) : P7_SUCCESS;
}

p7_status p7_member_mean(p7_tape *tape, p7_tensor *x, int members, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_MEMBER_MEAN), y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "member_mean: NULL input");
    if (members < 1 || x->shape[0] % members != 0) {
        char sx[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "member_mean: %d members do not divide the rows of %s", members,
                       p7_shape_format(x->ndim, x->shape, sx, sizeof sx));
    }
    int64_t shape[P7_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] /= members;
    p7_tensor *out;
    P7_TRY(new_shape(x->device, x->ndim, shape, &out));
    p7_node node = {.op = p7_op_name(P7_OP_MEMBER_MEAN), .backward = member_mean_backward, .in = {x}, .ints = {members}};
    return finish(tape, &node, out, y, p7_member_mean_forward(x, members, out));
}

/* ---- rows_slice: y = x[start : start + count] (a view); dx = dy on those rows, 0 elsewhere ---- */

/* A view of rows [start, start + count) of t along axis 0. */
static p7_status rows_view(p7_tensor *t, int64_t start, int64_t count, p7_tensor **view)
{
    int64_t shape[P7_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = count;
    const size_t row = t->numel / (size_t)t->shape[0];
    return p7_tensor_view(t, (size_t)start * row, t->ndim, shape, view);
}

static p7_status rows_slice_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx, *rows = NULL;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    if (!dx) return P7_SUCCESS;
    /* A fresh gradient holds garbage: the rows outside the slice get zero first. */
    if (!ax) P7_TRY(p7_tensor_fill(dx, 0.0f));
    P7_TRY(rows_view(dx, n->ints[0], n->ints[1], &rows));
    p7_status st = p7_axpy(1.0f, dy, rows, 1);
    p7_tensor_release(rows);
    return st;
}

p7_status p7_rows_slice(p7_tape *tape, p7_tensor *x, int64_t start, int64_t count, p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_ROWS_SLICE), y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "rows_slice: NULL input");
    if (start < 0 || count < 1 || start + count > x->shape[0] || start > INT32_MAX || count > INT32_MAX) {
        char sx[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "rows_slice: rows [%lld, %lld) are not inside x %s",
                       (long long)start, (long long)(start + count), p7_shape_format(x->ndim, x->shape, sx, sizeof sx));
    }
    p7_tensor *out;
    P7_TRY(rows_view(x, start, count, &out));
    p7_node node = {.op = p7_op_name(P7_OP_ROWS_SLICE), .backward = rows_slice_backward, .in = {x},
                    .ints = {(int)start, (int)count}};
    return finish(tape, &node, out, y, P7_SUCCESS);
}

/* ---- rows_concat: y = [x0; x1; ...]; dx_i = dy on x_i's rows ---- */

_Static_assert(P7_ROWS_CONCAT_MAX <= P7_NODE_MAX_INPUTS, "rows_concat records every input on its node");

static p7_status rows_concat_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    int64_t start = 0;
    for (int i = 0; i < P7_NODE_MAX_INPUTS && n->in[i]; i++) {
        const int64_t rows_i = n->in[i]->shape[0];
        p7_tensor *dx, *rows = NULL;
        int ax;
        P7_TRY(grad_of(tape, n, i, &dx, &ax));
        if (dx) {
            P7_TRY(rows_view(dy, start, rows_i, &rows));
            p7_status st = p7_axpy(1.0f, rows, dx, ax);
            p7_tensor_release(rows);
            P7_TRY(st);
        }
        start += rows_i;
    }
    return P7_SUCCESS;
}

p7_status p7_rows_concat(p7_tape *tape, p7_tensor *const *xs, int n, p7_tensor **y)
{
    const char *op = p7_op_name(P7_OP_ROWS_CONCAT);
    P7_TRY(check_out(op, y));
    if (!xs || n < 1 || n > P7_ROWS_CONCAT_MAX)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "rows_concat: %d tensors; expected 1 to %d", n, P7_ROWS_CONCAT_MAX);
    int64_t shape[P7_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        if (!xs[i]) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "rows_concat: tensor %d is NULL", i);
        if (i == 0) {
            memcpy(shape, xs[0]->shape, sizeof shape);
            continue;
        }
        int same = xs[i]->ndim == xs[0]->ndim && xs[i]->device == xs[0]->device;
        for (int d = 1; same && d < xs[0]->ndim; d++) same = xs[i]->shape[d] == xs[0]->shape[d];
        if (!same) {
            char s0[128], si[128];
            return p7_fail(P7_ERROR_INVALID_SHAPE,
                           "rows_concat: tensor %d %s does not match tensor 0 %s beyond axis 0 (or its device)", i,
                           p7_shape_format(xs[i]->ndim, xs[i]->shape, si, sizeof si),
                           p7_shape_format(xs[0]->ndim, xs[0]->shape, s0, sizeof s0));
        }
        shape[0] += xs[i]->shape[0];
    }
    p7_tensor *out;
    P7_TRY(new_shape(xs[0]->device, xs[0]->ndim, shape, &out));
    p7_node node = {.op = op, .backward = rows_concat_backward};
    p7_status st = P7_SUCCESS;
    int64_t start = 0;
    for (int i = 0; i < n && st == P7_SUCCESS; i++) {
        node.in[i] = xs[i];
        p7_tensor *rows = NULL;
        st = rows_view(out, start, xs[i]->shape[0], &rows);
        if (st == P7_SUCCESS) st = p7_axpy(1.0f, xs[i], rows, 0);
        p7_tensor_release(rows);
        start += xs[i]->shape[0];
    }
    return finish(tape, &node, out, y, st);
}

/* ---- softmax, log_softmax: backward from the saved output ---- */

static p7_status softmax_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    if (!dx) return P7_SUCCESS;
    return n->ints[0] ? p7_log_softmax_backward(n->out, dy, dx, ax) : p7_softmax_backward(n->out, dy, dx, ax);
}

static p7_status softmax_op(p7_tape *tape, p7_tensor *x, p7_tensor **y, int log)
{
    const char *op = p7_op_name(log ? P7_OP_LOG_SOFTMAX : P7_OP_SOFTMAX);
    P7_TRY(check_out(op, y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL input", op);
    if (x->ndim != 2) {
        char sx[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: x %s must be [N, K]", op, p7_shape_format(x->ndim, x->shape, sx, sizeof sx));
    }
    p7_tensor *out;
    P7_TRY(new_like(x, &out));
    p7_node node = {.op = op, .backward = softmax_backward, .in = {x}, .ints = {log}};
    return finish(tape, &node, out, y, log ? p7_log_softmax_forward(x, out) : p7_softmax_forward(x, out));
}

p7_status p7_softmax(p7_tape *tape, p7_tensor *x, p7_tensor **y) { return softmax_op(tape, x, y, 0); }
p7_status p7_log_softmax(p7_tape *tape, p7_tensor *x, p7_tensor **y) { return softmax_op(tape, x, y, 1); }

/* ---- cross_entropy: mean of -log p[label]; dlogits = (p - onehot) / N ---- */

static p7_status cross_entropy_backward(p7_tape *tape, p7_node *n, p7_tensor *dloss)
{
    p7_tensor *dx;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    return dx ? p7_cross_entropy_backward(n->saved[0], n->labels, n->labels_offset, dloss, dx, ax) : P7_SUCCESS;
}

p7_status p7_cross_entropy(p7_tape *tape, p7_tensor *logits, cl_mem labels, size_t labels_offset, p7_tensor **loss)
{
    P7_TRY(check_out(p7_op_name(P7_OP_CROSS_ENTROPY), loss));
    if (!logits || !labels) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "cross_entropy: NULL logits or labels");
    if (logits->ndim != 2) {
        char sx[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "cross_entropy: logits %s must be [N, K]",
                       p7_shape_format(logits->ndim, logits->shape, sx, sizeof sx));
    }
    const int64_t one[1] = {1};
    p7_tensor *out, *probs;
    P7_TRY(new_shape(logits->device, 1, one, &out));
    p7_status st = new_like(logits, &probs);
    if (st != P7_SUCCESS) { p7_tensor_release(out); return st; }
    p7_node node = {.op = p7_op_name(P7_OP_CROSS_ENTROPY), .backward = cross_entropy_backward, .in = {logits},
                    .saved = {probs}, .labels = labels, .labels_offset = labels_offset};
    st = finish(tape, &node, out, loss, p7_cross_entropy_forward(logits, labels, labels_offset, probs, out));
    p7_tensor_release(probs); /* the tape holds it when recorded */
    return st;
}

/* ---- sum, mean: y = scale * sum(x); dx = scale * dy ---- */

static p7_status sum_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx;
    int ax;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    return dx ? p7_sum_backward(dy, n->floats[0], dx, ax) : P7_SUCCESS;
}

static p7_status sum_op(p7_tape *tape, p7_tensor *x, p7_tensor **y, int mean)
{
    const char *op = p7_op_name(mean ? P7_OP_MEAN : P7_OP_SUM);
    P7_TRY(check_out(op, y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL input", op);
    const int64_t one[1] = {1};
    p7_tensor *out;
    P7_TRY(new_shape(x->device, 1, one, &out));
    float scale = mean ? 1.0f / (float)x->numel : 1.0f;
    p7_node node = {.op = op, .backward = sum_backward, .in = {x}, .floats = {scale}};
    return finish(tape, &node, out, y, p7_sum_forward(x, scale, out));
}

p7_status p7_sum(p7_tape *tape, p7_tensor *x, p7_tensor **y) { return sum_op(tape, x, y, 0); }
p7_status p7_mean(p7_tape *tape, p7_tensor *x, p7_tensor **y) { return sum_op(tape, x, y, 1); }

/* ---- batchnorm2d: y = (x - mean) * invstd * weight[m, c] + bias[m, c] ---- */

static p7_status batchnorm2d_backward(p7_tape *tape, p7_node *n, p7_tensor *dy)
{
    p7_tensor *dx, *dw, *db;
    int ax, aw, ab;
    P7_TRY(grad_of(tape, n, 0, &dx, &ax));
    P7_TRY(grad_of(tape, n, 1, &dw, &aw));
    P7_TRY(grad_of(tape, n, 2, &db, &ab));
    return p7_batchnorm2d_backward(n->in[0], n->in[1], n->ints[0], n->ints[1], n->saved[0], n->saved[1], dy, dx, ax,
                                   dw, aw, db, ab);
}

p7_status p7_batchnorm2d(p7_tape *tape, p7_tensor *x, p7_tensor *weight, p7_tensor *bias, int members,
                         p7_tensor *running_mean, p7_tensor *running_var, int training, float momentum, float eps,
                         p7_tensor **y)
{
    P7_TRY(check_out(p7_op_name(P7_OP_BATCHNORM2D), y));
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "batchnorm2d: NULL input");
    if (x->ndim != 4 && x->ndim != 2) {
        char sx[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "batchnorm2d: x %s must be [N, C, H, W] or [N, C]",
                       p7_shape_format(x->ndim, x->shape, sx, sizeof sx));
    }
    if (!training && (!running_mean || !running_var))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "batchnorm2d: evaluation mode needs running statistics");
    const int64_t channels[1] = {x->shape[1]};
    p7_tensor *out = NULL, *mean = NULL, *invstd = NULL;
    p7_status st = new_like(x, &out);
    if (st == P7_SUCCESS) st = new_shape(x->device, 1, channels, &mean);
    if (st == P7_SUCCESS) st = new_shape(x->device, 1, channels, &invstd);
    if (st != P7_SUCCESS) {
        p7_tensor_release(out);
        p7_tensor_release(mean);
        return st;
    }
    p7_node node = {.op = p7_op_name(P7_OP_BATCHNORM2D), .backward = batchnorm2d_backward, .in = {x, weight, bias},
                    .saved = {mean, invstd}, .ints = {members, training != 0}};
    st = p7_batchnorm2d_forward(x, weight, bias, members, running_mean, running_var, training, momentum, eps, mean,
                                invstd, out);
    st = finish(tape, &node, out, y, st);
    p7_tensor_release(mean);
    p7_tensor_release(invstd);
    return st;
}
