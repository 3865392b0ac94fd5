// net-train: trains a model on a labelled data stream and writes the trained
// model. Progress (a line per epoch: loss, accuracy, images/s, ETA) on stderr.
//
//   net-train --model MODEL [options] TRAIN [> trained.tns]
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "nn/batches.h"
#include "cli/cli.h"
#include "nn/dist.h"
#include "nn/trainer.h"
#include "prune/prune.h"

struct cmdline {
    const char *model, *val, *optim, *schedule, *warmup, *weights, *train_only, *checkpoint, *output,
        *log, *reg;
    int epochs, stop_after, batch, nesterov, crop_pad, flip, quiet, resume, no_decay_norm, sync_bn;
    double lr, momentum, wd, smoothing, reg_lambda, reg_delta;
    int64_t seed;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"model", 'm', NS_OPT_STR, &cmd->model, "MODEL", "the model to train (from net-init, or a checkpoint with --resume)", 0, 0},
        {"val", 0, NS_OPT_STR, &cmd->val, "DATA", "report accuracy on this stream after every epoch", 0, 0},
        {"epochs", 'e', NS_OPT_INT, &cmd->epochs, "N", "epochs (default 10)", 1, 1e6},
        {"stop-after", 0, NS_OPT_INT, &cmd->stop_after, "E", "stop after epoch E of the --epochs schedule (continue later with --resume)", 1, 1e6},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "batch size (default 128)", 1, 1 << 16},
        {"lr", 0, NS_OPT_DOUBLE, &cmd->lr, "LR", "base learning rate (default 0.1 for sgd, 0.001 for adam/adamw)", 1e-12, 1e6},
        {"optim", 0, NS_OPT_STR, &cmd->optim, "NAME", "sgd (default), adam or adamw", 0, 0},
        {"momentum", 0, NS_OPT_DOUBLE, &cmd->momentum, "M", "sgd momentum (default 0.9)", 0, 1},
        {"nesterov", 0, NS_OPT_FLAG, &cmd->nesterov, NULL, "sgd with Nesterov momentum", 0, 0},
        {"wd", 0, NS_OPT_DOUBLE, &cmd->wd, "WD", "weight decay (default 5e-4 for sgd, 0 adam, 0.01 adamw)", 0, 1},
        {"no-decay-norm", 0, NS_OPT_FLAG, &cmd->no_decay_norm, NULL, "no weight decay on biases and norm parameters", 0, 0},
        {"schedule", 0, NS_OPT_STR, &cmd->schedule, "SPEC", "constant, step:S[:G], multistep:E1,E2[:G], cosine[:MIN] (default cosine)", 0, 0},
        {"warmup", 0, NS_OPT_STR, &cmd->warmup, "SPEC", "linear warm-up: N epochs, Nst steps, optionally :START factor", 0, 0},
        {"label-smoothing", 0, NS_OPT_DOUBLE, &cmd->smoothing, "EPS", "label smoothing (default 0)", 0, 1},
        {"crop-pad", 0, NS_OPT_INT, &cmd->crop_pad, "P", "augment: random crop after zero padding by P", 0, 1024},
        {"flip", 0, NS_OPT_FLAG, &cmd->flip, NULL, "augment: random horizontal flip", 0, 0},
        {"weights", 'w', NS_OPT_STR, &cmd->weights, "FILE", "per-sample loss weights: a stream of (N) tensors with ids in meta", 0, 0},
        {"train-only", 0, NS_OPT_STR, &cmd->train_only, "WHAT", "train only 'head' (the output layer) or tensors matching GLOB[,GLOB..]", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed for shuffling, augmentation and dropout (default 0)", 0, 0},
        {"checkpoint", 'c', NS_OPT_STR, &cmd->checkpoint, "FILE", "write a checkpoint (model + optimiser) after every epoch, atomically", 0, 0},
        {"resume", 'r', NS_OPT_FLAG, &cmd->resume, NULL, "--model is a checkpoint: continue from its epoch and optimiser state", 0, 0},
        {"reg", 0, NS_OPT_STR, &cmd->reg, "NAME", "sparsity regulariser for pruning: bn-scale, group-lasso, group-norm or growing-reg", 0, 0},
        {"reg-lambda", 0, NS_OPT_DOUBLE, &cmd->reg_lambda, "L", "its strength (default 1e-5 for bn-scale, 5e-4 otherwise)", 0, 1e3},
        {"reg-delta", 0, NS_OPT_DOUBLE, &cmd->reg_delta, "D", "growing-reg: growth of the strength per epoch (default 1e-4)", 0, 1e3},
        {"sync-bn", 0, NS_OPT_FLAG, &cmd->sync_bn, NULL, "under mpirun: batch-norm statistics over every rank's samples (default: each rank's own)", 0, 0},
        {"log", 0, NS_OPT_STR, &cmd->log, "FILE", "append a TSV line per epoch (loss, accuracies, lr, time)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write the trained model to FILE (atomically) instead of stdout", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "--model MODEL [options] TRAIN",
        "Train a model on a labelled data stream (from img-read) with softmax\n"
        "cross-entropy, and write the trained model.",
        "The same seed and thread count give the same model bytes; a run resumed from\n"
        "a checkpoint continues exactly. Raw [0,1] data is normalised as the model\n"
        "expects (its image.mean/std, from net-init --like).",
        1, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!cmd->model) ns_die_usage("--model is required");
    if (cmd->reg && ns_prune_reg_from_name(cmd->reg) < 0) ns_die_usage("unknown --reg (%s)", cmd->reg);
    if (!cmd->reg && (cmd->reg_lambda >= 0 || cmd->reg_delta >= 0)) ns_die_usage("--reg-lambda and --reg-delta need --reg");
    // frozen batch norms skip their backward on some ranks only: the sums would not pair up
    if (cmd->sync_bn && cmd->train_only) ns_die_usage("--sync-bn cannot be combined with --train-only");
}

