/* A study folder's cell list and its per-cell claims: what lets many processes (a SLURM
 * job array, `--jobs` workers, a user's second shell) share one folder.
 *
 *   DIR/cells.list   every cell ever run (or emitted) into DIR, one id per line, in the
 *                    order first listed. Runs only append, under flock(2), so line k (from
 *                    0, comment lines aside) names the same cell for the folder's life: a
 *                    SLURM array index is such a k. Before each batch of lines a run adds
 *                    two comment lines, "# cwd: DIR" and "# command: ARGS", the command
 *                    (binary by absolute path, --out absolute, no cell selection) that runs
 *                    these cells again; `p7bench merge` prints it for the cells still to run.
 *   DIR/cells/<id>/claim.lock
 *                    flock(2)ed (LOCK_EX|LOCK_NB) by the process that trains the cell, for as
 *                    long as it does; it holds "pid P on HOST" for the message of the one
 *                    turned away. The kernel drops the lock when the holder dies, however
 *                    it dies, so a killed worker's claim never blocks a rerun. */
#ifndef P7BENCH_CELL_LIST_H
#define P7BENCH_CELL_LIST_H

#include <stddef.h>

#include "p7bench_cells.h"

typedef struct p7bench_cell_list {
    size_t count;
    char (*ids)[P7BENCH_ID_MAX];
    const char **cwd, **command; /* per cell: the run that listed it ("" when unknown) */
    char *text;                  /* owns the strings */
} p7bench_cell_list;

/* Appends to DIR/cells.list the cells not listed yet, in the given order, after the two
 * comment lines naming `cwd` and `command`; then index[i] (may be NULL) receives cell i's
 * line index. Returns 0, or nonzero with a reason. */
int p7bench_cell_list_add(const char *dir, const p7bench_cell *const *cells, size_t count, const char *cwd,
                          const char *command, size_t *index, char *err, size_t err_size);

/* Reads DIR/cells.list. A folder without one gives an empty list and returns 0 (folders
 * written before the list existed); an unreadable one returns nonzero with a reason. */
int p7bench_cell_list_read(const char *dir, p7bench_cell_list *list, char *err, size_t err_size);
void p7bench_cell_list_free(p7bench_cell_list *list); /* idempotent */

/* The line index of `id`, or -1. */
long p7bench_cell_list_find(const p7bench_cell_list *list, const char *id);

/* Claims cell `id` of folder DIR (its folder must exist). Returns 0 with *fd the held
 * lock (release: p7bench_cell_unclaim), 1 when another live process holds it (its "pid P
 * on HOST" in holder), or -1 with a reason in err. */
int p7bench_cell_claim(const char *dir, const char *id, int *fd, char *holder, size_t holder_size, char *err,
                       size_t err_size);
void p7bench_cell_unclaim(int fd); /* -1 is a no-op */

/* Array ranges as SLURM's --array spells them: {0,1,2,5,7,8} -> "0-2,5,7-8". The indices
 * must be ascending. Returns the length, or -1 when it does not fit. */
int p7bench_array_ranges(const size_t *index, size_t count, char *out, size_t size);

#endif
