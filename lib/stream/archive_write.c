// archive_write.c: writes deterministic image archives (ns_archive_writer,
// dataset.h): tar or zip entries added in the caller's order with fixed
// metadata, so the same images give the same bytes.
#include "stream/dataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ns_archive_writer {
    struct archive *a;
    FILE *f;
};

static la_ssize_t write_cb(struct archive *a, void *client, const void *buf, size_t n) {
    ns_archive_writer *aw = client;
    errno = 0;
    if (fwrite(buf, 1, n, aw->f) != n) {
        int e = errno ? errno : EIO;
        archive_set_error(a, e, "write failed: %s", strerror(e));
        return -1;
    }
    return (la_ssize_t)n;
}

// Sets up format and filters; 0 on success.
static int writer_setup(struct archive *a, const char *format) {
    if (strcmp(format, "tar") == 0) return archive_write_set_format_pax_restricted(a);
    if (strcmp(format, "zip") == 0) return archive_write_set_format_zip(a);
    if (strcmp(format, "tar.gz") != 0) return -1;
    if (archive_write_set_format_pax_restricted(a) || archive_write_add_filter_gzip(a)) return -1;
    // No timestamp in the gzip header, so the bytes depend on content only.
    return archive_write_set_filter_option(a, "gzip", "timestamp", NULL);
}

ns_archive_writer *ns_archive_writer_open(FILE *f, const char *format, ns_err *err) {
    if (!format || (strcmp(format, "tar") && strcmp(format, "tar.gz") && strcmp(format, "zip"))) {
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
    int r = archive_write_header(aw->a, e);
    archive_entry_free(e);
    if (r < ARCHIVE_WARN) return ns_errf(err, "%s: %s", path, ns_archive_error(aw->a));
    for (size_t done = 0; done < len;) {
        la_ssize_t w = archive_write_data(aw->a, (const char *)data + done, len - done);
        if (w <= 0) return ns_errf(err, "%s: %s", path, ns_archive_error(aw->a));
        done += (size_t)w;
    }
    return 0;
}

void ns_archive_writer_abort(ns_archive_writer *aw) {
    if (!aw) return;
    archive_write_fail(aw->a);
    archive_write_free(aw->a);
    free(aw);
}

int ns_archive_writer_close(ns_archive_writer *aw, ns_err *err) {
    if (!aw) return 0;
    int rc = 0;
    // libarchive ignores a close callback's result, so flush and check here.
    if (archive_write_close(aw->a) != ARCHIVE_OK)
        rc = ns_errf(err, "finishing archive: %s", ns_archive_error(aw->a));
    else if ((errno = 0, fflush(aw->f) != 0) || ferror(aw->f))
        rc = ns_errf(err, "finishing archive: write failed: %s", strerror(errno ? errno : EIO));
    archive_write_free(aw->a);
    free(aw);
    return rc;
}
