// fuzz_model.c: libFuzzer target for the model loader (lib/nn/model_io.c,
// model.c). The input is a model stream (meta, graph record, parameters). What
// fails must say why; what loads must be usable as the tools use it: totals,
// channel groups, written and read back to the same graph, and, when small, an
// engine on a batch of 2 that runs forward (eval and training) and backward.
// Built and run by fuzz/run.sh (`make fuzz`).
#include <stdio.h>
#include <string.h>

#include "fuzz_reader.h"
#include "nn/chgroups.h"
#include "nn/engine.h"
#include "nn/model.h"

#define CHEAP 4096 // per-sample activations, parameters and multiply-adds to run the engine

// Writes m into memory and reads it back: the same nodes and output.
static void round_trip(const ns_model *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    ns_writer w;
    ns_writer_init(&w, f);
    ns_err err = {{0}};
    if (ns_model_write(m, &w, NULL, 0, &err) < 0) abort(); // what loaded can be written
    ns_writer_free(&w);
    fclose(f);
    int fd;
    ns_reader *r = fuzz_reader(buf, len, &fd);
    if (r) {
        ns_model back;
        ns_model_init(&back);
        if (ns_model_read(&back, r, &err) < 0) {
            fprintf(stderr, "fuzz_model: written model does not read back: %s\n", err.msg);
            abort();
        }
        if (back.nnodes != m->nnodes || back.output != m->output) abort();
        for (int i = 0; i < m->nnodes; i++)
            if (strcmp(back.nodes[i].name, m->nodes[i].name) || back.nodes[i].numel != m->nodes[i].numel) abort();
        ns_model_free(&back);
        ns_reader_close(r);
        close(fd);
    }
    free(buf);
}

static void run_engine(ns_model *m) {
    int64_t acts = 0;
    for (int i = 0; i < m->nnodes; i++) acts += m->nodes[i].numel;
    if (acts > CHEAP || ns_model_param_count(m, 0) > CHEAP || ns_model_macs(m) > CHEAP) return;
    ns_engine e;
    ns_err err = {{0}};
    if (ns_engine_init(&e, m, 2, 1, &err) < 0) {
        if (!err.msg[0]) abort();
        return;
    }
    int64_t nin = m->nodes[0].numel, nout = ns_engine_output_numel(&e);
    float *x = calloc((size_t)(2 * nin), sizeof *x), *dout = calloc((size_t)(2 * nout), sizeof *dout);
    if (!x || !dout) abort();
    for (int64_t i = 0; i < 2 * nin; i++) x[i] = (float)(i % 3); // valid ids for an embedding of 3 or more
    for (int64_t i = 0; i < 2 * nout; i++) dout[i] = 1.0f / (float)(i + 1);
    for (int training = 0; training <= 1; training++) {
        err.msg[0] = 0;
        if (!ns_engine_forward(&e, x, 2, training, &err)) {
            if (!err.msg[0]) abort();
            continue;
        }
        if (training) {
            ns_engine_zero_grad(&e);
            ns_engine_backward(&e, dout);
        }
    }
    free(x);
    free(dout);
    ns_engine_free(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd;
    ns_reader *r = fuzz_reader(data, size, &fd);
    if (!r) return 0;
    ns_model m;
    ns_model_init(&m);
    ns_err err = {{0}};
    int rc = ns_model_read(&m, r, &err);
    ns_reader_close(r);
    close(fd);
    if (rc < 0) {
        if (!err.msg[0]) abort(); // a failure must say why
        ns_model_free(&m);
        return 0;
    }
    if (m.output < 0 || m.output >= m.nnodes || m.nodes[0].op != NS_OP_INPUT) abort();
    if (ns_model_param_count(&m, 0) < 0 || ns_model_macs(&m) < 0) abort();
    ns_chgroups g;
    err.msg[0] = 0;
    if (ns_chgroups_build(&g, &m, &err) == 0) ns_chgroups_free(&g);
    else if (!err.msg[0]) abort();
    round_trip(&m);
    run_engine(&m);
    ns_model_free(&m);
    return 0;
}
