/* The double-buffered input pipeline.
 *
 * Two slots, each with host staging memory and device memory. A worker thread fills
 * the host side of slot (i+1)%2 while the caller's work on batch i runs. When the
 * caller asks for a batch, its host data is already prepared: the upload is a
 * non-blocking clEnqueueWriteBuffer, so the device queue never stalls on host
 * preparation. The worker only rewrites a slot's host memory after that slot's
 * previous upload event completed (the driver may still be reading it), and the
 * device memory of batch i is rewritten by batch i+2's upload, which the in-order
 * queue orders after everything the caller enqueued for batch i.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/data.h"
#include "tensor/tensor_internal.h"

enum { SLOT_FREE = 0, SLOT_READY = 1, SLOT_HELD = 2 };

typedef struct slot {
    float *host;
    int32_t *labels_host;
    p7_tensor *images;      /* [batch, 3, 32, 32] */
    p7_tensor *view;        /* [count, 3, 32, 32] window handed out */
    p7_buffer *labels;
    cl_event events[2];     /* the last uploads from this slot's host memory */
    int event_count;
    int state;
    size_t count, index;
    uint64_t epoch;
    p7_status status;
    char error[512];
} slot;

struct p7_pipeline {
    p7_device *device;
    const p7_dataset *dataset;
    p7_pipeline_options opt;
    size_t batches;         /* per epoch */
    slot slots[2];

    pthread_t worker;
    int worker_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int quit;

    /* caller side */
    slot *held;             /* the slot of the batch the caller is using */
    uint64_t epoch;
    size_t next_index;
    uint64_t sequence;
};

static void release_events(slot *s)
{
    if (s->event_count > 0) {
        clWaitForEvents((cl_uint)s->event_count, s->events);
        for (int i = 0; i < s->event_count; i++) clReleaseEvent(s->events[i]);
    }
    s->event_count = 0;
}

static void *worker_main(void *arg)
{
    p7_pipeline *p = arg;
    const p7_dataset *ds = p->dataset;
    uint32_t *order = p->opt.shuffle ? malloc(ds->count * sizeof *order) : NULL;
    uint64_t epoch = p->opt.start_epoch;
    size_t b = p->opt.start_batch;
    int first = 1;
    uint64_t seq = 0;
    for (;;) {
        slot *s = &p->slots[seq % 2];
        pthread_mutex_lock(&p->lock);
        while (!p->quit && s->state != SLOT_FREE) pthread_cond_wait(&p->cond, &p->lock);
        int quit = p->quit;
        pthread_mutex_unlock(&p->lock);
        if (quit) break;

        release_events(s);
        p7_status st = P7_SUCCESS;
        if (p->opt.shuffle && !order) {
            st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "pipeline: no host memory for the epoch order");
        } else {
            if ((b == 0 || first) && order) p7_epoch_permutation(p->opt.seed, epoch, order, ds->count);
            first = 0;
            size_t start = b * p->opt.batch_size;
            size_t count = ds->count - start < p->opt.batch_size ? ds->count - start : p->opt.batch_size;
            s->count = count;
            s->index = b;
            s->epoch = epoch;
            st = p7_batch_fill(ds, order, start, count, &p->opt.norm, p->opt.augment, p->opt.seed,
                               epoch, s->host, s->labels_host);
        }
        pthread_mutex_lock(&p->lock);
        s->status = st;
        /* The message lives in this thread's storage; copy it for the caller. */
        if (st != P7_SUCCESS) snprintf(s->error, sizeof s->error, "%s", p7_last_error());
        s->state = SLOT_READY;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);

        seq++;
        if (++b == p->batches) {
            b = 0;
            epoch++;
        }
    }
    free(order);
    return NULL;
}

size_t p7_pipeline_batches_per_epoch(const p7_pipeline *pipeline)
{
    return pipeline ? pipeline->batches : 0;
}

