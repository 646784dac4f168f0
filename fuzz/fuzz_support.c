/* Shared by the fuzz targets and the seed writer (see fuzz_support.h). */
#include "fuzz_support.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

void fuzz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: invariant broken: %s (last p7 error: %s)\n", file, line, what, p7_last_error());
    abort();
}

FILE *fuzz_stream(const uint8_t *data, size_t size)
{
    /* fmemopen may refuse a zero size; an empty file reads the same. */
    FILE *f = size ? fmemopen((void *)data, size, "rb") : fopen("/dev/null", "rb");
    FUZZ_CHECK(f != NULL);
    return f;
}

void fuzz_buffer_open(fuzz_buffer *b)
{
    memset(b, 0, sizeof *b);
    b->f = open_memstream(&b->data, &b->size);
    FUZZ_CHECK(b->f != NULL);
}

void fuzz_buffer_close(fuzz_buffer *b)
{
    if (b->f) fclose(b->f);
    b->f = NULL;
}

void fuzz_buffer_free(fuzz_buffer *b)
{
    fuzz_buffer_close(b);
    free(b->data);
    memset(b, 0, sizeof *b);
}

static const int crash_signals[] = {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE};
static struct sigaction saved[sizeof crash_signals / sizeof crash_signals[0]];

void fuzz_signals_save(void)
{
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        FUZZ_CHECK(sigaction(crash_signals[i], NULL, &saved[i]) == 0);
}

void fuzz_signals_restore(void)
{
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        FUZZ_CHECK(sigaction(crash_signals[i], &saved[i], NULL) == 0);
}

p7_device *fuzz_device(void)
{
    static p7_device *device;
    if (device) return device;
    const char *spec = getenv("P7_DEVICE");
    p7_status st = p7_device_open(spec && *spec ? spec : "pocl", NULL, &device);
    if (st != P7_SUCCESS) {
        fprintf(stderr, "fuzz: cannot open the device: %s\n", p7_last_error());
        abort();
    }
    return device;
}

p7_model *fuzz_model(p7_device *device, uint64_t seed)
{
    p7_model *m = NULL;
    FUZZ_CHECK(p7_model_create(device, 1, seed, &m) == P7_SUCCESS);
    const p7_layer_config conv = {.kind = P7_LAYER_CONV2D, .in = 1, .out = 2, .kernel = 3, .stride = 1, .pad = 1,
                                  .bias = 1};
    const p7_layer_config bn = {.kind = P7_LAYER_BATCHNORM2D, .in = 2, .out = 2, .affine = 1};
    const p7_layer_config fc = {.kind = P7_LAYER_LINEAR, .in = 2, .out = 3, .bias = 1};
    int layer;
    FUZZ_CHECK(p7_model_add_layer(m, "conv", &conv, &layer) == P7_SUCCESS);
    FUZZ_CHECK(p7_model_add_layer(m, "bn", &bn, &layer) == P7_SUCCESS);
    FUZZ_CHECK(p7_model_add_layer(m, "fc", &fc, &layer) == P7_SUCCESS);
    /* Buffers hold their defaults after creation: give every tensor distinct values, so
     * a partial load would show. */
    size_t np = p7_model_param_count(m), nb = p7_model_buffer_count(m);
    for (size_t i = 0; i < np + nb; i++) {
        p7_tensor *t = i < np ? p7_model_param(m, i, NULL) : p7_model_buffer(m, i - np, NULL);
        FUZZ_CHECK(p7_tensor_fill_normal(t, seed, i, 0.5f, 1.0f) == P7_SUCCESS);
    }
    return m;
}

const char *const fuzz_optimizer_names[FUZZ_OPTIMIZERS] = {"sgd", "adam", "ivon"};

const char *fuzz_plugin_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/lib%s.so", P7_FUZZ_PLUGIN_DIR, name);
    return path;
}

p7_optimizer *fuzz_optimizer(p7_model *model, int which)
{
    static const char *const hparams[FUZZ_OPTIMIZERS] = {
        "lr=0.05, momentum=0.9, nesterov=1",
        "lr=0.002, weight_decay=0.01",
        "lr=0.2, ess=1000",
    };
    p7_optimizer_options options = {0};
    options.hparams = hparams[which];
    options.seed = 7;
    p7_optimizer *o = NULL;
    p7_status st = p7_optimizer_create_for_model(model, fuzz_plugin_path(fuzz_optimizer_names[which]), &options, &o);
    if (st != P7_SUCCESS) fprintf(stderr, "fuzz: %s\n", p7_last_error());
    FUZZ_CHECK(st == P7_SUCCESS);
    for (size_t i = 0; i < p7_model_param_count(model); i++)
        for (unsigned s = 0; p7_optimizer_state(o, i, s); s++)
            FUZZ_CHECK(p7_tensor_fill_normal(p7_optimizer_state(o, i, s), 11, i * 8 + s, 0.1f, 1.0f) == P7_SUCCESS);
    return o;
}
