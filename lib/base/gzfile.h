// gzfile.h: gzip'd text read as plain text (OGB ships its CSV files as
// .csv.gz). ns_lines_open (base/lines.h) uses it for any file that starts with
// gzip's magic bytes, so every text reader takes plain or gzip'd files.
#ifndef NS_GZFILE_H
#define NS_GZFILE_H

#include <stdio.h>

#include "base/err.h"

// 1 when the seekable file f starts with gzip's magic (1f 8b); rewinds f.
int ns_is_gzip(FILE *f);
// The decompressed bytes of the gzip file at path as a read-only FILE*
// (fclose frees it). A corrupt stream reads as a read error (EIO).
FILE *ns_gzip_open(const char *path, ns_err *err);

#endif
