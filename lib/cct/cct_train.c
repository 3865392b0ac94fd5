// cct_train.c: CCT-Net's training stages (cct.h), as the official code runs
// them, with BCE on logits everywhere (y = 1 for the same class):
//
//   pretrain     G on balanced source pairs: BCE(G(xs), y); with unsup_pre
//                also on target pairs (an image and its second augmentation
//                = 1, two random images = 0).
//   adversarial  per iteration:
//     g_src_steps  G on source pairs: BCE(G(xs), y)   (only the first
//                  g_src_epochs epochs when that is set)
//     fs_steps     G on few-shot target pairs: BCE(G(xf), y)
//     d_steps      D: 1/2 [BCE(D(xs, s), m) + BCE(D(xt, G(xt)), 0)], s the
//                  true similarity or its flip (p = 1/2), m = 1[s = y];
//                  G's output is a constant there (detached)
//     g_steps      G against D on target pairs: BCE(D(xt, G(xt)), 1), the
//                  gradient flowing through D's input s into G; D's weights
//                  do not move
//   Adam for both nets; learning rates follow a per-step cosine from lr to
//   lr * lr_final over each stage. Both nets stay in training mode (batch
//   statistics) throughout, as the official loop's .train().
//
// Images of B pairs live in a run's x as (2B, P): first the B left images,
// then the B right ones; each is augmented (random crop, flip) independently,
// so a target "same" pair is one image under two augmentations.
#include "cct/cct.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"

void ns_cct_train_config_default(ns_cct_train_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->pre_epochs = 5;
    cfg->adv_epochs = 5;
    cfg->batch = 64;
    cfg->seed = 1;
    // The official rates (pretrain 2e-5, G 2e-6, D 1e-4) fine-tune a
    // pretrained ViT-B; a small CNN trained from scratch keeps their ratio
    // between G's stages, but not D's 50 x G: with D at 10 x G (1e-3, the
    // default until 2026-12-06) D wins the game and the stage lowers G's
    // target accuracy, with D at G's rate it lifts it (bench/RESULTS.md:
    // Fashion-MNIST 5/5, 3 seeds, K = 5: 15.6% against 63.3%).
    cfg->lr_pre = 1e-3;
    cfg->lr_g = 1e-4;
    cfg->lr_d = 1e-4;
    cfg->lr_final = 0.01;
    cfg->g_steps = 1;
    cfg->d_steps = 1;
    cfg->use_d_src = cfg->use_d_tgt = cfg->use_g_adv = 1;
    cfg->crop_pad = 2;
    cfg->flip_p = 0.5;
}

typedef struct trainer {
    const ns_cct_train_config *cfg;
    ns_cct_run g, d;
    int have_d;
    ns_optim *opt_g, *opt_d;
    ns_param *pg, *pd;
    int npg, npd;
    ns_augment aug;
    int augment;
    ns_cct_pairs src, tgt, fs;
    int have_fs;
    ns_rng rng;
    int64_t *i1, *i2;
    float *y, *s, *m, *dlogit, *ds, *prob;
    int g_holds_target;    // G's run holds its forward of the target pairs D just saw
    ns_lr_schedule sched;
    int64_t steps_per_epoch, step;
    // per-epoch sums
    double loss_g, loss_d;
    int64_t n_loss_g, n_loss_d, ok_g_src, n_g_src, ok_g_tgt, n_g_tgt, ok_d_src, n_d_src;
} trainer;

static void trainer_free(trainer *t) {
    ns_cct_run_free(&t->g);
    if (t->have_d) ns_cct_run_free(&t->d);
    ns_optim_free(t->opt_g);
    ns_optim_free(t->opt_d);
    free(t->pg);
    free(t->pd);
    if (t->augment) ns_augment_free(&t->aug);
    ns_cct_pairs_free(&t->src);
    ns_cct_pairs_free(&t->tgt);
    if (t->have_fs) ns_cct_pairs_free(&t->fs);
    free(t->i1);
    free(t->i2);
    free(t->y);
    free(t->s);
    free(t->m);
    free(t->dlogit);
    free(t->ds);
    free(t->prob);
}

