#!/usr/bin/python3
# gen_prune_ref.py: writes tests/ref/prune.tns, the pruning criteria of
# lib/prune/prune.h computed independently with PyTorch in float64, for
# tests/unit/test_prune.c. Needs python3-torch and python3-msgpack only to
# regenerate; the C test reads the committed file. Run from the repo root:
#     /usr/bin/python3 tests/ref/gen_prune_ref.py
#
# The model (the same spec text is in test_prune.c):
#   input 2x4x4 -> conv a (6, 3x3 pad 1) bna ra -> conv b (5) bnb rb
#   -> conv c (6) bnc -> add(bnc, ra) rs -> flatten -> fc1 (7) r1 -> fc (3)
# Its prunable channel groups, by the node that makes them:
#   a    6 channels: a rows, bna, b columns, c rows, bnc, fc1 columns c*16..c*16+15
#   b    5 channels: b rows, bnb, c columns
#   fc1  7 channels: fc1 rows, fc columns (no batch norm: bn-scale leaves it)
# The weight members (slot "weight" of each; biases and running statistics are
# not read) and the formulas are prune.h's; each member's per-channel score is
# averaged over the group's members and divided by the group mean (lamp:
# u_i / sum_{j>=i} u_j over the ascending order instead). Data criteria run in
# eval mode: taylor sums the gradients of the mean cross-entropy of the two
# batches of 8, obd-hessian averages the squared per-sample gradients;
# hrank is described where it is computed.
#
# Records: x f32 (16, 2, 4, 4), y i32 (16), w/<tensor> f32 every parameter and
# buffer, score/<criterion>/<group> f32 (size).
import msgpack
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(7)
N, BATCH = 16, 8


def record(name, t, dtype="f32"):
    np_dtype = {"f32": "<f4", "i32": "<i4"}[dtype]
    rec = {"fmt": "tns", "ver": 1, "kind": "tensor", "name": name, "dtype": dtype,
           "shape": list(t.shape),
           "data": t.detach().cpu().contiguous().numpy().astype(np_dtype).tobytes()}
    return msgpack.packb(rec, use_bin_type=True)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 6, 3, padding=1)
        self.bna = nn.BatchNorm2d(6)
        self.b = nn.Conv2d(6, 5, 3, padding=1)
        self.bnb = nn.BatchNorm2d(5)
        self.c = nn.Conv2d(5, 6, 3, padding=1)
        self.bnc = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(96, 7)
        self.fc = nn.Linear(7, 3)

    def forward(self, x, acts=None):
        ra = F.relu(self.bna(self.a(x)))
        rb = F.relu(self.bnb(self.b(ra)))
        rs = F.relu(self.bnc(self.c(rb)) + ra)
        r1 = F.relu(self.fc1(rs.flatten(1)))
        if acts is not None:
            acts.update(a=ra, b=rb, fc1=r1, rs=rs)
        return self.fc(r1)


