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
P7_API p7_status p7_tensor_create(p7_device *device, int ndim, const int64_t *shape, p7_tensor **out);

P7_API p7_tensor *p7_tensor_retain(p7_tensor *tensor);
P7_API void p7_tensor_release(p7_tensor *tensor); /* NULL is a no-op */

/* Copy `count` floats from host memory; count must equal the tensor's element count.
 * The copy is enqueued; `host` may be reused as soon as the call returns. */
P7_API p7_status p7_tensor_upload(p7_tensor *tensor, const float *host, size_t count);

/* Copy the tensor into `host` (count must equal the element count). Blocks until the
 * queued work that produces the tensor has finished. */
P7_API p7_status p7_tensor_download(const p7_tensor *tensor, float *host, size_t count);

/* Set every element to `value` (enqueued). */
P7_API p7_status p7_tensor_fill(p7_tensor *tensor, float value);

/* The same elements seen with another shape; the element counts must be equal. One
 * extent may be -1 and is then inferred. */
P7_API p7_status p7_tensor_reshape(p7_tensor *tensor, int ndim, const int64_t *shape, p7_tensor **out);

/* A contiguous window of `tensor`'s elements, starting at element `offset`, seen with
 * the given shape (e.g. a batch slice). Must lie inside the tensor. */
P7_API p7_status p7_tensor_view(p7_tensor *tensor, size_t offset, int ndim, const int64_t *shape,
                         p7_tensor **out);

P7_API int p7_tensor_ndim(const p7_tensor *tensor);
P7_API int64_t p7_tensor_dim(const p7_tensor *tensor, int axis); /* negative axis counts from the end */
P7_API const int64_t *p7_tensor_shape(const p7_tensor *tensor);
P7_API size_t p7_tensor_numel(const p7_tensor *tensor);
P7_API p7_device *p7_tensor_device(const p7_tensor *tensor);

/* The OpenCL buffer and the element offset of element 0 within it, for kernels. */
P7_API cl_mem p7_tensor_mem(const p7_tensor *tensor);
P7_API size_t p7_tensor_offset(const p7_tensor *tensor);

/* ---- seeded random fills on the device ----
 * Philox4x32-10 with p7_rng's stream convention (p7/rng.h): element i of a uniform
 * or sign fill is word i of stream `stream` of `seed`; a normal fill uses words 2i
 * and 2i+1 (Box-Muller, cosine branch). The same seed gives the same bits on every
 * device; normals may differ in the last float bits where devices' log/cos differ. */
P7_API p7_status p7_tensor_fill_uniform(p7_tensor *tensor, uint64_t seed, uint64_t stream, float low, float high);
P7_API p7_status p7_tensor_fill_normal(p7_tensor *tensor, uint64_t seed, uint64_t stream, float mean, float std);
/* +1 with probability p_plus, else -1 */
P7_API p7_status p7_tensor_fill_sign(p7_tensor *tensor, uint64_t seed, uint64_t stream, float p_plus);

/* ---- gradients (see p7/autograd.h) ----
 * A tensor marked requires_grad is a leaf (a parameter): ops recorded on a tape that
 * use it produce outputs that require gradients, and a backward pass leaves the
 * gradient in p7_tensor_grad(). Gradients accumulate over backward passes and over
 * multiple uses (parameter sharing) until p7_tensor_zero_grad. */
P7_API p7_status p7_tensor_set_requires_grad(p7_tensor *tensor, int requires_grad);
P7_API int p7_tensor_requires_grad(const p7_tensor *tensor);
/* The gradient (owned by the tensor; NULL before any backward reached it). */
P7_API p7_tensor *p7_tensor_grad(const p7_tensor *tensor);
/* Sets the gradient to `count` host floats (count must equal the element count), as a
 * backward pass would have left it: for driving an optimizer on given gradients (plugin
 * tests, reference comparisons). A later backward adds to it, as to any gradient. */
P7_API p7_status p7_tensor_set_grad(p7_tensor *tensor, const float *host, size_t count);
/* Forget the gradient: the next backward writes a fresh one. */
P7_API void p7_tensor_zero_grad(p7_tensor *tensor);

/* Writes e.g. "[128, 3, 32, 32]" into buf (always NUL-terminated); returns buf. */
P7_API const char *p7_shape_format(int ndim, const int64_t *shape, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
