// gzfile.c: reading a gzip'd text file as if it were plain (gzfile.h), through
// libarchive's raw format and gzip filter behind a stdio cookie, so line
// readers (base/lines.h) see decompressed bytes and nothing else changes.
#include "base/gzfile.h"

#include <archive.h>
#include <errno.h>
#include <string.h>

static ssize_t gz_read(void *cookie, char *buf, size_t size) {
    la_ssize_t n = archive_read_data(cookie, buf, size);
    if (n < 0) {
        errno = EIO;
        return -1;
    }
    return (ssize_t)n;
}

static int gz_close(void *cookie) {
    archive_read_free(cookie);
    return 0;
}

int ns_is_gzip(FILE *f) {
    unsigned char magic[2];
    size_t got = fread(magic, 1, 2, f);
    rewind(f);
    return got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

FILE *ns_gzip_open(const char *path, ns_err *err) {
    struct archive *a = archive_read_new();
    if (!a) {
        ns_errf(err, "out of memory");
        return NULL;
    }
    archive_read_support_filter_gzip(a);
    archive_read_support_format_raw(a);
    struct archive_entry *entry;
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK || archive_read_next_header(a, &entry) != ARCHIVE_OK) {
        const char *why = archive_error_string(a);
        ns_errf(err, "%s: cannot read as gzip (%s)", path, why ? why : "unknown error");
        archive_read_free(a);
        return NULL;
    }
    cookie_io_functions_t io = {.read = gz_read, .close = gz_close};
    FILE *f = fopencookie(a, "r", io);
    if (!f) {
        ns_errf(err, "%s: cannot open (%s)", path, strerror(errno));
        archive_read_free(a);
    }
    return f;
}
