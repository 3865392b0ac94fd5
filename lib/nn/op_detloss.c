// op_detloss.c: the losses of a CenterNet detector ("Objects as Points",
// Zhou, Wang, Krahenbuhl, arXiv:1904.07850) on dense per-pixel maps.
//
// Penalty-reduced focal loss on heatmap logits z (n) against Gaussian targets
// y (n) in [0, 1] (1 exactly at object centres). With p = sigmoid(z) clamped to
// [1e-4, 1 - 1e-4] (no gradient where the clamp bites, as torch.clamp):
//     l = -(1 - p)^alpha log(p)                      where y == 1
//     l = -(1 - y)^beta p^alpha log(1 - p)           elsewhere
//     L = sum l / max(P, 1),   P = the number of y == 1
// (CenterNet: alpha 2, beta 4). Masked L1 for the size and offset maps:
//     L = sum m |pred - target| / (sum m + 1e-4)
// with m (n) 1 at object centres, 0 elsewhere (CenterNet's RegL1Loss).
// Sums run in double over fixed chunks added in order, so the loss does not
// depend on the thread count. Backward accumulates dloss * dL/dinput.
#include "nn/ops.h"

#include <math.h>
#include <stddef.h>

#define CHUNK 16384
#define P_MIN 1e-4
#define MAX_CHUNKS 4096

// x^a, by multiplication when a is a small whole number (CenterNet's 2 and 4).
static inline double power(double x, double a) {
    if (a == 1) return x;
    if (a == 2) return x * x;
    if (a == 3) return x * x * x;
    if (a == 4) { double x2 = x * x; return x2 * x2; }
    return pow(x, a);
}

// Per element: the loss, and d loss / d z (unnormalised) when dz is not NULL.
static inline double focal_term(float z, float y, double alpha, double beta, double *dz) {
    double p = 1.0 / (1.0 + exp(-(double)z)), grad_p = 1;
    if (p < P_MIN) { p = P_MIN; grad_p = 0; }
    if (p > 1 - P_MIN) { p = 1 - P_MIN; grad_p = 0; }
    double q = 1 - p, dp = grad_p * p * q; // d p / d z
    if (y == 1.0f) {
        double qa1 = power(q, alpha - 1), qa = qa1 * q, lp = log(p);
        // d/dp [-(1-p)^a log p] = a (1-p)^(a-1) log p - (1-p)^a / p
        if (dz) *dz = (alpha * qa1 * lp - qa / p) * dp;
        return -qa * lp;
    }
    double w = power(1.0 - (double)y, beta), pa1 = power(p, alpha - 1), pa = pa1 * p, lq = log(q);
    // d/dp [-w p^a log(1-p)] = -w (a p^(a-1) log(1-p) - p^a / (1-p))
    if (dz) *dz = -w * (alpha * pa1 * lq - pa / q) * dp;
    return -w * pa * lq;
}

static int64_t count_pos(const float *target, int64_t n) {
    int64_t P = 0;
    for (int64_t i = 0; i < n; i++) P += target[i] == 1.0f;
    return P;
}

float ns_focal_heatmap_forward(const float *logits, const float *target, int64_t n, float alpha, float beta,
                               int64_t *npos) {
    double part[MAX_CHUNKS];
    int64_t chunk = n / MAX_CHUNKS + 1 > CHUNK ? n / MAX_CHUNKS + 1 : CHUNK, nchunks = (n + chunk - 1) / chunk;
    #pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        double s = 0;
        int64_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (int64_t i = c * chunk; i < end; i++) s += focal_term(logits[i], target[i], alpha, beta, NULL);
        part[c] = s;
    }
    double total = 0;
    for (int64_t c = 0; c < nchunks; c++) total += part[c];
    int64_t P = count_pos(target, n);
    if (npos) *npos = P;
    return (float)(total / (double)(P > 1 ? P : 1));
}

void ns_focal_heatmap_backward(float *dlogits, float dloss, const float *logits, const float *target, int64_t n,
                               float alpha, float beta) {
    int64_t P = count_pos(target, n);
    double scale = (double)dloss / (double)(P > 1 ? P : 1);
    #pragma omp parallel for schedule(static) if (n > CHUNK)
    for (int64_t i = 0; i < n; i++) {
        double dz;
        focal_term(logits[i], target[i], alpha, beta, &dz);
        dlogits[i] += (float)(scale * dz);
    }
}

static double mask_sum(const float *mask, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m += mask[i];
    return m + 1e-4;
}

float ns_masked_l1_forward(const float *pred, const float *target, const float *mask, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        if (mask[i] != 0) s += fabs((double)mask[i] * pred[i] - (double)mask[i] * target[i]);
    return (float)(s / mask_sum(mask, n));
}

void ns_masked_l1_backward(float *dpred, float dloss, const float *pred, const float *target, const float *mask,
                           int64_t n) {
    double scale = (double)dloss / mask_sum(mask, n);
    for (int64_t i = 0; i < n; i++) {
        if (mask[i] == 0) continue;
        float d = mask[i] * pred[i] - mask[i] * target[i];
        if (d != 0) dpred[i] += (float)(scale * mask[i] * (d > 0 ? 1 : -1));
    }
}
