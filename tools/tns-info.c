// tns-info: describes each record of TNS streams, one line per record, or one
// JSON object per line with --json.
//
//   tns-info [options] [FILE...]      (no FILE, or "-": standard input)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "base/json.h"
#include "detect/boxes.h"
#include "stream/labels.h"
#include "stream/tns.h"

struct cmdline {
    int json, stats, summary;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "one JSON object per record (JSON Lines), with all metadata", 0, 0},
        {"stats", 's', NS_OPT_FLAG, &cmd->stats, NULL, "add min, max, mean and std of each tensor", 0, 0},
        {"summary", 'S', NS_OPT_FLAG, &cmd->summary, NULL, "instead of a line per record: totals and samples per class", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] [FILE...]",
        "Describe each record of TNS tensor streams: index, kind, name, dtype, shape,\n"
        "bytes and the main metadata. Reads standard input when no FILE is given.",
        "Columns (tab-separated): index, kind, name, dtype, shape, bytes, metadata.\n"
        "See tns(5) for the format.",
        0, -1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (cmd->summary && (cmd->json || cmd->stats))
        ns_die_usage("--summary cannot be combined with --json or --stats");
}

typedef struct tensor_stats {
    double min, max, mean, std;
    int64_t nonfinite;
} tensor_stats;

static void compute_stats(const ns_record *rec, tensor_stats *s) {
    double sum = 0, sumsq = 0;
    int64_t finite = 0;
    s->min = INFINITY;
    s->max = -INFINITY;
    s->nonfinite = 0;
    for (int64_t i = 0; i < rec->numel; i++) {
        double v = ns_value_at(rec->data, rec->dtype, (size_t)i);
        if (!isfinite(v)) { s->nonfinite++; continue; }
        finite++;
        sum += v;
        sumsq += v * v;
        if (v < s->min) s->min = v;
        if (v > s->max) s->max = v;
    }
    s->mean = finite ? sum / (double)finite : NAN;
    s->std = finite ? sqrt(fmax(0, sumsq / (double)finite - s->mean * s->mean)) : NAN;
}

// A short human summary of a metadata map: scalar values in full, arrays as
// their length, long strings cut.
static void print_meta_summary(const msgpack_object *meta) {
    if (!meta) return;
    for (uint32_t i = 0; i < meta->via.map.size; i++) {
        const msgpack_object_kv *kv = &meta->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) continue;
        printf("%s%.*s=", i ? " " : "", (int)kv->key.via.str.size, kv->key.via.str.ptr);
        const msgpack_object *v = &kv->val;
        switch (v->type) {
        case MSGPACK_OBJECT_STR:
            printf("%.*s%s", (int)(v->via.str.size > 40 ? 40 : v->via.str.size), v->via.str.ptr,
                   v->via.str.size > 40 ? "..." : "");
            break;
        case MSGPACK_OBJECT_ARRAY: printf("[%u]", v->via.array.size); break;
        case MSGPACK_OBJECT_MAP: printf("{%u}", v->via.map.size); break;
        default: ns_json_value(stdout, v);
        }
    }
}

// Counts indexed by class, grown as larger classes appear.
typedef struct class_counts {
    int64_t *n;
    int64_t slots, used; // allocated; largest class seen + 1
} class_counts;

static int class_counts_add(class_counts *c, int64_t k, ns_err *err) {
    if (k >= c->slots) {
        int64_t slots = k + 1 > 2 * c->slots ? k + 1 : 2 * c->slots;
        int64_t *grown = realloc(c->n, (size_t)slots * sizeof *grown);
        if (!grown) return ns_errf(err, "out of memory (%lld classes)", (long long)slots);
        memset(grown + c->slots, 0, (size_t)(slots - c->slots) * sizeof *grown);
        c->n = grown;
        c->slots = slots;
    }
    c->n[k]++;
    if (k + 1 > c->used) c->used = k + 1;
    return 0;
}

// Totals over all inputs for --summary: records, samples per label and, in
// detection streams, boxes per class.
typedef struct summary {
    int64_t records, tensors, samples, unlabelled, box_records, boxes;
    class_counts per_label, per_box_class;
    char **names; // latest general.labels
    size_t nnames;
} summary;

// Labels past this are refused when the stream names no classes (the
// counts are indexed by label).
#define SUMMARY_MAX_CLASSES (1 << 24)

static int summary_add(summary *s, const ns_record *rec, const char *source, ns_err *err) {
    s->records++;
    if (strcmp(rec->kind, "meta") == 0) {
        char **names;
        size_t n;
        int got = ns_obj_strs(rec->meta, "general.labels", &names, &n, err);
        if (got < 0) return -1;
        if (got > 0) {
            ns_strings_free(s->names, s->nnames);
            s->names = names;
            s->nnames = n;
        }
        return 0;
    }
    if (strcmp(rec->kind, NS_DET_KIND) == 0) {
        ns_det_boxes b;
        if (ns_det_boxes_read(rec, s->names ? (int64_t)s->nnames : SUMMARY_MAX_CLASSES, &b, err) < 0)
            return ns_err_prefix(err, "%s", source);
        s->box_records++;
        s->boxes += b.total;
        int rc = 0;
        for (int64_t i = 0; i < b.total && rc == 0; i++) rc = class_counts_add(&s->per_box_class, b.classes[i], err);
        ns_det_boxes_free(&b);
        return rc;
    }
    if (!rec->has_data) return 0;
    s->tensors++;
    if (!ns_map_get(rec->meta, "labels")) return 0;
    if (rec->ndim < 1)
        return ns_errf(err, "%s: record %llu (%s): labels for a tensor without a batch axis", source,
                       (unsigned long long)rec->index, rec->name);
    int64_t n = rec->shape[0];
    int32_t *y = malloc((size_t)(n ? n : 1) * sizeof *y);
    if (!y) return ns_errf(err, "out of memory (%lld labels)", (long long)n);
    if (ns_record_labels(rec, n, s->names ? (int64_t)s->nnames : SUMMARY_MAX_CLASSES, y, err) < 0) {
        free(y);
        return ns_err_prefix(err, "%s", source);
    }
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        s->samples++;
        if (y[i] < 0)
            s->unlabelled++;
        else
            rc = class_counts_add(&s->per_label, y[i], err);
    }
    free(y);
    return rc;
}

