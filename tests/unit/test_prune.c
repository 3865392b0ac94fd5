// test_prune.c: structural pruning (lib/prune/prune.h).
//
// 1. Criteria against PyTorch. tests/ref/prune.tns (tests/ref/gen_prune_ref.py)
//    holds a small model's weights (conv-bn-relu x3 with a residual add, a
//    flatten, two linears), 16 labelled samples and each criterion's
//    normalised scores per group computed in float64 from prune.h's
//    definitions; the C scores must agree: weights-only criteria to 1e-5
//    relative, taylor and obd-hessian (float32 gradients here) to 1e-3, hrank
//    (ranks by SVD there, by elimination here, so equal) to float32 rounding;
//    thinet and cp (a greedy order; a LASSO path solved by FISTA there and
//    coordinate descent here) to 1e-3 like the other data criteria (measured
//    1e-7).
//    bn-scale must leave the group without batch norm unscored.
// 2. Pruning equals masking. On every built-in (mlp, lenet, vgg, resnet20,
//    resnet56, resnet18) and spec graphs with concat, add and flatten, grouped and
//    depthwise convolutions: a pruning step (l2, global, speed-up 2) gives a
//    smaller model whose logits equal the unpruned model's with the dropped
//    channels' input columns zeroed in every reader (max |diff| < 1e-4 of the
//    output's scale); a control that also zeroes all but one kept channel of
//    a group must differ. The predicted MACs and parameters
//    (ns_prune_predict) equal the pruned model's counts exactly, and the
//    speed-up reached is at least the target.
// 3. Options: every criterion runs on resnet20 (data criteria on random
//    labelled inputs) and reaches 2x; --protect keeps ceil(0.1 n) channels at
//    least; round-to 4 keeps multiples of 4; local mode removes the same
//    fraction from every group (to rounding); progressive steps reach the
//    target; ratio targets remove the fraction asked.
// 5. Regularisers: the gradient bn-scale, group-lasso, group-norm and
//    growing-reg add to one element of each member of one group equals the
//    formula (prune.h) from hand-computed channel norms.
// 4. Errors: a speed-up beyond the protection fails with a message naming it
//    and leaves no keep list; a model without a prunable group gets no scores;
//    a data criterion without data fails.
// Run from the repo root.
// sanitize: yes
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "grouped_specs.h"
#define SPLITMIX_SEED 0x1234567ull
#include "splitmix.h"
#include "nn/arch.h"
#include "nn/spec.h"
#include "prune/prune.h"

#define REF_PATH "tests/ref/prune.tns"
#define BATCH 4


static const char ref_spec[] =
    "[input]\nshape = 2x4x4\n"
    "[conv2d a]\nout = 6\npad = 1\n[batchnorm bna]\n[relu ra]\n"
    "[conv2d b]\nout = 5\npad = 1\n[batchnorm bnb]\n[relu rb]\n"
    "[conv2d c]\nout = 6\npad = 1\n[batchnorm bnc]\n"
    "[add sum]\nfrom = bnc, ra\n[relu rs]\n[flatten]\n"
    "[linear fc1]\nout = 7\n[relu r1]\n[linear fc]\nout = 3\n";

static const char concat_spec[] =
    "[input]\nshape = 3x8x8\n"
    "[conv2d a]\nout = 8\npad = 1\n[batchnorm bna]\n[relu ra]\n"
    "[conv2d b]\nfrom = input\nout = 6\npad = 1\n[relu rb]\n"
    "[concat cat]\nfrom = ra, rb\n"
    "[conv2d c]\nout = 14\npad = 1\nbias = 0\n[batchnorm bnc]\n"
    "[add sum]\nfrom = bnc, cat\n[relu rs]\n"
    "[conv2d d]\nout = 10\nkernel = 1\n[relu rd]\n[maxpool]\n[flatten]\n"
    "[linear h]\nout = 12\n[relu]\n[linear fc]\nout = 3\n";

