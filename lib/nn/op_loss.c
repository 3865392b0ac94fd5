// op_loss.c: losses with a mean reduction, each returning the scalar loss:
// softmax cross-entropy on logits (N, K) with int32 targets (N), optional label
// smoothing and per-sample weights (N); binary cross-entropy on logits (n)
// with float targets (n) and optional weights (n); mean squared error (n).
// Forward sums run serially, in double, in index order, so the loss does not
// depend on the thread count. Backward accumulates dloss * dL/dinput and
// recomputes the softmax/sigmoid from the logits; nothing is saved. An empty
// batch has loss 0.
//
// Weighted reduction (both CE and BCE): L = sum_i w_i l_i / N. With weights of
// mean 1 (ASR's per-sample reweighting) this is the plain mean reweighted.
// torch's CrossEntropyLoss(weight=class_weights) divides by sum_i w_i instead;
// to get that, scale dloss (and the loss) by N / sum_i w_i.
#include "nn/ops.h"

#include <math.h>

#define OMP_MIN 32768

int ns_check_class_ids(const int32_t *ids, int64_t n, int64_t K, ns_err *err) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= K)
            return ns_errf(err, "id %lld at index %lld is outside [0, %lld)",
                           (long long)ids[i], (long long)i, (long long)K);
    return 0;
}

// log sum_k exp(z_k), stable.
static double logsumexp(const float *z, int64_t K) {
    float mx = z[0];
    for (int64_t k = 1; k < K; k++)
        if (z[k] > mx) mx = z[k];
    double s = 0;
    for (int64_t k = 0; k < K; k++) s += exp((double)(z[k] - mx));
    return mx + log(s);
}

float ns_softmax_ce_forward(float *losses, const float *logits, const int32_t *targets,
                            const float *weights, float smoothing, int64_t N, int64_t K) {
    if (N <= 0) return 0.0f;
    double total = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *z = logits + i * K;
        double lse = logsumexp(z, K);
        // -sum_k q_k log p_k with q = (1-eps) onehot + eps/K
        double l = lse - z[targets[i]];
        if (smoothing != 0.0f) {
            double zs = 0;
            for (int64_t k = 0; k < K; k++) zs += z[k];
            l = (1.0 - smoothing) * l + smoothing * (lse - zs / (double)K);
        }
        if (losses) losses[i] = (float)l;
        total += weights ? weights[i] * l : l;
    }
    return (float)(total / (double)N);
}

void ns_softmax_ce_backward(float *dlogits, float dloss, const float *logits,
                            const int32_t *targets, const float *weights, float smoothing,
                            int64_t N, int64_t K) {
    const float off = smoothing / (float)K, on = 1.0f - smoothing + off;
#pragma omp parallel for schedule(static) if (N * K >= OMP_MIN / 8)
    for (int64_t i = 0; i < N; i++) {
        const float *z = logits + i * K;
        float *dz = dlogits + i * K;
        double lse = logsumexp(z, K);
        float s = dloss * (weights ? weights[i] : 1.0f) / (float)N;
        for (int64_t k = 0; k < K; k++) {
            float p = (float)exp(z[k] - lse);
            dz[k] += s * (p - (k == targets[i] ? on : off));
        }
    }
}

// ----------------------------------------------------------------------------

float ns_bce_logits_forward(const float *logits, const float *targets, const float *weights,
                            int64_t n) {
    if (n <= 0) return 0.0f;
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = logits[i], y = targets[i];
        double l = (x > 0 ? x : 0) - x * y + log1p(exp(-fabs(x)));
        total += weights ? weights[i] * l : l;
    }
    return (float)(total / (double)n);
}

void ns_bce_logits_backward(float *dlogits, float *dtargets, float dloss, const float *logits,
                            const float *targets, const float *weights, int64_t n) {
    const float scale = dloss / (float)n;
#pragma omp parallel for schedule(static) if (n >= OMP_MIN / 8)
    for (int64_t i = 0; i < n; i++) {
        float x = logits[i], s = weights ? scale * weights[i] : scale;
        if (dlogits) {
            float sig = x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
            dlogits[i] += s * (sig - targets[i]);
        }
        if (dtargets) dtargets[i] -= s * x;
    }
}

// ----------------------------------------------------------------------------

float ns_mse_forward(const float *a, const float *b, int64_t n) {
    if (n <= 0) return 0.0f;
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        total += d * d;
    }
    return (float)(total / (double)n);
}

void ns_mse_backward(float *da, float *db, float dloss, const float *a, const float *b,
                     int64_t n) {
    const float scale = 2.0f * dloss / (float)n;
#pragma omp parallel for schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = scale * (a[i] - b[i]);
        if (da) da[i] += g;
        if (db) db[i] -= g;
    }
}
