#!/usr/bin/python3
"""lsa_scipy.py: netsmith's ns_lsa_solve against scipy.optimize.linear_sum_assignment.

Times scipy (maximize, best of 3) on the same random uniform n x n matrices that
build/bench/lsa_speed makes, and that program (also best of 3), alternating the
two for --rounds rounds (default 3) and keeping each one's best. Checks that
both reach the same optimal total (to 1e-9 relative) and the same assignment
(an FNV-1a hash of the column given to each row), and prints a Markdown table
with the ratio. Exits 1 when they differ.

The generator is counter-based, so numpy repeats it exactly: entry k
(row-major, from 0) of the matrix for size n is
splitmix64(n + (k + 1) * 0x9e3779b97f4a7c15) >> 11, times 2^-53.

    /usr/bin/python3 bench/lsa_scipy.py [--bin build/bench/lsa_speed] [--rounds 3] [N ...]

Needs Debian's python3-scipy (apt-get install -y python3-scipy).
"""
import argparse
import re
import subprocess
import sys
import time

import numpy as np

try:
    import scipy
    from scipy.optimize import linear_sum_assignment
except ImportError:
    sys.exit("lsa_scipy.py: scipy is missing: apt-get install -y python3-scipy")


def uniform_matrix(n):
    with np.errstate(over="ignore"):
        k = np.arange(1, n * n + 1, dtype=np.uint64)
        z = np.uint64(n) + k * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return ((z >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(n, n)


def fnv1a(cols):
    h = 0xCBF29CE484222325
    for c in cols:
        h = ((h ^ (int(c) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def run_ours(binary, n):
    """(seconds, total, assignment hash) from one run of lsa_speed (best of 3)."""
    try:
        out = subprocess.run([binary, str(n)], check=True, capture_output=True,
                             text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("lsa_scipy.py: running %s failed (%s); build it with make %s" %
                 (binary, e, binary))
    m = re.search(r"lsa n=(\d+) maximize: ([0-9.]+) s .* total=(\S+) assignment=(\w+)", out)
    if not m:
        sys.exit("lsa_scipy.py: unexpected output from %s: %r" % (binary, out))
    return float(m.group(2)), float(m.group(3)), int(m.group(4), 16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/bench/lsa_speed")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate the two this many times and keep each one's best "
                         "(steadier on a shared machine)")
    ap.add_argument("sizes", nargs="*", type=int, default=[512, 2048])
    args = ap.parse_args()

    print("| n | netsmith s | scipy %s s | scipy / netsmith | same optimum |" %
          scipy.__version__)
    print("|---|---|---|---|---|")
    ok = True
    for n in args.sizes:
        cost = uniform_matrix(n)
        t_ours = t_scipy = float("inf")
        for _ in range(max(1, args.rounds)):
            t, total_ours, hash_ours = run_ours(args.bin, n)
            t_ours = min(t_ours, t)
            for _ in range(3):
                t0 = time.perf_counter()
                rows, cols = linear_sum_assignment(cost, maximize=True)
                t_scipy = min(t_scipy, time.perf_counter() - t0)
        total = float(cost[rows, cols].sum())
        same_total = abs(total - total_ours) <= 1e-9 * abs(total)
        same_assign = fnv1a(cols[np.argsort(rows)]) == hash_ours
        ok = ok and same_total and same_assign
        print("| %d | %.4f | %.4f | %.2f | total %s (%.12f), assignment %s |" %
              (n, t_ours, t_scipy, t_scipy / t_ours, "yes" if same_total else "NO", total,
               "yes" if same_assign else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
