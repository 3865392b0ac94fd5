#!/usr/bin/python3
# torch_speed.py: the PyTorch peer of build/bench/engine_speed: resnet20 (the
# CIFAR ResNet of lib/nn/arch.c: 3x3 stem, 3 stages x 3 BasicBlocks at 16w/32w/64w
# channels, bias-free convs, batch norm, 1x1 conv + BN shortcuts where the
# shape changes, global average pool, linear) on random 1x28x28 inputs.
# Prints images/s for inference (eval mode, no_grad) and for training
# (train mode, forward + softmax cross-entropy + backward, no optimiser step),
# each after warm-up, the median of the timed repeats.
#
#   /usr/bin/python3 bench/torch_speed.py [--batch 256] [--threads 2] [--iters 10]
#
# Debian's python3-torch (1.13) lives in /usr/bin/python3's site-packages.
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, in_c=1, classes=10, width=1.0):
        super().__init__()
        c = [max(1, round(b * width)) for b in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_c, c[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        layers, cin = [], c[0]
        for s in range(3):
            blocks = []
            for k in range(3):
                blocks.append(BasicBlock(cin, c[s], 2 if k == 0 and s > 0 else 1))
                cin = c[s]
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(c[2], classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed_args(doc):
    """The options every speed script takes (bench/vit_torch.py too)."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    return ap


def report_speed(model, x, y, args, what):
    """Times inference (eval, no_grad) and training (train mode, forward,
    cross-entropy, backward, no optimiser step) on the batch x, y and prints
    the images/s of each after a line naming torch, the threads and `what`."""
    def infer():
        with torch.no_grad():
            model(x)

    def train():
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()

    model.eval()
    t_inf = timed(infer, args.warmup, args.iters)
    model.train()
    t_train = timed(train, args.warmup, args.iters)
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} batch={args.batch} {what}")
    print(f"inference: {args.batch / t_inf:.0f} images/s ({t_inf * 1e3:.1f} ms/batch)")
    print(f"training:  {args.batch / t_train:.0f} images/s ({t_train * 1e3:.1f} ms/batch)")


def main():
    ap = speed_args(__doc__)
    ap.add_argument("--size", type=int, default=28)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ResNet20()
    x = torch.rand(args.batch, 1, args.size, args.size) * 2 - 1
    y = torch.randint(0, 10, (args.batch,))
    report_speed(model, x, y, args, f"input=1x{args.size}x{args.size}")


if __name__ == "__main__":
    main()
