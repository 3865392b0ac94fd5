// csbm.c: the contextual stochastic block model and the Planetoid split
// (csbm.h). Shapes: labels (N), class means (C, D), dense features (N, D),
// sparse features (N, D) in CSR, the adjacency (N, N) in CSR.
//
// Edges are drawn block by block of classes (a <= b) with geometric skips
// over the block's pairs (Batagelj and Brandes, "Efficient generation of
// large random networks", 2005): the gap to the next edge is
// floor(log(1 - u) / log(1 - p)), so a block costs its edges, not its pairs.
#include "graph/csbm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/tensor.h"

// Independent streams of one seed (ns_rng_seed_stream): labels, edges, class
// means, topics, per-node features; the split (graphdata.h) draws from
// NS_PLANETOID_STREAM, which follows them.
enum { STREAM_LABELS = 1, STREAM_EDGES, STREAM_MEANS, STREAM_TOPICS, STREAM_FEATURES };

// --- geometric skips --------------------------------------------------------
// Successive positions in [0, n) of independent Bernoulli(p) successes.
typedef struct skipper {
    double p, log_q; // log(1 - p)
    int64_t pos, n;  // the last position returned (-1 before the first)
} skipper;

static void skipper_init(skipper *s, double p, int64_t n) {
    s->p = p;
    s->log_q = p > 0 && p < 1 ? log1p(-p) : 0;
    s->pos = -1;
    s->n = n;
}

// The next success, or -1 when there are no more.
static int64_t skipper_next(skipper *s, ns_rng *r) {
    if (s->p <= 0 || s->pos + 1 >= s->n) return -1;
    double gap = 0;
    if (s->p < 1) gap = floor(log1p(-ns_rng_uniform(r)) / s->log_q);
    if (gap >= (double)(s->n - s->pos - 1)) {
        s->pos = s->n;
        return -1;
    }
    s->pos += 1 + (int64_t)gap;
    return s->pos;
}

// --- parameters -------------------------------------------------------------
int ns_csbm_probabilities(ns_csbm *m, double avg_degree, double homophily, ns_err *err) {
    if (m->nodes < 2 || m->classes < 1 || m->classes > m->nodes)
        return ns_errf(err, "%lld nodes in %lld classes: need at least 2 nodes and 1 to N classes",
                       (long long)m->nodes, (long long)m->classes);
    if (!(avg_degree >= 0) || !(homophily >= 0 && homophily <= 1))
        return ns_errf(err, "average degree %g and homophily %g: need a degree >= 0 and 0 <= h <= 1",
                       avg_degree, homophily);
    double n = (double)m->nodes, s = n / (double)m->classes;
    if (m->classes == 1 && homophily < 1)
        return ns_errf(err, "homophily %g with one class: every edge is inside the class (use 1)", homophily);
    m->p_in = s > 1 ? homophily * avg_degree / (s - 1) : 0;
    m->p_out = m->classes > 1 ? (1 - homophily) * avg_degree / (n - s) : 0;
    if (s <= 1 && homophily > 0 && avg_degree > 0)
        return ns_errf(err, "homophily %g with one node per class: no pair inside a class", homophily);
    if (m->p_in > 1)
        return ns_errf(err, "average degree %g at homophily %g needs %g in-class neighbours, but a class has %.0f other nodes",
                       avg_degree, homophily, homophily * avg_degree, s - 1);
    if (m->p_out > 1)
        return ns_errf(err, "average degree %g at homophily %g needs %g neighbours in other classes, but there are %.0f",
                       avg_degree, homophily, (1 - homophily) * avg_degree, n - s);
    return 0;
}

