// boxes.h: detection annotations in memory and in TNS streams (tns(5),
// "Detection streams"). One ns_det_boxes holds the boxes of one batch of N
// images of one size (H, W): image i owns boxes offsets[i] .. offsets[i+1]-1.
// Shapes: xyxy is (B, 4) f32 pixels (x0, y0, x1, y1), classes (B) int64,
// scores (B) f32 or NULL (ground truth has none), counts and ids (N).
// ns_det_set gathers the boxes of a whole stream, image by image, for
// evaluation and conversion.
#ifndef NS_DETECT_BOXES_H
#define NS_DETECT_BOXES_H
#include <stdint.h>
#include "base/err.h"
#include "stream/tns.h"

#define NS_DET_KIND "boxes"

typedef struct ns_det_boxes {
    int64_t n, total;  // images, boxes
    int64_t h, w;      // image size in pixels
    int64_t *ids;      // (N) sample ids, as in the image batch's meta
    int64_t *offsets;  // (N + 1), offsets[0] = 0, offsets[N] = total
    float *xyxy;       // (B, 4)
    int64_t *classes;  // (B)
    float *scores;     // (B) or NULL
} ns_det_boxes;

// Allocates room for n images and total boxes (zeroed; offsets all 0).
int ns_det_boxes_alloc(ns_det_boxes *b, int64_t n, int64_t total, int with_scores, ns_err *err);
void ns_det_boxes_free(ns_det_boxes *b);

// Checks one box against an image of (h, w) and nclasses (0: any class >= 0):
// finite, 0 <= x0 < x1 <= w, 0 <= y0 < y1 <= h.
int ns_det_box_check(const float *xyxy, int64_t cls, int64_t h, int64_t w, int64_t nclasses,
                     ns_err *err);
// Checks everything: offsets agree, every box valid, scores finite.
int ns_det_boxes_validate(const ns_det_boxes *b, int64_t nclasses, ns_err *err);

// Reads a "boxes" record (validated, nclasses as above) into b (allocated).
int ns_det_boxes_read(const ns_record *rec, int64_t nclasses, ns_det_boxes *b, ns_err *err);
// Writes b as a "boxes" record named name.
int ns_det_boxes_write(ns_writer *w, const char *name, const ns_det_boxes *b, ns_err *err);
// Checks that an image batch record (N, C, H, W) with meta ids is the one b
// annotates: same N, H, W and ids.
int ns_det_boxes_match_batch(const ns_det_boxes *b, const ns_record *batch, ns_err *err);

// --- a whole stream ----------------------------------------------------------
typedef struct ns_det_box {
    float x0, y0, x1, y1, score; // score 1 for ground truth
    int64_t cls;
} ns_det_box;

typedef struct ns_det_image {
    int64_t id, h, w;
    int64_t first, count; // its boxes in the set's box array
} ns_det_image;

typedef struct ns_det_set {
    ns_det_image *images;
    int64_t nimages, cap_images;
    ns_det_box *boxes;
    int64_t nboxes, cap_boxes;
    int has_scores;  // every boxes record carried scores
    char **labels;   // general.labels, NULL when the stream named none
    size_t nlabels;
    int64_t *by_id;  // image indices sorted by id (ns_det_set_index)
} ns_det_set;

// Appends a batch.
int ns_det_set_add(ns_det_set *s, const ns_det_boxes *b, ns_err *err);
// Appends one image with its boxes (used by importers).
int ns_det_set_add_image(ns_det_set *s, int64_t id, int64_t h, int64_t w, const ns_det_box *boxes,
                         int64_t n, ns_err *err);
// Reads every boxes record of a stream; class names from its meta records.
// Image batches are checked against the boxes record just before them.
int ns_det_set_read(const char *path, ns_det_set *s, ns_err *err);
// Sorts the images by id for ns_det_set_find; fails on a repeated id.
int ns_det_set_index(ns_det_set *s, ns_err *err);
// Index of the image with id, or -1 (after ns_det_set_index).
int64_t ns_det_set_find(const ns_det_set *s, int64_t id);
void ns_det_set_free(ns_det_set *s);
#endif
