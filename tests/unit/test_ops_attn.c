// test_ops_attn.c: the transformer kernels of lib/nn/ops.h, forward against
// formulas written out here (or the convolution, for patches) and backward
// against finite differences (fd_check.h): softmax along an axis, GELU's
// tanh form, group norm, patches, class token, position embedding, token
// pooling (first, mean, end of text), and multi-head attention (self, causal, key padding, cross, and
// twin self-attention whose last heads read the partner sample).
#include "base/blas.h"
#include "check.h"
#include "nn/ops.h"

#include "fd_check.h"

// ----------------------------------------------------------------------------
// softmax

typedef struct {
    float *out, *inp;
    int64_t outer, L, inner;
} sm_ctx;

static void sm_fwd(void *v) {
    sm_ctx *c = v;
    ns_softmax_forward(c->out, c->inp, c->outer, c->L, c->inner);
}

static void test_softmax(void) {
    sm_ctx c = {.outer = 3, .L = 5, .inner = 4};
    int64_t n = c.outer * c.L * c.inner;
    c.out = falloc(n), c.inp = frand(n, -3, 3);
    float *R = frand(n, -1, 1), *want = falloc(n), *di = gbuf(n);
    sm_fwd(&c);
    for (int64_t o = 0; o < c.outer; o++)
        for (int64_t r = 0; r < c.inner; r++) {
            double s = 0;
            for (int64_t j = 0; j < c.L; j++) s += exp(c.inp[(o * c.L + j) * c.inner + r]);
            for (int64_t j = 0; j < c.L; j++)
                want[(o * c.L + j) * c.inner + r] = (float)(exp(c.inp[(o * c.L + j) * c.inner + r]) / s);
        }
    check_close("softmax: forward along the middle axis matches exp(x)/sum", c.out, want, n, 1e-6);
    ns_softmax_backward(di, R, c.out, c.outer, c.L, c.inner);
    fd_problem p = {sm_fwd, &c, c.out, n, R};
    fd_check("softmax", "inp", &p, c.inp, n, di);
    float big[3] = {1000, 1001, 1002}, y[3];
    ns_softmax_forward(y, big, 1, 3, 1);
    CHECK(isfinite(y[0]) && fabsf(y[0] + y[1] + y[2] - 1) < 1e-6f, "softmax: large inputs do not overflow");
    free(c.out), free(c.inp), free(R), free(want), free(di);
}

// ----------------------------------------------------------------------------
// gelu: the tanh form, and the exact form's accuracy

typedef struct {
    float *out, *inp;
    int64_t n;
} act_ctx;

static void gelu_tanh_fwd(void *v) {
    act_ctx *c = v;
    ns_gelu_tanh_forward(c->out, c->inp, c->n);
}

