#!/usr/bin/env python3
"""Measure a large real module (Yosys, examples/real/yosys) under `agora exec` and under
stock wasmtime-py, side by side in one run; medians of --runs runs each.

    examples/real/bench.py [--agora PATH] [--runs 5]

- cold compile: `agora exec --cache-dir EMPTY yosys.wasm -- -V` (whole process: read,
  hash, validate, compile with fuel metering, instantiate, print the version) vs
  wasmtime-py's own compile of the same bytes (`wasmtime.Module(engine, bytes)`, its
  default config plus exceptions, as YoWASP runs it);
- cached start: the same agora command with the compiled-module cache warm (whole process);
- run: the synthesis job of examples/real/yosys/run.sh, agora's own measure of the job
  (`wall_time` in `agora exec --json`, metered) vs wasmtime-py running `_start` of an
  instance of its (already compiled) module with the same preopens.

Fetches the package with `run.sh --fetch-only`. Prints a JSON report.
"""
import argparse
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

HERE = Path(__file__).resolve().parent
SCRIPT = ("read_verilog /input/design.v; synth_ice40 -top top; "
          "tee -q -o /output/stat.txt stat; write_json /output/netlist.json")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def agora_exec(agora, module, cache, extra, args, check=True):
    cmd = [agora, "exec", str(module), "--json", "--cache-dir", str(cache),
           "--fuel", "200000000000", "--memory", "1GiB", *extra, "--", *args]
    proc = subprocess.run(cmd, capture_output=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return json.loads(proc.stdout)


def reference_engine():
    config = wasmtime.Config()
    config.wasm_exceptions = True
    return wasmtime.Engine(config)


def reference_run(engine, module, root, design, out):
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["job.wasm", "-q", "-p", SCRIPT]
    inputs = out.parent / "in"
    inputs.mkdir(exist_ok=True)
    shutil.copy(design, inputs / "design.v")
    scratch = out.parent / "root"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(root, scratch)
    (scratch / "tmp").mkdir(exist_ok=True)
    wasi.preopen_dir(str(scratch), "/")
    wasi.preopen_dir(str(inputs), "/input")
    wasi.preopen_dir(str(out), "/output")
    wasi.stdout_file = str(out.parent / "stdout")
    wasi.stderr_file = str(out.parent / "stderr")
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()

    def go():
        instance = linker.instantiate(store, module)
        try:
            instance.exports(store)["_start"](store)
        except wasmtime.ExitTrap as exit_:
            assert exit_.code == 0, exit_.code

    seconds, _ = timed(go)
    return seconds


def median(xs):
    return statistics.median(xs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agora", default=os.environ.get("AGORA", "agora"))
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()

    cache_root = Path(subprocess.run(["bash", str(HERE / "yosys/run.sh"), "--fetch-only"],
                                     check=True, capture_output=True, text=True).stdout.strip())
    module_path = cache_root / "yosys.wasm"
    root = cache_root / "root"
    design = HERE / "yosys/design.v"
    work = Path(tempfile.mkdtemp(prefix="agora-real-bench-"))
    report = {"module": str(module_path), "module_bytes": module_path.stat().st_size,
              "wasmtime_py": importlib.metadata.version("wasmtime"), "runs": opts.runs}
    try:
        cold_agora, cold_ref, started, runs_agora, runs_ref = [], [], [], [], []
        engine = reference_engine()
        module_bytes = module_path.read_bytes()
        for i in range(opts.runs):
            fresh = work / f"cold-{i}"
            seconds, _ = timed(lambda: agora_exec(opts.agora, module_path, fresh, [], ["-V"]))
            cold_agora.append(seconds)
            shutil.rmtree(fresh)
            seconds, ref_module = timed(lambda: wasmtime.Module(engine, module_bytes))
            cold_ref.append(seconds)
            print(f"cold compile {i}: agora {cold_agora[-1]:.2f} s, wasmtime-py {seconds:.2f} s",
                  file=sys.stderr)
        warm = work / "warm"
        agora_exec(opts.agora, module_path, warm, [], ["-V"])
        for i in range(opts.runs):
            seconds, _ = timed(lambda: agora_exec(opts.agora, module_path, warm, [], ["-V"]))
            started.append(seconds)
        for i in range(opts.runs):
            out = work / f"agora-out-{i}"
            record = agora_exec(opts.agora, module_path, warm,
                                ["--workdir", str(root), "--input", f"design.v={design}",
                                 "--output-dir", str(out)],
                                ["-q", "-p", SCRIPT])
            runs_agora.append(record["wall_time"]["secs"] + record["wall_time"]["nanos"] / 1e9
                              if isinstance(record["wall_time"], dict) else float(record["wall_time"]))
            report["fuel"] = record.get("fuel_used")
            ref_out = work / f"ref-{i}" / "out"
            ref_out.mkdir(parents=True)
            runs_ref.append(reference_run(engine, ref_module, root, design, ref_out))
            same = all((out / name).read_bytes() == (ref_out / name).read_bytes()
                       for name in ("netlist.json", "stat.txt"))
            report.setdefault("outputs_identical", True)
            report["outputs_identical"] &= same
            print(f"run {i}: agora {runs_agora[-1]:.2f} s, wasmtime-py {runs_ref[-1]:.2f} s, "
                  f"outputs identical: {same}", file=sys.stderr)
        report.update({
            "cold_compile_s": {"agora": median(cold_agora), "wasmtime_py": median(cold_ref),
                               "ratio": median(cold_agora) / median(cold_ref),
                               "all_agora": cold_agora, "all_wasmtime_py": cold_ref},
            "cached_start_s": {"agora": median(started), "all": started},
            "run_s": {"agora_metered": median(runs_agora), "wasmtime_py": median(runs_ref),
                      "ratio": median(runs_agora) / median(runs_ref),
                      "all_agora": runs_agora, "all_wasmtime_py": runs_ref},
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
