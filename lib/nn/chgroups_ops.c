// chgroups_ops.c: steps 1-2 of the channel-group analysis (chgroups.c
// describes the steps, chgroups.h the model): the rule of each op for its
// channel positions (made here, passed through, united with another input's,
// or fixed) and for the tensor axes and activations that index them
// (occurrences), with the block constraints of attention heads and
// GroupNorm groups; and the attention rules applied once groups are known.
// Shapes: a node's channel axis is axis 0 of C x H x W and of vectors, axis 1
// of T x D; attention has D input features and Hd heads of D / Hd.
#include "nn/chgroups.h"
#include "nn/chgroups_util.h"

#include <stdlib.h>
#include <string.h>

// The axis of a node's per-sample output that carries channels, and its length.
static int chan_axis(const ns_node *n) { return n->ndim == 2 ? 1 : 0; }
static int64_t chan_len(const ns_node *n) { return n->ndim ? n->shape[chan_axis(n)] : 1; }

// ---------------------------------------------------------------------------
// atoms, occurrences and block constraints

// Atoms x and y are one channel from now on.
static void unite(bld *b, int32_t x, int32_t y) {
    x = find(b, x);
    y = find(b, y);
    if (x == y) return;
    if (y < x) { int32_t t = x; x = y; y = t; } // the older atom stays the root
    b->parent[y] = x;
    b->why[x] |= b->why[y];
}

// n new atoms, fixed for `why` (0: free), at positions [at, at + n).
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

// Node's channels may not move, for `why`.
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

// ---------------------------------------------------------------------------
// the rules of each op

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
    case NS_OP_PATCH_EMBED: // weight (D, C, P, P) or (out, in): rows made here, columns read
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
// entry points (chgroups_util.h)

int ns_chgroups_walk(bld *b) {
    const ns_model *m = b->m;
    b->off = calloc((size_t)m->nnodes + 1, sizeof *b->off);
    b->attn_start = malloc((size_t)m->nnodes * sizeof *b->attn_start);
    if (!b->off || !b->attn_start) return ns_errf(b->err, "out of memory");
    for (int i = 0; i < m->nnodes; i++) b->attn_start[i] = -1;
    for (int i = 0; i < m->nnodes; i++)
        if (walk_node(b, i) < 0) return -1;
    if (m->output >= 0 && m->output < m->nnodes) mark(b, m->output, NS_CHFIX_OUTPUT);
    for (int i = 0; i < m->nnodes; i++)
        if (node_occs(b, i) < 0) return -1;
    return 0;
}

// Attention's groups: the internal qk and v spaces take their features from
// the input projection of the queries' input (act_proj) and cannot be pruned
// (heads); the groups the attention reads and writes cannot be pruned
// either (its width D is theirs).
void ns_chgroups_attention_groups(ns_chgroups *g, const bld *b, const int32_t *cls, const int32_t *grp) {
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
