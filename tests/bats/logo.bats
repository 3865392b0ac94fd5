#!/usr/bin/env bats
# Logo detection data: logo-synth scenes, detection streams (boxes records),
# det-eval against an independent Python implementation of VOC and COCO AP,
# img-write drawing boxes, and broken inputs.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# Writes a detection stream from a Python literal: [(id, [(x0,y0,x1,y1,cls,score|None), ...]), ...]
# as boxes records of 2 images each, size 100x200, with NCLASSES class names.
make_boxes() { # path nclasses literal
    $PY - "$@" <<'PY'
import msgpack, struct, sys
path, k, spec = sys.argv[1], int(sys.argv[2]), eval(sys.argv[3])
def rec(kind, name, meta, data=None, n=0):
    r = {"fmt": "tns", "ver": 1, "kind": kind, "name": name}
    if data is not None:
        r.update(dtype="f32", shape=[n, 4], data=data)
    r["meta"] = meta
    return msgpack.packb(r, use_bin_type=True)
with open(path, "wb") as f:
    f.write(rec("meta", "", {"general.labels": ["c%d" % i for i in range(k)]}))
    for b in range(0, len(spec), 2):
        batch = spec[b:b + 2]
        boxes = [bx for _, bxs in batch for bx in bxs]
        meta = {"image.size": [100, 200], "ids": [i for i, _ in batch],
                "counts": [len(bxs) for _, bxs in batch], "classes": [bx[4] for bx in boxes]}
        if boxes and boxes[0][5] is not None:
            meta["scores"] = [bx[5] for bx in boxes]
        data = b"".join(struct.pack("<4f", *bx[:4]) for bx in boxes)
        f.write(rec("boxes", "boxes", meta, data, len(boxes)))
PY
}

# An independent VOC / COCO evaluator (numpy), printing
# "voc11 voc_all coco ap50 ap75" means over classes with ground truth.
PYEVAL='
import msgpack, numpy as np, sys
def load(path):
    out = {}
    for r in msgpack.Unpacker(open(path, "rb"), raw=False):
        if r["kind"] != "boxes": continue
        m = r["meta"]; xy = np.frombuffer(r["data"], "<f4").reshape(-1, 4)
        sc = m.get("scores", [1.0] * len(xy)); j = 0
        for i, n in zip(m["ids"], m["counts"]):
            out[i] = [(xy[j + t], m["classes"][j + t], sc[j + t]) for t in range(n)]; j += n
    return out
def iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0]); h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0: return 0.0
    i = w * h; return i / ((a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - i)
def curve(gt, dt, c, thr, voc):
    g = {i: [b for b, k, _ in v if k == c] for i, v in gt.items()}
    npos = sum(len(v) for v in g.values())
    if npos == 0: return None
    d = [(s, i, b) for i, v in dt.items() for b, k, s in v if k == c]
    if not voc:  # top 100 per image
        d = [x for i in dt for x in sorted([y for y in d if y[1] == i], key=lambda y: -y[0])[:100]]
    d.sort(key=lambda x: -x[0])
    used = {i: [False] * len(v) for i, v in g.items()}; tp = []
    for s, i, b in d:
        ious = [iou(b, t) for t in g[i]]
        if voc:
            j = int(np.argmax(ious)) if ious else -1
            ok = j >= 0 and ious[j] > thr and not used[i][j]
        else:
            cand = [(o, j) for j, o in enumerate(ious) if not used[i][j] and o >= thr]
            ok = bool(cand); j = max(cand)[1] if ok else -1
        if ok: used[i][j] = True
        tp.append(1 if ok else 0)
    tp = np.array(tp, float); ctp = np.cumsum(tp); cfp = np.cumsum(1 - tp)
    return ctp / npos, ctp / np.maximum(ctp + cfp, 1e-300)
def voc11(r, p):
    return sum((p[r >= t].max() if (r >= t).any() else 0) for t in np.linspace(0, 1, 11)) / 11
def vocall(r, p):
    mr = np.concatenate([[0], r, [1]]); mp = np.concatenate([[0], p, [0]])
    for i in range(len(mp) - 2, -1, -1): mp[i] = max(mp[i], mp[i + 1])
    k = np.where(mr[1:] != mr[:-1])[0]; return float(np.sum((mr[k + 1] - mr[k]) * mp[k + 1]))
def coco(r, p):
    p = p.copy()
    for i in range(len(p) - 2, -1, -1): p[i] = max(p[i], p[i + 1])
    q = [p[j] if j < len(p) else 0 for j in np.searchsorted(r, np.linspace(0, 1, 101), side="left")]
    return float(np.mean(q))
gt, dt = load(sys.argv[1]), load(sys.argv[2]); k = int(sys.argv[3])
res = {"voc11": [], "vocall": [], "coco": [], "ap50": [], "ap75": []}
for c in range(k):
    cv = curve(gt, dt, c, 0.5, True)
    if cv is None: continue
    res["voc11"].append(voc11(*cv)); res["vocall"].append(vocall(*cv))
    aps = [coco(*curve(gt, dt, c, t, False)) for t in np.linspace(0.5, 0.95, 10)]
    res["coco"].append(np.mean(aps)); res["ap50"].append(aps[0]); res["ap75"].append(aps[5])
print(" ".join("%.4f" % np.mean(res[x]) for x in ["voc11", "vocall", "coco", "ap50", "ap75"]))
'

# det-eval's means in the order of PYEVAL.
det_eval_means() {
    det-eval --json "$1" "$2" | $PY -c '
import json, sys
j = json.load(sys.stdin)
print(" ".join("%.4f" % j[k] for k in ["map50_voc11", "map50_voc_all", "map_coco", "ap50", "ap75"]))'
}

@test "logo-synth: a meta record, then boxes records before their image batches" {
    run logo-synth -q --shapes 30 --classes 5 --count 10 --batch 4 --size 64 -o "$T/s.tns"
    [ "$status" -eq 0 ]
    run tns-info "$T/s.tns"
    [[ "${lines[0]}" == *"general.labels=[5]"*"detect.split=train"*"detect.distractors=[25]"* ]]
    [[ "${lines[1]}" == $'1\tboxes\tboxes\tf32\t'*"image.size=[2] ids=[4] counts=[4] classes="* ]]
    [[ "${lines[2]}" == $'2\ttensor\timages\tf32\t4x3x64x64\t'* ]]
    [ "${#lines[@]}" -eq 7 ]
    # every box inside the image, x0 < x1, classes in range, counts add up
    $PY - "$T/s.tns" <<'PY'
import msgpack, numpy as np, sys
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
assert recs[0]["meta"]["general.labels"][0].startswith("shape-")
n = 0
for r in recs:
    if r["kind"] != "boxes": continue
    m = r["meta"]; xy = np.frombuffer(r["data"], "<f4").reshape(-1, 4)
    assert sum(m["counts"]) == len(xy) == len(m["classes"]) and min(m["counts"]) >= 1
    assert (xy[:, 0] >= 0).all() and (xy[:, 2] <= 64).all() and (xy[:, 0] < xy[:, 2]).all() and (xy[:, 1] < xy[:, 3]).all()
    assert all(0 <= c < 5 for c in m["classes"])
    n += len(m["counts"])
assert n == 10
PY
}

@test "logo-synth: same seed same bytes; test and held-out splits differ" {
    logo-synth -q --shapes 30 -k 5 -n 6 --size 48 > "$T/a.tns"
    logo-synth -q --shapes 30 -k 5 -n 6 --size 48 > "$T/b.tns"
    cmp "$T/a.tns" "$T/b.tns"
    logo-synth -q --shapes 30 -k 5 -n 6 --size 48 --split test > "$T/c.tns"
    ! cmp -s "$T/a.tns" "$T/c.tns"
    logo-synth -q --shapes 30 -k 5 -n 6 --size 48 --split heldout > "$T/h.tns"
    tns-info --json "$T/a.tns" "$T/h.tns" | $PY -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
metas = [r["meta"] for r in rows if r["kind"] == "meta"]
assert not set(metas[0]["general.labels"]) & set(metas[1]["general.labels"]), metas'
}

@test "logo-synth --crops: one logo per image, labelled with its scene's box class; no boxes records" {
    logo-synth -q --shapes 30 -k 5 -n 12 --size 32 -b 5 --crops --split heldout > "$T/c.tns"
    logo-synth -q --shapes 30 -k 5 -n 12 --size 32 -b 5 --max-logos 1 --min-scale 0.5 --max-scale 0.9 \
        --distractors 0 --split heldout > "$T/d.tns"
    $PY - "$T/c.tns" "$T/d.tns" <<'PY'
import msgpack, sys
def records(p):
    with open(p, "rb") as f:
        return list(msgpack.Unpacker(f, raw=False))
crops, det = records(sys.argv[1]), records(sys.argv[2])
assert not [r for r in crops if r["kind"] == "boxes"], "crops has boxes records"
assert crops[0]["meta"]["general.labels"] == det[0]["meta"]["general.labels"]
labels = [l for r in crops if r["kind"] == "tensor" for l in r["meta"]["labels"]]
boxes = [c for r in det if r["kind"] == "boxes" for c in r["meta"]["classes"]]
counts = [c for r in det if r["kind"] == "boxes" for c in r["meta"]["counts"]]
assert len(labels) == 12 and counts == [1] * 12 and labels == boxes, (labels, boxes, counts)
imgs = [r["data"] for r in crops if r["kind"] == "tensor"]
assert imgs == [r["data"] for r in det if r["kind"] == "tensor"], "the same scenes"
assert len(set(labels)) > 1
PY
    run --separate-stderr logo-synth -q --shapes 30 -k 5 -n 2 --crops --max-logos 3
    expect_failure 2 logo-synth "--crops puts one logo in each image, not --max-logos 3"
}

@test "logo-synth --preset logos-18 and logos-160 set the class count" {
    logo-synth -q --shapes 200 --preset logos-160 -n 2 --size 32 --min-scale 0.2 -o "$T/p.tns"
    tns-info --json "$T/p.tns" | head -1 | $PY -c '
import json, sys; m = json.loads(sys.stdin.read())["meta"]; assert len(m["general.labels"]) == 160 and m["detect.preset"] == "logos-160"'
    run logo-synth -q --shapes 10 --preset logos-18 -n 2
    [ "$status" -eq 1 ]
    [[ "$output" == *"18 classes asked for, the artwork has 10 brands"* ]]
    run logo-synth -q --shapes 10 --preset logos-99 -n 2
    [ "$status" -eq 2 ]
}

@test "logo-synth reads artwork PNGs, with Fashion-MNIST clutter" {
    [ -d "$ROOT/data/logos" ] || skip "no data/logos"
    [ -f "$FASHION/t10k-images-idx3-ubyte.gz" ] || skip "no Fashion-MNIST"
    logo-synth -q -k 4 -n 8 --size 96 --clutter "$FASHION/t10k-images-idx3-ubyte.gz" "$ROOT/data/logos" > "$T/r.tns"
    [[ "$(tns-info "$T/r.tns" | head -1)" == *"general.labels=[4]"* ]]
}

@test "logo-synth: bad artwork gives a clear error and no output file" {
    mkdir "$T/empty" "$T/bad"
    run logo-synth -q -k 1 -n 2 -o "$T/out.tns" "$T/empty"
    [ "$status" -eq 1 ]
    [[ "$output" == *"no PNG artwork"* ]]
    printf 'not a png' > "$T/bad/acme.png"
    run logo-synth -q -k 1 -n 2 -o "$T/out.tns" "$T/bad"
    [ "$status" -eq 1 ]
    [[ "$output" == "logo-synth: $T/bad/acme.png"* ]]
    [ ! -e "$T/out.tns" ]
    [ -z "$(ls "$T" | grep -v -e empty -e bad)" ]
    run logo-synth -q -n 2
    [ "$status" -eq 2 ]
}

@test "det-eval: perfect detections score 1 everywhere" {
    make_boxes "$T/gt.tns" 2 '[(0, [(10,10,50,50,0,None), (100,10,140,50,1,None)]), (1, [(0,0,150,100,1,None)])]'
    make_boxes "$T/dt.tns" 2 '[(0, [(10,10,50,50,0,0.9), (100,10,140,50,1,0.8)]), (1, [(0,0,150,100,1,0.7)])]'
    run det-eval "$T/gt.tns" "$T/dt.tns"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == $'class\tname\tgt\tdet\ttp50\t'* ]]
    [[ "${lines[1]}" == $'0\tc0\t1\t1\t1\t1.0000\t1.0000\t1.0000\t1.0000\t1.0000\t-\t1.0000\t-' ]]
    [[ "$output" == *$'# mAP@0.5 (VOC all-point)\t1.0000'* ]]
    [[ "$output" == *$'# mAP@[.5:.95] (COCO)\t1.0000'* ]]
}

