// graph_text.c: graphs and node data from text (graph_text.h): a tokenizer
// over base/lines.h that splits a line into fields, the number parsers, and
// the readers of edge lists, side files and Cora-layout directories. Shapes:
// N nodes, D features, C classes, E edges; every array is as graph_text.h says.
#include "graph/graph_text.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/tensor.h"

// --- fields of a line ---------------------------------------------------------------
typedef struct fields {
    ns_lines own, *in; // in: &own, or a reader the caller opened
    char **field;      // (n) pointers into the current line
    int n, cap;
} fields;

static int fields_open(fields *t, const char *path, ns_err *err) {
    memset(t, 0, sizeof *t);
    t->in = &t->own;
    return ns_lines_open(&t->own, path, 0, err);
}

static void fields_close(fields *t) {
    if (t->in == &t->own) ns_lines_close(&t->own);
    free(t->field);
    memset(t, 0, sizeof *t);
}

static const char *where_path(const fields *t) { return t->in->path; }
static long long where_line(const fields *t) { return (long long)t->in->lineno; }

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Reads lines from in until one holds data and splits it into t's fields.
// 1: a line; 0: end of file; -1: a read error or an empty field (",," or a
// comma at either end).
static int next_fields(ns_lines *in, fields *t, ns_err *err) {
    for (;;) {
        char *line;
        int got = ns_lines_next(in, &line, NULL, err);
        if (got <= 0) return got;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        t->n = 0;
        int pending = 0; // a comma since the last field
        for (char *p = line;;) {
            while (is_blank(*p)) p++;
            if (*p == ',') {
                if (t->n == 0 || pending) return ns_errf(err, "%s:%lld: empty field", in->path, (long long)in->lineno);
                pending = 1;
                p++;
                continue;
            }
            if (!*p) {
                if (pending)
                    return ns_errf(err, "%s:%lld: empty field at the end of the line", in->path, (long long)in->lineno);
                break;
            }
            if (t->n == t->cap) {
                int cap = t->cap ? 2 * t->cap : 16;
                char **grown = realloc(t->field, (size_t)cap * sizeof *grown);
                if (!grown) return ns_errf(err, "%s:%lld: out of memory", in->path, (long long)in->lineno);
                t->field = grown;
                t->cap = cap;
            }
            t->field[t->n++] = p;
            pending = 0;
            while (*p && !is_blank(*p) && *p != ',') p++;
            if (*p == ',') pending = 1;
            if (*p) *p++ = 0;
        }
        if (t->n) return 1;
    }
}

static int next(fields *t, ns_err *err) { return next_fields(t->in, t, err); }

// "path:line" arguments for messages.
#define WHERE(t) where_path(t), where_line(t)

static int field_int(const fields *t, int i, const char *what, int64_t *out, ns_err *err) {
    const char *s = t->field[i];
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno) return ns_errf(err, "%s:%lld: not %s (%s)", WHERE(t), what, s);
    *out = v;
    return 0;
}

// Decimal: [+-] digits [. digits] [e [+-] digits], with a digit before the
// exponent. strtod also reads hex, inf and nan, which graph text does not use.
static int is_decimal(const char *s) {
    int digits = 0;
    if (*s == '+' || *s == '-') s++;
    while (*s >= '0' && *s <= '9') s++, digits++;
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++) digits++;
    if (!digits) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!(*s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9') s++;
    }
    return *s == 0;
}

static int field_float(const fields *t, int i, const char *what, float *out, ns_err *err) {
    const char *s = t->field[i];
    char *end;
    errno = 0;
    double v = strtod(s, &end); // underflow to 0 or a subnormal is fine
    if (end == s || *end) return ns_errf(err, "%s:%lld: not %s (%s)", WHERE(t), what, s);
    if (!isfinite(v) || fabs(v) > 3.4028234663852886e38)
        return ns_errf(err, "%s:%lld: %s is not a finite f32 number (%s)", WHERE(t), what, s);
    if (!is_decimal(s)) return ns_errf(err, "%s:%lld: %s is not a decimal number (%s)", WHERE(t), what, s);
    *out = (float)v;
    return 0;
}

