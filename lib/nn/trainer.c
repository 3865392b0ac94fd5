// trainer.c: the training loop (trainer.h).
#include "nn/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stream/augment.h"
#include "nn/dist.h"
#include "nn/engine.h"
#include "nn/ops.h"
#include "base/report.h"
#include "base/rng.h"

// Everything one run holds, allocated once.
typedef struct run {
    ns_engine e;
    ns_optim *opt;
    ns_param *params;
    int nparams;
    ns_augment aug;
    int augment;
    int64_t *order;
    float *x, *dlogits, *w;  // (batch, numel), (batch, K), (batch)
    int32_t *y;              // (batch)
    // data-parallel (cfg->dist of W > 1 ranks): the global sample count, and
    // the parameter gradients in one buffer for the sum over the ranks
    int64_t total;
    int rank, ranks;
    float *grads;
} run;

static void run_free(run *r) {
    ns_engine_free(&r->e);
    ns_optim_free(r->opt);
    free(r->params);
    if (r->augment) ns_augment_free(&r->aug);
    free(r->order);
    free(r->x);
    free(r->dlogits);
    free(r->w);
    free(r->y);
    free(r->grads);
}

static int run_init(run *r, ns_model *m, const ns_samples *train, const ns_train_config *cfg, ns_err *err) {
    memset(r, 0, sizeof *r);
    if (ns_engine_init(&r->e, m, cfg->batch, 1, err) < 0) return -1;
    ns_engine_set_fused(&r->e, 1); // only the logits and parameter gradients are read
    r->e.seed = cfg->seed;
    r->ranks = cfg->dist ? cfg->dist->size : 1;
    r->rank = cfg->dist ? cfg->dist->rank : 0;
    if (r->rank > 0) r->e.seed += (uint64_t)r->rank * 0x9E3779B97F4A7C15ull; // dropout masks per rank
    r->total = train->n;
    if (r->ranks > 1) { // the global count: every rank's samples
        double n = (double)train->n;
        if (cfg->dist->sum_f64(&n, 1, err) < 0) return -1;
        r->total = (int64_t)n;
    }
    for (int t = 0; t < m->ntensors; t++)
        if (r->e.param_grad[t] && cfg->trainable && !cfg->trainable[t]) ns_engine_set_trainable(&r->e, t, 0, err);
    r->params = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *r->params);
    if (!r->params) return ns_errf(err, "out of memory");
    for (int t = 0; t < m->ntensors; t++) {
        if (!r->e.param_grad[t]) continue;
        ns_named_tensor *nt = &m->tensors[t];
        r->params[r->nparams++] = (ns_param){nt->name, nt->t.data, r->e.param_grad[t], nt->t.numel,
                                             nt->t.ndim, nt->t.shape, cfg->decay_norm_and_bias || nt->t.ndim > 1};
    }
    if (r->nparams == 0) return ns_errf(err, "nothing to train: every parameter is frozen");
    if (!(r->opt = ns_optim_create(&cfg->optim, r->params, r->nparams, err))) return -1;
    const ns_node *in = &m->nodes[0];
    r->augment = cfg->crop_pad > 0 || cfg->flip_p > 0;
    if (r->augment) {
        if (in->ndim != 3) return ns_errf(err, "augmentation needs image inputs (C x H x W)");
        if (ns_augment_init(&r->aug, cfg->batch, in->shape[0], in->shape[1], in->shape[2], cfg->crop_pad,
                            cfg->flip_p, err) < 0) {
            r->augment = 0;
            return -1;
        }
    }
    int64_t k = m->nodes[m->output].numel;
    r->order = malloc((size_t)r->total * sizeof *r->order);
    r->x = ns_aligned_alloc((size_t)(cfg->batch * in->numel) * sizeof *r->x);
    r->dlogits = ns_aligned_alloc((size_t)(cfg->batch * k) * sizeof *r->dlogits);
    r->w = malloc((size_t)cfg->batch * sizeof *r->w);
    r->y = malloc((size_t)cfg->batch * sizeof *r->y);
    if (!r->order || !r->x || !r->dlogits || !r->w || !r->y) return ns_errf(err, "out of memory");
    if (r->ranks > 1 && !(r->grads = malloc((size_t)ns_dist_grads_numel(r->params, r->nparams) * sizeof *r->grads)))
        return ns_errf(err, "out of memory");
    return 0;
}

