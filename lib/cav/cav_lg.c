// cav_lg.c: LG-CAV on cached features, with its modules (probe selection,
// concept ensemble, Gaussian alignment, deviation sample reweighting, L_cls)
// and their building blocks. The contracts are in cav.h; the method in
// arXiv:2410.10308 (LG-CAV, NeurIPS 2024). The original CAV is in cav_fit.c.
//
// Dimensions: N pool, R selected probes, Df target features, Dv VLM
// embeddings, T templates, np/nn positives/negatives.
//
// Choices the paper leaves open (UNSPEC there; each is a field of
// ns_lgcav_config or ns_cav_config unless noted):
//  - Probes: ties in a(x) go to the lower row index; a pool smaller than
//    k_top + k_bottom is used whole, its top part the upper share
//    k_top / (k_top + k_bottom).
//  - CE: each template normalised, averaged, renormalised (CLIP practice).
//    Without CE one template (template_index) stands alone.
//  - GA: pairs x' < x'' without the diagonal (pair_diag); every std has
//    ddof 1, torch.std's default and the likely framework (std_ddof).
//  - DSR: s(x) uses the same std; w has mean 1 over R.
//  - L_LG: the paper's "||.||_2" of a scalar read as the squared error.
//  - L_cls: BCE with logits on v·f + b over P (label 1) and N (label 0),
//    averaged over the np + nn rows (not class-balanced); the bias is
//    trainable and not in L_LG. total = L_cls + lambda L_LG; without L_cls the
//    total is lambda L_LG (lambda then only scales the gradient).
//  - Each step takes one mini-batch of R (reshuffled every epoch) for L_LG and
//    all labelled rows for L_cls (they are few: 10 + 10 in the paper).
//  - Feature scale: L_cls sees the features divided by their RMS norm over
//    R, P and N, an exact reparametrisation (the returned v is for raw
//    features) that makes lr independent of the feature scale; the cosines do
//    not care. v starts as a unit vector in that scaled space.
//  - Optimiser defaults: Adam (torch's betas) with coupled L2 0.3 on v (in
//    the scaled space: a penalty 0.15 |v|^2 s^2, s the RMS feature norm), lr
//    0.02 with cosine decay, 60 epochs of batches of 100, a seeded random
//    start. The paper's SGD at lr 1e-3 for 10 epochs barely moves v at this
//    scale. The L2 matters when L_cls is on: 10 + 10 labelled rows are
//    linearly separable in any realistic Df, so without it |v| grows to widen
//    the margin and L_cls, whose scale grows with |v|, swamps L_LG, which
//    does not (it sees only v's direction, and its gradient shrinks as
//    1/|v|): the result is then the 20-sample classifier again. With the
//    L2, L_cls stays near its linear regime (a pull along the labelled mean
//    difference, with a bias near the midpoint) and L_LG shapes the
//    direction. On the synthetic benchmark of tests/unit/test_cav.c the
//    result is the same from 20 to 200 epochs and lr 0.005 to 0.05; weight
//    decay 0, 0.1 or 1 moves the balance (numbers in the test's header).
//    The paper names no L2; this default is tuned on that benchmark only.
//    Without L_cls there is no decay and v is put back on the unit sphere
//    after every step: L_LG sees only v's direction, and a norm left free
//    grows with every orthogonal step, shrinking the steps' angle (training
//    then stalls).
//  - Every std (GA, DSR) and the default weight decay are flags; so are
//    the probe counts, lambda, the threshold rule, the start and the seed.
//  - Without L_cls the decision is cos(v, f) > threshold, the threshold that
//    best separates R's top part from its bottom part (thresh BEST), or the
//    midpoint of the two parts' mean cosines (MID). Either sits between the
//    probes' extremes, not at the concept's own boundary, which unlabelled
//    probes cannot tell: for a rare concept it lies too low. With L_cls the
//    decision is the classifier's own (bias from the labelled rows alone).
//
// Products: the pairwise-cosine Gram blocks of GA and the probe-positive
// cosines of DSR go through ns_sgemm; the matrix-vector products of the
// losses are plain loops summed in double (BLIS offers nothing at that size,
// and the finite-difference checks want the precision).
#include "cav/cav.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "base/blocks.h"
#include "base/vecmath.h"
#include "nn/optim.h"
#include "base/rng.h"

// ----------------------------------------------------------------------------
// LG-CAV building blocks

