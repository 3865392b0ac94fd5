// merge_weights.c: the weight side of a merge (merge.h): the state of every
// group's assignment, the channels' weight vectors and their Pearson
// correlation C_w, and the merged tensors.
//
// A model tensor's transform T_i is a scatter along each axis: position q of
// model i's axis goes to position dst[q] of the merged axis with factor w[q]
// (every source position has exactly one destination). Output-side members
// (OUT, CHAN) use M (w = N / (count + 1e-5)), input-side members (IN) use U
// (w = 1), fixed groups and axes outside every group the identity; the rows of
// a concatenated head go to the model's own slice of the merged rows.
// Shapes: weight vectors Z (O, L), O = N * Om, C_w (O, O).
#include "merge/merge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


// s->member_off and s->members: the parameter members by tensor, in group
// then member order.
static int index_members(ns_merge_state *s) {
    const ns_chgroups *g = s->g;
    int nt = 0, total = 0;
    for (int p = 0; p < g->ngroups; p++)
        for (int k = 0; k < g->groups[p].nmembers; k++) {
            const ns_chmember *mb = &g->groups[p].members[k];
            if (mb->role == NS_CH_ACT || mb->tensor < 0) continue;
            if (mb->tensor >= nt) nt = mb->tensor + 1;
            total++;
        }
    s->ntensors = nt;
    s->member_off = calloc((size_t)nt + 1, sizeof *s->member_off);
    s->members = malloc((size_t)(total ? total : 1) * sizeof *s->members);
    if (!s->member_off || !s->members) return -1;
    for (int p = 0; p < g->ngroups; p++)
        for (int k = 0; k < g->groups[p].nmembers; k++) {
            const ns_chmember *mb = &g->groups[p].members[k];
            if (mb->role != NS_CH_ACT && mb->tensor >= 0) s->member_off[mb->tensor + 1]++;
        }
    for (int t = 0; t < nt; t++) s->member_off[t + 1] += s->member_off[t];
    int *fill = calloc((size_t)nt + 1, sizeof *fill);
    if (!fill) return -1;
    for (int p = 0; p < g->ngroups; p++)
        for (int k = 0; k < g->groups[p].nmembers; k++) {
            const ns_chmember *mb = &g->groups[p].members[k];
            if (mb->role == NS_CH_ACT || mb->tensor < 0) continue;
            int at = s->member_off[mb->tensor] + fill[mb->tensor]++;
            s->members[at][0] = p;
            s->members[at][1] = k;
        }
    free(fill);
    return 0;
}

int ns_merge_state_init(ns_merge_state *s, const ns_chgroups *g, int n, ns_err *err) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->g = g;
    s->head_node = -1;
    s->dest = calloc(g->ngroups > 0 ? (size_t)g->ngroups : 1, sizeof *s->dest);
    s->count = calloc(g->ngroups > 0 ? (size_t)g->ngroups : 1, sizeof *s->count);
    if (!s->dest || !s->count) goto oom;
    for (int p = 0; p < g->ngroups; p++) {
        if (g->groups[p].fixed) continue;
        int64_t om = g->groups[p].size;
        s->dest[p] = malloc((size_t)(n * om) * sizeof **s->dest);
        s->count[p] = malloc((size_t)om * sizeof **s->count);
        if (!s->dest[p] || !s->count[p]) goto oom;
        ns_merge_state_identity(s, p);
    }
    if (index_members(s) < 0) goto oom;
    return 0;
oom:
    ns_merge_state_free(s);
    return ns_errf(err, "out of memory");
}

void ns_merge_state_free(ns_merge_state *s) {
    if (s->g)
        for (int p = 0; p < s->g->ngroups; p++) {
            if (s->dest) free(s->dest[p]);
            if (s->count) free(s->count[p]);
        }
    free(s->dest);
    free(s->count);
    free(s->member_off);
    free(s->members);
    memset(s, 0, sizeof *s);
}

