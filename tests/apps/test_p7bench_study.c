/* p7bench's study modules without a device: cell ids, grids, the results folder's files.
 * References are independent of the code under test: Python's repr output (taken from
 * CPython 3 by hand), the original's column lists (seed-study 10.1), counts of the grids
 * as the issue states them, and ids pinned once (a changed id breaks resumed studies). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "p7bench_cell_list.h"
#include "p7bench_cells.h"
#include "p7bench_devices.h"
#include "p7bench_numbers.h"
#include "p7bench_slurm.h"
#include "p7bench_study_results.h"

static char err[2048];

static p7bench_study_plan plan_of(const char *study, const char *const *overrides, size_t n)
{
    p7bench_study_plan plan;
    int rc = p7bench_study_plan_make(study, overrides, n, &plan, err, sizeof err);
    if (rc != 0) fail_msg("%s", err);
    return plan;
}

/* Python 3: repr() of each value (the text reads back to the same double). */
static void floats_are_spelled_as_python_repr(void **state)
{
    static const char *const repr[] = {"0.0002", "70.14", "65.88533333333334", "1e-05", "1.0", "-0.8", "1e+16",
                                       "1.5e+16", "123456789012345.6", "0.30000000000000004", "5e-324",
                                       "1.7976931348623157e+308", "nan", "inf", "-0.0", "0.0001", "12.5", "100.0",
                                       "1000000000000000.0"};
    char b[40];
    for (size_t i = 0; i < sizeof repr / sizeof repr[0]; i++) {
        double v;
        assert_true(p7bench_parse_double(repr[i], &v));
        assert_string_equal(p7bench_format_float(v, b, sizeof b), repr[i]);
    }
    assert_string_equal(p7bench_format_float(2e-4, b, sizeof b), "0.0002");
    assert_string_equal(p7bench_format_float(0.1 + 0.2, b, sizeof b), "0.30000000000000004");
    assert_string_equal(p7bench_format_float(988.28 / 15, b, sizeof b), "65.88533333333334");
    /* the original's alpha -1, 0, 1 were Python ints */
    assert_string_equal(p7bench_format_number(-1.0, b, sizeof b), "-1");
    assert_string_equal(p7bench_format_number(0.0, b, sizeof b), "0");
    assert_string_equal(p7bench_format_number(-0.8, b, sizeof b), "-0.8");
    assert_string_equal(p7bench_format_number(256.0, b, sizeof b), "256");
    long long n;
    assert_false(p7bench_parse_integer("2x", &n));
    assert_false(p7bench_parse_integer("", &n));
    double d;
    assert_false(p7bench_parse_double("0.5 ", &d));
}

