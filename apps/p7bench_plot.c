/* `p7bench plot DIR` (see p7bench_plot.h). Everything is computed from the folder's
 * files; gnuplot only draws. Seeds of one grid point (cells with the same label) are
 * averaged; a cell run twice counts once, with its last row. */
#include "p7bench_plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p7bench_numbers.h"
#include "p7bench_study_results.h"

extern char **environ;

typedef struct plot_entry {
    char name[160];  /* file name without extension, in DIR/plots/ */
    char title[256];
    const char *section;
} plot_entry;

typedef struct plot_job {
    const char *dir;
    char plots_dir[4200];
    char study[P7BENCH_STUDY_MAX];
    p7bench_cell_result *rows; /* the last row of each cell */
    size_t count;
    FILE *script;
    plot_entry *plots;
    size_t plot_count;
    int failed;
} plot_job;

/* ---------------------------------------------------------------- small helpers */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorted distinct finite values. */
static size_t distinct(double *v, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) v[m++] = v[i];
    qsort(v, m, sizeof *v, cmp_double);
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        if (k == 0 || v[i] != v[k - 1]) v[k++] = v[i];
    return k;
}

/* Mean and spread over seeds, by Welford's update (no cancellation when seeds agree closely). */
typedef struct stat_acc {
    double mean, m2;
    size_t n;
} stat_acc;

static void acc_add(stat_acc *a, double v)
{
    if (!isfinite(v)) return;
    a->n++;
    double d = v - a->mean;
    a->mean += d / (double)a->n;
    a->m2 += d * (v - a->mean);
}
static double acc_mean(const stat_acc *a) { return a->n ? a->mean : NAN; }
/* The sample standard deviation over seeds; 0 for one seed (no bar, not a missing point). */
static double acc_sd(const stat_acc *a) { return a->n < 2 ? 0 : sqrt(a->m2 / (double)(a->n - 1)); }

/* A gnuplot single-quoted string: quotes doubled. */
static void gp_string(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

typedef double (*metric_fn)(const p7bench_cell_result *);
static double m_final_acc(const p7bench_cell_result *r) { return r->final_test_acc; }
static double m_avg_acc(const p7bench_cell_result *r) { return p7bench_result_avg_test_acc(r); }
static double m_final_loss(const p7bench_cell_result *r) { return p7bench_result_final_loss(r); }
static double m_avg_loss(const p7bench_cell_result *r) { return p7bench_result_avg_loss(r); }

static FILE *open_data(plot_job *job, const char *name)
{
    char path[8192];
    int n = snprintf(path, sizeof path, "%s/%s", job->plots_dir, name);
    FILE *f = n > 0 && (size_t)n < sizeof path ? fopen(path, "w") : NULL;
    if (!f) {
        fprintf(stderr, "p7bench plot: cannot write (%s): %s\n", strerror(errno), path);
        job->failed = 1;
    }
    return f;
}

/* Starts one plot: its PNG; end_plot adds the SVG of the same plot. */
static void begin_plot(plot_job *job, const char *name, const char *title, const char *section)
{
    plot_entry *grown = realloc(job->plots, (job->plot_count + 1) * sizeof *grown);
    if (!grown) {
        job->failed = 1;
        return;
    }
    job->plots = grown;
    plot_entry *e = &job->plots[job->plot_count++];
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->title, sizeof e->title, "%s", title);
    e->section = section;
    FILE *s = job->script;
    fprintf(s, "\n# %s\nreset\nset terminal @png_terminal size 800,600 noenhanced font 'sans,10'\nset output ", title);
    char file[200];
    snprintf(file, sizeof file, "%s.png", name);
    gp_string(s, file);
    fprintf(s, "\nset title ");
    gp_string(s, title);
    fprintf(s, "\nset grid lc rgb '#dddddd'\n");
}

static void end_plot(plot_job *job, const char *name)
{
    char file[200];
    snprintf(file, sizeof file, "%s.svg", name);
    fprintf(job->script, "set terminal svg size 800,600 noenhanced font 'sans,10' background rgb 'white'\nset output ");
    gp_string(job->script, file);
    fprintf(job->script, "\nreplot\nunset output\n");
}

