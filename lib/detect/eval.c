// eval.c: VOC and COCO average precision (eval.h). Work is done class by
// class: the class's ground truth grouped by image, its detections sorted by
// score. Shapes: per class, gt_first (images + 1) offsets into gt_idx; det
// arrays (D) of box indices into dt.
#include "detect/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COCO_IOUS 10
#define COCO_RECALLS 101
#define AREAS 4 // all, small, medium, large
static const double area_lo[AREAS] = {0, 0, 32 * 32, 96 * 96};
static const double area_hi[AREAS] = {1e10, 32 * 32, 96 * 96, 1e10};

double ns_det_iou(const ns_det_box *a, const ns_det_box *b) {
    double iw = fmin(a->x1, b->x1) - fmax(a->x0, b->x0), ih = fmin(a->y1, b->y1) - fmax(a->y0, b->y0);
    if (iw <= 0 || ih <= 0) return 0;
    double inter = iw * ih;
    double uni = (double)(a->x1 - a->x0) * (a->y1 - a->y0) + (double)(b->x1 - b->x0) * (b->y1 - b->y0) - inter;
    return uni > 0 ? inter / uni : 0;
}

static double box_area(const ns_det_box *b) { return (double)(b->x1 - b->x0) * (double)(b->y1 - b->y0); }

double ns_det_ap_voc11(const double *prec, const double *rec, int64_t n) {
    double ap = 0;
    for (int k = 0; k <= 10; k++) {
        double t = k / 10.0, p = 0;
        for (int64_t i = 0; i < n; i++)
            if (rec[i] >= t - 1e-12 && prec[i] > p) p = prec[i];
        ap += p / 11;
    }
    return ap;
}

double ns_det_ap_all_points(const double *prec, const double *rec, int64_t n) {
    // envelope from the right over (0, rec..., 1) with precision (0, prec..., 0)
    double ap = 0, envelope = 0;
    for (int64_t i = n - 1; i >= 0; i--) {
        if (prec[i] > envelope) envelope = prec[i];
        double prev = i > 0 ? rec[i - 1] : 0;
        ap += (rec[i] - prev) * envelope;
    }
    return ap;
}

// One detection of the class being scored.
typedef struct det_ref {
    int64_t box, image; // index into dt->boxes, index of the image in gt
    int64_t rank;       // after sorting: its position in the kept list (-1: dropped)
    float score;
} det_ref;

static int by_score(const void *a, const void *b) {
    const det_ref *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    if (x->image != y->image) return x->image < y->image ? -1 : 1;
    return (x->box > y->box) - (x->box < y->box);
}

static int by_image_then_score(const void *a, const void *b) {
    const det_ref *x = a, *y = b;
    if (x->image != y->image) return x->image < y->image ? -1 : 1;
    return by_score(a, b);
}

typedef struct class_work {
    int64_t *gt_first, *gt_idx; // ground truth of the class by image
    det_ref *dets;              // detections of the class
    int64_t ndet, ngt;
    double *prec, *rec;
    unsigned char *taken, *ignored, *det_ignored, *det_tp;
    det_ref *kept;
    int64_t *pos; // (detection boxes) position in kept
} class_work;

// VOC matching at IoU > 0.5 over detections sorted by score.
static void voc_class(const ns_det_set *gt, const ns_det_set *dt, class_work *w, ns_det_class_ap *out) {
    qsort(w->dets, (size_t)w->ndet, sizeof *w->dets, by_score);
    memset(w->taken, 0, (size_t)w->ngt + 1);
    int64_t tp = 0, fp = 0;
    for (int64_t d = 0; d < w->ndet; d++) {
        const ns_det_box *db = &dt->boxes[w->dets[d].box];
        int64_t img = w->dets[d].image, best = -1;
        double best_iou = -1;
        for (int64_t g = w->gt_first[img]; g < w->gt_first[img + 1]; g++) {
            double iou = ns_det_iou(db, &gt->boxes[w->gt_idx[g]]);
            if (iou > best_iou) best_iou = iou, best = g;
        }
        if (best >= 0 && best_iou > 0.5 && !w->taken[best]) {
            w->taken[best] = 1;
            tp++;
        } else {
            fp++;
        }
        w->rec[d] = w->ngt ? (double)tp / (double)w->ngt : 0;
        w->prec[d] = (double)tp / (double)(tp + fp);
    }
    out->tp50 = tp;
    out->voc11 = w->ngt ? ns_det_ap_voc11(w->prec, w->rec, w->ndet) : NAN;
    out->voc_all = w->ngt ? ns_det_ap_all_points(w->prec, w->rec, w->ndet) : NAN;
}

