/* Finding, loading and validating optimizer plugins (p7/optimizer_plugin.h). */
#define _GNU_SOURCE /* dladdr: where libp7 itself lives, for installed plugins */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "optimizer/optimizer_internal.h"
#include "tensor/tensor_internal.h"

/* A short name is a bare word: anything with a slash or a ".so" is taken as a path, so
 * "plugins/libivon.so" and "./libfoo.so" never go through the search. */
static int is_short_name(const char *s)
{
    return strchr(s, '/') == NULL && strstr(s, ".so") == NULL;
}

static int dir_of(const char *file, char *out, size_t size)
{
    const char *slash = strrchr(file, '/');
    if (!slash) return 0;
    size_t n = (size_t)(slash - file);
    if (n + 1 > size) return 0;
    memcpy(out, file, n);
    out[n] = '\0';
    return 1;
}

/* Appends "\n  <dir>/lib<name>.so" to the list of places looked, and reports whether the
 * file is there. */
static int try_dir(const char *dir, const char *name, char *found, size_t found_size, char *looked,
                   size_t looked_size)
{
    char candidate[4096];
    int n = snprintf(candidate, sizeof candidate, "%s/lib%s.so", dir, name);
    if (n < 0 || (size_t)n >= sizeof candidate) return 0;
    /* The list is for a message: a long one is cut, never overflowed. */
    size_t used = strlen(looked), add = strlen(candidate);
    if (used + 3 + add < looked_size) {
        memcpy(looked + used, "\n  ", 3);
        memcpy(looked + used + 3, candidate, add + 1);
    }
    if (access(candidate, F_OK) != 0) return 0;
    snprintf(found, found_size, "%s", candidate);
    return 1;
}

static p7_status resolve(const char *spec, char *path, size_t size)
{
    if (!is_short_name(spec)) {
        if (access(spec, F_OK) != 0)
            return p7_fail(P7_ERROR_PLUGIN, "optimizer plugin %s: no such file (%s)", p7_abbrev(spec),
                           strerror(errno));
        snprintf(path, size, "%s", spec);
        return P7_SUCCESS;
    }
    char looked[3072] = "";
    char exe[4096], dir[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        if (dir_of(exe, dir, sizeof dir)) {
            char sub[4096 + 16];
            snprintf(sub, sizeof sub, "%s/../plugins", dir);
            if (try_dir(sub, spec, path, size, looked, sizeof looked)) return P7_SUCCESS;
            snprintf(sub, sizeof sub, "%s/plugins", dir);
            if (try_dir(sub, spec, path, size, looked, sizeof looked)) return P7_SUCCESS;
        }
    }
    const char *env = getenv("P7_PLUGIN_PATH");
    if (!env || !*env) {
        size_t used = strlen(looked);
        snprintf(looked + used, sizeof looked - used, "\n  (P7_PLUGIN_PATH is not set)");
    }
    if (env && *env) {
        char *copy = strdup(env);
        if (!copy) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer plugin: out of host memory");
        char *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
            if (*d && try_dir(d, spec, path, size, looked, sizeof looked)) {
                free(copy);
                return P7_SUCCESS;
            }
        free(copy);
    }
    Dl_info info;
    if (dladdr((void *)&p7_optimizer_plugin_open, &info) && info.dli_fname && dir_of(info.dli_fname, dir, sizeof dir)) {
        char sub[4096 + 16];
        snprintf(sub, sizeof sub, "%s/p7/plugins", dir);
        if (try_dir(sub, spec, path, size, looked, sizeof looked)) return P7_SUCCESS;
    }
    return p7_fail(P7_ERROR_PLUGIN,
                   "optimizer plugin '%s' not found; looked for:%s\n"
                   "(pass a path such as plugins/lib%s.so, or add its folder to P7_PLUGIN_PATH)",
                   p7_abbrev(spec), looked, p7_abbrev(spec));
}

