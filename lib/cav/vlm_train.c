// vlm_train.c: training a clip-small model with CLIP's contrastive loss, and
// its quality checks: zero-shot accuracy and retrieval AUC (vlm_train.h).
//
// Dimensions: B batch, E joint width, V vocabulary, D token width.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/engine.h"
#include "nn/ops.h"
#include "base/report.h"
#include "base/rng.h"
#include "base/vecmath.h"
#include "cav/vlm_train.h"

// Everything one run holds, allocated once.
typedef struct run {
    ns_engine e;
    ns_optim *opt;
    ns_param *params;
    int nparams;
    int64_t *order;               // (n) this epoch's sample order
    float *x;                     // (B, C*H*W) the batch's images
    const char **texts;           // (B) the batch's captions
    ns_token_lists tok;
    float *txt, *pooled, *dpooled; // (B, E), (B, D), (B, D)
    float *dimg, *dtxt;           // (B, E)
    float *work;                  // ns_clip_loss_work_floats(B, E)
    ns_tensor gemb, gw, gb, gt;   // bag-of-words tower and logit scale gradients
    ns_engine te;                 // the transformer tower (te.model NULL for a bag of words)
    float *ids;                   // (B, L) its input
    char *text_names;             // its parameters' names for the optimiser, "text." + name, TEXT_NAME each
} run;

#define TEXT_NAME (NS_NAME_MAX + 6)

static void run_free(run *r) {
    ns_engine_free(&r->e);
    if (r->te.model) ns_engine_free(&r->te);
    free(r->ids);
    free(r->text_names);
    ns_optim_free(r->opt);
    free(r->params);
    free(r->order);
    free(r->x);
    free(r->texts);
    ns_token_lists_free(&r->tok);
    free(r->txt);
    free(r->pooled);
    free(r->dpooled);
    free(r->dimg);
    free(r->dtxt);
    free(r->work);
    ns_tensor_free(&r->gemb);
    ns_tensor_free(&r->gw);
    ns_tensor_free(&r->gb);
    ns_tensor_free(&r->gt);
}

static void add_param(run *r, const char *name, ns_tensor *value, const ns_tensor *grad, int decay) {
    r->params[r->nparams++] = (ns_param){name, value->data, grad->data, value->numel, value->ndim, value->shape, decay};
}

