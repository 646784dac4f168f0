#include "p7_op_harness.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tensor/tensor_internal.h"
#include "p7_test_support.h"

size_t p7_oph_numel(const p7_oph_shape *shape)
{
    if (shape->ndim == 0) return 0;
    size_t n = 1;
    for (int i = 0; i < shape->ndim; i++) n *= (size_t)shape->dims[i];
    return n;
}

p7_device *p7_oph_open_device(void)
{
    p7_device_options options;
    memset(&options, 0, sizeof options);
    options.poison_allocations = 1;
    return p7_test_open_device(&options);
}

/* One row's host side: inputs in float (what the device gets) and double (what the
 * reference and the finite differences use), r, and the reference output. */
typedef struct host_case {
    const p7_oph_row *row;
    size_t n[P7_OPH_MAX_INPUTS], ny;
    float *f[P7_OPH_MAX_INPUTS], *rf;
    double *d[P7_OPH_MAX_INPUTS], *r, *y, *scratch;
    double *fd[P7_OPH_MAX_INPUTS]; /* dL/d input, for the inputs in grad_inputs */
} host_case;

static void *alloc_or_fail(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) fail_msg("out of host memory");
    return p;
}

static double objective(host_case *hc)
{
    hc->row->reference(hc->row, (const double *const *)hc->d, hc->scratch);
    double l = 0.0;
    for (size_t i = 0; i < hc->ny; i++) l += hc->r[i] * hc->scratch[i];
    return l;
}

static void host_prepare(host_case *hc, const p7_oph_row *row)
{
    memset(hc, 0, sizeof *hc);
    hc->row = row;
    for (int i = 0; i < P7_OPH_MAX_INPUTS; i++) {
        hc->n[i] = p7_oph_numel(&row->in[i]);
        if (!hc->n[i]) continue;
        float lo = row->lo[i], hi = row->hi[i];
        if (lo == 0.0f && hi == 0.0f) lo = -1.0f, hi = 1.0f;
        hc->f[i] = alloc_or_fail(hc->n[i] * sizeof(float));
        p7_test_fill_uniform(hc->f[i], hc->n[i], row->seed * 8 + (uint64_t)i, lo, hi);
        if (row->prepare) row->prepare(row, i, hc->f[i], hc->n[i]);
        hc->d[i] = alloc_or_fail(hc->n[i] * sizeof(double));
        for (size_t j = 0; j < hc->n[i]; j++) hc->d[i][j] = hc->f[i][j];
    }
    hc->ny = p7_oph_numel(&row->out);
    hc->rf = alloc_or_fail(hc->ny * sizeof(float));
    p7_test_fill_uniform(hc->rf, hc->ny, row->seed * 8 + 7, -1.0f, 1.0f);
    hc->r = alloc_or_fail(hc->ny * sizeof(double));
    for (size_t j = 0; j < hc->ny; j++) hc->r[j] = hc->rf[j];
    hc->y = alloc_or_fail(hc->ny * sizeof(double));
    hc->scratch = alloc_or_fail(hc->ny * sizeof(double));
    row->reference(row, (const double *const *)hc->d, hc->y);

    const double h = row->fd_step > 0 ? row->fd_step : 1e-3;
    for (int i = 0; i < P7_OPH_MAX_INPUTS; i++) {
        if (!(row->grad_inputs & (1u << i)) || !hc->n[i]) continue;
        hc->fd[i] = alloc_or_fail(hc->n[i] * sizeof(double));
        for (size_t j = 0; j < hc->n[i]; j++) {
            const double keep = hc->d[i][j];
            hc->d[i][j] = keep + h;
            const double up = objective(hc);
            hc->d[i][j] = keep - h;
            const double down = objective(hc);
            hc->d[i][j] = keep;
            hc->fd[i][j] = (up - down) / (2.0 * h);
        }
    }
}

static void host_release(host_case *hc)
{
    for (int i = 0; i < P7_OPH_MAX_INPUTS; i++) {
        free(hc->f[i]);
        free(hc->d[i]);
        free(hc->fd[i]);
    }
    free(hc->rf);
    free(hc->r);
    free(hc->y);
    free(hc->scratch);
}

/* got against scale * want, elementwise or normwise; NaN (an element the op left
 * unwritten on a poisoned device) always fails. */
