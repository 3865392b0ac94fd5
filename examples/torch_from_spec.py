#!/usr/bin/python3
"""torch_from_spec.py: a netsmith-spec(5) graph as a torch.nn.Module, with the
weights tns-to-torch wrote. For models that no torchvision class fits any
more (pruned by net-prune, merged by perm-align):

    tns-to-torch --spec pruned.cfg -o pruned.safetensors pruned.tns
    python3 examples/torch_from_spec.py pruned.cfg pruned.safetensors

or, from Python:

    from torch_from_spec import SpecNet, load_safetensors
    net = SpecNet(open("pruned.cfg").read())
    net.load_state_dict(load_safetensors("pruned.safetensors"))
    net.eval()

Modules are nested by the dots of the node names, so the state_dict names
are the spec's tensor names (layer1.0.conv1.weight). The CNN and MLP ops are
covered: input, conv2d, batchnorm, linear, relu, leaky_relu, gelu, sigmoid,
tanh, maxpool, avgpool, global_avgpool, add, mul, concat, flatten, dropout,
layernorm, softmax. Needs torch only (safetensors is read here, no library)."""
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_spec(text):
    """[(op, name, {key: value}, [input refs])] in file order, names defaulted as netsmith does."""
    sections, counts = [], {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            words = line.strip("[]").split()
            op = words[0]
            if len(words) > 1:
                name = words[1]
            elif op == "input":
                name = "input"
            else:
                counts[op] = counts.get(op, 0) + 1
                name = f"{op}{counts[op]}"
            sections.append([op, name, {}, None])
        else:
            key, value = (s.strip() for s in line.split("=", 1))
            if key == "from":
                sections[-1][3] = [v.strip() for v in value.split(",")]
            else:
                sections[-1][2][key] = value
    nodes = []
    for i, (op, name, attrs, refs) in enumerate(sections):
        if refs is None:
            refs = [] if op == "input" else ["-1"]
        inputs = [sections[i + int(r)][1] if r.startswith("-") else r for r in refs]
        nodes.append((op, name, attrs, inputs))
    return nodes


class SpecNet(nn.Module):
    def __init__(self, text):
        super().__init__()
        self.nodes = parse_spec(text)
        self.leaf = {}
        shapes = {}
        for op, name, a, inputs in self.nodes:
            i = lambda k, d: int(a.get(k, d))  # noqa: E731
            s = shapes[inputs[0]] if inputs else None
            mod = None
            if op == "input":
                shapes[name] = [int(v) for v in a["shape"].split("x")]
                continue
            if op == "conv2d":
                k, st, p, d, g = i("kernel", 3), i("stride", 1), i("pad", 0), i("dilation", 1), i("groups", 1)
                mod = nn.Conv2d(s[0], i("out", 1), k, st, p, d, g, bias=bool(i("bias", 1)))
                hw = [(v + 2 * p - d * (k - 1) - 1) // st + 1 for v in s[1:]]
                shapes[name] = [i("out", 1)] + hw
            elif op == "linear":
                mod = nn.Linear(s[-1], i("out", 1), bias=bool(i("bias", 1)))
                shapes[name] = s[:-1] + [i("out", 1)]
            elif op == "batchnorm":
                cls = nn.BatchNorm2d if len(s) == 3 else nn.BatchNorm1d
                mod = cls(s[0], eps=float(a.get("eps", 1e-5)), momentum=float(a.get("momentum", 0.1)))
            elif op == "layernorm":
                mod = nn.LayerNorm(s[-1], eps=float(a.get("eps", 1e-5)))
            elif op in ("maxpool", "avgpool"):
                k, p = i("kernel", 2), i("pad", 0)
                st = i("stride", 0) or k
                shapes[name] = [s[0]] + [(v + 2 * p - k) // st + 1 for v in s[1:]]
            elif op == "global_avgpool":
                shapes[name] = [s[0]]
            elif op == "flatten":
                shapes[name] = [math.prod(s)]
            elif op == "concat":
                shapes[name] = [sum(shapes[r][0] for r in inputs)] + s[1:]
            elif op not in ("relu", "leaky_relu", "gelu", "sigmoid", "tanh", "add", "mul", "dropout", "softmax"):
                raise ValueError(f"{name}: op {op} is not covered by this loader")
            shapes.setdefault(name, s)
            if mod is not None:
                self._place(name, mod)

    def _place(self, name, mod):
        """Registers mod under its dotted name, making container modules on the way."""
        parent, *path = [self] + name.split(".")[:-1]
        for part in path:
            if part not in parent._modules:
                parent.add_module(part, nn.Module())
            parent = parent._modules[part]
        parent.add_module(name.split(".")[-1], mod)
        self.leaf[name] = mod

    def forward(self, x):
        out = {}
        for op, name, a, inputs in self.nodes:
            xs = [out[r] for r in inputs]
            if op == "input":
                y = x
            elif name in self.leaf:
                y = self.leaf[name](xs[0])
            elif op == "relu":
                y = F.relu(xs[0])
            elif op == "leaky_relu":
                y = F.leaky_relu(xs[0], float(a.get("slope", 0.01)))
            elif op == "gelu":
                y = F.gelu(xs[0], approximate="tanh" if int(a.get("approximate", 0)) else "none")
            elif op in ("sigmoid", "tanh"):
                y = getattr(torch, op)(xs[0])
            elif op in ("maxpool", "avgpool"):
                k, p = int(a.get("kernel", 2)), int(a.get("pad", 0))
                st = int(a.get("stride", 0)) or k
                y = (F.max_pool2d if op == "maxpool" else F.avg_pool2d)(xs[0], k, st, p)
            elif op == "global_avgpool":
                y = xs[0].mean(dim=(2, 3))
            elif op == "add":
                y = xs[0] + xs[1]
            elif op == "mul":
                y = xs[0] * xs[1]
            elif op == "concat":
                y = torch.cat(xs, dim=1)
            elif op == "flatten":
                y = torch.flatten(xs[0], 1)
            elif op == "dropout":
                y = F.dropout(xs[0], float(a.get("p", 0.5)), self.training)
            elif op == "softmax":
                y = F.softmax(xs[0], dim=-1)
            out[name] = y
        return y


def load_safetensors(path):
    """A safetensors file as a state_dict (F32, F16, BF16, I64 and the other plain dtypes)."""
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    dtypes = {"F32": torch.float32, "F16": torch.float16, "F64": torch.float64, "I64": torch.int64,
              "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
    sd = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = bytearray(data[8 + n + b:8 + n + end])
        if e["dtype"] == "BF16":
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.zeros(0, dtype=torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dtypes[e["dtype"]]) if raw else torch.zeros(0, dtype=dtypes[e["dtype"]])
        sd[name] = t.reshape(e["shape"])
    return sd


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: torch_from_spec.py SPEC WEIGHTS.safetensors")
    net = SpecNet(open(sys.argv[1]).read())
    print(net.load_state_dict(load_safetensors(sys.argv[2])))
    print(f"{sum(p.numel() for p in net.parameters())} parameters")