static int run_init(run *r, ns_vlm *v, const ns_samples *train, const ns_vlm_train_config *cfg, ns_err *err) {
    memset(r, 0, sizeof *r);
    ns_model *m = &v->image;
    int64_t B = cfg->batch, E = v->dim, D = v->text_dim;
    if (ns_engine_init(&r->e, m, B, 1, err) < 0) return -1;
    ns_engine_set_fused(&r->e, 1); // only the output and parameter gradients are read
    r->e.seed = cfg->seed;
    const ns_node *head = &m->nodes[m->output];
    for (int t = 0; t < m->ntensors; t++) {
        int in_head = 0;
        for (int p = 0; p < NS_MAX_PARAMS; p++) in_head |= head->params[p] == t;
        if (r->e.param_grad[t] && cfg->freeze_image && !in_head && ns_engine_set_trainable(&r->e, t, 0, err) < 0)
            return -1;
    }
    int bow = v->text_kind == NS_TEXT_BOW;
    if (bow && (ns_tensor_alloc(&r->gemb, NS_F32, v->embedding.ndim, v->embedding.shape, err) < 0 ||
                ns_tensor_alloc(&r->gw, NS_F32, v->proj_weight.ndim, v->proj_weight.shape, err) < 0 ||
                ns_tensor_alloc(&r->gb, NS_F32, v->proj_bias.ndim, v->proj_bias.shape, err) < 0))
        return -1;
    if (ns_tensor_alloc(&r->gt, NS_F32, v->logit_scale.ndim, v->logit_scale.shape, err) < 0) return -1;
    if (!bow) {
        if (ns_engine_init(&r->te, &v->text, B, 1, err) < 0) {
            r->te.model = NULL;
            return -1;
        }
        ns_engine_set_fused(&r->te, 1);
        if (!(r->ids = malloc((size_t)(B * v->text_shape.context) * sizeof *r->ids)))
            return ns_errf(err, "out of memory (batch %lld)", (long long)B);
    }
    r->params = calloc((size_t)m->ntensors + (size_t)v->text.ntensors + 4, sizeof *r->params);
    if (!r->params) return ns_errf(err, "out of memory");
    for (int t = 0; t < m->ntensors; t++) {
        if (!r->e.param_grad[t]) continue;
        ns_named_tensor *nt = &m->tensors[t];
        r->params[r->nparams++] = (ns_param){nt->name, nt->t.data, r->e.param_grad[t], nt->t.numel, nt->t.ndim,
                                             nt->t.shape, nt->t.ndim > 1};
    }
    // CLIP decays neither embeddings nor gains, biases and the logit scale.
    if (!bow && !(r->text_names = malloc((size_t)v->text.ntensors * TEXT_NAME))) return ns_errf(err, "out of memory");
    for (int t = 0; !bow && t < v->text.ntensors; t++) {
        ns_named_tensor *nt = &v->text.tensors[t];
        char *name = r->text_names + (size_t)t * TEXT_NAME; // apart from the image tower's names
        snprintf(name, TEXT_NAME, "text.%s", nt->name);
        if (r->te.param_grad[t])
            r->params[r->nparams++] = (ns_param){name, nt->t.data, r->te.param_grad[t], nt->t.numel, nt->t.ndim,
                                                 nt->t.shape, nt->t.ndim > 1 && !strstr(nt->name, "embedding")};
    }
    if (bow) {
        add_param(r, "text.embedding", &v->embedding, &r->gemb, 0);
        add_param(r, "text.proj.weight", &v->proj_weight, &r->gw, 1);
        add_param(r, "text.proj.bias", &v->proj_bias, &r->gb, 0);
    }
    add_param(r, "text.logit_scale", &v->logit_scale, &r->gt, 0);
    if (!(r->opt = ns_optim_create(&cfg->optim, r->params, r->nparams, err))) return -1;
    int64_t numel = m->nodes[0].numel;
    r->order = malloc((size_t)train->n * sizeof *r->order);
    r->x = ns_aligned_alloc((size_t)(B * numel) * sizeof *r->x);
    r->texts = malloc((size_t)B * sizeof *r->texts);
    r->txt = malloc((size_t)(B * E) * sizeof *r->txt);
    r->pooled = malloc((size_t)(B * D) * sizeof *r->pooled);
    r->dpooled = malloc((size_t)(B * D) * sizeof *r->dpooled);
    r->dimg = ns_aligned_alloc((size_t)(B * E) * sizeof *r->dimg);
    r->dtxt = malloc((size_t)(B * E) * sizeof *r->dtxt);
    r->work = malloc((size_t)ns_clip_loss_work_floats(B, E) * sizeof *r->work);
    if (!r->order || !r->x || !r->texts || !r->txt || !r->pooled || !r->dpooled || !r->dimg || !r->dtxt || !r->work)
        return ns_errf(err, "out of memory (batch %lld)", (long long)B);
    return 0;
}

// One step on samples order[start .. start+n). Returns the loss, or NAN with err set.
static double train_step(run *r, ns_vlm *v, const ns_samples *train, ns_caption_fn caption, void *ctx,
                         int epoch, int64_t start, int64_t n, double lr, ns_err *err) {
    int64_t numel = train->numel, E = v->dim, D = v->text_dim;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = r->order[start + i];
        memcpy(r->x + i * numel, train->x + s * numel, (size_t)numel * sizeof *r->x);
        if (!(r->texts[i] = caption(ctx, s, epoch))) {
            ns_errf(err, "no caption for sample id %lld", (long long)train->ids[s]);
            return NAN;
        }
    }
    if (ns_token_lists_fill(&r->tok, &v->vocab, r->texts, n, err) < 0) return NAN;
    const float *img = ns_engine_forward(&r->e, r->x, n, 1, err); // (n, E)
    if (!img) return NAN;
    if (r->te.model) {
        ns_vlm_text_ids(r->ids, &r->tok, v->vocab.n, v->text_shape.context);
        const float *y = ns_engine_forward(&r->te, r->ids, n, 1, err); // (n, E)
        if (!y) return NAN;
        memcpy(r->txt, y, (size_t)(n * E) * sizeof *r->txt);
    } else {
        ns_text_tower_forward(r->txt, r->pooled, &r->tok, v->embedding.data, v->proj_weight.data,
                              v->proj_bias.data, D, E);
    }
    float *t = v->logit_scale.data;
    double dt = 0;
    memset(r->dimg, 0, (size_t)(n * E) * sizeof *r->dimg);
    memset(r->dtxt, 0, (size_t)(n * E) * sizeof *r->dtxt);
    double loss = ns_clip_loss(r->dimg, r->dtxt, &dt, img, r->txt, t[0], n, E, r->work);
    if (!isfinite(loss)) {
        ns_errf(err, "epoch %d: the loss is %g (lower the learning rate?)", epoch + 1, loss);
        return NAN;
    }
    ns_engine_zero_grad(&r->e);
    ns_engine_backward(&r->e, r->dimg);
    if (r->te.model) {
        ns_engine_zero_grad(&r->te);
        ns_engine_backward(&r->te, r->dtxt);
    } else {
        memset(r->gemb.data, 0, ns_tensor_nbytes(&r->gemb));
        memset(r->gw.data, 0, ns_tensor_nbytes(&r->gw));
        memset(r->gb.data, 0, ns_tensor_nbytes(&r->gb));
        ns_text_tower_backward(r->gemb.data, r->gw.data, r->gb.data, r->dpooled, r->dtxt, r->pooled, &r->tok,
                               v->proj_weight.data, D, E);
    }
    ((float *)r->gt.data)[0] = (float)dt;
    ns_optim_step(r->opt, lr);
    if (t[0] > (float)log(NS_VLM_MAX_SCALE)) t[0] = (float)log(NS_VLM_MAX_SCALE); // CLIP clamps the parameter
    return loss;
}

