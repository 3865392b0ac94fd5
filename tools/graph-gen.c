// graph-gen: a synthetic graph from a contextual stochastic block model
// (lib/graph/csbm.h), with Planetoid's split, as a graph stream (tns(5), "Graphs").
//
//   graph-gen [options] > graph.tns
//
// Sizes come from a preset (cora: 2708 nodes, 1433 binary features, 7
// classes, ~5.4k edges; arxiv: 100000 nodes, 128 gaussian features, 40
// classes, mean degree ~14) or the options, which override the preset. The
// edges come from a mean degree and a homophily, or from p_in and p_out.
// Shapes: labels (N), features (N, D) dense or in CSR, adjacency (N, N) CSR.
// A summary line (edges, measured degree and homophily, split sizes) goes to
// standard error unless -q.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "cli/cli.h"
#include "graph/csbm.h"
#include "graph/graphdata.h"
#include "stream/tns.h"

struct cmdline {
    const char *preset, *kind, *output;
    int64_t nodes, classes, features, train_per_class, val, test, seed; // -1: not given
    double avg_degree, homophily, p_in, p_out, separation, words;   // NAN: not given
    int quiet;
};

// What a preset (or the defaults) sets; options given override each field.
typedef struct preset {
    const char *name;
    int64_t nodes, classes, features;
    const char *kind;
    double avg_degree, separation, words;
} preset;

// cora: Planetoid's Cora sizes (5278 edges: mean degree 3.9) and its ~18
// words per paper. arxiv: ogbn-arxiv's sizes scaled to 1e5 nodes (its mean
// degree, 2 x 1166243 / 169343, is 13.8).
static const preset presets[] = {
    {"default", 2708, 7, 128, "gaussian", 4.0, 3.0, 18.0},
    {"cora", 2708, 7, 1433, "bernoulli", 3.9, 0.35, 18.0},
    {"arxiv", 100000, 40, 128, "gaussian", 13.8, 3.0, 18.0},
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const ns_opt opts[] = {
        {"preset", 'p', NS_OPT_STR, &cmd->preset, "NAME", "cora or arxiv: sizes and features of that data set (options override)", 0, 0},
        {"nodes", 'n', NS_OPT_I64, &cmd->nodes, "N", "number of nodes (default 2708)", 2, 2147483647.0},
        {"classes", 'c', NS_OPT_I64, &cmd->classes, "C", "number of classes (default 7)", 1, 16777216.0},
        {"features", 'd', NS_OPT_I64, &cmd->features, "D", "features per node (default 128; 0: none)", 0, 2147483647.0},
        {"avg-degree", 0, NS_OPT_DOUBLE, &cmd->avg_degree, "K", "expected mean degree (default 4)", 0, 1e9},
        {"homophily", 0, NS_OPT_DOUBLE, &cmd->homophily, "H", "expected fraction of a node's edges inside its class (default 0.8)", 0, 1},
        {"p-in", 0, NS_OPT_DOUBLE, &cmd->p_in, "P", "edge probability inside a class (with --p-out, instead of --avg-degree)", 0, 1},
        {"p-out", 0, NS_OPT_DOUBLE, &cmd->p_out, "P", "edge probability between classes", 0, 1},
        {"feature-kind", 'f', NS_OPT_STR, &cmd->kind, "KIND", "gaussian (dense, default) or bernoulli (binary bag of words, sparse)", 0, 0},
        {"separation", 's', NS_OPT_DOUBLE, &cmd->separation, "S", "gaussian: distance between class means in noise units (default 3); bernoulli: share of words from the class topic (default 0.35)", 0, 1e6},
        {"words", 'w', NS_OPT_DOUBLE, &cmd->words, "W", "bernoulli: mean words per node (default 18)", 0, 1e9},
        NS_PLANETOID_OPTIONS(&cmd->train_per_class, &cmd->val, &cmd->test, &cmd->seed, "nodes",
                             "seed of the graph and the split (default 0)"),
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no summary on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options]",
        "Generate a graph from a contextual stochastic block model (classes, edges\n"
        "inside and between them, class-dependent features) with Planetoid's split,\n"
        "as a TNS graph stream.",
        "Edges: --avg-degree and --homophily, or --p-in and --p-out. The same options\n"
        "and seed give the same bytes. See graph-gen(1) and tns(5).",
        0, 0,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    int by_prob = !isnan(cmd->p_in) || !isnan(cmd->p_out);
    if (by_prob && (isnan(cmd->p_in) || isnan(cmd->p_out))) ns_die_usage("--p-in and --p-out go together");
    if (by_prob && (!isnan(cmd->avg_degree) || !isnan(cmd->homophily)))
        ns_die_usage("--p-in/--p-out cannot be combined with --avg-degree or --homophily");
}

static const preset *find_preset(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0) return &presets[i];
    ns_die_usage("--preset must be cora or arxiv (%s)", name);
}

