// tns-tsv: prints a 1-D or 2-D tensor as tab-separated text for awk, sort and
// gnuplot; with -r, reads such text back into a tensor record.
//
//   tns-tsv [options] [FILE]        tensor -> TSV: a row per line
//   tns-tsv -r [options] [FILE]     TSV -> tensor record (rows x columns)
//
// Every record named like the first tensor (or --name) is printed, in order, so
// a stream of batches prints as one long table.
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/lines.h"
#include "cli/cli.h"
#include "stream/tns.h"

struct cmdline {
    const char *name;
    int flatten, index, labels, reverse;
    const char *dtype;   // -r: output dtype
    const char *output;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"name", 'n', NS_OPT_STR, &cmd->name, "GLOB", "print the tensors whose name matches GLOB (default: the first tensor's name); with -r, the record's name", 0, 0},
        {"flatten", 'f', NS_OPT_FLAG, &cmd->flatten, NULL, "print an N-D tensor as rows of its first axis (N x rest)", 0, 0},
        {"index", 'i', NS_OPT_FLAG, &cmd->index, NULL, "start each line with the row number (counting across records)", 0, 0},
        {"labels", 'l', NS_OPT_FLAG, &cmd->labels, NULL, "start each line with the row's label from the record's meta", 0, 0},
        {"reverse", 'r', NS_OPT_FLAG, &cmd->reverse, NULL, "read TSV (or any blank-separated numbers) and write one tensor record", 0, 0},
        {"dtype", 't', NS_OPT_STR, &cmd->dtype, "TYPE", "with -r: element type of the record (default f32)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] [FILE]",
        "Print a 1-D or 2-D tensor from a TNS stream as tab-separated text, or\n"
        "with -r turn such text into a tensor record.",
        "A 1-D tensor prints one value per line; a 2-D tensor one row per line.\n"
        "Floats print with enough digits to read back exactly (%.9g for f32).\n"
        "With -r, each non-empty line is a row; all rows need the same number of\n"
        "columns; a single column gives a 1-D tensor. Lines starting with # are skipped.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (cmd->reverse && (cmd->flatten || cmd->index || cmd->labels))
        ns_die_usage("-r cannot be combined with --flatten, --index or --labels");
    if (cmd->dtype && !cmd->reverse) ns_die_usage("--dtype goes with -r");
    if (cmd->dtype && ns_dtype_from_name(cmd->dtype, strlen(cmd->dtype)) < 0)
        ns_die_usage("--dtype must be one of f32 f64 f16 bf16 i8 u8 i16 i32 i64 bool (%s)", cmd->dtype);
}

// --- tensor -> text -----------------------------------------------------------------
static void print_value(FILE *f, const ns_record *rec, size_t i) {
    if (rec->dtype == NS_I64) { // exactly: a double holds 53 bits
        int64_t k;
        memcpy(&k, (const char *)rec->data + i * sizeof k, sizeof k);
        fprintf(f, "%lld", (long long)k);
        return;
    }
    double v = ns_value_at(rec->data, rec->dtype, i);
    switch (rec->dtype) {
    case NS_F64: fprintf(f, "%.17g", v); break;
    case NS_F32: case NS_F16: case NS_BF16: fprintf(f, "%.9g", v); break;
    default: fprintf(f, "%.0f", v);
    }
}

