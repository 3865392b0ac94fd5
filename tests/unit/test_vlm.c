// test_vlm.c: the clip-small model: tokenizer, text tower and contrastive
// loss gradients against finite differences, the loss against known values,
// ROC AUC, the model file round trip and its corruptions, and a tiny
// synthetic training run that must learn.
// sanitize: yes
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/arch.h"
#include "check.h"
#include "base/rng.h"
#include "cav/vlm_train.h"
#include "nn/engine.h"

// ----------------------------------------------------------------------------
// tokenizer

static void test_tokenizer(void) {
    ns_err err;
    ns_vocab v;
    CHECK(ns_vocab_init(&v, &err) == 0 && v.n == 1 && strcmp(v.words[0], "<unk>") == 0, "vocab starts with <unk>");
    CHECK(ns_vocab_add_text(&v, "A photo of a T-shirt/top, BRIGHT!", &err) == 0, "add text");
    const char *want[] = {"<unk>", "a", "photo", "of", "t", "shirt", "top", "bright"};
    int same = v.n == 8;
    for (int i = 0; same && i < 8; i++) same = strcmp(v.words[i], want[i]) == 0;
    CHECK(same, "words lowercased, split on non-alphanumerics, first-seen order (%d words)", (int)v.n);
    int32_t ids[16];
    int64_t n = ns_tokenize(&v, "a  bright  Zebra; photo 42", ids, 16);
    CHECK(n == 5 && ids[0] == 1 && ids[1] == 7 && ids[2] == 0 && ids[3] == 2 && ids[4] == 0,
          "unknown words and numbers not seen become <unk> (n %lld)", (long long)n);
    // round trip: the words of a text's ids are the text, lowercased, one space apart
    const char *text = "Ankle-boot: a PHOTO of 3 shoes";
    ns_vocab_add_text(&v, text, &err);
    n = ns_tokenize(&v, text, ids, 16);
    char joined[128] = "";
    for (int64_t i = 0; i < n; i++) {
        if (i) strcat(joined, " ");
        strcat(joined, v.words[ids[i]]);
    }
    CHECK(strcmp(joined, "ankle boot a photo of 3 shoes") == 0, "round trip (%s)", joined);
    CHECK(ns_tokenize(&v, " ,.;", ids, 16) == 1 && ids[0] == 0, "no words: one <unk>");
    CHECK(ns_tokenize(&v, "a a a a", ids, 2) == 4, "too small a buffer: the count is returned");
    char longword[200];
    memset(longword, 'x', 150);
    longword[150] = '\0';
    ns_vocab_add_text(&v, longword, &err);
    CHECK(strlen(v.words[v.n - 1]) == NS_WORD_MAX, "long words cut to %d bytes", NS_WORD_MAX);
    CHECK(ns_vocab_find(&v, "photo") == 2 && ns_vocab_find(&v, "nothing") == 0, "find");
    // stored word lists
    ns_vocab w;
    char *good[] = {"<unk>", "a", "b"}, *no_unk[] = {"a", "b"}, *dup[] = {"<unk>", "a", "a"}, *upper[] = {"<unk>", "A"},
         *sep[] = {"<unk>", "a b"};
    CHECK(ns_vocab_from_words(&w, good, 3, &err) == 0 && w.n == 3 && ns_vocab_find(&w, "b") == 2, "from words");
    ns_vocab_free(&w);
    CHECK(ns_vocab_from_words(&w, no_unk, 2, &err) < 0 && strstr(err.msg, "<unk>"), "no <unk> first: %s", err.msg);
    CHECK(ns_vocab_from_words(&w, dup, 3, &err) < 0 && strstr(err.msg, "repeats"), "repeated word: %s", err.msg);
    CHECK(ns_vocab_from_words(&w, upper, 2, &err) < 0 && strstr(err.msg, "not a token"), "uppercase: %s", err.msg);
    CHECK(ns_vocab_from_words(&w, sep, 2, &err) < 0, "a separator inside a word");
    // many words: the hash table grows
    char word[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(word, sizeof word, "w%d", i);
        ns_vocab_add(&v, word, NULL, &err);
    }
    int found = 1;
    for (int i = 0; i < 5000; i += 7) {
        snprintf(word, sizeof word, "w%d", i);
        found &= strcmp(v.words[ns_vocab_find(&v, word)], word) == 0;
    }
    CHECK(found, "5000 more words found again");
    // the text tower's lists leave unknown words out
    const char *texts[3] = {"a zebra photo", "zebra giraffe", ""};
    ns_token_lists tl = {0};
    CHECK(ns_token_lists_fill(&tl, &v, texts, 3, &err) == 0 && tl.offsets[1] == 2 && tl.ids[0] == 1 && tl.ids[1] == 2 &&
              tl.offsets[2] == 3 && tl.ids[2] == 0 && tl.offsets[3] == 4 && tl.ids[3] == 0,
          "token lists: unknown words left out, only-unknown texts are <unk>");
    ns_token_lists_free(&tl);
    ns_vocab_free(&v);
}

