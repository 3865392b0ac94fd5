// chgroups.c: the channel-group analysis (chgroups.h); applying a group's
// permutation or selection to the tensors is chgroups_apply.c.
//
// The analysis in four steps:
//  1. atoms: walk the nodes in order and give every position of every node's
//     channel axis an atom (union-find), unifying at adds, muls and T x D
//     concats, recording why an atom may not move (input, output, opaque op);
//  2. occurrences: the axes that index channels, in node order: per node the
//     weight input axis (IN), output rows, bias and per-channel parameters
//     (OUT/CHAN), then its output activation (ACT); each names the node whose
//     positions it uses;
//  3. groups: a channel (atom class) is characterised by the list of
//     occurrences it appears in; classes with equal lists are one group
//     (hashed), numbered and ordered by first appearance;
//  4. members: each occurrence is cut into runs (a group's channels 0..size-1
//     in order, each over `inner` consecutive positions), runs of one group
//     at a constant spacing become one member with reps; grouped convs set
//     the block size and the noselect/unaligned flags.
#include "nn/chgroups.h"
#include "nn/chgroups_util.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// helpers

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int reserve(void **items, int64_t *cap, int64_t need, size_t item, ns_err *err) {
    if (need <= *cap) return 0;
    int64_t next = *cap ? *cap : 64;
    while (next < need) next *= 2;
    void *p = realloc(*items, (size_t)next * item);
    if (!p) return ns_errf(err, "out of memory");
    *items = p;
    *cap = next;
    return 0;
}

// The axis of a node's per-sample output that carries channels, and its length.
static int chan_axis(const ns_node *n) { return n->ndim == 2 ? 1 : 0; }
static int64_t chan_len(const ns_node *n) { return n->ndim ? n->shape[chan_axis(n)] : 1; }

// ---------------------------------------------------------------------------
// 1-2. atoms and occurrences

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

static int32_t find(bld *b, int32_t a) {
    while (b->parent[a] != a) {
        b->parent[a] = b->parent[b->parent[a]];
        a = b->parent[a];
    }
    return a;
}

static void unite(bld *b, int32_t x, int32_t y) {
    x = find(b, x);
    y = find(b, y);
    if (x == y) return;
    if (y < x) { int32_t t = x; x = y; y = t; } // the older atom stays the root
    b->parent[y] = x;
    b->why[x] |= b->why[y];
}

static int fresh(bld *b, int64_t at, int64_t n, unsigned why) {
    if (b->natoms + n > INT32_MAX) return ns_errf(b->err, "model too large for the channel analysis");
    int64_t cap = b->cap_atoms;
    if (reserve((void **)&b->why, &cap, b->natoms + n, sizeof *b->why, b->err) < 0 ||
        reserve((void **)&b->parent, &b->cap_atoms, b->natoms + n, sizeof *b->parent, b->err) < 0)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        int32_t a = (int32_t)(b->natoms + i);
        b->parent[a] = a;
        b->why[a] = why;
        b->pos[at + i] = a;
    }
    b->natoms += n;
    return 0;
}

static void mark(bld *b, int node, unsigned why) {
    for (int64_t p = b->off[node]; p < b->off[node + 1]; p++) b->why[find(b, b->pos[p])] |= why;
}

// An axis following positions [start, start + len).
static int add_occ_at(bld *b, ns_chrole role, int node, int slot, int axis, int64_t start, int64_t len,
                      int conv_groups) {
    const ns_model *m = b->m;
    const ns_node *n = &m->nodes[node];
    int tensor = -1;
    if (role != NS_CH_ACT) {
        tensor = n->params[slot];
        if (tensor < 0) return 0; // an absent bias
    }
    if (tensor >= 0) {
        const ns_tensor *t = &m->tensors[tensor].t;
        int64_t want = conv_groups > 1 && role == NS_CH_IN ? len / conv_groups : len;
        if (axis >= t->ndim || t->shape[axis] != want)
            return ns_errf(b->err, "node %s: %s does not match its input (resolve the model first)",
                           n->name, m->tensors[tensor].name);
    }
    if (reserve((void **)&b->occ, &b->cap_occ, b->nocc + 1, sizeof *b->occ, b->err) < 0) return -1;
    b->occ[b->nocc++] = (occ){role, node, tensor, slot, axis, conv_groups, start, len};
    return 0;
}

// An axis following node src's output positions.
static int add_occ(bld *b, ns_chrole role, int node, int slot, int axis, int src, int conv_groups) {
    return add_occ_at(b, role, node, slot, axis, b->off[src], b->off[src + 1] - b->off[src], conv_groups);
}

static int add_blk(bld *b, int64_t start, int64_t len, int64_t block, int key, int pin) {
    if (reserve((void **)&b->blk, &b->cap_blk, b->nblk + 1, sizeof *b->blk, b->err) < 0) return -1;
    b->blk[b->nblk++] = (blkc){start, len, block, key, pin};
    return 0;
}

