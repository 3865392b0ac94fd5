#!/usr/bin/env bats
# concept-bank and vlm-train: concepts of hand-made images with known pixels,
# thresholds carried from one set to another, captions, a tiny VLM that must
# learn, and every kind of broken input.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# Six 6x6 images with known statistics (intensity, area, texture), labels
# 0 1 2 0 1 2 named a b c:
#   0  a 2x2 block at 255          bright, small
#   1  a 4x4 block at 64           dark, large
#   2  a 4x4 checker 255/128       patterned, large, middle intensity
#   3  the whole image at 200      bright, large
#   4  a 3x3 block at 100          middle intensity, middle area
#   5  one pixel at 30             dark, small
known_images() {
    $PY - "$T/i" <<'PY'
import struct, sys
imgs = []
def blank(): return [[0] * 6 for _ in range(6)]
a = blank()
for y in (1, 2):
    for x in (1, 2): a[y][x] = 255
imgs.append(a)
a = blank()
for y in range(1, 5):
    for x in range(1, 5): a[y][x] = 64
imgs.append(a)
a = blank()
for y in range(1, 5):
    for x in range(1, 5): a[y][x] = 255 if (x + y) % 2 == 0 else 128
imgs.append(a)
imgs.append([[200] * 6 for _ in range(6)])
a = blank()
for y in range(1, 4):
    for x in range(1, 4): a[y][x] = 100
imgs.append(a)
a = blank(); a[3][3] = 30
imgs.append(a)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 6, 6, 6))
    f.write(bytes(v for img in imgs for row in img for v in row))
PY
    make_idx_labels "$T/l" 0 1 2 0 1 2
    printf 'a\nb\nc\n' > "$T/classes"
    img-read -q --classes "$T/classes" "$T/i" "$T/l" > "$T/known.tns"
    printf 'class\tround\na\t1\nb\t0\nc\t1\n' > "$T/attr.tsv"
}

@test "concept-bank: known pixels give known concepts" {
    known_images
    concept-bank -q -a "$T/attr.tsv" -o "$T/c.tns" "$T/known.tns"
    run tns-info "$T/c.tns"
    [[ "${lines[1]}" == *"concepts	u8	6x7"*"labels=[6] ids=[6]"* ]]
    # columns: round, bright, dark, patterned, plain, large, small
    [ "$(tns-tsv -n concepts "$T/c.tns" | tr '\t\n' ' |')" = \
      "1 1 0 0 1 0 1|0 0 1 0 1 1 0|1 2 2 1 0 1 0|1 1 0 0 1 1 0|0 2 2 0 1 2 2|1 0 1 0 1 0 1|" ]
    run $PY - "$T/c.tns" <<'PY'
import msgpack, sys
m = next(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))["meta"]
print(m["concepts.names"], m["concepts.kinds"], m["general.labels"])
print(["%.4f" % v for v in m["concepts.low"]], ["%.4f" % v for v in m["concepts.high"]], m["concepts.quantile"])
PY
    [ "${lines[0]}" = "['round', 'bright', 'dark', 'patterned', 'plain', 'large', 'small'] ['class', 'pixel', 'pixel', 'pixel', 'pixel', 'pixel', 'pixel'] ['a', 'b', 'c']" ]
    # intensity quantiles 0.3/0.7 of 30/255, 64/255, 100/255, 191.5/255, 200/255, 1
    [ "${lines[1]}" = "['0.3216', '0.0000', '0.1806'] ['0.7676', '0.0000', '0.4444'] 0.3" ]
}

@test "concept-bank: normalised and u8 streams give the same concepts as raw f32" {
    known_images
    concept-bank -q -a "$T/attr.tsv" "$T/known.tns" | tns-tsv -n concepts > "$T/raw"
    img-read -q --classes "$T/classes" --mean 0.5 --std 0.25 "$T/i" "$T/l" | concept-bank -q -a "$T/attr.tsv" | tns-tsv -n concepts > "$T/norm"
    img-read -q --classes "$T/classes" -t u8 "$T/i" "$T/l" | concept-bank -q -a "$T/attr.tsv" | tns-tsv -n concepts > "$T/u8"
    cmp "$T/raw" "$T/norm"
    cmp "$T/raw" "$T/u8"
}

