// synth.h: synthetic logo scenes (logo-synth(1)). Artwork is one RGBA image
// per brand (class = brand); a scene is a background (gradient, noise,
// texture, or product-like clutter from an image dataset) with 1..N logos
// pasted at random scale, rotation and colour, some blurred or partly occluded,
// plus distractor logos of brands outside the task. Each logo's box is the
// tight box of its pasted alpha (alpha >= 0.5).
// Shapes: artwork images (4, h, w) in [0, 1]; a scene (3, S, S).
#ifndef NS_DETECT_SYNTH_H
#define NS_DETECT_SYNTH_H
#include <stdint.h>
#include "detect/boxes.h"
#include "stream/dataset.h"
#include "stream/image.h"

#define NS_ART_MIPS 4 // each brand is kept at longest side 128, 64, 32, 16
#define NS_ART_NAME_MAX 128

typedef struct ns_logo_art {
    char name[NS_ART_NAME_MAX];   // brand: the PNG's name without ".png"
    ns_image mip[NS_ART_MIPS];    // RGBA, trimmed to the visible pixels
} ns_logo_art;

typedef struct ns_artwork {
    ns_logo_art *items; // sorted by name
    int n;
} ns_artwork;

// Loads every DIR/*.png (hidden files skipped), sorted by name. Fails, naming
// the file, on a corrupt PNG or one with no visible pixel; fails on a
// directory with no PNG.
int ns_artwork_load_dir(const char *dir, ns_artwork *a, ns_err *err);
// n built-in brands "shape-000".. : symmetric 5x5 identicon glyphs, one
// colour each, all different; for tests and runs without artwork.
int ns_artwork_builtin(int n, ns_artwork *a, ns_err *err);
void ns_artwork_free(ns_artwork *a);

// Which brands are the task's classes and which are distractors. A fixed
// permutation of the artwork by brand_seed: the first nclasses brands are the
// task; the rest are distractors. heldout swaps the roles: the task is the
// next nclasses brands (fewer when the artwork runs out), never seen in
// training, and the training brands become distractors.
typedef struct ns_synth_split {
    int *task, ntask;     // class k is brand task[k]
    int *others, nothers; // distractor brands
} ns_synth_split;

int ns_synth_split_make(const ns_artwork *a, int nclasses, uint64_t brand_seed, int heldout,
                        ns_synth_split *s, ns_err *err);
void ns_synth_split_free(ns_synth_split *s);

typedef struct ns_synth_config {
    int size;                   // image side S
    int max_logos;              // 1..max_logos task logos per image
    double min_scale, max_scale; // a logo's longer side, as a fraction of S
    double max_rotate;          // degrees, uniform in [-max, max]
    double p_recolor, p_occlude, p_blur, p_distractor;
    ns_dataset *clutter;        // product-like clutter (e.g. Fashion-MNIST), or NULL
    uint64_t seed, stream;      // scene i draws from (seed, stream, i)
} ns_synth_config;

// Defaults: S 128, up to 4 logos, scale 0.08..0.5, +-30 degrees,
// p_recolor 0.3, p_occlude 0.2, p_blur 0.2, p_distractor 0.3.
void ns_synth_config_default(ns_synth_config *c);

// Renders scene `index` into img (allocated (3, S, S)) and its boxes into
// boxes (capacity max_logos; classes are task indices); *nboxes >= 1.
int ns_synth_scene(const ns_artwork *a, const ns_synth_split *s, const ns_synth_config *c, int64_t index,
                   ns_image *img, ns_det_box *boxes, int *nboxes, ns_err *err);
#endif
