/* The studies' networks (p7_model_build): every architecture and sharing preset's used,
 * unique and shared counts against counts computed here from the layer shapes; the
 * faithful models' printed counts against every number seed-study 6.2-6.5 and 7 quotes;
 * forward shapes; tie errors; BatchEnsemble with one member and +1 fast weights equals
 * the plain network; independent members differ; finite differences through member
 * groups; the memory check's refusal naming a layer. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7/faithful.h"
#include "p7_test_support.h"

P7_TEST_FILE_DEVICE

/* ---- analytic counts ---- */

static uint64_t conv(uint64_t in, uint64_t out) { return in * out * 9 + out; }
static uint64_t lin(uint64_t in, uint64_t out) { return in * out + out; }

/* conv channels of the two VGG layouts (0 = pool), and the stage of each conv */
static const int vgg8[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
static const int vgg10[] = {64, 64, 0, 128, 0, 256, 256, 256, 0, 512, 512, 0, 512, 512, 0};

typedef struct shape_list { int n; uint64_t in[10], out[10]; int stage[10]; } shape_list;

static shape_list convs_of(const int *plan, size_t n)
{
    shape_list s = {0};
    int in = 3, stage = 0;
    for (size_t i = 0; i < n; i++) {
        if (!plan[i]) { stage++; continue; }
        s.in[s.n] = (uint64_t)in;
        s.out[s.n] = (uint64_t)plan[i];
        s.stage[s.n++] = stage;
        in = plan[i];
    }
    return s;
}

static p7_param_counts counts_of(const p7_network_config *c)
{
    p7_model *m;
    P7_ASSERT_OK(p7_model_build(device, c, 1, &m));
    p7_param_counts k;
    P7_ASSERT_OK(p7_model_count_params(m, &k));
    p7_model_destroy(m);
    return k;
}

/* owner[i]: the conv (0-based) whose layer conv i applies, for a within preset */
static void within_owners(p7_share within, int owner[10])
{
    for (int i = 0; i < 10; i++) owner[i] = i;
    if (within == P7_SHARE_EARLY || within == P7_SHARE_ALL) owner[5] = 4;                 /* conv6 -> conv5 */
    if (within == P7_SHARE_DEEP || within == P7_SHARE_ALL) owner[8] = owner[9] = 7;       /* conv9, 10 -> conv8 */
}

/* Used and shared counts of M independent members on a layout with a between and a
 * within preset, from the shapes: a layer is per member (M copies) or shared (one). */
static void expected_counts(const shape_list *s, int members, p7_share between, p7_share within, int classes,
                            uint64_t *used, uint64_t *shared)
{
    int owner[10];
    within_owners(within, owner);
    if (between == P7_SHARE_ALL) members = 1;
    *used = *shared = 0;
    for (int i = 0; i < s->n; i++) {
        const int is_shared = (between == P7_SHARE_EARLY && s->stage[i] <= 1) ||
                              (between == P7_SHARE_DEEP && s->stage[i] >= 2);
        const uint64_t copies = is_shared ? 1 : (uint64_t)members;
        if (owner[i] != i) continue; /* applies an earlier conv's layer */
        int uses = 0;
        for (int j = 0; j < s->n; j++) uses += owner[j] == i;
        *used += copies * conv(s->in[i], s->out[i]);
        if (uses > 1) *shared += copies * conv(s->in[i], s->out[i]);
    }
    *used += (uint64_t)members * lin(512, (uint64_t)classes);
}

static void test_within_presets(void **state)
{
    (void)state;
    const shape_list s = convs_of(vgg10, sizeof vgg10 / sizeof *vgg10);
    for (int w = P7_SHARE_NONE; w <= P7_SHARE_ALL; w++) {
        p7_network_config c = {.arch = P7_ARCH_VGG11_10CONV, .classes = 10, .batchnorm = -1, .members = 1,
                               .sharing = P7_SHARING_WITHIN, .within = (p7_share)w};
        p7_param_counts k = counts_of(&c);
        uint64_t used, shared;
        expected_counts(&s, 1, P7_SHARE_NONE, (p7_share)w, 10, &used, &shared);
        assert_int_equal(k.used, used);
        assert_int_equal(k.unique, used); /* nothing built that is not used */
        assert_int_equal(k.shared, shared);
        if (w == P7_SHARE_NONE) assert_int_equal(k.used, 9852618); /* seed-study 6.3 */
        if (w == P7_SHARE_ALL) assert_int_equal(k.used, 4542922);
        if (w != P7_SHARE_NONE) assert_true(k.used < 9852618); /* every preset really ties */
    }
}

static void test_between_presets(void **state)
{
    (void)state;
    const shape_list s = convs_of(vgg8, sizeof vgg8 / sizeof *vgg8);
    const int members[2] = {8, 4}, classes[2] = {10, 20};
    for (int d = 0; d < 2; d++)
        for (int b = P7_SHARE_NONE; b <= P7_SHARE_ALL; b++) {
            p7_network_config c = {.arch = P7_ARCH_VGG11, .classes = classes[d], .batchnorm = -1,
                                   .members = members[d], .member_kind = P7_MEMBERS_INDEPENDENT,
                                   .sharing = P7_SHARING_BETWEEN, .between = (p7_share)b};
            p7_param_counts k = counts_of(&c);
            uint64_t used, shared;
            expected_counts(&s, members[d], (p7_share)b, P7_SHARE_NONE, classes[d], &used, &shared);
            assert_int_equal(k.used, used);
            assert_int_equal(k.unique, used);
            assert_int_equal(k.shared, 0); /* a shared part runs once, on all members' rows */
            if (d == 0 && b == P7_SHARE_NONE) assert_int_equal(k.used, 73804880); /* seed-study 6.4 */
        }
}

/* BatchEnsemble members: the non-shared convs are BE (weight, then alpha, gamma, bias per member) */
static void test_between_batchensemble(void **state)
{
    (void)state;
    const shape_list s = convs_of(vgg8, sizeof vgg8 / sizeof *vgg8);
    const uint64_t M = 4;
    for (int b = P7_SHARE_NONE; b <= P7_SHARE_DEEP; b++) {
        p7_network_config c = {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 0, .members = (int)M,
                               .member_kind = P7_MEMBERS_BATCHENSEMBLE, .between = (p7_share)b,
                               .alpha_init = 0.5f, .gamma_init = 0.5f};
        p7_param_counts k = counts_of(&c);
        uint64_t expect = 512 * 10 + M * (512 + 10 + 10); /* BE classifier */
        for (int i = 0; i < s.n; i++) {
            const int shared = (b == P7_SHARE_EARLY && s.stage[i] <= 1) || (b == P7_SHARE_DEEP && s.stage[i] >= 2);
            expect += shared ? conv(s.in[i], s.out[i]) : s.in[i] * s.out[i] * 9 + M * (s.in[i] + 2 * s.out[i]);
        }
        assert_int_equal(k.unique, expect);
        assert_int_equal(k.used, expect);
    }
}

static void test_combined_all_sixteen(void **state)
{
    (void)state;
    const shape_list s = convs_of(vgg10, sizeof vgg10 / sizeof *vgg10);
    for (int b = P7_SHARE_NONE; b <= P7_SHARE_ALL; b++)
        for (int w = P7_SHARE_NONE; w <= P7_SHARE_ALL; w++) {
            p7_network_config c = {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = -1, .members = 8,
                                   .sharing = P7_SHARING_COMBINED, .between = (p7_share)b, .within = (p7_share)w};
            p7_param_counts k = counts_of(&c);
            uint64_t used, shared;
            expected_counts(&s, 8, (p7_share)b, (p7_share)w, 10, &used, &shared);
            assert_int_equal(k.used, used);
            assert_int_equal(k.unique, used);
            assert_int_equal(k.shared, shared);
        }
}

/* seed-study 3.1-3.6 from the shapes */
static void test_study_models(void **state)
{
    (void)state;
    const uint64_t trunk = conv(3, 32) + 64 + conv(32, 64) + 128;
    const int Ms[3] = {2, 4, 8};
    p7_network_config c = {.arch = P7_ARCH_SIMPLE, .classes = 10, .batchnorm = -1, .members = 1};
    assert_int_equal(counts_of(&c).unique, trunk + lin(4096, 10));
    assert_int_equal(trunk + lin(4096, 10), 60554);
    for (int i = 0; i < 3; i++) {
        const uint64_t M = (uint64_t)Ms[i];
        /* heads (3.2): trunk, shared fc 4096->128, H heads */
        c = (p7_network_config){.arch = P7_ARCH_HEADS, .classes = 10, .batchnorm = -1, .members = (int)M,
                                .member_kind = P7_MEMBERS_INDEPENDENT};
        p7_param_counts k = counts_of(&c);
        assert_int_equal(k.unique, trunk + lin(4096, 128) + M * lin(128, 10));
        assert_int_equal(k.used, k.unique);
        /* BE heads (3.4): shared 543,584, per member 6,061 */
        c.member_kind = P7_MEMBERS_BATCHENSEMBLE;
        const uint64_t shared = 3 * 32 * 9 + 32 * 64 * 9 + 4096 * 128;
        const uint64_t per = (3 + 64) + 64 + (32 + 128) + 128 + (4096 + 256) + lin(128, 10);
        assert_int_equal(shared, 543584);
        assert_int_equal(per, 6061);
        assert_int_equal(counts_of(&c).unique, shared + M * per);
        /* BE ComplexCNN (3.6), with BN by default */
        c = (p7_network_config){.arch = P7_ARCH_COMPLEX, .classes = 10, .batchnorm = -1, .members = (int)M};
        assert_int_equal(counts_of(&c).unique, 9484992u + 15319u * M);
    }
    /* ComplexCNN (3.5) without BN, and with --bn (BN weight and bias per conv) */
    const shape_list s = convs_of(vgg8, sizeof vgg8 / sizeof *vgg8);
    uint64_t convs = 0, bn = 0;
    for (int i = 0; i < s.n; i++) convs += conv(s.in[i], s.out[i]), bn += 2 * s.out[i];
    c = (p7_network_config){.arch = P7_ARCH_COMPLEX, .classes = 10, .batchnorm = -1, .members = 1};
    assert_int_equal(counts_of(&c).unique, convs + lin(512, 512) + lin(512, 10));
    assert_int_equal(convs + lin(512, 512) + lin(512, 10), 9488266);
    c.batchnorm = 1;
    assert_int_equal(counts_of(&c).unique, convs + bn + lin(512, 512) + lin(512, 10));
    c = (p7_network_config){.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 1, .members = 1};
    assert_int_equal(counts_of(&c).unique, convs + bn + lin(512, 10));
}

/* ---- faithful: the original's printed counts ---- */

typedef struct printed { p7_sharing sharing; p7_arch arch; p7_share between, within; int classes, members, cell;
                         uint64_t total, unique, shared, used; } printed;

static void test_faithful_printed_counts(void **state)
{
    (void)state;
    const printed rows[] = {
        /* 6.2 (cell 0): used from the table's last column */
        {P7_SHARING_WITHIN, P7_ARCH_VGG11, 0, P7_SHARE_NONE, 10, 1, 0, 12249354, 12249354, 0, 9262538},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11, 0, P7_SHARE_EARLY, 10, 1, 0, 12212426, 12175498, 36928, 9262538},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11, 0, P7_SHARE_DEEP, 10, 1, 0, 4579850, 1629962, 2949888, 4542922},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11, 0, P7_SHARE_ALL, 10, 1, 0, 4542922, 1556106, 2986816, 4542922},
        /* 6.3 cell 3 and cell 5 */
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_NONE, 10, 1, 3, 12987018, 12987018, 0, 9852618},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_EARLY, 10, 1, 3, 12950090, 12913162, 36928, 9852618},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_DEEP, 10, 1, 3, 4727434, 1777546, 2949888, 4542922},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_ALL, 10, 1, 3, 4690506, 1703690, 2986816, 4542922},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_NONE, 10, 1, 0, 12839434, 12839434, 0, 9852618},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_EARLY, 10, 1, 0, 12802506, 12765578, 36928, 9852618},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_DEEP, 10, 1, 0, 4579850, 1629962, 2949888, 4542922},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_ALL, 10, 1, 0, 4542922, 1556106, 2986816, 4542922},
        /* CIFAR-20 cell 1 (computed in seed-study 7; no print) */
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_NONE, 20, 1, 0, 12844564, 12844564, 0, 9857748},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_EARLY, 20, 1, 0, 12807636, 12807636 - 36928, 36928,
         9857748},
        {P7_SHARING_WITHIN, P7_ARCH_VGG11_10CONV, 0, P7_SHARE_DEEP, 20, 1, 0, 4584980, 4584980 - 2949888, 2949888,
         4548052},
        /* 6.4 (cells 1 and 6): used = trunk + the heads that answer */
        {P7_SHARING_BETWEEN, P7_ARCH_VGG11, P7_SHARE_NONE, 0, 10, 8, 0, 9261520, 9261520, 0, 9261520},
        {P7_SHARING_BETWEEN, P7_ARCH_VGG11, P7_SHARE_EARLY, 0, 10, 8, 0, 9261520, 9185872, 75648, 9261520},
        {P7_SHARING_BETWEEN, P7_ARCH_VGG11, P7_SHARE_DEEP, 0, 10, 8, 0, 9261520, 116688, 9144832, 9261520},
        {P7_SHARING_BETWEEN, P7_ARCH_VGG11, P7_SHARE_ALL, 0, 10, 8, 0, 9266650, 41040, 9225610, 9225610},
        /* 6.5 cell 2 and cell 4 */
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_NONE, P7_SHARE_NONE, 10, 8, 2, 12285264, 12285264, 0, 9298448},
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_EARLY, P7_SHARE_EARLY, 10, 8, 2, 12285264, 12209616, 75648,
         9298448},
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_DEEP, P7_SHARE_DEEP, 10, 8, 2, 12285264, 116688, 12168576,
         9298448},
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_ALL, P7_SHARE_ALL, 10, 8, 2, 12290394, 41040, 12249354, 9262538},
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_NONE, P7_SHARE_NONE, 10, 8, 4, 12285264, 12285264, 0, 9298448},
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_ALL, P7_SHARE_ALL, 10, 8, 4, 12249354, 0, 12249354, 9262538},
        /* 7, CIFAR-20 cells 0 and 2: 4 heads of 10,260 */
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_NONE, P7_SHARE_NONE, 20, 4, 0, 12285264, 12285264, 0,
         9257408 + 41040},
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_EARLY, P7_SHARE_EARLY, 20, 4, 0, 12285264, 12209616, 75648,
         9257408 + 41040},
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_DEEP, P7_SHARE_DEEP, 20, 4, 0, 12285264, 116688, 12168576,
         9257408 + 41040},
        {P7_SHARING_COMBINED, P7_ARCH_VGG11, P7_SHARE_ALL, P7_SHARE_ALL, 20, 4, 0, 12295524, 41040, 12254484,
         9257408 + 10260},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const printed *r = &rows[i];
        p7_network_config c = {.arch = r->arch, .classes = r->classes, .batchnorm = -1, .members = r->members,
                               .sharing = r->sharing, .between = r->between, .within = r->within,
                               .faithful = P7_FAITHFUL_ALL, .original_cell = r->cell};
        p7_model *m;
        P7_ASSERT_OK(p7_model_build(device, &c, 1, &m));
        p7_printed_counts pc;
        p7_param_counts k;
        P7_ASSERT_OK(p7_model_printed_counts(m, &pc));
        P7_ASSERT_OK(p7_model_count_params(m, &k));
        if (pc.total != r->total || pc.unique != r->unique || pc.shared != r->shared || k.used != r->used)
            fail_msg("row %zu: printed %llu / %llu / %llu, used %llu; the study: %llu / %llu / %llu, used %llu", i,
                     (unsigned long long)pc.total, (unsigned long long)pc.unique, (unsigned long long)pc.shared,
                     (unsigned long long)k.used, (unsigned long long)r->total, (unsigned long long)r->unique,
                     (unsigned long long)r->shared, (unsigned long long)r->used);
        assert_int_equal(pc.total, k.unique);
        p7_model_destroy(m);
    }
    /* a corrected model has no printed counts */
    p7_network_config c = {.arch = P7_ARCH_SIMPLE, .classes = 10, .batchnorm = -1, .members = 1};
    p7_model *m;
    P7_ASSERT_OK(p7_model_build(device, &c, 1, &m));
    p7_printed_counts pc;
    assert_int_equal(p7_model_printed_counts(m, &pc), P7_ERROR_STATE);
    p7_model_destroy(m);
}

