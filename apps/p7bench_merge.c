/* `p7bench merge DIR` (see p7bench_merge.h). Rows are carried over as the text they were
 * written as: merge picks and orders rows, it never respells a number. */
#include "p7bench_merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "p7bench_cell_list.h"
#include "p7bench_plot.h"
#include "p7bench_study_results.h"

/* One row as written, with the two fields merge looks at. */
typedef struct row {
    char *line; /* without '\n' */
    char cell[P7BENCH_ID_MAX], status[16];
} row;

typedef struct rows {
    row *items;
    size_t count, cap;
} rows;

typedef struct cell_state {
    char id[P7BENCH_ID_MAX];
    const row *chosen; /* NULL: no row anywhere */
    long list_index;   /* in cells.list, or -1 */
} cell_state;

static void rows_free(rows *r)
{
    for (size_t i = 0; i < r->count; i++) free(r->items[i].line);
    free(r->items);
    memset(r, 0, sizeof *r);
}

/* Field `col` (0-based) of a CSV line, quotes removed; "" when the line is shorter. */
static void csv_field(const char *line, int col, char *out, size_t size)
{
    int c = 0, quoted = 0;
    size_t n = 0;
    for (const char *p = line; *p; p++) {
        if (*p == '"') {
            if (quoted && p[1] == '"') {
                if (c == col && n + 1 < size) out[n++] = '"';
                p++;
            } else quoted = !quoted;
            continue;
        }
        if (*p == ',' && !quoted) {
            if (++c > col) break;
            continue;
        }
        if (c == col && n + 1 < size) out[n++] = *p;
    }
    out[n] = '\0';
}

static int column_of(const char *header, const char *name)
{
    char field[64];
    for (int c = 0;; c++) {
        csv_field(header, c, field, sizeof field);
        if (strcmp(field, name) == 0) return c;
        /* past the last field: csv_field gives "" for every later column */
        int commas = 0;
        for (const char *p = header; *p; p++) commas += *p == ',';
        if (c > commas) return -1;
    }
}

/* The complete lines of a file: the header into *header (malloc'd), the rows appended to
 * out. A last line without '\n' is not a row (a write cut short). Missing file: 0 rows. */
static int read_rows(const char *path, char **header, rows *out, char *err, size_t err_size)
{
    *header = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : (snprintf(err, err_size, "cannot open (%s): %s", strerror(errno), path), 1);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int cell_col = -1, status_col = -1, rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n') break;
        line[--len] = '\0';
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        if (!len) continue;
        if (!*header) {
            if (!(*header = strdup(line))) rc = 1;
            cell_col = column_of(line, "cell");
            status_col = column_of(line, "status");
            if (cell_col < 0 || status_col < 0)
                rc = 1, snprintf(err, err_size, "%s: the header has no cell or status column: not a p7bench results "
                                                "table", path);
            continue;
        }
        if (out->count == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 64;
            row *grown = realloc(out->items, out->cap * sizeof *grown);
            if (!grown) { rc = 1; break; }
            out->items = grown;
        }
        row *r = &out->items[out->count];
        csv_field(line, cell_col, r->cell, sizeof r->cell);
        csv_field(line, status_col, r->status, sizeof r->status);
        if (!(r->line = strdup(line))) { rc = 1; break; }
        out->count++;
    }
    if (rc && !err[0]) snprintf(err, err_size, "out of host memory reading %s", path);
    free(line);
    fclose(f);
    return rc;
}

static int finished(const row *r) { return strcmp(r->status, "ok") == 0 || strcmp(r->status, "diverged") == 0; }

/* The row that stands for a cell: the last ok or diverged one, else the last one. */
static const row *choose(const rows *all, const char *id)
{
    const row *last = NULL, *last_finished = NULL;
    for (size_t i = 0; i < all->count; i++)
        if (strcmp(all->items[i].cell, id) == 0) {
            last = &all->items[i];
            if (finished(last)) last_finished = last;
        }
    return last_finished ? last_finished : last;
}

