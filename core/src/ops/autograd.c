/* The tape: records ops, walks them backwards, routes gradients. */
#include <stdlib.h>
#include <string.h>

#include "ops/autograd_internal.h"

struct p7_tape {
    p7_device *device;
    int enabled;
    p7_node *nodes;
    size_t count, capacity;
    p7_tensor **leaves;      /* leaves used since the last clear (retained), for use counts */
    size_t leaf_count, leaf_capacity;
};

p7_status p7_tape_create(p7_device *device, p7_tape **out)
{
    if (!device || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tape_create: NULL argument");
    p7_tape *tape = calloc(1, sizeof *tape);
    if (!tape) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_tape_create: out of host memory");
    tape->device = device;
    tape->enabled = 1;
    *out = tape;
    return P7_SUCCESS;
}

void p7_tape_destroy(p7_tape *tape)
{
    if (!tape) return;
    p7_tape_clear(tape);
    free(tape->nodes);
    free(tape->leaves);
    free(tape);
}

void p7_tape_set_enabled(p7_tape *tape, int enabled) { if (tape) tape->enabled = enabled != 0; }
int p7_tape_enabled(const p7_tape *tape) { return tape && tape->enabled; }
size_t p7_tape_node_count(const p7_tape *tape) { return tape ? tape->count : 0; }

unsigned p7_tape_uses(const p7_tape *tape, const p7_tensor *leaf)
{
    (void)tape;
    return leaf && leaf->is_leaf && leaf->requires_grad ? leaf->uses : 0;
}

int p7_tape_should_record(const p7_tape *tape, p7_tensor *const *inputs, int count)
{
    if (!tape || !tape->enabled) return 0;
    for (int i = 0; i < count; i++)
        if (inputs[i] && inputs[i]->requires_grad) return 1;
    return 0;
}

/* Test hook (autograd_internal.h): the n-th tape allocation from now fails. */
static _Thread_local int fail_allocation_countdown;
void p7_tape_fail_allocation_after(int n) { fail_allocation_countdown = n; }

static void *tape_realloc(void *p, size_t size)
{
    if (fail_allocation_countdown > 0 && --fail_allocation_countdown == 0) return NULL;
    return realloc(p, size);
}

/* Room for `more` leaves, so that noting them afterwards cannot fail. */
static p7_status reserve_leaves(p7_tape *tape, size_t more)
{
    if (tape->leaf_count + more <= tape->leaf_capacity) return P7_SUCCESS;
    size_t cap = tape->leaf_capacity ? 2 * tape->leaf_capacity : 64;
    while (cap < tape->leaf_count + more) cap *= 2;
    p7_tensor **grown = tape_realloc(tape->leaves, cap * sizeof *grown);
    if (!grown) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "autograd: out of host memory");
    tape->leaves = grown;
    tape->leaf_capacity = cap;
    return P7_SUCCESS;
}

/* Counts a use of a leaf; its first use puts it on the list (room reserved already). */
static void note_leaf(p7_tape *tape, p7_tensor *t)
{
    if (!t || !t->is_leaf || !t->requires_grad) return;
    if (t->uses++ > 0) return;
    tape->leaves[tape->leaf_count++] = p7_tensor_retain(t);
}

static void release_node(p7_node *n)
{
    for (int i = 0; i < P7_NODE_MAX_INPUTS; i++) p7_tensor_release(n->in[i]);
    for (int i = 0; i < P7_NODE_MAX_SAVED; i++) p7_tensor_release(n->saved[i]);
    if (n->out && !n->out->is_leaf) { /* intermediate gradients die with the graph */
        p7_tensor_release(n->out->grad);
        n->out->grad = NULL;
    }
    p7_tensor_release(n->out);
    p7_buffer_free(n->saved_buffer);
    if (n->labels) clReleaseMemObject(n->labels);
    memset(n, 0, sizeof *n);
}

