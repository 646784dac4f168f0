/* A study's results folder (see p7bench_study_results.h). */
#include "p7bench_study_results.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "p7bench_numbers.h"
#include "p7bench_results.h"

struct p7bench_study_folder {
    char dir[4096];
    char study[P7BENCH_STUDY_MAX];
    p7bench_csv_mode mode;
    p7bench_results *results;
};

/* ---------------------------------------------------------------- results */

void p7bench_cell_result_init(p7bench_cell_result *r, const char *study, const p7bench_cell *cell)
{
    memset(r, 0, sizeof *r);
    const p7bench_config *c = &cell->config;
    const char *v;
    snprintf(r->cell, sizeof r->cell, "%s", cell->id);
    snprintf(r->label, sizeof r->label, "%s", cell->label);
    snprintf(r->study, sizeof r->study, "%s", study);
    snprintf(r->model, sizeof r->model, "%s", (v = p7bench_config_get(c, "model")) ? v : "");
    snprintf(r->optimizer, sizeof r->optimizer, "%s", (v = p7bench_config_get(c, "optimizer")) ? v : "");
    snprintf(r->dataset, sizeof r->dataset, "%s", (v = p7bench_config_get(c, "dataset")) ? v : "");
    snprintf(r->status, sizeof r->status, "failed");
    r->seed = (v = p7bench_config_get(c, "seed")) ? strtoll(v, NULL, 10) : 0;
    r->members = (v = p7bench_config_get(c, "members")) ? strtoll(v, NULL, 10) : 1;
    r->num_epochs = (v = p7bench_config_get(c, "epochs")) ? strtoll(v, NULL, 10) : 0;
    r->batch = (v = p7bench_config_get(c, "batch")) ? strtoll(v, NULL, 10) : 0;
    r->alpha_init = (v = p7bench_config_get(c, "alpha")) ? strtod(v, NULL) : NAN;
    r->gamma_init = (v = p7bench_config_get(c, "gamma")) ? strtod(v, NULL) : NAN;
    r->lr = (v = p7bench_config_get(c, "lr")) ? strtod(v, NULL) : NAN;
    r->final_test_acc = r->test_nll = r->test_ece = r->test_brier = r->diversity = NAN;
    r->bma_test_acc = r->bma_test_nll = r->bma_test_ece = NAN;
    snprintf(r->hparams, sizeof r->hparams, "%s", (v = p7bench_config_get(c, "hparams")) ? v : "");
    snprintf(r->schedule, sizeof r->schedule, "%s", (v = p7bench_config_get(c, "schedule")) ? v : "");
    r->seconds = r->images_per_s = NAN;
    r->params_unique = r->params_used = r->params_shared = r->peak_device_bytes = -1;
    r->read_avg_test_acc = r->read_final_loss = r->read_avg_loss = NAN;
}

void p7bench_epoch_record_init(p7bench_epoch_record *e, long long epoch)
{
    memset(e, 0, sizeof *e);
    e->epoch = epoch;
    e->train_loss = e->train_acc = e->val_loss = e->val_acc = e->test_loss = e->test_acc = e->seconds = NAN;
    e->lr = e->grad_norm = e->images_per_s = NAN;
    e->val_ece = e->val_brier = e->val_diversity = e->test_ece = e->test_brier = e->test_diversity = NAN;
    e->bma_acc = e->bma_nll = e->bma_ece = NAN;
    snprintf(e->outcome, sizeof e->outcome, "ok");
}

int p7bench_cell_result_add_epoch(p7bench_cell_result *r, const p7bench_epoch_record *e)
{
    p7bench_epoch_record *grown = realloc(r->epochs, (r->epoch_count + 1) * sizeof *grown);
    if (!grown) return 1;
    r->epochs = grown;
    r->epochs[r->epoch_count++] = *e;
    return 0;
}

int p7bench_cell_result_set_members(p7bench_cell_result *r, const double *member_acc, size_t count)
{
    double *copy = count ? malloc(count * sizeof *copy) : NULL;
    if (count && !copy) return 1;
    if (count) memcpy(copy, member_acc, count * sizeof *copy);
    free(r->member_acc);
    r->member_acc = copy;
    r->member_count = count;
    return 0;
}

void p7bench_cell_result_release(p7bench_cell_result *r)
{
    if (!r) return;
    free(r->epochs);
    free(r->member_acc);
    r->epochs = NULL;
    r->member_acc = NULL;
    r->epoch_count = r->member_count = 0;
}

/* ---------------------------------------------------------------- text building */

typedef struct text {
    char *s;
    size_t n, cap;
    int failed;
} text;

static void put(text *t, const char *s)
{
    size_t k = strlen(s);
    if (t->failed) return;
    if (t->n + k + 1 > t->cap) {
        size_t cap = (t->cap ? t->cap * 2 : 256) + k;
        char *grown = realloc(t->s, cap);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->s = grown;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, k + 1);
    t->n += k;
}

/* A CSV field as Python's csv module writes it (QUOTE_MINIMAL): quoted only when it holds
 * a comma, a quote or a line break, quotes doubled. */
static void put_field(text *t, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        put(t, s);
        return;
    }
    put(t, "\"");
    for (const char *p = s; *p; p++) put(t, *p == '"' ? "\"\"" : (char[2]){*p, 0});
    put(t, "\"");
}

static void put_float(text *t, double v)
{
    char b[40];
    put(t, p7bench_format_float(v, b, sizeof b));
}

static void put_int(text *t, long long v)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    put(t, b);
}

/* Python's list repr of floats: "[1.5, 2.0]". */
static void put_list(text *t, const double *v, size_t n, size_t stride)
{
    text list = {0};
    put(&list, "[");
    for (size_t i = 0; i < n; i++) {
        if (i) put(&list, ", ");
        put_float(&list, *(const double *)((const char *)v + i * stride));
    }
    put(&list, "]");
    if (list.failed) t->failed = 1;
    else put_field(t, list.s);
    free(list.s);
}

/* ---------------------------------------------------------------- columns */

