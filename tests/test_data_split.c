/* Split, epoch order, batching, normalisation, augmentation and the synthetic set:
 * reproducible for a seed, nothing lost or duplicated, numbers as a double-precision
 * computation here says. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7/data.h"
#include "p7_test_support.h"

/* Image i carries its index in its first 3 bytes, so every image is unique and
 * traceable; the rest is a pseudo-random pattern. */
static void make_dataset(p7_dataset *ds, size_t n, int classes)
{
    memset(ds, 0, sizeof *ds);
    snprintf(ds->name, sizeof ds->name, "toy-train");
    ds->count = n;
    ds->classes = classes;
    ds->images = malloc(n * P7_IMAGE_BYTES);
    ds->labels = malloc(n * sizeof *ds->labels);
    assert_non_null(ds->images);
    assert_non_null(ds->labels);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        uint8_t *img = ds->images + i * P7_IMAGE_BYTES;
        for (size_t k = 0; k < P7_IMAGE_BYTES; k++) {
            x = x * 1664525u + 1013904223u;
            img[k] = (uint8_t)(x >> 24);
        }
        img[0] = (uint8_t)i;
        img[1] = (uint8_t)(i >> 8);
        img[2] = (uint8_t)(i >> 16);
        ds->labels[i] = (int32_t)(i % (size_t)classes);
    }
}

static size_t index_of(const uint8_t *img) { return img[0] | (size_t)img[1] << 8 | (size_t)img[2] << 16; }

static void test_split(void **state)
{
    (void)state;
    p7_dataset all, t1 = {0}, v1 = {0}, t2 = {0}, v2 = {0}, t3 = {0}, v3 = {0};
    make_dataset(&all, 5000, 10);
    P7_ASSERT_OK(p7_dataset_split(&all, 500, P7_SPLIT_SEED, &t1, &v1));
    P7_ASSERT_OK(p7_dataset_split(&all, 500, P7_SPLIT_SEED, &t2, &v2));
    P7_ASSERT_OK(p7_dataset_split(&all, 500, 7, &t3, &v3));
    assert_int_equal(t1.count, 4500);
    assert_int_equal(v1.count, 500);
    assert_string_equal(t1.name, "toy-train");
    assert_string_equal(v1.name, "toy-val");
    /* Same seed, same split; another seed, another split. */
    assert_memory_equal(t1.images, t2.images, t1.count * P7_IMAGE_BYTES);
    assert_memory_equal(v1.images, v2.images, v1.count * P7_IMAGE_BYTES);
    assert_true(memcmp(v1.images, v3.images, v1.count * P7_IMAGE_BYTES) != 0);
    /* Every image exactly once across the two parts, with its own label and pixels. */
    char *seen = calloc(all.count, 1);
    for (int part = 0; part < 2; part++) {
        const p7_dataset *d = part ? &v1 : &t1;
        size_t prev = 0;
        for (size_t i = 0; i < d->count; i++) {
            const uint8_t *img = d->images + i * P7_IMAGE_BYTES;
            size_t idx = index_of(img);
            assert_true(idx < all.count);
            assert_int_equal(seen[idx], 0);
            seen[idx] = 1;
            assert_int_equal(d->labels[i], all.labels[idx]);
            assert_memory_equal(img, all.images + idx * P7_IMAGE_BYTES, P7_IMAGE_BYTES);
            if (i > 0) assert_true(idx > prev); /* ascending within a part */
            prev = idx;
        }
    }
    for (size_t i = 0; i < all.count; i++) assert_int_equal(seen[i], 1);
    free(seen);
    assert_int_equal(p7_dataset_split(&all, 5000, 1, &t3, &v3), P7_ERROR_INVALID_ARGUMENT);
    p7_dataset *ds[] = {&all, &t1, &v1, &t2, &v2, &t3, &v3};
    for (size_t i = 0; i < 7; i++) p7_dataset_free(ds[i]);
}

