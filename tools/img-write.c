// img-write: a TNS stream of image batches to images: a tar, tar.gz or zip in
// ImageFolder layout (CLASS/ID.png), a directory of PNG files, or one contact
// sheet PNG.
//
//   img-write [options] [FILE]     (no FILE, or "-": standard input)
//
// Reads 4-D tensor records (N, C, H, W) with C = 1..4; labels and ids come from
// each record's meta, class names and normalisation from the stream's meta.
// A boxes record (detection streams, tns(5)) before a batch: its boxes and
// class labels are drawn onto the images (lib/detect/draw.c).
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "detect/draw.h"
#include "stream/dataset.h"
#include "stream/image.h"
#include "stream/labels.h"
#include "stream/streaminfo.h"
#include "base/strset.h"
#include "stream/tns.h"

enum format { FMT_TAR, FMT_TGZ, FMT_ZIP, FMT_DIR, FMT_SHEET };
static const char *format_names[] = {"tar", "tar.gz", "zip", "dir", "sheet"};

struct cmdline {
    const char *format, *output, *name;
    int cols, quiet;
    int64_t limit;
};


static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static enum format choose_format(const struct cmdline *cmd) {
    if (cmd->format) {
        for (int f = 0; f <= FMT_SHEET; f++)
            if (strcmp(cmd->format, format_names[f]) == 0) return (enum format)f;
        ns_die_usage("--format must be tar, tar.gz, zip, dir or sheet (%s)", cmd->format);
    }
    const char *o = cmd->output;
    if (ends_with(o, ".tar.gz") || ends_with(o, ".tgz")) return FMT_TGZ;
    if (ends_with(o, ".zip")) return FMT_ZIP;
    if (ends_with(o, ".png")) return FMT_SHEET;
    if (ends_with(o, "/")) return FMT_DIR;
    return FMT_TAR;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"format", 'f', NS_OPT_STR, &cmd->format, "FMT", "tar, tar.gz, zip, dir (PNG files) or sheet (one PNG); default from -o's suffix, else tar", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "PATH", "archive or sheet file (written atomically), or directory; default standard output", 0, 0},
        {"name", 'n', NS_OPT_STR, &cmd->name, "GLOB", "only records whose name matches GLOB (default: every 4-D tensor)", 0, 0},
        {"limit", 0, NS_OPT_I64, &cmd->limit, "N", "write at most N images (a sheet defaults to 100)", 1, 1e18},
        {"cols", 0, NS_OPT_INT, &cmd->cols, "N", "images per row of a contact sheet (default 10)", 1, 1000},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] [FILE]",
        "Write the image batches of a TNS stream as an ImageFolder archive (tar, tar.gz,\n"
        "zip), a directory of PNG files, or a contact sheet.",
        "Each image goes to CLASS/ID.png: CLASS is the class name from general.labels\n"
        "('/' becomes '_'), or the label number, or 'unlabelled'; ID is the sample id\n"
        "from the record's meta, zero-padded. Values are mapped back through image.mean\n"
        "and image.std when the stream was normalised, then clamped to [0,1] and stored\n"
        "as 8-bit PNG. Archives are byte-for-byte reproducible.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
}


// "CLASS/000123.png" for sample j of a batch.
static void sample_path(char *buf, size_t cap, const ns_stream_info *info, int64_t label, int64_t id) {
    char cls[256];
    if (label >= 0 && (size_t)label < info->nlabels) snprintf(cls, sizeof cls, "%s", info->labels[label]);
    else if (label >= 0) snprintf(cls, sizeof cls, "%lld", (long long)label);
    else snprintf(cls, sizeof cls, "unlabelled");
    for (char *p = cls; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20) *p = '_';
    if (strcmp(cls, ".") == 0 || strcmp(cls, "..") == 0 || !cls[0]) strcpy(cls, "_");
    snprintf(buf, cap, "%s/%06lld.png", cls, (long long)id);
}

// Copies image j of a batch record into img, undoing the normalisation.
static int batch_image(const ns_record *rec, int64_t j, const ns_stream_info *info, ns_image *img,
                       ns_err *err) {
    int c = (int)rec->shape[1], h = (int)rec->shape[2], w = (int)rec->shape[3];
    if (ns_image_alloc(img, c, h, w, err) < 0) return -1;
    size_t plane = (size_t)c * (size_t)h * (size_t)w;
    for (size_t i = 0; i < plane; i++) {
        double v = ns_value_at(rec->data, rec->dtype, (size_t)j * plane + i);
        if (rec->dtype == NS_U8) v /= 255.0;
        size_t ch = i / ((size_t)h * (size_t)w);
        if (info->nnorm == c) v = v * info->std[ch] + info->mean[ch];
        else if (info->nnorm == 1) v = v * info->std[0] + info->mean[0];
        img->data[i] = (float)v;
    }
    return 0;
}

