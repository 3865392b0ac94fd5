// archive_write.c: writes deterministic image archives (ns_archive_writer,
// dataset.h): tar or zip entries added in the caller's order with fixed
// metadata, so the same images give the same bytes.
//
// libarchive frees its compressors and output block only in a close that
// runs, and a write error from the callback makes it skip the close (leaking
// them). So write_cb never reports one: it remembers the first failure,
// drops every later byte, and the calls below turn write_errno into the error.
#include "stream/dataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ns_archive_writer {
    struct archive *a;
    FILE *f;
    int write_errno; // first write failure, 0 when none
    int discard;     // failed or aborting: bytes go nowhere
};

static la_ssize_t write_cb(struct archive *a, void *client, const void *buf, size_t n) {
    (void)a;
    ns_archive_writer *aw = client;
    if (aw->discard) return (la_ssize_t)n;
    errno = 0;
    if (fwrite(buf, 1, n, aw->f) != n) {
        aw->write_errno = errno ? errno : EIO;
        aw->discard = 1;
    }
    return (la_ssize_t)n;
}

static int write_failed(const ns_archive_writer *aw, const char *where, ns_err *err) {
    return ns_errf(err, "%s: write failed: %s", where, strerror(aw->write_errno));
}

// Sets up format and filters; 0 on success.
static int writer_setup(struct archive *a, const char *format) {
    if (strcmp(format, "tar") == 0) return archive_write_set_format_pax_restricted(a);
    if (strcmp(format, "zip") == 0) return archive_write_set_format_zip(a);
    if (strcmp(format, "zip-stored") == 0) // uncompressed, as torch.save writes
        return archive_write_set_format_zip(a) || archive_write_set_format_option(a, "zip", "compression", "store");
    if (strcmp(format, "tar.gz") != 0) return -1;
    if (archive_write_set_format_pax_restricted(a) || archive_write_add_filter_gzip(a)) return -1;
    // No timestamp in the gzip header, so the bytes depend on content only.
    return archive_write_set_filter_option(a, "gzip", "timestamp", NULL);
}

ns_archive_writer *ns_archive_writer_open(FILE *f, const char *format, ns_err *err) {
    if (!format || (strcmp(format, "tar") && strcmp(format, "tar.gz") && strcmp(format, "zip") &&
                    strcmp(format, "zip-stored"))) {
        ns_errf(err, "unknown archive format '%s' (tar, tar.gz or zip)", format ? format : "");
        return NULL;
    }
    ns_archive_writer *aw = calloc(1, sizeof *aw);
    if (!aw || !(aw->a = archive_write_new())) {
        free(aw);
        ns_errf(err, "archive writer: out of memory");
        return NULL;
    }
    aw->f = f;
    // No padding of the output to 10240 bytes: it would trail a gzip stream or a
    // zip's central directory with zeros. A tar still ends with its two zero blocks.
    if (writer_setup(aw->a, format) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(aw->a, 1) != ARCHIVE_OK ||
        archive_write_open(aw->a, aw, NULL, write_cb, NULL) != ARCHIVE_OK) {
        ns_errf(err, "%s archive writer: %s", format, ns_archive_error(aw->a));
        archive_write_free(aw->a);
        free(aw);
        return NULL;
    }
    return aw;
}

int ns_archive_add(ns_archive_writer *aw, const char *path, const void *data, size_t len,
                   ns_err *err) {
    const char *p;
    char shown[256];
    if (!path || ns_archive_clean_path(path, &p) != 0 || p != path || path[strlen(path) - 1] == '/')
        return ns_errf(err, "archive entry path '%s' is not a plain relative file path",
                       path ? ns_printable(path, shown, sizeof shown) : "");
    struct archive_entry *e = archive_entry_new();
    if (!e) return ns_errf(err, "%s: out of memory", path);
    archive_entry_copy_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_copy_uname(e, "");
    archive_entry_copy_gname(e, "");
    if (aw->write_errno) return write_failed(aw, path, err);
    int r = archive_write_header(aw->a, e);
    archive_entry_free(e);
    if (aw->write_errno) return write_failed(aw, path, err);
    if (r < ARCHIVE_WARN) return ns_errf(err, "%s: %s", path, ns_archive_error(aw->a));
    for (size_t done = 0; done < len;) {
        la_ssize_t w = archive_write_data(aw->a, (const char *)data + done, len - done);
        if (aw->write_errno) return write_failed(aw, path, err);
        if (w <= 0) return ns_errf(err, "%s: %s", path, ns_archive_error(aw->a));
        done += (size_t)w;
    }
    return 0;
}

void ns_archive_writer_abort(ns_archive_writer *aw) {
    if (!aw) return;
    // Closed, not failed: libarchive frees its output block only on close
    // (archive_write_fail then free leaks 10 KB); the end-of-archive bytes the
    // close produces are dropped, so a broken archive never looks whole.
    aw->discard = 1;
    archive_write_close(aw->a);
    archive_write_free(aw->a);
    free(aw);
}

int ns_archive_writer_close(ns_archive_writer *aw, ns_err *err) {
    if (!aw) return 0;
    int rc = 0;
    // libarchive ignores a close callback's result, so flush and check here.
    if (archive_write_close(aw->a) != ARCHIVE_OK)
        rc = ns_errf(err, "finishing archive: %s", ns_archive_error(aw->a));
    else if (aw->write_errno)
        rc = write_failed(aw, "finishing archive", err);
    else if ((errno = 0, fflush(aw->f) != 0) || ferror(aw->f))
        rc = ns_errf(err, "finishing archive: write failed: %s", strerror(errno ? errno : EIO));
    archive_write_free(aw->a);
    free(aw);
    return rc;
}
