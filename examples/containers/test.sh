#!/usr/bin/env bash
# Run the committed sample images for real under runc, independent of
# Agora's Rust code.
#
#   test.sh           unpack each .oci.tar (oci_run.py verifies every digest,
#                     size and diff_id), run each case twice with
#                     inputs/ read-only at /input and a fresh /output; the
#                     two runs must agree byte for byte (exit code, stdout,
#                     stderr, every output file) and match
#                     expected-outputs.sha256; bad arguments and inputs must
#                     fail with the documented exit codes; the sandbox must
#                     keep the root and /input read-only and have no network
#   test.sh --record  rewrite expected-outputs.sha256 from the runs
#   test.sh --bench [MIB]
#                     time busybox-hash over one MIB-mebibyte input
#                     (default 512): a CPU-bound job for benchmarks
#
# Needs root, runc (Debian's runc) and python3. Closes with
# "N passed, M failed"; exit 1 on any failure.
set -uo pipefail
umask 022
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
RECORD=0
BENCH=0
BENCH_MIB=512
while (($#)); do
    case "$1" in
    --record) RECORD=1 ;;
    --bench)
        BENCH=1
        if [[ "${2:-}" =~ ^[0-9]+$ ]]; then BENCH_MIB="$2"; shift; fi
        ;;
    *) echo "usage: test.sh [--record] [--bench [MIB]]" >&2; exit 2 ;;
    esac
    shift
done

[[ "$(id -u)" == 0 ]] || { echo "test.sh: runc needs root" >&2; exit 1; }
command -v "${RUNC:-runc}" >/dev/null || { echo "test.sh: runc not found (apt-get install runc)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export RUNC_ROOT="$TMP/runc-state"
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }

IMAGES=(busybox-hash sqlite-report)
for img in "${IMAGES[@]}"; do
    if "$PYTHON" "$HERE/oci_run.py" unpack "$HERE/$img.oci.tar" "$TMP/bundle-$img"; then
        ok "$img: archive verified and unpacked"
    else
        bad "$img: unpack"
    fi
done

# A flipped byte inside the busybox layer blob must be refused.
cp "$HERE/busybox-hash.oci.tar" "$TMP/corrupt.oci.tar"
"$PYTHON" -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(1000000); b = f.read(1); f.seek(1000000); f.write(bytes([b[0] ^ 1]))' "$TMP/corrupt.oci.tar"
if "$PYTHON" "$HERE/oci_run.py" unpack "$TMP/corrupt.oci.tar" "$TMP/bundle-corrupt" 2>"$TMP/corrupt.err"; then
    bad "a corrupted layer was unpacked"
elif grep -q "does not match its digest" "$TMP/corrupt.err"; then
    ok "a corrupted layer is refused: $(cat "$TMP/corrupt.err")"
else
    bad "corrupted archive: unexpected error $(cat "$TMP/corrupt.err")"
fi

# run_case DIR IMAGE [oci_run args...]: one run into DIR/{rc,stdout,stderr,out/}
run_case() {
    local dir="$1" img="$2"
    shift 2
    mkdir -p "$dir/out"
    "$PYTHON" "$HERE/oci_run.py" run "$TMP/bundle-$img" "$HERE/inputs" "$dir/out" "$@" \
        >"$dir/stdout" 2>"$dir/stderr"
    echo $? >"$dir/rc"
}