// A node id in [0, n) (n < 0: any id a CSR can index).
static int field_node(const fields *t, int i, int64_t n, int32_t *out, ns_err *err) {
    int64_t v;
    if (field_int(t, i, "a node id", &v, err) < 0) return -1;
    if (n >= 0 && (v < 0 || v >= n))
        return ns_errf(err, "%s:%lld: node %lld out of range (0..%lld)", WHERE(t), (long long)v, (long long)n - 1);
    if (v < 0 || v >= INT32_MAX)
        return ns_errf(err, "%s:%lld: node id %lld out of range (0..%d)", WHERE(t), (long long)v, INT32_MAX - 1);
    *out = (int32_t)v;
    return 0;
}

static int expect_fields(const fields *t, int n, const char *form, ns_err *err) {
    if (t->n == n) return 0;
    return ns_errf(err, "%s:%lld: %d field%s, expected %d (%s)", WHERE(t), t->n, t->n == 1 ? "" : "s", n, form);
}

// "train", "val", "test" or "none" in field i: NS_SPLIT_* or -1 in *out.
static int field_split(const fields *t, int i, int8_t *out, ns_err *err) {
    const char *w = t->field[i];
    for (int s = 0; s < NS_SPLIT_COUNT; s++)
        if (strcmp(w, ns_split_names[s]) == 0) return *out = (int8_t)s, 0;
    if (strcmp(w, "none") == 0) return *out = -1, 0;
    return ns_errf(err, "%s:%lld: unknown split (%s): train, val, test or none", WHERE(t), w);
}

// Grows *p (of *cap elements of size) to hold at least need.
static int grow(void **p, int64_t *cap, int64_t need, size_t size, ns_err *err) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return ns_errf(err, "out of memory (%lld entries)", (long long)c);
    *p = q;
    *cap = c;
    return 0;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// --- edges --------------------------------------------------------------------------
static int edges_read(fields *t, ns_edge_list *e, int64_t n, ns_err *err) {
    memset(e, 0, sizeof *e);
    e->weighted = -1;
    e->max_id = -1;
    if (!(e->path = strdup(t->in->path))) return ns_errf(err, "out of memory");
    int got;
    while ((got = next(t, err)) == 1) {
        if (e->weighted < 0) {
            if (t->n != 2 && t->n != 3)
                return ns_errf(err, "%s:%lld: %d fields, expected U V or U V W", WHERE(t), t->n);
            e->weighted = t->n == 3;
        }
        if (expect_fields(t, e->weighted ? 3 : 2, e->weighted ? "U V W, as on the first edge" : "U V, as on the first edge",
                          err) < 0)
            return -1;
        if (e->n == e->cap) {
            int64_t cap = e->cap, c2 = e->cap, c3 = e->cap, c4 = e->cap;
            if (grow((void **)&e->u, &cap, e->n + 1, sizeof *e->u, err) < 0 ||
                grow((void **)&e->v, &c2, e->n + 1, sizeof *e->v, err) < 0 ||
                grow((void **)&e->line, &c3, e->n + 1, sizeof *e->line, err) < 0 ||
                (e->weighted && grow((void **)&e->w, &c4, e->n + 1, sizeof *e->w, err) < 0))
                return -1;
            e->cap = cap;
        }
        if (field_node(t, 0, n, &e->u[e->n], err) < 0 || field_node(t, 1, n, &e->v[e->n], err) < 0) return -1;
        if (e->weighted && field_float(t, 2, "a weight", &e->w[e->n], err) < 0) return -1;
        e->line[e->n] = t->in->lineno;
        if (e->u[e->n] > e->max_id) e->max_id = e->u[e->n];
        if (e->v[e->n] > e->max_id) e->max_id = e->v[e->n];
        e->n++;
    }
    if (got < 0) return -1;
    if (e->weighted < 0) e->weighted = 0;
    return 0;
}

int ns_edges_read(ns_lines *in, ns_edge_list *e, int64_t n, ns_err *err) {
    fields t = {.in = in}; // the caller's reader, left open
    int rc = edges_read(&t, e, n, err);
    fields_close(&t);
    return rc;
}

void ns_edges_free(ns_edge_list *e) {
    free(e->u), free(e->v), free(e->w), free(e->line), free(e->path);
    memset(e, 0, sizeof *e);
}

