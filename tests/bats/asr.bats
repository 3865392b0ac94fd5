#!/usr/bin/env bats
# asr-reweight: default descriptions from a known confusion, ASR weights
# against numpy (mean 1 per class, a planted off-concept subset
# down-weighted), a zero CAV equal to --uniform bit for bit, the fine-tuned
# head of a real model against a torch reference, the report against numpy,
# CAVs matched by concept name, net-train reading the weights, and bad input.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

need_py() {
    $PY -c 'import msgpack, numpy' 2> /dev/null || skip "python3-msgpack or numpy missing"
}

# Generated streams (into $T), D = 8, classes a, b, c, model "feedfeedfeedfeed", layer fc.in:
#   train.tns  300 samples: x = 0.5 + 0.3 noise + 3 e_y; the first 40 of class a
#              carry 0.3 e0 + 1.2 e1 + 3 e5 instead (off-concept, taken for b); 10 of
#              class b carry 3 e2 as well (taken for c); head W = 2 I (3 x 8), b = 0
#   test.tns   150 samples alike, ids from 10000
#   cavs.tns   cav of "a" = e0, "b" = e1, "c" = e2 (record order = class order)
gen_world() {
    $PY - "$T" <<'PY'
import sys, msgpack, numpy as np
out = sys.argv[1]
rng = np.random.default_rng(5)
D = 8
def rec(kind, name, arr=None, meta=None):
    r = {"fmt": "tns", "ver": 1, "kind": kind, "name": name}
    if arr is not None:
        r.update(dtype="f32", shape=list(arr.shape), data=np.ascontiguousarray(arr, np.float32).tobytes())
    if meta is not None: r["meta"] = meta
    return msgpack.packb(r)
def meta(model="feedfeedfeedfeed", layer="fc.in"):
    return rec("meta", "", meta={"probe.source": "model", "probe.model": model, "probe.model_path": "gen",
                                 "probe.layer": layer, "probe.pool": "none", "general.labels": ["a", "b", "c"]})
W = np.zeros((3, D), np.float32); W[0, 0] = W[1, 1] = W[2, 2] = 2
def world(n, id0):
    y = np.arange(n) % 3
    x = 0.5 + 0.3 * rng.normal(size=(n, D))
    x[np.arange(n), y] += 3
    a = np.where(y == 0)[0][:40]; x[a, 0] -= 2.7; x[a, 1] += 1.2; x[a, 5] += 3
    b = np.where(y == 1)[0][:10]; x[b, 2] += 3.5
    return x.astype(np.float32), y, list(range(id0, id0 + n))
for name, n, id0 in (("train", 300, 0), ("test", 150, 10000)):
    x, y, ids = world(n, id0)
    np.save(f"{out}/{name}-x.npy", x)
    with open(f"{out}/{name}.tns", "wb") as f:
        f.write(meta()); f.write(rec("tensor", "head.weight", W)); f.write(rec("tensor", "head.bias", np.zeros(3)))
        for s in range(0, n, 128):
            f.write(rec("tensor", "features", x[s:s+128], {"labels": [int(v) for v in y[s:s+128]], "ids": ids[s:s+128]}))
def cavs(path, names, vecs, model="feedfeedfeedfeed", layer="fc.in"):
    with open(path, "wb") as f:
        f.write(rec("meta", "", meta={"cav.method": "lgcav"}))
        for c, v in zip(names, vecs):
            f.write(rec("tensor", "cav", np.asarray(v, np.float32),
                        {"cav.concept": c, "cav.model": model, "cav.layer": layer, "cav.method": "lgcav"}))
E = np.eye(D)
cavs(f"{out}/cavs.tns", ["a", "b", "c"], E[:3])
cavs(f"{out}/cavs-shuffled.tns", ["c", "x", "a", "b"], [E[2], E[4], E[0], E[1]])
cavs(f"{out}/cavs-zero.tns", ["a", "b", "c"], np.zeros((3, D)))
cavs(f"{out}/cavs-othermodel.tns", ["a", "b", "c"], E[:3], model="0123456789abcdef")
cavs(f"{out}/cavs-otherlayer.tns", ["a", "b", "c"], E[:3], layer="avgpool")
cavs(f"{out}/cavs-wide.tns", ["a", "b", "c"], np.eye(D + 1)[:3])
cavs(f"{out}/cavs-two.tns", ["a", "b"], E[:2])
with open(f"{out}/notrain.tns", "wb") as f:
    f.write(meta()); f.write(rec("tensor", "features", np.zeros((4, D)), {"labels": [0, 1, 2, 0], "ids": [0, 1, 2, 3]}))
with open(f"{out}/other.tns", "wb") as f:
    f.write(meta(model="0123456789abcdef"))
    f.write(rec("tensor", "head.weight", W)); f.write(rec("tensor", "head.bias", np.zeros(3)))
    f.write(rec("tensor", "features", np.zeros((3, D)), {"labels": [0, 1, 2], "ids": [0, 1, 2]}))
PY
    printf 'a\tthe class a, not b\nb\tthe class b\nc\tthe class c\n' > "$T/desc.txt"
}

