// test_simgc.c: SimGC's pieces (lib/graph/simgc.h, lib/graph/pge.h): the vectorisable exp,
// condensed class sizes, and every gradient by central differences: the
// normalisation, L_rep, L_smt, the pair generator, and the whole loss of a
// condensation (through the teacher and the propagation). Then a short
// condensation of a small planted-partition graph: the output has the requested
// size per class, is symmetric with a zero diagonal, and trains a GCN that
// scores well above chance on the original graph.
// sanitize: yes (runs under ASan/UBSan in `make check-sanitize`)
//
// Gradient checks: a loss L(theta) in float, theta perturbed by +-h one
// coordinate at a time; the error reported is |g - g_fd| / |g_fd| over the
// checked coordinates (a vector norm, so one kink crossed by a step shows as
// a small share rather than a failure).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "graph/pge.h"
#include "base/rng.h"
#include "graph/simgc.h"
#include "graph/sparse.h"

static ns_rng rng;

static float *frand(int64_t n, double lo, double hi) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    if (!p) exit(1);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * ns_rng_uniform(&rng));
    return p;
}

static double rel_err(const double *g, const double *fd, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) num += (g[i] - fd[i]) * (g[i] - fd[i]), den += fd[i] * fd[i];
    return sqrt(num) / (sqrt(den) + 1e-30);
}

static void test_exp(void) {
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -90.0f * (float)i / 200000.0f;
        double want = exp((double)x), got = ns_exp_nonpos(x);
        if (x < -87.0f) {
            if (got != 0) worst = 1;
            continue;
        }
        double e = fabs(got - want) / want;
        if (e > worst) worst = e;
    }
    CHECK(worst < 3e-7, "ns_exp_nonpos within 3e-7 relative of exp on [-90, 0] (worst %.2e)", worst);
}

static void test_class_sizes(void) {
    int64_t train[4] = {20, 3, 0, 7}, count[4], order[4];
    int64_t n = ns_simgc_class_sizes(train, 4, 0.25, count, order);
    CHECK(count[0] == 5 && count[1] == 1 && count[2] == 0 && count[3] == 2 && n == 8,
          "ceil(r * n_c): 5 1 0 2 (got %lld %lld %lld %lld)", (long long)count[0], (long long)count[1],
          (long long)count[2], (long long)count[3]);
    CHECK(order[0] == 2 && order[1] == 1 && order[2] == 3 && order[3] == 0,
          "blocks in ascending train count (got %lld %lld %lld %lld)", (long long)order[0], (long long)order[1],
          (long long)order[2], (long long)order[3]);
    int64_t twenty[2] = {20, 20};
    n = ns_simgc_class_sizes(twenty, 2, 0.5, count, order);
    CHECK(n == 20 && count[0] == 10, "r = 0.5 of 20 per class gives 10 each (n %lld)", (long long)n);
}

static float *sym_adj(int64_t n, double zero_frac) {
    float *a = calloc((size_t)(n * n), sizeof *a);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            float v = ns_rng_uniform(&rng) < zero_frac ? 0.0f : (float)(0.05 + 0.9 * ns_rng_uniform(&rng));
            a[i * n + j] = a[j * n + i] = v;
        }
    return a;
}

static void test_normalize(void) {
    int64_t n = 7;
    float *a = sym_adj(n, 0.3), *G = frand(n * n, -1, 1), *ahat = malloc(n * n * sizeof(float));
    float s[7], *da = calloc(n * n, sizeof(float));
    ns_simgc_normalize(ahat, s, a, n);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double rs = 0;
        for (int64_t j = 0; j < n; j++) rs += a[i * n + j];
        for (int64_t j = 0; j < n; j++) {
            double rsj = 0;
            for (int64_t k = 0; k < n; k++) rsj += a[j * n + k];
            double want = (a[i * n + j] + (i == j)) / sqrt((1 + rs) * (1 + rsj));
            worst = fmax(worst, fabs(want - ahat[i * n + j]));
        }
    }
    CHECK(worst < 1e-6, "normalisation equals D^-1/2 (A + I) D^-1/2 (max diff %.2e)", worst);
    ns_simgc_normalize_backward(da, G, a, s, n);
    double g[49], fd[49];
    float h = 1e-3f;
    for (int64_t k = 0; k < n * n; k++) {
        float keep = a[k];
        double l[2];
        for (int side = 0; side < 2; side++) {
            a[k] = keep + (side ? -h : h);
            ns_simgc_normalize(ahat, s, a, n);
            l[side] = 0;
            for (int64_t m = 0; m < n * n; m++) l[side] += (double)G[m] * ahat[m];
        }
        a[k] = keep;
        fd[k] = (l[0] - l[1]) / (2 * h);
        g[k] = da[k];
    }
    double e = rel_err(g, fd, (int)(n * n));
    CHECK(e < 1e-3, "normalisation backward against differences (rel err %.2e)", e);
    free(a), free(G), free(ahat), free(da);
}

