// test_chgroups.c: the channel-group analysis (lib/nn/chgroups.h) and the two
// edits built on it, on every built-in and on special graphs written as specs.
//
// 1. Groups. The expected groups of each model are worked out by hand below
//    (sizes in order of first appearance, block sizes, fixed flags) and
//    compared with the analysis, with some members checked in detail (a
//    flatten's H*W features per channel, a T x D flatten's repeats, a concat
//    that holds a group twice, a conv whose output channels an add splits).
// 2. Permutation. Every group that is not fixed gets a random permutation
//    (within its blocks); the network's output (eval mode, BN running
//    statistics and affine parameters random so BN is not the identity) must
//    not change: max |diff| < 1e-5. A control permutes only one conv's output
//    rows and must change the output, so the comparison can fail. Tied groups
//    (attention heads, GroupNorm groups) also move whole blocks, one random
//    block map per tie; a ViT, a GroupNorm net and a cross-attention graph are
//    among the cases, and test_attention checks the ties, the refusals and a
//    control (one head's q rows moved alone).
// 3. Pruning. Selecting all channels of a group changes no bit. Selecting a
//    random subset of every prunable group at once (ns_chgroups_select_many)
//    gives a smaller model whose output must equal a reference: the original
//    model with the columns of the dropped channels zeroed in every layer
//    that reads the group (its NS_CH_IN members). That is the same as masking
//    the dropped channels to 0 just before each reader, and it is exact
//    whatever runs between producer and reader: zeroing the producer's rows
//    instead would not do, since a BN after it still adds its bias (and
//    -mean*gamma/sqrt(var)) to a zero channel, and the add of a residual
//    stream would carry that on. The pruned model sums fewer zero terms, so
//    the two agree to float rounding (max |diff| < 1e-5 relative to the
//    output's scale). Graphs with a layernorm over the pruned channels are
//    left out of this comparison: its mean and variance run over the
//    channels, so pruning changes the function (documented in chgroups.h).
//    Parameter counts: the pruned model's tensors must have exactly the sizes
//    the members predict, and for resnet20 two hand-computed totals.
// 4. Errors: fixed groups refuse permutation and selection with a message
//    saying why; non-permutations, permutations across blocks, keep lists
//    with unequal blocks or out of order, and groups filling only part of a
//    grouped conv are refused; a refused edit leaves the model unchanged.
// The models, their expected groups and the shared helpers are
// chgroups_cases.h.
// Run from the repo root.
// sanitize: yes
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "chgroups_cases.h"
#include "nn/chgroups.h"
#include "nn/engine.h"
#include "nn/model.h"

// ---------------------------------------------------------------------------
// 1. groups

static void test_groups(int ci) {
    const tcase *c = &cases[ci];
    const want *w = &wants[ci];
    ns_model m;
    ns_err err;
    ns_chgroups g;
    if (make_model(&m, c, 1, &err) < 0 || ns_chgroups_build(&g, &m, &err) < 0) {
        CHECK(0, "%s: build: %s", c->name, err.msg);
        return;
    }
    CHECK(g.ngroups == w->ngroups, "%s: %d groups (want %d)", c->name, g.ngroups, w->ngroups);
    int ok = g.ngroups == w->ngroups;
    for (int k = 0; ok && k < g.ngroups; k++) {
        const ns_chgroup *gr = &g.groups[k];
        int64_t block = w->block[k] ? w->block[k] : w->size[k];
        if (gr->size != w->size[k] || gr->block != block || gr->fixed != w->fixed[k] ||
            gr->noselect != w->noselect[k]) {
            ok = 0;
            CHECK(0, "%s: group %d: size %lld block %lld fixed %u noselect %u (want %lld %lld %u %u)", c->name, k,
                  (long long)gr->size, (long long)gr->block, gr->fixed, gr->noselect, (long long)w->size[k],
                  (long long)block, w->fixed[k], w->noselect[k]);
        }
    }
    if (ok) CHECK(1, "%s: sizes, blocks and fixed flags of every group as worked out", c->name);
    // every node position belongs to a group, and ACT members agree
    int consistent = 1;
    for (int k = 0; k < g.ngroups; k++)
        for (int i = 0; i < g.groups[k].nmembers; i++) {
            const ns_chmember *mb = &g.groups[k].members[i];
            if (mb->role != NS_CH_ACT) continue;
            for (int64_t ch = 0; ch < g.groups[k].size; ch++) {
                int64_t got;
                if (ns_chgroups_find(&g, mb->node, ns_chmember_index(mb, ch, mb->reps - 1, mb->inner - 1), &got) != k ||
                    got != ch)
                    consistent = 0;
            }
        }
    CHECK(consistent, "%s: activation members agree with ns_chgroups_find", c->name);
    ns_chgroups_free(&g);
    ns_model_free(&m);
}

