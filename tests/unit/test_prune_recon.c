// test_prune_recon.c: the reconstruction criteria of lib/prune (thinet, cp:
// lib/prune/reconstruct.c), on a known answer.
//
// The model: input 1x6x6 -> conv a (4, 3x3 pad 1) relu -> conv b (3) relu ->
// flatten -> linear fc (3), with weights set so that the answer is known:
// a's channel 3 repeats channel 1 (same filter and bias, so the same
// activation), b ignores a's channel 2 (zero columns) and reads channel 3
// with half of channel 1's columns. So channel 2 contributes nothing to b,
// and channel 3's contribution is half of channel 1's:
//   - both criteria score channel 2 lowest in group a; cp scores 0 (its
//     LASSO coefficient never leaves 0) for channel 2 and for channel 3, whose
//     contribution the LASSO moves onto channel 1 (collinear, cheaper in l1);
//   - keeping channels {0, 1} of group a and reconstructing gives the
//     unpruned model's logits (thinet: channel 1's columns scaled by 1.5;
//     cp: the least-squares columns, W_1 + W_3), to 1e-4 of their scale,
//     while removing the same channels without reconstruction changes them
//     (the control).
// Run from the repo root.
// sanitize: yes
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nn/spec.h"
#include "prune/prune.h"

static const char spec[] =
    "[input]\nshape = 1x6x6\n"
    "[conv2d a]\nout = 4\npad = 1\n[relu ra]\n"
    "[conv2d b]\nout = 3\npad = 1\n[relu rb]\n"
    "[flatten]\n[linear fc]\nout = 3\n";

enum { N = 32 };

static uint64_t state = 0x9e3779b97f4a7c15ull;
static float urand(float lo, float hi) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)((state >> 40) / 16777216.0);
}

static float *tensor(ns_model *m, const char *name) { return m->tensors[ns_model_find_tensor(m, name)].t.data; }

static void make_model(ns_model *m) {
    ns_err err;
    ns_model_init(m);
    CHECK(ns_spec_parse(m, spec, strlen(spec), "recon", &err) == 0, "spec parses");
    ns_model_init_params(m, 5);
    float *aw = tensor(m, "a.weight"), *ab = tensor(m, "a.bias"), *bw = tensor(m, "b.weight");
    for (int j = 0; j < 9; j++) aw[3 * 9 + j] = aw[1 * 9 + j];
    ab[3] = ab[1];
    for (int o = 0; o < 3; o++)
        for (int j = 0; j < 9; j++) {
            bw[(o * 4 + 2) * 9 + j] = 0;
            bw[(o * 4 + 3) * 9 + j] = 0.5f * bw[(o * 4 + 1) * 9 + j];
        }
}

static float *logits(ns_model *m, const float *x) {
    ns_engine e;
    ns_err err;
    float *out = malloc(N * 3 * sizeof *out);
    if (ns_engine_init(&e, m, N, 0, &err) == 0) {
        const float *y = ns_engine_forward(&e, x, N, 0, &err);
        if (y) memcpy(out, y, N * 3 * sizeof *out);
        ns_engine_free(&e);
    }
    return out;
}

static int group_of(const ns_chgroups *g, const ns_model *m, const char *node) {
    for (int p = 0; p < g->ngroups; p++)
        for (int k = 0; k < g->groups[p].nmembers; k++)
            if (g->groups[p].members[k].role == NS_CH_OUT && strcmp(m->nodes[g->groups[p].members[k].node].name, node) == 0)
                return p;
    return -1;
}

