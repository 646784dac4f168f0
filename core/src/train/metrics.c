/* Accuracy, NLL, ECE, Brier, per-member accuracy and diversity (p7/metrics.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "p7/metrics.h"
#include "runtime/runtime.h"

typedef struct ece_bin {
    size_t count;
    size_t correct;
    double confidence; /* sum */
} ece_bin;

struct p7_metrics {
    int classes, members, bins;
    p7_ensemble_rule rule;
    size_t count, correct;
    double nll, brier; /* sums */
    ece_bin *bin;
    int members_known;             /* every batch so far came as member logits */
    size_t member_correct[P7_METRICS_MAX_MEMBERS];
    double member_nll[P7_METRICS_MAX_MEMBERS];
    size_t *pair_disagree;         /* members*(members-1)/2 counters, pair (i<j) */
    double *probs;                 /* scratch: one example's classes */
    double *member_probs;          /* scratch: members x classes */
    int *member_class;             /* scratch: members */
};

p7_status p7_metrics_create(int classes, int members, int ece_bins, p7_ensemble_rule rule, p7_metrics **out)
{
    if (!out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_metrics_create: NULL out");
    *out = NULL;
    if (classes < 2)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_metrics_create: classes %d, expected at least 2", classes);
    if (members < 1 || members > P7_METRICS_MAX_MEMBERS)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_metrics_create: members %d, expected 1 .. %d", members,
                       P7_METRICS_MAX_MEMBERS);
    if (ece_bins < 1) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_metrics_create: ece_bins %d, expected >= 1", ece_bins);
    if (rule != P7_ENSEMBLE_MEAN_PROBS && rule != P7_ENSEMBLE_MEAN_LOGITS)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_metrics_create: rule %d is neither MEAN_PROBS nor MEAN_LOGITS",
                       (int)rule);
    p7_metrics *m = calloc(1, sizeof *m);
    size_t pairs = (size_t)members * (size_t)(members - 1) / 2;
    if (m) {
        m->bin = calloc((size_t)ece_bins, sizeof *m->bin);
        m->pair_disagree = calloc(pairs ? pairs : 1, sizeof *m->pair_disagree);
        m->probs = calloc((size_t)classes, sizeof *m->probs);
        m->member_probs = calloc((size_t)classes * (size_t)members, sizeof *m->member_probs);
        m->member_class = calloc((size_t)members, sizeof *m->member_class);
    }
    if (!m || !m->bin || !m->pair_disagree || !m->probs || !m->member_probs || !m->member_class) {
        p7_metrics_destroy(m);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_metrics_create: out of host memory");
    }
    m->classes = classes;
    m->members = members;
    m->bins = ece_bins;
    m->rule = rule;
    m->members_known = 1;
    *out = m;
    return P7_SUCCESS;
}

void p7_metrics_destroy(p7_metrics *m)
{
    if (!m) return;
    free(m->bin);
    free(m->pair_disagree);
    free(m->probs);
    free(m->member_probs);
    free(m->member_class);
    free(m);
}

void p7_metrics_reset(p7_metrics *m)
{
    if (!m) return;
    m->count = m->correct = 0;
    m->nll = m->brier = 0;
    memset(m->bin, 0, (size_t)m->bins * sizeof *m->bin);
    memset(m->member_correct, 0, sizeof m->member_correct);
    memset(m->member_nll, 0, sizeof m->member_nll);
    memset(m->pair_disagree, 0, (size_t)m->members * (size_t)(m->members - 1) / 2 * sizeof *m->pair_disagree);
    m->members_known = 1;
}

static int argmax_f64(const double *x, int n)
{
    int best = 0;
    for (int j = 1; j < n; j++)
        if (x[j] > x[best]) best = j; /* strict: ties go to the lowest index */
    return best;
}

/* p = softmax(z) in float64, shifted by the maximum so no exp overflows. */
static void softmax_f64(const double *z, int n, double *p)
{
    double top = z[argmax_f64(z, n)], sum = 0;
    for (int j = 0; j < n; j++) sum += p[j] = exp(z[j] - top);
    for (int j = 0; j < n; j++) p[j] /= sum;
}

