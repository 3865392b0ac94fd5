// dataset.h: labelled image datasets on disk, read in a stable order, and image
// archives written in the ImageFolder layout.
//
// Sources (ns_dataset_open picks by content, not by file name):
//   - an ImageFolder directory: ROOT/CLASS/NAME.png;
//   - a tar, tar.gz or zip archive in the same layout (an optional single
//     top-level directory is allowed: top/CLASS/NAME.png);
//   - an IDX image file (MNIST, Fashion-MNIST), plain or gzip'd, with an
//     optional IDX label file (unlabelled images get label -1).
// Order is torchvision's: classes sorted by name (byte order), files sorted by
// path within a class; the class index is the position in that order.
#ifndef NS_DATASET_H
#define NS_DATASET_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "image.h"

typedef struct ns_dataset ns_dataset;

// path "-" reads standard input (spooled to memory). labels_path may be NULL.
// Fails with a clear message for: missing file, unknown format, empty archive,
// archive with no CLASS/NAME.png entries, bad IDX magic or sizes, label count
// differing from image count.
ns_dataset *ns_dataset_open(const char *path, const char *labels_path, ns_err *err);
void ns_dataset_close(ns_dataset *ds);

int64_t ns_dataset_size(const ns_dataset *ds);
int ns_dataset_num_classes(const ns_dataset *ds);   // 0 when unlabelled
const char *ns_dataset_class_name(const ns_dataset *ds, int k); // IDX: "0".."9"
const char *ns_dataset_kind(const ns_dataset *ds);  // "idx", "tar", "zip", "dir", ...

// Decodes sample i (0 <= i < size) into *img (allocated; caller frees) and its
// class index into *label. Random access: archives keep the compressed PNG bytes
// in memory, IDX keeps the pixels, directories read the file on demand.
int ns_dataset_get(ns_dataset *ds, int64_t i, ns_image *img, int *label, ns_err *err);
// The sample's path inside the dataset ("CLASS/NAME.png", or "000123" for IDX).
const char *ns_dataset_sample_name(const ns_dataset *ds, int64_t i);

// --- writing archives ------------------------------------------------------
typedef struct ns_archive_writer ns_archive_writer;

// format: "tar", "tar.gz" or "zip". Entries get mtime 0, uid/gid 0, mode 0644,
// so the same content always gives the same bytes (golden checksums).
ns_archive_writer *ns_archive_writer_open(FILE *f, const char *format, ns_err *err);
int ns_archive_add(ns_archive_writer *aw, const char *path, const void *data,
                   size_t len, ns_err *err);
// Finishes the archive (does not close f). Frees aw even on failure.
int ns_archive_writer_close(ns_archive_writer *aw, ns_err *err);

#endif
