// test_ops.c: the op kernels of lib/nn/ops.h other than the convolutions
// (test_ops_conv.c) and the transformer kernels (test_ops_attn.c), forward and
// backward: linear, batch norm, layer norm, the activations, pooling, add, mul,
// concat, transpose, dropout, embedding, the losses, and the thread-count
// independence of the reductions.
//
// Gradients (fd_check.h): for each op, a scalar loss L = sum(out * R) with a
// fixed random R, so dL/dout = R is what backward receives. Each input and
// parameter is perturbed element by element and the central difference
// (L(x+h) - L(x-h)) / 2h, with L summed in double over the float forward, is
// compared with what backward accumulated. Gradient buffers start at ACC, not
// zero, to check that backward adds rather than overwrites. The error printed
// is max |analytic - numeric| / max(|analytic|, |numeric|, FD_FLOOR).
// Forward values: hand-computed tiny cases. A summary of the worst error per
// op is printed at the end as TAP comments.
#include "base/blas.h"
#include "check.h"
#include "nn/ops.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "fd_check.h"

// ----------------------------------------------------------------------------
// linear

typedef struct {
    float *out, *inp, *w, *b;
    int64_t N, IN, OUT;
} lin_ctx;

static void lin_fwd(void *v) {
    lin_ctx *c = v;
    ns_linear_forward(c->out, c->inp, c->w, c->b, c->N, c->IN, c->OUT);
}

static void test_linear(void) {
    lin_ctx c = {.N = 3, .IN = 4, .OUT = 5};
    c.out = falloc(c.N * c.OUT);
    c.inp = frand(c.N * c.IN, -1, 1);
    c.w = frand(c.OUT * c.IN, -1, 1);
    c.b = frand(c.OUT, -1, 1);
    float *R = frand(c.N * c.OUT, -1, 1);
    float *di = gbuf(c.N * c.IN), *dw = gbuf(c.OUT * c.IN), *db = gbuf(c.OUT);
    lin_fwd(&c);
    // forward against a direct sum
    float want[15];
    for (int64_t i = 0; i < c.N; i++)
        for (int64_t j = 0; j < c.OUT; j++) {
            double s = c.b[j];
            for (int64_t k = 0; k < c.IN; k++) s += (double)c.inp[i * c.IN + k] * c.w[j * c.IN + k];
            want[i * c.OUT + j] = (float)s;
        }
    check_close("linear: forward equals x W^T + b", c.out, want, c.N * c.OUT, 1e-5);
    ns_linear_backward(di, dw, db, R, c.inp, c.w, c.N, c.IN, c.OUT);
    fd_problem p = {lin_fwd, &c, c.out, c.N * c.OUT, R};
    fd_check("linear", "inp", &p, c.inp, c.N * c.IN, di);
    fd_check("linear", "weight", &p, c.w, c.OUT * c.IN, dw);
    fd_check("linear", "bias", &p, c.b, c.OUT, db);
    free(c.out), free(c.inp), free(c.w), free(c.b), free(R), free(di), free(dw), free(db);
}

// ----------------------------------------------------------------------------
// batch norm, layer norm

typedef struct {
    float *out, *mean, *rstd, *rm, *rv, *rm0, *rv0, *inp, *w, *b;
    int64_t N, C, S;
    int training;
} bn_ctx;

static void bn_fwd(void *v) {
    bn_ctx *c = v;
    memcpy(c->rm, c->rm0, (size_t)c->C * sizeof(float)); // the running stats must not drift
    memcpy(c->rv, c->rv0, (size_t)c->C * sizeof(float));
    ns_batchnorm_forward(c->out, c->mean, c->rstd, c->rm, c->rv, c->inp, c->w, c->b, c->N, c->C,
                         c->S, c->training, 0.1f, 1e-5f);
}