int ns_cav_text_embedding(float *t, const float *tpl, int64_t nt, int64_t dv, int ensemble,
                          int64_t index, ns_err *err) {
    if (!t || !tpl || nt <= 0 || dv <= 0)
        return ns_errf(err, "text embedding: bad arguments (T %lld, Dv %lld)", (long long)nt,
                       (long long)dv);
    if (!ensemble) {
        if (index < 0 || index >= nt)
            return ns_errf(err, "text embedding: template %lld out of range (T %lld)",
                           (long long)index, (long long)nt);
        double nr = ns_norm_f(tpl + index * dv, dv);
        if (!(nr > 0) || !isfinite(nr))
            return ns_errf(err, "text embedding: template %lld is zero or not finite",
                           (long long)index);
        for (int64_t j = 0; j < dv; j++) t[j] = (float)(tpl[index * dv + j] / nr);
        return 0;
    }
    for (int64_t j = 0; j < dv; j++) t[j] = 0;
    double *acc = calloc((size_t)dv, sizeof *acc);
    if (!acc) return ns_errf(err, "text embedding: out of memory (Dv %lld)", (long long)dv);
    for (int64_t i = 0; i < nt; i++) {
        double nr = ns_norm_f(tpl + i * dv, dv);
        if (!(nr > 0) || !isfinite(nr)) {
            free(acc);
            return ns_errf(err, "text embedding: template %lld is zero or not finite",
                           (long long)i);
        }
        for (int64_t j = 0; j < dv; j++) acc[j] += tpl[i * dv + j] / nr;
    }
    double s = 0;
    for (int64_t j = 0; j < dv; j++) s += acc[j] * acc[j];
    s = sqrt(s);
    if (!(s > 0)) {
        free(acc);
        return ns_errf(err, "text embedding: the templates average to zero");
    }
    for (int64_t j = 0; j < dv; j++) t[j] = (float)(acc[j] / s);
    free(acc);
    return 0;
}

void ns_cav_vlm_scores(float *a, const float *g, int64_t n, int64_t dv, const float *t) {
    for (int64_t i = 0; i < n; i++) a[i] = (float)ns_cav_cos(t, g + i * dv, dv);
}

typedef struct ranked {
    float a;
    int64_t i;
} ranked;

