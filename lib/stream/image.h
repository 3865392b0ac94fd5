// image.h: images in memory, PNG decode/encode (libpng), and the geometric and
// photometric transforms datasets need.
// An image is (C, H, W) float in [0, 1], C-contiguous: C = 1 gray, 2 gray+alpha,
// 3 RGB, 4 RGBA.
#ifndef NS_IMAGE_H
#define NS_IMAGE_H

#include <stddef.h>

#include "base/err.h"

typedef struct ns_image {
    int c, h, w;
    float *data; // (C, H, W), owned
} ns_image;

// Largest width or height accepted from a file (decompression-bomb guard).
#define NS_IMAGE_MAX_SIDE 16384

// Allocates a zeroed (c, h, w) image: 1 <= c <= 4, h and w >= 1. Fails on
// overflow or out of memory (img is then empty). Free with ns_image_free, which
// empties img and accepts an empty one.
int ns_image_alloc(ns_image *img, int c, int h, int w, ns_err *err);
void ns_image_free(ns_image *img);

// Decodes a PNG held in memory: 1/2/4/8/16-bit, gray, gray+alpha, RGB, RGBA and
// palette (palette becomes RGB, or RGBA when it has transparency; tRNS on gray
// or RGB adds alpha). Samples scale to [0,1] by 1/(2^depth - 1). A corrupt,
// truncated or oversized PNG fails with a message saying what is wrong, and
// leaves img empty. Ancillary chunks other than tRNS (gAMA, iCCP, text, ...)
// are skipped: samples are returned as stored, without colour management.
int ns_png_decode(const void *buf, size_t len, ns_image *img, ns_err *err);
// Reads the whole file (or pipe) and decodes it; messages start with the path.
int ns_png_read_file(const char *path, ns_image *img, ns_err *err);

// Encodes as 8-bit PNG (values clamped to [0,1], rounded) with C channels:
// 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. *buf is malloc'd. The output is
// deterministic (no time chunk).
int ns_png_encode(const ns_image *img, void **buf, size_t *len, ns_err *err);
// Writes a regular file through a temporary file in the same directory and
// rename(), so a failure leaves nothing behind; an existing non-regular file
// (/dev/stdout, a pipe) is written in place. Messages start with the path.
int ns_png_write_file(const char *path, const ns_image *img, ns_err *err);

// The transforms below build a new image in *dst; dst may be src itself, which
// is then replaced (freed first). On failure src and *dst are unchanged.

// Converts to c channels: gray<->RGB (ITU-R 601-2 luma, as PIL's "L"),
// alpha dropped or added (opaque).
int ns_image_convert(const ns_image *src, int c, ns_image *dst, ns_err *err);
// Bilinear resize to (h, w) with half-pixel centres (align_corners=False), no
// antialiasing: torch.nn.functional.interpolate(mode="bilinear").
int ns_image_resize(const ns_image *src, int h, int w, ns_image *dst, ns_err *err);
// Centre crop to (h, w); when larger than the source, pads with zeros
// (torchvision's CenterCrop rounding).
int ns_image_center_crop(const ns_image *src, int h, int w, ns_image *dst, ns_err *err);
// x = (x - mean[c]) / std[c] for each channel.
void ns_image_normalize(ns_image *img, const float *mean, const float *std);

#endif
