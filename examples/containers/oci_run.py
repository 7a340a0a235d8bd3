#!/usr/bin/env python3
"""Unpack an OCI image archive and run it under runc, the way a provider
would (independent of Agora's Rust code; used by test.sh).

    oci_run.py unpack ARCHIVE BUNDLE
        verify the archive (every descriptor's sha256 and size, every
        layer's diff_id), apply the layers in order (whiteouts and opaque
        markers honoured) to BUNDLE/rootfs and write BUNDLE/image.json
        (Entrypoint, Cmd, Env, WorkingDir)
    oci_run.py run BUNDLE INPUT_DIR OUTPUT_DIR [--entrypoint JSON] [-- ARG...]
        write BUNDLE/config.json (read-only root, INPUT_DIR read-only at
        /input, OUTPUT_DIR at /output, a 64 MiB tmpfs /tmp, fresh pid, net,
        ipc, uts and mount namespaces, no capabilities, no new privileges)
        and `runc run` it in the foreground with this process's stdio.
        ARGs replace the image's Cmd, --entrypoint '["/bin/sh","-c"]' its
        Entrypoint. Exits with the container's status.
        RUNC (default runc) and RUNC_ROOT (runc's state directory) apply.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile


def die(msg):
    print("oci_run: " + msg, file=sys.stderr)
    sys.exit(1)


def blob_reader(tar):
    members = {m.name.lstrip("./").rstrip("/"): m for m in tar.getmembers()}

    def read(path):
        m = members.get(path)
        if m is None or not m.isfile():
            die("archive has no file %s" % path)
        return tar.extractfile(m).read()

    return members, read


def verified(read, desc):
    algo, _, hexd = desc["digest"].partition(":")
    if algo != "sha256" or len(hexd) != 64:
        die("unsupported digest %s" % desc["digest"])
    data = read("blobs/sha256/" + hexd)
    if hashlib.sha256(data).hexdigest() != hexd:
        die("blob %s: content does not match its digest" % hexd)
    if len(data) != desc["size"]:
        die("blob %s: %d bytes, descriptor says %d" % (hexd, len(data), desc["size"]))
    return data


def load_image(archive):
    """-> (config dict, [uncompressed layer tar bytes])"""
    tar = tarfile.open(archive)
    members, read = blob_reader(tar)
    if "index.json" in members:
        layout = json.loads(read("oci-layout"))
        if layout.get("imageLayoutVersion") != "1.0.0":
            die("unsupported oci-layout %r" % layout)
        index = json.loads(read("index.json"))
        mans = [m for m in index["manifests"]
                if m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"]
        if len(mans) != 1:
            die("index.json must name exactly one image manifest, has %d" % len(mans))
        manifest = json.loads(verified(read, mans[0]))
        if manifest.get("config", {}).get("mediaType") != "application/vnd.oci.image.config.v1+json":
            die("unexpected config media type")
        config = json.loads(verified(read, manifest["config"]))
        layers = []
        for desc in manifest["layers"]:
            data = verified(read, desc)
            mt = desc["mediaType"]
            if mt.endswith("+gzip"):
                data = gzip.decompress(data)
            elif not mt.endswith(".tar"):
                die("unsupported layer media type %s" % mt)
            layers.append(data)
    else:
        die("%s is not an OCI image layout archive (no index.json)" % archive)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(layers):
        die("config has %d diff_ids for %d layers" % (len(diff_ids), len(layers)))
    for d, data in zip(diff_ids, layers):
        if d != "sha256:" + hashlib.sha256(data).hexdigest():
            die("a layer does not match its diff_id %s" % d)
    if config.get("os") != "linux" or config.get("architecture") != "amd64":
        die("image is for %s/%s, not linux/amd64" % (config.get("os"), config.get("architecture")))
    return config, layers


def safe_join(root, name):
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        die("layer entry %r escapes the root" % name)
    return os.path.join(root, *parts) if parts else root, parts


def remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def apply_layer(root, data):
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t:
            path, parts = safe_join(root, m.name)
            if not parts:
                continue
            # a path through a symlink we created could leave the root
            parent = root
            for p in parts[:-1]:
                parent = os.path.join(parent, p)
                if os.path.islink(parent):
                    die("layer entry %r passes through a symlink" % m.name)
            base = parts[-1]
            if base == ".wh..wh..opq":
                d = os.path.dirname(path)
                for e in os.listdir(d):
                    remove(os.path.join(d, e))
                continue
            if base.startswith(".wh."):
                victim = os.path.join(os.path.dirname(path), base[4:])
                if os.path.lexists(victim):
                    remove(victim)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path) and not (m.isdir() and os.path.isdir(path) and not os.path.islink(path)):
                remove(path)
            if m.isdir():
                os.makedirs(path, exist_ok=True)
                os.chmod(path, m.mode & 0o7777)
            elif m.isfile():
                with open(path, "wb") as f:
                    f.write(t.extractfile(m).read())
                os.chmod(path, m.mode & 0o7777)
            elif m.issym():
                os.symlink(m.linkname, path)
            elif m.islnk():
                target, _ = safe_join(root, m.linkname)
                os.link(target, path)
            else:
                die("layer entry %r: unsupported type %r" % (m.name, m.type))


def unpack(archive, bundle):
    config, layers = load_image(archive)
    rootfs = os.path.join(bundle, "rootfs")
    if os.path.exists(rootfs):
        shutil.rmtree(rootfs)
    os.makedirs(rootfs)
    for data in layers:
        apply_layer(rootfs, data)
    c = config.get("config", {})
    img = {"Entrypoint": c.get("Entrypoint") or [], "Cmd": c.get("Cmd") or [],
           "Env": c.get("Env") or [], "WorkingDir": c.get("WorkingDir") or "/"}
    with open(os.path.join(bundle, "image.json"), "w") as f:
        json.dump(img, f, sort_keys=True)


def runc_config(img, args, input_dir, output_dir):
    argv = img["Entrypoint"] + (args if args is not None else img["Cmd"])
    if not argv:
        die("image has neither Entrypoint nor Cmd and no arguments were given")
    ro = ["rbind", "ro", "nosuid", "nodev"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": img["Env"],
            "cwd": img["WorkingDir"],
            "capabilities": {"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "agora-job",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/input", "type": "bind", "source": os.path.abspath(input_dir), "options": ro},
            {"destination": "/output", "type": "bind", "source": os.path.abspath(output_dir),
             "options": ["rbind", "rw", "nosuid", "nodev"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "resources": {"memory": {"limit": 512 << 20}, "pids": {"limit": 256},
                          "devices": [{"allow": False, "access": "rwm"}]},
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                            "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def run(bundle, input_dir, output_dir, args, entrypoint=None):
    with open(os.path.join(bundle, "image.json")) as f:
        img = json.load(f)
    if entrypoint is not None:
        img["Entrypoint"] = entrypoint
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(runc_config(img, args, input_dir, output_dir), f, indent=1, sort_keys=True)
    runc = os.environ.get("RUNC", "runc")
    cmd = [runc]
    if os.environ.get("RUNC_ROOT"):
        cmd += ["--root", os.environ["RUNC_ROOT"]]
    cid = "agora-example-%d" % os.getpid()
    cmd += ["run", "--bundle", os.path.abspath(bundle), cid]
    sys.stdout.flush()
    sys.exit(subprocess.call(cmd))


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "unpack":
        unpack(a[1], a[2])
    elif len(a) >= 4 and a[0] == "run":
        args, entrypoint, rest = None, None, a[4:]
        if rest[:1] == ["--entrypoint"] and len(rest) >= 2:
            entrypoint, rest = json.loads(rest[1]), rest[2:]
        if rest:
            if rest[0] != "--":
                die("usage: oci_run.py run BUNDLE INPUT_DIR OUTPUT_DIR [--entrypoint JSON_LIST] [-- ARG...]")
            args = rest[1:]
        run(a[1], a[2], a[3], args, entrypoint)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