@test "det-eval: duplicates, misses and a class without ground truth, by hand" {
    make_boxes "$T/gt.tns" 3 '[(0, [(10,10,50,50,0,None), (100,10,140,50,0,None)]), (1, [(0,0,150,100,1,None)])]'
    # class 0: TP, duplicate FP, TP -> all-point 0.8333; class 1 missed -> 0;
    # class 2 has a detection but no ground truth -> no AP, not in the mean
    make_boxes "$T/dt.tns" 3 '[(0, [(10,10,50,50,0,0.9), (10,10,50,50,0,0.8), (100,10,140,50,0,0.7), (0,0,20,20,2,0.95)]), (1, [])]'
    run det-eval "$T/gt.tns" "$T/dt.tns"
    [ "$status" -eq 0 ]
    [[ "${lines[1]}" == $'0\tc0\t2\t3\t2\t0.8485\t0.8333\t0.8350\t'* ]]
    [[ "${lines[2]}" == $'1\tc1\t1\t0\t0\t0.0000\t0.0000\t0.0000\t'* ]]
    [[ "${lines[3]}" == $'2\tc2\t0\t1\t0\t-\t-\t-\t'* ]]
    [[ "$output" == *$'# mAP@0.5 (VOC all-point)\t0.4167'* ]]
}

