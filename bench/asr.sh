#!/bin/sh
# bench/asr.sh: activation sample reweighting (ASR, LG-CAV's paper §3) on
# Fashion-MNIST: for each model, the test accuracy of the base model, after
# ASR (head fine-tuned with LG-CAV weights) and after the control (the same
# fine-tuning with uniform weights: same budget, lr and seed), mean ± std
# over the seeds, beside the paper's claim (a small, consistent gain over
# both).
#
#   sh bench/asr.sh OUTDIR
#
# The pipeline per model: features of the training and test sets at the
# head's input (probe-embed), each class's default description "a photo of
# k, not k'" (asr-reweight --describe; class names from CLASSES when the
# model names its classes by index), their VLM text embeddings, the VLM's
# image embeddings of a probe pool of training images, one LG-CAV per class
# from the VLM alone (cav-fit, GA+CE, no positives), then asr-reweight.
# A seed s seeds both cav-fit and the fine-tuning's shuffles.
#
# Environment (defaults in brackets):
#   BIN            programs [bin]
#   MODELS         [/tmp/netsmith-bench/resnet20.tns /tmp/netsmith-bench/cnn.tns]
#   TRAIN, TEST    image streams (img-read) [/tmp/netsmith-bench/fm-train.tns, fm-test.tns]
#   VLM            a vlm-train model [/tmp/hvlm-out/vlm.tns] (required)
#   POOL_BATCHES   records of TRAIN in the probe pool [40: 10240 images]
#   PROBES         K top + K bottom probes per concept [500]
#   SEEDS [0 1 2]  EPOCHS [20]  LR [1e-3]  BATCH [128]  MOMENTUM [0.9]
#   CLASSES        class names, one a line [examples/fashion-mnist.classes]
# Writes OUTDIR/table.md (also printed), OUTDIR/runs.tsv and the
# intermediate streams under OUTDIR/<model>/.
set -eu
OUT=${1:?usage: sh bench/asr.sh OUTDIR}
BIN=${BIN:-bin}
MODELS=${MODELS:-/tmp/netsmith-bench/resnet20.tns /tmp/netsmith-bench/cnn.tns}
TRAIN=${TRAIN:-/tmp/netsmith-bench/fm-train.tns}
TEST=${TEST:-/tmp/netsmith-bench/fm-test.tns}
VLM=${VLM:-/tmp/hvlm-out/vlm.tns}
POOL_BATCHES=${POOL_BATCHES:-40}
PROBES=${PROBES:-500}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-20}
LR=${LR:-1e-3}
BATCH=${BATCH:-128}
MOMENTUM=${MOMENTUM:-0.9}
CLASSES=${CLASSES:-examples/fashion-mnist.classes}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
for f in $MODELS "$TRAIN" "$TEST" "$VLM" "$CLASSES"; do
    [ -f "$f" ] || { echo "asr.sh: $f is missing" >&2; exit 1; }
done
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
mkdir -p "$OUT"
D="$OUT/data"
mkdir -p "$D"

# The meta record of a stream with general.labels replaced by a file's lines.
labels_meta() { # stream labels-file out
    $PY - "$@" <<'PYEOF'
import sys, msgpack
labels = open(sys.argv[2]).read().splitlines()
for r in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=2**31):
    if r.get("kind") == "meta" and "general.labels" in r.get("meta", {}):
        r["meta"]["general.labels"] = labels
        open(sys.argv[3], "wb").write(msgpack.packb(r, use_bin_type=True))
        break
PYEOF
}
model_labels() { # model -> its class names, one a line
    $PY - "$1" <<'PYEOF'
import sys, msgpack
for r in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=2**31):
    if r.get("kind") == "meta" and "general.labels" in r.get("meta", {}):
        print("\n".join(r["meta"]["general.labels"])); break
PYEOF
}
# A copy of a data stream whose class names are the model's (a model trained
# on a stream without names refuses data named otherwise).
relabel() { # in out labels-file
    labels_meta "$1" "$3" "$2.meta"
    { cat "$2.meta"; "$BIN/tns-cat" --no-meta "$1"; } > "$2"
    rm -f "$2.meta"
}
acc() { # report.json split -> after accuracy, and before with a third argument
    $PY -c 'import json, sys; r = json.load(open(sys.argv[1]))[sys.argv[2]]; print(r["before" if len(sys.argv) > 3 else "after"])' "$@"
}

