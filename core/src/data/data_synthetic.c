/* The built-in "synthetic-shapes10" dataset: used when no real data is present, so
 * that every app still runs end to end. Ten shape classes drawn with random
 * position, size, colours and pixel noise. Each image depends only on (seed, part,
 * index), so any subset or count reproduces the same images. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/data.h"
#include "p7/rng.h"
#include "tensor/tensor_internal.h"

static const char *const shape_names[10] = {"disc",    "square",  "triangle", "ring",   "cross",
                                            "hstripes", "vstripes", "checker", "diagonal", "twodiscs"};

/* 1 if pixel offset (dx, dy) from the centre lies on shape `cls` of radius r. */
static int on_shape(int cls, float dx, float dy, float r)
{
    float ax = fabsf(dx), ay = fabsf(dy);
    float d = sqrtf(dx * dx + dy * dy);
    int in_box = ax < r && ay < r;
    switch (cls) {
    case 0: return d < r;
    case 1: return ax < 0.8f * r && ay < 0.8f * r;
    case 2: return dy > -r && dy < r && ax < (dy + r) * 0.5f;
    case 3: return d < r && d > 0.55f * r;
    case 4: return (ax < 0.3f * r && ay < r) || (ay < 0.3f * r && ax < r);
    case 5: return in_box && ((int)floorf((dy + r) / 2.0f) % 2 == 0);
    case 6: return in_box && ((int)floorf((dx + r) / 2.0f) % 2 == 0);
    case 7: return in_box && (((int)floorf((dx + r) / 3.0f) + (int)floorf((dy + r) / 3.0f)) % 2 == 0);
    case 8: return in_box && fabsf(dx - dy) < 1.6f;
    default: {
        float ex = dx + 0.5f * r, fx = dx - 0.5f * r, rr = 0.4f * r;
        return ex * ex + dy * dy < rr * rr || fx * fx + dy * dy < rr * rr;
    }
    }
}

static void draw_image(uint64_t seed, int part, uint64_t index, uint8_t *img, int32_t *label)
{
    p7_rng rng;
    p7_rng_init(&rng, seed, ((uint64_t)P7_STREAM_SYNTHETIC << 32) ^ ((uint64_t)part << 31) ^ index);
    int cls = (int)(index % 10);
    float cx = 10.0f + 12.0f * p7_rng_uniform(&rng);
    float cy = 10.0f + 12.0f * p7_rng_uniform(&rng);
    float r = 6.0f + 4.0f * p7_rng_uniform(&rng);
    int bg[3], fg[3];
    for (int c = 0; c < 3; c++) {
        bg[c] = (int)p7_rng_below(&rng, 256);
        /* At least 70 levels apart per channel, so the shape is always visible. */
        fg[c] = (bg[c] + 70 + (int)p7_rng_below(&rng, 117)) % 256;
    }
    uint32_t noise = 0;
    for (int y = 0; y < 32; y++) {
        for (int x = 0; x < 32; x++) {
            int on = on_shape(cls, (float)x + 0.5f - cx, (float)y + 0.5f - cy, r);
            for (int c = 0; c < 3; c++) {
                int k = (y * 32 + x) * 3 + c;
                if (k % 4 == 0) noise = p7_rng_u32(&rng);
                int n = (int)((noise >> (8 * (k % 4))) & 0xff) % 33 - 16;
                int v = (on ? fg[c] : bg[c]) + n;
                img[c * 1024 + y * 32 + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    *label = cls;
}

p7_status p7_synthetic_shapes10(size_t count, uint64_t seed, p7_split_part part, p7_dataset *out)
{
    if (!out || count == 0)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: count must be positive", P7_SYNTHETIC_NAME);
    if (count > (1u << 31))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: count %zu too large", P7_SYNTHETIC_NAME, count);
    p7_dataset ds = {0};
    snprintf(ds.name, sizeof ds.name, "%s-%s", P7_SYNTHETIC_NAME, part == P7_SPLIT_TRAIN ? "train" : "test");
    ds.synthetic = 1;
    ds.classes = 10;
    ds.count = count;
    ds.images = malloc(count * P7_IMAGE_BYTES);
    ds.labels = malloc(count * sizeof *ds.labels);
    ds.class_names = calloc(10, sizeof *ds.class_names);
    if (!ds.images || !ds.labels || !ds.class_names) {
        p7_dataset_free(&ds);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: no host memory for %zu images", P7_SYNTHETIC_NAME, count);
    }
    for (int c = 0; c < 10; c++) snprintf(ds.class_names[c], P7_CLASS_NAME_MAX, "%s", shape_names[c]);
    for (size_t i = 0; i < count; i++)
        draw_image(seed, part == P7_SPLIT_TRAIN ? 0 : 1, i, ds.images + i * P7_IMAGE_BYTES, &ds.labels[i]);
    p7_dataset_free(out);
    *out = ds;
    return P7_SUCCESS;
}
