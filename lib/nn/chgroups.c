// chgroups.c: the channel-group analysis (chgroups.h), its entry points and
// printing. The rules of each op (steps 1-2 below, and attention's marks in
// step 4) are chgroups_ops.c; applying a group's permutation or selection to
// the tensors is chgroups_apply.c; what they share is chgroups_util.h.
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

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
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


static int build(ns_chgroups *g, const ns_model *m, bld *b, ns_err *err) {
    if (m->nnodes < 1 || m->nodes[0].op != NS_OP_INPUT) return ns_errf(err, "the model has no input node");
    if (ns_chgroups_walk(b) < 0) return -1;

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
    ns_chgroups_attention_groups(g, b, cls, grp);

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