// Where encoded images go.
typedef struct sink {
    enum format format;
    ns_strset paths;  // entries written so far
    ns_archive_writer *archive;
    const char *dir;
    // contact sheet
    ns_image sheet;
    int cols, cell_h, cell_w;
    int64_t capacity;
} sink;

static int sink_add(sink *s, const char *path, const ns_image *img, int64_t index, ns_err *err) {
    int added = s->format == FMT_SHEET ? 1 : ns_strset_add(&s->paths, path);
    if (added < 0) return ns_errf(err, "out of memory");
    if (added == 0)
        return ns_errf(err, "%s written twice: the stream repeats sample ids (the same data twice?)", path);
    if (s->format == FMT_SHEET) {
        if (!s->sheet.data) {
            int rows = (int)((s->capacity + s->cols - 1) / s->cols);
            s->cell_h = img->h + 1;
            s->cell_w = img->w + 1;
            if (ns_image_alloc(&s->sheet, img->c == 2 || img->c == 1 ? 1 : 3,
                               rows * s->cell_h + 1, s->cols * s->cell_w + 1, err) < 0) return -1;
        }
        if (img->h + 1 != s->cell_h || img->w + 1 != s->cell_w)
            return ns_errf(err, "%s: a contact sheet needs images of one size", path);
        ns_image conv;
        if (ns_image_convert(img, s->sheet.c, &conv, err) < 0) return -1;
        int y0 = 1 + (int)(index / s->cols) * s->cell_h, x0 = 1 + (int)(index % s->cols) * s->cell_w;
        for (int c = 0; c < s->sheet.c; c++)
            for (int y = 0; y < img->h; y++)
                memcpy(s->sheet.data + ((size_t)c * s->sheet.h + (size_t)(y0 + y)) * s->sheet.w + x0,
                       conv.data + ((size_t)c * img->h + y) * img->w, (size_t)img->w * sizeof(float));
        ns_image_free(&conv);
        return 0;
    }
    if (s->format == FMT_DIR) {
        char full[4096], *slash;
        snprintf(full, sizeof full, "%s/%s", s->dir, path);
        slash = strrchr(full, '/');
        *slash = 0;
        if (mkdir(full, 0777) != 0 && errno != EEXIST)
            return ns_errf(err, "%s: cannot create directory (%s)", full, strerror(errno));
        *slash = '/';
        return ns_png_write_file(full, img, err);
    }
    void *png;
    size_t len;
    if (ns_png_encode(img, &png, &len, err) < 0) return -1;
    int rc = ns_archive_add(s->archive, path, png, len, err);
    free(png);
    return rc;
}

