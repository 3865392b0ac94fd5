// test_cav_world.c: lib/cav/cav.h's LG-CAV on a synthetic world with a known
// answer: the benchmark of its modules against the original CAV, DSR with
// outlier probes, and LG-CAV's interface (rules, errors, the start given by
// the caller). The statistics, building blocks, gradients, the original CAV
// and cav-fit's steps are in test_cav.c.
// sanitize: yes
//
// The synthetic benchmark (lgcav.md §5 item 2), a world with a known answer:
//    latent z ~ N(0, I_32); concept present iff z·u > 1 (u a random unit
//    vector: 16% of images). Target features f = m_f + A (z + 0.5 e) + C d,
//    A (64, 32) with orthonormal columns, m_f (|m_f| = 8) orthogonal to
//    them, C the orthonormal complement with noise d whose std falls linearly
//    from 1 to 1/31 (low-variance channels, as real features have); so pairwise
//    cosines of f are high (~0.55), as in CNN features. VLM embeddings
//    g = 8 m_g + B z + 0.3 e', B (48, 32) orthonormal columns; a template
//    t = B u + 6 m_t + 1.5 m_g + 0.25 e'' (m_t a text-only direction: the
//    modality gap), so a(x) = cos(t, g) is CLIP-like: mean ~0.19, std ~0.05 on R.
//    16 templates with independent noise e''.
//    Ground truth: the planted direction in f-space is w* = A u, the read-out
//    of the concept coordinate (A^+ = A^T: w*·f = z·u + noise). With the noise
//    structure above it is also the Bayes-optimal linear direction (the
//    within-class covariance keeps A u an eigenvector), so recovery is
//    unambiguous. The shared mean m_f carries no concept information but a
//    cosine activation needs a component along it to set its level, and a
//    classifier's component along it trades off against its bias; so
//    recovery = cos(P v, w*), P removing the m_f direction. "latent" is
//    cos(A^T v, u), the concept content of v ignoring what it puts into the
//    complement (where a cosine fit parks the norm it cannot use).
//    Pool N = 3000, R = top 500 + bottom 500, 10 positives and 10 negatives
//    for L_cls, DSR and the original CAV; 300 + 300 held-out rows for
//    concept accuracy. Six worlds (seeds).
//
//    What it showed when written (means over the six seeds; acc = concept
//    accuracy on the held-out rows, rec and latent as above; w* itself with
//    the best threshold on the test rows reaches acc 0.876):
//      variant                          acc    rec    latent
//      original CAV, hinge, 10+10       0.646  0.437  0.494
//      original CAV, logistic, 10+10    0.647  0.480  0.544
//      LG-CAV + L_cls, no modules       0.683  0.516  0.628
//        + GA                           0.712  0.606  0.688
//        + GA + CE                      0.728  0.652  0.747
//        + GA + CE + DSR (defaults)     0.727  0.651  0.746
//        + CE + DSR, no GA              0.677  0.517  0.640
//      pure L_LG (no L_cls), GA + CE    0.728  0.540  0.906
//      pure L_LG, CE, no GA             0.745  0.271  0.906
//      pure L_LG, GA, one template      0.673  0.444  0.663
//    Read: with the same 10 + 10 labels LG-CAV beats the original CAV clearly
//    (rec on every seed). GA helps when L_cls is on (accuracy and rec, every
//    seed). CE beats one noisy template (pure L_LG: every seed; with L_cls on
//    the mean). The paper's "LG-CAV without modules is worse than the original
//    CAV" does NOT reproduce here: it is slightly better. Pure L_LG without GA
//    fits the VLM's raw cosine level (~0.19 instead of the features' ~0.56)
//    and its direction is far off (rec 0.27), yet its accuracy is not worse:
//    the norm it cannot use lands in low-variance channels, where it does no
//    harm to the ranking.
//    The balance of L_cls and L_LG hangs on LG-CAV's weight decay (default
//    0.3; CAV_WD=x reruns with another): at 0 the full LG-CAV is 0.642 / 0.455
//    (the 20-row classifier again, GA no help); at 0.1, 0.680 / 0.558; at 1,
//    0.673 / 0.644 with latent 0.880, and "no modules" reaches 0.708 accuracy.
//    DSR (a second world where 3% of the pool are outliers: an atypical
//    target image, latent norm x3 and no concept, which the VLM scores as the
//    concept): the outliers in R get weight ~0.977 against ~1.001 (exp(-s),
//    s a std of cosines of ~0.05, is a mild reweighting by construction); the
//    fit follows them less (their residual rises and the inliers' falls, every
//    seed); recovery moves by -0.0002 and accuracy by +0.0008, i.e. not at all.
//    Only the robust parts are asserted, with margins that also held on eight
//    other sets of six worlds (CAV_SEED_BASE=100, 200, ..., 800).
#include <stdlib.h>
#include <string.h>

