#!/bin/sh
# Large graphs: graph-gen's arxiv-like CSBM (40 classes, 128 gaussian features,
# mean degree about 14) at growing N, up to ogbn-arxiv's 169,343 nodes and a
# million; for each, wall and user time and peak RSS (/usr/bin/time) of
#   graph-gen --preset arxiv            the graph itself
#   gnn-train (GCN, hidden 256)         EPOCHS full-batch epochs, one evaluation
#   sgc-condense --teacher sgc -r 0.25  SGC_T (300) iterations, no validation
# one thread each, printed as Markdown (copied into bench/RESULTS.md by hand) and
# kept as OUTDIR/graphscale.tsv (for bench/graphscale_plot.sh). Run it alone:
# `flock LOCKFILE sh bench/graphscale.sh` on a shared machine.
#
#   SIZES="25000 169343 1000000" EPOCHS=20 SGC_T=300 sh bench/graphscale.sh [OUTDIR]
# A quick look (each program well under a minute): EPOCHS=2 SGC_T=20.
set -eu
BIN=${BIN:-bin}
W=${1:-/tmp/netsmith-bench/graphscale}
SIZES=${SIZES:-25000 169343 1000000}
EPOCHS=${EPOCHS:-20}
SGC_T=${SGC_T:-300}
[ -x /usr/bin/time ] || { echo "graphscale.sh: needs GNU time: apt-get install time" >&2; exit 1; }
mkdir -p "$W"
# one thread: on a shared machine, spinning OpenMP threads measure the neighbours
export NETSMITH_THREADS=${NETSMITH_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=passive
key() { awk -F '\t' -v k="$1" '$1 == k {print $2}'; }

# timed NAME PROGRAM ARGS...: runs it, stdout to W/NAME.out; sets wall, user, rss (MB)
timed() {
    name=$1
    shift
    /usr/bin/time -f '%e %U %M' -o "$W/$name.time" "$@" > "$W/$name.out"
    read -r wall user rss < "$W/$name.time"
    rss=$(awk -v k="$rss" 'BEGIN {printf "%.0f", k / 1024}')
}

echo "| nodes | stored edges | graph-gen s (wall/user), MB | gnn-train $EPOCHS epochs s (wall/user), MB | per epoch ms/1k nodes (user) | sgc-condense s (wall/user), MB | teacher s | optimisation s |"
echo "|---|---|---|---|---|---|---|---|"
printf 'nodes\tedges\tgen_wall\tgen_user\tgen_mb\tgnn_wall\tgnn_user\tgnn_mb\tsgc_wall\tsgc_user\tsgc_mb\n' > "$W/graphscale.tsv"
for n in $SIZES; do
    g="$W/csbm-$n.tns"
    timed gen-$n "$BIN/graph-gen" -q --preset arxiv --nodes "$n" --seed 1 -o "$g"
    gen="$wall/$user, $rss"
    edges=$("$BIN/tns-info" "$g" | head -1 | tr ' ' '\n' | sed -n 's/^graph.edges=//p')
    tsv="$n\t$edges\t$wall\t$user\t$rss"
    timed gnn-$n "$BIN/gnn-train" -q --epochs "$EPOCHS" --eval-every "$EPOCHS" --seed 1 "$g"
    gnn="$wall/$user, $rss"
    tsv="$tsv\t$wall\t$user\t$rss"
    per=$(awk -v u="$user" -v e="$EPOCHS" -v n="$n" 'BEGIN {printf "%.2f", u * 1000 / e / (n / 1000)}')
    timed sgc-$n "$BIN/sgc-condense" -q --teacher sgc -r 0.25 -T "$SGC_T" --val-every 0 -o "$W/small-$n.tns" "$g"
    printf '%b\t%s\t%s\t%s\n' "$tsv" "$wall" "$user" "$rss" >> "$W/graphscale.tsv"
    echo "| $n | $edges | $gen | $gnn | $per | $wall/$user, $rss | $(key teacher_seconds < "$W/sgc-$n.out") | $(key condense_seconds < "$W/sgc-$n.out") |"
    rm -f "$g"
done