/* ---------------------------------------------------------------- alpha-gamma heatmaps */

static void heatmaps(plot_job *job)
{
    double *alphas = malloc((job->count + 1) * sizeof *alphas), *gammas = malloc((job->count + 1) * sizeof *gammas);
    if (!alphas || !gammas) {
        free(alphas), free(gammas);
        job->failed = 1;
        return;
    }
    for (size_t i = 0; i < job->count; i++) alphas[i] = job->rows[i].alpha_init, gammas[i] = job->rows[i].gamma_init;
    size_t na = distinct(alphas, job->count), ng = distinct(gammas, job->count);
    static const struct { const char *column, *title, *format; metric_fn metric; } metrics[] = {
        {"final_test_accuracy", "Final Test Accuracy depending on Alpha and Gamma", "%.2f", m_final_acc},
        {"avg_test_accuracy", "Average Test Accuracy depending on Alpha and Gamma", "%.2f", m_avg_acc},
        {"final_losses", "Final Losses depending on Alpha and Gamma", "%.3f", m_final_loss},
        {"avg_losses", "Average Losses depending on Alpha and Gamma", "%.3f", m_avg_loss},
    };
    for (size_t m = 0; na && ng && m < sizeof metrics / sizeof metrics[0]; m++) {
        double *grid = malloc(na * ng * sizeof *grid);
        if (!grid) {
            job->failed = 1;
            break;
        }
        double lo = INFINITY, hi = -INFINITY;
        for (size_t a = 0; a < na; a++)
            for (size_t g = 0; g < ng; g++) {
                stat_acc acc = {0};
                for (size_t i = 0; i < job->count; i++)
                    if (job->rows[i].alpha_init == alphas[a] && job->rows[i].gamma_init == gammas[g])
                        acc_add(&acc, metrics[m].metric(&job->rows[i]));
                grid[a * ng + g] = acc_mean(&acc);
                if (acc.n) lo = fmin(lo, grid[a * ng + g]), hi = fmax(hi, grid[a * ng + g]);
            }
        if (!isfinite(lo)) { /* nothing measured: no plot */
            free(grid);
            continue;
        }
        char name[64], labels[80], image[80];
        snprintf(name, sizeof name, "heat-%s", metrics[m].column);
        snprintf(image, sizeof image, "%s.dat", name);
        snprintf(labels, sizeof labels, "%s-labels.dat", name);
        FILE *fi = open_data(job, image), *fl = open_data(job, labels);
        for (size_t a = 0; fi && fl && a < na; a++)
            for (size_t g = 0; g < ng; g++) {
                double v = grid[a * ng + g];
                fprintf(fi, "%zu %zu %.17g\n", g, a, v);
                if (isnan(v)) continue;
                /* viridis is dark below ~60% of its range: white text there, black above */
                double t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
                char value[32];
                snprintf(value, sizeof value, metrics[m].format, v);
                fprintf(fl, "%zu %zu \"%s\" %d\n", g, a, value, t < 0.6 ? 0xffffff : 0x000000);
            }
        if (fi) fclose(fi);
        if (fl) fclose(fl);
        free(grid);
        if (!fi || !fl) continue;
        FILE *s = job->script;
        begin_plot(job, name, metrics[m].title, "alpha-gamma");
        fprintf(s, "set xlabel 'Gamma Init'\nset ylabel 'Alpha Init'\nunset grid\nunset key\nset tics scale 0\n");
        fprintf(s, "set xrange [-0.5:%zu.5]\nset yrange [%zu.5:-0.5]\n", ng - 1, na - 1);
        char b[32];
        fprintf(s, "set xtics (");
        for (size_t g = 0; g < ng; g++) fprintf(s, "%s'%s' %zu", g ? ", " : "", p7bench_format_number(gammas[g], b, sizeof b), g);
        fprintf(s, ")\nset ytics (");
        for (size_t a = 0; a < na; a++) fprintf(s, "%s'%s' %zu", a ? ", " : "", p7bench_format_number(alphas[a], b, sizeof b), a);
        fprintf(s, ")\nset palette defined (0 '#440154', 1 '#482878', 2 '#3e4989', 3 '#31688e', 4 '#26828e', "
                   "5 '#1f9e89', 6 '#35b779', 7 '#6ece58', 8 '#b5de2b', 9 '#fde725')\n");
        fprintf(s, "set cbrange [%.17g:%.17g]\n", lo, hi > lo ? hi : lo + 1);
        fprintf(s, "plot '%s' using 1:2:3 with image, '%s' using 1:2:3:4 with labels textcolor rgb variable "
                   "font 'sans,9'\n", image, labels);
        end_plot(job, name);
    }
    free(alphas);
    free(gammas);
}

