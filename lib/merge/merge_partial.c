// merge_partial.c: ZipIt!'s partial zipping (merge.h): the merged model's
// nodes up to a split node, then for every model its own copy of the nodes
// after it (its own weights), reading the shared features through an
// "unmerge" layer, and the copies' outputs joined by a concat (the union of
// the classes, in model order).
//
// Shapes: an unmerge layer maps a node's channel axis (C of C x H x W: a 1x1
// convolution; D of T x D or of a vector: a linear layer) of L positions to
// itself, W (L, L) with W[p][q] = 1 when merged position q holds model i's
// channel at position p (U_i of the merge, one 1 per row), no bias.
#include "merge/merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Copies node k of src into dst under name (inputs given), with its
// attributes and fresh copies of its tensors (named prefix + name).
static int copy_node(ns_model *dst, const ns_model *src, int k, const char *name, const int *inputs,
                     const char *prefix, ns_err *err) {
    const ns_node *a = &src->nodes[k];
    int id = ns_model_add_node(dst, name, a->op, inputs, a->ninputs, err);
    if (id < 0) return -1;
    memcpy(dst->nodes[id].iattr, a->iattr, sizeof a->iattr);
    memcpy(dst->nodes[id].fattr, a->fattr, sizeof a->fattr);
    for (int p = 0; p < NS_MAX_PARAMS; p++) {
        dst->nodes[id].params[p] = -1;
        if (a->params[p] < 0) continue;
        const ns_named_tensor *t = &src->tensors[a->params[p]];
        char tname[NS_NAME_MAX + 1];
        if ((size_t)snprintf(tname, sizeof tname, "%s%s", prefix, t->name) >= sizeof tname)
            return ns_errf(err, "tensor name too long (%s%s)", prefix, t->name);
        int ti = ns_model_add_tensor(dst, tname, t->t.ndim, t->t.shape, t->trainable, err);
        if (ti < 0) return -1;
        memcpy(dst->tensors[ti].t.data, t->t.data, (size_t)t->t.numel * sizeof(float));
        dst->nodes[id].params[p] = ti;
    }
    return id;
}

// Model i's unmerge layer for node j of the merged model: -1 on error, j
// itself when every channel stays where it is (fixed groups, identities).
static int unmerge_node(ns_model *dst, const ns_model *merged, const ns_merge_state *s, int i, int j, ns_err *err) {
    const ns_chgroups *g = s->g;
    const ns_node *nj = &merged->nodes[j];
    int64_t L = g->node_off[j + 1] - g->node_off[j];
    int64_t *to = malloc((size_t)(L ? L : 1) * sizeof *to);
    if (!to) return ns_errf(err, "out of memory");
    int moved = 0;
    for (int64_t p = 0; p < L; p++) {
        int64_t c;
        int gp = ns_chgroups_find(g, j, p, &c);
        to[p] = p;
        if (gp < 0 || !s->dest[gp]) continue;
        int64_t want = s->dest[gp][i * g->groups[gp].size + c];
        for (int64_t q = 0; q < L; q++) {
            int64_t cq;
            if (ns_chgroups_find(g, j, q, &cq) == gp && cq == want) {
                to[p] = q;
                break;
            }
        }
        moved |= to[p] != p;
    }
    if (!moved) {
        free(to);
        return j;
    }
    if (nj->ndim != 1 && nj->ndim != 2 && nj->ndim != 3) {
        free(to);
        return ns_errf(err, "cannot split after %s: its output has %d dimensions", nj->name, nj->ndim);
    }
    char name[NS_NODE_NAME_MAX + 32];
    if ((size_t)snprintf(name, sizeof name, "m%d.unmerge.%s", i, nj->name) >= NS_NODE_NAME_MAX) {
        free(to);
        return ns_errf(err, "node name too long (m%d.unmerge.%s)", i, nj->name);
    }
    int conv = nj->ndim == 3;
    int id = ns_model_add_node(dst, name, conv ? NS_OP_CONV2D : NS_OP_LINEAR, &j, 1, err);
    if (id < 0) {
        free(to);
        return -1;
    }
    ns_node *u = &dst->nodes[id];
    if (ns_node_set_iattr(u, "out", L, err) < 0 || ns_node_set_iattr(u, "bias", 0, err) < 0 ||
        (conv && (ns_node_set_iattr(u, "kernel", 1, err) < 0 || ns_node_set_iattr(u, "pad", 0, err) < 0))) {
        free(to);
        return -1;
    }
    int64_t shape[4] = {L, L, 1, 1};
    char tname[NS_NAME_MAX + 1];
    snprintf(tname, sizeof tname, "%.*s.weight", NS_NAME_MAX - 8, name);
    int ti = ns_model_add_tensor(dst, tname, conv ? 4 : 2, shape, 1, err);
    if (ti < 0) {
        free(to);
        return -1;
    }
    float *w = dst->tensors[ti].t.data;
    for (int64_t p = 0; p < L; p++) w[p * L + to[p]] = 1.0f;
    dst->nodes[id].params[0] = ti;
    free(to);
    return id;
}

