// asr.c: activation sample reweighting on cached features (asr.h): the
// head's logits, confusion and accuracy, the ASR weights, head fine-tuning
// with weighted cross-entropy, and reading a CAV stream.
//
// Shapes: x (N, D) features, y (N) labels, W (K, D) and b (K) the head,
// logits (B, K) per batch, cavs (K, D), weights (N).
#include "cav/asr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "cav/cav.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "base/rng.h"
#include "base/tensor.h"
#include "stream/tns.h"

void ns_asr_logits(float *logits, const float *x, int64_t n, int64_t d, const float *w, const float *b,
                   int64_t k) {
    if (n == 0) return;
    ns_sgemm(0, 1, n, k, d, 1.0f, x, d, w, d, 0.0f, logits, k);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) logits[i * k + j] += b[j];
}

int ns_asr_check_labels(const int32_t *y, const int64_t *ids, int64_t n, int64_t k, ns_err *err) {
    for (int64_t i = 0; i < n; i++) {
        if (y[i] >= 0 && y[i] < k) continue;
        const char *why = y[i] < 0 ? "is unlabelled" : "has a label the head has no class for";
        if (ids) return ns_errf(err, "sample id %lld %s (%d; %lld classes)", (long long)ids[i], why, y[i], (long long)k);
        return ns_errf(err, "row %lld %s (%d; %lld classes)", (long long)i, why, y[i], (long long)k);
    }
    return 0;
}

// Rows of x per logits block: bounds the temporary to about 4 MB.
static int64_t block_rows(int64_t k) {
    int64_t r = ((int64_t)1 << 20) / (k > 0 ? k : 1);
    return r < 1 ? 1 : r;
}

int ns_asr_confusion(int64_t *conf, const float *x, const int32_t *y, int64_t n, int64_t d, const float *w,
                     const float *b, int64_t k, ns_err *err) {
    if (k < 1 || d < 1) return ns_errf(err, "confusion: a head of %lld x %lld", (long long)k, (long long)d);
    if (ns_asr_check_labels(y, NULL, n, k, err) < 0) return -1;
    memset(conf, 0, (size_t)(k * k) * sizeof *conf);
    int64_t rows = block_rows(k);
    float *logits = ns_aligned_alloc((size_t)((n < rows ? n : rows) * k) * sizeof *logits);
    if (!logits) return ns_errf(err, "out of memory (%lld x %lld logits)", (long long)rows, (long long)k);
    for (int64_t i0 = 0; i0 < n; i0 += rows) {
        int64_t nb = n - i0 < rows ? n - i0 : rows;
        ns_asr_logits(logits, x + i0 * d, nb, d, w, b, k);
        for (int64_t i = 0; i < nb; i++) {
            const float *l = logits + i * k;
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                if (l[j] > l[best]) best = j;
            conf[y[i0 + i] * k + best]++;
        }
    }
    free(logits);
    return 0;
}

int64_t ns_asr_most_confused(const int64_t *conf, int64_t k, int64_t cls) {
    int64_t best = -1;
    for (int64_t j = 0; j < k; j++) {
        if (j == cls) continue;
        if (best < 0 || conf[cls * k + j] > conf[cls * k + best]) best = j;
    }
    return best;
}

int ns_asr_accuracy(int64_t *correct, int64_t *total, const float *x, const int32_t *y, int64_t n, int64_t d,
                    const float *w, const float *b, int64_t k, ns_err *err) {
    int64_t *conf = malloc((size_t)(k * k > 0 ? k * k : 1) * sizeof *conf);
    if (!conf) return ns_errf(err, "out of memory (%lld classes)", (long long)k);
    int rc = ns_asr_confusion(conf, x, y, n, d, w, b, k, err);
    for (int64_t t = 0; rc == 0 && t < k; t++) {
        correct[t] = conf[t * k + t];
        total[t] = 0;
        for (int64_t p = 0; p < k; p++) total[t] += conf[t * k + p];
    }
    free(conf);
    return rc;
}

int ns_asr_weights(float *w, float *act, const float *x, const int32_t *y, int64_t n, int64_t d,
                   const float *cavs, int64_t k, ns_err *err) {
    if (ns_asr_check_labels(y, NULL, n, k, err) < 0) return -1;
    double *cosv = malloc((size_t)(n ? n : 1) * sizeof *cosv);
    double *mx = malloc((size_t)k * sizeof *mx), *sum = malloc((size_t)k * sizeof *sum);
    int64_t *count = calloc((size_t)k, sizeof *count);
    if (!cosv || !mx || !sum || !count) {
        free(cosv);
        free(mx);
        free(sum);
        free(count);
        return ns_errf(err, "out of memory (%lld samples)", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        cosv[i] = ns_cav_cos(cavs + (int64_t)y[i] * d, x + i * d, d);
        if (act) act[i] = (float)cosv[i];
        if (count[y[i]]++ == 0 || cosv[i] > mx[y[i]]) mx[y[i]] = cosv[i];
    }
    // relative to each class's largest cosine: the same ratios, and exactly 1
    // for every sample of a class whose cosines are all equal
    for (int64_t c = 0; c < k; c++) sum[c] = 0;
    for (int64_t i = 0; i < n; i++) sum[y[i]] += exp(cosv[i] - mx[y[i]]);
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)((double)count[y[i]] * exp(cosv[i] - mx[y[i]]) / sum[y[i]]);
    free(cosv);
    free(mx);
    free(sum);
    free(count);
    return 0;
}

