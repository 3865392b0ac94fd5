// idmerge.c: merging the shards of a stream back into one, in order of
// sample id (idmerge.h).
//
// A shard stream is header records (meta records, tensors such as a probe's
// head.weight) followed by batches of samples: records (n, ...) whose meta
// holds "ids" (n) and optionally "labels" (n), nothing else. The merge writes
// input 0's header records once (meta records without the shard.* keys, with
// general.count summed over the inputs), then every sample of every input in
// ascending id order, cut into records of `batch` samples: the unsharded
// stream, byte for byte, when that stream was in ascending id order.
#include "stream/idmerge.h"

#include <stdlib.h>
#include <string.h>

// One input being merged.
typedef struct source {
    ns_reader *r;
    ns_record rec;     // the current batch of samples (valid until the next read)
    int live;          // rec holds samples not yet taken
    int64_t pos, n;    // next sample of rec, samples in rec
    int64_t *ids, *labels;
    int64_t cap;
    int64_t last_id;   // the last id taken, for the order check
    int took_any;
    int64_t count;     // general.count, -1 when absent
    ns_shard shard;
    int64_t shard_batch;
} source;

// What every batch record of the merged stream shares.
typedef struct layout {
    char name[NS_NAME_MAX + 1];
    ns_dtype dtype;
    int ndim;
    int64_t shape[NS_MAX_NDIM]; // shape[0] unused
    size_t sample_bytes;
    int has_labels, labels_first;
} layout;

static int is_batch(const ns_record *rec) {
    const msgpack_object *ids = ns_map_get(rec->meta, "ids");
    return rec->has_data && rec->ndim >= 1 && strcmp(rec->kind, "meta") != 0 && ids &&
           ids->type == MSGPACK_OBJECT_ARRAY && (int64_t)ids->via.array.size == rec->shape[0];
}

static int is_shard_key(const msgpack_object *k) {
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size > 6 && memcmp(k->via.str.ptr, "shard.", 6) == 0;
}

static int key_is(const msgpack_object *k, const char *s) {
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(s) && memcmp(k->via.str.ptr, s, k->via.str.size) == 0;
}

// Reads a meta record's count and shard keys into src.
static int read_meta(source *src, const ns_record *rec, ns_err *err) {
    int64_t v;
    int got = ns_obj_i64(rec->meta, "general.count", &v, err);
    if (got < 0) return -1;
    if (got) src->count = v;
    int64_t index = 0, count = 0, batch = 0;
    if (ns_obj_i64(rec->meta, "shard.index", &index, err) < 0 || ns_obj_i64(rec->meta, "shard.count", &count, err) < 0 ||
        ns_obj_i64(rec->meta, "shard.batch", &batch, err) < 0)
        return -1;
    if (count) src->shard = (ns_shard){index, count};
    if (batch) src->shard_batch = batch;
    return 0;
}

