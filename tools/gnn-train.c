// gnn-train: trains a GNN (GCN, SGC, MLP or GraphSAGE) for node classification
// on a graph stream and reports the test accuracy of the model that did best
// on the validation nodes. Progress (a line every N epochs: loss, val and test
// accuracy, epochs/s) on stderr; the result as TSV (or JSON) on stdout.
//
//   gnn-train [options] GRAPH                        train, select and test on GRAPH's split
//   gnn-train [options] --eval-graph ORIGINAL GRAPH  SimGC's protocol: train on every labelled
//                                                    node of GRAPH (a condensed graph), select
//                                                    and test on ORIGINAL's val/test nodes
//
// The models and their maths are in lib/graph/gnn.h; defaults are GCond's evaluation
// protocol (which SimGC's code reuses outside Cora): Adam lr 0.01, weight decay
// 5e-4, hidden 256, dropout 0.5, 600 epochs with the lr cut tenfold after 300.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "graph/gnn.h"
#include "graph/graphdata.h"
#include "base/json.h"
#include "stream/tns.h"

struct cmdline {
    const char *model, *act, *features, *eval_graph, *output, *graph;
    int epochs, hops, lr_drop, eval_every, progress, row_norm, json, quiet;
    int64_t hidden, seed;
    double lr, wd, dropout;
    ns_gnn_kind kind;
    ns_gnn_xformat xformat;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const ns_opt opts[] = {
        {"model", 'm', NS_OPT_STR, &cmd->model, "NAME", "gcn (default), sgc, mlp or sage", 0, 0},
        {"epochs", 'e', NS_OPT_INT, &cmd->epochs, "N", "epochs of full-batch training (default 600)", 1, 1e7},
        {"lr", 0, NS_OPT_DOUBLE, &cmd->lr, "LR", "Adam's learning rate (default 0.01)", 1e-12, 1e3},
        {"wd", 0, NS_OPT_DOUBLE, &cmd->wd, "WD", "weight decay, L2 as torch's Adam (default 5e-4)", 0, 1e3},
        {"lr-drop", 0, NS_OPT_INT, &cmd->lr_drop, "E", "after epoch E: lr x 0.1 and a fresh Adam (default: half the epochs; 0: never)", 0, 1e7},
        {"hidden", 0, NS_OPT_I64, &cmd->hidden, "H", "hidden units (default 256)", 1, 1 << 20},
        {"dropout", 0, NS_OPT_DOUBLE, &cmd->dropout, "P", "dropout after the hidden layer (default 0.5)", 0, 0.99},
        {"act", 0, NS_OPT_STR, &cmd->act, "NAME", "the hidden layer's activation: relu (default) or none", 0, 0},
        {"hops", 'K', NS_OPT_INT, &cmd->hops, "K", "sgc: propagation steps (default 2)", 0, 64},
        {"row-norm", 0, NS_OPT_FLAG, &cmd->row_norm, NULL, "divide each node's features by their sum first", 0, 0},
        {"features", 0, NS_OPT_STR, &cmd->features, "HOW", "how the first layer reads the features: auto (default), dense or sparse", 0, 0},
        {"eval-graph", 0, NS_OPT_STR, &cmd->eval_graph, "FILE", "train on all labelled nodes of GRAPH, select and test on FILE's split", 0, 0},
        {"eval-every", 0, NS_OPT_INT, &cmd->eval_every, "N", "evaluate (and select) every N epochs (default 1)", 1, 1e7},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed for initialisation and dropout (default 0)", 0, 9007199254740992.0},
        {"progress", 0, NS_OPT_INT, &cmd->progress, "N", "a progress line every N epochs (default 50; 0: none)", 0, 1e7},
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "the result as one JSON object", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write the selected model's weights to FILE (atomically)", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] GRAPH",
        "Train a graph neural network (GCN, SGC, MLP or GraphSAGE) for node\n"
        "classification on a graph stream, select it on the validation nodes and\n"
        "report its test accuracy.",
        "GRAPH is a graph stream (graph-import) with features, labels and a split.\n"
        "The result goes to standard output as key<TAB>value lines. With\n"
        "--eval-graph, GRAPH is a condensed graph whose labelled nodes all train.",
        1, 1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->graph = argv[first];
    ns_err err;
    if (ns_gnn_kind_parse(cmd->model, &cmd->kind, &err) < 0) ns_die_usage("--model: %s", err.msg);
    if (strcmp(cmd->act, "relu") != 0 && strcmp(cmd->act, "none") != 0)
        ns_die_usage("--act must be relu or none (%s)", cmd->act);
    if (strcmp(cmd->features, "auto") == 0) cmd->xformat = NS_GNN_X_AUTO;
    else if (strcmp(cmd->features, "dense") == 0) cmd->xformat = NS_GNN_X_DENSE;
    else if (strcmp(cmd->features, "sparse") == 0) cmd->xformat = NS_GNN_X_SPARSE;
    else ns_die_usage("--features must be auto, dense or sparse (%s)", cmd->features);
    if (cmd->lr_drop < 0) cmd->lr_drop = cmd->epochs / 2;
    if (cmd->eval_graph && strcmp(cmd->eval_graph, cmd->graph) == 0 && strcmp(cmd->graph, "-") == 0)
        ns_die_usage("--eval-graph and GRAPH cannot both be standard input");
}

static void progress(const ns_gnn_epoch *e, void *arg) {
    const struct cmdline *cmd = arg;
    if (cmd->quiet || cmd->progress == 0 || (e->epoch % cmd->progress != 0 && e->epoch != e->epochs)) return;
    char val[16] = "-", test[16] = "-", best[32] = "-";
    if (!isnan(e->val_acc)) snprintf(val, sizeof val, "%.2f%%", 100 * e->val_acc);
    if (!isnan(e->test_acc)) snprintf(test, sizeof test, "%.2f%%", 100 * e->test_acc);
    if (e->best_epoch > 0) snprintf(best, sizeof best, "%.2f%% @%d", 100 * e->best_val_acc, e->best_epoch);
    double rate = e->seconds > 0 ? e->epoch / e->seconds : 0;
    ns_warn("epoch %d/%d  loss %.4f  val %s  test %s  best val %s  %.0f epochs/s  ETA %.0fs", e->epoch,
            e->epochs, e->loss, val, test, best, rate, rate > 0 ? (e->epochs - e->epoch) / rate : 0);
}

static void load(const char *path, ns_graph *g) {
    ns_err err;
    if (ns_graph_load(path, g, &err) < 0) ns_die_err(&err);
    if (g->feature_dim == 0) ns_die("%s: the graph has no node features (graph.features)", path);
    if (!g->labels) ns_die("%s: the graph has no labels (graph.labels)", path);
}

static void need_split(const char *path, const ns_graph *g, int split) {
    static const char *const what[NS_SPLIT_COUNT] = {"training", "validation", "test"};
    if (ns_graph_split_size(g, split) == 0)
        ns_die("%s: no %s nodes (graph.%s is %s)", path, what[split], ns_split_names[split],
               g->masks[split] ? "empty" : "missing");
}

// The selected model: a meta record "gnn" (the model's settings and scores) and
// its parameters, named as PyG's state_dict names them.
static int write_weights(ns_writer *w, const ns_gnn *m, const struct cmdline *cmd, const ns_graph *g,
                         const ns_gnn_result *res, ns_err *err) {
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "gnn-train " NS_VERSION);
    if (g->class_names) ns_map_strs(&meta, "general.labels", (const char *const *)g->class_names, (size_t)g->classes);
    ns_map_str(&meta, "gnn.model", ns_gnn_kind_name(m->cfg.kind));
    ns_map_i64(&meta, "gnn.features", m->D);
    ns_map_i64(&meta, "gnn.classes", m->C);
    if (m->nlayers == 2) {
        ns_map_i64(&meta, "gnn.hidden", m->cfg.hidden);
        ns_map_str(&meta, "gnn.activation", m->cfg.relu ? "relu" : "none");
        ns_map_f64(&meta, "gnn.dropout", m->cfg.dropout);
    } else {
        ns_map_i64(&meta, "gnn.hops", m->cfg.hops);
    }
    ns_map_bool(&meta, "gnn.row_norm", cmd->row_norm);
    ns_map_i64(&meta, "gnn.seed", cmd->seed);
    ns_map_i64(&meta, "gnn.epochs", res->epochs);
    ns_map_i64(&meta, "gnn.best_epoch", res->best_epoch);
    ns_map_f64(&meta, "gnn.val_acc", res->val_acc);
    ns_map_f64(&meta, "gnn.test_acc", res->test_acc);
    int rc = ns_write_meta(w, "gnn", &meta, err);
    ns_map_free(&meta);
    for (int i = 0; rc == 0 && i < m->nparams; i++) {
        const ns_gnn_tensor *p = &m->params[i];
        ns_tensor t = {.dtype = NS_F32, .ndim = p->ndim, .numel = p->numel, .data = m->value + p->offset};
        memcpy(t.shape, p->shape, sizeof p->shape);
        rc = ns_write_tensor(w, p->name, &t, NULL, err);
    }
    return rc;
}

