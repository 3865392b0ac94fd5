// graph-import: a graph in plain text (or a graph stream) to a graph stream.
//
//   graph-import [options] SOURCE
//
// SOURCE is one of (recognised by what it is, not by its name):
//   a directory in the Open Graph Benchmark's layout (ogbn-arxiv as OGB
//     unpacks it: raw/edge.csv.gz, node-feat.csv.gz, node-label.csv.gz,
//     split/NAME/{train,valid,test}.csv.gz; plain .csv too);
//   a directory in the layout of Cora as exported to text (the repository
//     ships Cora in data/cora): nodes.txt ("N C", then
//     "LABEL SPLIT" per node), edges.txt ("N E", then "U V" per edge) and
//     optionally features.txt ("N D NNZ", then "ROW COL VALUE" per non-zero);
//   a graph stream (TNS, as this program writes): re-checked, and re-split or
//     otherwise changed by the options;
//   an edge list: "U V" or "U,V" per line, optionally a weight "U V W".
// Side files (--features, --labels, --split) add or replace node data. The
// output (layout in tns(5), "Graphs") is written only once everything has
// been read and checked, so a failed import leaves nothing behind.
//
// Text input rules (the readers are lib/graph/graph_text.c): fields are
// separated by blanks or one comma; "#" starts a comment; blank lines are
// skipped; numbers are decimal. Errors name the file and line.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/blas.h"
#include "cli/cli.h"
#include "graph/graph_text.h"
#include "graph/graphdata.h"
#include "base/rng.h"
#include "graph/sparse.h"
#include "stream/tns.h"

