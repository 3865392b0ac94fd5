// arch.c: the built-in architectures (arch.h), written against the graph
// builder of model.h.
#include "nn/arch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const ns_arch_names[] = {"mlp",      "lenet",    "vgg", "resnet20", "resnet32", "resnet44", "resnet56",
                                     "resnet18", "vit", "text-transformer", NULL};

// The CIFAR ResNets, 6n+2 layers: n BasicBlocks per stage.
static const struct {
    const char *name;
    int blocks;
} cifar_resnets[] = {{"resnet20", 3}, {"resnet32", 5}, {"resnet44", 7}, {"resnet56", 9}};

// A small builder: remembers the last node so layers chain naturally.
typedef struct builder {
    ns_model *m;
    ns_err *err;
    int last, failed;
} builder;

static int add(builder *b, const char *name, ns_op op, const int *inputs, int ninputs) {
    if (b->failed) return -1;
    int id = ns_model_add_node(b->m, name, op, inputs, ninputs, b->err);
    if (id < 0) b->failed = 1;
    else b->last = id;
    return id;
}

static int chain(builder *b, const char *name, ns_op op) { return add(b, name, op, &b->last, 1); }

static void iattr(builder *b, int id, const char *key, int64_t v) {
    if (!b->failed && ns_node_set_iattr(&b->m->nodes[id], key, v, b->err) < 0) b->failed = 1;
}

static int conv(builder *b, const char *name, int from, int out, int k, int stride, int pad, int bias) {
    int id = add(b, name, NS_OP_CONV2D, &from, 1);
    if (id < 0) return -1;
    iattr(b, id, "out", out);
    iattr(b, id, "kernel", k);
    iattr(b, id, "stride", stride);
    iattr(b, id, "pad", pad);
    iattr(b, id, "bias", bias);
    return id;
}

static int linear(builder *b, const char *name, int out) {
    int id = chain(b, name, NS_OP_LINEAR);
    if (id >= 0) iattr(b, id, "out", out);
    return id;
}

static int pool(builder *b, const char *name, ns_op op, int k) {
    int id = chain(b, name, op);
    if (id >= 0) iattr(b, id, "kernel", k);
    return id;
}

// Channels for a width multiplier: round(base * width), at least 1.
static int channels(int base, double width) {
    long c = lround(base * width);
    return c < 1 ? 1 : (int)c;
}

static void build_mlp(builder *b, const ns_arch_opts *o) {
    chain(b, "flatten", NS_OP_FLATTEN);
    int nh = o->nhidden ? o->nhidden : 1;
    for (int i = 0; i < nh; i++) {
        char name[32];
        snprintf(name, sizeof name, "fc%d", i + 1);
        linear(b, name, o->nhidden ? o->hidden[i] : 256);
        snprintf(name, sizeof name, "relu%d", i + 1);
        chain(b, name, NS_OP_RELU);
    }
    linear(b, "fc", o->classes);
}

static void build_lenet(builder *b, const ns_arch_opts *o) {
    conv(b, "conv1", b->last, 6, 5, 1, 2, 1);
    chain(b, "relu1", NS_OP_RELU);
    pool(b, "pool1", NS_OP_MAXPOOL, 2);
    conv(b, "conv2", b->last, 16, 5, 1, 0, 1);
    chain(b, "relu2", NS_OP_RELU);
    pool(b, "pool2", NS_OP_MAXPOOL, 2);
    chain(b, "flatten", NS_OP_FLATTEN);
    linear(b, "fc1", 120);
    chain(b, "relu3", NS_OP_RELU);
    linear(b, "fc2", 84);
    chain(b, "relu4", NS_OP_RELU);
    linear(b, "fc", o->classes);
}

