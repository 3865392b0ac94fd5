#!/usr/bin/python3
# prune_torch.py: the PyTorch side of bench/prune_speed.sh. Reads netsmith
# model streams (TNS: msgpack records; the graph record lists the nodes, then
# one record per tensor) and builds the same network in PyTorch from them:
# every conv2d, batchnorm and linear gets the stream's tensor shapes (so a
# pruned model becomes the same smaller network) and weights. Then, per model,
# images/s of eval-mode inference (no_grad) on random inputs of the model's
# input shape: the same number of images and batch as net-eval, after one
# warm-up pass, the best of --repeats passes. Prints one line per model:
# path, parameters (trainable: conv/linear weights and biases, batch-norm
# weight and bias), images/s.
#
#   /usr/bin/python3 bench/prune_torch.py [--images 2048] [--batch 128]
#                                         [--threads 2] [--repeats 3] MODEL...
#
# Ops: input, conv2d, batchnorm, relu, add, global_avgpool, flatten, maxpool
# is not needed by resnet20 and refused. Needs python3-torch, python3-msgpack.
import argparse
import sys
import time

import msgpack
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_model(path):
    nodes, tensors = None, {}
    with open(path, "rb") as f:
        for rec in msgpack.Unpacker(f, raw=False):
            if rec.get("kind") == "graph":
                nodes = rec["nodes"]
            elif rec.get("kind") == "tensor":
                assert rec["dtype"] == "f32", rec["name"]
                tensors[rec["name"]] = torch.from_numpy(
                    np.frombuffer(rec["data"], dtype="<f4").reshape(rec["shape"]).copy())
    if nodes is None:
        sys.exit(f"prune_torch.py: {path}: no graph record")
    return nodes, tensors


class Graph(nn.Module):
    def __init__(self, nodes, tensors):
        super().__init__()
        self.nodes = nodes
        self.mods = nn.ModuleDict()
        for n in nodes:
            p, a, key = n["params"], n["attrs"], n["name"].replace(".", "_")
            if n["op"] == "conv2d":
                w = tensors[p[0]]
                m = nn.Conv2d(w.shape[1] * a["groups"], w.shape[0], a["kernel"], a["stride"], a["pad"],
                              a["dilation"], a["groups"], bias=p[1] is not None)
                m.weight.data.copy_(w)
                if p[1] is not None:
                    m.bias.data.copy_(tensors[p[1]])
            elif n["op"] == "batchnorm":
                m = nn.BatchNorm2d(tensors[p[0]].shape[0], eps=a["eps"])
                m.weight.data.copy_(tensors[p[0]])
                m.bias.data.copy_(tensors[p[1]])
                m.running_mean.copy_(tensors[p[2]])
                m.running_var.copy_(tensors[p[3]])
            elif n["op"] == "linear":
                w = tensors[p[0]]
                m = nn.Linear(w.shape[1], w.shape[0], bias=p[1] is not None)
                m.weight.data.copy_(w)
                if p[1] is not None:
                    m.bias.data.copy_(tensors[p[1]])
            elif n["op"] in ("input", "relu", "add", "global_avgpool", "flatten"):
                continue
            else:
                sys.exit(f"prune_torch.py: op {n['op']} (node {n['name']}) is not supported")
            self.mods[key] = m

    def forward(self, x):
        out = {}
        for n in self.nodes:
            op, ins = n["op"], [out[i] for i in n["inputs"]]
            if op == "input":
                y = x
            elif op in ("conv2d", "batchnorm", "linear"):
                y = self.mods[n["name"].replace(".", "_")](ins[0])
            elif op == "relu":
                y = F.relu(ins[0])
            elif op == "add":
                y = ins[0]
                for t in ins[1:]:
                    y = y + t
            elif op == "global_avgpool":
                y = ins[0].mean((2, 3))
            elif op == "flatten":
                y = ins[0].flatten(1)
            out[n["name"]] = y
        return y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for path in args.models:
        nodes, tensors = read_model(path)
        net = Graph(nodes, tensors).eval()
        a = nodes[0]["attrs"]
        x = torch.randn(args.images, a["channels"], a["height"], a["width"])
        params = sum(p.numel() for p in net.parameters())
        best = None
        with torch.no_grad():
            for r in range(args.repeats + 1):
                t0 = time.perf_counter()
                for s in range(0, args.images, args.batch):
                    net(x[s:s + args.batch])
                dt = time.perf_counter() - t0
                if r > 0:  # the first pass warms up
                    best = dt if best is None else min(best, dt)
        print(f"{path}\t{params}\t{args.images / best:.1f}")


if __name__ == "__main__":
    main()
