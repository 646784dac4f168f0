/* The SLURM job-array script of a study (see p7bench_slurm.h). */
#include "p7bench_slurm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "p7bench_cell_list.h"
#include "p7bench_study_results.h"

int p7bench_shell_quote(const char *arg, char *out, size_t size)
{
    size_t n = strlen(out);
    int plain = *arg != '\0';
    for (const char *p = arg; *p && plain; p++)
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,+@%", *p) != NULL;
    if (plain) {
        int w = snprintf(out + n, size - n, "%s", arg);
        return w < 0 || (size_t)w >= size - n ? -1 : 0;
    }
    if (n + 2 >= size) return -1;
    out[n++] = '\'';
    for (const char *p = arg; *p; p++) {
        const char *piece = *p == '\'' ? "'\\''" : (char[2]){*p, 0};
        size_t len = strlen(piece);
        if (n + len + 2 >= size) return -1;
        memcpy(out + n, piece, len);
        n += len;
    }
    out[n++] = '\'';
    out[n] = '\0';
    return 0;
}

static int make_dir(const char *path)
{
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : 1;
}

int p7bench_slurm_write_script(const char *dir, const char *study, const char *cwd, const char *command,
                               const char *data, const size_t *index, size_t count, const p7bench_slurm_options *o,
                               char *script, size_t script_size, char *err, size_t err_size)
{
    char slurm_dir[4200], logs[4300], ranges[16384], q_data[8400] = "";
    snprintf(slurm_dir, sizeof slurm_dir, "%s/slurm", dir);
    snprintf(logs, sizeof logs, "%s/logs", slurm_dir);
    if (make_dir(slurm_dir) != 0 || make_dir(logs) != 0)
        return snprintf(err, err_size, "cannot create the folder (%s): %s", strerror(errno), logs), 1;
    if ((size_t)snprintf(script, script_size, "%s/%s.sbatch", slurm_dir, study) >= script_size)
        return snprintf(err, err_size, "path too long: %.200s", slurm_dir), 1;
    if (count == 0) return snprintf(err, err_size, "no cells to run"), 1;
    if (p7bench_array_ranges(index, count, ranges, sizeof ranges) < 0)
        return snprintf(err, err_size, "%zu array indices do not fit one --array line", count), 1;
    /* #SBATCH lines are read by sbatch, not the shell: paths there must hold no blank */
    if (strpbrk(dir, " \t\n") || strpbrk(cwd, " \t\n"))
        return snprintf(err, err_size, "the folder '%s' or the working folder '%s' has a blank, which an #SBATCH line "
                                       "cannot hold; give --out a path without one", dir, cwd), 1;
    if (data && p7bench_shell_quote(data, q_data, sizeof q_data))
        return snprintf(err, err_size, "path too long"), 1;

    size_t cap = strlen(command) + strlen(ranges) + 16384;
    for (size_t i = 0; i < o->extra_count; i++) cap += strlen(o->extra[i]) + 16;
    char *s = malloc(cap);
    if (!s) return snprintf(err, err_size, "out of host memory"), 1;
    size_t n = 0;
#define ADD(...) (n += (size_t)snprintf(s + n, cap - n, __VA_ARGS__))
    ADD("#!/bin/bash\n");
    ADD("# p7bench %s as a SLURM job array: %zu cell(s), one array task each; array index k runs the k-th cell\n"
        "# of %s/cells.list (p7bench --emit slurm wrote both; docs/cluster.md).\n", study, count, dir);
    ADD("#   submit:      sbatch %s\n", script);
    ADD("#   again:       the same line: finished cells exit at once, interrupted ones resume from their checkpoint\n");
    ADD("#   some cells:  sbatch --array=3,7 %s\n", script);
    ADD("#   results:     p7bench merge %s\n", dir);
    ADD("#SBATCH --job-name=p7bench-%s\n", study);
    if (o->array_limit > 0) ADD("#SBATCH --array=%s%%%ld\n", ranges, o->array_limit);
    else ADD("#SBATCH --array=%s\n", ranges);
    ADD("#SBATCH --ntasks=1\n");
    ADD("#SBATCH --output=%s/%%A_%%a.out\n", logs);
    ADD("#SBATCH --chdir=%s\n", cwd);
    if (o->partition) ADD("#SBATCH --partition=%s\n", o->partition);
    if (o->account) ADD("#SBATCH --account=%s\n", o->account);
    if (o->time) {
        ADD("#SBATCH --time=%s\n", o->time);
        /* the time limit's own SIGTERM comes only KillWait (site-set, often 30 s) before
         * SIGKILL; two minutes' notice lets a cell finish its step and checkpoint */
        ADD("#SBATCH --signal=B:TERM@120\n");
    }
    if (o->gpus_per_task) ADD("#SBATCH --gpus-per-task=%s\n", o->gpus_per_task);
    if (o->cpus_per_task) ADD("#SBATCH --cpus-per-task=%s\n", o->cpus_per_task);
    if (o->mem) ADD("#SBATCH --mem=%s\n", o->mem);
    for (size_t i = 0; i < o->extra_count; i++) ADD("#SBATCH %s\n", o->extra[i]);
    ADD("set -u\n");
    ADD("# PoCL (a CPU device) would start a thread per core of the node; keep to the task's CPUs\n"
        "# (POCL_MAX_PTHREAD_COUNT up to PoCL 3, POCL_CPU_MAX_CU_COUNT from PoCL 4)\n");
    ADD("if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then\n"
        "    export POCL_MAX_PTHREAD_COUNT=${POCL_MAX_PTHREAD_COUNT:-$SLURM_CPUS_PER_TASK}\n"
        "    export POCL_CPU_MAX_CU_COUNT=${POCL_CPU_MAX_CU_COUNT:-$SLURM_CPUS_PER_TASK}\n"
        "fi\n");
    if (data) ADD("export P7_DATA=%s\n", q_data);
    ADD("# p7bench opens the GPU SLURM granted this task (CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES,\n"
        "# GPU_DEVICE_ORDINAL, SLURM_JOB_GPUS), the CPU device when it granted none\n");
    ADD("exec %s --array-task\n", command);
#undef ADD
    if (n >= cap) {
        free(s);
        return snprintf(err, err_size, "the script does not fit"), 1;
    }
    int rc = p7bench_file_replace(script, s, err, err_size);
    free(s);
    if (rc == 0 && chmod(script, 0755) != 0) rc = 1, snprintf(err, err_size, "chmod %s: %s", script, strerror(errno));
    return rc;
}
