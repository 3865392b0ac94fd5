#!/usr/bin/env bats
# net-train over MPI with 2 ranks (mpirun, one thread each): the model after N
# steps is single-process training's with the same global batch, to float
# reduction tolerance (relative 1e-5 of each tensor's largest value; measured
# 3e-7 after 20 steps); checkpoints and --resume; a rank that dies fails the
# job with no model written. Skipped when Open MPI is absent or net-train was
# built without it.
bats_require_minimum_version 1.5.0
load common

setup() {
    T=$(mktemp -d)
    command -v mpirun > /dev/null || skip "Open MPI (openmpi-bin) not installed"
    ldd "$BINDIR/net-train" 2> /dev/null | grep -q libmpi || skip "net-train built without MPI"
    $PY -c 'import msgpack, numpy' 2> /dev/null || skip "python3-msgpack or python3-numpy not installed"
    export OMP_NUM_THREADS=1 NETSMITH_THREADS=1
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
    make_idx "$T/i" 300 8 8
    make_idx_labels "$T/l" $(for k in $(seq 0 299); do echo $((k * 7 % 10)); done)
    img-read -q --batch 64 "$T/i" "$T/l" > "$T/d.tns"
    net-init --arch mlp --like "$T/d.tns" -o "$T/m0.tns"
}

mpi2() { mpirun --oversubscribe --allow-run-as-root -np 2 -x OMP_NUM_THREADS -x NETSMITH_THREADS "$@"; }

# The largest difference between two models' f32 tensors, relative to each tensor's largest value.
worst_diff() {
    $PY - "$1" "$2" <<'PY'
import msgpack, numpy as np, sys
def load(p):
    with open(p, "rb") as f:
        return {r["name"]: np.frombuffer(r["data"], "<f4") for r in msgpack.Unpacker(f, raw=False)
                if r.get("kind") == "tensor" and r.get("dtype") == "f32"}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and a
print(max(float(np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-12)) for k in a))
PY
}

@test "2 ranks train the model one process trains with the same global batch (relative 1e-5)" {
    net-train -q --model "$T/m0.tns" --epochs 2 --batch 32 --optim adam -o "$T/one.tns" "$T/d.tns"
    mpi2 "$BINDIR/net-train" -q --model "$T/m0.tns" --epochs 2 --batch 32 --optim adam -o "$T/two.tns" "$T/d.tns"
    ! cmp -s "$T/m0.tns" "$T/two.tns" # it trained
    d=$(worst_diff "$T/one.tns" "$T/two.tns")
    echo "worst relative difference $d"
    $PY -c "import sys; sys.exit(0 if $d < 1e-5 else 1)"
    # a job run twice gives the same bits (the sums go in rank order)
    mpi2 "$BINDIR/net-train" -q --model "$T/m0.tns" --epochs 2 --batch 32 --optim adam -o "$T/again.tns" "$T/d.tns"
    cmp "$T/two.tns" "$T/again.tns"
}

@test "2 ranks: rank 0 writes the checkpoints; --resume continues exactly" {
    mpi2 "$BINDIR/net-train" -q --model "$T/m0.tns" --epochs 3 --batch 32 -o "$T/full.tns" "$T/d.tns"
    mpi2 "$BINDIR/net-train" -q --model "$T/m0.tns" --epochs 3 --stop-after 1 --batch 32 -c "$T/ck.tns" -o "$T/part.tns" "$T/d.tns"
    [ "$(ls "$T" | grep -c ck)" -eq 1 ] # one checkpoint, no temporary left
    mpi2 "$BINDIR/net-train" -q --model "$T/ck.tns" --resume --epochs 3 --batch 32 -o "$T/resumed.tns" "$T/d.tns"
    cmp "$T/full.tns" "$T/resumed.tns"
}

@test "a rank that dies fails the job clearly; no model is written, the checkpoint stays whole" {
    head -c 20000 "$T/d.tns" > "$T/cut.tns"
    net-train -q --model "$T/m0.tns" --epochs 1 --batch 32 -c "$T/ck.tns" -o /dev/null "$T/d.tns"
    sum=$(cksum < "$T/ck.tns")
    # rank 1 reads a truncated stream and exits 1 while rank 0 waits for it
    run --separate-stderr mpirun --oversubscribe --allow-run-as-root \
        -np 1 "$BINDIR/net-train" -q --model "$T/m0.tns" --epochs 2 --batch 32 -c "$T/ck.tns" -o "$T/out.tns" "$T/d.tns" : \
        -np 1 "$BINDIR/net-train" -q --model "$T/m0.tns" --epochs 2 --batch 32 -c "$T/ck.tns" -o "$T/out.tns" "$T/cut.tns"
    [ "$status" -ne 0 ]
    [[ "$stderr" == *"net-train (rank 1 of 2): "*"cut.tns"*"truncated"* ]]
    [ ! -e "$T/out.tns" ]
    [ "$(cksum < "$T/ck.tns")" = "$sum" ]
    [ "$(ls "$T" | grep -c tmp)" -eq 0 ]
}

@test "--sync-bn: 2 ranks train a batch-norm ResNet as one process does (relative 1e-4); per-rank statistics do not" {
    net-init --arch resnet20 --width 0.25 --like "$T/d.tns" -o "$T/r.tns"
    net-train -q --model "$T/r.tns" --epochs 1 --batch 50 --lr 0.01 -o "$T/one.tns" "$T/d.tns"
    mpi2 "$BINDIR/net-train" -q --sync-bn --model "$T/r.tns" --epochs 1 --batch 50 --lr 0.01 -o "$T/sync.tns" "$T/d.tns"
    mpi2 "$BINDIR/net-train" -q --model "$T/r.tns" --epochs 1 --batch 50 --lr 0.01 -o "$T/own.tns" "$T/d.tns"
    d=$(worst_diff "$T/one.tns" "$T/sync.tns")
    o=$(worst_diff "$T/one.tns" "$T/own.tns")
    echo "synchronised $d, per rank $o"
    $PY -c "import sys; sys.exit(0 if $d < 1e-4 and $o > 1e-2 else 1)"
    run --separate-stderr net-train --sync-bn --train-only head --model "$T/r.tns" "$T/d.tns"
    [ "$status" -eq 2 ]
}

@test "ranks whose share of a batch varies in size run the convolutions safely (scratch for any batch up to --batch)" {
    # batch 20 over 2 ranks: shares of 4 to 16 samples, the sizes that used to overflow
    net-init --arch resnet20 --width 0.25 --like "$T/d.tns" -o "$T/r.tns"
    mpi2 "$BINDIR/net-train" -q --model "$T/r.tns" --epochs 1 --batch 20 --lr 0.01 -o "$T/out.tns" "$T/d.tns"
    [ -s "$T/out.tns" ]
}
