// chgroups_cases.h: the models test_chgroups.c runs every test on, and the
// helpers its tests share. The cases (enum C_*, cases[], filled by
// init_cases) are built-ins and graphs written as specs, each with its
// expected groups worked out by hand (wants[]); make_model builds one with
// random parameters (norm statistics too, so a BN is not the identity),
// make_input draws a batch of BATCH samples (token ids for id models) and
// forward runs it in eval mode. Static state and functions: include it in
// test_chgroups.c only.
#ifndef NS_TEST_CHGROUPS_CASES_H
#define NS_TEST_CHGROUPS_CASES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/arch.h"
#include "nn/chgroups.h"
#include "nn/engine.h"
#include "nn/model.h"
#include "nn/spec.h"
#include "grouped_specs.h"
#include "splitmix.h"

#define BATCH 4 // even: the twin-attention case runs on pairs

// ---------------------------------------------------------------------------
// helpers

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "test_chgroups: out of memory\n");
        exit(1);
    }
    return p;
}

// A model: a built-in ("arch:resnet20") or a spec text.
typedef struct tcase {
    const char *name;
    const char *arch;       // built-in name, or NULL for spec
    ns_arch_opts opts;
    const char *spec;
    int ids;                // input is token ids in [0, ids)
    int prune_ref;          // compare pruning with the zeroed-columns reference
} tcase;

// Builds the model with parameters drawn from seed: PyTorch's init, then
// random norm parameters and running statistics.
static int make_model(ns_model *m, const tcase *c, uint64_t seed, ns_err *err) {
    ns_model_init(m);
    int text = c->arch && strcmp(c->arch, "text-transformer") == 0;
    int rc = text ? ns_arch_build_text(m, &c->opts, c->ids, err)
             : c->arch ? ns_arch_build(m, c->arch, &c->opts, err)
                     : ns_spec_parse(m, c->spec, strlen(c->spec), c->name, err);
    if (rc < 0) return -1;
    ns_model_init_params(m, seed);
    uint64_t keep = rng_state;
    rng_state = seed * 7919 + 17;
    for (int i = 0; i < m->nnodes; i++) {
        const ns_node *n = &m->nodes[i];
        if (n->op != NS_OP_BATCHNORM && n->op != NS_OP_LAYERNORM && n->op != NS_OP_GROUPNORM) continue;
        for (int p = 0; p < NS_MAX_PARAMS; p++) {
            if (n->params[p] < 0) continue;
            ns_tensor *t = &m->tensors[n->params[p]].t;
            float *x = t->data;
            float lo = p == 0 ? 0.5f : p == 3 ? 0.5f : -0.5f, hi = p == 0 ? 1.5f : p == 3 ? 2.0f : 0.5f;
            for (int64_t j = 0; j < t->numel; j++) x[j] = urand(lo, hi);
        }
    }
    rng_state = keep;
    return 0;
}

static float *make_input(const ns_model *m, const tcase *c) {
    int64_t n = BATCH * m->nodes[0].numel;
    float *x = xcalloc((size_t)n, sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = c->ids ? (float)(rnd() % (uint64_t)c->ids) : urand(-1, 1);
    return x;
}

// The model's output for x (eval mode), in a new buffer of *numel floats.
static float *forward(ns_model *m, const float *x, int64_t *numel) {
    ns_engine e;
    ns_err err;
    if (ns_engine_init(&e, m, BATCH, 0, &err) < 0) {
        fprintf(stderr, "engine: %s\n", err.msg);
        return NULL;
    }
    const float *y = ns_engine_forward(&e, x, BATCH, 0, &err);
    float *out = NULL;
    if (y) {
        *numel = BATCH * ns_engine_output_numel(&e);
        out = xcalloc((size_t)*numel, sizeof *out);
        memcpy(out, y, (size_t)*numel * sizeof *out);
    } else {
        fprintf(stderr, "forward: %s\n", err.msg);
    }
    ns_engine_free(&e);
    return out;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (x > d || x != x) d = x;
    }
    return d;
}

static double max_abs(const float *a, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(a[i]) > d) d = fabs(a[i]);
    return d;
}

// Bitwise copy of every tensor's data, to check that nothing changed.
static float **snapshot(const ns_model *m) {
    float **s = xcalloc((size_t)m->ntensors, sizeof *s);
    for (int t = 0; t < m->ntensors; t++) {
        s[t] = xcalloc((size_t)m->tensors[t].t.numel, sizeof(float));
        memcpy(s[t], m->tensors[t].t.data, (size_t)m->tensors[t].t.numel * sizeof(float));
    }
    return s;
}