// Positions of node i, from its inputs'.
static int walk_node(bld *b, int i) {
    const ns_model *m = b->m;
    const ns_node *n = &m->nodes[i];
    int64_t len = chan_len(n), at = b->npos;
    if (reserve((void **)&b->pos, &b->cap_pos, at + len, sizeof *b->pos, b->err) < 0) return -1;
    b->npos += len;
    b->off[i + 1] = b->npos;
    const ns_node *in = n->ninputs ? &m->nodes[n->inputs[0]] : NULL;
    const int32_t *src = in ? b->pos + b->off[n->inputs[0]] : NULL;
    int64_t in_len = in ? chan_len(in) : 0;
    int opaque = 0;
    switch (n->op) {
    case NS_OP_INPUT:
        return fresh(b, at, len, NS_CHFIX_INPUT);
    case NS_OP_CONV2D:
        if (is_depthwise(m, n)) break; // copy below
        return fresh(b, at, len, 0);
    case NS_OP_LINEAR:
    case NS_OP_PATCH_EMBED:
        return fresh(b, at, len, 0);
    case NS_OP_ATTENTION: {
        // queries (and, for cross-attention, keys and values) are read by the
        // same in_proj_weight columns: one channel space; a padding mask is
        // not features
        int cross = ns_node_iattr(n, "cross") != 0;
        if (cross) {
            int j = n->inputs[1];
            if (b->off[j + 1] - b->off[j] != in_len)
                return ns_errf(b->err, "node %s: queries and keys differ in features", n->name);
            for (int64_t p = 0; p < in_len; p++) unite(b, src[p], b->pos[b->off[j] + p]);
        }
        for (int k = 1 + cross; k < n->ninputs; k++) mark(b, n->inputs[k], NS_CHFIX_OPAQUE);
        return fresh(b, at, len, 0); // out_proj rows
    }
    case NS_OP_EMBEDDING:
        mark(b, n->inputs[0], NS_CHFIX_OPAQUE); // ids, not features
        return fresh(b, at, len, 0);
    case NS_OP_ADD:
    case NS_OP_MUL:
        break;
    case NS_OP_CONCAT:
        if (n->ndim == 2) break; // tokens joined: the feature axis is shared
        if (n->ndim == 1 || n->ndim == 3) {
            int64_t p = at;
            for (int k = 0; k < n->ninputs; k++) {
                int j = n->inputs[k];
                for (int64_t q = b->off[j]; q < b->off[j + 1]; q++) b->pos[p++] = b->pos[q];
            }
            return 0;
        }
        opaque = 1;
        break;
    case NS_OP_RESHAPE:
    case NS_OP_FLATTEN:
        if (n->op == NS_OP_RESHAPE && n->ndim != 1) {
            if (n->ndim == in->ndim && !memcmp(n->shape, in->shape, (size_t)n->ndim * sizeof *n->shape))
                break;
            opaque = 1;
            break;
        }
        if (in->ndim == 3) { // channel c covers features [c*HW, (c+1)*HW)
            int64_t hw = in->shape[1] * in->shape[2];
            for (int64_t c = 0; c < in_len; c++)
                for (int64_t s = 0; s < hw; s++) b->pos[at + c * hw + s] = src[c];
            return 0;
        }
        if (in->ndim == 2) { // T x D: feature t*D + d is channel d
            for (int64_t t = 0; t < in->shape[0]; t++)
                for (int64_t d = 0; d < in_len; d++) b->pos[at + t * in_len + d] = src[d];
            return 0;
        }
        if (in->ndim == 1) break;
        opaque = 1;
        break;
    case NS_OP_BATCHNORM:
    case NS_OP_LAYERNORM:
    case NS_OP_RELU:
    case NS_OP_LEAKY_RELU:
    case NS_OP_GELU:
    case NS_OP_SIGMOID:
    case NS_OP_TANH:
    case NS_OP_MAXPOOL:
    case NS_OP_AVGPOOL:
    case NS_OP_GLOBAL_AVGPOOL:
    case NS_OP_DROPOUT:
    case NS_OP_SOFTMAX:     // equivariant to a permutation of any axis
    case NS_OP_GROUPNORM:   // groups of channels: blocks (node_occs)
    case NS_OP_CLS_TOKEN:   // a token more, of the same features
    case NS_OP_POS_EMBED:
    case NS_OP_TOKEN_POOL:  // T x D to D
        // end-of-text pooling (mode 2) takes the token at the largest of its
        // second input's T keys (the ids): their positions are tokens, not
        // features, so they may not move
        if (n->ninputs > 1) mark(b, n->inputs[1], NS_CHFIX_OPAQUE);
        break;
    default: // transpose, and any op added later until it is described here
        opaque = 1;
        break;
    }
    if (opaque) {
        for (int k = 0; k < n->ninputs; k++) mark(b, n->inputs[k], NS_CHFIX_OPAQUE);
        return fresh(b, at, len, NS_CHFIX_OPAQUE);
    }
    // pass-through: the input's positions, unified with the other inputs'
    if (in_len != len) return ns_errf(b->err, "node %s: channel axis changed unexpectedly", n->name);
    memcpy(b->pos + at, src, (size_t)len * sizeof *b->pos);
    if (n->op == NS_OP_ADD || n->op == NS_OP_MUL || n->op == NS_OP_CONCAT)
        for (int k = 1; k < n->ninputs; k++) {
            int j = n->inputs[k];
            if (b->off[j + 1] - b->off[j] != len) return ns_errf(b->err, "node %s: inputs differ in channels", n->name);
            for (int64_t p = 0; p < len; p++) unite(b, b->pos[at + p], b->pos[b->off[j] + p]);
        }
    return 0;
}

