// concept-bank: which concepts each image of an image stream has, as a
// concept-bank stream (N, K) u8 per batch (1 yes, 0 no, 2 unknown), and
// optionally a caption per image made from them.
//
//   concept-bank [--attributes TABLE] [--thresholds-from REF] [options] [IMAGES]
//
// Concepts, in stream order: the attribute table's columns (kind "class"),
// then bright, dark, patterned, plain, large, small (kind "pixel").
// Dimensions: N images per batch, K concepts, A attributes, S statistics.
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cav/concepts.h"
#include "stream/labels.h"
#include "stream/streaminfo.h"
#include "stream/tns.h"

struct cmdline {
    const char *attributes, *thresholds_from, *captions, *output;
    double quantile, object_level, dropout;
    int64_t seed;
    int quiet;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"attributes", 'a', NS_OPT_STR, &cmd->attributes, "TABLE", "class-level concepts: a class<TAB>attr... table of 0/1 per class", 0, 0},
        {"quantile", 0, NS_OPT_DOUBLE, &cmd->quantile, "Q", "pixel concepts: top Q of a statistic = 1, bottom Q = 0, between = 2 (default 0.3)", 1e-6, 0.5},
        {"thresholds-from", 't', NS_OPT_STR, &cmd->thresholds_from, "REF", "reuse the thresholds of an earlier concept-bank output (train thresholds for a test set)", 0, 0},
        {"object-level", 0, NS_OPT_DOUBLE, &cmd->object_level, "L", "pixels above L (of 1) are the object (default 0.05)", 0, 1},
        {"captions", 'c', NS_OPT_STR, &cmd->captions, "FILE", "also write an id<TAB>caption line per image", 0, 0},
        {"dropout", 0, NS_OPT_DOUBLE, &cmd->dropout, "P", "captions: drop each word (class name, concept) with probability P (default 0.3)", 0, 1},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "captions: seed of the templates and the dropout (default 0)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write the concept stream to FILE (atomically) instead of stdout", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[--attributes TABLE] [--thresholds-from REF] [options] [IMAGES]",
        "Label every image of an image stream (from img-read) with concepts: class-level\n"
        "ones from an attribute table and pixel-level ones from its own pixels.",
        "Pixel statistics (of the object, the pixels above --object-level): mean\n"
        "intensity (bright/dark), mean absolute Laplacian (patterned/plain) and area\n"
        "(large/small). The thresholds are the Q and 1-Q quantiles over the input,\n"
        "written to the meta as concepts.low/high; --thresholds-from applies another\n"
        "set's instead. Images normalised by img-read are unnormalised first.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (cmd->thresholds_from && cmd->quantile > 0)
        ns_die_usage("--quantile and --thresholds-from exclude each other: the thresholds come from the bank");
    if (cmd->captions && strcmp(cmd->captions, "-") == 0 && strcmp(cmd->output, "-") == 0)
        ns_die_usage("--captions - needs --output FILE: standard output carries the concept stream");
}

// What the pass over the images keeps: a few numbers per image, the batches' sizes.
typedef struct images {
    ns_stream_info info;
    double *stats;      // (N total, S)
    int32_t *labels;    // (N total)
    int64_t *ids;       // (N total)
    int64_t *batch_n;   // (batches)
    int64_t n, nbatches, cap, cap_batches;
} images;

static void grow(images *im, int64_t n) {
    if (im->nbatches == im->cap_batches) {
        im->cap_batches = im->cap_batches ? 2 * im->cap_batches : 64;
        if (!(im->batch_n = realloc(im->batch_n, (size_t)im->cap_batches * sizeof *im->batch_n))) ns_die("out of memory");
    }
    if (im->n + n <= im->cap) return;
    while (im->cap < im->n + n) im->cap = im->cap ? 2 * im->cap : 1024;
    im->stats = realloc(im->stats, (size_t)im->cap * NS_STAT_COUNT * sizeof *im->stats);
    im->labels = realloc(im->labels, (size_t)im->cap * sizeof *im->labels);
    im->ids = realloc(im->ids, (size_t)im->cap * sizeof *im->ids);
    if (!im->stats || !im->labels || !im->ids) ns_die("out of memory (%lld images)", (long long)im->cap);
}

