// chgroups_util.h: what chgroups.c (the analysis) and chgroups_apply.c
// (permuting and selecting) share. Private to lib/nn/chgroups*.c.
#ifndef NS_CHGROUPS_UTIL_H
#define NS_CHGROUPS_UTIL_H

#include "nn/model.h"

// A depthwise conv (groups == in == out > 1) passes channels straight through.
static inline int is_depthwise(const ns_model *m, const ns_node *n) {
    if (n->op != NS_OP_CONV2D) return 0;
    int64_t g = ns_node_iattr(n, "groups"), in = m->nodes[n->inputs[0]].shape[0];
    return g > 1 && g == in && ns_node_iattr(n, "out") == in;
}

#endif
