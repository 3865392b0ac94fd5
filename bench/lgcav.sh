#!/bin/sh
# bench/lgcav.sh: LG-CAV on Fashion-MNIST, a table shaped like the paper's
# Table 1 (concept accuracy) with its Table 2 (concept-to-class) beside it:
# rows CAV (10 pos / 10 neg), LG-CAV without modules, +GA, +GA+CE,
# +GA+CE+DSR (all LG-CAV rows with the same 10 + 10 labelled images, so
# L_cls is on), plus LG-CAV from the VLM alone (+GA, +GA+CE, no labels); columns
# the concept accuracy averaged over the concept bank's concepts (held-out
# test images, balanced positives/negatives, unknown excluded) and the
# concept-to-class cosine x100 averaged over the class-level concepts; each
# as mean +- std over the seeds.
#
#   sh bench/lgcav.sh OUTDIR
#
# Environment (defaults in brackets):
#   BIN            programs [bin]
#   MODELS         target models [/tmp/netsmith-bench/resnet20.tns /tmp/netsmith-bench/cnn.tns]
#   TRAIN, TEST    image streams (img-read) [/tmp/netsmith-bench/fm-train.tns, fm-test.tns]
#   VLM            a vlm-train model [/tmp/hvlm-out/vlm.tns]; when absent one is trained
#                  here on the pool (VLM_EPOCHS [2], a small VGG tower, text tower
#                  VLM_TEXT_TOWER [bow] or transformer): a weaker guide
#   POOL_BATCHES   records of 256 TRAIN images in the probe pool [20: 5120 images]
#   EVAL_BATCHES   records of 256 TEST images held out for concept accuracy [8]
#   SEEDS          [0 1 2]      PROBES  K top + K bottom probes [500]
#   TCAV_RUNS      concept and random runs of the TCAV significance test [5]
#   ATTRIBUTES     [examples/fashion-mnist.attributes.tsv]
# Writes OUTDIR/table.md (also printed) and the per-run summaries under OUTDIR.
set -eu
OUT=${1:?usage: sh bench/lgcav.sh OUTDIR}
BIN=${BIN:-bin}
MODELS=${MODELS:-/tmp/netsmith-bench/resnet20.tns /tmp/netsmith-bench/cnn.tns}
TRAIN=${TRAIN:-/tmp/netsmith-bench/fm-train.tns}
TEST=${TEST:-/tmp/netsmith-bench/fm-test.tns}
VLM=${VLM:-/tmp/hvlm-out/vlm.tns}
VLM_EPOCHS=${VLM_EPOCHS:-2}
VLM_TEXT_TOWER=${VLM_TEXT_TOWER:-bow}
POOL_BATCHES=${POOL_BATCHES:-20}
EVAL_BATCHES=${EVAL_BATCHES:-8}
SEEDS=${SEEDS:-0 1 2}
PROBES=${PROBES:-500}
TCAV_RUNS=${TCAV_RUNS:-5}
ATTRIBUTES=${ATTRIBUTES:-examples/fashion-mnist.attributes.tsv}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# cav-fit's products are small (probes x probes Gram blocks): one thread is
# faster than two on a shared machine (0.33 s against 1.17 s per cnn concept)
FIT_THREADS=${FIT_THREADS:-1}
mkdir -p "$OUT"
D="$OUT/data"
mkdir -p "$D"

# --- the shared inputs: pool and held-out images, their concepts, the VLM's view
"$BIN/tns-cat" --head "$POOL_BATCHES" -o "$D/pool.tns" "$TRAIN"
"$BIN/tns-cat" --head "$EVAL_BATCHES" -o "$D/eval.tns" "$TEST"
"$BIN/concept-bank" -q -a "$ATTRIBUTES" -o "$D/pool-c.tns" "$D/pool.tns"
"$BIN/concept-bank" -q -a "$ATTRIBUTES" -t "$D/pool-c.tns" -o "$D/eval-c.tns" "$D/eval.tns"
if [ ! -f "$VLM" ]; then
    echo "lgcav.sh: no VLM at $VLM: training a small one on the pool ($VLM_EPOCHS epochs)" >&2
    VLM="$D/vlm.tns"
    "$BIN/vlm-train" -q --arch "vgg --depth 2 --width 0.5" --text-tower "$VLM_TEXT_TOWER" --concepts "$D/pool-c.tns" \
        --epochs "$VLM_EPOCHS" -o "$VLM" "$D/pool.tns"