static int cmp_ranked_desc(const void *pa, const void *pb) {
    const ranked *x = pa, *y = pb;
    if (x->a != y->a) return x->a < y->a ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

int64_t ns_cav_select_probes(int64_t *idx, int64_t *n_top, const float *a, int64_t n,
                             int64_t k_top, int64_t k_bottom) {
    ranked *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    if (!r) return -1;
    for (int64_t i = 0; i < n; i++) r[i] = (ranked){a[i], i};
    qsort(r, (size_t)n, sizeof *r, cmp_ranked_desc);
    int64_t nr;
    if (n <= k_top + k_bottom) {
        for (int64_t i = 0; i < n; i++) idx[i] = r[i].i;
        nr = n;
        *n_top = k_top + k_bottom > 0
                     ? (int64_t)llround((double)n * (double)k_top / (double)(k_top + k_bottom))
                     : 0;
    } else {
        for (int64_t i = 0; i < k_top; i++) idx[i] = r[i].i;
        for (int64_t i = 0; i < k_bottom; i++) idx[k_top + i] = r[n - k_bottom + i].i;
        nr = k_top + k_bottom;
        *n_top = k_top;
    }
    free(r);
    return nr;
}

int ns_cav_pair_stats(double *mean, double *sd, const float *f, int64_t n, int64_t df,
                      int diag, int ddof, ns_err *err) {
    if (!mean || !sd || !f || n <= 0 || df <= 0 || ddof < 0 || ddof > 1)
        return ns_errf(err, "pair stats: bad arguments (n %lld, Df %lld, ddof %d)",
                       (long long)n, (long long)df, ddof);
    double count = diag ? (double)n * (double)n : 0.5 * (double)n * (double)(n - 1);
    if (!(count - ddof > 0))
        return ns_errf(err, "pair stats: too few rows for pairs (%lld)", (long long)n);
    int64_t bs = (int64_t)(1 << 22) / n; // Gram block of about 4M floats
    if (bs < 1) bs = 1;
    if (bs > n) bs = n;
    float *u, *gram;
    ns_block_item items[] = {
        {(void **)&u, n * df, sizeof(float)},
        {(void **)&gram, bs * n, sizeof(float)},
    };
    void *blk = ns_block_alloc(items, 2, err);
    if (!blk) return ns_err_prefix(err, "pair stats");
    memcpy(u, f, (size_t)(n * df) * sizeof *u);
    ns_normalize_rows(u, n, df);
    double sum = 0, sumsq = 0;
    for (int64_t i0 = 0; i0 < n; i0 += bs) {
        int64_t rows = n - i0 < bs ? n - i0 : bs;
        ns_sgemm(0, 1, rows, n, df, 1.0f, u + i0 * df, df, u, df, 0.0f, gram, n);
        for (int64_t r = 0; r < rows; r++) {
            int64_t i = i0 + r;
            const float *gr = gram + r * n;
            double s = 0, s2 = 0;
            for (int64_t j = diag ? 0 : i + 1; j < n; j++) {
                s += gr[j];
                s2 += (double)gr[j] * gr[j];
            }
            sum += s;
            sumsq += s2;
        }
    }
    free(blk);
    double mu = sum / count;
    double var = (sumsq - count * mu * mu) / (count - ddof);
    *mean = mu;
    *sd = var > 0 ? sqrt(var) : 0.0;
    return 0;
}

int ns_cav_dsr_weights(float *w, float *s, const float *f, int64_t n, const float *pos,
                       int64_t np, int64_t df, int ddof, ns_err *err) {
    if (!w || !f || !pos || n <= 0 || df <= 0 || ddof < 0 || ddof > 1)
        return ns_errf(err, "DSR: bad arguments (n %lld, Df %lld, ddof %d)", (long long)n,
                       (long long)df, ddof);
    if (np < 1 + ddof)
        return ns_errf(err, "DSR: needs at least %d positives (have %lld)", 1 + ddof,
                       (long long)np);
    int64_t bs = (int64_t)(1 << 22) / np;
    if (bs < 1) bs = 1;
    if (bs > n) bs = n;
    float *ur, *up, *c;
    ns_block_item items[] = {
        {(void **)&ur, bs * df, sizeof(float)},
        {(void **)&up, np * df, sizeof(float)},
        {(void **)&c, bs * np, sizeof(float)},
    };
    void *blk = ns_block_alloc(items, 3, err);
    if (!blk) return ns_err_prefix(err, "DSR");
    memcpy(up, pos, (size_t)(np * df) * sizeof *up);
    ns_normalize_rows(up, np, df);
    double smin = INFINITY;
    for (int64_t i0 = 0; i0 < n; i0 += bs) {
        int64_t rows = n - i0 < bs ? n - i0 : bs;
        memcpy(ur, f + i0 * df, (size_t)(rows * df) * sizeof *ur);
        ns_normalize_rows(ur, rows, df);
        ns_sgemm(0, 1, rows, np, df, 1.0f, ur, df, up, df, 0.0f, c, np);
        for (int64_t r = 0; r < rows; r++) {
            double m = 0, v = 0;
            for (int64_t j = 0; j < np; j++) m += c[r * np + j];
            m /= (double)np;
            for (int64_t j = 0; j < np; j++) v += (c[r * np + j] - m) * (c[r * np + j] - m);
            double sv = sqrt(v / (double)(np - ddof));
            w[i0 + r] = (float)sv; // s(x) for now
            if (sv < smin) smin = sv;
        }
    }
    free(blk);
    // w = n exp(-s) / sum exp(-s), shifted by min s for range (the ratio is unchanged)
    double z = 0;
    for (int64_t i = 0; i < n; i++) z += exp(-(w[i] - smin));
    for (int64_t i = 0; i < n; i++) {
        if (s) s[i] = w[i];
        w[i] = (float)((double)n * exp(-(w[i] - smin)) / z);
    }
    return 0;
}

double ns_cav_lg_loss(float *grad_v, const float *v, const float *f, int64_t n, int64_t df,
                      const float *target, const float *w, double coef) {
    double nv = ns_norm_f(v, df);
    double loss = 0, rc = 0; // rc = sum r_i c_i
    for (int64_t i = 0; i < n; i++) {
        const float *fi = f + i * df;
        double fv = 0, ff = 0;
        for (int64_t j = 0; j < df; j++) {
            fv += (double)fi[j] * v[j];
            ff += (double)fi[j] * fi[j];
        }
        double nf = sqrt(ff);
        double c = nf > 0 ? fv / (nf * nv) : 0.0;
        double wi = w ? w[i] : 1.0;
        double e = c - target[i];
        loss += wi * e * e;
        if (nf > 0) {
            double r = coef * 2.0 * wi * e / (double)n; // d(coef L)/d c_i
            rc += r * c;
            double k = r / (nf * nv);
            for (int64_t j = 0; j < df; j++) grad_v[j] += (float)(k * fi[j]);
        }
    }
    // d c_i / dv = f_i / (|f_i| |v|) - c_i v / |v|^2
    double kv = rc / (nv * nv);
    for (int64_t j = 0; j < df; j++) grad_v[j] -= (float)(kv * v[j]);
    return coef * loss / (double)n;
}

double ns_cav_cls_loss(float *grad_v, float *grad_b, const float *v, float b, const float *pos,
                       int64_t n_pos, const float *neg, int64_t n_neg, int64_t df, double coef) {
    int64_t n = n_pos + n_neg;
    double loss = 0, gb = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *x = i < n_pos ? pos + i * df : neg + (i - n_pos) * df;
        double y = i < n_pos ? 1.0 : 0.0;
        double z = b + ns_dot_f(v, x, df);
        loss += ns_softplus(z) - y * z;
        double dz = coef * (ns_sigmoid(z) - y) / (double)n;
        for (int64_t j = 0; j < df; j++) grad_v[j] += (float)(dz * x[j]);
        gb += dz;
    }
    if (grad_b) *grad_b += (float)gb;
    return coef * loss / (double)n;
}