# 96 gray 8x8 images of 3 classes, a small VGG on them, its features (with the head) and 3 CAVs.
real_world() {
    $PY - "$T" <<'PY'
import struct, sys, random
out = sys.argv[1]
rnd = random.Random(1)
labels = [i % 3 for i in range(96)]
pix = bytearray()
for k in labels:
    for y in range(8):
        for x in range(8):
            pix.append(max(0, min(255, (200 if y // 3 == k else 30) + rnd.randrange(-60, 61))))
open(f"{out}/img-idx", "wb").write(struct.pack(">IIII", 0x803, 96, 8, 8) + bytes(pix))
open(f"{out}/lab-idx", "wb").write(struct.pack(">II", 0x801, 96) + bytes(labels))
PY
    img-read -q -l "$T/lab-idx" "$T/img-idx" > "$T/img.tns"
    net-init --arch vgg --depth 2 --width 0.5 --like "$T/img.tns" --seed 4 -o "$T/m.tns"
    probe-embed -q -m "$T/m.tns" -o "$T/rf.tns" "$T/img.tns"
    $PY - "$ROOT/examples" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import msgpack, numpy as np
out = sys.argv[2]
m = [r for r, a in records(open(f"{out}/rf.tns", "rb")) if r["kind"] == "meta"][0]["meta"]
D = [a for r, a in records(open(f"{out}/rf.tns", "rb")) if r["name"] == "features"][0].shape[1]
rng = np.random.default_rng(2)
with open(f"{out}/rcavs.tns", "wb") as f:
    for c in range(3):
        v = rng.normal(size=D).astype(np.float32)
        f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "tensor", "name": "cav", "dtype": "f32", "shape": [D],
                               "data": v.tobytes(), "meta": {"cav.concept": str(c), "cav.model": m["probe.model"],
                                                             "cav.layer": m["probe.layer"]}}))
PY
}

# The weights of a --weights-out stream by id, as "id weight label" lines.
weights_of() {
    $PY - "$ROOT/examples" "$1" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
for r, a in records(open(sys.argv[2], "rb")):
    if r["name"] == "weights":
        for i, w, y in zip(r["meta"]["ids"], a, r["meta"]["labels"]):
            print(i, repr(float(w)), y)
PY
}

@test "--describe names the class each class is most often taken for (ties by index)" {
    need_py
    gen_world
    run --separate-stderr asr-reweight --describe "$T/train.tns"
    [ "$status" -eq 0 ]
    [ "$output" = "$(printf 'a\ta photo of a, not b\nb\ta photo of b, not c\nc\ta photo of c, not a')" ]
    run --separate-stderr asr-reweight --describe --pattern '{} rather than {}!' "$T/train.tns"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | sed -n 2p)" = "$(printf 'b\tb rather than c!')" ]
}