static int check_params(const ns_csbm *m, ns_err *err) {
    if (m->nodes < 2 || m->nodes > INT32_MAX)
        return ns_errf(err, "%lld nodes: need 2 to %d", (long long)m->nodes, INT32_MAX);
    if (m->classes < 1 || m->classes > m->nodes || m->classes > NS_GRAPH_MAX_CLASSES)
        return ns_errf(err, "%lld classes for %lld nodes: need 1 to N", (long long)m->classes, (long long)m->nodes);
    if (m->features < 0 || m->features > INT32_MAX)
        return ns_errf(err, "%lld features: need 0 to %d", (long long)m->features, INT32_MAX);
    if (!(m->p_in >= 0 && m->p_in <= 1) || !(m->p_out >= 0 && m->p_out <= 1))
        return ns_errf(err, "edge probabilities p_in %g, p_out %g: need 0 to 1", m->p_in, m->p_out);
    if (m->features && m->kind == NS_CSBM_GAUSSIAN && !(m->separation >= 0 && isfinite(m->separation)))
        return ns_errf(err, "separation %g: need a finite number >= 0", m->separation);
    if (m->features && m->kind == NS_CSBM_BERNOULLI) {
        if (m->features < m->classes)
            return ns_errf(err, "%lld words for %lld classes: each class needs a topic word", (long long)m->features,
                           (long long)m->classes);
        if (!(m->separation >= 0 && m->separation <= 1))
            return ns_errf(err, "topic share %g: need 0 to 1", m->separation);
        double topic = (double)(m->features / m->classes); // the smallest topic
        if (!(m->words >= 0) || m->separation * m->words > topic || (1 - m->separation) * m->words > (double)m->features)
            return ns_errf(err, "%g words per node with topic share %g: more than a topic of %.0f words (or D) holds",
                           m->words, m->separation, topic);
    }
    return 0;
}

// --- labels -----------------------------------------------------------------
// Balanced classes in a seeded random order; members (N) lists the nodes of
// class 0, then class 1, ..., each in increasing order, from first[c].
static int draw_labels(ns_graph *g, const ns_csbm *m, int64_t **members, int64_t **first, ns_err *err) {
    int64_t n = m->nodes, c = m->classes;
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    *members = malloc((size_t)n * sizeof **members);
    *first = calloc((size_t)c + 1, sizeof **first);
    g->labels = malloc((size_t)n * sizeof *g->labels);
    if (!perm || !*members || !*first || !g->labels) {
        free(perm);
        return ns_errf(err, "out of memory (%lld nodes)", (long long)n);
    }
    ns_rng r;
    ns_rng_seed_stream(&r, m->seed, STREAM_LABELS, 0);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    ns_rng_shuffle(&r, perm, n);
    for (int64_t k = 0; k < n; k++) g->labels[perm[k]] = (int32_t)(k % c);
    free(perm);
    for (int64_t i = 0; i < n; i++) (*first)[g->labels[i] + 1]++;
    for (int64_t k = 0; k < c; k++) (*first)[k + 1] += (*first)[k];
    int64_t *next = malloc((size_t)c * sizeof *next);
    if (!next) return ns_errf(err, "out of memory (%lld classes)", (long long)c);
    memcpy(next, *first, (size_t)c * sizeof *next);
    for (int64_t i = 0; i < n; i++) (*members)[next[g->labels[i]]++] = i;
    free(next);
    g->classes = c;
    return 0;
}

// --- edges ------------------------------------------------------------------
typedef struct pairs {
    int32_t *u, *v; // both directions of every edge
    int64_t n, cap;
} pairs;

static int pairs_add(pairs *p, int64_t a, int64_t b, ns_err *err) {
    if (p->n + 2 > p->cap) {
        int64_t cap = p->cap ? 2 * p->cap : 1 << 16;
        int32_t *u = realloc(p->u, (size_t)cap * sizeof *u);
        if (u) p->u = u;
        int32_t *v = realloc(p->v, (size_t)cap * sizeof *v);
        if (v) p->v = v;
        if (!u || !v) return ns_errf(err, "out of memory (%lld edges)", (long long)cap / 2);
        p->cap = cap;
    }
    p->u[p->n] = (int32_t)a, p->v[p->n++] = (int32_t)b;
    p->u[p->n] = (int32_t)b, p->v[p->n++] = (int32_t)a;
    return 0;
}

// The pairs {v, w}, w < v < s, of one class, walked in order v = 1.., w = 0..v-1.
static int within_class(pairs *p, const int64_t *nodes, int64_t s, double prob, ns_rng *r, ns_err *err) {
    skipper k;
    skipper_init(&k, prob, s * (s - 1) / 2);
    int64_t v = 1, w = 0, at = 0; // (v, w) is pair number `at`
    for (int64_t t; (t = skipper_next(&k, r)) >= 0;) {
        w += t - at;
        at = t;
        while (w >= v) w -= v, v++;
        if (pairs_add(p, nodes[v], nodes[w], err) < 0) return -1;
    }
    return 0;
}