static void apply_reg(void *ctx, struct ns_engine *e, int64_t step) { ns_prune_reg_apply(ctx, e, step); }
static int write_reg_state(void *ctx, ns_writer *w, ns_err *err) { return ns_prune_reg_state_write(ctx, w, err); }

// Marks the tensors to train for --train-only: "head" is the output node's
// parameters; otherwise comma-separated globs on tensor names.
static void select_trainable(const ns_model *m, const char *what, int *trainable) {
    int any = 0;
    for (int t = 0; t < m->ntensors; t++) trainable[t] = 0;
    if (strcmp(what, "head") == 0) {
        const ns_node *out = &m->nodes[m->output];
        for (int p = 0; p < NS_MAX_PARAMS; p++)
            if (out->params[p] >= 0) trainable[out->params[p]] = any = 1;
        if (!any) ns_die_usage("--train-only head: the output node %s has no parameters", out->name);
        return;
    }
    char *list = strdup(what);
    if (!list) ns_die("out of memory");
    for (char *save = NULL, *glob = strtok_r(list, ",", &save); glob; glob = strtok_r(NULL, ",", &save))
        for (int t = 0; t < m->ntensors; t++)
            if (m->tensors[t].used && m->tensors[t].trainable && fnmatch(glob, m->tensors[t].name, 0) == 0)
                trainable[t] = any = 1;
    free(list);
    if (!any) ns_die_usage("--train-only matches no parameter (%s)", what);
}

