/* Numbers as text (see p7bench_numbers.h). */
#include "p7bench_numbers.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shortest decimal digits that read back to v (v finite, nonzero): digits without a
 * point into `digits`, and the exponent of the first digit (v = d.ddd x 10^exponent). */
static void shortest_digits(double v, char *digits, size_t size, int *exponent)
{
    char text[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*e", precision - 1, v);
        if (strtod(text, NULL) == v) break;
    }
    /* text is "d.ddde[+-]xx" or "de[+-]xx" */
    size_t n = 0;
    const char *p = text;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && n + 1 < size) digits[n++] = *p;
    digits[n] = '\0';
    *exponent = atoi(p + 1);
    while (n > 1 && digits[n - 1] == '0') digits[--n] = '\0'; /* 1.50e+00 at precision 3 */
}

char *p7bench_format_float(double v, char *out, size_t size)
{
    if (isnan(v)) return snprintf(out, size, "nan"), out;
    if (isinf(v)) return snprintf(out, size, v < 0 ? "-inf" : "inf"), out;
    if (v == 0.0) return snprintf(out, size, signbit(v) ? "-0.0" : "0.0"), out;
    char digits[24], text[48];
    int e;
    shortest_digits(fabs(v), digits, sizeof digits, &e);
    int nd = (int)strlen(digits);
    char *t = text;
    if (v < 0) *t++ = '-';
    if (e >= -4 && e < 16) { /* Python's repr switches to exponent form outside this range */
        if (e < 0) {
            t += sprintf(t, "0.");
            for (int i = 0; i < -e - 1; i++) *t++ = '0';
            t += sprintf(t, "%s", digits);
        } else {
            for (int i = 0; i <= e; i++) *t++ = i < nd ? digits[i] : '0';
            *t++ = '.';
            if (nd > e + 1) t += sprintf(t, "%s", digits + e + 1);
            else *t++ = '0';
        }
    } else {
        *t++ = digits[0];
        if (nd > 1) t += sprintf(t, ".%s", digits + 1);
        t += sprintf(t, "e%c%02d", e < 0 ? '-' : '+', abs(e));
    }
    *t = '\0';
    snprintf(out, size, "%s", text);
    return out;
}

char *p7bench_format_number(double v, char *out, size_t size)
{
    if (isfinite(v) && v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, size, "%lld", (long long)v);
        return out;
    }
    return p7bench_format_float(v, out, size);
}

int p7bench_parse_double(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno == ERANGE && fabs(v) > 1.0) return 0; /* overflow; underflow to tiny is fine */
    if (end == text || *end || (*text == ' ' || *text == '\t')) return 0;
    *out = v;
    return 1;
}

int p7bench_parse_integer(const char *text, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || *text == ' ' || *text == '\t' || *text == '+') return 0;
    *out = v;
    return 1;
}
