#!/usr/bin/env bats
# The demo's comparison tables in small (pipelines/merge.mk, condense.mk) and
# the pieces they share with the benches: pipelines/merge-score.sh (the
# merging table's scores, with bench/mudsc.sh) on logits with known answers,
# graph-coreset (the coresets beside SimGC, with bench/simgc.sh) against the
# graph it came from, and both pipelines run on tiny data: every row of the
# bench's table present and consistent.
bats_require_minimum_version 1.5.0
load common

SCORE="sh $ROOT/pipelines/merge-score.sh"

# Ten classes of 8x8 gray images, class k brighter in pixels 6k..6k+5 under
# heavy noise: N images each as IDX files PREFIX-images-idx3-ubyte[.gz] and
# PREFIX-labels-idx1-ubyte[.gz] in DIR, class names c0..c9 in DIR/names.
toy_idx() { # dir prefix n gz
    $PY - "$@" <<'PY'
import gzip, random, struct, sys
out, prefix, n, gz = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "gz"
rnd = random.Random(3 if prefix == "train" else 4)
labels = [i % 10 for i in range(n)]
pix = bytearray()
for k in labels:
    for i in range(64):
        pix.append(max(0, min(255, (150 if i // 6 == k else 70) + rnd.randrange(-90, 91))))
op, ext = (gzip.open, ".gz") if gz else (open, "")
with op(f"{out}/{prefix}-images-idx3-ubyte{ext}", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 8, 8) + bytes(pix))
with op(f"{out}/{prefix}-labels-idx1-ubyte{ext}", "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + bytes(labels))
open(f"{out}/names", "w").write("".join(f"c{k}\n" for k in range(10)))
PY
}

# the columns of a table row by its name: "joint taskA taskB avg published"
row_of() { # file name
    awk -v name="$2" 'substr($0, 1, length(name)) == name && substr($0, length(name) + 1, 2) ~ /^ +$/ {
        rest = substr($0, length(name) + 1); split(rest, f, " ")
        p = rest; for (i = 1; i <= 4; i++) sub(/^ *[^ ]+/, "", p); sub(/^ +/, "", p)
        print f[1], f[2], f[3], f[4], p }' "$1"
}

@test "merge-score.sh: joint, per task and avg of known logits; standardised; a model alone; published figures" {
    # 2 + 2 classes: joint right on row 2 only; task A right on rows 1-2, task B on row 4
    printf '0 5 1 9 0\n1 0 3 1 2\n2 0 0 1 4\n3 9 0 1 4\n' > "$T/l"
    [ "$($SCORE < "$T/l")" = "25.00 100.00 50.00 75.00" ]
    # 5 + 5 as the demo and the bench: task A's image 0 right within A, wrong jointly (B's 9 wins)
    printf '0 3 1 1 1 1 0 0 0 0 9\n7 0 0 0 0 0 1 2 5 1 1\n' > "$T/l10"
    [ "$($SCORE < "$T/l10")" = "50.00 100.00 100.00 100.00" ]
    # standardised per model (mean and std over all images): model B's wide
    # logits no longer win row 1; the task columns stay; numpy agrees
    printf '0 3 0 6 5\n1 0 1 5 6\n2 0 1 9 0\n3 1 0 0 9\n' > "$T/wide"
    [ "$($SCORE < "$T/wide")" = "50.00 100.00 100.00 100.00" ]
    [ "$($SCORE --standardise < "$T/wide")" = "75.00 100.00 100.00 100.00" ]
    $PY -c '
import numpy as np, sys
a = np.loadtxt(sys.argv[1]); y, x = a[:, 0].astype(int), a[:, 1:]
k = x.shape[1] // 2
for m in (slice(0, k), slice(k, 2 * k)):
    x[:, m] = (x[:, m] - x[:, m].mean()) / x[:, m].std()
print("%.2f" % (100 * np.mean(x.argmax(1) == y)))' "$T/wide" > "$T/joint"
    [ "$(cat "$T/joint")" = 75.00 ]
    # a model alone: 2 of its 3 images right, 3 images of the other task count as wrong
    printf '0 1 0\n1 0 1\n1 1 0\n' > "$T/alone"
    [ "$($SCORE --alone a 3 < "$T/alone")" = "33.33 66.67 - -" ]
    [ "$($SCORE --alone b 1 < "$T/alone")" = "50.00 - 66.67 -" ]
    [ "$($SCORE --published "ZipIt! partial (features.relu2)")" = "83.8 (94.6), 13/20" ]
    [ "$($SCORE --published "Permute (act)")" = "58.4 (87.4)" ]
    [ "$($SCORE --published "MuDSC-zip")" = "-" ]
    # images of one task only: no per-task score
    run -1 $SCORE < <(head -2 "$T/l")
    [[ "$output" == *"need images of both tasks"* ]]
    run -2 $SCORE --alone c 3 < "$T/alone"
    run -2 $SCORE --bogus
}

@test "graph-coreset: ceil(r n_c) training nodes per class, the edges among them, all for training" {
    make_sbm "$T/s"
    graph-coreset -q -r 0.5 --seed 1 -o "$T/c1.tns" "$T/s/g.tns"
    graph-coreset -q -r 0.5 --seed 1 -o "$T/c1b.tns" "$T/s/g.tns"
    graph-coreset -q -r 0.25 --seed 2 -o "$T/c2.tns" "$T/s/g.tns"
    graph-coreset -q -m herding -r 0.5 -o "$T/h.tns" "$T/s/g.tns"
    graph-coreset -q -m kcenter -K 2 -r 0.25 -o "$T/k.tns" "$T/s/g.tns"
    cmp "$T/c1.tns" "$T/c1b.tns"
    # each coreset node is a training node of the original (found by its
    # features, which are unique among the training nodes here) with its label,
    # and an edge joins two coreset nodes exactly when one joins their originals
    $PY - "$ROOT/examples" "$T/s/g.tns" "$T/c1.tns" 5 "$T/c2.tns" 3 "$T/h.tns" 5 "$T/k.tns" 3 <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from tns_read import records
def load(p):
    t = {r["name"]: a for r, a in records(open(p, "rb")) if a is not None}
    ip, ix = t["graph.indptr"], t["graph.indices"]
    edges = {(i, int(j)) for i in range(len(ip) - 1) for j in ix[ip[i]:ip[i + 1]]}
    return t, edges
g, ge = load(sys.argv[2])
train = np.nonzero(g["graph.train"])[0]
rows = {g["graph.features"][i].tobytes(): i for i in train}
assert len(rows) == len(train), "training features not unique"
for path, per_class in zip(sys.argv[3::2], map(int, sys.argv[4::2])):
    c, ce = load(path)
    n = len(c["graph.labels"])
    assert c["graph.train"].all() and n == 2 * per_class, (path, n)
    orig = [rows[c["graph.features"][i].tobytes()] for i in range(n)]
    assert len(set(orig)) == n
    assert [int(g["graph.labels"][o]) for o in orig] == c["graph.labels"].tolist()
    assert np.bincount(c["graph.labels"]).tolist() == [per_class, per_class]
    want = {(a, b) for a in range(n) for b in range(n) if (orig[a], orig[b]) in ge}
    assert ce == want, (path, len(ce), len(want))
PY
    run -2 graph-coreset -r 0.5
    [[ "$output" == *"missing argument"* ]]
}

@test "merge.mk: every row of bench/mudsc.sh's table, joint and per task, the ensemble's tasks its models'" {
    toy_idx "$T" train 1000 plain
    toy_idx "$T" t10k 1000 plain
    img-read -q --classes "$T/names" "$T/train-images-idx3-ubyte" -o "$T/train.tns"
    img-read -q --classes "$T/names" "$T/t10k-images-idx3-ubyte" -o "$T/test.tns"
    cd "$ROOT"
    MAKEFLAGS= make --no-print-directory -f pipelines/merge.mk BIN="$BINDIR" OUT="$T/out" TRAIN="$T/train.tns" TEST="$T/test.tns" \
        ARCH="vgg --depth 2 --width 0.5" EPOCHS=1 LIMIT=1000 STATS=200 PARTIAL=features.relu0 \
        TRAIN_FLAGS="--lr 0.05 --batch 32" > /dev/null
    f="$T/out/merge.txt"
    # the rows in the bench's order and names, each with four columns and the published figure
    [ "$(awk 'NR > 5 {sub(/  +.*/, ""); print}' "$f" | tr '\n' '|')" = "Model A alone|Model B alone|W.avg|Weight matching|Permute (act)|ZipIt! (all layers)|ZipIt! partial (features.relu0)|MuDSC-align|MuDSC-zip|Ensemble|Ensemble, logits standardised per model|" ]
    [ "$(row_of "$f" "ZipIt! partial (features.relu0)" | cut -d' ' -f5-)" = "83.8 (94.6), 13/20" ]
    [ "$(row_of "$f" "MuDSC-zip" | cut -d' ' -f5-)" = "-" ]
    set -- $(row_of "$f" "Model A alone"); a=$2; [ "$3 $4" = "- -" ]
    # 500 test images per task: a task model alone is right on half the joint set at most
    [ "$1" = "$(awk -v a="$a" 'BEGIN {printf "%.2f", a / 2}')" ]
    set -- $(row_of "$f" "Model B alone"); b=$3; [ "$2 $4" = "- -" ]
    # the ensemble's per-task scores are each model's own, raw or standardised
    for name in "Ensemble" "Ensemble, logits standardised per model"; do
        set -- $(row_of "$f" "$name")
        [ "$2 $3 $4" = "$a $b $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", (a + b) / 2}')" ]
    done
    # every merged row: numbers in [0, 100], avg the mean of the tasks
    for name in "W.avg" "Weight matching" "Permute (act)" "ZipIt! (all layers)" "MuDSC-align" "MuDSC-zip"; do
        set -- $(row_of "$f" "$name")
        [ "$(awk -v j="$1" -v x="$2" -v y="$3" -v m="$4" 'BEGIN {
            print (j >= 0 && j <= 100 && x >= 0 && x <= 100 && y >= 0 && y <= 100 &&
                   (m - (x + y) / 2) ^ 2 < 1e-4) }')" = 1 ] || { echo "$name: $*"; return 1; }
    done
    # the table's row is merge-score.sh on the merged model's logits
    net-eval -q -m "$T/out/merge/merged-zip.tns" --logits "$T/zl.tns" "$T/test.tns" > /dev/null
    [ "$(tns-tsv -l "$T/zl.tns" | $SCORE)" = "$(row_of "$f" "ZipIt! (all layers)" | cut -d' ' -f1-4)" ]
}

@test "condense.mk: the whole graph, then at each ratio a random coreset of the same size beside SimGC and the class means" {
    mkdir "$T/data"
    toy_idx "$T/data" t10k 800 gz
    cd "$ROOT"
    MAKEFLAGS= make --no-print-directory -f pipelines/condense.mk BIN="$BINDIR" OUT="$T/out" DATA="$T/data" CLASSES="$T/data/names" \
        IMAGES=800 ITERS=20 WHOLE="--epochs 20 --hidden 16" \
        CONDENSE="--teacher-hidden 16 --teacher-epochs 30 --pge-hidden 8 --val-every 0 --lr-feat 0.05 --lr-adj 0.01" \
        JUDGE="--act none --dropout 0 --wd 0 --lr 0.01 --hidden 16 --epochs 30 --lr-drop 0 --eval-every 10" > /dev/null
    f="$T/out/condense.txt"
    grep -q '^# Fashion-MNIST kNN graph, 800 nodes, 20 labels per class' "$f"
    grep -Eq '^whole graph, GCN +[0-9]+\.[0-9][0-9]$' "$f"
    grep -Eq '^whole graph, MLP \(no graph\) +[0-9]+\.[0-9][0-9]$' "$f"
    grep -q 'r  *nodes  *share  *random coreset  *teacher  *class means  *SimGC  *condensation s' "$f"
    # r x 20 nodes per class of 10 classes, both the condensed graph and the coreset;
    # the class means as a percentage
    for r in 0.25:50:6.2% 0.5:100:12.5%; do
        set -- $(echo "$r" | tr ':' ' ')
        grep -Eq "^$1 +$2 +$3 +[0-9.]+ +[0-9.]+ +[0-9]+\.[0-9][0-9] +[0-9.]+ +[0-9.]+$" "$f" || { cat "$f"; return 1; }
        means=$(awk -v r="$1" '$1 == r {print $6}' "$f")
        [ "$(ge "$means" 10)" = 1 ] && [ "$(ge 100 "$means")" = 1 ]
        for g in condensed coreset; do
            tns-info "$T/out/knn-$g-$1.tns" | head -1 | grep -q "graph.nodes=$2 "
        done
    done
}
