// graph-knn: the k-nearest-neighbour graph of a set of samples, as a graph
// stream (tns(5), "Graphs") whose nodes are the samples.
//
//   graph-knn [options] [FILE...]
//
// The input is one or more data streams of labelled batches (tns(5),
// "Labelled batches"): img-read's image records (N, C, H, W), flattened to
// D = C H W, or any feature records (N, D...) with labels (and ids) in their
// meta, read in order, files one after another. Shapes: X (N, D) the
// features as stored (converted to f32, not rescaled), labels (N), the
// neighbour lists (N, k), the adjacency (N, N) in CSR.
//
// The search is exact (lib/graph/knn.h: tiles of X X^T through ns_sgemm, top-k
// heaps per thread); the graph is made undirected by union or by mutual
// neighbourhood, binary or weighted, and gets Planetoid's split (lib/graph/graphdata.h)
// over the labelled samples. Class names (general.labels) carry over.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "cli/cli.h"
#include "graph/csbm.h"
#include "graph/graphdata.h"
#include "graph/knn.h"
#include "stream/labels.h"
#include "stream/streaminfo.h"
#include "stream/tns.h"

struct cmdline {
    const char *metric_name, *name, *output;
    int64_t k, limit, train_per_class, val, test, seed;
    int mutual, weighted, quiet;
    ns_knn_metric metric;
    char **files;
    int nfiles;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const ns_opt opts[] = {
        {"neighbours", 'k', NS_OPT_I64, &cmd->k, "K", "neighbours per sample (default 10)", 1, 2147483646.0},
        {"metric", 'm', NS_OPT_STR, &cmd->metric_name, "NAME", "cosine (default) or euclidean", 0, 0},
        {"mutual", 0, NS_OPT_FLAG, &cmd->mutual, NULL, "an edge only where each sample is among the other's neighbours (default: either)", 0, 0},
        {"weighted", 'w', NS_OPT_FLAG, &cmd->weighted, NULL, "store similarity weights (default: every edge weighs 1)", 0, 0},
        {"name", 'n', NS_OPT_STR, &cmd->name, "NAME", "the records to read (default: the name of the first tensor record)", 0, 0},
        {"limit", 'l', NS_OPT_I64, &cmd->limit, "N", "use only the first N samples", 2, 2147483647.0},
        NS_PLANETOID_OPTIONS(&cmd->train_per_class, &cmd->val, &cmd->test, &cmd->seed, "samples",
                             "seed of the split (default 0)"),
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress or summary on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] [FILE...]",
        "Build the k-nearest-neighbour graph of labelled samples (image batches or\n"
        "feature records) as a TNS graph stream, with the samples' features, labels,\n"
        "class names and a Planetoid split.",
        "FILEs (default: standard input) are read one after another as one set of\n"
        "samples. The search is exact. See graph-knn(1) and tns(5).",
        0, -1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->files = argv + first;
    cmd->nfiles = argc - first;
    if (strcmp(cmd->metric_name, "cosine") == 0) cmd->metric = NS_KNN_COSINE;
    else if (strcmp(cmd->metric_name, "euclidean") == 0) cmd->metric = NS_KNN_EUCLIDEAN;
    else ns_die_usage("--metric must be cosine or euclidean (%s)", cmd->metric_name);
    int stdin_uses = 0;
    for (int i = 0; i < cmd->nfiles; i++) stdin_uses += strcmp(cmd->files[i], "-") == 0;
    if (stdin_uses > 1) ns_die_usage("standard input (-) given %d times", stdin_uses);
}

// --- reading the samples ------------------------------------------------------
typedef struct samples {
    float *x;        // (n, d), grown as records arrive
    int32_t *labels; // (n), -1 for unlabelled
    int64_t n, d, cap;
    int any_label;
    char name[NS_NAME_MAX + 1]; // the records read
    char *shape_from;           // "FILE record R", where d was set
    ns_stream_info info;        // of the first file; the others must agree
    int have_info;
} samples;

static void samples_grow(samples *s, int64_t need) {
    if (need <= s->cap) return;
    int64_t cap = s->cap ? s->cap : 1024;
    while (cap < need) cap *= 2;
    float *x = realloc(s->x, (size_t)(cap * s->d) * sizeof *x);
    if (x) s->x = x;
    int32_t *y = realloc(s->labels, (size_t)cap * sizeof *y);
    if (y) s->labels = y;
    if (!x || !y) ns_die("out of memory (%lld samples of %lld features)", (long long)cap, (long long)s->d);
    s->cap = cap;
}

