// cav_fit.c: the original CAV of TCAV on cached features: a linear
// classifier between concept and negative features, hinge SGD exactly as
// sklearn's SGDClassifier steps or L2 logistic regression (L-BFGS) as its
// LogisticRegression solves. The contract is in cav.h; LG-CAV is in
// cav_lg.c.
//
// Dimensions: Df target features, np/nn positives/negatives (both cut to
// the smaller count), n_tr/n_test rows per class after the split.
//
// The original CAV follows sklearn's SGDClassifier step by step (below),
// not its random stream; the split rounds test_frac * n per class.
#include "cav/cav.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/blocks.h"
#include "base/vecmath.h"
#include "base/rng.h"

// ----------------------------------------------------------------------------
// the original CAV

void ns_cav_config_default(ns_cav_config *cfg) {
    *cfg = (ns_cav_config){
        .loss = NS_CAV_HINGE,
        .alpha = 0.01,
        .c = 1.0,
        .max_iter = 1000,
        .tol = 1e-3,
        .n_iter_no_change = 5,
        .test_frac = 0.33,
        .seed = 0,
    };
}

typedef struct labelled {
    const float *x; // (Df)
    double y;       // +1 concept, -1 negative
} labelled;

// sklearn's SGDClassifier(loss="hinge", penalty="l2", alpha, learning_rate=
// "optimal", fit_intercept=True, shuffle=True), _plain_sgd step by step:
//   typw = sqrt(1 / sqrt(alpha)); eta0 = typw / max(1, dloss(-typw, 1)) = typw
//   t0 = 1 / (alpha eta0); sample t (from 1): eta = 1 / (alpha (t0 + t - 1))
//   p = w·x + b; dloss = -y if y p <= 1 else 0
//   w *= max(0, 1 - eta alpha); w -= eta dloss x; b -= eta dloss
// and after each epoch (the data reshuffled before it) the stopping rule:
// an epoch whose summed hinge loss is not below best - tol * n counts toward
// n_iter_no_change; that many in a row stop the fit.
static int fit_hinge(double *w, double *b, int *iters, int *converged, const labelled *train,
                     int64_t n, int64_t df, const ns_cav_config *cfg, ns_rng *rng,
                     int64_t *order) {
    double alpha = cfg->alpha;
    double typw = sqrt(1.0 / sqrt(alpha));
    double t0 = 1.0 / (alpha * typw);
    double best = INFINITY, t = 1;
    int no_change = 0;
    *converged = 0;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    int epoch;
    for (epoch = 1; epoch <= cfg->max_iter; epoch++) {
        ns_rng_shuffle(rng, order, n);
        double sumloss = 0;
        for (int64_t k = 0; k < n; k++) {
            const labelled *s = &train[order[k]];
            double eta = 1.0 / (alpha * (t0 + t - 1.0));
            double p = *b;
            for (int64_t j = 0; j < df; j++) p += w[j] * s->x[j];
            double z = s->y * p;
            sumloss += z < 1.0 ? 1.0 - z : 0.0;
            double dloss = z <= 1.0 ? -s->y : 0.0;
            double update = -eta * dloss;
            double shrink = 1.0 - eta * alpha;
            if (shrink < 0) shrink = 0;
            for (int64_t j = 0; j < df; j++) w[j] *= shrink;
            if (update != 0) {
                for (int64_t j = 0; j < df; j++) w[j] += update * s->x[j];
                *b += update;
            }
            t += 1;
        }
        if (cfg->tol >= 0) {
            if (sumloss > best - cfg->tol * (double)n) no_change++;
            else no_change = 0;
            if (sumloss < best) best = sumloss;
            if (no_change >= cfg->n_iter_no_change) {
                *converged = 1;
                break;
            }
        }
    }
    *iters = epoch > cfg->max_iter ? cfg->max_iter : epoch;
    return 0;
}

// sklearn's LogisticRegression(C) objective, intercept unpenalised:
//   J(w, b) = 0.5 |w|^2 + C sum_i log(1 + exp(-y_i (w·x_i + b)))
// th = (w (Df), b). Returns J and writes its gradient into g (Df + 1).
static double logistic_objective(double *g, const double *th, const labelled *train, int64_t n,
                                 int64_t df, double c) {
    double j = 0;
    for (int64_t k = 0; k < df; k++) {
        j += 0.5 * th[k] * th[k];
        g[k] = th[k];
    }
    g[df] = 0;
    for (int64_t i = 0; i < n; i++) {
        double z = th[df];
        for (int64_t k = 0; k < df; k++) z += th[k] * train[i].x[k];
        double m = train[i].y * z;
        j += c * ns_softplus(-m);
        double coef = -c * train[i].y * ns_sigmoid(-m); // dJ/dz
        for (int64_t k = 0; k < df; k++) g[k] += coef * train[i].x[k];
        g[df] += coef;
    }
    return j;
}

#define LBFGS_M 10

