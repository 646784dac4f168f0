/* p7's GEMM per tile: every candidate register tile (AVX-512-shaped, AVX2-shaped and
 * generic) against a float64 host reference, on ragged sizes with every transpose,
 * offsets, padded leading dimensions, beta != 0 and K split into blocks, through both
 * the packing path and conv2d's packed-B path; then the tuning store (round trip,
 * truncated, foreign and wrong-version files refused with a message, concurrent
 * writers) and how a device resolves its tile (stored file, corrupt file, override).
 * Nothing here measures speed: ctest runs it with P7_GEMM_TUNING=off. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gemm/gemm_packed.h"
#include "gemm/gemm_tuning.h"
#include "p7_test_support.h"

P7_TEST_FILE_TEMP_DIR("p7-gemm-tuning")

/* One GEMM with params `p` (packing path), compared element by element. */
static void check_case(p7_device *device, const p7_gemm_p7_params *p, int ta, int tb, size_t m, size_t n, size_t k,
                       float alpha, float beta, size_t pad, size_t off)
{
    size_t arows = ta ? k : m, acols = ta ? m : k, brows = tb ? n : k, bcols = tb ? k : n;
    size_t lda = acols + pad, ldb = bcols + pad, ldc = n + pad;
    size_t na = off + arows * lda, nb = off + brows * ldb, nc = off + m * ldc;
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
    float *out = malloc(nc * sizeof *out);
    double *ref = malloc(m * n * sizeof *ref);
    p7_test_fill_uniform(a, na, 3 + m + k, -1.0f, 1.0f);
    p7_test_fill_uniform(b, nb, 5 + n + k, -1.0f, 1.0f);
    p7_test_fill_uniform(c, nc, 7 + k, -1.0f, 1.0f);
    if (beta == 0.0f) /* C must not be read when beta is 0 */
        for (size_t i = 0; i < m; i++) p7_test_fill_nan(c + off + i * ldc, n);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) ref[i * n + j] = c[off + i * ldc + j];
    p7_test_gemm_reference(ta, tb, m, n, k, alpha, a + off, lda, b + off, ldb, beta, ref, n);

    p7_tensor *tA = p7_test_upload(device, a, na), *tB = p7_test_upload(device, b, nb), *tC = p7_test_upload(device, c, nc);
    p7_gemm_desc d = p7_gemm_desc_packed(ta, tb, m, n, k, alpha, beta);
    d.lda = lda;
    d.ldb = ldb;
    d.ldc = ldc;
    d.a_offset = d.b_offset = d.c_offset = off;
    P7_ASSERT_OK(p7_gemm_p7_run_with(device, p, &d, p7_tensor_mem(tA), p7_tensor_mem(tB), p7_tensor_mem(tC)));
    P7_ASSERT_OK(p7_tensor_download(tC, out, nc));
    char name[48];
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double err = fabs((double)out[off + i * ldc + j] - ref[i * n + j]);
            if (!(err <= 1e-4 * (sqrt((double)k) + fabs(ref[i * n + j]))))
                fail_msg("tile %s: m=%zu n=%zu k=%zu ta=%d tb=%d alpha=%g beta=%g: C[%zu,%zu] = %g, expected %g",
                         p7_gemm_p7_params_format(p, name, sizeof name), m, n, k, ta, tb, alpha, beta, i, j,
                         out[off + i * ldc + j], ref[i * n + j]);
        }
    /* what lies outside the m x n window (the offset, the padding) is left alone */
    for (size_t i = 0; i < off; i++) assert_memory_equal(&out[i], &c[i], sizeof(float));
    for (size_t i = 0; i < m; i++)
        for (size_t j = n; j < ldc; j++)
            assert_memory_equal(&out[off + i * ldc + j], &c[off + i * ldc + j], sizeof(float));
    p7_tensor_release(tA);
    p7_tensor_release(tB);
    p7_tensor_release(tC);
    free(a);
    free(b);
    free(c);
    free(out);
    free(ref);
}

