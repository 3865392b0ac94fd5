#!/usr/bin/env bats
# probe-embed and cav-fit: features of a tiny model checked against its own
# logits, VLM image and text embeddings (the template ensemble checked by
# hand), CAVs on generated feature streams with known answers (a planted
# concept direction; metrics recomputed with numpy from the written CAV),
# TCAV scores against the head, provenance checks, and bad input.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

need_py() {
    $PY -c 'import msgpack, numpy' 2> /dev/null || skip "python3-msgpack or numpy missing"
}

# 96 gray 8x8 images of 3 classes (bright band k for class k), as img-read writes them.
tiny_images() {
    $PY - "$T" <<'PY'
import struct, sys, random
out = sys.argv[1]
rnd = random.Random(1)
labels = [i % 3 for i in range(96)]
pix = bytearray()
for k in labels:
    for y in range(8):
        for x in range(8):
            v = 200 if y // 3 == k else 30
            pix.append(max(0, min(255, v + rnd.randrange(-40, 41))))
open(f"{out}/train-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, 96, 8, 8) + bytes(pix))
open(f"{out}/train-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, 96) + bytes(labels))
PY
    img-read -q "$T/train-images-idx3-ubyte" > "$T/img.tns"   # classes "0", "1", "2"
}

tiny_model() {
    net-init --arch vgg --depth 2 --width 0.5 --like "$T/img.tns" --seed 4 -o "$T/m.tns"   # features: flatten, 128
}

# Generated feature streams with a planted concept (writes into $T):
#   pool.tns, eval.tns   features (N, 8) of "model" ffff0000ffff0000, layer fc.in,
#                        head (3, 8): row 0 = e0 + noise, rows 1, 2 random
#   pool-c.tns, eval-c.tns  concepts "round" (x0 > 0.5) and "odd" (random)
#   pool-g.tns           VLM image embeddings (N, 6): g = R z (z = [x0, noise])
#   texts.tns            texts "round" -> R e0 (+ template noise), "odd"
#   attr.tsv             class a has round, b and c do not
gen_world() {
    $PY - "$T" "${1:-0}" <<'PY'
import sys, msgpack, numpy as np
out, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
def rec(kind, name, arr=None, meta=None):
    r = {"fmt": "tns", "ver": 1, "kind": kind, "name": name}
    if arr is not None:
        dt = {"float32": "f32", "uint8": "u8"}[str(arr.dtype)]
        r.update(dtype=dt, shape=list(arr.shape), data=np.ascontiguousarray(arr).tobytes())
    if meta is not None: r["meta"] = meta
    return msgpack.packb(r)
def meta(source, model, layer, extra=None):
    m = {"probe.source": source, "probe.model": model, "probe.model_path": "gen", "probe.layer": layer,
         "probe.pool": "none", "general.labels": ["a", "b", "c"]}
    m.update(extra or {})
    return rec("meta", "", meta=m)
D, E = 8, 6
R = np.linalg.qr(rng.normal(size=(E, E)))[0]
W = rng.normal(size=(3, D)).astype(np.float32); W[0] = 0; W[0, 0] = 2; W[0] += 0.2 * rng.normal(size=D)
b = np.zeros(3, np.float32)
def world(n, id0):
    x = rng.normal(size=(n, D)).astype(np.float32)
    x[:, 0] *= 2
    x += 3.0   # a shared mean, as real features have
    ids = list(range(id0, id0 + n)); labels = [int(i % 3) for i in range(n)]
    c = np.stack([(x[:, 0] - 3 > 0.5), rng.random(n) < 0.5], 1).astype(np.uint8)
    return x, ids, labels, c
for name, n, id0 in (("pool", 600, 0), ("eval", 400, 10000)):
    x, ids, labels, c = world(n, id0)
    with open(f"{out}/{name}.tns", "wb") as f:
        f.write(meta("model", "ffff0000ffff0000", "fc.in"))
        f.write(rec("tensor", "head.weight", W)); f.write(rec("tensor", "head.bias", b))
        for s in range(0, n, 256):
            f.write(rec("tensor", "features", x[s:s+256], {"labels": labels[s:s+256], "ids": ids[s:s+256]}))
    with open(f"{out}/{name}-c.tns", "wb") as f:
        f.write(rec("meta", "", meta={"concepts.names": ["round", "odd"], "concepts.kinds": ["class", "pixel"]}))
        f.write(rec("tensor", "concepts", c, {"labels": labels, "ids": ids}))
    if name == "pool":
        z = np.zeros((n, E), np.float32); z[:, 0] = x[:, 0] - 3; z[:, 1:] = rng.normal(size=(n, E - 1))
        g = (z @ R.T + 0.5 * rng.normal(size=(n, E)) + 2 * R[:, 5]).astype(np.float32)
        perm = rng.permutation(n)   # the VLM stream in another order: matched by id
        with open(f"{out}/pool-g.tns", "wb") as f:
            f.write(meta("vlm-image", "aaaa1111aaaa1111", "fc"))
            for s in range(0, n, 256):
                p = perm[s:s+256]
                f.write(rec("tensor", "features", g[p], {"labels": [labels[i] for i in p], "ids": [ids[i] for i in p]}))
t = np.stack([R[:, 0] + 0.3 * R[:, 5], R[:, 3]]).astype(np.float32)
t /= np.linalg.norm(t, axis=1, keepdims=True)
with open(f"{out}/texts.tns", "wb") as f:
    f.write(meta("vlm-text", "aaaa1111aaaa1111", "text"))
    f.write(rec("tensor", "texts", t, {"names": ["round", "odd"], "templates": 29}))
    f.write(rec("tensor", "texts.plain", t, {"names": ["round", "odd"]}))
open(f"{out}/attr.tsv", "w").write("class\tround\nb\t0\na\t1\nc\t0\n")
PY
}

# numpy: the CAV stream's vectors and meta, one line per CAV: concept, then the values asked
cav_values() { # cavs.tns python-expression-of(v, m, W) [features with the head]
    $PY - "$ROOT/examples" "$1" "$2" "${3:-$T/pool.tns}" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
W = [a for r, a in records(open(sys.argv[4], "rb")) if r["name"] == "head.weight"][0]
def planted(v):  # cos(v, e0) once the shared mean direction (all ones) is taken out of both
    u = np.ones(len(v)) / np.sqrt(len(v)); e = np.eye(len(v))[0]
    p = lambda a: a - (a @ u) * u
    return round(float(p(v) @ p(e) / np.linalg.norm(p(v)) / np.linalg.norm(p(e))), 3)
for r, v in records(open(sys.argv[2], "rb")):
    if r["name"] != "cav": continue
    m = r["meta"]
    print(m["cav.concept"], eval(sys.argv[3]))
PY
}

@test "probe-embed: the default layer's features times the head are the model's logits" {
    need_py
    tiny_images
    tiny_model
    probe-embed -q -m "$T/m.tns" -o "$T/f.tns" "$T/img.tns"
    net-eval -q -m "$T/m.tns" --logits "$T/l.tns" "$T/img.tns" > /dev/null
    run tns-info "$T/f.tns"
    [[ "${lines[0]}" == *"probe.source=model probe.model="*" probe.layer=flatten probe.pool=none probe.dim=128"* ]]
    $PY - "$ROOT/examples" "$T/f.tns" "$T/l.tns" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
f = list(records(open(sys.argv[2], "rb")))
d = {r["name"]: a for r, a in f}
feats = np.concatenate([a for r, a in f if r["name"] == "features"])
ids = sum([r["meta"]["ids"] for r, a in f if r["name"] == "features"], [])
logits = np.concatenate([a for r, a in records(open(sys.argv[3], "rb")) if r["name"] == "logits"])
assert feats.shape == (96, 128) and ids == list(range(96)), (feats.shape, ids[:5])
mine = feats @ d["head.weight"].T + d["head.bias"]
err = np.abs(mine - logits).max()
assert err < 1e-4, err
PY
}

@test "probe-embed: --layer, average pooling and --flatten" {
    need_py
    tiny_images
    tiny_model
    probe-embed -q -m "$T/m.tns" --layer features.relu1 -o "$T/avg.tns" "$T/img.tns"
    probe-embed -q -m "$T/m.tns" --layer features.relu1 --flatten -o "$T/flat.tns" "$T/img.tns"
    [ "$(tns-info "$T/avg.tns" | awk -F'\t' '$3=="features"{print $5}' | head -1)" = 96x8 ]
    [ "$(tns-info "$T/flat.tns" | awk -F'\t' '$3=="features"{print $5}' | head -1)" = 96x512 ]
    ! tns-info "$T/avg.tns" | grep -q head.weight
    # the average of each channel's 64 flattened values is the pooled feature
    $PY - "$ROOT/examples" "$T/avg.tns" "$T/flat.tns" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
a = [x for r, x in records(open(sys.argv[2], "rb")) if r["name"] == "features"][0]
f = [x for r, x in records(open(sys.argv[3], "rb")) if r["name"] == "features"][0]
assert np.abs(f.reshape(96, 8, 64).mean(2) - a).max() < 1e-5
PY
    run --separate-stderr probe-embed -m "$T/m.tns" --layer nope "$T/img.tns"
    expect_failure 1 probe-embed "no node named nope"
}

@test "probe-embed --vlm: image and text embeddings; the template ensemble is the normalised mean" {
    need_py
    tiny_images
    printf 'class\ttop\n0\t1\n1\t0\n2\t0\n' > "$T/attr.tsv"
    concept-bank -q -a "$T/attr.tsv" "$T/img.tns" > "$T/c.tns"
    vlm-train -q --arch "mlp --hidden 16" -E 8 --concepts "$T/c.tns" --epochs 1 -o "$T/vlm.tns" "$T/img.tns"
    probe-embed -q --vlm "$T/vlm.tns" -o "$T/g.tns" "$T/img.tns"
    [ "$(tns-info "$T/g.tns" | awk -F'\t' '$3=="features"{print $5}')" = 96x8 ]
    printf 'shoe\tfootwear shoe\nbright\n' > "$T/texts.txt"
    printf 'a {}\nthe {} here\n' > "$T/tpl.txt"
    printf 'a footwear shoe\nthe footwear shoe here\n' > "$T/filled.txt"
    probe-embed --vlm "$T/vlm.tns" --texts "$T/texts.txt" --templates "$T/tpl.txt" -o "$T/t.tns"
    probe-embed --vlm "$T/vlm.tns" --texts "$T/filled.txt" --no-ensemble -o "$T/each.tns"
    probe-embed --vlm "$T/vlm.tns" --texts "$T/texts.txt" -o "$T/t29.tns"
    tns-info "$T/t29.tns" | grep -q 'templates=29'
    $PY - "$ROOT/examples" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
T = sys.argv[2]
def load(p): return {r["name"]: (r, a) for r, a in records(open(p, "rb"))}
t, each, g = load(T + "/t.tns"), load(T + "/each.tns"), load(T + "/g.tns")
r, tx = t["texts"]
assert r["meta"]["names"] == ["shoe", "bright"] and r["meta"]["templates"] == 2, r["meta"]
e = each["texts"][1]                   # the two filled templates, bare
want = e.sum(0) / np.linalg.norm(e.sum(0))
assert np.abs(tx[0] - want).max() < 1e-5, (tx[0], want)
assert abs(np.linalg.norm(tx[1]) - 1) < 1e-5
# provenance: one VLM for both
assert t["texts"] and g["features"]
PY
    [ "$(tns-info "$T/g.tns" | head -1 | grep -o 'probe.model=[0-9a-f]*')" = "$(tns-info "$T/t.tns" | head -1 | grep -o 'probe.model=[0-9a-f]*')" ]
    run --separate-stderr probe-embed --vlm "$T/vlm.tns" --texts "$T/texts.txt" --templates "$T/texts.txt"
    expect_failure 1 probe-embed "has no '{}'"
    printf 'shoe\nbri\0ght\n' > "$T/nul.txt"
    run --separate-stderr probe-embed --vlm "$T/vlm.tns" --texts "$T/nul.txt"
    expect_failure 1 probe-embed "nul.txt:2: a NUL byte (not a text file?)"
    run --separate-stderr probe-embed --vlm "$T/m.tns" "$T/img.tns" 2>/dev/null
    [ "$status" -eq 1 ]
}

@test "cav-fit --method cav: finds the planted direction; metrics equal numpy's on the written CAV" {
    need_py
    gen_world
    cav-fit -q --method cav -C "$T/pool-c.tns" -e "$T/eval.tns" -E "$T/eval-c.tns" -a "$T/attr.tsv" \
        --concept round -o "$T/cavs.tns" "$T/pool.tns" > "$T/sum.tsv"
    head -1 "$T/sum.tsv" | grep -q '^concept	method	modules	positives	negatives	heldout_acc	concept_acc	class_acc	tcav	tcav_p$'
    acc=$(awk -F'\t' '$1=="round"{print $7}' "$T/sum.tsv")
    c2c=$(awk -F'\t' '$1=="round"{print $8}' "$T/sum.tsv")
    # the direction: cosine with e0 (the concept coordinate) after removing the shared mean
    cav_values "$T/cavs.tns" 'planted(v)' > "$T/cos"
    awk '{exit !($2 > 0.8)}' "$T/cos" || { cat "$T/cos"; return 1; }
    # concept-to-class = 100 cos(v, W_a), class a is row 0 of the head
    want=$(cav_values "$T/cavs.tns" '"%.2f" % (100 * v @ W[0] / np.linalg.norm(v) / np.linalg.norm(W[0]))' | cut -d' ' -f2)
    [ "$c2c" = "$want" ] || { echo "class_acc $c2c, numpy $want"; return 1; }
    # balanced accuracy of v.f + offset > 0 on the held-out rows
    want=$($PY - "$ROOT/examples" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
T = sys.argv[2]
cav = [(r, a) for r, a in records(open(T + "/cavs.tns", "rb")) if r["name"] == "cav"][0]
x = np.concatenate([a for r, a in records(open(T + "/eval.tns", "rb")) if r["name"] == "features"])
c = [a for r, a in records(open(T + "/eval-c.tns", "rb")) if r["name"] == "concepts"][0][:, 0]
s = x.astype(np.float64) @ cav[1] + cav[0]["meta"]["cav.offset"] > 0
print("%.4f" % (0.5 * (s[c == 1].mean() + (~s[c == 0]).mean())))
PY
)
    [ "$acc" = "$want" ] || { echo "concept_acc $acc, numpy $want"; return 1; }
    awk -v a="$acc" 'BEGIN{exit !(a > 0.8)}'
}

@test "cav-fit --method lgcav: VLM guidance alone finds the planted direction; modules switch" {
    need_py
    gen_world
    # no positives, no modules: L_LG alone fits the VLM's cosines and finds e0
    cav-fit -q -g "$T/pool-g.tns" -t "$T/texts.tns" -C "$T/pool-c.tns" --positives 0 --concept round -M none \
        -e "$T/eval.tns" -E "$T/eval-c.tns" -k 100 -o "$T/lg.tns" "$T/pool.tns" > "$T/sum.tsv"
    [ "$(awk -F'\t' 'NR==2{print $3, $4, $5}' "$T/sum.tsv")" = "none 0 0" ]
    cav_values "$T/lg.tns" 'planted(v)' > "$T/cos"
    awk '{exit !($2 > 0.95)}' "$T/cos" || { cat "$T/cos"; return 1; }
    awk -F'\t' 'NR==2{exit !($7 > 0.85)}' "$T/sum.tsv" || { cat "$T/sum.tsv"; return 1; }
    # with GA the target's spread is the features' pairwise-cosine spread, which
    # the shared mean makes narrow here: the direction is worse, still a concept detector
    cav-fit -q -g "$T/pool-g.tns" -t "$T/texts.tns" -C "$T/pool-c.tns" --positives 0 --concept round \
        -e "$T/eval.tns" -E "$T/eval-c.tns" -k 100 "$T/pool.tns" > "$T/sum.tsv"
    [ "$(awk -F'\t' 'NR==2{print $3, $4, $5}' "$T/sum.tsv")" = "ga,ce 0 0" ]
    awk -F'\t' 'NR==2{exit !($7 > 0.7)}' "$T/sum.tsv" || { cat "$T/sum.tsv"; return 1; }
    # all modules and L_cls with 10 + 10 labelled images; and every switch is recorded
    cav-fit -q -g "$T/pool-g.tns" -t "$T/texts.tns" -C "$T/pool-c.tns" -k 100 -o "$T/full.tns" "$T/pool.tns" > "$T/sum2.tsv"
    [ "$(awk -F'\t' 'NR>1{print $1, $3, $4, $5}' "$T/sum2.tsv" | tr '\n' '|')" = "round ga,ce,dsr 10 10|odd ga,ce,dsr 10 10|" ]
    tns-info "$T/full.tns" | grep -q 'cav.concept=round cav.method=lgcav cav.modules=ga,ce,dsr cav.cls=true cav.layer=fc.in cav.model=ffff0000ffff0000 cav.rule=linear'
    cav-fit -q -g "$T/pool-g.tns" -t "$T/texts.tns" -C "$T/pool-c.tns" --no-ga --no-dsr --no-cls --concept odd "$T/pool.tns" |
        awk -F'\t' 'NR==2{exit !($3=="ce" && $4==0)}'
    cav-fit -q -g "$T/pool-g.tns" -t "$T/texts.tns" -C "$T/pool-c.tns" -M none --concept odd --json "$T/pool.tns" |
        grep -q '^{"method":"lgcav","cavs":\[{"concept":"odd","modules":"none","positives":10,"negatives":10,'
}

@test "cav-fit: TCAV at the head's input is the sign of W_k . v; significance runs" {
    need_py
    tiny_images
    tiny_model
    probe-embed -q -m "$T/m.tns" -o "$T/f.tns" "$T/img.tns"
    # concepts by class: "top" = class 0, "mid" = class 1
    $PY - "$ROOT/examples" "$T" <<'PY'
import sys, msgpack, numpy as np
sys.path.insert(0, sys.argv[1])
from tns_read import records
T = sys.argv[2]
rs = [(r, a) for r, a in records(open(T + "/f.tns", "rb")) if r["name"] == "features"]
labels = sum([r["meta"]["labels"] for r, a in rs], []); ids = sum([r["meta"]["ids"] for r, a in rs], [])
c = np.array([[l == 0, l == 1] for l in labels], np.uint8)
with open(T + "/c.tns", "wb") as f:
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "meta", "name": "", "meta": {"concepts.names": ["top", "mid"], "concepts.kinds": ["class", "class"]}}))
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "tensor", "name": "concepts", "dtype": "u8", "shape": list(c.shape), "data": c.tobytes(), "meta": {"labels": labels, "ids": ids}}))
PY
    cav-fit -q --method cav -C "$T/c.tns" -m "$T/m.tns" -i "$T/img.tns" --tcav-class 0 -r 3 -o "$T/cavs.tns" "$T/f.tns" > "$T/sum.tsv"
    want=$(cav_values "$T/cavs.tns" '"%.4f" % float(v @ W[0] > 0)' "$T/f.tns")
    [ "$(awk -F'\t' 'NR>1{print $1, $9}' "$T/sum.tsv")" = "$want" ] || { cat "$T/sum.tsv"; echo "$want"; return 1; }
    awk -F'\t' 'NR>1{exit !($10 >= 0 && $10 <= 1)}' "$T/sum.tsv"
    # a hidden layer, average-pooled: the gradient goes through the engine's backward pass
    probe-embed -q -m "$T/m.tns" -l features.relu0 -o "$T/h.tns" "$T/img.tns"
    cav-fit -q --method cav -C "$T/c.tns" -m "$T/m.tns" -i "$T/img.tns" --tcav-class 1 --tcav-max 20 "$T/h.tns" |
        awk -F'\t' 'NR>1{n++; if (!($9 >= 0 && $9 <= 1)) exit 1} END {exit n != 2}'
}