@test "det-eval agrees with an independent Python evaluator on random detections" {
    logo-synth -q --shapes 20 -k 4 -n 24 --size 64 --max-logos 5 -o "$T/gt.tns"
    # detections: jittered truth (some far off), dropped boxes, false alarms, random scores
    $PY - "$T/gt.tns" "$T/dt.tns" <<'PY'
import msgpack, numpy as np, sys
rng = np.random.default_rng(3)
out = open(sys.argv[2], "wb")
for r in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False):
    if r["kind"] == "meta": out.write(msgpack.packb(r, use_bin_type=True)); continue
    if r["kind"] != "boxes": continue
    m = r["meta"]; xy = np.frombuffer(r["data"], "<f4").reshape(-1, 4); j = 0
    boxes, classes, counts = [], [], []
    for n in m["counts"]:
        k = 0
        for t in range(n):
            b = xy[j + t].astype(float); c = m["classes"][j + t]
            for _ in range(rng.integers(0, 3)):   # 0, 1 or 2 detections (duplicates)
                s = (b[2] - b[0]) * rng.uniform(0, 0.35)
                d = np.clip(b + rng.normal(0, s, 4), 0, 64)
                if d[2] - d[0] < 1 or d[3] - d[1] < 1: continue
                boxes.append(d); classes.append(c if rng.random() < 0.9 else int(rng.integers(0, 4))); k += 1
        for _ in range(rng.integers(0, 2)):        # a false alarm
            x, y = rng.uniform(0, 40, 2); boxes.append([x, y, x + rng.uniform(4, 24), y + rng.uniform(4, 24)])
            classes.append(int(rng.integers(0, 4))); k += 1
        counts.append(k); j += n
    meta = dict(m, counts=counts, classes=classes, scores=[float(s) for s in rng.random(len(boxes))])
    r = {"fmt": "tns", "ver": 1, "kind": "boxes", "name": "boxes", "dtype": "f32", "shape": [len(boxes), 4],
         "data": np.array(boxes, "<f4").reshape(-1, 4).tobytes(), "meta": meta}
    out.write(msgpack.packb(r, use_bin_type=True))
