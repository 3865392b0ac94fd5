// ops.h: the op kernels of the training engine, forward and backward, as plain
// functions over float arrays (llm.c style). The graph/autodiff engine calls
// these; this header is the whole contract between it and the kernels.
//
// Conventions
// - x_forward(outputs..., saved..., inputs..., params..., dims...) and
//   x_backward(dinputs..., dparams..., dout, saved..., inputs/params..., dims...).
// - Backward kernels ACCUMULATE (+=) into every gradient buffer; the caller
//   zeroes them. A gradient pointer may be NULL when that gradient is not
//   wanted; the kernel then skips that work. The *_ex variants of the conv,
//   batch norm, relu and add backward can overwrite instead, for a caller
//   that knows a buffer has no other contribution yet (no zeroing pass).
// - Kernels never allocate, print or fail. Scratch memory (im2col columns) and
//   state saved for backward (batch statistics, argmax indices, dropout masks)
//   are buffers the caller passes in. Geometry is validated once, up front, by
//   the *_geom_init functions, which return -1 with a message in err.
// - Dense products go through ns_sgemm (lib/base/blas.h); convolution builds its
//   own from ns_tile_gemm_rows tiles. Loops over batch/channels use OpenMP
//   with a static schedule (convolution: dynamic, over samples); every
//   reduction (BN statistics, weight/bias gradients, loss sums) runs in a
//   fixed order inside one thread, accumulating in double (over float partial
//   sums of a block or tile), so results do not depend on the thread count
//   (BLIS's own sums aside).
// - Float32 everywhere; semantics follow PyTorch's ops of the same name.
//
// Glossary of dimension letters
//   N  batch (or rows)          C  channels (input)        OC output channels
//   H, W  input height, width   OH, OW output height, width
//   S  H*W, the spatial size    KH, KW kernel height, width
//   SH, SW stride  PH, PW padding  DH, DW dilation  G groups
//   IN, OUT linear features     D  feature size (layernorm, embedding)
//   K  classes                  V  vocabulary (embedding rows)
//   R, Cm  rows, columns of a matrix (transpose)
//   n  number of elements of an elementwise op
#ifndef NS_OPS_H
#define NS_OPS_H

#include <stdint.h>

#include "base/err.h"

// ----------------------------------------------------------------------------
// linear (op_linear.c): out = inp W^T + b, W (OUT, IN) as in torch.nn.Linear.

void ns_linear_forward(float *out,          // (N, OUT)
                       const float *inp,    // (N, IN)
                       const float *weight, // (OUT, IN)
                       const float *bias,   // (OUT) or NULL
                       int64_t N, int64_t IN, int64_t OUT);
void ns_linear_backward(float *dinp,         // (N, IN) or NULL
                        float *dweight,      // (OUT, IN) or NULL
                        float *dbias,        // (OUT) or NULL
                        const float *dout,   // (N, OUT)
                        const float *inp,    // (N, IN)
                        const float *weight, // (OUT, IN)
                        int64_t N, int64_t IN, int64_t OUT);

// ----------------------------------------------------------------------------
// conv2d (op_conv.c): NCHW cross-correlation as torch.nn.functional.conv2d.
// Fill the first block, then call ns_conv2d_geom_init to check it and set OH, OW.
// 3x3 stride-1 convolutions with 16k channels go through Winograd F(4x4, 3x3)
// on AVX-512 machines (op_winograd.c: ~1e-5 of the rms output at worst,
// against ~2e-6 for the direct sum); NETSMITH_WINOGRAD=0 turns it off.

typedef struct ns_conv2d_geom {
    int64_t N, C, H, W;     // input (N, C, H, W)
    int64_t OC, KH, KW;     // weight (OC, C/G, KH, KW)
    int64_t SH, SW;         // stride >= 1
    int64_t PH, PW;         // zero padding >= 0
    int64_t DH, DW;         // dilation >= 1
    int64_t G;              // groups, divides C and OC; depthwise is G == C
    int64_t OH, OW;         // output, set by ns_conv2d_geom_init
} ns_conv2d_geom;

int ns_conv2d_geom_init(ns_conv2d_geom *g, ns_err *err);

// Floats of scratch the forward and backward need: packed weights, a slice
// per thread (ns_threads()) of padded image copies, and for backward a
// partial weight gradient per chunk of samples; a few MB for resnet20 at a
// batch of 256 (op_conv.c). Zero for the direct per-channel path used when
// C/G == 1 and OC/G == 1 (depthwise). Any alignment will do. One call at a
// time per scratch buffer.
int64_t ns_conv2d_scratch_floats(const ns_conv2d_geom *g);

