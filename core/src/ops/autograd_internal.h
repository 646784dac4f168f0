/* The tape's records (internal): shared by autograd.c (the walk) and ops.c (the math). */
#ifndef P7_AUTOGRAD_INTERNAL_H
#define P7_AUTOGRAD_INTERNAL_H

#include "runtime/runtime.h"
#include "tensor/tensor_internal.h"
#include "p7/autograd.h"

/* rows_concat joins up to this many tensors (the members of a member group). */
#define P7_NODE_MAX_INPUTS 16
#define P7_NODE_MAX_SAVED 3

typedef struct p7_node p7_node;

/* Writes the gradients of the node's inputs from the gradient of its output. */
typedef p7_status (*p7_backward_fn)(p7_tape *tape, p7_node *node, p7_tensor *dout);

struct p7_node {
    const char *op;                          /* for error messages */
    p7_backward_fn backward;
    p7_tensor *in[P7_NODE_MAX_INPUTS];       /* retained; NULL where absent */
    p7_tensor *out;                          /* retained */
    p7_tensor *saved[P7_NODE_MAX_SAVED];     /* retained tensors the backward needs */
    p7_buffer *saved_buffer;                 /* owned (e.g. max-pool argmax indices) */
    cl_mem labels;                           /* retained (cross-entropy) */
    size_t labels_offset;
    int ints[4];
    float floats[2];
    char scope[P7_PROFILE_SCOPE_MAX];        /* the model part that recorded it (profiling per layer) */
};

/* Append a record for an op whose output `out` was just computed. Takes ownership
 * of node->saved_buffer; retains everything else. */
p7_status p7_tape_record(p7_tape *tape, const p7_node *node);

/* Test hook: the n-th host allocation the tape makes from now on fails (0: none), so
 * tests reach the out-of-memory paths of recording. Thread-local. */
void p7_tape_fail_allocation_after(int n);

/* Does recording apply: a recording tape and at least one input requiring grads. */
int p7_tape_should_record(const p7_tape *tape, p7_tensor *const *inputs, int count);

/* The gradient tensor of `t`, created when absent. *accumulate is 0 for a fresh one
 * (write it) and 1 when it already holds contributions (add to it). */
p7_status p7_grad_target(p7_tape *tape, p7_tensor *t, p7_tensor **grad, int *accumulate);

#endif
