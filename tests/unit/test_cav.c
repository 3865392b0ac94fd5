// test_cav.c: lib/cav/cav.h, concept activation vectors on cached features.
// sanitize: yes
//
// 1. Statistics against scipy 1.10.1 (Debian 12's python3-scipy, numbers made
//    with /usr/bin/python3 and pasted here): scipy.special.betainc,
//    2 * scipy.stats.t.sf(|t|, dof), scipy.stats.ttest_ind.
// 2. Building blocks on small hand-checkable inputs (cosine, templates, probe
//    selection, pairwise statistics and DSR weights against brute force,
//    thresholds, accuracy, concept-to-class, sign fraction) and the errors.
// 3. Gradients by central differences: L_LG, L_cls (v and bias), their sum
//    as the fit uses it; the logistic CAV's solution is checked to be a
//    stationary point of sklearn's objective by differences of that
//    objective (computed here independently); the hinge CAV's first epoch
//    against sklearn's "optimal" schedule worked by hand.
// 4. cav-fit's steps (cav_concept.h): one concept's CAV from a pool with a
//    concept table, and TCAV scores through a model.
// LG-CAV on a synthetic world with a known answer (the benchmark of its
// modules, DSR with outlier probes, its interface): test_cav_world.c.
#include <stdlib.h>
#include <string.h>

#include "cav/cav.h"
#include "cav/cav_concept.h"
#include "check.h"
#include "base/rng.h"
#include "nn/spec.h"

// ----------------------------------------------------------------------------
// 1. statistics against scipy

static void test_stats(void) {
    // scipy.special.betainc(a, b, x)
    static const double bi[][4] = {
        {0.5, 0.5, 0.3, 0.36901011956554541},
        {2, 3, 0.4, 0.52479999999999993},
        {10, 0.5, 0.9, 0.15164090963470997},
        {50, 0.5, 0.99, 0.31730439787419623},
        {0.1, 10, 0.01, 0.82448967090669789},
        {200, 300, 0.4, 0.50242861631989699},
        {1, 1, 0.25, 0.25},
        {5, 0.5, 0.001, 2.4619635502857141e-16},
        {3.5, 0.5, 0.999999, 0.99796281842604639},
        {1000, 0.5, 0.7, 4.0770445565482376e-157},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof bi / sizeof bi[0]; i++) {
        double got = ns_betainc(bi[i][0], bi[i][1], bi[i][2]);
        double rel = fabs(got - bi[i][3]) / bi[i][3];
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 1e-11, "betainc matches scipy at 10 points (max rel err %.2e)", worst);
    CHECK(isnan(ns_betainc(-1, 1, 0.5)) && isnan(ns_betainc(1, 1, 1.5)) &&
              ns_betainc(2, 3, 0) == 0 && ns_betainc(2, 3, 1) == 1,
          "betainc: domain and end points");

    // 2 * scipy.stats.t.sf(|t|, dof)
    static const double tp[][3] = {
        {0.0, 5, 1},
        {1.0, 1, 0.49999999999999956},
        {2.5, 10, 0.031446844236608776},
        {-3.2, 28, 0.003405127700048432},
        {8.0, 40, 7.9050841101045441e-10},
        {0.3, 1000, 0.76423950416724418},
        {12.0, 18, 5.0465111025636508e-10},
    };
    worst = 0;
    for (size_t i = 0; i < sizeof tp / sizeof tp[0]; i++) {
        double got = ns_t_pvalue(tp[i][0], tp[i][1]);
        double rel = fabs(got - tp[i][2]) / tp[i][2];
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 1e-11, "two-sided t p-values match scipy at 7 points (max rel err %.2e)",
          worst);

    // scipy.stats.ttest_ind(a, b)
    ns_err err = {{0}};
    double t, p;
    const double a[] = {0.52, 0.61, 0.48, 0.70, 0.55, 0.66, 0.59};
    const double b[] = {0.45, 0.50, 0.41, 0.58, 0.47, 0.52};
    int rc = ns_ttest_ind(&t, &p, a, 7, b, 6, &err);
    CHECK(rc == 0 && fabs(t - 2.5484200533289614) < 1e-12 &&
              fabs(p - 0.027071136284319227) / 0.027071136284319227 < 1e-10,
          "ttest_ind matches scipy: t %.15g (2.5484200533289614), p %.15g (0.027071136284319227)",
          t, p);
    const double c[] = {1.0, 1.2, 0.9, 1.1, 1.05};
    const double d[] = {3.0, 3.1, 2.9, 3.05, 2.95, 3.02};
    rc = ns_ttest_ind(&t, &p, c, 5, d, 6, &err);
    CHECK(rc == 0 && fabs(t + 35.258863420683646) < 1e-10 &&
              fabs(p - 5.870021546549423e-11) / 5.870021546549423e-11 < 1e-9,
          "ttest_ind, far apart: t %.15g (-35.258863420683646), p %.6g (5.870021546549423e-11)",
          t, p);
    const double e3[] = {0.5, 0.5, 0.5}, e4[] = {0.5, 0.5, 0.5, 0.5}, h2[] = {0.6, 0.6};
    rc = ns_ttest_ind(&t, &p, e3, 3, e4, 4, &err);
    CHECK(rc == 0 && isnan(t) && isnan(p), "ttest_ind, identical constants: nan, nan (scipy)");
    rc = ns_ttest_ind(&t, &p, e3, 3, h2, 2, &err);
    CHECK(rc == 0 && isinf(t) && t < 0 && p == 0, "ttest_ind, different constants: -inf, 0 (scipy)");
    rc = ns_ttest_ind(&t, &p, a, 1, b, 6, &err);
    CHECK(rc < 0 && strstr(err.msg, "at least 2"), "ttest_ind refuses one value: %s", err.msg);
}

