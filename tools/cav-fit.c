// cav-fit: concept activation vectors from cached features, one per concept:
// the original CAV of TCAV (--method cav: a linear classifier between concept
// and non-concept images) or LG-CAV (--method lgcav: guided by a
// vision-language model's scores on a probe pool, lib/cav/cav.h), then judged:
// concept accuracy on held-out images, concept-to-class cosine with the
// head, the TCAV score through the model's autodiff, and its significance
// against random CAVs (Student's t-test).
//
//   cav-fit [options] FEATURES
//
// Shapes: pool features F (N, D), VLM image embeddings G (N, E) matched to F
// by id, concept texts (T, E), head W (K, D), a CAV v (D), feature gradients
// of a class's logit (n_k, D).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/batches.h"
#include "cav/cav.h"
#include "cav/cav_concept.h"
#include "cav/cav_io.h"
#include "cav/concepts.h"
#include "cli/cli.h"
#include "base/json.h"
#include "nn/probe.h"
#include "base/rng.h"

#define MAX_CONCEPTS 4096

struct cmdline {
    const char *method, *concepts, *vlm_images, *texts, *modules, *eval_features, *eval_concepts;
    const char *attributes, *model, *tcav_images, *tcav_class, *output, *loss, *features;
    int positives, negatives, no_ga, no_ce, no_dsr, no_cls, random_runs, epochs, tcav_max, quiet, json;
    int64_t seed, probes;
    double lambda, lr;
    const char *names[MAX_CONCEPTS]; // --concept, in order; none: every concept
    int nnames;
    char *copies[MAX_CONCEPTS];      // the --concept values the names point into
    int ncopies;
    int lgcav, ga, ce, dsr, cls, explicit_dsr;
};

// --concept may repeat (and take NAME,NAME,...): the option parser keeps the
// last value only, so the names are gathered from argv first.
static void gather_concepts(int argc, char **argv, struct cmdline *cmd) {
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--concept") == 0 && i + 1 < argc) v = argv[++i];
        else if (strncmp(argv[i], "--concept=", 10) == 0) v = argv[i] + 10;
        if (!v) continue;
        if (cmd->ncopies == MAX_CONCEPTS) ns_die_usage("more than %d --concept options", MAX_CONCEPTS);
        char *copy = strdup(v);
        if (!copy) ns_die("out of memory");
        cmd->copies[cmd->ncopies++] = copy;
        for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
            if (strcmp(tok, "all") == 0) continue;
            if (cmd->nnames == MAX_CONCEPTS) ns_die_usage("more than %d --concept names", MAX_CONCEPTS);
            cmd->names[cmd->nnames++] = tok;
        }
    }
}