// ----------------------------------------------------------------------------
// LG-CAV

void ns_lgcav_config_default(ns_lgcav_config *cfg) {
    *cfg = (ns_lgcav_config){
        .k_top = 500,
        .k_bottom = 500,
        .ga = 1,
        .ce = 1,
        .template_index = 0,
        .dsr = 1,
        .cls = 1,
        .lg = 1,
        .lambda = 1.0,
        .std_ddof = 1,
        .pair_diag = 0,
        .thresh = NS_LGCAV_THRESH_BEST,
        .lr = 0.02,
        .schedule = "cosine",
        .epochs = 60,
        .batch = 100,
        .init = NS_LGCAV_INIT_RANDOM,
        .seed = 0,
    };
    ns_optim_config_default(&cfg->optim, NS_OPTIM_ADAM);
    cfg->optim.weight_decay = 0.3; // L2 on v in RMS-feature units, see the top of the file
}

static int check_lgcav(const ns_lgcav_input *in, const ns_lgcav_config *cfg, ns_err *err) {
    if (!in || !cfg) return ns_errf(err, "LG-CAV: no input or config");
    if (in->n <= 0 || in->df <= 0 || in->dv <= 0 || in->nt <= 0 || !in->f || !in->g || !in->tpl)
        return ns_errf(err, "LG-CAV: bad input (N %lld, Df %lld, Dv %lld, T %lld)",
                       (long long)in->n, (long long)in->df, (long long)in->dv,
                       (long long)in->nt);
    if (in->np < 0 || in->nn < 0 || (in->np > 0 && !in->pos) || (in->nn > 0 && !in->neg))
        return ns_errf(err, "LG-CAV: bad labelled rows (np %lld, nn %lld)", (long long)in->np,
                       (long long)in->nn);
    if (cfg->k_top < 0 || cfg->k_bottom < 0 || cfg->k_top > INT64_MAX / 2 ||
        cfg->k_bottom > INT64_MAX / 2 || cfg->k_top + cfg->k_bottom <= 0)
        return ns_errf(err, "LG-CAV: probe counts must be >= 0 with a positive sum (%lld, %lld)",
                       (long long)cfg->k_top, (long long)cfg->k_bottom);
    if (!cfg->ce && (cfg->template_index < 0 || cfg->template_index >= in->nt))
        return ns_errf(err, "LG-CAV: template %lld out of range (T %lld)",
                       (long long)cfg->template_index, (long long)in->nt);
    if (cfg->std_ddof != 0 && cfg->std_ddof != 1)
        return ns_errf(err, "LG-CAV: std ddof must be 0 or 1 (%d)", cfg->std_ddof);
    if (cfg->dsr && in->np < 1 + cfg->std_ddof)
        return ns_errf(err, "LG-CAV: DSR needs at least %d positives (have %lld)",
                       1 + cfg->std_ddof, (long long)in->np);
    if (cfg->cls && (in->np < 1 || in->nn < 1))
        return ns_errf(err, "LG-CAV: L_cls needs positives and negatives (have %lld and %lld)",
                       (long long)in->np, (long long)in->nn);
    if (!cfg->cls && !cfg->lg) return ns_errf(err, "LG-CAV: neither L_LG nor L_cls is on");
    if (!(cfg->lambda >= 0) || !isfinite(cfg->lambda))
        return ns_errf(err, "LG-CAV: lambda must be >= 0 (%g)", cfg->lambda);
    if ((unsigned)cfg->thresh >= NS_LGCAV_THRESH_COUNT)
        return ns_errf(err, "LG-CAV: unknown threshold rule %d", (int)cfg->thresh);
    if ((unsigned)cfg->init >= NS_LGCAV_INIT_COUNT)
        return ns_errf(err, "LG-CAV: unknown init %d", (int)cfg->init);
    if (!(cfg->lr > 0) || !isfinite(cfg->lr))
        return ns_errf(err, "LG-CAV: lr must be > 0 (%g)", cfg->lr);
    if (cfg->epochs < 1) return ns_errf(err, "LG-CAV: epochs must be >= 1 (%d)", cfg->epochs);
    if (cfg->batch < 0) return ns_errf(err, "LG-CAV: batch must be >= 0 (%lld)",
                                       (long long)cfg->batch);
    if (ns_check_finite(in->f, in->n, in->df, "LG-CAV pool features", err) < 0) return -1;
    if (ns_check_finite(in->g, in->n, in->dv, "LG-CAV pool VLM embeddings", err) < 0) return -1;
    if (ns_check_finite(in->tpl, in->nt, in->dv, "LG-CAV templates", err) < 0) return -1;
    if (in->np && ns_check_finite(in->pos, in->np, in->df, "LG-CAV positives", err) < 0) return -1;
    if (in->nn && ns_check_finite(in->neg, in->nn, in->df, "LG-CAV negatives", err) < 0) return -1;
    return 0;
}