// Loads the ids and labels of src->rec and checks it against the layout.
static int load_batch(source *src, const layout *lay, ns_err *err) {
    const ns_record *rec = &src->rec;
    const char *in = ns_reader_label(src->r);
    if (!is_batch(rec))
        return ns_errf(err, "%s: record %llu ('%s') is not a batch of samples with ids, after the batches began", in,
                       (unsigned long long)rec->index, rec->name);
    int same = strcmp(rec->name, lay->name) == 0 && rec->dtype == lay->dtype && rec->ndim == lay->ndim &&
               memcmp(rec->shape + 1, lay->shape + 1, (size_t)(rec->ndim - 1) * sizeof *rec->shape) == 0;
    if (!same)
        return ns_errf(err, "%s: record %llu ('%s') differs in name, dtype or sample shape from the first input's batches",
                       in, (unsigned long long)rec->index, rec->name);
    const msgpack_object *meta = rec->meta;
    for (uint32_t i = 0; i < meta->via.map.size; i++) {
        const msgpack_object *k = &meta->via.map.ptr[i].key;
        if (!key_is(k, "ids") && !key_is(k, "labels"))
            return ns_errf(err, "%s: record %llu: --by-id merges batches whose meta holds ids and labels only (%.*s)", in,
                           (unsigned long long)rec->index, k->type == MSGPACK_OBJECT_STR ? (int)k->via.str.size : 1,
                           k->type == MSGPACK_OBJECT_STR ? k->via.str.ptr : "?");
    }
    src->n = rec->shape[0];
    if (src->n > src->cap) {
        int64_t *ids = realloc(src->ids, (size_t)src->n * sizeof *ids);
        if (ids) src->ids = ids;
        int64_t *labels = ids ? realloc(src->labels, (size_t)src->n * sizeof *labels) : NULL;
        if (labels) src->labels = labels;
        if (!ids || !labels) return ns_errf(err, "out of memory");
        src->cap = src->n;
    }
    size_t got_n = 0;
    if (ns_obj_i64s(meta, "ids", src->ids, (size_t)src->n, &got_n, err) < 0) return ns_err_prefix(err, "%s", in);
    int has_labels = ns_map_get(meta, "labels") != NULL;
    if (has_labels != lay->has_labels)
        return ns_errf(err, "%s: record %llu %s labels, the first input's batches %s", in, (unsigned long long)rec->index,
                       has_labels ? "has" : "has no", lay->has_labels ? "have them" : "do not");
    if (has_labels) {
        size_t nl = 0;
        if (ns_obj_i64s(meta, "labels", src->labels, (size_t)src->n, &nl, err) < 0) return ns_err_prefix(err, "%s", in);
        if ((int64_t)nl != src->n)
            return ns_errf(err, "%s: record %llu has %zu labels for %lld samples", in, (unsigned long long)rec->index, nl,
                           (long long)src->n);
    }
    src->pos = 0;
    src->live = src->n > 0;
    return 0;
}

// Moves src to its next batch with samples left; live 0 at the end.
static int advance(source *src, const layout *lay, ns_err *err) {
    while (!src->live || src->pos == src->n) {
        src->live = 0;
        int got = ns_reader_next(src->r, &src->rec, err);
        if (got <= 0) return got;
        if (load_batch(src, lay, err) < 0) return -1;
    }
    return 1;
}

// Writes meta record raw (from input 0) without shard.* keys, general.count as total.
static int write_meta_merged(ns_writer *w, const void *raw, size_t len, int64_t total, ns_err *err) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -1;
    if (msgpack_unpack_next(&u, raw, len, &off) != MSGPACK_UNPACK_SUCCESS) {
        ns_errf(err, "a meta record could not be read again");
        goto done;
    }
    char name[NS_NAME_MAX + 1] = "";
    if (ns_obj_str(&u.data, "name", name, sizeof name, err) < 0) goto done;
    const msgpack_object *meta = ns_map_get(&u.data, "meta");
    ns_map m;
    ns_map_init(&m);
    for (uint32_t i = 0; meta && i < meta->via.map.size; i++) {
        const msgpack_object_kv *kv = &meta->via.map.ptr[i];
        if (is_shard_key(&kv->key) || kv->key.type != MSGPACK_OBJECT_STR) continue;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
        if (total >= 0 && strcmp(key, "general.count") == 0) ns_map_i64(&m, key, total);
        else ns_map_obj(&m, key, &kv->val);
    }
    rc = ns_write_meta(w, name, &m, err);
    ns_map_free(&m);
done:
    msgpack_unpacked_destroy(&u);
    return rc;
}

