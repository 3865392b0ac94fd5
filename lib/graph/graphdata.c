// graphdata.c: reading, checking and writing graph streams (graphdata.h;
// layout in man/man5/tns.5, "Graphs").
//
// The reader keeps a copy of each graph.* tensor as it arrives (after checking
// its dtype and shape against graph.nodes) and assembles the graph at the end
// of the stream, when every cross-record rule (indptr against indices, weights
// against entries, labels against classes) can be checked. Nothing is
// allocated from a size the stream merely claims: record payloads are bounded
// by the TNS reader, and graph.nodes only sizes checks, never an allocation,
// until a record of that size has arrived.
#include "graph/graphdata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

const char *const ns_split_names[NS_SPLIT_COUNT] = {"train", "val", "test"};

#define SOURCE_MAX 4096 // bytes of graph.source

void ns_graph_free(ns_graph *g) {
    free(g->source);
    ns_strings_free(g->class_names, g->class_names ? (size_t)g->classes : 0);
    ns_csr_free(&g->adj);
    free(g->features);
    ns_csr_free(&g->sfeatures);
    free(g->labels);
    for (int s = 0; s < NS_SPLIT_COUNT; s++) free(g->masks[s]);
    memset(g, 0, sizeof *g);
}

int64_t ns_graph_split_size(const ns_graph *g, int split) {
    if (split < 0 || split >= NS_SPLIT_COUNT || !g->masks[split]) return 0;
    int64_t n = 0;
    for (int64_t i = 0; i < g->nodes; i++) n += g->masks[split][i] != 0;
    return n;
}

// --- validation ---------------------------------------------------------------------
static int check_finite(const float *x, int64_t n, const char *name, ns_err *err) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return ns_errf(err, "%s[%lld]: not finite (%g)", name, (long long)i, (double)x[i]);
    return 0;
}

