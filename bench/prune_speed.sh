#!/bin/sh
# prune_speed.sh: is a pruned model really faster? A ResNet-20 (the built-in at
# its standard width: 16/32/64 channels) for Fashion-MNIST (1x28x28), pruned by
# l2 (global, 10% protection) to 2x and 4x MACs reduction; for the base and
# each pruned model: MACs, parameters, net-eval's inference images/s over the
# same IMAGES test images (batch 128, OMP_NUM_THREADS=2, the best of 3 wall
# times, reading the data included), and the same architecture built in
# PyTorch from the model stream (bench/prune_torch.py: batch 128, 2 threads,
# best of 3). Both sides run back to back in one call: run it under the CPU
# lock. Weights are net-init's (speed does not depend on them).
#
#   flock LOCKFILE sh bench/prune_speed.sh [OUT]
set -eu
B=${BIN:-bin}
OUT=${1:-/tmp/prune-speed}
N=${IMAGES:-2048}
F=${F:-/usr/share/datasets/fashion-mnist}
export OMP_NUM_THREADS=2
mkdir -p "$OUT"
$B/img-read -q --classes examples/fashion-mnist.classes "$F/t10k-images-idx3-ubyte.gz" |
    $B/img-select -q -c 0-9 -n "$N" -o "$OUT/test.tns" -
$B/net-init --arch resnet20 --like "$OUT/test.tns" --seed 1 -o "$OUT/base.tns"
for x in 2 4; do $B/net-prune -q -m "$OUT/base.tns" -c l2 -x $x -o "$OUT/x$x.tns" > "$OUT/x$x.txt"; done
now() { date +%s.%N; }
echo "# $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg), $N images, batch 128, 2 threads"
printf 'model\tmacs\tparams\tmacs_speedup\tnetsmith_img_s\tnetsmith_speedup\ttorch_params\ttorch_img_s\ttorch_speedup\n'
/usr/bin/python3 bench/prune_torch.py --images "$N" --batch 128 --threads 2 --repeats 3 \
    "$OUT/base.tns" "$OUT/x2.tns" "$OUT/x4.tns" > "$OUT/torch.tsv"
for m in base x2 x4; do
    best=
    for r in 1 2 3; do
        t0=$(now)
        $B/net-eval -q -b 128 -m "$OUT/$m.tns" "$OUT/test.tns" > /dev/null
        t=$(echo "$(now) - $t0" | bc -l)
        best=$(echo "$t" "${best:-$t}" | awk '{print ($1 < $2 ? $1 : $2)}')
    done
    echo "$m $best $($B/net-info "$OUT/$m.tns" | awk '$1=="macs"{m=$2} $1=="params"{p=$2} END{print m, p}')"
done > "$OUT/netsmith.txt"
paste -d' ' "$OUT/netsmith.txt" "$OUT/torch.tsv" | tr '\t' ' ' | awk -v n="$N" '
    NR == 1 { m0 = $3; s0 = n / $2; t0 = $7 }
    { printf "%s\t%d\t%d\t%.2f\t%.0f\t%.2f\t%d\t%.0f\t%.2f\n", $1, $3, $4, m0 / $3, n / $2, n / $2 / s0, $6, $7, $7 / t0 }'
