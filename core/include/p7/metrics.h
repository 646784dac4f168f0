/* p7 metrics: accuracy, NLL, ECE and Brier score of a predictive distribution, and the
 * per-member accuracy and diversity of an ensemble (docs/training.md gives the
 * definitions; optimizers.md section 5 the conventions they follow).
 *
 * Host-side, float64 accumulation. Feed batches of member logits (or ready
 * probabilities), read the totals once:
 *
 *     p7_metrics *m;
 *     p7_metrics_create(10, members, 15, P7_ENSEMBLE_MEAN_PROBS, &m);
 *     for each batch: p7_metrics_add_logits(m, logits, rows, labels, batch);
 *     p7_metrics_summary s; p7_metrics_get(m, &s);
 *
 * Conventions: accuracies are fractions in [0, 1]; the predicted class is the argmax
 * with ties to the lowest index; NLL is in nats with p_y clamped to >= 1e-7 (so a hard
 * zero gives 16.1, not inf); Brier sums over classes and averages over examples (range
 * [0, 2]); ECE is top-label over `ece_bins` equal-width bins [j/n, (j+1)/n), confidence
 * 1 in the last bin. */
#ifndef P7_METRICS_H
#define P7_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "p7/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest ensemble whose members are scored one by one. */
#define P7_METRICS_MAX_MEMBERS 32
/* The probability floor of the NLL. */
#define P7_METRICS_NLL_FLOOR 1e-7

/* How an ensemble's members make one prediction. */
typedef enum p7_ensemble_rule {
    P7_ENSEMBLE_MEAN_PROBS = 0, /* p = mean over members of softmax(logits_m): a mixture */
    P7_ENSEMBLE_MEAN_LOGITS = 1 /* p = softmax(mean over members of logits_m): the original study */
} p7_ensemble_rule;

typedef struct p7_metrics p7_metrics;

typedef struct p7_metrics_summary {
    size_t count;       /* examples seen */
    double accuracy;    /* of the ensemble prediction */
    double nll;
    double ece;
    double brier;
    int members;        /* as created */
    /* 1 when every batch came as member logits (rows = members * batch), so the members'
     * own accuracies and their diversity are known; 0 when combined logits or
     * probabilities came in (then member_accuracy and diversity are 0). */
    int members_known;
    double member_accuracy[P7_METRICS_MAX_MEMBERS];
    double member_nll[P7_METRICS_MAX_MEMBERS]; /* each member's own NLL (its softmax), same floor */
    /* mean over member pairs of the fraction of examples whose predicted classes differ:
     * 0 for one member, and for members that collapsed into one network */
    double diversity;
} p7_metrics_summary;

/* classes >= 2; 1 <= members <= P7_METRICS_MAX_MEMBERS; ece_bins >= 1. */
P7_API p7_status p7_metrics_create(int classes, int members, int ece_bins, p7_ensemble_rule rule, p7_metrics **out);
P7_API void p7_metrics_destroy(p7_metrics *metrics); /* NULL is a no-op */
/* Forget everything seen (for the next epoch). */
P7_API void p7_metrics_reset(p7_metrics *metrics);

/* One batch of `batch` examples with labels [batch]. logits is [rows, classes], rows
 * either members * batch (member-major: row m * batch + b is member m on example b),
 * combined by the rule, or batch (a prediction already combined: its softmax is p). */
P7_API p7_status p7_metrics_add_logits(p7_metrics *metrics, const float *logits, size_t rows, const int32_t *labels,
                                       size_t batch);
/* One batch of ready predictive probabilities [batch, classes] (rows summing to 1; e.g.
 * IVON's Bayesian model average). */
P7_API p7_status p7_metrics_add_probs(p7_metrics *metrics, const float *probs, const int32_t *labels, size_t batch);

/* The ensemble prediction alone: probs [batch, classes] (float64) from member-major
 * logits [members * batch, classes] by `rule` (members 1: the softmax). */
P7_API p7_status p7_ensemble_probs(const float *logits, size_t batch, int classes, int members, p7_ensemble_rule rule,
                                   double *probs);

P7_API p7_status p7_metrics_get(const p7_metrics *metrics, p7_metrics_summary *out);

/* The reliability diagram's bin j (0 .. ece_bins-1): examples in it, their accuracy
 * and mean confidence (both 0 for an empty bin). */
P7_API p7_status p7_metrics_bin(const p7_metrics *metrics, int bin, size_t *count, double *accuracy,
                                double *confidence);

#ifdef __cplusplus
}
#endif

#endif
