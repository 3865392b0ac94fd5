// net-prune: structural pruning (PruningBench's criteria on DepGraph-style
// channel groups): scores every channel of every prunable group, removes the
// lowest to a MACs speed-up or a channel ratio in progressive steps, and
// writes a physically smaller model stream.
//
//   net-prune --model MODEL -o OUT (--speed-up X | --ratio R) [options] [DATA]
//
// Shapes: per group score vectors (prune.h); DATA samples (n, input numel).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "cli/cli.h"
#include "nn/batches.h"
#include "prune/prune.h"

struct cmdline {
    const char *model, *output, *criterion;
    double speed_up, ratio, protect;
    int64_t samples;
    int local, round_to, steps, batch, seed, dry_run, json, quiet;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"model", 'm', NS_OPT_STR, &cmd->model, "MODEL", "the model to prune (required)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "the pruned model (required unless --dry-run)", 0, 0},
        {"criterion", 'c', NS_OPT_STR, &cmd->criterion, "NAME", "random, l1, l2 (default), bn-scale, fpgm, lamp, taylor, obd-hessian, obd-c, hrank, thinet or cp", 0, 0},
        {"speed-up", 'x', NS_OPT_DOUBLE, &cmd->speed_up, "X", "target base MACs / pruned MACs (> 1)", 1, 1e6},
        {"ratio", 'r', NS_OPT_DOUBLE, &cmd->ratio, "R", "target fraction of the prunable channels removed", 0, 1},
        {"local", 'l', NS_OPT_FLAG, &cmd->local, NULL, "the same ratio in every group (default: one global threshold)", 0, 0},
        {"protect", 'p', NS_OPT_DOUBLE, &cmd->protect, "F", "each group keeps at least this fraction of its channels (default 0.1)", 0, 1},
        {"round-to", 0, NS_OPT_INT, &cmd->round_to, "N", "kept channels a multiple of N (default 1)", 1, 1 << 20},
        {"steps", 's', NS_OPT_INT, &cmd->steps, "N", "progressive steps, importance recomputed before each (default 1)", 1, 100000},
        {"samples", 'n', NS_OPT_I64, &cmd->samples, "N", "samples of DATA the data criteria read (default 256)", 1, 1e9},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "samples per forward pass (default 64)", 1, 1 << 16},
        {"seed", 0, NS_OPT_INT, &cmd->seed, "N", "random scores and obd-c's sampled labels (default 0)", 0, 2147483647},
        {"dry-run", 0, NS_OPT_FLAG, &cmd->dry_run, NULL, "report what would be pruned; write nothing", 0, 0},
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "the report as one JSON object", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "--model MODEL -o OUT (--speed-up X | --ratio R) [options] [DATA]",
        "Structural pruning: remove the least important channels of every coupled\n"
        "channel group to a MACs speed-up or a channel ratio; write a smaller model.",
        "Groups come from the graph (residual streams, concat, flatten, grouped and\n"
        "depthwise convs); the classifier's outputs are never pruned. taylor,\n"
        "obd-hessian, obd-c, hrank, thinet and cp read labelled DATA (the first\n"
        "--samples); thinet and cp also refit the layers reading pruned groups.\n"
        "The report (stdout) is tab-separated: criterion, mode, target, steps, macs\n"
        "(base, pruned), params (base, pruned), speed_up, importance_seconds, then a\n"
        "line per prunable group: 'group', id, made at, channels, kept, score min,\n"
        "mean and max (first step).",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!cmd->model) ns_die_usage("--model is required");
    if (!cmd->output && !cmd->dry_run) ns_die_usage("--output is required (or --dry-run)");
    if (cmd->output && strcmp(cmd->output, "-") == 0) ns_die_usage("--output needs a file: standard output carries the report");
    if ((cmd->speed_up > 0) == (cmd->ratio > 0)) ns_die_usage("give exactly one of --speed-up and --ratio");
    if (cmd->speed_up > 0 && cmd->speed_up <= 1) ns_die_usage("--speed-up must be above 1 (%g)", cmd->speed_up);
    if (cmd->ratio >= 1) ns_die_usage("--ratio must be below 1 (%g)", cmd->ratio);
}

