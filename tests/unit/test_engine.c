// test_engine.c: the engine (lib/nn/engine.h) with the graph code around it
// (lib/nn/model.h, lib/nn/arch.h), end to end, against PyTorch. The op
// kernels themselves are checked one by one in test_ops*.c; here it is the
// wiring: shapes, parameter binding, gradient routing and accumulation across
// nodes, batch statistics. Hand-built graphs of every op by finite
// differences, refusals and model files: test_engine_graphs.c. The shared
// helpers: engine_check.h; the reference stream: torch_ref.h.
//
// Against PyTorch. tests/ref/engine.tns (tests/ref/gen_engine_ref.py, which
//    describes the records) holds, per case, an input, torch's parameters, its
//    forward in training and eval mode, the gradients of L = sum(out * R) for
//    every parameter and the input, and the running statistics after that one
//    training forward, all computed by torch in float64 from the stored
//    (float32) inputs and (float16-exact) parameters, so the reference is exact
//    to float32 rounding and the error measured is netsmith's alone. Cases:
//    five single conv2d layers (stride 2 + pad 1, groups, dilation, 1x1,
//    depthwise without bias), batchnorm 2-d and 1-d, a linear layer, and the
//    built-ins lenet, vgg (depth 4, width 0.5) and resnet20 (width 1, 1x16x16,
//    10 classes), plus softmax cross-entropy with label smoothing on
//    resnet20's logits, backpropagated through the engine to the input. The
//    same graph is built here, the parameters copied in by name, and each
//    tensor compared with
//        err = max_i |got_i - want_i| / (|want_i| + rms(want))  <=  REF_TOL
//    i.e. relative, with a floor at the tensor's own RMS value for entries near
//    zero: a float32 sum's error scales with its terms, so entries that cancel
//    to near zero cannot be relative-exact (with a floor of only 1e-3 max|want|,
//    torch's own float32 resnet20 gradients are off by up to 9e-4 from this
//    reference, netsmith's by 1.3e-3). maxdiff, the largest absolute
//    difference, is printed too.
// Run from the repo root.
// sanitize: yes
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/arch.h"
#include "base/blas.h"
#include "check.h"
#include "nn/engine.h"
#include "nn/model.h"
#include "nn/ops.h"
#include "stream/tns.h"

#include "engine_check.h"

#define REF_PATH "tests/ref/engine.tns"
#define REF_TOL 1e-4

#include "torch_ref.h"

// ----------------------------------------------------------------------------
// against PyTorch

typedef struct ref_case {
    const char *name;
    const char *arch;  // a built-in, or NULL for one node:
    ns_op op;          //   its op,
    const char *node;  //   its name,
    int niattr;        //   and integer attributes in ns_ops[op].iattr order
    int64_t iattr[7];
    int in_c, in_h, in_w;
    ns_arch_opts opts; // for the built-ins (input shape filled from in_*)
} ref_case;

// conv2d attributes: out, kernel, stride, pad, dilation, groups, bias
static const ref_case ref_cases[] = {
    {"conv_s2p1", NULL, NS_OP_CONV2D, "conv", 7, {4, 3, 2, 1, 1, 1, 1}, 3, 9, 9, {0}},
    {"conv_groups", NULL, NS_OP_CONV2D, "conv", 7, {6, 3, 1, 1, 1, 2, 1}, 4, 7, 7, {0}},
    {"conv_dilation", NULL, NS_OP_CONV2D, "conv", 7, {3, 3, 1, 2, 2, 1, 1}, 2, 9, 9, {0}},
    {"conv_1x1", NULL, NS_OP_CONV2D, "conv", 7, {4, 1, 1, 0, 1, 1, 1}, 5, 6, 6, {0}},
    {"conv_depthwise", NULL, NS_OP_CONV2D, "conv", 7, {4, 3, 1, 1, 1, 4, 0}, 4, 8, 8, {0}},
    {"bn2d", NULL, NS_OP_BATCHNORM, "bn", 0, {0}, 3, 5, 5, {0}},
    {"bn1d", NULL, NS_OP_BATCHNORM, "bn", 0, {0}, 6, 0, 0, {0}},
    {"linear", NULL, NS_OP_LINEAR, "fc", 2, {5, 1}, 12, 0, 0, {0}},
    {"lenet", "lenet", 0, NULL, 0, {0}, 1, 16, 16, {.classes = 10, .width = 1}},
    {"vgg", "vgg", 0, NULL, 0, {0}, 3, 16, 16, {.classes = 10, .width = 0.5, .depth = 4}},
    {"resnet20", "resnet20", 0, NULL, 0, {0}, 1, 16, 16, {.classes = 10, .width = 1}},
};
#define NREF_CASES ((int)(sizeof ref_cases / sizeof ref_cases[0]))

