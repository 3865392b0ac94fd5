// test_lines.c: the line reader (lib/base/lines.h): line ends, line numbers,
// and every input that is not text refused with a message naming the path and
// the line: a NUL byte, a line over the limit, a read error (a directory read
// as a file), never a shorter file.
// sanitize: yes (runs under ASan/UBSan in `make check-sanitize`)
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/lines.h"

// A reader over the n bytes of s (fmemopen), labelled "mem".
static FILE *mem(const char *s, size_t n) { return fmemopen((void *)s, n, "r"); }

static void test_lines(void) {
    static const char text[] = "alpha\n\nbeta\r\ngamma";
    FILE *f = mem(text, sizeof text - 1);
    ns_lines l;
    ns_err err;
    char *line;
    size_t len;
    CHECK(ns_lines_from(&l, f, "mem", 0, &err) == 0, "open an in-memory file");
    int got = ns_lines_next(&l, &line, &len, &err);
    CHECK(got == 1 && strcmp(line, "alpha") == 0 && len == 5 && l.lineno == 1, "line 1 without its newline");
    got = ns_lines_next(&l, &line, &len, &err);
    CHECK(got == 1 && strcmp(line, "") == 0 && len == 0 && l.lineno == 2, "an empty line is a line");
    got = ns_lines_next(&l, &line, &len, &err);
    CHECK(got == 1 && strcmp(line, "beta") == 0 && len == 4 && l.lineno == 3, "\\r\\n is a line end");
    got = ns_lines_next(&l, &line, &len, &err);
    CHECK(got == 1 && strcmp(line, "gamma") == 0 && l.lineno == 4, "a last line without a newline");
    got = ns_lines_next(&l, &line, &len, &err);
    CHECK(got == 0 && l.lineno == 4, "then end of file (%d)", got);
    ns_lines_close(&l);
    CHECK(fclose(f) == 0, "ns_lines_from leaves the file open");
}

static void test_nul(void) {
    static const char text[] = "one\ntw\0o\nthree\n";
    FILE *f = mem(text, sizeof text - 1);
    ns_lines l;
    ns_err err = {{0}};
    char *line;
    ns_lines_from(&l, f, "mem", 0, &err);
    CHECK(ns_lines_next(&l, &line, NULL, &err) == 1, "line 1 reads");
    CHECK(ns_lines_next(&l, &line, NULL, &err) == -1 && strcmp(err.msg, "mem:2: a NUL byte (not a text file?)") == 0,
          "a NUL byte is an error naming the line: %s", err.msg);
    ns_lines_close(&l);
    fclose(f);
}

static void test_limit(void) {
    static const char text[] = "12345678\n123456789\n";
    FILE *f = mem(text, sizeof text - 1);
    ns_lines l;
    ns_err err = {{0}};
    char *line;
    ns_lines_from(&l, f, "mem", 8, &err);
    CHECK(ns_lines_next(&l, &line, NULL, &err) == 1 && strcmp(line, "12345678") == 0, "a line of the limit reads");
    CHECK(ns_lines_next(&l, &line, NULL, &err) == -1 &&
              strcmp(err.msg, "mem:2: a line longer than 8 bytes (not a text file?)") == 0,
          "one byte more is an error: %s", err.msg);
    CHECK(l.cap <= 9, "the buffer never grew past the limit (%zu)", l.cap);
    ns_lines_close(&l);
    fclose(f);
}

static void test_errors(void) {
    ns_lines l;
    ns_err err = {{0}};
    char *line;
    CHECK(ns_lines_open(&l, "/nonexistent/x", 0, &err) == -1 && strstr(err.msg, "/nonexistent/x: cannot open"),
          "a missing file: %s", err.msg);
    CHECK(ns_lines_open(&l, "/", 0, &err) == -1 && strcmp(err.msg, "/: is a directory") == 0, "a directory: %s",
          err.msg);
    // A directory opened as a file fails on read (EISDIR): an error, never an empty file.
    FILE *f = fopen("/", "r");
    if (!f) {
        SKIP("fopen(\"/\") fails here");
        return;
    }
    ns_lines_from(&l, f, "root", 0, &err);
    CHECK(ns_lines_next(&l, &line, NULL, &err) == -1 && strstr(err.msg, "root:1: read error ("),
          "a read error is an error, not end of file: %s", err.msg);
    ns_lines_close(&l);
    fclose(f);
    // "-" is standard input, named stdin
    CHECK(ns_lines_open(&l, "-", 0, &err) == 0 && strcmp(l.path, "stdin") == 0 && l.f == stdin, "- is stdin");
    ns_lines_close(&l);
}

int main(void) {
    test_lines();
    test_nul();
    test_limit();
    test_errors();
    return check_done();
}
