// centernet_region.c: logo-det's region mode (centernet.h explains it):
// RoI-align, the region head's graph and its tensors inside the detector's
// model ("roi.*"), proposal labelling, head training and detection with NMS.
// Shapes: feature map (C, H/4, W/4) per image; RoI features (R, C, P, P);
// head output (R, K + 5): K + 1 class logits (background last), 4 deltas.
#include "detect/centernet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "detect/eval.h"
#include "nn/engine.h"
#include "nn/ops.h"

#define FEATURE_NODE "up2.fuse.relu"
#define ROI_PREFIX "roi."
#define FG_IOU 0.5
#define BG_IOU 0.4
#define NMS_IOU 0.5
static const double DELTA_SCALE[4] = {0.1, 0.1, 0.2, 0.2};

// --- RoI-align --------------------------------------------------------------------

static float bilinear(const float *f, int64_t H, int64_t W, double y, double x) {
    if (y < -1 || y > (double)H || x < -1 || x > (double)W) return 0;
    y = y < 0 ? 0 : y;
    x = x < 0 ? 0 : x;
    int64_t y0 = (int64_t)y, x0 = (int64_t)x, y1 = y0 + 1, x1 = x0 + 1;
    if (y0 >= H - 1) { y0 = y1 = H - 1; y = (double)y0; }
    if (x0 >= W - 1) { x0 = x1 = W - 1; x = (double)x0; }
    double ly = y - (double)y0, lx = x - (double)x0;
    return (float)((1 - ly) * ((1 - lx) * f[y0 * W + x0] + lx * f[y0 * W + x1]) +
                   ly * ((1 - lx) * f[y1 * W + x0] + lx * f[y1 * W + x1]));
}

void ns_roi_align(float *out, const float *feat, int64_t C, int64_t H, int64_t W, int stride, const float *boxes,
                  int64_t R, int P) {
    for (int64_t r = 0; r < R; r++) {
        const float *b = boxes + 4 * r;
        double x0 = b[0] / stride - 0.5, y0 = b[1] / stride - 0.5, bw = (b[2] - b[0]) / stride / P,
               bh = (b[3] - b[1]) / stride / P;
        for (int64_t c = 0; c < C; c++) {
            const float *f = feat + c * H * W;
            float *o = out + (r * C + c) * P * P;
            for (int i = 0; i < P; i++)
                for (int j = 0; j < P; j++) {
                    double s = 0;
                    for (int a = 0; a < 2; a++)
                        for (int q = 0; q < 2; q++)
                            s += bilinear(f, H, W, y0 + (i + (a + 0.5) / 2) * bh, x0 + (j + (q + 0.5) / 2) * bw);
                    o[i * P + j] = (float)(s / 4);
                }
        }
    }
}

// --- the head's graph, and its tensors inside the detector ------------------------

static int linear(ns_model *h, const char *name, int from, int64_t out, ns_err *err) {
    int id = ns_model_add_node(h, name, NS_OP_LINEAR, &from, 1, err);
    if (id >= 0 && ns_node_set_iattr(&h->nodes[id], "out", out, err) < 0) return -1;
    return id;
}

static int head_build(ns_model *h, int64_t C, int P, int64_t hidden, int64_t K, ns_err *err) {
    ns_model_init(h);
    int x = ns_model_add_input(h, (int)C, P, P, err);
    if (x >= 0) x = ns_model_add_node(h, "flatten", NS_OP_FLATTEN, &x, 1, err);
    if (x >= 0) x = linear(h, "fc1", x, hidden, err);
    if (x >= 0) x = ns_model_add_node(h, "relu1", NS_OP_RELU, &x, 1, err);
    if (x >= 0) x = linear(h, "fc2", x, hidden, err);
    if (x >= 0) x = ns_model_add_node(h, "relu2", NS_OP_RELU, &x, 1, err);
    int cls = x >= 0 ? linear(h, "cls", x, K + 1, err) : -1, delta = cls >= 0 ? linear(h, "delta", x, 4, err) : -1;
    int pair[2] = {cls, delta};
    if (delta < 0 || ns_model_add_node(h, "output", NS_OP_CONCAT, pair, 2, err) < 0 || ns_model_resolve(h, 1, err) < 0) {
        ns_model_free(h);
        return -1;
    }
    return 0;
}

