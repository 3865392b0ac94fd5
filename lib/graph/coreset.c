// coreset.c: the random, herding and k-center coresets and the subgraph the
// kept nodes induce (coreset.h). Shapes: e (m, D) the propagated features of
// one class's training nodes, row r being the class's r-th training node in
// ascending node index; kept (n) ascending node ids.
#include "graph/coreset.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/tensor.h"
#include "graph/simgc.h"
#include "graph/sparse.h"

const char *const ns_coreset_method_names[3] = {"random", "herding", "kcenter"};

// --- the greedy selections on one class -------------------------------------

static double *row_mean(const float *e, int64_t m, int64_t D) {
    double *mu = calloc((size_t)(D ? D : 1), sizeof *mu);
    if (!mu) return NULL;
    for (int64_t r = 0; r < m; r++)
        for (int64_t f = 0; f < D; f++) mu[f] += e[r * D + f];
    for (int64_t f = 0; f < D; f++) mu[f] /= (double)m;
    return mu;
}

int ns_coreset_herding(const float *e, int64_t m, int64_t D, int64_t budget, int64_t *chosen, ns_err *err) {
    if (budget > m) return ns_errf(err, "herding: %lld nodes wanted of %lld", (long long)budget, (long long)m);
    double *mu = row_mean(e, m, D), *sum = calloc((size_t)(D ? D : 1), sizeof *sum);
    uint8_t *taken = calloc((size_t)(m ? m : 1), 1);
    if (!mu || !sum || !taken) {
        free(mu), free(sum), free(taken);
        return ns_errf(err, "out of memory (herding over %lld nodes)", (long long)m);
    }
    for (int64_t k = 0; k < budget; k++) {
        // the mean of the chosen rows with row r added: (sum + e_r) / (k + 1)
        int64_t best = -1;
        double best_dist = DBL_MAX;
        for (int64_t r = 0; r < m; r++) {
            if (taken[r]) continue;
            double dist = 0;
            for (int64_t f = 0; f < D; f++) {
                double d = mu[f] - (sum[f] + e[r * D + f]) / (double)(k + 1);
                dist += d * d;
            }
            if (best < 0 || dist < best_dist) best = r, best_dist = dist;
        }
        taken[best] = 1;
        chosen[k] = best;
        for (int64_t f = 0; f < D; f++) sum[f] += e[best * D + f];
    }
    free(mu), free(sum), free(taken);
    return 0;
}

static double squared_distance(const float *a, const double *b, int64_t D) {
    double s = 0;
    for (int64_t f = 0; f < D; f++) {
        double d = (double)a[f] - b[f];
        s += d * d;
    }
    return s;
}

int ns_coreset_kcenter(const float *e, int64_t m, int64_t D, int64_t budget, int64_t *chosen, ns_err *err) {
    if (budget > m) return ns_errf(err, "k-center: %lld nodes wanted of %lld", (long long)budget, (long long)m);
    if (budget == 0) return 0;
    double *mu = row_mean(e, m, D), *centre = malloc((size_t)(D ? D : 1) * sizeof *centre);
    double *nearest = malloc((size_t)(m ? m : 1) * sizeof *nearest); // squared distance to the chosen set
    if (!mu || !centre || !nearest) {
        free(mu), free(centre), free(nearest);
        return ns_errf(err, "out of memory (k-center over %lld nodes)", (long long)m);
    }
    int64_t first = 0;
    double first_dist = DBL_MAX;
    for (int64_t r = 0; r < m; r++) {
        double d = squared_distance(e + r * D, mu, D);
        if (d < first_dist) first = r, first_dist = d;
    }
    for (int64_t r = 0; r < m; r++) nearest[r] = DBL_MAX;
    for (int64_t k = 0, pick = first; k < budget; k++) {
        chosen[k] = pick;
        for (int64_t f = 0; f < D; f++) centre[f] = e[pick * D + f];
        nearest[pick] = -1; // chosen: never farthest again
        double far = -1;
        int64_t next = pick;
        for (int64_t r = 0; r < m; r++) {
            if (nearest[r] < 0) continue;
            double d = squared_distance(e + r * D, centre, D);
            if (d < nearest[r]) nearest[r] = d;
            if (nearest[r] > far) far = nearest[r], next = r;
        }
        pick = next;
    }
    free(mu), free(centre), free(nearest);
    return 0;
}

// --- selection over the graph -----------------------------------------------

