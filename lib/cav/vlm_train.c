// vlm_train.c: training a clip-small model with CLIP's contrastive loss, and
// its quality checks: zero-shot accuracy and retrieval AUC (vlm_train.h).
//
// Dimensions: B batch, E joint width, V vocabulary, D token width; n this
// rank's pairs of a batch (all B with one rank).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/dist.h"
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
    int64_t *order;               // (total) this epoch's sample order, stream positions
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
    // data-parallel (cfg->dist of W > 1 ranks): the global sample count, the
    // place in the batch of each of this rank's pairs, the batch's embeddings
    // from every rank, and the gradients in one buffer for the sum
    const ns_dist *dist;
    int64_t total;
    int rank, ranks;
    int64_t *slot;                // (B)
    float *gathered;              // (2, B, E): images, texts
    float *grads;
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
    free(r->slot);
    free(r->gathered);
    free(r->grads);
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
    r->dist = cfg->dist && cfg->dist->size > 1 ? cfg->dist : NULL;
    r->ranks = r->dist ? r->dist->size : 1;
    r->rank = r->dist ? r->dist->rank : 0;
    if (r->rank > 0) r->e.seed += (uint64_t)r->rank * 0x9E3779B97F4A7C15ull; // dropout masks per rank, as net-train's
    r->total = train->n;
    if (r->dist) {
        double n = (double)train->n;
        if (r->dist->sum_f64(&n, 1, err) < 0) return -1;
        r->total = (int64_t)n;
    }
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
    r->order = malloc((size_t)(r->total ? r->total : 1) * sizeof *r->order);
    r->slot = malloc((size_t)B * sizeof *r->slot);
    r->x = ns_aligned_alloc((size_t)(B * numel) * sizeof *r->x);
    r->texts = malloc((size_t)B * sizeof *r->texts);
    r->txt = malloc((size_t)(B * E) * sizeof *r->txt);
    r->pooled = malloc((size_t)(B * D) * sizeof *r->pooled);
    r->dpooled = malloc((size_t)(B * D) * sizeof *r->dpooled);
    r->dimg = ns_aligned_alloc((size_t)(B * E) * sizeof *r->dimg);
    r->dtxt = malloc((size_t)(B * E) * sizeof *r->dtxt);
    r->work = malloc((size_t)ns_clip_loss_work_floats(B, E) * sizeof *r->work);
    if (!r->order || !r->slot || !r->x || !r->texts || !r->txt || !r->pooled || !r->dpooled || !r->dimg || !r->dtxt ||
        !r->work)
        return ns_errf(err, "out of memory (batch %lld)", (long long)B);
    if (r->dist && (!(r->gathered = malloc((size_t)(2 * B * E) * sizeof *r->gathered)) ||
                    !(r->grads = malloc((size_t)ns_dist_grads_numel(r->params, r->nparams) * sizeof *r->grads))))
        return ns_errf(err, "out of memory");
    return 0;
}

// Data-parallel: every rank's embeddings of the batch (B', E), in the batch's
// order. Each rank fills its rows of zeroed matrices and the fixed-order sum
// over the ranks adds zeros to them: x + 0 is x, so it is a gather.
static int gather_embeddings(run *r, const float *img, const float *txt, int64_t n, int64_t global_n, int64_t E,
                             ns_err *err) {
    float *all_img = r->gathered, *all_txt = r->gathered + global_n * E;
    memset(r->gathered, 0, (size_t)(2 * global_n * E) * sizeof *r->gathered);
    for (int64_t i = 0; i < n; i++) {
        memcpy(all_img + r->slot[i] * E, img + i * E, (size_t)E * sizeof *img);
        memcpy(all_txt + r->slot[i] * E, txt + i * E, (size_t)E * sizeof *txt);
    }
    return r->dist->sum_f32(r->gathered, 2 * global_n * E, err);
}

