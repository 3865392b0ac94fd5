// cav.h: concept activation vectors on cached features: the original CAV of
// TCAV (a linear classifier between concept and random features), LG-CAV
// (a CAV guided by a vision-language model's scores on a probe pool, see
// arXiv:2410.10308, NeurIPS 2024), and the metrics both are judged by (concept
// accuracy, concept-to-class cosine, TCAV sign fraction, Student's t-test).
// No images and no models here: every input is a row-major f32 matrix that
// probe-embed (or anything else) extracted before.
//
// Dimensions:
//   N   probe-pool size             Df  target-model feature size (input to the head)
//   Dv  VLM embedding size          T   number of text templates of one concept
//   np  concept positives           nn  negatives (random / other concepts)
//   K   classes of the head         R   the selected probes (|R| <= N)
//
// Sign convention. TCAV labels the concept 0 and random 1 and returns
// CAV = -coef (sklearn's coef points toward label 1). Here the concept is the
// positive class (+1 for the hinge, 1 for the logistic), so v itself points
// toward the concept and equals TCAV's -coef; the decision bias b is the
// negative of sklearn's intercept in TCAV's labelling.
//
// A CAV decides "concept" when its score is > 0 (ns_cav_decision):
//   LINEAR  score = v·f + offset          (a trained classifier: offset is its bias)
//   COSINE  score = cos(v, f) + offset    (pure LG-CAV: offset is -threshold)
// cos(v, f) is 0 when either vector is zero.
//
// Every function validates its sizes and pointers and fails with a message in
// err (lib/base/err.h); fits also refuse non-finite inputs, naming the matrix and row.
#ifndef NS_CAV_H
#define NS_CAV_H

#include <stdint.h>

#include "base/err.h"
#include "nn/optim.h"

// ----------------------------------------------------------------------------
// decisions and metrics (cav_eval.c)

// Append-only.
typedef enum ns_cav_rule {
    NS_CAV_RULE_LINEAR,
    NS_CAV_RULE_COSINE,
    NS_CAV_RULE_COUNT
} ns_cav_rule;

typedef struct ns_cav_decision {
    ns_cav_rule rule;
    double offset; // LINEAR: the bias; COSINE: minus the cosine threshold
} ns_cav_decision;

const char *ns_cav_rule_name(ns_cav_rule rule); // "linear", "cosine"

// cos(a, b) over d floats, accumulated in double; 0 when either is zero.
double ns_cav_cos(const float *a, const float *b, int64_t d);

// The decision score of one feature row f (Df).
double ns_cav_score(const float *v, const ns_cav_decision *dec, const float *f, int64_t df);

// Concept accuracy: the fraction of pos (np, Df) with score > 0 and of neg
// (nn, Df) with score <= 0, together: (correct pos + correct neg) / (np + nn).
int ns_cav_accuracy(double *acc, const float *v, const ns_cav_decision *dec,
                    const float *pos, int64_t np, const float *neg, int64_t nn, int64_t df,
                    ns_err *err);

// The threshold that best separates labelled scores: concept iff score > thr.
// Scores are sorted and every cut between two distinct neighbours (and below
// the lowest, above the highest) is tried; the cut with the highest accuracy
// wins, ties to the one nearest the middle of the sorted list; thr is the
// midpoint of the two scores around the cut (lowest - 1 or highest + 1 at the
// ends). labels: 1 concept, 0 not. *acc receives the accuracy at thr.
int ns_cav_best_threshold(double *thr, double *acc, const double *scores, const int *labels,
                          int64_t n, ns_err *err);

// Concept-to-class score: the mean over the nc listed classes of cos(v, W_k),
// W (K, Df) the head's weight rows (lgcav.md §2: the gradient of a linear head
// h_k with respect to f is W_k).
int ns_cav_class_score(double *score, const float *v, const float *w, int64_t k, int64_t df,
                       const int64_t *classes, int64_t nc, ns_err *err);

// TCAV-style sign fraction: the fraction of the n rows of grads (n, Df) with
// grad·v > 0. With grads = d h_k / d f (the paper's S_k) this is the TCAV score;
// tensorflow/tcav differentiates the class's cross-entropy loss instead and
// counts grad·v < 0: pass the negated loss gradients to get its number.
int ns_cav_sign_fraction(double *frac, const float *grads, int64_t n, int64_t df,
                         const float *v, ns_err *err);

// The regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1
// (scipy.special.betainc); NAN outside the domain. Continued fraction
// (modified Lentz), about 1e-14 relative.
double ns_betainc(double a, double b, double x);

// Two-sided p-value of Student's t with dof degrees of freedom (dof > 0):
// P(|T| >= |t|) = I_{dof/(dof+t^2)}(dof/2, 1/2). NAN for NAN t.
double ns_t_pvalue(double t, double dof);

