#!/usr/bin/env bats
# tns-from-torch and tns-to-torch from the command line: what is inferred
# (classes, widths, depths), what is refused (a wrong architecture names the
# tensor missing, left over or misshapen; usage errors exit 2), normalisation
# and class names. With Debian's python3-torch (not on CI; the committed
# fixtures and test_torch_io carry the main checks there): every exported
# fixture loads in torch (weights_only=True, strict) and gives torch's
# logits again; a pruned model and a merged one go back through --spec and
# examples/torch_from_spec.py with net-eval's logits; and, with
# python3-torchvision, a random torchvision resnet18 (46 MB, made in the
# test's directory) comes in with torch's logits and goes back out.
bats_require_minimum_version 1.5.0
load common

F="$ROOT/tests/ref/torch_io"

need_torch() {
    $PY -c 'import torch, msgpack, numpy' 2> /dev/null || skip "python3-torch missing"
}

@test "the classes and the width come from the checkpoint's shapes" {
    tns-from-torch --arch resnet20 --in 3x16x16 -o "$T/m.tns" "$F/resnet20.pt"
    net-info "$T/m.tns" | awk '$1=="conv1"{print $4}' | grep -qx 4x16x16
    net-info "$T/m.tns" | awk '$1=="fc"{print $4}' | grep -qx 10
    tns-from-torch --arch vgg --in 3x16x16 -o "$T/v.tns" "$F/vgg.safetensors"
    net-info "$T/v.tns" | grep -q '^features.conv3'
    tns-from-torch --arch mlp --in 20 -o "$T/p.tns" "$F/mlp.pt"
    net-info "$T/p.tns" | awk '$1=="fc2"{print $4}' | grep -qx 12
}

@test "every built-in goes out and back in, its sizes read from the shapes" {
    while read -r arch builtin opts; do
        in=$(echo "$opts" | sed 's/.*--in \([^ ]*\).*/\1/')
        # shellcheck disable=SC2086
        net-init --arch $builtin $opts --seed 2 -o "$T/a.tns"
        tns-to-torch -o "$T/a.safetensors" "$T/a.tns"
        tns-from-torch --arch "$arch" --in "$in" -o "$T/b.tns" "$T/a.safetensors"
        cmp <(tns-cat --no-meta --kind tensor "$T/a.tns") <(tns-cat --no-meta --kind tensor "$T/b.tns")
        diff <(net-info "$T/a.tns" | grep -v '^arch') <(net-info "$T/b.tns" | grep -v '^arch')
    done <<'EOF'
vit vit --in 3x28x28 --classes 5 --depth 2 --patch 7
vgg vgg --in 3x16x16 --classes 4 --depth 6 --width 0.5
mlp mlp --in 12 --classes 3 --hidden 8,6
resnet18-cifar resnet18 --in 3x16x16 --classes 3 --width 0.25
resnet20 resnet20 --in 1x8x8 --classes 2 --width 2
resnet56 resnet56 --in 3x8x8 --classes 3 --width 0.5
lenet lenet --in 1x28x28 --classes 10
EOF
}

@test "a wrong architecture names the tensor that is missing, left over or misshapen" {
    run -1 tns-from-torch --arch vgg --in 3x16x16 --num-classes 10 "$F/resnet20.pt"
    [[ "$output" == *"the checkpoint lacks features.conv0.weight (16x3x3x3), and more"* ]]
    run -1 tns-from-torch --arch resnet20 --in 3x16x16 --width 0.5 "$F/resnet20.pt"
    [[ "$output" == *"conv1.weight is 4x3x3x3 in the checkpoint, the model needs 8x3x3x3"* ]]
    run -1 tns-from-torch --arch mlp --in 20 --hidden 16 "$F/mlp.pt"
    [[ "$output" == *"the checkpoint's fc2.weight (12x16) is not in the model"* ]]
    run -1 tns-from-torch --arch resnet20 --in 1x16x16 "$F/resnet20.pt"
    [[ "$output" == *"conv1.weight is 4x3x3x3"* ]]
}

@test "tns-from-torch --hidden: a bad size is named" {
    run --separate-stderr tns-from-torch --arch mlp --in 20 --hidden 16,0 "$F/mlp.pt"
    expect_failure 2 tns-from-torch "--hidden: not a positive integer (0)"
    run --separate-stderr tns-from-torch --arch mlp --in 20 --hidden 16,,12 "$F/mlp.pt"
    expect_failure 2 tns-from-torch "--hidden: an empty size in the list (16,,12)"
}

