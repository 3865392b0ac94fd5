// cct-train: trains CCT-Net's comparison classifier G (and its matching
// discriminator D) on labelled source classes and unlabelled target classes
// (lib/cct/cct.h): G pretrained on balanced source pairs, then the
// adversarial stage that translates G's comparison knowledge to the target
// classes; writes G (and D) as model streams.
//
//   cct-train [options] -o G.tns SOURCE TARGET
//
// SOURCE: labelled image batches of the source classes; TARGET: image
// batches of the target classes (their labels are never read). The two must
// not share a class name.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "cct/cct.h"
#include "cli/cli.h"
#include "stream/streaminfo.h"

struct cmdline {
    const char *backbone, *arch, *g_init, *d_init, *hidden, *fewshot, *log, *output, *d_output;
    int embed, patch, depth, heads, cross_heads, pre_epochs, adv_epochs, batch, g_steps, d_steps, g_src_steps, g_src_epochs, fs_steps, unsup,
        no_d_src, no_d_tgt, no_g_adv, crop_pad, quiet;
    double width, lr_pre, lr_g, lr_d, lr_final, flip;
    int64_t pairs, seed;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"backbone", 0, NS_OPT_STR, &cmd->backbone, "MODEL", "backbone for G and D: any model stream; its output is the embedding (default: a small CNN)", 0, 0},
        {"arch", 0, NS_OPT_STR, &cmd->arch, "NAME", "new backbone: cnn (default), or vit, the twin transformer with cross-attention heads", 0, 0},
        {"embed", 'E', NS_OPT_INT, &cmd->embed, "E", "new backbone: embedding width (default 64)", 1, 65536},
        {"width", 0, NS_OPT_DOUBLE, &cmd->width, "W", "new backbone: cnn 16W and 32W channels, vit 64W features (default 1)", 1e-3, 64},
        {"patch", 0, NS_OPT_INT, &cmd->patch, "P", "vit: P x P patches (default 7)", 1, 4096},
        {"depth", 0, NS_OPT_INT, &cmd->depth, "N", "vit: transformer blocks (default 4)", 1, 256},
        {"heads", 0, NS_OPT_INT, &cmd->heads, "N", "vit: attention heads per block (default 4)", 1, 4096},
        {"cross-heads", 0, NS_OPT_INT, &cmd->cross_heads, "N", "vit: of those, heads that attend to the pair's other image (default 1; 0: a plain shared ViT)", 0, 4096},
        {"hidden", 0, NS_OPT_STR, &cmd->hidden, "LIST", "head's hidden widths, comma-separated, \"\" for none (default 256,64)", 0, 0},
        {"g-init", 0, NS_OPT_STR, &cmd->g_init, "G", "start from this G (a cct-train output) instead of a new one", 0, 0},
        {"d-init", 0, NS_OPT_STR, &cmd->d_init, "D", "start from this D", 0, 0},
        {"pre-epochs", 0, NS_OPT_INT, &cmd->pre_epochs, "N", "G's pretraining on source pairs (default 5; 0 with --g-init)", 0, 1e6},
        {"adv-epochs", 0, NS_OPT_INT, &cmd->adv_epochs, "N", "adversarial epochs (default 5; 0: G alone)", 0, 1e6},
        {"pairs", 0, NS_OPT_I64, &cmd->pairs, "N", "pairs per epoch (default: the source images when pretraining, the target images after)", 1, 1e12},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "pairs per step (default 64)", 1, 1 << 14},
        {"lr-pre", 0, NS_OPT_DOUBLE, &cmd->lr_pre, "LR", "Adam learning rate of the pretraining (default 1e-3)", 1e-12, 10},
        {"lr-g", 0, NS_OPT_DOUBLE, &cmd->lr_g, "LR", "G's learning rate in the adversarial stage (default 1e-4)", 1e-12, 10},
        {"lr-d", 0, NS_OPT_DOUBLE, &cmd->lr_d, "LR", "D's learning rate (default 1e-4: G's; D faster wins the game)", 1e-12, 10},
        {"lr-final", 0, NS_OPT_DOUBLE, &cmd->lr_final, "F", "cosine to F x the rate over each stage (default 0.01)", 0, 1},
        {"g-steps", 0, NS_OPT_INT, &cmd->g_steps, "N", "G steps against D per iteration (default 1)", 0, 100},
        {"d-steps", 0, NS_OPT_INT, &cmd->d_steps, "N", "D steps per iteration (default 1)", 0, 100},
        {"g-src-steps", 0, NS_OPT_INT, &cmd->g_src_steps, "N", "supervised source steps of G per iteration (default 0; the official --g-src is 2)", 0, 100},
        {"g-src-epochs", 0, NS_OPT_INT, &cmd->g_src_epochs, "N", "source steps only in the first N adversarial epochs (official --reducing: 2)", 0, 1e6},
        {"fewshot", 0, NS_OPT_STR, &cmd->fewshot, "DATA", "labelled target images for few-shot steps", 0, 0},
        {"fs-steps", 0, NS_OPT_INT, &cmd->fs_steps, "N", "few-shot target steps of G per iteration (default 1 with --fewshot)", 0, 100},
        {"unsup", 0, NS_OPT_FLAG, &cmd->unsup, NULL, "pretraining also on target pairs: an image and its augmentation = same", 0, 0},
        {"no-d-src", 0, NS_OPT_FLAG, &cmd->no_d_src, NULL, "ablation: drop D's source term", 0, 0},
        {"no-d-tgt", 0, NS_OPT_FLAG, &cmd->no_d_tgt, NULL, "ablation: drop D's target term", 0, 0},
        {"no-g-adv", 0, NS_OPT_FLAG, &cmd->no_g_adv, NULL, "ablation: drop G's adversarial loss", 0, 0},
        {"crop-pad", 0, NS_OPT_INT, &cmd->crop_pad, "P", "augmentation: random crop with P zero padding (default 2; 0 off)", 0, 64},
        {"flip", 0, NS_OPT_DOUBLE, &cmd->flip, "P", "augmentation: horizontal flip probability (default 0.5)", 0, 1},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed for initialisation, pairs and augmentation (default 1)", 0, 0},
        {"log", 0, NS_OPT_STR, &cmd->log, "FILE", "append a TSV line per epoch (stage, epoch, losses, accuracies, seconds)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write G here (atomically; default stdout)", 0, 0},
        {"d-output", 0, NS_OPT_STR, &cmd->d_output, "FILE", "write D here", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] -o G.tns SOURCE TARGET",
        "Train CCT-Net: a comparison classifier G(x1, x2) = P(same class) on labelled\n"
        "source classes, translated to unlabelled target classes against a matching\n"
        "discriminator D(x1, x2, s).",
        "G = sigmoid(MLP(|f(x1) - f(x2)|)) over a twin backbone f with shared weights;\n"
        "D's head takes [|f(x1) - f(x2)|; s]. Pretraining: BCE(G, y) on balanced source\n"
        "pairs. Adversarial stage per iteration: optional source and few-shot steps of\n"
        "G, D on source pairs with the true or flipped similarity and on G's target\n"
        "outputs (labelled fake), then G against D on target pairs. Adam, cosine\n"
        "learning rates. Progress goes to stderr: a line per epoch with G's and D's\n"
        "losses and pair accuracies. Classify with cct-classify.",
        2, 2,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    int vit_opts = cmd->patch || cmd->depth || cmd->heads || cmd->cross_heads >= 0;
    if (cmd->arch && strcmp(cmd->arch, "cnn") != 0 && strcmp(cmd->arch, "vit") != 0)
        ns_die_usage("--arch must be cnn or vit, not '%s'", cmd->arch);
    if (vit_opts && !(cmd->arch && strcmp(cmd->arch, "vit") == 0))
        ns_die_usage("--patch, --depth, --heads and --cross-heads shape --arch vit");
    if (cmd->backbone && (cmd->arch || cmd->embed || cmd->width))
        ns_die_usage("--arch, --embed and --width build a new backbone, not --backbone");
    if (cmd->g_init && (cmd->backbone || cmd->arch || cmd->embed || cmd->width || cmd->hidden))
        ns_die_usage("--g-init brings its own backbone and head");
    if (cmd->fs_steps && !cmd->fewshot) ns_die_usage("--fs-steps needs --fewshot");
    if (cmd->g_src_epochs && !cmd->g_src_steps) ns_die_usage("--g-src-epochs needs --g-src-steps");
    if (cmd->d_output && cmd->adv_epochs == 0 && !cmd->d_init) ns_die_usage("--d-output with --adv-epochs 0: there is no D to write");
    if (cmd->output && cmd->d_output && strcmp(cmd->output, cmd->d_output) == 0) ns_die_usage("-o and --d-output name the same file");
    if (strcmp(argv[*first], "-") == 0 || strcmp(argv[*first + 1], "-") == 0)
        ns_die_usage("SOURCE and TARGET must be files (each is read twice)");
}