static void build_vgg(builder *b, const ns_arch_opts *o) {
    int depth = o->depth ? o->depth : 4;
    if (depth % 2 || depth < 2) {
        ns_errf(b->err, "vgg depth must be even and at least 2 (%d)", depth);
        b->failed = 1;
        return;
    }
    int c = channels(16, o->width), layer = 0;
    for (int stage = 0; stage < depth / 2; stage++, c *= 2) {
        for (int j = 0; j < 2; j++, layer++) {
            char name[32];
            snprintf(name, sizeof name, "features.conv%d", layer);
            conv(b, name, b->last, c, 3, 1, 1, 0);
            snprintf(name, sizeof name, "features.bn%d", layer);
            chain(b, name, NS_OP_BATCHNORM);
            snprintf(name, sizeof name, "features.relu%d", layer);
            chain(b, name, NS_OP_RELU);
        }
        char name[32];
        snprintf(name, sizeof name, "features.pool%d", stage);
        pool(b, name, NS_OP_MAXPOOL, 2);
    }
    chain(b, "flatten", NS_OP_FLATTEN);
    linear(b, "fc", o->classes);
}

// A BasicBlock: conv3-bn-relu-conv3-bn, plus the input or a 1x1 conv+bn
// projection (shortcut_name.0, .1), then relu. prefix is "layer2.0" and so on.
static void basic_block(builder *b, const char *prefix, int out, int stride, const char *shortcut_name) {
    int from = b->last, in_c = (int)b->m->nodes[from].shape[0];
    char name[64];
    snprintf(name, sizeof name, "%s.conv1", prefix);
    conv(b, name, from, out, 3, stride, 1, 0);
    snprintf(name, sizeof name, "%s.bn1", prefix);
    chain(b, name, NS_OP_BATCHNORM);
    snprintf(name, sizeof name, "%s.relu1", prefix);
    chain(b, name, NS_OP_RELU);
    snprintf(name, sizeof name, "%s.conv2", prefix);
    conv(b, name, b->last, out, 3, 1, 1, 0);
    snprintf(name, sizeof name, "%s.bn2", prefix);
    int main_path = chain(b, name, NS_OP_BATCHNORM);
    int shortcut = from;
    if (stride != 1 || in_c != out) {
        snprintf(name, sizeof name, "%s.%s.0", prefix, shortcut_name);
        conv(b, name, from, out, 1, stride, 0, 0);
        snprintf(name, sizeof name, "%s.%s.1", prefix, shortcut_name);
        shortcut = chain(b, name, NS_OP_BATCHNORM);
    }
    int sum[2] = {main_path, shortcut};
    snprintf(name, sizeof name, "%s.add", prefix);
    add(b, name, NS_OP_ADD, sum, 2);
    snprintf(name, sizeof name, "%s.relu2", prefix);
    chain(b, name, NS_OP_RELU);
}

// Block channels need the input's shape, so shapes are resolved as we go.
static void resolve_so_far(builder *b) {
    if (!b->failed && ns_model_resolve(b->m, 1, b->err) < 0) b->failed = 1;
}

static void build_resnet(builder *b, const ns_arch_opts *o, int base, int stages, int blocks, int tv) {
    conv(b, "conv1", b->last, channels(base, o->width), tv ? 7 : 3, tv ? 2 : 1, tv ? 3 : 1, 0);
    chain(b, "bn1", NS_OP_BATCHNORM);
    chain(b, "relu", NS_OP_RELU);
    if (tv) {
        int mp = pool(b, "maxpool", NS_OP_MAXPOOL, 3);
        if (mp >= 0) {
            iattr(b, mp, "stride", 2);
            iattr(b, mp, "pad", 1);
        }
    }
    for (int s = 0; s < stages; s++) {
        for (int k = 0; k < blocks; k++) {
            resolve_so_far(b);
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", s + 1, k);
            basic_block(b, prefix, channels(base << s, o->width), k == 0 && s > 0 ? 2 : 1,
                        tv ? "downsample" : "shortcut");
        }
    }
    chain(b, "avgpool", NS_OP_GLOBAL_AVGPOOL);
    linear(b, "fc", o->classes);
}