/* ---- forward ---- */

static p7_tensor *images(int batch, uint64_t seed)
{
    const int64_t s[4] = {batch, 3, 32, 32};
    p7_tensor *x;
    P7_ASSERT_OK(p7_tensor_create(device, 4, s, &x));
    P7_ASSERT_OK(p7_tensor_fill_uniform(x, seed, 0, -1.0f, 1.0f));
    return x;
}

static float *forward(p7_model *m, p7_tensor *x, int training, size_t *rows, size_t *cols)
{
    p7_tensor *y;
    P7_ASSERT_OK(p7_model_forward(m, NULL, x, training, &y));
    *rows = (size_t)p7_tensor_dim(y, 0);
    *cols = (size_t)p7_tensor_dim(y, 1);
    float *v = p7_test_download(y);
    p7_tensor_release(y);
    return v;
}

static void test_forward_shapes(void **state)
{
    (void)state;
    const p7_network_config configs[] = {
        {.arch = P7_ARCH_SIMPLE, .classes = 10, .batchnorm = -1, .members = 2, .alpha_init = 0.5f, .gamma_init = 0.5f,
         .width = 0.25f},
        {.arch = P7_ARCH_HEADS, .classes = 10, .batchnorm = -1, .members = 3, .member_kind = P7_MEMBERS_INDEPENDENT,
         .width = 0.25f},
        {.arch = P7_ARCH_HEADS, .classes = 10, .batchnorm = -1, .members = 2, .alpha_init = 0.5f, .gamma_init = 0.5f,
         .width = 0.25f},
        {.arch = P7_ARCH_VGG11, .classes = 20, .batchnorm = -1, .members = 3, .between = P7_SHARE_DEEP,
         .width = 0.125f},
        {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = 1, .members = 2, .between = P7_SHARE_EARLY,
         .within = P7_SHARE_ALL, .width = 0.125f},
        {.arch = P7_ARCH_COMPLEX, .classes = 10, .batchnorm = -1, .members = 2, .member_kind = P7_MEMBERS_INDEPENDENT,
         .width = 0.125f},
    };
    p7_tensor *x = images(2, 5);
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        p7_model *m;
        P7_ASSERT_OK(p7_model_build(device, &configs[i], 3, &m));
        assert_int_equal(p7_model_output_rule(m), P7_OUTPUT_MEMBER_LOGITS);
        for (int training = 0; training < 2; training++) {
            size_t rows, cols;
            float *v = forward(m, x, training, &rows, &cols);
            assert_int_equal(rows, (size_t)configs[i].members * 2);
            assert_int_equal(cols, (size_t)configs[i].classes);
            for (size_t j = 0; j < rows * cols; j++) assert_true(isfinite(v[j]));
            free(v);
        }
        p7_model_destroy(m);
    }
    /* faithful: the BatchEnsemble averages logits in evaluation, the heads always */
    p7_network_config be = configs[0], heads = configs[1];
    be.faithful = heads.faithful = P7_FAITHFUL_ALL;
    p7_model *m;
    P7_ASSERT_OK(p7_model_build(device, &be, 3, &m));
    assert_int_equal(p7_model_output_rule(m), P7_OUTPUT_MEMBER_LOGITS_EVAL_MEAN);
    assert_int_equal(p7_model_output_members(m, 1), 2);
    assert_int_equal(p7_model_output_members(m, 0), 1);
    p7_model_destroy(m);
    P7_ASSERT_OK(p7_model_build(device, &heads, 3, &m));
    assert_int_equal(p7_model_output_rule(m), P7_OUTPUT_MEAN_LOGITS);
    size_t rows, cols;
    float *v = forward(m, x, 1, &rows, &cols);
    assert_int_equal(rows, 2);
    free(v);
    p7_model_destroy(m);
    p7_tensor_release(x);
}