@test "a left-over tensor is named" {
    printf '[input]\nshape = 20\n[flatten]\n[linear fc1]\nout = 16\n[relu]\n[linear fc2]\nout = 12\n[relu]\n' > "$T/a.cfg"
    run -1 tns-from-torch --spec "$T/a.cfg" "$F/mlp.pt"
    [[ "$output" == *"the checkpoint's fc.weight (10x12) is not in the model, nor are others"* ]]
}

@test "--key finds the state_dict in a checkpoint dict, and module. goes by itself" {
    run -1 tns-from-torch --arch lenet --in 1x16x16 "$F/lenet.pt"
    [[ "$output" == *"its keys: 'epoch', 'best_acc', 'arch', 'state_dict'"*"--key"* ]]
    run -1 tns-from-torch --arch lenet --in 1x16x16 --key model "$F/lenet.pt"
    [[ "$output" == *"no key 'model' in the checkpoint"* ]]
    tns-from-torch --arch lenet --in 1x16x16 --key state_dict -o "$T/l.tns" "$F/lenet.pt"
    run -1 tns-from-torch --arch lenet --in 1x16x16 --key state_dict/x "$F/lenet.pt"
    [[ "$output" == *"is not a dict"* || "$output" == *"no key 'x'"* ]]
}

@test "normalisation and class names go into the model" {
    seq 0 9 | sed 's/^/class /' > "$T/names"
    tns-from-torch --arch resnet20 --in 3x16x16 --mean 0.5,0.4,0.3 --std 0.2 --classes "$T/names" \
        -o "$T/m.tns" "$F/resnet20.safetensors"
    tns-info --json "$T/m.tns" | head -1 | grep -q '"class 9"'
    tns-info --json "$T/m.tns" | head -1 | grep -q '0.40000'
    seq 1 3 > "$T/three"
    run -1 tns-from-torch --arch resnet20 --in 3x16x16 --classes "$T/three" "$F/resnet20.pt"
    [[ "$output" == *"3 class names for a model of 10 outputs"* ]]
}

@test "usage errors exit 2" {
    run -2 tns-from-torch "$F/mlp.pt"
    [[ "$output" == *"give one of --arch and --spec"* ]]
    run -2 tns-from-torch --arch resnet50 "$F/mlp.pt"
    [[ "$output" == *"unknown architecture (resnet50)"* ]]
    run -2 tns-from-torch --arch mlp "$F/mlp.pt"
    [[ "$output" == *"needs --in"* ]]
    run -2 tns-from-torch --arch mlp --in 20 --mean 0.5 "$F/mlp.pt"
    [[ "$output" == *"--mean and --std together"* ]]
    run -2 tns-to-torch "$F/mlp.pt"
    [[ "$output" == *"-o FILE"* ]]
    run -2 tns-to-torch --format onnx -o x "$F/mlp.pt"
    [[ "$output" == *"safetensors or pt (onnx)"* ]]
    tns-from-torch --help | grep -q -- '--key'
    tns-to-torch --help | grep -q -- '--spec'
}

@test "tns-to-torch writes the graph as a spec that net-init reads back" {
    tns-from-torch --arch resnet20 --in 3x16x16 -o "$T/m.tns" "$F/resnet20.pt"
    tns-to-torch --spec "$T/m.cfg" -o "$T/m.safetensors" "$T/m.tns"
    net-init --spec "$T/m.cfg" -o "$T/again.tns"
    diff <(net-info "$T/m.tns" | grep -v '^arch') <(net-info "$T/again.tns" | grep -v '^arch')
    tns-from-torch --spec "$T/m.cfg" -o "$T/m2.tns" "$T/m.safetensors"
    cmp <(tns-cat --no-meta --kind tensor "$T/m.tns") <(tns-cat --no-meta --kind tensor "$T/m2.tns")
}

