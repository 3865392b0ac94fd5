// test_cct.c: CCT-Net (lib/cct): G's and D's gradients (backbone, head and
// D's similarity input) against finite differences, the pair sampler's
// balance, D's flipped similarities and labels, voting and macro-F1 on known
// answers, the choice of representatives, and a net's stream round trip;
// the same gradients through the twin transformer (cross-attention heads),
// whose features depend on the partner image.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fd_check.h"
#include "cct/cct.h"
#include "nn/spec.h"

// A tiny smooth backbone: 1x4x4 -> conv(2) -> tanh -> flatten -> linear(3).
static void tiny_backbone(ns_model *m, uint64_t seed) {
    static const char spec[] = "[input]\nshape = 1x4x4\n[conv2d c]\nout = 2\nkernel = 3\npad = 1\n"
                               "[tanh t]\n[flatten f]\n[linear embed]\nout = 3\n";
    ns_err err;
    ns_model_init(m);
    if (ns_spec_parse(m, spec, sizeof spec - 1, "tiny", &err) < 0) {
        fprintf(stderr, "test_cct: %s\n", err.msg);
        exit(1);
    }
    ns_model_init_params(m, seed);
}

typedef struct fd_ctx {
    ns_cct_run *r;
    float *s;
    int64_t n;
} fd_ctx;

static void fwd(void *p) {
    fd_ctx *c = p;
    ns_err err;
    // x holds both branches already; forward leaves it as it is
    if (!ns_cct_forward(c->r, NULL, NULL, c->s, c->n, 1, &err)) {
        fprintf(stderr, "test_cct: %s\n", err.msg);
        exit(1);
    }
}

// The twin transformer, tiny: 1x4x4 in patches of 2 (4 tokens + the class
// token), 8 features in 4 heads of which the last reads the partner, 1 block,
// embedding 3.
static void tiny_twin(ns_model *m, uint64_t seed) {
    ns_err err;
    if (ns_cct_vit_backbone(m, 1, 4, 4, 0.125, 1, 2, 4, 1, 3, seed, &err) < 0) {
        fprintf(stderr, "test_cct: %s\n", err.msg);
        exit(1);
    }
    // the class token and positions start near 0, where a layer norm of the
    // token is too curved for finite differences: spread them
    const char *spread[2] = {"cls_token.weight", "pos_embed.weight"};
    for (int i = 0; i < 2; i++) {
        ns_tensor *t = &m->tensors[ns_model_find_tensor(m, spread[i])].t;
        float *v = t->data;
        for (int64_t j = 0; j < t->numel; j++) v[j] = urand(-1, 1);
    }
}

