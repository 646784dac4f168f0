/* p7bench's training run (see p7bench_train.h). */
#include "p7bench_train.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int p7bench_prepare(const p7bench_train_options *o, p7bench_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    int cifar20 = strcmp(o->dataset, "cifar20") == 0;
    if (strcmp(o->dataset, "synthetic") == 0) {
        if (o->data_dir) {
            fprintf(stderr, "p7bench: --data names a data folder, but --dataset synthetic reads none; give one of them\n");
            return 1;
        }
        plan->synthetic = 1;
        return 0;
    }
    char root[4096];
    const char *env = getenv("P7_DATA");
    if (p7_data_dir(o->data_dir, root, sizeof root) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        return 1;
    }
    /* A folder the user named must exist; only ./data, the default, may be absent. */
    if ((o->data_dir || (env && *env)) && !is_dir(root)) {
        fprintf(stderr, "p7bench: %s: no such folder (%s): %s\n", o->data_dir ? "--data" : "P7_DATA", strerror(errno),
                root);
        return 1;
    }
    p7_status st = cifar20 ? p7_cifar100_find(root, plan->data_dir, sizeof plan->data_dir)
                           : p7_cifar10_find(root, plan->data_dir, sizeof plan->data_dir);
    if (st != P7_SUCCESS) {
        if (o->data_dir || o->dataset_given) {
            fprintf(stderr, "p7bench: %s was asked for, but %s\n(get it with: p7data fetch %s --out %s/%s)\n", o->dataset,
                    p7_last_error(), cifar20 ? "cifar100" : "cifar10", root, cifar20 ? "cifar100" : "cifar10");
            return 1;
        }
        static int said; /* once per process, not once per cell */
        if (!said++) fprintf(stderr, "p7bench: no %s under %s (%s)\n", o->dataset, root, p7_last_error());
        if (said == 1) fprintf(stderr,
                "p7bench: USING THE BUILT-IN SYNTHETIC DATASET %s, NOT CIFAR: results say so in every line "
                "(--dataset or --data makes missing data an error instead)\n",
                P7_SYNTHETIC_NAME);
        plan->synthetic = 1;
    }
    return 0;
}

int p7bench_parse_faithful(const char *text, unsigned *out)
{
    *out = 0;
    if (!text || !*text) return 0;
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        unsigned bit = 0;
        if (len == 3 && strncmp(p, "all", 3) == 0) bit = P7_FAITHFUL_ALL;
#define P7BENCH_FAITHFUL_NAME(id, name, b, what) \
    if (len == strlen(name) && strncmp(p, name, len) == 0) bit = P7_FAITHFUL_##id;
        P7_FAITHFUL_LIST(P7BENCH_FAITHFUL_NAME)
#undef P7BENCH_FAITHFUL_NAME
        if (!bit) {
            fprintf(stderr, "p7bench: --faithful: no switch '%.*s'; the switches are:", (int)len, p);
#define P7BENCH_FAITHFUL_LIST(id, name, b, what) fprintf(stderr, " %s", name);
            P7_FAITHFUL_LIST(P7BENCH_FAITHFUL_LIST)
#undef P7BENCH_FAITHFUL_LIST
            fprintf(stderr, "\n");
            return 1;
        }
        *out |= bit;
        if (!comma) return 0;
        p = comma + 1;
    }
}

/* The model and the sharing regime into one p7_network_config; the build itself checks
 * ties and presets against the layout (on the device, but before any training). */
int p7bench_resolve_network(p7bench_train_options *t)
{
    p7_network_config *n = &t->network;
    if (strcmp(t->model, "vgg11-bn") == 0) {
        n->arch = P7_ARCH_VGG11;
        if (n->batchnorm < 0) n->batchnorm = 1;
    } else if (p7_arch_parse(t->model, &n->arch) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --model '%s': expected simple, heads, complex, vgg11, vgg11-bn or vgg11-10conv\n",
                t->model);
        return 1;
    }
    n->members = t->members;
    n->alpha_init = t->alpha_init;
    n->gamma_init = t->gamma_init;
    n->faithful = t->faithful;
    const char *r = t->regime;
    n->sharing = !r                               ? P7_SHARING_PLAIN
                 : strcmp(r, "within") == 0       ? P7_SHARING_WITHIN
                 : strcmp(r, "between") == 0      ? P7_SHARING_BETWEEN
                                                  : P7_SHARING_COMBINED;
    if (n->sharing != P7_SHARING_PLAIN && n->sharing != P7_SHARING_WITHIN && t->members < 2 &&
        n->between != P7_SHARE_ALL) {
        fprintf(stderr, "p7bench: --between %s shares layers between ensemble members; give --members 2 or more\n",
                p7_share_name(n->between));
        return 1;
    }
    return 0;
}

