// merge.h: merging N models of one architecture into one (perm-align), in the
// manner of MuDSC (Xu et al., CVPR 2024), ZipIt! and Git Re-Basin. The pieces,
// one file each:
//   merge_stats.c   data passes: the joint correlation of all N models'
//                   features on the same inputs, and the batch-norm reset
//   merge_solve.c   the solvers Psi: alignment (exact LSA, a star onto model 0),
//                   group-structured alignment (heads/blocks), greedy zip
//   merge_weights.c weight vectors and their correlation C_w, the merged tensors
//   merge_partial.c ZipIt!'s partial zip: a merged trunk, per-model copies of
//                   the rest
//   merge.c         the driver: compatibility checks, coordinate descent over
//                   the channel groups, the merged model
//
// Notation. N models, a group p (lib/nn/chgroups.h) of Om channels in each model,
// O = N * Om rows in every similarity matrix: row i * Om + u is channel u of
// model i. Every merge here keeps the width: the merged model has Om channels
// in every group (MuDSC's r = 1 - 1/N).
//
// A group's merge is an assignment: dest[i * Om + u] in [0, Om) is the merged
// channel that channel u of model i goes into, count[j] how many channels (over
// all models) went into merged channel j. In matrix form (MuDSC's U and M,
// O x Om): U[i*Om+u, j] = 1 when dest = j, M = N * U / (count + 1e-5). The
// merged tensor is sum_i lambda_i * T_i(W_i), where T_i multiplies every
// output-side axis by M_i^T and every input-side axis by U_i^T; lambda_i = 1/N
// unless given (interpolation).
#ifndef NS_MERGE_H
#define NS_MERGE_H

#include <stdint.h>
#include <stdio.h>

#include "nn/chgroups.h"
#include "base/err.h"
#include "base/report.h"
#include "nn/model.h"
#include "merge/lsa.h"

#define NS_MERGE_MAX_MODELS 16
#define NS_MERGE_EPS 1e-5     // MuDSC's merge normalisation: N / (count + 1e-5)
#define NS_MERGE_CORR_EPS 1e-7 // the clamp on sqrt(var_i) * sqrt(var_j)

// ---------------------------------------------------------------------------
// Correlation of features (merge_stats.c)

// out (n, n) += x x^T for x (n, k) row-major: ns_sgemm_serial (blas.h) on
// blocks of NS_SGEMM_SERIAL_KBLOCK (256) steps of k, each block's float
// product added into double. Single-threaded: for the few rows and very many columns of statistics (BLIS's
// threads spin idle on such shapes: 4x slower on 2 busy cores).
int ns_merge_gram(const float *x, int64_t n, int64_t k, double *out, ns_err *err);

// Streaming Pearson correlation of dim variables. Each call adds a chunk of
// observations; the chunk is centred on its own mean (double), its co-moment
// formed by ns_merge_gram on the centred values, and merged into the running
// double co-moment with Chan's pairwise update, so large post-ReLU means do
// not cancel.
typedef struct ns_corr_acc {
    int64_t dim;
    double n;       // observations so far
    double *mean;   // (dim)
    double *m2;     // (dim, dim) sum of centred products
    double *gram;   // (dim, dim) scratch
    double *cmean;  // (dim) scratch
} ns_corr_acc;

int ns_corr_acc_init(ns_corr_acc *a, int64_t dim, ns_err *err);
void ns_corr_acc_free(ns_corr_acc *a);
// x is (dim, nobs) row-major; it is centred in place. -1 when out of memory.
int ns_corr_acc_add(ns_corr_acc *a, float *x, int64_t nobs, ns_err *err);
// corr (dim, dim): cov_ij / max(sqrt(cov_ii cov_jj), 1e-7), diagonal 1. A
// variable of zero variance (a dead unit: relative variance below 1e-12 of its
// squared mean, or exactly 0) correlates 0 with live units and 1 with dead
// units of the same constant (ReLU outputs always 0: merging them changes
// nothing on the data); returns how many there were, and marks them in dead
// (dim, may be NULL).
int64_t ns_corr_acc_finish(const ns_corr_acc *a, float *corr, unsigned char *dead);

// The activation correlation of every group: one pass of the data stream at
// path through all N models (the same inputs), up to max_samples samples (0:
// all). corr[p] is (N*Om)^2 floats for each group p that is not fixed and has
// an act_node, NULL otherwise; dead[p] counts its dead units, and
// dead_units[p] (may be NULL as a whole) marks them (N*Om bytes, NULL where
// corr[p] is). Groups with act_proj (attention's q/k and v) get their
// features by projecting the act node's tokens through their rows.
// All models must share g's structure (checked by the caller) and their
// input normalisation.
int ns_merge_act_corr(ns_model *const *models, int n, const ns_chgroups *g, const char *path,
                      int64_t max_samples, int64_t batch, const ns_reporter *report, float **corr,
                      unsigned char **dead_units, int64_t *dead, int64_t *seen, ns_err *err);