static void parse_modules(struct cmdline *cmd) {
    cmd->ga = cmd->ce = cmd->dsr = cmd->cls = 1;
    if (cmd->modules) {
        cmd->ga = cmd->ce = cmd->dsr = 0;
        cmd->explicit_dsr = 1;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", cmd->modules);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            if (strcmp(tok, "ga") == 0) cmd->ga = 1;
            else if (strcmp(tok, "ce") == 0) cmd->ce = 1;
            else if (strcmp(tok, "dsr") == 0) cmd->dsr = 1;
            else if (strcmp(tok, "none") != 0)
                ns_die_usage("--modules: unknown module (%s); use ga, ce, dsr or none", tok);
        }
    }
    if (cmd->no_ga) cmd->ga = 0;
    if (cmd->no_ce) cmd->ce = 0;
    if (cmd->no_dsr) cmd->dsr = 0;
    if (cmd->no_cls) cmd->cls = 0;
    // L_cls is not a module: it is on whenever positives and negatives are given
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const char *dummy = NULL;
    const ns_opt opts[] = {
        {"method", 0, NS_OPT_STR, &cmd->method, "M", "cav (the original, a linear classifier) or lgcav (default)", 0, 0},
        {"concept", 0, NS_OPT_STR, &dummy, "NAME", "a concept to fit; repeat or list NAME,NAME (default: all)", 0, 0},
        {"concepts", 'C', NS_OPT_STR, &cmd->concepts, "FILE", "concept-bank stream of the pool images (positives, negatives)", 0, 0},
        {"positives", 'p', NS_OPT_INT, &cmd->positives, "N", "concept images drawn from --concepts (default 10)", 0, 1 << 24},
        {"negatives", 'n', NS_OPT_INT, &cmd->negatives, "N", "non-concept images drawn from --concepts (default 10)", 0, 1 << 24},
        {"seed", 's', NS_OPT_I64, &cmd->seed, "S", "seed of the draws, the split and the training (default 0)", 0, 1e15},
        {"loss", 0, NS_OPT_STR, &cmd->loss, "L", "cav: hinge (SGDClassifier, TCAV's default) or logistic", 0, 0},
        {"vlm-images", 'g', NS_OPT_STR, &cmd->vlm_images, "FILE", "lgcav: VLM image embeddings of the pool (probe-embed --vlm)", 0, 0},
        {"texts", 't', NS_OPT_STR, &cmd->texts, "FILE", "lgcav: VLM text embeddings of the concepts (probe-embed --vlm --texts)", 0, 0},
        {"modules", 'M', NS_OPT_STR, &cmd->modules, "LIST", "lgcav modules: ga,ce,dsr or none (default all three; dsr needs positives)", 0, 0},
        {"no-ga", 0, NS_OPT_FLAG, &cmd->no_ga, NULL, "lgcav: without Gaussian alignment", 0, 0},
        {"no-ce", 0, NS_OPT_FLAG, &cmd->no_ce, NULL, "lgcav: without the concept ensemble (the bare text)", 0, 0},
        {"no-dsr", 0, NS_OPT_FLAG, &cmd->no_dsr, NULL, "lgcav: without deviation sample reweighting", 0, 0},
        {"no-cls", 0, NS_OPT_FLAG, &cmd->no_cls, NULL, "lgcav: without L_cls (otherwise on whenever positives are given)", 0, 0},
        {"probes", 'k', NS_OPT_I64, &cmd->probes, "K", "lgcav: the K highest and K lowest scored probes (default 500)", 1, 1e12},
        {"lambda", 0, NS_OPT_DOUBLE, &cmd->lambda, "X", "lgcav: weight of L_LG against L_cls (default 1)", 0, 1e6},
        {"epochs", 0, NS_OPT_INT, &cmd->epochs, "N", "lgcav: training epochs over the probes (default 60)", 1, 100000},
        {"lr", 0, NS_OPT_DOUBLE, &cmd->lr, "X", "lgcav: Adam learning rate (default 0.02)", 1e-9, 10},
        {"eval-features", 'e', NS_OPT_STR, &cmd->eval_features, "FILE", "held-out features for concept accuracy", 0, 0},
        {"eval-concepts", 'E', NS_OPT_STR, &cmd->eval_concepts, "FILE", "concept-bank stream of the held-out images", 0, 0},
        {"attributes", 'a', NS_OPT_STR, &cmd->attributes, "FILE", "class -> concept table: concept-to-class pairs and TCAV classes", 0, 0},
        {"model", 'm', NS_OPT_STR, &cmd->model, "MODEL", "the model the features came from, for TCAV scores", 0, 0},
        {"tcav-images", 'i', NS_OPT_STR, &cmd->tcav_images, "FILE", "labelled images for TCAV scores (with --model)", 0, 0},
        {"tcav-class", 0, NS_OPT_STR, &cmd->tcav_class, "NAME", "score every concept on this class (default: its related classes)", 0, 0},
        {"tcav-max", 0, NS_OPT_INT, &cmd->tcav_max, "N", "at most N images per class for TCAV (default 200)", 1, 1 << 24},
        {"random-runs", 'r', NS_OPT_INT, &cmd->random_runs, "R", "significance: R concept runs against R random CAVs (default 0: off)", 0, 1000},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write the CAV stream to FILE (atomically)", 0, 0},
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "the summary as one JSON object", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] FEATURES",
        "Fit concept activation vectors (TCAV's original or LG-CAV) on cached\n"
        "features and measure them: concept accuracy, concept-to-class, TCAV score.",
        "FEATURES is the probe pool's feature stream from probe-embed --model. The\n"
        "summary (stdout) has a header and one tab-separated line per concept:\n"
        "concept, method, modules, positives, negatives, heldout_acc, concept_acc,\n"
        "class_acc (x100), tcav, tcav_p (nan where not measured). --output writes a\n"
        "stream of 'cav' records (D) with the metadata and metrics in their meta.\n"
        "Streams from different models or layers (probe.model, probe.layer) are refused.",
        1, 1,
    };
    int first;
    gather_concepts(argc, argv, cmd); // before ns_parse_args reorders argv
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->features = argv[first];
    if (strcmp(cmd->method, "cav") != 0 && strcmp(cmd->method, "lgcav") != 0)
        ns_die_usage("--method: unknown method (%s); use cav or lgcav", cmd->method);
    cmd->lgcav = strcmp(cmd->method, "lgcav") == 0;
    if (strcmp(cmd->loss, "hinge") != 0 && strcmp(cmd->loss, "logistic") != 0)
        ns_die_usage("--loss: unknown loss (%s); use hinge or logistic", cmd->loss);
    parse_modules(cmd);
    if (cmd->lgcav && (!cmd->vlm_images || !cmd->texts)) ns_die_usage("--method lgcav needs --vlm-images and --texts");
    if (!cmd->lgcav && !cmd->concepts) ns_die_usage("--method cav needs --concepts (the labelled pool)");
    if (!cmd->eval_features != !cmd->eval_concepts) ns_die_usage("--eval-features and --eval-concepts come together");
    if (!cmd->model != !cmd->tcav_images) ns_die_usage("--model and --tcav-images come together");
    if (cmd->random_runs == 1) ns_die_usage("--random-runs needs at least 2 runs (a t-test), got 1");
    if (cmd->random_runs && !cmd->model) ns_die_usage("--random-runs compares TCAV scores: give --model and --tcav-images");
    if (cmd->tcav_class && !cmd->model) ns_die_usage("--tcav-class needs --model and --tcav-images");
    int labelled = cmd->concepts && cmd->positives > 0 && cmd->negatives > 0;
    if (cmd->lgcav && !labelled) {
        if (cmd->dsr && cmd->explicit_dsr) ns_die_usage("dsr needs positives: give --concepts and --positives");
        cmd->dsr = cmd->cls = 0;
    }
    if (cmd->output && strcmp(cmd->output, "-") == 0)
        ns_die_usage("--output needs a file: standard output carries the summary");
}