#include "cav/cav.h"
#include "check.h"
#include "base/rng.h"

// ----------------------------------------------------------------------------
// the synthetic world

#define WL 32  // latent
#define WDF 64 // target features
#define WDV 48 // VLM embeddings
#define WT 16  // templates
#define WC (WDF - WL - 1)
#define WPOOL 3000
#define WLAB 10  // labelled rows per class
#define WTEST 300

typedef struct world {
    float a_mat[WDF * WL]; // (Df, L) orthonormal columns
    float mf_hat[WDF];
    float comp[WC * WDF];  // (C, Df) the orthonormal complement
    float comp_sd[WC];
    float b_mat[WDV * WL]; // (Dv, L)
    float mg_hat[WDV], mt_hat[WDV];
    float u[WL];
    float wstar[WDF];      // A u
    float *f, *g;          // (WPOOL, Df), (WPOOL, Dv)
    unsigned char *is_out; // (WPOOL)
    float tpl[WT * WDV];
    float pos[WLAB * WDF], neg[WLAB * WDF];
    float *tpos, *tneg;    // (WTEST, Df) each
} world;

// m orthonormal random rows of length d (Gram-Schmidt, twice)
static void orthonormal(float *q, int m, int d, ns_rng *rng) {
    double x[WDF];
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < d; j++) x[j] = ns_rng_normal(rng);
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < i; k++) {
                double dd = 0;
                for (int j = 0; j < d; j++) dd += x[j] * q[k * d + j];
                for (int j = 0; j < d; j++) x[j] -= dd * q[k * d + j];
            }
        double nr = 0;
        for (int j = 0; j < d; j++) nr += x[j] * x[j];
        nr = sqrt(nr);
        for (int j = 0; j < d; j++) q[i * d + j] = (float)(x[j] / nr);
    }
}

static double zu(const world *w, const double *z) {
    double s = 0;
    for (int k = 0; k < WL; k++) s += z[k] * w->u[k];
    return s;
}

static void draw_z(double *z, ns_rng *rng) {
    for (int k = 0; k < WL; k++) z[k] = ns_rng_normal(rng);
}

static void draw_z_cond(const world *w, double *z, int present, ns_rng *rng) {
    do draw_z(z, rng);
    while ((zu(w, z) > 1.0) != present);
}

static void make_f(const world *w, const double *z, float *f, ns_rng *rng) {
    double zn[WL], en[WC];
    for (int k = 0; k < WL; k++) zn[k] = z[k] + 0.5 * ns_rng_normal(rng);
    for (int k = 0; k < WC; k++) en[k] = w->comp_sd[k] * ns_rng_normal(rng);
    for (int i = 0; i < WDF; i++) {
        double s = 8.0 * w->mf_hat[i];
        for (int k = 0; k < WL; k++) s += w->a_mat[i * WL + k] * zn[k];
        for (int k = 0; k < WC; k++) s += w->comp[k * WDF + i] * en[k];
        f[i] = (float)s;
    }
}

static void make_g(const world *w, const double *z, float *g, ns_rng *rng) {
    for (int i = 0; i < WDV; i++) {
        double s = 8.0 * w->mg_hat[i] + 0.3 * ns_rng_normal(rng);
        for (int k = 0; k < WL; k++) s += w->b_mat[i * WL + k] * z[k];
        g[i] = (float)s;
    }
}

static void world_free(world *w) {
    free(w->f);
    free(w->g);
    free(w->is_out);
    free(w->tpos);
    free(w->tneg);
}