static void test_epoch_order(void **state)
{
    (void)state;
    enum { N = 1000 };
    uint32_t a[N], b[N], c[N];
    p7_epoch_permutation(42, 3, a, N);
    p7_epoch_permutation(42, 3, b, N);
    p7_epoch_permutation(42, 4, c, N);
    assert_memory_equal(a, b, sizeof a);
    assert_true(memcmp(a, c, sizeof a) != 0);
    char seen[N] = {0};
    for (int i = 0; i < N; i++) {
        assert_true(a[i] < N);
        assert_int_equal(seen[a[i]], 0);
        seen[a[i]] = 1;
    }
    assert_int_equal(p7_batch_count(45000, 128, 0), 352);
    assert_int_equal(p7_batch_count(45000, 128, 1), 351);
    assert_int_equal(p7_batch_count(10000, 128, 0), 79);
    assert_int_equal(p7_batch_count(256, 128, 0), 2);
    assert_int_equal(p7_batch_count(256, 128, 1), 2);
    assert_int_equal(p7_batch_count(100, 128, 1), 0);
}

static void test_stats_and_normalisation(void **state)
{
    (void)state;
    p7_dataset ds;
    make_dataset(&ds, 300, 10);
    double mean[3], std[3];
    P7_ASSERT_OK(p7_dataset_channel_stats(&ds, mean, std));
    for (int c = 0; c < 3; c++) {
        double s = 0, q = 0, n = 300.0 * 1024;
        for (size_t i = 0; i < 300; i++)
            for (int k = 0; k < 1024; k++) s += ds.images[i * 3072 + (size_t)c * 1024 + (size_t)k] / 255.0;
        double m = s / n;
        for (size_t i = 0; i < 300; i++)
            for (int k = 0; k < 1024; k++) {
                double d = ds.images[i * 3072 + (size_t)c * 1024 + (size_t)k] / 255.0 - m;
                q += d * d;
            }
        assert_true(fabs(mean[c] - m) < 1e-12);
        assert_true(fabs(std[c] - sqrt(q / n)) < 1e-9);
    }

    /* Each float equals (x/255 - mean)/std to float precision, in CHW order. */
    p7_normalization norm = p7_normalization_cifar10();
    assert_true(fabsf(norm.std[0] - 0.2023f) < 1e-7f && fabsf(norm.mean[2] - 0.4465f) < 1e-7f);
    p7_normalization n100 = p7_normalization_cifar100();
    assert_true(fabsf(n100.mean[0] - 0.5071f) < 1e-7f && fabsf(n100.std[2] - 0.2762f) < 1e-7f);
    uint32_t order[300];
    p7_epoch_permutation(9, 0, order, 300);
    float *x = malloc(300 * 3072 * sizeof *x);
    int32_t labels[300];
    P7_ASSERT_OK(p7_batch_fill(&ds, order, 0, 300, &norm, 0, 0, 0, x, labels));
    for (size_t i = 0; i < 300; i++) {
        assert_int_equal(labels[i], ds.labels[order[i]]);
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 1024; k++) {
                double want = (ds.images[order[i] * 3072 + (size_t)c * 1024 + (size_t)k] / 255.0 - norm.mean[c]) / norm.std[c];
                double got = x[i * 3072 + (size_t)c * 1024 + (size_t)k];
                if (fabs(got - want) > 2e-6 * (1 + fabs(want))) fail_msg("image %zu c %d k %d: %g vs %g", i, c, k, got, want);
            }
    }
    /* Normalising with the data's own statistics gives mean 0, std 1 per channel. */
    p7_normalization own;
    for (int c = 0; c < 3; c++) {
        own.mean[c] = (float)mean[c];
        own.std[c] = (float)std[c];
    }
    P7_ASSERT_OK(p7_batch_fill(&ds, NULL, 0, 300, &own, 0, 0, 0, x, labels));
    for (int c = 0; c < 3; c++) {
        double s = 0, q = 0;
        for (size_t i = 0; i < 300; i++)
            for (int k = 0; k < 1024; k++) {
                double v = x[i * 3072 + (size_t)c * 1024 + (size_t)k];
                s += v;
                q += v * v;
            }
        double m = s / (300.0 * 1024), sd = sqrt(q / (300.0 * 1024) - m * m);
        assert_true(fabs(m) < 1e-4);
        assert_true(fabs(sd - 1.0) < 1e-4);
    }
    assert_int_equal(p7_batch_fill(&ds, NULL, 290, 20, &norm, 0, 0, 0, x, labels), P7_ERROR_INVALID_ARGUMENT);
    free(x);
    p7_dataset_free(&ds);
}

