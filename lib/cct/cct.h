// cct.h: CCT-Net ("Comparison Knowledge Translation", Feng et al., IJCAI 2022):
// a comparison classifier G and a matching discriminator D over a twin
// backbone with shared weights, the pair sampler, the training stages, and
// classification of novel classes by comparison with K labelled
// representatives per class.
//
//   G(x1, x2)    = sigmoid(head_G(|f(x1) - f(x2)|))             P(same class)
//   D(x1, x2, s) = sigmoid(head_D([|f(x1) - f(x2)|; s x E]))    P(s is the true similarity)
//
// f is any engine model (the backbone: an image (C, H, W) -> E features), run
// once over the 2B images of B pairs (the twin branches share every weight;
// a twin transformer's cross-attention heads read the partner, which this
// layout makes sample n +/- B);
// a head is an engine model too: a vector of E (G) or 2E (D) -> linear layers
// with leaky ReLU (slope 0.1) between them -> 1 logit.
//
// A net is one TNS model stream: the backbone's meta (plus cct.role "G" or
// "D", cct.embed E, cct.hidden [widths], cct.source_classes [names]), its
// graph and tensors, then the head's tensors ("head.fc1.weight", ...,
// "head.out.bias"). Any model reader (net-info) sees the backbone.
//
// Shapes: B pairs, E embedding width, P = C*H*W per image, n samples.
#ifndef NS_CCT_H
#define NS_CCT_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "base/report.h"
#include "base/rng.h"
#include "nn/batches.h"
#include "nn/engine.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "stream/augment.h"

#define NS_CCT_MAX_HIDDEN 4
#define NS_CCT_SLOPE 0.1 // the heads' leaky ReLU slope (the official code's)

typedef enum ns_cct_role { NS_CCT_G, NS_CCT_D } ns_cct_role;

typedef struct ns_cct_net {
    ns_cct_role role;
    ns_model backbone;            // image -> (E)
    ns_model head;                // (E) for G, (2E) for D -> (1)
    int64_t embed;                // E
    int nhidden;
    int64_t hidden[NS_CCT_MAX_HIDDEN];
    char **source_classes;        // the classes G learned from (may be NULL)
    size_t nsource;
} ns_cct_net;

const char *ns_cct_role_name(ns_cct_role role); // "G", "D"

// The default backbone: conv3(16w)-bn-relu-maxpool, conv3(32w)-bn-relu-maxpool,
// flatten, linear(E), for images (c, h, w); parameters initialised from seed.
int ns_cct_default_backbone(ns_model *m, int c, int h, int w, double width, int64_t embed,
                            uint64_t seed, ns_err *err);

// The twin transformer (the official form, small): the vit built-in
// (nn/arch.h: P x P patches, D = 64 x width features, depth pre-norm blocks
// of `heads` heads, then the class token) with linear(E) as its head, and in
// every block's attention the last cross_heads heads reading the partner
// image's tokens (netsmith-spec(5) cross_heads; 0: a plain ViT shared by both
// branches). patch, depth, heads 0: the built-in's defaults (7, 4, 4).
int ns_cct_vit_backbone(ns_model *m, int c, int h, int w, double width, int depth, int patch, int heads,
                        int cross_heads, int64_t embed, uint64_t seed, ns_err *err);
// 1 when the backbone has twin attention: an image's features depend on its
// partner, so it runs on pairs only (never one image at a time).
int ns_cct_backbone_is_twin(const ns_model *m);

// A net around a backbone (taken over: *backbone is emptied) whose output is
// its embedding; the head gets the hidden widths (0 to NS_CCT_MAX_HIDDEN of
// them) and PyTorch's initialisation from seed.
int ns_cct_create(ns_cct_net *net, ns_cct_role role, ns_model *backbone, const int64_t *hidden,
                  int nhidden, uint64_t seed, ns_err *err);
void ns_cct_free(ns_cct_net *net);
// Sets the source classes (copied).
int ns_cct_set_sources(ns_cct_net *net, char *const *names, size_t n, ns_err *err);

int ns_cct_write(const ns_cct_net *net, ns_writer *w, const ns_map *extra_meta, ns_err *err);
// Loads a net; want_role -1 accepts either. Errors: not a CCT stream, the
// wrong role, a head tensor missing or of the wrong shape, an embedding width
// that is not the backbone's output.
int ns_cct_load(ns_cct_net *net, const char *path, int want_role, ns_err *err);

// --- running a net -------------------------------------------------------------
// Engines and buffers for batches of up to max_pairs pairs.
typedef struct ns_cct_run {
    ns_cct_net *net;
    ns_engine bb, head;
    int64_t max_pairs, P, E, in_w; // in_w: E (G) or 2E (D)
    int64_t n;                     // pairs in the last forward
    float *x;      // (2B, P) images: the first branch's B, then the second's
    float *hin;    // (B, in_w) head input
    float *dfeat;  // (2B, E) gradient to the backbone's output
    float *logit;  // (B)
} ns_cct_run;

int ns_cct_run_init(ns_cct_run *r, ns_cct_net *net, int64_t max_pairs, int with_grads, ns_err *err);
void ns_cct_run_free(ns_cct_run *r);
// Logits of n pairs whose images are in r->x (first x1 rows, then x2 rows
// from row n on: fill r->x yourself, or pass x1 and x2). s (n) is the
// similarity D is given; NULL for G. Writes r->logit and returns it.
const float *ns_cct_forward(ns_cct_run *r, const float *x1, const float *x2, const float *s,
                            int64_t n, int training, ns_err *err);
