// test_probe.c: lib/nn/probe.h (a model read at one layer) and lib/cav/cav_io.h
// (feature, concept and attribute files in memory).
// sanitize: yes
//
// 1. Fingerprints: stable for the same model and across a write and read,
//    different after one weight changes by one ulp.
// 2. Layers: the default probe is the final linear layer's input; the head
//    is found for the node under a global average pool (avg) but not for a
//    node elsewhere; unknown names are refused.
// 3. Features: average pooling equals the model's own global_avgpool node.
// 4. TCAV gradients against finite differences of the class logit along v,
//    through the engine, on a small conv net (conv, batch norm in eval mode,
//    tanh, conv, tanh, global pool, linear): S = grad . v must equal
//    (logit_k(eps) - logit_k(-eps)) / (2 eps) where
//      - the probe is the input, flattened: the image moves by eps v;
//      - the probe is the input, average-pooled: every pixel of channel c
//        moves by eps v[c];
//      - the probe is the first conv's output, average-pooled: the same as
//        moving that conv's bias by eps v (exact: the conv is affine);
//      - the probe is the pooled feature: S = W_k . v exactly.
// 5. Streams: a feature stream written and read back; duplicate ids,
//    missing ids, concept values outside 0..2 and malformed attribute rows
//    are refused with a message naming the problem.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cav/cav_io.h"
#include "check.h"
#include "nn/engine.h"
#include "nn/probe.h"
#include "base/rng.h"

// conv(2->3) bn tanh conv(3->4) tanh gap fc(4->5), input 2x5x5
static void build_net(ns_model *m, uint64_t seed) {
    ns_err err;
    ns_model_init(m);
    int in = ns_model_add_input(m, 2, 5, 5, &err);
    int c1 = ns_model_add_node(m, "conv1", NS_OP_CONV2D, &in, 1, &err);
    ns_node_set_iattr(&m->nodes[c1], "out", 3, &err);
    ns_node_set_iattr(&m->nodes[c1], "pad", 1, &err);
    int bn = ns_model_add_node(m, "bn1", NS_OP_BATCHNORM, &c1, 1, &err);
    int a1 = ns_model_add_node(m, "act1", NS_OP_TANH, &bn, 1, &err);
    int c2 = ns_model_add_node(m, "conv2", NS_OP_CONV2D, &a1, 1, &err);
    ns_node_set_iattr(&m->nodes[c2], "out", 4, &err);
    ns_node_set_iattr(&m->nodes[c2], "pad", 1, &err);
    int a2 = ns_model_add_node(m, "act2", NS_OP_TANH, &c2, 1, &err);
    int gp = ns_model_add_node(m, "pool", NS_OP_GLOBAL_AVGPOOL, &a2, 1, &err);
    int fc = ns_model_add_node(m, "fc", NS_OP_LINEAR, &gp, 1, &err);
    ns_node_set_iattr(&m->nodes[fc], "out", 5, &err);
    if (ns_model_resolve(m, 1, &err) < 0) {
        printf("# build: %s\n", err.msg);
        exit(1);
    }
    ns_model_init_params(m, seed);
    // batch norm running statistics away from the identity
    float *rm = m->tensors[ns_model_find_tensor(m, "bn1.running_mean")].t.data;
    float *rv = m->tensors[ns_model_find_tensor(m, "bn1.running_var")].t.data;
    for (int c = 0; c < 3; c++) {
        rm[c] = 0.1f * (float)(c + 1);
        rv[c] = 0.5f + 0.3f * (float)c;
    }
}

static void test_fingerprint(void) {
    ns_model a, b;
    build_net(&a, 1);
    build_net(&b, 1);
    char fa[NS_FINGERPRINT_LEN + 1], fb[NS_FINGERPRINT_LEN + 1];
    ns_model_fingerprint(&a, fa);
    ns_model_fingerprint(&b, fb);
    CHECK(strlen(fa) == NS_FINGERPRINT_LEN && strcmp(fa, fb) == 0, "same model, same fingerprint (%s)", fa);
    float *w = b.tensors[ns_model_find_tensor(&b, "conv2.weight")].t.data;
    w[3] = nextafterf(w[3], 10.0f);
    ns_model_fingerprint(&b, fb);
    CHECK(strcmp(fa, fb) != 0, "one weight one ulp away: another fingerprint (%s, %s)", fa, fb);
    // through a file
    char path[] = "/tmp/test_probe_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "wb");
    ns_writer wr;
    ns_writer_init(&wr, f);
    ns_err err;
    int rc = ns_model_write(&a, &wr, NULL, 0, &err);
    ns_writer_free(&wr);
    fclose(f);
    ns_model c;
    rc = rc == 0 ? ns_model_load(&c, path, &err) : rc;
    unlink(path);
    CHECK(rc == 0, "model written and read back");
    if (rc == 0) {
        char fc[NS_FINGERPRINT_LEN + 1];
        ns_model_fingerprint(&c, fc);
        CHECK(strcmp(fa, fc) == 0, "the same fingerprint after a write and a read (%s, %s)", fa, fc);
        ns_model_free(&c);
    }
    ns_model_free(&a);
    ns_model_free(&b);
}

