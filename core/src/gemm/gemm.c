/* The p7 GEMM entry point: argument checks, then one of two backends. */
#include <stdio.h>
#include <string.h>

#include "gemm/gemm_internal.h"
#include "runtime/runtime.h"
#include "p7/gemm.h"

p7_gemm_desc p7_gemm_desc_packed(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                                 float beta)
{
    p7_gemm_desc d;
    memset(&d, 0, sizeof d);
    d.trans_a = trans_a;
    d.trans_b = trans_b;
    d.m = m;
    d.n = n;
    d.k = k;
    d.alpha = alpha;
    d.beta = beta;
    d.lda = trans_a ? m : k;
    d.ldb = trans_b ? k : n;
    d.ldc = n;
    return d;
}

/* The matrix as stored is rows x cols with leading dimension ld at element offset off. */
static p7_status check_operand(const char *name, cl_mem mem, size_t rows, size_t cols, size_t ld, size_t off,
                               const p7_gemm_desc *d)
{
    if (!mem) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm: matrix %s is NULL", name);
    if (ld < cols)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "p7_gemm (m=%zu n=%zu k=%zu, trans_a=%d trans_b=%d): ld%c=%zu is smaller than the %zu "
                       "columns of %s as stored",
                       d->m, d->n, d->k, d->trans_a, d->trans_b, name[0] - 'A' + 'a', ld, cols, name);
    size_t bytes = 0;
    P7_CL_TRY(clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof bytes, &bytes, NULL), "p7_gemm: clGetMemObjectInfo");
    size_t need = (off + (rows - 1) * ld + cols) * sizeof(float);
    if (need > bytes)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "p7_gemm (m=%zu n=%zu k=%zu, trans_a=%d trans_b=%d): matrix %s (%zu x %zu, ld %zu, offset "
                       "%zu) needs %zu bytes but its buffer holds %zu",
                       d->m, d->n, d->k, d->trans_a, d->trans_b, name, rows, cols, ld, off, need, bytes);
    return P7_SUCCESS;
}

static p7_status check_desc(const p7_gemm_desc *d, cl_mem a, cl_mem b, cl_mem c)
{
    if (d->m == 0 || d->n == 0 || d->k == 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "p7_gemm: m=%zu n=%zu k=%zu; every size must be >= 1",
                       d->m, d->n, d->k);
    P7_TRY(check_operand("A", a, d->trans_a ? d->k : d->m, d->trans_a ? d->m : d->k, d->lda, d->a_offset, d));
    P7_TRY(check_operand("B", b, d->trans_b ? d->n : d->k, d->trans_b ? d->k : d->n, d->ldb, d->b_offset, d));
    P7_TRY(check_operand("C", c, d->m, d->n, d->ldc, d->c_offset, d));
    return P7_SUCCESS;
}

p7_status p7_gemm_with(p7_device *device, p7_gemm_backend backend, const p7_gemm_desc *desc, cl_mem a,
                       cl_mem b, cl_mem c)
{
    if (!device || !desc) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm: NULL device or descriptor");
    P7_TRY(check_desc(desc, a, b, c));
    if (backend == P7_GEMM_AUTO) backend = device->gemm_backend;
    switch (backend) {
    case P7_GEMM_CLBLAST: return p7_gemm_clblast_run(device, desc, a, b, c);
    case P7_GEMM_P7: return p7_gemm_p7_run(device, desc, a, b, c);
    default: return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm: unknown backend %d", (int)backend);
    }
}

p7_status p7_gemm(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem b, cl_mem c)
{
    return p7_gemm_with(device, P7_GEMM_AUTO, desc, a, b, c);
}

int p7_gemm_takes_packed_b(const p7_device *device, p7_gemm_backend backend)
{
    if (backend == P7_GEMM_AUTO) backend = device ? device->gemm_backend : P7_GEMM_AUTO;
    return backend == P7_GEMM_P7;
}

size_t p7_gemm_packed_b_floats(size_t n, size_t k)
{
    return (n + P7_GEMM_P7_PANEL - 1) / P7_GEMM_P7_PANEL * P7_GEMM_P7_PANEL * k;
}