// ----------------------------------------------------------------------------
// 2. building blocks

static void test_blocks(void) {
    ns_err err = {{0}};
    const float x[] = {1, 0, 0}, y[] = {1, 1, 0}, z[] = {0, 0, 0};
    CHECK(fabs(ns_cav_cos(x, y, 3) - 1 / sqrt(2.0)) < 1e-12 && ns_cav_cos(x, z, 3) == 0,
          "cos, and 0 with a zero vector");

    // templates: CE normalises each, averages, renormalises
    const float tpl[] = {1, 0, 0, 2, 3, 4};
    float t[2];
    int rc = ns_cav_text_embedding(t, tpl, 3, 2, 1, 0, &err);
    // unit rows: (1,0), (0,1), (0.6,0.8); mean (1.6,1.8)/3; renormalised
    double nr = sqrt(1.6 * 1.6 + 1.8 * 1.8);
    CHECK(rc == 0 && fabs(t[0] - 1.6 / nr) < 1e-6 && fabs(t[1] - 1.8 / nr) < 1e-6,
          "concept ensemble: (%g, %g)", t[0], t[1]);
    rc = ns_cav_text_embedding(t, tpl, 3, 2, 0, 2, &err);
    CHECK(rc == 0 && fabs(t[0] - 0.6) < 1e-6 && fabs(t[1] - 0.8) < 1e-6,
          "one template, normalised: (%g, %g)", t[0], t[1]);
    rc = ns_cav_text_embedding(t, tpl, 3, 2, 0, 3, &err);
    CHECK(rc < 0 && strstr(err.msg, "out of range"), "template index checked: %s", err.msg);
    const float opp[] = {1, 0, -1, 0};
    rc = ns_cav_text_embedding(t, opp, 2, 2, 1, 0, &err);
    CHECK(rc < 0 && strstr(err.msg, "zero"), "templates averaging to zero refused: %s", err.msg);

    // VLM scores and probe selection (ties to the lower index)
    const float g[] = {1, 0, 0, 1, 1, 1, -1, 0, 1, 0};
    const float tt[] = {1, 0};
    float a[5];
    ns_cav_vlm_scores(a, g, 5, 2, tt);
    CHECK(a[0] == 1 && a[1] == 0 && fabs(a[2] - (float)(1 / sqrt(2.0))) < 1e-6 && a[3] == -1 &&
              a[4] == 1,
          "VLM scores are cosines");
    int64_t idx[5], n_top;
    int64_t nr_sel = ns_cav_select_probes(idx, &n_top, a, 5, 1, 1);
    CHECK(nr_sel == 2 && n_top == 1 && idx[0] == 0 && idx[1] == 3,
          "top 1 + bottom 1: rows %lld, %lld (tie at the top goes to row 0)", (long long)idx[0],
          (long long)idx[1]);
    nr_sel = ns_cav_select_probes(idx, &n_top, a, 5, 3, 3);
    CHECK(nr_sel == 5 && n_top == 3 && idx[0] == 0 && idx[1] == 4 && idx[2] == 2 && idx[3] == 1 &&
              idx[4] == 3,
          "a small pool is taken whole, sorted, top part round(5 * 3/6) = %lld", (long long)n_top);

    // pairwise cosine statistics against brute force
    enum { PN = 9, PD = 5 };
    float f[PN * PD];
    ns_rng rng;
    ns_rng_seed(&rng, 7);
    for (int i = 0; i < PN * PD; i++) f[i] = (float)(ns_rng_normal(&rng) + 0.7);
    int ok = 1;
    for (int diag = 0; diag < 2; diag++)
        for (int ddof = 0; ddof < 2; ddof++) {
            double s = 0, s2 = 0, cnt = 0;
            for (int i = 0; i < PN; i++)
                for (int j = diag ? 0 : i + 1; j < PN; j++) {
                    double cc = ns_cav_cos(f + i * PD, f + j * PD, PD);
                    s += cc;
                    s2 += cc * cc;
                    cnt++;
                }
            double mu = s / cnt, var = 0;
            for (int i = 0; i < PN; i++)
                for (int j = diag ? 0 : i + 1; j < PN; j++) {
                    double cc = ns_cav_cos(f + i * PD, f + j * PD, PD);
                    var += (cc - mu) * (cc - mu);
                }
            double sd = sqrt(var / (cnt - ddof)), m2, sd2;
            if (ns_cav_pair_stats(&m2, &sd2, f, PN, PD, diag, ddof, &err) < 0 ||
                fabs(m2 - mu) > 1e-6 || fabs(sd2 - sd) > 1e-6)
                ok = 0;
        }
    CHECK(ok, "pairwise cosine mean/std equal brute force (diag 0/1, ddof 0/1)");

    // DSR against brute force
    enum { NP = 4 };
    float pos[NP * PD], w[PN], s[PN];
    for (int i = 0; i < NP * PD; i++) pos[i] = (float)(ns_rng_normal(&rng) + 0.7);
    rc = ns_cav_dsr_weights(w, s, f, PN, pos, NP, PD, 1, &err);
    double zsum = 0, wmean = 0, worst = 0;
    double sref[PN];
    for (int i = 0; i < PN; i++) {
        double cs[NP], m = 0, v = 0;
        for (int j = 0; j < NP; j++) m += cs[j] = ns_cav_cos(f + i * PD, pos + j * PD, PD);
        m /= NP;
        for (int j = 0; j < NP; j++) v += (cs[j] - m) * (cs[j] - m);
        sref[i] = sqrt(v / (NP - 1));
        zsum += exp(-sref[i]);
    }
    for (int i = 0; i < PN; i++) {
        double wr = PN * exp(-sref[i]) / zsum;
        worst = fmax(worst, fmax(fabs(w[i] - wr), fabs(s[i] - sref[i])));
        wmean += w[i] / PN;
    }
    CHECK(rc == 0 && worst < 1e-6 && fabs(wmean - 1) < 1e-6,
          "DSR weights equal brute force (max diff %.2e), mean %.6f", worst, wmean);
    rc = ns_cav_dsr_weights(w, s, f, PN, pos, 1, PD, 1, &err);
    CHECK(rc < 0 && strstr(err.msg, "at least 2"), "DSR with ddof 1 needs 2 positives: %s",
          err.msg);

    // best threshold
    const double sc[] = {0.1, 0.9, 0.4, 0.35, 0.8, 0.2};
    const int lab[] = {0, 1, 1, 0, 1, 0};
    double thr, acc;
    rc = ns_cav_best_threshold(&thr, &acc, sc, lab, 6, &err);
    CHECK(rc == 0 && fabs(thr - 0.375) < 1e-12 && acc == 1.0, "best threshold %g (0.375), acc %g",
          thr, acc);
    const double sc2[] = {0.5, 0.5, 0.5, 0.5};
    const int lab2[] = {1, 0, 1, 0};
    rc = ns_cav_best_threshold(&thr, &acc, sc2, lab2, 4, &err);
    CHECK(rc == 0 && acc == 0.5, "equal scores cannot be cut between: acc %g", acc);

    // accuracy under both rules
    const float v[] = {1, 0};
    const float pp[] = {2, 1, 3, -1}, nn[] = {-1, 0, 0.5f, 5};
    ns_cav_decision lin = {NS_CAV_RULE_LINEAR, -1.0}, cosr = {NS_CAV_RULE_COSINE, -0.5};
    rc = ns_cav_accuracy(&acc, v, &lin, pp, 2, nn, 2, 2, &err);
    CHECK(rc == 0 && acc == 1.0, "linear accuracy %g (v·f - 1 > 0)", acc);
    rc = ns_cav_accuracy(&acc, v, &cosr, pp, 2, nn, 2, 2, &err);
    CHECK(rc == 0 && acc == 1.0, "cosine accuracy %g (cos > 0.5)", acc);
    CHECK(strcmp(ns_cav_rule_name(NS_CAV_RULE_COSINE), "cosine") == 0, "rule names");

    // concept-to-class and the sign fraction
    const float wh[] = {1, 0, 0, 1, -1, 0};
    const int64_t cls[] = {0, 1};
    double score;
    const float v2[] = {1, 1};
    rc = ns_cav_class_score(&score, v2, wh, 3, 2, cls, 2, &err);
    CHECK(rc == 0 && fabs(score - 1 / sqrt(2.0)) < 1e-12, "class score %g", score);
    const int64_t bad[] = {3};
    rc = ns_cav_class_score(&score, v2, wh, 3, 2, bad, 1, &err);
    CHECK(rc < 0 && strstr(err.msg, "out of range"), "class index checked: %s", err.msg);
    double frac;
    rc = ns_cav_sign_fraction(&frac, wh, 3, 2, v2, &err);
    CHECK(rc == 0 && fabs(frac - 2.0 / 3.0) < 1e-12, "sign fraction %g (2 of 3)", frac);
}