void ns_merge_state_identity(ns_merge_state *s, int p) {
    if (!s->dest[p]) return;
    int64_t om = s->g->groups[p].size;
    for (int i = 0; i < s->n; i++)
        for (int64_t u = 0; u < om; u++) s->dest[p][i * om + u] = u;
    ns_merge_count(s->dest[p], s->n, om, s->count[p]);
}

// One axis's scatter.
typedef struct axis_map {
    int64_t len_in, len_out;
    int64_t *dst;
    float *w;
    int identity;
} axis_map;

static int is_head_tensor(const ns_merge_state *s, const ns_model *m, int t) {
    if (s->head_node < 0) return 0;
    const ns_node *h = &m->nodes[s->head_node];
    for (int k = 0; k < NS_MAX_PARAMS; k++)
        if (h->params[k] == t) return 1;
    return 0;
}

static int map_alloc(axis_map *mp, int64_t len_in, int64_t len_out) {
    mp->len_in = len_in;
    mp->len_out = len_out;
    mp->identity = 1;
    mp->dst = malloc((size_t)len_in * sizeof *mp->dst);
    mp->w = malloc((size_t)len_in * sizeof *mp->w);
    if (!mp->dst || !mp->w) return -1;
    for (int64_t q = 0; q < len_in; q++) mp->dst[q] = q, mp->w[q] = 1.0f;
    return 0;
}

static void map_free(axis_map *mp) {
    free(mp->dst);
    free(mp->w);
    mp->dst = NULL;
    mp->w = NULL;
}

// The scatter of axis a of tensor t for model i (merged axis length len_out).
static int build_map(const ns_merge_state *s, const ns_model *mi, int i, int t, int a, int64_t len_out,
                     axis_map *mp) {
    const ns_tensor *x = &mi->tensors[t].t;
    if (map_alloc(mp, x->shape[a], len_out) < 0) return -1;
    if (a == 0 && is_head_tensor(s, mi, t)) {
        int64_t off = 0;
        for (int k = 0; k < i; k++) off += s->head_rows[k];
        for (int64_t q = 0; q < mp->len_in; q++) mp->dst[q] = off + q;
        mp->identity = 0;
        return 0;
    }
    const ns_chgroups *g = s->g;
    int first = t < s->ntensors ? s->member_off[t] : 0, end = t < s->ntensors ? s->member_off[t + 1] : 0;
    for (int at = first; at < end; at++) {
        int p = s->members[at][0];
        const ns_chgroup *gr = &g->groups[p];
        const ns_chmember *mb = &gr->members[s->members[at][1]];
        if (gr->fixed || !s->dest[p] || mb->axis != a) continue;
        const int64_t *dest = s->dest[p] + i * gr->size;
        for (int64_t c = 0; c < gr->size; c++) {
            int64_t j = dest[c];
            float w = mb->role == NS_CH_IN ? 1.0f : (float)(s->n / ((double)s->count[p][j] + NS_MERGE_EPS));
            for (int64_t r = 0; r < mb->reps; r++)
                for (int64_t e = 0; e < mb->inner; e++) {
                    int64_t q = ns_chmember_index(mb, c, r, e);
                    mp->dst[q] = ns_chmember_index(mb, j, r, e);
                    mp->w[q] = w;
                }
        }
        mp->identity = 0;
    }
    return 0;
}

// y = scatter of x (shape) along axis a; y has len_out on that axis, zeroed here.
static void scatter_axis(const float *x, int ndim, const int64_t *shape, int a, const axis_map *mp,
                         float *y) {
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < a; d++) outer *= shape[d];
    for (int d = a + 1; d < ndim; d++) inner *= shape[d];
    memset(y, 0, (size_t)(outer * mp->len_out * inner) * sizeof *y);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t q = 0; q < mp->len_in; q++) {
            const float *src = x + (o * mp->len_in + q) * inner;
            float *dst = y + (o * mp->len_out + mp->dst[q]) * inner, w = mp->w[q];
            for (int64_t e = 0; e < inner; e++) dst[e] += w * src[e];
        }
}

