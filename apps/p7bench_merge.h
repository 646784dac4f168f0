/* `p7bench merge DIR`: one results table from whatever the cells of a study folder wrote.
 *
 * Every process that finishes a cell writes its row twice: to DIR/cells/<id>/result.csv
 * (that cell's latest row) and appended to DIR/results.csv. On a cluster the shared file
 * collects rows in completion order from many nodes, and cell folders copied together
 * from several runs bring rows it never saw. Merge rebuilds results.csv from both: one row
 * per cell, in DIR/cells.list's order (the grid's), then any cell the list does not name;
 * of several rows of one cell the last ok or diverged one wins (a cell retried after a
 * failure), else the last. The new file replaces the old one by rename while merge holds
 * the old one's lock; a writer appending later notices and follows the new file
 * (p7bench_results.h). Then it redraws the plots and summary.md (p7bench_plot.h) and
 * lists the cells that are missing, failed or diverged, with the commands that run them
 * again: the listing command with --cell, and `sbatch --array=...` when DIR/slurm holds
 * the study's script. */
#ifndef P7BENCH_MERGE_H
#define P7BENCH_MERGE_H

#include <stddef.h>

typedef struct p7bench_merge_counts {
    size_t cells, ok, diverged, failed, missing;
} p7bench_merge_counts;

/* Rebuilds DIR/results.csv as above; counts (may be NULL) receives the tally. With
 * `report`, prints the tally, the cells not ok and the rerun commands to stdout. Returns 0,
 * or nonzero after printing why (a file that cannot be read or written). */
int p7bench_merge_folder(const char *dir, int report, p7bench_merge_counts *counts);

/* argv[0] is "merge", argv[1] the folder. Exit code: 0 every listed cell ok, 3 some
 * diverged and none missing or failed, 1 cells missing or failed (or an error), 2 bad
 * arguments. */
int p7bench_merge_main(int argc, char **argv);

#endif
