// graph-import: a graph in plain text (or a graph stream) to a graph stream.
//
//   graph-import [options] SOURCE
//
// SOURCE is one of (recognised by what it is, not by its name):
//   a directory in the layout of Cora as exported to text (the repository
//     ships Cora in data/cora): nodes.txt ("N C", then
//     "LABEL SPLIT" per node), edges.txt ("N E", then "U V" per edge) and
//     optionally features.txt ("N D NNZ", then "ROW COL VALUE" per non-zero);
//   a graph stream (TNS, as this program writes): re-checked, and re-split or
//     otherwise changed by the options;
//   an edge list: "U V" or "U,V" per line, optionally a weight "U V W".
// Side files (--features, --labels, --split) add or replace node data. The
// output (layout in tns(5), "Graphs") is written only once everything has
// been read and checked, so a failed import leaves nothing behind.
//
// Text input rules: fields are separated by blanks or one comma; "#" starts a
// comment; blank lines are skipped. Errors name the file and line.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/blas.h"
#include "cli/cli.h"
#include "graph/graphdata.h"
#include "base/rng.h"
#include "graph/sparse.h"
#include "stream/tns.h"

struct cmdline {
    int undirected, directed, self_loops, sparse;
    int64_t nodes, seed; // -1: not given
    const char *features, *labels, *classes, *split, *split_random, *output;
    const char *source;
    double frac[NS_SPLIT_COUNT]; // --split-random, when given
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const ns_opt opts[] = {
        {"undirected", 'u', NS_OPT_FLAG, &cmd->undirected, NULL, "store every edge both ways (default for a Cora directory)", 0, 0},
        {"directed", 'd', NS_OPT_FLAG, &cmd->directed, NULL, "keep edges as listed (default for an edge list)", 0, 0},
        {"self-loops", 0, NS_OPT_FLAG, &cmd->self_loops, NULL, "add a self loop (weight 1) to every node that has none", 0, 0},
        {"nodes", 'n', NS_OPT_I64, &cmd->nodes, "N", "number of nodes of an edge list (default: from the side files, or largest id + 1)", 1, 2147483647.0},
        {"features", 'f', NS_OPT_STR, &cmd->features, "FILE", "node features: one row of numbers per node", 0, 0},
        {"labels", 'l', NS_OPT_STR, &cmd->labels, "FILE", "node labels: one integer per node, -1 for unlabelled", 0, 0},
        {"classes", 'c', NS_OPT_STR, &cmd->classes, "FILE", "class names, one per line: label k names class k", 0, 0},
        {"split", 's', NS_OPT_STR, &cmd->split, "FILE", "the split: train, val, test or none per node", 0, 0},
        {"split-random", 'r', NS_OPT_STR, &cmd->split_random, "T,V,S", "a random split of the labelled nodes, in fractions (e.g. 0.6,0.2,0.2)", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed for --split-random (default 0)", 0, 1e18},
        {"sparse", 0, NS_OPT_FLAG, &cmd->sparse, NULL, "store the features in CSR (graph.features.indptr/indices/values)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] SOURCE",
        "Import a graph (a Cora-layout directory, an edge list, or a graph stream)\n"
        "into a TNS graph stream: adjacency in CSR, features, labels and split masks.",
        "An edge list has \"U V\" or \"U,V\" (or \"U V W\" with a weight) per line, node ids\n"
        "0..N-1; \"#\" starts a comment. A directory holds nodes.txt, edges.txt and\n"
        "features.txt, each with a header of counts (Planetoid's Cora exported as text).\n"
        "Side files have one line per node. See graph-import(1) and tns(5).",
        1, 1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    cmd->source = argv[first];
    if (cmd->undirected && cmd->directed) ns_die_usage("--undirected and --directed cannot be combined");
    if (cmd->split && cmd->split_random) ns_die_usage("--split and --split-random cannot be combined");
    if (cmd->seed >= 0 && !cmd->split_random)
        ns_die_usage("--seed applies only to --split-random (%lld)", (long long)cmd->seed);
    if (cmd->seed < 0) cmd->seed = 0;
    if (cmd->split_random) {
        ns_err err;
        double f[4];
        int n = ns_parse_doubles(cmd->split_random, f, 4, &err);
        if (n != NS_SPLIT_COUNT)
            ns_die_usage("--split-random takes three fractions TRAIN,VAL,TEST (%s)", cmd->split_random);
        double sum = 0;
        for (int s = 0; s < NS_SPLIT_COUNT; s++) {
            if (f[s] < 0 || f[s] > 1)
                ns_die_usage("--split-random fractions must be between 0 and 1 (%s)", cmd->split_random);
            cmd->frac[s] = f[s];
            sum += f[s];
        }
        if (sum > 1 + 1e-9) ns_die_usage("--split-random fractions add up to more than 1 (%s)", cmd->split_random);
    }
}

// --- text files -------------------------------------------------------------------
typedef struct text {
    FILE *f;
    char *path;         // as named in messages
    char *line;
    size_t cap;
    int64_t lineno;     // of the line in `field`
    char **field;
    int nfield, capfield;
} text;

static void text_open(text *t, const char *path) {
    memset(t, 0, sizeof *t);
    t->f = fopen(path, "r");
    if (!t->f) ns_die("%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(t->f), &st) == 0 && S_ISDIR(st.st_mode)) ns_die("%s: is a directory", path);
    if (!(t->path = strdup(path))) ns_die("out of memory");
}

static void text_close(text *t) {
    if (t->f) fclose(t->f);
    free(t->path);
    free(t->line);
    free(t->field);
    memset(t, 0, sizeof *t);
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Reads the next line that holds data and splits it into fields. 1: a line;
// 0: end of file. Dies on a read error or an empty field (",," or a comma at
// either end).
static int text_next(text *t) {
    for (;;) {
        errno = 0;
        ssize_t len = getline(&t->line, &t->cap, t->f);
        if (len < 0) {
            if (ferror(t->f)) ns_die("%s: read error (%s)", t->path, strerror(errno ? errno : EIO));
            return 0;
        }
        t->lineno++;
        if ((size_t)len != strlen(t->line)) ns_die("%s:%lld: a NUL byte (not a text file?)", t->path, (long long)t->lineno);
        char *hash = strchr(t->line, '#');
        if (hash) *hash = 0;
        t->line[strcspn(t->line, "\n")] = 0;
        t->nfield = 0;
        int pending = 0; // a comma since the last field
        for (char *p = t->line;;) {
            while (is_blank(*p)) p++;
            if (*p == ',') {
                if (t->nfield == 0 || pending) ns_die("%s:%lld: empty field", t->path, (long long)t->lineno);
                pending = 1;
                p++;
                continue;
            }
            if (!*p) {
                if (pending) ns_die("%s:%lld: empty field at the end of the line", t->path, (long long)t->lineno);
                break;
            }
            if (t->nfield == t->capfield) {
                t->capfield = t->capfield ? 2 * t->capfield : 16;
                char **grown = realloc(t->field, (size_t)t->capfield * sizeof *grown);
                if (!grown) ns_die("out of memory");
                t->field = grown;
            }
            t->field[t->nfield++] = p;
            pending = 0;
            while (*p && !is_blank(*p) && *p != ',') p++;
            if (*p == ',') pending = 1;
            if (*p) *p++ = 0;
        }
        if (t->nfield) return 1;
    }
}

static int64_t field_int(const text *t, int i, const char *what) {
    const char *s = t->field[i];
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno) ns_die("%s:%lld: not %s (%s)", t->path, (long long)t->lineno, what, s);
    return v;
}

static float field_float(const text *t, int i, const char *what) {
    const char *s = t->field[i];
    char *end;
    errno = 0;
    double v = strtod(s, &end); // underflow to 0 or a subnormal is fine
    if (end == s || *end) ns_die("%s:%lld: not %s (%s)", t->path, (long long)t->lineno, what, s);
    if (!isfinite(v) || fabs(v) > 3.4028234663852886e38)
        ns_die("%s:%lld: %s is not a finite f32 number (%s)", t->path, (long long)t->lineno, what, s);
    return (float)v;
}

// A node id in [0, n) (n < 0: any id a CSR can index).
static int32_t field_node(const text *t, int i, int64_t n) {
    int64_t v = field_int(t, i, "a node id");
    if (n >= 0 && (v < 0 || v >= n))
        ns_die("%s:%lld: node %lld out of range (0..%lld)", t->path, (long long)t->lineno, (long long)v, (long long)n - 1);
    if (v < 0 || v >= INT32_MAX)
        ns_die("%s:%lld: node id %lld out of range (0..%d)", t->path, (long long)t->lineno, (long long)v, INT32_MAX - 1);
    return (int32_t)v;
}

static void expect_fields(const text *t, int n, const char *form) {
    if (t->nfield != n)
        ns_die("%s:%lld: %d field%s, expected %d (%s)", t->path, (long long)t->lineno, t->nfield,
               t->nfield == 1 ? "" : "s", n, form);
}

// A path inside the source directory.
static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) ns_die("out of memory");
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// Grows *p (of *cap elements of size) to hold at least need.
static void grow(void **p, int64_t *cap, int64_t need, size_t size) {
    if (need <= *cap) return;
    int64_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) ns_die("out of memory (%lld entries)", (long long)c);
    *p = q;
    *cap = c;
}

// Array p resized to n elements of size.
static void *resize(void *p, int64_t n, size_t size) {
    void *q = realloc(p, (size_t)n * size);
    if (!q) ns_die("out of memory (%lld entries)", (long long)n);
    return q;
}

// --- edges --------------------------------------------------------------------------
typedef struct edges {
    int64_t n, cap;
    int32_t *u, *v;
    float *w;        // weights, when weighted
    int64_t *line;   // the line of each edge, for messages
    int weighted;    // -1: not known yet (no edge read)
    int32_t max_id;  // largest id seen, -1 when none
    char *path;
} edges;

// Reads "U V [W]" lines to the end of t into e; ids checked against n (n < 0:
// unknown). The first edge decides whether every line has a weight.
static void read_edges(text *t, edges *e, int64_t n) {
    e->weighted = -1;
    e->max_id = -1;
    if (!(e->path = strdup(t->path))) ns_die("out of memory");
    while (text_next(t)) {
        if (e->weighted < 0) {
            if (t->nfield != 2 && t->nfield != 3)
                ns_die("%s:%lld: %d fields, expected U V or U V W", t->path, (long long)t->lineno, t->nfield);
            e->weighted = t->nfield == 3;
        }
        expect_fields(t, e->weighted ? 3 : 2, e->weighted ? "U V W, as on the first edge" : "U V, as on the first edge");
        if (e->n == e->cap) {
            e->cap = e->cap ? 2 * e->cap : 1024;
            e->u = resize(e->u, e->cap, sizeof *e->u);
            e->v = resize(e->v, e->cap, sizeof *e->v);
            e->line = resize(e->line, e->cap, sizeof *e->line);
            if (e->weighted) e->w = resize(e->w, e->cap, sizeof *e->w);
        }
        e->u[e->n] = field_node(t, 0, n);
        e->v[e->n] = field_node(t, 1, n);
        if (e->weighted) e->w[e->n] = field_float(t, 2, "a weight");
        e->line[e->n] = t->lineno;
        if (e->u[e->n] > e->max_id) e->max_id = e->u[e->n];
        if (e->v[e->n] > e->max_id) e->max_id = e->v[e->n];
        e->n++;
    }
    if (e->weighted < 0) e->weighted = 0;
}

static void edges_free(edges *e) {
    free(e->u), free(e->v), free(e->w), free(e->line), free(e->path);
    memset(e, 0, sizeof *e);
}

// The adjacency of n nodes from the edges as listed (directed); a repeated
// edge is an error naming both lines.
static void build_adjacency(ns_graph *g, const edges *e, int64_t n) {
    ns_err err;
    int64_t where[2];
    if (ns_csr_from_coo(&g->adj, n, n, e->n, e->u, e->v, e->weighted ? e->w : NULL, NS_DUP_REFUSE, where, &err) < 0) {
        if (where[1] >= 0)
            ns_die("%s:%lld: duplicate edge %d %d (first on line %lld)", e->path, (long long)e->line[where[1]],
                   e->u[where[1]], e->v[where[1]], (long long)e->line[where[0]]);
        if (where[0] >= 0)
            ns_die("%s:%lld: %s", e->path, (long long)e->line[where[0]], err.msg);
        ns_die("%s: %s", e->path, err.msg);
    }
    g->weighted = e->weighted;
}

// --- side files ---------------------------------------------------------------------
typedef struct side {
    float *features;   // (rows, dim), 64-byte aligned
    int64_t rows, dim;
    int32_t *labels;   // (nlabels)
    int64_t *label_line;
    int64_t nlabels;
    int32_t max_label;
    int8_t *split;     // (nsplit): -1 none, else NS_SPLIT_*
    int64_t *split_line;
    int64_t nsplit;
    char **names;      // class names
    int64_t nnames;
} side;

static void read_features(const char *path, side *s) {
    text t;
    text_open(&t, path);
    int64_t cap = 0, first_line = 0;
    float *x = NULL;
    while (text_next(&t)) {
        if (s->rows == 0) {
            s->dim = t.nfield;
            first_line = t.lineno;
        } else if (t.nfield != s->dim) {
            ns_die("%s:%lld: %d values, expected %lld as on line %lld", path, (long long)t.lineno, t.nfield,
                   (long long)s->dim, (long long)first_line);
        }
        if (s->rows >= INT32_MAX) ns_die("%s:%lld: more than %d rows", path, (long long)t.lineno, INT32_MAX);
        grow((void **)&x, &cap, (s->rows + 1) * s->dim, sizeof *x);
        for (int j = 0; j < t.nfield; j++) x[s->rows * s->dim + j] = field_float(&t, j, "a number");
        s->rows++;
    }
    if (s->rows == 0) ns_die("%s: no feature rows", path);
    size_t bytes = (size_t)(s->rows * s->dim) * sizeof *x;
    if (!(s->features = ns_aligned_alloc(bytes))) ns_die("out of memory (%zu bytes of features)", bytes);
    memcpy(s->features, x, bytes);
    free(x);
    text_close(&t);
}

static void read_labels(const char *path, side *s) {
    text t;
    text_open(&t, path);
    int64_t cap = 0, lcap = 0;
    s->max_label = -1;
    while (text_next(&t)) {
        expect_fields(&t, 1, "one label per line");
        int64_t y = field_int(&t, 0, "an integer label");
        if (y < -1 || y >= NS_GRAPH_MAX_CLASSES)
            ns_die("%s:%lld: label %lld out of range (0..%lld, or -1 for unlabelled)", path, (long long)t.lineno,
                   (long long)y, (long long)NS_GRAPH_MAX_CLASSES - 1);
        grow((void **)&s->labels, &cap, s->nlabels + 1, sizeof *s->labels);
        grow((void **)&s->label_line, &lcap, s->nlabels + 1, sizeof *s->label_line);
        s->labels[s->nlabels] = (int32_t)y;
        s->label_line[s->nlabels++] = t.lineno;
        if (y > s->max_label) s->max_label = (int32_t)y;
    }
    if (s->nlabels == 0) ns_die("%s: no labels", path);
    text_close(&t);
}

// "train", "val", "test" or "none" in field i: NS_SPLIT_* or -1.
static int split_word(const text *t, int i) {
    const char *w = t->field[i];
    for (int s = 0; s < NS_SPLIT_COUNT; s++)
        if (strcmp(w, ns_split_names[s]) == 0) return s;
    if (strcmp(w, "none") == 0) return -1;
    ns_die("%s:%lld: unknown split (%s): train, val, test or none", t->path, (long long)t->lineno, w);
}

static void read_split(const char *path, side *s) {
    text t;
    text_open(&t, path);
    int64_t cap = 0, lcap = 0;
    while (text_next(&t)) {
        expect_fields(&t, 1, "train, val, test or none per line");
        grow((void **)&s->split, &cap, s->nsplit + 1, sizeof *s->split);
        grow((void **)&s->split_line, &lcap, s->nsplit + 1, sizeof *s->split_line);
        s->split[s->nsplit] = (int8_t)split_word(&t, 0);
        s->split_line[s->nsplit++] = t.lineno;
    }
    if (s->nsplit == 0) ns_die("%s: no lines", path);
    text_close(&t);
}

// One class name per line, as written (surrounding blanks trimmed); blank
// lines are skipped and "#" is part of a name.
static void read_names(const char *path, side *s) {
    FILE *f = fopen(path, "r");
    if (!f) ns_die("%s: cannot open (%s)", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int64_t ncap = 0;
    while (getline(&line, &cap, f) >= 0) {
        char *p = line, *end = line + strcspn(line, "\n");
        while (p < end && is_blank(*p)) p++;
        while (end > p && is_blank(end[-1])) end--;
        if (p == end) continue;
        if (s->nnames >= NS_GRAPH_MAX_CLASSES) ns_die("%s: more than %lld class names", path, (long long)NS_GRAPH_MAX_CLASSES);
        grow((void **)&s->names, &ncap, s->nnames + 1, sizeof *s->names);
        if (!(s->names[s->nnames++] = strndup(p, (size_t)(end - p)))) ns_die("out of memory");
    }
    if (ferror(f)) ns_die("%s: read error", path);
    free(line);
    fclose(f);
    if (s->nnames == 0) ns_die("%s: no class names", path);
}

// --- sources ------------------------------------------------------------------------
// An error exit from the feature loop of read_cora (the field readers call
// ns_die) finds the entries read so far only in dead locals; a copy here keeps
// them reachable, so LeakSanitizer does not count them as leaked.
static void *volatile cora_entries[4];

// Node data of a Cora-layout directory, kept with line numbers for messages.
static void read_cora(const char *dir, ns_graph *g, side *nodes_side, char **nodes_path) {
    text t;
    *nodes_path = join(dir, "nodes.txt");
    text_open(&t, *nodes_path);
    if (!text_next(&t)) ns_die("%s: empty (expected a header NODES CLASSES)", t.path);
    expect_fields(&t, 2, "a header NODES CLASSES");
    int64_t n = field_int(&t, 0, "a node count"), c = field_int(&t, 1, "a class count");
    if (n < 1 || n >= INT32_MAX) ns_die("%s:%lld: node count %lld out of range (1..%d)", t.path, (long long)t.lineno, (long long)n, INT32_MAX - 1);
    if (c < 0 || c > NS_GRAPH_MAX_CLASSES) ns_die("%s:%lld: class count %lld out of range (0..%lld)", t.path, (long long)t.lineno, (long long)c, (long long)NS_GRAPH_MAX_CLASSES);
    g->nodes = n;
    g->classes = c;
    nodes_side->labels = malloc((size_t)n * sizeof *nodes_side->labels);
    nodes_side->label_line = malloc((size_t)n * sizeof *nodes_side->label_line);
    nodes_side->split = malloc((size_t)n * sizeof *nodes_side->split);
    nodes_side->split_line = nodes_side->label_line;
    if (!nodes_side->labels || !nodes_side->label_line || !nodes_side->split) ns_die("out of memory (%lld nodes)", (long long)n);
    int64_t i = 0;
    while (text_next(&t)) {
        if (i == n) ns_die("%s:%lld: more nodes than the header's %lld", t.path, (long long)t.lineno, (long long)n);
        expect_fields(&t, 2, "LABEL SPLIT");
        int64_t y = field_int(&t, 0, "an integer label");
        if (y < -1 || y >= c)
            ns_die("%s:%lld: label %lld out of range (0..%lld, or -1 for unlabelled)", t.path, (long long)t.lineno,
                   (long long)y, (long long)c - 1);
        nodes_side->labels[i] = (int32_t)y;
        nodes_side->split[i] = (int8_t)split_word(&t, 1);
        nodes_side->label_line[i++] = t.lineno;
    }
    if (i != n) ns_die("%s: header says %lld nodes, found %lld", t.path, (long long)n, (long long)i);
    nodes_side->nlabels = nodes_side->nsplit = n;
    text_close(&t);

    // Edges: header "N E", then E lines.
    edges e = {0};
    char *path = join(dir, "edges.txt");
    text_open(&t, path);
    free(path); // t has its copy: an error exit below holds nothing in dead locals
    if (!text_next(&t)) ns_die("%s: empty (expected a header NODES EDGES)", t.path);
    expect_fields(&t, 2, "a header NODES EDGES");
    int64_t n2 = field_int(&t, 0, "a node count"), ne = field_int(&t, 1, "an edge count");
    if (n2 != n) ns_die("%s:%lld: %lld nodes, but %s has %lld", t.path, (long long)t.lineno, (long long)n2, *nodes_path, (long long)n);
    read_edges(&t, &e, n);
    if (e.n != ne) ns_die("%s: header says %lld edges, found %lld", t.path, (long long)ne, (long long)e.n);
    build_adjacency(g, &e, n);
    edges_free(&e);
    text_close(&t);

    // Features (optional): header "N D NNZ", then "ROW COL VALUE".
    path = join(dir, "features.txt");
    FILE *probe = fopen(path, "r");
    if (!probe && errno == ENOENT) {
        free(path);
        return;
    }
    if (probe) fclose(probe);
    text_open(&t, path);
    free(path);
    if (!text_next(&t)) ns_die("%s: empty (expected a header NODES DIMS NONZEROS)", t.path);
    expect_fields(&t, 3, "a header NODES DIMS NONZEROS");
    int64_t n3 = field_int(&t, 0, "a node count"), d = field_int(&t, 1, "a feature count"),
            nnz = field_int(&t, 2, "a count of non-zeros");
    if (n3 != n) ns_die("%s:%lld: %lld nodes, but %s has %lld", t.path, (long long)t.lineno, (long long)n3, *nodes_path, (long long)n);
    if (d < 1 || d > INT32_MAX) ns_die("%s:%lld: feature count %lld out of range (1..%d)", t.path, (long long)t.lineno, (long long)d, INT32_MAX);
    if (nnz < 0 || nnz > n * d) ns_die("%s:%lld: %lld non-zeros do not fit %lld x %lld", t.path, (long long)t.lineno, (long long)nnz, (long long)n, (long long)d);
    int64_t cap = 0, k = 0;
    int32_t *ri = NULL, *ci = NULL;
    float *v = NULL;
    int64_t *line = NULL;
    while (text_next(&t)) {
        if (k == nnz) ns_die("%s:%lld: more entries than the header's %lld", t.path, (long long)t.lineno, (long long)nnz);
        expect_fields(&t, 3, "ROW COL VALUE");
        if (k == cap) {
            cap = cap ? 2 * cap : 1024;
            ri = resize(ri, cap, sizeof *ri);
            ci = resize(ci, cap, sizeof *ci);
            v = resize(v, cap, sizeof *v);
            line = resize(line, cap, sizeof *line);
            cora_entries[0] = ri, cora_entries[1] = ci, cora_entries[2] = v, cora_entries[3] = line;
        }
        ri[k] = field_node(&t, 0, n);
        int64_t col = field_int(&t, 1, "a column");
        if (col < 0 || col >= d)
            ns_die("%s:%lld: column %lld out of range (0..%lld)", t.path, (long long)t.lineno, (long long)col, (long long)d - 1);
        ci[k] = (int32_t)col;
        v[k] = field_float(&t, 2, "a value");
        line[k++] = t.lineno;
    }
    if (k != nnz) ns_die("%s: header says %lld non-zeros, found %lld", t.path, (long long)nnz, (long long)k);
    ns_err err;
    int64_t where[2];
    if (ns_csr_from_coo(&g->sfeatures, n, d, k, ri, ci, v, NS_DUP_REFUSE, where, &err) < 0) {
        if (where[1] >= 0)
            ns_die("%s:%lld: duplicate entry %d %d (first on line %lld)", t.path, (long long)line[where[1]],
                   ri[where[1]], ci[where[1]], (long long)line[where[0]]);
        ns_die("%s: %s", t.path, err.msg);
    }
    g->sparse_features = 1;
    g->feature_dim = d;
    free(ri), free(ci), free(v), free(line);
    text_close(&t);
}

// Copies stdin to a temporary file, so that its first byte can decide what it is.
static FILE *stdin_copy(void) {
    FILE *f = tmpfile();
    if (!f) ns_die("cannot create a temporary file for standard input (%s)", strerror(errno));
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        if (fwrite(buf, 1, n, f) != n) ns_die("standard input: cannot copy to a temporary file (%s)", strerror(errno));
    if (ferror(stdin)) ns_die("stdin: read error");
    if (fflush(f) != 0) ns_die("standard input: cannot copy to a temporary file (%s)", strerror(errno));
    rewind(f);
    return f;
}

// A TNS record is a msgpack map: fixmap (0x80..0x8f), map16 (0xde) or map32 (0xdf).
static int looks_like_tns(FILE *f) {
    int c = getc(f);
    rewind(f);
    return c != EOF && ((c & 0xf0) == 0x80 || c == 0xde || c == 0xdf);
}

// --- putting it together ----------------------------------------------------------
// Node count of an edge list: --nodes, else the side files (which must
// agree), else the largest id + 1 (known only after the edges).
static int64_t node_count(const struct cmdline *cmd, const side *s, const char **from) {
    int64_t n = -1;
    struct { int64_t count; const char *path, *what; } given[] = {
        {cmd->nodes, "--nodes", "nodes"},
        {cmd->features ? s->rows : -1, cmd->features, "feature rows"},
        {cmd->labels ? s->nlabels : -1, cmd->labels, "labels"},
        {cmd->split ? s->nsplit : -1, cmd->split, "split lines"},
    };
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
        if (given[i].count < 0) continue;
        if (n < 0) {
            n = given[i].count;
            *from = given[i].path;
        } else if (given[i].count != n) {
            ns_die("%s: %lld %s, but %s gives %lld nodes", given[i].path, (long long)given[i].count,
                   given[i].what, *from, (long long)n);
        }
    }
    return n;
}

// Side files for a source whose node count is fixed.
static void check_side_counts(const struct cmdline *cmd, const side *s, int64_t n, const char *from) {
    if (cmd->nodes >= 0 && cmd->nodes != n)
        ns_die("--nodes is %lld but %s has %lld nodes", (long long)cmd->nodes, from, (long long)n);
    if (cmd->features && s->rows != n)
        ns_die("%s: %lld feature rows for %lld nodes (%s)", cmd->features, (long long)s->rows, (long long)n, from);
    if (cmd->labels && s->nlabels != n)
        ns_die("%s: %lld labels for %lld nodes (%s)", cmd->labels, (long long)s->nlabels, (long long)n, from);
    if (cmd->split && s->nsplit != n)
        ns_die("%s: %lld split lines for %lld nodes (%s)", cmd->split, (long long)s->nsplit, (long long)n, from);
}

// Labels and split from text (a labels file, nodes.txt), checked with line numbers.
static void set_labels(ns_graph *g, const side *s, const char *path) {
    for (int64_t i = 0; i < g->nodes; i++)
        if (s->labels[i] >= g->classes)
            ns_die("%s:%lld: label %d out of range (0..%lld, or -1 for unlabelled)", path, (long long)s->label_line[i],
                   s->labels[i], (long long)g->classes - 1);
    free(g->labels);
    if (!(g->labels = malloc((size_t)g->nodes * sizeof *g->labels))) ns_die("out of memory");
    memcpy(g->labels, s->labels, (size_t)g->nodes * sizeof *g->labels);
}

static void set_split(ns_graph *g, const side *s, const char *path) {
    for (int k = 0; k < NS_SPLIT_COUNT; k++) {
        free(g->masks[k]);
        if (!(g->masks[k] = calloc((size_t)g->nodes, 1))) ns_die("out of memory");
    }
    for (int64_t i = 0; i < g->nodes; i++) {
        if (s->split[i] < 0) continue;
        if (!g->labels || g->labels[i] < 0)
            ns_die("%s:%lld: node %lld is in the %s split but unlabelled", path, (long long)s->split_line[i],
                   (long long)i, ns_split_names[s->split[i]]);
        g->masks[s->split[i]][i] = 1;
    }
}

// A seeded shuffle of the labelled nodes, cut at the fractions.
static void split_random(ns_graph *g, const struct cmdline *cmd) {
    if (!g->labels) ns_die("--split-random needs labels (none in %s and no --labels)", cmd->source);
    int64_t *pool = malloc((size_t)g->nodes * sizeof *pool), m = 0;
    if (!pool) ns_die("out of memory");
    for (int64_t i = 0; i < g->nodes; i++)
        if (g->labels[i] >= 0) pool[m++] = i;
    ns_rng rng;
    ns_rng_seed(&rng, (uint64_t)cmd->seed);
    ns_rng_shuffle(&rng, pool, m);
    int64_t at = 0;
    for (int s = 0; s < NS_SPLIT_COUNT; s++) {
        free(g->masks[s]);
        if (!(g->masks[s] = calloc((size_t)g->nodes, 1))) ns_die("out of memory");
        int64_t take = (int64_t)floor(cmd->frac[s] * (double)m + 0.5);
        if (take > m - at) take = m - at; // rounding past the end
        for (int64_t k = 0; k < take; k++) g->masks[s][pool[at + k]] = 1;
        at += take;
    }
    free(pool);
}

static void side_free(side *s) {
    free(s->features);
    free(s->labels);
    if (s->split_line != s->label_line) free(s->split_line);
    free(s->label_line);
    free(s->split);
    ns_strings_free(s->names, (size_t)s->nnames);
    memset(s, 0, sizeof *s);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.nodes = -1, .seed = -1, .output = "-"};
    parse_cmdline(argc, argv, &cmd);

    ns_threads(); // NETSMITH_THREADS for the parallel sort of large edge lists
    side s = {0};
    if (cmd.features) read_features(cmd.features, &s);
    if (cmd.labels) read_labels(cmd.labels, &s);
    if (cmd.split) read_split(cmd.split, &s);
    if (cmd.classes) read_names(cmd.classes, &s);

    ns_graph g = {0};
    ns_err err;
    side cora = {0};
    char *nodes_path = NULL;
    const char *labels_path = NULL; // the text the labels came from, for line numbers
    int undirected;
    struct stat st;
    if (strcmp(cmd.source, "-") != 0 && stat(cmd.source, &st) == 0 && S_ISDIR(st.st_mode)) {
        // A Cora-layout directory: undirected unless --directed.
        read_cora(cmd.source, &g, &cora, &nodes_path);
        check_side_counts(&cmd, &s, g.nodes, nodes_path);
        set_labels(&g, &cora, nodes_path);
        labels_path = nodes_path;
        set_split(&g, &cora, nodes_path);
        undirected = !cmd.directed;
    } else {
        FILE *f = strcmp(cmd.source, "-") == 0 ? stdin_copy() : fopen(cmd.source, "r");
        if (!f) ns_die("%s: cannot open (%s)", cmd.source, strerror(errno));
        const char *label = strcmp(cmd.source, "-") == 0 ? "stdin" : cmd.source;
        if (looks_like_tns(f)) {
            // A graph stream: its edges stay as they are unless --undirected.
            if (cmd.directed) ns_die_usage("--directed does not apply to a graph stream (%s)", cmd.source);
            if (lseek(fileno(f), 0, SEEK_SET) != 0) ns_die("%s: cannot rewind (%s)", label, strerror(errno));
            ns_reader *r = ns_reader_fdopen(fileno(f), label, &err);
            if (!r || ns_graph_read(r, &g, &err) < 0) ns_die_err(&err);
            ns_reader_close(r);
            check_side_counts(&cmd, &s, g.nodes, label);
            undirected = cmd.undirected || g.undirected;
        } else {
            // An edge list, directed unless --undirected.
            const char *from = NULL;
            int64_t n = node_count(&cmd, &s, &from);
            text t = {.f = f, .path = strdup(label)};
            if (!t.path) ns_die("out of memory");
            edges e = {0};
            read_edges(&t, &e, n);
            if (n < 0) {
                if (e.n == 0)
                    ns_die("%s: no edges, and no --nodes, --features, --labels or --split to count the nodes", label);
                n = (int64_t)e.max_id + 1;
            }
            g.nodes = n;
            build_adjacency(&g, &e, n);
            edges_free(&e);
            text_close(&t);
            f = NULL;
            undirected = cmd.undirected;
        }
        if (f) fclose(f);
    }
    if (!g.source && !(g.source = strdup(strcmp(cmd.source, "-") == 0 ? "stdin" : cmd.source)))
        ns_die("out of memory");

    // Side files replace what the source had.
    if (cmd.features) {
        free(g.features);
        ns_csr_free(&g.sfeatures);
        g.sparse_features = 0;
        g.features = s.features;
        s.features = NULL;
        g.feature_dim = s.dim;
    }
    if (cmd.labels || cmd.classes) {
        // New labels or names: the source's names no longer apply.
        ns_strings_free(g.class_names, g.class_names ? (size_t)g.classes : 0);
        g.class_names = NULL;
    }
    if (cmd.labels) {
        g.classes = cmd.classes ? s.nnames : (int64_t)s.max_label + 1;
        set_labels(&g, &s, cmd.labels);
        labels_path = cmd.labels;
    }
    if (cmd.classes) {
        if (s.nnames != g.classes)
            ns_die("%s: %lld class names for %lld classes (%s)", cmd.classes, (long long)s.nnames,
                   (long long)g.classes, labels_path ? labels_path : cmd.source);
        g.class_names = s.names;
        s.names = NULL;
        s.nnames = 0;
    }
    if (cmd.split) set_split(&g, &s, cmd.split);
    if (cmd.split_random) split_random(&g, &cmd);

    // Structure: mirror edges, add loops.
    if (undirected && !g.undirected) {
        ns_csr sym;
        if (ns_csr_symmetrize(&sym, &g.adj, NS_SYM_STRICT, &err) < 0)
            ns_die("%s: an edge listed both ways with different weights: %s", cmd.source, err.msg);
        ns_csr_free(&g.adj);
        g.adj = sym;
        g.undirected = 1;
    }
    if (cmd.self_loops) {
        ns_csr looped;
        if (ns_csr_add_self_loops(&looped, &g.adj, 1.0f, NS_LOOPS_FILL, &err) < 0) ns_die_err(&err);
        ns_csr_free(&g.adj);
        g.adj = looped;
    }
    // Features stored as asked.
    if (cmd.sparse && g.features) {
        if (ns_csr_from_dense(&g.sfeatures, g.features, g.nodes, g.feature_dim, &err) < 0) ns_die_err(&err);
        free(g.features);
        g.features = NULL;
        g.sparse_features = 1;
    } else if (!cmd.sparse && g.sparse_features) {
        float *dense;
        if (ns_graph_dense_features(&g, &dense, &err) < 0) ns_die_err(&err);
        ns_csr_free(&g.sfeatures);
        g.sparse_features = 0;
        g.features = dense;
    }
    if (ns_graph_validate(&g, &err) < 0) ns_die("%s: %s", cmd.source, err.msg);

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    int failed = ns_graph_write(&w, &g, "graph-import " NS_VERSION, &err) < 0;
    ns_graph_free(&g);
    side_free(&s);
    side_free(&cora);
    free(nodes_path);
    if (ns_output_finish(&out, &w, failed, &err) < 0) ns_die_err(&err);
    return 0;
}
