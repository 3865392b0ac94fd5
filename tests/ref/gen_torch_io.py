#!/usr/bin/python3
# gen_torch_io.py: writes the PyTorch checkpoints tns-from-torch is tested on
# (tests/ref/torch_io/, committed, so the C test test_torch_io.c and the Bats
# suite torchio.bats run without torch) and what torch computes on them:
#   <case>.pt           torch.save of the state_dict (or of a checkpoint dict)
#   <case>.safetensors  the same tensors as safetensors (some in f16 / bf16)
#   torch_io.tns        "<case>/input" (N, C, H, W) or (N, D), "<case>/logits" (N, K)
#                       in eval mode, with the weights exactly as stored
# Cases are small (a few hundred kB in all): a ResNet-20 x0.25, a VGG of
# four convs at width 0.5, LeNet-5, an MLP whose tensors are strided views
# and slices of one storage, a ViT (patch 4, 16 features, 1 block, 2 heads).
# Also imported by tests/bats/torchio.bats (MLP, read_safetensors) for its
# round trips. Needs python3-torch and python3-msgpack to regenerate:
#   /usr/bin/python3 tests/ref/gen_torch_io.py
import json
import os
import sys

import msgpack
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_engine_ref import VGG, LeNet, ResNet20, perturb_bn, record  # noqa: E402
from gen_transformer_ref import ViT  # noqa: E402

N = 4
CLASSES = 10
OUT = os.path.join(HERE, "torch_io")

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32"}


def safetensors_bytes(sd, metadata=None):
    """The safetensors encoding of a dict of tensors (the format's spec, no library)."""
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in sd.items():
        t = t.detach().contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + b"".join(blobs)


def read_safetensors(path):
    """A safetensors file as a dict of tensors (for the round-trip tests)."""
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    base, out = 8 + n, {}
    inv = {v: k for k, v in ST_DTYPES.items()}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        dt = inv[e["dtype"]]
        raw = bytearray(data[base + b:base + end])
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.zeros(0, dtype=dt)
        out[name] = t.reshape(e["shape"])
    return out


class MLP(nn.Module):  # lib/nn/arch.c build_mlp
    def __init__(self, d, hidden, classes):
        super().__init__()
        sizes = [d] + hidden
        for i, h in enumerate(hidden):
            self.add_module(f"fc{i + 1}", nn.Linear(sizes[i], h))
        self.fc = nn.Linear(sizes[-1], classes)
        self.n = len(hidden)

    def forward(self, x):
        x = torch.flatten(x, 1)
        for i in range(self.n):
            x = F.relu(getattr(self, f"fc{i + 1}")(x))
        return self.fc(x)


def strided_mlp(gen):
    """An MLP whose fc1.weight is a transposed view and whose fc2/fc tensors are
    slices of one storage at offsets: torch.save keeps the views."""
    m = MLP(20, [16, 12], CLASSES)
    with torch.no_grad():
        m.fc1.weight = nn.Parameter(torch.randn(20, 16, generator=gen).t() * 0.3)
        flat = torch.randn(16 * 12 + 12 + 12 * CLASSES + CLASSES + 5, generator=gen) * 0.3
        at = 5
        for lin in (m.fc2, m.fc):
            w = flat[at:at + lin.weight.numel()].view(lin.weight.shape)
            at += lin.weight.numel()
            b = flat[at:at + lin.bias.numel()]
            at += lin.bias.numel()
            lin.weight, lin.bias = nn.Parameter(w), nn.Parameter(b)
    return m


# name, input shape, model factory, stored dtype of the safetensors, how the .pt is wrapped
CASES = [
    ("resnet20", (3, 16, 16), lambda g: ResNet20(3, CLASSES, 0.25), torch.float32, "plain"),
    ("vgg", (3, 16, 16), lambda g: VGG(3, 16, CLASSES, 4, 0.5), torch.bfloat16, "plain"),
    ("lenet", (1, 16, 16), lambda g: LeNet(1, 16, CLASSES), torch.float16, "checkpoint"),
    ("mlp", (20,), strided_mlp, torch.float32, "plain"),
    ("vit", (3, 16, 16), lambda g: ViT(3, 16, 4, 16, 1, 2, CLASSES), torch.float16, "plain"),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(16)
    refs = []
    for name, shape, factory, dtype, wrap in CASES:
        model = factory(gen)
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                perturb_bn(mod, gen)
                mod.num_batches_tracked.fill_(7)
        model.eval()
        # The weights as stored: rounded through the stored dtype.
        with torch.no_grad():
            for p in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
                p.copy_(p.to(dtype).to(torch.float32))
        sd = model.state_dict()
        if wrap == "checkpoint":  # a training checkpoint of a DataParallel model
            pt = {"epoch": 3, "best_acc": 0.5, "arch": name,
                  "state_dict": {"module." + k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}}
        else:
            pt = sd
        torch.save(pt, os.path.join(OUT, f"{name}.pt"))
        st = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
        with open(os.path.join(OUT, f"{name}.safetensors"), "wb") as f:
            f.write(safetensors_bytes(st, {"format": "pt"}))
        x = torch.randn(N, *shape, generator=gen)
        with torch.no_grad():
            y = model(x)
        refs.append(record(f"{name}/input", x))
        refs.append(record(f"{name}/logits", y))
    with open(os.path.join(OUT, "torch_io.tns"), "wb") as f:
        for b in refs:
            f.write(b)


if __name__ == "__main__":
    main()