static void test_bn_case(const char *op, int64_t N, int64_t C, int64_t S, int training) {
    bn_ctx c = {.N = N, .C = C, .S = S, .training = training};
    int64_t n = N * C * S;
    c.out = falloc(n), c.mean = falloc(C), c.rstd = falloc(C), c.rm = falloc(C), c.rv = falloc(C);
    c.rm0 = frand(C, -0.5f, 0.5f), c.rv0 = frand(C, 0.5f, 2.0f);
    c.inp = frand(n, -1, 1), c.w = frand(C, 0.5f, 1.5f), c.b = frand(C, -1, 1);
    for (int64_t i = 0; i < n; i++) c.inp[i] = c.inp[i] * 2.0f + 0.3f; // not already normal
    float *R = frand(n, -1, 1);
    bn_fwd(&c);

    // forward and running statistics against a direct computation in double
    float *want = falloc(n), *wrm = falloc(C), *wrv = falloc(C);
    for (int64_t ch = 0; ch < C; ch++) {
        double s = 0, v = 0, M = (double)(N * S);
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < S; j++) s += c.inp[(i * C + ch) * S + j];
        double m = s / M;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < S; j++) v += pow(c.inp[(i * C + ch) * S + j] - m, 2);
        double var = v / M;
        wrm[ch] = training ? (float)(0.9 * c.rm0[ch] + 0.1 * m) : c.rm0[ch];
        wrv[ch] = training ? (float)(0.9 * c.rv0[ch] + 0.1 * v / (M - 1)) : c.rv0[ch];
        if (!training) m = c.rm0[ch], var = c.rv0[ch];
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < S; j++) {
                int64_t k = (i * C + ch) * S + j;
                want[k] = (float)((c.inp[k] - m) / sqrt(var + 1e-5) * c.w[ch] + c.b[ch]);
            }
    }
    char what[128];
    snprintf(what, sizeof what, "%s: forward matches the formula", op);
    check_close(what, c.out, want, n, 1e-5);
    snprintf(what, sizeof what, "%s: running mean (momentum 0.1)", op);
    check_close(what, c.rm, wrm, C, 1e-6);
    snprintf(what, sizeof what, "%s: running var (unbiased, momentum 0.1)", op);
    check_close(what, c.rv, wrv, C, 1e-6);

    float *di = gbuf(n), *dw = gbuf(C), *db = gbuf(C);
    ns_batchnorm_backward(di, dw, db, R, c.inp, c.mean, c.rstd, c.w, N, C, S, training);
    fd_problem p = {bn_fwd, &c, c.out, n, R};
    fd_check(op, "inp", &p, c.inp, n, di);
    fd_check(op, "weight", &p, c.w, C, dw);
    fd_check(op, "bias", &p, c.b, C, db);
    free(c.out), free(c.mean), free(c.rstd), free(c.rm), free(c.rv), free(c.rm0), free(c.rv0);
    free(c.inp), free(c.w), free(c.b), free(R), free(want), free(wrm), free(wrv);
    free(di), free(dw), free(db);
}

typedef struct {
    float *out, *mean, *rstd, *inp, *w, *b;
    int64_t N, D;
} ln_ctx;

static void ln_fwd(void *v) {
    ln_ctx *c = v;
    ns_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->D, 1e-5f);
}

static void test_layernorm(void) {
    ln_ctx c = {.N = 3, .D = 7};
    int64_t n = c.N * c.D;
    c.out = falloc(n), c.mean = falloc(c.N), c.rstd = falloc(c.N);
    c.inp = frand(n, -2, 2), c.w = frand(c.D, 0.5f, 1.5f), c.b = frand(c.D, -1, 1);
    float *R = frand(n, -1, 1), *want = falloc(n);
    ln_fwd(&c);
    for (int64_t i = 0; i < c.N; i++) {
        double s = 0, v = 0;
        for (int64_t j = 0; j < c.D; j++) s += c.inp[i * c.D + j];
        double m = s / c.D;
        for (int64_t j = 0; j < c.D; j++) v += pow(c.inp[i * c.D + j] - m, 2);
        for (int64_t j = 0; j < c.D; j++)
            want[i * c.D + j] =
                (float)((c.inp[i * c.D + j] - m) / sqrt(v / c.D + 1e-5) * c.w[j] + c.b[j]);
    }
    check_close("layernorm: forward matches the formula", c.out, want, n, 1e-5);
    float *di = gbuf(n), *dw = gbuf(c.D), *db = gbuf(c.D);
    ns_layernorm_backward(di, dw, db, R, c.inp, c.mean, c.rstd, c.w, c.N, c.D);
    fd_problem p = {ln_fwd, &c, c.out, n, R};
    fd_check("layernorm", "inp", &p, c.inp, n, di);
    fd_check("layernorm", "weight", &p, c.w, c.D, dw);
    fd_check("layernorm", "bias", &p, c.b, c.D, db);
    free(c.out), free(c.mean), free(c.rstd), free(c.inp), free(c.w), free(c.b), free(R);
    free(want), free(di), free(dw), free(db);
}

