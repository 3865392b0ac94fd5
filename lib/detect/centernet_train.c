// centernet_train.c: the training loop of the one-stage detector and
// detection over a window of images (centernet.h). Shapes: images (n, 3, S, S); per batch of B the targets heat
// (B, K, S/4, S/4), reg and mask (B, 4, S/4, S/4) and the output's gradient
// (B, K + 4, S/4, S/4).
//
// Determinism as the classifier's trainer (nn/trainer.h): epoch e shuffles and
// flips with a generator seeded from (seed, e), so a run resumed from an
// epoch's checkpoint continues as the uninterrupted run would.
#include "detect/centernet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "nn/engine.h"
#include "nn/ops.h"
#include "nn/trainer.h"

// --- training ---------------------------------------------------------------------

typedef struct run {
    ns_engine e;
    ns_optim *opt;
    ns_param *params;
    int nparams;
    int64_t *order;
    float *x, *heat, *reg, *mask, *dout;
    ns_det_box *flipped;
} run;

static void run_free(run *r) {
    ns_engine_free(&r->e);
    ns_optim_free(r->opt);
    free(r->params);
    free(r->order);
    free(r->x);
    free(r->heat);
    free(r->reg);
    free(r->mask);
    free(r->dout);
    free(r->flipped);
}

static int run_init(run *r, ns_model *m, const ns_det_data *d, const ns_cnet_train_config *cfg, int64_t K,
                    ns_err *err) {
    memset(r, 0, sizeof *r);
    if (ns_engine_init(&r->e, m, cfg->batch, 1, err) < 0) return -1;
    ns_engine_set_fused(&r->e, 1);
    r->e.seed = cfg->seed;
    r->params = calloc((size_t)m->ntensors + 1, sizeof *r->params);
    if (!r->params) return ns_errf(err, "out of memory");
    for (int t = 0; t < m->ntensors; t++) {
        if (!r->e.param_grad[t]) continue;
        ns_named_tensor *nt = &m->tensors[t];
        r->params[r->nparams++] = (ns_param){nt->name, nt->t.data, r->e.param_grad[t], nt->t.numel, nt->t.ndim,
                                             nt->t.shape, nt->t.ndim > 1};
    }
    if (!(r->opt = ns_optim_create(&cfg->optim, r->params, r->nparams, err))) return -1;
    int64_t S = (d->h / NS_CNET_STRIDE) * (d->w / NS_CNET_STRIDE), B = cfg->batch, maxb = 0;
    for (int64_t i = 0; i < d->set.nimages; i++)
        if (d->set.images[i].count > maxb) maxb = d->set.images[i].count;
    r->order = malloc((size_t)d->n * sizeof *r->order);
    r->x = ns_aligned_alloc((size_t)(B * d->c * d->h * d->w) * sizeof(float));
    r->heat = malloc((size_t)(B * K * S) * sizeof(float));
    r->reg = malloc((size_t)(B * 4 * S) * sizeof(float));
    r->mask = malloc((size_t)(B * 4 * S) * sizeof(float));
    r->dout = ns_aligned_alloc((size_t)(B * (K + 4) * S) * sizeof(float));
    r->flipped = malloc((size_t)(maxb + 1) * sizeof *r->flipped);
    if (!r->order || !r->x || !r->heat || !r->reg || !r->mask || !r->dout || !r->flipped)
        return ns_errf(err, "out of memory");
    return 0;
}

int ns_cnet_pack_detections(ns_det_boxes *dets, const ns_det_data *d, const ns_det_box *all,
                            const int64_t *counts, int64_t total, ns_err *err) {
    if (ns_det_boxes_alloc(dets, d->n, total, 1, err) < 0) return -1;
    dets->h = d->h;
    dets->w = d->w;
    for (int64_t i = 0; i < d->n; i++) {
        dets->ids[i] = d->set.images[i].id;
        dets->offsets[i + 1] = dets->offsets[i] + counts[i];
    }
    for (int64_t j = 0; j < total; j++) {
        float q[4] = {all[j].x0, all[j].y0, all[j].x1, all[j].y1};
        memcpy(dets->xyxy + 4 * j, q, sizeof q);
        dets->classes[j] = all[j].cls;
        dets->scores[j] = all[j].score;
    }
    return 0;
}

