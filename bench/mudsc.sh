#!/bin/sh
# bench/mudsc.sh: the ZipIt!-style merging table on Fashion-MNIST 5+5, with
# task models trained towards their ceiling and the ensemble of the two as the
# upper reference. Writes OUTDIR/mudsc.md (markdown, also on stdout); keeps
# models, reports and per-seed rows (OUTDIR/rows.tsv) in OUTDIR.
#
#   sh bench/mudsc.sh OUTDIR
#
# For each seed s: model A (resnet20 x WIDTH, init seed 10s+1) trained on
# classes 0-4, model B (10s+2) on 5-9, EPOCHS epochs each (cosine schedule,
# crop and flip). Rows: each model alone; weight averaging; weight matching
# (Git Re-Basin); activation matching (permute); ZipIt! (all layers zipped);
# ZipIt! partial (zipped up to PARTIAL, the rest kept per model); MuDSC-align;
# MuDSC-zip; the ensemble (both models, logits side by side; and the same
# with each model's logits standardised over the test set). Joint: argmax
# over the 10 classes on the 10000 test images; task A/B: argmax within the
# task's classes on the task's test images; avg: their mean. Merges use STATS
# training images of all classes (activation statistics and BN reset), zip
# a = 0.5 and b = 1 as MuDSC's code (ZIP_A, ZIP_B). Means and standard
# deviations over the seeds.
#
# Environment: SEEDS ("1 2 3"), WIDTH (1), EPOCHS (6), TRAIN_PER_CLASS (0:
# all 6000), TEST_PER_CLASS (0: all 1000), STATS (2000), PARTIAL
# (layer2.2.relu2: 13 of resnet20's 20 layers zipped, as ZipIt! 13/20), ZIP_A (0.5), ZIP_B (1),
# DATA (a directory with fm-train.tns and fm-test.tns from img-read; made from
# /usr/share/datasets/fashion-mnist when missing; default /tmp/netsmith-bench),
# BINDIR (bin), NETSMITH_THREADS (2). Models (task models and merges) already
# in OUTDIR are reused, so a run can be split (SEEDS=1, then SEEDS="1 2", ...).
# A tiny check of the script itself:
#   SEEDS="1 2" EPOCHS=1 WIDTH=0.25 TRAIN_PER_CLASS=50 TEST_PER_CLASS=30 STATS=200 sh bench/mudsc.sh /tmp/md
set -eu

OUT=${1:?usage: sh bench/mudsc.sh OUTDIR}
BIN=${BINDIR:-bin}
SEEDS=${SEEDS:-1 2 3}
WIDTH=${WIDTH:-1}
EPOCHS=${EPOCHS:-6}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-0}
TEST_PER_CLASS=${TEST_PER_CLASS:-0}
STATS=${STATS:-2000}
PARTIAL=${PARTIAL:-layer2.2.relu2}
ZIP_A=${ZIP_A:-0.5}
ZIP_B=${ZIP_B:-1}
DATA=${DATA:-/tmp/netsmith-bench}
FM=/usr/share/datasets/fashion-mnist
export OMP_WAIT_POLICY=passive NETSMITH_THREADS=${NETSMITH_THREADS:-2}
mkdir -p "$OUT" "$DATA"
say() { echo "$*" >&2; }
per() { [ "$1" -gt 0 ] && echo "--per-class $1" || true; }

# --- data -----------------------------------------------------------------------
[ -s "$DATA/fm-train.tns" ] || "$BIN/img-read" -q --classes examples/fashion-mnist.classes \
    "$FM/train-images-idx3-ubyte.gz" -o "$DATA/fm-train.tns"
[ -s "$DATA/fm-test.tns" ] || "$BIN/img-read" -q --classes examples/fashion-mnist.classes \
    "$FM/t10k-images-idx3-ubyte.gz" -o "$DATA/fm-test.tns"
sel() { "$BIN/img-select" -q -c "$1" $(per "$2") "$3" -o "$4"; }
sel 0-4 "$TRAIN_PER_CLASS" "$DATA/fm-train.tns" "$OUT/train-a.tns"
sel 5-9 "$TRAIN_PER_CLASS" "$DATA/fm-train.tns" "$OUT/train-b.tns"
sel 0-4 "$TEST_PER_CLASS" "$DATA/fm-test.tns" "$OUT/test-a.tns"
sel 5-9 "$TEST_PER_CLASS" "$DATA/fm-test.tns" "$OUT/test-b.tns"
sel 0-9 "$TEST_PER_CLASS" "$DATA/fm-test.tns" "$OUT/test.tns"
"$BIN/img-select" -q -c 0-9 -n "$STATS" "$DATA/fm-train.tns" -o "$OUT/stats.tns"

# --- metrics from logits ---------------------------------------------------------
logits() { # model data -> label, logits... per line
    "$BIN/net-eval" -q -m "$1" --logits "$OUT/logits.tns" "$2" > /dev/null
    "$BIN/tns-tsv" -l "$OUT/logits.tns"
}
# the scores (joint, task A, task B, avg) of "label logits..." lines: pipelines/merge-score.sh
SCORE="sh pipelines/merge-score.sh"

