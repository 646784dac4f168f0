/* One study cell run to its end through checkpoints (see p7bench_cell_run.h). */
#define _POSIX_C_SOURCE 200809L
#include "p7bench_cell_run.h"
#include "p7bench_profile.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- SIGINT, SIGTERM */

static volatile sig_atomic_t interrupt_requested;

static void on_stop_signal(int sig)
{
    if (!interrupt_requested) interrupt_requested = sig;
}

void p7bench_catch_interrupt(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C ends the process at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    /* SIGTERM (kill, scancel, a SLURM time limit or preemption) stops the same way. It does
     * not reset: SLURM may send it twice (--signal's early warning, then the limit), and
     * SIGKILL is the way to end at once. */
    sa.sa_flags = 0;
    sigaction(SIGTERM, &sa, NULL);
}

int p7bench_interrupted(void) { return interrupt_requested != 0; }

int p7bench_interrupt_signal(void) { return interrupt_requested; }

/* ---------------------------------------------------------------- a cell's settings */

static const char *get(const p7bench_cell *cell, const char *key)
{
    const char *v = p7bench_config_get(&cell->config, key);
    return v && *v ? v : NULL;
}

static double get_real(const p7bench_cell *cell, const char *key, double missing)
{
    const char *v = get(cell, key);
    return v ? strtod(v, NULL) : missing;
}

static long long get_int(const p7bench_cell *cell, const char *key, long long missing)
{
    const char *v = get(cell, key);
    return v ? strtoll(v, NULL, 10) : missing;
}

static int on_off(const char *v, int missing) { return !v ? missing : strcmp(v, "on") == 0; }

int p7bench_cell_options(const p7bench_cell *cell, const p7bench_data_choice *data, int verbose,
                         p7bench_train_options *o, p7bench_plan *plan)
{
    memset(o, 0, sizeof *o);
    o->data_dir = data->data_dir;
    o->dataset_given = data->dataset_given;
    o->dataset = get(cell, "dataset") ? get(cell, "dataset") : "cifar10";
    o->model = get(cell, "model") ? get(cell, "model") : "simple";
    o->optimizer = get(cell, "optimizer") ? get(cell, "optimizer") : "adam";
    o->hparams = get(cell, "hparams");
    o->schedule = get(cell, "schedule");
    o->regime = get(cell, "regime");
    o->lr = get_real(cell, "lr", NAN);
    o->weight_decay = get_real(cell, "weight_decay", 0);
    o->members = (int)get_int(cell, "members", 1);
    o->alpha_init = (float)get_real(cell, "alpha", 0.5);
    o->gamma_init = (float)get_real(cell, "gamma", 0.5);
    o->epochs = (int)get_int(cell, "epochs", 3);
    o->batch = (int)get_int(cell, "batch", 128);
    o->seed = (uint64_t)get_int(cell, "seed", 42);
    o->limit = (size_t)get_int(cell, "limit", 0);
    o->val_split = (size_t)get_int(cell, "val_split", 0);
    o->max_loss = get_real(cell, "max_loss", 1e4);
    o->clip = get_real(cell, "clip", 0);
    o->patience = (int)get_int(cell, "patience", 0);
    o->min_delta = get_real(cell, "min_delta", 0);
    o->augment = on_off(get(cell, "augment"), -1);
    o->bma_samples = (int)get_int(cell, "bma_samples", -1);
    if (p7bench_parse_faithful(get(cell, "faithful"), &o->faithful) != 0) return P7BENCH_USAGE;
    p7_network_config *n = &o->network;
    n->batchnorm = on_off(get(cell, "bn"), -1);
    const char *kind = get(cell, "member_kind");
    n->member_kind = !kind ? P7_MEMBERS_DEFAULT
                     : strcmp(kind, "be") == 0 ? P7_MEMBERS_BATCHENSEMBLE
                                               : P7_MEMBERS_INDEPENDENT;
    n->tie = get(cell, "tie");
    n->width = (float)get_real(cell, "width", 1);
    if ((get(cell, "intra") && p7_share_parse(get(cell, "intra"), &n->within) != P7_SUCCESS) ||
        (get(cell, "inter") && p7_share_parse(get(cell, "inter"), &n->between) != P7_SUCCESS)) {
        fprintf(stderr, "p7bench: %s: %s\n", cell->id, p7_last_error());
        return P7BENCH_USAGE;
    }
    if (p7bench_resolve_network(o) != 0) return P7BENCH_USAGE;
    if ((long long)o->members * o->batch > 65536) {
        fprintf(stderr, "p7bench: %s: %d members x batch %d rows per step is more than 65536\n", cell->id, o->members,
                o->batch);
        return P7BENCH_USAGE;
    }
    int rc = p7bench_resolve_recipe(o, verbose);
    if (rc != 0) return rc;
    return p7bench_prepare(o, plan) != 0 ? P7BENCH_FAILED : 0;
}

