// img-read: a labelled image dataset to a TNS stream of image batches.
//
//   img-read [options] SOURCE [LABELS]
//
// SOURCE is an ImageFolder directory (CLASS/NAME.png), a tar, tar.gz or zip in
// that layout, or an IDX image file (plain or gzip'd) with its IDX labels. The
// stream is a meta record (class names, source, normalisation) followed by
// records "images" (N, C, H, W) whose meta holds the N labels and sample ids.
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/blas.h"
#include "base/lines.h"
#include "base/strset.h"
#include "cli/cli.h"
#include "stream/dataset.h"
#include "stream/streaminfo.h"
#include "base/rng.h"
#include "stream/tns.h"

#define MAX_CHANNELS 4

struct cmdline {
    int batch, gray, rgb, shuffle, quiet, no_labels;
    int64_t limit, seed;
    ns_shard shard;
    const char *size, *crop, *mean, *std, *dtype, *output, *labels, *classes;
    const char *source;
};

// What every image becomes before batching.
typedef struct transform {
    int channels;                 // 0: as the first image
    int resize_h, resize_w;       // 0: keep
    int crop_h, crop_w;           // 0: no crop
    int nmean;
    float mean[MAX_CHANNELS], std[MAX_CHANNELS];
} transform;

static void parse_hw(const char *opt, const char *s, int *h, int *w) {
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (*end == 'x' || *end == 'X') b = strtol(end + 1, &end, 10);
    if (*end || a <= 0 || b <= 0 || a > NS_IMAGE_MAX_SIDE || b > NS_IMAGE_MAX_SIDE)
        ns_die_usage("--%s takes HxW or N, positive sizes up to %d (%s)", opt, NS_IMAGE_MAX_SIDE, s);
    *h = (int)a;
    *w = (int)b;
}

