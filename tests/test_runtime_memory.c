/* The caching allocator: reuse, peak accounting, and the free-cache-and-retry path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

static void test_size_classes(void **state)
{
    (void)state;
    assert_int_equal(p7_memory_size_class(1), 256);
    assert_int_equal(p7_memory_size_class(256), 256);
    assert_int_equal(p7_memory_size_class(257), 512);
    assert_int_equal(p7_memory_size_class(1000000), 1u << 20);
    /* above 1 MiB: 8 steps per octave, never more than 12.5% waste */
    for (size_t bytes = (1u << 20) + 1; bytes < (64u << 20); bytes = bytes * 5 / 4 + 12345) {
        size_t c = p7_memory_size_class(bytes);
        assert_true(c >= bytes);
        assert_true((double)c <= (double)bytes * 1.125 + 1.0);
    }
}

static void test_reuse_and_peak(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    p7_memory_stats s0, s;
    P7_ASSERT_OK(p7_memory_get_stats(device, &s0));
    assert_int_equal(s0.bytes_in_use, 0);

    p7_buffer *a, *b, *c;
    P7_ASSERT_OK(p7_buffer_alloc(device, 100000, &a));
    P7_ASSERT_OK(p7_buffer_alloc(device, 3000000, &b));
    assert_true(p7_buffer_size(a) >= 100000);
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.bytes_in_use, p7_buffer_size(a) + p7_buffer_size(b));
    assert_int_equal(s.peak_bytes_in_use, s.bytes_in_use);
    assert_int_equal(s.buffers_created, 2);
    uint64_t peak = s.peak_bytes_in_use;

    cl_mem a_mem = p7_buffer_mem(a);
    p7_buffer_free(a);
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.bytes_in_use, p7_buffer_size(b));
    assert_int_equal(s.bytes_cached, p7_memory_size_class(100000));
    assert_int_equal(s.peak_bytes_in_use, peak);

    /* same size class: served from the cache, no new OpenCL buffer */
    P7_ASSERT_OK(p7_buffer_alloc(device, 90000, &c));
    assert_ptr_equal(p7_buffer_mem(c), a_mem);
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.cache_hits, 1);
    assert_int_equal(s.buffers_created, 2);
    assert_int_equal(s.bytes_cached, 0);

    p7_buffer_free(b);
    p7_buffer_free(c);
    p7_memory_reset_peak(device);
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.peak_bytes_in_use, 0);
    P7_ASSERT_OK(p7_memory_release_cache(device));
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.bytes_cached, 0);

    /* tensors allocate through the same allocator */
    const int64_t shape[2] = {64, 1000};
    p7_tensor *t;
    P7_ASSERT_OK(p7_tensor_create(device, 2, shape, &t));
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.bytes_in_use, p7_memory_size_class(64 * 1000 * sizeof(float)));
    p7_tensor_release(t);
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.bytes_in_use, 0);
    p7_device_close(device);
}

static void test_flush_cache_and_retry(void **state)
{
    (void)state;
    p7_device_options opts;
    memset(&opts, 0, sizeof opts);
    opts.memory_limit = 8u << 20; /* pretend the device has 8 MiB */
    p7_device *device = p7_test_open_device(&opts);
    p7_memory_stats s;

    p7_buffer *a, *b, *c;
    P7_ASSERT_OK(p7_buffer_alloc(device, 5u << 20, &a));
    p7_buffer_free(a); /* 5 MiB now cached */
    /* 4 MiB more fits only once the cached 5 MiB block is released */
    P7_ASSERT_OK(p7_buffer_alloc(device, 4u << 20, &b));
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.cache_flushes, 1);
    assert_int_equal(s.bytes_cached, 0);
    assert_int_equal(s.bytes_in_use, 4u << 20);

    /* nothing left to free: a clear error with the sizes, and b is untouched */
    c = (p7_buffer *)0x1;
    assert_int_equal(p7_buffer_alloc(device, 6u << 20, &c), P7_ERROR_OUT_OF_MEMORY);
    assert_null(c);
    const char *msg = p7_last_error();
    assert_non_null(strstr(msg, "asked for 6291456 bytes"));
    assert_non_null(strstr(msg, "4194304 bytes are in use"));
    P7_ASSERT_OK(p7_memory_get_stats(device, &s));
    assert_int_equal(s.bytes_in_use, 4u << 20);

    p7_buffer_free(b);
    p7_device_close(device);
}

static void test_bigger_than_one_buffer(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    const p7_device_info *info = p7_device_get_info(device);
    p7_buffer *b = (p7_buffer *)0x1;
    assert_int_equal(p7_buffer_alloc(device, (size_t)info->max_alloc_bytes + 1, &b), P7_ERROR_OUT_OF_MEMORY);
    assert_null(b);
    assert_non_null(strstr(p7_last_error(), "at most"));
    assert_int_equal(p7_buffer_alloc(device, 0, &b), P7_ERROR_INVALID_ARGUMENT);
    p7_device_close(device);
}

static void test_buffer_copy(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    p7_buffer *src, *dst;
    int32_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[16];
    P7_ASSERT_OK(p7_buffer_alloc(device, sizeof in, &src));
    P7_ASSERT_OK(p7_buffer_alloc(device, sizeof out, &dst));
    P7_ASSERT_OK(p7_buffer_upload(src, in, sizeof in));
    /* tile twice, the way BatchEnsemble tiles its labels */
    P7_ASSERT_OK(p7_buffer_copy(device, p7_buffer_mem(src), 0, dst, 0, sizeof in));
    P7_ASSERT_OK(p7_buffer_copy(device, p7_buffer_mem(src), 0, dst, sizeof in, sizeof in));
    P7_ASSERT_OK(p7_buffer_download(dst, out, sizeof out));
    for (int i = 0; i < 16; i++) assert_int_equal(out[i], in[i % 8]);
    size_t cap = p7_buffer_size(dst);
    assert_int_equal(p7_buffer_copy(device, p7_buffer_mem(src), 0, dst, cap - 4, 8), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "do not fit"));
    p7_buffer_free(src);
    p7_buffer_free(dst);
    p7_device_close(device);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_classes),
        cmocka_unit_test(test_reuse_and_peak),
        cmocka_unit_test(test_flush_cache_and_retry),
        cmocka_unit_test(test_bigger_than_one_buffer),
        cmocka_unit_test(test_buffer_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