// Attention (heads Hd, head size dh = D / Hd): the input projection's
// columns read the queries' space; its rows make two internal spaces of D
// channels each, positions appended after the nodes': qk (row d of q and
// row D + d of k: a query-key product sums over them, so they move
// together) and v (row 2D + d, with column d of the output projection);
// the output projection's rows make the node's output. Both internal spaces
// come in blocks of dh (heads), tied: a head moves with its q, k and v.
static int attention_occs(bld *b, int i) {
    const ns_node *n = &b->m->nodes[i];
    int src = n->inputs[0];
    int64_t D = b->off[src + 1] - b->off[src], at = b->npos;
    int64_t heads = ns_node_iattr(n, "heads");
    if (reserve((void **)&b->pos, &b->cap_pos, at + 3 * D, sizeof *b->pos, b->err) < 0) return -1;
    b->npos += 3 * D;
    if (fresh(b, at, D, 0) < 0 || fresh(b, at + 2 * D, D, 0) < 0) return -1;
    memcpy(b->pos + at + D, b->pos + at, (size_t)D * sizeof *b->pos);
    b->attn_start[i] = at;
    if (add_occ_at(b, NS_CH_IN, i, 0, 1, b->off[src], D, 1) < 0 ||
        add_occ_at(b, NS_CH_OUT, i, 0, 0, at, 3 * D, 1) < 0 || add_occ_at(b, NS_CH_OUT, i, 1, 0, at, 3 * D, 1) < 0 ||
        add_occ_at(b, NS_CH_IN, i, 2, 1, at + 2 * D, D, 1) < 0 || add_occ(b, NS_CH_OUT, i, 2, 0, i, 1) < 0 ||
        add_occ(b, NS_CH_OUT, i, 3, 0, i, 1) < 0)
        return -1;
    int pin = ns_node_iattr(n, "cross_heads") != 0; // heads stay put; channels move within a head
    if (add_blk(b, at, D, D / heads, i, pin) < 0 || add_blk(b, at + 2 * D, D, D / heads, i, pin) < 0) return -1;
    return 0;
}

