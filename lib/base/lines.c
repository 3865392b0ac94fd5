// lines.c: the line reader of lines.h. Bytes are read one at a time through
// stdio's buffer (getc_unlocked), so a line is checked for NUL bytes and its
// length against the limit as it grows: nothing is allocated beyond max + 1.
#include "base/lines.h"

#include "base/gzfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int ns_lines_from(ns_lines *l, FILE *f, const char *label, size_t max_len, ns_err *err) {
    memset(l, 0, sizeof *l);
    if (!(l->path = strdup(label))) return ns_errf(err, "out of memory");
    l->f = f;
    l->max = max_len ? max_len : NS_LINE_MAX_DEFAULT;
    return 0;
}

int ns_lines_open(ns_lines *l, const char *path, size_t max_len, ns_err *err) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "r");
    if (!f) return ns_errf(err, "%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        if (!is_stdin) fclose(f);
        return ns_errf(err, "%s: is a directory", path);
    }
    if (!is_stdin && S_ISREG(st.st_mode) && ns_is_gzip(f)) { // text.gz: read decompressed
        fclose(f);
        if (!(f = ns_gzip_open(path, err))) return -1;
    }
    if (ns_lines_from(l, f, is_stdin ? "stdin" : path, max_len, err) < 0) {
        if (!is_stdin) fclose(f);
        return -1;
    }
    l->own = !is_stdin;
    return 0;
}

// Makes room for n + 1 bytes (a line of n and its NUL).
static int reserve(ns_lines *l, size_t n, ns_err *err) {
    if (n + 1 <= l->cap) return 0;
    size_t cap = l->cap ? l->cap : 256;
    while (cap < n + 1) cap *= 2;
    if (cap > l->max + 1) cap = l->max + 1;
    char *buf = realloc(l->buf, cap);
    if (!buf) return ns_errf(err, "%s:%lld: out of memory (a line of %zu bytes)", l->path, (long long)l->lineno, n);
    l->buf = buf;
    l->cap = cap;
    return 0;
}

int ns_lines_next(ns_lines *l, char **line, size_t *len, ns_err *err) {
    size_t n = 0;
    int c, any = 0;
    errno = 0;
    while ((c = getc_unlocked(l->f)) != EOF) {
        if (!any) l->lineno++, any = 1;
        if (c == '\n') break;
        if (c == 0) return ns_errf(err, "%s:%lld: a NUL byte (not a text file?)", l->path, (long long)l->lineno);
        if (n == l->max)
            return ns_errf(err, "%s:%lld: a line longer than %zu bytes (not a text file?)", l->path,
                           (long long)l->lineno, l->max);
        if (reserve(l, n + 1, err) < 0) return -1;
        l->buf[n++] = (char)c;
    }
    if (c == EOF && ferror(l->f))
        return ns_errf(err, "%s:%lld: read error (%s)", l->path, (long long)l->lineno + !any,
                       strerror(errno ? errno : EIO));
    if (!any) return 0;
    if (reserve(l, n, err) < 0) return -1;
    if (n > 0 && l->buf[n - 1] == '\r') n--;
    l->buf[n] = 0;
    *line = l->buf;
    if (len) *len = n;
    return 1;
}

void ns_lines_close(ns_lines *l) {
    if (l->own && l->f) fclose(l->f);
    free(l->path);
    free(l->buf);
    memset(l, 0, sizeof *l);
}
