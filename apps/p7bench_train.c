/* p7bench's training run (see p7bench_train.h). */
#include "p7bench_train.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TRY(call)                                                                 \
    do {                                                                          \
        if ((call) != P7_SUCCESS) {                                               \
            fprintf(stderr, "p7bench: %s\n", p7_last_error());                    \
            goto fail;                                                            \
        }                                                                         \
    } while (0)

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Accuracies in percent; losses are NLL in nats; ECE over 15 bins; Brier summed over classes.
 * val_member_acc holds one accuracy per member, test_member_nll one NLL per member,
 * ';'-separated. Empty: not measured. */
static const char csv_header[] =
    "dataset,model,members,optimizer,hparams,schedule,seed,epoch,train_images,lr,train_loss,val_loss,val_acc,"
    "val_ece,val_brier,val_diversity,val_member_acc,test_loss,test_acc,test_ece,test_brier,test_diversity,test_member_nll,bma_samples,bma_test_acc,"
    "bma_test_loss,bma_test_ece,params_unique,params_used,params_shared,images_per_s,seconds,status";

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
    } else {
        char root[4096];
        const char *env = getenv("P7_DATA");
        if (p7_data_dir(o->data_dir, root, sizeof root) != P7_SUCCESS) {
            fprintf(stderr, "p7bench: %s\n", p7_last_error());
            return 1;
        }
        /* A folder the user named must exist; only ./data, the default, may be absent. */
        if ((o->data_dir || (env && *env)) && !is_dir(root)) {
            fprintf(stderr, "p7bench: %s: no such folder (%s): %s\n", o->data_dir ? "--data" : "P7_DATA",
                    strerror(errno), root);
            return 1;
        }
        p7_status st = cifar20 ? p7_cifar100_find(root, plan->data_dir, sizeof plan->data_dir)
                               : p7_cifar10_find(root, plan->data_dir, sizeof plan->data_dir);
        if (st != P7_SUCCESS) {
            if (o->data_dir || o->dataset_given) {
                fprintf(stderr, "p7bench: %s was asked for, but %s\n(get it with: p7data fetch %s --out %s/%s)\n",
                        o->dataset, p7_last_error(), cifar20 ? "cifar100" : "cifar10", root,
                        cifar20 ? "cifar100" : "cifar10");
                return 1;
            }
            fprintf(stderr, "p7bench: no %s under %s (%s)\n", o->dataset, root, p7_last_error());
            fprintf(stderr,
                    "p7bench: USING THE BUILT-IN SYNTHETIC DATASET %s, NOT CIFAR: results say so in every line "
                    "(--dataset or --data makes missing data an error instead)\n",
                    P7_SYNTHETIC_NAME);
            plan->synthetic = 1;
        }
    }
    char err[1024];
    if (p7bench_results_open(o->out_csv, csv_header, &plan->results, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench: --out: %s\n", err);
        return 1;
    }
    return 0;
}

void p7bench_plan_release(p7bench_plan *plan)
{
    p7bench_results_close(plan->results);
    plan->results = NULL;
}

static int load_data(const p7bench_train_options *o, const p7bench_plan *plan, p7_dataset *train_all,
                     p7_dataset *test)
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

static p7_status build_model(p7_device *device, const p7bench_train_options *o, int classes, uint64_t seed,
                             p7_model **out)
{
    p7_network_config config = o->network;
    config.classes = classes;
    return p7_model_build(device, &config, seed, out);
}

/* CSV text field: quoted, with quotes doubled (RFC 4180), so any --hparams text is one field. */
static void csv_quote(const char *text, char *out, size_t size)
{
    size_t used = 0;
    if (size < 3) return;
    out[used++] = '"';
    for (const char *c = text ? text : ""; *c && used + 3 < size; c++) {
        if (*c == '"') out[used++] = '"';
        out[used++] = *c;
    }
    out[used++] = '"';
    out[used] = '\0';
}