static void test_gelu_tanh(void) {
    act_ctx c = {.n = 64};
    c.out = falloc(c.n), c.inp = frand(c.n, -4, 4);
    float *R = frand(c.n, -1, 1), *di = gbuf(c.n), want[3];
    float x[3] = {-1, 1, 2.5f}, y[3];
    ns_gelu_tanh_forward(y, x, 3);
    for (int i = 0; i < 3; i++)
        want[i] = (float)(0.5 * x[i] * (1 + tanh(sqrt(2 / M_PI) * (x[i] + 0.044715 * pow(x[i], 3)))));
    check_close("gelu tanh: values at -1, 1, 2.5 match the formula", y, want, 3, 1e-6);
    gelu_tanh_fwd(&c);
    ns_gelu_tanh_backward(di, R, c.inp, c.n);
    fd_problem p = {gelu_tanh_fwd, &c, c.out, c.n, R};
    fd_check("gelu_tanh", "inp", &p, c.inp, c.n, di);
    free(c.out), free(c.inp), free(R), free(di);
    // the exact form's own Phi (op_act.c), against libm's erfc in double, on
    // [-6, 12]: relative to the value (the old 1 + erff(x) form lost every
    // digit below x = -4 to cancellation; this one keeps ~5), the derivative
    // relative to its larger term (it crosses 0 near x = -0.75)
    enum { NG = 24001 };
    float *gx = falloc(NG), *gy = falloc(NG), *gd = falloc(NG), *one = falloc(NG);
    for (int i = 0; i < NG; i++) {
        gx[i] = -6.0f + 0.00075f * (float)i;
        one[i] = 1;
    }
    ns_gelu_forward(gy, gx, NG);
    ns_gelu_backward(gd, one, gx, NG);
    double worst = 0, worst_d = 0;
    for (int i = 0; i < NG; i++) {
        double xv = gx[i], cdf = 0.5 * erfc(-xv / sqrt(2.0)), want = xv * cdf;
        double want_d = cdf + xv * exp(-0.5 * xv * xv) / sqrt(2 * M_PI);
        double pdf_term = xv * exp(-0.5 * xv * xv) / sqrt(2 * M_PI);
        worst = fmax(worst, fabs(gy[i] - want) / fmax(fabs(want), 1e-30));
        worst_d = fmax(worst_d, fabs(gd[i] - want_d) / fmax(cdf, fabs(pdf_term)));
    }
    CHECK(worst < 1e-5 && worst_d < 3e-6, "gelu exact: within 1e-5 (derivative 3e-6) of erfc in double on "
          "[-6, 12] (value %.1e, derivative %.1e)", worst, worst_d);
    free(gx), free(gy), free(gd), free(one);
}

// ----------------------------------------------------------------------------
// group norm

typedef struct {
    float *out, *mean, *rstd, *inp, *w, *b;
    int64_t N, C, S, G;
} gn_ctx;

static void gn_fwd(void *v) {
    gn_ctx *c = v;
    ns_groupnorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, c->S, c->G, 1e-5f);
}

static void test_groupnorm(void) {
    gn_ctx c = {.N = 2, .C = 6, .S = 5, .G = 3};
    int64_t n = c.N * c.C * c.S, CG = c.C / c.G;
    c.out = falloc(n), c.mean = falloc(c.N * c.G), c.rstd = falloc(c.N * c.G);
    c.inp = frand(n, -2, 2), c.w = frand(c.C, 0.5f, 1.5f), c.b = frand(c.C, -1, 1);
    float *R = frand(n, -1, 1), *want = falloc(n);
    gn_fwd(&c);
    for (int64_t s = 0; s < c.N; s++)
        for (int64_t g = 0; g < c.G; g++) {
            const float *x = c.inp + (s * c.C + g * CG) * c.S;
            double m = 0, v = 0;
            for (int64_t i = 0; i < CG * c.S; i++) m += x[i];
            m /= (double)(CG * c.S);
            for (int64_t i = 0; i < CG * c.S; i++) v += pow(x[i] - m, 2);
            v /= (double)(CG * c.S);
            for (int64_t i = 0; i < CG * c.S; i++) {
                int64_t ch = g * CG + i / c.S;
                want[(s * c.C + g * CG) * c.S + i] = (float)((x[i] - m) / sqrt(v + 1e-5) * c.w[ch] + c.b[ch]);
            }
        }
    check_close("groupnorm: forward matches the formula", c.out, want, n, 1e-5);
    float *di = gbuf(n), *dw = gbuf(c.C), *db = gbuf(c.C);
    ns_groupnorm_backward(di, dw, db, R, c.inp, c.mean, c.rstd, c.w, c.N, c.C, c.S, c.G);
    fd_problem p = {gn_fwd, &c, c.out, n, R};
    fd_check("groupnorm", "inp", &p, c.inp, n, di);
    fd_check("groupnorm", "weight", &p, c.w, c.C, dw);
    fd_check("groupnorm", "bias", &p, c.b, c.C, db);
    free(c.out), free(c.mean), free(c.rstd), free(c.inp), free(c.w), free(c.b), free(R), free(want);
    free(di), free(dw), free(db);
}