static void check_net_grads(ns_cct_role role, int twin) {
    char name[16];
    snprintf(name, sizeof name, "%s%s", role == NS_CCT_G ? "G" : "D", twin ? " twin" : "");
    ns_model bb;
    if (twin) tiny_twin(&bb, 7);
    else tiny_backbone(&bb, 7);
    ns_cct_net net;
    ns_err err;
    int64_t hidden[1] = {4};
    CHECK(ns_cct_create(&net, role, &bb, hidden, 1, 3, &err) == 0, "%s: created", name);
    ns_cct_run r;
    const int64_t n = 3;
    CHECK(ns_cct_run_init(&r, &net, n, 1, &err) == 0, "%s: run made", name);
    for (int64_t i = 0; i < 2 * n * r.P; i++) r.x[i] = urand(-1, 1);
    float s[3] = {0.2f, 0.7f, 0.5f};
    fd_ctx ctx = {&r, role == NS_CCT_D ? s : NULL, n};
    float *R = frand(n, -1, 1);
    fwd(&ctx);
    fd_problem p = {fwd, &ctx, r.logit, n, R};
    ns_cct_zero_grad(&r);
    float ds[3] = {0};
    ns_cct_backward(&r, R, role == NS_CCT_D ? ds : NULL, 0);
    // every parameter of backbone and head
    char what[300];
    for (int b = 0; b < 2; b++) {
        ns_model *m = b ? &net.head : &net.backbone;
        ns_engine *e = b ? &r.head : &r.bb;
        for (int t = 0; t < m->ntensors; t++) {
            if (!e->param_grad[t]) continue;
            float *g = falloc(m->tensors[t].t.numel);
            memcpy(g, e->param_grad[t], (size_t)m->tensors[t].t.numel * sizeof(float));
            snprintf(what, sizeof what, "/d%s", m->tensors[t].name);
            fd_report(strdup(name), what, fd_max_rel(&p, m->tensors[t].t.data, m->tensors[t].t.numel, g));
            free(g);
        }
    }
    if (role == NS_CCT_D) fd_report(strdup(name), "/ds", fd_max_rel(&p, s, n, ds));
    // head_only leaves the backbone's gradients alone
    ns_cct_zero_grad(&r);
    fwd(&ctx);
    ns_cct_backward(&r, R, NULL, 1);
    int t0 = ns_model_find_tensor(&net.backbone, twin ? "head.weight" : "embed.weight");
    double sum = 0;
    for (int64_t i = 0; i < net.backbone.tensors[t0].t.numel; i++) sum += fabs(r.bb.param_grad[t0][i]);
    CHECK(sum == 0, "%s: head_only backward leaves the backbone's gradients at 0", name);
    free(R);
    ns_cct_run_free(&r);
    ns_cct_free(&net);
}

// The twin transformer: an image's features depend on its partner (the
// cross heads are live), G(x1, x2) = G(x2, x1) (shared weights), a lone image
// (an odd batch) is refused, and classification runs every pair through the
// full forward: its probabilities are those of ns_cct_forward.
static void test_twin(void) {
    ns_model bb;
    tiny_twin(&bb, 5);
    CHECK(ns_cct_backbone_is_twin(&bb), "twin: the vit backbone with cross heads is a twin");
    ns_cct_net net;
    ns_err err;
    int64_t hidden[1] = {4};
    ns_cct_create(&net, NS_CCT_G, &bb, hidden, 1, 3, &err);
    ns_cct_run r;
    ns_cct_run_init(&r, &net, 2, 0, &err);
    const int64_t P = r.P;
    float *a = frand(P, -1, 1), *b = frand(P, -1, 1), *c = frand(P, -1, 1), f_ab[3], f_ac[3], l_ab, l_ba;
    const float *lg = ns_cct_forward(&r, a, b, NULL, 1, 0, &err);
    l_ab = lg ? lg[0] : NAN;
    memcpy(f_ab, r.bb.act[net.backbone.output], sizeof f_ab);
    lg = ns_cct_forward(&r, b, a, NULL, 1, 0, &err);
    l_ba = lg ? lg[0] : NAN;
    ns_cct_forward(&r, a, c, NULL, 1, 0, &err);
    memcpy(f_ac, r.bb.act[net.backbone.output], sizeof f_ac);
    double moved = fabs(f_ab[0] - f_ac[0]) + fabs(f_ab[1] - f_ac[1]) + fabs(f_ab[2] - f_ac[2]);
    CHECK(moved > 1e-4, "twin: f(a) changes with a's partner (by %.3g)", moved);
    CHECK(fabsf(l_ab - l_ba) < 1e-5f, "twin: G(a, b) = G(b, a) (%g, %g)", l_ab, l_ba);
    ns_engine e;
    ns_engine_init(&e, &net.backbone, 3, 0, &err);
    float *x3 = frand(3 * P, -1, 1);
    CHECK(ns_engine_forward(&e, x3, 3, 0, &err) == NULL && strstr(err.msg, "even batch"),
          "twin: an odd batch is refused: %s", err.msg);
    ns_engine_free(&e);
    // classification: 2 queries x (2 classes x 1 representative)
    ns_samples q = {.n = 2, .numel = P}, reps = {.n = 2, .numel = P};
    float *qx = falloc(2 * P), *rx = falloc(2 * P), prob[4];
    memcpy(qx, a, (size_t)P * sizeof(float)), memcpy(qx + P, b, (size_t)P * sizeof(float));
    memcpy(rx, c, (size_t)P * sizeof(float)), memcpy(rx + P, a, (size_t)P * sizeof(float));
    q.x = qx, reps.x = rx;
    int64_t idx[2] = {1, 0}; // class 0: a, class 1: c
    int rc = ns_cct_compare(&net, &q, &reps, idx, 2, 1, 3, prob, NULL, &err);
    lg = ns_cct_forward(&r, b, c, NULL, 1, 0, &err);
    float want3 = lg ? 1.0f / (1.0f + expf(-lg[0])) : NAN;
    lg = ns_cct_forward(&r, a, a, NULL, 1, 0, &err);
    float want0 = lg ? 1.0f / (1.0f + expf(-lg[0])) : NAN;
    CHECK(rc == 0 && fabsf(prob[3] - want3) < 1e-6f && fabsf(prob[0] - want0) < 1e-6f,
          "twin: classification's probabilities are the pair forward's (%g %g, %g %g)", prob[0], want0, prob[3], want3);
    free(a), free(b), free(c), free(x3), free(qx), free(rx);
    ns_cct_run_free(&r);
    ns_cct_free(&net);
}

