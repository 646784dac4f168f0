/* Model state files (nn_state.c), loaded into a small model on the CPU device that
 * is created once. A refused file must leave every parameter and buffer as it was
 * (all or nothing); an accepted one is undone by loading the original state back,
 * so no input leaves state behind for the next. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"

static p7_model *model;
static fuzz_buffer original; /* the model's state file before any input */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_signals_save();
    model = fuzz_model(fuzz_device(), 1);
    fuzz_buffer_open(&original);
    FUZZ_CHECK(p7_model_save_stream(model, original.f, "original") == P7_SUCCESS);
    fuzz_buffer_close(&original);
    fuzz_signals_restore();
    return 0;
}

static int state_is(const fuzz_buffer *expected)
{
    fuzz_buffer now;
    fuzz_buffer_open(&now);
    FUZZ_CHECK(p7_model_save_stream(model, now.f, "now") == P7_SUCCESS);
    fuzz_buffer_close(&now);
    int same = now.size == expected->size && memcmp(now.data, expected->data, now.size) == 0;
    fuzz_buffer_free(&now);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fuzz_stream(data, size);
    p7_status st = p7_model_load_stream(model, f, "fuzz input");
    fclose(f);
    if (st != P7_SUCCESS) {
        FUZZ_CHECK(p7_last_error()[0] != '\0');
        FUZZ_CHECK(state_is(&original));
        return 0;
    }
    FILE *back = fuzz_stream((const uint8_t *)original.data, original.size);
    FUZZ_CHECK(p7_model_load_stream(model, back, "original") == P7_SUCCESS);
    fclose(back);
    return 0;
}
