#!/usr/bin/env bash
# Checks agora-gpu on a machine with an NVIDIA GPU, in well under two minutes.
#
#   bash scripts/device/gpu-check.sh [path/to/gpu_report]
#
# $1: the example built here with
#     cargo build --release -p agora-gpu --example gpu_report
#     (default target/release/examples/gpu_report; it loads NVML, CUDA and cuBLAS at run
#     time, so it needs no CUDA to build).
# Writes into $OUT (default ./gpu-check-out):
#   gpu_report.json        the example's report: NVML and nvidia-smi detections side by
#                          side with their differences, offers, a placement, the container
#                          exposure of GPU 0, CDI availability and the TFLOPS benchmark
#   gpu_report.stderr      its standard error
#   nvidia-smi.txt, nvidia-smi-q.xml, query.csv (the exact query agora-gpu runs),
#   ldconfig-p.txt, dev-nvidia.txt, env.txt (machine facts, nvidia-smi -L, the minimal
#   query, ldd of the binary)
# Eight files at most: the device runner returns no more than that.
# and prints a short summary. Exits non-zero only if the report could not be produced.
set -u
BIN=${1:-target/release/examples/gpu_report}
OUT=${OUT:-./gpu-check-out}
mkdir -p "$OUT"

QUERY=index,uuid,name,memory.total,pci.bus_id,compute_cap,driver_version,mig.mode.current
MINIMAL=index,uuid,name,memory.total,pci.bus_id,driver_version

{ date -u; uname -a; grep PRETTY_NAME /etc/os-release; ldd --version | head -1; } \
  > "$OUT/env.txt" 2>&1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvidia-smi -q -x > "$OUT/nvidia-smi-q.xml" 2>&1
nvidia-smi --query-gpu=$QUERY --format=csv,noheader,nounits > "$OUT/query.csv" 2>&1
{ echo "## nvidia-smi -L"; nvidia-smi -L
  echo "## nvidia-smi --query-gpu=$MINIMAL --format=csv,noheader,nounits"
  nvidia-smi --query-gpu=$MINIMAL --format=csv,noheader,nounits; } >> "$OUT/env.txt" 2>&1
ldconfig -p > "$OUT/ldconfig-p.txt" 2>&1
ls -la /dev/nvidia* > "$OUT/dev-nvidia.txt" 2>&1
{ command -v nvidia-ctk; ls /etc/cdi /var/run/cdi; } >> "$OUT/env.txt" 2>&1

if [ ! -e "$BIN" ]; then
  echo "gpu-check: $BIN not found; build it with cargo build --release -p agora-gpu --example gpu_report" >&2
  exit 2
fi
chmod +x "$BIN" 2>/dev/null
ldd "$BIN" >> "$OUT/env.txt" 2>&1
start=$(date +%s.%N)
timeout 120 "$BIN" > "$OUT/gpu_report.json" 2> "$OUT/gpu_report.stderr"
rc=$?
end=$(date +%s.%N)
echo "gpu_report exit $rc in $(echo "$end - $start" | bc 2>/dev/null || echo "?") s" | tee -a "$OUT/env.txt"

if command -v python3 > /dev/null; then
  python3 - "$OUT/gpu_report.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("report unreadable:", e); sys.exit(0)
d = r.get("detection", {})
print("source:", d.get("source"), "driver:", d.get("driver_version"), "cuda:", d.get("cuda_version"))
for g in d.get("gpus", []):
    print("  gpu", g["index"], g["class_model"], g["memory_bytes"] >> 20, "MiB minor", g.get("minor_number"), "mig", g.get("mig_mode"))
print("nvml vs nvidia-smi differences:", r.get("nvml_vs_nvidia_smi_differences"))
print("placement:", json.dumps(r.get("placement", {}).get("result")))
c = r.get("container_gpu0", {})
print("container devices:", [(x["path"], x["major"], x["minor"]) for x in c.get("devices", [])])
print("container missing:", c.get("missing"))
t = r.get("tflops", {})
if "ok" in t:
    ok = t["ok"]
    print("TFLOPS fp32 %.1f fp16 %s (n=%d, %d+%d iterations, %.2f s)" % (
        ok["fp32_tflops"], ok.get("fp16_tflops"), ok["matrix_n"], ok["iterations"],
        ok["fp16_iterations"], t["elapsed_s"]))
else:
    print("TFLOPS error:", t.get("error"))
PY
fi
tail -5 "$OUT/gpu_report.stderr"
exit $rc
