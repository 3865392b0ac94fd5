// net-eval: a model's accuracy on a labelled data stream: overall, per class,
// and the confusion matrix; optionally the logits or probabilities as a stream.
//
//   net-eval --model MODEL [options] [DATA]      (no DATA, or "-": standard input)
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/batches.h"
#include "cli/cli.h"
#include "nn/engine.h"
#include "base/json.h"
#include "stream/streaminfo.h"

struct cmdline {
    const char *model, *logits, *probs;
    int batch, confusion, quiet, json;
    ns_shard shard;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"model", 'm', NS_OPT_STR, &cmd->model, "MODEL", "the model to evaluate (required)", 0, 0},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "samples per forward pass (default 256)", 1, 1 << 16},
        {"confusion", 'c', NS_OPT_FLAG, &cmd->confusion, NULL, "also print the confusion matrix (rows: true class)", 0, 0},
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "the report as one JSON object", 0, 0},
        {"logits", 0, NS_OPT_STR, &cmd->logits, "FILE", "write the logits as a stream (N, K) with labels and ids", 0, 0},
        {"probs", 0, NS_OPT_STR, &cmd->probs, "FILE", "write softmax probabilities as a stream (N, K)", 0, 0},
        {"shard", 0, NS_OPT_SHARD, &cmd->shard, "I/N", "only the samples whose id is I modulo N (merge --logits/--probs with tns-cat --by-id)", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "--model MODEL [options] [DATA]",
        "Evaluate a model on a labelled data stream: accuracy, per-class accuracy,\n"
        "confusion matrix; optionally write logits or probabilities.",
        "The report (stdout) is tab-separated: 'accuracy', 'samples', then a line per\n"
        "class: class index, name, correct, total, accuracy. Raw [0,1] data is\n"
        "normalised as the model expects; data normalised otherwise is refused.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!cmd->model) ns_die_usage("--model is required");
    if ((cmd->logits && strcmp(cmd->logits, "-") == 0) || (cmd->probs && strcmp(cmd->probs, "-") == 0))
        ns_die_usage("--logits and --probs need a file: standard output carries the report");
}

// A side stream of per-sample outputs (logits or probabilities).
typedef struct side_output {
    ns_output out;
    ns_writer w;
    int open;
} side_output;

static int side_open(side_output *s, const char *path, const ns_model *m, const char *what,
                     const struct cmdline *cmd, ns_err *err) {
    if (!path) return 0;
    if (ns_output_open(&s->out, path, err) < 0) return -1;
    ns_writer_init(&s->w, s->out.f);
    s->open = 1;
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "net-eval " NS_VERSION);
    if (m->labels) ns_map_strs(&meta, "general.labels", (const char *const *)m->labels, m->nlabels);
    ns_map_str(&meta, "eval.output", what);
    ns_map_shard(&meta, &cmd->shard, cmd->batch);
    int rc = ns_write_meta(&s->w, "", &meta, err);
    ns_map_free(&meta);
    return rc;
}

static int side_write(side_output *s, const char *name, const float *v, int64_t n, int64_t k,
                      const int32_t *y, const int64_t *ids, ns_err *err) {
    if (!s->open) return 0;
    ns_tensor t = {.dtype = NS_F32, .ndim = 2, .shape = {n, k}, .numel = n * k, .data = (void *)v};
    int64_t labels[n];
    for (int64_t i = 0; i < n; i++) labels[i] = y[i];
    ns_map meta;
    ns_map_init(&meta);
    ns_map_i64s(&meta, "labels", labels, (size_t)n);
    ns_map_i64s(&meta, "ids", ids, (size_t)n);
    int rc = ns_write_tensor(&s->w, name, &t, &meta, err);
    ns_map_free(&meta);
    return rc;
}

static void side_close(side_output *s, int ok, ns_err *err, int *failed) {
    if (!s->open) return;
    if (ns_output_finish(&s->out, &s->w, !ok, err) < 0) *failed = 1;
}

static void softmax_rows(float *p, const float *logits, int64_t n, int64_t k) {
    for (int64_t i = 0; i < n; i++) {
        const float *l = logits + i * k;
        float mx = l[0];
        for (int64_t j = 1; j < k; j++) mx = l[j] > mx ? l[j] : mx;
        double sum = 0;
        for (int64_t j = 0; j < k; j++) sum += (p[i * k + j] = expf(l[j] - mx));
        for (int64_t j = 0; j < k; j++) p[i * k + j] = (float)(p[i * k + j] / sum);
    }
}

