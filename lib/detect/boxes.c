// boxes.c: detection annotations (boxes.h): validation, the "boxes" record of
// tns(5) read and written, and ns_det_set, the boxes of a whole stream.
// Shapes: xyxy (B, 4) f32 pixels; counts, ids (N); classes (B); scores (B).
#include "detect/boxes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stream/streaminfo.h"

int ns_det_boxes_alloc(ns_det_boxes *b, int64_t n, int64_t total, int with_scores, ns_err *err) {
    memset(b, 0, sizeof *b);
    if (n < 0 || total < 0 || n > ((int64_t)1 << 40) || total > ((int64_t)1 << 40))
        return ns_errf(err, "absurd box count (%lld images, %lld boxes)", (long long)n, (long long)total);
    b->n = n;
    b->total = total;
    b->ids = calloc((size_t)n + 1, sizeof *b->ids);
    b->offsets = calloc((size_t)n + 1, sizeof *b->offsets);
    b->xyxy = calloc((size_t)total * 4 + 1, sizeof *b->xyxy);
    b->classes = calloc((size_t)total + 1, sizeof *b->classes);
    b->scores = with_scores ? calloc((size_t)total + 1, sizeof *b->scores) : NULL;
    if (!b->ids || !b->offsets || !b->xyxy || !b->classes || (with_scores && !b->scores)) {
        ns_det_boxes_free(b);
        return ns_errf(err, "out of memory (%lld boxes)", (long long)total);
    }
    return 0;
}

void ns_det_boxes_free(ns_det_boxes *b) {
    free(b->ids);
    free(b->offsets);
    free(b->xyxy);
    free(b->classes);
    free(b->scores);
    memset(b, 0, sizeof *b);
}

int ns_det_box_check(const float *q, int64_t cls, int64_t h, int64_t w, int64_t nclasses, ns_err *err) {
    for (int k = 0; k < 4; k++)
        if (!isfinite(q[k])) return ns_errf(err, "box coordinate is not finite (%g)", (double)q[k]);
    if (!(q[0] < q[2]) || !(q[1] < q[3]))
        return ns_errf(err, "box has no area (x0 %g, y0 %g, x1 %g, y1 %g)", (double)q[0], (double)q[1],
                       (double)q[2], (double)q[3]);
    if (q[0] < 0 || q[1] < 0 || q[2] > (float)w || q[3] > (float)h)
        return ns_errf(err, "box (%g, %g, %g, %g) is outside the %lldx%lld image", (double)q[0], (double)q[1],
                       (double)q[2], (double)q[3], (long long)w, (long long)h);
    if (cls < 0 || (nclasses > 0 && cls >= nclasses))
        return ns_errf(err, "unknown class %lld (%lld classes)", (long long)cls, (long long)nclasses);
    return 0;
}

int ns_det_boxes_validate(const ns_det_boxes *b, int64_t nclasses, ns_err *err) {
    if (b->h < 1 || b->w < 1) return ns_errf(err, "image size %lldx%lld", (long long)b->w, (long long)b->h);
    if (b->offsets[0] != 0) return ns_errf(err, "offsets do not start at 0");
    for (int64_t i = 0; i < b->n; i++)
        if (b->offsets[i + 1] < b->offsets[i])
            return ns_errf(err, "image %lld has a negative box count", (long long)i);
    if (b->offsets[b->n] != b->total)
        return ns_errf(err, "box counts add up to %lld, not %lld", (long long)b->offsets[b->n], (long long)b->total);
    for (int64_t j = 0; j < b->total; j++) {
        if (ns_det_box_check(b->xyxy + 4 * j, b->classes[j], b->h, b->w, nclasses, err) < 0)
            return ns_err_prefix(err, "box %lld", (long long)j);
        if (b->scores && !isfinite(b->scores[j]))
            return ns_errf(err, "box %lld: score is not finite", (long long)j);
    }
    return 0;
}