@test "torch: exported fixtures load with weights_only and strict names, and give torch's logits" {
    need_torch
    for c in resnet20 vgg lenet mlp vit; do
        case $c in mlp) in=20 ;; lenet) in=1x16x16 ;; *) in=3x16x16 ;; esac
        key=""
        [ "$c" = lenet ] && key="--key state_dict"
        [ "$c" = vit ] && key="--heads 2"
        # shellcheck disable=SC2086
        tns-from-torch --arch $c --in $in $key -o "$T/$c.tns" "$F/$c.pt"
        tns-to-torch -o "$T/$c.pt" "$T/$c.tns"
        tns-to-torch -o "$T/$c.safetensors" "$T/$c.tns"
    done
    $PY - "$ROOT/tests/ref" "$T" <<'PY'
import sys, torch, msgpack
sys.path.insert(0, sys.argv[1])
from gen_engine_ref import VGG, LeNet, ResNet20
from gen_torch_io import MLP, read_safetensors
from gen_transformer_ref import ViT
t = sys.argv[2]
refs = {r["name"]: r for r in msgpack.Unpacker(open(sys.argv[1] + "/torch_io/torch_io.tns", "rb"), raw=False)}
def tensor(name):
    r = refs[name]
    return torch.frombuffer(bytearray(r["data"]), dtype=torch.float32).reshape(r["shape"])
models = {"resnet20": lambda: ResNet20(3, 10, 0.25), "vgg": lambda: VGG(3, 16, 10, 4, 0.5),
          "lenet": lambda: LeNet(1, 16, 10), "mlp": lambda: MLP(20, [16, 12], 10),
          "vit": lambda: ViT(3, 16, 4, 16, 1, 2, 10)}
for name, make in models.items():
    for sd in (torch.load(f"{t}/{name}.pt", weights_only=True), read_safetensors(f"{t}/{name}.safetensors")):
        m = make()
        m.load_state_dict(sd, strict=True)
        m.eval()
        with torch.no_grad():
            y = m(tensor(f"{name}/input"))
        err = (y - tensor(f"{name}/logits")).abs().max().item()
        assert err < 1e-5, (name, err)
PY
}

@test "torch: a pruned model goes back through --spec and examples/torch_from_spec.py" {
    need_torch
    tns-from-torch --arch resnet20 --in 3x16x16 -o "$T/m.tns" "$F/resnet20.pt"
    net-prune -q -m "$T/m.tns" -o "$T/p.tns" --ratio 0.5 > /dev/null
    tns-to-torch --spec "$T/p.cfg" -o "$T/p.safetensors" "$T/p.tns"
    $PY - "$ROOT/tests/ref/torch_io/torch_io.tns" "$T/x.tns" <<'PY'
import sys, msgpack
r = next(r for r in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if r["name"] == "resnet20/input")
r = dict(r, name="images", meta={"labels": [0, 1, 2, 3], "ids": [0, 1, 2, 3]})
open(sys.argv[2], "wb").write(msgpack.packb(r, use_bin_type=True))
PY
    net-eval --model "$T/p.tns" --logits "$T/l.tns" "$T/x.tns" > /dev/null
    $PY - "$ROOT/examples" "$T" <<'PY'
import sys, torch, msgpack
sys.path.insert(0, sys.argv[1])
from torch_from_spec import SpecNet, load_safetensors
t = sys.argv[2]
net = SpecNet(open(f"{t}/p.cfg").read())
net.load_state_dict(load_safetensors(f"{t}/p.safetensors"), strict=True)
net.eval()
def first(path, kind="tensor"):
    r = next(r for r in msgpack.Unpacker(open(path, "rb"), raw=False) if r["kind"] == kind and r.get("data"))
    return torch.frombuffer(bytearray(r["data"]), dtype=torch.float32).reshape(r["shape"])
with torch.no_grad():
    y = net(first(f"{t}/x.tns"))
full = sum(p.numel() for p in net.parameters())
err = (y - first(f"{t}/l.tns")).abs().max().item()
assert err < 1e-4, err
print(full, err)
PY
}

