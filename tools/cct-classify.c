// cct-classify: classifies images of novel classes with a CCT-Net G
// (lib/cct/cct.h) by comparing each query with K labelled representatives of
// every class: the class with most votes G >= 0.5 wins (the paper), ties
// going to the higher mean probability; or the highest mean probability.
// Prints accuracy and macro-F1; optionally writes the per-class scores and
// predictions as a stream.
//
//   cct-classify --model G.tns --reps REPS [-K N] [options] QUERIES
#include <stdlib.h>
#include <string.h>

#include "cct/cct.h"
#include "cli/cli.h"

struct cmdline {
    const char *model, *reps, *score, *output;
    int K, random, quiet;
    int64_t seed, batch;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"model", 'm', NS_OPT_STR, &cmd->model, "G", "the comparison classifier (cct-train's output; required)", 0, 0},
        {"reps", 'r', NS_OPT_STR, &cmd->reps, "DATA", "labelled images of the novel classes to draw representatives from (required)", 0, 0},
        {"shots", 'K', NS_OPT_INT, &cmd->K, "K", "representatives per class (default 1)", 1, 1 << 20},
        {"random", 0, NS_OPT_FLAG, &cmd->random, NULL, "draw the K representatives at random (as the official test) instead of the first K per class", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed for --random (default 1)", 0, 0},
        {"score", 0, NS_OPT_STR, &cmd->score, "HOW", "vote (default: votes G >= 0.5, ties by mean probability) or mean (mean probability)", 0, 0},
        {"batch", 'b', NS_OPT_I64, &cmd->batch, "N", "images or pairs per forward (default 256)", 1, 1 << 16},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write the scores (N, k) with labels, ids and predictions as a stream", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "--model G --reps DATA [-K N] [options] QUERIES",
        "Classify images of novel classes by comparison with K labelled representatives\n"
        "per class through CCT-Net's G, and report accuracy and macro-F1.",
        "stdout: \"accuracy A\", \"macro_f1 F\", \"samples N\" (tab-separated). Queries and\n"
        "representatives must carry the same class names (general.labels); none may\n"
        "be one of G's source classes. Queries without a label are classified but not\n"
        "counted.",
        1, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!cmd->model || !cmd->reps) ns_die_usage("--model and --reps are required");
    if (cmd->score && strcmp(cmd->score, "vote") != 0 && strcmp(cmd->score, "mean") != 0)
        ns_die_usage("--score is vote or mean (%s)", cmd->score);
    if (cmd->output && strcmp(cmd->output, "-") == 0) ns_die_usage("--output needs a file: standard output carries the report");
}

static int check_classes(const ns_cct_net *G, const ns_samples *q, const ns_samples *r, const char *qp,
                         const char *rp, ns_err *err) {
    if (!r->labels) return ns_errf(err, "%s: no class names (general.labels)", rp);
    if (q->labels) {
        if (q->nlabels != r->nlabels) return ns_errf(err, "%s has %zu classes but %s has %zu", qp, q->nlabels, rp, r->nlabels);
        for (size_t i = 0; i < q->nlabels; i++)
            if (strcmp(q->labels[i], r->labels[i]) != 0)
                return ns_errf(err, "class %zu is '%s' in %s but '%s' in %s", i, q->labels[i], qp, r->labels[i], rp);
    }
    for (size_t i = 0; i < r->nlabels; i++)
        for (size_t j = 0; j < G->nsource; j++)
            if (strcmp(r->labels[i], G->source_classes[j]) == 0)
                return ns_errf(err, "class '%s' of %s is one of G's source classes: the classes must be novel", r->labels[i], rp);
    return 0;
}

