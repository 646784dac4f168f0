/* What the fuzz targets and the seed writer share: the invariant check, input as a
 * stream, and the small model and optimizers the state-file targets load into. */
#ifndef P7_FUZZ_SUPPORT_H
#define P7_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "p7/p7.h"

/* A broken invariant is a finding: print it and abort, so libFuzzer saves the input. */
#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fuzz_fail(#cond, __FILE__, __LINE__))
void fuzz_fail(const char *what, const char *file, int line);

/* A read-only stream over `size` bytes (any size, 0 included); fclose it. */
FILE *fuzz_stream(const uint8_t *data, size_t size);

/* Collects everything written to a stream in memory. */
typedef struct fuzz_buffer {
    char *data;
    size_t size;
    FILE *f;
} fuzz_buffer;
void fuzz_buffer_open(fuzz_buffer *b);
void fuzz_buffer_close(fuzz_buffer *b); /* closes the stream; data/size stay valid until fuzz_buffer_free */
void fuzz_buffer_free(fuzz_buffer *b);

/* PoCL's LLVM installs its own handlers for crash signals when it first compiles a
 * kernel, and they re-raise without libFuzzer's: the crash would go unreported and
 * its input unsaved. A target that uses the device saves the handlers before its
 * set-up and restores them after. */
void fuzz_signals_save(void);
void fuzz_signals_restore(void);

/* The CPU device (P7_DEVICE, else PoCL), opened once per process; aborts on failure. */
p7_device *fuzz_device(void);

/* A small model with parameters and BatchNorm buffers; state set from `seed`. */
p7_model *fuzz_model(p7_device *device, uint64_t seed);

/* The optimizers the state-file target loads into, one per bundled plugin. */
enum { FUZZ_OPTIMIZERS = 3 };
extern const char *const fuzz_optimizer_names[FUZZ_OPTIMIZERS];

/* The plugin file of a bundled optimizer, by short name. */
const char *fuzz_plugin_path(const char *name);

/* Optimizer `which` for `model`, with non-default hyperparameters and random slots. */
p7_optimizer *fuzz_optimizer(p7_model *model, int which);

#endif
