// det-convert: detection annotations between detection streams (tns(5)) and
// the YOLO txt and COCO JSON layouts (lib/detect/convert.h).
//
//   det-convert --to yolo -o DIR [STREAM]
//   det-convert --to coco [-o FILE.json] [STREAM]
//   det-convert --from yolo [--size HxW] [-o STREAM] DIR
//   det-convert --from coco [-o STREAM] FILE.json
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "detect/convert.h"

struct cmdline {
    const char *to, *from, *output, *size;
    int batch, quiet;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"to", 't', NS_OPT_STR, &cmd->to, "FMT", "export a detection stream as yolo (a directory) or coco (JSON)", 0, 0},
        {"from", 'f', NS_OPT_STR, &cmd->from, "FMT", "import yolo (a directory) or coco (JSON) as a detection stream", 0, 0},
        {"size", 0, NS_OPT_STR, &cmd->size, "HxW", "yolo import: image size where no NAME.png gives it", 0, 0},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "import: images per boxes record (default 64)", 1, 1 << 20},
        {"output", 'o', NS_OPT_STR, &cmd->output, "PATH", "output file or (yolo) directory; default standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "accepted for symmetry; no progress is printed", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "--to FMT | --from FMT [options] [INPUT]",
        "Convert detection annotations between detection streams and the YOLO txt and\n"
        "COCO JSON layouts.",
        "YOLO: one NAME.txt per image, lines \"class cx cy w h [score]\" normalised to\n"
        "[0,1], and classes.txt with the class names. COCO: images, annotations with\n"
        "bbox [x, y, w, h] in pixels (and score for detections), categories; class k\n"
        "is the k-th category by id. Imports are checked like any boxes record.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!cmd->to == !cmd->from) ns_die_usage("give one of --to and --from");
    const char *fmt = cmd->to ? cmd->to : cmd->from;
    if (strcmp(fmt, "yolo") != 0 && strcmp(fmt, "coco") != 0) ns_die_usage("the format is yolo or coco (%s)", fmt);
    if (cmd->from && *first >= argc) ns_die_usage("--from needs an INPUT");
    if (cmd->to && strcmp(cmd->to, "yolo") == 0 && !cmd->output) ns_die_usage("--to yolo needs -o DIRECTORY");
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.batch = 64};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *input = first < argc ? argv[first] : "-";
    ns_err err;
    ns_det_set s;
    if (cmd.to) {
        if (ns_det_set_read(input, &s, &err) < 0) ns_die_err(&err);
        if (strcmp(cmd.to, "yolo") == 0) {
            if (ns_det_write_yolo(&s, cmd.output, &err) < 0) ns_die_err(&err);
        } else {
            ns_output out;
            if (ns_output_open(&out, cmd.output ? cmd.output : "-", &err) < 0) ns_die_err(&err);
            if (ns_det_write_coco(&s, out.f, &err) < 0) {
                ns_output_abort(&out);
                ns_die_err(&err);
            }
            if (ns_output_commit(&out, &err) < 0) ns_die_err(&err);
        }
        ns_det_set_free(&s);
        return 0;
    }
    int rc;
    if (strcmp(cmd.from, "yolo") == 0) {
        long long h = 0, w = 0;
        char extra;
        if (cmd.size && (sscanf(cmd.size, "%lldx%lld%c", &h, &w, &extra) != 2 || h < 1 || w < 1 || h > 1000000 ||
                         w > 1000000))
            ns_die_usage("--size must be HxW, e.g. 480x640 (%s)", cmd.size);
        rc = ns_det_read_yolo(input, h, w, &s, &err);
    } else {
        rc = ns_det_read_coco(input, &s, &err);
    }
    if (rc < 0) ns_die_err(&err);
    ns_output out;
    if (ns_output_open(&out, cmd.output ? cmd.output : "-", &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    rc = ns_det_set_write(&w, &s, cmd.batch, &err);
    ns_writer_free(&w);
    ns_det_set_free(&s);
    if (rc < 0) {
        ns_output_abort(&out);
        ns_die_err(&err);
    }
    if (ns_output_commit(&out, &err) < 0) ns_die_err(&err);
    return 0;
}
