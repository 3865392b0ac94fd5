// model_io.c: models as TNS streams: a meta record, one graph record, then the
// parameter and buffer tensors (model.h, tns(5) "Models"). The reader trusts
// nothing: node and tensor names (ns_name_ok), attributes (ns_node_check_attrs),
// params lists against the op's slots, parts, model.input_shape and the count
// of general.labels are checked, and names are found through hash indexes so
// that reading is linear in the size of the graph.
#include <stdint.h>
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

// Node and tensor names to indices: open addressing on FNV-1a, so that a graph
// of N nodes reads in O(N) (a 50,000-node chain took minutes with linear
// searches). The names live in m; slots hold index + 1, 0 when empty.
typedef struct name_index {
    int *slot;
    size_t mask;
    int count, of_tensors;
} name_index;

static const char *indexed_name(const ns_model *m, const name_index *ix, int i) {
    return ix->of_tensors ? m->tensors[i].name : m->nodes[i].name;
}

static size_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

static int index_find(const ns_model *m, const name_index *ix, const char *name) {
    if (!ix->slot) return -1;
    for (size_t k = name_hash(name) & ix->mask;; k = (k + 1) & ix->mask) {
        int v = ix->slot[k];
        if (!v) return -1;
        if (strcmp(indexed_name(m, ix, v - 1), name) == 0) return v - 1;
    }
}

static void index_put(const ns_model *m, name_index *ix, int i) {
    size_t k = name_hash(indexed_name(m, ix, i)) & ix->mask;
    while (ix->slot[k]) k = (k + 1) & ix->mask;
    ix->slot[k] = i + 1;
}

// Adds entry i (its name not yet in the index); keeps the table half empty.
static int index_add(const ns_model *m, name_index *ix, int i, ns_err *err) {
    if (!ix->slot || (size_t)(ix->count + 1) * 2 > ix->mask + 1) {
        size_t cap = ix->slot ? 2 * (ix->mask + 1) : 64;
        int *grown = calloc(cap, sizeof *grown), *old = ix->slot;
        if (!grown) return ns_errf(err, "out of memory");
        size_t old_cap = old ? ix->mask + 1 : 0;
        ix->slot = grown;
        ix->mask = cap - 1;
        for (size_t k = 0; k < old_cap; k++)
            if (old[k]) index_put(m, ix, old[k] - 1);
        free(old);
    }
    index_put(m, ix, i);
    ix->count++;
    return 0;
}

// Parameter names listed by the graph record, bound once all tensors are read.
typedef struct param_names {
    char name[NS_MAX_PARAMS][NS_NAME_MAX + 1];
} param_names;

typedef struct model_reader {
    ns_model *m;
    param_names *pn; // one per node
    name_index nodes, tensors;
} model_reader;

static int obj_str(const msgpack_object *o, char *buf, size_t cap) {
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap ||
        memchr(o->via.str.ptr, 0, o->via.str.size))
        return -1;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = 0;
    return 0;
}

// A string object as a quoted name for a message, whatever its bytes.
#define QUOTED_MAX 40
static const char *quote_obj(char *buf, const msgpack_object *o) {
    if (!o || o->type != MSGPACK_OBJECT_STR) return strcpy(buf, "(not a string)");
    return ns_quote_bytes(buf, QUOTED_MAX, o->via.str.ptr, o->via.str.size);
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
        // above INT64_MAX: kept out of range, so that the check refuses it
        int64_t iv = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 > INT64_MAX ? INT64_MAX : v->via.i64;
        double fv = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)v->via.u64 : is_int ? (double)v->via.i64 : v->via.f64;
        ns_err ignored;
        if (is_int && ns_node_set_iattr(n, key, iv, &ignored) == 0) continue;
        if (is_num && ns_node_set_fattr(n, key, fv, &ignored) == 0) continue;
        char q[4 * QUOTED_MAX + 4];
        return ns_errf(err, "node %s: %s has no attribute '%s' of that type", n->name, ns_ops[n->op].name,
                       ns_quote_bytes(q, QUOTED_MAX, key, strlen(key)));
    }
    return 0;
}