/* The same through conv2d's path: B already in 32-wide panels at an element offset. */
static void check_packed_b(p7_device *device, const p7_gemm_p7_params *p, size_t m, size_t n, size_t k)
{
    const size_t panel = P7_GEMM_P7_PANEL, bp_off = 7;
    size_t panels = (n + panel - 1) / panel;
    size_t nbp = bp_off + panels * panel * k;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b), *bp = malloc(nbp * sizeof *bp);
    float *out = malloc(m * n * sizeof *out);
    double *ref = calloc(m * n, sizeof *ref);
    p7_test_fill_uniform(a, m * k, 17, -1.0f, 1.0f);
    p7_test_fill_uniform(b, k * n, 19, -1.0f, 1.0f);
    p7_test_fill_nan(bp, bp_off);
    for (size_t q = 0; q < panels; q++)
        for (size_t kk = 0; kk < k; kk++)
            for (size_t j = 0; j < panel; j++) {
                size_t col = q * panel + j;
                bp[bp_off + (q * k + kk) * panel + j] = col < n ? b[kk * n + col] : 0.0f;
            }
    p7_test_gemm_reference(0, 0, m, n, k, 1.0, a, k, b, n, 0.0, ref, n);
    p7_tensor *tA = p7_test_upload(device, a, m * k), *tB = p7_test_upload(device, bp, nbp), *tC;
    int64_t cs[1] = {(int64_t)(m * n)};
    P7_ASSERT_OK(p7_tensor_create(device, 1, cs, &tC));
    P7_ASSERT_OK(p7_tensor_fill(tC, NAN));
    p7_gemm_desc d = p7_gemm_desc_packed(0, 0, m, n, k, 1.0f, 0.0f);
    P7_ASSERT_OK(p7_gemm_p7_run_packed_b_with(device, p, &d, p7_tensor_mem(tA), p7_tensor_mem(tB), bp_off,
                                              p7_tensor_mem(tC)));
    P7_ASSERT_OK(p7_tensor_download(tC, out, m * n));
    char name[48];
    for (size_t i = 0; i < m * n; i++) {
        double err = fabs((double)out[i] - ref[i]);
        if (!(err <= 1e-4 * (sqrt((double)k) + fabs(ref[i]))))
            fail_msg("tile %s, packed B: m=%zu n=%zu k=%zu: C[%zu] = %g, expected %g",
                     p7_gemm_p7_params_format(p, name, sizeof name), m, n, k, i, out[i], ref[i]);
    }
    p7_tensor_release(tA);
    p7_tensor_release(tB);
    p7_tensor_release(tC);
    free(a);
    free(b);
    free(bp);
    free(out);
    free(ref);
}

/* Winograd's path: `batch` products with A in MR-row panels (rows past m hold NaN, which
 * must never reach C) and B in 32-wide panels, at offsets and strides with gaps between
 * the products, beta != 0; each product against its own float64 reference. */