static int write_scores(const char *path, const ns_samples *q, const ns_samples *reps, const float *scores, int k,
                        const int32_t *pred, const char *how, ns_err *err) {
    ns_output out;
    if (ns_output_open(&out, path, err) < 0) return -1;
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "cct-classify " NS_VERSION);
    ns_map_strs(&meta, "general.labels", (const char *const *)reps->labels, reps->nlabels);
    ns_map_str(&meta, "cct.score", how);
    int rc = ns_write_meta(&w, "", &meta, err);
    ns_map_free(&meta);
    ns_tensor t;
    int64_t shape[2] = {q->n, k};
    if (rc == 0) rc = ns_tensor_alloc(&t, NS_F32, 2, shape, err);
    if (rc == 0) {
        memcpy(t.data, scores, (size_t)(q->n * k) * sizeof(float));
        int64_t *labels = malloc((size_t)q->n * sizeof *labels), *predicted = malloc((size_t)q->n * sizeof *predicted);
        if (!labels || !predicted) rc = ns_errf(err, "out of memory");
        for (int64_t i = 0; rc == 0 && i < q->n; i++) labels[i] = q->y[i], predicted[i] = pred[i];
        if (rc == 0) {
            ns_map_init(&meta);
            ns_map_i64s(&meta, "labels", labels, (size_t)q->n);
            ns_map_i64s(&meta, "ids", q->ids, (size_t)q->n);
            ns_map_i64s(&meta, "predicted", predicted, (size_t)q->n);
            rc = ns_write_tensor(&w, "scores", &t, &meta, err);
            ns_map_free(&meta);
        }
        free(labels);
        free(predicted);
        ns_tensor_free(&t);
    }
    return ns_output_finish(&out, &w, rc, err);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {0};
    cmd.K = 1;
    cmd.seed = 1;
    cmd.batch = 256;
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *qpath = argv[first];
    ns_cct_score score = cmd.score && strcmp(cmd.score, "mean") == 0 ? NS_CCT_MEAN : NS_CCT_VOTE;
    ns_err err;
    ns_cct_net G;
    if (ns_cct_load(&G, cmd.model, NS_CCT_G, &err) < 0) ns_die_err(&err);
    ns_samples q, reps;
    if (ns_samples_load(&reps, cmd.reps, &G.backbone, &err) < 0) ns_die_err(&err);
    if (ns_samples_load(&q, qpath, &G.backbone, &err) < 0) ns_die_err(&err);
    if (check_classes(&G, &q, &reps, qpath, cmd.reps, &err) < 0) ns_die_err(&err);
    int k = (int)reps.nlabels, K = cmd.K;
    int64_t *idx = malloc((size_t)k * (size_t)K * sizeof *idx);
    float *prob = malloc((size_t)q.n * (size_t)k * (size_t)K * sizeof *prob);
    float *scores = malloc((size_t)q.n * (size_t)k * sizeof *scores);
    int32_t *pred = malloc((size_t)(q.n ? q.n : 1) * sizeof *pred);
    if (!idx || !prob || !scores || !pred) ns_die("out of memory for %lld queries x %d classes x %d", (long long)q.n, k, K);
    ns_rng rng;
    ns_rng_seed(&rng, (uint64_t)cmd.seed);
    if (ns_cct_pick_reps(&reps, k, K, cmd.random ? &rng : NULL, idx, &err) < 0) ns_die("%s: %s", cmd.reps, err.msg);
    if (ns_cct_compare(&G, &q, &reps, idx, k, K, cmd.batch, prob, ns_stderr_reporter(cmd.quiet), &err) < 0)
        ns_die_err(&err);
    ns_cct_decide(prob, q.n, k, K, score, pred);
    for (int64_t i = 0; i < q.n; i++) // the scores written: votes, or mean probability
        for (int c = 0; c < k; c++) {
            const float *p = prob + (i * k + c) * K;
            double s = 0;
            for (int j = 0; j < K; j++) s += score == NS_CCT_VOTE ? (p[j] >= 0.5f) : p[j];
            scores[i * k + c] = (float)(score == NS_CCT_VOTE ? s : s / K);
        }
    double acc, f1;
    int64_t counted;
    ns_cct_metrics(pred, q.y, q.n, k, &acc, &f1, &counted);
    if (cmd.output && write_scores(cmd.output, &q, &reps, scores, k, pred, score == NS_CCT_VOTE ? "vote" : "mean", &err) < 0)
        ns_die_err(&err);
    printf("accuracy\t%.4f\nmacro_f1\t%.4f\nsamples\t%lld\n", acc, f1, (long long)counted);
    free(idx);
    free(prob);
    free(scores);
    free(pred);
    ns_samples_free(&q);
    ns_samples_free(&reps);
    ns_cct_free(&G);
    ns_close_stdout();
    return 0;
}