// ----------------------------------------------------------------------------
// the inputs, checked against each other

typedef struct world {
    ns_features f;            // the pool (N, D)
    ns_features g, t;         // VLM image embeddings (N, E) matched to f, concept texts
    float *g_rows;            // (N, E): g's rows in f's order
    ns_concepts c;            // the pool's concepts
    int64_t *c_row;           // (N): f row -> c row
    ns_features ef;           // held-out features
    ns_concepts ec;
    int64_t *ec_row;
    ns_attr_table attr;
    int64_t *attr_class;      // (attr.nclasses): head class of each table row
    // TCAV
    ns_model model;
    int have_model;
    ns_probe probe;
    ns_engine e;
    ns_samples img;
    ns_tcav tcav;             // per-class gradients, computed when first needed
    ns_cav_pool pool;         // f, the concept table and g_rows, for ns_cav_fit_concept
    ns_cav_job job;
} world;

// What ns_cav_fit_concept is asked to do, from the options.
static void make_job(ns_cav_job *job, const struct cmdline *cmd) {
    memset(job, 0, sizeof *job);
    job->lgcav = cmd->lgcav;
    job->loss = strcmp(cmd->loss, "logistic") == 0 ? NS_CAV_LOGISTIC : NS_CAV_HINGE;
    job->positives = cmd->positives;
    job->negatives = cmd->negatives;
    ns_lgcav_config_default(&job->lg);
    job->lg.k_top = job->lg.k_bottom = cmd->probes;
    job->lg.ga = cmd->ga;
    job->lg.dsr = cmd->dsr;
    job->lg.cls = cmd->cls;
    job->lg.lambda = cmd->lambda;
    job->lg.epochs = cmd->epochs;
    job->lg.lr = cmd->lr;
    job->ce = cmd->ce;
}

