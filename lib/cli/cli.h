// cli.h: the one skeleton every program shares (netpbm's pm_proginit/pm_error,
// jq's exit codes). This is the only part of lib/ that exits, and it does so only
// on behalf of main(): ns_die* and ns_parse_args (for --help, --version and
// usage errors).
//
// Exit status: 0 success, 1 data error (bad input, I/O), 2 usage error.
#ifndef NS_CLI_H
#define NS_CLI_H

#include <stdint.h>

#include "base/err.h"
#include "base/report.h"
#include "base/shard.h"

#define NS_EXIT_DATA 1
#define NS_EXIT_USAGE 2

extern const char *ns_progname;

// Sets ns_progname from argv[0]. Installs the clean-up of temporary output
// files (base/tempfile.h): on SIGINT, SIGTERM and SIGHUP (unless ignored at
// start) they are removed before the signal kills the program as usual, and
// any exit() removes those still registered (outputs never committed).
void ns_proginit(int argc, char **argv);
// One process of several (rank of size, under mpirun): messages name it,
// "net-train (rank 1 of 2): ...".
void ns_progname_rank(int rank, int size);

// "prog: message" on stderr, exit 1.
_Noreturn void ns_die(const char *fmt, ...) NS_PRINTF(1, 2);
// "prog: message" and "Try 'prog --help'." on stderr, exit 2.
_Noreturn void ns_die_usage(const char *fmt, ...) NS_PRINTF(1, 2);
// "prog: <err->msg>", exit 1.
_Noreturn void ns_die_err(const ns_err *err);

// Flushes and closes standard output, the text a program printed there; a
// write error (a full disk) is a data error: "prog: writing output failed
// (reason)", exit 1. The last thing a program that prints does.
void ns_close_stdout(void);

// "prog: message" on stderr, no exit (progress lines and warnings).
void ns_warn(const char *fmt, ...) NS_PRINTF(1, 2);

typedef enum ns_opt_type {
    NS_OPT_FLAG,   // int*: set to 1 (no value)
    NS_OPT_INT,    // int*
    NS_OPT_I64,    // int64_t*
    NS_OPT_DOUBLE, // double*
    NS_OPT_STR,    // const char**: points into argv
    NS_OPT_SHARD,  // ns_shard* (base/shard.h): "I/N", one part of N by sample id
} ns_opt_type;

typedef struct ns_opt {
    const char *name;     // long name without "--"
    char short_name;      // 0 when none
    ns_opt_type type;
    void *dest;
    const char *metavar;  // shown in --help for options taking a value
    const char *help;
    double min, max;      // numeric range, checked when min < max
} ns_opt;

typedef struct ns_cli {
    const char *usage;    // after the program name: "[options] [FILE...]"
    const char *summary;  // one line: what the program does
    const char *details;  // optional paragraph after the options, may be NULL
    int min_args, max_args; // positional arguments allowed (max -1: unbounded)
} ns_cli;

// Parses argv against opts (terminated by an entry with name NULL). Handles
// --help (to stdout, exit 0), --version (exit 0), "--", "-" as a positional,
// --name=value, --name value, -x value, -xVALUE and bundled short flags. Exact
// names only: no abbreviations. Bad option, missing or malformed value, or a
// value out of range: usage error naming the bad value (exit 2). On return,
// argv[*first_arg .. argc) are the positional arguments.
void ns_parse_args(int argc, char **argv, const ns_cli *cli, const ns_opt *opts,
                   int *first_arg);

// Parses "a,b,c" numbers into out (up to cap); returns the count or -1.
int ns_parse_doubles(const char *s, double *out, int cap, ns_err *err);
// Parses "a,b,c" sizes (layer widths): decimal integers in [1, max_size],
// at most max_count of them, into out; returns the count (at least 1) or -1
// with err naming the bad element (0, -1, 12x, an empty one, one too large)
// or the count.
int ns_parse_sizes(const char *s, int *out, int max_count, int max_size, ns_err *err);

// Progress on stderr: one line rewritten in place when stderr is a terminal,
// a line every few seconds otherwise; silent when quiet.
typedef struct ns_progress {
    const char *what;     // "images", "records", ...
    int64_t total;        // 0 when unknown
    int64_t done;
    double start, last;   // seconds (monotonic)
    int quiet, tty, shown;
} ns_progress;

void ns_progress_start(ns_progress *p, const char *what, int64_t total, int quiet);
void ns_progress_update(ns_progress *p, int64_t done);
void ns_progress_end(ns_progress *p);

// The reporter tools pass to lib/ (base/report.h): progress through one
// ns_progress and messages through ns_warn, on stderr; NULL (silent) when
// quiet. lib/cli/report.c.
const ns_reporter *ns_stderr_reporter(int quiet);

#endif
