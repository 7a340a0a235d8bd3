#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails if any of them finds a crash.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 15 s each, every target)
#
# Works on the stable toolchain: `cargo fuzz` with `-s none` (no sanitizer) needs no
# -Z flags; libFuzzer itself is compiled by libfuzzer-sys with the system C++ compiler.
# The committed seeds (fuzz/seeds/TARGET) are read-only inputs; what the fuzzer learns
# goes to fuzz/corpus/TARGET (ignored by git, kept between runs), a crashing input to
# fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-15}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} fuzz targets"
cargo fuzz build -s none

failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" target
  corpora=("corpus/$target")
  [ -d "seeds/$target" ] && corpora+=("seeds/$target")
  log="target/fuzz-$target.log"
  start=$SECONDS
  if cargo fuzz run -s none "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "ok   $target: $runs inputs in $((SECONDS - start)) s"
  else
    echo "FAIL $target (log: fuzz/$log)"
    grep -E 'panicked at|Test unit written to|ERROR:|SUMMARY' "$log" | head -20 || tail -30 "$log"
    failed+=("$target")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz targets that crashed: ${failed[*]}" >&2
  echo "reproduce: cd fuzz && cargo fuzz run -s none TARGET artifacts/TARGET/crash-..." >&2
  exit 1
fi
