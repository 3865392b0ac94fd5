// shard.h: one part of a data set chosen by sample id, so that N programs
// (make -j, GNU parallel, Spark's pipe()) can each take one part and the
// outputs merge back in order (tns-cat --by-id).
//
// "I/N" (0 <= I < N) keeps the samples whose id is I modulo N: every sample
// lands in exactly one of the N parts, whatever the order or the batching of
// the stream, and the parts stay interleaved, so each is a fair sample of
// the whole. N = 1 (or the zero struct) keeps everything.
#ifndef NS_SHARD_H
#define NS_SHARD_H

#include <stdint.h>

#include "base/err.h"

typedef struct ns_shard {
    int64_t index, count; // count 0 or 1: no sharding
} ns_shard;

#define NS_SHARD_MAX 1000000

// Parses "I/N": integers, 1 <= N <= NS_SHARD_MAX, 0 <= I < N. Errors name the text.
int ns_shard_parse(const char *text, ns_shard *out, ns_err *err);
int ns_shard_active(const ns_shard *s);
// 1 when the sample with this id belongs to the shard (negative ids too).
int ns_shard_keeps(const ns_shard *s, int64_t id);

#endif