static int make_optim(ns_cct_run *r, ns_param **p, int *n, ns_optim **opt, ns_err *err) {
    if (ns_cct_params(r, p, n, err) < 0) return -1;
    if (*n == 0) return ns_errf(err, "nothing to train: the net has no trainable parameter");
    ns_optim_config oc;
    ns_optim_config_default(&oc, NS_OPTIM_ADAM);
    *opt = ns_optim_create(&oc, *p, *n, err);
    return *opt ? 0 : -1;
}

static int trainer_init(trainer *t, ns_cct_net *G, ns_cct_net *D, const ns_samples *source,
                        const ns_samples *target, const ns_samples *fewshot, const ns_cct_train_config *cfg,
                        ns_err *err) {
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    const int64_t B = cfg->batch;
    if (B < 1) return ns_errf(err, "a batch of %lld pairs", (long long)B);
    if (source->numel != G->backbone.nodes[0].numel || target->numel != source->numel ||
        (fewshot && fewshot->numel != source->numel))
        return ns_errf(err, "the images do not have the backbone's input size (%lld values)",
                       (long long)G->backbone.nodes[0].numel);
    if (ns_cct_pairs_init(&t->src, source->y, source->n, err) < 0) return ns_err_prefix(err, "source");
    if (ns_cct_pairs_init(&t->tgt, NULL, target->n, err) < 0) return ns_err_prefix(err, "target");
    if (fewshot && cfg->fs_steps > 0) {
        if (ns_cct_pairs_init(&t->fs, fewshot->y, fewshot->n, err) < 0) return ns_err_prefix(err, "few-shot");
        t->have_fs = 1;
    }
    if (ns_cct_run_init(&t->g, G, B, 1, err) < 0) return -1;
    t->g.bb.seed = cfg->seed;
    if (make_optim(&t->g, &t->pg, &t->npg, &t->opt_g, err) < 0) return -1;
    if (cfg->adv_epochs > 0) {
        if (!D) return ns_errf(err, "the adversarial stage needs D");
        if (D->embed != G->embed || D->backbone.nodes[0].numel != G->backbone.nodes[0].numel)
            return ns_errf(err, "D's backbone does not match G's (input or embedding width)");
        if (ns_cct_run_init(&t->d, D, B, 1, err) < 0) return -1;
        t->have_d = 1;
        t->d.bb.seed = cfg->seed ^ 0x44;
        if (make_optim(&t->d, &t->pd, &t->npd, &t->opt_d, err) < 0) return -1;
    }
    const ns_node *in = &G->backbone.nodes[0];
    if (cfg->crop_pad > 0 || cfg->flip_p > 0) {
        if (ns_augment_init(&t->aug, 2 * B, in->shape[0], in->shape[1], in->shape[2], cfg->crop_pad, cfg->flip_p,
                            err) < 0)
            return -1;
        t->augment = 1;
    }
    size_t fb = (size_t)B * sizeof(float);
    t->i1 = malloc((size_t)B * sizeof *t->i1);
    t->i2 = malloc((size_t)B * sizeof *t->i2);
    t->y = malloc(fb);
    t->s = malloc(fb);
    t->m = malloc(fb);
    t->dlogit = malloc(fb);
    t->ds = malloc(fb);
    t->prob = malloc(fb);
    if (!t->i1 || !t->i2 || !t->y || !t->s || !t->m || !t->dlogit || !t->ds || !t->prob)
        return ns_errf(err, "out of memory");
    ns_rng_seed(&t->rng, cfg->seed ^ 0x636374ull);
    return 0;
}

// Draws B pairs from a sampler into run r's images (augmented) and t->y.
static int load_pairs(trainer *t, ns_cct_run *r, const ns_cct_pairs *p, const ns_samples *s, ns_err *err) {
    const int64_t B = t->cfg->batch, P = r->P;
    ns_cct_pairs_draw(p, &t->rng, B, t->i1, t->i2, t->y);
    for (int64_t b = 0; b < B; b++) {
        memcpy(r->x + b * P, s->x + t->i1[b] * P, (size_t)P * sizeof(float));
        memcpy(r->x + (B + b) * P, s->x + t->i2[b] * P, (size_t)P * sizeof(float));
    }
    if (t->augment && ns_augment_batch(&t->aug, r->x, r->x, 2 * B, &t->rng, err) < 0) return -1;
    return 0;
}