static void check_packed_batched(p7_device *device, const p7_gemm_p7_params *p, size_t m, size_t n, size_t k)
{
    enum { BATCH = 3 };
    const size_t mr = (size_t)p->mr, panel = P7_GEMM_P7_PANEL, ldc = n + 2;
    const size_t a_floats = p7_gemm_packed_a_floats(m, k, p->mr), b_floats = p7_gemm_packed_b_floats(n, k);
    const size_t a_off = 3, a_stride = a_floats + 5, b_off = 1, b_stride = b_floats + 7;
    const size_t c_off = 2, c_stride = m * ldc + 4;
    const size_t na = a_off + BATCH * a_stride, nb = b_off + BATCH * b_stride, nc = c_off + BATCH * c_stride;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b), *c = malloc(nc * sizeof *c);
    float *ap = malloc(na * sizeof *ap), *bp = malloc(nb * sizeof *bp), *out = malloc(nc * sizeof *out);
    double *ref = malloc(m * n * sizeof *ref);
    const float alpha = 0.5f, beta = -0.25f;
    p7_test_fill_nan(ap, na);
    p7_test_fill_nan(bp, nb);
    p7_test_fill_uniform(c, nc, 29 + m, -1.0f, 1.0f);
    for (size_t s = 0; s < BATCH; s++) {
        p7_test_fill_uniform(a, m * k, 31 + s, -1.0f, 1.0f);
        p7_test_fill_uniform(b, k * n, 37 + s, -1.0f, 1.0f);
        float *as = ap + a_off + s * a_stride, *bs = bp + b_off + s * b_stride;
        for (size_t i = 0; i < m; i++)
            for (size_t kk = 0; kk < k; kk++) as[((i / mr) * k + kk) * mr + i % mr] = a[i * k + kk];
        for (size_t q = 0; q < (n + panel - 1) / panel; q++)
            for (size_t kk = 0; kk < k; kk++)
                for (size_t j = 0; j < panel; j++) {
                    const size_t col = q * panel + j;
                    bs[(q * k + kk) * panel + j] = col < n ? b[kk * n + col] : 0.0f;
                }
    }
    p7_tensor *tA = p7_test_upload(device, ap, na), *tB = p7_test_upload(device, bp, nb);
    p7_tensor *tC = p7_test_upload(device, c, nc);
    p7_gemm_desc d = p7_gemm_desc_packed(0, 0, m, n, k, alpha, beta);
    d.ldc = ldc;
    d.c_offset = c_off;
    P7_ASSERT_OK(p7_gemm_p7_run_packed_batched_with(device, p, &d, BATCH, p7_tensor_mem(tA), a_off, a_stride,
                                                    p7_tensor_mem(tB), b_off, b_stride, p7_tensor_mem(tC),
                                                    c_stride));
    P7_ASSERT_OK(p7_tensor_download(tC, out, nc));
    char name[48];
    for (size_t s = 0; s < BATCH; s++) {
        p7_test_fill_uniform(a, m * k, 31 + s, -1.0f, 1.0f);
        p7_test_fill_uniform(b, k * n, 37 + s, -1.0f, 1.0f);
        const float *cs = c + c_off + s * c_stride, *os = out + c_off + s * c_stride;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) ref[i * n + j] = cs[i * ldc + j];
        p7_test_gemm_reference(0, 0, m, n, k, alpha, a, k, b, n, beta, ref, n);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                const double err = fabs((double)os[i * ldc + j] - ref[i * n + j]);
                if (!(err <= 1e-4 * (sqrt((double)k) + fabs(ref[i * n + j]))))
                    fail_msg("tile %s, batched product %zu: m=%zu n=%zu k=%zu kc=%d: C[%zu][%zu] = %g, expected %g",
                             p7_gemm_p7_params_format(p, name, sizeof name), s, m, n, k, p->kc, i, j,
                             os[i * ldc + j], ref[i * n + j]);
            }
        /* the gaps between the products' rows and between the products stay as they were */
        for (size_t i = 0; i < m; i++)
            for (size_t j = n; j < ldc; j++)
                assert_memory_equal(&os[i * ldc + j], &cs[i * ldc + j], sizeof(float));
        for (size_t g = m * ldc; g < c_stride; g++) assert_memory_equal(&os[g], &cs[g], sizeof(float));
    }
    for (size_t g = 0; g < c_off; g++) assert_memory_equal(&out[g], &c[g], sizeof(float));
    p7_tensor_release(tA);
    p7_tensor_release(tB);
    p7_tensor_release(tC);
    free(a);
    free(b);
    free(c);
    free(ap);
    free(bp);
    free(out);
    free(ref);
}