int ns_merge_partial(ns_model *dst, const ns_model *merged, ns_model *const *models, int n,
                     const ns_merge_state *s, int split, ns_err *err) {
    ns_model_init(dst);
    int nn = merged->nnodes, rc = -1;
    if (split < 0 || split >= merged->output) return ns_errf(err, "the split node must come before the output");
    int *map = malloc((size_t)nn * sizeof *map), *um = malloc((size_t)nn * sizeof *um);
    int *outs = malloc((size_t)n * sizeof *outs);
    if (!map || !um || !outs) {
        ns_errf(err, "out of memory");
        goto out;
    }
    for (int k = 0; k <= split; k++) // the shared trunk: the merged weights
        if ((map[k] = copy_node(dst, merged, k, merged->nodes[k].name, merged->nodes[k].inputs, "", err)) < 0)
            goto out;
    for (int i = 0; i < n; i++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "m%d.", i);
        for (int k = 0; k < nn; k++) um[k] = -1;
        for (int k = split + 1; k < nn; k++) {
            const ns_node *a = &models[i]->nodes[k];
            int in[NS_MAX_INPUTS];
            for (int e = 0; e < a->ninputs; e++) {
                int j = a->inputs[e];
                if (j > split) in[e] = map[j];
                else {
                    if (um[j] < 0 && (um[j] = unmerge_node(dst, merged, s, i, j, err)) < 0) goto out;
                    in[e] = um[j];
                }
            }
            char name[NS_NODE_NAME_MAX];
            if ((size_t)snprintf(name, sizeof name, "%s%s", prefix, a->name) >= sizeof name) {
                ns_errf(err, "node name too long (%s%s)", prefix, a->name);
                goto out;
            }
            if ((map[k] = copy_node(dst, models[i], k, name, in, prefix, err)) < 0) goto out;
        }
        outs[i] = map[models[i]->output];
    }
    if (n > NS_MAX_INPUTS) {
        ns_errf(err, "partial zipping joins at most %d models", NS_MAX_INPUTS);
        goto out;
    }
    if (ns_model_add_node(dst, "heads", NS_OP_CONCAT, outs, n, err) < 0) goto out;
    dst->output = dst->nnodes - 1;
    memcpy(dst->arch, merged->arch, sizeof dst->arch);
    dst->nnorm = merged->nnorm;
    memcpy(dst->mean, merged->mean, sizeof dst->mean);
    memcpy(dst->std, merged->std, sizeof dst->std);
    if (ns_model_resolve(dst, 0, err) < 0) goto out;
    // the class names: the concatenated head's (the union, in model order)
    if (merged->labels && merged->nlabels == (size_t)dst->nodes[dst->output].numel) {
        dst->labels = calloc(merged->nlabels, sizeof *dst->labels);
        if (!dst->labels) {
            ns_errf(err, "out of memory");
            goto out;
        }
        dst->nlabels = merged->nlabels;
        for (size_t k = 0; k < merged->nlabels; k++)
            if (!(dst->labels[k] = strdup(merged->labels[k]))) {
                ns_errf(err, "out of memory");
                goto out;
            }
    }
    rc = 0;
out:
    free(map);
    free(um);
    free(outs);
    if (rc < 0) ns_model_free(dst);
    return rc;
}