int p7bench_resolve_recipe(p7bench_train_options *o)
{
    if (o->faithful & P7_FAITHFUL_OPTIMIZER_IS_ADAM && strcmp(o->optimizer, "adam") != 0) {
        fprintf(stderr, "p7bench: faithful optimizer-is-adam: '%s' trains with Adam, as every run of the original did (B1)\n",
                o->optimizer);
        o->optimizer = "adam";
    }
    p7_optimizer_plugin *plugin = NULL;
    if (p7_optimizer_plugin_open(o->optimizer, &plugin) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --optimizer: %s\n", p7_last_error());
        return 1;
    }
    const char *name = p7_optimizer_plugin_table(plugin)->name;
    /* --faithful trains as the original did: its fixed settings, no recipe, no schedule */
    const p7_recipe *recipe = o->faithful ? NULL : p7_recipe_find(name);
    int rc = 0;
    /* the user's text on its own first, so a repeated or unknown name is named as given */
    if (p7_optimizer_plugin_check_hparams(plugin, o->hparams) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: --hparams: %s\n", p7_last_error());
        rc = 2;
    } else if (p7_recipe_merge_hparams(recipe ? recipe->hparams : NULL, o->hparams, o->run_hparams, sizeof o->run_hparams) !=
        P7_SUCCESS) {
        fprintf(stderr, "p7bench: --hparams: %s\n", p7_last_error());
        rc = 2;
    } else if (p7_optimizer_plugin_check_hparams(plugin, o->run_hparams) != P7_SUCCESS) {
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
        char help[4096];
        printf("p7bench: optimizer plugin %s\n%s", p7_optimizer_plugin_path(plugin),
               p7_optimizer_plugin_help(plugin, help, sizeof help));
        if (recipe)
            printf("p7bench: recipe for %s: %s; schedule %s\n  (%s)\n", name, recipe->hparams, recipe->schedule,
                   recipe->why);
        else
            printf("p7bench: no recipe for %s%s: plugin defaults\n", name, o->faithful ? " under --faithful" : "");
        printf("p7bench: training with %s: hyperparameters '%s'%s, schedule %s\n", name, o->run_hparams,
               o->hparams ? " (recipe overridden by --hparams)" : "", o->run_schedule);
    }
    p7_optimizer_plugin_close(plugin);
    return rc;
}

/* What one run writes in every row before its epoch. */
typedef struct run_context {
    const p7bench_train_options *o;
    p7bench_plan *plan;
    const char *dataset_name;
    const char *optimizer_name;
    uint64_t seed;
    size_t train_images;
    p7_param_counts counts;
    int failed;
} run_context;

static void fmt(char *out, size_t size, int has, const char *format, double v)
{
    if (has && v == v) snprintf(out, size, format, v);
    else out[0] = '\0';
}