// Members and lookups checked one by one.
static void test_members(void) {
    ns_model m;
    ns_err err;
    ns_chgroups g;
    // resnet20: the stage streams
    make_model(&m, &cases[C_R20], 1, &err);
    ns_chgroups_build(&g, &m, &err);
    const ns_chgroup *s1 = group_of(&g, &m, "bn1", 0), *s2 = group_of(&g, &m, "layer2.0.shortcut.1", 5);
    int64_t ch = -1;
    int k = ns_chgroups_find(&g, ns_model_find_node(&m, "layer2.2.add"), 5, &ch);
    CHECK(s1 && s1->id == 1 && s2 && s2->id == 6 && k == 6 && ch == 5,
          "resnet20: the stem and the layer2 shortcut start the stage streams (groups %d, %d; %d)", s1 ? s1->id : -1,
          s2 ? s2->id : -1, k);
    CHECK(s1 && group_of(&g, &m, "layer1.2.bn2", 3) == s1 && member_on(s1, &m, "layer2.0.shortcut.0.weight", 1, 0) &&
              member_on(s1, &m, "layer2.0.conv1.weight", 1, 0) && member_on(s1, &m, "conv1.weight", 0, 0) &&
              member_on(s1, &m, "layer1.1.conv2.weight", 0, 0) && member_on(s1, &m, "layer1.0.conv1.weight", 1, 0),
          "resnet20: stage-1 stream: stem rows, block conv2 rows, block conv1 and layer2.0 inputs");
    // 21 tensor members: conv1 rows, bn1 x4, per block conv1 in, conv2 rows,
    // bn2 x4 (3 x 6), layer2.0 conv1 in and shortcut in
    int ntens = 0;
    for (int i = 0; s1 && i < s1->nmembers; i++) ntens += s1->members[i].tensor >= 0;
    CHECK(ntens == 1 + 4 + 3 * 6 + 2, "resnet20: stage-1 stream has %d tensor members (want 25)", ntens);
    const ns_chgroup *s3 = group_of(&g, &m, "layer3.2.relu2", 0);
    const ns_chmember *fcin = member_on(s3, &m, "fc.weight", 1, 0);
    CHECK(fcin && fcin->inner == 1 && fcin->offset == 0 && s3->act_node == ns_model_find_node(&m, "avgpool"),
          "resnet20: fc reads the stage-3 stream after pooling, its features recorded there");
    const ns_chgroup *inner = group_of(&g, &m, "layer1.0.relu1", 0);
    CHECK(inner && inner->act_node == ns_model_find_node(&m, "layer1.0.relu1"),
          "resnet20: an inner space's features are recorded after its relu");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ns_chgroups_print(&g, &m, f, 1);
    fclose(f);
    CHECK(text && strstr(text, "14 channel groups, 2 fixed") && strstr(text, "fixed (model input)") &&
              strstr(text, "made by conv1, layer1.0.conv2, layer1.1.conv2, layer1.2.conv2") &&
              strstr(text, "in   layer2.0.shortcut.0.weight axis 1"),
          "resnet20: the summary names groups, producers and members");
    free(text);
    ns_chgroups_free(&g);
    ns_model_free(&m);

    // vgg: fc reads the last conv's channels as 4x4 = 16 features each
    make_model(&m, &cases[C_VGG], 1, &err);
    ns_chgroups_build(&g, &m, &err);
    fcin = member_on(&g.groups[4], &m, "fc.weight", 1, 0);
    CHECK(fcin && fcin->inner == 16 && fcin->reps == 1 && fcin->offset == 0,
          "vgg: flatten gives 16 features per channel (inner %lld)", fcin ? (long long)fcin->inner : -1);
    ns_chgroups_free(&g);
    ns_model_free(&m);

    // concat: c's rows split between A and B, A twice in cat2
    make_model(&m, &cases[C_CONCAT], 1, &err);
    ns_chgroups_build(&g, &m, &err);
    const ns_chmember *ca = member_on(&g.groups[1], &m, "c.weight", 0, 0),
                      *cb = member_on(&g.groups[2], &m, "c.weight", 0, 0),
                      *da = member_on(&g.groups[1], &m, "d.weight", 1, 0),
                      *db = member_on(&g.groups[2], &m, "d.weight", 1, 0);
    CHECK(ca && ca->role == NS_CH_OUT && ca->offset == 0 && cb && cb->offset == 4 && da && da->reps == 2 &&
              da->rstride == 10 && da->offset == 0 && db && db->offset == 4 && db->reps == 1,
          "concat: c's output rows split (0-3 A, 4-9 B); d reads A at 0 and 10, B at 4");
    const ns_chmember *gin = member_on(&g.groups[4], &m, "gate.weight", 1, 0),
                      *gout = member_on(&g.groups[4], &m, "gate.weight", 0, 0);
    CHECK(gin && gin->role == NS_CH_IN && gout && gout->role == NS_CH_OUT,
          "concat: the mul joins h and gate; gate's weight is in the group on both axes");
    const ns_chmember *hin = member_on(&g.groups[3], &m, "h.weight", 1, 0);
    CHECK(hin && hin->inner == 16, "concat: h reads d's channels as 4x4 features");
    ns_chgroups_free(&g);
    ns_model_free(&m);

    // token: flatten of 6 x 8 repeats the embedding dim every 8 features
    make_model(&m, &cases[C_TOKEN], 1, &err);
    ns_chgroups_build(&g, &m, &err);
    const ns_chmember *fc1 = member_on(&g.groups[1], &m, "fc1.weight", 1, 0),
                      *emb = member_on(&g.groups[1], &m, "emb.weight", 1, 0),
                      *ln = member_on(&g.groups[1], &m, "layernorm1.weight", 0, 0);
    CHECK(fc1 && fc1->inner == 1 && fc1->reps == 6 && fc1->rstride == 8 && emb && emb->role == NS_CH_OUT && ln &&
              ln->role == NS_CH_CHAN,
          "token: embedding columns, layernorm, and fc1 reading every 8th feature 6 times");
    ns_chgroups_free(&g);
    ns_model_free(&m);

    // grouped: g1's input member is on the virtual axis with 4 conv groups
    make_model(&m, &cases[C_GROUPED], 1, &err);
    ns_chgroups_build(&g, &m, &err);
    const ns_chmember *g1in = member_on(&g.groups[1], &m, "g1.weight", 1, 0);
    CHECK(g1in && g1in->conv_groups == 4 && g1in->offset == 0 && g1in->role == NS_CH_IN,
          "grouped: g1 reads c1's group on its 4-group input");
    ns_chgroups_free(&g);
    ns_model_free(&m);

    // depthwise: the dw conv's weight rows are per-channel members of c1's group
    make_model(&m, &cases[C_DW], 1, &err);
    ns_chgroups_build(&g, &m, &err);
    const ns_chmember *dw = member_on(&g.groups[1], &m, "dw.weight", 0, 0);
    CHECK(dw && dw->role == NS_CH_CHAN && group_of(&g, &m, "relu2", 7) == &g.groups[1],
          "depthwise: dw passes c1's group through, its filters per channel");
    ns_chgroups_free(&g);
    ns_model_free(&m);
}

