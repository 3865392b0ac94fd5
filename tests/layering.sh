#!/bin/sh
# layering.sh [LIBDIR]: checks the rules of lib/ (default ./lib) and prints one
# line "file:line: what is wrong" per breach; exits 1 when there is any.
#
# The layers, lowest first; a folder may include its own headers and those of
# the folders below it, never above or beside:
#
#   base < stream < nn < {cav, merge, graph, prune, detect, cct, interop}
#   (the last are siblings: one folder per method family, plus interop for
#   other frameworks' files; none includes another)
#   cli uses base only (and nothing but programs and tests use cli)
#
# Outside lib/cli, the library never prints or exits (base/err.h): no
# cli/ include, no exit/abort, no printf/puts/perror/putchar, nothing written
# to stdout and no mention of stderr. Progress and messages go through an
# ns_reporter (base/report.h); data goes to the FILE* a caller passes in
# (ns_output chooses stdout for "-"). Comments and string literals are not
# looked at. A folder not in the list above is a breach too: place it first.
set -u
dir=${1:-lib}
[ -d "$dir" ] || { echo "layering.sh: no such directory ($dir)" >&2; exit 2; }
files=$(find "$dir" -name '*.[ch]' | sort)
[ -n "$files" ] || { echo "layering.sh: no C files under $dir" >&2; exit 2; }
# shellcheck disable=SC2086
awk -v root="$dir/" -v q="'" '
function rank(f) {
    if (f == "base") return 0
    if (f == "stream") return 1
    if (f == "nn") return 2
    if (f == "cav" || f == "merge" || f == "graph" || f == "prune" || f == "detect" ||
        f == "cct" || f == "interop")
        return 3
    if (f == "cli") return 9
    return -1
}
function allowed(self, inc) {
    if (inc == self) return 1
    if (self == "cli") return inc == "base"
    if (inc == "cli" || rank(inc) < 0) return 0
    return rank(inc) < rank(self)
}
function breach(msg) { printf "%s:%d: %s\n", FILENAME, FNR, msg; bad = 1 }
FNR == 1 {
    rel = substr(FILENAME, length(root) + 1)
    folder = rel ~ /\// ? substr(rel, 1, index(rel, "/") - 1) : ""
    in_block = 0
    if (rank(folder) < 0) breach("folder \"" folder "\" is not in the layer order (tests/layering.sh)")
}
{
    line = $0
    # includes, read before strings are blanked
    if (line ~ /^[ \t]*#[ \t]*include[ \t]*"/) {
        path = line
        sub(/^[ \t]*#[ \t]*include[ \t]*"/, "", path)
        sub(/".*/, "", path)
        if (path ~ /^\.\.\//) breach("includes a path with ../ (" path ")")
        else if (path ~ /\//) {
            inc = substr(path, 1, index(path, "/") - 1)
            if (!allowed(folder, inc)) breach(folder "/ includes " inc "/ (" path "), which is not below it")
        }
        next
    }
    # blank comments and literals
    code = ""
    while (length(line) > 0) {
        if (in_block) {
            k = index(line, "*/")
            if (!k) { line = ""; break }
            line = substr(line, k + 2); in_block = 0; continue
        }
        if (match(line, "/\\*|//|\"|" q) == 0) { code = code line; break }
        code = code substr(line, 1, RSTART - 1)
        tok = substr(line, RSTART, RLENGTH)
        line = substr(line, RSTART + RLENGTH)
        if (tok == "//") break
        if (tok == "/*") { in_block = 1; continue }
        # a literal: skip to its closing quote, past escapes
        while (length(line) > 0) {
            c = substr(line, 1, 1)
            if (c == "\\") { line = substr(line, 3); continue }
            line = substr(line, 2)
            if (c == tok) break
        }
        code = code tok tok
    }
    if (folder == "cli") next
    if (code ~ /(^|[^A-Za-z0-9_])(exit|abort|quick_exit|_Exit)[ \t]*\(/) breach("exits (only main() may; return -1 and fill an ns_err)")
    if (code ~ /(^|[^A-Za-z0-9_])(v?printf|puts|perror|putchar)[ \t]*\(/) breach("prints (lib/ reports through ns_err or an ns_reporter)")
    if (code ~ /(^|[^A-Za-z0-9_])stderr([^A-Za-z0-9_]|$)/) breach("touches stderr (lib/ reports through ns_err or an ns_reporter)")
    if (code ~ /(^|[^A-Za-z0-9_])(v?fprintf|fputs|fputc|putc|fwrite|fflush)[ \t]*\(([^;]*[^A-Za-z0-9_])?stdout([^A-Za-z0-9_]|$)/)
        breach("prints to stdout (write to the FILE* the caller passes)")
}
END { exit bad }
' $files