static void report(const ns_model *m, const int64_t *confusion, int64_t k, const struct cmdline *cmd) {
    int64_t correct = 0, total = 0;
    for (int64_t t = 0; t < k; t++)
        for (int64_t p = 0; p < k; p++) {
            total += confusion[t * k + p];
            if (t == p) correct += confusion[t * k + p];
        }
    double acc = total ? (double)correct / (double)total : NAN;
    if (cmd->json) {
        printf("{\"accuracy\":");
        ns_json_number(stdout, acc);
        printf(",\"samples\":%lld,\"classes\":[", (long long)total);
        for (int64_t t = 0; t < k; t++) {
            int64_t row = 0;
            for (int64_t p = 0; p < k; p++) row += confusion[t * k + p];
            const char *name = (size_t)t < m->nlabels ? m->labels[t] : "";
            printf("%s{\"class\":%lld,\"name\":", t ? "," : "", (long long)t);
            ns_json_string(stdout, name, strlen(name));
            printf(",\"correct\":%lld,\"total\":%lld,\"accuracy\":", (long long)confusion[t * k + t],
                   (long long)row);
            ns_json_number(stdout, row ? (double)confusion[t * k + t] / (double)row : NAN);
            printf("}");
        }
        printf("]");
        if (cmd->confusion) {
            printf(",\"confusion\":[");
            for (int64_t t = 0; t < k; t++) {
                printf(t ? ",[" : "[");
                for (int64_t p = 0; p < k; p++) printf(p ? ",%lld" : "%lld", (long long)confusion[t * k + p]);
                printf("]");
            }
            printf("]");
        }
        printf("}\n");
        return;
    }
    printf("accuracy\t%.4f\nsamples\t%lld\n", acc, (long long)total);
    for (int64_t t = 0; t < k; t++) {
        int64_t row = 0;
        for (int64_t p = 0; p < k; p++) row += confusion[t * k + p];
        printf("class\t%lld\t%s\t%lld\t%lld\t%.4f\n", (long long)t,
               (size_t)t < m->nlabels ? m->labels[t] : "-", (long long)confusion[t * k + t],
               (long long)row, row ? (double)confusion[t * k + t] / (double)row : NAN);
    }
    if (cmd->confusion) {
        printf("confusion");
        for (int64_t p = 0; p < k; p++) printf("\t%lld", (long long)p);
        printf("\n");
        for (int64_t t = 0; t < k; t++) {
            printf("%lld", (long long)t);
            for (int64_t p = 0; p < k; p++) printf("\t%lld", (long long)confusion[t * k + p]);
            printf("\n");
        }
    }
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.batch = 256};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *data = first < argc ? argv[first] : "-";
    ns_err err;
    ns_model m;
    if (ns_model_load(&m, cmd.model, &err) < 0) ns_die_err(&err);
    ns_engine e;
    if (ns_engine_init(&e, &m, cmd.batch, 0, &err) < 0) ns_die_err(&err);
    ns_engine_set_fused(&e, 1); // only the output is read: intermediate activations may be skipped
    ns_batches b;
    if (ns_batches_open(&b, data, &m, cmd.batch, &err) < 0) ns_die_err(&err);
    b.shard = cmd.shard;
    int64_t k = ns_engine_output_numel(&e);
    int64_t *confusion = calloc((size_t)(k * k), sizeof *confusion);
    float *probs = ns_aligned_alloc((size_t)(cmd.batch * k) * sizeof *probs);
    if (!confusion || !probs) ns_die("out of memory (%lld classes)", (long long)k);
    side_output logits_out = {0}, probs_out = {0};
    int failed = side_open(&logits_out, cmd.logits, &m, "logits", &cmd, &err) < 0 ||
                 side_open(&probs_out, cmd.probs, &m, "probs", &cmd, &err) < 0;
    ns_progress progress;
    ns_progress_start(&progress, "images", 0, cmd.quiet);
    int got = 0;
    while (!failed && (got = ns_batches_next(&b, &err)) == 1) {
        const float *out = ns_engine_forward(&e, b.x, b.n, 0, &err);
        if (!out) { failed = 1; break; }
        for (int64_t i = 0; i < b.n; i++) {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++) if (out[i * k + j] > out[i * k + best]) best = j;
            if (b.y[i] >= 0 && b.y[i] < k) confusion[b.y[i] * k + best]++;
            else if (b.y[i] >= k) {
                failed = ns_errf(&err, "%s: sample %lld (id %lld) has label %d, the model has %lld classes", data,
                                 (long long)(b.seen - b.n + i), (long long)b.ids[i], b.y[i], (long long)k) < 0;
                break;
            }
        }
        if (probs_out.open) softmax_rows(probs, out, b.n, k);
        if (!failed && (side_write(&logits_out, "logits", out, b.n, k, b.y, b.ids, &err) < 0 ||
                        side_write(&probs_out, "probs", probs, b.n, k, b.y, b.ids, &err) < 0))
            failed = 1;
        ns_progress_update(&progress, b.seen);
    }
    if (got < 0) failed = 1;
    ns_progress_end(&progress);
    side_close(&logits_out, !failed, &err, &failed);
    side_close(&probs_out, !failed, &err, &failed);
    if (failed) ns_die_err(&err);
    report(&m, confusion, k, &cmd);
    free(confusion);
    free(probs);
    ns_batches_close(&b);
    ns_engine_free(&e);
    ns_model_free(&m);
    ns_close_stdout();
    return 0;
}
