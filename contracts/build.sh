#!/usr/bin/env bash
# Build Agora's EVM contracts.
#
#   build.sh           compile src/ and test/ into out/<Name>.abi.json and out/<Name>.bin
#   build.sh --check   compile into a temporary directory and compare byte-for-byte with
#                      the committed out/; exit 1 naming every file that differs
#
# Needs node and `npm ci --ignore-scripts` run in contracts/ (solc and OpenZeppelin are
# pinned by package-lock.json; solcjs compiles offline). Reproducibility: a pinned compiler,
# fixed optimizer settings and EVM version, and no metadata hash in the bytecode, so two
# builds anywhere give the same bytes.
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "build.sh: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found; install Node.js 18 or later"
[[ -f "$HERE/node_modules/solc/package.json" ]] \
  || die "contracts/node_modules is missing; run: (cd contracts && npm ci --ignore-scripts)"

case "${1:-}" in
  "")
    node "$HERE/compile.js" "$HERE/out"
    echo "build.sh: wrote $(ls "$HERE/out" | wc -l) files to contracts/out"
    ;;
  --check)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    node "$HERE/compile.js" "$tmp"
    status=0
    for f in "$tmp"/*; do
      name="$(basename "$f")"
      if ! cmp -s "$f" "$HERE/out/$name"; then
        echo "build.sh: contracts/out/$name differs from a fresh build; run contracts/build.sh and commit" >&2
        status=1
      fi
    done
    for f in "$HERE"/out/*; do
      [[ -e "$tmp/$(basename "$f")" ]] || { echo "build.sh: contracts/out/$(basename "$f") is not built any more" >&2; status=1; }
    done
    [[ $status -eq 0 ]] && echo "build.sh: contracts/out matches a fresh build"
    exit $status
    ;;
  *) die "unknown argument $1 (use no argument or --check)" ;;
esac
