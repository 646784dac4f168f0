/* The CLBlast GEMM backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clblast_c.h>

#include "gemm/gemm_internal.h"
#include "runtime/runtime.h"

/* CLBlast has no tuning database entry for PoCL, and its defaults reach 3-12% of peak
 * there. These Xgemm parameters came from clblast_tuner_xgemm on a 2-core Zen 4 under
 * PoCL 3.1 and reach ~30% (../shared/reference/perf-baseline.md, section 3, beside the checkout). P7_CLBLAST_TUNING=0 keeps
 * CLBlast's defaults. */
static const char *const pocl_xgemm_names[] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC",
                                               "MWG", "NDIMB", "NDIMC", "NWG", "SA", "SB",
                                               "STRM", "STRN", "VWM", "VWN"};
static const size_t pocl_xgemm_values[] = {0, 1, 32, 2, 8, 8, 64, 32, 8, 128, 0, 0, 0, 0, 8, 4};

/* Per device: whether the overrides are applied. CLBlast caches compiled programs per
 * context, so its cache is cleared before the device's context goes. */
typedef struct clblast_state {
    int prepared;
} clblast_state;

static const char clblast_state_key = 0;

static void clblast_state_destroy(p7_device *device, void *state)
{
    (void)device;
    if (((clblast_state *)state)->prepared) CLBlastClearCache();
}

static p7_status prepare(p7_device *device)
{
    void *slot;
    P7_TRY(p7_device_state(device, &clblast_state_key, sizeof(clblast_state), clblast_state_destroy, &slot));
    clblast_state *state = slot;
    if (state->prepared) return P7_SUCCESS;
    const char *env = getenv("P7_CLBLAST_TUNING");
    int tune = device->is_pocl && device->info.kind == P7_DEVICE_KIND_CPU && !(env && strcmp(env, "0") == 0);
    if (tune) {
        CLBlastStatusCode s = CLBlastOverrideParameters(
            device->id, "Xgemm", CLBlastPrecisionSingle, sizeof pocl_xgemm_names / sizeof *pocl_xgemm_names,
            (const char **)pocl_xgemm_names, pocl_xgemm_values);
        if (s != CLBlastSuccess)
            return p7_fail(P7_ERROR_CLBLAST, "CLBlastOverrideParameters(Xgemm) for %s failed with %d",
                           device->info.name, (int)s);
    }
    state->prepared = 1;
    return P7_SUCCESS;
}

p7_status p7_gemm_clblast_run(p7_device *device, const p7_gemm_desc *d, cl_mem a, cl_mem b, cl_mem c)
{
    P7_TRY(prepare(device));
    cl_event event = NULL;
    CLBlastStatusCode s = CLBlastSgemm(CLBlastLayoutRowMajor, d->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                                       d->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, d->m, d->n, d->k,
                                       d->alpha, a, d->a_offset, d->lda, b, d->b_offset, d->ldb, d->beta, c,
                                       d->c_offset, d->ldc, &device->queue, device->profiling ? &event : NULL);
    if (s != CLBlastSuccess)
        return p7_fail(s > -1024 && s < 0 ? (p7_status)s : P7_ERROR_CLBLAST,
                       "CLBlastSgemm (m=%zu n=%zu k=%zu, trans_a=%d trans_b=%d) failed with CLBlast status %d",
                       d->m, d->n, d->k, d->trans_a, d->trans_b, (int)s);
    if (event) p7_profile_record(device, "gemm.clblast", event);
    return P7_SUCCESS;
}
