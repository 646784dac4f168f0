/* Shared helpers for the cmocka tests: the test device, host references, poison. */
#ifndef P7_TEST_SUPPORT_H
#define P7_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "p7/p7.h"

/* Opens the device named by P7_DEVICE (ctest sets it to "pocl"); fails the test with
 * p7's message when that is impossible. */
p7_device *p7_test_open_device(const p7_device_options *options);

/* For a test file whose helpers use a file-scope `device`: declares it, and the cmocka
 * group `setup` and `teardown` that open it (p7_test_open_device(NULL)) and close it. */
#define P7_TEST_FILE_DEVICE                                                                    \
    static p7_device *device;                                                                  \
    static int setup(void **state)                                                             \
    {                                                                                          \
        (void)state;                                                                           \
        device = p7_test_open_device(NULL);                                                    \
        return device ? 0 : -1;                                                                \
    }                                                                                          \
    static int teardown(void **state)                                                          \
    {                                                                                          \
        (void)state;                                                                           \
        p7_device_close(device);                                                               \
        return 0;                                                                              \
    }

/* For a test file that writes files: declares a file-scope `dir`, and the cmocka group
 * `setup` and `teardown` that make it (a fresh /tmp/<prefix>-XXXXXX) and remove it with
 * its contents. */
#define P7_TEST_FILE_TEMP_DIR(prefix)                                                          \
    static char dir[64];                                                                       \
    static int setup(void **state)                                                             \
    {                                                                                          \
        (void)state;                                                                           \
        snprintf(dir, sizeof dir, "/tmp/%s-XXXXXX", (prefix));                                 \
        return mkdtemp(dir) ? 0 : -1;                                                          \
    }                                                                                          \
    static int teardown(void **state)                                                          \
    {                                                                                          \
        (void)state;                                                                           \
        return p7_test_remove_tree(dir);                                                       \
    }

/* rm -rf of a folder this test made (its name came from mkdtemp); 0 on success. */
int p7_test_remove_tree(const char *dir);

/* cmocka group setup/teardown: *state is the test device (p7_test_open_device(NULL)). */
int p7_test_setup_device(void **state);
int p7_test_teardown_device(void **state);

/* Fails the current test with the status name and p7_last_error() unless st == 0. */
#define P7_ASSERT_OK(call) p7_test_assert_ok((call), #call, __FILE__, __LINE__)
void p7_test_assert_ok(p7_status st, const char *what, const char *file, int line);

/* Deterministic uniform values in [lo, hi) from a seed (host only). */
void p7_test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);

/* A host buffer or device tensor full of quiet NaNs, so skipped writes show. */
void p7_test_fill_nan(float *x, size_t n);

/* A new tensor holding `host` (numel floats), or quiet NaNs when host is NULL. Fails
 * the test on error. */
p7_tensor *p7_test_tensor(p7_device *device, int ndim, const int64_t *shape, const float *host);

/* A view at element `offset` of a larger NaN-filled tensor, so kernels that ignore the
 * view's offset, or write past its end, read or leave NaN; holding `host` unless NULL. */
p7_tensor *p7_test_view(p7_device *device, int ndim, const int64_t *shape, size_t offset, const float *host);

/* A malloc'd double copy of f[0..n) (free it). */
double *p7_test_to_double(const float *f, size_t n);

/* Elementwise: |got - ref| <= tol * max(1, |ref|), NaN failing. */
void p7_test_assert_close(const char *what, const float *got, const double *ref, size_t n, double tol);

/* Normwise: max |got - ref| <= tol * max |ref| (tol alone when ref is all zero), NaN failing. */
void p7_test_assert_normwise(const char *what, const float *got, const double *ref, size_t n, double tol);

/* The tensor's values in a malloc'd array (free it). Fails the test on error. */
float *p7_test_download(const p7_tensor *tensor);
/* A new 1-D tensor of n floats copied from `host`. Fails the test on error. */
p7_tensor *p7_test_upload(p7_device *device, const float *host, size_t n);

/* The build tree's plugin file for a short name: $P7_BUILD_DIR/plugins/lib<name>.so
 * (ctest sets P7_BUILD_DIR); the bare name when it is unset. Valid until the next call. */
const char *p7_test_plugin(const char *name);

/* Row-major float64 reference: C = alpha*op(A)*op(B) + beta*C (beta==0 ignores C). */
void p7_test_gemm_reference(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
                            const float *a, size_t lda, const float *b, size_t ldb, double beta,
                            double *c, size_t ldc);

#endif
