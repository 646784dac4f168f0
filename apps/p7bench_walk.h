/* Walking a study's cells: in this process, or in `--jobs` worker processes, one device
 * each, that share the folder.
 *
 * Every walker goes through the cells in the grid's order and runs each one that has no
 * finished row (ok or diverged, in results.csv or the cell's result.csv) and that it can
 * claim (p7bench_cell_list.h: a flock on the cell's claim.lock, held while it trains and
 * dropped by the kernel if the walker dies). N walkers on one folder therefore each take
 * the next unfinished cell, never the same one, whether they are --jobs workers, array
 * tasks or a user's second shell. */
#ifndef P7BENCH_WALK_H
#define P7BENCH_WALK_H

#include <stddef.h>

#include "p7bench_cell_run.h"

typedef struct p7bench_walk {
    p7bench_cell_result *results; /* the rows of the cells run here (count: ran); may be NULL */
    size_t ran, busy;             /* cells run here; cells skipped as another process's */
    int any_failed, any_diverged;
    int interrupted;              /* the signal that stopped the walk, or 0 */
} p7bench_walk;

/* Runs the cells not finished (done: the rows results.csv held when the study started)
 * with runner's device and folder. walk->results, when not NULL, needs room for count rows.
 * prefix starts each of the walker's own console lines ("" or "worker 2: "). */
void p7bench_walk_cells(p7bench_runner *runner, const p7bench_cell *const *cells, size_t count,
                        const p7bench_cell_result *done, size_t done_count, const char *prefix, p7bench_walk *walk);

/* The walk's exit code: 128 + signal when stopped, else 1 any failed, 3 any diverged, 0. */
int p7bench_walk_exit_code(const p7bench_walk *walk);

/* `--jobs N`: the workers' devices (the OpenCL probe runs in a child process: OpenCL is
 * not to be started in a process that forks workers afterwards), then one worker process
 * per device, each opening its device and walking the cells; Ctrl-C or SIGTERM to this
 * process is passed to every worker, which checkpoints as a single run does (a second
 * Ctrl-C kills them). Returns the exit code (the workers' worst, as p7bench_walk_exit_code),
 * or -1 with *single_spec set when the work should rather run in this process on that one
 * device (one device only; the line saying so is printed). */
int p7bench_run_jobs(const p7bench_runner *base, const char *spec, const char *devices, size_t jobs,
                     const p7_device_options *options, const p7bench_cell *const *cells, size_t count,
                     const p7bench_cell_result *done, size_t done_count, char *single_spec, size_t spec_size);

#endif