// One line per class: "TAG\tk\tname\tcount", for every class named or seen.
static void print_class_counts(const char *tag, const class_counts *c, const summary *s) {
    int64_t classes = c->used > (int64_t)s->nnames ? c->used : (int64_t)s->nnames;
    for (int64_t k = 0; k < classes; k++)
        printf("%s\t%lld\t%s\t%lld\n", tag, (long long)k, (size_t)k < s->nnames ? s->names[k] : "-",
               (long long)(k < c->used ? c->n[k] : 0));
}

static void summary_print(const summary *s) {
    printf("records\t%lld\ntensors\t%lld\nsamples\t%lld\n", (long long)s->records,
           (long long)s->tensors, (long long)s->samples);
    print_class_counts("class", &s->per_label, s);
    if (s->unlabelled) printf("unlabelled\t%lld\n", (long long)s->unlabelled);
    if (s->box_records) {
        printf("boxes\t%lld\n", (long long)s->boxes);
        print_class_counts("class-boxes", &s->per_box_class, s);
    }
}

static void print_line(const ns_record *rec, const struct cmdline *cmd) {
    char shape[256];
    ns_shape_format(shape, sizeof shape, rec->ndim, rec->shape);
    printf("%llu\t%s\t%s\t%s\t%s\t%zu\t", (unsigned long long)rec->index, rec->kind,
           rec->name[0] ? rec->name : "-", rec->has_data ? ns_dtypes[rec->dtype].name : "-",
           rec->has_data ? shape : "-", rec->raw_len);
    print_meta_summary(rec->meta);
    if (cmd->stats && rec->has_data && rec->numel > 0) {
        tensor_stats s;
        compute_stats(rec, &s);
        printf("%smin=%.6g max=%.6g mean=%.6g std=%.6g", rec->meta ? " " : "", s.min, s.max,
               s.mean, s.std);
        if (s.nonfinite) printf(" nonfinite=%lld", (long long)s.nonfinite);
    }
    putchar('\n');
}

static void print_json(const ns_record *rec, const struct cmdline *cmd, const char *source) {
    printf("{\"source\":");
    ns_json_string(stdout, source, strlen(source));
    printf(",\"index\":%llu,\"kind\":", (unsigned long long)rec->index);
    ns_json_string(stdout, rec->kind, strlen(rec->kind));
    printf(",\"name\":");
    ns_json_string(stdout, rec->name, strlen(rec->name));
    printf(",\"bytes\":%zu", rec->raw_len);
    if (rec->has_data) {
        printf(",\"dtype\":\"%s\",\"shape\":[", ns_dtypes[rec->dtype].name);
        for (int i = 0; i < rec->ndim; i++) printf(i ? ",%lld" : "%lld", (long long)rec->shape[i]);
        printf("]");
        if (cmd->stats && rec->numel > 0) {
            tensor_stats s;
            compute_stats(rec, &s);
            printf(",\"stats\":{\"min\":");
            ns_json_number(stdout, s.min);
            printf(",\"max\":");
            ns_json_number(stdout, s.max);
            printf(",\"mean\":");
            ns_json_number(stdout, s.mean);
            printf(",\"std\":");
            ns_json_number(stdout, s.std);
            printf(",\"nonfinite\":%lld}", (long long)s.nonfinite);
        }
    }
    // Other top-level keys (a graph's nodes, say) are shown as they are.
    const msgpack_object_map *m = &rec->root->via.map;
    static const char *shown[] = {"fmt", "ver", "kind", "name", "dtype", "shape", "data"};
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        int skip = 0;
        for (size_t j = 0; j < sizeof shown / sizeof shown[0]; j++)
            skip |= k->via.str.size == strlen(shown[j]) &&
                    memcmp(k->via.str.ptr, shown[j], k->via.str.size) == 0;
        if (skip) continue;
        putchar(',');
        ns_json_string(stdout, k->via.str.ptr, k->via.str.size);
        putchar(':');
        ns_json_value(stdout, &m->ptr[i].val);
    }
    printf("}\n");
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {0};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    char *stdin_only[] = {"-"};
    char **files = first < argc ? argv + first : stdin_only;
    int nfiles = first < argc ? argc - first : 1;

    ns_err err;
    summary sum = {0};
    for (int f = 0; f < nfiles; f++) {
        ns_reader *r = ns_reader_open(files[f], &err);
        if (!r) ns_die_err(&err);
        ns_record rec;
        int got;
        while ((got = ns_reader_next(r, &rec, &err)) == 1) {
            if (cmd.summary) {
                if (summary_add(&sum, &rec, ns_reader_label(r), &err) < 0) { got = -1; break; }
            } else if (cmd.json) print_json(&rec, &cmd, ns_reader_label(r));
            else print_line(&rec, &cmd);
        }
        ns_reader_close(r);
        if (got < 0) ns_die_err(&err);
    }
    if (cmd.summary) summary_print(&sum);
    free(sum.per_label.n);
    free(sum.per_box_class.n);
    ns_strings_free(sum.names, sum.nnames);
    ns_close_stdout();
    return 0;
}