static int add_cell(cell_state **cells, size_t *count, size_t *cap, const char *id, long list_index)
{
    for (size_t i = 0; i < *count; i++)
        if (strcmp((*cells)[i].id, id) == 0) return 0;
    if (*count == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        cell_state *grown = realloc(*cells, *cap * sizeof *grown);
        if (!grown) return 1;
        *cells = grown;
    }
    cell_state *c = &(*cells)[(*count)++];
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    c->list_index = list_index;
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names of DIR/cells/<id>/ folders, sorted. */
static char **cell_folders(const char *dir, size_t *count)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/cells", dir);
    *count = 0;
    DIR *d = opendir(path);
    if (!d) return NULL;
    char **names = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= P7BENCH_ID_MAX) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown) break;
            names = grown;
        }
        if (!(names[*count] = strdup(e->d_name))) break;
        (*count)++;
    }
    closedir(d);
    if (*count) qsort(names, *count, sizeof *names, cmp_names);
    return names;
}

/* Why a cell without a finished row is not done: running now, interrupted (a checkpoint),
 * started, or never started. */
static void missing_reason(const char *dir, const char *id, char *out, size_t size)
{
    char path[4400], holder[300], err[512];
    struct stat sb;
    snprintf(path, sizeof path, "%s/cells/%s", dir, id);
    if (stat(path, &sb) != 0) {
        snprintf(out, size, "not started");
        return;
    }
    int fd;
    if (p7bench_cell_claim(dir, id, &fd, holder, sizeof holder, err, sizeof err) == 1) {
        snprintf(out, size, "running now (%s)", holder);
        return;
    }
    p7bench_cell_unclaim(fd);
    snprintf(path, sizeof path, "%s/cells/%s/checkpoint.p7", dir, id);
    if (stat(path, &sb) == 0) snprintf(out, size, "interrupted; resumes from its checkpoint");
    else snprintf(out, size, "started, no checkpoint yet");
}

/* A path as given when absolute, else under the current folder. */
static void absolute(const char *path, char *out, size_t size)
{
    char cwd[4096];
    if (path[0] == '/' || !getcwd(cwd, sizeof cwd)) snprintf(out, size, "%s", path);
    else snprintf(out, size, "%s/%s", cwd, path);
}

/* The rerun commands of the cells not done: per listing command, that command with a
 * --cell per cell (the command alone when it has more than p7bench's --cell limit: a rerun
 * skips the finished ones anyway), then sbatch --array for the study's script. */
static void print_reruns(const char *dir, const char *study, const cell_state *cells, size_t count,
                         const p7bench_cell_list *list)
{
    enum { CELL_FLAGS_MAX = 64 };
    char here[4096] = "";
    if (!getcwd(here, sizeof here)) here[0] = '\0';
    int *done = calloc(count + 1, sizeof *done);
    size_t *array = calloc(count + 1, sizeof *array), array_count = 0;
    if (!done || !array) goto out;
    printf("to run them again:\n");
    for (size_t i = 0; i < count; i++) {
        if (done[i] || (cells[i].chosen && finished(cells[i].chosen))) continue;
        const char *cwd = cells[i].list_index >= 0 ? list->cwd[cells[i].list_index] : "";
        const char *command = cells[i].list_index >= 0 ? list->command[cells[i].list_index] : "";
        if (!command[0]) {
            printf("  (cell %s: no command recorded in cells.list; run its study with --cell %s)\n", cells[i].id,
                   cells[i].id);
            done[i] = 1;
            continue;
        }
        size_t group = 0;
        for (size_t j = i; j < count; j++)
            if (!done[j] && !(cells[j].chosen && finished(cells[j].chosen)) && cells[j].list_index >= 0 &&
                strcmp(list->command[cells[j].list_index], command) == 0 &&
                strcmp(list->cwd[cells[j].list_index], cwd) == 0)
                group++;
        printf("  %s%s%s%s", cwd[0] && strcmp(cwd, here) != 0 ? "cd " : "", cwd[0] && strcmp(cwd, here) != 0 ? cwd : "",
               cwd[0] && strcmp(cwd, here) != 0 ? " && " : "", command);
        for (size_t j = i; j < count; j++)
            if (!done[j] && !(cells[j].chosen && finished(cells[j].chosen)) && cells[j].list_index >= 0 &&
                strcmp(list->command[cells[j].list_index], command) == 0 &&
                strcmp(list->cwd[cells[j].list_index], cwd) == 0) {
                if (group <= CELL_FLAGS_MAX) printf(" --cell %s", cells[j].id);
                done[j] = 1;
            }
        printf("\n");
    }
    /* the array indices of the cells not done, ascending, for the study's script */
    for (size_t k = 0; k < list->count; k++)
        for (size_t i = 0; i < count; i++)
            if (cells[i].list_index == (long)k && !(cells[i].chosen && finished(cells[i].chosen))) array[array_count++] = k;
    char script[4400], abs_script[8600];
    struct stat sb;
    snprintf(script, sizeof script, "%s/slurm/%s.sbatch", dir, study);
    if (array_count && stat(script, &sb) == 0) {
        char ranges[8192];
        absolute(script, abs_script, sizeof abs_script);
        if (p7bench_array_ranges(array, array_count, ranges, sizeof ranges) >= 0)
            printf("  sbatch --array=%s %s\n", ranges, abs_script);
    }
out:
    free(done);
    free(array);
}