static void test_norm(void) {
    test_bn_case("batchnorm2d train", 2, 3, 25, 1);
    test_bn_case("batchnorm2d eval", 2, 3, 25, 0);
    test_bn_case("batchnorm1d train", 5, 3, 1, 1);
    test_bn_case("batchnorm1d eval", 5, 3, 1, 0);
    test_layernorm();
}

// ----------------------------------------------------------------------------
// activations

enum { RELU, LEAKY, GELU, SIGMOID, TANH };
static const char *act_names[] = {"relu", "leaky_relu", "gelu", "sigmoid", "tanh"};

typedef struct {
    float *out, *inp;
    int64_t n;
    int which;
} act_ctx;

static void act_fwd(void *v) {
    act_ctx *c = v;
    switch (c->which) {
    case RELU: ns_relu_forward(c->out, c->inp, c->n); break;
    case LEAKY: ns_leaky_relu_forward(c->out, c->inp, 0.1f, c->n); break;
    case GELU: ns_gelu_forward(c->out, c->inp, c->n); break;
    case SIGMOID: ns_sigmoid_forward(c->out, c->inp, c->n); break;
    case TANH: ns_tanh_forward(c->out, c->inp, c->n); break;
    }
}

static void test_act(void) {
    for (int which = RELU; which <= TANH; which++) {
        act_ctx c = {.n = 40, .which = which};
        c.out = falloc(c.n);
        c.inp = frand_away(c.n, 0.05f); // no kink within h of any input
        for (int64_t i = 0; i < c.n; i++) c.inp[i] *= 3.0f;
        float *R = frand(c.n, -1, 1), *di = gbuf(c.n);
        act_fwd(&c);
        switch (which) {
        case RELU: ns_relu_backward(di, R, c.out, c.n); break;
        case LEAKY: ns_leaky_relu_backward(di, R, c.inp, 0.1f, c.n); break;
        case GELU: ns_gelu_backward(di, R, c.inp, c.n); break;
        case SIGMOID: ns_sigmoid_backward(di, R, c.out, c.n); break;
        case TANH: ns_tanh_backward(di, R, c.out, c.n); break;
        }
        fd_problem p = {act_fwd, &c, c.out, c.n, R};
        fd_check(act_names[which], "inp", &p, c.inp, c.n, di);
        free(c.out), free(c.inp), free(R), free(di);
    }
    // hand values
    float x[6] = {-1, 1, 2.5f, 0, -100, 100}, y[6];
    ns_gelu_forward(y, x, 3);
    float wg[3] = {-0.15865525393145707f, 0.8413447460685429f, 2.4844758366855597f};
    check_close("gelu: exact erf values at -1, 1, 2.5", y, wg, 3, 1e-6);
    ns_sigmoid_forward(y, x + 3, 3);
    float ws[3] = {0.5f, 0.0f, 1.0f};
    check_close("sigmoid: 0, -100, 100 without overflow", y, ws, 3, 1e-30);
    ns_leaky_relu_forward(y, x, 0.01f, 3);
    float wl[3] = {-0.01f, 1.0f, 2.5f};
    check_close("leaky_relu: slope 0.01", y, wl, 3, 0);
    float ip[4] = {-1, 2, 0, 3};
    ns_relu_forward(ip, ip, 4);
    float wr[4] = {0, 2, 0, 3};
    check_close("relu: in place", ip, wr, 4, 0);
}

// ----------------------------------------------------------------------------
// pooling

enum { MAXPOOL, AVGPOOL };

typedef struct {
    ns_pool2d_geom g;
    float *out, *inp;
    int32_t *argmax;
    int which;
} pool_ctx;

static void pool_fwd(void *v) {
    pool_ctx *c = v;
    if (c->which == MAXPOOL)
        ns_maxpool2d_forward(c->out, c->argmax, c->inp, &c->g);
    else
        ns_avgpool2d_forward(c->out, c->inp, &c->g);
}

