/* Real CIFAR data, where present: checksums, class counts, first labels, channel
 * statistics. Looks in $P7_DATA, ./data, the build dir's data/, the source dir's
 * data/, and (CIFAR-100 only) ../shared/data/cifar-100-binary next to the source
 * dir, whose .xz files are decompressed into the build dir's data/cifar100 once.
 * Without data the tests are skipped with a message saying where they looked. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "p7/data.h"
#include "p7_test_support.h"

static int candidate_roots(char roots[][1024], int max)
{
    int n = 0;
    const char *env = getenv("P7_DATA"), *src = getenv("P7_SOURCE_DIR"), *build = getenv("P7_BUILD_DIR");
    if (env && env[0] && n < max) snprintf(roots[n++], 1024, "%s", env);
    if (n < max) snprintf(roots[n++], 1024, "./data");
    if (build && n < max) snprintf(roots[n++], 1024, "%s/data", build);
    if (src && n < max) snprintf(roots[n++], 1024, "%s/data", src);
    return n;
}

static int find_cifar10(char *out, size_t size, char *looked, size_t lsize)
{
    char roots[4][1024];
    int n = candidate_roots(roots, 4);
    looked[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (p7_cifar10_find(roots[i], out, size) == P7_SUCCESS) return 1;
        size_t len = strlen(looked);
        snprintf(looked + len, lsize - len, "%s%.1000s", len ? ", " : "", roots[i]);
    }
    return 0;
}

/* xz -dc src > dst, without a shell. */
static int unxz(const char *src, const char *dst)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0) _exit(126);
        execlp("xz", "xz", "-dc", "--", src, (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int find_cifar100(char *out, size_t size, char *looked, size_t lsize)
{
    char roots[4][1024];
    int n = candidate_roots(roots, 4);
    looked[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (p7_cifar100_find(roots[i], out, size) == P7_SUCCESS) return 1;
        size_t len = strlen(looked);
        snprintf(looked + len, lsize - len, "%s%.1000s", len ? ", " : "", roots[i]);
    }
    const char *src = getenv("P7_SOURCE_DIR"), *build = getenv("P7_BUILD_DIR");
    if (!src || !build) return 0;
    char shared[1024], dst[1200], from[1200], to[1300];
    snprintf(shared, sizeof shared, "%s/../shared/data/cifar-100-binary", src);
    size_t len = strlen(looked);
    snprintf(looked + len, lsize - len, ", %s", shared);
    snprintf(from, sizeof from, "%s/train.bin.xz", shared);
    if (access(from, R_OK) != 0) return 0;
    snprintf(dst, sizeof dst, "%s/data", build);
    mkdir(dst, 0755);
    snprintf(dst, sizeof dst, "%s/data/cifar100", build);
    mkdir(dst, 0755);
    printf("decompressing %s into %s (once)\n", shared, dst);
    const char *files[2] = {"test.bin", "train.bin"}; /* train.bin last: it marks completion */
    for (int f = 0; f < 2; f++) {
        snprintf(from, sizeof from, "%s/%s.xz", shared, files[f]);
        snprintf(to, sizeof to, "%s/%s.part", dst, files[f]);
        if (unxz(from, to) != 0) return 0;
        char final_path[1300];
        snprintf(final_path, sizeof final_path, "%s/%s", dst, files[f]);
        if (rename(to, final_path) != 0) return 0;
    }
    return snprintf(out, size, "%s", dst) < (int)size;
}

static void check_counts(const p7_dataset *ds, size_t per_class)
{
    size_t counts[100];
    P7_ASSERT_OK(p7_dataset_class_counts(ds, counts, 100));
    for (int c = 0; c < ds->classes; c++)
        if (counts[c] != per_class) fail_msg("%s: class %d has %zu images, want %zu", ds->name, c, counts[c], per_class);
}

static void test_cifar10(void **state)
{
    (void)state;
    char dir[1024], looked[4096];
    if (!find_cifar10(dir, sizeof dir, looked, sizeof looked)) {
        printf("SKIPPED: no CIFAR-10 found (looked in %s); fetch it with "
               "'apps/p7data fetch cifar10 --out data/cifar10'\n", looked);
        skip();
    }
    printf("CIFAR-10 from %s\n", dir);
    P7_ASSERT_OK(p7_cifar10_verify(dir));
    p7_dataset ds = {0};
    P7_ASSERT_OK(p7_cifar10_load(dir, P7_SPLIT_TRAIN, &ds));
    assert_int_equal(ds.count, 50000);
    check_counts(&ds, 5000);
    const int first_train[10] = {6, 9, 9, 4, 1, 1, 2, 7, 8, 3};
    for (int i = 0; i < 10; i++) assert_int_equal(ds.labels[i], first_train[i]);
    double mean[3], std[3];
    P7_ASSERT_OK(p7_dataset_channel_stats(&ds, mean, std));
    const double want_mean[3] = {0.4914, 0.4822, 0.4465}, want_std[3] = {0.2470, 0.2435, 0.2616};
    for (int c = 0; c < 3; c++) {
        assert_true(fabs(mean[c] - want_mean[c]) < 6e-5);
        assert_true(fabs(std[c] - want_std[c]) < 6e-5);
    }
    /* The original's split: 45,000 / 5,000 with seed 42. */
    p7_dataset train = {0}, val = {0};
    P7_ASSERT_OK(p7_dataset_split(&ds, P7_SPLIT_VALIDATION, P7_SPLIT_SEED, &train, &val));
    assert_int_equal(train.count, 45000);
    assert_int_equal(val.count, 5000);
    assert_string_equal(train.name, "cifar10-train");
    assert_string_equal(val.name, "cifar10-val");
    p7_dataset_free(&train);
    p7_dataset_free(&val);

    P7_ASSERT_OK(p7_cifar10_load(dir, P7_SPLIT_TEST, &ds));
    assert_int_equal(ds.count, 10000);
    check_counts(&ds, 1000);
    const int first_test[10] = {3, 8, 8, 0, 6, 6, 1, 6, 3, 1};
    for (int i = 0; i < 10; i++) assert_int_equal(ds.labels[i], first_test[i]);
    p7_dataset_free(&ds);
}

static void test_cifar20(void **state)
{
    (void)state;
    char dir[1024], looked[4096];
    if (!find_cifar100(dir, sizeof dir, looked, sizeof looked)) {
        printf("SKIPPED: no CIFAR-100 found (looked in %s); get it with 'apps/p7data fetch cifar100 "
               "--from ../shared/data/cifar-100-binary --out data/cifar100'\n", looked);
        skip();
    }
    printf("CIFAR-100 from %s\n", dir);
    P7_ASSERT_OK(p7_cifar100_verify(dir));
    p7_dataset ds = {0};
    P7_ASSERT_OK(p7_cifar100_load(dir, P7_SPLIT_TRAIN, P7_LABELS_CIFAR20, &ds));
    assert_int_equal(ds.count, 50000);
    assert_int_equal(ds.classes, 20);
    check_counts(&ds, 2500);
    double mean[3], std[3];
    P7_ASSERT_OK(p7_dataset_channel_stats(&ds, mean, std));
    const double want_mean[3] = {0.5071, 0.4865, 0.4409}, want_std[3] = {0.2673, 0.2564, 0.2762};
    for (int c = 0; c < 3; c++) {
        assert_true(fabs(mean[c] - want_mean[c]) < 6e-5);
        assert_true(fabs(std[c] - want_std[c]) < 6e-5);
    }
    P7_ASSERT_OK(p7_cifar100_load(dir, P7_SPLIT_TRAIN, P7_LABELS_FINE, &ds));
    check_counts(&ds, 500);
    P7_ASSERT_OK(p7_cifar100_load(dir, P7_SPLIT_TEST, P7_LABELS_CIFAR20, &ds));
    assert_int_equal(ds.count, 10000);
    check_counts(&ds, 500);
    P7_ASSERT_OK(p7_cifar100_load(dir, P7_SPLIT_TEST, P7_LABELS_FINE, &ds));
    check_counts(&ds, 100);
    p7_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cifar10),
        cmocka_unit_test(test_cifar20),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