static int print_record(FILE *f, const ns_record *rec, const struct cmdline *cmd,
                        int64_t *row_base, ns_err *err) {
    int64_t rows, cols;
    if (rec->ndim == 1) { rows = rec->shape[0]; cols = 1; }
    else if (rec->ndim == 2) { rows = rec->shape[0]; cols = rec->shape[1]; }
    else if (cmd->flatten && rec->ndim > 2) { rows = rec->shape[0]; cols = rows ? rec->numel / rows : 0; }
    else if (rec->ndim == 0) { rows = 1; cols = 1; }
    else {
        char shape[128];
        ns_shape_format(shape, sizeof shape, rec->ndim, rec->shape);
        return ns_errf(err, "%s is %d-D (%s): use --flatten to print it as rows of its first axis",
                       rec->name, rec->ndim, shape);
    }
    int64_t *labels = NULL;
    size_t nlabels = 0;
    if (cmd->labels) {
        labels = malloc((size_t)(rows ? rows : 1) * sizeof *labels);
        if (!labels) return ns_errf(err, "out of memory");
        int got = ns_obj_i64s(rec->meta, "labels", labels, (size_t)rows, &nlabels, err);
        if (got <= 0 || (int64_t)nlabels != rows) {
            free(labels);
            if (got < 0) return ns_err_prefix(err, "%s", rec->name);
            return ns_errf(err, "%s has no labels for its %lld rows in its meta", rec->name, (long long)rows);
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        if (cmd->index) fprintf(f, "%lld\t", (long long)(*row_base + r));
        if (labels) fprintf(f, "%lld\t", (long long)labels[r]);
        for (int64_t c = 0; c < cols; c++) {
            if (c) fputc('\t', f);
            print_value(f, rec, (size_t)(r * cols + c));
        }
        fputc('\n', f);
    }
    *row_base += rows;
    free(labels);
    return 0;
}

static int tensor_to_tsv(const char *path, const struct cmdline *cmd, FILE *out, ns_err *err) {
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    char wanted[NS_NAME_MAX + 1] = "";
    int64_t row_base = 0, printed = 0;
    ns_record rec;
    int got;
    while ((got = ns_reader_next(r, &rec, err)) == 1) {
        if (!rec.has_data) continue;
        if (cmd->name ? fnmatch(cmd->name, rec.name, 0) != 0
                      : (wanted[0] || printed) && strcmp(wanted, rec.name) != 0)
            continue;
        if (!cmd->name && !printed) strcpy(wanted, rec.name);
        if (print_record(out, &rec, cmd, &row_base, err) < 0) { got = -1; break; }
        printed++;
    }
    ns_reader_close(r);
    if (got < 0) return -1;
    if (!printed) return ns_errf(err, "%s: no tensor%s%s in the stream", path,
                                 cmd->name ? " named " : "", cmd->name ? cmd->name : "");
    return 0;
}

// --- text -> tensor -----------------------------------------------------------------

// A number as read: i64 and i32 keep a decimal integer exactly (strtoll,
// which saturates); everything else is a double.
typedef union number {
    double f;
    int64_t i;
} number;

// Parses the number at p for dtype: 0 and *end past it, or -1 when p holds none.
static int parse_number(const char *p, char **end, ns_dtype dtype, number *out) {
    double v = strtod(p, end);
    if (*end == p) return -1;
    if (dtype == NS_I64 || dtype == NS_I32) {
        char *iend;
        errno = 0;
        long long k = strtoll(p, &iend, 10); // LLONG_MIN/MAX with ERANGE past the limits
        out->i = iend == *end ? (int64_t)k : ns_saturate_i64(v);
    } else {
        out->f = v;
    }
    return 0;
}

// Stores parsed numbers: f64 keeps its precision, i64 and i32 saturate the
// exact integers, the rest go through f32 (which holds every value of those
// types exactly).
static void store_values(void *dst, const number *v, ns_dtype dtype, size_t n) {
    for (size_t i = 0; i < n; i++) {
        switch (dtype) {
        case NS_F64: ((double *)dst)[i] = v[i].f; break;
        case NS_I64: ((int64_t *)dst)[i] = v[i].i; break;
        case NS_I32: ((int32_t *)dst)[i] = (int32_t)(v[i].i > INT32_MAX ? INT32_MAX : v[i].i < INT32_MIN ? INT32_MIN : v[i].i); break;
        default: {
            float f = (float)v[i].f;
            ns_convert_from_f32((char *)dst + i * ns_dtypes[dtype].size, &f, dtype, 1);
        }
        }
    }
}
static int tsv_to_tensor(const char *path, const struct cmdline *cmd, FILE *out, ns_err *err) {
    int dtype = NS_F32;
    if (cmd->dtype && (dtype = ns_dtype_from_name(cmd->dtype, strlen(cmd->dtype))) < 0)
        return ns_errf(err, "unknown dtype (%s)", cmd->dtype);
    ns_lines in;
    if (ns_lines_open(&in, path, 0, err) < 0) return -1;
    const char *label = in.path;
    number *vals = NULL;
    size_t nvals = 0, cap = 0;
    int64_t rows = 0, cols = -1, lineno = 0;
    char *line;
    int rc = 0, got = 0;
    while (rc == 0 && (got = ns_lines_next(&in, &line, NULL, err)) == 1) {
        lineno = in.lineno;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p) continue;
        int64_t n = 0;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == ',') p++;
            if (!*p || *p == '\n' || *p == '\r') break;
            char *end;
            number v;
            if (parse_number(p, &end, (ns_dtype)dtype, &v) < 0) {
                char bad[32];
                snprintf(bad, sizeof bad, "%.*s", (int)strcspn(p, " \t,\r\n"), p);
                rc = ns_errf(err, "%s: line %lld: not a number (%s)", label, (long long)lineno, bad);
                break;
            }
            if (nvals == cap) {
                cap = cap ? cap * 2 : 1024;
                number *grown = realloc(vals, cap * sizeof *vals);
                if (!grown) { rc = ns_errf(err, "out of memory"); break; }
                vals = grown;
            }
            vals[nvals++] = v;
            n++;
            p = end;
        }
        if (rc) break;
        if (cols >= 0 && n != cols)
            rc = ns_errf(err, "%s: line %lld has %lld columns, earlier lines %lld", label,
                         (long long)lineno, (long long)n, (long long)cols);
        cols = n;
        rows++;
    }
    if (rc == 0 && got < 0) rc = -1;
    if (rc == 0 && rows == 0) rc = ns_errf(err, "%s: no numbers to read", label);
    if (rc == 0) {
        int64_t shape[2] = {rows, cols};
        ns_tensor t;
        if ((rc = ns_tensor_alloc(&t, (ns_dtype)dtype, cols == 1 ? 1 : 2, shape, err)) == 0) {
            store_values(t.data, vals, (ns_dtype)dtype, nvals);
            ns_writer w;
            ns_writer_init(&w, out);
            rc = ns_write_tensor(&w, cmd->name ? cmd->name : "tsv", &t, NULL, err);
            ns_writer_free(&w);
            ns_tensor_free(&t);
        }
    }
    free(vals);
    ns_lines_close(&in);
    return rc;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.output = "-"};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *path = first < argc ? argv[first] : "-";
    ns_err err;
    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    int rc = cmd.reverse ? tsv_to_tensor(path, &cmd, out.f, &err)
                         : tensor_to_tsv(path, &cmd, out.f, &err);
    if (ns_output_finish(&out, NULL, rc, &err) < 0) ns_die_err(&err);
    return 0;
}