// Copies image s into dst, mirrored left-right when flip.
static void copy_image(float *dst, const ns_det_data *d, int64_t s, int flip) {
    int64_t per = d->c * d->h * d->w;
    const float *src = d->x + s * per;
    if (!flip) {
        memcpy(dst, src, (size_t)per * sizeof *dst);
        return;
    }
    for (int64_t row = 0; row < d->c * d->h; row++)
        for (int64_t x = 0; x < d->w; x++) dst[row * d->w + x] = src[row * d->w + d->w - 1 - x];
}

static int train_epoch(run *r, const ns_det_data *d, const ns_cnet_train_config *cfg, int epoch,
                       int64_t K, int64_t steps, ns_cnet_epoch *st, ns_err *err) {
    ns_rng rng;
    ns_rng_seed(&rng, ns_rand_u64(cfg->seed, (uint64_t)epoch));
    for (int64_t i = 0; i < d->n; i++) r->order[i] = i;
    ns_rng_shuffle(&rng, r->order, d->n);
    int64_t oh = d->h / NS_CNET_STRIDE, ow = d->w / NS_CNET_STRIDE, S = oh * ow, per = d->c * d->h * d->w;
    double sums[4] = {0};
    ns_report_begin(cfg->report, "images", d->n);
    for (int64_t b = 0; b < steps; b++) {
        int64_t start = b * cfg->batch, n = d->n - start < cfg->batch ? d->n - start : cfg->batch;
        for (int64_t i = 0; i < n; i++) {
            int64_t s = r->order[start + i];
            int flip = cfg->flip && ns_rng_uniform(&rng) < 0.5;
            copy_image(r->x + i * per, d, s, flip);
            const ns_det_image *im = &d->set.images[s];
            const ns_det_box *bx = d->set.boxes + im->first;
            if (flip) {
                for (int64_t j = 0; j < im->count; j++) {
                    r->flipped[j] = bx[j];
                    r->flipped[j].x0 = (float)d->w - bx[j].x1;
                    r->flipped[j].x1 = (float)d->w - bx[j].x0;
                }
                bx = r->flipped;
            }
            ns_cnet_targets(r->heat + i * K * S, r->reg + i * 4 * S, r->mask + i * 4 * S, K, oh, ow, bx, im->count);
        }
        r->e.step = (uint64_t)epoch * (uint64_t)steps + (uint64_t)b;
        const float *out = ns_engine_forward(&r->e, r->x, n, 1, err);
        if (!out) return -1;
        double parts[3];
        float loss = ns_cnet_loss(r->dout, out, r->heat, r->reg, r->mask, n, K, oh, ow, parts);
        if (!isfinite(loss))
            return ns_errf(err, "epoch %d, batch %lld: the loss is %g (lower the learning rate?)", epoch + 1,
                           (long long)b, loss);
        sums[0] += (double)loss * (double)n;
        for (int k = 0; k < 3; k++) sums[k + 1] += parts[k] * (double)n;
        ns_engine_zero_grad(&r->e);
        ns_engine_backward(&r->e, r->dout);
        ns_optim_step(r->opt, ns_lr_at(&cfg->schedule, (int64_t)epoch * steps + b, steps));
        ns_report_update(cfg->report, start + n);
    }
    ns_report_end(cfg->report);
    st->loss = sums[0] / (double)d->n;
    st->heat = sums[1] / (double)d->n;
    st->size = sums[2] / (double)d->n;
    st->offset = sums[3] / (double)d->n;
    return 0;
}

