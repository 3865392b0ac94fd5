// prune.h: structural pruning on the channel groups of lib/nn/chgroups.h
// (PruningBench, "PruningBench: A Comprehensive Benchmark of Structural
// Pruning", arXiv 2406.12315, on DepGraph, arXiv 2301.12900): importance
// criteria that score every channel of every prunable group, the choice of
// the channels to keep (one global threshold with per-group protection, or
// the same ratio in every group), progressive steps to a MACs speed-up or a
// channel ratio, and the sparsity regularisers net-train applies while
// training (reg.c).
//
// Shapes. A group of size n (lib/nn/chgroups.h) gets n scores (double);
// ns_prune_scores holds one such vector per group, NULL for groups that are
// not scored (fixed, noselect, or without a parameter the criterion reads).
// Low score = pruned first.
//
// The slices of a channel. Channel k of a group indexes, in each member
// on a parameter tensor, the elements whose coordinate along the member's
// axis is ns_chmember_index(mb, k, r, s) (for a grouped conv's input member,
// the virtual axis of chgroups.h). A criterion reads the "weight" members:
// trainable tensors in slot 0 (conv/linear weight rows and columns, norm and
// depthwise weights); biases and running statistics are not read. The score
// of k is the mean over the weight members of the member's per-channel
// score, then divided by the mean over the group's channels (global
// comparison; "lamp" uses its own normalisation instead):
//   l1       sum |w|             l2        sum w^2
//   bn-scale |gamma| (batch-norm weight members only)
//   fpgm     per conv/linear member: sum_j ||F_k - F_j||_2 over the member's
//            channels (F_k = the slice of k, flattened)
//   lamp     the l2 group score u, sorted ascending: u_i / sum_{j>=i} u_j
//   taylor   sum |w * G|, G the gradient of the mean cross-entropy, summed
//            over the batches of the data
//   obd-hessian  sum w^2 * E_n[g_n^2], g_n the gradient of sample n's loss
//   obd-c    sum w^2 * F, F the K-FAC diagonal E[a^2] E[g^2] (inputs x output
//            gradients of conv/linear; labels sampled from the softmax),
//            other weight members as obd-hessian with sampled labels
//   hrank    the mean over samples of the rank of the channel's H x W feature
//            map (not members: one activation per group, the first C x H x W
//            relu output carrying the group, else the first C x H x W
//            activation, else the first relu, else the first activation; a
//            vector activation has rank 1 where non-zero).
//            Rank: Gaussian elimination with complete pivoting, pivots below
//            max(H, W) * 2^-23 * the largest |entry| count as zero
//   random   U(0, 1)
//   thinet, cp  from the reconstruction error of the layers reading the
//            group (reconstruct.c, which describes them); they also refit
//            those layers once the kept channels are chosen
//            (ns_prune_reconstruct)
// Data criteria run the model in eval mode (batch norm on running statistics).
#ifndef NS_PRUNE_H
#define NS_PRUNE_H

#include <stdint.h>

#include "base/err.h"
#include "nn/chgroups.h"
#include "nn/engine.h"
#include "nn/model.h"

typedef enum ns_prune_criterion {
    NS_PRUNE_RANDOM,
    NS_PRUNE_L1,
    NS_PRUNE_L2,
    NS_PRUNE_BN_SCALE,
    NS_PRUNE_FPGM,
    NS_PRUNE_LAMP,
    NS_PRUNE_TAYLOR,
    NS_PRUNE_OBD_HESSIAN,
    NS_PRUNE_OBD_C,
    NS_PRUNE_HRANK,
    NS_PRUNE_THINET,
    NS_PRUNE_CP,
    NS_PRUNE_NCRITERIA
} ns_prune_criterion;

typedef struct ns_prune_criterion_info {
    const char *name;
    int needs_data;
    const char *what;
} ns_prune_criterion_info;

extern const ns_prune_criterion_info ns_prune_criteria[NS_PRUNE_NCRITERIA];
int ns_prune_criterion_from_name(const char *name); // -1 when unknown

// Labelled samples in memory for the data criteria, (n, input numel).
typedef struct ns_prune_data {
    const float *x;
    const int32_t *y;
    int64_t n, batch;
} ns_prune_data;

typedef struct ns_prune_scores {
    int ngroups;
    double **score;  // per group: size scores, or NULL when not scored
} ns_prune_scores;

// 1 when group gr may be pruned at all (not fixed, not noselect).
int ns_prune_group_prunable(const ns_chgroup *gr);
// 1 when member mb is one the criteria read (see "The slices of a channel").
int ns_prune_weight_member(const ns_model *m, const ns_chmember *mb);

// For every element of member mb's tensor, the channel of gr it belongs to, or
// -1 (elements of other groups' channels on the same axis). Returns a new array
// of the tensor's numel entries, NULL on failure.
int32_t *ns_prune_channel_map(const ns_model *m, const ns_chgroup *gr, const ns_chmember *mb, ns_err *err);

// Scores every prunable group. data may be NULL for criteria that need none;
// seed drives random and obd-c's sampled labels. seconds (may be NULL) gets
// the time spent.
int ns_prune_importance(ns_prune_scores *s, ns_model *m, const ns_chgroups *g, ns_prune_criterion c,
                        const ns_prune_data *data, uint64_t seed, ns_err *err);
void ns_prune_scores_free(ns_prune_scores *s);