// Minimises the logistic objective by L-BFGS (two-loop recursion, LBFGS_M
// pairs, backtracking Armijo line search). Stops when max |g| <= tol, when
// the relative decrease falls below 64 eps (scipy's ftol as sklearn sets it),
// when the line search fails, or after max_iter iterations. The objective is
// convex and its minimiser unique (strictly convex in w, and in b unless all
// labels are equal, which the caller rules out), so the answer is sklearn's
// to solver tolerance.
static int fit_logistic(double *th, int *iters, int *converged, const labelled *train,
                        int64_t n, int64_t df, const ns_cav_config *cfg, ns_err *err) {
    int64_t p = df + 1;
    double *g, *gn, *d, *thn, *sh, *yh, *rho, *al;
    ns_block_item items[] = {
        {(void **)&g, p, sizeof(double)},       {(void **)&gn, p, sizeof(double)},
        {(void **)&d, p, sizeof(double)},       {(void **)&thn, p, sizeof(double)},
        {(void **)&sh, LBFGS_M * p, sizeof(double)}, {(void **)&yh, LBFGS_M * p, sizeof(double)},
        {(void **)&rho, LBFGS_M, sizeof(double)}, {(void **)&al, LBFGS_M, sizeof(double)},
    };
    void *blk = ns_block_alloc(items, (int)(sizeof items / sizeof items[0]), err);
    if (!blk) return ns_err_prefix(err, "logistic CAV");
    double f = logistic_objective(g, th, train, n, df, cfg->c);
    int hist = 0, head = 0; // ring buffer of the last hist pairs, newest at head - 1
    *converged = 0;
    int it;
    for (it = 0; it < cfg->max_iter; it++) {
        double gmax = 0;
        for (int64_t k = 0; k < p; k++) gmax = fmax(gmax, fabs(g[k]));
        if (cfg->tol >= 0 && gmax <= cfg->tol) {
            *converged = 1;
            break;
        }
        // d = -H g by the two-loop recursion
        for (int64_t k = 0; k < p; k++) d[k] = -g[k];
        for (int h = 0; h < hist; h++) {
            int slot = (head - 1 - h + LBFGS_M) % LBFGS_M;
            double a = 0;
            for (int64_t k = 0; k < p; k++) a += sh[slot * p + k] * d[k];
            a *= rho[slot];
            al[slot] = a;
            for (int64_t k = 0; k < p; k++) d[k] -= a * yh[slot * p + k];
        }
        double gamma;
        if (hist > 0) {
            int slot = (head - 1 + LBFGS_M) % LBFGS_M;
            double yy = 0;
            for (int64_t k = 0; k < p; k++) yy += yh[slot * p + k] * yh[slot * p + k];
            gamma = 1.0 / (rho[slot] * yy);
        } else {
            double gn2 = 0;
            for (int64_t k = 0; k < p; k++) gn2 += g[k] * g[k];
            gamma = 1.0 / fmax(sqrt(gn2), 1e-300); // first step of length 1
        }
        for (int64_t k = 0; k < p; k++) d[k] *= gamma;
        for (int h = hist - 1; h >= 0; h--) {
            int slot = (head - 1 - h + LBFGS_M) % LBFGS_M;
            double bta = 0;
            for (int64_t k = 0; k < p; k++) bta += yh[slot * p + k] * d[k];
            bta *= rho[slot];
            for (int64_t k = 0; k < p; k++) d[k] += (al[slot] - bta) * sh[slot * p + k];
        }
        double gd = 0;
        for (int64_t k = 0; k < p; k++) gd += g[k] * d[k];
        if (!(gd < 0)) { // not a descent direction: restart from steepest descent
            hist = 0;
            double gn2 = 0;
            for (int64_t k = 0; k < p; k++) gn2 += g[k] * g[k];
            for (int64_t k = 0; k < p; k++) d[k] = -g[k] / fmax(sqrt(gn2), 1e-300);
            gd = -sqrt(gn2);
        }
        double step = 1.0, fn = 0;
        int ok = 0;
        for (int ls = 0; ls < 60; ls++) {
            for (int64_t k = 0; k < p; k++) thn[k] = th[k] + step * d[k];
            fn = logistic_objective(gn, thn, train, n, df, cfg->c);
            if (fn <= f + 1e-4 * step * gd) {
                ok = 1;
                break;
            }
            step *= 0.5;
        }
        if (!ok) break;
        double sy = 0;
        int slot = head;
        for (int64_t k = 0; k < p; k++) {
            sh[slot * p + k] = thn[k] - th[k];
            yh[slot * p + k] = gn[k] - g[k];
            sy += sh[slot * p + k] * yh[slot * p + k];
        }
        if (sy > 1e-300) {
            rho[slot] = 1.0 / sy;
            head = (head + 1) % LBFGS_M;
            if (hist < LBFGS_M) hist++;
        }
        double rel = (f - fn) / fmax(fmax(fabs(f), fabs(fn)), 1.0);
        memcpy(th, thn, (size_t)p * sizeof *th);
        memcpy(g, gn, (size_t)p * sizeof *g);
        f = fn;
        if (rel <= 64 * 2.220446049250313e-16) {
            *converged = 1;
            it++;
            break;
        }
    }
    *iters = it;
    free(blk);
    return 0;
}

