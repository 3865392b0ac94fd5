// chgroups.h: the coupled channel spaces of a model ("groups"), found once
// here for every program that permutes channels (merging: perm-align) or
// removes them (structural pruning: net-prune), in the manner of Torch-
// Pruning's dependency graph and ZipIt!/MuDSC's permutation specs.
//
// A group is a set of channels that must be permuted, or pruned, together: a
// conv's output channels with its bias, the BN after it, the next layer's
// input channels, a linear's input features after a flatten; every branch
// meeting at an add or mul (a ResNet stage's residual stream is one group,
// written by the stem or a shortcut conv and by every block's last conv);
// depthwise convs and every element-wise op, pooling, activation and dropout
// pass their input's channels through; a concat lays its inputs' groups side
// by side (so a group can occupy part of an axis, and a later add can split a
// conv's output channels between several groups). For each group the
// analysis lists every parameter slice and every activation axis indexing it.
//
// How it is found. Every position of every node's channel axis (see
// "positions" below) gets a channel atom: producers (the input, conv, linear,
// embedding) make new atoms, pass-through ops copy their input's, add/mul
// unify theirs position by position, concat concatenates, flatten repeats
// each channel's atom over its H*W features. Unified atoms are one channel.
// Channels that occur in exactly the same set of axes (tensor axes and node
// outputs) form a group: any two channels that some axis separates cannot be
// exchanged, and channels never separated can. Channel k of a group is the
// k-th in the first axis the group occurs in (in node order); every other
// occurrence lists the group's channels in the same order.
//
// Positions. A node's output has one channel axis: axis 0 of C x H x W
// (each channel also spans the H*W spatial samples), axis 1 of T x D
// (embedding outputs: tokens x features; each channel spans the T tokens),
// axis 0 of a vector D, whose positions are its features: after a flatten of
// C x H x W, channel c covers the H*W consecutive features [c*HW, (c+1)*HW);
// after a flatten of T x D, channel d covers features t*D + d for every t.
// A member says where a group's channels sit on one axis of one tensor or
// activation, for c in [0, size), r in [0, reps), s in [0, inner):
//     index(c, r, s) = offset + r * rstride + c * inner + s
// (ns_chmember_index). A plain conv output channel: inner 1, reps 1.
//
// Blocks (grouped convolutions; attention heads and GroupNorm later). A
// grouped conv (1 < groups, not depthwise) connects input block b only to
// output block b. Here such channels may only move within their block: a
// group has a block size B (dividing size; B == size when nothing
// constrains it), and
//   - a permutation must map each block [b*B, (b+1)*B) onto itself;
//   - a selection must keep the same number of channels in every block, so
//     the conv's groups attribute stays and its blocks stay equal.
// B is the gcd of the conv block sizes (in channels / groups, out / groups)
// of every grouped conv the group feeds or leaves. Moving whole blocks of a
// grouped conv (which would have to move the matching blocks of the conv's
// other side too) is not expressed yet; see the note at the end of
// chgroups.c.
//
// Blocks that move whole: GroupNorm groups and attention heads. A GroupNorm
// over C x H x W (or C) with G groups puts its channel group in blocks of
// C/G: channels may move within a block, and whole blocks may move (a block
// permutation sigma: channel c goes to sigma(c / B) * B + c % B), since the
// statistics are per block. Attention (heads Hd, D features, dh = D/Hd) has
// two internal channel spaces that are no node's output: qk (D channels:
// row d of q and row D + d of k in in_proj_weight/bias, which a query-key
// product sums over together) and v (row 2D + d, and column d of
// out_proj.weight). Both are in blocks of dh (the heads) and are tied: a
// head's q, k and v move to the same new head (MuDSC's group alignment pairs
// heads; solving qk and v independently would not preserve the function).
// Groups whose blocks move together share a tie id (ns_chgroup.tie; a
// GroupNorm's group is alone in its tie). Permutations that move blocks go
// through ns_chgroups_permute_many, with every group of the tie permuted by
// the same block map. tie is -1 when blocks stay in place (grouped convs; a
// group under two GroupNorms of different group counts).
//
// Transformers. LayerNorm over T x D and vectors is equivariant to a
// permutation of its features (with its weight and bias): the residual
// stream of a transformer is one group through every residual add, patch
// embedding (its rows make it), class token and position embedding (their
// feature axes), layer norms, the attention's input columns and output rows,
// the MLP's first columns and last rows, the token pooling and the
// classifier's columns. GELU, softmax (equivariant whatever its axis), the
// class token, position embedding and token pooling pass channels through;
// the end-of-text pooling's second input (its keys, one per token: the ids
// in the text-transformer) is opaque, since moving a key moves the token.
// The MLP's hidden units are a group of their own (prunable); the groups an
// attention reads and writes and its qk/v groups are not prunable
// (noselect: NS_CHSEL_ATTN, NS_CHSEL_HEADS). A cross-attention's queries and
// keys/values are read by the same in_proj columns, so they join one group;
// a key padding mask is opaque.
// A grouped conv input member (role NS_CH_IN, conv_groups > 1) is described
// on the conv's full input channel axis of in_channels positions (a
// "virtual" axis): position p is column p % (in/groups) of weight axis 1,
// in the rows of conv block p / (in/groups).
//
// Fixed groups refuse permutation and selection: the model's input channels,
// the output's (classes), channels entering an op the analysis does not see
// through (reshape to more than one dimension, transpose, embedding ids),
// layouts it cannot describe (reasons in fixed, ns_chgroups_fixed_reason).
// A group may be permutable but not prunable (noselect): it fills only part
// of a grouped conv's input or output axis, so removing its channels alone
// would leave the conv's blocks unequal.
//
// Layernorm over channels (T x D and vector inputs) couples its weight and
// bias; it mixes the channels in its statistics, so pruning through it
// changes the function even for channels whose consumers ignore them (as in
// Torch-Pruning). Layernorm on C x H x W normalises over W, not channels: its
// parameters index no group and channels pass through.
#ifndef NS_CHGROUPS_H
#define NS_CHGROUPS_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "nn/model.h"