static void test_rep_loss(void) {
    int64_t n = 7, D = 5, L = 3;
    ns_simgc_targets t = {0};
    int64_t start[3] = {0, 1, 4}, count[3] = {1, 3, 3};
    double w[3] = {1.0 / 3, 1, 1};
    t.blocks = 3, t.LD = L * D, t.start = start, t.count = count, t.w = w, t.wsum = w[0] + w[1] + w[2];
    t.mu = frand(3 * L * D, -1, 1);
    t.sd = frand(3 * L * D, 0.2, 1.5);
    t.sd[2 * L * D + 4] = NAN; // a class whose std is undefined: the term is dropped
    float *layers[3], *dl[3];
    for (int l = 0; l < 3; l++) layers[l] = frand(n * D, -2, 2), dl[l] = calloc(n * D, sizeof(float));
    double loss = ns_simgc_rep_loss(&t, (const float *const *)layers, 3, D, dl, 2.0);
    CHECK(isfinite(loss) && loss > 0, "L_rep is finite and positive (%g)", loss);
    // the value by hand for one block, one column, to pin the formula
    double g[105], fd[105];
    float h = 1e-3f;
    int k = 0;
    for (int l = 0; l < 3; l++)
        for (int64_t i = 0; i < n * D; i++, k++) {
            float keep = layers[l][i];
            layers[l][i] = keep + h;
            double lp = ns_simgc_rep_loss(&t, (const float *const *)layers, 3, D, NULL, 0);
            layers[l][i] = keep - h;
            double lm = ns_simgc_rep_loss(&t, (const float *const *)layers, 3, D, NULL, 0);
            layers[l][i] = keep;
            fd[k] = 2.0 * (lp - lm) / (2 * h);
            g[k] = dl[l][i];
        }
    double e = rel_err(g, fd, k);
    CHECK(e < 1e-3, "L_rep gradient (scaled by 2) against differences (rel err %.2e)", e);
    // identical targets give zero loss
    ns_simgc_targets z = t;
    float *mu = calloc(3 * L * D, sizeof(float)), *sd = calloc(3 * L * D, sizeof(float));
    for (int64_t b = 0; b < 3; b++)
        for (int l = 0; l < 3; l++)
            for (int64_t f = 0; f < D; f++) {
                double m = 0, v = 0;
                for (int64_t r = start[b]; r < start[b] + count[b]; r++) m += layers[l][r * D + f];
                m /= (double)count[b];
                for (int64_t r = start[b]; r < start[b] + count[b]; r++)
                    v += (layers[l][r * D + f] - m) * (layers[l][r * D + f] - m);
                mu[b * L * D + l * D + f] = (float)m;
                sd[b * L * D + l * D + f] = count[b] > 1 ? (float)sqrt(v / (double)(count[b] - 1)) : NAN;
            }
    z.mu = mu, z.sd = sd;
    double zl = ns_simgc_rep_loss(&z, (const float *const *)layers, 3, D, NULL, 0);
    CHECK(zl < 1e-10, "L_rep is 0 when the condensed statistics equal the targets (%g)", zl);
    for (int l = 0; l < 3; l++) free(layers[l]), free(dl[l]);
    free(t.mu), free(t.sd), free(mu), free(sd);
}

