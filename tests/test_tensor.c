/* Tensors: upload/download round trip, fill, reshape and view rules, bad shapes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

static int setup(void **state)
{
    *state = p7_test_open_device(NULL);
    return 0;
}

static int teardown(void **state)
{
    p7_device_close(*state);
    return 0;
}

static void test_round_trip(void **state)
{
    p7_device *device = *state;
    const int64_t shape[4] = {2, 3, 5, 7};
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, 4, shape, &t));
    assert_int_equal(p7_tensor_ndim(t), 4);
    assert_int_equal(p7_tensor_numel(t), 210);
    assert_int_equal(p7_tensor_dim(t, -1), 7);
    assert_int_equal(p7_tensor_dim(t, 1), 3);
    float in[210], out[210];
    p7_test_fill_uniform(in, 210, 1, -3.0f, 3.0f);
    p7_test_fill_nan(out, 210);
    P7_ASSERT_OK(p7_tensor_upload(t, in, 210));
    P7_ASSERT_OK(p7_tensor_download(t, out, 210));
    assert_memory_equal(in, out, sizeof in);

    P7_ASSERT_OK(p7_tensor_fill(t, 2.5f));
    P7_ASSERT_OK(p7_tensor_download(t, out, 210));
    for (int i = 0; i < 210; i++) assert_true(out[i] == 2.5f);

    assert_int_equal(p7_tensor_upload(t, in, 209), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "[2, 3, 5, 7]"));
    assert_int_equal(p7_tensor_download(t, out, 211), P7_ERROR_INVALID_SHAPE);
    p7_tensor_release(t);
}

static void test_bad_shapes_rejected(void **state)
{
    p7_device *device = *state;
    p7_tensor *t = (p7_tensor *)0x1;
    const int64_t zero[2] = {4, 0};
    assert_int_equal(p7_tensor_create(device, 2, zero, &t), P7_ERROR_INVALID_SHAPE);
    assert_null(t);
    assert_non_null(strstr(p7_last_error(), "axis 1"));
    const int64_t neg[1] = {-3};
    assert_int_equal(p7_tensor_create(device, 1, neg, &t), P7_ERROR_INVALID_SHAPE);
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(p7_tensor_create(device, 9, nine, &t), P7_ERROR_INVALID_SHAPE);
    assert_int_equal(p7_tensor_create(device, 0, nine, &t), P7_ERROR_INVALID_SHAPE);
    const int64_t huge[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 16};
    assert_int_equal(p7_tensor_create(device, 3, huge, &t), P7_ERROR_INVALID_SHAPE);
    assert_int_equal(p7_tensor_create(device, 1, NULL, &t), P7_ERROR_INVALID_ARGUMENT);
}

static void test_reshape_rules(void **state)
{
    p7_device *device = *state;
    const int64_t shape[4] = {4, 3, 2, 2};
    p7_tensor *t, *r = NULL;
    P7_ASSERT_OK(p7_tensor_create(device, 4, shape, &t));
    float in[48], out[48];
    for (int i = 0; i < 48; i++) in[i] = (float)i;
    P7_ASSERT_OK(p7_tensor_upload(t, in, 48));

    const int64_t flat[2] = {4, -1};
    P7_ASSERT_OK(p7_tensor_reshape(t, 2, flat, &r));
    assert_int_equal(p7_tensor_dim(r, 1), 12);
    p7_tensor_release(t); /* the view keeps the storage alive */
    P7_ASSERT_OK(p7_tensor_download(r, out, 48));
    assert_memory_equal(in, out, sizeof in);

    p7_tensor *bad = (p7_tensor *)0x1;
    const int64_t wrong[2] = {5, 10};
    assert_int_equal(p7_tensor_reshape(r, 2, wrong, &bad), P7_ERROR_INVALID_SHAPE);
    assert_null(bad);
    assert_non_null(strstr(p7_last_error(), "[5, 10]"));
    const int64_t two_infer[2] = {-1, -1};
    assert_int_equal(p7_tensor_reshape(r, 2, two_infer, &bad), P7_ERROR_INVALID_SHAPE);
    const int64_t no_fit[2] = {5, -1};
    assert_int_equal(p7_tensor_reshape(r, 2, no_fit, &bad), P7_ERROR_INVALID_SHAPE);
    p7_tensor_release(r);
}

static void test_views_share_storage(void **state)
{
    p7_device *device = *state;
    const int64_t shape[2] = {6, 4};
    p7_tensor *t, *row = NULL;
    P7_ASSERT_OK(p7_tensor_create(device, 2, shape, &t));
    P7_ASSERT_OK(p7_tensor_fill(t, 0.0f));
    const int64_t slice[2] = {2, 4};
    P7_ASSERT_OK(p7_tensor_view(t, 8, 2, slice, &row)); /* rows 2 and 3 */
    assert_int_equal(p7_tensor_offset(row), 8);
    P7_ASSERT_OK(p7_tensor_fill(row, 1.0f));
    float out[24];
    P7_ASSERT_OK(p7_tensor_download(t, out, 24));
    for (int i = 0; i < 24; i++) assert_true(out[i] == ((i >= 8 && i < 16) ? 1.0f : 0.0f));

    float in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, back[8];
    P7_ASSERT_OK(p7_tensor_upload(row, in, 8));
    P7_ASSERT_OK(p7_tensor_download(t, out, 24));
    assert_memory_equal(out + 8, in, sizeof in);
    P7_ASSERT_OK(p7_tensor_download(row, back, 8));
    assert_memory_equal(back, in, sizeof in);

    p7_tensor *bad = (p7_tensor *)0x1;
    assert_int_equal(p7_tensor_view(t, 20, 2, slice, &bad), P7_ERROR_INVALID_SHAPE);
    assert_null(bad);
    assert_non_null(strstr(p7_last_error(), "element 20"));
    assert_int_equal(p7_tensor_view(t, 24, 2, slice, &bad), P7_ERROR_INVALID_SHAPE);

    assert_ptr_equal(p7_tensor_retain(row), row);
    p7_tensor_release(row);
    p7_tensor_release(row);
    p7_tensor_release(t);
    p7_tensor_release(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_shapes_rejected),
        cmocka_unit_test(test_reshape_rules),
        cmocka_unit_test(test_views_share_storage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
