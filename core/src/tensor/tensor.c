/* Tensors: shape bookkeeping over reference-counted device storage. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor_internal.h"
#include "runtime/p7_kernels.h"

const char *p7_shape_format(int ndim, const int64_t *shape, char *buf, size_t size)
{
    if (!buf || size == 0) return buf;
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

/* Checks the shape and returns the element count in *numel (0 on error). */
static p7_status check_shape(const char *op, int ndim, const int64_t *shape, size_t *numel)
{
    char text[256];
    *numel = 0;
    if (ndim < 1 || ndim > P7_MAX_DIMS)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %d dimensions; expected 1 to %d", op, ndim, P7_MAX_DIMS);
    if (!shape) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL shape", op);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: shape %s has extent %lld at axis %d; extents must be >= 1",
                           op, p7_shape_format(ndim, shape, text, sizeof text), (long long)shape[i], i);
        if ((uint64_t)shape[i] > SIZE_MAX / 4 / n)
            return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: shape %s is too large", op,
                           p7_shape_format(ndim, shape, text, sizeof text));
        n *= (size_t)shape[i];
    }
    *numel = n;
    return P7_SUCCESS;
}

static p7_tensor *new_header(p7_device *device, p7_storage *storage, size_t offset, int ndim,
                             const int64_t *shape, size_t numel)
{
    p7_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->device = device;
    t->storage = storage;
    t->offset = offset;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    t->refs = 1;
    return t;
}

p7_status p7_tensor_create(p7_device *device, int ndim, const int64_t *shape, p7_tensor **out)
{
    if (!device || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tensor_create: NULL argument");
    *out = NULL;
    size_t numel;
    P7_TRY(check_shape("p7_tensor_create", ndim, shape, &numel));
    p7_storage *storage = calloc(1, sizeof *storage);
    if (!storage) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_tensor_create: out of host memory");
    p7_status st = p7_buffer_alloc(device, numel * sizeof(float), &storage->buffer);
    if (st != P7_SUCCESS) { free(storage); return st; }
    storage->elements = numel;
    storage->refs = 1;
    p7_tensor *t = new_header(device, storage, 0, ndim, shape, numel);
    if (!t) {
        p7_buffer_free(storage->buffer);
        free(storage);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_tensor_create: out of host memory");
    }
    /* Poisoned devices hand out NaN-filled tensors: pooled buffers usually still hold
     * earlier, plausible values, which would hide an element an op forgot to write. */
    if (device->poison_allocations) {
        st = p7_tensor_fill(t, NAN);
        if (st != P7_SUCCESS) {
            p7_tensor_release(t);
            return st;
        }
    }
    *out = t;
    return P7_SUCCESS;
}

p7_tensor *p7_tensor_retain(p7_tensor *tensor)
{
    if (tensor) tensor->refs++;
    return tensor;
}

void p7_tensor_release(p7_tensor *tensor)
{
    if (!tensor || --tensor->refs > 0) return;
    p7_tensor_release(tensor->grad);
    if (--tensor->storage->refs == 0) {
        p7_buffer_free(tensor->storage->buffer);
        free(tensor->storage);
    }
    free(tensor);
}

static p7_status check_count(const char *op, const p7_tensor *t, const void *host, size_t count)
{
    if (!t || !host) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL argument", op);
    if (count != t->numel) {
        char text[256];
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %zu floats given for a tensor of shape %s (%zu elements)",
                       op, count, p7_shape_format(t->ndim, t->shape, text, sizeof text), t->numel);
    }
    return P7_SUCCESS;
}

p7_status p7_tensor_upload(p7_tensor *tensor, const float *host, size_t count)
{
    P7_TRY(check_count("p7_tensor_upload", tensor, host, count));
    /* Blocking write: the caller may reuse `host` at once. On CPU devices this is a
     * memcpy; the data pipeline uses its own non-blocking, double-buffered path. */
    P7_CL_TRY(clEnqueueWriteBuffer(tensor->device->queue, p7_tensor_mem(tensor), CL_TRUE,
                                   tensor->offset * sizeof(float), count * sizeof(float), host, 0, NULL, NULL),
              "p7_tensor_upload: clEnqueueWriteBuffer");
    return P7_SUCCESS;
}

p7_status p7_tensor_download(const p7_tensor *tensor, float *host, size_t count)
{
    P7_TRY(check_count("p7_tensor_download", tensor, host, count));
    P7_CL_TRY(clEnqueueReadBuffer(tensor->device->queue, p7_tensor_mem(tensor), CL_TRUE,
                                  tensor->offset * sizeof(float), count * sizeof(float), host, 0, NULL, NULL),
              "p7_tensor_download: clEnqueueReadBuffer");
    return P7_SUCCESS;
}

p7_status p7_tensor_fill(p7_tensor *tensor, float value)
{
    if (!tensor) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tensor_fill: NULL tensor");
    cl_kernel kernel;
    P7_TRY(p7_kernel_get(tensor->device, &p7_kernels_tensor_fill, NULL, "tensor_fill", &kernel));
    cl_mem mem = p7_tensor_mem(tensor);
    cl_ulong offset = tensor->offset, count = tensor->numel;
    P7_TRY(P7_SET_ARGS(kernel, "p7_tensor_fill", P7_ARG(mem), P7_ARG(offset), P7_ARG(count), P7_ARG(value)));
    size_t global = (tensor->numel + 63) / 64 * 64;
    return p7_launch(tensor->device, kernel, 1, &global, NULL, "tensor_fill");
}

