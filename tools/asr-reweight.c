// asr-reweight: activation sample reweighting (ASR, lib/cav/asr.h): weights each
// training sample by how strongly it activates its class's concept vector
// (an LG-CAV from cav-fit), fine-tunes the model's linear head on cached
// features with weighted cross-entropy, and reports the accuracy before and
// after; or, with --describe, writes each class's default concept
// description "a photo of k, not k'" (k' the class k is most often taken for).
//
//   asr-reweight --describe FEATURES > classes.txt
//   asr-reweight --cavs CAVS [--descriptions classes.txt] [--model MODEL -o OUT]
//                [--weights-out W] [--test FEATURES] FEATURES
//   asr-reweight --uniform ... FEATURES          (the control: every weight 1)
//
// Shapes: training features (N, D) with labels and ids, head W (K, D) and
// b (K), CAVs (K, D) after matching to classes, weights (N), test features
// (Nt, D).
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cav/asr.h"
#include "cav/cav_io.h"
#include "base/lines.h"
#include "cli/cli.h"
#include "nn/model.h"
#include "base/json.h"
#include "nn/probe.h"

#define WEIGHTS_PER_RECORD 4096

struct cmdline {
    const char *cavs, *descriptions, *model, *output, *weights_out, *test, *pattern, *features;
    int describe, uniform, epochs, batch, json, quiet;
    double lr, momentum;
    int64_t seed;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const ns_opt opts[] = {
        {"describe", 0, NS_OPT_FLAG, &cmd->describe, NULL, "write each class's default description 'NAME<TAB>a photo of k, not k2' and stop", 0, 0},
        {"pattern", 0, NS_OPT_STR, &cmd->pattern, "TEXT", "with --describe: the description, {} the class, the second {} the class it is taken for", 0, 0},
        {"cavs", 'c', NS_OPT_STR, &cmd->cavs, "FILE", "one CAV per class: a cav-fit stream on the same model and layer", 0, 0},
        {"descriptions", 'd', NS_OPT_STR, &cmd->descriptions, "FILE", "match CAVs to classes by concept name: line k names class k's concept (default: record order)", 0, 0},
        {"uniform", 'u', NS_OPT_FLAG, &cmd->uniform, NULL, "every weight 1: the control, with the same budget, lr and seed", 0, 0},
        {"model", 'm', NS_OPT_STR, &cmd->model, "MODEL", "the model the features came from, for --output", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write the model with its fine-tuned head to FILE (atomically)", 0, 0},
        {"weights-out", 'w', NS_OPT_STR, &cmd->weights_out, "FILE", "write the per-sample weights with ids (net-train --weights reads it)", 0, 0},
        {"test", 't', NS_OPT_STR, &cmd->test, "FEATURES", "test-set features (probe-embed, same model and layer) for the report", 0, 0},
        {"lr", 0, NS_OPT_DOUBLE, &cmd->lr, "LR", "SGD learning rate (default 1e-3)", 1e-12, 1e3},
        {"epochs", 'e', NS_OPT_INT, &cmd->epochs, "N", "epochs over the training features (default 20; 0: weights only)", 0, 1000000},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "samples per step (default 128)", 1, 1 << 24},
        {"momentum", 0, NS_OPT_DOUBLE, &cmd->momentum, "M", "SGD momentum (default 0.9)", 0, 0.999999},
        {"seed", 's', NS_OPT_I64, &cmd->seed, "S", "seed of the per-epoch shuffles (default 0)", 0, 1e15},
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "the report as one JSON object", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no summary on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "(--cavs CAVS | --uniform) [options] FEATURES\n       asr-reweight --describe [--pattern TEXT] FEATURES",
        "Activation sample reweighting: weight each training sample by its class's\n"
        "concept activation, fine-tune the model's head with weighted cross-entropy.",
        "FEATURES are the training set's features at the head's input, from\n"
        "probe-embed --model (with head.weight and head.bias). The report (stdout) is\n"
        "tab-separated: a header, then per split (train, and test with --test) a line\n"
        "'all' and a line per class: split, class, name, samples, before, after.",
        1, 1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->features = argv[first];
    if (cmd->describe) {
        if (cmd->cavs || cmd->descriptions || cmd->uniform || cmd->model || cmd->output || cmd->weights_out ||
            cmd->test || cmd->json)
            ns_die_usage("--describe only writes descriptions: it takes FEATURES and --pattern");
        if (!cmd->pattern) cmd->pattern = "a photo of {}, not {}";
        const char *p = strstr(cmd->pattern, "{}");
        if (!p || !(p = strstr(p + 2, "{}")) || strstr(p + 2, "{}") || strpbrk(cmd->pattern, "\t\n\r"))
            ns_die_usage("--pattern needs exactly two {} (the class, then the class it is taken for) and no tab (%s)",
                         cmd->pattern);
        return;
    }
    if (cmd->pattern) ns_die_usage("--pattern goes with --describe");
    if (!cmd->cavs == !cmd->uniform) ns_die_usage("give exactly one of --cavs and --uniform");
    if (cmd->descriptions && !cmd->cavs) ns_die_usage("--descriptions matches --cavs to classes: give --cavs");
    if (!cmd->model != !cmd->output) ns_die_usage("--model and --output come together");
    if ((cmd->output && strcmp(cmd->output, "-") == 0) || (cmd->weights_out && strcmp(cmd->weights_out, "-") == 0))
        ns_die_usage("--output and --weights-out need a file: standard output carries the report");
}

// ----------------------------------------------------------------------------
// inputs

static const char *class_name(const ns_features *f, int64_t k, char *buf, size_t cap) {
    if (f->labels && (size_t)k < f->nlabels) return f->labels[k];
    snprintf(buf, cap, "%lld", (long long)k);
    return buf;
}

static int load_features(ns_features *f, const char *path, ns_err *err) {
    if (ns_features_load(f, path, err) < 0) return -1;
    if (!f->model[0] || (f->source[0] && strcmp(f->source, "model") != 0))
        return ns_errf(err, "%s: not a model's feature stream (probe-embed --model; probe.source '%s')", path, f->source);
    if (!f->head_w)
        return ns_errf(err, "%s: no head.weight: probe the input of the model's final linear layer (probe-embed's default)",
                       path);
    if (f->n == 0) return ns_errf(err, "%s: no features", path);
    if (f->k < 2) return ns_errf(err, "%s: a head of %lld classes", path, (long long)f->k);
    return ns_asr_check_labels(f->y, f->ids, f->n, f->k, err) < 0 ? ns_err_prefix(err, "%s", path) : 0;
}

// Class k's concept name: line k of the descriptions file, "NAME<TAB>TEXT"
// or a text that is its own name (probe-embed --texts reads it the same way).
static char **read_names(const char *path, int64_t k, ns_err *err) {
    ns_lines in;
    if (ns_lines_open(&in, path, 0, err) < 0) return NULL;
    char **names = calloc((size_t)k, sizeof *names);
    char *line;
    size_t len;
    int64_t n = 0;
    int rc = names ? 0 : ns_errf(err, "out of memory"), got = 0;
    while (rc == 0 && (got = ns_lines_next(&in, &line, &len, err)) == 1) {
        if (len == 0) continue;
        if (n == k) {
            rc = ns_errf(err, "%s: more than %lld lines for %lld classes", path, (long long)k, (long long)k);
            break;
        }
        char *tab = strchr(line, '\t');
        if (tab) *tab = 0;
        if (!line[0] || (tab && !tab[1])) rc = ns_errf(err, "%s: line %lld has an empty name or description", path, (long long)in.lineno);
        else if (!(names[n++] = strdup(line))) rc = ns_errf(err, "out of memory");
    }
    if (got < 0) rc = -1;
    ns_lines_close(&in);
    if (rc == 0 && n < k)
        rc = ns_errf(err, "%s: %lld descriptions for %lld classes (one line per class)", path, (long long)n, (long long)k);
    if (rc < 0 && names) {
        for (int64_t i = 0; i < k; i++) free(names[i]);
        free(names);
        return NULL;
    }
    return names;
}

// The CAV of each class (K, D): by concept name against the descriptions,
// or in record order.
static float *class_cavs(const struct cmdline *cmd, const ns_features *f, ns_err *err) {
    ns_cavs c;
    if (ns_cavs_load(&c, cmd->cavs, f->model, f->layer, f->d, err) < 0) return NULL;
    float *v = malloc((size_t)(f->k * f->d) * sizeof *v);
    char **names = NULL;
    int rc = v ? 0 : ns_errf(err, "out of memory");
    if (rc == 0 && cmd->descriptions) {
        if (!(names = read_names(cmd->descriptions, f->k, err))) rc = -1;
        for (int64_t k = 0; rc == 0 && k < f->k; k++) {
            int64_t i = ns_cavs_find(&c, names[k]);
            char buf[32];
            if (i < 0)
                rc = ns_errf(err, "class %lld (%s) has no cav: no concept '%s' in %s", (long long)k,
                             class_name(f, k, buf, sizeof buf), names[k], cmd->cavs);
            else memcpy(v + k * f->d, c.v + i * f->d, (size_t)f->d * sizeof *v);
        }
    } else if (rc == 0) {
        if (c.m != f->k)
            rc = ns_errf(err, "%s holds %lld cavs for %lld classes: give one per class in class order, or --descriptions",
                         cmd->cavs, (long long)c.m, (long long)f->k);
        else memcpy(v, c.v, (size_t)(f->k * f->d) * sizeof *v);
    }
    if (names)
        for (int64_t k = 0; k < f->k; k++) free(names[k]);
    free(names);
    ns_cavs_free(&c);
    if (rc < 0) {
        free(v);
        return NULL;
    }
    return v;
}

// The model the features came from, and the tensors of its head.
static int load_model(ns_model *m, int *wt, int *bt, const struct cmdline *cmd, const ns_features *f, ns_err *err) {
    if (ns_model_load(m, cmd->model, err) < 0) return -1;
    char fp[NS_FINGERPRINT_LEN + 1];
    ns_model_fingerprint(m, fp);
    if (strcmp(fp, f->model) != 0)
        return ns_errf(err, "%s is not the model %s came from (fingerprint %s, the features say %s)", cmd->model,
                       f->path, fp, f->model);
    ns_probe p;
    if (ns_probe_init(&p, m, f->layer, strcmp(f->pool, "flatten") == 0, err) < 0)
        return ns_err_prefix(err, "%s", cmd->model);
    if (p.head < 0 || p.dim != f->d)
        return ns_errf(err, "%s: layer %s does not feed the final linear layer: nothing to fine-tune", cmd->model,
                       f->layer);
    const ns_node *h = &m->nodes[p.head];
    *wt = h->params[0];
    *bt = h->params[1];
    if (*wt < 0 || *bt < 0) return ns_errf(err, "%s: the head %s has no weight or no bias", cmd->model, h->name);
    if (m->tensors[*wt].t.numel != f->k * f->d || m->tensors[*bt].t.numel != f->k ||
        memcmp(m->tensors[*wt].t.data, f->head_w, (size_t)(f->k * f->d) * sizeof(float)) != 0 ||
        memcmp(m->tensors[*bt].t.data, f->head_b, (size_t)f->k * sizeof(float)) != 0)
        return ns_errf(err, "%s: the head %s differs from the head.weight and head.bias of %s", cmd->model, h->name,
                       f->path);
    return 0;
}

// ----------------------------------------------------------------------------
// describe

static int describe(const struct cmdline *cmd, const ns_features *f, ns_err *err) {
    int64_t k = f->k;
    int64_t *conf = malloc((size_t)(k * k) * sizeof *conf);
    if (!conf) return ns_errf(err, "out of memory");
    if (ns_asr_confusion(conf, f->x, f->y, f->n, f->d, f->head_w, f->head_b, k, err) < 0) {
        free(conf);
        return -1;
    }
    const char *p1 = strstr(cmd->pattern, "{}"), *p2 = strstr(p1 + 2, "{}");
    int rc = 0;
    for (int64_t c = 0; rc == 0 && c < k; c++) {
        char b1[32], b2[32];
        const char *name = class_name(f, c, b1, sizeof b1);
        const char *other = class_name(f, ns_asr_most_confused(conf, k, c), b2, sizeof b2);
        if (strpbrk(name, "\t\n\r") || !name[0]) {
            rc = ns_errf(err, "%s: class %lld's name is empty or holds a tab or line break", f->path, (long long)c);
            break;
        }
        printf("%s\t%.*s%s%.*s%s%s\n", name, (int)(p1 - cmd->pattern), cmd->pattern, name, (int)(p2 - p1 - 2),
               p1 + 2, other, p2 + 2);
    }
    free(conf);
    return rc;
}

// ----------------------------------------------------------------------------
// outputs

static int write_weights(const char *path, const float *w, const ns_features *f, const struct cmdline *cmd,
                         ns_err *err) {
    ns_output out;
    if (ns_output_open(&out, path, err) < 0) return -1;
    ns_writer wr;
    ns_writer_init(&wr, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "asr-reweight " NS_VERSION);
    ns_map_str(&meta, "asr.mode", cmd->uniform ? "uniform" : "asr");
    ns_map_str(&meta, "probe.model", f->model);
    ns_map_str(&meta, "probe.layer", f->layer);
    if (f->labels) ns_map_strs(&meta, "general.labels", (const char *const *)f->labels, f->nlabels);
    int rc = ns_write_meta(&wr, "", &meta, err);
    ns_map_free(&meta);
    int64_t labels[WEIGHTS_PER_RECORD];
    for (int64_t i0 = 0; rc == 0 && i0 < f->n; i0 += WEIGHTS_PER_RECORD) {
        int64_t nb = f->n - i0 < WEIGHTS_PER_RECORD ? f->n - i0 : WEIGHTS_PER_RECORD;
        for (int64_t i = 0; i < nb; i++) labels[i] = f->y[i0 + i];
        ns_map_init(&meta);
        ns_map_i64s(&meta, "labels", labels, (size_t)nb);
        ns_map_i64s(&meta, "ids", f->ids + i0, (size_t)nb);
        ns_tensor t = {.dtype = NS_F32, .ndim = 1, .shape = {nb}, .numel = nb, .data = (void *)(w + i0)};
        rc = ns_write_tensor(&wr, "weights", &t, &meta, err);
        ns_map_free(&meta);
    }
    return ns_output_finish(&out, &wr, rc, err);
}

// Accuracy of one split before and after: per class correct and total.
typedef struct split {
    const char *name;
    const ns_features *f;
    int64_t *correct[2], *total;
} split;

static int measure(split *s, int after, const float *w, const float *b, ns_err *err) {
    const ns_features *f = s->f;
    if (ns_asr_accuracy(s->correct[after], s->total, f->x, f->y, f->n, f->d, w, b, f->k, err) < 0)
        return ns_err_prefix(err, "%s", f->path);
    return 0;
}

static double ratio(int64_t a, int64_t b) { return b ? (double)a / (double)b : NAN; }

static void sums(const split *s, int64_t k, int64_t *c0, int64_t *c1, int64_t *t) {
    *c0 = *c1 = *t = 0;
    for (int64_t j = 0; j < k; j++) {
        *c0 += s->correct[0][j];
        *c1 += s->correct[1][j];
        *t += s->total[j];
    }
}

static void report(const split *ss, int nsplits, const ns_features *f, const struct cmdline *cmd, double wmin,
                   double wmax) {
    const int64_t k = f->k;
    char buf[32];
    if (cmd->json) {
        printf("{\"mode\":\"%s\",\"epochs\":%d,\"lr\":", cmd->uniform ? "uniform" : "asr", cmd->epochs);
        ns_json_number(stdout, cmd->lr);
        printf(",\"seed\":%lld,\"weight_min\":", (long long)cmd->seed);
        ns_json_number(stdout, wmin);
        printf(",\"weight_max\":");
        ns_json_number(stdout, wmax);
        for (int i = 0; i < nsplits; i++) {
            int64_t c0, c1, t;
            sums(&ss[i], k, &c0, &c1, &t);
            printf(",\"%s\":{\"samples\":%lld,\"before\":", ss[i].name, (long long)t);
            ns_json_number(stdout, ratio(c0, t));
            printf(",\"after\":");
            ns_json_number(stdout, ratio(c1, t));
            printf(",\"classes\":[");
            for (int64_t j = 0; j < k; j++) {
                const char *name = class_name(f, j, buf, sizeof buf);
                printf("%s{\"class\":%lld,\"name\":", j ? "," : "", (long long)j);
                ns_json_string(stdout, name, strlen(name));
                printf(",\"samples\":%lld,\"before\":", (long long)ss[i].total[j]);
                ns_json_number(stdout, ratio(ss[i].correct[0][j], ss[i].total[j]));
                printf(",\"after\":");
                ns_json_number(stdout, ratio(ss[i].correct[1][j], ss[i].total[j]));
                printf("}");
            }
            printf("]}");
        }
        printf("}\n");
        return;
    }
    printf("split\tclass\tname\tsamples\tbefore\tafter\n");
    for (int i = 0; i < nsplits; i++) {
        int64_t c0, c1, t;
        sums(&ss[i], k, &c0, &c1, &t);
        printf("%s\tall\t-\t%lld\t%.4f\t%.4f\n", ss[i].name, (long long)t, ratio(c0, t), ratio(c1, t));
        for (int64_t j = 0; j < k; j++)
            printf("%s\t%lld\t%s\t%lld\t%.4f\t%.4f\n", ss[i].name, (long long)j, class_name(f, j, buf, sizeof buf),
                   (long long)ss[i].total[j], ratio(ss[i].correct[0][j], ss[i].total[j]),
                   ratio(ss[i].correct[1][j], ss[i].total[j]));
    }
}

static int write_model(ns_output *out, ns_model *m, int wt, int bt, const float *w, const float *b,
                       const ns_features *f, const struct cmdline *cmd, const ns_asr_report *rep, ns_err *err) {
    memcpy(m->tensors[wt].t.data, w, (size_t)(f->k * f->d) * sizeof *w);
    memcpy(m->tensors[bt].t.data, b, (size_t)f->k * sizeof *b);
    ns_writer wr;
    ns_writer_init(&wr, out->f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "asr-reweight " NS_VERSION);
    ns_map_str(&meta, "asr.mode", cmd->uniform ? "uniform" : "asr");
    if (cmd->cavs) ns_map_str(&meta, "asr.cavs", cmd->cavs);
    ns_map_str(&meta, "asr.base_model", f->model);
    ns_map_i64(&meta, "asr.epochs", cmd->epochs);
    ns_map_f64(&meta, "asr.lr", cmd->lr);
    ns_map_i64(&meta, "asr.seed", cmd->seed);
    ns_map_f64(&meta, "asr.loss", rep->last_loss);
    int rc = ns_model_write(m, &wr, &meta, 0, err);
    ns_map_free(&meta);
    ns_writer_free(&wr);
    return rc;
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.lr = 1e-3, .momentum = 0.9, .epochs = 20, .batch = 128};
    parse_cmdline(argc, argv, &cmd);
    ns_err err;
    ns_features f, ft;
    memset(&ft, 0, sizeof ft);
    if (load_features(&f, cmd.features, &err) < 0) ns_die_err(&err);
    if (cmd.describe) {
        if (describe(&cmd, &f, &err) < 0) ns_die_err(&err);
        ns_features_free(&f);
        ns_close_stdout();
        return 0;
    }
    const int64_t n = f.n, d = f.d, k = f.k;
    float *sw = malloc((size_t)n * sizeof *sw);
    if (!sw) ns_die("out of memory (%lld samples)", (long long)n);
    if (cmd.uniform) {
        for (int64_t i = 0; i < n; i++) sw[i] = 1.0f;
    } else {
        float *cavs = class_cavs(&cmd, &f, &err);
        if (!cavs || ns_asr_weights(sw, NULL, f.x, f.y, n, d, cavs, k, &err) < 0) ns_die_err(&err);
        free(cavs);
    }
    if (cmd.test) {
        if (load_features(&ft, cmd.test, &err) < 0) ns_die_err(&err);
        if (strcmp(ft.model, f.model) != 0 || strcmp(ft.layer, f.layer) != 0 || strcmp(ft.pool, f.pool) != 0 ||
            ft.d != d || ft.k != k)
            ns_die("%s and %s come from different models or layers (model %s layer %s, %lld x %lld; model %s layer %s, %lld x %lld)",
                   cmd.features, cmd.test, f.model, f.layer, (long long)k, (long long)d, ft.model, ft.layer,
                   (long long)ft.k, (long long)ft.d);
    }
    ns_model m;
    int wt = -1, bt = -1;
    ns_output out;
    if (cmd.model) {
        if (load_model(&m, &wt, &bt, &cmd, &f, &err) < 0) ns_die_err(&err);
        if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err); // fail on a bad path before training
    }

    split ss[2] = {{.name = "train", .f = &f}, {.name = "test", .f = &ft}};
    int nsplits = cmd.test ? 2 : 1;
    for (int i = 0; i < nsplits; i++) {
        ss[i].correct[0] = malloc((size_t)k * sizeof(int64_t));
        ss[i].correct[1] = malloc((size_t)k * sizeof(int64_t));
        ss[i].total = malloc((size_t)k * sizeof(int64_t));
        if (!ss[i].correct[0] || !ss[i].correct[1] || !ss[i].total) ns_die("out of memory");
    }
    float *w = malloc((size_t)(k * d) * sizeof *w), *b = malloc((size_t)k * sizeof *b);
    if (!w || !b) ns_die("out of memory (head %lld x %lld)", (long long)k, (long long)d);
    memcpy(w, f.head_w, (size_t)(k * d) * sizeof *w);
    memcpy(b, f.head_b, (size_t)k * sizeof *b);
    int rc = 0;
    for (int i = 0; rc == 0 && i < nsplits; i++) rc = measure(&ss[i], 0, w, b, &err);
    ns_asr_config cfg = {.lr = cmd.lr, .momentum = cmd.momentum, .epochs = cmd.epochs, .batch = cmd.batch,
                         .seed = (uint64_t)cmd.seed};
    ns_asr_report rep = {0};
    double t0 = ns_now();
    if (rc == 0) rc = ns_asr_train_head(w, b, f.x, f.y, sw, n, d, k, &cfg, &rep, &err);
    for (int i = 0; rc == 0 && i < nsplits; i++) rc = measure(&ss[i], 1, w, b, &err);
    if (rc == 0 && cmd.weights_out) rc = write_weights(cmd.weights_out, sw, &f, &cmd, &err);
    if (rc == 0 && cmd.model) rc = write_model(&out, &m, wt, bt, w, b, &f, &cmd, &rep, &err);
    if (cmd.model && ns_output_finish(&out, NULL, rc, &err) < 0) rc = -1;
    if (rc < 0) ns_die_err(&err);
    double wmin = sw[0], wmax = sw[0];
    for (int64_t i = 1; i < n; i++) {
        wmin = sw[i] < wmin ? sw[i] : wmin;
        wmax = sw[i] > wmax ? sw[i] : wmax;
    }
    if (!cmd.quiet)
        ns_warn("%s: weights %.4f..%.4f; %d epochs, %lld steps in %.1f s, weighted loss %.4f -> %.4f",
                cmd.uniform ? "uniform" : "asr", wmin, wmax, cmd.epochs, (long long)rep.steps, ns_now() - t0,
                rep.first_loss, rep.last_loss);
    report(ss, nsplits, &f, &cmd, wmin, wmax);
    for (int i = 0; i < nsplits; i++) {
        free(ss[i].correct[0]);
        free(ss[i].correct[1]);
        free(ss[i].total);
    }
    free(w);
    free(b);
    free(sw);
    if (cmd.model) ns_model_free(&m);
    ns_features_free(&f);
    if (cmd.test) ns_features_free(&ft);
    ns_close_stdout();
    return 0;
}