typedef enum column {
    /* the original's, both modes */
    COL_SEED, COL_ALPHA, COL_GAMMA, COL_ENSEMBLE_SIZE, COL_NUM_EPOCHS, COL_BATCH, COL_LR, COL_MODEL_TYPE,
    COL_FINAL_TEST_ACC, COL_AVG_TEST_ACC, COL_FINAL_LOSSES, COL_AVG_LOSSES, COL_TRAIN_LOSS, COL_VAL_LOSS,
    COL_TRAIN_ACC, COL_VAL_ACC,
    /* p7's */
    COL_CELL, COL_LABEL, COL_STUDY, COL_STATUS, COL_MODEL, COL_OPTIMIZER, COL_DATASET, COL_EPOCHS_RUN,
    COL_TEST_LOSS, COL_TEST_ACC, COL_TEST_NLL, COL_TEST_ECE, COL_TEST_BRIER, COL_MEMBER_ACC, COL_DIVERSITY,
    COL_PARAMS_UNIQUE, COL_PARAMS_USED, COL_PARAMS_SHARED, COL_SECONDS, COL_IMAGES_PER_S, COL_PEAK_DEVICE_BYTES,
    COL_DEVICE, COL_HPARAMS, COL_SCHEDULE, COL_BMA_SAMPLES, COL_BMA_TEST_ACC, COL_BMA_TEST_NLL, COL_BMA_TEST_ECE,
    COL_COUNT
} column;

static const char *const column_names[COL_COUNT] = {
    "seed", "alpha_init", "gamma_init", "ensemble_size", "num_epochs", "batch_size", "lr", "model_type",
    "final_test_accuracy", "avg_test_accuracy", "final_losses", "avg_losses", "train_loss", "val_loss",
    "train_acc", "val_acc",
    "cell", "label", "study", "status", "model", "optimizer", "dataset", "epochs_run",
    "test_loss", "test_acc", "test_nll", "test_ece", "test_brier", "member_test_accuracy", "diversity",
    "params_unique", "params_used", "params_shared", "seconds", "images_per_s", "peak_device_bytes",
    "device", "hparams", "schedule", "bma_samples", "bma_test_accuracy", "bma_test_nll", "bma_test_ece",
};

/* Each mode's column order: its original columns, then the rest in the order above. */
static const column parameter_first[] = {COL_SEED, COL_ALPHA, COL_GAMMA, COL_ENSEMBLE_SIZE, COL_NUM_EPOCHS,
                                         COL_BATCH, COL_LR, COL_MODEL_TYPE, COL_FINAL_TEST_ACC, COL_AVG_TEST_ACC,
                                         COL_FINAL_LOSSES, COL_AVG_LOSSES};
static const column optimizer_first[] = {COL_ENSEMBLE_SIZE, COL_NUM_EPOCHS, COL_BATCH, COL_LR, COL_MODEL_TYPE,
                                         COL_TRAIN_LOSS, COL_VAL_LOSS, COL_TRAIN_ACC, COL_VAL_ACC};

static size_t column_order(p7bench_csv_mode mode, column order[COL_COUNT])
{
    const column *first = mode == P7BENCH_CSV_PARAMETER ? parameter_first : optimizer_first;
    size_t nfirst = mode == P7BENCH_CSV_PARAMETER ? sizeof parameter_first / sizeof parameter_first[0]
                                                  : sizeof optimizer_first / sizeof optimizer_first[0];
    size_t n = 0;
    int used[COL_COUNT] = {0};
    for (size_t i = 0; i < nfirst; i++) order[n++] = first[i], used[first[i]] = 1;
    for (int c = 0; c < COL_COUNT; c++)
        if (!used[c]) order[n++] = (column)c;
    return n;
}

const char *p7bench_results_header(p7bench_csv_mode mode)
{
    static char headers[2][1024];
    char *h = headers[mode == P7BENCH_CSV_PARAMETER ? 0 : 1];
    if (!h[0]) {
        column order[COL_COUNT];
        size_t n = column_order(mode, order), len = 0;
        for (size_t i = 0; i < n; i++)
            len += (size_t)snprintf(h + len, 1024 - len, "%s%s", i ? "," : "", column_names[order[i]]);
    }
    return h;
}

static double last_or_nan(const p7bench_cell_result *r, size_t offset)
{
    if (!r->epoch_count) return NAN;
    return *(const double *)((const char *)&r->epochs[r->epoch_count - 1] + offset);
}

/* The mean over the epochs that measured it; NaN when none did. */
static double mean_over_epochs(const p7bench_cell_result *r, size_t offset)
{
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < r->epoch_count; i++) {
        double v = *(const double *)((const char *)&r->epochs[i] + offset);
        if (!isnan(v)) sum += v, n++;
    }
    return n ? sum / (double)n : NAN;
}

#define EPOCH_FIELD(f) offsetof(p7bench_epoch_record, f)

double p7bench_result_avg_test_acc(const p7bench_cell_result *r)
{
    double v = mean_over_epochs(r, EPOCH_FIELD(test_acc));
    return isnan(v) ? r->read_avg_test_acc : v;
}

double p7bench_result_final_loss(const p7bench_cell_result *r)
{
    double v = last_or_nan(r, EPOCH_FIELD(train_loss));
    return isnan(v) ? r->read_final_loss : v;
}

double p7bench_result_avg_loss(const p7bench_cell_result *r)
{
    double v = mean_over_epochs(r, EPOCH_FIELD(train_loss));
    return isnan(v) ? r->read_avg_loss : v;
}