int ns_region_present(const ns_model *m) { return ns_model_find_tensor(m, ROI_PREFIX "fc1.weight") >= 0; }

// The head stored in m (roi.*), rebuilt.
static int head_load(ns_model *h, const ns_model *m, int64_t C, int64_t K, ns_err *err) {
    int t = ns_model_find_tensor(m, ROI_PREFIX "fc1.weight");
    if (t < 0) return ns_errf(err, "the model has no region head (train one with logo-det train --mode region)");
    const ns_tensor *w = &m->tensors[t].t;
    int P = (int)lround(sqrt((double)w->shape[1] / (double)C));
    if (w->ndim != 2 || (int64_t)P * P * C != w->shape[1])
        return ns_errf(err, "the region head does not fit the detector's %lld-channel features", (long long)C);
    if (head_build(h, C, P, w->shape[0], K, err) < 0) return -1;
    for (int i = 0; i < h->ntensors; i++) {
        char name[NS_NAME_MAX + 8]; // head names are short
        snprintf(name, sizeof name, ROI_PREFIX "%.200s", h->tensors[i].name);
        int s = ns_model_find_tensor(m, name);
        if (s < 0 || m->tensors[s].t.numel != h->tensors[i].t.numel) {
            ns_model_free(h);
            return ns_errf(err, "the region head's %s is missing or misshapen", name);
        }
        memcpy(h->tensors[i].t.data, m->tensors[s].t.data, (size_t)h->tensors[i].t.numel * sizeof(float));
    }
    return 0;
}

static int head_store(ns_model *m, const ns_model *h, ns_err *err) {
    for (int i = 0; i < h->ntensors; i++) {
        const ns_named_tensor *src = &h->tensors[i];
        char name[NS_NAME_MAX + 8];
        snprintf(name, sizeof name, ROI_PREFIX "%.200s", src->name);
        int t = ns_model_find_tensor(m, name);
        if (t >= 0 && m->tensors[t].t.numel != src->t.numel)
            return ns_errf(err, "the model has a %s of another shape", name);
        if (t < 0 && (t = ns_model_add_tensor(m, name, src->t.ndim, src->t.shape, 0, err)) < 0) return -1;
        memcpy(m->tensors[t].t.data, src->t.data, (size_t)src->t.numel * sizeof(float));
    }
    return 0;
}

// --- proposals ---------------------------------------------------------------------

typedef struct backbone {
    ns_engine e;
    int feat;
    int64_t K, S, oh, C;
    float *sig;
    ns_det_box props[NS_ROI_PROPOSALS];
} backbone;

static int backbone_init(backbone *b, ns_model *m, const ns_det_data *d, int64_t batch, ns_err *err) {
    memset(b, 0, sizeof *b);
    if (ns_cnet_shape(m, &b->K, &b->S, err) < 0) return -1;
    if (d->h != b->S || d->w != b->S)
        return ns_errf(err, "the model takes %lldx%lld images, the data are %lldx%lld", (long long)b->S,
                       (long long)b->S, (long long)d->w, (long long)d->h);
    b->feat = ns_model_find_node(m, FEATURE_NODE);
    if (b->feat < 0) return ns_errf(err, "the model has no node %s (not logo-det's backbone)", FEATURE_NODE);
    b->C = m->nodes[b->feat].shape[0];
    b->oh = b->S / NS_CNET_STRIDE;
    if (ns_engine_init(&b->e, m, batch, 0, err) < 0) return -1;
    ns_engine_set_fused(&b->e, 1);
    ns_engine_keep(&b->e, b->feat);
    if (!(b->sig = malloc((size_t)(b->K * b->oh * b->oh) * sizeof *b->sig))) return ns_errf(err, "out of memory");
    return 0;
}