// Per-sample weights by sample id, from a stream of (N) f32 records with ids.
static float *load_weights(const char *path, const ns_samples *train, ns_err *err) {
    int64_t max_id = 0;
    for (int64_t i = 0; i < train->n; i++) {
        if (train->ids[i] < 0 || train->ids[i] >= ((int64_t)1 << 31)) {
            ns_errf(err, "training sample id %lld is outside 0..2^31: weights go by id", (long long)train->ids[i]);
            return NULL;
        }
        max_id = train->ids[i] > max_id ? train->ids[i] : max_id;
    }
    float *by_id = malloc((size_t)(max_id + 1) * sizeof *by_id);
    float *w = malloc((size_t)train->n * sizeof *w);
    int64_t *ids = NULL;
    if (!by_id || !w) goto oom;
    for (int64_t i = 0; i <= max_id; i++) by_id[i] = -1;
    ns_reader *r = ns_reader_open(path, err);
    if (!r) goto fail;
    ns_record rec;
    int got;
    while ((got = ns_reader_next(r, &rec, err)) == 1) {
        if (!rec.has_data || rec.ndim != 1) continue;
        size_t n;
        ids = realloc(ids, (size_t)(rec.shape[0] ? rec.shape[0] : 1) * sizeof *ids);
        if (!ids) { ns_reader_close(r); goto oom; }
        if (ns_obj_i64s(rec.meta, "ids", ids, (size_t)rec.shape[0], &n, err) <= 0 || (int64_t)n != rec.shape[0]) {
            ns_errf(err, "%s: record %s has no ids for its %lld weights", path, rec.name, (long long)rec.shape[0]);
            got = -1;
            break;
        }
        for (int64_t i = 0; i < rec.shape[0]; i++) {
            double v = ns_value_at(rec.data, rec.dtype, (size_t)i);
            if (!(v >= 0) || v > 1e6) {
                ns_errf(err, "%s: weight %g for id %lld is not in [0, 1e6]", path, v, (long long)ids[i]);
                got = -1;
                break;
            }
            if (ids[i] >= 0 && ids[i] <= max_id) by_id[ids[i]] = (float)v;
        }
        if (got < 0) break;
    }
    ns_reader_close(r);
    if (got < 0) goto fail;
    for (int64_t i = 0; i < train->n; i++) {
        if (by_id[train->ids[i]] < 0) {
            ns_errf(err, "%s: no weight for training sample id %lld", path, (long long)train->ids[i]);
            goto fail;
        }
        w[i] = by_id[train->ids[i]];
    }
    free(by_id);
    free(ids);
    return w;
oom:
    ns_errf(err, "out of memory");
fail:
    free(by_id);
    free(w);
    free(ids);
    return NULL;
}

