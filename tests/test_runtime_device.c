/* Device-spec parsing and selection, including every error path; and opening the
 * real test device. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

static p7_device_info fake(unsigned p, unsigned d, p7_device_kind kind, const char *platform, const char *vendor,
                           const char *name)
{
    p7_device_info info;
    memset(&info, 0, sizeof info);
    info.platform_index = p;
    info.device_index = d;
    info.kind = kind;
    snprintf(info.platform_name, sizeof info.platform_name, "%s", platform);
    snprintf(info.vendor, sizeof info.vendor, "%s", vendor);
    snprintf(info.name, sizeof info.name, "%s", name);
    snprintf(info.platform_version, sizeof info.platform_version, "OpenCL 3.0");
    return info;
}

/* A lab machine: PoCL first (so "first GPU" is not simply index 0), then three GPUs. */
static void lab_machine(p7_device_info infos[4])
{
    infos[0] = fake(0, 0, P7_DEVICE_KIND_CPU, "Portable Computing Language", "AuthenticAMD",
                    "pthread-skylake-avx512-AMD EPYC");
    infos[1] = fake(1, 0, P7_DEVICE_KIND_GPU, "NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA H100 80GB HBM3");
    infos[2] = fake(2, 0, P7_DEVICE_KIND_GPU, "AMD Accelerated Parallel Processing",
                    "Advanced Micro Devices, Inc.", "gfx1030");
    infos[3] = fake(3, 0, P7_DEVICE_KIND_GPU, "Intel(R) OpenCL Graphics", "Intel(R) Corporation",
                    "Intel(R) UHD Graphics 770");
}

static size_t select_ok(const char *spec, const p7_device_info *infos, size_t n)
{
    size_t index = 999;
    P7_ASSERT_OK(p7_device_select(spec, infos, n, &index));
    return index;
}

static void test_spec_words(void **state)
{
    (void)state;
    p7_device_info infos[4];
    lab_machine(infos);
    assert_int_equal(select_ok(NULL, infos, 4), 1);   /* default: first GPU */
    assert_int_equal(select_ok("", infos, 4), 1);
    assert_int_equal(select_ok("gpu", infos, 4), 1);
    assert_int_equal(select_ok("GPU", infos, 4), 1);  /* words are case-insensitive */
    assert_int_equal(select_ok("cpu", infos, 4), 0);
    assert_int_equal(select_ok("pocl", infos, 4), 0);
    assert_int_equal(select_ok("nvidia", infos, 4), 1);
    assert_int_equal(select_ok("amd", infos, 4), 2);  /* the AMD GPU before PoCL on the AMD EPYC */
    assert_int_equal(select_ok("amd", infos, 1), 0);  /* without an AMD GPU: the AMD CPU */
    assert_int_equal(select_ok("intel", infos, 4), 3);
}

static void test_spec_indices_and_names(void **state)
{
    (void)state;
    p7_device_info infos[4];
    lab_machine(infos);
    assert_int_equal(select_ok("2:0", infos, 4), 2);
    assert_int_equal(select_ok("0:0", infos, 4), 0);
    assert_int_equal(select_ok("h100", infos, 4), 1);
    assert_int_equal(select_ok("UHD", infos, 4), 3);
    assert_int_equal(select_ok("EPYC", infos, 4), 0);
}

static void test_default_without_gpu_is_cpu(void **state)
{
    (void)state;
    p7_device_info infos[2];
    infos[0] = fake(0, 0, P7_DEVICE_KIND_ACCELERATOR, "FPGA SDK", "Acme", "fpga0");
    infos[1] = fake(0, 1, P7_DEVICE_KIND_CPU, "Portable Computing Language", "GenuineIntel", "pthread-haswell");
    assert_int_equal(select_ok(NULL, infos, 2), 1);
}

static void test_spec_no_match_lists_devices(void **state)
{
    (void)state;
    p7_device_info infos[4];
    lab_machine(infos);
    size_t index = 7;
    assert_int_equal(p7_device_select("nosuch", infos, 4, &index), P7_ERROR_DEVICE_NOT_FOUND);
    const char *msg = p7_last_error();
    assert_non_null(strstr(msg, "'nosuch'"));
    assert_non_null(strstr(msg, "2:0  gfx1030"));
    assert_non_null(strstr(msg, "NVIDIA H100"));
    assert_non_null(strstr(msg, "pthread-skylake"));
    assert_int_equal(index, 7); /* untouched on failure */

    assert_int_equal(p7_device_select("9:9", infos, 4, &index), P7_ERROR_DEVICE_NOT_FOUND);
    assert_int_equal(p7_device_select("1:", infos, 4, &index), P7_ERROR_DEVICE_NOT_FOUND); /* not an index spec */
}

/* "amd" on a machine whose only AMD device is the CPU under PoCL: selected, and said. */
static void test_vendor_fallback_to_cpu_is_noted(void **state)
{
    (void)state;
    p7_device_info infos[4];
    lab_machine(infos);
    char note[512];
    size_t index = select_ok("amd", infos, 1);
    assert_int_equal(index, 0);
    p7_device_spec_note("amd", &infos[index], note, sizeof note);
    assert_non_null(strstr(note, "no AMD GPU"));
    assert_non_null(strstr(note, "CPU device 0:0"));
    assert_non_null(strstr(note, "pthread-skylake"));
    /* Nothing to say when the vendor's GPU was found, or for specs that are not vendor words. */
    index = select_ok("amd", infos, 4);
    assert_string_equal(p7_device_spec_note("amd", &infos[index], note, sizeof note), "");
    assert_string_equal(p7_device_spec_note("cpu", &infos[0], note, sizeof note), "");
    assert_string_equal(p7_device_spec_note(NULL, &infos[0], note, sizeof note), "");
    assert_string_equal(p7_device_spec_note("EPYC", &infos[0], note, sizeof note), "");
}