int ns_graph_validate(const ns_graph *g, ns_err *err) {
    int64_t n = g->nodes;
    if (n < 1 || n > INT32_MAX)
        return ns_errf(err, "graph.nodes: %lld (must be 1 to %d)", (long long)n, INT32_MAX);
    if (g->classes < 0 || g->classes > NS_GRAPH_MAX_CLASSES)
        return ns_errf(err, "graph.classes: %lld (must be 0 to %lld)", (long long)g->classes,
                       (long long)NS_GRAPH_MAX_CLASSES);
    if (!g->adj.block || g->adj.rows != n || g->adj.cols != n)
        return ns_errf(err, "graph.indptr: the adjacency is %lld x %lld for %lld nodes",
                       (long long)g->adj.rows, (long long)g->adj.cols, (long long)n);
    if (ns_csr_check(&g->adj, "graph.indptr", "graph.indices", err) < 0) return -1;
    if (check_finite(g->adj.values, g->adj.nnz, "graph.weights", err) < 0) return -1;
    if (!g->weighted)
        for (int64_t k = 0; k < g->adj.nnz; k++)
            if (g->adj.values[k] != 1.0f)
                return ns_errf(err, "graph.weights[%lld]: %g in a graph without weights",
                               (long long)k, (double)g->adj.values[k]);
    if (g->undirected) {
        int64_t at[2];
        int sym = ns_csr_is_symmetric(&g->adj, at, err);
        if (sym < 0) return -1;
        if (!sym)
            return ns_errf(err,
                           "graph.undirected is true but edges %lld -> %lld and %lld -> %lld "
                           "differ (one missing, or other weights)",
                           (long long)at[0], (long long)at[1], (long long)at[1], (long long)at[0]);
    }
    int64_t d = g->feature_dim;
    if (d < 0 || d > INT32_MAX)
        return ns_errf(err, "graph.feature_dim: %lld (must be 0 to %d)", (long long)d, INT32_MAX);
    if (g->sparse_features) {
        if (g->features) return ns_errf(err, "graph.features: given both dense and sparse");
        if (g->sfeatures.rows != n || g->sfeatures.cols != d || !g->sfeatures.block)
            return ns_errf(err, "graph.features.indptr: features are %lld x %lld, expected %lld x %lld",
                           (long long)g->sfeatures.rows, (long long)g->sfeatures.cols,
                           (long long)n, (long long)d);
        if (ns_csr_check(&g->sfeatures, "graph.features.indptr", "graph.features.indices", err) < 0)
            return -1;
        if (check_finite(g->sfeatures.values, g->sfeatures.nnz, "graph.features.values", err) < 0)
            return -1;
    } else if (g->features) {
        for (int64_t i = 0; i < n * d; i++)
            if (!isfinite(g->features[i]))
                return ns_errf(err, "graph.features[%lld, %lld]: not finite (%g)",
                               (long long)(i / d), (long long)(i % d), (double)g->features[i]);
    } else if (d != 0) {
        return ns_errf(err, "graph.feature_dim is %lld but there are no features", (long long)d);
    }
    if (g->class_names && g->classes < 1)
        return ns_errf(err, "general.labels: class names for a graph without classes");
    if (g->labels) {
        for (int64_t i = 0; i < n; i++) {
            int32_t y = g->labels[i];
            if (y < -1 || y >= g->classes) {
                if (g->classes == 0)
                    return ns_errf(err, "graph.labels[%lld]: label %d but the graph has no classes "
                                        "(graph.classes is 0; only -1 fits)", (long long)i, y);
                return ns_errf(err, "graph.labels[%lld]: label %d out of range (0..%lld, or -1 "
                                    "for unlabelled)", (long long)i, y, (long long)g->classes - 1);
            }
        }
    }
    for (int s = 0; s < NS_SPLIT_COUNT; s++) {
        const uint8_t *m = g->masks[s];
        if (!m) continue;
        if (!g->labels)
            return ns_errf(err, "graph.%s: a split without labels (graph.labels)", ns_split_names[s]);
        for (int64_t i = 0; i < n; i++) {
            if (m[i] > 1)
                return ns_errf(err, "graph.%s[%lld]: %d (a mask holds 0 or 1)", ns_split_names[s],
                               (long long)i, m[i]);
            if (m[i] && g->labels[i] < 0)
                return ns_errf(err, "graph.%s[%lld]: node in the split is unlabelled (label -1)",
                               ns_split_names[s], (long long)i);
        }
    }
    return 0;
}

// --- reading ------------------------------------------------------------------------
enum {
    R_INDPTR, R_INDICES, R_WEIGHTS, R_FEATURES, R_FINDPTR, R_FINDICES, R_FVALUES,
    R_LABELS, R_TRAIN, R_VAL, R_TEST, R_COUNT
};

typedef enum rec_type {
    T_INDEX,  // i32 or i64
    T_FLOAT,  // any numeric dtype, converted to f32
    T_MASK,   // bool or u8
} rec_type;

typedef enum rec_len {
    L_ANY,       // 1-D, any length (checked at the end)
    L_NODES,     // 1-D, N
    L_NODES_P1,  // 1-D, N + 1
    L_MATRIX,    // 2-D, (N, D)
} rec_len;

static const struct {
    const char *name;
    rec_type type;
    rec_len len;
} records[R_COUNT] = {
    [R_INDPTR] = {"graph.indptr", T_INDEX, L_NODES_P1},
    [R_INDICES] = {"graph.indices", T_INDEX, L_ANY},
    [R_WEIGHTS] = {"graph.weights", T_FLOAT, L_ANY},
    [R_FEATURES] = {"graph.features", T_FLOAT, L_MATRIX},
    [R_FINDPTR] = {"graph.features.indptr", T_INDEX, L_NODES_P1},
    [R_FINDICES] = {"graph.features.indices", T_INDEX, L_ANY},
    [R_FVALUES] = {"graph.features.values", T_FLOAT, L_ANY},
    [R_LABELS] = {"graph.labels", T_INDEX, L_NODES},
    [R_TRAIN] = {"graph.train", T_MASK, L_NODES},
    [R_VAL] = {"graph.val", T_MASK, L_NODES},
    [R_TEST] = {"graph.test", T_MASK, L_NODES},
};
_Static_assert(R_TRAIN + NS_SPLIT_TRAIN == R_TRAIN && R_VAL == R_TRAIN + NS_SPLIT_VAL &&
                   R_TEST == R_TRAIN + NS_SPLIT_TEST,
               "mask records follow the split order");

