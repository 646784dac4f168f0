/* BatchNorm2d forward and backward, plain and BatchEnsemble (kernels/batchnorm.cl).
 *
 * Statistics pool every row of x (all members, as the original study's BE BatchNorm
 * did); only the affine weight/bias are per member. */
#include "ops/fused_internal.h"
#include "ops/op_kernels.h"
#include "ops/op_reduce_config.h"
#include "runtime/p7_kernels.h"

#define BN_FILE (&p7_kernels_batchnorm)

typedef struct bn_geometry {
    cl_uint rows, channels, hw, rows_per_member;
} bn_geometry;

static p7_status same_device(const char *op, const p7_tensor *x, const p7_tensor *t)
{
    if (t && p7_tensor_device(t) != p7_tensor_device(x))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: tensors are on different devices", op);
    return P7_SUCCESS;
}

/* t must be NULL or hold exactly `want` elements. */
static p7_status check_numel(const char *op, const char *name, const p7_tensor *t, size_t want, const char *sx,
                             const char *expect)
{
    if (!t || p7_tensor_numel(t) == want) return P7_SUCCESS;
    char st[128];
    return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %s %s must be %s for x %s", op, name,
                   p7_shape_format(p7_tensor_ndim(t), p7_tensor_shape(t), st, sizeof st), expect, sx);
}

static p7_status geometry_of(const char *op, const p7_tensor *x, int members, bn_geometry *g, char *sx, size_t sxn)
{
    if (!x) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL x", op);
    p7_shape_format(p7_tensor_ndim(x), p7_tensor_shape(x), sx, sxn);
    if (p7_tensor_ndim(x) < 2)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: x %s needs at least 2 axes [N, C, ...]", op, sx);
    const int64_t n = p7_tensor_dim(x, 0), c = p7_tensor_dim(x, 1);
    if (members < 1 || n % members != 0)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %d members do not divide the %lld rows of x %s", op, members,
                       (long long)n, sx);
    const size_t hw = p7_tensor_numel(x) / (size_t)(n * c);
    if ((uint64_t)n * (uint64_t)hw > UINT32_MAX || (uint64_t)c > UINT32_MAX)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: x %s is too large (more than 2^32 values per channel)", op, sx);
    g->rows = (cl_uint)n;
    g->channels = (cl_uint)c;
    g->hw = (cl_uint)hw;
    g->rows_per_member = (cl_uint)(n / members);
    return P7_SUCCESS;
}

/* Reduction build options plus the channel walk: whole planes per work-item on CPU
 * devices (streams contiguous memory), interleaved elements elsewhere (coalesced).
 * p7_device_options.batchnorm_walk picks one, so tests cover both on one device. */
static int bn_planes(p7_device *d)
{
    return d->batchnorm_walk == 0 ? d->info.kind == P7_DEVICE_KIND_CPU : d->batchnorm_walk == 1;
}

static p7_status bn_options(p7_device *d, char *opts, size_t size)
{
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    snprintf(opts, size, "%s%s", cfg.options, bn_planes(d) ? " -DP7_BN_PLANES=1" : "");
    return P7_SUCCESS;
}

/* The CPU walk's 16-lane kernels take planes of a multiple of 16 values. */
static int bn_v16(p7_device *d, cl_uint hw) { return bn_planes(d) && hw % 16 == 0; }

