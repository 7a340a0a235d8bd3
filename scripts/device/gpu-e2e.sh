#!/usr/bin/env bash
# The GPU path end to end on a machine with an NVIDIA GPU, in about three minutes.
#
#   bash scripts/device/gpu-e2e.sh
#
# Needs, carried from the build machine into target/device/ (or as target/device-bundle.tar.xz,
# unpacked there first): `agora` (a stripped release build), `runc` and
# `lib/libseccomp.so.2` (Debian's, which the GPU machine lacks), `busybox` (static; the
# runtime probe's throwaway rootfs). On the GPU machine it builds a
# CUDA program with the host's nvcc (scripts/device/vecadd.cu), wraps it and its libraries
# into an OCI image (scripts/device/dir_image.py), starts `agora devnet` (a market and one
# provider as processes), and as a buyer:
#   1. reads the provider's ask: GPU group, `gpu` feature, driver/CUDA/TFLOPS attributes;
#   2. runs the CUDA image with --gpus 1: escrow, match, unpack, runc with the assigned
#      GPU's device nodes and driver libraries only, metering, receipt, settlement;
#   3. runs busybox `ls` of /dev with --gpus 1, to show which device nodes a job sees;
#   4. asks for 2 GPUs, which the one-GPU provider cannot give: refunded with why;
#   5. measures `agora bench e2e --kind both` (WASM and container jobs side by side).
# Writes at most eight files into $OUT.
set -u
HERE=$(pwd)
D=$HERE/target/device
if [ -f "$HERE/target/device-bundle.tar.xz" ]; then
  mkdir -p "$D" && tar -xJf "$HERE/target/device-bundle.tar.xz" -C "$D"
fi
OUT=${OUT:-./gpu-e2e-out}
mkdir -p "$OUT"
W=$(mktemp -d)
LOG=$OUT/log.txt
: > "$LOG"
say() { echo "== $*" | tee -a "$LOG"; }

mkdir -p "$W/bin"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/lib exec %s/runc "$@"\n' "$D" "$D" > "$W/bin/runc"
chmod +x "$W/bin/runc" "$D/agora" "$D/runc" "$D/busybox"
export PATH="$W/bin:$PATH" AGORA_BUSYBOX="$D/busybox"
say "runc: $(runc --version | head -1)"

say "building the CUDA image"
nvcc -O2 -o "$W/vecadd" scripts/device/vecadd.cu >> "$LOG" 2>&1 || say "nvcc failed"
python3 scripts/device/dir_image.py "$W/vecadd" "$W/vecadd.oci.tar" >> "$LOG" 2>&1 || say "image build failed"

say "starting the devnet"
"$D/agora" devnet --providers 1 --dir "$W/dn" --http 127.0.0.1:7070 > "$W/devnet.txt" 2>&1 &
DEVNET=$!
for _ in $(seq 1 120); do grep -q "is up" "$W/devnet.txt" 2>/dev/null && break; sleep 0.5; done
cat "$W/devnet.txt" >> "$LOG"
M=(--market http://127.0.0.1:7070 --wallet "$W/dn/buyer-0.json" --max-price 1)

say "the provider's ask"
"$D/agora" market asks --market http://127.0.0.1:7070 --json > "$OUT/asks.json" 2>> "$LOG"

say "CUDA job on 1 GPU"
/usr/bin/time -f "wall %e s" "$D/agora" job run "${M[@]}" --image "$W/vecadd.oci.tar" --gpus 1 \
  --memory 2GiB --max-cu 20 --verify none --deadline 60s --json --output-dir "$W/out" > "$OUT/gpu-job.json" 2>> "$LOG"
say "exit $?"

say "how the driver library resolves inside the container"
"$D/agora" job run "${M[@]}" --image "$W/vecadd.oci.tar" --entrypoint /lib64/ld-linux-x86-64.so.2 \
  --gpus 1 --verify none --deadline 30s --json --output-dir "$W/out" -- --list /usr/local/nvidia/lib64/libcuda.so.1 \
  > "$OUT/gpu-ldd.json" 2>> "$LOG"
say "exit $?"

say "what a 1-GPU container sees"
"$D/agora" job run "${M[@]}" --image examples/containers/busybox-hash.oci.tar --entrypoint /bin/ls \
  --gpus 1 --verify none --deadline 30s --json --output-dir "$W/out" -- -l /dev /usr/local/nvidia/lib64 /usr/local/nvidia/bin \
  > "$OUT/gpu-ls.json" 2>> "$LOG"
say "exit $?"

say "2 GPUs from a 1-GPU provider"
"$D/agora" job run "${M[@]}" --image "$W/vecadd.oci.tar" --gpus 2 --verify none --deadline 10s --json \
  --output-dir "$W/out" > "$OUT/gpu-nomatch.json" 2>> "$LOG"
say "exit $? (2 = refunded, as it should be)"

kill -INT $DEVNET; wait $DEVNET 2>/dev/null
cp "$W/dn/provider-0.log" "$OUT/provider.log" 2>/dev/null

[ -n "${SKIP_BENCH:-}" ] && { rm -rf "$W"; exit 0; }
say "bench e2e --kind both"
timeout 150 "$D/agora" bench e2e --kind both --providers 2 --buyers 8 --jobs-per-buyer 10 \
  --sequential 30 --blob-mib 0 --json > "$OUT/e2e.json" 2>> "$LOG"
say "exit $?"
rm -rf "$W"
