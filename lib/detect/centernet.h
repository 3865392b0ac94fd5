// centernet.h: logo-det's detectors on the engine (logo-det(1)).
//
// One-stage: CenterNet ("Objects as Points", Zhou, Wang, Krahenbuhl,
// arXiv:1904.07850), anchor-free. The model maps an image (3, S, S) to one
// output (K + 4, S/4, S/4): K heatmap logits (one per class), then the box
// size (w, h) and the centre's sub-pixel offset (dx, dy), all in output pixels
// (stride 4). Backbone: a small encoder to stride 16 (conv-bn-relu, widths w,
// 2w, 4w, 8w) and a decoder back to stride 4 (1x1 conv, nearest upsampling x2,
// the encoder's feature of that stride added, 3x3 conv); two heads (3x3 conv,
// relu, 1x1 conv): the heatmap and the four box values. Node names are those
// of tests/ref/gen_det_ref.py's torch module.
//
// Training targets, per image and box b (centre c = box centre / 4, integer
// centre p = floor(c)): a Gaussian peak of radius r (CenterNet's radius for
// IoU 0.7 at the box's output size; sigma = (2r + 1) / 6) in its class's
// heatmap, maxed with the others; size (w/4, h/4) and offset c - p at p, with
// a mask of 1 there. Loss = focal(heatmap) + 0.1 L1(size) + L1(offset).
// Decoding: sigmoid heatmap, peaks = values equal to their 3x3 max (the
// max-pool trick, no NMS), the top-k over every class, box = (p + offset -+
// size / 2) * 4, clipped to the image.
//
// Region mode (centernet_region.c), a two-stage detector on the same
// backbone, as the region-based detectors LOGO-Net compared: proposals are
// the one-stage detector's top NS_ROI_PROPOSALS peaks (any class); their
// features are RoI-aligned from the stride-4 feature map (node up2.fuse.relu,
// 2w channels) into P x P bins (2 x 2 bilinear samples each, averaged); a
// head (flatten, 2 x [linear, relu], then K + 1 class logits, the last the
// background, and 4 box deltas (dx, dy, dw, dh) with Faster R-CNN's encoding
// scaled by 0.1, 0.1, 0.2, 0.2) classifies and refines each proposal; per-class
// non-maximum suppression at IoU 0.5 ends detection. The head trains on a
// frozen one-stage model: each training image's proposals and its jittered
// ground-truth boxes, labelled by IoU (>= 0.5: the box's class, < 0.4:
// background, between: ignored); softmax cross-entropy plus the L1 of the
// deltas of foreground proposals. Its tensors travel in the model stream as
// "roi.<node>.<slot>" (ignored by the one-stage mode).
#ifndef NS_DETECT_CENTERNET_H
#define NS_DETECT_CENTERNET_H

#include <stdint.h>

#include "base/report.h"
#include "detect/boxes.h"
#include "detect/detdata.h"
#include "nn/model.h"
#include "nn/optim.h"

#define NS_CNET_STRIDE 4
#define NS_CNET_SIZE_WEIGHT 0.1f
#define NS_CNET_PRIOR_BIAS -2.19f // heatmap bias: sigmoid = 0.1 at start, as CenterNet

// Builds the detector for nclasses and (3, size, size) inputs (size a multiple
// of 16), width w (base channels, 16 by default; head channels 2w), with
// PyTorch's default initialisation from seed and the heatmap bias prior.
int ns_cnet_build(ns_model *m, int nclasses, int size, int width, uint64_t seed, ns_err *err);
// Checks that m is such a detector (output K + 4 channels at stride 4 of a
// 3-channel square input) and gives K and the input side.
int ns_cnet_shape(const ns_model *m, int64_t *nclasses, int64_t *size, ns_err *err);

// --- targets, loss, decoding ---------------------------------------------------
// CenterNet's Gaussian radius for a box of (h, w) output pixels (min overlap 0.7).
double ns_cnet_radius(double h, double w);
// Renders one image's targets: heat (K, oh, ow) zeroed first, reg (4, oh, ow)
// and mask (4, oh, ow) likewise. Boxes in input pixels.
void ns_cnet_targets(float *heat, float *reg, float *mask, int64_t K, int64_t oh, int64_t ow,
                     const ns_det_box *boxes, int64_t nboxes);