static int same_source(const ns_features *a, const ns_features *b, ns_err *err) {
    if (strcmp(a->model, b->model) != 0 || strcmp(a->layer, b->layer) != 0 || strcmp(a->pool, b->pool) != 0)
        return ns_errf(err, "%s and %s come from different sources: model %s layer %s (%s) against model %s layer %s (%s)",
                       a->path, b->path, a->model, a->layer, a->pool, b->model, b->layer, b->pool);
    return 0;
}

static int check_source(const ns_features *f, const char *want, ns_err *err) {
    if (!f->model[0]) return ns_errf(err, "%s: no probe.model: not a probe-embed stream", f->path);
    if (strcmp(f->source, want) != 0)
        return ns_errf(err, "%s: probe.source is '%s', expected '%s'", f->path, f->source, want);
    return 0;
}

static int load_world(world *w, const struct cmdline *cmd, ns_err *err) {
    if (ns_features_load(&w->f, cmd->features, err) < 0 || check_source(&w->f, "model", err) < 0) return -1;
    if (w->f.n == 0) return ns_errf(err, "%s: no features", cmd->features);
    const int64_t n = w->f.n;
    if (cmd->lgcav) {
        if (ns_features_load(&w->g, cmd->vlm_images, err) < 0 || check_source(&w->g, "vlm-image", err) < 0 ||
            ns_features_load(&w->t, cmd->texts, err) < 0 || check_source(&w->t, "vlm-text", err) < 0)
            return -1;
        if (strcmp(w->g.model, w->t.model) != 0)
            return ns_errf(err, "%s and %s come from different VLMs (%s, %s)", cmd->vlm_images, cmd->texts,
                           w->g.model, w->t.model);
        if (!w->t.texts) return ns_errf(err, "%s: no texts record", cmd->texts);
        if (w->t.e != w->g.d)
            return ns_errf(err, "%s has embeddings of %lld, %s of %lld", cmd->texts, (long long)w->t.e,
                           cmd->vlm_images, (long long)w->g.d);
        if (w->g.n != n)
            return ns_errf(err, "%s has %lld images, %s %lld: the VLM must see the same pool", cmd->vlm_images,
                           (long long)w->g.n, cmd->features, (long long)n);
        int64_t *rows = malloc((size_t)n * sizeof *rows);
        w->g_rows = malloc((size_t)(n * w->g.d) * sizeof *w->g_rows);
        if (!rows || !w->g_rows) return ns_errf(err, "out of memory");
        int rc = ns_match_ids(rows, w->f.ids, n, w->g.ids, w->g.n, cmd->vlm_images, err);
        for (int64_t i = 0; rc == 0 && i < n; i++)
            memcpy(w->g_rows + i * w->g.d, w->g.x + rows[i] * w->g.d, (size_t)w->g.d * sizeof(float));
        free(rows);
        if (rc < 0) return -1;
    }
    if (cmd->concepts) {
        if (ns_concepts_load(&w->c, cmd->concepts, err) < 0) return -1;
        if (!(w->c_row = malloc((size_t)n * sizeof *w->c_row))) return ns_errf(err, "out of memory");
        if (ns_match_ids(w->c_row, w->f.ids, n, w->c.ids, w->c.n, cmd->concepts, err) < 0) return -1;
    }
    if (cmd->eval_features) {
        if (ns_features_load(&w->ef, cmd->eval_features, err) < 0 || check_source(&w->ef, "model", err) < 0 ||
            same_source(&w->f, &w->ef, err) < 0 || ns_concepts_load(&w->ec, cmd->eval_concepts, err) < 0)
            return -1;
        if (!(w->ec_row = malloc((size_t)(w->ef.n ? w->ef.n : 1) * sizeof *w->ec_row))) return ns_errf(err, "out of memory");
        if (ns_match_ids(w->ec_row, w->ef.ids, w->ef.n, w->ec.ids, w->ec.n, cmd->eval_concepts, err) < 0) return -1;
    }
    if (cmd->attributes) {
        if (ns_attr_table_load(&w->attr, cmd->attributes, err) < 0) return -1;
        if (!w->f.labels) return ns_errf(err, "%s: no class names (general.labels) to match %s", cmd->features, cmd->attributes);
        if (!(w->attr_class = malloc(w->attr.nclasses * sizeof *w->attr_class))) return ns_errf(err, "out of memory");
        for (size_t i = 0; i < w->attr.nclasses; i++) {
            w->attr_class[i] = -1;
            for (size_t k = 0; k < w->f.nlabels; k++)
                if (strcmp(w->f.labels[k], w->attr.classes[i]) == 0) w->attr_class[i] = (int64_t)k;
            if (w->attr_class[i] < 0)
                return ns_errf(err, "%s: class '%s' is not among the model's classes", cmd->attributes, w->attr.classes[i]);
        }
    }
    if (cmd->model) {
        if (ns_model_load(&w->model, cmd->model, err) < 0) return -1;
        w->have_model = 1;
        char fp[NS_FINGERPRINT_LEN + 1];
        ns_model_fingerprint(&w->model, fp);
        if (strcmp(fp, w->f.model) != 0)
            return ns_errf(err, "%s is not the model %s came from (fingerprint %s, the features say %s)", cmd->model,
                           cmd->features, fp, w->f.model);
        int flatten = strcmp(w->f.pool, "flatten") == 0;
        if (ns_probe_init(&w->probe, &w->model, w->f.layer, flatten, err) < 0) return ns_err_prefix(err, "%s", cmd->model);
        if (strcmp(ns_probe_pool_name(w->probe.pool), w->f.pool) != 0 || w->probe.dim != w->f.d)
            return ns_errf(err, "%s: layer %s gives %lld %s features, the stream has %lld %s", cmd->model, w->f.layer,
                           (long long)w->probe.dim, ns_probe_pool_name(w->probe.pool), (long long)w->f.d, w->f.pool);
        if (ns_engine_init(&w->e, &w->model, 64, 1, err) < 0) return -1;
        for (int t = 0; t < w->model.ntensors; t++) ns_engine_set_trainable(&w->e, t, 0, err);
        if (ns_samples_load(&w->img, cmd->tcav_images, &w->model, err) < 0 ||
            ns_tcav_init(&w->tcav, &w->probe, &w->e, &w->img, cmd->tcav_max, err) < 0)
            return -1;
    }
    w->pool = (ns_cav_pool){.f = w->f.x, .n = n, .d = w->f.d, .has = w->c.has, .k = w->c.k, .row = w->c_row,
                            .g = w->g_rows, .e = w->g.d};
    make_job(&w->job, cmd);
    return 0;
}