static void put_column(text *t, const p7bench_cell_result *r, column c)
{
    char b[40];
    const size_t stride = sizeof(p7bench_epoch_record);
    const double *e = r->epochs ? &r->epochs[0].train_loss : NULL;
    switch (c) {
    case COL_SEED: put_int(t, r->seed); break;
    case COL_ALPHA: if (!isnan(r->alpha_init)) put(t, p7bench_format_number(r->alpha_init, b, sizeof b)); break;
    case COL_GAMMA: if (!isnan(r->gamma_init)) put(t, p7bench_format_number(r->gamma_init, b, sizeof b)); break;
    case COL_ENSEMBLE_SIZE: put_int(t, r->members); break;
    case COL_NUM_EPOCHS: put_int(t, r->num_epochs); break;
    case COL_BATCH: put_int(t, r->batch); break;
    case COL_LR: put_float(t, r->lr); break;
    case COL_MODEL_TYPE: put_field(t, p7bench_original_model_type(r->model, r->members)); break;
    case COL_FINAL_TEST_ACC: put_float(t, r->final_test_acc); break;
    case COL_AVG_TEST_ACC: put_float(t, p7bench_result_avg_test_acc(r)); break;
    case COL_FINAL_LOSSES: put_float(t, p7bench_result_final_loss(r)); break;
    case COL_AVG_LOSSES: put_float(t, p7bench_result_avg_loss(r)); break;
    /* e points at the first record's train_loss; each list walks one field across records */
    case COL_TRAIN_LOSS: put_list(t, e, r->epoch_count, stride); break;
    case COL_VAL_LOSS: put_list(t, e ? &r->epochs[0].val_loss : NULL, r->epoch_count, stride); break;
    case COL_TRAIN_ACC: put_list(t, e ? &r->epochs[0].train_acc : NULL, r->epoch_count, stride); break;
    case COL_VAL_ACC: put_list(t, e ? &r->epochs[0].val_acc : NULL, r->epoch_count, stride); break;
    case COL_CELL: put_field(t, r->cell); break;
    case COL_LABEL: put_field(t, r->label); break;
    case COL_STUDY: put_field(t, r->study); break;
    case COL_STATUS: put_field(t, r->status); break;
    case COL_MODEL: put_field(t, r->model); break;
    case COL_OPTIMIZER: put_field(t, r->optimizer); break;
    case COL_DATASET: put_field(t, r->dataset); break;
    case COL_EPOCHS_RUN: put_int(t, (long long)r->epoch_count); break;
    case COL_TEST_LOSS: put_list(t, e ? &r->epochs[0].test_loss : NULL, r->epoch_count, stride); break;
    case COL_TEST_ACC: put_list(t, e ? &r->epochs[0].test_acc : NULL, r->epoch_count, stride); break;
    case COL_TEST_NLL: put_float(t, r->test_nll); break;
    case COL_TEST_ECE: put_float(t, r->test_ece); break;
    case COL_TEST_BRIER: put_float(t, r->test_brier); break;
    case COL_MEMBER_ACC: put_list(t, r->member_acc, r->member_count, sizeof(double)); break;
    case COL_DIVERSITY: put_float(t, r->diversity); break;
    case COL_PARAMS_UNIQUE: if (r->params_unique >= 0) put_int(t, r->params_unique); break;
    case COL_PARAMS_USED: if (r->params_used >= 0) put_int(t, r->params_used); break;
    case COL_PARAMS_SHARED: if (r->params_shared >= 0) put_int(t, r->params_shared); break;
    case COL_SECONDS: put_float(t, r->seconds); break;
    case COL_IMAGES_PER_S: put_float(t, r->images_per_s); break;
    case COL_PEAK_DEVICE_BYTES: if (r->peak_device_bytes >= 0) put_int(t, r->peak_device_bytes); break;
    case COL_DEVICE: put_field(t, r->device); break;
    case COL_HPARAMS: put_field(t, r->hparams); break;
    case COL_SCHEDULE: put_field(t, r->schedule); break;
    case COL_BMA_SAMPLES: if (r->bma_samples > 0) put_int(t, r->bma_samples); break;
    case COL_BMA_TEST_ACC: put_float(t, r->bma_test_acc); break;
    case COL_BMA_TEST_NLL: put_float(t, r->bma_test_nll); break;
    case COL_BMA_TEST_ECE: put_float(t, r->bma_test_ece); break;
    case COL_COUNT: break;
    }
}

char *p7bench_results_row(const p7bench_cell_result *r, p7bench_csv_mode mode)
{
    column order[COL_COUNT];
    size_t n = column_order(mode, order);
    text t = {0};
    for (size_t i = 0; i < n; i++) {
        if (i) put(&t, ",");
        put_column(&t, r, order[i]);
    }
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

/* ---------------------------------------------------------------- reading CSV */

static int read_whole(const char *path, char **out, size_t *size, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, err_size, "cannot open (%s): %s", strerror(errno), path), 1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n + 1 < cap) break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return snprintf(err, err_size, "cannot read: %s", path), 1;
    }
    buf[n] = '\0';
    *out = buf;
    *size = n;
    return 0;
}

void p7bench_csv_free(p7bench_csv *csv)
{
    for (size_t r = 0; r < csv->rows; r++) {
        for (size_t i = 0; i < csv->field_counts[r]; i++) free(csv->fields[r][i]);
        free(csv->fields[r]);
    }
    free(csv->fields);
    free(csv->field_counts);
    memset(csv, 0, sizeof *csv);
}

/* RFC 4180 records; "\r\n" and "\n" both end one. A record whose '\n' never comes (a
 * write cut short) is not returned. */
