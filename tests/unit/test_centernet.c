// test_centernet.c: the detection ops (nearest upsampling, CenterNet's focal
// loss, masked L1) forward on hand-computed cases and backward against finite
// differences (fd_check.h), the upsample node in the engine, and the detector
// of lib/detect/centernet.h: its graph, Gaussian targets (radius, peaks of 1
// at centres), decoding the targets back into the boxes, the batch loss
// against the per-op losses, and a short training run on built-in shapes that
// must lower the loss.
#include "base/blas.h"
#include "check.h"
#include "detect/centernet.h"
#include "detect/synth.h"
#include "nn/engine.h"
#include "nn/model.h"
#include "nn/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fd_check.h"

// ----------------------------------------------------------------------------
// upsample

typedef struct {
    float *out, *inp;
    int64_t N, C, H, W, s;
} up_ctx;

static void up_fwd(void *v) {
    up_ctx *c = v;
    ns_upsample_nearest_forward(c->out, c->inp, c->N, c->C, c->H, c->W, c->s);
}

static void test_upsample(void) {
    float x[4] = {1, 2, 3, 4}, y[16];
    ns_upsample_nearest_forward(y, x, 1, 1, 2, 2, 2);
    float want[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    check_close("upsample: 2x2 -> 4x4 repeats each pixel", y, want, 16, 0);
    float g[4] = {0};
    ns_upsample_nearest_backward(g, want, 1, 1, 2, 2, 2);
    float gw[4] = {4, 8, 12, 16};
    check_close("upsample: backward sums each 2x2 block", g, gw, 4, 0);
    for (int s = 1; s <= 3; s++) {
        up_ctx c = {.N = 2, .C = 3, .H = 3, .W = 4, .s = s};
        int64_t n_in = c.N * c.C * c.H * c.W, n_out = n_in * s * s;
        c.inp = frand(n_in, -1, 1);
        c.out = falloc(n_out);
        float *R = frand(n_out, -1, 1), *di = gbuf(n_in);
        up_fwd(&c);
        ns_upsample_nearest_backward(di, R, c.N, c.C, c.H, c.W, c.s);
        fd_problem p = {up_fwd, &c, c.out, n_out, R};
        fd_check("upsample", "inp", &p, c.inp, n_in, di);
        free(c.inp); free(c.out); free(R); free(di);
    }
    // a large case: the threaded path gives the same sums
    up_ctx c = {.N = 4, .C = 16, .H = 24, .W = 24, .s = 2};
    int64_t n_in = c.N * c.C * c.H * c.W;
    c.inp = frand(n_in, -1, 1);
    c.out = falloc(n_in * 4);
    up_fwd(&c);
    int ok = 1;
    for (int64_t p = 0; p < c.N * c.C && ok; p++)
        for (int64_t y = 0; y < 48 && ok; y++)
            for (int64_t x = 0; x < 48; x++)
                if (c.out[p * 2304 + y * 48 + x] != c.inp[p * 576 + (y / 2) * 24 + x / 2]) { ok = 0; break; }
    CHECK(ok, "upsample: 4x16x24x24 forward is the nearest pixel everywhere");
    free(c.inp); free(c.out);
}

// ----------------------------------------------------------------------------
// focal loss and masked L1

typedef struct {
    float loss, *z, *y, *m;
    int64_t n;
    int l1;
} loss_ctx;

static void loss_fwd(void *v) {
    loss_ctx *c = v;
    c->loss = c->l1 ? ns_masked_l1_forward(c->z, c->y, c->m, c->n) : ns_focal_heatmap_forward(c->z, c->y, c->n, 2, 4, NULL);
}

static void test_focal(void) {
    // hand-computed: z = 0 (p = 0.5) at a centre, z = 0 where y = 0.5, z = ln 3 (p = 0.75) where y = 0
    float z[3] = {0, 0, logf(3)}, y[3] = {1, 0.5f, 0};
    int64_t P;
    float l = ns_focal_heatmap_forward(z, y, 3, 2, 4, &P);
    double want = -0.25 * log(0.5) - pow(0.5, 4) * 0.25 * log(0.5) - 0.5625 * log(0.25);
    CHECK(P == 1 && fabs(l - want) < 1e-6, "focal: hand-computed loss %.6f (want %.6f), 1 positive", l, want);
    float z2[2] = {-1, 1}, y2[2] = {0.2f, 0.0f};
    l = ns_focal_heatmap_forward(z2, y2, 2, 2, 4, &P);
    double p1 = 1 / (1 + exp(1.0)), p2 = 1 / (1 + exp(-1.0));
    want = -pow(0.8, 4) * p1 * p1 * log(1 - p1) - p2 * p2 * log(1 - p2);
    CHECK(P == 0 && fabs(l - want) < 1e-6, "focal: no positives, divided by 1 (%.6f, want %.6f)", l, want);
    float zc[2] = {20, -20}, yc[2] = {1, 0}, gc[2] = {0, 0};
    l = ns_focal_heatmap_forward(zc, yc, 2, 2, 4, NULL);
    ns_focal_heatmap_backward(gc, 1, zc, yc, 2, 2, 4);
    CHECK(fabs(l - 2 * 1e-8 * -log(1 - 1e-4)) < 1e-9 && gc[0] == 0 && gc[1] == 0,
          "focal: probabilities clamped to [1e-4, 1-1e-4], no gradient there (%g)", l);

    loss_ctx c = {.n = 300};
    c.z = frand(c.n, -3, 3);
    c.y = frand(c.n, 0, 0.95f);
    for (int64_t i = 0; i < c.n; i += 37) c.y[i] = 1;
    float R = 0.7f, *g = gbuf(c.n);
    loss_fwd(&c);
    ns_focal_heatmap_backward(g, R, c.z, c.y, c.n, 2, 4);
    fd_problem p = {loss_fwd, &c, &c.loss, 1, &R};
    fd_check("focal_heatmap", "logits", &p, c.z, c.n, g);
    // a large case: the chunked, threaded sum is the serial double sum
    int64_t big = 200000;
    float *zb = frand(big, -4, 4), *yb = frand(big, 0, 1);
    double s = 0;
    for (int64_t i = 0; i < big; i++) {
        double pp = 1 / (1 + exp(-(double)zb[i]));
        pp = fmin(fmax(pp, 1e-4), 1 - 1e-4);
        s += -pow(1 - yb[i], 4) * pp * pp * log(1 - pp);
    }
    l = ns_focal_heatmap_forward(zb, yb, big, 2, 4, NULL);
    CHECK(fabs(l - s) < 1e-5 * fabs(s), "focal: 200000 values, the loss is the serial sum (%.6f, %.6f)", l, s);
    free(zb); free(yb); free(c.z); free(c.y); free(g);
}

static void test_masked_l1(void) {
    float pr[4] = {1, 2, 3, 4}, t[4] = {0, 5, 3.5f, 9}, m[4] = {1, 1, 0, 1};
    float l = ns_masked_l1_forward(pr, t, m, 4);
    CHECK(fabs(l - 9 / (3 + 1e-4)) < 1e-6, "masked L1: hand-computed %.6f", l);
    loss_ctx c = {.n = 64, .l1 = 1};
    c.z = frand(c.n, -2, 2);
    c.y = falloc(c.n);
    c.m = falloc(c.n);
    for (int64_t i = 0; i < c.n; i++) {
        c.y[i] = c.z[i] + (urand(0, 1) < 0.5f ? -1 : 1) * urand(0.1f, 1);
        c.m[i] = i % 3 == 0;
    }
    float R = 1.3f, *g = gbuf(c.n);
    loss_fwd(&c);
    ns_masked_l1_backward(g, R, c.z, c.y, c.m, c.n);
    fd_problem p = {loss_fwd, &c, &c.loss, 1, &R};
    fd_check("masked_l1", "pred", &p, c.z, c.n, g);
    free(c.z); free(c.y); free(c.m); free(g);
}

// ----------------------------------------------------------------------------
// the detector

static void test_graph(void) {
    ns_model m;
    ns_err err;
    CHECK(ns_cnet_build(&m, 5, 64, 4, 1, &err) == 0, "centernet: built for 5 classes, 64 px, width 4");
    int64_t k, s;
    CHECK(ns_cnet_shape(&m, &k, &s, &err) == 0 && k == 5 && s == 64, "centernet: output 9 x 16 x 16 (K %lld)", (long long)k);
    const ns_node *up = &m.nodes[ns_model_find_node(&m, "up2.up")];
    CHECK(up->op == NS_OP_UPSAMPLE && up->shape[1] == 16 && up->shape[2] == 16, "centernet: up2 upsamples to stride 4");
    int t = ns_model_find_tensor(&m, "heatmap.2.bias");
    CHECK(t >= 0 && ((float *)m.tensors[t].t.data)[4] == NS_CNET_PRIOR_BIAS, "centernet: heatmap bias prior -2.19");
    ns_model_free(&m);
    CHECK(ns_cnet_build(&m, 5, 72, 4, 1, &err) < 0 && strstr(err.msg, "multiple of 16"), "centernet: 72 px refused (%s)", err.msg);
    // the engine runs upsample nodes forward and backward: a tiny graph
    ns_model g;
    ns_model_init(&g);
    ns_model_add_input(&g, 2, 3, 3, &err);
    int in = 0, id = ns_model_add_node(&g, "up", NS_OP_UPSAMPLE, &in, 1, &err);
    ns_node_set_iattr(&g.nodes[id], "scale", 3, &err);
    CHECK(ns_model_resolve(&g, 1, &err) == 0 && g.nodes[id].shape[1] == 9, "engine: upsample node 2x3x3 -> 2x9x9");
    ns_engine e;
    ns_engine_init(&e, &g, 2, 1, &err);
    e.want_input_grad = 1;
    float *x = frand(36, -1, 1), *dout = frand(2 * 162, -1, 1), want[36] = {0};
    const float *out = ns_engine_forward(&e, x, 2, 1, &err);
    float ref[324];
    ns_upsample_nearest_forward(ref, x, 2, 2, 3, 3, 3);
    check_close("engine: upsample node forward is the kernel's", out, ref, 324, 0);
    ns_engine_zero_grad(&e);
    ns_engine_backward(&e, dout);
    ns_upsample_nearest_backward(want, dout, 2, 2, 3, 3, 3);
    check_close("engine: upsample node backward is the kernel's", e.grad[0], want, 36, 0);
    ns_engine_free(&e);
    ns_model_free(&g);
    g.nodes = NULL;
    ns_model_init(&g);
    ns_model_add_input(&g, 4, 0, 0, &err);
    id = ns_model_add_node(&g, "up", NS_OP_UPSAMPLE, &in, 1, &err);
    CHECK(ns_model_resolve(&g, 1, &err) < 0 && strstr(err.msg, "C x H x W"), "engine: upsample of a vector refused (%s)", err.msg);
    ns_model_free(&g);
    free(x); free(dout);
}

static void test_targets_decode(void) {
    CHECK(fabs(ns_cnet_radius(10, 10) - 2.7332) < 1e-3, "radius: 10x10 box at overlap 0.7 is %.4f", ns_cnet_radius(10, 10));
    const int64_t K = 3, oh = 16, ow = 16, S = oh * ow;
    ns_det_box boxes[3] = {{4, 8, 20, 30, 1, 0}, {30, 30, 62, 50, 1, 2}, {40, 2, 48, 10, 1, 2}};
    float *heat = falloc(K * S), *reg = falloc(4 * S), *mask = falloc(4 * S);
    ns_cnet_targets(heat, reg, mask, K, oh, ow, boxes, 3);
    // box 0: centre (12, 19) / 4 = (3, 4.75): peak at (3, 4), size (4, 5.5), offset (0, 0.75)
    CHECK(heat[0 * S + 4 * ow + 3] == 1 && heat[0 * S + 4 * ow + 4] < 1 && heat[0 * S + 4 * ow + 4] > 0,
          "targets: a peak of 1 at the centre, a Gaussian around it");
    CHECK(reg[4 * ow + 3] == 4 && reg[S + 4 * ow + 3] == 5.5f && reg[2 * S + 4 * ow + 3] == 0 && reg[3 * S + 4 * ow + 3] == 0.75f,
          "targets: size (4, 5.5) and offset (0, 0.75) at the centre");
    double msum = 0, hsum1 = 0;
    for (int64_t i = 0; i < 4 * S; i++) msum += mask[i];
    for (int64_t i = 0; i < S; i++) hsum1 += heat[S + i];
    CHECK(msum == 12 && hsum1 == 0, "targets: mask 1 at 3 centres x 4 maps; class 1 empty");
    // decode the targets as if they were the network's output
    float *out = falloc((K + 4) * S), *sig = falloc(K * S);
    for (int64_t i = 0; i < K * S; i++) {
        double h = fmin(fmax(heat[i], 1e-6), 1 - 1e-6);
        out[i] = (float)log(h / (1 - h));
    }
    memcpy(out + K * S, reg, 4 * S * sizeof(float));
    ns_det_box dets[10];
    int64_t n = ns_cnet_decode(out, sig, K, oh, ow, 64, 64, 10, 0.5f, dets);
    int found = 0;
    for (int j = 0; j < 3; j++)
        for (int64_t i = 0; i < n; i++)
            if (dets[i].cls == boxes[j].cls && fabsf(dets[i].x0 - boxes[j].x0) < 1e-4 && fabsf(dets[i].y1 - boxes[j].y1) < 1e-4 &&
                fabsf(dets[i].x1 - boxes[j].x1) < 1e-4 && fabsf(dets[i].y0 - boxes[j].y0) < 1e-4)
                found++;
    CHECK(n == 3 && found == 3, "decode: the targets decode back to the 3 boxes (%lld detections)", (long long)n);
    n = ns_cnet_decode(out, sig, K, oh, ow, 64, 64, 2, 0.5f, dets);
    CHECK(n == 2 && dets[0].score >= dets[1].score, "decode: top-k keeps the best 2, best first");
    // batch loss = focal + 0.1 size + offset, and its gradient is the ops'
    float *o2 = frand(2 * (K + 4) * S, -2, 2), *h2 = falloc(2 * K * S), *r2 = falloc(8 * S), *m2 = falloc(8 * S);
    memcpy(h2, heat, K * S * sizeof(float));
    memcpy(r2, reg, 4 * S * sizeof(float));
    memcpy(m2, mask, 4 * S * sizeof(float));
    ns_cnet_targets(h2 + K * S, r2 + 4 * S, m2 + 4 * S, K, oh, ow, boxes + 2, 1);
    double parts[3];
    float *d2 = falloc(2 * (K + 4) * S);
    float l = ns_cnet_loss(d2, o2, h2, r2, m2, 2, K, oh, ow, parts);
    CHECK(fabs(l - (parts[0] + 0.1 * parts[1] + parts[2])) < 1e-5, "loss: heatmap + 0.1 size + offset");
    // finite differences through the whole batch loss (h 0.05: the loss is a
    // float sum of ~800 terms), on entries of each map, the L1 ones away from their kink
    double worst = 0;
    int64_t at0 = 4 * ow + 3, at1 = (K + 4) * S + 4 * S + 2 * ow + 11;
    int64_t probe[7] = {5, K * S - 7, K * S + at0, (K + 3) * S + at0, (K + 4) * S + 9, at1, at1 + 2 * S};
    o2[K * S + at0] = reg[at0] + 0.5f;
    o2[(K + 3) * S + at0] = reg[3 * S + at0] - 0.3f;
    o2[at1] = r2[4 * S + 2 * ow + 11] - 0.4f;
    o2[at1 + 2 * S] = r2[6 * S + 2 * ow + 11] + 0.2f;
    ns_cnet_loss(d2, o2, h2, r2, m2, 2, K, oh, ow, NULL);
    for (int i = 0; i < 7; i++) {
        float x0 = o2[probe[i]];
        o2[probe[i]] = x0 + 0.05f;
        double lp = ns_cnet_loss(NULL, o2, h2, r2, m2, 2, K, oh, ow, NULL);
        o2[probe[i]] = x0 - 0.05f;
        double lm = ns_cnet_loss(NULL, o2, h2, r2, m2, 2, K, oh, ow, NULL);
        o2[probe[i]] = x0;
        double num = (lp - lm) / 0.1, a = d2[probe[i]];
        double rel = fabs(num - a) / fmax(fmax(fabs(num), fabs(a)), FD_FLOOR);
        if (!(rel <= worst)) worst = rel;
    }
    fd_report("centernet_loss", "out", worst);
    free(heat); free(reg); free(mask); free(out); free(sig); free(o2); free(h2); free(r2); free(m2); free(d2);
}

// RoI-align: a ramp f(y, x) = y + 2x is reproduced exactly by bilinear
// sampling (bin centres at the 2 x 2 samples' mean), a constant map stays constant.
static void test_roi_align(void) {
    const int64_t C = 2, H = 8, W = 8;
    float feat[2 * 64], out[2 * 4];
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
            feat[y * W + x] = (float)(y + 2 * x);
            feat[64 + y * W + x] = 3;
        }
    // box (4, 4)-(12, 12) in pixels at stride 2: feature coords (1.5, 1.5)-(5.5, 5.5), 2 x 2 bins of 2
    float box[4] = {4, 4, 12, 12};
    ns_roi_align(out, feat, C, H, W, 2, box, 1, 2);
    float want[8] = {2.5f + 5, 2.5f + 9, 4.5f + 5, 4.5f + 9, 3, 3, 3, 3};
    check_close("roi_align: a ramp sampled bilinearly, a constant kept", out, want, 8, 1e-5);
    float far[4] = {100, 100, 120, 120};
    ns_roi_align(out, feat, 1, H, W, 2, far, 1, 2);
    CHECK(out[0] == 0 && out[3] == 0, "roi_align: a box outside the map gives zeros");
}

