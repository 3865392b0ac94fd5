#!/usr/bin/env bats
# net-train and vlm-train over MPI with 2 ranks (mpirun, one thread each): the
# model after N steps is single-process training's with the same global batch,
# to float reduction tolerance (relative 1e-5 of each tensor's largest value;
# measured 3e-7 after 20 steps of net-train, 4e-7 after 20 of vlm-train);
# checkpoints and --resume; a rank that dies fails the job with no model
# written. Skipped when Open MPI is absent or the programs were built without it.
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
mpi3() { mpirun --oversubscribe --allow-run-as-root -np 3 -x OMP_NUM_THREADS -x NETSMITH_THREADS "$@"; }

# worst_diff's figure is below the bound $2 (tolerance): prints it either way.
below() {
    echo "worst relative difference $1"
    $PY -c "import sys; sys.exit(0 if $1 < $2 else 1)"
}

# A vlm-train model's vocabulary, a word a line.
vocab_of() {
    $PY -c 'import msgpack, sys; print("\n".join(next(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))["meta"]["vlm.vocab"]))' "$1"
}

# A 4-class stream of the same images with class names, a caption per image
# (3 phrasings) and a concept bank (animal, vehicle) for generated captions.
vlm_data() {
    make_idx_labels "$T/l4" $(for k in $(seq 0 299); do echo $((k % 4)); done)
    printf 'cat\ndog\ncar\nship\n' > "$T/names"
    img-read -q --batch 64 --classes "$T/names" "$T/i" "$T/l4" > "$T/v.tns"
    for k in $(seq 0 299); do
        name=$(sed -n "$((k % 4 + 1))p" "$T/names")
        case $((k % 3)) in 0) echo "$k	a photo of a $name." ;; 1) echo "$k	the $name" ;; *) echo "$k	a $name, small" ;; esac
    done > "$T/cap.tsv"
    printf 'class\tanimal\tvehicle\ncat\t1\t0\ndog\t1\t0\ncar\t0\t1\nship\t0\t1\n' > "$T/attr.tsv"
    concept-bank -q -a "$T/attr.tsv" -o "$T/bank.tns" "$T/v.tns"
}

@test "2 ranks train the model one process trains with the same global batch (relative 1e-5)" {
    net-train -q --model "$T/m0.tns" --epochs 2 --batch 32 --optim adam -o "$T/one.tns" "$T/d.tns"
    mpi2 "$BINDIR/net-train" -q --model "$T/m0.tns" --epochs 2 --batch 32 --optim adam -o "$T/two.tns" "$T/d.tns"
    ! cmp -s "$T/m0.tns" "$T/two.tns" # it trained
    below "$(worst_diff "$T/one.tns" "$T/two.tns")" 1e-5
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

@test "vlm-train: 2 (and 3) ranks train the model one process trains with the same global batch (relative 1e-5)" {
    ldd "$BINDIR/vlm-train" 2> /dev/null | grep -q libmpi || skip "vlm-train built without MPI"
    vlm_data
    # fixed captions, bag-of-words text tower, AdamW: 20 steps of 30 pairs
    bow=(-q --arch "mlp --hidden 16" -E 8 --text-dim 8 -e 2 -b 30 --seed 1 --captions "$T/cap.tsv")
    vlm-train "${bow[@]}" -o "$T/one.tns" "$T/v.tns"
    mpi2 "$BINDIR/vlm-train" "${bow[@]}" -o "$T/two.tns" "$T/v.tns"
    [ "$(vocab_of "$T/one.tns")" = "$(vocab_of "$T/two.tns")" ]
    below "$(worst_diff "$T/one.tns" "$T/two.tns")" 1e-5
    mpi2 "$BINDIR/vlm-train" "${bow[@]}" -o "$T/again.tns" "$T/v.tns"
    cmp "$T/two.tns" "$T/again.tns"
    # captions drawn from a concept bank (by stream position, whatever the rank
    # count), the vocabulary gathered from every rank, a transformer text tower;
    # SGD, since Adam turns the rounding noise of a gradient that is zero in
    # exact arithmetic (the attention's key bias) into full-size steps
    tr=(-q --arch "mlp --hidden 16" -E 8 --text-tower transformer --text-dim 8 --context 8 --text-depth 1
        --text-heads 2 -e 2 -b 30 --seed 1 --optim sgd --lr 0.05 --concepts "$T/bank.tns")
    vlm-train "${tr[@]}" -o "$T/one.tns" "$T/v.tns"
    mpi2 "$BINDIR/vlm-train" "${tr[@]}" -o "$T/two.tns" "$T/v.tns"
    mpi3 "$BINDIR/vlm-train" "${tr[@]}" -o "$T/three.tns" "$T/v.tns"
    ! cmp -s "$T/one.tns" "$T/two.tns"
    below "$(worst_diff "$T/one.tns" "$T/two.tns")" 1e-5
    below "$(worst_diff "$T/one.tns" "$T/three.tns")" 1e-5
}

@test "vlm-train: a rank that dies fails the job clearly; no model is written" {
    ldd "$BINDIR/vlm-train" 2> /dev/null | grep -q libmpi || skip "vlm-train built without MPI"
    vlm_data
    head -c 20000 "$T/v.tns" > "$T/cut.tns"
    args=(-q --arch mlp -E 8 -e 2 -b 30 --captions "$T/cap.tsv" --log "$T/log.tsv" -o "$T/out.tns")
    run --separate-stderr mpirun --oversubscribe --allow-run-as-root \
        -np 1 "$BINDIR/vlm-train" "${args[@]}" "$T/v.tns" : -np 1 "$BINDIR/vlm-train" "${args[@]}" "$T/cut.tns"
    [ "$status" -ne 0 ]
    [[ "$stderr" == *"vlm-train (rank 1 of 2): "*"cut.tns"*"truncated"* ]]
    [ ! -e "$T/out.tns" ]
    [ "$(ls "$T" | grep -c tmp)" -eq 0 ]
}