/* ---------------------------------------------------------------- the data, once per process */

struct p7bench_data_cache {
    char key[4200]; /* data folder (or synthetic) and validation split */
    p7_dataset all, train, val, test;
    int has_val;
};

static void cache_free(p7bench_data_cache *c)
{
    if (!c) return;
    p7_dataset_free(&c->all);
    p7_dataset_free(&c->train);
    p7_dataset_free(&c->val);
    p7_dataset_free(&c->test);
    memset(c, 0, sizeof *c);
}

void p7bench_runner_release(p7bench_runner *r)
{
    if (!r) return;
    cache_free(r->cache);
    free(r->cache);
    r->cache = NULL;
}

/* The training, validation and test sets of a cell: the study's fixed 45,000 / 5,000
 * split (seed 42) when val_split > 0, scaled to the synthetic set's size. */
static int cell_data(p7bench_runner *r, const p7bench_train_options *o, const p7bench_plan *plan)
{
    char key[4200];
    snprintf(key, sizeof key, "%s|%s|%zu", plan->synthetic ? "synthetic" : plan->data_dir, o->dataset, o->val_split);
    if (!r->cache && !(r->cache = calloc(1, sizeof *r->cache))) return 1;
    p7bench_data_cache *c = r->cache;
    if (strcmp(c->key, key) == 0) return 0;
    cache_free(c);
    if (p7bench_load_data(o, plan, &c->all, &c->test) != 0) return 1;
    size_t n_val = o->val_split;
    if (c->all.synthetic) n_val = n_val * c->all.count / 50000; /* the same fraction as CIFAR's */
    p7_status st = n_val > 0 ? p7_dataset_split(&c->all, n_val, P7_SPLIT_SEED, &c->train, &c->val)
                             : p7_dataset_split(&c->all, 0, P7_SPLIT_SEED, &c->train, &c->val);
    if (st != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s\n", p7_last_error());
        cache_free(c);
        return 1;
    }
    c->has_val = n_val > 0;
    snprintf(c->key, sizeof c->key, "%s", key);
    return 0;
}

/* ---------------------------------------------------------------- the console */

typedef struct console {
    FILE *log;     /* the cell's console.log */
    int live;
    double last_draw;
    int drawn;     /* a live line is on the screen */
} console;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One line to stderr and the cell's console.log. */
static void say(console *c, const char *format, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, format);
    vsnprintf(line, sizeof line, format, ap);
    va_end(ap);
    if (c->drawn) fputs("\r\033[K", stderr);
    c->drawn = 0;
    fprintf(stderr, "%s\n", line);
    if (c->log) {
        fprintf(c->log, "%s\n", line);
        fflush(c->log);
    }
}

