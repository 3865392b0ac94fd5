// test_engine_graphs.c: the engine (lib/nn/engine.h) on graphs built here by
// hand, node by node, that use every op of ns_op; with test_engine.c (the
// built-ins against PyTorch) it checks the wiring: parameter binding,
// gradient routing and accumulation across nodes, batch statistics, dropout
// masks, model files. The shared helpers: engine_check.h.
//
// 1. Finite differences. Hand-built graphs using every op of ns_op (dropout in
//    training with p > 0, its masks fixed by resetting e->step before each
//    forward) are differentiated by the engine and numerically, for every
//    parameter and the input, in training and eval mode. The numeric
//    derivative is the five-point stencil (error O(h^4)) with L summed in
//    double over the float forward, and
//        err = max |a - n| / max(|a|, |n|, FD_FLOOR * max(1, max |a|))
//    (test_ops.c's measure, its floor scaled up for tensors with large
//    gradients). Ops with a kink (relu, leaky_relu, maxpool) read the input
//    directly, which is drawn away from the kinks by more than 2 FD_H.
// 2. Errors and files: a batch above max_batch and bad embedding ids are
//    refused with a message; a model written and read back computes identical
//    bits; a model with an unknown op, a missing or a wrongly shaped parameter
//    is refused with a message naming the node.
// sanitize: yes
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/blas.h"
#include "check.h"
#include "nn/engine.h"
#include "nn/model.h"
#include "stream/tns.h"

#include "engine_check.h"

#define FD_H 1e-2f
#define FD_TOL 1e-2
#define FD_FLOOR 1e-2
#define FD_STEP 41 // e->step before each forward: dropout masks repeat

// ----------------------------------------------------------------------------
// graph building for the hand-made graphs: failures are remembered, and
// reported once when the graph is resolved

typedef struct gb {
    ns_model *m;
    ns_err err;
    int failed;
} gb;

static int node(gb *b, const char *name, ns_op op, int ninputs, ...) {
    int inputs[NS_MAX_INPUTS];
    va_list ap;
    va_start(ap, ninputs);
    for (int i = 0; i < ninputs && i < NS_MAX_INPUTS; i++) inputs[i] = va_arg(ap, int);
    va_end(ap);
    if (b->failed) return -1;
    int id = ns_model_add_node(b->m, name, op, inputs, ninputs, &b->err);
    if (id < 0) b->failed = 1;
    return id;
}

static void iattr(gb *b, int id, const char *key, int64_t v) {
    if (!b->failed && ns_node_set_iattr(&b->m->nodes[id], key, v, &b->err) < 0) b->failed = 1;
}

static void fattr(gb *b, int id, const char *key, double v) {
    if (!b->failed && ns_node_set_fattr(&b->m->nodes[id], key, v, &b->err) < 0) b->failed = 1;
}

static int finish(gb *b) {
    if (!b->failed && ns_model_resolve(b->m, 1, &b->err) < 0) b->failed = 1;
    return b->failed ? -1 : 0;
}