// ---------------------------------------------------------------------------
// 2. permutation

static void test_permute(int ci) {
    const tcase *c = &cases[ci];
    ns_model m;
    ns_err err;
    ns_chgroups g;
    if (make_model(&m, c, 2, &err) < 0 || ns_chgroups_build(&g, &m, &err) < 0) {
        CHECK(0, "%s: build: %s", c->name, err.msg);
        return;
    }
    float *x = make_input(&m, c);
    int64_t n0 = 0, n1 = 0;
    float *y0 = forward(&m, x, &n0);
    float **before = snapshot(&m);
    int failed = 0, npermuted = 0, nmoved = 0;
    // groups without ties one at a time; tied groups (attention heads,
    // GroupNorm groups) all at once, their blocks moved by one random map
    // per tie
    int64_t **perms = xcalloc((size_t)g.ngroups, sizeof *perms), **sigma = xcalloc((size_t)(g.nties + 1), sizeof *sigma);
    for (int t = 0; t < g.nties; t++) sigma[t] = NULL;
    for (int k = 0; k < g.ngroups; k++) {
        const ns_chgroup *gr = &g.groups[k];
        if (gr->fixed) continue;
        int64_t *p = perms[k] = xcalloc((size_t)gr->size, sizeof *p);
        random_perm(p, gr->size, gr->block);
        npermuted++;
        if (gr->tie < 0) {
            if (ns_chgroups_permute(&m, &g, k, p, &err) < 0) {
                CHECK(0, "%s: permute group %d: %s", c->name, k, err.msg);
                failed = 1;
            }
            continue;
        }
        int64_t nb = gr->size / gr->block, B = gr->block;
        if (!sigma[gr->tie]) {
            sigma[gr->tie] = xcalloc((size_t)nb, sizeof **sigma);
            random_perm(sigma[gr->tie], nb, nb);
            if (nb > 1 && sigma[gr->tie][0] == 0) { // make sure blocks move
                int64_t t = sigma[gr->tie][0];
                sigma[gr->tie][0] = sigma[gr->tie][1];
                sigma[gr->tie][1] = t;
            }
        }
        for (int64_t j = 0; j < gr->size; j++) p[j] = sigma[gr->tie][j / B] * B + p[j] % B;
        nmoved++;
    }
    const int64_t **tied = xcalloc((size_t)g.ngroups, sizeof *tied);
    for (int k = 0; k < g.ngroups; k++)
        if (perms[k] && g.groups[k].tie >= 0) tied[k] = perms[k];
    if (nmoved && ns_chgroups_permute_many(&m, &g, tied, &err) < 0) {
        CHECK(0, "%s: permute tied groups: %s", c->name, err.msg);
        failed = 1;
    }
    float *y1 = forward(&m, x, &n1);
    double d = y0 && y1 && n0 == n1 ? max_abs_diff(y0, y1, n0) : 1e30;
    CHECK(!failed && d < 1e-5 && !same_as(&m, before),
          "%s: %d groups permuted (%d moving whole blocks), parameters changed, output unchanged (max |diff| %.2g, "
          "output scale %.2g)",
          c->name, npermuted, nmoved, d, y0 ? max_abs(y0, n0) : 0.0);
    for (int k = 0; k < g.ngroups; k++) free(perms[k]);
    for (int t = 0; t < g.nties; t++) free(sigma[t]);
    free(perms);
    free(sigma);
    free(tied);
    snapshot_free(&m, before);
    free(y0);
    free(y1);
    free(x);
    ns_chgroups_free(&g);
    ns_model_free(&m);
}