int p7bench_load_data(const p7bench_train_options *o, const p7bench_plan *plan, p7_dataset *train_all, p7_dataset *test)
{
    p7_status st;
    if (plan->synthetic) {
        /* the data are not a choice of the run: every seed trains on the same images */
        st = p7_synthetic_shapes10(10000, P7_SPLIT_SEED, P7_SPLIT_TRAIN, train_all);
        if (st == P7_SUCCESS) st = p7_synthetic_shapes10(2000, P7_SPLIT_SEED, P7_SPLIT_TEST, test);
    } else if (strcmp(o->dataset, "cifar20") == 0) {
        st = p7_cifar100_load(plan->data_dir, P7_SPLIT_TRAIN, P7_LABELS_CIFAR20, train_all);
        if (st == P7_SUCCESS) st = p7_cifar100_load(plan->data_dir, P7_SPLIT_TEST, P7_LABELS_CIFAR20, test);
    } else {
        st = p7_cifar10_load(plan->data_dir, P7_SPLIT_TRAIN, train_all);
        if (st == P7_SUCCESS) st = p7_cifar10_load(plan->data_dir, P7_SPLIT_TEST, test);
    }
    if (st != P7_SUCCESS) { /* present but broken: that is an error, not a fallback */
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        return 1;
    }
    if (!plan->synthetic)
        fprintf(stderr, "p7bench: %s from %s: %zu training, %zu test images\n", o->dataset, plan->data_dir,
                train_all->count, test->count);
    return 0;
}

/* Whether "name=" is one of the assignments of an hparams text. */
static int assigns(const char *hparams, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = hparams; p && *p;) {
        while (*p == ' ') p++;
        if (strncmp(p, name, n) == 0 && (p[n] == '=' || p[n] == ' ')) return 1;
        p = strchr(p, ',');
        if (p) p++;
    }
    return 0;
}

int p7bench_resolve_recipe(p7bench_train_options *o, int verbose)
{
    if (o->faithful & P7_FAITHFUL_OPTIMIZER_IS_ADAM && strcmp(o->optimizer, "adam") != 0) {
        fprintf(stderr, "p7bench: faithful optimizer-is-adam: '%s' trains with Adam, as every run of the original did (B1)\n",
                o->optimizer);
        o->optimizer = "adam";
    }
    if (o->hparams && !(o->lr != o->lr) && assigns(o->hparams, "lr")) {
        fprintf(stderr, "p7bench: --hparams sets lr, and so does the study (lr=%g): give the learning rate with --lr "
                        "(a study's lr axis takes a list)\n", o->lr);
        return 2;
    }
    p7_optimizer_plugin *plugin = NULL;
    if (p7_optimizer_plugin_open(o->optimizer, &plugin) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --optimizer: %s\n", p7_last_error());
        return 1;
    }
    const char *name = p7_optimizer_plugin_table(plugin)->name;
    /* --faithful trains as the original did: its fixed settings, no recipe, no schedule */
    const p7_recipe *recipe = o->faithful ? NULL : p7_recipe_find(name);
    /* the cell's own settings replace the recipe's, the user's --hparams replace both */
    char cell_hparams[128] = "", with_cell[1024], recipe_hparams[512] = "";
    if (recipe && p7_recipe_hparams_for_run(recipe, o->run_steps, recipe_hparams, sizeof recipe_hparams) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        p7_optimizer_plugin_close(plugin);
        return 1;
    }
    if (o->lr == o->lr) snprintf(cell_hparams, sizeof cell_hparams, "lr=%.17g", o->lr);
    if (o->weight_decay > 0) {
        size_t n = strlen(cell_hparams);
        snprintf(cell_hparams + n, sizeof cell_hparams - n, "%sweight_decay=%.17g", n ? "," : "", o->weight_decay);
    }
    int rc = 0;
    /* the user's text on its own first, so a repeated or unknown name is named as given */
    if (p7_optimizer_plugin_check_hparams(plugin, o->hparams) != P7_SUCCESS ||
        p7_recipe_merge_hparams(recipe ? recipe_hparams : NULL, cell_hparams[0] ? cell_hparams : NULL, with_cell,
                                sizeof with_cell) != P7_SUCCESS ||
        p7_recipe_merge_hparams(with_cell[0] ? with_cell : NULL, o->hparams, o->run_hparams, sizeof o->run_hparams) !=
            P7_SUCCESS ||
        p7_optimizer_plugin_check_hparams(plugin, o->run_hparams) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --hparams: %s\n", p7_last_error());
        rc = 2;
    }
    const char *schedule = o->schedule ? o->schedule : recipe ? recipe->schedule : "constant";
    if (rc == 0 && p7_schedule_parse(schedule, &o->parsed_schedule) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --schedule: %s\n", p7_last_error());
        rc = 2;
    }
    if (rc == 0) {
        p7_schedule_format(&o->parsed_schedule, o->run_schedule, sizeof o->run_schedule);
        static char shown[1024];
        if (verbose && strcmp(shown, p7_optimizer_plugin_path(plugin)) != 0) {
            char help[4096];
            snprintf(shown, sizeof shown, "%s", p7_optimizer_plugin_path(plugin));
            printf("p7bench: optimizer plugin %s\n%s", p7_optimizer_plugin_path(plugin),
                   p7_optimizer_plugin_help(plugin, help, sizeof help));
            if (recipe)
                printf("p7bench: recipe for %s: %s%s%s%s; schedule %s\n  (%s)\n", name, recipe->hparams,
                       recipe->horizon_hparam ? " (" : "", recipe->horizon_hparam ? recipe->horizon_hparam : "",
                       recipe->horizon_hparam ? " set from the run's length once the data is known)" : "",
                       recipe->schedule, recipe->why);
            else
                printf("p7bench: no recipe for %s%s: plugin defaults\n", name, o->faithful ? " under --faithful" : "");
        }
        if (verbose)
            printf("p7bench: training with %s: hyperparameters '%s'%s, schedule %s\n", name, o->run_hparams,
                   o->hparams ? " (recipe overridden by --hparams)" : "", o->run_schedule);
    }
    p7_optimizer_plugin_close(plugin);
    return rc;
}
