// test_ops.c: every op kernel of lib/nn/ops.h, forward and backward.
//
// Gradients: for each op, a scalar loss L = sum(out * R) with a fixed random R,
// so dL/dout = R is what backward receives. Each input and parameter is
// perturbed element by element and the central difference
// (L(x+h) - L(x-h)) / 2h, with L summed in double over the float forward, is
// compared with what backward accumulated. Gradient buffers start at ACC, not
// zero, to check that backward adds rather than overwrites. The error printed
// is max |analytic - numeric| / max(|analytic|, |numeric|, FD_FLOOR).
// Forward values: hand-computed tiny cases, and a naive convolution for every
// geometry (also at a size where the OpenMP paths engage). A summary of the
// worst error per op is printed at the end as TAP comments.
#include "nn/arch.h"
#include "base/blas.h"
#include "check.h"
#include "nn/engine.h"
#include "nn/model.h"
#include "nn/ops.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
// conv2d

static int64_t conv_in(const ns_conv2d_geom *g) { return g->N * g->C * g->H * g->W; }
static int64_t conv_out(const ns_conv2d_geom *g) { return g->N * g->OC * g->OH * g->OW; }
static int64_t conv_w(const ns_conv2d_geom *g) { return g->OC * (g->C / g->G) * g->KH * g->KW; }

// The reference: the definition, one output at a time, summed in double.
static void naive_conv_forward(float *out, const float *x, const float *w, const float *b,
                               const ns_conv2d_geom *g) {
    int64_t Cg = g->C / g->G, OCg = g->OC / g->G;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t oc = 0; oc < g->OC; oc++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    double s = b ? b[oc] : 0;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t kh = 0; kh < g->KH; kh++)
                            for (int64_t kw = 0; kw < g->KW; kw++) {
                                int64_t c = oc / OCg * Cg + ci;
                                int64_t ih = oh * g->SH - g->PH + kh * g->DH;
                                int64_t iw = ow * g->SW - g->PW + kw * g->DW;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                s += (double)x[((n * g->C + c) * g->H + ih) * g->W + iw] *
                                     w[((oc * Cg + ci) * g->KH + kh) * g->KW + kw];
                            }
                    out[((n * g->OC + oc) * g->OH + oh) * g->OW + ow] = (float)s;
                }
}

static void naive_conv_backward(float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, const ns_conv2d_geom *g) {
    int64_t Cg = g->C / g->G, OCg = g->OC / g->G;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t oc = 0; oc < g->OC; oc++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    float d = dy[((n * g->OC + oc) * g->OH + oh) * g->OW + ow];
                    db[oc] += d;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t kh = 0; kh < g->KH; kh++)
                            for (int64_t kw = 0; kw < g->KW; kw++) {
                                int64_t c = oc / OCg * Cg + ci;
                                int64_t ih = oh * g->SH - g->PH + kh * g->DH;
                                int64_t iw = ow * g->SW - g->PW + kw * g->DW;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                int64_t xi = ((n * g->C + c) * g->H + ih) * g->W + iw;
                                int64_t wi = ((oc * Cg + ci) * g->KH + kh) * g->KW + kw;
                                dx[xi] += d * w[wi];
                                dw[wi] += d * x[xi];
                            }
                }
}

typedef struct {
    ns_conv2d_geom g;
    float *out, *scratch, *inp, *w, *b;
} conv_ctx;

static void conv_fwd(void *v) {
    conv_ctx *c = v;
    ns_conv2d_forward(c->out, c->scratch, c->inp, c->w, c->b, &c->g);
}

// One geometry: forward against the naive reference, then every gradient by
// finite differences (small cases) or against the naive backward (large).
static void test_conv_case(const char *name, ns_conv2d_geom g, int with_bias, int fd) {
    ns_err err;
    if (ns_conv2d_geom_init(&g, &err) != 0) {
        CHECK(0, "conv2d %s: geometry rejected: %s", name, err.msg);
        return;
    }
    conv_ctx c = {.g = g};
    int64_t ni = conv_in(&g), no = conv_out(&g), nw = conv_w(&g);
    int64_t ns = ns_conv2d_scratch_floats(&g);
    c.out = falloc(no);
    c.scratch = ns ? falloc(ns) : NULL;
    c.inp = frand(ni, -1, 1);
    c.w = frand(nw, -1, 1);
    c.b = with_bias ? frand(g.OC, -1, 1) : NULL;
    float *want = falloc(no), *R = frand(no, -1, 1);
    conv_fwd(&c);
    naive_conv_forward(want, c.inp, c.w, c.b, &g);
    char what[160];
    snprintf(what, sizeof what, "conv2d %s: forward matches the naive reference (scratch %lld)",
             name, (long long)ns);
    check_close(what, c.out, want, no, 1e-4);

    float *di = gbuf(ni), *dw = gbuf(nw), *db = gbuf(g.OC);
    ns_conv2d_backward(di, dw, with_bias ? db : NULL, c.scratch, R, c.inp, c.w, &g);
    if (fd) {
        fd_problem p = {conv_fwd, &c, c.out, no, R};
        fd_check("conv2d", "inp", &p, c.inp, ni, di);
        fd_check("conv2d", "weight", &p, c.w, nw, dw);
        if (with_bias) fd_check("conv2d", "bias", &p, c.b, g.OC, db);
    } else {
        float *rdi = falloc(ni), *rdw = falloc(nw), *rdb = falloc(g.OC);
        naive_conv_backward(rdi, rdw, rdb, R, c.inp, c.w, &g);
        unacc(di, ni), unacc(dw, nw), unacc(db, g.OC);
        snprintf(what, sizeof what, "conv2d %s: dinp matches the naive backward", name);
        check_close(what, di, rdi, ni, 1e-3);
        snprintf(what, sizeof what, "conv2d %s: dweight matches the naive backward", name);
        check_close(what, dw, rdw, nw, 1e-3);
        if (with_bias) {
            snprintf(what, sizeof what, "conv2d %s: dbias matches the naive backward", name);
            check_close(what, db, rdb, g.OC, 1e-3);
        }
        free(rdi), free(rdw), free(rdb);
    }
    free(c.out), free(c.scratch), free(c.inp), free(c.w), free(c.b), free(want), free(R);
    free(di), free(dw), free(db);
}

