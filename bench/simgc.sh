#!/bin/sh
# SimGC figures, printed as Markdown (copied into bench/RESULTS.md by hand):
#   1. Cora and Citeseer (the Planetoid graphs in data/, public split): the
#      whole-graph GCN, and SimGC at r = 0.25, 0.5, 1 (Cora 1.3 / 2.6 / 5.2%,
#      Citeseer 0.9 / 1.8 / 3.6% of the nodes) over SEEDS seeds with the
#      dataset's --preset; each condensed graph judged twice, by SimGC's GCN
#      (1024 hidden units, no activation, trained on the condensed graph alone
#      for 3000 epochs at lr 0.001, selected and tested on the original) and by
#      GCond's (gnn-train's defaults: the protocol of the published GCond and
#      SFGC figures); the coresets of CORESETS beside it (graph-coreset: r x n_c
#      real training nodes per class, random, by herding or k-center, and the
#      edges among them), judged alike; condensation wall time.
#   2. A CSBM (graph-gen --preset arxiv) at growing N: time and peak memory
#      of condensation, and how they grow with N.
#   2b. A Citeseer-sized CSBM with sparse binary features, --preset citeseer.
#   3. The Fashion-MNIST kNN graph (graph-knn, FM_IMAGES training images):
#      whole graph (GCN, MLP) against condensed.
#
#   sh bench/simgc.sh [OUTDIR]
#   CORA=dir CITESEER=dir SEEDS="1 2 3 4 5" RATIOS="0.25 0.5 1" VAL_EVERY=100 VAL_EPOCHS=3000 VAL_PATIENCE=3 sh bench/simgc.sh
#   PARTS=cora CORESETS= sh bench/simgc.sh      (Cora only, no coresets)
#   PARTS="cora citeseer citeseer-like speed csbm fmnist" (the default)
#   CORESETS="random herding kcenter" (the default; "random" alone saves judgements)
#   CORESET_SIMGC=0 (coresets judged by GCond's GCN only: SimGC's judge takes a minute a graph on Citeseer)
#
# Each result is a file per seed in OUTDIR, made only when missing: a stopped
# run resumes, and runs with different RATIOS can share OUTDIR in parallel
# (then one more run prints the whole table). Condensation runs `sgc-condense --preset NAME` with only the
# ratio, the seed and the validation settings above given.
#
# Cora and Citeseer come from data/ in the repository (CORA=dir, CITESEER=dir
# for other copies). Everything runs on NETSMITH_THREADS threads.
set -eu
BIN=${BIN:-bin}
W=${1:-/tmp/netsmith-bench/simgc}
CORA=${CORA:-data/cora}
CITESEER=${CITESEER:-data/citeseer}
SEEDS=${SEEDS:-1 2 3 4 5}
RATIOS=${RATIOS:-0.25 0.5 1}
CORESETS=${CORESETS-random herding kcenter}
VAL_EVERY=${VAL_EVERY:-100}
VAL_EPOCHS=${VAL_EPOCHS:-3000}
VAL_PATIENCE=${VAL_PATIENCE:-3}
SIZES=${SIZES:-25000 50000 100000}
FM_IMAGES=${FM_IMAGES:-20000}
PARTS=${PARTS:-cora citeseer citeseer-like speed csbm fmnist}
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
F=/usr/share/datasets/fashion-mnist
mkdir -p "$W"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

key() { awk -F '\t' -v k="$1" '$1 == k {print $2}'; }
# mean ± std (sample) of the numbers on stdin, as percentages with 2 decimals
meanstd() {
    awk '{x[NR] = $1; s += $1} END {m = s / NR; for (i = 1; i <= NR; i++) v += (x[i] - m) ^ 2;
         printf "%.2f ± %.2f", 100 * m, (NR > 1 ? 100 * sqrt(v / (NR - 1)) : 0)}'
}
mean() { awk '{s += $1} END {printf "%.1f", s / NR}'; }
# SimGC's evaluation of a condensed graph on the original
SIMGC_JUDGE="--hidden 1024 --act none --dropout 0 --wd 0 --lr 0.001 --epochs 3000 --lr-drop 0 --eval-every 100"
judge() { # condensed original seed -> test accuracy
    "$BIN/gnn-train" -q --eval-graph "$2" $SIMGC_JUDGE --seed "$3" "$1" | key test_acc
}
# GCond's evaluation, the one GCond's and SFGC's published figures use: gnn-train's
# defaults (hidden 256, ReLU, dropout 0.5, weight decay 5e-4, lr 0.01, 600 epochs,
# lr x 0.1 at 300, the best-validation epoch)
gjudge() { # condensed original seed -> test accuracy
    "$BIN/gnn-train" -q --eval-graph "$2" --seed "$3" "$1" | key test_acc
}

