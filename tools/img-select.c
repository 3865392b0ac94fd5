// img-select: keeps the samples of a labelled batch stream whose class is in
// a list, relabelled 0..k-1 in the list's order (general.labels rewritten);
// optionally the first N of each class and at most a total.
//
//   img-select --classes LIST [options] [DATA]    (no DATA, or "-": standard input)
//
// Records: batches (N, ...) of any dtype with meta labels/ids; each kept
// sample's row is copied unchanged. Meta records pass with general.labels
// replaced; other records pass through.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "stream/labels.h"
#include "stream/streaminfo.h"
#include "stream/tns.h"

#define MAX_CLASSES 4096

struct cmdline {
    const char *classes, *output;
    int64_t per_class, limit;
    int quiet;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"classes", 'c', NS_OPT_STR, &cmd->classes, "LIST", "classes to keep, in their new order: indices, ranges (0-4) or names, comma-separated (required)", 0, 0},
        {"per-class", 'p', NS_OPT_I64, &cmd->per_class, "N", "keep the first N samples of each class", 1, 1e15},
        {"limit", 'n', NS_OPT_I64, &cmd->limit, "N", "keep at most N samples in all", 1, 1e15},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "--classes LIST [options] [DATA]",
        "Keep the samples of the given classes of a labelled image or feature stream,\n"
        "relabelled 0..k-1 in the order given.",
        "A list item is a class index, a range A-B of indices, or a class name from the\n"
        "stream's general.labels (a name is tried first, so 'T-shirt/top' works). A class\n"
        "may appear once. Samples without a label (-1) are dropped.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!cmd->classes) ns_die_usage("--classes is required");
}

// The selection: new label of each old class (-1: dropped).
typedef struct selection {
    int64_t newlab[MAX_CLASSES];
    int64_t order[MAX_CLASSES]; // old class of each new label
    int64_t k;
    int resolved;
} selection;

static int parse_index(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || errno || x < 0 || x >= MAX_CLASSES) return -1;
    *v = x;
    return 0;
}

static void add_class(selection *sel, int64_t c, const char *item) {
    if (sel->newlab[c] >= 0) ns_die_usage("class %lld is listed twice (%s)", (long long)c, item);
    sel->newlab[c] = sel->k;
    sel->order[sel->k++] = c;
}

// Resolves the list against the class names known so far (may be none).
static void resolve(selection *sel, const char *list, const ns_stream_info *info) {
    for (int c = 0; c < MAX_CLASSES; c++) sel->newlab[c] = -1;
    sel->k = 0;
    char *copy = strdup(list);
    if (!copy) ns_die("out of memory");
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        int64_t a, b;
        size_t k = 0;
        while (info->labels && k < info->nlabels && strcmp(info->labels[k], item) != 0) k++;
        if (info->labels && k < info->nlabels) {
            add_class(sel, (int64_t)k, item);
            continue;
        }
        char *dash = strchr(item + 1, '-');
        if (parse_index(item, &a) == 0) {
            add_class(sel, a, item);
        } else if (dash) {
            *dash = 0;
            if (parse_index(item, &a) < 0 || parse_index(dash + 1, &b) < 0 || b < a)
                ns_die_usage("bad class range (%s-%s)", item, dash + 1);
            for (int64_t c = a; c <= b; c++) add_class(sel, c, item);
        } else {
            ns_die_usage("unknown class (%s)%s", item, info->labels ? "" : ": the stream has no class names");
        }
    }
    free(copy);
    if (sel->k == 0) ns_die_usage("--classes lists no class");
    if (info->labels)
        for (int64_t j = 0; j < sel->k; j++)
            if ((size_t)sel->order[j] >= info->nlabels)
                ns_die("class %lld is beyond the stream's %zu classes", (long long)sel->order[j], info->nlabels);
    sel->resolved = 1;
}

// A meta record with general.labels replaced by the selected names.
static int write_meta(ns_writer *w, const ns_record *rec, const selection *sel, const ns_stream_info *info,
                      ns_err *err) {
    ns_map meta;
    ns_map_init(&meta);
    const msgpack_object *m = rec->meta;
    int has_labels = 0;
    if (m && m->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < m->via.map.size; i++) {
            const msgpack_object_kv *kv = &m->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) continue;
            char key[128];
            size_t len = kv->key.via.str.size < sizeof key - 1 ? kv->key.via.str.size : sizeof key - 1;
            memcpy(key, kv->key.via.str.ptr, len);
            key[len] = 0;
            if (strcmp(key, "general.count") == 0) continue; // no longer true
            if (strcmp(key, "general.labels") == 0) {
                has_labels = 1;
                continue;
            }
            ns_map_obj(&meta, key, &kv->val);
        }
    if (has_labels) {
        const char *names[MAX_CLASSES];
        for (int64_t j = 0; j < sel->k; j++) names[j] = info->labels[sel->order[j]];
        ns_map_strs(&meta, "general.labels", names, (size_t)sel->k);
    }
    int rc = ns_write_meta(w, rec->name, &meta, err);
    ns_map_free(&meta);
    return rc;
}