static int world_make(world *w, uint64_t seed, double frac_out) {
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    static float qa[WDF * WDF];
    orthonormal(qa, WDF, WDF, &rng);
    for (int i = 0; i < WDF; i++) {
        for (int k = 0; k < WL; k++) w->a_mat[i * WL + k] = qa[k * WDF + i];
        w->mf_hat[i] = qa[WL * WDF + i];
    }
    for (int k = 0; k < WC; k++) {
        memcpy(w->comp + k * WDF, qa + (WL + 1 + k) * WDF, sizeof(float) * WDF);
        w->comp_sd[k] = (float)(1.0 - (double)k / WC);
    }
    static float qb[(WL + 2) * WDV];
    orthonormal(qb, WL + 2, WDV, &rng);
    for (int i = 0; i < WDV; i++) {
        for (int k = 0; k < WL; k++) w->b_mat[i * WL + k] = qb[k * WDV + i];
        w->mg_hat[i] = qb[WL * WDV + i];
        w->mt_hat[i] = qb[(WL + 1) * WDV + i];
    }
    orthonormal(w->u, 1, WL, &rng);
    for (int i = 0; i < WDF; i++) {
        double s = 0;
        for (int k = 0; k < WL; k++) s += w->a_mat[i * WL + k] * w->u[k];
        w->wstar[i] = (float)s;
    }
    w->f = malloc(sizeof(float) * WPOOL * WDF);
    w->g = malloc(sizeof(float) * WPOOL * WDV);
    w->is_out = calloc(WPOOL, 1);
    w->tpos = malloc(sizeof(float) * WTEST * WDF);
    w->tneg = malloc(sizeof(float) * WTEST * WDF);
    if (!w->f || !w->g || !w->is_out || !w->tpos || !w->tneg) {
        world_free(w);
        return -1;
    }
    double z[WL], zo[WL];
    for (int i = 0; i < WPOOL; i++) {
        draw_z(z, &rng);
        if (frac_out > 0 && ns_rng_uniform(&rng) < frac_out) {
            // an outlier: the target model sees an atypical image with no
            // concept (latent norm x3, no u component); the VLM is fooled
            // into scoring it as a clear concept image (z·u = 2.5)
            w->is_out[i] = 1;
            draw_z(zo, &rng);
            for (int k = 0; k < WL; k++) zo[k] *= 3.0;
            double p = zu(w, zo);
            for (int k = 0; k < WL; k++) zo[k] -= p * w->u[k];
            make_f(w, zo, w->f + (size_t)i * WDF, &rng);
            p = zu(w, z);
            for (int k = 0; k < WL; k++) z[k] += (2.5 - p) * w->u[k];
        } else {
            make_f(w, z, w->f + (size_t)i * WDF, &rng);
        }
        make_g(w, z, w->g + (size_t)i * WDV, &rng);
    }
    for (int t = 0; t < WT; t++)
        for (int i = 0; i < WDV; i++) {
            double s = 6.0 * w->mt_hat[i] + 1.5 * w->mg_hat[i] + 0.25 * ns_rng_normal(&rng);
            for (int k = 0; k < WL; k++) s += w->b_mat[i * WL + k] * w->u[k];
            w->tpl[t * WDV + i] = (float)s;
        }
    for (int i = 0; i < WLAB; i++) {
        draw_z_cond(w, z, 1, &rng);
        make_f(w, z, w->pos + i * WDF, &rng);
        draw_z_cond(w, z, 0, &rng);
        make_f(w, z, w->neg + i * WDF, &rng);
    }
    for (int i = 0; i < WTEST; i++) {
        draw_z_cond(w, z, 1, &rng);
        make_f(w, z, w->tpos + i * WDF, &rng);
        draw_z_cond(w, z, 0, &rng);
        make_f(w, z, w->tneg + i * WDF, &rng);
    }
    return 0;
}

// cos(P v, w*), P removing the shared-mean direction
static double recovery(const world *w, const float *v) {
    double pm = 0;
    for (int i = 0; i < WDF; i++) pm += v[i] * w->mf_hat[i];
    float pv[WDF];
    for (int i = 0; i < WDF; i++) pv[i] = (float)(v[i] - pm * w->mf_hat[i]);
    return ns_cav_cos(pv, w->wstar, WDF);
}

// cos(A^T v, u)
static double latent(const world *w, const float *v) {
    float lv[WL];
    for (int k = 0; k < WL; k++) {
        double s = 0;
        for (int i = 0; i < WDF; i++) s += w->a_mat[i * WL + k] * v[i];
        lv[k] = (float)s;
    }
    return ns_cav_cos(lv, w->u, WL);
}

static ns_lgcav_input world_input(const world *w) {
    return (ns_lgcav_input){.n = WPOOL, .df = WDF, .dv = WDV, .nt = WT, .f = w->f, .g = w->g,
                            .tpl = w->tpl, .np = WLAB, .nn = WLAB, .pos = w->pos,
                            .neg = w->neg};
}

// The probes R the fit will choose (same text embedding, same selection),
// as row indices into the pool; returns |R|.
static int64_t world_probes(const world *w, int ce, int64_t *idx, float *a) {
    float t[WDV];
    ns_err err;
    int64_t n_top;
    if (ns_cav_text_embedding(t, w->tpl, WT, WDV, ce, 0, &err) < 0) return -1;
    ns_cav_vlm_scores(a, w->g, WPOOL, WDV, t);
    return ns_cav_select_probes(idx, &n_top, a, WPOOL, 500, 500);
}

// ----------------------------------------------------------------------------
// the benchmark