static void test_every_candidate_tile(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    /* Sizes that leave every residue class of the tiles' rows (2..12) and columns
     * (8..32) somewhere, and depths of one, two and ten K blocks of 32. */
    static const size_t ms[] = {3, 37}, ns[] = {5, 97}, ks[] = {1, 40, 300};
    assert_true(p7_gemm_p7_candidate_count() >= 9);
    for (size_t ci = 0; ci < p7_gemm_p7_candidate_count(); ci++) {
        p7_gemm_p7_params p = *p7_gemm_p7_candidate(ci);
        assert_null(p7_gemm_p7_params_problem(&p));
        int cases = 0;
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t mi = 0; mi < 2; mi++)
                    for (size_t ni = 0; ni < 2; ni++)
                        for (size_t ki = 0; ki < 3; ki++) {
                            int variant = (int)(mi + ni + ki + (size_t)ta) % 2;
                            p7_gemm_p7_params q = p;
                            q.kc = variant ? 32 : p.kc;
                            check_case(device, &q, ta, tb, ms[mi], ns[ni], ks[ki], variant ? -0.5f : 1.0f,
                                       (mi + ki) % 2 ? 0.75f : 0.0f, variant ? 3 : 0, variant ? 5 : 0);
                            cases++;
                        }
        p7_gemm_p7_params blocked = p;
        blocked.kc = 32;
        check_packed_b(device, &blocked, 37, 97, 300);
        check_packed_b(device, &p, 13, 40, 9);
        check_packed_batched(device, &blocked, 37, 97, 70); /* three K blocks of 32, 24, ... */
        check_packed_batched(device, &p, 13, 40, 9);
        char name[48];
        print_message("  tile %-16s %d cases, 2 packed-B and 2 batched cases match the float64 reference\n",
                      p7_gemm_p7_params_format(&p, name, sizeof name), cases);
    }
    p7_device_close(device);
}

/* p7_gemm_packed_batched refuses products that would overlap and operands past their
 * buffers, naming what is wrong, before anything runs. */
static void test_batched_arguments(void **state)
{
    (void)state;
    p7_device *device = p7_test_open_device(NULL);
    int mr = 0;
    P7_ASSERT_OK(p7_gemm_packed_a_rows(device, &mr));
    const size_t m = 16, n = 32, k = 8;
    const size_t a_floats = p7_gemm_packed_a_floats(m, k, mr), b_floats = p7_gemm_packed_b_floats(n, k);
    p7_tensor *ta, *tb, *tc;
    const int64_t as[1] = {(int64_t)(2 * a_floats)}, bs[1] = {(int64_t)(2 * b_floats)}, cs[1] = {(int64_t)(2 * m * n)};
    P7_ASSERT_OK(p7_tensor_create(device, 1, as, &ta));
    P7_ASSERT_OK(p7_tensor_create(device, 1, bs, &tb));
    P7_ASSERT_OK(p7_tensor_create(device, 1, cs, &tc));
    p7_gemm_desc d = p7_gemm_desc_packed(0, 0, m, n, k, 1.0f, 0.0f);
    cl_mem a = p7_tensor_mem(ta), b = p7_tensor_mem(tb), c = p7_tensor_mem(tc);
    P7_ASSERT_OK(p7_gemm_packed_batched(device, &d, 2, a, 0, a_floats, b, 0, b_floats, c, m * n));
    assert_int_equal(p7_gemm_packed_batched(device, &d, 2, a, 0, a_floats - 1, b, 0, b_floats, c, m * n),
                     P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "overlap"));
    assert_int_equal(p7_gemm_packed_batched(device, &d, 3, a, 0, a_floats, b, 0, b_floats, c, m * n),
                     P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "A (packed)"));
    assert_int_equal(p7_gemm_packed_batched(device, &d, 2, a, 0, a_floats, b, 0, b_floats, c, m * n + 1),
                     P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "matrix C"));
    assert_int_equal(p7_gemm_packed_batched(device, &d, 0, a, 0, a_floats, b, 0, b_floats, c, m * n),
                     P7_ERROR_INVALID_SHAPE);
    p7_tensor_release(ta);
    p7_tensor_release(tb);
    p7_tensor_release(tc);
    p7_device_close(device);
}

static void test_params_are_checked(void **state)
{
    (void)state;
    p7_gemm_p7_params bad[] = {{7, 32, 16, 768}, {14, 32, 16, 768}, {8, 24, 8, 768},
                               {8, 32, 2, 768},  {8, 32, 4, 768},   {8, 32, 16, 8}};
    const char *why[] = {"tile rows 7", "tile rows 14", "tile columns 24", "vector width 2", "1 to 4 vectors",
                         "K block 8"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *problem = p7_gemm_p7_params_problem(&bad[i]);
        assert_non_null(problem);
        if (!strstr(problem, why[i])) fail_msg("case %zu: '%s' does not say '%s'", i, problem, why[i]);
    }
    p7_gemm_p7_params t;
    assert_int_equal(p7_gemm_p7_tile_parse("6x16", &t), 0);
    assert_int_equal(t.mr, 6);
    assert_int_equal(t.nr, 16);
    assert_int_equal(t.vw, 0);
    assert_int_equal(p7_gemm_p7_tile_parse("8x32/16", &t), 0);
    assert_int_equal(t.vw, 16);
    assert_int_not_equal(p7_gemm_p7_tile_parse("8x", &t), 0);
    assert_int_not_equal(p7_gemm_p7_tile_parse("8x32/16 ", &t), 0);
}

