/* p7 autograd: reverse-mode automatic differentiation on a tape.
 *
 *     p7_tape *tape;  p7_tape_create(device, &tape);
 *     p7_conv2d(tape, x, w, b, 1, 1, &h);  ...  p7_cross_entropy(tape, logits, labels, 0, &loss);
 *     p7_tape_backward(tape, loss);          // gradients land in p7_tensor_grad(w) ...
 *
 * Every op of p7/ops.h takes the tape as its first argument. An op whose inputs
 * include a tensor that requires gradients is recorded (the tape retains its inputs
 * and whatever the backward pass needs); with a NULL tape, or a disabled one (no-grad
 * / eval mode), nothing is recorded. p7_tape_backward walks the records in reverse,
 * accumulates gradients into leaves (parameters used several times get the sum of
 * their contributions), then frees the graph. The forward math and the backward
 * math of each op sit side by side in core/src/ops/ops.c.
 */
#ifndef P7_AUTOGRAD_H
#define P7_AUTOGRAD_H

#include <stddef.h>

#include "p7/device.h"
#include "p7/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct p7_tape p7_tape;

P7_API p7_status p7_tape_create(p7_device *device, p7_tape **out);
P7_API void p7_tape_destroy(p7_tape *tape); /* NULL is a no-op */

/* Recording on (default) or off (no-grad: inference, evaluation). */
P7_API void p7_tape_set_enabled(p7_tape *tape, int enabled);
P7_API int p7_tape_enabled(const p7_tape *tape);

/* d loss / d leaf for every leaf that requires gradients and reaches `loss` (a
 * tensor with one element recorded on this tape). Then clears the tape. */
P7_API p7_status p7_tape_backward(p7_tape *tape, p7_tensor *loss);

/* Drop the recorded graph (and intermediate gradients) without a backward pass. */
P7_API void p7_tape_clear(p7_tape *tape);

P7_API size_t p7_tape_node_count(const p7_tape *tape);

/* How often `leaf` was used as an op input since the tape was last cleared (0 for a
 * tensor that does not require gradients). Sharing studies count parameters used
 * once and more than once from this. */
P7_API unsigned p7_tape_uses(const p7_tape *tape, const p7_tensor *leaf);

#ifdef __cplusplus
}
#endif

#endif