@test "concept-bank --thresholds-from applies one set's thresholds to another" {
    known_images
    concept-bank -q -o "$T/all.tns" "$T/known.tns"
    # images 3 and 4 alone: by their own thresholds image 4 is dark, by the
    # whole set's it is in the middle band (unknown)
    $PY - "$T/known.tns" "$T/two.tns" <<'PY'
import msgpack, sys, numpy as np
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
out = open(sys.argv[2], "wb")
out.write(msgpack.packb(recs[0]))
r = recs[1]
x = np.frombuffer(r["data"], "<f4").reshape(r["shape"])[3:5]
r = dict(r, shape=[2, 1, 6, 6], data=x.tobytes(), meta={"labels": [0, 1], "ids": [3, 4]})
out.write(msgpack.packb(r))
PY
    [ "$(concept-bank -q "$T/two.tns" | tns-tsv -n concepts | cut -f1,2 | tr '\t\n' ' |')" = "1 0|0 1|" ]
    concept-bank -q -t "$T/all.tns" -o "$T/two-c.tns" "$T/two.tns"
    [ "$(tns-tsv -n concepts "$T/two-c.tns" | cut -f1,2 | tr '\t\n' ' |')" = "1 0|2 2|" ]
    # the reused thresholds are written again, unchanged
    [ "$(tns-info "$T/all.tns" | head -1 | grep -o 'concepts.quantile=[^ ]*')" = \
      "$(tns-info "$T/two-c.tns" | head -1 | grep -o 'concepts.quantile=[^ ]*')" ]
    $PY - "$T/all.tns" "$T/two-c.tns" <<'PY'
import msgpack, sys
a, b = (next(msgpack.Unpacker(open(p, "rb"), raw=False))["meta"] for p in sys.argv[1:])
assert a["concepts.low"] == b["concepts.low"] and a["concepts.high"] == b["concepts.high"], (a, b)
PY
}

@test "concept-bank --captions: one line per image, ids, class names and concept words" {
    known_images
    concept-bank -q -a "$T/attr.tsv" --dropout 0 --captions "$T/cap.tsv" -o "$T/c.tns" "$T/known.tns"
    [ "$(wc -l < "$T/cap.tsv")" -eq 6 ]
    [ "$(cut -f1 "$T/cap.tsv" | tr '\n' ' ')" = "0 1 2 3 4 5 " ]
    line=$(sed -n 1p "$T/cap.tsv")
    [[ "$line" == *" a"* || "$line" == *"a "* ]]
    [[ "$line" == *round* && "$line" == *bright* && "$line" == *small* && "$line" != *dark* && "$line" != *large* ]]
    line=$(sed -n 5p "$T/cap.tsv")   # image 4: class b, no concept at all
    [[ "$line" != *round* && "$line" != *bright* && "$line" != *dark* && "$line" != *small* ]]
    # seeded: the same seed gives the same captions, another seed others
    concept-bank -q -a "$T/attr.tsv" --seed 5 --captions "$T/c1" -o /dev/null "$T/known.tns"
    concept-bank -q -a "$T/attr.tsv" --seed 5 --captions "$T/c2" -o /dev/null "$T/known.tns"
    concept-bank -q -a "$T/attr.tsv" --seed 6 --captions "$T/c3" -o /dev/null "$T/known.tns"
    cmp "$T/c1" "$T/c2"
    ! cmp -s "$T/c1" "$T/c3"
}