// The axes of node i that index channels, in a fixed order.
static int node_occs(bld *b, int i) {
    const ns_model *m = b->m;
    const ns_node *n = &m->nodes[i];
    int src = n->ninputs ? n->inputs[0] : -1;
    switch (n->op) {
    case NS_OP_CONV2D:
        if (is_depthwise(m, n)) {
            if (add_occ(b, NS_CH_CHAN, i, 0, 0, i, 1) < 0 || add_occ(b, NS_CH_CHAN, i, 1, 0, i, 1) < 0) return -1;
        } else {
            int g = (int)ns_node_iattr(n, "groups");
            if (add_occ(b, NS_CH_IN, i, 0, 1, src, g) < 0 || add_occ(b, NS_CH_OUT, i, 0, 0, i, g) < 0 ||
                add_occ(b, NS_CH_OUT, i, 1, 0, i, g) < 0)
                return -1;
        }
        break;
    case NS_OP_LINEAR:
        if (add_occ(b, NS_CH_IN, i, 0, 1, src, 1) < 0 || add_occ(b, NS_CH_OUT, i, 0, 0, i, 1) < 0 ||
            add_occ(b, NS_CH_OUT, i, 1, 0, i, 1) < 0)
            return -1;
        break;
    case NS_OP_EMBEDDING:
        if (add_occ(b, NS_CH_OUT, i, 0, 1, i, 1) < 0) return -1;
        break;
    case NS_OP_BATCHNORM:
        for (int p = 0; p < 4; p++)
            if (add_occ(b, NS_CH_CHAN, i, p, 0, i, 1) < 0) return -1;
        break;
    case NS_OP_LAYERNORM:
        if (n->ndim <= 2) // over the channel axis; on C x H x W it normalises W
            for (int p = 0; p < 2; p++)
                if (add_occ(b, NS_CH_CHAN, i, p, 0, i, 1) < 0) return -1;
        break;
    case NS_OP_GROUPNORM:
        // channels are axis 0 of C x H x W or C; on T x D the "channels" are
        // the tokens, and the features pass through (statistics over them)
        if (n->ndim != 2) {
            for (int p = 0; p < 2; p++)
                if (add_occ(b, NS_CH_CHAN, i, p, 0, i, 1) < 0) return -1;
            int64_t len = b->off[i + 1] - b->off[i];
            if (add_blk(b, b->off[i], len, len / ns_node_iattr(n, "groups"), i, 0) < 0) return -1;
        }
        break;
    case NS_OP_PATCH_EMBED: // weight (D, C, P, P): rows made here, columns read
        if (add_occ(b, NS_CH_IN, i, 0, 1, src, 1) < 0 || add_occ(b, NS_CH_OUT, i, 0, 0, i, 1) < 0 ||
            add_occ(b, NS_CH_OUT, i, 1, 0, i, 1) < 0)
            return -1;
        break;
    case NS_OP_CLS_TOKEN:
        if (add_occ(b, NS_CH_CHAN, i, 0, 0, i, 1) < 0) return -1;
        break;
    case NS_OP_POS_EMBED: // weight (T, D)
        if (add_occ(b, NS_CH_CHAN, i, 0, 1, i, 1) < 0) return -1;
        break;
    case NS_OP_ATTENTION:
        if (attention_occs(b, i) < 0) return -1;
        break;
    default:
        break;
    }
    return add_occ(b, NS_CH_ACT, i, -1, chan_axis(n), i, 1);
}

// ---------------------------------------------------------------------------
// 3-4. groups and members

typedef struct run { int32_t group; int64_t offset, inner; } run;

static int add_member(ns_chgroup *gr, int *cap, const ns_chmember *mb, ns_err *err) {
    if (gr->nmembers == *cap) {
        int next = *cap ? *cap * 2 : 8;
        ns_chmember *p = realloc(gr->members, (size_t)next * sizeof *p);
        if (!p) return ns_errf(err, "out of memory");
        gr->members = p;
        *cap = next;
    }
    gr->members[gr->nmembers++] = *mb;
    return 0;
}

// Grouped-conv bookkeeping of one member: blocks, alignment, coverage.
static void conv_blocks(ns_chgroup *gr, const ns_chmember *mb, int64_t len) {
    int64_t blk = len / mb->conv_groups;
    if (mb->inner != 1) { gr->fixed |= NS_CHFIX_IRREGULAR; return; }
    for (int64_t r = 0; r < mb->reps; r++) {
        int64_t o = mb->offset + r * mb->rstride;
        if (o % blk == 0 && gr->size % blk == 0) gr->block = gcd64(gr->block, blk);
        else if (o / blk != (o + gr->size - 1) / blk) gr->fixed |= NS_CHFIX_UNALIGNED;
    }
    if (mb->reps != 1 || mb->offset != 0 || gr->size != len) gr->noselect |= NS_CHSEL_PARTIAL;
}

typedef struct sigs {
    int64_t *start; // per class: its occurrence list sig[start[c] .. start[c+1])
    int32_t *sig;
} sigs;

static int sig_equal(const sigs *s, int64_t a, int64_t b) {
    int64_t la = s->start[a + 1] - s->start[a], lb = s->start[b + 1] - s->start[b];
    return la == lb && !memcmp(s->sig + s->start[a], s->sig + s->start[b], (size_t)la * sizeof *s->sig);
}

