// spec_check.h: helpers of the spec tests (test_spec.c, test_spec_errors.c):
// read a file whole (read_text), parse a string into a fresh model (parse),
// write a model's spec to a string (write_text), compare two resolved graphs
// node by node (same_graph), the round trip write / parse / compare / write
// again (check_round_trip), and a forward pass of 2 zero inputs
// (check_forward). Static inline functions: include it in one file of a test
// program. Run from the repository root (tests/run.sh does).
#ifndef NS_TEST_SPEC_CHECK_H
#define NS_TEST_SPEC_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nn/engine.h"
#include "nn/spec.h"

static inline char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(buf, cap);
            if (!grown) break;
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

static inline int parse(ns_model *m, const char *text, ns_err *err) {
    ns_model_init(m);
    return ns_spec_parse(m, text, strlen(text), NULL, err);
}

// The spec of a model as a string (caller frees), or NULL with err set.
static inline char *write_text(const ns_model *m, ns_err *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        ns_errf(err, "open_memstream failed");
        return NULL;
    }
    int rc = ns_spec_write(m, f, err);
    fclose(f);
    if (rc < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static inline const char *shape_of(const ns_node *n) {
    static char buf[4][64];
    static int k;
    k = (k + 1) % 4;
    ns_shape_format(buf[k], sizeof buf[k], n->ndim, n->shape);
    return buf[k];
}

// Describes the first difference between two resolved graphs into why.
static inline int same_graph(const ns_model *a, const ns_model *b, char *why, size_t cap) {
    if (a->nnodes != b->nnodes) return snprintf(why, cap, "%d vs %d nodes", a->nnodes, b->nnodes), 0;
    if (a->output != b->output) return snprintf(why, cap, "output %d vs %d", a->output, b->output), 0;
    for (int i = 0; i < a->nnodes; i++) {
        const ns_node *x = &a->nodes[i], *y = &b->nodes[i];
        if (strcmp(x->name, y->name)) return snprintf(why, cap, "node %d: %s vs %s", i, x->name, y->name), 0;
        if (x->op != y->op) return snprintf(why, cap, "%s: op %d vs %d", x->name, x->op, y->op), 0;
        if (x->ninputs != y->ninputs) return snprintf(why, cap, "%s: inputs", x->name), 0;
        for (int k = 0; k < x->ninputs; k++)
            if (x->inputs[k] != y->inputs[k]) return snprintf(why, cap, "%s: input %d", x->name, k), 0;
        for (int k = 0; k < NS_MAX_ATTRS; k++) {
            if (x->iattr[k] != y->iattr[k])
                return snprintf(why, cap, "%s: iattr %d: %" PRId64 " vs %" PRId64, x->name, k, x->iattr[k],
                                y->iattr[k]), 0;
            if (x->fattr[k] != y->fattr[k])
                return snprintf(why, cap, "%s: fattr %d: %.17g vs %.17g", x->name, k, x->fattr[k], y->fattr[k]), 0;
        }
        if (x->ndim != y->ndim || memcmp(x->shape, y->shape, sizeof x->shape[0] * (size_t)x->ndim))
            return snprintf(why, cap, "%s: shape %s vs %s", x->name, shape_of(x), shape_of(y)), 0;
        for (int p = 0; p < NS_MAX_PARAMS; p++) {
            int ta = x->params[p], tb = y->params[p];
            if ((ta < 0) != (tb < 0)) return snprintf(why, cap, "%s: param slot %d", x->name, p), 0;
            if (ta >= 0 && (strcmp(a->tensors[ta].name, b->tensors[tb].name) ||
                            a->tensors[ta].t.numel != b->tensors[tb].t.numel ||
                            a->tensors[ta].trainable != b->tensors[tb].trainable))
                return snprintf(why, cap, "%s: param %.60s", x->name, a->tensors[ta].name), 0;
        }
    }
    for (int t = 0; t < 2; t++)
        if (ns_model_param_count(a, t) != ns_model_param_count(b, t))
            return snprintf(why, cap, "param counts differ"), 0;
    return 1;
}

// write, parse, compare, write again and compare the texts.
static inline void check_round_trip(const char *what, const ns_model *m) {
    ns_err err = {""};
    char *text = write_text(m, &err);
    CHECK(text != NULL, "%s: writes as a spec%s%s", what, text ? "" : ": ", text ? "" : err.msg);
    if (!text) return;
    ns_model back;
    int rc = parse(&back, text, &err);
    CHECK(rc == 0, "%s: the written spec parses%s%s", what, rc ? ": " : "", rc ? err.msg : "");
    if (rc == 0) {
        char why[256] = "";
        CHECK(same_graph(m, &back, why, sizeof why), "%s: same %d nodes, ops, inputs, attributes, shapes%s%s",
              what, m->nnodes, why[0] ? ": " : "", why);
        char *again = write_text(&back, &err);
        CHECK(again && strcmp(again, text) == 0, "%s: writing the parsed graph gives the same %zu bytes", what,
              strlen(text));
        free(again);
    }
    ns_model_free(&back);
    free(text);
}

// Runs a batch of 2 zero inputs (ids 0 for an embedding) through the model.
static inline void check_forward(const char *what, ns_model *m, int64_t out_numel) {
    ns_model_init_params(m, 1);
    ns_engine e;
    ns_err err = {""};
    int rc = ns_engine_init(&e, m, 2, 0, &err);
    CHECK(rc == 0, "%s: engine accepts the graph%s%s", what, rc ? ": " : "", rc ? err.msg : "");
    if (rc) return;
    float *x = calloc((size_t)(2 * m->nodes[0].numel), sizeof *x);
    const float *y = x ? ns_engine_forward(&e, x, 2, 0, &err) : NULL;
    int finite = y != NULL;
    for (int64_t i = 0; y && i < 2 * out_numel; i++) finite &= isfinite(y[i]) != 0;
    CHECK(y && ns_engine_output_numel(&e) == out_numel && finite, "%s: forward gives 2 x %" PRId64 " finite values%s%s",
          what, out_numel, y ? "" : ": ", y ? "" : err.msg);
    free(x);
    ns_engine_free(&e);
}

#endif