struct cmdline {
    int undirected, directed, self_loops, sparse;
    int64_t nodes, seed; // -1: not given
    const char *features, *labels, *classes, *split, *split_random, *output;
    const char *source;
    double frac[NS_SPLIT_COUNT]; // --split-random, when given
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const ns_opt opts[] = {
        {"undirected", 'u', NS_OPT_FLAG, &cmd->undirected, NULL, "store every edge both ways (default for an OGB or Cora directory)", 0, 0},
        {"directed", 'd', NS_OPT_FLAG, &cmd->directed, NULL, "keep edges as listed (default for an edge list)", 0, 0},
        {"self-loops", 0, NS_OPT_FLAG, &cmd->self_loops, NULL, "add a self loop (weight 1) to every node that has none", 0, 0},
        {"nodes", 'n', NS_OPT_I64, &cmd->nodes, "N", "number of nodes of an edge list (default: from the side files, or largest id + 1)", 1, 2147483647.0},
        {"features", 'f', NS_OPT_STR, &cmd->features, "FILE", "node features: one row of numbers per node", 0, 0},
        {"labels", 'l', NS_OPT_STR, &cmd->labels, "FILE", "node labels: one integer per node, -1 for unlabelled", 0, 0},
        {"classes", 'c', NS_OPT_STR, &cmd->classes, "FILE", "class names, one per line: label k names class k", 0, 0},
        {"split", 's', NS_OPT_STR, &cmd->split, "FILE", "the split: train, val, test or none per node", 0, 0},
        {"split-random", 'r', NS_OPT_STR, &cmd->split_random, "T,V,S", "a random split of the labelled nodes, in fractions (e.g. 0.6,0.2,0.2)", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed for --split-random (default 0)", 0, 1e18},
        {"sparse", 0, NS_OPT_FLAG, &cmd->sparse, NULL, "store the features in CSR (graph.features.indptr/indices/values)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] SOURCE",
        "Import a graph (an OGB- or Cora-layout directory, an edge list, or a graph\n"
        "stream) into a TNS graph stream: adjacency in CSR, features, labels and split\n"
        "masks.",
        "An edge list has \"U V\" or \"U,V\" (or \"U V W\" with a weight) per line, node ids\n"
        "0..N-1; \"#\" starts a comment. A directory holds nodes.txt, edges.txt and\n"
        "features.txt, each with a header of counts (Planetoid's Cora exported as text).\n"
        "Side files have one line per node. See graph-import(1) and tns(5).",
        1, 1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->source = argv[first];
    if (cmd->undirected && cmd->directed) ns_die_usage("--undirected and --directed cannot be combined");
    if (cmd->split && cmd->split_random) ns_die_usage("--split and --split-random cannot be combined");
    if (cmd->seed >= 0 && !cmd->split_random)
        ns_die_usage("--seed applies only to --split-random (%lld)", (long long)cmd->seed);
    if (cmd->seed < 0) cmd->seed = 0;
    if (cmd->split_random) {
        ns_err err;
        double f[4];
        int n = ns_parse_doubles(cmd->split_random, f, 4, &err);
        if (n != NS_SPLIT_COUNT)
            ns_die_usage("--split-random takes three fractions TRAIN,VAL,TEST (%s)", cmd->split_random);
        double sum = 0;
        for (int s = 0; s < NS_SPLIT_COUNT; s++) {
            if (f[s] < 0 || f[s] > 1)
                ns_die_usage("--split-random fractions must be between 0 and 1 (%s)", cmd->split_random);
            cmd->frac[s] = f[s];
            sum += f[s];
        }
        if (sum > 1 + 1e-9) ns_die_usage("--split-random fractions add up to more than 1 (%s)", cmd->split_random);
    }
}

// A TNS record is a msgpack map: fixmap (0x80..0x8f), map16 (0xde) or map32 (0xdf).
static int tns_first_byte(int c) { return (c & 0xf0) == 0x80 || c == 0xde || c == 0xdf; }

// The first byte of fd, read with read(2) so that nothing more is consumed;
// EOF when there is none.
static int first_byte(int fd, const char *label) {
    unsigned char c;
    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n == 1) return c;
        if (n == 0) return EOF;
        if (errno != EINTR) ns_die("%s: read error (%s)", label, strerror(errno));
    }
}

// --- putting it together ----------------------------------------------------------
// Node count of an edge list: --nodes, else the side files (which must
// agree), else the largest id + 1 (known only after the edges).
static int64_t node_count(const struct cmdline *cmd, const ns_node_text *s, const char **from) {
    int64_t n = -1;
    struct { int64_t count; const char *path, *what; } given[] = {
        {cmd->nodes, "--nodes", "nodes"},
        {cmd->features ? s->rows : -1, cmd->features, "feature rows"},
        {cmd->labels ? s->nlabels : -1, cmd->labels, "labels"},
        {cmd->split ? s->nsplit : -1, cmd->split, "split lines"},
    };
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
        if (given[i].count < 0) continue;
        if (n < 0) {
            n = given[i].count;
            *from = given[i].path;
        } else if (given[i].count != n) {
            ns_die("%s: %lld %s, but %s gives %lld nodes", given[i].path, (long long)given[i].count,
                   given[i].what, *from, (long long)n);
        }
    }
    return n;
}

// Side files for a source whose node count is fixed.
static void check_side_counts(const struct cmdline *cmd, const ns_node_text *s, int64_t n, const char *from) {
    if (cmd->nodes >= 0 && cmd->nodes != n)
        ns_die("--nodes is %lld but %s has %lld nodes", (long long)cmd->nodes, from, (long long)n);
    if (cmd->features && s->rows != n)
        ns_die("%s: %lld feature rows for %lld nodes (%s)", cmd->features, (long long)s->rows, (long long)n, from);
    if (cmd->labels && s->nlabels != n)
        ns_die("%s: %lld labels for %lld nodes (%s)", cmd->labels, (long long)s->nlabels, (long long)n, from);
    if (cmd->split && s->nsplit != n)
        ns_die("%s: %lld split lines for %lld nodes (%s)", cmd->split, (long long)s->nsplit, (long long)n, from);
}