void ns_conv2d_forward(float *out,          // (N, OC, OH, OW)
                       float *scratch,      // (ns_conv2d_scratch_floats) or NULL if 0
                       const float *inp,    // (N, C, H, W)
                       const float *weight, // (OC, C/G, KH, KW)
                       const float *bias,   // (OC) or NULL
                       const ns_conv2d_geom *g);
void ns_conv2d_backward(float *dinp,         // (N, C, H, W) or NULL
                        float *dweight,      // (OC, C/G, KH, KW) or NULL
                        float *dbias,        // (OC) or NULL
                        float *scratch,      // (ns_conv2d_scratch_floats) or NULL if 0
                        const float *dout,   // (N, OC, OH, OW)
                        const float *inp,    // (N, C, H, W)
                        const float *weight, // (OC, C/G, KH, KW)
                        const ns_conv2d_geom *g);

// What follows a convolution in a network, applied to each sample's output
// while it is in cache (ns_conv2d_forward_ex). With y = conv + bias, the
// steps, each only when its field is set, in this order:
//     y = y * scale[oc] + shift[oc]     (an eval-mode batch norm, folded)
//     y = y + residual                  (a residual connection)
//     y = max(y, 0)                     (relu)
// and out receives the final y. Each step is the float arithmetic of the op
// it replaces (a multiply then an add, an add, a select), so the results are
// bit for bit those of running ns_conv2d_forward, ns_batchnorm_forward (eval),
// ns_add_forward and ns_relu_forward one after another. The stages can be
// stored as well (NULL: not stored); none of the buffers may overlap.
typedef struct ns_conv2d_epilogue {
    const float *scale, *shift; // (OC) or NULL
    const float *residual;      // (N, OC, OH, OW) or NULL
    int relu;
    float *conv_out;     // (N, OC, OH, OW): conv + bias, or NULL
    float *affine_out;   // (N, OC, OH, OW): after the scale and shift, or NULL
    float *residual_out; // (N, OC, OH, OW): after the residual, or NULL
    // (N, OC, 2): per plane of conv + bias, its mean and the sum of squared
    // deviations from it (ns_batchnorm_plane_stats), for a training-mode
    // batch norm that follows (ns_batchnorm_stats), or NULL
    double *plane_stats;
} ns_conv2d_epilogue;

// ns_conv2d_forward followed by the epilogue (NULL: none).
void ns_conv2d_forward_ex(float *out,          // (N, OC, OH, OW)
                          float *scratch,      // (ns_conv2d_scratch_floats) or NULL if 0
                          const float *inp,    // (N, C, H, W)
                          const float *weight, // (OC, C/G, KH, KW)
                          const float *bias,   // (OC) or NULL
                          const ns_conv2d_geom *g, const ns_conv2d_epilogue *ep);
// ns_conv2d_backward with the choice of accumulating into dinp (as
// ns_conv2d_backward) or overwriting it (overwrite_dinp != 0: dinp = the
// gradient, whatever it held; for a caller whose gradient buffer has no
// other contribution yet, saving the zeroing).
void ns_conv2d_backward_ex(float *dinp, float *dweight, float *dbias, float *scratch,
                           const float *dout, const float *inp, const float *weight,
                           const ns_conv2d_geom *g, int overwrite_dinp);

// ----------------------------------------------------------------------------
// normalisation (op_norm.c)

// Batch norm over (N, C, S): statistics per channel over N and S. S = H*W for
// BatchNorm2d, S = 1 for BatchNorm1d on (N, C). training != 0: normalise with
// the batch mean and biased variance, then running = (1-momentum)*running +
// momentum*batch with the unbiased variance (torch: momentum 0.1, eps 1e-5).
// training == 0: normalise with the running statistics. Either way mean and
// rstd = 1/sqrt(var + eps) of what was used are saved for backward. Training
// needs N*S > 1 (torch refuses 1; here the unbiased update then uses the biased
// variance). running_mean/running_var may be NULL in training mode
// (track_running_stats=False); weight/bias may be NULL (affine=False).
void ns_batchnorm_forward(float *out,          // (N, C, S)
                          float *mean,         // (C) saved
                          float *rstd,         // (C) saved
                          float *running_mean, // (C) updated in training
                          float *running_var,  // (C) updated in training
                          const float *inp,    // (N, C, S)
                          const float *weight, // (C) or NULL
                          const float *bias,   // (C) or NULL
                          int64_t N, int64_t C, int64_t S, int training,
                          float momentum, float eps);