enum {
    V_CAV_HINGE,
    V_CAV_LOGISTIC,
    V_LG_NONE,
    V_LG_GA,
    V_LG_GA_CE,
    V_LG_FULL,
    V_LG_NO_GA,
    V_PURE_GA_CE,
    V_PURE_CE,
    V_PURE_GA_ONE,
    V_COUNT
};

typedef struct variant {
    const char *name;
    int cav; // 0 LG-CAV, 1 hinge CAV, 2 logistic CAV
    int ga, ce, dsr, cls;
} variant;

static const variant variants[V_COUNT] = {
    [V_CAV_HINGE] = {"original CAV, hinge, 10+10", 1, 0, 0, 0, 0},
    [V_CAV_LOGISTIC] = {"original CAV, logistic, 10+10", 2, 0, 0, 0, 0},
    [V_LG_NONE] = {"LG-CAV + L_cls, no modules", 0, 0, 0, 0, 1},
    [V_LG_GA] = {"  + GA", 0, 1, 0, 0, 1},
    [V_LG_GA_CE] = {"  + GA + CE", 0, 1, 1, 0, 1},
    [V_LG_FULL] = {"  + GA + CE + DSR (defaults)", 0, 1, 1, 1, 1},
    [V_LG_NO_GA] = {"  + CE + DSR, no GA", 0, 0, 1, 1, 1},
    [V_PURE_GA_CE] = {"pure L_LG, GA + CE", 0, 1, 1, 0, 0},
    [V_PURE_CE] = {"pure L_LG, CE, no GA", 0, 0, 1, 0, 0},
    [V_PURE_GA_ONE] = {"pure L_LG, GA, one template", 0, 1, 0, 0, 0},
};

#define SEEDS 6

// CAV_SEED_BASE=n runs the benchmarks on other worlds (the asserted margins
// were checked on several); CAV_WD overrides LG-CAV's weight decay there.
static uint64_t seed_base(uint64_t dflt) {
    const char *e = getenv("CAV_SEED_BASE");
    return e ? dflt + strtoull(e, NULL, 10) : dflt;
}

static int fit_variant(float *v, ns_cav_decision *dec, const world *w, const variant *vr,
                       uint64_t seed, ns_err *err) {
    if (vr->cav) {
        ns_cav_config cc;
        ns_cav_config_default(&cc);
        cc.loss = vr->cav == 1 ? NS_CAV_HINGE : NS_CAV_LOGISTIC;
        cc.test_frac = 0; // the same 20 rows LG-CAV sees, all for training
        cc.seed = seed;
        return ns_cav_fit(v, dec, NULL, w->pos, WLAB, w->neg, WLAB, WDF, &cc, err);
    }
    ns_lgcav_config lc;
    ns_lgcav_config_default(&lc);
    lc.ga = vr->ga;
    lc.ce = vr->ce;
    lc.dsr = vr->dsr;
    lc.cls = vr->cls;
    lc.seed = seed;
    const char *wd = getenv("CAV_WD");
    if (wd) lc.optim.weight_decay = atof(wd);
    ns_lgcav_input in = world_input(w);
    return ns_lgcav_fit(v, dec, NULL, &in, &lc, err);
}