// ----------------------------------------------------------------------------
// text tower and loss against finite differences

static void fill(float *x, int64_t n, ns_rng *rng, double scale) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(ns_rng_normal(rng) * scale);
}

// sum(out * r) of the text tower, in double for finite differences.
static double tower_objective(const ns_token_lists *tok, const float *emb, const float *w, const float *b, const float *r,
                              int64_t D, int64_t E) {
    float out[4 * 5], pooled[4 * 6];
    ns_text_tower_forward(out, pooled, tok, emb, w, b, D, E);
    double s = 0;
    for (int64_t i = 0; i < tok->n * E; i++) s += (double)out[i] * r[i];
    return s;
}

static double fd_max_rel(float *param, int64_t n, const float *grad, double (*f)(void *), void *ctx, double h) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float keep = param[i];
        param[i] = keep + (float)h;
        double up = f(ctx);
        param[i] = keep - (float)h;
        double down = f(ctx);
        param[i] = keep;
        double num = (up - down) / (2 * h), diff = fabs(num - grad[i]) / (fabs(num) + 1e-2);
        if (diff > worst) worst = diff;
    }
    return worst;
}

typedef struct tower_ctx {
    ns_token_lists *tok;
    float *emb, *w, *b, *r;
    int64_t D, E;
} tower_ctx;

static double tower_f(void *p) {
    tower_ctx *c = p;
    return tower_objective(c->tok, c->emb, c->w, c->b, c->r, c->D, c->E);
}

static void test_text_tower(void) {
    enum { V = 7, D = 6, E = 5, N = 4 };
    ns_rng rng;
    ns_rng_seed(&rng, 3);
    float emb[V * D], w[E * D], b[E], r[N * E];
    fill(emb, V * D, &rng, 1);
    fill(w, E * D, &rng, 0.5);
    fill(b, E, &rng, 0.5);
    fill(r, N * E, &rng, 1);
    int32_t ids[] = {1, 2, 2, 6, 0, 3, 4, 5, 1, 1};
    int64_t offsets[] = {0, 4, 5, 8, 10};
    ns_token_lists tok = {ids, offsets, N, 10, N + 1};
    float out[N * E], pooled[N * D];
    ns_text_tower_forward(out, pooled, &tok, emb, w, b, D, E);
    // text 0 = mean of rows 1, 2, 2, 6
    double want = 0;
    for (int d = 0; d < D; d++) want += w[d] * (emb[1 * D + d] + 2 * emb[2 * D + d] + emb[6 * D + d]) / 4.0;
    CHECK(fabs(out[0] - (want + b[0])) < 1e-5, "text 0, output 0: the projection of the mean embedding (%g vs %g)",
          out[0], want + b[0]);
    float demb[V * D] = {0}, dw[E * D] = {0}, db[E] = {0}, dpooled[N * D];
    ns_text_tower_backward(demb, dw, db, dpooled, r, pooled, &tok, w, D, E);
    tower_ctx c = {&tok, emb, w, b, r, D, E};
    double e1 = fd_max_rel(emb, V * D, demb, tower_f, &c, 1e-2), e2 = fd_max_rel(w, E * D, dw, tower_f, &c, 1e-2),
           e3 = fd_max_rel(b, E, db, tower_f, &c, 1e-2);
    CHECK(e1 < 2e-3 && e2 < 2e-3 && e3 < 2e-3, "text tower backward = finite differences (embedding %.1e, weight %.1e, bias %.1e)",
          e1, e2, e3);
}

typedef struct loss_ctx {
    float *img, *txt, *work;
    double t;
    int64_t B, E;
} loss_ctx;

static double loss_f(void *p) {
    loss_ctx *c = p;
    return ns_clip_loss(NULL, NULL, NULL, c->img, c->txt, c->t, c->B, c->E, c->work);
}