void p7_pipeline_destroy(p7_pipeline *p)
{
    if (!p) return;
    if (p->worker_started) {
        pthread_mutex_lock(&p->lock);
        p->quit = 1;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->worker, NULL);
    }
    for (int i = 0; i < 2; i++) {
        slot *s = &p->slots[i];
        release_events(s);
        p7_tensor_release(s->view);
        p7_tensor_release(s->images);
        p7_buffer_free(s->labels);
        free(s->host);
        free(s->labels_host);
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

p7_status p7_pipeline_create(p7_device *device, const p7_dataset *dataset,
                             const p7_pipeline_options *options, p7_pipeline **out)
{
    if (!device || !dataset || !options || !out)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "pipeline: NULL argument");
    *out = NULL;
    if (options->batch_size == 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "pipeline: batch size is 0");
    if (dataset->count == 0 || !dataset->images || !dataset->labels)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "pipeline: dataset %s is empty", dataset->name);
    if (dataset->count > UINT32_MAX)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "pipeline: dataset %s too large", dataset->name);
    p7_pipeline *p = calloc(1, sizeof *p);
    if (!p) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "pipeline: no host memory");
    p->device = device;
    p->dataset = dataset;
    p->opt = *options;
    if (p->opt.norm.std[0] == 0.0f && p->opt.norm.std[1] == 0.0f && p->opt.norm.std[2] == 0.0f)
        p->opt.norm = p7_normalization_cifar10();
    p->batches = p7_batch_count(dataset->count, options->batch_size, options->drop_last);
    p->epoch = options->start_epoch;
    if (options->start_batch > 0 && options->start_batch >= p->batches) {
        size_t batches = p->batches;
        free(p);
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "pipeline: start batch %zu, but an epoch of %s has %zu batch(es)",
                       options->start_batch, dataset->name, batches);
    }
    p->next_index = options->start_batch;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);

    size_t bs = options->batch_size;
    int64_t shape[4] = {(int64_t)bs, 3, 32, 32};
    for (int i = 0; i < 2; i++) {
        slot *s = &p->slots[i];
        s->host = malloc(bs * P7_IMAGE_BYTES * sizeof(float));
        s->labels_host = malloc(bs * sizeof(int32_t));
        if (!s->host || !s->labels_host) {
            p7_pipeline_destroy(p);
            return p7_fail(P7_ERROR_OUT_OF_MEMORY, "pipeline: no host memory for a batch of %zu", bs);
        }
        p7_status st = p7_tensor_create(device, 4, shape, &s->images);
        if (st == P7_SUCCESS) st = p7_buffer_alloc(device, bs * sizeof(int32_t), &s->labels);
        if (st != P7_SUCCESS) {
            p7_pipeline_destroy(p);
            return st;
        }
    }
    if (p->batches > 0) {
        if (pthread_create(&p->worker, NULL, worker_main, p) != 0) {
            p7_pipeline_destroy(p);
            return p7_fail(P7_ERROR_STATE, "pipeline: cannot start the worker thread");
        }
        p->worker_started = 1;
    }
    *out = p;
    return P7_SUCCESS;
}

p7_status p7_pipeline_next(p7_pipeline *p, p7_batch *batch)
{
    if (!p || !batch) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "pipeline next: NULL argument");
    memset(batch, 0, sizeof *batch);
    /* The previous batch's host memory may now be refilled (after its uploads). */
    if (p->held) {
        pthread_mutex_lock(&p->lock);
        p->held->state = SLOT_FREE;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        p->held = NULL;
    }
    if (p->next_index == p->batches) {
        /* End of epoch: report it once, then continue with the next epoch. */
        batch->epoch = p->epoch;
        batch->index = p->batches;
        p->next_index = 0;
        p->epoch++;
        return P7_SUCCESS;
    }
    slot *s = &p->slots[p->sequence % 2];
    pthread_mutex_lock(&p->lock);
    while (s->state != SLOT_READY) pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    if (s->status != P7_SUCCESS) return p7_fail(s->status, "%s", s->error);

    p7_tensor_release(s->view);
    s->view = NULL;
    cl_command_queue q = p->device->queue;
    size_t bytes = s->count * P7_IMAGE_BYTES * sizeof(float);
    cl_int err = clEnqueueWriteBuffer(q, p7_tensor_mem(s->images), CL_FALSE,
                                      p7_tensor_offset(s->images) * sizeof(float), bytes, s->host, 0,
                                      NULL, &s->events[0]);
    if (err != CL_SUCCESS) return p7_fail_cl(err, "pipeline: uploading a batch of images");
    s->event_count = 1;
    err = clEnqueueWriteBuffer(q, p7_buffer_mem(s->labels), CL_FALSE, 0, s->count * sizeof(int32_t),
                               s->labels_host, 0, NULL, &s->events[1]);
    if (err != CL_SUCCESS) return p7_fail_cl(err, "pipeline: uploading a batch of labels");
    s->event_count = 2;
    /* Start the copies now rather than at the caller's next blocking call. */
    clFlush(q);

    int64_t shape[4] = {(int64_t)s->count, 3, 32, 32};
    if (s->count == p->opt.batch_size) {
        s->view = p7_tensor_retain(s->images);
    } else {
        p7_status st = p7_tensor_view(s->images, 0, 4, shape, &s->view);
        if (st != P7_SUCCESS) return st;
    }
    batch->images = s->view;
    batch->labels = p7_buffer_mem(s->labels);
    batch->labels_host = s->labels_host;
    batch->count = s->count;
    batch->index = s->index;
    batch->epoch = s->epoch;

    /* Held until the next call, so labels_host stays valid while the batch is used. */
    s->state = SLOT_HELD;
    p->held = s;
    p->next_index++;
    p->sequence++;
    return P7_SUCCESS;
}
