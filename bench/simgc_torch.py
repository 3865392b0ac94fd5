#!/usr/bin/env python3
"""SimGC's condensation iteration in PyTorch, for timing against sgc-condense.

The same work per iteration as lib/graph/simgc.c on a Cora-sized problem: the pair
generator (PGE: Linear(2d, h) BN ReLU Linear(h, h) BN ReLU Linear(h, 1) over
all n*n pairs, symmetrised, sigmoid, zero diagonal, threshold), the GCN
normalisation, two propagation steps, the frozen MLP teacher (d -> 2048 -> C)
and its cross-entropy, L_rep against fixed class statistics, the Gaussian
smoothness term, backward, and one Adam step. Only the timing is compared;
the numbers are random (a timing harness, not a reimplementation to trust).

    python3 bench/simgc_torch.py [n] [d] [iterations] [threads] [official|split]
prints: torch <threads> threads: <ms> ms/iteration

official: the pair features [x_i ; x_j] are built for all n*n pairs and fed to
the first Linear, as GCond's and SimGC's code do (O(n^2 d h)); split: the
first layer as x_i W1a^T + x_j W1b^T, computed per node (O(n d h + n^2 h)),
as lib/graph/pge.c does.
"""
import sys
import time

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 70
d = int(sys.argv[2]) if len(sys.argv) > 2 else 1433
iters = int(sys.argv[3]) if len(sys.argv) > 3 else 100
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
mode = sys.argv[5] if len(sys.argv) > 5 else "official"
C, h, K, tau = 7, 128, 2, 0.01
torch.set_num_threads(threads)
torch.manual_seed(0)

x = torch.randn(n, d, requires_grad=True)
pge = torch.nn.Sequential(
    torch.nn.Linear(2 * d, h), torch.nn.BatchNorm1d(h), torch.nn.ReLU(),
    torch.nn.Linear(h, h), torch.nn.BatchNorm1d(h), torch.nn.ReLU(),
    torch.nn.Linear(h, 1))
teacher = torch.nn.Sequential(torch.nn.Linear(d, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, C))
for p in teacher.parameters():
    p.requires_grad_(False)
labels = torch.arange(n) % C
mu = torch.randn(C, (K + 1) * d) * 0.01
sd = torch.rand(C, (K + 1) * d) * 0.1
opt_x = torch.optim.Adam([x], lr=0.005)
opt_p = torch.optim.Adam(pge.parameters(), lr=0.001)
ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
ii, jj = ii.reshape(-1), jj.reshape(-1)


def step(it):
    opt_x.zero_grad()
    opt_p.zero_grad()
    if mode == "split":
        lin = pge[0]
        p = x @ lin.weight[:, :d].t()
        q = x @ lin.weight[:, d:].t()
        z = (p[:, None, :] + q[None, :, :]).reshape(n * n, h) + lin.bias
        e = pge[1:](z).reshape(n, n)
    else:
        e = pge(torch.cat([x[ii], x[jj]], 1)).reshape(n, n)
    a = torch.sigmoid((e + e.t()) / 2)
    a = a - torch.diag(torch.diag(a))
    a = a * (a >= tau)
    w = a.sum()
    diff = torch.exp(-0.5 * (x[:, None, :] - x[None, :, :]) ** 2).mean(2)
    smt = (a * diff).sum() / w
    ahat = a + torch.eye(n)
    s = ahat.sum(1).pow(-0.5)
    ahat = s[:, None] * ahat * s[None, :]
    layers = [x]
    for _ in range(K):
        layers.append(ahat @ layers[-1])
    h_all = torch.cat(layers, 1)
    rep = 0
    for c in range(C):
        rows = h_all[labels == c]
        rep = rep + ((rows.mean(0) - mu[c]) ** 2).mean() + ((rows.std(0) - sd[c]) ** 2).mean()
    lgt = torch.nn.functional.cross_entropy(teacher(layers[-1]), labels)
    loss = lgt + 10 * rep / C + 0.1 * smt
    loss.backward()
    (opt_p if it % 50 < 10 else opt_x).step()


for it in range(5):
    step(it)
t0 = time.perf_counter()
for it in range(iters):
    step(it)
ms = 1000 * (time.perf_counter() - t0) / iters
print(f"torch {threads} threads: {ms:.2f} ms/iteration (n {n}, d {d}, {mode})")
