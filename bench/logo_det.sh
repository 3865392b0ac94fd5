#!/bin/sh
# logo_det.sh: logo-det's figures for bench/RESULTS.md: mAP of a trained
# detector on a test stream (logo-det eval: per-class AP, VOC and COCO means)
# and detection images/s on 2 threads, netsmith then PyTorch with the same
# weights (bench/logo_det_torch.py), back to back, twice each.
#   sh bench/logo_det.sh MODEL TEST.tns CLASSES WIDTH
# Run it under the CPU lock on a shared machine.
set -e
BIN=${BIN:-bin}
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
model=$1 test=$2 k=$3 w=$4
$BIN/logo-det eval -q -m "$model" "$test"
for round in 1 2; do
  $BIN/logo-det detect -m "$model" -o /dev/null "$test" 2>&1 | grep images/s
  out=$(/usr/bin/python3 bench/logo_det_torch.py "$model" "$test" "$k" "$w" 2 64)
  echo "$out" | sed -n 1p
done
echo "$out" | sed -n 2p
