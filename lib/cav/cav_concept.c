// cav_concept.c: one concept's CAV from a probe pool and TCAV scores
// (cav_concept.h). Shapes: pool F (N, D), drawn rows (np + nn, D), class
// gradients (n_k, D).
#include "cav/cav_concept.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/tensor.h"

// Rows of F (in F's order) whose concept column col has value want (col -1:
// every row), drawn at random up to max; returns the count gathered into out
// (max, D), -1 when out of memory.
static int64_t draw_rows(float *out, const ns_cav_pool *pool, int64_t col, int want, int64_t max, ns_rng *rng) {
    int64_t *cand = malloc((size_t)(pool->n ? pool->n : 1) * sizeof *cand), m = 0;
    if (!cand) return -1;
    for (int64_t i = 0; i < pool->n; i++)
        if (col < 0 || pool->has[pool->row[i] * pool->k + col] == want) cand[m++] = i;
    ns_rng_shuffle(rng, cand, m);
    if (m > max) m = max;
    for (int64_t i = 0; i < m; i++)
        memcpy(out + i * pool->d, pool->f + cand[i] * pool->d, (size_t)pool->d * sizeof(float));
    free(cand);
    return m;
}

static int fit_original(float *v, ns_cav_result *o, const float *pos, const float *neg, int64_t d,
                        const ns_cav_job *job, const char *name, uint64_t seed, ns_err *err) {
    if (o->np < 2 || o->nn < 2)
        return ns_errf(err, "concept %s: %lld positives and %lld negatives in the pool; a CAV needs 2 of each", name,
                       (long long)o->np, (long long)o->nn);
    ns_cav_config cfg;
    ns_cav_config_default(&cfg);
    cfg.loss = job->loss;
    cfg.seed = seed;
    ns_cav_report rep;
    if (ns_cav_fit(v, &o->dec, &rep, pos, o->np, neg, o->nn, d, &cfg, err) < 0) return -1;
    o->heldout = rep.test_acc;
    snprintf(o->modules, sizeof o->modules, "%s", job->loss == NS_CAV_LOGISTIC ? "logistic" : "hinge");
    return 0;
}

static int fit_lgcav(float *v, ns_cav_result *o, const float *pos, const float *neg, const ns_cav_pool *pool,
                     const ns_cav_job *job, const char *name, const float *text, uint64_t seed, ns_err *err) {
    ns_lgcav_config cfg = job->lg;
    cfg.ce = 1; // text is the one embedding to use (the ensemble was formed by probe-embed)
    cfg.seed = seed;
    if (cfg.dsr && o->np < 2) return ns_errf(err, "concept %s: DSR needs 2 positives, the pool has %lld", name, (long long)o->np);
    if (cfg.cls && (o->np < 1 || o->nn < 1))
        return ns_errf(err, "concept %s: L_cls needs positives and negatives (%lld, %lld)", name, (long long)o->np,
                       (long long)o->nn);
    ns_lgcav_input in = {.n = pool->n, .df = pool->d, .dv = pool->e, .nt = 1, .f = pool->f, .g = pool->g, .tpl = text,
                         .np = cfg.cls || cfg.dsr ? o->np : 0, .nn = cfg.cls ? o->nn : 0, .pos = pos, .neg = neg};
    if (ns_lgcav_fit(v, &o->dec, NULL, &in, &cfg, err) < 0) return ns_err_prefix(err, "concept %s", name);
    snprintf(o->modules, sizeof o->modules, "%s%s%s", job->lg.ga ? "ga," : "", job->ce ? "ce," : "",
             job->lg.dsr ? "dsr," : "");
    size_t ml = strlen(o->modules);
    if (ml) o->modules[ml - 1] = 0;
    else snprintf(o->modules, sizeof o->modules, "none");
    o->cls = job->lg.cls;
    if (!cfg.cls) o->nn = 0; // what the fit used
    if (!cfg.cls && !cfg.dsr) o->np = 0;
    return 0;
}