PY
    want=$($PY -c "$PYEVAL" "$T/gt.tns" "$T/dt.tns" 4)
    got=$(det_eval_means "$T/gt.tns" "$T/dt.tns")
    echo "python: $want"
    echo "det-eval: $got"
    [ "$got" = "$want" ]
    # not a trivial agreement
    [ "$got" != "1.0000 1.0000 1.0000 1.0000 1.0000" ]
}

@test "det-eval: hostile streams fail with a clear message" {
    make_boxes "$T/gt.tns" 2 '[(0, [(10,10,50,50,0,None)])]'
    make_boxes "$T/out.tns" 2 '[(0, [(10,10,250,50,0,0.5)])]'
    run det-eval "$T/gt.tns" "$T/out.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"outside the 200x100 image"* ]]
    make_boxes "$T/neg.tns" 2 '[(0, [(50,10,10,50,0,0.5)])]'
    run det-eval "$T/gt.tns" "$T/neg.tns"
    [[ "$output" == *"no area"* ]]
    make_boxes "$T/cls.tns" 2 '[(0, [(10,10,50,50,7,0.5)])]'
    run det-eval "$T/gt.tns" "$T/cls.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown class 7"* ]]
    make_boxes "$T/img.tns" 2 '[(5, [(10,10,50,50,0,0.5)])]'
    run det-eval "$T/gt.tns" "$T/img.tns"
    [[ "$output" == *"image 5, which has no ground truth"* ]]
    run det-eval "$T/gt.tns" "$T/gt.tns"
    [[ "$output" == *"detections need scores"* ]]
    # counts that do not add up
    $PY - "$T/gt.tns" "$T/bad.tns" <<'PY'
import msgpack, sys
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
recs[1]["meta"]["counts"] = [2]
open(sys.argv[2], "wb").write(b"".join(msgpack.packb(r, use_bin_type=True) for r in recs))
PY
    run det-eval "$T/bad.tns" "$T/gt.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"counts add up to more than the 1 boxes"* ]]
}

@test "img-write draws the boxes of a detection stream" {
    logo-synth -q --shapes 20 -k 4 -n 4 --size 64 > "$T/s.tns"
    tns-cat -v --kind boxes "$T/s.tns" | img-write -q --cols 2 -o "$T/plain.png"
    img-write -q --cols 2 -o "$T/sheet.png" "$T/s.tns"
    [ -s "$T/sheet.png" ]
    ! cmp -s "$T/plain.png" "$T/sheet.png"
    # a batch that does not match the boxes before it
    $PY - "$T/s.tns" "$T/bad.tns" <<'PY'
import msgpack, sys
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
recs[2]["meta"]["ids"] = [9, 9, 9, 9]
open(sys.argv[2], "wb").write(b"".join(msgpack.packb(r, use_bin_type=True) for r in recs))
PY
    run img-write -q -o "$T/bad.png" "$T/bad.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"ids differ"* ]]
    [ ! -e "$T/bad.png" ]
}

