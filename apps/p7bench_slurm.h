/* `p7bench STUDY ... --emit slurm`: a study as a SLURM job array, one array task per cell.
 *
 * The script, DIR/slurm/<study>.sbatch, is ready for `sbatch`: its #SBATCH lines ask for
 * --array=<the cells' indices in DIR/cells.list>[%limit], one task, the log in
 * DIR/slurm/logs/%A_%a.out, the emitting shell's folder as working folder (relative paths
 * in the flags keep their meaning), and, only when given, the partition, time limit (then
 * also --signal=B:TERM@120: SIGTERM two minutes before the limit, so the cell checkpoints
 * mid-epoch and exits), account, GPUs, CPUs and memory per task, plus any --sbatch LINE.
 * Its body execs the p7bench binary (absolute path) with the study's flags, --out DIR
 * (absolute) and --array-task: SLURM_ARRAY_TASK_ID picks the cell of DIR/cells.list, and
 * the device follows the GPUs SLURM grants (p7bench_devices.h). Submitting it again runs
 * only what is unfinished: a finished cell's task exits 0 at once, an interrupted one
 * resumes from its checkpoint. */
#ifndef P7BENCH_SLURM_H
#define P7BENCH_SLURM_H

#include <stddef.h>

#define P7BENCH_SBATCH_EXTRA_MAX 16

typedef struct p7bench_slurm_options {
    const char *partition, *time, *account, *mem, *gpus_per_task, *cpus_per_task; /* NULL: not asked for */
    long array_limit;                              /* 0: no %limit */
    const char *extra[P7BENCH_SBATCH_EXTRA_MAX];   /* --sbatch LINE: "#SBATCH LINE" each */
    size_t extra_count;
} p7bench_slurm_options;

/* Writes DIR/slurm/<study>.sbatch (and creates DIR/slurm/logs/). dir and cwd absolute;
 * command is the quoted p7bench command line without --array-task; index the array
 * indices, ascending. `data` is $P7_DATA at emit time (NULL: not set), exported by the
 * script. script receives the script's path. Returns 0, or nonzero with a reason. */
int p7bench_slurm_write_script(const char *dir, const char *study, const char *cwd, const char *command,
                               const char *data, const size_t *index, size_t count, const p7bench_slurm_options *o,
                               char *script, size_t script_size, char *err, size_t err_size);

/* `arg` for a POSIX shell: as is when it holds only safe characters, else in single quotes
 * (a ' inside as '\''). Appends to out (NUL-terminated); returns 0, or -1 when it does not fit. */
int p7bench_shell_quote(const char *arg, char *out, size_t size);

#endif
