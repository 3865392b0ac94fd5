// test_spec_errors.c: how the text architecture format (lib/nn/spec.h,
// netsmith-spec(5)) fails, and that it fails cleanly.
// sanitize: yes (untrusted input: runs under ASan/UBSan in `make check-sanitize`)
//
// - Every kind of mistake gives "<label>:<line>: ..." with the right line and
//   the bad text, and leaves the model untouched.
// - Files and limits: a missing file, a directory, a spec of exactly the
//   size limit and one byte more, file:line in messages, the section limit.
// - What ns_spec_write refuses (an output before the last node, a name with
//   a space, a write error) and what it must write (required attributes,
//   reals in their shortest exact form).
// - Truncated and byte-flipped examples, and random specs made of plausible
//   lines, either parse (and then round-trip) or fail cleanly.
// The examples, round trips and the man page: test_spec.c; the shared
// helpers: spec_check.h.
// Run from the repository root (tests/run.sh does).
#include "check.h"
#include "nn/spec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spec_check.h"

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


int main(void) {
    test_errors();
    test_files();
    test_writer_errors();
    test_fuzz();
    return check_done();
}
