/* Building kernels: a syntax error returns the compiler log and the file name; the
 * embedded kernels build; a missing kernel file or name is a clear error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "p7_internal.h"
#include "p7_test_support.h"

static void test_syntax_error_returns_log(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    const char *broken = "__kernel void broken(__global float *x) { x[0] = 1.0f +; }\n";
    cl_program program = NULL;
    assert_int_equal(p7_program_build_source(device, "kernels/broken_for_test.cl", broken, "", &program),
                     P7_ERROR_KERNEL_BUILD);
    assert_null(program);
    const char *msg = p7_last_error();
    assert_non_null(strstr(msg, "kernels/broken_for_test.cl"));
    assert_non_null(strstr(msg, "compiler log"));
    assert_non_null(strstr(msg, "expected expression")); /* clang's words for "1.0f +;" */
    p7_device_close(device);
}

static void test_embedded_kernels_build(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    cl_kernel k1, k2;
    P7_ASSERT_OK(p7_kernel_get(device, "tensor_fill.cl", NULL, "p7_fill", &k1));
    P7_ASSERT_OK(p7_kernel_get(device, "tensor_fill.cl", NULL, "p7_fill", &k2));
    assert_ptr_equal(k1, k2); /* built once per process */
    assert_int_equal(p7_kernel_get(device, "no_such_file.cl", NULL, "x", &k1), P7_ERROR_KERNEL_NOT_FOUND);
    assert_non_null(strstr(p7_last_error(), "no_such_file.cl"));
    assert_int_equal(p7_kernel_get(device, "tensor_fill.cl", NULL, "p7_no_such_kernel", &k1),
                     P7_ERROR_KERNEL_NOT_FOUND);
    assert_non_null(strstr(p7_last_error(), "p7_no_such_kernel"));
    p7_device_close(device);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax_error_returns_log),
        cmocka_unit_test(test_embedded_kernels_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