// The pairs of two classes: number t is (a[t / sb], b[t % sb]).
static int between_classes(pairs *p, const int64_t *a, int64_t sa, const int64_t *b, int64_t sb, double prob,
                           ns_rng *r, ns_err *err) {
    skipper k;
    skipper_init(&k, prob, sa * sb);
    for (int64_t t; (t = skipper_next(&k, r)) >= 0;)
        if (pairs_add(p, a[t / sb], b[t % sb], err) < 0) return -1;
    return 0;
}

static int draw_edges(ns_graph *g, const ns_csbm *m, const int64_t *members, const int64_t *first, ns_err *err) {
    pairs p = {0};
    ns_rng r;
    ns_rng_seed_stream(&r, m->seed, STREAM_EDGES, 0);
    int rc = 0;
    for (int64_t a = 0; a < m->classes && rc == 0; a++) {
        const int64_t *na = members + first[a];
        int64_t sa = first[a + 1] - first[a];
        rc = within_class(&p, na, sa, m->p_in, &r, err);
        for (int64_t b = a + 1; b < m->classes && rc == 0; b++)
            rc = between_classes(&p, na, sa, members + first[b], first[b + 1] - first[b], m->p_out, &r, err);
    }
    if (rc == 0)
        rc = ns_csr_from_coo(&g->adj, m->nodes, m->nodes, p.n, p.u, p.v, NULL, NS_DUP_REFUSE, NULL, err);
    free(p.u);
    free(p.v);
    g->undirected = 1;
    return rc;
}

// --- features ---------------------------------------------------------------
static int gaussian_features(ns_graph *g, const ns_csbm *m, ns_err *err) {
    int64_t n = m->nodes, d = m->features, c = m->classes;
    float *mu = malloc((size_t)(c * d) * sizeof *mu); // (C, D)
    g->features = ns_aligned_alloc((size_t)(n * d) * sizeof *g->features);
    if (!mu || !g->features) {
        free(mu);
        return ns_errf(err, "out of memory (%lld x %lld features)", (long long)n, (long long)d);
    }
    ns_rng r;
    ns_rng_seed_stream(&r, m->seed, STREAM_MEANS, 0);
    double scale = m->separation / sqrt(2.0 * (double)d);
    for (int64_t k = 0; k < c * d; k++) mu[k] = (float)(scale * ns_rng_normal(&r));
    #pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) {
        ns_rng ri;
        ns_rng_seed_stream(&ri, m->seed, STREAM_FEATURES, (uint64_t)i);
        const float *mean = mu + g->labels[i] * d;
        float *x = g->features + i * d;
        for (int64_t f = 0; f < d; f++) x[f] = mean[f] + (float)ns_rng_normal(&ri);
    }
    free(mu);
    g->feature_dim = d;
    return 0;
}

// One node's words: the union of its topic draws and its background draws,
// sorted. Writes them to out when not NULL; returns how many.
static int64_t node_words(const ns_csbm *m, int64_t node, const int32_t *topic, int64_t topic_len,
                          double p_topic, double p_any, int32_t *out) {
    ns_rng r;
    ns_rng_seed_stream(&r, m->seed, STREAM_FEATURES, (uint64_t)node);
    skipper a, b;
    skipper_init(&a, p_topic, topic_len);
    skipper_init(&b, p_any, m->features);
    int64_t ta = skipper_next(&a, &r), tb = skipper_next(&b, &r), count = 0;
    while (ta >= 0 || tb >= 0) {
        int64_t wa = ta >= 0 ? topic[ta] : INT64_MAX, wb = tb >= 0 ? tb : INT64_MAX;
        int64_t w = wa < wb ? wa : wb;
        if (out) out[count] = (int32_t)w;
        count++;
        if (wa == w) ta = skipper_next(&a, &r);
        if (wb == w) tb = skipper_next(&b, &r);
    }
    return count;
}

