// probe.h: reading a model at one layer: which node, how its map becomes a
// feature vector, the model's identity (fingerprint), and the TCAV
// directional derivative of a class logit along a vector in that feature
// space, through the engine's autodiff. probe-embed writes features with it;
// cav-fit scores CAVs with it, so both agree on what "the layer" means.
//
// Dimensions: N images, K classes (the model's output), D features.
//   act of the probed node per image: (C, H, W) for a conv map, (D) for a vector
//   features (N, D): avg pool: D = C (mean over H*W); flatten: D = C*H*W
#ifndef NS_PROBE_H
#define NS_PROBE_H

#include <stdint.h>

#include "nn/engine.h"
#include "base/err.h"
#include "nn/model.h"

#define NS_FINGERPRINT_LEN 16 // hex digits

// Append-only. How a node's per-sample output becomes features.
typedef enum ns_probe_pool {
    NS_PROBE_NONE,    // a vector already: taken as it is
    NS_PROBE_AVG,     // (C, H, W) -> (C): global average pool
    NS_PROBE_FLATTEN, // (C, H, W) -> (C*H*W)
    NS_PROBE_POOL_COUNT
} ns_probe_pool;

const char *ns_probe_pool_name(ns_probe_pool p); // "none", "avg", "flatten"
int ns_probe_pool_from_name(const char *name);   // -1 when unknown

typedef struct ns_probe {
    int node;           // the probed node
    ns_probe_pool pool;
    int64_t channels;   // C (D for a vector)
    int64_t spatial;    // H*W (1 for a vector)
    int64_t dim;        // D, the feature width
    int head;           // the final linear node when the features are its input, else -1
} ns_probe;

// The model's identity: 64-bit FNV-1a over its graph (node names, ops,
// inputs, attributes, the output) and every used tensor's name, shape and
// bytes, as 16 lowercase hex digits. Stable for the same model; any changed
// weight changes it. out has room for NS_FINGERPRINT_LEN + 1 bytes.
void ns_model_fingerprint(const ns_model *m, char *out);

// The default probe: the input of the model's final linear layer (the
// backbone feature). Returns its node index or -1 (with err) when the
// output node is not a linear layer.
int ns_probe_default_node(const ns_model *m, ns_err *err);

// Sets up a probe of node `layer` (NULL: the default). flatten selects
// NS_PROBE_FLATTEN over NS_PROBE_AVG for conv maps; vectors are always NONE.
// Errors: unknown node name, no default layer.
int ns_probe_init(ns_probe *p, const ns_model *m, const char *layer, int flatten, ns_err *err);

// Features of the last forward's n images from the probed node's act[]
// into out (n, D). The engine must have kept the node (ns_engine_keep or
// not fused).
void ns_probe_features(const ns_probe *p, const ns_engine *e, int64_t n, float *out);

// The head of a probe with p->head >= 0: weight (K, D) and bias (K), or NULL.
const float *ns_probe_head_weight(const ns_probe *p, const ns_model *m, int64_t *k);
const float *ns_probe_head_bias(const ns_probe *p, const ns_model *m);

// TCAV gradients. For each of the n images x (n, input numel) with class
// cls[i], the gradient of logit_cls[i] with respect to the features, into
// out (n, D): the directional derivative along v (the paper's
// S = grad h_k(f(x)) . v) is then out_i . v, for any number of v without
// another pass (ns_cav_sign_fraction counts the positive ones). Moving a
// feature of an average-pooled map means moving every position of its
// channel alike, so out sums the map's gradient over positions; flattened
// maps and vectors take it as it is. The engine must be made with_grads and
// not fused, for at least n images; it runs in eval mode (running
// statistics). Fails on a class outside [0, K) or a forward error.
int ns_probe_gradients(const ns_probe *p, ns_engine *e, const float *x, int64_t n,
                       const int32_t *cls, float *out, ns_err *err);

#endif