@test "cav-fit refuses features from different models, layers or VLMs" {
    need_py
    gen_world
    sed 's/ffff0000ffff0000/eeee0000ffff0000/' "$T/eval.tns" > "$T/other.tns"
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" -e "$T/other.tns" -E "$T/eval-c.tns" "$T/pool.tns"
    expect_failure 1 cav-fit "come from different sources: model ffff0000ffff0000 layer fc.in (none) against model eeee0000ffff0000"
    sed 's/fc\.in/fc.ix/' "$T/eval.tns" > "$T/other.tns"
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" -e "$T/other.tns" -E "$T/eval-c.tns" "$T/pool.tns"
    expect_failure 1 cav-fit "layer fc.ix"
    sed 's/aaaa1111aaaa1111/bbbb1111aaaa1111/' "$T/texts.tns" > "$T/t2.tns"
    run --separate-stderr cav-fit -g "$T/pool-g.tns" -t "$T/t2.tns" "$T/pool.tns"
    expect_failure 1 cav-fit "come from different VLMs"
    run --separate-stderr cav-fit -g "$T/pool.tns" -t "$T/texts.tns" "$T/pool.tns"
    expect_failure 1 cav-fit "probe.source is 'model', expected 'vlm-image'"
    # a VLM stream of other images
    tns-cat -n features --head 1 "$T/pool-g.tns" > "$T/g-part.tns"
    run --separate-stderr cav-fit -g "$T/g-part.tns" -t "$T/texts.tns" "$T/pool.tns"
    expect_failure 1 cav-fit "the VLM must see the same pool"
    # a model that is not the features' source
    tiny_images
    tiny_model
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" -m "$T/m.tns" -i "$T/img.tns" "$T/pool.tns"
    expect_failure 1 cav-fit "is not the model"
}