// training must be what the forward used: training mode differentiates
// through the batch statistics, eval mode treats mean/rstd as constants.
void ns_batchnorm_backward(float *dinp,          // (N, C, S) or NULL
                           float *dweight,       // (C) or NULL
                           float *dbias,         // (C) or NULL
                           const float *dout,    // (N, C, S)
                           const float *inp,     // (N, C, S)
                           const float *mean,    // (C) saved by forward
                           const float *rstd,    // (C) saved by forward
                           const float *weight,  // (C) or NULL
                           int64_t N, int64_t C, int64_t S, int training);

// The pieces of batch norm, for callers that fuse it with its neighbours
// (the engine). Training statistics are built from per-plane statistics:
// ns_batchnorm_plane_stats gives a plane's (S values) mean and sum of squared
// deviations from that mean (two passes, float block sums added in double);
// ns_batchnorm_stats merges N planes per channel in sample order (Chan et
// al.'s pairwise update, in double) into the saved mean and rstd and the
// running statistics, exactly as ns_batchnorm_forward does in training (which
// is built from these two), so a convolution can compute the plane statistics
// while its output is in cache (ns_conv2d_epilogue.plane_stats).
void ns_batchnorm_plane_stats(double *st,      // (2) mean, sum of squared deviations
                              const float *x,  // (S)
                              int64_t S);
void ns_batchnorm_stats(float *mean, float *rstd, float *running_mean, float *running_var,
                        const double *plane_stats, // (N, C, 2)
                        int64_t N, int64_t C, int64_t S, float momentum, float eps);
// Eval mode: mean and rstd from the running statistics (as the forward).
void ns_batchnorm_eval_stats(float *mean, float *rstd, const float *running_mean,
                             const float *running_var, int64_t C, float eps);
// The per-channel affine map the forward applies, out = x * scale + shift:
// scale = rstd * w, shift = b - mean * rstd * w, in float.
void ns_batchnorm_affine(float *scale, float *shift, const float *mean, const float *rstd,
                         const float *weight, const float *bias, int64_t C);
// The forward's elementwise pass with what follows it: y = x * scale + shift
// (bn_out, when not NULL, receives it), then y + residual when residual is not
// NULL (sum_out receives that), then max(y, 0) when relu; out receives the
// final y. Bit for bit the separate ops; buffers must not overlap.
void ns_batchnorm_apply(float *out, float *bn_out, float *sum_out,
                        const float *inp,      // (N, C, S)
                        const float *scale, const float *shift, // (C)
                        const float *residual, // (N, C, S) or NULL
                        int relu, int64_t N, int64_t C, int64_t S);
// ns_batchnorm_backward for a batch norm followed by (a residual add and) a
// relu: dout is the gradient at the relu's output, relu_out its output (the
// gradient passes where relu_out > 0). With no add in between, relu_out may be
// NULL and relu_affine (2C floats: the forward's scale, then shift, from
// ns_batchnorm_affine) given instead: the relu's input is recomputed from inp
// with the forward's arithmetic (same bits), saving a read of the output.
// Both NULL: no relu. dres, when not NULL, receives the gradient of the
// residual input (the masked dout).
// overwrite: bit 0 set, dinp is written rather than accumulated into; bit 1,
// dres (for a caller whose buffers have no other contribution yet).
void ns_batchnorm_backward_ex(float *dinp, float *dweight, float *dbias, float *dres,
                              const float *dout, const float *relu_out,
                              const float *relu_affine, const float *inp, const float *mean,
                              const float *rstd, const float *weight, int64_t N, int64_t C,
                              int64_t S, int training, int overwrite);

// Synchronised batch norm, for data-parallel training (nn/dist.h): when a sum
// is set, training-mode batch norm (ns_batchnorm_forward, ns_batchnorm_stats,
// ns_batchnorm_backward_ex) takes its channel statistics and its backward's
// channel sums over every process's batch, summed by sum(buf, n, err) (every
// process makes the same calls with the same sizes: 2C then C doubles per
// forward, 2C + 1 per backward). NULL (the default): each process's own batch.
// Process-wide; set it around training only.
typedef int (*ns_batchnorm_sum_fn)(double *buf, int64_t n, ns_err *err);
void ns_batchnorm_set_sync(ns_batchnorm_sum_fn sum);

