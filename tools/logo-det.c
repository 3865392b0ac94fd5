// logo-det: a logo detector that trains and runs on the engine: CenterNet
// (anchor-free, one stage; lib/detect/centernet.h) on detection streams
// (tns(5), "Detection streams", as logo-synth writes them).
//
//   logo-det train  [options] -o MODEL TRAIN.tns
//   logo-det detect [options] --model MODEL [-o DETS.tns] IMAGES.tns
//   logo-det eval   [options] --model MODEL TEST.tns
//
// detect writes a detection stream (boxes with scores) that det-eval reads,
// or TSV/COCO JSON; --draw DIR writes PNGs with the boxes drawn. eval runs
// detect and scores it as det-eval does (lib/detect/eval.h).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "cli/cli.h"
#include "detect/centernet.h"
#include "detect/convert.h"
#include "detect/draw.h"
#include "detect/eval.h"
#include "stream/image.h"
#include "stream/tns.h"

struct cmdline {
    const char *mode, *model, *output, *optim, *schedule, *warmup, *checkpoint, *format, *draw, *test;
    int width, epochs, stop_after, batch, flip, resume, quiet, topk, draw_limit, images;
    int64_t seed;
    double lr, wd, thresh;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"mode", 0, NS_OPT_STR, &cmd->mode, "MODE", "onestage (default: CenterNet) or region (proposals, RoI-align, a head)", 0, 0},
        {"model", 'm', NS_OPT_STR, &cmd->model, "FILE", "the detector (train: start from it instead of a new one)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically); train: the model (needed)", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress or epoch lines on stderr", 0, 0},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "images per batch (default: train 32, detect 64)", 1, 65536},
        {"width", 'w', NS_OPT_INT, &cmd->width, "W", "train, new model: base channels (default 16: W, 2W, 4W, 8W)", 1, 1024},
        {"epochs", 'e', NS_OPT_INT, &cmd->epochs, "N", "train: epochs of the schedule (default 20)", 1, 100000},
        {"stop-after", 0, NS_OPT_INT, &cmd->stop_after, "N", "train: stop after epoch N (continue with --resume)", 1, 100000},
        {"lr", 0, NS_OPT_DOUBLE, &cmd->lr, "LR", "train: base learning rate (default 0.002)", 1e-12, 1e3},
        {"wd", 0, NS_OPT_DOUBLE, &cmd->wd, "WD", "train: weight decay (default 0; adamw 0.01; sgd 5e-4)", 0, 1},
        {"optim", 0, NS_OPT_STR, &cmd->optim, "NAME", "train: adam (default), adamw or sgd (momentum 0.9)", 0, 0},
        {"schedule", 0, NS_OPT_STR, &cmd->schedule, "SPEC", "train: learning-rate schedule (default cosine)", 0, 0},
        {"warmup", 0, NS_OPT_STR, &cmd->warmup, "SPEC", "train: warm-up, e.g. 1 (epoch) or 200st (steps)", 0, 0},
        {"flip", 0, NS_OPT_FLAG, &cmd->flip, NULL, "train: random horizontal flips (off: logos are not symmetric)", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "N", "train: initialisation and shuffling seed (default 1)", 0, 9e18},
        {"checkpoint", 'c', NS_OPT_STR, &cmd->checkpoint, "FILE", "train: model + optimiser state after every epoch", 0, 0},
        {"resume", 'r', NS_OPT_FLAG, &cmd->resume, NULL, "train: --model is a checkpoint; continue from its epoch", 0, 0},
        {"topk", 'k', NS_OPT_INT, &cmd->topk, "N", "detect, eval: at most N detections per image (default 100)", 1, 100000},
        {"threshold", 't', NS_OPT_DOUBLE, &cmd->thresh, "S", "detect, eval: keep scores of at least S (default 0.01)", 0, 1},
        {"format", 'f', NS_OPT_STR, &cmd->format, "FMT", "detect: tns (default, a detection stream), tsv or json (COCO)", 0, 0},
        {"draw", 'd', NS_OPT_STR, &cmd->draw, "DIR", "detect: also write ID.png with boxes drawn into the new DIR", 0, 0},
        {"images", 0, NS_OPT_FLAG, &cmd->images, NULL, "detect: the stream carries the images too (img-write draws it)", 0, 0},
        {"draw-limit", 0, NS_OPT_INT, &cmd->draw_limit, "N", "detect: draw at most N images (default 16)", 1, 1e9},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "train|detect|eval [options] FILE",
        "Train and run a CenterNet logo detector on detection streams.",
        "logo-det train -o MODEL TRAIN: trains on a detection stream (logo-synth's\n"
        "output); a new model takes the stream's image size (a multiple of 16) and its\n"
        "classes (general.labels). Loss: focal loss on the class heatmaps (stride 4),\n"
        "0.1 L1 on box sizes, L1 on centre offsets; a line per epoch with the rate\n"
        "and the time left.\n"
        "logo-det detect --model MODEL IMAGES: boxes, classes and scores per image, as\n"
        "a detection stream (det-eval reads it), TSV (id, class, name, score, x0, y0,\n"
        "x1, y1) or COCO JSON; --draw DIR writes the first images with their boxes.\n"
        "logo-det eval --model MODEL TEST: detects and scores as det-eval does:\n"
        "per-class AP at IoU 0.5, VOC and COCO means, and the detection rate.",
        1, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
}

