/* CIFAR-10 / CIFAR-100 binary loaders and the data directory rule. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_cifar_internal.h"
#include "data/data_internal.h"
#include "p7/data.h"
#include "tensor/tensor_internal.h"

static const char *const cifar10_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                               "dog", "frog", "horse", "ship", "truck"};

static const unsigned char coarse_of_fine[100] = {
    4,  1,  14, 8,  0,  6,  7,  7,  18, 3,  3,  14, 9,  18, 7,  11, 3,  9,  7,  11,
    6,  11, 5,  10, 7,  6,  13, 15, 3,  15, 0,  11, 1,  10, 12, 14, 16, 9,  11, 5,
    5,  19, 8,  8,  15, 13, 14, 17, 18, 10, 16, 4,  17, 4,  2,  0,  17, 4,  18, 17,
    10, 3,  2,  12, 12, 16, 12, 1,  9,  19, 2,  10, 0,  1,  16, 12, 9,  13, 15, 13,
    16, 19, 2,  4,  6,  19, 5,  5,  8,  19, 18, 1,  2,  15, 6,  0,  17, 8,  14, 13};

int p7_cifar100_coarse_of_fine(int fine)
{
    return fine >= 0 && fine < 100 ? coarse_of_fine[fine] : -1;
}

int p7_cifar20_of_coarse(int coarse)
{
    /* The study's dict lists vehicles 1, vehicles 2, trees as ids 17, 18, 19, while
     * the official coarse ids are trees 17, vehicles 1 18, vehicles 2 19. */
    static const int remap[3] = {19, 17, 18};
    if (coarse < 0 || coarse > 19) return -1;
    return coarse < 17 ? coarse : remap[coarse - 17];
}

void p7_dataset_free(p7_dataset *dataset)
{
    if (!dataset) return;
    free(dataset->images);
    free(dataset->labels);
    free(dataset->class_names);
    memset(dataset, 0, sizeof *dataset);
}

