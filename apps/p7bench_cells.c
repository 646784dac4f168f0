/* p7bench's studies as grids of cells (see p7bench_cells.h). The studies are data: the
 * tables below say each one's defaults, axes and CSV layout; the code only expands them. */
#include "p7bench_cells.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/faithful.h"
#include "p7bench_numbers.h"

/* ---------------------------------------------------------------- the keys */

typedef enum key_kind { KEY_INT, KEY_REAL, KEY_WORD } key_kind;

typedef struct key_spec {
    const char *name;
    key_kind kind;
    double min, max;     /* numbers: the accepted range, inclusive */
    int min_exclusive;   /* lr > 0, width > 0 */
    const char *choices; /* words: the accepted values, comma-separated; NULL: any text */
    const char *neutral; /* the value that means "not used", left out of canonical text */
} key_spec;

#define BIG 1e300
static const key_spec keys[] = {
    {"model", KEY_WORD, 0, 0, 0, NULL, NULL},
    {"members", KEY_INT, 1, 65536, 0, NULL, NULL},
    {"alpha", KEY_REAL, -BIG, 1, 0, NULL, NULL},
    {"gamma", KEY_REAL, -BIG, 1, 0, NULL, NULL},
    {"epochs", KEY_INT, 1, 1e9, 0, NULL, NULL},
    {"batch", KEY_INT, 1, 65536, 0, NULL, NULL},
    {"lr", KEY_REAL, 0, BIG, 1, NULL, NULL},
    {"optimizer", KEY_WORD, 0, 0, 0, NULL, NULL},
    {"hparams", KEY_WORD, 0, 0, 0, NULL, ""},
    {"dataset", KEY_WORD, 0, 0, 0, "cifar10,cifar20,synthetic", NULL},
    {"seed", KEY_INT, 0, 9.2e18, 0, NULL, NULL},
    {"limit", KEY_INT, 0, 9.2e18, 0, NULL, "0"},
    {"width", KEY_REAL, 0, 64, 1, NULL, "1"},
    {"faithful", KEY_WORD, 0, 0, 0, NULL, ""},
    {"regime", KEY_WORD, 0, 0, 0, "within,between,combined", NULL},
    {"intra", KEY_WORD, 0, 0, 0, "none,early,deep,all", "none"},
    {"inter", KEY_WORD, 0, 0, 0, "none,early,deep,all", "none"},
    {"weight_decay", KEY_REAL, 0, BIG, 0, NULL, "0"},
    {"val_split", KEY_INT, 0, 9.2e18, 0, NULL, "0"},
    {"patience", KEY_INT, 0, 1e9, 0, NULL, "0"},
    {"clip", KEY_REAL, 0, BIG, 0, NULL, "0"},
    {"max_loss", KEY_REAL, 0, BIG, 1, NULL, "10000"},
    /* the rest of `p7bench run`'s flags: absent unless given, so no study's ids change */
    {"schedule", KEY_WORD, 0, 0, 0, NULL, NULL},
    {"min_delta", KEY_REAL, 0, BIG, 0, NULL, "0"},
    {"augment", KEY_WORD, 0, 0, 0, "on,off", NULL},
    {"bma_samples", KEY_INT, 0, 1e6, 0, NULL, NULL},
    {"bn", KEY_WORD, 0, 0, 0, "on,off", NULL},
    {"member_kind", KEY_WORD, 0, 0, 0, "be,independent", NULL},
    {"tie", KEY_WORD, 0, 0, 0, NULL, NULL},
};
#define KEY_COUNT (sizeof keys / sizeof keys[0])

static const key_spec *find_key(const char *name)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

/* ---------------------------------------------------------------- the studies */

typedef struct axis_spec {
    const char *key;
    const char *tag;    /* written before the value in the id: "a" gives ag-a0.2 */
    const char *values; /* comma-separated, first is outermost */
} axis_spec;

typedef struct variant_spec {
    const char *regime, *dataset; /* sharing: the defaults and axes of one regime on one dataset */
    const char *defaults;
    axis_spec axes[2];
} variant_spec;

typedef struct study_spec {
    const char *name, *abbrev;
    p7bench_csv_mode csv_mode;
    const char *defaults;    /* "key=value;..." */
    const char *prefix_keys; /* settings named in every id before the axes, comma-separated */
    axis_spec axes[2];
    const variant_spec *variants; /* NULL-regime-terminated, or NULL */
} study_spec;