// Model i's tensor t with every axis but skip (-1: none) scattered; returns a
// new buffer (free) and its shape in out_shape.
static float *transform(const ns_merge_state *s, const ns_model *mi, int i, int t, int skip,
                        const int64_t *merged_shape, int64_t *out_shape, ns_err *err) {
    const ns_tensor *x = &mi->tensors[t].t;
    int64_t shape[NS_MAX_NDIM], numel = x->numel, cap = x->numel;
    memcpy(shape, x->shape, sizeof shape);
    for (int a = 0; a < x->ndim; a++)
        if (a != skip && merged_shape[a] > x->shape[a]) cap = cap / x->shape[a] * merged_shape[a];
    float *cur = malloc((size_t)(cap ? cap : 1) * sizeof *cur), *tmp = malloc((size_t)(cap ? cap : 1) * sizeof *tmp);
    if (!cur || !tmp) goto oom;
    memcpy(cur, x->data, (size_t)numel * sizeof *cur);
    for (int a = 0; a < x->ndim; a++) {
        if (a == skip) continue;
        axis_map mp;
        if (build_map(s, mi, i, t, a, a == skip ? x->shape[a] : merged_shape[a], &mp) < 0) {
            map_free(&mp);
            goto oom;
        }
        if (!mp.identity) {
            scatter_axis(cur, x->ndim, shape, a, &mp, tmp);
            float *sw = cur;
            cur = tmp;
            tmp = sw;
            shape[a] = mp.len_out;
        }
        map_free(&mp);
    }
    free(tmp);
    memcpy(out_shape, shape, sizeof shape);
    return cur;
oom:
    free(cur);
    free(tmp);
    ns_errf(err, "out of memory transforming %s", mi->tensors[t].name);
    return NULL;
}

// Whether tensor t's other axes than axis are all settled: every group
// indexing them is fixed or settled[q] (settled NULL: every axis is).
static int other_axes_settled(const ns_merge_state *s, int t, int axis, const unsigned char *settled) {
    if (!settled || t >= s->ntensors) return 1;
    for (int at = s->member_off[t]; at < s->member_off[t + 1]; at++) {
        int q = s->members[at][0];
        const ns_chgroup *gq = &s->g->groups[q];
        if (gq->members[s->members[at][1]].axis != axis && !gq->fixed && s->dest[q] && !settled[q]) return 0;
    }
    return 1;
}

// Whether member mb of group p gives a slice of the channels' weight vectors.
static int counts(const ns_merge_state *s, const ns_model *m0, const ns_chmember *mb, const unsigned char *settled) {
    return mb->role != NS_CH_ACT && m0->tensors[mb->tensor].trainable && !is_head_tensor(s, m0, mb->tensor) &&
           other_axes_settled(s, mb->tensor, mb->axis, settled);
}

int64_t ns_merge_weight_len(const ns_model *m0, const ns_merge_state *s, int p, const unsigned char *settled) {
    const ns_chgroup *gr = &s->g->groups[p];
    int64_t L = 0;
    for (int k = 0; k < gr->nmembers; k++) {
        const ns_chmember *mb = &gr->members[k];
        if (!counts(s, m0, mb, settled)) continue;
        const ns_tensor *x = &m0->tensors[mb->tensor].t;
        L += x->numel / x->shape[mb->axis] * mb->reps * mb->inner;
    }
    return L;
}

