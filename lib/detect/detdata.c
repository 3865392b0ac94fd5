// detdata.c: reading detection streams into memory, whole (training) or a
// window of whole batches at a time (detection) (detdata.h). Images (n, C, H,
// W) f32; a boxes record, when there is one, comes right before its batch.
#include "detect/detdata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stream/streaminfo.h"
#include "stream/tns.h"

struct ns_det_reader {
    ns_reader *in;
    char *path;
    int need_boxes, ended;
    ns_stream_info info;
    ns_det_boxes pending;   // the boxes record read before its batch
    int have_pending;
    ns_det_set seen;        // boxes of every image read so far
    int64_t c, h, w;        // the size of every image (0 before the first)
    int64_t next_id, batches, boxed;
};

void ns_det_data_free(ns_det_data *d) {
    free(d->x);
    ns_det_set_free(&d->set);
    memset(d, 0, sizeof *d);
}

// Appends a batch's pixels, checking its size against the stream's and its
// values. cap: images d->x has room for.
static int append_pixels(ns_det_reader *r, ns_det_data *d, const ns_record *rec, int64_t *cap, ns_err *err) {
    ns_tensor t;
    if (ns_record_tensor_f32(rec, &t, err) < 0) return -1;
    int64_t n = t.shape[0], c = t.shape[1], h = t.shape[2], w = t.shape[3], per = c * h * w;
    const float *px = t.data;
    int rc = 0;
    if (r->c == 0) {
        if (c != 3) rc = ns_errf(err, "images have %lld channels; logo-det reads RGB (3)", (long long)c);
        r->c = c, r->h = h, r->w = w;
    } else if (c != r->c || h != r->h || w != r->w) {
        rc = ns_errf(err, "record %llu: images of %lldx%lldx%lld after %lldx%lldx%lld (one size per stream)",
                     (unsigned long long)rec->index, (long long)c, (long long)h, (long long)w, (long long)r->c,
                     (long long)r->h, (long long)r->w);
    }
    d->c = c, d->h = h, d->w = w;
    if (rc == 0 && d->n + n > *cap) {
        int64_t next = *cap ? *cap : 64;
        while (next < d->n + n) next *= 2;
        float *grown = realloc(d->x, (size_t)(next * per) * sizeof *grown);
        if (!grown) rc = ns_errf(err, "out of memory (%lld images)", (long long)next);
        else d->x = grown, *cap = next;
    }
    for (int64_t i = 0; rc == 0 && i < n * per; i++)
        if (!isfinite(px[i]))
            rc = ns_errf(err, "record %llu: image %lld has a pixel that is not finite", (unsigned long long)rec->index,
                         (long long)(i / per));
    if (rc == 0) {
        memcpy(d->x + d->n * per, px, (size_t)(n * per) * sizeof(float));
        d->n += n;
    }
    ns_tensor_free(&t);
    return rc;
}

// The boxes of a batch: its boxes record, or none with the batch's ids (or
// running numbers), into the window's set and the reader's.
static int add_boxes(ns_det_reader *r, ns_det_data *d, const ns_record *rec, ns_err *err) {
    int64_t n = rec->shape[0];
    r->batches++;
    if (r->have_pending) {
        int rc = ns_det_boxes_match_batch(&r->pending, rec, err);
        if (!rc) rc = ns_det_set_add(&d->set, &r->pending, err);
        if (!rc) rc = ns_det_set_add(&r->seen, &r->pending, err);
        ns_det_boxes_free(&r->pending);
        r->have_pending = 0;
        r->boxed++;
        r->next_id += n;
        return rc;
    }
    if (r->need_boxes)
        return ns_errf(err, "record %llu: an image batch without a boxes record before it", (unsigned long long)rec->index);
    int64_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    size_t nid = 0;
    if (!ids) return ns_errf(err, "out of memory");
    ns_err ignored;
    if (ns_obj_i64s(rec->meta, "ids", ids, (size_t)n, &nid, &ignored) != 1 || (int64_t)nid != n)
        for (int64_t i = 0; i < n; i++) ids[i] = r->next_id + i;
    int rc = 0;
    for (int64_t i = 0; !rc && i < n; i++) {
        rc = ns_det_set_add_image(&d->set, ids[i], rec->shape[2], rec->shape[3], NULL, 0, err);
        if (!rc) rc = ns_det_set_add_image(&r->seen, ids[i], rec->shape[2], rec->shape[3], NULL, 0, err);
    }
    free(ids);
    r->next_id += n;
    return rc;
}