int ns_vlm_train(ns_vlm *v, const ns_samples *train, ns_caption_fn caption, void *ctx,
                 const ns_vlm_train_config *cfg, ns_vlm_epoch_stats *last, ns_err *err) {
    if (cfg->batch < 2) return ns_errf(err, "batch %lld: the contrastive loss needs at least 2", (long long)cfg->batch);
    if (train->n < 2) return ns_errf(err, "%lld training samples: at least 2 are needed", (long long)train->n);
    // A last batch of one pair has no negatives: it is dropped.
    int64_t steps = train->n / cfg->batch + (train->n % cfg->batch >= 2);
    ns_lr_schedule schedule = cfg->schedule;
    schedule.total_steps = (int64_t)cfg->epochs * steps;
    if (ns_lr_check(&schedule, steps, err) < 0) return -1;
    run r;
    int rc = run_init(&r, v, train, cfg, err);
    if (rc == 0 && cfg->log) fprintf(cfg->log, "epoch\tloss\tscale\tlr\tseconds\timages_per_s\n");
    double t_start = ns_now();
    for (int epoch = 0; rc == 0 && epoch < cfg->epochs; epoch++) {
        double t0 = ns_now(), loss_sum = 0, lr0 = ns_lr_at(&schedule, (int64_t)epoch * steps, steps);
        int64_t seen = 0;
        ns_rng rng;
        ns_rng_seed(&rng, ns_rand_u64(cfg->seed, (uint64_t)epoch));
        for (int64_t i = 0; i < train->n; i++) r.order[i] = i;
        ns_rng_shuffle(&rng, r.order, train->n);
        ns_report_begin(cfg->report, "images", train->n);
        for (int64_t b = 0; b < steps; b++) {
            int64_t start = b * cfg->batch, n = train->n - start < cfg->batch ? train->n - start : cfg->batch;
            r.e.step = (uint64_t)epoch * (uint64_t)steps + (uint64_t)b;
            double lr = ns_lr_at(&schedule, (int64_t)epoch * steps + b, steps);
            double loss = train_step(&r, v, train, caption, ctx, epoch, start, n, lr, err);
            if (isnan(loss)) {
                rc = -1;
                break;
            }
            loss_sum += loss * (double)n;
            seen += n;
            ns_report_update(cfg->report, start + n);
        }
        ns_report_end(cfg->report);
        if (rc < 0) break;
        double secs = ns_now() - t0, done = ns_now() - t_start, scale = exp(((float *)v->logit_scale.data)[0]);
        double loss = loss_sum / (double)seen;
        ns_report_message(cfg->report, "epoch %d/%d  loss %.4f  scale %.2f  lr %.4g  %.0f img/s  %.1fs  ETA %.0fs",
                          epoch + 1, cfg->epochs, loss, scale, lr0, (double)seen / secs, secs,
                          done / (epoch + 1) * (cfg->epochs - epoch - 1));
        if (cfg->log) {
            fprintf(cfg->log, "%d\t%.6f\t%.4f\t%.6g\t%.3f\t%.1f\n", epoch + 1, loss, scale, lr0, secs,
                    (double)seen / secs);
            fflush(cfg->log);
        }
        if (last) *last = (ns_vlm_epoch_stats){epoch + 1, loss, scale, lr0, secs};
    }
    run_free(&r);
    return rc;
}