// The image shape and normalisation of a stream's first data record.
static int peek_images(const char *path, int *c, int *h, int *w, ns_stream_info *info, ns_err *err) {
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    ns_record rec;
    int got, rc = -1;
    while ((got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            if (ns_stream_info_update(info, &rec, err) < 0) break;
            continue;
        }
        if (!rec.has_data) continue;
        if (rec.ndim != 4) {
            ns_errf(err, "record %s is not a batch of images (N, C, H, W)", rec.name);
            break;
        }
        *c = (int)rec.shape[1], *h = (int)rec.shape[2], *w = (int)rec.shape[3];
        rc = 0;
        break;
    }
    if (got == 0) ns_errf(err, "no image records");
    ns_reader_close(r);
    return rc < 0 ? ns_err_prefix(err, "%s", path) : 0;
}

static int parse_hidden(const char *s, int64_t *hidden, int *n, ns_err *err) {
    *n = 0;
    if (!s) {
        hidden[0] = 256, hidden[1] = 64;
        *n = 2;
        return 0;
    }
    if (!*s) return 0; // no hidden layer
    int v[NS_CCT_MAX_HIDDEN];
    int k = ns_parse_sizes(s, v, NS_CCT_MAX_HIDDEN, 65536, err);
    if (k < 0) return ns_err_prefix(err, "--hidden");
    for (int i = 0; i < k; i++) hidden[i] = v[i];
    *n = k;
    return 0;
}

