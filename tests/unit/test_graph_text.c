// test_graph_text.c: graphs from text (lib/graph/graph_text.h): edge lists
// with and without weights, side files, a Cora-layout directory written here,
// and the errors, each naming the file and line: bad ids, non-decimal
// numbers, duplicate edges, wrong header counts, a node in a split without a
// label.
// sanitize: yes (runs under ASan/UBSan in `make check-sanitize`)
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "graph/graph_text.h"

// Reads the edge list text with n nodes (-1: from the ids) into g; the
// error message in err on failure.
static int edges_from(const char *text, int64_t n, ns_graph *g, ns_edge_list *e, ns_err *err) {
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    ns_lines in;
    memset(g, 0, sizeof *g);
    int rc = ns_lines_from(&in, f, "e.txt", 0, err);
    if (rc == 0) rc = ns_edges_read(&in, e, n, err);
    if (rc == 0) {
        g->nodes = n < 0 ? e->max_id + 1 : n;
        rc = ns_edges_to_graph(g, e, g->nodes, err);
    }
    ns_lines_close(&in);
    fclose(f);
    return rc;
}

static void test_edges(void) {
    ns_graph g;
    ns_edge_list e;
    ns_err err = {{0}};
    int rc = edges_from("# a comment\n0 1\n1,2\n\n2 0  # trailing\n", -1, &g, &e, &err);
    CHECK(rc == 0 && e.n == 3 && !e.weighted && g.nodes == 3, "three edges, blanks or commas, comments (%s)", err.msg);
    CHECK(rc == 0 && e.line[0] == 2 && e.line[1] == 3 && e.line[2] == 5, "each edge keeps its line");
    CHECK(rc == 0 && g.adj.indptr[3] == 3 && g.adj.indices[0] == 1 && g.adj.indices[1] == 2 && g.adj.indices[2] == 0,
          "the adjacency in CSR, rows as listed");
    ns_edges_free(&e);
    ns_graph_free(&g);

    rc = edges_from("0 1 0.5\n1 0 2.5e-1\n", -1, &g, &e, &err);
    CHECK(rc == 0 && e.weighted && g.weighted && e.w[0] == 0.5f && e.w[1] == 0.25f, "weights in a third column");
    ns_edges_free(&e);
    ns_graph_free(&g);

    struct { const char *text, *msg; int64_t n; } bad[] = {
        {"0 1\nx 2\n", "e.txt:2: not a node id (x)", -1},
        {"0 1 0x10\n", "e.txt:1: a weight is not a decimal number (0x10)", -1},
        {"0 1 1\n1 2 inf\n", "e.txt:2: a weight is not a finite f32 number (inf)", -1},
        {"0 1 .\n", "e.txt:1: not a weight (.)", -1},
        {"0 1 1e\n", "e.txt:1: not a weight (1e)", -1},
        {"0 1\n1 2 3\n", "e.txt:2: 3 fields, expected 2 (U V, as on the first edge)", -1},
        {"0 1\n0 1\n", "e.txt:2: duplicate edge 0 1 (first on line 1)", -1},
        {"0 1\n1 3\n", "e.txt:2: node 3 out of range (0..2)", 3},
        {"0,,1\n", "e.txt:1: empty field", -1},
        {"0 1\n1 2,\n", "e.txt:2: empty field at the end of the line", -1},
        {"0 1\n2\0 1\n", "e.txt:2: a NUL byte (not a text file?)", -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        // strlen stops at a NUL: the last case needs its real length
        const char *t = bad[i].text;
        size_t len = strstr(bad[i].msg, "NUL") ? 9 : strlen(t);
        FILE *f = fmemopen((void *)t, len, "r");
        ns_lines in;
        ns_lines_from(&in, f, "e.txt", 0, &err);
        rc = ns_edges_read(&in, &e, bad[i].n, &err);
        if (rc == 0) {
            memset(&g, 0, sizeof g);
            rc = ns_edges_to_graph(&g, &e, e.max_id + 1, &err);
            ns_graph_free(&g);
        }
        CHECK(rc == -1 && strcmp(err.msg, bad[i].msg) == 0, "refused: %s (got: %s)", bad[i].msg, rc ? err.msg : "no error");
        ns_edges_free(&e);
        ns_lines_close(&in);
        fclose(f);
    }
}

static char dir[64];

static void write_file(const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int cora(ns_graph *g, ns_node_text *s, ns_err *err) {
    char *nodes_path = NULL;
    memset(g, 0, sizeof *g);
    memset(s, 0, sizeof *s);
    int rc = ns_cora_read(dir, g, s, &nodes_path, err);
    if (rc == 0) rc = ns_node_text_set_labels(g, s, nodes_path, err);
    if (rc == 0) rc = ns_node_text_set_split(g, s, nodes_path, err);
    free(nodes_path);
    return rc;
}

static void test_cora(void) {
    strcpy(dir, "/tmp/test_graph_text.XXXXXX");
    if (!mkdtemp(dir)) {
        SKIP("no temporary directory");
        return;
    }
    write_file("nodes.txt", "4 2\n0 train\n1 val\n-1 none\n1 test\n");
    write_file("edges.txt", "4 3\n0 1\n1 2\n2 3\n");
    write_file("features.txt", "4 3 2\n0 0 1\n3 2 0.5\n");
    ns_graph g;
    ns_node_text s;
    ns_err err = {{0}};
    int rc = cora(&g, &s, &err);
    CHECK(rc == 0 && g.nodes == 4 && g.classes == 2 && g.adj.nnz == 3, "a Cora directory: 4 nodes, 2 classes, 3 edges (%s)",
          err.msg);
    CHECK(rc == 0 && g.sparse_features && g.feature_dim == 3 && g.sfeatures.nnz == 2, "sparse features 4 x 3, 2 entries");
    CHECK(rc == 0 && g.labels[2] == -1 && g.masks[NS_SPLIT_TRAIN][0] && g.masks[NS_SPLIT_VAL][1] &&
              g.masks[NS_SPLIT_TEST][3] && !g.masks[NS_SPLIT_TEST][2],
          "labels and split from nodes.txt");
    CHECK(rc == 0 && ns_graph_validate(&g, &err) == 0, "the graph is valid (%s)", err.msg);
    ns_graph_free(&g);
    ns_node_text_free(&s);

    struct { const char *file, *text, *msg; } bad[] = {
        {"edges.txt", "4 4\n0 1\n1 2\n2 3\n", "edges.txt: header says 4 edges, found 3"},
        {"edges.txt", "5 3\n0 1\n1 2\n2 3\n", "edges.txt:1: 5 nodes, but"},
        {"edges.txt", "", "edges.txt: empty (expected a header NODES EDGES)"},
        {"nodes.txt", "4 2\n0 train\n1 val\n", "nodes.txt: header says 4 nodes, found 2"},
        {"nodes.txt", "2000000000 2\n0 train\n", "nodes.txt: header says 2000000000 nodes, found 1"},
        {"nodes.txt", "4 2\n0 train\n1 val\n-1 test\n1 test\n", "nodes.txt:4: node 2 is in the test split but unlabelled"},
        {"nodes.txt", "4 2 9\n", "nodes.txt:1: 3 fields, expected 2 (a header NODES CLASSES)"},
        {"features.txt", "4 3 2\n0 0 1\n0 0 2\n", "features.txt:3: duplicate entry 0 0 (first on line 2)"},
        {"features.txt", "4 3 1\n0 1 0x1\n", "features.txt:2: a value is not a decimal number (0x1)"},
    };
    static const char good_nodes[] = "4 2\n0 train\n1 val\n-1 none\n1 test\n", good_edges[] = "4 3\n0 1\n1 2\n2 3\n",
                      good_features[] = "4 3 2\n0 0 1\n3 2 0.5\n";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file("nodes.txt", good_nodes);
        write_file("edges.txt", good_edges);
        write_file("features.txt", good_features);
        write_file(bad[i].file, bad[i].text);
        rc = cora(&g, &s, &err);
        CHECK(rc == -1 && strstr(err.msg, bad[i].msg), "refused: %s (got: %s)", bad[i].msg, rc ? err.msg : "no error");
        ns_graph_free(&g);
        ns_node_text_free(&s);
    }
    char path[128];
    const char *names[] = {"nodes.txt", "edges.txt", "features.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void test_side_files(void) {
    strcpy(dir, "/tmp/test_graph_text.XXXXXX");
    if (!mkdtemp(dir)) {
        SKIP("no temporary directory");
        return;
    }
    write_file("f.txt", "1 2\n3 4.5\n-1e2 0\n");
    write_file("l.txt", "0\n-1\n1\n");
    write_file("s.txt", "train\nnone\ntest\n");
    write_file("c.txt", "  cat \n\n# dog\n");
    char f[128], l[128], sp[128], c[128];
    snprintf(f, sizeof f, "%s/f.txt", dir);
    snprintf(l, sizeof l, "%s/l.txt", dir);
    snprintf(sp, sizeof sp, "%s/s.txt", dir);
    snprintf(c, sizeof c, "%s/c.txt", dir);
    ns_node_text s = {0};
    ns_err err = {{0}};
    int rc = ns_node_features_read(f, &s, &err);
    CHECK(rc == 0 && s.rows == 3 && s.dim == 2 && s.features[3] == 4.5f && s.features[4] == -100.0f,
          "features: 3 rows of 2 (%s)", err.msg);
    rc = ns_node_labels_read(l, &s, &err);
    CHECK(rc == 0 && s.nlabels == 3 && s.labels[1] == -1 && s.max_label == 1, "labels, -1 unlabelled");
    rc = ns_node_split_read(sp, &s, &err);
    CHECK(rc == 0 && s.nsplit == 3 && s.split[0] == NS_SPLIT_TRAIN && s.split[1] == -1 && s.split[2] == NS_SPLIT_TEST,
          "split words");
    rc = ns_class_names_read(c, &s, &err);
    CHECK(rc == 0 && s.nnames == 2 && strcmp(s.names[0], "cat") == 0 && strcmp(s.names[1], "# dog") == 0,
          "class names trimmed, blank lines skipped, # kept (%s)", err.msg);
    ns_node_text_free(&s);
    write_file("l.txt", "0\n-2\n");
    rc = ns_node_labels_read(l, &s, &err);
    CHECK(rc == -1 && strstr(err.msg, "l.txt:2: label -2 out of range"), "a label below -1: %s", err.msg);
    ns_node_text_free(&s);
    write_file("f.txt", "1 2\n3\n");
    rc = ns_node_features_read(f, &s, &err);
    CHECK(rc == -1 && strstr(err.msg, "f.txt:2: 1 values, expected 2 as on line 1"), "a ragged row: %s", err.msg);
    ns_node_text_free(&s);
    const char *names[] = {"f.txt", "l.txt", "s.txt", "c.txt"};
    char path[128];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void) {
    test_edges();
    test_cora();
    test_side_files();
    return check_done();
}