ROWS="$OUT/rows.tsv"
: > "$ROWS"
for s in $SEEDS; do
    d="$OUT/seed$s"
    mkdir -p "$d"
    for task in a b; do
        seed=$((10 * s + $([ $task = a ] && echo 1 || echo 2)))
        m="$d/$task.tns"
        [ -s "$m" ] && continue
        t0=$(date +%s)
        "$BIN/net-init" --arch resnet20 --width "$WIDTH" --like "$OUT/train-$task.tns" --seed "$seed" -o "$m.init"
        "$BIN/net-train" -q -m "$m.init" -e "$EPOCHS" --seed "$seed" --crop-pad 2 --flip -o "$m" "$OUT/train-$task.tns"
        say "seed $s: model $task trained in $(($(date +%s) - t0)) s"
    done
    NTA=$("$BIN/tns-tsv" -l -f "$OUT/test-a.tns" | wc -l)
    NTB=$("$BIN/tns-tsv" -l -f "$OUT/test-b.tns" | wc -l)
    set -- $(logits "$d/a.tns" "$OUT/test-a.tns" | $SCORE --alone a "$NTB")
    printf '%s\tModel A alone\t%s\t%s\t%s\t%s\n' "$s" "$1" "$2" "$3" "$4" >> "$ROWS"
    set -- $(logits "$d/b.tns" "$OUT/test-b.tns" | $SCORE --alone b "$NTA")
    printf '%s\tModel B alone\t%s\t%s\t%s\t%s\n' "$s" "$1" "$2" "$3" "$4" >> "$ROWS"
    for row in "W.avg:--method average" "Weight matching:--method weight" "Permute (act):--method act" \
               "ZipIt! (all layers):--method zip" "ZipIt! partial ($PARTIAL):--method zip --partial $PARTIAL" \
               "MuDSC-align:--method mudsc-align" "MuDSC-zip:--method mudsc-zip"; do
        name=${row%%:*}
        args=${row#*:}
        f="$d/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_').tns"
        t0=$(date +%s)
        # shellcheck disable=SC2086
        [ -s "$f" ] || "$BIN/perm-align" -q --data "$OUT/stats.tns" --zip-a "$ZIP_A" --zip-b "$ZIP_B" $args -o "$f" \
            "$d/a.tns" "$d/b.tns" > "$f.report"
        set -- $(logits "$f" "$OUT/test.tns" | $SCORE)
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$name" "$1" "$2" "$3" "$4" >> "$ROWS"
        say "seed $s: $name $* ($(($(date +%s) - t0)) s)"
    done
    # the ensemble: both models whole, logits side by side (a partial zip at the input)
    [ -s "$d/ensemble.tns" ] || "$BIN/perm-align" -q --no-reset --method average --partial input --data "$OUT/stats.tns" -o "$d/ensemble.tns" \
        "$d/a.tns" "$d/b.tns" > /dev/null
    logits "$d/ensemble.tns" "$OUT/test.tns" > "$d/ensemble.logits"
    set -- $($SCORE < "$d/ensemble.logits")
    printf '%s\tEnsemble\t%s\t%s\t%s\t%s\n' "$s" "$1" "$2" "$3" "$4" >> "$ROWS"
    # the same with each model's 5 logits standardised (mean and std over
    # the test set): two separately trained linear heads are not calibrated
    # against each other (ZipIt!'s heads are CLIP text embeddings, which are)
    set -- $($SCORE --standardise < "$d/ensemble.logits")
    printf '%s\tEnsemble, logits standardised per model\t%s\t%s\t%s\t%s\n' "$s" "$1" "$2" "$3" "$4" >> "$ROWS"
done

# --- the table: mean +- std over seeds ---------------------------------------------------
REPORT="$OUT/mudsc.md"
NS=$(echo $SEEDS | wc -w)
{
    echo "# Merging resnet20 x$WIDTH task models on Fashion-MNIST 5+5 ($EPOCHS epochs, seeds: $SEEDS)"
    echo
    echo "Joint: argmax over the 10 classes (10000 test images); task A/B: argmax within the task's"
    echo "classes on its own test images; avg: their mean. Mean +- std over $NS seed(s)."
    echo "Published (ZipIt!, CIFAR-10 5+5, resnet20x4): W.avg 43.0, Git Re-Basin 46.2, Permute 58.4,"
    echo "ZipIt! 20/20 79.1, ZipIt! 13/20 83.8, ensemble 87.4 joint."
    echo
    echo "| Method | Joint | Task A | Task B | Avg | Published joint (avg) |"
    echo "|---|---|---|---|---|---|"
    cut -f2 "$ROWS" | awk '!seen[$0]++' | while IFS= read -r name; do
        printf '%s\t%s\n' "$name" "$($SCORE --published "$name")"; done > "$OUT/published.tsv"
    awk -F'\t' '
        FNR == NR { pub[$1] = $2; next }
        { if (!($2 in seen)) { seen[$2] = 1; order[++k] = $2 }
          for (c = 3; c <= 6; c++) if ($c != "-") { s[$2, c] += $c; q[$2, c] += $c * $c; n[$2, c]++ } }
        END { for (i = 1; i <= k; i++) { m = order[i]; line = "| " m
                for (c = 3; c <= 6; c++) {
                    if (!n[m, c]) { line = line " | -"; continue }
                    mu = s[m, c] / n[m, c]; v = q[m, c] / n[m, c] - mu * mu; if (v < 0) v = 0
                    line = line sprintf(" | %.2f", mu) (n[m, c] > 1 ? sprintf(" +- %.2f", sqrt(v * n[m, c] / (n[m, c] - 1))) : "") }
                print line " | " pub[m] " |" } }' "$OUT/published.tsv" "$ROWS"
} > "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
cat "$REPORT"