// ----------------------------------------------------------------------------
// 3. gradients

#define FD_ACC 0.25f

// central difference of fn along coordinate j of x; the step actually taken
// (after rounding to float) is the denominator
typedef double (*loss_fn)(const float *x, void *ctx);

static double fd(loss_fn fn, float *x, int j, double h, void *ctx) {
    float keep = x[j];
    x[j] = (float)(keep + h);
    double hi_x = x[j], lp = fn(x, ctx);
    x[j] = (float)(keep - h);
    double lo_x = x[j], lm = fn(x, ctx);
    x[j] = keep;
    return (lp - lm) / (hi_x - lo_x);
}

enum { GN = 6, GD = 7, GP = 3, GQ = 4 };
typedef struct gctx {
    float f[GN * GD], target[GN], w[GN];
    float pos[GP * GD], neg[GQ * GD];
    double lambda;
} gctx;

// x = (v (GD), b)
static double lg_only(const float *x, void *p) {
    gctx *c = p;
    float g[GD];
    return ns_cav_lg_loss(g, x, c->f, GN, GD, c->target, c->w, 1.0);
}
static double cls_only(const float *x, void *p) {
    gctx *c = p;
    float g[GD];
    return ns_cav_cls_loss(g, NULL, x, x[GD], c->pos, GP, c->neg, GQ, GD, 1.0);
}
static double total(const float *x, void *p) {
    gctx *c = p;
    float g[GD], gb = 0;
    return ns_cav_cls_loss(g, &gb, x, x[GD], c->pos, GP, c->neg, GQ, GD, 1.0) +
           ns_cav_lg_loss(g, x, c->f, GN, GD, c->target, c->w, c->lambda);
}