static void load_model(ns_model *m, const char *path) {
    ns_err err;
    if (ns_model_load(m, path, &err) < 0) ns_die_err(&err);
    int64_t k, s;
    if (ns_cnet_shape(m, &k, &s, &err) < 0) ns_die("%s: %s", path, err.msg);
}

static void load_data(ns_det_data *d, const char *path, int need_boxes) {
    ns_err err;
    if (ns_det_data_load(path, need_boxes, d, &err) < 0) ns_die_err(&err);
}

// --- train -----------------------------------------------------------------------

static void train_config(const struct cmdline *cmd, ns_cnet_train_config *c) {
    ns_err err;
    memset(c, 0, sizeof *c);
    ns_optim_kind kind = NS_OPTIM_ADAM;
    if (cmd->optim && ns_optim_kind_parse(cmd->optim, &kind, &err) < 0) ns_die_usage("--optim: %s", err.msg);
    ns_optim_config_default(&c->optim, kind);
    if (kind == NS_OPTIM_SGD) {
        c->optim.momentum = 0.9;
        c->optim.weight_decay = 5e-4;
    }
    if (cmd->wd >= 0) c->optim.weight_decay = cmd->wd;
    if (ns_lr_parse(&c->schedule, cmd->schedule ? cmd->schedule : "cosine", cmd->lr, &err) < 0)
        ns_die_usage("--schedule: %s", err.msg);
    if (cmd->warmup && ns_lr_parse_warmup(&c->schedule, cmd->warmup, &err) < 0) ns_die_usage("--warmup: %s", err.msg);
    c->epochs = cmd->epochs;
    c->stop_after = cmd->stop_after;
    c->batch = cmd->batch;
    c->seed = (uint64_t)cmd->seed;
    c->flip = cmd->flip;
    c->checkpoint = cmd->checkpoint;
    c->resume = cmd->resume;
    c->producer = "logo-det " NS_VERSION;
    c->report = ns_stderr_reporter(cmd->quiet);
}

static int is_region(const struct cmdline *cmd) {
    if (!cmd->mode || strcmp(cmd->mode, "onestage") == 0) return 0;
    if (strcmp(cmd->mode, "region") == 0) return 1;
    ns_die_usage("--mode must be onestage or region (%s)", cmd->mode);
}