// Every op but embedding, on a 2x6x6 input. Kinked ops read the input.
static int build_graph_a(ns_model *m, ns_err *err) {
    ns_model_init(m);
    gb b = {m, {{0}}, 0};
    if (ns_model_add_input(m, 2, 6, 6, &b.err) < 0) b.failed = 1;
    int in = 0;
    int mp = node(&b, "mp", NS_OP_MAXPOOL, 1, in);                 // 2x3x3
    iattr(&b, mp, "kernel", 2);
    int lr = node(&b, "lr", NS_OP_LEAKY_RELU, 1, in);              // 2x6x6
    fattr(&b, lr, "slope", 0.1);
    int c1 = node(&b, "c1", NS_OP_CONV2D, 1, lr);                  // 4x3x3
    iattr(&b, c1, "out", 4);
    iattr(&b, c1, "kernel", 3);
    iattr(&b, c1, "stride", 2);
    iattr(&b, c1, "pad", 2);
    iattr(&b, c1, "dilation", 2);
    int bn = node(&b, "bn", NS_OP_BATCHNORM, 1, c1);               // 4x3x3
    int c2 = node(&b, "c2", NS_OP_CONV2D, 1, mp);                  // 4x3x3
    iattr(&b, c2, "out", 4);
    iattr(&b, c2, "kernel", 3);
    iattr(&b, c2, "pad", 1);
    iattr(&b, c2, "groups", 2);
    iattr(&b, c2, "bias", 0);
    int ap = node(&b, "ap", NS_OP_AVGPOOL, 1, bn);                 // 4x3x3
    iattr(&b, ap, "kernel", 3);
    iattr(&b, ap, "stride", 1);
    iattr(&b, ap, "pad", 1);
    int sum = node(&b, "sum", NS_OP_ADD, 2, ap, c2);               // 4x3x3
    int prod = node(&b, "prod", NS_OP_MUL, 2, sum, bn);            // 4x3x3
    int rl = node(&b, "rl", NS_OP_RELU, 1, mp);                    // 2x3x3
    int cat = node(&b, "cat", NS_OP_CONCAT, 3, prod, c2, rl);      // 10x3x3
    int gap = node(&b, "gap", NS_OP_GLOBAL_AVGPOOL, 1, cat);       // 10
    int fl = node(&b, "fl", NS_OP_FLATTEN, 1, cat);                // 90
    int fc1 = node(&b, "fc1", NS_OP_LINEAR, 1, fl);                // 6
    iattr(&b, fc1, "out", 6);
    int bn1 = node(&b, "bn1", NS_OP_BATCHNORM, 1, fc1);            // 6
    int ge = node(&b, "ge", NS_OP_GELU, 1, bn1);                   // 6
    int cat2 = node(&b, "cat2", NS_OP_CONCAT, 2, gap, ge);         // 16
    int ln = node(&b, "ln", NS_OP_LAYERNORM, 1, cat2);             // 16
    int sg = node(&b, "sg", NS_OP_SIGMOID, 1, ln);                 // 16
    int th = node(&b, "th", NS_OP_TANH, 1, ln);                    // 16
    int sm = node(&b, "sm", NS_OP_ADD, 2, sg, th);                 // 16
    int dr = node(&b, "dr", NS_OP_DROPOUT, 1, sm);                 // 16
    fattr(&b, dr, "p", 0.25);
    int rs = node(&b, "rs", NS_OP_RESHAPE, 1, dr);                 // 2x8
    iattr(&b, rs, "dim0", 2);
    iattr(&b, rs, "dim1", 8);
    int tr = node(&b, "tr", NS_OP_TRANSPOSE, 1, rs);               // 8x2
    int fl2 = node(&b, "fl2", NS_OP_FLATTEN, 1, tr);               // 16
    int fc = node(&b, "fc", NS_OP_LINEAR, 1, fl2);                 // 3
    iattr(&b, fc, "out", 3);
    int rc = finish(&b);
    if (rc < 0) *err = b.err;
    return rc;
}

// Embedding (ids with repeats) into layernorm over its last axis, transpose.
static int build_graph_b(ns_model *m, ns_err *err) {
    ns_model_init(m);
    gb b = {m, {{0}}, 0};
    if (ns_model_add_input(m, 6, 0, 0, &b.err) < 0) b.failed = 1;
    int emb = node(&b, "emb", NS_OP_EMBEDDING, 1, 0);              // 6x4
    iattr(&b, emb, "num", 7);
    iattr(&b, emb, "dim", 4);
    int ln = node(&b, "ln", NS_OP_LAYERNORM, 1, emb);              // 6x4
    int th = node(&b, "th", NS_OP_TANH, 1, ln);                    // 6x4
    int tr = node(&b, "tr", NS_OP_TRANSPOSE, 1, th);               // 4x6
    int fl = node(&b, "fl", NS_OP_FLATTEN, 1, tr);                 // 24
    int fc = node(&b, "fc", NS_OP_LINEAR, 1, fl);                  // 3
    iattr(&b, fc, "out", 3);
    int rc = finish(&b);
    if (rc < 0) *err = b.err;
    return rc;
}

