// draw.h: boxes and class labels drawn onto images (img-write, logo-det
// --draw). A box is a 1-pixel outline in its class's colour; its label (class
// name, or number, and the score for detections) is written in a 3x5 pixel
// font on a strip of that colour above the box (inside it at the top edge).
// Shapes: images (C, H, W), converted to RGB (3, H, W) before drawing.
#ifndef NS_DETECT_DRAW_H
#define NS_DETECT_DRAW_H
#include <stddef.h>
#include "detect/boxes.h"
#include "stream/image.h"

// The colour of class k (a fixed palette, repeated), RGB in [0, 1].
void ns_det_class_colour(int64_t k, float rgb[3]);
// Writes text (letters, digits, " -._:/", others as '?', upper case) with its
// top-left at (x, y), clipped to the image; img must be RGB.
void ns_det_draw_text(ns_image *img, int x, int y, const char *text, const float rgb[3]);
// Draws one box with its label; score < 0 for none. img must be RGB.
void ns_det_draw_box(ns_image *img, const float xyxy[4], int64_t cls, float score, char *const *labels,
                     size_t nlabels);
// Converts img to RGB and draws the boxes of image j of a batch.
int ns_det_draw_image(ns_image *img, const ns_det_boxes *b, int64_t j, char *const *labels, size_t nlabels,
                      ns_err *err);
#endif