// A short training run on built-in shapes lowers the loss.
static void test_train(void) {
    ns_err err;
    ns_artwork art;
    ns_synth_split split;
    ns_synth_config cfg;
    ns_synth_config_default(&cfg);
    cfg.size = 32;
    cfg.max_logos = 2;
    cfg.min_scale = 0.3;
    ns_artwork_builtin(4, &art, &err);
    ns_synth_split_make(&art, 2, 1, 0, &split, &err);
    ns_det_data d = {.n = 64, .c = 3, .h = 32, .w = 32};
    d.x = falloc(64 * 3 * 32 * 32);
    for (int64_t i = 0; i < d.n; i++) {
        ns_image img;
        ns_det_box b[2];
        int nb;
        ns_synth_scene(&art, &split, &cfg, i, &img, b, &nb, &err);
        memcpy(d.x + i * 3072, img.data, 3072 * sizeof(float));
        ns_image_free(&img);
        ns_det_set_add_image(&d.set, i, 32, 32, b, nb, &err);
    }
    d.with_boxes = 1;
    ns_model m;
    ns_cnet_build(&m, 2, 32, 4, 7, &err);
    ns_cnet_train_config tc = {.epochs = 8, .batch = 16, .seed = 3};
    ns_optim_config_default(&tc.optim, NS_OPTIM_ADAM);
    ns_lr_parse(&tc.schedule, "constant", 3e-3, &err);
    ns_cnet_epoch first, last;
    tc.epochs = 1;
    int rc = ns_cnet_train(&m, &d, &tc, &first, &err);
    tc.epochs = 8;
    rc |= ns_cnet_train(&m, &d, &tc, &last, &err);
    CHECK(rc == 0 && last.loss < 0.7 * first.loss, "train: 9 epochs on 64 shape scenes lower the loss (%.3f -> %.3f)",
          first.loss, last.loss);
    ns_det_boxes dets;
    rc = ns_cnet_detect(&m, &d, 16, 20, 0.01f, &dets, NULL, NULL, &err);
    CHECK(rc == 0 && dets.n == 64 && ns_det_boxes_validate(&dets, 2, &err) == 0, "detect: valid boxes for 64 images");
    if (rc == 0) ns_det_boxes_free(&dets);
    // the region head on top: trains, travels in the model's tensors, detects
    ns_cnet_epoch rl;
    tc.epochs = 3;
    rc = ns_region_train(&m, &d, &tc, &rl, &err);
    CHECK(rc == 0 && ns_region_present(&m) && rl.loss > 0, "region: the head trains (loss %.3f)", rl.loss);
    rc = ns_region_detect(&m, &d, 16, 20, 0.01f, &dets, NULL, NULL, &err);
    CHECK(rc == 0 && dets.n == 64 && ns_det_boxes_validate(&dets, 2, &err) == 0, "region: valid boxes for 64 images");
    if (rc == 0) ns_det_boxes_free(&dets);
    d.set.boxes[0].cls = 5;
    CHECK(ns_cnet_train(&m, &d, &tc, NULL, &err) < 0 && strstr(err.msg, "class 5"), "train: unknown class refused (%s)", err.msg);
    ns_model_free(&m);
    ns_det_data_free(&d);
    ns_synth_split_free(&split);
    ns_artwork_free(&art);
}

int main(void) {
    setenv("NETSMITH_THREADS", "1", 0);
    ns_blas_init();
    test_upsample();
    test_focal();
    test_masked_l1();
    test_graph();
    test_targets_decode();
    test_roi_align();
    test_train();
    fd_summary();
    return check_done();
}