p7_status p7_batchnorm2d_forward(const p7_tensor *x, const p7_tensor *weight, const p7_tensor *bias,
                                 int members, p7_tensor *running_mean, p7_tensor *running_var,
                                 int training, float momentum, float eps, p7_tensor *save_mean,
                                 p7_tensor *save_invstd, p7_tensor *y)
{
    const char *op = "batchnorm2d";
    char sx[128], mc[64], c1[64];
    bn_geometry g;
    P7_TRY(geometry_of(op, x, members, &g, sx, sizeof sx));
    if (!y) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL y", op);
    snprintf(mc, sizeof mc, "[%d, %u] (members, channels)", members, g.channels);
    snprintf(c1, sizeof c1, "[%u] (channels)", g.channels);
    const size_t c = g.channels;
    P7_TRY(check_numel(op, "weight", weight, (size_t)members * c, sx, mc));
    P7_TRY(check_numel(op, "bias", bias, (size_t)members * c, sx, mc));
    P7_TRY(check_numel(op, "running_mean", running_mean, c, sx, c1));
    P7_TRY(check_numel(op, "running_var", running_var, c, sx, c1));
    P7_TRY(check_numel(op, "save_mean", save_mean, c, sx, c1));
    P7_TRY(check_numel(op, "save_invstd", save_invstd, c, sx, c1));
    P7_TRY(check_numel(op, "y", y, p7_tensor_numel(x), sx, "the shape of x"));
    const p7_tensor *all[] = {weight, bias, running_mean, running_var, save_mean, save_invstd, y};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) P7_TRY(same_device(op, x, all[i]));
    if ((running_mean == NULL) != (running_var == NULL))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: running_mean and running_var must both be given or both NULL",
                       op);
    if (!training && !running_mean)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: evaluation mode needs running statistics", op);
    const uint64_t count = (uint64_t)g.rows * g.hw;
    if (training && count < 2)
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "%s: training needs more than one value per channel (x %s); the unbiased variance is undefined",
                       op, sx);

    p7_device *d = p7_tensor_device(x);
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    char opts[96];
    P7_TRY(bn_options(d, opts, sizeof opts));

    /* The statistics need somewhere to live even when the caller does not keep them. */
    p7_buffer *scratch = NULL;
    cl_mem smem, imem;
    cl_ulong smo, sio;
    if (save_mean && save_invstd) {
        smem = p7_tensor_mem(save_mean);
        imem = p7_tensor_mem(save_invstd);
        smo = p7_tensor_offset(save_mean);
        sio = p7_tensor_offset(save_invstd);
    } else {
        P7_TRY(p7_buffer_alloc(d, 2 * c * sizeof(float), &scratch));
        smem = imem = p7_buffer_mem(scratch);
        smo = 0;
        sio = c;
        if (save_mean) { smem = p7_tensor_mem(save_mean); smo = p7_tensor_offset(save_mean); }
        if (save_invstd) { imem = p7_tensor_mem(save_invstd); sio = p7_tensor_offset(save_invstd); }
    }

    p7_status st = P7_SUCCESS;
    cl_kernel k;
    cl_mem rm = running_mean ? p7_tensor_mem(running_mean) : NULL;
    cl_mem rv = running_var ? p7_tensor_mem(running_var) : NULL;
    cl_ulong rmo = running_mean ? p7_tensor_offset(running_mean) : 0;
    cl_ulong rvo = running_var ? p7_tensor_offset(running_var) : 0;
    if (training) {
        st = p7_kernel_get(d, BN_FILE, opts, bn_v16(d, g.hw) ? "batchnorm_stats_v16" : "batchnorm_stats", &k);
        cl_mem xm = p7_tensor_mem(x);
        cl_ulong xo = p7_tensor_offset(x);
        cl_int has_running = running_mean != NULL;
        if (st == P7_SUCCESS)
            st = P7_SET_ARGS(k, "batchnorm2d stats", P7_ARG(xm), P7_ARG(xo), P7_ARG(g.channels), P7_ARG(g.hw),
                             P7_ARG(g.rows), P7_ARG(momentum), P7_ARG(eps), P7_ARG(smem), P7_ARG(smo), P7_ARG(imem),
                             P7_ARG(sio), P7_ARG(rm), P7_ARG(rmo), P7_ARG(rv), P7_ARG(rvo), P7_ARG(has_running));
        size_t global = c * cfg.wg, local = cfg.wg;
        if (st == P7_SUCCESS) st = p7_launch(d, k, 1, &global, &local, "batchnorm2d.stats");
    } else {
        st = p7_kernel_get(d, BN_FILE, opts, "batchnorm_eval_stats", &k);
        if (st == P7_SUCCESS)
            st = P7_SET_ARGS(k, "batchnorm2d eval stats", P7_ARG(rm), P7_ARG(rmo), P7_ARG(rv), P7_ARG(rvo),
                             P7_ARG(eps), P7_ARG(smem), P7_ARG(smo), P7_ARG(imem), P7_ARG(sio), P7_ARG(g.channels));
        size_t global = (c + 63) / 64 * 64;
        if (st == P7_SUCCESS) st = p7_launch(d, k, 1, &global, NULL, "batchnorm2d.eval_stats");
    }

    if (st == P7_SUCCESS) st = p7_kernel_get(d, BN_FILE, opts, "batchnorm_apply", &k);
    if (st == P7_SUCCESS) {
        cl_mem xm = p7_tensor_mem(x), ym = p7_tensor_mem(y);
        cl_ulong xo = p7_tensor_offset(x), yo = p7_tensor_offset(y);
        cl_mem wm = weight ? p7_tensor_mem(weight) : NULL, bm = bias ? p7_tensor_mem(bias) : NULL;
        cl_ulong wo = weight ? p7_tensor_offset(weight) : 0, bo = bias ? p7_tensor_offset(bias) : 0;
        cl_int has_w = weight != NULL, has_b = bias != NULL;
        st = P7_SET_ARGS(k, "batchnorm2d apply", P7_ARG(xm), P7_ARG(xo), P7_ARG(smem), P7_ARG(smo), P7_ARG(imem),
                         P7_ARG(sio), P7_ARG(wm), P7_ARG(wo), P7_ARG(has_w), P7_ARG(bm), P7_ARG(bo), P7_ARG(has_b),
                         P7_ARG(g.rows_per_member), P7_ARG(ym), P7_ARG(yo));
        size_t global[3] = {g.hw, g.channels, g.rows};
        if (st == P7_SUCCESS) st = p7_launch(d, k, 3, global, NULL, "batchnorm2d.apply");
    }
    /* Queued kernels still use the scratch; the in-order queue runs any later user of
     * this block (the allocator hands it out again) only after them. */
    p7_buffer_free(scratch);
    return st;
}