// The control: a permutation of one conv's rows alone breaks the function.
static void test_permute_control(void) {
    ns_model m;
    ns_err err;
    make_model(&m, &cases[C_R20], 2, &err);
    float *x = make_input(&m, &cases[C_R20]);
    int64_t n0, n1;
    float *y0 = forward(&m, x, &n0);
    ns_tensor *w = &m.tensors[ns_model_find_tensor(&m, "conv1.weight")].t; // the stem, 16 x 1 x 3 x 3
    float *a = w->data, tmp[9];
    memcpy(tmp, a, sizeof tmp); // swap rows 0 and 1, and nothing else
    memcpy(a, a + 9, sizeof tmp);
    memcpy(a + 9, tmp, sizeof tmp);
    float *y1 = forward(&m, x, &n1);
    double d = max_abs_diff(y0, y1, n0);
    CHECK(d > 1e-4, "control: permuting the stem conv's rows alone changes the output (max |diff| %.2g)", d);
    free(y0);
    free(y1);
    free(x);
    ns_model_free(&m);
}

// ---------------------------------------------------------------------------
// 3. pruning

// Zeroes, in every reader of group gr, the columns of channels not kept.
static void zero_dropped_inputs(ns_model *m, const ns_chgroup *gr, const char *kept) {
    for (int i = 0; i < gr->nmembers; i++) {
        const ns_chmember *mb = &gr->members[i];
        if (mb->role != NS_CH_IN) continue;
        ns_tensor *t = &m->tensors[mb->tensor].t;
        int64_t rows = t->shape[0], cols = t->shape[1], inner = t->numel / (rows * cols);
        float *w = t->data;
        for (int64_t c = 0; c < gr->size; c++) {
            if (kept[c]) continue;
            for (int64_t r = 0; r < mb->reps; r++)
                for (int64_t s = 0; s < mb->inner; s++) {
                    int64_t p = ns_chmember_index(mb, c, r, s), col = p, o0 = 0, o1 = rows;
                    if (mb->conv_groups > 1) { // rows of p's block, column within it
                        int64_t blk = p / cols, ocg = rows / mb->conv_groups;
                        col = p % cols;
                        o0 = blk * ocg;
                        o1 = o0 + ocg;
                    }
                    for (int64_t o = o0; o < o1; o++) memset(w + (o * cols + col) * inner, 0, (size_t)inner * sizeof *w);
                }
        }
    }
}

// The shape every tensor should have after dropping the channels, from the
// members: per axis, the positions of dropped channels go.
static int64_t expected_params(const ns_model *m, const ns_chgroups *g, char *const *kept, int trainable_only) {
    int64_t total = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const ns_named_tensor *nt = &m->tensors[t];
        if (!nt->used || (trainable_only && !nt->trainable)) continue;
        int64_t numel = 1;
        for (int a = 0; a < nt->t.ndim; a++) {
            int64_t len = nt->t.shape[a], dropped = 0;
            for (int k = 0; k < g->ngroups; k++) {
                if (!kept[k]) continue;
                const ns_chgroup *gr = &g->groups[k];
                for (int i = 0; i < gr->nmembers; i++) {
                    const ns_chmember *mb = &gr->members[i];
                    if (mb->tensor != t || mb->axis != a) continue;
                    int64_t per = mb->reps * mb->inner;
                    for (int64_t c = 0; c < gr->size; c++) dropped += kept[k][c] ? 0 : per;
                }
            }
            // a grouped conv's input axis holds one block: its share of the drop
            const ns_node *owner = NULL;
            for (int i = 0; i < m->nnodes && !owner; i++)
                if (m->nodes[i].params[0] == t) owner = &m->nodes[i];
            if (owner && owner->op == NS_OP_CONV2D && a == 1) dropped /= ns_node_iattr(owner, "groups");
            numel *= len - dropped;
        }
        total += numel;
    }
    return total;
}

