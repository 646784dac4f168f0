/* p7bench's studies as grids of cells.
 *
 * A cell is one training run: a study name plus a configuration, a set of key=value
 * settings (model, members, lr, ...). Its canonical text lists the settings sorted by key,
 * numbers in one spelling (p7bench_format_number: 2e-4 and 0.00020 are both 0.0002), and
 * leaves out settings at their neutral value (limit=0, width=1, ...), so that a key added
 * later with a neutral default changes no existing id. The id is a readable prefix (the
 * study's short name and the values that set this cell apart) plus 8 hex digits of a hash
 * of the canonical text: ag-a0.2-g-0.5-3f9c1a2b. The same configuration gives the same id
 * whatever the order of the flags; another study or configuration gives another.
 *
 * Each study is a table (p7bench_cells.c): its defaults, the axes of its grid, and the
 * results CSV layout. Overrides are key=value texts that every study accepts: a key that
 * is an axis of the study takes one value or a comma-separated list (the grid then runs
 * over those values); any other key pins that setting in every cell. Two selectors choose
 * cells without being part of a configuration: seeds=N repeats each grid point with seeds
 * seed, seed+1, ..., seed+N-1, and pairs=diagonal|all picks the combined sharing regime's
 * (intra, inter) pairs. */
#ifndef P7BENCH_CELLS_H
#define P7BENCH_CELLS_H

#include <stddef.h>
#include <stdio.h>

#define P7BENCH_KEY_MAX 32
#define P7BENCH_VALUE_MAX 256
#define P7BENCH_SETTINGS_MAX 32
#define P7BENCH_ID_MAX 128
#define P7BENCH_STUDY_MAX 32

/* The results CSV's leading columns: those of the original's save_results_to_csv mode
 * (seed-study 10.1). p7bench_study_results.h lists them. */
typedef enum p7bench_csv_mode { P7BENCH_CSV_PARAMETER, P7BENCH_CSV_OPTIMIZER } p7bench_csv_mode;

typedef struct p7bench_setting {
    char key[P7BENCH_KEY_MAX];
    char value[P7BENCH_VALUE_MAX];
} p7bench_setting;

/* Settings sorted by key, each key once. */
typedef struct p7bench_config {
    size_t count;
    p7bench_setting items[P7BENCH_SETTINGS_MAX];
} p7bench_config;

typedef struct p7bench_cell {
    char id[P7BENCH_ID_MAX];
    char label[P7BENCH_ID_MAX]; /* the id's readable part without the seed: a group of seeds */
    p7bench_config config;      /* every setting of this run, neutral ones included */
} p7bench_cell;

typedef struct p7bench_study_plan {
    char study[P7BENCH_STUDY_MAX];
    p7bench_csv_mode csv_mode;
    p7bench_config config; /* study level: axes hold their value lists ("alpha=-1,-0.8,...") */
    size_t count;
    p7bench_cell *cells;   /* in run order: seeds outermost, then the axes, first axis outer */
} p7bench_study_plan;

/* The studies, NULL-terminated: alpha-gamma, ensemble-size, optimizers, sharing, run, quick. */
const char *const *p7bench_study_names(void);

/* The cells of `study` under `overrides` ("key=value" texts, any order). Returns 0, or
 * nonzero with a one-line reason naming the study, key and value at fault in err. */
int p7bench_study_plan_make(const char *study, const char *const *overrides, size_t override_count,
                            p7bench_study_plan *plan, char *err, size_t err_size);
void p7bench_study_plan_release(p7bench_study_plan *plan); /* NULL-safe, idempotent */

/* The cell with this id, or NULL with a reason (which study the id belongs to, if another;
 * how to list this study's cells) in err. */
const p7bench_cell *p7bench_study_find_cell(const p7bench_study_plan *plan, const char *id, char *err,
                                            size_t err_size);

/* `--list`: a comment line with the study, its cell count and the settings every cell
 * shares, then one line per cell: the id, two spaces, the settings that vary across cells
 * (key=value, space-separated). */
void p7bench_study_print_list(const p7bench_study_plan *plan, FILE *out);

/* A setting's value, or NULL when the configuration has no such key. */
const char *p7bench_config_get(const p7bench_config *config, const char *key);

/* Canonical text: "study=NAME\n" then "key=value\n" per non-neutral setting, sorted.
 * study.conf and cell.conf hold exactly this. Returns the length, or -1 if it does not fit. */
int p7bench_config_text(const char *study, const p7bench_config *config, int keep_neutral, char *out, size_t size);

/* The default results folder of a plan: results/<study>/, results/sharing-<regime>-<dataset>/. */
void p7bench_study_default_out(const p7bench_study_plan *plan, char *out, size_t size);

/* The original's model_type for a p7 model (seed-study 3): simple/batchensemble,
 * complex/batchensemble_complex for the VGG11s; other models keep their p7 name. */
const char *p7bench_original_model_type(const char *model, long long members);

#endif
