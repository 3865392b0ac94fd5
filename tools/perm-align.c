// perm-align: merges N models of one architecture into one, by matching their
// channels (weight matching, activation matching, ZipIt!, MuDSC), then resets
// the batch norms on data. Task heads are concatenated, so the merged model
// predicts the union of the models' classes.
//
//   perm-align -o OUT --data DATA [options] MODEL MODEL...
//
// Shapes: per channel group, similarity matrices (N*Om, N*Om); see lib/merge/merge.h.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/chgroups.h"
#include "cli/cli.h"
#include "base/json.h"
#include "merge/merge.h"

struct cmdline {
    const char *output, *data, *method, *heads, *partial;
    double alpha, lambda, zip_a, zip_b;
    int64_t samples, reset_samples;
    int batch, sweeps, patience, seed, no_reset, json, quiet;
};

// The variants: solver, C_act initialisation, iteration, default alpha.
typedef struct method {
    const char *name;
    ns_merge_solver solver;
    int act_init, iterate;
    double alpha;
    const char *what;
} method;

static const method methods[] = {
    {"average", NS_MERGE_AVERAGE, 0, 0, 0, "plain weight averaging, no matching"},
    {"weight", NS_MERGE_ALIGN, 0, 1, 1, "weight matching (Git Re-Basin)"},
    {"act", NS_MERGE_ALIGN, 1, 0, 0, "activation matching (one LSA per group)"},
    {"zip", NS_MERGE_ZIP, 1, 0, 0, "ZipIt! on activations"},
    {"mudsc-align", NS_MERGE_ALIGN, 1, 1, 0.5, "MuDSC, alignment"},
    {"mudsc-zip", NS_MERGE_ZIP, 1, 1, 0.5, "MuDSC, zip"},
    {NULL, 0, 0, 0, 0, NULL},
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "the merged model (required)", 0, 0},
        {"data", 'd', NS_OPT_STR, &cmd->data, "FILE", "labelled data stream for the activation statistics and the batch-norm reset (a file: read twice)", 0, 0},
        {"method", 'M', NS_OPT_STR, &cmd->method, "NAME", "average, weight, act, zip, mudsc-align or mudsc-zip (default)", 0, 0},
        {"alpha", 'a', NS_OPT_DOUBLE, &cmd->alpha, "A", "mudsc: C = A*C_weight + (1-A)*C_act (default 0.5)", 0, 1},
        {"samples", 'n', NS_OPT_I64, &cmd->samples, "N", "samples for the activation statistics (default all)", 1, 1e15},
        {"reset-samples", 0, NS_OPT_I64, &cmd->reset_samples, "N", "samples for the batch-norm reset (default all)", 1, 1e15},
        {"no-reset", 0, NS_OPT_FLAG, &cmd->no_reset, NULL, "keep the merged running statistics (no data pass)", 0, 0},
        {"heads", 0, NS_OPT_STR, &cmd->heads, "MODE", "concat (union of classes), mean, or auto (default: mean when all models have the same classes)", 0, 0},
        {"partial", 0, NS_OPT_STR, &cmd->partial, "NODE", "ZipIt!'s partial zip: merge up to NODE, keep each model's layers after it (their outputs concatenated)", 0, 0},
        {"lambda", 'l', NS_OPT_DOUBLE, &cmd->lambda, "T", "two models: weights (1-T, T) instead of the mean (interpolation)", 0, 1},
        {"sweeps", 0, NS_OPT_INT, &cmd->sweeps, "N", "most coordinate-descent sweeps (default 100)", 1, 100000},
        {"patience", 0, NS_OPT_INT, &cmd->patience, "N", "sweeps without improvement before stopping (default 5)", 1, 1000},
        {"zip-a", 0, NS_OPT_DOUBLE, &cmd->zip_a, "A", "zip: a merged unit's similarities are min * A (default 0.5)", -1, 1},
        {"zip-b", 0, NS_OPT_DOUBLE, &cmd->zip_b, "B", "zip: each model may merge B*(O-Om)/N of its own pairs (default 1)", 0, 1},
        {"seed", 's', NS_OPT_INT, &cmd->seed, "N", "order of the groups in each sweep (default 0)", 0, 2147483647},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "samples per forward pass (default 64)", 2, 1 << 16},
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "the report as one JSON object", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "-o OUT --data DATA [options] MODEL MODEL...",
        "Merge models of one architecture by matching their channels (weight or\n"
        "activation matching, ZipIt!, MuDSC), with task heads concatenated.",
        "Channel groups (residual streams, BN, flatten, concat; a transformer's stream,\n"
        "MLP units and attention heads, GroupNorm groups) come from the graph; heads\n"
        "and GroupNorm groups are matched as whole blocks, dead units by their weights.\n"
        "Methods: average (no matching), weight (Git Re-Basin: coordinate descent on\n"
        "weight correlations), act (one LSA on activation correlations), zip (ZipIt!\n"
        "greedy zip on activations), mudsc-align and mudsc-zip (start from the\n"
        "activations, then coordinate descent on alpha*C_w + (1-alpha)*C_act).\n"
        "Alignment matches every model to the first. --partial NODE (ZipIt!) merges\n"
        "up to NODE and keeps each model's later layers (--partial input: the\n"
        "ensemble). The report (stdout) is\n"
        "tab-separated: method, alpha, models, samples, sweeps, objective, seconds,\n"
        "then a line per channel group: 'group', id, channels, dead units, score,\n"
        "where it is made, where its features were read.",
        2, NS_MERGE_MAX_MODELS,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!cmd->output) ns_die_usage("--output is required");
    if (strcmp(cmd->output, "-") == 0) ns_die_usage("--output needs a file: standard output carries the report");
}

