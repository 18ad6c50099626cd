"""The bench's PNG plots: latency.png (what the table shows) and accuracy_latency.png (AUC vs latency).

latency.png plots exactly the table's p50 per batch — labelled so — with the
IQR as error bars and unstable rows drawn hollow and dashed, under a title that
names the model, input size, threads and machine; the legend sits outside the
axes so it never hides data. accuracy_latency.png uses the metrics ISIC ranks
by (mean AUC, and MEL AUC), each row with its own marker and colour, unstable rows hollow and
labelled so, on a log latency axis with few, slanted labels.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.utils.io import atomic_path

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")


def _label(r: dict[str, Any]) -> str:
    return f"{r['backend']} {r['precision']}"


def _styles(labels: list[str]) -> dict[str, tuple[str, str]]:
    """A (marker, colour) pair per row label, stable across both plots."""
    colours = [f"C{i}" for i in range(10)]
    return {label: (m, c) for label, m, c in zip(labels, itertools.cycle(MARKERS), itertools.cycle(colours))}


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def latency_plot(result: dict[str, Any], ok: list[dict[str, Any]], styles: dict[str, tuple[str, str]],
                 title: str, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label, (marker, colour) in styles.items():
        rows = sorted((r for r in ok if _label(r) == label), key=lambda r: r["batch_size"])
        if not rows:
            continue
        x = [r["batch_size"] for r in rows]
        y = [r["latency"]["host"]["p50_ms"] for r in rows]
        err = [r["latency"]["host"]["iqr_ms"] / 2 for r in rows]
        unstable = any(r["stability"]["unstable"] for r in rows)
        ax.errorbar(x, y, yerr=err, marker=marker, color=colour, capsize=3, linestyle="--" if unstable else "-",
                    markerfacecolor="none" if unstable else colour, label=label + (" (unstable)" if unstable else ""))
    sizes = sorted({r["batch_size"] for r in ok})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("p50 latency per batch (ms), bars: IQR")
    ax.set_title(f"dsedge bench: {title}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    _save(fig, path)


def accuracy_plot(result: dict[str, Any], ok: list[dict[str, Any]], styles: dict[str, tuple[str, str]],
                  title: str, path: Path) -> bool:
    """Mean AUC and MEL AUC against p50 at the smallest batch; False when no row has accuracy."""
    import matplotlib.pyplot as plt

    smallest = min(r["batch_size"] for r in ok)
    rows = [r for r in ok if r.get("accuracy") and r["batch_size"] == smallest]
    if not rows:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True)
    for ax, key, name in ((axes[0], "mean_auc", "mean AUC (MEL, SK)"), (axes[1], "mel_auc", "MEL AUC")):
        for r in rows:
            value = r["accuracy"].get(key)
            if value is None:
                continue
            marker, colour = styles[_label(r)]
            unstable = bool(r["stability"]["unstable"])
            ax.scatter(r["latency"]["host"]["p50_ms"], value, marker=marker, s=60,
                       facecolors="none" if unstable else colour, edgecolors=colour,
                       label=_label(r) + (" (unstable)" if unstable else ""))
        _latency_axis(ax, [r["latency"]["host"]["p50_ms"] for r in rows])
        ax.set_xlabel(f"p50 latency at batch {smallest} (ms)")
        ax.set_ylabel(f"{name} on {result['data']['split']}")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.suptitle(f"accuracy vs latency: {title}", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return True


def _latency_axis(ax: Any, values: list[float]) -> None:
    """Log x axis with a few plain labels (1, 2, 5 per decade at most), slanted so they never overlap.

    Labelling every minor tick of a log axis ("%g" on minors) printed 20 30 40 50 60 70 80 90 on top
    of each other whenever the rows spanned less than a decade.
    """
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    lo, hi = min(values), max(values)
    decades = np.log10(max(hi, 1e-9) / max(lo, 1e-9))
    subs = (1.0,) if decades > 2 else (1.0, 2.0, 5.0) if decades > 1 else (1.0, 2.0, 3.0, 5.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))  # 10, 20, 50 ms rather than 2x10^1
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo / 1.3, hi * 1.3)
    ax.tick_params(axis="x", labelrotation=30)


def write_plots(result: dict[str, Any], out: Path, title: str) -> list[str]:
    """Write the plots into `out`; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    if not ok:
        return []
    styles = _styles(list(dict.fromkeys(_label(r) for r in ok)))
    latency_plot(result, ok, styles, title, out / "latency.png")
    written = ["latency.png"]
    if result.get("data") and accuracy_plot(result, ok, styles, title, out / "accuracy_latency.png"):
        written.append("accuracy_latency.png")
    return written