p7_status p7_tape_record(p7_tape *tape, const p7_node *node)
{
    /* Everything that can fail comes before the node is counted and anything retained:
     * a failure leaves the tape exactly as it was, so clearing it later releases only
     * what was retained. */
    p7_status st = P7_SUCCESS;
    if (tape->count == tape->capacity) {
        size_t cap = tape->capacity ? 2 * tape->capacity : 64;
        p7_node *grown = tape_realloc(tape->nodes, cap * sizeof *grown);
        if (grown) {
            tape->nodes = grown;
            tape->capacity = cap;
        } else {
            st = P7_ERROR_OUT_OF_MEMORY;
        }
    }
    if (st == P7_SUCCESS) st = reserve_leaves(tape, P7_NODE_MAX_INPUTS);
    if (st != P7_SUCCESS) {
        p7_buffer_free(node->saved_buffer);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "autograd: out of host memory recording %s", node->op);
    }
    p7_node *n = &tape->nodes[tape->count++];
    *n = *node;
    snprintf(n->scope, sizeof n->scope, "%s", p7_profile_scope(tape->device));
    for (int i = 0; i < P7_NODE_MAX_INPUTS; i++) {
        p7_tensor_retain(n->in[i]);
        note_leaf(tape, n->in[i]);
    }
    for (int i = 0; i < P7_NODE_MAX_SAVED; i++) p7_tensor_retain(n->saved[i]);
    p7_tensor_retain(n->out);
    if (n->labels) clRetainMemObject(n->labels);
    n->out->requires_grad = 1;
    return P7_SUCCESS;
}

p7_status p7_grad_target(p7_tape *tape, p7_tensor *t, p7_tensor **grad, int *accumulate)
{
    (void)tape;
    if (t->grad) {
        *grad = t->grad;
        *accumulate = 1;
        return P7_SUCCESS;
    }
    P7_TRY(p7_tensor_create(t->device, t->ndim, t->shape, &t->grad));
    *grad = t->grad;
    *accumulate = 0;
    return P7_SUCCESS;
}

void p7_tape_clear(p7_tape *tape)
{
    if (!tape) return;
    for (size_t i = tape->count; i-- > 0;) release_node(&tape->nodes[i]);
    tape->count = 0;
    for (size_t i = 0; i < tape->leaf_count; i++) {
        tape->leaves[i]->uses = 0;
        p7_tensor_release(tape->leaves[i]);
    }
    tape->leaf_count = 0;
}

p7_status p7_tape_backward(p7_tape *tape, p7_tensor *loss)
{
    if (!tape || !loss) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tape_backward: NULL argument");
    if (loss->numel != 1)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "p7_tape_backward: the loss has %zu elements; expected 1", loss->numel);
    if (!loss->requires_grad || loss->is_leaf)
        return p7_fail(P7_ERROR_STATE, "p7_tape_backward: the loss was not computed by ops recorded on this tape "
                                       "(is the tape disabled, or does nothing require gradients?)");
    p7_tensor *seed;
    int acc;
    P7_TRY(p7_grad_target(tape, loss, &seed, &acc));
    P7_TRY(p7_tensor_fill(seed, 1.0f)); /* d loss / d loss */

    /* Each node is released as soon as its backward has run: every op recorded after it
     * (the only ones that read its output or add to its output's gradient) has run its
     * backward already, so its output, saved tensors and output gradient have no reader
     * left. Releasing them here rather than at the end lets the allocator reuse that
     * memory for the gradients still to come (VGG11-BN's step held every activation and
     * every activation gradient at once). */
    p7_status st = P7_SUCCESS;
    for (size_t i = tape->count; i-- > 0 && st == P7_SUCCESS;) {
        p7_node *n = &tape->nodes[i];
        if (n->out->grad) { /* else nothing downstream of this op reached the loss */
            p7_profile_set_scope(tape->device, n->scope);
            st = n->backward(tape, n, n->out->grad);
        }
        if (st == P7_SUCCESS) {
            release_node(n);
            tape->count = i;
        }
    }
    p7_profile_set_scope(tape->device, NULL);
    p7_tape_clear(tape);
    return st;
}