static uint64_t sig_hash(const sigs *s, int64_t c) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = s->start[c]; i < s->start[c + 1]; i++) h = (h ^ (uint64_t)s->sig[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

void ns_chgroups_free(ns_chgroups *g) {
    for (int i = 0; g->groups && i < g->ngroups; i++) free(g->groups[i].members);
    free(g->groups);
    free(g->node_off);
    free(g->pos_group);
    free(g->pos_chan);
    memset(g, 0, sizeof *g);
}

static int gfind(int *parent, int k) {
    while (parent[k] != k) k = parent[k] = parent[parent[k]];
    return k;
}

// Blocks that move whole (the constraints of GroupNorm and attention): each
// constraint must cover exactly one group, in order (else the group is
// irregular); its block size joins the group's; the groups of one
// constraint key are tied. A tie set whose blocks are all exactly the
// constraints' (no grouped conv, no two GroupNorms of different group
// counts) may move its blocks; otherwise its channels move within blocks
// only (tie -1).
static int whole_blocks(ns_chgroups *g, const bld *b, const int32_t *cls, const int32_t *grp, const int64_t *chan,
                        ns_err *err) {
    int ng = g->ngroups, nn = b->m->nnodes, rc = -1;
    int *parent = malloc((size_t)(ng ? ng : 1) * sizeof *parent), *key_group = malloc((size_t)nn * sizeof *key_group);
    int *tie = malloc((size_t)(ng ? ng : 1) * sizeof *tie);
    char *constrained = calloc((size_t)(ng ? ng : 1), 1), *pinned = calloc((size_t)(ng ? ng : 1), 1);
    if (!parent || !key_group || !tie || !constrained || !pinned) { ns_errf(err, "out of memory"); goto out; }
    for (int k = 0; k < ng; k++) {
        parent[k] = k;
        tie[k] = -1;
        g->groups[k].tie = -1;
        pinned[k] = g->groups[k].block != g->groups[k].size; // a grouped conv's blocks stay put
    }
    for (int i = 0; i < nn; i++) key_group[i] = -1;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t c = 0; c < b->nblk; c++) {
            const blkc *bc = &b->blk[c];
            int k = grp[cls[b->pos[bc->start]]];
            ns_chgroup *gr = &g->groups[k];
            int whole = gr->size == bc->len && bc->block > 0 && bc->len % bc->block == 0;
            for (int64_t p = 0; whole && p < bc->len; p++)
                whole = grp[cls[b->pos[bc->start + p]]] == k && chan[cls[b->pos[bc->start + p]]] == p;
            if (!whole) {
                gr->fixed |= NS_CHFIX_IRREGULAR;
                continue;
            }
            if (pass == 1) { // blocks reduced by another constraint, or fixed in place: pinned
                if (gr->block != bc->block || bc->pin) pinned[k] = 1;
                continue;
            }
            gr->block = gcd64(gr->block, bc->block);
            constrained[k] = 1;
            if (key_group[bc->key] < 0) key_group[bc->key] = k;
            else {
                int x = gfind(parent, key_group[bc->key]), y = gfind(parent, k);
                if (x != y) parent[y < x ? x : y] = y < x ? y : x;
            }
        }
    for (int k = 0; k < ng; k++)
        if (pinned[k] && constrained[k]) pinned[gfind(parent, k)] = 1;
    int nties = 0;
    for (int k = 0; k < ng; k++) {
        int r = gfind(parent, k);
        if (!constrained[k] || pinned[r] || g->groups[k].fixed) continue;
        if (tie[r] < 0) tie[r] = nties++;
        g->groups[k].tie = tie[r];
    }
    g->nties = nties;
    rc = 0;
out:
    free(parent);
    free(key_group);
    free(tie);
    free(constrained);
    free(pinned);
    return rc;
}

// Attention's groups: the internal qk and v spaces take their features from
// the input projection of the queries' input (act_proj) and cannot be pruned
// (heads); the groups the attention reads and writes cannot be pruned
// either (its width D is theirs).
static void attention_groups(ns_chgroups *g, const bld *b, const int32_t *cls, const int32_t *grp) {
    const ns_model *m = b->m;
    for (int i = 0; i < m->nnodes; i++) {
        int64_t at = b->attn_start[i];
        if (at < 0) continue;
        const ns_node *n = &m->nodes[i];
        int src = n->inputs[0];
        int64_t D = b->off[src + 1] - b->off[src];
        for (int part = 0; part < 2; part++) {
            ns_chgroup *gr = &g->groups[grp[cls[b->pos[at + part * 2 * D]]]];
            gr->noselect |= NS_CHSEL_HEADS;
            gr->act_node = src;
            for (int k = 0; k < gr->nmembers; k++)
                if (gr->members[k].role == NS_CH_OUT && gr->members[k].node == i && gr->members[k].slot == 0)
                    gr->act_proj = k;
        }
        int nin = 1 + (ns_node_iattr(n, "cross") != 0);
        for (int k = 0; k <= nin; k++) {
            int node = k < nin ? n->inputs[k] : i;
            for (int64_t p = b->off[node]; p < b->off[node + 1]; p++) g->groups[grp[cls[b->pos[p]]]].noselect |= NS_CHSEL_ATTN;
        }
    }
}

static int build(ns_chgroups *g, const ns_model *m, bld *b, ns_err *err) {
    if (m->nnodes < 1 || m->nodes[0].op != NS_OP_INPUT) return ns_errf(err, "the model has no input node");
    b->off = calloc((size_t)m->nnodes + 1, sizeof *b->off);
    b->attn_start = malloc((size_t)m->nnodes * sizeof *b->attn_start);
    if (!b->off || !b->attn_start) return ns_errf(err, "out of memory");
    for (int i = 0; i < m->nnodes; i++) b->attn_start[i] = -1;
    for (int i = 0; i < m->nnodes; i++)
        if (walk_node(b, i) < 0) return -1;
    if (m->output >= 0 && m->output < m->nnodes) mark(b, m->output, NS_CHFIX_OUTPUT);
    for (int i = 0; i < m->nnodes; i++)
        if (node_occs(b, i) < 0) return -1;

    // classes: dense ids for the roots
    int64_t na = b->natoms, np = b->npos, nclass = 0;
    int32_t *cls = malloc((size_t)(na ? na : 1) * sizeof *cls);
    int64_t *start = calloc((size_t)na + 2, sizeof *start);
    int32_t *last = malloc((size_t)(na ? na : 1) * sizeof *last);
    int32_t *grp = NULL, *table = NULL;
    int64_t *chan = NULL, *gsize = NULL, *rep = NULL;
    sigs s = {start, NULL};
    run *runs = NULL;
    int *mcap = NULL;
    int rc = -1;
    if (!cls || !start || !last) { ns_errf(err, "out of memory"); goto done; }
    for (int64_t a = 0; a < na; a++) cls[a] = -1;
    for (int64_t a = 0; a < na; a++) {
        int32_t r = find(b, (int32_t)a);
        if (cls[r] < 0) cls[r] = (int32_t)nclass++;
        cls[a] = cls[r];
    }
    // signatures: the occurrences each class appears in
    for (int64_t c = 0; c < nclass; c++) last[c] = -1;
    for (int64_t o = 0; o < b->nocc; o++) {
        const occ *oc = &b->occ[o];
        for (int64_t p = oc->start; p < oc->start + oc->len; p++) {
            int32_t c = cls[b->pos[p]];
            if (last[c] != o) { last[c] = (int32_t)o; start[c + 1]++; }
        }
    }
    for (int64_t c = 0; c < nclass; c++) start[c + 1] += start[c];
    s.sig = malloc((size_t)(start[nclass] ? start[nclass] : 1) * sizeof *s.sig);
    int64_t *fill = malloc((size_t)(nclass ? nclass : 1) * sizeof *fill);
    if (!s.sig || !fill) { free(fill); ns_errf(err, "out of memory"); goto done; }
    for (int64_t c = 0; c < nclass; c++) { fill[c] = start[c]; last[c] = -1; }
    for (int64_t o = 0; o < b->nocc; o++) {
        const occ *oc = &b->occ[o];
        for (int64_t p = oc->start; p < oc->start + oc->len; p++) {
            int32_t c = cls[b->pos[p]];
            if (last[c] != o) { last[c] = (int32_t)o; s.sig[fill[c]++] = (int32_t)o; }
        }
    }
    free(fill);

    // groups: equal signatures, numbered by first appearance
    int64_t tcap = 16;
    while (tcap < 2 * nclass) tcap *= 2;
    grp = malloc((size_t)(nclass ? nclass : 1) * sizeof *grp);
    chan = malloc((size_t)(nclass ? nclass : 1) * sizeof *chan);
    gsize = calloc((size_t)(nclass ? nclass : 1), sizeof *gsize);
    rep = malloc((size_t)(nclass ? nclass : 1) * sizeof *rep);
    table = malloc((size_t)tcap * sizeof *table);
    if (!grp || !chan || !gsize || !rep || !table) { ns_errf(err, "out of memory"); goto done; }
    for (int64_t c = 0; c < nclass; c++) grp[c] = -1;
    for (int64_t i = 0; i < tcap; i++) table[i] = -1;
    int ng = 0;
    for (int64_t o = 0; o < b->nocc; o++) {
        const occ *oc = &b->occ[o];
        for (int64_t p = oc->start; p < oc->start + oc->len; p++) {
            int32_t c = cls[b->pos[p]];
            if (grp[c] >= 0) continue;
            uint64_t h = sig_hash(&s, c) & (uint64_t)(tcap - 1);
            while (table[h] >= 0 && !sig_equal(&s, rep[table[h]], c)) h = (h + 1) & (uint64_t)(tcap - 1);
            if (table[h] < 0) { table[h] = ng; rep[ng] = c; ng++; }
            grp[c] = table[h];
            chan[c] = gsize[grp[c]]++;
        }
    }

    g->ngroups = ng;
    g->groups = calloc((size_t)(ng ? ng : 1), sizeof *g->groups);
    mcap = calloc((size_t)(ng ? ng : 1), sizeof *mcap);
    if (!g->groups || !mcap) { ns_errf(err, "out of memory"); goto done; }
    for (int k = 0; k < ng; k++) {
        ns_chgroup *gr = &g->groups[k];
        gr->id = k;
        gr->size = gsize[k];
        gr->block = gsize[k];
        gr->act_node = -1;
        gr->act_proj = -1;
        gr->tie = -1;
    }
    for (int64_t a = 0; a < na; a++)
        if (find(b, (int32_t)a) == a) g->groups[grp[cls[a]]].fixed |= b->why[a];

    // members: cut each occurrence into runs, merge runs into members
    int64_t cap_runs = 0;
    for (int64_t o = 0; o < b->nocc; o++) {
        const occ *oc = &b->occ[o];
        const int32_t *ps = b->pos + oc->start;
        int64_t len = oc->len, nr = 0, p = 0;
        while (p < len) {
            int32_t k = grp[cls[ps[p]]];
            ns_chgroup *gr = &g->groups[k];
            int64_t q = p;
            while (q < len && grp[cls[ps[q]]] == k) q++; // segment [p, q)
            while (p < q) {
                int64_t inner = 0;
                while (p + inner < q && chan[cls[ps[p + inner]]] == 0) inner++;
                int ok = inner > 0 && p + gr->size * inner <= q;
                for (int64_t c = 1; ok && c < gr->size; c++)
                    for (int64_t t = 0; ok && t < inner; t++) ok = chan[cls[ps[p + c * inner + t]]] == c;
                if (!ok) { gr->fixed |= NS_CHFIX_IRREGULAR; break; }
                if (reserve((void **)&runs, &cap_runs, nr + 1, sizeof *runs, err) < 0) goto done;
                runs[nr++] = (run){k, p, inner};
                p += gr->size * inner;
            }
            p = q;
        }
        for (int64_t i = 0; i < nr; i++) {
            if (runs[i].group < 0) continue;
            int32_t k = runs[i].group;
            ns_chgroup *gr = &g->groups[k];
            ns_chmember mb = {oc->role, oc->node, oc->tensor, oc->slot, oc->axis, oc->conv_groups,
                              runs[i].offset, runs[i].inner, 1, gr->size * runs[i].inner};
            int64_t prev = runs[i].offset;
            for (int64_t j = i + 1; j <= nr; j++) {
                if (j < nr && runs[j].group != k) continue;
                int joins = j < nr && runs[j].inner == mb.inner &&
                            (mb.reps == 1 || runs[j].offset - prev == mb.rstride);
                if (joins) {
                    if (mb.reps == 1) mb.rstride = runs[j].offset - prev;
                    mb.reps++;
                    prev = runs[j].offset;
                    runs[j].group = -1;
                    continue;
                }
                if (oc->conv_groups > 1) conv_blocks(gr, &mb, oc->len);
                if (add_member(gr, &mcap[k], &mb, err) < 0) goto done;
                if (j == nr) break;
                // a run that does not continue the member starts the next one
                mb.offset = runs[j].offset;
                mb.inner = runs[j].inner;
                mb.reps = 1;
                mb.rstride = gr->size * mb.inner;
                prev = mb.offset;
                runs[j].group = -1;
            }
        }
    }
    for (int k = 0; k < ng; k++) {
        ns_chgroup *gr = &g->groups[k];
        for (int i = 0; i < gr->nmembers; i++)
            if (gr->members[i].role == NS_CH_IN) gr->act_node = m->nodes[gr->members[i].node].inputs[0];
    }
    if (whole_blocks(g, b, cls, grp, chan, err) < 0) goto done;
    attention_groups(g, b, cls, grp);

    // node positions -> (group, channel)
    g->nnodes = m->nnodes;
    g->node_off = malloc(((size_t)m->nnodes + 1) * sizeof *g->node_off);
    g->pos_group = malloc((size_t)(np ? np : 1) * sizeof *g->pos_group);
    g->pos_chan = malloc((size_t)(np ? np : 1) * sizeof *g->pos_chan);
    if (!g->node_off || !g->pos_group || !g->pos_chan) { ns_errf(err, "out of memory"); goto done; }
    memcpy(g->node_off, b->off, ((size_t)m->nnodes + 1) * sizeof *g->node_off);
    for (int64_t p = 0; p < np; p++) {
        int32_t c = cls[b->pos[p]];
        g->pos_group[p] = grp[c];
        g->pos_chan[p] = chan[c];
    }
    rc = 0;
done:
    free(cls);
    free(start);
    free(last);
    free(s.sig);
    free(grp);
    free(chan);
    free(gsize);
    free(rep);
    free(table);
    free(runs);
    free(mcap);
    return rc;
}

int ns_chgroups_build(ns_chgroups *g, const ns_model *m, ns_err *err) {
    memset(g, 0, sizeof *g);
    bld b = {0};
    b.m = m;
    b.err = err;
    int rc = build(g, m, &b, err);
    free(b.parent);
    free(b.why);
    free(b.off);
    free(b.pos);
    free(b.occ);
    free(b.blk);
    free(b.attn_start);
    if (rc < 0) ns_chgroups_free(g);
    return rc;
}

int ns_chgroups_find(const ns_chgroups *g, int node, int64_t pos, int64_t *chan) {
    if (node < 0 || node >= g->nnodes || pos < 0 || pos >= g->node_off[node + 1] - g->node_off[node])
        return -1;
    int64_t p = g->node_off[node] + pos;
    if (chan) *chan = g->pos_chan[p];
    return g->pos_group[p];
}

// ---------------------------------------------------------------------------
// printing

const char *ns_chrole_name(ns_chrole role) {
    switch (role) {
    case NS_CH_OUT: return "out";
    case NS_CH_IN: return "in";
    case NS_CH_CHAN: return "chan";
    case NS_CH_ACT: return "act";
    }
    return "?";
}

const char *ns_chgroups_fixed_reason(unsigned fixed, char *buf, size_t cap) {
    static const char *const names[] = {"model input", "model output", "through an opaque op",
                                        "irregular layout", "splits grouped-conv blocks"};
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < 5; i++)
        if (fixed & (1u << i) && used < cap)
            used += (size_t)snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", names[i]);
    return buf;
}