#define GEOM(n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, grp)                          \
    (ns_conv2d_geom) {                                                                      \
        .N = n, .C = c, .H = h, .W = w, .OC = oc, .KH = kh, .KW = kw, .SH = sh, .SW = sw,   \
        .PH = ph, .PW = pw, .DH = dh, .DW = dw, .G = grp                                    \
    }

static void test_conv(void) {
    // hand-computed: x = 1..9 (3x3), w = [[1,0,0],[0,0,0],[0,0,-1]], pad 1, bias 0.5:
    // out[i][j] = x[i-1][j-1] - x[i+1][j+1] + 0.5
    {
        ns_conv2d_geom g = GEOM(1, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        ns_err err;
        int rc = ns_conv2d_geom_init(&g, &err);
        float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[9] = {1, 0, 0, 0, 0, 0, 0, 0, -1};
        float b = 0.5f, out[9];
        float want[9] = {-4.5f, -5.5f, 0.5f, -7.5f, -7.5f, 2.5f, 0.5f, 4.5f, 5.5f};
        float scratch[81];
        CHECK(rc == 0 && g.OH == 3 && g.OW == 3 && ns_conv2d_scratch_floats(&g) == 0,
              "conv2d: 3x3 pad 1 geometry is 3x3, direct path needs no scratch");
        // C == G == OC == 1 takes the direct path; G = 1 with C = 1 is depthwise too,
        // so also run it through im2col by making it 2 output channels.
        ns_conv2d_forward(out, scratch, x, w, &b, &g);
        check_close("conv2d: 1-channel 3x3 forward, hand values (direct path)", out, want, 9, 0);
        ns_conv2d_geom g2 = GEOM(1, 1, 3, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        rc = ns_conv2d_geom_init(&g2, &err);
        float w2[18], b2[2] = {0.5f, 0.5f}, out2[18];
        memcpy(w2, w, sizeof w), memcpy(w2 + 9, w, sizeof w);
        ns_conv2d_forward(out2, scratch, x, w2, b2, &g2);
        check_close("conv2d: 1-channel 3x3 forward, hand values (im2col path)", out2, want, 9, 0);
        check_close("conv2d: second output channel equal", out2 + 9, want, 9, 0);
    }
    // geometry errors
    {
        ns_err err;
        ns_conv2d_geom g = GEOM(1, 3, 5, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 2);
        CHECK(ns_conv2d_geom_init(&g, &err) != 0 && strstr(err.msg, "groups"),
              "conv2d: groups not dividing channels refused (%s)", err.msg);
        g = GEOM(1, 1, 2, 2, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1);
        CHECK(ns_conv2d_geom_init(&g, &err) != 0, "conv2d: kernel larger than input refused (%s)",
              err.msg);
        g = GEOM(1, 1, 5, 5, 1, 3, 3, 0, 1, 0, 0, 1, 1, 1);
        CHECK(ns_conv2d_geom_init(&g, &err) != 0, "conv2d: stride 0 refused (%s)", err.msg);
    }
    //                         N  C  H  W OC KH KW SH SW PH PW DH DW G
    test_conv_case("s2 p1 d2 g3", GEOM(2, 3, 5, 5, 6, 3, 3, 2, 2, 1, 1, 2, 2, 3), 1, 1);
    test_conv_case("g1 3x3 p1", GEOM(2, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1, 1);
    test_conv_case("g2 3x2 s(2,1) p(1,0) d(1,2)", GEOM(2, 4, 5, 6, 6, 3, 2, 2, 1, 1, 0, 1, 2, 2),
                   0, 1);
    test_conv_case("depthwise 3x3 p1", GEOM(2, 3, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3), 1, 1);
    test_conv_case("depthwise s2 p1 d2", GEOM(2, 3, 5, 5, 3, 3, 3, 2, 2, 1, 1, 2, 2, 3), 1, 1);
    test_conv_case("depthwise x2 multiplier", GEOM(2, 3, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3), 1,
                   1);
    test_conv_case("1x1 fast path", GEOM(2, 3, 5, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1), 1, 1);
    test_conv_case("1x1 fast path g3", GEOM(2, 6, 4, 5, 3, 1, 1, 1, 1, 0, 0, 1, 1, 3), 1, 1);
    test_conv_case("1x1 stride 2 (im2col)", GEOM(2, 3, 5, 5, 4, 1, 1, 2, 2, 0, 0, 1, 1, 1), 1, 1);
    test_conv_case("wide pad 2", GEOM(1, 2, 4, 3, 2, 3, 3, 1, 2, 2, 2, 1, 1, 1), 1, 1);
    // big enough that im2col/col2im, bias and the direct path run multithreaded
    int saved = omp_get_max_threads();
    omp_set_num_threads(2);
    test_conv_case("large 3x3", GEOM(2, 8, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1, 0);
    test_conv_case("large 1x1", GEOM(2, 16, 32, 32, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1), 1, 0);
    test_conv_case("large depthwise", GEOM(2, 32, 32, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, 32), 1, 0);
    // rows wide enough for the vectorised stride-2 copies (phase split, dinp scatter)
    test_conv_case("large 3x3 stride 2", GEOM(2, 16, 40, 41, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1), 1, 0);
    test_conv_case("large 1x1 stride 2", GEOM(2, 16, 40, 40, 32, 1, 1, 2, 2, 0, 0, 1, 1, 1), 0, 0);
    omp_set_num_threads(saved);
}

// ----------------------------------------------------------------------------
// Winograd F(4x4, 3x3) (op_winograd.c) against the naive convolution and the
// direct path, on geometries that reach it (3x3, stride 1, 16k channels):
// whole and partial tiles, padding 0..2, 1 to 5 vectors of output channels.

// max |got - want| / rms(want)
static double rms_err(const float *got, const float *want, int64_t n) {
    double ss = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)want[i] * want[i];
    double rms = sqrt(ss / (double)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]) / (rms > 0 ? rms : 1);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

static double wino_worst_fwd, wino_worst_dinp, direct_worst_fwd, direct_worst_dinp;
static double wino_worst_dw, direct_worst_dw;

#define WINO_TOL 5e-5 // max error over the rms output; measured ~1e-5 (direct: ~1e-6)

static void test_wino_case(const char *name, ns_conv2d_geom g) {
    ns_err err;
    if (ns_conv2d_geom_init(&g, &err) != 0) {
        CHECK(0, "winograd %s: geometry rejected: %s", name, err.msg);
        return;
    }
    ns_conv2d_set_winograd(3);
    CHECK(ns_wino_usable(&g) && ns_wino_dinp_usable(&g) && ns_wino_dweight_usable(&g),
          "winograd %s: the geometry takes the Winograd path", name);
    int64_t ni = conv_in(&g), no = conv_out(&g), nw = conv_w(&g);
    float *scratch = falloc(ns_conv2d_scratch_floats(&g));
    float *x = frand(ni, -1, 1), *w = frand(nw, -1, 1), *b = frand(g.OC, -1, 1);
    float *dy = frand(no, -1, 1);
    float *out_w = falloc(no), *out_d = falloc(no), *want = falloc(no);
    float *di_w = gbuf(ni), *di_d = gbuf(ni), *rdi = falloc(ni), *rdw = falloc(nw), *rdb = falloc(g.OC);
    float *dw_w = gbuf(nw), *dw_d = gbuf(nw), *di_o = frand(ni, -9, 9), *di_z = falloc(ni);
    naive_conv_forward(want, x, w, b, &g);
    naive_conv_backward(rdi, rdw, rdb, dy, x, w, &g);
    ns_conv2d_forward(out_w, scratch, x, w, b, &g);
    ns_conv2d_backward(di_w, dw_w, NULL, scratch, dy, x, w, &g);
    ns_conv2d_backward_ex(di_o, NULL, NULL, scratch, dy, x, w, &g, 1); // overwrite: garbage before
    ns_conv2d_backward(di_z, NULL, NULL, scratch, dy, x, w, &g);         // onto zero
    ns_conv2d_set_winograd(0);
    CHECK(!ns_wino_usable(&g), "winograd %s: switched off, the direct path runs", name);
    ns_conv2d_forward(out_d, scratch, x, w, b, &g);
    ns_conv2d_backward(di_d, dw_d, NULL, scratch, dy, x, w, &g);
    ns_conv2d_set_winograd(-1);
    unacc(di_w, ni), unacc(di_d, ni), unacc(dw_w, nw), unacc(dw_d, nw);
    double ef = rms_err(out_w, want, no), ed = rms_err(out_d, want, no);
    double eb = rms_err(di_w, rdi, ni), ebd = rms_err(di_d, rdi, ni);
    wino_worst_fwd = fmax(wino_worst_fwd, ef), direct_worst_fwd = fmax(direct_worst_fwd, ed);
    wino_worst_dinp = fmax(wino_worst_dinp, eb), direct_worst_dinp = fmax(direct_worst_dinp, ebd);
    CHECK(ef <= WINO_TOL, "winograd %s: forward matches the naive convolution (err/rms %.2e; direct path %.2e)",
          name, ef, ed);
    CHECK(rms_err(out_w, out_d, no) <= WINO_TOL, "winograd %s: forward matches the direct path", name);
    CHECK(eb <= WINO_TOL, "winograd %s: dinp (accumulated) matches the naive backward (err/rms %.2e; direct path %.2e)",
          name, eb, ebd);
    int same = 1;
    for (int64_t i = 0; i < ni; i++) same &= di_o[i] == di_z[i];
    CHECK(same, "winograd %s: dinp overwritten equals dinp accumulated onto zero", name);
    double ew = rms_err(dw_w, rdw, nw), ewd = rms_err(dw_d, rdw, nw);
    wino_worst_dw = fmax(wino_worst_dw, ew), direct_worst_dw = fmax(direct_worst_dw, ewd);
    CHECK(ew <= WINO_TOL, "winograd %s: dweight (accumulated) matches the naive backward (err/rms %.2e; direct path %.2e)",
          name, ew, ewd);
    free(scratch), free(x), free(w), free(b), free(dy), free(out_w), free(out_d), free(want);
    free(di_w), free(di_d), free(rdi), free(rdw), free(rdb), free(dw_w), free(dw_d), free(di_o), free(di_z);
}

static void test_winograd(void) {
    //                                          N   C   H   W  OC KH KW SH SW PH PW DH DW G
    test_wino_case("16->16 28x28 p1", GEOM(2, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1));
    test_wino_case("16->32 7x7 p1", GEOM(3, 16, 7, 7, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1));
    test_wino_case("32->48 9x10 p(0,2)", GEOM(2, 32, 9, 10, 48, 3, 3, 1, 1, 0, 2, 1, 1, 1));
    test_wino_case("16->80 6x6 p2", GEOM(1, 16, 6, 6, 80, 3, 3, 1, 1, 2, 2, 1, 1, 1));
    test_wino_case("64->16 5x5 p1", GEOM(2, 64, 5, 5, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1));
    test_wino_case("16->64 3x3 p0 (one tile, one output)", GEOM(2, 16, 3, 3, 64, 3, 3, 1, 1, 0, 0, 1, 1, 1));
    // (No finite differences here: with h = 1e-2 the forward's rounding, ~1e-5
    // of the rms output, moves the differences by ~2e-2; the comparisons with
    // the naive convolution in double above are the stronger check.)
    printf("# winograd: worst error/rms over the cases: forward %.2e (direct %.2e), dinp %.2e "
           "(direct %.2e), dweight %.2e (direct %.2e)\n",
           wino_worst_fwd, direct_worst_fwd, wino_worst_dinp, direct_worst_dinp, wino_worst_dw,
           direct_worst_dw);
}

// ----------------------------------------------------------------------------
// fused paths: the convolution's epilogue, the batch-norm pieces and the
// overwriting backward kernels give the separate ops' results bit for bit
// (values equal: +0 and -0 count as the same)

static int same_values(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i])) return 0;
    return 1;
}

