// tns-info: describes each record of TNS streams, one line per record, or one
// JSON object per line with --json.
//
//   tns-info [options] [FILE...]      (no FILE, or "-": standard input)
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "tns.h"

struct cmdline {
    int json, stats, quiet;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"json", 'j', NS_OPT_FLAG, &cmd->json, NULL, "one JSON object per record (JSON Lines), with all metadata", 0, 0},
        {"stats", 's', NS_OPT_FLAG, &cmd->stats, NULL, "add min, max, mean and std of each tensor", 0, 0},
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
            printf(",\"stats\":{\"min\":%.9g,\"max\":%.9g,\"mean\":%.9g,\"std\":%.9g,\"nonfinite\":%lld}",
                   s.min, s.max, s.mean, s.std, (long long)s.nonfinite);
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
    for (int f = 0; f < nfiles; f++) {
        ns_reader *r = ns_reader_open(files[f], &err);
        if (!r) ns_die_err(&err);
        ns_record rec;
        int got;
        while ((got = ns_reader_next(r, &rec, &err)) == 1) {
            if (cmd.json) print_json(&rec, &cmd, ns_reader_label(r));
            else print_line(&rec, &cmd);
        }
        ns_reader_close(r);
        if (got < 0) ns_die_err(&err);
    }
    if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0)
        ns_die("writing output failed");
    return 0;
}
