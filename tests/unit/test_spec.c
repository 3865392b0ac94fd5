// test_spec.c: the text architecture format (lib/nn/spec.h, netsmith-spec(5)).
// sanitize: yes (untrusted input: runs under ASan/UBSan in `make check-sanitize`)
//
// - The examples in examples/specs parse to the nodes, shapes and parameter
//   counts worked out by hand in their comments, and run forward.
// - ns_spec_write then ns_spec_parse reproduces every built-in architecture
//   of lib/nn/arch.c, the examples and a spec that uses every op: the same node
//   names, ops, inputs, attribute values, shapes and parameter counts, and
//   writing the result again gives the same text.
// - Every kind of mistake gives "<label>:<line>: ..." with the right line and
//   the bad text, and leaves the model untouched.
// - Truncated and byte-flipped examples, and random specs made of plausible
//   lines, either parse (and then round-trip) or fail cleanly.
// - The man page documents every op and attribute with ns_ops' defaults, and
//   its worked examples are the files in examples/specs.
// Run from the repository root (tests/run.sh does).
#include "nn/arch.h"
#include "check.h"
#include "nn/engine.h"
#include "nn/spec.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// helpers

static char *read_text(const char *path, size_t *len) {
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

static int parse(ns_model *m, const char *text, ns_err *err) {
    ns_model_init(m);
    return ns_spec_parse(m, text, strlen(text), NULL, err);
}

// The spec of a model as a string (caller frees), or NULL with err set.
static char *write_text(const ns_model *m, ns_err *err) {
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

static const char *shape_of(const ns_node *n) {
    static char buf[4][64];
    static int k;
    k = (k + 1) % 4;
    ns_shape_format(buf[k], sizeof buf[k], n->ndim, n->shape);
    return buf[k];
}

// Describes the first difference between two resolved graphs into why.
static int same_graph(const ns_model *a, const ns_model *b, char *why, size_t cap) {
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
static void check_round_trip(const char *what, const ns_model *m) {
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
static void check_forward(const char *what, ns_model *m, int64_t out_numel) {
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

// ----------------------------------------------------------------------------
// the examples

typedef struct example {
    const char *path;
    int nnodes;
    const char *ops;                   // every node's op, space-separated
    const char *shapes;                // "name=shape ..." to check
    int64_t params, trainable;         // worked out in the comments below
} example;

static const example examples[] = {
    // conv1 16*1*3*3 = 144, bn1 2*16 (+32 running), conv2 32*16*9 = 4608,
    // bn2 2*32 (+64), fc 10*1568 + 10 = 15690: 20538 trainable, 96 buffers
    {"examples/specs/cnn.cfg", 12,
     "input conv2d batchnorm relu maxpool conv2d batchnorm relu maxpool flatten dropout linear",
     "conv1=16x28x28 relu1=16x28x28 pool1=16x14x14 conv2=32x14x14 pool2=32x7x7 flatten1=1568 "
     "dropout1=1568 fc=10",
     20634, 20538},
    // fc1 784*128+128 = 100480, layernorm 2*128, fc2 128*64+64 = 8256, fc 650
    {"examples/specs/mlp.cfg", 8, "input linear layernorm gelu dropout linear gelu linear",
     "input=784 fc1=128 layernorm1=128 gelu1=128 gelu2=64 fc=10", 109642, 109642},
    // convs 432 + 2304 + 2304 + 4608 + 9216 + 512 (1x1), six batchnorms of
    // 16, 16, 16, 32, 32, 32 channels (2C trainable + 2C running each), fc 330
    {"examples/specs/resnet.cfg", 22,
     "input conv2d batchnorm relu conv2d batchnorm relu conv2d batchnorm add relu "
     "conv2d batchnorm relu conv2d batchnorm conv2d batchnorm add relu global_avgpool linear",
     "stem.relu=16x32x32 relu1=16x32x32 block1.add=16x32x32 block2.conv1=32x16x16 relu2=32x16x16 "
     "block2.proj=32x16x16 block2.add=32x16x16 global_avgpool1=32 fc=10",
     20282, 19994},
    // stem 8*9+8 = 80, b1x1 4*8+4 = 36, b3x3 8*8*9+8 = 584, b5x5 4*8*9+4 = 292,
    // batchnorm 32 (+32), grouped 16*4*9+16 = 592, hidden 784*32+32 = 25120,
    // gate 32*32+32 = 1056, fc 330
    {"examples/specs/branches.cfg", 19,
     "input conv2d leaky_relu conv2d conv2d conv2d concat batchnorm relu avgpool conv2d maxpool "
     "flatten linear tanh linear sigmoid mul linear",
     "stem=8x28x28 b1x1=4x28x28 b5x5=4x28x28 mix=16x28x28 avgpool1=16x14x14 grouped=16x14x14 "
     "maxpool1=16x7x7 flatten1=784 gated=32 fc=10",
     28154, 28122},
};

static void test_examples(void) {
    for (size_t k = 0; k < sizeof examples / sizeof *examples; k++) {
        const example *x = &examples[k];
        ns_model m;
        ns_model_init(&m);
        ns_err err = {""};
        int rc = ns_spec_load(&m, x->path, &err);
        CHECK(rc == 0, "%s parses%s%s", x->path, rc ? ": " : "", rc ? err.msg : "");
        if (rc) continue;
        CHECK(m.nnodes == x->nnodes, "%s: %d nodes (%d)", x->path, x->nnodes, m.nnodes);
        char ops[1024] = "";
        size_t used = 0;
        for (int i = 0; i < m.nnodes && used < sizeof ops; i++)
            used += (size_t)snprintf(ops + used, sizeof ops - used, "%s%s", i ? " " : "", ns_ops[m.nodes[i].op].name);
        CHECK(strcmp(ops, x->ops) == 0, "%s: ops in order (%s)", x->path, ops);
        char shapes[1024];
        snprintf(shapes, sizeof shapes, "%s", x->shapes);
        for (char *save = NULL, *tok = strtok_r(shapes, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            char *eq = strchr(tok, '=');
            *eq = 0;
            int i = ns_model_find_node(&m, tok);
            CHECK(i >= 0 && strcmp(shape_of(&m.nodes[i]), eq + 1) == 0, "%s: %s is %s (%s)", x->path, tok, eq + 1,
                  i >= 0 ? shape_of(&m.nodes[i]) : "missing");
        }
        CHECK(m.output == m.nnodes - 1, "%s: the last section is the output", x->path);
        CHECK(ns_model_param_count(&m, 0) == x->params && ns_model_param_count(&m, 1) == x->trainable,
              "%s: %" PRId64 " parameters, %" PRId64 " trainable (%" PRId64 ", %" PRId64 ")", x->path, x->params,
              x->trainable, ns_model_param_count(&m, 0), ns_model_param_count(&m, 1));
        check_round_trip(x->path, &m);
        check_forward(x->path, &m, 10);
        ns_model_free(&m);
    }
}

// ----------------------------------------------------------------------------
// round trips of the built-ins and of every op

static void test_builtins(void) {
    struct {
        const char *name;
        ns_arch_opts o;
    } cases[] = {
        {"mlp", {.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10, .width = 1, .hidden = {128, 64}, .nhidden = 2}},
        {"mlp", {.in_c = 784, .classes = 10, .width = 1}},
        {"lenet", {.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10, .width = 1}},
        {"vgg", {.in_c = 3, .in_h = 32, .in_w = 32, .classes = 10, .width = 1}},
        {"vgg", {.in_c = 3, .in_h = 32, .in_w = 32, .classes = 100, .width = 0.5, .depth = 6}},
        {"resnet20", {.in_c = 3, .in_h = 32, .in_w = 32, .classes = 10, .width = 1}},
        {"resnet20", {.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10, .width = 4}},
        {"resnet32", {.in_c = 1, .in_h = 8, .in_w = 8, .classes = 10, .width = 0.5}},
        {"resnet44", {.in_c = 1, .in_h = 8, .in_w = 8, .classes = 10, .width = 0.5}},
        {"resnet56", {.in_c = 3, .in_h = 32, .in_w = 32, .classes = 10, .width = 1}},
        {"resnet18", {.in_c = 3, .in_h = 32, .in_w = 32, .classes = 10, .width = 1}},
        {"vit", {.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10, .width = 0.5, .depth = 2, .patch = 4, .heads = 2}},
        {"text-transformer", {.in_c = 12, .classes = 16, .width = 0.5, .depth = 3, .heads = 2}}, // vocabulary 30
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ns_model m;
        ns_model_init(&m);
        ns_err err = {""};
        char what[96];
        snprintf(what, sizeof what, "%s %dx%dx%d width %g", cases[k].name, cases[k].o.in_c, cases[k].o.in_h,
                 cases[k].o.in_w, cases[k].o.width);
        int text = strcmp(cases[k].name, "text-transformer") == 0;
        int rc = text ? ns_arch_build_text(&m, &cases[k].o, 30, &err) : ns_arch_build(&m, cases[k].name, &cases[k].o, &err);
        CHECK(rc == 0, "%s builds%s%s", what, rc ? ": " : "", rc ? err.msg : "");
        if (rc == 0) check_round_trip(what, &m);
        ns_model_free(&m);
    }
    // Every built-in is covered.
    int covered = 0, total = 0;
    for (int i = 0; ns_arch_names[i]; i++, total++)
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
            if (strcmp(cases[k].name, ns_arch_names[i]) == 0) {
                covered++;
                break;
            }
    CHECK(covered == total, "the round trips cover all %d built-ins (%d)", total, covered);
}

// examples/specs/text-transformer.cfg is the text-transformer built-in with
// the options its comment names, node for node; it embeds ids and pools at
// the largest one.
static void test_text_transformer_spec(void) {
    ns_model spec, built;
    ns_model_init(&built);
    ns_err err = {""};
    int rc = ns_spec_load(&spec, "examples/specs/text-transformer.cfg", &err);
    CHECK(rc == 0, "text-transformer.cfg parses%s%s", rc ? ": " : "", rc ? err.msg : "");
    if (rc) return;
    ns_arch_opts o = {.in_c = 16, .classes = 64, .width = 1};
    rc = ns_arch_build_text(&built, &o, 1000, &err);
    CHECK(rc == 0, "the text-transformer built-in builds%s%s", rc ? ": " : "", rc ? err.msg : "");
    char why[256] = "";
    CHECK(rc == 0 && same_graph(&built, &spec, why, sizeof why),
          "text-transformer.cfg is the built-in --in 16 --vocab 1000 --classes 64%s%s", why[0] ? ": " : "", why);
    CHECK(ns_model_param_count(&spec, 1) == 169216, "169,216 trainable parameters (%" PRId64 ")",
          ns_model_param_count(&spec, 1));
    // ids of two texts: the outputs differ, and are finite
    ns_model_init_params(&spec, 3);
    ns_engine e;
    if (ns_engine_init(&e, &spec, 2, 0, &err) == 0) {
        float ids[32] = {998, 5, 6, 999, 0}, *other = ids + 16;
        other[0] = 998, other[1] = 7, other[2] = 999;
        const float *y = ns_engine_forward(&e, ids, 2, 0, &err);
        double diff = 0;
        for (int j = 0; y && j < 64; j++) diff += fabs((double)y[j] - y[64 + j]);
        CHECK(y && isfinite(diff) && diff > 0, "two texts give two finite embeddings (|difference| %g)", diff);
        ns_engine_free(&e);
    }
    ns_model_free(&spec);
    ns_model_free(&built);
}

// Every op of ns_ops, each with non-default attributes where it has any.
static const char all_ops[] =
    "[input]\nshape = 16\n"
    "[embedding tok]\nnum = 100\ndim = 8\n"          // 16x8
    "[layernorm]\neps = 1e-6\n"                      // over the 8 features
    "[transpose]\n"                                  // 8x16
    "[reshape]\ndim0 = 8\ndim1 = -1\ndim2 = 4\n"     // 8x4x4
    "[conv2d c]\nout = 8\npad = 1\ngroups = 2\nbias = 0\nstride = 1\n"
    "[batchnorm]\nmomentum = 0.2\neps = 0.001\n"
    "[leaky_relu]\nslope = 0.2\n"
    "[gelu]\n"
    "[avgpool]\n"                                    // 8x2x2
    "[maxpool m]\nfrom = -2\nkernel = 3\nstride = 1\npad = 1\n" // 8x4x4
    "[maxpool]\n"                                    // 8x2x2
    "[concat]\nfrom = avgpool1, maxpool1\n"          // 16x2x2
    "[global_avgpool]\n"                             // 16
    "[sigmoid s]\n"
    "[tanh t]\nfrom = global_avgpool1\n"
    "[mul]\nfrom = s, t\n"
    "[add]\nfrom = -1, t\n"
    "[dropout]\np = 0.3\n"
    "[relu]\n"
    "[flatten]\n"
    "[linear fc]\nout = 5\nbias = 0\n"
    "[groupnorm g]\nfrom = reshape1\ngroups = 4\neps = 1e-4\n" // 8x4x4
    "[upsample u]\nscale = 3\n"                            // 8x12x12
    "[avgpool]\nkernel = 3\n"                              // 8x4x4
    "[patch_embed pe]\nout = 6\npatch = 2\nbias = 0\n"       // 4x6
    "[cls_token]\n"                                         // 5x6
    "[pos_embed]\n"
    "[attention sa]\nheads = 2\ncausal = 1\nbias = 0\n"
    "[attention ca]\nfrom = sa, pos_embed1, fc\nheads = 3\ncross = 1\n" // fc: a key mask of 5
    "[softmax]\naxis = 0\n"
    "[gelu gt]\napproximate = 1\n"
    "[token_pool]\nmode = 1\n"                             // 6
    "[linear out]\nout = 5\n";

static void test_all_ops(void) {
    ns_model m;
    ns_err err = {""};
    int rc = parse(&m, all_ops, &err);
    CHECK(rc == 0, "a spec with every op parses%s%s", rc ? ": " : "", rc ? err.msg : "");
    if (rc) return;
    int seen[NS_OP_COUNT] = {0}, nseen = 0;
    for (int i = 0; i < m.nnodes; i++) nseen += !seen[m.nodes[i].op]++;
    CHECK(nseen == NS_OP_COUNT, "it uses all %d ops (%d)", NS_OP_COUNT, nseen);
    const ns_node *r = &m.nodes[ns_model_find_node(&m, "reshape1")];
    CHECK(strcmp(shape_of(r), "8x4x4") == 0, "reshape1 infers its -1 dim: 8x4x4 (%s)", shape_of(r));
    CHECK(strcmp(shape_of(&m.nodes[ns_model_find_node(&m, "concat1")]), "16x2x2") == 0, "concat1 is 16x2x2");
    const ns_node *bn = &m.nodes[ns_model_find_node(&m, "batchnorm1")];
    CHECK(ns_node_fattr(bn, "eps") == 0.001 && ns_node_fattr(bn, "momentum") == 0.2,
          "real attributes are read exactly (eps %g, momentum %g)", ns_node_fattr(bn, "eps"),
          ns_node_fattr(bn, "momentum"));
    CHECK(ns_node_iattr(&m.nodes[ns_model_find_node(&m, "fc")], "bias") == 0 &&
              m.nodes[ns_model_find_node(&m, "fc")].params[1] < 0,
          "bias = 0 leaves fc without a bias tensor");
    check_round_trip("every op", &m);
    check_forward("every op", &m, 5);
    ns_model_free(&m);

    // Odd but valid: CRLF line ends, tabs, comments everywhere, no spaces
    // around '=', spaces inside the brackets, -N references, a named input.
    const char *odd = "# leading comment\r\n\r\n[ input   data ]  # named input\r\n\tshape=1 x 8 x 8\r\n"
                      "[conv2d\tc1]\r\nout=+4#c\r\n[ relu ]\n[add]\nfrom=-1,-2 # relu1 + c1\n"
                      "[global_avgpool]\n[linear]\nout = 3\nbias = 1\n";
    rc = parse(&m, odd, &err);
    CHECK(rc == 0, "CRLF, tabs, comments and spacing variants parse%s%s", rc ? ": " : "", rc ? err.msg : "");
    if (rc == 0) {
        CHECK(strcmp(m.nodes[0].name, "data") == 0 && m.nodes[3].inputs[0] == 2 && m.nodes[3].inputs[1] == 1 &&
                  strcmp(m.nodes[m.nnodes - 1].name, "linear1") == 0 && strcmp(shape_of(&m.nodes[2]), "4x6x6") == 0,
              "names, -N references and shapes as written (%s %s)", m.nodes[0].name, shape_of(&m.nodes[2]));
        check_round_trip("spacing variants", &m);
    }
    ns_model_free(&m);

    // Default names count the unnamed sections of each op only.
    rc = parse(&m, "[input]\nshape = 4\n[relu a]\n[relu]\n[relu b]\n[relu]\n[tanh]\n", &err);
    CHECK(rc == 0 && strcmp(m.nodes[2].name, "relu1") == 0 && strcmp(m.nodes[4].name, "relu2") == 0 &&
              strcmp(m.nodes[5].name, "tanh1") == 0,
          "default names: relu1, relu2 between named relus, tanh1");
    ns_model_free(&m);
}

// ----------------------------------------------------------------------------
// errors

typedef struct bad_spec {
    const char *text;
    int line;
    const char *says; // a substring of the message after "<string>:LINE: "
} bad_spec;

#define IN "[input]\nshape = 1x28x28\n"  // two lines
#define VEC "[input]\nshape = 16\n"

static const bad_spec bad[] = {
    // sections and ops
    {IN "[conv]\n", 3, "unknown op 'conv' (did you mean 'conv2d'?)"},
    {IN "[convolutional]\nfilters = 8\n", 3, "unknown op 'convolutional' (did you mean 'conv2d'?)"},
    {IN "[maxpool2d]\n", 3, "unknown op 'maxpool2d' (did you mean 'maxpool'?)"},
    {IN "[frobnicate]\n", 3, "unknown op 'frobnicate' (netsmith-spec(5) lists the ops)"},
    {IN "[Relu]\n", 3, "unknown op 'Relu' (did you mean 'relu'?)"},
    {"[relu]\n", 1, "the first section must be [input], not [relu]"},
    {IN "[relu]\n[input]\nshape = 3\n", 4, "a second [input]: the input is the first section only (line 1)"},
    {IN "[relu\n", 3, "section header without a closing ']' ([relu)"},
    {IN "[]\n", 3, "empty section header ([])"},
    {IN "[relu] out = 3\n", 3, "text after the ']' of a section header ([relu] out = 3)"},
    {IN "[relu]]\n", 3, "text after the ']' of a section header ([relu]])"},
    {IN "[relu a b]\n", 3, "a section header holds an op and a name, no more ([relu a b])"},
    {IN "[relu 1a]\n", 3, "bad node name '1a'"},
    {IN "[relu a,b]\n", 3, "bad node name 'a,b'"},
    {IN "[relu caf\xc3\xa9]\n", 3, "bad node name 'caf\\xc3\\xa9'"},
    {IN "[relu a]\n[tanh a]\n", 4, "node name 'a' is already used (line 3)"},
    {IN "[relu relu1]\n[relu]\n", 4, "would get the default name 'relu1', which line 3 already uses"},
    {IN "[relu input]\n", 3, "node name 'input' is already used (line 1)"},
    // keys and values
    {IN "\n[conv2d conv1]\nout = 8\nstrid = 2\n", 6, "conv1: conv2d has no attribute 'strid' (did you mean 'stride'?)"},
    {IN "[conv2d]\nfilters = 8\n", 4, "conv2d1: conv2d has no attribute 'filters' (did you mean 'out'?)"},
    {IN "[conv2d]\nactivation = leaky\n", 4, "has no attribute 'activation' (an activation is a section of its own"},
    {IN "[relu]\nkernel = 3\n", 4, "relu1: relu has no attribute 'kernel' (relu takes only from)"},
    {IN "[maxpool]\nout = 3\n", 4, "maxpool1: maxpool has no attribute 'out' (maxpool takes from, kernel, stride, pad)"},
    {IN "[linear]\nwidth = 3\n", 4, "linear1: linear has no attribute 'width' (linear takes from, out, bias)"},
    {IN "[relu]\nshape = 3\n", 4, "(only [input] has a shape)"},
    {"[input]\nchannels = 3\n", 2, "input: [input] takes only shape = CxHxW or D, not 'channels'"},
    {"[input]\nshape = 3\nfrom = -1\n", 3, "[input] takes only shape"},
    {IN "[conv2d c]\nout = 8\nkernel = 3\nout = 16\n", 6, "c: out is set twice (first at line 4)"},
    {IN "[flatten]\n[linear]\nout = 1O\n", 5, "linear1: out: '1O' is not a number"},
    {IN "[conv2d]\nkernel = 2.5\n", 4, "conv2d1: kernel must be an integer, not 2.5"},
    {IN "[conv2d]\nkernel = 1e1\n", 4, "kernel must be an integer, not 1e1"},
    {IN "[conv2d]\nout = 99999999999\n", 4, "out: 99999999999 is out of range"},
    {IN "[conv2d]\nout = 2147483648\n", 4, "out: 2147483648 is out of range"},
    {IN "[conv2d]\nout = 0x10\n", 4, "out: '0x10' is not a number"},
    {IN "[conv2d]\nbias = 2\n", 4, "conv2d1: bias is 0 or 1, not 2"},
    {IN "[conv2d]\nkernel = 1\n", 3, "conv2d1: conv2d needs out = N, the output channels (it has no default)"},
    {IN "[flatten]\n[linear]\nbias = 0\n", 4, "linear1: linear needs out = N, the output features"},
    {VEC "[embedding]\nnum = 5\n", 3, "embedding1: embedding needs dim = N, the vector size"},
    {IN "[dropout]\np = 0.5.5\n", 4, "dropout1: p: '0.5.5' is not a number"},
    {IN "[dropout]\np = nan\n", 4, "p: 'nan' is not a number"},
    {IN "[dropout]\np = .\n", 4, "p: '.' is not a number"},
    {IN "[dropout]\np = 1e\n", 4, "p: '1e' is not a number"},
    {IN "[dropout]\np = 1e999\n", 4, "p: 1e999 is not a finite number"},
    {IN "[relu]\nfrom -1\n", 4, "expected 'key = value' or a [section], got 'from -1'"},
    {IN "[conv2d]\nout =\n", 4, "out: no value after '='"},
    {IN "[conv2d]\nout = # eight\n", 4, "out: no value after '='"},
    {IN "[conv2d]\n= 8\n", 4, "no key before '=' (= 8)"},
    {"shape = 1x28x28\n[input]\n", 1, "'shape = 1x28x28' comes before the first section, [input]"},
    {"[input]\n", 1, "input: [input] needs shape = CxHxW"},
    {"[input]\nshape = 1x28\n", 2, "shape must be CxHxW or D, positive integers, not '1x28'"},
    {"[input]\nshape = 0x28x28\n", 2, "not '0x28x28'"},
    {"[input]\nshape = 1x28x28x3\n", 2, "not '1x28x28x3'"},
    {"[input]\nshape = 28x\n", 2, "not '28x'"},
    {"[input]\nshape = -3\n", 2, "not '-3'"},
    // references and input counts
    {IN "[relu]\n[tanh]\nfrom = relu9\n", 5, "tanh1: no node named 'relu9' (did you mean 'relu1'?)"},
    {IN "[relu]\n[tanh]\nfrom = somewhere\n", 5, "tanh1: no node named 'somewhere'"},
    {IN "[relu]\nfrom = fc\n[flatten]\n[linear fc]\nout = 2\n", 4, "relu1: 'fc' comes later (line 6)"},
    {IN "[relu r]\nfrom = r\n", 4, "r: from = r names this node itself"},
    {IN "[relu]\n[add]\nfrom = -1, -3\n", 5, "add1: -3 goes back past the first node (the input is -2 here)"},
    {IN "[relu]\nfrom = -0\n", 4, "relu1: -0 is this node itself"},
    {IN "[relu]\nfrom = 0\n", 4, "relu1: '0' is neither a node name nor -N"},
    {IN "[relu]\nfrom = +1\n", 4, "'+1' is neither a node name nor -N"},
    {IN "[relu]\n[add]\nfrom = relu1,\n", 5, "add1: an empty entry in from = relu1,"},
    {IN "[relu]\n[add]\nfrom = , relu1\n", 5, "an empty entry"},
    {IN "[relu]\n[add]\n", 4, "add1: add takes 2 inputs, not 1 (list them: from = a, b)"},
    {IN "[relu]\n[add]\nfrom = -1, -1, -1\n", 5, "add1: add takes 2 inputs, not 3"},
    {IN "[relu]\n[tanh]\nfrom = -1, -2\n", 5, "tanh1: tanh takes 1 input, not 2"},
    {IN "[concat]\n", 3, "concat1: concat takes 2 to 8 inputs, not 1"},
    {IN "[concat]\nfrom = -1,-1,-1,-1,-1,-1,-1,-1,-1\n", 4, "concat1: more than 8 inputs in from"},
    // shape errors found by ns_model_resolve, at the node's header line
    {IN "\n[linear fc]\nout = 10\n", 4, "fc: linear needs a 1-D input or T x D tokens, got 1x28x28 (add a flatten)"},
    {IN "[conv2d big]\nout = 4\nkernel = 31\n", 3, "big: conv2d: dilated kernel 31x31 is larger than the padded input 28x28"},
    {IN "[conv2d g]\nout = 4\ngroups = 3\n", 3, "g: conv2d: groups (3) must divide"},
    {IN "[conv2d z]\nout = 0\n", 3, "z: conv2d: sizes must be positive"},
    {IN "[maxpool]\nkernel = 2\npad = 2\n", 3, "maxpool1: pool2d: padding 2x2 must be between 0 and half the kernel"},
    {IN "[conv2d a]\nout = 2\n[add]\nfrom = a, input\n", 5, "add1: inputs differ in shape (2x26x26 and 1x28x28)"},
    {IN "[flatten]\n[batchnorm]\n[linear]\nout = 0\n", 5, "linear1: out must be positive"},
    {IN "[transpose]\n", 3, "transpose1: transpose needs a 2-D input, got 1x28x28"},
    {IN "[dropout]\np = 1\n", 3, "dropout1: p must be in [0, 1)"},
    {IN "[batchnorm]\neps = -1\n", 3, "batchnorm1: eps must be positive, not -1"},
    {IN "[batchnorm]\neps = 0\n", 3, "batchnorm1: eps must be positive, not 0"},
    {IN "[batchnorm]\nmomentum = 1.5\n", 3, "batchnorm1: momentum must be in [0, 1], not 1.5"},
    {IN "[layernorm ln]\neps = -1e-5\n", 3, "ln: eps must be positive, not -1e-05"},
    {IN "[dropout]\np = -0.1\n", 3, "dropout1: p must be in [0, 1), not -0.1"},
    {IN "[reshape]\ndim0 = 5\n", 3, "reshape1: cannot reshape 1x28x28 to 5 elements"},
    {IN "[reshape]\ndim0 = 4\ndim2 = 5\n", 5, "reshape1: dim2 = 5 follows dim1 = 0, but the dims end at the first 0"},
    {VEC "[embedding]\nnum = 0\ndim = 4\n", 3, "embedding1: num and dim must be positive"},
    {"[input]\nshape = 1x100000x100000\n", 1, "input shape 1x100000x100000 is too large (C at most 2^24, H and W 2^16)"},
    // twin attention (cross_heads): at most the heads, self-attention only
    {IN "[patch_embed]\nout = 8\npatch = 4\n[attention a]\nheads = 2\ncross_heads = 3\n", 6,
     "a: cross_heads must be in 0..2 (the heads), not 3"},
    {IN "[patch_embed]\nout = 8\npatch = 4\n[attention a]\nheads = 2\ncausal = 1\ncross_heads = 1\n", 6,
     "a: cross_heads (twin self-attention) takes one input, without causal, cross or a key padding mask"},
    // bytes that are not text
    {IN "[relu]\x01\n", 3, "control character 0x01 (a spec is text)"},
    {IN "# a comment with a DEL \x7f\n", 3, "control character 0x7f"},
    {"", 1, "no sections: a spec begins with [input]"},
    {"# only a comment\n\n   \n", 1, "no sections"},
    {IN "[relu]\nfrom = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 4,
     "no node named 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'"},
};

static void test_errors(void) {
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        const bad_spec *b = &bad[k];
        ns_model m;
        ns_model_init(&m);
        snprintf(m.arch, sizeof m.arch, "kept");
        ns_err err = {""};
        int rc = ns_spec_parse(&m, b->text, strlen(b->text), NULL, &err);
        char want[64];
        snprintf(want, sizeof want, "<string>:%d: ", b->line);
        int ok = rc == -1 && strncmp(err.msg, want, strlen(want)) == 0 && strstr(err.msg, b->says) != NULL;
        CHECK(ok, "error %zu: %s%s", k, err.msg, ok ? "" : " (wanted the line and text below)");
        if (!ok) printf("# wanted: %s%s\n", want, b->says);
        CHECK(m.nnodes == 0 && m.ntensors == 0 && strcmp(m.arch, "kept") == 0,
              "error %zu: the model is left as it was", k);
        ns_model_free(&m);
    }

    // A NUL byte inside the text (the length, not the NUL, ends the text),
    // and the label in messages.
    ns_model m;
    ns_model_init(&m);
    ns_err err = {""};
    const char nul[] = "[input]\nshape = 3\n[relu]\0\n";
    int rc = ns_spec_parse(&m, nul, sizeof nul - 1, "net.cfg", &err);
    CHECK(rc == -1 && strcmp(err.msg, "net.cfg:3: control character 0x00 (a spec is text)") == 0,
          "a NUL byte is an error with the label and line (%s)", err.msg);
    rc = ns_spec_parse(&m, nul, 18, "net.cfg", &err);
    CHECK(rc == 0 && m.nnodes == 1, "the length bounds the text: the first 18 bytes are a valid spec");
    rc = ns_spec_parse(&m, nul, 18, "net.cfg", &err);
    CHECK(rc == -1 && strstr(err.msg, "not empty"), "parsing into a model with nodes fails (%s)", err.msg);
    ns_model_free(&m);
    ns_model_init(&m);
    rc = ns_spec_parse(&m, NULL, 0, NULL, &err);
    CHECK(rc == -1 && strcmp(err.msg, "<string>:1: no sections: a spec begins with [input] and shape = CxHxW") == 0,
          "NULL text of length 0 is an empty spec (%s)", err.msg);
    ns_model_free(&m);
}

// ----------------------------------------------------------------------------
// files and limits

static void test_files(void) {
    ns_model m;
    ns_model_init(&m);
    ns_err err = {""};
    int rc = ns_spec_load(&m, "examples/specs/no-such.cfg", &err);
    CHECK(rc == -1 && strstr(err.msg, "examples/specs/no-such.cfg: No such file"), "a missing file (%s)", err.msg);
    rc = ns_spec_load(&m, "examples/specs", &err);
    CHECK(rc == -1 && strstr(err.msg, "examples/specs: read error"), "a directory (%s)", err.msg);

    char path[] = "/tmp/ns_spec_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    CHECK(f != NULL, "temporary file %s", path);
    if (!f) return;
    // A spec of exactly NS_SPEC_MAX_BYTES: padded with a comment.
    const char *head = "[input]\nshape = 3\n[relu]\nfrom = -1 # x\n[tanh]\n#";
    fputs(head, f);
    for (size_t i = strlen(head); i < NS_SPEC_MAX_BYTES - 1; i++) fputc('x', f);
    fputc('\n', f);
    fflush(f);
    rc = ns_spec_load(&m, path, &err);
    CHECK(rc == 0 && m.nnodes == 3, "a spec of exactly %d bytes loads%s%s", NS_SPEC_MAX_BYTES, rc ? ": " : "",
          rc ? err.msg : "");
    ns_model_free(&m);
    fputc('\n', f);
    fflush(f);
    rc = ns_spec_load(&m, path, &err);
    char want[256];
    snprintf(want, sizeof want, "%s: larger than %d bytes, the limit for a spec", path, NS_SPEC_MAX_BYTES);
    CHECK(rc == -1 && strcmp(err.msg, want) == 0, "one byte more is refused (%s)", err.msg);
    fclose(f);

    // An error in a file names the file.
    f = fopen(path, "wb");
    fputs("[input]\nshape = 3\n\n[relu]\nslope = 2\n", f);
    fclose(f);
    rc = ns_spec_load(&m, path, &err);
    snprintf(want, sizeof want, "%s:5: relu1: relu has no attribute 'slope' (relu takes only from)", path);
    CHECK(rc == -1 && strcmp(err.msg, want) == 0, "file:line in messages (%s)", err.msg);
    unlink(path);

    // The section limit, and the time a spec at the limit takes.
    size_t cap = 32 + (size_t)(NS_SPEC_MAX_NODES + 1) * 8, len = 0;
    char *big = malloc(cap);
    len += (size_t)snprintf(big + len, cap - len, "[input]\nshape = 4\n");
    for (int i = 1; i < NS_SPEC_MAX_NODES; i++) len += (size_t)snprintf(big + len, cap - len, "[relu]\n");
    clock_t t0 = clock();
    rc = ns_spec_parse(&m, big, len, NULL, &err);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(rc == 0 && m.nnodes == NS_SPEC_MAX_NODES, "%d sections parse (%.2f s)%s%s", NS_SPEC_MAX_NODES, secs,
          rc ? ": " : "", rc ? err.msg : "");
    ns_model_free(&m);
    len += (size_t)snprintf(big + len, cap - len, "[relu]\n");
    rc = ns_spec_parse(&m, big, len, NULL, &err);
    snprintf(want, sizeof want, "<string>:%d: more than %d sections", NS_SPEC_MAX_NODES + 2, NS_SPEC_MAX_NODES);
    CHECK(rc == -1 && strcmp(err.msg, want) == 0, "one more is refused (%s)", err.msg);
    free(big);
}

static void test_writer_errors(void) {
    ns_model m;
    ns_err err = {""};
    int rc = parse(&m, "[input]\nshape = 4\n[relu]\n[tanh]\n", &err);
    CHECK(rc == 0, "a small model");
    m.output = 1;
    char *text = write_text(&m, &err);
    CHECK(!text && strstr(err.msg, "the output is node relu1, but a spec's output is its last section"),
          "an output before the last node cannot be written (%s)", err.msg);
    free(text);
    m.output = 2;
    snprintf(m.nodes[1].name, sizeof m.nodes[1].name, "has space");
    text = write_text(&m, &err);
    CHECK(!text && strstr(err.msg, "node name 'has space' cannot be written"), "nor a name with a space (%s)",
          err.msg);
    free(text);
    snprintf(m.nodes[1].name, sizeof m.nodes[1].name, "relu1");
    FILE *full = fopen("/dev/full", "w");
    if (full) {
        rc = ns_spec_write(&m, full, &err);
        CHECK(rc == -1 && strstr(err.msg, "write error"), "a write error is reported (%s)", err.msg);
        fclose(full);
    } else {
        SKIP("no /dev/full");
    }
    ns_model_free(&m);

    // Required attributes are written even when they equal ns_ops' default.
    rc = parse(&m, "[input]\nshape = 4\n[linear]\nout = 1\n[embedding]\nnum = 1\ndim = 1\n", &err);
    text = rc == 0 ? write_text(&m, &err) : NULL;
    CHECK(text && strstr(text, "[linear]\nout = 1\n") && strstr(text, "[embedding]\nnum = 1\ndim = 1\n"),
          "required attributes are always written");
    free(text);
    ns_model_free(&m);

    // Real attributes are written so that they read back exactly.
    rc = parse(&m, "[input]\nshape = 4\n[leaky_relu]\nslope = 0.1\n[dropout]\np = 0.30000000000000004\n"
                   "[layernorm]\neps = 1e-300\n", &err);
    CHECK(rc == 0, "reals parse");
    text = rc == 0 ? write_text(&m, &err) : NULL;
    CHECK(text && strstr(text, "slope = 0.1\n") && strstr(text, "p = 0.30000000000000004\n") &&
              strstr(text, "eps = 1e-300\n"),
          "reals are written in their shortest exact form");
    if (text) check_round_trip("reals", &m);
    free(text);
    ns_model_free(&m);
}

// ----------------------------------------------------------------------------
// fuzz-ish

static unsigned long fuzz_runs, fuzz_ok;
static int fuzz_bad;

// Parses and checks the outcome: success (and then the graph round-trips) or
// "<string>:N: message" with N a line of the text, and an untouched model.
static void fuzz_one(const char *text, size_t len) {
    ns_model m;
    ns_model_init(&m);
    ns_err err = {""};
    int rc = ns_spec_parse(&m, text, len, NULL, &err);
    fuzz_runs++;
    if (rc == 0) {
        fuzz_ok++;
        char *out = write_text(&m, &err);
        ns_model back;
        ns_model_init(&back);
        char why[256] = "";
        if (!out || ns_spec_parse(&back, out, strlen(out), NULL, &err) < 0 || !same_graph(&m, &back, why, sizeof why)) {
            if (fuzz_bad++ < 5) printf("# fuzz: parsed but did not round-trip: %s %s\n", err.msg, why);
        }
        ns_model_free(&back);
        free(out);
    } else {
        int lines = 1;
        for (size_t i = 0; i + 1 < len; i++) lines += text[i] == '\n';
        int line = 0;
        int ok = rc == -1 && sscanf(err.msg, "<string>:%d: ", &line) == 1 && line >= 1 && line <= lines &&
                 strlen(err.msg) > 12 && m.nnodes == 0 && m.ntensors == 0;
        if (!ok && fuzz_bad++ < 5) printf("# fuzz: unclean failure (rc %d, %d lines): %s\n", rc, lines, err.msg);
    }
    ns_model_free(&m);
}

static void test_fuzz(void) {
    const char *paths[] = {"examples/specs/cnn.cfg", "examples/specs/resnet.cfg", "examples/specs/branches.cfg"};
    const unsigned char flips[] = {0x01, 0x02, 0x08, 0x20, 0x80};
    const char subs[] = "[]=#,-x0 \n\t\r";
    for (size_t k = 0; k < sizeof paths / sizeof *paths; k++) {
        size_t len;
        char *text = read_text(paths[k], &len);
        CHECK(text != NULL, "read %s", paths[k]);
        if (!text) continue;
        unsigned long runs0 = fuzz_runs, ok0 = fuzz_ok;
        int bad0 = fuzz_bad;
        for (size_t n = 0; n <= len; n++) fuzz_one(text, n);
        char *copy = malloc(len);
        for (size_t i = 0; i < len; i++) {
            memcpy(copy, text, len);
            for (size_t f = 0; f < sizeof flips; f++) {
                copy[i] = (char)(text[i] ^ flips[f]);
                fuzz_one(copy, len);
            }
            for (size_t s = 0; s < sizeof subs; s++) { // the NUL ending subs too
                copy[i] = subs[s];
                fuzz_one(copy, len);
            }
            memcpy(copy, text, len);
            memmove(copy + i, copy + i + 1, len - i - 1); // a byte deleted
            fuzz_one(copy, len - 1);
        }
        free(copy);
        free(text);
        CHECK(fuzz_bad == bad0, "%s: %lu prefixes and mutations, %lu parse, the rest fail cleanly", paths[k],
              fuzz_runs - runs0, fuzz_ok - ok0);
    }

    // Random specs: an input, then whole sections, with now and then a stray
    // line that may or may not fit where it lands.
    static const char *const inputs[] = {"[input]\nshape = 4x8x8\n", "[input]\nshape = 12\n"};
    static const char *const sections[] = {
        "[conv2d]\nout = 4\npad = 1\n", "[conv2d c]\nout = 4\nkernel = 1\n", "[batchnorm]\n", "[relu]\n",
        "[relu r]\n", "[maxpool]\n", "[avgpool]\nkernel = 2\nstride = 1\n", "[add]\nfrom = -1, -2\n",
        "[concat]\nfrom = -1, -2\n", "[mul]\nfrom = c, r\n", "[flatten]\n", "[linear]\nout = 8\n",
        "[layernorm]\neps = 1e-3\n", "[gelu]\n", "[dropout]\np = 0.1\n", "[global_avgpool]\n",
        "[reshape]\ndim0 = -1\ndim1 = 2\n", "[transpose]\n", "[sigmoid]\n", "[tanh]\n",
        "[leaky_relu]\nslope = -1\n", "[embedding]\nnum = 10\ndim = 4\n",
    };
    static const char *const strays[] = {
        "out = 0\n", "from = input\n", "from = -3\n", "kernel = 5\n", "# c\n", "\n", "stride = 2\n",
        "groups = 2\n", "bias = 0\n", "dilation = 2\n", "from = c\n", "pad = 1\n",
    };
    const uint64_t nsections = sizeof sections / sizeof *sections, nstrays = sizeof strays / sizeof *strays;
    uint64_t state = 12345;
    char buf[2048];
    unsigned long runs0 = fuzz_runs, ok0 = fuzz_ok;
    int bad0 = fuzz_bad;
    for (int t = 0; t < 3000; t++) {
        size_t len = 0;
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        int count = 1 + (int)((state >> 33) % 12);
        for (int j = 0; j <= count; j++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = state >> 33;
            const char *p = j == 0 ? inputs[r % 2] : r % 8 == 0 ? strays[(r >> 3) % nstrays]
                                                                : sections[(r >> 3) % nsections];
            size_t n = strlen(p);
            if (len + n >= sizeof buf) break;
            memcpy(buf + len, p, n);
            len += n;
        }
        fuzz_one(buf, len);
    }
    CHECK(fuzz_bad == bad0, "%lu random specs: %lu parse, the rest fail cleanly", fuzz_runs - runs0, fuzz_ok - ok0);
}

// ----------------------------------------------------------------------------
// the man page

// The text of a troff example block: "\-" is '-', "\e" is '\', "\&" is nothing.
static char *unescape(const char *s, size_t n) {
    char *out = malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && s[i + 1] == '-') out[o++] = '-', i++;
        else if (s[i] == '\\' && i + 1 < n && s[i + 1] == 'e') out[o++] = '\\', i++;
        else if (s[i] == '\\' && i + 1 < n && s[i + 1] == '&') i++;
        else out[o++] = s[i];
    }
    out[o] = 0;
    return out;
}

// A number as troff writes it: '-' as "\-" (a minus, not a hyphen).
static const char *troff_minus(const char *num) {
    static char buf[64];
    size_t o = 0;
    for (const char *c = num; *c && o + 3 < sizeof buf; c++) {
        if (*c == '-') buf[o++] = '\\';
        buf[o++] = *c;
    }
    buf[o] = 0;
    return buf;
}

static void test_man_page(void) {
    const char *page_path = "man/man5/netsmith-spec.5";
    size_t len;
    char *page = read_text(page_path, &len);
    CHECK(page != NULL, "%s exists", page_path);
    if (!page) return;

    // Every op has an entry ".TP\n.B op\n", in ns_ops order, and its block,
    // up to the next op's, lists each attribute with its type and default:
    // .BR kernel " (integer, default 3)".
    const char *prev = page;
    for (int op = 0; op < NS_OP_COUNT; op++) {
        char tag[64], next[64];
        snprintf(tag, sizeof tag, "\n.TP\n.B %s\n", ns_ops[op].name);
        const char *at = strstr(prev, tag);
        CHECK(at != NULL, "the man page describes op %s, in table order", ns_ops[op].name);
        if (!at) continue;
        prev = at + 1;
        const char *end = NULL;
        if (op + 1 < NS_OP_COUNT) {
            snprintf(next, sizeof next, "\n.TP\n.B %s\n", ns_ops[op + 1].name);
            end = strstr(at + 1, next);
        }
        char *block = end ? strndup(at, (size_t)(end - at)) : strdup(at);
        if (op == NS_OP_INPUT) { // its attributes are the shape
            CHECK(strstr(block, "\n.BR shape ") != NULL, "input: documents shape");
        } else {
            const ns_op_info *info = &ns_ops[op];
            // Integers are "(integer, default D)" or "(integer, required)",
            // and the parser agrees: leaving out a required one is an error.
            for (int a = 0; a < NS_MAX_ATTRS && info->iattr[a]; a++) {
                char num[32], want[128], req[128];
                snprintf(num, sizeof num, "%" PRId64, info->idefault[a]);
                snprintf(want, sizeof want, "\n.BR %s \" (integer, default %s)\"\n", info->iattr[a], troff_minus(num));
                snprintf(req, sizeof req, "\n.BR %s \" (integer, required)\"\n", info->iattr[a]);
                int is_req = strstr(block, req) != NULL;
                CHECK(is_req || strstr(block, want) != NULL, "%s: documents %s (integer, %s%s)", info->name,
                      info->iattr[a], is_req ? "required" : "default ", is_req ? "" : num);
                char text[512], needs[64];
                size_t used = (size_t)snprintf(text, sizeof text, "[input]\nshape = 4x8x8\n[%s]\nfrom = -1", info->name);
                for (int k = 1; k < info->min_inputs; k++) used += (size_t)snprintf(text + used, sizeof text - used, ", -1");
                used += (size_t)snprintf(text + used, sizeof text - used, "\n");
                for (int b = 0; b < NS_MAX_ATTRS && info->iattr[b]; b++) { // the other required ones
                    snprintf(req, sizeof req, "\n.BR %s \" (integer, required)\"\n", info->iattr[b]);
                    if (b != a && strstr(block, req))
                        used += (size_t)snprintf(text + used, sizeof text - used, "%s = 1\n", info->iattr[b]);
                }
                ns_model m;
                ns_err err = {""};
                int rc = parse(&m, text, &err);
                snprintf(needs, sizeof needs, "needs %s = N", info->iattr[a]);
                CHECK(is_req == (rc < 0 && strstr(err.msg, needs) != NULL), "%s: the parser %s %s (%s)", info->name,
                      is_req ? "requires" : "does not require", info->iattr[a], rc ? err.msg : "parsed");
                ns_model_free(&m);
            }
            for (int a = 0; a < NS_MAX_ATTRS && info->fattr[a]; a++) {
                char num[32], want[128];
                snprintf(num, sizeof num, "%g", info->fdefault[a]);
                snprintf(want, sizeof want, "\n.BR %s \" (real, default %s)\"\n", info->fattr[a], troff_minus(num));
                CHECK(strstr(block, want) != NULL, "%s: documents %s (real, default %s)", info->name,
                      info->fattr[a], num);
            }
            char inputs[64];
            if (info->min_inputs == info->max_inputs)
                snprintf(inputs, sizeof inputs, "%d input", info->min_inputs);
            else
                snprintf(inputs, sizeof inputs, "%d to %d inputs", info->min_inputs, info->max_inputs);
            CHECK(strstr(block, inputs) != NULL, "%s: says it takes %s", info->name, inputs);
        }
        free(block);
    }

    // Worked examples: a line '.\" example: PATH', then ".nf\n.ft CW\n" ...
    // ".ft\n.fi\n": the file after unescaping, which therefore parses.
    int nexamples = 0;
    for (const char *p = strstr(page, ".\\\" example: "); p; p = strstr(p + 1, ".\\\" example: ")) {
        char path[256];
        if (sscanf(p, ".\\\" example: %255s", path) != 1) continue;
        nexamples++;
        const char *open = strstr(p, "\n.nf\n.ft CW\n");
        const char *body = open ? open + strlen("\n.nf\n.ft CW\n") : NULL;
        const char *close = body ? strstr(body - 1, "\n.ft\n.fi\n") : NULL;
        char *shown = close ? unescape(body, (size_t)(close + 1 - body)) : NULL;
        size_t flen;
        char *file = read_text(path, &flen);
        CHECK(shown && file && strcmp(shown, file) == 0, "man page example %s is the file, verbatim", path);
        if (shown) {
            ns_model m;
            ns_err err = {""};
            int rc = parse(&m, shown, &err);
            CHECK(rc == 0, "man page example %s parses%s%s", path, rc ? ": " : "", rc ? err.msg : "");
            ns_model_free(&m);
        }
        free(shown);
        free(file);
    }
    CHECK(nexamples >= 2, "the man page has worked examples from examples/specs (%d)", nexamples);
    free(page);
}

int main(void) {
    test_examples();
    test_builtins();
    test_text_transformer_spec();
    test_all_ops();
    test_errors();
    test_files();
    test_writer_errors();
    test_fuzz();
    test_man_page();
    return check_done();
}