// A seeded shuffle of the labelled nodes, cut at the fractions.
static void split_random(ns_graph *g, const struct cmdline *cmd) {
    if (!g->labels) ns_die("--split-random needs labels (none in %s and no --labels)", cmd->source);
    int64_t *pool = malloc((size_t)g->nodes * sizeof *pool), m = 0;
    if (!pool) ns_die("out of memory");
    for (int64_t i = 0; i < g->nodes; i++)
        if (g->labels[i] >= 0) pool[m++] = i;
    ns_rng rng;
    ns_rng_seed(&rng, (uint64_t)cmd->seed);
    ns_rng_shuffle(&rng, pool, m);
    int64_t at = 0;
    for (int s = 0; s < NS_SPLIT_COUNT; s++) {
        free(g->masks[s]);
        if (!(g->masks[s] = calloc((size_t)g->nodes, 1))) ns_die("out of memory");
        int64_t take = (int64_t)floor(cmd->frac[s] * (double)m + 0.5);
        if (take > m - at) take = m - at; // rounding past the end
        for (int64_t k = 0; k < take; k++) g->masks[s][pool[at + k]] = 1;
        at += take;
    }
    free(pool);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.nodes = -1, .seed = -1, .output = "-"};
    parse_cmdline(argc, argv, &cmd);

    ns_threads(); // NETSMITH_THREADS for the parallel sort of large edge lists
    ns_node_text s = {0};
    ns_err err;
    if ((cmd.features && ns_node_features_read(cmd.features, &s, &err) < 0) ||
        (cmd.labels && ns_node_labels_read(cmd.labels, &s, &err) < 0) ||
        (cmd.split && ns_node_split_read(cmd.split, &s, &err) < 0) ||
        (cmd.classes && ns_class_names_read(cmd.classes, &s, &err) < 0))
        ns_die_err(&err);

    ns_graph g = {0};
    ns_node_text cora = {0};
    char *nodes_path = NULL;
    const char *labels_path = NULL; // the text the labels came from, for line numbers
    int undirected;
    struct stat st;
    int is_stdin = strcmp(cmd.source, "-") == 0;
    const char *label = is_stdin ? "stdin" : cmd.source;
    if (!is_stdin && stat(cmd.source, &st) == 0 && S_ISDIR(st.st_mode) && ns_ogb_dir(cmd.source)) {
        // The OGB layout (raw/edge.csv.gz, ...): undirected unless --directed.
        if (ns_ogb_read(cmd.source, &g, &cora, &err) < 0) ns_die_err(&err);
        check_side_counts(&cmd, &s, g.nodes, cmd.source);
        labels_path = cmd.source;
        undirected = !cmd.directed;
    } else if (!is_stdin && stat(cmd.source, &st) == 0 && S_ISDIR(st.st_mode)) {
        // A Cora-layout directory: undirected unless --directed.
        if (ns_cora_read(cmd.source, &g, &cora, &nodes_path, &err) < 0) ns_die_err(&err);
        check_side_counts(&cmd, &s, g.nodes, nodes_path);
        if (ns_node_text_set_labels(&g, &cora, nodes_path, &err) < 0 ||
            ns_node_text_set_split(&g, &cora, nodes_path, &err) < 0)
            ns_die_err(&err);
        labels_path = nodes_path;
        undirected = !cmd.directed;
    } else {
        // The first byte tells a graph stream from an edge list; standard
        // input is read as it comes, never spooled whole.
        FILE *f = is_stdin ? stdin : fopen(cmd.source, "r");
        if (!f) ns_die("%s: cannot open (%s)", cmd.source, strerror(errno));
        int c = first_byte(fileno(f), label);
        if (c != EOF && tns_first_byte(c)) {
            // A graph stream: its edges stay as they are unless --undirected.
            if (cmd.directed) ns_die_usage("--directed does not apply to a graph stream (%s)", cmd.source);
            ns_reader *r = ns_reader_fdopen(fileno(f), label, &err);
            unsigned char head = (unsigned char)c;
            if (!r || ns_reader_unread(r, &head, 1, &err) < 0 || ns_graph_read(r, &g, &err) < 0) ns_die_err(&err);
            ns_reader_close(r);
            check_side_counts(&cmd, &s, g.nodes, label);
            undirected = cmd.undirected || g.undirected;
        } else {
            // An edge list, directed unless --undirected.
            if (c != EOF && ungetc(c, f) == EOF) ns_die("%s: read error", label);
            const char *from = NULL;
            int64_t n = node_count(&cmd, &s, &from);
            ns_lines in;
            ns_edge_list e;
            if (ns_lines_from(&in, f, label, 0, &err) < 0 || ns_edges_read(&in, &e, n, &err) < 0) ns_die_err(&err);
            ns_lines_close(&in);
            if (n < 0) {
                if (e.n == 0)
                    ns_die("%s: no edges, and no --nodes, --features, --labels or --split to count the nodes", label);
                n = (int64_t)e.max_id + 1;
            }
            g.nodes = n;
            if (ns_edges_to_graph(&g, &e, n, &err) < 0) ns_die_err(&err);
            ns_edges_free(&e);
            undirected = cmd.undirected;
        }
        if (f != stdin) fclose(f);
    }
    if (!g.source && !(g.source = strdup(strcmp(cmd.source, "-") == 0 ? "stdin" : cmd.source)))
        ns_die("out of memory");

    // Side files replace what the source had.
    if (cmd.features) {
        free(g.features);
        ns_csr_free(&g.sfeatures);
        g.sparse_features = 0;
        g.features = s.features;
        s.features = NULL;
        g.feature_dim = s.dim;
    }
    if (cmd.labels || cmd.classes) {
        // New labels or names: the source's names no longer apply.
        ns_strings_free(g.class_names, g.class_names ? (size_t)g.classes : 0);
        g.class_names = NULL;
    }
    if (cmd.labels) {
        g.classes = cmd.classes ? s.nnames : (int64_t)s.max_label + 1;
        if (ns_node_text_set_labels(&g, &s, cmd.labels, &err) < 0) ns_die_err(&err);
        labels_path = cmd.labels;
    }
    if (cmd.classes) {
        if (s.nnames != g.classes)
            ns_die("%s: %lld class names for %lld classes (%s)", cmd.classes, (long long)s.nnames,
                   (long long)g.classes, labels_path ? labels_path : cmd.source);
        g.class_names = s.names;
        s.names = NULL;
        s.nnames = 0;
    }
    if (cmd.split && ns_node_text_set_split(&g, &s, cmd.split, &err) < 0) ns_die_err(&err);
    if (cmd.split_random) split_random(&g, &cmd);

    // Structure: mirror edges, add loops.
    if (undirected && !g.undirected) {
        ns_csr sym;
        if (ns_csr_symmetrize(&sym, &g.adj, NS_SYM_STRICT, &err) < 0)
            ns_die("%s: an edge listed both ways with different weights: %s", cmd.source, err.msg);
        ns_csr_free(&g.adj);
        g.adj = sym;
        g.undirected = 1;
    }
    if (cmd.self_loops) {
        ns_csr looped;
        if (ns_csr_add_self_loops(&looped, &g.adj, 1.0f, NS_LOOPS_FILL, &err) < 0) ns_die_err(&err);
        ns_csr_free(&g.adj);
        g.adj = looped;
    }
    // Features stored as asked.
    if (cmd.sparse && g.features) {
        if (ns_csr_from_dense(&g.sfeatures, g.features, g.nodes, g.feature_dim, &err) < 0) ns_die_err(&err);
        free(g.features);
        g.features = NULL;
        g.sparse_features = 1;
    } else if (!cmd.sparse && g.sparse_features) {
        float *dense;
        if (ns_graph_dense_features(&g, &dense, &err) < 0) ns_die_err(&err);
        ns_csr_free(&g.sfeatures);
        g.sparse_features = 0;
        g.features = dense;
    }
    if (ns_graph_validate(&g, &err) < 0) ns_die("%s: %s", cmd.source, err.msg);

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    int failed = ns_graph_write(&w, &g, "graph-import " NS_VERSION, &err) < 0;
    ns_graph_free(&g);
    ns_node_text_free(&s);
    ns_node_text_free(&cora);
    free(nodes_path);
    if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
    return 0;
}