// 1 when the model still has exactly these tensors' data.
static int same_as(const ns_model *m, float **s) {
    for (int t = 0; t < m->ntensors; t++)
        if (memcmp(s[t], m->tensors[t].t.data, (size_t)m->tensors[t].t.numel * sizeof(float))) return 0;
    return 1;
}

static void snapshot_free(const ns_model *m, float **s) {
    for (int t = 0; t < m->ntensors; t++) free(s[t]);
    free(s);
}

// A random permutation of [0, n) mapping each block of size block onto itself.
static void random_perm(int64_t *p, int64_t n, int64_t block) {
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t b0 = 0; b0 < n; b0 += block)
        for (int64_t i = block - 1; i > 0; i--) {
            int64_t j = (int64_t)(rnd() % (uint64_t)(i + 1));
            int64_t t = p[b0 + i];
            p[b0 + i] = p[b0 + j];
            p[b0 + j] = t;
        }
}

// A random sorted keep list with `per` channels in each block; returns count.
static int64_t random_keep(int64_t *keep, int64_t n, int64_t block, int64_t per) {
    int64_t k = 0, *p = xcalloc((size_t)block, sizeof *p);
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        random_perm(p, block, block);
        char *sel = xcalloc((size_t)block, 1);
        for (int64_t i = 0; i < per; i++) sel[p[i]] = 1;
        for (int64_t i = 0; i < block; i++)
            if (sel[i]) keep[k++] = b0 + i;
        free(sel);
    }
    free(p);
    return k;
}

static const ns_chgroup *group_of(const ns_chgroups *g, const ns_model *m, const char *node, int64_t pos) {
    int k = ns_chgroups_find(g, ns_model_find_node(m, node), pos, NULL);
    return k < 0 ? NULL : &g->groups[k];
}

// The member of group gr on tensor `tensor` axis `axis` (the first one).
static const ns_chmember *member_on(const ns_chgroup *gr, const ns_model *m, const char *tensor, int axis,
                                    int nth) {
    int t = ns_model_find_tensor(m, tensor);
    for (int i = 0; gr && i < gr->nmembers; i++)
        if (gr->members[i].tensor == t && gr->members[i].axis == axis && nth-- == 0) return &gr->members[i];
    return NULL;
}

// ---------------------------------------------------------------------------
// the models

static const char concat_spec[] =
    "# concat: a (4) and b (6) side by side; c's output channels are split\n"
    "# between them by the add; cat2 holds a's channels twice; a gated head\n"
    "[input]\nshape = 3x8x8\n"
    "[conv2d a]\nout = 4\npad = 1\n[batchnorm bna]\n[relu ra]\n"
    "[conv2d b]\nfrom = input\nout = 6\npad = 1\n[relu rb]\n"
    "[concat cat]\nfrom = ra, rb\n"
    "[conv2d c]\nout = 10\npad = 1\nbias = 0\n[batchnorm bnc]\n"
    "[add sum]\nfrom = bnc, cat\n[relu rs]\n"
    "[concat cat2]\nfrom = rs, ra\n"
    "[conv2d d]\nout = 5\nkernel = 1\n[relu rd]\n[maxpool]\n[flatten]\n"
    "[linear h]\nout = 8\n[tanh]\n[linear gate]\nfrom = h\nout = 8\n[sigmoid]\n"
    "[mul gated]\nfrom = tanh1, sigmoid1\n"
    "[linear fc]\nout = 3\n";

static const char partial_spec[] =
    "# a grouped conv reading a concat: each of a and b fills one block\n"
    "[input]\nshape = 2x6x6\n"
    "[conv2d a]\nout = 4\npad = 1\n[relu]\n"
    "[conv2d b]\nfrom = input\nout = 4\npad = 1\n[relu]\n"
    "[concat]\nfrom = relu1, relu2\n"
    "[conv2d g]\nout = 6\ngroups = 2\npad = 1\n[relu]\n[global_avgpool]\n"
    "[linear fc]\nout = 3\n";

static const char token_spec[] =
    "[input]\nshape = 6\n"
    "[embedding emb]\nnum = 10\ndim = 8\n[layernorm]\n[flatten]\n"
    "[linear fc1]\nout = 12\n[relu]\n[linear fc]\nout = 5\n";

static const char eot_spec[] =
    "# end-of-text pooling whose keys are computed: the token at the largest key;\n"
    "# the keys' positions are tokens, not features (moving them moves the token)\n"
    "[input]\nshape = 6\n"
    "[embedding emb]\nnum = 10\ndim = 8\n[layernorm ln]\n"
    "[linear keys]\nfrom = input\nout = 6\n"
    "[token_pool pool]\nfrom = ln, keys\nmode = 2\n"
    "[linear fc]\nout = 5\n";

