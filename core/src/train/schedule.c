/* Learning-rate schedules: a pure function of the position, and their text form. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7/train.h"
#include "runtime/runtime.h"

static const double pi = 3.14159265358979323846;

/* lr/5 at the first warm-up position, as torch's LinearLR(start_factor=0.2) in the IVON scripts */
static double warmup_start(const p7_schedule *s) { return s->start > 0 ? s->start : 0.2; }

double p7_schedule_lr(const p7_schedule *s, double base_lr, uint64_t position, uint64_t total, uint64_t per_epoch)
{
    if (!s || s->kind == P7_SCHEDULE_CONSTANT || total == 0) return base_lr;
    const double t = (double)position, n = (double)total;
    double warmup = 0;
    if (s->kind == P7_SCHEDULE_WARMUP_COSINE)
        warmup = s->warmup_fraction > 0 ? s->warmup_fraction * n : s->warmup_epochs * (double)(per_epoch ? per_epoch : 1);
    if (s->kind == P7_SCHEDULE_WARMUP_COSINE && warmup < s->min_warmup) warmup = s->min_warmup;
    if (warmup > n) warmup = n;
    if (t < warmup) {
        double f = warmup_start(s);
        return base_lr * (f + (1.0 - f) * t / warmup);
    }
    double low = s->floor * base_lr;
    double progress = n > warmup ? (t - warmup) / (n - warmup) : 1.0;
    if (progress > 1.0) progress = 1.0;
    return low + (base_lr - low) * 0.5 * (1.0 + cos(pi * progress));
}

static const char *kind_name(p7_schedule_kind k)
{
    switch (k) {
    case P7_SCHEDULE_CONSTANT: return "constant";
    case P7_SCHEDULE_COSINE: return "cosine";
    case P7_SCHEDULE_WARMUP_COSINE: return "warmup-cosine";
    }
    return "?";
}

/* A finite number filling all of `text`, else 0. */
static int parse_number(const char *text, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (*end != '\0' || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static p7_status bad_value(const char *text, const char *key, const char *value, size_t len, const char *want)
{
    return p7_fail(P7_ERROR_INVALID_ARGUMENT, "schedule '%s': %s=%.*s: expected %s", text, key, (int)len, value, want);
}

/* One key=value of the option list. */
static p7_status parse_option(const char *text, const char *opt, size_t len, p7_schedule *s)
{
    const char *eq = memchr(opt, '=', len);
    if (!eq)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "schedule '%s': '%.*s' is no key=value (keys: per, warmup, min-warmup, start, floor)",
                       text, (int)len, opt);
    size_t klen = (size_t)(eq - opt), vlen = len - klen - 1;
    const char *v = eq + 1;
    double x;
#define KEY(name) (klen == strlen(name) && memcmp(opt, name, klen) == 0)
    if (KEY("per")) {
        if (vlen == 5 && memcmp(v, "epoch", 5) == 0) s->per_step = 0;
        else if (vlen == 4 && memcmp(v, "step", 4) == 0) s->per_step = 1;
        else return bad_value(text, "per", v, vlen, "epoch or step");
    } else if (KEY("warmup")) {
        if (s->kind != P7_SCHEDULE_WARMUP_COSINE)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "schedule '%s': warmup= belongs to warmup-cosine only", text);
        if (vlen > 1 && v[vlen - 1] == '%') {
            if (!parse_number(v, vlen - 1, &x) || !(x > 0 && x <= 100))
                return bad_value(text, "warmup", v, vlen, "a percentage of the run in (0, 100]");
            s->warmup_fraction = x / 100.0;
            s->warmup_epochs = 0;
        } else {
            if (!parse_number(v, vlen, &x) || !(x >= 0))
                return bad_value(text, "warmup", v, vlen, "epochs >= 0, or a percentage such as 10%");
            s->warmup_epochs = x;
            s->warmup_fraction = 0;
        }
    } else if (KEY("min-warmup")) {
        if (s->kind != P7_SCHEDULE_WARMUP_COSINE)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "schedule '%s': min-warmup= belongs to warmup-cosine only", text);
        if (!parse_number(v, vlen, &x) || !(x >= 0))
            return bad_value(text, "min-warmup", v, vlen, "positions (steps with per=step) >= 0");
        s->min_warmup = x;
    } else if (KEY("start")) {
        if (s->kind != P7_SCHEDULE_WARMUP_COSINE)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "schedule '%s': start= belongs to warmup-cosine only", text);
        if (!parse_number(v, vlen, &x) || !(x > 0 && x <= 1))
            return bad_value(text, "start", v, vlen, "a fraction of lr in (0, 1]");
        s->start = x;
    } else if (KEY("floor")) {
        if (s->kind == P7_SCHEDULE_CONSTANT)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "schedule '%s': floor= belongs to cosine and warmup-cosine", text);
        if (!parse_number(v, vlen, &x) || !(x >= 0 && x < 1))
            return bad_value(text, "floor", v, vlen, "a fraction of lr in [0, 1)");
        s->floor = x;
    } else {
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "schedule '%s': no key '%.*s' (keys: per, warmup, min-warmup, start, floor)", text,
                       (int)klen, opt);
    }