@test "concept-bank: the Fashion-MNIST attribute table matches examples/fashion-mnist.classes" {
    [ "$(tail -n +2 "$ROOT/examples/fashion-mnist.attributes.tsv" | cut -f1)" = "$(cat "$ROOT/examples/fashion-mnist.classes")" ]
    [ -f "$FASHION/t10k-images-idx3-ubyte.gz" ] || skip "Fashion-MNIST absent"
    img-read -q --limit 512 --classes "$ROOT/examples/fashion-mnist.classes" "$FASHION/t10k-images-idx3-ubyte.gz" > "$T/fm.tns"
    concept-bank -q -a "$ROOT/examples/fashion-mnist.attributes.tsv" -o "$T/c.tns" "$T/fm.tns"
    # footwear (column 1) is exactly the classes Sandal 5, Sneaker 7, Ankle boot 9
    [ "$(tns-tsv -l -n concepts "$T/c.tns" | awk '{ f = ($1 == 5 || $1 == 7 || $1 == 9); if (f != $2) bad++ } END { print bad + 0 }')" = 0 ]
}

@test "concept-bank: bad inputs fail with a message and no output" {
    known_images
    printf 'class\tround\na\t1\nb\t5\nc\t1\n' > "$T/bad.tsv"
    run --separate-stderr concept-bank -q -a "$T/bad.tsv" "$T/known.tns"
    expect_failure 1 concept-bank "line 3: round of b is '5', not 0 or 1"
    printf 'class\tround\na\t1\nb\t0\nd\t1\n' > "$T/other.tsv"
    run --separate-stderr concept-bank -q -a "$T/other.tsv" "$T/known.tns"
    expect_failure 1 concept-bank "class 'c' of the data is not in the attribute table"
    printf 'class\tround\na\t1\nb\t0\nc\t1\nd\t1\n' > "$T/extra.tsv"
    run --separate-stderr concept-bank -q -a "$T/extra.tsv" "$T/known.tns"
    expect_failure 1 concept-bank "class 'd' of the attribute table is not a class of the data"
    head -c 1000 "$T/known.tns" > "$T/trunc.tns"
    run --separate-stderr concept-bank -q "$T/trunc.tns"
    expect_failure 1 concept-bank "truncated"
    $PY - "$T/known.tns" "$T/nolabels.tns" <<'PY'
import msgpack, sys
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
del recs[0]["meta"]["general.labels"]
with open(sys.argv[2], "wb") as f:
    for r in recs: f.write(msgpack.packb(r))
PY
    run --separate-stderr concept-bank -q -a "$T/attr.tsv" "$T/nolabels.tns"
    expect_failure 1 concept-bank "needs class names"
    $PY - "$T/known.tns" "$T/ids.tns" <<'PY'
import msgpack, sys
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
recs[1]["meta"]["ids"] = [0, 1, 2]
with open(sys.argv[2], "wb") as f:
    for r in recs: f.write(msgpack.packb(r))
PY
    run --separate-stderr concept-bank -q "$T/ids.tns"
    expect_failure 1 concept-bank "record 1 has 3 ids for 6 images"
    tns-tsv -r <<< "1 2 3" > "$T/vec.tns"
    run --separate-stderr concept-bank -q "$T/vec.tns"
    expect_failure 1 concept-bank "not an image batch"
    run --separate-stderr concept-bank -q -t "$T/known.tns" "$T/known.tns"
    expect_failure 1 concept-bank "no thresholds"
    run --separate-stderr concept-bank -q --quantile 0.7 "$T/known.tns"
    expect_failure 2 concept-bank "--quantile"
    run --separate-stderr concept-bank -q --quantile 0.2 -t "$T/known.tns" "$T/known.tns"
    expect_failure 2 concept-bank "exclude each other"
    run --separate-stderr concept-bank -q -o "$T/out.tns" -a /nonexistent "$T/known.tns"
    expect_failure 1 concept-bank "/nonexistent: cannot open"
    [ ! -e "$T/out.tns" ]
}

