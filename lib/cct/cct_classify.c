// cct_classify.c: comparing queries with the representatives of novel
// classes through G (cct.h). In eval mode the twin branches are independent
// (batch norm uses its running statistics), so each image's features are
// computed once and only the head runs per pair: G(q, r) =
// sigmoid(head(|f(q) - f(r)|)), the same value the pair's full forward gives.
// A twin transformer's features depend on the partner (its cross-attention
// heads), so there every (query, representative) pair runs the full forward.
//
// Shapes: n queries, k classes, K representatives per class, E features.
#include "cct/cct.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Features (count, E) of the samples idx[0..count) of s (idx NULL: 0..count).
static int embed(ns_engine *e, const ns_samples *s, const int64_t *idx, int64_t count, int64_t batch,
                 int64_t E, float *out, float *xbuf, const ns_reporter *report, ns_err *err) {
    for (int64_t start = 0; start < count; start += batch) {
        int64_t n = count - start < batch ? count - start : batch;
        const float *x = s->x + start * s->numel;
        if (idx) {
            for (int64_t i = 0; i < n; i++)
                memcpy(xbuf + i * s->numel, s->x + idx[start + i] * s->numel, (size_t)s->numel * sizeof(float));
            x = xbuf;
        }
        const float *f = ns_engine_forward(e, x, n, 0, err);
        if (!f) return -1;
        memcpy(out + start * E, f, (size_t)(n * E) * sizeof(float));
        ns_report_update(report, start + n);
    }
    return 0;
}

// Every (query, representative) pair through G's full pair forward, batch
// pairs at a time (twin backbones).
static int compare_pairs(ns_cct_net *G, const ns_samples *queries, const ns_samples *reps, const int64_t *rep_idx,
                         int64_t R, int64_t batch, float *prob, const ns_reporter *report, ns_err *err) {
    ns_cct_run run;
    if (ns_cct_run_init(&run, G, batch, 0, err) < 0) return -1;
    const int64_t P = run.P, total = queries->n * R;
    int rc = 0;
    ns_report_begin(report, "pairs", total);
    for (int64_t start = 0; rc == 0 && start < total; start += batch) {
        int64_t n = total - start < batch ? total - start : batch;
        for (int64_t row = 0; row < n; row++) {
            int64_t q = (start + row) / R, r = rep_idx ? rep_idx[(start + row) % R] : (start + row) % R;
            memcpy(run.x + row * P, queries->x + q * P, (size_t)P * sizeof(float));
            memcpy(run.x + (n + row) * P, reps->x + r * P, (size_t)P * sizeof(float));
        }
        const float *logit = ns_cct_forward(&run, NULL, NULL, NULL, n, 0, err);
        if (!logit) {
            rc = -1;
            break;
        }
        for (int64_t row = 0; row < n; row++) prob[start + row] = 1.0f / (1.0f + expf(-logit[row]));
        ns_report_update(report, start + n);
    }
    ns_report_end(report);
    ns_cct_run_free(&run);
    return rc;
}

int ns_cct_compare(ns_cct_net *G, const ns_samples *queries, const ns_samples *reps,
                   const int64_t *rep_idx, int k, int K, int64_t batch, float *prob,
                   const ns_reporter *report, ns_err *err) {
    if (G->role != NS_CCT_G) return ns_errf(err, "classification needs G, not D");
    const int64_t E = G->embed, P = G->backbone.nodes[0].numel, R = (int64_t)k * K;
    if (queries->numel != P || reps->numel != P)
        return ns_errf(err, "the images have %lld values but G's backbone takes %lld",
                       (long long)(queries->numel != P ? queries->numel : reps->numel), (long long)P);
    if (batch < 1) return ns_errf(err, "a batch of %lld", (long long)batch);
    if (ns_cct_backbone_is_twin(&G->backbone))
        return compare_pairs(G, queries, reps, rep_idx, R, batch, prob, report, err);
    ns_engine bb, head;
    if (ns_engine_init(&bb, &G->backbone, batch, 0, err) < 0) return -1;
    ns_engine_set_fused(&bb, 1);
    if (ns_engine_init(&head, &G->head, batch, 0, err) < 0) {
        ns_engine_free(&bb);
        return -1;
    }
    float *fq = malloc((size_t)(queries->n * E) * sizeof *fq);
    float *fr = malloc((size_t)(R * E) * sizeof *fr);
    float *xbuf = ns_aligned_alloc((size_t)(batch * P) * sizeof(float));
    float *hin = ns_aligned_alloc((size_t)(batch * E) * sizeof(float));
    int rc = 0;
    if (!fq || !fr || !xbuf || !hin) rc = ns_errf(err, "out of memory");
    if (rc == 0) {
        ns_report_begin(report, "images", queries->n + R);
        rc = embed(&bb, reps, rep_idx, R, batch, E, fr, xbuf, NULL, err);
        if (rc == 0) rc = embed(&bb, queries, NULL, queries->n, batch, E, fq, xbuf, report, err);
        ns_report_end(report);
    }
    // every (query, representative) pair, batch rows at a time
    const int64_t total = queries->n * R;
    for (int64_t start = 0; rc == 0 && start < total; start += batch) {
        int64_t n = total - start < batch ? total - start : batch;
        for (int64_t row = 0; row < n; row++) {
            int64_t q = (start + row) / R, r = (start + row) % R;
            const float *a = fq + q * E, *b = fr + r * E;
            for (int64_t j = 0; j < E; j++) hin[row * E + j] = fabsf(a[j] - b[j]);
        }
        const float *logit = ns_engine_forward(&head, hin, n, 0, err);
        if (!logit) {
            rc = -1;
            break;
        }
        for (int64_t row = 0; row < n; row++) prob[start + row] = 1.0f / (1.0f + expf(-logit[row]));
    }
    free(fq);
    free(fr);
    free(xbuf);
    free(hin);
    ns_engine_free(&bb);
    ns_engine_free(&head);
    return rc;
}
