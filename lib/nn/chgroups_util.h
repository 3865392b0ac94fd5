// chgroups_util.h: what the files of the channel-group analysis (chgroups.h)
// share; private to lib/nn/chgroups*.c:
//   chgroups.c        steps 3-4 of the analysis (groups, members, blocks that
//                     move whole), the entry points and printing
//   chgroups_ops.c    steps 1-2, the rules of each op: the positions it makes,
//                     passes through, unites or pins, and the axes that index
//                     them (attention heads, twin and cross attention,
//                     token_pool's end-of-text keys, GroupNorm, grouped convs)
//   chgroups_apply.c  applying a group's permutation or selection
// The steps are described at the top of chgroups.c; the state they share is
// the builder (bld) below: atoms (a union-find over channels), positions
// (per node, the atom of each position of its channel axis) and the
// occurrences and block constraints found by the op rules.
#ifndef NS_CHGROUPS_UTIL_H
#define NS_CHGROUPS_UTIL_H

#include <stdlib.h>

#include "nn/chgroups.h"
#include "nn/model.h"

// A depthwise conv (groups == in == out > 1) passes channels straight through.
static inline int is_depthwise(const ns_model *m, const ns_node *n) {
    if (n->op != NS_OP_CONV2D) return 0;
    int64_t g = ns_node_iattr(n, "groups"), in = m->nodes[n->inputs[0]].shape[0];
    return g > 1 && g == in && ns_node_iattr(n, "out") == in;
}

// Grows *items (of *cap items of `item` bytes) to hold `need`.
static inline int reserve(void **items, int64_t *cap, int64_t need, size_t item, ns_err *err) {
    if (need <= *cap) return 0;
    int64_t next = *cap ? *cap : 64;
    while (next < need) next *= 2;
    void *p = realloc(*items, (size_t)next * item);
    if (!p) return ns_errf(err, "out of memory");
    *items = p;
    *cap = next;
    return 0;
}

typedef struct occ {
    ns_chrole role;
    int node, tensor, slot, axis, conv_groups;
    int64_t start; // first position this axis follows (a node's, or an op's internal space)
    int64_t len;   // positions (the virtual axis for a grouped conv input)
} occ;

// Blocks that move whole (GroupNorm groups, attention heads): positions
// [start, start + len) in blocks of `block`; constraints with the same key
// (the node) must move their blocks together.
// pin: the blocks keep their places (twin attention: a head's position says
// whether it reads its own sample or the partner; ops.h).
typedef struct blkc { int64_t start, len, block; int key, pin; } blkc;

typedef struct bld {
    const ns_model *m;
    ns_err *err;
    int32_t *parent;
    unsigned *why;
    int64_t natoms, cap_atoms;
    int64_t *off;   // nnodes + 1: node i's positions are pos[off[i] .. off[i+1])
    int32_t *pos;   // atom of each position
    int64_t npos, cap_pos;
    occ *occ;
    int64_t nocc, cap_occ;
    blkc *blk;
    int64_t nblk, cap_blk;
    int64_t *attn_start; // per node: an attention's internal positions (3D), -1 otherwise
} bld;

// The root of atom a (with path halving).
static inline int32_t find(bld *b, int32_t a) {
    while (b->parent[a] != a) {
        b->parent[a] = b->parent[b->parent[a]];
        a = b->parent[a];
    }
    return a;
}

// Steps 1-2 (chgroups_ops.c): positions, atoms and occurrences of every
// node of b->m (allocates b->off and b->attn_start), the model output's
// atoms marked fixed.
int ns_chgroups_walk(bld *b);

// The attention rules of step 4 (chgroups_ops.c): with each atom's class
// cls and each class's group grp, mark the groups an attention reads, writes
// and holds inside (heads) as not prunable, and where the heads' features are.
void ns_chgroups_attention_groups(ns_chgroups *g, const bld *b, const int32_t *cls, const int32_t *grp);

#endif