// A new net of the given role: the default CNN or the --backbone model.
static int new_net(ns_cct_net *net, ns_cct_role role, const struct cmdline *cmd, const char *source,
                   uint64_t seed, ns_err *err) {
    int64_t hidden[NS_CCT_MAX_HIDDEN];
    int nh;
    if (parse_hidden(cmd->hidden, hidden, &nh, err) < 0) return -1;
    ns_model bb;
    if (cmd->backbone) {
        if (ns_model_load(&bb, cmd->backbone, err) < 0) return -1;
    } else {
        int c = 0, h = 0, w = 0;
        ns_stream_info info = {0};
        int rc = peek_images(source, &c, &h, &w, &info, err);
        double width = cmd->width ? cmd->width : 1;
        int64_t embed = cmd->embed ? cmd->embed : 64;
        if (rc == 0 && cmd->arch && strcmp(cmd->arch, "vit") == 0)
            rc = ns_cct_vit_backbone(&bb, c, h, w, width, cmd->depth, cmd->patch, cmd->heads,
                                     cmd->cross_heads >= 0 ? cmd->cross_heads : 1, embed, seed, err);
        else if (rc == 0)
            rc = ns_cct_default_backbone(&bb, c, h, w, width, embed, seed, err);
        if (rc == 0) { // the backbone takes the data as it comes
            bb.nnorm = info.nnorm;
            memcpy(bb.mean, info.mean, sizeof bb.mean);
            memcpy(bb.std, info.std, sizeof bb.std);
        }
        ns_stream_info_free(&info);
        if (rc < 0) return -1;
    }
    if (ns_cct_create(net, role, &bb, hidden, nh, seed, err) < 0) {
        ns_model_free(&bb);
        return ns_err_prefix(err, "%s", cmd->backbone ? cmd->backbone : "backbone");
    }
    return 0;
}

// Class names shared by source and target are an error (the method's premise).
static int check_disjoint(const ns_samples *src, const ns_samples *tgt, const char *sp, const char *tp,
                          ns_err *err) {
    for (size_t i = 0; src->labels && i < src->nlabels; i++)
        for (size_t j = 0; tgt->labels && j < tgt->nlabels; j++)
            if (strcmp(src->labels[i], tgt->labels[j]) == 0)
                return ns_errf(err, "class '%s' is in both %s and %s: target classes must be new", src->labels[i], sp, tp);
    return 0;
}