typedef struct reading {
    ns_tensor slot[R_COUNT];
    int have[R_COUNT];
    uint64_t at[R_COUNT];    // record index, for "given twice"
    int have_nodes;
    int64_t classes;         // -1: not given
    int64_t edges;           // -1: not given
    int64_t feature_dim;     // -1: not given
} reading;

static int lookup_record(const char *name) {
    for (int i = 0; i < R_COUNT; i++)
        if (strcmp(records[i].name, name) == 0) return i;
    return -1;
}

static int meta_int(const msgpack_object *meta, const char *key, int64_t lo, int64_t hi,
                    int64_t *out, ns_err *err) {
    int got = ns_obj_i64(meta, key, out, err);
    if (got <= 0) return got;
    if (*out < lo || *out > hi)
        return ns_errf(err, "%s: %lld (must be %lld to %lld)", key, (long long)*out,
                       (long long)lo, (long long)hi);
    return 1;
}

static int read_meta(const ns_record *rec, ns_graph *g, reading *rd, ns_err *err) {
    const msgpack_object *m = rec->meta;
    if (!m) return 0;
    int64_t v;
    int got = meta_int(m, "graph.nodes", 1, INT32_MAX, &v, err);
    if (got < 0) return -1;
    if (got) {
        if (rd->have_nodes)
            return ns_errf(err, "record %llu: a second graph (graph.nodes again): a stream holds one graph",
                           (unsigned long long)rec->index);
        rd->have_nodes = 1;
        g->nodes = v;
    }
    if ((got = meta_int(m, "graph.classes", 0, NS_GRAPH_MAX_CLASSES, &v, err)) < 0) return -1;
    if (got) rd->classes = v;
    if ((got = meta_int(m, "graph.edges", 0, INT64_MAX, &v, err)) < 0) return -1;
    if (got) rd->edges = v;
    if ((got = meta_int(m, "graph.feature_dim", 0, INT32_MAX, &v, err)) < 0) return -1;
    if (got) rd->feature_dim = v;
    const msgpack_object *u = ns_map_get(m, "graph.undirected");
    if (u) {
        if (u->type != MSGPACK_OBJECT_BOOLEAN) return ns_errf(err, "graph.undirected: not true or false");
        g->undirected = u->via.boolean;
    }
    const msgpack_object *s = ns_map_get(m, "graph.source");
    if (s) {
        if (s->type != MSGPACK_OBJECT_STR || s->via.str.size > SOURCE_MAX ||
            memchr(s->via.str.ptr, 0, s->via.str.size))
            return ns_errf(err, "graph.source: not a string of at most %d bytes", SOURCE_MAX);
        free(g->source);
        if (!(g->source = strndup(s->via.str.ptr, s->via.str.size)))
            return ns_errf(err, "out of memory");
    }
    const msgpack_object *names = ns_map_get(m, "general.labels");
    if (names) {
        if (names->type == MSGPACK_OBJECT_ARRAY && names->via.array.size > NS_GRAPH_MAX_CLASSES)
            return ns_errf(err, "general.labels: %u names, more than %lld", names->via.array.size,
                           (long long)NS_GRAPH_MAX_CLASSES);
        char **strs;
        size_t count;
        if (ns_obj_strs(m, "general.labels", &strs, &count, err) < 0) return -1;
        ns_strings_free(g->class_names, g->class_names ? (size_t)g->classes : 0);
        // classes holds the name count until the end, where graph.classes is compared.
        g->class_names = count ? strs : NULL;
        if (!count) ns_strings_free(strs, 0);
        g->classes = (int64_t)count;
    }
    return 0;
}