static void backbone_free(backbone *b) {
    ns_engine_free(&b->e);
    free(b->sig);
}

// Proposals of image i of the last forward into b->props; their count.
static int64_t proposals(backbone *b, const float *out, int64_t i) {
    int64_t per = (b->K + 4) * b->oh * b->oh;
    return ns_cnet_decode(out + i * per, b->sig, b->K, b->oh, b->oh, b->S, b->S, NS_ROI_PROPOSALS, 1e-3f, b->props);
}

static const float *feature(const backbone *b, int64_t i) {
    return b->e.act[b->feat] + i * b->C * b->oh * b->oh;
}

// --- training ------------------------------------------------------------------------

typedef struct roi_set {
    int64_t n, cap, dim;
    float *x, *delta, *mask; // (n, dim), (n, 4), (n, 4)
    int32_t *label;          // (n)
} roi_set;

static void roi_set_free(roi_set *s) {
    free(s->x);
    free(s->delta);
    free(s->mask);
    free(s->label);
}

static int roi_grow(roi_set *s, int64_t more, ns_err *err) {
    if (s->n + more <= s->cap) return 0;
    int64_t cap = s->cap ? s->cap * 2 : 4096;
    while (cap < s->n + more) cap *= 2;
    float *x = realloc(s->x, (size_t)(cap * s->dim) * sizeof *x);
    if (x) s->x = x;
    float *dl = realloc(s->delta, (size_t)(cap * 4) * sizeof *dl);
    if (dl) s->delta = dl;
    float *mk = realloc(s->mask, (size_t)(cap * 4) * sizeof *mk);
    if (mk) s->mask = mk;
    int32_t *lb = realloc(s->label, (size_t)cap * sizeof *lb);
    if (lb) s->label = lb;
    if (!x || !dl || !mk || !lb) return ns_errf(err, "out of memory (%lld region samples)", (long long)cap);
    s->cap = cap;
    return 0;
}

static void encode(const ns_det_box *p, const ns_det_box *g, float *d) {
    double pw = p->x1 - p->x0, ph = p->y1 - p->y0, gw = g->x1 - g->x0, gh = g->y1 - g->y0;
    d[0] = (float)(((g->x0 + g->x1) / 2 - (p->x0 + p->x1) / 2) / pw / DELTA_SCALE[0]);
    d[1] = (float)(((g->y0 + g->y1) / 2 - (p->y0 + p->y1) / 2) / ph / DELTA_SCALE[1]);
    d[2] = (float)(log(gw / pw) / DELTA_SCALE[2]);
    d[3] = (float)(log(gh / ph) / DELTA_SCALE[3]);
}

// Labels one proposal against an image's ground truth and appends it.
static int add_roi(roi_set *s, const backbone *b, int64_t i, const ns_det_box *p, const ns_det_box *gt, int64_t ngt,
                   ns_err *err) {
    double best = 0;
    int64_t bi = -1;
    for (int64_t j = 0; j < ngt; j++) {
        double v = ns_det_iou(p, &gt[j]);
        if (v > best) { best = v; bi = j; }
    }
    if (best >= BG_IOU && best < FG_IOU) return 0;
    if (roi_grow(s, 1, err) < 0) return -1;
    float xyxy[4] = {p->x0, p->y0, p->x1, p->y1};
    ns_roi_align(s->x + s->n * s->dim, feature(b, i), b->C, b->oh, b->oh, NS_CNET_STRIDE, xyxy, 1, NS_ROI_POOL);
    int fg = best >= FG_IOU;
    s->label[s->n] = fg ? (int32_t)gt[bi].cls : (int32_t)b->K;
    for (int k = 0; k < 4; k++) s->mask[s->n * 4 + k] = (float)fg;
    if (fg) encode(p, &gt[bi], s->delta + s->n * 4);
    else memset(s->delta + s->n * 4, 0, 4 * sizeof(float));
    s->n++;
    return 0;
}