@test "concept-bank: images with C, H or W = 0 are refused (no pixels), not read" {
    for chw in "0 6 6" "1 0 6" "1 6 0"; do
        $PY - "$T/empty.tns" $chw <<'PY'
import msgpack, sys
C, H, W = map(int, sys.argv[2:5])
with open(sys.argv[1], "wb") as f:
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "tensor", "name": "images", "dtype": "f32",
        "shape": [2, C, H, W], "data": b"", "meta": {"labels": [0, 1]}}, use_bin_type=True))
PY
        run --separate-stderr concept-bank -q "$T/empty.tns"
        expect_failure 1 concept-bank "record 0 (images) has empty images ($(echo $chw | sed 's/ / x /g')): no pixels"
    done
}

# Synthetic data a tiny VLM can learn: four classes of 8x8 images, each a
# bright quadrant (north-west, north-east, south-west, south-east) over noise.
synthetic() { # name count seed
    $PY - "$T/$1" "$2" "$3" <<'PY'
import struct, sys, random
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
labels, pix = [], []
for i in range(n):
    k = i % 4
    y0, x0 = (k // 2) * 4, (k % 2) * 4
    img = [rng.randrange(0, 60) for _ in range(64)]
    for y in range(y0, y0 + 4):
        for x in range(x0, x0 + 4):
            img[y * 8 + x] = rng.randrange(150 + 20 * k, 256)
    labels.append(k)
    pix += img
with open(path + ".idx", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 8, 8)); f.write(bytes(pix))
with open(path + ".lab", "wb") as f:
    f.write(struct.pack(">II", 0x801, n)); f.write(bytes(labels))
PY
    printf 'cat\ndog\ncar\nship\n' > "$T/names"
    img-read -q --classes "$T/names" "$T/$1.idx" "$T/$1.lab" > "$T/$1.tns"
}

@test "vlm-train: a tiny VLM learns captions (loss falls, zero-shot accuracy far above chance)" {
    synthetic train 400 1
    synthetic test 200 2
    $PY - "$T/train.lab" > "$T/cap.tsv" <<'PY'
import sys
labels = open(sys.argv[1], "rb").read()[8:]
names = ["cat", "dog", "car", "ship"]
for i, k in enumerate(labels):
    print("%d\t%s" % (i, ["a photo of a %s.", "the %s", "a %s, a small picture"][i % 3] % names[k]))
PY
    vlm-train -q --arch "mlp --hidden 32" -E 16 --text-dim 16 -e 12 -b 50 --lr 0.01 --seed 1 --captions "$T/cap.tsv" \
        --log "$T/log.tsv" --eval "$T/test.tns" -o "$T/vlm.tns" "$T/train.tns" > "$T/report"
    first=$(sed -n 2p "$T/log.tsv" | cut -f2); last=$(tail -1 "$T/log.tsv" | cut -f2)
    echo "loss $first -> $last"
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }'
    acc=$(grep zero_shot_accuracy "$T/report" | cut -f2)
    echo "zero-shot accuracy $acc"
    awk -v a="$acc" 'BEGIN { exit !(a > 0.9) }'
    run tns-info "$T/vlm.tns"
    [[ "${lines[0]}" == *"vlm.kind=clip-small vlm.dim=16 vlm.text_dim=16 vlm.vocab=["* ]]
    [[ "$output" == *"text.embedding	f32	"*"x16"* ]]
    [[ "$output" == *"text.proj.weight	f32	16x16"* ]]
    # the model evaluates the same when loaded again (--init, no training)
    vlm-train -q --init "$T/vlm.tns" -e 0 --eval "$T/test.tns" -o "$T/again.tns" "$T/train.tns" > "$T/report2"
    cmp "$T/report" "$T/report2"
}

