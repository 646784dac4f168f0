/* Every differentiable op of p7, in one list (internal).
 *
 * P7_OP_LIST(X) calls X(id, name) once per op, in the order ops.c defines them. The
 * op ids, the names recorded on the tape (p7_node.op, used in error messages), and
 * the op-test harness's per-op test enumeration are all generated from it, so an op
 * cannot be added to one without the others. Adding an op: add it here, bump the
 * count in the _Static_assert below, and give it a row in the op-test table
 * (tests/test_ops.c fails an op that has none). */
#ifndef P7_OP_LIST_H
#define P7_OP_LIST_H

#define P7_OP_LIST(X)               \
    X(CONV2D, "conv2d")             \
    X(LINEAR, "linear")             \
    X(RELU, "relu")                 \
    X(MAXPOOL2D, "maxpool2d")       \
    X(RESHAPE, "reshape")           \
    X(ADD, "add")                   \
    X(MUL, "mul")                   \
    X(CHANNEL_MUL, "channel_mul")   \
    X(CHANNEL_ADD, "channel_add")   \
    X(TILE_MEMBERS, "tile_members") \
    X(MEMBER_MEAN, "member_mean")   \
    X(ROWS_SLICE, "rows_slice")     \
    X(ROWS_CONCAT, "rows_concat")   \
    X(SOFTMAX, "softmax")           \
    X(LOG_SOFTMAX, "log_softmax")   \
    X(CROSS_ENTROPY, "cross_entropy") \
    X(SUM, "sum")                   \
    X(MEAN, "mean")                 \
    X(BATCHNORM2D, "batchnorm2d")

typedef enum p7_op_id {
#define P7_OP_ENUM(id, name) P7_OP_##id,
    P7_OP_LIST(P7_OP_ENUM)
#undef P7_OP_ENUM
    P7_OP_COUNT
} p7_op_id;

/* Changing the list means updating this count, which is the reminder to give the new
 * op a forward/backward pair in ops.c and a row in the op-test table. */
_Static_assert(P7_OP_COUNT == 19, "P7_OP_LIST changed: update this count, ops.c and the op-test rows");

/* The op's name as the tape records it and error messages print it; NULL for an id
 * outside the list. */
static inline const char *p7_op_name(p7_op_id id)
{
    static const char *const names[P7_OP_COUNT] = {
#define P7_OP_NAME(id, name) name,
        P7_OP_LIST(P7_OP_NAME)
#undef P7_OP_NAME
    };
    return (unsigned)id < P7_OP_COUNT ? names[id] : NULL;
}

#endif
