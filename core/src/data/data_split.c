/* Subsets, the seeded train/validation split, epoch orders and dataset statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/data.h"
#include "p7/rng.h"
#include "tensor/tensor_internal.h"

static p7_status copy_names(const p7_dataset *src, p7_dataset *dst)
{
    if (!src->class_names) return P7_SUCCESS;
    dst->class_names = malloc((size_t)src->classes * sizeof *dst->class_names);
    if (!dst->class_names) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "dataset: no memory for names");
    memcpy(dst->class_names, src->class_names, (size_t)src->classes * sizeof *dst->class_names);
    return P7_SUCCESS;
}

p7_status p7_dataset_subset(const p7_dataset *source, const uint32_t *indices, size_t count,
                            const char *name, p7_dataset *out)
{
    if (!source || !out || (count > 0 && !indices))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "dataset subset: NULL argument");
    p7_dataset ds = {0};
    snprintf(ds.name, sizeof ds.name, "%s", name ? name : source->name);
    ds.synthetic = source->synthetic;
    ds.classes = source->classes;
    ds.count = count;
    ds.images = malloc(count ? count * P7_IMAGE_BYTES : 1);
    ds.labels = malloc(count ? count * sizeof *ds.labels : 1);
    if (!ds.images || !ds.labels) {
        p7_dataset_free(&ds);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "dataset subset: no memory for %zu images", count);
    }
    for (size_t i = 0; i < count; i++) {
        if (indices[i] >= source->count) {
            size_t bad = indices[i];
            p7_dataset_free(&ds);
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "dataset subset of %s: index %zu at %zu is "
                           "outside 0..%zu", source->name, bad, i, source->count - 1);
        }
        memcpy(ds.images + i * P7_IMAGE_BYTES, source->images + (size_t)indices[i] * P7_IMAGE_BYTES,
               P7_IMAGE_BYTES);
        ds.labels[i] = source->labels[indices[i]];
    }
    p7_status st = copy_names(source, &ds);
    if (st != P7_SUCCESS) {
        p7_dataset_free(&ds);
        return st;
    }
    p7_dataset_free(out);
    *out = ds;
    return P7_SUCCESS;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

p7_status p7_dataset_split(const p7_dataset *source, size_t validation_count, uint64_t seed,
                           p7_dataset *train, p7_dataset *validation)
{
    if (!source || !train || !validation || train == validation)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "dataset split: NULL or aliased argument");
    if (validation_count >= source->count)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "dataset split of %s: validation size %zu leaves "
                       "no training images (dataset has %zu)", source->name, validation_count,
                       source->count);
    if (source->count > UINT32_MAX)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "dataset split: too many images");
    uint32_t *perm = malloc(source->count * sizeof *perm);
    if (!perm) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "dataset split: no memory");
    p7_rng rng;
    p7_rng_init(&rng, seed, P7_STREAM_SPLIT);
    p7_rng_permutation(&rng, perm, source->count);
    /* Ascending order inside each part keeps the parts independent of the epoch order
     * that is applied later and makes them easy to compare against the source. */
    qsort(perm, validation_count, sizeof *perm, cmp_u32);
    qsort(perm + validation_count, source->count - validation_count, sizeof *perm, cmp_u32);

    char base[P7_DATA_NAME_MAX];
    snprintf(base, sizeof base, "%s", source->name);
    size_t len = strlen(base);
    if (len >= 6 && strcmp(base + len - 6, "-train") == 0) base[len - 6] = '\0';
    char name[P7_DATA_NAME_MAX + 8];
    p7_dataset t = {0}, v = {0};
    snprintf(name, sizeof name, "%s-train", base);
    p7_status st = p7_dataset_subset(source, perm + validation_count,
                                     source->count - validation_count, name, &t);
    if (st == P7_SUCCESS) {
        snprintf(name, sizeof name, "%s-val", base);
        st = p7_dataset_subset(source, perm, validation_count, name, &v);
    }
    free(perm);
    if (st != P7_SUCCESS) {
        p7_dataset_free(&t);
        p7_dataset_free(&v);
        return st;
    }
    p7_dataset_free(train);
    p7_dataset_free(validation);
    *train = t;
    *validation = v;
    return P7_SUCCESS;
}

void p7_epoch_permutation(uint64_t seed, uint64_t epoch, uint32_t *perm, size_t n)
{
    p7_rng rng;
    p7_rng_init(&rng, seed, P7_STREAM_SHUFFLE ^ (epoch << 40));
    p7_rng_permutation(&rng, perm, n);
}

size_t p7_batch_count(size_t n, size_t batch_size, int drop_last)
{
    if (batch_size == 0) return 0;
    return drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
}

p7_status p7_dataset_class_counts(const p7_dataset *dataset, size_t *counts, size_t capacity)
{
    if (!dataset || !counts || capacity < (size_t)dataset->classes)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "class counts: NULL argument or capacity below %d",
                       dataset ? dataset->classes : 0);
    memset(counts, 0, (size_t)dataset->classes * sizeof *counts);
    for (size_t i = 0; i < dataset->count; i++) {
        int32_t l = dataset->labels[i];
        if (l < 0 || l >= dataset->classes)
            return p7_fail(P7_ERROR_FORMAT, "%s: image %zu has label %d, outside 0..%d", dataset->name,
                           i, (int)l, dataset->classes - 1);
        counts[l]++;
    }
    return P7_SUCCESS;
}

p7_status p7_dataset_channel_stats(const p7_dataset *dataset, double mean[3], double std[3])
{
    if (!dataset || !mean || !std || dataset->count == 0)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "channel stats: NULL argument or empty dataset");
    for (int c = 0; c < 3; c++) {
        /* Integer sums are exact: 50,000 * 1024 * 255^2 fits easily in 64 bits. */
        uint64_t sum = 0, sq = 0;
        for (size_t i = 0; i < dataset->count; i++) {
            const uint8_t *p = dataset->images + i * P7_IMAGE_BYTES + (size_t)c * 1024;
            uint32_t s = 0, q = 0;
            for (int k = 0; k < 1024; k++) {
                s += p[k];
                q += (uint32_t)p[k] * p[k];
            }
            sum += s;
            sq += q;
        }
        double n = (double)dataset->count * 1024.0;
        double m = (double)sum / n;
        double var = (double)sq / n - m * m;
        mean[c] = m / 255.0;
        std[c] = sqrt(var > 0 ? var : 0) / 255.0;
    }
    return P7_SUCCESS;
}

p7_normalization p7_normalization_cifar10(void)
{
    p7_normalization n = {{0.4914f, 0.4822f, 0.4465f}, {0.2023f, 0.1994f, 0.2010f}};
    return n;
}

p7_normalization p7_normalization_cifar100(void)
{
    p7_normalization n = {{0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}};
    return n;
}

p7_normalization p7_normalization_identity(void)
{
    p7_normalization n = {{0.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f}};
    return n;
}