// ---------------------------------------------------------------------------
// 1. against the reference

typedef struct ref { char name[NS_NAME_MAX + 1]; ns_tensor t; } ref;
static ref *refs;
static int nrefs;

static int load_refs(ns_err *err) {
    ns_reader *rd = ns_reader_open(REF_PATH, err);
    if (!rd) return -1;
    ns_record rec;
    int got;
    refs = calloc(256, sizeof *refs);
    while ((got = ns_reader_next(rd, &rec, err)) == 1 && nrefs < 256) {
        snprintf(refs[nrefs].name, sizeof refs[nrefs].name, "%s", rec.name);
        if (ns_record_tensor_f32(&rec, &refs[nrefs].t, err) < 0) { got = -1; break; }
        nrefs++;
    }
    ns_reader_close(rd);
    return got;
}

static const ns_tensor *ref_get(const char *name) {
    for (int i = 0; i < nrefs; i++)
        if (strcmp(refs[i].name, name) == 0) return &refs[i].t;
    return NULL;
}

static int group_made_by(const ns_chgroups *g, const ns_model *m, const char *node) {
    int n = ns_model_find_node(m, node);
    for (int p = 0; p < g->ngroups; p++)
        for (int k = 0; k < g->groups[p].nmembers; k++)
            if (g->groups[p].members[k].role == NS_CH_OUT && g->groups[p].members[k].node == n) return p;
    return -1;
}

static void test_reference(void) {
    ns_err err;
    if (load_refs(&err) < 0) {
        CHECK(0, "reading %s: %s", REF_PATH, err.msg);
        return;
    }
    ns_model m;
    ns_model_init(&m);
    CHECK(ns_spec_parse(&m, ref_spec, strlen(ref_spec), "ref", &err) == 0, "reference spec parses");
    int loaded = 0;
    for (int t = 0; t < m.ntensors; t++) {
        char name[NS_NAME_MAX + 8];
        snprintf(name, sizeof name, "w/%s", m.tensors[t].name);
        const ns_tensor *r = ref_get(name);
        if (r && r->numel == m.tensors[t].t.numel) {
            memcpy(m.tensors[t].t.data, r->data, (size_t)r->numel * sizeof(float));
            loaded++;
        }
    }
    CHECK(loaded == m.ntensors, "every tensor from the reference (%d of %d)", loaded, m.ntensors);
    const ns_tensor *x = ref_get("x"), *yf = ref_get("y");
    int32_t y[16];
    for (int i = 0; yf && i < 16; i++) y[i] = (int32_t)((float *)yf->data)[i];
    ns_prune_data data = {x ? x->data : NULL, y, 16, 8};
    ns_chgroups g;
    CHECK(ns_chgroups_build(&g, &m, &err) == 0, "groups of the reference model");
    const char *groups[] = {"a", "b", "fc1"};
    const int crits[] = {NS_PRUNE_L1, NS_PRUNE_L2, NS_PRUNE_BN_SCALE, NS_PRUNE_FPGM, NS_PRUNE_LAMP,
                         NS_PRUNE_TAYLOR, NS_PRUNE_OBD_HESSIAN, NS_PRUNE_HRANK, NS_PRUNE_THINET, NS_PRUNE_CP};
    for (size_t c = 0; c < sizeof crits / sizeof *crits; c++) {
        ns_prune_scores s;
        const char *cname = ns_prune_criteria[crits[c]].name;
        if (ns_prune_importance(&s, &m, &g, crits[c], &data, 1, &err) < 0) {
            CHECK(0, "%s: %s", cname, err.msg);
            continue;
        }
        double tol = crits[c] == NS_PRUNE_HRANK ? 1e-6 : ns_prune_criteria[crits[c]].needs_data ? 1e-3 : 1e-5;
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof name, "score/%s/%s", cname, groups[k]);
            const ns_tensor *r = ref_get(name);
            int p = group_made_by(&g, &m, groups[k]);
            if (!r) {
                CHECK(p >= 0 && !s.score[p], "%s leaves group %s unscored", cname, groups[k]);
                continue;
            }
            if (p < 0 || !s.score[p] || g.groups[p].size != r->numel) {
                CHECK(0, "%s: group %s scored with %lld channels", cname, groups[k], (long long)r->numel);
                continue;
            }
            double worst = 0;
            for (int64_t i = 0; i < r->numel; i++) {
                double want = ((float *)r->data)[i], d = fabs(s.score[p][i] - want) / (fabs(want) + 1e-6);
                if (d > worst) worst = d;
            }
            CHECK(worst < tol, "%s scores of group %s match torch (worst relative %.2g)", cname, groups[k], worst);
        }
        ns_prune_scores_free(&s);
    }
    ns_prune_scores s;
    CHECK(ns_prune_importance(&s, &m, &g, NS_PRUNE_TAYLOR, NULL, 1, &err) < 0 && strstr(err.msg, "needs"),
          "taylor without data fails (%s)", err.msg);
    ns_chgroups_free(&g);
    ns_model_free(&m);
    for (int i = 0; i < nrefs; i++) ns_tensor_free(&refs[i].t);
    free(refs);
}

