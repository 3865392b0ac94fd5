// labels.c: reading and checking a batch record's labels (labels.h).
#include "stream/labels.h"

#include <inttypes.h>
#include <stdio.h>

// The label as text for a message: integers exactly, anything else by type.
static void label_text(const msgpack_object *v, char *buf, size_t cap) {
    switch (v->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: snprintf(buf, cap, "%" PRIu64, v->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: snprintf(buf, cap, "%" PRId64, v->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: snprintf(buf, cap, "%g (not an integer)", v->via.f64); break;
    case MSGPACK_OBJECT_STR: snprintf(buf, cap, "a string (not an integer)"); break;
    case MSGPACK_OBJECT_NIL: snprintf(buf, cap, "nil (not an integer)"); break;
    default: snprintf(buf, cap, "not an integer"); break;
    }
}

int ns_record_labels(const ns_record *rec, int64_t n, int64_t classes, int32_t *y, ns_err *err) {
    for (int64_t i = 0; i < n; i++) y[i] = -1;
    const msgpack_object *labels = ns_map_get(rec->meta, "labels");
    if (!labels) return 0;
    unsigned long long index = (unsigned long long)rec->index;
    if (labels->type != MSGPACK_OBJECT_ARRAY)
        return ns_errf(err, "record %llu (%s): labels is not an array", index, rec->name);
    if ((int64_t)labels->via.array.size != n)
        return ns_errf(err, "record %llu (%s): %u labels for %lld samples (one per sample)", index, rec->name,
                       labels->via.array.size, (long long)n);
    int64_t limit = classes == NS_CLASSES_UNKNOWN ? (int64_t)INT32_MAX + 1 : classes;
    for (int64_t i = 0; i < n; i++) {
        const msgpack_object *v = &labels->via.array.ptr[i];
        int ok = (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 < (uint64_t)limit) ||
                 (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && v->via.i64 == -1);
        if (ok) {
            y[i] = v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? -1 : (int32_t)v->via.u64;
            continue;
        }
        char text[64];
        label_text(v, text, sizeof text);
        if (classes == NS_CLASSES_UNKNOWN)
            return ns_errf(err, "record %llu (%s): sample %lld has label %s (a label is -1 for unlabelled or a class index below 2^31)",
                           index, rec->name, (long long)i, text);
        if (classes == 0)
            return ns_errf(err, "record %llu (%s): sample %lld has label %s (the stream names no classes: only -1, unlabelled)",
                           index, rec->name, (long long)i, text);
        return ns_errf(err, "record %llu (%s): sample %lld has label %s (a label is -1 for unlabelled or a class 0..%lld)",
                       index, rec->name, (long long)i, text, (long long)classes - 1);
    }
    return 1;
}