int ns_det_boxes_read(const ns_record *rec, int64_t nclasses, ns_det_boxes *b, ns_err *err) {
    memset(b, 0, sizeof *b);
    if (strcmp(rec->kind, NS_DET_KIND) != 0)
        return ns_errf(err, "record %llu is a %s, not boxes", (unsigned long long)rec->index, rec->kind);
    if (!rec->has_data || rec->ndim != 2 || rec->shape[1] != 4 || rec->dtype != NS_F32)
        return ns_errf(err, "record %llu: boxes must be f32 (B, 4)", (unsigned long long)rec->index);
    int64_t total = rec->shape[0];
    const msgpack_object *counts = ns_map_get(rec->meta, "counts");
    if (!counts || counts->type != MSGPACK_OBJECT_ARRAY)
        return ns_errf(err, "record %llu: boxes without counts", (unsigned long long)rec->index);
    int64_t n = counts->via.array.size;
    double size[2];
    if (ns_obj_f64s(rec->meta, "image.size", size, 2, err) != 1 || size[0] < 1 || size[1] < 1 ||
        size[0] > 1e6 || size[1] > 1e6) {
        ns_errf(err, "boxes need image.size [H, W]");
        return ns_err_prefix(err, "record %llu", (unsigned long long)rec->index);
    }
    int with_scores = ns_map_get(rec->meta, "scores") != NULL;
    if (ns_det_boxes_alloc(b, n, total, with_scores, err) < 0) return -1;
    b->h = (int64_t)size[0];
    b->w = (int64_t)size[1];
    size_t got = 0;
    int rc = 0;
    int64_t *tmp = malloc(((size_t)(n > total ? n : total) + 1) * sizeof *tmp);
    if (!tmp) rc = ns_errf(err, "out of memory");
    if (!rc && (ns_obj_i64s(rec->meta, "counts", tmp, (size_t)n, &got, err) != 1 || (int64_t)got != n))
        rc = -1;
    for (int64_t i = 0; !rc && i < n; i++) {
        if (tmp[i] < 0) rc = ns_errf(err, "image %lld has a negative box count (%lld)", (long long)i, (long long)tmp[i]);
        else if (tmp[i] > total - b->offsets[i])
            rc = ns_errf(err, "counts add up to more than the %lld boxes", (long long)total);
        else b->offsets[i + 1] = b->offsets[i] + tmp[i];
    }
    if (!rc && b->offsets[n] != total)
        rc = ns_errf(err, "counts add up to %lld, not the %lld boxes", (long long)b->offsets[n], (long long)total);
    if (!rc && (ns_obj_i64s(rec->meta, "ids", b->ids, (size_t)n, &got, err) != 1 || (int64_t)got != n))
        rc = ns_errf(err, "boxes need ids for the %lld images", (long long)n);
    if (!rc && (ns_obj_i64s(rec->meta, "classes", b->classes, (size_t)total, &got, err) != 1 ||
                (int64_t)got != total))
        rc = ns_errf(err, "boxes need classes for the %lld boxes", (long long)total);
    if (!rc && with_scores) {
        const msgpack_object *s = ns_map_get(rec->meta, "scores");
        if (s->type != MSGPACK_OBJECT_ARRAY || (int64_t)s->via.array.size != total)
            rc = ns_errf(err, "scores must be %lld numbers", (long long)total);
        for (int64_t j = 0; !rc && j < total; j++) {
            const msgpack_object *v = &s->via.array.ptr[j];
            if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) b->scores[j] = (float)v->via.f64;
            else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) b->scores[j] = (float)v->via.u64;
            else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) b->scores[j] = (float)v->via.i64;
            else rc = ns_errf(err, "score %lld is not a number", (long long)j);
        }
    }
    free(tmp);
    if (!rc) {
        memcpy(b->xyxy, rec->data, (size_t)total * 4 * sizeof(float)); // little-endian hosts only
        rc = ns_det_boxes_validate(b, nclasses, err);
    }
    if (rc) {
        ns_det_boxes_free(b);
        return ns_err_prefix(err, "record %llu", (unsigned long long)rec->index);
    }
    return 0;
}

