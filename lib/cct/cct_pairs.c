// cct_pairs.c: CCT-Net's pair sampler (balanced source pairs, unlabelled
// target pairs), D's flipped similarities, and the classification
// arithmetic: choosing representatives, voting, accuracy and macro-F1 (cct.h).
//
// Shapes: n samples, B pairs, k classes, K representatives per class.
#include "cct/cct.h"

#include <stdlib.h>
#include <string.h>

void ns_cct_pairs_free(ns_cct_pairs *p) {
    free(p->classes);
    free(p->start);
    free(p->members);
    memset(p, 0, sizeof *p);
}

int ns_cct_pairs_init(ns_cct_pairs *p, const int32_t *labels, int64_t n, ns_err *err) {
    memset(p, 0, sizeof *p);
    if (n < 2) return ns_errf(err, "%lld samples: pairs need at least 2", (long long)n);
    p->n = n;
    if (!labels) return 0;
    int32_t maxl = -1;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0) return ns_errf(err, "sample %lld has no label; source pairs need every label", (long long)i);
        if (labels[i] > maxl) maxl = labels[i];
    }
    int64_t *count = calloc((size_t)maxl + 1, sizeof *count);
    if (!count) return ns_errf(err, "out of memory");
    for (int64_t i = 0; i < n; i++) count[labels[i]]++;
    int k = 0;
    for (int32_t c = 0; c <= maxl; c++) k += count[c] > 0;
    if (k < 2) {
        free(count);
        return ns_errf(err, "source pairs need at least 2 classes (the data has %d)", k);
    }
    p->nclasses = k;
    p->classes = malloc((size_t)k * sizeof *p->classes);
    p->start = malloc((size_t)(k + 1) * sizeof *p->start);
    p->members = malloc((size_t)n * sizeof *p->members);
    int64_t *slot = calloc((size_t)maxl + 1, sizeof *slot);
    if (!p->classes || !p->start || !p->members || !slot) {
        free(count);
        free(slot);
        ns_cct_pairs_free(p);
        return ns_errf(err, "out of memory");
    }
    int j = 0;
    int64_t off = 0;
    for (int32_t c = 0; c <= maxl; c++) {
        if (!count[c]) continue;
        p->classes[j] = c;
        p->start[j] = off;
        slot[c] = off;
        off += count[c];
        j++;
    }
    p->start[k] = off;
    for (int64_t i = 0; i < n; i++) p->members[slot[labels[i]]++] = i;
    free(count);
    free(slot);
    return 0;
}

static int64_t member(const ns_cct_pairs *p, int c, ns_rng *rng) {
    int64_t size = p->start[c + 1] - p->start[c];
    return p->members[p->start[c] + (int64_t)ns_rng_below(rng, (uint64_t)size)];
}

void ns_cct_pairs_draw(const ns_cct_pairs *p, ns_rng *rng, int64_t B, int64_t *i1, int64_t *i2,
                       float *y) {
    for (int64_t b = 0; b < B; b++) {
        int same = ns_rng_uniform(rng) < 0.5;
        y[b] = (float)same;
        if (!p->nclasses) { // target: the same image, or another uniform one
            i1[b] = (int64_t)ns_rng_below(rng, (uint64_t)p->n);
            i2[b] = same ? i1[b] : (int64_t)ns_rng_below(rng, (uint64_t)p->n);
            continue;
        }
        int c1 = (int)ns_rng_below(rng, (uint64_t)p->nclasses), c2 = c1;
        if (!same) { // another class, uniform among the rest
            c2 = (int)ns_rng_below(rng, (uint64_t)p->nclasses - 1);
            if (c2 >= c1) c2++;
        }
        i1[b] = member(p, c1, rng);
        i2[b] = member(p, c2, rng);
    }
}

void ns_cct_flip_similarity(ns_rng *rng, const float *y, int64_t B, float *s, float *m) {
    for (int64_t b = 0; b < B; b++) {
        int right = ns_rng_uniform(rng) < 0.5;
        s[b] = right ? y[b] : 1.0f - y[b];
        m[b] = (float)right;
    }
}

// --- classification arithmetic ----------------------------------------------------

void ns_cct_decide(const float *prob, int64_t n, int k, int K, ns_cct_score score, int32_t *pred) {
    for (int64_t i = 0; i < n; i++) {
        int best = -1;
        int64_t best_votes = -1;
        double best_mean = -1;
        for (int c = 0; c < k; c++) {
            const float *p = prob + (i * k + c) * K;
            int64_t votes = 0;
            double sum = 0;
            for (int j = 0; j < K; j++) {
                votes += p[j] >= 0.5f;
                sum += p[j];
            }
            double mean = sum / K;
            int better;
            if (score == NS_CCT_VOTE)
                better = votes > best_votes || (votes == best_votes && mean > best_mean);
            else
                better = mean > best_mean;
            if (best < 0 || better) {
                best = c;
                best_votes = votes;
                best_mean = mean;
            }
        }
        pred[i] = best;
    }
}

void ns_cct_metrics(const int32_t *pred, const int32_t *truth, int64_t n, int k, double *accuracy,
                    double *macro_f1, int64_t *counted) {
    int64_t *tp = calloc((size_t)k * 3, sizeof *tp);
    int64_t used = 0, correct = 0;
    if (!tp) { // k is small; the caller's classes came from a stream
        *accuracy = *macro_f1 = 0;
        *counted = 0;
        return;
    }
    int64_t *fp = tp + k, *fn = tp + 2 * k;
    for (int64_t i = 0; i < n; i++) {
        if (truth[i] < 0) continue;
        used++;
        int t = truth[i], p = pred[i];
        if (p == t) {
            correct++;
            if (t < k) tp[t]++;
        } else {
            if (p >= 0 && p < k) fp[p]++;
            if (t < k) fn[t]++;
        }
    }
    double f1 = 0;
    int present = 0;
    for (int c = 0; c < k; c++) {
        if (tp[c] + fp[c] + fn[c] == 0) continue; // neither true nor predicted
        present++;
        f1 += 2.0 * (double)tp[c] / (double)(2 * tp[c] + fp[c] + fn[c]);
    }
    *accuracy = used ? (double)correct / (double)used : 0;
    *macro_f1 = present ? f1 / present : 0;
    *counted = used;
    free(tp);
}

int ns_cct_pick_reps(const ns_samples *reps, int k, int K, ns_rng *rng, int64_t *idx, ns_err *err) {
    if (K < 1) return ns_errf(err, "K = %d representatives per class", K);
    int64_t *all = malloc((size_t)(reps->n ? reps->n : 1) * sizeof *all);
    if (!all) return ns_errf(err, "out of memory");
    int rc = 0;
    for (int c = 0; c < k && rc == 0; c++) {
        int64_t m = 0;
        for (int64_t i = 0; i < reps->n; i++)
            if (reps->y[i] == c) all[m++] = i;
        if (m < K) {
            const char *name = reps->labels && (size_t)c < reps->nlabels ? reps->labels[c] : NULL;
            rc = ns_errf(err, "K = %d representatives per class, but class %d%s%s%s has only %lld", K, c,
                         name ? " (" : "", name ? name : "", name ? ")" : "", (long long)m);
            break;
        }
        if (rng) // a partial Fisher-Yates shuffle: K distinct, uniform
            for (int j = 0; j < K; j++) {
                int64_t r = j + (int64_t)ns_rng_below(rng, (uint64_t)(m - j));
                int64_t t = all[j];
                all[j] = all[r];
                all[r] = t;
            }
        memcpy(idx + (int64_t)c * K, all, (size_t)K * sizeof *idx);
    }
    free(all);
    return rc;
}