#define NINE "-1,-0.8,-0.5,-0.2,0,0.2,0.5,0.8,1"
#define SHARING_OPTIONS "none,early,deep,all"

/* seed-study 6, 7 and 11.A.6-7: CIFAR-10 Adam lr 1e-4 batch 128 with 8 heads; CIFAR-20
 * lr 1e-3 with 4 heads, within-model sharing at batch 256 with clip-norm 5. */
static const variant_spec sharing_variants[] = {
    {"within", "cifar10", "members=1;lr=0.0001;batch=128", {{"intra", "", SHARING_OPTIONS}}},
    {"between", "cifar10", "members=8;lr=0.0001;batch=128", {{"inter", "", SHARING_OPTIONS}}},
    {"combined", "cifar10", "members=8;lr=0.0001;batch=128",
     {{"intra", "", SHARING_OPTIONS}, {"inter", "", SHARING_OPTIONS}}},
    {"within", "cifar20", "members=1;lr=0.001;batch=256;clip=5", {{"intra", "", SHARING_OPTIONS}}},
    {"between", "cifar20", "members=4;lr=0.001;batch=128", {{"inter", "", SHARING_OPTIONS}}},
    {"combined", "cifar20", "members=4;lr=0.001;batch=128",
     {{"intra", "", SHARING_OPTIONS}, {"inter", "", SHARING_OPTIONS}}},
    {NULL, NULL, NULL, {{NULL}}},
};

#define BE_STUDY "optimizer=adam;dataset=cifar10;seed=42;epochs=15"
static const study_spec studies[] = {
    /* seed-study 5 E1: BE-VGG11-BN, M=4, batch 256, lr 2e-4, Adam, 15 epochs. */
    {"alpha-gamma", "ag", P7BENCH_CSV_PARAMETER, BE_STUDY ";model=vgg11-bn;members=4;batch=256;lr=0.0002", "",
     {{"alpha", "a", NINE}, {"gamma", "g", NINE}}, NULL},
    /* E2: alpha = gamma = 0.5, M in 2..10 (M outer, lr inner as in the original CSV); a fixed
     * batch per member unless --faithful brings back batch = M. */
    {"ensemble-size", "es", P7BENCH_CSV_PARAMETER,
     BE_STUDY ";model=vgg11-bn;alpha=0.5;gamma=0.5;batch=256;members=2", "",
     {{"members", "m", "2,3,4,5,6,7,8,9,10"}, {"lr", "lr", "0.02,0.002,0.0002"}}, NULL},
    /* E3: alpha 1, gamma 0.2, batch 256; single networks and BE M = 2, 4, 8. Each optimizer
     * trains at its recipe's lr (IVON's 0.2 is not Adam's 2e-3); --faithful brings back the
     * original's lr 2e-3 for all (derive). */
    {"optimizers", "opt", P7BENCH_CSV_OPTIMIZER, BE_STUDY ";model=vgg11-bn;alpha=1;gamma=0.2;batch=256",
     "", {{"optimizer", "", "sgd,adam,ivon"}, {"members", "m", "1,2,4,8"}}, NULL},
    /* 6-7: validation split, early stopping (patience 5, up to 50 epochs), test once. */
    {"sharing", "sh", P7BENCH_CSV_OPTIMIZER,
     "model=vgg11;optimizer=adam;seed=42;epochs=50;patience=5;val_split=5000;weight_decay=0.0001;"
     "regime=within;dataset=cifar10",
     "regime,dataset", {{NULL}}, sharing_variants},
    /* One configuration: p7bench's run defaults. */
    /* One configuration: p7bench's run defaults (the optimizer's recipe sets lr unless given;
     * 45,000 / 5,000 split, the test set once at the end). */
    {"run", "run", P7BENCH_CSV_OPTIMIZER,
     "model=simple;members=1;optimizer=adam;dataset=cifar10;seed=42;epochs=3;batch=128;val_split=5000", "",
     {{NULL}}, NULL},
    /* No subcommand: a single network against BatchEnsemble M=4, a few epochs. */
    {"quick", "quick", P7BENCH_CSV_PARAMETER,
     "model=vgg11-bn;optimizer=adam;alpha=0.5;gamma=0.5;dataset=cifar10;seed=42;epochs=3;batch=128", "",
     {{"members", "m", "1,4"}}, NULL},
};
#define STUDY_COUNT (sizeof studies / sizeof studies[0])

const char *const *p7bench_study_names(void)
{
    static const char *names[STUDY_COUNT + 1];
    for (size_t i = 0; i < STUDY_COUNT; i++) names[i] = studies[i].name;
    return names;
}