// Adds a record's samples (up to the limit).
static void take_record(samples *s, const ns_record *rec, const char *label, int64_t limit) {
    unsigned long long at = (unsigned long long)rec->index;
    if (rec->ndim < 2)
        ns_die("%s: record %llu (%s): shape of %d dimension%s, expected samples (N, D...)", label, at, rec->name,
               rec->ndim, rec->ndim == 1 ? "" : "s");
    int64_t n = rec->shape[0], d = rec->numel / (n ? n : 1);
    if (n == 0) return;
    if (s->d == 0) {
        if (d < 1) ns_die("%s: record %llu (%s): samples of 0 features", label, at, rec->name);
        s->d = d;
        size_t len = strlen(label) + 48;
        if (!(s->shape_from = malloc(len))) ns_die("out of memory");
        snprintf(s->shape_from, len, "%s record %llu", label, at);
    } else if (d != s->d) {
        ns_die("%s: record %llu (%s): samples of %lld features, but %lld in %s", label, at, rec->name, (long long)d,
               (long long)s->d, s->shape_from);
    }
    // Labels: one per sample, -1 or a class below NS_GRAPH_MAX_CLASSES
    // (stream/labels.h, the one label reader).
    int32_t *y = malloc((size_t)n * sizeof *y);
    if (!y) ns_die("out of memory");
    ns_err err;
    ns_tensor t = {0};
    int failed = 0;
    if (ns_record_labels(rec, n, NS_GRAPH_MAX_CLASSES, y, &err) < 0)
        failed = ns_err_prefix(&err, "%s", label);
    else if (ns_record_tensor_f32(rec, &t, &err) < 0)
        failed = ns_err_prefix(&err, "%s: record %llu", label, at);
    if (!failed && limit > 0 && s->n + n > limit) n = limit - s->n;
    const float *src = t.data;
    for (int64_t i = 0; !failed && i < n * d; i++)
        if (!isfinite(src[i]))
            failed = ns_errf(&err, "%s: record %llu (%s): sample %lld, feature %lld is not finite (%g)", label, at,
                             rec->name, (long long)(i / d), (long long)(i % d), src[i]);
    if (!failed) {
        samples_grow(s, s->n + n);
        memcpy(s->x + s->n * d, src, (size_t)(n * d) * sizeof *src);
        memcpy(s->labels + s->n, y, (size_t)n * sizeof *y);
        for (int64_t i = 0; i < n; i++) s->any_label |= y[i] >= 0;
    }
    ns_tensor_free(&t);
    free(y);
    if (failed) ns_die_err(&err); // after the frees: a failing run leaks nothing either
    s->n += n;
}

static int same_strings(char **a, size_t na, char **b, size_t nb) {
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0) return 0;
    return 1;
}

