# common.bash: set-up shared by the Bats suites. Programs come from $BINDIR
# (bin, or build/san/bin under `make check-sanitize`); each test gets a scratch
# directory in $T.
ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
BINDIR=${BINDIR:-bin}
case "$BINDIR" in /*) ;; *) BINDIR="$ROOT/$BINDIR" ;; esac
PATH="$BINDIR:$PATH"
FASHION=/usr/share/datasets/fashion-mnist
# Debian's python3 (with python3-msgpack and numpy) even where another python3 comes first.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
# Leak detection on whatever ASAN_OPTIONS says (later options win), and leaks
# exit 23: an error path that leaks fails its test instead of passing as exit 1.
# (tests/run.sh sets the same for the unit tests.)
case ${ASAN_OPTIONS:-} in *exitcode=23) ;; *)
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}abort_on_error=0:detect_leaks=1:exitcode=23" ;;
esac

setup() {
    T=$(mktemp -d)
}

teardown() {
    rm -rf "$T"
}

# A tiny IDX image file: N images of H x W, pixel (n, i) = (n * 37 + i * 11) % 256.
make_idx() { # path n h w
    $PY - "$@" <<'PY'
import struct, sys
path, n, h, w = sys.argv[1], *map(int, sys.argv[2:5])
with open(path, "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, h, w))
    f.write(bytes((k * 37 + i * 11) % 256 for k in range(n) for i in range(h * w)))
PY
}

make_idx_labels() { # path label...
    $PY - "$@" <<'PY'
import struct, sys
path, labels = sys.argv[1], list(map(int, sys.argv[2:]))
with open(path, "wb") as f:
    f.write(struct.pack(">II", 0x801, len(labels)))
    f.write(bytes(labels))
PY
}

make_ids() { # path n L vocab classes: n labelled texts of L token ids (f32), the largest id last
    $PY - "$@" <<'PY'
import msgpack, random, struct, sys
path, n, L, vocab, classes = sys.argv[1], *map(int, sys.argv[2:6])
rnd = random.Random(5)
rows = [[rnd.randrange(vocab - 1) for _ in range(rnd.randrange(1, L))] for _ in range(n)]
ids = [v for r in rows for v in (r + [vocab - 1] + [0] * (L - 1 - len(r)))]
with open(path, "wb") as f:
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "meta", "name": "",
                           "meta": {"general.labels": [f"c{k}" for k in range(classes)]}}))
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "tensor", "name": "images", "dtype": "f32",
                           "shape": [n, L], "data": struct.pack(f"<{n * L}f", *ids),
                           "meta": {"labels": [k % classes for k in range(n)], "ids": list(range(n))}},
                          use_bin_type=True))
PY
}

# Fails the test unless the last `run` failed with the given status, printed
# "PROG: ..." on stderr containing the text, and nothing on stdout.
expect_failure() { # status prog text
    [ "$status" -eq "$1" ] || { echo "status $status, expected $1; stderr: $stderr"; return 1; }
    case "$stderr" in "$2: "*"$3"*) ;; *) echo "stderr: $stderr"; return 1 ;; esac
    [ -z "$output" ] || { echo "stdout not empty: $output"; return 1; }
}

# Two communities of N/2 nodes (class = node id mod 2), edges with
# probability 0.05 inside a community and 0.005 across; D binary features,
# each 1 with probability 0.2 when its index has the node's parity, else 0.1
# (weak evidence on their own). Split: 20 train, 60 val, the rest test.
make_sbm() { # dir [n]
    mkdir -p "$1"
    awk -v n="${2:-200}" -v d=20 -v dir="$1" 'BEGIN {
        srand(7)
        for (i = 0; i < n; i++) for (j = i + 1; j < n; j++)
            if (rand() < (i % 2 == j % 2 ? 0.05 : 0.005)) print i, j > (dir "/edges.txt")
        for (i = 0; i < n; i++) {
            line = ""
            for (j = 0; j < d; j++) line = line (j ? " " : "") (rand() < (j % 2 == i % 2 ? 0.2 : 0.1))
            print line > (dir "/features.txt")
            print i % 2 > (dir "/labels.txt")
            print (i < 20 ? "train" : i < 80 ? "val" : "test") > (dir "/split.txt")
        }
    }'
    graph-import -u -n "${2:-200}" -f "$1/features.txt" -l "$1/labels.txt" -s "$1/split.txt" \
        -o "$1/g.tns" "$1/edges.txt"
}

# A copy of a graph stream whose graph.test is replaced: "val" makes it the
# validation split itself, a number K makes it every node from K on (the
# splits then overlap: a node may be in val and test).
overlap_split() { # in out val|K
    $PY - "$@" <<'PY'
import sys, msgpack
src, dst, how = sys.argv[1:4]
recs = list(msgpack.Unpacker(open(src, "rb"), raw=False))
val = next(r["data"] for r in recs if r.get("name") == "graph.val")
with open(dst, "wb") as out:
    for r in recs:
        if r.get("name") == "graph.test":
            r["data"] = val if how == "val" else bytes(int(i >= int(how)) for i in range(len(val)))
        out.write(msgpack.packb(r, use_bin_type=True))
PY
}

# The value of a key in a key<TAB>value result (gnn-train, sgc-condense).
key() { # key < result
    awk -F '\t' -v k="$1" '$1 == k {print $2}'
}

# 1 when a >= b (decimals).
ge() { awk -v a="$1" -v b="$2" 'BEGIN {print (a >= b) ? 1 : 0}'; }

# The largest difference between two models' f32 tensors, relative to each tensor's largest value.
worst_diff() { # model model (needs python3-msgpack and numpy)
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
