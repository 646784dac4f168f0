/* CIFAR-10 / CIFAR-100 record files (data_cifar.c). The first byte picks the format
 * (CIFAR-10, or CIFAR-100 with fine, coarse or CIFAR-20 labels); the rest is the
 * file. The load appends to a dataset that already holds one record, so the check
 * covers all-or-nothing: a refused file leaves that record exactly as it was. */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "fuzz_support.h"

static const p7_label_mode modes[3] = {P7_LABELS_FINE, P7_LABELS_COARSE, P7_LABELS_CIFAR20};

static p7_status load(int format, const uint8_t *data, size_t size, p7_dataset *ds)
{
    FILE *f = fuzz_stream(data, size);
    p7_status st = format == 0 ? p7_cifar10_load_stream(f, size, "fuzz input", ds)
                               : p7_cifar100_load_stream(f, size, "fuzz input", modes[format - 1], ds);
    fclose(f);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int format = data[0] % 4;
    data++;
    size--;
    size_t record = format == 0 ? P7_CIFAR10_RECORD : P7_CIFAR100_RECORD;

    /* The record already there: label 3 (valid in every mode) and pixels 0x5a. */
    uint8_t first[P7_CIFAR100_RECORD];
    memset(first, 0x5a, sizeof first);
    memset(first, 3, record - P7_IMAGE_BYTES);
    p7_dataset ds = {0};
    FUZZ_CHECK(load(format, first, record, &ds) == P7_SUCCESS);
    const int classes = ds.classes;
    const int32_t label0 = ds.labels[0];

    p7_status st = load(format, data, size, &ds);
    if (st != P7_SUCCESS) {
        FUZZ_CHECK(p7_last_error()[0] != '\0');
        FUZZ_CHECK(ds.count == 1 && ds.classes == classes && ds.labels[0] == label0);
        for (size_t i = 0; i < P7_IMAGE_BYTES; i++) FUZZ_CHECK(ds.images[i] == 0x5a);
    } else {
        FUZZ_CHECK(size % record == 0 && ds.count == 1 + size / record && ds.classes == classes);
        for (size_t i = 0; i < ds.count; i++) FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < ds.classes);
        for (size_t r = 0; r + 1 < ds.count; r++)
            FUZZ_CHECK(memcmp(ds.images + (r + 1) * P7_IMAGE_BYTES, data + r * record + record - P7_IMAGE_BYTES,
                              P7_IMAGE_BYTES) == 0);
    }
    p7_dataset_free(&ds);
    return 0;
}