static void test_epilogue_case(const char *name, ns_conv2d_geom g, int with_bias) {
    ns_err err;
    if (ns_conv2d_geom_init(&g, &err) != 0) {
        CHECK(0, "epilogue %s: geometry rejected: %s", name, err.msg);
        return;
    }
    const int64_t ni = conv_in(&g), no = conv_out(&g), nw = conv_w(&g), OC = g.OC;
    const int64_t S = g.OH * g.OW;
    float *scratch = falloc(ns_conv2d_scratch_floats(&g));
    float *x = frand(ni, -1, 1), *w = frand(nw, -1, 1), *b = with_bias ? frand(OC, -1, 1) : NULL;
    float *bw = frand(OC, 0.5f, 1.5f), *bb = frand(OC, -1, 1), *rm = frand(OC, -0.5f, 0.5f);
    float *rv = frand(OC, 0.5f, 2.0f), *res = frand(no, -1, 1);
    float *conv = falloc(no), *bn = falloc(no), *sum = falloc(no), *out = falloc(no);
    float *mean = falloc(OC), *rstd = falloc(OC), *mean2 = falloc(OC), *rstd2 = falloc(OC);
    // the separate ops
    ns_conv2d_forward(conv, scratch, x, w, b, &g);
    ns_batchnorm_forward(bn, mean, rstd, rm, rv, conv, bw, bb, g.N, OC, S, 0, 0.1f, 1e-5f);
    ns_add_forward(sum, bn, res, no);
    ns_relu_forward(out, sum, no);
    // fused
    float *f_conv = falloc(no), *f_bn = falloc(no), *f_sum = falloc(no), *f_out = falloc(no);
    float *scale = falloc(OC), *shift = falloc(OC);
    double *ps = calloc((size_t)(g.N * OC * 2), sizeof(double));
    ns_batchnorm_eval_stats(mean2, rstd2, rm, rv, OC, 1e-5f);
    ns_batchnorm_affine(scale, shift, mean2, rstd2, bw, bb, OC);
    ns_conv2d_epilogue ep = {scale, shift, res, 1, f_conv, f_bn, f_sum, ps};
    ns_conv2d_forward_ex(f_out, scratch, x, w, b, &g, &ep);
    CHECK(same_values(f_conv, conv, no) && same_values(f_bn, bn, no) && same_values(f_sum, sum, no) &&
              same_values(f_out, out, no),
          "epilogue %s: conv, batch norm (eval), add, relu in the epilogue equal the separate ops, every stage", name);
    // only the final output stored; batch norm alone; relu alone
    ns_conv2d_epilogue ep2 = {scale, shift, res, 1, NULL, NULL, NULL, NULL};
    memset(f_out, 0, (size_t)no * sizeof(float));
    ns_conv2d_forward_ex(f_out, scratch, x, w, b, &g, &ep2);
    ns_conv2d_epilogue ep3 = {scale, shift, NULL, 0, NULL, NULL, NULL, NULL};
    ns_conv2d_forward_ex(f_bn, scratch, x, w, b, &g, &ep3);
    ns_conv2d_epilogue ep4 = {NULL, NULL, NULL, 1, NULL, NULL, NULL, NULL};
    ns_conv2d_forward_ex(f_sum, scratch, x, w, b, &g, &ep4);
    ns_relu_forward(sum, conv, no);
    CHECK(same_values(f_out, out, no) && same_values(f_bn, bn, no) && same_values(f_sum, sum, no),
          "epilogue %s: final output only, batch norm only, relu only", name);
    // training statistics from the epilogue's plane statistics
    float *rm1 = falloc(OC), *rv1 = falloc(OC), *rm2 = falloc(OC), *rv2 = falloc(OC);
    memcpy(rm1, rm, (size_t)OC * sizeof(float)), memcpy(rv1, rv, (size_t)OC * sizeof(float));
    memcpy(rm2, rm, (size_t)OC * sizeof(float)), memcpy(rv2, rv, (size_t)OC * sizeof(float));
    ns_batchnorm_forward(bn, mean, rstd, rm1, rv1, conv, bw, bb, g.N, OC, S, 1, 0.1f, 1e-5f);
    ns_batchnorm_stats(mean2, rstd2, rm2, rv2, ps, g.N, OC, S, 0.1f, 1e-5f);
    CHECK(same_values(mean, mean2, OC) && same_values(rstd, rstd2, OC) && same_values(rm1, rm2, OC) &&
              same_values(rv1, rv2, OC),
          "epilogue %s: batch statistics from the plane statistics equal the training forward's", name);
    free(scratch), free(x), free(w), free(b), free(bw), free(bb), free(rm), free(rv), free(res);
    free(conv), free(bn), free(sum), free(out), free(mean), free(rstd), free(mean2), free(rstd2);
    free(f_conv), free(f_bn), free(f_sum), free(f_out), free(scale), free(shift), free(ps);
    free(rm1), free(rv1), free(rm2), free(rv2);
}