int p7bench_csv_read(const char *path, p7bench_csv *csv, char *err, size_t err_size)
{
    memset(csv, 0, sizeof *csv);
    char *buf;
    size_t size;
    if (read_whole(path, &buf, &size, err, err_size) != 0) return 1;
    size_t cap_rows = 0;
    char **fields = NULL;
    size_t nfields = 0, cap_fields = 0;
    text field = {0};
    int quoted = 0, oom = 0, field_started = 0;
    for (size_t i = 0; i < size && !oom; i++) {
        char ch = buf[i];
        if (quoted) {
            if (ch == '"' && i + 1 < size && buf[i + 1] == '"') put(&field, "\""), i++;
            else if (ch == '"') quoted = 0;
            else put(&field, (char[2]){ch, 0});
            continue;
        }
        if (ch == '"') {
            quoted = 1;
            field_started = 1;
            continue;
        }
        if (ch == '\r' && i + 1 < size && buf[i + 1] == '\n') continue;
        if (ch != ',' && ch != '\n') {
            put(&field, (char[2]){ch, 0});
            field_started = 1;
            continue;
        }
        /* a field ends */
        if (nfields == cap_fields) {
            cap_fields = cap_fields ? cap_fields * 2 : 32;
            char **grown = realloc(fields, cap_fields * sizeof *grown);
            if (!grown) { oom = 1; break; }
            fields = grown;
        }
        fields[nfields++] = field.s ? field.s : calloc(1, 1);
        field = (text){0};
        if (ch == '\n') { /* a record ends */
            if (csv->rows == cap_rows) {
                cap_rows = cap_rows ? cap_rows * 2 : 64;
                char ***grown = realloc(csv->fields, cap_rows * sizeof *grown);
                size_t *grown_counts = realloc(csv->field_counts, cap_rows * sizeof *grown_counts);
                if (grown) csv->fields = grown;
                if (grown_counts) csv->field_counts = grown_counts;
                if (!grown || !grown_counts) { oom = 1; break; }
            }
            if (!(nfields == 1 && !fields[0][0] && !field_started)) { /* skip empty lines */
                csv->fields[csv->rows] = fields;
                csv->field_counts[csv->rows++] = nfields;
            } else {
                free(fields[0]);
                free(fields);
            }
            fields = NULL;
            nfields = cap_fields = 0;
            field_started = 0;
        }
    }
    /* the partial last line, if any */
    for (size_t i = 0; i < nfields; i++) free(fields[i]);
    free(fields);
    free(field.s);
    free(buf);
    if (oom || field.failed) {
        p7bench_csv_free(csv);
        return snprintf(err, err_size, "out of host memory reading %s", path), 1;
    }
    return 0;
}

int p7bench_csv_column(const p7bench_csv *csv, const char *name)
{
    if (!csv->rows) return -1;
    for (size_t i = 0; i < csv->field_counts[0]; i++)
        if (strcmp(csv->fields[0][i], name) == 0) return (int)i;
    return -1;
}

/* "[1.5, 2.0, nan]" -> values; returns the count, or -1 if it is not such a list. */
static long parse_list(const char *s, double **out)
{
    *out = NULL;
    size_t n = strlen(s);
    if (n < 2 || s[0] != '[' || s[n - 1] != ']') return -1;
    char *copy = malloc(n);
    if (!copy) return -1;
    memcpy(copy, s + 1, n - 2);
    copy[n - 2] = '\0';
    long count = 0;
    double *v = NULL;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        double x;
        double *grown = realloc(v, (size_t)(count + 1) * sizeof *grown);
        if (!grown || !p7bench_parse_double(tok, &x)) {
            free(grown ? grown : v);
            free(copy);
            return -1;
        }
        v = grown;
        v[count++] = x;
    }
    free(copy);
    *out = v;
    return count;
}

static double field_double(const char *s)
{
    double v;
    return *s && p7bench_parse_double(s, &v) ? v : NAN;
}

static long long field_int(const char *s, long long missing)
{
    long long v;
    return *s && p7bench_parse_integer(s, &v) ? v : missing;
}

/* Places a per-epoch list into field `offset` of the epoch records, growing them. */
static int spread_list(p7bench_cell_result *r, const char *s, size_t offset)
{
    double *v;
    long n = parse_list(s, &v);
    if (n < 0) return 1;
    if ((size_t)n > r->epoch_count) {
        p7bench_epoch_record *grown = realloc(r->epochs, (size_t)n * sizeof *grown);
        if (!grown) { free(v); return 1; }
        r->epochs = grown;
        for (size_t i = r->epoch_count; i < (size_t)n; i++) p7bench_epoch_record_init(&r->epochs[i], (long long)i + 1);
        r->epoch_count = (size_t)n;
    }
    for (long i = 0; i < n; i++) *(double *)((char *)&r->epochs[i] + offset) = v[i];
    free(v);
    return 0;
}

static int read_column(p7bench_cell_result *r, column c, const char *s)
{
    switch (c) {
    case COL_SEED: r->seed = field_int(s, 0); break;
    case COL_ALPHA: r->alpha_init = field_double(s); break;
    case COL_GAMMA: r->gamma_init = field_double(s); break;
    case COL_ENSEMBLE_SIZE: r->members = field_int(s, 1); break;
    case COL_NUM_EPOCHS: r->num_epochs = field_int(s, 0); break;
    case COL_BATCH: r->batch = field_int(s, 0); break;
    case COL_LR: r->lr = field_double(s); break;
    case COL_FINAL_TEST_ACC: r->final_test_acc = field_double(s); break;
    case COL_AVG_TEST_ACC: r->read_avg_test_acc = field_double(s); break;
    case COL_FINAL_LOSSES: r->read_final_loss = field_double(s); break;
    case COL_AVG_LOSSES: r->read_avg_loss = field_double(s); break;
    case COL_TRAIN_LOSS: return spread_list(r, s, EPOCH_FIELD(train_loss));
    case COL_VAL_LOSS: return spread_list(r, s, EPOCH_FIELD(val_loss));
    case COL_TRAIN_ACC: return spread_list(r, s, EPOCH_FIELD(train_acc));
    case COL_VAL_ACC: return spread_list(r, s, EPOCH_FIELD(val_acc));
    case COL_TEST_LOSS: return spread_list(r, s, EPOCH_FIELD(test_loss));
    case COL_TEST_ACC: return spread_list(r, s, EPOCH_FIELD(test_acc));
    case COL_CELL: snprintf(r->cell, sizeof r->cell, "%s", s); break;
    case COL_LABEL: snprintf(r->label, sizeof r->label, "%s", s); break;
    case COL_STUDY: snprintf(r->study, sizeof r->study, "%s", s); break;
    case COL_STATUS: snprintf(r->status, sizeof r->status, "%s", s); break;
    case COL_MODEL: snprintf(r->model, sizeof r->model, "%s", s); break;
    case COL_MODEL_TYPE: if (!r->model[0]) snprintf(r->model, sizeof r->model, "%s", s); break;
    case COL_OPTIMIZER: snprintf(r->optimizer, sizeof r->optimizer, "%s", s); break;
    case COL_DATASET: snprintf(r->dataset, sizeof r->dataset, "%s", s); break;
    case COL_TEST_NLL: r->test_nll = field_double(s); break;
    case COL_TEST_ECE: r->test_ece = field_double(s); break;
    case COL_TEST_BRIER: r->test_brier = field_double(s); break;
    case COL_MEMBER_ACC: {
        double *v;
        long n = parse_list(s, &v);
        if (n < 0) return 1;
        free(r->member_acc);
        r->member_acc = v;
        r->member_count = (size_t)n;
        break;
    }
    case COL_DIVERSITY: r->diversity = field_double(s); break;
    case COL_PARAMS_UNIQUE: r->params_unique = field_int(s, -1); break;
    case COL_PARAMS_USED: r->params_used = field_int(s, -1); break;
    case COL_PARAMS_SHARED: r->params_shared = field_int(s, -1); break;
    case COL_SECONDS: r->seconds = field_double(s); break;
    case COL_IMAGES_PER_S: r->images_per_s = field_double(s); break;
    case COL_PEAK_DEVICE_BYTES: r->peak_device_bytes = field_int(s, -1); break;
    case COL_DEVICE: snprintf(r->device, sizeof r->device, "%s", s); break;
    case COL_HPARAMS: snprintf(r->hparams, sizeof r->hparams, "%s", s); break;
    case COL_SCHEDULE: snprintf(r->schedule, sizeof r->schedule, "%s", s); break;
    case COL_BMA_SAMPLES: r->bma_samples = field_int(s, 0); break;
    case COL_BMA_TEST_ACC: r->bma_test_acc = field_double(s); break;
    case COL_BMA_TEST_NLL: r->bma_test_nll = field_double(s); break;
    case COL_BMA_TEST_ECE: r->bma_test_ece = field_double(s); break;
    default: break;
    }
    return 0;
}

