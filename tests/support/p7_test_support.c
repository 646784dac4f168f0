#include "p7_test_support.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void p7_test_assert_ok(p7_status st, const char *what, const char *file, int line)
{
    if (st == P7_SUCCESS) return;
    print_error("%s:%d: %s returned %s: %s\n", file, line, what, p7_status_string(st), p7_last_error());
    _fail(file, line);
}

p7_device *p7_test_open_device(const p7_device_options *options)
{
    p7_device *device = NULL;
    p7_status st = p7_device_open(getenv("P7_DEVICE"), options, &device);
    if (st != P7_SUCCESS) {
        print_error("cannot open the test device '%s': %s: %s\n", getenv("P7_DEVICE") ? getenv("P7_DEVICE") : "",
                    p7_status_string(st), p7_last_error());
        fail();
    }
    return device;
}

void p7_test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17; /* xorshift64: enough for test data */
        x[i] = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
    }
}

void p7_test_fill_nan(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

void p7_test_gemm_reference(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
                            const float *a, size_t lda, const float *b, size_t ldb, double beta,
                            double *c, size_t ldc)
{
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (size_t p = 0; p < k; p++) {
                double av = trans_a ? a[p * lda + i] : a[i * lda + p];
                double bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                acc += av * bv;
            }
            c[i * ldc + j] = alpha * acc + (beta == 0.0 ? 0.0 : beta * c[i * ldc + j]);
        }
    }
}

p7_tensor *p7_test_tensor(p7_device *device, int ndim, const int64_t *shape, const float *host)
{
    p7_tensor *t = NULL;
    p7_test_assert_ok(p7_tensor_create(device, ndim, shape, &t), "p7_tensor_create", __FILE__, __LINE__);
    size_t n = p7_tensor_numel(t);
    float *nan = NULL;
    if (!host) {
        nan = malloc(n * sizeof *nan);
        if (!nan) fail_msg("out of host memory");
        p7_test_fill_nan(nan, n);
    }
    p7_test_assert_ok(p7_tensor_upload(t, host ? host : nan, n), "p7_tensor_upload", __FILE__, __LINE__);
    free(nan);
    return t;
}

float *p7_test_download(const p7_tensor *tensor)
{
    size_t n = p7_tensor_numel(tensor);
    float *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) fail_msg("out of host memory");
    p7_test_assert_ok(p7_tensor_download(tensor, h, n), "p7_tensor_download", __FILE__, __LINE__);
    return h;
}

p7_tensor *p7_test_upload(p7_device *device, const float *host, size_t n)
{
    int64_t shape[1] = {(int64_t)n};
    p7_tensor *t = NULL;
    p7_test_assert_ok(p7_tensor_create(device, 1, shape, &t), "p7_tensor_create", __FILE__, __LINE__);
    p7_test_assert_ok(p7_tensor_upload(t, host, n), "p7_tensor_upload", __FILE__, __LINE__);
    return t;
}

const char *p7_test_plugin(const char *name)
{
    static char path[4096];
    const char *dir = getenv("P7_BUILD_DIR");
    if (!dir) return name;
    snprintf(path, sizeof path, "%s/plugins/lib%s.so", dir, name);
    return path;
}

int p7_test_setup_device(void **state)
{
    *state = p7_test_open_device(NULL);
    return 0;
}

int p7_test_teardown_device(void **state)
{
    p7_device_close(*state);
    return 0;
}

p7_tensor *p7_test_view(p7_device *device, int ndim, const int64_t *shape, size_t offset, const float *host)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    const int64_t total = (int64_t)(n + offset + 7);
    p7_tensor *backing, *view;
    p7_test_assert_ok(p7_tensor_create(device, 1, &total, &backing), "p7_tensor_create", __FILE__, __LINE__);
    p7_test_assert_ok(p7_tensor_fill(backing, NAN), "p7_tensor_fill", __FILE__, __LINE__);
    p7_test_assert_ok(p7_tensor_view(backing, offset, ndim, shape, &view), "p7_tensor_view", __FILE__, __LINE__);
    p7_tensor_release(backing);
    if (host) p7_test_assert_ok(p7_tensor_upload(view, host, n), "p7_tensor_upload", __FILE__, __LINE__);
    return view;
}

double *p7_test_to_double(const float *f, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) fail_msg("out of host memory");
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

void p7_test_assert_close(const char *what, const float *got, const double *ref, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++) {
        if (!(fabs((double)got[i] - ref[i]) <= tol * fmax(1.0, fabs(ref[i])))) {
            print_error("%s[%zu]: got %.9g, expected %.9g\n", what, i, (double)got[i], ref[i]);
            fail();
        }
    }
}

void p7_test_assert_normwise(const char *what, const float *got, const double *ref, size_t n, double tol)
{
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e == e)) e = INFINITY;
        if (e > err) err = e;
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    if (!(err <= tol * (scale > 0 ? scale : 1.0))) {
        print_error("%s: normwise error %g (scale %g) exceeds %g\n", what, err, scale, tol);
        fail();
    }
}

int p7_test_remove_tree(const char *dir)
{
    char cmd[4200];
    if (!dir || !*dir || strchr(dir, '\'') || snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir) >= (int)sizeof cmd)
        return -1;
    return system(cmd) == 0 ? 0 : -1;
}
