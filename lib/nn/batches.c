// batches.c: data streams to model-ready batches (batches.h).
#include "nn/batches.h"

#include <stdlib.h>
#include <string.h>

#include "stream/labels.h"

int ns_batches_open(ns_batches *b, const char *path, const ns_model *m, int64_t max_batch,
                    ns_err *err) {
    memset(b, 0, sizeof *b);
    b->model = m;
    b->max_batch = max_batch;
    b->sample_numel = m->nodes[0].numel;
    b->x = ns_aligned_alloc((size_t)(max_batch * b->sample_numel) * sizeof *b->x);
    b->y = malloc((size_t)max_batch * sizeof *b->y);
    b->ids = malloc((size_t)max_batch * sizeof *b->ids);
    if (!b->x || !b->y || !b->ids) {
        ns_batches_close(b);
        return ns_errf(err, "out of memory for a batch of %lld", (long long)max_batch);
    }
    if (!(b->r = ns_reader_open(path, err))) {
        ns_batches_close(b);
        return -1;
    }
    return 0;
}

void ns_batches_close(ns_batches *b) {
    ns_reader_close(b->r);
    ns_stream_info_free(&b->info);
    free(b->rec_labels);
    free(b->rec_ids);
    free(b->x);
    free(b->y);
    free(b->ids);
    memset(b, 0, sizeof *b);
}


// Checks a data record against the model's input and loads its labels/ids.
static int accept_record(ns_batches *b, ns_err *err) {
    const ns_record *rec = &b->rec;
    const ns_node *in = &b->model->nodes[0];
    int64_t per = 1;
    for (int i = 1; i < rec->ndim; i++) per *= rec->shape[i];
    int shape_ok = rec->ndim == in->ndim + 1 && per == in->numel &&
                   memcmp(rec->shape + 1, in->shape, (size_t)in->ndim * sizeof *in->shape) == 0;
    if (!shape_ok) {
        char a[64], m[64];
        ns_shape_format(a, sizeof a, rec->ndim - 1, rec->shape + 1);
        ns_shape_format(m, sizeof m, in->ndim, in->shape);
        return ns_errf(err, "%s: record %llu has samples of %s, the model takes %s",
                       ns_reader_label(b->r), (unsigned long long)rec->index, a, m);
    }
    if (rec->dtype != NS_F32 && rec->dtype != NS_U8)
        return ns_errf(err, "%s: record %llu is %s: images must be f32 or u8", ns_reader_label(b->r),
                       (unsigned long long)rec->index, ns_dtypes[rec->dtype].name);
    // The data must arrive normalised as the model was trained, or raw.
    const ns_model *m = b->model;
    int same = b->info.nnorm == m->nnorm;
    for (int c = 0; same && c < m->nnorm; c++)
        same = b->info.mean[c] == m->mean[c] && b->info.std[c] == m->std[c];
    if (!same && b->info.nnorm)
        return ns_errf(err, "%s: the data is normalised (image.mean/std) differently from the model's inputs",
                       ns_reader_label(b->r));
    // Labels index classes: the data's class names must be the model's, in order.
    if (b->info.labels && m->labels) {
        size_t n = b->info.nlabels < m->nlabels ? b->info.nlabels : m->nlabels;
        for (size_t k = 0; k < n || b->info.nlabels != m->nlabels; k++) {
            if (k < n && strcmp(b->info.labels[k], m->labels[k]) == 0) continue;
            if (k >= n)
                return ns_errf(err, "%s: the data has %zu classes, the model %zu", ns_reader_label(b->r),
                               b->info.nlabels, m->nlabels);
            return ns_errf(err, "%s: class %zu is '%s' in the data but '%s' in the model (same classes in another order?)",
                           ns_reader_label(b->r), k, b->info.labels[k], m->labels[k]);
        }
    }
    b->rec_n = rec->shape[0];
    b->rec_pos = 0;
    if (b->rec_n > b->rec_cap) {
        int32_t *l = realloc(b->rec_labels, (size_t)b->rec_n * sizeof *l);
        if (l) b->rec_labels = l;
        int64_t *d = realloc(b->rec_ids, (size_t)b->rec_n * sizeof *d);
        if (d) b->rec_ids = d;
        if (!l || !d) return ns_errf(err, "out of memory");
        b->rec_cap = b->rec_n;
    }
    // Labels are -1 or a class of the data (its names, else the model's).
    int64_t classes = b->info.labels ? (int64_t)b->info.nlabels : m->labels ? (int64_t)m->nlabels : NS_CLASSES_UNKNOWN;
    if (ns_record_labels(rec, b->rec_n, classes, b->rec_labels, err) < 0)
        return ns_err_prefix(err, "%s", ns_reader_label(b->r));
    size_t n = 0;
    int got = ns_obj_i64s(rec->meta, "ids", b->rec_ids, (size_t)b->rec_n, &n, err);
    if (got < 0) return -1;
    if (got == 0 || (int64_t)n != b->rec_n)
        for (int64_t i = 0; i < b->rec_n; i++) b->rec_ids[i] = b->read + i;
    b->rec_first = b->read;
    b->read += b->rec_n;
    return 0;
}

