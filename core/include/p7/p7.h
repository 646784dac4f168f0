/* p7: a portable deep-learning library in C for OpenCL. The umbrella header. */
#ifndef P7_P7_H
#define P7_P7_H

#include "p7/status.h"
#include "p7/device.h"
#include "p7/memory.h"
#include "p7/tensor.h"
#include "p7/gemm.h"
#include "p7/autograd.h"
#include "p7/ops.h"
#include "p7/nn.h"
#include "p7/rng.h"
#include "p7/faithful.h"
#include "p7/data.h"
#include "p7/optimizer.h"
#include "p7/metrics.h"
#include "p7/train.h"

#define P7_VERSION_MAJOR 0
#define P7_VERSION_MINOR 1
#define P7_VERSION_PATCH 0

#endif
