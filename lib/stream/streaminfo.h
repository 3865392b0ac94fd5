// streaminfo.h: the stream-wide facts that meta records carry and that many
// programs need: class names (general.labels) and the normalisation already
// applied to images (image.mean, image.std). Later meta records add to or
// replace what earlier ones said (tns(5), "Stream metadata").
#ifndef NS_STREAMINFO_H
#define NS_STREAMINFO_H

#include "base/shard.h"
#include "stream/tns.h"

#define NS_MAX_NORM 4 // channels of image.mean / image.std

typedef struct ns_stream_info {
    char **labels;  // class names, NULL when none was given
    size_t nlabels;
    int nnorm;      // 0: not normalised; else values in mean[] and std[]
    double mean[NS_MAX_NORM], std[NS_MAX_NORM];
} ns_stream_info;

// Applies the keys of a meta record. Errors: labels that are not strings,
// image.mean without image.std (or of another length), more than 4 channels,
// a std that is not positive.
int ns_stream_info_update(ns_stream_info *s, const ns_record *rec, ns_err *err);
void ns_stream_info_free(ns_stream_info *s);

// The keys a sharded output adds to its meta record (tns(5), "Shards"):
// shard.index and shard.count (I/N), and shard.batch, the samples per record
// of the unsharded output, so that tns-cat --by-id rebuilds it record for
// record. Nothing when s is not active.
void ns_map_shard(ns_map *m, const ns_shard *s, int64_t batch);

#endif