p7_status p7_batchnorm2d_backward(const p7_tensor *x, const p7_tensor *weight, int members, int training,
                                  const p7_tensor *save_mean, const p7_tensor *save_invstd,
                                  const p7_tensor *dy, p7_tensor *dx, int dx_accumulate,
                                  p7_tensor *dweight, int dweight_accumulate, p7_tensor *dbias,
                                  int dbias_accumulate)
{
    const char *op = "batchnorm2d backward";
    char sx[128], mc[64], c1[64];
    bn_geometry g;
    P7_TRY(geometry_of(op, x, members, &g, sx, sizeof sx));
    if (!save_mean || !save_invstd || !dy)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL save_mean, save_invstd or dy", op);
    snprintf(mc, sizeof mc, "[%d, %u] (members, channels)", members, g.channels);
    snprintf(c1, sizeof c1, "[%u] (channels)", g.channels);
    const size_t c = g.channels;
    P7_TRY(check_numel(op, "weight", weight, (size_t)members * c, sx, mc));
    P7_TRY(check_numel(op, "dweight", dweight, (size_t)members * c, sx, mc));
    P7_TRY(check_numel(op, "dbias", dbias, (size_t)members * c, sx, mc));
    P7_TRY(check_numel(op, "save_mean", save_mean, c, sx, c1));
    P7_TRY(check_numel(op, "save_invstd", save_invstd, c, sx, c1));
    P7_TRY(check_numel(op, "dy", dy, p7_tensor_numel(x), sx, "the shape of x"));
    P7_TRY(check_numel(op, "dx", dx, p7_tensor_numel(x), sx, "the shape of x"));
    const p7_tensor *all[] = {weight, save_mean, save_invstd, dy, dx, dweight, dbias};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) P7_TRY(same_device(op, x, all[i]));
    if (!dx && !dweight && !dbias) return P7_SUCCESS;
    /* Without dx, eval-mode dx needs no sums; with nothing else asked, skip the reduction. */
    const int need_sums = dweight || dbias || (dx && training);

    p7_device *d = p7_tensor_device(x);
    p7_reduce_config cfg;
    P7_TRY(p7_reduce_config_get(d, &cfg));
    char opts[96];
    P7_TRY(bn_options(d, opts, sizeof opts));

    /* Per-member sums are only needed for per-member gradients or per-member weights;
     * otherwise one group per channel pools all rows. */
    const cl_uint groups = (weight || dweight || dbias) ? (cl_uint)members : 1;
    const cl_uint rows_per_group = g.rows / groups;
    p7_buffer *scratch = NULL;
    cl_mem sums = NULL;
    if (need_sums) {
        P7_TRY(p7_buffer_alloc(d, (2 * (size_t)groups * c + 2 * c) * sizeof(float), &scratch));
        sums = p7_buffer_mem(scratch);
    }

    p7_status st = P7_SUCCESS;
    cl_kernel k;
    cl_mem xm = p7_tensor_mem(x), dym = p7_tensor_mem(dy);
    cl_ulong xo = p7_tensor_offset(x), dyo = p7_tensor_offset(dy);
    cl_mem mm = p7_tensor_mem(save_mean), im = p7_tensor_mem(save_invstd);
    cl_ulong mo = p7_tensor_offset(save_mean), io = p7_tensor_offset(save_invstd);
    cl_mem wm = weight ? p7_tensor_mem(weight) : NULL;
    cl_ulong wo = weight ? p7_tensor_offset(weight) : 0;
    cl_int has_w = weight != NULL;

    if (need_sums) {
        st = p7_kernel_get(d, BN_FILE, opts, bn_v16(d, g.hw) ? "batchnorm_reduce_v16" : "batchnorm_reduce", &k);
        cl_mem dwm = dweight ? p7_tensor_mem(dweight) : NULL, dbm = dbias ? p7_tensor_mem(dbias) : NULL;
        cl_ulong dwo = dweight ? p7_tensor_offset(dweight) : 0, dbo = dbias ? p7_tensor_offset(dbias) : 0;
        cl_int dw_mode = dweight ? (dweight_accumulate ? 2 : 1) : 0;
        cl_int db_mode = dbias ? (dbias_accumulate ? 2 : 1) : 0;
        if (st == P7_SUCCESS)
            st = P7_SET_ARGS(k, "batchnorm2d reduce", P7_ARG(xm), P7_ARG(xo), P7_ARG(dym), P7_ARG(dyo), P7_ARG(mm),
                             P7_ARG(mo), P7_ARG(im), P7_ARG(io), P7_ARG(g.channels), P7_ARG(g.hw),
                             P7_ARG(rows_per_group), P7_ARG(groups), P7_ARG(sums), P7_ARG(dwm), P7_ARG(dwo),
                             P7_ARG(dw_mode), P7_ARG(dbm), P7_ARG(dbo), P7_ARG(db_mode));
        size_t global = (size_t)groups * c * cfg.wg, local = cfg.wg;
        if (st == P7_SUCCESS) st = p7_launch(d, k, 1, &global, &local, "batchnorm2d.backward_reduce");
    }

    /* The channel totals of g = dy * w follow the [2][groups][C] sums in the scratch. */
    cl_ulong to = 2 * (cl_ulong)groups * c;
    if (st == P7_SUCCESS && dx && training) {
        st = p7_kernel_get(d, BN_FILE, opts, "batchnorm_combine", &k);
        if (st == P7_SUCCESS)
            st = P7_SET_ARGS(k, "batchnorm2d combine", P7_ARG(sums), P7_ARG(wm), P7_ARG(wo), P7_ARG(has_w),
                             P7_ARG(groups), P7_ARG(g.channels), P7_ARG(sums), P7_ARG(to));
        size_t global = (c + 63) / 64 * 64;
        if (st == P7_SUCCESS) st = p7_launch(d, k, 1, &global, NULL, "batchnorm2d.backward_combine");
    }
    if (st == P7_SUCCESS && dx) {
        const char *name = training ? (dx_accumulate ? "batchnorm_dx_train_acc" : "batchnorm_dx_train")
                                    : (dx_accumulate ? "batchnorm_dx_eval_acc" : "batchnorm_dx_eval");
        st = p7_kernel_get(d, BN_FILE, opts, name, &k);
        cl_mem dxm = p7_tensor_mem(dx);
        cl_ulong dxo = p7_tensor_offset(dx);
        float inv_count = (float)(1.0 / ((double)g.rows * (double)g.hw));
        if (st == P7_SUCCESS)
            st = P7_SET_ARGS(k, "batchnorm2d dx", P7_ARG(xm), P7_ARG(xo), P7_ARG(dym), P7_ARG(dyo), P7_ARG(mm),
                             P7_ARG(mo), P7_ARG(im), P7_ARG(io), P7_ARG(wm), P7_ARG(wo), P7_ARG(has_w),
                             P7_ARG(g.rows_per_member), P7_ARG(sums), P7_ARG(to), P7_ARG(inv_count), P7_ARG(dxm),
                             P7_ARG(dxo));
        size_t global[3] = {g.hw, g.channels, g.rows};
        if (st == P7_SUCCESS) st = p7_launch(d, k, 3, global, NULL, "batchnorm2d.backward_dx");
    }
    p7_buffer_free(scratch); /* in-order queue: see the forward */
    return st;
}