// Synchronised batch norm on a rank that holds no sample of a global batch:
// the sums the others make (ops.h, ns_batchnorm_set_sync), of zeros, in the
// engine's order: per batch norm 2C then C values forward, 2C + 1 backward.
static int bn_sync_idle(const ns_model *m, const ns_train_config *cfg, ns_err *err) {
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < m->nnodes; k++) {
            const ns_node *node = &m->nodes[pass == 0 ? k : m->nnodes - 1 - k];
            if (node->op != NS_OP_BATCHNORM) continue;
            const int64_t C = node->shape[0];
            double zeros[2 * C + 1];
            memset(zeros, 0, sizeof zeros);
            if (pass == 0 && (cfg->dist->sum_f64(zeros, 2 * C, err) < 0 || cfg->dist->sum_f64(zeros, C, err) < 0))
                return -1;
            if (pass == 1 && cfg->dist->sum_f64(zeros, 2 * C + 1, err) < 0) return -1;
        }
    return 0;
}

int ns_checkpoint_resume(ns_optim *opt, const ns_model *m, int *start_epoch, ns_err *err) {
    *start_epoch = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const ns_named_tensor *nt = &m->tensors[t];
        if (strcmp(nt->name, "train.epoch") == 0) {
            *start_epoch = (int)((const float *)nt->t.data)[0];
            continue;
        }
        if (ns_optim_load(opt, nt->name, &nt->t, err) < 0) return -1;
    }
    return ns_optim_load_finish(opt, err);
}

int ns_checkpoint_write(const char *path, const ns_model *m, const ns_optim *opt, int epoch,
                        const char *producer, int (*extra)(void *ctx, ns_writer *w, ns_err *err),
                        void *extra_ctx, ns_err *err) {
    ns_output out;
    if (ns_output_open(&out, path, err) < 0) return -1;
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_map meta;
    ns_map_init(&meta);
    if (producer) ns_map_str(&meta, "general.producer", producer);
    ns_map_i64(&meta, "train.epoch", epoch);
    int rc = ns_model_write(m, &w, &meta, 0, err);
    ns_map_free(&meta);
    ns_tensor ep;
    int64_t one = 1;
    if (rc == 0 && (rc = ns_tensor_alloc(&ep, NS_F32, 1, &one, err)) == 0) {
        ((float *)ep.data)[0] = (float)epoch;
        rc = ns_write_tensor(&w, "train.epoch", &ep, NULL, err);
        ns_tensor_free(&ep);
    }
    for (int i = 0; rc == 0 && i < ns_optim_state_count(opt); i++) {
        const char *name;
        ns_tensor view;
        rc = ns_optim_state_tensor(opt, i, &name, &view, err);
        if (rc == 0) rc = ns_write_tensor(&w, name, &view, NULL, err);
    }
    if (rc == 0 && extra) rc = extra(extra_ctx, &w, err);
    ns_writer_free(&w);
    if (rc < 0) {
        ns_output_abort(&out);
        return ns_err_prefix(err, "checkpoint %s", path);
    }
    return ns_output_commit(&out, err);
}

int ns_evaluate(ns_model *m, const ns_samples *s, int64_t batch, double *accuracy, ns_err *err) {
    ns_engine e;
    if (ns_engine_init(&e, m, batch, 0, err) < 0) return -1;
    ns_engine_set_fused(&e, 1);
    int64_t k = m->nodes[m->output].numel, correct = 0, counted = 0;
    for (int64_t start = 0; start < s->n; start += batch) {
        int64_t n = s->n - start < batch ? s->n - start : batch;
        const float *out = ns_engine_forward(&e, s->x + start * s->numel, n, 0, err);
        if (!out) {
            ns_engine_free(&e);
            return -1;
        }
        for (int64_t i = 0; i < n; i++) {
            int32_t y = s->y[start + i];
            if (y < 0) continue;
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++) if (out[i * k + j] > out[i * k + best]) best = j;
            correct += best == y;
            counted++;
        }
    }
    ns_engine_free(&e);
    *accuracy = counted ? (double)correct / (double)counted : NAN;
    return 0;
}

