// augment.h: random data augmentation of image batches for training, as
// torchvision's RandomCrop(size=(H, W), padding=P) followed by
// RandomHorizontalFlip(p): each image is zero-padded by P on every side, an
// H x W window is cut at a random offset (top and left each uniform in
// [0, 2P]), and the window is mirrored left-right with probability p.
//
// Random choices come from ns_rng and are drawn for the whole batch first, in
// image order, on the calling thread; applying them is then parallel over
// (image, channel) planes. So the same seed gives the same batch whatever the
// thread count. Nothing is allocated per call: the per-image choices live in a
// table sized by ns_augment_init.
//
// Glossary: N batch, C channels, H height, W width, P padding.
#ifndef NS_AUGMENT_H
#define NS_AUGMENT_H

#include <stdint.h>

#include "base/err.h"
#include "base/rng.h"

// The random choice for one image.
typedef struct ns_augment_draw {
    int32_t top;  // crop offset in the padded image, rows: 0..2P (P means no shift)
    int32_t left; // crop offset, columns: 0..2P
    int32_t flip; // 1: mirrored left-right
} ns_augment_draw;

typedef struct ns_augment {
    int64_t max_n;          // largest batch
    int64_t C, H, W;        // image geometry
    int32_t pad;            // P >= 0; 0 turns the crop off
    double flip_p;          // flip probability in [0, 1]; 0.5 as torchvision, 0 off
    ns_augment_draw *draws; // (max_n) choices of the last ns_augment_draw_batch
} ns_augment;

// Largest padding accepted (a sanity bound on the offsets' int32 arithmetic).
#define NS_AUGMENT_PAD_MAX 65536

// Sizes the choice table for batches of up to max_n images of (C, H, W).
int ns_augment_init(ns_augment *a, int64_t max_n, int64_t C, int64_t H, int64_t W, int pad,
                    double flip_p, ns_err *err);
void ns_augment_free(ns_augment *a);

// Draws choices for N <= max_n images into a->draws, in image order: per
// image top then left (ns_rng_below(2P+1), only when P > 0), then the flip
// (ns_rng_uniform < flip_p, only when 0 < flip_p < 1; otherwise fixed).
int ns_augment_draw_batch(ns_augment *a, int64_t N, ns_rng *rng, ns_err *err);

// Applies a->draws[0..N) to inp, writing out; out == inp works in place,
// otherwise the two must not overlap. Cannot fail once N <= max_n (checked by
// ns_augment_draw_batch).
void ns_augment_apply(const ns_augment *a,
                      float *out,       // (N, C, H, W)
                      const float *inp, // (N, C, H, W)
                      int64_t N);

// Both: draw for N images, then apply.
int ns_augment_batch(ns_augment *a, float *out, const float *inp, int64_t N, ns_rng *rng,
                     ns_err *err);

#endif
