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
    int src;     // node whose output positions this axis follows
    int64_t len; // positions (the virtual axis for a grouped conv input)
} occ;

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

static int add_occ(bld *b, ns_chrole role, int node, int slot, int axis, int src, int conv_groups) {
    const ns_model *m = b->m;
    const ns_node *n = &m->nodes[node];
    int tensor = -1;
    if (role != NS_CH_ACT) {
        tensor = n->params[slot];
        if (tensor < 0) return 0; // an absent bias
    }
    int64_t len = b->off[src + 1] - b->off[src];
    if (tensor >= 0) {
        const ns_tensor *t = &m->tensors[tensor].t;
        int64_t want = conv_groups > 1 && role == NS_CH_IN ? len / conv_groups : len;
        if (axis >= t->ndim || t->shape[axis] != want)
            return ns_errf(b->err, "node %s: %s does not match its input (resolve the model first)",
                           n->name, m->tensors[tensor].name);
    }
    if (reserve((void **)&b->occ, &b->cap_occ, b->nocc + 1, sizeof *b->occ, b->err) < 0) return -1;
    b->occ[b->nocc++] = (occ){role, node, tensor, slot, axis, conv_groups, src, len};
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
        return fresh(b, at, len, 0);
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

static int build(ns_chgroups *g, const ns_model *m, bld *b, ns_err *err) {
    if (m->nnodes < 1 || m->nodes[0].op != NS_OP_INPUT) return ns_errf(err, "the model has no input node");
    b->off = calloc((size_t)m->nnodes + 1, sizeof *b->off);
    if (!b->off) return ns_errf(err, "out of memory");
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
        for (int64_t p = b->off[oc->src]; p < b->off[oc->src + 1]; p++) {
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
        for (int64_t p = b->off[oc->src]; p < b->off[oc->src + 1]; p++) {
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
        for (int64_t p = b->off[oc->src]; p < b->off[oc->src + 1]; p++) {
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
    }
    for (int64_t a = 0; a < na; a++)
        if (find(b, (int32_t)a) == a) g->groups[grp[cls[a]]].fixed |= b->why[a];

    // members: cut each occurrence into runs, merge runs into members
    int64_t cap_runs = 0;
    for (int64_t o = 0; o < b->nocc; o++) {
        const occ *oc = &b->occ[o];
        const int32_t *ps = b->pos + b->off[oc->src];
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
        if (gr->block != gr->size) fprintf(f, " in blocks of %lld", (long long)gr->block);
        if (gr->fixed) fprintf(f, ", fixed (%s)", ns_chgroups_fixed_reason(gr->fixed, why, sizeof why));
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
// would apply that; selections dropping whole blocks would also lower the
// conv's groups attribute. Heads would enter the same way once attention is
// an op: q/k/v rows in blocks of head_dim, tied across q, k, v and the
// projection's input.