int ns_edges_to_graph(ns_graph *g, const ns_edge_list *e, int64_t n, ns_err *err) {
    int64_t where[2];
    if (ns_csr_from_coo(&g->adj, n, n, e->n, e->u, e->v, e->weighted ? e->w : NULL, NS_DUP_REFUSE, where, err) < 0) {
        if (where[1] >= 0)
            return ns_errf(err, "%s:%lld: duplicate edge %d %d (first on line %lld)", e->path,
                           (long long)e->line[where[1]], e->u[where[1]], e->v[where[1]], (long long)e->line[where[0]]);
        if (where[0] >= 0) return ns_err_prefix(err, "%s:%lld", e->path, (long long)e->line[where[0]]);
        return ns_err_prefix(err, "%s", e->path);
    }
    g->weighted = e->weighted;
    return 0;
}

// --- side files ---------------------------------------------------------------------
int ns_node_features_read(const char *path, ns_node_text *s, ns_err *err) {
    fields t;
    if (fields_open(&t, path, err) < 0) return -1;
    int64_t cap = 0, first_line = 0;
    float *x = NULL;
    int got, rc = 0;
    while (rc == 0 && (got = next(&t, err)) == 1) {
        if (s->rows == 0) {
            s->dim = t.n;
            first_line = t.in->lineno;
        } else if (t.n != s->dim) {
            rc = ns_errf(err, "%s:%lld: %d values, expected %lld as on line %lld", WHERE(&t), t.n, (long long)s->dim,
                         (long long)first_line);
            break;
        }
        if (s->rows >= INT32_MAX) {
            rc = ns_errf(err, "%s:%lld: more than %d rows", WHERE(&t), INT32_MAX);
            break;
        }
        if (grow((void **)&x, &cap, (s->rows + 1) * s->dim, sizeof *x, err) < 0) rc = -1;
        for (int j = 0; rc == 0 && j < t.n; j++) rc = field_float(&t, j, "a number", &x[s->rows * s->dim + j], err);
        s->rows++;
    }
    if (rc == 0 && got < 0) rc = -1;
    if (rc == 0 && s->rows == 0) rc = ns_errf(err, "%s: no feature rows", path);
    if (rc == 0) {
        size_t bytes = (size_t)(s->rows * s->dim) * sizeof *x;
        if (!(s->features = ns_aligned_alloc(bytes))) rc = ns_errf(err, "out of memory (%zu bytes of features)", bytes);
        else memcpy(s->features, x, bytes);
    }
    free(x);
    fields_close(&t);
    return rc;
}

int ns_node_labels_read(const char *path, ns_node_text *s, ns_err *err) {
    fields t;
    if (fields_open(&t, path, err) < 0) return -1;
    int64_t cap = 0, lcap = 0, y = 0;
    int got, rc = 0;
    s->max_label = -1;
    while (rc == 0 && (got = next(&t, err)) == 1) {
        if (expect_fields(&t, 1, "one label per line", err) < 0 || field_int(&t, 0, "an integer label", &y, err) < 0) {
            rc = -1;
            break;
        }
        if (y < -1 || y >= NS_GRAPH_MAX_CLASSES) {
            rc = ns_errf(err, "%s:%lld: label %lld out of range (0..%lld, or -1 for unlabelled)", WHERE(&t),
                         (long long)y, (long long)NS_GRAPH_MAX_CLASSES - 1);
            break;
        }
        if (grow((void **)&s->labels, &cap, s->nlabels + 1, sizeof *s->labels, err) < 0 ||
            grow((void **)&s->label_line, &lcap, s->nlabels + 1, sizeof *s->label_line, err) < 0) {
            rc = -1;
            break;
        }
        s->labels[s->nlabels] = (int32_t)y;
        s->label_line[s->nlabels++] = t.in->lineno;
        if (y > s->max_label) s->max_label = (int32_t)y;
    }
    if (rc == 0 && got < 0) rc = -1;
    if (rc == 0 && s->nlabels == 0) rc = ns_errf(err, "%s: no labels", path);
    fields_close(&t);
    return rc;
}