static void expect_close(const p7_oph_row *row, const char *what, const float *got, const double *want,
                         double scale, size_t n, double tol, double floor, int normwise)
{
    if (floor == 0.0) floor = 1.0;
    double worst = 0.0, magnitude = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double w = scale * want[i], err = fabs((double)got[i] - w);
        if (normwise) {
            if (!(err <= worst)) worst = err == err ? err : INFINITY;
            if (fabs(w) > magnitude) magnitude = fabs(w);
        } else if (!(err <= tol * fmax(fabs(w), floor))) {
            fail_msg("%s (%s): %s[%zu] is %.9g, expected %.9g%s", p7_op_name(row->op), row->label, what, i,
                     (double)got[i], w, got[i] == got[i] ? "" : " (NaN: an element left unwritten?)");
        }
    }
    if (normwise && !(worst <= tol * (magnitude > 0 ? magnitude : 1.0)))
        fail_msg("%s (%s): %s differs from the expected values by %.3g normwise (largest %.3g, tolerance %.3g)",
                 p7_op_name(row->op), row->label, what, worst, magnitude, tol);
}

static cl_mem upload_labels(p7_device *device, const p7_oph_row *row, p7_buffer **buffer)
{
    *buffer = NULL;
    if (!row->labels) return NULL;
    const size_t n = (size_t)row->in[0].dims[0];
    P7_ASSERT_OK(p7_buffer_alloc(device, n * sizeof(int), buffer));
    assert_int_equal(clEnqueueWriteBuffer(device->queue, p7_buffer_mem(*buffer), CL_TRUE, 0, n * sizeof(int),
                                          row->labels, 0, NULL, NULL),
                     CL_SUCCESS);
    return p7_buffer_mem(*buffer);
}

static void make_inputs(p7_device *device, const host_case *hc, p7_oph_call *call)
{
    const p7_oph_row *row = hc->row;
    for (int i = 0; i < P7_OPH_MAX_INPUTS; i++) {
        call->in[i] = NULL;
        if (!hc->n[i]) continue;
        call->in[i] = p7_test_tensor(device, row->in[i].ndim, row->in[i].dims, hc->f[i]);
        if (row->grad_inputs & (1u << i)) P7_ASSERT_OK(p7_tensor_set_requires_grad(call->in[i], 1));
    }
}

static void release_inputs(p7_oph_call *call)
{
    for (int i = 0; i < P7_OPH_MAX_INPUTS; i++) p7_tensor_release(call->in[i]);
}

static void expect_shape(const p7_oph_row *row, const p7_tensor *y)
{
    const int64_t *dims = p7_tensor_shape(y);
    int same = p7_tensor_ndim(y) == row->out.ndim;
    for (int i = 0; same && i < row->out.ndim; i++) same = dims[i] == row->out.dims[i];
    if (!same) {
        char got[128], want[128];
        fail_msg("%s (%s): output shape %s, expected %s", p7_op_name(row->op), row->label,
                 p7_shape_format(p7_tensor_ndim(y), dims, got, sizeof got),
                 p7_shape_format(row->out.ndim, row->out.dims, want, sizeof want));
    }
}

/* L = sum(r * y) on the tape, then backward. */
static void backward_of(p7_device *device, p7_tape *tape, const host_case *hc, p7_tensor *y)
{
    p7_tensor *r = p7_test_tensor(device, hc->row->out.ndim, hc->row->out.dims, hc->rf), *prod, *loss;
    P7_ASSERT_OK(p7_mul(tape, y, r, &prod));
    P7_ASSERT_OK(p7_sum(tape, prod, &loss));
    P7_ASSERT_OK(p7_tape_backward(tape, loss));
    p7_tensor_release(r);
    p7_tensor_release(prod);
    p7_tensor_release(loss);
}

static void expect_gradients(const host_case *hc, const p7_oph_call *call, double times, const char *phase)
{
    const p7_oph_row *row = hc->row;
    for (int i = 0; i < P7_OPH_MAX_INPUTS; i++) {
        if (!hc->fd[i]) continue;
        const p7_tensor *g = p7_tensor_grad(call->in[i]);
        if (!g) fail_msg("%s (%s): input %d has no gradient after backward", p7_op_name(row->op), row->label, i);
        float *got = p7_test_download(g);
        char what[96];
        snprintf(what, sizeof what, "%sgradient of input %d", phase, i);
        expect_close(row, what, got, hc->fd[i], times, hc->n[i], row->grad_tol, row->grad_floor, row->grad_normwise);
        free(got);
    }
}

