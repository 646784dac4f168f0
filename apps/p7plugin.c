/* p7plugin: tools for optimizer plugin authors.
 *
 *   p7plugin check PLUGIN [--device SPEC]
 *
 * PLUGIN is a path (build/libmyopt.so) or a short name (sgd, adam, ivon). Exit codes: 0 every
 * check passed, 1 a check failed (or the plugin or device did not open), 2 bad arguments. */
#include <stdio.h>
#include <string.h>

#include "p7plugin_check.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p7plugin check PLUGIN [--device SPEC]\n"
            "\n"
            "Checks an optimizer plugin (a path such as build/libmyopt.so, or a short name such as\n"
            "sgd) on a fixed set of parameters, gradients and noise, and prints a checklist:\n"
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
            "  --device SPEC    the device (as p7bench --device; default P7_DEVICE, else the first\n"
            "                   GPU, else the CPU)\n"
            "\n"
            "Exit status: 0 every check passed, 1 a check failed, 2 bad arguments.\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "check") != 0) {
        if (argc >= 2) fprintf(stderr, "p7plugin: unknown command '%s' (expected: check)\n", argv[1]);
        usage(stderr);
        return 2;
    }
    const char *plugin = NULL, *device = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "p7plugin: --device needs a value (a device spec such as pocl or 0:0)\n");
                return 2;
            }
            device = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "p7plugin: unknown option '%s' (see p7plugin --help)\n", argv[i]);
            return 2;
        } else if (plugin) {
            fprintf(stderr, "p7plugin: check takes one plugin; got '%s' and '%s'\n", plugin, argv[i]);
            return 2;
        } else {
            plugin = argv[i];
        }
    }
    if (!plugin) {
        fprintf(stderr, "p7plugin: check needs a plugin (a path such as build/libmyopt.so, or sgd, adam, ivon)\n");
        return 2;
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
