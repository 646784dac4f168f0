/* p7bench's results files (see p7bench_results.h). Messages give the reason before the
 * path, so a long path cannot push the reason out of the caller's buffer. */
#include "p7bench_results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct p7bench_results {
    int fd;
    char *path, *header; /* to reopen the file when `p7bench merge` has replaced it */
};

/* mkdir -p of the folder that holds `path`. */
static int make_parents(const char *path, char *err, size_t err_size)
{
    size_t n = strlen(path);
    char *dir = malloc(n + 1);
    if (!dir) return snprintf(err, err_size, "out of host memory"), 1;
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        free(dir);
        return 0;
    }
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, err_size, "cannot create the folder for the results file (%s): %s", strerror(errno), dir);
            free(dir);
            return 1;
        }
        *p = saved;
        if (saved == '\0') break;
    }
    free(dir);
    return 0;
}

static int write_all(int fd, const char *text, size_t n)
{
    while (n) {
        ssize_t w = write(fd, text, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 1;
        text += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes `line` + '\n' with one write(2), so it lands whole. */
static int write_line(int fd, const char *line)
{
    size_t n = strlen(line);
    char *buf = malloc(n + 1);
    if (!buf) return 1;
    memcpy(buf, line, n);
    buf[n] = '\n';
    int rc = write_all(fd, buf, n + 1);
    free(buf);
    return rc;
}

/* Under the lock: an empty file gets the header; a non-empty one must start with it. */
static int check_or_write_header(int fd, const char *path, const char *header, char *err, size_t err_size)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) return snprintf(err, err_size, "cannot stat (%s): %s", strerror(errno), path), 1;
    if (sb.st_size == 0) {
        if (write_line(fd, header) != 0)
            return snprintf(err, err_size, "cannot write the header (%s): %s", strerror(errno), path), 1;
        return 0;
    }
    size_t n = strlen(header);
    char *first = calloc(n + 2, 1);
    if (!first) return snprintf(err, err_size, "out of host memory"), 1;
    ssize_t got = pread(fd, first, n + 1, 0);
    int same = got == (ssize_t)(n + 1) && memcmp(first, header, n) == 0 && first[n] == '\n';
    if (!same) {
        char *nl = got > 0 ? strchr(first, '\n') : NULL;
        if (nl) *nl = '\0';
        snprintf(err, err_size,
                 "the results file holds another table (its first line is '%.120s%s', p7bench writes '%.60s...'); "
                 "its rows are kept as they are: give --out a new file: %s",
                 got > 0 ? first : "", got > 120 && !nl ? "..." : "", header, path);
    }
    free(first);
    return !same;
}

int p7bench_results_open(const char *path, const char *header, p7bench_results **out, char *err, size_t err_size)
{
    *out = NULL;
    if (make_parents(path, err, err_size) != 0) return 1;
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return snprintf(err, err_size, "cannot open the results file (%s): %s", strerror(errno), path), 1;
    int rc = 1;
    if (flock(fd, LOCK_EX) != 0) snprintf(err, err_size, "cannot lock (%s): %s", strerror(errno), path);
    else {
        rc = check_or_write_header(fd, path, header, err, err_size);
        flock(fd, LOCK_UN);
    }
    p7bench_results *r = rc == 0 ? calloc(1, sizeof *r) : NULL;
    if (r) r->path = strdup(path), r->header = strdup(header);
    if (rc == 0 && (!r || !r->path || !r->header)) {
        snprintf(err, err_size, "out of host memory");
        rc = 1;
    }
    if (rc != 0) {
        if (r) free(r->path), free(r->header);
        free(r);
        close(fd);
        return 1;
    }
    r->fd = fd;
    *out = r;
    return 0;
}

/* Under the lock of results->fd: whether that is still the file at results->path. `p7bench
 * merge` rewrites the file and renames the new one over it while holding the old one's
 * lock, so a row appended after that would go to a file no one reads any more. */
static int still_the_file(const p7bench_results *results)
{
    struct stat held, named;
    return fstat(results->fd, &held) == 0 && stat(results->path, &named) == 0 && held.st_dev == named.st_dev &&
           held.st_ino == named.st_ino;
}

int p7bench_results_append(p7bench_results *results, const char *row, char *err, size_t err_size)
{
    if (flock(results->fd, LOCK_EX) != 0)
        return snprintf(err, err_size, "cannot lock the results file: %s", strerror(errno)), 1;
    for (int tries = 0; !still_the_file(results) && tries < 100; tries++) { /* replaced: follow the new file */
        flock(results->fd, LOCK_UN);
        p7bench_results *fresh;
        if (p7bench_results_open(results->path, results->header, &fresh, err, err_size) != 0) return 1;
        close(results->fd);
        results->fd = fresh->fd;
        free(fresh->path), free(fresh->header), free(fresh);
        if (flock(results->fd, LOCK_EX) != 0)
            return snprintf(err, err_size, "cannot lock the results file: %s", strerror(errno)), 1;
    }
    int rc = write_line(results->fd, row);
    if (rc != 0) snprintf(err, err_size, "cannot append to the results file: %s", strerror(errno));
    flock(results->fd, LOCK_UN);
    return rc;
}

void p7bench_results_close(p7bench_results *results)
{
    if (!results) return;
    close(results->fd);
    free(results->path);
    free(results->header);
    free(results);
}