// Copies samples [from, from+count) of the current record into the batch at row `at`.
static void take(ns_batches *b, int64_t from, int64_t count, int64_t at) {
    const ns_record *rec = &b->rec;
    const ns_model *m = b->model;
    int64_t per = b->sample_numel;
    float *dst = b->x + at * per;
    size_t n = (size_t)(count * per);
    if (rec->dtype == NS_F32) {
        memcpy(dst, (const float *)rec->data + from * per, n * sizeof *dst);
    } else {
        ns_convert_to_f32(dst, (const uint8_t *)rec->data + from * per, NS_U8, n);
        for (size_t i = 0; i < n; i++) dst[i] *= 1.0f / 255.0f;
    }
    if (m->nnorm && !b->info.nnorm) { // raw data for a model trained on normalised inputs
        int64_t C = m->nodes[0].shape[0], S = per / C;
        for (int64_t s = 0; s < count; s++)
            for (int64_t c = 0; c < C; c++) {
                int k = m->nnorm == 1 ? 0 : (int)c;
                float mean = (float)m->mean[k], inv = (float)(1.0 / m->std[k]);
                float *p = dst + s * per + c * S;
                for (int64_t i = 0; i < S; i++) p[i] = (p[i] - mean) * inv;
            }
    }
    memcpy(b->y + at, b->rec_labels + from, (size_t)count * sizeof *b->y);
    memcpy(b->ids + at, b->rec_ids + from, (size_t)count * sizeof *b->ids);
}

// Whether sample i of the current record belongs to the shard.
static int keeps(const ns_batches *b, int64_t i) {
    return ns_shard_keeps(&b->shard, b->shard_by_position ? b->rec_first + i : b->rec_ids[i]);
}

int ns_batches_next(ns_batches *b, ns_err *err) {
    b->n = 0;
    while (b->n < b->max_batch) {
        if (!b->have_rec || b->rec_pos == b->rec_n) {
            // take() copied the samples out: a batch fills across records, so
            // batches are max_batch samples whatever the records' sizes (the
            // outputs of a shard and of the whole stream cut alike).
            b->have_rec = 0;
            int got = ns_reader_next(b->r, &b->rec, err);
            if (got < 0) return -1;
            if (got == 0) break;
            if (strcmp(b->rec.kind, "meta") == 0) {
                if (ns_stream_info_update(&b->info, &b->rec, err) < 0) return ns_err_prefix(err, "%s", ns_reader_label(b->r));
                continue;
            }
            if (!b->rec.has_data || strcmp(b->rec.kind, "tensor") != 0) continue;
            if (accept_record(b, err) < 0) return -1;
            b->have_rec = 1;
        }
        while (b->rec_pos < b->rec_n && !keeps(b, b->rec_pos)) b->rec_pos++;
        int64_t count = 0, room = b->max_batch - b->n;
        while (count < room && b->rec_pos + count < b->rec_n && keeps(b, b->rec_pos + count)) count++;
        if (count == 0) continue;
        take(b, b->rec_pos, count, b->n);
        b->rec_pos += count;
        b->n += count;
    }
    b->seen += b->n;
    return b->n > 0;
}

int ns_samples_load(ns_samples *s, const char *path, const ns_model *m, ns_err *err) {
    return ns_samples_load_shard(s, path, m, NULL, 0, err);
}

int ns_samples_load_shard(ns_samples *s, const char *path, const ns_model *m, const ns_shard *shard,
                          int by_position, ns_err *err) {
    memset(s, 0, sizeof *s);
    ns_batches b;
    if (ns_batches_open(&b, path, m, 1024, err) < 0) return -1;
    if (shard) b.shard = *shard;
    b.shard_by_position = by_position;
    s->numel = b.sample_numel;
    int64_t cap = 0;
    int got, rc = 0;
    while ((got = ns_batches_next(&b, err)) == 1) {
        if (s->n + b.n > cap) {
            cap = (s->n + b.n) * 2;
            float *x = ns_aligned_alloc((size_t)(cap * s->numel) * sizeof *x);
            int32_t *y = realloc(s->y, (size_t)cap * sizeof *y);
            if (y) s->y = y;
            int64_t *ids = realloc(s->ids, (size_t)cap * sizeof *ids);
            if (ids) s->ids = ids;
            if (!x || !y || !ids) {
                free(x);
                rc = ns_errf(err, "out of memory loading %s (%lld samples)", path, (long long)cap);
                break;
            }
            if (s->x) memcpy(x, s->x, (size_t)(s->n * s->numel) * sizeof *x);
            free(s->x);
            s->x = x;
        }
        memcpy(s->x + s->n * s->numel, b.x, (size_t)(b.n * s->numel) * sizeof *b.x);
        memcpy(s->y + s->n, b.y, (size_t)b.n * sizeof *b.y);
        memcpy(s->ids + s->n, b.ids, (size_t)b.n * sizeof *b.ids);
        s->n += b.n;
    }
    if (got < 0) rc = -1;
    if (rc == 0 && s->n == 0)
        rc = b.shard.count > 1 ? ns_errf(err, "%s: no samples in shard %lld/%lld", path, (long long)b.shard.index,
                                         (long long)b.shard.count)
                               : ns_errf(err, "%s: no samples", path);
    if (rc == 0) {
        s->labels = b.info.labels;
        s->nlabels = b.info.nlabels;
        b.info.labels = NULL;
        b.info.nlabels = 0;
    }
    ns_batches_close(&b);
    if (rc < 0) ns_samples_free(s);
    return rc;
}

void ns_samples_free(ns_samples *s) {
    free(s->x);
    free(s->y);
    free(s->ids);
    ns_strings_free(s->labels, s->nlabels);
    memset(s, 0, sizeof *s);
}