@test "det-convert: COCO and YOLO round trips keep the boxes" {
    logo-synth -q --shapes 20 -k 4 -n 6 --size 64 > "$T/s.tns"
    det-convert --to coco -o "$T/s.json" "$T/s.tns"
    $PY -c 'import json, sys; j = json.load(open(sys.argv[1])); assert len(j["images"]) == 6 and len(j["categories"]) == 4 and j["annotations"][0]["bbox"][2] > 0' "$T/s.json"
    det-convert --from coco -o "$T/c.tns" "$T/s.json"
    det-convert --to coco "$T/c.tns" | cmp - "$T/s.json"
    det-convert --to yolo -o "$T/y" "$T/s.tns"
    [ -f "$T/y/classes.txt" ] && [ -f "$T/y/000005.txt" ]
    det-convert --from yolo --size 64x64 -o "$T/y.tns" "$T/y"
    # same boxes to 1e-3 pixels, same classes, same ids
    $PY - "$T/s.tns" "$T/y.tns" <<'PY'
import msgpack, numpy as np, sys
def boxes(p):
    out = []
    for r in msgpack.Unpacker(open(p, "rb"), raw=False):
        if r["kind"] == "boxes":
            out += list(zip(np.frombuffer(r["data"], "<f4").reshape(-1, 4).tolist(), r["meta"]["classes"]))
    return out
a, b = boxes(sys.argv[1]), boxes(sys.argv[2])
assert len(a) == len(b) and all(ca == cb and np.allclose(xa, xb, atol=1e-3) for (xa, ca), (xb, cb) in zip(a, b))
PY
    run det-convert --to yolo -o "$T/y" "$T/s.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"exists already"* ]]
}

@test "det-convert: broken imports fail clearly and write nothing" {
    printf '{"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]}], "categories": [{"id": 1, "name": "acme"}]}' > "$T/cat.json"
    run det-convert --from coco -o "$T/o.tns" "$T/cat.json"
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown category_id 3"* ]]
    printf '{"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [5, 5, 8, 2]}], "categories": [{"id": 1, "name": "acme"}]}' > "$T/out.json"
    run det-convert --from coco -o "$T/o.tns" "$T/out.json"
    [[ "$output" == *"outside the 10x10 image"* ]]
    printf '{"images": [' > "$T/trunc.json"
    run det-convert --from coco -o "$T/o.tns" "$T/trunc.json"
    [[ "$output" == *"JSON: "* ]]
    mkdir "$T/y"
    printf '0 0.5 0.5 0.2\n' > "$T/y/a.txt"
    run det-convert --from yolo --size 10x10 -o "$T/o.tns" "$T/y"
    [ "$status" -eq 1 ]
    [[ "$output" == *"a.txt:1: not \"class cx cy w h [score]\""* ]]
    printf '0 0.5 0.5 -0.2 0.1\n' > "$T/y/a.txt"
    run det-convert --from yolo --size 10x10 -o "$T/o.tns" "$T/y"
    [[ "$output" == *"no area"* ]]
    printf '0 0.5 0.5 0.2 0.1\n' > "$T/y/a.txt"
    run det-convert --from yolo -o "$T/o.tns" "$T/y"
    [[ "$output" == *"use --size"* ]]
    [ ! -e "$T/o.tns" ]
    run det-convert --from yolo --size 10 "$T/y"
    [ "$status" -eq 2 ]
}

@test "det-convert: a COCO file naming one category id twice fails" {
    printf '{"images": [], "annotations": [], "categories": [{"id": 4, "name": "a"}, {"id": 4, "name": "b"}]}' > "$T/dup.json"
    run det-convert --from coco -o "$T/o.tns" "$T/dup.json"
    [ "$status" -eq 1 ]
    [[ "$output" == *"category id 4 appears twice"* ]]
    [ ! -e "$T/o.tns" ]
}