# A coreset: ceil(r * n_c) training nodes per class, with the edges among them
# (graph-coreset, as make demo draws its random one; herding and k-center on
# the features, the same whatever the seed, which then seeds only the judge).
coreset() { # method graph ratio seed out
    "$BIN/graph-coreset" -q -m "$1" -r "$3" --seed "$4" -o "$5" "$2"
}
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

echo "## SimGC (sgc-condense), $(date -u +%Y-%m-%d), $(nproc) cores, NETSMITH_THREADS=${NETSMITH_THREADS:-all}"
echo

# Published figures (GCond's GCN; the tables of GCond and SFGC, as reprinted in
# CTRL and GDEM): dataset-ratio -> "random | herding | k-center | GCond | SFGC"
published() {
    case $1 in
    cora-0.25) echo "63.6 ± 3.7 | 67.0 ± 1.3 | 64.0 ± 2.3 | 79.8 ± 1.3 | 80.1 ± 0.4" ;;
    cora-0.5) echo "72.8 ± 1.1 | 73.4 ± 1.0 | 73.2 ± 1.2 | 80.1 ± 0.6 | 81.7 ± 0.5" ;;
    cora-1) echo "76.8 ± 0.1 | 76.8 ± 0.1 | 76.7 ± 0.1 | 79.3 ± 0.3 | 81.6 ± 0.8" ;;
    citeseer-0.25) echo "54.4 ± 4.4 | 57.1 ± 1.5 | 52.4 ± 2.8 | 70.5 ± 1.2 | 71.4 ± 0.5" ;;
    citeseer-0.5) echo "64.2 ± 1.7 | 66.7 ± 1.0 | 64.3 ± 1.0 | 70.6 ± 0.9 | 72.4 ± 0.4" ;;
    citeseer-1) echo "69.1 ± 0.1 | 69.0 ± 0.1 | 69.1 ± 0.1 | 69.8 ± 1.4 | 70.6 ± 0.7" ;;
    *) echo " |  |  |  | " ;;
    esac
}
case_whole() { case $1 in cora) echo 81.2 ;; citeseer) echo 71.7 ;; *) echo "?" ;; esac; }

# Every result below is one file per seed in W, made only when missing: a run
# that stops resumes, and runs with different RATIOS (or PARTS) in parallel
# share W; the table is assembled from the files.
once() { # file command... : the command's output into file, unless it is there
    f=$1; shift
    [ -s "$f" ] || { "$@" > "$f.tmp" && mv "$f.tmp" "$f"; }
}
whole_gcond() { "$BIN/gnn-train" -q --seed "$2" "$1" | key test_acc; }
whole_simgc() { "$BIN/gnn-train" -q $SIMGC_JUDGE --seed "$2" "$1" | key test_acc; }
condense() { # name ratio seed graph out
    "$BIN/sgc-condense" -q --preset "$1" -r "$2" --seed "$3" --val-every "$VAL_EVERY" \
        --val-epochs "$VAL_EPOCHS" --val-patience "$VAL_PATIENCE" -o "$5" "$4"
}
# the per-seed files of a prefix, one number per line (in SEEDS order)
gather() { for s in $SEEDS; do cat "$1-$s.$2"; done; }