/* ---------------------------------------------------------------- ensemble size */

static void ensemble_size_lines(plot_job *job)
{
    double *lrs = malloc((job->count + 1) * sizeof *lrs), *ms = malloc((job->count + 1) * sizeof *ms);
    if (!lrs || !ms) {
        free(lrs), free(ms);
        job->failed = 1;
        return;
    }
    for (size_t i = 0; i < job->count; i++) lrs[i] = job->rows[i].lr, ms[i] = (double)job->rows[i].members;
    size_t nl = distinct(lrs, job->count), nm = distinct(ms, job->count);
    if (nm < 2) nl = 0;
    for (size_t l = 0; l < nl; l++) {
        char file[64];
        snprintf(file, sizeof file, "es-lr%zu.dat", l);
        FILE *f = open_data(job, file);
        for (size_t k = 0; f && k < nm; k++) {
            stat_acc a[4] = {{0}};
            for (size_t i = 0; i < job->count; i++) {
                const p7bench_cell_result *r = &job->rows[i];
                if (r->lr != lrs[l] || (double)r->members != ms[k]) continue;
                acc_add(&a[0], m_final_acc(r)), acc_add(&a[1], m_avg_acc(r));
                acc_add(&a[2], m_final_loss(r)), acc_add(&a[3], m_avg_loss(r));
            }
            if (a[0].n + a[1].n + a[2].n + a[3].n)
                fprintf(f, "%g %.17g %.17g %.17g %.17g\n", ms[k], acc_mean(&a[0]), acc_mean(&a[1]), acc_mean(&a[2]),
                        acc_mean(&a[3]));
        }
        if (f) fclose(f);
    }
    static const struct { const char *name, *title, *ylabel; int final_col, avg_col; } plots[] = {
        {"es-accuracy", "Test Accuracy depending on Ensemble Size", "Test Accuracy (%)", 2, 3},
        {"es-loss", "Training Loss depending on Ensemble Size", "Training Loss", 4, 5},
    };
    for (size_t p = 0; nl && p < 2; p++) {
        FILE *s = job->script;
        begin_plot(job, plots[p].name, plots[p].title, "ensemble-size");
        fprintf(s, "set xlabel 'Ensemble Size'\nset ylabel '%s'\nset key below\nset xtics 1\n",
                plots[p].ylabel);
        fprintf(s, "plot ");
        for (size_t l = 0; l < nl; l++) {
            char b[32];
            p7bench_format_float(lrs[nl - 1 - l], b, sizeof b); /* largest lr first, as the original's legend */
            fprintf(s, "%s'es-lr%zu.dat' using 1:%d with linespoints lc %zu dt 1 pt 7 title 'LR=%s final', "
                       "'es-lr%zu.dat' using 1:%d with linespoints lc %zu dt 2 pt 6 title 'LR=%s average'",
                    l ? ", " : "", nl - 1 - l, plots[p].final_col, l + 1, b, nl - 1 - l, plots[p].avg_col, l + 1, b);
        }
        fprintf(s, "\n");
        end_plot(job, plots[p].name);
    }
    free(lrs);
    free(ms);
}

/* ---------------------------------------------------------------- groups of seeds */

typedef struct group {
    const char *label;
    const p7bench_cell_result *first;
    size_t seeds;
} group;

static size_t make_groups(plot_job *job, group **out)
{
    group *g = calloc(job->count + 1, sizeof *g);
    size_t n = 0;
    for (size_t i = 0; g && i < job->count; i++) {
        const char *label = job->rows[i].label[0] ? job->rows[i].label : job->rows[i].cell;
        size_t k = 0;
        while (k < n && strcmp(g[k].label, label) != 0) k++;
        if (k == n) g[n++] = (group){label, &job->rows[i], 0};
        g[k].seeds++;
    }
    if (!g) job->failed = 1;
    *out = g;
    return n;
}

