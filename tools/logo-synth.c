// logo-synth: synthetic logo-detection data. Composes scenes from logo
// artwork (one PNG per brand, or built-in shapes) over procedural or
// product-like backgrounds and writes a detection stream: a meta record with
// the class names, then per batch a boxes record and its image batch
// (tns(5), "Detection streams"). The scene code is lib/detect/synth.c.
//
// With --crops it writes a classification stream instead: one task logo per
// image, the image labelled with its brand, no boxes records.
//
//   logo-synth [options] [ARTWORK_DIR]
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "detect/boxes.h"
#include "detect/synth.h"
#include "stream/tns.h"

struct cmdline {
    const char *preset, *split, *clutter, *output;
    int classes, shapes, size, max_logos, batch, crops, quiet;
    int64_t count, seed, brand_seed;
    double min_scale, max_scale, rotate, p_recolor, p_occlude, p_blur, p_distractor;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"preset", 'p', NS_OPT_STR, &cmd->preset, "NAME", "logos-18 or logos-160: the class count of LOGO-Net's two sets", 0, 0},
        {"classes", 'k', NS_OPT_INT, &cmd->classes, "K", "number of task classes (brands); overrides --preset", 1, 100000},
        {"shapes", 0, NS_OPT_INT, &cmd->shapes, "N", "use N built-in brands (identicon shapes) instead of ARTWORK_DIR", 1, 100000},
        {"split", 0, NS_OPT_STR, &cmd->split, "NAME", "train, test (other scenes, same brands) or heldout (other brands); default train", 0, 0},
        {"count", 'n', NS_OPT_I64, &cmd->count, "N", "images to write (default 1000)", 1, 1e9},
        {"size", 's', NS_OPT_INT, &cmd->size, "S", "image side in pixels (default 128)", 16, 4096},
        {"crops", 0, NS_OPT_FLAG, &cmd->crops, NULL, "classification data: one task logo per image, labelled by its brand, no boxes", 0, 0},
        {"max-logos", 0, NS_OPT_INT, &cmd->max_logos, "N", "1 to N task logos per image (default 4)", 1, 64},
        {"min-scale", 0, NS_OPT_DOUBLE, &cmd->min_scale, "F", "smallest logo, longer side as a fraction of S (default 0.08; --crops 0.5)", 0.001, 1},
        {"max-scale", 0, NS_OPT_DOUBLE, &cmd->max_scale, "F", "largest logo (default 0.5; --crops 0.9)", 0.001, 1},
        {"rotate", 0, NS_OPT_DOUBLE, &cmd->rotate, "DEG", "rotation uniform in [-DEG, DEG] (default 30)", 0, 180},
        {"recolor", 0, NS_OPT_DOUBLE, &cmd->p_recolor, "P", "probability of a random colour (default 0.3)", 0, 1},
        {"occlude", 0, NS_OPT_DOUBLE, &cmd->p_occlude, "P", "probability of a partial occlusion (default 0.2)", 0, 1},
        {"blur", 0, NS_OPT_DOUBLE, &cmd->p_blur, "P", "probability of a blurred logo (default 0.2)", 0, 1},
        {"distractors", 0, NS_OPT_DOUBLE, &cmd->p_distractor, "P", "probability of distractor logos in an image (default 0.3; --crops 0)", 0, 1},
        {"clutter", 0, NS_OPT_STR, &cmd->clutter, "IMAGES", "product-like clutter from an image dataset (Fashion-MNIST IDX, ...)", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "N", "scene seed (default 1)", 0, 9e18},
        {"brand-seed", 0, NS_OPT_I64, &cmd->brand_seed, "N", "seed of the choice of task brands (default 1)", 0, 9e18},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "images per batch record (default 64)", 1, 65536},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] [ARTWORK_DIR]",
        "Compose synthetic logo-detection scenes from logo artwork and write them as a\n"
        "detection stream (boxes records with their image batches).",
        "ARTWORK_DIR holds one PNG per brand (BRAND.png, alpha = the logo); the task's\n"
        "classes are K brands chosen by --brand-seed, the other brands appear as\n"
        "unlabelled distractors. Each box is the tight box of the pasted logo's alpha.\n"
        "train and test draw different scenes of the same brands (scene streams 0 and\n"
        "1 of --seed); heldout draws scenes of K brands the task never sees, with the\n"
        "task's brands as distractors. --crops writes labelled images with one logo\n"
        "each (a classification stream, as img-read's) for recognition of seen and\n"
        "held-out brands.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (cmd->crops && cmd->max_logos > 1) ns_die_usage("--crops puts one logo in each image, not --max-logos %d", cmd->max_logos);
}