static double max_rel(const float *an, const double *num, int n) {
    double worst = 0, scale = 1e-3;
    for (int j = 0; j < n; j++) scale = fmax(scale, fabs(num[j]));
    for (int j = 0; j < n; j++) worst = fmax(worst, fabs(an[j] - num[j]) / scale);
    return worst;
}

static void test_gradients(void) {
    gctx c;
    ns_rng rng;
    ns_rng_seed(&rng, 11);
    for (int i = 0; i < GN * GD; i++) c.f[i] = (float)(ns_rng_normal(&rng) + 0.5);
    for (int j = 0; j < GD; j++) c.f[3 * GD + j] = 0; // a zero row contributes nothing
    for (int i = 0; i < GN; i++) {
        c.target[i] = (float)(0.3 + 0.3 * ns_rng_normal(&rng));
        c.w[i] = (float)(0.5 + ns_rng_uniform(&rng));
    }
    for (int i = 0; i < GP * GD; i++) c.pos[i] = (float)(ns_rng_normal(&rng) + 0.3);
    for (int i = 0; i < GQ * GD; i++) c.neg[i] = (float)(ns_rng_normal(&rng) - 0.3);
    c.lambda = 1.7;
    float x[GD + 1];
    for (int j = 0; j < GD; j++) x[j] = (float)ns_rng_normal(&rng);
    x[GD] = 0.3f;
    const double h = 1.0 / 128;
    double num[GD + 1];

    // L_LG: gradient accumulated onto FD_ACC, scaled by coef
    float g[GD + 1];
    for (int j = 0; j < GD; j++) g[j] = FD_ACC;
    double l1 = ns_cav_lg_loss(g, x, c.f, GN, GD, c.target, c.w, 2.5);
    for (int j = 0; j < GD; j++) g[j] = (float)((g[j] - FD_ACC) / 2.5);
    for (int j = 0; j < GD; j++) num[j] = fd(lg_only, x, j, h, &c);
    double e = max_rel(g, num, GD);
    CHECK(e < 1e-4 && fabs(l1 / 2.5 - lg_only(x, &c)) < 1e-12,
          "L_LG gradient (weighted, a zero row, accumulated, coef): max rel err %.2e", e);
    // the gradient of a cosine is orthogonal to v: scaling v changes nothing
    float x2[GD];
    for (int j = 0; j < GD; j++) x2[j] = 3 * x[j];
    double dot = 0;
    for (int j = 0; j < GD; j++) dot += (double)g[j] * x[j];
    CHECK(fabs(lg_only(x2, &c) - lg_only(x, &c)) < 1e-6 && fabs(dot) < 1e-5,
          "L_LG is scale-invariant in v and its gradient orthogonal to v (v·g = %.1e)", dot);
    // no weights means weight 1
    float g1[GD] = {0}, g2[GD] = {0}, ones[GN];
    for (int i = 0; i < GN; i++) ones[i] = 1;
    double la = ns_cav_lg_loss(g1, x, c.f, GN, GD, c.target, NULL, 1.0);
    double lb = ns_cav_lg_loss(g2, x, c.f, GN, GD, c.target, ones, 1.0);
    CHECK(la == lb && memcmp(g1, g2, sizeof g1) == 0, "L_LG without weights = weights 1");

    // L_cls: v and bias
    for (int j = 0; j <= GD; j++) g[j] = FD_ACC;
    ns_cav_cls_loss(g, &g[GD], x, x[GD], c.pos, GP, c.neg, GQ, GD, 1.0);
    for (int j = 0; j <= GD; j++) g[j] -= FD_ACC;
    for (int j = 0; j <= GD; j++) num[j] = fd(cls_only, x, j, h, &c);
    e = max_rel(g, num, GD + 1);
    CHECK(e < 1e-4, "L_cls gradient (v and bias): max rel err %.2e", e);

    // the total as the fit combines it
    for (int j = 0; j <= GD; j++) g[j] = 0;
    ns_cav_cls_loss(g, &g[GD], x, x[GD], c.pos, GP, c.neg, GQ, GD, 1.0);
    ns_cav_lg_loss(g, x, c.f, GN, GD, c.target, c.w, c.lambda);
    for (int j = 0; j <= GD; j++) num[j] = fd(total, x, j, h, &c);
    e = max_rel(g, num, GD + 1);
    CHECK(e < 1e-4, "L_cls + lambda L_LG gradient: max rel err %.2e", e);
}