// thinet and cp (reconstruct.c). Output locations sampled per sample and layer.
#define NS_PRUNE_LOCATIONS 16
// Their scores, into s->score (allocated by the caller, NULL entries filled
// for every prunable group read by a plain conv or linear).
int ns_prune_reconstruction_scores(ns_prune_scores *s, ns_model *m, const ns_chgroups *g, ns_prune_criterion c,
                                   const ns_prune_data *d, uint64_t seed, ns_err *err);
// After ns_prune_choose and before ns_chgroups_select_many with the same keep
// lists: refits the weight columns of the kept channels in the layers reading
// each pruned group, by least squares on data (thinet: a scale per channel;
// cp: the columns). Does nothing for other criteria.
int ns_prune_reconstruct(ns_model *m, const ns_chgroups *g, ns_prune_criterion c, const ns_prune_data *d,
                         const int64_t *const *keep, const int64_t *nkeep, uint64_t seed, ns_err *err);

// ---------------------------------------------------------------------------
// choosing the channels (plan.c)

// The MACs and trainable parameters the model would have after removing
// removed[p] channels of each group p (0 for groups left alone), without
// editing it. Exact: equal to ns_model_macs / ns_model_param_count(m, 1) of
// the pruned model (tests/unit/test_prune.c checks this).
int64_t ns_prune_predict(const ns_model *m, const ns_chgroups *g, const int64_t *removed, int64_t *params);

typedef struct ns_prune_opts {
    int local;          // same ratio in every group instead of one global threshold
    double protect;     // each group keeps at least this fraction of its original channels
    int64_t round_to;   // kept channels a multiple of this (1: any)
    double speed_up;    // target base MACs / pruned MACs (> 1), or 0
    double ratio;       // target fraction of prunable channels removed, or 0
    int steps;          // progressive steps (importance recomputed before each)
} ns_prune_opts;

// What pruning is allowed to do, fixed at the start from the unpruned model.
typedef struct ns_prune_limits {
    int ngroups;
    int64_t *orig;      // original size of each group
    int64_t *min_keep;  // 0 for groups never pruned
    int64_t *step;      // kept counts are multiples of this (blocks, round_to)
    int64_t base_macs, base_params;
} ns_prune_limits;

int ns_prune_limits_init(ns_prune_limits *l, const ns_model *m, const ns_chgroups *g, const ns_prune_scores *s,
                         const ns_prune_opts *o, ns_err *err);
void ns_prune_limits_free(ns_prune_limits *l);
// The most the limits allow: MACs, params and channel ratio with every pruned
// group at its minimum (and, when scores are given, only scored groups).
int64_t ns_prune_limits_max(const ns_prune_limits *l, const ns_model *m, const ns_chgroups *g,
                            const ns_prune_scores *s, int64_t *params, double *ratio);

// One step (step of nsteps, 1-based): the channels to keep in each group
// (keep[p] NULL when group p is left alone, else nkeep[p] increasing indices)
// for the step's target: speed-up X^(step/nsteps) or ratio R*step/nsteps,
// reached with the fewest channels removed in score order. Fails when the
// target cannot be reached within the limits.
int ns_prune_choose(const ns_model *m, const ns_chgroups *g, const ns_prune_scores *s, const ns_prune_limits *l,
                    const ns_prune_opts *o, int step, int64_t **keep, int64_t *nkeep, ns_err *err);

// ---------------------------------------------------------------------------
// sparsity regularisers for training (reg.c)

typedef enum ns_prune_reg_kind {
    NS_REG_BN_SCALE,    // lambda * sum |gamma|: grad += lambda sign(gamma)
    NS_REG_GROUP_LASSO, // lambda * sum_k ||W_k||_2: grad += lambda W_k / ||W_k||
    NS_REG_GROUP_NORM,  // DepGraph: grad += lambda * 16^((I_max - I_k)/(I_max - I_min)) W_k
    NS_REG_GROWING,     // grad += lambda_k W_k, lambda_k += delta (I_max - I_k)/(I_max - I_min) per epoch
    NS_REG_NKINDS
} ns_prune_reg_kind;

extern const char *const ns_prune_reg_names[NS_REG_NKINDS];
int ns_prune_reg_from_name(const char *name); // -1 when unknown

typedef struct ns_prune_reg ns_prune_reg;

// A regulariser over m's prunable groups (W_k: channel k's slices in every
// weight member of its group, as the criteria read them).
ns_prune_reg *ns_prune_reg_create(ns_model *m, ns_prune_reg_kind kind, double lambda, double delta,
                                  int64_t steps_per_epoch, ns_err *err);
// Adds the regulariser's gradient to the engine's parameter gradients; called
// after backward, before the optimiser step (step: 0-based global step).
void ns_prune_reg_apply(ns_prune_reg *r, ns_engine *e, int64_t step);
double ns_prune_reg_seconds(const ns_prune_reg *r);
// Growing-reg's state, for net-train's checkpoints: the strengths lambda_k of
// every group (f32 values), concatenated in group order, as one f32 tensor named
// NS_PRUNE_REG_STATE. Other regularisers have no state: write nothing, load
// nothing. Loading reads that tensor from m's tensors (a checkpoint loaded for
// --resume, where it stays unused) and fails when it is missing or its length
// is not the model's.
#define NS_PRUNE_REG_STATE "reg.growing-reg.lambda"
int ns_prune_reg_state_write(const ns_prune_reg *r, ns_writer *w, ns_err *err);
int ns_prune_reg_state_load(ns_prune_reg *r, const ns_model *m, ns_err *err);
void ns_prune_reg_free(ns_prune_reg *r);

#endif
