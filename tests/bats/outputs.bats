#!/usr/bin/env bats
# Outputs appear whole or not at all, and nothing is left behind: no temporary
# file (OUT.tmp.*) after a program is killed by SIGTERM or SIGINT mid-run or
# fails on an error path; every kind of output reports a full disk (standard
# output, -o on a device, --log); error paths free what they hold (LeakSanitizer
# under `make check-sanitize`).
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# 600 images of 3 classes, 8x8 gray (class k bright in band k).
toy_data() {
    $PY - "$T" <<'PY'
import struct, sys, random
out = sys.argv[1]
rnd = random.Random(1)
n = 600
labels = [rnd.randrange(3) for _ in range(n)]
pix = bytearray()
for k in labels:
    for y in range(8):
        for x in range(8):
            pix.append(max(0, min(255, (200 if y // 3 == k else 30) + rnd.randrange(-40, 41))))
with open(f"{out}/toy.idx", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 8, 8) + bytes(pix))
with open(f"{out}/toy.lab", "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + bytes(labels))
PY
    img-read -q "$T/toy.idx" "$T/toy.lab" > "$T/toy.tns"
}

# No temporary file anywhere under $T.
no_temporaries() {
    local left
    left=$(find "$T" -name '*.tmp.*')
    [ -z "$left" ] || { echo "left behind: $left"; return 1; }
}

# Starts a program in the background, waits until its output's temporary file
# exists (the program is mid-run), sends the signal, and checks that the program
# died of it and removed its temporary files. `env --default-signal` undoes the
# SIGINT that a shell without job control ignores in background jobs.
kill_midway() { # signal output command...
    local sig=$1 out=$2 pid status=0 i
    shift 2
    env --default-signal=INT,TERM "$@" &
    pid=$!
    for i in $(seq 1200); do
        compgen -G "$out.tmp.*" > /dev/null && break
        kill -0 $pid 2> /dev/null || { echo "$1 ended before its output was open"; return 1; }
        sleep 0.05
    done
    compgen -G "$out.tmp.*" > /dev/null || { echo "no temporary file for $out"; kill -KILL $pid; return 1; }
    sleep 0.5 # well into the work
    kill -s "$sig" $pid
    wait $pid || status=$?
    [ "$status" -eq $((128 + $(kill -l "$sig"))) ] || { echo "$1: status $status after SIG$sig"; return 1; }
    [ ! -e "$out" ] || { echo "$out exists"; return 1; }
    no_temporaries
}

@test "net-train killed by SIGTERM mid-training leaves no temporary file" {
    toy_data
    net-init --arch mlp --hidden 64 --like "$T/toy.tns" -o "$T/m0.tns"
    kill_midway TERM "$T/m.tns" net-train -q -m "$T/m0.tns" --epochs 1000000 -o "$T/m.tns" "$T/toy.tns"
}

@test "net-train --checkpoint interrupted by SIGINT leaves the last checkpoint and no temporary file" {
    toy_data
    net-init --arch mlp --hidden 64 --like "$T/toy.tns" -o "$T/m0.tns"
    kill_midway INT "$T/m.tns" net-train -q -m "$T/m0.tns" --epochs 1000000 -c "$T/ck.tns" -o "$T/m.tns" "$T/toy.tns"
    # a checkpoint written whole before the interrupt is a model
    if [ -e "$T/ck.tns" ]; then net-info "$T/ck.tns" > /dev/null; fi
}

@test "perm-align killed by SIGTERM while gathering activations leaves no temporary file" {
    toy_data
    for i in $(seq 30); do cat "$T/toy.tns"; done > "$T/big.tns"
    net-init --arch resnet20 --width 0.5 --like "$T/toy.tns" --seed 1 -o "$T/a.tns"
    kill_midway TERM "$T/s.tns" perm-align -q --method act --data "$T/big.tns" -o "$T/s.tns" "$T/a.tns" "$T/a.tns"
}

@test "a signal ignored at start stays ignored (nohup), and the output is written whole" {
    toy_data
    net-init --arch mlp --hidden 8 --like "$T/toy.tns" -o "$T/m0.tns"
    bash -c 'trap "" HUP; exec net-train -q -m "$1/m0.tns" --epochs 30 -o "$1/m.tns" "$1/toy.tns"' _ "$T" &
    pid=$!
    for i in $(seq 600); do compgen -G "$T/m.tns.tmp.*" > /dev/null && break; sleep 0.05; done
    kill -HUP $pid 2> /dev/null || true
    wait $pid
    net-info "$T/m.tns" > /dev/null
    no_temporaries
}

@test "error paths leave no temporary file: img-select with a class the stream lacks, and others" {
    toy_data
    run --separate-stderr img-select -c 42 -o "$T/s.tns" "$T/toy.tns"
    expect_failure 1 img-select "class 42 is beyond the stream's 3 classes"
    [ ! -e "$T/s.tns" ]
    # inputs that break after the output is open
    head -c 100000 "$T/toy.tns" > "$T/cut.tns"
    run --separate-stderr tns-cat -o "$T/c.tns" "$T/toy.tns" "$T/cut.tns"
    [ "$status" -eq 1 ]
    run --separate-stderr tns-tsv --flatten -o "$T/t.tsv" "$T/cut.tns"
    [ "$status" -eq 1 ]
    run --separate-stderr img-write -f tar -o "$T/x.tar" "$T/cut.tns"
    [ "$status" -eq 1 ]
    run --separate-stderr img-write -f sheet --limit 1000 -o "$T/x.png" "$T/cut.tns"
    [ "$status" -eq 1 ]
    net-init --arch mlp --hidden 8 --like "$T/toy.tns" -o "$T/m0.tns"
    run --separate-stderr net-eval -q -m "$T/m0.tns" --logits "$T/l.tns" "$T/cut.tns"
    [ "$status" -eq 1 ]
    run --separate-stderr probe-embed -q -m "$T/m0.tns" -o "$T/e.tns" "$T/cut.tns"
    [ "$status" -eq 1 ]
    run --separate-stderr net-train -q -m "$T/m0.tns" --lr 1e5 --optim sgd --epochs 3 -o "$T/m.tns" "$T/toy.tns"
    [ "$status" -eq 1 ]
    [ ! -e "$T/c.tns" ] && [ ! -e "$T/t.tsv" ] && [ ! -e "$T/x.tar" ] && [ ! -e "$T/l.tns" ] && [ ! -e "$T/m.tns" ]
    no_temporaries
}

@test "tns-cat --tail N keeps a ring as large as the records seen, not N slots" {
    toy_data
    tns-cat --tail 100000000000 -o "$T/all.tns" "$T/toy.tns"
    cmp "$T/toy.tns" "$T/all.tns"
    tns-cat --tail 1000000000000000000 "$T/toy.tns" | cmp - "$T/toy.tns"
    # the ring still wraps when N is smaller than the stream: the last 2 of 3 batches
    [ "$(tns-cat --tail 2 "$T/toy.tns" | tns-info | cut -f6 | tr '\n' ' ')" = \
      "$(tns-info "$T/toy.tns" | sed 2d | cut -f6 | tr '\n' ' ')" ]
    for i in 1 2 3 4 5 6 7; do cat "$T/toy.tns"; done > "$T/seven.tns"
    [ "$(tns-cat --no-meta --tail 17 "$T/seven.tns" | tns-info | wc -l)" -eq 17 ]
    [ "$(tns-cat --no-meta --tail 21 "$T/seven.tns" | md5sum)" = "$(tns-cat --no-meta "$T/seven.tns" | md5sum)" ]
    no_temporaries
}

@test "a full disk fails every kind of output: standard output, -o on a device, --log" {
    [ -w /dev/full ] || skip "no /dev/full"
    toy_data
    net-init --arch mlp --hidden 8 --like "$T/toy.tns" -o "$T/m0.tns"
    # standard output of a tool
    run --separate-stderr bash -c "tns-tsv --flatten '$T/toy.tns' > /dev/full"
    expect_failure 1 tns-tsv "write failed"
    run --separate-stderr bash -c "net-eval -q -m '$T/m0.tns' '$T/toy.tns' > /dev/full"
    expect_failure 1 net-eval "writing output failed"
    # -o FILE on a device
    run --separate-stderr img-write -f tar -o /dev/full "$T/toy.tns"
    expect_failure 1 img-write "No space left on device"
    run --separate-stderr net-eval -q -m "$T/m0.tns" --logits /dev/full "$T/toy.tns"
    [ "$status" -eq 1 ]
    run --separate-stderr net-train -q -m "$T/m0.tns" --epochs 1 -o /dev/full "$T/toy.tns"
    expect_failure 1 net-train "write failed"
    # --log
    run --separate-stderr net-train -q -m "$T/m0.tns" --epochs 1 --log /dev/full -o "$T/m.tns" "$T/toy.tns"
    expect_failure 1 net-train "/dev/full: write failed"
    [ ! -e "$T/m.tns" ]
    seq 0 599 | awk '{ print $1 "\ta photo" }' > "$T/cap.tsv"
    run --separate-stderr vlm-train -q --arch "mlp --hidden 8" -E 8 --text-dim 8 -e 1 -b 100 --captions "$T/cap.tsv" \
        --log /dev/full -o "$T/v.tns" "$T/toy.tns"
    expect_failure 1 vlm-train "/dev/full: write failed"
    [ ! -e "$T/v.tns" ]
    no_temporaries
}
