/* Host-side batch preparation: augmentation choice, uint8 -> normalised float. This
 * is both the pipeline worker's code and the reference the tests compare against. */
#include <string.h>

#include "p7/data.h"
#include "p7/rng.h"
#include "tensor/tensor_internal.h"

void p7_augment_params(uint64_t seed, uint64_t epoch, uint64_t index, int *dx, int *dy, int *flip)
{
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)epoch,
                       (uint32_t)P7_STREAM_AUGMENT};
    uint32_t out[4];
    p7_philox4x32_10(ctr, key, out);
    *dx = (int)(out[0] % 9) - 4;
    *dy = (int)(out[1] % 9) - 4;
    *flip = (int)(out[2] & 1);
}

void p7_image_to_float(const uint8_t *image, const p7_normalization *norm, int flags, int dx,
                       int dy, int flip, float *out)
{
    if (!(flags & P7_AUGMENT_CROP)) dx = dy = 0;
    if (!(flags & P7_AUGMENT_FLIP)) flip = 0;
    for (int c = 0; c < 3; c++) {
        /* (x/255 - m)/s = x * scale + bias: one multiply-add per pixel. */
        float scale = 1.0f / (255.0f * norm->std[c]);
        float bias = -norm->mean[c] / norm->std[c];
        const uint8_t *plane = image + c * 1024;
        float *o = out + c * 1024;
        if (dx == 0 && dy == 0 && !flip) {
            for (int k = 0; k < 1024; k++) o[k] = (float)plane[k] * scale + bias;
            continue;
        }
        /* Output (y, x) of the crop taken at offset (4+dy, 4+dx) of the padded image is
         * source (y+dy, x+dx); a flip mirrors the cropped image, i.e. x -> 31-x. */
        for (int y = 0; y < 32; y++) {
            int sy = y + dy;
            for (int x = 0; x < 32; x++) {
                int cx = flip ? 31 - x : x;
                int sx = cx + dx;
                int inside = sy >= 0 && sy < 32 && sx >= 0 && sx < 32;
                float v = inside ? (float)plane[sy * 32 + sx] : 0.0f;
                o[y * 32 + x] = v * scale + bias;
            }
        }
    }
}

p7_status p7_batch_fill(const p7_dataset *dataset, const uint32_t *order, size_t start,
                        size_t count, const p7_normalization *norm, int augment_flags,
                        uint64_t seed, uint64_t epoch, float *images, int32_t *labels)
{
    if (!dataset || !norm || !images || !labels)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "batch fill: NULL argument");
    if (start > dataset->count || count > dataset->count - start)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "batch fill: images %zu..%zu outside %s (%zu images)",
                       start, start + count, dataset->name, dataset->count);
    for (int c = 0; c < 3; c++)
        if (!(norm->std[c] > 0.0f))
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "batch fill: std[%d] must be positive", c);
    for (size_t i = 0; i < count; i++) {
        size_t idx = order ? order[start + i] : start + i;
        if (idx >= dataset->count)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "batch fill: order entry %zu is %zu, outside %s",
                           start + i, idx, dataset->name);
        int dx = 0, dy = 0, flip = 0;
        if (augment_flags) p7_augment_params(seed, epoch, idx, &dx, &dy, &flip);
        p7_image_to_float(dataset->images + idx * P7_IMAGE_BYTES, norm, augment_flags, dx, dy, flip,
                          images + i * P7_IMAGE_BYTES);
        labels[i] = dataset->labels[idx];
    }
    return P7_SUCCESS;
}