static const study_spec *find_study(const char *name)
{
    for (size_t i = 0; i < STUDY_COUNT; i++)
        if (strcmp(studies[i].name, name) == 0) return &studies[i];
    return NULL;
}

/* ---------------------------------------------------------------- configurations */

const char *p7bench_config_get(const p7bench_config *config, const char *key)
{
    for (size_t i = 0; i < config->count; i++)
        if (strcmp(config->items[i].key, key) == 0) return config->items[i].value;
    return NULL;
}

static void config_remove(p7bench_config *config, const char *key)
{
    for (size_t i = 0; i < config->count; i++)
        if (strcmp(config->items[i].key, key) == 0) {
            memmove(&config->items[i], &config->items[i + 1], (config->count - i - 1) * sizeof config->items[0]);
            config->count--;
            return;
        }
}

/* Sets key (kept sorted). The key table has fewer keys than P7BENCH_SETTINGS_MAX, and
 * values were length-checked when parsed, so this cannot overflow. */
static void config_set(p7bench_config *config, const char *key, const char *value)
{
    size_t i = 0;
    while (i < config->count && strcmp(config->items[i].key, key) < 0) i++;
    if (i == config->count || strcmp(config->items[i].key, key) != 0) {
        memmove(&config->items[i + 1], &config->items[i], (config->count - i) * sizeof config->items[0]);
        config->count++;
        snprintf(config->items[i].key, sizeof config->items[i].key, "%s", key);
    }
    snprintf(config->items[i].value, sizeof config->items[i].value, "%s", value);
}

static int is_neutral(const char *key, const char *value)
{
    const key_spec *k = find_key(key);
    return k && k->neutral && strcmp(k->neutral, value) == 0;
}

int p7bench_config_text(const char *study, const p7bench_config *config, int keep_neutral, char *out, size_t size)
{
    size_t n = 0;
    int w = snprintf(out, size, "study=%s\n", study);
    if (w < 0 || (size_t)w >= size) return -1;
    n = (size_t)w;
    for (size_t i = 0; i < config->count; i++) {
        const p7bench_setting *s = &config->items[i];
        if (!keep_neutral && is_neutral(s->key, s->value)) continue;
        w = snprintf(out + n, size - n, "%s=%s\n", s->key, s->value);
        if (w < 0 || (size_t)w >= size - n) return -1;
        n += (size_t)w;
    }
    return (int)n;
}

static int in_list(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

static const char *const faithful_names[] = {
#define P7BENCH_FAITHFUL_NAME(id, name, bit, what) name,
    P7_FAITHFUL_LIST(P7BENCH_FAITHFUL_NAME)
#undef P7BENCH_FAITHFUL_NAME
};
#define FAITHFUL_COUNT (sizeof faithful_names / sizeof faithful_names[0])

static int cmp_text(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* --faithful's value in one spelling: "all", or the switch names sorted, once each. */
static int canonical_faithful(const char *value, char *out, size_t size, char *err, size_t err_size)
{
    char copy[P7BENCH_VALUE_MAX];
    snprintf(copy, sizeof copy, "%s", value);
    const char *names[FAITHFUL_COUNT];
    size_t count = 0;
    int all = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "all") == 0) { all = 1; continue; }
        size_t f = 0;
        while (f < FAITHFUL_COUNT && strcmp(faithful_names[f], t) != 0) f++;
        if (f == FAITHFUL_COUNT) {
            size_t n = (size_t)snprintf(err, err_size, "faithful=%s: no switch '%s'; expected all or some of", value, t);
            for (size_t i = 0; i < FAITHFUL_COUNT && n < err_size; i++)
                n += (size_t)snprintf(err + n, err_size - n, "%s%s", i ? ", " : " ", faithful_names[i]);
            return 1;
        }
        int seen = 0;
        for (size_t i = 0; i < count; i++) seen |= names[i] == faithful_names[f];
        if (!seen) names[count++] = faithful_names[f];
    }
    if (all || count == FAITHFUL_COUNT) return snprintf(out, size, "all"), 0;
    qsort(names, count, sizeof names[0], cmp_text);
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count; i++) n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "," : "", names[i]);
    return 0;
}