static const char reshape_spec[] =
    "# a reshape to one dimension reads like a flatten (dim0 given: pruning\n"
    "# must change it)\n"
    "[input]\nshape = 2x4x4\n"
    "[conv2d a]\nout = 8\npad = 1\n[relu]\n[reshape]\ndim0 = 128\n"
    "[linear fc]\nout = 3\n";

static const char opaque_spec[] =
    "[input]\nshape = 6\n"
    "[embedding emb]\nnum = 10\ndim = 8\n[transpose]\n[flatten]\n"
    "[linear fc1]\nout = 12\n[relu]\n[linear fc]\nout = 5\n";

static const char gn_spec[] =
    "# GroupNorm: g1 (4 groups of 2) and g2 (2 groups of 4) share c1's and c2's\n"
    "# channels through the add (blocks of gcd 2, which stay put); g3 (3 groups\n"
    "# of 2) alone: its blocks move whole\n"
    "[input]\nshape = 2x5x5\n"
    "[conv2d c1]\nout = 8\npad = 1\n[groupnorm g1]\ngroups = 4\n[relu r1]\n"
    "[conv2d c2]\nout = 8\npad = 1\n[groupnorm g2]\ngroups = 2\n[relu r2]\n"
    "[add]\nfrom = r1, r2\n"
    "[conv2d c3]\nout = 6\npad = 1\n[groupnorm g3]\ngroups = 3\n[relu]\n[global_avgpool]\n"
    "[linear fc]\nout = 3\n";

static const char xattn_spec[] =
    "# cross-attention: queries from a, keys and values from b, read by the same\n"
    "# in_proj columns (one group); softmax over the features; mean pooling\n"
    "[input]\nshape = 1x4x6\n"
    "[patch_embed p]\nout = 6\npatch = 2\n"
    "[linear a]\nout = 12\n"
    "[linear b]\nfrom = p\nout = 12\n[gelu]\n"
    "[attention x]\nfrom = a, gelu1\nheads = 3\ncross = 1\n"
    "[softmax]\naxis = -1\n[token_pool]\nmode = 1\n"
    "[linear fc]\nout = 3\n";

static const char twin_spec[] =
    "# twin attention (CCT-Net): 4 heads of 2, the last reading the partner\n"
    "# sample's keys and values; heads stay in place, features move within them\n"
    "[input]\nshape = 1x4x6\n"
    "[patch_embed p]\nout = 8\npatch = 2\n"
    "[attention x]\nheads = 4\ncross_heads = 1\n"
    "[token_pool]\nmode = 1\n"
    "[linear h]\nout = 6\n[gelu]\n"
    "[linear fc]\nout = 3\n";

enum { C_MLP, C_LENET, C_VGG, C_R20, C_R18, C_CONCAT, C_GROUPED, C_DW, C_PARTIAL, C_TOKEN, C_OPAQUE, C_RESHAPE,
       C_VIT, C_GN, C_XATTN, C_TEXT, C_EOT, C_TWIN, NCASES };

static tcase cases[NCASES];

static void init_cases(void) {
    ns_arch_opts o = {1, 28, 28, 10, 1.0, 0, {32, 16}, 2, 0, 0};
    cases[C_MLP] = (tcase){"mlp", "mlp", o, NULL, 0, 1};
    o.nhidden = 0;
    cases[C_LENET] = (tcase){"lenet", "lenet", o, NULL, 0, 1};
    o.in_h = o.in_w = 16;
    cases[C_VGG] = (tcase){"vgg", "vgg", o, NULL, 0, 1};
    cases[C_R20] = (tcase){"resnet20", "resnet20", o, NULL, 0, 1};
    ns_arch_opts o18 = {3, 8, 8, 10, 0.25, 0, {0}, 0, 0, 0};
    cases[C_R18] = (tcase){"resnet18x0.25", "resnet18", o18, NULL, 0, 1};
    cases[C_CONCAT] = (tcase){"concat", NULL, o, concat_spec, 0, 1};
    cases[C_GROUPED] = (tcase){"grouped", NULL, o, grouped_spec, 0, 1};
    cases[C_DW] = (tcase){"depthwise", NULL, o, depthwise_spec, 0, 1};
    cases[C_PARTIAL] = (tcase){"partial", NULL, o, partial_spec, 0, 1};
    cases[C_TOKEN] = (tcase){"token", NULL, o, token_spec, 10, 0};
    cases[C_OPAQUE] = (tcase){"opaque", NULL, o, opaque_spec, 10, 0};
    cases[C_RESHAPE] = (tcase){"reshape", NULL, o, reshape_spec, 0, 1};
    ns_arch_opts ov = {1, 28, 28, 10, 0.5, 2, {0}, 0, 7, 4};
    cases[C_VIT] = (tcase){"vit", "vit", ov, NULL, 0, 1};
    cases[C_GN] = (tcase){"groupnorm", NULL, o, gn_spec, 0, 0}; // statistics over the pruned channels
    cases[C_XATTN] = (tcase){"cross-attention", NULL, o, xattn_spec, 0, 1};
    ns_arch_opts ot = {6, 0, 0, 5, 0.5, 2, {0}, 0, 0, 4}; // 6 ids of a vocabulary of 10
    cases[C_TEXT] = (tcase){"text-transformer", "text-transformer", ot, NULL, 10, 1};
    cases[C_EOT] = (tcase){"end-of-text keys", NULL, o, eot_spec, 10, 0}; // a layernorm over the pruned channels
    cases[C_TWIN] = (tcase){"twin-attention", NULL, o, twin_spec, 0, 1};
}

