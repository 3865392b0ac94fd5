// model.h: a model: its layer graph, its named parameters and buffers, and what
// it expects as input. Models are TNS streams (tns(5), "Models"):
//   meta record   model.input_shape [C,H,W], general.labels, image.mean/std, model.arch
//   graph record  nodes: [{name, op, inputs:[names], params:[tensor names], attrs:{}}]
//   tensor records, one per parameter or buffer, unique names ("<node>.weight")
//
// Shapes here are per sample: a node's output for a batch of N is (N, shape...).
// Token sequences are (T, D) per sample: T tokens of D features; linear and
// layernorm act on the last axis, so they apply to every token.
#ifndef NS_MODEL_H
#define NS_MODEL_H

#include <stdint.h>

#include "base/err.h"
#include "base/tensor.h"
#include "stream/tns.h"

// Append-only: op names, not numbers, are stored in files.
typedef enum ns_op {
    NS_OP_INPUT,
    NS_OP_LINEAR,
    NS_OP_CONV2D,
    NS_OP_BATCHNORM,
    NS_OP_LAYERNORM,
    NS_OP_RELU,
    NS_OP_LEAKY_RELU,
    NS_OP_GELU,
    NS_OP_SIGMOID,
    NS_OP_TANH,
    NS_OP_MAXPOOL,
    NS_OP_AVGPOOL,
    NS_OP_GLOBAL_AVGPOOL,
    NS_OP_ADD,
    NS_OP_MUL,
    NS_OP_CONCAT,
    NS_OP_FLATTEN,
    NS_OP_RESHAPE,
    NS_OP_TRANSPOSE,
    NS_OP_DROPOUT,
    NS_OP_EMBEDDING,
    NS_OP_SOFTMAX,
    NS_OP_GROUPNORM,
    NS_OP_PATCH_EMBED,
    NS_OP_CLS_TOKEN,
    NS_OP_POS_EMBED,
    NS_OP_TOKEN_POOL,
    NS_OP_ATTENTION,
    NS_OP_UPSAMPLE,
    NS_OP_COUNT
} ns_op;

#define NS_MAX_INPUTS 8
#define NS_MAX_PARAMS 4   // weight, bias, running_mean, running_var (attention: 4 projections)
#define NS_MAX_ATTRS 8
#define NS_NODE_NAME_MAX 64
#define NS_MAX_SHAPE 4    // per-sample dimensions

// What every op is: its attributes (integers and reals, by name, with
// defaults), its parameter slots, and how many inputs it takes.
typedef struct ns_op_info {
    const char *name;
    int min_inputs, max_inputs;
    const char *iattr[NS_MAX_ATTRS];  // integer attribute names, NULL-terminated
    int64_t idefault[NS_MAX_ATTRS];
    const char *fattr[NS_MAX_ATTRS];  // real attribute names
    double fdefault[NS_MAX_ATTRS];
    const char *param[NS_MAX_PARAMS]; // tensor slots: "weight", "bias", ...
    int trainable[NS_MAX_PARAMS];     // 0 for buffers (running statistics)
} ns_op_info;

extern const ns_op_info ns_ops[NS_OP_COUNT];
int ns_op_from_name(const char *name); // -1 when unknown

// Node names (tns(5) "Models"): 1 to NS_NODE_NAME_MAX - 1 bytes, a letter or
// '_', then letters, digits, '_', '.' or '-' (PyTorch's "layer1.0.conv1").
// Parameter tensor names follow the same rule, up to NS_NAME_MAX bytes.
int ns_name_ok(const char *s, size_t n, size_t max);
// Bad bytes for a message: printable ASCII as is, others as \xHH, cut after
// max_in bytes with "...". buf needs 4 * max_in + 4 bytes.
const char *ns_quote_bytes(char *buf, size_t max_in, const char *s, size_t n);

typedef struct ns_node {
    char name[NS_NODE_NAME_MAX];
    ns_op op;
    int ninputs;
    int inputs[NS_MAX_INPUTS];   // indices of earlier nodes
    int params[NS_MAX_PARAMS];   // indices into model->tensors, -1 when absent
    int64_t iattr[NS_MAX_ATTRS]; // by position in ns_ops[op].iattr
    double fattr[NS_MAX_ATTRS];
    // Set by ns_model_resolve:
    int ndim;
    int64_t shape[NS_MAX_SHAPE]; // per-sample output shape
    int64_t numel;               // per-sample output elements
    int64_t macs;                // multiply-adds per sample
} ns_node;