static int build_ref_case(ns_model *m, const ref_case *c, ns_err *err) {
    ns_model_init(m);
    if (c->arch) {
        ns_arch_opts o = c->opts;
        o.in_c = c->in_c, o.in_h = c->in_h, o.in_w = c->in_w;
        return ns_arch_build(m, c->arch, &o, err);
    }
    if (ns_model_add_input(m, c->in_c, c->in_h, c->in_w, err) < 0) return -1;
    int in = 0, id = ns_model_add_node(m, c->node, c->op, &in, 1, err);
    if (id < 0) return -1;
    for (int k = 0; k < c->niattr; k++)
        if (ns_node_set_iattr(&m->nodes[id], ns_ops[c->op].iattr[k], c->iattr[k], err) < 0)
            return -1;
    return ns_model_resolve(m, 1, err);
}

// The worst tensor of a family (gradients, running statistics).
typedef struct worst {
    double err, mabs;
    char name[NS_NAME_MAX + 1];
    int count, missing;
} worst;

static void worst_add(worst *w, const char *name, const float *got, const ns_tensor *want,
                      int64_t n) {
    if (!want || want->numel != n) {
        if (!w->missing++) snprintf(w->name, sizeof w->name, "%s (missing or wrong size)", name);
        w->err = INFINITY;
        return;
    }
    double mabs, e = ref_err(got, want->data, n, &mabs);
    w->count++;
    if (!(e <= w->err) && w->err != INFINITY) {
        w->err = e;
        snprintf(w->name, sizeof w->name, "%s", name);
    }
    if (!(mabs <= w->mabs)) w->mabs = mabs;
}

// per case, for the summary
static struct {
    const char *name;
    double out, grad, dx, stats, eval;
} ref_summary[NREF_CASES];

// Is a record of this case one of torch's state_dict entries (not x, R, outputs, ...)?
static int is_state_record(const char *what) {
    static const char *const exact[] = {"x", "R", "out.train", "out.eval", NULL};
    for (int i = 0; exact[i]; i++)
        if (!strcmp(what, exact[i])) return 0;
    size_t len = strlen(what);
    if (!strncmp(what, "ce.", 3)) return 0;
    if (len > 5 && !strcmp(what + len - 5, ".grad")) return 0;
    if (len > 6 && !strcmp(what + len - 6, ".after")) return 0;
    return 1;
}