int p7bench_results_read(const char *path, p7bench_cell_result **rows, size_t *count, char *err, size_t err_size)
{
    *rows = NULL;
    *count = 0;
    p7bench_csv csv;
    if (p7bench_csv_read(path, &csv, err, err_size) != 0) return 1;
    if (csv.rows == 0) {
        p7bench_csv_free(&csv);
        return 0;
    }
    int where[COL_COUNT];
    for (int c = 0; c < COL_COUNT; c++) where[c] = p7bench_csv_column(&csv, column_names[c]);
    p7bench_cell_result *out = calloc(csv.rows, sizeof *out);
    if (!out) {
        p7bench_csv_free(&csv);
        return snprintf(err, err_size, "out of host memory"), 1;
    }
    size_t n = 0;
    int rc = 0;
    for (size_t row = 1; row < csv.rows && rc == 0; row++, n++) {
        p7bench_cell_result *r = &out[row - 1];
        p7bench_cell r0 = {0};
        p7bench_cell_result_init(r, "", &r0);
        r->seed = 0;
        snprintf(r->status, sizeof r->status, "%s", "");
        for (int c = 0; c < COL_COUNT && rc == 0; c++) {
            if (where[c] < 0 || (size_t)where[c] >= csv.field_counts[row] || c == COL_MODEL_TYPE) continue;
            if (read_column(r, (column)c, csv.fields[row][where[c]]) != 0) {
                snprintf(err, err_size, "%s, line %zu: column %s: '%.80s' is not a list of numbers", path, row + 1,
                         column_names[c], csv.fields[row][where[c]]);
                rc = 1;
            }
        }
        if (!r->model[0] && where[COL_MODEL_TYPE] >= 0 && (size_t)where[COL_MODEL_TYPE] < csv.field_counts[row])
            read_column(r, COL_MODEL_TYPE, csv.fields[row][where[COL_MODEL_TYPE]]);
        if (!r->cell[0]) snprintf(r->cell, sizeof r->cell, "row-%zu", row + 1);
    }
    p7bench_csv_free(&csv);
    if (rc != 0) {
        p7bench_results_free(out, n);
        return 1;
    }
    *rows = out;
    *count = n;
    return 0;
}

void p7bench_results_free(p7bench_cell_result *rows, size_t count)
{
    for (size_t i = 0; rows && i < count; i++) p7bench_cell_result_release(&rows[i]);
    free(rows);
}

/* ---------------------------------------------------------------- epochs.csv, reliability.csv */

/* epochs.csv's columns, in order. */
typedef enum epoch_column {
    EC_EPOCH, EC_STEP, EC_LR, EC_TRAIN_LOSS, EC_GRAD_NORM,
    EC_VAL_ACC, EC_VAL_NLL, EC_VAL_ECE, EC_VAL_BRIER, EC_VAL_DIVERSITY, EC_VAL_MEMBER_ACC,
    EC_TEST_ACC, EC_TEST_NLL, EC_TEST_ECE, EC_TEST_BRIER, EC_TEST_DIVERSITY, EC_TEST_MEMBER_ACC,
    EC_BMA_SAMPLES, EC_BMA_ACC, EC_BMA_NLL, EC_BMA_ECE, EC_IMAGES_PER_S, EC_SECONDS, EC_OUTCOME,
    EC_COUNT
} epoch_column;

static const char epochs_header[] =
    "epoch,step,lr,train_loss,grad_norm,val_acc,val_nll,val_ece,val_brier,val_diversity,val_member_acc,"
    "test_acc,test_nll,test_ece,test_brier,test_diversity,test_member_acc,bma_samples,bma_acc,bma_nll,bma_ece,"
    "images_per_s,seconds,outcome";
static const char reliability_header[] = "bin_lower,bin_upper,count,mean_confidence,accuracy";

