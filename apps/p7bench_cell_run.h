/* One study cell run to its end through checkpoints: used by `p7bench run` and every study.
 *
 * A cell's settings become a network, an optimizer with its recipe and a trainer
 * (p7bench_cell_options, no device). Running it (p7bench_cell_run) writes after every epoch
 * DIR/cells/<id>/checkpoint.p7: the cell's canonical configuration, the trainer's state
 * (epochs, steps, early stopping, and mid-epoch the batch and the loss sum), the per-epoch
 * records so far, the model, the optimizer's state (through the plugin) and the early-
 * stopping best weights, written to a temporary file, synced and renamed over the old one.
 * A rerun resumes from it and ends bit for bit as an uninterrupted run on the same device;
 * a checkpoint of another configuration is refused, naming the setting that differs.
 * SIGINT or SIGTERM (p7bench_catch_interrupt) stops after the current step and writes a mid-epoch
 * checkpoint. When a cell ends, its row goes to results.csv and the checkpoint is removed. */
#ifndef P7BENCH_CELL_RUN_H
#define P7BENCH_CELL_RUN_H

#include <stdio.h>

#include "p7/p7.h"
#include "p7bench_cells.h"
#include "p7bench_study_results.h"
#include "p7bench_train.h"

/* The command-line settings that are not a cell's: where the data is. */
typedef struct p7bench_data_choice {
    const char *data_dir; /* --data or NULL */
    int dataset_given;    /* --dataset was given: no synthetic fallback */
} p7bench_data_choice;

/* A cell's settings into training options (strings point into cell). Then checks the
 * optimizer's recipe and the data without a device. Returns 0, or P7BENCH_FAILED /
 * P7BENCH_USAGE after printing what is wrong. */
int p7bench_cell_options(const p7bench_cell *cell, const p7bench_data_choice *data, int verbose,
                         p7bench_train_options *options, p7bench_plan *plan);

typedef struct p7bench_data_cache p7bench_data_cache;

/* What every cell of one process shares. */
typedef struct p7bench_runner {
    p7_device *device;
    const char *study;
    p7bench_study_folder *folder;
    p7bench_data_choice data;
    int live;                /* stderr is a terminal: one live line per cell */
    int verbose;             /* print the optimizer's help and recipe */
    const char *resume_hint; /* the command that resumes, for the interrupt message */
    size_t cell_index, cell_count; /* for the console: cell i of n */
    p7bench_data_cache *cache;
    int profile;             /* --profile: the device profiles (profiling = 2); cells/<id>/profile.md */
    double peak_gflops;      /* --peak-gflops: replaces the cpuinfo estimate (0: the estimate) */
} p7bench_runner;

void p7bench_runner_release(p7bench_runner *runner); /* frees the data cache */

/* Runs (or resumes) one cell and appends its row to results.csv; *result (may be NULL)
 * receives it (release with p7bench_cell_result_release). Returns P7BENCH_OK,
 * P7BENCH_DIVERGED, P7BENCH_FAILED (its row says failed) or P7BENCH_INTERRUPTED (SIGINT:
 * the checkpoint is written, no row). */
int p7bench_cell_run(p7bench_runner *runner, const p7bench_cell *cell, p7bench_cell_result *result);

/* SIGINT and SIGTERM set a flag that the runner checks after every training step; a
 * second SIGINT ends the process at once (the handler resets itself), a second SIGTERM
 * changes nothing (SIGKILL ends at once). */
void p7bench_catch_interrupt(void);
int p7bench_interrupted(void);
int p7bench_interrupt_signal(void); /* the signal that stopped the run (SIGINT, SIGTERM), or 0 */

#endif