// Student's two-sample t-test with equal variances, two-sided, as
// scipy.stats.ttest_ind(a, b) (equal_var=True): t = (mean_a - mean_b) /
// sqrt(s2 (1/na + 1/nb)), s2 the pooled variance (ddof 1), dof = na + nb - 2.
// Needs na, nb >= 2 (scipy gives NAN for a single sample). With s2 == 0:
// t = +-inf and p = 0 when the means differ, t = p = NAN when they are equal
// (scipy's answers).
int ns_ttest_ind(double *t, double *p, const double *a, int64_t na, const double *b,
                 int64_t nb, ns_err *err);

// ----------------------------------------------------------------------------
// the original CAV (cav_fit.c)

// Append-only.
typedef enum ns_cav_loss {
    NS_CAV_HINGE,    // sklearn SGDClassifier(alpha, max_iter, tol): TCAV's default
    NS_CAV_LOGISTIC, // sklearn LogisticRegression(C): L2, intercept not penalised
    NS_CAV_LOSS_COUNT
} ns_cav_loss;

typedef struct ns_cav_config {
    ns_cav_loss loss;
    double alpha;         // hinge: L2 strength, sklearn's alpha (0.01 in TCAV)
    double c;             // logistic: inverse L2 strength, sklearn's C (1.0)
    int max_iter;         // hinge: epochs (1000); logistic: L-BFGS iterations (100)
    double tol;           // hinge: 1e-3 (sklearn's stopping rule, see cav_fit.c);
                          // logistic: max |gradient| to stop (1e-4); < 0: run max_iter
    int n_iter_no_change; // hinge: 5
    double test_frac;     // held-out share of each class (0.33); 0: train on all
    uint64_t seed;        // the split and the hinge's per-epoch shuffles
} ns_cav_config;

// TCAV's defaults: hinge, alpha 0.01, max_iter 1000, tol 1e-3, 5 epochs without
// change, 33% held out, seed 0 (C 1.0 and the logistic's 100/1e-4 for that loss).
void ns_cav_config_default(ns_cav_config *cfg);

typedef struct ns_cav_report {
    int64_t n_used;      // rows used per class: min(np, nn), the first ones
    int64_t n_train, n_test;
    double train_acc;
    double test_acc;     // NAN when test_frac is 0
    int iters;           // epochs (hinge) or L-BFGS iterations (logistic)
    int converged;       // stopped by tol before max_iter
} ns_cav_report;

// Fits the classifier concept-vs-negative and returns its weight vector v (Df)
// (pointing toward the concept) with a LINEAR decision (its bias). Both sets
// are truncated to their first min(np, nn) rows (TCAV), each class split
// n_test = round(test_frac * n_used) held out, at least one row left on each
// side when test_frac > 0 (needs n_used >= 2 then). rep may be NULL.
int ns_cav_fit(float *v, ns_cav_decision *dec, ns_cav_report *rep, const float *pos,
               int64_t np, const float *neg, int64_t nn, int64_t df, const ns_cav_config *cfg,
               ns_err *err);

// ----------------------------------------------------------------------------
// LG-CAV building blocks (cav_lg.c)

// Concept text embedding t (Dv) from T template embeddings tpl (T, Dv).
// ensemble (CE): normalise each row, average, renormalise. Otherwise the row
// `index` alone, normalised. A zero row (or zero mean) is an error.
int ns_cav_text_embedding(float *t, const float *tpl, int64_t nt, int64_t dv, int ensemble,
                          int64_t index, ns_err *err);

// VLM scores a(x) = cos(t, g(x)) for the n rows of g (n, Dv).
void ns_cav_vlm_scores(float *a, const float *g, int64_t n, int64_t dv, const float *t);

// Probe selection: the k_top highest and k_bottom lowest a(x), or all n when
// n <= k_top + k_bottom. idx (n) receives the chosen row indices sorted by a
// descending (ties: lower index first), the first *n_top of them the "top"
// part (k_top, or round(n * k_top / (k_top + k_bottom)) when all are taken).
// Returns |R|, or -1 when out of memory.
int64_t ns_cav_select_probes(int64_t *idx, int64_t *n_top, const float *a, int64_t n,
                             int64_t k_top, int64_t k_bottom);

// Mean and standard deviation of the pairwise cosines cos(f_i, f_j) over the
// n rows of f (n, Df): pairs i < j, or all ordered pairs including i == j when
// diag. ddof 0 or 1. Gram blocks through ns_sgemm, sums in double.
int ns_cav_pair_stats(double *mean, double *sd, const float *f, int64_t n, int64_t df,
                      int diag, int ddof, ns_err *err);

// Deviation sample reweighting: s(x) = std over the positives of
// cos(f(x), f(x')), w(x) = n * exp(-s(x)) / sum exp(-s) over the n rows of f.
// s (n) may be NULL. Needs np >= 1 + ddof.
int ns_cav_dsr_weights(float *w, float *s, const float *f, int64_t n, const float *pos,
                       int64_t np, int64_t df, int ddof, ns_err *err);

