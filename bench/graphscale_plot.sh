#!/bin/sh
# graphscale_plot.sh TSV > plot.svg: bench/graphscale.sh's table (its
# OUTDIR/graphscale.tsv) as two log-log panels against the node count N:
# processor time (user seconds) and peak memory (MB) of graph-gen, gnn-train
# and sgc-condense. Plain awk, no plotting package.
#
#   sh bench/graphscale_plot.sh /tmp/netsmith-bench/graphscale/graphscale.tsv > bench/graphscale.svg
set -eu
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: graphscale_plot.sh GRAPHSCALE.TSV > plot.svg" >&2; exit 2; }
awk -F '\t' -v title="${TITLE:-arxiv-like CSBM (graph-gen --preset arxiv), one thread}" '
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
{
    n++; N[n] = $col["nodes"]
    split("gen gnn sgc", prog, " ")
    for (p = 1; p <= 3; p++) {
        T[prog[p], n] = $col[prog[p] "_user"]; M[prog[p], n] = $col[prog[p] "_mb"]
    }
}
function lg(v) { return log(v > 0 ? v : 1e-3) / log(10) }
function fmt(e) { v = 10 ^ e; return v >= 1e6 ? v / 1e6 "M" : v >= 1e3 ? v / 1e3 "k" : v >= 1 ? v "" : v "" }
# panel k (0 time, 1 memory) at x0: axes, decade ticks, one line per program
function panel(k, x0, ylabel,    p, i, lo, hi, e, x, y, path, v) {
    # decades of the values, at least one
    lo = 99; hi = -99
    for (p = 1; p <= 3; p++) for (i = 1; i <= n; i++) {
        v = lg(k ? M[prog[p], i] : T[prog[p], i]); lo = v < lo ? v : lo; hi = v > hi ? v : hi
    }
    lo = int(lo + 10) - 10; hi = int(hi + 10) - 9; if (lo == hi) hi++
    printf "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", x0, T0, PW, PH
    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x0 + PW / 2, T0 - 8, ylabel
    for (e = lo; e <= hi; e++) {
        y = T0 + PH - (e - lo) / (hi - lo) * PH
        printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, x0 + PW, y, y
        printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", x0 - 4, y + 4, fmt(e)
    }
    for (e = XLO; e <= XHI; e++) {
        x = x0 + (e - XLO) / (XHI - XLO) * PW
        printf "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, x, T0, T0 + PH
        printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x, T0 + PH + 16, fmt(e)
    }
    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">nodes N</text>\n", x0 + PW / 2, T0 + PH + 34
    for (p = 1; p <= 3; p++) {
        path = ""
        for (i = 1; i <= n; i++) {
            x = x0 + (lg(N[i]) - XLO) / (XHI - XLO) * PW
            y = T0 + PH - (lg(k ? M[prog[p], i] : T[prog[p], i]) - lo) / (hi - lo) * PH
            path = path (i == 1 ? "M" : " L") sprintf("%.1f %.1f", x, y)
            printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, y, colour[p]
        }
        printf "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", path, colour[p]
    }
}
END {
    W = 820; H = 410; PW = 330; PH = 270; T0 = 50
    colour[1] = "#999999"; colour[2] = "#1f77b4"; colour[3] = "#d62728"
    name[1] = "graph-gen"; name[2] = "gnn-train (GCN)"; name[3] = "sgc-condense (SimGC)"
    XLO = 4; XHI = 6.3
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H
    printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n<text x=\"60\" y=\"18\" font-size=\"13\">%s</text>\n", W, H, title
    panel(0, 60, "processor time, user seconds (log)")
    panel(1, 460, "peak memory, MB (log)")
    for (p = 1; p <= 3; p++) { # the legend, under the panels
        x = 60 + 260 * (p - 1)
        printf "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n", x, x + 24, H - 14, H - 14, colour[p]
        printf "<text x=\"%d\" y=\"%d\">%s</text>\n", x + 30, H - 10, name[p]
    }
    printf "</svg>\n"
}' "$1"