@test "vlm-train --text-tower transformer: a tiny VLM with a causal text transformer learns captions" {
    synthetic train 400 1
    synthetic test 200 2
    $PY - "$T/train.lab" > "$T/cap.tsv" <<'PY'
import sys
labels = open(sys.argv[1], "rb").read()[8:]
names = ["cat", "dog", "car", "ship"]
for i, k in enumerate(labels):
    print("%d\t%s" % (i, ["a photo of a %s.", "the %s", "a %s, a small picture"][i % 3] % names[k]))
PY
    vlm-train -q --arch "mlp --hidden 32" -E 16 --text-tower transformer --text-dim 16 --context 8 --text-depth 1 \
        --text-heads 2 -e 12 -b 50 --lr 0.01 --seed 1 --captions "$T/cap.tsv" \
        --log "$T/log.tsv" --eval "$T/test.tns" -o "$T/vlm.tns" "$T/train.tns" > "$T/report"
    first=$(sed -n 2p "$T/log.tsv" | cut -f2); last=$(tail -1 "$T/log.tsv" | cut -f2)
    echo "loss $first -> $last"
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }'
    acc=$(grep zero_shot_accuracy "$T/report" | cut -f2)
    echo "zero-shot accuracy $acc"
    awk -v a="$acc" 'BEGIN { exit !(a > 0.9) }'
    run tns-info "$T/vlm.tns"
    [[ "${lines[0]}" == *"vlm.text_tower=transformer vlm.text_context=8 vlm.text_depth=1 vlm.text_heads=2"* ]]
    [[ "$output" == *"text.token_embedding.weight	f32	"*"x16"* ]]
    [[ "$output" == *"text.encoder.layers.0.self_attn.in_proj_weight	f32	48x16"* ]]
    [[ "$output" == *"text.text_projection.weight	f32	16x16"* ]]
    [[ "$output" != *"text.embedding	"* ]]
    # the model evaluates the same when loaded again, and probe-embed reads its texts
    vlm-train -q --init "$T/vlm.tns" -e 0 --eval "$T/test.tns" -o "$T/again.tns" "$T/train.tns" > "$T/report2"
    cmp "$T/report" "$T/report2"
    printf 'cat\ncar\n' > "$T/texts.txt"
    probe-embed -q --vlm "$T/vlm.tns" --texts "$T/texts.txt" -o "$T/t.tns"
    # a ViT image tower beside it: both have encoder.layers.0.* (once refused: "parameter name used twice")
    vlm-train -q --arch "vit --patch 4 --depth 1 --heads 2 --width 0.25" -E 16 --text-tower transformer --text-dim 16 \
        --text-depth 1 -e 1 -b 50 --captions "$T/cap.tsv" -o "$T/vit.tns" "$T/train.tns"
    tns-info "$T/vit.tns" | grep -q $'text.encoder.layers.0.norm1.weight\tf32\t16'
    # options of the other tower are refused
    run --separate-stderr vlm-train -q --arch mlp --context 8 -e 1 --captions "$T/cap.tsv" "$T/train.tns"
    expect_failure 2 vlm-train "--context, --text-depth and --text-heads are for --text-tower transformer"
    run --separate-stderr vlm-train -q --arch mlp --text-tower lstm -e 1 --captions "$T/cap.tsv" "$T/train.tns"
    expect_failure 2 vlm-train "--text-tower is bow or transformer (lstm)"
    run --separate-stderr vlm-train -q --arch mlp --text-tower transformer --text-dim 10 --text-heads 4 -e 1 \
        --captions "$T/cap.tsv" "$T/train.tns"
    expect_failure 2 vlm-train "heads 4 (dividing the width 10)"
}

@test "vlm-train: the same seed gives the same model bytes, another seed another model" {
    synthetic train 120 1
    seq 0 119 | awk '{ print $1 "\tclass " $1 % 4 }' > "$T/cap.tsv"
    for s in 3 3 4; do
        vlm-train -q --arch "mlp --hidden 16" -E 8 --text-dim 8 -e 2 -b 30 --seed $s --captions "$T/cap.tsv" "$T/train.tns" | md5sum
    done > "$T/sums"
    [ "$(sed -n 1p "$T/sums")" = "$(sed -n 2p "$T/sums")" ]
    [ "$(sed -n 1p "$T/sums")" != "$(sed -n 3p "$T/sums")" ]
}