int ns_node_split_read(const char *path, ns_node_text *s, ns_err *err) {
    fields t;
    if (fields_open(&t, path, err) < 0) return -1;
    int64_t cap = 0, lcap = 0;
    int got, rc = 0;
    while (rc == 0 && (got = next(&t, err)) == 1) {
        if (expect_fields(&t, 1, "train, val, test or none per line", err) < 0 ||
            grow((void **)&s->split, &cap, s->nsplit + 1, sizeof *s->split, err) < 0 ||
            grow((void **)&s->split_line, &lcap, s->nsplit + 1, sizeof *s->split_line, err) < 0 ||
            field_split(&t, 0, &s->split[s->nsplit], err) < 0) {
            rc = -1;
            break;
        }
        s->split_line[s->nsplit++] = t.in->lineno;
    }
    if (rc == 0 && got < 0) rc = -1;
    if (rc == 0 && s->nsplit == 0) rc = ns_errf(err, "%s: no lines", path);
    fields_close(&t);
    return rc;
}

int ns_class_names_read(const char *path, ns_node_text *s, ns_err *err) {
    ns_lines in;
    if (ns_lines_open(&in, path, 0, err) < 0) return -1;
    int64_t ncap = 0;
    char *line;
    size_t len;
    int got, rc = 0;
    while (rc == 0 && (got = ns_lines_next(&in, &line, &len, err)) == 1) {
        char *p = line, *end = line + len;
        while (p < end && is_blank(*p)) p++;
        while (end > p && is_blank(end[-1])) end--;
        if (p == end) continue;
        if (s->nnames >= NS_GRAPH_MAX_CLASSES)
            rc = ns_errf(err, "%s: more than %lld class names", path, (long long)NS_GRAPH_MAX_CLASSES);
        else if (grow((void **)&s->names, &ncap, s->nnames + 1, sizeof *s->names, err) < 0)
            rc = -1;
        else if (!(s->names[s->nnames] = strndup(p, (size_t)(end - p))))
            rc = ns_errf(err, "out of memory");
        else
            s->nnames++;
    }
    if (rc == 0 && got < 0) rc = -1;
    ns_lines_close(&in);
    if (rc == 0 && s->nnames == 0) rc = ns_errf(err, "%s: no class names", path);
    return rc;
}

void ns_node_text_free(ns_node_text *s) {
    free(s->features);
    free(s->labels);
    if (s->split_line != s->label_line) free(s->split_line);
    free(s->label_line);
    free(s->split);
    ns_strings_free(s->names, (size_t)s->nnames);
    memset(s, 0, sizeof *s);
}

// --- Cora-layout directories --------------------------------------------------------
// The first line of t, a header of n counts: 0, or -1 (empty file, wrong fields).
static int header(fields *t, int n, const char *form, ns_err *err) {
    int got = next(t, err);
    if (got < 0) return -1;
    if (got == 0) return ns_errf(err, "%s: empty (expected a header %s)", where_path(t), form);
    char what[64];
    snprintf(what, sizeof what, "a header %s", form);
    return expect_fields(t, n, what, err);
}

// nodes.txt: "N C", then "LABEL SPLIT" per node.
static int cora_nodes(fields *t, ns_graph *g, ns_node_text *s, ns_err *err) {
    int64_t n, c;
    if (header(t, 2, "NODES CLASSES", err) < 0 || field_int(t, 0, "a node count", &n, err) < 0 ||
        field_int(t, 1, "a class count", &c, err) < 0)
        return -1;
    if (n < 1 || n >= INT32_MAX)
        return ns_errf(err, "%s:%lld: node count %lld out of range (1..%d)", WHERE(t), (long long)n, INT32_MAX - 1);
    if (c < 0 || c > NS_GRAPH_MAX_CLASSES)
        return ns_errf(err, "%s:%lld: class count %lld out of range (0..%lld)", WHERE(t), (long long)c,
                       (long long)NS_GRAPH_MAX_CLASSES);
    g->nodes = n;
    g->classes = c;
    // Memory grows with the lines read, not with the header's count.
    int64_t cap = 0, lcap = 0, scap = 0, i = 0;
    int got;
    while ((got = next(t, err)) == 1) {
        if (i == n) return ns_errf(err, "%s:%lld: more nodes than the header's %lld", WHERE(t), (long long)n);
        int64_t y;
        if (expect_fields(t, 2, "LABEL SPLIT", err) < 0 || field_int(t, 0, "an integer label", &y, err) < 0) return -1;
        if (y < -1 || y >= c)
            return ns_errf(err, "%s:%lld: label %lld out of range (0..%lld, or -1 for unlabelled)", WHERE(t),
                           (long long)y, (long long)c - 1);
        if (grow((void **)&s->labels, &cap, i + 1, sizeof *s->labels, err) < 0 ||
            grow((void **)&s->label_line, &lcap, i + 1, sizeof *s->label_line, err) < 0 ||
            grow((void **)&s->split, &scap, i + 1, sizeof *s->split, err) < 0)
            return -1;
        s->split_line = s->label_line;
        s->labels[i] = (int32_t)y;
        if (field_split(t, 1, &s->split[i], err) < 0) return -1;
        s->label_line[i++] = t->in->lineno;
        s->nlabels = s->nsplit = i;
    }
    if (got < 0) return -1;
    if (i != n) return ns_errf(err, "%s: header says %lld nodes, found %lld", where_path(t), (long long)n, (long long)i);
    return 0;
}