static void configure(const struct cmdline *cmd, ns_train_config *c) {
    ns_err err;
    ns_optim_kind kind = NS_OPTIM_SGD;
    if (cmd->optim && ns_optim_kind_parse(cmd->optim, &kind, &err) < 0) ns_die_usage("--optim: %s", err.msg);
    ns_optim_config_default(&c->optim, kind);
    if (kind == NS_OPTIM_SGD) {
        c->optim.momentum = cmd->momentum >= 0 ? cmd->momentum : 0.9;
        c->optim.nesterov = cmd->nesterov;
        c->optim.weight_decay = cmd->wd >= 0 ? cmd->wd : 5e-4;
        if (cmd->nesterov && c->optim.momentum == 0) ns_die_usage("--nesterov needs --momentum above 0");
    } else {
        if (cmd->nesterov || cmd->momentum >= 0) ns_die_usage("--momentum and --nesterov are for sgd");
        if (cmd->wd >= 0) c->optim.weight_decay = cmd->wd;
    }
    double lr = cmd->lr > 0 ? cmd->lr : kind == NS_OPTIM_SGD ? 0.1 : 1e-3;
    if (ns_lr_parse(&c->schedule, cmd->schedule ? cmd->schedule : "cosine", lr, &err) < 0)
        ns_die_usage("--schedule: %s", err.msg);
    if (cmd->warmup && ns_lr_parse_warmup(&c->schedule, cmd->warmup, &err) < 0)
        ns_die_usage("--warmup: %s", err.msg);
    c->epochs = cmd->epochs;
    c->stop_after = cmd->stop_after;
    c->batch = cmd->batch;
    c->seed = (uint64_t)cmd->seed;
    c->label_smoothing = cmd->smoothing;
    c->crop_pad = cmd->crop_pad;
    c->flip_p = cmd->flip ? 0.5 : 0;
    c->decay_norm_and_bias = !cmd->no_decay_norm;
    c->checkpoint = cmd->checkpoint;
    c->resume = cmd->resume;
    c->sync_bn = cmd->sync_bn;
    c->report = ns_stderr_reporter(cmd->quiet);
    c->producer = "net-train " NS_VERSION;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.epochs = 10, .batch = 128, .lr = -1, .momentum = -1, .wd = -1, .output = "-",
                          .reg_lambda = -1, .reg_delta = -1};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    ns_train_config cfg = {0};
    configure(&cmd, &cfg);

    ns_err err;
    // Under mpirun: rank r of W trains on its shard of TRAIN; rank 0 alone
    // validates, reports, logs and writes the checkpoints and the model.
    ns_dist dist;
    if (ns_dist_init(&dist, &argc, &argv, &err) < 0) ns_die_err(&err);
    if (dist.size > 1) {
        ns_progname_rank(dist.rank, dist.size);
        cfg.dist = &dist;
        if (dist.rank > 0) {
            cmd.val = cmd.log = cmd.checkpoint = NULL;
            cmd.output = "/dev/null";
            cfg.checkpoint = NULL;
            cfg.report = NULL;
        }
    }
    const ns_shard shard = {dist.rank, dist.size};
    ns_model m;
    if (ns_model_load(&m, cmd.model, &err) < 0) ns_die_err(&err);
    int *trainable = NULL;
    if (cmd.train_only) {
        if (!(trainable = malloc((size_t)(m.ntensors ? m.ntensors : 1) * sizeof *trainable))) ns_die("out of memory");
        select_trainable(&m, cmd.train_only, trainable);
        cfg.trainable = trainable;
    }
    ns_samples train, val;
    if (ns_samples_load_shard(&train, argv[first], &m, &shard, 1, &err) < 0) ns_die_err(&err);
    double train_total = (double)train.n; // over every rank
    if (dist.size > 1 && dist.sum_f64(&train_total, 1, &err) < 0) ns_die_err(&err);
    if (cmd.val && ns_samples_load(&val, cmd.val, &m, &err) < 0) ns_die_err(&err);
    float *weights = NULL;
    if (cmd.weights && !(weights = load_weights(cmd.weights, &train, &err))) ns_die_err(&err);
    cfg.sample_weights = weights;
    if (cmd.log && !(cfg.log = fopen(cmd.log, "a"))) ns_die("%s: cannot open (%s)", cmd.log, strerror(errno));
    // Open the outputs before hours of training, so a bad path fails now.
    ns_output out;
    if (cmd.checkpoint) {
        if (ns_output_open(&out, cmd.checkpoint, &err) < 0) ns_die_err(&err);
        ns_output_abort(&out);
    }
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_prune_reg *reg = NULL;
    if (cmd.reg) {
        int kind = ns_prune_reg_from_name(cmd.reg);
        double lambda = cmd.reg_lambda >= 0 ? cmd.reg_lambda : kind == NS_REG_BN_SCALE ? 1e-5 : 5e-4;
        if (!(reg = ns_prune_reg_create(&m, kind, lambda, cmd.reg_delta >= 0 ? cmd.reg_delta : 1e-4,
                                        ((int64_t)train_total + cfg.batch - 1) / cfg.batch, &err)))
            ns_die("%s: %s", cmd.model, err.msg);
        if (cmd.resume && ns_prune_reg_state_load(reg, &m, &err) < 0) ns_die("%s: %s", cmd.model, err.msg);
        cfg.after_backward = apply_reg;
        cfg.after_backward_ctx = reg;
        cfg.checkpoint_extra = write_reg_state;
        cfg.checkpoint_extra_ctx = reg;
    }
    ns_epoch_stats last = {0};
    int rc = ns_train(&m, &train, cmd.val ? &val : NULL, &cfg, &last, &err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    if (rc == 0) {
        ns_map meta;
        ns_map_init(&meta);
        ns_map_str(&meta, "general.producer", "net-train " NS_VERSION);
        ns_map_i64(&meta, "train.epochs", last.epoch);
        ns_map_f64(&meta, "train.loss", last.loss);
        ns_map_f64(&meta, "train.accuracy", last.train_acc);
        if (cmd.val) ns_map_f64(&meta, "train.val_accuracy", last.val_acc);
        if (reg) {
            ns_map_str(&meta, "train.reg", cmd.reg);
            ns_map_f64(&meta, "train.reg_seconds", ns_prune_reg_seconds(reg));
        }
        rc = ns_model_write(&m, &w, &meta, 0, &err);
        ns_map_free(&meta);
    }
    int log_errno = cfg.log ? ns_file_close(cfg.log) : 0;
    if (log_errno && rc == 0) rc = ns_errf(&err, "%s: write failed (%s)", cmd.log, strerror(log_errno));
    if (ns_output_finish(&out, &w, rc, &err) < 0) ns_die_err(&err);
    if (reg && !cmd.quiet) ns_warn("regulariser %s: %.2fs", cmd.reg, ns_prune_reg_seconds(reg));
    ns_prune_reg_free(reg);
    free(weights);
    free(trainable);
    ns_samples_free(&train);
    if (cmd.val) ns_samples_free(&val);
    ns_model_free(&m);
    ns_dist_finalize(&dist);
    return 0;
}