/* ---- the store ---- */

static const p7_gemm_tuning_identity test_identity = {"pthread-testcpu", "3.1+test", "OpenCL 3.0 PoCL test",
                                                      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};

static void path_in_dir(const char *name, char *path, size_t size) { snprintf(path, size, "%s/%s", dir, name); }

static char *read_text(const char *path, size_t *length)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *text = calloc(4096, 1);
    *length = fread(text, 1, 4095, f);
    fclose(f);
    return text;
}

static void write_text(const char *path, const char *text, size_t length)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, length, f), length);
    assert_int_equal(fclose(f), 0);
}

static void test_store_round_trip(void **state)
{
    (void)state;
    char path[256];
    path_in_dir("sub/folder/gemm-round.txt", path, sizeof path); /* folders are created */
    p7_gemm_p7_params p = {6, 16, 8, 512}, back = {0, 0, 0, 0};
    P7_ASSERT_OK(p7_gemm_tuning_store_write(path, &test_identity, &p, 123.4));
    double gflops = 0.0;
    P7_ASSERT_OK(p7_gemm_tuning_store_read(path, &test_identity, &back, &gflops));
    assert_memory_equal(&p, &back, sizeof p);
    assert_true(fabs(gflops - 123.4) < 1e-9);
    /* the name depends on every identity field */
    char a[256], b[256];
    p7_gemm_tuning_identity other = test_identity;
    p7_gemm_tuning_store_path(dir, &test_identity, a, sizeof a);
    other.driver[0] = 'X';
    p7_gemm_tuning_store_path(dir, &other, b, sizeof b);
    assert_string_not_equal(a, b);
    other = test_identity;
    other.kernel[0] = 'f';
    p7_gemm_tuning_store_path(dir, &other, b, sizeof b);
    assert_string_not_equal(a, b);
    assert_non_null(strstr(a, "/gemm-"));
}

/* Refused with P7_ERROR_FORMAT and a message holding `expected`. */
static void assert_refused(const char *path, const p7_gemm_tuning_identity *id, const char *expected)
{
    p7_gemm_p7_params p;
    p7_status st = p7_gemm_tuning_store_read(path, id, &p, NULL);
    if (st != P7_ERROR_FORMAT) fail_msg("%s: status %s, expected P7_ERROR_FORMAT", path, p7_status_string(st));
    if (expected && !strstr(p7_last_error(), expected))
        fail_msg("message '%s' does not say '%s'", p7_last_error(), expected);
    if (!strstr(p7_last_error(), path)) fail_msg("message '%s' does not name the file", p7_last_error());
}

