#!/usr/bin/python3
# gen_engine_ref.py: writes tests/ref/engine.tns, what PyTorch 1.13 computes for
# single layers and whole built-in architectures (forward in training and eval
# mode, gradients, running statistics), for tests/unit/test_engine.c. Needs
# python3-torch and python3-msgpack only to regenerate; the C test reads the
# committed file. Run from the repo root:
#     /usr/bin/python3 tests/ref/gen_engine_ref.py
#
# Module names match netsmith's node names (lib/nn/arch.c: conv1, bn1,
# layer1.0.shortcut.0, features.conv0, fc, ...), so every state_dict key is a
# model tensor name. The file is a TNS stream (man/man5/tns.5); for each case C
# (meta of C/x: the case's parameters):
#   C/x                    f32 (N, in...)   the input
#   C/<tensor>             f16 (shape)      every parameter and buffer before the
#                                           forward (num_batches_tracked skipped)
#   C/out.train            f32 (N, out...)  forward in training mode (batch statistics)
#   C/R                    f32 (N, out...)  fixed random weights of L = sum(out.train * R)
#   C/<param>.grad         f32 (shape)      dL/d param, for every trainable parameter
#   C/x.grad               f32 (N, in...)   dL/dx
#   C/<buffer>.after       f32 (C)          running statistics after that one forward
#   C/out.eval             f32 (N, out...)  then forward in eval mode
# and for resnet20 only, softmax cross-entropy with label smoothing 0.1 on the
# training-mode logits (torch.nn.CrossEntropyLoss, mean reduction):
#   C/ce.labels i32 (N), C/ce.loss f32 [], C/ce.dlogits f32 (N, K), C/ce.x.grad f32 (N, in...)
#
# Parameters are torch's default initialisation (torch.manual_seed) rounded to
# float16, so storing them as f16 is exact and halves the file (< 2 MB with
# resnet20). Exception: the two batch-norm single-layer cases perturb weight,
# bias and running statistics away from torch's defaults (1, 0, 0, 1), which
# would hide a weight/bias mix-up or eval mode ignoring the running statistics.
# Everything after the stored x and parameters is computed in float64 (the
# model and x converted with .double()) and rounded to f32 when written: the
# reference is then exact to float32 rounding, and the C test measures its own
# error rather than the sum of its and torch's float32 errors.
import msgpack
import torch
import torch.nn as nn
import torch.nn.functional as F

N = 4
CLASSES = 10
SMOOTHING = 0.1


def record(name, t, dtype="f32", meta=None):
    np_dtype = {"f32": "<f4", "f16": "<f2", "i32": "<i4"}[dtype]
    rec = {"fmt": "tns", "ver": 1, "kind": "tensor", "name": name, "dtype": dtype,
           "shape": list(t.shape)}
    if meta is not None:
        rec["meta"] = meta
    rec["data"] = t.detach().cpu().contiguous().numpy().astype(np_dtype).tobytes()
    return msgpack.packb(rec, use_bin_type=True)


# ---------------------------------------------------------------------------
# models


class Single(nn.Module):
    """One layer under the node name `name`."""

    def __init__(self, name, layer):
        super().__init__()
        self.name = name
        self.add_module(name, layer)

    def forward(self, x):
        return getattr(self, self.name)(x)


