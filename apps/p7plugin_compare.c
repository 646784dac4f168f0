/* `p7plugin compare`. The reference file (docs/plugins.md, "Compare with PyTorch"):
 *
 *   {"plugin": "signsgd",                       optional: must match the plugin's name
 *    "hparams": "lr=0.01,beta=0.9",             optional: as p7bench --hparams
 *    "params": [[0.5, -1.0, ...], [...]],       each parameter's initial values
 *    "steps": [{"grads": [[...], null],         per parameter (null: no gradient)
 *               "noise": [[...], [...]],        weight-sampling plugins: the standard normal draws
 *               "params": [[...], [...]],       expected after the step
 *               "state": {"momentum": [[...], [...]]}},   optional: expected slots, by name
 *              ...]}
 *
 * Every shape is checked against the parameters before the device opens. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/p7.h"
#include "p7plugin_compare.h"
#include "p7plugin_json.h"

#define MAX_FILE_BYTES ((size_t)1 << 30)

typedef struct reference {
    const char *path;
    json_value root;
    const json_value *params, *steps;
    const char *hparams;
    size_t nparams;
    size_t *sizes;
} reference;

/* ---- reading and checking the file ---- */

static char *read_file(const char *path, size_t *size, FILE *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(out, "p7plugin compare: cannot open the reference file %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    while (text) {
        n += fread(text + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap >= MAX_FILE_BYTES) {
            fprintf(out, "p7plugin compare: %s is larger than 1 GiB; not a reference file?\n", path);
            free(text);
            text = NULL;
            break;
        }
        char *grown = realloc(text, cap * 2);
        if (!grown) {
            free(text);
            text = NULL;
        }
        text = grown;
        cap *= 2;
    }
    if (text && ferror(f)) {
        fprintf(out, "p7plugin compare: cannot read %s\n", path);
        free(text);
        text = NULL;
    } else if (!text && n < MAX_FILE_BYTES) {
        fprintf(out, "p7plugin compare: out of memory reading %s\n", path);
    }
    fclose(f);
    *size = n;
    return text;
}

/* An array of `want` numbers (want 0: any nonzero count). */
static int check_vector(const reference *ref, const json_value *v, const char *where, size_t want, FILE *out)
{
    if (!v || v->kind != JSON_ARRAY) {
        fprintf(out, "p7plugin compare: %s: %s must be an array of numbers, found %s\n", ref->path, where,
                v ? json_kind_name(v->kind) : "nothing");
        return 0;
    }
    for (size_t i = 0; i < v->count; i++)
        if (v->items[i].kind != JSON_NUMBER) {
            fprintf(out, "p7plugin compare: %s: %s[%zu] must be a number, found %s\n", ref->path, where, i,
                    json_kind_name(v->items[i].kind));
            return 0;
        }
    if (want ? v->count != want : v->count == 0) {
        if (want)
            fprintf(out, "p7plugin compare: %s: %s has %zu numbers; the parameter has %zu\n", ref->path, where,
                    v->count, want);
        else fprintf(out, "p7plugin compare: %s: %s is empty\n", ref->path, where);
        return 0;
    }
    return 1;
}

/* One array per parameter, each of that parameter's size (null allowed when nullable). */
static int check_per_param(const reference *ref, const json_value *v, const char *where, int nullable, FILE *out)
{
    if (!v || v->kind != JSON_ARRAY || v->count != ref->nparams) {
        fprintf(out, "p7plugin compare: %s: %s must be an array of %zu arrays (one per parameter), found %s", ref->path,
                where, ref->nparams, v ? json_kind_name(v->kind) : "nothing");
        if (v && v->kind == JSON_ARRAY) fprintf(out, " of %zu", v->count);
        fprintf(out, "\n");
        return 0;
    }
    for (size_t i = 0; i < ref->nparams; i++) {
        if (nullable && v->items[i].kind == JSON_NULL) continue;
        char item[160];
        snprintf(item, sizeof item, "%s[%zu]", where, i);
        if (!check_vector(ref, &v->items[i], item, ref->sizes[i], out)) return 0;
    }
    return 1;
}

