// err.h: how lib/ reports failure. Library functions never print or exit: they
// return -1 (or NULL) and leave a one-line message in an ns_err. Only a tool's
// main() turns that into "prog: message" on stderr and an exit status.
// Progress and other news go through an ns_reporter (base/report.h).
#ifndef NS_ERR_H
#define NS_ERR_H

#define NS_ERR_MAX 512

typedef struct ns_err {
    char msg[NS_ERR_MAX]; // NUL-terminated, no trailing newline, no program name
} ns_err;

#if defined(__GNUC__)
#define NS_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define NS_PRINTF(fmt_idx, arg_idx)
#endif

// Formats msg into err (when err is not NULL) and returns -1, so a failing
// function can `return ns_errf(err, "bad dtype (%s)", s);`.
int ns_errf(ns_err *err, const char *fmt, ...) NS_PRINTF(2, 3);

// Prefixes an existing message: "context: old message". Returns -1.
int ns_err_prefix(ns_err *err, const char *fmt, ...) NS_PRINTF(2, 3);

#endif