// Two embedding tables looked up with different ids (x and x*x): each node's
// backward needs its own ids (the engine once kept one shared buffer).
static int build_graph_c(ns_model *m, ns_err *err) {
    ns_model_init(m);
    gb b = {m, {{0}}, 0};
    if (ns_model_add_input(m, 5, 0, 0, &b.err) < 0) b.failed = 1;
    int sq = node(&b, "sq", NS_OP_MUL, 2, 0, 0);                   // 5: ids squared
    int e1 = node(&b, "e1", NS_OP_EMBEDDING, 1, 0);                // 5x3
    iattr(&b, e1, "num", 5);
    iattr(&b, e1, "dim", 3);
    int e2 = node(&b, "e2", NS_OP_EMBEDDING, 1, sq);               // 5x3
    iattr(&b, e2, "num", 5);
    iattr(&b, e2, "dim", 3);
    int cat = node(&b, "cat", NS_OP_CONCAT, 2, e1, e2);            // 10x3
    int fl = node(&b, "fl", NS_OP_FLATTEN, 1, cat);                // 30
    int fc = node(&b, "fc", NS_OP_LINEAR, 1, fl);                  // 2
    iattr(&b, fc, "out", 2);
    int rc = finish(&b);
    if (rc < 0) *err = b.err;
    return rc;
}

// torch's defaults leave norm weights at 1 and biases at 0: move them, so a
// mix-up shows.
static void perturb_norms(ns_model *m) {
    for (int i = 0; i < m->nnodes; i++) {
        const ns_node *n = &m->nodes[i];
        if (n->op != NS_OP_BATCHNORM && n->op != NS_OP_LAYERNORM) continue;
        for (int p = 0; p < 4; p++) {
            if (n->params[p] < 0) continue;
            ns_tensor *t = &m->tensors[n->params[p]].t;
            float *v = t->data;
            for (int64_t j = 0; j < t->numel; j++)
                v[j] = p == 0 || p == 3 ? urand(0.5f, 1.5f) : urand(-0.5f, 0.5f); // weight, var
        }
    }
}

// ----------------------------------------------------------------------------
// 1. finite differences

typedef struct fd_net {
    const char *name;
    ns_model *m;
    ns_engine *e;
    float *x, *R;
    int64_t N, nin, nout;
    int training;
    ns_err err;
    int failed;
} fd_net;

static double net_loss(fd_net *f) {
    f->e->step = FD_STEP; // forward adds one: the same dropout masks every time
    const float *out = ns_engine_forward(f->e, f->x, f->N, f->training, &f->err);
    if (!out) {
        f->failed = 1;
        return NAN;
    }
    double s = 0;
    for (int64_t i = 0; i < f->N * f->nout; i++) s += (double)out[i] * f->R[i];
    return s;
}

static double fd_err(fd_net *f, float *v, int64_t n, const float *grad, double *gmax) {
    double worst = 0;
    *gmax = 0;
    for (int64_t i = 0; i < n; i++) *gmax = fmax(*gmax, fabs((double)grad[i]));
    double floor = FD_FLOOR * fmax(1.0, *gmax);
    for (int64_t i = 0; i < n; i++) {
        float v0 = v[i];
        double l[4];
        const float at[4] = {v0 - 2 * FD_H, v0 - FD_H, v0 + FD_H, v0 + 2 * FD_H};
        for (int k = 0; k < 4; k++) {
            v[i] = at[k];
            l[k] = net_loss(f);
        }
        v[i] = v0;
        // five-point stencil: error O(h^4)
        double num = (l[0] - 8 * l[1] + 8 * l[2] - l[3]) / (6 * ((double)at[2] - (double)at[1])), a = grad[i];
        double rel = fabs(num - a) / fmax(fmax(fabs(num), fabs(a)), floor);
        if (!(rel <= worst)) worst = rel;
    }
    return worst;
}

static double fd_worst; // over all graphs, for the summary