@test "vlm-train --concepts: captions from a concept bank; per-concept retrieval AUC" {
    synthetic train 400 1
    synthetic test 200 2
    printf 'class\tanimal\tvehicle\ncat\t1\t0\ndog\t1\t0\ncar\t0\t1\nship\t0\t1\n' > "$T/attr.tsv"
    concept-bank -q -a "$T/attr.tsv" -o "$T/ctrain.tns" "$T/train.tns"
    concept-bank -q -a "$T/attr.tsv" -t "$T/ctrain.tns" -o "$T/ctest.tns" "$T/test.tns"
    vlm-train -q --arch "mlp --hidden 32" -E 16 --text-dim 16 -e 12 -b 50 --lr 0.01 --concepts "$T/ctrain.tns" \
        --eval "$T/test.tns" --eval-concepts "$T/ctest.tns" -o "$T/vlm.tns" "$T/train.tns" > "$T/report"
    cat "$T/report"
    [ "$(grep -c '^auc' "$T/report")" -eq 8 ]
    # class-level concepts are learned from the words alone: AUC far above 0.5
    awk -F'\t' '$1 == "auc" && $3 == "class" { if ($4 < 0.9) bad++ } END { exit bad + 0 }' "$T/report"
    awk -F'\t' '$1 == "mean_auc" { exit !($2 > 0.7) }' "$T/report"
    acc=$(grep zero_shot_accuracy "$T/report" | cut -f2)
    awk -v a="$acc" 'BEGIN { exit !(a > 0.6) }'
}

@test "vlm-train --image-model: a trained classifier's head becomes an E-wide projection" {
    synthetic train 200 1
    net-init --arch mlp --hidden 24 --like "$T/train.tns" > "$T/cls.tns"
    $PY - "$T/train.lab" > "$T/cap.tsv" <<'PY'
import sys
for i, k in enumerate(open(sys.argv[1], "rb").read()[8:]):
    print("%d\tclass %d" % (i, k))
PY
    vlm-train -q --image-model "$T/cls.tns" --freeze-image -E 12 -e 1 -b 40 --captions "$T/cap.tsv" -o "$T/vlm.tns" "$T/train.tns"
    run tns-info "$T/vlm.tns"
    [[ "$output" == *"fc.weight	f32	12x24"* ]] || [[ "$output" == *"weight	f32	12x24"* ]]
    # frozen: the hidden layer is unchanged
    [ "$(tns-tsv -n '*0.weight' "$T/cls.tns" | md5sum)" = "$(tns-tsv -n '*0.weight' "$T/vlm.tns" | md5sum)" ]
}

