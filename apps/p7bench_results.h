/* p7bench's results files: CSV tables that several runs may append to at once.
 *
 * A results file is shared by every run pointed at it, often started together (a shell
 * loop with '&', a job array on one file system). Each write therefore takes an exclusive
 * flock(2): the header is written by exactly one run, and each row goes out whole in one
 * write(2), so a kill at any instant leaves complete rows only. A file that already holds
 * another table (an older p7bench's columns, or not a p7bench file) is refused rather than
 * appended to, so its rows are never mixed with rows of another shape. */
#ifndef P7BENCH_RESULTS_H
#define P7BENCH_RESULTS_H

#include <stddef.h>

typedef struct p7bench_results p7bench_results;

/* Opens `path` for appending (creating missing parent folders), writes `header` (one line,
 * without '\n') when the file is empty, or checks that its first line equals it. Returns 0,
 * or nonzero with a one-line reason in err. */
int p7bench_results_open(const char *path, const char *header, p7bench_results **out, char *err, size_t err_size);

/* Appends one row (without '\n') under the lock. Returns 0, or nonzero with a reason. */
int p7bench_results_append(p7bench_results *results, const char *row, char *err, size_t err_size);

void p7bench_results_close(p7bench_results *results); /* NULL is a no-op */

#endif