p7_status p7_data_dir(const char *cli, char *out, size_t size)
{
    if (!out || size == 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "data dir: no output buffer");
    const char *dir = "./data";
    const char *env = getenv("P7_DATA");
    if (cli && cli[0]) dir = cli;
    else if (env && env[0]) dir = env;
    if (strlen(dir) >= size)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "data dir '%s' is longer than %zu bytes", dir, size - 1);
    strcpy(out, dir);
    return P7_SUCCESS;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static p7_status find_dataset(const char *root, const char *marker, const char *const *subdirs,
                              const char *what, char *out, size_t size)
{
    if (!root || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: no directory given", what);
    char path[4096];
    for (int i = -1; i < 0 || subdirs[i]; i++) {
        const char *dir = root;
        char sub[4096];
        if (i >= 0) {
            snprintf(sub, sizeof sub, "%s/%s", root, subdirs[i]);
            dir = sub;
        }
        if (snprintf(path, sizeof path, "%s/%s", dir, marker) >= (int)sizeof path) continue;
        if (is_file(path)) {
            if (strlen(dir) >= size)
                return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: path '%s' too long", what, dir);
            strcpy(out, dir);
            return P7_SUCCESS;
        }
    }
    return p7_fail(P7_ERROR_IO, "%s: no %s in %s, %s/%s or %s/%s", what, marker, root, root,
                   subdirs[0], root, subdirs[1]);
}

p7_status p7_cifar10_find(const char *root, char *out, size_t size)
{
    static const char *const subdirs[] = {"cifar10", "cifar-10-batches-bin", NULL};
    return find_dataset(root, "data_batch_1.bin", subdirs, "CIFAR-10", out, size);
}

p7_status p7_cifar100_find(const char *root, char *out, size_t size)
{
    static const char *const subdirs[] = {"cifar100", "cifar-100-binary", NULL};
    return find_dataset(root, "train.bin", subdirs, "CIFAR-100", out, size);
}

/* Appends the records of stream `f`, which holds `size` bytes and is called `name`
 * in messages. Each record is `record` bytes: `label_bytes` label bytes followed by
 * the 3072 pixels. `limits[k]` is the number of valid values of label byte k; `use`
 * selects which byte becomes the label. On any error the dataset is left as it was. */
static p7_status load_records(FILE *f, uint64_t size, const char *name, size_t record, int label_bytes,
                              const int *limits, const char *const *label_what, int use, p7_label_mode mode,
                              int classes, p7_dataset *ds)
{
    if (size == 0)
        return p7_fail(P7_ERROR_FORMAT, "%s: file is empty (expected %zu-byte records)", name, record);
    if (size % record != 0)
        return p7_fail(P7_ERROR_FORMAT,
                       "%s: size %llu is not a multiple of the record size %zu (truncated or not "
                       "this format)",
                       name, (unsigned long long)size, record);
    if (ds->classes != 0 && ds->classes != classes)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: dataset already holds %d classes, not %d",
                       name, ds->classes, classes);
    size_t n = (size_t)(size / record);
    size_t total = ds->count + n;
    uint8_t *images = realloc(ds->images, total * P7_IMAGE_BYTES);
    if (!images) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: no host memory for %zu images", name, total);
    ds->images = images;
    int32_t *labels = realloc(ds->labels, total * sizeof *labels);
    if (!labels) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: no host memory for %zu labels", name, total);
    ds->labels = labels;

    enum { CHUNK = 512 };
    uint8_t *buf = malloc(CHUNK * record);
    if (!buf) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "%s: no host memory for a read buffer", name);
    p7_status st_out = P7_SUCCESS;
    for (size_t done = 0; done < n && st_out == P7_SUCCESS;) {
        size_t want = n - done < CHUNK ? n - done : CHUNK;
        size_t got = fread(buf, record, want, f);
        if (got != want) {
            st_out = ferror(f) ? p7_fail(P7_ERROR_IO, "%s: read error after %zu records: %s", name,
                                         done + got, strerror(errno))
                               : p7_fail(P7_ERROR_FORMAT, "%s: file shrank while reading (%zu of %zu "
                                         "records)", name, done + got, n);
            break;
        }
        for (size_t r = 0; r < want; r++) {
            const uint8_t *rec = buf + r * record;
            for (int k = 0; k < label_bytes; k++) {
                if (rec[k] >= limits[k]) {
                    st_out = p7_fail(P7_ERROR_FORMAT, "%s: record %zu has %s label %d, outside 0..%d",
                                     name, done + r, label_what[k], rec[k], limits[k] - 1);
                    break;
                }
            }
            if (st_out != P7_SUCCESS) break;
            size_t at = ds->count + done + r;
            int label = rec[use];
            if (mode == P7_LABELS_CIFAR20) label = p7_cifar20_of_coarse(label);
            ds->labels[at] = label;
            memcpy(ds->images + at * P7_IMAGE_BYTES, rec + label_bytes, P7_IMAGE_BYTES);
        }
        done += want;
    }
    free(buf);
    if (st_out != P7_SUCCESS) {
        /* A dataset that was empty goes back to holding nothing, so a caller that
         * only frees successful loads does not leak the grown buffers. */
        if (ds->count == 0) {
            free(ds->images);
            free(ds->labels);
            ds->images = NULL;
            ds->labels = NULL;
        }
        return st_out;
    }
    ds->count = total;
    ds->classes = classes;
    return P7_SUCCESS;
}

/* Checks that a file of `size` bytes holds exactly `expected` records of `record`
 * bytes; the official files have exact counts, so a short one is damaged, not small. */
