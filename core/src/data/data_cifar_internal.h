/* The CIFAR whole-split loaders with the record count per file as a parameter.
 * The public p7_cifar10_load / p7_cifar100_load pass the official counts; tests pass
 * small ones to check the directory layout on small files. Not installed. */
#ifndef P7_DATA_CIFAR_INTERNAL_H
#define P7_DATA_CIFAR_INTERNAL_H

#include <stddef.h>

#include "p7/data.h"

/* The official record counts: every CIFAR-10 batch file holds 10,000; CIFAR-100's
 * train.bin 50,000 and test.bin 10,000. */
#define P7_CIFAR10_RECORDS_PER_FILE 10000
#define P7_CIFAR100_TRAIN_RECORDS 50000
#define P7_CIFAR100_TEST_RECORDS 10000

/* As p7_cifar10_load, but each of data_batch_1..5.bin (train) or test_batch.bin
 * (test) must hold exactly `records_per_file` records. */
p7_status p7_cifar10_load_counted(const char *dir, p7_split_part part, size_t records_per_file,
                                  p7_dataset *out);

/* As p7_cifar100_load, but train.bin or test.bin must hold exactly `records` records. */
p7_status p7_cifar100_load_counted(const char *dir, p7_split_part part, p7_label_mode mode,
                                   size_t records, p7_dataset *out);

#endif
