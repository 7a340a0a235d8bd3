#!/usr/bin/env python3
"""Generate the sample inputs of the container examples.

    python3 gen_inputs.py [OUTDIR]      (default: inputs/ next to this file)

Writes OUTDIR/sales.csv (a year of synthetic sales, 3,000 rows, a header
line, some quoted fields with commas) and OUTDIR/notes.txt. Uses its own
SplitMix64, so the bytes do not depend on the Python version or platform.
"""
import os
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


REGIONS = ["central", "east", "north", "south", "west"]
# name, list price in cents
PRODUCTS = [
    ("anvil", 4999),
    ("bolt pack", 399),
    ("cable, 2m", 1299),
    ("drill", 8950),
    ("gear set", 2475),
    ("hinge", 250),
    ("lamp, desk", 3420),
    ("saw", 2199),
]
DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def csv_field(s):
    if any(c in s for c in ',"\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def sales_csv():
    rng = SplitMix64(20261204)
    days = [(m + 1, d + 1) for m, n in enumerate(DAYS_IN_MONTH) for d in range(n)]
    rows = []
    for _ in range(3000):
        month, day = days[rng.below(len(days))]
        region = REGIONS[rng.below(len(REGIONS))]
        name, price = PRODUCTS[rng.below(len(PRODUCTS))]
        units = 1 + rng.below(12) + (rng.below(40) if rng.below(20) == 0 else 0)
        discount = [0, 0, 0, 5, 10, 15][rng.below(6)]  # percent
        unit_price = price * (100 - discount) // 100
        rows.append(("2026-%02d-%02d" % (month, day), region, name, units, unit_price))
    rows.sort(key=lambda r: r[0])  # stable: equal dates keep generation order
    out = ["date,region,product,units,unit_price_cents"]
    for r in rows:
        out.append(",".join([r[0], r[1], csv_field(r[2]), str(r[3]), str(r[4])]))
    return ("\n".join(out) + "\n").encode("ascii")


NOTES = b"""Sample inputs for the Agora container examples.

busybox-hash hashes every regular file under /input (this one included);
sqlite-report imports sales.csv into an in-memory SQLite database and
writes a report. Both outputs are pinned in expected-outputs.sha256.
"""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "inputs")
    os.makedirs(out, exist_ok=True)
    for name, data in (("sales.csv", sales_csv()), ("notes.txt", NOTES)):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