static p7_status check_record_count(const char *path, long long size, size_t record, size_t expected)
{
    size_t whole = (size_t)((uint64_t)size / record), partial = (size_t)((uint64_t)size % record);
    if (partial != 0)
        return p7_fail(P7_ERROR_FORMAT,
                       "%s: size %lld is not a multiple of the record size %zu: %zu records and a "
                       "partial one of %zu bytes, expected %zu records (%zu bytes)",
                       path, size, record, whole, partial, expected, expected * record);
    if (whole != expected)
        return p7_fail(P7_ERROR_FORMAT, "%s: holds %zu records, expected %zu (size %lld, expected %zu bytes)",
                       path, whole, expected, size, expected * record);
    return P7_SUCCESS;
}

/* The file checks (it exists, is a regular file, and holds exactly `expected` records
 * when that is not 0) before the records. */
static p7_status load_record_file(const char *path, size_t record, size_t expected, int label_bytes,
                                  const int *limits, const char *const *label_what, int use, p7_label_mode mode,
                                  int classes, p7_dataset *ds)
{
    if (!path || !ds) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "CIFAR loader: NULL argument");
    struct stat st;
    if (stat(path, &st) != 0)
        return p7_fail(P7_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return p7_fail(P7_ERROR_IO, "%s: not a regular file", path);
    if (expected != 0) P7_TRY(check_record_count(path, (long long)st.st_size, record, expected));
    FILE *f = fopen(path, "rb");
    if (!f) return p7_fail(P7_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    p7_status result = load_records(f, (uint64_t)st.st_size, path, record, label_bytes, limits, label_what, use,
                                    mode, classes, ds);
    fclose(f);
    return result;
}

static const int cifar10_limits[1] = {10};
static const char *const cifar10_label_what[1] = {"class"};
static const int cifar100_limits[2] = {20, 100};
static const char *const cifar100_label_what[2] = {"coarse", "fine"};

static int cifar100_mode_valid(p7_label_mode mode)
{
    return mode == P7_LABELS_FINE || mode == P7_LABELS_COARSE || mode == P7_LABELS_CIFAR20;
}

p7_status p7_cifar10_load_stream(FILE *f, uint64_t size, const char *name, p7_dataset *dataset)
{
    if (!f || !name || !dataset) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "CIFAR-10 loader: NULL argument");
    return load_records(f, size, name, P7_CIFAR10_RECORD, 1, cifar10_limits, cifar10_label_what, 0,
                        P7_LABELS_FINE, 10, dataset);
}

p7_status p7_cifar100_load_stream(FILE *f, uint64_t size, const char *name, p7_label_mode mode,
                                  p7_dataset *dataset)
{
    if (!f || !name || !dataset) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "CIFAR-100 loader: NULL argument");
    if (!cifar100_mode_valid(mode))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: unknown CIFAR-100 label mode %d", name, (int)mode);
    int fine = mode == P7_LABELS_FINE;
    return load_records(f, size, name, P7_CIFAR100_RECORD, 2, cifar100_limits, cifar100_label_what,
                        fine ? 1 : 0, mode, fine ? 100 : 20, dataset);
}

static p7_status load_cifar10_file(const char *path, size_t expected, p7_dataset *dataset)
{
    return load_record_file(path, P7_CIFAR10_RECORD, expected, 1, cifar10_limits, cifar10_label_what, 0,
                            P7_LABELS_FINE, 10, dataset);
}

static p7_status load_cifar100_file(const char *path, p7_label_mode mode, size_t expected, p7_dataset *dataset)
{
    if (!cifar100_mode_valid(mode))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: unknown CIFAR-100 label mode %d",
                       path ? path : "(null)", (int)mode);
    int fine = mode == P7_LABELS_FINE;
    return load_record_file(path, P7_CIFAR100_RECORD, expected, 2, cifar100_limits, cifar100_label_what,
                            fine ? 1 : 0, mode, fine ? 100 : 20, dataset);
}

p7_status p7_cifar10_load_file(const char *path, p7_dataset *dataset)
{
    return load_cifar10_file(path, 0, dataset);
}

p7_status p7_cifar100_load_file(const char *path, p7_label_mode mode, p7_dataset *dataset)
{
    return load_cifar100_file(path, mode, 0, dataset);
}