// The loss in double, written out from its definition.
static double loss_reference(const float *img, const float *txt, double t, int64_t B, int64_t E) {
    double s = fmin(exp(t), 100), L[8][8], total = 0;
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < B; j++) {
            double d = 0, ni = 0, nj = 0;
            for (int64_t k = 0; k < E; k++) {
                d += (double)img[i * E + k] * txt[j * E + k];
                ni += (double)img[i * E + k] * img[i * E + k];
                nj += (double)txt[j * E + k] * txt[j * E + k];
            }
            L[i][j] = s * d / sqrt(ni * nj);
        }
    for (int64_t i = 0; i < B; i++) {
        double zr = 0, zc = 0;
        for (int64_t j = 0; j < B; j++) zr += exp(L[i][j]), zc += exp(L[j][i]);
        total += log(zr) - L[i][i] + log(zc) - L[i][i];
    }
    return total / (2.0 * B);
}

static void test_clip_loss(void) {
    enum { B = 5, E = 4 };
    ns_rng rng;
    ns_rng_seed(&rng, 11);
    float img[B * E], txt[B * E], work[3 * B * E + 2 * B * B + 2 * B];
    CHECK(ns_clip_loss_work_floats(B, E) == 3 * B * E + 2 * B * B + 2 * B, "work size");
    // known answer: two orthogonal unit pairs, s = 10: log(1 + e^-10)
    float a[4] = {1, 0, 0, 1}, bb[4] = {3, 0, 0, 0.5f};
    double l = ns_clip_loss(NULL, NULL, NULL, a, bb, log(10.0), 2, 2, work);
    CHECK(fabs(l - log1p(exp(-10.0))) < 1e-6, "orthogonal pairs: log(1 + e^-s) (%.8g vs %.8g)", l, log1p(exp(-10.0)));
    l = ns_clip_loss(NULL, NULL, NULL, a, bb, 0.0, 2, 2, work);
    CHECK(fabs(l - log1p(exp(-1.0))) < 1e-6, "scale 1 (%.8g)", l);
    fill(img, B * E, &rng, 1);
    fill(txt, B * E, &rng, 1);
    double t = 1.2;
    l = ns_clip_loss(NULL, NULL, NULL, img, txt, t, B, E, work);
    double ref = loss_reference(img, txt, t, B, E);
    CHECK(fabs(l - ref) < 1e-5, "random batch: loss %.7f, reference %.7f", l, ref);
    CHECK(fabs(ns_clip_loss(NULL, NULL, NULL, img, txt, 5.0, B, E, work) - loss_reference(img, txt, 5.0, B, E)) < 1e-5,
          "exp(t) clamped to 100");
    // gradients
    float dimg[B * E] = {0}, dtxt[B * E] = {0};
    double dt = 0;
    ns_clip_loss(dimg, dtxt, &dt, img, txt, t, B, E, work);
    loss_ctx c = {img, txt, work, t, B, E};
    double e1 = fd_max_rel(img, B * E, dimg, loss_f, &c, 1e-2), e2 = fd_max_rel(txt, B * E, dtxt, loss_f, &c, 1e-2);
    double h = 1e-3, num = (loss_reference(img, txt, t + h, B, E) - loss_reference(img, txt, t - h, B, E)) / (2 * h);
    CHECK(e1 < 1e-2 && e2 < 1e-2, "d loss / d img, d txt = finite differences (%.1e, %.1e)", e1, e2);
    CHECK(fabs(dt - num) < 1e-4 * fmax(1, fabs(num)), "d loss / d t = finite differences (%.6g vs %.6g)", dt, num);
    // accumulation and the clamp
    double dt2 = 1;
    float acc[B * E];
    for (int i = 0; i < B * E; i++) acc[i] = 1;
    ns_clip_loss(acc, NULL, &dt2, img, txt, t, B, E, work);
    CHECK(fabs(acc[3] - 1 - dimg[3]) < 1e-6 && fabs(dt2 - 1 - dt) < 1e-9, "gradients accumulate");
    dt2 = 0;
    ns_clip_loss(NULL, NULL, &dt2, img, txt, log(200.0), B, E, work);
    CHECK(dt2 == 0, "no temperature gradient while exp(t) is clamped");
    // matched pairs give a low loss, shuffled ones a high loss
    double matched = ns_clip_loss(NULL, NULL, NULL, img, img, log(100.0), B, E, work);
    CHECK(matched < 0.05, "identical pairs at scale 100: loss %.4f", matched);
}