static void test_pool_case(const char *op, int which, ns_pool2d_geom g) {
    ns_err err;
    if (ns_pool2d_geom_init(&g, &err) != 0) {
        CHECK(0, "%s: geometry rejected: %s", op, err.msg);
        return;
    }
    pool_ctx c = {.g = g, .which = which};
    int64_t ni = g.N * g.C * g.H * g.W, no = g.N * g.C * g.OH * g.OW;
    c.out = falloc(no), c.argmax = calloc((size_t)no, sizeof(int32_t));
    c.inp = falloc(ni);
    // distinct values 0.05 apart in random order: no two within 2h of each other
    for (int64_t i = 0; i < ni; i++) c.inp[i] = (float)i * 0.05f - 2.0f;
    for (int64_t i = ni - 1; i > 0; i--) {
        int64_t j = (int64_t)(ns_rand_u64(7, (uint64_t)i) % (uint64_t)(i + 1));
        float t = c.inp[i];
        c.inp[i] = c.inp[j], c.inp[j] = t;
    }
    float *R = frand(no, -1, 1), *di = gbuf(ni);
    pool_fwd(&c);
    if (which == MAXPOOL)
        ns_maxpool2d_backward(di, R, c.argmax, &g);
    else
        ns_avgpool2d_backward(di, R, &g);
    fd_problem p = {pool_fwd, &c, c.out, no, R};
    fd_check(op, "inp", &p, c.inp, ni, di);
    free(c.out), free(c.argmax), free(c.inp), free(R), free(di);
}

typedef struct {
    float *out, *inp;
    int64_t N, C, S;
} gap_ctx;

static void gap_fwd(void *v) {
    gap_ctx *c = v;
    ns_global_avgpool_forward(c->out, c->inp, c->N, c->C, c->S);
}

static void test_pool(void) {
    // hand values on one 4x4 plane
    float x[16] = {1, 3, 2, 0, 5, 4, 7, 6, 0, 2, 9, 8, 1, 3, 4, 2}, out[4];
    int32_t am[4];
    ns_err err;
    ns_pool2d_geom g = {.N = 1, .C = 1, .H = 4, .W = 4, .KH = 2, .KW = 2, .SH = 2, .SW = 2};
    int rc = ns_pool2d_geom_init(&g, &err);
    ns_maxpool2d_forward(out, am, x, &g);
    float w1[4] = {5, 7, 3, 9};
    CHECK(rc == 0 && g.OH == 2 && g.OW == 2 && am[0] == 4 && am[1] == 6 && am[2] == 13 &&
              am[3] == 10,
          "maxpool2d: 2x2/2 argmax is 4 6 13 10 (got %d %d %d %d)", am[0], am[1], am[2], am[3]);
    check_close("maxpool2d: 2x2/2 forward, hand values", out, w1, 4, 0);
    g = (ns_pool2d_geom){.N = 1, .C = 1, .H = 4, .W = 4, .KH = 3, .KW = 3, .SH = 2, .SW = 2,
                         .PH = 1, .PW = 1};
    rc = ns_pool2d_geom_init(&g, &err);
    ns_maxpool2d_forward(out, am, x, &g);
    float w2[4] = {5, 7, 5, 9};
    CHECK(rc == 0 && g.OH == 2 && am[0] == 4 && am[1] == 6 && am[2] == 4 && am[3] == 10,
          "maxpool2d: 3x3/2 pad 1 argmax is 4 6 4 10 (got %d %d %d %d)", am[0], am[1], am[2],
          am[3]);
    check_close("maxpool2d: 3x3/2 pad 1 forward, hand values", out, w2, 4, 0);
    ns_avgpool2d_forward(out, x, &g);
    float w3[4] = {13.0f / 9, 22.0f / 9, 15.0f / 9, 5.0f};
    check_close("avgpool2d: 3x3/2 pad 1 counts padding (divides by 9)", out, w3, 4, 1e-6);
    float xn[4] = {1, NAN, 2, 3};
    g = (ns_pool2d_geom){.N = 1, .C = 1, .H = 2, .W = 2, .KH = 2, .KW = 2, .SH = 2, .SW = 2};
    ns_pool2d_geom_init(&g, &err);
    ns_maxpool2d_forward(out, am, xn, &g);
    CHECK(isnan(out[0]) && am[0] == 1, "maxpool2d: NaN propagates, as in torch");
    float xt[4] = {1, 2, 2, 0};
    ns_maxpool2d_forward(out, am, xt, &g);
    CHECK(out[0] == 2 && am[0] == 1, "maxpool2d: on a tie the first maximum wins (got %d)", am[0]);
    g = (ns_pool2d_geom){.N = 1, .C = 1, .H = 4, .W = 4, .KH = 2, .KW = 2, .SH = 1, .SW = 1,
                         .PH = 2, .PW = 0};
    CHECK(ns_pool2d_geom_init(&g, &err) != 0, "pool2d: padding over half the kernel refused (%s)",
          err.msg);

    ns_pool2d_geom a = {.N = 2, .C = 3, .H = 5, .W = 5, .KH = 3, .KW = 3, .SH = 2, .SW = 2,
                        .PH = 1, .PW = 1};
    ns_pool2d_geom b = {.N = 2, .C = 3, .H = 6, .W = 5, .KH = 2, .KW = 3, .SH = 1, .SW = 2,
                        .PH = 1, .PW = 0};
    test_pool_case("maxpool2d", MAXPOOL, a);
    test_pool_case("maxpool2d", MAXPOOL, b);
    test_pool_case("avgpool2d", AVGPOOL, a);
    test_pool_case("avgpool2d", AVGPOOL, b);

    gap_ctx c = {.N = 2, .C = 3, .S = 20};
    int64_t n = c.N * c.C * c.S;
    c.out = falloc(c.N * c.C), c.inp = frand(n, -1, 1);
    float *R = frand(c.N * c.C, -1, 1), *di = gbuf(n);
    gap_fwd(&c);
    ns_global_avgpool_backward(di, R, c.N, c.C, c.S);
    fd_problem p = {gap_fwd, &c, c.out, c.N * c.C, R};
    fd_check("global_avgpool", "inp", &p, c.inp, n, di);
    free(c.out), free(c.inp), free(R), free(di);
}

