// probe.c: a model read at one layer (probe.h): the fingerprint, the layer
// and its pooling, features from the engine's activations, and the class
// logit's gradient at the layer (TCAV) by one backward pass per batch.
//
// Shapes: act[node] (N, C, S) with S = H*W (S = 1 for a vector),
// features (N, D), logits (N, K), grad[node] like act[node].
#include "nn/probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const pool_names[NS_PROBE_POOL_COUNT] = {"none", "avg", "flatten"};

const char *ns_probe_pool_name(ns_probe_pool p) {
    return (unsigned)p < NS_PROBE_POOL_COUNT ? pool_names[p] : "?";
}

int ns_probe_pool_from_name(const char *name) {
    for (int i = 0; i < NS_PROBE_POOL_COUNT; i++)
        if (strcmp(name, pool_names[i]) == 0) return i;
    return -1;
}

// ----------------------------------------------------------------------------
// fingerprint: FNV-1a 64

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s, strlen(s) + 1); }
static uint64_t fnv_i64(uint64_t h, int64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    return fnv(h, b, 8);
}

void ns_model_fingerprint(const ns_model *m, char *out) {
    uint64_t h = FNV_OFFSET;
    h = fnv_i64(h, m->nnodes);
    h = fnv_i64(h, m->output);
    for (int i = 0; i < m->nnodes; i++) {
        const ns_node *n = &m->nodes[i];
        h = fnv_str(h, n->name);
        h = fnv_str(h, ns_ops[n->op].name);
        for (int k = 0; k < n->ninputs; k++) h = fnv_i64(h, n->inputs[k]);
        for (int k = 0; k < n->ndim; k++) h = fnv_i64(h, n->shape[k]);
        for (int k = 0; k < NS_MAX_ATTRS && ns_ops[n->op].iattr[k]; k++) h = fnv_i64(h, n->iattr[k]);
        for (int k = 0; k < NS_MAX_ATTRS && ns_ops[n->op].fattr[k]; k++) {
            // the value's text, not its bytes, so -0.0 and 0.0 agree
            char buf[40];
            snprintf(buf, sizeof buf, "%.17g", n->fattr[k]);
            h = fnv_str(h, buf);
        }
    }
    for (int t = 0; t < m->ntensors; t++) {
        const ns_named_tensor *nt = &m->tensors[t];
        if (!nt->used) continue;
        h = fnv_str(h, nt->name);
        for (int k = 0; k < nt->t.ndim; k++) h = fnv_i64(h, nt->t.shape[k]);
        // always f32 once loaded; little-endian on every machine netsmith runs on
        h = fnv(h, nt->t.data, (size_t)nt->t.numel * sizeof(float));
    }
    snprintf(out, NS_FINGERPRINT_LEN + 1, "%016llx", (unsigned long long)h);
}

// ----------------------------------------------------------------------------
// the layer

int ns_probe_default_node(const ns_model *m, ns_err *err) {
    const ns_node *out = &m->nodes[m->output];
    if (out->op != NS_OP_LINEAR)
        return ns_errf(err, "the output node %s is a %s, not a linear layer: name a layer with --layer",
                       out->name, ns_ops[out->op].name);
    return out->inputs[0];
}

int ns_probe_init(ns_probe *p, const ns_model *m, const char *layer, int flatten, ns_err *err) {
    memset(p, 0, sizeof *p);
    int node;
    if (layer) {
        node = ns_model_find_node(m, layer);
        if (node < 0) return ns_errf(err, "no node named %s in the model", layer);
        if (node > m->output)
            return ns_errf(err, "node %s comes after the model's output", layer);
    } else if ((node = ns_probe_default_node(m, err)) < 0) {
        return -1;
    }
    const ns_node *n = &m->nodes[node];
    p->node = node;
    if (n->ndim == 3) {
        p->channels = n->shape[0];
        p->spatial = n->shape[1] * n->shape[2];
        p->pool = flatten ? NS_PROBE_FLATTEN : NS_PROBE_AVG;
        p->dim = flatten ? n->numel : p->channels;
    } else {
        p->channels = n->numel;
        p->spatial = 1;
        p->pool = NS_PROBE_NONE;
        p->dim = n->numel;
    }
    // The head applies when the features are exactly what the final linear
    // layer reads: its input itself, or a global average pool (flatten) of
    // the node that the same pooling (flattening) here reproduces.
    p->head = -1;
    const ns_node *o = &m->nodes[m->output];
    if (o->op == NS_OP_LINEAR) {
        int src = o->inputs[0];
        const ns_node *s = &m->nodes[src];
        if (src == node)
            p->head = m->output;
        else if (s->inputs[0] == node && ((s->op == NS_OP_GLOBAL_AVGPOOL && p->pool == NS_PROBE_AVG) ||
                                          (s->op == NS_OP_FLATTEN && p->pool == NS_PROBE_FLATTEN)))
            p->head = m->output;
    }
    return 0;
}

void ns_probe_features(const ns_probe *p, const ns_engine *e, int64_t n, float *out) {
    const float *a = e->act[p->node];
    const int64_t numel = p->channels * p->spatial;
    if (p->pool != NS_PROBE_AVG) {
        memcpy(out, a, (size_t)(n * numel) * sizeof *out);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < p->channels; c++) {
            const float *s = a + i * numel + c * p->spatial;
            double sum = 0;
            for (int64_t j = 0; j < p->spatial; j++) sum += s[j];
            out[i * p->dim + c] = (float)(sum / (double)p->spatial);
        }
}

const float *ns_probe_head_weight(const ns_probe *p, const ns_model *m, int64_t *k) {
    if (p->head < 0) return NULL;
    const ns_node *h = &m->nodes[p->head];
    int t = h->params[0];
    if (t < 0) return NULL;
    if (k) *k = h->shape[0];
    return m->tensors[t].t.data;
}

const float *ns_probe_head_bias(const ns_probe *p, const ns_model *m) {
    if (p->head < 0) return NULL;
    int t = m->nodes[p->head].params[1];
    return t < 0 ? NULL : m->tensors[t].t.data;
}

// ----------------------------------------------------------------------------
// gradients at the probed layer

int ns_probe_gradients(const ns_probe *p, ns_engine *e, const float *x, int64_t n,
                       const int32_t *cls, float *out, ns_err *err) {
    if (!e->with_grads || e->fused)
        return ns_errf(err, "feature gradients need an engine with gradients, not fused");
    const int64_t k = ns_engine_output_numel(e);
    for (int64_t i = 0; i < n; i++)
        if (cls[i] < 0 || cls[i] >= k)
            return ns_errf(err, "class %d outside the model's %lld classes", cls[i], (long long)k);
    if (p->node == 0) e->want_input_grad = 1;
    if (!ns_engine_forward(e, x, n, 0, err)) return -1;
    float *dout = calloc((size_t)(n * k), sizeof *dout);
    if (!dout) return ns_errf(err, "out of memory (%lld x %lld)", (long long)n, (long long)k);
    for (int64_t i = 0; i < n; i++) dout[i * k + cls[i]] = 1.0f;
    ns_engine_backward(e, dout);
    free(dout);
    const int64_t numel = p->channels * p->spatial;
    const float *g = e->grad[p->node];
    if (p->pool != NS_PROBE_AVG) {
        memcpy(out, g, (size_t)(n * numel) * sizeof *out);
        return 0;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < p->channels; c++) {
            const float *gc = g + i * numel + c * p->spatial;
            double s = 0;
            for (int64_t j = 0; j < p->spatial; j++) s += gc[j];
            out[i * p->dim + c] = (float)s;
        }
    return 0;
}