static void test_auc(void) {
    float s[6] = {0.1f, 0.4f, 0.35f, 0.8f, 0.9f, 0.2f};
    uint8_t perfect[6] = {0, 0, 0, 1, 1, 0}, reversed[6] = {1, 1, 1, 0, 0, 1}, mixed[6] = {0, 1, 0, 1, 2, 0};
    CHECK(ns_roc_auc(s, perfect, 6) == 1.0, "separable: AUC 1");
    CHECK(ns_roc_auc(s, reversed, 6) == 0.0, "reversed: AUC 0");
    // positives 0.4, 0.8 against negatives 0.1, 0.35, 0.2: 0.4 beats 3, 0.8 beats 3 -> 1; label 2 ignored
    CHECK(ns_roc_auc(s, mixed, 6) == 1.0, "unknown (2) ignored");
    uint8_t m2[6] = {1, 0, 1, 0, 0, 0}; // positives 0.1, 0.35 vs 0.4, 0.8, 0.9, 0.2: 0.35 beats 0.2 -> 1/8
    CHECK(fabs(ns_roc_auc(s, m2, 6) - 1.0 / 8) < 1e-12, "Mann-Whitney count (%g)", ns_roc_auc(s, m2, 6));
    float tie[4] = {1, 1, 1, 1};
    uint8_t tl[4] = {1, 0, 1, 0}, none[4] = {1, 1, 1, 2};
    CHECK(ns_roc_auc(tie, tl, 4) == 0.5, "ties count a half");
    CHECK(isnan(ns_roc_auc(tie, none, 4)), "no negatives: NAN");
}

// ----------------------------------------------------------------------------
// model files and training

// A model for 8-feature inputs: mlp 8 -> 32 -> E.
static ns_vlm *small_vlm(const char *const *captions, int n, int64_t E, uint64_t seed) {
    ns_err err;
    ns_model m;
    ns_model_init(&m);
    ns_arch_opts o = {.in_c = 8, .classes = (int)E, .width = 1, .hidden = {32}, .nhidden = 1};
    if (ns_arch_build(&m, "mlp", &o, &err) < 0) return NULL;
    ns_model_init_params(&m, seed);
    ns_vocab v;
    ns_vocab_init(&v, &err);
    for (int i = 0; i < n; i++) ns_vocab_add_text(&v, captions[i], &err);
    ns_vlm *vlm;
    if (ns_vlm_create(&vlm, &m, &v, 16, seed, &err) < 0) return NULL;
    return vlm;
}

static int write_vlm(const ns_vlm *v, const char *path) {
    ns_err err;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    ns_writer w;
    ns_writer_init(&w, f);
    int rc = ns_vlm_write(v, &w, NULL, &err);
    ns_writer_free(&w);
    return fclose(f) == 0 ? rc : -1;
}

static void test_file_round_trip(void) {
    const char *caps[] = {"a photo of a cat", "a dog", "a red car"};
    ns_vlm *v = small_vlm(caps, 3, 12, 5);
    CHECK(v != NULL && ns_vlm_dim(v) == 12, "created (E 12)");
    if (!v) return;
    char path[] = "/tmp/test_vlm_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(write_vlm(v, path) == 0, "written");
    ns_err err;
    ns_vlm *back;
    int rc = ns_vlm_load(path, &back, &err);
    CHECK(rc == 0, "loaded back: %s", rc ? err.msg : "ok");
    if (rc == 0) {
        const char *texts[] = {"a cat", "red red car", "zebra"};
        float a[3 * 12], b[3 * 12];
        ns_vlm_embed_texts(v, texts, 3, a, &err);
        ns_vlm_embed_texts(back, texts, 3, b, &err);
        double mabs;
        check_maxdiff(a, b, 36, &mabs);
        double norm = 0;
        for (int j = 0; j < 12; j++) norm += (double)b[j] * b[j];
        CHECK(mabs == 0 && fabs(norm - 1) < 1e-6, "same text embeddings, unit rows (maxdiff %g)", mabs);
        const char *fp = ns_vlm_fingerprint(back);
        CHECK(strlen(fp) == 16 && strspn(fp, "0123456789abcdef") == 16, "fingerprint %s", fp);
        ns_vlm *again;
        ns_vlm_load(path, &again, &err);
        CHECK(again && strcmp(ns_vlm_fingerprint(again), fp) == 0, "fingerprint stable");
        ns_vlm_free(again);
        ns_model *m = ns_vlm_image_model(back);
        CHECK(m->nodes[m->output].numel == 12 && m->nodes[0].numel == 8, "image tower (8) -> (12)");
        ns_vlm_free(back);
    }
    // truncated, and not a VLM at all
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    CHECK(truncate(path, size - 10) == 0 && ns_vlm_load(path, &back, &err) < 0 && strstr(err.msg, "truncated"),
          "truncated file: %s", err.msg);
    ns_model plain;
    ns_model_init(&plain);
    f = fopen(path, "wb");
    ns_writer w;
    ns_writer_init(&w, f);
    ns_model_write(&v->image, &w, NULL, 0, &err);
    ns_writer_free(&w);
    fclose(f);
    CHECK(ns_vlm_load(path, &back, &err) < 0 && strstr(err.msg, "not a VLM"), "a plain model: %s", err.msg);
    CHECK(ns_vlm_load("-", &back, &err) < 0, "standard input refused");
    // a vocabulary that does not match the embedding
    ns_vocab_add(&v->vocab, "extra", NULL, &err);
    write_vlm(v, path);
    CHECK(ns_vlm_load(path, &back, &err) < 0 && strstr(err.msg, "text.embedding"), "vocabulary/embedding mismatch: %s",
          err.msg);
    unlink(path);
    ns_vlm_free(v);
}