// ----------------------------------------------------------------------------
// misc: add, mul, concat, transpose, dropout, embedding

typedef struct {
    float *out, *a, *b;
    int64_t n;
    int mul;
} bin_ctx;

static void bin_fwd(void *v) {
    bin_ctx *c = v;
    if (c->mul)
        ns_mul_forward(c->out, c->a, c->b, c->n);
    else
        ns_add_forward(c->out, c->a, c->b, c->n);
}

typedef struct {
    float *out, *inps[3];
    int64_t Cs[3], N, S;
} cat_ctx;

static void cat_fwd(void *v) {
    cat_ctx *c = v;
    ns_concat_forward(c->out, (const float *const *)c->inps, c->Cs, 3, c->N, c->S);
}

typedef struct {
    float *out, *inp;
    int64_t R, Cm;
} tr_ctx;

static void tr_fwd(void *v) {
    tr_ctx *c = v;
    ns_transpose_forward(c->out, c->inp, c->R, c->Cm);
}

typedef struct {
    float *out, *inp;
    uint8_t *mask;
    float p;
    int64_t n;
} drop_ctx;

static void drop_fwd(void *v) {
    drop_ctx *c = v;
    ns_dropout_forward(c->out, c->inp, c->mask, c->p, c->n);
}

typedef struct {
    float *out, *table;
    int32_t *ids;
    int64_t N, D;
} emb_ctx;

static void emb_fwd(void *v) {
    emb_ctx *c = v;
    ns_embedding_forward(c->out, c->ids, c->table, c->N, c->D);
}