"$BIN/tns-cat" --head "$POOL_BATCHES" -o "$D/pool.tns" "$TRAIN"
"$BIN/probe-embed" -q --vlm "$VLM" -o "$D/pool-g.tns" "$D/pool.tns"
: > "$OUT/runs.tsv"
for model in $MODELS; do
    m=$(basename "$model" .tns)
    M="$OUT/$m"
    mkdir -p "$M"
    train="$TRAIN" test="$TEST" pool="$D/pool.tns"
    model_labels "$model" > "$M/labels.txt"
    if ! model_labels "$TRAIN" | cmp -s - "$M/labels.txt"; then
        relabel "$TRAIN" "$M/train.tns" "$M/labels.txt"
        relabel "$TEST" "$M/test.tns" "$M/labels.txt"
        relabel "$D/pool.tns" "$M/pool.tns" "$M/labels.txt"
        train="$M/train.tns" test="$M/test.tns" pool="$M/pool.tns"
    fi
    t0=$(date +%s)
    "$BIN/probe-embed" -q -m "$model" -o "$M/train-f.tns" "$train"
    "$BIN/probe-embed" -q -m "$model" -o "$M/test-f.tns" "$test"
    "$BIN/probe-embed" -q -m "$model" -o "$M/pool-f.tns" "$pool"
    t1=$(date +%s)
    # descriptions: the model's class names (its own, or CLASSES by index) in the text
    "$BIN/asr-reweight" --describe --pattern '{}|{}' "$M/train-f.tns" |
        awk -F'\t' -v names="$CLASSES" -v own="$M/labels.txt" '
            BEGIN { while ((getline l < own) > 0) idx[l] = n++
                    while ((getline l < names) > 0) name[k++] = l }
            { split($2, p, "|"); a = p[1]; b = p[2]
              if (k == n) { a = name[idx[a]]; b = name[idx[b]] }
              printf "%s\ta photo of %s, not %s\n", $1, a, b }' > "$M/classes.txt"
    "$BIN/probe-embed" -q --vlm "$VLM" --texts "$M/classes.txt" -o "$M/texts.tns"
    "$BIN/asr-reweight" -q -u -e 0 -t "$M/test-f.tns" -j "$M/train-f.tns" > "$M/base.json"
    base=$(acc "$M/base.json" test before)
    for s in $SEEDS; do
        "$BIN/cav-fit" -q -s "$s" -k "$PROBES" -g "$D/pool-g.tns" -t "$M/texts.tns" -o "$M/cavs.$s.tns" \
            "$M/pool-f.tns" > "$M/cav-fit.$s.tsv"
        common="-q -s $s -e $EPOCHS --lr $LR -b $BATCH --momentum $MOMENTUM -t $M/test-f.tns -j"
        "$BIN/asr-reweight" $common -c "$M/cavs.$s.tns" -d "$M/classes.txt" -w "$M/weights.$s.tns" \
            "$M/train-f.tns" > "$M/asr.$s.json"
        "$BIN/asr-reweight" $common -u "$M/train-f.tns" > "$M/uniform.$s.json"
        printf '%s\t%s\t%s\t%s\t%s\n' "$m" "$s" "$base" "$(acc "$M/asr.$s.json" test)" \
            "$(acc "$M/uniform.$s.json" test)" >> "$OUT/runs.tsv"
    done
    echo "$m: features in $((t1 - t0)) s, the rest in $(($(date +%s) - t1)) s" >&2
done

{
    echo "# ASR on Fashion-MNIST (bench/asr.sh)"
    echo
    echo "Head-only fine-tuning on cached features: SGD lr $LR, momentum $MOMENTUM, batch $BATCH, $EPOCHS epochs;"
    echo "LG-CAVs from the VLM alone ($VLM, GA+CE, $PROBES top/bottom probes of $((POOL_BATCHES * 256)) training images)"
    echo "for 'a photo of k, not k2' (k2 the class k is most often taken for on the training set); seeds: $SEEDS."
    echo "Test accuracy (%), mean ± std over the seeds (the base model has no seed)."
    echo
    echo "| model | base | ASR | control (uniform) | ASR − base | ASR − control | paper (ASR − original) |"
    echo "|---|---|---|---|---|---|---|"
    awk -F'\t' '
        { n[$1]++; b[$1] = $3; a[$1, n[$1]] = $4; u[$1, n[$1]] = $5; d[$1, n[$1]] = $4 - $5
          if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
        function mean(x, k,   i, s) { for (i = 1; i <= n[k]; i++) s += x[k, i]; return s / n[k] }
        function sd(x, k,   i, s, mu) { if (n[k] < 2) return 0; mu = mean(x, k)
            for (i = 1; i <= n[k]; i++) s += (x[k, i] - mu) ^ 2; return sqrt(s / (n[k] - 1)) }
        END { for (j = 1; j <= m; j++) { k = order[j]
            printf "| %s | %.2f | %.2f ± %.2f | %.2f ± %.2f | %+.2f | %+.2f ± %.2f | +0.3 to +0.6 (e.g. CIFAR-100 ResNet-20 70.36 → 70.87, std 0.02–0.06) |\n",
                k, 100 * b[k], 100 * mean(a, k), 100 * sd(a, k), 100 * mean(u, k), 100 * sd(u, k),
                100 * (mean(a, k) - b[k]), 100 * mean(d, k), 100 * sd(d, k) } }' "$OUT/runs.tsv"
} > "$OUT/table.md"
cat "$OUT/table.md"