// Differentiates L = sum(out * R) by the engine, then checks every trainable
// tensor (and the input unless skip_input) by central differences.
static void fd_check_net(fd_net *f, int skip_input) {
    const char *mode = f->training ? "training" : "eval";
    net_loss(f);
    if (f->failed) {
        CHECK(0, "%s (%s): forward: %s", f->name, mode, f->err.msg);
        return;
    }
    ns_engine_zero_grad(f->e);
    f->e->want_input_grad = 1;
    ns_engine_backward(f->e, f->R);
    float *dx = falloc(f->N * f->nin);
    memcpy(dx, f->e->grad[0], (size_t)(f->N * f->nin) * sizeof(float));
    for (int t = 0; t < f->m->ntensors; t++) {
        ns_named_tensor *nt = &f->m->tensors[t];
        if (!nt->used || !nt->trainable) continue;
        float *g = falloc(nt->t.numel);
        memcpy(g, f->e->param_grad[t], (size_t)nt->t.numel * sizeof(float));
        double gmax, e = fd_err(f, nt->t.data, nt->t.numel, g, &gmax);
        if (!(e <= fd_worst)) fd_worst = e;
        CHECK(e <= FD_TOL && !f->failed,
              "%s (%s): d %s matches finite differences (max rel err %.2e, max |grad| %.2e)",
              f->name, mode, nt->name, e, gmax);
        free(g);
    }
    if (!skip_input) {
        double gmax, e = fd_err(f, f->x, f->N * f->nin, dx, &gmax);
        if (!(e <= fd_worst)) fd_worst = e;
        CHECK(e <= FD_TOL && !f->failed,
              "%s (%s): d input matches finite differences (max rel err %.2e, max |grad| %.2e)",
              f->name, mode, e, gmax);
    }
    free(dx);
}

// Inputs for graph A: |x| >= 0.1 (relu, leaky_relu) and the four values of
// each 2x2 max-pool window at least 0.05 apart, so no perturbation by FD_H
// crosses a kink.
static void graph_a_input(float *x, int64_t N) {
    for (int64_t p = 0; p < N * 2; p++) { // planes of 6x6
        float *plane = x + p * 36;
        for (int wy = 0; wy < 3; wy++)
            for (int wx = 0; wx < 3; wx++) {
                float v[4];
                for (;;) {
                    int ok = 1;
                    for (int k = 0; k < 4; k++) {
                        v[k] = urand(0.1f, 1.5f) * (urand(0, 1) < 0.5f ? -1.0f : 1.0f);
                        for (int j = 0; j < k; j++) ok &= fabsf(v[k] - v[j]) >= 0.05f;
                    }
                    if (ok) break;
                }
                for (int k = 0; k < 4; k++) plane[(2 * wy + k / 2) * 6 + 2 * wx + k % 2] = v[k];
            }
    }
}

