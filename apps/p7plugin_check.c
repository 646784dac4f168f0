/* `p7plugin check`: drives a plugin through the public API on a fixed fixture (two
 * parameters of 6 and 5 elements, three steps of fixed gradients and, for plugins that
 * sample weights, fixed noise) and reports each property a plugin must have. Results are
 * compared bit for bit: the same plugin on the same device must reproduce itself exactly,
 * which is what makes checkpoints and seeds mean anything. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/p7.h"
#include "p7plugin_check.h"

#define NPARAMS 2
#define TOTAL 11 /* elements over both parameters */
#define STEPS 3
#define NAN_ELEMENT 2 /* of parameter 0 */

static const size_t SIZES[NPARAMS] = {6, 5};
static const float THETA0[TOTAL] = {0.5f, -1.0f, 1.5f, -0.25f, 0.75f, 2.0f, 0.3f, -0.6f, 0.9f, -1.2f, 0.05f};
static const float GRADS[STEPS][TOTAL] = {
    {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f, 0.25f, -0.15f, 0.05f, 0.35f, -0.45f},
    {-0.05f, 0.15f, -0.25f, 0.35f, -0.45f, 0.55f, 0.2f, 0.1f, -0.3f, 0.4f, -0.2f},
    {0.2f, 0.2f, -0.1f, -0.1f, 0.05f, 0.01f, -0.35f, 0.3f, 0.15f, -0.05f, 0.1f},
};
static const float NOISE[STEPS][TOTAL] = {
    {0.3f, -1.2f, 0.9f, 0.05f, -0.6f, 1.5f, -0.4f, 0.8f, -1.1f, 0.2f, 0.7f},
    {-0.7f, 0.4f, -0.1f, 1.1f, 0.9f, -0.3f, 0.6f, -0.9f, 0.1f, 1.3f, -0.5f},
    {1.0f, 0.5f, -1.0f, 0.5f, -0.5f, 0.25f, -0.2f, 0.3f, 0.4f, -0.8f, 1.2f},
};

typedef enum verdict { PASS, FAIL, SKIP } verdict;

typedef struct checker {
    FILE *out;
    const char *path; /* the plugin file */
    const p7_opt_plugin *vt;
    p7_device *device;
    int failed;
    int created;       /* the optimizer could be created with its defaults */
    int deterministic; /* the comparisons between instances below mean something */
} checker;

