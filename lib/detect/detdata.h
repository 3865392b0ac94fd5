// detdata.h: detection data as the detectors read it: image batches (N, C, H,
// W) f32, all of one size, each with the boxes record before it (detection
// streams, tns(5)). Training shuffles, so ns_det_data_load holds a whole
// stream; detection streams, so ns_det_reader hands a stream out a window of
// whole batches at a time and keeps only the boxes of what it has read.
#ifndef NS_DETECT_DETDATA_H
#define NS_DETECT_DETDATA_H

#include <stdint.h>

#include "base/err.h"
#include "detect/boxes.h"

typedef struct ns_det_data {
    int64_t n, c, h, w;   // images (n, c, h, w)
    float *x;             // (n, c, h, w)
    ns_det_set set;       // boxes of image i: set.images[i] (same order); ids
    int with_boxes;       // every batch had a boxes record
} ns_det_data;

// Reads image batches (N, C, H, W), all of one size, with their boxes
// records when need_boxes (then every batch must have one; classes checked
// against the stream's labels). Fails on no image, sizes that differ, a
// boxes record that does not match its batch, an image id seen twice.
// d->set.labels are the stream's class names (general.labels).
int ns_det_data_load(const char *path, int need_boxes, ns_det_data *d, ns_err *err);
void ns_det_data_free(ns_det_data *d);

typedef struct ns_det_reader ns_det_reader;

// Opens a stream for reading a window at a time (same checks as
// ns_det_data_load; an id seen twice is found at the end of the stream).
ns_det_reader *ns_det_reader_open(const char *path, int need_boxes, ns_err *err);
// Reads the next whole batches, at least one and as many as fit in max images
// (a batch larger than max comes alone), into d (freed and refilled; its set
// has no labels). Returns 1 with images, 0 at the end of the stream (after
// its checks), -1 on an error (the message names the stream).
int ns_det_reader_next(ns_det_reader *r, int64_t max, ns_det_data *d, ns_err *err);
// The stream's class names so far (general.labels), and the boxes of every
// image read so far, in stream order (ground truth for evaluation).
char **ns_det_reader_labels(const ns_det_reader *r, size_t *n);
const ns_det_set *ns_det_reader_seen(const ns_det_reader *r);
void ns_det_reader_close(ns_det_reader *r);

#endif