static void free_world(world *w) {
    ns_features_free(&w->f);
    ns_features_free(&w->g);
    ns_features_free(&w->t);
    ns_features_free(&w->ef);
    ns_concepts_free(&w->c);
    ns_concepts_free(&w->ec);
    ns_attr_table_free(&w->attr);
    free(w->g_rows);
    free(w->c_row);
    free(w->ec_row);
    free(w->attr_class);
    if (w->have_model) {
        ns_tcav_free(&w->tcav);
        ns_engine_free(&w->e);
        ns_samples_free(&w->img);
        ns_model_free(&w->model);
    }
}

// ----------------------------------------------------------------------------
// fitting one CAV

// lgcav: concept name's text embedding (E) in the texts stream, the
// ensemble or, with --no-ce, the bare text.
static int concept_text(const float **text, const world *w, const struct cmdline *cmd, const char *name, ns_err *err) {
    *text = NULL;
    if (!cmd->lgcav) return 0;
    int64_t ti = ns_features_text(&w->t, name);
    if (ti < 0) return ns_errf(err, "concept %s has no text embedding in %s", name, cmd->texts);
    *text = w->t.texts + ti * w->t.e;
    if (cmd->ce && w->t.templates < 1)
        return ns_errf(err, "%s holds bare texts (probe-embed --no-ensemble): the concept ensemble needs templates (use --no-ce)",
                       cmd->texts);
    if (!cmd->ce) {
        if (w->t.texts_plain) *text = w->t.texts_plain + ti * w->t.e;
        else if (w->t.templates > 0) return ns_errf(err, "%s has no texts.plain record for --no-ce", cmd->texts);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// metrics

// Balanced accuracy on the held-out images: the mean of the accuracies on
// the positives and the negatives (unknown, 2, left out); NAN without both.
static int concept_accuracy(double *acc, const float *v, const ns_cav_decision *dec, const world *w, const char *name,
                            ns_err *err) {
    *acc = NAN;
    int64_t col = ns_concepts_find(&w->ec, name);
    if (col < 0) return 0;
    const int64_t d = w->ef.d;
    float *rows = malloc((size_t)(w->ef.n * d) * sizeof *rows);
    if (!rows) return ns_errf(err, "out of memory");
    double part[2] = {NAN, NAN};
    for (int want = 0; want < 2; want++) {
        int64_t m = 0;
        for (int64_t i = 0; i < w->ef.n; i++)
            if (w->ec.has[w->ec_row[i] * w->ec.k + col] == want)
                memcpy(rows + (m++) * d, w->ef.x + i * d, (size_t)d * sizeof *rows);
        if (m == 0) continue;
        if (ns_cav_accuracy(&part[want], v, dec, want ? rows : NULL, want ? m : 0, want ? NULL : rows, want ? 0 : m,
                            d, err) < 0) {
            free(rows);
            return -1;
        }
    }
    free(rows);
    *acc = 0.5 * (part[0] + part[1]);
    return 0;
}

// The classes related to concept name: the attribute table's classes that
// have it. Returns the count written to cls (cap).
static int64_t related_classes(int64_t *cls, int64_t cap, const world *w, const char *name) {
    int64_t m = 0;
    for (size_t j = 0; w->attr.attrs && j < w->attr.nattrs; j++) {
        if (strcmp(w->attr.attrs[j], name) != 0) continue;
        for (size_t i = 0; i < w->attr.nclasses && m < cap; i++)
            if (w->attr.values[i * w->attr.nattrs + j]) cls[m++] = w->attr_class[i];
    }
    return m;
}

// The TCAV score of v: the mean over the scored classes of the fraction of
// their images whose class logit grows along v. NAN when no class applies.
static int tcav_score(double *score, world *w, const struct cmdline *cmd, const float *v, const char *name, ns_err *err) {
    *score = NAN;
    if (!w->have_model) return 0;
    int64_t cls[256], m;
    if (cmd->tcav_class) {
        m = 0;
        for (size_t k = 0; k < w->model.nlabels; k++)
            if (strcmp(w->model.labels[k], cmd->tcav_class) == 0) cls[m++] = (int64_t)k;
        if (m == 0) return ns_errf(err, "--tcav-class: the model has no class %s", cmd->tcav_class);
    } else {
        m = related_classes(cls, 256, w, name);
    }
    return ns_tcav_score(score, &w->tcav, v, cls, m, err);
}

// ----------------------------------------------------------------------------
// the run

typedef struct result {
    const char *name;
    ns_cav_result fit;
    double concept_acc, class_acc, tcav, tcav_p;
} result;

static int run_concept(result *r, float *v, world *w, const struct cmdline *cmd, ns_err *err) {
    const char *name = r->name;
    int64_t col = w->c.names ? ns_concepts_find(&w->c, name) : -1;
    if (w->c.names && col < 0) return ns_errf(err, "concept %s is not in %s", name, cmd->concepts);
    const float *text;
    if (concept_text(&text, w, cmd, name, err) < 0) return -1;
    if (ns_cav_fit_concept(v, &r->fit, &w->pool, &w->job, name, col, text, (uint64_t)cmd->seed, 0, err) < 0) return -1;
    r->concept_acc = r->class_acc = r->tcav = r->tcav_p = NAN;
    if (w->ec.names && concept_accuracy(&r->concept_acc, v, &r->fit.dec, w, name, err) < 0) return -1;
    if (w->f.head_w && w->attr.attrs) {
        int64_t cls[256], m = related_classes(cls, 256, w, name);
        if (m > 0) {
            double s;
            if (ns_cav_class_score(&s, v, w->f.head_w, w->f.k, w->f.d, cls, m, err) < 0) return -1;
            r->class_acc = 100.0 * s;
        }
    }
    if (tcav_score(&r->tcav, w, cmd, v, name, err) < 0) return -1;
    if (cmd->random_runs >= 2 && !isnan(r->tcav)) {
        int runs = cmd->random_runs;
        double *sc = malloc((size_t)(2 * runs) * sizeof *sc);
        float *u = malloc((size_t)w->f.d * sizeof *u);
        if (!sc || !u) {
            free(sc);
            free(u);
            return ns_errf(err, "out of memory");
        }
        int rc = 0;
        for (int i = 0; rc == 0 && i < 2 * runs; i++) {
            ns_cav_result o;
            uint64_t seed = (uint64_t)cmd->seed + 1 + (uint64_t)(i % runs) + (i >= runs ? 1000003u : 0u);
            rc = ns_cav_fit_concept(u, &o, &w->pool, &w->job, name, col, text, seed, i >= runs, err);
            if (rc == 0) rc = tcav_score(&sc[i], w, cmd, u, name, err);
        }
        double t;
        if (rc == 0) rc = ns_ttest_ind(&t, &r->tcav_p, sc, runs, sc + runs, runs, err);
        free(sc);
        free(u);
        if (rc < 0) return -1;
    }
    return 0;
}

static void print_summary(const result *rs, int n, const struct cmdline *cmd) {
    if (cmd->json) {
        printf("{\"method\":");
        ns_json_string(stdout, cmd->method, strlen(cmd->method));
        printf(",\"cavs\":[");
        for (int i = 0; i < n; i++) {
            const result *r = &rs[i];
            printf("%s{\"concept\":", i ? "," : "");
            ns_json_string(stdout, r->name, strlen(r->name));
            printf(",\"modules\":");
            ns_json_string(stdout, r->fit.modules, strlen(r->fit.modules));
            printf(",\"positives\":%lld,\"negatives\":%lld", (long long)r->fit.np, (long long)r->fit.nn);
            const char *keys[] = {"heldout_acc", "concept_acc", "class_acc", "tcav", "tcav_p"};
            double vals[] = {r->fit.heldout, r->concept_acc, r->class_acc, r->tcav, r->tcav_p};
            for (int k = 0; k < 5; k++) {
                printf(",\"%s\":", keys[k]);
                ns_json_number(stdout, vals[k]);
            }
            printf("}");
        }
        printf("]}\n");
        return;
    }
    printf("concept\tmethod\tmodules\tpositives\tnegatives\theldout_acc\tconcept_acc\tclass_acc\ttcav\ttcav_p\n");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        printf("%s\t%s\t%s\t%lld\t%lld\t%.4f\t%.4f\t%.2f\t%.4f\t%.4g\n", r->name, cmd->method, r->fit.modules,
               (long long)r->fit.np, (long long)r->fit.nn, r->fit.heldout, r->concept_acc, r->class_acc, r->tcav,
               r->tcav_p);
    }
}

static int write_cavs(const char *path, const result *rs, const float *vs, int n, const world *w,
                      const struct cmdline *cmd, ns_err *err) {
    ns_output out;
    if (ns_output_open(&out, path, err) < 0) return -1;
    ns_writer wr;
    ns_writer_init(&wr, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "cav-fit " NS_VERSION);
    ns_map_str(&meta, "cav.method", cmd->method);
    ns_map_str(&meta, "probe.model", w->f.model);
    ns_map_str(&meta, "probe.model_path", w->f.model_path);
    ns_map_str(&meta, "probe.layer", w->f.layer);
    ns_map_str(&meta, "probe.pool", w->f.pool);
    if (w->f.labels) ns_map_strs(&meta, "general.labels", (const char *const *)w->f.labels, w->f.nlabels);
    int rc = ns_write_meta(&wr, "", &meta, err);
    ns_map_free(&meta);
    for (int i = 0; rc == 0 && i < n; i++) {
        const result *r = &rs[i];
        ns_map_init(&meta);
        ns_map_str(&meta, "cav.concept", r->name);
        ns_map_str(&meta, "cav.method", cmd->method);
        ns_map_str(&meta, "cav.modules", r->fit.modules);
        if (cmd->lgcav) ns_map_bool(&meta, "cav.cls", r->fit.cls);
        ns_map_str(&meta, "cav.layer", w->f.layer);
        ns_map_str(&meta, "cav.model", w->f.model);
        ns_map_str(&meta, "cav.rule", ns_cav_rule_name(r->fit.dec.rule));
        ns_map_f64(&meta, "cav.offset", r->fit.dec.offset);
        ns_map_i64(&meta, "cav.seed", cmd->seed);
        ns_map_i64(&meta, "cav.positives", r->fit.np);
        ns_map_i64(&meta, "cav.negatives", r->fit.nn);
        ns_map_f64(&meta, "cav.heldout_acc", r->fit.heldout);
        ns_map_f64(&meta, "cav.concept_acc", r->concept_acc);
        ns_map_f64(&meta, "cav.class_acc", r->class_acc);
        ns_map_f64(&meta, "cav.tcav", r->tcav);
        ns_map_f64(&meta, "cav.tcav_p", r->tcav_p);
        ns_tensor t = {.dtype = NS_F32, .ndim = 1, .shape = {w->f.d}, .numel = w->f.d, .data = (void *)(vs + i * w->f.d)};
        rc = ns_write_tensor(&wr, "cav", &t, &meta, err);
        ns_map_free(&meta);
    }
    return ns_output_finish(&out, &wr, rc, err);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.method = "lgcav", .loss = "hinge", .positives = 10, .negatives = 10, .probes = 500,
                          .lambda = 1.0, .epochs = 60, .lr = 0.02, .tcav_max = 200};
    parse_cmdline(argc, argv, &cmd);
    ns_err err;
    world w;
    memset(&w, 0, sizeof w);
    if (load_world(&w, &cmd, &err) < 0) ns_die_err(&err);
    // every concept of the concept stream (or of the texts), unless named
    if (cmd.nnames == 0) {
        char **all = w.c.names ? w.c.names : w.t.names;
        int64_t k = w.c.names ? w.c.k : w.t.nt;
        for (int64_t i = 0; i < k && cmd.nnames < MAX_CONCEPTS; i++) cmd.names[cmd.nnames++] = all[i];
        if (cmd.nnames == 0) ns_die("no concepts to fit");
    }
    int n = cmd.nnames;
    result *rs = calloc((size_t)n, sizeof *rs);
    float *vs = malloc((size_t)(n * w.f.d) * sizeof *vs);
    if (!rs || !vs) ns_die("out of memory (%d concepts)", n);
    ns_progress progress;
    ns_progress_start(&progress, "concepts", n, cmd.quiet);
    for (int i = 0; i < n; i++) {
        rs[i].name = cmd.names[i];
        if (run_concept(&rs[i], vs + i * w.f.d, &w, &cmd, &err) < 0) ns_die_err(&err);
        ns_progress_update(&progress, i + 1);
    }
    ns_progress_end(&progress);
    if (cmd.output && write_cavs(cmd.output, rs, vs, n, &w, &cmd, &err) < 0) ns_die_err(&err);
    print_summary(rs, n, &cmd);
    free(rs);
    free(vs);
    free_world(&w);
    for (int i = 0; i < cmd.ncopies; i++) free(cmd.copies[i]);
    ns_close_stdout();
    return 0;
}