// Checks a graph.* tensor against graph.nodes and keeps a copy.
static int take_record(const ns_record *rec, int id, ns_graph *g, reading *rd, ns_err *err) {
    const char *name = records[id].name;
    if (!rd->have_nodes)
        return ns_errf(err, "%s: comes before the graph's meta record (with graph.nodes)", name);
    if (rd->have[id])
        return ns_errf(err, "%s: given twice (records %llu and %llu)", name,
                       (unsigned long long)rd->at[id], (unsigned long long)rec->index);
    if (ns_map_get(rec->meta, "part"))
        return ns_errf(err, "%s: split into parts, which graph streams do not use", name);
    ns_dtype dt = rec->dtype;
    const char *want = NULL;
    if (records[id].type == T_INDEX && dt != NS_I32 && dt != NS_I64) want = "i32 or i64";
    if (records[id].type == T_MASK && dt != NS_BOOL && dt != NS_U8) want = "bool or u8";
    if (want) return ns_errf(err, "%s: dtype %s (must be %s)", name, ns_dtypes[dt].name, want);
    int ndim = records[id].len == L_MATRIX ? 2 : 1;
    char shp[128];
    ns_shape_format(shp, sizeof shp, rec->ndim, rec->shape);
    if (rec->ndim != ndim)
        return ns_errf(err, "%s: shape %s (must have %d dimension%s)", name, shp, ndim,
                       ndim > 1 ? "s" : "");
    int64_t n = g->nodes;
    int64_t expect = records[id].len == L_NODES_P1 ? n + 1 : records[id].len == L_ANY ? -1 : n;
    if (expect >= 0 && rec->shape[0] != expect)
        return ns_errf(err, "%s: shape %s (expected %lld%s: graph.nodes%s)", name, shp,
                       (long long)expect, ndim > 1 ? " rows" : "",
                       records[id].len == L_NODES_P1 ? " + 1" : "");
    int rc = records[id].type == T_FLOAT ? ns_record_tensor_f32(rec, &rd->slot[id], err)
                                         : ns_record_tensor(rec, &rd->slot[id], err);
    if (rc < 0) return ns_err_prefix(err, "%s", name);
    rd->have[id] = 1;
    rd->at[id] = rec->index;
    return 0;
}

static int64_t int_at(const ns_tensor *t, int64_t i) {
    return t->dtype == NS_I64 ? ((const int64_t *)t->data)[i] : ((const int32_t *)t->data)[i];
}

// Builds a CSR matrix of `cols` columns from kept indptr/indices/values
// records (values NULL: all 1). Column indices are range-checked here, where
// the original value (maybe beyond i32) is still at hand.
static int build_csr(ns_csr *out, int64_t rows, int64_t cols, const ns_tensor *indptr,
                     const ns_tensor *indices, const ns_tensor *values, const char *indices_name,
                     const char *values_name, const char *noun, ns_err *err) {
    int64_t nnz = indices->numel;
    if (values && values->numel != nnz)
        return ns_errf(err, "%s: %lld values for %lld entries (%s)", values_name,
                       (long long)values->numel, (long long)nnz, indices_name);
    if (ns_csr_alloc(out, rows, cols, nnz, err) < 0) return -1;
    for (int64_t i = 0; i <= rows; i++) out->indptr[i] = int_at(indptr, i);
    for (int64_t k = 0; k < nnz; k++) {
        int64_t c = int_at(indices, k);
        if (c < 0 || c >= cols) {
            ns_csr_free(out);
            return ns_errf(err, "%s[%lld]: %s %lld out of range (0..%lld)", indices_name,
                           (long long)k, noun, (long long)c, (long long)cols - 1);
        }
        out->indices[k] = (int32_t)c;
    }
    if (values) memcpy(out->values, values->data, (size_t)nnz * sizeof(float));
    else
        for (int64_t k = 0; k < nnz; k++) out->values[k] = 1.0f;
    return 0;
}