static void test_layers(void) {
    ns_model m;
    build_net(&m, 2);
    ns_err err;
    ns_probe p;
    CHECK(ns_probe_init(&p, &m, NULL, 0, &err) == 0 && strcmp(m.nodes[p.node].name, "pool") == 0 &&
              p.dim == 4 && p.pool == NS_PROBE_NONE && p.head == m.output,
          "default probe: the input of fc, 4 features, with the head");
    CHECK(ns_probe_init(&p, &m, "act2", 0, &err) == 0 && p.pool == NS_PROBE_AVG && p.dim == 4 && p.head == m.output,
          "act2 average-pooled: the head applies");
    CHECK(ns_probe_init(&p, &m, "act2", 1, &err) == 0 && p.pool == NS_PROBE_FLATTEN && p.dim == 100 && p.head < 0,
          "act2 flattened: 100 features, no head");
    CHECK(ns_probe_init(&p, &m, "conv1", 0, &err) == 0 && p.dim == 3 && p.head < 0, "conv1: 3 features, no head");
    CHECK(ns_probe_init(&p, &m, "nope", 0, &err) < 0 && strstr(err.msg, "no node named nope"), "unknown node: %s", err.msg);
    int64_t k = 0;
    ns_probe_init(&p, &m, NULL, 0, &err);
    CHECK(ns_probe_head_weight(&p, &m, &k) == m.tensors[ns_model_find_tensor(&m, "fc.weight")].t.data && k == 5 &&
              ns_probe_head_bias(&p, &m) == m.tensors[ns_model_find_tensor(&m, "fc.bias")].t.data,
          "the head is fc's weight (5 x 4) and bias");

    // features: avg pooling of act2 equals the model's own pool node
    ns_engine e;
    ns_engine_init(&e, &m, 3, 0, &err);
    float x[3 * 50];
    ns_rng rng;
    ns_rng_seed(&rng, 5);
    for (int i = 0; i < 150; i++) x[i] = (float)ns_rng_normal(&rng);
    ns_engine_forward(&e, x, 3, 0, &err);
    float got[12];
    ns_probe_init(&p, &m, "act2", 0, &err);
    ns_probe_features(&p, &e, 3, got);
    double mabs;
    check_maxdiff(got, e.act[ns_model_find_node(&m, "pool")], 12, &mabs);
    CHECK(mabs < 1e-6, "average-pooled act2 = the pool node (max diff %.2g)", mabs);
    ns_engine_free(&e);
    ns_model_free(&m);
}

// logit k of one image x under model m (forward only)
static double logit(ns_model *m, const float *x, int k) {
    ns_err err;
    ns_engine e;
    ns_engine_init(&e, m, 1, 0, &err);
    const float *out = ns_engine_forward(&e, x, 1, 0, &err);
    double v = out[k];
    ns_engine_free(&e);
    return v;
}