static int in_group(const p7bench_cell_result *r, const group *g)
{
    return strcmp(r->label[0] ? r->label : r->cell, g->label) == 0;
}

/* A series' legend: the original's "<Optimizer> - <model_type>" in the optimizer study. */
static void series_title(plot_job *job, const group *g, char *out, size_t size)
{
    const p7bench_cell_result *r = g->first;
    if (strcmp(job->study, "optimizers") == 0) {
        const char *o = strrchr(r->optimizer, '/') ? strrchr(r->optimizer, '/') + 1 : r->optimizer;
        if (r->members > 1) snprintf(out, size, "%s - %s M=%lld", o, p7bench_original_model_type(r->model, r->members), r->members);
        else snprintf(out, size, "%s - %s", o, p7bench_original_model_type(r->model, r->members));
    } else snprintf(out, size, "%s", g->label);
    if (g->seeds > 1) {
        size_t n = strlen(out);
        snprintf(out + n, size - n, " (%zu seeds)", g->seeds);
    }
}

static void learning_curves(plot_job *job)
{
    group *groups;
    size_t ng = make_groups(job, &groups);
    int have_val = 0, have_test = 0, have_train = 0, have_train_acc = 0;
    size_t max_epochs = 0;
    for (size_t k = 0; k < ng; k++) {
        char file[64];
        snprintf(file, sizeof file, "curve-%zu.dat", k);
        FILE *f = open_data(job, file);
        size_t epochs = 0;
        for (size_t i = 0; i < job->count; i++)
            if (in_group(&job->rows[i], &groups[k]) && job->rows[i].epoch_count > epochs) epochs = job->rows[i].epoch_count;
        if (epochs > max_epochs) max_epochs = epochs;
        for (size_t e = 0; f && e < epochs; e++) {
            stat_acc a[6] = {{0}};
            for (size_t i = 0; i < job->count; i++) {
                const p7bench_cell_result *r = &job->rows[i];
                if (!in_group(r, &groups[k]) || e >= r->epoch_count) continue;
                const p7bench_epoch_record *x = &r->epochs[e];
                acc_add(&a[0], x->train_loss), acc_add(&a[1], x->train_acc), acc_add(&a[2], x->val_loss);
                acc_add(&a[3], x->val_acc), acc_add(&a[4], x->test_loss), acc_add(&a[5], x->test_acc);
            }
            have_train |= a[0].n > 0;
            have_train_acc |= a[1].n > 0; /* p7's trainer measures no training accuracy */
            have_val |= a[3].n > 0;
            have_test |= a[5].n > 0;
            fprintf(f, "%zu", e + 1);
            for (int c = 0; c < 6; c++) fprintf(f, " %.17g", acc_mean(&a[c]));
            fprintf(f, "\n");
        }
        if (f) fclose(f);
    }
    /* The held-out curve: validation where it was measured, else the per-epoch test. */
    const char *held = have_val ? "Validation" : "Test";
    int loss_col = have_val ? 4 : 6, acc_col = have_val ? 5 : 7;
    const char *prefix = strcmp(job->study, "optimizers") == 0 ? "Optimizer Comparison" : "Learning Curves";
    struct { const char *name, *what, *ylabel; int col, show; } plots[] = {
        {"curve-val-accuracy", "Accuracy", "Accuracy (%)", acc_col, have_val || have_test},
        {"curve-val-loss", "Loss", "Loss", loss_col, have_val || have_test},
        {"curve-train-accuracy", "Train Accuracy", "Accuracy (%)", 3, have_train_acc},
        {"curve-train-loss", "Train Loss", "Loss", 2, have_train},
    };
    for (size_t p = 0; ng && p < 4; p++) {
        if (!plots[p].show) continue;
        char title[200];
        snprintf(title, sizeof title, "%s - %s%s%s", prefix, p < 2 ? held : "", p < 2 ? " " : "", plots[p].what);
        FILE *s = job->script;
        begin_plot(job, plots[p].name, title, "curves");
        fprintf(s, "set xlabel 'Epoch'\nset ylabel '%s'\nset key below\n%s\nplot ", plots[p].ylabel,
                max_epochs <= 20 ? "set xtics 1" : "set format x '%.0f'");
        for (size_t k = 0; k < ng; k++) {
            char t[300];
            series_title(job, &groups[k], t, sizeof t);
            fprintf(s, "%s'curve-%zu.dat' using 1:%d with linespoints pt 7 ps 0.5 lc %zu dt %zu title ", k ? ", " : "",
                    k, plots[p].col, k % 8 + 1, k / 8 + 1);
            gp_string(s, t);
        }
        fprintf(s, "\n");
        end_plot(job, plots[p].name);
    }
    free(groups);
}