static void check_ref_case(int ci) {
    const ref_case *c = &ref_cases[ci];
    ns_err err = {{0}};
    ns_model m;
    ns_engine e;
    ref_summary[ci].name = c->name;
    if (build_ref_case(&m, c, &err) < 0) {
        CHECK(0, "%s: build the graph: %s", c->name, err.msg);
        ns_model_free(&m);
        return;
    }
    const ns_tensor *x = ref_get(c->name, "x"), *R = ref_get(c->name, "R");
    const ns_tensor *want_train = ref_get(c->name, "out.train");
    const ns_tensor *want_eval = ref_get(c->name, "out.eval");
    const ns_tensor *want_dx = ref_get(c->name, "x.grad");
    int64_t N = x ? x->shape[0] : 0, nin = m.nodes[0].numel, nout = m.nodes[m.output].numel;
    if (!x || !R || !want_train || !want_eval || !want_dx || x->numel != N * nin ||
        R->numel != N * nout || want_train->numel != N * nout || want_eval->numel != N * nout ||
        want_dx->numel != N * nin) {
        CHECK(0, "%s: the reference has x, R, out.train, out.eval, x.grad of this graph's sizes",
              c->name);
        ns_model_free(&m);
        return;
    }

    // torch's state_dict and the model's tensors are the same set of names
    int copied = 0, bad = 0, extra = 0;
    char first_bad[NS_NAME_MAX + 1] = "";
    for (int t = 0; t < m.ntensors; t++) {
        if (!m.tensors[t].used) continue;
        const ns_tensor *src = ref_get(c->name, m.tensors[t].name);
        ns_tensor *dst = &m.tensors[t].t;
        if (!src || src->ndim != dst->ndim ||
            memcmp(src->shape, dst->shape, (size_t)dst->ndim * sizeof *dst->shape)) {
            if (!bad++) snprintf(first_bad, sizeof first_bad, "%s", m.tensors[t].name);
            continue;
        }
        memcpy(dst->data, src->data, (size_t)dst->numel * sizeof(float));
        copied++;
    }
    size_t plen = strlen(c->name);
    for (int i = 0; i < nrefs; i++) {
        if (strncmp(refs[i].name, c->name, plen) || refs[i].name[plen] != '/') continue;
        const char *what = refs[i].name + plen + 1;
        if (is_state_record(what) && ns_model_find_tensor(&m, what) < 0) {
            if (!extra++ && !bad) snprintf(first_bad, sizeof first_bad, "%s (not in the model)", what);
        }
    }
    CHECK(bad == 0 && extra == 0 && copied > 0,
          "%s: torch's state_dict maps one to one onto the model's %d tensors (%d missing or "
          "misshapen, %d unknown%s%s)", c->name, copied, bad, extra, first_bad[0] ? ": " : "",
          first_bad);

    if (ns_engine_init(&e, &m, N, 1, &err) < 0) {
        CHECK(0, "%s: engine init: %s", c->name, err.msg);
        ns_model_free(&m);
        return;
    }
    e.want_input_grad = 1;

    // training forward
    const float *out = ns_engine_forward(&e, x->data, N, 1, &err);
    double mabs, rel = out ? ref_err(out, want_train->data, N * nout, &mabs) : INFINITY;
    if (!out) mabs = INFINITY;
    ref_summary[ci].out = rel;
    CHECK(rel <= REF_TOL, "%s: training forward matches torch (maxdiff %.2e, err %.2e)%s%s",
          c->name, mabs, rel, out ? "" : ": ", out ? "" : err.msg);
    if (!out) {
        ns_engine_free(&e);
        ns_model_free(&m);
        return;
    }

    // backward of L = sum(out * R)
    ns_engine_zero_grad(&e);
    ns_engine_backward(&e, R->data);
    worst wg = {0}, ws = {0};
    for (int t = 0; t < m.ntensors; t++) {
        if (!m.tensors[t].used) continue;
        char what[NS_NAME_MAX + 16];
        if (m.tensors[t].trainable) {
            snprintf(what, sizeof what, "%s.grad", m.tensors[t].name);
            worst_add(&wg, m.tensors[t].name, e.param_grad[t], ref_get(c->name, what),
                      m.tensors[t].t.numel);
        } else {
            snprintf(what, sizeof what, "%s.after", m.tensors[t].name);
            worst_add(&ws, m.tensors[t].name, m.tensors[t].t.data, ref_get(c->name, what),
                      m.tensors[t].t.numel);
        }
    }
    ref_summary[ci].grad = wg.err;
    CHECK(wg.count > 0 && wg.err <= REF_TOL,
          "%s: %d parameter gradients match torch (maxdiff %.2e, err %.2e, worst %s)", c->name,
          wg.count, wg.mabs, wg.err, wg.name);
    rel = ref_err(e.grad[0], want_dx->data, N * nin, &mabs);
    ref_summary[ci].dx = rel;
    CHECK(rel <= REF_TOL, "%s: input gradient matches torch (maxdiff %.2e, err %.2e)", c->name,
          mabs, rel);
    ref_summary[ci].stats = ws.count || ws.missing ? ws.err : NAN;
    if (ws.count || ws.missing)
        CHECK(ws.err <= REF_TOL,
              "%s: %d running statistics after one training forward match torch (maxdiff %.2e, "
              "err %.2e, worst %s)", c->name, ws.count, ws.mabs, ws.err, ws.name);

    // softmax cross-entropy with label smoothing on the logits, then backward
    const ns_tensor *labels = ref_get(c->name, "ce.labels");
    if (labels) {
        const ns_tensor *want_loss = ref_get(c->name, "ce.loss");
        const ns_tensor *want_dl = ref_get(c->name, "ce.dlogits");
        const ns_tensor *want_cdx = ref_get(c->name, "ce.x.grad");
        int ok = want_loss && want_dl && want_cdx && labels->numel == N &&
                 want_dl->numel == N * nout && want_cdx->numel == N * nin;
        CHECK(ok, "%s: the reference has ce.labels, ce.loss, ce.dlogits, ce.x.grad", c->name);
        if (ok) {
            int32_t *y = xcalloc((size_t)N, sizeof *y);
            for (int64_t i = 0; i < N; i++) y[i] = (int32_t)((const float *)labels->data)[i];
            float *dl = falloc(N * nout);
            float loss = ns_softmax_ce_forward(NULL, out, y, NULL, 0.1f, N, nout);
            ns_softmax_ce_backward(dl, 1.0f, out, y, NULL, 0.1f, N, nout);
            rel = ref_err(&loss, want_loss->data, 1, &mabs);
            CHECK(rel <= REF_TOL, "%s: cross-entropy (smoothing 0.1) of the logits matches torch "
                  "(%.6f, maxdiff %.2e, err %.2e)", c->name, (double)loss, mabs, rel);
            double mabs2, rel2 = ref_err(dl, want_dl->data, N * nout, &mabs2);
            ns_engine_backward(&e, dl);
            rel = ref_err(e.grad[0], want_cdx->data, N * nin, &mabs);
            CHECK(rel2 <= REF_TOL && rel <= REF_TOL,
                  "%s: cross-entropy backward to the logits and through the engine to the input "
                  "matches torch (dlogits maxdiff %.2e err %.2e; dx maxdiff %.2e err %.2e)",
                  c->name, mabs2, rel2, mabs, rel);
            free(y);
            free(dl);
        }
    }

    // eval forward, with the running statistics the training forward left
    out = ns_engine_forward(&e, x->data, N, 0, &err);
    rel = out ? ref_err(out, want_eval->data, N * nout, &mabs) : INFINITY;
    if (!out) mabs = INFINITY;
    ref_summary[ci].eval = rel;
    CHECK(rel <= REF_TOL, "%s: eval forward matches torch (maxdiff %.2e, err %.2e)%s%s", c->name,
          mabs, rel, out ? "" : ": ", out ? "" : err.msg);
    ns_engine_free(&e);
    ns_model_free(&m);
}