// Reads each input up to its first batch: input 0's header records are kept
// (raw) in *head, the others' are read for their meta only.
static int read_headers(source *src, int n, char **head, size_t *head_len, int **is_meta, int *nhead, ns_err *err) {
    for (int i = 0; i < n; i++) {
        int got;
        while ((got = ns_reader_next(src[i].r, &src[i].rec, err)) == 1) {
            const ns_record *rec = &src[i].rec;
            if (is_batch(rec)) break;
            if (strcmp(rec->kind, "meta") == 0 && read_meta(&src[i], rec, err) < 0)
                return ns_err_prefix(err, "%s", ns_reader_label(src[i].r));
            if (i > 0) continue;
            if (*nhead == NS_IDMERGE_MAX_HEAD)
                return ns_errf(err, "%s: more than %d records before the first batch of samples", ns_reader_label(src[i].r),
                               NS_IDMERGE_MAX_HEAD);
            char *copy = malloc(rec->raw_len);
            int *meta = realloc(*is_meta, (size_t)(*nhead + 1) * sizeof *meta);
            if (meta) *is_meta = meta;
            if (!copy || !meta) {
                free(copy);
                return ns_errf(err, "out of memory");
            }
            memcpy(copy, rec->raw, rec->raw_len);
            head[*nhead] = copy;
            head_len[*nhead] = rec->raw_len;
            meta[*nhead] = strcmp(rec->kind, "meta") == 0;
            ++*nhead;
        }
        if (got < 0) return -1;
        src[i].live = got == 1;
    }
    return 0;
}

// The shards must be N distinct parts of one stream when they say they are shards.
static int check_shards(const source *src, int n, ns_err *err) {
    for (int i = 0; i < n; i++) {
        if (!ns_shard_active(&src[i].shard)) continue;
        if (src[i].shard.count != src[0].shard.count)
            return ns_errf(err, "%s is shard %lld/%lld but %s is of %lld shards", ns_reader_label(src[i].r),
                           (long long)src[i].shard.index, (long long)src[i].shard.count, ns_reader_label(src[0].r),
                           (long long)src[0].shard.count);
        for (int j = 0; j < i; j++)
            if (src[j].shard.index == src[i].shard.index)
                return ns_errf(err, "%s and %s are both shard %lld/%lld", ns_reader_label(src[j].r),
                               ns_reader_label(src[i].r), (long long)src[i].shard.index, (long long)src[i].shard.count);
    }
    return 0;
}

static int flush(ns_writer *w, const layout *lay, unsigned char *data, const int64_t *ids, const int64_t *labels,
                 int64_t n, ns_err *err) {
    if (n == 0) return 0;
    ns_tensor t = {.dtype = lay->dtype, .ndim = lay->ndim, .data = data};
    memcpy(t.shape, lay->shape, sizeof t.shape);
    t.shape[0] = n;
    t.numel = n * (int64_t)(lay->sample_bytes / ns_dtypes[lay->dtype].size);
    ns_map meta;
    ns_map_init(&meta);
    if (lay->has_labels && lay->labels_first) ns_map_i64s(&meta, "labels", labels, (size_t)n);
    ns_map_i64s(&meta, "ids", ids, (size_t)n);
    if (lay->has_labels && !lay->labels_first) ns_map_i64s(&meta, "labels", labels, (size_t)n);
    int rc = ns_write_tensor(w, lay->name, &t, &meta, err);
    ns_map_free(&meta);
    return rc;
}