int p7bench_merge_folder(const char *dir, int report, p7bench_merge_counts *counts)
{
    char path[4200], tmp[4300], conf[512] = "", study[P7BENCH_STUDY_MAX] = "", err[16384] = "";
    p7bench_merge_counts tally = {0};
    p7bench_cell_list list = {0};
    rows all = {0};
    char *header = NULL, **folders = NULL;
    size_t folder_count = 0, count = 0, cap = 0;
    cell_state *cells = NULL;
    int fd = -1, rc = 1;
    FILE *out = NULL;

    snprintf(path, sizeof path, "%s/study.conf", dir);
    FILE *cf = fopen(path, "r");
    if (!cf || !fgets(conf, sizeof conf, cf) || strncmp(conf, "study=", 6) != 0) {
        fprintf(stderr, "p7bench merge: %s: no readable study.conf: is this a study folder?\n", dir);
        if (cf) fclose(cf);
        return 1;
    }
    fclose(cf);
    snprintf(study, sizeof study, "%.*s", (int)strcspn(conf + 6, "\n"), conf + 6);
    if (p7bench_cell_list_read(dir, &list, err, sizeof err) != 0) goto fail;

    /* Hold results.csv's lock from reading it to renaming the new file over it: a row
     * appended meanwhile waits, then lands in the new file. */
    snprintf(path, sizeof path, "%s/results.csv", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        snprintf(err, sizeof err, "cannot open and lock (%s): %s", strerror(errno), path);
        goto fail;
    }
    if (read_rows(path, &header, &all, err, sizeof err) != 0) goto fail;
    /* every cell's own latest row, after the shared file's: the newest word on a cell */
    folders = cell_folders(dir, &folder_count);
    for (size_t i = 0; i < folder_count; i++) {
        char cell_path[4400], *h = NULL;
        snprintf(cell_path, sizeof cell_path, "%s/cells/%s/result.csv", dir, folders[i]);
        size_t before = all.count;
        if (read_rows(cell_path, &h, &all, err, sizeof err) != 0) goto fail;
        if (h && header && strcmp(h, header) != 0) {
            snprintf(err, sizeof err, "%s has other columns than %s/results.csv (another p7bench version or study?)",
                     cell_path, dir);
            free(h);
            goto fail;
        }
        if (h && !header) header = h, h = NULL;
        free(h);
        for (size_t k = before; k < all.count; k++) /* a row in the wrong folder is not this cell's */
            if (strcmp(all.items[k].cell, folders[i]) != 0) {
                snprintf(err, sizeof err, "%s holds a row of cell %s", cell_path, all.items[k].cell);
                goto fail;
            }
    }
    /* the cells: the list's order, then rows of unlisted cells, then unlisted folders */
    for (size_t i = 0; i < list.count; i++)
        if (add_cell(&cells, &count, &cap, list.ids[i], (long)i)) goto oom;
    for (size_t i = 0; i < all.count; i++)
        if (add_cell(&cells, &count, &cap, all.items[i].cell, -1)) goto oom;
    for (size_t i = 0; i < folder_count; i++)
        if (add_cell(&cells, &count, &cap, folders[i], -1)) goto oom;

    snprintf(tmp, sizeof tmp, "%s.merge.%ld", path, (long)getpid());
    out = fopen(tmp, "w");
    if (!out) {
        snprintf(err, sizeof err, "cannot create (%s): %s", strerror(errno), tmp);
        goto fail;
    }
    if (header) fprintf(out, "%s\n", header);
    for (size_t i = 0; i < count; i++) {
        cells[i].chosen = choose(&all, cells[i].id);
        if (cells[i].chosen) fprintf(out, "%s\n", cells[i].chosen->line);
        const char *s = cells[i].chosen ? cells[i].chosen->status : "";
        tally.cells++;
        if (strcmp(s, "ok") == 0) tally.ok++;
        else if (strcmp(s, "diverged") == 0) tally.diverged++;
        else if (cells[i].chosen) tally.failed++;
        else tally.missing++;
    }
    int bad = ferror(out) != 0;
    bad |= fflush(out) != 0 || fsync(fileno(out)) != 0;
    bad |= fclose(out) != 0;
    out = NULL;
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, sizeof err, "cannot write (%s): %s", strerror(errno), path);
        unlink(tmp);
        goto fail;
    }
    flock(fd, LOCK_UN);
    close(fd);
    fd = -1;

    if (report) {
        printf("p7bench merge: %s: %zu cell(s): %zu ok, %zu diverged, %zu failed, %zu missing; results.csv rebuilt in "
               "the grid's order\n", dir, tally.cells, tally.ok, tally.diverged, tally.failed, tally.missing);
        for (size_t i = 0; i < count; i++) {
            const row *r = cells[i].chosen;
            char why[400], index[48] = "";
            if (cells[i].list_index >= 0) snprintf(index, sizeof index, " (array index %ld)", cells[i].list_index);
            if (r && strcmp(r->status, "ok") == 0) continue;
            if (!r) missing_reason(dir, cells[i].id, why, sizeof why);
            if (!r) printf("  missing   %s%s: %s\n", cells[i].id, index, why);
            else if (strcmp(r->status, "diverged") == 0)
                printf("  diverged  %s%s: finished (a rerun gives the same; lower the learning rate)\n", cells[i].id,
                       index);
            else printf("  failed    %s%s: see %s/cells/%s/console.log\n", cells[i].id, index, dir, cells[i].id);
        }
        if (tally.failed + tally.missing) print_reruns(dir, study, cells, count, &list);
    }
    rc = 0;
    goto done;