static int check_batch(const ns_record *rec, ns_err *err) {
    if (rec->ndim != 4 || rec->shape[1] < 1 || rec->shape[1] > 4 || rec->shape[2] < 1 ||
        rec->shape[3] < 1 || rec->shape[2] > NS_IMAGE_MAX_SIDE || rec->shape[3] > NS_IMAGE_MAX_SIDE) {
        char shape[128];
        ns_shape_format(shape, sizeof shape, rec->ndim, rec->shape);
        return ns_errf(err, "record %llu (%s) is %s, not images (N, C, H, W) with C 1..4",
                       (unsigned long long)rec->index, rec->name, shape);
    }
    return 0;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.output = "-", .cols = 10, .limit = -1};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *input = first < argc ? argv[first] : "-";
    sink s = {.format = choose_format(&cmd), .cols = cmd.cols};
    if (s.format == FMT_DIR && strcmp(cmd.output, "-") == 0)
        ns_die_usage("--format dir needs -o DIRECTORY");
    int64_t limit = cmd.limit >= 0 ? cmd.limit : s.format == FMT_SHEET ? 100 : -1;
    s.capacity = limit;

    ns_err err;
    ns_reader *r = ns_reader_open(input, &err);
    if (!r) ns_die_err(&err);
    ns_output out = {0};
    if (s.format == FMT_DIR) {
        s.dir = cmd.output;
        if (mkdir(s.dir, 0777) != 0 && errno != EEXIST)
            ns_die("%s: cannot create directory (%s)", s.dir, strerror(errno));
    } else {
        if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
        if (s.format != FMT_SHEET &&
            !(s.archive = ns_archive_writer_open(out.f, format_names[s.format], &err))) {
            ns_output_abort(&out);
            ns_die_err(&err);
        }
    }

    ns_stream_info info = {0};
    int64_t written = 0, *ids = NULL;
    int32_t *labels = NULL;
    int failed = 0, got, boxed = 0;
    ns_det_boxes boxes = {0};
    ns_record rec;
    ns_progress progress;
    ns_progress_start(&progress, "images", limit > 0 ? limit : 0, cmd.quiet);
    while (!failed && (limit < 0 || written < limit) && (got = ns_reader_next(r, &rec, &err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            failed = ns_stream_info_update(&info, &rec, &err) < 0;
            continue;
        }
        if (strcmp(rec.kind, NS_DET_KIND) == 0) { // boxes for the next batch
            ns_det_boxes_free(&boxes);
            failed = ns_det_boxes_read(&rec, (int64_t)info.nlabels, &boxes, &err) < 0;
            boxed = !failed;
            continue;
        }
        if (!rec.has_data || (cmd.name ? fnmatch(cmd.name, rec.name, 0) != 0 : rec.ndim != 4)) continue;
        if (check_batch(&rec, &err) < 0) { failed = 1; break; }
        if (boxed && ns_det_boxes_match_batch(&boxes, &rec, &err) < 0) { failed = 1; break; }
        int64_t n = rec.shape[0];
        size_t ni = 0;
        labels = realloc(labels, (size_t)(n ? n : 1) * sizeof *labels);
        ids = realloc(ids, (size_t)(n ? n : 1) * sizeof *ids);
        if (!labels || !ids) ns_die("out of memory");
        if (ns_record_labels(&rec, n, info.labels ? (int64_t)info.nlabels : NS_CLASSES_UNKNOWN, labels, &err) < 0) {
            failed = ns_err_prefix(&err, "%s", ns_reader_label(r)) < 0;
            break;
        }
        if (ns_obj_i64s(rec.meta, "ids", ids, (size_t)n, &ni, &err) < 0) { failed = 1; break; }
        for (int64_t j = 0; j < n && !failed && (limit < 0 || written < limit); j++) {
            ns_image img;
            char path[512];
            sample_path(path, sizeof path, &info, labels[j],
                        ni == (size_t)n ? ids[j] : written);
            failed = batch_image(&rec, j, &info, &img, &err) < 0 ||
                     (boxed && ns_det_draw_image(&img, &boxes, j, info.labels, info.nlabels, &err) < 0) ||
                     sink_add(&s, path, &img, written, &err) < 0;
            ns_image_free(&img);
            written++;
        }
        ns_progress_update(&progress, written);
        boxed = 0;
    }
    ns_det_boxes_free(&boxes);
    if (!failed && got < 0) failed = 1;
    ns_progress_end(&progress);
    if (!failed && written == 0) failed = ns_errf(&err, "%s: no images in the stream", ns_reader_label(r)) < 0;
    ns_reader_close(r);
    free(labels);
    free(ids);
    ns_stream_info_free(&info);
    if (s.archive && failed) ns_archive_writer_abort(s.archive);
    else if (s.archive && ns_archive_writer_close(s.archive, &err) < 0) failed = 1;
    ns_strset_free(&s.paths);
    if (!failed && s.format == FMT_SHEET && written < s.capacity) { // drop unused rows
        int rows = (int)((written + s.cols - 1) / s.cols), h = rows * s.cell_h + 1;
        for (int c = 1; c < s.sheet.c; c++)
            memmove(s.sheet.data + (size_t)c * h * s.sheet.w,
                    s.sheet.data + (size_t)c * s.sheet.h * s.sheet.w, (size_t)h * s.sheet.w * sizeof(float));
        s.sheet.h = h;
    }
    if (!failed && s.format == FMT_SHEET) {
        void *png;
        size_t len;
        failed = ns_png_encode(&s.sheet, &png, &len, &err) < 0;
        if (!failed) {
            if (fwrite(png, 1, len, out.f) != len) failed = ns_errf(&err, "write error") < 0;
            free(png);
        }
    }
    ns_image_free(&s.sheet);
    if (s.format != FMT_DIR && ns_output_finish(&out, NULL, failed, &err) < 0) ns_die_err(&err);
    if (failed) ns_die_err(&err);
    return 0;
}