// One image batch: statistics of each image, its label and id.
static int add_batch(images *im, const ns_record *rec, double object_level, float *buf, ns_err *err) {
    if (rec->ndim != 4 || (rec->dtype != NS_F32 && rec->dtype != NS_U8))
        return ns_errf(err, "record %llu (%s) is not an image batch (N, C, H, W) of f32 or u8",
                       (unsigned long long)rec->index, rec->name);
    int64_t n = rec->shape[0], C = rec->shape[1], H = rec->shape[2], W = rec->shape[3], numel = C * H * W;
    if (numel == 0 && n > 0) // the pixel statistics need pixels
        return ns_errf(err, "record %llu (%s) has empty images (%lld x %lld x %lld): no pixels",
                       (unsigned long long)rec->index, rec->name, (long long)C, (long long)H, (long long)W);
    if (im->info.nnorm && im->info.nnorm != C && im->info.nnorm != 1)
        return ns_errf(err, "record %llu has %lld channels but image.mean has %d", (unsigned long long)rec->index,
                       (long long)C, im->info.nnorm);
    grow(im, n);
    size_t got;
    int have = ns_obj_i64s(rec->meta, "ids", im->ids + im->n, (size_t)n, &got, err);
    if (have < 0) return -1;
    if (have == 1 && (int64_t)got != n)
        return ns_errf(err, "record %llu has %zu ids for %lld images", (unsigned long long)rec->index, got, (long long)n);
    if (have == 0) // without ids, an image's id is its position in the stream
        for (int64_t i = 0; i < n; i++) im->ids[im->n + i] = im->n + i;
    int64_t classes = im->info.labels ? (int64_t)im->info.nlabels : NS_CLASSES_UNKNOWN;
    if (ns_record_labels(rec, n, classes, im->labels + im->n, err) < 0) return -1;
    for (int64_t i = 0; i < n; i++) {
        ns_convert_to_f32(buf, (const char *)rec->data + (size_t)(i * numel) * ns_dtypes[rec->dtype].size,
                          rec->dtype, (size_t)numel);
        for (int64_t c = 0; c < C; c++) {
            int k = im->info.nnorm == 1 ? 0 : (int)c;
            double mean = im->info.nnorm ? im->info.mean[k] : 0, std = im->info.nnorm ? im->info.std[k] : 1;
            if (rec->dtype == NS_U8) mean = 0, std = 1.0 / 255.0; // u8 stores 0..255
            for (int64_t p = 0; p < H * W; p++) buf[c * H * W + p] = (float)(buf[c * H * W + p] * std + mean);
        }
        ns_pixel_stats(im->stats + (im->n + i) * NS_STAT_COUNT, buf, C, H, W, object_level);
    }
    im->batch_n[im->nbatches++] = n;
    im->n += n;
    return 0;
}