static void report(checker *c, verdict v, const char *item, const char *fmt, ...)
{
    static const char *const words[] = {"ok", "FAIL", "skip"};
    char detail[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    fprintf(c->out, "  %-4s  %-24s %s\n", words[v], item, detail);
    if (v == FAIL) c->failed++;
}

/* ---- the fixture: an optimizer over two parameters ---- */

typedef struct run {
    p7_tensor *params[NPARAMS];
    p7_optimizer *opt;
} run;

static void run_close(run *r)
{
    p7_optimizer_destroy(r->opt);
    for (int i = 0; i < NPARAMS; i++) p7_tensor_release(r->params[i]);
    memset(r, 0, sizeof *r);
}

/* theta: TOTAL values (NULL: the fixture's). hparams: as p7_optimizer_options.hparams. */
static p7_status run_open(checker *c, run *r, const char *hparams, const float *theta)
{
    memset(r, 0, sizeof *r);
    p7_status st = P7_SUCCESS;
    size_t at = 0;
    for (int i = 0; i < NPARAMS && st == P7_SUCCESS; at += SIZES[i], i++) {
        int64_t n = (int64_t)SIZES[i];
        st = p7_tensor_create(c->device, 1, &n, &r->params[i]);
        if (st == P7_SUCCESS) st = p7_tensor_upload(r->params[i], (theta ? theta : THETA0) + at, SIZES[i]);
    }
    p7_optimizer_options o = {0};
    o.hparams = hparams;
    o.seed = 1;
    if (st == P7_SUCCESS) st = p7_optimizer_create(c->device, c->path, r->params, NPARAMS, &o, &r->opt);
    if (st != P7_SUCCESS) run_close(r);
    return st;
}

/* Training step t of the fixture. with_grad: bit i set when parameter i gets a gradient.
 * nan: poison element NAN_ELEMENT of parameter 0's gradient. A weight-sampling plugin
 * first samples with the fixture's noise and folds the gradient in at restore. */
static p7_status run_step(run *r, int t, unsigned with_grad, int nan)
{
    p7_tensor *eps[NPARAMS] = {0};
    int samples = p7_optimizer_samples_weights(r->opt);
    p7_status st = P7_SUCCESS;
    size_t at = 0;
    for (int i = 0; i < NPARAMS && samples && st == P7_SUCCESS; at += SIZES[i], i++) {
        int64_t n = (int64_t)SIZES[i];
        st = p7_tensor_create(p7_tensor_device(r->params[i]), 1, &n, &eps[i]);
        if (st == P7_SUCCESS) st = p7_tensor_upload(eps[i], NOISE[t] + at, SIZES[i]);
    }
    if (samples && st == P7_SUCCESS) st = p7_optimizer_sample_noise(r->opt, eps);
    at = 0;
    for (int i = 0; i < NPARAMS && st == P7_SUCCESS; at += SIZES[i], i++) {
        if (!(with_grad & (1u << i))) {
            p7_tensor_zero_grad(r->params[i]);
            continue;
        }
        float g[TOTAL];
        memcpy(g, GRADS[t] + at, SIZES[i] * sizeof *g);
        if (nan && i == 0) g[NAN_ELEMENT] = NAN;
        st = p7_tensor_set_grad(r->params[i], g, SIZES[i]);
    }
    if (samples && st == P7_SUCCESS) st = p7_optimizer_restore(r->opt, 1);
    if (st == P7_SUCCESS) st = p7_optimizer_step(r->opt);
    for (int i = 0; i < NPARAMS; i++) p7_tensor_release(eps[i]);
    return st;
}

static p7_status run_steps(run *r, int from, int to)
{
    p7_status st = P7_SUCCESS;
    for (int t = from; t < to && st == P7_SUCCESS; t++) st = run_step(r, t, (1u << NPARAMS) - 1, 0);
    return st;
}

/* Everything the optimizer holds, in a fixed order: per parameter its values, then each
 * slot's. *values is malloc'd (TOTAL * (1 + slots) floats). */
static p7_status run_snapshot(checker *c, const run *r, float **values)
{
    size_t per = 1 + c->vt->slot_count;
    float *v = malloc(TOTAL * per * sizeof *v);
    if (!v) return P7_ERROR_OUT_OF_MEMORY;
    p7_status st = P7_SUCCESS;
    float *at = v;
    for (int i = 0; i < NPARAMS && st == P7_SUCCESS; i++)
        for (size_t s = 0; s < per && st == P7_SUCCESS; s++, at += SIZES[i]) {
            const p7_tensor *t = s == 0 ? r->params[i] : p7_optimizer_state(r->opt, (size_t)i, (unsigned)(s - 1));
            if (t) st = p7_tensor_download(t, at, SIZES[i]);
            else memset(at, 0, SIZES[i] * sizeof *at); /* a slot not in use with these hyperparameters */
        }
    if (st != P7_SUCCESS) {
        free(v);
        v = NULL;
    }
    *values = v;
    return st;
}

/* "parameter 1 slot 'momentum' [3]" for position k of a snapshot. */
static const char *describe(const checker *c, size_t k, char *buf, size_t size)
{
    size_t per = 1 + c->vt->slot_count;
    for (int i = 0; i < NPARAMS; i++) {
        if (k < SIZES[i] * per) {
            size_t s = k / SIZES[i], e = k % SIZES[i];
            if (s == 0) snprintf(buf, size, "weight [%zu] of parameter %d", e, i);
            else
                snprintf(buf, size, "slot '%s' [%zu] of parameter %d", c->vt->slot_names[s - 1], e, i);
            return buf;
        }
        k -= SIZES[i] * per;
    }
    snprintf(buf, size, "element %zu", k);
    return buf;
}

/* The first position where a and b differ bit for bit, or -1. */
static long first_difference(const float *a, const float *b, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (memcmp(&a[k], &b[k], sizeof a[k]) != 0) return (long)k;
    return -1;
}

static size_t snapshot_size(const checker *c) { return TOTAL * (1 + c->vt->slot_count); }

/* ---- the checks ---- */

static void check_schema(checker *c, const p7_optimizer_plugin *pl)
{
    const p7_opt_plugin *vt = c->vt;
    for (uint32_t i = 0; i < vt->hparam_count; i++) {
        char text[160];
        snprintf(text, sizeof text, "%.60s=%.17g", vt->hparams[i].name, vt->hparams[i].default_value);
        if (p7_optimizer_plugin_check_hparams(pl, text) != P7_SUCCESS) {
            report(c, FAIL, "schema", "the default of '%s' (%g) is outside its own range: %s", vt->hparams[i].name,
                   vt->hparams[i].default_value, p7_last_error());
            return;
        }
    }
    report(c, PASS, "schema", "%u hyperparameters, each default inside its range", (unsigned)vt->hparam_count);
}

static void check_step(checker *c)
{
    run a, b;
    float *va = NULL, *vb = NULL;
    p7_status st = run_open(c, &a, NULL, NULL);
    if (st == P7_SUCCESS) {
        st = run_open(c, &b, NULL, NULL);
        if (st != P7_SUCCESS) run_close(&a);
    }
    if (st != P7_SUCCESS) {
        report(c, FAIL, "step", "could not create the optimizer with its defaults: %s", p7_last_error());
        return;
    }
    c->created = 1;
    for (int t = 0; t < STEPS && st == P7_SUCCESS; t++) {
        st = run_step(&a, t, 3, 0);
        if (st == P7_SUCCESS) st = run_step(&b, t, 3, 0);
        if (st == P7_SUCCESS) st = run_snapshot(c, &a, &va);
        if (st == P7_SUCCESS) st = run_snapshot(c, &b, &vb);
        if (st != P7_SUCCESS) {
            report(c, FAIL, "step", "step %d failed: %s", t + 1, p7_last_error());
            break;
        }
        char where[128];
        for (size_t k = 0; k < snapshot_size(c); k++)
            if (!isfinite(va[k])) {
                report(c, FAIL, "step", "step %d on finite gradients left %s = %g (not finite)", t + 1,
                       describe(c, k, where, sizeof where), (double)va[k]);
                st = P7_ERROR_PLUGIN;
                break;
            }
        long d = st == P7_SUCCESS ? first_difference(va, vb, snapshot_size(c)) : -1;
        if (d >= 0) {
            report(c, FAIL, "deterministic",
                   "two identical runs differ at step %d: %s is %.9g in one and %.9g in the other (state shared "
                   "between instances, uninitialised memory, or unseeded randomness?)",
                   t + 1, describe(c, (size_t)d, where, sizeof where), (double)va[d], (double)vb[d]);
            st = P7_ERROR_PLUGIN;
        }
        free(va);
        free(vb);
        va = vb = NULL;
    }
    if (st == P7_SUCCESS) {
        c->deterministic = 1;
        report(c, PASS, "step", "%d steps on fixed gradients, every weight and slot finite", STEPS);
        report(c, PASS, "deterministic", "a second instance gives the same %d steps bit for bit", STEPS);
    }
    run_close(&a);
    run_close(&b);
}

/* Later checks compare two instances: without a deterministic step a difference would
 * blame them for the step's fault. */
static int needs_deterministic_step(checker *c, const char *item)
{
    if (c->deterministic) return 1;
    report(c, SKIP, item, "needs a finite, deterministic step (see above)");
    return 0;
}

static int needs_an_optimizer(checker *c, const char *item)
{
    if (c->created) return 1;
    report(c, SKIP, item, "needs an optimizer created with the defaults (see above)");
    return 0;
}

static void check_save_load(checker *c)
{
    if (!needs_deterministic_step(c, "save/load")) return;
    run a, b;
    float theta1[TOTAL], *want = NULL, *got = NULL;
    FILE *f = tmpfile();
    if (!f) {
        report(c, SKIP, "save/load", "no temporary file for the state");
        return;
    }
    p7_status st = run_open(c, &a, NULL, NULL);
    if (st != P7_SUCCESS) {
        fclose(f);
        report(c, FAIL, "save/load", "could not create the optimizer: %s", p7_last_error());
        return;
    }
    /* a: step 1, save, steps 2-3.  b: a's weights after step 1, load, steps 2-3. */
    st = run_steps(&a, 0, 1);
    for (int i = 0, at = 0; i < NPARAMS && st == P7_SUCCESS; at += (int)SIZES[i], i++)
        st = p7_tensor_download(a.params[i], theta1 + at, SIZES[i]);
    if (st == P7_SUCCESS) st = p7_optimizer_save_stream(a.opt, f);
    if (st == P7_SUCCESS) st = run_steps(&a, 1, STEPS);
    if (st == P7_SUCCESS) st = run_snapshot(c, &a, &want);
    run_close(&a);
    if (st != P7_SUCCESS) {
        fclose(f);
        report(c, FAIL, "save/load", "saving after step 1 failed: %s", p7_last_error());
        return;
    }
    rewind(f);
    st = run_open(c, &b, NULL, theta1);
    if (st == P7_SUCCESS) st = p7_optimizer_load_stream(b.opt, f);
    if (st == P7_SUCCESS) st = run_steps(&b, 1, STEPS);
    if (st == P7_SUCCESS) st = run_snapshot(c, &b, &got);
    if (st != P7_SUCCESS) report(c, FAIL, "save/load", "loading the state saved after step 1 failed: %s", p7_last_error());
    else {
        long d = first_difference(want, got, snapshot_size(c));
        char where[128];
        if (d >= 0)
            report(c, FAIL, "save/load",
                   "saved after step 1, loaded and stepped on: %s after step %d is %.9g; continuing without the "
                   "round trip gives %.9g (save/load loses state)",
                   describe(c, (size_t)d, where, sizeof where), STEPS, (double)got[d], (double)want[d]);
        else
            report(c, PASS, "save/load", "saved after step 1, loaded: steps 2-%d bit-identical to continuing", STEPS);
    }
    run_close(&b);
    free(want);
    free(got);
    fclose(f);
}

/* A value that differs from the default and is valid for hyperparameter `h`, or NAN. */
static double other_value(const p7_optimizer_plugin *pl, const p7_opt_hparam *h)
{
    double d = h->default_value;
    const double candidates[] = {d * 0.5, d * 2, d + 1, d - 1, 0.5 * (h->min + h->max), h->min, h->max};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        double v = candidates[i];
        char text[160];
        snprintf(text, sizeof text, "%.60s=%.17g", h->name, v);
        if (isfinite(v) && v != d && p7_optimizer_plugin_check_hparams(pl, text) == P7_SUCCESS) return v;
    }
    return NAN;
}

