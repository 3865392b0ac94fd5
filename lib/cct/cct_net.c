// cct_net.c: a CCT-Net comparison net (cct.h): building the default backbone
// and the head, writing and loading the stream, and running the twin
// backbone and the head forward and backward through the engine.
//
// Shapes: B pairs, E embedding width, P per-image input size, W head input
// width (E for G, 2E for D).
#include "cct/cct.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nn/arch.h"
#include "nn/spec.h"
#include "stream/tns.h"

const char *ns_cct_role_name(ns_cct_role role) { return role == NS_CCT_G ? "G" : "D"; }

// Appends printf-formatted text to a fixed buffer (spec texts are short).
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) NS_PRINTF(4, 5);
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k > 0) *len = *len + (size_t)k < cap ? *len + (size_t)k : cap - 1;
}

int ns_cct_default_backbone(ns_model *m, int c, int h, int w, double width, int64_t embed,
                            uint64_t seed, ns_err *err) {
    if (embed < 1 || embed > 65536) return ns_errf(err, "embedding width %lld is not in 1..65536", (long long)embed);
    if (!(width > 0) || width > 64) return ns_errf(err, "width %g is not in (0, 64]", width);
    int c1 = (int)lround(16 * width), c2 = (int)lround(32 * width);
    if (c1 < 1) c1 = 1;
    if (c2 < 1) c2 = 1;
    char spec[1024];
    size_t n = 0;
    append(spec, sizeof spec, &n, "[input]\nshape = %dx%dx%d\n", c, h, w);
    append(spec, sizeof spec, &n, "[conv2d conv1]\nout = %d\nkernel = 3\npad = 1\nbias = 0\n", c1);
    append(spec, sizeof spec, &n, "[batchnorm bn1]\n[relu relu1]\n[maxpool pool1]\nkernel = 2\n");
    append(spec, sizeof spec, &n, "[conv2d conv2]\nout = %d\nkernel = 3\npad = 1\nbias = 0\n", c2);
    append(spec, sizeof spec, &n, "[batchnorm bn2]\n[relu relu2]\n[maxpool pool2]\nkernel = 2\n");
    append(spec, sizeof spec, &n, "[flatten]\n[linear embed]\nout = %lld\n", (long long)embed);
    ns_model_init(m);
    if (ns_spec_parse(m, spec, n, "cct backbone", err) < 0) return -1;
    snprintf(m->arch, sizeof m->arch, "cct-cnn --width %g --embed %lld", width, (long long)embed);
    ns_model_init_params(m, seed);
    return 0;
}

int ns_cct_vit_backbone(ns_model *m, int c, int h, int w, double width, int depth, int patch, int heads,
                        int cross_heads, int64_t embed, uint64_t seed, ns_err *err) {
    if (embed < 1 || embed > 65536) return ns_errf(err, "embedding width %lld is not in 1..65536", (long long)embed);
    ns_arch_opts o = {.in_c = c, .in_h = h, .in_w = w, .classes = (int)embed, .width = width, .depth = depth,
                      .patch = patch, .heads = heads};
    ns_model_init(m);
    int rc = ns_arch_build(m, "vit", &o, err);
    for (int i = 0; rc == 0 && i < m->nnodes; i++)
        if (m->nodes[i].op == NS_OP_ATTENTION)
            rc = ns_node_set_iattr(&m->nodes[i], "cross_heads", cross_heads, err);
    if (rc == 0) rc = ns_model_resolve(m, 1, err); // checks cross_heads against the heads
    if (rc < 0) { // nothing is left to the caller
        ns_model_free(m);
        return -1;
    }
    snprintf(m->arch, sizeof m->arch, "cct-vit --width %g --depth %d --patch %d --heads %d --cross-heads %d --embed %lld",
             width, depth ? depth : 4, patch ? patch : 7, heads ? heads : 4, cross_heads, (long long)embed);
    ns_model_init_params(m, seed);
    return 0;
}

int ns_cct_backbone_is_twin(const ns_model *m) {
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].op == NS_OP_ATTENTION && ns_node_iattr(&m->nodes[i], "cross_heads") > 0) return 1;
    return 0;
}

static int build_head(ns_cct_net *net, uint64_t seed, ns_err *err) {
    char spec[2048];
    size_t n = 0;
    int64_t in_w = net->role == NS_CCT_G ? net->embed : 2 * net->embed;
    append(spec, sizeof spec, &n, "[input]\nshape = %lld\n", (long long)in_w);
    for (int i = 0; i < net->nhidden; i++) {
        append(spec, sizeof spec, &n, "[linear head.fc%d]\nout = %lld\n", i + 1, (long long)net->hidden[i]);
        append(spec, sizeof spec, &n, "[leaky_relu head.act%d]\nslope = %g\n", i + 1, NS_CCT_SLOPE);
    }
    append(spec, sizeof spec, &n, "[linear head.out]\nout = 1\n");
    ns_model_init(&net->head);
    if (ns_spec_parse(&net->head, spec, n, "cct head", err) < 0) return -1;
    ns_model_init_params(&net->head, seed ^ 0x6363742d68656164ull);
    return 0;
}

