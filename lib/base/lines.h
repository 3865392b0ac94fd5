// lines.h: reading a text file line by line, the one way every program reads
// text (class names, descriptions, captions, templates, edge lists, side
// files). A line is returned without its line end ("\n", or "\r\n"); its
// number is kept for messages ("names.txt:12: ..."). What cannot be text is an
// error, never a shorter file: a read error (ferror: EIO, EISDIR, ENOMEM), a
// NUL byte, a line longer than the limit. Memory is bounded by the limit, not
// by what the input holds.
#ifndef NS_LINES_H
#define NS_LINES_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

// The longest line accepted unless the caller says otherwise: 16 MiB, far
// above any line of names or numbers the programs read.
#define NS_LINE_MAX_DEFAULT ((size_t)16 << 20)

typedef struct ns_lines {
    FILE *f;
    int own;         // f is closed by ns_lines_close
    char *path;      // as named in messages: the path, or "stdin"
    char *buf;       // the current line, NUL-terminated
    size_t cap, max; // buf's size; the longest line accepted, in bytes
    int64_t lineno;  // of the line last returned (1-based), 0 before the first
} ns_lines;

// Opens path for reading ("-": standard input, named "stdin"); max_len 0
// means NS_LINE_MAX_DEFAULT. A directory is an error. A regular file that is
// gzip'd (magic 1f 8b) is read decompressed (base/gzfile.h).
int ns_lines_open(ns_lines *l, const char *path, size_t max_len, ns_err *err);
// Reads from an open file, which ns_lines_close leaves open; label names it.
int ns_lines_from(ns_lines *l, FILE *f, const char *label, size_t max_len, ns_err *err);
// 1: the next line is in *line (valid until the next call), its length in
// *len when len is not NULL; 0: end of file; -1: an error naming the path and
// the line (read error, NUL byte, line too long, out of memory).
int ns_lines_next(ns_lines *l, char **line, size_t *len, ns_err *err);
void ns_lines_close(ns_lines *l);

#endif
