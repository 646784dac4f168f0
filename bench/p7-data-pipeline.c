/* Input pipeline throughput: normalised float images per second delivered into
 * device memory (uploads finished), on real CIFAR-10 when present, else on the
 * synthetic set (and then says so). Also reports the host-only preparation rate of
 * one thread, to show where the time goes.
 *
 *   p7-data-pipeline [--data DIR] [--device SPEC] [--batch N] [--epochs N] [--augment]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p7/data.h"
#include "p7/device.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what, p7_status st)
{
    fprintf(stderr, "p7-data-pipeline: %s: %s (%s)\n", what, p7_last_error(), p7_status_string(st));
    return 1;
}

int main(int argc, char **argv)
{
    const char *data_arg = NULL, *device_spec = NULL;
    size_t batch = 128;
    int epochs = 2, augment = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) data_arg = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device_spec = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) batch = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc) epochs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--augment") == 0) augment = P7_AUGMENT_CROP | P7_AUGMENT_FLIP;
        else {
            fprintf(stderr, "usage: p7-data-pipeline [--data DIR] [--device SPEC] [--batch N] "
                            "[--epochs N] [--augment]\n");
            return 2;
        }
    }
    if (batch == 0 || epochs <= 0) return fprintf(stderr, "p7-data-pipeline: bad --batch/--epochs\n"), 2;

    char root[4096], dir[4096];
    p7_dataset ds = {0};
    p7_status st = p7_data_dir(data_arg, root, sizeof root);
    if (st != P7_SUCCESS) return fail("data dir", st);
    if (p7_cifar10_find(root, dir, sizeof dir) == P7_SUCCESS &&
        p7_cifar10_load(dir, P7_SPLIT_TRAIN, &ds) == P7_SUCCESS) {
        printf("dataset: %s from %s (%zu images)\n", ds.name, dir, ds.count);
    } else {
        st = p7_synthetic_shapes10(50000, 1, P7_SPLIT_TRAIN, &ds);
        if (st != P7_SUCCESS) return fail("synthetic data", st);
        printf("dataset: %s (no CIFAR-10 under %s; built-in synthetic data, %zu images)\n", ds.name, root,
               ds.count);
    }

    p7_device *device;
    st = p7_device_open(device_spec, NULL, &device);
    if (st != P7_SUCCESS) return fail("device", st);
    printf("device: %s\n", p7_device_describe(device));

    p7_pipeline_options o = {0};
    o.batch_size = batch;
    o.shuffle = 1;
    o.seed = 42;
    o.augment = augment;
    o.norm = p7_normalization_cifar10();

    /* Host-only: one thread preparing batches, no upload. */
    float *host = malloc(batch * P7_IMAGE_BYTES * sizeof *host);
    int32_t *labels = malloc(batch * sizeof *labels);
    uint32_t *order = malloc(ds.count * sizeof *order);
    if (!host || !labels || !order) return fprintf(stderr, "p7-data-pipeline: out of memory\n"), 1;
    p7_epoch_permutation(42, 0, order, ds.count);
    double t0 = now();
    size_t host_images = 0;
    for (size_t start = 0; start + batch <= ds.count && host_images < 20000; start += batch) {
        p7_batch_fill(&ds, order, start, batch, &o.norm, augment, 42, 0, host, labels);
        host_images += batch;
    }
    double host_rate = (double)host_images / (now() - t0);

    p7_pipeline *p;
    st = p7_pipeline_create(device, &ds, &o, &p);
    if (st != P7_SUCCESS) return fail("pipeline", st);
    /* One warm-up batch (buffer creation, first-touch) outside the timing. */
    p7_batch b;
    st = p7_pipeline_next(p, &b);
    if (st != P7_SUCCESS) return fail("pipeline next", st);
    p7_device_finish(device);
    size_t images = 0;
    t0 = now();
    for (int e = 0; e < epochs;) {
        st = p7_pipeline_next(p, &b);
        if (st != P7_SUCCESS) return fail("pipeline next", st);
        if (b.count == 0) {
            e++;
            continue;
        }
        images += b.count;
    }
    st = p7_device_finish(device);
    if (st != P7_SUCCESS) return fail("finish", st);
    double seconds = now() - t0;
    double rate = (double)images / seconds;
    p7_pipeline_destroy(p);

    printf("batch %zu, %d epoch(s), augmentation %s, normalisation CIFAR-10\n", batch, epochs,
           augment ? "on" : "off");
    printf("host preparation, 1 thread: %.0f images/s\n", host_rate);
    printf("pipeline into device memory: %zu images in %.3f s = %.0f images/s (%.1f MB/s of float32)"
           " [dataset %s]\n", images, seconds, rate, rate * P7_IMAGE_BYTES * 4 / 1e6, ds.name);
    printf("target >= 20000 images/s: %s\n", rate >= 20000 ? "met" : "NOT met");
    free(host);
    free(labels);
    free(order);
    p7_device_close(device);
    p7_dataset_free(&ds);
    return 0;
}
