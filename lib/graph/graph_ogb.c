// graph_ogb.c: a node-property-prediction dataset in the Open Graph Benchmark's
// on-disk layout (ogbn-arxiv, ogbn-products, ... as the OGB loader unpacks
// them), read through the text readers of graph_text.c (graph_text.h):
//
//   DIR/raw/edge.csv[.gz]          "U,V" per line: the edges (E of them)
//   DIR/raw/num-node-list.csv[.gz] N (optional: else the feature or label rows)
//   DIR/raw/node-feat.csv[.gz]     D numbers per line, one line per node (optional)
//   DIR/raw/node-label.csv[.gz]    one class per line, one line per node (optional)
//   DIR/split/NAME/{train,valid,test}.csv[.gz]  node ids, one per line (optional;
//                                  NAME is the one split folder: time, sales_ranking, ...)
//
// The files are plain or gzip'd (base/lines.h reads both). Shapes: features
// (N, D), labels (N), masks (N).
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "graph/graph_text.h"

// DIR/REL.gz or DIR/REL, whichever exists (malloc'd), or NULL (*oom set on
// out of memory).
static char *find_file(const char *dir, const char *rel, int *oom) {
    const char *ext[] = {".gz", ""};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(dir) + strlen(rel) + strlen(ext[i]) + 2;
        char *p = malloc(n);
        if (!p) {
            *oom = 1;
            return NULL;
        }
        snprintf(p, n, "%s/%s%s", dir, rel, ext[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) return p;
        free(p);
    }
    return NULL;
}

int ns_ogb_dir(const char *dir) {
    int oom = 0;
    char *p = find_file(dir, "raw/edge.csv", &oom);
    free(p);
    return p != NULL;
}

