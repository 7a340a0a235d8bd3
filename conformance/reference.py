#!/usr/bin/env python3
"""Reference runtime for the conformance suite: run one WASI preview-1 test under stock
wasmtime (wasmtime-py), with the same arguments, environment and root as `agora exec`.

    reference.py MODULE [--env KEY=VALUE]... [--root DIR] [--stdin FILE] [-- ARGS...]

--root DIR is copied to a fresh temporary directory that is preopened as "/" (as
`wasmtime --dir DIR::/` would, but without touching DIR), matching `agora exec --workdir`,
which also gives the job a scratch copy. argv[0] is "job.wasm", as under `agora exec`.
Prints one JSON object: {"exit_code": N, "stdout_hex": "...", "stderr_hex": "...",
"wasmtime": VERSION}; a trap is exit code null with "trap": MESSAGE. Stock settings: no
fuel, no NaN canonicalization, the host's real clocks and random source.

Needs `pip install wasmtime` (CI pins the version in .ci/run).
"""
import argparse
import importlib.metadata
import json
import shutil
import sys
import tempfile
from pathlib import Path

try:
    import wasmtime
except ImportError:
    print("reference.py: wasmtime-py is not installed (pip install wasmtime)", file=sys.stderr)
    sys.exit(2)

PROGRAM_NAME = "job.wasm"
VERSION = importlib.metadata.version("wasmtime")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--root", metavar="DIR")
    parser.add_argument("--stdin", metavar="FILE")
    # Everything after the first "--" goes to the program untouched.
    split = argv.index("--") if "--" in argv else len(argv)
    opts = parser.parse_args(argv[:split])
    opts.args = argv[split + 1 :]
    return opts


def run(opts, scratch: Path) -> dict:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [PROGRAM_NAME] + opts.args
    env = [kv.split("=", 1) for kv in opts.env]
    wasi.env = [(k, v) for k, v in env]
    stdout, stderr = scratch / "stdout", scratch / "stderr"
    wasi.stdout_file = str(stdout)
    wasi.stderr_file = str(stderr)
    if opts.stdin:
        wasi.stdin_file = opts.stdin
    if opts.root:
        root = scratch / "root"
        shutil.copytree(opts.root, root, symlinks=True)
        wasi.preopen_dir(str(root), "/")
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    module = wasmtime.Module.from_file(engine, opts.module)
    result = {"exit_code": 0, "wasmtime": VERSION}
    try:
        instance = linker.instantiate(store, module)
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as exit_:
        result["exit_code"] = exit_.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as trap:
        result["exit_code"] = None
        result["trap"] = str(trap).splitlines()[0] if str(trap) else repr(trap)
    # The store owns the open stdout/stderr files: drop it so their bytes are all written.
    del store
    result["stdout_hex"] = stdout.read_bytes().hex()
    result["stderr_hex"] = stderr.read_bytes().hex()
    return result



def main(argv) -> int:
    opts = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agora-reference-") as scratch:
        result = run(opts, Path(scratch))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