static void check_set_hparam(checker *c, const p7_optimizer_plugin *pl)
{
    if (!needs_deterministic_step(c, "set_hparam")) return;
    const p7_opt_hparam *h = NULL;
    for (uint32_t i = 0; i < c->vt->hparam_count && !h; i++)
        if (strcmp(c->vt->hparams[i].name, "lr") == 0) h = &c->vt->hparams[i];
    for (uint32_t i = 0; i < c->vt->hparam_count && !h; i++)
        if (c->vt->hparams[i].kind == P7_OPT_REAL) h = &c->vt->hparams[i];
    double v = h ? other_value(pl, h) : NAN;
    if (!h || isnan(v)) {
        report(c, SKIP, "set_hparam", "no real hyperparameter with a second valid value to set");
        return;
    }
    /* created with name=v must equal created with the default, then set to v */
    char text[160];
    snprintf(text, sizeof text, "%.60s=%.17g", h->name, v);
    run direct, later;
    float *want = NULL, *got = NULL;
    p7_status st = run_open(c, &direct, text, NULL);
    if (st == P7_SUCCESS) st = run_steps(&direct, 0, STEPS);
    if (st == P7_SUCCESS) st = run_snapshot(c, &direct, &want);
    if (st == P7_SUCCESS) run_close(&direct);
    if (st == P7_SUCCESS) st = run_open(c, &later, NULL, NULL);
    if (st == P7_SUCCESS) {
        st = p7_optimizer_set(later.opt, h->name, v);
        if (st == P7_SUCCESS) st = run_steps(&later, 0, STEPS);
        if (st == P7_SUCCESS) st = run_snapshot(c, &later, &got);
        run_close(&later);
    }
    if (st != P7_SUCCESS) report(c, FAIL, "set_hparam", "with %s = %g: %s", h->name, v, p7_last_error());
    else {
        long d = first_difference(want, got, snapshot_size(c));
        char where[128];
        if (d >= 0)
            report(c, FAIL, "set_hparam",
                   "set %s = %g after create: %s after step %d is %.9g, but created with %s = %g it is %.9g "
                   "(set_hparam does not take effect)",
                   h->name, v, describe(c, (size_t)d, where, sizeof where), STEPS, (double)got[d], h->name, v,
                   (double)want[d]);
        else report(c, PASS, "set_hparam", "set %s = %g after create equals creating with it", h->name, v);
    }
    run_close(&direct);
    free(want);
    free(got);
}

