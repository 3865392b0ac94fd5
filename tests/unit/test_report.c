// test_report.c: the progress/message interface of base/report.h. A NULL
// reporter or callback is silent; the wrappers pass units, totals, counts and
// formatted lines through; the trainer reports one progress loop per epoch
// (counting every image) and an epoch line, through the reporter only.
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/report.h"
#include "nn/arch.h"
#include "nn/trainer.h"

typedef struct record {
    char log[4096]; // "b unit total;u done;e;m line;" in call order
    size_t len;
} record;

static void add(record *r, const char *s) {
    size_t n = strlen(s);
    if (r->len + n < sizeof r->log) {
        memcpy(r->log + r->len, s, n + 1);
        r->len += n;
    }
}

static void on_begin(void *ctx, const char *unit, int64_t total) {
    char s[128];
    snprintf(s, sizeof s, "b %s %lld;", unit, (long long)total);
    add(ctx, s);
}

static void on_update(void *ctx, int64_t done) {
    char s[64];
    snprintf(s, sizeof s, "u %lld;", (long long)done);
    add(ctx, s);
}

static void on_end(void *ctx) { add(ctx, "e;"); }

static void on_message(void *ctx, const char *line) {
    add(ctx, "m ");
    add(ctx, line);
    add(ctx, ";");
}

static void test_wrappers(void) {
    // NULL reporter, and a reporter without callbacks: nothing happens, no crash
    ns_report_begin(NULL, "images", 3);
    ns_report_update(NULL, 1);
    ns_report_end(NULL);
    ns_report_message(NULL, "x %d", 1);
    ns_reporter none = {0};
    ns_report_begin(&none, "images", 3);
    ns_report_update(&none, 1);
    ns_report_end(&none);
    ns_report_message(&none, "x %d", 1);
    CHECK(1, "a NULL reporter and NULL callbacks are silent");

    record r = {0};
    ns_reporter rep = {&r, on_begin, on_update, on_end, on_message};
    ns_report_begin(&rep, "images", 10);
    ns_report_update(&rep, 4);
    ns_report_update(&rep, 10);
    ns_report_end(&rep);
    ns_report_message(&rep, "sweep %d: mean score %.3f", 2, 0.5);
    CHECK(strcmp(r.log, "b images 10;u 4;u 10;e;m sweep 2: mean score 0.500;") == 0, "calls passed through in order (%s)",
          r.log);

    // messages only: progress callbacks may be NULL
    record m = {0};
    ns_reporter lines = {.ctx = &m, .message = on_message};
    ns_report_begin(&lines, "images", 10);
    ns_report_update(&lines, 10);
    ns_report_end(&lines);
    ns_report_message(&lines, "%s", "done");
    CHECK(strcmp(m.log, "m done;") == 0, "a reporter of messages only (%s)", m.log);

    // a line longer than the buffer is cut, not overrun
    char long_word[2 * NS_ERR_MAX];
    memset(long_word, 'a', sizeof long_word - 1);
    long_word[sizeof long_word - 1] = 0;
    record t = {0};
    ns_reporter cut = {.ctx = &t, .message = on_message};
    ns_report_message(&cut, "%s", long_word);
    CHECK(t.len == NS_ERR_MAX - 1 + 3, "a long line is cut to %d bytes (%zu)", NS_ERR_MAX - 1, t.len - 3);

    double a = ns_now(), b = ns_now();
    CHECK(a > 0 && b >= a, "ns_now is monotonic (%.9f, %.9f)", a, b);
}

// ns_train on 10 vectors of 4 features, batches of 4, 2 epochs.
static void test_trainer_reports(void) {
    ns_err err;
    ns_model m;
    ns_model_init(&m);
    ns_arch_opts o = {.in_c = 4, .classes = 2, .width = 1, .hidden = {8}, .nhidden = 1};
    int rc = ns_arch_build(&m, "mlp", &o, &err);
    CHECK(rc == 0, "an mlp (%s)", rc ? err.msg : "ok");
    if (rc < 0) return;
    enum { N = 10, D = 4 };
    float x[N * D];
    int32_t y[N];
    int64_t ids[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) x[i * D + j] = (float)((i * 7 + j * 3) % 5) / 5.0f;
        y[i] = i % 2;
        ids[i] = i;
    }
    ns_samples s = {.x = x, .y = y, .ids = ids, .n = N, .numel = D};
    record r = {0};
    ns_reporter rep = {&r, on_begin, on_update, on_end, on_message};
    ns_train_config cfg = {.epochs = 2, .batch = 4, .seed = 1, .report = &rep};
    ns_optim_config_default(&cfg.optim, NS_OPTIM_SGD);
    rc = ns_lr_parse(&cfg.schedule, "constant", 0.01, &err);
    if (rc == 0) rc = ns_train(&m, &s, NULL, &cfg, NULL, &err);
    CHECK(rc == 0, "two epochs trained (%s)", rc ? err.msg : "ok");
    const char *epoch1 = "b images 10;u 4;u 8;u 10;e;m epoch 1/2  loss ";
    CHECK(strncmp(r.log, epoch1, strlen(epoch1)) == 0, "epoch 1: a progress loop over the images, then its line (%s)",
          r.log);
    const char *e2 = strstr(r.log, ";b images 10;u 4;u 8;u 10;e;m epoch 2/2  loss ");
    CHECK(e2 != NULL && strstr(e2 + 1, ";b ") == NULL, "epoch 2 the same, and nothing more (%s)", r.log);
    CHECK(strstr(r.log, "img/s") && strstr(r.log, "ETA "), "the epoch line has its rate and ETA");

    // NULL: the same training, silently
    cfg.report = NULL;
    rc = ns_train(&m, &s, NULL, &cfg, NULL, &err);
    CHECK(rc == 0, "a NULL reporter trains silently (%s)", rc ? err.msg : "ok");
    ns_model_free(&m);
}

int main(void) {
    setenv("NETSMITH_THREADS", "1", 0);
    test_wrappers();
    test_trainer_reports();
    return check_done();
}