// " name1, name2, ..." of the nodes with members of a role, each once.
static void print_nodes(const ns_chgroup *gr, const ns_model *m, ns_chrole role, const char *label, FILE *f) {
    int printed = 0, lastnode = -1;
    for (int i = 0; i < gr->nmembers; i++) {
        const ns_chmember *mb = &gr->members[i];
        if (mb->role != role || mb->node == lastnode) continue;
        lastnode = mb->node;
        fprintf(f, "%s%s", printed ? ", " : label, m->nodes[mb->node].name);
        printed = 1;
    }
}

void ns_chgroups_print(const ns_chgroups *g, const ns_model *m, FILE *f, int verbose) {
    int nfixed = 0;
    for (int k = 0; k < g->ngroups; k++) nfixed += g->groups[k].fixed != 0;
    fprintf(f, "%d channel groups, %d fixed\n", g->ngroups, nfixed);
    for (int k = 0; k < g->ngroups; k++) {
        const ns_chgroup *gr = &g->groups[k];
        char why[160];
        fprintf(f, "group %d: %lld channel%s", k, (long long)gr->size, gr->size == 1 ? "" : "s");
        if (gr->block != gr->size)
            fprintf(f, " in blocks of %lld%s", (long long)gr->block, gr->tie >= 0 ? " (blocks move whole)" : "");
        if (gr->tie >= 0) fprintf(f, ", tie %d", gr->tie);
        if (gr->fixed) fprintf(f, ", fixed (%s)", ns_chgroups_fixed_reason(gr->fixed, why, sizeof why));
        else if (gr->noselect & NS_CHSEL_HEADS) fprintf(f, ", not prunable (attention heads)");
        else if (gr->noselect & NS_CHSEL_ATTN) fprintf(f, ", not prunable (an attention's width)");
        else if (gr->noselect) fprintf(f, ", not prunable alone (part of a grouped conv)");
        print_nodes(gr, m, NS_CH_OUT, "; made by ", f);
        print_nodes(gr, m, NS_CH_IN, "; read by ", f);
        if (gr->act_node >= 0) fprintf(f, "; features at %s", m->nodes[gr->act_node].name);
        fprintf(f, "\n");
        for (int i = 0; verbose && i < gr->nmembers; i++) {
            const ns_chmember *mb = &gr->members[i];
            fprintf(f, "  %-4s %s axis %d", ns_chrole_name(mb->role),
                    mb->tensor >= 0 ? m->tensors[mb->tensor].name : m->nodes[mb->node].name, mb->axis);
            if (mb->offset) fprintf(f, " from %lld", (long long)mb->offset);
            if (mb->inner > 1) fprintf(f, ", %lld per channel", (long long)mb->inner);
            if (mb->reps > 1) fprintf(f, ", %lld times every %lld", (long long)mb->reps, (long long)mb->rstride);
            if (mb->conv_groups > 1) fprintf(f, ", conv groups %d", mb->conv_groups);
            fprintf(f, "\n");
        }
    }
}

// ---------------------------------------------------------------------------
// Notes for what comes next.
//
// Whole-block moves (ResNeXt convs, attention heads, GroupNorm): a grouped
// conv ties the blocks of its input group to those of its output group (block
// b in feeds block b out). A tie set (union-find over groups, joined at each
// grouped conv whose input and output axes each hold one whole group with
// block == in/groups and out/groups) would carry a block permutation sigma:
// every group of the set permutes channel c to sigma(c / B) * B + c % B, and
// the grouped conv's input member needs no column change for it (its rows
// move with the output group). ns_chgroups_permute_blocks(m, g, tie, sigma)
// would apply that through ns_chgroups_permute_many (as attention heads and
// GroupNorm groups do now); selections dropping whole blocks would also lower
// the conv's groups attribute (and an attention's heads).