int ns_merge_by_id(const char *const *paths, int n, int64_t batch, ns_writer *w, ns_err *err) {
    source *src = calloc((size_t)n, sizeof *src);
    char *head[NS_IDMERGE_MAX_HEAD];
    size_t head_len[NS_IDMERGE_MAX_HEAD];
    int *head_meta = NULL, nhead = 0, rc = -1;
    unsigned char *data = NULL;
    int64_t *ids = NULL, *labels = NULL;
    if (!src) return ns_errf(err, "out of memory");
    for (int i = 0; i < n; i++) {
        src[i].count = -1;
        if (!(src[i].r = ns_reader_open(paths[i], err))) goto done;
    }
    if (read_headers(src, n, head, head_len, &head_meta, &nhead, err) < 0 || check_shards(src, n, err) < 0) goto done;
    int64_t total = 0;
    for (int i = 0; i < n; i++) total = total < 0 || src[i].count < 0 ? -1 : total + src[i].count;
    for (int h = 0; h < nhead; h++) {
        int wrc = head_meta[h] ? write_meta_merged(w, head[h], head_len[h], total, err)
                               : (int)(fwrite(head[h], 1, head_len[h], w->f) == head_len[h] ? 0 : ns_errf(err, "write error"));
        if (wrc < 0) goto done;
    }
    // The first batch of the first input that has one fixes the layout.
    layout lay = {0};
    int first = -1;
    for (int i = 0; i < n && first < 0; i++)
        if (src[i].live) first = i;
    if (first < 0) { rc = 0; goto done; } // no samples anywhere: the header alone
    const ns_record *r0 = &src[first].rec;
    snprintf(lay.name, sizeof lay.name, "%s", r0->name);
    lay.dtype = r0->dtype;
    lay.ndim = r0->ndim;
    memcpy(lay.shape, r0->shape, sizeof lay.shape);
    lay.sample_bytes = r0->shape[0] ? r0->nbytes / (size_t)r0->shape[0] : 0;
    lay.has_labels = ns_map_get(r0->meta, "labels") != NULL;
    lay.labels_first = lay.has_labels && key_is(&r0->meta->via.map.ptr[0].key, "labels");
    if (batch <= 0) batch = src[first].shard_batch;
    for (int i = 0; i < n && batch <= 0; i++) // no shard.batch: the largest first batch
        if (src[i].live && src[i].rec.shape[0] > batch) batch = src[i].rec.shape[0];
    for (int i = 0; i < n; i++) {
        if (!src[i].live) continue;
        src[i].live = 0;
        if (load_batch(&src[i], &lay, err) < 0 || advance(&src[i], &lay, err) < 0) goto done;
    }
    data = malloc((size_t)batch * (lay.sample_bytes ? lay.sample_bytes : 1));
    ids = malloc((size_t)batch * sizeof *ids);
    labels = malloc((size_t)batch * sizeof *labels);
    if (!data || !ids || !labels) {
        ns_errf(err, "out of memory (a batch of %lld)", (long long)batch);
        goto done;
    }
    int64_t filled = 0;
    for (;;) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            if (!src[i].live) continue;
            int64_t id = src[i].ids[src[i].pos];
            if (best >= 0 && id == src[best].ids[src[best].pos]) {
                ns_errf(err, "id %lld is in %s and in %s", (long long)id, ns_reader_label(src[best].r),
                        ns_reader_label(src[i].r));
                goto done;
            }
            if (best < 0 || id < src[best].ids[src[best].pos]) best = i;
        }
        if (best < 0) break;
        source *s = &src[best];
        int64_t id = s->ids[s->pos];
        if (s->took_any && id <= s->last_id) {
            ns_errf(err, "%s: id %lld comes after id %lld: --by-id merges inputs in ascending id order", ns_reader_label(s->r),
                    (long long)id, (long long)s->last_id);
            goto done;
        }
        memcpy(data + (size_t)filled * lay.sample_bytes, (const unsigned char *)s->rec.data + (size_t)s->pos * lay.sample_bytes,
               lay.sample_bytes);
        ids[filled] = id;
        labels[filled] = lay.has_labels ? s->labels[s->pos] : 0;
        filled++;
        s->last_id = id;
        s->took_any = 1;
        s->pos++;
        if (filled == batch) {
            if (flush(w, &lay, data, ids, labels, filled, err) < 0) goto done;
            filled = 0;
        }
        if (advance(s, &lay, err) < 0) goto done;
    }
    if (flush(w, &lay, data, ids, labels, filled, err) < 0) goto done;
    rc = 0;
done:
    for (int i = 0; i < n; i++) {
        ns_reader_close(src[i].r);
        free(src[i].ids);
        free(src[i].labels);
    }
    for (int h = 0; h < nhead; h++) free(head[h]);
    free(head_meta);
    free(src);
    free(data);
    free(ids);
    free(labels);
    return rc;
}