static ns_det_box jitter(const ns_det_box *g, ns_rng *rng, int64_t S) {
    double w = g->x1 - g->x0, h = g->y1 - g->y0;
    double cx = (g->x0 + g->x1) / 2 + (ns_rng_uniform(rng) - 0.5) * 0.3 * w;
    double cy = (g->y0 + g->y1) / 2 + (ns_rng_uniform(rng) - 0.5) * 0.3 * h;
    w *= exp((ns_rng_uniform(rng) - 0.5) * 0.5);
    h *= exp((ns_rng_uniform(rng) - 0.5) * 0.5);
    ns_det_box j = *g;
    j.x0 = (float)fmax(0, cx - w / 2);
    j.y0 = (float)fmax(0, cy - h / 2);
    j.x1 = (float)fmin((double)S, cx + w / 2);
    j.y1 = (float)fmin((double)S, cy + h / 2);
    return j;
}

static int collect(backbone *b, const ns_det_data *d, uint64_t seed, roi_set *s, const ns_reporter *report,
                   ns_err *err) {
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    int64_t per = d->c * d->h * d->w, batch = b->e.max_batch;
    ns_report_begin(report, "images", d->n);
    for (int64_t start = 0; start < d->n; start += batch) {
        int64_t n = d->n - start < batch ? d->n - start : batch;
        const float *out = ns_engine_forward(&b->e, d->x + start * per, n, 0, err);
        if (!out) return -1;
        for (int64_t i = 0; i < n; i++) {
            const ns_det_image *im = &d->set.images[start + i];
            const ns_det_box *gt = d->set.boxes + im->first;
            int64_t np = proposals(b, out, i);
            for (int64_t k = 0; k < np; k++)
                if (add_roi(s, b, i, &b->props[k], gt, im->count, err) < 0) return -1;
            for (int64_t j = 0; j < im->count; j++)
                for (int r = 0; r < 3; r++) {
                    ns_det_box p = r == 0 ? gt[j] : jitter(&gt[j], &rng, b->S);
                    if (p.x1 > p.x0 && p.y1 > p.y0 && add_roi(s, b, i, &p, gt, im->count, err) < 0) return -1;
                }
        }
        ns_report_update(report, start + n);
    }
    ns_report_end(report);
    return 0;
}

