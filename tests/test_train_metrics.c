/* p7/metrics.h against the golden vectors of optimizers.md 6.5 (cases M1, M2, 15 and 20
 * bins) and 6.6 (a BatchEnsemble dense layer on the device, its member softmaxes and
 * the ensemble prediction), plus analytic cases for the ensemble parts: per-member
 * accuracy, diversity, the two combination rules, the NLL floor. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

P7_TEST_FILE_DEVICE

typedef struct metrics_case {
    float p[6][3];
    int32_t y[6];
} metrics_case;

static const metrics_case m1 = {{{0.62f, 0.28f, 0.10f},
                                 {0.30f, 0.66f, 0.04f},
                                 {0.10f, 0.15f, 0.75f},
                                 {0.05f, 0.90f, 0.05f},
                                 {0.45f, 0.35f, 0.20f},
                                 {1.0f, 0.0f, 0.0f}},
                                {0, 0, 2, 1, 1, 0}};
static const metrics_case m2 = {{{0.7f, 0.2f, 0.1f},
                                 {0.1f, 0.6f, 0.3f},
                                 {0.25f, 0.25f, 0.5f},
                                 {0.05f, 0.05f, 0.9f},
                                 {0.4f, 0.35f, 0.25f},
                                 {1.0f, 0.0f, 0.0f}},
                                {0, 2, 2, 2, 1, 0}};

/* The inputs are float32 copies of the decimal probabilities: 1e-7 covers that rounding. */
static const double tol = 1e-7;

static p7_metrics_summary summarise(const metrics_case *c, int bins)
{
    p7_metrics *m;
    P7_ASSERT_OK(p7_metrics_create(3, 1, bins, P7_ENSEMBLE_MEAN_PROBS, &m));
    /* in two batches, so accumulation across batches is exercised */
    P7_ASSERT_OK(p7_metrics_add_probs(m, &c->p[0][0], c->y, 4));
    P7_ASSERT_OK(p7_metrics_add_probs(m, &c->p[4][0], c->y + 4, 2));
    p7_metrics_summary s;
    P7_ASSERT_OK(p7_metrics_get(m, &s));
    p7_metrics_destroy(m);
    return s;
}

static void test_case_m1(void **state)
{
    (void)state;
    p7_metrics_summary s15 = summarise(&m1, 15), s20 = summarise(&m1, 20);
    assert_int_equal(s15.count, 6);
    assert_true(fabs(s15.accuracy - 4.0 / 6.0) < 1e-12);
    assert_true(fabs(s15.nll - 0.5208122196) < tol);
    assert_true(fabs(s15.brier - 0.3225) < tol);
    assert_true(fabs(s15.ece - 0.18) < tol);
    assert_true(fabs(s20.ece - 0.3066666667) < tol);
    assert_true(fabs(s20.nll - s15.nll) < 1e-15); /* bins change ECE only */
    assert_true(s15.members_known);
    assert_true(fabs(s15.member_accuracy[0] - s15.accuracy) < 1e-15);
    assert_true(s15.diversity == 0.0);
}

static void test_case_m2(void **state)
{
    (void)state;
    p7_metrics_summary s15 = summarise(&m2, 15), s20 = summarise(&m2, 20);
    assert_true(fabs(s15.accuracy - 4.0 / 6.0) < 1e-12);
    assert_true(fabs(s15.nll - 0.5681629282) < tol);
    assert_true(fabs(s15.brier - 0.3391666667) < tol);
    assert_true(fabs(s15.ece - 0.3166666667) < tol);
    assert_true(fabs(s20.ece - 0.3166666667) < tol);
}