/* The record's double behind a numeric column; NULL for the others. */
static double *epoch_number(p7bench_epoch_record *e, epoch_column c)
{
    switch (c) {
    case EC_LR: return &e->lr;
    case EC_TRAIN_LOSS: return &e->train_loss;
    case EC_GRAD_NORM: return &e->grad_norm;
    case EC_VAL_ACC: return &e->val_acc;
    case EC_VAL_NLL: return &e->val_loss;
    case EC_VAL_ECE: return &e->val_ece;
    case EC_VAL_BRIER: return &e->val_brier;
    case EC_VAL_DIVERSITY: return &e->val_diversity;
    case EC_TEST_ACC: return &e->test_acc;
    case EC_TEST_NLL: return &e->test_loss;
    case EC_TEST_ECE: return &e->test_ece;
    case EC_TEST_BRIER: return &e->test_brier;
    case EC_TEST_DIVERSITY: return &e->test_diversity;
    case EC_BMA_ACC: return &e->bma_acc;
    case EC_BMA_NLL: return &e->bma_nll;
    case EC_BMA_ECE: return &e->bma_ece;
    case EC_IMAGES_PER_S: return &e->images_per_s;
    case EC_SECONDS: return &e->seconds;
    default: return NULL;
    }
}

/* Member accuracies as one field: "68.5;69.25" (';' keeps the field free of commas). */
static void put_members(text *t, const double *acc, int count)
{
    for (int m = 0; m < count; m++) {
        if (m) put(t, ";");
        put_float(t, acc[m]);
    }
}

static int parse_members(const char *s, double *acc, int *count)
{
    *count = 0;
    if (!*s) return 1;
    char copy[P7BENCH_MEMBERS_MAX * 40];
    if (snprintf(copy, sizeof copy, "%s", s) >= (int)sizeof copy) return 0;
    for (char *save = NULL, *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        if (*count == P7BENCH_MEMBERS_MAX || !p7bench_parse_double(tok, &acc[*count])) return 0;
        (*count)++;
    }
    return 1;
}

static void epoch_row(text *t, const p7bench_epoch_record *e)
{
    p7bench_epoch_record copy = *e; /* epoch_number gives writable pointers */
    for (int c = 0; c < EC_COUNT; c++) {
        if (c) put(t, ",");
        double *v = epoch_number(&copy, (epoch_column)c);
        if (v) {
            put_float(t, *v);
            continue;
        }
        switch ((epoch_column)c) {
        case EC_EPOCH: put_int(t, e->epoch); break;
        case EC_STEP: put_int(t, e->step); break;
        case EC_VAL_MEMBER_ACC: put_members(t, e->val_member_acc, e->val_members); break;
        case EC_TEST_MEMBER_ACC: put_members(t, e->test_member_acc, e->test_members); break;
        case EC_BMA_SAMPLES: if (e->bma_samples > 0) put_int(t, e->bma_samples); break;
        case EC_OUTCOME: put_field(t, e->outcome); break;
        default: break;
        }
    }
}

/* One row of epochs.csv into a record; 0 when a field is not what its column holds. */
static int parse_epoch_row(char **f, p7bench_epoch_record *e)
{
    p7bench_epoch_record_init(e, 0);
    for (int c = 0; c < EC_COUNT; c++) {
        double *v = epoch_number(e, (epoch_column)c);
        if (v) {
            if (!p7bench_parse_double(f[c], v)) return 0;
            continue;
        }
        int ok = 1;
        switch ((epoch_column)c) {
        case EC_EPOCH: ok = p7bench_parse_integer(f[c], &e->epoch); break;
        case EC_STEP: ok = p7bench_parse_integer(f[c], &e->step); break;
        case EC_VAL_MEMBER_ACC: ok = parse_members(f[c], e->val_member_acc, &e->val_members); break;
        case EC_TEST_MEMBER_ACC: ok = parse_members(f[c], e->test_member_acc, &e->test_members); break;
        case EC_BMA_SAMPLES: ok = !*f[c] || p7bench_parse_integer(f[c], &e->bma_samples); break;
        case EC_OUTCOME: ok = snprintf(e->outcome, sizeof e->outcome, "%s", f[c]) < (int)sizeof e->outcome; break;
        default: break;
        }
        if (!ok) return 0;
    }
    return 1;
}

int p7bench_epochs_append(const char *path, const p7bench_epoch_record *e, char *err, size_t err_size)
{
    p7bench_results *f;
    if (p7bench_results_open(path, epochs_header, &f, err, err_size) != 0) return 1;
    text t = {0};
    epoch_row(&t, e);
    int rc = t.failed ? (snprintf(err, err_size, "out of host memory"), 1) : p7bench_results_append(f, t.s, err, err_size);
    free(t.s);
    p7bench_results_close(f);
    return rc;
}

/* Replaces `path` by `content` atomically: a reader sees the old file or the new one. */
static int replace_file(const char *path, const char *content, char *err, size_t err_size)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return snprintf(err, err_size, "cannot create (%s): %s", strerror(errno), tmp), 1;
    int bad = fputs(content, f) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, err_size, "cannot write (%s): %s", strerror(errno), path);
        remove(tmp);
        return 1;
    }
    return 0;
}

int p7bench_file_replace(const char *path, const char *content, char *err, size_t err_size)
{
    return replace_file(path, content, err, err_size);
}

int p7bench_epochs_write(const char *path, const p7bench_cell_result *r, char *err, size_t err_size)
{
    text t = {0};
    put(&t, epochs_header);
    put(&t, "\n");
    for (size_t i = 0; i < r->epoch_count; i++) epoch_row(&t, &r->epochs[i]), put(&t, "\n");
    int rc = t.failed ? (snprintf(err, err_size, "out of host memory"), 1) : replace_file(path, t.s, err, err_size);
    free(t.s);
    return rc;
}

/* The header must be exactly ours: a file of another shape is named, not misread. */
static int check_header(const p7bench_csv *csv, const char *header, const char *path, char *err, size_t err_size)
{
    text got = {0};
    for (size_t i = 0; csv->rows && i < csv->field_counts[0]; i++) {
        if (i) put(&got, ",");
        put(&got, csv->fields[0][i]);
    }
    int same = got.s && strcmp(got.s, header) == 0;
    if (!same)
        snprintf(err, err_size, "%s: the first line is '%.100s', expected '%s'", path, got.s ? got.s : "", header);
    free(got.s);
    return !same;
}