static void test_misc(void) {
    for (int mul = 0; mul < 2; mul++) {
        const char *op = mul ? "mul" : "add";
        bin_ctx c = {.n = 30, .mul = mul};
        c.out = falloc(c.n), c.a = frand(c.n, -1, 1), c.b = frand(c.n, -1, 1);
        float *R = frand(c.n, -1, 1), *da = gbuf(c.n), *db = gbuf(c.n);
        bin_fwd(&c);
        if (mul)
            ns_mul_backward(da, db, R, c.a, c.b, c.n);
        else
            ns_add_backward(da, db, R, c.n);
        fd_problem p = {bin_fwd, &c, c.out, c.n, R};
        fd_check(op, "a", &p, c.a, c.n, da);
        fd_check(op, "b", &p, c.b, c.n, db);
        free(c.out), free(c.a), free(c.b), free(R), free(da), free(db);
    }
    {
        cat_ctx c = {.Cs = {2, 1, 3}, .N = 2, .S = 4};
        int64_t Ct = 6, no = c.N * Ct * c.S;
        float *dis[3];
        for (int j = 0; j < 3; j++) {
            c.inps[j] = frand(c.N * c.Cs[j] * c.S, -1, 1);
            dis[j] = gbuf(c.N * c.Cs[j] * c.S);
        }
        c.out = falloc(no);
        float *R = frand(no, -1, 1);
        cat_fwd(&c);
        // out[1, 2, 3] is channel 0 of input 1, sample 1, position 3
        CHECK(c.out[(1 * Ct + 2) * c.S + 3] == c.inps[1][(1 * 1 + 0) * c.S + 3] &&
                  c.out[(1 * Ct + 5) * c.S + 0] == c.inps[2][(1 * 3 + 2) * c.S + 0],
              "concat: channels land at their offsets");
        ns_concat_backward(dis, R, c.Cs, 3, c.N, c.S);
        fd_problem p = {cat_fwd, &c, c.out, no, R};
        const char *names[3] = {"inp0", "inp1", "inp2"};
        for (int j = 0; j < 3; j++)
            fd_check("concat", names[j], &p, c.inps[j], c.N * c.Cs[j] * c.S, dis[j]);
        float *const skip[3] = {NULL, dis[1], NULL};
        ns_concat_backward(skip, R, c.Cs, 3, c.N, c.S); // NULL entries are skipped
        for (int j = 0; j < 3; j++) free(c.inps[j]), free(dis[j]);
        free(c.out), free(R);
    }
    int64_t shapes[2][2] = {{3, 5}, {40, 35}}; // the second crosses 32x32 tiles
    for (int s = 0; s < 2; s++) {
        tr_ctx c = {.R = shapes[s][0], .Cm = shapes[s][1]};
        int64_t n = c.R * c.Cm;
        c.out = falloc(n), c.inp = frand(n, -1, 1);
        float *R = frand(n, -1, 1), *di = gbuf(n);
        tr_fwd(&c);
        CHECK(c.out[2 * c.R + 1] == c.inp[1 * c.Cm + 2] &&
                  c.out[(c.Cm - 1) * c.R + c.R - 1] == c.inp[n - 1],
              "transpose %lldx%lld: out[j][i] == inp[i][j]", (long long)c.R, (long long)c.Cm);
        ns_transpose_backward(di, R, c.R, c.Cm);
        fd_problem p = {tr_fwd, &c, c.out, n, R};
        fd_check("transpose", "inp", &p, c.inp, n, di);
        free(c.out), free(c.inp), free(R), free(di);
    }
    {
        drop_ctx c = {.n = 40, .p = 0.3f};
        c.out = falloc(c.n), c.inp = frand(c.n, -1, 1), c.mask = malloc((size_t)c.n);
        ns_dropout_mask(c.mask, c.p, 99, c.n);
        float *R = frand(c.n, -1, 1), *di = gbuf(c.n);
        drop_fwd(&c);
        ns_dropout_backward(di, R, c.mask, c.p, c.n);
        fd_problem p = {drop_fwd, &c, c.out, c.n, R};
        fd_check("dropout", "inp", &p, c.inp, c.n, di);
        int ok = 1;
        for (int64_t i = 0; i < c.n; i++)
            ok &= c.mask[i] ? fabsf(c.out[i] - c.inp[i] / 0.7f) < 1e-6f : c.out[i] == 0.0f;
        CHECK(ok, "dropout: kept values scaled by 1/(1-p), dropped are 0");
        free(c.out), free(c.inp), free(c.mask), free(R), free(di);

        int64_t big = 200000;
        uint8_t *m1 = malloc((size_t)big), *m2 = malloc((size_t)big), *m3 = malloc((size_t)big);
        ns_dropout_mask(m1, 0.3f, 12345, big);
        ns_dropout_mask(m2, 0.3f, 12345, big);
        ns_dropout_mask(m3, 0.3f, 12346, big);
        int64_t kept = 0, same = 0, diff = 0;
        for (int64_t i = 0; i < big; i++)
            kept += m1[i], same += m1[i] == m2[i], diff += m1[i] != m3[i];
        double frac = (double)kept / (double)big;
        CHECK(fabs(frac - 0.7) < 0.005, "dropout: keep fraction %.4f for p = 0.3", frac);
        CHECK(same == big && diff > big / 4, "dropout: same seed same mask, next seed different "
                                             "(%lld of %lld differ)",
              (long long)diff, (long long)big);
        ns_dropout_mask(m1, 0.0f, 1, 1000);
        ns_dropout_mask(m2, 1.0f, 1, 1000);
        kept = 0;
        for (int i = 0; i < 1000; i++) kept += m1[i] - m2[i];
        CHECK(kept == 1000, "dropout: p = 0 keeps all, p = 1 drops all");
        free(m1), free(m2), free(m3);
    }
    {
        emb_ctx c = {.N = 7, .D = 4};
        int64_t V = 5;
        int32_t ids[7] = {3, 0, 3, 4, 1, 3, 0};
        c.ids = ids;
        c.out = falloc(c.N * c.D), c.table = frand(V * c.D, -1, 1);
        float *R = frand(c.N * c.D, -1, 1), *dt = gbuf(V * c.D);
        emb_fwd(&c);
        CHECK(c.out[2 * c.D + 1] == c.table[3 * c.D + 1], "embedding: row 2 is table row 3");
        ns_embedding_backward(dt, R, c.ids, c.N, c.D);
        fd_problem p = {emb_fwd, &c, c.out, c.N * c.D, R};
        fd_check("embedding", "table", &p, c.table, V * c.D, dt);
        ns_err err;
        CHECK(ns_check_class_ids(ids, 7, 5, &err) == 0 && ns_check_class_ids(ids, 7, 4, &err) != 0,
              "check_class_ids: 4 is outside [0, 4) (%s)", err.msg);
        free(c.out), free(c.table), free(R), free(dt);
    }
}

