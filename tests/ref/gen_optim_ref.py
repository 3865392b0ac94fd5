#!/usr/bin/python3
# gen_optim_ref.py: writes tests/ref/optim.tns, what PyTorch 1.13's optimisers
# and lr schedulers do on small fixed inputs, for tests/unit/test_optim.c.
# Needs python3-torch and python3-msgpack only to regenerate; the C test reads
# the committed file. Run from the repo root:
#     /usr/bin/python3 tests/ref/gen_optim_ref.py
#
# The file is a TNS stream (man/man5/tns.5). For each optimiser case C:
#   opt.C.lr        f64 (T)          lr given to step t; meta: kind, momentum,
#                                    dampening, nesterov, beta1, beta2, eps,
#                                    weight_decay, decay (per-parameter 0/1)
#   opt.C.pK.init   f32 (shape)      parameter K before the first step
#   opt.C.pK.grad   f32 (T, shape)   its gradient at each step
#   opt.C.pK.after  f32 (T, shape)   torch's parameter after each step
# Parameters with decay 0 sit in a torch param group with weight_decay=0.
# For each schedule case S (torch scheduler stepped once per step, from a
# fresh optimiser):
#   sched.S.lr      f64 (n)          lr in effect for steps 0..n-1; meta: spec,
#                                    warmup, base_lr, total_steps (per-step
#                                    specs) and spec_ep, warmup_ep, spe (the
#                                    same schedule in epochs of spe steps)
import warnings

import msgpack
import torch

T = 5  # optimiser steps per case

OPT_CASES = [
    # name, kind, hyperparameters, per-step lrs
    ("sgd", "sgd", dict(momentum=0.0), [0.1, 0.08, 0.05, 0.05, 0.02]),
    ("sgd_momentum", "sgd", dict(momentum=0.9), [0.1, 0.08, 0.05, 0.05, 0.02]),
    ("sgd_momentum_damp_wd", "sgd", dict(momentum=0.8, dampening=0.1, weight_decay=0.01),
     [0.1, 0.1, 0.1, 0.1, 0.1]),
    ("sgd_nesterov_wd", "sgd", dict(momentum=0.9, nesterov=True, weight_decay=0.01),
     [0.1, 0.08, 0.05, 0.05, 0.02]),
    ("adam", "adam", dict(), [1e-2, 8e-3, 5e-3, 5e-3, 2e-3]),
    ("adam_wd", "adam", dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
     [1e-2, 8e-3, 5e-3, 5e-3, 2e-3]),
    ("adamw", "adamw", dict(weight_decay=0.1), [1e-2, 8e-3, 5e-3, 5e-3, 2e-3]),
]

SHAPES = [(9, 19), (37,)]  # parameter 0 decays (a weight), parameter 1 not (a bias)
DECAY = [1, 0]


def record(name, array, dtype, meta=None):
    rec = {"fmt": "tns", "ver": 1, "kind": "tensor", "name": name, "dtype": dtype,
           "shape": list(array.shape)}
    if meta is not None:
        rec["meta"] = meta
    want = torch.float64 if dtype == "f64" else torch.float32
    rec["data"] = array.to(want).contiguous().numpy().astype("<f8" if dtype == "f64" else "<f4").tobytes()
    return msgpack.packb(rec, use_bin_type=True)


def make_optimiser(kind, groups, hp):
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.1, foreach=False, **hp)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=0.1, foreach=False, **hp)
    return torch.optim.AdamW(groups, lr=0.1, foreach=False, **hp)