// ---------------------------------------------------------------------------
// 2. pruning equals masking

typedef struct tcase { const char *name, *arch; ns_arch_opts opts; const char *spec; } tcase;

static int make_model(ns_model *m, const tcase *c, ns_err *err) {
    ns_model_init(m);
    int rc = c->arch ? ns_arch_build(m, c->arch, &c->opts, err) : ns_spec_parse(m, c->spec, strlen(c->spec), c->name, err);
    if (rc < 0) return -1;
    ns_model_init_params(m, 11);
    rng_state = 99;
    for (int i = 0; i < m->nnodes; i++) { // batch norms away from the identity
        const ns_node *n = &m->nodes[i];
        if (n->op != NS_OP_BATCHNORM) continue;
        for (int p = 0; p < 4; p++) {
            ns_tensor *t = &m->tensors[n->params[p]].t;
            float lo = p == 1 || p == 2 ? -0.5f : 0.5f, hi = p == 1 || p == 2 ? 0.5f : 1.5f;
            for (int64_t j = 0; j < t->numel; j++) ((float *)t->data)[j] = urand(lo, hi);
        }
    }
    return 0;
}

static float *forward(ns_model *m, const float *x, int64_t n, int64_t *numel) {
    ns_engine e;
    ns_err err;
    if (ns_engine_init(&e, m, n, 0, &err) < 0) return NULL;
    const float *y = ns_engine_forward(&e, x, n, 0, &err);
    float *out = NULL;
    if (y) {
        *numel = n * ns_engine_output_numel(&e);
        out = malloc((size_t)*numel * sizeof *out);
        memcpy(out, y, (size_t)*numel * sizeof *out);
    }
    ns_engine_free(&e);
    return out;
}

// Zeroes, in every reader of a pruned group (its IN members), the columns of
// the channels the keep lists drop.
static void mask_dropped(ns_model *m, const ns_chgroups *g, int64_t **keep, const int64_t *nkeep) {
    ns_err err;
    for (int p = 0; p < g->ngroups; p++) {
        if (!keep[p]) continue;
        const ns_chgroup *gr = &g->groups[p];
        char *kept = calloc((size_t)gr->size, 1);
        for (int64_t i = 0; i < nkeep[p]; i++) kept[keep[p][i]] = 1;
        for (int i = 0; i < gr->nmembers; i++) {
            const ns_chmember *mb = &gr->members[i];
            if (mb->role != NS_CH_IN) continue;
            int32_t *map = ns_prune_channel_map(m, gr, mb, &err);
            float *w = m->tensors[mb->tensor].t.data;
            for (int64_t e = 0; map && e < m->tensors[mb->tensor].t.numel; e++)
                if (map[e] >= 0 && !kept[map[e]]) w[e] = 0;
            free(map);
        }
        free(kept);
    }
}