// Moves rows of (f, target, w) into (f2, target2, w2) in the order perm.
static void permute_rows(float *f2, float *t2, float *w2, const float *f, const float *t,
                         const float *w, const int64_t *perm, int64_t n, int64_t df) {
    for (int64_t i = 0; i < n; i++) {
        memcpy(f2 + i * df, f + perm[i] * df, (size_t)df * sizeof *f);
        t2[i] = t[perm[i]];
        w2[i] = w[perm[i]];
    }
}

// One fit: its buffers (one block, sized in lgcav_alloc) and what each step
// hands to the next. rep collects the figures ns_lgcav_fit reports.
typedef struct lgcav_fit {
    const ns_lgcav_input *in;
    const ns_lgcav_config *cfg;
    int64_t n, df, dv;
    float *t, *a, *fr, *fr2, *ar, *tg, *tg2, *w, *w2, *fl, *u, *gu, *ub;
    int64_t *idx, *perm;
    double *sc;
    int *lab;
    void *blk;
    int64_t nr, n_top;       // |R| and its top part
    double scale;            // the RMS norm L_cls's features are divided by
    ns_rng rng;              // the random start, then the epochs' shuffles
    ns_optim *opt;
    ns_lr_schedule sched;
    int64_t batch, spe;      // mini-batch size and steps per epoch
    ns_lgcav_report rep;
} lgcav_fit;

static int lgcav_alloc(lgcav_fit *s, ns_err *err) {
    const ns_lgcav_config *cfg = s->cfg;
    const int64_t n = s->n, df = s->df, dv = s->dv;
    const int64_t nl = cfg->cls ? s->in->np + s->in->nn : 0;
    // |R| is at most min(N, k_top + k_bottom); size the per-probe buffers by it.
    int64_t rmax = n < cfg->k_top + cfg->k_bottom ? n : cfg->k_top + cfg->k_bottom;
    ns_block_item items[] = {
        {(void **)&s->t, dv, sizeof(float)},       {(void **)&s->a, n, sizeof(float)},
        {(void **)&s->idx, n, sizeof(int64_t)},    {(void **)&s->fr, rmax * df, sizeof(float)},
        {(void **)&s->fr2, rmax * df, sizeof(float)}, {(void **)&s->ar, rmax, sizeof(float)},
        {(void **)&s->tg, rmax, sizeof(float)},    {(void **)&s->tg2, rmax, sizeof(float)},
        {(void **)&s->w, rmax, sizeof(float)},     {(void **)&s->w2, rmax, sizeof(float)},
        {(void **)&s->perm, rmax, sizeof(int64_t)}, {(void **)&s->sc, rmax, sizeof(double)},
        {(void **)&s->lab, rmax, sizeof(int)},     {(void **)&s->fl, nl * df, sizeof(float)},
        {(void **)&s->u, df, sizeof(float)},       {(void **)&s->gu, df, sizeof(float)},
        {(void **)&s->ub, 2, sizeof(float)}, // bias and its gradient
    };
    s->blk = ns_block_alloc(items, (int)(sizeof items / sizeof items[0]), err);
    return s->blk ? 0 : ns_err_prefix(err, "LG-CAV");
}

// 1. the concept's text embedding and the VLM scores of the pool;
// 2. probes: R's rows of f (fr) and their scores (ar), top part first.
static int lgcav_probes(lgcav_fit *s, ns_err *err) {
    const ns_lgcav_input *in = s->in;
    const ns_lgcav_config *cfg = s->cfg;
    const int64_t n = s->n, df = s->df, dv = s->dv;
    float *t = s->t, *a = s->a, *fr = s->fr, *ar = s->ar;
    int64_t *idx = s->idx;
    if (ns_cav_text_embedding(t, in->tpl, in->nt, dv, cfg->ce, cfg->template_index, err) < 0)
        return -1;
    ns_cav_vlm_scores(a, in->g, n, dv, t);

    int64_t n_top = 0;
    int64_t nr = ns_cav_select_probes(idx, &n_top, a, n, cfg->k_top, cfg->k_bottom);
    if (nr < 0) return ns_errf(err, "LG-CAV: out of memory selecting probes");
    if (nr < 2) return ns_errf(err, "LG-CAV: needs at least 2 probes (have %lld)", (long long)nr);
    for (int64_t i = 0; i < nr; i++) {
        memcpy(fr + i * df, in->f + idx[i] * df, (size_t)df * sizeof *fr);
        ar[i] = a[idx[i]];
    }
    s->nr = nr;
    s->n_top = n_top;
    return 0;
}

