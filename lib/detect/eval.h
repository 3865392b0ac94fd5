// eval.h: detection metrics. Per class, detections sorted by score are matched
// greedily to ground truth of the same class and image:
//   - VOC (IoU > 0.5): a detection takes the ground-truth box it overlaps most;
//     if that box is taken already it is a false positive (a duplicate). AP by
//     the VOC2007 11-point rule and by the VOC2010+ all-point rule.
//   - COCO (IoU >= t for t = .50:.05:.95): a detection takes the best-overlapping
//     box not yet taken; at most max_dets detections per image and class; AP is
//     the mean of the monotone precision at 101 recall points. AP50, AP75 and
//     small/medium/large (box area <= 32^2, 32^2..96^2, >= 96^2 pixels, COCO's
//     inclusive ranges) over IoU .50:.95.
// Boxes are continuous pixel coordinates: width x1 - x0 (no VOC "+1").
// A class with no ground truth has no AP (NAN) and is left out of every mean,
// whether it has detections or not.
#ifndef NS_DETECT_EVAL_H
#define NS_DETECT_EVAL_H
#include <stdint.h>
#include "detect/boxes.h"

typedef struct ns_det_class_ap {
    int64_t ngt, ndet, tp50;     // ground truth, detections, true positives at 0.5 (VOC)
    double voc11, voc_all;       // AP at IoU 0.5, NAN when ngt = 0
    double coco, ap50, ap75;     // COCO AP over .50:.95, at .50, at .75
    double small, medium, large; // COCO AP over .50:.95 by area, NAN when no such box
} ns_det_class_ap;

typedef struct ns_det_summary {
    int nclasses_scored;         // classes with ground truth
    double map_voc11, map_voc_all, map_coco, map50, map75, map_small, map_medium, map_large;
} ns_det_summary;

// IoU of two boxes (x0, y0, x1, y1).
double ns_det_iou(const ns_det_box *a, const ns_det_box *b);
// AP from a precision/recall curve of n points (recall non-decreasing).
double ns_det_ap_voc11(const double *prec, const double *rec, int64_t n);
double ns_det_ap_all_points(const double *prec, const double *rec, int64_t n);

// Evaluates dt against gt for classes 0..nclasses-1; per_class has nclasses
// entries. Every detection's image must be in gt (by id); gt must be indexed
// (ns_det_set_index). max_dets <= 0 means 100.
int ns_det_evaluate(const ns_det_set *gt, const ns_det_set *dt, int64_t nclasses, int max_dets,
                    ns_det_class_ap *per_class, ns_det_summary *sum, ns_err *err);
#endif