// sklearn's LogisticRegression objective, written here independently
typedef struct lrctx {
    const float *pos, *neg;
    int n, d;
    double c;
} lrctx;

static double lr_objective(const double *th, const lrctx *l) {
    double j = 0;
    for (int k = 0; k < l->d; k++) j += 0.5 * th[k] * th[k];
    for (int i = 0; i < 2 * l->n; i++) {
        const float *x = i < l->n ? l->pos + i * l->d : l->neg + (i - l->n) * l->d;
        double y = i < l->n ? 1 : -1, z = th[l->d];
        for (int k = 0; k < l->d; k++) z += th[k] * x[k];
        double m = y * z;
        j += l->c * (m > 0 ? log1p(exp(-m)) : -m + log1p(exp(m)));
    }
    return j;
}

static void test_original_cav(void) {
    enum { N = 40, D = 6 };
    static float pos[N * D], neg[(N + 5) * D];
    ns_rng rng;
    ns_rng_seed(&rng, 5);
    const double dir[D] = {1, -0.5, 0.25, 0, 0.7, -0.2};
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++) pos[i * D + k] = (float)(ns_rng_normal(&rng) + dir[k]);
    for (int i = 0; i < N + 5; i++)
        for (int k = 0; k < D; k++) neg[i * D + k] = (float)(ns_rng_normal(&rng) - dir[k]);
    ns_err err = {{0}};
    ns_cav_config cfg;
    ns_cav_config_default(&cfg);
    float v[D];
    ns_cav_decision dec;
    ns_cav_report rep;

    // hinge, TCAV's defaults: 40 of each used, 13 held out per class
    int rc = ns_cav_fit(v, &dec, &rep, pos, N, neg, N + 5, D, &cfg, &err);
    double align = ns_cav_cos(v, (const float[]){1, -0.5f, 0.25f, 0, 0.7f, -0.2f}, D);
    CHECK(rc == 0 && rep.n_used == N && rep.n_test == 26 && rep.n_train == 54 &&
              dec.rule == NS_CAV_RULE_LINEAR && align > 0.8 && rep.test_acc > 0.8,
          "hinge CAV: %lld used, %lld/%lld train/test, cos with the planted direction %.3f "
          "(v points to the concept), test acc %.3f, %d epochs (converged %d)",
          (long long)rep.n_used, (long long)rep.n_train, (long long)rep.n_test, align,
          rep.test_acc, rep.iters, rep.converged);

    // the hinge's first epoch by hand: one row per class, sklearn's schedule
    cfg.test_frac = 0;
    cfg.max_iter = 1;
    cfg.tol = -1;
    cfg.seed = 3;
    const float p1[] = {1, 2}, n1[] = {-0.5f, 1};
    rc = ns_cav_fit(v, &dec, &rep, p1, 1, n1, 1, 2, &cfg, &err);
    ns_rng r2;
    ns_rng_seed(&r2, 3);
    int64_t order[2] = {0, 1};
    ns_rng_shuffle(&r2, order, 2);
    double alpha = 0.01, typw = sqrt(1 / sqrt(alpha)), t0 = 1 / (alpha * typw);
    double w[2] = {0, 0}, b = 0;
    for (int k = 0; k < 2; k++) {
        const float *xx = order[k] == 0 ? p1 : n1;
        double y = order[k] == 0 ? 1 : -1;
        double eta = 1 / (alpha * (t0 + k));
        double pr = w[0] * xx[0] + w[1] * xx[1] + b;
        double shrink = fmax(0, 1 - eta * alpha);
        w[0] *= shrink;
        w[1] *= shrink;
        if (y * pr <= 1) {
            w[0] += eta * y * xx[0];
            w[1] += eta * y * xx[1];
            b += eta * y;
        }
    }
    CHECK(rc == 0 && fabs(v[0] - w[0]) < 1e-5 * fabs(w[0]) + 1e-6 &&
              fabs(v[1] - w[1]) < 1e-5 * fabs(w[1]) + 1e-6 && fabs(dec.offset - b) < 1e-9 + 1e-9 * fabs(b),
          "hinge, one epoch by sklearn's optimal schedule: w (%g, %g) vs (%g, %g), b %g vs %g",
          v[0], v[1], w[0], w[1], dec.offset, b);

    // logistic: the solution is a stationary point of sklearn's objective
    ns_cav_config_default(&cfg);
    cfg.loss = NS_CAV_LOGISTIC;
    cfg.test_frac = 0;
    rc = ns_cav_fit(v, &dec, &rep, pos, N, neg, N + 5, D, &cfg, &err);
    lrctx l = {pos, neg, N, D, cfg.c};
    double th[D + 1], zero[D + 1] = {0}, gmax = 0, g0 = 0;
    for (int k = 0; k < D; k++) th[k] = v[k];
    th[D] = dec.offset;
    const double hh = 1e-4;
    for (int k = 0; k <= D; k++) {
        double keep = th[k];
        th[k] = keep + hh;
        double jp = lr_objective(th, &l);
        th[k] = keep - hh;
        double jm = lr_objective(th, &l);
        th[k] = keep;
        gmax = fmax(gmax, fabs((jp - jm) / (2 * hh)));
        zero[k] = hh;
        double z1 = lr_objective(zero, &l);
        zero[k] = -hh;
        double z2 = lr_objective(zero, &l);
        zero[k] = 0;
        g0 = fmax(g0, fabs((z1 - z2) / (2 * hh)));
    }
    CHECK(rc == 0 && rep.converged && gmax < 1e-3 * g0,
          "logistic CAV: max |dJ| by differences at the solution %.2e (at 0: %.2e), %d L-BFGS "
          "iterations",
          gmax, g0, rep.iters);

    // errors
    cfg.test_frac = 0.33;
    rc = ns_cav_fit(v, &dec, &rep, pos, 1, neg, 1, D, &cfg, &err);
    CHECK(rc < 0 && strstr(err.msg, "2 rows"), "a split needs 2 rows per class: %s", err.msg);
    float bad[D];
    memcpy(bad, pos, sizeof bad);
    bad[2] = NAN;
    rc = ns_cav_fit(v, &dec, &rep, bad, 1, neg, 1, D, &cfg, &err);
    CHECK(rc < 0 && strstr(err.msg, "not finite"), "non-finite features refused: %s", err.msg);
}