// ----------------------------------------------------------------------------
// quality checks

int ns_vlm_embed_images(ns_vlm *v, const ns_samples *s, int64_t batch, float *out, ns_err *err) {
    ns_engine e;
    if (ns_engine_init(&e, &v->image, batch, 0, err) < 0) return -1;
    ns_engine_set_fused(&e, 1);
    for (int64_t start = 0; start < s->n; start += batch) {
        int64_t n = s->n - start < batch ? s->n - start : batch;
        const float *y = ns_engine_forward(&e, s->x + start * s->numel, n, 0, err);
        if (!y) {
            ns_engine_free(&e);
            return -1;
        }
        memcpy(out + start * v->dim, y, (size_t)(n * v->dim) * sizeof *out);
    }
    ns_engine_free(&e);
    ns_normalize_rows(out, s->n, v->dim);
    return 0;
}

void ns_fill_template(char *buf, size_t cap, const char *tmpl, const char *word) {
    const char *hole = strstr(tmpl, "{}");
    if (!hole) snprintf(buf, cap, "%s %s", tmpl, word);
    else snprintf(buf, cap, "%.*s%s%s", (int)(hole - tmpl), tmpl, word, hole + 2);
}

int ns_vlm_zero_shot(const ns_vlm *v, const float *img, const int32_t *labels, int64_t n, char *const *classes,
                     size_t nclasses, const char *tmpl, double *acc, ns_err *err) {
    int64_t E = v->dim, K = (int64_t)nclasses;
    char **texts = calloc(nclasses ? nclasses : 1, sizeof *texts);
    float *t = malloc((size_t)(K * E) * sizeof *t), *sim = malloc((size_t)(K ? K : 1) * sizeof *sim);
    int rc = texts && t && sim ? 0 : ns_errf(err, "out of memory");
    for (size_t k = 0; rc == 0 && k < nclasses; k++) {
        size_t cap = strlen(tmpl) + strlen(classes[k]) + 2;
        if (!(texts[k] = malloc(cap))) rc = ns_errf(err, "out of memory");
        else ns_fill_template(texts[k], cap, tmpl, classes[k]);
    }
    if (rc == 0) rc = ns_vlm_embed_texts(v, (const char *const *)texts, K, t, err);
    int64_t correct = 0, counted = 0;
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        if (labels[i] < 0) continue;
        int64_t best = 0;
        for (int64_t k = 0; k < K; k++) {
            double d = 0;
            for (int64_t j = 0; j < E; j++) d += (double)img[i * E + j] * t[k * E + j];
            sim[k] = (float)d;
            if (sim[k] > sim[best]) best = k;
        }
        correct += best == labels[i];
        counted++;
    }
    *acc = counted ? (double)correct / (double)counted : NAN;
    for (size_t k = 0; texts && k < nclasses; k++) free(texts[k]);
    free(texts);
    free(t);
    free(sim);
    return rc;
}

typedef struct scored {
    float score;
    uint8_t label;
} scored;

static int by_score(const void *a, const void *b) {
    float x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return (x > y) - (x < y);
}

// Mann-Whitney: the probability that a random positive outscores a random negative.
double ns_roc_auc(const float *scores, const uint8_t *labels, int64_t n) {
    scored *s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s) return NAN;
    int64_t m = 0, npos = 0, nneg = 0;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] <= 1) {
            s[m++] = (scored){scores[i], labels[i]};
            npos += labels[i] == 1;
            nneg += labels[i] == 0;
        }
    if (!npos || !nneg) {
        free(s);
        return NAN;
    }
    qsort(s, (size_t)m, sizeof *s, by_score);
    double rank_sum = 0; // ranks of the positives, 1-based, ties at their mean rank
    for (int64_t i = 0; i < m;) {
        int64_t j = i, pos = 0;
        while (j < m && s[j].score == s[i].score) pos += s[j++].label == 1;
        rank_sum += (double)pos * (double)(i + 1 + j) / 2.0;
        i = j;
    }
    free(s);
    return (rank_sum - (double)npos * (double)(npos + 1) / 2.0) / ((double)npos * (double)nneg);
}
