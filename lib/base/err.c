// err.c: formatting of ns_err messages (see err.h).
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ns_errf(ns_err *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int ns_err_prefix(ns_err *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[NS_ERR_MAX], old[NS_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    // A message longer than NS_ERR_MAX is cut, which is fine.
    size_t used = strnlen(prefix, sizeof err->msg - 1);
    memcpy(err->msg, prefix, used);
    if (used + 2 < sizeof err->msg) {
        memcpy(err->msg + used, ": ", 2);
        used += 2;
    }
    size_t rest = strnlen(old, sizeof err->msg - 1 - used);
    memcpy(err->msg + used, old, rest);
    err->msg[used + rest] = 0;
    return -1;
}