// Layer norm over the last D elements of each of N rows, with affine weight
// and bias (either may be NULL), biased variance, as torch.nn.LayerNorm((D,)).
void ns_layernorm_forward(float *out,          // (N, D)
                          float *mean,         // (N) saved
                          float *rstd,         // (N) saved
                          const float *inp,    // (N, D)
                          const float *weight, // (D) or NULL
                          const float *bias,   // (D) or NULL
                          int64_t N, int64_t D, float eps);
void ns_layernorm_backward(float *dinp,         // (N, D) or NULL
                           float *dweight,      // (D) or NULL
                           float *dbias,        // (D) or NULL
                           const float *dout,   // (N, D)
                           const float *inp,    // (N, D)
                           const float *mean,   // (N) saved
                           const float *rstd,   // (N) saved
                           const float *weight, // (D) or NULL
                           int64_t N, int64_t D);

// ----------------------------------------------------------------------------
// activations (op_act.c), elementwise over n floats. out may equal inp.
// What backward reads is named: relu, sigmoid and tanh need the forward's
// output (so they work in place); leaky_relu and gelu need its input.

void ns_relu_forward(float *out, const float *inp, int64_t n);                // (n)
void ns_relu_backward(float *dinp, const float *dout, const float *out, int64_t n);
// The same writing dinp (= instead of +=) when overwrite != 0.
void ns_relu_backward_ex(float *dinp, const float *dout, const float *out, int64_t n,
                         int overwrite);
void ns_leaky_relu_forward(float *out, const float *inp, float slope, int64_t n);
void ns_leaky_relu_backward(float *dinp, const float *dout, const float *inp, float slope,
                            int64_t n);
// Exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (torch's default).
void ns_gelu_forward(float *out, const float *inp, int64_t n);
void ns_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n);
void ns_sigmoid_forward(float *out, const float *inp, int64_t n);
void ns_sigmoid_backward(float *dinp, const float *dout, const float *out, int64_t n);
void ns_tanh_forward(float *out, const float *inp, int64_t n);
void ns_tanh_backward(float *dinp, const float *dout, const float *out, int64_t n);

// ----------------------------------------------------------------------------
// pooling (op_pool.c). Floor mode only (torch's ceil_mode=False); padding at
// most half the kernel, as torch requires, so no window is all padding.

typedef struct ns_pool2d_geom {
    int64_t N, C, H, W;     // input (N, C, H, W)
    int64_t KH, KW;         // window
    int64_t SH, SW;         // stride >= 1 (torch's default is the kernel size)
    int64_t PH, PW;         // padding, 0 <= P <= K/2
    int64_t OH, OW;         // output, set by ns_pool2d_geom_init
} ns_pool2d_geom;

int ns_pool2d_geom_init(ns_pool2d_geom *g, ns_err *err);

// Max pool; padding acts as -inf. The first maximum in row-major window order
// wins; a NaN wins over numbers (as torch). argmax holds h*W + w within the
// input plane, which is all backward needs.
void ns_maxpool2d_forward(float *out,         // (N, C, OH, OW)
                          int32_t *argmax,    // (N, C, OH, OW) saved
                          const float *inp,   // (N, C, H, W)
                          const ns_pool2d_geom *g);
void ns_maxpool2d_backward(float *dinp,           // (N, C, H, W)
                           const float *dout,     // (N, C, OH, OW)
                           const int32_t *argmax, // (N, C, OH, OW)
                           const ns_pool2d_geom *g);

// Average pool with count_include_pad=True (torch's default): every window
// divides by KH*KW, padding counting as zeros.
void ns_avgpool2d_forward(float *out,       // (N, C, OH, OW)
                          const float *inp, // (N, C, H, W)
                          const ns_pool2d_geom *g);
void ns_avgpool2d_backward(float *dinp,       // (N, C, H, W)
                           const float *dout, // (N, C, OH, OW)
                           const ns_pool2d_geom *g);

// Global average pool (N, C, S) -> (N, C), S = H*W.
void ns_global_avgpool_forward(float *out,       // (N, C)
                               const float *inp, // (N, C, S)
                               int64_t N, int64_t C, int64_t S);
void ns_global_avgpool_backward(float *dinp,       // (N, C, S)
                                const float *dout, // (N, C)
                                int64_t N, int64_t C, int64_t S);