void ns_asr_config_default(ns_asr_config *cfg) {
    cfg->lr = 1e-3;
    cfg->momentum = 0.9;
    cfg->epochs = 20;
    cfg->batch = 128;
    cfg->seed = 0;
}

int ns_asr_train_head(float *w, float *b, const float *x, const int32_t *y, const float *sw, int64_t n,
                      int64_t d, int64_t k, const ns_asr_config *cfg, ns_asr_report *rep, ns_err *err) {
    if (rep) memset(rep, 0, sizeof *rep);
    if (cfg->epochs < 0 || cfg->batch < 1 || !(cfg->lr > 0) || !(cfg->momentum >= 0))
        return ns_errf(err, "head training: bad settings (epochs %d, batch %lld, lr %g, momentum %g)", cfg->epochs,
                       (long long)cfg->batch, cfg->lr, cfg->momentum);
    if (ns_asr_check_labels(y, NULL, n, k, err) < 0) return -1;
    if (cfg->epochs == 0 || n == 0) return 0;
    const int64_t batch = cfg->batch < n ? cfg->batch : n;
    float *xb = ns_aligned_alloc((size_t)(batch * d) * sizeof *xb);
    float *logits = ns_aligned_alloc((size_t)(batch * k) * sizeof *logits);
    float *dlogits = ns_aligned_alloc((size_t)(batch * k) * sizeof *dlogits);
    float *gw = ns_aligned_alloc((size_t)(k * d) * sizeof *gw);
    float *gb = ns_aligned_alloc((size_t)k * sizeof *gb);
    float *wb = malloc((size_t)batch * sizeof *wb);
    int32_t *yb = malloc((size_t)batch * sizeof *yb);
    int64_t *order = malloc((size_t)n * sizeof *order);
    ns_optim *opt = NULL;
    int rc = -1;
    if (!xb || !logits || !dlogits || !gw || !gb || !wb || !yb || !order) {
        ns_errf(err, "out of memory (batch %lld x %lld)", (long long)batch, (long long)d);
        goto done;
    }
    const int64_t wshape[2] = {k, d};
    ns_param params[2] = {
        {.name = "head.weight", .value = w, .grad = gw, .numel = k * d, .ndim = 2, .shape = wshape, .decay = 1},
        {.name = "head.bias", .value = b, .grad = gb, .numel = k, .decay = 0},
    };
    ns_optim_config oc;
    ns_optim_config_default(&oc, NS_OPTIM_SGD);
    oc.momentum = cfg->momentum;
    if (!(opt = ns_optim_create(&oc, params, 2, err))) goto done;
    ns_rng rng;
    ns_rng_seed(&rng, cfg->seed);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int ep = 0; ep < cfg->epochs; ep++) {
        ns_rng_shuffle(&rng, order, n);
        double loss_sum = 0;
        int64_t nbatches = 0;
        for (int64_t b0 = 0; b0 < n; b0 += batch) {
            int64_t nb = n - b0 < batch ? n - b0 : batch;
            for (int64_t i = 0; i < nb; i++) {
                int64_t r = order[b0 + i];
                memcpy(xb + i * d, x + r * d, (size_t)d * sizeof *xb);
                yb[i] = y[r];
                wb[i] = sw ? sw[r] : 1.0f;
            }
            ns_asr_logits(logits, xb, nb, d, w, b, k);
            loss_sum += ns_softmax_ce_forward(NULL, logits, yb, wb, 0.0f, nb, k);
            memset(dlogits, 0, (size_t)(nb * k) * sizeof *dlogits);
            ns_softmax_ce_backward(dlogits, 1.0f, logits, yb, wb, 0.0f, nb, k);
            // dW (K, D) = dlogits^T (K, B) xb (B, D); db = column sums of dlogits
            ns_sgemm(1, 0, k, d, nb, 1.0f, dlogits, k, xb, d, 0.0f, gw, d);
            for (int64_t j = 0; j < k; j++) gb[j] = 0;
            for (int64_t i = 0; i < nb; i++)
                for (int64_t j = 0; j < k; j++) gb[j] += dlogits[i * k + j];
            ns_optim_step(opt, cfg->lr);
            nbatches++;
        }
        double mean = loss_sum / (double)nbatches;
        if (!isfinite(mean)) {
            ns_errf(err, "head training diverged in epoch %d (lr %g too high?)", ep + 1, cfg->lr);
            goto done;
        }
        if (rep) {
            if (ep == 0) rep->first_loss = mean;
            rep->last_loss = mean;
            rep->steps += nbatches;
        }
    }
    rc = 0;
done:
    ns_optim_free(opt);
    free(xb);
    free(logits);
    free(dlogits);
    free(gw);
    free(gb);
    free(wb);
    free(yb);
    free(order);
    return rc;
}
