/* Bias helpers for linear (core/src/linear.c); the products themselves are p7 GEMMs. */

/* y[r, o] = b[o]: the GEMM then adds x w^T with beta = 1, so the bias costs one write. */
__kernel void linear_bias_rows(__global float *restrict y, const ulong y_off,
                               __global const float *restrict b, const ulong b_off,
                               const uint rows, const uint cols)
{
    const uint i = get_global_id(0);
    if (i >= rows * cols) return;
    y[y_off + i] = b[b_off + i % cols];
}

/* db[o] (+)= sum over rows of dy[r, o]. One work-item per column, rows in order:
 * deterministic, and neighbouring work-items read neighbouring addresses. */
__kernel void linear_bias_grad(__global const float *restrict dy, const ulong dy_off,
                               __global float *restrict db, const ulong db_off, const int acc,
                               const uint rows, const uint cols)
{
    const uint o = get_global_id(0);
    if (o >= cols) return;
    const __global float *p = dy + dy_off + o;
    float s = 0.0f;
    for (uint r = 0; r < rows; ++r) s += p[(ulong)r * cols];
    db[db_off + o] = acc ? db[db_off + o] + s : s;
}