// ----------------------------------------------------------------------------
// losses (op_loss.c). Each forward returns the scalar loss with a mean
// reduction; each backward accumulates dloss * dL/d(input), where dloss is the
// gradient arriving at the loss (1 when it is the objective). Backward
// recomputes what it needs from the forward's inputs, so nothing is saved.

// Softmax cross-entropy over K classes, targets in [0, K) (the caller checks,
// e.g. with ns_check_class_ids). With label smoothing eps the target
// distribution is (1-eps)*onehot + eps/K, as torch's label_smoothing. Optional
// per-sample weights w (N), NULL meaning all 1. Reduction:
//     L = sum_i w_i * l_i / N
// i.e. weights scale each sample's share of the plain mean, which is what
// per-sample reweighting (ASR, weights with mean 1) wants. This is NOT torch's
// class-weight convention, which divides by sum_i w_i instead. losses, when
// not NULL, receives each sample's unweighted l_i.
float ns_softmax_ce_forward(float *losses,          // (N) or NULL
                            const float *logits,    // (N, K)
                            const int32_t *targets, // (N)
                            const float *weights,   // (N) or NULL
                            float smoothing, int64_t N, int64_t K);
void ns_softmax_ce_backward(float *dlogits,         // (N, K)
                            float dloss,
                            const float *logits,    // (N, K)
                            const int32_t *targets, // (N)
                            const float *weights,   // (N) or NULL
                            float smoothing, int64_t N, int64_t K);

// Binary cross-entropy on logits x with targets y in [0, 1], computed stably as
// max(x, 0) - x*y + log(1 + exp(-|x|)); optional elementwise weights (torch's
// weight argument). L = sum_i w_i l_i / n. dtarget is for soft targets that
// are themselves computed; usually NULL.
float ns_bce_logits_forward(const float *logits,  // (n)
                            const float *targets, // (n)
                            const float *weights, // (n) or NULL
                            int64_t n);
void ns_bce_logits_backward(float *dlogits,        // (n) or NULL
                            float *dtargets,       // (n) or NULL
                            float dloss,
                            const float *logits,   // (n)
                            const float *targets,  // (n)
                            const float *weights,  // (n) or NULL
                            int64_t n);

// Mean squared error, L = sum_i (a_i - b_i)^2 / n. Both sides may need grads.
float ns_mse_forward(const float *a, // (n)
                     const float *b, // (n)
                     int64_t n);
void ns_mse_backward(float *da,      // (n) or NULL
                     float *db,      // (n) or NULL
                     float dloss,
                     const float *a, // (n)
                     const float *b, // (n)
                     int64_t n);

// Checks class ids (targets, embedding ids) lie in [0, K). Returns -1 with the
// first offender in err.
int ns_check_class_ids(const int32_t *ids, int64_t n, int64_t K, ns_err *err);

// ----------------------------------------------------------------------------
// misc (op_misc.c): elementwise, concat, transpose, dropout, embedding.

void ns_add_forward(float *out, const float *a, const float *b, int64_t n); // (n)
void ns_add_backward(float *da, float *db, const float *dout, int64_t n);   // (n)
// The same writing da (bit 0 of overwrite) or db (bit 1) instead of adding;
// da may equal db (then da is handled first).
void ns_add_backward_ex(float *da, float *db, const float *dout, int64_t n, int overwrite);
void ns_mul_forward(float *out, const float *a, const float *b, int64_t n); // (n)
void ns_mul_backward(float *da, float *db, const float *dout, const float *a,
                     const float *b, int64_t n);                            // (n)

// Concatenation of k tensors (N, Cs[i], S) along the middle axis into
// (N, sum Cs, S): the channel axis of NCHW with S = H*W, or the feature axis of
// (N, D) with S = 1. Backward splits, skipping NULL entries of dinps.
void ns_concat_forward(float *out,              // (N, sum Cs, S)
                       const float *const *inps, // k x (N, Cs[i], S)
                       const int64_t *Cs,       // (k)
                       int64_t k, int64_t N, int64_t S);
void ns_concat_backward(float *const *dinps,    // k x (N, Cs[i], S), entries may be NULL
                        const float *dout,      // (N, sum Cs, S)
                        const int64_t *Cs,      // (k)
                        int64_t k, int64_t N, int64_t S);