static void test_smooth_loss(void) {
    int64_t n = 6, D = 9;
    float *a = sym_adj(n, 0.4), *x = frand(n * D, -1.5, 1.5);
    float *da = calloc(n * n, sizeof(float)), *dx = calloc(n * D, sizeof(float));
    double loss = ns_simgc_smooth_loss(a, x, n, D, da, dx, 1.0);
    // by hand
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            if (!(a[i * n + j] > 0)) continue;
            double k = 0;
            for (int64_t f = 0; f < D; f++) {
                double d = x[i * D + f] - x[j * D + f];
                k += exp(-0.5 * d * d);
            }
            num += a[i * n + j] * k / (double)D;
            den += a[i * n + j];
        }
    CHECK(fabs(loss - num / den) < 1e-6, "L_smt equals its formula (%.8f vs %.8f)", loss, num / den);
    double g[64], fd[64];
    float h = 1e-3f;
    int k = 0;
    for (int64_t i = 0; i < n * D && k < 54; i++, k++) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = ns_simgc_smooth_loss(a, x, n, D, NULL, NULL, 0);
        x[i] = keep - h;
        double lm = ns_simgc_smooth_loss(a, x, n, D, NULL, NULL, 0);
        x[i] = keep;
        fd[k] = (lp - lm) / (2 * h);
        g[k] = dx[i];
    }
    double e = rel_err(g, fd, k);
    CHECK(e < 2e-3, "L_smt gradient in x against differences (rel err %.2e)", e);
    k = 0;
    for (int64_t m = 0; m < n * n; m++) {
        if (!(a[m] > 0)) continue;
        float keep = a[m];
        a[m] = keep + h;
        double lp = ns_simgc_smooth_loss(a, x, n, D, NULL, NULL, 0);
        a[m] = keep - h;
        double lm = ns_simgc_smooth_loss(a, x, n, D, NULL, NULL, 0);
        a[m] = keep;
        fd[k] = (lp - lm) / (2 * h);
        g[k++] = da[m];
    }
    e = rel_err(g, fd, k);
    CHECK(e < 2e-3, "L_smt gradient in a (per stored entry) against differences (rel err %.2e)", e);
    float *empty = calloc(n * n, sizeof(float));
    CHECK(ns_simgc_smooth_loss(empty, x, n, D, NULL, NULL, 1) == 0, "L_smt of a graph without edges is 0");
    free(a), free(x), free(da), free(dx), free(empty);
}

static double pge_loss(ns_pge *g, const float *x, const float *G, float *a0) {
    ns_pge_forward(g, x, a0);
    double l = 0;
    for (int64_t m = 0; m < g->n * g->n; m++) l += (double)G[m] * a0[m];
    return l;
}

static void test_pge(void) {
    ns_err err;
    ns_pge g;
    int64_t n = 5, d = 3, h = 4;
    CHECK(ns_pge_create(&g, n, d, h, &err) == 0, "pge_create");
    ns_pge_init(&g, 3);
    float *x = frand(n * d, -1, 1), *G = frand(n * n, -1, 1), *a0 = malloc(n * n * sizeof(float));
    float *dx = calloc(n * d, sizeof(float));
    pge_loss(&g, x, G, a0);
    int sym = 1, diag = 1, range = 1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            sym &= a0[i * n + j] == a0[j * n + i];
            if (i == j) diag &= a0[i * n + j] == 0;
            else range &= a0[i * n + j] > 0 && a0[i * n + j] < 1;
        }
    CHECK(sym && diag && range, "the generated adjacency is symmetric, zero on the diagonal, in (0, 1)");
    memset(g.grad, 0, (size_t)g.numel * sizeof(float));
    ns_pge_backward(&g, x, a0, G, dx);
    // every parameter and every input feature
    double *an = malloc((size_t)(g.numel + n * d) * sizeof(double));
    double *fd = malloc((size_t)(g.numel + n * d) * sizeof(double));
    float step = 1e-3f;
    int k = 0;
    // The biases before a batch norm cancel out of it: their gradient is 0.
    double pre_bn = 0;
    for (int p = 1; p <= 5; p += 4)
        for (int64_t i = 0; i < g.params[p].numel; i++) pre_bn = fmax(pre_bn, fabs(g.grad[g.params[p].offset + i]));
    CHECK(pre_bn < 1e-6, "the biases before the batch norms get no gradient (max %.2e)", pre_bn);
    for (int p = 0; p < NS_PGE_PARAMS; p++)
        for (int64_t i = 0; i < g.params[p].numel && p != 1 && p != 5; i++, k++) {
            float *v = g.value + g.params[p].offset + i, keep = *v;
            *v = keep + step;
            double lp = pge_loss(&g, x, G, a0);
            *v = keep - step;
            double lm = pge_loss(&g, x, G, a0);
            *v = keep;
            fd[k] = (lp - lm) / (2 * step);
            an[k] = g.grad[g.params[p].offset + i];
        }
    int kp = k;
    for (int64_t i = 0; i < n * d; i++, k++) {
        float keep = x[i];
        x[i] = keep + step;
        double lp = pge_loss(&g, x, G, a0);
        x[i] = keep - step;
        double lm = pge_loss(&g, x, G, a0);
        x[i] = keep;
        fd[k] = (lp - lm) / (2 * step);
        an[k] = dx[i];
    }
    double ep = rel_err(an, fd, kp), ex = rel_err(an + kp, fd + kp, k - kp);
    CHECK(ep < 2e-2, "generator parameter gradients against differences (rel err %.2e)", ep);
    CHECK(ex < 2e-2, "generator input gradient against differences (rel err %.2e)", ex);
    free(x), free(G), free(a0), free(dx), free(an), free(fd);
    ns_pge_free(&g);
}

