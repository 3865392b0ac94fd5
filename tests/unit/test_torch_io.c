// test_torch_io.c: lib/interop against PyTorch. The checkpoints in
// tests/ref/torch_io/ (gen_torch_io.py: torch.save zips and safetensors in
// f32, f16 and bf16, a checkpoint dict with DataParallel's 'module.' prefix,
// strided and offset views of one storage) are loaded onto the built-ins and
// the engine's eval logits must equal torch's within the engine tests'
// tolerance. Then the writers: a state_dict written as safetensors and as a
// torch zip reads back bit for bit; and the pickle machine on hand-made
// pickles: what it must refuse, and that it says what it refused.
// sanitize: yes
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/blas.h"
#include "check.h"
#include "interop/pickle.h"
#include "interop/statedict.h"
#include "nn/arch.h"
#include "nn/engine.h"
#include "torch_ref.h"

#define DIR "tests/ref/torch_io/"
#define REF_TOL 1e-4 // as test_engine.c

typedef struct tcase {
    const char *name, *arch, *key;
    ns_arch_opts o;
} tcase;

static const tcase cases[] = {
    {"resnet20", "resnet20", NULL, {.in_c = 3, .in_h = 16, .in_w = 16, .classes = 10, .width = 0.25}},
    {"vgg", "vgg", NULL, {.in_c = 3, .in_h = 16, .in_w = 16, .classes = 10, .width = 0.5, .depth = 4}},
    {"lenet", "lenet", "state_dict", {.in_c = 1, .in_h = 16, .in_w = 16, .classes = 10, .width = 1}},
    {"mlp", "mlp", NULL, {.in_c = 20, .classes = 10, .width = 1, .hidden = {16, 12}, .nhidden = 2}},
    {"vit", "vit", NULL, {.in_c = 3, .in_h = 16, .in_w = 16, .classes = 10, .width = 0.25, .depth = 1, .patch = 4, .heads = 2}},
};

static int load_file(ns_state_dict *sd, const char *path, const char *key, ns_err *err) {
    uint8_t *buf;
    size_t len;
    if (ns_read_whole(path, (size_t)1 << 30, &buf, &len, err) < 0) return -1;
    int rc = ns_state_dict_read(sd, buf, len, key, err);
    free(buf);
    return rc < 0 ? -1 : ns_state_dict_strip(sd, NULL, err);
}

static void check_logits(const tcase *c, const char *ext) {
    char path[256];
    snprintf(path, sizeof path, DIR "%s.%s", c->name, ext);
    ns_err err = {{0}};
    ns_state_dict sd;
    ns_state_dict_init(&sd);
    ns_model m;
    ns_model_init(&m);
    int ok = load_file(&sd, path, strcmp(ext, "pt") == 0 ? c->key : NULL, &err) == 0 &&
             ns_arch_build(&m, c->arch, &c->o, &err) == 0 && ns_model_load_state_dict(&m, &sd, &err) == 0;
    CHECK(ok, "%s loads onto %s%s%s", path, c->arch, ok ? "" : ": ", ok ? "" : err.msg);
    const ns_tensor *x = ref_get(c->name, "input"), *y = ref_get(c->name, "logits");
    if (ok && x && y) {
        ns_engine e;
        const float *out = NULL;
        if (ns_engine_init(&e, &m, x->shape[0], 0, &err) == 0) {
            out = ns_engine_forward(&e, x->data, x->shape[0], 0, &err);
            double mabs, rel = out ? ref_err(out, y->data, y->numel, &mabs) : 1;
            CHECK(out && rel <= REF_TOL, "%s: eval logits match torch (err %.2e)", path, rel);
            ns_engine_free(&e);
        } else {
            CHECK(0, "%s: engine: %s", path, err.msg);
        }
    }
    ns_model_free(&m);
    ns_state_dict_free(&sd);
}

