/* Early stopping on the validation loss, and the device-side weight snapshot that lets
 * it restore the best epoch's weights without a file or a host round trip. */
#include <math.h>
#include <stdlib.h>

#include "p7/train.h"
#include "runtime/runtime.h"
#include "tensor/tensor_internal.h"

void p7_early_stopping_init(p7_early_stopping_state *s)
{
    if (!s) return;
    s->best_loss = INFINITY;
    s->best_epoch = 0;
    s->bad_epochs = 0;
    s->stopped = 0;
}

int p7_early_stopping_observe(p7_early_stopping_state *s, int patience, double min_delta, int epoch, double val_loss)
{
    if (!s) return 0;
    /* written so that NaN compares false: a NaN loss is never an improvement */
    if (val_loss < s->best_loss - min_delta) {
        s->best_loss = val_loss;
        s->best_epoch = epoch;
        s->bad_epochs = 0;
        return 1;
    }
    s->bad_epochs++;
    if (patience > 0 && s->bad_epochs >= patience) s->stopped = 1;
    return 0;
}

struct p7_weights_snapshot {
    p7_device *device;
    size_t count;
    p7_tensor **tensors; /* retained: parameters, then buffers */
    p7_buffer **copies;
    int taken;
};

void p7_weights_snapshot_destroy(p7_weights_snapshot *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->count; i++) {
        p7_tensor_release(s->tensors ? s->tensors[i] : NULL);
        p7_buffer_free(s->copies ? s->copies[i] : NULL);
    }
    free(s->tensors);
    free(s->copies);
    free(s);
}

p7_status p7_weights_snapshot_create(p7_model *model, p7_weights_snapshot **out)
{
    if (!model || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_weights_snapshot_create: NULL argument");
    *out = NULL;
    size_t np = p7_model_param_count(model), nb = p7_model_buffer_count(model);
    p7_weights_snapshot *s = calloc(1, sizeof *s);
    if (s) {
        s->tensors = calloc(np + nb ? np + nb : 1, sizeof *s->tensors);
        s->copies = calloc(np + nb ? np + nb : 1, sizeof *s->copies);
    }
    if (!s || !s->tensors || !s->copies) {
        p7_weights_snapshot_destroy(s);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_weights_snapshot_create: out of host memory");
    }
    for (size_t i = 0; i < np + nb; i++) {
        p7_tensor *t = i < np ? p7_model_param(model, i, NULL) : p7_model_buffer(model, i - np, NULL);
        s->tensors[s->count++] = p7_tensor_retain(t);
        s->device = p7_tensor_device(t);
        p7_status st = p7_buffer_alloc(s->device, p7_tensor_numel(t) * sizeof(float), &s->copies[i]);
        if (st != P7_SUCCESS) {
            p7_weights_snapshot_destroy(s);
            return st;
        }
    }
    *out = s;
    return P7_SUCCESS;
}

p7_status p7_weights_snapshot_take(p7_weights_snapshot *s)
{
    if (!s) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_weights_snapshot_take: NULL snapshot");
    for (size_t i = 0; i < s->count; i++) {
        p7_tensor *t = s->tensors[i];
        P7_TRY(p7_buffer_copy(s->device, p7_tensor_mem(t), p7_tensor_offset(t) * sizeof(float), s->copies[i], 0,
                              p7_tensor_numel(t) * sizeof(float)));
    }
    s->taken = 1;
    return P7_SUCCESS;
}

p7_status p7_weights_snapshot_restore(p7_weights_snapshot *s)
{
    if (!s) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_weights_snapshot_restore: NULL snapshot");
    if (!s->taken) return p7_fail(P7_ERROR_STATE, "p7_weights_snapshot_restore: no snapshot was taken yet");
    for (size_t i = 0; i < s->count; i++) {
        p7_tensor *t = s->tensors[i];
        P7_TRY(p7_buffer_copy(s->device, p7_buffer_mem(s->copies[i]), 0, t->storage->buffer,
                              p7_tensor_offset(t) * sizeof(float), p7_tensor_numel(t) * sizeof(float)));
    }
    return P7_SUCCESS;
}

p7_status p7_weights_snapshot_swap(p7_weights_snapshot *s)
{
    if (!s) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_weights_snapshot_swap: NULL snapshot");
    size_t largest = 0;
    for (size_t i = 0; i < s->count; i++)
        if (p7_tensor_numel(s->tensors[i]) > largest) largest = p7_tensor_numel(s->tensors[i]);
    if (largest == 0) {
        s->taken = 1;
        return P7_SUCCESS;
    }
    p7_buffer *scratch = NULL;
    P7_TRY(p7_buffer_alloc(s->device, largest * sizeof(float), &scratch));
    p7_status st = P7_SUCCESS;
    /* model -> scratch, copy -> model, scratch -> copy; the in-order queue keeps the three apart */
    for (size_t i = 0; i < s->count && st == P7_SUCCESS; i++) {
        p7_tensor *t = s->tensors[i];
        size_t offset = p7_tensor_offset(t) * sizeof(float), bytes = p7_tensor_numel(t) * sizeof(float);
        st = p7_buffer_copy(s->device, p7_tensor_mem(t), offset, scratch, 0, bytes);
        if (st == P7_SUCCESS) st = p7_buffer_copy(s->device, p7_buffer_mem(s->copies[i]), 0, t->storage->buffer, offset, bytes);
        if (st == P7_SUCCESS) st = p7_buffer_copy(s->device, p7_buffer_mem(scratch), 0, s->copies[i], 0, bytes);
    }
    if (st == P7_SUCCESS) st = p7_device_finish(s->device); /* the scratch buffer is freed next */
    p7_buffer_free(scratch);
    if (st == P7_SUCCESS) s->taken = 1;
    return st;
}