int ns_det_boxes_write(ns_writer *w, const char *name, const ns_det_boxes *b, ns_err *err) {
    ns_tensor t;
    int64_t shape[2] = {b->total, 4};
    if (ns_tensor_alloc(&t, NS_F32, 2, shape, err) < 0) return -1;
    memcpy(t.data, b->xyxy, (size_t)b->total * 4 * sizeof(float));
    int64_t *counts = malloc(((size_t)b->n + 1) * sizeof *counts);
    double *scores = b->scores ? malloc(((size_t)b->total + 1) * sizeof *scores) : NULL;
    if (!counts || (b->scores && !scores)) {
        free(counts);
        free(scores);
        ns_tensor_free(&t);
        return ns_errf(err, "out of memory");
    }
    for (int64_t i = 0; i < b->n; i++) counts[i] = b->offsets[i + 1] - b->offsets[i];
    for (int64_t j = 0; scores && j < b->total; j++) scores[j] = b->scores[j];
    ns_map meta;
    ns_map_init(&meta);
    int64_t size[2] = {b->h, b->w};
    ns_map_i64s(&meta, "image.size", size, 2);
    ns_map_i64s(&meta, "ids", b->ids, (size_t)b->n);
    ns_map_i64s(&meta, "counts", counts, (size_t)b->n);
    ns_map_i64s(&meta, "classes", b->classes, (size_t)b->total);
    if (scores) ns_map_f64s(&meta, "scores", scores, (size_t)b->total);
    int rc = ns_write_record(w, NS_DET_KIND, name, &t, NULL, &meta, err);
    ns_map_free(&meta);
    free(counts);
    free(scores);
    ns_tensor_free(&t);
    return rc;
}

int ns_det_boxes_match_batch(const ns_det_boxes *b, const ns_record *batch, ns_err *err) {
    if (batch->ndim != 4 || batch->shape[0] != b->n || batch->shape[2] != b->h || batch->shape[3] != b->w)
        return ns_errf(err, "record %llu: the batch does not match the boxes before it (%lld images of %lldx%lld)",
                       (unsigned long long)batch->index, (long long)b->n, (long long)b->h, (long long)b->w);
    int64_t *ids = malloc(((size_t)b->n + 1) * sizeof *ids);
    if (!ids) return ns_errf(err, "out of memory");
    size_t got = 0;
    int rc = ns_obj_i64s(batch->meta, "ids", ids, (size_t)b->n, &got, err);
    if (rc == 1 && (int64_t)got == b->n && memcmp(ids, b->ids, (size_t)b->n * sizeof *ids) == 0) rc = 0;
    else rc = ns_errf(err, "record %llu: the batch's ids differ from those of the boxes before it",
                      (unsigned long long)batch->index);
    free(ids);
    return rc;
}

// --- ns_det_set ----------------------------------------------------------------

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

int ns_det_set_add_image(ns_det_set *s, int64_t id, int64_t h, int64_t w, const ns_det_box *boxes, int64_t n,
                         ns_err *err) {
    if (grow((void **)&s->images, &s->cap_images, s->nimages + 1, sizeof *s->images) < 0 ||
        grow((void **)&s->boxes, &s->cap_boxes, s->nboxes + n, sizeof *s->boxes) < 0)
        return ns_errf(err, "out of memory");
    free(s->by_id);
    s->by_id = NULL;
    s->images[s->nimages++] = (ns_det_image){id, h, w, s->nboxes, n};
    if (n > 0) memcpy(s->boxes + s->nboxes, boxes, (size_t)n * sizeof *boxes);
    s->nboxes += n;
    return 0;
}