// ----------------------------------------------------------------------------
// patches (a patch embedding is patches, then a linear map)

typedef struct {
    float *out, *cols, *inp, *w, *b;
    int64_t N, C, H, W, P, D;
} pe_ctx;

static int64_t pe_tokens(const pe_ctx *c) { return (c->H / c->P) * (c->W / c->P); }

static void pe_fwd(void *v) {
    pe_ctx *c = v;
    ns_patches_forward(c->cols, c->inp, c->N, c->C, c->H, c->W, c->P);
    ns_linear_forward(c->out, c->cols, c->w, c->b, c->N * pe_tokens(c), c->C * c->P * c->P, c->D);
}

static void test_patches(void) {
    pe_ctx c = {.N = 2, .C = 2, .H = 7, .W = 9, .P = 3, .D = 4}; // 7x9: a row and columns left over
    int64_t T = pe_tokens(&c), K = c.C * c.P * c.P, nin = c.N * c.C * c.H * c.W, nout = c.N * T * c.D;
    c.inp = frand(nin, -1, 1), c.w = frand(c.D * K, -0.5f, 0.5f), c.b = frand(c.D, -0.5f, 0.5f);
    c.cols = falloc(c.N * T * K), c.out = falloc(nout);
    pe_fwd(&c);
    ns_conv2d_geom g = {c.N, c.C, c.H, c.W, c.D, c.P, c.P, c.P, c.P, 0, 0, 1, 1, 1, 0, 0};
    CHECK(ns_conv2d_geom_init(&g, NULL) == 0 && g.OH * g.OW == T, "patches: the grid of a stride-P convolution");
    float *scratch = falloc(ns_conv2d_scratch_floats(&g)), *conv = falloc(nout), *want = falloc(nout);
    ns_conv2d_forward(conv, scratch, c.inp, c.w, c.b, &g);
    for (int64_t s = 0; s < c.N; s++) // conv (N, D, T) -> tokens (N, T, D)
        for (int64_t d = 0; d < c.D; d++)
            for (int64_t t = 0; t < T; t++) want[(s * T + t) * c.D + d] = conv[(s * c.D + d) * T + t];
    check_close("patch embedding: patches then linear equal the stride-P convolution", c.out, want, nout, 1e-5);
    float *R = frand(nout, -1, 1), *dcols = falloc(c.N * T * K), *di = gbuf(nin);
    ns_linear_backward(dcols, NULL, NULL, R, c.cols, c.w, c.N * T, K, c.D);
    ns_patches_backward(di, dcols, c.N, c.C, c.H, c.W, c.P);
    fd_problem p = {pe_fwd, &c, c.out, nout, R};
    fd_check("patches", "inp", &p, c.inp, nin, di);
    free(c.inp), free(c.w), free(c.b), free(c.cols), free(c.out), free(scratch), free(conv), free(want);
    free(R), free(dcols), free(di);
}

// ----------------------------------------------------------------------------
// class token, position embedding, token pooling

typedef struct {
    float *out, *inp, *par;
    int64_t N, T, D;
    int which, mode; // 0 cls_token, 1 pos_embed, 2 token_pool (mode 2: par holds the ids, (N, T))
} tok_ctx;

static void tok_fwd(void *v) {
    tok_ctx *c = v;
    if (c->which == 0) ns_cls_token_forward(c->out, c->inp, c->par, c->N, c->T, c->D);
    else if (c->which == 1) ns_pos_embed_forward(c->out, c->inp, c->par, c->N, c->T, c->D);
    else if (c->mode == 2) ns_token_pool_eot_forward(c->out, c->inp, c->par, c->N, c->T, c->D);
    else ns_token_pool_forward(c->out, c->inp, c->mode, c->N, c->T, c->D);
}