static int cmd_train(struct cmdline *cmd, const char *path) {
    if (!cmd->output) ns_die_usage("train needs -o MODEL");
    int region = is_region(cmd);
    if (region && (!cmd->model || cmd->resume))
        ns_die_usage("--mode region trains a head on a one-stage model: give --model (no --resume)");
    if (cmd->resume && !cmd->model) ns_die_usage("--resume needs --model CHECKPOINT");
    ns_cnet_train_config cfg;
    train_config(cmd, &cfg);
    ns_err err;
    ns_det_data d;
    load_data(&d, path, 1);
    ns_model m;
    if (cmd->model) {
        load_model(&m, cmd->model);
        int64_t k, s;
        ns_cnet_shape(&m, &k, &s, &err);
        if (d.set.nlabels && (int64_t)d.set.nlabels != k)
            ns_die("%s names %zu classes; the model %s has %lld", path, d.set.nlabels, cmd->model, (long long)k);
    } else {
        if (!d.set.nlabels) ns_die("%s: no class names (general.labels); the class count is needed", path);
        if (d.h != d.w || d.h % 16) ns_die("%s: images are %lldx%lld; logo-det needs square images, a multiple of 16", path,
                                           (long long)d.w, (long long)d.h);
        if (ns_cnet_build(&m, (int)d.set.nlabels, (int)d.h, cmd->width, (uint64_t)cmd->seed, &err) < 0) ns_die_err(&err);
        for (size_t i = 0; i < d.set.nlabels; i++) {
            m.labels = realloc(m.labels, (i + 1) * sizeof *m.labels);
            if (!m.labels || !(m.labels[i] = strdup(d.set.labels[i]))) ns_die("out of memory");
            m.nlabels = i + 1;
        }
    }
    ns_output out;
    if (ns_output_open(&out, cmd->output, &err) < 0) ns_die_err(&err);
    ns_cnet_epoch last = {0};
    if ((region ? ns_region_train(&m, &d, &cfg, &last, &err) : ns_cnet_train(&m, &d, &cfg, &last, &err)) < 0) {
        ns_output_abort(&out);
        ns_die_err(&err);
    }
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "logo-det " NS_VERSION);
    ns_map_f64(&meta, "train.loss", last.loss);
    int failed = ns_cnet_write(&m, &w, &meta, &err) < 0;
    ns_map_free(&meta);
    if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
    ns_model_free(&m);
    ns_det_data_free(&d);
    return 0;
}

// --- detect ---------------------------------------------------------------------------
// Detection streams: the input is read a window of whole batches at a time
// (WINDOW images, or the batch when larger), and each window's detections are
// written before the next is read, so memory is bounded by the window, not by
// the stream. Evaluation and COCO JSON keep the boxes (not the images) until
// the end.
#define WINDOW 256

static int write_tsv(FILE *f, const ns_det_boxes *b, char **labels, size_t nlabels) {
    for (int64_t i = 0; i < b->n; i++)
        for (int64_t j = b->offsets[i]; j < b->offsets[i + 1]; j++) {
            const float *q = b->xyxy + 4 * j;
            fprintf(f, "%lld\t%lld\t%s\t%.4f\t%.2f\t%.2f\t%.2f\t%.2f\n", (long long)b->ids[i], (long long)b->classes[j],
                    (size_t)b->classes[j] < nlabels ? labels[b->classes[j]] : "-", b->scores[j], q[0], q[1], q[2], q[3]);
        }
    return 0;
}

// --draw DIR: the first `limit` images with their detections, as DIR/ID.png,
// written into DIR.tmp.PID and renamed into place at the end, so that DIR
// appears whole or not at all.
typedef struct drawing {
    const char *dir;
    char tmp[4096];
    int64_t done, limit;
    int64_t *ids; // of the images drawn, to remove them on failure
} drawing;

static int draw_begin(drawing *dr, const char *dir, int64_t limit, ns_err *err) {
    memset(dr, 0, sizeof *dr);
    struct stat st;
    if (stat(dir, &st) == 0) return ns_errf(err, "--draw %s exists already", dir);
    snprintf(dr->tmp, sizeof dr->tmp, "%s.tmp.%ld", dir, (long)getpid());
    if (!(dr->ids = malloc((size_t)limit * sizeof *dr->ids))) return ns_errf(err, "out of memory");
    if (mkdir(dr->tmp, 0777) < 0) return ns_errf(err, "cannot create %s (%s)", dr->tmp, strerror(errno));
    dr->dir = dir;
    dr->limit = limit;
    return 0;
}