// ----------------------------------------------------------------------------
// losses

enum { CE, BCE, MSE };

typedef struct {
    float loss, *logits, *t, *w;
    int32_t *targets;
    float smoothing;
    int64_t N, K;
    int which;
} loss_ctx;

static void loss_fwd(void *v) {
    loss_ctx *c = v;
    switch (c->which) {
    case CE:
        c->loss =
            ns_softmax_ce_forward(NULL, c->logits, c->targets, c->w, c->smoothing, c->N, c->K);
        break;
    case BCE: c->loss = ns_bce_logits_forward(c->logits, c->t, c->w, c->N * c->K); break;
    case MSE: c->loss = ns_mse_forward(c->logits, c->t, c->N * c->K); break;
    }
}

static void test_loss(void) {
    // hand values: logits [1,2,3] target 2 and [0,0,0] target 0, eps 0.1, w [2, 0.5]
    {
        float z[6] = {1, 2, 3, 0, 0, 0}, w[2] = {2.0f, 0.5f}, losses[2], dz[6] = {0};
        int32_t t[2] = {2, 0};
        float L = ns_softmax_ce_forward(losses, z, t, w, 0.1f, 2, 3);
        float wl[2] = {0.5076059644443801f, 1.0986122886681098f};
        check_close("softmax_ce: smoothed per-sample losses, hand values", losses, wl, 2, 1e-6);
        CHECK(fabs(L - 0.7822590366114075) < 1e-6,
              "softmax_ce: weighted mean sum(w l)/N = %.7f (want 0.7822590)", L);
        L = ns_softmax_ce_forward(losses, z, t, NULL, 0.0f, 2, 3);
        CHECK(fabs(losses[0] - 0.40760596444438013) < 1e-6 &&
                  fabs(L - (0.40760596444438013 + 1.0986122886681098) / 2) < 1e-6,
              "softmax_ce: unsmoothed loss %.7f (want 0.4076060)", losses[0]);
        ns_softmax_ce_backward(dz, 1.0f, z, t, w, 0.1f, 2, 3);
        float wd[3] = {-0.15f, 0.075f, 0.075f}; // 0.5/2 * (1/3 - q), q = (.9333, .0333, .0333)
        check_close("softmax_ce: uniform row gradient w/N (p - q), hand values", dz + 3, wd, 3,
                    1e-6);
        float big[3] = {1000, 0, -1000};
        int32_t t0 = 0;
        L = ns_softmax_ce_forward(NULL, big, &t0, NULL, 0.0f, 1, 3);
        CHECK(L == 0.0f && isfinite(L), "softmax_ce: logits of 1000 do not overflow (%g)", L);

        float x[3] = {0, 3, -100}, y[3] = {1, 0, 0};
        L = ns_bce_logits_forward(x, y, NULL, 1);
        CHECK(fabs(L - 0.6931471805599453) < 1e-6, "bce_logits: x 0 y 1 gives log 2 (%.7f)", L);
        L = ns_bce_logits_forward(x + 1, y + 1, NULL, 2);
        CHECK(fabs(L - 3.048587351573742 / 2) < 1e-6,
              "bce_logits: x 3 y 0 and x -100 y 0 average %.7f (want 1.5242937)", L);
        x[0] = 200;
        L = ns_bce_logits_forward(x, y + 1, NULL, 1);
        CHECK(L == 200.0f, "bce_logits: x 200 y 0 gives 200 without overflow (%g)", L);
    }
    for (int which = CE; which <= MSE; which++) {
        for (int variant = 0; variant < (which == MSE ? 1 : 2); variant++) {
            loss_ctx c = {.N = 4, .K = 5, .which = which};
            int64_t n = c.N * c.K;
            c.logits = frand(n, -2, 2);
            c.t = frand(n, 0, 1);
            int32_t targets[4] = {1, 4, 0, 1};
            c.targets = targets;
            if (variant) { // smoothing and weights
                c.smoothing = 0.1f;
                c.w = frand(which == CE ? c.N : n, 0.2f, 1.8f);
            }
            float r = urand(0.5f, 2.0f), *dz = gbuf(n), *dt = gbuf(n);
            const char *op = which == MSE ? "mse"
                             : which == BCE ? (variant ? "bce_logits (weights)" : "bce_logits")
                             : variant      ? "softmax_ce (smoothing, weights)"
                                            : "softmax_ce";
            loss_fwd(&c);
            switch (which) {
            case CE:
                ns_softmax_ce_backward(dz, r, c.logits, c.targets, c.w, c.smoothing, c.N, c.K);
                break;
            case BCE: ns_bce_logits_backward(dz, dt, r, c.logits, c.t, c.w, n); break;
            case MSE: ns_mse_backward(dz, dt, r, c.logits, c.t, n); break;
            }
            fd_problem p = {loss_fwd, &c, &c.loss, 1, &r};
            fd_check(op, "logits", &p, c.logits, n, dz);
            if (which != CE) fd_check(op, "targets", &p, c.t, n, dt);
            free(c.logits), free(c.t), free(c.w), free(dz), free(dt);
        }
    }
}