static void test_tokens(void) {
    static const char *names[] = {"cls_token", "pos_embed", "token_pool first", "token_pool mean",
                                  "token_pool end of text"};
    for (int k = 0; k < 5; k++) {
        tok_ctx c = {.N = 3, .T = 4, .D = 5, .which = k < 2 ? k : 2, .mode = k < 2 ? 0 : k - 2};
        int64_t nin = c.N * c.T * c.D, npar = c.which == 0 ? c.D : c.mode == 2 ? c.N * c.T : c.T * c.D;
        int64_t nout = c.which == 0 ? c.N * (c.T + 1) * c.D : c.which == 1 ? nin : c.N * c.D;
        c.inp = frand(nin, -1, 1), c.par = frand(npar, -1, 1), c.out = falloc(nout);
        // ids: sample s ends its text at token (s + 1) % T; the largest id is there, repeated once after it
        static const int eot[3] = {1, 2, 3};
        for (int64_t s = 0; c.mode == 2 && s < c.N; s++)
            for (int64_t t = 0; t < c.T; t++) c.par[s * c.T + t] = t == eot[s] ? 9 : t < eot[s] ? (float)t : 0;
        float *R = frand(nout, -1, 1), *di = gbuf(nin), *dp = gbuf(npar);
        tok_fwd(&c);
        int ok = 1;
        for (int64_t s = 0; s < c.N; s++)
            for (int64_t e = 0; e < c.D; e++) {
                const float *x = c.inp + s * c.T * c.D;
                if (c.which == 0)
                    ok &= c.out[s * (c.T + 1) * c.D + e] == c.par[e] &&
                          c.out[s * (c.T + 1) * c.D + 2 * c.D + e] == x[c.D + e];
                else if (c.which == 1)
                    ok &= c.out[s * c.T * c.D + c.D + e] == x[c.D + e] + c.par[c.D + e];
                else {
                    double m = 0;
                    for (int64_t t = 0; t < c.T; t++) m += x[t * c.D + e];
                    double want = c.mode == 1 ? m / (double)c.T : c.mode == 2 ? x[eot[s] * c.D + e] : x[e];
                    ok &= fabs(c.out[s * c.D + e] - want) < 1e-6;
                }
            }
        CHECK(ok, "%s: forward values", names[k]);
        if (c.which == 0) ns_cls_token_backward(di, dp, R, c.N, c.T, c.D);
        else if (c.which == 1) ns_pos_embed_backward(di, dp, R, c.N, c.T, c.D);
        else if (c.mode == 2) ns_token_pool_eot_backward(di, R, c.par, c.N, c.T, c.D);
        else ns_token_pool_backward(di, R, c.mode, c.N, c.T, c.D);
        fd_problem p = {tok_fwd, &c, c.out, nout, R};
        fd_check(names[k], "inp", &p, c.inp, nin, di);
        if (c.which < 2) fd_check(names[k], "weight", &p, c.par, npar, dp);
        free(c.inp), free(c.par), free(c.out), free(R), free(di), free(dp);
    }
}

// ----------------------------------------------------------------------------
// attention

typedef struct {
    float *out, *saved, *x, *mem, *pad, *w_in, *b_in, *w_out, *b_out;
    ns_attn_geom g;
} at_ctx;

static void at_fwd(void *v) {
    at_ctx *c = v;
    ns_attention_forward(c->out, c->saved, c->x, c->g.self ? c->x : c->mem, c->pad, c->w_in, c->b_in, c->w_out,
                         c->b_out, &c->g);
}