// Backpropagates dlogit (n) from the last forward: accumulates the head's
// parameter gradients, and the backbone's unless head_only; ds (n, may be
// NULL, D only) receives d loss / d s (summed over its E copies).
void ns_cct_backward(ns_cct_run *r, const float *dlogit, float *ds, int head_only);
void ns_cct_zero_grad(ns_cct_run *r);
// The trainable tensors of backbone and head as one optimiser table (*params
// malloc'd, *n entries; the head's names all start with "head.").
int ns_cct_params(ns_cct_run *r, ns_param **params, int *n, ns_err *err);

// --- pairs ---------------------------------------------------------------------
// Source pairs as the official sampler draws them: a class uniformly among
// those present, then with probability 1/2 a second image of the same class
// (y = 1), else an image of another class (y = 0); images uniform in their
// class. Target pairs (labels unknown): an image, then with probability 1/2
// the same image (y = 1, two augmentations make the pair), else a uniform
// image (y = 0 nominally). The class index is built once from the labels.
typedef struct ns_cct_pairs {
    int64_t n;          // samples
    int nclasses;       // classes present (labelled sampler), 0 for target
    int32_t *classes;   // (nclasses) class labels present
    int64_t *start;     // (nclasses + 1) offsets into members
    int64_t *members;   // (n) sample indices grouped by class
} ns_cct_pairs;

// labels NULL: a target (unlabelled) sampler. Labelled: every label >= 0 and
// at least 2 classes, else an error.
int ns_cct_pairs_init(ns_cct_pairs *p, const int32_t *labels, int64_t n, ns_err *err);
void ns_cct_pairs_free(ns_cct_pairs *p);
// Draws B pairs: i1, i2 (B) sample indices, y (B) similarity 0 or 1.
void ns_cct_pairs_draw(const ns_cct_pairs *p, ns_rng *rng, int64_t B, int64_t *i1, int64_t *i2,
                       float *y);
// D's source batch: s = y or 1 - y with probability 1/2 each, m = 1[s == y].
void ns_cct_flip_similarity(ns_rng *rng, const float *y, int64_t B, float *s, float *m);

// --- training ------------------------------------------------------------------
typedef struct ns_cct_train_config {
    int pre_epochs;        // G pretraining on source pairs (0: none)
    int adv_epochs;        // the adversarial stage (0: none: G alone)
    int64_t pairs_per_epoch; // pairs drawn per epoch (each stage)
    int64_t batch;         // pairs per step
    uint64_t seed;
    double lr_pre, lr_g, lr_d;
    double lr_final;       // cosine to lr * lr_final over the adversarial stage (0.01)
    int g_steps, d_steps;  // per adversarial iteration (1, 1)
    int g_src_steps;       // supervised source steps for G per iteration (0)
    int g_src_epochs;      // ... only in the first N adversarial epochs (0: all)
    int fs_steps;          // few-shot target steps for G per iteration (needs fewshot)
    int unsup_pre;         // pretraining also on target pairs, same image = same (0)
    // Loss switches (1 = on), for ablation:
    int use_d_src;         // D's source term
    int use_d_tgt;         // D's target term (G's outputs labelled fake)
    int use_g_adv;         // G's adversarial loss
    int crop_pad;          // augmentation: random crop padding (2)
    double flip_p;         // horizontal flip probability (0.5)
    const ns_reporter *report;
    FILE *log;             // TSV line per epoch when not NULL
} ns_cct_train_config;

void ns_cct_train_config_default(ns_cct_train_config *cfg);

typedef struct ns_cct_epoch_stats {
    const char *stage;     // "pretrain", "adversarial"
    int epoch;             // 1-based within the stage
    double loss_g, loss_d, acc_g_src, acc_g_tgt, acc_d_src, seconds;
} ns_cct_epoch_stats;

// Trains G (and D, for the adversarial stage; D may be NULL when adv_epochs
// is 0) on source (labelled) and target (labels ignored) samples; fewshot
// (labelled target samples) may be NULL. Both nets change in place.
int ns_cct_train(ns_cct_net *G, ns_cct_net *D, const ns_samples *source, const ns_samples *target,
                 const ns_samples *fewshot, const ns_cct_train_config *cfg, ns_cct_epoch_stats *last,
                 ns_err *err);

// --- classification --------------------------------------------------------------
typedef enum ns_cct_score { NS_CCT_VOTE, NS_CCT_MEAN } ns_cct_score;

// From the probabilities prob (n, k, K) that query i and representative j of
// class c are the same: VOTE predicts the class with most probabilities >= 0.5
// (the paper; ties go to the higher mean probability, then the lower class),
// MEAN the class with the highest mean probability (ties: the lower class).
void ns_cct_decide(const float *prob, int64_t n, int k, int K, ns_cct_score score, int32_t *pred);

// Accuracy and macro-F1 of pred against truth (classes 0..k-1): the
// unweighted mean of each class's F1 = 2 TP / (2 TP + FP + FN) over the
// classes that occur in the truth or the predictions (scikit-learn's
// f1_score(average="macro"); a class predicted but never true, or true but
// never predicted, counts 0). Samples with truth < 0 are skipped; *counted
// receives the samples used.
void ns_cct_metrics(const int32_t *pred, const int32_t *truth, int64_t n, int k, double *accuracy,
                    double *macro_f1, int64_t *counted);

// Picks K representatives per class from reps (labels 0..k-1): the first K
// of each class in stream order, or K at random with rng (not NULL). idx
// (k*K) receives sample indices. Error when a class has fewer than K.
int ns_cct_pick_reps(const ns_samples *reps, int k, int K, ns_rng *rng, int64_t *idx, ns_err *err);

// prob (n, k, K) for every query and representative, in eval mode.
int ns_cct_compare(ns_cct_net *G, const ns_samples *queries, const ns_samples *reps,
                   const int64_t *rep_idx, int k, int K, int64_t batch, float *prob,
                   const ns_reporter *report, ns_err *err);

#endif
