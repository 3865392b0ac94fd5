// streaminfo.c: reading class names and normalisation from meta records.
#include "stream/streaminfo.h"

#include <math.h>
#include <string.h>

int ns_stream_info_update(ns_stream_info *s, const ns_record *rec, ns_err *err) {
    char **labels;
    size_t n;
    if (ns_obj_strs(rec->meta, "general.labels", &labels, &n, err) < 0) return -1;
    if (labels) {
        ns_strings_free(s->labels, s->nlabels);
        s->labels = labels;
        s->nlabels = n;
    }
    const msgpack_object *mean = ns_map_get(rec->meta, "image.mean");
    const msgpack_object *std = ns_map_get(rec->meta, "image.std");
    if (!mean && !std) return 0;
    if (!mean || !std) return ns_errf(err, "image.mean and image.std must come together");
    if (mean->type != MSGPACK_OBJECT_ARRAY || mean->via.array.size < 1 || mean->via.array.size > NS_MAX_NORM)
        return ns_errf(err, "image.mean: not 1 to %d numbers", NS_MAX_NORM);
    int c = (int)mean->via.array.size;
    double m[NS_MAX_NORM], d[NS_MAX_NORM];
    if (ns_obj_f64s(rec->meta, "image.mean", m, (size_t)c, err) < 0 ||
        ns_obj_f64s(rec->meta, "image.std", d, (size_t)c, err) < 0)
        return -1;
    for (int i = 0; i < c; i++) {
        if (!isfinite(m[i])) return ns_errf(err, "image.mean: %g is not a finite number", m[i]);
        if (!isfinite(d[i])) return ns_errf(err, "image.std: %g is not a finite number", d[i]);
        if (!(d[i] > 0)) return ns_errf(err, "image.std: %g is not positive", d[i]);
    }
    s->nnorm = c;
    memcpy(s->mean, m, sizeof m);
    memcpy(s->std, d, sizeof d);
    return 0;
}

void ns_stream_info_free(ns_stream_info *s) {
    ns_strings_free(s->labels, s->nlabels);
    memset(s, 0, sizeof *s);
}

void ns_map_shard(ns_map *m, const ns_shard *s, int64_t batch) {
    if (!ns_shard_active(s)) return;
    ns_map_i64(m, "shard.index", s->index);
    ns_map_i64(m, "shard.count", s->count);
    ns_map_i64(m, "shard.batch", batch);
}