// ----------------------------------------------------------------------------
// thread-count independence of the reductions

static void test_threads(void) {
    int64_t N = 8, C = 16, S = 1024, n = N * C * S, V = 7;
    float *x = frand(n, -1, 1), *dy = frand(n, -1, 1), *w = frand(C, 0.5f, 1.5f);
    float *b = frand(C, -1, 1), *mean = falloc(C), *rstd = falloc(C), *rm = falloc(C);
    float *rv = falloc(C), *lm = falloc(N * C), *lr = falloc(N * C);
    int32_t *ids = malloc((size_t)(N * C) * sizeof(int32_t));
    for (int64_t i = 0; i < N * C; i++) ids[i] = (int32_t)(i * 5 % V);
    // per thread count: BN out, BN dx, LN out, LN dx, BN dw+db, LN dw+db, embedding dtable
    int64_t sizes[7] = {n, n, n, n, 2 * C, 2 * S, V * S};
    float *r[2][7];
    int threads[2] = {1, 2}, saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(threads[t]);
        for (int k = 0; k < 7; k++) r[t][k] = falloc(sizes[k]);
        ns_batchnorm_forward(r[t][0], mean, rstd, rm, rv, x, w, b, N, C, S, 1, 0.1f, 1e-5f);
        ns_batchnorm_backward(r[t][1], r[t][4], r[t][4] + C, dy, x, mean, rstd, w, N, C, S, 1);
        ns_layernorm_forward(r[t][2], lm, lr, x, NULL, NULL, N * C, S, 1e-5f);
        ns_layernorm_backward(r[t][3], r[t][5], r[t][5] + S, dy, x, lm, lr, NULL, N * C, S);
        ns_embedding_backward(r[t][6], dy, ids, N * C, S);
    }
    omp_set_num_threads(saved);
    int same = 1;
    for (int k = 0; k < 7; k++) same &= !memcmp(r[0][k], r[1][k], (size_t)sizes[k] * sizeof(float));
    CHECK(same, "batchnorm, layernorm, embedding backward: 1 and 2 threads give identical bits");
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 7; k++) free(r[t][k]);
    free(x), free(dy), free(w), free(b), free(mean), free(rstd), free(rm), free(rv), free(lm);
    free(lr), free(ids);
}

int main(void) {
    // The finite-difference loops make tens of thousands of tiny sgemm calls;
    // with BLIS threads each pays a team start-up (and stalls when the machine
    // is busy), so BLIS runs on one thread here unless the caller says
    // otherwise. The OpenMP paths are exercised with 2 threads explicitly.
    setenv("NETSMITH_THREADS", "1", 0);
    ns_blas_init();
    double t0 = check_seconds();
    test_linear();
    test_norm();
    test_act();
    test_pool();
    test_misc();
    test_loss();
    test_threads();
    double secs = check_seconds() - t0;
    fd_summary();
    printf("# %.2f s\n", secs);
    return check_done();
}