// out = inp^T for a row-major (R, Cm) matrix.
void ns_transpose_forward(float *out,       // (Cm, R)
                          const float *inp, // (R, Cm)
                          int64_t R, int64_t Cm);
void ns_transpose_backward(float *dinp,       // (R, Cm)
                           const float *dout, // (Cm, R)
                           int64_t R, int64_t Cm);

// Counter-based random numbers (SplitMix64's output function applied to
// seed + (i+1) * golden gamma): element i's value depends only on (seed, i),
// so any split of the work across threads gives the same numbers.
uint64_t ns_rand_u64(uint64_t seed, uint64_t i);

// Inverted dropout. ns_dropout_mask draws the keep mask (1 with probability
// 1-p) for a seed; the engine gives each (step, node) its own seed. Forward
// and backward scale kept elements by 1/(1-p) (0 when p == 1). A mask made
// elsewhere works too.
void ns_dropout_mask(uint8_t *mask, float p, uint64_t seed, int64_t n);        // (n)
void ns_dropout_forward(float *out, const float *inp, const uint8_t *mask, float p,
                        int64_t n);                                             // (n)
void ns_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, float p,
                         int64_t n);                                            // (n)

// Embedding lookup: out[i] = table[ids[i]], ids in [0, V) (checked by the
// caller); backward scatter-adds rows, repeated ids summing.
void ns_embedding_forward(float *out,          // (N, D)
                          const int32_t *ids,  // (N)
                          const float *table,  // (V, D)
                          int64_t N, int64_t D);
void ns_embedding_backward(float *dtable,       // (V, D)
                           const float *dout,   // (N, D)
                           const int32_t *ids,  // (N)
                           int64_t N, int64_t D);

// ----------------------------------------------------------------------------
// transformer ops (op_attn.c: softmax, attention; op_tokens.c: tokens; GroupNorm
// in op_norm.c; GELU's tanh form in op_act.c). Tokens are (N, T, D): T tokens
// of D features per sample, row-major, as torch's batch_first layout.
//   T, Tq, Tk  tokens (queries, keys)   Hd heads   dh = D/Hd head size
//   L  the softmax axis' length, between outer and inner

// Softmax along the middle axis of (outer, L, inner), as torch.softmax(x, dim)
// (max subtracted, sums in double). Backward reads the forward's output.
void ns_softmax_forward(float *out,       // (outer, L, inner)
                        const float *inp, // (outer, L, inner)
                        int64_t outer, int64_t L, int64_t inner);
void ns_softmax_backward(float *dinp,       // (outer, L, inner)
                         const float *dout, // (outer, L, inner)
                         const float *out,  // (outer, L, inner) the forward's output
                         int64_t outer, int64_t L, int64_t inner);

// GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as
// torch.nn.GELU(approximate='tanh'). Backward reads the forward's input.
void ns_gelu_tanh_forward(float *out, const float *inp, int64_t n);
void ns_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, int64_t n);

// Group norm over (N, C, S) with G groups of C/G channels: statistics per
// (sample, group) over C/G * S values (biased variance), affine per channel;
// weight/bias may be NULL. As torch.nn.GroupNorm(G, C).
void ns_groupnorm_forward(float *out,          // (N, C, S)
                          float *mean,         // (N, G) saved
                          float *rstd,         // (N, G) saved
                          const float *inp,    // (N, C, S)
                          const float *weight, // (C) or NULL
                          const float *bias,   // (C) or NULL
                          int64_t N, int64_t C, int64_t S, int64_t G, float eps);
void ns_groupnorm_backward(float *dinp,         // (N, C, S) or NULL
                           float *dweight,      // (C) or NULL
                           float *dbias,        // (C) or NULL
                           const float *dout,   // (N, C, S)
                           const float *inp,    // (N, C, S)
                           const float *mean,   // (N, G)
                           const float *rstd,   // (N, G)
                           const float *weight, // (C) or NULL
                           int64_t N, int64_t C, int64_t S, int64_t G);

// Patches of an image, for a patch embedding (a convolution with stride =
// kernel = P, no padding, as a linear map of each patch): patch t = (i, j) of
// the OH x OW grid (OH = H/P, OW = W/P rounded down, T = OH*OW, row-major) is
// the row cols[n, t, :] of C*P*P values in the conv weight's (c, kh, kw)
// order. ns_patches_backward adds each row back into its pixels.
void ns_patches_forward(float *cols,      // (N, T, C*P*P)
                        const float *inp, // (N, C, H, W)
                        int64_t N, int64_t C, int64_t H, int64_t W, int64_t P);
