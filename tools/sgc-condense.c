// sgc-condense: condenses a graph stream into a small synthetic graph with
// SimGC (lib/graph/simgc.h): trains the SGC teacher, then optimises the condensed
// features and the adjacency generator, selecting the snapshot whose GCN does
// best on the original graph's validation nodes. Writes the condensed graph
// (X' dense, weighted symmetric A', Y', every node in graph.train) as a graph
// stream that gnn-train reads.
//
//   sgc-condense [options] GRAPH > condensed.tns
//   sgc-condense [options] -o condensed.tns GRAPH     (the report on stdout)
//
// Progress (a line per validation) on stderr; the report as key<TAB>value lines
// (or --json) on stdout when the graph goes to a file, on stderr otherwise.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "graph/gnn.h"
#include "graph/graphdata.h"
#include "base/json.h"
#include "graph/simgc.h"
#include "stream/tns.h"

struct cmdline {
    const char *graph, *output, *teacher, *val_act, *preset, *init;
    int quiet, json;
    int64_t seed;
    ns_simgc_config cfg;
};

// The official scripts' settings beyond Cora's defaults (simgc.md, section 1).
static void apply_preset(struct cmdline *cmd) {
    ns_simgc_config *c = &cmd->cfg;
    if (strcmp(cmd->preset, "cora") == 0 || strcmp(cmd->preset, "citeseer") == 0) return; // the defaults
    // The larger datasets: the teacher at the script's default lr, and a
    // validation GCN with ReLU (the script's: hidden 256, ReLU, BatchNorm and
    // dropout 0.5; here without the last two).
    c->teacher_lr = 0.001, c->teacher_eval_every = 50, c->teacher_patience = 0, c->val_relu = 1, c->val_hidden = 256;
    if (strcmp(cmd->preset, "arxiv") == 0) {
        c->lr_adj = 0.01, c->lr_feat = 0.05, c->alpha = 10, c->iterations = 1500, c->teacher_mlp = 0;
        c->pge_hidden = 256, c->ratio = 0.005;
    } else if (strcmp(cmd->preset, "products") == 0) {
        c->lr_adj = 0.01, c->lr_feat = 0.05, c->alpha = 10, c->iterations = 3500, c->teacher_mlp = 1;
        c->teacher_hidden = 256, c->ratio = 0.005;
    } else if (strcmp(cmd->preset, "flickr") == 0) {
        c->lr_adj = 0.01, c->lr_feat = 0.05, c->alpha = 5, c->iterations = 3500, c->teacher_mlp = 0;
        c->pge_hidden = 256, c->ratio = 0.005, c->teacher_lr = 0.01, c->teacher_epochs = 600;
    } else if (strcmp(cmd->preset, "reddit") == 0) {
        c->lr_adj = 0.01, c->lr_feat = 0.05, c->alpha = 100, c->iterations = 2500, c->teacher_mlp = 0;
        c->pge_hidden = 256, c->ratio = 0.001, c->teacher_lr = 0.01, c->teacher_epochs = 600;
    } else {
        ns_die_usage("--preset must be cora, citeseer, arxiv, products, flickr or reddit (%s)", cmd->preset);
    }
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    ns_simgc_config *c = &cmd->cfg;
    // A first pass for --preset alone, so that the other options override it.
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strncmp(argv[i], "--preset=", 9) == 0) cmd->preset = argv[i] + 9;
        else if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) cmd->preset = argv[i + 1];
    }
    apply_preset(cmd);
    const ns_opt opts[] = {
        {"preset", 0, NS_OPT_STR, &cmd->preset, "NAME", "the official settings for cora (default), citeseer, arxiv, products, flickr or reddit; later options override", 0, 0},
        {"ratio", 'r', NS_OPT_DOUBLE, &c->ratio, "R", "condensed nodes per class: ceil(R x its training nodes) (default 0.5)", 1e-9, 1e6},
        {"hops", 'K', NS_OPT_INT, &c->hops, "K", "propagation steps of the teacher and of L_rep (default 2)", 0, 8},
        {"teacher", 0, NS_OPT_STR, &cmd->teacher, "KIND", "mlp (SGC_Multi) or sgc (linear); default: the preset's (mlp for cora, citeseer and products)", 0, 0},
        {"teacher-hidden", 0, NS_OPT_I64, &c->teacher_hidden, "H", "the MLP teacher's hidden units (default 2048)", 1, 1 << 20},
        {"teacher-epochs", 0, NS_OPT_INT, &c->teacher_epochs, "N", "teacher training epochs (default 1000)", 1, 1e7},
        {"teacher-eval-every", 0, NS_OPT_INT, &c->teacher_eval_every, "N", "validate the teacher every N epochs, keeping the best (default 5; 50 for arxiv, products, flickr and reddit)", 1, 1e7},
        {"teacher-patience", 0, NS_OPT_INT, &c->teacher_patience, "N", "stop the teacher after N validations without a better accuracy (default 20; 0, never, for arxiv, products, flickr and reddit)", 0, 1e8},
        {"teacher-lr", 0, NS_OPT_DOUBLE, &c->teacher_lr, "LR", "teacher learning rate, Adam (default 0.001; 0.01 for flickr and reddit)", 1e-12, 1e3},
        {"pge-hidden", 0, NS_OPT_I64, &c->pge_hidden, "H", "hidden units of the adjacency generator (default 128)", 1, 1 << 16},
        {"tau", 0, NS_OPT_DOUBLE, &c->tau, "T", "edges lighter than T are dropped (default 0.01)", 0, 0.999},
        {"lr-feat", 0, NS_OPT_DOUBLE, &c->lr_feat, "LR", "Adam's learning rate for X' (default 0.005)", 1e-12, 1e3},
        {"lr-adj", 0, NS_OPT_DOUBLE, &c->lr_adj, "LR", "Adam's learning rate for the generator (default 0.001)", 1e-12, 1e3},
        {"alpha", 0, NS_OPT_DOUBLE, &c->alpha, "A", "weight of L_rep (default 10; 0 turns alignment off)", 0, 1e9},
        {"gamma", 0, NS_OPT_DOUBLE, &c->gamma, "G", "weight of L_smt (default 0.1; 0 turns smoothness off)", -1e9, 1e9},
        {"iterations", 'T', NS_OPT_INT, &c->iterations, "T", "condensation iterations (default 1500)", 0, 1e8},
        {"cycle", 0, NS_OPT_INT, &c->cycle, "N", "length of the alternation cycle (default 50)", 1, 1e8},
        {"adj-steps", 0, NS_OPT_INT, &c->adj_steps, "N", "iterations per cycle that train the generator (default 10)", 0, 1e8},
        {"val-every", 0, NS_OPT_INT, &c->val_every, "N", "validate every N iterations (default 100; 0: none, keep the last)", 0, 1e8},
        {"val-epochs", 0, NS_OPT_INT, &c->val_epochs, "N", "epochs of each validation GCN (default 3000)", 1, 1e8},
        {"val-hidden", 0, NS_OPT_I64, &c->val_hidden, "H", "the validation GCN's hidden units (default 256)", 1, 1 << 20},
        {"val-act", 0, NS_OPT_STR, &cmd->val_act, "NAME", "the validation GCN's activation: none or relu (default: none for cora and citeseer, relu otherwise)", 0, 0},
        {"val-patience", 0, NS_OPT_INT, &c->val_patience, "N", "stop a validation GCN after N evaluations (every 100 epochs) without a better validation accuracy (default 3; 0: never)", 0, 1e8},
        {"val-lr", 0, NS_OPT_DOUBLE, &c->val_lr, "LR", "the validation GCN's learning rate (default 0.001)", 1e-12, 1e3},
        {"init", 0, NS_OPT_STR, &cmd->init, "HOW", "how X' starts: normal, N(0, 1) as SimGC's code (default), or real, random training nodes of each class as GCond", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed of the teacher, X', the generator and validation (default 1)", 0, 9007199254740992.0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write the condensed graph to FILE (atomically) instead of standard output", 0, 0},
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "the report as one JSON object", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] GRAPH",
        "Condense a graph into a small synthetic graph with SimGC: a frozen SGC\n"
        "teacher, representation and logit alignment, feature smoothness.",
        "GRAPH is a graph stream with features, labels and a train/val split.\n"
        "The condensed graph goes to standard output (or -o FILE) as a graph\n"
        "stream; train on it with gnn-train --eval-graph GRAPH.",
        1, 1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->graph = argv[first];
    // --teacher and --val-act override the preset only when given
    if (!cmd->teacher) cmd->teacher = c->teacher_mlp ? "mlp" : "sgc";
    if (strcmp(cmd->teacher, "mlp") == 0) c->teacher_mlp = 1;
    else if (strcmp(cmd->teacher, "sgc") == 0) c->teacher_mlp = 0;
    else ns_die_usage("--teacher must be mlp or sgc (%s)", cmd->teacher);
    if (!cmd->val_act) cmd->val_act = c->val_relu ? "relu" : "none";
    if (strcmp(cmd->val_act, "relu") == 0) c->val_relu = 1;
    else if (strcmp(cmd->val_act, "none") == 0) c->val_relu = 0;
    else ns_die_usage("--val-act must be relu or none (%s)", cmd->val_act);
    if (!cmd->init || strcmp(cmd->init, "normal") == 0) c->init_real = 0;
    else if (strcmp(cmd->init, "real") == 0) c->init_real = 1;
    else ns_die_usage("--init must be normal or real (%s)", cmd->init);
    if (c->adj_steps > c->cycle) ns_die_usage("--adj-steps (%d) is longer than --cycle (%d)", c->adj_steps, c->cycle);
    c->seed = (uint64_t)cmd->seed;
}

