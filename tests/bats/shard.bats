#!/usr/bin/env bats
# --shard I/N (img-read, probe-embed, net-eval) and tns-cat --by-id: the shards
# of a stream, merged back, are the unsharded stream byte for byte.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# 37 images of 4x4 with labels 0..4, read in records of 5.
make_data() {
    make_idx "$T/i" 37 4 4
    make_idx_labels "$T/l" $(for k in $(seq 0 36); do echo $((k % 5)); done)
}

@test "img-read --shard: three shards merged by tns-cat --by-id are the whole stream, byte for byte" {
    make_data
    img-read -q --batch 5 "$T/i" "$T/l" > "$T/all.tns"
    for s in 0 1 2; do img-read -q --batch 5 --shard $s/3 "$T/i" "$T/l" > "$T/s$s.tns"; done
    # every sample in exactly one shard, chosen by id modulo 3
    [ "$(tns-info "$T/s1.tns" | head -1 | grep -o 'general.count=[0-9]*')" = "general.count=12" ]
    tns-info "$T/s1.tns" | head -1 | grep -q 'shard.index=1 shard.count=3 shard.batch=5'
    tns-cat --by-id "$T/s2.tns" "$T/s0.tns" "$T/s1.tns" | cmp - "$T/all.tns"
    # --limit applies before sharding, as in the whole stream
    img-read -q --batch 4 --limit 20 "$T/i" "$T/l" > "$T/lim.tns"
    for s in 0 1; do img-read -q --batch 4 --limit 20 --shard $s/2 "$T/i" "$T/l" > "$T/t$s.tns"; done
    tns-cat --by-id -o "$T/m.tns" "$T/t0.tns" "$T/t1.tns"
    cmp "$T/m.tns" "$T/lim.tns"
}

@test "net-eval --logits and probe-embed --shard merge back to the unsharded outputs" {
    make_data
    img-read -q --batch 5 "$T/i" "$T/l" > "$T/all.tns"
    net-init --arch mlp --like "$T/all.tns" -o "$T/m.tns"
    net-eval -q --model "$T/m.tns" --batch 4 --logits "$T/l.tns" "$T/all.tns" > "$T/r.txt"
    probe-embed -q --model "$T/m.tns" --batch 4 "$T/all.tns" > "$T/p.tns"
    for s in 0 1; do
        net-eval -q --model "$T/m.tns" --batch 4 --shard $s/2 --logits "$T/l$s.tns" "$T/all.tns" > "$T/r$s.txt"
        probe-embed -q --model "$T/m.tns" --batch 4 --shard $s/2 -o "$T/p$s.tns" "$T/all.tns"
    done
    tns-cat --by-id "$T/l0.tns" "$T/l1.tns" | cmp - "$T/l.tns"
    tns-cat --by-id "$T/p0.tns" "$T/p1.tns" | cmp - "$T/p.tns"
    # the shards' reports count their own samples
    [ "$(grep -h '^samples' "$T/r0.txt" "$T/r1.txt" | cut -f2 | tr '\n' ' ')" = "19 18 " ]
}

@test "batches fill across the records of a stream: logits come in records of --batch" {
    make_data
    img-read -q --batch 5 "$T/i" "$T/l" > "$T/all.tns"
    net-init --arch mlp --like "$T/all.tns" -o "$T/m.tns"
    net-eval -q --model "$T/m.tns" --batch 4 --logits "$T/l.tns" "$T/all.tns" > /dev/null
    [ "$(tns-info "$T/l.tns" | cut -f5 | tail -n +2 | sort | uniq -c | tr -s ' ' | tr '\n' ';')" = " 1 1x5; 9 4x5;" ]
}

@test "--shard and --by-id refuse what cannot be merged" {
    make_data
    run --separate-stderr img-read --shard 3/3 "$T/i" "$T/l"
    expect_failure 2 img-read "--shard: a shard is I/N with 0 <= I < N"
    run --separate-stderr net-eval --model x --shard 1 "$T/i"
    expect_failure 2 net-eval "--shard: a shard is I/N"
    for s in 0 1; do img-read -q --batch 5 --shard $s/2 "$T/i" "$T/l" > "$T/s$s.tns"; done
    img-read -q --batch 5 --shard 1/3 "$T/i" "$T/l" > "$T/t1.tns"
    run --separate-stderr tns-cat --by-id -o "$T/m.tns" "$T/s0.tns" "$T/s0.tns"
    expect_failure 1 tns-cat "are both shard 0/2"
    run --separate-stderr tns-cat --by-id -o "$T/m.tns" "$T/s0.tns" "$T/t1.tns"
    expect_failure 1 tns-cat "is of 2 shards"
    [ ! -e "$T/m.tns" ]
    # a shuffled shard is not in id order: refused, nothing written
    img-read -q --batch 5 --shuffle --shard 1/2 "$T/i" "$T/l" > "$T/u1.tns"
    run --separate-stderr tns-cat --by-id -o "$T/m.tns" "$T/s0.tns" "$T/u1.tns"
    expect_failure 1 tns-cat "--by-id merges inputs in ascending id order"
    [ ! -e "$T/m.tns" ]
    run --separate-stderr tns-cat --by-id --head 1 "$T/s0.tns"
    expect_failure 2 tns-cat "--by-id merges whole streams"
}
