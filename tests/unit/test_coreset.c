// test_coreset.c: the coreset baselines (lib/graph/coreset.h): herding and
// k-center on rows with a known answer, the same through the graph (class
// membership, hops 0 and the propagation of hops 1 against P X computed
// here), the random coreset's counts per class, determinism and labels, the
// induced subgraph against a brute-force edge check (dense and sparse
// features alike), and every refusal.
// sanitize: yes (runs under ASan/UBSan in `make check-sanitize`)
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/tensor.h"
#include "graph/coreset.h"
#include "graph/sparse.h"

// 8 nodes, 2 classes. Class 0: nodes 0-4, all training, features (v, 1) with
// v = 0, 1, 2, 3, 10 (mean 3.2). Class 1: nodes 5, 6 training, 7 validation.
// Undirected edges 0-1, 1-3, 3-4, 2-5, 5-6, 6-7, 4-7.
static const int32_t edge_a[] = {0, 1, 3, 2, 5, 6, 4}, edge_b[] = {1, 3, 4, 5, 6, 7, 7};
#define N 8
#define E 7

static void toy_graph(ns_graph *g) {
    static const float v[N] = {0, 1, 2, 3, 10, 5, 7, 6};
    int32_t ri[2 * E], ci[2 * E];
    for (int k = 0; k < E; k++) ri[k] = ci[E + k] = edge_a[k], ci[k] = ri[E + k] = edge_b[k];
    memset(g, 0, sizeof *g);
    g->nodes = N, g->classes = 2, g->undirected = 1, g->feature_dim = 2;
    ns_err err;
    if (ns_csr_from_coo(&g->adj, N, N, 2 * E, ri, ci, NULL, NS_DUP_REFUSE, NULL, &err) < 0) exit(1);
    g->features = ns_aligned_alloc(N * 2 * sizeof(float));
    g->labels = malloc(N * sizeof *g->labels);
    for (int s = 0; s < NS_SPLIT_COUNT; s++) g->masks[s] = calloc(N, 1);
    if (!g->features || !g->labels || !g->masks[2]) exit(1);
    for (int i = 0; i < N; i++) {
        g->features[2 * i] = v[i], g->features[2 * i + 1] = 1;
        g->labels[i] = i < 5 ? 0 : 1;
        g->masks[i == 7 ? NS_SPLIT_VAL : NS_SPLIT_TRAIN][i] = 1;
    }
}

static int has_edge(const ns_csr *a, int64_t i, int64_t j) {
    for (int64_t k = a->indptr[i]; k < a->indptr[i + 1]; k++)
        if (a->indices[k] == j) return 1;
    return 0;
}

// The induced graph of kept is right: node i is g's kept[i], features,
// labels, all training, and (i, j) an edge exactly when (kept[i], kept[j]) is.
static int induced_ok(const ns_graph *c, const ns_graph *g, const int64_t *kept, int64_t n) {
    if (c->nodes != n || c->classes != g->classes || !c->masks[NS_SPLIT_TRAIN] || c->masks[NS_SPLIT_VAL]) return 0;
    ns_err err;
    if (ns_graph_validate(c, &err) < 0) return 0;
    float *xc, *xg;
    if (ns_graph_dense_features(c, &xc, &err) < 0 || ns_graph_dense_features(g, &xg, &err) < 0) return 0;
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        ok &= c->labels[i] == g->labels[kept[i]] && c->masks[NS_SPLIT_TRAIN][i] == 1;
        ok &= memcmp(xc + i * g->feature_dim, xg + kept[i] * g->feature_dim, (size_t)g->feature_dim * sizeof(float)) == 0;
        for (int64_t j = 0; j < n; j++) ok &= has_edge(&c->adj, i, j) == has_edge(&g->adj, kept[i], kept[j]);
    }
    free(xc), free(xg);
    return ok;
}