fi
# each concept's description: its name, hyphens as spaces (as the captions write it)
names=$(sed -n '1p' "$ATTRIBUTES" | cut -f2- | tr '\t' ' ')
pixel="bright dark patterned plain large small"
for c in $names $pixel; do printf '%s\t%s\n' "$c" "$(echo "$c" | tr '-' ' ')"; done > "$D/texts.txt"
"$BIN/probe-embed" -q --vlm "$VLM" -o "$D/pool-g.tns" "$D/pool.tns"
"$BIN/probe-embed" --vlm "$VLM" --texts "$D/texts.txt" -o "$D/texts.tns"

# A model trained on a stream without class names (labels "0".."9") refuses
# data named otherwise: give it copies whose names are its own, and an
# attribute table by class index.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
model_labels() { # model -> its class names, one a line
    $PY - "$1" <<'PYEOF'
import sys, msgpack
for r in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=2**31):
    if r.get("kind") == "meta" and "general.labels" in r.get("meta", {}):
        print("\n".join(r["meta"]["general.labels"])); break
PYEOF
}
relabel() { # in out labels-file: a meta record with these general.labels after in's own
    $PY - "$@" <<'PYEOF'
import sys, msgpack
labels = open(sys.argv[3]).read().splitlines()
with open(sys.argv[2], "wb") as out:
    done = False
    for r in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=2**31):
        if r.get("kind") != "meta" and not done:
            out.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "meta", "name": "", "meta": {"general.labels": labels}}))
            done = True
        out.write(msgpack.packb(r, use_bin_type=True))
PYEOF
}

# --- the runs
# mean over a summary's concepts of column $2 (nan skipped), as a percentage when $3 = 100
colmean() { awk -F'\t' -v c="$2" -v s="$3" 'NR > 1 && $c != "nan" {t += $c; n++} END {printf "%.4f\n", n ? s * t / n : 0}' "$1"; }

rows="cav none ga ga,ce ga,ce,dsr vlm-ga vlm-ga,ce"
for model in $MODELS; do
    m=$(basename "$model" .tns)
    M="$OUT/$m"
    mkdir -p "$M"
    pool="$D/pool.tns" eval="$D/eval.tns" attr="$ATTRIBUTES"
    model_labels "$model" > "$M/labels.txt"
    if ! model_labels "$D/pool.tns" | cmp -s - "$M/labels.txt"; then
        relabel "$D/pool.tns" "$M/pool.tns" "$M/labels.txt"
        relabel "$D/eval.tns" "$M/eval.tns" "$M/labels.txt"
        model_labels "$D/pool.tns" > "$M/names.txt"
        awk -F'\t' 'NR == FNR {idx[$0] = FNR - 1; next} FNR == 1 {print; next} {$1 = idx[$1]; print}' OFS='\t' \
            "$M/names.txt" "$ATTRIBUTES" > "$M/attributes.tsv"
        pool="$M/pool.tns" eval="$M/eval.tns" attr="$M/attributes.tsv"
    fi
    "$BIN/probe-embed" -q -m "$model" -o "$M/pool-f.tns" "$pool"
    "$BIN/probe-embed" -q -m "$model" -o "$M/eval-f.tns" "$eval"
    : > "$M/runs.tsv"
    for s in $SEEDS; do
        for r in $rows; do
            common="-q -C $D/pool-c.tns -e $M/eval-f.tns -E $D/eval-c.tns -a $attr --seed $s"
            lg="-g $D/pool-g.tns -t $D/texts.tns -k $PROBES"
            export NETSMITH_THREADS="$FIT_THREADS"
            case $r in
            cav) "$BIN/cav-fit" $common --method cav "$M/pool-f.tns" > "$M/$r.$s.tsv" ;;
            vlm-*) "$BIN/cav-fit" $common $lg -M "${r#vlm-}" --positives 0 "$M/pool-f.tns" > "$M/$r.$s.tsv" ;;
            *) "$BIN/cav-fit" $common $lg -M "$r" "$M/pool-f.tns" > "$M/$r.$s.tsv" ;;
            esac
            unset NETSMITH_THREADS
            printf '%s\t%s\t%s\t%s\n' "$r" "$s" "$(colmean "$M/$r.$s.tsv" 7 100)" "$(colmean "$M/$r.$s.tsv" 8 1)" >> "$M/runs.tsv"
        done
    done
    # TCAV scores of the full LG-CAV (seed 0) on the held-out images of the
    # related classes, against TCAV_RUNS random CAVs
    NETSMITH_THREADS="$FIT_THREADS" "$BIN/cav-fit" -q -C "$D/pool-c.tns" -e "$M/eval-f.tns" -E "$D/eval-c.tns" \
        -a "$attr" -g "$D/pool-g.tns" -t "$D/texts.tns" -k "$PROBES" -m "$model" -i "$eval" -r "$TCAV_RUNS" \
        -o "$M/cavs.tns" "$M/pool-f.tns" > "$M/tcav.tsv"