/* ---------------------------------------------------------------- sharing: accuracy vs parameters */

static void accuracy_vs_parameters(plot_job *job)
{
    group *groups;
    size_t ng = make_groups(job, &groups), points = 0;
    double lo = INFINITY, hi = 0;
    FILE *f = ng ? open_data(job, "params-accuracy.dat") : NULL;
    for (size_t k = 0; f && k < ng; k++) {
        stat_acc params = {0}, acc = {0};
        for (size_t i = 0; i < job->count; i++)
            if (in_group(&job->rows[i], &groups[k])) {
                if (job->rows[i].params_used >= 0) acc_add(&params, (double)job->rows[i].params_used);
                acc_add(&acc, job->rows[i].final_test_acc);
            }
        if (!params.n || !acc.n) continue;
        fprintf(f, "%.10g %.10g %.10g \"%s\"\n", acc_mean(&params), acc_mean(&acc), acc_sd(&acc), groups[k].label);
        lo = fmin(lo, acc_mean(&params)), hi = fmax(hi, acc_mean(&params));
        points++;
    }
    if (f) fclose(f);
    free(groups);
    if (!points) return;
    FILE *s = job->script;
    begin_plot(job, "params-accuracy", "Test Accuracy vs Parameters Used (mean and sd over seeds)", "sharing");
    /* ticks at 1, 2 and 5 times powers of ten: a log axis over less than a decade has few */
    fprintf(s, "set xtics (");
    int first = 1;
    for (double decade = pow(10, floor(log10(lo / 2))); decade <= hi * 2; decade *= 10)
        for (int m = 1; m <= 5; m += m == 1 ? 1 : 3)
            if (decade * m >= lo / 2 && decade * m <= hi * 2)
                fprintf(s, "%s%.17g", first ? "" : ", ", decade * m), first = 0;
    fprintf(s, ")\n");
    /* a log axis with room on both sides; each label sits above its error bar */
    fprintf(s, "set xlabel 'Parameters used'\nset ylabel 'Test Accuracy (%%)'\nset logscale x\nset format x '%%.1s%%c'\n"
               "set xrange [%.10g:%.10g]\nset offsets 0, 0, graph 0.15, graph 0.1\nunset key\n"
               "plot 'params-accuracy.dat' using 1:2:3 with yerrorbars pt 7 lc 1, "
               "'' using 1:($2+$3):4 with labels offset 0,0.8 font 'sans,8'\n", lo / 2, hi * 2);
    end_plot(job, "params-accuracy");
}

/* ---------------------------------------------------------------- reliability */