// ----------------------------------------------------------------------------
// 4. cav-fit's steps (cav_concept.h): one concept's CAV from a pool with a
// concept table, and TCAV scores through a model.

static double cos_e0(const float *v, int64_t d) {
    double nn = 0;
    for (int64_t j = 0; j < d; j++) nn += (double)v[j] * v[j];
    return nn > 0 ? v[0] / sqrt(nn) : 0;
}

static void test_concept_fit(void) {
    enum { N = 200, D = 6 };
    static float f[N * D];
    static uint8_t has[N * 2];
    static int64_t row[N];
    ns_rng rng;
    ns_rng_seed(&rng, 5);
    for (int64_t i = 0; i < N; i++) {
        int in = i % 2 == 0; // column 0: the concept, planted along e0
        for (int64_t j = 0; j < D; j++) f[i * D + j] = (float)ns_rng_normal(&rng) + (j == 0 && in ? 3.0f : 0.0f);
        has[(N - 1 - i) * 2] = (uint8_t)in; // the table in another order: row[] maps
        has[(N - 1 - i) * 2 + 1] = 2;       // column 1: unknown everywhere
        row[i] = N - 1 - i;
    }
    ns_cav_pool pool = {.f = f, .n = N, .d = D, .has = has, .k = 2, .row = row, .g = f, .e = D};
    ns_cav_job job = {.lgcav = 0, .loss = NS_CAV_HINGE, .positives = 40, .negatives = 30};
    ns_lgcav_config_default(&job.lg);
    float v[D], u[D];
    ns_cav_result o;
    ns_err err;
    int rc = ns_cav_fit_concept(v, &o, &pool, &job, "round", 0, NULL, 3, 0, &err);
    CHECK(rc == 0 && o.np == 40 && o.nn == 30 && strcmp(o.modules, "hinge") == 0 && o.heldout > 0.9 &&
              cos_e0(v, D) > 0.9,
          "original CAV from the pool: %lld/%lld rows, held-out %.3f, cos(v, e0) %.3f", (long long)o.np,
          (long long)o.nn, o.heldout, cos_e0(v, D));
    float v2[D];
    ns_cav_result o2;
    rc = ns_cav_fit_concept(v2, &o2, &pool, &job, "round", 0, NULL, 3, 0, &err);
    CHECK(rc == 0 && memcmp(v, v2, sizeof v) == 0, "the same seed gives the same CAV");
    rc = ns_cav_fit_concept(u, &o, &pool, &job, "odd", 1, NULL, 3, 0, &err);
    CHECK(rc < 0 && strstr(err.msg, "concept odd: 0 positives and 0 negatives"), "no labelled rows: %s",
          rc < 0 ? err.msg : "fitted");
    rc = ns_cav_fit_concept(u, &o, &pool, &job, "odd", 1, NULL, 4, 1, &err);
    CHECK(rc == 0 && o.np == 40 && o.nn == 30 && strcmp(o.modules, "hinge") == 0,
          "a random CAV (the TCAV null) draws from the whole pool, labelled or not (%lld/%lld rows)",
          (long long)o.np, (long long)o.nn);
    // LG-CAV guided by cosines with e0 alone (G = F here, the text is e0)
    float text[D] = {1, 0, 0, 0, 0, 0};
    job.lgcav = 1;
    job.lg.ga = job.lg.dsr = job.lg.cls = 0;
    job.lg.k_top = job.lg.k_bottom = 40;
    job.lg.epochs = 1500;
    rc = ns_cav_fit_concept(u, &o, &pool, &job, "round", 0, NULL, 3, 0, &err);
    CHECK(rc < 0 && strstr(err.msg, "needs its text embedding"), "LG-CAV without a text is refused");
    rc = ns_cav_fit_concept(u, &o, &pool, &job, "round", 0, text, 3, 0, &err);
    CHECK(rc == 0 && strcmp(o.modules, "none") == 0 && o.np == 0 && o.nn == 0 && isnan(o.heldout) &&
              cos_e0(u, D) > 0.8,
          "LG-CAV: modules %s, %lld/%lld rows used, cos(v, e0) %.3f", rc == 0 ? o.modules : err.msg,
          (long long)o.np, (long long)o.nn, cos_e0(u, D));
}

