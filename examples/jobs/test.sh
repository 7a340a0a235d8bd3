#!/usr/bin/env bash
# Tests of the sample jobs, on native builds of the same sources (and, with
# --wasm, on the committed .wasm files under plain wasmtime via run_wasm.py).
#
#   test.sh           native: every README example twice (same bytes), outputs
#                     against expected.sha256, tiles stacked == whole frame,
#                     bad arguments -> exit 2, bad input -> exit 1
#   test.sh --wasm    also run the .wasm files (needs `pip install wasmtime`;
#                     PYTHON picks the interpreter) and require the same bytes
#                     as native and the same fuel on two runs
#   test.sh --record  rewrite expected.sha256 from the native runs
#
# Needs clang (see build.sh). Closes with "N passed, M failed"; exit 1 on any
# failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
WASM=0
RECORD=0
for a in "$@"; do
    case "$a" in
    --wasm) WASM=1 ;;
    --record) RECORD=1 ;;
    *) echo "usage: test.sh [--wasm] [--record]" >&2; exit 2 ;;
    esac
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }

"$HERE/build.sh" --native "$TMP/bin" >/dev/null || { echo "FAIL native build"; echo "0 passed, 1 failed"; exit 1; }

# The README examples: NAME|INPUTS (NAME=FILE,...)|ARGS
EXAMPLES=(
    "pathtrace||64 48 0 48 8"
    "montecarlo||1000000 42"
    "logagg|log=inputs/access.log|log 5"
    "nn|batch=inputs/batch.f32|batch"
    "hashchain||1000000 7"
    "life||1000 2 7"
)

# make_inputs DIR "NAME=FILE,..."
make_inputs() {
    mkdir -p "$1"
    local spec="$2" item
    [[ -z "$spec" ]] && return 0
    IFS=',' read -ra items <<<"$spec"
    for item in "${items[@]}"; do cp "$HERE/${item#*=}" "$1/${item%%=*}"; done
}

# run_native NAME INDIR OUTDIR STDOUT ARGS... ; sets RC
run_native() {
    local name="$1" in="$2" out="$3" so="$4"
    shift 4
    mkdir -p "$out"
    AGORA_INPUT_DIR="$in" AGORA_OUTPUT_DIR="$out" "$TMP/bin/$name" "$@" >"$so" 2>"$so.err"
    RC=$?
}

# run_wasm NAME INDIR OUTDIR STDOUT ARGS... ; sets RC and FUEL
run_wasm() {
    local name="$1" in="$2" out="$3" so="$4" line
    shift 4
    mkdir -p "$out"
    line="$("$PYTHON" "$HERE/run_wasm.py" "$HERE/$name.wasm" "$in" "$out" "$so" "$@" 2>"$so.runner")"
    RC=$?
    FUEL="${line##* }"
}

# digest_lines NAME STDOUT OUTDIR: "sha256  NAME/stdout" and one line per output file
digest_lines() {
    local name="$1" so="$2" out="$3" f
    echo "$(sha256sum <"$so" | cut -d' ' -f1)  $name/stdout"
    for f in $(cd "$out" && LC_ALL=C ls); do
        echo "$(sha256sum <"$out/$f" | cut -d' ' -f1)  $name/$f"
    done
}

: >"$TMP/actual.sha256"
for ex in "${EXAMPLES[@]}"; do
    IFS='|' read -r name inputs args <<<"$ex"
    make_inputs "$TMP/in-$name" "$inputs"
    # shellcheck disable=SC2086
    run_native "$name" "$TMP/in-$name" "$TMP/n1-$name" "$TMP/n1-$name.stdout" $args
    rc1=$RC
    # shellcheck disable=SC2086
    run_native "$name" "$TMP/in-$name" "$TMP/n2-$name" "$TMP/n2-$name.stdout" $args
    if [[ $rc1 -ne 0 || $RC -ne 0 ]]; then
        bad "native $name $args: exit $rc1/$RC: $(head -c 300 "$TMP/n1-$name.stdout.err")"
        continue
    fi
    if cmp -s "$TMP/n1-$name.stdout" "$TMP/n2-$name.stdout" && diff -r -q "$TMP/n1-$name" "$TMP/n2-$name" >/dev/null; then
        ok "native $name $args: two runs, identical stdout and outputs"
    else
        bad "native $name $args: two runs differ"
    fi
    digest_lines "$name" "$TMP/n1-$name.stdout" "$TMP/n1-$name" >>"$TMP/actual.sha256"

    if [[ $WASM -eq 1 ]]; then
        # shellcheck disable=SC2086
        run_wasm "$name" "$TMP/in-$name" "$TMP/w1-$name" "$TMP/w1-$name.stdout" $args
        rc1=$RC fuel1=$FUEL
        # shellcheck disable=SC2086
        run_wasm "$name" "$TMP/in-$name" "$TMP/w2-$name" "$TMP/w2-$name.stdout" $args
        if [[ $rc1 -ne 0 || $RC -ne 0 ]]; then
            bad "wasm $name $args: exit $rc1/$RC: $(head -c 300 "$TMP/w1-$name.stdout.runner" "$TMP/w1-$name.stdout.err" 2>/dev/null)"
        elif [[ "$fuel1" != "$FUEL" ]]; then
            bad "wasm $name $args: fuel differs between runs ($fuel1 vs $FUEL)"
        elif cmp -s "$TMP/w1-$name.stdout" "$TMP/n1-$name.stdout" && diff -r -q "$TMP/w1-$name" "$TMP/n1-$name" >/dev/null &&
            cmp -s "$TMP/w2-$name.stdout" "$TMP/n1-$name.stdout" && diff -r -q "$TMP/w2-$name" "$TMP/n1-$name" >/dev/null; then
            ok "wasm $name $args: two runs identical to native, fuel $FUEL both times"
        else
            bad "wasm $name $args: output differs from native"
        fi
    fi