// e = P^K X (N, D), dense and 64-byte aligned.
static int propagated_features(const ns_graph *g, int hops, float **e, ns_err *err) {
    if (ns_graph_dense_features(g, e, err) < 0) return -1;
    if (hops == 0) return 0;
    int64_t N = g->nodes, D = g->feature_dim;
    ns_csr p = {0};
    float *tmp = ns_aligned_alloc((size_t)(N * D) * sizeof *tmp);
    if (!tmp || ns_csr_gcn_norm(&p, &g->adj, err) < 0) {
        if (!tmp) ns_errf(err, "out of memory (propagated features %lld x %lld)", (long long)N, (long long)D);
        free(tmp), free(*e), *e = NULL;
        return -1;
    }
    for (int k = 0; k < hops; k++) {
        ns_spmm_forward(tmp, &p, *e, D);
        float *s = *e;
        *e = tmp, tmp = s;
    }
    ns_csr_free(&p);
    free(tmp);
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int64_t ns_coreset_select(const ns_graph *g, const ns_coreset_config *cfg, int64_t **kept, int64_t *per_class,
                          ns_err *err) {
    *kept = NULL;
    if (!(cfg->ratio > 0 && cfg->ratio <= 1))
        return ns_errf(err, "ratio %g: must be in (0, 1]", cfg->ratio);
    if ((int)cfg->method < 0 || cfg->method > NS_CORESET_KCENTER)
        return ns_errf(err, "unknown coreset method %d", (int)cfg->method);
    if (cfg->hops < 0 || cfg->hops > 8) return ns_errf(err, "hops %d: must be 0 to 8", cfg->hops);
    if (!g->labels || g->classes < 1) return ns_errf(err, "no labels (graph.labels): a coreset keeps labelled nodes");
    const uint8_t *train = g->masks[NS_SPLIT_TRAIN];
    if (!train) return ns_errf(err, "no training split (graph.train): a coreset keeps training nodes");
    int greedy = cfg->method != NS_CORESET_RANDOM;
    if (greedy && g->feature_dim < 1)
        return ns_errf(err, "%s needs node features (the graph has none)", ns_coreset_method_names[cfg->method]);

    int64_t N = g->nodes, C = g->classes, D = g->feature_dim;
    int64_t *members = malloc((size_t)N * sizeof *members); // training nodes by class, ascending within
    int64_t *start = calloc((size_t)C + 1, sizeof *start), *count = calloc((size_t)C, sizeof *count);
    int64_t *order = calloc((size_t)C, sizeof *order), *train_count = calloc((size_t)C, sizeof *train_count);
    int64_t *cursor = calloc((size_t)C, sizeof *cursor);
    int64_t *out = NULL, *chosen = NULL;
    float *e = NULL, *rows = NULL;
    int64_t n = -1;
    if (!members || !start || !count || !order || !train_count || !cursor) {
        ns_errf(err, "out of memory (%lld nodes)", (long long)N);
        goto done;
    }
    for (int64_t i = 0; i < N; i++)
        if (train[i]) train_count[g->labels[i]]++;
    for (int64_t c = 0; c < C; c++) start[c + 1] = start[c] + train_count[c];
    if (start[C] == 0) {
        ns_errf(err, "no training nodes (graph.train is empty)");
        goto done;
    }
    for (int64_t c = 0; c < C; c++) cursor[c] = start[c];
    for (int64_t i = 0; i < N; i++)
        if (train[i]) members[cursor[g->labels[i]]++] = i;
    int64_t total = ns_simgc_class_sizes(train_count, C, cfg->ratio, count, order);
    int64_t largest = 0;
    for (int64_t c = 0; c < C; c++) largest = train_count[c] > largest ? train_count[c] : largest;
    out = malloc((size_t)total * sizeof *out);
    chosen = malloc((size_t)largest * sizeof *chosen);
    if (!out || !chosen) {
        ns_errf(err, "out of memory (%lld nodes)", (long long)total);
        goto done;
    }
    if (greedy) {
        if (propagated_features(g, cfg->hops, &e, err) < 0) goto done;
        if (!(rows = malloc((size_t)(largest * D) * sizeof *rows))) {
            ns_errf(err, "out of memory (%lld x %lld features)", (long long)largest, (long long)D);
            goto done;
        }
    }
    int64_t filled = 0;
    for (int64_t c = 0; c < C; c++) {
        const int64_t *m = members + start[c];
        int64_t mc = train_count[c], want = count[c];
        if (cfg->method == NS_CORESET_RANDOM) {
            ns_rng rng;
            ns_rng_seed_stream(&rng, cfg->seed, NS_CORESET_STREAM, (uint64_t)c);
            memcpy(chosen, m, (size_t)mc * sizeof *chosen);
            ns_rng_shuffle(&rng, chosen, mc);
            memcpy(out + filled, chosen, (size_t)want * sizeof *out);
        } else {
            for (int64_t r = 0; r < mc; r++) memcpy(rows + r * D, e + m[r] * D, (size_t)D * sizeof *rows);
            int rc = cfg->method == NS_CORESET_HERDING ? ns_coreset_herding(rows, mc, D, want, chosen, err)
                                                       : ns_coreset_kcenter(rows, mc, D, want, chosen, err);
            if (rc < 0) goto done;
            for (int64_t k = 0; k < want; k++) out[filled + k] = m[chosen[k]];
        }
        filled += want;
        if (per_class) per_class[c] = want;
    }
    qsort(out, (size_t)total, sizeof *out, cmp_i64);
    *kept = out, out = NULL;
    n = total;
done:
    free(members), free(start), free(count), free(order), free(train_count), free(cursor);
    free(out), free(chosen), free(e), free(rows);
    return n;
}

// --- the induced subgraph ---------------------------------------------------

// The rows kept of a (N, cols) CSR, and (pos non-NULL) only the columns kept,
// renumbered by pos (-1: dropped): kept ascending keeps the result canonical.
static int csr_rows(ns_csr *out, const ns_csr *a, const int64_t *kept, int64_t n, const int64_t *pos,
                    int64_t cols, ns_err *err) {
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = a->indptr[kept[i]]; k < a->indptr[kept[i] + 1]; k++) nnz += !pos || pos[a->indices[k]] >= 0;
    if (ns_csr_alloc(out, n, cols, nnz, err) < 0) return -1;
    int64_t z = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = a->indptr[kept[i]]; k < a->indptr[kept[i] + 1]; k++) {
            int64_t j = pos ? pos[a->indices[k]] : a->indices[k];
            if (j < 0) continue;
            out->indices[z] = (int32_t)j;
            out->values[z++] = a->values[k];
        }
        out->indptr[i + 1] = z;
    }
    return 0;
}