static void test_fd_graph_a(void) {
    ns_model m;
    ns_engine e;
    ns_err err = {{0}};
    if (build_graph_a(&m, &err) < 0) {
        CHECK(0, "graph A: build: %s", err.msg);
        ns_model_free(&m);
        return;
    }
    ns_model_init_params(&m, 7);
    perturb_norms(&m);
    // Batch norm over 4 samples is steep where a channel's values lie close
    // together: spread the layers feeding the two batch norms, so that a step
    // of FD_H is small against that spread.
    const char *const spread[] = {"c1.weight", "fc1.weight"};
    for (int k = 0; k < 2; k++) {
        ns_tensor *t = &m.tensors[ns_model_find_tensor(&m, spread[k])].t;
        for (int64_t j = 0; j < t->numel; j++) ((float *)t->data)[j] *= 3;
    }
    int64_t N = 4;
    fd_net f = {"graph A", &m, &e, NULL, NULL, N, m.nodes[0].numel, m.nodes[m.output].numel, 1,
                {{0}}, 0};
    if (ns_engine_init(&e, &m, N, 1, &err) < 0) {
        CHECK(0, "graph A: engine init: %s", err.msg);
        ns_model_free(&m);
        return;
    }
    e.seed = 99;
    f.x = falloc(N * f.nin);
    f.R = falloc(N * f.nout);
    graph_a_input(f.x, N);
    for (int64_t i = 0; i < N * f.nout; i++) f.R[i] = urand(-1, 1);

    // The dropout mask is neither all kept nor all dropped, is the same for the
    // same step, and changes from one training forward to the next.
    int dr = ns_model_find_node(&m, "dr");
    net_loss(&f);
    int64_t nd = N * m.nodes[dr].numel, kept = 0;
    for (int64_t i = 0; i < nd; i++) kept += e.mask[dr][i] != 0;
    float *first = falloc(nd);
    memcpy(first, e.act[dr], (size_t)nd * sizeof(float));
    net_loss(&f);
    int same = !memcmp(first, e.act[dr], (size_t)nd * sizeof(float));
    ns_engine_forward(&e, f.x, N, 1, &err);
    int next = memcmp(first, e.act[dr], (size_t)nd * sizeof(float)) != 0;
    CHECK(kept > 0 && kept < nd && same && next,
          "graph A: dropout keeps %lld of %lld, the same mask again for the same step, a new one "
          "at the next training forward", (long long)kept, (long long)nd);
    free(first);

    fd_check_net(&f, 0);
    f.training = 0;
    fd_check_net(&f, 0);
    free(f.x);
    free(f.R);
    ns_engine_free(&e);
    ns_model_free(&m);
}

// A graph of ids: only the parameters are differentiable.
static void fd_ids_graph(const char *name, int (*build)(ns_model *, ns_err *), int64_t V) {
    ns_model m;
    ns_engine e;
    ns_err err = {{0}};
    if (build(&m, &err) < 0) {
        CHECK(0, "%s: build: %s", name, err.msg);
        ns_model_free(&m);
        return;
    }
    ns_model_init_params(&m, 11);
    perturb_norms(&m);
    int64_t N = 3;
    fd_net f = {name, &m, &e, NULL, NULL, N, m.nodes[0].numel, m.nodes[m.output].numel, 1,
                {{0}}, 0};
    if (ns_engine_init(&e, &m, N, 1, &err) < 0) {
        CHECK(0, "%s: engine init: %s", name, err.msg);
        ns_model_free(&m);
        return;
    }
    f.x = falloc(N * f.nin);
    f.R = falloc(N * f.nout);
    for (int64_t i = 0; i < N * f.nin; i++) f.x[i] = (float)(int)urand(0, (float)V - 0.01f);
    f.x[1] = f.x[0]; // a repeated id: its rows' gradients add
    for (int64_t i = 0; i < N * f.nout; i++) f.R[i] = urand(-1, 1);
    fd_check_net(&f, 1);
    free(f.x);
    free(f.R);
    ns_engine_free(&e);
    ns_model_free(&m);
}

// ----------------------------------------------------------------------------
// 2. refusals and model streams

static void test_refusals(void) {
    ns_model m;
    ns_engine e;
    ns_err err = {{0}};
    if (build_graph_b(&m, &err) < 0 || ns_engine_init(&e, &m, 2, 0, &err) < 0) {
        CHECK(0, "graph B for refusals: %s", err.msg);
        ns_model_free(&m);
        return;
    }
    ns_model_init_params(&m, 3);
    float x[3 * 6] = {0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0};
    err.msg[0] = 0;
    const float *out = ns_engine_forward(&e, x, 3, 1, &err);
    CHECK(!out && strstr(err.msg, "3"), "a batch of 3 above max_batch 2 is refused (%s)", err.msg);
    err.msg[0] = 0;
    out = ns_engine_forward(&e, x, 0, 1, &err);
    CHECK(!out && err.msg[0], "a batch of 0 is refused (%s)", err.msg);
    const float bad[][2] = {{7, 0}, {-1, 0}, {2.5f, 0}, {NAN, 0}};
    const char *what[] = {"7 = num", "-1", "2.5", "NaN"};
    for (int k = 0; k < 4; k++) {
        float xb[12];
        memcpy(xb, x, sizeof xb);
        xb[6 + 3] = bad[k][0]; // sample 1, position 3
        err.msg[0] = 0;
        out = ns_engine_forward(&e, xb, 2, 0, &err);
        CHECK(!out && strstr(err.msg, "emb"), "embedding id %s is refused, naming the node (%s)",
              what[k], err.msg);
    }
    out = ns_engine_forward(&e, x, 2, 0, &err);
    CHECK(out != NULL, "after the refusals a good batch runs%s%s", out ? "" : ": ",
          out ? "" : err.msg);
    ns_engine_free(&e);
    ns_model_free(&m);
}

