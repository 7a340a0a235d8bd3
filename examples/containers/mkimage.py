#!/usr/bin/env python3
"""Assemble the sample OCI image archives from unpacked Debian packages.

    python3 mkimage.py DEBROOT OUTDIR [NAME...]

DEBROOT/<package>/ holds each package of packages.lock unpacked with
`dpkg-deb -x` (build.sh does that); OUTDIR/<name>.oci.tar is written for
every image (or only the NAMEs given).

Every byte is fixed by the inputs: tar entries sorted by path, mtime 0,
uid/gid 0 with empty user/group names, modes normalised (0755 directories
and executables, 0644 other files), GNU tar headers (no pax timestamps),
JSON with sorted keys and no whitespace, gzip via `gzip -n -9` (no name,
no timestamp). Nothing here reads the clock, the umask, the locale or the
build directory's path.
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES_SRC = os.path.join(HERE, "images")
CREATED = "1970-01-01T00:00:00Z"  # the epoch: the build never reads the clock

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_INDEX = "application/vnd.oci.image.index.v1+json"

ENV = ["PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC", "HOME=/"]


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_lock():
    pkgs = {}
    with open(os.path.join(HERE, "packages.lock")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            namever, _digest = line.split()
            name, ver = namever.split("=", 1)
            pkgs[name] = ver
    return pkgs


class Layer:
    """A set of entries: path (no leading '/') -> (kind, mode, payload)."""

    def __init__(self, debroot):
        self.debroot = debroot
        self.entries = {}

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            kind = self.entries.get(d, ("dir",))[0]
            if kind != "dir":
                raise SystemExit("mkimage: %s is not a directory in the layer" % d)
            self.entries[d] = ("dir", 0o755, None)

    def dir(self, path):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("dir", 0o755, None)

    def file(self, path, data, executable=False):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("file", 0o755 if executable else 0o644, data)

    def symlink(self, path, target):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("symlink", 0o777, target)

    def local(self, path, src, executable=False):
        with open(os.path.join(IMAGES_SRC, src), "rb") as f:
            self.file(path, f.read(), executable)

    def deb(self, pkg, path, dest=None):
        """Copy PATH exactly as package PKG ships it (a symlink stays a
        symlink, with the package's target; the mode is normalised)."""
        src = os.path.join(self.debroot, pkg, path.strip("/"))
        dest = dest or path
        if os.path.islink(src):
            self.symlink(dest, os.readlink(src))
        elif os.path.isfile(src):
            with open(src, "rb") as f:
                data = f.read()
            self.file(dest, data, executable=bool(os.stat(src).st_mode & 0o111))
        else:
            raise SystemExit("mkimage: %s does not ship %s" % (pkg, path))

    def lib(self, pkg, d, soname):
        """A shared library by its soname: the soname symlink as the package
        ships it and the file it points to (same directory)."""
        path = d + "/" + soname
        self.deb(pkg, path)
        src = os.path.join(self.debroot, pkg, path)
        if os.path.islink(src):
            target = os.readlink(src)
            if "/" in target:
                raise SystemExit("mkimage: %s: %s points outside its directory" % (pkg, path))
            self.deb(pkg, d + "/" + target)

    def copyright(self, pkg):
        self.deb(pkg, "usr/share/doc/%s/copyright" % pkg)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
            for path in sorted(self.entries, key=lambda p: p.encode("utf-8")):
                kind, mode, payload = self.entries[path]
                ti = tarfile.TarInfo(path)
                ti.mode = mode
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mtime = 0
                if kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    t.addfile(ti)
                elif kind == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = payload
                    t.addfile(ti)
                else:
                    ti.type = tarfile.REGTYPE
                    ti.size = len(payload)
                    t.addfile(ti, io.BytesIO(payload))
        return buf.getvalue()


def gzip_n(data):
    return subprocess.run(["gzip", "-n", "-9", "-c"], input=data, stdout=subprocess.PIPE, check=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}).stdout