// The two losses, with outputs first and gradients accumulated (+=) already
// multiplied by coef; each returns coef * loss. Sums in double.
//
// L_LG = (1/n) sum_i w_i (cos(v, f_i) - target_i)^2 over the n rows of f
// (n, Df); w NULL means 1. d cos(v, f)/dv = (f/|f| - cos * v/|v|) / |v|.
// v must be non-zero.
double ns_cav_lg_loss(float *grad_v, const float *v, const float *f, int64_t n, int64_t df,
                      const float *target, const float *w, double coef);
// L_cls = (1/n) sum_i BCE(sigmoid(v·f_i + b), y_i), y_i 1 for the n_pos rows
// of pos (n_pos, Df), 0 for the n_neg of neg; n = n_pos + n_neg > 0. grad_b may
// be NULL.
double ns_cav_cls_loss(float *grad_v, float *grad_b, const float *v, float b, const float *pos,
                       int64_t n_pos, const float *neg, int64_t n_neg, int64_t df, double coef);

// ----------------------------------------------------------------------------
// LG-CAV (cav_lg.c)

// Append-only.
typedef enum ns_lgcav_init {
    NS_LGCAV_INIT_RANDOM, // a seeded Gaussian direction
    NS_LGCAV_INIT_PROBES, // mean of the unit top probes minus mean of the unit bottom ones
    NS_LGCAV_INIT_GIVEN,  // the caller's v (non-zero), as passed in
    NS_LGCAV_INIT_COUNT
} ns_lgcav_init;

// Append-only. Threshold of a cosine decision (used when L_cls is off).
typedef enum ns_lgcav_thresh {
    NS_LGCAV_THRESH_BEST, // best separation of R's top part from its bottom part
    NS_LGCAV_THRESH_MID,  // midpoint of the mean cosines of the two parts
    NS_LGCAV_THRESH_COUNT
} ns_lgcav_thresh;

typedef struct ns_lgcav_config {
    int64_t k_top, k_bottom; // probe selection (500, 500)
    int ga;                  // Gaussian alignment of the target (1)
    int ce;                  // concept ensemble over the templates (1)
    int64_t template_index;  // the template used when ce is 0 (0)
    int dsr;                 // deviation sample reweighting; needs positives (1)
    int cls;                 // add L_cls; needs positives and negatives (1)
    int lg;                  // L_LG itself (1); 0 leaves a pure classifier (a check)
    double lambda;           // total = L_cls + lambda * L_LG (1)
    int std_ddof;            // ddof of every std (GA's two, DSR's): 1 (torch.std)
    int pair_diag;           // GA pairs include x' == x'' and both orders (0)
    ns_lgcav_thresh thresh;  // cosine decision's threshold (BEST)
    ns_optim_config optim;   // Adam, torch's betas, weight decay 0.3 (cav_lg.c says why)
    double lr;               // 0.02, see cav_lg.c
    const char *schedule;    // lr schedule spec for ns_lr_parse ("cosine")
    int epochs;              // 60
    int64_t batch;           // probes per step (100); 0: all of R
    ns_lgcav_init init;      // RANDOM
    uint64_t seed;           // init and the per-epoch shuffles of R (0)
} ns_lgcav_config;

void ns_lgcav_config_default(ns_lgcav_config *cfg);

typedef struct ns_lgcav_input {
    int64_t n, df, dv, nt;
    const float *f;   // (N, Df) probe pool: target-model features
    const float *g;   // (N, Dv) probe pool: VLM image embeddings of the same images
    const float *tpl; // (T, Dv) the concept's text embeddings, one per template
    int64_t np, nn;   // 0 when not given
    const float *pos; // (np, Df) concept positives, or NULL
    const float *neg; // (nn, Df) negatives, or NULL
} ns_lgcav_input;

typedef struct ns_lgcav_report {
    int64_t n_probes, n_top;    // |R| and its top part
    double mu_t, sd_t;          // pairwise cosines of f on R (computed with or without GA)
    double mu_vl, sd_vl;        // a(x) on R
    double w_min, w_max;        // DSR weights on R (1, 1 without DSR)
    double feat_scale;          // the RMS feature norm L_cls's features were divided by
    double loss_lg, loss_cls;   // after training, over all of R / all labelled rows (NAN if off)
    double fit_acc;             // the decision's accuracy on R's top vs bottom parts
    int64_t steps;
} ns_lgcav_report;

// Trains an LG-CAV v (Df). With cls, v is the classifier's weight vector for
// raw features and the decision is LINEAR with its trained bias; without, v
// is unit-norm and the decision is COSINE with cfg->thresh's threshold.
// For cfg->init == GIVEN, v holds the start on entry. rep may be NULL.
int ns_lgcav_fit(float *v, ns_cav_decision *dec, ns_lgcav_report *rep,
                 const ns_lgcav_input *in, const ns_lgcav_config *cfg, ns_err *err);

#endif
