// test_spec.c: the text architecture format (lib/nn/spec.h, netsmith-spec(5)).
// sanitize: yes (untrusted input: runs under ASan/UBSan in `make check-sanitize`)
//
// - The examples in examples/specs parse to the nodes, shapes and parameter
//   counts worked out by hand in their comments, and run forward.
// - ns_spec_write then ns_spec_parse reproduces every built-in architecture
//   of lib/nn/arch.c, the examples and a spec that uses every op: the same node
//   names, ops, inputs, attribute values, shapes and parameter counts, and
//   writing the result again gives the same text.
// - The man page documents every op and attribute with ns_ops' defaults, and
//   its worked examples are the files in examples/specs.
// Mistakes, files and limits, the writer's refusals and the fuzzing:
// test_spec_errors.c; the shared helpers: spec_check.h.
// Run from the repository root (tests/run.sh does).
#include "nn/arch.h"
#include "check.h"
#include "nn/engine.h"
#include "nn/spec.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "spec_check.h"

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
    test_man_page();
    return check_done();
}
