#!/usr/bin/env bats
# net-init, net-info, net-train, net-eval: models from built-ins, training that
# learns, determinism and exact resume, and refusals of bad models and data.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# 600 training and 200 test images of 3 classes, 8x8 gray, easy to tell apart:
# class k is bright in band k of the image (plus noise).
toy_data() {
    $PY - "$T" <<'PY'
import struct, sys, random
out = sys.argv[1]
def write(name, n, seed):
    rnd = random.Random(seed)
    labels = [rnd.randrange(3) for _ in range(n)]
    pix = bytearray()
    for k in labels:
        for y in range(8):
            for x in range(8):
                v = 200 if y // 3 == k else 30
                pix.append(max(0, min(255, v + rnd.randrange(-40, 41))))
    with open(f"{out}/{name}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 8, 8) + bytes(pix))
    with open(f"{out}/{name}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(labels))
write("train", 600, 1)
write("t10k", 200, 2)
PY
    img-read -q "$T/train-images-idx3-ubyte" > "$T/train.tns"
    img-read -q "$T/t10k-images-idx3-ubyte" > "$T/test.tns"
}

@test "net-init builds every architecture; net-info counts what PyTorch counts" {
    for a in mlp lenet vgg resnet20 resnet18; do
        net-init --arch $a --in 1x28x28 --classes 10 -o "$T/$a.tns"
    done
    # torchvision-style totals: ResNet-20 0.27M, ResNet-18 (CIFAR stem) 11.17M, LeNet-5 61.7k
    [ "$(net-info -t "$T/resnet20.tns" | awk '$1=="params"{print $2}')" -eq 272186 ]
    [ "$(net-info -t "$T/resnet18.tns" | awk '$1=="params"{print $2}')" -eq 11172810 ]
    [ "$(net-info -t "$T/lenet.tns" | awk '$1=="params"{print $2}')" -eq 61706 ]
    net-info "$T/resnet20.tns" | grep -q $'^layer3.2.conv2\tconv2d\tlayer3.2.relu1\t64x7x7\t36864\t'
    # the deeper CIFAR ResNets for 3x32x32, 10 classes, as torch counts the same
    # modules (1x1 conv+BN shortcuts): 466,906, 661,338, 855,770
    for a in resnet32:466906 resnet44:661338 resnet56:855770; do
        net-init --arch "${a%:*}" --in 3x32x32 --classes 10 -o "$T/r.tns"
        [ "$(net-info -t "$T/r.tns" | awk '$1=="params"{print $2}')" -eq "${a#*:}" ]
    done
    net-info "$T/r.tns" | grep -q $'^layer3.8.conv2\tconv2d\tlayer3.8.relu1\t64x8x8\t36864\t'
    [ "$(net-info "$T/r.tns" | grep -c $'\tconv2d\t')" -eq 57 ]
}

@test "net-init --arch vit: the ViT of examples/specs/vit.cfg; it learns the toy task" {
    net-init --arch vit --in 1x28x28 --classes 10 -o "$T/vit.tns"
    net-init --spec "$ROOT/examples/specs/vit.cfg" -o "$T/vit-spec.tns"
    # torch: ViT(patch 7, dim 64, depth 4, heads 4) of bench/vit_torch.py has 205,066 parameters
    [ "$(net-info -t "$T/vit.tns" | awk '$1=="params"{print $2}')" -eq 205066 ]
    [ "$(net-info "$T/vit.tns" | head -39 | cut -f1-5)" = "$(net-info "$T/vit-spec.tns" | head -39 | cut -f1-5)" ]
    net-info "$T/vit.tns" | grep -q $'^encoder.layers.3.self_attn\tattention\tencoder.layers.3.norm1\t17x64\t16640\t'
    run --separate-stderr net-init --arch vit --in 1x28x28 --classes 10 --heads 5
    expect_failure 1 net-init "heads (5) divide the 64 features"
    run --separate-stderr net-init --arch vgg --in 1x28x28 --classes 10 --patch 4
    expect_failure 2 net-init "--patch and --heads are for vit"
    toy_data
    net-init --arch vit --patch 4 --width 0.25 --depth 1 --heads 2 --like "$T/train.tns" -o "$T/v0.tns"
    net-train -q -m "$T/v0.tns" --epochs 5 --optim adamw --lr 0.003 --batch 32 -o "$T/v1.tns" "$T/train.tns"
    acc=$(net-eval -q -m "$T/v1.tns" "$T/test.tns" | awk '$1=="accuracy"{print $2}')
    awk -v a="$acc" 'BEGIN{exit !(a >= 0.95)}' || { echo "accuracy $acc"; return 1; }
}

@test "net-init --arch text-transformer: the text tower of examples/specs/text-transformer.cfg" {
    net-init --arch text-transformer --in 16 --vocab 1000 --classes 64 -o "$T/text.tns"
    net-init --spec "$ROOT/examples/specs/text-transformer.cfg" -o "$T/text-spec.tns"
    [ "$(net-info -t "$T/text.tns" | awk '$1=="params"{print $2}')" -eq 169216 ]
    [ "$(net-info "$T/text.tns" | head -23 | cut -f1-5)" = "$(net-info "$T/text-spec.tns" | head -23 | cut -f1-5)" ]
    net-info "$T/text.tns" | grep -q $'^pool\ttoken_pool\tln_final,input\t64\t'
    net-info "$T/text.tns" | grep -q $'^encoder.layers.1.self_attn\tattention\tencoder.layers.1.norm1\t16x64\t16640\t'
    run --separate-stderr net-init --arch text-transformer --in 16 --classes 64
    expect_failure 2 net-init "--vocab is for text-transformer, which needs it"
    run --separate-stderr net-init --arch vit --in 1x28x28 --classes 10 --vocab 5
    expect_failure 2 net-init "--vocab is for text-transformer, which needs it"
    run --separate-stderr net-init --arch text-transformer --in 1x28x28 --vocab 50 --classes 8
    expect_failure 1 net-init "needs a vector input of L token ids"
}

@test "net-init --hidden: each bad size is named (lib/cli ns_parse_sizes)" {
    net-init --arch mlp --in 4 --classes 2 --hidden 8,6 -o "$T/m.tns"
    [ "$(net-info "$T/m.tns" | awk '$1 == "fc2" {print $4}')" = 6 ]
    for bad in "8,0|not a positive integer (0)" "-1|not a positive integer (-1)" "8,,6|an empty size" \
               "12x|not a positive integer (12x)" "1,2,3,4,5,6,7,8,9|more than 8 sizes" \
               "99999999999|99999999999 is too large"; do
        run --separate-stderr net-init --arch mlp --in 4 --classes 2 --hidden "${bad%%|*}" -o "$T/bad.tns"
        expect_failure 2 net-init "--hidden: ${bad#*|}"
        [ ! -e "$T/bad.tns" ]
    done
}

@test "net-init is seeded" {
    a=$(net-init --arch lenet --in 1x28x28 --classes 10 --seed 3 | md5sum)
    b=$(net-init --arch lenet --in 1x28x28 --classes 10 --seed 3 | md5sum)
    c=$(net-init --arch lenet --in 1x28x28 --classes 10 --seed 4 | md5sum)
    [ "$a" = "$b" ] && [ "$a" != "$c" ]
}

@test "net-train learns a toy task; net-eval reports it" {
    toy_data
    net-init --arch mlp --hidden 32 --like "$T/train.tns" -o "$T/m0.tns"
    net-train -q -m "$T/m0.tns" --epochs 5 --lr 0.1 --batch 32 -o "$T/m1.tns" "$T/train.tns"
    run --separate-stderr net-eval -q -m "$T/m1.tns" "$T/test.tns"
    [ "$status" -eq 0 ]
    acc=$(echo "$output" | awk '$1=="accuracy"{print $2}')
    awk -v a="$acc" 'BEGIN{exit !(a >= 0.95)}' || { echo "accuracy $acc"; return 1; }
    [ "$(echo "$output" | grep -c '^class')" -eq 3 ]
}

@test "same seed, same model bytes; a resumed run equals the uninterrupted one" {
    toy_data
    net-init --arch lenet --like "$T/train.tns" -o "$T/m0.tns" 2>/dev/null || net-init --arch vgg --depth 2 --width 0.5 --like "$T/train.tns" -o "$T/m0.tns"
    net-train -q -m "$T/m0.tns" --epochs 3 --batch 64 --crop-pad 1 --flip -o "$T/a.tns" "$T/train.tns"
    net-train -q -m "$T/m0.tns" --epochs 3 --batch 64 --crop-pad 1 --flip -o "$T/b.tns" "$T/train.tns"
    cmp "$T/a.tns" "$T/b.tns"
    net-train -q -m "$T/m0.tns" --epochs 3 --stop-after 1 --batch 64 --crop-pad 1 --flip -c "$T/ck.tns" -o /dev/null "$T/train.tns"
    net-train -q -m "$T/ck.tns" --resume --epochs 3 --batch 64 --crop-pad 1 --flip -o "$T/c.tns" "$T/train.tns"
    cmp "$T/a.tns" "$T/c.tns"
}

@test "net-eval writes logits and probabilities streams" {
    toy_data
    net-init --arch mlp --like "$T/train.tns" -o "$T/m0.tns"
    net-eval -q -m "$T/m0.tns" --logits "$T/l.tns" --probs "$T/p.tns" "$T/test.tns" > /dev/null
    [ "$(tns-info "$T/l.tns" | tail -1 | cut -f3,5)" = $'logits\t200x3' ]
    # probabilities sum to 1
    tns-tsv "$T/p.tns" | awk '{s=$1+$2+$3; if (s < 0.9999 || s > 1.0001) exit 1}'
}

@test "per-sample weights and --train-only head" {
    toy_data
    net-init --arch mlp --like "$T/train.tns" -o "$T/m0.tns"
    seq 0 599 | awk '{print 1}' | tns-tsv -r -n w > "$T/ones.tns"
    run --separate-stderr net-train -q -m "$T/m0.tns" --epochs 1 -w "$T/ones.tns" -o "$T/x.tns" "$T/train.tns"
    expect_failure 1 net-train "has no ids"
    net-train -q -m "$T/m0.tns" --epochs 1 --train-only head -o "$T/h.tns" "$T/train.tns"
    # the hidden layer is unchanged, the head is not
    [ "$(tns-cat -n fc1.weight "$T/m0.tns" | tns-tsv -f | md5sum)" = "$(tns-cat -n fc1.weight "$T/h.tns" | tns-tsv -f | md5sum)" ]
    [ "$(tns-cat -n fc.weight "$T/m0.tns" | tns-tsv -f | md5sum)" != "$(tns-cat -n fc.weight "$T/h.tns" | tns-tsv -f | md5sum)" ]
}

@test "models and data that do not fit are refused with a message" {
    toy_data
    net-init --arch mlp --in 1x28x28 --classes 10 -o "$T/big.tns"
    run --separate-stderr net-eval -m "$T/big.tns" "$T/test.tns"
    expect_failure 1 net-eval "samples of 1x8x8, the model takes 1x28x28"
    run --separate-stderr net-train -m "$T/train.tns" -o "$T/x.tns" "$T/train.tns"
    expect_failure 1 net-train "not a model: tensor images (record 1) comes before any graph record"
    [ ! -e "$T/x.tns" ]
    net-init --arch mlp --like "$T/train.tns" -o "$T/m0.tns"
    head -c 3000 "$T/m0.tns" > "$T/cut.tns"
    run --separate-stderr net-info "$T/cut.tns"
    expect_failure 1 net-info "truncated"
    # --like reads the whole stream: a truncated one is an error, and no model is written
    head -c $(($(stat -c %s "$T/train.tns") - 100)) "$T/train.tns" > "$T/cut-data.tns"
    run --separate-stderr net-init --arch mlp --like "$T/cut-data.tns" -o "$T/m1.tns"
    expect_failure 1 net-init "cut-data.tns: record"
    [[ "$stderr" == *"truncated record at end of stream"* ]] && [ ! -e "$T/m1.tns" ]
    run --separate-stderr net-init --arch resnet21 --in 1x8x8 --classes 3
    expect_failure 2 net-init "unknown architecture (resnet21)"
    run --separate-stderr net-init --arch mlp
    expect_failure 2 net-init "give --like DATA, or both --in and --classes"
    run --separate-stderr net-train -m "$T/m0.tns" --schedule bogus "$T/train.tns"
    expect_failure 2 net-train "--schedule"
    run --separate-stderr net-train -m "$T/m0.tns" --lr 1e9 "$T/train.tns"
    [ "$status" -eq 2 ]
}

@test "a diverging run stops with a message and leaves no model" {
    toy_data
    net-init --arch mlp --like "$T/train.tns" -o "$T/m0.tns"
    run --separate-stderr net-train -q -m "$T/m0.tns" --lr 1e5 --optim sgd --epochs 3 -o "$T/x.tns" "$T/train.tns"
    expect_failure 1 net-train "the loss is"
    [ ! -e "$T/x.tns" ]
}

@test "net-init --spec builds a custom graph; net-info --spec writes it back" {
    net-init --spec "$ROOT/examples/specs/cnn.cfg" -o "$T/cnn.tns"
    [ "$(net-info -t "$T/cnn.tns" | awk '$1=="params"{print $2}')" -eq 20538 ]
    net-init --arch resnet20 --in 3x16x16 --classes 5 -o "$T/r.tns"
    net-info --spec "$T/r.tns" > "$T/r.cfg"
    net-init --spec "$T/r.cfg" -o "$T/r2.tns"
    [ "$(net-info "$T/r.tns" | head -73 | cut -f1-5)" = "$(net-info "$T/r2.tns" | head -73 | cut -f1-5)" ]
    printf '[input]\nshape = 1x8x8\n[conv2d]\nout = 4\nstrid = 2\n' > "$T/bad.cfg"
    run --separate-stderr net-init --spec "$T/bad.cfg"
    expect_failure 1 net-init "bad.cfg:5:"
    run --separate-stderr net-init --spec "$T/bad.cfg" --arch mlp
    expect_failure 2 net-init "give one of --arch and --spec"
}

@test "data whose classes differ from the model's is refused" {
    toy_data
    net-init --arch mlp --like "$T/train.tns" -o "$T/m0.tns"
    printf 'a\nb\nc\n' > "$T/names"
    img-read -q --classes "$T/names" "$T/t10k-images-idx3-ubyte" > "$T/named.tns"
    run --separate-stderr net-eval -m "$T/m0.tns" "$T/named.tns"
    expect_failure 1 net-eval "class 0 is 'a' in the data but '0' in the model"
}

@test "net-eval --json is valid JSON with names, per-class accuracy and the confusion matrix" {
    toy_data
    net-init --arch mlp --like "$T/train.tns" -o "$T/m0.tns"
    net-eval -q --json --confusion -m "$T/m0.tns" "$T/test.tns" | $PY -c '
import json, sys
r = json.loads(sys.stdin.read())
assert r["samples"] == 200 and len(r["classes"]) == 3 and len(r["confusion"]) == 3, r
assert sum(map(sum, r["confusion"])) == 200'
    run --separate-stderr net-eval -m "$T/m0.tns" --logits - "$T/test.tns"
    expect_failure 2 net-eval "--logits and --probs need a file"
}

@test "net-info --groups shows the coupled channel groups" {
    net-init --arch resnet20 --in 1x28x28 --classes 10 -o "$T/r.tns"
    run --separate-stderr net-info --groups "$T/r.tns"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "14 channel groups, 2 fixed" ]
    [[ "$output" == *"made by conv1, layer1.0.conv2, layer1.1.conv2, layer1.2.conv2;"* ]]
}