static void test_pairs(void) {
    ns_err err;
    enum { N = 1000 };
    int32_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = i < 700 ? 0 : i < 900 ? 2 : 3; // unbalanced, a gap at 1
    ns_cct_pairs p;
    CHECK(ns_cct_pairs_init(&p, labels, N, &err) == 0 && p.nclasses == 3, "source sampler: 3 classes present");
    ns_rng rng;
    ns_rng_seed(&rng, 5);
    enum { B = 20000 };
    int64_t *i1 = malloc(B * sizeof *i1), *i2 = malloc(B * sizeof *i2);
    float *y = malloc(B * sizeof *y);
    ns_cct_pairs_draw(&p, &rng, B, i1, i2, y);
    int64_t same = 0, wrong = 0, first[4] = {0};
    for (int b = 0; b < B; b++) {
        same += y[b] == 1;
        wrong += (labels[i1[b]] == labels[i2[b]]) != (y[b] == 1);
        first[labels[i1[b]]]++;
    }
    CHECK(wrong == 0, "every pair's similarity is its classes' (%lld wrong)", (long long)wrong);
    CHECK(fabs(same / (double)B - 0.5) < 0.015, "half the pairs are positive (%.3f)", same / (double)B);
    CHECK(fabs(first[0] / (double)B - 1 / 3.0) < 0.015 && fabs(first[3] / (double)B - 1 / 3.0) < 0.015,
          "classes are drawn uniformly, not by size (%.3f, %.3f, %.3f)", first[0] / (double)B, first[2] / (double)B,
          first[3] / (double)B);
    ns_cct_pairs_free(&p);
    // target sampler: same image or a random one
    CHECK(ns_cct_pairs_init(&p, NULL, N, &err) == 0, "target sampler made");
    ns_cct_pairs_draw(&p, &rng, B, i1, i2, y);
    same = wrong = 0;
    for (int b = 0; b < B; b++) {
        same += y[b] == 1;
        wrong += y[b] == 1 && i1[b] != i2[b];
    }
    CHECK(wrong == 0 && fabs(same / (double)B - 0.5) < 0.015, "target positives are one image twice (%.3f)", same / (double)B);
    ns_cct_pairs_free(&p);
    // D's labels: m = 1 exactly when s is the true similarity
    float *s = malloc(B * sizeof *s), *m = malloc(B * sizeof *m);
    ns_cct_flip_similarity(&rng, y, B, s, m);
    int64_t right = 0;
    wrong = 0;
    for (int b = 0; b < B; b++) {
        right += m[b] == 1;
        wrong += (m[b] == 1) != (s[b] == y[b]) || (s[b] != 0 && s[b] != 1);
    }
    CHECK(wrong == 0, "D's label is 1 exactly when s is the pair's similarity");
    CHECK(fabs(right / (double)B - 0.5) < 0.015, "half of D's source pairs get the true similarity (%.3f)",
          right / (double)B);
    // bad input
    int32_t one[3] = {1, 1, 1}, unl[3] = {0, -1, 1};
    CHECK(ns_cct_pairs_init(&p, one, 3, &err) < 0 && strstr(err.msg, "2 classes"), "one class is an error: %s", err.msg);
    CHECK(ns_cct_pairs_init(&p, unl, 3, &err) < 0 && strstr(err.msg, "no label"), "an unlabelled source sample is an error");
    free(i1), free(i2), free(y), free(s), free(m);
}