// The definition, in double, one (sample, head, query) at a time.
static void naive_attention(float *out, const at_ctx *c) {
    const ns_attn_geom *g = &c->g;
    int64_t D = g->D, dh = D / g->Hd;
    const float *mem = g->self ? c->x : c->mem;
    double *q = calloc((size_t)(g->Tq * D), sizeof *q), *kk = calloc((size_t)(2 * g->Tk * D), sizeof *kk);
    double *vv = calloc((size_t)(2 * g->Tk * D), sizeof *vv), *ctx = calloc((size_t)(g->Tq * D), sizeof *ctx);
    double *p = calloc((size_t)g->Tk, sizeof *p);
    for (int64_t s = 0; s < g->N; s++) {
        for (int64_t t = 0; t < g->Tq; t++)
            for (int64_t o = 0; o < D; o++) {
                double a = c->b_in ? c->b_in[o] : 0;
                for (int64_t i = 0; i < D; i++) a += (double)c->w_in[o * D + i] * c->x[(s * g->Tq + t) * D + i];
                q[t * D + o] = a;
            }
        // keys and values of the sample itself (kk, vv) and of its partner
        // in the twin layout (kk + Tk D, vv + Tk D), for the cross heads
        for (int which = 0; which < 2; which++) {
            int64_t src = which ? (s + g->N / 2) % g->N : s;
            for (int64_t t = 0; t < g->Tk; t++)
                for (int64_t o = 0; o < D; o++) {
                    double a = c->b_in ? c->b_in[D + o] : 0, b = c->b_in ? c->b_in[2 * D + o] : 0;
                    for (int64_t i = 0; i < D; i++) {
                        a += (double)c->w_in[(D + o) * D + i] * mem[(src * g->Tk + t) * D + i];
                        b += (double)c->w_in[(2 * D + o) * D + i] * mem[(src * g->Tk + t) * D + i];
                    }
                    kk[(which * g->Tk + t) * D + o] = a;
                    vv[(which * g->Tk + t) * D + o] = b;
                }
        }
        for (int64_t h = 0; h < g->Hd; h++) {
            const int partner = h >= g->Hd - g->cross_heads;
            const double *k = kk + partner * g->Tk * D, *v = vv + partner * g->Tk * D;
            for (int64_t i = 0; i < g->Tq; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < g->Tk; j++) {
                    int masked = (g->causal && j > i) || (c->pad && c->pad[s * g->Tk + j] != 0);
                    double d = 0;
                    for (int64_t e = 0; e < dh; e++) d += q[i * D + h * dh + e] * k[j * D + h * dh + e];
                    p[j] = masked ? -INFINITY : d / sqrt((double)dh);
                    if (p[j] > mx) mx = p[j];
                }
                for (int64_t j = 0; j < g->Tk; j++) sum += p[j] = mx == -INFINITY ? 0 : exp(p[j] - mx);
                for (int64_t e = 0; e < dh; e++) {
                    double a = 0;
                    for (int64_t j = 0; j < g->Tk; j++) a += (sum > 0 ? p[j] / sum : 0) * v[j * D + h * dh + e];
                    ctx[i * D + h * dh + e] = a;
                }
            }
        }
        for (int64_t t = 0; t < g->Tq; t++)
            for (int64_t o = 0; o < D; o++) {
                double a = c->b_out ? c->b_out[o] : 0;
                for (int64_t i = 0; i < D; i++) a += (double)c->w_out[o * D + i] * ctx[t * D + i];
                out[(s * g->Tq + t) * D + o] = (float)a;
            }
    }
    free(q), free(kk), free(vv), free(ctx), free(p);
}