// edges.txt: "N E", then E lines "U V".
static int cora_edges(fields *t, ns_graph *g, const char *nodes_path, ns_err *err) {
    int64_t n2, ne, n = g->nodes;
    if (header(t, 2, "NODES EDGES", err) < 0 || field_int(t, 0, "a node count", &n2, err) < 0 ||
        field_int(t, 1, "an edge count", &ne, err) < 0)
        return -1;
    if (n2 != n)
        return ns_errf(err, "%s:%lld: %lld nodes, but %s has %lld", WHERE(t), (long long)n2, nodes_path, (long long)n);
    ns_edge_list e;
    int rc = edges_read(t, &e, n, err);
    if (rc == 0 && e.n != ne)
        rc = ns_errf(err, "%s: header says %lld edges, found %lld", where_path(t), (long long)ne, (long long)e.n);
    if (rc == 0) rc = ns_edges_to_graph(g, &e, n, err);
    ns_edges_free(&e);
    return rc;
}

// features.txt: "N D NNZ", then "ROW COL VALUE" per non-zero.
static int cora_features(fields *t, ns_graph *g, const char *nodes_path, ns_err *err) {
    int64_t n3, d, nnz, n = g->nodes;
    if (header(t, 3, "NODES DIMS NONZEROS", err) < 0 || field_int(t, 0, "a node count", &n3, err) < 0 ||
        field_int(t, 1, "a feature count", &d, err) < 0 || field_int(t, 2, "a count of non-zeros", &nnz, err) < 0)
        return -1;
    if (n3 != n)
        return ns_errf(err, "%s:%lld: %lld nodes, but %s has %lld", WHERE(t), (long long)n3, nodes_path, (long long)n);
    if (d < 1 || d > INT32_MAX)
        return ns_errf(err, "%s:%lld: feature count %lld out of range (1..%d)", WHERE(t), (long long)d, INT32_MAX);
    if (nnz < 0 || nnz > n * d)
        return ns_errf(err, "%s:%lld: %lld non-zeros do not fit %lld x %lld", WHERE(t), (long long)nnz, (long long)n,
                       (long long)d);
    int64_t cap = 0, c2 = 0, c3 = 0, c4 = 0, k = 0, col;
    int32_t *ri = NULL, *ci = NULL;
    float *v = NULL;
    int64_t *line = NULL;
    int got, rc = 0;
    while (rc == 0 && (got = next(t, err)) == 1) {
        if (k == nnz) {
            rc = ns_errf(err, "%s:%lld: more entries than the header's %lld", WHERE(t), (long long)nnz);
            break;
        }
        if (expect_fields(t, 3, "ROW COL VALUE", err) < 0 || grow((void **)&ri, &cap, k + 1, sizeof *ri, err) < 0 ||
            grow((void **)&ci, &c2, k + 1, sizeof *ci, err) < 0 || grow((void **)&v, &c3, k + 1, sizeof *v, err) < 0 ||
            grow((void **)&line, &c4, k + 1, sizeof *line, err) < 0 || field_node(t, 0, n, &ri[k], err) < 0 ||
            field_int(t, 1, "a column", &col, err) < 0) {
            rc = -1;
            break;
        }
        if (col < 0 || col >= d) {
            rc = ns_errf(err, "%s:%lld: column %lld out of range (0..%lld)", WHERE(t), (long long)col, (long long)d - 1);
            break;
        }
        ci[k] = (int32_t)col;
        if (field_float(t, 2, "a value", &v[k], err) < 0) rc = -1;
        line[k++] = t->in->lineno;
    }
    if (rc == 0 && got < 0) rc = -1;
    if (rc == 0 && k != nnz)
        rc = ns_errf(err, "%s: header says %lld non-zeros, found %lld", where_path(t), (long long)nnz, (long long)k);
    int64_t where[2];
    if (rc == 0 && ns_csr_from_coo(&g->sfeatures, n, d, k, ri, ci, v, NS_DUP_REFUSE, where, err) < 0) {
        if (where[1] >= 0)
            rc = ns_errf(err, "%s:%lld: duplicate entry %d %d (first on line %lld)", where_path(t),
                         (long long)line[where[1]], ri[where[1]], ci[where[1]], (long long)line[where[0]]);
        else
            rc = ns_err_prefix(err, "%s", where_path(t));
    }
    if (rc == 0) {
        g->sparse_features = 1;
        g->feature_dim = d;
    }
    free(ri), free(ci), free(v), free(line);
    return rc;
}

