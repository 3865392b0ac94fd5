// idmerge.h: the shards of a stream (base/shard.h, written by img-read,
// probe-embed or net-eval with --shard I/N) merged back into the unsharded
// stream, in ascending order of sample id: what tns-cat --by-id does.
//
// Each input: header records, then batches (n, ...) of one name, dtype and
// sample shape, whose meta holds "ids" (n) in ascending order and optionally
// "labels" (n). Output: input 0's header records (meta records without the
// shard.* keys, general.count summed over the inputs), then the samples of all
// inputs by ascending id, in records of `batch` samples (0: the shard.batch
// the shards recorded, else the largest first batch). Errors: an id in two
// inputs, ids out of order within an input, two inputs claiming the same
// shard or different shard counts, batches that differ in layout.
#ifndef NS_IDMERGE_H
#define NS_IDMERGE_H

#include "base/shard.h"
#include "stream/tns.h"

#define NS_IDMERGE_MAX_HEAD 64 // records before the first batch, per input

int ns_merge_by_id(const char *const *paths, int n, int64_t batch, ns_writer *w, ns_err *err);

#endif
