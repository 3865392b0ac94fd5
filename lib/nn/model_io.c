// model_io.c: models as TNS streams: a meta record, one graph record, then the
// parameter and buffer tensors (model.h, tns(5) "Models").
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"
#include "stream/streaminfo.h"

// --- writing -------------------------------------------------------------------

static void pack_str(msgpack_packer *pk, const char *s) {
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_node(msgpack_packer *pk, const ns_model *m, const ns_node *n) {
    const ns_op_info *info = &ns_ops[n->op];
    int nparams = 0, niattr = 0, nfattr = 0;
    while (nparams < NS_MAX_PARAMS && info->param[nparams]) nparams++;
    while (niattr < NS_MAX_ATTRS && info->iattr[niattr]) niattr++;
    while (nfattr < NS_MAX_ATTRS && info->fattr[nfattr]) nfattr++;
    msgpack_pack_map(pk, 5);
    pack_str(pk, "name");
    pack_str(pk, n->name);
    pack_str(pk, "op");
    pack_str(pk, info->name);
    pack_str(pk, "inputs");
    msgpack_pack_array(pk, (size_t)n->ninputs);
    for (int i = 0; i < n->ninputs; i++) pack_str(pk, m->nodes[n->inputs[i]].name);
    pack_str(pk, "params");
    msgpack_pack_array(pk, (size_t)nparams);
    for (int p = 0; p < nparams; p++) {
        if (n->params[p] < 0) msgpack_pack_nil(pk);
        else pack_str(pk, m->tensors[n->params[p]].name);
    }
    pack_str(pk, "attrs");
    msgpack_pack_map(pk, (size_t)(niattr + nfattr));
    for (int i = 0; i < niattr; i++) {
        pack_str(pk, info->iattr[i]);
        msgpack_pack_int64(pk, n->iattr[i]);
    }
    for (int i = 0; i < nfattr; i++) {
        pack_str(pk, info->fattr[i]);
        msgpack_pack_double(pk, n->fattr[i]);
    }
}

int ns_model_write(const ns_model *m, ns_writer *w, const ns_map *extra_meta, int with_unused,
                   ns_err *err) {
    ns_map meta;
    ns_map_init(&meta);
    const ns_node *in = &m->nodes[0];
    int64_t input_shape[3] = {in->iattr[0], in->iattr[1], in->iattr[2]};
    ns_map_i64s(&meta, "model.input_shape", input_shape, in->iattr[1] ? 3 : 1);
    if (m->arch[0]) ns_map_str(&meta, "model.arch", m->arch);
    ns_map_str(&meta, "model.output", m->nodes[m->output].name);
    if (m->labels) ns_map_strs(&meta, "general.labels", (const char *const *)m->labels, m->nlabels);
    if (m->nnorm) {
        ns_map_f64s(&meta, "image.mean", m->mean, (size_t)m->nnorm);
        ns_map_f64s(&meta, "image.std", m->std, (size_t)m->nnorm);
    }
    if (extra_meta) {
        msgpack_sbuffer_write(&meta.buf, extra_meta->buf.data, extra_meta->buf.size);
        meta.count += extra_meta->count;
    }
    int rc = ns_write_meta(w, "model", &meta, err);
    ns_map_free(&meta);
    if (rc < 0) return -1;

    ns_map graph;
    ns_map_init(&graph);
    msgpack_packer *pk = ns_map_key(&graph, "nodes");
    msgpack_pack_array(pk, (size_t)m->nnodes);
    for (int i = 0; i < m->nnodes; i++) pack_node(pk, m, &m->nodes[i]);
    rc = ns_write_record(w, "graph", "graph", NULL, &graph, NULL, err);
    ns_map_free(&graph);
    if (rc < 0) return -1;

    for (int i = 0; i < m->ntensors; i++) {
        if (!m->tensors[i].used && !with_unused) continue;
        if (ns_write_tensor(w, m->tensors[i].name, &m->tensors[i].t, NULL, err) < 0) return -1;
    }
    return 0;
}

// --- reading -------------------------------------------------------------------

// Parameter names listed by the graph record, bound once all tensors are read.
typedef struct param_names {
    char name[NS_MAX_PARAMS][NS_NAME_MAX + 1];
} param_names;

static int obj_str(const msgpack_object *o, char *buf, size_t cap) {
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap ||
        memchr(o->via.str.ptr, 0, o->via.str.size))
        return -1;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = 0;
    return 0;
}