static void test_reference(void) {
    if (access(REF_PATH, R_OK) != 0) {
        SKIP("%s is missing (regenerate: /usr/bin/python3 tests/ref/gen_engine_ref.py)", REF_PATH);
        return;
    }
    ns_err err = {{0}};
    if (load_refs(REF_PATH, &err) < 0) {
        CHECK(0, "read %s: %s", REF_PATH, err.msg);
        free_refs();
        return;
    }
    for (int i = 0; i < NREF_CASES; i++) check_ref_case(i);
    free_refs();
}

int main(void) {
    // Thousands of tiny forwards: BLIS on one thread unless the caller says otherwise.
    setenv("NETSMITH_THREADS", "1", 0);
    ns_blas_init();
    double t0 = check_seconds();
    test_reference();
    double secs = check_seconds() - t0;
    printf("# against torch (float64), err = max |got - want| / (|want| + rms(want)), tolerance %g:\n",
           REF_TOL);
    printf("#   %-16s %9s %9s %9s %9s %9s\n", "case", "out", "grads", "dx", "stats", "eval");
    for (int i = 0; i < NREF_CASES; i++) {
        if (!ref_summary[i].name) continue;
        char stats[16] = "-";
        if (!isnan(ref_summary[i].stats)) snprintf(stats, sizeof stats, "%9.2e", ref_summary[i].stats);
        printf("#   %-16s %9.2e %9.2e %9.2e %9s %9.2e\n", ref_summary[i].name, ref_summary[i].out,
               ref_summary[i].grad, ref_summary[i].dx, stats, ref_summary[i].eval);
    }
    printf("# %.2f s\n", secs);
    return check_done();
}
