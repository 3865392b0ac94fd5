// vlm_train.h: the inside of a clip-small model (vlm.h), for vlm-train and the
// tests: building one, writing it, the text tower's forward and backward,
// CLIP's symmetric contrastive loss, the training loop and the quality checks
// (zero-shot accuracy, concept retrieval AUC).
//
// Dimensions:
//   B  batch (image, caption pairs)   E  joint embedding width
//   V  vocabulary                     D  token embedding width
//   n  texts                          T  tokens of all n texts together
#ifndef NS_VLM_TRAIN_H
#define NS_VLM_TRAIN_H

#include <stdio.h>

#include "base/report.h"
#include "nn/batches.h"
#include "nn/optim.h"
#include "cav/tokenize.h"
#include "cav/vlm.h"

// exp(logit_scale) is clamped to this (CLIP's 100).
#define NS_VLM_MAX_SCALE 100.0
// The initial logit scale, log(1/0.07).
#define NS_VLM_INIT_LOGIT_SCALE 2.6592600369262695

// The text towers: a bag of words (mean of word embeddings, then a linear
// map) or a transformer (nn/arch.h text-transformer: ids (L) -> (E)).
typedef enum ns_text_kind { NS_TEXT_BOW, NS_TEXT_TRANSFORMER } ns_text_kind;

// The transformer tower's shape: L ids per text (start, at most L - 2 words,
// end, padding), depth blocks of heads heads; its width is text_dim.
typedef struct ns_text_shape {
    int64_t context; // L >= 3
    int depth, heads;
} ns_text_shape;

struct ns_vlm {
    ns_model image;        // the image tower: input (C, H, W), output (E)
    ns_vocab vocab;        // the tokenizer's words, id 0 <unk>
    int64_t dim, text_dim; // E, D
    ns_text_kind text_kind;
    // bag of words:
    ns_tensor embedding;   // (V, D) f32
    ns_tensor proj_weight; // (E, D) f32
    ns_tensor proj_bias;   // (E) f32
    // transformer: ids (L) -> (E); ids are the words' 0..V-1, start V, end
    // V+1 (the largest, where the tower pools), padding 0 after the end
    ns_model text;
    ns_text_shape text_shape;
    ns_tensor logit_scale; // (1) f32: t, logits = min(exp(t), 100) * cos
    char **classes;        // class names of the training data, may be NULL
    size_t nclasses;
    char fingerprint[17];  // 16 hex digits: FNV-1a 64 of the file's bytes ("" until written or loaded)
};

// A new model around an image tower (taken over: *image is emptied) whose
// output is E wide, with a text tower of vocab (taken over) and width D,
// initialised as PyTorch would (embedding N(0, 1), projection
// U(+-1/sqrt(D))), logit scale log(1/0.07).
int ns_vlm_create(ns_vlm **out, ns_model *image, ns_vocab *vocab, int64_t text_dim, uint64_t seed,
                  ns_err *err);
// The same with a transformer text tower (D = text_dim, a multiple of
// shape->heads), initialised as net-init does.
int ns_vlm_create_transformer(ns_vlm **out, ns_model *image, ns_vocab *vocab, int64_t text_dim,
                              const ns_text_shape *shape, uint64_t seed, ns_err *err);
// The transformer tower's input for n tokenized texts: (n, L) ids as floats.
// Texts of more than L - 2 words keep their first L - 2.
void ns_vlm_text_ids(float *ids, const ns_token_lists *tok, int64_t V, int64_t L);
// Writes the model stream (vlm.h): extra_meta (may be NULL) adds meta keys.
int ns_vlm_write(const ns_vlm *v, ns_writer *w, const ns_map *extra_meta, ns_err *err);

// --- the text tower ----------------------------------------------------------
// pooled[i] = mean of embedding rows of text i's tokens; out = pooled W^T + b.
void ns_text_tower_forward(float *out,                 // (n, E)
                           float *pooled,              // (n, D)
                           const ns_token_lists *tok,  // n texts
                           const float *embedding,     // (V, D)
                           const float *weight,        // (E, D)
                           const float *bias,          // (E)
                           int64_t D, int64_t E);
