#!/bin/sh
# torch_import.sh [DIR]: how long bringing a torchvision ResNet-18 (random
# weights, 46 MB) into netsmith takes, against torch itself, on the same
# files, back to back: tns-from-torch on the .pt and on the .safetensors,
# tns-to-torch both ways, and torch.load(weights_only=True) +
# load_state_dict in Python 3 (interpreter and torch import included, then
# excluded). Best of 5 wall-clock runs each; Markdown for bench/RESULTS.md.
# Needs python3-torch and python3-torchvision. Run under the CPU lock:
#   flock LOCKFILE sh bench/torch_import.sh
set -eu
BIN=${BIN:-bin}
W=${1:-/tmp/netsmith-torch-import}
PY=/usr/bin/python3
mkdir -p "$W"
export OMP_NUM_THREADS=2 NETSMITH_THREADS=2

$PY - "$W" <<'PY'
import sys, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet18()
torch.save(m.state_dict(), f"{sys.argv[1]}/r18.pt")
PY
"$BIN/tns-from-torch" --arch resnet18 -o "$W/r18.tns" "$W/r18.pt"
"$BIN/tns-to-torch" -o "$W/r18.safetensors" "$W/r18.tns"

best() { # command... -> best wall seconds of 5
    b=""
    for i in 1 2 3 4 5; do
        t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
        t=$(echo "$t1 $t0" | awk '{printf "%.3f", $1 - $2}')
        b=$(echo "$t ${b:-$t}" | awk '{print ($1 < $2) ? $1 : $2}')
    done
    echo "$b"
}

inside=$($PY - "$W" <<'PY'
import sys, time, torch, torchvision
torch.set_num_threads(2)
m = torchvision.models.resnet18()
best = 1e9
for _ in range(5):
    t = time.perf_counter()
    m.load_state_dict(torch.load(f"{sys.argv[1]}/r18.pt", weights_only=True))
    best = min(best, time.perf_counter() - t)
print(f"{best:.3f}")
PY
)

echo "| step (torchvision resnet18, 46 MB) | seconds |"
echo "|---|---|"
echo "| tns-from-torch --arch resnet18 r18.pt | $(best "$BIN/tns-from-torch" --arch resnet18 -o "$W/a.tns" "$W/r18.pt") |"
echo "| tns-from-torch --arch resnet18 r18.safetensors | $(best "$BIN/tns-from-torch" --arch resnet18 -o "$W/b.tns" "$W/r18.safetensors") |"
echo "| tns-to-torch -o r18.safetensors | $(best "$BIN/tns-to-torch" -o "$W/c.safetensors" "$W/r18.tns") |"
echo "| tns-to-torch -o r18.pt | $(best "$BIN/tns-to-torch" -o "$W/c.pt" "$W/r18.tns") |"
echo "| python3: import torch, torchvision; load_state_dict(torch.load(weights_only=True)) | $(best $PY -c "import sys, torch, torchvision; torchvision.models.resnet18().load_state_dict(torch.load('$W/r18.pt', weights_only=True))") |"
echo "| the same, inside Python (imports and model made beforehand) | $inside |"