static int draw_window(drawing *dr, const ns_det_data *d, const ns_det_boxes *b, char **labels, size_t nlabels,
                       ns_err *err) {
    int64_t per = d->c * d->h * d->w;
    for (int64_t i = 0; i < d->n && dr->done < dr->limit; i++) {
        ns_image img;
        if (ns_image_alloc(&img, (int)d->c, (int)d->h, (int)d->w, err) < 0) return -1;
        memcpy(img.data, d->x + i * per, (size_t)per * sizeof(float));
        int rc = ns_det_draw_image(&img, b, i, labels, nlabels, err);
        char path[4200];
        snprintf(path, sizeof path, "%s/%06lld.png", dr->tmp, (long long)b->ids[i]);
        if (rc == 0) rc = ns_png_write_file(path, &img, err);
        ns_image_free(&img);
        if (rc < 0) return -1;
        dr->ids[dr->done++] = b->ids[i];
    }
    return 0;
}

// Renames the drawings into place (ok) or removes them.
static int draw_finish(drawing *dr, int ok, ns_err *err) {
    int rc = 0;
    if (!dr->dir) return 0;
    if (ok && rename(dr->tmp, dr->dir) < 0)
        rc = ns_errf(err, "cannot rename %s to %s (%s)", dr->tmp, dr->dir, strerror(errno));
    if (!ok || rc < 0) {
        for (int64_t i = 0; i < dr->done; i++) {
            char path[4300];
            snprintf(path, sizeof path, "%s/%06lld.png", dr->tmp, (long long)dr->ids[i]);
            remove(path);
        }
        rmdir(dr->tmp);
    }
    free(dr->ids);
    memset(dr, 0, sizeof *dr);
    return rc;
}

// Images start .. start+n-1 of the window as an image batch after their boxes record.
static int write_images(ns_writer *w, const ns_det_data *d, const ns_det_boxes *b, int64_t start, int64_t n,
                        ns_err *err) {
    ns_tensor t;
    int64_t shape[4] = {n, d->c, d->h, d->w}, per = d->c * d->h * d->w;
    if (ns_tensor_alloc(&t, NS_F32, 4, shape, err) < 0) return -1;
    memcpy(t.data, d->x + start * per, (size_t)(n * per) * sizeof(float));
    int64_t *labels = malloc((size_t)n * sizeof *labels);
    if (!labels) {
        ns_tensor_free(&t);
        return ns_errf(err, "out of memory");
    }
    for (int64_t i = 0; i < n; i++) labels[i] = -1;
    ns_map meta;
    ns_map_init(&meta);
    ns_map_i64s(&meta, "labels", labels, (size_t)n);
    ns_map_i64s(&meta, "ids", b->ids + start, (size_t)n);
    int rc = ns_write_tensor(w, "images", &t, &meta, err);
    ns_map_free(&meta);
    free(labels);
    ns_tensor_free(&t);
    return rc;
}

// A window's detections as boxes records of at most 256 images (each followed
// by its images with --images).
static int write_boxes(ns_writer *w, const ns_det_data *d, const ns_det_boxes *dets, int images, ns_err *err) {
    for (int64_t start = 0; start < dets->n; start += 256) {
        int64_t n = dets->n - start < 256 ? dets->n - start : 256, first = dets->offsets[start];
        ns_det_boxes part;
        if (ns_det_boxes_alloc(&part, n, dets->offsets[start + n] - first, 1, err) < 0) return -1;
        part.h = dets->h;
        part.w = dets->w;
        for (int64_t i = 0; i < n; i++) {
            part.ids[i] = dets->ids[start + i];
            part.offsets[i + 1] = dets->offsets[start + i + 1] - first;
        }
        memcpy(part.xyxy, dets->xyxy + 4 * first, (size_t)(4 * part.total) * sizeof(float));
        memcpy(part.classes, dets->classes + first, (size_t)part.total * sizeof(int64_t));
        memcpy(part.scores, dets->scores + first, (size_t)part.total * sizeof(float));
        int rc = ns_det_boxes_write(w, "detections", &part, err);
        ns_det_boxes_free(&part);
        if (rc == 0 && images) rc = write_images(w, d, dets, start, n, err);
        if (rc < 0) return -1;
    }
    return 0;
}