static double max_abs_diff(const float *a, const float *b, int64_t n, double *scale) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]);
        if (x > d || x != x) d = x;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    *scale = s;
    return d;
}

static void test_mask_equivalence(const tcase *c) {
    ns_err err;
    ns_model m, ref;
    if (make_model(&m, c, &err) < 0 || make_model(&ref, c, &err) < 0) {
        CHECK(0, "%s: building: %s", c->name, err.msg);
        return;
    }
    int64_t in = m.nodes[0].numel, n1, n2;
    float *x = malloc((size_t)(BATCH * in) * sizeof *x);
    for (int64_t i = 0; i < BATCH * in; i++) x[i] = urand(-1, 1);
    ns_chgroups g;
    ns_prune_scores s;
    ns_prune_limits l;
    ns_prune_opts o = {0, 0.1, 1, 2.0, 0, 1};
    int64_t **keep = calloc(64, sizeof *keep), nkeep[64] = {0};
    if (ns_chgroups_build(&g, &m, &err) < 0 || g.ngroups > 64 ||
        ns_prune_importance(&s, &m, &g, NS_PRUNE_L2, NULL, 1, &err) < 0 ||
        ns_prune_limits_init(&l, &m, &g, &s, &o, &err) < 0 || ns_prune_choose(&m, &g, &s, &l, &o, 1, keep, nkeep, &err) < 0) {
        CHECK(0, "%s: %s", c->name, err.msg);
        return;
    }
    int64_t removed[64] = {0}, pred_params, pred_macs;
    for (int p = 0; p < g.ngroups; p++) removed[p] = keep[p] ? g.groups[p].size - nkeep[p] : 0;
    pred_macs = ns_prune_predict(&m, &g, removed, &pred_params);
    mask_dropped(&ref, &g, keep, nkeep);
    // control: the kept columns of the first pruned group masked too, but one
    ns_model ctl;
    make_model(&ctl, c, &err);
    for (int p = 0; p < g.ngroups; p++) {
        if (!keep[p]) continue;
        int64_t save = nkeep[p];
        nkeep[p] = 1;
        mask_dropped(&ctl, &g, keep, nkeep);
        nkeep[p] = save;
        break;
    }
    int sel = ns_chgroups_select_many(&m, &g, (const int64_t *const *)keep, nkeep, &err);
    CHECK(sel == 0, "%s: pruned (%s)", c->name, sel ? err.msg : "ok");
    float *a = forward(&m, x, BATCH, &n1), *b = forward(&ref, x, BATCH, &n2);
    double scale = 0, d = a && b && n1 == n2 ? max_abs_diff(a, b, n1, &scale) : 1e9;
    CHECK(d <= 1e-4 * (scale > 1 ? scale : 1), "%s: pruned logits equal masked logits (max |diff| %.2g, scale %.2g)",
          c->name, d, scale);
    CHECK(ns_model_macs(&m) == pred_macs && ns_model_param_count(&m, 1) == pred_params,
          "%s: predicted MACs %lld params %lld, counted %lld %lld", c->name, (long long)pred_macs,
          (long long)pred_params, (long long)ns_model_macs(&m), (long long)ns_model_param_count(&m, 1));
    CHECK((double)l.base_macs / (double)ns_model_macs(&m) >= 2.0, "%s: speed-up %.3f reaches 2", c->name,
          (double)l.base_macs / (double)ns_model_macs(&m));
    free(b);
    b = forward(&ctl, x, BATCH, &n2);
    d = a && b ? max_abs_diff(a, b, n1, &scale) : 0;
    CHECK(d > 1e-4 * (scale > 1 ? scale : 1), "%s: control (kept channels masked) differs by %.2g", c->name, d);
    for (int p = 0; p < g.ngroups; p++) free(keep[p]);
    free(keep);
    free(a);
    free(b);
    free(x);
    ns_prune_scores_free(&s);
    ns_prune_limits_free(&l);
    ns_chgroups_free(&g);
    ns_model_free(&m);
    ns_model_free(&ref);
    ns_model_free(&ctl);
}