// Keeps channels {0, 1} of group a, reconstructing with crit (or not: -1);
// returns max |logit change| / the logits' scale.
static double prune_a(int crit, const ns_prune_data *d, const float *x, const float *before) {
    ns_model m;
    ns_err err;
    make_model(&m);
    ns_chgroups g;
    ns_chgroups_build(&g, &m, &err);
    int pa = group_of(&g, &m, "a");
    int64_t keep_a[2] = {0, 1}, *keep[8] = {0}, nkeep[8] = {0};
    keep[pa] = keep_a;
    nkeep[pa] = 2;
    int rc = crit < 0 ? 0 : ns_prune_reconstruct(&m, &g, crit, d, (const int64_t *const *)keep, nkeep, 1, &err);
    if (rc == 0) rc = ns_chgroups_select_many(&m, &g, (const int64_t *const *)keep, nkeep, &err);
    CHECK(rc == 0, "prune group a (%s)", rc ? err.msg : "ok");
    double worst = 1e30;
    if (rc == 0) {
        float *after = logits(&m, x);
        double scale = 0;
        worst = 0;
        for (int i = 0; i < N * 3; i++) {
            scale = fabs(before[i]) > scale ? fabs(before[i]) : scale;
            worst = fabs(after[i] - before[i]) > worst ? fabs(after[i] - before[i]) : worst;
        }
        worst /= scale;
        free(after);
    }
    ns_chgroups_free(&g);
    ns_model_free(&m);
    return worst;
}

int main(void) {
    ns_model m;
    ns_err err;
    make_model(&m);
    float *x = malloc(N * 36 * sizeof *x);
    int32_t y[N];
    for (int i = 0; i < N * 36; i++) x[i] = urand(-1, 1);
    for (int i = 0; i < N; i++) y[i] = i % 3;
    ns_prune_data d = {x, y, N, 8};
    float *before = logits(&m, x);
    ns_chgroups g;
    CHECK(ns_chgroups_build(&g, &m, &err) == 0, "groups");
    int pa = group_of(&g, &m, "a");
    CHECK(pa >= 0 && g.groups[pa].size == 4, "group a has 4 channels");
    int crits[2] = {NS_PRUNE_THINET, NS_PRUNE_CP};
    for (int c = 0; c < 2; c++) {
        const char *name = ns_prune_criteria[crits[c]].name;
        ns_prune_scores s;
        if (ns_prune_importance(&s, &m, &g, crits[c], &d, 1, &err) < 0) {
            CHECK(0, "%s scores: %s", name, err.msg);
            continue;
        }
        const double *sa = s.score[pa];
        CHECK(sa && sa[2] < sa[0] && sa[2] < sa[1] && sa[2] <= sa[3], "%s scores the unused channel 2 lowest (%g %g %g %g)",
              name, sa ? sa[0] : 0, sa ? sa[1] : 0, sa ? sa[2] : 0, sa ? sa[3] : 0);
        if (crits[c] == NS_PRUNE_CP)
            CHECK(sa && sa[2] == 0 && sa[3] == 0 && sa[0] > 0 && sa[1] > 0,
                  "cp: the coefficients of channel 2 (unused) and 3 (channel 1's copy: the LASSO puts it on channel 1) never leave 0");
        if (crits[c] == NS_PRUNE_THINET)
            CHECK(sa && sa[2] < 1e-9 && sa[0] <= 1 + 1e-9 && sa[1] <= 1 + 1e-9 && sa[3] <= 1 + 1e-9,
                  "thinet: removing channel 2 costs nothing, all of them costs at most 1 (relative error)");
        int pb = group_of(&g, &m, "b");
        CHECK(pb >= 0 && s.score[pb], "%s scores group b (read by fc through the flatten)", name);
        ns_prune_scores_free(&s);
        double diff = prune_a(crits[c], &d, x, before);
        CHECK(diff < 1e-4, "%s: removing channels 2 and 3 and reconstructing keeps the logits (%.2g of their scale)",
              name, diff);
    }
    double control = prune_a(-1, &d, x, before);
    CHECK(control > 1e-2, "control: removing them without reconstruction changes the logits (%.2g)", control);
    // a criterion that needs data refuses to run without it
    ns_prune_scores s;
    CHECK(ns_prune_importance(&s, &m, &g, NS_PRUNE_CP, NULL, 1, &err) < 0 && strstr(err.msg, "needs labelled data"),
          "cp without data fails (%s)", err.msg);
    ns_chgroups_free(&g);
    ns_model_free(&m);
    free(x);
    free(before);
    return check_done();
}