static void test_benchmark(void) {
    double acc[V_COUNT][SEEDS], rec[V_COUNT][SEEDS], lat[V_COUNT][SEEDS];
    double lvl_ga[SEEDS], lvl_noga[SEEDS], mu_t[SEEDS], mu_vl[SEEDS], oracle = 0;
    int64_t *idx = malloc(sizeof(int64_t) * WPOOL);
    float *a = malloc(sizeof(float) * WPOOL);
    int ok = idx && a;
    for (int s = 0; s < SEEDS && ok; s++) {
        world w;
        if (world_make(&w, seed_base(1000) + (uint64_t)s, 0) < 0) {
            ok = 0;
            break;
        }
        float vs[V_COUNT][WDF];
        for (int k = 0; k < V_COUNT && ok; k++) {
            ns_cav_decision dec;
            ns_err err = {{0}};
            if (fit_variant(vs[k], &dec, &w, &variants[k], (uint64_t)s, &err) < 0 ||
                ns_cav_accuracy(&acc[k][s], vs[k], &dec, w.tpos, WTEST, w.tneg, WTEST, WDF,
                                &err) < 0) {
                CHECK(0, "%s: %s", variants[k].name, err.msg);
                ok = 0;
                break;
            }
            rec[k][s] = recovery(&w, vs[k]);
            lat[k][s] = latent(&w, vs[k]);
        }
        // the level of the pure fits' activation on R, and the two scales it could follow
        int64_t nr = world_probes(&w, 1, idx, a);
        double m_ga = 0, m_no = 0, mvl = 0, sdt;
        float *fr = malloc(sizeof(float) * (size_t)(nr > 0 ? nr : 1) * WDF);
        ns_err err;
        if (!fr || nr < 2) {
            free(fr);
            world_free(&w);
            ok = 0;
            break;
        }
        for (int64_t i = 0; i < nr; i++) {
            memcpy(fr + i * WDF, w.f + idx[i] * WDF, sizeof(float) * WDF);
            m_ga += ns_cav_cos(vs[V_PURE_GA_CE], fr + i * WDF, WDF) / (double)nr;
            m_no += ns_cav_cos(vs[V_PURE_CE], fr + i * WDF, WDF) / (double)nr;
            mvl += a[idx[i]] / (double)nr;
        }
        ns_cav_pair_stats(&mu_t[s], &sdt, fr, nr, WDF, 0, 1, &err);
        free(fr);
        lvl_ga[s] = m_ga;
        lvl_noga[s] = m_no;
        mu_vl[s] = mvl;
        // context: w* itself with the best threshold on the test rows
        double *sc = malloc(sizeof(double) * 2 * WTEST);
        int *lb = malloc(sizeof(int) * 2 * WTEST);
        if (sc && lb) {
            for (int i = 0; i < WTEST; i++) {
                sc[i] = ns_cav_cos(w.wstar, w.tpos + i * WDF, WDF);
                sc[WTEST + i] = ns_cav_cos(w.wstar, w.tneg + i * WDF, WDF);
                lb[i] = 1;
                lb[WTEST + i] = 0;
            }
            double thr, oa;
            if (ns_cav_best_threshold(&thr, &oa, sc, lb, 2 * WTEST, &err) == 0)
                oracle += oa / SEEDS;
        }
        free(sc);
        free(lb);
        world_free(&w);
    }
    free(idx);
    free(a);
    if (!ok) {
        CHECK(0, "the benchmark ran");
        return;
    }

    double m_acc[V_COUNT], m_rec[V_COUNT], m_lat[V_COUNT];
    printf("# synthetic benchmark, means over %d seeds (w* with the best test threshold: acc "
           "%.3f)\n",
           SEEDS, oracle);
    printf("# %-32s %6s %6s %6s\n", "variant", "acc", "rec", "latent");
    for (int k = 0; k < V_COUNT; k++) {
        m_acc[k] = m_rec[k] = m_lat[k] = 0;
        for (int s = 0; s < SEEDS; s++) {
            m_acc[k] += acc[k][s] / SEEDS;
            m_rec[k] += rec[k][s] / SEEDS;
            m_lat[k] += lat[k][s] / SEEDS;
        }
        printf("# %-32s %6.3f %6.3f %6.3f\n", variants[k].name, m_acc[k], m_rec[k], m_lat[k]);
        if (getenv("CAV_VERBOSE")) {
            printf("#  ");
            for (int s = 0; s < SEEDS; s++) printf(" %.3f/%.3f/%.3f", acc[k][s], rec[k][s], lat[k][s]);
            printf("\n");
        }
    }

    // LG-CAV (defaults: GA + CE + DSR + L_cls) against the original CAV on the same 20 rows
    int every = 1;
    for (int s = 0; s < SEEDS; s++)
        every &= rec[V_LG_FULL][s] > rec[V_CAV_HINGE][s] && rec[V_LG_FULL][s] > rec[V_CAV_LOGISTIC][s];
    CHECK(every && m_rec[V_LG_FULL] > m_rec[V_CAV_HINGE] + 0.1 &&
              m_rec[V_LG_FULL] > m_rec[V_CAV_LOGISTIC] + 0.1,
          "LG-CAV recovers w* better than the 10+10 CAV on every seed: %.3f vs %.3f (hinge), "
          "%.3f (logistic)",
          m_rec[V_LG_FULL], m_rec[V_CAV_HINGE], m_rec[V_CAV_LOGISTIC]);
    CHECK(m_acc[V_LG_FULL] > m_acc[V_CAV_HINGE] + 0.04 &&
              m_acc[V_LG_FULL] > m_acc[V_CAV_LOGISTIC] + 0.04,
          "LG-CAV concept accuracy %.3f vs %.3f (hinge), %.3f (logistic)", m_acc[V_LG_FULL],
          m_acc[V_CAV_HINGE], m_acc[V_CAV_LOGISTIC]);

    // GA with L_cls: better accuracy and direction
    every = 1;
    for (int s = 0; s < SEEDS; s++) every &= rec[V_LG_FULL][s] > rec[V_LG_NO_GA][s];
    CHECK(every && m_rec[V_LG_FULL] > m_rec[V_LG_NO_GA] + 0.08 &&
              m_acc[V_LG_FULL] > m_acc[V_LG_NO_GA] + 0.02,
          "GA matters with L_cls: rec %.3f vs %.3f without (every seed), acc %.3f vs %.3f",
          m_rec[V_LG_FULL], m_rec[V_LG_NO_GA], m_acc[V_LG_FULL], m_acc[V_LG_NO_GA]);
    CHECK(m_rec[V_LG_GA] > m_rec[V_LG_NONE] + 0.04 && m_acc[V_LG_GA] > m_acc[V_LG_NONE],
          "GA on top of no modules: rec %.3f vs %.3f, acc %.3f vs %.3f", m_rec[V_LG_GA],
          m_rec[V_LG_NONE], m_acc[V_LG_GA], m_acc[V_LG_NONE]);
    // GA without L_cls: the activation follows the target's level
    double lg = 0, ln = 0, mt = 0, mv = 0;
    for (int s = 0; s < SEEDS; s++) {
        lg += lvl_ga[s] / SEEDS;
        ln += lvl_noga[s] / SEEDS;
        mt += mu_t[s] / SEEDS;
        mv += mu_vl[s] / SEEDS;
    }
    CHECK(fabs(ln - mv) < 0.03 && fabs(lg - mt) < 0.03 && mt - mv > 0.2,
          "without GA the mean cos(v, f) on R is the VLM's raw level %.3f (a: %.3f); with GA "
          "the features' own %.3f (pairwise: %.3f)",
          ln, mv, lg, mt);
    CHECK(m_rec[V_PURE_GA_CE] > m_rec[V_PURE_CE] + 0.15,
          "pure L_LG: GA keeps the direction (rec %.3f vs %.3f without; accuracy %.3f vs %.3f, "
          "not asserted)",
          m_rec[V_PURE_GA_CE], m_rec[V_PURE_CE], m_acc[V_PURE_GA_CE], m_acc[V_PURE_CE]);

    // CE: the template average beats one noisy template
    every = 1;
    for (int s = 0; s < SEEDS; s++) every &= lat[V_PURE_GA_CE][s] > lat[V_PURE_GA_ONE][s] + 0.1;
    CHECK(every && m_lat[V_PURE_GA_CE] > m_lat[V_PURE_GA_ONE] + 0.15 &&
              m_acc[V_PURE_GA_CE] > m_acc[V_PURE_GA_ONE] + 0.02,
          "CE beats one noisy template, pure L_LG: concept content %.3f vs %.3f (every seed), "
          "acc %.3f vs %.3f",
          m_lat[V_PURE_GA_CE], m_lat[V_PURE_GA_ONE], m_acc[V_PURE_GA_CE], m_acc[V_PURE_GA_ONE]);
    CHECK(m_rec[V_LG_GA_CE] > m_rec[V_LG_GA] + 0.02 && m_acc[V_LG_GA_CE] > m_acc[V_LG_GA],
          "CE beats one noisy template with L_cls: rec %.3f vs %.3f, acc %.3f vs %.3f (means)",
          m_rec[V_LG_GA_CE], m_rec[V_LG_GA], m_acc[V_LG_GA_CE], m_acc[V_LG_GA]);
    printf("# paper's Table 1 \"LG-CAV without modules is worse than the original CAV\": "
           "here acc %.3f vs %.3f / %.3f, rec %.3f vs %.3f / %.3f (not reproduced, not asserted)\n",
           m_acc[V_LG_NONE], m_acc[V_CAV_HINGE], m_acc[V_CAV_LOGISTIC], m_rec[V_LG_NONE],
           m_rec[V_CAV_HINGE], m_rec[V_CAV_LOGISTIC]);
}

