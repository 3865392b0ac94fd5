// test_csbm.c: the contextual stochastic block model (lib/graph/csbm.h) against
// what it promises: the mean degree and homophily asked for (within a few
// standard deviations of the binomial edge counts), balanced class sizes,
// an undirected canonical adjacency without loops, features with the class
// means, noise and word counts asked for, Planetoid split sizes, and the
// same graph from the same seed.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "graph/csbm.h"

static ns_csbm model(int64_t n, int64_t c, int64_t d, ns_csbm_features kind, uint64_t seed) {
    ns_csbm m = {.nodes = n, .classes = c, .features = d, .kind = kind, .separation = 3, .words = 18, .seed = seed};
    return m;
}

// Edges inside a class and between classes, and the number of self loops.
static void count_edges(const ns_graph *g, int64_t *inside, int64_t *between, int64_t *loops) {
    *inside = *between = *loops = 0;
    for (int64_t i = 0; i < g->nodes; i++)
        for (int64_t e = g->adj.indptr[i]; e < g->adj.indptr[i + 1]; e++) {
            int64_t j = g->adj.indices[e];
            if (j == i) ++*loops;
            else if (g->labels[j] == g->labels[i]) ++*inside;
            else ++*between;
        }
    *inside /= 2, *between /= 2;
}

static void degree_and_homophily(void) {
    ns_csbm m = model(20000, 5, 0, NS_CSBM_GAUSSIAN, 1);
    ns_err err = {{0}};
    int rc = ns_csbm_probabilities(&m, 10, 0.8, &err);
    ns_graph g;
    rc |= ns_csbm_generate(&g, &m, &err);
    CHECK(rc == 0, "20000 nodes, 5 classes, degree 10, homophily 0.8: generated (%s)", rc ? err.msg : "ok");
    if (rc) return;
    CHECK(ns_graph_validate(&g, &err) == 0 && g.undirected, "valid undirected graph (%s)", err.msg);
    int64_t inside, between, loops;
    count_edges(&g, &inside, &between, &loops);
    // Expected edges: N d / 2 = 100000, 80% inside; binomial sd about 300.
    double degree = (double)g.adj.nnz / (double)g.nodes, h = ns_graph_edge_homophily(&g);
    CHECK(fabs(degree - 10) < 0.1, "mean degree %.3f within 1%% of 10", degree);
    CHECK(fabs(h - 0.8) < 0.005, "edge homophily %.4f within 0.005 of 0.8", h);
    CHECK(fabs((double)inside - 80000) < 5 * sqrt(80000.0) && fabs((double)between - 20000) < 5 * sqrt(20000.0),
          "edges inside classes %lld (80000 expected), between %lld (20000)", (long long)inside, (long long)between);
    CHECK(loops == 0, "no self loops (%lld)", (long long)loops);
    int64_t size[5] = {0};
    for (int64_t i = 0; i < g.nodes; i++) size[g.labels[i]]++;
    CHECK(size[0] == 4000 && size[1] == 4000 && size[2] == 4000 && size[3] == 4000 && size[4] == 4000,
          "classes of 4000 each (%lld %lld %lld %lld %lld)", (long long)size[0], (long long)size[1], (long long)size[2],
          (long long)size[3], (long long)size[4]);
    ns_graph_free(&g);
}

static void explicit_probabilities(void) {
    // Two classes of 1000 (and one more node): p_in 0.01, p_out 0.002.
    ns_csbm m = model(2001, 2, 0, NS_CSBM_GAUSSIAN, 7);
    m.p_in = 0.01, m.p_out = 0.002;
    ns_err err = {{0}};
    ns_graph g;
    int rc = ns_csbm_generate(&g, &m, &err);
    CHECK(rc == 0, "p_in/p_out given: generated");
    if (rc) return;
    int64_t inside, between, loops;
    count_edges(&g, &inside, &between, &loops);
    double want_in = (1001.0 * 1000 / 2 + 1000.0 * 999 / 2) * 0.01, want_out = 1001.0 * 1000 * 0.002;
    CHECK(fabs((double)inside - want_in) < 5 * sqrt(want_in), "edges inside %lld, expected %.0f", (long long)inside, want_in);
    CHECK(fabs((double)between - want_out) < 5 * sqrt(want_out), "edges between %lld, expected %.0f", (long long)between,
          want_out);
    int64_t c0 = 0;
    for (int64_t i = 0; i < g.nodes; i++) c0 += g.labels[i] == 0;
    CHECK(c0 == 1001, "2001 nodes in 2 classes: the first has 1001 (%lld)", (long long)c0);
    ns_graph_free(&g);
    // A complete graph: p_in = p_out = 1.
    m = model(30, 3, 0, NS_CSBM_GAUSSIAN, 7);
    m.p_in = m.p_out = 1;
    rc = ns_csbm_generate(&g, &m, &err);
    CHECK(rc == 0 && g.adj.nnz == 30 * 29, "p = 1: the complete graph (%lld entries)", (long long)g.adj.nnz);
    ns_graph_free(&g);
}