done

if [[ $RECORD -eq 1 ]]; then
    cp "$TMP/actual.sha256" "$HERE/expected.sha256"
    echo "recorded $HERE/expected.sha256"
elif diff -u "$HERE/expected.sha256" "$TMP/actual.sha256" >"$TMP/expected.diff"; then
    ok "outputs of all examples match expected.sha256"
else
    bad "outputs differ from expected.sha256:"
    cat "$TMP/expected.diff"
fi

# Tiles rendered separately and stacked equal the whole frame (pixel data is
# the last W*rows*3 bytes of each P6 file).
tiles_check() { # RUNNER(run_native|run_wasm) LABEL
    local runner="$1" label="$2" w=40 h=30 spp=4 r0 r1 frame="$TMP/$2-frame"
    $runner pathtrace "$TMP/in-pathtrace" "$frame" "$frame.stdout" $w $h 0 $h $spp
    [[ $RC -eq 0 ]] || { bad "$label tiles: whole frame exit $RC"; return; }
    : >"$TMP/$label-stacked"
    r0=0
    for r1 in 7 8 19 30; do
        $runner pathtrace "$TMP/in-pathtrace" "$TMP/$label-tile$r0" "$TMP/$label-tile$r0.stdout" $w $h $r0 $r1 $spp
        [[ $RC -eq 0 ]] || { bad "$label tiles: tile $r0..$r1 exit $RC"; return; }
        tail -c $((w * (r1 - r0) * 3)) "$TMP/$label-tile$r0/tile.ppm" >>"$TMP/$label-stacked"
        r0=$r1
    done
    if tail -c $((w * h * 3)) "$frame/tile.ppm" | cmp -s - "$TMP/$label-stacked" &&
        head -c 14 "$TMP/$label-tile8/tile.ppm" | grep -q "^P6" && [[ "$(sed -n 2p "$TMP/$label-tile8/tile.ppm")" == "$w 11" ]]; then
        ok "$label pathtrace: tiles 0..7, 7..8, 8..19, 19..30 stacked == whole ${w}x${h} frame"
    else
        bad "$label pathtrace: stacked tiles differ from the whole frame"
    fi
}
mkdir -p "$TMP/in-pathtrace"
tiles_check run_native native
[[ $WASM -eq 1 ]] && tiles_check run_wasm wasm

# Bad arguments: usage on stderr, exit 2. Bad input data: exit 1.
RUNNER=run_native
expect() { # WANT_RC NAME INPUTS ARGS...
    local want="$1" name="$2" inputs="$3" d label="${RUNNER#run_}"
    shift 3
    d="$(mktemp -d "$TMP/bad.XXXX")"
    make_inputs "$d/in" "$inputs"
    $RUNNER "$name" "$d/in" "$d/out" "$d/stdout" "$@"
    if [[ $RC -ne $want ]]; then
        bad "$label $name $*: exit $RC, want $want"
    elif [[ $want -eq 2 ]] && ! grep -q "^usage: $name" "$d/stdout.err"; then
        bad "$label $name $*: no usage line on stderr"
    else
        ok "$label $name $*: exit $want"
    fi
}
expect 2 pathtrace ""
expect 2 pathtrace "" 64 48 0 48
expect 2 pathtrace "" 64 48 30 20 8
expect 2 pathtrace "" 64 48 0 49 8
expect 2 pathtrace "" 0 48 0 48 8
expect 2 pathtrace "" 64 48 0 48 -8
expect 2 pathtrace "" 64 48 0 48 8x
expect 2 montecarlo "" 0
expect 2 montecarlo "" 100 -1
expect 2 montecarlo "" 100 1 extra
expect 2 hashchain ""
expect 2 hashchain "" 99999999999999999999
expect 2 hashchain "" 10 0x
expect 2 logagg "" ../etc/passwd
expect 2 logagg "log=inputs/access.log" log 0
expect 1 logagg "" missing
expect 2 nn "" batch 0
expect 2 nn "" sub/batch
expect 1 nn "" missing
expect 1 nn "batch=build.sh" batch
expect 0 montecarlo "" 10 0xffffffffffffffff
expect 0 hashchain "" 0
expect 2 life "" 0
expect 2 life "" 10 0
expect 2 life "" 10 1 1 extra
expect 0 life "" 1 1
if [[ $WASM -eq 1 ]]; then
    RUNNER=run_wasm
    expect 2 pathtrace "" 64 48 0 49 8
    expect 2 montecarlo "" 0
    expect 2 hashchain ""
    expect 2 logagg "" ../etc/passwd
    expect 1 logagg "" missing
    expect 1 nn "batch=build.sh" batch
fi

echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