/* ---- evaluation BatchNorm folded into a preceding affine (fused_internal.h) ---- */

/* The member stride of a fold input: 0 for [C] (or NULL), C for [M, C]. */
static p7_status fold_stride(const char *name, const p7_tensor *v, const p7_tensor *like, size_t c, int members,
                             cl_uint *stride)
{
    *stride = 0;
    if (!v) return P7_SUCCESS;
    const size_t n = p7_tensor_numel(v);
    if (n != c && n != (size_t)members * c) {
        char sv[128];
        return p7_fail(P7_ERROR_INVALID_SHAPE,
                       "batchnorm2d fold: %s %s must have %zu (channels) or %d x %zu (members x channels) elements",
                       name, p7_shape_format(p7_tensor_ndim(v), p7_tensor_shape(v), sv, sizeof sv), c, members, c);
    }
    P7_TRY(same_device("batchnorm2d fold", like, v));
    *stride = n == c ? 0 : (cl_uint)c;
    return P7_SUCCESS;
}

p7_status p7_batchnorm2d_fold_eval(const p7_tensor *running_mean, const p7_tensor *running_var, float eps,
                                   const p7_tensor *weight, const p7_tensor *bias, const p7_tensor *pre_scale,
                                   const p7_tensor *pre_shift, int members, cl_mem out)
{
    const char *op = "batchnorm2d fold";
    if (!running_mean || !running_var || !out)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL running statistics or output", op);
    if (members < 1) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: %d members; expected >= 1", op, members);
    const size_t c = p7_tensor_numel(running_mean);
    if (p7_tensor_numel(running_var) != c)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: running_var has %zu elements, running_mean %zu", op,
                       p7_tensor_numel(running_var), c);
    if ((uint64_t)members * c > UINT32_MAX)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %d x %zu (members x channels) is too large", op, members, c);
    P7_TRY(same_device(op, running_mean, running_var));
    cl_uint ws, bs, pss, phs;
    P7_TRY(fold_stride("weight", weight, running_mean, c, members, &ws));
    P7_TRY(fold_stride("bias", bias, running_mean, c, members, &bs));
    P7_TRY(fold_stride("pre_scale", pre_scale, running_mean, c, members, &pss));
    P7_TRY(fold_stride("pre_shift", pre_shift, running_mean, c, members, &phs));

    p7_device *d = p7_tensor_device(running_mean);
    char opts[96];
    P7_TRY(bn_options(d, opts, sizeof opts));
    cl_kernel k;
    P7_TRY(p7_kernel_get(d, BN_FILE, opts, "batchnorm_fold_eval", &k));
    /* Absent vectors pass running_mean as an unread placeholder. */
    cl_mem rm = p7_tensor_mem(running_mean), rv = p7_tensor_mem(running_var);
    cl_ulong rmo = p7_tensor_offset(running_mean), rvo = p7_tensor_offset(running_var);
    cl_mem wm = weight ? p7_tensor_mem(weight) : rm, bm = bias ? p7_tensor_mem(bias) : rm;
    cl_mem psm = pre_scale ? p7_tensor_mem(pre_scale) : rm, phm = pre_shift ? p7_tensor_mem(pre_shift) : rm;
    cl_ulong wo = weight ? p7_tensor_offset(weight) : 0, bo = bias ? p7_tensor_offset(bias) : 0;
    cl_ulong pso = pre_scale ? p7_tensor_offset(pre_scale) : 0, pho = pre_shift ? p7_tensor_offset(pre_shift) : 0;
    cl_int has_w = weight != NULL, has_b = bias != NULL, has_ps = pre_scale != NULL, has_ph = pre_shift != NULL;
    cl_uint channels = (cl_uint)c, m = (cl_uint)members;
    P7_TRY(P7_SET_ARGS(k, "batchnorm2d fold", P7_ARG(rm), P7_ARG(rmo), P7_ARG(rv), P7_ARG(rvo), P7_ARG(eps),
                       P7_ARG(wm), P7_ARG(wo), P7_ARG(ws), P7_ARG(has_w), P7_ARG(bm), P7_ARG(bo), P7_ARG(bs),
                       P7_ARG(has_b), P7_ARG(psm), P7_ARG(pso), P7_ARG(pss), P7_ARG(has_ps), P7_ARG(phm),
                       P7_ARG(pho), P7_ARG(phs), P7_ARG(has_ph), P7_ARG(channels), P7_ARG(m), P7_ARG(out)));
    size_t global = ((size_t)members * c + 63) / 64 * 64;
    return p7_launch(d, k, 1, &global, NULL, "batchnorm2d.fold_eval");
}
