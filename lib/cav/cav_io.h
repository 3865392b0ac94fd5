// cav_io.h: the streams concept work reads, held in memory: feature streams
// (probe-embed's output: target-model features, VLM image embeddings, VLM
// text embeddings), concept-bank streams (which images have which concept),
// the CAV streams cav-fit writes, and matching rows of two streams by image
// id. (The class -> attribute table has its one reader in concepts.h.)
//
// Feature stream (tns(5) records; the LG-CAV contract):
//   meta    probe.source "model" | "vlm-image" | "vlm-text", probe.model (the
//           producing model's fingerprint), probe.model_path, probe.layer,
//           probe.pool ("none", "avg", "flatten"), general.labels
//   tensor  "features" (N, D) f32 per batch, meta labels and ids
//   tensor  "head.weight" (K, D), "head.bias" (K) when the layer feeds the head
//   tensor  "texts" (T, E) f32, meta names (T str), templates (count, 0 = bare
//           text); "texts.plain" (T, E): the bare-text embeddings
// Concept stream:
//   meta    concepts.names (K str), concepts.kinds (K str, "class"/"pixel")
//   tensor  "concepts" (N, K) u8 per batch (1 has, 0 has not, 2 unknown),
//           meta labels and ids
// CAV stream (cav-fit --output):
//   tensor  "cav" (D) per concept, meta cav.concept, cav.model, cav.layer
//           (and cav.offset, cav.method, ... that the reader does not need)
#ifndef NS_CAV_IO_H
#define NS_CAV_IO_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

#define NS_PROBE_STR 256

typedef struct ns_features {
    char path[NS_PROBE_STR];
    char source[NS_PROBE_STR], model[NS_PROBE_STR], model_path[NS_PROBE_STR];
    char layer[NS_PROBE_STR], pool[NS_PROBE_STR];
    char **labels;        // general.labels, may be NULL
    size_t nlabels;
    int64_t n, d;
    float *x;             // (n, d) "features"
    int32_t *y;           // (n) labels, -1 when unlabelled
    int64_t *ids;         // (n)
    int64_t k, head_d;    // head rows (0 when there is no head) and width
    float *head_w;        // (k, d)
    float *head_b;        // (k)
    int64_t nt, e;        // texts
    float *texts;         // (nt, e)
    float *texts_plain;   // (nt, e) or NULL
    char **names;         // (nt) concept names
    int64_t templates;
} ns_features;

// Reads a whole feature stream. Refuses records of a wrong dtype/shape,
// features of differing widths, labels/ids of the wrong length, duplicate ids,
// non-finite values, a head whose width is not D.
int ns_features_load(ns_features *f, const char *path, ns_err *err);
void ns_features_free(ns_features *f);
// The row of texts named name, or -1.
int64_t ns_features_text(const ns_features *f, const char *name);

typedef struct ns_concepts {
    char **names, **kinds;
    int64_t k;
    int64_t n;
    uint8_t *has;   // (n, k): 0, 1 or 2
    int64_t *ids;   // (n)
    int32_t *y;     // (n)
} ns_concepts;

int ns_concepts_load(ns_concepts *c, const char *path, ns_err *err);
void ns_concepts_free(ns_concepts *c);
int64_t ns_concepts_find(const ns_concepts *c, const char *name); // column or -1

// For each of the nw ids in want, the row of have (nh ids, all distinct)
// with the same id, into rows (nw). Fails naming what and the first id
// missing from have.
int ns_match_ids(int64_t *rows, const int64_t *want, int64_t nw, const int64_t *have, int64_t nh,
                 const char *what, ns_err *err);

// CAV streams (cav-fit --output), as asr-reweight reads them.
typedef struct ns_cavs {
    int64_t m, d;
    float *v;        // (M, D)
    char **concepts; // (M) cav.concept of each
} ns_cavs;

// Reads every tensor record named "cav" of path: f32 (any numeric dtype) of
// shape (D), with meta cav.concept, cav.model and cav.layer. Refuses a CAV
// whose cav.model or cav.layer is not model or layer (the features'
// probe.model and probe.layer), a width other than d, non-finite values,
// a repeated concept, a truncated stream, and a stream without CAVs.
int ns_cavs_load(ns_cavs *c, const char *path, const char *model, const char *layer, int64_t d, ns_err *err);
void ns_cavs_free(ns_cavs *c);
// The CAV whose concept is name, or -1.
int64_t ns_cavs_find(const ns_cavs *c, const char *name);

#endif