/* Reliability bins of M1 at 15 bins: 0.62 and 0.66 share bin 9 (one right, one wrong). */
static void test_reliability_bins(void **state)
{
    (void)state;
    p7_metrics *m;
    P7_ASSERT_OK(p7_metrics_create(3, 1, 15, P7_ENSEMBLE_MEAN_PROBS, &m));
    P7_ASSERT_OK(p7_metrics_add_probs(m, &m1.p[0][0], m1.y, 6));
    size_t n;
    double acc, conf;
    P7_ASSERT_OK(p7_metrics_bin(m, 9, &n, &acc, &conf));
    assert_int_equal(n, 2);
    assert_true(fabs(acc - 0.5) < 1e-12);
    assert_true(fabs(conf - 0.64) < tol);
    P7_ASSERT_OK(p7_metrics_bin(m, 14, &n, &acc, &conf)); /* confidence 1.0 lands in the last bin */
    assert_int_equal(n, 1);
    assert_true(acc == 1.0 && conf == 1.0);
    P7_ASSERT_OK(p7_metrics_bin(m, 13, &n, &acc, &conf)); /* 0.90: 13.5 fifteenths */
    assert_int_equal(n, 1);
    assert_true(fabs(conf - 0.90) < tol);
    size_t total = 0;
    for (int j = 0; j < 15; j++) {
        P7_ASSERT_OK(p7_metrics_bin(m, j, &n, &acc, &conf));
        total += n;
    }
    assert_int_equal(total, 6);
    assert_int_equal(p7_metrics_bin(m, 15, &n, &acc, &conf), P7_ERROR_INVALID_ARGUMENT);
    /* reset forgets everything */
    p7_metrics_reset(m);
    p7_metrics_summary s;
    P7_ASSERT_OK(p7_metrics_get(m, &s));
    assert_int_equal(s.count, 0);
    p7_metrics_destroy(m);
}

/* A hard zero on the label costs -log(1e-7), not inf. */
static void test_nll_floor(void **state)
{
    (void)state;
    p7_metrics *m;
    P7_ASSERT_OK(p7_metrics_create(2, 1, 15, P7_ENSEMBLE_MEAN_PROBS, &m));
    const float p[2] = {1.0f, 0.0f};
    const int32_t y[1] = {1};
    P7_ASSERT_OK(p7_metrics_add_probs(m, p, y, 1));
    p7_metrics_summary s;
    P7_ASSERT_OK(p7_metrics_get(m, &s));
    assert_true(fabs(s.nll + log(1e-7)) < 1e-12);
    assert_true(fabs(s.brier - 2.0) < 1e-12);
    assert_true(fabs(s.ece - 1.0) < 1e-12);
    p7_metrics_destroy(m);
}

/* optimizers.md 6.6 through p7's BatchEnsemble ops on the device: alpha scales the
 * inputs, the shared W, gamma scales the outputs, the per-member bias is added. */