/* Sample mean and standard deviation of a parameter, in double. */
static void moments(const p7_tensor *t, double *mean, double *sd)
{
    float *v = p7_test_download(t);
    const size_t n = p7_tensor_numel(t);
    double s = 0.0, ss = 0.0;
    for (size_t i = 0; i < n; i++) s += v[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = sqrt(ss / (double)n);
    free(v);
}

/* The CIFAR-20 combined cells' explicit init (seed-study 7, cell 0): Kaiming fan_out
 * convs, N(0, 0.01^2) linears, zero biases, under --faithful only; the CIFAR-10 combined
 * cells and corrected mode keep PyTorch's defaults. */
static void test_faithful_explicit_init(void **state)
{
    (void)state;
    p7_network_config c = {.arch = P7_ARCH_VGG11, .classes = 20, .batchnorm = -1, .members = 4,
                           .sharing = P7_SHARING_COMBINED, .between = P7_SHARE_NONE, .within = P7_SHARE_NONE,
                           .faithful = P7_FAITHFUL_ALL};
    for (int variant = 0; variant < 3; variant++) {
        /* 0: explicit; 1: the switch off; 2: CIFAR-10's combined cell */
        c.faithful = variant == 1 ? P7_FAITHFUL_ALL & ~(unsigned)P7_FAITHFUL_EXPLICIT_INIT : P7_FAITHFUL_ALL;
        c.classes = variant == 2 ? 10 : 20;
        const int expl = variant == 0;
        p7_model *m;
        P7_ASSERT_OK(p7_model_build(device, &c, 5, &m));
        int convs = 0, linears = 0;
        for (size_t i = 0; i < p7_model_param_count(m); i++) {
            const char *name;
            p7_tensor *p = p7_model_param(m, i, &name);
            const int rank = p7_tensor_ndim(p);
            double mean, sd;
            moments(p, &mean, &sd);
            if (rank == 4) { /* conv weight [O, I, 3, 3]: fan_out = O * 9, fan_in = I * 9 */
                const double fan_out = (double)p7_tensor_dim(p, 0) * 9.0, fan_in = (double)p7_tensor_dim(p, 1) * 9.0;
                const double want = expl ? sqrt(2.0 / fan_out) : 1.0 / sqrt(3.0 * fan_in); /* U(-b, b): b / sqrt(3) */
                assert_true(fabs(sd / want - 1.0) < 0.05);
                convs++;
            } else if (rank == 2) { /* linear weight [out, in] */
                const double want = expl ? 0.01 : 1.0 / sqrt(3.0 * (double)p7_tensor_dim(p, 1));
                assert_true(fabs(sd / want - 1.0) < 0.05);
                linears++;
            } else { /* a bias: zeros exactly, or U(-b, b) draws */
                if (expl) assert_true(sd == 0.0 && mean == 0.0);
                else assert_true(sd > 0.0);
            }
        }
        assert_true(convs >= 9);
        assert_true(linears >= 4);
        p7_model_destroy(m);
    }
}

static void test_tie_errors(void **state)
{
    (void)state;
    p7_network_config c = {.arch = P7_ARCH_VGG11_10CONV, .classes = 10, .batchnorm = -1, .members = 1,
                           .tie = "conv4,conv5"};
    p7_model *m = NULL;
    assert_int_equal(p7_model_build(device, &c, 1, &m), P7_ERROR_INVALID_ARGUMENT);
    assert_null(m);
    assert_non_null(strstr(p7_last_error(), "conv4 is 128->256 channels but conv5 is 256->256"));
    c.tie = "conv5,conv42";
    assert_int_equal(p7_model_build(device, &c, 1, &m), P7_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(p7_last_error(), "\"conv42\" is not a conv"));
    c.tie = "conv7";
    assert_int_equal(p7_model_build(device, &c, 1, &m), P7_ERROR_INVALID_ARGUMENT);
    /* across the members' sharing: conv3 shared (early), conv5 per member */
    c = (p7_network_config){.arch = P7_ARCH_VGG11_10CONV, .classes = 10, .batchnorm = -1, .members = 2,
                            .between = P7_SHARE_DEEP, .tie = "conv2,conv9"};
    assert_int_equal(p7_model_build(device, &c, 1, &m), P7_ERROR_INVALID_ARGUMENT);
    /* a good explicit tie: conv5, conv6, conv7 of VGG11 (8 convs) are not one shape; 7 and 8 are */
    c = (p7_network_config){.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = -1, .members = 1,
                            .tie = "conv6,conv7,conv8"};
    P7_ASSERT_OK(p7_model_build(device, &c, 1, &m));
    p7_param_counts k;
    P7_ASSERT_OK(p7_model_count_params(m, &k));
    assert_int_equal(k.shared, conv(512, 512));
    assert_int_equal(k.used, 9225610 - 2 * conv(512, 512));
    p7_model_destroy(m);
    c.within = P7_SHARE_DEEP;
    c.arch = P7_ARCH_SIMPLE;
    c.tie = NULL;
    assert_int_equal(p7_model_build(device, &c, 1, &m), P7_ERROR_INVALID_ARGUMENT);
}

/* A BatchEnsemble with one member and +1 fast weights starts as the plain network. */
static void test_be_one_member_equals_plain(void **state)
{
    (void)state;
    const p7_arch archs[2] = {P7_ARCH_SIMPLE, P7_ARCH_COMPLEX};
    p7_tensor *x = images(3, 9);
    for (int a = 0; a < 2; a++) {
        p7_network_config c = {.arch = archs[a], .classes = 10, .batchnorm = 1, .members = 1, .alpha_init = 1.0f,
                               .gamma_init = 1.0f, .width = 0.25f};
        p7_model *plain, *be;
        P7_ASSERT_OK(p7_model_build(device, &c, 17, &plain));
        c.member_kind = P7_MEMBERS_BATCHENSEMBLE;
        P7_ASSERT_OK(p7_model_build(device, &c, 17, &be));
        assert_true(p7_model_param_count(be) > p7_model_param_count(plain)); /* really BE layers */
        size_t r0, c0, r1, c1;
        float *yp = forward(plain, x, 1, &r0, &c0), *yb = forward(be, x, 1, &r1, &c1);
        assert_int_equal(r0 * c0, r1 * c1);
        double worst = 0, scale = 0;
        for (size_t i = 0; i < r0 * c0; i++) {
            worst = fmax(worst, fabs((double)yp[i] - yb[i]));
            scale = fmax(scale, fabs((double)yp[i]));
        }
        assert_true(scale > 0 && worst <= 1e-5 * scale);
        free(yp);
        free(yb);
        p7_model_destroy(plain);
        p7_model_destroy(be);
    }
    p7_tensor_release(x);
}

static void test_independent_members_differ(void **state)
{
    (void)state;
    p7_network_config c = {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = -1, .members = 2, .width = 0.125f};
    p7_model *m;
    P7_ASSERT_OK(p7_model_build(device, &c, 4, &m));
    p7_tensor *x = images(2, 3);
    size_t rows, cols;
    float *y = forward(m, x, 0, &rows, &cols);
    double diff = 0;
    for (size_t i = 0; i < 2 * cols; i++) diff = fmax(diff, fabs((double)y[i] - y[2 * cols + i]));
    assert_true(diff > 1e-4);
    free(y);
    p7_tensor_release(x);
    p7_model_destroy(m);
}

/* Gradients through member groups (a = 1 and a = 0) and a shared layer on all members'
 * rows, against central differences of the loss in float (step 1e-2, tolerance 2%). */
static void test_member_group_gradients(void **state)
{
    (void)state;
    p7_model *m;
    P7_ASSERT_OK(p7_model_create(device, 3, 21, &m));
    int g1, shared, g2;
    p7_layer_config l1 = {.kind = P7_LAYER_LINEAR, .in = 5, .out = 6, .bias = 1};
    p7_layer_config ls = {.kind = P7_LAYER_LINEAR, .in = 6, .out = 6, .bias = 1};
    p7_layer_config l2 = {.kind = P7_LAYER_LINEAR, .in = 6, .out = 4, .bias = 1};
    P7_ASSERT_OK(p7_model_add_member_layers(m, "a", &l1, &g1));
    P7_ASSERT_OK(p7_model_add_layer(m, "s", &ls, &shared));
    P7_ASSERT_OK(p7_model_add_member_layers(m, "b", &l2, &g2));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MEMBER_LAYERS, g1, 1, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_RELU, 0, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_LAYER, shared, 0, 0));
    P7_ASSERT_OK(p7_model_add_step(m, P7_STEP_MEMBER_LAYERS, g2, 0, 0));
    const int64_t xs[2] = {2, 5};
    p7_tensor *x;
    P7_ASSERT_OK(p7_tensor_create(device, 2, xs, &x));
    P7_ASSERT_OK(p7_tensor_fill_uniform(x, 8, 0, -1.0f, 1.0f));
    P7_ASSERT_OK(p7_tensor_set_requires_grad(x, 1));
    p7_tape *tape;
    P7_ASSERT_OK(p7_tape_create(device, &tape));
    p7_tensor *y, *loss, *sq;
    P7_ASSERT_OK(p7_model_forward(m, tape, x, 1, &y));
    assert_int_equal(p7_tensor_dim(y, 0), 6);
    P7_ASSERT_OK(p7_mul(tape, y, y, &sq)); /* L = mean(y^2): every output matters */
    P7_ASSERT_OK(p7_mean(tape, sq, &loss));
    P7_ASSERT_OK(p7_tape_backward(tape, loss));
    p7_tensor_release(y), p7_tensor_release(sq), p7_tensor_release(loss);
    for (size_t pi = 0; pi <= p7_model_param_count(m); pi++) {
        p7_tensor *p = pi < p7_model_param_count(m) ? p7_model_param(m, pi, NULL) : x;
        const size_t n = p7_tensor_numel(p);
        float *v = p7_test_download(p), *g = p7_test_download(p7_tensor_grad(p));
        for (size_t i = 0; i < n; i += 3) {
            double l[2];
            for (int side = 0; side < 2; side++) {
                const float keep = v[i];
                v[i] = keep + (side ? 1e-2f : -1e-2f);
                P7_ASSERT_OK(p7_tensor_upload(p, v, n));
                v[i] = keep;
                P7_ASSERT_OK(p7_model_forward(m, NULL, x, 1, &y));
                P7_ASSERT_OK(p7_mul(NULL, y, y, &sq));
                P7_ASSERT_OK(p7_mean(NULL, sq, &loss));
                float lv;
                P7_ASSERT_OK(p7_tensor_download(loss, &lv, 1));
                l[side] = lv;
                p7_tensor_release(y), p7_tensor_release(sq), p7_tensor_release(loss);
            }
            P7_ASSERT_OK(p7_tensor_upload(p, v, n));
            const double fd = (l[1] - l[0]) / 2e-2;
            if (fabs(fd - g[i]) > 0.02 * fmax(fabs(fd), 1e-2))
                fail_msg("parameter %zu element %zu: gradient %g, finite differences %g", pi, i, (double)g[i], fd);
        }
        free(v);
        free(g);
    }
    p7_tensor_release(x);
    p7_tape_destroy(tape);
    p7_model_destroy(m);
}