void ns_patches_backward(float *dinp,       // (N, C, H, W)
                         const float *dcols, // (N, T, C*P*P)
                         int64_t N, int64_t C, int64_t H, int64_t W, int64_t P);

// A learned token put first: out[n] = [tok; inp[n]], (T, D) -> (T+1, D).
void ns_cls_token_forward(float *out,       // (N, T+1, D)
                          const float *inp, // (N, T, D)
                          const float *tok, // (D)
                          int64_t N, int64_t T, int64_t D);
void ns_cls_token_backward(float *dinp,       // (N, T, D) or NULL
                           float *dtok,       // (D) or NULL
                           const float *dout, // (N, T+1, D)
                           int64_t N, int64_t T, int64_t D);

// Learned positions added to every sample: out[n] = inp[n] + pos.
void ns_pos_embed_forward(float *out,       // (N, T, D)
                          const float *inp, // (N, T, D)
                          const float *pos, // (T, D)
                          int64_t N, int64_t T, int64_t D);
void ns_pos_embed_backward(float *dinp,       // (N, T, D) or NULL
                           float *dpos,       // (T, D) or NULL
                           const float *dout, // (N, T, D)
                           int64_t N, int64_t T, int64_t D);

// Token pooling (N, T, D) -> (N, D): mode 0 takes the first token (a class
// token), mode 1 the mean over the T tokens.
void ns_token_pool_forward(float *out,       // (N, D)
                           const float *inp, // (N, T, D)
                           int mode, int64_t N, int64_t T, int64_t D);
void ns_token_pool_backward(float *dinp,       // (N, T, D)
                            const float *dout, // (N, D)
                            int mode, int64_t N, int64_t T, int64_t D);
// End-of-text pooling (N, T, D) -> (N, D), as CLIP's text tower: sample n
// takes the token at the position of the largest of its keys (the token ids;
// the first such position), x[n, argmax(keys[n])].
void ns_token_pool_eot_forward(float *out,        // (N, D)
                               const float *inp,  // (N, T, D)
                               const float *keys, // (N, T)
                               int64_t N, int64_t T, int64_t D);
void ns_token_pool_eot_backward(float *dinp,       // (N, T, D)
                                const float *dout, // (N, D)
                                const float *keys, // (N, T)
                                int64_t N, int64_t T, int64_t D);

// Multi-head attention as torch.nn.MultiheadAttention(D, Hd, batch_first=True)
// with kdim = vdim = D: fused input projection w_in (3D, D) = [Wq; Wk; Wv],
// b_in (3D), output projection w_out (D, D), b_out (D); biases may be NULL.
// Queries come from x (N, Tq, D), keys and values from mem (N, Tk, D): mem ==
// x (and Tk == Tq) is self-attention, then one product makes q, k and v.
// Each head h (features [h*dh, (h+1)*dh)) computes
//     P = softmax(q_h k_h^T / sqrt(dh) + mask),  ctx_h = P v_h
// and out = ctx w_out^T + b_out. Masks: causal (query i sees keys j <= i;
// needs Tq == Tk) and key_pad (N, Tk), nonzero marking a key every query
// ignores (torch's key_padding_mask). A query whose keys are all masked gets a
// zero row of P (torch: NaN). The per-head products are plain loops, threaded
// over (sample, head) pairs; the projections go through ns_linear (ns_sgemm).
// Twin self-attention (CCT-Net's mixed heads): with cross_heads = c > 0
// (self only, N even), the batch is N/2 pairs laid out [first images of all
// pairs; second images], and the last c heads of sample n take their keys
// and values from its partner, sample (n + N/2) mod N: the same projections,
// so the twin branches share every weight; the other heads are self-attention.
typedef struct ns_attn_geom {
    int64_t N, Tq, Tk, D, Hd;
    int causal, self; // self: mem == x, one fused projection
    int64_t cross_heads; // twin self-attention: the last heads attend to the partner (0: none)
} ns_attn_geom;

// Floats of the saved state (q, k, v, probabilities, ctx) and of scratch.
int64_t ns_attention_saved_floats(const ns_attn_geom *g);
int64_t ns_attention_scratch_floats(const ns_attn_geom *g);

