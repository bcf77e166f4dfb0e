#!/usr/bin/env python3
"""Pair `segadapt bench --json` reports with `tools/bench_pytorch.py --json` results made in the
same session (e.g. on the device, where ours and PyTorch run as separate processes) and print
the ratio table ours/PyTorch: warm median, cold call, peak memory.

usage: tools/pair_bench.py PYTORCH.json OURS.json [OURS.json ...]
"""
import json
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    pt = {r["case"]: r for r in json.load(open(sys.argv[1]))["records"]}
    print(f"{'case':<40} {'ours warm':>10} {'PT warm':>10} {'warm x':>7} {'ours cold':>10} {'PT cold':>9} {'mem ours/PT (GiB)':>18}")
    for path in sys.argv[2:]:
        for r in json.load(open(path))["records"]:
            p = pt.get(r["case"])
            if p is None:
                continue
            ow, pw = r.get("warm_ms") or r["cold_ms"], p.get("warm_ms") or p["cold_ms"]
            mem = ""
            if r.get("peak_bytes") and p.get("peak_bytes"):
                mem = f"{r['peak_bytes'] / 2**30:.2f} / {p['peak_bytes'] / 2**30:.2f}"
            print(f"{r['case']:<40} {ow:>8.1f}ms {pw:>8.1f}ms {ow / pw:>6.2f}x {r['cold_ms'] / 1e3:>9.1f}s {p['cold_ms'] / 1e3:>8.2f}s {mem:>18}")


if __name__ == "__main__":
    main()
