/* Per-op timing from OpenCL profiling events: p7_launch records one event per kernel
 * (when the device profiles), p7_profile_collect sums them by label. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

void p7_profile_record(p7_device *device, const char *label, cl_event event)
{
    if (!device->profiling) { clReleaseEvent(event); return; }
    if (device->profile_count == device->profile_capacity) {
        size_t cap = device->profile_capacity ? device->profile_capacity * 2 : 256;
        p7_profile_entry *grown = realloc(device->profile, cap * sizeof *grown);
        if (!grown) { clReleaseEvent(event); return; } /* profiling is best effort */
        device->profile = grown;
        device->profile_capacity = cap;
    }
    p7_profile_entry *e = &device->profile[device->profile_count++];
    if (device->profiling >= 2 && device->profile_scope[0])
        snprintf(e->label, sizeof e->label, "%s/%s", device->profile_scope, label);
    else
        snprintf(e->label, sizeof e->label, "%s", label);
    e->event = event;
}

void p7_profile_set_scope(p7_device *device, const char *scope)
{
    snprintf(device->profile_scope, sizeof device->profile_scope, "%s", scope ? scope : "");
}

const char *p7_profile_scope(const p7_device *device) { return device->profile_scope; }

static int by_total_desc(const void *a, const void *b)
{
    double x = ((const p7_profile_row *)a)->total_ms, y = ((const p7_profile_row *)b)->total_ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

p7_status p7_profile_collect(p7_device *device, p7_profile_row *rows, size_t capacity, size_t *count)
{
    if (!device || !count || (capacity && !rows))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_profile_collect: NULL argument");
    if (!device->profiling)
        return p7_fail(P7_ERROR_STATE, "p7_profile_collect: the device was opened without profiling "
                                       "(set p7_device_options.profiling or P7_PROFILE=1)");
    P7_CL_TRY(clFinish(device->queue), "p7_profile_collect: clFinish");
    p7_profile_row *all = calloc(device->profile_count + 1, sizeof *all);
    if (!all) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_profile_collect: out of host memory");
    size_t n = 0;
    for (size_t i = 0; i < device->profile_count; i++) {
        p7_profile_entry *e = &device->profile[i];
        cl_ulong start = 0, end = 0;
        clGetEventProfilingInfo(e->event, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL);
        clGetEventProfilingInfo(e->event, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
        clReleaseEvent(e->event);
        size_t j = 0;
        while (j < n && strcmp(all[j].label, e->label) != 0) j++;
        if (j == n) snprintf(all[n++].label, sizeof all->label, "%s", e->label);
        all[j].launches++;
        all[j].total_ms += end > start ? (double)(end - start) * 1e-6 : 0.0;
    }
    device->profile_count = 0;
    qsort(all, n, sizeof *all, by_total_desc);
    for (size_t i = 0; i < n && i < capacity; i++) rows[i] = all[i];
    *count = n;
    free(all);
    return P7_SUCCESS;
}

void p7_profile_shutdown(p7_device *device)
{
    for (size_t i = 0; i < device->profile_count; i++) clReleaseEvent(device->profile[i].event);
    free(device->profile);
    device->profile = NULL;
    device->profile_count = device->profile_capacity = 0;
}
