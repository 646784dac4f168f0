/* A study folder's cell list and per-cell claims (see p7bench_cell_list.h). */
#include "p7bench_cell_list.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char list_preamble[] =
    "# p7bench: the cells of this folder in the order first run; runs only append, so the k-th cell line (from 0,\n"
    "# comments aside) is SLURM array index k. Each batch follows the folder and command that listed it.\n";

/* The whole file behind fd (malloc'd, NUL-terminated). */
static char *read_fd(int fd, size_t *size)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) return NULL;
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) return NULL;
    size_t n = 0;
    while (n < (size_t)sb.st_size) {
        ssize_t got = pread(fd, buf + n, (size_t)sb.st_size - n, (off_t)n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    *size = n;
    return buf;
}

/* Parses the text in place into list (which takes ownership of text). A last line
 * without '\n' (a write cut short) is not a cell. */
static int parse_list(char *text, size_t size, p7bench_cell_list *list)
{
    memset(list, 0, sizeof *list);
    list->text = text;
    size_t cap = 0;
    const char *cwd = "", *command = "";
    for (char *line = text; line < text + size;) {
        char *nl = memchr(line, '\n', (size_t)(text + size - line));
        if (!nl) break;
        *nl = '\0';
        if (strncmp(line, "# cwd: ", 7) == 0) cwd = line + 7;
        else if (strncmp(line, "# command: ", 11) == 0) command = line + 11;
        else if (line[0] && line[0] != '#') {
            if (list->count == cap) {
                cap = cap ? 2 * cap : 64;
                void *ids = realloc(list->ids, cap * sizeof *list->ids);
                if (ids) list->ids = ids;
                void *cwds = realloc(list->cwd, cap * sizeof *list->cwd);
                if (cwds) list->cwd = cwds;
                void *commands = realloc(list->command, cap * sizeof *list->command);
                if (commands) list->command = commands;
                if (!ids || !cwds || !commands) return 1;
            }
            snprintf(list->ids[list->count], P7BENCH_ID_MAX, "%s", line);
            list->cwd[list->count] = cwd;
            list->command[list->count] = command;
            list->count++;
        }
        line = nl + 1;
    }
    return 0;
}

void p7bench_cell_list_free(p7bench_cell_list *list)
{
    if (!list) return;
    free(list->ids);
    free(list->cwd);
    free(list->command);
    free(list->text);
    memset(list, 0, sizeof *list);
}

long p7bench_cell_list_find(const p7bench_cell_list *list, const char *id)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->ids[i], id) == 0) return (long)i;
    return -1;
}

static int list_path(const char *dir, char *path, size_t size, char *err, size_t err_size)
{
    if ((size_t)snprintf(path, size, "%s/cells.list", dir) >= size)
        return snprintf(err, err_size, "path too long: %.200s", dir), 1;
    return 0;
}