// The evaluation's table: per-class AP and the means.
static int write_eval(FILE *f, const ns_det_set *gt, const ns_det_set *dt, int64_t k, char **labels, size_t nlabels,
                      double images_per_s, ns_err *err) {
    ns_det_class_ap *ap = calloc((size_t)k, sizeof *ap);
    ns_det_summary sum;
    if (!ap) return ns_errf(err, "out of memory");
    int rc = ns_det_evaluate(gt, dt, k, 100, ap, &sum, err);
    if (rc == 0) {
        fputs("class\tname\tgt\tdet\ttp50\tap50_voc_all\tap50_voc11\tcoco\n", f);
        for (int64_t c = 0; c < k; c++)
            fprintf(f, "%lld\t%s\t%lld\t%lld\t%lld\t%.4f\t%.4f\t%.4f\n", (long long)c,
                    (size_t)c < nlabels ? labels[c] : "-", (long long)ap[c].ngt, (long long)ap[c].ndet,
                    (long long)ap[c].tp50, ap[c].voc_all, ap[c].voc11, ap[c].coco);
        fprintf(f, "# mAP@0.5 (VOC all-point)\t%.4f\n# mAP@0.5 (VOC 11-point)\t%.4f\n# mAP@[.5:.95] (COCO)\t%.4f\n"
                   "# AP50 (COCO)\t%.4f\n# AP75 (COCO)\t%.4f\n# images/s\t%.1f\n",
                sum.map_voc_all, sum.map_voc11, sum.map_coco, sum.map50, sum.map75, images_per_s);
    }
    free(ap);
    return rc;
}