// REPAIR's "reset": recomputes every batch norm's running mean and variance as
// the average over one pass of the data (training-mode batch statistics, as
// torch with momentum=None), up to max_samples samples (0: all).
int ns_merge_reset_bn(ns_model *m, const char *path, int64_t max_samples, int64_t batch,
                      const ns_reporter *report, ns_err *err);

// ---------------------------------------------------------------------------
// Solvers (merge_solve.c). C is (O, O) row-major, O = n * om, symmetric.

// Alignment: every model i >= 1 is matched to model 0 by an exact LSA on the
// cross block C[0:om, i*om:(i+1)*om] (maximised); model 0 keeps its order.
// With block < om (a divisor), channels are matched only within their block
// (block b of model i to block b of model 0). *score: mean of the matched
// entries. dest is (n * om).
int ns_merge_align(const float *C, int n, int64_t om, int64_t block, ns_lsa_ws *ws,
                   int64_t *dest, double *score, ns_err *err);

// Group-structured alignment (MuDSC's heads/GroupNorm groups): om channels in
// nblocks blocks; for each model i >= 1 and every block pair (a of model 0, b
// of model i) an LSA inside the pair gives s[a][b], the mean matched entry; an
// LSA on s pairs the blocks; channel matches are those of the paired blocks.
// nblocks^2 + 1 LSAs per model. Block b of model i moves to block a.
int ns_merge_align_blocks(const float *C, int n, int64_t om, int64_t nblocks, ns_lsa_ws *ws,
                          int64_t *dest, double *score, ns_err *err);

// The block pairing of a tie (chgroups.h: attention heads, GroupNorm
// groups): ngr groups, C[k] (n*om[k])^2, all in nb blocks. For every model
// i >= 1 and block pair (a of model 0, b of model i), s[a][b] is the sum over
// the groups of the mean matched entry of an LSA inside the pair; an LSA on
// s pairs the blocks: pair[i * nb + a] = b (model 0: a). Summing over the tie
// makes a head's q/k and v pair alike (MuDSC solves them apart, which does
// not preserve the function).
int ns_merge_pair_blocks(const float *const *C, int ngr, int n, const int64_t *om, int64_t nb, ns_lsa_ws *ws,
                         int64_t *pair, ns_err *err);
// out (O, O) = C with model i's block pair[i*nb + a] moved to block a, so a
// solver restricted to blocks (block = om / nb) works on paired blocks; and
// a dest of that problem mapped back to the original channels.
void ns_merge_reorder_blocks(const float *C, int n, int64_t om, int64_t nb, const int64_t *pair, float *out);
void ns_merge_unorder_dest(const int64_t *dest_reordered, int n, int64_t om, int64_t nb, const int64_t *pair,
                           int64_t *dest);

// ZipIt!'s greedy zip (MuDSC's default_fusion_weight): repeatedly merge the
// most correlated pair of current units (any models, a unit never with
// itself) until om remain; the merged unit's similarities are
// min(of the two) * a (a <= 0: -inf); each model may merge at most
// floor(b * (O - om) / n) pairs of its own units. Ties go to the first maximum
// in row-major order. With block < om, units merge only within their block
// (same block index in every model) and each block keeps block units. Merged
// units are numbered by their first row. *score: mean of the picked values.
int ns_merge_zip(const float *C, int n, int64_t om, int64_t block, double a, double b,
                 int64_t *dest, double *score, ns_err *err);

// count[j] for a dest (n * om entries into [0, om)).
void ns_merge_count(const int64_t *dest, int n, int64_t om, int64_t *count);

// ---------------------------------------------------------------------------
// Weights (merge_weights.c)

// The state of a merge: every group's assignment. Fixed groups and groups of
// one model stay the identity.
typedef struct ns_merge_state {
    int n;                // models
    const ns_chgroups *g;
    int64_t **dest;       // per group: (n * size)
    int64_t **count;      // per group: (size)
    int head_node;        // output linear whose rows are concatenated, -1: averaged
    int64_t head_rows[NS_MERGE_MAX_MODELS]; // with head_node: each model's classes
    // The parameter members of each tensor t, (group, member) pairs from
    // member_off[t] to member_off[t + 1], so that mapping a tensor's axes does
    // not scan every group (that made merges cubic in the number of layers).
    int ntensors;
    int *member_off;      // (ntensors + 1)
    int (*members)[2];
} ns_merge_state;

int ns_merge_state_init(ns_merge_state *s, const ns_chgroups *g, int n, ns_err *err);
void ns_merge_state_free(ns_merge_state *s);
// Sets group p to the identity (channel u of every model into merged u).
void ns_merge_state_identity(ns_merge_state *s, int p);

// Pearson correlation of the channels' weight vectors for group p (O x O into
// C): a channel's vector is its slice of every trainable tensor indexing p,
// every other axis mapped into the merged coordinates of its own group by the
// current state. Tensors of a concatenated head are left out. settled
// (ngroups bytes) restricts the vectors to the slices of tensors whose other
// axes are all in fixed groups or in groups q with settled[q] (their axes not
// in any group are the identity, so settled too); NULL: every slice. With no
// slice left, C is the identity.
int ns_merge_weight_corr(ns_model *const *models, const ns_merge_state *s, int p, const unsigned char *settled,
                         float *C, ns_err *err);
