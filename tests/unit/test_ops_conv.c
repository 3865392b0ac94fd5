// test_ops_conv.c: the convolution kernels of lib/nn/ops.h and the paths
// built on them, forward and backward. conv2d on every geometry (groups,
// depthwise, stride, padding, dilation, the 1x1 fast path) against a naive
// convolution summed in double, with gradients by finite differences
// (fd_check.h) on small cases and against the naive backward on large ones
// (where the OpenMP paths engage); Winograd F(4x4, 3x3) against the naive
// convolution and the direct path; the fused epilogue (conv, batch norm, add,
// relu), the fused batch-norm pieces and the overwriting backward kernels
// against the separate ops bit for bit; and the engine's conv-bn-relu fusion
// on resnet20 against the nodes run one by one. The other ops: test_ops.c.
#include "nn/arch.h"
#include "base/blas.h"
#include "check.h"
#include "nn/engine.h"
#include "nn/model.h"
#include "nn/ops.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "fd_check.h"

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

int main(void) {
    setenv("NETSMITH_THREADS", "1", 0); // see test_ops.c: tiny sgemm calls
    ns_blas_init();
    double t0 = check_seconds();
    test_conv();
    test_winograd();
    test_fused();
    test_engine_fusion();
    double secs = check_seconds() - t0;
    fd_summary();
    printf("# %.2f s\n", secs);
    return check_done();
}