// 3. Gaussian alignment: statistics always (reported), the target (tg) only with GA
static int lgcav_align(lgcav_fit *s, ns_err *err) {
    const ns_lgcav_config *cfg = s->cfg;
    const int64_t df = s->df, nr = s->nr;
    const float *fr = s->fr, *ar = s->ar;
    float *tg = s->tg;
    double mu_t, sd_t, mu_vl = 0, var_vl = 0;
    if (ns_cav_pair_stats(&mu_t, &sd_t, fr, nr, df, cfg->pair_diag, cfg->std_ddof, err) < 0)
        return -1;
    for (int64_t i = 0; i < nr; i++) mu_vl += ar[i];
    mu_vl /= (double)nr;
    for (int64_t i = 0; i < nr; i++) var_vl += (ar[i] - mu_vl) * (ar[i] - mu_vl);
    double sd_vl = sqrt(var_vl / (double)(nr - cfg->std_ddof));
    if (cfg->ga && !(sd_vl > 0))
        return ns_errf(err, "LG-CAV: every probe has the same VLM score (%g): nothing to align",
                       mu_vl);
    for (int64_t i = 0; i < nr; i++)
        tg[i] = cfg->ga ? (float)((ar[i] - mu_vl) / sd_vl * sd_t + mu_t) : ar[i];
    s->rep.mu_t = mu_t;
    s->rep.sd_t = sd_t;
    s->rep.mu_vl = mu_vl;
    s->rep.sd_vl = sd_vl;
    return 0;
}

// 4. deviation sample reweighting (w)
static int lgcav_reweight(lgcav_fit *s, ns_err *err) {
    const ns_lgcav_input *in = s->in;
    const ns_lgcav_config *cfg = s->cfg;
    const int64_t df = s->df, nr = s->nr;
    float *w = s->w;
    if (cfg->dsr) {
        if (ns_cav_dsr_weights(w, NULL, s->fr, nr, in->pos, in->np, df, cfg->std_ddof, err) < 0)
            return -1;
    } else {
        for (int64_t i = 0; i < nr; i++) w[i] = 1.0f;
    }
    double w_min = INFINITY, w_max = -INFINITY;
    for (int64_t i = 0; i < nr; i++) {
        w_min = fmin(w_min, w[i]);
        w_max = fmax(w_max, w[i]);
    }
    s->rep.w_min = w_min;
    s->rep.w_max = w_max;
    return 0;
}

// 5. the labelled rows (fl), divided by the RMS norm of every feature row
// used; the probes' rows made unit.
static void lgcav_scale(lgcav_fit *s) {
    const ns_lgcav_input *in = s->in;
    const int64_t df = s->df, nr = s->nr;
    float *fr = s->fr, *fl = s->fl;
    double scale = 1.0;
    if (s->cfg->cls) {
        double ss = 0;
        for (int64_t i = 0; i < nr * df; i++) ss += (double)fr[i] * fr[i];
        for (int64_t i = 0; i < in->np * df; i++) ss += (double)in->pos[i] * in->pos[i];
        for (int64_t i = 0; i < in->nn * df; i++) ss += (double)in->neg[i] * in->neg[i];
        scale = sqrt(ss / (double)(nr + in->np + in->nn));
        if (!(scale > 0)) scale = 1.0;
        for (int64_t i = 0; i < in->np * df; i++) fl[i] = (float)(in->pos[i] / scale);
        for (int64_t i = 0; i < in->nn * df; i++)
            fl[in->np * df + i] = (float)(in->neg[i] / scale);
    }
    ns_normalize_rows(fr, nr, df); // from here on only cosines of probes are needed
    s->scale = scale;
}

// 6. the start (u), from v when cfg->init is GIVEN
static int lgcav_start(lgcav_fit *s, const float *v, ns_err *err) {
    const ns_lgcav_config *cfg = s->cfg;
    const int64_t df = s->df, nr = s->nr, n_top = s->n_top;
    const float *fr = s->fr;
    float *u = s->u;
    ns_rng_seed(&s->rng, cfg->seed);
    if (cfg->init == NS_LGCAV_INIT_RANDOM) {
        for (int64_t j = 0; j < df; j++) u[j] = (float)ns_rng_normal(&s->rng);
    } else if (cfg->init == NS_LGCAV_INIT_PROBES) {
        if (n_top < 1 || n_top >= nr)
            return ns_errf(err, "LG-CAV: the probe start needs a top and a bottom part (%lld of %lld)",
                           (long long)n_top, (long long)nr);
        for (int64_t j = 0; j < df; j++) {
            double st = 0, sb = 0;
            for (int64_t i = 0; i < n_top; i++) st += fr[i * df + j];
            for (int64_t i = n_top; i < nr; i++) sb += fr[i * df + j];
            u[j] = (float)(st / (double)n_top - sb / (double)(nr - n_top));
        }
    } else {
        if (ns_check_finite(v, 1, df, "LG-CAV start", err) < 0) return -1;
        for (int64_t j = 0; j < df; j++) u[j] = (float)(v[j] * s->scale);
    }
    double nu = ns_norm_f(u, df);
    if (!(nu > 0)) return ns_errf(err, "LG-CAV: the start vector is zero");
    if (cfg->init != NS_LGCAV_INIT_GIVEN)
        for (int64_t j = 0; j < df; j++) u[j] = (float)(u[j] / nu);
    return 0;
}

