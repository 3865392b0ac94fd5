// centernet.c: the one-stage detector's graph, its training targets, its loss
// and its decoding (centernet.h). Shapes: output (K + 4, oh, ow) per image,
// heat (K, oh, ow), reg and mask (4, oh, ow): size w, h then offset dx, dy.
#include "detect/centernet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"

// --- the graph -------------------------------------------------------------------

typedef struct builder {
    ns_model *m;
    ns_err *err;
    int failed;
} builder;

static int node(builder *b, const char *name, ns_op op, const int *inputs, int ninputs) {
    if (b->failed) return -1;
    int id = ns_model_add_node(b->m, name, op, inputs, ninputs, b->err);
    if (id < 0) b->failed = 1;
    return id;
}

static void set_attr(builder *b, int id, const char *key, int64_t v) {
    if (!b->failed && ns_node_set_iattr(&b->m->nodes[id], key, v, b->err) < 0) b->failed = 1;
}

static int conv(builder *b, const char *name, int from, int out, int k, int stride, int bias) {
    int id = node(b, name, NS_OP_CONV2D, &from, 1);
    if (id < 0) return -1;
    set_attr(b, id, "out", out);
    set_attr(b, id, "kernel", k);
    set_attr(b, id, "stride", stride);
    set_attr(b, id, "pad", k / 2);
    set_attr(b, id, "bias", bias);
    return id;
}

// conv (no bias), batch norm, relu: nodes NAME.conv, NAME.bn, NAME.relu
static int cbr(builder *b, const char *name, int from, int out, int k, int stride) {
    char n[NS_NODE_NAME_MAX];
    snprintf(n, sizeof n, "%s.conv", name);
    int id = conv(b, n, from, out, k, stride, 0);
    snprintf(n, sizeof n, "%s.bn", name);
    id = node(b, n, NS_OP_BATCHNORM, &id, 1);
    snprintf(n, sizeof n, "%s.relu", name);
    return node(b, n, NS_OP_RELU, &id, 1);
}

// 3x3 conv with bias, relu, 1x1 conv with bias: NAME.0, NAME.1, NAME.2
static int head(builder *b, const char *name, int from, int mid, int out) {
    char n[NS_NODE_NAME_MAX];
    snprintf(n, sizeof n, "%s.0", name);
    int id = conv(b, n, from, mid, 3, 1, 1);
    snprintf(n, sizeof n, "%s.1", name);
    id = node(b, n, NS_OP_RELU, &id, 1);
    snprintf(n, sizeof n, "%s.2", name);
    return conv(b, n, id, out, 1, 1, 1);
}

// upsample x2 of a 1x1 conv-bn-relu of `from`, plus `lateral`, then cbr 3x3
static int up_block(builder *b, const char *name, int from, int lateral, int out) {
    char n[NS_NODE_NAME_MAX];
    snprintf(n, sizeof n, "%s.reduce", name);
    int id = cbr(b, n, from, out, 1, 1);
    snprintf(n, sizeof n, "%s.up", name);
    id = node(b, n, NS_OP_UPSAMPLE, &id, 1);
    int pair[2] = {id, lateral};
    snprintf(n, sizeof n, "%s.add", name);
    id = node(b, n, NS_OP_ADD, pair, 2);
    snprintf(n, sizeof n, "%s.fuse", name);
    return cbr(b, n, id, out, 3, 1);
}

int ns_cnet_build(ns_model *m, int nclasses, int size, int width, uint64_t seed, ns_err *err) {
    if (nclasses < 1) return ns_errf(err, "the detector needs at least one class (%d)", nclasses);
    if (size < 16 || size % 16) return ns_errf(err, "the image side must be a multiple of 16 (%d)", size);
    if (width < 1 || width > 1024) return ns_errf(err, "width must be in 1..1024 (%d)", width);
    ns_model_init(m);
    builder b = {m, err, 0};
    int w = width;
    if (ns_model_add_input(m, 3, size, size, err) < 0) return -1;
    int x = cbr(&b, "stem", 0, w, 3, 2);          // S/2
    x = cbr(&b, "down1", x, 2 * w, 3, 2);          // S/4
    int c4 = cbr(&b, "block1", x, 2 * w, 3, 1);
    x = cbr(&b, "down2", c4, 4 * w, 3, 2);         // S/8
    int c8 = cbr(&b, "block2", x, 4 * w, 3, 1);
    x = cbr(&b, "down3", c8, 8 * w, 3, 2);         // S/16
    x = cbr(&b, "block3", x, 8 * w, 3, 1);
    x = up_block(&b, "up1", x, c8, 4 * w);         // S/8
    x = up_block(&b, "up2", x, c4, 2 * w);         // S/4
    int hm = head(&b, "heatmap", x, 2 * w, nclasses);
    int box = head(&b, "box", x, 2 * w, 4);
    int pair[2] = {hm, box};
    node(&b, "output", NS_OP_CONCAT, pair, 2);
    if (b.failed || ns_model_resolve(m, 1, err) < 0) {
        ns_model_free(m);
        return -1;
    }
    ns_model_init_params(m, seed);
    int t = ns_model_find_tensor(m, "heatmap.2.bias");
    float *bias = m->tensors[t].t.data;
    for (int k = 0; k < nclasses; k++) bias[k] = NS_CNET_PRIOR_BIAS;
    snprintf(m->arch, sizeof m->arch, "centernet --width %d --classes %d --size %d", width, nclasses, size);
    return 0;
}