static int check_labels(const ns_samples *s, int64_t k, const char *what, ns_err *err) {
    for (int64_t i = 0; i < s->n; i++)
        if (s->y[i] < 0 || s->y[i] >= k)
            return ns_errf(err, "%s sample %lld has label %d; the model has %lld classes", what,
                           (long long)s->ids[i], s->y[i], (long long)k);
    return 0;
}

// One epoch over train in a shuffled order. Returns mean loss and accuracy.
static int train_epoch(run *r, ns_model *m, const ns_samples *train, const ns_train_config *cfg, int epoch,
                       int64_t steps_per_epoch, double *loss_out, double *acc_out, ns_err *err) {
    ns_rng rng, aug_rng; // one shuffle for every rank; augmentation per rank
    ns_rng_seed(&rng, ns_rand_u64(cfg->seed, (uint64_t)epoch));
    for (int64_t i = 0; i < r->total; i++) r->order[i] = i;
    ns_rng_shuffle(&rng, r->order, r->total);
    ns_rng_seed_stream(&aug_rng, cfg->seed, (uint64_t)epoch, (uint64_t)r->rank);
    int64_t k = m->nodes[m->output].numel, numel = train->numel, correct = 0;
    double loss_sum = 0;
    ns_report_begin(cfg->report, "images", r->total);
    for (int64_t b = 0; b < steps_per_epoch; b++) {
        int64_t start = b * cfg->batch, global_n = r->total - start < cfg->batch ? r->total - start : cfg->batch;
        int64_t n = 0; // this rank's samples of the global batch (all of them with one rank)
        for (int64_t i = 0; i < global_n; i++) {
            int64_t g = r->order[start + i];
            if (g % r->ranks != r->rank) continue;
            int64_t s = g / r->ranks;
            memcpy(r->x + n * numel, train->x + s * numel, (size_t)numel * sizeof *r->x);
            r->y[n] = train->y[s];
            r->w[n] = cfg->sample_weights ? cfg->sample_weights[s] : 1.0f;
            n++;
        }
        if (r->augment && ns_augment_batch(&r->aug, r->x, r->x, n, r->ranks > 1 ? &aug_rng : &rng, err) < 0) return -1;
        if (n == 0) { // nothing of this batch here: a zero gradient to the sum
            if (cfg->sync_bn && bn_sync_idle(m, cfg, err) < 0) return -1;
            ns_engine_zero_grad(&r->e);
            if (ns_dist_sum_grads(cfg->dist, r->params, r->nparams, r->grads, err) < 0) return -1;
            goto step;
        }
        r->e.step = (uint64_t)epoch * (uint64_t)steps_per_epoch + (uint64_t)b; // dropout masks
        const float *logits = ns_engine_forward(&r->e, r->x, n, 1, err);
        if (!logits) return -1;
        const float *w = cfg->sample_weights ? r->w : NULL;
        float loss = ns_softmax_ce_forward(NULL, logits, r->y, w, (float)cfg->label_smoothing, n, k);
        if (!isfinite(loss))
            return ns_errf(err, "epoch %d, batch %lld: the loss is %g (lower the learning rate?)", epoch + 1,
                           (long long)b, loss);
        loss_sum += (double)loss * (double)n;
        for (int64_t i = 0; i < n; i++) {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
            correct += best == r->y[i];
        }
        memset(r->dlogits, 0, (size_t)(n * k) * sizeof *r->dlogits);
        // the mean over the global batch: this rank's share of it
        float share = r->ranks > 1 ? (float)((double)n / (double)global_n) : 1.0f;
        ns_softmax_ce_backward(r->dlogits, share, logits, r->y, w, (float)cfg->label_smoothing, n, k);
        ns_engine_zero_grad(&r->e);
        ns_engine_backward(&r->e, r->dlogits);
        if (r->ranks > 1 && ns_dist_sum_grads(cfg->dist, r->params, r->nparams, r->grads, err) < 0) return -1;
    step:
        if (cfg->after_backward)
            cfg->after_backward(cfg->after_backward_ctx, &r->e, (int64_t)epoch * steps_per_epoch + b);
        ns_optim_step(r->opt, ns_lr_at(&cfg->schedule, (int64_t)epoch * steps_per_epoch + b, steps_per_epoch));
        ns_report_update(cfg->report, start + global_n);
    }
    ns_report_end(cfg->report);
    if (r->ranks > 1) {
        double sums[2] = {loss_sum, (double)correct};
        if (cfg->dist->sum_f64(sums, 2, err) < 0) return -1;
        loss_sum = sums[0];
        correct = (int64_t)sums[1];
    }
    *loss_out = loss_sum / (double)r->total;
    *acc_out = (double)correct / (double)r->total;
    return 0;
}