static int read_attrs(ns_node *n, const msgpack_object *attrs, ns_err *err) {
    if (!attrs) return 0;
    if (attrs->type != MSGPACK_OBJECT_MAP) return ns_errf(err, "node %s: attrs is not a map", n->name);
    for (uint32_t i = 0; i < attrs->via.map.size; i++) {
        char key[64];
        const msgpack_object *v = &attrs->via.map.ptr[i].val;
        if (obj_str(&attrs->via.map.ptr[i].key, key, sizeof key) < 0)
            return ns_errf(err, "node %s: an attribute name is not a short string", n->name);
        int is_int = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER || v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
        int is_num = is_int || v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64;
        ns_err ignored;
        if (is_int && ns_node_set_iattr(n, key, v->via.i64, &ignored) == 0) continue;
        if (is_num && ns_node_set_fattr(n, key, is_int ? (double)v->via.i64 : v->via.f64, &ignored) == 0)
            continue;
        return ns_errf(err, "node %s: %s has no attribute %s of that type", n->name, ns_ops[n->op].name, key);
    }
    return 0;
}

static int read_node(ns_model *m, const msgpack_object *o, int index, param_names *pn, ns_err *err) {
    if (o->type != MSGPACK_OBJECT_MAP) return ns_errf(err, "graph: node %d is not a map", index);
    char name[NS_NODE_NAME_MAX], op_name[32];
    if (obj_str(ns_map_get(o, "name"), name, sizeof name) < 0)
        return ns_errf(err, "graph: node %d has no name (a string of at most %d bytes)", index, NS_NODE_NAME_MAX - 1);
    if (obj_str(ns_map_get(o, "op"), op_name, sizeof op_name) < 0)
        return ns_errf(err, "graph: node %s has no op", name);
    int op = ns_op_from_name(op_name);
    if (op < 0) return ns_errf(err, "graph: node %s: unknown op (%s)", name, op_name);
    int inputs[NS_MAX_INPUTS], ninputs = 0;
    const msgpack_object *ins = ns_map_get(o, "inputs");
    if (ins && ins->type != MSGPACK_OBJECT_ARRAY) return ns_errf(err, "graph: node %s: inputs is not an array", name);
    for (uint32_t i = 0; ins && i < ins->via.array.size; i++) {
        char in_name[NS_NODE_NAME_MAX];
        if (ninputs == NS_MAX_INPUTS) return ns_errf(err, "graph: node %s: more than %d inputs", name, NS_MAX_INPUTS);
        if (obj_str(&ins->via.array.ptr[i], in_name, sizeof in_name) < 0 ||
            (inputs[ninputs] = ns_model_find_node(m, in_name)) < 0)
            return ns_errf(err, "graph: node %s: input %u is not an earlier node", name, i);
        ninputs++;
    }
    int id = op == NS_OP_INPUT && m->nnodes == 0 ? ns_model_add_input(m, 1, 0, 0, err)
                                                  : ns_model_add_node(m, name, (ns_op)op, inputs, ninputs, err);
    if (id < 0) return ns_err_prefix(err, "graph");
    ns_node *n = &m->nodes[id];
    snprintf(n->name, sizeof n->name, "%s", name);
    if (read_attrs(n, ns_map_get(o, "attrs"), err) < 0) return ns_err_prefix(err, "graph");
    const msgpack_object *ps = ns_map_get(o, "params");
    memset(&pn[id], 0, sizeof pn[id]);
    if (ps && ps->type != MSGPACK_OBJECT_ARRAY) return ns_errf(err, "graph: node %s: params is not an array", name);
    for (uint32_t p = 0; ps && p < ps->via.array.size; p++) {
        if (p >= NS_MAX_PARAMS) return ns_errf(err, "graph: node %s: too many params", name);
        const msgpack_object *v = &ps->via.array.ptr[p];
        if (v->type == MSGPACK_OBJECT_NIL) continue;
        if (obj_str(v, pn[id].name[p], sizeof pn[id].name[p]) < 0)
            return ns_errf(err, "graph: node %s: param %u is not a tensor name", name, p);
    }
    return 0;
}