// One file's records: meta records update its stream facts; tensor records
// of the chosen name are samples; everything else is skipped.
static void read_file(samples *s, const char *path, const struct cmdline *cmd) {
    ns_err err;
    ns_reader *r = ns_reader_open(path, &err);
    if (!r) ns_die_err(&err);
    const char *label = ns_reader_label(r);
    ns_stream_info info = {0};
    ns_record rec;
    int got;
    while ((got = ns_reader_next(r, &rec, &err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            if (ns_stream_info_update(&info, &rec, &err) < 0)
                ns_die("%s: record %llu: %s", label, (unsigned long long)rec.index, err.msg);
            continue;
        }
        if (strcmp(rec.kind, "tensor") != 0 || !rec.has_data) continue;
        if (!s->name[0]) snprintf(s->name, sizeof s->name, "%s", cmd->name ? cmd->name : rec.name);
        if (strcmp(rec.name, s->name) != 0) continue;
        if (cmd->limit > 0 && s->n >= cmd->limit) break;
        take_record(s, &rec, label, cmd->limit);
    }
    if (got < 0) ns_die_err(&err);
    // Every file must describe its samples as the first did.
    if (!s->have_info) {
        s->info = info;
        s->have_info = 1;
    } else {
        if (!same_strings(info.labels, info.nlabels, s->info.labels, s->info.nlabels))
            ns_die("%s: class names (general.labels) differ from %s's", label, cmd->files[0]);
        int same = info.nnorm == s->info.nnorm;
        for (int c = 0; same && c < info.nnorm; c++)
            same = info.mean[c] == s->info.mean[c] && info.std[c] == s->info.std[c];
        if (!same) ns_die("%s: normalised (image.mean, image.std) differently from %s", label, cmd->files[0]);
        ns_stream_info_free(&info);
    }
    ns_reader_close(r);
}

// --- putting it together ----------------------------------------------------------
// The graph's labels and classes: the names' count, else the largest label + 1.
static void set_labels(ns_graph *g, samples *s, const char *source) {
    if (!s->any_label) return;
    int64_t c = 0;
    for (int64_t i = 0; i < s->n; i++)
        if (s->labels[i] + 1 > c) c = s->labels[i] + 1;
    if (s->info.labels) {
        if (c > (int64_t)s->info.nlabels)
            ns_die("%s: label %lld, but general.labels names %zu classes", source, (long long)c - 1, s->info.nlabels);
        c = (int64_t)s->info.nlabels;
        g->class_names = s->info.labels;
        s->info.labels = NULL;
        s->info.nlabels = 0;
    }
    g->classes = c;
    g->labels = s->labels;
    s->labels = NULL;
}

static char *join_paths(const struct cmdline *cmd) {
    size_t len = 8;
    for (int i = 0; i < cmd->nfiles; i++) len += strlen(cmd->files[i]) + 1;
    char *p = malloc(len);
    if (!p) ns_die("out of memory");
    if (cmd->nfiles == 0) return strcpy(p, "stdin");
    p[0] = 0;
    for (int i = 0; i < cmd->nfiles; i++) {
        if (i) strcat(p, " ");
        strcat(p, strcmp(cmd->files[i], "-") == 0 ? "stdin" : cmd->files[i]);
    }
    return p;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {
        .metric_name = "cosine", .output = "-", .k = 10, .limit = -1,
        .train_per_class = NS_PLANETOID_TRAIN_PER_CLASS, .val = NS_PLANETOID_VAL, .test = NS_PLANETOID_TEST, .seed = 0,
    };
    parse_cmdline(argc, argv, &cmd);
    char *stdin_only[] = {"-"};
    if (cmd.nfiles == 0) cmd.files = stdin_only, cmd.nfiles = 1;

    double start = ns_now();
    samples s = {0};
    for (int i = 0; i < cmd.nfiles; i++) read_file(&s, cmd.files[i], &cmd);
    char *source = join_paths(&cmd);
    if (s.n == 0)
        ns_die("%s: no samples%s%s", source, s.name[0] ? " in records named " : "", s.name);
    if (s.n < 2 || cmd.k >= s.n)
        ns_die("%s: %lld samples, too few for %lld neighbours each", source, (long long)s.n, (long long)cmd.k);
    if (!cmd.quiet)
        ns_warn("%lld samples of %lld features read (%.1f s)", (long long)s.n, (long long)s.d, ns_now() - start);

    ns_threads();
    ns_err err;
    int32_t *index = malloc((size_t)(s.n * cmd.k) * sizeof *index);
    float *score = malloc((size_t)(s.n * cmd.k) * sizeof *score);
    if (!index || !score) ns_die("out of memory (%lld x %lld neighbours)", (long long)s.n, (long long)cmd.k);
    double search_start = ns_now();
    if (ns_knn_search(s.x, s.n, s.d, cmd.k, cmd.metric, index, score, &err) < 0) ns_die_err(&err);
    double search_time = ns_now() - search_start;

    ns_graph g = {0};
    g.nodes = s.n;
    g.undirected = 1;
    g.weighted = cmd.weighted;
    g.source = source;
    if (ns_knn_graph(&g.adj, index, score, s.n, cmd.k, cmd.metric, cmd.mutual, cmd.weighted, &err) < 0)
        ns_die_err(&err);
    free(index);
    free(score);
    // The features, 64-byte aligned as a graph's are.
    g.feature_dim = s.d;
    if (!(g.features = ns_aligned_alloc((size_t)(s.n * s.d) * sizeof *g.features))) ns_die("out of memory");
    memcpy(g.features, s.x, (size_t)(s.n * s.d) * sizeof *g.features);
    free(s.x);
    s.x = NULL;
    set_labels(&g, &s, source);
    if (g.labels && ns_planetoid_split(&g, cmd.train_per_class, cmd.val, cmd.test, (uint64_t)cmd.seed, &err) < 0)
        ns_die("%s: %s", source, err.msg);

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    int failed = ns_graph_write(&w, &g, "graph-knn " NS_VERSION, &err) < 0;
    if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
    if (!cmd.quiet)
        ns_warn("%lld nodes, %lld edges (mean degree %.2f), homophily %.3f, search %.1f s on %d threads",
                (long long)g.nodes, (long long)g.adj.nnz / 2, (double)g.adj.nnz / (double)g.nodes,
                ns_graph_edge_homophily(&g), search_time, ns_threads());
    ns_graph_free(&g);
    free(s.labels);
    free(s.shape_from);
    ns_stream_info_free(&s.info);
    return 0;
}