/* 8 independent VGG11 members (quarter width) under a small memory limit: refused, and
 * the message names the layer of the largest buffer and its bytes. */
static void test_members_memory_refusal(void **state)
{
    (void)state;
    p7_device_options options = {.memory_limit = (uint64_t)64 << 20};
    p7_device *small = p7_test_open_device(&options);
    p7_network_config c = {.arch = P7_ARCH_VGG11, .classes = 10, .batchnorm = -1, .members = 8, .width = 0.25f};
    p7_model *m;
    P7_ASSERT_OK(p7_model_build(small, &c, 1, &m));
    p7_training_shape shape = {.batch = 128, .optimizer_slots = 3};
    assert_int_equal(p7_model_check_training_memory(m, &shape, "vgg11 x8", NULL), P7_ERROR_OUT_OF_MEMORY);
    const char *msg = p7_last_error();
    printf("refusal: %s\n", msg);
    assert_non_null(strstr(msg, "the largest buffer"));
    p7_memory_estimate e;
    P7_ASSERT_OK(p7_model_estimate_training_memory(m, &shape, &e));
    assert_true(strlen(e.largest_buffer_owner) > 0);
    assert_non_null(strstr(msg, e.largest_buffer_owner));
    char bytes[32];
    snprintf(bytes, sizeof bytes, "%llu bytes", (unsigned long long)e.largest_buffer);
    assert_non_null(strstr(msg, bytes));
    p7_model_destroy(m);
    p7_device_close(small);
}