done

# --- the table
{
    echo "# LG-CAV on Fashion-MNIST (bench/lgcav.sh)"
    echo
    echo "Pool: $((POOL_BATCHES * 256)) training images (probes: top/bottom $PROBES by VLM score);"
    echo "held out: $((EVAL_BATCHES * 256)) test images; VLM: $VLM; seeds: $SEEDS."
    echo "Concept accuracy (%): balanced, averaged over the concept bank's concepts."
    echo "Concept-to-class (x100): cos(v, W_k) over the classes that have the concept (class-level concepts)."
    for model in $MODELS; do
        m=$(basename "$model" .tns)
        echo
        echo "## $m"
        echo
        echo "| method | concept accuracy | concept-to-class |"
        echo "|---|---|---|"
        for r in $rows; do
            case $r in
            cav) label="Original CAV (10 pos / 10 neg)" ;;
            none) label="LG-CAV, no modules" ;;
            ga) label="+GA" ;;
            ga,ce) label="+GA+CE" ;;
            ga,ce,dsr) label="+GA+CE+DSR" ;;
            vlm-ga) label="LG-CAV +GA, VLM only (no labels)" ;;
            vlm-ga,ce) label="LG-CAV +GA+CE, VLM only (no labels)" ;;
            esac
            awk -F'\t' -v r="$r" -v l="$label" 'BEGIN {n = 0} $1 == r {a[n] = $3; b[n] = $4; n++}
                function sd(x, m,   i, s) { if (n < 2) return 0; for (i = 0; i < n; i++) s += (x[i] - m) ^ 2; return sqrt(s / (n - 1)) }
                END { for (i = 0; i < n; i++) { ma += a[i] / n; mb += b[i] / n }
                      printf "| %s | %.2f ± %.2f | %.2f ± %.2f |\n", l, ma, sd(a, ma), mb, sd(b, mb) }' "$OUT/$m/runs.tsv"
        done
        echo
        echo "TCAV of the full LG-CAV (seed 0; classes from the attribute table; p against $TCAV_RUNS random CAVs):"
        echo
        echo "| concept | concept accuracy | concept-to-class | TCAV | p |"
        echo "|---|---|---|---|---|"
        awk -F'\t' 'NR > 1 && $9 != "nan" {printf "| %s | %.2f | %.2f | %.3f | %.3g |\n", $1, 100 * $7, $8, $9, $10}' "$OUT/$m/tcav.tsv"
    done
} > "$OUT/table.md"
cat "$OUT/table.md"