int ns_cora_read(const char *dir, ns_graph *g, ns_node_text *nodes, char **nodes_path, ns_err *err) {
    fields t;
    char *path = NULL;
    if (!(*nodes_path = join(dir, "nodes.txt"))) return ns_errf(err, "out of memory");
    if (fields_open(&t, *nodes_path, err) < 0) return -1;
    int rc = cora_nodes(&t, g, nodes, err);
    fields_close(&t);
    if (rc < 0) return -1;

    if (!(path = join(dir, "edges.txt"))) return ns_errf(err, "out of memory");
    rc = fields_open(&t, path, err);
    if (rc == 0) rc = cora_edges(&t, g, *nodes_path, err);
    fields_close(&t);
    free(path);
    if (rc < 0) return -1;

    // Features are optional: a missing features.txt means none.
    if (!(path = join(dir, "features.txt"))) return ns_errf(err, "out of memory");
    FILE *probe = fopen(path, "r");
    int missing = !probe && errno == ENOENT;
    if (probe) fclose(probe);
    rc = missing ? 0 : fields_open(&t, path, err);
    if (!missing && rc == 0) rc = cora_features(&t, g, *nodes_path, err);
    if (!missing) fields_close(&t);
    free(path);
    return rc;
}

// --- node data onto a graph ---------------------------------------------------------
int ns_node_text_set_labels(ns_graph *g, const ns_node_text *s, const char *path, ns_err *err) {
    for (int64_t i = 0; i < g->nodes; i++)
        if (s->labels[i] >= g->classes)
            return ns_errf(err, "%s:%lld: label %d out of range (0..%lld, or -1 for unlabelled)", path,
                           (long long)s->label_line[i], s->labels[i], (long long)g->classes - 1);
    free(g->labels);
    if (!(g->labels = malloc((size_t)g->nodes * sizeof *g->labels))) return ns_errf(err, "out of memory");
    memcpy(g->labels, s->labels, (size_t)g->nodes * sizeof *g->labels);
    return 0;
}

int ns_node_text_set_split(ns_graph *g, const ns_node_text *s, const char *path, ns_err *err) {
    for (int k = 0; k < NS_SPLIT_COUNT; k++) {
        free(g->masks[k]);
        if (!(g->masks[k] = calloc((size_t)g->nodes, 1))) return ns_errf(err, "out of memory");
    }
    for (int64_t i = 0; i < g->nodes; i++) {
        if (s->split[i] < 0) continue;
        if (!g->labels || g->labels[i] < 0)
            return ns_errf(err, "%s:%lld: node %lld is in the %s split but unlabelled", path,
                           (long long)s->split_line[i], (long long)i, ns_split_names[s->split[i]]);
        g->masks[s->split[i]][i] = 1;
    }
    return 0;
}
