/* The networks of the studies: the public entry (p7_model_build), names, and the
 * convenience forms. The plans come from nn_zoo_simple.c and nn_zoo_vgg.c, the
 * original notebooks' sharing modules from nn_zoo_faithful.c. */
#include <stdio.h>
#include <string.h>

#include "nn/nn_model_internal.h"
#include "nn/nn_zoo_internal.h"

static const char *const arch_names[] = {NULL, "simple", "heads", "complex", "vgg11", "vgg11-10conv"};
static const char *const share_names[] = {"none", "early", "deep", "all"};

const char *p7_arch_name(p7_arch a)
{
    return (unsigned)a < sizeof arch_names / sizeof *arch_names ? arch_names[a] : NULL;
}

p7_status p7_arch_parse(const char *name, p7_arch *out)
{
    for (int i = 1; name && out && i < (int)(sizeof arch_names / sizeof *arch_names); i++)
        if (strcmp(name, arch_names[i]) == 0) {
            *out = (p7_arch)i;
            return P7_SUCCESS;
        }
    return p7_fail(P7_ERROR_INVALID_ARGUMENT, "architecture \"%s\": expected simple, heads, complex, vgg11 or "
                                              "vgg11-10conv", name ? name : "(null)");
}

const char *p7_share_name(p7_share s)
{
    return (unsigned)s < sizeof share_names / sizeof *share_names ? share_names[s] : NULL;
}

p7_status p7_share_parse(const char *name, p7_share *out)
{
    for (int i = 0; name && out && i < (int)(sizeof share_names / sizeof *share_names); i++)
        if (strcmp(name, share_names[i]) == 0) {
            *out = (p7_share)i;
            return P7_SUCCESS;
        }
    return p7_fail(P7_ERROR_INVALID_ARGUMENT, "sharing preset \"%s\": expected none, early, deep or all",
                   name ? name : "(null)");
}

static p7_status check_config(const p7_network_config *c)
{
    if (!p7_arch_name(c->arch)) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: unknown architecture %d", (int)c->arch);
    if (c->classes < 2) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: %d classes; expected >= 2", c->classes);
    if (c->members < 0) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: %d members; expected >= 1", c->members);
    if (!p7_share_name(c->between) || !p7_share_name(c->within))
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: unknown sharing preset (between %d, within %d)",
                       (int)c->between, (int)c->within);
    if (c->batchnorm < -1 || c->batchnorm > 1)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: batchnorm %d; expected -1 (default), 0 or 1", c->batchnorm);
    if (c->width < 0.0f || c->width > 16.0f)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: width %g; expected 0 < width <= 16 (0: full)",
                       (double)c->width);
    const int vgg = c->arch == P7_ARCH_VGG11 || c->arch == P7_ARCH_VGG11_10CONV || c->arch == P7_ARCH_COMPLEX;
    if (c->within != P7_SHARE_NONE && c->arch != P7_ARCH_VGG11 && c->arch != P7_ARCH_VGG11_10CONV)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT,
                       "network: within-sharing presets name convs of the 10-conv VGG11 layout; %s has none of "
                       "them (tie its convs explicitly)", p7_arch_name(c->arch));
    if (c->arch == P7_ARCH_HEADS && c->between != P7_SHARE_NONE)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: heads share their trunk by construction; between "
                                                  "presets apply to the VGG11 family");
    if (!vgg && c->between != P7_SHARE_NONE && c->arch != P7_ARCH_SIMPLE)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: between presets do not apply to %s", p7_arch_name(c->arch));
    return P7_SUCCESS;
}

