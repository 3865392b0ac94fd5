// graph-coreset: a coreset baseline of graph condensation (lib/graph/coreset.h):
// ceil(r * n_c) training nodes of each class c, picked at random, by herding
// or by k-center, and the edges among them, written as a graph stream whose
// every node is in the training split (what gnn-train --eval-graph trains on).
// At the same ratio it has as many nodes per class as sgc-condense -r makes.
//
//   graph-coreset [-m random|herding|kcenter] [-r R] [-K hops] [--seed S] [-o FILE] GRAPH
//
// A one-line summary on stderr unless -q.
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "cli/cli.h"
#include "graph/coreset.h"
#include "graph/graphdata.h"
#include "stream/tns.h"

struct cmdline {
    const char *graph, *output, *method;
    double ratio;
    int hops, quiet;
    int64_t seed;
    ns_coreset_config cfg;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const ns_opt opts[] = {
        {"method", 'm', NS_OPT_STR, &cmd->method, "NAME", "random (default), herding or kcenter", 0, 0},
        {"ratio", 'r', NS_OPT_DOUBLE, &cmd->ratio, "R", "nodes kept per class: ceil(R x its training nodes), 0 < R <= 1 (default 0.5)", 1e-12, 1},
        {"hops", 'K', NS_OPT_INT, &cmd->hops, "K", "herding and kcenter compare P^K X, the features propagated K steps as by a GCN (default 0: the features)", 0, 8},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed of the random coreset (default 1)", 0, 9007199254740992.0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no summary on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] GRAPH",
        "Keep ceil(r x n_c) training nodes of each class (random, herding or\n"
        "k-center) and the edges among them: the coreset baselines of graph\n"
        "condensation.",
        "GRAPH (- for standard input) is a graph stream with labels and a training\n"
        "split. The coreset goes to standard output (or -o FILE) as a graph stream,\n"
        "every node in the training split; train on it with gnn-train --eval-graph GRAPH.",
        1, 1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->graph = argv[first];
    int method = -1;
    for (int m = 0; m <= NS_CORESET_KCENTER; m++)
        if (strcmp(cmd->method, ns_coreset_method_names[m]) == 0) method = m;
    if (strcmp(cmd->method, "k-center") == 0) method = NS_CORESET_KCENTER;
    if (method < 0) ns_die_usage("--method must be random, herding or kcenter (%s)", cmd->method);
    cmd->cfg = (ns_coreset_config){(ns_coreset_method)method, cmd->ratio, cmd->hops, (uint64_t)cmd->seed};
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.output = "-", .method = "random", .ratio = 0.5, .hops = 0, .seed = 1};
    parse_cmdline(argc, argv, &cmd);
    ns_threads(); // NETSMITH_THREADS for the propagation
    ns_err err;
    ns_graph g = {0};
    if (ns_graph_load(cmd.graph, &g, &err) < 0) ns_die_err(&err);
    int64_t *per_class = calloc((size_t)(g.classes > 0 ? g.classes : 1), sizeof *per_class);
    if (!per_class) ns_die("out of memory");
    int64_t *kept;
    int64_t n = ns_coreset_select(&g, &cmd.cfg, &kept, per_class, &err);
    if (n < 0) ns_die("%s: %s", cmd.graph, err.msg);
    ns_graph core;
    if (ns_graph_induced(&core, &g, kept, n, &err) < 0) ns_die("%s: %s", cmd.graph, err.msg);
    char source[512];
    if (cmd.cfg.method == NS_CORESET_RANDOM)
        snprintf(source, sizeof source, "graph-coreset -m random -r %g --seed %lld of %s", cmd.ratio,
                 (long long)cmd.seed, g.source ? g.source : cmd.graph);
    else
        snprintf(source, sizeof source, "graph-coreset -m %s -r %g -K %d of %s", ns_coreset_method_names[cmd.cfg.method],
                 cmd.ratio, cmd.hops, g.source ? g.source : cmd.graph);
    if (!(core.source = strdup(source))) ns_die("out of memory");

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    int failed = ns_graph_write(&w, &core, "graph-coreset " NS_VERSION, &err) < 0;
    if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
    if (!cmd.quiet) {
        char counts[256] = "";
        size_t used = 0;
        for (int64_t c = 0; c < g.classes && used < sizeof counts - 32; c++)
            used += (size_t)snprintf(counts + used, sizeof counts - used, "%s%lld", c ? "/" : "", (long long)per_class[c]);
        if (used >= sizeof counts - 32) snprintf(counts + used, sizeof counts - used, "/...");
        ns_warn("%s: %lld of %lld training nodes (per class %s), %lld stored edges", ns_coreset_method_names[cmd.cfg.method],
                (long long)n, (long long)ns_graph_split_size(&g, NS_SPLIT_TRAIN), counts, (long long)core.adj.nnz);
    }
    free(kept);
    free(per_class);
    ns_graph_free(&core);
    ns_graph_free(&g);
    return 0;
}