/* The ensemble's distribution p [k] for example b of member-major logits [members*batch, k],
 * and each member's predicted class; scratch holds members x k doubles. */
static void combine_example(p7_ensemble_rule rule, const float *logits, size_t batch, size_t b, int k, int members,
                            double *scratch, int *member_class, double *p)
{
    for (int j = 0; j < k; j++) p[j] = 0;
    for (int mi = 0; mi < members; mi++) {
        const float *row = logits + ((size_t)mi * batch + b) * (size_t)k;
        double *pm = scratch + (size_t)mi * (size_t)k;
        for (int j = 0; j < k; j++) pm[j] = row[j];
        member_class[mi] = argmax_f64(pm, k); /* softmax keeps the order */
        if (rule == P7_ENSEMBLE_MEAN_PROBS) softmax_f64(pm, k, pm);
        for (int j = 0; j < k; j++) p[j] += pm[j] / members;
    }
    if (rule == P7_ENSEMBLE_MEAN_LOGITS) softmax_f64(p, k, p);
}

/* One member's NLL of the label from its logits, with the same floor as the ensemble's. */
static double member_nll(const float *row, int k, int32_t label)
{
    double top = row[0], sum = 0;
    for (int j = 1; j < k; j++) top = row[j] > top ? row[j] : top;
    for (int j = 0; j < k; j++) sum += exp((double)row[j] - top);
    double py = exp((double)row[label] - top) / sum;
    return -log(py < P7_METRICS_NLL_FLOOR ? P7_METRICS_NLL_FLOOR : py);
}

p7_status p7_ensemble_probs(const float *logits, size_t batch, int classes, int members, p7_ensemble_rule rule,
                            double *probs)
{
    if (!logits || !probs) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_ensemble_probs: NULL argument");
    if (classes < 1 || members < 1)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_ensemble_probs: classes %d, members %d: expected >= 1", classes,
                       members);
    double *scratch = malloc((size_t)classes * (size_t)members * sizeof *scratch);
    int *member_class = malloc((size_t)members * sizeof *member_class);
    if (!scratch || !member_class) {
        free(scratch);
        free(member_class);
        return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_ensemble_probs: out of host memory");
    }
    for (size_t b = 0; b < batch; b++)
        combine_example(rule, logits, batch, b, classes, members, scratch, member_class, probs + b * (size_t)classes);
    free(scratch);
    free(member_class);
    return P7_SUCCESS;
}

/* Scores one example's predictive distribution p against its label. */
static void score(p7_metrics *m, const double *p, int label)
{
    const int k = m->classes;
    int predicted = argmax_f64(p, k);
    double confidence = p[predicted];
    int correct = predicted == label;
    m->count++;
    m->correct += (size_t)correct;
    double py = p[label] < P7_METRICS_NLL_FLOOR ? P7_METRICS_NLL_FLOOR : p[label];
    m->nll -= log(py);
    for (int j = 0; j < k; j++) {
        double d = p[j] - (j == label ? 1.0 : 0.0);
        m->brier += d * d;
    }
    int b = (int)floor(confidence * m->bins);
    if (b < 0) b = 0;
    if (b >= m->bins) b = m->bins - 1; /* confidence 1 belongs to the last bin */
    m->bin[b].count++;
    m->bin[b].correct += (size_t)correct;
    m->bin[b].confidence += confidence;
}

static p7_status check_labels(const p7_metrics *m, const int32_t *labels, size_t batch, const char *fn)
{
    for (size_t b = 0; b < batch; b++)
        if (labels[b] < 0 || labels[b] >= m->classes)
            return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: label %d of example %zu is outside 0 .. %d", fn,
                           (int)labels[b], b, m->classes - 1);
    return P7_SUCCESS;
}