class LeNet(nn.Module):  # lib/nn/arch.c build_lenet
    def __init__(self, in_c, in_hw, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        s = ((in_hw // 2) - 4) // 2
        self.fc1 = nn.Linear(16 * s * s, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc(x)


class VGGFeatures(nn.Module):  # features.conv0, features.bn0, ...
    def __init__(self, in_c, depth, width):
        super().__init__()
        c, layer, self.stages = round(16 * width), 0, depth // 2
        for stage in range(depth // 2):
            for _ in range(2):
                self.add_module(f"conv{layer}", nn.Conv2d(in_c, c, 3, padding=1, bias=False))
                self.add_module(f"bn{layer}", nn.BatchNorm2d(c))
                in_c, layer = c, layer + 1
            c *= 2
        self.out_c = in_c

    def forward(self, x):
        layer = 0
        for _ in range(self.stages):
            for _ in range(2):
                x = F.relu(getattr(self, f"bn{layer}")(getattr(self, f"conv{layer}")(x)))
                layer += 1
            x = F.max_pool2d(x, 2)
        return x


class VGG(nn.Module):  # lib/nn/arch.c build_vgg
    def __init__(self, in_c, in_hw, classes, depth, width):
        super().__init__()
        self.features = VGGFeatures(in_c, depth, width)
        hw = in_hw >> (depth // 2)
        self.fc = nn.Linear(self.features.out_c * hw * hw, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):  # lib/nn/arch.c basic_block
    def __init__(self, in_c, out_c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_c != out_c:
            self.shortcut = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_c))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):  # lib/nn/arch.c build_resnet(16, 3 stages, 3 blocks)
    def __init__(self, in_c, classes, width):
        super().__init__()
        c = round(16 * width)
        self.conv1 = nn.Conv2d(in_c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        in_c = c
        for s in range(3):
            out_c = round((16 << s) * width)
            blocks = []
            for k in range(3):
                blocks.append(BasicBlock(in_c, out_c, 2 if k == 0 and s > 0 else 1))
                in_c = out_c
            self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(in_c, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# name, input shape (per sample), model factory, meta for the C test
CASES = [
    ("conv_s2p1", (3, 9, 9), lambda: Single("conv", nn.Conv2d(3, 4, 3, stride=2, padding=1)),
     {"out": 4, "kernel": 3, "stride": 2, "pad": 1, "dilation": 1, "groups": 1, "bias": 1}),
    ("conv_groups", (4, 7, 7), lambda: Single("conv", nn.Conv2d(4, 6, 3, padding=1, groups=2)),
     {"out": 6, "kernel": 3, "stride": 1, "pad": 1, "dilation": 1, "groups": 2, "bias": 1}),
    ("conv_dilation", (2, 9, 9), lambda: Single("conv", nn.Conv2d(2, 3, 3, padding=2, dilation=2)),
     {"out": 3, "kernel": 3, "stride": 1, "pad": 2, "dilation": 2, "groups": 1, "bias": 1}),
    ("conv_1x1", (5, 6, 6), lambda: Single("conv", nn.Conv2d(5, 4, 1)),
     {"out": 4, "kernel": 1, "stride": 1, "pad": 0, "dilation": 1, "groups": 1, "bias": 1}),
    ("conv_depthwise", (4, 8, 8),
     lambda: Single("conv", nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)),
     {"out": 4, "kernel": 3, "stride": 1, "pad": 1, "dilation": 1, "groups": 4, "bias": 0}),
    ("bn2d", (3, 5, 5), lambda: Single("bn", nn.BatchNorm2d(3)), {}),
    ("bn1d", (6,), lambda: Single("bn", nn.BatchNorm1d(6)), {}),
    ("linear", (12,), lambda: Single("fc", nn.Linear(12, 5)), {"out": 5}),
    ("lenet", (1, 16, 16), lambda: LeNet(1, 16, CLASSES), {"classes": CLASSES}),
    ("vgg", (3, 16, 16), lambda: VGG(3, 16, CLASSES, 4, 0.5),
     {"classes": CLASSES, "depth": 4, "width": 0.5}),
    ("resnet20", (1, 16, 16), lambda: ResNet20(1, CLASSES, 1.0), {"classes": CLASSES, "width": 1.0}),
]


def perturb_bn(bn, gen):
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(1 + 0.5 * torch.randn(c, generator=gen))
        bn.bias.copy_(0.5 * torch.randn(c, generator=gen))
        bn.running_mean.copy_(0.3 * torch.randn(c, generator=gen))
        bn.running_var.copy_(0.5 + torch.rand(c, generator=gen))


def run_case(gen, name, in_shape, factory, meta, make_x=None):
    # make_x(gen): another input than N(0, 1) (token ids: no gradient reaches
    # them, so their x.grad is recorded as zeros)
    model = factory()
    if name.startswith("bn"):
        perturb_bn(model.bn, gen)
    with torch.no_grad():  # exactly representable in f16, so stored losslessly
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    out = []
    x = make_x(gen) if make_x else torch.randn((N,) + in_shape, generator=gen)
    out.append(record(f"{name}/x", x, meta=meta))
    model.double()
    x = x.double().requires_grad_(True)
    for key, t in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            out.append(record(f"{name}/{key}", t, "f16"))
    buffers = {k: b for k, b in model.named_buffers() if not k.endswith("num_batches_tracked")}

    model.train()
    y = model(x)
    R = (torch.rand(y.shape, generator=gen) * 2 - 1).double()
    out.append(record(f"{name}/out.train", y))
    out.append(record(f"{name}/R", R))
    params = list(model.named_parameters())
    grads = torch.autograd.grad((y * R).sum(), [p for _, p in params] + [x], retain_graph=True,
                                allow_unused=make_x is not None)
    grads = [torch.zeros_like(x) if g is None else g for g in grads]
    for (key, _), g in zip(params, grads):
        out.append(record(f"{name}/{key}.grad", g))
    out.append(record(f"{name}/x.grad", grads[-1]))
    for key, b in buffers.items():
        out.append(record(f"{name}/{key}.after", b))

    if name == "resnet20":
        labels = torch.randint(0, CLASSES, (N,), generator=gen)
        logits = y.detach().requires_grad_(True)
        loss = nn.CrossEntropyLoss(label_smoothing=SMOOTHING)(logits, labels)
        (dlogits,) = torch.autograd.grad(loss, logits)
        (gx,) = torch.autograd.grad(y, x, grad_outputs=dlogits)
        out.append(record(f"{name}/ce.labels", labels.to(torch.int32), "i32",
                          {"smoothing": SMOOTHING}))
        out.append(record(f"{name}/ce.loss", loss))
        out.append(record(f"{name}/ce.dlogits", dlogits))
        out.append(record(f"{name}/ce.x.grad", gx))

    model.eval()
    with torch.no_grad():
        out.append(record(f"{name}/out.eval", model(x)))
    return out


def main():
    torch.manual_seed(20240613)  # the default initialisations draw from this
    gen = torch.Generator().manual_seed(20240614)  # inputs, R, labels, BN perturbations
    torch.use_deterministic_algorithms(True)
    blobs = []
    for name, in_shape, factory, meta in CASES:
        blobs += run_case(gen, name, in_shape, factory, meta)
    with open("tests/ref/engine.tns", "wb") as f:
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
