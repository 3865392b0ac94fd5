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
// path within a class; the class index is the position in that order. Classes
// are the directories holding at least one PNG; hidden names (".x", "._x.png")
// and __MACOSX/ are skipped; an archive entry with an unsafe path ("..",
// absolute, control characters) fails the whole archive.
#ifndef NS_DATASET_H
#define NS_DATASET_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "stream/image.h"

typedef struct ns_dataset ns_dataset;

// path "-" reads standard input (spooled to memory). labels_path may be NULL,
// or "-" when path is not.
// Fails with a clear message for: missing file, unknown format, empty archive,
// archive with no CLASS/NAME.png entries, bad IDX magic or sizes, label count
// differing from image count.
ns_dataset *ns_dataset_open(const char *path, const char *labels_path, ns_err *err);
// The same for an archive or IDX file held in memory (no labels); buf is not
// kept. Messages name the source "<memory>".
ns_dataset *ns_dataset_open_memory(const void *buf, size_t len, ns_err *err);
void ns_dataset_close(ns_dataset *ds);

// Most bytes a dataset may hold in memory (encoded PNGs of an archive, IDX
// pixels, spooled stdin); past it opening fails with a message. Default 8 GiB;
// 0 restores the default. Process-wide: set it before opening.
void ns_dataset_set_max_bytes(uint64_t n);
uint64_t ns_dataset_max_bytes(void);

int64_t ns_dataset_size(const ns_dataset *ds);
int ns_dataset_num_classes(const ns_dataset *ds);   // 0 when unlabelled
const char *ns_dataset_class_name(const ns_dataset *ds, int k); // IDX: "0".."9"
// The container: "idx", "tar", "zip", "dir", "7zip", "cpio", ... (compression,
// e.g. the gzip of a tar.gz, is not part of the kind).
const char *ns_dataset_kind(const ns_dataset *ds);

// Decodes sample i (0 <= i < size) into *img (allocated; caller frees) and its
// class index into *label (-1 when unlabelled; label may be NULL). Random
// access: archives keep the compressed PNG bytes in memory, IDX keeps the
// pixels (decoded as C=1, x/255), directories read the file on demand. Keeps
// no state: threads may call it at once on one dataset.
int ns_dataset_get(ns_dataset *ds, int64_t i, ns_image *img, int *label, ns_err *err);
// The sample's path inside the dataset ("CLASS/NAME.png", or "000123" for IDX,
// valid until the next call from the same thread). NULL when out of range.
const char *ns_dataset_sample_name(const ns_dataset *ds, int64_t i);

// --- writing archives ------------------------------------------------------
typedef struct ns_archive_writer ns_archive_writer;

// format: "tar" (pax restricted: ustar unless a name needs more), "tar.gz"
// (gzip header without timestamp or name), "zip" or "zip-stored" (no
// compression, as torch.save writes). Entries get mtime 0, uid/gid 0, empty
// user/group names, mode 0644, so the same content always gives the same
// bytes (golden checksums). Write errors on f fail the call.
ns_archive_writer *ns_archive_writer_open(FILE *f, const char *format, ns_err *err);
// path is relative, "/"-separated, without "." or ".." components.
int ns_archive_add(ns_archive_writer *aw, const char *path, const void *data,
                   size_t len, ns_err *err);
// Finishes the archive (does not close f). Frees aw even on failure.
int ns_archive_writer_close(ns_archive_writer *aw, ns_err *err);
// Frees aw without finishing the archive (no end blocks, no zip directory), so
// a failed run leaves output that no reader mistakes for a complete archive.
void ns_archive_writer_abort(ns_archive_writer *aw);

// --- internal to lib/: shared by dataset.c, idx.c and archive_write.c --------
struct archive;
// libarchive's message for a's last error, or "unknown libarchive error".
const char *ns_archive_error(struct archive *a);
// Copies s into buf (n bytes) with control bytes shown as '?', so messages
// stay one line; returns buf.
const char *ns_printable(const char *s, char *buf, size_t n);
// Checks an archive entry path and skips leading "./". Returns 0 with *out
// set, 1 for the root entry ("." or "./"), -1 for an unsafe or absurd path.
int ns_archive_clean_path(const char *p, const char **out);

// The IDX format (idx.c), used by dataset.c:
#define NS_IDX_IMAGES 0x00000803u // unsigned byte, dims (N, H, W)
#define NS_IDX_LABELS 0x00000801u // unsigned byte, dims (N)
#define NS_IDX_MAX_DIMS 3
// Reads the magic from the current (raw) entry of a; fails with a message for a
// PNG, a zip without central directory, or anything else not unsigned-byte IDX.
int ns_idx_magic(struct archive *a, const char *path, uint32_t *magic, ns_err *err);
// After the magic: reads ndim dims (each > 0, dims after the first at most
// NS_IMAGE_MAX_SIDE), then exactly prod(dims) <= max_bytes bytes into *data
// (malloc'd). A truncated or oversized file fails saying expected vs got.
int ns_idx_read(struct archive *a, const char *path, int ndim, uint32_t *dims,
                uint64_t max_bytes, uint8_t **data, ns_err *err);

#endif