static p7_status make_view(p7_tensor *tensor, const char *op, size_t offset, int ndim,
                           const int64_t *shape_in, p7_tensor **out)
{
    if (!tensor || !out || !shape_in) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL argument", op);
    *out = NULL;
    if (ndim < 1 || ndim > P7_MAX_DIMS)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %d dimensions; expected 1 to %d", op, ndim, P7_MAX_DIMS);
    int64_t shape[P7_MAX_DIMS];
    memcpy(shape, shape_in, (size_t)ndim * sizeof *shape);
    char a[256], b[256];

    /* One -1 extent is inferred from the element count (reshape only). */
    int infer = -1;
    size_t known = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1 && offset == (size_t)-1) {
            if (infer >= 0)
                return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: shape %s has more than one -1", op,
                               p7_shape_format(ndim, shape, a, sizeof a));
            infer = i;
        } else if (shape[i] >= 1) {
            known *= (size_t)shape[i];
        }
    }
    if (infer >= 0) {
        if (tensor->numel % known != 0)
            return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: cannot reshape %s (%zu elements) to %s", op,
                           p7_shape_format(tensor->ndim, tensor->shape, a, sizeof a), tensor->numel,
                           p7_shape_format(ndim, shape, b, sizeof b));
        shape[infer] = (int64_t)(tensor->numel / known);
    }
    size_t numel;
    P7_TRY(check_shape(op, ndim, shape, &numel));

    size_t start = offset == (size_t)-1 ? 0 : offset;
    if (offset == (size_t)-1 && numel != tensor->numel)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: cannot reshape %s (%zu elements) to %s (%zu elements)", op,
                       p7_shape_format(tensor->ndim, tensor->shape, a, sizeof a), tensor->numel,
                       p7_shape_format(ndim, shape, b, sizeof b), numel);
    if (start > tensor->numel || numel > tensor->numel - start)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "%s: a view of shape %s at element %zu does not fit in a tensor of shape %s (%zu elements)",
                       op, p7_shape_format(ndim, shape, b, sizeof b), start,
                       p7_shape_format(tensor->ndim, tensor->shape, a, sizeof a), tensor->numel);
    p7_tensor *t = new_header(tensor->device, tensor->storage, tensor->offset + start, ndim, shape, numel);
    if (!t) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    tensor->storage->refs++;
    *out = t;
    return P7_SUCCESS;
}

p7_status p7_tensor_reshape(p7_tensor *tensor, int ndim, const int64_t *shape, p7_tensor **out)
{
    return make_view(tensor, "p7_tensor_reshape", (size_t)-1, ndim, shape, out);
}

p7_status p7_tensor_view(p7_tensor *tensor, size_t offset, int ndim, const int64_t *shape, p7_tensor **out)
{
    if (offset == (size_t)-1)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tensor_view: offset %zu is out of range", offset);
    return make_view(tensor, "p7_tensor_view", offset, ndim, shape, out);
}

int p7_tensor_ndim(const p7_tensor *t) { return t ? t->ndim : 0; }

int64_t p7_tensor_dim(const p7_tensor *t, int axis)
{
    if (!t) return 0;
    if (axis < 0) axis += t->ndim;
    return (axis >= 0 && axis < t->ndim) ? t->shape[axis] : 0;
}

const int64_t *p7_tensor_shape(const p7_tensor *t) { return t ? t->shape : NULL; }
size_t p7_tensor_numel(const p7_tensor *t) { return t ? t->numel : 0; }
p7_device *p7_tensor_device(const p7_tensor *t) { return t ? t->device : NULL; }
cl_mem p7_tensor_mem(const p7_tensor *t) { return t ? p7_buffer_mem(t->storage->buffer) : NULL; }
size_t p7_tensor_offset(const p7_tensor *t) { return t ? t->offset : 0; }

p7_status p7_tensor_set_requires_grad(p7_tensor *tensor, int requires_grad)
{
    if (!tensor) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tensor_set_requires_grad: NULL tensor");
    tensor->requires_grad = requires_grad != 0;
    tensor->is_leaf = 1;
    return P7_SUCCESS;
}

int p7_tensor_requires_grad(const p7_tensor *t) { return t ? t->requires_grad : 0; }
p7_tensor *p7_tensor_grad(const p7_tensor *t) { return t ? t->grad : NULL; }

p7_status p7_tensor_set_grad(p7_tensor *tensor, const float *host, size_t count)
{
    P7_TRY(check_count("p7_tensor_set_grad", tensor, host, count));
    p7_tensor *grad = tensor->grad;
    if (!grad) P7_TRY(p7_tensor_create(tensor->device, tensor->ndim, tensor->shape, &grad));
    p7_status st = p7_tensor_upload(grad, host, count);
    if (st != P7_SUCCESS) {
        if (grad != tensor->grad) p7_tensor_release(grad);
        return st;
    }
    tensor->grad = grad;
    return P7_SUCCESS;
}

void p7_tensor_zero_grad(p7_tensor *tensor)
{
    /* Dropping the gradient (rather than filling it with zeros) lets the next backward
     * write it with beta = 0: one pass less, and an unused parameter shows no gradient. */
    if (!tensor) return;
    p7_tensor_release(tensor->grad);
    tensor->grad = NULL;
}
