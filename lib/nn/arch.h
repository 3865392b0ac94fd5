// arch.h: built-in architectures. Node and tensor names follow the module
// names of the usual PyTorch definitions (the CIFAR ResNets of the model-
// merging papers: layer1.0.conv1.weight, layer2.0.shortcut.0.weight), so such
// a state_dict maps one to one, num_batches_tracked aside; torchvision's own
// VGG/ResNet modules name some layers differently (features.0, downsample.0).
//
//   mlp       flatten, [linear(h), relu] per hidden size, linear(classes)
//   lenet     LeNet-5: conv5(6,pad2) relu maxpool conv5(16) relu maxpool fc120 fc84 fc
//   vgg       depth/2 stages of [conv3-bn-relu] x2 + maxpool, widths w, 2w, 4w, ...;
//             flatten, linear(classes)
//   resnet20  CIFAR ResNet (3 stages x 3 BasicBlocks, 16w/32w/64w channels, 1x1
//             conv+BN shortcuts where the shape changes), the ResNet-20xW of the
//             model-merging papers
//   resnet32, resnet44, resnet56
//             the same with 5, 7, 9 BasicBlocks per stage (He et al.'s 6n+2
//             layers). resnet56 for 3x32x32 and 10 classes: 855,770 parameters
//             (the 0.85M usually quoted is 853,018, with parameter-free
//             shortcuts; these have the 1x1 conv+BN ones)
//   resnet18  ResNet-18 for small inputs (3x3 stem, no max pool), 64w..512w
//   torchvision-resnet18  torchvision's resnet18, names and all: 7x7/2 stem
//             conv, 3x3/2 max pool, shortcuts named downsample.0/.1 (built for
//             tns-from-torch; not in ns_arch_names)
//   vit       Vision Transformer: patch_embed (P x P patches, D = 64w features),
//             cls_token, pos_embed, depth pre-norm blocks [layernorm, attention
//             (heads), add, layernorm, linear(4D), gelu, linear(D), add] as
//             torch's TransformerEncoderLayer(norm_first=True, activation=gelu,
//             dropout 0; nodes encoder.layers.I.norm1, .self_attn, .linear1,
//             .linear2, .norm2 as its modules), then layernorm (norm), the class
//             token (pool), linear(classes) (head).
//             Default: patch 7, depth 4, heads 4, D = 64
//   text-transformer
//             CLIP's text tower, small: the input is L token ids (a vector of L,
//             in_c = L), token_embedding (vocab x D, D = 64w), positional_embedding,
//             depth pre-norm blocks as vit's with causal attention (each token
//             sees itself and the tokens before it), ln_final, pool (token_pool
//             mode 2: the token at the largest id, CLIP's end-of-text token;
//             inputs ln_final and the ids), text_projection (linear to classes,
//             no bias). Default: depth 2, heads 4, D = 64
#ifndef NS_ARCH_H
#define NS_ARCH_H

#include "nn/model.h"

typedef struct ns_arch_opts {
    int in_c, in_h, in_w;   // input (C, H, W); in_h = in_w = 0 for a vector input of in_c
    int classes;
    double width;           // width multiplier (resnets: 1 = 16 channels; vgg: base channels / 16)
    int depth;              // vgg: convolutions (even); vit: blocks; 0: the default
    int hidden[8], nhidden; // mlp hidden sizes
    int patch, heads;       // vit: patch size, attention heads; 0: the default
} ns_arch_opts;

// Names of the built-ins, NULL-terminated, for --help texts.
extern const char *const ns_arch_names[];

// Builds the named architecture into an empty model (nodes and zeroed,
// resolved parameters). Fails on an unknown name or options it cannot use.
int ns_arch_build(ns_model *m, const char *name, const ns_arch_opts *o, ns_err *err);
// text-transformer, whose token ids are 0..vocab-1 (ns_arch_build refuses it:
// it needs the vocabulary's size).
int ns_arch_build_text(ns_model *m, const ns_arch_opts *o, int vocab, ns_err *err);

// Parses an --in value, "CxHxW" (an image) or "D" (a vector), into o's
// in_c/in_h/in_w (in_h = in_w = 0 for D). Every size must be >= 1 and, when
// max_c or max_hw is not 0, at most that. Returns 0, or -1 when s is not such
// a value (the caller names it).
int ns_arch_parse_in(const char *s, long max_c, long max_hw, ns_arch_opts *o);

#endif