static void test_batchensemble_dense_golden(void **state)
{
    (void)state;
    const float x[4 * 3] = {1, 2, 3, 0, -1, 2, 1, 2, 3, 0, -1, 2}; /* [x1, x2, x1, x2] member-major */
    const float w_t[2 * 3] = {0.1f, 0.3f, -0.5f, 0.2f, -0.4f, 0.6f}; /* W^T: p7_linear takes [out, in] */
    const float alpha[2 * 3] = {1, -1, 0.5f, 2, 1, -1};
    const float gamma[2 * 2] = {1, 2, -1, 0.5f};
    const float bias[2 * 2] = {0.01f, 0.02f, 0.03f, 0.04f};
    const double want_logits[4 * 2] = {-1.24, 3.82, -0.19, 0.42, -2.27, -1.06, -0.67, -0.36};
    const double want_member_softmax[4 * 2] = {0.0063055473, 0.9936944527, 0.3520591979, 0.6479408021,
                                               0.229701051,  0.770298949,  0.4231147389, 0.5768852611};
    const double want_ensemble[2 * 2] = {0.1180032991, 0.8819967009, 0.3875869684, 0.6124130316};

    const int64_t sx[2] = {4, 3}, sw[2] = {2, 3}, sa[2] = {2, 3}, sg[2] = {2, 2};
    p7_tensor *tx = p7_test_tensor(device, 2, sx, x), *tw = p7_test_tensor(device, 2, sw, w_t),
              *ta = p7_test_tensor(device, 2, sa, alpha), *tg = p7_test_tensor(device, 2, sg, gamma),
              *tb = p7_test_tensor(device, 2, sg, bias);
    p7_tensor *xa, *y0, *y1, *logits, *member_softmax;
    P7_ASSERT_OK(p7_channel_mul(NULL, tx, ta, 2, &xa));
    P7_ASSERT_OK(p7_linear(NULL, xa, tw, NULL, &y0));
    P7_ASSERT_OK(p7_channel_mul(NULL, y0, tg, 2, &y1));
    P7_ASSERT_OK(p7_channel_add(NULL, y1, tb, 2, &logits));
    P7_ASSERT_OK(p7_softmax(NULL, logits, &member_softmax));
    float *l = p7_test_download(logits), *ps = p7_test_download(member_softmax);
    p7_test_assert_close("BE logits", l, want_logits, 8, 1e-5);
    p7_test_assert_close("member softmaxes", ps, want_member_softmax, 8, 1e-6);

    double ensemble[4];
    P7_ASSERT_OK(p7_ensemble_probs(l, 2, 2, 2, P7_ENSEMBLE_MEAN_PROBS, ensemble));
    for (int i = 0; i < 4; i++) assert_true(fabs(ensemble[i] - want_ensemble[i]) < 1e-6);

    /* The metrics see the same ensemble: labels (1, 0); NLL is the mean -log of the golden
     * ensemble probabilities of those labels; both members predict class 1 for x1, for x2
     * both predict class 1 as well, so member accuracy is 1/2 each and diversity 0. */
    const int32_t labels[2] = {1, 0};
    p7_metrics *m;
    P7_ASSERT_OK(p7_metrics_create(2, 2, 15, P7_ENSEMBLE_MEAN_PROBS, &m));
    P7_ASSERT_OK(p7_metrics_add_logits(m, l, 4, labels, 2));
    p7_metrics_summary s;
    P7_ASSERT_OK(p7_metrics_get(m, &s));
    double want_nll = -(log(want_ensemble[1]) + log(want_ensemble[2])) / 2;
    double want_brier = (pow(want_ensemble[0], 2) + pow(want_ensemble[1] - 1, 2) + pow(want_ensemble[2] - 1, 2) +
                         pow(want_ensemble[3], 2)) / 2;
    assert_true(fabs(s.nll - want_nll) < 1e-6);
    assert_true(fabs(s.brier - want_brier) < 1e-6);
    assert_true(fabs(s.accuracy - 0.5) < 1e-12);
    assert_true(s.members_known);
    assert_true(fabs(s.member_accuracy[0] - 0.5) < 1e-12 && fabs(s.member_accuracy[1] - 0.5) < 1e-12);
    assert_true(s.diversity == 0.0);
    /* each member's own NLL from the golden member softmaxes: rows m*2 + b, labels (1, 0) */
    for (int mi = 0; mi < 2; mi++) {
        double want = -(log(want_member_softmax[(mi * 2 + 0) * 2 + 1]) + log(want_member_softmax[(mi * 2 + 1) * 2 + 0])) / 2;
        assert_true(fabs(s.member_nll[mi] - want) < 1e-6);
    }
    p7_metrics_destroy(m);

    free(l);
    free(ps);
    p7_tensor *all[] = {tx, tw, ta, tg, tb, xa, y0, y1, logits, member_softmax};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) p7_tensor_release(all[i]);
}

/* Three members on four examples with chosen argmaxes: member 0 predicts (0,1,2,0),
 * member 1 (0,1,2,1), member 2 (1,1,0,0); labels (0,1,2,0). Pairwise disagreements:
 * (0,1) 1/4, (0,2) 2/4, (1,2) 3/4, so diversity = (1/4+2/4+3/4)/3 = 1/2. */
