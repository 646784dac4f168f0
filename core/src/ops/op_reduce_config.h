/* Build options shared by the reduction-style kernels (batchnorm.cl, softmax.cl,
 * reduce.cl): the work-group size of their local-memory trees and whether they may
 * accumulate in double precision.
 *
 * Work-group size is a compile-time constant (-DP7_WG) so the trees can size their
 * __local arrays statically; it is the same on every call for one device, which is
 * what keeps those reductions bit-reproducible. P7_NO_FP64=1 in the environment forces
 * the float path on fp64 devices (tests use it to exercise that path on PoCL). */
#ifndef P7_OP_REDUCE_CONFIG_H
#define P7_OP_REDUCE_CONFIG_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor_internal.h"

#define P7_REDUCE_WG_MAX 128

typedef struct p7_reduce_config {
    size_t wg;         /* power of two, <= P7_REDUCE_WG_MAX */
    int fp64;          /* accumulators are double */
    size_t acc_bytes;  /* sizeof the accumulator type on the device */
    char options[64];
} p7_reduce_config;

static inline int p7_reduce_device_has_fp64(p7_device *device)
{
    const char *off = getenv("P7_NO_FP64");
    if (off && off[0] && strcmp(off, "0") != 0) return 0;
    size_t size = 0;
    if (clGetDeviceInfo(device->id, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS || size == 0) return 0;
    char *ext = malloc(size + 1);
    if (!ext) return 0; /* the float path is always correct, only less precise */
    int has = 0;
    if (clGetDeviceInfo(device->id, CL_DEVICE_EXTENSIONS, size, ext, NULL) == CL_SUCCESS) {
        ext[size] = '\0';
        has = strstr(ext, "cl_khr_fp64") != NULL;
    }
    free(ext);
    return has;
}

static inline p7_status p7_reduce_config_get(p7_device *device, p7_reduce_config *cfg)
{
    size_t max_wg = 0;
    P7_CL_TRY(clGetDeviceInfo(device->id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL),
              "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)");
    size_t wg = P7_REDUCE_WG_MAX;
    while (wg > 1 && wg > max_wg) wg /= 2;
    cfg->wg = wg;
    cfg->fp64 = p7_reduce_device_has_fp64(device);
    cfg->acc_bytes = cfg->fp64 ? 8 : 4;
    snprintf(cfg->options, sizeof cfg->options, "-DP7_WG=%zu%s", wg, cfg->fp64 ? " -DP7_FP64=1" : "");
    return P7_SUCCESS;
}

#endif