int ns_region_train(ns_model *m, const ns_det_data *d, const ns_cnet_train_config *cfg, ns_cnet_epoch *last,
                    ns_err *err) {
    if (!d->with_boxes) return ns_errf(err, "training needs a boxes record before every image batch");
    backbone b;
    roi_set s = {0};
    ns_model h;
    int have_head = 0, rc = backbone_init(&b, m, d, 64, err);
    for (int64_t j = 0; rc == 0 && j < d->set.nboxes; j++)
        if (d->set.boxes[j].cls >= b.K)
            rc = ns_errf(err, "a box has class %lld; the model has %lld classes", (long long)d->set.boxes[j].cls,
                         (long long)b.K);
    s.dim = b.C * NS_ROI_POOL * NS_ROI_POOL;
    if (rc == 0) rc = collect(&b, d, cfg->seed, &s, cfg->report, err);
    int64_t K = b.K;
    backbone_free(&b);
    if (rc == 0 && s.n == 0) rc = ns_errf(err, "no region samples");
    if (rc == 0 && (rc = head_build(&h, b.C, NS_ROI_POOL, NS_ROI_HIDDEN, K, err)) == 0) {
        have_head = 1;
        ns_model_init_params(&h, cfg->seed);
    }
    const int64_t B = 256;
    ns_engine e;
    ns_optim *opt = NULL;
    ns_param *params = NULL;
    int64_t *order = malloc((size_t)(s.n + 1) * sizeof *order), steps = (s.n + B - 1) / B;
    float *x = malloc((size_t)(B * s.dim) * sizeof *x), *logits = malloc((size_t)(B * (K + 1)) * sizeof *logits);
    float *dl = malloc((size_t)(B * (K + 1)) * sizeof *dl), *dout = malloc((size_t)(B * (K + 5)) * sizeof *dout);
    float *dd = malloc((size_t)B * 4 * sizeof *dd), *pd = malloc((size_t)B * 4 * sizeof *pd);
    float *td = malloc((size_t)B * 4 * sizeof *td), *tm = malloc((size_t)B * 4 * sizeof *tm);
    int32_t *y = malloc((size_t)B * sizeof *y);
    int engine = 0;
    if (rc == 0 && (!order || !x || !logits || !dl || !dout || !dd || !pd || !td || !tm || !y))
        rc = ns_errf(err, "out of memory");
    if (rc == 0 && (rc = ns_engine_init(&e, &h, B, 1, err)) == 0) engine = 1;
    if (rc == 0) {
        params = calloc((size_t)h.ntensors + 1, sizeof *params);
        int np = 0;
        for (int t = 0; params && t < h.ntensors; t++)
            params[np++] = (ns_param){h.tensors[t].name, h.tensors[t].t.data, e.param_grad[t], h.tensors[t].t.numel,
                                      h.tensors[t].t.ndim, h.tensors[t].t.shape, h.tensors[t].t.ndim > 1};
        if (!params) rc = ns_errf(err, "out of memory");
        else if (!(opt = ns_optim_create(&cfg->optim, params, np, err))) rc = -1;
    }
    ns_lr_schedule sched = cfg->schedule;
    sched.total_steps = (int64_t)cfg->epochs * steps;
    if (rc == 0) rc = ns_lr_check(&sched, steps, err);
    double t_start = ns_now();
    for (int epoch = 0; rc == 0 && epoch < cfg->epochs; epoch++) {
        double t0 = ns_now(), ce_sum = 0, l1_sum = 0;
        ns_rng rng;
        ns_rng_seed(&rng, ns_rand_u64(cfg->seed, (uint64_t)epoch));
        for (int64_t i = 0; i < s.n; i++) order[i] = i;
        ns_rng_shuffle(&rng, order, s.n);
        for (int64_t st = 0; st < steps; st++) {
            int64_t n = s.n - st * B < B ? s.n - st * B : B;
            for (int64_t i = 0; i < n; i++) {
                int64_t k = order[st * B + i];
                memcpy(x + i * s.dim, s.x + k * s.dim, (size_t)s.dim * sizeof *x);
                memcpy(td + 4 * i, s.delta + 4 * k, 4 * sizeof *td);
                memcpy(tm + 4 * i, s.mask + 4 * k, 4 * sizeof *tm);
                y[i] = s.label[k];
            }
            const float *out = ns_engine_forward(&e, x, n, 1, err);
            if (!out) { rc = -1; break; }
            for (int64_t i = 0; i < n; i++) {
                memcpy(logits + i * (K + 1), out + i * (K + 5), (size_t)(K + 1) * sizeof *logits);
                memcpy(pd + 4 * i, out + i * (K + 5) + K + 1, 4 * sizeof *pd);
            }
            float ce = ns_softmax_ce_forward(NULL, logits, y, NULL, 0, n, K + 1);
            float l1 = ns_masked_l1_forward(pd, td, tm, 4 * n);
            if (!isfinite(ce) || !isfinite(l1)) { rc = ns_errf(err, "region head: the loss is not finite"); break; }
            ce_sum += ce * (double)n;
            l1_sum += l1 * (double)n;
            memset(dl, 0, (size_t)(n * (K + 1)) * sizeof *dl);
            memset(dd, 0, (size_t)(n * 4) * sizeof *dd);
            ns_softmax_ce_backward(dl, 1, logits, y, NULL, 0, n, K + 1);
            ns_masked_l1_backward(dd, 1, pd, td, tm, 4 * n);
            for (int64_t i = 0; i < n; i++) {
                memcpy(dout + i * (K + 5), dl + i * (K + 1), (size_t)(K + 1) * sizeof *dout);
                memcpy(dout + i * (K + 5) + K + 1, dd + 4 * i, 4 * sizeof *dout);
            }
            ns_engine_zero_grad(&e);
            ns_engine_backward(&e, dout);
            ns_optim_step(opt, ns_lr_at(&sched, (int64_t)epoch * steps + st, steps));
        }
        if (rc) break;
        ns_cnet_epoch ep = {epoch + 1, (ce_sum + l1_sum) / (double)s.n, ce_sum / (double)s.n, 0, l1_sum / (double)s.n,
                            ns_now() - t0, (double)s.n / (ns_now() - t0)};
        double done = ns_now() - t_start;
        ns_report_message(cfg->report, "region epoch %d/%d  loss %.4f (classes %.4f, deltas %.4f)  %lld regions  %.0f regions/s  ETA %.0fs",
                          epoch + 1, cfg->epochs, ep.loss, ep.heat, ep.offset, (long long)s.n, ep.images_per_s,
                          done / (epoch + 1) * (cfg->epochs - epoch - 1));
        if (last) *last = ep;
    }
    if (rc == 0) rc = head_store(m, &h, err);
    if (engine) ns_engine_free(&e);
    ns_optim_free(opt);
    free(params);
    if (have_head) ns_model_free(&h);
    roi_set_free(&s);
    free(order); free(x); free(logits); free(dl); free(dout); free(dd); free(pd); free(td); free(tm); free(y);
    return rc;
}