@test "weights: the formula (numpy), mean 1 per class, the planted off-concept samples down-weighted" {
    need_py
    gen_world
    run --separate-stderr asr-reweight -q --cavs "$T/cavs.tns" --epochs 0 -w "$T/w.tns" "$T/train.tns"
    [ "$status" -eq 0 ]
    weights_of "$T/w.tns" > "$T/w.txt"
    [ "$(wc -l < "$T/w.txt")" -eq 300 ]
    run $PY - "$T" <<'PY'
import sys, numpy as np
t = sys.argv[1]
x = np.load(f"{t}/train-x.npy").astype(np.float64)
ids, w, y = np.loadtxt(f"{t}/w.txt", unpack=True)
y = y.astype(int)
assert (ids == np.arange(300)).all() and (y == np.arange(300) % 3).all()
cos = x[np.arange(300), y] / np.linalg.norm(x, axis=1)   # cav of class k is e_k
want = np.empty(300)
for k in range(3):
    s = y == k
    want[s] = s.sum() * np.exp(cos[s]) / np.exp(cos[s]).sum()
    assert abs(w[s].mean() - 1) < 1e-6, (k, w[s].mean())
print("maxdiff", np.abs(want - w).max())
assert np.abs(want - w).max() < 1e-6
planted = np.where(y == 0)[0][:40]
rest = np.setdiff1d(np.where(y == 0)[0], planted)
print("planted", w[planted].max(), "rest", w[rest].min())
assert w[planted].max() < 1 < w[rest].min()
PY
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "CAVs matched by concept through --descriptions equal CAVs in class order" {
    need_py
    gen_world
    asr-reweight -q --cavs "$T/cavs.tns" -w "$T/w1.tns" -j "$T/train.tns" > "$T/r1.json"
    asr-reweight -q --cavs "$T/cavs-shuffled.tns" -d "$T/desc.txt" -w "$T/w2.tns" -j "$T/train.tns" > "$T/r2.json"
    cmp "$T/w1.tns" "$T/w2.tns"
    cmp "$T/r1.json" "$T/r2.json"
    # the shuffled stream in record order gives other weights
    run --separate-stderr asr-reweight -q --cavs "$T/cavs-shuffled.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "holds 4 cavs for 3 classes"
}

@test "a zero CAV gives weights of 1 and the same model as --uniform, bit for bit" {
    need_py
    real_world
    $PY - "$T" <<'PY'
import sys, msgpack
t = sys.argv[1]
out = open(f"{t}/zcavs.tns", "wb")
for r in msgpack.Unpacker(open(f"{t}/rcavs.tns", "rb"), raw=False):
    r["data"] = bytes(len(r["data"])); out.write(msgpack.packb(r, use_bin_type=True))
PY
    asr-reweight -q -c "$T/zcavs.tns" -m "$T/m.tns" -o "$T/z.tns" -w "$T/zw.tns" --lr 0.05 -e 5 -b 16 -s 3 "$T/rf.tns" > "$T/z.tsv"
    asr-reweight -q -u -m "$T/m.tns" -o "$T/u.tns" --lr 0.05 -e 5 -b 16 -s 3 "$T/rf.tns" > "$T/u.tsv"
    asr-reweight -q -c "$T/rcavs.tns" -m "$T/m.tns" -o "$T/a.tns" --lr 0.05 -e 5 -b 16 -s 3 "$T/rf.tns" > "$T/a.tsv"
    [ "$(weights_of "$T/zw.tns" | awk '$2 != 1' | wc -l)" -eq 0 ]
    # the models differ only in asr.mode and asr.cavs: compare every tensor record
    run $PY - "$ROOT/examples" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
t = sys.argv[2]
def tensors(p): return {r["name"]: r["data"] for r, a in records(open(p, "rb")) if r["kind"] == "tensor"}
z, u, a, m = (tensors(f"{t}/{n}.tns") for n in ("z", "u", "a", "m"))
assert z == u, "zero cav and uniform differ"
changed = sorted(k for k in m if m[k] != u[k])
print("changed by fine-tuning:", changed)
assert len(changed) == 2 and all(k.endswith((".weight", ".bias")) for k in changed)
assert a != u, "asr weights made no difference"
PY
    echo "$output"
    [ "$status" -eq 0 ]
    cmp "$T/z.tsv" "$T/u.tsv"
    net-eval -q -m "$T/u.tns" "$T/img.tns" | key accuracy > "$T/acc"
    [ "$(awk -F'\t' '$1 == "train" && $2 == "all" {print $6}' "$T/u.tsv")" = "$(cat "$T/acc")" ]
}

@test "the fine-tuned head matches full-batch SGD with momentum in torch; the report matches numpy" {
    need_py
    $PY -c 'import torch' 2> /dev/null || skip "python3-torch missing"
    real_world
    asr-reweight -q -c "$T/rcavs.tns" -m "$T/m.tns" -o "$T/a.tns" -w "$T/w.tns" --lr 0.05 -e 10 -b 1000 \
        -t "$T/rf.tns" "$T/rf.tns" > "$T/a.tsv"
    run $PY - "$ROOT/examples" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np, torch
t = sys.argv[2]
feats = list(records(open(f"{t}/rf.tns", "rb")))
x = np.concatenate([a for r, a in feats if r["name"] == "features"])
y = np.concatenate([r["meta"]["labels"] for r, a in feats if r["name"] == "features"])
W0 = [a for r, a in feats if r["name"] == "head.weight"][0]; b0 = [a for r, a in feats if r["name"] == "head.bias"][0]
w = np.concatenate([a for r, a in records(open(f"{t}/w.tns", "rb")) if r["name"] == "weights"])
W = torch.tensor(W0, dtype=torch.float64, requires_grad=True); b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
X = torch.tensor(x, dtype=torch.float64); Y = torch.tensor(y, dtype=torch.long); Wt = torch.tensor(w, dtype=torch.float64)
opt = torch.optim.SGD([W, b], lr=0.05, momentum=0.9)
for e in range(10):
    opt.zero_grad()
    loss = (Wt * torch.nn.functional.cross_entropy(X @ W.T + b, Y, reduction="none")).sum() / len(Y)
    loss.backward(); opt.step()
out = {r["name"]: a for r, a in records(open(f"{t}/a.tns", "rb")) if r["kind"] == "tensor"}
name = [k for k, v in out.items() if v.shape == W0.shape and k.endswith(".weight")][0]
Wc, bc = out[name], out[name[:-len("weight")] + "bias"]
diff = max(np.abs(Wc - W.detach().numpy()).max(), np.abs(bc - b.detach().numpy()).max())
print("maxdiff", diff, "moved", np.abs(Wc - W0).max())
assert diff < 1e-5 and np.abs(Wc - W0).max() > 1e-3
def acc(W, b): return ((x @ W.T + b).argmax(1) == y).mean()
rep = {l.split("\t")[0] + l.split("\t")[1]: l.split("\t") for l in open(f"{t}/a.tsv").read().splitlines()[1:]}
print(rep["trainall"], acc(W0, b0), acc(Wc, bc))
assert abs(float(rep["trainall"][4]) - acc(W0, b0)) < 6e-5 and abs(float(rep["testall"][5]) - acc(Wc, bc)) < 6e-5
for k in range(3):
    s = y == k
    assert abs(float(rep[f"train{k}"][5]) - ((x[s] @ Wc.T + bc).argmax(1) == k).mean()) < 6e-5
PY
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "net-train accepts the weights stream (--weights, --train-only)" {
    need_py
    real_world
    asr-reweight -q -c "$T/rcavs.tns" -e 0 -w "$T/w.tns" "$T/rf.tns" > /dev/null
    asr-reweight -q -u -e 0 -w "$T/u.tns" "$T/rf.tns" > /dev/null
    net-train -q -m "$T/m.tns" --weights "$T/w.tns" --train-only head --lr 1e-3 --epochs 1 -o "$T/tw.tns" "$T/img.tns"
    net-train -q -m "$T/m.tns" --weights "$T/u.tns" --train-only head --lr 1e-3 --epochs 1 -o "$T/tu.tns" "$T/img.tns"
    net-train -q -m "$T/m.tns" --train-only head --lr 1e-3 --epochs 1 -o "$T/tn.tns" "$T/img.tns"
    cmp "$T/tu.tns" "$T/tn.tns"       # weights of 1 are plain training
    ! cmp -s "$T/tw.tns" "$T/tn.tns"  # the ASR weights change it
}

@test "the report: TSV header and rows, JSON" {
    need_py
    gen_world
    run --separate-stderr asr-reweight -q -c "$T/cavs.tns" -t "$T/test.tns" --lr 0.01 "$T/train.tns"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | head -1)" = "$(printf 'split\tclass\tname\tsamples\tbefore\tafter')" ]
    [ "$(echo "$output" | wc -l)" -eq 9 ]
    [ "$(echo "$output" | awk -F'\t' '$1 == "test" && $2 == "all" {print $4}')" -eq 150 ]
    [ "$(echo "$output" | awk -F'\t' '$1 == "train" && $2 == 0 {print $3, $4, $5}')" = "a 100 0.6100" ]   # 40 planted + 1 taken for b
    run --separate-stderr asr-reweight -c "$T/cavs.tns" -j "$T/train.tns"
    [ "$status" -eq 0 ]
    $PY -c 'import json, sys; r = json.loads(sys.argv[1]); assert r["mode"] == "asr" and r["train"]["samples"] == 300 and len(r["train"]["classes"]) == 3 and r["weight_max"] > 1' "$output"
    case "$stderr" in "asr-reweight: asr: weights "*"20 epochs, 60 steps"*) ;; *) echo "$stderr"; false ;; esac
}

