/* `p7plugin compare`: a plugin, stepped on the parameters, gradients and noise of a
 * reference file (e.g. written by a PyTorch run), against the values that file expects. */
#ifndef P7PLUGIN_COMPARE_H
#define P7PLUGIN_COMPARE_H

#include <stdio.h>

/* Prints one line per step to `out` (the largest difference in the weights and in each
 * slot the file gives, where, and in float32 ulps) and a summary. A value matches when
 * |p7 - reference| <= tolerance * max(1, |reference|) (NaN matches only NaN). Returns 0
 * when every value matches, 1 when one does not, -1 when the comparison could not run
 * (unreadable or malformed file, plugin, device); the reason is then printed to `out`. */
int p7plugin_compare(const char *plugin, const char *reference_path, const char *device_spec, double tolerance,
                     FILE *out);

#endif