static void test_prune(int ci) {
    const tcase *c = &cases[ci];
    ns_model m, ref;
    ns_err err;
    ns_chgroups g;
    if (make_model(&m, c, 3, &err) < 0 || make_model(&ref, c, 3, &err) < 0 || ns_chgroups_build(&g, &m, &err) < 0) {
        CHECK(0, "%s: build: %s", c->name, err.msg);
        return;
    }
    float *x = make_input(&m, c);
    int64_t n0, n1, n2;
    float *y0 = forward(&m, x, &n0);

    // keeping every channel changes nothing
    float **before = snapshot(&m);
    int ok = 1;
    for (int k = 0; k < g.ngroups; k++) {
        const ns_chgroup *gr = &g.groups[k];
        if (gr->fixed || gr->noselect) continue;
        int64_t *all = xcalloc((size_t)gr->size, sizeof *all);
        for (int64_t j = 0; j < gr->size; j++) all[j] = j;
        if (ns_chgroups_select(&m, &g, k, all, gr->size, &err) < 0) {
            CHECK(0, "%s: select all of group %d: %s", c->name, k, err.msg);
            ok = 0;
        }
        free(all);
    }
    float *y1 = forward(&m, x, &n1);
    CHECK(ok && same_as(&m, before) && n1 == n0 && !memcmp(y0, y1, (size_t)n0 * sizeof *y0),
          "%s: selecting every channel is the identity", c->name);
    snapshot_free(&m, before);
    free(y1);

    // a random subset of every prunable group at once
    int64_t **keep = xcalloc((size_t)g.ngroups, sizeof *keep), *nkeep = xcalloc((size_t)g.ngroups, sizeof *nkeep);
    char **kept = xcalloc((size_t)g.ngroups, sizeof *kept);
    int nsel = 0;
    for (int k = 0; k < g.ngroups; k++) {
        const ns_chgroup *gr = &g.groups[k];
        if (gr->fixed || gr->noselect) continue;
        int64_t per = gr->block / 2 ? (gr->block + 1) / 2 : 1; // about half of each block
        keep[k] = xcalloc((size_t)gr->size, sizeof **keep);
        nkeep[k] = random_keep(keep[k], gr->size, gr->block, per);
        kept[k] = xcalloc((size_t)gr->size, 1);
        for (int64_t j = 0; j < nkeep[k]; j++) kept[k][keep[k][j]] = 1;
        zero_dropped_inputs(&ref, gr, kept[k]);
        nsel++;
    }
    int64_t want_params = expected_params(&m, &g, kept, 0), want_train = expected_params(&m, &g, kept, 1);
    int64_t old_params = ns_model_param_count(&m, 0);
    int ngroups = g.ngroups;
    int64_t *sizes = xcalloc((size_t)ngroups, sizeof *sizes);
    for (int k = 0; k < ngroups; k++) sizes[k] = keep[k] ? nkeep[k] : g.groups[k].size;
    if (ns_chgroups_select_many(&m, &g, (const int64_t *const *)keep, nkeep, &err) < 0) {
        CHECK(0, "%s: select: %s", c->name, err.msg);
    } else {
        int same = g.ngroups == ngroups;
        for (int k = 0; same && k < ngroups; k++) same = g.groups[k].size == sizes[k];
        CHECK(same, "%s: after pruning %d groups the analysis has the same groups, at the kept sizes", c->name, nsel);
        int64_t got = ns_model_param_count(&m, 0), got_train = ns_model_param_count(&m, 1);
        CHECK(got == want_params && got_train == want_train && got < old_params,
              "%s: parameters %lld -> %lld (members predict %lld; trainable %lld, predicted %lld)", c->name,
              (long long)old_params, (long long)got, (long long)want_params, (long long)got_train,
              (long long)want_train);
        float *yp = forward(&m, x, &n1);
        if (c->prune_ref) {
            float *yr = forward(&ref, x, &n2);
            double d = yp && yr && n1 == n2 ? max_abs_diff(yp, yr, n1) : 1e30, scale = yr ? max_abs(yr, n2) : 0;
            double moved = yr ? max_abs_diff(y0, yr, n0) : 0;
            CHECK(d < 1e-5 * (scale > 1 ? scale : 1) && moved > 1e-4,
                  "%s: pruned output equals the zeroed-columns reference (max |diff| %.2g, scale %.2g; "
                  "pruning moved the output by %.2g)",
                  c->name, d, scale, moved);
            free(yr);
        } else {
            CHECK(yp != NULL, "%s: the pruned model runs", c->name);
        }
        free(yp);
    }
    for (int k = 0; k < ngroups; k++) {
        free(keep[k]);
        free(kept[k]);
    }
    free(keep);
    free(nkeep);
    free(kept);
    free(sizes);
    free(y0);
    free(x);
    ns_chgroups_free(&g);
    ns_model_free(&m);
    ns_model_free(&ref);
}