def busybox_applets(layer, debroot):
    """/bin/busybox and a symlink /bin/APPLET -> busybox for every applet."""
    layer.deb("busybox-static", "bin/busybox")
    out = subprocess.run([os.path.join(debroot, "busybox-static", "bin/busybox"), "--list"],
                         stdout=subprocess.PIPE, check=True, env={"LC_ALL": "C"}).stdout.decode("ascii")
    for applet in sorted(set(out.split())):
        if applet != "busybox":
            layer.symlink("bin/" + applet, "busybox")
    layer.copyright("busybox-static")


def mountpoints(layer):
    # Empty mount points for the runtime: the root file system is read-only,
    # so they must exist in the image.
    for d in ("dev", "proc", "sys", "tmp", "input", "output"):
        layer.dir(d)


# ---- the images -------------------------------------------------------------

def image_busybox_hash(debroot):
    l = Layer(debroot)
    busybox_applets(l, debroot)
    l.local("app/hash.sh", "busybox-hash/hash.sh", executable=True)
    mountpoints(l)
    return {
        "layers": [(l, False, "busybox-static applets + /app/hash.sh")],
        "config": {"Entrypoint": ["/bin/sh", "/app/hash.sh"], "Cmd": [], "WorkingDir": "/"},
        "packages": ["busybox-static"],
        "description": "sha256 of every file under /input to /output/hashes.txt",
    }


LIBDIR = "lib/x86_64-linux-gnu"
USRLIBDIR = "usr/lib/x86_64-linux-gnu"


def image_sqlite_report(debroot):
    # Layer 1, a reusable base: a shell (busybox) and the C library.
    base = Layer(debroot)
    busybox_applets(base, debroot)
    base.deb("libc6", "lib64/ld-linux-x86-64.so.2")  # the PT_INTERP, a symlink into lib/
    for f in ("ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6"):
        base.deb("libc6", LIBDIR + "/" + f)
    base.copyright("libc6")
    mountpoints(base)
    # Layer 2: sqlite3 and exactly the libraries its DT_NEEDED closure adds
    # (libsqlite3.so.0, libreadline.so.8 -> libtinfo.so.6, libz.so.1), plus the app.
    app = Layer(debroot)
    app.deb("sqlite3", "usr/bin/sqlite3")
    for pkg, d, soname in (
        ("libsqlite3-0", USRLIBDIR, "libsqlite3.so.0"),
        ("libreadline8", LIBDIR, "libreadline.so.8"),
        ("libtinfo6", LIBDIR, "libtinfo.so.6"),
        ("zlib1g", LIBDIR, "libz.so.1"),
    ):
        app.lib(pkg, d, soname)
        app.copyright(pkg)
    app.copyright("sqlite3")
    app.local("app/report.sh", "sqlite-report/report.sh", executable=True)
    app.local("app/init.sql", "sqlite-report/init.sql")
    app.local("app/report.sql", "sqlite-report/report.sql")
    return {
        "layers": [(base, True, "busybox-static applets + glibc loader, libc, libm"),
                   (app, True, "sqlite3 + libsqlite3, readline, tinfo, zlib + /app/report.*")],
        "config": {"Entrypoint": ["/bin/sh", "/app/report.sh"], "Cmd": ["sales.csv"], "WorkingDir": "/"},
        "packages": ["busybox-static", "libc6", "sqlite3", "libsqlite3-0", "libreadline8", "libtinfo6", "zlib1g"],
        "description": "sqlite3 report over /input/sales.csv to /output/*.csv",
    }


