// vlm.h: a small CLIP-style vision-language model ("clip-small", made by
// vlm-train). Two towers map into one joint space of width E:
//   image tower  an engine model: the image batch as img-read emits it -> (B, E)
//   text tower   tokenizer (lib/cav/tokenize.h) -> mean of token embeddings (D)
//                -> linear projection -> (n, E) (a bag of words), or
//                tokenizer -> start, word ids, end, padding (L ids) -> an engine
//                model, nn/arch.h's text-transformer (causal blocks, pooled at
//                the end token) -> (n, E)
// Similarity is the cosine of the two embeddings, times exp(logit_scale).
//
// The model file is one TNS stream (tns(5)): the image tower as a model
// stream (model.h) whose meta record also carries vlm.kind = "clip-small",
// vlm.dim, vlm.vocab (the text tower's word list) and vlm.logit_scale, and
// whose tensor records also hold the text tower: "text.embedding" (V, D),
// "text.proj.weight" (E, D), "text.proj.bias" (E).
// A transformer text tower is said by vlm.text_tower = "transformer",
// vlm.text_context L, vlm.text_depth, vlm.text_heads; its tensors are the
// text-transformer's, named "text." + its own names (text.token_embedding.weight
// (V+2, D), ...). Both have "text.logit_scale" (1).
#ifndef NS_VLM_H
#define NS_VLM_H

#include <stdint.h>

#include "base/err.h"
#include "nn/model.h"

typedef struct ns_vlm ns_vlm;

// Loads a vlm-train model file.
int ns_vlm_load(const char *path, ns_vlm **out, ns_err *err);
void ns_vlm_free(ns_vlm *v);

// E, the joint embedding width.
int64_t ns_vlm_dim(const ns_vlm *v);

// The image tower as an engine model: input = the image batch as img-read
// emits it, output (B, E), not normalised. Owned by v.
ns_model *ns_vlm_image_model(ns_vlm *v);

// Identity string for provenance: the same for the same file contents.
const char *ns_vlm_fingerprint(const ns_vlm *v);

// n texts -> out (n, E), each row L2-normalised.
int ns_vlm_embed_texts(const ns_vlm *v, const char *const *texts, int64_t n, float *out,
                       ns_err *err);

#endif