// resnet20: pruning a stream and an inner space, counted by hand.
static void test_prune_counts(void) {
    ns_model m;
    ns_err err;
    ns_chgroups g;
    make_model(&m, &cases[C_R20], 4, &err);
    ns_chgroups_build(&g, &m, &err);
    int64_t p0 = ns_model_param_count(&m, 1), b0 = ns_model_param_count(&m, 0) - p0;
    // stage-1 stream 16 -> 12: per channel, conv1 (stem) 1x3x3 = 9, bn1 2,
    // layer1.k.conv1 inputs 16x3x3 = 144 (x3), layer1.k.conv2 rows 144 (x3),
    // layer1.k.bn2 2 (x3), layer2.0.conv1 inputs 32x3x3 = 288, layer2.0
    // shortcut inputs 32: 9 + 2 + 432 + 432 + 6 + 288 + 32 = 1201, x4 = 4804
    // trainable; running stats of bn1 and three bn2: 8 per channel, x4 = 32.
    int64_t keep[16];
    for (int i = 0; i < 12; i++) keep[i] = i + (i >= 6) * 2; // drop 6, 7, 14, 15
    keep[10] = 12;
    keep[11] = 13;
    int rc = ns_chgroups_select(&m, &g, 1, keep, 12, &err);
    int64_t p1 = ns_model_param_count(&m, 1), b1 = ns_model_param_count(&m, 0) - p1;
    CHECK(rc == 0 && p0 - p1 == 4804 && b0 - b1 == 32,
          "resnet20: stage-1 stream 16 -> 12 removes 4804 parameters and 32 statistics (%lld, %lld)",
          (long long)(p0 - p1), (long long)(b0 - b1));
    CHECK(rc == 0 && ns_node_iattr(&m.nodes[ns_model_find_node(&m, "conv1")], "out") == 12 &&
              m.nodes[ns_model_find_node(&m, "layer1.1.add")].shape[0] == 12 &&
              m.tensors[ns_model_find_tensor(&m, "layer2.0.shortcut.0.weight")].t.shape[1] == 12,
          "resnet20: the stem's out attribute, the stream's shapes and the readers follow");
    // layer2.1's inner space 32 -> 16: conv1 rows 32x3x3 = 288, bn1 2, conv2
    // inputs 288 per channel: 578 x 16 = 9248 trainable, 2 x 16 statistics.
    int k = ns_chgroups_find(&g, ns_model_find_node(&m, "layer2.1.relu1"), 0, NULL);
    int64_t keep2[16];
    for (int i = 0; i < 16; i++) keep2[i] = 2 * i;
    rc = ns_chgroups_select(&m, &g, k, keep2, 16, &err);
    int64_t p2 = ns_model_param_count(&m, 1), b2 = ns_model_param_count(&m, 0) - p2;
    CHECK(rc == 0 && p1 - p2 == 9248 && b1 - b2 == 32,
          "resnet20: layer2.1's inner space 32 -> 16 removes 9248 parameters and 32 statistics (%lld, %lld)",
          (long long)(p1 - p2), (long long)(b1 - b2));
    ns_chgroups_free(&g);
    ns_model_free(&m);
}

// ---------------------------------------------------------------------------
// 4. errors