int ns_train(ns_model *m, const ns_samples *train, const ns_samples *val, const ns_train_config *cfg,
             ns_epoch_stats *last, ns_err *err) {
    int64_t k = m->nodes[m->output].numel;
    if (check_labels(train, k, "training", err) < 0 || (val && check_labels(val, k, "validation", err) < 0))
        return -1;
    ns_train_config c = *cfg;
    run r;
    int rc = run_init(&r, m, train, &c, err), start_epoch = 0;
    int64_t steps_per_epoch = (r.total + cfg->batch - 1) / cfg->batch;
    c.schedule.total_steps = (int64_t)cfg->epochs * steps_per_epoch;
    if (rc == 0) rc = ns_lr_check(&c.schedule, steps_per_epoch, err);
    if (rc == 0 && c.resume) rc = ns_checkpoint_resume(r.opt, m, &start_epoch, err);
    if (rc == 0 && start_epoch >= c.epochs)
        rc = ns_errf(err, "the checkpoint has done %d epochs already (--epochs %d)", start_epoch, c.epochs);
    if (rc == 0 && c.stop_after > 0 && c.stop_after <= start_epoch)
        rc = ns_errf(err, "the checkpoint has done %d epochs already (--stop-after %d)", start_epoch, c.stop_after);
    if (rc == 0 && c.log && start_epoch == 0)
        fprintf(c.log, "epoch\tloss\ttrain_acc\tval_acc\tlr\tseconds\timages_per_s\n");
    const int sync_bn = c.sync_bn && r.ranks > 1;
    if (sync_bn) ns_batchnorm_set_sync(c.dist->sum_f64);
    c.sync_bn = sync_bn;
    double t_start = ns_now();
    int end_epoch = c.stop_after > 0 && c.stop_after < c.epochs ? c.stop_after : c.epochs;
    for (int epoch = start_epoch; rc == 0 && epoch < end_epoch; epoch++) {
        double t0 = ns_now(), loss = 0, acc = 0, val_acc = NAN;
        double lr = ns_lr_at(&c.schedule, (int64_t)epoch * steps_per_epoch, steps_per_epoch);
        if ((rc = train_epoch(&r, m, train, &c, epoch, steps_per_epoch, &loss, &acc, err)) < 0) break;
        double t_train = ns_now() - t0;
        if (val && (rc = ns_evaluate(m, val, c.batch, &val_acc, err)) < 0) break;
        double secs = ns_now() - t0, done = ns_now() - t_start;
        int left = end_epoch - epoch - 1;
        if (c.report) {
            char val_text[32] = "";
            if (val) snprintf(val_text, sizeof val_text, "  val %.2f%%", 100 * val_acc);
            ns_report_message(c.report, "epoch %d/%d  loss %.4f  train %.2f%%%s  lr %.4g  %.0f img/s  %.1fs  ETA %.0fs",
                              epoch + 1, c.epochs, loss, 100 * acc, val_text, lr, (double)r.total / t_train, secs,
                              done / (epoch + 1 - start_epoch) * left);
        }
        if (c.log) {
            fprintf(c.log, "%d\t%.6f\t%.6f\t%.6f\t%.6g\t%.3f\t%.1f\n", epoch + 1, loss, acc, val_acc, lr, secs,
                    (double)r.total / t_train);
            fflush(c.log);
        }
        if (last) *last = (ns_epoch_stats){epoch + 1, loss, acc, val_acc, lr, secs};
        if (c.checkpoint && r.rank == 0)
            rc = ns_checkpoint_write(c.checkpoint, m, r.opt, epoch + 1, c.producer, c.checkpoint_extra,
                                     c.checkpoint_extra_ctx, err);
    }
    if (sync_bn) ns_batchnorm_set_sync(NULL);
    run_free(&r);
    return rc;
}