static int load_reference(reference *ref, const char *path, int samples, FILE *out)
{
    memset(ref, 0, sizeof *ref);
    ref->path = path;
    size_t size;
    char *text = read_file(path, &size, out);
    if (!text) return 0;
    char err[256];
    int ok = json_parse(text, size, &ref->root, err, sizeof err);
    free(text);
    if (!ok) {
        fprintf(out, "p7plugin compare: %s: not valid JSON: %s\n", path, err);
        return 0;
    }
    if (ref->root.kind != JSON_OBJECT) {
        fprintf(out, "p7plugin compare: %s: the document must be an object with \"params\" and \"steps\", found %s\n",
                path, json_kind_name(ref->root.kind));
        return 0;
    }
    const json_value *h = json_get(&ref->root, "hparams");
    if (h && h->kind != JSON_STRING) {
        fprintf(out, "p7plugin compare: %s: \"hparams\" must be a string such as \"lr=0.01,beta=0.9\", found %s\n",
                path, json_kind_name(h->kind));
        return 0;
    }
    ref->hparams = h ? h->string : NULL;
    ref->params = json_get(&ref->root, "params");
    if (!ref->params || ref->params->kind != JSON_ARRAY || ref->params->count == 0) {
        fprintf(out, "p7plugin compare: %s: \"params\" must be a non-empty array of arrays (each parameter's initial "
                     "values)\n",
                path);
        return 0;
    }
    ref->nparams = ref->params->count;
    ref->sizes = calloc(ref->nparams, sizeof *ref->sizes);
    if (!ref->sizes) return 0;
    for (size_t i = 0; i < ref->nparams; i++) {
        char where[64];
        snprintf(where, sizeof where, "params[%zu]", i);
        if (!check_vector(ref, &ref->params->items[i], where, 0, out)) return 0;
        ref->sizes[i] = ref->params->items[i].count;
    }
    ref->steps = json_get(&ref->root, "steps");
    if (!ref->steps || ref->steps->kind != JSON_ARRAY || ref->steps->count == 0) {
        fprintf(out, "p7plugin compare: %s: \"steps\" must be a non-empty array of objects\n", path);
        return 0;
    }
    for (size_t k = 0; k < ref->steps->count; k++) {
        const json_value *s = &ref->steps->items[k];
        char where[64];
        if (s->kind != JSON_OBJECT) {
            fprintf(out, "p7plugin compare: %s: steps[%zu] must be an object, found %s\n", path, k,
                    json_kind_name(s->kind));
            return 0;
        }
        snprintf(where, sizeof where, "steps[%zu].grads", k);
        if (!check_per_param(ref, json_get(s, "grads"), where, 1, out)) return 0;
        snprintf(where, sizeof where, "steps[%zu].params", k);
        if (!check_per_param(ref, json_get(s, "params"), where, 0, out)) return 0;
        const json_value *noise = json_get(s, "noise");
        if (samples && !noise) {
            fprintf(out, "p7plugin compare: %s: steps[%zu] has no \"noise\": this plugin samples weights, so each "
                         "step needs the standard normal draws the reference used\n",
                    path, k);
            return 0;
        }
        snprintf(where, sizeof where, "steps[%zu].noise", k);
        if (noise && !samples) {
            fprintf(out, "p7plugin compare: %s: steps[%zu] has \"noise\", but this plugin does not sample weights\n",
                    path, k);
            return 0;
        }
        if (noise && !check_per_param(ref, noise, where, 0, out)) return 0;
        const json_value *state = json_get(s, "state");
        if (state && state->kind != JSON_OBJECT) {
            fprintf(out, "p7plugin compare: %s: steps[%zu].state must be an object of slot names, found %s\n", path, k,
                    json_kind_name(state->kind));
            return 0;
        }
        for (size_t m = 0; state && m < state->count; m++) {
            char slot[160];
            snprintf(slot, sizeof slot, "steps[%zu].state.%.60s", k, state->keys[m]);
            if (!check_per_param(ref, &state->items[m], slot, 0, out)) return 0;
        }
    }
    return 1;
}

static void free_reference(reference *ref)
{
    json_free(&ref->root);
    free(ref->sizes);
}

/* ---- comparing ---- */

static int64_t ulps_between(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return oa > ob ? oa - ob : ob - oa;
}

typedef struct difference {
    double worst;    /* the largest |p7 - reference| / max(1, |reference|), inf for a NaN mismatch */
    double abs_diff; /* |p7 - reference| there */
    int64_t ulps;    /* the distance there in float32 ulps (near zero, ulps mean little) */
    size_t param, index;
    float got;
    double want;
} difference;