def elf_needed(data):
    """DT_NEEDED sonames and PT_INTERP of a 64-bit little-endian ELF file,
    or None when DATA is not one."""
    import struct
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic, interp = [], None, None
    for i in range(phnum):
        p_type, _f, p_off, p_vaddr, _pa, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_off, p_filesz))
        elif p_type == 2:
            dynamic = (p_off, p_filesz)
        elif p_type == 3:
            interp = data[p_off:p_off + p_filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return [], interp
    strtab, needed = None, []
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == 5:
            strtab = val
        elif tag == 1:
            needed.append(val)
    base = next(o + (strtab - v) for v, o, n in loads if v <= strtab < v + n)
    names = [data[base + n:data.index(b"\0", base + n)].decode() for n in needed]
    return names, interp


def check_closure(name, layers):
    """Every ELF file's interpreter and DT_NEEDED libraries resolve inside the
    image (glibc's default search path, no ld.so.cache), so a missing
    library fails the build rather than the job."""
    merged = {}
    for layer, _c, _w in layers:
        merged.update(layer.entries)

    def resolve(path, depth=0):
        while depth < 16 and path in merged and merged[path][0] == "symlink":
            t = merged[path][2]
            path = t.lstrip("/") if t.startswith("/") else os.path.normpath(os.path.join(os.path.dirname(path), t))
            depth += 1
        return path if path in merged and merged[path][0] == "file" else None

    for path, (kind, _m, data) in sorted(merged.items()):
        if kind != "file":
            continue
        info = elf_needed(data)
        if info is None:
            continue
        needed, interp = info
        if interp and not resolve(interp.lstrip("/")):
            raise SystemExit("mkimage: %s: /%s needs interpreter %s, not in the image" % (name, path, interp))
        for so in needed:
            if not any(resolve(d + "/" + so) for d in (LIBDIR, USRLIBDIR, "lib", "usr/lib")):
                raise SystemExit("mkimage: %s: /%s needs %s, not in the image" % (name, path, so))


IMAGES = {"busybox-hash": image_busybox_hash, "sqlite-report": image_sqlite_report}


def build(name, debroot, lock):
    spec = IMAGES[name](debroot)
    check_closure(name, spec["layers"])
    blobs = {}
    layer_descs, diff_ids, history = [], [], []
    for layer, compress, what in spec["layers"]:
        raw = layer.tar()
        diff_ids.append("sha256:" + sha256(raw))
        blob = gzip_n(raw) if compress else raw
        blobs[sha256(blob)] = blob
        layer_descs.append({"mediaType": MT_LAYER_GZ if compress else MT_LAYER,
                            "digest": "sha256:" + sha256(blob), "size": len(blob)})
        history.append({"created": CREATED, "created_by": "examples/containers/mkimage.py: " + what})
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": spec["description"],
        "org.opencontainers.image.source": "examples/containers (Agora)",
        "org.agora.debian-packages": " ".join("%s=%s" % (p, lock[p]) for p in sorted(spec["packages"])),
    }
    cfg = dict(spec["config"])
    cfg["Env"] = list(ENV)
    cfg["Labels"] = labels
    config = canonical_json({
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    })
    blobs[sha256(config)] = config
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": "sha256:" + sha256(config), "size": len(config)},
        "layers": layer_descs,
        "annotations": {"org.opencontainers.image.title": name},
    })
    blobs[sha256(manifest)] = manifest
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": "sha256:" + sha256(manifest),
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": name},
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    })
    # The archive: an OCI image layout as a tar, built with the same fixed fields.
    arch = Layer(debroot)
    arch.file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    arch.file("index.json", index)
    arch.dir("blobs/sha256")
    for hexd, data in blobs.items():
        arch.file("blobs/sha256/" + hexd, data)
    return arch.tar()


def main():
    if len(sys.argv) < 3:
        print("usage: mkimage.py DEBROOT OUTDIR [NAME...]", file=sys.stderr)
        return 2
    debroot, outdir = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or sorted(IMAGES)
    lock = read_lock()
    for name in names:
        if name not in IMAGES:
            print("mkimage: no image %r (have %s)" % (name, ", ".join(sorted(IMAGES))), file=sys.stderr)
            return 2
        data = build(name, debroot, lock)
        path = os.path.join(outdir, name + ".oci.tar")
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main())