static int same_graph(const ns_graph *a, const ns_graph *b) {
    if (a->adj.nnz != b->adj.nnz || a->feature_dim != b->feature_dim) return 0;
    if (memcmp(a->adj.indptr, b->adj.indptr, (size_t)(a->nodes + 1) * sizeof *a->adj.indptr) ||
        memcmp(a->adj.indices, b->adj.indices, (size_t)a->adj.nnz * sizeof *a->adj.indices) ||
        memcmp(a->labels, b->labels, (size_t)a->nodes * sizeof *a->labels))
        return 0;
    if (a->sparse_features)
        return a->sfeatures.nnz == b->sfeatures.nnz &&
               !memcmp(a->sfeatures.indices, b->sfeatures.indices, (size_t)a->sfeatures.nnz * sizeof(int32_t));
    return !memcmp(a->features, b->features, (size_t)(a->nodes * a->feature_dim) * sizeof(float));
}

static void determinism(void) {
    ns_err err = {{0}};
    for (int kind = 0; kind < 2; kind++) {
        ns_csbm m = model(3000, 4, 40, (ns_csbm_features)kind, 5);
        if (kind == NS_CSBM_BERNOULLI) m.separation = 0.5, m.words = 6;
        ns_csbm_probabilities(&m, 6, 0.7, &err);
        ns_graph a, b, c;
        ns_csbm_generate(&a, &m, &err);
        ns_csbm_generate(&b, &m, &err);
        m.seed = 6;
        ns_csbm_generate(&c, &m, &err);
        const char *what = kind ? "bernoulli" : "gaussian";
        CHECK(same_graph(&a, &b), "%s: the same seed gives the same graph", what);
        CHECK(!same_graph(&a, &c), "%s: another seed gives another graph", what);
        ns_graph_free(&a), ns_graph_free(&b), ns_graph_free(&c);
    }
}

static void gaussian_features(void) {
    // 4 classes of 2500, D 64, separation 3: class means about 3 apart, noise sd 1.
    ns_csbm m = model(10000, 4, 64, NS_CSBM_GAUSSIAN, 3);
    ns_err err = {{0}};
    ns_csbm_probabilities(&m, 2, 0.8, &err);
    ns_graph g;
    if (ns_csbm_generate(&g, &m, &err) < 0) {
        CHECK(0, "gaussian: %s", err.msg);
        return;
    }
    int64_t d = 64;
    double mean[4][64] = {{0}}, var = 0;
    for (int64_t i = 0; i < g.nodes; i++)
        for (int64_t f = 0; f < d; f++) mean[g.labels[i]][f] += g.features[i * d + f] / 2500.0;
    for (int64_t i = 0; i < g.nodes; i++)
        for (int64_t f = 0; f < d; f++) {
            double r = g.features[i * d + f] - mean[g.labels[i]][f];
            var += r * r / (double)(g.nodes * d);
        }
    double dist_sum = 0;
    for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++) {
            double s = 0;
            for (int64_t f = 0; f < d; f++) s += (mean[a][f] - mean[b][f]) * (mean[a][f] - mean[b][f]);
            dist_sum += sqrt(s) / 6;
        }
    CHECK(fabs(var - 1) < 0.02, "gaussian: noise variance %.4f within 2%% of 1", var);
    // The mean of 6 distances of sqrt(chi-square) scaled to 3: within 20%.
    CHECK(fabs(dist_sum - 3) < 0.6, "gaussian: class means %.3f apart on average (separation 3)", dist_sum);
    ns_graph_free(&g);
}

