#!/bin/sh
# busybox-hash: sha256 of every regular file under /input, in byte order of
# the path, written to /output/hashes.txt (sha256sum format, paths relative
# to /input); a summary on stdout. No arguments. Exit 0 on success, 1 when
# /input is missing or a file cannot be read, 2 on arguments.
set -eu
export LC_ALL=C
if [ $# -ne 0 ]; then
    echo "usage: hash.sh (no arguments; hashes every file under /input)" >&2
    exit 2
fi
[ -d /input ] || { echo "hash.sh: /input is missing" >&2; exit 1; }
cd /input
# sort with LC_ALL=C (busybox sort compares bytes anyway): the order never
# depends on the directory's on-disk order or the provider's locale.
find . -type f | sed 's|^\./||' | sort | while IFS= read -r f; do
    sha256sum "$f"
done >/output/hashes.txt
files=0
bytes=0
while IFS= read -r line; do
    f="${line#*  }"
    files=$((files + 1))
    bytes=$((bytes + $(stat -c %s "$f")))
done </output/hashes.txt
echo "busybox-hash: $files files, $bytes bytes"
set -- $(sha256sum /output/hashes.txt)
echo "hashes.txt sha256 $1"