static void test_member_accuracy_and_diversity(void **state)
{
    (void)state;
    const int members = 3, batch = 4, k = 3;
    const int cls[3][4] = {{0, 1, 2, 0}, {0, 1, 2, 1}, {1, 1, 0, 0}};
    const int32_t labels[4] = {0, 1, 2, 0};
    float logits[3 * 4 * 3];
    for (int m = 0; m < members; m++)
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < k; j++) logits[(m * batch + b) * k + j] = j == cls[m][b] ? 2.0f : 0.0f;
    p7_metrics *m;
    P7_ASSERT_OK(p7_metrics_create(k, members, 15, P7_ENSEMBLE_MEAN_PROBS, &m));
    P7_ASSERT_OK(p7_metrics_add_logits(m, logits, (size_t)(members * batch), labels, (size_t)batch));
    p7_metrics_summary s;
    P7_ASSERT_OK(p7_metrics_get(m, &s));
    assert_true(fabs(s.member_accuracy[0] - 1.0) < 1e-12);
    assert_true(fabs(s.member_accuracy[1] - 0.75) < 1e-12);
    assert_true(fabs(s.member_accuracy[2] - 0.5) < 1e-12);
    assert_true(fabs(s.diversity - 0.5) < 1e-12);
    /* the ensemble: examples 0, 1 have a majority for the label; example 2 is a
     * two-to-one vote for 2; example 3 two-to-one for 0: all four right */
    assert_true(fabs(s.accuracy - 1.0) < 1e-12);

    /* combined logits ([B, C]) leave the members unknown */
    P7_ASSERT_OK(p7_metrics_add_logits(m, logits, (size_t)batch, labels, (size_t)batch));
    P7_ASSERT_OK(p7_metrics_get(m, &s));
    assert_false(s.members_known);
    assert_int_equal(s.count, 8);
    /* a row count that is neither is refused, naming both */
    assert_int_equal(p7_metrics_add_logits(m, logits, 5, labels, (size_t)batch), P7_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(p7_last_error(), "5 rows"));
    const int32_t bad[1] = {3};
    assert_int_equal(p7_metrics_add_logits(m, logits, 1, bad, 1), P7_ERROR_INVALID_ARGUMENT);
    p7_metrics_destroy(m);
}

/* Mean of probabilities and mean of logits differ, each as its formula says. Member
 * logits (0, a) and (0, b) for one example of two classes: MEAN_PROBS gives
 * p1 = (s(a) + s(b))/2, MEAN_LOGITS p1 = s((a+b)/2), with s the logistic function. */
static void test_rules(void **state)
{
    (void)state;
    const double a = 3.0, b = -1.0;
    const float logits[4] = {0.0f, (float)a, 0.0f, (float)b};
    double probs[2], mean_logits[2];
    P7_ASSERT_OK(p7_ensemble_probs(logits, 1, 2, 2, P7_ENSEMBLE_MEAN_PROBS, probs));
    P7_ASSERT_OK(p7_ensemble_probs(logits, 1, 2, 2, P7_ENSEMBLE_MEAN_LOGITS, mean_logits));
    double s_a = 1 / (1 + exp(-a)), s_b = 1 / (1 + exp(-b)), s_mid = 1 / (1 + exp(-(a + b) / 2));
    assert_true(fabs(probs[1] - (s_a + s_b) / 2) < 1e-12);
    assert_true(fabs(mean_logits[1] - s_mid) < 1e-12);
    assert_true(fabs(probs[0] + probs[1] - 1) < 1e-12);

    p7_metrics *m;
    assert_int_equal(p7_metrics_create(1, 1, 15, P7_ENSEMBLE_MEAN_PROBS, &m), P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_metrics_create(10, P7_METRICS_MAX_MEMBERS + 1, 15, P7_ENSEMBLE_MEAN_PROBS, &m),
                     P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_metrics_create(10, 1, 0, P7_ENSEMBLE_MEAN_PROBS, &m), P7_ERROR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_m1),
        cmocka_unit_test(test_case_m2),
        cmocka_unit_test(test_reliability_bins),
        cmocka_unit_test(test_nll_floor),
        cmocka_unit_test(test_batchensemble_dense_golden),
        cmocka_unit_test(test_member_accuracy_and_diversity),
        cmocka_unit_test(test_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