// A planted partition: C classes of m nodes, features mu_class + noise,
// p_in / p_out edges; train 4 per class, val 8 per class, the rest test.
static ns_graph planted(int64_t C, int64_t m, int64_t D, double p_in, double p_out) {
    ns_graph g = {0};
    int64_t N = C * m;
    g.nodes = N, g.classes = C, g.undirected = 1, g.feature_dim = D;
    g.features = frand(N * D, 0, 0);
    g.labels = malloc((size_t)N * sizeof *g.labels);
    for (int s = 0; s < NS_SPLIT_COUNT; s++) g.masks[s] = calloc((size_t)N, 1);
    float *mu = frand(C * D, -1, 1);
    for (int64_t i = 0; i < N; i++) {
        int64_t c = i % C, rank = i / C;
        g.labels[i] = (int32_t)c;
        for (int64_t f = 0; f < D; f++) g.features[i * D + f] = mu[c * D + f] + (float)(1.5 * ns_rng_normal(&rng));
        g.masks[rank < 4 ? NS_SPLIT_TRAIN : rank < 12 ? NS_SPLIT_VAL : NS_SPLIT_TEST][i] = 1;
    }
    int32_t *ri = malloc(sizeof(int32_t) * (size_t)(N * N)), *ci = malloc(sizeof(int32_t) * (size_t)(N * N));
    int64_t z = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = i + 1; j < N; j++)
            if (ns_rng_uniform(&rng) < (g.labels[i] == g.labels[j] ? p_in : p_out)) {
                ri[z] = (int32_t)i, ci[z++] = (int32_t)j;
                ri[z] = (int32_t)j, ci[z++] = (int32_t)i;
            }
    ns_err err;
    if (ns_csr_from_coo(&g.adj, N, N, z, ri, ci, NULL, NS_DUP_REFUSE, NULL, &err) < 0) exit(1);
    free(ri), free(ci), free(mu);
    return g;
}

static void small_config(ns_simgc_config *cfg) {
    ns_simgc_config_default(cfg);
    cfg->teacher_hidden = 32;
    cfg->teacher_epochs = 100;
    cfg->teacher_lr = 0.01;
    cfg->pge_hidden = 16;
    cfg->val_hidden = 16;
    cfg->val_epochs = 200;
    cfg->val_lr = 0.01;
}

static void test_whole_loss_gradient(void) {
    ns_graph g = planted(3, 30, 6, 0.2, 0.02);
    ns_simgc_config cfg;
    small_config(&cfg);
    cfg.ratio = 0.75; // 3 per class
    cfg.tau = 0;      // no threshold: the loss is smooth in every entry
    cfg.val_every = 0;
    ns_simgc_result res;
    ns_err err;
    ns_simgc *k = ns_simgc_create(&g, &cfg, &res, &err);
    CHECK(k != NULL, "ns_simgc_create on a planted graph%s%s", k ? "" : ": ", k ? "" : err.msg);
    if (!k) return;
    CHECK(ns_simgc_nodes(k) == 9, "3 classes x ceil(0.75 * 4) = 9 condensed nodes (%lld)",
          (long long)ns_simgc_nodes(k));
    double l0 = ns_simgc_loss(k);
    CHECK(isfinite(l0), "the loss is finite (%g)", l0);
    int64_t n = ns_simgc_nodes(k), D = 6;
    float *x = ns_simgc_features(k);
    double *gx = malloc((size_t)(n * D) * sizeof(double)), *fd = malloc((size_t)(n * D) * sizeof(double));
    const float *dx = ns_simgc_features_grad(k);
    for (int64_t i = 0; i < n * D; i++) gx[i] = dx[i];
    ns_pge *pg = ns_simgc_generator(k);
    int np = 24;
    double gp[24], fp[24];
    int64_t pidx[24];
    for (int i = 0; i < np; i++) pidx[i] = (int64_t)ns_rng_below(&rng, (uint64_t)pg->params[0].numel);
    for (int i = 0; i < np; i++) gp[i] = pg->grad[pg->params[0].offset + pidx[i]];
    float h = 1e-2f;
    for (int64_t i = 0; i < n * D; i++) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = ns_simgc_loss(k);
        x[i] = keep - h;
        double lm = ns_simgc_loss(k);
        x[i] = keep;
        fd[i] = (lp - lm) / (2 * h);
    }
    for (int i = 0; i < np; i++) {
        float *v = pg->value + pg->params[0].offset + pidx[i], keep = *v;
        *v = keep + h;
        double lp = ns_simgc_loss(k);
        *v = keep - h;
        double lm = ns_simgc_loss(k);
        *v = keep;
        fp[i] = (lp - lm) / (2 * h);
    }
    double ex = rel_err(gx, fd, (int)(n * D)), ep = rel_err(gp, fp, np);
    CHECK(ex < 3e-2, "the whole loss: gradient in X' against differences (rel err %.2e)", ex);
    CHECK(ep < 3e-2, "the whole loss: gradient in the generator's first layer against differences (rel err %.2e)", ep);
    free(gx), free(fd);
    ns_simgc_free(k);
    ns_graph_free(&g);
}