static void test_augmentation(void **state)
{
    (void)state;
    int flips = 0, hist[9] = {0};
    for (uint64_t i = 0; i < 9000; i++) {
        int dx, dy, flip, dx2, dy2, flip2;
        p7_augment_params(42, 1, i, &dx, &dy, &flip);
        p7_augment_params(42, 1, i, &dx2, &dy2, &flip2);
        assert_true(dx == dx2 && dy == dy2 && flip == flip2);
        assert_true(dx >= -4 && dx <= 4 && dy >= -4 && dy <= 4);
        flips += flip;
        hist[dx + 4]++;
    }
    assert_true(flips > 4200 && flips < 4800);
    for (int k = 0; k < 9; k++) assert_true(hist[k] > 850 && hist[k] < 1150);

    /* Crop (dx, dy) of the zero-padded image then a flip, against an explicit
     * 40x40 padded copy built here. */
    p7_dataset ds;
    make_dataset(&ds, 1, 1);
    p7_normalization id = p7_normalization_identity();
    float out[3072];
    const int cases[4][3] = {{2, -1, 1}, {-4, 4, 0}, {0, 0, 1}, {3, 3, 0}};
    for (int t = 0; t < 4; t++) {
        int dx = cases[t][0], dy = cases[t][1], flip = cases[t][2];
        p7_image_to_float(ds.images, &id, P7_AUGMENT_CROP | P7_AUGMENT_FLIP, dx, dy, flip, out);
        for (int c = 0; c < 3; c++) {
            static uint8_t pad[40][40];
            memset(pad, 0, sizeof pad);
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) pad[y + 4][x + 4] = ds.images[c * 1024 + y * 32 + x];
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) {
                    int cx = flip ? 31 - x : x;
                    float want = pad[y + 4 + dy][cx + 4 + dx] / 255.0f;
                    assert_true(fabsf(out[c * 1024 + y * 32 + x] - want) < 1e-6f);
                }
        }
    }
    /* Flags off: the parameters are ignored. */
    p7_image_to_float(ds.images, &id, 0, 3, 3, 1, out);
    for (int k = 0; k < 3072; k++) assert_true(fabsf(out[k] - ds.images[k] / 255.0f) < 1e-6f);
    p7_dataset_free(&ds);
}

static void test_synthetic(void **state)
{
    (void)state;
    p7_dataset a = {0}, b = {0}, t = {0};
    P7_ASSERT_OK(p7_synthetic_shapes10(500, 1, P7_SPLIT_TRAIN, &a));
    P7_ASSERT_OK(p7_synthetic_shapes10(200, 1, P7_SPLIT_TRAIN, &b));
    P7_ASSERT_OK(p7_synthetic_shapes10(200, 1, P7_SPLIT_TEST, &t));
    assert_string_equal(a.name, "synthetic-shapes10-train");
    assert_string_equal(t.name, "synthetic-shapes10-test");
    assert_int_equal(a.synthetic, 1);
    assert_int_equal(a.classes, 10);
    /* Image i is the same whatever the count; test images differ from train. */
    assert_memory_equal(a.images, b.images, 200 * P7_IMAGE_BYTES);
    assert_memory_equal(a.labels, b.labels, 200 * sizeof(int32_t));
    assert_true(memcmp(a.images, t.images, 200 * P7_IMAGE_BYTES) != 0);
    size_t counts[10];
    P7_ASSERT_OK(p7_dataset_class_counts(&a, counts, 10));
    for (int c = 0; c < 10; c++) assert_int_equal(counts[c], 50);
    /* No two images alike, and images use a good part of the value range. */
    for (size_t i = 1; i < a.count; i++)
        assert_true(memcmp(a.images, a.images + i * P7_IMAGE_BYTES, P7_IMAGE_BYTES) != 0);
    double mean[3], std[3];
    P7_ASSERT_OK(p7_dataset_channel_stats(&a, mean, std));
    for (int c = 0; c < 3; c++) assert_true(mean[c] > 0.3 && mean[c] < 0.7 && std[c] > 0.15);
    p7_dataset_free(&a);
    p7_dataset_free(&b);
    p7_dataset_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_epoch_order),
        cmocka_unit_test(test_stats_and_normalisation),
        cmocka_unit_test(test_augmentation),
        cmocka_unit_test(test_synthetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