typedef enum ns_chrole {
    NS_CH_OUT,   // the channel is made here: conv/linear weight rows (axis 0) and
                 // bias, embedding weight columns (axis 1); the node's output holds
                 // the pre-norm activation
    NS_CH_IN,    // read here: conv/linear weight input axis (axis 1)
    NS_CH_CHAN,  // per-channel parameter of a pass-through op: batch/layer norm
                 // weight, bias, running_mean, running_var (buffers: see the
                 // tensor's trainable flag), depthwise conv weight rows and bias
    NS_CH_ACT,   // an activation: node's output carries the group on axis `axis`
                 // of its per-sample shape
} ns_chrole;

typedef struct ns_chmember {
    ns_chrole role;
    int node;        // the node owning the parameter, or whose output this is
    int tensor;      // model tensor index; -1 for NS_CH_ACT
    int slot;        // parameter slot of node (ns_ops[op].param[slot]); -1 for ACT
    int axis;        // tensor axis, or per-sample activation axis
    int conv_groups; // > 1: the axis belongs to a grouped conv (input: the virtual
                     // axis described above; output: weight rows and bias), split
                     // into conv_groups equal blocks; 1 otherwise
    int64_t offset, inner, reps, rstride; // index(c, r, s), see above
} ns_chmember;

static inline int64_t ns_chmember_index(const ns_chmember *mb, int64_t c, int64_t r, int64_t s) {
    return mb->offset + r * mb->rstride + c * mb->inner + s;
}

// Why a group is fixed (bits).
enum {
    NS_CHFIX_INPUT = 1,     // the model's input channels
    NS_CHFIX_OUTPUT = 2,    // in the model's output (classes)
    NS_CHFIX_OPAQUE = 4,    // enters or leaves an op the analysis does not see through
    NS_CHFIX_IRREGULAR = 8, // an occurrence the member form cannot describe
    NS_CHFIX_UNALIGNED = 16 // splits a grouped conv's blocks unevenly
};
// Why a group cannot be pruned on its own (bits).
enum {
    NS_CHSEL_PARTIAL = 1, // fills only part of a grouped conv's input or output axis
    NS_CHSEL_HEADS = 2,   // an attention's qk or v space (pruning heads is not supported)
    NS_CHSEL_ATTN = 4     // read or written by an attention, whose width D it is
};

