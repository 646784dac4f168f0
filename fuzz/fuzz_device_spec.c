/* Device specs (device_spec.c): p7_device_select is a pure matcher over a device
 * list, so the input describes both. Line 1 is the spec; then each device takes
 * five lines: "<kind letter> <platform> <device>" (g, c, a, anything else = other),
 * name, vendor, platform name, platform version. A success must name a device in
 * the list; a refusal must say why. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"

enum { MAX_DEVICES = 8 };

/* The next line of [*at, end) into buf (cut to size), advancing *at; 0 at the end. */
static int next_line(const char **at, const char *end, char *buf, size_t size)
{
    if (*at >= end) return 0;
    const char *nl = memchr(*at, '\n', (size_t)(end - *at));
    size_t n = nl ? (size_t)(nl - *at) : (size_t)(end - *at);
    size_t keep = n < size - 1 ? n : size - 1;
    memcpy(buf, *at, keep);
    buf[keep] = '\0';
    *at += n + (nl != NULL);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *at = (const char *)data, *end = at + size;
    char spec[512];
    if (!next_line(&at, end, spec, sizeof spec)) spec[0] = '\0';
    p7_device_info infos[MAX_DEVICES];
    size_t count = 0;
    char head[64];
    while (count < MAX_DEVICES && next_line(&at, end, head, sizeof head)) {
        p7_device_info *d = &infos[count];
        memset(d, 0, sizeof *d);
        d->kind = head[0] == 'g' ? P7_DEVICE_KIND_GPU : head[0] == 'c' ? P7_DEVICE_KIND_CPU
                : head[0] == 'a' ? P7_DEVICE_KIND_ACCELERATOR : P7_DEVICE_KIND_OTHER;
        char *p = head[0] ? head + 1 : head;
        d->platform_index = (unsigned)strtoul(p, &p, 10);
        d->device_index = (unsigned)strtoul(p, &p, 10);
        next_line(&at, end, d->name, sizeof d->name);
        next_line(&at, end, d->vendor, sizeof d->vendor);
        next_line(&at, end, d->platform_name, sizeof d->platform_name);
        next_line(&at, end, d->platform_version, sizeof d->platform_version);
        count++;
    }
    size_t index = (size_t)-1;
    /* An empty spec also goes as NULL, the "no preference" form. */
    p7_status st = p7_device_select(spec[0] || size % 2 ? spec : NULL, infos, count, &index);
    if (st == P7_SUCCESS) FUZZ_CHECK(index < count);
    else FUZZ_CHECK(p7_last_error()[0] != '\0');
    return 0;
}