// 7. the optimiser (over u, and the bias with L_cls) and the schedule
static int lgcav_optimiser(lgcav_fit *s, ns_err *err) {
    const ns_lgcav_config *cfg = s->cfg;
    const int64_t df = s->df, nr = s->nr;
    float *bias = &s->ub[0], *gbias = &s->ub[1];
    *bias = 0;
    ns_param params[2] = {
        {.name = "cav.v", .value = s->u, .grad = s->gu, .numel = df, .decay = cfg->cls},
        {.name = "cav.bias", .value = bias, .grad = gbias, .numel = 1, .decay = 0},
    };
    s->opt = ns_optim_create(&cfg->optim, params, cfg->cls ? 2 : 1, err);
    if (!s->opt) return ns_err_prefix(err, "LG-CAV");
    int64_t batch = cfg->batch > 0 && cfg->batch < nr ? cfg->batch : nr;
    int64_t spe = (nr + batch - 1) / batch;
    if (ns_lr_parse(&s->sched, cfg->schedule ? cfg->schedule : "constant", cfg->lr, err) < 0)
        return -1;
    s->sched.total_steps = (int64_t)cfg->epochs * spe;
    if (ns_lr_check(&s->sched, spe, err) < 0) return -1;
    s->batch = batch;
    s->spe = spe;
    return 0;
}

// 8. training
// fr, tg, w keep R's order (top part first); each epoch trains on a fresh
// shuffle of them in fr2, tg2, w2.
static int lgcav_train(lgcav_fit *s, ns_err *err) {
    const ns_lgcav_input *in = s->in;
    const ns_lgcav_config *cfg = s->cfg;
    const int64_t df = s->df, nr = s->nr, batch = s->batch;
    float *u = s->u, *gu = s->gu, *bias = &s->ub[0], *gbias = &s->ub[1];
    const float *pl = s->fl, *nlab = s->fl + in->np * df;
    int64_t step = 0;
    for (int ep = 0; ep < cfg->epochs; ep++) {
        for (int64_t i = 0; i < nr; i++) s->perm[i] = i;
        ns_rng_shuffle(&s->rng, s->perm, nr);
        permute_rows(s->fr2, s->tg2, s->w2, s->fr, s->tg, s->w, s->perm, nr, df);
        for (int64_t b0 = 0; b0 < nr; b0 += batch) {
            int64_t nb = nr - b0 < batch ? nr - b0 : batch;
            memset(gu, 0, (size_t)df * sizeof *gu);
            *gbias = 0;
            if (cfg->lg) {
                if (!(ns_norm_f(u, df) > 0))
                    return ns_errf(err, "LG-CAV: v collapsed to zero at step %lld", (long long)step);
                ns_cav_lg_loss(gu, u, s->fr2 + b0 * df, nb, df, s->tg2 + b0, s->w2 + b0, cfg->lambda);
            }
            if (cfg->cls)
                ns_cav_cls_loss(gu, gbias, u, *bias, pl, in->np, nlab, in->nn, df, 1.0);
            ns_optim_step(s->opt, ns_lr_at(&s->sched, step, s->spe));
            if (!cfg->cls) { // L_LG sees only the direction: stay on the unit sphere
                double nn_u = ns_norm_f(u, df);
                if (nn_u > 0)
                    for (int64_t j = 0; j < df; j++) u[j] = (float)(u[j] / nn_u);
            }
            step++;
        }
    }
    s->rep.steps = step;
    for (int64_t j = 0; j < df; j++)
        if (!isfinite(u[j])) return ns_errf(err, "LG-CAV: training diverged (lr %g too high?)", cfg->lr);
    if (!isfinite(*bias)) return ns_errf(err, "LG-CAV: training diverged (lr %g too high?)", cfg->lr);
    if (!(ns_norm_f(u, df) > 0)) return ns_errf(err, "LG-CAV: v collapsed to zero");
    return 0;
}