#undef KEY
    return P7_SUCCESS;
}

p7_status p7_schedule_parse(const char *text, p7_schedule *out)
{
    if (!text || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_schedule_parse: NULL argument");
    p7_schedule s = {0};
    const char *colon = strchr(text, ':');
    size_t nlen = colon ? (size_t)(colon - text) : strlen(text);
    static const p7_schedule_kind kinds[] = {P7_SCHEDULE_CONSTANT, P7_SCHEDULE_COSINE, P7_SCHEDULE_WARMUP_COSINE};
    int found = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        const char *name = kind_name(kinds[i]);
        if (strlen(name) == nlen && memcmp(name, text, nlen) == 0) {
            s.kind = kinds[i];
            found = 1;
        }
    }
    if (!found)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                       "schedule '%s': unknown name '%.*s' (expected constant, cosine or warmup-cosine)", text,
                       (int)nlen, text);
    if (s.kind == P7_SCHEDULE_WARMUP_COSINE) s.warmup_epochs = 1; /* a warm-up of one epoch unless told */
    if (colon) {
        const char *opt = colon + 1;
        if (!*opt) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "schedule '%s': nothing after ':'", text);
        for (;;) {
            const char *comma = strchr(opt, ',');
            size_t len = comma ? (size_t)(comma - opt) : strlen(opt);
            P7_TRY(parse_option(text, opt, len, &s));
            if (!comma) break;
            opt = comma + 1;
        }
    }
    *out = s;
    return P7_SUCCESS;
}

const char *p7_schedule_format(const p7_schedule *s, char *buf, size_t size)
{
    if (!buf || size == 0) return buf;
    if (!s) {
        snprintf(buf, size, "constant");
        return buf;
    }
    int n = snprintf(buf, size, "%s:per=%s", kind_name(s->kind), s->per_step ? "step" : "epoch");
    if (s->kind == P7_SCHEDULE_WARMUP_COSINE && n >= 0 && (size_t)n < size) {
        if (s->warmup_fraction > 0)
            n += snprintf(buf + n, size - (size_t)n, ",warmup=%.15g%%", s->warmup_fraction * 100.0);
        else
            n += snprintf(buf + n, size - (size_t)n, ",warmup=%.15g", s->warmup_epochs);
        if (s->min_warmup > 0 && n >= 0 && (size_t)n < size)
            n += snprintf(buf + n, size - (size_t)n, ",min-warmup=%.15g", s->min_warmup);
        if (n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, ",start=%.15g", warmup_start(s));
    }
    if (s->kind != P7_SCHEDULE_CONSTANT && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, ",floor=%.15g", s->floor);
    return buf;
}