@test "torch: a merged model (perm-align of an import and a new model) goes back through --spec" {
    need_torch
    $PY - "$T/d.tns" <<'PY'
import sys, msgpack, numpy as np
x = np.random.default_rng(0).standard_normal((32, 3, 16, 16)).astype("<f4")
recs = [{"fmt": "tns", "ver": 1, "kind": "meta", "name": "meta",
         "meta": {"general.labels": [str(i) for i in range(10)]}},
        {"fmt": "tns", "ver": 1, "kind": "tensor", "name": "images", "dtype": "f32", "shape": list(x.shape),
         "meta": {"labels": [i % 10 for i in range(32)], "ids": list(range(32))}, "data": x.tobytes()}]
open(sys.argv[1], "wb").write(b"".join(msgpack.packb(r, use_bin_type=True) for r in recs))
PY
    tns-from-torch --arch resnet20 --in 3x16x16 -o "$T/a.tns" "$F/resnet20.pt"
    net-init --arch resnet20 --in 3x16x16 --classes 10 --width 0.25 --seed 5 -o "$T/b.tns"
    perm-align -q -M zip --data "$T/d.tns" -o "$T/m.tns" "$T/a.tns" "$T/b.tns" > /dev/null
    net-eval --model "$T/m.tns" --logits "$T/l.tns" "$T/d.tns" > /dev/null
    tns-to-torch --spec "$T/m.cfg" -o "$T/m.safetensors" "$T/m.tns"
    $PY - "$ROOT/examples" "$T" <<'PY'
import sys, torch, msgpack
sys.path.insert(0, sys.argv[1])
from torch_from_spec import SpecNet, load_safetensors
t = sys.argv[2]
net = SpecNet(open(f"{t}/m.cfg").read())
net.load_state_dict(load_safetensors(f"{t}/m.safetensors"), strict=True)
net.eval()
def first(path):
    r = next(r for r in msgpack.Unpacker(open(path, "rb"), raw=False) if r["kind"] == "tensor" and r.get("data"))
    return torch.frombuffer(bytearray(r["data"]), dtype=torch.float32).reshape(r["shape"])
with torch.no_grad():
    y = net(first(f"{t}/d.tns"))
err = (y - first(f"{t}/l.tns")).abs().max().item()
assert err < 1e-4, err
PY
}

@test "torch: torchvision resnet18 comes in with torch's logits and goes back out" {
    need_torch
    $PY -c 'import torchvision' 2> /dev/null || skip "python3-torchvision missing"
    $PY - "$T" <<'PY'
import sys, torch, torchvision, msgpack
t = sys.argv[1]
g = torch.Generator().manual_seed(3)
torch.manual_seed(3)
m = torchvision.models.resnet18()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        with torch.no_grad():
            mod.running_mean.copy_(0.1 * torch.randn(mod.num_features, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(mod.num_features, generator=g))
m.eval()
torch.save(m.state_dict(), f"{t}/r18.pt")
x = torch.randn(2, 3, 64, 64, generator=g)
with torch.no_grad():
    y = m(x)
rec = {"fmt": "tns", "ver": 1, "kind": "tensor", "name": "images", "dtype": "f32", "shape": list(x.shape),
       "meta": {"labels": [0, 1], "ids": [0, 1]}, "data": x.numpy().tobytes()}
open(f"{t}/x.tns", "wb").write(msgpack.packb(rec, use_bin_type=True))
open(f"{t}/y.bin", "wb").write(y.numpy().tobytes())
PY
    # the data is already normalised: mean 0, std 1 keeps net-eval from doing it again
    tns-from-torch --arch resnet18 --in 3x64x64 --mean 0 --std 1 -o "$T/r18.tns" "$T/r18.pt"
    net-eval --model "$T/r18.tns" --logits "$T/l.tns" "$T/x.tns" > /dev/null
    tns-to-torch -o "$T/back.pt" "$T/r18.tns"
    $PY - "$T" <<'PY'
import sys, torch, torchvision, msgpack, numpy as np
t = sys.argv[1]
y = np.frombuffer(open(f"{t}/y.bin", "rb").read(), dtype="<f4").reshape(2, 1000)
r = next(r for r in msgpack.Unpacker(open(f"{t}/l.tns", "rb"), raw=False) if r["kind"] == "tensor")
l = np.frombuffer(r["data"], dtype="<f4").reshape(2, 1000)
assert np.abs(l - y).max() <= 1e-4 * (np.abs(y).max() + 1), np.abs(l - y).max()
m = torchvision.models.resnet18()
m.load_state_dict(torch.load(f"{t}/back.pt", weights_only=True), strict=True)
m.eval()
x = torch.frombuffer(bytearray(next(r for r in msgpack.Unpacker(open(f"{t}/x.tns", "rb"), raw=False))["data"]),
                     dtype=torch.float32).reshape(2, 3, 64, 64)
with torch.no_grad():
    assert (m(x).numpy() == y).all()
PY
}
