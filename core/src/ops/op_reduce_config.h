/* Build options shared by the reduction-style kernels (batchnorm.cl, softmax.cl,
 * reduce.cl): the work-group size of their local-memory trees and whether they may
 * accumulate in double precision.
 *
 * Work-group size is a compile-time constant (-DP7_WG) so the trees can size their
 * __local arrays statically; it is the same on every call for one device, which is
 * what keeps those reductions bit-reproducible. Both come from limits the device read
 * once when it opened; p7_device_options.reduce_in_float forces the float path on fp64
 * devices (tests use it to exercise that path on PoCL). */
#ifndef P7_OP_REDUCE_CONFIG_H
#define P7_OP_REDUCE_CONFIG_H

#include <stdio.h>

#include "tensor/tensor_internal.h"

#define P7_REDUCE_WG_MAX 128

typedef struct p7_reduce_config {
    size_t wg;         /* power of two, <= P7_REDUCE_WG_MAX */
    int fp64;          /* accumulators are double */
    size_t acc_bytes;  /* sizeof the accumulator type on the device */
    char options[64];
} p7_reduce_config;

static inline p7_status p7_reduce_config_get(p7_device *device, p7_reduce_config *cfg)
{
    size_t wg = P7_REDUCE_WG_MAX;
    while (wg > 1 && wg > device->max_work_group_size) wg /= 2;
    cfg->wg = wg;
    cfg->fp64 = device->has_fp64 && !device->reduce_in_float;
    cfg->acc_bytes = cfg->fp64 ? 8 : 4;
    snprintf(cfg->options, sizeof cfg->options, "-DP7_WG=%zu%s", wg, cfg->fp64 ? " -DP7_FP64=1" : "");
    return P7_SUCCESS;
}

#endif
