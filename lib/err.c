// err.c: formatting of ns_err messages (see err.h).
#include "err.h"

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
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    return -1;
}
