// statedict.h: PyTorch state_dicts in and out of netsmith.
//
// A state_dict here is a list of (name, tensor) in file order, each tensor
// C-contiguous in the dtype the file had (f32, f16, bf16, f64, i64, ...).
// Readers:
//   torch.save's zip format (torch >= 1.6): <dir>/data.pkl, a pickle run by
//     the restricted machine of pickle.h, and <dir>/data/<key>, one file per
//     storage, read with libarchive; views (offsets, strides) are copied out.
//   safetensors: an 8-byte little-endian header length, a JSON header
//     {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}},
//     then the data; offsets must lie inside the data, match the shape and
//     not overlap.
// The legacy (pre-1.6, non-zip) torch.save format is refused with a message.
// Writers: safetensors, and a torch.save zip of an OrderedDict of tensors
// that torch.load(weights_only=True) accepts.
//
// Mapping: a model (nn/model.h) built from a built-in or a spec has tensors
// named "<node>.<slot>", which are PyTorch's state_dict names when the nodes
// are named as the modules are. Loading checks every shape, names the first
// tensor missing or left over, and accepts BatchNorm's num_batches_tracked
// (an integer scalar PyTorch keeps and netsmith does not).
#ifndef NS_INTEROP_STATEDICT_H
#define NS_INTEROP_STATEDICT_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "base/tensor.h"
#include "nn/model.h"
#include "stream/tns.h"

#define NS_TORCH_MAX_PICKLE (256u << 20)          // data.pkl bytes
#define NS_SAFETENSORS_MAX_HEADER (100u << 20)    // as the safetensors library

typedef struct ns_sd_entry {
    char name[NS_NAME_MAX + 1];
    ns_tensor t;
} ns_sd_entry;

typedef struct ns_state_dict {
    ns_sd_entry *items;
    int n, cap;
} ns_state_dict;

void ns_state_dict_init(ns_state_dict *sd);
void ns_state_dict_free(ns_state_dict *sd);
// Appends name with t (moved: *t is left empty). Fails on a bad or duplicate name.
int ns_state_dict_add(ns_state_dict *sd, const char *name, size_t n, ns_tensor *t, ns_err *err);
int ns_state_dict_find(const ns_state_dict *sd, const char *name); // index or -1

// Reads a torch.save zip or a safetensors file from memory, by its first
// bytes. key: for a zip, the path of the dict of tensors inside the pickled
// object, "/"-separated ("state_dict", "model/ema"); NULL or "" for the top.
int ns_state_dict_read(ns_state_dict *sd, const uint8_t *buf, size_t len, const char *key, ns_err *err);
int ns_state_dict_read_torch(ns_state_dict *sd, const uint8_t *buf, size_t len, const char *key, ns_err *err);
int ns_state_dict_read_safetensors(ns_state_dict *sd, const uint8_t *buf, size_t len, ns_err *err);
// A whole file ("-": standard input) into memory, at most max bytes.
int ns_read_whole(const char *path, size_t max, uint8_t **buf, size_t *len, ns_err *err);

// Writers. f is written from its current position; write errors fail.
// metadata: "key=value" pairs for safetensors' __metadata__ (may be NULL).
int ns_state_dict_write_safetensors(const ns_state_dict *sd, FILE *f, const char *const *metadata, int nmeta,
                                    ns_err *err);
// archive_name: the top folder inside the zip (torch uses the file's stem).
int ns_state_dict_write_torch(const ns_state_dict *sd, FILE *f, const char *archive_name, ns_err *err);

// Removes prefix from every name that has it; when every name starts with
// "module." (torch.nn.DataParallel), that is removed too. Fails when a name
// becomes empty or two names become one.
int ns_state_dict_strip(ns_state_dict *sd, const char *prefix, ns_err *err);

// Copies sd into m's used tensors (m built with zeroed parameters): names must
// match one to one, shapes equal (or equal once dimensions of size 1 are
// dropped), float dtypes are converted to f32. The first tensor missing, left
// over or of the wrong shape or dtype is named in the error.
int ns_model_load_state_dict(ns_model *m, const ns_state_dict *sd, ns_err *err);
// m's used tensors as a state_dict (f32, copied), plus an i64 scalar
// "<node>.num_batches_tracked" (0) after each batchnorm's tensors, so
// torch's load_state_dict(strict=True) finds what it expects.
int ns_state_dict_from_model(ns_state_dict *sd, const ns_model *m, ns_err *err);

#endif
