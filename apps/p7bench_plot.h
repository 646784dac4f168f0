/* `p7bench plot DIR`: draws a study folder's plots from its files alone (study.conf,
 * results.csv, cells/<id>/reliability.csv) with gnuplot, as SVG and PNG in DIR/plots/, and
 * writes DIR/summary.md: the results table and the plots. The gnuplot script and its data
 * files stay in DIR/plots/ (plots.gp), so a figure can be restyled by hand.
 *
 * Without gnuplot on PATH it prints one notice line, still writes summary.md (the table,
 * no images) and succeeds: a study that ran for days must not fail at its last step. */
#ifndef P7BENCH_PLOT_H
#define P7BENCH_PLOT_H

/* argv[0] is "plot", argv[1] the study folder. Returns the exit code: 0 done, 1 a file
 * could not be read or written or gnuplot failed, 2 bad arguments. */
int p7bench_plot_main(int argc, char **argv);

/* The same for callers that have the folder: a study driver redraws after each cell. */
int p7bench_plot_study(const char *dir);

#endif