int ns_graph_induced(ns_graph *out, const ns_graph *g, const int64_t *kept, int64_t n, ns_err *err) {
    memset(out, 0, sizeof *out);
    if (n < 1) return ns_errf(err, "an induced subgraph needs at least one node");
    for (int64_t i = 0; i < n; i++)
        if (kept[i] < 0 || kept[i] >= g->nodes || (i > 0 && kept[i] <= kept[i - 1]))
            return ns_errf(err, "kept[%lld]: node %lld (kept nodes must be ascending, in 0..%lld)", (long long)i,
                           (long long)kept[i], (long long)g->nodes - 1);
    int64_t *pos = malloc((size_t)g->nodes * sizeof *pos);
    if (!pos) return ns_errf(err, "out of memory (%lld nodes)", (long long)g->nodes);
    for (int64_t i = 0; i < g->nodes; i++) pos[i] = -1;
    for (int64_t i = 0; i < n; i++) pos[kept[i]] = i;
    out->nodes = n, out->classes = g->classes, out->undirected = g->undirected, out->weighted = g->weighted;
    out->feature_dim = g->feature_dim, out->sparse_features = g->sparse_features;
    int rc = csr_rows(&out->adj, &g->adj, kept, n, pos, n, err);
    free(pos);
    if (rc < 0) goto fail;
    if (g->sparse_features) {
        if (csr_rows(&out->sfeatures, &g->sfeatures, kept, n, NULL, g->feature_dim, err) < 0) goto fail;
    } else if (g->features) {
        size_t row = (size_t)g->feature_dim * sizeof(float);
        if (!(out->features = ns_aligned_alloc((size_t)n * row))) goto oom;
        for (int64_t i = 0; i < n; i++) memcpy((char *)out->features + (size_t)i * row, g->features + kept[i] * g->feature_dim, row);
    }
    if (g->labels) {
        if (!(out->labels = malloc((size_t)n * sizeof *out->labels))) goto oom;
        for (int64_t i = 0; i < n; i++) out->labels[i] = g->labels[kept[i]];
        if (!(out->masks[NS_SPLIT_TRAIN] = malloc((size_t)n))) goto oom;
        for (int64_t i = 0; i < n; i++) out->masks[NS_SPLIT_TRAIN][i] = out->labels[i] >= 0;
    }
    if (ns_graph_copy_class_names(out, g, err) < 0) goto fail;
    return 0;
oom:
    ns_errf(err, "out of memory (a subgraph of %lld nodes)", (long long)n);
fail:
    ns_graph_free(out);
    return -1;
}
