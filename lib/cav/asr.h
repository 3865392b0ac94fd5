// asr.h: activation sample reweighting (ASR; LG-CAV paper,
// "Understanding Model Behavior via Language-Guided Concept Activation
// Vectors", NeurIPS 2024, arXiv:2410.10308, section 4) on
// cached features: which class each class is most often taken for (the
// default concept "a photo of k, not k'"), the per-sample weights from each
// class's concept activation vector, fine-tuning a linear head with weighted
// cross-entropy, and the head's accuracy. The CAVs come from cav-fit
// streams (ns_cavs_load, cav_io.h). No images and no models: every input is
// a row-major f32 matrix that probe-embed extracted before.
//
// Dimensions:
//   N  training samples   D  feature width (the head's input)
//   K  classes            M  CAVs in a stream
//
// Weights. For class k with CAV v_k and training set I_k:
//   w(x) = |I_k| * exp(cos(v_k, f(x))) / sum_{x' in I_k} exp(cos(v_k, f(x')))
// so the weights of each class have mean 1. The exponentials are taken
// relative to the class's largest cosine (the same ratio, no overflow), so
// when every cosine of a class is equal (a zero CAV: cos is 0) every weight
// is exactly 1 and training matches uniform weights bit for bit.
#ifndef NS_ASR_H
#define NS_ASR_H

#include <stdint.h>

#include "base/err.h"

// logits (N, K) = x (N, D) W^T (D, K) + b (K), through ns_sgemm.
void ns_asr_logits(float *logits, const float *x, int64_t n, int64_t d, const float *w, const float *b,
                   int64_t k);

// Labels must be in [0, K): fails naming the first sample that is not
// (ids (N) may be NULL; then the row is named).
int ns_asr_check_labels(const int32_t *y, const int64_t *ids, int64_t n, int64_t k, ns_err *err);

// The confusion matrix conf (K, K) of the head on labelled features: row the
// true class, column the predicted one (the largest logit, the first on a
// tie). Labels are checked as ns_asr_check_labels does.
int ns_asr_confusion(int64_t *conf, const float *x, const int32_t *y, int64_t n, int64_t d, const float *w,
                     const float *b, int64_t k, ns_err *err);

// The class other than cls that conf (K, K) predicts most often for class
// cls; ties (none predicted included) go to the lowest index. -1 when K < 2.
int64_t ns_asr_most_confused(const int64_t *conf, int64_t k, int64_t cls);

// Per-class correct and total counts (K each) of the head on labelled
// features, from the confusion matrix.
int ns_asr_accuracy(int64_t *correct, int64_t *total, const float *x, const int32_t *y, int64_t n, int64_t d,
                    const float *w, const float *b, int64_t k, ns_err *err);

// ASR weights w (N) of labelled features x (N, D) from one CAV per class,
// cavs (K, D). act (N), when not NULL, receives cos(v_y, f(x)). Labels are
// checked; a class without samples is skipped.
int ns_asr_weights(float *w, float *act, const float *x, const int32_t *y, int64_t n, int64_t d,
                   const float *cavs, int64_t k, ns_err *err);

typedef struct ns_asr_config {
    double lr;       // SGD learning rate (1e-3, the paper's)
    double momentum; // SGD momentum (0.9; the paper does not say)
    int epochs;      // passes over the training set (20, the paper's)
    int64_t batch;   // samples per step (128; the paper does not say); the last batch may be smaller
    uint64_t seed;   // the per-epoch shuffles (0)
} ns_asr_config;

void ns_asr_config_default(ns_asr_config *cfg);

typedef struct ns_asr_report {
    int64_t steps;
    double first_loss; // mean weighted loss of the first epoch's batches
    double last_loss;  // ... of the last epoch's
} ns_asr_report;

// Fine-tunes a linear head W (K, D), b (K) in place on features x (N, D),
// labels y (N) with per-sample weights sw (N) (NULL: all 1): per step the
// loss sum_i sw_i * CE_i / B over the batch (lib/nn/ops.h's convention),
// plain SGD with momentum (lib/nn/optim.h), the order reshuffled each epoch
// from one generator seeded once. Deterministic for a seed and thread
// count. rep may be NULL. Epochs 0: nothing changes.
int ns_asr_train_head(float *w, float *b, const float *x, const int32_t *y, const float *sw, int64_t n,
                      int64_t d, int64_t k, const ns_asr_config *cfg, ns_asr_report *rep, ns_err *err);

#endif