// Sets what the method and options say; returns the method.
static const method *configure(struct cmdline *cmd, int n, ns_merge_opts *o) {
    const method *mt = methods;
    while (mt->name && strcmp(mt->name, cmd->method) != 0) mt++;
    if (!mt->name) ns_die_usage("unknown --method (%s)", cmd->method);
    int is_mudsc = strncmp(mt->name, "mudsc", 5) == 0;
    if (!isnan(cmd->alpha) && !is_mudsc) ns_die_usage("--alpha is for the mudsc methods (%s)", mt->name);
    if (!isnan(cmd->lambda) && n != 2) ns_die_usage("--lambda needs exactly two models (%d)", n);
    if (strcmp(cmd->heads, "auto") && strcmp(cmd->heads, "concat") && strcmp(cmd->heads, "mean"))
        ns_die_usage("--heads must be auto, concat or mean (%s)", cmd->heads);
    if (cmd->partial && strcmp(cmd->heads, "mean") == 0)
        ns_die_usage("--partial keeps each model's outputs: it cannot go with --heads mean");
    if (cmd->partial && !isnan(cmd->lambda)) ns_die_usage("--partial cannot go with --lambda");
    int needs_act = mt->act_init && !(is_mudsc && cmd->alpha == 1.0);
    if (!cmd->data && (needs_act || !cmd->no_reset))
        ns_die_usage("--data is required (%s)", needs_act ? "activation statistics" : "batch-norm reset; or --no-reset");
    if (cmd->data && strcmp(cmd->data, "-") == 0) ns_die_usage("--data needs a file: it is read twice");
    *o = (ns_merge_opts){mt->solver, isnan(cmd->alpha) ? mt->alpha : cmd->alpha, needs_act, mt->iterate,
                         cmd->sweeps, cmd->patience, cmd->zip_a, cmd->zip_b, (uint64_t)cmd->seed, ns_stderr_reporter(cmd->quiet)};
    return mt;
}

static int same_classes(ns_model *const *models, int n) {
    for (int i = 1; i < n; i++) {
        const ns_model *a = models[0], *b = models[i];
        if (a->nodes[a->output].numel != b->nodes[b->output].numel || a->nlabels != b->nlabels) return 0;
        for (size_t k = 0; k < a->nlabels; k++)
            if (strcmp(a->labels[k], b->labels[k])) return 0;
    }
    return 1;
}

