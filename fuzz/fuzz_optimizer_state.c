/* Optimizer state files (optimizer_instance.c): the first byte picks the optimizer
 * (SGD, Adam, IVON, each a plugin with its own blob), the rest is the file. The
 * optimizers sit on a small model on the CPU device, created once. A refused file
 * must leave hyperparameters, slots and the plugin's blob as they were (compared
 * through a fresh save); an accepted one is undone by loading the original back. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"

static p7_model *model;
static p7_optimizer *optimizers[FUZZ_OPTIMIZERS];
static fuzz_buffer originals[FUZZ_OPTIMIZERS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_signals_save();
    model = fuzz_model(fuzz_device(), 1);
    for (int i = 0; i < FUZZ_OPTIMIZERS; i++) {
        optimizers[i] = fuzz_optimizer(model, i);
        fuzz_buffer_open(&originals[i]);
        FUZZ_CHECK(p7_optimizer_save_stream(optimizers[i], originals[i].f) == P7_SUCCESS);
        fuzz_buffer_close(&originals[i]);
    }
    fuzz_signals_restore();
    return 0;
}

static int state_is(p7_optimizer *o, const fuzz_buffer *expected)
{
    fuzz_buffer now;
    fuzz_buffer_open(&now);
    FUZZ_CHECK(p7_optimizer_save_stream(o, now.f) == P7_SUCCESS);
    fuzz_buffer_close(&now);
    int same = now.size == expected->size && memcmp(now.data, expected->data, now.size) == 0;
    fuzz_buffer_free(&now);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int which = data[0] % FUZZ_OPTIMIZERS;
    p7_optimizer *o = optimizers[which];
    FILE *f = fuzz_stream(data + 1, size - 1);
    p7_status st = p7_optimizer_load_stream(o, f);
    fclose(f);
    if (st != P7_SUCCESS) {
        FUZZ_CHECK(p7_last_error()[0] != '\0');
        FUZZ_CHECK(state_is(o, &originals[which]));
        return 0;
    }
    FILE *back = fuzz_stream((const uint8_t *)originals[which].data, originals[which].size);
    FUZZ_CHECK(p7_optimizer_load_stream(o, back) == P7_SUCCESS);
    fclose(back);
    FUZZ_CHECK(state_is(o, &originals[which]));
    return 0;
}
