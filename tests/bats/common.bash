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
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}

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

# Fails the test unless the last `run` failed with the given status, printed
# "PROG: ..." on stderr containing the text, and nothing on stdout.
expect_failure() { # status prog text
    [ "$status" -eq "$1" ] || { echo "status $status, expected $1; stderr: $stderr"; return 1; }
    case "$stderr" in "$2: "*"$3"*) ;; *) echo "stderr: $stderr"; return 1 ;; esac
    [ -z "$output" ] || { echo "stdout not empty: $output"; return 1; }
}