// The length of group p's weight vectors under the same restriction (0: none).
int64_t ns_merge_weight_len(const ns_model *m0, const ns_merge_state *s, int p, const unsigned char *settled);

// Writes the merged tensors into out, a model with the structure of models[0]
// (heads: out's head node must already have sum(head_rows) outputs), weights
// lambda (n, NULL: 1/N each).
int ns_merge_weights(ns_model *const *models, const ns_merge_state *s, const double *lambda,
                     ns_model *out, ns_err *err);

// ---------------------------------------------------------------------------
// Partial zipping (merge_partial.c)

// ZipIt!'s partial zip: dst gets merged's nodes 0..split (the merged weights:
// one shared trunk), then for every model i a copy of the nodes after split,
// named "m<i>.<name>", with model i's own weights; a copy reads the trunk's
// node j through an unmerge layer "m<i>.unmerge.<name of j>" (a 1x1
// convolution or a linear layer without bias, U_i: each of model i's
// channels reads the merged channel it went into; left out where nothing
// moved); the copies' outputs are joined by a concat "heads", so the model
// predicts the union of the classes in model order (merged's class names
// when it has a concatenated head of that size). split must come before the
// output; split 0 (the input) keeps every layer of every model: the ensemble
// of the models, their logits side by side.
int ns_merge_partial(ns_model *dst, const ns_model *merged, ns_model *const *models, int n,
                     const ns_merge_state *s, int split, ns_err *err);

// ---------------------------------------------------------------------------
// The driver (merge.c)

typedef enum ns_merge_solver {
    NS_MERGE_AVERAGE, // no matching: every group the identity
    NS_MERGE_ALIGN,
    NS_MERGE_ZIP,
} ns_merge_solver;

typedef struct ns_merge_opts {
    ns_merge_solver solver;
    double alpha;        // C = alpha * C_w + (1 - alpha) * C_act
    int act_init;        // start from Psi(C_act) (else the identity)
    int iterate;         // coordinate descent over the groups
    int max_sweeps, patience;
    double zip_a, zip_b;
    uint64_t seed;       // order of groups in each sweep (lib/rng)
    const ns_reporter *report; // a line per sweep (NULL: silent)
} ns_merge_opts;

typedef struct ns_merge_report {
    int ngroups;
    double *score;       // per group: the last solver score (NAN: not matched)
    int64_t *dead;       // per group: dead units over all models (-1: no statistics);
                         // the caller's (malloc), freed with the report
    int sweeps;          // coordinate-descent sweeps run
    double objective;    // mean score over matched groups, of the state returned
    double seconds_stats, seconds_match;
} ns_merge_report;

void ns_merge_report_free(ns_merge_report *r);

// Checks that models[1..n) have models[0]'s architecture: nodes (op, inputs,
// attributes), tensor shapes, input shape and normalisation. With allow_head,
// the output node may differ in its number of outputs (task heads). The error
// names the first difference.
int ns_merge_check_compatible(ns_model *const *models, const char *const *names, int n,
                              int allow_head, ns_err *err);

// Checks that m's channel groups g can be permuted: refuses a free group read
// by a grouped convolution (its input channels are tied to their conv group;
// not supported yet), naming the convolution.
int ns_merge_check_groups(const ns_chgroups *g, const ns_model *m, ns_err *err);

// Prepares out (a copy of models[0]) for concatenated task heads: the output
// linear gets sum of the models' classes (its tensors zeroed), the class names
// are concatenated (a model without names contributes "m<i>:<k>"), and s
// records the head. Refused when the output node is not a linear layer.
int ns_merge_concat_head(ns_model *out, ns_model *const *models, int n, ns_merge_state *s,
                         ns_err *err);

// Finds the assignments for every group (rep->score is allocated here when
// NULL). corr: the activation correlations (ns_merge_act_corr), may be NULL
// when opts needs none; dead_units: its dead-unit marks (may be NULL).
//
// Ties (chgroups.h: attention heads, GroupNorm groups) are solved as one
// unit: blocks paired over every group of the tie (ns_merge_pair_blocks),
// then each group aligned or zipped within its paired blocks (MuDSC's group
// alignment and group zip); a head's q/k and v therefore move alike.
//
// Dead units (zero variance on the data) correlate alike with everything, so
// activations alone match them arbitrarily and a model merged with a
// permuted copy of itself would not come back as the same function. Between
// two dead units (of any models) the similarity is therefore the
// weights' correlation: after Psi(C_act), the methods that do not iterate
// re-solve the groups with dead units (C_act, dead pairs from C_w, the other
// groups as they stand) until no assignment changes (at most 10 sweeps); the
// iterating methods use the same rule in C_act within their sweeps.
int ns_merge_match(ns_model *const *models, ns_merge_state *s, float *const *act_corr,
                   unsigned char *const *dead_units, const ns_merge_opts *opts, ns_merge_report *rep,
                   ns_err *err);

#endif