static void test_bn_fused_case(int64_t N, int64_t C, int64_t S, int training) {
    const int64_t n = N * C * S;
    float *x = frand(n, -2, 2), *w = frand(C, 0.5f, 1.5f), *b = frand(C, -1, 1), *res = frand(n, -1, 1);
    float *rm = frand(C, -0.5f, 0.5f), *rv = frand(C, 0.5f, 2.0f), *dy = frand(n, -1, 1);
    float *mean = falloc(C), *rstd = falloc(C), *scale = falloc(C), *shift = falloc(C);
    float *bn = falloc(n), *sum = falloc(n), *out = falloc(n), *f_bn = falloc(n), *f_sum = falloc(n);
    float *f_out = falloc(n);
    ns_batchnorm_forward(bn, mean, rstd, rm, rv, x, w, b, N, C, S, training, 0.1f, 1e-5f);
    ns_add_forward(sum, bn, res, n);
    ns_relu_forward(out, sum, n);
    ns_batchnorm_affine(scale, shift, mean, rstd, w, b, C);
    ns_batchnorm_apply(f_out, f_bn, f_sum, x, scale, shift, res, 1, N, C, S);
    int ok = same_values(f_bn, bn, n) && same_values(f_sum, sum, n) && same_values(f_out, out, n);
    ns_batchnorm_apply(f_out, NULL, NULL, x, scale, shift, NULL, 0, N, C, S);
    ok &= same_values(f_out, bn, n);
    ns_batchnorm_apply(f_out, NULL, NULL, x, scale, shift, NULL, 1, N, C, S);
    ns_relu_forward(sum, bn, n);
    ok &= same_values(f_out, sum, n);
    CHECK(ok, "batchnorm (N %lld C %lld S %lld, %s): ns_batchnorm_apply with add and relu equals the separate ops",
          (long long)N, (long long)C, (long long)S, training ? "training" : "eval");
    // backward: relu, add, batch norm one by one (onto zero), against the
    // fused pass, accumulating (onto ACC) and overwriting (garbage before)
    float *g_sum = falloc(n), *g_bn = falloc(n), *g_x = falloc(n), *g_res = falloc(n);
    float *dw = falloc(C), *db = falloc(C), *dw2 = falloc(C), *db2 = falloc(C);
    ns_relu_backward(g_sum, dy, out, n);
    ns_add_backward(g_bn, g_res, g_sum, n);
    ns_batchnorm_backward(g_x, dw, db, g_bn, x, mean, rstd, w, N, C, S, training);
    float *f_x = gbuf(n), *f_res = gbuf(n);
    ns_batchnorm_backward_ex(f_x, dw2, db2, f_res, dy, out, NULL, x, mean, rstd, w, N, C, S, training, 0);
    unacc(f_x, n), unacc(f_res, n);
    // accumulation onto ACC rounds; against onto zero plus ACC...
    float *o_x = frand(n, -9, 9), *o_res = frand(n, -9, 9);
    memset(dw2, 0, (size_t)C * sizeof(float)), memset(db2, 0, (size_t)C * sizeof(float));
    ns_batchnorm_backward_ex(o_x, dw2, db2, o_res, dy, out, NULL, x, mean, rstd, w, N, C, S, training, 3);
    CHECK(same_values(o_x, g_x, n) && same_values(o_res, g_res, n) && same_values(dw2, dw, C) &&
              same_values(db2, db, C),
          "batchnorm (N %lld C %lld S %lld, %s): backward through relu and add in one pass (overwriting) equals the separate ops",
          (long long)N, (long long)C, (long long)S, training ? "training" : "eval");
    CHECK(check_maxdiff(f_x, g_x, n, NULL) < 1e-5 && check_maxdiff(f_res, g_res, n, NULL) < 1e-5,
          "batchnorm (N %lld C %lld S %lld): the one-pass backward accumulates", (long long)N,
          (long long)C, (long long)S);
    // batch norm then relu (no add): the mask recomputed from the input
    {
        float *r_out = falloc(n), *g_r = falloc(n), *g_x2 = falloc(n), *a_x = frand(n, -9, 9);
        float *dw3 = falloc(C), *db3 = falloc(C), *dw4 = falloc(C), *db4 = falloc(C);
        float *aff = falloc(2 * C);
        memcpy(aff, scale, (size_t)C * sizeof(float)), memcpy(aff + C, shift, (size_t)C * sizeof(float));
        ns_relu_forward(r_out, bn, n);
        ns_relu_backward(g_r, dy, r_out, n);
        ns_batchnorm_backward(g_x2, dw3, db3, g_r, x, mean, rstd, w, N, C, S, training);
        ns_batchnorm_backward_ex(a_x, dw4, db4, NULL, dy, NULL, aff, x, mean, rstd, w, N, C, S, training, 1);
        CHECK(same_values(a_x, g_x2, n) && same_values(dw3, dw4, C) && same_values(db3, db4, C),
              "batchnorm (N %lld C %lld S %lld, %s): backward through a relu whose mask is recomputed from the input equals the separate ops",
              (long long)N, (long long)C, (long long)S, training ? "training" : "eval");
        free(r_out), free(g_r), free(g_x2), free(a_x), free(dw3), free(db3), free(dw4), free(db4), free(aff);
    }
    // overwriting relu and add backward
    float *r1 = frand(n, -9, 9), *a1 = frand(n, -9, 9), *a2 = frand(n, -9, 9);
    ns_relu_backward_ex(r1, dy, out, n, 1);
    ns_add_backward_ex(a1, a2, g_sum, n, 3);
    ok = same_values(r1, g_sum, n) && same_values(a1, g_sum, n) && same_values(a2, g_sum, n);
    memset(a1, 0, (size_t)n * sizeof(float));
    ns_add_backward_ex(a1, a1, dy, n, 1); // the same buffer twice: dout + dout
    for (int64_t i = 0; i < n; i++) ok &= a1[i] == dy[i] + dy[i];
    CHECK(ok, "relu and add backward: overwriting equals accumulating onto zero");
    free(x), free(w), free(b), free(res), free(rm), free(rv), free(dy), free(mean), free(rstd);
    free(scale), free(shift), free(bn), free(sum), free(out), free(f_bn), free(f_sum), free(f_out);
    free(g_sum), free(g_bn), free(g_x), free(g_res), free(dw), free(db), free(dw2), free(db2);
    free(f_x), free(f_res), free(o_x), free(o_res), free(r1), free(a1), free(a2);
}