static p7_status build_plan(p7_device *device, const p7_network_config *c, uint64_t seed, p7_model **out)
{
    zoo_plan p = {.members = c->members < 1 ? 1 : c->members, .alpha_init = c->alpha_init,
                  .gamma_init = c->gamma_init, .original_fast_init = (c->faithful & P7_FAITHFUL_ALPHA_GAMMA_INIT) != 0};
    if (c->between == P7_SHARE_ALL) p.members = 1; /* one network */
    p.kind = c->member_kind;
    p.be_single = p.members == 1 && c->member_kind == P7_MEMBERS_BATCHENSEMBLE && c->arch != P7_ARCH_HEADS;
    /* Members are BatchEnsemble members unless the network is a between-member (or
     * combined) sharing study's, whose members are whole networks: "--members 4" alone
     * means a BatchEnsemble on every architecture, as it always did. */
    if (p.kind == P7_MEMBERS_DEFAULT)
        p.kind = c->sharing == P7_SHARING_BETWEEN || c->sharing == P7_SHARING_COMBINED ? P7_MEMBERS_INDEPENDENT
                                                                                    : P7_MEMBERS_BATCHENSEMBLE;
    if (c->between != P7_SHARE_NONE && c->between != P7_SHARE_ALL && p.members < 2)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "network: between-member sharing \"%s\" needs members >= 2",
                       p7_share_name(c->between));
    /* the within presets and the combined study use the 10-conv layout */
    const int ten_conv = c->arch == P7_ARCH_VGG11_10CONV || c->within != P7_SHARE_NONE ||
                         c->sharing == P7_SHARING_COMBINED || c->sharing == P7_SHARING_WITHIN;
    switch (c->arch) {
    case P7_ARCH_SIMPLE: P7_TRY(zoo_plan_simple(c, &p)); break;
    case P7_ARCH_HEADS: P7_TRY(zoo_plan_heads(c, &p)); break;
    case P7_ARCH_COMPLEX: P7_TRY(zoo_plan_vgg(c, 0, 512, &p)); break;
    default: P7_TRY(zoo_plan_vgg(c, ten_conv, 0, &p)); break;
    }
    P7_TRY(zoo_apply_between(c, &p));
    if (c->within == P7_SHARE_EARLY || c->within == P7_SHARE_ALL)
        P7_TRY(zoo_apply_ties(&p, "conv5,conv6", "within preset"));
    if (c->within == P7_SHARE_DEEP || c->within == P7_SHARE_ALL)
        P7_TRY(zoo_apply_ties(&p, "conv8,conv9,conv10", "within preset"));
    if (c->tie && *c->tie) P7_TRY(zoo_apply_ties(&p, c->tie, "tie"));
    if (p.members > 1 && (c->faithful & P7_FAITHFUL_MEAN_LOGITS))
        /* the original BatchEnsemble averages logits in evaluation only (2.7); its heads and
         * sharing ensembles average inside the model, so they train on the mean too */
        p.member_mean = p.kind == P7_MEMBERS_BATCHENSEMBLE && c->arch != P7_ARCH_HEADS ? 1 : 2;
    P7_TRY(p7_model_create(device, p.members, seed, out));
    p7_status st = zoo_emit(*out, &p);
    if (st != P7_SUCCESS) {
        p7_model_destroy(*out);
        *out = NULL;
    }
    return st;
}

p7_status p7_model_build(p7_device *device, const p7_network_config *config, uint64_t seed, p7_model **out)
{
    if (!device || !config || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_build: NULL argument");
    *out = NULL;
    P7_TRY(check_config(config));
    int handled = 0;
    P7_TRY(zoo_build_faithful_sharing(device, config, seed, out, &handled));
    if (handled) return P7_SUCCESS;
    return build_plan(device, config, seed, out);
}

p7_status p7_model_printed_counts(const p7_model *m, p7_printed_counts *out)
{
    if (!m || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_printed_counts: NULL argument");
    if (!m->has_printed_counts)
        return p7_fail(P7_ERROR_STATE, "p7_model_printed_counts: only the faithful sharing models (--faithful with a "
                                       "sharing study) have the original's printed counts");
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < m->param_count; i++) {
        const uint64_t n = p7_tensor_numel(m->params[i].tensor);
        out->total += n;
        if (m->layers[m->params[i].layer].printed_shared) out->shared += n;
    }
    out->unique = out->total - out->shared;
    return P7_SUCCESS;
}

p7_status p7_model_vgg11(p7_device *device, const p7_vgg_options *o, uint64_t seed, p7_model **out)
{
    if (!o || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_vgg11: NULL argument");
    if (o->hidden != 0 && o->hidden != 512)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_vgg11: hidden %d; expected 0 (VGG11) or 512 (ComplexCNN)",
                       o->hidden);
    p7_network_config c = {.arch = o->hidden ? P7_ARCH_COMPLEX : P7_ARCH_VGG11, .classes = o->classes,
                           .batchnorm = o->batchnorm != 0, .members = o->members,
                           .member_kind = o->members > 1 ? P7_MEMBERS_BATCHENSEMBLE : P7_MEMBERS_DEFAULT, .alpha_init = o->alpha_init,
                           .gamma_init = o->gamma_init,
                           .faithful = o->init == P7_INIT_KAIMING_NORMAL_FAN_OUT ? P7_FAITHFUL_BE_KAIMING_INIT : 0u};
    return p7_model_build(device, &c, seed, out);
}

p7_status p7_model_simple_cnn(p7_device *device, int members, int classes, float alpha_init, float gamma_init,
                              uint64_t seed, p7_model **out)
{
    p7_network_config c = {.arch = P7_ARCH_SIMPLE, .classes = classes, .batchnorm = -1, .members = members,
                           .member_kind = members > 1 ? P7_MEMBERS_BATCHENSEMBLE : P7_MEMBERS_DEFAULT, .alpha_init = alpha_init,
                           .gamma_init = gamma_init};
    return p7_model_build(device, &c, seed, out);
}
