// concepts.h: a concept bank for image data sets (concept-bank(1)) and the
// captions made from it (vlm-train(1)). Two kinds of concepts:
//   class  from an attribute table: every image of a class with the
//          attribute has the concept ("footwear" for Sandal, Sneaker, ...)
//   pixel  from each image's own pixels, thresholded at quantiles of a
//          reference set: bright/dark (mean intensity of the object),
//          patterned/plain (mean absolute Laplacian inside the object),
//          large/small (the object's share of the image)
// Values: 1 the image has the concept, 0 it does not, 2 unknown (a pixel
// statistic in the middle band, or an unlabelled image's class concept).
//
// Dimensions: N images, K concepts, A attributes, C classes, S = 3 statistics.
#ifndef NS_CONCEPTS_H
#define NS_CONCEPTS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/rng.h"

#define NS_CONCEPT_UNKNOWN 2

// --- the attribute table (examples/fashion-mnist.attributes.tsv) --------------
// "class<TAB>attr1<TAB>attr2..." then one row per class: its name, then 0 or 1
// per attribute. Blank lines and lines starting with '#' are skipped.
typedef struct ns_attr_table {
    char **attrs;     // (A)
    size_t nattrs;
    char **classes;   // (C)
    size_t nclasses;
    uint8_t *values;  // (C, A) 0 or 1
} ns_attr_table;

int ns_attr_table_load(ns_attr_table *t, const char *path, ns_err *err);
void ns_attr_table_free(ns_attr_table *t);
// The table's rows in the order of a stream's class names: out (n, A). Every
// stream class must be in the table and every table class in the stream.
int ns_attr_table_for_labels(const ns_attr_table *t, char *const *labels, size_t n, uint8_t *out,
                             ns_err *err);

// --- pixel statistics and their thresholds -----------------------------------
enum { NS_STAT_INTENSITY, NS_STAT_TEXTURE, NS_STAT_AREA, NS_STAT_COUNT };
extern const char *const ns_stat_names[NS_STAT_COUNT];      // "intensity", "texture", "area"
extern const char *const ns_stat_words[NS_STAT_COUNT][2];   // {top word, bottom word}: {"bright", "dark"}, ...
#define NS_PIXEL_CONCEPTS (2 * NS_STAT_COUNT)

// The three statistics of one image (C, H, W) with values in [0, 1]: channels
// are averaged; the object is every pixel above object_level.
void ns_pixel_stats(double stats[NS_STAT_COUNT], const float *img, int64_t C, int64_t H, int64_t W,
                    double object_level);

typedef struct ns_thresholds {
    double quantile;                    // q in (0, 0.5]
    double object_level;
    double low[NS_STAT_COUNT], high[NS_STAT_COUNT]; // the q and 1-q quantiles
} ns_thresholds;

// Quantiles of stats (n, S) by linear interpolation between order statistics
// (numpy's default). n >= 1.
int ns_thresholds_fit(ns_thresholds *th, const double *stats, int64_t n, double q, ns_err *err);
// The six pixel concepts of one image, in the order top, bottom per
// statistic: bright, dark, patterned, plain, large, small.
void ns_pixel_concepts(uint8_t out[NS_PIXEL_CONCEPTS], const double stats[NS_STAT_COUNT],
                       const ns_thresholds *th);

// --- concept-bank streams (read back) ---------------------------------------
typedef struct ns_concept_bank {
    char **names, **kinds; // (K) each; kinds "class" or "pixel"
    size_t k;
    uint8_t *values;       // (N, K)
    int32_t *labels;       // (N)
    int64_t *ids;          // (N)
    int64_t n;
    char **classes;        // general.labels, may be NULL
    size_t nclasses;
} ns_concept_bank;

// Reads a concept-bank stream: the meta's concepts.names/kinds and every
// "concepts" record (N, K) u8 with labels and ids, values 0, 1 or 2.
int ns_concept_bank_load(ns_concept_bank *b, const char *path, ns_err *err);
void ns_concept_bank_free(ns_concept_bank *b);

// --- captions -----------------------------------------------------------------
// The words a concept stands for in text: its name with '-' and '_' as spaces.
void ns_concept_phrase(char *buf, size_t cap, const char *name);
// A caption for one image: its class name and the phrases of the concepts it
// has (value 1), each dropped with probability dropout (the class name too),
// through one of several templates chosen at random: pixel concepts fill the
// adjective slot, class concepts the attribute slot. class_name may be NULL.
void ns_caption_make(char *buf, size_t cap, const char *class_name, const uint8_t *values,
                     char *const *names, char *const *kinds, size_t k, double dropout, ns_rng *rng);

#endif