// Loss of a batch's output (N, K + 4, oh, ow) against its targets (heat
// (N, K, oh, ow), reg and mask (N, 4, oh, ow)); dout (same shape as out, may
// be NULL) receives its gradient (overwritten). parts (may be NULL) receives
// the heatmap, size and offset losses.
float ns_cnet_loss(float *dout, const float *out, const float *heat, const float *reg, const float *mask,
                   int64_t N, int64_t K, int64_t oh, int64_t ow, double parts[3]);
// Decodes one image's output (K + 4, oh, ow) into at most topk detections
// scoring at least thresh, best first; returns their count. heat_sig: scratch
// of K * oh * ow floats (the sigmoid heatmap).
int64_t ns_cnet_decode(const float *out, float *heat_sig, int64_t K, int64_t oh, int64_t ow, int64_t img_h,
                       int64_t img_w, int64_t topk, float thresh, ns_det_box *dets);

// --- training and detection ------------------------------------------------------
typedef struct ns_cnet_train_config {
    int epochs, stop_after;       // schedule length; stop early to resume later (0: all)
    int64_t batch;
    uint64_t seed;
    int flip;                     // random horizontal flips
    ns_optim_config optim;
    ns_lr_schedule schedule;      // total_steps set by ns_cnet_train
    const char *checkpoint;       // model + optimiser state after every epoch, or NULL
    int resume;                   // m holds a checkpoint's optimiser state
    const char *producer;
    const ns_reporter *report;    // progress, a line per epoch; NULL: silent
} ns_cnet_train_config;

typedef struct ns_cnet_epoch {
    int epoch;
    double loss, heat, size, offset, seconds, images_per_s;
} ns_cnet_epoch;

int ns_cnet_train(ns_model *m, const ns_det_data *train, const ns_cnet_train_config *cfg,
                  ns_cnet_epoch *last, ns_err *err);
// Runs the detector over every image: boxes per image (dets->offsets), with
// scores. seconds (may be NULL) receives the time in the model and decoding.
int ns_cnet_detect(ns_model *m, const ns_det_data *d, int64_t batch, int64_t topk, float thresh,
                   ns_det_boxes *dets, double *seconds, const ns_reporter *report, ns_err *err);

// --- region mode (centernet_region.c) ------------------------------------------------
#define NS_ROI_PROPOSALS 16
#define NS_ROI_POOL 5
#define NS_ROI_HIDDEN 128

// RoI-align of R boxes (image pixels, x0 y0 x1 y1) from one image's feature
// map feat (C, H, W) at the given stride into out (R, C, P, P).
void ns_roi_align(float *out, const float *feat, int64_t C, int64_t H, int64_t W, int stride, const float *boxes,
                  int64_t R, int P);
// Trains the region head of the one-stage model m (its tensors are added to
// m as "roi.*", replacing any) on train.
int ns_region_train(ns_model *m, const ns_det_data *train, const ns_cnet_train_config *cfg, ns_cnet_epoch *last,
                    ns_err *err);
// Writes m as ns_model_write does, plus its region head (roi.*) if any.
int ns_cnet_write(const ns_model *m, ns_writer *w, const ns_map *meta, ns_err *err);
// Whether m carries a region head.
int ns_region_present(const ns_model *m);
// Detection in region mode (as ns_cnet_detect).
int ns_region_detect(ns_model *m, const ns_det_data *d, int64_t batch, int64_t topk, float thresh,
                     ns_det_boxes *dets, double *seconds, const ns_reporter *report, ns_err *err);

// Both modes' last step: the kept boxes of the n images of d, image after
// image (counts[i] for image i, total in all), as a detection batch with scores.
int ns_cnet_pack_detections(ns_det_boxes *dets, const ns_det_data *d, const ns_det_box *all,
                            const int64_t *counts, int64_t total, ns_err *err);
#endif
