// trainer.h: the supervised training loop every program shares (net-train,
// and later asr-reweight's fine-tuning): shuffled mini-batches, augmentation,
// softmax cross-entropy with optional label smoothing and per-sample weights,
// an optimiser with a schedule, validation and atomic checkpoints each epoch.
//
// Determinism: epoch e shuffles and augments with generators seeded from
// (seed, e), dropout from (seed, step), so the same seed and thread count give
// the same model bytes, and a run resumed from an epoch's checkpoint continues
// exactly as the uninterrupted run would.
#ifndef NS_TRAINER_H
#define NS_TRAINER_H

#include <stdio.h>

#include "base/report.h"
#include "nn/batches.h"
#include "nn/model.h"
#include "nn/optim.h"

struct ns_engine;
struct ns_dist;

typedef struct ns_train_config {
    int epochs;                   // the schedule's length
    int stop_after;               // stop after this epoch (0: run all), to continue later with resume
    int64_t batch;
    uint64_t seed;
    ns_optim_config optim;
    ns_lr_schedule schedule;      // base lr inside; total_steps is set by ns_train
    double label_smoothing;
    int crop_pad;                 // random crop with this zero padding (0: off)
    double flip_p;                // random horizontal flip probability (0: off)
    int decay_norm_and_bias;      // 0: no weight decay on 1-D parameters (torch's default is 1)
    const int *trainable;         // per model tensor, or NULL: every parameter
    const float *sample_weights;  // (train->n) or NULL
    const char *checkpoint;       // written after every epoch when not NULL
    int resume;                   // the model holds a checkpoint's optimiser state
    const ns_reporter *report;    // progress and a line per epoch (NULL: silent)
    FILE *log;                    // a TSV line per epoch when not NULL
    const char *producer;         // "net-train 0.1.0", for the checkpoint's meta
    // When not NULL, called after each backward, before the optimiser step
    // (step: 0-based over the whole schedule), to add to the engine's
    // parameter gradients: the sparsity regularisers of lib/prune/prune.h.
    void (*after_backward)(void *ctx, struct ns_engine *e, int64_t step);
    void *after_backward_ctx;
    // Data-parallel training (nn/dist.h) when not NULL and of more than one
    // rank: train holds this rank's samples (stream positions p with p mod W
    // == rank), batch is the global batch; checkpoints come from rank 0.
    const struct ns_dist *dist;
    int sync_bn;                  // with dist: batch-norm statistics over the global batch
    // When not NULL, called while each checkpoint is written (after the
    // optimiser state) to add the caller's own records: the growing
    // regulariser's per-channel strengths. On resume the caller reads them
    // back from the loaded model's unused tensors before training.
    int (*checkpoint_extra)(void *ctx, ns_writer *w, ns_err *err);
    void *checkpoint_extra_ctx;
} ns_train_config;

typedef struct ns_epoch_stats {
    int epoch;                    // 1-based
    double loss, train_acc, val_acc, lr, seconds;
} ns_epoch_stats;

// Trains m in place on train (and reports accuracy on val when not NULL).
// last receives the final epoch's figures.
// Checkpoints: the model (meta train.epoch = epoch, general.producer when not
// NULL), a (1) f32 tensor "train.epoch", the optimiser's state tensors, then
// what extra(ctx, w, err) adds when extra is not NULL; written whole or not at
// all (temp file + rename). Every trainer of the library writes this layout.
int ns_checkpoint_write(const char *path, const ns_model *m, const ns_optim *opt, int epoch,
                        const char *producer, int (*extra)(void *ctx, ns_writer *w, ns_err *err),
                        void *extra_ctx, ns_err *err);
// Reads a checkpoint's optimiser state and the epoch it reached back from the
// loaded model's extra tensors (0 when it has no "train.epoch").
int ns_checkpoint_resume(ns_optim *opt, const ns_model *m, int *start_epoch, ns_err *err);

int ns_train(ns_model *m, const ns_samples *train, const ns_samples *val,
             const ns_train_config *cfg, ns_epoch_stats *last, ns_err *err);

// Accuracy of m over samples (eval mode), in batches of batch.
int ns_evaluate(ns_model *m, const ns_samples *s, int64_t batch, double *accuracy, ns_err *err);

#endif