static void reliability_diagrams(plot_job *job)
{
    for (size_t i = 0; i < job->count; i++) {
        const p7bench_cell_result *r = &job->rows[i];
        char path[4400], err[512];
        snprintf(path, sizeof path, "%s/cells/%s/reliability.csv", job->dir, r->cell);
        if (access(path, R_OK) != 0) continue;
        p7bench_reliability_bin *bins;
        size_t n;
        if (p7bench_reliability_read(path, &bins, &n, err, sizeof err) != 0) {
            fprintf(stderr, "p7bench plot: %s (skipped)\n", err);
            continue;
        }
        char name[200], file[220];
        snprintf(name, sizeof name, "reliability-%s", r->cell);
        snprintf(file, sizeof file, "%s.dat", name);
        FILE *f = open_data(job, file);
        for (size_t b = 0; f && b < n; b++)
            if (bins[b].count > 0)
                fprintf(f, "%.17g %.17g %lld %.17g %.17g\n", bins[b].lower, bins[b].upper, bins[b].count,
                        bins[b].confidence, bins[b].accuracy);
        free(bins);
        if (!f) continue;
        fclose(f);
        char title[300];
        if (isfinite(r->test_ece)) snprintf(title, sizeof title, "Reliability - %s (ECE %.4f)", r->cell, r->test_ece);
        else snprintf(title, sizeof title, "Reliability - %s", r->cell);
        FILE *s = job->script;
        begin_plot(job, name, title, "reliability");
        fprintf(s, "set xlabel 'Confidence'\nset ylabel 'Accuracy'\nset xrange [0:1]\nset yrange [0:1]\n"
                   "set size ratio -1\nset key left top\nset style fill solid 0.5 border lc rgb '#1f4e79'\n"
                   "plot '%s' using (($1+$2)/2):5:($2-$1) with boxes lc rgb '#4a90d9' title 'accuracy', "
                   "x with lines dt 2 lc rgb '#555555' title 'perfect calibration', "
                   "'%s' using 4:5 with points pt 7 lc rgb '#c0392b' title 'mean confidence'\n", file, file);
        end_plot(job, name);
    }
}

/* ---------------------------------------------------------------- gnuplot */

/* gnuplot's path on PATH, or 0. */
static int find_gnuplot(char *out, size_t size)
{
    const char *path = getenv("PATH");
    if (!path) return 0;
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(out, size, "%.*s%sgnuplot", (int)len, p, len ? "/" : "./");
        struct stat sb;
        if (stat(out, &sb) == 0 && S_ISREG(sb.st_mode) && access(out, X_OK) == 0) return 1;
        if (!colon) return 0;
        p = colon + 1;
    }
}

/* gnuplot's own messages ("empty x range" for a one-epoch run, and so on) go to
 * SCRIPT.log beside the script, not to the study's console; a failure shows the log. */
static int run_gnuplot(const char *gnuplot, const char *script)
{
    pid_t pid;
    char log[8192];
    snprintf(log, sizeof log, "%s.log", script);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    char *argv[] = {(char *)gnuplot, (char *)script, NULL};
    int rc = posix_spawn(&pid, gnuplot, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        fprintf(stderr, "p7bench plot: cannot start %s: %s\n", gnuplot, strerror(rc));
        return 1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return 1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "p7bench plot: gnuplot failed on %s (exit %d); its messages:\n", script,
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        FILE *f = fopen(log, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) fprintf(stderr, "  %s", line);
        if (f) fclose(f);
        return 1;
    }
    return 0;
}

static int file_nonempty(const char *dir, const char *name, const char *ext)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    struct stat sb;
    return stat(path, &sb) == 0 && sb.st_size > 0;
}

/* ---------------------------------------------------------------- summary.md */

static void cell_text(FILE *f, double v, const char *format)
{
    if (isnan(v)) fprintf(f, " |");
    else fprintf(f, format, v), fprintf(f, " |");
}

typedef struct table_column {
    const char *title, *format;
    double (*value)(const p7bench_cell_result *);
} table_column;

static double t_seed(const p7bench_cell_result *r) { return (double)r->seed; }
static double t_members(const p7bench_cell_result *r) { return (double)r->members; }
static double t_alpha(const p7bench_cell_result *r) { return r->alpha_init; }
static double t_gamma(const p7bench_cell_result *r) { return r->gamma_init; }
static double t_lr(const p7bench_cell_result *r) { return r->lr; }
static double t_batch(const p7bench_cell_result *r) { return (double)r->batch; }
static double t_epochs(const p7bench_cell_result *r) { return (double)r->epoch_count; }
static double t_nll(const p7bench_cell_result *r) { return r->test_nll; }
static double t_ece(const p7bench_cell_result *r) { return r->test_ece; }
static double t_brier(const p7bench_cell_result *r) { return r->test_brier; }
static double t_diversity(const p7bench_cell_result *r) { return r->diversity; }
static double t_params(const p7bench_cell_result *r) { return r->params_used < 0 ? NAN : (double)r->params_used; }
static double t_seconds(const p7bench_cell_result *r) { return r->seconds; }
static double t_ips(const p7bench_cell_result *r) { return r->images_per_s; }