static void progress(const ns_simgc_config *cfg, int it, double loss, double val, double best_val,
                     double best_test, double seconds, void *arg) {
    const struct cmdline *cmd = arg;
    if (cmd->quiet) return;
    double rate = seconds > 0 ? (it + 1) / seconds : 0;
    double eta = rate > 0 ? (cfg->iterations - it) / rate : 0;
    if (isnan(val))
        ns_warn("iteration %d/%d  loss %.4f  %.1f it/s  ETA %.0fs", it, cfg->iterations, loss, rate, eta);
    else
        ns_warn("iteration %d/%d  loss %.4f  val %.2f%%  best val %.2f%% (test %.2f%%)  %.1f it/s  ETA %.0fs", it,
                cfg->iterations, loss, 100 * val, 100 * best_val, 100 * best_test, rate, eta);
}

// A line every 100 teacher epochs with the time left.
static void teacher_progress(const ns_gnn_epoch *e, void *arg) {
    const struct cmdline *cmd = arg;
    if (cmd->quiet || (e->epoch % 100 != 0 && e->epoch != e->epochs)) return;
    double eta = e->seconds / e->epoch * (e->epochs - e->epoch);
    ns_warn("teacher epoch %d/%d  loss %.4f  best val %.2f%% (test %.2f%%)  ETA %.0fs", e->epoch, e->epochs, e->loss,
            100 * e->best_val_acc, 100 * e->best_test_acc, eta);
}