// COCO AP of one class at one IoU threshold and area range; NAN without
// ground truth in the range. w->kept holds the kept detections (by image,
// then score).
static double coco_class(const ns_det_set *gt, const ns_det_set *dt, class_work *w, int64_t nkept, double t,
                         int area) {
    int64_t npig = 0;
    for (int64_t g = 0; g < w->ngt; g++) {
        double a = box_area(&gt->boxes[w->gt_idx[g]]);
        w->ignored[g] = a < area_lo[area] || a > area_hi[area];
        npig += !w->ignored[g];
        w->taken[g] = 0;
    }
    if (npig == 0) return NAN;
    for (int64_t d = 0; d < nkept; d++) {
        const ns_det_box *db = &dt->boxes[w->kept[d].box];
        int64_t img = w->kept[d].image, m = -1;
        double best = fmin(t, 1 - 1e-10);
        // non-ignored ground truth first, as COCO sorts it
        for (int pass = 0; pass < 2; pass++) {
            for (int64_t g = w->gt_first[img]; g < w->gt_first[img + 1]; g++) {
                if (w->ignored[g] != pass || w->taken[g]) continue;
                double iou = ns_det_iou(db, &gt->boxes[w->gt_idx[g]]);
                if (iou < best) continue;
                best = iou;
                m = g;
            }
            if (m >= 0) break;
        }
        if (m >= 0) {
            w->taken[m] = 1;
            w->det_tp[d] = 1;
            w->det_ignored[d] = w->ignored[m];
        } else {
            double a = box_area(db);
            w->det_tp[d] = 0;
            w->det_ignored[d] = a < area_lo[area] || a > area_hi[area];
        }
    }
    // accumulate over the kept detections in score order
    int64_t n = 0;
    double tp = 0, fp = 0;
    for (int64_t d = 0; d < nkept; d++) {
        int64_t k = w->dets[d].rank; // dets sorted by score; rank = its index in kept
        if (k < 0 || w->det_ignored[k]) continue;
        if (w->det_tp[k]) tp++;
        else fp++;
        w->rec[n] = tp / (double)npig;
        w->prec[n] = tp / (tp + fp);
        n++;
    }
    for (int64_t i = n - 2; i >= 0; i--)
        if (w->prec[i + 1] > w->prec[i]) w->prec[i] = w->prec[i + 1];
    double sum = 0;
    int64_t i = 0;
    for (int r = 0; r < COCO_RECALLS; r++) {
        double thr = r / 100.0;
        while (i < n && w->rec[i] < thr - 1e-12) i++;
        if (i < n) sum += w->prec[i];
    }
    return sum / COCO_RECALLS;
}

static double mean_defined(const double *v, int64_t n, size_t stride) {
    double s = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = *(const double *)((const char *)v + (size_t)i * stride);
        if (!isnan(x)) s += x, k++;
    }
    return k ? s / (double)k : NAN;
}

