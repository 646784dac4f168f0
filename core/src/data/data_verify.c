/* The published checksums of the CIFAR files and the check of a directory. */
#include <stdio.h>
#include <string.h>

#include "runtime/digest.h"
#include "p7/data.h"
#include "tensor/tensor_internal.h"

typedef struct known_sum {
    const char *file, *sum, *alternative;
} known_sum;

/* md5s of the official cifar-10-batches-bin files. */
static const known_sum cifar10_md5[] = {
    {"data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25", NULL},
    {"data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692", NULL},
    {"data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421", NULL},
    {"data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb", NULL},
    {"data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d", NULL},
    {"test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d", NULL},
    {NULL, NULL, NULL}};

/* train.bin: the official file. test.bin: the official file, or the class-grouped
 * rebuild provided in shared/data (same records, different order). */
static const known_sum cifar100_sha256[] = {
    {"train.bin", "f31298fc616915fa142368359df1c4ca2ae984d6915ca468b998a5ec6aeebf29", NULL},
    {"test.bin", "d8b1e6b7b3bee4020055f0699b111f60b1af1e262aeb93a0b659061746f8224a",
     "0963a711c782a600e363bd27b2591918dc74a2e98edcd81325889cbdbe2d73fc"},
    {NULL, NULL, NULL}};

static const known_sum *lookup(const known_sum *table, const char *file)
{
    for (; file && table->file; table++)
        if (strcmp(table->file, file) == 0) return table;
    return NULL;
}

const char *p7_cifar10_md5(const char *file_name)
{
    const known_sum *k = lookup(cifar10_md5, file_name);
    return k ? k->sum : NULL;
}

const char *p7_cifar100_sha256(const char *file_name, const char **alternative)
{
    const known_sum *k = lookup(cifar100_sha256, file_name);
    if (alternative) *alternative = k ? k->alternative : NULL;
    return k ? k->sum : NULL;
}

static p7_status verify(const char *dir, const known_sum *table, p7_digest_kind kind, const char *what)
{
    if (!dir) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s verify: no directory", what);
    for (; table->file; table++) {
        char path[4096], hex[2 * P7_SHA256_BYTES + 1];
        snprintf(path, sizeof path, "%s/%s", dir, table->file);
        P7_TRY(p7_digest_file(path, kind, hex, sizeof hex));
        if (strcmp(hex, table->sum) != 0 && !(table->alternative && strcmp(hex, table->alternative) == 0))
            return p7_fail(P7_ERROR_CHECKSUM, "%s: %s is %s, expected %s%s%s", path,
                           kind == P7_DIGEST_MD5 ? "md5" : "sha256", hex, table->sum,
                           table->alternative ? " or " : "", table->alternative ? table->alternative : "");
    }
    return P7_SUCCESS;
}

p7_status p7_cifar10_verify(const char *dir)
{
    return verify(dir, cifar10_md5, P7_DIGEST_MD5, "CIFAR-10");
}

p7_status p7_cifar100_verify(const char *dir)
{
    return verify(dir, cifar100_sha256, P7_DIGEST_SHA256, "CIFAR-100");
}

p7_status p7_data_file_digest(const char *path, const char *algorithm, char *hex, size_t size)
{
    if (!algorithm) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "file digest: no algorithm");
    if (strcmp(algorithm, "md5") == 0) return p7_digest_file(path, P7_DIGEST_MD5, hex, size);
    if (strcmp(algorithm, "sha256") == 0) return p7_digest_file(path, P7_DIGEST_SHA256, hex, size);
    return p7_fail(P7_ERROR_INVALID_ARGUMENT, "file digest: unknown algorithm '%s' (md5, sha256)", algorithm);
}