static void test_store_refuses_bad_files(void **state)
{
    (void)state;
    char good[256], bad[256];
    path_in_dir("good.txt", good, sizeof good);
    path_in_dir("bad.txt", bad, sizeof bad);
    p7_gemm_p7_params p = {8, 32, 16, 768};
    P7_ASSERT_OK(p7_gemm_tuning_store_write(good, &test_identity, &p, 150.0));
    size_t length;
    char *text = read_text(good, &length);

    /* every truncation */
    for (size_t cut = 0; cut < length; cut++) {
        write_text(bad, text, cut);
        assert_refused(bad, &test_identity, NULL);
    }
    /* another format version */
    char *edited = strdup(text);
    edited[strlen("p7-gemm-tuning ")] = '2';
    write_text(bad, edited, length);
    assert_refused(bad, &test_identity, "format version 2, expected 1");
    free(edited);
    /* another device, driver or kernel source (a copied or renamed file) */
    p7_gemm_tuning_identity other = test_identity;
    snprintf(other.device, sizeof other.device, "pthread-othercpu");
    assert_refused(good, &other, "written for device 'pthread-testcpu', but this is 'pthread-othercpu'");
    other = test_identity;
    snprintf(other.driver, sizeof other.driver, "4.0");
    assert_refused(good, &other, "written for driver");
    other = test_identity;
    other.kernel[5] = 'x';
    assert_refused(good, &other, "written for kernel");
    /* a tile the kernel cannot build, a bad number, something else entirely */
    const char *bodies[][2] = {{"tile 8x32/16", "tile 7x32/16"}, {"tile 8x32/16", "tile eight"},
                               {"kc 768", "kc -3"},               {"gflops 150.0", "gflops fast"}};
    const char *says[] = {"tile rows 7", "tile 'eight'", "kc '-3'", "gflops 'fast'"};
    for (size_t i = 0; i < sizeof says / sizeof *says; i++) {
        char replaced[4096];
        const char *at = strstr(text, bodies[i][0]);
        assert_non_null(at);
        snprintf(replaced, sizeof replaced, "%.*s%s%s", (int)(at - text), text, bodies[i][1],
                 at + strlen(bodies[i][0]));
        write_text(bad, replaced, strlen(replaced));
        assert_refused(bad, &test_identity, says[i]);
    }
    write_text(bad, "\x7f" "ELF\x02\x01\x01", 7);
    assert_refused(bad, &test_identity, "not a p7 GEMM tuning file");
    /* no file at all is not a format problem */
    char none[256];
    path_in_dir("none.txt", none, sizeof none);
    assert_int_equal(p7_gemm_tuning_store_read(none, &test_identity, &p, NULL), P7_ERROR_IO);
    free(text);
}

/* Writers in several processes replace the file over and over while this process reads
 * it: every read sees one whole file. */
static void test_store_concurrent_writers(void **state)
{
    (void)state;
    char path[256];
    path_in_dir("shared.txt", path, sizeof path);
    const p7_gemm_p7_params choices[3] = {{8, 32, 16, 768}, {6, 16, 8, 384}, {12, 16, 16, 1536}};
    P7_ASSERT_OK(p7_gemm_tuning_store_write(path, &test_identity, &choices[0], 1.0));
    enum { WRITERS = 3, WRITES = 400 };
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            for (int i = 0; i < WRITES; i++)
                if (p7_gemm_tuning_store_write(path, &test_identity, &choices[(w + i) % 3], (double)i) != P7_SUCCESS)
                    _exit(1);
            _exit(0);
        }
    }
    int reads = 0, running = WRITERS;
    while (running > 0) {
        p7_gemm_p7_params p;
        double g;
        p7_status st = p7_gemm_tuning_store_read(path, &test_identity, &p, &g);
        if (st != P7_SUCCESS) fail_msg("read %d during concurrent writes: %s", reads, p7_last_error());
        int known = 0;
        for (int c = 0; c < 3; c++) known |= memcmp(&p, &choices[c], sizeof p) == 0;
        assert_true(known);
        reads++;
        int status;
        pid_t done = waitpid(-1, &status, WNOHANG);
        if (done > 0) {
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            running--;
        }
    }
    print_message("  %d whole reads while %d processes wrote %d files each\n", reads, WRITERS, WRITES);
    /* no temporary file is left behind */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.tmp$' > /dev/null", dir);
    assert_int_not_equal(system(cmd), 0);
}

/* ---- resolution on a device ---- */

/* A device whose tuning folder is <dir>/<name>/tuning. */
static p7_device *open_with_cache(const char *name)
{
    char cache[256];
    path_in_dir(name, cache, sizeof cache);
    setenv("P7_CACHE_DIR", cache, 1);
    p7_device *device = p7_test_open_device(NULL);
    unsetenv("P7_CACHE_DIR");
    return device;
}