@test "vlm-train: bad inputs fail with a message and no output" {
    synthetic train 40 1
    printf '0\tonly one caption\n' > "$T/cap.tsv"
    run --separate-stderr vlm-train -q --arch mlp -e 1 --captions "$T/cap.tsv" -o "$T/out.tns" "$T/train.tns"
    expect_failure 1 vlm-train "no caption for training image id 1"
    [ ! -e "$T/out.tns" ]
    # --arch's hidden sizes are whole and positive (2.5 was once taken as 2)
    for i in $(seq 0 39); do printf '%d\ta picture\n' "$i"; done > "$T/all.tsv"
    for h in "2.5|not a positive integer (2.5)" "0|not a positive integer (0)" "8,,4|an empty size"; do
        run --separate-stderr vlm-train -q --arch "mlp --hidden ${h%%|*}" -e 1 --captions "$T/all.tsv" -o "$T/out.tns" "$T/train.tns"
        expect_failure 2 vlm-train "--arch: --hidden: ${h#*|}"
    done
    printf 'x\tbad id\n' > "$T/bad.tsv"
    run --separate-stderr vlm-train -q --arch mlp -e 1 --captions "$T/bad.tsv" "$T/train.tns"
    expect_failure 1 vlm-train "line 1: bad id (x)"
    printf '0\ta\n0\tb\n' > "$T/dup.tsv"
    run --separate-stderr vlm-train -q --arch mlp -e 1 --captions "$T/dup.tsv" "$T/train.tns"
    expect_failure 1 vlm-train "a second caption for id 0"
    # a NUL byte would cut a caption short: refused with its line
    printf '0\ta sh\0oe\n' > "$T/nul.tsv"
    run --separate-stderr vlm-train -q --arch mlp -e 1 --captions "$T/nul.tsv" "$T/train.tns"
    expect_failure 1 vlm-train "nul.tsv:1: a NUL byte (not a text file?)"
    run --separate-stderr vlm-train -q --arch mlp -e 1 --captions "$T" "$T/train.tns"
    expect_failure 1 vlm-train "is a directory"
    # not a VLM, a truncated VLM, a VLM with a corrupt byte
    net-init --arch mlp --like "$T/train.tns" > "$T/plain.tns"
    run --separate-stderr vlm-train -q --init "$T/plain.tns" -e 0 "$T/train.tns"
    expect_failure 1 vlm-train "not a VLM model"
    seq 0 39 | awk '{ print $1 "\tword" }' > "$T/all.tsv"
    vlm-train -q --arch mlp -E 4 -e 1 -b 20 --captions "$T/all.tsv" -o "$T/vlm.tns" "$T/train.tns"
    head -c $(($(stat -c %s "$T/vlm.tns") - 7)) "$T/vlm.tns" > "$T/trunc.tns"
    run --separate-stderr vlm-train -q --init "$T/trunc.tns" -e 0 "$T/train.tns"
    expect_failure 1 vlm-train "truncated"
    $PY - "$T/vlm.tns" "$T/nan.tns" <<'PY'
import msgpack, sys, numpy as np
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
with open(sys.argv[2], "wb") as f:
    for r in recs:
        if r.get("name") == "text.proj.bias":
            x = np.frombuffer(r["data"], "<f4").copy(); x[1] = np.nan; r["data"] = x.tobytes()
        f.write(msgpack.packb(r))
PY
    run --separate-stderr vlm-train -q --init "$T/nan.tns" -e 0 "$T/train.tns"
    expect_failure 1 vlm-train "text.proj.bias has a non-finite value"
    $PY - "$T/vlm.tns" "$T/vocab.tns" <<'PY'
import msgpack, sys
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
recs[0]["meta"]["vlm.vocab"] = ["word", "<unk>"]
with open(sys.argv[2], "wb") as f:
    for r in recs: f.write(msgpack.packb(r))
PY
    run --separate-stderr vlm-train -q --init "$T/vocab.tns" -e 0 "$T/train.tns"
    expect_failure 1 vlm-train "must start with <unk>"
    # usage
    run --separate-stderr vlm-train -q --arch mlp "$T/train.tns"
    expect_failure 2 vlm-train "give one of --captions and --concepts"
    run --separate-stderr vlm-train -q --arch "mlp --depth" --captions "$T/all.tsv" "$T/train.tns"
    expect_failure 2 vlm-train "--depth needs a value"
    run --separate-stderr vlm-train -q --arch "nonet" --captions "$T/all.tsv" "$T/train.tns"
    expect_failure 2 vlm-train "--arch"
    run --separate-stderr vlm-train -q --arch mlp -b 1 --captions "$T/all.tsv" "$T/train.tns"
    expect_failure 2 vlm-train "--batch"
    run --separate-stderr vlm-train -q --arch mlp --captions "$T/all.tsv" - < "$T/train.tns"
    expect_failure 2 vlm-train "TRAIN must be a file"
    run --separate-stderr vlm-train -q --arch mlp --eval "$T/train.tns" --report - --captions "$T/all.tsv" "$T/train.tns"
    expect_failure 2 vlm-train "--report - needs --output FILE"
}