void ns_cct_free(ns_cct_net *net) {
    ns_model_free(&net->backbone);
    ns_model_free(&net->head);
    ns_strings_free(net->source_classes, net->nsource);
    memset(net, 0, sizeof *net);
}

static int check_backbone(const ns_model *bb, ns_err *err) {
    const ns_node *in = &bb->nodes[0], *out = &bb->nodes[bb->output];
    if (in->ndim != 3) return ns_errf(err, "the backbone must take images (C x H x W), not %d-D inputs", in->ndim);
    if (out->ndim != 1)
        return ns_errf(err, "the backbone's output (node %s) must be a vector of features, not %d-D", out->name, out->ndim);
    return 0;
}

int ns_cct_create(ns_cct_net *net, ns_cct_role role, ns_model *backbone, const int64_t *hidden,
                  int nhidden, uint64_t seed, ns_err *err) {
    memset(net, 0, sizeof *net);
    ns_model_init(&net->backbone);
    ns_model_init(&net->head);
    if (nhidden < 0 || nhidden > NS_CCT_MAX_HIDDEN)
        return ns_errf(err, "%d hidden layers in the head; at most %d", nhidden, NS_CCT_MAX_HIDDEN);
    for (int i = 0; i < nhidden; i++)
        if (hidden[i] < 1 || hidden[i] > 65536)
            return ns_errf(err, "hidden width %lld is not in 1..65536", (long long)hidden[i]);
    if (check_backbone(backbone, err) < 0) return -1;
    net->role = role;
    net->backbone = *backbone;
    ns_model_init(backbone);
    // The backbone's output is features, not classes: names would not fit it.
    ns_strings_free(net->backbone.labels, net->backbone.nlabels);
    net->backbone.labels = NULL;
    net->backbone.nlabels = 0;
    net->embed = net->backbone.nodes[net->backbone.output].numel;
    net->nhidden = nhidden;
    for (int i = 0; i < nhidden; i++) net->hidden[i] = hidden[i];
    if (build_head(net, seed, err) < 0) {
        ns_cct_free(net);
        return -1;
    }
    return 0;
}

int ns_cct_set_sources(ns_cct_net *net, char *const *names, size_t n, ns_err *err) {
    ns_strings_free(net->source_classes, net->nsource);
    net->source_classes = NULL;
    net->nsource = 0;
    if (!names || n == 0) return 0;
    char **copy = calloc(n, sizeof *copy);
    if (!copy) return ns_errf(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(copy[i] = strdup(names[i]))) {
            ns_strings_free(copy, i);
            return ns_errf(err, "out of memory");
        }
    net->source_classes = copy;
    net->nsource = n;
    return 0;
}

int ns_cct_write(const ns_cct_net *net, ns_writer *w, const ns_map *extra_meta, ns_err *err) {
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "cct.role", ns_cct_role_name(net->role));
    ns_map_i64(&meta, "cct.embed", net->embed);
    ns_map_i64s(&meta, "cct.hidden", net->hidden, (size_t)net->nhidden);
    if (net->source_classes)
        ns_map_strs(&meta, "cct.source_classes", (const char *const *)net->source_classes, net->nsource);
    if (extra_meta) { // an ns_map is its key/value pairs packed one after another
        msgpack_sbuffer_write(&meta.buf, extra_meta->buf.data, extra_meta->buf.size);
        meta.count += extra_meta->count;
    }
    int rc = ns_model_write(&net->backbone, w, &meta, 0, err);
    ns_map_free(&meta);
    for (int t = 0; rc == 0 && t < net->head.ntensors; t++)
        rc = ns_write_tensor(w, net->head.tensors[t].name, &net->head.tensors[t].t, NULL, err);
    return rc;
}

// --- loading -------------------------------------------------------------------