// Everything has arrived: assemble g and check it whole.
static int finish(ns_graph *g, reading *rd, ns_err *err) {
    if (!rd->have_nodes) return ns_errf(err, "no graph in the stream (no meta record with graph.nodes)");
    if (!rd->have[R_INDPTR] || !rd->have[R_INDICES])
        return ns_errf(err, "no adjacency (graph.indptr and graph.indices are required)");
    if (rd->classes >= 0) {
        if (g->class_names && g->classes != rd->classes)
            return ns_errf(err, "general.labels: %lld names for %lld classes (graph.classes)",
                           (long long)g->classes, (long long)rd->classes);
        g->classes = rd->classes;
    }
    if (rd->edges >= 0 && rd->edges != rd->slot[R_INDICES].numel)
        return ns_errf(err, "graph.edges is %lld but graph.indices has %lld entries",
                       (long long)rd->edges, (long long)rd->slot[R_INDICES].numel);
    int64_t n = g->nodes;
    g->weighted = rd->have[R_WEIGHTS];
    if (build_csr(&g->adj, n, n, &rd->slot[R_INDPTR], &rd->slot[R_INDICES],
                  g->weighted ? &rd->slot[R_WEIGHTS] : NULL, "graph.indices", "graph.weights",
                  "node", err) < 0)
        return -1;

    int sparse = rd->have[R_FINDPTR] || rd->have[R_FINDICES] || rd->have[R_FVALUES];
    if (sparse && rd->have[R_FEATURES])
        return ns_errf(err, "graph.features: given both dense and sparse (graph.features.*)");
    if (sparse) {
        for (int id = R_FINDPTR; id <= R_FVALUES; id++)
            if (!rd->have[id])
                return ns_errf(err, "%s: missing (sparse features need indptr, indices and values)",
                               records[id].name);
        if (rd->feature_dim < 0)
            return ns_errf(err, "graph.features.indptr: sparse features need graph.feature_dim "
                                "in the meta record");
        g->sparse_features = 1;
        g->feature_dim = rd->feature_dim;
        if (build_csr(&g->sfeatures, n, g->feature_dim, &rd->slot[R_FINDPTR],
                      &rd->slot[R_FINDICES], &rd->slot[R_FVALUES], "graph.features.indices",
                      "graph.features.values", "column", err) < 0)
            return -1;
    } else if (rd->have[R_FEATURES]) {
        int64_t d = rd->slot[R_FEATURES].shape[1];
        if (rd->feature_dim >= 0 && rd->feature_dim != d)
            return ns_errf(err, "graph.features: %lld columns but graph.feature_dim is %lld",
                           (long long)d, (long long)rd->feature_dim);
        g->feature_dim = d;
        g->features = rd->slot[R_FEATURES].data; // taken over
        rd->slot[R_FEATURES].data = NULL;
    } else if (rd->feature_dim > 0) {
        return ns_errf(err, "graph.feature_dim is %lld but there are no features",
                       (long long)rd->feature_dim);
    }
    if (rd->have[R_LABELS]) {
        if (!(g->labels = malloc((size_t)n * sizeof *g->labels))) return ns_errf(err, "out of memory");
        for (int64_t i = 0; i < n; i++) {
            int64_t y = int_at(&rd->slot[R_LABELS], i);
            if (y < -1 || y > INT32_MAX)
                return ns_errf(err, "graph.labels[%lld]: label %lld out of range (0..%lld, or -1 "
                                    "for unlabelled)", (long long)i, (long long)y,
                               (long long)g->classes - 1);
            g->labels[i] = (int32_t)y;
        }
    }
    for (int s = 0; s < NS_SPLIT_COUNT; s++) {
        if (!rd->have[R_TRAIN + s]) continue;
        g->masks[s] = rd->slot[R_TRAIN + s].data; // bool and u8 are both one byte
        rd->slot[R_TRAIN + s].data = NULL;
    }
    return ns_graph_validate(g, err);
}