/* Folds tensor `t` (parameter `param`) against the reference array into d. */
static p7_status compare_tensor(const p7_tensor *t, const json_value *want, size_t param, difference *d)
{
    size_t n = want->count;
    float *got = malloc(n * sizeof *got);
    if (!got) return P7_ERROR_OUT_OF_MEMORY;
    p7_status st = p7_tensor_download(t, got, n);
    for (size_t i = 0; st == P7_SUCCESS && i < n; i++) {
        double w = want->items[i].number, g = got[i];
        double score = isnan(w) || isnan(g) ? (isnan(w) && isnan(g) ? 0.0 : INFINITY)
                       : w == g             ? 0.0
                                            : fabs(g - w) / fmax(1.0, fabs(w));
        if (score > d->worst || (d->worst == 0 && d->param == SIZE_MAX)) {
            d->worst = score;
            d->ulps = isnan(w) || isnan(g) ? 0 : ulps_between(got[i], (float)w);
            d->abs_diff = isnan(score) ? NAN : fabs(g - w);
            d->param = param;
            d->index = i;
            d->got = got[i];
            d->want = w;
        }
    }
    free(got);
    return st;
}

static void print_difference(FILE *out, const char *what, const difference *d)
{
    if (d->worst == 0) {
        fprintf(out, "%s equal", what);
        return;
    }
    fprintf(out, "%s max |diff| %.3g (%lld ulp) at parameter %zu [%zu]: p7 %.9g, reference %.9g", what, d->abs_diff,
            (long long)d->ulps, d->param, d->index, (double)d->got, d->want);
}

static p7_status upload_rows(p7_device *dev, const json_value *rows, size_t i, p7_tensor **out)
{
    const json_value *row = &rows->items[i];
    float *v = malloc(row->count * sizeof *v);
    if (!v) return P7_ERROR_OUT_OF_MEMORY;
    for (size_t k = 0; k < row->count; k++) v[k] = (float)row->items[k].number;
    int64_t n = (int64_t)row->count;
    p7_status st = *out ? P7_SUCCESS : p7_tensor_create(dev, 1, &n, out);
    if (st == P7_SUCCESS) st = p7_tensor_upload(*out, v, row->count);
    free(v);
    return st;
}

static p7_status set_grads(const reference *ref, p7_tensor **params, const json_value *grads)
{
    p7_status st = P7_SUCCESS;
    for (size_t i = 0; i < ref->nparams && st == P7_SUCCESS; i++) {
        if (grads->items[i].kind == JSON_NULL) {
            p7_tensor_zero_grad(params[i]);
            continue;
        }
        float *g = malloc(ref->sizes[i] * sizeof *g);
        if (!g) return P7_ERROR_OUT_OF_MEMORY;
        for (size_t k = 0; k < ref->sizes[i]; k++) g[k] = (float)grads->items[i].items[k].number;
        st = p7_tensor_set_grad(params[i], g, ref->sizes[i]);
        free(g);
    }
    return st;
}

/* One step of the file; prints its line; *beyond set when a value does not match. */
static p7_status run_step(const reference *ref, p7_optimizer *opt, p7_device *dev, p7_tensor **params, size_t k,
                          double tolerance, FILE *out, int *beyond, difference *overall, size_t *overall_step)
{
    const json_value *s = &ref->steps->items[k];
    const json_value *noise = json_get(s, "noise");
    p7_status st = P7_SUCCESS;
    p7_tensor **eps = NULL;
    if (noise) {
        eps = calloc(ref->nparams, sizeof *eps);
        if (!eps) return P7_ERROR_OUT_OF_MEMORY;
        for (size_t i = 0; i < ref->nparams && st == P7_SUCCESS; i++) st = upload_rows(dev, noise, i, &eps[i]);
        if (st == P7_SUCCESS) st = p7_optimizer_sample_noise(opt, eps);
    }
    if (st == P7_SUCCESS) st = set_grads(ref, params, json_get(s, "grads"));
    if (st == P7_SUCCESS && noise) st = p7_optimizer_restore(opt, 1);
    if (st == P7_SUCCESS) st = p7_optimizer_step(opt);
    for (size_t i = 0; eps && i < ref->nparams; i++) p7_tensor_release(eps[i]);
    free(eps);
    if (st != P7_SUCCESS) return st;

    difference d = {0, 0, 0, SIZE_MAX, 0, 0, 0};
    const json_value *want = json_get(s, "params");
    for (size_t i = 0; i < ref->nparams && st == P7_SUCCESS; i++) st = compare_tensor(params[i], &want->items[i], i, &d);
    if (st != P7_SUCCESS) return st;
    fprintf(out, "step %zu: ", k + 1);
    print_difference(out, "weights", &d);
    difference all = d;
    const json_value *state = json_get(s, "state");
    for (size_t m = 0; state && m < state->count && st == P7_SUCCESS; m++) {
        difference ds = {0, 0, 0, SIZE_MAX, 0, 0, 0};
        for (size_t i = 0; i < ref->nparams && st == P7_SUCCESS; i++) {
            p7_tensor *t;
            st = p7_optimizer_state_by_name(opt, i, state->keys[m], &t);
            if (st == P7_SUCCESS) st = compare_tensor(t, &state->items[m].items[i], i, &ds);
        }
        if (st != P7_SUCCESS) break;
        char what[96];
        snprintf(what, sizeof what, "; slot '%.60s'", state->keys[m]);
        print_difference(out, what, &ds);
        if (ds.worst > all.worst) all = ds;
    }
    fprintf(out, "\n");
    if (st != P7_SUCCESS) return st;
    if (!(all.worst <= tolerance)) *beyond = 1;
    if (all.worst > overall->worst || (overall->param == SIZE_MAX && all.param != SIZE_MAX)) {
        *overall = all;
        *overall_step = k + 1;
    }
    return P7_SUCCESS;
}