int ns_merge_weight_corr(ns_model *const *models, const ns_merge_state *s, int p, const unsigned char *settled,
                         float *C, ns_err *err) {
    const ns_chgroup *gr = &s->g->groups[p];
    const ns_model *m0 = models[0];
    int n = s->n;
    int64_t om = gr->size, O = n * om, L = ns_merge_weight_len(m0, s, p, settled);
    if (L == 0) {
        for (int64_t r = 0; r < O; r++)
            for (int64_t c = 0; c < O; c++) C[r * O + c] = r == c;
        return 0;
    }
    float *Z = ns_aligned_alloc((size_t)(O * L) * sizeof *Z);
    if (!Z) return ns_errf(err, "out of memory for %lld weight vectors of %lld", (long long)O, (long long)L);
    int64_t col = 0;
    for (int k = 0; k < gr->nmembers; k++) {
        const ns_chmember *mb = &gr->members[k];
        if (!counts(s, m0, mb, settled)) continue;
        const ns_tensor *x0 = &m0->tensors[mb->tensor].t;
        int64_t len = 0, outer = 1, inner = 1, a = mb->axis;
        for (int i = 0; i < n; i++) {
            int64_t shape[NS_MAX_NDIM];
            float *X = transform(s, models[i], i, mb->tensor, mb->axis, x0->shape, shape, err);
            if (!X) {
                free(Z);
                return -1;
            }
            outer = inner = 1;
            for (int d = 0; d < a; d++) outer *= shape[d];
            for (int d = a + 1; d < x0->ndim; d++) inner *= shape[d];
            len = shape[a];
            for (int64_t c = 0; c < om; c++) {
                float *z = Z + (i * om + c) * L + col;
                for (int64_t o = 0; o < outer; o++)
                    for (int64_t r = 0; r < mb->reps; r++)
                        for (int64_t e = 0; e < mb->inner; e++) {
                            const float *v = X + (o * len + ns_chmember_index(mb, c, r, e)) * inner;
                            memcpy(z, v, (size_t)inner * sizeof *z);
                            z += inner;
                        }
            }
            free(X);
        }
        col += outer * mb->reps * mb->inner * inner;
    }
    // Pearson: centre and scale each row to unit norm, then C = Z Z^T.
    for (int64_t r = 0; r < O; r++) {
        float *z = Z + r * L;
        double sum = 0, sq = 0;
        for (int64_t k = 0; k < L; k++) sum += z[k];
        double mean = sum / (double)L;
        for (int64_t k = 0; k < L; k++) sq += (z[k] - mean) * (z[k] - mean);
        double scale = sq > 0 ? 1.0 / sqrt(sq) : 0.0;
        for (int64_t k = 0; k < L; k++) z[k] = (float)((z[k] - mean) * scale);
    }
    double *G = calloc((size_t)(O * O), sizeof *G);
    int rc = G ? ns_merge_gram(Z, O, L, G, err) : ns_errf(err, "out of memory");
    for (int64_t e = 0; rc == 0 && e < O * O; e++) C[e] = (float)G[e];
    for (int64_t r = 0; r < O; r++) C[r * O + r] = 1.0f;
    free(G);
    free(Z);
    return rc;
}

int ns_merge_weights(ns_model *const *models, const ns_merge_state *s, const double *lambda,
                     ns_model *out, ns_err *err) {
    int n = s->n;
    for (int t = 0; t < out->ntensors; t++) {
        if (!out->tensors[t].used) continue;
        ns_tensor *y = &out->tensors[t].t;
        int head = is_head_tensor(s, out, t);
        float *acc = (float *)y->data;
        memset(acc, 0, (size_t)y->numel * sizeof *acc);
        for (int i = 0; i < n; i++) {
            int64_t shape[NS_MAX_NDIM];
            float *X = transform(s, models[i], i, t, -1, y->shape, shape, err);
            if (!X) return -1;
            int64_t numel = 1;
            for (int d = 0; d < y->ndim; d++) numel *= shape[d];
            if (numel != y->numel) {
                free(X);
                return ns_errf(err, "%s: merged shape mismatch", out->tensors[t].name);
            }
            float scale = head ? 1.0f : (float)(lambda ? lambda[i] : 1.0 / n);
            for (int64_t k = 0; k < numel; k++) acc[k] += scale * X[k];
            free(X);
        }
    }
    return 0;
}