static int write_net(const ns_cct_net *net, const char *path, ns_err *err) {
    ns_output out;
    if (ns_output_open(&out, path ? path : "-", err) < 0) return -1;
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "cct-train " NS_VERSION);
    int rc = ns_cct_write(net, &w, &meta, err);
    ns_map_free(&meta);
    return ns_output_finish(&out, &w, rc, err);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {0};
    cmd.pre_epochs = cmd.adv_epochs = -1;
    cmd.batch = 64;
    cmd.g_steps = cmd.d_steps = 1;
    cmd.crop_pad = -1;
    cmd.cross_heads = -1;
    cmd.flip = -1;
    cmd.seed = 1;
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *source_path = argv[first], *target_path = argv[first + 1];
    ns_err err;
    ns_cct_train_config cfg;
    ns_cct_train_config_default(&cfg);
    cfg.pre_epochs = cmd.pre_epochs >= 0 ? cmd.pre_epochs : cmd.g_init ? 0 : 5;
    if (cmd.adv_epochs >= 0) cfg.adv_epochs = cmd.adv_epochs;
    cfg.pairs_per_epoch = cmd.pairs;
    cfg.batch = cmd.batch;
    cfg.seed = (uint64_t)cmd.seed;
    if (cmd.lr_pre) cfg.lr_pre = cmd.lr_pre;
    if (cmd.lr_g) cfg.lr_g = cmd.lr_g;
    if (cmd.lr_d) cfg.lr_d = cmd.lr_d;
    if (cmd.lr_final) cfg.lr_final = cmd.lr_final;
    cfg.g_steps = cmd.g_steps;
    cfg.d_steps = cmd.d_steps;
    cfg.g_src_steps = cmd.g_src_steps;
    cfg.g_src_epochs = cmd.g_src_epochs;
    cfg.fs_steps = cmd.fewshot ? (cmd.fs_steps ? cmd.fs_steps : 1) : 0;
    cfg.unsup_pre = cmd.unsup;
    cfg.use_d_src = !cmd.no_d_src;
    cfg.use_d_tgt = !cmd.no_d_tgt;
    cfg.use_g_adv = !cmd.no_g_adv;
    if (cmd.crop_pad >= 0) cfg.crop_pad = cmd.crop_pad;
    if (cmd.flip >= 0) cfg.flip_p = cmd.flip;
    cfg.report = ns_stderr_reporter(cmd.quiet);
    if (cfg.adv_epochs > 0 && !cfg.use_d_src && !cfg.use_d_tgt && cfg.use_g_adv)
        ns_die_usage("--no-d-src with --no-d-tgt leaves D untrained for G's adversarial loss");

    ns_cct_net G, D;
    int have_d = cfg.adv_epochs > 0 || cmd.d_init;
    if (cmd.g_init) {
        if (ns_cct_load(&G, cmd.g_init, NS_CCT_G, &err) < 0) ns_die_err(&err);
    } else if (new_net(&G, NS_CCT_G, &cmd, source_path, cfg.seed, &err) < 0) {
        ns_die_err(&err);
    }
    if (have_d) {
        if (cmd.d_init) {
            if (ns_cct_load(&D, cmd.d_init, NS_CCT_D, &err) < 0) ns_die_err(&err);
        } else if (cmd.g_init) { // D takes G's backbone form, with fresh weights
            if (ns_cct_load(&D, cmd.g_init, NS_CCT_G, &err) < 0) ns_die_err(&err);
            ns_model bb = D.backbone;
            ns_model_init(&D.backbone);
            ns_model_init_params(&bb, cfg.seed + 1);
            int64_t hidden[NS_CCT_MAX_HIDDEN];
            memcpy(hidden, D.hidden, sizeof hidden);
            int nh = D.nhidden;
            ns_cct_free(&D);
            if (ns_cct_create(&D, NS_CCT_D, &bb, hidden, nh, cfg.seed + 1, &err) < 0) ns_die_err(&err);
        } else if (new_net(&D, NS_CCT_D, &cmd, source_path, cfg.seed + 1, &err) < 0) {
            ns_die_err(&err);
        }
    }

    ns_samples source, target, fewshot;
    if (ns_samples_load(&source, source_path, &G.backbone, &err) < 0) ns_die_err(&err);
    if (ns_samples_load(&target, target_path, &G.backbone, &err) < 0) ns_die_err(&err);
    if (check_disjoint(&source, &target, source_path, target_path, &err) < 0) ns_die_err(&err);
    if (G.source_classes && check_disjoint(&(ns_samples){.labels = G.source_classes, .nlabels = G.nsource}, &target,
                                           cmd.g_init, target_path, &err) < 0)
        ns_die_err(&err);
    if (cmd.fewshot) {
        if (ns_samples_load(&fewshot, cmd.fewshot, &G.backbone, &err) < 0) ns_die_err(&err);
        if (check_disjoint(&source, &fewshot, source_path, cmd.fewshot, &err) < 0) ns_die_err(&err);
    }
    if (!G.source_classes && source.labels && ns_cct_set_sources(&G, source.labels, source.nlabels, &err) < 0)
        ns_die_err(&err);
    if (have_d && ns_cct_set_sources(&D, G.source_classes, G.nsource, &err) < 0) ns_die_err(&err);
    if (cmd.log && !(cfg.log = fopen(cmd.log, "a"))) ns_die("%s: cannot open (%s)", cmd.log, strerror(errno));

    ns_cct_epoch_stats last;
    int rc = ns_cct_train(&G, have_d ? &D : NULL, &source, &target, cmd.fewshot ? &fewshot : NULL, &cfg, &last, &err);
    int log_errno = cfg.log ? ns_file_close(cfg.log) : 0;
    if (rc < 0) ns_die_err(&err);
    if (log_errno) ns_die("%s: write failed (%s)", cmd.log, strerror(log_errno));
    if (have_d && cmd.d_output && write_net(&D, cmd.d_output, &err) < 0) ns_die_err(&err);
    if (write_net(&G, cmd.output, &err) < 0) ns_die_err(&err);
    ns_samples_free(&source);
    ns_samples_free(&target);
    if (cmd.fewshot) ns_samples_free(&fewshot);
    ns_cct_free(&G);
    if (have_d) ns_cct_free(&D);
    return 0;
}
