/* The bundled optimizers' recipes: what each trains with when the user gives no
 * hyperparameters. docs/training.md gives the reasoning and the tuning runs behind the
 * values. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "p7/train.h"
#include "runtime/runtime.h"

static const p7_recipe recipes[] = {
    {"sgd", "lr=0.05,momentum=0.9,weight_decay=5e-4", "cosine:per=step",
     "momentum SGD with coupled L2 and a per-step cosine to zero, as the IVON paper's CIFAR baseline "
     "(lr 0.1 there at batch 50 over 200 epochs; halved here for short runs)",
     NULL, 0, 0, 0},
    {"adam", "lr=2e-3", "cosine:per=step",
     "Adam at the study's best learning rate (2e-3, seed-study 11), annealed per step by a cosine to zero",
     NULL, 0, 0, 0},
    {"ivon", "lr=0.2,hess_init=1.0,weight_decay=2e-4,beta2=0.999", "warmup-cosine:per=step,warmup=5%,min-warmup=100",
     "IVON as its authors train CIFAR (optimizers.md 1.7: lr 0.2, delta 2e-4, ess = training-set size, linear "
     "warm-up from lr/5 then cosine to 0) scaled to short runs: the warm-up 5% of the run and at least 100 steps, beta2 = 1 - 2/steps "
     "so the Hessian average spans half the run as 0.99999 spans half of theirs, at most 0.999 (15 epochs "
     "measured worse with more), h0 1.0 (less weight noise); docs/training.md",
     "beta2", 0.5, 0.99, 0.999},
};

const p7_recipe *p7_recipe_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        if (strcmp(recipes[i].optimizer, name) == 0) return &recipes[i];
    return NULL;
}

/* One "name=value" item of a list, its spaces trimmed. */
typedef struct item {
    const char *key, *value;
    size_t key_len, value_len;
} item;

static const char *trim(const char *b, const char *e, size_t *len)
{
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    *len = (size_t)(e - b);
    return b;
}

/* Splits `text` into at most `cap` items; returns the count, or -1 (with a message). */
static int split(const char *text, item *items, int cap, const char *what)
{
    int n = 0;
    if (!text) return 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        size_t len;
        const char *s = trim(p, end, &len);
        if (len > 0) {
            const char *eq = memchr(s, '=', len);
            if (!eq) {
                p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s hyperparameters: '%.*s' is no name=value", what, (int)len, s);
                return -1;
            }
            if (n == cap) {
                p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s hyperparameters: more than %d assignments", what, cap);
                return -1;
            }
            items[n].key = trim(s, eq, &items[n].key_len);
            items[n].value = trim(eq + 1, s + len, &items[n].value_len);
            n++;
        }
        if (!comma) break;
        p = comma + 1;
    }
    return n;
}

static int same_key(const item *a, const item *b)
{
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

p7_status p7_recipe_hparams_for_run(const p7_recipe *recipe, uint64_t steps, char *out, size_t size)
{
    if (!recipe || !out || size == 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_recipe_hparams_for_run: NULL argument");
    if (!recipe->horizon_hparam || steps == 0) {
        if ((size_t)snprintf(out, size, "%s", recipe->hparams) >= size)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_recipe_hparams_for_run: %s's hyperparameters need more "
                                                      "than %zu bytes", recipe->optimizer, size);
        return P7_SUCCESS;
    }
    double rate = 1.0 - 1.0 / (recipe->horizon * (double)steps);
    if (rate < recipe->horizon_min) rate = recipe->horizon_min;
    if (rate > recipe->horizon_max) rate = recipe->horizon_max;
    char scaled[64];
    snprintf(scaled, sizeof scaled, "%s=%.6g", recipe->horizon_hparam, rate);
    return p7_recipe_merge_hparams(recipe->hparams, scaled, out, size);
}

p7_status p7_recipe_merge_hparams(const char *recipe, const char *user, char *out, size_t size)
{
    if (!out || size == 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_recipe_merge_hparams: no output buffer");
    enum { CAP = 64 };
    item r[CAP], u[CAP];
    int nr = split(recipe, r, CAP, "recipe"), nu = split(user, u, CAP, "user");
    if (nr < 0 || nu < 0) return P7_ERROR_INVALID_ARGUMENT;
    size_t used = 0;
    out[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        int n = pass == 0 ? nr : nu;
        for (int i = 0; i < n; i++) {
            const item *it = pass == 0 ? &r[i] : &u[i];
            if (pass == 0) { /* the user's value of the same name wins */
                for (int j = 0; j < nu; j++)
                    if (same_key(it, &u[j])) it = &u[j];
            } else {
                int in_recipe = 0;
                for (int j = 0; j < nr; j++) in_recipe |= same_key(it, &r[j]);
                if (in_recipe) continue;
            }
            int w = snprintf(out + used, size - used, "%s%.*s=%.*s", used ? "," : "", (int)it->key_len, it->key,
                             (int)it->value_len, it->value);
            if (w < 0 || (size_t)w >= size - used)
                return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_recipe_merge_hparams: the merged text needs more than %zu bytes",
                               size);
            used += (size_t)w;
        }
    }
    return P7_SUCCESS;
}