static int parse_floats(const char *opt, const char *s, float *out) {
    double v[MAX_CHANNELS];
    ns_err err;
    int n = ns_parse_doubles(s, v, MAX_CHANNELS, &err);
    if (n < 0) ns_die_usage("--%s: %s", opt, err.msg);
    for (int i = 0; i < n; i++) out[i] = (float)v[i];
    return n;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, transform *tf) {
    const ns_opt opts[] = {
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "images per record (default 256)", 1, 1 << 20},
        {"size", 's', NS_OPT_STR, &cmd->size, "HxW", "resize every image (bilinear) to H x W, or N x N", 0, 0},
        {"crop", 'c', NS_OPT_STR, &cmd->crop, "HxW", "centre-crop to H x W after resizing", 0, 0},
        {"gray", 'g', NS_OPT_FLAG, &cmd->gray, NULL, "convert to 1 channel (luma)", 0, 0},
        {"rgb", 0, NS_OPT_FLAG, &cmd->rgb, NULL, "convert to 3 channels", 0, 0},
        {"mean", 0, NS_OPT_STR, &cmd->mean, "M[,M..]", "subtract a per-channel mean (values in [0,1] units)", 0, 0},
        {"std", 0, NS_OPT_STR, &cmd->std, "S[,S..]", "divide by a per-channel std, after --mean", 0, 0},
        {"limit", 0, NS_OPT_I64, &cmd->limit, "N", "read at most N images (after shuffling)", 1, 1e18},
        {"shuffle", 0, NS_OPT_FLAG, &cmd->shuffle, NULL, "emit the images in a random order", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed for --shuffle (default 0)", 0, 0},
        {"shard", 0, NS_OPT_SHARD, &cmd->shard, "I/N", "only the images whose id (index in the dataset) is I modulo N", 0, 0},
        {"dtype", 't', NS_OPT_STR, &cmd->dtype, "TYPE", "f32 (default, values in [0,1]) or u8 (0..255, no --mean/--std)", 0, 0},
        {"labels", 'l', NS_OPT_STR, &cmd->labels, "FILE", "IDX labels for IDX images (default: found beside them)", 0, 0},
        {"classes", 0, NS_OPT_STR, &cmd->classes, "FILE", "class names, one per line, replacing the dataset's (IDX has only numbers)", 0, 0},
        {"no-labels", 0, NS_OPT_FLAG, &cmd->no_labels, NULL, "do not look for IDX labels beside the images", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] SOURCE [LABELS]",
        "Read a labelled image dataset (ImageFolder directory, tar/tar.gz/zip archive,\n"
        "or IDX files) into a TNS stream of image batches.",
        "Classes are sorted by name and files by path within a class, as torchvision's\n"
        "ImageFolder does. IDX labels are found beside the images when their names follow\n"
        "MNIST's (train-images-idx3-ubyte -> train-labels-idx1-ubyte). Every image must\n"
        "end up the same size: use --size when the dataset's sizes differ.",
        1, 2,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->source = argv[first];
    if (first + 1 < argc) {
        if (cmd->labels) ns_die_usage("labels given twice (%s and --labels)", argv[first + 1]);
        cmd->labels = argv[first + 1];
    }
    if (cmd->gray && cmd->rgb) ns_die_usage("--gray and --rgb cannot be combined");
    tf->channels = cmd->gray ? 1 : cmd->rgb ? 3 : 0;
    if (cmd->size) parse_hw("size", cmd->size, &tf->resize_h, &tf->resize_w);
    if (cmd->crop) parse_hw("crop", cmd->crop, &tf->crop_h, &tf->crop_w);
    for (int c = 0; c < MAX_CHANNELS; c++) tf->mean[c] = 0, tf->std[c] = 1;
    int nm = cmd->mean ? parse_floats("mean", cmd->mean, tf->mean) : 0;
    int ns = cmd->std ? parse_floats("std", cmd->std, tf->std) : 0;
    for (int c = 0; c < ns; c++)
        if (tf->std[c] <= 0) ns_die_usage("--std values must be positive (%s)", cmd->std);
    if (nm && ns && nm != ns) ns_die_usage("--mean has %d values but --std has %d", nm, ns);
    tf->nmean = nm > ns ? nm : ns;
    if (tf->nmean == 1) // one value applies to every channel
        for (int c = 1; c < MAX_CHANNELS; c++) tf->mean[c] = tf->mean[0], tf->std[c] = tf->std[0];
    if (cmd->dtype && strcmp(cmd->dtype, "f32") != 0 && strcmp(cmd->dtype, "u8") != 0)
        ns_die_usage("--dtype must be f32 or u8 (%s)", cmd->dtype);
    if (cmd->dtype && strcmp(cmd->dtype, "u8") == 0 && tf->nmean)
        ns_die_usage("--dtype u8 stores 0..255 and cannot hold normalised values");
}

// MNIST naming: ".../train-images-idx3-ubyte[.gz]" has ".../train-labels-idx1-ubyte[.gz]".
static char *labels_beside(const char *images) {
    const char *at = strstr(images, "images-idx3-ubyte");
    if (!at) return NULL;
    char *path = strdup(images);
    if (!path) return NULL;
    memcpy(path + (at - images), "labels-idx1-ubyte", 17);
    if (access(path, R_OK) == 0) return path;
    free(path);
    return NULL;
}

// Decodes sample i and applies the transform. *img is allocated.
static int load_sample(ns_dataset *ds, int64_t i, const transform *tf, int channels,
                       ns_image *out, int *label, ns_err *err) {
    ns_image img = {0}, tmp = {0};
    if (ns_dataset_get(ds, i, &img, label, err) < 0) return -1;
    int rc = 0;
    if (img.c != channels) {
        rc = ns_image_convert(&img, channels, &tmp, err);
        ns_image_free(&img);
        img = tmp;
    }
    if (rc == 0 && tf->resize_h && (img.h != tf->resize_h || img.w != tf->resize_w)) {
        rc = ns_image_resize(&img, tf->resize_h, tf->resize_w, &tmp, err);
        ns_image_free(&img);
        img = tmp;
    }
    if (rc == 0 && tf->crop_h) {
        rc = ns_image_center_crop(&img, tf->crop_h, tf->crop_w, &tmp, err);
        ns_image_free(&img);
        img = tmp;
    }
    if (rc == 0 && tf->nmean) ns_image_normalize(&img, tf->mean, tf->std);
    if (rc < 0) {
        ns_image_free(&img);
        return ns_err_prefix(err, "%s", ns_dataset_sample_name(ds, i));
    }
    *out = img;
    return 0;
}

// Reads one class name per line (blank lines skipped) into *names; a name
// given twice is an error (two classes would read as one).
static int read_class_names(const char *path, char ***names, int *n, ns_err *err) {
    ns_lines in;
    if (ns_lines_open(&in, path, 0, err) < 0) return -1;
    ns_strset seen = {0};
    char *line;
    size_t len;
    int got = 0, rc = 0;
    *names = NULL;
    *n = 0;
    while (rc == 0 && (got = ns_lines_next(&in, &line, &len, err)) == 1) {
        if (len == 0) continue;
        int added = ns_strset_add(&seen, line);
        if (added == 0) {
            rc = ns_errf(err, "%s:%lld: class name '%s' given twice", path, (long long)in.lineno, line);
            break;
        }
        char **grown = added < 0 ? NULL : realloc(*names, (size_t)(*n + 1) * sizeof **names);
        if (grown) *names = grown;
        if (!grown || !(grown[*n] = strdup(line))) {
            rc = ns_errf(err, "out of memory");
            break;
        }
        (*n)++;
    }
    if (got < 0) rc = -1;
    ns_strset_free(&seen);
    ns_lines_close(&in);
    if (rc < 0) {
        ns_strings_free(*names, (size_t)*n);
        *names = NULL;
        *n = 0;
    }
    return rc;
}

// given: class names from --classes (already checked against the dataset) or NULL.
static int write_stream_meta(ns_writer *w, const ns_dataset *ds, const struct cmdline *cmd,
                             const transform *tf, int channels, char **given, int64_t count,
                             ns_err *err) {
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "img-read " NS_VERSION);
    ns_map_str(&meta, "general.source", cmd->source);
    int k = ns_dataset_num_classes(ds);
    const char **names = malloc((size_t)(k ? k : 1) * sizeof *names);
    if (!names) ns_die("out of memory");
    for (int i = 0; i < k; i++) names[i] = given ? given[i] : ns_dataset_class_name(ds, i);
    ns_map_strs(&meta, "general.labels", names, (size_t)k);
    free(names);
    ns_map_i64(&meta, "general.count", count);
    ns_map_shard(&meta, &cmd->shard, cmd->batch);
    if (tf->nmean) {
        double mean[MAX_CHANNELS], std[MAX_CHANNELS];
        for (int c = 0; c < channels; c++) mean[c] = tf->mean[c], std[c] = tf->std[c];
        ns_map_f64s(&meta, "image.mean", mean, (size_t)channels);
        ns_map_f64s(&meta, "image.std", std, (size_t)channels);
    }
    int rc = ns_write_meta(w, "", &meta, err);
    ns_map_free(&meta);
    return rc;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.batch = 256, .limit = -1, .output = "-"};
    transform tf = {0};
    parse_cmdline(argc, argv, &cmd, &tf);

    ns_err err;
    char *found_labels = NULL;
    if (!cmd.labels && !cmd.no_labels) cmd.labels = found_labels = labels_beside(cmd.source);
    ns_dataset *ds = ns_dataset_open(cmd.source, cmd.labels, &err);
    if (!ds) ns_die_err(&err);
    int64_t total = ns_dataset_size(ds);
    int64_t *order = malloc((size_t)(total ? total : 1) * sizeof *order);
    if (!order) ns_die("out of memory (%lld samples)", (long long)total);
    for (int64_t i = 0; i < total; i++) order[i] = i;
    if (cmd.shuffle) {
        ns_rng rng;
        ns_rng_seed(&rng, (uint64_t)cmd.seed);
        ns_rng_shuffle(&rng, order, total);
    }
    int64_t count = cmd.limit >= 0 && cmd.limit < total ? cmd.limit : total;

    // The first image of the whole stream fixes channels and size, also for a
    // shard, so that the shards of a stream agree with it.
    int channels = tf.channels, h = 0, w = 0;
    if (count > 0) {
        ns_image first;
        int label;
        if (ns_dataset_get(ds, order[0], &first, &label, &err) < 0)
            ns_die_err(&err);
        if (!channels) channels = first.c == 1 || first.c == 2 ? 1 : 3;
        h = tf.crop_h ? tf.crop_h : tf.resize_h ? tf.resize_h : first.h;
        w = tf.crop_w ? tf.crop_w : tf.resize_w ? tf.resize_w : first.w;
        ns_image_free(&first);
    }
    int64_t kept = 0;
    for (int64_t i = 0; i < count; i++)
        if (ns_shard_keeps(&cmd.shard, order[i])) order[kept++] = order[i];
    count = kept;
    if (tf.nmean > 1 && tf.nmean != channels)
        ns_die_usage("--mean/--std have %d values for %d channels", tf.nmean, channels);
    int u8 = cmd.dtype && strcmp(cmd.dtype, "u8") == 0;
    char **class_names = NULL;
    int nclass_names = 0;
    if (cmd.classes) {
        if (read_class_names(cmd.classes, &class_names, &nclass_names, &err) < 0) ns_die_err(&err);
        if (nclass_names != ns_dataset_num_classes(ds))
            ns_die("%s: %d class names for a dataset of %d classes", cmd.classes, nclass_names,
                   ns_dataset_num_classes(ds));
    }

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer wr;
    ns_writer_init(&wr, out.f);
    int failed = write_stream_meta(&wr, ds, &cmd, &tf, channels, class_names, count, &err) < 0;
    ns_strings_free(class_names, (size_t)nclass_names);

    size_t plane = (size_t)channels * (size_t)h * (size_t)w;
    float *pixels = malloc((size_t)cmd.batch * plane * sizeof *pixels);
    int64_t *labels = malloc((size_t)cmd.batch * sizeof *labels);
    int *ok = malloc((size_t)cmd.batch * sizeof *ok);
    ns_err *errs = malloc((size_t)cmd.batch * sizeof *errs);
    if (!pixels || !labels || !ok || !errs) ns_die("out of memory (batch of %d)", cmd.batch);
    ns_threads(); // applies NETSMITH_THREADS to the decoding threads below
    ns_progress progress;
    ns_progress_start(&progress, "images", count, cmd.quiet);
    for (int64_t start = 0; start < count && !failed; start += cmd.batch) {
        int n = (int)(count - start < cmd.batch ? count - start : cmd.batch);
        #pragma omp parallel for schedule(dynamic, 8)
        for (int j = 0; j < n; j++) {
            ns_image img;
            int label;
            ok[j] = load_sample(ds, order[start + j], &tf, channels, &img, &label, &errs[j]) == 0;
            if (!ok[j]) continue;
            if (img.h != h || img.w != w) {
                ns_errf(&errs[j], "%s: image is %dx%d, the stream's images are %dx%d (use --size)",
                        ns_dataset_sample_name(ds, order[start + j]), img.h, img.w, h, w);
                ok[j] = 0;
            } else {
                memcpy(pixels + (size_t)j * plane, img.data, plane * sizeof *pixels);
                labels[j] = label;
            }
            ns_image_free(&img);
        }
        for (int j = 0; j < n && !failed; j++)
            if (!ok[j]) { err = errs[j]; failed = 1; }
        if (failed) break;
        ns_tensor t;
        int64_t shape[4] = {n, channels, h, w};
        if (ns_tensor_alloc(&t, u8 ? NS_U8 : NS_F32, 4, shape, &err) < 0) { failed = 1; break; }
        if (u8) {
            for (size_t i = 0; i < (size_t)n * plane; i++) pixels[i] *= 255.0f;
            ns_convert_from_f32(t.data, pixels, NS_U8, (size_t)n * plane);
        } else {
            memcpy(t.data, pixels, (size_t)n * plane * sizeof *pixels);
        }
        ns_map meta;
        ns_map_init(&meta);
        ns_map_i64s(&meta, "labels", labels, (size_t)n);
        ns_map_i64s(&meta, "ids", order + start, (size_t)n);
        failed = ns_write_tensor(&wr, "images", &t, &meta, &err) < 0;
        ns_map_free(&meta);
        ns_tensor_free(&t);
        ns_progress_update(&progress, start + n);
    }
    ns_progress_end(&progress);
    free(pixels);
    free(labels);
    free(ok);
    free(errs);
    free(order);
    free(found_labels);
    ns_dataset_close(ds);
    if (ns_output_finish(&out, &wr, failed, &err) < 0) ns_die_err(&err);
    return 0;
}