static void test_decide(void) {
    // 2 queries, 3 classes, K = 3
    const float prob[18] = {
        0.9f, 0.6f, 0.1f, /**/ 0.8f, 0.7f, 0.55f, /**/ 0.2f, 0.1f, 0.0f,   // votes 2, 3, 0
        0.6f, 0.6f, 0.0f, /**/ 0.9f, 0.9f, 0.1f,  /**/ 0.4f, 0.45f, 0.45f, // votes 2, 2 (mean .4 < .633), 0
    };
    int32_t pred[2];
    ns_cct_decide(prob, 2, 3, 3, NS_CCT_VOTE, pred);
    CHECK(pred[0] == 1 && pred[1] == 1, "voting: most votes win, a tie goes to the higher mean (%d %d)", pred[0], pred[1]);
    const float prob2[6] = {0.9f, 0.9f, 0.1f, /**/ 0.6f, 0.6f, 0.6f}; // votes 2 vs 3, means .633 vs .6
    ns_cct_decide(prob2, 1, 2, 3, NS_CCT_VOTE, pred);
    CHECK(pred[0] == 1, "voting counts votes, not probability (%d)", pred[0]);
    ns_cct_decide(prob2, 1, 2, 3, NS_CCT_MEAN, pred);
    CHECK(pred[0] == 0, "mean: the highest mean probability wins (%d)", pred[0]);
    const float tie[4] = {0.7f, 0.3f, 0.3f, 0.7f}; // equal votes and means
    ns_cct_decide(tie, 1, 2, 2, NS_CCT_VOTE, pred);
    CHECK(pred[0] == 0, "a full tie goes to the lower class");
}

static void test_metrics(void) {
    // scikit-learn: f1_score([0,0,1,1,2,2],[0,1,1,1,2,0],average="macro") = 0.6555555...
    const int32_t truth[7] = {0, 0, 1, 1, 2, 2, -1}, pred[7] = {0, 1, 1, 1, 2, 0, 2};
    double acc, f1;
    int64_t used;
    ns_cct_metrics(pred, truth, 7, 3, &acc, &f1, &used);
    CHECK(used == 6 && fabs(acc - 4 / 6.0) < 1e-12, "accuracy 4/6 over the 6 labelled samples (%g)", acc);
    CHECK(fabs(f1 - (0.5 + 0.8 + 2 / 3.0) / 3) < 1e-12, "macro-F1 as scikit-learn: 0.65556 (%.6f)", f1);
    // a class never true nor predicted does not count; one predicted but never true counts 0
    const int32_t t2[4] = {0, 0, 1, 1}, p2[4] = {0, 0, 1, 3};
    ns_cct_metrics(p2, t2, 4, 5, &acc, &f1, &used);
    CHECK(fabs(f1 - (1.0 + 2 / 3.0 + 0) / 3) < 1e-12, "classes absent from truth and predictions are left out (%.6f)", f1);
}