static void duration(double s, char *out, size_t size)
{
    if (!(s >= 0) || s > 1e8) snprintf(out, size, "?");
    else if (s < 60) snprintf(out, size, "%.0fs", s);
    else if (s < 3600) snprintf(out, size, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(out, size, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* ---------------------------------------------------------------- checkpoints */

static const char checkpoint_magic[8] = {'P', '7', 'B', 'C', 'K', 'P', 'T', '\0'};
static const char checkpoint_end[8] = {'P', '7', 'B', 'E', 'N', 'D', '\0', '\0'};
enum { CHECKPOINT_VERSION = 2 }; /* 2: the epoch records hold every metric of the report */

/* What a checkpoint holds besides the model, the optimizer and the best weights. */
typedef struct cell_progress {
    p7_trainer_state state;
    double seconds;              /* the cell's wall time so far, over all sessions */
    p7bench_cell_result *result; /* epochs and final metrics so far */
} cell_progress;

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n; }
static int take(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

static int put_progress(FILE *f, const char *identity, const cell_progress *p)
{
    const p7bench_cell_result *r = p->result;
    uint32_t version = CHECKPOINT_VERSION, len = (uint32_t)strlen(identity);
    int64_t ints[6] = {p->state.epoch, (int64_t)p->state.step, p->state.early_stopping.best_epoch,
                       p->state.early_stopping.bad_epochs, p->state.early_stopping.stopped, (int64_t)p->state.batch};
    double finals[10] = {p->state.early_stopping.best_loss, p->seconds, r->final_test_acc, r->test_nll, r->test_ece,
                         r->test_brier, r->diversity, r->bma_test_acc, r->bma_test_nll, r->bma_test_ece};
    int64_t counts[4] = {r->bma_samples, (int64_t)r->member_count, (int64_t)r->epoch_count, 0};
    int ok = put(f, checkpoint_magic, 8) && put(f, &version, 4) && put(f, &len, 4) && put(f, identity, len) &&
             put(f, ints, sizeof ints) && put(f, &p->state.loss_sum, sizeof p->state.loss_sum) &&
             put(f, finals, sizeof finals) && put(f, &r->images_per_s, sizeof(double)) && put(f, counts, sizeof counts);
    if (ok && r->member_count) ok = put(f, r->member_acc, r->member_count * sizeof(double));
    if (ok && r->epoch_count) ok = put(f, r->epochs, r->epoch_count * sizeof *r->epochs);
    return ok;
}

/* The first setting where two canonical texts differ: "lr=0.002" vs "lr=0.0002". */
static void first_difference(const char *a, const char *b, char *out, size_t size)
{
    char ca[8192], cb[8192];
    snprintf(ca, sizeof ca, "%s", a);
    snprintf(cb, sizeof cb, "%s", b);
    /* every line of one that the other lacks; keys compared first */
    for (int pass = 0; pass < 2; pass++) {
        char *mine = pass ? cb : ca;
        const char *theirs = pass ? a : b;
        for (char *save = NULL, *line = strtok_r(mine, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char needle[600];
            snprintf(needle, sizeof needle, "\n%s\n", line);
            char wrapped[8200];
            snprintf(wrapped, sizeof wrapped, "\n%s", theirs);
            if (strstr(wrapped, needle)) continue;
            const char *eq = strchr(line, '=');
            size_t klen = eq ? (size_t)(eq - line) : strlen(line);
            char other[600] = "";
            for (const char *p = wrapped; (p = strstr(p, "\n")) != NULL; p++)
                if (strncmp(p + 1, line, klen + 1) == 0) {
                    snprintf(other, sizeof other, "%.*s", (int)strcspn(p + 1, "\n"), p + 1);
                    break;
                }
            if (pass == 0)
                snprintf(out, size, "the checkpoint was written with %s, and this run has %s", line,
                         *other ? other : "no such setting");
            else
                snprintf(out, size, "this run has %s, and the checkpoint was written with %s", line,
                         *other ? other : "no such setting");
            return;
        }
    }
    snprintf(out, size, "the settings differ");
}

static int sync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return 0;
    fsync(fd);
    close(fd);
    return 0;
}

/* Writes the checkpoint to PATH.tmp, syncs it and renames it over PATH. */
static int write_checkpoint(const char *path, const char *identity, const cell_progress *p, p7_model *model,
                            p7_optimizer *opt, p7_weights_snapshot *best)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "p7bench: cannot write the checkpoint %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    const uint8_t has_best = best && p->state.early_stopping.best_epoch > 0;
    int ok = put_progress(f, identity, p) && put(f, &has_best, 1);
    p7_status st = P7_SUCCESS;
    if (ok) st = p7_model_save_stream(model, f, path);
    if (ok && st == P7_SUCCESS) st = p7_optimizer_save_stream(opt, f);
    if (ok && st == P7_SUCCESS && has_best) {
        st = p7_weights_snapshot_swap(best);
        if (st == P7_SUCCESS) {
            p7_status saved = p7_model_save_stream(model, f, path);
            st = p7_weights_snapshot_swap(best);
            if (st == P7_SUCCESS) st = saved;
        }
    }
    if (ok && st == P7_SUCCESS) ok = put(f, checkpoint_end, 8);
    ok = ok && st == P7_SUCCESS && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        fprintf(stderr, "p7bench: cannot write the checkpoint %s: %s\n", path,
                st != P7_SUCCESS ? p7_last_error() : strerror(errno));
        unlink(tmp);
        return 1;
    }
    sync_dir_of(path);
    return 0;
}

/* Reads a checkpoint into the fresh model, optimizer and trainer. Returns 0 (loaded),
 * -1 (none there) or 1 (refused or unreadable, after printing why). */
static int read_checkpoint(const char *path, const char *identity, cell_progress *p, p7_model *model,
                           p7_optimizer *opt, p7_trainer *trainer)
{
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? -1 : (fprintf(stderr, "p7bench: %s: %s\n", path, strerror(errno)), 1);
    char magic[8], text[8192];
    uint32_t version = 0, len = 0;
    int rc = 1;
    p7bench_cell_result *r = p->result;
    if (!take(f, magic, 8) || memcmp(magic, checkpoint_magic, 8) != 0 || !take(f, &version, 4) ||
        version != CHECKPOINT_VERSION || !take(f, &len, 4) || len >= sizeof text || !take(f, text, len)) {
        fprintf(stderr, "p7bench: %s is not a p7bench checkpoint of version %d (or it is cut short); delete it to start "
                        "the cell over\n", path, CHECKPOINT_VERSION);
        goto done;
    }
    text[len] = '\0';
    if (strcmp(text, identity) != 0) {
        char why[1400];
        first_difference(text, identity, why, sizeof why);
        fprintf(stderr, "p7bench: %s belongs to another configuration: %s. It is not resumed; delete it to start the "
                        "cell over\n", path, why);
        goto done;
    }
    int64_t ints[6], counts[4];
    double finals[10];
    if (!take(f, ints, sizeof ints) || !take(f, &p->state.loss_sum, sizeof p->state.loss_sum) ||
        !take(f, finals, sizeof finals) || !take(f, &r->images_per_s, sizeof(double)) || !take(f, counts, sizeof counts) ||
        counts[1] < 0 || counts[1] > P7_METRICS_MAX_MEMBERS || counts[2] < 0 || counts[2] > 1000000)
        goto cut;
    p->state.epoch = (int)ints[0];
    p->state.step = (uint64_t)ints[1];
    p->state.early_stopping.best_epoch = (int)ints[2];
    p->state.early_stopping.bad_epochs = (int)ints[3];
    p->state.early_stopping.stopped = (int)ints[4];
    p->state.batch = (size_t)ints[5];
    p->state.early_stopping.best_loss = finals[0];
    p->seconds = finals[1];
    r->final_test_acc = finals[2], r->test_nll = finals[3], r->test_ece = finals[4], r->test_brier = finals[5];
    r->diversity = finals[6], r->bma_test_acc = finals[7], r->bma_test_nll = finals[8], r->bma_test_ece = finals[9];
    r->bma_samples = counts[0];
    double members[P7_METRICS_MAX_MEMBERS];
    if (counts[1] && !take(f, members, (size_t)counts[1] * sizeof(double))) goto cut;
    if (p7bench_cell_result_set_members(r, members, (size_t)counts[1]) != 0) goto cut;
    for (int64_t i = 0; i < counts[2]; i++) {
        p7bench_epoch_record e;
        if (!take(f, &e, sizeof e) || p7bench_cell_result_add_epoch(r, &e) != 0) goto cut;
    }
    uint8_t has_best = 0;
    if (!take(f, &has_best, 1)) goto cut;
    p7_weights_snapshot *best = p7_trainer_best_weights(trainer);
    if (has_best && !best) {
        fprintf(stderr, "p7bench: %s holds best weights, but this run keeps none\n", path);
        goto done;
    }
    p7_status st = p7_model_load_stream(model, f, path);
    if (st == P7_SUCCESS) st = p7_optimizer_load_stream(opt, f);
    if (st == P7_SUCCESS && has_best) { /* into the snapshot: swap, load, swap back */
        st = p7_weights_snapshot_swap(best);
        if (st == P7_SUCCESS) st = p7_model_load_stream(model, f, path);
        if (st == P7_SUCCESS) st = p7_weights_snapshot_swap(best);
    }
    if (st != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s: %s\n", path, p7_last_error());
        goto done;
    }
    if (!take(f, magic, 8) || memcmp(magic, checkpoint_end, 8) != 0) goto cut;
    if (p7_trainer_set_state(trainer, &p->state) != P7_SUCCESS) {
        fprintf(stderr, "p7bench: %s: %s\n", path, p7_last_error());
        goto done;
    }
    rc = 0;
    goto done;
cut:
    fprintf(stderr, "p7bench: %s is cut short or damaged; delete it to start the cell over\n", path);
done:
    fclose(f);
    return rc;
}

/* ---------------------------------------------------------------- one cell */

typedef struct cell_run {
    p7bench_runner *runner;
    const p7bench_cell *cell;
    const p7bench_train_options *o;
    console con;
    double session_t0, seconds_before;
    size_t steps_total;      /* optimizer steps of the whole cell */
    uint64_t steps_at_start; /* of this session */
    p7bench_profile *profile;/* --profile, else NULL */
} cell_run;

static int on_step(const p7_step_progress *p, void *user)
{
    cell_run *x = user;
    p7bench_profile_on_step(x->profile, p);
    if (x->con.live) {
        double t = now_s();
        if (t - x->con.last_draw >= 0.25) {
            x->con.last_draw = t;
            double per_step = (t - x->session_t0) / (double)(p->step - x->steps_at_start);
            char left[32], loss[32] = "...";
            duration(per_step * (double)(x->steps_total - p->step), left, sizeof left);
            if (p->loss == p->loss) snprintf(loss, sizeof loss, "%.4f", p->loss);
            fprintf(stderr, "\r\033[K  %s  epoch %d/%d  batch %zu/%zu  loss %s  %.0f img/s  %s left", x->cell->id,
                    p->epoch, x->o->epochs, p->batch, p->batches, loss, p->images_per_s, left);
            x->con.drawn = 1;
        }
    }
    return p7bench_interrupted();
}

_Static_assert(P7BENCH_MEMBERS_MAX == P7_METRICS_MAX_MEMBERS, "an epoch record keeps every member p7 scores");

/* One split's metrics into the record's fields (accuracies in percent). */
static void record_split(const p7_metrics_summary *s, double *acc, double *nll, double *ece, double *brier,
                         double *diversity, int *members, double *member_acc)
{
    *acc = 100 * s->accuracy, *nll = s->nll, *ece = s->ece, *brier = s->brier;
    if (s->members_known && s->members > 1) {
        *diversity = s->diversity;
        *members = s->members;
        for (int m = 0; m < s->members; m++) member_acc[m] = 100 * s->member_accuracy[m];
    }
}

static void record_epoch(p7bench_cell_result *r, const p7_epoch_report *e, int has_val, int clipped)
{
    p7bench_epoch_record rec;
    p7bench_epoch_record_init(&rec, e->epoch);
    rec.step = (long long)e->step;
    rec.lr = e->lr;
    rec.train_loss = e->train_loss;
    if (clipped) rec.grad_norm = e->grad_norm; /* the report's 0 without clipping is no measurement */
    rec.images_per_s = e->images_per_s;
    rec.seconds = e->seconds;
    snprintf(rec.outcome, sizeof rec.outcome, "%s",
             e->outcome == P7_EPOCH_DIVERGED ? "diverged" : e->outcome == P7_EPOCH_EARLY_STOP ? "early_stop" : "ok");
    if (e->has_val && has_val)
        record_split(&e->val, &rec.val_acc, &rec.val_loss, &rec.val_ece, &rec.val_brier, &rec.val_diversity,
                     &rec.val_members, rec.val_member_acc);
    if (e->has_test)
        record_split(&e->test, &rec.test_acc, &rec.test_loss, &rec.test_ece, &rec.test_brier, &rec.test_diversity,
                     &rec.test_members, rec.test_member_acc);
    if (e->has_bma) {
        rec.bma_samples = e->bma_samples;
        rec.bma_acc = 100 * e->test_bma.accuracy, rec.bma_nll = e->test_bma.nll, rec.bma_ece = e->test_bma.ece;
    }
    p7bench_cell_result_add_epoch(r, &rec);
    r->images_per_s = e->images_per_s;
    if (e->has_test) {
        r->final_test_acc = 100 * e->test.accuracy;
        r->test_nll = e->test.nll;
        r->test_ece = e->test.ece;
        r->test_brier = e->test.brier;
        if (e->test.members_known && e->test.members > 1) {
            double acc[P7_METRICS_MAX_MEMBERS];
            for (int m = 0; m < e->test.members; m++) acc[m] = 100 * e->test.member_accuracy[m];
            p7bench_cell_result_set_members(r, acc, (size_t)e->test.members);
            r->diversity = e->test.diversity;
        }
    }
    if (e->has_bma) {
        r->bma_samples = e->bma_samples;
        r->bma_test_acc = 100 * e->test_bma.accuracy;
        r->bma_test_nll = e->test_bma.nll;
        r->bma_test_ece = e->test_bma.ece;
    }
}

static void epoch_line(cell_run *x, const p7_epoch_report *r)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "  %s epoch %d/%d  lr %.3g  train loss %.4f", x->cell->id, r->epoch,
                     x->o->epochs, r->lr, r->train_loss);
    if (r->has_val)
        n += snprintf(line + n, sizeof line - (size_t)n, "  val nll %.4f acc %.2f%% ece %.3f", r->val.nll,
                      100 * r->val.accuracy, r->val.ece);
    if (r->has_test)
        n += snprintf(line + n, sizeof line - (size_t)n, "  test nll %.4f acc %.2f%%", r->test.nll, 100 * r->test.accuracy);
    if (r->has_bma)
        n += snprintf(line + n, sizeof line - (size_t)n, "  BMA(%d) nll %.4f acc %.2f%%", r->bma_samples,
                      r->test_bma.nll, 100 * r->test_bma.accuracy);
    if (r->restored_epoch) n += snprintf(line + n, sizeof line - (size_t)n, "  (weights of epoch %d)", r->restored_epoch);
    if (r->outcome == P7_EPOCH_EARLY_STOP) n += snprintf(line + n, sizeof line - (size_t)n, "  early stop");
    snprintf(line + n, sizeof line - (size_t)n, "  %.0f img/s, %.1f s", r->images_per_s, r->seconds);
    say(&x->con, "%s", line);
}