def optimiser_case(gen, name, kind, hp, lrs):
    out = []
    inits = [torch.randn(s, generator=gen) for s in SHAPES]
    grads = [torch.randn((T,) + s, generator=gen) for s in SHAPES]
    grads[0][:, 0, 0] = 0.0  # a zero gradient: only weight decay moves it
    grads[1][2, :] = 0.0     # a step with no gradient for the bias
    params = [p.clone().requires_grad_(True) for p in inits]
    wd = hp.get("weight_decay", 0.0)
    rest = {k: v for k, v in hp.items() if k != "weight_decay"}
    groups = [{"params": [params[0]], "weight_decay": wd},
              {"params": [params[1]], "weight_decay": 0.0}]
    opt = make_optimiser(kind, groups, rest)
    after = [torch.empty((T,) + s) for s in SHAPES]
    for t in range(T):
        for g in opt.param_groups:
            g["lr"] = lrs[t]
        for k, p in enumerate(params):
            p.grad = grads[k][t].clone()
        opt.step()
        for k, p in enumerate(params):
            after[k][t] = p.detach()
    d = opt.defaults
    betas = d.get("betas", (0.9, 0.999))
    meta = {"kind": kind, "momentum": float(d.get("momentum", 0.0)),
            "dampening": float(d.get("dampening", 0.0)), "nesterov": int(d.get("nesterov", False)),
            "beta1": float(betas[0]), "beta2": float(betas[1]), "eps": float(d.get("eps", 1e-8)),
            "weight_decay": float(wd), "decay": DECAY}
    out.append(record(f"opt.{name}.lr", torch.tensor(lrs, dtype=torch.float64), "f64", meta))
    for k in range(len(SHAPES)):
        out.append(record(f"opt.{name}.p{k}.init", inits[k], "f32"))
        out.append(record(f"opt.{name}.p{k}.grad", grads[k], "f32"))
        out.append(record(f"opt.{name}.p{k}.after", after[k], "f32"))
    return out


BASE_LR = 0.1
SPE = 10  # steps per epoch for the *_ep forms

# name, main scheduler factory, warm-up (steps, start factor) or None, steps
# recorded, then the C specs: per step, and in epochs of SPE steps
SCHED_CASES = [
    ("step", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=70, gamma=0.5), None, 300,
     "step:70:0.5", "", "step:7:0.5", ""),
    ("multistep", lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[50, 120, 200], gamma=0.2),
     None, 300, "multistep:50,120,200:0.2", "", "multistep:5,12,20:0.2", ""),
    ("cosine", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=300, eta_min=1e-3), None, 301,
     "cosine:0.001", "", "cosine:0.001", ""),
    ("warmup_cosine", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=280), (20, 0.1), 301,
     "cosine", "20st:0.1", "cosine", "2ep:0.1"),
    ("warmup_step", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=70, gamma=0.5), (30, 0.25), 300,
     "step:70:0.5", "30st:0.25", "step:7:0.5", "3:0.25"),
    ("warmup_constant", None, (30, 1.0 / 3.0), 120, "constant", "30st", "constant", "3ep"),
]
TOTAL_STEPS = 300  # the run length cosine anneals over (warm-up included)


def schedule_case(name, factory, warmup, n):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    sched = None
    if warmup is not None:
        w, start = warmup
        linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start, total_iters=w)
        if factory is None:
            sched = linear
        else:
            main = factory(opt)
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [linear, main], milestones=[w])
    else:
        sched = factory(opt)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(lrs, dtype=torch.float64)


def main():
    warnings.simplefilter("ignore")  # SequentialLR's step(0) deprecation notice
    gen = torch.Generator().manual_seed(20240612)
    blobs = []
    for name, kind, hp, lrs in OPT_CASES:
        blobs += optimiser_case(gen, name, kind, hp, lrs)
    for name, factory, warmup, n, spec, wspec, spec_ep, wspec_ep in SCHED_CASES:
        lrs = schedule_case(name, factory, warmup, n)
        meta = {"spec": spec, "warmup": wspec, "spec_ep": spec_ep, "warmup_ep": wspec_ep,
                "spe": SPE, "base_lr": BASE_LR, "total_steps": TOTAL_STEPS}
        blobs.append(record(f"sched.{name}.lr", lrs, "f64", meta))
    with open("tests/ref/optim.tns", "wb") as f:
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