int p7plugin_compare(const char *plugin, const char *reference_path, const char *device_spec, double tolerance,
                     FILE *out)
{
    p7_optimizer_plugin *pl;
    if (p7_optimizer_plugin_open(plugin, &pl) != P7_SUCCESS) {
        fprintf(out, "p7plugin compare: %s\n", p7_last_error());
        return -1;
    }
    const p7_opt_plugin *vt = p7_optimizer_plugin_table(pl);
    reference ref;
    int ok = load_reference(&ref, reference_path, (vt->caps & P7_OPT_CAP_SAMPLE) != 0, out);
    const json_value *name = ok ? json_get(&ref.root, "plugin") : NULL;
    if (name && (name->kind != JSON_STRING || strcmp(name->string, vt->name) != 0)) {
        fprintf(out, "p7plugin compare: %s was written for plugin \"%s\"; %s is \"%s\"\n", reference_path,
                name->kind == JSON_STRING ? name->string : "(not a string)", p7_optimizer_plugin_path(pl), vt->name);
        ok = 0;
    }
    if (ok && p7_optimizer_plugin_check_hparams(pl, ref.hparams) != P7_SUCCESS) {
        fprintf(out, "p7plugin compare: %s: \"hparams\": %s\n", reference_path, p7_last_error());
        ok = 0;
    }
    p7_device *dev = NULL;
    if (ok && p7_device_open(device_spec, NULL, &dev) != P7_SUCCESS) {
        fprintf(out, "p7plugin compare: %s\n", p7_last_error());
        ok = 0;
    }
    p7_tensor **params = ok ? calloc(ref.nparams, sizeof *params) : NULL;
    p7_optimizer *opt = NULL;
    p7_status st = P7_SUCCESS;
    int beyond = 0;
    difference overall = {0, 0, 0, SIZE_MAX, 0, 0, 0};
    size_t overall_step = 0;
    if (ok) {
        for (size_t i = 0; i < ref.nparams && st == P7_SUCCESS; i++) st = upload_rows(dev, ref.params, i, &params[i]);
        p7_optimizer_options o = {0};
        o.hparams = ref.hparams;
        if (st == P7_SUCCESS)
            st = p7_optimizer_create(dev, p7_optimizer_plugin_path(pl), params, ref.nparams, &o, &opt);
        if (st == P7_SUCCESS)
            fprintf(out, "p7plugin compare %s (%s) with %s: %zu parameters, %zu steps, hparams \"%s\"\n",
                    p7_optimizer_plugin_path(pl), vt->name, reference_path, ref.nparams, ref.steps->count,
                    ref.hparams ? ref.hparams : "");
        for (size_t k = 0; k < ref.steps->count && st == P7_SUCCESS; k++)
            st = run_step(&ref, opt, dev, params, k, tolerance, out, &beyond, &overall, &overall_step);
        if (st != P7_SUCCESS) {
            fprintf(out, "p7plugin compare: %s\n", p7_last_error());
            ok = 0;
        }
    }
    if (ok && beyond)
        fprintf(out,
                "p7plugin compare: beyond the tolerance %g: largest difference at step %zu, parameter %zu [%zu]: p7 "
                "%.9g, reference %.9g\n",
                tolerance, overall_step, overall.param, overall.index, (double)overall.got, overall.want);
    else if (ok)
        fprintf(out, "p7plugin compare: every value within the tolerance %g (largest relative difference %.3g, step "
                "%zu)\n",
                tolerance, overall.worst, overall_step);
    p7_optimizer_destroy(opt);
    for (size_t i = 0; params && i < ref.nparams; i++) p7_tensor_release(params[i]);
    free(params);
    p7_device_close(dev);
    free_reference(&ref);
    p7_optimizer_plugin_close(pl);
    return ok ? beyond : -1;
}