static const table_column table_columns[] = {
    {"seed", "%.0f", t_seed}, {"M", "%.0f", t_members}, {"alpha", "%g", t_alpha}, {"gamma", "%g", t_gamma},
    {"lr", "%g", t_lr}, {"batch", "%.0f", t_batch}, {"epochs", "%.0f", t_epochs},
    {"final test acc %", "%.2f", m_final_acc}, {"avg test acc %", "%.2f", m_avg_acc},
    {"final loss", "%.4f", m_final_loss}, {"avg loss", "%.4f", m_avg_loss}, {"NLL", "%.4f", t_nll},
    {"ECE", "%.4f", t_ece}, {"Brier", "%.4f", t_brier}, {"diversity", "%.4f", t_diversity},
    {"params used", "%.0f", t_params}, {"seconds", "%.1f", t_seconds}, {"images/s", "%.0f", t_ips},
};
#define TABLE_COLUMNS (sizeof table_columns / sizeof table_columns[0])

static int write_summary(plot_job *job, int drew, const char *conf)
{
    char path[4400], tmp[4500];
    snprintf(path, sizeof path, "%s/summary.md", job->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "p7bench plot: cannot write (%s): %s\n", strerror(errno), tmp);
        return 1;
    }
    fprintf(f, "# p7bench %s study\n\n", job->study);
    fprintf(f, "Drawn by `p7bench plot` from `results.csv` (%zu cells; a cell run twice counts with its last row). "
               "The study's settings (`study.conf`):\n\n```\n%s```\n\n", job->count, conf);
    int optimizers = 0;
    for (size_t i = 0; i < job->count; i++) optimizers |= job->rows[i].optimizer[0] != '\0';
    fprintf(f, "## Results\n\n| cell | status |%s model |", optimizers ? " optimizer |" : "");
    int shown[TABLE_COLUMNS];
    for (size_t c = 0; c < TABLE_COLUMNS; c++) {
        shown[c] = 0;
        for (size_t i = 0; i < job->count && !shown[c]; i++) shown[c] = !isnan(table_columns[c].value(&job->rows[i]));
        if (shown[c]) fprintf(f, " %s |", table_columns[c].title);
    }
    fprintf(f, "\n|---|---|---|%s", optimizers ? "---|" : "");
    for (size_t c = 0; c < TABLE_COLUMNS; c++)
        if (shown[c]) fprintf(f, "---:|");
    fprintf(f, "\n");
    for (size_t i = 0; i < job->count; i++) {
        const p7bench_cell_result *r = &job->rows[i];
        fprintf(f, "| %s | %s |", r->cell, r->status);
        if (optimizers) fprintf(f, " %s |", r->optimizer);
        fprintf(f, " %s |", r->model);
        for (size_t c = 0; c < TABLE_COLUMNS; c++)
            if (shown[c]) fprintf(f, " "), cell_text(f, table_columns[c].value(r), table_columns[c].format);
        fprintf(f, "\n");
    }
    fprintf(f, "\n## Plots\n\n");
    size_t listed = 0;
    const char *section = NULL;
    for (size_t p = 0; p < job->plot_count; p++) {
        const plot_entry *e = &job->plots[p];
        if (!drew || !file_nonempty(job->plots_dir, e->name, "png")) continue;
        if (!section || strcmp(section, e->section) != 0) {
            section = e->section;
            if (strcmp(section, "reliability") == 0) fprintf(f, "### Reliability diagrams\n\n");
        }
        fprintf(f, "**%s**\n\n![%s](plots/%s.png)\n\n[SVG](plots/%s.svg)\n\n", e->title, e->title, e->name,
                e->name);
        listed++;
    }
    if (!drew) fprintf(f, "No plots: gnuplot was not found on PATH (Debian: `apt-get install gnuplot-nox`); "
                          "`p7bench plot %s` draws them.\n", job->dir);
    else if (!listed) fprintf(f, "No plots: the results hold nothing to draw yet.\n");
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        fprintf(stderr, "p7bench plot: cannot write (%s): %s\n", strerror(errno), path);
        remove(tmp);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- entry points */

static int read_text(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    fclose(f);
    return 0;
}