// Both writers: what is written reads back the same, names, dtypes and bytes.
static void check_writers(void) {
    ns_err err = {{0}};
    ns_state_dict sd, back;
    ns_state_dict_init(&sd);
    if (load_file(&sd, DIR "resnet20.pt", NULL, &err) < 0) {
        CHECK(0, "read resnet20.pt: %s", err.msg);
        return;
    }
    for (int format = 0; format < 2; format++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        int rc = format ? ns_state_dict_write_torch(&sd, f, "model", &err)
                        : ns_state_dict_write_safetensors(&sd, f, NULL, 0, &err);
        fclose(f);
        ns_state_dict_init(&back);
        if (rc == 0) rc = ns_state_dict_read(&back, (const uint8_t *)buf, len, NULL, &err);
        int same = rc == 0 && back.n == sd.n;
        for (int i = 0; same && i < sd.n; i++)
            same = !strcmp(back.items[i].name, sd.items[i].name) && back.items[i].t.dtype == sd.items[i].t.dtype &&
                   back.items[i].t.numel == sd.items[i].t.numel &&
                   !memcmp(back.items[i].t.data, sd.items[i].t.data, ns_tensor_nbytes(&sd.items[i].t));
        CHECK(same, "%s written and read back: %d tensors, the same%s%s", format ? "torch zip" : "safetensors",
              back.n, rc ? ": " : "", rc ? err.msg : "");
        ns_state_dict_free(&back);
        free(buf);
    }
    ns_state_dict_free(&sd);
}

// Safetensors headers of every length from 40 to 300 bytes: one whose length
// has the low byte 0x80 (the pickle PROTO opcode) was once taken for a
// legacy torch pickle (found by fuzz_torch).
static void check_header_lengths(void) {
    int bad = 0, first_bad = 0;
    for (int n = 1; n <= NS_NAME_MAX; n++) {
        ns_state_dict sd, back;
        ns_state_dict_init(&sd);
        ns_state_dict_init(&back);
        ns_err err = {{0}};
        char name[300];
        memset(name, 'a', (size_t)n);
        name[n] = 0;
        ns_tensor t = {0};
        int64_t shape[1] = {2};
        int ok = ns_tensor_alloc(&t, NS_F32, 1, shape, &err) == 0 && ns_state_dict_add(&sd, name, (size_t)n, &t, &err) == 0;
        ns_tensor_free(&t);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        ok = ok && ns_state_dict_write_safetensors(&sd, f, NULL, 0, &err) == 0;
        fclose(f);
        ok = ok && ns_state_dict_read(&back, (const uint8_t *)buf, len, NULL, &err) == 0 && back.n == 1;
        if (!ok && !bad++) first_bad = n;
        free(buf);
        ns_state_dict_free(&sd);
        ns_state_dict_free(&back);
    }
    CHECK(!bad, "safetensors with headers of every length read back (%d failed, first with a %d-byte name)", bad,
          first_bad);
}

// A pickle that must fail, with want in the message.
static void refuse(const char *what, const void *bytes, size_t n, const char *want) {
    ns_pickle p;
    ns_err err = {{0}};
    int rc = ns_pickle_load(&p, bytes, n, &err);
    CHECK(rc < 0 && strstr(err.msg, want), "pickle: %s is refused (%s)", what, rc < 0 ? err.msg : "accepted");
}

