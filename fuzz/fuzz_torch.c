// fuzz_torch.c: libFuzzer target for the PyTorch readers (lib/interop): the
// restricted pickle machine (inputs starting with the PROTO opcode 0x80 go
// to it directly), torch.save zips and safetensors (the others, through
// ns_state_dict_read). What fails must say why; what loads must write back
// as safetensors and as a torch zip and read back to the same tensors, and
// load onto (or be refused by, with a message) a small MLP.
// Built and run by fuzz/run.sh (`make fuzz`); seeds are the committed
// fixtures and hostile corpus of tests/ref/.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interop/pickle.h"
#include "interop/statedict.h"
#include "nn/arch.h"

static void write_back(const ns_state_dict *sd, int torch_zip) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    ns_err err = {{0}};
    int rc = torch_zip ? ns_state_dict_write_torch(sd, f, "archive", &err)
                       : ns_state_dict_write_safetensors(sd, f, NULL, 0, &err);
    fclose(f);
    if (rc < 0) {
        if (!err.msg[0]) abort();
        free(buf);
        return; // a dtype the format lacks
    }
    ns_state_dict back;
    ns_state_dict_init(&back);
    if (ns_state_dict_read(&back, (const uint8_t *)buf, len, NULL, &err) < 0) {
        fprintf(stderr, "fuzz_torch: written state_dict does not read back: %s\n", err.msg);
        abort();
    }
    if (back.n != sd->n) abort();
    for (int i = 0; i < sd->n; i++)
        if (strcmp(back.items[i].name, sd->items[i].name) || back.items[i].t.numel != sd->items[i].t.numel ||
            memcmp(back.items[i].t.data, sd->items[i].t.data, ns_tensor_nbytes(&sd->items[i].t)))
            abort();
    ns_state_dict_free(&back);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ns_err err = {{0}};
    if (size && data[0] == 0x80) {
        ns_pickle p;
        if (ns_pickle_load(&p, data, size, &err) < 0) {
            if (!err.msg[0]) abort();
            return 0;
        }
        if (!p.root) abort();
        for (int i = 0; i < p.nstorages; i++)
            if (p.storages[i].numel < 0) abort();
        ns_pickle_free(&p);
        return 0;
    }
    ns_state_dict sd;
    ns_state_dict_init(&sd);
    if (ns_state_dict_read(&sd, data, size, NULL, &err) < 0) {
        if (!err.msg[0]) abort();
        ns_state_dict_free(&sd);
        return 0;
    }
    write_back(&sd, 0);
    write_back(&sd, 1);
    ns_model m;
    ns_model_init(&m);
    ns_arch_opts o = {.in_c = 4, .classes = 3, .width = 1, .hidden = {5}, .nhidden = 1};
    err.msg[0] = 0;
    if (ns_arch_build(&m, "mlp", &o, &err) < 0) abort();
    if (ns_model_load_state_dict(&m, &sd, &err) < 0 && !err.msg[0]) abort();
    ns_model_free(&m);
    ns_state_dict_free(&sd);
    return 0;
}
