// tns-cat: concatenates TNS streams, optionally selecting records by name or
// kind and keeping the first or last N. Records pass through byte for byte.
//
//   tns-cat [options] [FILE...]     (no FILE, or "-": standard input)
//
// Selection applies to data records; "meta" records (class names, producer)
// always pass, unless --no-meta, so a selected stream still describes itself.
// --by-id merges the shards of a stream back into it (stream/idmerge.h).
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "stream/idmerge.h"
#include "stream/tns.h"

struct cmdline {
    const char *name;    // glob on record names, NULL: all
    const char *kind;    // exact kind, NULL: all
    int64_t head, tail;  // -1: off
    int no_meta, invert, by_id;
    int64_t batch;
    const char *output;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"name", 'n', NS_OPT_STR, &cmd->name, "GLOB", "select records whose name matches GLOB (fnmatch: *, ?, [..])", 0, 0},
        {"kind", 'k', NS_OPT_STR, &cmd->kind, "KIND", "select records of this kind (tensor, graph, ...)", 0, 0},
        {"invert", 'v', NS_OPT_FLAG, &cmd->invert, NULL, "select the records that do NOT match --name/--kind", 0, 0},
        {"head", 0, NS_OPT_I64, &cmd->head, "N", "keep only the first N selected records", 0, 1e18},
        {"tail", 0, NS_OPT_I64, &cmd->tail, "N", "keep only the last N selected records", 0, 1e18},
        {"no-meta", 0, NS_OPT_FLAG, &cmd->no_meta, NULL, "drop meta records instead of passing them", 0, 0},
        {"by-id", 0, NS_OPT_FLAG, &cmd->by_id, NULL, "merge shards (--shard I/N outputs) back into one stream, by ascending sample id", 0, 0},
        {"batch", 0, NS_OPT_I64, &cmd->batch, "N", "with --by-id: samples per record (default: as the unsharded stream)", 1, 1e9},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] [FILE...]",
        "Concatenate TNS streams, selecting records by name or kind, head or tail.",
        "Meta records are not subject to --name, --kind, -v, --head or --tail: they pass\n"
        "through (unless --no-meta), so class names and other stream metadata follow the\n"
        "data; --kind meta selects them like any other kind. With --tail, meta records\n"
        "come out first. Records are copied byte for byte. --by-id merges the outputs\n"
        "of --shard I/N runs (img-read, probe-embed, net-eval) into the unsharded stream.",
        0, -1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (cmd->head >= 0 && cmd->tail >= 0) ns_die_usage("--head and --tail cannot be combined");
    if (cmd->by_id && (cmd->name || cmd->kind || cmd->invert || cmd->head >= 0 || cmd->tail >= 0 || cmd->no_meta))
        ns_die_usage("--by-id merges whole streams: no --name, --kind, -v, --head, --tail or --no-meta");
    if (cmd->batch && !cmd->by_id) ns_die_usage("--batch needs --by-id");
    if (cmd->no_meta && cmd->kind && strcmp(cmd->kind, "meta") == 0)
        ns_die_usage("--kind meta selects what --no-meta drops");
}

static int is_selected(const ns_record *rec, const struct cmdline *cmd) {
    int match = (!cmd->name || fnmatch(cmd->name, rec->name, 0) == 0) &&
                (!cmd->kind || strcmp(cmd->kind, rec->kind) == 0);
    return cmd->invert ? !match : match;
}

// The last N selected records, kept as raw bytes: a ring that grows with the
// records seen, up to N slots, so a large N (up to 10^18) costs nothing up front.
typedef struct tail_ring {
    void **raw;
    size_t *len;
    int64_t keep;             // N
    int64_t cap, count, next; // slots allocated (<= keep), records held, next slot to fill
} tail_ring;

static int ring_push(tail_ring *t, const ns_record *rec, ns_err *err) {
    if (t->keep == 0) return 0;
    if (t->count == t->cap && t->cap < t->keep) {
        // Still filling, so the records sit in slots 0..count-1 in order: grow in place.
        int64_t cap = t->cap ? (t->cap < t->keep / 2 ? t->cap * 2 : t->keep) : (t->keep < 16 ? t->keep : 16);
        void **raw = realloc(t->raw, (size_t)cap * sizeof *raw);
        if (raw) t->raw = raw;
        size_t *len = raw ? realloc(t->len, (size_t)cap * sizeof *len) : NULL;
        if (!raw || !len) return ns_errf(err, "out of memory keeping the last %lld records", (long long)t->count + 1);
        t->len = len;
        for (int64_t i = t->cap; i < cap; i++) t->raw[i] = NULL;
        t->cap = cap;
        t->next = t->count;
    }
    void *copy = malloc(rec->raw_len);
    if (!copy) return ns_errf(err, "out of memory keeping the last %lld records", (long long)t->count + 1);
    memcpy(copy, rec->raw, rec->raw_len);
    free(t->raw[t->next]);
    t->raw[t->next] = copy;
    t->len[t->next] = rec->raw_len;
    t->next = (t->next + 1) % t->cap;
    if (t->count < t->cap) t->count++;
    return 0;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.head = -1, .tail = -1, .output = "-"};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    char *stdin_only[] = {"-"};
    char **files = first < argc ? argv + first : stdin_only;
    int nfiles = first < argc ? argc - first : 1;

    ns_err err;
    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    tail_ring ring = {.keep = cmd.tail > 0 ? cmd.tail : 0};
    if (cmd.by_id) {
        int failed = ns_merge_by_id((const char *const *)files, nfiles, cmd.batch, &w, &err) < 0;
        if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
        return 0;
    }

    int64_t selected = 0;
    int failed = 0;
    for (int f = 0; f < nfiles && !failed; f++) {
        ns_reader *r = ns_reader_open(files[f], &err);
        if (!r) { failed = 1; break; }
        ns_record rec;
        int got;
        while ((got = ns_reader_next(r, &rec, &err)) == 1) {
            int pass;
            // Meta records pass untouched by the selection, unless --kind meta selects them.
            int meta = strcmp(rec.kind, "meta") == 0;
            if (meta && cmd.no_meta) continue;
            if (meta && !(cmd.kind && strcmp(cmd.kind, "meta") == 0)) {
                pass = 1;
            } else {
                if (!is_selected(&rec, &cmd)) continue;
                if (cmd.tail >= 0) {
                    if (ring_push(&ring, &rec, &err) < 0) { got = -1; break; }
                    continue;
                }
                pass = cmd.head < 0 || selected < cmd.head;
                selected++;
            }
            if (pass && ns_write_raw(&w, &rec, &err) < 0) { got = -1; break; }
        }
        ns_reader_close(r);
        failed = got < 0;
    }
    for (int64_t i = 0; !failed && i < ring.count; i++) {
        int64_t at = (ring.next - ring.count + i + ring.cap) % ring.cap;
        if (fwrite(ring.raw[at], 1, ring.len[at], out.f) != ring.len[at]) {
            ns_errf(&err, "write error");
            failed = 1;
        }
    }
    for (int64_t i = 0; i < ring.cap; i++) free(ring.raw[i]);
    free(ring.raw);
    free(ring.len);
    if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
    return 0;
}