static int read_graph(ns_model *m, const ns_record *rec, param_names **pn, ns_err *err) {
    if (m->nnodes) return ns_errf(err, "two graph records in one model");
    const msgpack_object *nodes = ns_map_get(rec->root, "nodes");
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY || nodes->via.array.size == 0)
        return ns_errf(err, "graph record without nodes");
    *pn = calloc(nodes->via.array.size, sizeof **pn);
    if (!*pn) return ns_errf(err, "out of memory");
    for (uint32_t i = 0; i < nodes->via.array.size; i++)
        if (read_node(m, &nodes->via.array.ptr[i], (int)i, *pn, err) < 0) return -1;
    return 0;
}

static int read_meta(ns_model *m, const ns_record *rec, ns_err *err) {
    ns_stream_info info = {m->labels, m->nlabels, m->nnorm, {0}, {0}};
    memcpy(info.mean, m->mean, sizeof info.mean);
    memcpy(info.std, m->std, sizeof info.std);
    int rc = ns_stream_info_update(&info, rec, err);
    m->labels = info.labels;
    m->nlabels = info.nlabels;
    m->nnorm = info.nnorm;
    memcpy(m->mean, info.mean, sizeof m->mean);
    memcpy(m->std, info.std, sizeof m->std);
    if (rc < 0) return -1;
    return ns_obj_str(rec->meta, "model.arch", m->arch, sizeof m->arch, err) < 0 ? -1 : 0;
}

int ns_model_read(ns_model *m, ns_reader *r, ns_err *err) {
    ns_reader_require_unique_names(r, 1);
    param_names *pn = NULL;
    char output[NS_NODE_NAME_MAX] = "";
    ns_record rec;
    int got, rc = 0;
    while (rc == 0 && (got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            rc = read_meta(m, &rec, err);
            if (rc == 0 && ns_obj_str(rec.meta, "model.output", output, sizeof output, err) < 0) rc = -1;
        } else if (strcmp(rec.kind, "graph") == 0) {
            rc = read_graph(m, &rec, &pn, err);
        } else if (strcmp(rec.kind, "tensor") == 0) {
            if (m->nnodes == 0) {
                rc = ns_errf(err, "not a model: tensor %s (record %llu) comes before any graph record",
                             rec.name, (unsigned long long)rec.index);
                break;
            }
            ns_tensor t;
            if ((rc = ns_record_tensor_f32(&rec, &t, err)) < 0) break;
            int idx = ns_model_add_tensor(m, rec.name, 0, t.shape, 0, err); // t.shape: never NULL to memcpy
            if (idx < 0) { ns_tensor_free(&t); rc = -1; break; }
            ns_tensor_free(&m->tensors[idx].t);
            m->tensors[idx].t = t;
        }
    }
    if (rc == 0 && got < 0) rc = -1;
    if (rc == 0 && m->nnodes == 0) rc = ns_errf(err, "%s: no graph record: not a model", ns_reader_label(r));
    for (int i = 0; rc == 0 && i < m->nnodes; i++) {
        for (int p = 0; p < NS_MAX_PARAMS && rc == 0; p++) {
            if (!pn[i].name[p][0]) continue;
            m->nodes[i].params[p] = ns_model_find_tensor(m, pn[i].name[p]);
            if (m->nodes[i].params[p] < 0)
                rc = ns_errf(err, "node %s: missing parameter tensor %s", m->nodes[i].name, pn[i].name[p]);
        }
    }
    free(pn);
    if (rc == 0 && output[0] && (m->output = ns_model_find_node(m, output)) < 0)
        rc = ns_errf(err, "model.output names no node (%s)", output);
    if (rc == 0 && ns_model_resolve(m, 0, err) < 0) rc = -1;
    return rc;
}

int ns_model_load(ns_model *m, const char *path, ns_err *err) {
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    ns_model_init(m);
    int rc = ns_model_read(m, r, err);
    if (rc < 0) {
        const char *label = ns_reader_label(r);
        size_t n = strlen(label);
        if (strncmp(err->msg, label, n) != 0 || err->msg[n] != ':') ns_err_prefix(err, "%s", label);
        ns_model_free(m);
    }
    ns_reader_close(r);
    return rc;
}