static p7_status check_table(const p7_opt_plugin *vt, const char *path)
{
    if (!vt)
        return p7_fail(P7_ERROR_PLUGIN,
                       "optimizer plugin %s declined this host (optimizer ABI %d.%d): it needs another p7",
                       path, P7_OPT_ABI_MAJOR, P7_OPT_ABI_MINOR);
    if (vt->abi_major < P7_OPT_ABI_MAJOR)
        return p7_fail(P7_ERROR_PLUGIN,
                       "optimizer plugin %s was built for optimizer ABI %u.%u, too old for this p7 (ABI %d.%d): "
                       "rebuild it against this p7's p7/optimizer_plugin.h",
                       path, (unsigned)vt->abi_major, (unsigned)vt->abi_minor, P7_OPT_ABI_MAJOR, P7_OPT_ABI_MINOR);
    if (vt->abi_major > P7_OPT_ABI_MAJOR)
        return p7_fail(P7_ERROR_PLUGIN,
                       "optimizer plugin %s was built for optimizer ABI %u.%u, too new for this p7 (ABI %d.%d): "
                       "upgrade p7 or use a plugin built for ABI %d",
                       path, (unsigned)vt->abi_major, (unsigned)vt->abi_minor, P7_OPT_ABI_MAJOR, P7_OPT_ABI_MINOR,
                       P7_OPT_ABI_MAJOR);
    if (vt->struct_size < P7_OPT_PLUGIN_MIN_SIZE)
        return p7_fail(P7_ERROR_PLUGIN,
                       "optimizer plugin %s: its table is %u bytes, smaller than ABI %d.0's %zu: set struct_size to "
                       "sizeof(p7_opt_plugin) and rebuild it against this p7's p7/optimizer_plugin.h",
                       path, (unsigned)vt->struct_size, P7_OPT_ABI_MAJOR, (size_t)P7_OPT_PLUGIN_MIN_SIZE);
    const char *bad = NULL;
    char missing[96];
    if (!vt->name || !*vt->name) bad = "no name";
    else if (vt->slot_count > P7_OPT_MAX_SLOTS) bad = "more state slots than P7_OPT_MAX_SLOTS";
    else if (vt->slot_count && !vt->slot_names) bad = "state slots without slot_names";
    else if (vt->hparam_count && !vt->hparams) bad = "hparam_count without a hparams array";
    else {
        const struct { const char *name; int present; } required[] = {
            {"create", vt->create != NULL}, {"destroy", vt->destroy != NULL}, {"init_state", vt->init_state != NULL},
            {"set_hparam", vt->set_hparam != NULL}, {"step", vt->step != NULL}, {"save", vt->save != NULL},
            {"load", vt->load != NULL},
        };
        for (size_t i = 0; !bad && i < sizeof required / sizeof required[0]; i++)
            if (!required[i].present) {
                snprintf(missing, sizeof missing, "the required function %s is NULL", required[i].name);
                bad = missing;
            }
    }
    if (!bad && (vt->caps & P7_OPT_CAP_SAMPLE) && (!vt->sample || !vt->restore))
        bad = "P7_OPT_CAP_SAMPLE without sample and restore";
    for (uint32_t i = 0; !bad && i < vt->hparam_count; i++)
        if (!vt->hparams[i].name || !(vt->hparams[i].min <= vt->hparams[i].max)) bad = "a malformed hyperparameter";
    if (bad) return p7_fail(P7_ERROR_PLUGIN, "optimizer plugin %s is malformed: %s", path, bad);
    return P7_SUCCESS;
}