static void test_gradients(void) {
    ns_model m;
    build_net(&m, 3);
    ns_err err;
    ns_engine e;
    CHECK(ns_engine_init(&e, &m, 4, 1, &err) == 0, "engine with gradients");
    for (int t = 0; t < m.ntensors; t++) ns_engine_set_trainable(&e, t, 0, &err);
    ns_rng rng;
    ns_rng_seed(&rng, 9);
    const int n = 4;
    float x[4 * 50], xp[50], xm[50];
    for (int i = 0; i < n * 50; i++) x[i] = (float)ns_rng_normal(&rng);
    int32_t cls[4] = {0, 3, 4, 1};
    const double h = 1e-2; // float forward: the stencil error O(h^2) is under the rounding noise here

    // (a) input, flattened: the image moves along v
    ns_probe p;
    ns_probe_init(&p, &m, "input", 1, &err);
    float v[50], g[4 * 50];
    for (int j = 0; j < 50; j++) v[j] = (float)ns_rng_normal(&rng);
    CHECK(ns_probe_gradients(&p, &e, x, n, cls, g, &err) == 0, "gradients at the input (flattened)");
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < 50; j++) s += (double)g[i * 50 + j] * v[j];
        for (int j = 0; j < 50; j++) {
            xp[j] = (float)(x[i * 50 + j] + h * v[j]);
            xm[j] = (float)(x[i * 50 + j] - h * v[j]);
        }
        double fd = (logit(&m, xp, cls[i]) - logit(&m, xm, cls[i])) / (2 * h);
        worst = fmax(worst, fabs(s - fd) / fmax(fabs(fd), 1e-2));
        if (i == 0) printf("# input flattened: S %.6f, finite difference %.6f\n", s, fd);
    }
    CHECK(worst < 2e-3, "input, flattened: grad.v = finite difference (worst relative %.2g)", worst);

    // (b) input, average-pooled: every pixel of channel c moves by v[c]
    ns_probe_init(&p, &m, "input", 0, &err);
    CHECK(p.pool == NS_PROBE_AVG && p.dim == 2, "input average-pooled: 2 features");
    CHECK(ns_probe_gradients(&p, &e, x, n, cls, g, &err) == 0, "gradients at the input (pooled)");
    worst = 0;
    for (int i = 0; i < n; i++) {
        double s = g[i * 2] * (double)v[0] + g[i * 2 + 1] * (double)v[1];
        for (int j = 0; j < 50; j++) {
            xp[j] = (float)(x[i * 50 + j] + h * v[j / 25]);
            xm[j] = (float)(x[i * 50 + j] - h * v[j / 25]);
        }
        double fd = (logit(&m, xp, cls[i]) - logit(&m, xm, cls[i])) / (2 * h);
        worst = fmax(worst, fabs(s - fd) / fmax(fabs(fd), 1e-2));
    }
    CHECK(worst < 2e-3, "input, pooled: grad.v = finite difference (worst relative %.2g)", worst);

    // (c) conv1's output, pooled: the same as moving conv1's bias along v
    ns_probe_init(&p, &m, "conv1", 0, &err);
    CHECK(ns_probe_gradients(&p, &e, x, n, cls, g, &err) == 0, "gradients at conv1 (pooled)");
    float *bias = m.tensors[ns_model_find_tensor(&m, "conv1.bias")].t.data;
    float b0[3];
    memcpy(b0, bias, sizeof b0);
    worst = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int c = 0; c < 3; c++) s += (double)g[i * 3 + c] * v[c];
        for (int c = 0; c < 3; c++) bias[c] = (float)(b0[c] + h * v[c]);
        double lp = logit(&m, x + i * 50, cls[i]);
        for (int c = 0; c < 3; c++) bias[c] = (float)(b0[c] - h * v[c]);
        double lm = logit(&m, x + i * 50, cls[i]);
        memcpy(bias, b0, sizeof b0);
        double fd = (lp - lm) / (2 * h);
        worst = fmax(worst, fabs(s - fd) / fmax(fabs(fd), 1e-2));
        if (i == 0) printf("# conv1 pooled: S %.6f, finite difference %.6f\n", s, fd);
    }
    CHECK(worst < 2e-3, "conv1, pooled: grad.v = finite difference of the bias (worst relative %.2g)", worst);

    // (d) the pooled feature: S = W_k . v exactly
    ns_probe_init(&p, &m, NULL, 0, &err);
    CHECK(ns_probe_gradients(&p, &e, x, n, cls, g, &err) == 0, "gradients at the feature");
    const float *w = m.tensors[ns_model_find_tensor(&m, "fc.weight")].t.data;
    worst = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) worst = fmax(worst, fabs(g[i * 4 + j] - w[cls[i] * 4 + j]));
    CHECK(worst < 1e-6, "at the head's input the gradient is W_k (max diff %.2g)", worst);

    int32_t bad[1] = {5};
    CHECK(ns_probe_gradients(&p, &e, x, 1, bad, g, &err) < 0 && strstr(err.msg, "class 5 outside"),
          "a class outside the model is refused: %s", err.msg);
    ns_engine_free(&e);
    ns_model_free(&m);
}

// ----------------------------------------------------------------------------
// streams