// A pre-norm transformer block on tokens x: x + attn(ln(x)), then
// x + linear2(gelu(linear1(ln(x)))), named as torch's TransformerEncoderLayer
// (norm1, self_attn, linear1, linear2, norm2). prefix is "encoder.layers.0"
// and so on.
static void vit_block(builder *b, const char *prefix, int dim, int heads, int causal) {
    int x = b->last;
    char name[64];
    snprintf(name, sizeof name, "%s.norm1", prefix);
    chain(b, name, NS_OP_LAYERNORM);
    snprintf(name, sizeof name, "%s.self_attn", prefix);
    int attn = chain(b, name, NS_OP_ATTENTION);
    if (attn >= 0) iattr(b, attn, "heads", heads);
    if (attn >= 0 && causal) iattr(b, attn, "causal", 1);
    int sum1[2] = {x, b->last};
    snprintf(name, sizeof name, "%s.add1", prefix);
    int x1 = add(b, name, NS_OP_ADD, sum1, 2);
    snprintf(name, sizeof name, "%s.norm2", prefix);
    chain(b, name, NS_OP_LAYERNORM);
    snprintf(name, sizeof name, "%s.linear1", prefix);
    linear(b, name, 4 * dim);
    snprintf(name, sizeof name, "%s.gelu", prefix);
    chain(b, name, NS_OP_GELU);
    snprintf(name, sizeof name, "%s.linear2", prefix);
    linear(b, name, dim);
    int sum2[2] = {x1, b->last};
    snprintf(name, sizeof name, "%s.add2", prefix);
    add(b, name, NS_OP_ADD, sum2, 2);
}

static void build_vit(builder *b, const ns_arch_opts *o) {
    int patch = o->patch ? o->patch : 7, depth = o->depth ? o->depth : 4, heads = o->heads ? o->heads : 4;
    int dim = channels(64, o->width);
    if (patch > o->in_h || patch > o->in_w || dim % heads) {
        ns_errf(b->err, "vit: the patch (%d) must fit the %dx%d image and the heads (%d) divide the %d features",
                patch, o->in_h, o->in_w, heads, dim);
        b->failed = 1;
        return;
    }
    int pe = chain(b, "patch_embed", NS_OP_PATCH_EMBED);
    if (pe >= 0) {
        iattr(b, pe, "out", dim);
        iattr(b, pe, "patch", patch);
    }
    chain(b, "cls_token", NS_OP_CLS_TOKEN);
    chain(b, "pos_embed", NS_OP_POS_EMBED);
    for (int i = 0; i < depth; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "encoder.layers.%d", i);
        vit_block(b, prefix, dim, heads, 0);
    }
    chain(b, "norm", NS_OP_LAYERNORM);
    chain(b, "pool", NS_OP_TOKEN_POOL);
    linear(b, "head", o->classes);
}

// CLIP's text tower (Radford et al. 2021, arXiv 2103.00020), small: ids ->
// token and position embeddings -> causal pre-norm blocks -> ln_final -> the
// end-of-text token -> text_projection. The ids are the input node itself.
static void build_text_transformer(builder *b, const ns_arch_opts *o, int vocab) {
    int depth = o->depth ? o->depth : 2, heads = o->heads ? o->heads : 4, dim = channels(64, o->width);
    if (vocab < 2 || dim % heads) {
        ns_errf(b->err, "text-transformer: the vocabulary (%d) needs at least 2 ids and the heads (%d) must divide "
                "the %d features", vocab, heads, dim);
        b->failed = 1;
        return;
    }
    int emb = chain(b, "token_embedding", NS_OP_EMBEDDING);
    iattr(b, emb, "num", vocab);
    iattr(b, emb, "dim", dim);
    chain(b, "positional_embedding", NS_OP_POS_EMBED);
    for (int i = 0; i < depth; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "encoder.layers.%d", i);
        vit_block(b, prefix, dim, heads, 1);
    }
    int pool_in[2] = {chain(b, "ln_final", NS_OP_LAYERNORM), 0};
    int pool = add(b, "pool", NS_OP_TOKEN_POOL, pool_in, 2);
    iattr(b, pool, "mode", 2);
    int proj = linear(b, "text_projection", o->classes);
    iattr(b, proj, "bias", 0);
}

