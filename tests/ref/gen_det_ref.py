#!/usr/bin/python3
# gen_det_ref.py: writes tests/ref/det.tns, what PyTorch computes for logo-det's
# detector (tests/ref/centernet_torch.py, the torch twin of
# lib/detect/centernet.c) for tests/unit/test_centernet_ref.c. Conventions of
# gen_engine_ref.py (whose record() this uses): parameters are torch's default
# initialisation plus N(0, 0.1) noise (the heatmap bias prior kept; batch-norm
# statistics perturbed), rounded to float16 and stored as f16; everything
# computed after that is float64, written as f32. Records, case "det"
# (3 classes, width 4, 2 images of 3x32x32; meta of det/x says so):
#   det/x                 f32 (2, 3, 32, 32)
#   det/<tensor>          f16   every parameter and buffer
#   det/out.eval          f32 (2, 7, 8, 8)  eval mode: heatmap logits, size, offset
#   det/heat.eval         f32 (2, 3, 8, 8)  the sigmoid heatmaps
#   det/out.train         f32 (2, 7, 8, 8)  training mode (batch statistics)
#   det/heat, det/reg, det/mask             targets (Gaussian-like heat with
#                                           peaks of 1, sizes/offsets, mask)
#   det/loss              f32 (1)   CenterNet's loss on out.train; det/loss.parts (3)
#   det/dout              f32 (2, 7, 8, 8)  its gradient
# Run from the repo root:  /usr/bin/python3 tests/ref/gen_det_ref.py
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_engine_ref import record  # noqa: E402
from centernet_torch import CenterNet, centernet_loss  # noqa: E402

K, W, S, N = 3, 4, 32, 2


def main():
    torch.manual_seed(14)
    net = CenterNet(K, W)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(1 + 0.5 * torch.rand_like(t))
            else:
                t.add_(0.1 * torch.randn_like(t))
            t.copy_(t.half().float())
    x = torch.rand(N, 3, S, S)
    out_recs = [record("det/x", x, meta={"classes": K, "width": W, "size": S})]
    for name, t in net.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            out_recs.append(record("det/" + name, t, "f16"))
    net = net.double()
    xd = x.double()
    net.eval()
    with torch.no_grad():
        out_eval = net(xd)
    out_recs.append(record("det/out.eval", out_eval))
    out_recs.append(record("det/heat.eval", torch.sigmoid(out_eval[:, :K])))
    net.train()
    out = net(xd)
    oh = S // 4
    heat = (torch.rand(N, K, oh, oh, dtype=torch.float64) * 0.9)
    heat[0, 1, 3, 4] = 1
    heat[1, 0, 2, 2] = 1
    heat[1, 2, 6, 5] = 1
    heat = heat.float().double()  # the C test reads f32 targets
    reg = (torch.rand(N, 4, oh, oh, dtype=torch.float64) * 6).float().double()
    mask = torch.zeros(N, 4, oh, oh, dtype=torch.float64)
    mask[0, :, 3, 4] = 1
    mask[1, :, 2, 2] = 1
    mask[1, :, 6, 5] = 1
    out_leaf = out.detach().float().double().requires_grad_()  # the C loss sees f32 outputs
    loss, parts = centernet_loss(out_leaf, heat, reg, mask, K)
    loss.backward()
    out_recs += [record("det/out.train", out), record("det/heat", heat), record("det/reg", reg),
                 record("det/mask", mask), record("det/loss", loss.reshape(1)),
                 record("det/loss.parts", torch.stack(parts)), record("det/dout", out_leaf.grad)]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "det.tns")
    with open(path, "wb") as f:
        for r in out_recs:
            f.write(r)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
