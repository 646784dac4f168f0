/* Building kernels: a syntax error returns the compiler log and the file name; the
 * embedded kernels build; a missing kernel file or name is a clear error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tensor/tensor_internal.h"
#include "runtime/p7_kernels.h"
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

/* Builds `source` with fd 2 pointed at a file and returns what reached it (static). */
static const char *stderr_during_build(p7_device *device, const char *source)
{
    static char text[8192];
    char path[] = "/tmp/p7-test-stderr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    cl_program program = NULL;
    p7_status st = p7_program_build_source(device, "warning_for_test.cl", source, "", &program);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    P7_ASSERT_OK(st);
    clReleaseProgram(program);
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return text;
}

/* The OpenCL compiler's own stderr ("N warnings generated.") stays off the console
 * unless P7_VERBOSE=1 asks for it; the verbose run is the control that shows the
 * compiler does write there, so the quiet run's silence means something. */
static void test_compiler_output_only_when_verbose(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    char source[512];
    /* A source no compiler cache has seen (PoCL's cache ignores comments, so the
     * difference is in the code), with a warning
     * clang reports by default: '<<' binds looser than '+'. */
    for (int verbose = 1; verbose >= 0; verbose--) {
        snprintf(source, sizeof source,
                 "__kernel void warn(__global long *x) { x[0] = x[1] + 1 << 3; x[2] = %ldL; x[3] = %d; }\n",
                 (long)time(NULL), (int)getpid() * 2 + verbose);
        setenv("P7_VERBOSE", verbose ? "1" : "0", 1);
        const char *text = stderr_during_build(device, source);
        if (verbose)
            assert_non_null(strstr(text, "warning"));
        else
            assert_string_equal(text, "");
    }
    unsetenv("P7_VERBOSE");
    p7_device_close(device);
}

static void test_embedded_kernels_build(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    cl_kernel k1, k2;
    P7_ASSERT_OK(p7_kernel_get(device, &p7_kernels_tensor_fill, NULL, "tensor_fill", &k1));
    P7_ASSERT_OK(p7_kernel_get(device, &p7_kernels_tensor_fill, NULL, "tensor_fill", &k2));
    assert_ptr_equal(k1, k2); /* built once per process */
    /* A kernel file is a symbol (p7_kernels_<stem>), so a misspelled file does not
     * compile; a NULL one and a misspelled kernel name are errors that say so. */
    assert_int_equal(p7_kernel_get(device, NULL, NULL, "x", &k1), P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_kernel_get(device, &p7_kernels_tensor_fill, NULL, "p7_no_such_kernel", &k1),
                     P7_ERROR_KERNEL_NOT_FOUND);
    assert_non_null(strstr(p7_last_error(), "tensor_fill.cl has no kernel named p7_no_such_kernel"));
    p7_device_close(device);
}

/* The host's argument list must match the kernel's: one too few or too many is an
 * error naming the kernel and both counts, before any argument is set. */
static void test_argument_count_is_checked(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    cl_kernel k;
    P7_ASSERT_OK(p7_kernel_get(device, &p7_kernels_tensor_fill, NULL, "tensor_fill", &k));
    cl_mem m = NULL;
    cl_ulong offset = 0;
    cl_float value = 0;
    assert_int_equal(P7_SET_ARGS(k, "fill", P7_ARG(m), P7_ARG(offset)), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "fill: kernel tensor_fill takes"));
    assert_non_null(strstr(p7_last_error(), "the host passes 2"));
    cl_uint n = 0, extra = 0;
    assert_int_equal(P7_SET_ARGS(k, "fill", P7_ARG(m), P7_ARG(offset), P7_ARG(value), P7_ARG(n), P7_ARG(extra)),
                     P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(P7_COUNT_ARG_PAIRS(P7_ARG(m), P7_ARG(offset), P7_ARG(value)), 3);
    p7_device_close(device);
}

/* Entries in the cache folder (files ending in .bin). */
static int cache_entries(const char *dir, char *first, size_t size)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".bin") == 0) {
            if (n++ == 0) snprintf(first, size, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    return n;
}

/* The on-disk binary cache (forced on): a build stores an entry, a new device loads
 * it and the kernel runs; a corrupt entry falls back to building from source. */
static void test_program_cache(void **state)
{
    (void)state;
    char dir[] = "/tmp/p7-kcache-XXXXXX";
    assert_non_null(mkdtemp(dir));
    setenv("P7_CACHE_DIR", dir, 1);
    p7_device_options opts = {.kernel_cache = 1};
    const char *source = "__kernel void p7_cache_probe(__global float *x) { x[get_global_id(0)] = 7.0f; }\n";
    char entry[512] = "";

    for (int round = 0; round < 3; round++) {
        if (round == 2) { /* corrupt the entry: the build must still succeed */
            FILE *f = fopen(entry, "r+b");
            assert_non_null(f);
            fseek(f, 20, SEEK_SET);
            fputs("garbage garbage garbage", f);
            fclose(f);
        }
        p7_device *device = p7_test_open_device(&opts);
        cl_program program;
        P7_ASSERT_OK(p7_program_build_source(device, "probe.cl", source, "", &program));
        assert_int_equal(cache_entries(dir, entry, sizeof entry), 1);
        /* round 0 builds and stores; round 1 loads; round 2 finds garbage and rebuilds */
        assert_int_equal(device->program_cache_hits, round == 1 ? 1u : 0u);
        cl_int err;
        cl_kernel k = clCreateKernel(program, "p7_cache_probe", &err);
        assert_int_equal(err, CL_SUCCESS);
        const int64_t shape[1] = {64};
        p7_tensor *t;
        P7_ASSERT_OK(p7_tensor_create(device, 1, shape, &t));
        cl_mem m = p7_tensor_mem(t);
        P7_ASSERT_OK(P7_SET_ARGS(k, "probe", P7_ARG(m)));
        size_t global = 64;
        P7_ASSERT_OK(p7_launch(device, k, 1, &global, NULL, "probe"));
        float out[64];
        P7_ASSERT_OK(p7_tensor_download(t, out, 64));
        for (int i = 0; i < 64; i++) assert_true(out[i] == 7.0f);
        p7_tensor_release(t);
        clReleaseKernel(k);
        clReleaseProgram(program);
        p7_device_close(device);
    }
    unsetenv("P7_CACHE_DIR");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax_error_returns_log),
        cmocka_unit_test(test_embedded_kernels_build),
        cmocka_unit_test(test_compiler_output_only_when_verbose),
        cmocka_unit_test(test_argument_count_is_checked),
        cmocka_unit_test(test_program_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
