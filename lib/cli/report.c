// report.c: the stderr ns_reporter (base/report.h) every tool hands to lib/:
// progress through ns_progress (one line rewritten in place on a terminal, a
// line every few seconds otherwise) and messages as "prog: line" (ns_warn).
#include "cli/cli.h"

#include <stddef.h>

static ns_progress stderr_progress; // one loop at a time, as report.h says

static void progress_begin(void *ctx, const char *unit, int64_t total) {
    ns_progress_start(ctx, unit, total, 0);
}

static void progress_update(void *ctx, int64_t done) { ns_progress_update(ctx, done); }

static void progress_end(void *ctx) { ns_progress_end(ctx); }

static void message(void *ctx, const char *line) {
    (void)ctx;
    ns_warn("%s", line);
}

const ns_reporter *ns_stderr_reporter(int quiet) {
    static const ns_reporter reporter = {&stderr_progress, progress_begin, progress_update,
                                         progress_end, message};
    return quiet ? NULL : &reporter;
}