# One Planetoid data set (NAME = cora or citeseer: its preset, its file
# prefix in W, its published figures) from the graph-import directory DIR.
# CORESET_SIMGC=0 judges the coresets by GCond's GCN alone (SimGC's judge,
# 1024 hidden units for 3000 epochs, costs a minute a graph on Citeseer).
planetoid() { # NAME DIR
    name=$1 dir=$2
    g="$W/$name.tns"
    [ -s "$g" ] || "$BIN/graph-import" -o "$g" "$dir"
    nodes=$(head -1 "$dir/nodes.txt" | cut -d' ' -f1)
    for s in $SEEDS; do
        once "$W/$name-whole-$s.gcond" whole_gcond "$g" "$s"
        once "$W/$name-whole-$s.simgc" whole_simgc "$g" "$s"
    done
    echo "### $name (Planetoid split): GCN test accuracy (%), $(echo $SEEDS | wc -w) seeds, --preset $name"
    echo
    echo "Whole graph ($nodes nodes): $(gather "$W/$name-whole" gcond | meanstd) with GCond's GCN (published $(case_whole "$name")), $(gather "$W/$name-whole" simgc | meanstd) with SimGC's."
    echo
    echo "Validation during condensation: every $VAL_EVERY iterations, $VAL_EPOCHS epochs. Each condensed graph"
    echo "and coreset is judged twice: by SimGC's GCN (hidden 1024, no activation, lr 0.001, 3000 epochs, no"
    echo "weight decay) and by GCond's (hidden 256, ReLU, dropout 0.5, weight decay 5e-4, lr 0.01, 600 epochs),"
    echo "the protocol of the published GCond and SFGC figures. Published: random / herding / k-center"
    echo "coresets, GCond and SFGC, all judged by GCond's GCN."
    echo
    heads=""; rules=""
    for m in $CORESETS; do heads="$heads $m coreset, SimGC's / GCond's judge |"; rules="$rules---|"; done
    echo "| r | nodes | share |$heads teacher (test) | class means (test) | SimGC (netsmith), SimGC's judge | SimGC (netsmith), GCond's judge | random (published) | herding (published) | k-center (published) | GCond (published) | SFGC (published) | condensation s (teacher + optimisation + validation) |"
    echo "|---|---|---|$rules---|---|---|---|---|---|---|---|---|---|"
    for r in $RATIOS; do
        p="$W/$name-$r"
        for s in $SEEDS; do
            # the report is written last, so a graph with its report is complete
            [ -s "$p-$s.tns" ] && [ -s "$p-report-$s.txt" ] ||
                once "$p-report-$s.txt" condense "$name" "$r" "$s" "$g" "$p-$s.tns"
            key teacher_test < "$p-report-$s.txt" > "$p-$s.teacher"
            key class_mean_test < "$p-report-$s.txt" > "$p-$s.means"
            awk -F '\t' '$1 ~ /_seconds$/ {s += $2} END {print s}' "$p-report-$s.txt" > "$p-$s.time"
            once "$p-$s.simgc" judge "$p-$s.tns" "$g" "$s"
            once "$p-$s.gcond" gjudge "$p-$s.tns" "$g" "$s"
            for m in $CORESETS; do
                [ -s "$p-core-$m-$s.tns" ] || coreset "$m" "$g" "$r" "$s" "$p-core-$m-$s.tns"
                [ "${CORESET_SIMGC:-1}" = 0 ] || once "$p-core-$m-$s.simgc" judge "$p-core-$m-$s.tns" "$g" "$s"
                once "$p-core-$m-$s.gcond" gjudge "$p-core-$m-$s.tns" "$g" "$s"
            done
        done
        n=$(key nodes < "$(ls "$p"-report-*.txt | head -1)")
        share=$(awk -v n="$n" -v t="$nodes" 'BEGIN {printf "%.1f%%", 100 * n / t}')
        cores=""
        for m in $CORESETS; do
            sj="-"
            [ "${CORESET_SIMGC:-1}" = 0 ] || sj=$(gather "$p-core-$m" simgc | meanstd)
            cores="$cores $sj / $(gather "$p-core-$m" gcond | meanstd) |"
        done
        echo "| $r | $n | $share |$cores $(gather "$p" teacher | meanstd) | $(gather "$p" means | meanstd) | $(gather "$p" simgc | meanstd) | $(gather "$p" gcond | meanstd) | $(published "$name-$r") | $(gather "$p" time | mean) |"
    done
    echo
}

