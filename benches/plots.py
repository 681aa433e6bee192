"""The report's PNG plots (matplotlib), drawn by benches/report.py from what it computed.

Each function takes plain data and a path; none reads the suites' JSON itself, so the
report's numbers and its plots cannot disagree. Import fails without matplotlib: the
report then says so and keeps its tables.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

PLAIN = FuncFormatter(lambda v, _: "%g" % v)
# minor ticks of a log axis: only 2 and 5 times a power of ten are labelled
SOME = FuncFormatter(lambda v, _: "%g" % v if ("%.0e" % v)[0] in "25" else "")


def plain_log(axis):
    """A log axis labelled 0.2, 0.5, 1, 2, 5, ... instead of 5 × 10^-1."""
    axis.set_major_formatter(PLAIN)
    axis.set_minor_formatter(SOME)


def ratio_chart(bars, path, title):
    """bars: [(label, ratio, goal or None, met or None)], ratio = how many times better
    weft is than the best peer (above 1: weft better), goal in the same units. A
    horizontal bar per entry on a log axis; the goal as a black tick on its bar."""
    bars = list(reversed(bars))
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(bars) + 1.6))
    ys = range(len(bars))
    colors = ["#3a923a" if met else "#c8423b" if met is False else "#8c8c8c"
              for _, _, _, met in bars]
    ax.barh(list(ys), [max(r, 1e-3) for _, r, _, _ in bars], color=colors, height=0.6)
    for y, (_, r, goal, _) in zip(ys, bars):
        if goal:
            ax.plot([goal, goal], [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text(max(r, 1e-3) * 1.04, y, "%.2f×" % r, va="center", fontsize=8)
    ax.axvline(1.0, color="#444444", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([label for label, _, _, _ in bars], fontsize=8)
    ax.set_xlabel("weft vs the best peer, × better (above 1: weft is better); "
                  "black tick: the goal; green: met, red: missed", fontsize=9)
    ax.set_title(title, fontsize=10)
    lo = min([r for _, r, _, _ in bars] + [g for _, _, g, _ in bars if g] + [0.5])
    hi = max([r for _, r, _, _ in bars] + [g for _, _, g, _ in bars if g] + [2.0])
    ax.set_xlim(lo / 1.5, hi * 2.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lateness_histograms(series, path, title):
    """series: [(system, [lateness us, ...])]: a histogram each, one x axis (ms)."""
    series = [(s, v) for s, v in series if v]
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 1.7 * len(series) + 1), sharex=True)
    if len(series) == 1:
        axes = [axes]
    every = sorted(x for _, v in series for x in v)
    lo = every[int(len(every) * 0.001)] / 1e3
    hi = every[int(len(every) * 0.999) - 1] / 1e3
    lo, hi = min(lo, 0.0), max(hi, 0.5)
    bins = [lo + (hi - lo) * i / 120 for i in range(121)]
    for ax, (system, values) in zip(axes, series):
        ms = [min(max(v / 1e3, lo), hi) for v in values]
        ax.hist(ms, bins=bins, color="#4a78b0")
        med = sorted(values)[len(values) // 2] / 1e3
        ax.axvline(0.0, color="black", linewidth=1)
        ax.axvline(med, color="#c8423b", linestyle="--", linewidth=1)
        ax.set_ylabel(system, rotation=0, ha="right", va="center", fontsize=9)
        ax.text(0.99, 0.8, "median %+.3f ms, %d timers" % (med, len(values)),
                transform=ax.transAxes, ha="right", fontsize=8)
    axes[-1].set_xlabel("callback time − deadline, ms (below 0: early; clipped to the "
                        "0.1–99.9 percentiles of all)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling_curves(curves, path, title):
    """curves: [(title, y label, {system: [(size, median, lo, hi)]})]: a panel each,
    log-log, error bars from lo to hi."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4.2))
    if len(curves) == 1:
        axes = [axes]
    for ax, (name, ylabel, lines) in zip(axes, curves):
        for system, pts in lines.items():
            pts = [p for p in pts if p[1] is not None]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            err = [[y - p[2] for y, p in zip(ys, pts)], [p[3] - y for y, p in zip(ys, pts)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=system)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PLAIN)
        ax.yaxis.set_minor_formatter(SOME)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("N")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