// ---------------------------------------------------------------------------
// 3. options, 4. errors

// Prunes m in place (steps of o); returns 0 or -1 with err.
static int prune(ns_model *m, int crit, const ns_prune_opts *o, const ns_prune_data *d, ns_prune_limits *l,
                 ns_err *err) {
    ns_chgroups g;
    if (ns_chgroups_build(&g, m, err) < 0) return -1;
    int rc = 0;
    int64_t *keep[256] = {0}, nkeep[256] = {0};
    for (int step = 1; rc == 0 && step <= o->steps; step++) {
        ns_prune_scores s;
        if ((rc = ns_prune_importance(&s, m, &g, crit, d, 3, err)) < 0) break;
        if (step == 1) rc = ns_prune_limits_init(l, m, &g, &s, o, err);
        if (rc == 0) rc = ns_prune_choose(m, &g, &s, l, o, step, keep, nkeep, err);
        if (rc == 0) rc = ns_chgroups_select_many(m, &g, (const int64_t *const *)keep, nkeep, err);
        for (int p = 0; p < g.ngroups; p++) { free(keep[p]); keep[p] = NULL; }
        ns_prune_scores_free(&s);
    }
    ns_chgroups_free(&g);
    return rc;
}

static void test_options(void) {
    ns_err err;
    tcase r20 = {"resnet20", "resnet20", {1, 12, 12, 10, 1, 0, {0}, 0, 0, 0}, NULL};
    ns_model base;
    make_model(&base, &r20, &err);
    ns_chgroups g0;
    ns_chgroups_build(&g0, &base, &err);
    int64_t n = 24, in = base.nodes[0].numel;
    float *x = malloc((size_t)(n * in) * sizeof *x);
    int32_t *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n * in; i++) x[i] = urand(-1, 1);
    for (int64_t i = 0; i < n; i++) y[i] = (int32_t)(rnd() % 10);
    ns_prune_data d = {x, y, n, 8};
    for (int c = 0; c < NS_PRUNE_NCRITERIA; c++) {
        ns_model m;
        make_model(&m, &r20, &err);
        ns_prune_opts o = {0, 0.1, 1, 2.0, 0, 1};
        ns_prune_limits l = {0};
        int rc = prune(&m, c, &o, &d, &l, &err);
        CHECK(rc == 0 && (double)l.base_macs / (double)ns_model_macs(&m) >= 2.0 &&
                  (double)l.base_macs / (double)ns_model_macs(&m) < 2.3,
              "%s reaches 2x on resnet20 (%.3fx%s%s)", ns_prune_criteria[c].name,
              rc ? 0 : (double)l.base_macs / (double)ns_model_macs(&m), rc ? ": " : "", rc ? err.msg : "");
        ns_prune_limits_free(&l);
        ns_model_free(&m);
    }
    // protection, round-to, local, steps, ratio
    struct { const char *what; ns_prune_opts o; } v[] = {
        {"global 3x protect 0.3", {0, 0.3, 1, 3.0, 0, 1}},
        {"round-to 4", {0, 0.1, 4, 2.0, 0, 1}},
        {"local 2x", {1, 0.1, 1, 2.0, 0, 1}},
        {"4 steps to 3x", {0, 0.1, 1, 3.0, 0, 4}},
        {"ratio 0.5", {0, 0.1, 1, 0, 0.5, 1}},
        {"local ratio 0.5", {1, 0.1, 1, 0, 0.5, 2}},
    };
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
        ns_model m;
        make_model(&m, &r20, &err);
        ns_prune_limits l = {0};
        int rc = prune(&m, NS_PRUNE_L1, &v[k].o, NULL, &l, &err);
        ns_chgroups g;
        ns_chgroups_build(&g, &m, &err);
        int protect_ok = 1, round_ok = 1;
        int64_t kept = 0, orig = 0, lo = 1 << 30, hi = 0; // local: per-group kept fraction in permille
        for (int p = 0; rc == 0 && p < g.ngroups; p++) {
            if (l.min_keep[p] <= 0) continue;
            int64_t sz = g.groups[p].size;
            if (sz < (int64_t)ceil(v[k].o.protect * (double)l.orig[p] - 1e-9)) protect_ok = 0;
            if (v[k].o.round_to > 1 && sz % v[k].o.round_to) round_ok = 0;
            kept += sz;
            orig += l.orig[p];
            int64_t pm = 1000 * sz / l.orig[p];
            lo = pm < lo ? pm : lo;
            hi = pm > hi ? pm : hi;
        }
        double speed = rc ? 0 : (double)l.base_macs / (double)ns_model_macs(&m);
        CHECK(rc == 0 && protect_ok && round_ok, "%s: runs, protection and rounding kept (%s)", v[k].what,
              rc ? err.msg : "ok");
        if (v[k].o.speed_up > 0)
            CHECK(speed >= v[k].o.speed_up && speed < v[k].o.speed_up * 1.15, "%s: speed-up %.3f", v[k].what, speed);
        else
            CHECK(fabs(1 - (double)kept / (double)orig - v[k].o.ratio) < 0.02, "%s: removed %.3f of the channels",
                  v[k].what, 1 - (double)kept / (double)orig);
        if (v[k].o.local) CHECK(hi - lo <= 70, "%s: kept fractions %lld..%lld permille", v[k].what, (long long)lo, (long long)hi);
        ns_chgroups_free(&g);
        ns_prune_limits_free(&l);
        ns_model_free(&m);
    }
    // errors
    ns_model m;
    make_model(&m, &r20, &err);
    ns_prune_opts o = {0, 0.5, 1, 50.0, 0, 1};
    ns_prune_limits l = {0};
    CHECK(prune(&m, NS_PRUNE_L2, &o, NULL, &l, &err) < 0 && strstr(err.msg, "cannot be reached"),
          "50x with protection 0.5 fails (%s)", err.msg);
    double ratio;
    ns_chgroups g;
    ns_chgroups_build(&g, &m, &err);
    int64_t max_macs = ns_prune_limits_max(&l, &m, &g, NULL, NULL, &ratio);
    CHECK((double)l.base_macs / (double)max_macs < 50 && ratio <= 0.5 + 1e-9,
          "the most 0.5 protection allows: %.2fx, ratio %.3f", (double)l.base_macs / (double)max_macs, ratio);
    CHECK(ns_model_macs(&m) == l.base_macs, "a failed step leaves the model unchanged");
    ns_chgroups_free(&g);
    ns_prune_limits_free(&l);
    ns_model_free(&m);
    const char *flat = "[input]\nshape = 1x4x4\n[flatten]\n[linear fc]\nout = 3\n";
    ns_model_init(&m);
    ns_spec_parse(&m, flat, strlen(flat), "flat", &err);
    ns_chgroups_build(&g, &m, &err);
    ns_prune_scores s;
    int any = 0;
    if (ns_prune_importance(&s, &m, &g, NS_PRUNE_L2, NULL, 1, &err) == 0) {
        for (int p = 0; p < s.ngroups; p++) any += s.score[p] != NULL;
        ns_prune_scores_free(&s);
    }
    CHECK(any == 0, "a model without hidden channels has no scored group");
    ns_chgroups_free(&g);
    ns_model_free(&m);
    ns_chgroups_free(&g0);
    ns_model_free(&base);
    free(x);
    free(y);
}