p7_status p7_gemm_packed_b(p7_device *device, const p7_gemm_desc *desc, cl_mem a, cl_mem bp, size_t bp_offset,
                           cl_mem c)
{
    if (!device || !desc) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm_packed_b: NULL device or descriptor");
    if (!p7_gemm_takes_packed_b(device, P7_GEMM_AUTO))
        return p7_fail(P7_ERROR_UNSUPPORTED, "p7_gemm_packed_b: the %s backend takes no packed B operand",
                       p7_gemm_backend_name(device->gemm_backend));
    if (desc->m == 0 || desc->n == 0 || desc->k == 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "p7_gemm_packed_b: m=%zu n=%zu k=%zu; every size must be >= 1",
                       desc->m, desc->n, desc->k);
    P7_TRY(check_operand("A", a, desc->trans_a ? desc->k : desc->m, desc->trans_a ? desc->m : desc->k, desc->lda,
                         desc->a_offset, desc));
    /* the packed B, seen as one row of its floats */
    size_t floats = p7_gemm_packed_b_floats(desc->n, desc->k);
    P7_TRY(check_operand("B (packed)", bp, 1, floats, floats, bp_offset, desc));
    P7_TRY(check_operand("C", c, desc->m, desc->n, desc->ldc, desc->c_offset, desc));
    return p7_gemm_p7_run_packed_b(device, desc, a, bp, bp_offset, c);
}

size_t p7_gemm_workspace_bytes(p7_device *device, p7_gemm_backend backend, size_t m, size_t n, size_t k,
                               int b_packed)
{
    if (backend != P7_GEMM_P7) return 0;
    p7_gemm_p7_params p;
    if (device && p7_gemm_p7_device_params(device, &p) == P7_SUCCESS)
        return p7_gemm_p7_workspace_bytes(&p, m, n, k, b_packed);
    p7_clear_error();
    return p7_gemm_p7_workspace_bytes(NULL, m, n, k, b_packed);
}

p7_status p7_gemm_packed_a_rows(p7_device *device, int *mr)
{
    if (!device || !mr) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm_packed_a_rows: NULL argument");
    if (!p7_gemm_takes_packed_b(device, P7_GEMM_AUTO))
        return p7_fail(P7_ERROR_UNSUPPORTED, "p7_gemm_packed_a_rows: the %s backend takes no packed operands",
                       p7_gemm_backend_name(device->gemm_backend));
    p7_gemm_p7_params p;
    P7_TRY(p7_gemm_p7_device_params(device, &p));
    *mr = p.mr;
    return P7_SUCCESS;
}

size_t p7_gemm_packed_a_floats(size_t m, size_t k, int mr)
{
    const size_t r = mr > 0 ? (size_t)mr : 1;
    return (m + r - 1) / r * r * k;
}

p7_status p7_gemm_packed_batched(p7_device *device, const p7_gemm_desc *desc, size_t batch, cl_mem ap,
                                 size_t ap_offset, size_t a_stride, cl_mem bp, size_t bp_offset, size_t b_stride,
                                 cl_mem c, size_t c_stride)
{
    if (!device || !desc)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_gemm_packed_batched: NULL device or descriptor");
    int mr = 0;
    P7_TRY(p7_gemm_packed_a_rows(device, &mr));
    if (desc->m == 0 || desc->n == 0 || desc->k == 0 || batch == 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "p7_gemm_packed_batched: m=%zu n=%zu k=%zu batch=%zu; every size must be >= 1", desc->m,
                       desc->n, desc->k, batch);
    const size_t a_floats = p7_gemm_packed_a_floats(desc->m, desc->k, mr);
    const size_t b_floats = p7_gemm_packed_b_floats(desc->n, desc->k);
    if (batch > 1 && (a_stride < a_floats || b_stride < b_floats || c_stride < (desc->m - 1) * desc->ldc + desc->n))
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "p7_gemm_packed_batched (m=%zu n=%zu k=%zu): strides A %zu, B %zu, C %zu overlap the "
                       "products (at least %zu, %zu, %zu)",
                       desc->m, desc->n, desc->k, a_stride, b_stride, c_stride, a_floats, b_floats,
                       (desc->m - 1) * desc->ldc + desc->n);
    /* the last product of each operand, seen as one row of its floats; the first lies below */
    const size_t last = batch - 1;
    P7_TRY(check_operand("A (packed)", ap, 1, a_floats, a_floats, ap_offset + last * a_stride, desc));
    P7_TRY(check_operand("B (packed)", bp, 1, b_floats, b_floats, bp_offset + last * b_stride, desc));
    P7_TRY(check_operand("C", c, desc->m, desc->n, desc->ldc, desc->c_offset + last * c_stride, desc));
    return p7_gemm_p7_run_packed_batched(device, desc, batch, ap, ap_offset, a_stride, bp, bp_offset, b_stride, c,
                                         c_stride);
}