int ns_cnet_train(ns_model *m, const ns_det_data *d, const ns_cnet_train_config *cfg, ns_cnet_epoch *last,
                  ns_err *err) {
    int64_t K, size;
    if (ns_cnet_shape(m, &K, &size, err) < 0) return -1;
    if (d->h != size || d->w != size)
        return ns_errf(err, "the model takes %lldx%lld images, the data are %lldx%lld", (long long)size,
                       (long long)size, (long long)d->w, (long long)d->h);
    if (!d->with_boxes) return ns_errf(err, "training needs a boxes record before every image batch");
    for (int64_t j = 0; j < d->set.nboxes; j++)
        if (d->set.boxes[j].cls >= K)
            return ns_errf(err, "a box has class %lld; the model has %lld classes", (long long)d->set.boxes[j].cls,
                           (long long)K);
    int64_t steps = (d->n + cfg->batch - 1) / cfg->batch;
    ns_cnet_train_config c = *cfg;
    c.schedule.total_steps = (int64_t)cfg->epochs * steps;
    if (ns_lr_check(&c.schedule, steps, err) < 0) return -1;
    run r;
    int rc = run_init(&r, m, d, &c, K, err), start_epoch = 0;
    if (rc == 0 && c.resume) rc = ns_checkpoint_resume(r.opt, m, &start_epoch, err);
    if (rc == 0 && start_epoch >= c.epochs)
        rc = ns_errf(err, "the checkpoint has done %d epochs already (--epochs %d)", start_epoch, c.epochs);
    int end = c.stop_after > 0 && c.stop_after < c.epochs ? c.stop_after : c.epochs;
    if (rc == 0 && end <= start_epoch)
        rc = ns_errf(err, "the checkpoint has done %d epochs already (--stop-after %d)", start_epoch, c.stop_after);
    double t_start = ns_now();
    for (int epoch = start_epoch; rc == 0 && epoch < end; epoch++) {
        ns_cnet_epoch st = {.epoch = epoch + 1};
        double t0 = ns_now();
        if ((rc = train_epoch(&r, d, &c, epoch, K, steps, &st, err)) < 0) break;
        st.seconds = ns_now() - t0;
        st.images_per_s = (double)d->n / st.seconds;
        double done = ns_now() - t_start;
        ns_report_message(c.report,
                          "epoch %d/%d  loss %.4f (heatmap %.4f, size %.3f, offset %.4f)  lr %.4g  %.0f img/s  %.1fs  ETA %.0fs",
                          epoch + 1, c.epochs, st.loss, st.heat, st.size, st.offset,
                          ns_lr_at(&c.schedule, (int64_t)epoch * steps, steps), st.images_per_s, st.seconds,
                          done / (epoch + 1 - start_epoch) * (end - epoch - 1));
        if (last) *last = st;
        if (c.checkpoint) rc = ns_checkpoint_write(c.checkpoint, m, r.opt, epoch + 1, c.producer, NULL, NULL, err);
    }
    run_free(&r);
    return rc;
}

// --- detection ---------------------------------------------------------------------

int ns_cnet_detect(ns_model *m, const ns_det_data *d, int64_t batch, int64_t topk, float thresh, ns_det_boxes *dets,
                   double *seconds, const ns_reporter *report, ns_err *err) {
    int64_t K, size;
    if (ns_cnet_shape(m, &K, &size, err) < 0) return -1;
    if (d->h != size || d->w != size)
        return ns_errf(err, "the model takes %lldx%lld images, the data are %lldx%lld", (long long)size,
                       (long long)size, (long long)d->w, (long long)d->h);
    int64_t oh = size / NS_CNET_STRIDE, ow = oh, S = oh * ow, per = d->c * d->h * d->w;
    ns_engine e;
    if (ns_engine_init(&e, m, batch, 0, err) < 0) return -1;
    ns_engine_set_fused(&e, 1);
    ns_det_box *all = malloc((size_t)(d->n * topk + 1) * sizeof *all);
    float *sig = malloc((size_t)(K * S) * sizeof *sig);
    int64_t *counts = calloc((size_t)d->n + 1, sizeof *counts), total = 0;
    int rc = 0;
    if (!all || !sig || !counts) rc = ns_errf(err, "out of memory");
    double t0 = ns_now();
    ns_report_begin(report, "images", d->n);
    for (int64_t start = 0; rc == 0 && start < d->n; start += batch) {
        int64_t n = d->n - start < batch ? d->n - start : batch;
        const float *out = ns_engine_forward(&e, d->x + start * per, n, 0, err);
        if (!out) { rc = -1; break; }
        for (int64_t i = 0; i < n; i++) {
            counts[start + i] = ns_cnet_decode(out + i * (K + 4) * S, sig, K, oh, ow, d->h, d->w, topk, thresh,
                                               all + total);
            total += counts[start + i];
        }
        ns_report_update(report, start + n);
    }
    ns_report_end(report);
    if (seconds) *seconds = ns_now() - t0;
    ns_engine_free(&e);
    free(sig);
    if (rc == 0) rc = ns_cnet_pack_detections(dets, d, all, counts, total, err);
    free(all);
    free(counts);
    return rc;
}