static void test_attention_case(const char *name, ns_attn_geom g, int with_pad, int with_bias) {
    at_ctx c = {.g = g};
    int64_t D = g.D, nx = g.N * g.Tq * D, nm = g.N * g.Tk * D;
    c.x = frand(nx, -1, 1);
    c.mem = g.self ? NULL : frand(nm, -1, 1);
    c.w_in = frand(3 * D * D, -0.6f, 0.6f), c.w_out = frand(D * D, -0.6f, 0.6f);
    c.b_in = with_bias ? frand(3 * D, -0.3f, 0.3f) : NULL;
    c.b_out = with_bias ? frand(D, -0.3f, 0.3f) : NULL;
    if (with_pad) { // sample s pads its last s keys; the last sample pads all but its first
        c.pad = falloc(g.N * g.Tk);
        for (int64_t s = 0; s < g.N; s++)
            for (int64_t j = 0; j < g.Tk; j++) c.pad[s * g.Tk + j] = j >= g.Tk - s || (s == g.N - 1 && j > 0);
    }
    c.saved = falloc(ns_attention_saved_floats(&g)), c.out = falloc(nx);
    float *want = falloc(nx), *R = frand(nx, -1, 1);
    at_fwd(&c);
    naive_attention(want, &c);
    char what[160];
    snprintf(what, sizeof what, "attention %s: forward matches the definition", name);
    check_close(what, c.out, want, nx, 2e-5);
    float *dx = gbuf(nx), *dm = g.self ? NULL : gbuf(nm), *dwi = gbuf(3 * D * D), *dwo = gbuf(D * D);
    float *dbi = with_bias ? gbuf(3 * D) : NULL, *dbo = with_bias ? gbuf(D) : NULL;
    float *scratch = falloc(ns_attention_scratch_floats(&g));
    ns_attention_backward(dx, dm, dwi, dbi, dwo, dbo, scratch, R, c.saved, c.x, g.self ? c.x : c.mem, c.w_in, c.w_out,
                          &g);
    fd_problem p = {at_fwd, &c, c.out, nx, R};
    snprintf(what, sizeof what, "attention %s", name);
    char *op = strdup(what);
    fd_check(op, "x", &p, c.x, nx, dx);
    if (dm) fd_check(op, "mem", &p, c.mem, nm, dm);
    fd_check(op, "in_proj_weight", &p, c.w_in, 3 * D * D, dwi);
    fd_check(op, "out_proj_weight", &p, c.w_out, D * D, dwo);
    if (with_bias) {
        fd_check(op, "in_proj_bias", &p, c.b_in, 3 * D, dbi);
        fd_check(op, "out_proj_bias", &p, c.b_out, D, dbo);
    }
    if (with_pad) { // the last sample's queries see one key: its value, projected
        int ok = 1;
        for (int64_t e = 0; e < nx; e++) ok &= isfinite(c.out[e]);
        CHECK(ok, "attention %s: masked keys give finite outputs", name);
    }
    free(c.x), free(c.mem), free(c.w_in), free(c.w_out), free(c.b_in), free(c.b_out), free(c.pad);
    free(c.saved), free(c.out), free(want), free(R), free(dx), free(dm), free(dwi), free(dwo), free(dbi);
    free(dbo), free(scratch);
    // op names stay referenced by the summary: leaked on purpose
}

static void test_attention(void) {
    test_attention_case("self, 2 heads", (ns_attn_geom){2, 4, 4, 6, 2, 0, 1, 0}, 0, 1);
    test_attention_case("self, causal, 3 heads, no bias", (ns_attn_geom){2, 5, 5, 6, 3, 1, 1, 0}, 0, 0);
    test_attention_case("self, key padding", (ns_attn_geom){3, 4, 4, 4, 2, 0, 1, 0}, 1, 1);
    test_attention_case("cross, Tq 3 Tk 5", (ns_attn_geom){2, 3, 5, 4, 2, 0, 0, 0}, 0, 1);
    test_attention_case("cross, key padding", (ns_attn_geom){2, 3, 4, 4, 1, 0, 0, 0}, 1, 1);
    // twin: 3 pairs, [x1 of each; x2 of each]; the last head(s) read the partner
    test_attention_case("twin, 4 heads, 1 cross", (ns_attn_geom){6, 3, 3, 8, 4, 0, 1, 1}, 0, 1);
    test_attention_case("twin, 2 heads, both cross, no bias", (ns_attn_geom){4, 4, 4, 4, 2, 0, 1, 2}, 0, 0);
}

int main(void) {
    setenv("NETSMITH_THREADS", "1", 0); // see test_ops.c: tiny sgemm calls
    ns_blas_init();
    test_softmax();
    test_gelu_tanh();
    test_groupnorm();
    test_patches();
    test_tokens();
    test_attention();
    fd_summary();
    return check_done();
}
