#!/usr/bin/env python3
"""Sums Nsight Compute's per-launch durations (`ncu --csv --metrics gpu__time_duration.sum`)
by kernel: launches, total and mean microseconds, largest first. Usage: kernel-times.py LOG."""
import csv
import sys
from collections import defaultdict

def main(path):
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]
    total = defaultdict(float)
    count = defaultdict(int)
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(row.get("Metric Unit"), 1e-3)
        value = float(row["Metric Value"].replace(",", "")) * scale
        total[row["Kernel Name"]] += value
        count[row["Kernel Name"]] += 1
    grand = sum(total.values())
    print(f"{'kernel':<72} {'launches':>8} {'total us':>10} {'mean us':>9} {'share':>6}")
    for name in sorted(total, key=total.get, reverse=True):
        print(f"{name[:72]:<72} {count[name]:>8} {total[name]:>10.1f} "
              f"{total[name] / count[name]:>9.2f} {100 * total[name] / grand:>5.1f}%")
    print(f"{'all':<72} {sum(count.values()):>8} {grand:>10.1f}")

if __name__ == "__main__":
    main(sys.argv[1])
