/* Internal to libp7: the data loaders' parsers over a stream or a byte buffer, so
 * the fuzzers (fuzz/) and tests reach the same code the file loaders run. */
#ifndef P7_DATA_INTERNAL_H
#define P7_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "p7/data.h"
#include "p7/status.h"

/* Appends the CIFAR records of `f`, which holds `size` bytes; `name` names it in
 * messages. All or nothing, like p7_cifar10_load_file / p7_cifar100_load_file. */
p7_status p7_cifar10_load_stream(FILE *f, uint64_t size, const char *name, p7_dataset *dataset);
p7_status p7_cifar100_load_stream(FILE *f, uint64_t size, const char *name, p7_label_mode mode,
                                  p7_dataset *dataset);

/* Parses the label JSON text (`len` bytes, no terminator needed) of p7_read_label_json. */
p7_status p7_label_json_parse(const char *text, size_t len, const char *name, int32_t **labels, size_t *count);

/* p7_cifar10_png_convert's work: reads the PNG from `in` (named `in_name`) and writes
 * the records to `out` (named `out_name`); leaves opening, closing and renaming to
 * the caller. On error `out` holds a partial result the caller must discard. */
p7_status p7_cifar10_png_convert_stream(FILE *in, const char *in_name, const int32_t *labels, size_t label_count,
                                        FILE *out, const char *out_name);

#endif