int ns_cav_fit_concept(float *v, ns_cav_result *o, const ns_cav_pool *pool, const ns_cav_job *job,
                       const char *name, int64_t col, const float *text, uint64_t seed, int random,
                       ns_err *err) {
    const int64_t d = pool->d, np = job->positives, nn = job->negatives;
    memset(o, 0, sizeof *o);
    o->heldout = NAN;
    if (job->lgcav && !random && !text) return ns_errf(err, "concept %s: LG-CAV needs its text embedding", name);
    float *pos = malloc((size_t)((np + nn + 1) * d) * sizeof *pos);
    if (!pos) return ns_errf(err, "out of memory");
    float *neg = pos + np * d;
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    int rc = -1;
    if (random || (col >= 0 && np > 0 && nn > 0)) {
        o->np = draw_rows(pos, pool, random ? -1 : col, 1, np, &rng);
        o->nn = draw_rows(neg, pool, random ? -1 : col, 0, nn, &rng);
        if (o->np < 0 || o->nn < 0) {
            ns_errf(err, "out of memory");
            goto done;
        }
    }
    rc = !job->lgcav || random ? fit_original(v, o, pos, neg, d, job, name, seed, err)
                               : fit_lgcav(v, o, pos, neg, pool, job, name, text, seed, err);
done:
    free(pos);
    return rc;
}

// ----------------------------------------------------------------------------
// TCAV

int ns_tcav_init(ns_tcav *t, const ns_probe *probe, ns_engine *e, const ns_samples *img, int64_t max_per_class,
                 ns_err *err) {
    memset(t, 0, sizeof *t);
    t->probe = probe;
    t->e = e;
    t->img = img;
    t->max_per_class = max_per_class;
    t->k = ns_engine_output_numel(e);
    t->grads = calloc((size_t)(t->k ? t->k : 1), sizeof *t->grads);
    t->ngrads = calloc((size_t)(t->k ? t->k : 1), sizeof *t->ngrads);
    if (!t->grads || !t->ngrads) {
        ns_tcav_free(t);
        return ns_errf(err, "out of memory");
    }
    return 0;
}

void ns_tcav_free(ns_tcav *t) {
    for (int64_t k = 0; t->grads && k < t->k; k++) free(t->grads[k]);
    free(t->grads);
    free(t->ngrads);
    memset(t, 0, sizeof *t);
}

// Gradients of class k's logit at the probed layer for up to max_per_class
// images of class k, computed once per class.
static int class_grads(ns_tcav *t, int64_t k, ns_err *err) {
    if (t->grads[k]) return 0;
    const int64_t d = t->probe->dim, per = t->img->numel, bmax = t->e->max_batch;
    int64_t m = 0;
    for (int64_t i = 0; i < t->img->n; i++) m += t->img->y[i] == k;
    if (m > t->max_per_class) m = t->max_per_class;
    t->grads[k] = malloc((size_t)((m ? m : 1) * d) * sizeof(float));
    float *x = ns_aligned_alloc((size_t)(bmax * per) * sizeof *x);
    int32_t *cls = malloc((size_t)bmax * sizeof *cls);
    int rc = 0;
    if (!t->grads[k] || !x || !cls) rc = ns_errf(err, "out of memory");
    int64_t done = 0, nb = 0;
    for (int64_t i = 0; rc == 0 && i < t->img->n && done < m; i++) {
        if (t->img->y[i] != k) continue;
        memcpy(x + nb * per, t->img->x + i * per, (size_t)per * sizeof *x);
        cls[nb++] = (int32_t)k;
        if (nb == bmax || done + nb == m) {
            rc = ns_probe_gradients(t->probe, t->e, x, nb, cls, t->grads[k] + done * d, err);
            done += nb;
            nb = 0;
        }
    }
    t->ngrads[k] = done;
    free(x);
    free(cls);
    return rc;
}

int ns_tcav_score(double *score, ns_tcav *t, const float *v, const int64_t *cls, int64_t m, ns_err *err) {
    *score = NAN;
    double sum = 0;
    int64_t used = 0;
    for (int64_t j = 0; j < m; j++) {
        if (cls[j] < 0 || cls[j] >= t->k) return ns_errf(err, "TCAV: class %lld of %lld", (long long)cls[j], (long long)t->k);
        if (class_grads(t, cls[j], err) < 0) return -1;
        if (t->ngrads[cls[j]] == 0) continue;
        double frac;
        if (ns_cav_sign_fraction(&frac, t->grads[cls[j]], t->ngrads[cls[j]], t->probe->dim, v, err) < 0) return -1;
        sum += frac;
        used++;
    }
    if (used) *score = sum / (double)used;
    return 0;
}
