// cli.c: program start-up, error exits, the option parser and progress lines
// shared by every tool (see cli.h).
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/blas.h"
#include "base/file.h"
#include "base/tempfile.h"

const char *ns_progname = "netsmith";

// Signals that end a program (an interrupt, kill, a closed terminal): the
// temporary files of unfinished outputs go first, then the signal takes its
// default course, so the parent still sees the program killed by it. Only
// async-signal-safe calls here.
//
// A signal sent to the process may land on any thread (OpenMP's workers too),
// while the main thread goes on creating outputs. So it is passed to the main
// thread, which is the one that creates temporary files and holds signals back
// while it does (ns_tempfile_create): once the handler runs there, no file is
// half-registered and none can appear after the sweep.
static void remove_temporaries_and_die(int sig) {
    if (gettid() != getpid()) {
        tgkill(getpid(), getpid(), sig);
        return;
    }
    ns_tempfile_remove_all();
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig); // blocked until this handler returns, then fatal
}

static void install_cleanup(void) {
    static const int fatal[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++) {
        struct sigaction old, sa;
        // A signal ignored when the program started (nohup, a background job
        // without job control) stays ignored.
        if (sigaction(fatal[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = remove_temporaries_and_die;
        sigfillset(&sa.sa_mask); // no second signal while the files go
        sigaction(fatal[i], &sa, NULL);
    }
    // Every exit before an output is committed (ns_die on any error path)
    // removes its temporary file too.
    atexit(ns_tempfile_remove_all);
}

void ns_proginit(int argc, char **argv) {
    if (argc > 0 && argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        ns_progname = slash ? slash + 1 : argv[0];
    }
    install_cleanup();
}

void ns_progname_rank(int rank, int size) {
    static char name[96];
    snprintf(name, sizeof name, "%.40s (rank %d of %d)", ns_progname, rank, size);
    ns_progname = name;
}

static void vmessage(const char *fmt, va_list ap) {
    fflush(stdout);
    fprintf(stderr, "%s: ", ns_progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void ns_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

_Noreturn void ns_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    exit(NS_EXIT_DATA);
}

_Noreturn void ns_die_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", ns_progname);
    exit(NS_EXIT_USAGE);
}

_Noreturn void ns_die_err(const ns_err *err) { ns_die("%s", err->msg); }

void ns_close_stdout(void) {
    int e = ns_file_close(stdout);
    if (e) ns_die("writing output failed (%s)", strerror(e));
}

// --- option parsing ----------------------------------------------------------------
static int takes_value(const ns_opt *o) { return o->type != NS_OPT_FLAG; }

static void print_help(const ns_cli *cli, const ns_opt *opts) {
    printf("Usage: %s %s\n%s\n\nOptions:\n", ns_progname, cli->usage, cli->summary);
    for (const ns_opt *o = opts; o->name; o++) {
        char left[64];
        int n = o->short_name ? snprintf(left, sizeof left, "-%c, --%s", o->short_name, o->name)
                              : snprintf(left, sizeof left, "    --%s", o->name);
        if (takes_value(o) && n < (int)sizeof left)
            snprintf(left + n, sizeof left - (size_t)n, " %s", o->metavar ? o->metavar : "VALUE");
        // An option too wide for its column gets a line of its own, so the
        // columns stay apart by two spaces at least.
        if (strlen(left) > 25)
            printf("  %s\n  %-26s %s\n", left, "", o->help);
        else
            printf("  %-26s %s\n", left, o->help);
    }
    printf("  %-26s %s\n", "-h, --help", "show this help and exit");
    printf("  %-26s %s\n", "    --version", "show version and BLIS kernels, and exit");
    if (cli->details) printf("\n%s\n", cli->details);
}

static void print_version(void) {
    printf("%s (netsmith) %s\nBLIS kernels: %s; threads: %d\n", ns_progname, NS_VERSION,
           ns_blas_kernels(), ns_threads());
}

static void check_range(const ns_opt *o, double v, const char *text) {
    if (o->min < o->max && (v < o->min || v > o->max))
        ns_die_usage("--%s must be between %.15g and %.15g (%s)", o->name, o->min, o->max, text);
}

static void set_value(const ns_opt *o, const char *text) {
    char *end;
    errno = 0;
    switch (o->type) {
    case NS_OPT_FLAG: *(int *)o->dest = 1; return;
    case NS_OPT_STR: *(const char **)o->dest = text; return;
    case NS_OPT_SHARD: {
        ns_err err;
        if (ns_shard_parse(text, (ns_shard *)o->dest, &err) < 0) ns_die_usage("--%s: %s", o->name, err.msg);
        return;
    }
    case NS_OPT_INT:
    case NS_OPT_I64: {
        long long v = strtoll(text, &end, 10);
        if (end == text || *end || errno)
            ns_die_usage("--%s takes an integer (%s)", o->name, text);
        check_range(o, (double)v, text);
        if (o->type == NS_OPT_INT) {
            if (v < -2147483647LL || v > 2147483647LL)
                ns_die_usage("--%s is out of range (%s)", o->name, text);
            *(int *)o->dest = (int)v;
        } else {
            *(int64_t *)o->dest = v;
        }
        return;
    }
    case NS_OPT_DOUBLE: {
        double v = strtod(text, &end);
        if (end == text || *end || errno || !isfinite(v))
            ns_die_usage("--%s takes a number (%s)", o->name, text);
        check_range(o, v, text);
        *(double *)o->dest = v;
        return;
    }
    }
}

static const ns_opt *find_long(const ns_opt *opts, const char *name, size_t len) {
    for (const ns_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

static const ns_opt *find_short(const ns_opt *opts, char c) {
    for (const ns_opt *o = opts; o->name; o++)
        if (o->short_name == c) return o;
    return NULL;
}

// Handles one "--name[=value]" at argv[*i]; may consume the next argument.
static void parse_long(int argc, char **argv, int *i, const ns_cli *cli, const ns_opt *opts) {
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (len == 4 && strncmp(arg, "help", 4) == 0) {
        print_help(cli, opts);
        exit(0);
    }
    if (len == 7 && strncmp(arg, "version", 7) == 0) {
        print_version();
        exit(0);
    }
    const ns_opt *o = find_long(opts, arg, len);
    if (!o) ns_die_usage("unknown option (%s)", argv[*i]);
    if (!takes_value(o)) {
        if (eq) ns_die_usage("--%s takes no value (%s)", o->name, argv[*i]);
        set_value(o, NULL);
    } else if (eq) {
        set_value(o, eq + 1);
    } else {
        if (*i + 1 >= argc) ns_die_usage("--%s needs a value", o->name);
        set_value(o, argv[++*i]);
    }
}

// Handles "-abc" or "-oFILE" or "-o FILE" at argv[*i].
static void parse_short(int argc, char **argv, int *i, const ns_cli *cli, const ns_opt *opts) {
    for (const char *p = argv[*i] + 1; *p; p++) {
        if (*p == 'h') {
            print_help(cli, opts);
            exit(0);
        }
        const ns_opt *o = find_short(opts, *p);
        if (!o) ns_die_usage("unknown option (-%c)", *p);
        if (!takes_value(o)) {
            set_value(o, NULL);
            continue;
        }
        if (p[1]) {
            set_value(o, p + 1);
        } else {
            if (*i + 1 >= argc) ns_die_usage("-%c needs a value", *p);
            set_value(o, argv[++*i]);
        }
        return;
    }
}

void ns_parse_args(int argc, char **argv, const ns_cli *cli, const ns_opt *opts,
                   int *first_arg) {
    // Positional arguments are moved, in order, to the end of argv.
    char **positional = malloc((size_t)(argc + 1) * sizeof *positional);
    if (!positional) ns_die("out of memory");
    int npos = 0, i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) positional[npos++] = argv[i];
            break;
        }
        if (a[0] == '-' && a[1] == '-') parse_long(argc, argv, &i, cli, opts);
        else if (a[0] == '-' && a[1]) parse_short(argc, argv, &i, cli, opts);
        else positional[npos++] = argv[i];
    }
    if (npos < cli->min_args)
        ns_die_usage(cli->min_args == 1 ? "missing argument" : "missing arguments (%d needed)",
                     cli->min_args);
    if (cli->max_args >= 0 && npos > cli->max_args)
        ns_die_usage("too many arguments (%s)", positional[cli->max_args]);
    *first_arg = argc - npos;
    memcpy(argv + *first_arg, positional, (size_t)npos * sizeof *positional);
    free(positional);
}

int ns_parse_doubles(const char *s, double *out, int cap, ns_err *err) {
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || (*end && *end != ','))
            return ns_errf(err, "not a comma-separated list of numbers (%s)", s);
        if (n == cap) return ns_errf(err, "more than %d numbers (%s)", cap, s);
        out[n++] = v;
        if (!*end) return n;
        p = end + 1;
    }
}

