/* Filling tensors with a constant. */
__kernel void tensor_fill(__global float *x, const ulong offset, const ulong count, const float value)
{
    const size_t i = get_global_id(0);
    if (i < count) x[offset + i] = value;
}