// Accumulates (+=) into dembedding, dweight and dbias (each may be NULL);
// dpooled is scratch of (n, D).
void ns_text_tower_backward(float *dembedding,        // (V, D) or NULL
                            float *dweight,           // (E, D) or NULL
                            float *dbias,             // (E) or NULL
                            float *dpooled,           // (n, D) scratch
                            const float *dout,        // (n, E)
                            const float *pooled,      // (n, D)
                            const ns_token_lists *tok,
                            const float *weight,      // (E, D)
                            int64_t D, int64_t E);

// --- CLIP's loss -------------------------------------------------------------
// With u, v the L2-normalised rows of img and txt, s = min(exp(t), 100) and
// logits L = s * u v^T (B, B), the loss is the mean of the image->text and the
// text->image cross-entropies, pair i matching pair i:
//   loss = (1/2B) sum_i [-log softmax(L[i, :])_i - log softmax(L[:, i])_i]
// Returns the loss; accumulates (+=) d loss / d img, d txt and d t into dimg,
// dtxt, dt (each may be NULL; dt is 0 while exp(t) is clamped). work holds
// ns_clip_loss_work_floats(B, E) floats. A zero row gets a zero direction.
int64_t ns_clip_loss_work_floats(int64_t B, int64_t E);
double ns_clip_loss(float *dimg,        // (B, E) or NULL
                    float *dtxt,        // (B, E) or NULL
                    double *dt,         // scalar or NULL
                    const float *img,   // (B, E)
                    const float *txt,   // (B, E)
                    double t, int64_t B, int64_t E, float *work);

// --- training ----------------------------------------------------------------
// The caption of training sample i (an index into the ns_samples) for an
// epoch (0-based): fixed captions ignore the epoch, generated ones redraw.
// Data-parallel, sample i of rank r of W is stream position i W + r.
typedef const char *(*ns_caption_fn)(void *ctx, int64_t sample, int epoch);

struct ns_dist;

typedef struct ns_vlm_train_config {
    int epochs;
    int64_t batch;            // >= 2: the contrastive loss needs negatives
    uint64_t seed;
    ns_optim_config optim;
    ns_lr_schedule schedule;  // base lr inside; total_steps is set by ns_vlm_train
    int freeze_image;         // 1: train only the image tower's output layer (and the text tower)
    const ns_reporter *report; // progress and a line per epoch (NULL: silent)
    FILE *log;                // a TSV line per epoch when not NULL
    // Data-parallel training (nn/dist.h) when not NULL and of more than one
    // rank, as net-train's (nn/trainer.h): train holds this rank's samples
    // (stream positions p with p mod W == rank), batch is the global batch.
    // Each rank embeds its pairs of a batch, the embeddings of the whole
    // batch are gathered for the loss (the negatives are every rank's), each
    // rank back-propagates its rows of the loss's gradient, and the parameter
    // gradients are summed over the ranks; batch norm is per rank.
    const struct ns_dist *dist;
} ns_vlm_train_config;

typedef struct ns_vlm_epoch_stats {
    int epoch;                // 1-based
    double loss;
    double scale, lr, seconds;
} ns_vlm_epoch_stats;

int ns_vlm_train(ns_vlm *v, const ns_samples *train, ns_caption_fn caption, void *ctx,
                 const ns_vlm_train_config *cfg, ns_vlm_epoch_stats *last, ns_err *err);

// --- quality checks ------------------------------------------------------------
// Image embeddings of every sample (eval mode), rows L2-normalised: out (n, E).
int ns_vlm_embed_images(ns_vlm *v, const ns_samples *s, int64_t batch, float *out, ns_err *err);
// Zero-shot classification: class k's text is the template with "{}"
// replaced by its name; a sample goes to the class of the most similar text.
// Samples with label < 0 are skipped. *acc: the fraction correct.
int ns_vlm_zero_shot(const ns_vlm *v, const float *img, const int32_t *labels, int64_t n,
                     char *const *classes, size_t nclasses, const char *tmpl, double *acc,
                     ns_err *err);
// The ROC AUC of scores for labels 1 (positive) against 0 (negative); other
// labels are ignored; ties count a half. NAN without both kinds.
double ns_roc_auc(const float *scores, const uint8_t *labels, int64_t n);
// Replaces the first "{}" of tmpl by word into buf; without "{}", tmpl + " " + word.
void ns_fill_template(char *buf, size_t cap, const char *tmpl, const char *word);

#endif
