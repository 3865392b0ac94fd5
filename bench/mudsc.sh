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
# over the 10 classes on the test images; task A/B: argmax within the task's
# classes on the task's test images; avg: their mean. A model alone is scored
# from the ensemble's logits (its own 5 columns). Merges use STATS training
# images of all classes (activation statistics and BN reset), zip a = 0.5 and
# b = 1 as MuDSC's code (ZIP_A, ZIP_B). Means and standard deviations over
# the seeds.
#
# BUDGETS="0 0.5" adds a second table: ZipIt! and MuDSC-zip with each
# same-model merge budget b of BUDGETS (perm-align --zip-b) beside ZIP_B.
#
# NORM=group builds the models with GroupNorm of GN_GROUPS groups (8, as
# MuDSC's ResNet-20-GN) in place of every batch norm (net-init --spec on
# resnet20's graph); perm-align then matches the GroupNorm groups as whole
# blocks and aligns or zips within paired blocks (MuDSC's group alignment and
# group zip). Use its own OUTDIR.
#
# Environment: SEEDS ("1 2 3"), WIDTH (1), EPOCHS (6), TRAIN_PER_CLASS (0:
# all 6000), TEST_PER_CLASS (0: all 1000), STATS (2000), PARTIAL
# (layer2.2.relu2: 13 of resnet20's 20 layers zipped, as ZipIt! 13/20), ZIP_A
# (0.5), ZIP_B (1), BUDGETS (none), NORM (batch or group), GN_GROUPS (8),
# METHODS (all: "avg weight act zip partial mudsc-align mudsc-zip"),
# DATA (a directory with fm-train.tns and fm-test.tns from img-read; made from
# /usr/share/datasets/fashion-mnist when missing; default /tmp/netsmith-bench),
# BINDIR (bin), NETSMITH_THREADS (2).
# Everything already in OUTDIR is reused (data splits, task models, merges;
# each merge's scores, MERGE.tns.scores, and the ensemble's logits while they
# are newer than their model and the test set), so a run can be split
# (SEEDS=1, then SEEDS="1 2", ...): one OUTDIR per setting; delete a file to
# have it made again. The budget table's rows go to OUTDIR/budget-rows.tsv.
# A tiny check of the script itself:
#   SEEDS="1 2" EPOCHS=1 WIDTH=0.25 TRAIN_PER_CLASS=50 TEST_PER_CLASS=30 STATS=200 BUDGETS=0 sh bench/mudsc.sh /tmp/md
#   NORM=group GN_GROUPS=2 SEEDS=1 EPOCHS=1 WIDTH=0.25 TRAIN_PER_CLASS=50 TEST_PER_CLASS=30 STATS=200 sh bench/mudsc.sh /tmp/md-gn
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
BUDGETS=${BUDGETS:-}
NORM=${NORM:-batch}
GN_GROUPS=${GN_GROUPS:-8}
METHODS=${METHODS:-avg weight act zip partial mudsc-align mudsc-zip}
DATA=${DATA:-/tmp/netsmith-bench}
FM=/usr/share/datasets/fashion-mnist
export OMP_WAIT_POLICY=passive NETSMITH_THREADS=${NETSMITH_THREADS:-2}
case $NORM in batch | group) ;; *) echo "mudsc.sh: NORM is batch or group ($NORM)" >&2; exit 2 ;; esac
mkdir -p "$OUT" "$DATA"
say() { echo "$*" >&2; }
per() { [ "$1" -gt 0 ] && echo "--per-class $1" || true; }

# --- data -----------------------------------------------------------------------
[ -s "$DATA/fm-train.tns" ] || "$BIN/img-read" -q --classes examples/fashion-mnist.classes \
    "$FM/train-images-idx3-ubyte.gz" -o "$DATA/fm-train.tns"
[ -s "$DATA/fm-test.tns" ] || "$BIN/img-read" -q --classes examples/fashion-mnist.classes \
    "$FM/t10k-images-idx3-ubyte.gz" -o "$DATA/fm-test.tns"
sel() { [ -s "$4" ] || "$BIN/img-select" -q -c "$1" $(per "$2") "$3" -o "$4"; }
sel 0-4 "$TRAIN_PER_CLASS" "$DATA/fm-train.tns" "$OUT/train-a.tns"
sel 5-9 "$TRAIN_PER_CLASS" "$DATA/fm-train.tns" "$OUT/train-b.tns"
sel 0-9 "$TEST_PER_CLASS" "$DATA/fm-test.tns" "$OUT/test.tns"
[ -s "$OUT/stats.tns" ] || "$BIN/img-select" -q -c 0-9 -n "$STATS" "$DATA/fm-train.tns" -o "$OUT/stats.tns"
NTEST=$("$BIN/tns-tsv" -l -f "$OUT/test.tns" | wc -l)