// A new temporary file, open for writing; its name in path.
static FILE *temp_file(char *path, size_t cap) {
    snprintf(path, cap, "%s/test_engine.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "wb");
    if (!f) {
        fprintf(stderr, "test_engine: cannot create a temporary file %s\n", path);
        exit(1);
    }
    return f;
}

// Writes m to a temporary file and loads it back into *back (0) or leaves the
// message in err (-1).
static int round_trip(const ns_model *m, ns_model *back, ns_err *err) {
    char path[512];
    FILE *f = temp_file(path, sizeof path);
    ns_writer w;
    ns_writer_init(&w, f);
    int rc = ns_model_write(m, &w, NULL, 0, err);
    ns_writer_free(&w);
    if (fclose(f) != 0 && rc == 0) rc = ns_errf(err, "closing %s failed", path);
    ns_model_init(back);
    ns_reader *r = rc == 0 ? ns_reader_open(path, err) : NULL;
    if (r) {
        rc = ns_model_read(back, r, err);
        ns_reader_close(r);
    } else {
        rc = -1;
    }
    unlink(path);
    return rc;
}

static void test_model_io(void) {
    ns_model m, back;
    ns_engine e1, e2;
    ns_err err = {{0}};
    if (build_graph_a(&m, &err) < 0) {
        CHECK(0, "graph A for model streams: %s", err.msg);
        ns_model_free(&m);
        return;
    }
    ns_model_init_params(&m, 5);
    perturb_norms(&m);
    snprintf(m.arch, sizeof m.arch, "graph A");
    int rc = round_trip(&m, &back, &err);
    CHECK(rc == 0, "graph A written with ns_model_write reads back with ns_model_read%s%s",
          rc ? ": " : "", rc ? err.msg : "");
    if (rc == 0) {
        int same = back.nnodes == m.nnodes && back.output == m.output && !strcmp(back.arch, m.arch);
        for (int i = 0; same && i < m.nnodes; i++) {
            const ns_node *a = &m.nodes[i], *b = &back.nodes[i];
            same = !strcmp(a->name, b->name) && a->op == b->op && a->ninputs == b->ninputs &&
                   !memcmp(a->inputs, b->inputs, sizeof a->inputs) &&
                   !memcmp(a->iattr, b->iattr, sizeof a->iattr) &&
                   !memcmp(a->fattr, b->fattr, sizeof a->fattr) && a->numel == b->numel;
        }
        CHECK(same, "the graph read back has the same nodes, inputs, attributes and output");
        int64_t N = 3, nin = m.nodes[0].numel, nout = m.nodes[m.output].numel;
        float *x = falloc(N * nin);
        graph_a_input(x, N);
        if (ns_engine_init(&e1, &m, N, 0, &err) == 0 && ns_engine_init(&e2, &back, N, 0, &err) == 0) {
            int identical = 1;
            for (int training = 1; training >= 0; training--) {
                e1.seed = e2.seed = 5;
                e1.step = e2.step = 9;
                const float *o1 = ns_engine_forward(&e1, x, N, training, &err);
                const float *o2 = ns_engine_forward(&e2, x, N, training, &err);
                identical &= o1 && o2 && !memcmp(o1, o2, (size_t)(N * nout) * sizeof(float));
            }
            CHECK(identical, "the model read back gives bit-identical outputs (training and eval)");
            ns_engine_free(&e1);
            ns_engine_free(&e2);
        } else {
            CHECK(0, "engines for the round trip: %s", err.msg);
        }
        free(x);
    }
    ns_model_free(&back);

    // a missing parameter tensor: not written
    int t = ns_model_find_tensor(&m, "fc.weight");
    m.tensors[t].used = 0;
    rc = round_trip(&m, &back, &err);
    m.tensors[t].used = 1;
    CHECK(rc < 0 && strstr(err.msg, "node fc:") && strstr(err.msg, "fc.weight"),
          "a model without fc.weight is refused, naming the node (%s)", rc < 0 ? err.msg : "read");
    ns_model_free(&back);

    // a parameter of the wrong shape
    t = ns_model_find_tensor(&m, "fc1.weight");
    ns_tensor wrong, saved = m.tensors[t].t;
    int64_t shape[2] = {6, 89};
    if (ns_tensor_alloc(&wrong, NS_F32, 2, shape, &err) == 0) {
        m.tensors[t].t = wrong;
        rc = round_trip(&m, &back, &err);
        m.tensors[t].t = saved;
        ns_tensor_free(&wrong);
        CHECK(rc < 0 && strstr(err.msg, "node fc1:") && strstr(err.msg, "6x89"),
              "a model with fc1.weight 6x89 (not 6x90) is refused, naming the node (%s)",
              rc < 0 ? err.msg : "read");
        ns_model_free(&back);
    }
    ns_model_free(&m);

    // an unknown op, in a graph record written by hand
    char path[512];
    FILE *f = temp_file(path, sizeof path);
    ns_writer w;
    ns_writer_init(&w, f);
    ns_map graph;
    ns_map_init(&graph);
    msgpack_packer *pk = ns_map_key(&graph, "nodes");
    msgpack_pack_array(pk, 2);
    const char *names[] = {"input", "mystery"}, *ops[] = {"input", "frobnicate"};
    for (int i = 0; i < 2; i++) {
        msgpack_pack_map(pk, 4);
        msgpack_pack_str_with_body(pk, "name", 4);
        msgpack_pack_str_with_body(pk, names[i], strlen(names[i]));
        msgpack_pack_str_with_body(pk, "op", 2);
        msgpack_pack_str_with_body(pk, ops[i], strlen(ops[i]));
        msgpack_pack_str_with_body(pk, "inputs", 6);
        msgpack_pack_array(pk, (size_t)i);
        if (i) msgpack_pack_str_with_body(pk, "input", 5);
        msgpack_pack_str_with_body(pk, "attrs", 5);
        msgpack_pack_map(pk, i ? 0 : 1);
        if (!i) {
            msgpack_pack_str_with_body(pk, "channels", 8);
            msgpack_pack_int64(pk, 4);
        }
    }
    rc = ns_write_record(&w, "graph", "graph", NULL, &graph, NULL, &err);
    ns_map_free(&graph);
    ns_writer_free(&w);
    fclose(f);
    ns_model bad;
    rc = rc < 0 ? rc : ns_model_load(&bad, path, &err);
    unlink(path);
    CHECK(rc < 0 && strstr(err.msg, "mystery") && strstr(err.msg, "frobnicate"),
          "a graph with an unknown op is refused, naming the node (%s)", rc < 0 ? err.msg : "read");
    if (rc == 0) ns_model_free(&bad);
}

int main(void) {
    // Thousands of tiny forwards: BLIS on one thread unless the caller says otherwise.
    setenv("NETSMITH_THREADS", "1", 0);
    ns_blas_init();
    double t0 = check_seconds();
    test_fd_graph_a();
    fd_ids_graph("graph B (embedding)", build_graph_b, 7);
    fd_ids_graph("graph C (two embeddings, different ids)", build_graph_c, 3);
    test_refusals();
    test_model_io();
    double secs = check_seconds() - t0;
    printf("# worst finite-difference error %.2e (h %g, floor %g, tolerance %g)\n", fd_worst,
           (double)FD_H, FD_FLOOR, FD_TOL);
    printf("# %.2f s\n", secs);
    return check_done();
}