// The model the options ask for; usage errors for values that cannot work.
static void build_model(const struct cmdline *cmd, ns_csbm *m) {
    const preset *p = find_preset(cmd->preset ? cmd->preset : "default");
    memset(m, 0, sizeof *m);
    m->nodes = cmd->nodes >= 0 ? cmd->nodes : p->nodes;
    m->classes = cmd->classes >= 0 ? cmd->classes : p->classes;
    m->features = cmd->features >= 0 ? cmd->features : p->features;
    const char *kind = cmd->kind ? cmd->kind : p->kind;
    if (strcmp(kind, "gaussian") == 0) m->kind = NS_CSBM_GAUSSIAN;
    else if (strcmp(kind, "bernoulli") == 0) m->kind = NS_CSBM_BERNOULLI;
    else ns_die_usage("--feature-kind must be gaussian or bernoulli (%s)", kind);
    // A preset's separation is for its own kind; another kind takes its default.
    double default_sep = strcmp(kind, p->kind) == 0 ? p->separation
                         : m->kind == NS_CSBM_GAUSSIAN ? presets[0].separation : presets[1].separation;
    m->separation = !isnan(cmd->separation) ? cmd->separation : default_sep;
    m->words = !isnan(cmd->words) ? cmd->words : p->words;
    m->seed = (uint64_t)(cmd->seed >= 0 ? cmd->seed : 0);
    if (m->classes > m->nodes)
        ns_die_usage("--classes %lld is more than the %lld nodes", (long long)m->classes, (long long)m->nodes);
    if (m->kind == NS_CSBM_BERNOULLI && m->separation > 1)
        ns_die_usage("--separation is a share of words for bernoulli features: 0 to 1 (%g)", m->separation);
    ns_err err;
    if (!isnan(cmd->p_in)) {
        m->p_in = cmd->p_in;
        m->p_out = cmd->p_out;
    } else {
        double degree = !isnan(cmd->avg_degree) ? cmd->avg_degree : p->avg_degree;
        double h = !isnan(cmd->homophily) ? cmd->homophily : 0.8;
        if (m->classes == 1 && isnan(cmd->homophily)) h = 1; // nothing outside the one class
        if (ns_csbm_probabilities(m, degree, h, &err) < 0) ns_die_usage("%s", err.msg);
    }
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {
        .nodes = -1, .classes = -1, .features = -1,
        .train_per_class = NS_PLANETOID_TRAIN_PER_CLASS, .val = NS_PLANETOID_VAL, .test = NS_PLANETOID_TEST,
        .seed = -1, .avg_degree = NAN, .homophily = NAN, .p_in = NAN, .p_out = NAN, .separation = NAN,
        .words = NAN, .output = "-",
    };
    parse_cmdline(argc, argv, &cmd);
    ns_csbm m;
    build_model(&cmd, &m);
    int64_t labelled_needed = cmd.train_per_class * m.classes + cmd.val + cmd.test;
    if (labelled_needed > m.nodes)
        ns_die_usage("the split needs %lld nodes (%lld per class x %lld classes + %lld val + %lld test), there are %lld",
                     (long long)labelled_needed, (long long)cmd.train_per_class, (long long)m.classes,
                     (long long)cmd.val, (long long)cmd.test, (long long)m.nodes);

    ns_threads(); // NETSMITH_THREADS for the per-node feature draws and the edge sort
    double start = ns_now();
    ns_graph g;
    ns_err err;
    if (ns_csbm_generate(&g, &m, &err) < 0) ns_die_err(&err);
    if (ns_planetoid_split(&g, cmd.train_per_class, cmd.val, cmd.test, m.seed, &err) < 0) ns_die_err(&err);
    char source[256];
    snprintf(source, sizeof source, "csbm nodes=%lld classes=%lld features=%lld %s p_in=%.9g p_out=%.9g separation=%g seed=%llu",
             (long long)m.nodes, (long long)m.classes, (long long)m.features,
             m.kind == NS_CSBM_GAUSSIAN ? "gaussian" : "bernoulli", m.p_in, m.p_out, m.separation,
             (unsigned long long)m.seed);
    if (m.kind == NS_CSBM_BERNOULLI) {
        size_t used = strlen(source);
        snprintf(source + used, sizeof source - used, " words=%g", m.words);
    }
    if (!(g.source = strdup(source))) ns_die("out of memory");

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    int failed = ns_graph_write(&w, &g, "graph-gen " NS_VERSION, &err) < 0;
    if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
    if (!cmd.quiet)
        ns_warn("%lld nodes, %lld edges (mean degree %.2f), homophily %.3f, split %lld/%lld/%lld, %.2f s",
                (long long)g.nodes, (long long)g.adj.nnz / 2, (double)g.adj.nnz / (double)g.nodes,
                ns_graph_edge_homophily(&g), (long long)ns_graph_split_size(&g, NS_SPLIT_TRAIN),
                (long long)ns_graph_split_size(&g, NS_SPLIT_VAL), (long long)ns_graph_split_size(&g, NS_SPLIT_TEST),
                ns_now() - start);
    ns_graph_free(&g);
    return 0;
}
