/* Seeded random fills on the device (kernels/rng_philox.cl). */
#include "tensor/tensor_internal.h"
#include "runtime/p7_kernels.h"

static p7_status fill_words(p7_tensor *t, uint64_t seed, uint64_t stream, cl_int kind, float a, float b,
                            const char *label)
{
    if (!t) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL tensor", label);
    cl_kernel k;
    P7_TRY(p7_kernel_get(t->device, &p7_kernels_rng_philox, NULL, "rng_philox_fill_random_words", &k));
    cl_mem mem = p7_tensor_mem(t);
    cl_ulong offset = t->offset, count = t->numel, s = seed, st = stream;
    P7_TRY(P7_SET_ARGS(k, label, P7_ARG(mem), P7_ARG(offset), P7_ARG(count), P7_ARG(s), P7_ARG(st), P7_ARG(kind),
                       P7_ARG(a), P7_ARG(b)));
    size_t global = (t->numel + 3) / 4;
    return p7_launch(t->device, k, 1, &global, NULL, label);
}

p7_status p7_tensor_fill_uniform(p7_tensor *t, uint64_t seed, uint64_t stream, float low, float high)
{
    if (!(low <= high))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tensor_fill_uniform: low %g > high %g", low, high);
    return fill_words(t, seed, stream, 0, low, high, "fill_uniform");
}

p7_status p7_tensor_fill_sign(p7_tensor *t, uint64_t seed, uint64_t stream, float p_plus)
{
    if (!(p_plus >= 0.0f && p_plus <= 1.0f))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tensor_fill_sign: probability %g is outside [0, 1]", p_plus);
    return fill_words(t, seed, stream, 1, p_plus, 0.0f, "fill_sign");
}

/* Elements per work-item of rng_philox_fill_normal (kernels/rng_philox.cl). */
enum { NORMALS_PER_ITEM = 32 };

p7_status p7_fill_normal_mem(p7_device *device, cl_mem mem, uint64_t offset, uint64_t count, uint64_t seed,
                             uint64_t stream, float mean, float std, const char *label)
{
    if (count == 0) return P7_SUCCESS;
    cl_kernel k;
    P7_TRY(p7_kernel_get(device, &p7_kernels_rng_philox, NULL, "rng_philox_fill_normal", &k));
    cl_ulong off = offset, n = count, s = seed, st = stream;
    P7_TRY(P7_SET_ARGS(k, label, P7_ARG(mem), P7_ARG(off), P7_ARG(n), P7_ARG(s), P7_ARG(st), P7_ARG(mean),
                       P7_ARG(std)));
    size_t global = (size_t)((count + NORMALS_PER_ITEM - 1) / NORMALS_PER_ITEM);
    return p7_launch(device, k, 1, &global, NULL, label);
}

p7_status p7_tensor_fill_normal(p7_tensor *t, uint64_t seed, uint64_t stream, float mean, float std)
{
    if (!t) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tensor_fill_normal: NULL tensor");
    if (!(std >= 0.0f)) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_tensor_fill_normal: std %g < 0", std);
    return p7_fill_normal_mem(t->device, p7_tensor_mem(t), t->offset, t->numel, seed, stream, mean, std,
                              "fill_normal");
}