#define DSR_SEEDS 4

// DSR with outlier probes: their weights, and where the fit's residual goes
static void test_dsr_outliers(void) {
    int64_t *idx = malloc(sizeof(int64_t) * WPOOL);
    float *a = malloc(sizeof(float) * WPOOL);
    float *fr = malloc(sizeof(float) * 1000 * WDF), *wt = malloc(sizeof(float) * 1000);
    int w_ok = 1, res_ok = 1, ran = idx && a && fr && wt;
    double wo_m = 0, wi_m = 0, drec = 0, dacc = 0, n_out = 0;
    for (int s = 0; s < DSR_SEEDS && ran; s++) {
        world w;
        if (world_make(&w, seed_base(2000) + (uint64_t)s, 0.03) < 0) {
            ran = 0;
            break;
        }
        ns_err err = {{0}};
        int64_t nr = world_probes(&w, 1, idx, a);
        if (nr != 1000) {
            world_free(&w);
            ran = 0;
            break;
        }
        for (int64_t i = 0; i < nr; i++)
            memcpy(fr + i * WDF, w.f + idx[i] * WDF, sizeof(float) * WDF);
        ns_cav_dsr_weights(wt, NULL, fr, nr, w.pos, WLAB, WDF, 1, &err);
        double wo = 0, wi = 0;
        int no = 0, ni = 0;
        for (int64_t i = 0; i < nr; i++) {
            if (w.is_out[idx[i]]) wo += wt[i], no++;
            else wi += wt[i], ni++;
        }
        if (no == 0) {
            world_free(&w);
            ran = 0;
            break;
        }
        wo /= no;
        wi /= ni;
        w_ok &= wo < wi;
        wo_m += wo / DSR_SEEDS;
        wi_m += wi / DSR_SEEDS;
        n_out += (double)no / DSR_SEEDS;
        // GA target on R, as the fit makes it
        double mt, st, mv = 0, vv = 0;
        ns_cav_pair_stats(&mt, &st, fr, nr, WDF, 0, 1, &err);
        for (int64_t i = 0; i < nr; i++) mv += a[idx[i]] / (double)nr;
        for (int64_t i = 0; i < nr; i++) vv += (a[idx[i]] - mv) * (a[idx[i]] - mv);
        double sv = sqrt(vv / (double)(nr - 1));
        double res[2][2], rc[2], ac[2];
        for (int d = 0; d < 2; d++) {
            ns_lgcav_config lc;
            ns_lgcav_config_default(&lc);
            lc.cls = 0; // pure L_LG: the reweighting acts on it alone
            lc.dsr = d;
            lc.seed = (uint64_t)s;
            ns_lgcav_input in = world_input(&w);
            float v[WDF];
            ns_cav_decision dec;
            if (ns_lgcav_fit(v, &dec, NULL, &in, &lc, &err) < 0 ||
                ns_cav_accuracy(&ac[d], v, &dec, w.tpos, WTEST, w.tneg, WTEST, WDF, &err) < 0) {
                CHECK(0, "DSR fit: %s", err.msg);
                ran = 0;
                break;
            }
            double ro = 0, ri = 0;
            for (int64_t i = 0; i < nr; i++) {
                double tg = (a[idx[i]] - mv) / sv * st + mt;
                double r = ns_cav_cos(v, fr + i * WDF, WDF) - tg;
                if (w.is_out[idx[i]]) ro += r * r;
                else ri += r * r;
            }
            res[d][0] = ro / no;
            res[d][1] = ri / ni;
            rc[d] = recovery(&w, v);
        }
        world_free(&w);
        if (!ran) break;
        res_ok &= res[1][0] > res[0][0] && res[1][1] < res[0][1];
        drec += (rc[1] - rc[0]) / DSR_SEEDS;
        dacc += (ac[1] - ac[0]) / DSR_SEEDS;
    }
    free(idx);
    free(a);
    free(fr);
    free(wt);
    if (!ran) {
        CHECK(0, "the DSR benchmark ran");
        return;
    }
    CHECK(w_ok, "DSR weighs the outlier probes down on every seed: mean weight %.4f (%.1f "
                "outliers in R) vs %.4f",
          wo_m, n_out, wi_m);
    CHECK(res_ok, "with DSR the fit follows the outliers less on every seed (their residual "
                  "rises, the inliers' falls)");
    printf("# DSR's effect on recovery %+.4f, on accuracy %+.4f (means, not asserted)\n", drec,
           dacc);
}

