// test_asr.c: activation sample reweighting (lib/cav/asr.h) on generated
// features with known answers: weights against the formula by hand and
// their mean of 1 per class, a planted off-concept direction down-weighted,
// a zero CAV giving weights of exactly 1 and the same head as uniform
// training bit for bit, head training against a plain-loop reference of
// full-batch SGD with momentum, the confusion's most-confused class with
// ties, and the CAV stream reader's refusals.
//
// Shapes: x (N, D), y (N), W (K, D), b (K), cavs (K, D), weights (N).
// sanitize: yes
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cav/asr.h"
#include "cav/cav_io.h"
#include "check.h"
#include "base/rng.h"
#include "stream/tns.h"

#define N 300
#define D 6
#define K 3

// Class c: direction e_c plus noise, a shared offset; the first 40 samples of
// class 0 (rows 0, 3, 6, ...) carry an off-concept direction e_5 instead of
// most of e_0.
static void make_features(float *x, int32_t *y, int *spurious) {
    ns_rng r;
    ns_rng_seed(&r, 11);
    int seen0 = 0;
    for (int i = 0; i < N; i++) {
        y[i] = i % K;
        spurious[i] = y[i] == 0 && seen0++ < 40;
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(0.3 * ns_rng_normal(&r)) + 0.5f;
        x[i * D + y[i]] += spurious[i] ? 0.3f : 3.0f;
        if (spurious[i]) x[i * D + 5] += 3.0f;
    }
}

