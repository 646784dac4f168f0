/* A study's results folder, and the files in it that the original's notebooks, `p7bench
 * plot` and a resumed study read back.
 *
 *   DIR/study.conf              the study and its settings (canonical text, p7bench_cells.h);
 *                               a later run into DIR with other settings is refused, naming
 *                               the first setting that differs (seeds and the cell choice may
 *                               differ: they add cells, they do not change them)
 *   DIR/results.csv             one row per finished cell (a rerun appends another; the last
 *                               row of a cell wins)
 *   DIR/cells/<id>/cell.conf    the cell's canonical text
 *   DIR/cells/<id>/epochs.csv   one row per epoch, every per-epoch metric
 *   DIR/cells/<id>/console.log  the run's console output (written by the study driver)
 *   DIR/cells/<id>/checkpoint.p7  reserved for the trainer's checkpoint
 *   DIR/cells/<id>/reliability.csv  the final test's calibration bins, when measured
 *   DIR/cells/<id>/result.csv   the cell's latest row (with the header)
 *   DIR/cells/<id>/claim.lock   flock(2)ed by the process running the cell (p7bench_cell_list.h)
 *   DIR/cells.list              every cell run into DIR, in the order first run (p7bench_cell_list.h)
 *
 * Every row is written whole: one write(2) of the complete line, under flock(2), on a file
 * opened O_APPEND (p7bench_results.h). A kill at any instant leaves whole rows plus at most
 * one partial last line, and the readers here skip a last line without its '\n'. Two
 * processes writing into one folder each append whole rows.
 *
 * results.csv starts with the original's columns in the original's order (seed-study
 * 10.1), numbers spelled as Python's repr and lists as Python's list repr in a quoted
 * field, so ParameterTesting_Optimizer_plots.ipynb reads it unchanged. The two modes:
 *   parameter: seed,alpha_init,gamma_init,ensemble_size,num_epochs,batch_size,lr,model_type,
 *              final_test_accuracy,avg_test_accuracy,final_losses,avg_losses
 *   optimizer: ensemble_size,num_epochs,batch_size,lr,model_type,train_loss,val_loss,
 *              train_acc,val_acc
 * then the other mode's columns, then p7's (docs/studies.md lists them all). */
#ifndef P7BENCH_STUDY_RESULTS_H
#define P7BENCH_STUDY_RESULTS_H

#include <stddef.h>

#include "p7bench_cells.h"

/* The largest ensemble whose members' accuracies an epoch record keeps (p7's metrics' limit). */
#define P7BENCH_MEMBERS_MAX 32

/* One epoch. Accuracies in percent (as the original), losses mean cross-entropy (NLL), ECE,
 * Brier and diversity fractions; NaN where not measured (no validation split, no per-epoch
 * test, no BMA, grad_norm without clipping). The first eight fields are the original's
 * per-epoch lists (results.csv); train_acc stays NaN unless read from a file that has it:
 * p7's trainer does not measure it, so epochs.csv has no such column. */
typedef struct p7bench_epoch_record {
    long long epoch; /* 1-based */
    double train_loss, train_acc;
    double val_loss, val_acc;
    double test_loss, test_acc;
    double seconds;  /* wall time of the epoch, evaluation included */
    /* p7's: the rest of p7_epoch_report */
    long long step;  /* optimizer steps so far */
    double lr, grad_norm, images_per_s;
    double val_ece, val_brier, val_diversity;
    double test_ece, test_brier, test_diversity;
    int val_members, test_members; /* members whose accuracies are known; 0: none */
    double val_member_acc[P7BENCH_MEMBERS_MAX], test_member_acc[P7BENCH_MEMBERS_MAX];
    long long bma_samples;          /* 0: no Bayesian model average this epoch */
    double bma_acc, bma_nll, bma_ece;
    char outcome[16];               /* "ok", "early_stop", "diverged" */
} p7bench_epoch_record;

/* Epoch `epoch` with nothing measured: NaN metrics, no members, outcome "ok". */
void p7bench_epoch_record_init(p7bench_epoch_record *record, long long epoch);

/* One cell's result. The arrays are owned (p7bench_cell_result_release). */
typedef struct p7bench_cell_result {
    char cell[P7BENCH_ID_MAX], label[P7BENCH_ID_MAX], study[P7BENCH_STUDY_MAX];
    char model[64], optimizer[P7BENCH_VALUE_MAX], dataset[32];
    char device[256];
    char status[16];              /* "ok", "diverged" or "failed" */
    long long seed, members, num_epochs, batch;
    double alpha_init, gamma_init; /* NaN for a plain network (an empty field) */
    double lr;

    size_t epoch_count;
    p7bench_epoch_record *epochs;

    double final_test_acc;          /* % on the test set after training */
    double test_nll, test_ece, test_brier; /* ECE and Brier as fractions */
    size_t member_count;
    double *member_acc;             /* % per member */
    double diversity;               /* mean pairwise disagreement of members' predictions */
    long long params_unique, params_used, params_shared; /* -1: unknown */
    double seconds, images_per_s;
    long long peak_device_bytes;    /* -1: unknown */
    char hparams[1024], schedule[256]; /* the optimizer's hyperparameters and the schedule trained with */
    long long bma_samples;          /* IVON's Bayesian model average over this many samples; 0: none */
    double bma_test_acc, bma_test_nll, bma_test_ece; /* % and fractions; NaN: none */

    /* The derived columns avg_test_accuracy, final_losses and avg_losses as read from a
     * results.csv; the writer recomputes them from the epochs, and these are NaN unless
     * read (they let a file without per-epoch lists, as the original's, be plotted). */
    double read_avg_test_acc, read_final_loss, read_avg_loss;
} p7bench_cell_result;