@test "bad CAVs exit 1 with a message: other model, other layer, other width, a class without a CAV" {
    need_py
    gen_world
    run --separate-stderr asr-reweight -c "$T/cavs-othermodel.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "fitted on model 0123456789abcdef, the features come from model feedfeedfeedfeed"
    run --separate-stderr asr-reweight -c "$T/cavs-otherlayer.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "fitted at layer avgpool"
    run --separate-stderr asr-reweight -c "$T/cavs-wide.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "has 9 values for features of 8"
    run --separate-stderr asr-reweight -c "$T/cavs-two.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "holds 2 cavs for 3 classes"
    run --separate-stderr asr-reweight -c "$T/cavs-two.tns" -d "$T/desc.txt" "$T/train.tns"
    expect_failure 1 asr-reweight "class 2 (c) has no cav: no concept 'c'"
    printf 'a\tx\nb\ty\n' > "$T/short.txt"
    run --separate-stderr asr-reweight -c "$T/cavs.tns" -d "$T/short.txt" "$T/train.tns"
    expect_failure 1 asr-reweight "2 descriptions for 3 classes"
    printf 'a\tx\nb\ty\nc\tz\0z\n' > "$T/nul.txt"
    run --separate-stderr asr-reweight -c "$T/cavs.tns" -d "$T/nul.txt" "$T/train.tns"
    expect_failure 1 asr-reweight "nul.txt:3: a NUL byte (not a text file?)"
    head -c 200 "$T/cavs.tns" > "$T/cut.tns"
    run --separate-stderr asr-reweight -c "$T/cut.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "truncated"
    run --separate-stderr asr-reweight -c "$T/train.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "no cav records"
}