// The first max samples of a labelled stream, normalised as the model expects.
static int load_samples(const char *path, const ns_model *m, int64_t max, int64_t batch, float **x, int32_t **y,
                        int64_t *n, ns_err *err) {
    ns_batches b;
    if (ns_batches_open(&b, path, m, batch, err) < 0) return -1;
    int64_t numel = m->nodes[0].numel, have = 0;
    *x = malloc((size_t)(max * numel) * sizeof **x);
    *y = malloc((size_t)max * sizeof **y);
    int got = 0, rc = *x && *y ? 0 : ns_errf(err, "out of memory (%lld samples)", (long long)max);
    while (rc == 0 && have < max && (got = ns_batches_next(&b, err)) == 1) {
        int64_t take = b.n < max - have ? b.n : max - have;
        memcpy(*x + have * numel, b.x, (size_t)(take * numel) * sizeof **x);
        for (int64_t i = 0; i < take; i++) {
            if (b.y[i] < 0) { rc = ns_errf(err, "%s: sample %lld has no label", path, (long long)(have + i)); break; }
            (*y)[have + i] = b.y[i];
        }
        have += take;
    }
    if (got < 0) rc = -1;
    if (rc == 0 && have == 0) rc = ns_errf(err, "%s: no samples", path);
    ns_batches_close(&b);
    *n = have;
    return rc;
}

static const char *made_at(const ns_chgroup *gr, const ns_model *m) {
    for (int k = 0; k < gr->nmembers; k++)
        if (gr->members[k].role == NS_CH_OUT) return m->nodes[gr->members[k].node].name;
    return gr->nmembers ? m->nodes[gr->members[0].node].name : "-";
}

typedef struct group_line {
    int id;
    char made[NS_NODE_NAME_MAX];
    int64_t channels, kept;
    double smin, smean, smax;
} group_line;

typedef struct result {
    int64_t macs0, macs1, params0, params1;
    double importance_seconds, seconds;
    int ngroup_lines;
    group_line *lines;
} result;

static void report(const struct cmdline *cmd, const result *r, const char *target) {
    double speed = (double)r->macs0 / (double)r->macs1;
    const char *mode = cmd->local ? "local" : "global";
    if (cmd->json) {
        printf("{\"criterion\":");
        ns_json_string(stdout, cmd->criterion, strlen(cmd->criterion));
        printf(",\"mode\":\"%s\",\"target\":", mode);
        ns_json_string(stdout, target, strlen(target));
        printf(",\"steps\":%d,\"protect\":", cmd->steps);
        ns_json_number(stdout, cmd->protect);
        printf(",\"base_macs\":%lld,\"pruned_macs\":%lld,\"base_params\":%lld,\"pruned_params\":%lld,\"speed_up\":",
               (long long)r->macs0, (long long)r->macs1, (long long)r->params0, (long long)r->params1);
        ns_json_number(stdout, speed);
        printf(",\"params_kept\":");
        ns_json_number(stdout, (double)r->params1 / (double)r->params0);
        printf(",\"importance_seconds\":");
        ns_json_number(stdout, r->importance_seconds);
        printf(",\"seconds\":");
        ns_json_number(stdout, r->seconds);
        printf(",\"dry_run\":%s,\"groups\":[", cmd->dry_run ? "true" : "false");
        for (int i = 0; i < r->ngroup_lines; i++) {
            const group_line *l = &r->lines[i];
            printf("%s{\"id\":%d,\"made_at\":", i ? "," : "", l->id);
            ns_json_string(stdout, l->made, strlen(l->made));
            printf(",\"channels\":%lld,\"kept\":%lld,\"score_min\":", (long long)l->channels, (long long)l->kept);
            ns_json_number(stdout, l->smin);
            printf(",\"score_mean\":");
            ns_json_number(stdout, l->smean);
            printf(",\"score_max\":");
            ns_json_number(stdout, l->smax);
            printf("}");
        }
        printf("]}\n");
        return;
    }
    printf("criterion\t%s\nmode\t%s\ntarget\t%s\nsteps\t%d\n", cmd->criterion, mode, target, cmd->steps);
    printf("macs\t%lld\t%lld\nparams\t%lld\t%lld\n", (long long)r->macs0, (long long)r->macs1, (long long)r->params0,
           (long long)r->params1);
    printf("speed_up\t%.4f\nparams_kept\t%.4f\nimportance_seconds\t%.3f\n", speed,
           (double)r->params1 / (double)r->params0, r->importance_seconds);
    for (int i = 0; i < r->ngroup_lines; i++) {
        const group_line *l = &r->lines[i];
        printf("group\t%d\t%s\t%lld\t%lld\t%.4g\t%.4g\t%.4g\n", l->id, l->made, (long long)l->channels,
               (long long)l->kept, l->smin, l->smean, l->smax);
    }
}