// 9. the result (v) and its decision, with the final losses and the
// decision's agreement with R's parts
static int lgcav_decide(lgcav_fit *s, float *v, ns_cav_decision *dec, ns_err *err) {
    const ns_lgcav_input *in = s->in;
    const ns_lgcav_config *cfg = s->cfg;
    const int64_t df = s->df, nr = s->nr, n_top = s->n_top;
    const float *fr = s->fr, *u = s->u, *pl = s->fl, *nlab = s->fl + in->np * df;
    const float bias = s->ub[0];
    double nu = ns_norm_f(u, df);
    double loss_lg = NAN, loss_cls = NAN;
    memset(s->gu, 0, (size_t)df * sizeof *s->gu);
    if (cfg->lg) loss_lg = ns_cav_lg_loss(s->gu, u, fr, nr, df, s->tg, s->w, 1.0);
    if (cfg->cls)
        loss_cls = ns_cav_cls_loss(s->gu, NULL, u, bias, pl, in->np, nlab, in->nn, df, 1.0);
    if (cfg->cls) {
        for (int64_t j = 0; j < df; j++) v[j] = (float)(u[j] / s->scale);
        dec->rule = NS_CAV_RULE_LINEAR;
        dec->offset = bias;
    } else {
        for (int64_t j = 0; j < df; j++) v[j] = (float)(u[j] / nu);
        dec->rule = NS_CAV_RULE_COSINE;
        double sum_top = 0, sum_bot = 0;
        for (int64_t i = 0; i < nr; i++) {
            s->sc[i] = ns_cav_cos(v, fr + i * df, df);
            s->lab[i] = i < n_top;
            if (i < n_top) sum_top += s->sc[i];
            else sum_bot += s->sc[i];
        }
        double thr, acc;
        if (cfg->thresh == NS_LGCAV_THRESH_BEST) {
            if (ns_cav_best_threshold(&thr, &acc, s->sc, s->lab, nr, err) < 0) return -1;
        } else {
            if (n_top < 1 || n_top >= nr)
                return ns_errf(err, "LG-CAV: the midpoint threshold needs a top and a bottom part "
                               "(%lld of %lld)", (long long)n_top, (long long)nr);
            thr = 0.5 * (sum_top / (double)n_top + sum_bot / (double)(nr - n_top));
        }
        dec->offset = -thr;
    }
    // the decision's agreement with R's parts (raw rows for a linear rule: scale them back)
    int64_t agree = 0;
    for (int64_t i = 0; i < nr; i++) {
        double sv;
        if (dec->rule == NS_CAV_RULE_COSINE) {
            sv = ns_cav_cos(v, fr + i * df, df) + dec->offset;
        } else { // fr is unit: v·f_raw > -b  <=>  v·fhat > -b / |f_raw|
            double nf = ns_norm_f(in->f + s->idx[i] * df, df);
            sv = ns_dot_f(v, fr + i * df, df) * nf + dec->offset;
        }
        agree += (sv > 0) == (i < n_top);
    }
    s->rep.loss_lg = loss_lg;
    s->rep.loss_cls = loss_cls;
    s->rep.fit_acc = (double)agree / (double)nr;
    return 0;
}

int ns_lgcav_fit(float *v, ns_cav_decision *dec, ns_lgcav_report *rep,
                 const ns_lgcav_input *in, const ns_lgcav_config *cfg, ns_err *err) {
    if (!v || !dec) return ns_errf(err, "LG-CAV: no output");
    if (check_lgcav(in, cfg, err) < 0) return -1;
    lgcav_fit s = {.in = in, .cfg = cfg, .n = in->n, .df = in->df, .dv = in->dv};
    if (lgcav_alloc(&s, err) < 0) return -1;
    int rc = -1;
    if (lgcav_probes(&s, err) < 0 || lgcav_align(&s, err) < 0 || lgcav_reweight(&s, err) < 0) goto done;
    lgcav_scale(&s);
    if (lgcav_start(&s, v, err) < 0 || lgcav_optimiser(&s, err) < 0 || lgcav_train(&s, err) < 0 ||
        lgcav_decide(&s, v, dec, err) < 0)
        goto done;
    rc = 0;
    if (rep) {
        rep->n_probes = s.nr;
        rep->n_top = s.n_top;
        rep->mu_t = s.rep.mu_t;
        rep->sd_t = s.rep.sd_t;
        rep->mu_vl = s.rep.mu_vl;
        rep->sd_vl = s.rep.sd_vl;
        rep->w_min = s.rep.w_min;
        rep->w_max = s.rep.w_max;
        rep->feat_scale = s.scale;
        rep->loss_lg = s.rep.loss_lg;
        rep->loss_cls = s.rep.loss_cls;
        rep->fit_acc = s.rep.fit_acc;
        rep->steps = s.rep.steps;
    }
done:
    ns_optim_free(s.opt);
    free(s.blk);
    return rc;
}
