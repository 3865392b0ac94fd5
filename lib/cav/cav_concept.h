// cav_concept.h: one concept's CAV from a probe pool, as cav-fit runs it
// (the original CAV of TCAV between drawn concept and non-concept rows, or
// LG-CAV guided by a VLM's scores), and TCAV scores of a CAV through a
// model's gradients at the probed layer.
//
// Shapes: pool features F (N, D); a concept table (Nc, K) of 1 has, 0 has
// not, 2 unknown, F's row i at table row row[i]; VLM image embeddings G
// (N, E) in F's order; a concept's text embedding (E); a CAV v (D); per
// class, the feature gradients of its logit (n_k, D).
#ifndef NS_CAV_CONCEPT_H
#define NS_CAV_CONCEPT_H

#include <stdint.h>

#include "base/err.h"
#include "cav/cav.h"
#include "nn/batches.h"
#include "nn/engine.h"
#include "nn/probe.h"

typedef struct ns_cav_pool {
    const float *f;      // (N, D)
    int64_t n, d;
    const uint8_t *has;  // (Nc, K) concept table, or NULL (no labelled rows)
    int64_t k;
    const int64_t *row;  // (N) F row -> table row
    const float *g;      // (N, E) lgcav: VLM image embeddings in F's order
    int64_t e;
} ns_cav_pool;

typedef struct ns_cav_job {
    int lgcav;               // 0: the original CAV, 1: LG-CAV
    ns_cav_loss loss;        // the original CAV's loss
    int64_t positives, negatives; // rows drawn from the concept table (at most)
    ns_lgcav_config lg;      // LG-CAV's settings (its seed is set per fit)
    int ce;                  // LG-CAV: the text is the concept ensemble (named in modules)
} ns_cav_job;

typedef struct ns_cav_result {
    ns_cav_decision dec;
    double heldout;          // the original CAV: held-out accuracy of its 67/33 split, else NAN
    int64_t np, nn;          // positives and negatives the fit used
    int cls;                 // LG-CAV: L_cls was on
    char modules[64];        // "hinge", "logistic", "ga,ce,dsr", ..., "none"
} ns_cav_result;

// Fits v (D) for concept name, column col of the concept table (-1: none),
// with seed: positives and negatives are drawn (seeded) from the rows whose
// column col is 1 and 0; LG-CAV also reads text (E), the concept's
// embedding. random: a CAV between two random sets of the pool instead
// (TCAV's null; always the original CAV). Fails naming the concept when the
// rows are too few for what the job asks.
int ns_cav_fit_concept(float *v, ns_cav_result *o, const ns_cav_pool *pool, const ns_cav_job *job,
                       const char *name, int64_t col, const float *text, uint64_t seed, int random,
                       ns_err *err);

// TCAV scores through a model: the gradients of each class's logit at the
// probed layer for up to max_per_class of its images, computed once per
// class when first needed.
typedef struct ns_tcav {
    const ns_probe *probe;
    ns_engine *e;
    const ns_samples *img;
    int64_t max_per_class, k;
    float **grads;   // (K) per class (ngrads[k], D), NULL until computed
    int64_t *ngrads;
} ns_tcav;

int ns_tcav_init(ns_tcav *t, const ns_probe *probe, ns_engine *e, const ns_samples *img, int64_t max_per_class,
                 ns_err *err);
void ns_tcav_free(ns_tcav *t);
// The TCAV score of v over the classes cls[0..m): the mean over those with
// images of the fraction of their images whose class logit grows along v
// (ns_cav_sign_fraction). NAN when no class has images.
int ns_tcav_score(double *score, ns_tcav *t, const float *v, const int64_t *cls, int64_t m, ns_err *err);

#endif