// ----------------------------------------------------------------------------
// LG-CAV's interface: rules, errors, the start given by the caller

static double vnorm(const float *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

static void test_lgcav_api(void) {
    world w;
    if (world_make(&w, 77, 0) < 0) {
        CHECK(0, "world");
        return;
    }
    ns_lgcav_input in = world_input(&w);
    ns_lgcav_config lc;
    ns_lgcav_config_default(&lc);
    lc.epochs = 60;
    float v[WDF], v2[WDF];
    ns_cav_decision dec;
    ns_lgcav_report rep;
    ns_err err = {{0}};
    int rc = ns_lgcav_fit(v, &dec, &rep, &in, &lc, &err);
    CHECK(rc == 0 && dec.rule == NS_CAV_RULE_LINEAR && rep.n_probes == 1000 && rep.n_top == 500 &&
              rep.w_min < 1 && rep.w_max > 1 && rep.steps == 600 && rep.feat_scale > 0 &&
              isfinite(rep.loss_lg) && isfinite(rep.loss_cls),
          "LG-CAV with L_cls: linear rule, |R| %lld, DSR weights %.3f..%.3f, %lld steps, "
          "L_LG %.4g, L_cls %.4g, fit acc on R %.3f",
          (long long)rep.n_probes, rep.w_min, rep.w_max, (long long)rep.steps, rep.loss_lg,
          rep.loss_cls, rep.fit_acc);
    rc = ns_lgcav_fit(v2, &dec, &rep, &in, &lc, &err);
    CHECK(rc == 0 && memcmp(v, v2, sizeof v) == 0, "same seed, same CAV");

    lc.cls = 0;
    rc = ns_lgcav_fit(v, &dec, &rep, &in, &lc, &err);
    CHECK(rc == 0 && dec.rule == NS_CAV_RULE_COSINE && fabs(vnorm(v, WDF) - 1) < 1e-5 &&
              isnan(rep.loss_cls) && rep.fit_acc > 0.75,
          "pure LG-CAV: cosine rule, threshold %.4f, unit v, fit acc on R %.3f", -dec.offset,
          rep.fit_acc);
    double thr_best = -dec.offset;
    lc.thresh = NS_LGCAV_THRESH_MID;
    rc = ns_lgcav_fit(v, &dec, &rep, &in, &lc, &err);
    CHECK(rc == 0 && fabs(-dec.offset - thr_best) < 0.1, "midpoint threshold %.4f (best %.4f)",
          -dec.offset, thr_best);

    // a given start (as used to continue from another CAV)
    lc.thresh = NS_LGCAV_THRESH_BEST;
    lc.init = NS_LGCAV_INIT_GIVEN;
    memcpy(v2, w.wstar, sizeof v2);
    rc = ns_lgcav_fit(v2, &dec, &rep, &in, &lc, &err);
    CHECK(rc == 0, "a given start trains");
    for (int j = 0; j < WDF; j++) v2[j] = 0;
    rc = ns_lgcav_fit(v2, &dec, &rep, &in, &lc, &err);
    CHECK(rc < 0 && strstr(err.msg, "zero"), "a zero start is refused: %s", err.msg);
    lc.init = NS_LGCAV_INIT_PROBES;
    rc = ns_lgcav_fit(v, &dec, &rep, &in, &lc, &err);
    CHECK(rc == 0, "the probe start trains");

    // errors name the problem
    ns_lgcav_config_default(&lc);
    ns_lgcav_input bad = in;
    bad.np = 0;
    bad.pos = NULL;
    rc = ns_lgcav_fit(v, &dec, &rep, &bad, &lc, &err);
    CHECK(rc < 0 && strstr(err.msg, "DSR needs"), "DSR without positives: %s", err.msg);
    lc.dsr = 0;
    rc = ns_lgcav_fit(v, &dec, &rep, &bad, &lc, &err);
    CHECK(rc < 0 && strstr(err.msg, "L_cls needs"), "L_cls without positives: %s", err.msg);
    lc.cls = 0;
    lc.lg = 0;
    rc = ns_lgcav_fit(v, &dec, &rep, &bad, &lc, &err);
    CHECK(rc < 0 && strstr(err.msg, "neither"), "nothing to train: %s", err.msg);
    ns_lgcav_config_default(&lc);
    lc.ce = 0;
    lc.template_index = WT;
    rc = ns_lgcav_fit(v, &dec, &rep, &in, &lc, &err);
    CHECK(rc < 0 && strstr(err.msg, "template"), "template index: %s", err.msg);
    ns_lgcav_config_default(&lc);
    lc.schedule = "bogus";
    rc = ns_lgcav_fit(v, &dec, &rep, &in, &lc, &err);
    CHECK(rc < 0 && strstr(err.msg, "bogus"), "bad schedule: %s", err.msg);
    ns_lgcav_config_default(&lc);
    float keep = w.g[5 * WDV + 3];
    w.g[5 * WDV + 3] = INFINITY;
    rc = ns_lgcav_fit(v, &dec, &rep, &in, &lc, &err);
    CHECK(rc < 0 && strstr(err.msg, "row 5"), "non-finite VLM embedding: %s", err.msg);
    w.g[5 * WDV + 3] = keep;
    // every VLM score equal: GA has nothing to align
    float *gsame = malloc(sizeof(float) * WPOOL * WDV);
    if (gsame) {
        for (int i = 0; i < WPOOL; i++) memcpy(gsame + i * WDV, w.g, sizeof(float) * WDV);
        bad = in;
        bad.g = gsame;
        rc = ns_lgcav_fit(v, &dec, &rep, &bad, &lc, &err);
        CHECK(rc < 0 && strstr(err.msg, "same VLM score"), "constant VLM scores with GA: %s",
              err.msg);
        free(gsame);
    }
    world_free(&w);
}

int main(void) {
    setenv("NETSMITH_THREADS", "1", 0); // small products; leave the cores to others
    test_lgcav_api();
    test_benchmark();
    test_dsr_outliers();
    return check_done();
}