// The checks of a stream's end: a boxes record left over, no image at all,
// an id seen twice.
static int end_checks(ns_det_reader *r, ns_err *err) {
    if (r->have_pending) return ns_errf(err, "a boxes record with no image batch after it");
    if (r->seen.nimages == 0) return ns_errf(err, "no images in the stream");
    return ns_det_set_index(&r->seen, err);
}

ns_det_reader *ns_det_reader_open(const char *path, int need_boxes, ns_err *err) {
    ns_det_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        ns_errf(err, "out of memory");
        return NULL;
    }
    r->need_boxes = need_boxes;
    if (!(r->in = ns_reader_open(path, err))) {
        ns_det_reader_close(r);
        return NULL;
    }
    return r;
}

int ns_det_reader_next(ns_det_reader *r, int64_t max, ns_det_data *d, ns_err *err) {
    ns_det_data_free(d);
    int64_t cap = 0;
    int rc = 0, got = 0;
    ns_record rec;
    while (!rc && !r->ended && d->n < max && (got = ns_reader_next(r->in, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            rc = ns_stream_info_update(&r->info, &rec, err);
        } else if (strcmp(rec.kind, NS_DET_KIND) == 0) {
            if (r->have_pending)
                rc = ns_errf(err, "record %llu: two boxes records in a row", (unsigned long long)rec.index);
            else if ((rc = ns_det_boxes_read(&rec, (int64_t)r->info.nlabels, &r->pending, err)) == 0)
                r->have_pending = 1;
        } else if (strcmp(rec.kind, "tensor") == 0 && rec.ndim == 4) {
            rc = add_boxes(r, d, &rec, err);
            if (!rc) rc = append_pixels(r, d, &rec, &cap, err);
        }
    }
    if (got < 0) rc = -1;
    if (!rc && got == 0 && !r->ended) {
        r->ended = 1;
        rc = end_checks(r, err);
    }
    if (rc) {
        ns_det_data_free(d);
        // the reader's messages name the stream already
        return strncmp(err->msg, r->path, strlen(r->path)) == 0 ? -1 : ns_err_prefix(err, "%s", r->path);
    }
    d->with_boxes = r->batches == r->boxed;
    return d->n > 0;
}

char **ns_det_reader_labels(const ns_det_reader *r, size_t *n) {
    *n = r->info.nlabels;
    return r->info.labels;
}

const ns_det_set *ns_det_reader_seen(const ns_det_reader *r) { return &r->seen; }

void ns_det_reader_close(ns_det_reader *r) {
    if (!r) return;
    if (r->in) ns_reader_close(r->in);
    if (r->have_pending) ns_det_boxes_free(&r->pending);
    ns_det_set_free(&r->seen);
    ns_stream_info_free(&r->info);
    free(r->path);
    free(r);
}

int ns_det_data_load(const char *path, int need_boxes, ns_det_data *d, ns_err *err) {
    memset(d, 0, sizeof *d);
    ns_det_reader *r = ns_det_reader_open(path, need_boxes, err);
    if (!r) return -1;
    int got = ns_det_reader_next(r, INT64_MAX, d, err);
    if (got == 1) got = ns_det_set_index(&d->set, err) < 0 ? -1 : 1; // the reader's index holds its own set
    if (got == 1) { // the class names move to the data
        d->set.labels = r->info.labels, d->set.nlabels = r->info.nlabels;
        r->info.labels = NULL, r->info.nlabels = 0;
    }
    ns_det_reader_close(r);
    if (got < 0) ns_det_data_free(d);
    return got == 1 ? 0 : -1;
}