net = Net()
with torch.no_grad():  # batch norms away from the identity, values exact in f32
    for bn in (net.bna, net.bnb, net.bnc):
        bn.weight.uniform_(-1.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    for p in net.state_dict().values():
        if p.dtype.is_floating_point:
            p.copy_(p.float())
x = torch.randn(N, 2, 4, 4).float()
y = torch.randint(0, 3, (N,))
net = net.double().eval()
xd = x.double()

# group -> [(tensor name, how the channel indexes it)]
rows = lambda t: (t, "rows")
cols = lambda t: (t, "cols")
GROUPS = {
    "a": [rows("a.weight"), rows("bna.weight"), cols("b.weight"), rows("c.weight"), rows("bnc.weight"),
          ("fc1.weight", "flat16")],
    "b": [rows("b.weight"), rows("bnb.weight"), cols("c.weight")],
    "fc1": [rows("fc1.weight"), cols("fc.weight")],
}
SIZE = {"a": 6, "b": 5, "fc1": 7}
params = dict(net.named_parameters())


def slice_of(w, how, k):
    if how == "rows":
        return w[k].reshape(-1)
    if how == "cols":
        return w[:, k].reshape(-1)
    return w[:, k * 16:(k + 1) * 16].reshape(-1)  # flatten: channel k's 16 features


def member_scores(name, how, size, fn):
    w = params[name]
    return torch.stack([fn(name, slice_of(w, how, k), how, k) for k in range(size)])


def reduce_norm(group, fn, keep=lambda name: True):
    ms = [member_scores(n, h, SIZE[group], fn) for n, h in GROUPS[group] if keep(n)]
    if not ms:
        return None
    s = torch.stack(ms).mean(0)
    return s / s.mean()


def lamp(u):
    order = sorted(range(len(u)), key=lambda i: (u[i].item(), i))
    out = torch.zeros_like(u)
    tail = 0.0
    for i in reversed(order):
        tail += u[i].item()
        out[i] = u[i] / tail
    return out


def fpgm_member(name, how, size):
    w = params[name]
    f = torch.stack([slice_of(w, how, k) for k in range(size)])
    d = torch.cdist(f.unsqueeze(0), f.unsqueeze(0)).squeeze(0)
    return d.sum(1)


# gradients: taylor (sum over batches of the batch-mean loss' gradient)
net.zero_grad()
for s in range(0, N, BATCH):
    F.cross_entropy(net(xd[s:s + BATCH]), y[s:s + BATCH]).backward()
grad = {n: p.grad.clone() for n, p in params.items()}
fisher = {n: torch.zeros_like(p) for n, p in params.items()}
for i in range(N):
    net.zero_grad()
    F.cross_entropy(net(xd[i:i + 1]), y[i:i + 1]).backward()
    for n, p in params.items():
        fisher[n] += p.grad ** 2
fisher = {n: f / N for n, f in fisher.items()}
sliced = lambda table: (lambda name, how, k: slice_of(table[name], how, k))

conv_or_linear = lambda n: not n.startswith("bn")
scores = {}
for g in GROUPS:
    scores[("l1", g)] = reduce_norm(g, lambda n, s, h, k: s.abs().sum())
    scores[("l2", g)] = reduce_norm(g, lambda n, s, h, k: (s ** 2).sum())
    scores[("bn-scale", g)] = reduce_norm(g, lambda n, s, h, k: s.abs().sum(), lambda n: n.startswith("bn"))
    u = torch.stack([member_scores(n, h, SIZE[g], lambda n, s, h, k: (s ** 2).sum()) for n, h in GROUPS[g]]).mean(0)
    scores[("lamp", g)] = lamp(u)
    fp = torch.stack([fpgm_member(n, h, SIZE[g]) for n, h in GROUPS[g] if conv_or_linear(n)]).mean(0)
    scores[("fpgm", g)] = fp / fp.mean()
    scores[("taylor", g)] = reduce_norm(
        g, lambda n, s, h, k: (s * slice_of(grad[n], h, k)).abs().sum())
    scores[("obd-hessian", g)] = reduce_norm(
        g, lambda n, s, h, k: (s ** 2 * slice_of(fisher[n], h, k)).sum())

# hrank: mean rank of each channel's map in the group's first relu output
# (ra, rb: 4x4 maps; r1: a vector, rank 1 where non-zero); rank tolerance
# max(H, W) * 2^-23 * the largest singular value
acts = {}
with torch.no_grad():
    net(xd, acts)
for g in GROUPS:
    a = acts[g]
    if a.dim() == 2:
        r = (a != 0).double().mean(0)
    else:
        r = torch.zeros(a.shape[1], dtype=torch.float64)
        for i in range(N):
            for k in range(a.shape[1]):
                m = a[i, k]
                sv = torch.linalg.svdvals(m)
                r[k] += (sv > max(m.shape) * 2.0 ** -23 * sv[0]).sum().item() if sv[0] > 0 else 0
        r /= N
    scores[("hrank", g)] = r / r.mean()

# thinet and cp (lib/prune/reconstruct.c), from the contributions z_k of each
# input channel k to the outputs (no bias) of the layers reading the group, at
# every output location (4x4 maps: all 16 locations, as the C code takes when
# there are no more than 16): group a is read by conv b and, through the
# flatten, by fc1; b by conv c; fc1 by fc. Per reader i, G_i = Z Z^T and E_i =
# |sum_k z_k|^2; Gn = the mean of G_i / E_i. thinet: greedy removal, score =
# the relative error once removed (running maximum). cp: the LASSO
# 1/2 (1-b)^T Gn (1-b) + lambda |b|_1 solved here by FISTA (the C code uses
# coordinate descent) at 80 values lambda_max 1e-4^(t/79); score = the first
# (largest) lambda where b_k != 0, times 1 + 0.01 min(|b_k|, 1) at the last.
def contributions(x_in, w, how, size):
    z = []
    for k in range(size):
        if how == "conv":
            z.append(F.conv2d(x_in[:, k:k + 1], w[:, k:k + 1], padding=1).reshape(-1))
        elif how == "flat16":
            z.append((x_in[:, k * 16:(k + 1) * 16] @ w[:, k * 16:(k + 1) * 16].T).reshape(-1))
        else:
            z.append((x_in[:, k:k + 1] @ w[:, k:k + 1].T).reshape(-1))
    return torch.stack(z)


READERS = {"a": [("rs_conv", "a", "b.weight", "conv"), ("rs_flat", "rs", "fc1.weight", "flat16")],
           "b": [("c", "b", "c.weight", "conv")],
           "fc1": [("fc", "fc1", "fc.weight", "linear")]}


def normalised_gram(g):
    gn = 0
    for _, act, wname, how in READERS[g]:
        x_in = acts[act].flatten(1) if how == "flat16" else acts[act]
        z = contributions(x_in, params[wname].detach(), how, SIZE[g])
        gn = gn + (z @ z.T) / (z.sum(0) ** 2).sum()
    return (gn / len(READERS[g])).numpy()


def thinet(gn):
    n = len(gn)
    gone, err, shown, score = [], 0.0, 0.0, [0.0] * n
    for step in range(n):
        d = {k: gn[k, k] + 2 * sum(gn[a, k] for a in gone) for k in range(n) if k not in gone}
        best = min(d, key=lambda k: (d[k], k))
        gone.append(best)
        err += d[best]
        shown = max(shown, err)
        score[best] = shown + 1e-12 * step
    return torch.tensor(score)


def cp(gn):
    n = len(gn)
    g1 = gn.sum(1)
    lmax = abs(g1).max()
    step = 1 / np.linalg.eigvalsh(gn).max()
    b = np.zeros(n)
    score = np.zeros(n)
    for t in range(80):
        lam = lmax * 1e-4 ** (t / 79)
        v, tk = b.copy(), 1.0
        for it in range(20000):  # FISTA
            u = v - step * (gn @ v - g1)
            nb = np.sign(u) * np.maximum(abs(u) - step * lam, 0)
            tn = (1 + (1 + 4 * tk * tk) ** 0.5) / 2
            v = nb + (tk - 1) / tn * (nb - b)
            done = abs(nb - b).max() < 1e-13
            b, tk = nb, tn
            if done:
                break
        for k in range(n):
            if b[k] != 0 and score[k] == 0:
                score[k] = lam
    return torch.tensor(score * (1 + 0.01 * np.minimum(abs(b), 1)))


for g in GROUPS:
    gn = normalised_gram(g)
    scores[("thinet", g)] = thinet(gn)
    scores[("cp", g)] = cp(gn)

with open("tests/ref/prune.tns", "wb") as f:
    f.write(record("x", x))
    f.write(record("y", y.int(), "i32"))
    for n, t in net.state_dict().items():
        if t.dtype.is_floating_point:
            f.write(record("w/" + n, t.float()))
    for (crit, g), s in scores.items():
        if s is not None:
            f.write(record("score/%s/%s" % (crit, g), s.float()))
print("tests/ref/prune.tns: %d scores" % sum(s is not None for s in scores.values()))