typedef struct ns_chgroup {
    int id;               // index in ns_chgroups.groups
    int64_t size;         // channels
    int64_t block;        // block size (divides size; size when unconstrained)
    unsigned fixed;       // NS_CHFIX_* bits; 0 when permutable
    unsigned noselect;    // NS_CHSEL_* bits; 0 when prunable (and not fixed)
    int act_node;         // where to record the group's features for matching: the
                          // input node of the last layer reading it (after norm and
                          // activation, as ZipIt!/MuDSC do); -1 when none reads it
    int act_proj;         // >= 0: the features are not act_node's output but its
                          // product with the rows of member act_proj (an attention's
                          // in_proj_weight: q and k, or v) plus the matching bias
                          // rows; every rep of the member is an observation
    int tie;              // >= 0: blocks move whole, together with every group of
                          // the same tie (attention heads, GroupNorm groups); -1:
                          // channels move within their blocks only
    int nmembers;
    ns_chmember *members; // in node order; within a node: IN, OUT/CHAN, then ACT
} ns_chgroup;

typedef struct ns_chgroups {
    int ngroups;
    ns_chgroup *groups;   // ordered by first occurrence (node order)
    int nties;            // tie ids are [0, nties)
    // Where each node's output positions belong (ns_chgroups_find).
    int nnodes;
    int64_t *node_off;    // nnodes + 1 offsets into pos_group / pos_chan
    int32_t *pos_group;
    int64_t *pos_chan;
} ns_chgroups;

// Analyses a resolved model. On failure g is empty and err says why.
int ns_chgroups_build(ns_chgroups *g, const ns_model *m, ns_err *err);
void ns_chgroups_free(ns_chgroups *g);

// The group of position pos of node's output channel axis (see "positions");
// *chan (may be NULL) gets the channel's index in the group. -1 when out of range.
int ns_chgroups_find(const ns_chgroups *g, int node, int64_t pos, int64_t *chan);

// Permutes a group's channels in every parameter it indexes: new channel j is
// old channel perm[j] (gather, as torch's W[perm]). The model computes the same
// function (up to float rounding in sums). perm must be a permutation of
// [0, size) that maps every block onto itself; fixed groups are refused.
// Activations are not stored, so nothing else changes; g stays valid.
int ns_chgroups_permute(ns_model *m, const ns_chgroups *g, int group, const int64_t *perm,
                        ns_err *err);
// Several groups at once: perms[k] for group k, NULL to leave it alone. A
// permutation may move whole blocks of a group with tie >= 0 (block b to
// block sigma(b): perm[j] / B == sigma^-1(j / B) for every j) when every
// group of its tie is permuted with the same block map; otherwise each perm
// must map every block onto itself. All or nothing.
int ns_chgroups_permute_many(ns_model *m, const ns_chgroups *g, const int64_t *const *perms,
                             ns_err *err);
// The block map of a permutation: blocks[b] = the old block that new block b
// takes (perm[b * B] / B); -1 when perm does not move whole blocks.
int ns_chgroups_block_map(const ns_chgroup *gr, const int64_t *perm, int64_t *blocks);

// Structured pruning: keeps channels keep[0..nkeep) (strictly increasing) of a
// group in every member, shrinks the tensors, updates the nodes' attributes
// (conv out, and groups for depthwise convs; linear out; embedding dim) and
// re-resolves the model. The channels kept stay in order (permute first to
// reorder). Refused for fixed and noselect groups, nkeep < 1, and, with
// blocks, a keep list that does not keep the same count in every block. On
// success g is rebuilt for the smaller model (same groups, same ids; a
// selection never removes a group). On failure m and g are unchanged.
int ns_chgroups_select(ns_model *m, ns_chgroups *g, int group, const int64_t *keep, int64_t nkeep,
                       ns_err *err);
// Several groups at once (one pruning step): keep[i]/nkeep[i] for group i,
// keep[i] == NULL to leave group i alone.
int ns_chgroups_select_many(ns_model *m, ns_chgroups *g, const int64_t *const *keep,
                            const int64_t *nkeep, ns_err *err);

// The fixed bits as text ("model input, model output") in buf; returns buf.
const char *ns_chgroups_fixed_reason(unsigned fixed, char *buf, size_t cap);
const char *ns_chrole_name(ns_chrole role);

// A summary: one line per group (id, channels, block, fixed/noselect, where it
// is made and read); verbose adds one line per member.
void ns_chgroups_print(const ns_chgroups *g, const ns_model *m, FILE *f, int verbose);

#endif
