/* The tensor layer's internals: the tensor and storage structures that autograd and
 * the ops read directly. */
#ifndef P7_TENSOR_INTERNAL_H
#define P7_TENSOR_INTERNAL_H

#include "p7/tensor.h"
#include "runtime/runtime.h"

typedef struct p7_storage {
    p7_buffer *buffer;
    size_t elements;
    int refs;
} p7_storage;

struct p7_tensor {
    p7_device *device;
    p7_storage *storage;
    size_t offset;
    int ndim;
    int64_t shape[P7_MAX_DIMS];
    size_t numel;
    int refs;
    /* autograd (autograd.c) */
    int requires_grad;   /* a leaf set by the user, or the output of a recorded op */
    int is_leaf;         /* set by p7_tensor_set_requires_grad: gradients persist */
    p7_tensor *grad;     /* owned; NULL until a backward pass writes it */
    unsigned uses;       /* times used as an op input since the tape was last cleared */
};

/* count Normal(mean, std) floats at `offset` of `mem`, from Philox (seed, stream) as
 * p7_tensor_fill_normal draws them; `label` names the launch in profiles. */
p7_status p7_fill_normal_mem(p7_device *device, cl_mem mem, uint64_t offset, uint64_t count, uint64_t seed,
                             uint64_t stream, float mean, float std, const char *label);

#endif
