#!/usr/bin/env python3
"""Tables for issue 13's held-out comparison from `segadapt train --report` files.

Report files are named <set>_<method>_s<seed>.json (tools/device/nas_compare.sh writes them).
For every set and prompt (box, point) it prints each method's mean test IoU per seed and over
seeds, and the paired per-object difference against plain LoRA and against the base model:
per object the difference is averaged over the seeds both methods ran, then a bootstrap over
objects (10,000 resamples) gives a 95% interval. A run that kept no adapter is the base model
on the test set (that is what the user is left with).

    python3 tools/nas_compare_report.py DIR [DIR...] [--baseline lora] [--json out.json]
Several folders pool their runs (a later wave against an earlier wave's baseline); a run name
found in more than one folder is an error.
Standard library only.
"""
import argparse
import glob
import json
import os
import random
import re
import statistics
from collections import defaultdict

NAME = re.compile(r"^(?P<set>[^_]+)_(?P<method>.+)_s(?P<seed>\d+)$")


def objects(report, model, prompt):
    """Per-object IoU of `model` ('base' | 'adapted') on the test set, in label order."""
    t = report.get("test", {})
    if model not in t:
        model = "base"  # no adapter kept: the base model is what the run leaves
    rows = t[model][prompt]["per_image"]
    out = []
    for r in rows:
        out.extend(r.get("object_iou", []))
    return out


def bootstrap(diffs, n=10000, seed=0):
    rng = random.Random(seed)
    k = len(diffs)
    means = sorted(sum(rng.choice(diffs) for _ in range(k)) / k for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--baseline", default="lora")
    ap.add_argument("--json")
    a = ap.parse_args()
    runs = defaultdict(dict)  # (set, method) -> seed -> report
    seen = {}
    paths = [p for d in a.dirs for p in sorted(glob.glob(os.path.join(d, "*.json")))]
    for p in paths:
        m = NAME.match(os.path.basename(p)[:-5])
        if not m:
            continue
        with open(p) as f:
            try:
                rep = json.load(f)
            except json.JSONDecodeError:
                continue
        if "test" not in rep:
            continue
        if m.group(0) in seen:
            raise SystemExit(f"{m.group(0)} is in {seen[m.group(0)]} and {p}: one run per name")
        seen[m.group(0)] = p
        runs[(m["set"], m["method"])][int(m["seed"])] = rep
    summary = {}
    for s in sorted({k[0] for k in runs}):
        methods = sorted(m for (ss, m) in runs if ss == s)
        print(f"\n## set {s}\n")
        for prompt in ["box", "point"]:
            print(f"### {prompt} prompts: test IoU (mean over objects), paired per-object differences\n")
            print("| method | seeds | IoU per seed | mean | Δ vs base [95% CI] | Δ vs "
                  f"{a.baseline} [95% CI] | kept adapter | chosen ops (file) | step s (median) |")
            print("|---|---|---|---|---|---|---|---|---|")
            for method in methods:
                seeds = runs[(s, method)]
                per_seed = {sd: objects(r, "adapted", prompt) for sd, r in seeds.items()}
                base = {sd: objects(r, "base", prompt) for sd, r in seeds.items()}
                means = {sd: statistics.fmean(v) for sd, v in per_seed.items() if v}
                row_mean = statistics.fmean(means.values()) if means else float("nan")

                def paired(other):
                    common = [sd for sd in per_seed if sd in other and len(other[sd]) == len(per_seed[sd])]
                    if not common:
                        return None
                    k = len(per_seed[common[0]])
                    d = [statistics.fmean(per_seed[sd][i] - other[sd][i] for sd in common) for i in range(k)]
                    lo, hi = bootstrap(d)
                    return statistics.fmean(d), lo, hi, len(common)

                vb = paired(base)
                bl = runs.get((s, a.baseline), {})
                other = {sd: objects(r, "adapted", prompt) for sd, r in bl.items()}
                vl = paired(other) if method != a.baseline else None
                fmt = lambda v: "–" if v is None else f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]"
                kept = sum(1 for r in seeds.values() if r.get("validation", {}).get("improved"))
                ops = defaultdict(int)
                for r in seeds.values():
                    for c in r.get("file_cells") or []:
                        ops[c.get("chosen") or c["state"]["state"]] += 1
                steps = [r.get("step_time", {}).get("median_s") for r in seeds.values()]
                steps = [x for x in steps if x]
                step_s = f"{statistics.median(steps):.3f}" if steps else "–"
                ops_s = ", ".join(f"{o}×{n}" for o, n in sorted(ops.items())) or "–"
                per_seed_s = ", ".join(f"{means[sd]:.3f}" for sd in sorted(means))
                print(f"| {method} | {len(seeds)} | {per_seed_s} | {row_mean:.4f} | {fmt(vb)} | "
                      f"{fmt(vl)} | {kept}/{len(seeds)} | {ops_s} | {step_s} |")
                summary[f"{s}/{method}/{prompt}"] = {
                    "per_seed": means, "mean": row_mean,
                    "vs_base": vb, "vs_baseline": vl, "kept": kept,
                }
            base_means = {sd: statistics.fmean(objects(r, "base", prompt)) for sd, r in runs[(s, methods[0])].items()}
            print(f"\nbase model: IoU {statistics.fmean(base_means.values()):.4f} ({len(objects(next(iter(runs[(s, methods[0])].values())), 'base', prompt))} objects)\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