int p7bench_cell_list_read(const char *dir, p7bench_cell_list *list, char *err, size_t err_size)
{
    memset(list, 0, sizeof *list);
    char path[4200];
    if (list_path(dir, path, sizeof path, err, err_size) != 0) return 1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return 0;
    if (fd < 0) return snprintf(err, err_size, "cannot open (%s): %s", strerror(errno), path), 1;
    flock(fd, LOCK_SH); /* a batch is one write, but the lock costs nothing */
    size_t size = 0;
    char *text = read_fd(fd, &size);
    flock(fd, LOCK_UN);
    close(fd);
    if (!text) return snprintf(err, err_size, "cannot read: %s", path), 1;
    if (parse_list(text, size, list) != 0) {
        p7bench_cell_list_free(list);
        return snprintf(err, err_size, "out of host memory reading %s", path), 1;
    }
    return 0;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int p7bench_cell_list_add(const char *dir, const p7bench_cell *const *cells, size_t count, const char *cwd,
                          const char *command, size_t *index, char *err, size_t err_size)
{
    char path[4200];
    if (list_path(dir, path, sizeof path, err, err_size) != 0) return 1;
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return snprintf(err, err_size, "cannot open (%s): %s", strerror(errno), path), 1;
    if (flock(fd, LOCK_EX) != 0) {
        snprintf(err, err_size, "cannot lock (%s): %s", strerror(errno), path);
        close(fd);
        return 1;
    }
    size_t size = 0;
    char *text = read_fd(fd, &size);
    p7bench_cell_list list;
    int rc = 0;
    if (!text || parse_list(text, size, &list) != 0) {
        if (!text) snprintf(err, err_size, "cannot read: %s", path);
        else snprintf(err, err_size, "out of host memory reading %s", path), p7bench_cell_list_free(&list);
        flock(fd, LOCK_UN);
        close(fd);
        return 1;
    }
    /* a cut-short last line (a writer killed mid-write cannot happen with one write, but
     * a full disk can) is ended, so the next id starts on its own line */
    int ragged = size > 0 && text[size - 1] != '\n';
    size_t cap = strlen(list_preamble) + strlen(cwd) + strlen(command) + 32 + count * (P7BENCH_ID_MAX + 1);
    char *batch = malloc(cap);
    size_t n = 0, next = list.count;
    if (!batch) rc = 1, snprintf(err, err_size, "out of host memory");
    for (size_t i = 0; rc == 0 && i < count; i++) {
        long at = p7bench_cell_list_find(&list, cells[i]->id);
        if (at >= 0) {
            if (index) index[i] = (size_t)at;
            continue;
        }
        size_t twice = 0; /* the same cell earlier in this call */
        while (twice < i && strcmp(cells[twice]->id, cells[i]->id) != 0) twice++;
        if (twice < i) {
            if (index) index[i] = index[twice];
            continue;
        }
        if (n == 0) {
            if (ragged) batch[n++] = '\n';
            if (size == 0) n += (size_t)snprintf(batch + n, cap - n, "%s", list_preamble);
            n += (size_t)snprintf(batch + n, cap - n, "# cwd: %s\n# command: %s\n", cwd, command);
        }
        n += (size_t)snprintf(batch + n, cap - n, "%s\n", cells[i]->id);
        if (index) index[i] = next;
        next++;
    }
    if (rc == 0 && n > 0 && write_all(fd, batch, n) != 0)
        rc = 1, snprintf(err, err_size, "cannot append (%s): %s", strerror(errno), path);
    free(batch);
    p7bench_cell_list_free(&list);
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}

int p7bench_cell_claim(const char *dir, const char *id, int *fd, char *holder, size_t holder_size, char *err,
                       size_t err_size)
{
    char path[4400];
    *fd = -1;
    if (holder_size) holder[0] = '\0';
    if ((size_t)snprintf(path, sizeof path, "%s/cells/%s/claim.lock", dir, id) >= sizeof path)
        return snprintf(err, err_size, "path too long: %.200s", dir), -1;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) return snprintf(err, err_size, "cannot open (%s): %s", strerror(errno), path), -1;
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        if (!busy) snprintf(err, err_size, "cannot lock (%s): %s", strerror(errno), path);
        else if (holder_size) {
            ssize_t got = pread(f, holder, holder_size - 1, 0);
            holder[got > 0 ? got : 0] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
            if (!holder[0]) snprintf(holder, holder_size, "another process");
        }
        close(f);
        return busy ? 1 : -1;
    }
    char me[300], host[256] = "?";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    int n = snprintf(me, sizeof me, "pid %ld on %s\n", (long)getpid(), host);
    if (ftruncate(f, 0) != 0 || pwrite(f, me, (size_t)n, 0) != n) {
        /* the lock is what counts; the text only names the holder */
    }
    *fd = f;
    return 0;
}

void p7bench_cell_unclaim(int fd)
{
    if (fd >= 0) close(fd); /* closing the only descriptor drops the flock */
}

int p7bench_array_ranges(const size_t *index, size_t count, char *out, size_t size)
{
    size_t n = 0;
    if (size) out[0] = '\0';
    for (size_t i = 0; i < count;) {
        size_t j = i;
        while (j + 1 < count && index[j + 1] == index[j] + 1) j++;
        int w = j == i ? snprintf(out + n, size - n, "%s%zu", n ? "," : "", index[i])
                       : snprintf(out + n, size - n, "%s%zu-%zu", n ? "," : "", index[i], index[j]);
        if (w < 0 || (size_t)w >= size - n) return -1;
        n += (size_t)w;
        i = j + 1;
    }
    return (int)n;
}