# the GroupNorm variant: resnet20's graph with every batch norm a GroupNorm
SPEC="$OUT/resnet20-gn.cfg"
if [ "$NORM" = group ] && [ ! -s "$SPEC" ]; then
    "$BIN/net-init" --arch resnet20 --width "$WIDTH" --like "$OUT/train-a.tns" -o "$OUT/bn.tns"
    "$BIN/net-info" --spec "$OUT/bn.tns" | awk -v g="$GN_GROUPS" '
        /^\[batchnorm / { sub(/^\[batchnorm/, "[groupnorm"); print; print "groups = " g; next } { print }' > "$SPEC.tmp"
    mv "$SPEC.tmp" "$SPEC"
    rm -f "$OUT/bn.tns"
fi

# --- metrics from logits ---------------------------------------------------------
# joint, task A, task B, avg (pipelines/merge-score.sh, shared with make demo),
# then the numbers of A's and B's images, of lines "label l0..l9" (A's 5 first)
SCORE="sh pipelines/merge-score.sh"
scores() {
    lines=$(mktemp)
    cat > "$lines"
    echo "$($SCORE < "$lines") $(awk '{ if ($1 < 5) a++; else b++ } END { print a + 0, b + 0 }' "$lines")"
    rm -f "$lines"
}
# a model's logits on the test set: lines "label l0..l9"
evaluate() { # model
    "$BIN/net-eval" -q -m "$1" --logits "$1.logits.tns" "$OUT/test.tns" > /dev/null
    "$BIN/tns-tsv" -l "$1.logits.tns"
    rm -f "$1.logits.tns"
}
# fresh FILE MODEL: FILE was made after MODEL and the test set
fresh() { [ -s "$1" ] && [ -n "$(find "$1" -newer "$2" -newer "$OUT/test.tns")" ]; }
# the scores (joint, task A, task B, avg, images of A, of B) of a model, kept in MODEL.scores
score() { # model
    if ! fresh "$1.scores" "$1"; then
        evaluate "$1" > "$1.logits.tmp"
        scores < "$1.logits.tmp" > "$1.scores.tmp"
        rm -f "$1.logits.tmp"
        mv "$1.scores.tmp" "$1.scores"
    fi
    cat "$1.scores"
}
# a row: seed, name, joint, task A, task B, avg
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@"; }

# merge SEED-DIR FILE-STEM PERM-ALIGN-ARGS...: the merged model's path (made when missing)
merge() {
    mdir=$1 mfile=$1/$2.tns
    shift 2
    t0=$(date +%s)
    [ -s "$mfile" ] || "$BIN/perm-align" -q --data "$OUT/stats.tns" --zip-a "$ZIP_A" "$@" -o "$mfile" \
        "$mdir/a.tns" "$mdir/b.tns" > "$mfile.report"
    say "  $mfile: $(($(date +%s) - t0)) s"
    echo "$mfile"
}

ROWS="$OUT/rows.tsv" BROWS="$OUT/budget-rows.tsv"
: > "$ROWS"
: > "$BROWS"
for s in $SEEDS; do
    d="$OUT/seed$s"
    mkdir -p "$d"
    for task in a b; do
        seed=$((10 * s + $([ $task = a ] && echo 1 || echo 2)))
        m="$d/$task.tns"
        [ -s "$m" ] && continue
        t0=$(date +%s)
        if [ "$NORM" = group ]; then
            "$BIN/net-init" --spec "$SPEC" --like "$OUT/train-$task.tns" --seed "$seed" -o "$m.init"
        else
            "$BIN/net-init" --arch resnet20 --width "$WIDTH" --like "$OUT/train-$task.tns" --seed "$seed" -o "$m.init"
        fi
        "$BIN/net-train" -q -m "$m.init" -e "$EPOCHS" --seed "$seed" --crop-pad 2 --flip -o "$m" "$OUT/train-$task.tns"
        say "seed $s: model $task trained in $(($(date +%s) - t0)) s"
    done
    # the ensemble: both models whole, logits side by side (a partial zip at the input)
    [ -s "$d/ensemble.tns" ] || "$BIN/perm-align" -q --no-reset --method average --partial input --data "$OUT/stats.tns" -o "$d/ensemble.tns" \
        "$d/a.tns" "$d/b.tns" > /dev/null
    fresh "$d/ensemble.logits" "$d/ensemble.tns" || { evaluate "$d/ensemble.tns" > "$d/ensemble.logits.tmp"
                                                       mv "$d/ensemble.logits.tmp" "$d/ensemble.logits"; }
    set -- $(scores < "$d/ensemble.logits")
    # each model alone: its task's accuracy is the ensemble's; joint counts its task's images only
    awk -v s="$s" -v a="$2" -v b="$3" -v na="$5" -v nb="$6" 'BEGIN {
        printf "%s\tModel A alone\t%.2f\t%s\t-\t-\n", s, a * na / (na + nb), a
        printf "%s\tModel B alone\t%.2f\t-\t%s\t-\n", s, b * nb / (na + nb), b }' >> "$ROWS"
    ENSEMBLE="$s	Ensemble	$1	$2	$3	$4"
    for spec in "avg:W.avg:--method average" "weight:Weight matching:--method weight" "act:Permute (act):--method act" \
                "zip:ZipIt! (all layers):--method zip" "partial:ZipIt! partial ($PARTIAL):--method zip --partial $PARTIAL" \
                "mudsc-align:MuDSC-align:--method mudsc-align" "mudsc-zip:MuDSC-zip:--method mudsc-zip"; do
        key=${spec%%:*} rest=${spec#*:}
        name=${rest%%:*} args=${rest#*:}
        case " $METHODS " in *" $key "*) ;; *) continue ;; esac
        # shellcheck disable=SC2086
        f=$(merge "$d" "$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')" --zip-b "$ZIP_B" $args)
        set -- $(score "$f")
        row "$s" "$name" "$1" "$2" "$3" "$4" >> "$ROWS"
        say "seed $s: $name $1 $2 $3 $4"
    done
    echo "$ENSEMBLE" >> "$ROWS"
    # the same with each model's 5 logits standardised (mean and std over
    # the test set): two separately trained linear heads are not calibrated
    # against each other (ZipIt!'s heads are CLIP text embeddings, which are)
    set -- $($SCORE --standardise < "$d/ensemble.logits")
    row "$s" "Ensemble, logits standardised per model" "$1" "$2" "$3" "$4" >> "$ROWS"
    # the same-model merge budget b: ZipIt! and MuDSC-zip with each b of BUDGETS and ZIP_B
    [ -n "$BUDGETS" ] || continue
    for method in zip mudsc-zip; do
        label=$([ $method = zip ] && echo "ZipIt! (all layers)" || echo "MuDSC-zip")
        for b in $(printf '%s\n' $BUDGETS "$ZIP_B" | sort -g -u); do
            if [ "$b" = "$ZIP_B" ]; then
                f=$(merge "$d" "$(echo "$label" | tr -c 'a-zA-Z0-9\n' '_')" --zip-b "$ZIP_B" --method $method)
            else
                f=$(merge "$d" "$(echo "$label" | tr -c 'a-zA-Z0-9\n' '_')b$b" --zip-b "$b" --method $method)
            fi
            set -- $(score "$f")
            row "$s" "$label, b = $b" "$1" "$2" "$3" "$4" >> "$BROWS"
            say "seed $s: $label b = $b: $1 $2 $3 $4"
        done
    done
done

# --- the tables: mean +- std over seeds ---------------------------------------------------
table() { # rows.tsv, 1 for the published column
    cut -f2 "$1" | awk '!seen[$0]++' | while IFS= read -r name; do
        printf '%s\t%s\n' "$name" "$($SCORE --published "$name")"; done > "$OUT/published.tsv"
    awk -F'\t' -v pubcol="$2" '
        FNR == NR { pub[$1] = $2; next }
        { if (!($2 in seen)) { seen[$2] = 1; order[++k] = $2 }
          for (c = 3; c <= 6; c++) if ($c != "-") { s[$2, c] += $c; q[$2, c] += $c * $c; n[$2, c]++ } }
        END { print "| Method | Joint | Task A | Task B | Avg |" (pubcol ? " Published joint (avg) |" : "")
              print "|---|---|---|---|---|" (pubcol ? "---|" : "")
              for (i = 1; i <= k; i++) { m = order[i]; line = "| " m
                for (c = 3; c <= 6; c++) {
                    if (!n[m, c]) { line = line " | -"; continue }
                    mu = s[m, c] / n[m, c]; v = q[m, c] / n[m, c] - mu * mu; if (v < 0) v = 0
                    line = line sprintf(" | %.2f", mu) (n[m, c] > 1 ? sprintf(" +- %.2f", sqrt(v * n[m, c] / (n[m, c] - 1))) : "") }
                print line (pubcol ? " | " pub[m] " |" : " |") } }' "$OUT/published.tsv" "$1"
}
REPORT="$OUT/mudsc.md"
NS=$(echo $SEEDS | wc -w)
ARCH=$([ "$NORM" = group ] && echo "resnet20-GN ($GN_GROUPS groups)" || echo resnet20)
{
    echo "# Merging $ARCH x$WIDTH task models on Fashion-MNIST 5+5 ($EPOCHS epochs, seeds: $SEEDS)"
    echo
    echo "Joint: argmax over the 10 classes ($NTEST test images); task A/B: argmax within the task's"
    echo "classes on its own test images; avg: their mean. Mean +- std over $NS seed(s)."
    if [ "$NORM" = batch ]; then
        echo "Published (ZipIt!, CIFAR-10 5+5, resnet20x4): W.avg 43.0, Git Re-Basin 46.2, Permute 58.4,"
        echo "ZipIt! 20/20 79.1, ZipIt! 13/20 83.8, ensemble 87.4 joint."
    fi
    echo
    table "$ROWS" "$([ "$NORM" = batch ] && echo 1 || echo 0)"
    if [ -s "$BROWS" ]; then
        echo
        echo "Same-model merge budget b (perm-align --zip-b; zip a = $ZIP_A):"
        echo
        table "$BROWS" 0
    fi
} > "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
cat "$REPORT"