static int read_meta(ns_cct_net *net, const char *path, char *role, size_t role_cap, ns_err *err) {
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    ns_record rec;
    int got, rc = 0;
    while (rc == 0 && (got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") != 0 || !rec.meta) continue;
        if (ns_map_get(rec.meta, "cct.role")) {
            int64_t hid[NS_CCT_MAX_HIDDEN];
            size_t k = 0;
            if (ns_obj_str(rec.meta, "cct.role", role, role_cap, err) < 0 ||
                ns_obj_i64(rec.meta, "cct.embed", &net->embed, err) < 0 ||
                ns_obj_i64s(rec.meta, "cct.hidden", hid, NS_CCT_MAX_HIDDEN, &k, err) < 0) {
                rc = -1;
                break;
            }
            if (k > NS_CCT_MAX_HIDDEN) {
                rc = ns_errf(err, "cct.hidden has %zu widths, at most %d", k, NS_CCT_MAX_HIDDEN);
                break;
            }
            net->nhidden = (int)k;
            for (size_t i = 0; i < k; i++) net->hidden[i] = hid[i];
        }
        if (ns_map_get(rec.meta, "cct.source_classes")) {
            ns_strings_free(net->source_classes, net->nsource);
            net->source_classes = NULL;
            net->nsource = 0;
            if (ns_obj_strs(rec.meta, "cct.source_classes", &net->source_classes, &net->nsource, err) < 0) rc = -1;
        }
    }
    ns_reader_close(r);
    return rc < 0 || got < 0 ? -1 : 0;
}

int ns_cct_load(ns_cct_net *net, const char *path, int want_role, ns_err *err) {
    memset(net, 0, sizeof *net);
    ns_model_init(&net->backbone);
    ns_model_init(&net->head);
    if (strcmp(path, "-") == 0) return ns_errf(err, "a CCT-Net model must be a file, not standard input");
    char role[8] = "";
    int rc = read_meta(net, path, role, sizeof role, err);
    if (rc == 0 && !role[0]) rc = ns_errf(err, "not a CCT-Net model (no cct.role in its meta)");
    if (rc == 0 && strcmp(role, "G") != 0 && strcmp(role, "D") != 0)
        rc = ns_errf(err, "cct.role is '%s', not G or D", role);
    if (rc == 0) net->role = role[0] == 'G' ? NS_CCT_G : NS_CCT_D;
    if (rc == 0 && want_role >= 0 && (int)net->role != want_role)
        rc = ns_errf(err, "a %s model where %s was expected", role, ns_cct_role_name((ns_cct_role)want_role));
    for (int i = 0; rc == 0 && i < net->nhidden; i++)
        if (net->hidden[i] < 1 || net->hidden[i] > 65536)
            rc = ns_errf(err, "cct.hidden width %lld is not in 1..65536", (long long)net->hidden[i]);
    if (rc == 0 && ns_model_load(&net->backbone, path, err) < 0) rc = -1;
    if (rc == 0) rc = check_backbone(&net->backbone, err);
    int64_t out = rc == 0 ? net->backbone.nodes[net->backbone.output].numel : 0;
    if (rc == 0 && out != net->embed)
        rc = ns_errf(err, "the head takes %lld features but the backbone gives %lld", (long long)net->embed,
                     (long long)out);
    if (rc == 0) rc = build_head(net, 0, err);
    // The head's tensors are the backbone model's unused ones of the same names.
    for (int t = 0; rc == 0 && t < net->head.ntensors; t++) {
        ns_named_tensor *h = &net->head.tensors[t];
        int s = ns_model_find_tensor(&net->backbone, h->name);
        if (s < 0) {
            rc = ns_errf(err, "no head tensor %s", h->name);
            break;
        }
        const ns_tensor *src = &net->backbone.tensors[s].t;
        if (src->ndim != h->t.ndim || memcmp(src->shape, h->t.shape, (size_t)src->ndim * sizeof *src->shape) != 0) {
            char got[64], want[64];
            ns_shape_format(got, sizeof got, src->ndim, src->shape);
            ns_shape_format(want, sizeof want, h->t.ndim, h->t.shape);
            rc = ns_errf(err, "head tensor %s is %s, but the head needs %s", h->name, got, want);
            break;
        }
        const float *v = src->data;
        for (int64_t i = 0; i < src->numel && rc == 0; i++)
            if (!isfinite(v[i])) rc = ns_errf(err, "head tensor %s has a non-finite value at %lld", h->name, (long long)i);
        if (rc == 0) memcpy(h->t.data, v, (size_t)src->numel * sizeof(float));
    }
    if (rc < 0) {
        ns_cct_free(net);
        return ns_err_prefix(err, "%s", path);
    }
    return 0;
}

// --- running -------------------------------------------------------------------

void ns_cct_run_free(ns_cct_run *r) {
    ns_engine_free(&r->bb);
    ns_engine_free(&r->head);
    free(r->x);
    free(r->hin);
    free(r->dfeat);
    free(r->logit);
    memset(r, 0, sizeof *r);
}

int ns_cct_run_init(ns_cct_run *r, ns_cct_net *net, int64_t max_pairs, int with_grads, ns_err *err) {
    memset(r, 0, sizeof *r);
    if (max_pairs < 1) return ns_errf(err, "a batch of %lld pairs", (long long)max_pairs);
    r->net = net;
    r->max_pairs = max_pairs;
    r->P = net->backbone.nodes[0].numel;
    r->E = net->embed;
    r->in_w = net->role == NS_CCT_G ? r->E : 2 * r->E;
    if (ns_engine_init(&r->bb, &net->backbone, 2 * max_pairs, with_grads, err) < 0) return -1;
    if (ns_engine_init(&r->head, &net->head, max_pairs, with_grads, err) < 0) {
        ns_engine_free(&r->bb);
        return -1;
    }
    ns_engine_set_fused(&r->bb, 1); // only the features and the gradients are read
    r->head.want_input_grad = with_grads;
    r->x = ns_aligned_alloc((size_t)(2 * max_pairs * r->P) * sizeof(float));
    r->hin = ns_aligned_alloc((size_t)(max_pairs * r->in_w) * sizeof(float));
    r->dfeat = with_grads ? ns_aligned_alloc((size_t)(2 * max_pairs * r->E) * sizeof(float)) : NULL;
    r->logit = malloc((size_t)max_pairs * sizeof(float));
    if (!r->x || !r->hin || (with_grads && !r->dfeat) || !r->logit) {
        ns_cct_run_free(r);
        return ns_errf(err, "out of memory for %lld pairs", (long long)max_pairs);
    }
    return 0;
}

const float *ns_cct_forward(ns_cct_run *r, const float *x1, const float *x2, const float *s,
                            int64_t n, int training, ns_err *err) {
    if (n < 1 || n > r->max_pairs) {
        ns_errf(err, "a batch of %lld pairs (at most %lld)", (long long)n, (long long)r->max_pairs);
        return NULL;
    }
    if ((r->net->role == NS_CCT_D) != (s != NULL)) {
        ns_errf(err, "D needs the similarity s, G takes none");
        return NULL;
    }
    if (x1) memcpy(r->x, x1, (size_t)(n * r->P) * sizeof(float));
    if (x2) memcpy(r->x + n * r->P, x2, (size_t)(n * r->P) * sizeof(float));
    const float *f = ns_engine_forward(&r->bb, r->x, 2 * n, training, err);
    if (!f) return NULL;
    const int64_t E = r->E, W = r->in_w;
    for (int64_t i = 0; i < n; i++) {
        const float *f1 = f + i * E, *f2 = f + (n + i) * E;
        float *h = r->hin + i * W;
        for (int64_t j = 0; j < E; j++) h[j] = fabsf(f1[j] - f2[j]);
        if (s)
            for (int64_t j = 0; j < E; j++) h[E + j] = s[i];
    }
    const float *out = ns_engine_forward(&r->head, r->hin, n, training, err);
    if (!out) return NULL;
    memcpy(r->logit, out, (size_t)n * sizeof(float));
    r->n = n;
    return r->logit;
}

void ns_cct_backward(ns_cct_run *r, const float *dlogit, float *ds, int head_only) {
    const int64_t n = r->n, E = r->E, W = r->in_w;
    ns_engine_backward(&r->head, dlogit);
    const float *dh = r->head.grad[0];
    if (ds)
        for (int64_t i = 0; i < n; i++) {
            double acc = 0;
            for (int64_t j = 0; j < E; j++) acc += dh[i * W + E + j];
            ds[i] = (float)acc;
        }
    if (head_only) return;
    const float *f = r->bb.act[r->net->backbone.output];
    // d|a - b| / da = sign(a - b) (0 at a == b, as torch's abs)
    for (int64_t i = 0; i < n; i++) {
        const float *f1 = f + i * E, *f2 = f + (n + i) * E;
        float *d1 = r->dfeat + i * E, *d2 = r->dfeat + (n + i) * E;
        for (int64_t j = 0; j < E; j++) {
            float diff = f1[j] - f2[j];
            float g = diff > 0 ? dh[i * W + j] : diff < 0 ? -dh[i * W + j] : 0.0f;
            d1[j] = g;
            d2[j] = -g;
        }
    }
    ns_engine_backward(&r->bb, r->dfeat);
}

void ns_cct_zero_grad(ns_cct_run *r) {
    ns_engine_zero_grad(&r->bb);
    ns_engine_zero_grad(&r->head);
}

int ns_cct_params(ns_cct_run *r, ns_param **params, int *n, ns_err *err) {
    ns_model *ms[2] = {&r->net->backbone, &r->net->head};
    ns_engine *es[2] = {&r->bb, &r->head};
    int cap = ms[0]->ntensors + ms[1]->ntensors + 1;
    ns_param *p = calloc((size_t)cap, sizeof *p);
    if (!p) return ns_errf(err, "out of memory");
    int k = 0;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < ms[b]->ntensors; t++) {
            if (!es[b]->param_grad[t]) continue;
            ns_named_tensor *nt = &ms[b]->tensors[t];
            p[k++] = (ns_param){nt->name, nt->t.data, es[b]->param_grad[t], nt->t.numel, nt->t.ndim, nt->t.shape, 1};
        }
    *params = p;
    *n = k;
    return 0;
}
