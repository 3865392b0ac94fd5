// fuzz_graph.c: libFuzzer target for the graph-stream reader
// (lib/graph/graphdata.c). The input is a graph stream (a meta record with
// graph.nodes, then graph.* tensors). What fails must say why; what reads must
// pass ns_graph_validate, have features as a dense array, and be written and
// read back to the same sizes. Built and run by fuzz/run.sh (`make fuzz`).
#include <stdio.h>

#include "fuzz_reader.h"
#include "graph/graphdata.h"

static void round_trip(const ns_graph *g) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    ns_writer w;
    ns_writer_init(&w, f);
    ns_err err = {{0}};
    if (ns_graph_write(&w, g, "fuzz", &err) < 0) {
        fprintf(stderr, "fuzz_graph: a graph that read cannot be written: %s\n", err.msg);
        abort();
    }
    ns_writer_free(&w);
    fclose(f);
    int fd;
    ns_reader *r = fuzz_reader(buf, len, &fd);
    if (r) {
        ns_graph back = {0};
        if (ns_graph_read(r, &back, &err) < 0) {
            fprintf(stderr, "fuzz_graph: written graph does not read back: %s\n", err.msg);
            abort();
        }
        if (back.nodes != g->nodes || back.adj.nnz != g->adj.nnz || back.classes != g->classes ||
            back.feature_dim != g->feature_dim)
            abort();
        ns_graph_free(&back);
        ns_reader_close(r);
        close(fd);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd;
    ns_reader *r = fuzz_reader(data, size, &fd);
    if (!r) return 0;
    ns_graph g = {0};
    ns_err err = {{0}};
    int rc = ns_graph_read(r, &g, &err);
    ns_reader_close(r);
    close(fd);
    if (rc < 0) {
        if (!err.msg[0]) abort(); // a failure must say why
        ns_graph_free(&g);
        return 0;
    }
    if (ns_graph_validate(&g, &err) < 0) {
        fprintf(stderr, "fuzz_graph: a graph that read fails validation: %s\n", err.msg);
        abort();
    }
    float *x = NULL;
    // dense features of a sparse graph: N * D floats; skip the huge ones
    if ((double)g.nodes * (double)g.feature_dim <= (double)(1 << 22)) {
        if (ns_graph_dense_features(&g, &x, &err) < 0 && !err.msg[0]) abort();
        free(x);
    }
    round_trip(&g);
    ns_graph_free(&g);
    return 0;
}
