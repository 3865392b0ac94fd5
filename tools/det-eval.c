// det-eval: scores detections against ground truth: per-class AP and mAP at
// IoU 0.5 (VOC 11-point and all-point) and COCO mAP@[.5:.95] with AP50, AP75
// and small/medium/large (lib/detect/eval.h says exactly how).
//
//   det-eval [options] GROUND_TRUTH DETECTIONS
//
// Both are detection streams (tns(5), "Detection streams"): boxes records,
// images optional; the detections carry scores. Images pair up by id.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "cli/cli.h"
#include "detect/eval.h"
#include "stream/tns.h"

struct cmdline {
    const char *output;
    int json, max_dets, quiet;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "one JSON object instead of the table", 0, 0},
        {"max-dets", 0, NS_OPT_INT, &cmd->max_dets, "N", "COCO: at most N detections per image and class (default 100)", 1, 1e9},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "accepted for symmetry; det-eval prints no progress", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] GROUND_TRUTH DETECTIONS",
        "Score detections against ground truth: per-class AP and mAP at IoU 0.5 (VOC\n"
        "11-point and all-point) and COCO mAP@[.5:.95], AP50, AP75, small/medium/large.",
        "Both inputs are detection streams (boxes records, tns(5)); images pair up by id\n"
        "and every detected image must be in the ground truth. The classes are those\n"
        "named by the ground truth's general.labels (else 0 .. the largest class seen).\n"
        "A class without ground truth has no AP (shown as -) and is left out of the\n"
        "means. The table is TSV: one row per class, then one row per mean.",
        2, 2,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
}

static void tsv_value(FILE *f, double v) {
    if (isnan(v)) fputs("\t-", f);
    else fprintf(f, "\t%.4f", v);
}

static void json_key_number(FILE *f, const char *key, double v, int comma) {
    fprintf(f, "%s\"%s\": ", comma ? ", " : "", key);
    ns_json_number(f, v);
}

static void write_json(FILE *f, const ns_det_set *gt, const ns_det_class_ap *ap, int64_t k,
                       const ns_det_summary *s) {
    fprintf(f, "{\"images\": %lld, \"classes_scored\": %d", (long long)gt->nimages, s->nclasses_scored);
    json_key_number(f, "map50_voc11", s->map_voc11, 1);
    json_key_number(f, "map50_voc_all", s->map_voc_all, 1);
    json_key_number(f, "map_coco", s->map_coco, 1);
    json_key_number(f, "ap50", s->map50, 1);
    json_key_number(f, "ap75", s->map75, 1);
    json_key_number(f, "ap_small", s->map_small, 1);
    json_key_number(f, "ap_medium", s->map_medium, 1);
    json_key_number(f, "ap_large", s->map_large, 1);
    fputs(", \"per_class\": [", f);
    for (int64_t c = 0; c < k; c++) {
        fprintf(f, "%s{\"class\": %lld, \"name\": ", c ? ", " : "", (long long)c);
        const char *name = (size_t)c < gt->nlabels ? gt->labels[c] : "";
        ns_json_string(f, name, strlen(name));
        fprintf(f, ", \"gt\": %lld, \"det\": %lld, \"tp50\": %lld", (long long)ap[c].ngt, (long long)ap[c].ndet,
                (long long)ap[c].tp50);
        json_key_number(f, "voc11", ap[c].voc11, 1);
        json_key_number(f, "voc_all", ap[c].voc_all, 1);
        json_key_number(f, "coco", ap[c].coco, 1);
        json_key_number(f, "ap50", ap[c].ap50, 1);
        json_key_number(f, "ap75", ap[c].ap75, 1);
        json_key_number(f, "small", ap[c].small, 1);
        json_key_number(f, "medium", ap[c].medium, 1);
        json_key_number(f, "large", ap[c].large, 1);
        fputc('}', f);
    }
    fputs("]}\n", f);
}

static void write_table(FILE *f, const ns_det_set *gt, const ns_det_class_ap *ap, int64_t k,
                        const ns_det_summary *s) {
    fputs("class\tname\tgt\tdet\ttp50\tap50_voc11\tap50_voc_all\tcoco\tap50\tap75\tsmall\tmedium\tlarge\n", f);
    for (int64_t c = 0; c < k; c++) {
        fprintf(f, "%lld\t%s\t%lld\t%lld\t%lld", (long long)c, (size_t)c < gt->nlabels ? gt->labels[c] : "-",
                (long long)ap[c].ngt, (long long)ap[c].ndet, (long long)ap[c].tp50);
        double v[8] = {ap[c].voc11, ap[c].voc_all, ap[c].coco, ap[c].ap50, ap[c].ap75, ap[c].small, ap[c].medium,
                       ap[c].large};
        for (int i = 0; i < 8; i++) tsv_value(f, v[i]);
        fputc('\n', f);
    }
    const struct { const char *name; double v; } rows[] = {
        {"mAP@0.5 (VOC 11-point)", s->map_voc11}, {"mAP@0.5 (VOC all-point)", s->map_voc_all},
        {"mAP@[.5:.95] (COCO)", s->map_coco},     {"AP50 (COCO)", s->map50},
        {"AP75 (COCO)", s->map75},                {"AP small (COCO)", s->map_small},
        {"AP medium (COCO)", s->map_medium},      {"AP large (COCO)", s->map_large},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        fprintf(f, "# %s", rows[i].name);
        tsv_value(f, rows[i].v);
        fputc('\n', f);
    }
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.output = "-", .max_dets = 100};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    ns_err err;
    ns_det_set gt, dt;
    if (ns_det_set_read(argv[first], &gt, &err) < 0) ns_die_err(&err);
    if (ns_det_set_read(argv[first + 1], &dt, &err) < 0) ns_die_err(&err);
    if (!dt.has_scores) ns_die("%s: detections need scores", argv[first + 1]);
    int64_t k = (int64_t)gt.nlabels;
    if (k == 0)
        for (int64_t j = 0; j < gt.nboxes; j++)
            if (gt.boxes[j].cls + 1 > k) k = gt.boxes[j].cls + 1;
    if (dt.nlabels && gt.nlabels && dt.nlabels != gt.nlabels)
        ns_die("%s names %zu classes, the ground truth %zu", argv[first + 1], dt.nlabels, gt.nlabels);
    if (k == 0) ns_die("%s: no ground-truth boxes and no class names", argv[first]);
    ns_det_class_ap *ap = calloc((size_t)k, sizeof *ap);
    if (!ap) ns_die("out of memory");
    ns_det_summary sum;
    if (ns_det_evaluate(&gt, &dt, k, cmd.max_dets, ap, &sum, &err) < 0) {
        ns_err_prefix(&err, "%s", argv[first + 1]);
        ns_die_err(&err);
    }
    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    if (cmd.json) write_json(out.f, &gt, ap, k, &sum);
    else write_table(out.f, &gt, ap, k, &sum);
    if (ns_output_commit(&out, &err) < 0) ns_die_err(&err);
    free(ap);
    ns_det_set_free(&gt);
    ns_det_set_free(&dt);
    return 0;
}