static int cmd_detect(struct cmdline *cmd, const char *path, int eval) {
    if (!cmd->model) ns_die_usage("%s needs --model MODEL", eval ? "eval" : "detect");
    const char *fmt = eval ? "eval" : cmd->format ? cmd->format : "tns";
    if (!eval && strcmp(fmt, "tns") && strcmp(fmt, "tsv") && strcmp(fmt, "json"))
        ns_die_usage("--format must be tns, tsv or json (%s)", fmt);
    ns_err err;
    ns_model m;
    load_model(&m, cmd->model);
    int64_t k, s;
    ns_cnet_shape(&m, &k, &s, &err);
    drawing dr = {0};
    if (cmd->draw && draw_begin(&dr, cmd->draw, cmd->draw_limit, &err) < 0) ns_die_err(&err);
    ns_det_reader *r = ns_det_reader_open(path, eval, &err);
    ns_output out;
    if (!r || ns_output_open(&out, cmd->output ? cmd->output : "-", &err) < 0) {
        draw_finish(&dr, 0, &err);
        ns_die_err(&err);
    }
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_det_set dt = {0};    // every detection, for eval and json
    ns_det_data d = {0};
    char **labels = NULL;
    size_t nlabels = 0;
    int64_t window = cmd->batch > WINDOW ? cmd->batch : WINDOW, images = 0, found = 0;
    double secs = 0;
    const ns_reporter *report = ns_stderr_reporter(cmd->quiet);
    int got, failed = 0;
    ns_report_begin(report, "images", 0);
    while (!failed && (got = ns_det_reader_next(r, window, &d, &err)) == 1) {
        if (images == 0) { // the stream's meta has been read: names and the output's head
            size_t stream_n;
            char **stream = ns_det_reader_labels(r, &stream_n);
            if (stream_n && (int64_t)stream_n != k) {
                failed = ns_errf(&err, "%s names %zu classes; the model %s has %lld", path, stream_n, cmd->model,
                                 (long long)k);
                break;
            }
            labels = m.labels ? m.labels : stream;
            nlabels = m.labels ? m.nlabels : stream_n;
            if (strcmp(fmt, "tsv") == 0) {
                fputs("id\tclass\tname\tscore\tx0\ty0\tx1\ty1\n", out.f);
            } else if (strcmp(fmt, "tns") == 0) {
                ns_map meta;
                ns_map_init(&meta);
                ns_map_str(&meta, "general.producer", "logo-det " NS_VERSION);
                if (nlabels) ns_map_strs(&meta, "general.labels", (const char *const *)labels, nlabels);
                ns_map_str(&meta, "detect.model", cmd->model);
                failed = ns_write_meta(&w, "", &meta, &err) < 0;
                ns_map_free(&meta);
            }
        }
        ns_det_boxes dets;
        double t;
        if (failed || (is_region(cmd) ? ns_region_detect : ns_cnet_detect)(&m, &d, cmd->batch, cmd->topk,
                                                                          (float)cmd->thresh, &dets, &t, NULL, &err) < 0) {
            failed = 1;
            break;
        }
        images += d.n, found += dets.total, secs += t;
        if (strcmp(fmt, "tns") == 0) failed = write_boxes(&w, &d, &dets, cmd->images, &err) < 0;
        else if (strcmp(fmt, "tsv") == 0) write_tsv(out.f, &dets, labels, nlabels);
        else failed = ns_det_set_add(&dt, &dets, &err) < 0;
        if (!failed && dr.dir) failed = draw_window(&dr, &d, &dets, labels, nlabels, &err) < 0;
        ns_det_boxes_free(&dets);
        ns_report_update(report, images);
    }
    ns_report_end(report);
    if (got < 0) failed = 1;
    if (!failed && !cmd->quiet)
        ns_warn("%lld images in %.2fs (%.0f images/s), %lld detections", (long long)images, secs,
                (double)images / secs, (long long)found);
    if (!failed && eval)
        failed = write_eval(out.f, ns_det_reader_seen(r), &dt, k, labels, nlabels, (double)images / secs, &err) < 0;
    if (!failed && strcmp(fmt, "json") == 0) {
        dt.labels = labels, dt.nlabels = nlabels;
        failed = ns_det_write_coco(&dt, out.f, &err) < 0;
        dt.labels = NULL, dt.nlabels = 0;
    }
    if (ns_output_finish(&out, &w, failed, &err) < 0 || draw_finish(&dr, !failed, &err) < 0) {
        draw_finish(&dr, 0, &err);
        ns_die_err(&err);
    }
    ns_det_set_free(&dt);
    ns_det_data_free(&d);
    ns_det_reader_close(r);
    ns_model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.width = 16, .epochs = 20, .batch = -1, .lr = 2e-3, .wd = -1, .seed = 1, .topk = 100,
                          .thresh = 0.01, .draw_limit = 16};
    const char *sub = argc > 1 ? argv[1] : "";
    int is_sub = !strcmp(sub, "train") || !strcmp(sub, "detect") || !strcmp(sub, "eval"), first;
    if (!is_sub && argc > 1 && sub[0] != '-') ns_die_usage("unknown subcommand '%s' (train, detect or eval)", sub);
    parse_cmdline(argc - is_sub, argv + is_sub, &cmd, &first); // --help, --version, usage errors
    if (!is_sub) ns_die_usage("give a subcommand: train, detect or eval");
    const char *path = argv[1 + first];
    if (strcmp(sub, "train") == 0) {
        if (cmd.batch < 0) cmd.batch = 32;
        return cmd_train(&cmd, path);
    }
    if (cmd.batch < 0) cmd.batch = 64;
    return cmd_detect(&cmd, path, strcmp(sub, "eval") == 0);
}