int p7bench_epochs_read(const char *path, p7bench_cell_result *r, char *err, size_t err_size)
{
    p7bench_csv csv;
    if (p7bench_csv_read(path, &csv, err, err_size) != 0) return 1;
    if (check_header(&csv, epochs_header, path, err, err_size) != 0) {
        p7bench_csv_free(&csv);
        return 1;
    }
    free(r->epochs);
    r->epochs = NULL;
    r->epoch_count = 0;
    int rc = 0;
    for (size_t row = 1; row < csv.rows && rc == 0; row++) {
        p7bench_epoch_record e;
        if (csv.field_counts[row] != EC_COUNT || !parse_epoch_row(csv.fields[row], &e)) {
            snprintf(err, err_size, "%s, line %zu: expected %d fields (%s)", path, row + 1, EC_COUNT, epochs_header);
            rc = 1;
            break;
        }
        if (p7bench_cell_result_add_epoch(r, &e) != 0) rc = 1, snprintf(err, err_size, "out of host memory");
    }
    p7bench_csv_free(&csv);
    return rc;
}

int p7bench_reliability_write(const char *path, const p7bench_reliability_bin *bins, size_t count, char *err,
                              size_t err_size)
{
    text t = {0};
    put(&t, reliability_header);
    put(&t, "\n");
    for (size_t i = 0; i < count; i++) {
        put_float(&t, bins[i].lower), put(&t, ","), put_float(&t, bins[i].upper), put(&t, ",");
        put_int(&t, bins[i].count), put(&t, ","), put_float(&t, bins[i].confidence), put(&t, ",");
        put_float(&t, bins[i].accuracy), put(&t, "\n");
    }
    int rc = t.failed ? (snprintf(err, err_size, "out of host memory"), 1) : replace_file(path, t.s, err, err_size);
    free(t.s);
    return rc;
}

int p7bench_reliability_read(const char *path, p7bench_reliability_bin **bins, size_t *count, char *err,
                             size_t err_size)
{
    *bins = NULL;
    *count = 0;
    p7bench_csv csv;
    if (p7bench_csv_read(path, &csv, err, err_size) != 0) return 1;
    if (check_header(&csv, reliability_header, path, err, err_size) != 0) {
        p7bench_csv_free(&csv);
        return 1;
    }
    p7bench_reliability_bin *b = csv.rows > 1 ? calloc(csv.rows - 1, sizeof *b) : NULL;
    int rc = csv.rows > 1 && !b ? (snprintf(err, err_size, "out of host memory"), 1) : 0;
    for (size_t row = 1; row < csv.rows && rc == 0; row++) {
        char **f = csv.fields[row];
        p7bench_reliability_bin *x = &b[row - 1];
        if (csv.field_counts[row] != 5 || !p7bench_parse_double(f[0], &x->lower) ||
            !p7bench_parse_double(f[1], &x->upper) || !p7bench_parse_integer(f[2], &x->count) ||
            !p7bench_parse_double(f[3], &x->confidence) || !p7bench_parse_double(f[4], &x->accuracy)) {
            snprintf(err, err_size, "%s, line %zu: expected 5 numbers (%s)", path, row + 1, reliability_header);
            rc = 1;
        }
    }
    if (rc != 0) free(b);
    else *bins = b, *count = csv.rows ? csv.rows - 1 : 0;
    p7bench_csv_free(&csv);
    return rc;
}

/* ---------------------------------------------------------------- the folder */

static int make_dir(const char *path, char *err, size_t err_size)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) return snprintf(err, err_size, "path too long: %.200s", path), 1;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return snprintf(err, err_size, "cannot create the folder (%s): %s", strerror(errno), p), 1;
        *s = saved;
        if (!saved) break;
    }
    return 0;
}

/* The value of `key` in a canonical text ("key=value\n" lines), or NULL. */
static const char *conf_value(const char *conf, const char *key, char *out, size_t size)
{
    size_t k = strlen(key);
    for (const char *line = conf; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > k && strncmp(line, key, k) == 0 && line[k] == '=') {
            snprintf(out, size, "%.*s", (int)(len - k - 1), line + k + 1);
            return out;
        }
        line += len + (nl ? 1 : 0);
    }
    return NULL;
}

/* Names the first key (in key order) whose value differs between two canonical texts. */
static void name_difference(const char *had, const char *now, const char *path, char *err, size_t err_size)
{
    char a[P7BENCH_VALUE_MAX * 4], b[P7BENCH_VALUE_MAX * 4], key[P7BENCH_KEY_MAX + 1];
    const char *texts[2] = {had, now};
    const char *best = NULL;
    char best_key[P7BENCH_KEY_MAX + 1] = "";
    for (int which = 0; which < 2; which++)
        for (const char *line = texts[which]; *line;) {
            const char *eq = strchr(line, '='), *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            if (eq && (size_t)(eq - line) < sizeof key && eq < line + len) {
                snprintf(key, sizeof key, "%.*s", (int)(eq - line), line);
                const char *va = conf_value(had, key, a, sizeof a), *vb = conf_value(now, key, b, sizeof b);
                int differs = !va || !vb || strcmp(va, vb) != 0;
                /* the study first, then key order */
                int earlier = !best || strcmp(key, "study") == 0 ||
                              (strcmp(best_key, "study") != 0 && strcmp(key, best_key) < 0);
                if (differs && earlier) snprintf(best_key, sizeof best_key, "%s", key), best = best_key;
            }
            line += len + (nl ? 1 : 0);
        }
    if (!best) {
        snprintf(err, err_size, "%s: unreadable; remove it or give --out another folder", path);
        return;
    }
    const char *va = conf_value(had, best_key, a, sizeof a), *vb = conf_value(now, best_key, b, sizeof b);
    snprintf(err, err_size,
             "%s: this folder holds a study run with %s=%s, and this run has %s=%s; give --out another folder, or the "
             "same settings",
             path, best_key, va ? va : "(not set)", best_key, vb ? vb : "(not set)");
}