static void check_forward_and_gradients(p7_device *device, const host_case *hc, cl_mem labels)
{
    const p7_oph_row *row = hc->row;
    p7_oph_call call = {.row = row, .ints = row->ints, .labels = labels};
    P7_ASSERT_OK(p7_tape_create(device, &call.tape));
    make_inputs(device, hc, &call);
    p7_tensor *y = NULL;
    P7_ASSERT_OK(row->call(&call, &y));
    expect_shape(row, y);
    float *got = p7_test_download(y);
    expect_close(row, "forward", got, hc->y, 1.0, hc->ny, row->forward_tol, row->forward_floor, 0);
    free(got);
    if (row->grad_inputs) {
        backward_of(device, call.tape, hc, y);
        expect_gradients(hc, &call, 1.0, "");
    }
    p7_tensor_release(y);
    release_inputs(&call);
    p7_tape_destroy(call.tape);
}

/* The op used twice in one graph: the second backward of each input adds to the first. */
static void check_accumulate(p7_device *device, const host_case *hc, cl_mem labels)
{
    const p7_oph_row *row = hc->row;
    if (!row->grad_inputs) return;
    p7_oph_call call = {.row = row, .ints = row->ints, .labels = labels};
    P7_ASSERT_OK(p7_tape_create(device, &call.tape));
    make_inputs(device, hc, &call);
    p7_tensor *y1 = NULL, *y2 = NULL, *both = NULL;
    P7_ASSERT_OK(row->call(&call, &y1));
    P7_ASSERT_OK(row->call(&call, &y2));
    P7_ASSERT_OK(p7_add(call.tape, y1, y2, &both));
    backward_of(device, call.tape, hc, both);
    expect_gradients(hc, &call, 2.0, "accumulated ");
    p7_tensor_release(y1);
    p7_tensor_release(y2);
    p7_tensor_release(both);
    release_inputs(&call);
    p7_tape_destroy(call.tape);
}

static void check_bad_shapes(p7_device *device, const p7_oph_row *row, cl_mem labels)
{
    const char *name = p7_op_name(row->op);
    for (int b = 0; b < P7_OPH_MAX_BAD && row->bad[b].in[0].ndim; b++) {
        const p7_oph_bad *bad = &row->bad[b];
        p7_oph_call call = {.row = row, .ints = bad->has_ints ? bad->ints : row->ints, .labels = labels};
        for (int i = 0; i < P7_OPH_MAX_INPUTS; i++)
            call.in[i] = bad->in[i].ndim ? p7_test_tensor(device, bad->in[i].ndim, bad->in[i].dims, NULL) : NULL;
        p7_tensor *y = (p7_tensor *)&call; /* must come back NULL */
        const p7_status st = row->call(&call, &y);
        if (st != P7_ERROR_INVALID_SHAPE)
            fail_msg("%s (%s): bad shape set %d gave %s, expected P7_ERROR_INVALID_SHAPE (%s)", name, row->label, b,
                     p7_status_string(st), p7_last_error());
        if (y) fail_msg("%s (%s): bad shape set %d left a non-NULL output", name, row->label, b);
        if (!strstr(p7_last_error(), name))
            fail_msg("%s (%s): the message for bad shape set %d does not name the op: %s", name, row->label, b,
                     p7_last_error());
        if (bad->expect && !strstr(p7_last_error(), bad->expect))
            fail_msg("%s (%s): the message for bad shape set %d lacks \"%s\": %s", name, row->label, b, bad->expect,
                     p7_last_error());
        release_inputs(&call);
    }
}

void p7_oph_run(p7_device *device, const p7_oph_row *row)
{
    host_case hc;
    host_prepare(&hc, row);
    p7_buffer *label_buffer;
    cl_mem labels = upload_labels(device, row, &label_buffer);
    check_forward_and_gradients(device, &hc, labels);
    check_accumulate(device, &hc, labels);
    check_bad_shapes(device, row, labels);
    p7_buffer_free(label_buffer);
    host_release(&hc);
}

void p7_oph_run_op(p7_device *device, p7_op_id op, const p7_oph_row *rows, size_t count)
{
    size_t ran = 0;
    for (size_t i = 0; i < count; i++) {
        if (rows[i].op != op) continue;
        p7_oph_run(device, &rows[i]);
        ran++;
    }
    if (!ran) fail_msg("op %s has no row in the op-test table: every op of P7_OP_LIST needs one", p7_op_name(op));
}
