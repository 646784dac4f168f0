/* `p7plugin check`: the conformance checklist of an optimizer plugin. */
#ifndef P7PLUGIN_CHECK_H
#define P7PLUGIN_CHECK_H

#include <stdio.h>

/* Loads the plugin (a path or a short name) and runs every check on the device named by
 * `device_spec` (NULL: P7_DEVICE, else the first GPU, else the CPU), printing one line per
 * item to `out` ("ok", "FAIL" with the fault, or "skip" with the reason). Returns the
 * number of failed items (0: the plugin conforms), or -1 when no check could run (the
 * plugin or the device did not open); the reason is then printed too. */
int p7plugin_check(const char *plugin, const char *device_spec, FILE *out);

#endif
