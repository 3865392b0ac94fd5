// test_transformer_ref.c: the transformer ops in the engine against PyTorch.
// tests/ref/transformer.tns (tests/ref/gen_transformer_ref.py) holds, per
// case, an input, torch's parameters (named as the nodes here), its forward
// in training and eval mode and the gradients of L = sum(out * R) for every
// parameter and the input, computed in float64 from the stored inputs. The
// same graph is built here, the parameters copied in by name, and every
// tensor compared with test_engine.c's measure (torch_ref.h: ref_err) within
// its tolerance, REF_TOL. Cases: softmax along an inner axis, GELU's tanh
// form, group norm, a patch embedding (10x10 by 3x3 patches: a row and a
// column dropped, as the stride-3 convolution does), class token + position
// embedding + mean pooling, self-attention (2 heads), causal self-attention
// (4 heads), cross-attention (queries from a linear of the tokens, keys and
// values from the tokens with a class token), and the vit built-in (12x12,
// patch 4, width 16, depth 2, heads 2) against torch's
// TransformerEncoderLayer(norm_first=True, activation='gelu'), and the
// text-transformer built-in (6 token ids of a vocabulary of 9, width 16,
// depth 2, heads 2, projection 8) against nn.Embedding, the same layers with
// a causal src_mask, ln_final and CLIP's x[arange, ids.argmax(-1)] pooling
// (the ids get no gradient: x.grad is zeros on both sides), and twin
// self-attention (4 heads, cross_heads 1: the 4 samples are 2 pairs, the last
// head reads the partner's keys and values) against the same written out
// with torch ops.
// Run from the repo root.
// sanitize: yes
#include <unistd.h>

#include "nn/arch.h"
#include "base/blas.h"
#include "check.h"
#include "nn/engine.h"
#include "nn/model.h"

#include "torch_ref.h"

#define REF_PATH "tests/ref/transformer.tns"
#define REF_TOL 1e-4

static int node(ns_model *m, const char *name, ns_op op, int from, ns_err *err) {
    return ns_model_add_node(m, name, op, &from, 1, err);
}

static int set(ns_model *m, int id, const char *key, int64_t v, ns_err *err) {
    return id < 0 ? -1 : ns_node_set_iattr(&m->nodes[id], key, v, err);
}

// input (40) reshaped to 5 x 8 tokens: the node's index
static int tokens(ns_model *m, ns_err *err) {
    if (ns_model_add_input(m, 40, 0, 0, err) < 0) return -1;
    int t = node(m, "tok", NS_OP_RESHAPE, 0, err);
    if (set(m, t, "dim0", 5, err) < 0 || set(m, t, "dim1", 8, err) < 0) return -1;
    return t;
}

static int build(ns_model *m, const char *name, ns_err *err) {
    ns_model_init(m);
    int id = -1;
    if (!strcmp(name, "softmax")) {
        if (ns_model_add_input(m, 3, 4, 5, err) < 0) return -1;
        id = set(m, node(m, "softmax", NS_OP_SOFTMAX, 0, err), "axis", 1, err);
    } else if (!strcmp(name, "gelu_tanh")) {
        if (ns_model_add_input(m, 12, 0, 0, err) < 0) return -1;
        id = set(m, node(m, "gelu", NS_OP_GELU, 0, err), "approximate", 1, err);
    } else if (!strcmp(name, "groupnorm")) {
        if (ns_model_add_input(m, 6, 5, 5, err) < 0) return -1;
        id = set(m, node(m, "gn", NS_OP_GROUPNORM, 0, err), "groups", 3, err);
    } else if (!strcmp(name, "patch_embed")) {
        if (ns_model_add_input(m, 2, 10, 10, err) < 0) return -1;
        int p = node(m, "patch_embed", NS_OP_PATCH_EMBED, 0, err);
        id = set(m, p, "out", 8, err) < 0 ? -1 : set(m, p, "patch", 3, err);
    } else if (!strcmp(name, "tokens")) {
        int t = tokens(m, err);
        int c = t < 0 ? -1 : node(m, "cls_token", NS_OP_CLS_TOKEN, t, err);
        int p = c < 0 ? -1 : node(m, "pos_embed", NS_OP_POS_EMBED, c, err);
        id = p < 0 ? -1 : set(m, node(m, "pool", NS_OP_TOKEN_POOL, p, err), "mode", 1, err);
    } else if (!strcmp(name, "attention") || !strcmp(name, "attention_causal")) {
        int causal = !strcmp(name, "attention_causal");
        int t = tokens(m, err);
        int a = t < 0 ? -1 : node(m, "attn", NS_OP_ATTENTION, t, err);
        id = set(m, a, "heads", causal ? 4 : 2, err) < 0 ? -1 : set(m, a, "causal", causal, err);
    } else if (!strcmp(name, "attention_twin")) { // 4 heads, the last reading the partner sample
        int t = tokens(m, err);
        int a = t < 0 ? -1 : node(m, "attn", NS_OP_ATTENTION, t, err);
        id = set(m, a, "heads", 4, err) < 0 ? -1 : set(m, a, "cross_heads", 1, err);
    } else if (!strcmp(name, "attention_cross")) {
        int t = tokens(m, err);
        int q = t < 0 ? -1 : node(m, "q_src", NS_OP_LINEAR, t, err);
        if (set(m, q, "out", 8, err) < 0) return -1;
        int kv[2] = {q, node(m, "mem", NS_OP_CLS_TOKEN, t, err)};
        int a = kv[1] < 0 ? -1 : ns_model_add_node(m, "attn", NS_OP_ATTENTION, kv, 2, err);
        id = set(m, a, "heads", 2, err) < 0 ? -1 : set(m, a, "cross", 1, err);
    } else if (!strcmp(name, "vit")) {
        ns_arch_opts o = {.in_c = 1, .in_h = 12, .in_w = 12, .classes = 10, .width = 0.25, .depth = 2,
                          .patch = 4, .heads = 2};
        return ns_arch_build(m, "vit", &o, err);
    } else if (!strcmp(name, "text")) {
        ns_arch_opts o = {.in_c = 6, .classes = 8, .width = 0.25, .depth = 2, .heads = 2};
        return ns_arch_build_text(m, &o, 9, err);
    }
    return id < 0 ? -1 : ns_model_resolve(m, 1, err);
}