/* Writes `conf` into `path` when it is empty or new, else checks that it holds the same
 * text; under flock, so two runs starting together agree on one text. */
static int write_or_check_conf(const char *path, const char *conf, char *err, size_t err_size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return snprintf(err, err_size, "cannot open (%s): %s", strerror(errno), path), 1;
    if (flock(fd, LOCK_EX) != 0) {
        snprintf(err, err_size, "cannot lock (%s): %s", strerror(errno), path);
        close(fd);
        return 1;
    }
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0) rc = 1, snprintf(err, err_size, "cannot stat (%s): %s", strerror(errno), path);
    else if (sb.st_size == 0) {
        size_t n = strlen(conf);
        if (write(fd, conf, n) != (ssize_t)n) rc = 1, snprintf(err, err_size, "cannot write (%s): %s", strerror(errno), path);
    } else {
        char *had = calloc((size_t)sb.st_size + 1, 1);
        if (!had) rc = 1, snprintf(err, err_size, "out of host memory");
        else if (pread(fd, had, (size_t)sb.st_size, 0) != sb.st_size)
            rc = 1, snprintf(err, err_size, "cannot read (%s): %s", strerror(errno), path);
        else if (strcmp(had, conf) != 0) rc = 1, name_difference(had, conf, path, err, err_size);
        free(had);
    }
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}

/* The study's settings, without the seed: a rerun with more seeds adds cells to the
 * folder; it does not change them. */
static int study_conf_text(const p7bench_study_plan *plan, char *out, size_t size)
{
    p7bench_config c = plan->config;
    p7bench_config without_seed = {0};
    for (size_t i = 0; i < c.count; i++)
        if (strcmp(c.items[i].key, "seed") != 0) without_seed.items[without_seed.count++] = c.items[i];
    return p7bench_config_text(plan->study, &without_seed, 0, out, size);
}

int p7bench_study_folder_open(const char *dir, const p7bench_study_plan *plan, p7bench_study_folder **out, char *err,
                              size_t err_size)
{
    *out = NULL;
    p7bench_study_folder *f = calloc(1, sizeof *f);
    if (!f) return snprintf(err, err_size, "out of host memory"), 1;
    char path[4200], conf[P7BENCH_SETTINGS_MAX * (P7BENCH_KEY_MAX + P7BENCH_VALUE_MAX + 2) + 64];
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    snprintf(f->study, sizeof f->study, "%s", plan->study);
    f->mode = plan->csv_mode;
    snprintf(path, sizeof path, "%s/cells", dir);
    int rc = make_dir(path, err, err_size);
    if (rc == 0 && study_conf_text(plan, conf, sizeof conf) < 0)
        rc = 1, snprintf(err, err_size, "%s: settings too long", plan->study);
    snprintf(path, sizeof path, "%s/study.conf", dir);
    if (rc == 0) rc = write_or_check_conf(path, conf, err, err_size);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    if (rc == 0) rc = p7bench_results_open(path, p7bench_results_header(plan->csv_mode), &f->results, err, err_size);
    if (rc != 0) {
        free(f);
        return 1;
    }
    *out = f;
    return 0;
}

void p7bench_study_folder_close(p7bench_study_folder *f)
{
    if (!f) return;
    p7bench_results_close(f->results);
    free(f);
}

int p7bench_study_folder_cell(p7bench_study_folder *f, const p7bench_cell *cell, p7bench_cell_paths *p, char *err,
                              size_t err_size)
{
    char conf[P7BENCH_SETTINGS_MAX * (P7BENCH_KEY_MAX + P7BENCH_VALUE_MAX + 2) + 64];
    memset(p, 0, sizeof *p);
    if ((size_t)snprintf(p->dir, sizeof p->dir, "%s/cells/%s", f->dir, cell->id) >= sizeof p->dir)
        return snprintf(err, err_size, "path too long: %.200s", f->dir), 1;
    snprintf(p->conf, sizeof p->conf, "%s/cell.conf", p->dir);
    snprintf(p->epochs_csv, sizeof p->epochs_csv, "%s/epochs.csv", p->dir);
    snprintf(p->console_log, sizeof p->console_log, "%s/console.log", p->dir);
    snprintf(p->checkpoint, sizeof p->checkpoint, "%s/checkpoint.p7", p->dir);
    snprintf(p->reliability_csv, sizeof p->reliability_csv, "%s/reliability.csv", p->dir);
    snprintf(p->result_csv, sizeof p->result_csv, "%s/result.csv", p->dir);
    if (p7bench_config_text(f->study, &cell->config, 0, conf, sizeof conf) < 0)
        return snprintf(err, err_size, "%s: settings too long", cell->id), 1;
    if (make_dir(p->dir, err, err_size) != 0) return 1;
    return write_or_check_conf(p->conf, conf, err, err_size);
}

int p7bench_study_folder_append(p7bench_study_folder *f, const p7bench_cell_result *r, char *err, size_t err_size)
{
    char *row = p7bench_results_row(r, f->mode);
    if (!row) return snprintf(err, err_size, "out of host memory"), 1;
    /* the cell's own copy first: it survives whatever happens to the shared file */
    char path[4200];
    text t = {0};
    put(&t, p7bench_results_header(f->mode));
    put(&t, "\n");
    put(&t, row);
    put(&t, "\n");
    int rc = t.failed ? (snprintf(err, err_size, "out of host memory"), 1) : 0;
    if (rc == 0 && (size_t)snprintf(path, sizeof path, "%s/cells/%s", f->dir, r->cell) >= sizeof path - 16)
        rc = 1, snprintf(err, err_size, "path too long: %.200s", f->dir);
    if (rc == 0) rc = make_dir(path, err, err_size);
    if (rc == 0) strcat(path, "/result.csv"), rc = replace_file(path, t.s, err, err_size);
    free(t.s);
    if (rc == 0) rc = p7bench_results_append(f->results, row, err, err_size);
    free(row);
    return rc;
}

const char *p7bench_study_folder_dir(const p7bench_study_folder *f) { return f->dir; }