// ---------------------------------------------------------------------------
// 5. regularisers: the gradient each adds, element by element

// The coefficient of w in the gradient a regulariser adds for channel k of a
// group with channel norms n (growing: applied at step 0 and one epoch later).
static double reg_coef(int kind, double lambda, const double *n, int size, int k) {
    double lo = n[0], hi = n[0];
    for (int i = 1; i < size; i++) {
        lo = n[i] < lo ? n[i] : lo;
        hi = n[i] > hi ? n[i] : hi;
    }
    if (kind == NS_REG_GROUP_LASSO) return lambda / n[k];
    if (kind == NS_REG_GROUP_NORM) return lambda * pow(16, (hi - n[k]) / (hi - lo));
    return lambda + (lambda + 0.5 * (hi - n[k]) / (hi - lo));
}

static void test_regularisers(void) {
    ns_err err;
    tcase c = {"ref", NULL, {0}, ref_spec};
    double lambda = 1e-2;
    for (int kind = 0; kind < NS_REG_NKINDS; kind++) {
        ns_model m;
        make_model(&m, &c, &err);
        ns_engine e;
        ns_engine_init(&e, &m, 2, 1, &err);
        ns_engine_zero_grad(&e);
        ns_prune_reg *r = ns_prune_reg_create(&m, kind, lambda, 0.5, 3, &err);
        if (!r) { CHECK(0, "%s: %s", ns_prune_reg_names[kind], err.msg); continue; }
        ns_prune_reg_apply(r, &e, 0);
        if (kind == NS_REG_GROWING) ns_prune_reg_apply(r, &e, 3); // an epoch later: strengths grow
        // The channel norms of groups a and b by hand. Group a: a rows, bna, b
        // columns, c rows, bnc, fc1 columns (16 per channel); group b: b rows,
        // bnb, c columns. A conv element belongs to its row's and its column's group.
        int tb = ns_model_find_tensor(&m, "b.weight"), tbn = ns_model_find_tensor(&m, "bnb.weight"),
            tc = ns_model_find_tensor(&m, "c.weight"), ta = ns_model_find_tensor(&m, "a.weight"),
            tan = ns_model_find_tensor(&m, "bna.weight"), tcn = ns_model_find_tensor(&m, "bnc.weight"),
            tf = ns_model_find_tensor(&m, "fc1.weight");
        const float *wa = m.tensors[ta].t.data, *wan = m.tensors[tan].t.data, *wb = m.tensors[tb].t.data,
                    *wbn = m.tensors[tbn].t.data, *wc = m.tensors[tc].t.data, *wcn = m.tensors[tcn].t.data,
                    *wf = m.tensors[tf].t.data;
        double na[6] = {0}, nb[5] = {0};
        for (int k = 0; k < 6; k++) {
            na[k] = (double)wan[k] * wan[k] + (double)wcn[k] * wcn[k];
            for (int j = 0; j < 18; j++) na[k] += (double)wa[k * 18 + j] * wa[k * 18 + j];
            for (int j = 0; j < 45; j++) na[k] += (double)wc[k * 45 + j] * wc[k * 45 + j];
            for (int o = 0; o < 5; o++)
                for (int j = 0; j < 9; j++) na[k] += (double)wb[(o * 6 + k) * 9 + j] * wb[(o * 6 + k) * 9 + j];
            for (int o = 0; o < 7; o++)
                for (int j = 0; j < 16; j++) na[k] += (double)wf[o * 96 + k * 16 + j] * wf[o * 96 + k * 16 + j];
            na[k] = sqrt(na[k]);
        }
        for (int k = 0; k < 5; k++) {
            nb[k] = (double)wbn[k] * wbn[k];
            for (int j = 0; j < 54; j++) nb[k] += (double)wb[k * 54 + j] * wb[k * 54 + j];
            for (int o = 0; o < 6; o++)
                for (int j = 0; j < 9; j++) nb[k] += (double)wc[(o * 5 + k) * 9 + j] * wc[(o * 5 + k) * 9 + j];
            nb[k] = sqrt(nb[k]);
        }
        double worst = 0;
        for (int k = 0; k < 5; k++) {
            // b.weight[k, 1, 0, 1] (group b channel k, group a channel 1), bnb[k],
            // c.weight[2, k, 1, 1] (group a channel 2, group b channel k)
            double got[3] = {e.param_grad[tb][k * 54 + 10], e.param_grad[tbn][k], e.param_grad[tc][(2 * 5 + k) * 9 + 4]};
            double w[3] = {wb[k * 54 + 10], wbn[k], wc[(2 * 5 + k) * 9 + 4]};
            double cf[3] = {reg_coef(kind, lambda, nb, 5, k) + reg_coef(kind, lambda, na, 6, 1),
                            reg_coef(kind, lambda, nb, 5, k),
                            reg_coef(kind, lambda, nb, 5, k) + reg_coef(kind, lambda, na, 6, 2)};
            for (int i = 0; i < 3; i++) {
                double want = kind == NS_REG_BN_SCALE ? (i == 1 ? (w[i] > 0 ? lambda : -lambda) : 0) : cf[i] * w[i];
                double d = fabs(got[i] - want) / (fabs(want) + 1e-6);
                if (d > worst) worst = d;
            }
        }
        CHECK(worst < 1e-4, "%s: the gradient added to group b (worst relative %.2g)", ns_prune_reg_names[kind], worst);
        // a.weight is in group a (rows): regularised too except by bn-scale
        double ga = 0;
        for (int64_t j = 0; j < m.tensors[ta].t.numel; j++) ga += fabs(e.param_grad[ta][j]);
        CHECK((kind == NS_REG_BN_SCALE) == (ga == 0), "%s: a.weight %s", ns_prune_reg_names[kind],
              kind == NS_REG_BN_SCALE ? "untouched" : "regularised");
        ns_prune_reg_free(r);
        ns_engine_free(&e);
        ns_model_free(&m);
    }
    const char *flat = "[input]\nshape = 1x4x4\n[flatten]\n[linear h]\nout = 5\n[relu]\n[linear fc]\nout = 3\n";
    ns_model m;
    ns_model_init(&m);
    ns_spec_parse(&m, flat, strlen(flat), "flat", &err);
    ns_prune_reg *r = ns_prune_reg_create(&m, NS_REG_BN_SCALE, 1e-5, 0, 1, &err);
    CHECK(!r && strstr(err.msg, "no batch norm"), "bn-scale on a model without batch norm fails (%s)", err.msg);
    ns_model_free(&m);
}

int main(void) {
    test_reference();
    const tcase cases[] = {
        {"mlp", "mlp", {1, 6, 6, 5, 1, 0, {24, 16}, 2, 0, 0}, NULL},
        {"lenet", "lenet", {1, 28, 28, 10, 1, 0, {0}, 0, 0, 0}, NULL},
        {"vgg", "vgg", {3, 16, 16, 10, 0.5, 4, {0}, 0, 0, 0}, NULL},
        {"resnet20", "resnet20", {3, 16, 16, 10, 1, 0, {0}, 0, 0, 0}, NULL},
        {"resnet18", "resnet18", {3, 8, 8, 10, 0.25, 0, {0}, 0, 0, 0}, NULL},
        {"resnet56", "resnet56", {3, 8, 8, 10, 0.5, 0, {0}, 0, 0, 0}, NULL},
        {"concat spec", NULL, {0}, concat_spec},
        {"grouped spec", NULL, {0}, grouped_spec},
        {"depthwise spec", NULL, {0}, depthwise_spec},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) test_mask_equivalence(&cases[i]);
    test_options();
    test_regularisers();
    return check_done();
}