static void write_features(const char *path, const int64_t *ids, int n, int with_head) {
    FILE *f = fopen(path, "wb");
    ns_writer w;
    ns_writer_init(&w, f);
    ns_err err;
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "probe.source", "model");
    ns_map_str(&meta, "probe.model", "0123456789abcdef");
    ns_map_str(&meta, "probe.layer", "pool");
    ns_map_str(&meta, "probe.pool", "none");
    const char *labels[2] = {"a", "b"};
    ns_map_strs(&meta, "general.labels", labels, 2);
    ns_write_meta(&w, "", &meta, &err);
    ns_map_free(&meta);
    if (with_head) {
        float hw[6] = {1, 2, 3, 4, 5, 6}, hb[2] = {0.5f, -0.5f};
        ns_tensor t = {.dtype = NS_F32, .ndim = 2, .shape = {2, 3}, .numel = 6, .data = hw};
        ns_tensor tb = {.dtype = NS_F32, .ndim = 1, .shape = {with_head == 2 ? 1 : 2}, .numel = with_head == 2 ? 1 : 2, .data = hb};
        ns_write_tensor(&w, "head.weight", &t, NULL, &err);
        ns_write_tensor(&w, "head.bias", &tb, NULL, &err);
    }
    for (int b = 0; b < 2; b++) { // two batches of n/2
        float x[64 * 3];
        int64_t lab[64];
        for (int i = 0; i < n / 2; i++) {
            lab[i] = (b * n / 2 + i) % 2;
            for (int j = 0; j < 3; j++) x[i * 3 + j] = (float)(100 * (b * n / 2 + i) + j);
        }
        ns_map_init(&meta);
        ns_map_i64s(&meta, "labels", lab, (size_t)(n / 2));
        ns_map_i64s(&meta, "ids", ids + b * n / 2, (size_t)(n / 2));
        ns_tensor t = {.dtype = NS_F32, .ndim = 2, .shape = {n / 2, 3}, .numel = n / 2 * 3, .data = x};
        ns_write_tensor(&w, "features", &t, &meta, &err);
        ns_map_free(&meta);
    }
    ns_writer_free(&w);
    fclose(f);
}

static void test_streams(void) {
    char path[] = "/tmp/test_probe_fXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    int64_t ids[6] = {10, 11, 12, 20, 21, 22};
    write_features(path, ids, 6, 1);
    ns_features f;
    ns_err err;
    int rc = ns_features_load(&f, path, &err);
    CHECK(rc == 0, "feature stream read (%s)", rc ? err.msg : "ok");
    if (rc == 0) {
        CHECK(f.n == 6 && f.d == 3 && f.k == 2 && f.ids[3] == 20 && f.y[3] == 1 && f.x[4 * 3 + 2] == 402.0f &&
                  strcmp(f.layer, "pool") == 0 && f.nlabels == 2 && f.head_b[1] == -0.5f,
              "rows, labels, ids, head and provenance as written");
        int64_t rows[3], want[3] = {22, 10, 21};
        CHECK(ns_match_ids(rows, want, 3, f.ids, f.n, "x", &err) == 0 && rows[0] == 5 && rows[1] == 0 && rows[2] == 4,
              "ids matched to rows");
        int64_t missing[1] = {13};
        CHECK(ns_match_ids(rows, missing, 1, f.ids, f.n, "the pool", &err) < 0 &&
                  strstr(err.msg, "the pool has no image with id 13"),
              "a missing id is named: %s", err.msg);
        ns_features_free(&f);
    }
    int64_t dup[6] = {1, 2, 3, 3, 4, 5};
    write_features(path, dup, 6, 0);
    CHECK(ns_features_load(&f, path, &err) < 0 && strstr(err.msg, "id 3 appears twice"), "duplicate ids: %s", err.msg);
    write_features(path, ids, 6, 2);
    CHECK(ns_features_load(&f, path, &err) < 0 && strstr(err.msg, "head.bias has 1 entries for 2"),
          "a head bias of the wrong size: %s", err.msg);

    // concepts: a value of 3 is refused
    FILE *fp = fopen(path, "wb");
    ns_writer w;
    ns_writer_init(&w, fp);
    ns_map meta;
    ns_map_init(&meta);
    const char *names[2] = {"x", "y"}, *kinds[2] = {"class", "pixel"};
    ns_map_strs(&meta, "concepts.names", names, 2);
    ns_map_strs(&meta, "concepts.kinds", kinds, 2);
    ns_write_meta(&w, "", &meta, &err);
    ns_map_free(&meta);
    uint8_t c[4] = {1, 0, 2, 3};
    int64_t cid[2] = {7, 8};
    ns_map_init(&meta);
    ns_map_i64s(&meta, "ids", cid, 2);
    ns_tensor t = {.dtype = NS_U8, .ndim = 2, .shape = {2, 2}, .numel = 4, .data = c};
    ns_write_tensor(&w, "concepts", &t, &meta, &err);
    ns_map_free(&meta);
    ns_writer_free(&w);
    fclose(fp);
    ns_concepts cs;
    CHECK(ns_concepts_load(&cs, path, &err) < 0 && strstr(err.msg, "concept value 3 (row 1)"),
          "a concept value of 3: %s", err.msg);

    // attribute tables: test_concepts.c (ns_attr_table, the one reader)
    unlink(path);
}

int main(void) {
    setenv("NETSMITH_THREADS", "1", 0);
    test_fingerprint();
    test_layers();
    test_gradients();
    test_streams();
    return check_done();
}