p7_status p7_optimizer_plugin_open(const char *name_or_path, p7_optimizer_plugin **out)
{
    if (!name_or_path || !*name_or_path || !out)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_plugin_open: NULL or empty argument");
    *out = NULL;
    p7_optimizer_plugin *p = calloc(1, sizeof *p);
    if (!p) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_optimizer_plugin_open: out of host memory");
    p7_status st = resolve(name_or_path, p->path, sizeof p->path);
    if (st != P7_SUCCESS) { free(p); return st; }

    /* RTLD_NOW: a plugin with an unresolved symbol fails here, with dlerror's message,
     * instead of crashing mid-training. RTLD_LOCAL: two plugins may use the same
     * internal names without colliding. */
    dlerror();
    p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->handle) {
        const char *why = dlerror();
        st = p7_fail(P7_ERROR_PLUGIN, "optimizer plugin %s could not be loaded: %s", p7_abbrev(p->path),
                     why ? why : "unknown dlopen error");
        free(p);
        return st;
    }
    dlerror();
    void *sym = dlsym(p->handle, P7_OPT_ENTRY_SYMBOL);
    if (!sym) {
        st = p7_fail(P7_ERROR_PLUGIN,
                     "%s is not a p7 optimizer plugin: it does not export %s "
                     "(define it with P7_OPT_EXPORT, see docs/plugins.md)",
                     p7_abbrev(p->path), P7_OPT_ENTRY_SYMBOL);
        dlclose(p->handle);
        free(p);
        return st;
    }
    /* POSIX guarantees that a dlsym result converts to a function pointer. */
    p7_opt_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    p->vt = entry(P7_OPT_ABI_MAJOR, P7_OPT_ABI_MINOR);
    st = check_table(p->vt, p7_abbrev(p->path));
    if (st != P7_SUCCESS) {
        dlclose(p->handle);
        free(p);
        return st;
    }
    *out = p;
    return P7_SUCCESS;
}

void p7_optimizer_plugin_close(p7_optimizer_plugin *plugin)
{
    if (!plugin) return;
    if (plugin->handle) dlclose(plugin->handle);
    free(plugin);
}

const p7_opt_plugin *p7_optimizer_plugin_table(const p7_optimizer_plugin *plugin)
{
    return plugin ? plugin->vt : NULL;
}

const char *p7_optimizer_plugin_path(const p7_optimizer_plugin *plugin)
{
    return plugin ? plugin->path : "";
}

static void append(char *buf, size_t size, size_t *used, const char *fmt, ...) P7_PRINTF(4, 5);
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    if (*used >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (n > 0) *used += (size_t)n < size - *used ? (size_t)n : size - *used - 1;
}

static void format_range(const p7_opt_hparam *h, char *buf, size_t size)
{
    if (h->kind == P7_OPT_BOOL) {
        snprintf(buf, size, "0 or 1");
        return;
    }
    char lo[32], hi[32];
    if (isinf(h->min)) snprintf(lo, sizeof lo, "-inf");
    else snprintf(lo, sizeof lo, "%g", h->min);
    if (isinf(h->max)) snprintf(hi, sizeof hi, "inf");
    else snprintf(hi, sizeof hi, "%g", h->max);
    snprintf(buf, size, "%c%s, %s%c%s", (h->flags & P7_OPT_HP_MIN_OPEN) ? '(' : '[', lo, hi,
             (h->flags & P7_OPT_HP_MAX_OPEN) || (isinf(h->max) && !(h->flags & P7_OPT_HP_ALLOW_INF)) ? ')' : ']',
             h->kind == P7_OPT_INT ? " integer" : "");
}

const char *p7_optimizer_plugin_help(const p7_optimizer_plugin *plugin, char *buf, size_t size)
{
    if (!buf || !size) return buf;
    buf[0] = '\0';
    if (!plugin) return buf;
    const p7_opt_plugin *vt = plugin->vt;
    size_t used = 0;
    append(buf, size, &used, "%s %u (state %u, ABI %u.%u): %s\n  file: %s\n", vt->name, (unsigned)vt->version,
           (unsigned)vt->state_version, (unsigned)vt->abi_major, (unsigned)vt->abi_minor,
           vt->description ? vt->description : "", plugin->path);
    for (uint32_t i = 0; i < vt->hparam_count; i++) {
        const p7_opt_hparam *h = &vt->hparams[i];
        char range[96];
        format_range(h, range, sizeof range);
        append(buf, size, &used, "  %-13s default %-8g %-22s %s\n", h->name, h->default_value, range,
               h->doc ? h->doc : "");
    }
    return buf;
}

p7_status p7_optimizer_plugin_check_hparams(const p7_optimizer_plugin *plugin, const char *hparams)
{
    if (!plugin) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_optimizer_plugin_check_hparams: NULL plugin");
    return p7_opt_parse_assignments(plugin->vt, hparams, NULL, NULL, NULL);
}

int p7_opt_hparam_find(const p7_opt_plugin *vt, const char *name)
{
    for (uint32_t i = 0; i < vt->hparam_count; i++)
        if (strcmp(vt->hparams[i].name, name) == 0) return (int)i;
    return -1;
}