oom:
    snprintf(err, sizeof err, "out of host memory");
fail:
    fprintf(stderr, "p7bench merge: %s\n", err);
done:
    if (out) fclose(out), unlink(tmp);
    if (fd >= 0) flock(fd, LOCK_UN), close(fd);
    for (size_t i = 0; i < folder_count; i++) free(folders[i]);
    free(folders);
    free(cells);
    free(header);
    rows_free(&all);
    p7bench_cell_list_free(&list);
    if (counts) *counts = tally;
    return rc;
}

int p7bench_merge_main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: p7bench merge DIR\n  rebuilds DIR/results.csv from the rows its cells wrote (one per cell, in "
               "the grid's order), redraws the plots and summary.md, and lists the cells missing, failed or diverged "
               "with the commands that run them again (docs/cluster.md)\nexit codes: 0 every cell ok, 3 some diverged, "
               "1 cells missing or failed\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: p7bench merge DIR   (a study folder, holding study.conf)\n");
        return 2;
    }
    p7bench_merge_counts n;
    if (p7bench_merge_folder(argv[1], 1, &n) != 0) return 1;
    if (p7bench_plot_study(argv[1]) != 0) fprintf(stderr, "p7bench merge: the plots could not be redrawn (above)\n");
    if (n.failed + n.missing) {
        printf("p7bench merge: %zu cell(s) not done (%zu missing, %zu failed): exit code 1\n", n.failed + n.missing,
               n.missing, n.failed);
        return 1;
    }
    return n.diverged ? 3 : 0;
}