// The one integer on the first line of path.
static int read_count(const char *path, int64_t *n, ns_err *err) {
    ns_lines in;
    if (ns_lines_open(&in, path, 0, err) < 0) return -1;
    char *line, *end;
    int got = ns_lines_next(&in, &line, NULL, err);
    int rc = got < 0 ? -1 : 0;
    if (got == 1) {
        errno = 0;
        *n = strtoll(line, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r') end++;
        if (end == line || *end || errno || *n < 1 || *n > INT32_MAX)
            rc = ns_errf(err, "%s:1: not a node count from 1 to %d (%s)", path, INT32_MAX, line);
    } else if (got == 0) {
        rc = ns_errf(err, "%s: empty (the node count was expected)", path);
    }
    ns_lines_close(&in);
    return rc;
}

// The only folder of DIR/split (malloc'd path), NULL when there is no split.
static int split_folder(const char *dir, char **out, ns_err *err) {
    *out = NULL;
    size_t n = strlen(dir) + 8;
    char *base = malloc(n);
    if (!base) return ns_errf(err, "out of memory");
    snprintf(base, n, "%s/split", dir);
    DIR *d = opendir(base);
    if (!d) {
        int rc = errno == ENOENT ? 0 : ns_errf(err, "%s: cannot open (%s)", base, strerror(errno));
        free(base);
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t m = strlen(base) + strlen(e->d_name) + 2;
        char *p = malloc(m);
        if (!p) { rc = ns_errf(err, "out of memory"); break; }
        snprintf(p, m, "%s/%s", base, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) { free(p); continue; }
        if (*out) {
            rc = ns_errf(err, "%s: more than one split (%s and %s): keep one folder", base, *out, p);
            free(p);
            break;
        }
        *out = p;
    }
    closedir(d);
    free(base);
    if (rc < 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

// Marks the node ids listed in path in mask (N nodes); each must be labelled.
static int read_split(const char *path, const ns_graph *g, uint8_t *mask, ns_err *err) {
    ns_lines in;
    if (ns_lines_open(&in, path, 0, err) < 0) return -1;
    char *line, *end;
    size_t len;
    int got, rc = 0;
    while (rc == 0 && (got = ns_lines_next(&in, &line, &len, err)) == 1) {
        if (len == 0) continue;
        errno = 0;
        long long id = strtoll(line, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r') end++;
        if (end == line || *end || errno || id < 0 || id >= g->nodes)
            rc = ns_errf(err, "%s:%lld: not a node id from 0 to %lld (%s)", path, (long long)in.lineno,
                         (long long)g->nodes - 1, line);
        else if (!g->labels || g->labels[id] < 0)
            rc = ns_errf(err, "%s:%lld: node %lld is in the split but unlabelled", path, (long long)in.lineno, id);
        else
            mask[id] = 1;
    }
    if (got < 0) rc = -1;
    ns_lines_close(&in);
    return rc;
}

static int read_splits(const char *dir, ns_graph *g, ns_err *err) {
    char *folder;
    if (split_folder(dir, &folder, err) < 0) return -1;
    if (!folder) return 0;
    static const char *const files[NS_SPLIT_COUNT] = {"train.csv", "valid.csv", "test.csv"};
    int rc = 0, oom = 0;
    for (int s = 0; s < NS_SPLIT_COUNT && rc == 0; s++) {
        char *path = find_file(folder, files[s], &oom);
        if (!path) {
            rc = oom ? ns_errf(err, "out of memory") : ns_errf(err, "%s: no %s[.gz]", folder, files[s]);
            break;
        }
        free(g->masks[s]);
        if (!(g->masks[s] = calloc((size_t)g->nodes, 1))) rc = ns_errf(err, "out of memory");
        else rc = read_split(path, g, g->masks[s], err);
        free(path);
    }
    free(folder);
    return rc;
}

int ns_ogb_read(const char *dir, ns_graph *g, ns_node_text *nodes, ns_err *err) {
    int oom = 0, rc = -1;
    char *edges = find_file(dir, "raw/edge.csv", &oom), *count = find_file(dir, "raw/num-node-list.csv", &oom);
    char *feat = find_file(dir, "raw/node-feat.csv", &oom), *label = find_file(dir, "raw/node-label.csv", &oom);
    ns_edge_list e = {0};
    if (oom) {
        ns_errf(err, "out of memory");
        goto done;
    }
    if (!edges) {
        ns_errf(err, "%s: no raw/edge.csv[.gz] (not the OGB layout)", dir);
        goto done;
    }
    int64_t n = -1;
    if (count && read_count(count, &n, err) < 0) goto done;
    if (feat && ns_node_features_read(feat, nodes, err) < 0) goto done;
    if (label && ns_node_labels_read(label, nodes, err) < 0) goto done;
    struct { const char *path; int64_t rows; const char *what; } given[] = {
        {feat, nodes->rows, "feature rows"}, {label, nodes->nlabels, "labels"}};
    for (int i = 0; i < 2; i++) {
        if (!given[i].path) continue;
        if (n < 0) n = given[i].rows;
        else if (given[i].rows != n) {
            ns_errf(err, "%s: %lld %s for %lld nodes", given[i].path, (long long)given[i].rows, given[i].what, (long long)n);
            goto done;
        }
    }
    ns_lines in;
    if (ns_lines_open(&in, edges, 0, err) < 0) goto done;
    int erc = ns_edges_read(&in, &e, n, err);
    ns_lines_close(&in);
    if (erc < 0) goto done;
    if (n < 0) {
        if (e.n == 0) {
            ns_errf(err, "%s: no edges and no node count (raw/num-node-list.csv)", edges);
            goto done;
        }
        n = (int64_t)e.max_id + 1;
    }
    g->nodes = n;
    if (ns_edges_to_graph(g, &e, n, err) < 0) goto done;
    if (feat) {
        g->features = nodes->features;
        nodes->features = NULL;
        g->feature_dim = nodes->dim;
    }
    if (label) {
        g->classes = (int64_t)nodes->max_label + 1;
        if (ns_node_text_set_labels(g, nodes, label, err) < 0) goto done;
    }
    if (read_splits(dir, g, err) < 0) goto done;
    if (!(g->source = strdup(dir))) {
        ns_errf(err, "out of memory");
        goto done;
    }
    rc = 0;
done:
    ns_edges_free(&e);
    free(edges);
    free(count);
    free(feat);
    free(label);
    return rc;
}
