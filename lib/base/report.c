// report.c: the ns_report_* wrappers (a NULL reporter or callback is silent)
// and the monotonic clock (see report.h).
#include "base/report.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

void ns_report_begin(const ns_reporter *r, const char *unit, int64_t total) {
    if (r && r->progress_begin) r->progress_begin(r->ctx, unit, total);
}

void ns_report_update(const ns_reporter *r, int64_t done) {
    if (r && r->progress_update) r->progress_update(r->ctx, done);
}

void ns_report_end(const ns_reporter *r) {
    if (r && r->progress_end) r->progress_end(r->ctx);
}

void ns_report_message(const ns_reporter *r, const char *fmt, ...) {
    if (!r || !r->message) return;
    char line[NS_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->message(r->ctx, line);
}

double ns_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
