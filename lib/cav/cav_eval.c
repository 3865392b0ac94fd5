// cav_eval.c: how a concept activation vector is judged: its decision score,
// concept accuracy, the threshold that best separates labelled scores, the
// concept-to-class cosine, the TCAV sign fraction, and Student's t-test with
// its regularized incomplete beta function. The contracts are in cav.h.
//
// Dimensions: Df feature size, K classes, n rows.
#include "cav/cav.h"

#include <math.h>
#include <stdlib.h>

#include "base/vecmath.h"

static const char *const rule_names[NS_CAV_RULE_COUNT] = {
    [NS_CAV_RULE_LINEAR] = "linear",
    [NS_CAV_RULE_COSINE] = "cosine",
};
_Static_assert(NS_CAV_RULE_COUNT == 2, "rule_names[] must cover ns_cav_rule");

const char *ns_cav_rule_name(ns_cav_rule rule) {
    return (unsigned)rule < NS_CAV_RULE_COUNT ? rule_names[rule] : "?";
}

// ----------------------------------------------------------------------------
// scores and accuracy

double ns_cav_cos(const float *a, const float *b, int64_t d) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < d; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

double ns_cav_score(const float *v, const ns_cav_decision *dec, const float *f, int64_t df) {
    if (dec->rule == NS_CAV_RULE_COSINE) return ns_cav_cos(v, f, df) + dec->offset;
    return ns_dot_f(v, f, df) + dec->offset;
}

int ns_cav_accuracy(double *acc, const float *v, const ns_cav_decision *dec,
                    const float *pos, int64_t np, const float *neg, int64_t nn, int64_t df,
                    ns_err *err) {
    if (!acc || !v || !dec || df <= 0 || np < 0 || nn < 0 || np + nn == 0 ||
        (np > 0 && !pos) || (nn > 0 && !neg))
        return ns_errf(err, "cav accuracy: bad arguments (np %lld, nn %lld, Df %lld)",
                       (long long)np, (long long)nn, (long long)df);
    if ((unsigned)dec->rule >= NS_CAV_RULE_COUNT)
        return ns_errf(err, "cav accuracy: unknown decision rule %d", (int)dec->rule);
    int64_t correct = 0;
    for (int64_t i = 0; i < np; i++) correct += ns_cav_score(v, dec, pos + i * df, df) > 0;
    for (int64_t i = 0; i < nn; i++) correct += !(ns_cav_score(v, dec, neg + i * df, df) > 0);
    *acc = (double)correct / (double)(np + nn);
    return 0;
}

typedef struct scored {
    double s;
    int label;
} scored;

static int cmp_scored(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    return (a->s > b->s) - (a->s < b->s);
}

int ns_cav_best_threshold(double *thr, double *acc, const double *scores, const int *labels,
                          int64_t n, ns_err *err) {
    if (!thr || !acc || !scores || !labels || n <= 0)
        return ns_errf(err, "best threshold: bad arguments (n %lld)", (long long)n);
    scored *sv = malloc((size_t)n * sizeof *sv);
    if (!sv) return ns_errf(err, "best threshold: out of memory (n %lld)", (long long)n);
    int64_t n_pos = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(scores[i])) {
            free(sv);
            return ns_errf(err, "best threshold: score %lld is not finite", (long long)i);
        }
        sv[i].s = scores[i];
        sv[i].label = labels[i] != 0;
        n_pos += sv[i].label;
    }
    qsort(sv, (size_t)n, sizeof *sv, cmp_scored);
    // Cut j: rows [0, j) say "not concept", rows [j, n) say "concept".
    int64_t neg_below = 0, pos_above = n_pos, best_j = -1, best_correct = -1;
    double best_dist = 0;
    for (int64_t j = 0; j <= n; j++) {
        if (j > 0) {
            neg_below += !sv[j - 1].label;
            pos_above -= sv[j - 1].label;
        }
        if (j > 0 && j < n && !(sv[j - 1].s < sv[j].s)) continue; // not a cut between equals
        int64_t correct = neg_below + pos_above;
        double dist = fabs((double)j - 0.5 * (double)n);
        if (correct > best_correct || (correct == best_correct && dist < best_dist)) {
            best_correct = correct;
            best_j = j;
            best_dist = dist;
        }
    }
    double t;
    if (best_j == 0) t = sv[0].s - 1.0;
    else if (best_j == n) t = sv[n - 1].s + 1.0;
    else {
        t = 0.5 * (sv[best_j - 1].s + sv[best_j].s);
        if (!(t < sv[best_j].s)) t = sv[best_j - 1].s; // neighbours one ulp apart
    }
    free(sv);
    *thr = t;
    *acc = (double)best_correct / (double)n;
    return 0;
}

// ----------------------------------------------------------------------------
// concept-to-class and TCAV

int ns_cav_class_score(double *score, const float *v, const float *w, int64_t k, int64_t df,
                       const int64_t *classes, int64_t nc, ns_err *err) {
    if (!score || !v || !w || !classes || k <= 0 || df <= 0 || nc <= 0)
        return ns_errf(err, "class score: bad arguments (K %lld, Df %lld, %lld classes)",
                       (long long)k, (long long)df, (long long)nc);
    double sum = 0;
    for (int64_t i = 0; i < nc; i++) {
        if (classes[i] < 0 || classes[i] >= k)
            return ns_errf(err, "class score: class %lld out of range (K %lld)",
                           (long long)classes[i], (long long)k);
        sum += ns_cav_cos(v, w + classes[i] * df, df);
    }
    *score = sum / (double)nc;
    return 0;
}