// Synthetic pairs: 4 classes, each image a class mean plus noise, each
// caption names the class among filler words.
typedef struct synth {
    const char *captions[4][2];
} synth;

static const char *synth_caption(void *ctx, int64_t sample, int epoch) {
    const synth *s = ctx;
    return s->captions[sample % 4][(sample / 4 + epoch) % 2];
}

static void test_training_learns(void) {
    synth s = {{{"a photo of a cat", "the cat"}, {"a photo of a dog", "the dog"}, {"a photo of a car", "the car"},
                {"a photo of a ship", "the ship"}}};
    const char *all[8];
    for (int i = 0; i < 8; i++) all[i] = s.captions[i / 2][i % 2];
    ns_vlm *v = small_vlm(all, 8, 16, 1);
    if (!v) {
        CHECK(0, "model");
        return;
    }
    enum { N = 512, F = 8 };
    ns_samples data = {0};
    data.n = N;
    data.numel = F;
    data.x = ns_aligned_alloc(N * F * sizeof(float));
    data.y = malloc(N * sizeof(int32_t));
    data.ids = malloc(N * sizeof(int64_t));
    ns_rng rng;
    ns_rng_seed(&rng, 9);
    float means[4][F];
    fill(&means[0][0], 4 * F, &rng, 1);
    for (int i = 0; i < N; i++) {
        data.y[i] = i % 4;
        data.ids[i] = i;
        for (int j = 0; j < F; j++) data.x[i * F + j] = means[i % 4][j] + (float)(0.3 * ns_rng_normal(&rng));
    }
    ns_vlm_train_config cfg = {.epochs = 12, .batch = 64, .seed = 2, .report = NULL};
    ns_optim_config_default(&cfg.optim, NS_OPTIM_ADAMW);
    ns_err err;
    ns_lr_parse(&cfg.schedule, "constant", 3e-3, &err);
    float *emb = malloc(N * 16 * sizeof(float));
    double before, after;
    char *classes[4] = {"cat", "dog", "car", "ship"};
    ns_vlm_embed_images(v, &data, 100, emb, &err);
    ns_vlm_zero_shot(v, emb, data.y, N, classes, 4, "a photo of a {}", &before, &err);
    ns_vlm_epoch_stats first = {0}, last = {0};
    cfg.epochs = 1;
    int rc = ns_vlm_train(v, &data, synth_caption, &s, &cfg, &first, &err);
    cfg.epochs = 12;
    if (rc == 0) rc = ns_vlm_train(v, &data, synth_caption, &s, &cfg, &last, &err);
    CHECK(rc == 0, "trained: %s", rc ? err.msg : "ok");
    // In-batch, 64 pairs of 4 kinds: the floor is about log(16), half the row is a tie.
    CHECK(last.loss < first.loss - 0.3, "loss falls (%.3f after 1 epoch, %.3f after 12 more)", first.loss, last.loss);
    ns_vlm_embed_images(v, &data, 100, emb, &err);
    ns_vlm_zero_shot(v, emb, data.y, N, classes, 4, "a photo of a {}", &after, &err);
    CHECK(after > 0.95, "zero-shot accuracy %.3f (before training %.3f, chance 0.25)", after, before);
    float *texts = malloc(4 * 16 * sizeof(float));
    const char *q[4] = {"cat", "dog", "car", "ship"};
    ns_vlm_embed_texts(v, q, 4, texts, &err);
    float score[N];
    uint8_t lab[N];
    for (int i = 0; i < N; i++) {
        double d = 0;
        for (int j = 0; j < 16; j++) d += (double)emb[i * 16 + j] * texts[1 * 16 + j];
        score[i] = (float)d;
        lab[i] = data.y[i] == 1;
    }
    double auc = ns_roc_auc(score, lab, N);
    CHECK(auc > 0.95, "retrieval of 'dog' images by the word alone: AUC %.3f", auc);
    CHECK(((float *)v->logit_scale.data)[0] <= (float)log(100.0), "logit scale within its clamp");
    cfg.batch = 1;
    CHECK(ns_vlm_train(v, &data, synth_caption, &s, &cfg, NULL, &err) < 0 && strstr(err.msg, "at least 2"),
          "batch of 1 refused: %s", err.msg);
    free(texts);
    free(emb);
    ns_samples_free(&data);
    ns_vlm_free(v);
}