static int same(const int64_t *a, const int64_t *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

static void test_greedy_rows(void) {
    // rows (v, 1), v = 0, 1, 2, 3, 10: mean 3.2
    const float e[] = {0, 1, 1, 1, 2, 1, 3, 1, 10, 1};
    int64_t chosen[5];
    ns_err err;
    // herding: 3 (mean 3), then 2 ((3+2)/2 = 2.5 beats (3+10)/2 = 6.5), then 1 ((5+1)/3 = 2 beats (5+10)/3 = 5)
    CHECK(ns_coreset_herding(e, 5, 2, 3, chosen, &err) == 0 && same(chosen, (int64_t[]){3, 2, 1}, 3),
          "herding picks rows 3, 2, 1 (got %lld %lld %lld)", (long long)chosen[0], (long long)chosen[1],
          (long long)chosen[2]);
    // all five: every row once, the mean then exact
    CHECK(ns_coreset_herding(e, 5, 2, 5, chosen, &err) == 0 && same(chosen, (int64_t[]){3, 2, 1, 4, 0}, 5),
          "herding of all five rows: 3, 2, 1, 4, 0");
    // k-center: nearest the mean (3), farthest from it (10), then farthest from {3, 10} (0, at 3)
    CHECK(ns_coreset_kcenter(e, 5, 2, 3, chosen, &err) == 0 && same(chosen, (int64_t[]){3, 4, 0}, 3),
          "k-center picks rows 3, 4, 0 (got %lld %lld %lld)", (long long)chosen[0], (long long)chosen[1],
          (long long)chosen[2]);
    CHECK(ns_coreset_kcenter(e, 5, 2, 5, chosen, &err) == 0 && same(chosen, (int64_t[]){3, 4, 0, 1, 2}, 5),
          "k-center of all five rows: 3, 4, 0, 1 (tie with 2 at distance 1 goes to the lower), 2");
    CHECK(ns_coreset_herding(e, 5, 2, 6, chosen, &err) < 0 && ns_coreset_kcenter(e, 5, 2, 6, chosen, &err) < 0,
          "more rows wanted than there are: refused (%s)", err.msg);
}

static void test_select_on_graph(void) {
    ns_graph g;
    toy_graph(&g);
    ns_err err;
    int64_t *kept, per_class[2];
    // r 0.6: ceil(3) = 3 of class 0, ceil(1.2) = 2 of class 1
    ns_coreset_config cfg = {NS_CORESET_HERDING, 0.6, 0, 1};
    int64_t n = ns_coreset_select(&g, &cfg, &kept, per_class, &err);
    CHECK(n == 5 && per_class[0] == 3 && per_class[1] == 2 && same(kept, (int64_t[]){1, 2, 3, 5, 6}, 5),
          "herding, hops 0: nodes 1 2 3 of class 0, 5 6 of class 1, ascending");
    ns_graph c;
    CHECK(ns_graph_induced(&c, &g, kept, n, &err) == 0 && induced_ok(&c, &g, kept, n) && c.adj.nnz == 6,
          "its induced graph: edges 1-3, 2-5, 5-6 both ways (%lld stored)", (long long)c.adj.nnz);
    ns_graph_free(&c), free(kept);

    cfg.method = NS_CORESET_KCENTER;
    n = ns_coreset_select(&g, &cfg, &kept, NULL, &err);
    CHECK(n == 5 && same(kept, (int64_t[]){0, 3, 4, 5, 6}, 5), "k-center, hops 0: nodes 0 3 4 and 5 6");
    CHECK(ns_graph_induced(&c, &g, kept, n, &err) == 0 && induced_ok(&c, &g, kept, n) && c.adj.nnz == 4,
          "its induced graph: edges 3-4 and 5-6 both ways");
    ns_graph_free(&c), free(kept);

    // hops 1: the class-0 rows of P X, P = D^-1/2 (A + I) D^-1/2, computed here
    double deg[N];
    for (int i = 0; i < N; i++) deg[i] = 1 + (double)(g.adj.indptr[i + 1] - g.adj.indptr[i]);
    float px[5 * 2];
    for (int i = 0; i < 5; i++)
        for (int f = 0; f < 2; f++) {
            double s = g.features[2 * i + f] / deg[i];
            for (int j = 0; j < N; j++)
                if (has_edge(&g.adj, i, j)) s += g.features[2 * j + f] / sqrt(deg[i] * deg[j]);
            px[2 * i + f] = (float)s;
        }
    for (int m = NS_CORESET_HERDING; m <= NS_CORESET_KCENTER; m++) {
        int64_t want[3];
        if (m == NS_CORESET_HERDING) ns_coreset_herding(px, 5, 2, 3, want, &err);
        else ns_coreset_kcenter(px, 5, 2, 3, want, &err);
        // ascending, as ns_coreset_select returns them
        for (int a = 0; a < 3; a++)
            for (int b = a + 1; b < 3; b++)
                if (want[b] < want[a]) { int64_t t = want[a]; want[a] = want[b], want[b] = t; }
        cfg = (ns_coreset_config){(ns_coreset_method)m, 0.6, 1, 1};
        n = ns_coreset_select(&g, &cfg, &kept, NULL, &err);
        CHECK(n == 5 && same(kept, want, 3), "%s, hops 1: the choice on P X computed here (%lld %lld %lld)",
              ns_coreset_method_names[m], (long long)want[0], (long long)want[1], (long long)want[2]);
        free(kept);
    }
    ns_graph_free(&g);
}

static void test_random(void) {
    ns_graph g;
    toy_graph(&g);
    ns_err err;
    int64_t *a, *b, per_class[2];
    ns_coreset_config cfg = {NS_CORESET_RANDOM, 0.5, 0, 7};
    int64_t n = ns_coreset_select(&g, &cfg, &a, per_class, &err);
    int64_t m = ns_coreset_select(&g, &cfg, &b, NULL, &err);
    CHECK(n == 4 && per_class[0] == 3 && per_class[1] == 1, "r 0.5: ceil(2.5) = 3 of class 0, 1 of class 1");
    CHECK(m == n && same(a, b, n), "the same seed, the same nodes");
    int ok = 1, zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        ok &= g.masks[NS_SPLIT_TRAIN][a[i]] && (i == 0 || a[i] > a[i - 1]);
        zeros += g.labels[a[i]] == 0;
    }
    CHECK(ok && zeros == 3, "training nodes only, ascending, 3 of class 0");
    free(a), free(b);
    // the draws differ across seeds: over 20 seeds, more than one choice
    int64_t first[4] = {0}, differs = 0;
    for (uint64_t s = 1; s <= 20; s++) {
        cfg.seed = s;
        n = ns_coreset_select(&g, &cfg, &a, NULL, &err);
        if (s == 1) memcpy(first, a, sizeof first);
        else differs += !same(first, a, 4);
        free(a);
    }
    CHECK(differs > 0, "other seeds draw other nodes (%lld of 19 differ)", (long long)differs);
    // a tiny ratio still keeps a node of every class; r 1 keeps every training node
    cfg.ratio = 1e-6;
    CHECK(ns_coreset_select(&g, &cfg, &a, per_class, &err) == 2 && per_class[0] == 1 && per_class[1] == 1,
          "r 1e-6: one node per class");
    free(a);
    cfg.ratio = 1;
    n = ns_coreset_select(&g, &cfg, &a, NULL, &err);
    CHECK(n == 7 && same(a, (int64_t[]){0, 1, 2, 3, 4, 5, 6}, 7), "r 1: every training node");

    // sparse features: the induced graph keeps them sparse, the same rows
    ns_graph s = g;
    memset(&s.sfeatures, 0, sizeof s.sfeatures);
    if (ns_csr_from_dense(&s.sfeatures, g.features, N, 2, &err) < 0) exit(1);
    s.features = NULL, s.sparse_features = 1;
    ns_graph c;
    CHECK(ns_graph_induced(&c, &s, a, n, &err) == 0 && c.sparse_features && !c.features && induced_ok(&c, &g, a, n),
          "sparse features stay sparse in the induced graph, the same rows");
    ns_graph_free(&c);
    ns_csr_free(&s.sfeatures);
    free(a);
    ns_graph_free(&g);
}