static void bernoulli_features(void) {
    // 5 classes, 500 words (topics of 100), 20 words per node, half from the topic.
    ns_csbm m = model(5000, 5, 500, NS_CSBM_BERNOULLI, 9);
    m.separation = 0.5, m.words = 20;
    ns_err err = {{0}};
    ns_csbm_probabilities(&m, 3, 0.8, &err);
    ns_graph g;
    if (ns_csbm_generate(&g, &m, &err) < 0) {
        CHECK(0, "bernoulli: %s", err.msg);
        return;
    }
    CHECK(ns_graph_validate(&g, &err) == 0 && g.sparse_features, "bernoulli: sparse, canonical features (%s)", err.msg);
    double words = (double)g.sfeatures.nnz / (double)g.nodes;
    // Expected 20 minus the words drawn twice: 5000 nodes x 100 topic words x 0.1 x 0.02.
    double want = 20 - 100 * 0.1 * 0.02;
    CHECK(fabs(words - want) < 0.15, "bernoulli: %.3f words per node (%.2f expected)", words, want);
    int ones = 1;
    for (int64_t e = 0; e < g.sfeatures.nnz; e++) ones &= g.sfeatures.values[e] == 1.0f;
    CHECK(ones, "bernoulli: every stored value is 1");
    // A word's frequency within a class: 0.1 + 0.02 - 0.002 on its topic, 0.02 off it;
    // so the 100 most frequent words of class 0 are its topic, used by no other class much.
    double *freq = calloc(5 * 500, sizeof *freq);
    for (int64_t i = 0; i < g.nodes; i++)
        for (int64_t e = g.sfeatures.indptr[i]; e < g.sfeatures.indptr[i + 1]; e++)
            freq[g.labels[i] * 500 + g.sfeatures.indices[e]] += 1.0 / 1000;
    int64_t topic_words = 0, shared = 0;
    for (int64_t w = 0; w < 500; w++) {
        int on = 0;
        for (int c = 0; c < 5; c++) on += freq[c * 500 + w] > 0.06;
        topic_words += on == 1;
        shared += on > 1;
    }
    CHECK(topic_words == 500 && shared == 0, "bernoulli: every word is frequent in exactly one class (%lld, %lld shared)",
          (long long)topic_words, (long long)shared);
    free(freq);
    ns_graph_free(&g);
}

static void split(void) {
    ns_csbm m = model(2708, 7, 0, NS_CSBM_GAUSSIAN, 0);
    ns_err err = {{0}};
    ns_csbm_probabilities(&m, 4, 0.8, &err);
    ns_graph g;
    ns_csbm_generate(&g, &m, &err);
    int rc = ns_planetoid_split(&g, 20, 500, 1000, 11, &err);
    int64_t per_class[7] = {0}, overlap = 0;
    for (int64_t i = 0; i < g.nodes; i++) {
        if (g.masks[NS_SPLIT_TRAIN][i]) per_class[g.labels[i]]++;
        overlap += g.masks[0][i] + g.masks[1][i] + g.masks[2][i] > 1;
    }
    int twenty = 1;
    for (int c = 0; c < 7; c++) twenty &= per_class[c] == 20;
    CHECK(rc == 0 && twenty, "split: 20 training nodes in each of 7 classes");
    CHECK(ns_graph_split_size(&g, NS_SPLIT_VAL) == 500 && ns_graph_split_size(&g, NS_SPLIT_TEST) == 1000 && overlap == 0,
          "split: 500 val, 1000 test, disjoint (%lld overlap)", (long long)overlap);
    rc = ns_planetoid_split(&g, 20, 1500, 1100, 11, &err);
    CHECK(rc < 0 && strstr(err.msg, "2708 labelled nodes: 140 train, then 1500 val and 1100 test do not fit"),
          "split too large refused: %s", err.msg);
    ns_graph_free(&g);
}

static void bad_parameters(void) {
    ns_csbm m = model(100, 10, 0, NS_CSBM_GAUSSIAN, 0);
    ns_err err = {{0}};
    int rc = ns_csbm_probabilities(&m, 20, 0.8, &err);
    CHECK(rc < 0 && strstr(err.msg, "16 in-class neighbours, but a class has 9 other nodes"), "too dense refused: %s",
          err.msg);
    m = model(100, 1, 0, NS_CSBM_GAUSSIAN, 0);
    rc = ns_csbm_probabilities(&m, 5, 0.8, &err);
    CHECK(rc < 0 && strstr(err.msg, "one class"), "homophily < 1 with one class refused: %s", err.msg);
    m = model(100, 10, 5, NS_CSBM_BERNOULLI, 0);
    m.separation = 0.5;
    ns_graph g;
    rc = ns_csbm_generate(&g, &m, &err);
    CHECK(rc < 0 && strstr(err.msg, "5 words for 10 classes"), "fewer words than classes refused: %s", err.msg);
    m = model(100, 2, 0, NS_CSBM_GAUSSIAN, 0);
    m.p_in = 1.5;
    rc = ns_csbm_generate(&g, &m, &err);
    CHECK(rc < 0 && strstr(err.msg, "p_in 1.5"), "p_in > 1 refused: %s", err.msg);
}

int main(void) {
    degree_and_homophily();
    explicit_probabilities();
    determinism();
    gaussian_features();
    bernoulli_features();
    split();
    bad_parameters();
    return check_done();
}