/* reliability.csv from the final test's calibration bins; without a final test (a
 * divergence) no file, and none left from an earlier run. */
static int write_reliability(const p7_trainer *trainer, int tested, const char *path, char *err, size_t err_size)
{
    if (!tested) {
        unlink(path);
        return 0;
    }
    const int n = p7_trainer_ece_bins(trainer);
    p7bench_reliability_bin *bins = calloc((size_t)n, sizeof *bins);
    if (!bins) return snprintf(err, err_size, "out of host memory"), 1;
    for (int j = 0; j < n; j++) {
        size_t count;
        if (p7_trainer_test_bins(trainer, j, &count, &bins[j].accuracy, &bins[j].confidence) != P7_SUCCESS) {
            snprintf(err, err_size, "%s", p7_last_error());
            free(bins);
            return 1;
        }
        bins[j].lower = (double)j / n;
        bins[j].upper = (double)(j + 1) / n;
        bins[j].count = (long long)count;
    }
    int rc = p7bench_reliability_write(path, bins, (size_t)n, err, err_size);
    free(bins);
    return rc;
}

/* The canonical text plus what the cell's settings resolve to on this machine: a
 * checkpoint of a run with another recipe, schedule or data is not resumed. */
static void identity_text(const p7bench_runner *rn, const p7bench_cell *cell, const p7bench_train_options *o,
                          const p7_dataset *train, char *out, size_t size)
{
    int n = p7bench_config_text(rn->study, &cell->config, 0, out, size);
    if (n < 0) n = 0;
    snprintf(out + n, size - (size_t)n, "resolved.data=%s\nresolved.hparams=%s\nresolved.schedule=%s\n"
             "resolved.train_images=%zu\n", train->name, o->run_hparams, o->run_schedule, train->count);
}

