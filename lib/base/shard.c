// shard.c: shards of a data set by sample id (shard.h).
#include "base/shard.h"

#include <errno.h>
#include <stdlib.h>

int ns_shard_parse(const char *text, ns_shard *out, ns_err *err) {
    char *end;
    errno = 0;
    long long i = strtoll(text, &end, 10);
    int ok = end != text && *end == '/' && i >= 0;
    long long n = 0;
    if (ok) {
        const char *at = end + 1;
        n = strtoll(at, &end, 10);
        ok = end != at && *end == 0 && errno == 0 && n >= 1 && n <= NS_SHARD_MAX && i < n;
    }
    if (!ok) return ns_errf(err, "a shard is I/N with 0 <= I < N <= %d (%s)", NS_SHARD_MAX, text);
    out->index = i;
    out->count = n;
    return 0;
}

int ns_shard_active(const ns_shard *s) { return s->count > 1; }

int ns_shard_keeps(const ns_shard *s, int64_t id) {
    if (s->count <= 1) return 1;
    int64_t r = id % s->count;
    return (r < 0 ? r + s->count : r) == s->index;
}