static void report(FILE *f, const struct cmdline *cmd, const ns_gnn_result *res) {
    const char *model = ns_gnn_kind_name(cmd->kind);
    if (cmd->json) {
        fprintf(f, "{\"model\":\"%s\",\"seed\":%lld,\"epochs\":%d,\"best_epoch\":%d,\"train_nodes\":%lld,\"val_acc\":",
                model, (long long)cmd->seed, res->epochs, res->best_epoch, (long long)res->train_nodes);
        ns_json_number(f, res->val_acc);
        fprintf(f, ",\"test_acc\":");
        ns_json_number(f, res->test_acc);
        fprintf(f, ",\"train_seconds\":%.3f}\n", res->train_seconds);
        return;
    }
    fprintf(f, "model\t%s\nseed\t%lld\nepochs\t%d\nbest_epoch\t%d\ntrain_nodes\t%lld\n", model, (long long)cmd->seed,
            res->epochs, res->best_epoch, (long long)res->train_nodes);
    fprintf(f, "val_acc\t%.6g\ntest_acc\t%.6g\ntrain_seconds\t%.3f\n", res->val_acc, res->test_acc,
            res->train_seconds);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    ns_gnn_train_config tc;
    ns_gnn_train_config_default(&tc);
    ns_gnn_config mc;
    ns_gnn_config_default(&mc, NS_GNN_GCN);
    struct cmdline cmd = {.model = "gcn", .act = "relu", .features = "auto", .epochs = tc.epochs, .hops = mc.hops,
                          .lr_drop = -1, .eval_every = tc.eval_every, .progress = 50, .hidden = mc.hidden,
                          .lr = tc.lr, .wd = tc.weight_decay, .dropout = mc.dropout};
    parse_cmdline(argc, argv, &cmd);
    ns_err err;

    // Open the output first, so a bad path fails before training.
    int to_stdout = cmd.output && strcmp(cmd.output, "-") == 0; // weights there, the result to stderr
    ns_output out;
    if (cmd.output) {
        if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
        if (!to_stdout) ns_output_abort(&out);
    }

    ns_graph g = {0}, orig = {0};
    load(cmd.graph, &g);
    const ns_graph *eg = &g;       // where the model is selected and tested
    const char *epath = cmd.graph;
    if (cmd.eval_graph) {
        load(cmd.eval_graph, &orig);
        eg = &orig;
        epath = cmd.eval_graph;
        if (g.feature_dim != orig.feature_dim)
            ns_die("%s has %lld features per node, %s %lld", cmd.graph, (long long)g.feature_dim, cmd.eval_graph,
                   (long long)orig.feature_dim);
        if (g.classes > orig.classes)
            ns_die("%s has %lld classes, %s only %lld", cmd.graph, (long long)g.classes, cmd.eval_graph,
                   (long long)orig.classes);
    } else {
        need_split(cmd.graph, &g, NS_SPLIT_TRAIN);
    }
    need_split(epath, eg, NS_SPLIT_VAL);
    need_split(epath, eg, NS_SPLIT_TEST);

    mc = (ns_gnn_config){.kind = cmd.kind, .hidden = cmd.hidden, .hops = cmd.hops, .dropout = cmd.dropout,
                         .relu = strcmp(cmd.act, "relu") == 0};
    ns_gnn m;
    if (ns_gnn_create(&m, &mc, g.feature_dim, eg->classes, &err) < 0) ns_die_err(&err);
    ns_gnn_init(&m, (uint64_t)cmd.seed);
    ns_gnn_ctx train, eval;
    ns_gnn_ctx_config cc = {.xformat = cmd.xformat, .row_norm = cmd.row_norm, .grad = 1};
    if (ns_gnn_ctx_init(&train, &m, &g, &cc, &err) < 0) ns_die("%s: %s", cmd.graph, err.msg);
    ns_gnn_ctx *ectx = &train;
    if (cmd.eval_graph) {
        cc.grad = 0;
        if (ns_gnn_ctx_init(&eval, &m, &orig, &cc, &err) < 0) ns_die("%s: %s", cmd.eval_graph, err.msg);
        ectx = &eval;
    }

    tc.epochs = cmd.epochs;
    tc.lr = cmd.lr;
    tc.weight_decay = cmd.wd;
    tc.lr_drop = cmd.lr_drop;
    tc.eval_every = cmd.eval_every;
    tc.seed = (uint64_t)cmd.seed;
    tc.progress = progress;
    tc.progress_arg = &cmd;
    ns_gnn_result res;
    const uint8_t *train_mask = cmd.eval_graph ? NULL : g.masks[NS_SPLIT_TRAIN];
    if (ns_gnn_train(&m, &train, train_mask, ectx, eg->masks[NS_SPLIT_VAL], eg->masks[NS_SPLIT_TEST], &tc, &res,
                     &err) < 0)
        ns_die("%s: %s", cmd.graph, err.msg);

    if (cmd.output) {
        if (!to_stdout && ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
        ns_writer w;
        ns_writer_init(&w, out.f);
        int rc = write_weights(&w, &m, &cmd, eg, &res, &err);
        if (ns_output_finish(&out, &w, rc, &err) < 0) ns_die_err(&err);
    }
    report(to_stdout ? stderr : stdout, &cmd, &res);

    if (cmd.eval_graph) ns_gnn_ctx_free(&eval);
    ns_gnn_ctx_free(&train);
    ns_gnn_free(&m);
    ns_graph_free(&g);
    ns_graph_free(&orig);
    if (!to_stdout) ns_close_stdout();
    return 0;
}