static int bernoulli_features(ns_graph *g, const ns_csbm *m, ns_err *err) {
    int64_t n = m->nodes, d = m->features, c = m->classes;
    // Topics: word perm[k] belongs to class k mod C; each topic sorted.
    int64_t *perm = malloc((size_t)d * sizeof *perm), *tfirst = calloc((size_t)c + 1, sizeof *tfirst);
    int32_t *topics = malloc((size_t)d * sizeof *topics);
    int64_t *count = malloc((size_t)n * sizeof *count);
    int rc = 0;
    if (!perm || !tfirst || !topics || !count) {
        rc = ns_errf(err, "out of memory (%lld words)", (long long)d);
        goto done;
    }
    ns_rng r;
    ns_rng_seed_stream(&r, m->seed, STREAM_TOPICS, 0);
    for (int64_t k = 0; k < d; k++) perm[k] = k;
    ns_rng_shuffle(&r, perm, d);
    for (int64_t k = 0; k < d; k++) tfirst[k % c + 1]++;
    for (int64_t k = 0; k < c; k++) tfirst[k + 1] += tfirst[k];
    {
        // Words in increasing order land in their topic in increasing order.
        int64_t *owner = malloc((size_t)d * sizeof *owner), *next = malloc((size_t)c * sizeof *next);
        if (!owner || !next) {
            free(owner), free(next);
            rc = ns_errf(err, "out of memory (%lld words)", (long long)d);
            goto done;
        }
        for (int64_t k = 0; k < d; k++) owner[perm[k]] = k % c;
        memcpy(next, tfirst, (size_t)c * sizeof *next);
        for (int64_t w = 0; w < d; w++) topics[next[owner[w]]++] = (int32_t)w;
        free(owner), free(next);
    }
    double p_any = (1 - m->separation) * m->words / (double)d;
    // Two passes over the same per-node streams: count, then fill.
    #pragma omp parallel for schedule(static) if (n > 4096)
    for (int64_t i = 0; i < n; i++) {
        int64_t y = g->labels[i], len = tfirst[y + 1] - tfirst[y];
        count[i] = node_words(m, i, topics + tfirst[y], len, m->separation * m->words / (double)len, p_any, NULL);
    }
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; i++) nnz += count[i];
    if ((rc = ns_csr_alloc(&g->sfeatures, n, d, nnz, err)) < 0) goto done;
    for (int64_t i = 0; i < n; i++) g->sfeatures.indptr[i + 1] = g->sfeatures.indptr[i] + count[i];
    #pragma omp parallel for schedule(static) if (n > 4096)
    for (int64_t i = 0; i < n; i++) {
        int64_t y = g->labels[i], len = tfirst[y + 1] - tfirst[y];
        node_words(m, i, topics + tfirst[y], len, m->separation * m->words / (double)len, p_any,
                   g->sfeatures.indices + g->sfeatures.indptr[i]);
    }
    for (int64_t k = 0; k < nnz; k++) g->sfeatures.values[k] = 1.0f;
    g->sparse_features = 1;
    g->feature_dim = d;
done:
    free(perm), free(tfirst), free(topics), free(count);
    return rc;
}

int ns_csbm_generate(ns_graph *g, const ns_csbm *m, ns_err *err) {
    memset(g, 0, sizeof *g);
    if (check_params(m, err) < 0) return -1;
    g->nodes = m->nodes;
    int64_t *members = NULL, *first = NULL;
    int rc = draw_labels(g, m, &members, &first, err);
    if (rc == 0) rc = draw_edges(g, m, members, first, err);
    free(members);
    free(first);
    if (rc == 0 && m->features)
        rc = m->kind == NS_CSBM_GAUSSIAN ? gaussian_features(g, m, err) : bernoulli_features(g, m, err);
    if (rc < 0) ns_graph_free(g);
    return rc;
}

double ns_graph_edge_homophily(const ns_graph *g) {
    if (!g->labels) return -1;
    int64_t same = 0, counted = 0;
    for (int64_t i = 0; i < g->nodes; i++) {
        if (g->labels[i] < 0) continue;
        for (int64_t k = g->adj.indptr[i]; k < g->adj.indptr[i + 1]; k++) {
            int32_t y = g->labels[g->adj.indices[k]];
            if (y < 0) continue;
            counted++;
            same += y == g->labels[i];
        }
    }
    return counted ? (double)same / (double)counted : -1;
}
