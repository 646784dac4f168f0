/* Numbers as text, the way the original study's Python wrote them, so that its notebooks
 * read p7bench's CSV files unchanged and a configuration has one spelling.
 *
 * Python's repr(float) is the shortest text that reads back to the same double: 0.0002,
 * 70.14, 65.88533333333334, 1e-05, 1.0. The original wrote alpha -1, 0 and 1 as Python
 * integers (seed-study 10.1), hence the integral form: -1 but -0.8. */
#ifndef P7BENCH_NUMBERS_H
#define P7BENCH_NUMBERS_H

#include <stddef.h>

/* Python repr of a float: "0.0002", "70.0", "1e-05", "nan", "inf", "-0.0". Writes at most
 * size bytes (32 always suffice); returns out. */
char *p7bench_format_float(double v, char *out, size_t size);

/* As p7bench_format_float, but an integral value of magnitude below 1e15 is written as a
 * Python int would be: "-1", "0", "256". Configuration values and alpha/gamma use it. */
char *p7bench_format_number(double v, char *out, size_t size);

/* Whole-string parses ("2x", "", " 1" are errors). Return 1 on success. */
int p7bench_parse_double(const char *text, double *out);   /* also "nan", "inf" */
int p7bench_parse_integer(const char *text, long long *out);

#endif