// d BCE / d logit into t->dlogit (the op accumulates, so it starts from 0).
static void bce_grad(trainer *t, float scale, const float *logit, const float *target) {
    memset(t->dlogit, 0, (size_t)t->cfg->batch * sizeof(float));
    ns_bce_logits_backward(t->dlogit, NULL, scale, logit, target, NULL, t->cfg->batch);
}

static int64_t count_right(const float *logit, const float *target, int64_t n) {
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) ok += (logit[i] >= 0) == (target[i] >= 0.5f);
    return ok;
}

// A supervised step of G on pairs from p over s: BCE(G, y).
static int g_supervised(trainer *t, const ns_cct_pairs *p, const ns_samples *s, double lr, int source,
                        ns_err *err) {
    const int64_t B = t->cfg->batch;
    t->g_holds_target = 0;
    if (load_pairs(t, &t->g, p, s, err) < 0) return -1;
    const float *logit = ns_cct_forward(&t->g, NULL, NULL, NULL, B, 1, err);
    if (!logit) return -1;
    t->loss_g += ns_bce_logits_forward(logit, t->y, NULL, B);
    t->n_loss_g++;
    if (source) {
        t->ok_g_src += count_right(logit, t->y, B);
        t->n_g_src += B;
    } else {
        t->ok_g_tgt += count_right(logit, t->y, B);
        t->n_g_tgt += B;
    }
    bce_grad(t, 1.0f, logit, t->y);
    ns_cct_zero_grad(&t->g);
    ns_cct_backward(&t->g, t->dlogit, NULL, 0);
    ns_optim_step(t->opt_g, lr);
    return 0;
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// G's probabilities on B fresh target pairs (G's run holds the pairs after).
static int g_on_target(trainer *t, const ns_samples *target, ns_err *err) {
    const int64_t B = t->cfg->batch;
    if (load_pairs(t, &t->g, &t->tgt, target, err) < 0) return -1;
    const float *logit = ns_cct_forward(&t->g, NULL, NULL, NULL, B, 1, err);
    if (!logit) return -1;
    for (int64_t i = 0; i < B; i++) t->prob[i] = sigmoidf(logit[i]);
    t->ok_g_tgt += count_right(logit, t->y, B);
    t->n_g_tgt += B;
    return 0;
}

static int d_step(trainer *t, const ns_samples *source, const ns_samples *target, double lr, ns_err *err) {
    const ns_cct_train_config *cfg = t->cfg;
    const int64_t B = cfg->batch;
    ns_cct_zero_grad(&t->d);
    double loss = 0;
    int terms = cfg->use_d_src + cfg->use_d_tgt;
    float w = 1.0f / (float)terms; // the official mean of the two terms
    if (cfg->use_d_src) {
        if (load_pairs(t, &t->d, &t->src, source, err) < 0) return -1;
        ns_cct_flip_similarity(&t->rng, t->y, B, t->s, t->m);
        const float *logit = ns_cct_forward(&t->d, NULL, NULL, t->s, B, 1, err);
        if (!logit) return -1;
        loss += w * ns_bce_logits_forward(logit, t->m, NULL, B);
        t->ok_d_src += count_right(logit, t->m, B);
        t->n_d_src += B;
        bce_grad(t, w, logit, t->m);
        ns_cct_backward(&t->d, t->dlogit, NULL, 0);
    }
    if (cfg->use_d_tgt) {
        if (g_on_target(t, target, err) < 0) return -1;
        memcpy(t->d.x, t->g.x, (size_t)(2 * B * t->g.P) * sizeof(float));
        const float *logit = ns_cct_forward(&t->d, NULL, NULL, t->prob, B, 1, err);
        if (!logit) return -1;
        for (int64_t i = 0; i < B; i++) t->m[i] = 0;
        loss += w * ns_bce_logits_forward(logit, t->m, NULL, B);
        bce_grad(t, w, logit, t->m);
        ns_cct_backward(&t->d, t->dlogit, NULL, 0);
        t->g_holds_target = 1;
    }
    ns_optim_step(t->opt_d, lr);
    t->loss_d += loss;
    t->n_loss_d++;
    return 0;
}

// G against D: BCE(D(xt, G(xt)), 1), through D's input s. The first G step
// after D's uses the target pairs D just saw and G's forward of them (G has
// not changed since), as the official loop does; later ones draw new pairs.
static int g_adversarial(trainer *t, const ns_samples *target, double lr, ns_err *err) {
    const int64_t B = t->cfg->batch;
    if (!t->g_holds_target && g_on_target(t, target, err) < 0) return -1;
    t->g_holds_target = 0;
    memcpy(t->d.x, t->g.x, (size_t)(2 * B * t->g.P) * sizeof(float));
    const float *logit = ns_cct_forward(&t->d, NULL, NULL, t->prob, B, 1, err);
    if (!logit) return -1;
    for (int64_t i = 0; i < B; i++) t->m[i] = 1;
    t->loss_g += ns_bce_logits_forward(logit, t->m, NULL, B);
    t->n_loss_g++;
    bce_grad(t, 1.0f, logit, t->m);
    ns_cct_backward(&t->d, t->dlogit, t->ds, 1); // D's head only: ds = dL/ds
    for (int64_t i = 0; i < B; i++) t->dlogit[i] = t->ds[i] * t->prob[i] * (1 - t->prob[i]);
    ns_cct_zero_grad(&t->g);
    ns_cct_backward(&t->g, t->dlogit, NULL, 0);
    ns_optim_step(t->opt_g, lr);
    return 0;
}

static void epoch_reset(trainer *t) {
    t->loss_g = t->loss_d = 0;
    t->n_loss_g = t->n_loss_d = t->ok_g_src = t->n_g_src = t->ok_g_tgt = t->n_g_tgt = t->ok_d_src = t->n_d_src = 0;
}

static double ratio(int64_t a, int64_t b) { return b ? (double)a / (double)b : NAN; }

static void epoch_report(trainer *t, const char *stage, int epoch, int epochs, double seconds,
                         ns_cct_epoch_stats *st) {
    st->stage = stage;
    st->epoch = epoch;
    st->loss_g = t->n_loss_g ? t->loss_g / (double)t->n_loss_g : NAN;
    st->loss_d = t->n_loss_d ? t->loss_d / (double)t->n_loss_d : NAN;
    st->acc_g_src = ratio(t->ok_g_src, t->n_g_src);
    st->acc_g_tgt = ratio(t->ok_g_tgt, t->n_g_tgt);
    st->acc_d_src = ratio(t->ok_d_src, t->n_d_src);
    st->seconds = seconds;
    ns_report_message(t->cfg->report,
                      "%s epoch %d/%d: loss G %.4f, loss D %.4f, acc G (source pairs) %.3f, acc G (target pairs) "
                      "%.3f, acc D (source) %.3f, %.1fs",
                      stage, epoch, epochs, st->loss_g, st->loss_d, st->acc_g_src, st->acc_g_tgt, st->acc_d_src,
                      seconds);
    if (t->cfg->log)
        fprintf(t->cfg->log, "%s\t%d\t%.6f\t%.6f\t%.4f\t%.4f\t%.4f\t%.2f\n", stage, epoch, st->loss_g, st->loss_d,
                st->acc_g_src, st->acc_g_tgt, st->acc_d_src, seconds);
}

static int set_schedule(trainer *t, double lr, int epochs, ns_err *err) {
    memset(&t->sched, 0, sizeof t->sched);
    t->sched.kind = NS_LR_COSINE;
    t->sched.base_lr = lr;
    t->sched.min_lr = lr * t->cfg->lr_final;
    t->sched.total_steps = (int64_t)epochs * t->steps_per_epoch;
    t->step = 0;
    return ns_lr_check(&t->sched, t->steps_per_epoch, err);
}

static double lr_scaled(const trainer *t, double base) {
    return ns_lr_at(&t->sched, t->step, t->steps_per_epoch) * (base / t->sched.base_lr);
}

int ns_cct_train(ns_cct_net *G, ns_cct_net *D, const ns_samples *source, const ns_samples *target,
                 const ns_samples *fewshot, const ns_cct_train_config *cfg, ns_cct_epoch_stats *last,
                 ns_err *err) {
    memset(last, 0, sizeof *last);
    if (cfg->pre_epochs < 0 || cfg->adv_epochs < 0) return ns_errf(err, "negative epochs");
    if (cfg->adv_epochs > 0 && cfg->use_d_src + cfg->use_d_tgt == 0 && cfg->use_g_adv)
        return ns_errf(err, "the adversarial loss needs D trained on at least one term");
    if (cfg->fs_steps > 0 && !fewshot) return ns_errf(err, "few-shot steps need few-shot target samples");
    trainer t;
    if (trainer_init(&t, G, D, source, target, fewshot, cfg, err) < 0) {
        trainer_free(&t);
        return -1;
    }
    const int64_t B = cfg->batch;
    int rc = 0;
    // G's pretraining
    int64_t pairs = cfg->pairs_per_epoch > 0 ? cfg->pairs_per_epoch : source->n;
    t.steps_per_epoch = (pairs + B - 1) / B;
    if (cfg->pre_epochs > 0) rc = set_schedule(&t, cfg->lr_pre, cfg->pre_epochs, err);
    for (int ep = 1; rc == 0 && ep <= cfg->pre_epochs; ep++) {
        double t0 = ns_now();
        epoch_reset(&t);
        ns_report_begin(cfg->report, "pairs", t.steps_per_epoch * B);
        for (int64_t it = 0; rc == 0 && it < t.steps_per_epoch; it++, t.step++) {
            double lr = lr_scaled(&t, cfg->lr_pre);
            rc = g_supervised(&t, &t.src, source, lr, 1, err);
            if (rc == 0 && cfg->unsup_pre) rc = g_supervised(&t, &t.tgt, target, lr, 0, err);
            ns_report_update(cfg->report, (it + 1) * B);
        }
        ns_report_end(cfg->report);
        if (rc == 0) epoch_report(&t, "pretrain", ep, cfg->pre_epochs, ns_now() - t0, last);
    }
    // the adversarial stage
    pairs = cfg->pairs_per_epoch > 0 ? cfg->pairs_per_epoch : target->n;
    t.steps_per_epoch = (pairs + B - 1) / B;
    if (rc == 0 && cfg->adv_epochs > 0) rc = set_schedule(&t, cfg->lr_g, cfg->adv_epochs, err);
    for (int ep = 1; rc == 0 && ep <= cfg->adv_epochs; ep++) {
        double t0 = ns_now();
        epoch_reset(&t);
        int src_steps = cfg->g_src_epochs > 0 && ep > cfg->g_src_epochs ? 0 : cfg->g_src_steps;
        ns_report_begin(cfg->report, "pairs", t.steps_per_epoch * B);
        for (int64_t it = 0; rc == 0 && it < t.steps_per_epoch; it++, t.step++) {
            double lr_g = lr_scaled(&t, cfg->lr_g), lr_d = lr_scaled(&t, cfg->lr_d);
            for (int k = 0; rc == 0 && k < src_steps; k++) rc = g_supervised(&t, &t.src, source, lr_g, 1, err);
            for (int k = 0; rc == 0 && t.have_fs && k < cfg->fs_steps; k++)
                rc = g_supervised(&t, &t.fs, fewshot, lr_g, 0, err);
            for (int k = 0; rc == 0 && cfg->use_d_src + cfg->use_d_tgt > 0 && k < cfg->d_steps; k++)
                rc = d_step(&t, source, target, lr_d, err);
            for (int k = 0; rc == 0 && cfg->use_g_adv && k < cfg->g_steps; k++)
                rc = g_adversarial(&t, target, lr_g, err);
            ns_report_update(cfg->report, (it + 1) * B);
        }
        ns_report_end(cfg->report);
        if (rc == 0) epoch_report(&t, "adversarial", ep, cfg->adv_epochs, ns_now() - t0, last);
    }
    trainer_free(&t);
    return rc;
}
