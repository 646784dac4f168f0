/* A small VGG-style network with BatchNorm and a BatchEnsemble block (M = 2), forward
 * and backward on a fixed batch, against PyTorch (float64) fixtures made by
 * tests/reference/make_golden.py. Every compared tensor must agree to a relative
 * error of 1e-4 (max abs difference over max abs value). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

typedef struct golden { char name[64]; int ndim; int64_t shape[8]; size_t n; float *v; } golden;
static golden fixtures[64];
static size_t fixture_count;

static int read_u32(FILE *f, uint32_t *v)
{
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) return 0;
    *v = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

static void load_fixtures(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/golden_small_vgg_be.bin", getenv("P7_SOURCE_DIR"));
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (regenerate with /usr/bin/python3 tests/reference/make_golden.py)", path);
    char magic[8];
    uint32_t count = 0;
    assert_true(fread(magic, 1, 8, f) == 8 && memcmp(magic, "P7GOLD01", 8) == 0);
    assert_true(read_u32(f, &count) && count <= 64);
    for (uint32_t i = 0; i < count; i++) {
        golden *g = &fixtures[i];
        uint32_t len = 0, ndim = 0, d = 0;
        assert_true(read_u32(f, &len) && len < sizeof g->name);
        assert_true(fread(g->name, 1, len, f) == len);
        g->name[len] = '\0';
        assert_true(read_u32(f, &ndim) && ndim <= 8);
        g->ndim = (int)ndim;
        g->n = 1;
        for (uint32_t k = 0; k < ndim; k++) {
            assert_true(read_u32(f, &d));
            g->shape[k] = d;
            g->n *= d;
        }
        g->v = malloc(g->n * sizeof(float));
        assert_true(fread(g->v, sizeof(float), g->n, f) == g->n); /* little-endian host assumed */
    }
    fixture_count = count;
    fclose(f);
}

static const golden *fixture(const char *name)
{
    for (size_t i = 0; i < fixture_count; i++)
        if (strcmp(fixtures[i].name, name) == 0) return &fixtures[i];
    fail_msg("fixture %s missing", name);
    return NULL;
}

static double compare(const char *name, const p7_tensor *t)
{
    const golden *g = fixture(name);
    assert_int_equal(p7_tensor_numel(t), g->n);
    float *v = malloc(g->n * sizeof *v);
    P7_ASSERT_OK(p7_tensor_download(t, v, g->n));
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < g->n; i++) {
        double d = fabs((double)v[i] - g->v[i]);
        if (!(d <= max_diff)) max_diff = d; /* NaN lands here */
        if (fabs(g->v[i]) > max_ref) max_ref = fabs(g->v[i]);
    }
    free(v);
    double rel = max_diff / (max_ref > 0 ? max_ref : 1.0);
    print_message("  %-22s %6zu values  relative error %.2e\n", name, g->n, rel);
    if (!(rel <= 1e-4)) fail_msg("%s: relative error %.3e > 1e-4", name, rel);
    return rel;
}

static void add(p7_model *m, const char *name, p7_layer_config c)
{
    int id;
    P7_ASSERT_OK(p7_model_add_layer(m, name, &c, &id));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, id, 0, 0));
}

static void test_small_vgg_be_matches_pytorch(void **state)
{
    (void)state;
    load_fixtures();
    p7_device *device = p7_test_open_device(NULL);
    const int M = 2;
    p7_model *m;
    P7_ASSERT_OK(p7_model_create(device, M, 1, &m));
    add(m, "conv1", (p7_layer_config){.kind = P7_LAYER_CONV2D, .in = 3, .out = 8, .kernel = 3, .stride = 1, .pad = 1, .bias = 0});
    add(m, "bn1", (p7_layer_config){.kind = P7_LAYER_BATCHNORM2D, .in = 8, .out = 8, .affine = 1});
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_TILE_MEMBERS, 0, 0, 0));
    add(m, "conv2", (p7_layer_config){.kind = P7_LAYER_BE_CONV2D, .in = 8, .out = 8, .kernel = 3, .stride = 1, .pad = 1,
                                      .has_alpha = 1, .has_gamma = 1, .alpha_init = 1, .gamma_init = 1});
    add(m, "bn2", (p7_layer_config){.kind = P7_LAYER_BE_BATCHNORM2D, .in = 8, .out = 8, .affine = 1});
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MAXPOOL, 0, 2, 2));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_FLATTEN, 0, 0, 0));
    add(m, "fc", (p7_layer_config){.kind = P7_LAYER_BE_LINEAR, .in = 32, .out = 5, .has_alpha = 1, .has_gamma = 1,
                                   .alpha_init = 1, .gamma_init = 1});

    for (size_t i = 0; i < p7_model_param_count(m); i++) {
        const char *name;
        p7_tensor *p = p7_model_param(m, i, &name);
        const golden *g = fixture(name);
        assert_int_equal(p7_tensor_numel(p), g->n);
        P7_ASSERT_OK(p7_tensor_upload(p, g->v, g->n));
    }
    const golden *gx = fixture("x"), *gl = fixture("labels");
    p7_tensor *x;
    P7_ASSERT_OK(p7_tensor_create(device, gx->ndim, gx->shape, &x));
    P7_ASSERT_OK(p7_tensor_upload(x, gx->v, gx->n));
    P7_ASSERT_OK(p7_tensor_set_requires_grad(x, 1));
    /* labels tiled member-major like the inputs */
    int32_t labels[16];
    for (int mm = 0; mm < M; mm++)
        for (size_t i = 0; i < gl->n; i++) labels[mm * gl->n + i] = (int32_t)gl->v[i];
    p7_buffer *lb;
    P7_ASSERT_OK(p7_buffer_alloc(device, sizeof labels, &lb));
    P7_ASSERT_OK(p7_buffer_upload(lb, labels, M * gl->n * sizeof(int32_t)));

    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    p7_tensor *logits, *loss;
    P7_ASSERT_OK(p7_model_forward(m, tape, x, 1, &logits));
    P7_ASSERT_OK(p7_cross_entropy(tape, logits, p7_buffer_mem(lb), 0, &loss));
    P7_ASSERT_OK(p7_tape_backward(tape, loss));

    compare("logits", logits);
    compare("loss", loss);
    for (size_t i = 0; i < p7_model_param_count(m); i++) {
        const char *name;
        p7_tensor *p = p7_model_param(m, i, &name);
        char gname[80];
        snprintf(gname, sizeof gname, "grad.%s", name);
        assert_non_null(p7_tensor_grad(p));
        compare(gname, p7_tensor_grad(p));
    }
    compare("grad.x", p7_tensor_grad(x));
    const char *stats[4] = {"bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"};
    for (int i = 0; i < 4; i++) {
        p7_tensor *b = p7_model_find_buffer(m, stats[i]);
        assert_non_null(b);
        compare(stats[i], b);
    }

    p7_tensor_release(logits);
    p7_tensor_release(loss);
    p7_tensor_release(x);
    p7_buffer_free(lb);
    p7_tape_destroy(tape);
    p7_model_destroy(m);
    p7_device_close(device);
    for (size_t i = 0; i < fixture_count; i++) free(fixtures[i].v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_small_vgg_be_matches_pytorch)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
