// batches.h: labelled samples from a data stream, ready for a model: records
// of images (N, C, H, W) or features (N, D), f32 or u8, cut or joined into
// batches of at most max_batch, converted to f32 and normalised the way the
// model expects. Labels and ids come from each record's meta: labels -1 when
// absent, else one per sample, each -1 or a class (a bad one is an error);
// ids the sample's position in the stream when absent. With a shard
// (base/shard.h) only the samples it keeps are delivered, chosen by id, or by
// position in the stream when shard_by_position is set (data-parallel training).
#ifndef NS_BATCHES_H
#define NS_BATCHES_H

#include <stdint.h>

#include "base/shard.h"
#include "nn/model.h"
#include "stream/streaminfo.h"
#include "stream/tns.h"

typedef struct ns_batches {
    ns_reader *r;
    const ns_model *model;
    int64_t max_batch, sample_numel;
    ns_stream_info info;  // what the stream's meta records said
    // the record being cut into batches
    ns_record rec;
    int have_rec;
    int64_t rec_pos, rec_n, rec_first; // rec_first: the stream position of its sample 0
    int32_t *rec_labels;
    int64_t *rec_ids;
    int64_t rec_cap;
    // the current batch
    float *x;      // (n, sample_numel)
    int32_t *y;    // (n)
    int64_t *ids;  // (n)
    int64_t n;
    int64_t seen;  // samples delivered so far
    int64_t read;  // samples of the stream's records accepted so far (positions)
    ns_shard shard; // set after ns_batches_open; zero: every sample
    int shard_by_position;
} ns_batches;

int ns_batches_open(ns_batches *b, const char *path, const ns_model *m, int64_t max_batch,
                    ns_err *err);
// 1: a batch of b->n samples in b->x, b->y, b->ids; 0: end of stream; -1: error.
int ns_batches_next(ns_batches *b, ns_err *err);
void ns_batches_close(ns_batches *b);

// A whole labelled data set in memory (training shuffles it every epoch).
typedef struct ns_samples {
    float *x;      // (n, numel)
    int32_t *y;    // (n)
    int64_t *ids;  // (n)
    int64_t n, numel;
    char **labels; // class names the stream gave, may be NULL
    size_t nlabels;
} ns_samples;

int ns_samples_load(ns_samples *s, const char *path, const ns_model *m, ns_err *err);
// The same, keeping only the shard's samples (shard NULL: all), by position in
// the stream when by_position, else by id.
int ns_samples_load_shard(ns_samples *s, const char *path, const ns_model *m, const ns_shard *shard,
                          int by_position, ns_err *err);
void ns_samples_free(ns_samples *s);

#endif
