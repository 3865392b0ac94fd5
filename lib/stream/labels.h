// labels.h: the per-sample labels of a batch record (tns(5), "Labelled
// batches"): meta "labels", an array of one integer per sample (the record's
// first axis), each -1 (unlabelled) or a class index. Every reader of such
// labels goes through ns_record_labels, so a bad label is refused, naming the
// record, the sample and the value, never read as unlabelled.
#ifndef NS_LABELS_H
#define NS_LABELS_H

#include <stdint.h>

#include "stream/tns.h"

// classes for a stream that names no classes: any int32 class index
#define NS_CLASSES_UNKNOWN ((int64_t)-1)

// Reads the labels of record rec, whose first axis has n samples, into y (n
// of them). classes: labels must be in [0, classes) or -1 (NS_CLASSES_UNKNOWN:
// in [0, 2^31)). Returns 1 with the labels, 0 when the record has none
// (y all -1), -1 on an error: labels that are not an array of n integers, or
// a label that is neither -1 nor a class (the message starts "record R
// (name)"; callers prefix the source).
int ns_record_labels(const ns_record *rec, int64_t n, int64_t classes, int32_t *y, ns_err *err);

#endif