int p7bench_cell_run(p7bench_runner *rn, const p7bench_cell *cell, p7bench_cell_result *out)
{
    p7bench_train_options o;
    p7bench_plan plan;
    p7bench_cell_paths paths;
    p7bench_cell_result result;
    p7_model *model = NULL;
    p7_optimizer *opt = NULL;
    p7_trainer *trainer = NULL;
    cell_run x = {.runner = rn, .cell = cell, .o = &o, .con = {.live = rn->live}};
    char err[1024];
    int rc = P7BENCH_FAILED, append = 1, peak_reset = 0;
    p7bench_profile profile = {0};
    int profile_failure_said = 0;
    p7bench_cell_result_init(&result, rn->study, cell);
    snprintf(result.device, sizeof result.device, "%s", p7_device_describe(rn->device));
    if (p7bench_study_folder_cell(rn->folder, cell, &paths, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench: %s: %s\n", cell->id, err);
        goto finish;
    }
    x.con.log = fopen(paths.console_log, "a");
    if (p7bench_cell_options(cell, &rn->data, rn->verbose, &o, &plan) != 0) goto finish;
    snprintf(result.hparams, sizeof result.hparams, "%s", o.run_hparams);
    snprintf(result.schedule, sizeof result.schedule, "%s", o.run_schedule);
    snprintf(result.optimizer, sizeof result.optimizer, "%s", o.optimizer);
    if (cell_data(rn, &o, &plan) != 0) goto finish;
    p7bench_data_cache *data = rn->cache;
    p7_dataset train = data->train; /* a view: --limit takes a prefix of the seeded split */
    if (o.limit && o.limit < train.count) train.count = o.limit;
    if (p7_batch_count(train.count, (size_t)o.batch, 0) == 0) {
        fprintf(stderr, "p7bench: %s: %zu training images make no batch of %d\n", cell->id, train.count, o.batch);
        goto finish;
    }
    snprintf(result.dataset, sizeof result.dataset, "%s", data->all.synthetic ? P7_SYNTHETIC_NAME : o.dataset);
    /* the recipe again, now that the run's length is known (IVON's beta2 spans half of it) */
    o.run_steps = (uint64_t)o.epochs * p7_batch_count(train.count, (size_t)o.batch, 0);
    char before[sizeof o.run_hparams];
    snprintf(before, sizeof before, "%s", o.run_hparams);
    if (p7bench_resolve_recipe(&o, 0) != 0) goto finish;
    if (strcmp(before, o.run_hparams) != 0) {
        if (rn->verbose)
            say(&x.con, "p7bench: %s: for this run of %llu steps the recipe's hyperparameters are '%s'", cell->id,
                (unsigned long long)o.run_steps, o.run_hparams);
        snprintf(result.hparams, sizeof result.hparams, "%s", o.run_hparams);
    }

#define TRY(call)                                                                \
    do {                                                                         \
        if ((call) != P7_SUCCESS) {                                              \
            say(&x.con, "p7bench: %s: %s", cell->id, p7_last_error());           \
            goto finish;                                                         \
        }                                                                        \
    } while (0)
    p7_network_config net = o.network;
    net.classes = train.classes;
    p7_memory_reset_peak(rn->device); /* peak_device_bytes: this cell's, in this session */
    peak_reset = 1;
    TRY(p7_model_build(rn->device, &net, o.seed, &model));
    p7_param_counts counts;
    TRY(p7_model_count_params(model, &counts));
    result.params_unique = (long long)counts.unique;
    result.params_used = (long long)counts.used;
    result.params_shared = (long long)counts.shared;
    p7_optimizer_options oo = {.hparams = o.run_hparams, .seed = o.seed, .dataset_size = train.count};
    TRY(p7_optimizer_create_for_model(model, o.optimizer, &oo, &opt));
    snprintf(result.optimizer, sizeof result.optimizer, "%s", p7_optimizer_name(opt));
    double lr;
    if (p7_optimizer_get(opt, 0, "lr", &lr) == P7_SUCCESS) result.lr = lr;
    else p7_clear_error();
    const int cifar20 = strcmp(o.dataset, "cifar20") == 0;
    p7_train_config c = {.epochs = o.epochs, .batch = o.batch, .seed = o.seed, .schedule = o.parsed_schedule,
                         .clip_norm = o.clip, .patience = o.patience, .min_delta = o.min_delta,
                         .augment = (o.augment < 0 ? cifar20 : o.augment) ? P7_AUGMENT_CROP | P7_AUGMENT_FLIP : 0,
                         .bma_samples = o.bma_samples, .faithful = o.faithful, .max_loss = o.max_loss,
                         .model_label = o.model, .test_every_epoch = !data->has_val, .on_step = on_step,
                         .on_step_user = &x,
                         /* the original's sharing ensembles train on the CE of their mean logits */
                         .joint_loss = o.regime && o.members > 1 && (o.faithful & P7_FAITHFUL_MEAN_LOGITS)};
    TRY(p7_trainer_create(rn->device, model, opt, &train, data->has_val ? &data->val : NULL, &data->test, &c, &trainer));

    char identity[8192];
    identity_text(rn, cell, &o, &train, identity, sizeof identity);
    cell_progress progress = {.result = &result};
    int loaded = read_checkpoint(paths.checkpoint, identity, &progress, model, opt, trainer);
    if (loaded > 0) goto finish;
    x.seconds_before = progress.seconds;
    x.steps_total = (size_t)o.epochs * p7_batch_count(train.count, (size_t)o.batch, 0);
    x.steps_at_start = progress.state.step;
    char where[96] = "";
    if (loaded == 0 && progress.state.batch)
        snprintf(where, sizeof where, "; resumed in epoch %d after step %zu", progress.state.epoch + 1,
                 progress.state.batch);
    else if (loaded == 0)
        snprintf(where, sizeof where, "; resumed after epoch %d", progress.state.epoch);
    say(&x.con, "p7bench: cell %zu/%zu %s: %s, %d member(s), %s, lr %g, batch %d, %d epoch(s), %zu training images of %s, "
                "%llu parameters%s",
        rn->cell_index + 1, rn->cell_count, cell->id, o.model, o.members, result.optimizer, result.lr, o.batch, o.epochs,
        train.count, result.dataset, (unsigned long long)counts.used, where);

    if (rn->profile) {
        if (p7bench_profile_begin(&profile, rn->device, &net, o.batch, rn->peak_gflops, err, sizeof err) != 0) {
            say(&x.con, "p7bench: %s: %s", cell->id, err);
            goto finish;
        }
        x.profile = &profile;
    }
    x.session_t0 = now_s();
    p7_epoch_report last = {0};
    last.outcome = P7_EPOCH_OK;
    while (!p7_trainer_done(trainer)) {
        p7_epoch_report r;
        TRY(p7_trainer_run_epoch(trainer, &r));
        progress.seconds = x.seconds_before + (now_s() - x.session_t0);
        /* a failed profile is reported once; the training goes on without it */
        if (x.profile && p7bench_profile_epoch_end(x.profile, r.epoch) != 0 && !profile_failure_said) {
            say(&x.con, "p7bench: %s: %s", cell->id, x.profile->error);
            profile_failure_said = 1;
        }
        if (r.outcome == P7_EPOCH_INTERRUPTED) {
            TRY(p7_trainer_get_state(trainer, &progress.state));
            if (write_checkpoint(paths.checkpoint, identity, &progress, model, opt, p7_trainer_best_weights(trainer)))
                goto finish;
            say(&x.con, "p7bench: interrupted in cell %s at epoch %d, step %zu of %zu; checkpoint written", cell->id,
                r.epoch, progress.state.batch, p7_batch_count(train.count, (size_t)o.batch, 0));
            append = 0;
            rc = P7BENCH_INTERRUPTED;
            goto finish;
        }
        last = r;
        if (r.outcome == P7_EPOCH_DIVERGED) {
            record_epoch(&result, &r, data->has_val, o.clip > 0);
            say(&x.con, "p7bench: %s DIVERGED in epoch %d: mean training loss %g %s; the cell stops here (lower the "
                        "learning rate)", cell->id, r.epoch, r.train_loss,
                r.train_loss == r.train_loss ? "is above max_loss" : "is not a number");
            break;
        }
        record_epoch(&result, &r, data->has_val, o.clip > 0);
        epoch_line(&x, &r);
        if (x.profile) {
            char lines[3][320];
            p7bench_profile_epoch_lines(x.profile, lines);
            for (int i = 0; i < 3; i++)
                if (lines[i][0]) say(&x.con, "%s", lines[i]);
        }
        TRY(p7_trainer_get_state(trainer, &progress.state));
        if (!p7_trainer_done(trainer)) {
            if (write_checkpoint(paths.checkpoint, identity, &progress, model, opt, p7_trainer_best_weights(trainer)))
                goto finish;
        }
        if (p7bench_epochs_write(paths.epochs_csv, &result, err, sizeof err) != 0)
            say(&x.con, "p7bench: %s: %s", paths.epochs_csv, err);
        if (!p7_trainer_done(trainer) && p7bench_interrupted()) {
            say(&x.con, "p7bench: interrupted in cell %s after epoch %d; checkpoint written", cell->id, r.epoch);
            append = 0;
            rc = P7BENCH_INTERRUPTED;
            goto finish;
        }
    }
    progress.seconds = x.seconds_before + (now_s() - x.session_t0);
    result.seconds = progress.seconds;
    if (write_reliability(trainer, last.has_test, paths.reliability_csv, err, sizeof err) != 0)
        say(&x.con, "p7bench: %s: %s", paths.reliability_csv, err);
    snprintf(result.status, sizeof result.status, "%s", last.outcome == P7_EPOCH_DIVERGED ? "diverged" : "ok");
    rc = last.outcome == P7_EPOCH_DIVERGED ? P7BENCH_DIVERGED : P7BENCH_OK;
#undef TRY

finish:
    if (x.profile) {
        char profile_md[4200], title[512];
        snprintf(profile_md, sizeof profile_md, "%s/profile.md", paths.dir);
        snprintf(title, sizeof title, "cell %s (%s, %d member(s), batch %d, %s)", cell->id, o.model, o.members, o.batch,
                 result.dataset);
        if (p7bench_profile_write(x.profile, profile_md, title, err, sizeof err) != 0)
            say(&x.con, "p7bench: %s: %s", cell->id, err);
        else say(&x.con, "p7bench: %s: profile in %s", cell->id, profile_md);
    }
    p7bench_profile_release(&profile);
    if (append && peak_reset) {
        p7_memory_stats ms;
        if (p7_memory_get_stats(rn->device, &ms) == P7_SUCCESS) result.peak_device_bytes = (long long)ms.peak_bytes_in_use;
        else p7_clear_error();
    }
    if (append) {
        if (p7bench_study_folder_append(rn->folder, &result, err, sizeof err) != 0) {
            fprintf(stderr, "p7bench: results.csv: %s\n", err);
            rc = P7BENCH_FAILED;
        } else if (rc == P7BENCH_OK || rc == P7BENCH_DIVERGED) {
            unlink(paths.checkpoint); /* the row holds the result; a rerun skips the cell */
            say(&x.con, "p7bench: %s %s: test accuracy %.2f%%, NLL %.4f, ECE %.4f, %.1f s", cell->id, result.status,
                result.final_test_acc, result.test_nll, result.test_ece, result.seconds);
        }
    }
    if (x.con.log) fclose(x.con.log);
    p7_trainer_destroy(trainer);
    p7_optimizer_destroy(opt);
    p7_model_destroy(model);
    if (out) *out = result;
    else p7bench_cell_result_release(&result);
    return rc;
}