p7_status p7_metrics_add_logits(p7_metrics *m, const float *logits, size_t rows, const int32_t *labels,
                                       size_t batch)
{
    const char *fn = "p7_metrics_add_logits";
    if (!m || !logits || !labels) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    const int k = m->classes, members = m->members;
    int per_member = rows == (size_t)members * batch && members > 1;
    if (!per_member && rows != batch)
        return p7_fail(P7_ERROR_INVALID_SHAPE, "%s: %zu rows of logits for a batch of %zu with %d member(s): expected %zu%s",
                       fn, rows, batch, members, batch, members > 1 ? " (combined) or members x batch" : "");
    P7_TRY(check_labels(m, labels, batch, fn));
    if (!per_member) {
        m->members_known = m->members_known && members == 1;
        double *z = m->member_probs;
        for (size_t b = 0; b < batch; b++) {
            for (int j = 0; j < k; j++) z[j] = logits[b * (size_t)k + (size_t)j];
            softmax_f64(z, k, m->probs);
            score(m, m->probs, labels[b]);
            if (members == 1) {
                m->member_correct[0] += (size_t)(argmax_f64(m->probs, k) == labels[b]);
                m->member_nll[0] += member_nll(logits + b * (size_t)k, k, labels[b]);
            }
        }
        return P7_SUCCESS;
    }
    for (size_t b = 0; b < batch; b++) {
        double *p = m->probs;
        combine_example(m->rule, logits, batch, b, k, members, m->member_probs, m->member_class, p);
        for (int mi = 0; mi < members; mi++) {
            m->member_correct[mi] += (size_t)(m->member_class[mi] == labels[b]);
            m->member_nll[mi] += member_nll(logits + ((size_t)mi * batch + b) * (size_t)k, k, labels[b]);
        }
        score(m, p, labels[b]);
        size_t pair = 0;
        for (int i = 0; i < members; i++)
            for (int j = i + 1; j < members; j++) m->pair_disagree[pair++] += m->member_class[i] != m->member_class[j];
    }
    return P7_SUCCESS;
}

p7_status p7_metrics_add_probs(p7_metrics *m, const float *probs, const int32_t *labels, size_t batch)
{
    const char *fn = "p7_metrics_add_probs";
    if (!m || !probs || !labels) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    P7_TRY(check_labels(m, labels, batch, fn));
    const int k = m->classes;
    m->members_known = m->members_known && m->members == 1;
    for (size_t b = 0; b < batch; b++) {
        for (int j = 0; j < k; j++) m->probs[j] = probs[b * (size_t)k + (size_t)j];
        score(m, m->probs, labels[b]);
        if (m->members == 1) m->member_correct[0] += (size_t)(argmax_f64(m->probs, k) == labels[b]);
    }
    return P7_SUCCESS;
}

p7_status p7_metrics_get(const p7_metrics *m, p7_metrics_summary *out)
{
    if (!m || !out) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_metrics_get: NULL argument");
    memset(out, 0, sizeof *out);
    out->members = m->members;
    out->count = m->count;
    if (m->count == 0) return P7_SUCCESS;
    const double n = (double)m->count;
    out->accuracy = (double)m->correct / n;
    out->nll = m->nll / n;
    out->brier = m->brier / n;
    double gap = 0;
    for (int j = 0; j < m->bins; j++) gap += fabs((double)m->bin[j].correct - m->bin[j].confidence);
    out->ece = gap / n;
    out->members_known = m->members_known;
    if (!m->members_known) return P7_SUCCESS;
    for (int i = 0; i < m->members; i++) {
        out->member_accuracy[i] = (double)m->member_correct[i] / n;
        out->member_nll[i] = m->member_nll[i] / n;
    }
    size_t pairs = (size_t)m->members * (size_t)(m->members - 1) / 2;
    double disagree = 0;
    for (size_t p = 0; p < pairs; p++) disagree += (double)m->pair_disagree[p] / n;
    out->diversity = pairs ? disagree / (double)pairs : 0.0;
    return P7_SUCCESS;
}

p7_status p7_metrics_bin(const p7_metrics *m, int bin, size_t *count, double *accuracy, double *confidence)
{
    if (!m || !count || !accuracy || !confidence) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_metrics_bin: NULL argument");
    if (bin < 0 || bin >= m->bins)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_metrics_bin: bin %d, expected 0 .. %d", bin, m->bins - 1);
    const ece_bin *b = &m->bin[bin];
    *count = b->count;
    *accuracy = b->count ? (double)b->correct / (double)b->count : 0.0;
    *confidence = b->count ? b->confidence / (double)b->count : 0.0;
    return P7_SUCCESS;
}
