#!/usr/bin/env python3
"""Wrap one host executable and its shared-library closure into an OCI image archive.

    python3 dir_image.py EXECUTABLE OUT.oci.tar

Used on the GPU machine (scripts/device/gpu-e2e.sh) to turn a freshly built CUDA program
into an image: the program goes to /app/<name>, every library `ldd` lists goes to its own
path, and the image's Entrypoint runs the program. One uncompressed layer, entries sorted,
mtime 0, uid/gid 0: the archive depends on the files only.
"""
import hashlib, io, json, os, re, subprocess, sys, tarfile


def closure(exe):
    out = subprocess.run(["ldd", exe], capture_output=True, text=True, check=True).stdout
    paths = set()
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            paths.add(m.group(1))
    return sorted(paths)


def add(tar, name, data, mode):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def driver_closure():
    """The libraries the host's libcuda.so.1 needs (libdl, libpthread, librt stubs on new
    glibc): the driver library itself is mounted into the container by the provider, but
    it loads with the image's glibc, so the image must carry what it links against."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith("libcuda.so.1 ") and "x86-64" in line:
            return [p for p in closure(line.split("=>")[-1].strip()) if "libcuda" not in p]
    return []


def layer(exe):
    files = {"app/" + os.path.basename(exe): (open(exe, "rb").read(), 0o755)}
    for lib in sorted(set(closure(exe)) | set(driver_closure())):
        files[lib.lstrip("/")] = (open(os.path.realpath(lib), "rb").read(), 0o755)
    dirs = {"proc", "dev", "sys", "tmp", "input", "output"}
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in sorted(dirs):
            add_dir(tar, d)
        for path in sorted(files):
            data, mode = files[path]
            add(tar, path, data, mode)
    return buf.getvalue()


def blob(tar, data):
    digest = hashlib.sha256(data).hexdigest()
    add(tar, "blobs/sha256/" + digest, data, 0o644)
    return "sha256:" + digest


def main(exe, out):
    lay = layer(exe)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/app/" + os.path.basename(exe)], "Env": ["PATH=/app:/usr/bin:/bin", "LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(lay).hexdigest()]},
    }
    cfg = json.dumps(config, sort_keys=True).encode()
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
        layer_digest = blob(tar, lay)
        cfg_digest = blob(tar, cfg)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": len(cfg)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(lay)}],
        }, sort_keys=True).encode()
        man_digest = blob(tar, manifest)
        index = json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest, "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"}}]}, sort_keys=True).encode()
        add(tar, "index.json", index, 0o644)
    print(f"{out}: {len(lay) >> 20} MiB layer, {len(closure(exe))} libraries")


if __name__ == "__main__":
    main(*sys.argv[1:3])