static double linear_acc(const double *w, double b, const labelled *s, int64_t n, int64_t df) {
    if (n == 0) return NAN;
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) {
        double z = b;
        for (int64_t k = 0; k < df; k++) z += w[k] * s[i].x[k];
        ok += (z > 0) == (s[i].y > 0);
    }
    return (double)ok / (double)n;
}

int ns_cav_fit(float *v, ns_cav_decision *dec, ns_cav_report *rep, const float *pos,
               int64_t np, const float *neg, int64_t nn, int64_t df, const ns_cav_config *cfg,
               ns_err *err) {
    if (!v || !dec || !pos || !neg || !cfg || df <= 0 || np <= 0 || nn <= 0)
        return ns_errf(err, "cav: bad arguments (np %lld, nn %lld, Df %lld)", (long long)np,
                       (long long)nn, (long long)df);
    if ((unsigned)cfg->loss >= NS_CAV_LOSS_COUNT)
        return ns_errf(err, "cav: unknown loss %d", (int)cfg->loss);
    if (cfg->loss == NS_CAV_HINGE && !(cfg->alpha > 0))
        return ns_errf(err, "cav: alpha must be > 0 (%g)", cfg->alpha);
    if (cfg->loss == NS_CAV_LOGISTIC && !(cfg->c > 0))
        return ns_errf(err, "cav: C must be > 0 (%g)", cfg->c);
    if (cfg->max_iter < 1) return ns_errf(err, "cav: max_iter must be >= 1 (%d)", cfg->max_iter);
    if (cfg->n_iter_no_change < 1)
        return ns_errf(err, "cav: n_iter_no_change must be >= 1 (%d)", cfg->n_iter_no_change);
    if (!(cfg->test_frac >= 0 && cfg->test_frac < 1))
        return ns_errf(err, "cav: test fraction must be in [0, 1) (%g)", cfg->test_frac);
    int64_t m = np < nn ? np : nn;
    if (ns_check_finite(pos, m, df, "cav positives", err) < 0) return -1;
    if (ns_check_finite(neg, m, df, "cav negatives", err) < 0) return -1;
    int64_t n_test = 0;
    if (cfg->test_frac > 0) {
        if (m < 2)
            return ns_errf(err, "cav: a held-out split needs 2 rows per class (have %lld)",
                           (long long)m);
        n_test = (int64_t)llround(cfg->test_frac * (double)m);
        if (n_test < 1) n_test = 1;
        if (n_test > m - 1) n_test = m - 1;
    }
    int64_t n_tr = m - n_test; // per class

    labelled *train, *test;
    int64_t *perm, *order;
    double *th;
    ns_block_item items[] = {
        {(void **)&train, 2 * n_tr, sizeof(labelled)},
        {(void **)&test, 2 * n_test, sizeof(labelled)},
        {(void **)&perm, m, sizeof(int64_t)},
        {(void **)&order, 2 * n_tr, sizeof(int64_t)},
        {(void **)&th, df + 1, sizeof(double)},
    };
    void *blk = ns_block_alloc(items, (int)(sizeof items / sizeof items[0]), err);
    if (!blk) return ns_err_prefix(err, "cav");

    ns_rng rng;
    ns_rng_seed(&rng, cfg->seed);
    for (int c = 0; c < 2; c++) { // class 0: positives (+1), 1: negatives (-1)
        const float *x = c == 0 ? pos : neg;
        double y = c == 0 ? 1.0 : -1.0;
        for (int64_t i = 0; i < m; i++) perm[i] = i;
        if (n_test > 0) ns_rng_shuffle(&rng, perm, m);
        for (int64_t i = 0; i < n_test; i++)
            test[c * n_test + i] = (labelled){x + perm[i] * df, y};
        for (int64_t i = 0; i < n_tr; i++)
            train[c * n_tr + i] = (labelled){x + perm[n_test + i] * df, y};
    }

    int iters = 0, converged = 0;
    double *w = th, b = 0;
    if (cfg->loss == NS_CAV_HINGE) {
        fit_hinge(w, &b, &iters, &converged, train, 2 * n_tr, df, cfg, &rng, order);
    } else {
        if (fit_logistic(th, &iters, &converged, train, 2 * n_tr, df, cfg, err) < 0) {
            free(blk);
            return -1;
        }
        b = th[df];
    }
    for (int64_t k = 0; k < df; k++) v[k] = (float)w[k];
    dec->rule = NS_CAV_RULE_LINEAR;
    dec->offset = b;
    if (rep) {
        rep->n_used = m;
        rep->n_train = 2 * n_tr;
        rep->n_test = 2 * n_test;
        rep->train_acc = linear_acc(w, b, train, 2 * n_tr, df);
        rep->test_acc = linear_acc(w, b, test, 2 * n_test, df);
        rep->iters = iters;
        rep->converged = converged;
    }
    free(blk);
    return 0;
}
