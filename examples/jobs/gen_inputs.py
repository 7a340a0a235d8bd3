#!/usr/bin/env python3
"""Generate the sample inputs in examples/jobs/inputs/ deterministically.

    python3 gen_inputs.py [OUTDIR]     (default: inputs/ next to this script)

Writes
  access.log  4,000 lines of Combined Log Format for 2026-11-22 (for logagg),
              with a handful of malformed lines mixed in;
  batch.f32   256 rows x 64 little-endian float32 values (for nn): noisy
              8x8 "glyphs" drawn from ten prototypes, values in [0, 1].

Uses its own SplitMix64 generator (not Python's `random`), so the bytes do
not depend on the Python version. build.sh --check regenerates them into a
temporary directory and compares them with the committed files.
"""
import os
import struct
import sys

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n

    def u01(self):
        return (self.next() >> 11) / float(1 << 53)

    def pick(self, weighted):
        total = sum(w for _, w in weighted)
        x = self.below(total)
        for item, w in weighted:
            if x < w:
                return item
            x -= w
        raise AssertionError


PATHS = [
    ("/", 120), ("/index.html", 40), ("/api/jobs", 160), ("/api/jobs/{id}", 140),
    ("/api/offers", 90), ("/api/offers?page={n}", 60), ("/api/wallet/balance", 70),
    ("/static/app.js", 110), ("/static/style.css", 100), ("/favicon.ico", 50),
    ("/login", 30), ("/docs/quickstart", 25), ("/search?q=pathtrace&page={n}", 20),
    ("/wp-login.php", 8), ("/.env", 5), ("/api/results/{id}/tile.ppm", 45),
]
METHODS = [("GET", 85), ("POST", 10), ("PUT", 2), ("DELETE", 1), ("HEAD", 2)]
STATUSES = [(200, 780), (201, 30), (204, 20), (301, 25), (304, 60), (400, 15),
            (401, 12), (403, 6), (404, 40), (429, 5), (500, 5), (502, 1), (503, 1)]
AGENTS = ["agora-cli/0.1", "Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1)", "python-requests/2.32"]
MALFORMED = [
    "",
    "garbage line without structure",
    '198.51.100.7 - - [22/Nov/2026:25:61:00 +0000] "GET / HTTP/1.1" 200 12',
    '198.51.100.7 - - [22/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 2OO 12',
    '198.51.100.7 - - [22/Nov/2026:10:00:00 +0000] "BROKEN" 200 12',
    '198.51.100.7 - - 22/Nov/2026:10:00:00 "GET / HTTP/1.1" 200 12',
]


def gen_log(rng, n=4000):
    ips = ["203.0.113.%d" % (1 + rng.below(254)) for _ in range(60)]
    ips += ["198.51.100.%d" % (1 + rng.below(254)) for _ in range(60)]
    ips += ["192.0.2.%d" % (1 + rng.below(254)) for _ in range(30)]
    out = []
    t = 0
    step = 86400 * 5 // (2 * n)  # mean gap chosen so the day is covered
    for i in range(n):
        if rng.below(500) == 0:
            out.append(MALFORMED[rng.below(len(MALFORMED))])
            continue
        # busier in the afternoon: shorter gaps between 12:00 and 18:00
        hour = t // 3600
        gap = rng.below(step // 2 if 12 <= hour < 18 else step)
        t = min(t + gap, 86399)
        hh, mm, ss = t // 3600, (t // 60) % 60, t % 60
        # hot clients: a few IPs make most of the requests
        ip = ips[rng.below(8)] if rng.below(3) == 0 else ips[rng.below(len(ips))]
        path = rng.pick(PATHS).replace("{id}", str(1000 + rng.below(40))).replace("{n}", str(1 + rng.below(5)))
        method = rng.pick(METHODS)
        status = rng.pick(STATUSES)
        if path in ("/wp-login.php", "/.env"):
            status = 404
        size = "-" if status in (204, 304) else str(200 + rng.below(60000))
        user = "-" if rng.below(4) else "user%d" % rng.below(20)
        agent = AGENTS[rng.below(len(AGENTS))]
        out.append('%s - %s [22/Nov/2026:%02d:%02d:%02d +0000] "%s %s HTTP/1.1" %d %s "-" "%s"'
                   % (ip, user, hh, mm, ss, method, path, status, size, agent))
    return "".join(line + "\n" for line in out).encode("ascii")


def gen_batch(rng, rows=256, dim=64):
    protos = []
    for k in range(10):
        protos.append([1.0 if rng.below(3) == 0 else 0.0 for _ in range(dim)])
    buf = bytearray()
    for r in range(rows):
        p = protos[rng.below(10)]
        for j in range(dim):
            x = p[j] * (0.7 + 0.3 * rng.u01()) + 0.25 * (rng.u01() - 0.5)
            x = min(1.0, max(0.0, x))
            buf += struct.pack("<f", x)
    return bytes(buf)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "inputs")
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "access.log"), "wb") as f:
        f.write(gen_log(SplitMix64(0xA9024A)))
    with open(os.path.join(outdir, "batch.f32"), "wb") as f:
        f.write(gen_batch(SplitMix64(0x4E4E)))


if __name__ == "__main__":
    main()
