/* The table-driven op-test harness: one row per op case, one driver for all rows.
 *
 * A row names an op of P7_OP_LIST, its input shapes and value ranges, its parameters,
 * a float64 host reference of its forward, the p7 call, tolerances and shape sets the
 * op must reject. p7_oph_run checks, on a device opened by p7_oph_open_device (every
 * new tensor starts as NaN there, so an unwritten element fails the comparisons):
 *   - the forward against the reference;
 *   - every input marked in grad_inputs: its gradient of L = sum(r * op(inputs)),
 *     r fixed and random, against central finite differences of L on the host in
 *     double precision;
 *   - the accumulate path: the op applied twice to the same inputs in one graph, so
 *     every backward kernel also runs with accumulate = 1; the gradients must be twice
 *     the finite-difference ones;
 *   - each bad shape set: P7_ERROR_INVALID_SHAPE, no output, the op named in the message.
 * Adding an op's tests is adding a row. */
#ifndef P7_OP_HARNESS_H
#define P7_OP_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "ops/op_list.h"
#include "p7/p7.h"

#define P7_OPH_MAX_INPUTS 5
#define P7_OPH_MAX_BAD 4

/* ndim 0: the input is absent (the op gets NULL). */
typedef struct p7_oph_shape {
    int ndim;
    int64_t dims[4];
} p7_oph_shape;

typedef struct p7_oph_row p7_oph_row;

/* What a row's call hook gets: ints are the row's, or a bad set's when it has its own. */
typedef struct p7_oph_call {
    const p7_oph_row *row;
    p7_tape *tape;
    p7_tensor *in[P7_OPH_MAX_INPUTS];
    const int *ints;
    cl_mem labels; /* the row's labels on the device, or NULL */
} p7_oph_call;

/* A shape set the op must reject with P7_ERROR_INVALID_SHAPE; unused entries are zero. */
typedef struct p7_oph_bad {
    p7_oph_shape in[P7_OPH_MAX_INPUTS];
    int has_ints;   /* nonzero: call with ints below instead of the row's */
    int ints[4];
    const char *expect; /* optional text the error message must contain */
} p7_oph_bad;

struct p7_oph_row {
    p7_op_id op;
    const char *label;                   /* what the case exercises, for failure messages */
    p7_oph_shape in[P7_OPH_MAX_INPUTS];
    unsigned grad_inputs;                /* bit i: input i requires a gradient, which is checked */
    float lo[P7_OPH_MAX_INPUTS], hi[P7_OPH_MAX_INPUTS]; /* uniform ranges; both 0: [-1, 1) */
    /* optional: reshapes input `input`'s random values (e.g. away from a kink) */
    void (*prepare)(const p7_oph_row *row, int input, float *values, size_t count);
    int ints[4];
    float floats[2];
    const int *labels;                   /* cross-entropy labels, one per row of input 0 */
    p7_oph_shape out;
    /* out = op(in) in double; absent inputs are NULL */
    void (*reference)(const p7_oph_row *row, const double *const *in, double *out);
    p7_status (*call)(const p7_oph_call *call, p7_tensor **out);
    double fd_step;                      /* 0: 1e-3 */
    /* elementwise: |got - want| <= tol * max(|want|, floor), floor 0 meaning 1 */
    double forward_tol, forward_floor;
    double grad_tol, grad_floor;
    int grad_normwise;                   /* instead: max |got - want| <= grad_tol * max |want| */
    uint64_t seed;
    p7_oph_bad bad[P7_OPH_MAX_BAD];
};

/* The test device (P7_DEVICE) with poisoned allocations. */
p7_device *p7_oph_open_device(void);

/* Runs every check above for one row; fails the current cmocka test on a mismatch. */
void p7_oph_run(p7_device *device, const p7_oph_row *row);

/* Runs the rows of `op` among rows[0..count); fails when there is none, so every op of
 * P7_OP_LIST must have a row. */
void p7_oph_run_op(p7_device *device, p7_op_id op, const p7_oph_row *rows, size_t count);

size_t p7_oph_numel(const p7_oph_shape *shape);

#endif