// --- detection -------------------------------------------------------------------------

static int by_score(const void *a, const void *b) {
    float x = ((const ns_det_box *)a)->score, y = ((const ns_det_box *)b)->score;
    return (x < y) - (x > y);
}

// Greedy per-class NMS over n boxes sorted by score; returns the count kept (in place).
static int64_t nms(ns_det_box *d, int64_t n, int64_t topk) {
    int64_t kept = 0;
    for (int64_t i = 0; i < n && kept < topk; i++) {
        int keep = 1;
        for (int64_t j = 0; j < kept && keep; j++)
            if (d[j].cls == d[i].cls && ns_det_iou(&d[j], &d[i]) > NMS_IOU) keep = 0;
        if (keep) d[kept++] = d[i];
    }
    return kept;
}

int ns_region_detect(ns_model *m, const ns_det_data *d, int64_t batch, int64_t topk, float thresh,
                     ns_det_boxes *dets, double *seconds, const ns_reporter *report, ns_err *err) {
    backbone b;
    ns_model h;
    if (backbone_init(&b, m, d, batch, err) < 0) {
        backbone_free(&b);
        return -1;
    }
    if (head_load(&h, m, b.C, b.K, err) < 0) {
        backbone_free(&b);
        return -1;
    }
    int64_t K = b.K, R = NS_ROI_PROPOSALS, dim = b.C * NS_ROI_POOL * NS_ROI_POOL, per = d->c * d->h * d->w;
    int64_t cand_cap = R * K;
    ns_engine e;
    int rc = ns_engine_init(&e, &h, batch * R, 0, err), engine = rc == 0;
    float *x = malloc((size_t)(batch * R * dim) * sizeof *x), *prob = malloc((size_t)(K + 1) * sizeof *prob);
    int64_t *nprop = malloc((size_t)batch * sizeof *nprop), *counts = calloc((size_t)d->n + 1, sizeof *counts);
    ns_det_box *props = malloc((size_t)(batch * R) * sizeof *props), *cand = malloc((size_t)cand_cap * sizeof *cand);
    ns_det_box *all = malloc((size_t)(d->n * topk + 1) * sizeof *all);
    int64_t total = 0;
    if (rc == 0 && (!x || !prob || !nprop || !counts || !props || !cand || !all)) rc = ns_errf(err, "out of memory");
    if (engine) ns_engine_set_fused(&e, 1);
    double t0 = ns_now();
    ns_report_begin(report, "images", d->n);
    for (int64_t start = 0; rc == 0 && start < d->n; start += batch) {
        int64_t n = d->n - start < batch ? d->n - start : batch, nr = 0;
        const float *out = ns_engine_forward(&b.e, d->x + start * per, n, 0, err);
        if (!out) { rc = -1; break; }
        for (int64_t i = 0; i < n; i++) {
            nprop[i] = proposals(&b, out, i);
            for (int64_t k = 0; k < nprop[i]; k++) {
                float q[4] = {b.props[k].x0, b.props[k].y0, b.props[k].x1, b.props[k].y1};
                ns_roi_align(x + nr * dim, feature(&b, i), b.C, b.oh, b.oh, NS_CNET_STRIDE, q, 1, NS_ROI_POOL);
                props[nr++] = b.props[k];
            }
        }
        const float *ho = nr ? ns_engine_forward(&e, x, nr, 0, err) : x;
        if (!ho) { rc = -1; break; }
        for (int64_t i = 0, r = 0; i < n; i++) {
            int64_t nc = 0;
            for (int64_t k = 0; k < nprop[i]; k++, r++) {
                const float *z = ho + r * (K + 5), *dz = z + K + 1;
                float mx = z[0];
                for (int64_t c = 1; c <= K; c++) mx = z[c] > mx ? z[c] : mx;
                double sum = 0;
                for (int64_t c = 0; c <= K; c++) sum += exp((double)(z[c] - mx));
                const ns_det_box *p = &props[r];
                double pw = p->x1 - p->x0, ph = p->y1 - p->y0;
                double cx = (p->x0 + p->x1) / 2 + dz[0] * DELTA_SCALE[0] * pw;
                double cy = (p->y0 + p->y1) / 2 + dz[1] * DELTA_SCALE[1] * ph;
                double w = pw * exp(fmin(dz[2] * DELTA_SCALE[2], 4)), hh = ph * exp(fmin(dz[3] * DELTA_SCALE[3], 4));
                ns_det_box bx = {(float)fmax(0, cx - w / 2), (float)fmax(0, cy - hh / 2),
                                 (float)fmin((double)d->w, cx + w / 2), (float)fmin((double)d->h, cy + hh / 2), 0, 0};
                if (!(bx.x0 < bx.x1 && bx.y0 < bx.y1)) continue;
                for (int64_t c = 0; c < K; c++) {
                    float pc = (float)(exp((double)(z[c] - mx)) / sum);
                    if (pc < thresh) continue;
                    bx.score = pc;
                    bx.cls = c;
                    cand[nc++] = bx;
                }
            }
            qsort(cand, (size_t)nc, sizeof *cand, by_score);
            counts[start + i] = nms(cand, nc, topk);
            memcpy(all + total, cand, (size_t)counts[start + i] * sizeof *all);
            total += counts[start + i];
        }
        ns_report_update(report, start + n);
    }
    ns_report_end(report);
    if (seconds) *seconds = ns_now() - t0;
    if (rc == 0) rc = ns_cnet_pack_detections(dets, d, all, counts, total, err);
    if (engine) ns_engine_free(&e);
    backbone_free(&b);
    ns_model_free(&h);
    free(x); free(prob); free(nprop); free(counts); free(props); free(cand); free(all);
    return rc;
}

int ns_cnet_write(const ns_model *m, ns_writer *w, const ns_map *meta, ns_err *err) {
    if (ns_model_write(m, w, meta, 0, err) < 0) return -1;
    for (int t = 0; t < m->ntensors; t++)
        if (!m->tensors[t].used && strncmp(m->tensors[t].name, ROI_PREFIX, strlen(ROI_PREFIX)) == 0 &&
            ns_write_tensor(w, m->tensors[t].name, &m->tensors[t].t, NULL, err) < 0)
            return -1;
    return 0;
}