static void store_path_of(p7_device *device, const char *name, char *path, size_t size)
{
    char tuning[256];
    snprintf(tuning, sizeof tuning, "%s/%s/tuning", dir, name);
    p7_gemm_tuning_identity id;
    p7_gemm_tuning_identity_of(device, &id);
    p7_gemm_tuning_store_path(tuning, &id, path, size);
}

static void test_device_resolution(void **state)
{
    (void)state;
    setenv("P7_GEMM_TUNING", "off", 1);
    unsetenv("P7_GEMM_TILE");
    unsetenv("P7_GEMM_KC");

    /* nothing stored, tuning off: the class default, nothing written */
    p7_device *device = open_with_cache("empty");
    p7_gemm_tuning t;
    P7_ASSERT_OK(p7_gemm_tuning_get(device, &t));
    assert_int_equal(t.origin, P7_GEMM_TUNING_DEFAULT);
    assert_string_equal(t.note, "");
    assert_int_not_equal(access(t.path, F_OK), 0);
    p7_gemm_p7_params dflt = {t.tile_rows, t.tile_cols, t.vector_width, t.k_block};
    assert_null(p7_gemm_p7_params_problem(&dflt));
    p7_device_close(device);

    /* a stored choice is applied, and the device's GEMMs run with it */
    device = open_with_cache("stored");
    char path[512];
    store_path_of(device, "stored", path, sizeof path);
    p7_gemm_tuning_identity id;
    p7_gemm_tuning_identity_of(device, &id);
    p7_gemm_p7_params six = {6, 16, 8, 64};
    P7_ASSERT_OK(p7_gemm_tuning_store_write(path, &id, &six, 99.0));
    P7_ASSERT_OK(p7_gemm_tuning_get(device, &t));
    assert_int_equal(t.origin, P7_GEMM_TUNING_STORED);
    assert_int_equal(t.tile_rows, 6);
    assert_int_equal(t.tile_cols, 16);
    assert_int_equal(t.vector_width, 8);
    assert_int_equal(t.k_block, 64);
    assert_string_equal(t.path, path);
    p7_device_close(device);

    /* a corrupt file: refused with a note naming it, the default used, no failure */
    device = open_with_cache("stored");
    write_text(path, "p7-gemm-tuning 1\ndevice ", 24);
    P7_ASSERT_OK(p7_gemm_tuning_get(device, &t));
    assert_int_equal(t.origin, P7_GEMM_TUNING_DEFAULT);
    assert_int_equal(t.tile_rows, dflt.mr);
    if (!strstr(t.note, path)) fail_msg("note '%s' does not name %s", t.note, path);
    p7_device_close(device);

    /* P7_GEMM_TILE overrides a stored file; a bad one is refused with a note */
    device = open_with_cache("stored");
    P7_ASSERT_OK(p7_gemm_tuning_store_write(path, &id, &six, 99.0));
    setenv("P7_GEMM_TILE", "4x16/8", 1);
    setenv("P7_GEMM_KC", "256", 1);
    P7_ASSERT_OK(p7_gemm_tuning_get(device, &t));
    assert_int_equal(t.origin, P7_GEMM_TUNING_OVERRIDE);
    assert_int_equal(t.tile_rows, 4);
    assert_int_equal(t.tile_cols, 16);
    assert_int_equal(t.vector_width, 8);
    assert_int_equal(t.k_block, 256);
    p7_device_close(device);
    unsetenv("P7_GEMM_KC");
    device = open_with_cache("stored");
    setenv("P7_GEMM_TILE", "5x16", 1);
    P7_ASSERT_OK(p7_gemm_tuning_get(device, &t));
    assert_int_equal(t.origin, P7_GEMM_TUNING_STORED);
    if (!strstr(t.note, "tile rows 5")) fail_msg("note '%s' does not say what is wrong with 5x16", t.note);
    p7_device_close(device);
    unsetenv("P7_GEMM_TILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_are_checked),
        cmocka_unit_test(test_batched_arguments),
        cmocka_unit_test(test_store_round_trip),
        cmocka_unit_test(test_store_refuses_bad_files),
        cmocka_unit_test(test_store_concurrent_writers),
        cmocka_unit_test(test_device_resolution),
        cmocka_unit_test(test_every_candidate_tile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