static void test_fused(void) {
    //                                                N   C   H   W  OC KH KW SH SW PH PW DH DW G
    test_epilogue_case("winograd", GEOM(3, 16, 9, 9, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1);
    test_epilogue_case("winograd, no bias", GEOM(2, 32, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1), 0);
    test_epilogue_case("packed 3x3", GEOM(2, 3, 9, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1);
    test_epilogue_case("packed stride 2", GEOM(2, 16, 9, 9, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1), 0);
    test_epilogue_case("packed 1x1 stride 2, groups", GEOM(2, 16, 8, 8, 32, 1, 1, 2, 2, 0, 0, 1, 1, 2), 1);
    test_epilogue_case("plain (tiny)", GEOM(1, 2, 3, 3, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1), 1);
    test_epilogue_case("direct (depthwise)", GEOM(2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4), 1);
    test_bn_fused_case(3, 5, 37, 1);
    test_bn_fused_case(2, 4, 1100, 1); // planes longer than a block
    test_bn_fused_case(3, 5, 37, 0);
}

// ----------------------------------------------------------------------------
// The engine's fusion (conv-bn-relu, conv-bn-add-relu groups) is invisible:
// resnet20 in the default and fused modes against the nodes run one by one
// with the separate kernels (gradients zeroed, accumulated).

typedef struct ref_run {
    float **act, **grad, **pgrad, **mean, **rstd;
} ref_run;

static void ref_forward(ns_model *m, ref_run *r, const float *x, int64_t N, int training,
                        float *scratch) {
    memcpy(r->act[0], x, (size_t)(N * m->nodes[0].numel) * sizeof(float));
    for (int i = 1; i <= m->output; i++) {
        const ns_node *n = &m->nodes[i], *in = &m->nodes[n->inputs[0]];
        float *out = r->act[i], *inp = r->act[n->inputs[0]];
        float *p[NS_MAX_PARAMS];
        for (int k = 0; k < NS_MAX_PARAMS; k++) p[k] = n->params[k] < 0 ? NULL : m->tensors[n->params[k]].t.data;
        switch (n->op) {
        case NS_OP_CONV2D: {
            const int64_t *a = n->iattr;
            ns_conv2d_geom g = {N, in->shape[0], in->shape[1], in->shape[2], a[0], a[1], a[1],
                                a[2], a[2], a[3], a[3], a[4], a[4], a[5], 0, 0};
            ns_conv2d_geom_init(&g, NULL);
            ns_conv2d_forward(out, scratch, inp, p[0], p[1], &g);
            break;
        }
        case NS_OP_BATCHNORM:
            ns_batchnorm_forward(out, r->mean[i], r->rstd[i], p[2], p[3], inp, p[0], p[1], N,
                                 n->shape[0], n->numel / n->shape[0], training,
                                 (float)n->fattr[1], (float)n->fattr[0]);
            break;
        case NS_OP_RELU: ns_relu_forward(out, inp, N * n->numel); break;
        case NS_OP_ADD: ns_add_forward(out, inp, r->act[n->inputs[1]], N * n->numel); break;
        case NS_OP_GLOBAL_AVGPOOL:
            ns_global_avgpool_forward(out, inp, N, in->shape[0], in->numel / in->shape[0]);
            break;
        case NS_OP_LINEAR: ns_linear_forward(out, inp, p[0], p[1], N, in->numel, n->numel); break;
        default: break;
        }
    }
}

static void ref_backward(ns_model *m, ref_run *r, const float *dout, int64_t N, int training,
                         float *scratch) {
    for (int i = 0; i <= m->output; i++)
        memset(r->grad[i], 0, (size_t)(N * m->nodes[i].numel) * sizeof(float));
    for (int t = 0; t < m->ntensors; t++)
        if (r->pgrad[t]) memset(r->pgrad[t], 0, (size_t)m->tensors[t].t.numel * sizeof(float));
    memcpy(r->grad[m->output], dout, (size_t)(N * m->nodes[m->output].numel) * sizeof(float));
    for (int i = m->output; i >= 1; i--) {
        const ns_node *n = &m->nodes[i], *in = &m->nodes[n->inputs[0]];
        float *dy = r->grad[i], *inp = r->act[n->inputs[0]], *di = r->grad[n->inputs[0]];
        float *p[NS_MAX_PARAMS], *pg[NS_MAX_PARAMS];
        for (int k = 0; k < NS_MAX_PARAMS; k++) {
            p[k] = n->params[k] < 0 ? NULL : m->tensors[n->params[k]].t.data;
            pg[k] = n->params[k] < 0 ? NULL : r->pgrad[n->params[k]];
        }
        switch (n->op) {
        case NS_OP_CONV2D: {
            const int64_t *a = n->iattr;
            ns_conv2d_geom g = {N, in->shape[0], in->shape[1], in->shape[2], a[0], a[1], a[1],
                                a[2], a[2], a[3], a[3], a[4], a[4], a[5], 0, 0};
            ns_conv2d_geom_init(&g, NULL);
            ns_conv2d_backward(di, pg[0], pg[1], scratch, dy, inp, p[0], &g);
            break;
        }
        case NS_OP_BATCHNORM:
            ns_batchnorm_backward(di, pg[0], pg[1], dy, inp, r->mean[i], r->rstd[i], p[0], N,
                                  n->shape[0], n->numel / n->shape[0], training);
            break;
        case NS_OP_RELU: ns_relu_backward(di, dy, r->act[i], N * n->numel); break;
        case NS_OP_ADD: ns_add_backward(di, r->grad[n->inputs[1]], dy, N * n->numel); break;
        case NS_OP_GLOBAL_AVGPOOL:
            ns_global_avgpool_backward(di, dy, N, in->shape[0], in->numel / in->shape[0]);
            break;
        case NS_OP_LINEAR: ns_linear_backward(di, pg[0], pg[1], dy, inp, p[0], N, in->numel, n->numel); break;
        default: break;
        }
    }
}

static void test_engine_fusion(void) {
    ns_model m;
    ns_err err;
    ns_model_init(&m);
    ns_arch_opts o = {.in_c = 1, .in_h = 12, .in_w = 12, .classes = 10, .width = 1};
    if (ns_arch_build(&m, "resnet20", &o, &err) < 0) {
        CHECK(0, "engine fusion: resnet20: %s", err.msg);
        return;
    }
    ns_model_init_params(&m, 3);
    const int64_t N = 5, nin = N * m.nodes[0].numel, nout = N * m.nodes[m.output].numel;
    float *x = frand(nin, -1, 1), *dout = frand(nout, -1, 1);
    // running statistics away from 0 and 1
    for (int t = 0; t < m.ntensors; t++) {
        ns_named_tensor *nt = &m.tensors[t];
        int rmean = strstr(nt->name, "running_mean") != NULL, rvar = strstr(nt->name, "running_var") != NULL;
        for (int64_t i = 0; (rmean || rvar) && i < nt->t.numel; i++)
            ((float *)nt->t.data)[i] = rmean ? urand(-0.2f, 0.2f) : urand(0.5f, 1.5f);
    }
    float **saved = calloc((size_t)(m.ntensors > 0 ? m.ntensors : 1), sizeof *saved);
    for (int t = 0; t < m.ntensors; t++) {
        saved[t] = falloc(m.tensors[t].t.numel);
        memcpy(saved[t], m.tensors[t].t.data, (size_t)m.tensors[t].t.numel * sizeof(float));
    }
    // the reference
    ref_run r;
    int nn = m.nnodes;
    r.act = calloc((size_t)(nn > 0 ? nn : 1), sizeof *r.act), r.grad = calloc((size_t)(nn > 0 ? nn : 1), sizeof *r.grad);
    r.mean = calloc((size_t)(nn > 0 ? nn : 1), sizeof *r.mean), r.rstd = calloc((size_t)(nn > 0 ? nn : 1), sizeof *r.rstd);
    r.pgrad = calloc((size_t)(m.ntensors > 0 ? m.ntensors : 1), sizeof *r.pgrad);
    int64_t smax = 1;
    for (int i = 0; i < nn; i++) {
        r.act[i] = falloc(N * m.nodes[i].numel), r.grad[i] = falloc(N * m.nodes[i].numel);
        r.mean[i] = falloc(m.nodes[i].shape[0]), r.rstd[i] = falloc(m.nodes[i].shape[0]);
        if (m.nodes[i].op == NS_OP_CONV2D) {
            const ns_node *n = &m.nodes[i], *in = &m.nodes[n->inputs[0]];
            const int64_t *a = n->iattr;
            ns_conv2d_geom g = {N, in->shape[0], in->shape[1], in->shape[2], a[0], a[1], a[1],
                                a[2], a[2], a[3], a[3], a[4], a[4], a[5], 0, 0};
            ns_conv2d_geom_init(&g, NULL);
            int64_t s = ns_conv2d_scratch_floats(&g);
            if (s > smax) smax = s;
        }
    }
    for (int t = 0; t < m.ntensors; t++)
        if (m.tensors[t].trainable) r.pgrad[t] = falloc(m.tensors[t].t.numel);
    float *scratch = falloc(smax);
    float *ref_eval = falloc(nout), *ref_train = falloc(nout);
    ref_forward(&m, &r, x, N, 0, scratch);
    memcpy(ref_eval, r.act[m.output], (size_t)nout * sizeof(float));
    float **ref_eval_act = calloc((size_t)(nn > 0 ? nn : 1), sizeof *ref_eval_act);
    for (int i = 0; i < nn; i++) {
        ref_eval_act[i] = falloc(N * m.nodes[i].numel);
        memcpy(ref_eval_act[i], r.act[i], (size_t)(N * m.nodes[i].numel) * sizeof(float));
    }
    ref_forward(&m, &r, x, N, 1, scratch);
    memcpy(ref_train, r.act[m.output], (size_t)nout * sizeof(float));
    ref_backward(&m, &r, dout, N, 1, scratch);
    float **ref_stats = calloc((size_t)(m.ntensors > 0 ? m.ntensors : 1), sizeof *ref_stats);
    for (int t = 0; t < m.ntensors; t++) {
        ref_stats[t] = falloc(m.tensors[t].t.numel);
        memcpy(ref_stats[t], m.tensors[t].t.data, (size_t)m.tensors[t].t.numel * sizeof(float));
    }
    for (int fused = 0; fused <= 1; fused++) {
        for (int t = 0; t < m.ntensors; t++)
            memcpy(m.tensors[t].t.data, saved[t], (size_t)m.tensors[t].t.numel * sizeof(float));
        ns_engine e;
        if (ns_engine_init(&e, &m, N, 1, &err) < 0) {
            CHECK(0, "engine fusion: init: %s", err.msg);
            break;
        }
        e.want_input_grad = 1;
        ns_engine_set_fused(&e, fused);
        int keep = -1; // a batch norm inside a group: kept
        for (int i = 0; i < nn && keep < 0; i++)
            if (m.nodes[i].op == NS_OP_BATCHNORM && strstr(m.nodes[i].name, "layer2.1.bn1")) keep = i;
        if (fused) ns_engine_keep(&e, keep);
        const char *mode = fused ? "fused mode" : "default mode";
        const float *out = ns_engine_forward(&e, x, N, 0, &err);
        int all = 1;
        for (int i = 0; i < nn && !fused; i++) // fused mode: inner nodes have no act[]
            all &= same_values(e.act[i], ref_eval_act[i], N * m.nodes[i].numel);
        CHECK(out && same_values(out, ref_eval, nout), "engine fusion, %s: eval output equals the ops run one by one", mode);
        if (!fused) CHECK(all, "engine fusion, default mode: every node's eval activations equal the ops run one by one");
        else CHECK(keep > 0 && same_values(e.act[keep], ref_eval_act[keep], N * m.nodes[keep].numel),
                   "engine fusion, fused mode: a kept node's activations (%s) are written", keep > 0 ? m.nodes[keep].name : "?");
        ns_engine_zero_grad(&e);
        out = ns_engine_forward(&e, x, N, 1, &err);
        CHECK(out && same_values(out, ref_train, nout), "engine fusion, %s: training output equals the ops run one by one", mode);
        ns_engine_backward(&e, dout);
        int pg = 1, st = 1;
        for (int t = 0; t < m.ntensors; t++) {
            if (e.param_grad[t]) pg &= same_values(e.param_grad[t], r.pgrad[t], m.tensors[t].t.numel);
            st &= same_values(m.tensors[t].t.data, ref_stats[t], m.tensors[t].t.numel);
        }
        CHECK(pg, "engine fusion, %s: parameter gradients equal the ops run one by one", mode);
        CHECK(same_values(e.grad[0], r.grad[0], nin), "engine fusion, %s: input gradient equals the ops run one by one", mode);
        CHECK(st, "engine fusion, %s: running statistics equal the ops run one by one", mode);
        if (!fused) {
            all = 1;
            for (int i = 0; i <= m.output; i++) all &= same_values(e.grad[i], r.grad[i], N * m.nodes[i].numel);
            CHECK(all, "engine fusion, default mode: every node's gradient equals the ops run one by one");
        }
        ns_engine_free(&e);
    }
    for (int i = 0; i < nn; i++) {
        free(r.act[i]), free(r.grad[i]), free(r.mean[i]), free(r.rstd[i]), free(ref_eval_act[i]);
    }
    for (int t = 0; t < m.ntensors; t++) free(r.pgrad[t]), free(saved[t]), free(ref_stats[t]);
    free(r.act), free(r.grad), free(r.mean), free(r.rstd), free(r.pgrad), free(saved), free(ref_stats);
    free(ref_eval_act), free(scratch), free(ref_eval), free(ref_train), free(x), free(dout);
    ns_model_free(&m);
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
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    test_linear();
    test_conv();
    test_winograd();
    test_fused();
    test_engine_fusion();
    test_norm();
    test_act();
    test_pool();
    test_misc();
    test_loss();
    test_threads();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fd_summary();
    printf("# %.2f s\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return check_done();
}