for name in cora citeseer; do
    want "$name" || continue
    dir=$CORA
    [ "$name" = citeseer ] && dir=$CITESEER
    if [ -f "$dir/nodes.txt" ]; then
        planetoid "$name" "$dir"
    else
        echo "($name not found at $dir: skipped)"
        echo
    fi
done

if want citeseer-like; then
    # A Citeseer-sized CSBM with sparse binary features: whole-graph GCN and
    # MLP, then --preset citeseer at r 0.5.
    "$BIN/graph-gen" -q -n 3327 -c 6 -d 3703 -f bernoulli -w 32 -s 0.2 --avg-degree 2.7 --homophily 0.74 \
        --seed 1 -o "$W/citeseer-like.tns"
    : > "$W/cs-gcn.txt"; : > "$W/cs-mlp.txt"; : > "$W/cs-simgc.txt"; : > "$W/cs-teacher.txt"
    for s in $SEEDS; do
        "$BIN/gnn-train" -q --seed "$s" "$W/citeseer-like.tns" | key test_acc >> "$W/cs-gcn.txt"
        "$BIN/gnn-train" -q -m mlp --seed "$s" "$W/citeseer-like.tns" | key test_acc >> "$W/cs-mlp.txt"
        "$BIN/sgc-condense" -q --preset citeseer -r 0.5 --seed "$s" -o "$W/cs-$s.tns" "$W/citeseer-like.tns" \
            > "$W/cs-report-$s.txt"
        key teacher_test < "$W/cs-report-$s.txt" >> "$W/cs-teacher.txt"
        judge "$W/cs-$s.tns" "$W/citeseer-like.tns" "$s" >> "$W/cs-simgc.txt"
    done
    echo "### Citeseer-like CSBM (3327 nodes, 3703 binary features, 6 classes), --preset citeseer, r 0.5"
    echo
    echo "| whole-graph GCN | whole-graph MLP | teacher | SimGC (60 nodes) |"
    echo "|---|---|---|---|"
    echo "| $(meanstd < "$W/cs-gcn.txt") | $(meanstd < "$W/cs-mlp.txt") | $(meanstd < "$W/cs-teacher.txt") | $(meanstd < "$W/cs-simgc.txt") |"
    echo
fi

if want speed && [ -f "$W/cora.tns" ]; then
echo "### Condensation speed against PyTorch (the same iteration, bench/simgc_torch.py)"
echo
echo "Cora, r = 0.5 (70 condensed nodes, 1433 features), 300 iterations without validation;"
echo "PyTorch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null || echo missing) on the same machine, same threads."
echo
echo "PyTorch as the official code computes the pair generator (features of all n^2 pairs into"
echo "the first layer), and with the per-node split netsmith uses (lib/graph/pge.h)."
echo
echo "| threads | netsmith ms/iteration | PyTorch, official | ratio | PyTorch, split | ratio |"
echo "|---|---|---|---|---|---|"
for th in 1 2; do
    NETSMITH_THREADS=$th "$BIN/sgc-condense" -q -r 0.5 --teacher-epochs 1 --val-every 0 -T 300 \
        -o "$W/speed.tns" "$W/cora.tns" > "$W/speed-$th.txt"
    ours=$(awk -F '\t' '$1 == "condense_seconds" {printf "%.2f", 1000 * $2 / 301}' "$W/speed-$th.txt")
    ratio() { awk -v a="$ours" -v b="$1" 'BEGIN {if (b > 0) printf "%.2fx", b / a; else print "n/a"}'; }
    official=$($PY bench/simgc_torch.py 70 1433 20 "$th" official 2>/dev/null | sed -n 's/.*: \([0-9.]*\) ms.*/\1/p')
    split=$($PY bench/simgc_torch.py 70 1433 100 "$th" split 2>/dev/null | sed -n 's/.*: \([0-9.]*\) ms.*/\1/p')
    echo "| $th | $ours | ${official:-n/a} | $(ratio "$official") | ${split:-n/a} | $(ratio "$split") |"
done
echo
fi

