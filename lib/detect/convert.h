// convert.h: detection annotations to and from common layouts (det-convert).
//   YOLO: a directory with one NAME.txt per image, a line per box
//     "class cx cy w h" normalised to [0, 1] by the image size (detections add
//     a sixth column, the score), and classes.txt, one class name a line.
//   COCO: one JSON object {"images": [{id, width, height, file_name}],
//     "annotations": [{id, image_id, category_id, bbox: [x, y, w, h], area,
//     iscrowd, score?}], "categories": [{id, name}]}; boxes in pixels.
// Shapes: everything goes through ns_det_set (boxes.h).
#ifndef NS_DETECT_CONVERT_H
#define NS_DETECT_CONVERT_H
#include <stdio.h>
#include "detect/boxes.h"
#include "stream/tns.h"

// Writes s as a new directory dir (built beside it and renamed into place;
// fails when dir exists). Files are ID.txt, the id zero-padded to 6 digits.
int ns_det_write_yolo(const ns_det_set *s, const char *dir, ns_err *err);
// Reads dir/*.txt (classes.txt aside), in name order. An image's id is its
// name when every name is a number, else its position; its size comes from
// dir/NAME.png's header or, when there is none, from (h, w) (0: required).
// Class names from dir/classes.txt when present.
int ns_det_read_yolo(const char *dir, int64_t h, int64_t w, ns_det_set *s, ns_err *err);
// Writes s as COCO JSON; category ids are the class indices.
int ns_det_write_coco(const ns_det_set *s, FILE *f, ns_err *err);
// Reads COCO JSON: classes are the categories in id order; boxes are checked
// like any boxes record.
int ns_det_read_coco(const char *path, ns_det_set *s, ns_err *err);
// Writes a meta record with the class names, then boxes records of up to
// batch images of one size each.
int ns_det_set_write(ns_writer *w, const ns_det_set *s, int batch, ns_err *err);
#endif