static void test_errors(void) {
    ns_model m;
    ns_err err;
    ns_chgroups g;
    make_model(&m, &cases[C_R20], 5, &err);
    ns_chgroups_build(&g, &m, &err);
    float **before = snapshot(&m);
    int64_t p[64], keep[64];
    for (int i = 0; i < 64; i++) p[i] = keep[i] = i;
    err.msg[0] = 0;
    int rc = ns_chgroups_permute(&m, &g, 0, p, &err);
    CHECK(rc < 0 && strstr(err.msg, "group 0 is fixed (model input)"), "the input group refuses a permutation: %s",
          err.msg);
    rc = ns_chgroups_select(&m, &g, 13, keep, 5, &err);
    CHECK(rc < 0 && strstr(err.msg, "group 13 is fixed (model output)"), "the classes refuse a selection: %s",
          err.msg);
    p[3] = 2;
    rc = ns_chgroups_permute(&m, &g, 1, p, &err);
    CHECK(rc < 0 && strstr(err.msg, "not a permutation"), "a non-permutation is refused: %s", err.msg);
    keep[2] = 1;
    rc = ns_chgroups_select(&m, &g, 1, keep, 8, &err);
    CHECK(rc < 0 && strstr(err.msg, "rise strictly"), "a keep list out of order is refused: %s", err.msg);
    rc = ns_chgroups_select(&m, &g, 1, keep, 0, &err);
    CHECK(rc < 0, "keeping no channel is refused: %s", err.msg);
    rc = ns_chgroups_permute(&m, &g, 99, p, &err);
    CHECK(rc < 0 && strstr(err.msg, "no group 99"), "an unknown group is refused: %s", err.msg);
    CHECK(same_as(&m, before), "refused edits leave the model unchanged");
    snapshot_free(&m, before);
    ns_chgroups_free(&g);
    ns_model_free(&m);

    // blocks
    make_model(&m, &cases[C_GROUPED], 5, &err);
    ns_chgroups_build(&g, &m, &err);
    before = snapshot(&m);
    int64_t q[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    q[2] = 3;
    q[3] = 2; // crosses the block boundary of 3
    rc = ns_chgroups_permute(&m, &g, 2, q, &err);
    CHECK(rc < 0 && strstr(err.msg, "within blocks of 3"), "a permutation across blocks is refused: %s", err.msg);
    int64_t uneven[7] = {0, 1, 3, 6, 7, 9, 10};
    rc = ns_chgroups_select(&m, &g, 2, uneven, 7, &err);
    CHECK(rc < 0 && strstr(err.msg, "blocks"), "a keep count that is not a multiple of the blocks is refused: %s",
          err.msg);
    int64_t unequal[8] = {0, 1, 2, 3, 6, 7, 9, 10}; // 3 in block 0, 1 in block 1
    rc = ns_chgroups_select(&m, &g, 2, unequal, 8, &err);
    CHECK(rc < 0 && strstr(err.msg, "in each block"), "unequal blocks are refused: %s", err.msg);
    CHECK(same_as(&m, before), "refused edits leave the grouped model unchanged");
    snapshot_free(&m, before);
    ns_chgroups_free(&g);
    ns_model_free(&m);

    make_model(&m, &cases[C_PARTIAL], 5, &err);
    ns_chgroups_build(&g, &m, &err);
    rc = ns_chgroups_select(&m, &g, 1, keep, 2, &err);
    CHECK(rc < 0 && strstr(err.msg, "part of a grouped conv"), "a group filling one block of a grouped conv is "
          "not pruned alone: %s", err.msg);
    ns_chgroups_free(&g);
    ns_model_free(&m);
}

// Attention: the qk and v spaces of a block are tied (a head moves with its
// q, k and v), each block its own tie; moving one of them alone, or the two
// with different head maps, is refused; a head's q rows moved alone (the
// control) change the output; heads cannot be pruned.
static void test_attention(void) {
    ns_model m;
    ns_err err;
    ns_chgroups g;
    make_model(&m, &cases[C_VIT], 4, &err);
    ns_chgroups_build(&g, &m, &err);
    const ns_chgroup *qk = &g.groups[2], *v = &g.groups[3], *qk1 = &g.groups[5];
    const ns_chmember *q = member_on(qk, &m, "encoder.layers.0.self_attn.in_proj_weight", 0, 0);
    const ns_chmember *vo = member_on(v, &m, "encoder.layers.0.self_attn.out_proj.weight", 1, 0);
    CHECK(qk->tie >= 0 && qk->tie == v->tie && qk1->tie >= 0 && qk1->tie != qk->tie && g.nties == 2,
          "vit: each block's qk and v spaces share a tie (%d, %d; next block %d; %d ties)", qk->tie, v->tie,
          qk1->tie, g.nties);
    CHECK(q && q->offset == 0 && q->reps == 2 && q->rstride == 32 && vo && vo->role == NS_CH_IN &&
              qk->act_node == ns_model_find_node(&m, "encoder.layers.0.norm1") && qk->act_proj >= 0,
          "vit: qk holds rows d and 32 + d of in_proj_weight; v out_proj's columns; features from norm1's output");
    int64_t p[32], p2[32];
    for (int64_t j = 0; j < 32; j++) p[j] = (j + 8) % 32, p2[j] = (j + 16) % 32; // heads shifted by 1 and 2
    const int64_t **perms = xcalloc((size_t)g.ngroups, sizeof *perms);
    float **before = snapshot(&m);
    perms[2] = p;
    int rc = ns_chgroups_permute_many(&m, &g, perms, &err);
    CHECK(rc < 0 && strstr(err.msg, "tied") && same_as(&m, before), "vit: moving qk's heads without v's is refused: %s",
          err.msg);
    perms[3] = p2;
    rc = ns_chgroups_permute_many(&m, &g, perms, &err);
    CHECK(rc < 0 && strstr(err.msg, "differently") && same_as(&m, before),
          "vit: moving qk's and v's heads differently is refused: %s", err.msg);
    rc = ns_chgroups_permute(&m, &g, 2, p, &err);
    CHECK(rc < 0, "vit: ns_chgroups_permute of one tied group across blocks is refused: %s", err.msg);
    int64_t keep[16];
    for (int64_t j = 0; j < 16; j++) keep[j] = j;
    rc = ns_chgroups_select(&m, &g, 2, keep, 16, &err);
    CHECK(rc < 0 && strstr(err.msg, "heads"), "vit: pruning a qk space is refused: %s", err.msg);
    rc = ns_chgroups_select(&m, &g, 1, keep, 16, &err);
    CHECK(rc < 0 && strstr(err.msg, "attention"), "vit: pruning the residual stream is refused: %s", err.msg);
    // the control: head 0's q rows swapped with head 1's, k and v left
    float *x = make_input(&m, &cases[C_VIT]);
    int64_t n0, n1;
    float *y0 = forward(&m, x, &n0);
    float *w = m.tensors[ns_model_find_tensor(&m, "encoder.layers.0.self_attn.in_proj_weight")].t.data, tmp[8 * 32];
    memcpy(tmp, w, sizeof tmp);
    memcpy(w, w + 8 * 32, sizeof tmp);
    memcpy(w + 8 * 32, tmp, sizeof tmp);
    float *y1 = forward(&m, x, &n1);
    double d = max_abs_diff(y0, y1, n0);
    CHECK(d > 1e-4, "vit control: moving one head's q rows alone changes the output (max |diff| %.2g)", d);
    snapshot_free(&m, before);
    free(perms);
    free(x);
    free(y0);
    free(y1);
    ns_chgroups_free(&g);
    ns_model_free(&m);
}

// Twin attention (cross_heads): its heads are not interchangeable (the last
// reads the partner sample), so they get no tie and only move within
// themselves; the control: the same head rotation that leaves plain
// attention unchanged changes the twin's output.
static void rotate_heads(ns_model *m, int64_t D, int64_t dh) { // head h -> h + 1 (mod heads)
    float *w_in = m->tensors[ns_model_find_tensor(m, "x.in_proj_weight")].t.data;
    float *b_in = m->tensors[ns_model_find_tensor(m, "x.in_proj_bias")].t.data;
    float *w_out = m->tensors[ns_model_find_tensor(m, "x.out_proj.weight")].t.data;
    float *w = xcalloc((size_t)(3 * D * D), sizeof *w), *b = xcalloc((size_t)(3 * D), sizeof *b);
    float *wo = xcalloc((size_t)(D * D), sizeof *wo);
    for (int64_t r = 0; r < 3 * D; r++) {
        int64_t part = r / D, d = r % D, to = part * D + (d + dh) % D;
        memcpy(w + to * D, w_in + r * D, (size_t)D * sizeof *w);
        b[to] = b_in[r];
    }
    for (int64_t o = 0; o < D; o++)
        for (int64_t d = 0; d < D; d++) wo[o * D + (d + dh) % D] = w_out[o * D + d];
    memcpy(w_in, w, (size_t)(3 * D * D) * sizeof *w);
    memcpy(b_in, b, (size_t)(3 * D) * sizeof *b);
    memcpy(w_out, wo, (size_t)(D * D) * sizeof *wo);
    free(w), free(b), free(wo);
}

static void test_twin_attention(void) {
    ns_model m;
    ns_err err;
    ns_chgroups g;
    make_model(&m, &cases[C_TWIN], 5, &err);
    ns_chgroups_build(&g, &m, &err);
    CHECK(g.ngroups == 7 && g.groups[2].tie < 0 && g.groups[3].tie < 0 && g.nties == 0,
          "twin attention: the qk and v spaces are not tied (%d, %d; %d ties): heads stay in place",
          g.ngroups > 3 ? g.groups[2].tie : -9, g.ngroups > 3 ? g.groups[3].tie : -9, g.nties);
    int64_t p[8];
    for (int64_t j = 0; j < 8; j++) p[j] = (j + 2) % 8; // heads shifted by 1
    float **before = snapshot(&m);
    int rc = ns_chgroups_permute(&m, &g, 2, p, &err);
    CHECK(rc < 0 && same_as(&m, before), "twin attention: moving a head is refused: %s", err.msg);
    snapshot_free(&m, before);
    float *x = make_input(&m, &cases[C_TWIN]);
    int64_t n0, n1, n2, n3;
    float *y0 = forward(&m, x, &n0);
    rotate_heads(&m, 8, 2);
    float *y1 = forward(&m, x, &n1);
    int a = ns_model_find_node(&m, "x");
    m.nodes[a].iattr[4] = 0; // plain attention: the rotation is a symmetry
    float *y2 = forward(&m, x, &n2);
    rotate_heads(&m, 8, 2), rotate_heads(&m, 8, 2), rotate_heads(&m, 8, 2); // back where it was
    float *y3 = forward(&m, x, &n3);
    double d_twin = max_abs_diff(y0, y1, n0), d_plain = max_abs_diff(y2, y3, n2);
    CHECK(d_twin > 1e-4 && d_plain < 1e-5, "twin attention control: rotating the heads changes the twin's output "
          "(max |diff| %.2g) and not plain attention's (%.2g)", d_twin, d_plain);
    free(x), free(y0), free(y1), free(y2), free(y3);
    ns_chgroups_free(&g);
    ns_model_free(&m);
}

int main(void) {
    init_cases();
    for (int c = 0; c < NCASES; c++) test_groups(c);
    test_members();
    for (int c = 0; c < NCASES; c++) test_permute(c);
    test_permute_control();
    test_attention();
    test_twin_attention();
    for (int c = 0; c < NCASES; c++) test_prune(c);
    test_prune_counts();
    test_errors();
    return check_done();
}
