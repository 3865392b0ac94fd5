// report.h: how lib/ tells a program about long work without printing. A
// program hands a library function an ns_reporter, a struct of callbacks it
// fills: a progress count over one loop (begin with a unit and a total,
// update, end) and one-line messages (epoch summaries, sweep scores). lib/
// calls only the ns_report_* wrappers below; a NULL reporter, or a NULL
// callback, means silent. lib/cli/ supplies the stderr implementation every
// tool passes in (ns_stderr_reporter in cli/cli.h: the progress line and
// "prog: message" lines).
//
// One progress loop at a time: begin, updates with the count done so far, end.
#ifndef NS_REPORT_H
#define NS_REPORT_H

#include <stdint.h>

#include "base/err.h"

typedef struct ns_reporter {
    void *ctx; // passed back to every callback
    // A loop over total items (0: unknown), counted in unit ("images").
    void (*progress_begin)(void *ctx, const char *unit, int64_t total);
    void (*progress_update)(void *ctx, int64_t done);
    void (*progress_end)(void *ctx);
    // One line of news: no program name, no trailing newline.
    void (*message)(void *ctx, const char *line);
} ns_reporter;

void ns_report_begin(const ns_reporter *r, const char *unit, int64_t total);
void ns_report_update(const ns_reporter *r, int64_t done);
void ns_report_end(const ns_reporter *r);
// Formats one line (at most NS_ERR_MAX - 1 bytes) and hands it to r->message.
void ns_report_message(const ns_reporter *r, const char *fmt, ...) NS_PRINTF(2, 3);

// Monotonic seconds, for the rates and times reports give.
double ns_now(void);

#endif