/* One value of `key` in its canonical spelling, checked against the key's kind and range. */
static int canonical_value(const key_spec *k, const char *value, char *out, size_t size, char *err, size_t err_size)
{
    if (strlen(value) >= P7BENCH_VALUE_MAX)
        return snprintf(err, err_size, "%s: value longer than %d characters", k->name, P7BENCH_VALUE_MAX - 1), 1;
    if (strchr(value, '\n') || strchr(value, '\r'))
        return snprintf(err, err_size, "%s: a value cannot hold a line break", k->name), 1;
    if (k->kind == KEY_WORD) {
        if (k->choices && !in_list(k->choices, value))
            return snprintf(err, err_size, "%s=%s: expected one of %s", k->name, value, k->choices), 1;
        if (strcmp(k->name, "faithful") == 0) return canonical_faithful(value, out, size, err, err_size);
        if (!*value && !k->neutral) return snprintf(err, err_size, "%s: empty value", k->name), 1;
        return snprintf(out, size, "%s", value), 0;
    }
    double v;
    long long iv = 0;
    int ok = k->kind == KEY_INT ? p7bench_parse_integer(value, &iv) : p7bench_parse_double(value, &v);
    if (k->kind == KEY_INT) v = (double)iv;
    if (!ok || v != v || v > k->max || v < k->min || (k->min_exclusive && v == k->min)) {
        char lo[32], hi[32];
        p7bench_format_number(k->min, lo, sizeof lo);
        p7bench_format_number(k->max, hi, sizeof hi);
        if (k->max >= 1e18 && k->min <= -1e18) snprintf(err, err_size, "%s=%s: expected a finite number", k->name, value);
        else if (k->max >= 1e18)
            snprintf(err, err_size, "%s=%s: expected %s %s %s", k->name, value,
                     k->kind == KEY_INT ? "an integer" : "a number", k->min_exclusive ? ">" : ">=", lo);
        else if (k->min <= -1e18) snprintf(err, err_size, "%s=%s: expected a number <= %s", k->name, value, hi);
        else
            snprintf(err, err_size, "%s=%s: expected %s in [%s, %s]%s", k->name, value,
                     k->kind == KEY_INT ? "an integer" : "a number", lo, hi, k->min_exclusive ? ", not the lower end" : "");
        return 1;
    }
    if (k->kind == KEY_INT) snprintf(out, size, "%lld", iv);
    else p7bench_format_number(v, out, size);
    return 0;
}