static void test_reps(void) {
    float x[6] = {0};
    int32_t y[6] = {1, 0, 1, 0, 0, 1};
    int64_t ids[6] = {0};
    ns_samples s = {x, y, ids, 6, 1, NULL, 0};
    int64_t idx[6];
    ns_err err;
    CHECK(ns_cct_pick_reps(&s, 2, 3, NULL, idx, &err) == 0 && idx[0] == 1 && idx[2] == 4 && idx[3] == 0 && idx[5] == 5,
          "the first K of each class, in stream order");
    ns_rng rng;
    ns_rng_seed(&rng, 1);
    int ok = ns_cct_pick_reps(&s, 2, 2, &rng, idx, &err) == 0;
    for (int c = 0; c < 2 && ok; c++) ok = y[idx[c * 2]] == c && y[idx[c * 2 + 1]] == c && idx[c * 2] != idx[c * 2 + 1];
    CHECK(ok, "random representatives are distinct members of their class");
    CHECK(ns_cct_pick_reps(&s, 2, 4, NULL, idx, &err) < 0 && strstr(err.msg, "only 3"), "K above what a class has: %s", err.msg);
}

static void test_roundtrip(void) {
    ns_model bb;
    tiny_backbone(&bb, 2);
    ns_cct_net net, back;
    ns_err err;
    int64_t hidden[2] = {5, 4};
    CHECK(ns_cct_create(&net, NS_CCT_D, &bb, hidden, 2, 9, &err) == 0, "D created");
    char *names[2] = {"T-shirt", "Coat"};
    ns_cct_set_sources(&net, names, 2, &err);
    char path[] = "/tmp/test_cct_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "wb");
    ns_writer w;
    ns_writer_init(&w, f);
    CHECK(ns_cct_write(&net, &w, NULL, &err) == 0, "written");
    ns_writer_free(&w);
    fclose(f);
    CHECK(ns_cct_load(&back, path, NS_CCT_D, &err) == 0, "read back: %s", err.msg);
    int same = back.nhidden == 2 && back.embed == 3 && back.nsource == 2 && strcmp(back.source_classes[1], "Coat") == 0;
    for (int t = 0; same && t < net.head.ntensors; t++)
        same = memcmp(net.head.tensors[t].t.data, back.head.tensors[t].t.data,
                      (size_t)net.head.tensors[t].t.numel * sizeof(float)) == 0;
    CHECK(same, "head, widths and source classes survive the round trip");
    ns_cct_free(&back);
    CHECK(ns_cct_load(&back, path, NS_CCT_G, &err) < 0 && strstr(err.msg, "a D model where G was expected"),
          "a D where G is wanted is an error: %s", err.msg);
    ns_model plain;
    ns_model_load(&plain, path, &err);
    CHECK(plain.nnodes == net.backbone.nnodes, "a plain model reader sees the backbone");
    ns_model_free(&plain);
    unlink(path);
    ns_cct_free(&net);
}

// Images 1x4x4 of 4 classes: class c lights quadrant c (value 1), plus noise.
static void quadrant_images(ns_samples *s, int64_t n, int first_class, uint64_t seed) {
    s->n = n;
    s->numel = 16;
    s->x = calloc((size_t)n * 16, sizeof(float));
    s->y = calloc((size_t)n, sizeof(int32_t));
    s->ids = calloc((size_t)n, sizeof(int64_t));
    s->labels = NULL;
    s->nlabels = 0;
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(i % 2);
        s->y[i] = c;
        s->ids[i] = i;
        int q = first_class + c, qy = q / 2, qx = q % 2;
        for (int p = 0; p < 16; p++) {
            int y = p / 4, x = p % 4;
            s->x[i * 16 + p] = (float)((y / 2 == qy && x / 2 == qx) + 0.2 * (ns_rng_uniform(&rng) - 0.5));
        }
    }
}