static void load_names(p7_dataset *ds, const char *dir, const char *file, const int *order)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char (*names)[P7_CLASS_NAME_MAX] = calloc((size_t)ds->classes, sizeof *names);
    char line[256];
    int n = 0;
    while (names && n < ds->classes && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        int at = order ? order[n] : n;
        snprintf(names[at], P7_CLASS_NAME_MAX, "%.*s", P7_CLASS_NAME_MAX - 1, line);
        n++;
    }
    fclose(f);
    if (names && n == ds->classes) ds->class_names = names;
    else free(names);
}

p7_status p7_cifar10_load_counted(const char *dir, p7_split_part part, size_t records_per_file,
                                  p7_dataset *out)
{
    if (!dir || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "CIFAR-10 load: NULL argument");
    if (records_per_file == 0)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "CIFAR-10 load: zero records per file expected");
    p7_dataset ds = {0};
    char path[4096];
    if (part == P7_SPLIT_TRAIN) {
        for (int b = 1; b <= 5; b++) {
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b);
            p7_status st = load_cifar10_file(path, records_per_file, &ds);
            if (st != P7_SUCCESS) {
                p7_dataset_free(&ds);
                return st;
            }
        }
    } else {
        snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        p7_status st = load_cifar10_file(path, records_per_file, &ds);
        if (st != P7_SUCCESS) {
            p7_dataset_free(&ds);
            return st;
        }
    }
    snprintf(ds.name, sizeof ds.name, "cifar10-%s", part == P7_SPLIT_TRAIN ? "train" : "test");
    load_names(&ds, dir, "batches.meta.txt", NULL);
    if (!ds.class_names) {
        ds.class_names = calloc(10, sizeof *ds.class_names);
        for (int c = 0; ds.class_names && c < 10; c++)
            snprintf(ds.class_names[c], P7_CLASS_NAME_MAX, "%s", cifar10_names[c]);
    }
    p7_dataset_free(out);
    *out = ds;
    return P7_SUCCESS;
}

p7_status p7_cifar10_load(const char *dir, p7_split_part part, p7_dataset *out)
{
    return p7_cifar10_load_counted(dir, part, P7_CIFAR10_RECORDS_PER_FILE, out);
}

p7_status p7_cifar100_load_counted(const char *dir, p7_split_part part, p7_label_mode mode,
                                   size_t records, p7_dataset *out)
{
    if (!dir || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "CIFAR-100 load: NULL argument");
    if (records == 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "CIFAR-100 load: zero records expected");
    p7_dataset ds = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, part == P7_SPLIT_TRAIN ? "train.bin" : "test.bin");
    p7_status st = load_cifar100_file(path, mode, records, &ds);
    if (st != P7_SUCCESS) {
        p7_dataset_free(&ds);
        return st;
    }
    const char *prefix = mode == P7_LABELS_FINE ? "cifar100" : mode == P7_LABELS_COARSE ? "cifar100-coarse" : "cifar20";
    snprintf(ds.name, sizeof ds.name, "%s-%s", prefix, part == P7_SPLIT_TRAIN ? "train" : "test");
    if (mode == P7_LABELS_FINE) {
        load_names(&ds, dir, "fine_label_names.txt", NULL);
    } else {
        int order[20];
        for (int c = 0; c < 20; c++) order[c] = mode == P7_LABELS_CIFAR20 ? p7_cifar20_of_coarse(c) : c;
        load_names(&ds, dir, "coarse_label_names.txt", order);
    }
    p7_dataset_free(out);
    *out = ds;
    return P7_SUCCESS;
}

p7_status p7_cifar100_load(const char *dir, p7_split_part part, p7_label_mode mode, p7_dataset *out)
{
    return p7_cifar100_load_counted(dir, part, mode,
                                    part == P7_SPLIT_TRAIN ? P7_CIFAR100_TRAIN_RECORDS : P7_CIFAR100_TEST_RECORDS,
                                    out);
}