static int split_stream(const char *split) {
    if (strcmp(split, "train") == 0) return 0;
    if (strcmp(split, "test") == 0) return 1;
    if (strcmp(split, "heldout") == 0) return 2;
    ns_die_usage("--split must be train, test or heldout (%s)", split);
}

static int preset_classes(const char *preset) {
    if (strcmp(preset, "logos-18") == 0) return 18;
    if (strcmp(preset, "logos-160") == 0) return 160;
    ns_die_usage("--preset must be logos-18 or logos-160 (%s)", preset);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.split = "train", .count = 1000, .seed = 1, .brand_seed = 1, .batch = 64,
                          .output = "-"};
    ns_synth_config cfg;
    ns_synth_config_default(&cfg);
    cmd.size = cfg.size;
    cmd.rotate = cfg.max_rotate;
    cmd.p_recolor = cfg.p_recolor;
    cmd.p_occlude = cfg.p_occlude;
    cmd.p_blur = cfg.p_blur;
    cmd.min_scale = cmd.max_scale = cmd.p_distractor = -1; // defaults depend on --crops
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    if (!cmd.max_logos) cmd.max_logos = cmd.crops ? 1 : cfg.max_logos;
    if (cmd.min_scale < 0) cmd.min_scale = cmd.crops ? 0.5 : cfg.min_scale;
    if (cmd.max_scale < 0) cmd.max_scale = cmd.crops ? 0.9 : cfg.max_scale;
    if (cmd.p_distractor < 0) cmd.p_distractor = cmd.crops ? 0 : cfg.p_distractor;
    const char *dir = first < argc ? argv[first] : NULL;
    if (!dir == !cmd.shapes) ns_die_usage("give ARTWORK_DIR or --shapes N (one of them)");
    int stream = split_stream(cmd.split);
    int k = cmd.classes ? cmd.classes : cmd.preset ? preset_classes(cmd.preset) : 18;
    if (cmd.min_scale > cmd.max_scale)
        ns_die_usage("--min-scale %g is above --max-scale %g", cmd.min_scale, cmd.max_scale);
    cfg.size = cmd.size;
    cfg.max_logos = cmd.max_logos;
    cfg.min_scale = cmd.min_scale;
    cfg.max_scale = cmd.max_scale;
    cfg.max_rotate = cmd.rotate;
    cfg.p_recolor = cmd.p_recolor;
    cfg.p_occlude = cmd.p_occlude;
    cfg.p_blur = cmd.p_blur;
    cfg.p_distractor = cmd.p_distractor;
    cfg.seed = (uint64_t)cmd.seed;
    cfg.stream = (uint64_t)stream;

    ns_err err;
    ns_artwork art;
    if ((dir ? ns_artwork_load_dir(dir, &art, &err) : ns_artwork_builtin(cmd.shapes, &art, &err)) < 0)
        ns_die_err(&err);
    ns_synth_split split;
    if (ns_synth_split_make(&art, k, (uint64_t)cmd.brand_seed, stream == 2, &split, &err) < 0) ns_die_err(&err);
    if (cmd.clutter && !(cfg.clutter = ns_dataset_open(cmd.clutter, NULL, &err))) ns_die_err(&err);

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "logo-synth " NS_VERSION);
    const char **names = malloc((size_t)(art.n + 1) * sizeof *names);
    if (!names) ns_die("out of memory");
    for (int c = 0; c < split.ntask; c++) names[c] = art.items[split.task[c]].name;
    ns_map_strs(&meta, "general.labels", names, (size_t)split.ntask);
    ns_map_i64(&meta, "general.count", cmd.count);
    if (dir) ns_map_str(&meta, "general.source", dir);
    ns_map_str(&meta, "detect.split", cmd.split);
    if (cmd.crops) ns_map_str(&meta, "detect.crops", "one logo per image, labelled");
    if (cmd.preset) ns_map_str(&meta, "detect.preset", cmd.preset);
    for (int c = 0; c < split.nothers; c++) names[c] = art.items[split.others[c]].name;
    ns_map_strs(&meta, "detect.distractors", names, (size_t)split.nothers);
    free(names);
    int failed = ns_write_meta(&w, "", &meta, &err) < 0;
    ns_map_free(&meta);

    ns_det_box *scene_boxes = malloc((size_t)cfg.max_logos * sizeof *scene_boxes);
    ns_det_box *all = malloc((size_t)cmd.batch * cfg.max_logos * sizeof *all);
    if (!scene_boxes || !all) ns_die("out of memory");
    ns_progress prog;
    ns_progress_start(&prog, "images", cmd.count, cmd.quiet);
    for (int64_t start = 0; start < cmd.count && !failed; start += cmd.batch) {
        int64_t n = cmd.count - start < cmd.batch ? cmd.count - start : cmd.batch, total = 0;
        ns_tensor images;
        int64_t shape[4] = {n, 3, cfg.size, cfg.size};
        if (ns_tensor_alloc(&images, NS_F32, 4, shape, &err) < 0) { failed = 1; break; }
        int64_t *counts = calloc((size_t)n, sizeof *counts), *ids = calloc((size_t)n, sizeof *ids),
                *labels = calloc((size_t)n, sizeof *labels);
        if (!counts || !ids || !labels) ns_die("out of memory");
        size_t plane = (size_t)3 * cfg.size * cfg.size;
        for (int64_t i = 0; i < n && !failed; i++) {
            ns_image img;
            int nb;
            if (ns_synth_scene(&art, &split, &cfg, start + i, &img, scene_boxes, &nb, &err) < 0) { failed = 1; break; }
            memcpy((float *)images.data + (size_t)i * plane, img.data, plane * sizeof(float));
            ns_image_free(&img);
            memcpy(all + total, scene_boxes, (size_t)nb * sizeof *all);
            total += nb;
            counts[i] = nb;
            ids[i] = start + i;
            labels[i] = cmd.crops ? all[total - 1].cls : -1; // crops: the scene's one task logo
        }
        ns_det_boxes b;
        if (failed || cmd.crops) {
            // no boxes record: a classification stream
        } else if (ns_det_boxes_alloc(&b, n, total, 0, &err) == 0) {
            b.h = b.w = cfg.size;
            for (int64_t i = 0; i < n; i++) {
                b.ids[i] = ids[i];
                b.offsets[i + 1] = b.offsets[i] + counts[i];
            }
            for (int64_t j = 0; j < total; j++) {
                float q[4] = {all[j].x0, all[j].y0, all[j].x1, all[j].y1};
                memcpy(b.xyxy + 4 * j, q, sizeof q);
                b.classes[j] = all[j].cls;
            }
            failed = ns_det_boxes_validate(&b, split.ntask, &err) < 0 || ns_det_boxes_write(&w, "boxes", &b, &err) < 0;
            ns_det_boxes_free(&b);
        } else {
            failed = 1;
        }
        if (!failed) {
            ns_map bm;
            ns_map_init(&bm);
            ns_map_i64s(&bm, "labels", labels, (size_t)n);
            ns_map_i64s(&bm, "ids", ids, (size_t)n);
            failed = ns_write_tensor(&w, "images", &images, &bm, &err) < 0;
            ns_map_free(&bm);
        }
        free(counts);
        free(ids);
        free(labels);
        ns_tensor_free(&images);
        ns_progress_update(&prog, start + n);
    }
    ns_progress_end(&prog);
    ns_writer_free(&w);
    free(scene_boxes);
    free(all);
    if (cfg.clutter) ns_dataset_close(cfg.clutter);
    ns_synth_split_free(&split);
    ns_artwork_free(&art);
    if (failed) {
        ns_output_abort(&out);
        ns_die_err(&err);
    }
    if (ns_output_commit(&out, &err) < 0) ns_die_err(&err);
    return 0;
}