static void test_names(void **state)
{
    (void)state;
    for (int a = P7_ARCH_SIMPLE; a <= P7_ARCH_VGG11_10CONV; a++) {
        p7_arch back;
        P7_ASSERT_OK(p7_arch_parse(p7_arch_name((p7_arch)a), &back));
        assert_int_equal(back, a);
    }
    for (int s = P7_SHARE_NONE; s <= P7_SHARE_ALL; s++) {
        p7_share back;
        P7_ASSERT_OK(p7_share_parse(p7_share_name((p7_share)s), &back));
        assert_int_equal(back, s);
    }
    p7_arch a;
    assert_int_equal(p7_arch_parse("resnet", &a), P7_ERROR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_within_presets),
        cmocka_unit_test(test_between_presets),
        cmocka_unit_test(test_between_batchensemble),
        cmocka_unit_test(test_combined_all_sixteen),
        cmocka_unit_test(test_study_models),
        cmocka_unit_test(test_faithful_printed_counts),
        cmocka_unit_test(test_faithful_explicit_init),
        cmocka_unit_test(test_forward_shapes),
        cmocka_unit_test(test_tie_errors),
        cmocka_unit_test(test_be_one_member_equals_plain),
        cmocka_unit_test(test_independent_members_differ),
        cmocka_unit_test(test_member_group_gradients),
        cmocka_unit_test(test_members_memory_refusal),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