void ns_attention_forward(float *out,           // (N, Tq, D)
                          float *saved,         // (ns_attention_saved_floats)
                          const float *x,       // (N, Tq, D)
                          const float *mem,     // (N, Tk, D); x for self-attention
                          const float *key_pad, // (N, Tk) or NULL
                          const float *w_in, const float *b_in,   // (3D, D), (3D)
                          const float *w_out, const float *b_out, // (D, D), (D)
                          const ns_attn_geom *g);
// dx and dmem may be the same buffer for self-attention (then pass it once
// as dx and NULL as dmem).
void ns_attention_backward(float *dx,     // (N, Tq, D) or NULL
                           float *dmem,   // (N, Tk, D) or NULL
                           float *dw_in, float *db_in, float *dw_out, float *db_out, // or NULL
                           float *scratch, // (ns_attention_scratch_floats)
                           const float *dout,  // (N, Tq, D)
                           const float *saved, // from the forward
                           const float *x, const float *mem,
                           const float *w_in, const float *w_out,
                           const ns_attn_geom *g);

// ----------------------------------------------------------------------------
// detection (op_upsample.c, op_detloss.c): nearest upsampling by an integer
// factor s, (N, C, H, W) -> (N, C, H*s, W*s), as torch's Upsample(mode=
// 'nearest'); CenterNet's penalty-reduced focal loss on heatmap logits (n)
// against Gaussian targets (n) and a masked L1 (op_detloss.c has the formulas).

void ns_upsample_nearest_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t H, int64_t W,
                                 int64_t s);
void ns_upsample_nearest_backward(float *dinp, const float *dout, int64_t N, int64_t C, int64_t H, int64_t W,
                                  int64_t s);
// npos (may be NULL) receives the number of targets equal to 1.
float ns_focal_heatmap_forward(const float *logits, const float *target, int64_t n, float alpha, float beta,
                               int64_t *npos);
void ns_focal_heatmap_backward(float *dlogits, float dloss, const float *logits, const float *target, int64_t n,
                               float alpha, float beta);
float ns_masked_l1_forward(const float *pred, const float *target, const float *mask, int64_t n);
void ns_masked_l1_backward(float *dpred, float dloss, const float *pred, const float *target, const float *mask,
                           int64_t n);

// ----------------------------------------------------------------------------
// internal to op_conv.c: Winograd F(4x4, 3x3) (op_winograd.c) for 3x3,
// stride 1, dilation 1, ungrouped convolutions with 16k input and output
// channels and padding <= 2. Forward and input gradient one sample at a
// time (op_conv.c runs the samples over threads); dinp != 0: the
// input-gradient correlation (dout with the flipped, transposed kernel)
// instead of the forward. NETSMITH_WINOGRAD=0 turns it off.
// The switch, for tests and benchmarks: -1 leaves it to NETSMITH_WINOGRAD
// (the default), 0 off, 1 forward only, 2 forward and input gradient, 3 the
// weight gradient too (NETSMITH_WINOGRAD unset: 3). Not
// thread-safe: call it between convolutions. Scratch sizes allow for
// Winograd wherever it could run, switched on or not.
void ns_conv2d_set_winograd(int mode);
int ns_wino_usable(const ns_conv2d_geom *g);
int ns_wino_dinp_usable(const ns_conv2d_geom *g);
int ns_wino_dweight_usable(const ns_conv2d_geom *g);
// dweight += the weight gradient over the batch (threads inside).
void ns_wino_dweight(float *dweight, float *scratch, const float *dout, const float *inp,
                     const ns_conv2d_geom *g);
int64_t ns_wino_scratch_floats(const ns_conv2d_geom *g);
void ns_wino_prepare(float *scratch, const float *weight, const ns_conv2d_geom *g, int dinp);
float *ns_wino_thread(float *scratch, int thread, const ns_conv2d_geom *g);
void ns_wino_thread_init(float *t, const ns_conv2d_geom *g, int dinp);
// next_x, next_dst: the next sample's input and output, prefetched (or NULL).
// epi (forward, not acc; or NULL): applied as each tile is stored, with
// op_conv.c's epilogue arithmetic: + bias[oc], * scale[oc] + shift[oc] (both
// or neither), + res (the sample's residual planes), relu.
typedef struct ns_wino_epi {
    const float *bias, *scale, *shift, *res;
    int relu;
} ns_wino_epi;
void ns_wino_sample(float *dst, int acc, const float *x, const float *scratch, float *t,
                    const ns_conv2d_geom *g, int dinp, const float *next_x,
                    const float *next_dst, const ns_wino_epi *epi);

#endif
