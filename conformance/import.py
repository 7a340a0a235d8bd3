#!/usr/bin/env python3
"""Re-import WebAssembly's wasi-testsuite (wasm32-wasip1 tests only) from a git mirror.

    conformance/import.py [--mirror GIT_DIR] [--commit COMMIT]

Copies tests/{c,rust,assemblyscript}/testsuite/wasm32-wasip1/ (test modules, their .json
specifications and the fs-tests.dir trees) and the upstream LICENSE into
conformance/wasi-testsuite/, replacing what is there. Every .wasm loses its custom sections
(debug info, names, producers): they are about 1 MB per Rust test and do not change what a
module does. conformance/wasi-testsuite/IMPORT.json records the upstream commit and, per
file, the sha256 of the upstream bytes and of the bytes committed here.

Needs only git and Python 3 (no wasm tooling): the section walk is below.
"""
import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_MIRROR = "/work/.mirror/WebAssembly+wasi-testsuite/repo"
DEFAULT_COMMIT = "9f80ca35444cfd9e63100725615140a346652e6c"
SUITES = ("c", "rust", "assemblyscript")
WASM_HEADER = b"\0asm\x01\0\0\0"
CUSTOM_SECTION = 0


def read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    """Decodes an unsigned LEB128 at `pos`; returns (value, position after it)."""
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated LEB128")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 35:
            raise ValueError("LEB128 longer than a u32")


def strip_custom_sections(module: bytes) -> bytes:
    """The module with every custom section (id 0) left out, other sections byte for byte."""
    if module[:8] != WASM_HEADER:
        raise ValueError("not a core wasm module (bad magic or version)")
    out = bytearray(WASM_HEADER)
    pos = 8
    while pos < len(module):
        start = pos
        section_id = module[pos]
        size, body = read_uleb(module, pos + 1)
        end = body + size
        if end > len(module):
            raise ValueError(f"section {section_id} at {start} runs past the end")
        if section_id != CUSTOM_SECTION:
            out += module[start:end]
        pos = end
    return bytes(out)


def git(mirror: str, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", mirror, *args], check=True, capture_output=True
    ).stdout


def upstream_files(mirror: str, commit: str):
    """Yields (suite, path inside the suite's wasm32-wasip1 dir, blob id) for every file."""
    for suite in SUITES:
        prefix = f"tests/{suite}/testsuite/wasm32-wasip1/"
        listing = git(mirror, "ls-tree", "-r", "-z", commit, prefix).decode()
        for entry in filter(None, listing.split("\0")):
            meta, path = entry.split("\t", 1)
            mode, kind, blob = meta.split()
            if kind != "blob" or mode == "120000":
                raise SystemExit(f"unexpected {kind} {mode} at {path}: the importer copies plain files only")
            yield suite, path[len(prefix):], blob


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="bare git dir of wasi-testsuite")
    parser.add_argument("--commit", default=DEFAULT_COMMIT, help="upstream commit to import")
    opts = parser.parse_args()

    commit = git(opts.mirror, "rev-parse", "--verify", opts.commit + "^{commit}").decode().strip()
    dest = Path(__file__).resolve().parent / "wasi-testsuite"
    for suite in SUITES:
        shutil.rmtree(dest / suite, ignore_errors=True)
    dest.mkdir(exist_ok=True)

    record = {"upstream": "https://github.com/WebAssembly/wasi-testsuite", "commit": commit, "files": {}}
    for suite, rel, blob in upstream_files(opts.mirror, commit):
        original = git(opts.mirror, "cat-file", "blob", blob)
        kept = strip_custom_sections(original) if rel.endswith(".wasm") else original
        target = dest / suite / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(kept)
        record["files"][f"{suite}/{rel}"] = {"upstream_sha256": sha256(original), "sha256": sha256(kept)}

    license_text = git(opts.mirror, "show", f"{commit}:LICENSE")
    (dest / "LICENSE").write_bytes(license_text)
    (dest / "IMPORT.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    total = sum((dest / f).stat().st_size for f in record["files"])
    print(f"imported {len(record['files'])} files ({total} bytes) from {commit} into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