// Expected groups, by hand, in order of first appearance (node order; within
// a node its weight's input axis, then its output rows, then its output).
typedef struct want {
    int ngroups;
    int64_t size[16], block[16]; // block 0: unconstrained (== size)
    unsigned fixed[16];          // expected fixed bits
    unsigned noselect[16];
} want;

#define IN_ NS_CHFIX_INPUT
#define OUT_ NS_CHFIX_OUTPUT
#define OPQ_ NS_CHFIX_OPAQUE

static const want wants[NCASES] = {
    // mlp: the input's one channel (784 features after flatten), fc1 (32),
    // fc2 (16), fc (10 classes).
    [C_MLP] = {4, {1, 32, 16, 10}, {0}, {IN_, 0, 0, OUT_}},
    // lenet: input, conv1 (6), conv2 (16), fc1 (120), fc2 (84), fc (10).
    [C_LENET] = {6, {1, 6, 16, 120, 84, 10}, {0}, {IN_, 0, 0, 0, 0, OUT_}},
    // vgg depth 4: input, conv0 (16), conv1 (16), conv2 (32), conv3 (32; fc
    // reads it after flatten, 4x4 = 16 features per channel), fc (10).
    [C_VGG] = {6, {1, 16, 16, 32, 32, 10}, {0}, {IN_, 0, 0, 0, 0, OUT_}},
    // resnet20: the input (1); the stage-1 stream (16): the stem conv1/bn1 and
    // every layer1 block's conv2/bn2, joined by the adds; each block's inner
    // conv1/bn1 space (16, 16, 16). Stage 2: layer2.0.conv1's inner space
    // (32) comes first (its node precedes conv2), then the stage-2 stream
    // (32): layer2.0.conv2 and the shortcut conv meet at layer2.0.add, and
    // layer2.1/2.2's conv2 join it; then the inner spaces of layer2.1 and
    // 2.2. Stage 3 the same at 64, its stream read by fc after the pooling;
    // fc's 10 classes. 1 + (1 + 3) * 3 + 1 = 14 groups, 2 fixed.
    [C_R20] = {14, {1, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64, 64, 64, 10}, {0},
               {IN_, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, OUT_}},
    // resnet18 at width 0.25 (16/32/64/128), 2 blocks per stage: input (3),
    // stream 1 (stem; layer1 has no shortcut conv), its 2 inner spaces; then
    // per later stage: block 0's inner space, the stream (conv2 + shortcut),
    // block 1's inner space; fc. 1 + 3 + 3 * 3 + 1 = 14.
    [C_R18] = {14, {3, 16, 16, 16, 32, 32, 32, 64, 64, 64, 128, 128, 128, 10}, {0},
               {IN_, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, OUT_}},
    // concat: input (3), A = a's 4 channels (also c's output rows 0-3 and
    // cat2's channels 0-3 and 10-13), B = b's 6 (c's rows 4-9), D = d (5), H
    // = h and gate joined by the mul (8), fc (3).
    [C_CONCAT] = {6, {3, 4, 6, 5, 8, 3}, {0}, {IN_, 0, 0, 0, 0, OUT_}},
    // grouped: input (4); c1 (8) read by g1 in 4 blocks of 2: block 2; g1's
    // 12 out in 4 blocks of 3, read by g2 in 2 blocks of 6: block gcd = 3;
    // g2 (out 2 blocks of 4) + g3 (in and out 4 blocks of 2) joined by the
    // add: 8 in blocks of 2; fc (3).
    [C_GROUPED] = {5, {4, 8, 12, 8, 3}, {0, 2, 3, 2, 0}, {IN_, 0, 0, 0, OUT_}},
    // depthwise: input (3); c1 with dw passing it on (8); pw with dw2 and the
    // add (6); fc (4).
    [C_DW] = {4, {3, 8, 6, 4}, {0}, {IN_, 0, 0, OUT_}},
    // partial: input (2); a (4) and b (4) each fill one block of g's input:
    // permutable, not prunable alone; g (6 in blocks of 3); fc (3).
    [C_PARTIAL] = {5, {2, 4, 4, 6, 3}, {0, 0, 0, 3, 0}, {IN_, 0, 0, 0, OUT_}, {0, 1, 1, 0, 0}},
    // token: the ids (6: input, and embedding ids are opaque), the embedding
    // dim (8, with the layernorm), fc1 (12), fc (5).
    [C_TOKEN] = {4, {6, 8, 12, 5}, {0}, {IN_ | OPQ_, 0, 0, OUT_}},
    // opaque: a transpose mixes tokens and features: the embedding dim and
    // the transposed axis are fixed.
    [C_OPAQUE] = {5, {6, 8, 6, 12, 5}, {0}, {IN_ | OPQ_, OPQ_, OPQ_, 0, OUT_}},
    // reshape: input (2), a (8, 16 features each after the reshape), fc (3).
    [C_RESHAPE] = {3, {2, 8, 3}, {0}, {IN_, 0, OUT_}},
    // vit (width 32, 2 blocks of 4 heads, MLP 128): the input (1); the
    // residual stream (32: patch embedding, class token, positions, every
    // norm, attention output rows, MLP output rows, the head's columns), not
    // prunable since the attentions' width is its; per block the qk and v
    // spaces (32 in heads of 8, not prunable) and the MLP's hidden units
    // (128); the classes (10).
    [C_VIT] = {9, {1, 32, 32, 32, 128, 32, 32, 128, 10}, {0, 0, 8, 8, 0, 8, 8, 0, 0},
               {IN_, 0, 0, 0, 0, 0, 0, 0, OUT_}, {0, 4, 2, 2, 0, 2, 2, 0, 0}},
    // groupnorm: input (2); c1 + c2 through the add (8, blocks of 2); c3 (6,
    // blocks of 2); fc (3).
    [C_GN] = {4, {2, 8, 6, 3}, {0, 2, 2, 0}, {IN_, 0, 0, OUT_}},
    // cross-attention: the input (1); the patch embedding (6); a and b joined by the
    // shared in_proj columns (12, not prunable); x's qk and v spaces (12 in
    // heads of 4); x's output (12); fc (3).
    // text-transformer (6 ids, width 32, 2 causal blocks of 4 heads, MLP 128,
    // pooled at the end-of-text token, whose position the ids give): the ids
    // (6: input, opaque to the embedding and the pooling); the residual stream
    // (32: token embedding columns, positions, norms, attention and MLP
    // outputs, text_projection's columns; the attentions' width); per block
    // qk and v (heads of 8) and the MLP's hidden units (128); the 5 outputs.
    [C_TEXT] = {9, {6, 32, 32, 32, 128, 32, 32, 128, 5}, {0, 0, 8, 8, 0, 8, 8, 0, 0},
                {IN_ | OPQ_, 0, 0, 0, 0, 0, 0, 0, OUT_}, {0, 4, 2, 2, 0, 2, 2, 0, 0}},
    // end-of-text keys: the ids (6), the embedding dim (8, with the layernorm
    // and the pooled features), the keys (6: token positions, opaque to the
    // pooling), fc (5).
    [C_EOT] = {4, {6, 8, 6, 5}, {0}, {IN_ | OPQ_, 0, OPQ_, OUT_}},
    [C_XATTN] = {7, {1, 6, 12, 12, 12, 12, 3}, {0, 0, 0, 4, 4, 0, 0}, {IN_, 0, 0, 0, 0, 0, OUT_},
                 {0, 0, 4, 2, 2, 4, 0}},
    // twin attention: the input (1); the patch embedding (8, x's width); x's
    // qk and v spaces (8 in heads of 2, pinned: no tie); x's output (8); h (6); fc (3).
    [C_TWIN] = {7, {1, 8, 8, 8, 8, 6, 3}, {0, 0, 2, 2, 0, 0, 0}, {IN_, 0, 0, 0, 0, 0, OUT_},
                {0, 4, 2, 2, 4, 0, 0}},
};

#endif