static void check_sample_restore(checker *c)
{
    if (!(c->vt->caps & P7_OPT_CAP_SAMPLE)) {
        report(c, SKIP, "sample/restore", "the plugin does not sample weights");
        return;
    }
    if (!needs_deterministic_step(c, "sample/restore")) return;
    run r;
    p7_tensor *eps[NPARAMS] = {0};
    float mean[TOTAL], sampled[TOTAL], back[TOTAL];
    p7_status st = run_open(c, &r, NULL, NULL);
    if (st == P7_SUCCESS) st = run_steps(&r, 0, 1); /* from a stepped state, not only the initial one */
    size_t at = 0;
    for (int i = 0; i < NPARAMS && st == P7_SUCCESS; at += SIZES[i], i++) {
        int64_t n = (int64_t)SIZES[i];
        st = p7_tensor_download(r.params[i], mean + at, SIZES[i]);
        if (st == P7_SUCCESS) st = p7_tensor_create(c->device, 1, &n, &eps[i]);
        if (st == P7_SUCCESS) st = p7_tensor_upload(eps[i], NOISE[1] + at, SIZES[i]);
    }
    if (st == P7_SUCCESS) st = p7_optimizer_sample_noise(r.opt, eps);
    at = 0;
    for (int i = 0; i < NPARAMS && st == P7_SUCCESS; at += SIZES[i], i++)
        st = p7_tensor_download(r.params[i], sampled + at, SIZES[i]);
    if (st == P7_SUCCESS) st = p7_optimizer_restore(r.opt, 0);
    at = 0;
    for (int i = 0; i < NPARAMS && st == P7_SUCCESS; at += SIZES[i], i++)
        st = p7_tensor_download(r.params[i], back + at, SIZES[i]);
    if (st != P7_SUCCESS) report(c, FAIL, "sample/restore", "%s", p7_last_error());
    else if (first_difference(mean, sampled, TOTAL) < 0)
        report(c, FAIL, "sample/restore", "sample with nonzero noise left every weight at the mean");
    else {
        long d = first_difference(mean, back, TOTAL);
        if (d >= 0)
            report(c, FAIL, "sample/restore", "after sample and restore, weight %ld is %.9g; the mean was %.9g", d,
                   (double)back[d], (double)mean[d]);
        else report(c, PASS, "sample/restore", "restore puts back the mean bit for bit");
    }
    for (int i = 0; i < NPARAMS; i++) p7_tensor_release(eps[i]);
    run_close(&r);
}