static int on_epoch(const p7_epoch_report *r, void *user)
{
    run_context *x = user;
    const p7bench_train_options *o = x->o;
    char hp[1200], sched[300], lr[32], tl[32], vl[32], va[32], ve[32], vb[32], vd[32], ma[P7_METRICS_MAX_MEMBERS * 10 + 1],
        sl[32], sa[32], se[32], sb[32], sd[32], mn[P7_METRICS_MAX_MEMBERS * 12 + 1], bs[16], ba[32], bl[32], be[32];
    csv_quote(o->run_hparams, hp, sizeof hp);
    csv_quote(o->run_schedule, sched, sizeof sched);
    int ok = r->outcome != P7_EPOCH_DIVERGED;
    fmt(lr, sizeof lr, 1, "%.6g", r->lr);
    fmt(tl, sizeof tl, 1, "%.6f", r->train_loss);
    fmt(vl, sizeof vl, r->has_val, "%.6f", r->val.nll);
    fmt(va, sizeof va, r->has_val, "%.3f", 100 * r->val.accuracy);
    fmt(ve, sizeof ve, r->has_val, "%.6f", r->val.ece);
    fmt(vb, sizeof vb, r->has_val, "%.6f", r->val.brier);
    const int ensemble_known = r->has_val && r->val.members_known && r->val.members > 1;
    fmt(vd, sizeof vd, ensemble_known, "%.6f", r->val.diversity);
    ma[0] = '\0';
    if (ensemble_known)
        for (int m = 0, n = 0; m < r->val.members; m++)
            n += snprintf(ma + n, sizeof ma - (size_t)n, "%s%.3f", m ? ";" : "", 100 * r->val.member_accuracy[m]);
    fmt(sl, sizeof sl, r->has_test, "%.6f", r->test.nll);
    fmt(sa, sizeof sa, r->has_test, "%.3f", 100 * r->test.accuracy);
    fmt(se, sizeof se, r->has_test, "%.6f", r->test.ece);
    fmt(sb, sizeof sb, r->has_test, "%.6f", r->test.brier);
    const int test_members_known = r->has_test && r->test.members_known && r->test.members > 1;
    fmt(sd, sizeof sd, test_members_known, "%.6f", r->test.diversity);
    mn[0] = '\0';
    if (test_members_known)
        for (int m = 0, n = 0; m < r->test.members; m++)
            n += snprintf(mn + n, sizeof mn - (size_t)n, "%s%.4f", m ? ";" : "", r->test.member_nll[m]);
    fmt(bs, sizeof bs, r->has_bma, "%.0f", r->bma_samples);
    fmt(ba, sizeof ba, r->has_bma, "%.3f", 100 * r->test_bma.accuracy);
    fmt(bl, sizeof bl, r->has_bma, "%.6f", r->test_bma.nll);
    fmt(be, sizeof be, r->has_bma, "%.6f", r->test_bma.ece);
    const char *status = !ok ? "diverged" : r->outcome == P7_EPOCH_EARLY_STOP ? "early_stop" : "ok";
    char row[4096];
    snprintf(row, sizeof row,
             "%s,%s,%d,%s,%s,%s,%llu,%d,%zu,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%llu,%llu,%llu,%.1f,%.2f,%s",
             x->dataset_name, o->model, o->members, x->optimizer_name, hp, sched, (unsigned long long)x->seed, r->epoch,
             x->train_images, lr, tl, vl, va, ve, vb, vd, ma, sl, sa, se, sb, sd, mn, bs, ba, bl, be,
             (unsigned long long)x->counts.unique, (unsigned long long)x->counts.used,
             (unsigned long long)x->counts.shared, r->images_per_s, r->seconds, status);
    char err[1024];
    if (p7bench_results_append(x->plan->results, row, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench: %s: %s\n", o->out_csv, err);
        x->failed = 1;
        return 1;
    }
    if (!ok) {
        fprintf(stderr, "p7bench: training DIVERGED in epoch %d: mean training loss %g %s; the run stops here. Lower "
                        "the learning rate (--hparams lr=...).\n",
                r->epoch, r->train_loss, r->train_loss == r->train_loss ? "is above --max-loss" : "is not a number");
        return 1;
    }
    fprintf(stderr, "  seed %llu epoch %d/%d  lr %.3g  train loss %.4f", (unsigned long long)x->seed, r->epoch, o->epochs,
            r->lr, r->train_loss);
    if (r->has_val)
        fprintf(stderr, "  val nll %.4f acc %.2f%% ece %.3f", r->val.nll, 100 * r->val.accuracy, r->val.ece);
    if (r->has_test) fprintf(stderr, "  test nll %.4f acc %.2f%%", r->test.nll, 100 * r->test.accuracy);
    if (r->has_bma)
        fprintf(stderr, "  BMA(%d) nll %.4f acc %.2f%%", r->bma_samples, r->test_bma.nll, 100 * r->test_bma.accuracy);
    if (r->restored_epoch) fprintf(stderr, "  (weights of epoch %d)", r->restored_epoch);
    if (r->outcome == P7_EPOCH_EARLY_STOP) fprintf(stderr, "  early stop");
    fprintf(stderr, "  %.0f img/s, %.1f s (%s)\n", r->images_per_s, r->seconds, x->dataset_name);
    return 0;
}

/* One seed's run: model and optimizer from the seed, the trainer, one row per epoch. */
static int train_one_seed(p7_device *device, const p7bench_train_options *o, p7bench_plan *plan, uint64_t seed,
                          const p7_dataset *train, const p7_dataset *val, const p7_dataset *test,
                          const char *dataset_name)
{
    p7_model *model = NULL;
    p7_optimizer *opt = NULL;
    p7_trainer *trainer = NULL;
    int rc = P7BENCH_FAILED;
    run_context x = {.o = o, .plan = plan, .dataset_name = dataset_name, .seed = seed, .train_images = train->count};
    TRY(build_model(device, o, train->classes, seed, &model));
    TRY(p7_model_count_params(model, &x.counts));
    p7_optimizer_options oo = {.hparams = o->run_hparams, .seed = seed, .dataset_size = train->count};
    TRY(p7_optimizer_create_for_model(model, o->optimizer, &oo, &opt));
    x.optimizer_name = p7_optimizer_name(opt);
    int cifar20 = strcmp(o->dataset, "cifar20") == 0;
    p7_train_config c = {.epochs = o->epochs, .batch = o->batch, .seed = seed, .schedule = o->parsed_schedule,
                         .clip_norm = o->clip, .patience = o->patience, .min_delta = o->min_delta,
                         .augment = (o->augment < 0 ? cifar20 : o->augment) ? P7_AUGMENT_CROP | P7_AUGMENT_FLIP : 0,
                         .bma_samples = o->bma_samples, .faithful = o->faithful, .max_loss = o->max_loss,
                         .model_label = o->model};
    TRY(p7_trainer_create(device, model, opt, train, val, test, &c, &trainer));
    fprintf(stderr, "p7bench: seed %llu: model %s (members %d; parameters %llu unique, %llu used, %llu shared), "
                    "optimizer %s, batch %d, %d epoch(s), %zu training images, augmentation %s\n",
            (unsigned long long)seed, o->model, o->members, (unsigned long long)x.counts.unique,
            (unsigned long long)x.counts.used, (unsigned long long)x.counts.shared, x.optimizer_name, o->batch,
            o->epochs, train->count, c.augment ? "crop+flip" : "off");
    p7_epoch_report last;
    TRY(p7_trainer_run(trainer, on_epoch, &x, &last));
    if (x.failed) goto fail;
    rc = last.outcome == P7_EPOCH_DIVERGED ? P7BENCH_DIVERGED : P7BENCH_OK;
fail:
    p7_trainer_destroy(trainer);
    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    return rc;
}

int p7bench_train(p7_device *device, const p7bench_train_options *o, p7bench_plan *plan)
{
    p7_dataset all = {0}, train = {0}, val = {0}, test = {0};
    int rc = P7BENCH_FAILED;
    if (load_data(o, plan, &all, &test)) return P7BENCH_FAILED;
    /* the original study's 45,000 / 5,000 split (seed 42) for every run seed, scaled for the synthetic set */
    size_t n_val = all.synthetic ? all.count / 10 : P7_SPLIT_VALIDATION;
    TRY(p7_dataset_split(&all, n_val, P7_SPLIT_SEED, &train, &val));
    if (o->limit && o->limit < train.count) train.count = o->limit; /* a prefix of a seeded permutation */
    if (p7_batch_count(train.count, (size_t)o->batch, 0) == 0) {
        fprintf(stderr, "p7bench: %zu training images make no batch of %d; lower --batch\n", train.count, o->batch);
        goto fail;
    }
    const char *dataset_name = all.synthetic ? P7_SYNTHETIC_NAME : o->dataset;
    rc = P7BENCH_OK;
    for (int i = 0; i < o->seed_count && rc == P7BENCH_OK; i++)
        rc = train_one_seed(device, o, plan, o->seeds[i], &train, &val, &test, dataset_name);
    if (rc != P7BENCH_FAILED) printf("p7bench: results appended to %s (dataset %s)\n", o->out_csv, dataset_name);
fail:
    p7_dataset_free(&all);
    p7_dataset_free(&train);
    p7_dataset_free(&val);
    p7_dataset_free(&test);
    return rc;
}