@test "cav-fit and probe-embed refuse bad input with a message" {
    need_py
    gen_world
    run --separate-stderr cav-fit --method nope "$T/pool.tns"
    expect_failure 2 cav-fit "unknown method (nope)"
    run --separate-stderr cav-fit "$T/pool.tns"
    expect_failure 2 cav-fit "needs --vlm-images and --texts"
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" -r 1 "$T/pool.tns"
    expect_failure 2 cav-fit "at least 2 runs"
    run --separate-stderr cav-fit -g "$T/pool-g.tns" -t "$T/texts.tns" -M ga,xx "$T/pool.tns"
    expect_failure 2 cav-fit "unknown module (xx)"
    run --separate-stderr cav-fit -g "$T/pool-g.tns" -t "$T/texts.tns" -M dsr "$T/pool.tns"
    expect_failure 2 cav-fit "dsr needs positives"
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" --concept square "$T/pool.tns"
    expect_failure 1 cav-fit "concept square is not in"
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" "$T/missing.tns"
    expect_failure 1 cav-fit "missing.tns"
    head -c 2000 "$T/pool.tns" > "$T/cut.tns"
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" "$T/cut.tns"
    expect_failure 1 cav-fit "truncated"
    run --separate-stderr cav-fit --method cav -C "$T/pool.tns" "$T/pool.tns"
    expect_failure 1 cav-fit "not a concept stream"
    # a NaN feature
    $PY - "$T" <<'PY'
import sys, msgpack, numpy as np
T = sys.argv[1]
x = np.ones((2, 8), np.float32); x[1, 3] = np.nan
with open(T + "/nan.tns", "wb") as f:
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "meta", "name": "", "meta": {"probe.source": "model", "probe.model": "ffff0000ffff0000", "probe.layer": "fc.in"}}))
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "tensor", "name": "features", "dtype": "f32", "shape": [2, 8], "data": x.tobytes(), "meta": {"ids": [0, 1]}}))
PY
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" "$T/nan.tns"
    expect_failure 1 cav-fit "feature row 1 is not finite"
    # ids of the pool missing from the concept stream
    run --separate-stderr cav-fit --method cav -C "$T/eval-c.tns" "$T/pool.tns"
    expect_failure 1 cav-fit "has no image with id 0"
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" -o "$T/out.tns" -a "$T/nope.tsv" "$T/pool.tns"
    expect_failure 1 cav-fit "nope.tsv: cannot open"
    [ ! -e "$T/out.tns" ]
    printf 'class\tround\nz\t1\n' > "$T/bad.tsv"
    run --separate-stderr cav-fit --method cav -C "$T/pool-c.tns" -a "$T/bad.tsv" "$T/pool.tns"
    expect_failure 1 cav-fit "class 'z' is not among the model's classes"
    run --separate-stderr probe-embed "$T/pool.tns"
    expect_failure 2 probe-embed "give exactly one of --model and --vlm"
    run --separate-stderr probe-embed -m "$T/pool.tns" "$T/pool.tns"
    [ "$status" -eq 1 ]
    tiny_images
    tiny_model
    head -c 1500 "$T/img.tns" > "$T/cut-img.tns"
    run --separate-stderr probe-embed -m "$T/m.tns" -o "$T/f.tns" "$T/cut-img.tns"
    expect_failure 1 probe-embed "truncated"
    [ ! -e "$T/f.tns" ]
    run --separate-stderr probe-embed -m "$T/m.tns" "$T/pool.tns"
    expect_failure 1 probe-embed "the model takes 1x8x8"
}