// The transformer tower's ids: start V, the words, end V+1 (the largest id),
// then 0; a text longer than L - 2 words keeps its first L - 2. The tower
// pools at the end id, and causal attention keeps the padding out: the same
// text with more padding (a longer context would change the positions, so
// the same L) or with other values after the end embeds the same.
static void test_transformer_tower(void) {
    enum { V = 5, L = 6 };
    int32_t ids[] = {1, 2, 3, 1, 2, 3, 4, 1, 0};
    int64_t offsets[] = {0, 3, 8, 9};
    ns_token_lists tok = {ids, offsets, 3, 9, 4};
    float got[3 * L];
    ns_vlm_text_ids(got, &tok, V, L);
    const float want[3 * L] = {5, 1, 2, 3, 6, 0, 5, 1, 2, 3, 4, 6, 5, 0, 6, 0, 0, 0};
    CHECK(memcmp(got, want, sizeof want) == 0, "ids: start, words, end, padding; long texts cut to L-2 words");
    ns_err err = {""};
    ns_model image;
    ns_model_init(&image);
    ns_arch_opts o = {.in_c = 8, .classes = 8, .width = 1, .hidden = {16}, .nhidden = 1};
    ns_vocab vocab;
    ns_vocab_init(&vocab, &err);
    ns_vocab_add_text(&vocab, "red car blue ship", &err);
    ns_vlm *v = NULL;
    ns_text_shape shape = {L, 2, 2};
    int rc = ns_arch_build(&image, "mlp", &o, &err);
    if (rc == 0) rc = ns_vlm_create_transformer(&v, &image, &vocab, 16, &shape, 4, &err);
    CHECK(rc == 0, "a transformer VLM is created%s%s", rc ? ": " : "", rc ? err.msg : "");
    if (rc) return;
    const char *texts[] = {"red car", "car red", "red car zebra", "red car blue ship red car"};
    float e[4 * 8];
    CHECK(ns_vlm_embed_texts(v, texts, 4, e, &err) == 0, "texts embedded");
    double d01 = 0, d02 = 0;
    for (int j = 0; j < 8; j++) d01 += fabs((double)e[j] - e[8 + j]), d02 += fabs((double)e[j] - e[16 + j]);
    CHECK(d01 > 1e-3, "word order counts: 'red car' and 'car red' differ (%g)", d01);
    CHECK(d02 == 0, "an unknown word is left out: 'red car zebra' is 'red car' (%g)", d02);
    // the end token's output depends only on what comes before it
    float idsa[L] = {5, 1, 2, 6, 0, 0}, idsb[L] = {5, 1, 2, 6, 3, 1}, ya[8];
    ns_engine eng;
    rc = ns_engine_init(&eng, &v->text, 1, 0, &err);
    if (rc == 0) {
        const float *y = ns_engine_forward(&eng, idsa, 1, 0, &err);
        memcpy(ya, y, sizeof ya);
        y = ns_engine_forward(&eng, idsb, 1, 0, &err);
        CHECK(memcmp(ya, y, sizeof ya) == 0, "tokens after the end token change nothing (causal attention)");
        ns_engine_free(&eng);
    }
    ns_vlm_free(v);
}

int main(void) {
    test_tokenizer();
    test_text_tower();
    test_transformer_tower();
    test_clip_loss();
    test_auc();
    test_file_round_trip();
    test_training_learns();
    return check_done();
}