// One step on the batch order[start .. start+global_n): this rank's n pairs
// of it (all of them with one rank). Returns the batch's loss, or NAN with
// err set.
static double train_step(run *r, ns_vlm *v, const ns_samples *train, ns_caption_fn caption, void *ctx,
                         int epoch, int64_t start, int64_t global_n, double lr, ns_err *err) {
    int64_t numel = train->numel, E = v->dim, D = v->text_dim, n = 0;
    for (int64_t i = 0; i < global_n; i++) {
        int64_t g = r->order[start + i];
        if (g % r->ranks != r->rank) continue;
        int64_t s = g / r->ranks;
        r->slot[n] = i;
        memcpy(r->x + n * numel, train->x + s * numel, (size_t)numel * sizeof *r->x);
        if (!(r->texts[n] = caption(ctx, s, epoch))) {
            ns_errf(err, "no caption for sample id %lld", (long long)train->ids[s]);
            return NAN;
        }
        n++;
    }
    const float *img = NULL, *txt = r->txt;
    if (n > 0) {
        if (ns_token_lists_fill(&r->tok, &v->vocab, r->texts, n, err) < 0) return NAN;
        if (!(img = ns_engine_forward(&r->e, r->x, n, 1, err))) return NAN; // (n, E)
        if (r->te.model) {
            ns_vlm_text_ids(r->ids, &r->tok, v->vocab.n, v->text_shape.context);
            const float *y = ns_engine_forward(&r->te, r->ids, n, 1, err); // (n, E)
            if (!y) return NAN;
            memcpy(r->txt, y, (size_t)(n * E) * sizeof *r->txt);
        } else {
            ns_text_tower_forward(r->txt, r->pooled, &r->tok, v->embedding.data, v->proj_weight.data,
                                  v->proj_bias.data, D, E);
        }
    }
    if (r->dist) {
        if (gather_embeddings(r, img, txt, n, global_n, E, err) < 0) return NAN;
        img = r->gathered;
        txt = r->gathered + global_n * E;
    }
    float *t = v->logit_scale.data;
    double dt = 0;
    memset(r->dimg, 0, (size_t)(global_n * E) * sizeof *r->dimg);
    memset(r->dtxt, 0, (size_t)(global_n * E) * sizeof *r->dtxt);
    // every rank computes the whole batch's loss and its gradient (B' x B' x E,
    // small next to the towers), then keeps the rows of its own pairs
    double loss = ns_clip_loss(r->dimg, r->dtxt, &dt, img, txt, t[0], global_n, E, r->work);
    if (!isfinite(loss)) {
        ns_errf(err, "epoch %d: the loss is %g (lower the learning rate?)", epoch + 1, loss);
        return NAN;
    }
    if (r->dist)
        for (int64_t i = 0; i < n; i++) { // slot[i] >= i, increasing: forward copies are safe
            memmove(r->dimg + i * E, r->dimg + r->slot[i] * E, (size_t)E * sizeof *r->dimg);
            memmove(r->dtxt + i * E, r->dtxt + r->slot[i] * E, (size_t)E * sizeof *r->dtxt);
        }
    ns_engine_zero_grad(&r->e);
    if (n > 0) ns_engine_backward(&r->e, r->dimg);
    if (r->te.model) {
        ns_engine_zero_grad(&r->te);
        if (n > 0) ns_engine_backward(&r->te, r->dtxt);
    } else {
        memset(r->gemb.data, 0, ns_tensor_nbytes(&r->gemb));
        memset(r->gw.data, 0, ns_tensor_nbytes(&r->gw));
        memset(r->gb.data, 0, ns_tensor_nbytes(&r->gb));
        if (n > 0)
            ns_text_tower_backward(r->gemb.data, r->gw.data, r->gb.data, r->dpooled, r->dtxt, r->pooled, &r->tok,
                                   v->proj_weight.data, D, E);
    }
    // the logit scale's gradient is the whole batch's on every rank: counted once in the sum
    ((float *)r->gt.data)[0] = r->rank == 0 ? (float)dt : 0.0f;
    if (r->dist && ns_dist_sum_grads(r->dist, r->params, r->nparams, r->grads, err) < 0) return NAN;
    ns_optim_step(r->opt, lr);
    if (t[0] > (float)log(NS_VLM_MAX_SCALE)) t[0] = (float)log(NS_VLM_MAX_SCALE); // CLIP clamps the parameter
    return loss;
}

int ns_vlm_train(ns_vlm *v, const ns_samples *train, ns_caption_fn caption, void *ctx,
                 const ns_vlm_train_config *cfg, ns_vlm_epoch_stats *last, ns_err *err) {
    if (cfg->batch < 2) return ns_errf(err, "batch %lld: the contrastive loss needs at least 2", (long long)cfg->batch);
    run r;
    if (run_init(&r, v, train, cfg, err) < 0) {
        run_free(&r);
        return -1;
    }
    int64_t total = r.total;
    if (total < 2) {
        run_free(&r);
        return ns_errf(err, "%lld training samples: at least 2 are needed", (long long)total);
    }
    // A last batch of one pair has no negatives: it is dropped.
    int64_t steps = total / cfg->batch + (total % cfg->batch >= 2);
    ns_lr_schedule schedule = cfg->schedule;
    schedule.total_steps = (int64_t)cfg->epochs * steps;
    int rc = ns_lr_check(&schedule, steps, err);
    if (rc == 0 && cfg->log) fprintf(cfg->log, "epoch\tloss\tscale\tlr\tseconds\timages_per_s\n");
    double t_start = ns_now();
    for (int epoch = 0; rc == 0 && epoch < cfg->epochs; epoch++) {
        double t0 = ns_now(), loss_sum = 0, lr0 = ns_lr_at(&schedule, (int64_t)epoch * steps, steps);
        int64_t seen = 0;
        ns_rng rng;
        ns_rng_seed(&rng, ns_rand_u64(cfg->seed, (uint64_t)epoch));
        for (int64_t i = 0; i < total; i++) r.order[i] = i;
        ns_rng_shuffle(&rng, r.order, total);
        ns_report_begin(cfg->report, "images", total);
        for (int64_t b = 0; b < steps; b++) {
            int64_t start = b * cfg->batch, n = total - start < cfg->batch ? total - start : cfg->batch;
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