int ns_cav_sign_fraction(double *frac, const float *grads, int64_t n, int64_t df,
                         const float *v, ns_err *err) {
    if (!frac || !grads || !v || n <= 0 || df <= 0)
        return ns_errf(err, "sign fraction: bad arguments (n %lld, Df %lld)", (long long)n,
                       (long long)df);
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) count += ns_dot_f(grads + i * df, v, df) > 0;
    *frac = (double)count / (double)n;
    return 0;
}

// ----------------------------------------------------------------------------
// the regularized incomplete beta function and Student's t

// The continued fraction of I_x(a, b) (DLMF 8.17.22):
//   I_x(a,b) = x^a (1-x)^b / (a B(a,b)) * 1 / (1 + d1 / (1 + d2 / (1 + ...)))
//   d_{2m}   =  m (b - m) x / ((a + 2m - 1)(a + 2m))
//   d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
// evaluated forwards by the modified Lentz method (C_j = 1 + d_j / C_{j-1},
// D_j = 1 / (1 + d_j D_{j-1}), f_j = f_{j-1} C_j D_j, with tiny values kept
// off zero). It converges fast for x < (a + 1) / (a + b + 2); ns_betainc uses
// I_x(a, b) = 1 - I_{1-x}(b, a) beyond that.
#define CF_TINY 1e-300
#define CF_EPS 1e-16
#define CF_MAX_TERMS 100000

static double lentz_step(double d_j, double *c, double *d) {
    *d = 1.0 + d_j * *d;
    if (fabs(*d) < CF_TINY) *d = CF_TINY;
    *c = 1.0 + d_j / *c;
    if (fabs(*c) < CF_TINY) *c = CF_TINY;
    *d = 1.0 / *d;
    return *c * *d;
}

static double beta_cf(double a, double b, double x) {
    // f = 1 / (1 + d1 / (1 + ...)): start from the tail "1 + d1 / ..." with
    // f_0 = tiny (Lentz's convention for b_0 = 0) so the first term is 1.
    double f = CF_TINY, c = f, d = 0.0;
    f *= lentz_step(1.0, &c, &d); // the leading 1 / (...) as numerator 1 over b_1 = 1
    for (int m = 0; m < CF_MAX_TERMS; m++) {
        double d_odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        double step = lentz_step(d_odd, &c, &d);
        f *= step;
        double mm = m + 1.0;
        double d_even = mm * (b - mm) * x / ((a + 2.0 * mm - 1.0) * (a + 2.0 * mm));
        double step2 = lentz_step(d_even, &c, &d);
        f *= step2;
        if (fabs(step - 1.0) < CF_EPS && fabs(step2 - 1.0) < CF_EPS) break;
    }
    return f;
}

double ns_betainc(double a, double b, double x) {
    if (!(a > 0) || !(b > 0) || !(x >= 0 && x <= 1)) return NAN;
    if (x == 0) return 0.0;
    if (x == 1) return 1.0;
    double log_front = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1.0) / (a + b + 2.0)) return exp(log_front) * beta_cf(a, b, x) / a;
    return 1.0 - exp(log_front) * beta_cf(b, a, 1.0 - x) / b;
}

double ns_t_pvalue(double t, double dof) {
    if (isnan(t) || !(dof > 0)) return NAN;
    if (isinf(t)) return 0.0;
    return ns_betainc(0.5 * dof, 0.5, dof / (dof + t * t));
}

static void mean_ss(const double *x, int64_t n, double *mean, double *ss) {
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) m += x[i];
    m /= (double)n;
    for (int64_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    *mean = m;
    *ss = s;
}

int ns_ttest_ind(double *t, double *p, const double *a, int64_t na, const double *b,
                 int64_t nb, ns_err *err) {
    if (!t || !p || !a || !b || na < 2 || nb < 2)
        return ns_errf(err, "t-test: needs at least 2 values per sample (have %lld and %lld)",
                       (long long)na, (long long)nb);
    for (int64_t i = 0; i < na; i++)
        if (!isfinite(a[i])) return ns_errf(err, "t-test: a[%lld] is not finite", (long long)i);
    for (int64_t i = 0; i < nb; i++)
        if (!isfinite(b[i])) return ns_errf(err, "t-test: b[%lld] is not finite", (long long)i);
    double ma, ssa, mb, ssb;
    mean_ss(a, na, &ma, &ssa);
    mean_ss(b, nb, &mb, &ssb);
    double dof = (double)(na + nb - 2);
    double s2 = (ssa + ssb) / dof;
    double se = sqrt(s2 * (1.0 / (double)na + 1.0 / (double)nb));
    double diff = ma - mb;
    if (se == 0) {
        if (diff == 0) {
            *t = *p = NAN;
        } else {
            *t = diff > 0 ? INFINITY : -INFINITY;
            *p = 0.0;
        }
        return 0;
    }
    *t = diff / se;
    *p = ns_t_pvalue(*t, dof);
    return 0;
}