# The examples: IMAGE|ARGS (empty: the image's Cmd)
CASES=(
    "busybox-hash|"
    "sqlite-report|"
)
: >"$TMP/actual.sha256"
for c in "${CASES[@]}"; do
    img="${c%%|*}"
    args="${c#*|}"
    extra=()
    # shellcheck disable=SC2206
    [[ -n "$args" ]] && extra=(-- $args)
    start=$(date +%s%N)
    run_case "$TMP/$img.1" "$img" "${extra[@]}"
    ms=$((($(date +%s%N) - start) / 1000000))
    run_case "$TMP/$img.2" "$img" "${extra[@]}"
    rc="$(cat "$TMP/$img.1/rc")"
    if [[ "$rc" == 0 ]]; then
        ok "$img: exit 0 (${ms} ms)"
    else
        bad "$img: exit $rc: $(head -3 "$TMP/$img.1/stderr")"
    fi
    if diff -r "$TMP/$img.1" "$TMP/$img.2" >/dev/null; then
        ok "$img: two runs byte-identical (exit code, stdout, stderr, $(ls "$TMP/$img.1/out" | wc -l) output files)"
    else
        bad "$img: two runs differ: $(diff -rq "$TMP/$img.1" "$TMP/$img.2" | head -3)"
    fi
    [[ -s "$TMP/$img.1/stderr" ]] && bad "$img: unexpected stderr: $(head -3 "$TMP/$img.1/stderr")"
    (cd "$TMP/$img.1" && sha256sum stdout | sed "s|  |  $img/|" && cd out && find . -type f | sed 's|^\./||' | sort |
        while IFS= read -r f; do sha256sum "$f" | sed "s|  |  $img/|"; done) >>"$TMP/actual.sha256"
done

if ((RECORD)); then
    cp "$TMP/actual.sha256" "$HERE/expected-outputs.sha256"
    ok "recorded expected-outputs.sha256"
elif diff -u "$HERE/expected-outputs.sha256" "$TMP/actual.sha256" >"$TMP/expected.diff"; then
    ok "outputs match expected-outputs.sha256 ($(wc -l <"$TMP/actual.sha256") digests)"
else
    bad "outputs differ from expected-outputs.sha256:"
    cat "$TMP/expected.diff"
fi

# Failures: IMAGE|EXPECTED_EXIT|ARGS
FAILS=(
    "busybox-hash|2|extra-argument"
    "sqlite-report|1|missing.csv"
    "sqlite-report|2|../etc/passwd"
    "sqlite-report|1|notes.txt"
)
n=0
for c in "${FAILS[@]}"; do
    IFS='|' read -r img want args <<<"$c"
    n=$((n + 1))
    run_case "$TMP/fail$n" "$img" -- $args
    got="$(cat "$TMP/fail$n/rc")"
    if [[ "$got" == "$want" && -s "$TMP/fail$n/stderr" ]]; then
        ok "$img $args: exit $want with a message on stderr"
    else
        bad "$img $args: exit $got (want $want), stderr: $(head -2 "$TMP/fail$n/stderr")"
    fi
done

# The sandbox the images are tested in: read-only root and /input, writable
# /output and /tmp, only a loopback interface.
SANDBOX=(
    "1|touch /input/x"
    "1|touch /app/x"
    "0|touch /output/x && touch /tmp/x"
    "0|test \"\$(grep -c : /proc/net/dev)\" = 1"
)
for c in "${SANDBOX[@]}"; do
    want="${c%%|*}"
    script="${c#*|}"
    n=$((n + 1))
    run_case "$TMP/sb$n" busybox-hash --entrypoint '["/bin/sh","-c"]' -- "$script"
    got="$(cat "$TMP/sb$n/rc")"
    if [[ "$got" == "$want" ]]; then
        ok "sandbox: '$script' exits $want"
    else
        bad "sandbox: '$script' exits $got (want $want): $(head -2 "$TMP/sb$n/stderr")"
    fi
done

if ((BENCH)); then
    mkdir -p "$TMP/bench-in" "$TMP/bench-out"
    head -c $((BENCH_MIB << 20)) /dev/zero >"$TMP/bench-in/big.bin"
    start=$(date +%s%N)
    "$PYTHON" "$HERE/oci_run.py" run "$TMP/bundle-busybox-hash" "$TMP/bench-in" "$TMP/bench-out" >"$TMP/bench.stdout" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    if [[ "$rc" == 0 ]]; then
        ok "bench: busybox-hash over $BENCH_MIB MiB in $ms ms ($((BENCH_MIB * 1000 / (ms > 0 ? ms : 1))) MiB/s)"
    else
        bad "bench: exit $rc: $(head -2 "$TMP/bench.stdout")"
    fi
fi

echo "$PASS passed, $FAIL failed"
((FAIL == 0))