static void test_tcav(void) {
    // logits = W h + b on 4 features h: the gradient of logit k at the head's
    // input (the default probe) is W_k, so TCAV of v on class k is 1 when
    // W_k . v > 0, else 0
    const char *spec = "[input]\nshape = 4\n[linear a]\nout = 4\n[relu]\n[linear fc]\nout = 3\n";
    ns_model m;
    ns_model_init(&m);
    ns_err err;
    int ok = ns_spec_parse(&m, spec, strlen(spec), "tcav", &err) == 0;
    if (ok) ns_model_init_params(&m, 9);
    ns_probe probe;
    ns_engine e;
    ok = ok && ns_probe_init(&probe, &m, NULL, 0, &err) == 0 && ns_engine_init(&e, &m, 8, 1, &err) == 0;
    CHECK(ok, "a linear model, its probe and engine (%s)", ok ? "ok" : err.msg);
    if (!ok) {
        ns_model_free(&m);
        return;
    }
    for (int t = 0; t < m.ntensors; t++) ns_engine_set_trainable(&e, t, 0, &err);
    const float *w = m.tensors[m.nodes[m.output].params[0]].t.data; // (3, 4)
    float x[20 * 4];
    int32_t y[20];
    ns_rng rng;
    ns_rng_seed(&rng, 2);
    for (int i = 0; i < 20; i++) {
        y[i] = i % 3;
        for (int j = 0; j < 4; j++) x[i * 4 + j] = (float)ns_rng_normal(&rng);
    }
    ns_samples img = {.x = x, .y = y, .n = 20, .numel = 4};
    ns_tcav t;
    ok = ns_tcav_init(&t, &probe, &e, &img, 5, &err) == 0;
    double s0 = -1, s1 = -1, s01 = -1;
    float v[4], neg[4];
    for (int j = 0; j < 4; j++) v[j] = w[j], neg[j] = -w[j]; // v = W_0
    int64_t c0 = 0, c01[2] = {0, 1};
    ok = ok && ns_tcav_score(&s0, &t, v, &c0, 1, &err) == 0 && ns_tcav_score(&s1, &t, neg, &c0, 1, &err) == 0 &&
         ns_tcav_score(&s01, &t, v, c01, 2, &err) == 0;
    double w01 = 0;
    for (int j = 0; j < 4; j++) w01 += (double)w[4 + j] * w[j];
    double want01 = 0.5 * (1.0 + (w01 > 0 ? 1.0 : 0.0));
    CHECK(ok && s0 == 1.0 && s1 == 0.0 && s01 == want01 && t.ngrads[0] == 5 && t.ngrads[1] == 5,
          "TCAV of W_0 on class 0: %g, of -W_0: %g, on classes 0 and 1: %g (want %g); %lld gradients of class 0", s0,
          s1, s01, want01, (long long)t.ngrads[0]);
    int64_t bad = 3;
    CHECK(ns_tcav_score(&s0, &t, v, &bad, 1, &err) < 0 && isnan(s0), "a class past the model's is refused");
    ns_tcav_free(&t);
    ns_engine_free(&e);
    ns_model_free(&m);
}

int main(void) {
    setenv("NETSMITH_THREADS", "1", 0); // small products; leave the cores to others
    test_stats();
    test_blocks();
    test_gradients();
    test_original_cav();
    test_concept_fit();
    test_tcav();
    return check_done();
}