int ns_cnet_shape(const ns_model *m, int64_t *nclasses, int64_t *size, ns_err *err) {
    const ns_node *in = &m->nodes[0], *out = &m->nodes[m->output];
    if (in->ndim != 3 || in->shape[0] != 3 || in->shape[1] != in->shape[2] || out->ndim != 3 ||
        out->shape[0] < 5 || out->shape[1] * NS_CNET_STRIDE != in->shape[1] ||
        out->shape[2] * NS_CNET_STRIDE != in->shape[2])
        return ns_errf(err, "not a logo-det detector (input 3 x S x S, output K+4 x S/4 x S/4; model %s)",
                       m->arch[0] ? m->arch : "without an arch");
    *nclasses = out->shape[0] - 4;
    *size = in->shape[1];
    return 0;
}

// --- targets -----------------------------------------------------------------------

double ns_cnet_radius(double h, double w) {
    const double o = 0.7;
    double b1 = h + w, c1 = w * h * (1 - o) / (1 + o);
    double r1 = (b1 + sqrt(b1 * b1 - 4 * c1)) / 2;
    double b2 = 2 * (h + w), c2 = (1 - o) * w * h;
    double r2 = (b2 + sqrt(b2 * b2 - 16 * c2)) / 2;
    double a3 = 4 * o, b3 = -2 * o * (h + w), c3 = (o - 1) * w * h;
    double r3 = (b3 + sqrt(b3 * b3 - 4 * a3 * c3)) / 2;
    double r = r1 < r2 ? r1 : r2;
    return r < r3 ? r : r3;
}

void ns_cnet_targets(float *heat, float *reg, float *mask, int64_t K, int64_t oh, int64_t ow,
                     const ns_det_box *boxes, int64_t nboxes) {
    int64_t S = oh * ow;
    memset(heat, 0, (size_t)(K * S) * sizeof *heat);
    memset(reg, 0, (size_t)(4 * S) * sizeof *reg);
    memset(mask, 0, (size_t)(4 * S) * sizeof *mask);
    for (int64_t j = 0; j < nboxes; j++) {
        const ns_det_box *bx = &boxes[j];
        if (bx->cls < 0 || bx->cls >= K) continue;
        double x0 = bx->x0 / NS_CNET_STRIDE, y0 = bx->y0 / NS_CNET_STRIDE, x1 = bx->x1 / NS_CNET_STRIDE,
               y1 = bx->y1 / NS_CNET_STRIDE;
        double bw = x1 - x0, bh = y1 - y0, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
        int64_t px = (int64_t)floor(cx), py = (int64_t)floor(cy);
        if (px >= ow) px = ow - 1;
        if (py >= oh) py = oh - 1;
        if (px < 0) px = 0;
        if (py < 0) py = 0;
        int64_t r = (int64_t)ns_cnet_radius(ceil(bh), ceil(bw));
        if (r < 0) r = 0;
        double sigma = (2.0 * (double)r + 1) / 6;
        float *hm = heat + bx->cls * S;
        for (int64_t dy = -r; dy <= r; dy++)
            for (int64_t dx = -r; dx <= r; dx++) {
                int64_t y = py + dy, x = px + dx;
                if (y < 0 || y >= oh || x < 0 || x >= ow) continue;
                float g = (float)exp(-(double)(dx * dx + dy * dy) / (2 * sigma * sigma));
                if (g > hm[y * ow + x]) hm[y * ow + x] = g;
            }
        int64_t at = py * ow + px;
        float v[4] = {(float)bw, (float)bh, (float)(cx - (double)px), (float)(cy - (double)py)};
        for (int c = 0; c < 4; c++) {
            reg[c * S + at] = v[c];
            mask[c * S + at] = 1;
        }
    }
}

// --- loss ----------------------------------------------------------------------------