typedef struct ns_named_tensor {
    char name[NS_NAME_MAX + 1];
    ns_tensor t;   // always f32 once loaded
    int trainable; // a parameter (1) or a buffer (0)
    int used;      // referenced by a node
} ns_named_tensor;

typedef struct ns_model {
    int nnodes, cap_nodes;
    ns_node *nodes;       // topological order; node 0 is the input
    int ntensors, cap_tensors;
    ns_named_tensor *tensors;
    int output;           // index of the output node (the last by default)
    char arch[128];       // how it was made, e.g. "resnet20 --width 16"
    char **labels;        // class names, may be NULL
    size_t nlabels;
    int nnorm;            // normalisation the inputs already had (0: none)
    double mean[4], std[4];
} ns_model;

void ns_model_init(ns_model *m);
void ns_model_free(ns_model *m);

// Building a graph (architectures, the spec parser): each returns the new
// node's index or -1. Attribute values not set keep the op's defaults.
int ns_model_add_input(ns_model *m, int c, int h, int w, ns_err *err);
int ns_model_add_node(ns_model *m, const char *name, ns_op op, const int *inputs, int ninputs,
                      ns_err *err);
// The same without the linear search for a duplicate name, for a caller that
// has checked the name is new (the model reader keeps a hash of names).
int ns_model_append_node(ns_model *m, const char *name, ns_op op, const int *inputs, int ninputs,
                         ns_err *err);
int ns_node_set_iattr(ns_node *n, const char *key, int64_t v, ns_err *err);
int ns_node_set_fattr(ns_node *n, const char *key, double v, ns_err *err);
int64_t ns_node_iattr(const ns_node *n, const char *key); // the value, or the default
// Checks every attribute of a node against its op's range (eps > 0 and
// finite, 0 <= momentum <= 1, 0 <= p < 1, bias 0 or 1, positive sizes,
// integers below 2^31, ...). The message names the node, the attribute and
// the value. ns_model_resolve calls it for every node, so models read from
// streams and graphs built from specs pass the same checks.
int ns_node_check_attrs(const ns_node *n, ns_err *err);
// Whether parameter slot p of a node holds a tensor (a bias only with bias = 1).
int ns_node_uses_param(const ns_node *n, int p);
double ns_node_fattr(const ns_node *n, const char *key);
// Finds a node or tensor by name; -1 when absent.
int ns_model_find_node(const ns_model *m, const char *name);
int ns_model_find_tensor(const ns_model *m, const char *name);
// Adds a zeroed f32 tensor; returns its index.
int ns_model_add_tensor(ns_model *m, const char *name, int ndim, const int64_t *shape,
                        int trainable, ns_err *err);
// The same without the search for a duplicate name (see ns_model_append_node).
int ns_model_append_tensor(ns_model *m, const char *name, int ndim, const int64_t *shape,
                           int trainable, ns_err *err);

// Infers every node's shape, creates missing parameter tensors (zeroed, named
// "<node>.<slot>") when create is set, and otherwise checks that each present
// tensor has the shape its node needs. Errors name the node and the mismatch.
int ns_model_resolve(ns_model *m, int create, ns_err *err);

// PyTorch's default initialisation: conv/linear weights and biases
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)),
// norm weights 1 and biases 0, running_var 1, embeddings N(0, 1); patch
// embeddings as convolutions; attention as torch.nn.MultiheadAttention
// (in_proj_weight xavier-uniform, out_proj_weight as a linear's, biases 0);
// a class token 0, position embeddings N(0, 0.02).
void ns_model_init_params(ns_model *m, uint64_t seed);

// Totals for net-info.
int64_t ns_model_param_count(const ns_model *m, int trainable_only);
int64_t ns_model_macs(const ns_model *m);

// Reading and writing model streams. ns_model_read consumes records from r
// until the end (tensor names must be unique); records it does not need are
// ignored, except tensors, which are kept (unused) so that checkpoints can
// carry optimiser state.
int ns_model_read(ns_model *m, ns_reader *r, ns_err *err);
int ns_model_load(ns_model *m, const char *path, ns_err *err);
// extra_meta (may be NULL) adds keys to the meta record; only used tensors are
// written unless with_unused is set.
int ns_model_write(const ns_model *m, ns_writer *w, const ns_map *extra_meta, int with_unused,
                   ns_err *err);

#endif