int p7bench_plot_study(const char *dir)
{
    plot_job job = {.dir = dir};
    char path[4400], err[1024], conf[16384] = "";
    snprintf(path, sizeof path, "%s/study.conf", dir);
    if (read_text(path, conf, sizeof conf) != 0) {
        fprintf(stderr, "p7bench plot: %s: no study.conf (%s): is this a study folder?\n", dir, strerror(errno));
        return 1;
    }
    if (strncmp(conf, "study=", 6) != 0) {
        fprintf(stderr, "p7bench plot: %s: the first line is not study=NAME\n", path);
        return 1;
    }
    snprintf(job.study, sizeof job.study, "%.*s", (int)strcspn(conf + 6, "\n"), conf + 6);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    p7bench_cell_result *all;
    size_t n;
    if (p7bench_results_read(path, &all, &n, err, sizeof err) != 0) {
        fprintf(stderr, "p7bench plot: %s\n", err);
        return 1;
    }
    /* the last row of each cell, in first-appearance order */
    job.rows = calloc(n + 1, sizeof *job.rows);
    for (size_t i = 0; job.rows && i < n; i++) {
        size_t k = 0;
        while (k < job.count && strcmp(job.rows[k].cell, all[i].cell) != 0) k++;
        if (k == job.count) job.count++;
        else p7bench_cell_result_release(&job.rows[k]);
        job.rows[k] = all[i];
        all[i] = (p7bench_cell_result){0};
    }
    p7bench_results_free(all, n);
    if (!job.rows) return fprintf(stderr, "p7bench plot: out of host memory\n"), 1;

    snprintf(job.plots_dir, sizeof job.plots_dir, "%s/plots", dir);
    if (mkdir(job.plots_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "p7bench plot: cannot create (%s): %s\n", strerror(errno), job.plots_dir);
        p7bench_results_free(job.rows, job.count);
        return 1;
    }
    char script_path[4400];
    snprintf(script_path, sizeof script_path, "%s/plots.gp", job.plots_dir);
    job.script = fopen(script_path, "w");
    if (!job.script) {
        fprintf(stderr, "p7bench plot: cannot write (%s): %s\n", strerror(errno), script_path);
        p7bench_results_free(job.rows, job.count);
        return 1;
    }
    fprintf(job.script, "# Written by `p7bench plot` from %s/results.csv; run `gnuplot plots.gp` here to redraw.\n", dir);
    fprintf(job.script, "cd ");
    gp_string(job.script, job.plots_dir);
    fprintf(job.script, "\npng_terminal = strstrt(GPVAL_TERMINALS, 'pngcairo') > 0 ? 'pngcairo' : 'png'\n");
    if (strcmp(job.study, "alpha-gamma") == 0) heatmaps(&job);
    else if (strcmp(job.study, "ensemble-size") == 0) ensemble_size_lines(&job);
    else {
        if (strcmp(job.study, "sharing") == 0) accuracy_vs_parameters(&job);
        learning_curves(&job);
    }
    reliability_diagrams(&job);
    int rc = fclose(job.script) != 0 || job.failed;

    char gnuplot[4200];
    int drew = 0, noticed = 0;
    if (rc == 0 && job.plot_count) {
        if (!find_gnuplot(gnuplot, sizeof gnuplot))
            noticed = 1, printf("p7bench plot: gnuplot is not on PATH, so no plots were drawn (Debian: apt-get install "
                   "gnuplot-nox); %s/summary.md has the table\n", dir);
        else if (run_gnuplot(gnuplot, script_path) != 0) rc = 1;
        else drew = 1;
    }
    if (write_summary(&job, drew, conf) != 0) rc = 1;
    if (rc == 0 && !noticed) printf("p7bench plot: %s/summary.md%s\n", dir, drew ? " and the plots in plots/" : "");
    free(job.plots);
    p7bench_results_free(job.rows, job.count);
    return rc;
}

int p7bench_plot_main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: p7bench plot DIR\n  redraws a study folder's plots (DIR/plots/*.svg, *.png) and DIR/summary.md "
               "from its files, with gnuplot\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: p7bench plot DIR   (a study folder, holding study.conf and results.csv)\n");
        return 2;
    }
    return p7bench_plot_study(argv[1]);
}
