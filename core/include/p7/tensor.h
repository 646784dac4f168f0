/* p7 tensors: float32, contiguous, up to P7_MAX_DIMS dimensions, on one device.
 *
 * Ownership: a tensor is reference-counted. p7_tensor_create and p7_tensor_view /
 * p7_tensor_reshape return a tensor with one reference that the caller owns and
 * must give up with p7_tensor_release. p7_tensor_retain adds a reference. A view
 * shares its parent's device storage and keeps that storage alive: releasing the
 * parent before the view is fine. The storage returns to the device's allocator
 * cache when its last tensor is released. Passing a tensor to a p7 function never
 * transfers ownership unless that function's comment says so.
 *
 * Element order is row-major (the last dimension is contiguous); images are NCHW.
 */
#ifndef P7_TENSOR_H
#define P7_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include <CL/cl.h>

#include "p7/device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define P7_MAX_DIMS 8

typedef struct p7_tensor p7_tensor;

/* A new tensor of the given shape; every extent must be >= 1. Contents undefined. */
p7_status p7_tensor_create(p7_device *device, int ndim, const int64_t *shape, p7_tensor **out);

p7_tensor *p7_tensor_retain(p7_tensor *tensor);
void p7_tensor_release(p7_tensor *tensor); /* NULL is a no-op */

/* Copy `count` floats from host memory; count must equal the tensor's element count.
 * The copy is enqueued; `host` may be reused as soon as the call returns. */
p7_status p7_tensor_upload(p7_tensor *tensor, const float *host, size_t count);

/* Copy the tensor into `host` (count must equal the element count). Blocks until the
 * queued work that produces the tensor has finished. */
p7_status p7_tensor_download(const p7_tensor *tensor, float *host, size_t count);

/* Set every element to `value` (enqueued). */
p7_status p7_tensor_fill(p7_tensor *tensor, float value);

/* The same elements seen with another shape; the element counts must be equal. One
 * extent may be -1 and is then inferred. */
p7_status p7_tensor_reshape(p7_tensor *tensor, int ndim, const int64_t *shape, p7_tensor **out);

/* A contiguous window of `tensor`'s elements, starting at element `offset`, seen with
 * the given shape (e.g. a batch slice). Must lie inside the tensor. */
p7_status p7_tensor_view(p7_tensor *tensor, size_t offset, int ndim, const int64_t *shape,
                         p7_tensor **out);

int p7_tensor_ndim(const p7_tensor *tensor);
int64_t p7_tensor_dim(const p7_tensor *tensor, int axis); /* negative axis counts from the end */
const int64_t *p7_tensor_shape(const p7_tensor *tensor);
size_t p7_tensor_numel(const p7_tensor *tensor);
p7_device *p7_tensor_device(const p7_tensor *tensor);

/* The OpenCL buffer and the element offset of element 0 within it, for kernels. */
cl_mem p7_tensor_mem(const p7_tensor *tensor);
size_t p7_tensor_offset(const p7_tensor *tensor);

/* Writes e.g. "[128, 3, 32, 32]" into buf (always NUL-terminated); returns buf. */
const char *p7_shape_format(int ndim, const int64_t *shape, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