// A node that makes group p's channels (first output member), for the report.
static const char *made_at(const ns_chgroup *gr, const ns_model *m) {
    for (int k = 0; k < gr->nmembers; k++)
        if (gr->members[k].role == NS_CH_OUT) return m->nodes[gr->members[k].node].name;
    return "-";
}

static void print_report(const struct cmdline *cmd, const method *mt, const ns_merge_opts *o, int n,
                         int64_t samples, const ns_chgroups *g, const ns_model *m,
                         const ns_merge_report *rep, double seconds) {
    if (cmd->json) {
        printf("{\"method\":\"%s\",\"alpha\":", mt->name);
        ns_json_number(stdout, o->alpha);
        printf(",\"models\":%d,\"samples\":%lld,\"sweeps\":%d,\"objective\":", n, (long long)samples, rep->sweeps);
        ns_json_number(stdout, rep->objective);
        printf(",\"seconds\":");
        ns_json_number(stdout, seconds);
        printf(",\"groups\":[");
        int first = 1;
        for (int p = 0; p < g->ngroups; p++) {
            const ns_chgroup *gr = &g->groups[p];
            if (gr->fixed) continue;
            const char *made = made_at(gr, m), *feat = gr->act_node >= 0 ? m->nodes[gr->act_node].name : "";
            printf("%s{\"group\":%d,\"channels\":%lld,\"dead\":%lld,\"score\":", first ? "" : ",", p,
                   (long long)gr->size, (long long)rep->dead[p]);
            ns_json_number(stdout, rep->score[p]);
            printf(",\"made\":");
            ns_json_string(stdout, made, strlen(made));
            printf(",\"features\":");
            ns_json_string(stdout, feat, strlen(feat));
            printf("}");
            first = 0;
        }
        printf("]}\n");
        return;
    }
    printf("method\t%s\nalpha\t%g\nmodels\t%d\nsamples\t%lld\nsweeps\t%d\nobjective\t%.6f\nseconds\t%.2f\n",
           mt->name, o->alpha, n, (long long)samples, rep->sweeps, rep->objective, seconds);
    for (int p = 0; p < g->ngroups; p++) {
        const ns_chgroup *gr = &g->groups[p];
        if (gr->fixed) continue;
        printf("group\t%d\t%lld\t%lld\t%.6f\t%s\t%s\n", p, (long long)gr->size, (long long)rep->dead[p],
               rep->score[p], made_at(gr, m), gr->act_node >= 0 ? m->nodes[gr->act_node].name : "-");
    }
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.method = "mudsc-zip", .heads = "auto", .alpha = NAN, .lambda = NAN, .zip_a = 0.5,
                          .zip_b = 1, .batch = 64, .sweeps = 100, .patience = 5};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    int n = argc - first;
    ns_merge_opts opts;
    const method *mt = configure(&cmd, n, &opts);
    double t0 = ns_now();
    ns_err err;
    ns_model models[NS_MERGE_MAX_MODELS], out;
    ns_model *mp[NS_MERGE_MAX_MODELS];
    const char *names[NS_MERGE_MAX_MODELS];
    for (int i = 0; i < n; i++) {
        names[i] = argv[first + i];
        mp[i] = &models[i];
        if (ns_model_load(&models[i], names[i], &err) < 0) ns_die_err(&err);
    }
    int concat = strcmp(cmd.heads, "concat") == 0 || (strcmp(cmd.heads, "auto") == 0 && !same_classes(mp, n)) ||
                 cmd.partial; // the kept layers of each model give its own outputs
    if (!concat && !same_classes(mp, n))
        ns_die("--heads mean needs models with the same classes (%s and %s differ)", names[0], names[1]);
    if (ns_merge_check_compatible(mp, names, n, concat, &err) < 0) ns_die_err(&err);
    ns_chgroups g;
    if (ns_chgroups_build(&g, &models[0], &err) < 0) ns_die("%s: %s", names[0], err.msg);
    if (ns_merge_check_groups(&g, &models[0], &err) < 0) ns_die("%s: %s", names[0], err.msg);
    // Open the output now, so a bad path fails before the work.
    ns_output output;
    if (ns_output_open(&output, cmd.output, &err) < 0) ns_die_err(&err);
    ns_merge_state st;
    if (ns_merge_state_init(&st, &g, n, &err) < 0) ns_die_err(&err);
    ns_merge_report rep = {0};
    float **act = calloc(g.ngroups > 0 ? (size_t)g.ngroups : 1, sizeof *act);
    unsigned char **dead_units = calloc(g.ngroups > 0 ? (size_t)g.ngroups : 1, sizeof *dead_units);
    rep.dead = malloc((size_t)(g.ngroups ? g.ngroups : 1) * sizeof *rep.dead);
    if (!act || !dead_units || !rep.dead) ns_die("out of memory");
    for (int p = 0; p < g.ngroups; p++) rep.dead[p] = -1;
    int64_t seen = 0;
    int failed = 0;
    if (opts.act_init) {
        double ts = ns_now();
        failed = ns_merge_act_corr(mp, n, &g, cmd.data, cmd.samples, cmd.batch, ns_stderr_reporter(cmd.quiet), act,
                                   dead_units, rep.dead, &seen, &err) < 0;
        rep.seconds_stats = ns_now() - ts;
    }
    if (!failed) failed = ns_merge_match(mp, &st, act, dead_units, &opts, &rep, &err) < 0;
    // The merged model: model 0's structure (loaded again), heads widened.
    if (!failed) failed = ns_model_load(&out, names[0], &err) < 0;
    else ns_model_init(&out);
    if (!failed && concat) failed = ns_merge_concat_head(&out, mp, n, &st, &err) < 0;
    double lambda[2] = {1 - cmd.lambda, cmd.lambda};
    if (!failed) failed = ns_merge_weights(mp, &st, isnan(cmd.lambda) ? NULL : lambda, &out, &err) < 0;
    if (!failed && cmd.partial) {
        int split = ns_model_find_node(&out, cmd.partial);
        ns_model part;
        if (split < 0) {
            ns_errf(&err, "--partial: no node %s in %s", cmd.partial, names[0]);
            failed = 1;
        } else if (ns_merge_partial(&part, &out, mp, n, &st, split, &err) < 0) {
            ns_err_prefix(&err, "--partial %s", cmd.partial);
            failed = 1;
        } else {
            ns_model_free(&out);
            out = part;
        }
    }
    if (!failed && !cmd.no_reset)
        failed = ns_merge_reset_bn(&out, cmd.data, cmd.reset_samples, cmd.batch, ns_stderr_reporter(cmd.quiet),
                                   &err) < 0;
    ns_writer w;
    ns_writer_init(&w, output.f);
    if (!failed) {
        ns_map meta;
        ns_map_init(&meta);
        ns_map_str(&meta, "general.producer", "perm-align " NS_VERSION);
        ns_map_str(&meta, "merge.method", mt->name);
        ns_map_f64(&meta, "merge.alpha", opts.alpha);
        ns_map_strs(&meta, "merge.models", names, (size_t)n);
        ns_map_bool(&meta, "merge.bn_reset", !cmd.no_reset);
        if (cmd.partial) ns_map_str(&meta, "merge.partial", cmd.partial);
        failed = ns_model_write(&out, &w, &meta, 0, &err) < 0;
        ns_map_free(&meta);
    }
    if (ns_output_finish(&output, &w, failed, &err) < 0) ns_die_err(&err);
    print_report(&cmd, mt, &opts, n, seen, &g, &models[0], &rep, ns_now() - t0);
    for (int p = 0; p < g.ngroups; p++) {
        free(act[p]);
        free(dead_units[p]);
    }
    free(act);
    free(dead_units);
    ns_merge_report_free(&rep);
    ns_merge_state_free(&st);
    ns_chgroups_free(&g);
    ns_model_free(&out);
    for (int i = 0; i < n; i++) ns_model_free(&models[i]);
    ns_close_stdout();
    return 0;
}