static const char *const cases[] = {"softmax", "gelu_tanh", "groupnorm", "patch_embed", "tokens",
                                    "attention", "attention_causal", "attention_cross", "vit", "text",
                                    "attention_twin"};

static void check_tensor(const char *cname, const char *what, const float *got, int64_t n, double *worst) {
    const ns_tensor *want = ref_get(cname, what);
    double mabs = INFINITY, e = want && want->numel == n ? ref_err(got, want->data, n, &mabs) : INFINITY;
    if (!(e <= *worst)) *worst = e;
    CHECK(e <= REF_TOL, "%s: %s matches torch (maxdiff %.2e, err %.2e)", cname, what, mabs, e);
}

static void check_case(const char *cname) {
    ns_err err = {{0}};
    ns_model m;
    ns_engine e;
    if (build(&m, cname, &err) < 0) {
        CHECK(0, "%s: build the graph: %s", cname, err.msg);
        ns_model_free(&m);
        return;
    }
    const ns_tensor *x = ref_get(cname, "x"), *R = ref_get(cname, "R");
    int64_t N = x ? x->shape[0] : 0, nin = m.nodes[0].numel, nout = m.nodes[m.output].numel;
    if (!x || !R || x->numel != N * nin || R->numel != N * nout) {
        CHECK(0, "%s: the reference has x and R of this graph's sizes", cname);
        ns_model_free(&m);
        return;
    }
    int missing = 0, copied = 0;
    for (int t = 0; t < m.ntensors; t++) {
        const ns_tensor *src = ref_get(cname, m.tensors[t].name);
        if (!m.tensors[t].used) continue;
        if (!src || src->numel != m.tensors[t].t.numel) {
            CHECK(0, "%s: torch has %s of %lld values", cname, m.tensors[t].name, (long long)m.tensors[t].t.numel);
            missing++;
            continue;
        }
        memcpy(m.tensors[t].t.data, src->data, (size_t)src->numel * sizeof(float));
        copied++;
    }
    if (missing || ns_engine_init(&e, &m, N, 1, &err) < 0) {
        CHECK(0, "%s: parameters and engine (%s)", cname, missing ? "tensors missing" : err.msg);
        ns_model_free(&m);
        return;
    }
    e.want_input_grad = 1;
    double wout = 0, wgrad = 0;
    const float *out = ns_engine_forward(&e, x->data, N, 1, &err);
    CHECK(out != NULL, "%s: forward runs%s%s", cname, out ? "" : ": ", out ? "" : err.msg);
    if (out) {
        check_tensor(cname, "out.train", out, N * nout, &wout);
        ns_engine_zero_grad(&e);
        ns_engine_backward(&e, R->data);
        for (int t = 0; t < m.ntensors; t++) {
            if (!m.tensors[t].used || !m.tensors[t].trainable) continue;
            char what[NS_NAME_MAX + 16];
            snprintf(what, sizeof what, "%s.grad", m.tensors[t].name);
            check_tensor(cname, what, e.param_grad[t], m.tensors[t].t.numel, &wgrad);
        }
        check_tensor(cname, "x.grad", e.grad[0], N * nin, &wgrad);
        out = ns_engine_forward(&e, x->data, N, 0, &err);
        if (out) check_tensor(cname, "out.eval", out, N * nout, &wout);
    }
    printf("# %-18s %d tensors, worst err: outputs %.2e, gradients %.2e\n", cname, copied, wout, wgrad);
    ns_engine_free(&e);
    ns_model_free(&m);
}

int main(void) {
    ns_blas_init();
    ns_err err = {{0}};
    if (access(REF_PATH, R_OK) != 0) {
        SKIP("%s is missing (regenerate: /usr/bin/python3 tests/ref/gen_transformer_ref.py)", REF_PATH);
        return check_done();
    }
    if (load_refs(REF_PATH, &err) < 0) {
        CHECK(0, "read %s: %s", REF_PATH, err.msg);
        free_refs();
        return check_done();
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(cases[i]);
    free_refs();
    return check_done();
}