// The per-group lines from the first step's scores.
static group_line *score_lines(const ns_chgroups *g, const ns_model *m, const ns_prune_scores *s, int *n) {
    group_line *lines = calloc((size_t)(g->ngroups ? g->ngroups : 1), sizeof *lines);
    if (!lines) ns_die("out of memory");
    *n = 0;
    for (int p = 0; p < g->ngroups; p++) {
        if (!s->score[p]) continue;
        group_line *l = &lines[(*n)++];
        l->id = p;
        snprintf(l->made, sizeof l->made, "%s", made_at(&g->groups[p], m));
        l->channels = l->kept = g->groups[p].size;
        l->smin = l->smax = s->score[p][0];
        for (int64_t k = 0; k < g->groups[p].size; k++) {
            double v = s->score[p][k];
            l->smean += v / (double)g->groups[p].size;
            l->smin = v < l->smin ? v : l->smin;
            l->smax = v > l->smax ? v : l->smax;
        }
    }
    return lines;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.criterion = "l2", .protect = 0.1, .round_to = 1, .steps = 1, .samples = 256, .batch = 64};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    int crit = ns_prune_criterion_from_name(cmd.criterion);
    if (crit < 0) ns_die_usage("unknown --criterion (%s)", cmd.criterion);
    const char *data = first < argc ? argv[first] : NULL;
    if (ns_prune_criteria[crit].needs_data && !data)
        ns_die_usage("criterion %s needs labelled DATA", cmd.criterion);
    char target[64];
    if (cmd.speed_up > 0) snprintf(target, sizeof target, "speed-up %g", cmd.speed_up);
    else snprintf(target, sizeof target, "ratio %g", cmd.ratio);
    double t0 = ns_now();
    ns_err err;
    ns_model m;
    if (ns_model_load(&m, cmd.model, &err) < 0) ns_die_err(&err);
    ns_chgroups g;
    if (ns_chgroups_build(&g, &m, &err) < 0) ns_die("%s: %s", cmd.model, err.msg);
    int prunable = 0;
    unsigned fixed = 0, noselect = 0;
    for (int p = 0; p < g.ngroups; p++) {
        prunable += ns_prune_group_prunable(&g.groups[p]);
        fixed |= g.groups[p].fixed;
        noselect |= g.groups[p].noselect;
    }
    if (!prunable) {
        char why[160];
        ns_chgroups_fixed_reason(fixed, why, sizeof why);
        ns_die("%s: no channel group can be pruned (fixed: %s%s%s)", cmd.model, why[0] ? why : "none",
               noselect & NS_CHSEL_PARTIAL ? "; part of a grouped conv's input or output" : "",
               noselect & (NS_CHSEL_HEADS | NS_CHSEL_ATTN) ? "; attention heads or width" : "");
    }
    ns_prune_data pd = {NULL, NULL, 0, cmd.batch};
    float *x = NULL;
    int32_t *y = NULL;
    if (data && ns_prune_criteria[crit].needs_data) {
        if (load_samples(data, &m, cmd.samples, cmd.batch, &x, &y, &pd.n, &err) < 0) ns_die_err(&err);
        pd.x = x;
        pd.y = y;
    }
    ns_output output;
    if (!cmd.dry_run && ns_output_open(&output, cmd.output, &err) < 0) ns_die_err(&err);
    int failed = 0;
    ns_prune_opts po = {cmd.local, cmd.protect, cmd.round_to, cmd.speed_up, cmd.ratio, cmd.steps};
    ns_prune_limits lim = {0};
    result r = {0};
    int64_t **keep = calloc((size_t)g.ngroups, sizeof *keep), *nkeep = calloc((size_t)g.ngroups, sizeof *nkeep);
    if (!keep || !nkeep) ns_die("out of memory");
    for (int step = 1; !failed && step <= cmd.steps; step++) {
        ns_prune_scores sc;
        double ti = ns_now();
        if (ns_prune_importance(&sc, &m, &g, crit, &pd, (uint64_t)cmd.seed + (uint64_t)step, &err) < 0) {
            failed = 1;
            break;
        }
        r.importance_seconds += ns_now() - ti;
        if (step == 1) {
            r.lines = score_lines(&g, &m, &sc, &r.ngroup_lines);
            if (r.ngroup_lines == 0) {
                failed = ns_errf(&err, "%s: criterion %s scores no group (no parameter it reads)", cmd.model, cmd.criterion) < 0;
            } else if (ns_prune_limits_init(&lim, &m, &g, &sc, &po, &err) < 0) {
                failed = 1;
            } else {
                r.macs0 = lim.base_macs;
                r.params0 = lim.base_params;
                double max_ratio;
                int64_t max_macs = ns_prune_limits_max(&lim, &m, &g, &sc, NULL, &max_ratio);
                if (cmd.speed_up > 0 && (double)lim.base_macs / (double)max_macs < cmd.speed_up)
                    failed = ns_errf(&err, "--speed-up %g cannot be reached: at most %.3fx with --protect %g", cmd.speed_up,
                                     (double)lim.base_macs / (double)max_macs, cmd.protect) < 0;
                if (cmd.ratio > 0 && max_ratio + 1e-12 < cmd.ratio)
                    failed = ns_errf(&err, "--ratio %g cannot be reached: at most %.4f with --protect %g", cmd.ratio,
                                     max_ratio, cmd.protect) < 0;
            }
        }
        if (!failed) failed = ns_prune_choose(&m, &g, &sc, &lim, &po, step, keep, nkeep, &err) < 0;
        if (!failed)
            failed = ns_prune_reconstruct(&m, &g, crit, &pd, (const int64_t *const *)keep, nkeep,
                                          (uint64_t)cmd.seed + (uint64_t)step, &err) < 0;
        if (!failed) failed = ns_chgroups_select_many(&m, &g, (const int64_t *const *)keep, nkeep, &err) < 0;
        for (int p = 0; p < g.ngroups; p++) { free(keep[p]); keep[p] = NULL; nkeep[p] = 0; }
        ns_prune_scores_free(&sc);
        if (!failed && !cmd.quiet && (cmd.steps > 1 || ns_prune_criteria[crit].needs_data))
            ns_warn("step %d/%d: %.2fx MACs, importance %.2fs", step, cmd.steps,
                    (double)r.macs0 / (double)ns_model_macs(&m), ns_now() - ti);
    }
    if (!failed) {
        r.macs1 = ns_model_macs(&m);
        r.params1 = ns_model_param_count(&m, 1);
        for (int i = 0; i < r.ngroup_lines; i++) r.lines[i].kept = g.groups[r.lines[i].id].size;
    }
    if (!failed && !cmd.dry_run) {
        size_t len = strlen(m.arch); // say in net-info's arch line that it was pruned
        snprintf(m.arch + len, sizeof m.arch - len, "%sprune %s %s", len ? ", " : "", cmd.criterion, target);
        ns_writer w;
        ns_writer_init(&w, output.f);
        ns_map meta;
        ns_map_init(&meta);
        ns_map_str(&meta, "general.producer", "net-prune " NS_VERSION);
        ns_map_str(&meta, "prune.criterion", cmd.criterion);
        ns_map_str(&meta, "prune.mode", cmd.local ? "local" : "global");
        ns_map_str(&meta, "prune.target", target);
        ns_map_i64(&meta, "prune.steps", cmd.steps);
        ns_map_f64(&meta, "prune.protect", cmd.protect);
        ns_map_i64(&meta, "prune.macs_before", r.macs0);
        ns_map_i64(&meta, "prune.macs_after", r.macs1);
        ns_map_i64(&meta, "prune.params_before", r.params0);
        ns_map_i64(&meta, "prune.params_after", r.params1);
        failed = ns_model_write(&m, &w, &meta, 0, &err) < 0;
        ns_map_free(&meta);
        ns_writer_free(&w);
    }
    if (failed) {
        if (!cmd.dry_run) ns_output_abort(&output);
        ns_die_err(&err);
    }
    if (!cmd.dry_run && ns_output_commit(&output, &err) < 0) ns_die_err(&err);
    r.seconds = ns_now() - t0;
    report(&cmd, &r, target);
    free(r.lines);
    free(keep);
    free(nkeep);
    free(x);
    free(y);
    ns_prune_limits_free(&lim);
    ns_chgroups_free(&g);
    ns_model_free(&m);
    if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) ns_die("writing output failed");
    return 0;
}
