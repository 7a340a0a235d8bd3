#!/usr/bin/env python3
"""Reference runner: run a sample job's .wasm under plain wasmtime (wasmtime-py).

    run_wasm.py MODULE.wasm INDIR OUTDIR STDOUT_FILE [ARGS...]

Mounts INDIR read-only at /input and OUTDIR at /output, writes the job's
stdout to STDOUT_FILE (stderr to STDOUT_FILE.err), runs with fuel metering
and NaN canonicalization on, and prints "exit CODE fuel N" on its own
stdout; exits with the job's exit code.

It is not Agora's executor (that is `agora exec`); it exists so the sample
jobs can be checked under wasmtime independently of it (test.sh --wasm).
Needs `pip install wasmtime`.
"""
import os
import sys

import wasmtime
from wasmtime import Config, Engine, Linker, Module, Store, WasiConfig

FUEL = 10**15


def main():
    if len(sys.argv) < 5:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    module, indir, outdir, stdout_path = sys.argv[1:5]
    args = sys.argv[5:]
    cfg = Config()
    cfg.consume_fuel = True
    cfg.cranelift_nan_canonicalization = True
    engine = Engine(cfg)
    store = Store(engine)
    store.set_fuel(FUEL)
    wasi = WasiConfig()
    wasi.argv = [os.path.basename(module).removesuffix(".wasm")] + args
    wasi.stdout_file = stdout_path
    wasi.stderr_file = stdout_path + ".err"
    try:
        wasi.preopen_dir(indir, "/input", wasmtime.DirPerms.READ_ONLY, wasmtime.FilePerms.READ_ONLY)
    except AttributeError:  # older wasmtime-py
        wasi.preopen_dir(indir, "/input")
    wasi.preopen_dir(outdir, "/output")
    store.set_wasi(wasi)
    linker = Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, Module.from_file(engine, module))
    code = 0
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        code = e.code
    print("exit %d fuel %d" % (code, FUEL - store.get_fuel()))
    return code


if __name__ == "__main__":
    sys.exit(main())