/* The derived metrics: from the epochs when they hold the value, else as read. */
double p7bench_result_avg_test_acc(const p7bench_cell_result *result);
double p7bench_result_final_loss(const p7bench_cell_result *result); /* the last epoch's training loss */
double p7bench_result_avg_loss(const p7bench_cell_result *result);   /* the mean training loss */

/* A calibration bin of the final test (equal-width confidence bins). */
typedef struct p7bench_reliability_bin {
    double lower, upper;  /* the bin's confidence range */
    long long count;      /* predictions in the bin */
    double confidence;    /* their mean confidence, 0..1 */
    double accuracy;      /* the fraction of them that is right, 0..1 */
} p7bench_reliability_bin;

typedef struct p7bench_study_folder p7bench_study_folder;

typedef struct p7bench_cell_paths {
    char dir[4000]; /* leaves room for the file names below */
    char conf[4096], epochs_csv[4096], console_log[4096], checkpoint[4096], reliability_csv[4096], result_csv[4096];
} p7bench_cell_paths;

/* Fills what the cell's configuration says (names, seed, members, epochs, batch, alpha,
 * gamma, lr); metrics NaN or -1, status "failed" until the run says otherwise. */
void p7bench_cell_result_init(p7bench_cell_result *result, const char *study, const p7bench_cell *cell);
int p7bench_cell_result_add_epoch(p7bench_cell_result *result, const p7bench_epoch_record *epoch);
int p7bench_cell_result_set_members(p7bench_cell_result *result, const double *member_acc, size_t count);
void p7bench_cell_result_release(p7bench_cell_result *result); /* NULL-safe */

/* Creates DIR and DIR/cells, writes or checks DIR/study.conf, opens DIR/results.csv with
 * the plan's header. Returns 0, or nonzero with a one-line reason. */
int p7bench_study_folder_open(const char *dir, const p7bench_study_plan *plan, p7bench_study_folder **out, char *err,
                              size_t err_size);
void p7bench_study_folder_close(p7bench_study_folder *folder); /* NULL-safe */
const char *p7bench_study_folder_dir(const p7bench_study_folder *folder);

/* Creates DIR/cells/<id>/ with its cell.conf and gives the cell's file paths. */
int p7bench_study_folder_cell(p7bench_study_folder *folder, const p7bench_cell *cell, p7bench_cell_paths *paths,
                              char *err, size_t err_size);

/* Writes the cell's row to DIR/cells/<id>/result.csv (the header and that row, replaced
 * atomically: the cell's latest result) and then appends it to DIR/results.csv. The
 * cell's copy is what `p7bench merge` rebuilds results.csv from, whatever happened to
 * the shared file (tasks on several nodes, folders copied together). */
int p7bench_study_folder_append(p7bench_study_folder *folder, const p7bench_cell_result *result, char *err,
                                size_t err_size);

/* results.csv's header for a mode, and one row (malloc'd, without '\n'). */
const char *p7bench_results_header(p7bench_csv_mode mode);
char *p7bench_results_row(const p7bench_cell_result *result, p7bench_csv_mode mode);

/* Reads a results.csv of either mode (columns found by name; unknown columns ignored; a
 * last line without '\n' skipped). A row without a cell column (the original's files) is
 * named row-N after its line. *rows is malloc'd; free with p7bench_results_free. */
int p7bench_results_read(const char *path, p7bench_cell_result **rows, size_t *count, char *err, size_t err_size);
void p7bench_results_free(p7bench_cell_result *rows, size_t count);

/* epochs.csv: one row per epoch, every metric of the epoch's report (docs/studies.md):
 * "epoch,step,lr,train_loss,grad_norm,val_acc,val_nll,val_ece,val_brier,val_diversity,
 * val_member_acc,test_acc,test_nll,test_ece,test_brier,test_diversity,test_member_acc,
 * bma_samples,bma_acc,bma_nll,bma_ece,images_per_s,seconds,outcome"; member accuracies as
 * one field "68.5;69.25" (empty when unknown), bma_samples empty when there is no BMA.
 * append: one row, the header first on an empty file (a live log, one row per epoch);
 * write: the whole file from result->epochs, replaced atomically (rename);
 * read: into result->epochs (replacing them). */
int p7bench_epochs_append(const char *path, const p7bench_epoch_record *epoch, char *err, size_t err_size);
int p7bench_epochs_write(const char *path, const p7bench_cell_result *result, char *err, size_t err_size);
int p7bench_epochs_read(const char *path, p7bench_cell_result *result, char *err, size_t err_size);

/* reliability.csv: "bin_lower,bin_upper,count,mean_confidence,accuracy", one row per bin.
 * write replaces the file atomically; read gives a malloc'd array. */
int p7bench_reliability_write(const char *path, const p7bench_reliability_bin *bins, size_t count, char *err,
                              size_t err_size);
int p7bench_reliability_read(const char *path, p7bench_reliability_bin **bins, size_t *count, char *err,
                             size_t err_size);

/* Replaces `path` by `content` atomically (a temporary file renamed over it): a reader
 * sees the old file or the new one. */
int p7bench_file_replace(const char *path, const char *content, char *err, size_t err_size);

/* A comma-separated table (RFC 4180 quoting) read whole: records of fields. Used by the
 * readers above and by `p7bench plot`. A last line without '\n' is not a record. */
typedef struct p7bench_csv {
    size_t rows, *field_counts;
    char ***fields; /* fields[row][i] */
} p7bench_csv;
int p7bench_csv_read(const char *path, p7bench_csv *csv, char *err, size_t err_size);
void p7bench_csv_free(p7bench_csv *csv);
int p7bench_csv_column(const p7bench_csv *csv, const char *name); /* in row 0, or -1 */

#endif