/* A spec of thousands of characters must not push the reason out of the message. */
static void test_long_spec_keeps_the_reason(void **state)
{
    (void)state;
    p7_device_info infos[4];
    lab_machine(infos);
    char spec[6000];
    memset(spec, 'x', sizeof spec - 1);
    spec[sizeof spec - 1] = '\0';
    size_t index;
    assert_int_equal(p7_device_select(spec, infos, 4, &index), P7_ERROR_DEVICE_NOT_FOUND);
    const char *msg = p7_last_error();
    assert_non_null(strstr(msg, "matches no OpenCL device"));
    assert_non_null(strstr(msg, "gfx1030"));
    assert_true(strlen(msg) < 2000);
}

static void test_no_device_says_how_to_install_pocl(void **state)
{
    (void)state;
    size_t index;
    assert_int_equal(p7_device_select(NULL, NULL, 0, &index), P7_ERROR_NO_PLATFORM);
    assert_non_null(strstr(p7_last_error(), "apt-get install pocl-opencl-icd"));
    assert_int_equal(p7_device_select("cpu", NULL, 0, NULL), P7_ERROR_INVALID_ARGUMENT);
}

static void test_open_real_device(void **state)
{
    (void)state;
    size_t count = 0;
    P7_ASSERT_OK(p7_device_list(NULL, 0, &count));
    assert_true(count >= 1);
    p7_device *device = p7_test_open_device(NULL);
    const p7_device_info *info = p7_device_get_info(device);
    assert_non_null(info);
    assert_true(strlen(info->name) > 0);
    assert_non_null(strstr(p7_device_describe(device), info->name));
    /* CPU devices default to p7's GEMM, GPUs to CLBlast. */
    if (getenv("P7_GEMM") == NULL)
        assert_int_equal(p7_device_gemm_backend(device),
                         info->kind == P7_DEVICE_KIND_CPU ? P7_GEMM_P7 : P7_GEMM_CLBLAST);
    P7_ASSERT_OK(p7_device_set_gemm_backend(device, P7_GEMM_CLBLAST));
    assert_int_equal(p7_device_gemm_backend(device), P7_GEMM_CLBLAST);
    assert_non_null(strstr(p7_device_describe(device), "clblast"));
    P7_ASSERT_OK(p7_device_finish(device));
    p7_device_close(device);
    p7_device_close(NULL);
}

static void test_open_unknown_spec_fails(void **state)
{
    (void)state;
    p7_device *device = (p7_device *)0x1;
    assert_int_equal(p7_device_open("no-such-device-xyz", NULL, &device), P7_ERROR_DEVICE_NOT_FOUND);
    assert_null(device);
    assert_non_null(strstr(p7_last_error(), "no-such-device-xyz"));
}

static void test_gemm_backend_env_and_parse(void **state)
{
    (void)state;
    p7_gemm_backend b;
    P7_ASSERT_OK(p7_gemm_backend_parse("clblast", &b));
    assert_int_equal(b, P7_GEMM_CLBLAST);
    P7_ASSERT_OK(p7_gemm_backend_parse("p7", &b));
    assert_int_equal(b, P7_GEMM_P7);
    assert_int_equal(p7_gemm_backend_parse("cublas", &b), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "cublas"));

    setenv("P7_GEMM", "clblast", 1);
    p7_device *device = p7_test_open_device(NULL);
    assert_int_equal(p7_device_gemm_backend(device), P7_GEMM_CLBLAST);
    p7_device_close(device);

    setenv("P7_GEMM", "fastest", 1);
    device = NULL;
    assert_int_equal(p7_device_open(getenv("P7_DEVICE"), NULL, &device), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "P7_GEMM='fastest'"));
    assert_null(device);
    unsetenv("P7_GEMM");
}

static void test_status_strings(void **state)
{
    (void)state;
    assert_string_equal(p7_status_string(P7_SUCCESS), "P7_SUCCESS");
    assert_string_equal(p7_status_string((p7_status)CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
    assert_string_equal(p7_status_string(P7_ERROR_INVALID_SHAPE), "P7_ERROR_INVALID_SHAPE");
    assert_string_equal(p7_status_string((p7_status)-12345), "unknown status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_words),
        cmocka_unit_test(test_spec_indices_and_names),
        cmocka_unit_test(test_default_without_gpu_is_cpu),
        cmocka_unit_test(test_spec_no_match_lists_devices),
        cmocka_unit_test(test_vendor_fallback_to_cpu_is_noted),
        cmocka_unit_test(test_long_spec_keeps_the_reason),
        cmocka_unit_test(test_no_device_says_how_to_install_pocl),
        cmocka_unit_test(test_open_real_device),
        cmocka_unit_test(test_open_unknown_spec_fails),
        cmocka_unit_test(test_gemm_backend_env_and_parse),
        cmocka_unit_test(test_status_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