int ns_parse_sizes(const char *s, int *out, int max_count, int max_size, ns_err *err) {
    if (!*s) return ns_errf(err, "an empty list of sizes");
    int n = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ","); // this element: p[0 .. len)
        if (len == 0) return ns_errf(err, "an empty size in the list (%s)", s);
        if (n == max_count) return ns_errf(err, "more than %d sizes (%s)", max_count, s);
        char *end;
        errno = 0;
        long v = *p >= '0' && *p <= '9' ? strtol(p, &end, 10) : 0;
        if (*p < '0' || *p > '9' || end != p + len || v < 1)
            return ns_errf(err, "not a positive integer (%.*s)", (int)len, p);
        if (errno == ERANGE || v > max_size)
            return ns_errf(err, "%.*s is too large (at most %d)", (int)len, p, max_size);
        out[n++] = (int)v;
        if (!p[len]) return n;
        p += len + 1;
    }
}

// --- progress --------------------------------------------------------------------
void ns_progress_start(ns_progress *p, const char *what, int64_t total, int quiet) {
    memset(p, 0, sizeof *p);
    p->what = what;
    p->total = total;
    p->quiet = quiet;
    p->tty = isatty(2);
    p->start = p->last = ns_now();
}

static void progress_print(ns_progress *p, double now, int final) {
    double elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    char line[160];
    int n = snprintf(line, sizeof line, "%s: %lld", ns_progname, (long long)p->done);
    if (p->total > 0)
        n += snprintf(line + n, sizeof line - (size_t)n, "/%lld (%.0f%%)", (long long)p->total,
                      100.0 * (double)p->done / (double)p->total);
    n += snprintf(line + n, sizeof line - (size_t)n, " %s, %.0f/s, %.1fs", p->what, rate, elapsed);
    if (!final && p->total > 0 && rate > 0)
        snprintf(line + n, sizeof line - (size_t)n, ", ETA %.0fs",
                 (double)(p->total - p->done) / rate);
    fprintf(stderr, p->tty ? "\r%s\033[K%s" : "%s%s\n", line, final && p->tty ? "\n" : "");
    p->shown = 1;
}

void ns_progress_update(ns_progress *p, int64_t done) {
    p->done = done;
    if (p->quiet) return;
    double now = ns_now();
    double every = p->tty ? 0.2 : 5.0;
    if (now - p->last < every || now - p->start < 2.0) return;
    p->last = now;
    progress_print(p, now, 0);
}

void ns_progress_end(ns_progress *p) {
    if (p->quiet || !p->shown) return;
    progress_print(p, ns_now(), 1);
}