static void read_images(images *im, const char *path, double object_level, int quiet) {
    ns_err err;
    ns_reader *r = ns_reader_open(path, &err);
    if (!r) ns_die_err(&err);
    ns_record rec;
    int got;
    float *buf = NULL;
    int64_t cap = 0;
    ns_progress progress;
    ns_progress_start(&progress, "images", 0, quiet);
    while ((got = ns_reader_next(r, &rec, &err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            if (ns_stream_info_update(&im->info, &rec, &err) < 0) ns_die("%s: %s", path, err.msg);
            continue;
        }
        if (strcmp(rec.kind, "tensor") != 0) continue;
        int64_t numel = rec.ndim == 4 ? rec.shape[1] * rec.shape[2] * rec.shape[3] : 0;
        if (numel > cap) {
            free(buf);
            if (!(buf = malloc((size_t)numel * sizeof *buf))) ns_die("out of memory");
            cap = numel;
        }
        if (add_batch(im, &rec, object_level, buf, &err) < 0) ns_die("%s: %s", path, err.msg);
        ns_progress_update(&progress, im->n);
    }
    ns_progress_end(&progress);
    free(buf);
    if (got < 0) ns_die_err(&err);
    ns_reader_close(r);
    if (im->n == 0) ns_die("%s: no images", path);
}

// The thresholds of an earlier concept-bank output.
static void load_thresholds(ns_thresholds *th, const char *path) {
    ns_err err;
    ns_reader *r = ns_reader_open(path, &err);
    if (!r) ns_die_err(&err);
    ns_record rec;
    int got, found = 0;
    while (!found && (got = ns_reader_next(r, &rec, &err)) == 1) {
        if (strcmp(rec.kind, "meta") != 0 || !ns_map_get(rec.meta, "concepts.low")) continue;
        char **stats = NULL;
        size_t nstats = 0;
        if (ns_obj_strs(rec.meta, "concepts.stats", &stats, &nstats, &err) < 0 ||
            ns_obj_f64s(rec.meta, "concepts.low", th->low, NS_STAT_COUNT, &err) < 0 ||
            ns_obj_f64s(rec.meta, "concepts.high", th->high, NS_STAT_COUNT, &err) < 0 ||
            ns_obj_f64(rec.meta, "concepts.quantile", &th->quantile, &err) < 0 ||
            ns_obj_f64(rec.meta, "concepts.object_level", &th->object_level, &err) < 1)
            ns_die("%s: bad thresholds: %s", path, err.msg);
        int same = nstats == NS_STAT_COUNT;
        for (size_t s = 0; same && s < nstats; s++) same = strcmp(stats[s], ns_stat_names[s]) == 0;
        ns_strings_free(stats, nstats);
        if (!same) ns_die("%s: concepts.stats are not intensity, texture, area", path);
        found = 1;
    }
    if (!found && got < 0) ns_die_err(&err);
    ns_reader_close(r);
    if (!found) ns_die("%s: no thresholds (concepts.low/high) in its meta", path);
}

typedef struct bank {
    char **names, **kinds; // (K)
    size_t k, nattrs;
    uint8_t *class_attrs;  // (classes, A)
    size_t nclasses;
} bank;

static void make_bank(bank *b, const images *im, const char *attributes) {
    ns_err err;
    ns_attr_table table = {0};
    if (attributes) {
        if (ns_attr_table_load(&table, attributes, &err) < 0) ns_die_err(&err);
        if (!im->info.labels) ns_die("--attributes needs class names (general.labels) in the image stream");
        b->nclasses = im->info.nlabels;
        if (!(b->class_attrs = malloc(b->nclasses * table.nattrs + 1))) ns_die("out of memory");
        if (ns_attr_table_for_labels(&table, im->info.labels, im->info.nlabels, b->class_attrs, &err) < 0)
            ns_die("%s: %s", attributes, err.msg);
        for (size_t k = 0; k < table.nattrs; k++)
            for (size_t j = 0; j < NS_STAT_COUNT * 2; j++)
                if (strcmp(table.attrs[k], ns_stat_words[j / 2][j % 2]) == 0)
                    ns_die("%s: attribute '%s' is also a pixel concept's name", attributes, table.attrs[k]);
    }
    b->nattrs = table.nattrs;
    for (int64_t i = 0; b->nattrs && i < im->n; i++)
        if (im->labels[i] >= 0 && (size_t)im->labels[i] >= b->nclasses)
            ns_die("image id %lld has label %d; the stream has %zu classes", (long long)im->ids[i], im->labels[i],
                   b->nclasses);
    b->k = table.nattrs + NS_PIXEL_CONCEPTS;
    b->names = calloc(b->k, sizeof *b->names);
    b->kinds = calloc(b->k, sizeof *b->kinds);
    if (!b->names || !b->kinds) ns_die("out of memory");
    for (size_t k = 0; k < b->k; k++) {
        b->names[k] = strdup(k < b->nattrs ? table.attrs[k] : ns_stat_words[(k - b->nattrs) / 2][(k - b->nattrs) % 2]);
        b->kinds[k] = strdup(k < b->nattrs ? "class" : "pixel");
        if (!b->names[k] || !b->kinds[k]) ns_die("out of memory");
    }
    ns_attr_table_free(&table);
}

// Concept values of image i into row (K).
static void image_concepts(uint8_t *row, const bank *b, const images *im, int64_t i, const ns_thresholds *th) {
    int32_t y = im->labels[i]; // checked by make_bank
    for (size_t a = 0; a < b->nattrs; a++) row[a] = y >= 0 ? b->class_attrs[(size_t)y * b->nattrs + a] : NS_CONCEPT_UNKNOWN;
    ns_pixel_concepts(row + b->nattrs, im->stats + i * NS_STAT_COUNT, th);
}

static int write_bank(ns_writer *w, const bank *b, const images *im, const ns_thresholds *th, FILE *captions,
                      const struct cmdline *cmd, const char *source, ns_err *err) {
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "concept-bank " NS_VERSION);
    ns_map_str(&meta, "general.source", source);
    if (im->info.labels) ns_map_strs(&meta, "general.labels", (const char *const *)im->info.labels, im->info.nlabels);
    ns_map_strs(&meta, "concepts.names", (const char *const *)b->names, b->k);
    ns_map_strs(&meta, "concepts.kinds", (const char *const *)b->kinds, b->k);
    ns_map_strs(&meta, "concepts.stats", ns_stat_names, NS_STAT_COUNT);
    ns_map_f64s(&meta, "concepts.low", th->low, NS_STAT_COUNT);
    ns_map_f64s(&meta, "concepts.high", th->high, NS_STAT_COUNT);
    ns_map_f64(&meta, "concepts.quantile", th->quantile);
    ns_map_f64(&meta, "concepts.object_level", th->object_level);
    int rc = ns_write_meta(w, "concepts", &meta, err);
    ns_map_free(&meta);
    ns_rng rng;
    ns_rng_seed(&rng, (uint64_t)cmd->seed);
    char caption[1024];
    for (int64_t bi = 0, start = 0; rc == 0 && bi < im->nbatches; start += im->batch_n[bi++]) {
        int64_t n = im->batch_n[bi], shape[2] = {n, (int64_t)b->k};
        ns_tensor t;
        if (ns_tensor_alloc(&t, NS_U8, 2, shape, err) < 0) return -1;
        uint8_t *v = t.data;
        for (int64_t i = 0; i < n; i++) {
            image_concepts(v + i * (int64_t)b->k, b, im, start + i, th);
            if (!captions) continue;
            int32_t y = im->labels[start + i];
            const char *cls = y >= 0 && im->info.labels && (size_t)y < im->info.nlabels ? im->info.labels[y] : NULL;
            ns_caption_make(caption, sizeof caption, cls, v + i * (int64_t)b->k, b->names, b->kinds, b->k,
                            cmd->dropout, &rng);
            fprintf(captions, "%lld\t%s\n", (long long)im->ids[start + i], caption);
        }
        ns_map_init(&meta);
        ns_map_i32s(&meta, "labels", im->labels + start, (size_t)n);
        ns_map_i64s(&meta, "ids", im->ids + start, (size_t)n);
        rc = ns_write_tensor(w, "concepts", &t, &meta, err);
        ns_map_free(&meta);
        ns_tensor_free(&t);
    }
    return rc;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.quantile = -1, .object_level = -1, .dropout = 0.3, .output = "-"};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *input = first < argc ? argv[first] : "-";

    ns_thresholds th = {0};
    if (cmd.thresholds_from) {
        load_thresholds(&th, cmd.thresholds_from);
        if (cmd.object_level >= 0 && cmd.object_level != th.object_level)
            ns_die_usage("--object-level %g differs from the bank's %g", cmd.object_level, th.object_level);
    } else {
        th.object_level = cmd.object_level >= 0 ? cmd.object_level : 0.05;
    }
    images im = {0};
    read_images(&im, input, th.object_level, cmd.quiet);
    ns_err err;
    if (!cmd.thresholds_from && ns_thresholds_fit(&th, im.stats, im.n, cmd.quantile > 0 ? cmd.quantile : 0.3, &err) < 0)
        ns_die_err(&err);
    bank b = {0};
    make_bank(&b, &im, cmd.attributes);

    ns_output out, cap_out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    if (cmd.captions && ns_output_open(&cap_out, cmd.captions, &err) < 0) {
        ns_output_abort(&out);
        ns_die_err(&err);
    }
    ns_writer w;
    ns_writer_init(&w, out.f);
    int rc = write_bank(&w, &b, &im, &th, cmd.captions ? cap_out.f : NULL, &cmd, input, &err);
    if (cmd.captions) rc = ns_output_finish(&cap_out, NULL, rc, &err);
    if (ns_output_finish(&out, &w, rc, &err) < 0) ns_die_err(&err);
    ns_strings_free(b.names, b.k);
    ns_strings_free(b.kinds, b.k);
    free(b.class_attrs);
    ns_stream_info_free(&im.info);
    free(im.stats);
    free(im.labels);
    free(im.ids);
    free(im.batch_n);
    return 0;
}