static void test_refusals(void) {
    ns_graph g;
    toy_graph(&g);
    ns_err err;
    int64_t *kept = (int64_t *)&err; // must come back NULL
    ns_coreset_config cfg = {NS_CORESET_RANDOM, 0, 0, 1};
    CHECK(ns_coreset_select(&g, &cfg, &kept, NULL, &err) < 0 && !kept && strstr(err.msg, "ratio"),
          "ratio 0 refused (%s)", err.msg);
    cfg.ratio = 1.5;
    CHECK(ns_coreset_select(&g, &cfg, &kept, NULL, &err) < 0 && strstr(err.msg, "ratio"), "ratio 1.5 refused (%s)",
          err.msg);
    cfg.ratio = 0.5;
    uint8_t *train = g.masks[NS_SPLIT_TRAIN];
    g.masks[NS_SPLIT_TRAIN] = NULL;
    CHECK(ns_coreset_select(&g, &cfg, &kept, NULL, &err) < 0 && strstr(err.msg, "graph.train"),
          "no training split refused (%s)", err.msg);
    g.masks[NS_SPLIT_TRAIN] = calloc(N, 1);
    CHECK(ns_coreset_select(&g, &cfg, &kept, NULL, &err) < 0 && strstr(err.msg, "no training nodes"),
          "an empty training split refused (%s)", err.msg);
    free(g.masks[NS_SPLIT_TRAIN]);
    g.masks[NS_SPLIT_TRAIN] = train;
    int32_t *labels = g.labels;
    g.labels = NULL;
    CHECK(ns_coreset_select(&g, &cfg, &kept, NULL, &err) < 0 && strstr(err.msg, "graph.labels"),
          "no labels refused (%s)", err.msg);
    g.labels = labels;
    float *x = g.features;
    g.features = NULL, g.feature_dim = 0;
    cfg.method = NS_CORESET_KCENTER;
    CHECK(ns_coreset_select(&g, &cfg, &kept, NULL, &err) < 0 && strstr(err.msg, "features"),
          "k-center without features refused (%s)", err.msg);
    cfg.method = NS_CORESET_RANDOM;
    int64_t n = ns_coreset_select(&g, &cfg, &kept, NULL, &err);
    ns_graph c;
    CHECK(n == 4 && ns_graph_induced(&c, &g, kept, n, &err) == 0 && c.feature_dim == 0 && !c.features,
          "random without features: a graph without features");
    ns_graph_free(&c);
    free(kept);
    g.features = x, g.feature_dim = 2;
    CHECK(ns_graph_induced(&c, &g, (int64_t[]){3, 1}, 2, &err) < 0 && strstr(err.msg, "ascending"),
          "induced: kept nodes out of order refused (%s)", err.msg);
    CHECK(ns_graph_induced(&c, &g, (int64_t[]){3, 8}, 2, &err) < 0, "induced: a node out of range refused");
    ns_graph_free(&g);
}

int main(void) {
    test_greedy_rows();
    test_select_on_graph();
    test_random();
    test_refusals();
    return check_done();
}
