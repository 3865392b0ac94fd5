#!/bin/sh
# Checks the Debian packages netsmith needs; installs the missing ones when run
# as root (apt-get), otherwise prints the exact command and fails.
# Extra packages for a target can be named in NS_EXTRA_PKGS.
PKGS="gcc make pkg-config libblis-dev libmsgpack-dev libarchive-dev libpng-dev bats python3 $NS_EXTRA_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "netsmith: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q $missing; } >&2 || {
        echo "netsmith: apt-get install failed for:$missing" >&2; exit 1; }
else
    echo "netsmith: missing Debian packages:$missing" >&2
    echo "netsmith: install them with: sudo apt-get install$missing" >&2
    exit 1
fi
