// idx.c: owns the IDX file format (MNIST, Fashion-MNIST) as read through
// libarchive, so plain and compressed files are one code path. dataset.c opens
// the stream and turns the bytes into a dataset; this file checks the header
// and reads exactly the bytes it promises.
//
// An IDX file: big-endian magic 0x0000TTDD (TT = 0x08 for unsigned byte, DD =
// number of dims), DD big-endian uint32 dims, then exactly prod(dims) bytes.
// Glossary: N images or labels, H x W image side.
#include "stream/dataset.h"

#include <archive.h>
#include <stdlib.h>
#include <string.h>

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Reads up to n bytes of the current entry: the count (< n only at its end), or -1.
static int64_t read_full(struct archive *a, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        la_ssize_t r = archive_read_data(a, (char *)buf + got, n - got);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

int ns_idx_magic(struct archive *a, const char *path, uint32_t *magic, ns_err *err) {
    unsigned char b[4];
    int64_t got = read_full(a, b, 4);
    if (got < 0) return ns_errf(err, "%s: %s", path, ns_archive_error(a));
    if (got == 4 && memcmp(b, "\x89PNG", 4) == 0)
        return ns_errf(err,
                       "%s: a single PNG image is not a dataset (use a directory "
                       "or an archive of CLASS/NAME.png)",
                       path);
    if (got == 4 && memcmp(b, "PK\3\4", 4) == 0)
        return ns_errf(err, "%s: a zip archive without its central directory (truncated?)", path);
    if (got < 4 || b[0] || b[1] || b[2] != 0x08)
        return ns_errf(err,
                       "%s: unknown format (not a directory, a tar/zip archive or "
                       "an unsigned-byte IDX file)",
                       path);
    *magic = be32(b);
    return 0;
}

// Reads ndim dims; each must be > 0, and image sides at most NS_IMAGE_MAX_SIDE.
// Writes "NxHxW" into shape for messages.
static int read_dims(struct archive *a, const char *path, int ndim, uint32_t *dims, char *shape,
                     size_t shape_len, ns_err *err) {
    unsigned char b[4 * NS_IDX_MAX_DIMS];
    int64_t got = read_full(a, b, 4 * (size_t)ndim);
    if (got < 0) return ns_errf(err, "%s: %s", path, ns_archive_error(a));
    if (got < 4 * ndim) return ns_errf(err, "%s: truncated IDX header", path);
    size_t used = 0;
    for (int i = 0; i < ndim; i++) {
        if ((dims[i] = be32(b + 4 * i)) == 0)
            return ns_errf(err, "%s: IDX dimension %d is 0", path, i);
        if (i > 0 && dims[i] > NS_IMAGE_MAX_SIDE)
            return ns_errf(err, "%s: IDX dimension %d is %u, over the %d-pixel side limit", path, i,
                           dims[i], NS_IMAGE_MAX_SIDE);
        used += (size_t)snprintf(shape + used, shape_len - used, "%s%u", i ? "x" : "", dims[i]);
    }
    return 0;
}

// Grows *buf to at most total bytes as data arrives, so a lying header cannot
// make us allocate. Returns the count read (< total at end of data) or -1.
static int64_t read_growing(struct archive *a, uint64_t total, uint8_t **out) {
    size_t cap = total < (1u << 20) ? (size_t)total : 1u << 20, have = 0;
    uint8_t *buf = malloc(cap);
    while (buf && have < total) {
        if (have == cap) {
            size_t ncap = cap * 2 < total ? cap * 2 : (size_t)total;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) free(buf);
            buf = nb;
            cap = ncap;
            continue;
        }
        int64_t r = read_full(a, buf + have, cap - have);
        if (r < 0) {
            free(buf);
            return -1;
        }
        have += (size_t)r;
        if (have < cap) break; // end of data
    }
    *out = buf;
    return buf ? (int64_t)have : -2;
}

// Counts the bytes left in the entry, or -1.
static int64_t count_rest(struct archive *a) {
    char probe[65536];
    int64_t total = 0, r;
    while ((r = read_full(a, probe, sizeof probe)) > 0) total += r;
    return r < 0 ? -1 : total;
}

int ns_idx_read(struct archive *a, const char *path, int ndim, uint32_t *dims, uint64_t max_bytes,
                uint8_t **data, ns_err *err) {
    char shape[64];
    if (ndim < 1 || ndim > NS_IDX_MAX_DIMS)
        return ns_errf(err, "%s: IDX with %d dimensions is not supported", path, ndim);
    if (read_dims(a, path, ndim, dims, shape, sizeof shape, err)) return -1;
    uint64_t total = 1;
    for (int i = 0; i < ndim; i++) total *= dims[i]; // < 2^32 * 2^28: no overflow
    if (total > max_bytes)
        return ns_errf(err, "%s: IDX data of %s = %llu bytes is over the %llu-byte limit", path,
                       shape, (unsigned long long)total, (unsigned long long)max_bytes);
    uint8_t *buf = NULL;
    int64_t have = read_growing(a, total, &buf), extra = 0;
    if (have == -2)
        return ns_errf(err, "%s: out of memory for %llu bytes", path, (unsigned long long)total);
    if (have >= 0 && (uint64_t)have == total) extra = count_rest(a);
    if (have < 0 || extra < 0) {
        free(buf);
        return ns_errf(err, "%s: %s", path, ns_archive_error(a));
    }
    if ((uint64_t)have < total || extra > 0) {
        free(buf);
        return ns_errf(err, "%s: IDX header says %s = %llu bytes of data, got %llu%s", path, shape,
                       (unsigned long long)total, (unsigned long long)(have + extra),
                       extra ? " (trailing bytes)" : " (truncated)");
    }
    *data = buf;
    return 0;
}