// The params list: one entry per slot of the op, a tensor name where the node
// uses the slot, nil where it does not (a bias with bias = 0); trailing nils
// may be left out. Names follow the node-name alphabet (ns_name_ok).
static int read_params(model_reader *rd, ns_node *n, int id, const msgpack_object *ps, ns_err *err) {
    const ns_op_info *info = &ns_ops[n->op];
    int slots = 0;
    while (slots < NS_MAX_PARAMS && info->param[slots]) slots++;
    uint32_t given = ps ? ps->via.array.size : 0;
    if (ps && ps->type != MSGPACK_OBJECT_ARRAY) return ns_errf(err, "node %s: params is not an array", n->name);
    if (given > (uint32_t)slots)
        return ns_errf(err, "node %s: params lists %u tensors, %s has %d slot%s", n->name, given, info->name,
                       slots, slots == 1 ? "" : "s");
    param_names *pn = &rd->pn[id];
    memset(pn, 0, sizeof *pn);
    for (int p = 0; p < slots; p++) {
        const msgpack_object *v = (uint32_t)p < given ? &ps->via.array.ptr[p] : NULL;
        int uses = ns_node_uses_param(n, p);
        char q[4 * QUOTED_MAX + 4];
        if (v && v->type != MSGPACK_OBJECT_NIL) {
            if (obj_str(v, pn->name[p], sizeof pn->name[p]) < 0 ||
                !ns_name_ok(pn->name[p], strlen(pn->name[p]), NS_NAME_MAX))
                return ns_errf(err, "node %s: params entry %s is not a tensor name ('%s')", n->name,
                               info->param[p], quote_obj(q, v));
            if (!uses)
                return ns_errf(err, "node %s: params gives %s as the %s, but the node has bias = 0", n->name,
                               pn->name[p], info->param[p]);
            for (int k = 0; k < p; k++)
                if (strcmp(pn->name[k], pn->name[p]) == 0)
                    return ns_errf(err, "node %s: params gives %s as both %s and %s", n->name, pn->name[p],
                                   info->param[k], info->param[p]);
        } else if (uses) {
            return ns_errf(err, "node %s: params has no %s tensor (%s needs %s%s%s%s%s%s%s)", n->name,
                           info->param[p], info->name, info->param[0], slots > 1 ? ", " : "",
                           slots > 1 ? info->param[1] : "", slots > 2 ? ", " : "", slots > 2 ? info->param[2] : "",
                           slots > 3 ? ", " : "", slots > 3 ? info->param[3] : "");
        }
    }
    return 0;
}

static int read_node(model_reader *rd, const msgpack_object *o, int index, ns_err *err) {
    ns_model *m = rd->m;
    char q[4 * QUOTED_MAX + 4];
    if (o->type != MSGPACK_OBJECT_MAP) return ns_errf(err, "graph: node %d is not a map", index);
    char name[NS_NODE_NAME_MAX], op_name[32];
    const msgpack_object *name_obj = ns_map_get(o, "name");
    if (obj_str(name_obj, name, sizeof name) < 0 || !ns_name_ok(name, strlen(name), NS_NODE_NAME_MAX - 1))
        return ns_errf(err, "graph: node %d: bad node name '%s' (1 to %d bytes: a letter or '_', then "
                       "letters, digits, '_', '.' or '-')", index, quote_obj(q, name_obj), NS_NODE_NAME_MAX - 1);
    if (index_find(m, &rd->nodes, name) >= 0) return ns_errf(err, "graph: duplicate node name (%s)", name);
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
            (inputs[ninputs] = index_find(m, &rd->nodes, in_name)) < 0)
            return ns_errf(err, "graph: node %s: input %u ('%s') is not an earlier node", name, i,
                           quote_obj(q, &ins->via.array.ptr[i]));
        ninputs++;
    }
    int id = op == NS_OP_INPUT && m->nnodes == 0 ? ns_model_add_input(m, 1, 0, 0, err)
                                                  : ns_model_append_node(m, name, (ns_op)op, inputs, ninputs, err);
    if (id < 0) return ns_err_prefix(err, "graph");
    ns_node *n = &m->nodes[id];
    snprintf(n->name, sizeof n->name, "%s", name);
    if (index_add(m, &rd->nodes, id, err) < 0) return -1;
    if (read_attrs(n, ns_map_get(o, "attrs"), err) < 0 || ns_node_check_attrs(n, err) < 0 ||
        read_params(rd, n, id, ns_map_get(o, "params"), err) < 0)
        return ns_err_prefix(err, "graph");
    return 0;
}

static int read_graph(model_reader *rd, const ns_record *rec, ns_err *err) {
    if (rd->m->nnodes) return ns_errf(err, "two graph records in one model");
    const msgpack_object *nodes = ns_map_get(rec->root, "nodes");
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY || nodes->via.array.size == 0)
        return ns_errf(err, "graph record without nodes");
    if (nodes->via.array.size > INT32_MAX / 2) return ns_errf(err, "graph record with too many nodes");
    rd->pn = calloc(nodes->via.array.size, sizeof *rd->pn);
    if (!rd->pn) return ns_errf(err, "out of memory");
    for (uint32_t i = 0; i < nodes->via.array.size; i++)
        if (read_node(rd, &nodes->via.array.ptr[i], (int)i, err) < 0) return -1;
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