p7_status p7_opt_unknown_hparam(const p7_opt_plugin *vt, const char *name)
{
    char list[1024] = "";
    size_t used = 0;
    for (uint32_t i = 0; i < vt->hparam_count; i++)
        append(list, sizeof list, &used, "%s%s", i ? ", " : "", vt->hparams[i].name);
    return p7_fail(P7_ERROR_PLUGIN, "optimizer %s has no hyperparameter '%s'; valid: %s", vt->name, p7_abbrev(name),
                   vt->hparam_count ? list : "(none)");
}

p7_status p7_opt_hparam_check(const p7_opt_plugin *vt, int index, double value)
{
    const p7_opt_hparam *h = &vt->hparams[index];
    int ok = !isnan(value) && (!isinf(value) || (h->flags & P7_OPT_HP_ALLOW_INF));
    if (ok && h->kind == P7_OPT_BOOL) ok = value == 0.0 || value == 1.0;
    else if (ok) {
        ok = (h->flags & P7_OPT_HP_MIN_OPEN) ? value > h->min : value >= h->min;
        ok = ok && ((h->flags & P7_OPT_HP_MAX_OPEN) ? value < h->max : value <= h->max);
        if (ok && h->kind == P7_OPT_INT) ok = value == floor(value);
    }
    if (ok) return P7_SUCCESS;
    char range[96];
    format_range(h, range, sizeof range);
    return p7_fail(P7_ERROR_PLUGIN, "optimizer %s: %s = %g is out of range: allowed %s (%s)", vt->name, h->name,
                   value, range, h->doc ? h->doc : "");
}

static int parse_value(const char *text, double *out)
{
    static const struct { const char *word; double value; } words[] = {
        {"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0}, {"on", 1}, {"off", 0},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasecmp(text, words[i].word) == 0) {
            *out = words[i].value;
            return 1;
        }
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    return end != text && *end == '\0';
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

p7_status p7_opt_parse_assignments(const p7_opt_plugin *vt, const char *text, p7_opt_assign_fn fn,
                                   void *ctx, unsigned char *set)
{
    if (!text) return P7_SUCCESS;
    char *copy = strdup(text);
    unsigned char *seen = calloc(vt->hparam_count ? vt->hparam_count : 1, 1);
    if (!copy || !seen) {
        free(copy);
        free(seen);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "optimizer: out of host memory");
    }
    p7_status st = P7_SUCCESS;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && st == P7_SUCCESS; item = strtok_r(NULL, ",", &save)) {
        item = trim(item);
        if (!*item) continue;
        char *eq = strchr(item, '=');
        if (!eq) {
            st = p7_fail(P7_ERROR_PLUGIN, "optimizer %s: '%s' is not name=value", vt->name, p7_abbrev(item));
            break;
        }
        *eq = '\0';
        char *name = trim(item), *value_text = trim(eq + 1);
        int index = p7_opt_hparam_find(vt, name);
        if (index < 0) {
            st = p7_opt_unknown_hparam(vt, name);
            break;
        }
        /* "lr=0.1,lr=0.01" is a typo more often than an intent: which one did the user mean? */
        if (seen[index]) {
            st = p7_fail(P7_ERROR_PLUGIN, "optimizer %s: %s is given twice in '%s'", vt->name, name, p7_abbrev(text));
            break;
        }
        seen[index] = 1;
        double value;
        if (!parse_value(value_text, &value)) {
            if (vt->hparams[index].kind == P7_OPT_BOOL)
                st = p7_fail(P7_ERROR_PLUGIN,
                             "optimizer %s: %s = '%s' is not a boolean: expected true/false, yes/no, on/off or 1/0",
                             vt->name, name, p7_abbrev(value_text));
            else
                st = p7_fail(P7_ERROR_PLUGIN, "optimizer %s: %s = '%s' is not a number", vt->name, name,
                             p7_abbrev(value_text));
            break;
        }
        st = p7_opt_hparam_check(vt, index, value);
        if (st == P7_SUCCESS && fn) st = fn(ctx, index, value);
        if (st == P7_SUCCESS && set) set[index] = 1;
    }
    free(seen);
    free(copy);
    return st;
}
