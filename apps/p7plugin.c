/* p7plugin: tools for optimizer plugin authors.
 *
 *   p7plugin check PLUGIN [--device SPEC]
 *   p7plugin compare PLUGIN --reference FILE.json [--tolerance T] [--device SPEC]
 *
 * PLUGIN is a path (build/libmyopt.so) or a short name (sgd, adam, ivon). Exit codes: 0 every
 * check passed (every value matched), 1 a check failed (a value differed, or the plugin,
 * file or device could not be used), 2 bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7plugin_check.h"
#include "p7plugin_compare.h"

#define DEFAULT_TOLERANCE 1e-6

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p7plugin check PLUGIN [--device SPEC]\n"
            "       p7plugin compare PLUGIN --reference FILE.json [--tolerance T] [--device SPEC]\n"
            "\n"
            "PLUGIN is a plugin file (build/libmyopt.so) or a short name (sgd, adam, ivon).\n"
            "\n"
            "check: runs the plugin on a fixed set of parameters, gradients and noise and prints a\n"
            "checklist:\n"
            "  ABI and table    the plugin loads (entry symbol, ABI, table, required functions)\n"
            "  schema           every hyperparameter's default lies inside its declared range\n"
            "  step             steps on fixed gradients leave every weight and slot finite\n"
            "  deterministic    a second instance reproduces them bit for bit\n"
            "  save/load        saving, loading and stepping on equals stepping on\n"
            "  set_hparam       setting a hyperparameter after create equals creating with it\n"
            "  sample/restore   restore puts back the mean bit for bit (weight-sampling plugins)\n"
            "  no gradient      a parameter without a gradient stays untouched\n"
            "  NaN gradient     a NaN gradient is reported or reaches the weight as NaN\n"
            "\n"
            "compare: steps the plugin on the parameters, gradients (and noise) of a JSON reference\n"
            "file, e.g. written by a PyTorch run (docs/plugins.md shows how), and prints per step the\n"
            "largest difference in the weights and in each state slot the file gives.\n"
            "  --reference FILE  the reference file (required)\n"
            "  --tolerance T     a value matches when |p7 - reference| <= T * max(1, |reference|)\n"
            "                    (default %g)\n"
            "\n"
            "  --device SPEC     the device (as p7bench --device; default P7_DEVICE, else the first\n"
            "                    GPU, else the CPU)\n"
            "\n"
            "Exit status: 0 every check passed or every value matched, 1 otherwise, 2 bad arguments.\n",
            DEFAULT_TOLERANCE);
}

static int bad_argument(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "p7plugin: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see p7plugin --help)\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2 || (strcmp(argv[1], "check") != 0 && strcmp(argv[1], "compare") != 0)) {
        if (argc >= 2) fprintf(stderr, "p7plugin: unknown command '%s' (expected: check or compare)\n", argv[1]);
        usage(stderr);
        return 2;
    }
    const char *command = argv[1];
    int comparing = strcmp(command, "compare") == 0;
    const char *plugin = NULL, *device = NULL, *reference = NULL;
    double tolerance = DEFAULT_TOLERANCE;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int takes_value = strcmp(a, "--device") == 0 || (comparing && (strcmp(a, "--reference") == 0 ||
                                                                        strcmp(a, "--tolerance") == 0));
        if (takes_value && i + 1 >= argc) return bad_argument("%s needs a value%s", a, "");
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--device") == 0) {
            device = argv[++i];
        } else if (comparing && strcmp(a, "--reference") == 0) {
            reference = argv[++i];
        } else if (comparing && strcmp(a, "--tolerance") == 0) {
            char *end;
            const char *text = argv[++i];
            tolerance = strtod(text, &end);
            if (end == text || *end || !(tolerance >= 0) || isinf(tolerance))
                return bad_argument("--tolerance '%s' is not a number >= 0%s", text, "");
        } else if (a[0] == '-' && a[1]) {
            return bad_argument("unknown option '%s' for %s", a, command);
        } else if (plugin) {
            fprintf(stderr, "p7plugin: %s takes one plugin; got '%s' and '%s'\n", command, plugin, a);
            return 2;
        } else {
            plugin = a;
        }
    }
    if (!plugin) {
        fprintf(stderr, "p7plugin: %s needs a plugin (a path such as build/libmyopt.so, or sgd, adam, ivon)\n",
                command);
        return 2;
    }
    if (comparing) {
        if (!reference) return bad_argument("compare needs --reference FILE.json%s%s", "", "");
        int r = p7plugin_compare(plugin, reference, device, tolerance, stdout);
        return r == 0 ? 0 : 1;
    }
    int failed = p7plugin_check(plugin, device, stdout);
    if (failed < 0) return 1;
    if (failed > 0) {
        printf("p7plugin check: %d check%s failed\n", failed, failed == 1 ? "" : "s");
        return 1;
    }
    printf("p7plugin check: every check passed\n");
    return 0;
}