static void check_pickles(void) {
    // os.system("touch /tmp/x") by REDUCE, protocol 2
    const char sys_reduce[] = "\x80\x02" "cposix\nsystem\n" "X\x0c\x00\x00\x00touch /tmp/x\x85R.";
    refuse("os.system", sys_reduce, sizeof sys_reduce - 1, "forbidden global posix.system");
    const char eval[] = "\x80\x02" "cbuiltins\neval\n" "X\x01\x00\x00\x00" "1\x85R.";
    refuse("builtins.eval", eval, sizeof eval - 1, "forbidden global builtins.eval");
    const char stack_global[] = "\x80\x04\x8c\x02os\x8c\x06system\x93.";
    refuse("STACK_GLOBAL os.system", stack_global, sizeof stack_global - 1, "forbidden global os.system");
    const char module_class[] = "\x80\x02" "ctorch.nn.modules.linear\nLinear\n)\x81.";
    refuse("a module class", module_class, sizeof module_class - 1, "forbidden global torch.nn.modules.linear.Linear");
    const char newobj[] = "\x80\x02" "ccollections\nOrderedDict\n)\x81.";
    refuse("NEWOBJ", newobj, sizeof newobj - 1, "opcode 0x81 is not allowed");
    const char inst[] = "(ios\nsystem\n.";
    refuse("INST", inst, sizeof inst - 1, "opcode 0x69");
    // 5000 nested MARKs
    char marks[5003];
    memset(marks, '(', sizeof marks);
    marks[0] = (char)0x80, marks[1] = 2, marks[sizeof marks - 1] = '.';
    refuse("a MARK bomb", marks, sizeof marks, "MARKs nested deeper");
    const char memo_get[] = "\x80\x02h\x07.";
    refuse("a BINGET of an empty slot", memo_get, sizeof memo_get - 1, "memo slot 7 is empty");
    const char memo_put[] = "\x80\x02Nr\xff\xff\xff\x7f.";
    refuse("a LONG_BINPUT far away", memo_put, sizeof memo_put - 1, "memo index 2147483647");
    const char long_str[] = "\x80\x02X\xff\xff\xff\xff" "abc.";
    refuse("a string length past the end", long_str, sizeof long_str - 1, "a string of 4294967295 bytes");
    const char long_bytes8[] = "\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.";
    refuse("a BINBYTES8 length past the end", long_bytes8, sizeof long_bytes8 - 1, "bytes, 1 left");
    const char no_stop[] = "\x80\x02N";
    refuse("no STOP", no_stop, sizeof no_stop - 1, "truncated");
    const char underflow[] = "\x80\x02R.";
    refuse("REDUCE on an empty stack", underflow, sizeof underflow - 1, "stack underflow");
    const char big_long[] = "\x80\x02\x8a\x09" "123456789.";
    refuse("a 9-byte integer", big_long, sizeof big_long - 1, "an integer of 9 bytes");
    // A tensor that reaches past its storage: 4 elements declared, a 2x3 view.
    const char past[] = "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n"
                        "((X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQ"
                        "K\x00K\x02K\x03\x86K\x03K\x01\x86\x89)tR.";
    refuse("a view past its storage", past, sizeof past - 1, "reaching element 5 of storage 0, which holds 4");
    const char twice[] = "\x80\x02" "(X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQ"
                         "(X\x07\x00\x00\x00storage" "ctorch\nLongStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQ\x86.";
    refuse("one storage key with two dtypes", twice, sizeof twice - 1, "storage 0 declared twice");
    const char key[] = "\x80\x02" "(X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\nX\x05\x00\x00\x00../..X\x03\x00\x00\x00" "cpuK\x04tQ.";
    refuse("a storage key with a path", key, sizeof key - 1, "a storage key that is not");
    // what is allowed runs: an OrderedDict with a nested list and a BUILD of _metadata
    const char fine[] = "\x80\x02" "ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00" "a]K\x01" "aX\x01\x00\x00\x00" "bG@\x09!\xfbTD-\x18u}b.";
    ns_pickle p;
    ns_err err = {{0}};
    int rc = ns_pickle_load(&p, (const uint8_t *)fine, sizeof fine - 1, &err);
    const ns_pk_value *a = rc == 0 ? ns_pk_dict_get(p.root, "a", 1) : NULL, *b = rc == 0 ? ns_pk_dict_get(p.root, "b", 1) : NULL;
    CHECK(rc == 0 && a && a->type == NS_PK_LIST && a->n == 1 && b && b->type == NS_PK_FLOAT && b->f > 3.14 && b->f < 3.15,
          "pickle: an OrderedDict of a list and a float reads (%s)", rc ? err.msg : "ok");
    if (rc == 0) ns_pickle_free(&p);
}

int main(void) {
    ns_blas_init();
    ns_err err = {{0}};
    const char *refs_path = DIR "torch_io.tns";
    if (access(refs_path, R_OK) != 0) {
        SKIP("%s is missing (regenerate: /usr/bin/python3 tests/ref/gen_torch_io.py)", refs_path);
        return check_done();
    }
    if (load_refs(refs_path, &err) < 0) {
        CHECK(0, "read %s: %s", refs_path, err.msg);
        free_refs();
        return check_done();
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        check_logits(&cases[i], "pt");
        check_logits(&cases[i], "safetensors");
    }
    free_refs();
    check_writers();
    check_header_lengths();
    check_pickles();
    return check_done();
}
