#!/usr/bin/python3
# centernet_torch.py: logo-det's one-stage detector (lib/detect/centernet.c)
# as a torch module, module names = netsmith's node names so every state_dict
# key is a model tensor name; CenterNet's loss on its output; and a reader of
# TNS streams (man/man5/tns.5) for the tensors of a model or an image stream.
# Used by tests/ref/gen_det_ref.py and bench/logo_det_torch.py.
import msgpack
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

STRIDE = 4
PRIOR_BIAS = -2.19


class CBR(nn.Module):  # NAME.conv (no bias), NAME.bn, NAME.relu
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Up(nn.Module):  # 1x1 cbr, nearest x2, + lateral, 3x3 cbr
    def __init__(self, cin, cout):
        super().__init__()
        self.reduce = CBR(cin, cout, 1, 1)
        self.fuse = CBR(cout, cout, 3, 1)

    def forward(self, x, lateral):
        return self.fuse(F.interpolate(self.reduce(x), scale_factor=2, mode="nearest") + lateral)


def head(cin, mid, cout):  # NAME.0 conv3x3, NAME.1 relu, NAME.2 conv1x1
    return nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1), nn.ReLU(), nn.Conv2d(mid, cout, 1))


class CenterNet(nn.Module):
    def __init__(self, classes, width=16):
        super().__init__()
        w = width
        self.stem = CBR(3, w, 3, 2)
        self.down1 = CBR(w, 2 * w, 3, 2)
        self.block1 = CBR(2 * w, 2 * w, 3, 1)
        self.down2 = CBR(2 * w, 4 * w, 3, 2)
        self.block2 = CBR(4 * w, 4 * w, 3, 1)
        self.down3 = CBR(4 * w, 8 * w, 3, 2)
        self.block3 = CBR(8 * w, 8 * w, 3, 1)
        self.up1 = Up(8 * w, 4 * w)
        self.up2 = Up(4 * w, 2 * w)
        self.heatmap = head(2 * w, 2 * w, classes)
        self.box = head(2 * w, 2 * w, 4)
        with torch.no_grad():
            self.heatmap[2].bias.fill_(PRIOR_BIAS)

    def forward(self, x):
        c4 = self.block1(self.down1(self.stem(x)))
        c8 = self.block2(self.down2(c4))
        x = self.block3(self.down3(c8))
        x = self.up2(self.up1(x, c8), c4)
        return torch.cat([self.heatmap(x), self.box(x)], 1)


def centernet_loss(out, heat, reg, mask, K):
    """CenterNet's loss: penalty-reduced focal (alpha 2, beta 4) on the
    clamped sigmoid heatmap, normalised by the positives of the batch, plus
    0.1 * masked L1 on sizes and masked L1 on offsets (sum / (mask sum + 1e-4))."""
    p = torch.clamp(torch.sigmoid(out[:, :K]), 1e-4, 1 - 1e-4)
    pos = heat.eq(1).to(out.dtype)
    neg = 1 - pos
    pos_loss = (torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * neg).sum()
    npos = pos.sum()
    focal = -(pos_loss + neg_loss) / torch.clamp(npos, min=1)
    def l1(pred, t, m):
        return F.l1_loss(pred * m, t * m, reduction="sum") / (m.sum() + 1e-4)
    size = l1(out[:, K:K + 2], reg[:, 0:2], mask[:, 0:2])
    off = l1(out[:, K + 2:K + 4], reg[:, 2:4], mask[:, 2:4])
    return focal + 0.1 * size + off, (focal, size, off)


def decode(out, K, topk=100):
    """Sigmoid heatmap, 3x3 max-pool peaks, top-k over every class; boxes in
    input pixels (N, topk, 4), scores, classes. Unclipped."""
    heat = torch.sigmoid(out[:, :K])
    keep = (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
    heat = heat * keep
    n, _, h, w = heat.shape
    scores, idx = torch.topk(heat.reshape(n, -1), topk)
    cls = idx // (h * w)
    pix = idx % (h * w)
    ys, xs = (pix // w).to(out.dtype), (pix % w).to(out.dtype)
    reg = out[:, K:].reshape(n, 4, -1)
    g = lambda c: torch.gather(reg[:, c], 1, pix)
    cx, cy = xs + g(2), ys + g(3)
    boxes = torch.stack([cx - g(0) / 2, cy - g(1) / 2, cx + g(0) / 2, cy + g(1) / 2], 2) * STRIDE
    return boxes, scores, cls


# --- TNS streams ----------------------------------------------------------------
DTYPES = {"f32": "<f4", "f16": "<f2", "f64": "<f8", "i32": "<i4", "i64": "<i8", "u8": "u1"}


def read_tns(path, want=None):
    """Yields (kind, name, meta, array or None) for each record of a stream."""
    with open(path, "rb") as f:
        for rec in msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 31):
            arr = None
            if rec.get("kind") == "tensor" and (want is None or want(rec)):
                arr = np.frombuffer(rec["data"], dtype=DTYPES[rec["dtype"]]).reshape(rec["shape"])
            yield rec.get("kind"), rec.get("name"), rec.get("meta", {}), arr


def load_model(path, classes, width):
    """A CenterNet with the tensors of a netsmith model stream."""
    net = CenterNet(classes, width)
    sd = net.state_dict()
    for kind, name, _, arr in read_tns(path):
        if kind == "tensor" and name in sd:
            sd[name] = torch.from_numpy(arr.astype(np.float32).copy())
    net.load_state_dict(sd)
    return net