static void test_condense(void) {
    ns_graph g = planted(3, 40, 8, 0.15, 0.01);
    ns_simgc_config cfg;
    small_config(&cfg);
    cfg.ratio = 0.5;
    cfg.iterations = 200;
    cfg.val_every = 100;
    cfg.lr_feat = 0.05, cfg.lr_adj = 0.01;
    ns_simgc_result res;
    ns_err err;
    int rc = ns_simgc_condense(&g, &cfg, &res, &err);
    CHECK(rc == 0, "ns_simgc_condense runs%s%s", rc ? ": " : "", rc ? err.msg : "");
    if (rc) return;
    const ns_graph *c = &res.condensed;
    int64_t per[3] = {0, 0, 0};
    for (int64_t i = 0; i < c->nodes; i++) per[c->labels[i]]++;
    CHECK(c->nodes == 6 && per[0] == 2 && per[1] == 2 && per[2] == 2, "2 condensed nodes per class (%lld nodes)",
          (long long)c->nodes);
    int64_t at[2];
    CHECK(ns_csr_is_symmetric(&c->adj, at, &err) == 1, "the condensed adjacency is symmetric");
    int diag = 0, below = 0;
    for (int64_t i = 0; i < c->nodes; i++)
        for (int64_t e = c->adj.indptr[i]; e < c->adj.indptr[i + 1]; e++) {
            diag += c->adj.indices[e] == i;
            below += c->adj.values[e] < (float)cfg.tau;
        }
    CHECK(diag == 0 && below == 0, "no self loops, no weight below tau (%d, %d)", diag, below);
    CHECK(ns_graph_validate(c, &err) == 0, "the condensed graph is a valid graph");
    CHECK(res.best_val > 0.6 && res.best_test > 0.6,
          "a GCN trained on 6 condensed nodes scores well above chance (1/3) on the original graph: val %.3f test %.3f",
          res.best_val, res.best_test);
    CHECK(res.teacher_test > 0.6, "the teacher learned (test %.3f)", res.teacher_test);
    ns_graph_free(&res.condensed);
    ns_graph_free(&g);
}

static void test_errors(void) {
    ns_graph g = planted(2, 10, 3, 0.3, 0.05);
    ns_simgc_config cfg;
    small_config(&cfg);
    ns_simgc_result res;
    ns_err err;
    free(g.masks[NS_SPLIT_TRAIN]);
    g.masks[NS_SPLIT_TRAIN] = NULL;
    CHECK(ns_simgc_condense(&g, &cfg, &res, &err) < 0 && strstr(err.msg, "training split"),
          "a graph without a training split is refused (%s)", err.msg);
    g.masks[NS_SPLIT_TRAIN] = calloc((size_t)g.nodes, 1);
    g.masks[NS_SPLIT_TRAIN][0] = 1;
    free(g.masks[NS_SPLIT_VAL]);
    g.masks[NS_SPLIT_VAL] = NULL;
    CHECK(ns_simgc_condense(&g, &cfg, &res, &err) < 0 && strstr(err.msg, "no validation nodes"),
          "a graph without validation nodes is refused (%s)", err.msg);
    g.masks[NS_SPLIT_VAL] = calloc((size_t)g.nodes, 1);
    g.masks[NS_SPLIT_VAL][1] = 1;
    cfg.ratio = 0;
    CHECK(ns_simgc_condense(&g, &cfg, &res, &err) < 0 && strstr(err.msg, "ratio"), "ratio 0 is refused (%s)",
          err.msg);
    ns_graph_free(&g);
}

int main(void) {
    ns_rng_seed(&rng, 20241128);
    test_exp();
    test_class_sizes();
    test_normalize();
    test_rep_loss();
    test_smooth_loss();
    test_pge();
    test_whole_loss_gradient();
    test_condense();
    test_errors();
    return check_done();
}