/* A comma-separated list of values, each in canonical spelling; a value twice is refused. */
static int canonical_list(const key_spec *k, const char *values, char *out, size_t size, char *err, size_t err_size)
{
    char copy[4 * P7BENCH_VALUE_MAX];
    if (strlen(values) >= sizeof copy) return snprintf(err, err_size, "%s: list too long", k->name), 1;
    snprintf(copy, sizeof copy, "%s", values);
    size_t n = 0;
    out[0] = '\0';
    char *p = copy;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        char one[P7BENCH_VALUE_MAX];
        if (canonical_value(k, p, one, sizeof one, err, err_size) != 0) return 1;
        char padded[P7BENCH_VALUE_MAX + 2];
        snprintf(padded, sizeof padded, ",%s,", one);
        char listed[P7BENCH_VALUE_MAX * 4 + 2];
        snprintf(listed, sizeof listed, ",%s,", out);
        if (n && strstr(listed, padded))
            return snprintf(err, err_size, "%s=%s: the value %s is listed twice", k->name, values, one), 1;
        int w = snprintf(out + n, size - n, "%s%s", n ? "," : "", one);
        if (w < 0 || (size_t)w >= size - n) return snprintf(err, err_size, "%s: list too long", k->name), 1;
        n += (size_t)w;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

/* Applies "k=v;k=v" defaults (trusted tables). */
static void apply_defaults(p7bench_config *config, const char *defaults)
{
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", defaults);
    for (char *save = NULL, *t = strtok_r(copy, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(t, '=');
        *eq = '\0';
        config_set(config, t, eq + 1);
    }
}

/* ---------------------------------------------------------------- ids */

/* FNV-1a, 64 bits, folded to 32: enough to tell a study's cells apart, short enough to read. */
static uint32_t text_hash(const char *text)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* A value as part of an id: a plugin path by its short name (plugins/libivon.so -> ivon),
 * characters outside [A-Za-z0-9.+_-] as '_', at most 24 characters. */
static void id_part(const char *key, const char *value, char *out, size_t size)
{
    const char *v = value;
    char shortname[P7BENCH_VALUE_MAX];
    if (strcmp(key, "optimizer") == 0 && strchr(value, '/')) {
        v = strrchr(value, '/') + 1;
        if (strncmp(v, "lib", 3) == 0) v += 3;
        snprintf(shortname, sizeof shortname, "%s", v);
        char *dot = strchr(shortname, '.');
        if (dot && dot != shortname) *dot = '\0';
        v = shortname;
    }
    size_t n = 0;
    for (; *v && n + 1 < size && n < 24; v++) {
        char c = *v;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '+' || c == '_' || c == '-';
        out[n++] = plain ? c : '_';
    }
    out[n] = '\0';
}

static void append_part(char *id, size_t size, const char *tag, const char *key, const char *value)
{
    char part[32];
    id_part(key, value, part, sizeof part);
    size_t n = strlen(id);
    snprintf(id + n, size - n, "-%s%s", tag, part);
}

/* ---------------------------------------------------------------- plans */

typedef struct grid {
    const axis_spec *axes[2];
    size_t axis_count;
    char values[2][4 * P7BENCH_VALUE_MAX]; /* the axes' canonical value lists */
    int zip;                               /* pairs=diagonal: the i-th value of each axis together */
} grid;

static size_t list_length(const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    return n;
}

/* The i-th value of a comma-separated list. */
static void list_item(const char *list, size_t i, char *out, size_t size)
{
    const char *p = list;
    while (i-- && p) p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
    size_t len = p ? (strchr(p, ',') ? (size_t)(strchr(p, ',') - p) : strlen(p)) : 0;
    snprintf(out, size, "%.*s", (int)len, p ? p : "");
}

/* The rules that tie one setting to another. */
static void derive(const study_spec *s, p7bench_config *c, int batch_given)
{
    const char *f = p7bench_config_get(c, "faithful");
    if (strcmp(s->name, "ensemble-size") == 0 && !batch_given && f &&
        (strcmp(f, "all") == 0 || in_list(f, "batch-equals-m")))
        config_set(c, "batch", p7bench_config_get(c, "members"));
    if (strcmp(s->name, "optimizers") == 0 && f && !p7bench_config_get(c, "lr"))
        config_set(c, "lr", "0.002");
    const char *m = p7bench_config_get(c, "members");
    if (m && strcmp(m, "1") == 0) { /* a plain network has no fast weights */
        config_remove(c, "alpha");
        config_remove(c, "gamma");
    }
}

static int add_cell(p7bench_study_plan *plan, const study_spec *s, const grid *g, const p7bench_config *c,
                    const char *default_seed, char *err, size_t err_size)
{
    char text[P7BENCH_SETTINGS_MAX * (P7BENCH_KEY_MAX + P7BENCH_VALUE_MAX + 2) + 64];
    if (p7bench_config_text(s->name, c, 0, text, sizeof text) < 0)
        return snprintf(err, err_size, "%s: configuration too long", s->name), 1;
    p7bench_cell cell = {.config = *c};
    snprintf(cell.label, sizeof cell.label, "%s", s->abbrev);
    char keys_copy[128];
    snprintf(keys_copy, sizeof keys_copy, "%s", s->prefix_keys);
    for (char *save = NULL, *k = strtok_r(keys_copy, ",", &save); k; k = strtok_r(NULL, ",", &save))
        append_part(cell.label, sizeof cell.label, "", k, p7bench_config_get(c, k));
    for (size_t a = 0; a < g->axis_count; a++) {
        const char *v = p7bench_config_get(c, g->axes[a]->key);
        append_part(cell.label, sizeof cell.label, g->axes[a]->tag, g->axes[a]->key, v ? v : "none");
    }
    snprintf(cell.id, sizeof cell.id, "%s", cell.label);
    const char *seed = p7bench_config_get(c, "seed");
    if (strcmp(seed, default_seed) != 0) append_part(cell.id, sizeof cell.id, "s", "seed", seed);
    size_t n = strlen(cell.id);
    snprintf(cell.id + n, sizeof cell.id - n, "-%08x", text_hash(text));
    for (size_t i = 0; i < plan->count; i++)
        if (strcmp(plan->cells[i].id, cell.id) == 0) return 0; /* a grid point twice (e.g. alpha dropped at M=1) */
    p7bench_cell *grown = realloc(plan->cells, (plan->count + 1) * sizeof *grown);
    if (!grown) return snprintf(err, err_size, "out of host memory"), 1;
    plan->cells = grown;
    plan->cells[plan->count++] = cell;
    return 0;
}

int p7bench_study_plan_make(const char *study, const char *const *overrides, size_t override_count,
                            p7bench_study_plan *plan, char *err, size_t err_size)
{
    memset(plan, 0, sizeof *plan);
    const study_spec *s = find_study(study);
    if (!s) {
        size_t n = (size_t)snprintf(err, err_size, "no study '%s'; the studies are", study);
        for (size_t i = 0; i < STUDY_COUNT && n < err_size; i++)
            n += (size_t)snprintf(err + n, err_size - n, "%s%s", i ? ", " : " ", studies[i].name);
        return 1;
    }
    snprintf(plan->study, sizeof plan->study, "%s", s->name);
    plan->csv_mode = s->csv_mode;

    /* Overrides, checked and in canonical spelling. */
    p7bench_config given = {0};
    long long seeds = 1;
    const char *pairs = NULL;
    for (size_t i = 0; i < override_count; i++) {
        const char *o = overrides[i], *eq = strchr(o, '=');
        char key[P7BENCH_KEY_MAX];
        if (!eq || eq == o || (size_t)(eq - o) >= sizeof key)
            return snprintf(err, err_size, "%s: override '%s': expected key=value", s->name, o), 1;
        snprintf(key, sizeof key, "%.*s", (int)(eq - o), o);
        const char *value = eq + 1;
        if (p7bench_config_get(&given, key) || (strcmp(key, "seeds") == 0 && seeds != 1) ||
            (strcmp(key, "pairs") == 0 && pairs))
            return snprintf(err, err_size, "%s: %s is given twice", s->name, key), 1;
        if (strcmp(key, "seeds") == 0) {
            if (!p7bench_parse_integer(value, &seeds) || seeds < 1 || seeds > 1000)
                return snprintf(err, err_size, "%s: seeds=%s: expected an integer in [1, 1000]", s->name, value), 1;
            continue;
        }
        if (strcmp(key, "pairs") == 0) {
            if (strcmp(value, "diagonal") != 0 && strcmp(value, "all") != 0)
                return snprintf(err, err_size, "%s: pairs=%s: expected diagonal or all", s->name, value), 1;
            pairs = value;
            continue;
        }
        const key_spec *k = find_key(key);
        if (!k) {
            size_t n = (size_t)snprintf(err, err_size, "%s: no setting '%s'; the settings are seeds, pairs", s->name, key);
            for (size_t j = 0; j < KEY_COUNT && n < err_size; j++)
                n += (size_t)snprintf(err + n, err_size - n, ", %s", keys[j].name);
            return 1;
        }
        /* Any key may be an axis (a list); the grid decides below whether a list is allowed. */
        char canon[4 * P7BENCH_VALUE_MAX];
        int is_list = k->kind != KEY_WORD || (k->choices && strchr(value, ',')) || strcmp(key, "optimizer") == 0 ||
                      strcmp(key, "model") == 0;
        if (is_list ? canonical_list(k, value, canon, sizeof canon, err, err_size)
                    : canonical_value(k, value, canon, sizeof canon, err, err_size)) {
            char reason[512];
            snprintf(reason, sizeof reason, "%s", err);
            return snprintf(err, err_size, "%s: %s", s->name, reason), 1;
        }
        if (strlen(canon) >= P7BENCH_VALUE_MAX)
            return snprintf(err, err_size, "%s: %s: list too long", s->name, key), 1;
        config_set(&given, key, canon);
    }

    /* Defaults, the regime's and dataset's own where the study has them, then the overrides. */
    p7bench_config *c = &plan->config;
    apply_defaults(c, s->defaults);
    for (size_t i = 0; i < given.count; i++) config_set(c, given.items[i].key, given.items[i].value);
    grid g = {0};
    for (size_t a = 0; a < 2 && s->axes[a].key; a++) g.axes[g.axis_count++] = &s->axes[a];
    if (s->variants) {
        const variant_spec *v = s->variants;
        /* the synthetic set (a smoke run) takes CIFAR-10's grid */
        const char *grid_dataset = strcmp(p7bench_config_get(c, "dataset"), "synthetic") == 0
                                       ? "cifar10"
                                       : p7bench_config_get(c, "dataset");
        for (; v->regime; v++)
            if (strcmp(v->regime, p7bench_config_get(c, "regime")) == 0 && strcmp(v->dataset, grid_dataset) == 0)
                break;
        if (!v->regime)
            return snprintf(err, err_size, "%s: no grid for regime=%s on dataset=%s (the sharing studies run on cifar10 "
                            "and cifar20)", s->name, p7bench_config_get(c, "regime"), p7bench_config_get(c, "dataset")), 1;
        apply_defaults(c, v->defaults);
        for (size_t i = 0; i < given.count; i++) config_set(c, given.items[i].key, given.items[i].value);
        for (size_t a = 0; a < 2 && v->axes[a].key; a++) g.axes[g.axis_count++] = &v->axes[a];
    }
    if (pairs && !(g.axis_count == 2 && strcmp(s->name, "sharing") == 0))
        return snprintf(err, err_size, "%s: pairs=%s applies to the sharing study's combined regime only", s->name, pairs), 1;
    g.zip = g.axis_count == 2 && strcmp(s->name, "sharing") == 0 && (!pairs || strcmp(pairs, "diagonal") == 0);

    /* The axes' value lists; every other setting must be a single value. */
    for (size_t a = 0; a < g.axis_count; a++) {
        const char *v = p7bench_config_get(&given, g.axes[a]->key);
        snprintf(g.values[a], sizeof g.values[a], "%s", v ? v : g.axes[a]->values);
    }
    for (size_t i = 0; i < c->count; i++) {
        int axis = 0;
        for (size_t a = 0; a < g.axis_count; a++) axis |= strcmp(g.axes[a]->key, c->items[i].key) == 0;
        const key_spec *k = find_key(c->items[i].key);
        const int text_value = strcmp(k->name, "hparams") == 0 || strcmp(k->name, "faithful") == 0 ||
                               strcmp(k->name, "schedule") == 0 || strcmp(k->name, "tie") == 0;
        if (!axis && strchr(c->items[i].value, ',') && !text_value)
            return snprintf(err, err_size, "%s: %s=%s: a list of values is accepted only for the study's axes (%s%s%s)",
                            s->name, c->items[i].key, c->items[i].value, g.axis_count ? g.axes[0]->key : "none",
                            g.axis_count > 1 ? ", " : "", g.axis_count > 1 ? g.axes[1]->key : ""), 1;
    }
    for (size_t a = 0; a < g.axis_count; a++) config_set(c, g.axes[a]->key, g.values[a]);
    if (g.zip && list_length(g.values[0]) != list_length(g.values[1]))
        return snprintf(err, err_size, "%s: pairs=diagonal pairs the i-th %s with the i-th %s, but %s has %zu values and "
                        "%s %zu (give pairs=all for every combination)", s->name, g.axes[0]->key, g.axes[1]->key,
                        g.axes[0]->key, list_length(g.values[0]), g.axes[1]->key, list_length(g.values[1])), 1;

    /* Expand: seeds outermost, then the first axis, then the second. */
    const char *seed_text = p7bench_config_get(c, "seed");
    long long seed0 = strtoll(seed_text, NULL, 10);
    char default_seed[32];
    p7bench_config defaults_only = {0};
    apply_defaults(&defaults_only, s->defaults);
    snprintf(default_seed, sizeof default_seed, "%s", p7bench_config_get(&defaults_only, "seed"));
    size_t n0 = g.axis_count > 0 ? list_length(g.values[0]) : 1;
    size_t n1 = g.axis_count > 1 && !g.zip ? list_length(g.values[1]) : 1;
    int batch_given = p7bench_config_get(&given, "batch") != NULL;
    for (long long r = 0; r < seeds; r++)
        for (size_t i = 0; i < n0; i++)
            for (size_t j = 0; j < n1; j++) {
                p7bench_config cell = *c;
                char v[P7BENCH_VALUE_MAX], seed[32];
                if (g.axis_count > 0) list_item(g.values[0], i, v, sizeof v), config_set(&cell, g.axes[0]->key, v);
                if (g.axis_count > 1)
                    list_item(g.values[1], g.zip ? i : j, v, sizeof v), config_set(&cell, g.axes[1]->key, v);
                snprintf(seed, sizeof seed, "%lld", seed0 + r);
                config_set(&cell, "seed", seed);
                derive(s, &cell, batch_given);
                if (add_cell(plan, s, &g, &cell, default_seed, err, err_size) != 0) {
                    p7bench_study_plan_release(plan);
                    return 1;
                }
            }
    return 0;
}

void p7bench_study_plan_release(p7bench_study_plan *plan)
{
    if (!plan) return;
    free(plan->cells);
    plan->cells = NULL;
    plan->count = 0;
}

const p7bench_cell *p7bench_study_find_cell(const p7bench_study_plan *plan, const char *id, char *err, size_t err_size)
{
    for (size_t i = 0; i < plan->count; i++)
        if (strcmp(plan->cells[i].id, id) == 0) return &plan->cells[i];
    const study_spec *own = find_study(plan->study);
    for (size_t i = 0; i < STUDY_COUNT; i++) {
        size_t n = strlen(studies[i].abbrev);
        if (&studies[i] != own && strncmp(id, studies[i].abbrev, n) == 0 && id[n] == '-') {
            snprintf(err, err_size, "cell '%s' is a cell of the %s study (its id starts with '%s-'), not of %s; run it "
                     "with `p7bench %s --cell %s`", id, studies[i].name, studies[i].abbrev, plan->study,
                     studies[i].name, id);
            return NULL;
        }
    }
    /* The same grid point under other settings: the id's readable part matches. */
    const char *dash = strrchr(id, '-');
    for (size_t i = 0; dash && i < plan->count; i++) {
        const char *own_dash = strrchr(plan->cells[i].id, '-');
        if ((size_t)(own_dash - plan->cells[i].id) == (size_t)(dash - id) &&
            strncmp(plan->cells[i].id, id, (size_t)(dash - id)) == 0) {
            snprintf(err, err_size, "cell '%s' is not a cell of the %s study with these settings: the same grid point "
                     "is %s here, so another setting (flags, --faithful, --limit, ...) differs from the run that "
                     "listed it", id, plan->study, plan->cells[i].id);
            return NULL;
        }
    }
    snprintf(err, err_size, "cell '%s' is not one of the %zu cells of the %s study with these settings; `p7bench %s "
             "--list` prints them", id, plan->count, plan->study, plan->study);
    return NULL;
}

/* A setting is common when every cell has it with one value. */
static int setting_is_common(const p7bench_study_plan *plan, const p7bench_setting *s)
{
    for (size_t i = 0; i < plan->count; i++) {
        const char *v = p7bench_config_get(&plan->cells[i].config, s->key);
        if (!v || strcmp(v, s->value) != 0) return 0;
    }
    return 1;
}

void p7bench_study_print_list(const p7bench_study_plan *plan, FILE *out)
{
    fprintf(out, "# %s: %zu cells; every cell:", plan->study, plan->count);
    if (plan->count == 0) {
        fprintf(out, "\n");
        return;
    }
    const p7bench_config *first = &plan->cells[0].config;
    for (size_t k = 0; k < first->count; k++)
        if (setting_is_common(plan, &first->items[k]) && !is_neutral(first->items[k].key, first->items[k].value))
            fprintf(out, " %s=%s", first->items[k].key, first->items[k].value);
    fprintf(out, "\n");
    /* The varying keys, in key order: those some cell lacks or holds with another value. */
    const char *varying[KEY_COUNT];
    size_t nv = 0;
    for (size_t k = 0; k < KEY_COUNT; k++) {
        const char *v0 = p7bench_config_get(first, keys[k].name);
        int varies = 0;
        for (size_t i = 1; i < plan->count && !varies; i++) {
            const char *v = p7bench_config_get(&plan->cells[i].config, keys[k].name);
            varies = (v == NULL) != (v0 == NULL) || (v && strcmp(v, v0) != 0);
        }
        if (varies) varying[nv++] = keys[k].name;
    }
    qsort(varying, nv, sizeof varying[0], cmp_text);
    for (size_t i = 0; i < plan->count; i++) {
        fprintf(out, "%s ", plan->cells[i].id);
        for (size_t k = 0; k < nv; k++) {
            const char *v = p7bench_config_get(&plan->cells[i].config, varying[k]);
            fprintf(out, " %s=%s", varying[k], v ? v : "-");
        }
        fprintf(out, "\n");
    }
}

void p7bench_study_default_out(const p7bench_study_plan *plan, char *out, size_t size)
{
    if (strcmp(plan->study, "sharing") == 0)
        snprintf(out, size, "results/sharing-%s-%s", p7bench_config_get(&plan->config, "regime"),
                 p7bench_config_get(&plan->config, "dataset"));
    else snprintf(out, size, "results/%s", plan->study);
}

const char *p7bench_original_model_type(const char *model, long long members)
{
    if (strcmp(model, "simple") == 0) return members > 1 ? "batchensemble" : "simple";
    if (strcmp(model, "vgg11") == 0 || strcmp(model, "vgg11-bn") == 0)
        return members > 1 ? "batchensemble_complex" : "complex";
    return model;
}