static void check_no_gradient(checker *c)
{
    if (!needs_an_optimizer(c, "no gradient")) return;
    run r;
    float before[TOTAL], after[TOTAL];
    p7_status st = run_open(c, &r, NULL, NULL);
    if (st == P7_SUCCESS) st = p7_tensor_download(r.params[1], before, SIZES[1]);
    for (int t = 0; t < STEPS && st == P7_SUCCESS; t++) st = run_step(&r, t, 1u, 0); /* parameter 0 only */
    if (st == P7_SUCCESS) st = p7_tensor_download(r.params[1], after, SIZES[1]);
    if (st != P7_SUCCESS) report(c, FAIL, "no gradient", "steps with parameter 1 without a gradient: %s", p7_last_error());
    else {
        long d = first_difference(before, after, SIZES[1]);
        if (d >= 0)
            report(c, FAIL, "no gradient",
                   "parameter 1 never had a gradient, yet its weight [%ld] moved from %.9g to %.9g in %d steps", d,
                   (double)before[d], (double)after[d], STEPS);
        else report(c, PASS, "no gradient", "a parameter without a gradient stays untouched");
    }
    run_close(&r);
}

static void check_nan_gradient(checker *c)
{
    if (!needs_an_optimizer(c, "NaN gradient")) return;
    run r;
    float w[TOTAL];
    p7_status st = run_open(c, &r, NULL, NULL);
    if (st != P7_SUCCESS) {
        report(c, FAIL, "NaN gradient", "could not create the optimizer: %s", p7_last_error());
        return;
    }
    st = run_step(&r, 0, 3, 1);
    if (st != P7_SUCCESS) report(c, PASS, "NaN gradient", "reported by the step: %s", p7_last_error());
    else if ((st = p7_tensor_download(r.params[0], w, SIZES[0])) != P7_SUCCESS)
        report(c, FAIL, "NaN gradient", "%s", p7_last_error());
    else if (isnan(w[NAN_ELEMENT]))
        report(c, PASS, "NaN gradient", "reaches the weight as NaN (the training loop reports the loss)");
    else
        report(c, FAIL, "NaN gradient",
               "a NaN in gradient [%d] of parameter 0 made weight [%d] %g, not NaN: the NaN was swallowed (OpenCL's "
               "fmin and fmax return the other operand for NaN, sign(NaN) is 0; see docs/plugins.md)",
               NAN_ELEMENT, NAN_ELEMENT, (double)w[NAN_ELEMENT]);
    run_close(&r);
}