int ns_graph_read(ns_reader *r, ns_graph *g, ns_err *err) {
    memset(g, 0, sizeof *g);
    reading rd = {.classes = -1, .edges = -1, .feature_dim = -1};
    ns_record rec;
    int got, rc = 0, labelled = 0; // labelled: err already names the input
    while ((got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            if ((rc = read_meta(&rec, g, &rd, err)) < 0) break;
            continue;
        }
        if (strcmp(rec.kind, "tensor") != 0 || !rec.has_data) continue;
        int id = lookup_record(rec.name);
        if (id < 0) continue; // not part of the graph, or a key of a later version
        if ((rc = take_record(&rec, id, g, &rd, err)) < 0) break;
    }
    if (got < 0) rc = -1, labelled = 1;
    if (rc == 0) rc = finish(g, &rd, err);
    for (int i = 0; i < R_COUNT; i++) ns_tensor_free(&rd.slot[i]);
    if (rc < 0) {
        if (!labelled) ns_err_prefix(err, "%s", ns_reader_label(r));
        ns_graph_free(g);
        return -1;
    }
    return 0;
}

int ns_graph_load(const char *path, ns_graph *g, ns_err *err) {
    memset(g, 0, sizeof *g);
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    int rc = ns_graph_read(r, g, err);
    ns_reader_close(r);
    return rc;
}

// --- writing ------------------------------------------------------------------------
// A 1-D or 2-D view of memory the graph owns, for the writer.
static ns_tensor view(ns_dtype dtype, void *data, int64_t n0, int64_t n1) {
    ns_tensor t = {.dtype = dtype, .ndim = n1 >= 0 ? 2 : 1, .numel = n1 >= 0 ? n0 * n1 : n0,
                   .data = data};
    t.shape[0] = n0;
    if (n1 >= 0) t.shape[1] = n1;
    return t;
}

static int write_csr(ns_writer *w, const ns_csr *m, const char *indptr_name,
                     const char *indices_name, const char *values_name, ns_err *err) {
    ns_tensor t = view(NS_I64, m->indptr, m->rows + 1, -1);
    if (ns_write_tensor(w, indptr_name, &t, NULL, err) < 0) return -1;
    t = view(NS_I32, m->indices, m->nnz, -1);
    if (ns_write_tensor(w, indices_name, &t, NULL, err) < 0) return -1;
    if (!values_name) return 0;
    t = view(NS_F32, m->values, m->nnz, -1);
    return ns_write_tensor(w, values_name, &t, NULL, err);
}

int ns_graph_write(ns_writer *w, const ns_graph *g, const char *producer, ns_err *err) {
    if (ns_graph_validate(g, err) < 0) return ns_err_prefix(err, "not writing an invalid graph");
    ns_map meta;
    ns_map_init(&meta);
    if (producer) ns_map_str(&meta, "general.producer", producer);
    if (g->class_names)
        ns_map_strs(&meta, "general.labels", (const char *const *)g->class_names, (size_t)g->classes);
    if (g->source) ns_map_str(&meta, "graph.source", g->source);
    ns_map_i64(&meta, "graph.nodes", g->nodes);
    ns_map_i64(&meta, "graph.edges", g->adj.nnz);
    ns_map_bool(&meta, "graph.undirected", g->undirected);
    ns_map_i64(&meta, "graph.classes", g->classes);
    if (g->feature_dim) ns_map_i64(&meta, "graph.feature_dim", g->feature_dim);
    int rc = ns_write_meta(w, "graph", &meta, err);
    ns_map_free(&meta);
    if (rc < 0) return -1;
    if (write_csr(w, &g->adj, "graph.indptr", "graph.indices", g->weighted ? "graph.weights" : NULL,
                  err) < 0)
        return -1;
    if (g->sparse_features) {
        if (write_csr(w, &g->sfeatures, "graph.features.indptr", "graph.features.indices",
                      "graph.features.values", err) < 0)
            return -1;
    } else if (g->features) {
        ns_tensor t = view(NS_F32, g->features, g->nodes, g->feature_dim);
        if (ns_write_tensor(w, "graph.features", &t, NULL, err) < 0) return -1;
    }
    if (g->labels) {
        ns_tensor t = view(NS_I32, g->labels, g->nodes, -1);
        if (ns_write_tensor(w, "graph.labels", &t, NULL, err) < 0) return -1;
    }
    for (int s = 0; s < NS_SPLIT_COUNT; s++) {
        if (!g->masks[s]) continue;
        ns_tensor t = view(NS_BOOL, g->masks[s], g->nodes, -1);
        if (ns_write_tensor(w, records[R_TRAIN + s].name, &t, NULL, err) < 0) return -1;
    }
    return 0;
}