static int read_tensor(model_reader *rd, const ns_record *rec, ns_err *err) {
    ns_model *m = rd->m;
    if (m->nnodes == 0)
        return ns_errf(err, "not a model: tensor %s (record %llu) comes before any graph record", rec->name,
                       (unsigned long long)rec->index);
    // tns(5): a tensor over 4 GiB is split into records with part: [i, n];
    // no model tensor is that large, and one part is not the tensor.
    const msgpack_object *part = ns_map_get(rec->meta, "part");
    if (part) {
        long long i = -1, n = -1;
        if (part->type == MSGPACK_OBJECT_ARRAY && part->via.array.size == 2) {
            const msgpack_object *a = part->via.array.ptr;
            if (a[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER) i = (long long)(a[0].via.u64 & INT64_MAX);
            if (a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) n = (long long)(a[1].via.u64 & INT64_MAX);
        }
        return ns_errf(err, "tensor %s (record %llu) is part [%lld, %lld] of a split tensor; model "
                       "parameters are whole records", rec->name, (unsigned long long)rec->index, i, n);
    }
    ns_tensor t;
    if (ns_record_tensor_f32(rec, &t, err) < 0) return -1;
    // names are unique (ns_reader_require_unique_names): no search needed
    int idx = ns_model_append_tensor(m, rec->name, 0, t.shape, 0, err); // t.shape: never NULL to memcpy
    if (idx < 0) {
        ns_tensor_free(&t);
        return -1;
    }
    ns_tensor_free(&m->tensors[idx].t);
    m->tensors[idx].t = t;
    return index_add(m, &rd->tensors, idx, err);
}

// model.input_shape in the meta record, when given, must be the input node's.
static int check_input_shape(const ns_model *m, const int64_t *shape, size_t nshape, ns_err *err) {
    const ns_node *in = &m->nodes[0];
    int64_t want[3] = {in->iattr[0], in->iattr[1], in->iattr[2]};
    size_t nwant = in->iattr[1] ? 3 : 1;
    if (nshape == nwant && memcmp(shape, want, nwant * sizeof *want) == 0) return 0;
    char a[96], b[64];
    size_t o = 0;
    a[0] = 0;
    for (size_t i = 0; i < nshape && i < 4; i++)
        o += (size_t)snprintf(a + o, sizeof a - o, "%s%lld", i ? "x" : "", (long long)shape[i]);
    if (nshape > 4) snprintf(a + o, sizeof a - o, "x...");
    ns_shape_format(b, sizeof b, (int)nwant, want);
    return ns_errf(err, "model.input_shape %s is not the input node's shape %s", nshape ? a : "[]", b);
}

int ns_model_read(ns_model *m, ns_reader *r, ns_err *err) {
    ns_reader_require_unique_names(r, 1);
    model_reader rd = {m, NULL, {NULL, 0, 0, 0}, {NULL, 0, 0, 1}};
    char output[NS_NODE_NAME_MAX] = "";
    int64_t input_shape[8];
    size_t ninput_shape = 0;
    int has_input_shape = 0;
    ns_record rec;
    int got, rc = 0;
    while (rc == 0 && (got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            rc = read_meta(m, &rec, err);
            if (rc == 0 && ns_obj_str(rec.meta, "model.output", output, sizeof output, err) < 0) rc = -1;
            int found = rc == 0 ? ns_obj_i64s(rec.meta, "model.input_shape", input_shape, 8, &ninput_shape, err) : 0;
            if (found < 0) rc = ns_err_prefix(err, "model.input_shape");
            if (found == 1) has_input_shape = 1;
        } else if (strcmp(rec.kind, "graph") == 0) {
            rc = read_graph(&rd, &rec, err);
        } else if (strcmp(rec.kind, "tensor") == 0) {
            rc = read_tensor(&rd, &rec, err);
        }
    }
    if (rc == 0 && got < 0) rc = -1;
    if (rc == 0 && m->nnodes == 0) rc = ns_errf(err, "%s: no graph record: not a model", ns_reader_label(r));
    for (int i = 0; rc == 0 && i < m->nnodes; i++) {
        for (int p = 0; p < NS_MAX_PARAMS && rc == 0; p++) {
            if (!rd.pn[i].name[p][0]) continue;
            m->nodes[i].params[p] = index_find(m, &rd.tensors, rd.pn[i].name[p]);
            if (m->nodes[i].params[p] < 0)
                rc = ns_errf(err, "node %s: missing parameter tensor %s", m->nodes[i].name, rd.pn[i].name[p]);
        }
    }
    if (rc == 0 && output[0] && (m->output = index_find(m, &rd.nodes, output)) < 0)
        rc = ns_errf(err, "model.output names no node (%s)", output);
    free(rd.pn);
    free(rd.nodes.slot);
    free(rd.tensors.slot);
    if (rc == 0 && has_input_shape && check_input_shape(m, input_shape, ninput_shape, err) < 0) rc = -1;
    if (rc == 0 && ns_model_resolve(m, 0, err) < 0) rc = -1;
    const ns_node *out = rc == 0 ? &m->nodes[m->output] : NULL;
    if (rc == 0 && m->labels && out->ndim == 1 && (int64_t)m->nlabels != out->numel)
        rc = ns_errf(err, "general.labels has %zu names, but the model has %lld outputs (node %s)", m->nlabels,
                     (long long)out->numel, out->name);
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