int p7plugin_check(const char *plugin, const char *device_spec, FILE *out)
{
    checker c = {0};
    c.out = out;
    p7_optimizer_plugin *pl;
    if (p7_optimizer_plugin_open(plugin, &pl) != P7_SUCCESS) {
        fprintf(out, "  FAIL  %-24s %s\n", "ABI and table", p7_last_error());
        return -1;
    }
    c.vt = p7_optimizer_plugin_table(pl);
    c.path = p7_optimizer_plugin_path(pl);
    fprintf(out, "p7plugin check %s: %s version %u, optimizer ABI %u.%u, %u state slots, %u hyperparameters\n", c.path,
            c.vt->name, (unsigned)c.vt->version, (unsigned)c.vt->abi_major, (unsigned)c.vt->abi_minor,
            (unsigned)c.vt->slot_count, (unsigned)c.vt->hparam_count);
    report(&c, PASS, "ABI and table", "loads: entry symbol, ABI major, table size and required functions");
    check_schema(&c, pl);
    if (p7_device_open(device_spec, NULL, &c.device) != P7_SUCCESS) {
        fprintf(out, "p7plugin: cannot open a device for the remaining checks: %s\n", p7_last_error());
        p7_optimizer_plugin_close(pl);
        return -1;
    }
    check_step(&c);
    check_save_load(&c);
    check_set_hparam(&c, pl);
    check_sample_restore(&c);
    check_no_gradient(&c);
    check_nan_gradient(&c);
    p7_device_close(c.device);
    p7_optimizer_plugin_close(pl);
    return c.failed;
}