static double pair_accuracy(ns_cct_net *G, const ns_samples *s) {
    ns_cct_run r;
    ns_err err;
    if (ns_cct_run_init(&r, G, 64, 0, &err) < 0) return -1;
    ns_cct_pairs p;
    ns_cct_pairs_init(&p, s->y, s->n, &err);
    ns_rng rng;
    ns_rng_seed(&rng, 11);
    int64_t i1[64], i2[64];
    float y[64];
    ns_cct_pairs_draw(&p, &rng, 64, i1, i2, y);
    for (int b = 0; b < 64; b++) {
        memcpy(r.x + b * 16, s->x + i1[b] * 16, 16 * sizeof(float));
        memcpy(r.x + (64 + b) * 16, s->x + i2[b] * 16, 16 * sizeof(float));
    }
    const float *logit = ns_cct_forward(&r, NULL, NULL, NULL, 64, 0, &err);
    int ok = 0;
    for (int b = 0; logit && b < 64; b++) ok += (logit[b] >= 0) == (y[b] == 1);
    ns_cct_pairs_free(&p);
    ns_cct_run_free(&r);
    return ok / 64.0;
}

// Pretraining must learn the source pairs (a gradient that piles up across
// steps, or goes the wrong way, would not); the adversarial stage must run
// and change G's weights but not its shape.
static void test_training(void) {
    ns_samples src, tgt;
    quadrant_images(&src, 200, 0, 1);  // classes: quadrants 0 and 1
    quadrant_images(&tgt, 200, 2, 2);  // quadrants 2 and 3
    ns_model bb, bbd;
    tiny_backbone(&bb, 1);
    tiny_backbone(&bbd, 2);
    ns_cct_net G, D;
    ns_err err;
    int64_t hidden[1] = {8};
    ns_cct_create(&G, NS_CCT_G, &bb, hidden, 1, 1, &err);
    ns_cct_create(&D, NS_CCT_D, &bbd, hidden, 1, 2, &err);
    double before = pair_accuracy(&G, &src);
    ns_cct_train_config cfg;
    ns_cct_train_config_default(&cfg);
    cfg.pre_epochs = 8;
    cfg.adv_epochs = 0;
    cfg.pairs_per_epoch = 512;
    cfg.batch = 32;
    cfg.lr_pre = 1e-2;
    cfg.crop_pad = 0;
    cfg.flip_p = 0;
    ns_cct_epoch_stats last;
    CHECK(ns_cct_train(&G, NULL, &src, &tgt, NULL, &cfg, &last, &err) == 0, "pretraining runs");
    double after = pair_accuracy(&G, &src);
    CHECK(after >= 0.9 && last.loss_g < 0.35, "pretraining learns source pairs: accuracy %.3f -> %.3f, loss %.3f", before, after,
          last.loss_g);
    float w0 = G.head.tensors[0].t.data ? ((float *)G.head.tensors[0].t.data)[0] : 0;
    cfg.pre_epochs = 0;
    cfg.adv_epochs = 2;
    cfg.pairs_per_epoch = 128;
    cfg.g_src_steps = 1;
    CHECK(ns_cct_train(&G, &D, &src, &tgt, NULL, &cfg, &last, &err) == 0, "the adversarial stage runs");
    CHECK(last.acc_d_src >= 0 && last.acc_d_src <= 1 && isfinite(last.loss_d) && isfinite(last.loss_g),
          "its epoch figures are finite (loss G %.3f, loss D %.3f, D on source %.3f)", last.loss_g, last.loss_d,
          last.acc_d_src);
    CHECK(((float *)G.head.tensors[0].t.data)[0] != w0, "G moved");
    cfg.use_d_src = cfg.use_d_tgt = 0;
    CHECK(ns_cct_train(&G, &D, &src, &tgt, NULL, &cfg, &last, &err) < 0 && strstr(err.msg, "needs D"),
          "G's adversarial loss without any D term is refused");
    ns_cct_free(&G);
    ns_cct_free(&D);
    ns_samples_free(&src);
    ns_samples_free(&tgt);
}

int main(void) {
    check_net_grads(NS_CCT_G, 0);
    check_net_grads(NS_CCT_D, 0);
    check_net_grads(NS_CCT_G, 1);
    check_net_grads(NS_CCT_D, 1);
    test_twin();
    test_pairs();
    test_decide();
    test_metrics();
    test_reps();
    test_roundtrip();
    test_training();
    return check_done();
}