// The output is opened at the first record written: by then the class list
// is resolved against the stream's names (its meta record, or at the latest
// its first labelled batch), so a bad list leaves no file, not even a
// temporary one.
static void open_output(ns_output *out, ns_writer *w, const char *path) {
    if (out->f) return;
    ns_err err;
    if (ns_output_open(out, path ? path : "-", &err) < 0) ns_die_err(&err);
    ns_writer_init(w, out->f);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {0};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *path = first < argc ? argv[first] : "-";
    ns_err err;
    ns_reader *r = ns_reader_open(path, &err);
    if (!r) ns_die_err(&err);
    ns_output out = {0};
    ns_writer w;
    ns_stream_info info = {0};
    static selection sel;
    int64_t kept_per[MAX_CLASSES] = {0}, kept = 0, seen = 0;
    int32_t *labels = NULL;
    int64_t *ids = NULL, *nlab = NULL, *nids = NULL, cap = 0;
    ns_record rec;
    int got, failed = 0;
    ns_progress prog;
    ns_progress_start(&prog, "samples", 0, cmd.quiet);
    while (!failed && (got = ns_reader_next(r, &rec, &err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            if (ns_stream_info_update(&info, &rec, &err) < 0) {
                failed = ns_err_prefix(&err, "%s", path) < 0;
                break;
            }
            if (ns_map_get(rec.meta, "general.labels")) resolve(&sel, cmd.classes, &info);
            open_output(&out, &w, cmd.output);
            failed = write_meta(&w, &rec, &sel, &info, &err) < 0;
            continue;
        }
        if (strcmp(rec.kind, "tensor") != 0 || !ns_map_get(rec.meta, "labels")) {
            open_output(&out, &w, cmd.output);
            failed = ns_write_raw(&w, &rec, &err) < 0;
            continue;
        }
        if (!sel.resolved) resolve(&sel, cmd.classes, &info);
        int64_t n = rec.ndim > 0 ? rec.shape[0] : 0;
        if (rec.ndim < 1 || n < 1) {
            failed = ns_errf(&err, "%s: record %llu is not a batch of samples", path, (unsigned long long)rec.index);
            break;
        }
        if (n > cap) {
            cap = n;
            labels = realloc(labels, (size_t)cap * sizeof *labels);
            ids = realloc(ids, (size_t)cap * sizeof *ids);
            nlab = realloc(nlab, (size_t)cap * sizeof *nlab);
            nids = realloc(nids, (size_t)cap * sizeof *nids);
            if (!labels || !ids || !nlab || !nids) ns_die("out of memory");
        }
        size_t ni = 0;
        int hi = 0;
        if (ns_record_labels(&rec, n, info.labels ? (int64_t)info.nlabels : NS_CLASSES_UNKNOWN, labels, &err) < 0 ||
            (hi = ns_obj_i64s(rec.meta, "ids", ids, (size_t)cap, &ni, &err)) < 0 ||
            (hi == 1 && (int64_t)ni != n &&
             ns_errf(&err, "record %llu: %zu ids for %lld samples", (unsigned long long)rec.index, ni, (long long)n) < 0)) {
            failed = ns_err_prefix(&err, "%s", path) < 0;
            break;
        }
        if (hi != 1)
            for (int64_t i = 0; i < n; i++) ids[i] = seen + i;
        size_t row = rec.nbytes / (size_t)n;
        ns_tensor t;
        int64_t shape[NS_MAX_NDIM];
        memcpy(shape, rec.shape, sizeof shape);
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t c = labels[i];
            if (c < -1 || c >= MAX_CLASSES) {
                failed = ns_errf(&err, "%s: record %llu (%s): sample %lld has label %lld (img-select handles classes 0..%d)",
                                 path, (unsigned long long)rec.index, rec.name, (long long)i, (long long)c, MAX_CLASSES - 1);
                break;
            }
            if (c < 0 || sel.newlab[c] < 0 || (cmd.limit && kept >= cmd.limit) ||
                (cmd.per_class && kept_per[c] >= cmd.per_class))
                continue;
            kept_per[c]++;
            kept++;
            nlab[m] = sel.newlab[c];
            nids[m] = ids[i];
            labels[m++] = i; // reuse: source row of kept sample m
        }
        seen += n;
        ns_progress_update(&prog, seen);
        if (failed || m == 0) continue;
        shape[0] = m;
        if (ns_tensor_alloc(&t, rec.dtype, rec.ndim, shape, &err) < 0) {
            failed = 1;
            break;
        }
        for (int64_t j = 0; j < m; j++)
            memcpy((char *)t.data + (size_t)j * row, (const char *)rec.data + (size_t)labels[j] * row, row);
        open_output(&out, &w, cmd.output);
        ns_map meta;
        ns_map_init(&meta);
        ns_map_i64s(&meta, "labels", nlab, (size_t)m);
        ns_map_i64s(&meta, "ids", nids, (size_t)m);
        failed = ns_write_tensor(&w, rec.name, &t, &meta, &err) < 0;
        ns_map_free(&meta);
        ns_tensor_free(&t);
    }
    if (got < 0) failed = 1;
    ns_progress_end(&prog);
    ns_reader_close(r);
    if (!failed && kept == 0) failed = ns_errf(&err, "%s: no sample of the classes %s", path, cmd.classes) < 0;
    if (!out.f) ns_die_err(&err); // nothing written: failed, kept == 0 at least
    if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
    ns_stream_info_free(&info);
    free(labels);
    free(ids);
    free(nlab);
    free(nids);
    return 0;
}
