#!/usr/bin/env python3
"""Chart of a benches/run.py CSV: one panel per metric, a bar per implementation at the median,
error bars from min to max.

    python3 benches/chart.py benches/results/2026-11-22.csv benches/results/2026-11-22.png [TITLE]

Needs matplotlib (Debian: python3-matplotlib, so /usr/bin/python3).
"""
import csv
import math
import os
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import KEY_METRICS, LABEL, IMPLS  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"ss-smol": "#2a7ab9", "libev": "#d9822b", "ssrust": "#6a9f3a"}


def main():
    src, dst = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else os.path.basename(src)
    vals = {}
    with open(src, newline="") as f:
        for r in csv.DictReader(f):
            vals.setdefault(r["metric"], {}).setdefault(r["impl"], []).append(float(r["value"]))
    panels = [(k, lab, unit, hib) for k, lab, unit, hib in KEY_METRICS if k in vals]
    if not panels:
        sys.exit("no known metric in the CSV")
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (key, label, unit, hib) in zip(axes.flat, panels):
        impls = [i for i in IMPLS if i in vals[key]]
        meds = [statistics.median(vals[key][i]) for i in impls]
        lo = [m - min(vals[key][i]) for m, i in zip(meds, impls)]
        hi = [max(vals[key][i]) - m for m, i in zip(meds, impls)]
        xs = range(len(impls))
        ax.bar(xs, meds, yerr=[lo, hi], capsize=4, color=[COLOURS[i] for i in impls])
        ax.set_xticks(list(xs))
        ax.set_xticklabels([LABEL[i].replace("shadowsocks-", "ss-") for i in impls], fontsize=8)
        ax.set_title(f"{label}\n({unit}, {'higher' if hib else 'lower'} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        top = max(m + h for m, h in zip(meds, hi)) or 1
        for x, m in zip(xs, meds):
            ax.text(x, m + top * 0.02, f"{m:,.0f}" if m >= 100 else f"{m:.2g}", ha="center",
                    va="bottom", fontsize=7)
        ax.set_ylim(0, top * 1.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.2 * rows)))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
