/* Writes the seed corpora: make_seeds <corpus dir> fills <dir>/<target>/ with a few
 * small valid (and a few nearly valid) inputs per fuzz target, each in the input
 * layout its fuzz_<target>.c describes. fuzz/run.sh --seeds runs it. */
#include <errno.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_support.h"

static const char *root;

static FILE *create(const char *target, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_seeds: cannot create %s\n", path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "make_seeds: cannot create %s\n", path);
        exit(1);
    }
    return f;
}

static void done(FILE *f)
{
    if (ferror(f) || fclose(f) != 0) {
        fprintf(stderr, "make_seeds: write failed\n");
        exit(1);
    }
}

static void write_bytes(const char *target, const char *name, const void *data, size_t size)
{
    FILE *f = create(target, name);
    fwrite(data, 1, size, f);
    done(f);
}

/* CIFAR: format byte, then `records` records with the given labels and a pixel ramp. */
static void cifar_seed(const char *name, int format, size_t records, const uint8_t *labels)
{
    size_t label_bytes = format == 0 ? 1 : 2, record = label_bytes + P7_IMAGE_BYTES;
    FILE *f = create("cifar", name);
    fputc(format, f);
    for (size_t r = 0; r < records; r++) {
        fwrite(labels + r * label_bytes, 1, label_bytes, f);
        for (size_t i = 0; i < record - label_bytes; i++) fputc((int)((i * 7 + r * 31) & 0xff), f);
    }
    done(f);
}

/* PNG importer: JSON, NUL, then a 1024-wide PNG of `rows` rows. */
static void png_seed(const char *name, const char *json, unsigned rows, int color)
{
    FILE *f = create("png_import", name);
    fwrite(json, 1, strlen(json), f);
    fputc('\0', f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "make_seeds: PNG write failed\n");
        exit(1);
    }
    png_init_io(png, f);
    png_set_compression_level(png, 9);
    png_set_IHDR(png, info, 1024, rows, 8, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    int channels = color == PNG_COLOR_TYPE_RGB_ALPHA ? 4 : 3;
    static png_byte row[1024 * 4];
    for (unsigned r = 0; r < rows; r++) {
        for (int i = 0; i < 1024 * channels; i++) row[i] = (png_byte)((i / 97 + r * 40) & 0xff);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    done(f);
}

static void text_seed(const char *target, const char *name, int first_byte, const char *text)
{
    FILE *f = create(target, name);
    if (first_byte >= 0) fputc(first_byte, f);
    fwrite(text, 1, strlen(text), f);
    done(f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds <corpus dir>\n");
        return 2;
    }
    root = argv[1];
    mkdir(root, 0755);

    const uint8_t ten[2] = {3, 9}, hundred[4] = {4, 42, 19, 99}, bad[2] = {10, 0};
    cifar_seed("cifar10-2", 0, 2, ten);
    cifar_seed("cifar10-bad-label", 0, 1, bad);
    cifar_seed("cifar100-fine", 1, 2, hundred);
    cifar_seed("cifar100-coarse", 2, 1, hundred);
    cifar_seed("cifar20", 3, 1, hundred + 2);

    png_seed("rgb-2", "[3, 1]", 2, PNG_COLOR_TYPE_RGB);
    png_seed("rgba-1", "[7]", 1, PNG_COLOR_TYPE_RGB_ALPHA);
    png_seed("rows-vs-labels", "[0,1,2]", 1, PNG_COLOR_TYPE_RGB);
    text_seed("png_import", "json-only", -1, " [0, 9, 5,\n 2 ] ");

    p7_model *model = fuzz_model(fuzz_device(), 2);
    fuzz_buffer b;
    fuzz_buffer_open(&b);
    FUZZ_CHECK(p7_model_save_stream(model, b.f, "seed") == P7_SUCCESS);
    fuzz_buffer_close(&b);
    write_bytes("model_state", "model", b.data, b.size);
    write_bytes("model_state", "model-truncated", b.data, b.size / 2);
    fuzz_buffer_free(&b);

    for (int i = 0; i < FUZZ_OPTIMIZERS; i++) {
        p7_optimizer *o = fuzz_optimizer(model, i);
        fuzz_buffer_open(&b);
        fputc(i, b.f);
        FUZZ_CHECK(p7_optimizer_save_stream(o, b.f) == P7_SUCCESS);
        fuzz_buffer_close(&b);
        write_bytes("optimizer_state", fuzz_optimizer_names[i], b.data, b.size);
        if (i == 1) {
            /* Adam's blob (layout, count, a step per parameter; last in the file) with an
             * unknown layout: before the fix, its refusal came after the slots had
             * been overwritten. */
            b.data[b.size - (12 + 8 * p7_model_param_count(model))] = 2;
            write_bytes("optimizer_state", "regress-adam-blob-layout", b.data, b.size);
        }
        fuzz_buffer_free(&b);
        p7_optimizer_destroy(o);
    }
    p7_model_destroy(model);

    text_seed("hparams", "sgd", 0, "lr=0.1, momentum=0.9, nesterov=true");
    text_seed("hparams", "adam", 1, " lr = 3e-4 ,beta2=0.98, amsgrad=on,");
    text_seed("hparams", "ivon", 2, "ess=50000,hess_init=0.5,mc_samples=4,clip_radius=inf");
    text_seed("hparams", "bad", 0, "lr=-1,,=3,momentum");

    text_seed("device_spec", "nvidia", -1,
              "nvidia\nc 0 0\npthread-Intel(R) Core(TM)\nGenuineIntel\nPortable Computing Language\nOpenCL 3.0 PoCL 3.1\n"
              "g 1 0\nNVIDIA GeForce RTX 4090\nNVIDIA Corporation\nNVIDIA CUDA\nOpenCL 3.0 CUDA 12.2\n");
    text_seed("device_spec", "index", -1, "1:0\ng 0 0\nRadeon\nAdvanced Micro Devices, Inc.\nAMD APP\nOpenCL 2.1\n"
                                          "c 1 0\ncpu\nx\ny\nz\n");
    text_seed("device_spec", "pocl", -1, "POCL\na 0 3\nfpga\nAltera\nIntel(R) FPGA\nOpenCL 1.2\n");
    return 0;
}