static double sum_of(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

float ns_cnet_loss(float *dout, const float *out, const float *heat, const float *reg, const float *mask,
                   int64_t N, int64_t K, int64_t oh, int64_t ow, double parts[3]) {
    int64_t S = oh * ow, per = (K + 4) * S;
    int64_t P = 0;
    double heat_sum = 0, size_sum = 0, off_sum = 0, size_m = 0, off_m = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t Pi;
        float li = ns_focal_heatmap_forward(out + i * per, heat + i * K * S, K * S, 2, 4, &Pi);
        heat_sum += (double)li * (double)(Pi > 1 ? Pi : 1);
        P += Pi;
        double ms = sum_of(mask + i * 4 * S, 2 * S), mo = sum_of(mask + i * 4 * S + 2 * S, 2 * S);
        size_sum += (double)ns_masked_l1_forward(out + i * per + K * S, reg + i * 4 * S, mask + i * 4 * S, 2 * S) *
                    (ms + 1e-4);
        off_sum += (double)ns_masked_l1_forward(out + i * per + (K + 2) * S, reg + i * 4 * S + 2 * S,
                                                mask + i * 4 * S + 2 * S, 2 * S) * (mo + 1e-4);
        size_m += ms;
        off_m += mo;
    }
    double lh = heat_sum / (double)(P > 1 ? P : 1), ls = size_sum / (size_m + 1e-4), lo = off_sum / (off_m + 1e-4);
    if (parts) {
        parts[0] = lh;
        parts[1] = ls;
        parts[2] = lo;
    }
    if (dout) {
        memset(dout, 0, (size_t)(N * per) * sizeof *dout);
        for (int64_t i = 0; i < N; i++) {
            int64_t Pi = 0;
            for (int64_t j = 0; j < K * S; j++) Pi += heat[i * K * S + j] == 1.0f;
            ns_focal_heatmap_backward(dout + i * per, (float)((double)(Pi > 1 ? Pi : 1) / (double)(P > 1 ? P : 1)),
                                      out + i * per, heat + i * K * S, K * S, 2, 4);
            double ms = sum_of(mask + i * 4 * S, 2 * S), mo = sum_of(mask + i * 4 * S + 2 * S, 2 * S);
            ns_masked_l1_backward(dout + i * per + K * S, (float)(NS_CNET_SIZE_WEIGHT * (ms + 1e-4) / (size_m + 1e-4)),
                                  out + i * per + K * S, reg + i * 4 * S, mask + i * 4 * S, 2 * S);
            ns_masked_l1_backward(dout + i * per + (K + 2) * S, (float)((mo + 1e-4) / (off_m + 1e-4)),
                                  out + i * per + (K + 2) * S, reg + i * 4 * S + 2 * S, mask + i * 4 * S + 2 * S,
                                  2 * S);
        }
    }
    return (float)(lh + NS_CNET_SIZE_WEIGHT * ls + lo);
}

// --- decoding --------------------------------------------------------------------------

static int by_score_desc(const void *a, const void *b) {
    float x = ((const ns_det_box *)a)->score, y = ((const ns_det_box *)b)->score;
    return (x < y) - (x > y);
}

int64_t ns_cnet_decode(const float *out, float *heat_sig, int64_t K, int64_t oh, int64_t ow, int64_t img_h,
                       int64_t img_w, int64_t topk, float thresh, ns_det_box *dets) {
    int64_t S = oh * ow, n = 0, cap = topk;
    ns_sigmoid_forward(heat_sig, out, K * S);
    const float *sw = out + K * S, *sh = out + (K + 1) * S, *ox = out + (K + 2) * S, *oy = out + (K + 3) * S;
    float min_kept = thresh;
    for (int64_t k = 0; k < K; k++) {
        const float *hm = heat_sig + k * S;
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0; x < ow; x++) {
                float v = hm[y * ow + x];
                if (v < min_kept) continue;
                int peak = 1;
                for (int64_t dy = -1; dy <= 1 && peak; dy++)
                    for (int64_t dx = -1; dx <= 1; dx++) {
                        int64_t yy = y + dy, xx = x + dx;
                        if (yy < 0 || yy >= oh || xx < 0 || xx >= ow) continue;
                        if (hm[yy * ow + xx] > v) { peak = 0; break; }
                    }
                if (!peak) continue;
                int64_t at = y * ow + x;
                double cx = (double)x + ox[at], cy = (double)y + oy[at], hw = sw[at] / 2.0, hh = sh[at] / 2.0;
                double x0 = fmax(0, (cx - hw) * NS_CNET_STRIDE), y0 = fmax(0, (cy - hh) * NS_CNET_STRIDE);
                double x1 = fmin((double)img_w, (cx + hw) * NS_CNET_STRIDE);
                double y1 = fmin((double)img_h, (cy + hh) * NS_CNET_STRIDE);
                if (!((float)x0 < (float)x1 && (float)y0 < (float)y1)) continue;
                ns_det_box d = {(float)x0, (float)y0, (float)x1, (float)y1, v, k};
                if (n < cap) {
                    dets[n++] = d;
                    if (n == cap) {
                        qsort(dets, (size_t)n, sizeof *dets, by_score_desc);
                        min_kept = dets[n - 1].score > thresh ? dets[n - 1].score : thresh;
                    }
                } else if (v > dets[n - 1].score) { // replace the weakest, keep the order
                    int64_t i = n - 1;
                    while (i > 0 && dets[i - 1].score < v) { dets[i] = dets[i - 1]; i--; }
                    dets[i] = d;
                    min_kept = dets[n - 1].score;
                }
            }
    }
    if (n < cap) qsort(dets, (size_t)n, sizeof *dets, by_score_desc);
    return n;
}