if want csbm; then
echo "### CSBM (graph-gen --preset arxiv sizes): condensation at growing N"
echo
echo "r 0.25 of 20 training nodes per class (40 classes: 200 condensed nodes), 300 iterations, no validation."
echo
echo "| nodes | edges | teacher s | optimisation s | total wall s | peak RSS MB |"
echo "|---|---|---|---|---|---|"
for n in $SIZES; do
    "$BIN/graph-gen" --preset arxiv --nodes "$n" --seed 1 -o "$W/csbm-$n.tns"
    edges=$("$BIN/tns-info" "$W/csbm-$n.tns" | head -1 | tr ' ' '\n' | sed -n 's/^graph.edges=//p')
    /usr/bin/time -f '%e %M' -o "$W/time-csbm-$n.txt" "$BIN/sgc-condense" -q --teacher sgc -r 0.25 -T 300 \
        --val-every 0 -o "$W/csbm-$n-small.tns" "$W/csbm-$n.tns" > "$W/report-csbm-$n.txt"
    read -r wall rss < "$W/time-csbm-$n.txt"
    echo "| $n | $edges | $(key teacher_seconds < "$W/report-csbm-$n.txt") | $(key condense_seconds < "$W/report-csbm-$n.txt") | $wall | $(awk -v k="$rss" 'BEGIN {printf "%.0f", k / 1024}') |"
done
echo
fi

if want fmnist && [ -f "$F/train-images-idx3-ubyte.gz" ]; then
    echo "### Fashion-MNIST kNN graph ($FM_IMAGES training images, k = 10, cosine; 20 labelled per class)"
    echo
    echo "GCN (hidden 64, 200 epochs) and MLP on the whole graph with its 200 labels; SimGC at r = 1"
    echo "(200 condensed nodes; lr-feat 0.05, lr-adj 0.01, 1000 iterations, validation every 200 with"
    echo "1000 epochs), judged as on Cora but with hidden 256 and 1000 epochs."
    echo
    "$BIN/img-read" -q "$F/train-images-idx3-ubyte.gz" |
        "$BIN/graph-knn" -q -k 10 --limit "$FM_IMAGES" --train-per-class 20 --val 500 \
            --test "$((FM_IMAGES - 700))" --seed 1 -o "$W/fmnist-knn.tns"
    : > "$W/fm-gcn.txt"; : > "$W/fm-mlp.txt"; : > "$W/fm-simgc.txt"; : > "$W/fm-time.txt"
    for s in $SEEDS; do
        "$BIN/gnn-train" -q --hidden 64 --epochs 200 --seed "$s" "$W/fmnist-knn.tns" | key test_acc >> "$W/fm-gcn.txt"
        "$BIN/gnn-train" -q -m mlp --hidden 64 --epochs 200 --seed "$s" "$W/fmnist-knn.tns" | key test_acc >> "$W/fm-mlp.txt"
        "$BIN/sgc-condense" -q -r 1 --seed "$s" --lr-feat 0.05 --lr-adj 0.01 -T 1000 --val-every 200 \
            --val-epochs 1000 -o "$W/fm-$s.tns" "$W/fmnist-knn.tns" > "$W/fm-report-$s.txt"
        awk -F '\t' '$1 ~ /_seconds$/ {s += $2} END {print s}' "$W/fm-report-$s.txt" >> "$W/fm-time.txt"
        "$BIN/gnn-train" -q --eval-graph "$W/fmnist-knn.tns" --hidden 256 --act none --dropout 0 --wd 0 \
            --lr 0.001 --epochs 1000 --lr-drop 0 --eval-every 100 --seed "$s" "$W/fm-$s.tns" |
            key test_acc >> "$W/fm-simgc.txt"
    done
    echo "| graph | nodes | model | test accuracy (%) |"
    echo "|---|---|---|---|"
    echo "| whole kNN graph | $FM_IMAGES | GCN | $(meanstd < "$W/fm-gcn.txt") |"
    echo "| whole kNN graph | $FM_IMAGES | MLP | $(meanstd < "$W/fm-mlp.txt") |"
    echo "| SimGC r = 1 | $(key nodes < "$W/fm-report-$(echo $SEEDS | cut -d' ' -f1).txt") | GCN | $(meanstd < "$W/fm-simgc.txt") |"
    echo
    echo "Condensation: $(mean < "$W/fm-time.txt") s per run (teacher, optimisation and validation)."
    echo
fi
