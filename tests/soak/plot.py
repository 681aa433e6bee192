#!/usr/bin/env python3
"""Draws the soak's CSV (tests/soak/soak.c writes it) as a PNG: resident memory (and
malloc's bytes in use and held), open fds and live children, and calls per second,
against time, with the warm-up shaded.

    python3 tests/soak/plot.py target/soak/soak.csv target/soak/soak.png [--title TEXT]

Needs matplotlib (`make soak` installs it into .venv from tests/soak/requirements.txt).
"""

import argparse
import csv
import sys


def warm_up_s(total_s):
    """The soak's warm-up (growth_check in soak.c): 20% of the run, at least two minutes
    (half of a run under four minutes)."""
    floor = 120 if total_s >= 240 else total_s / 2
    return max(total_s * 0.2, floor)


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"plot.py: {path} has no samples")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("png")
    parser.add_argument("--title", default="weft soak")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read(args.csv)
    total_s = float(rows[-1]["t_s"])
    minutes = total_s >= 300
    scale, unit = (60.0, "minutes") if minutes else (1.0, "seconds")
    t = [float(r["t_s"]) / scale for r in rows]
    rss = [int(r["rss_kb"]) / 1024 for r in rows]
    heap = [int(r["heap_kb"]) / 1024 for r in rows]
    held = [int(r["held_kb"]) / 1024 for r in rows]
    fds = [int(r["fds"]) for r in rows]
    kids = [int(r["children"]) for r in rows]
    ops = [float(r["ops_s"]) / 1000 for r in rows]
    warm = warm_up_s(total_s) / scale

    fig, (ax_rss, ax_fds, ax_ops) = plt.subplots(3, 1, figsize=(9, 8), sharex=True,
                                                 gridspec_kw={"height_ratios": [3, 2, 2]})
    for ax in (ax_rss, ax_fds, ax_ops):
        ax.axvspan(0, warm, color="0.92", zorder=0)
        ax.grid(True, color="0.85", linewidth=0.6)
    ax_rss.text(warm / 2, 0.02, "warm-up", transform=ax_rss.get_xaxis_transform(), ha="center", color="0.4")

    ax_rss.plot(t, rss, marker="o", markersize=3, color="tab:blue", label="RSS")
    ax_rss.plot(t, held, marker=".", markersize=3, color="tab:cyan", label="malloc: held from the system")
    ax_rss.plot(t, heap, marker=".", markersize=3, color="tab:gray", label="malloc: in use")
    after = [i for i, x in enumerate(t) if x + 0.5 / scale >= warm]
    if after:
        base = rss[after[0]]
        limit = base + max(16.0, 0.25 * base)
        ax_rss.axhline(limit, color="tab:red", linestyle="--", linewidth=1,
                       label=f"fail above: baseline + max(16 MB, 25%) = {limit:.1f} MB")
    ax_rss.set_ylabel("memory (MB)")
    ax_rss.set_ylim(bottom=0)
    ax_rss.legend(loc="center right", fontsize=8)

    ax_fds.plot(t, fds, marker="o", markersize=3, color="tab:green", label="open fds")
    ax_fds.plot(t, kids, marker=".", markersize=3, color="tab:orange", label="live children")
    ax_fds.set_ylabel("count")
    ax_fds.set_ylim(bottom=0)
    ax_fds.legend(loc="lower right", fontsize=8)

    ax_ops.plot(t, ops, marker="o", markersize=3, color="tab:purple")
    ax_ops.set_ylabel("calls/s (thousands)")
    ax_ops.set_ylim(bottom=0)
    ax_ops.set_xlabel(unit)

    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)
    print(f"plot.py: wrote {args.png}")


if __name__ == "__main__":
    main()