int ns_det_set_add(ns_det_set *s, const ns_det_boxes *b, ns_err *err) {
    if (grow((void **)&s->boxes, &s->cap_boxes, s->nboxes + b->total, sizeof *s->boxes) < 0)
        return ns_errf(err, "out of memory");
    for (int64_t i = 0; i < b->n; i++) {
        int64_t first = b->offsets[i], n = b->offsets[i + 1] - first;
        ns_det_box one[1];
        if (ns_det_set_add_image(s, b->ids[i], b->h, b->w, one, 0, err) < 0) return -1;
        ns_det_image *im = &s->images[s->nimages - 1];
        im->count = n;
        for (int64_t j = 0; j < n; j++) {
            const float *q = b->xyxy + 4 * (first + j);
            s->boxes[s->nboxes++] = (ns_det_box){q[0], q[1], q[2], q[3], b->scores ? b->scores[first + j] : 1.0f,
                                                 b->classes[first + j]};
        }
    }
    return 0;
}

static const ns_det_set *sort_set;
static int by_id_cmp(const void *a, const void *b) {
    int64_t x = sort_set->images[*(const int64_t *)a].id, y = sort_set->images[*(const int64_t *)b].id;
    return (x > y) - (x < y);
}

int ns_det_set_index(ns_det_set *s, ns_err *err) {
    free(s->by_id);
    s->by_id = malloc(((size_t)s->nimages + 1) * sizeof *s->by_id);
    if (!s->by_id) return ns_errf(err, "out of memory");
    for (int64_t i = 0; i < s->nimages; i++) s->by_id[i] = i;
    sort_set = s;
    qsort(s->by_id, (size_t)s->nimages, sizeof *s->by_id, by_id_cmp);
    for (int64_t i = 1; i < s->nimages; i++)
        if (s->images[s->by_id[i]].id == s->images[s->by_id[i - 1]].id) {
            int64_t id = s->images[s->by_id[i]].id;
            free(s->by_id);
            s->by_id = NULL;
            return ns_errf(err, "image id %lld appears twice", (long long)id);
        }
    return 0;
}

int64_t ns_det_set_find(const ns_det_set *s, int64_t id) {
    int64_t lo = 0, hi = s->nimages;
    if (!s->by_id) return -1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, v = s->images[s->by_id[mid]].id;
        if (v == id) return s->by_id[mid];
        if (v < id) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int ns_det_set_read(const char *path, ns_det_set *s, ns_err *err) {
    memset(s, 0, sizeof *s);
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    ns_stream_info info = {0};
    ns_det_boxes last = {0};
    int have_last = 0, got, rc = 0, batches = 0, scored = 0;
    ns_record rec;
    while (!rc && (got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            rc = ns_stream_info_update(&info, &rec, err);
        } else if (strcmp(rec.kind, NS_DET_KIND) == 0) {
            if (have_last) ns_det_boxes_free(&last);
            rc = ns_det_boxes_read(&rec, (int64_t)info.nlabels, &last, err);
            have_last = rc == 0;
            if (!rc) rc = ns_det_set_add(s, &last, err);
            batches++;
            scored += last.scores != NULL;
        } else if (have_last && strcmp(rec.kind, "tensor") == 0 && rec.ndim == 4) {
            rc = ns_det_boxes_match_batch(&last, &rec, err);
            ns_det_boxes_free(&last);
            have_last = 0;
        }
    }
    if (got < 0) rc = -1;
    if (have_last) ns_det_boxes_free(&last);
    ns_reader_close(r);
    if (!rc && batches == 0) rc = ns_errf(err, "no boxes records in the stream");
    if (!rc) rc = ns_det_set_index(s, err);
    if (rc) {
        ns_stream_info_free(&info);
        ns_det_set_free(s);
        return ns_err_prefix(err, "%s", path);
    }
    s->has_scores = scored == batches;
    s->labels = info.labels;
    s->nlabels = info.nlabels;
    return 0;
}

void ns_det_set_free(ns_det_set *s) {
    free(s->images);
    free(s->boxes);
    free(s->by_id);
    ns_strings_free(s->labels, s->nlabels);
    memset(s, 0, sizeof *s);
}