// Blocks per stage of a CIFAR ResNet's name, 0 for any other name.
static int cifar_resnet_blocks(const char *name) {
    for (size_t i = 0; i < sizeof cifar_resnets / sizeof *cifar_resnets; i++)
        if (strcmp(cifar_resnets[i].name, name) == 0) return cifar_resnets[i].blocks;
    return 0;
}

int ns_arch_build(ns_model *m, const char *name, const ns_arch_opts *o, ns_err *err) {
    if (o->classes < 1) return ns_errf(err, "classes must be positive (%d)", o->classes);
    if (!(o->width > 0) || o->width > 64) return ns_errf(err, "width must be in (0, 64] (%g)", o->width);
    builder b = {m, err, 0, 0};
    if (ns_model_add_input(m, o->in_c, o->in_h, o->in_w, err) < 0) return -1;
    int spatial = o->in_h > 0;
    if (strcmp(name, "mlp") == 0) build_mlp(&b, o);
    else if (strcmp(name, "text-transformer") == 0)
        return ns_errf(err, "text-transformer needs its vocabulary size (ns_arch_build_text)");
    else if (!spatial) return ns_errf(err, "%s needs an image input C x H x W", name);
    else if (strcmp(name, "lenet") == 0) build_lenet(&b, o);
    else if (strcmp(name, "vgg") == 0) build_vgg(&b, o);
    else if (cifar_resnet_blocks(name)) build_resnet(&b, o, 16, 3, cifar_resnet_blocks(name), 0);
    else if (strcmp(name, "resnet18") == 0) build_resnet(&b, o, 64, 4, 2, 0);
    else if (strcmp(name, "torchvision-resnet18") == 0) build_resnet(&b, o, 64, 4, 2, 1);
    else if (strcmp(name, "vit") == 0) build_vit(&b, o);
    else return ns_errf(err, "unknown architecture (%s)", name);
    resolve_so_far(&b);
    return b.failed ? -1 : 0;
}

int ns_arch_build_text(ns_model *m, const ns_arch_opts *o, int vocab, ns_err *err) {
    if (o->classes < 1) return ns_errf(err, "the projection width must be positive (%d)", o->classes);
    if (!(o->width > 0) || o->width > 64) return ns_errf(err, "width must be in (0, 64] (%g)", o->width);
    if (o->in_h > 0) return ns_errf(err, "text-transformer needs a vector input of L token ids, not C x H x W");
    builder b = {m, err, 0, 0};
    if (ns_model_add_input(m, o->in_c, 0, 0, err) < 0) return -1;
    build_text_transformer(&b, o, vocab);
    resolve_so_far(&b);
    return b.failed ? -1 : 0;
}

int ns_arch_parse_in(const char *s, long max_c, long max_hw, ns_arch_opts *o) {
    long v[3] = {0, 0, 0};
    int n = 0;
    char *end;
    const char *p = s;
    while (n < 3) {
        v[n++] = strtol(p, &end, 10);
        if (*end != 'x') break;
        p = end + 1;
    }
    if (*end || (n != 1 && n != 3) || v[0] < 1 || (max_c && v[0] > max_c)) return -1;
    if (n == 3 && (v[1] < 1 || v[2] < 1 || (max_hw && (v[1] > max_hw || v[2] > max_hw)))) return -1;
    o->in_c = (int)v[0];
    o->in_h = n == 3 ? (int)v[1] : 0;
    o->in_w = n == 3 ? (int)v[2] : 0;
    return 0;
}