static void grids_have_the_issue_sizes(void **state)
{
    struct { const char *study; const char *o[3]; size_t n, cells; } cases[] = {
        {"alpha-gamma", {NULL}, 0, 81},
        {"ensemble-size", {NULL}, 0, 27},
        {"optimizers", {NULL}, 0, 12},
        {"sharing", {"regime=within"}, 1, 4},
        {"sharing", {"regime=between", "dataset=cifar20"}, 2, 4},
        {"sharing", {"regime=combined"}, 1, 4},
        {"sharing", {"regime=combined", "pairs=all"}, 2, 16},
        {"sharing", {"regime=combined", "seeds=3"}, 2, 12},
        {"run", {NULL}, 0, 1},
        {"quick", {NULL}, 0, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        p7bench_study_plan plan = plan_of(cases[c].study, cases[c].o, cases[c].n);
        if (plan.count != cases[c].cells) fail_msg("%s: %zu cells, expected %zu", cases[c].study, plan.count, cases[c].cells);
        for (size_t i = 0; i < plan.count; i++)
            for (size_t j = i + 1; j < plan.count; j++)
                if (strcmp(plan.cells[i].id, plan.cells[j].id) == 0) fail_msg("%s: id %s twice", cases[c].study, plan.cells[i].id);
        p7bench_study_plan_release(&plan);
    }
}

static void alpha_gamma_grid_runs_alpha_outer_gamma_inner(void **state)
{
    static const double nine[9] = {-1, -0.8, -0.5, -0.2, 0, 0.2, 0.5, 0.8, 1};
    p7bench_study_plan plan = plan_of("alpha-gamma", NULL, 0);
    for (size_t i = 0; i < 81; i++) {
        const p7bench_config *c = &plan.cells[i].config;
        assert_true(strtod(p7bench_config_get(c, "alpha"), NULL) == nine[i / 9]);
        assert_true(strtod(p7bench_config_get(c, "gamma"), NULL) == nine[i % 9]);
        assert_string_equal(p7bench_config_get(c, "members"), "4");
        assert_string_equal(p7bench_config_get(c, "batch"), "256");
        assert_string_equal(p7bench_config_get(c, "lr"), "0.0002");
        assert_string_equal(p7bench_config_get(c, "epochs"), "15");
        assert_string_equal(p7bench_config_get(c, "model"), "vgg11-bn");
    }
    /* the readable part of an id, and the id itself pinned: ids must not drift between
     * versions, or a resumed study would redo its cells */
    assert_string_equal(plan.cells[5 * 9 + 2].label, "ag-a0.2-g-0.5");
    assert_string_equal(plan.cells[5 * 9 + 2].id, "ag-a0.2-g-0.5-04d9ebc7");
    p7bench_study_plan_release(&plan);
}

static void ids_are_stable_under_reordered_and_respelled_overrides(void **state)
{
    const char *a[] = {"lr=0.0002", "epochs=2", "limit=512", "hparams=beta1=0.8,beta2=0.99"};
    const char *b[] = {"hparams=beta1=0.8,beta2=0.99", "limit=512", "epochs=2", "lr=2e-4"};
    const char *c[] = {"epochs=02", "lr=0.00020", "hparams=beta1=0.8,beta2=0.99", "limit=512"};
    p7bench_study_plan pa = plan_of("alpha-gamma", a, 4), pb = plan_of("alpha-gamma", b, 4), pc = plan_of("alpha-gamma", c, 4);
    assert_int_equal(pa.count, 81);
    for (size_t i = 0; i < pa.count; i++) {
        assert_string_equal(pa.cells[i].id, pb.cells[i].id);
        assert_string_equal(pa.cells[i].id, pc.cells[i].id);
    }
    /* a setting changes every id; a neutral setting changes none */
    const char *d[] = {"lr=0.0002", "epochs=3", "limit=512", "hparams=beta1=0.8,beta2=0.99"};
    p7bench_study_plan pd = plan_of("alpha-gamma", d, 4);
    for (size_t i = 0; i < pa.count; i++) assert_string_not_equal(pa.cells[i].id, pd.cells[i].id);
    const char *e[] = {"limit=0", "width=1.0"};
    p7bench_study_plan pe = plan_of("alpha-gamma", e, 2), pdefault = plan_of("alpha-gamma", NULL, 0);
    for (size_t i = 0; i < pe.count; i++) assert_string_equal(pe.cells[i].id, pdefault.cells[i].id);
    /* an axis override by a list keeps the ids of the grid points it keeps */
    const char *f[] = {"gamma=0.5,-0.5", "alpha=0.2"};
    p7bench_study_plan pf = plan_of("alpha-gamma", f, 2);
    assert_int_equal(pf.count, 2);
    assert_string_equal(pf.cells[0].id, "ag-a0.2-g0.5-f8d1627d");
    assert_string_equal(pf.cells[1].id, pdefault.cells[5 * 9 + 2].id);
    p7bench_study_plan *all[] = {&pa, &pb, &pc, &pd, &pe, &pdefault, &pf};
    for (size_t i = 0; i < 7; i++) p7bench_study_plan_release(all[i]);
}

static void seeds_and_faithful_batch_are_derived(void **state)
{
    const char *s[] = {"seeds=2", "regime=within"};
    p7bench_study_plan plan = plan_of("sharing", s, 2);
    assert_int_equal(plan.count, 8);
    assert_string_equal(p7bench_config_get(&plan.cells[0].config, "seed"), "42");
    assert_string_equal(p7bench_config_get(&plan.cells[4].config, "seed"), "43");
    assert_null(strstr(plan.cells[0].id, "-s42"));
    assert_non_null(strstr(plan.cells[4].id, "-s43-"));
    assert_string_equal(plan.cells[0].label, plan.cells[4].label);
    p7bench_study_plan_release(&plan);

    const char *f[] = {"faithful=batch-equals-m"};
    plan = plan_of("ensemble-size", f, 1);
    for (size_t i = 0; i < plan.count; i++)
        assert_string_equal(p7bench_config_get(&plan.cells[i].config, "batch"),
                            p7bench_config_get(&plan.cells[i].config, "members"));
    p7bench_study_plan_release(&plan);
    /* a plain network has no alpha or gamma, so they do not split its cell */
    plan = plan_of("optimizers", NULL, 0);
    assert_null(p7bench_config_get(&plan.cells[0].config, "alpha"));
    assert_string_equal(p7bench_config_get(&plan.cells[1].config, "alpha"), "1");
    p7bench_study_plan_release(&plan);
}

static void unknown_and_foreign_ids_are_refused_naming_the_study(void **state)
{
    p7bench_study_plan plan = plan_of("alpha-gamma", NULL, 0);
    assert_non_null(p7bench_study_find_cell(&plan, plan.cells[7].id, err, sizeof err));
    assert_null(p7bench_study_find_cell(&plan, "ag-a9-g9-deadbeef", err, sizeof err));
    assert_non_null(strstr(err, "alpha-gamma"));
    assert_non_null(strstr(err, "--list"));

    p7bench_study_plan es = plan_of("ensemble-size", NULL, 0);
    assert_null(p7bench_study_find_cell(&plan, es.cells[0].id, err, sizeof err));
    assert_non_null(strstr(err, "ensemble-size study"));
    assert_non_null(strstr(err, "not of alpha-gamma"));

    const char *o[] = {"lr=0.001"};
    p7bench_study_plan other = plan_of("alpha-gamma", o, 1);
    assert_null(p7bench_study_find_cell(&other, plan.cells[7].id, err, sizeof err));
    assert_non_null(strstr(err, "same grid point"));
    assert_non_null(strstr(err, other.cells[7].id));
    p7bench_study_plan_release(&plan);
    p7bench_study_plan_release(&es);
    p7bench_study_plan_release(&other);
}

static void bad_overrides_name_the_key(void **state)
{
    struct { const char *study, *o, *needle; } cases[] = {
        {"alpha-gamma", "lr=1,2", "only for the study's axes"},
        {"alpha-gamma", "lrr=1", "no setting 'lrr'"},
        {"alpha-gamma", "alpha=2", "alpha=2: expected a number <= 1"},
        {"alpha-gamma", "members=0", "members=0"},
        {"alpha-gamma", "lr=0", "lr=0"},
        {"alpha-gamma", "gamma=0.5,0.50", "listed twice"},
        {"alpha-gamma", "faithful=bogus", "no switch 'bogus'"},
        {"alpha-gamma", "pairs=all", "combined regime only"},
        {"alpha-gamma", "novalue", "expected key=value"},
        {"sharing", "regime=sideways", "expected one of within,between,combined"},
        {"sharing", "regime=sideways", "regime=sideways: expected one of within,between,combined"},
        {"nosuch", "lr=1", "no study 'nosuch'"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        p7bench_study_plan plan;
        const char *o[] = {cases[c].o};
        if (p7bench_study_plan_make(cases[c].study, o, 1, &plan, err, sizeof err) == 0) fail_msg("%s accepted", cases[c].o);
        if (!strstr(err, cases[c].needle)) fail_msg("%s: '%s' lacks '%s'", cases[c].o, err, cases[c].needle);
    }
    const char *twice[] = {"lr=0.1", "lr=0.2"};
    p7bench_study_plan plan;
    assert_int_not_equal(p7bench_study_plan_make("run", twice, 2, &plan, err, sizeof err), 0);
    assert_non_null(strstr(err, "lr is given twice"));
}

static void list_prints_ids_and_varying_settings(void **state)
{
    const char *o[] = {"alpha=0.2", "gamma=0.5,1"};
    p7bench_study_plan plan = plan_of("alpha-gamma", o, 2);
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    p7bench_study_print_list(&plan, f);
    fclose(f);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "# alpha-gamma: 2 cells; every cell: alpha=0.2 batch=256 dataset=cifar10 epochs=15 lr=0.0002 members=4 "
             "model=vgg11-bn optimizer=adam seed=42\n%s  gamma=0.5\n%s  gamma=1\n",
             plan.cells[0].id, plan.cells[1].id);
    assert_string_equal(buf, expected);
    p7bench_study_plan_release(&plan);
}

/* ---------------------------------------------------------------- results files */

static void fill_result(p7bench_cell_result *r, const p7bench_study_plan *plan, size_t cell, size_t epochs)
{
    p7bench_cell_result_init(r, plan->study, &plan->cells[cell]);
    for (size_t e = 0; e < epochs; e++) {
        p7bench_epoch_record rec;
        p7bench_epoch_record_init(&rec, (long long)e + 1);
        rec.train_loss = 1.5 / (double)(e + 1), rec.train_acc = 50.0 + (double)e;
        rec.test_loss = 1.25 - 0.125 * (double)e, rec.test_acc = 60.0 + 0.5 * (double)e, rec.seconds = 3.0;
        assert_int_equal(p7bench_cell_result_add_epoch(r, &rec), 0);
    }
    r->final_test_acc = 70.14;
    r->test_nll = 0.875;
    r->test_ece = 0.03125;
    r->test_brier = 0.4;
    const double members[2] = {68.5, 69.25};
    p7bench_cell_result_set_members(r, members, 2);
    r->diversity = 0.25;
    r->params_unique = 100, r->params_used = 90, r->params_shared = 10;
    r->seconds = 12.5, r->images_per_s = 4000;
    r->peak_device_bytes = 1 << 30;
    snprintf(r->device, sizeof r->device, "pocl, cpu \"x\"");
    snprintf(r->status, sizeof r->status, "ok");
}

static void rows_start_with_the_originals_columns(void **state)
{
    const char *parameter = "seed,alpha_init,gamma_init,ensemble_size,num_epochs,batch_size,lr,model_type,"
                            "final_test_accuracy,avg_test_accuracy,final_losses,avg_losses,";
    const char *optimizer = "ensemble_size,num_epochs,batch_size,lr,model_type,train_loss,val_loss,train_acc,val_acc,";
    assert_true(strncmp(p7bench_results_header(P7BENCH_CSV_PARAMETER), parameter, strlen(parameter)) == 0);
    assert_true(strncmp(p7bench_results_header(P7BENCH_CSV_OPTIMIZER), optimizer, strlen(optimizer)) == 0);
    const char *o[] = {"alpha=-1", "gamma=0.2", "epochs=2"};
    p7bench_study_plan plan = plan_of("alpha-gamma", o, 3);
    p7bench_cell_result r;
    fill_result(&r, &plan, 0, 2);
    char *row = p7bench_results_row(&r, P7BENCH_CSV_PARAMETER);
    /* avg test = (60 + 60.5) / 2, final loss = 1.5 / 2, avg loss = (1.5 + 0.75) / 2 */
    const char *want = "42,-1,0.2,4,2,256,0.0002,batchensemble_complex,70.14,60.25,0.75,1.125,"
                       "\"[1.5, 0.75]\",\"[nan, nan]\",\"[50.0, 51.0]\",\"[nan, nan]\",";
    if (strncmp(row, want, strlen(want)) != 0) fail_msg("row '%s'", row);
    assert_non_null(strstr(row, ",\"pocl, cpu \"\"x\"\"\""));
    free(row);
    row = p7bench_results_row(&r, P7BENCH_CSV_OPTIMIZER);
    want = "4,2,256,0.0002,batchensemble_complex,\"[1.5, 0.75]\",\"[nan, nan]\",\"[50.0, 51.0]\",\"[nan, nan]\","
           "42,-1,0.2,70.14,60.25,0.75,1.125,";
    if (strncmp(row, want, strlen(want)) != 0) fail_msg("row '%s'", row);
    free(row);
    p7bench_cell_result_release(&r);
    p7bench_study_plan_release(&plan);
}

static char *temp_dir(void)
{
    static char dir[256];
    snprintf(dir, sizeof dir, "%s/p7bench_study_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void folder_round_trips_and_skips_a_partial_last_line(void **state)
{
    char *dir = temp_dir();
    char out[512];
    snprintf(out, sizeof out, "%s/study", dir);
    const char *o[] = {"epochs=3", "alpha=1,0.5"};
    p7bench_study_plan plan = plan_of("alpha-gamma", o, 2);
    p7bench_study_folder *folder;
    if (p7bench_study_folder_open(out, &plan, &folder, err, sizeof err) != 0) fail_msg("%s", err);
    for (size_t i = 0; i < plan.count; i++) {
        p7bench_cell_paths paths;
        if (p7bench_study_folder_cell(folder, &plan.cells[i], &paths, err, sizeof err) != 0) fail_msg("%s", err);
        p7bench_cell_result r;
        fill_result(&r, &plan, i, 3);
        for (size_t e = 0; e < r.epoch_count; e++)
            assert_int_equal(p7bench_epochs_append(paths.epochs_csv, &r.epochs[e], err, sizeof err), 0);
        p7bench_cell_result back = {0};
        if (p7bench_epochs_read(paths.epochs_csv, &back, err, sizeof err) != 0) fail_msg("%s", err);
        assert_int_equal(back.epoch_count, 3);
        assert_true(back.epochs[2].test_acc == 61.0 && isnan(back.epochs[1].val_acc) && back.epochs[1].train_loss == 0.75);
        assert_int_equal(p7bench_epochs_write(paths.epochs_csv, &back, err, sizeof err), 0);
        p7bench_cell_result_release(&back);
        const p7bench_reliability_bin bins[2] = {{0, 0.5, 10, 0.375, 0.25}, {0.5, 1, 90, 0.875, 0.9}};
        assert_int_equal(p7bench_reliability_write(paths.reliability_csv, bins, 2, err, sizeof err), 0);
        p7bench_reliability_bin *rb;
        size_t nb;
        assert_int_equal(p7bench_reliability_read(paths.reliability_csv, &rb, &nb, err, sizeof err), 0);
        assert_int_equal(nb, 2);
        assert_true(rb[1].count == 90 && rb[1].confidence == 0.875 && rb[0].upper == 0.5);
        free(rb);
        if (p7bench_study_folder_append(folder, &r, err, sizeof err) != 0) fail_msg("%s", err);
        p7bench_cell_result_release(&r);
    }
    p7bench_study_folder_close(folder);

    /* a write cut short: half a row at the end */
    char csv[600];
    snprintf(csv, sizeof csv, "%s/results.csv", out);
    FILE *f = fopen(csv, "a");
    fputs("42,-1,0.2,4,3,256,0.0002,batchensemble_complex,70.1", f);
    fclose(f);
    p7bench_cell_result *rows;
    size_t n;
    if (p7bench_results_read(csv, &rows, &n, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(n, 18);
    assert_string_equal(rows[0].cell, plan.cells[0].id);
    assert_string_equal(rows[0].model, "vgg11-bn");
    assert_string_equal(rows[0].status, "ok");
    assert_string_equal(rows[0].device, "pocl, cpu \"x\"");
    assert_true(rows[0].alpha_init == 1 && rows[0].gamma_init == -1 && rows[0].lr == 0.0002);
    assert_int_equal(rows[0].epoch_count, 3);
    assert_true(rows[0].epochs[2].train_loss == 0.5 && rows[0].epochs[0].test_acc == 60.0);
    assert_int_equal(rows[0].member_count, 2);
    assert_true(rows[0].member_acc[1] == 69.25 && rows[0].final_test_acc == 70.14 && rows[0].test_ece == 0.03125);
    assert_true(rows[0].params_used == 90 && rows[0].peak_device_bytes == (1 << 30));
    p7bench_results_free(rows, n);
    p7bench_study_folder_close(NULL);

    /* the same folder: more seeds are welcome, other settings are refused by name */
    const char *more[] = {"alpha=1,0.5", "epochs=3", "seeds=2"};
    p7bench_study_plan plan2 = plan_of("alpha-gamma", more, 3);
    assert_int_equal(p7bench_study_folder_open(out, &plan2, &folder, err, sizeof err), 0);
    p7bench_study_folder_close(folder);
    p7bench_study_plan_release(&plan2);
    const char *other[] = {"alpha=1,0.5", "epochs=3", "lr=0.002"};
    plan2 = plan_of("alpha-gamma", other, 3);
    assert_int_not_equal(p7bench_study_folder_open(out, &plan2, &folder, err, sizeof err), 0);
    if (!strstr(err, "lr=0.0002, and this run has lr=0.002")) fail_msg("%s", err);
    p7bench_study_plan_release(&plan2);
    plan2 = plan_of("ensemble-size", NULL, 0);
    assert_int_not_equal(p7bench_study_folder_open(out, &plan2, &folder, err, sizeof err), 0);
    if (!strstr(err, "study=alpha-gamma, and this run has study=ensemble-size")) fail_msg("%s", err);
    p7bench_study_plan_release(&plan2);
    p7bench_study_plan_release(&plan);
    remove_tree(dir);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* epochs.csv: every metric of an epoch, spelled as results.csv spells numbers (the golden
 * line is written by hand), read back to the same record and written again byte for byte;
 * a file of another shape is refused. */
static void epochs_csv_holds_every_metric(void **state)
{
    char *dir = temp_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/epochs.csv", dir);
    p7bench_cell_result r = {0};
    p7bench_epoch_record e;
    p7bench_epoch_record_init(&e, 1);
    e.step = 16, e.lr = 0.002, e.train_loss = 1.5, e.images_per_s = 4000, e.seconds = 2.5;
    e.val_acc = 55.0, e.val_loss = 1.375, e.val_ece = 0.125, e.val_brier = 0.625;
    assert_int_equal(p7bench_cell_result_add_epoch(&r, &e), 0);
    p7bench_epoch_record_init(&e, 2);
    e.step = 32, e.lr = 0.002, e.train_loss = 0.75, e.images_per_s = 4000, e.seconds = 3.0;
    e.val_acc = 61.5, e.val_loss = 1.25, e.val_ece = 0.0625, e.val_brier = 0.5, e.val_diversity = 0.125;
    e.val_members = 2, e.val_member_acc[0] = 60.0, e.val_member_acc[1] = 62.5;
    e.test_acc = 63.25, e.test_loss = 1.125, e.test_ece = 0.03125, e.test_brier = 0.4375, e.test_diversity = 0.25;
    e.test_members = 2, e.test_member_acc[0] = 61.0, e.test_member_acc[1] = 64.5;
    e.bma_samples = 4, e.bma_acc = 64.0, e.bma_nll = 1.0, e.bma_ece = 0.015625, e.grad_norm = 2.25;
    snprintf(e.outcome, sizeof e.outcome, "early_stop");
    assert_int_equal(p7bench_cell_result_add_epoch(&r, &e), 0);
    if (p7bench_epochs_write(path, &r, err, sizeof err) != 0) fail_msg("%s", err);
    const char *want =
        "epoch,step,lr,train_loss,grad_norm,val_acc,val_nll,val_ece,val_brier,val_diversity,val_member_acc,"
        "test_acc,test_nll,test_ece,test_brier,test_diversity,test_member_acc,bma_samples,bma_acc,bma_nll,bma_ece,"
        "images_per_s,seconds,outcome\n"
        "1,16,0.002,1.5,nan,55.0,1.375,0.125,0.625,nan,,nan,nan,nan,nan,nan,,,nan,nan,nan,4000.0,2.5,ok\n"
        "2,32,0.002,0.75,2.25,61.5,1.25,0.0625,0.5,0.125,60.0;62.5,63.25,1.125,0.03125,0.4375,0.25,61.0;64.5,"
        "4,64.0,1.0,0.015625,4000.0,3.0,early_stop\n";
    char written[8192];
    snprintf(written, sizeof written, "%s", read_text(path));
    assert_string_equal(written, want);

    p7bench_cell_result back = {0};
    if (p7bench_epochs_read(path, &back, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(back.epoch_count, 2);
    const p7bench_epoch_record *b = &back.epochs[1];
    assert_true(b->epoch == 2 && b->step == 32 && b->lr == 0.002 && b->grad_norm == 2.25);
    assert_true(b->val_members == 2 && b->val_member_acc[1] == 62.5 && b->test_member_acc[0] == 61.0);
    assert_true(b->test_loss == 1.125 && b->test_brier == 0.4375 && b->bma_samples == 4 && b->bma_ece == 0.015625);
    assert_string_equal(b->outcome, "early_stop");
    assert_true(isnan(back.epochs[0].grad_norm) && back.epochs[0].test_members == 0 && back.epochs[0].bma_samples == 0);
    assert_true(isnan(back.epochs[0].train_acc)); /* not measured: no column */
    assert_int_equal(p7bench_epochs_write(path, &back, err, sizeof err), 0);
    assert_string_equal(read_text(path), written);
    p7bench_cell_result_release(&back);

    /* the old shape, and a row short of a field, are named, not misread */
    FILE *f = fopen(path, "w");
    fputs("epoch,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,seconds\n1,1.5,nan,nan,nan,nan,nan,3.0\n", f);
    fclose(f);
    assert_int_not_equal(p7bench_epochs_read(path, &back, err, sizeof err), 0);
    if (!strstr(err, "expected 'epoch,step,lr,")) fail_msg("%s", err);
    p7bench_cell_result_release(&back);
    char text[8192];
    snprintf(text, sizeof text, "%s", written);
    *strrchr(text, ',') = '\0'; /* the last row loses its outcome */
    f = fopen(path, "w");
    fprintf(f, "%s\n", text);
    fclose(f);
    assert_int_not_equal(p7bench_epochs_read(path, &back, err, sizeof err), 0);
    if (!strstr(err, "line 3: expected 24 fields")) fail_msg("%s", err);
    p7bench_cell_result_release(&back);
    p7bench_cell_result_release(&r);
    remove_tree(dir);
}

/* Four processes append at once; every row arrives whole. */
static void concurrent_writers_never_corrupt_the_file(void **state)
{
    char *dir = temp_dir();
    const char *o[] = {"epochs=15"};
    p7bench_study_plan plan = plan_of("optimizers", o, 1);
    enum { WRITERS = 4, ROWS = 150 };
    for (int w = 0; w < WRITERS; w++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            p7bench_study_folder *folder;
            if (p7bench_study_folder_open(dir, &plan, &folder, err, sizeof err) != 0) _exit(1);
            for (int i = 0; i < ROWS; i++) {
                p7bench_cell_result r;
                fill_result(&r, &plan, (size_t)(i % 12), 15);
                r.seed = w * 1000 + i;
                if (p7bench_study_folder_append(folder, &r, err, sizeof err) != 0) _exit(1);
                p7bench_cell_result_release(&r);
            }
            p7bench_study_folder_close(folder);
            _exit(0);
        }
    }
    for (int w = 0; w < WRITERS; w++) {
        int status;
        wait(&status);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    char csv[512];
    snprintf(csv, sizeof csv, "%s/results.csv", dir);
    p7bench_csv table;
    assert_int_equal(p7bench_csv_read(csv, &table, err, sizeof err), 0);
    assert_int_equal(table.rows, 1 + WRITERS * ROWS);
    for (size_t r = 1; r < table.rows; r++) assert_int_equal(table.field_counts[r], table.field_counts[0]);
    int seen[WRITERS * 1000] = {0};
    int seed_column = p7bench_csv_column(&table, "seed");
    for (size_t r = 1; r < table.rows; r++) seen[atoi(table.fields[r][seed_column])]++;
    for (int w = 0; w < WRITERS; w++)
        for (int i = 0; i < ROWS; i++) assert_int_equal(seen[w * 1000 + i], 1);
    p7bench_csv_free(&table);
    p7bench_study_plan_release(&plan);
    remove_tree(dir);
}

/* A node as OpenCL may show it: PoCL's CPU device, then four NVIDIA GPUs. */
static size_t fake_node(p7_device_info *d, size_t gpus)
{
    memset(d, 0, 5 * sizeof *d);
    d[0] = (p7_device_info){.platform_index = 0, .device_index = 0, .kind = P7_DEVICE_KIND_CPU};
    snprintf(d[0].platform_name, sizeof d[0].platform_name, "Portable Computing Language");
    snprintf(d[0].vendor, sizeof d[0].vendor, "AuthenticAMD");
    snprintf(d[0].name, sizeof d[0].name, "pthread-zen");
    for (size_t g = 0; g < gpus; g++) {
        p7_device_info *x = &d[1 + g];
        *x = (p7_device_info){.platform_index = 1, .device_index = (unsigned)g, .kind = P7_DEVICE_KIND_GPU};
        snprintf(x->platform_name, sizeof x->platform_name, "NVIDIA CUDA");
        snprintf(x->vendor, sizeof x->vendor, "NVIDIA Corporation");
        snprintf(x->name, sizeof x->name, "NVIDIA H100");
    }
    return 1 + gpus;
}

/* The device an array task takes, for each way SLURM and the driver may present its GPU. */
static void array_task_takes_the_granted_gpu(void **state)
{
    p7_device_info d[5];
    size_t n = fake_node(d, 4), at;
    char note[1024];
    p7bench_gpu_grant none = {0}, cuda2 = {.cuda_visible_devices = "2"}, job_gpus = {.slurm_job_gpus = "3"},
                      nodev = {.cuda_visible_devices = "NoDevFiles"}, uuid = {.cuda_visible_devices = "GPU-8f6c1a"},
                      rocr = {.rocr_visible_devices = "1", .slurm_job_gpus = "3"};
    assert_int_equal(p7bench_device_for_task(NULL, d, n, &none, &at, note, sizeof note), 0);
    assert_int_equal(at, 0); /* no GPU granted: the CPU */
    assert_int_equal(p7bench_device_for_task(NULL, d, n, &nodev, &at, note, sizeof note), 0);
    assert_int_equal(at, 0);
    /* the driver shows every GPU of the node: the granted one by its index */
    assert_int_equal(p7bench_device_for_task(NULL, d, n, &cuda2, &at, note, sizeof note), 0);
    assert_int_equal(at, 3);
    if (!strstr(note, "CUDA_VISIBLE_DEVICES=2")) fail_msg("%s", note);
    assert_int_equal(p7bench_device_for_task(NULL, d, n, &job_gpus, &at, note, sizeof note), 0);
    assert_int_equal(at, 4);
    assert_int_equal(p7bench_device_for_task("gpu", d, n, &rocr, &at, note, sizeof note), 0);
    assert_int_equal(at, 2); /* ROCR_VISIBLE_DEVICES comes before SLURM_JOB_GPUS */
    /* not an index: the first GPU */
    assert_int_equal(p7bench_device_for_task(NULL, d, n, &uuid, &at, note, sizeof note), 0);
    assert_int_equal(at, 1);
    /* the driver shows only the granted GPU (NVIDIA applies CUDA_VISIBLE_DEVICES): that one */
    size_t n1 = fake_node(d, 1);
    assert_int_equal(p7bench_device_for_task(NULL, d, n1, &cuda2, &at, note, sizeof note), 0);
    assert_int_equal(at, 1);
    n = fake_node(d, 4);
    /* a device named by the user is obeyed */
    assert_int_equal(p7bench_device_for_task("cpu", d, n, &cuda2, &at, note, sizeof note), 0);
    assert_int_equal(at, 0);
    assert_int_equal(p7bench_device_for_task("1:3", d, n, &cuda2, &at, note, sizeof note), 0);
    assert_int_equal(at, 4);
    /* a GPU granted, none visible: said so */
    size_t n0 = fake_node(d, 0);
    assert_int_not_equal(p7bench_device_for_task(NULL, d, n0, &cuda2, &at, note, sizeof note), 0);
    if (!strstr(note, "no GPU")) fail_msg("%s", note);
}

static void jobs_devices_come_from_devices_or_the_spec(void **state)
{
    p7_device_info d[5];
    size_t n = fake_node(d, 4), out[P7BENCH_DEVICES_MAX], k;
    assert_int_equal(p7bench_devices_for_jobs(NULL, NULL, 2, d, n, out, &k, err, sizeof err), 0);
    assert_int_equal(k, 2);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    assert_int_equal(p7bench_devices_for_jobs("nvidia", NULL, 64, d, n, out, &k, err, sizeof err), 0);
    assert_int_equal(k, 4); /* a vendor word's CPU fallback is not one of its GPUs */
    assert_int_equal(p7bench_devices_for_jobs(NULL, "3,1", 8, d, n, out, &k, err, sizeof err), 0);
    assert_int_equal(k, 2);
    assert_int_equal(out[0], 4);
    assert_int_equal(out[1], 2);
    assert_int_equal(p7bench_devices_for_jobs(NULL, "0:0,1:1", 8, d, n, out, &k, err, sizeof err), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 2);
    assert_int_not_equal(p7bench_devices_for_jobs(NULL, "4", 8, d, n, out, &k, err, sizeof err), 0);
    if (!strstr(err, "names 4 device(s), numbered from 0")) fail_msg("%s", err);
    assert_int_equal(p7bench_devices_for_jobs("cpu", NULL, 4, d, n, out, &k, err, sizeof err), 0);
    assert_int_equal(k, 1);
    assert_int_equal(out[0], 0);
    n = fake_node(d, 0); /* no GPU: the default is the CPU */
    assert_int_equal(p7bench_devices_for_jobs(NULL, NULL, 4, d, n, out, &k, err, sizeof err), 0);
    assert_int_equal(k, 1);
}

static void array_ranges_and_shell_quoting(void **state)
{
    char b[64];
    const size_t a[] = {0, 1, 2, 5, 7, 8}, one[] = {4};
    assert_int_equal(p7bench_array_ranges(a, 6, b, sizeof b), 9);
    assert_string_equal(b, "0-2,5,7-8");
    p7bench_array_ranges(one, 1, b, sizeof b);
    assert_string_equal(b, "4");
    assert_int_equal(p7bench_array_ranges(a, 6, b, 5), -1);
    b[0] = '\0';
    assert_int_equal(p7bench_shell_quote("--lr", b, sizeof b), 0);
    strcat(b, " ");
    p7bench_shell_quote("lr=2e-3,wd=1e-4", b, sizeof b);
    strcat(b, " ");
    p7bench_shell_quote("it's a b", b, sizeof b);
    assert_string_equal(b, "--lr lr=2e-3,wd=1e-4 'it'\\''s a b'");
}

/* The list only grows: a cell keeps its index whatever runs come later, in any order. */
static void cell_list_appends_each_cell_once(void **state)
{
    char *dir = temp_dir();
    const char *o[] = {"epochs=1"};
    p7bench_study_plan plan = plan_of("optimizers", o, 1);
    const p7bench_cell *first[3] = {&plan.cells[0], &plan.cells[1], &plan.cells[0]}, *later[2] = {&plan.cells[5],
                                                                                                  &plan.cells[1]};
    size_t index[3];
    assert_int_equal(p7bench_cell_list_add(dir, first, 3, "/w", "p7bench optimizers --epochs 1", index, err, sizeof err), 0);
    assert_int_equal(index[0], 0);
    assert_int_equal(index[1], 1);
    assert_int_equal(index[2], 0);
    assert_int_equal(p7bench_cell_list_add(dir, later, 2, "/v", "p7bench optimizers --epochs=1 --seeds 2", index, err,
                                           sizeof err), 0);
    assert_int_equal(index[0], 2);
    assert_int_equal(index[1], 1);
    assert_int_equal(p7bench_cell_list_add(dir, later, 2, "/u", "again", NULL, err, sizeof err), 0);
    p7bench_cell_list list;
    assert_int_equal(p7bench_cell_list_read(dir, &list, err, sizeof err), 0);
    assert_int_equal(list.count, 3);
    assert_string_equal(list.ids[0], plan.cells[0].id);
    assert_string_equal(list.ids[2], plan.cells[5].id);
    assert_string_equal(list.command[1], "p7bench optimizers --epochs 1");
    assert_string_equal(list.cwd[2], "/v");
    assert_int_equal(p7bench_cell_list_find(&list, plan.cells[5].id), 2);
    assert_int_equal(p7bench_cell_list_find(&list, plan.cells[7].id), -1);
    p7bench_cell_list_free(&list);
    /* a claim is exclusive while held, and free again once released */
    char cell_dir[600], holder[300];
    snprintf(cell_dir, sizeof cell_dir, "%s/cells/%s", dir, plan.cells[0].id);
    char mk[700];
    snprintf(mk, sizeof mk, "mkdir -p '%s'", cell_dir);
    assert_int_equal(system(mk), 0);
    int fd, fd2;
    assert_int_equal(p7bench_cell_claim(dir, plan.cells[0].id, &fd, holder, sizeof holder, err, sizeof err), 0);
    pid_t pid = fork();
    if (pid == 0) { /* another process is turned away, and told who holds it */
        int got = p7bench_cell_claim(dir, plan.cells[0].id, &fd2, holder, sizeof holder, err, sizeof err);
        _exit(got == 1 && strstr(holder, "pid ") ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    p7bench_cell_unclaim(fd);
    assert_int_equal(p7bench_cell_claim(dir, plan.cells[0].id, &fd2, holder, sizeof holder, err, sizeof err), 0);
    p7bench_cell_unclaim(fd2);
    p7bench_study_plan_release(&plan);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(floats_are_spelled_as_python_repr),
        cmocka_unit_test(grids_have_the_issue_sizes),
        cmocka_unit_test(alpha_gamma_grid_runs_alpha_outer_gamma_inner),
        cmocka_unit_test(ids_are_stable_under_reordered_and_respelled_overrides),
        cmocka_unit_test(seeds_and_faithful_batch_are_derived),
        cmocka_unit_test(unknown_and_foreign_ids_are_refused_naming_the_study),
        cmocka_unit_test(bad_overrides_name_the_key),
        cmocka_unit_test(list_prints_ids_and_varying_settings),
        cmocka_unit_test(rows_start_with_the_originals_columns),
        cmocka_unit_test(folder_round_trips_and_skips_a_partial_last_line),
        cmocka_unit_test(epochs_csv_holds_every_metric),
        cmocka_unit_test(concurrent_writers_never_corrupt_the_file),
        cmocka_unit_test(array_task_takes_the_granted_gpu),
        cmocka_unit_test(jobs_devices_come_from_devices_or_the_spec),
        cmocka_unit_test(array_ranges_and_shell_quoting),
        cmocka_unit_test(cell_list_appends_each_cell_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