static double cos_d(const float *a, const float *b, int d) {
    double ab = 0, aa = 0, bb = 0;
    for (int j = 0; j < d; j++) {
        ab += (double)a[j] * b[j];
        aa += (double)a[j] * a[j];
        bb += (double)b[j] * b[j];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static void test_weights(void) {
    static float x[N * D], w[N], act[N];
    int32_t y[N];
    int sp[N];
    make_features(x, y, sp);
    float cavs[K * D] = {0};
    for (int c = 0; c < K; c++) cavs[c * D + c] = 1;
    ns_err err = {{0}};
    CHECK(ns_asr_weights(w, act, x, y, N, D, cavs, K, &err) == 0, "weights: %s", err.msg);
    // by hand: |I_k| exp(cos) / sum over the class
    double worst = 0;
    for (int c = 0; c < K; c++) {
        double sum = 0, mean = 0;
        int nk = 0;
        for (int i = 0; i < N; i++)
            if (y[i] == c) sum += exp(cos_d(cavs + c * D, x + i * D, D)), nk++;
        for (int i = 0; i < N; i++)
            if (y[i] == c) {
                double want = nk * exp(cos_d(cavs + c * D, x + i * D, D)) / sum;
                double diff = fabs(want - w[i]);
                worst = diff > worst ? diff : worst;
                mean += w[i];
            }
        mean /= nk;
        CHECK(fabs(mean - 1) < 1e-6, "class %d: weights have mean 1 (%.9f)", c, mean);
    }
    CHECK(worst < 1e-6, "weights equal the formula by hand (maxdiff %.3g)", worst);
    double a_sp = 0, a_rest = 0, w_sp = 0, w_rest = 0;
    int n_sp = 0, n_rest = 0;
    for (int i = 0; i < N; i++) {
        if (y[i] != 0) continue;
        if (sp[i]) a_sp += act[i], w_sp += w[i], n_sp++;
        else a_rest += act[i], w_rest += w[i], n_rest++;
    }
    w_sp /= n_sp, w_rest /= n_rest;
    CHECK(w_sp < 0.8 && w_rest > 1.1, "the planted off-concept samples are down-weighted (%.3f against %.3f)", w_sp,
          w_rest);
    CHECK(a_sp / n_sp < a_rest / n_rest - 0.3, "and activate the CAV less (%.3f against %.3f)", a_sp / n_sp,
          a_rest / n_rest);
    double sp_max = 0, rest_min = 1e9;
    for (int i = 0; i < N; i++)
        if (y[i] == 0) {
            if (sp[i]) sp_max = fmax(sp_max, w[i]);
            else rest_min = fmin(rest_min, w[i]);
        }
    CHECK(sp_max < 1 && sp_max < rest_min, "every off-concept sample weighs under 1 and under every other (%.3f, %.3f)",
          sp_max, rest_min);

    int32_t bad[N];
    memcpy(bad, y, sizeof bad);
    bad[7] = K;
    CHECK(ns_asr_weights(w, NULL, x, bad, N, D, cavs, K, &err) < 0 && strstr(err.msg, "row 7"),
          "a label outside the head is refused (%s)", err.msg);
    bad[7] = -1;
    CHECK(ns_asr_weights(w, NULL, x, bad, N, D, cavs, K, &err) < 0 && strstr(err.msg, "unlabelled"),
          "an unlabelled sample is refused (%s)", err.msg);
}

static void test_zero_cav_is_uniform(void) {
    static float x[N * D], w[N];
    int32_t y[N];
    int sp[N];
    make_features(x, y, sp);
    float cavs[K * D] = {0};
    ns_err err = {{0}};
    CHECK(ns_asr_weights(w, NULL, x, y, N, D, cavs, K, &err) == 0, "zero cav weights: %s", err.msg);
    int ones = 1;
    for (int i = 0; i < N; i++) ones &= w[i] == 1.0f;
    CHECK(ones, "a zero CAV gives every weight exactly 1");
    float w0[K * D], b0[K], w1[K * D], b1[K];
    for (int i = 0; i < K * D; i++) w0[i] = w1[i] = (float)(0.1 * ((i * 7) % 5) - 0.2);
    for (int i = 0; i < K; i++) b0[i] = b1[i] = 0;
    ns_asr_config cfg;
    ns_asr_config_default(&cfg);
    cfg.epochs = 5;
    cfg.batch = 32;
    cfg.lr = 0.05;
    cfg.seed = 3;
    ns_asr_report r0, r1;
    CHECK(ns_asr_train_head(w0, b0, x, y, w, N, D, K, &cfg, &r0, &err) == 0, "train with zero-cav weights");
    CHECK(ns_asr_train_head(w1, b1, x, y, NULL, N, D, K, &cfg, &r1, &err) == 0, "train uniform");
    CHECK(memcmp(w0, w1, sizeof w0) == 0 && memcmp(b0, b1, sizeof b0) == 0,
          "the head equals uniform training bit for bit");
    CHECK(r0.steps == 5 * 10 && r0.last_loss < r0.first_loss, "%lld steps, loss %.4f -> %.4f", (long long)r0.steps,
          r0.first_loss, r0.last_loss);
    cfg.seed = 4;
    CHECK(ns_asr_train_head(w1, b1, x, y, NULL, N, D, K, &cfg, &r1, &err) == 0 && memcmp(w0, w1, sizeof w0) != 0,
          "another seed gives another head (the shuffles matter)");
}

// Full-batch SGD with momentum on sum_i sw_i CE_i / N, in double, written out.
static void reference_train(double *w, double *b, const float *x, const int32_t *y, const float *sw, int n,
                            int epochs, double lr, double mom) {
    static double vw[K * D], vb[K], gw[K * D], gb[K];
    for (int e = 0; e < epochs; e++) {
        memset(gw, 0, sizeof gw);
        memset(gb, 0, sizeof gb);
        for (int i = 0; i < n; i++) {
            double z[K], mx = -1e300, s = 0;
            for (int c = 0; c < K; c++) {
                z[c] = b[c];
                for (int j = 0; j < D; j++) z[c] += w[c * D + j] * x[i * D + j];
                mx = z[c] > mx ? z[c] : mx;
            }
            for (int c = 0; c < K; c++) s += exp(z[c] - mx);
            for (int c = 0; c < K; c++) {
                double g = (exp(z[c] - mx) / s - (c == y[i])) * sw[i] / n;
                gb[c] += g;
                for (int j = 0; j < D; j++) gw[c * D + j] += g * x[i * D + j];
            }
        }
        for (int t = 0; t < K * D; t++) {
            vw[t] = e ? mom * vw[t] + gw[t] : gw[t];
            w[t] -= lr * vw[t];
        }
        for (int c = 0; c < K; c++) {
            vb[c] = e ? mom * vb[c] + gb[c] : gb[c];
            b[c] -= lr * vb[c];
        }
    }
}

static void test_training_reference(void) {
    static float x[N * D], sw[N];
    int32_t y[N];
    int sp[N];
    make_features(x, y, sp);
    for (int i = 0; i < N; i++) sw[i] = 0.5f + (float)(i % 4) * 0.25f;
    float w[K * D], b[K];
    double rw[K * D], rb[K];
    for (int i = 0; i < K * D; i++) rw[i] = w[i] = (float)(0.05 * ((i * 5) % 7) - 0.15);
    for (int i = 0; i < K; i++) rb[i] = b[i] = (float)(0.1 * i);
    ns_asr_config cfg;
    ns_asr_config_default(&cfg);
    cfg.epochs = 30;
    cfg.batch = N; // one batch: the shuffle cannot matter
    cfg.lr = 0.1;
    ns_err err = {{0}};
    CHECK(ns_asr_train_head(w, b, x, y, sw, N, D, K, &cfg, NULL, &err) == 0, "train: %s", err.msg);
    reference_train(rw, rb, x, y, sw, N, 30, 0.1, 0.9);
    double worst = 0;
    for (int i = 0; i < K * D; i++) worst = fmax(worst, fabs(rw[i] - w[i]));
    for (int i = 0; i < K; i++) worst = fmax(worst, fabs(rb[i] - b[i]));
    CHECK(worst < 1e-4, "30 full-batch steps match the written-out reference (maxdiff %.3g)", worst);
    double moved = 0;
    for (int i = 0; i < K * D; i++) moved = fmax(moved, fabs(rw[i] - (0.05 * ((i * 5) % 7) - 0.15)));
    CHECK(moved > 0.05, "and the head moved (%.3f)", moved);
    cfg.epochs = 0;
    float w2[K * D];
    memcpy(w2, w, sizeof w2);
    CHECK(ns_asr_train_head(w, b, x, y, sw, N, D, K, &cfg, NULL, &err) == 0 && memcmp(w, w2, sizeof w2) == 0,
          "0 epochs change nothing");
    cfg.epochs = 1;
    cfg.lr = 0;
    CHECK(ns_asr_train_head(w, b, x, y, sw, N, D, K, &cfg, NULL, &err) < 0, "lr 0 is refused (%s)", err.msg);
}

static void test_confusion(void) {
    // class 0 -> predicted 2 twice and 1 twice (tie: 1); class 1 -> never
    // wrong (tie at 0 among 0 and 2: 0); class 2 -> 0 once
    int32_t y[] = {0, 0, 0, 0, 0, 1, 2, 2};
    // rows: class 0 = [1, 0, 0], 0 -> 2 (x=e2), 0 -> 2, 0 -> 1 (x=e1), 0 -> 1
    float xs[8 * 3] = {1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0};
    float w[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, b[3] = {0, 0, 0};
    int64_t conf[9];
    ns_err err = {{0}};
    CHECK(ns_asr_confusion(conf, xs, y, 8, 3, w, b, 3, &err) == 0, "confusion");
    int64_t want[9] = {1, 2, 2, 0, 1, 0, 1, 0, 1};
    CHECK(memcmp(conf, want, sizeof want) == 0, "confusion matrix by hand (%lld %lld %lld / %lld %lld %lld / %lld %lld %lld)",
          (long long)conf[0], (long long)conf[1], (long long)conf[2], (long long)conf[3], (long long)conf[4],
          (long long)conf[5], (long long)conf[6], (long long)conf[7], (long long)conf[8]);
    CHECK(ns_asr_most_confused(conf, 3, 0) == 1, "class 0: tie between 1 and 2 goes to 1");
    CHECK(ns_asr_most_confused(conf, 3, 1) == 0, "class 1: never wrong: the lowest other index");
    CHECK(ns_asr_most_confused(conf, 3, 2) == 0, "class 2: taken for 0");
    int64_t correct[3], total[3];
    CHECK(ns_asr_accuracy(correct, total, xs, y, 8, 3, w, b, 3, &err) == 0 && correct[0] == 1 && total[0] == 5 &&
              correct[2] == 1 && total[2] == 2,
          "accuracy counts");
}

// A CAV stream with records given as (concept, model, layer, width).
static void write_cavs(const char *path, int m, const char *const *concepts, const char *const *models,
                       const char *const *layers, const int64_t *widths) {
    FILE *f = fopen(path, "wb");
    ns_writer w;
    ns_writer_init(&w, f);
    ns_err err = {{0}};
    for (int i = 0; i < m; i++) {
        float v[16];
        for (int j = 0; j < 16; j++) v[j] = (float)(i + j);
        ns_tensor t = {.dtype = NS_F32, .ndim = 1, .shape = {widths[i]}, .numel = widths[i], .data = v};
        ns_map meta;
        ns_map_init(&meta);
        ns_map_str(&meta, "cav.concept", concepts[i]);
        if (models[i]) ns_map_str(&meta, "cav.model", models[i]);
        ns_map_str(&meta, "cav.layer", layers[i]);
        ns_write_tensor(&w, "cav", &t, &meta, &err);
        ns_map_free(&meta);
    }
    ns_writer_free(&w);
    fclose(f);
}

static void test_cav_stream(void) {
    char path[] = "/tmp/test_asr_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const char *c2[] = {"a", "b"}, *mm[] = {"m1", "m1"}, *ll[] = {"fc.in", "fc.in"};
    const int64_t w4[] = {4, 4};
    ns_cavs c;
    ns_err err = {{0}};
    write_cavs(path, 2, c2, mm, ll, w4);
    CHECK(ns_cavs_load(&c, path, "m1", "fc.in", 4, &err) == 0 && c.m == 2 && c.v[4] == 1.0f &&
              ns_cavs_find(&c, "b") == 1 && ns_cavs_find(&c, "z") < 0,
          "two cavs read");
    ns_cavs_free(&c);
    CHECK(ns_cavs_load(&c, path, "m2", "fc.in", 4, &err) < 0 && strstr(err.msg, "model m1"),
          "another model is refused (%s)", err.msg);
    CHECK(ns_cavs_load(&c, path, "m1", "avgpool", 4, &err) < 0 && strstr(err.msg, "layer fc.in"),
          "another layer is refused (%s)", err.msg);
    CHECK(ns_cavs_load(&c, path, "m1", "fc.in", 5, &err) < 0 && strstr(err.msg, "4 values for features of 5"),
          "another width is refused (%s)", err.msg);
    const char *dup[] = {"a", "a"};
    write_cavs(path, 2, dup, mm, ll, w4);
    CHECK(ns_cavs_load(&c, path, "m1", "fc.in", 4, &err) < 0 && strstr(err.msg, "two cavs"),
          "a repeated concept is refused (%s)", err.msg);
    const char *nom[] = {"m1", NULL};
    write_cavs(path, 2, c2, nom, ll, w4);
    CHECK(ns_cavs_load(&c, path, "m1", "fc.in", 4, &err) < 0 && strstr(err.msg, "without cav.model"),
          "a cav without cav.model is refused (%s)", err.msg);
    write_cavs(path, 2, c2, mm, ll, w4);
    CHECK(truncate(path, 60) == 0 && ns_cavs_load(&c, path, "m1", "fc.in", 4, &err) < 0,
          "a truncated stream is refused (%s)", err.msg);
    write_cavs(path, 0, c2, mm, ll, w4);
    CHECK(ns_cavs_load(&c, path, "m1", "fc.in", 4, &err) < 0 && strstr(err.msg, "no cav records"),
          "an empty stream is refused (%s)", err.msg);
    unlink(path);
}

int main(void) {
    test_weights();
    test_zero_cav_is_uniform();
    test_training_reference();
    test_confusion();
    test_cav_stream();
    return check_done();
}