// How far (a fraction) the class means may trail the teacher on validation
// before the note that a coreset may do better.
#define CLASS_MEAN_GAP 0.05

static void report(FILE *f, const struct cmdline *cmd, const ns_graph *g, const ns_simgc_result *r) {
    const ns_graph *c = &r->condensed;
    int64_t edges = c->adj.nnz / 2; // symmetric, no self loops
    if (cmd->json) {
        fprintf(f, "{\"nodes\":%lld,\"edges\":%lld,\"original_nodes\":%lld,\"ratio\":%g,\"seed\":%lld,"
                   "\"teacher_test\":",
                (long long)c->nodes, (long long)edges, (long long)g->nodes, cmd->cfg.ratio, (long long)cmd->seed);
        ns_json_number(f, r->teacher_test);
        fprintf(f, ",\"class_mean_val\":");
        ns_json_number(f, r->class_mean_val);
        fprintf(f, ",\"class_mean_test\":");
        ns_json_number(f, r->class_mean_test);
        fprintf(f, ",\"teacher\":\"%s\",\"teacher_lr\":%g,\"teacher_epochs\":%d,\"best_iteration\":%d,\"val_acc\":", cmd->teacher, cmd->cfg.teacher_lr, r->teacher_epochs,
                r->best_iter);
        ns_json_number(f, r->best_val);
        fprintf(f, ",\"test_acc\":");
        ns_json_number(f, r->best_test);
        fprintf(f, ",\"teacher_seconds\":%.3f,\"condense_seconds\":%.3f,\"validate_seconds\":%.3f}\n",
                r->teacher_seconds, r->condense_seconds, r->validate_seconds);
        return;
    }
    fprintf(f, "nodes\t%lld\nedges\t%lld\noriginal_nodes\t%lld\nratio\t%g\nseed\t%lld\n", (long long)c->nodes,
            (long long)edges, (long long)g->nodes, cmd->cfg.ratio, (long long)cmd->seed);
    fprintf(f, "teacher\t%s\nteacher_lr\t%g\nteacher_epochs\t%d\n", cmd->teacher, cmd->cfg.teacher_lr,
            r->teacher_epochs);
    fprintf(f, "class_mean_val\t%.6g\nclass_mean_test\t%.6g\n", r->class_mean_val, r->class_mean_test);
    fprintf(f, "teacher_test\t%.6g\nbest_iteration\t%d\nval_acc\t%.6g\ntest_acc\t%.6g\n", r->teacher_test,
            r->best_iter, r->best_val, r->best_test);
    fprintf(f, "teacher_seconds\t%.3f\ncondense_seconds\t%.3f\nvalidate_seconds\t%.3f\n", r->teacher_seconds,
            r->condense_seconds, r->validate_seconds);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.preset = "cora", .seed = 1, .output = "-"};
    ns_simgc_config_default(&cmd.cfg);
    parse_cmdline(argc, argv, &cmd);
    cmd.cfg.progress = progress;
    cmd.cfg.progress_arg = &cmd;
    cmd.cfg.teacher_progress = teacher_progress;
    ns_err err;

    // Open the output first, so a bad path fails before the long work.
    int to_stdout = strcmp(cmd.output, "-") == 0;
    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    if (!to_stdout) ns_output_abort(&out);

    ns_graph g = {0};
    if (ns_graph_load(cmd.graph, &g, &err) < 0) ns_die_err(&err);
    // Every class gets a condensed node and a teacher output: more classes
    // than nodes is no graph to condense (and would cost minutes to find out).
    if (g.classes > g.nodes)
        ns_die("%s: %lld classes for %lld nodes (graph.classes cannot exceed graph.nodes)", cmd.graph,
               (long long)g.classes, (long long)g.nodes);
    ns_simgc_result res;
    ns_simgc *k = ns_simgc_create(&g, &cmd.cfg, &res, &err);
    if (!k) ns_die("%s: %s", cmd.graph, err.msg);
    if (!cmd.quiet) {
        ns_warn("teacher (%s): val %.2f%%  test %.2f%%  %.1fs; class means: val %.2f%%; condensing to %lld nodes",
                cmd.teacher, 100 * res.teacher_val, 100 * res.teacher_test, res.teacher_seconds,
                100 * res.class_mean_val, (long long)ns_simgc_nodes(k));
        // SimGC keeps class-level statistics: where the class means classify
        // far worse than the teacher, real nodes may keep more (NOTES).
        if (res.class_mean_val < res.teacher_val - CLASS_MEAN_GAP)
            ns_warn("note: the class means of the propagated features reach %.2f%% on validation, the teacher "
                    "%.2f%%; SimGC's graph tends to land near the class means here: a coreset of real nodes "
                    "(graph-coreset), or --init real with a small --lr-feat, may do better",
                    100 * res.class_mean_val, 100 * res.teacher_val);
    }
    if (ns_simgc_run(k, &g, &res, &err) < 0) ns_die("%s: %s", cmd.graph, err.msg);
    ns_simgc_free(k);

    char source[512];
    snprintf(source, sizeof source, "sgc-condense -r %g of %s", cmd.cfg.ratio, g.source ? g.source : cmd.graph);
    res.condensed.source = strdup(source);
    if (!to_stdout && ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    int rc = ns_graph_write(&w, &res.condensed, "sgc-condense " NS_VERSION, &err);
    if (ns_output_finish(&out, &w, rc, &err) < 0) ns_die_err(&err);
    if (!to_stdout || !cmd.quiet) report(to_stdout ? stderr : stdout, &cmd, &g, &res);

    ns_graph_free(&res.condensed);
    ns_graph_free(&g);
    if (!to_stdout) ns_close_stdout();
    return 0;
}