int ns_graph_dense_features(const ns_graph *g, float **out, ns_err *err) {
    *out = NULL;
    if (!g->features && !g->sparse_features) return 0;
    size_t n = (size_t)g->nodes * (size_t)g->feature_dim;
    float *x = ns_aligned_alloc(n * sizeof *x);
    if (!x) return ns_errf(err, "out of memory (%lld x %lld features)", (long long)g->nodes,
                           (long long)g->feature_dim);
    if (g->sparse_features) ns_csr_to_dense(x, &g->sfeatures);
    else memcpy(x, g->features, n * sizeof *x);
    *out = x;
    return 0;
}

int ns_graph_copy_class_names(ns_graph *out, const ns_graph *g, ns_err *err) {
    if (!g->class_names) return 0;
    out->class_names = calloc((size_t)g->classes, sizeof *out->class_names);
    if (!out->class_names) return ns_errf(err, "out of memory");
    for (int64_t c = 0; c < g->classes; c++)
        if (!(out->class_names[c] = strdup(g->class_names[c]))) return ns_errf(err, "out of memory");
    return 0;
}

// --- the Planetoid split ------------------------------------------------------

int ns_planetoid_split(ns_graph *g, int64_t train_per_class, int64_t val, int64_t test, uint64_t seed,
                       ns_err *err) {
    if (!g->labels) return ns_errf(err, "a split needs labels (the graph has none)");
    if (train_per_class < 0 || val < 0 || test < 0)
        return ns_errf(err, "split sizes %lld per class, %lld, %lld: need counts >= 0", (long long)train_per_class,
                       (long long)val, (long long)test);
    int64_t n = g->nodes;
    int64_t *perm = malloc((size_t)n * sizeof *perm), *taken = calloc((size_t)g->classes + 1, sizeof *taken);
    uint8_t *masks[NS_SPLIT_COUNT];
    for (int s = 0; s < NS_SPLIT_COUNT; s++) masks[s] = calloc((size_t)n, 1);
    int rc = 0;
    if (!perm || !taken || !masks[0] || !masks[1] || !masks[2]) {
        rc = ns_errf(err, "out of memory (%lld nodes)", (long long)n);
        goto done;
    }
    ns_rng r;
    ns_rng_seed_stream(&r, seed, NS_PLANETOID_STREAM, 0);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    ns_rng_shuffle(&r, perm, n);
    int64_t labelled = 0, trained = 0;
    for (int64_t k = 0; k < n; k++) {
        int32_t y = g->labels[perm[k]];
        if (y < 0) continue;
        labelled++;
        if (taken[y] < train_per_class) {
            taken[y]++;
            trained++;
            masks[NS_SPLIT_TRAIN][perm[k]] = 1;
        }
    }
    if (labelled - trained < val + test) {
        rc = ns_errf(err, "%lld labelled nodes: %lld train, then %lld val and %lld test do not fit",
                     (long long)labelled, (long long)trained, (long long)val, (long long)test);
        goto done;
    }
    int64_t want[2] = {val, test};
    int split = 0;
    for (int64_t k = 0; k < n && split < 2; k++) {
        int64_t i = perm[k];
        if (g->labels[i] < 0 || masks[NS_SPLIT_TRAIN][i]) continue;
        while (split < 2 && want[split] == 0) split++;
        if (split == 2) break;
        masks[NS_SPLIT_VAL + split][i] = 1;
        want[split]--;
    }
    for (int s = 0; s < NS_SPLIT_COUNT; s++) {
        free(g->masks[s]);
        g->masks[s] = masks[s];
        masks[s] = NULL;
    }
done:
    for (int s = 0; s < NS_SPLIT_COUNT; s++) free(masks[s]);
    free(perm);
    free(taken);
    return rc;
}