@test "bad features and models exit 1 and leave no output" {
    need_py
    gen_world
    head -c 3000 "$T/train.tns" > "$T/cut.tns"
    run --separate-stderr asr-reweight -u "$T/cut.tns"
    expect_failure 1 asr-reweight "truncated"
    run --separate-stderr asr-reweight -u "$T/notrain.tns"
    expect_failure 1 asr-reweight "no head.weight"
    run --separate-stderr asr-reweight -u -t "$T/other.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "come from different models or layers"
    run --separate-stderr asr-reweight -u "$T/cavs.tns"
    expect_failure 1 asr-reweight "not a model's feature stream"
    real_world
    run --separate-stderr asr-reweight -u -m "$T/m.tns" -o "$T/out.tns" "$T/train.tns"
    expect_failure 1 asr-reweight "is not the model $T/train.tns came from"
    [ ! -e "$T/out.tns" ]
    run --separate-stderr asr-reweight -c "$T/cavs.tns" -m "$T/m.tns" -o "$T/out.tns" "$T/rf.tns"
    expect_failure 1 asr-reweight "fitted on model feedfeedfeedfeed"
    [ ! -e "$T/out.tns" ]
    run --separate-stderr bash -c "asr-reweight -u -q '$T/rf.tns' > /dev/full"
    [ "$status" -eq 1 ]
    case "$stderr" in *"writing output failed"*) ;; *) echo "$stderr"; false ;; esac
}

@test "usage errors exit 2" {
    run --separate-stderr asr-reweight x.tns
    expect_failure 2 asr-reweight "exactly one of --cavs and --uniform"
    run --separate-stderr asr-reweight -u -c c.tns x.tns
    expect_failure 2 asr-reweight "exactly one of --cavs and --uniform"
    run --separate-stderr asr-reweight --describe -c c.tns x.tns
    expect_failure 2 asr-reweight "--describe only writes descriptions"
    run --separate-stderr asr-reweight --describe --pattern 'a photo of {}' x.tns
    expect_failure 2 asr-reweight "exactly two {}"
    run --separate-stderr asr-reweight -u --pattern '{} {}' x.tns
    expect_failure 2 asr-reweight "--pattern goes with --describe"
    run --separate-stderr asr-reweight -u -o out.tns x.tns
    expect_failure 2 asr-reweight "--model and --output come together"
    run --separate-stderr asr-reweight -u -m m.tns -o - x.tns
    expect_failure 2 asr-reweight "need a file"
    run --separate-stderr asr-reweight -u -d d.txt x.tns
    expect_failure 2 asr-reweight "give --cavs"
    run --separate-stderr asr-reweight -u --lr 0 x.tns
    expect_failure 2 asr-reweight "--lr"
    run --separate-stderr asr-reweight -u
    [ "$status" -eq 2 ]
}