int ns_det_evaluate(const ns_det_set *gt, const ns_det_set *dt, int64_t nclasses, int max_dets,
                    ns_det_class_ap *per_class, ns_det_summary *sum, ns_err *err) {
    if (max_dets <= 0) max_dets = 100;
    if (!gt->by_id && gt->nimages > 0) return ns_errf(err, "ground truth is not indexed");
    int64_t *dt_image = malloc(((size_t)dt->nimages + 1) * sizeof *dt_image);
    if (!dt_image) return ns_errf(err, "out of memory");
    for (int64_t i = 0; i < dt->nimages; i++) {
        dt_image[i] = ns_det_set_find(gt, dt->images[i].id);
        if (dt_image[i] < 0) {
            free(dt_image);
            return ns_errf(err, "detections for image %lld, which has no ground truth", (long long)dt->images[i].id);
        }
    }
    for (int64_t j = 0; j < gt->nboxes; j++)
        if (gt->boxes[j].cls < 0 || gt->boxes[j].cls >= nclasses) {
            free(dt_image);
            return ns_errf(err, "ground truth of unknown class %lld", (long long)gt->boxes[j].cls);
        }
    for (int64_t j = 0; j < dt->nboxes; j++)
        if (dt->boxes[j].cls < 0 || dt->boxes[j].cls >= nclasses) {
            free(dt_image);
            return ns_errf(err, "detection of unknown class %lld", (long long)dt->boxes[j].cls);
        }
    class_work w = {0};
    size_t nb = (size_t)(gt->nboxes > dt->nboxes ? gt->nboxes : dt->nboxes) + 1;
    w.gt_first = malloc(((size_t)gt->nimages + 2) * sizeof *w.gt_first);
    w.gt_idx = malloc(nb * sizeof *w.gt_idx);
    w.dets = malloc(nb * sizeof *w.dets);
    w.kept = malloc(nb * sizeof *w.kept);
    w.prec = malloc(nb * sizeof *w.prec);
    w.rec = malloc(nb * sizeof *w.rec);
    w.pos = malloc(((size_t)dt->nboxes + 1) * sizeof *w.pos);
    w.taken = malloc(nb);
    w.ignored = malloc(nb);
    w.det_ignored = malloc(nb);
    w.det_tp = malloc(nb);
    int rc = 0;
    if (!w.gt_first || !w.gt_idx || !w.dets || !w.kept || !w.prec || !w.rec || !w.taken || !w.ignored ||
        !w.det_ignored || !w.det_tp || !w.pos)
        rc = ns_errf(err, "out of memory");
    for (int64_t c = 0; !rc && c < nclasses; c++) {
        ns_det_class_ap *out = &per_class[c];
        memset(out, 0, sizeof *out);
        w.ngt = 0;
        for (int64_t i = 0; i < gt->nimages; i++) {
            w.gt_first[i] = w.ngt;
            const ns_det_image *im = &gt->images[i];
            for (int64_t j = im->first; j < im->first + im->count; j++)
                if (gt->boxes[j].cls == c) w.gt_idx[w.ngt++] = j;
        }
        w.gt_first[gt->nimages] = w.ngt;
        w.ndet = 0;
        for (int64_t i = 0; i < dt->nimages; i++) {
            const ns_det_image *im = &dt->images[i];
            for (int64_t j = im->first; j < im->first + im->count; j++)
                if (dt->boxes[j].cls == c) w.dets[w.ndet++] = (det_ref){j, dt_image[i], -1, dt->boxes[j].score};
        }
        out->ngt = w.ngt;
        out->ndet = w.ndet;
        voc_class(gt, dt, &w, out);
        // COCO: the best max_dets of each image, kept in (image, score) order
        memcpy(w.kept, w.dets, (size_t)w.ndet * sizeof *w.dets);
        qsort(w.kept, (size_t)w.ndet, sizeof *w.kept, by_image_then_score);
        int64_t nkept = 0, rank = 0, prev_image = -1;
        for (int64_t d = 0; d < w.ndet; d++) {
            rank = w.kept[d].image == prev_image ? rank + 1 : 0;
            prev_image = w.kept[d].image;
            if (rank < max_dets) w.kept[nkept++] = w.kept[d];
        }
        // each score-sorted detection's position in kept (-1: dropped)
        for (int64_t d = 0; d < w.ndet; d++) w.pos[w.dets[d].box] = -1;
        for (int64_t k = 0; k < nkept; k++) w.pos[w.kept[k].box] = k;
        for (int64_t d = 0; d < w.ndet; d++) w.dets[d].rank = w.pos[w.dets[d].box];
        double by_area[AREAS] = {0};
        for (int a = 0; a < AREAS; a++) {
            double s = 0;
            for (int t = 0; t < COCO_IOUS; t++) {
                double ap = coco_class(gt, dt, &w, nkept, 0.5 + 0.05 * t, a);
                if (a == 0 && t == 0) out->ap50 = ap;
                if (a == 0 && t == 5) out->ap75 = ap;
                s += ap;
            }
            by_area[a] = s / COCO_IOUS;
        }
        out->coco = by_area[0];
        out->small = by_area[1];
        out->medium = by_area[2];
        out->large = by_area[3];
    }
    if (!rc) {
        memset(sum, 0, sizeof *sum);
        for (int64_t c = 0; c < nclasses; c++) sum->nclasses_scored += per_class[c].ngt > 0;
        size_t st = sizeof *per_class;
        sum->map_voc11 = mean_defined(&per_class[0].voc11, nclasses, st);
        sum->map_voc_all = mean_defined(&per_class[0].voc_all, nclasses, st);
        sum->map_coco = mean_defined(&per_class[0].coco, nclasses, st);
        sum->map50 = mean_defined(&per_class[0].ap50, nclasses, st);
        sum->map75 = mean_defined(&per_class[0].ap75, nclasses, st);
        sum->map_small = mean_defined(&per_class[0].small, nclasses, st);
        sum->map_medium = mean_defined(&per_class[0].medium, nclasses, st);
        sum->map_large = mean_defined(&per_class[0].large, nclasses, st);
    }
    free(dt_image);
    free(w.gt_first);
    free(w.gt_idx);
    free(w.dets);
    free(w.kept);
    free(w.prec);
    free(w.rec);
    free(w.pos);
    free(w.taken);
    free(w.ignored);
    free(w.det_ignored);
    free(w.det_tp);
    return rc;
}
