"""Figure helpers shared by the notebooks: reproducible PNGs, instance overlays and the study's
interval plots.

PNGs are written with fixed metadata (no software/version stamp) and a fixed DPI, atomically,
so that a rerun with identical numbers gives byte-identical files. Images are (H, W, 3) uint8
RGB or float in [0, 1]; instance maps are (H, W) integer labels, 0 = background. Photo grids
(overlays) are saved at :data:`PHOTO_DPI` = 100 so that outlines can be read.

The interval plots draw statistics computed by the study layer (:mod:`qfcn.study.contrasts`:
Student-t 95% intervals over seeds, the same numbers as the tables); they compute none. Each
returns a caption that says what is plotted, what the bars are and n (docs/method.md §7).
Rows are dicts: ``label`` (x or y tick), ``panel`` (one subplot each: never pooled across
bit-widths or configurations), ``mean``, ``low``, ``high`` (None without an interval), ``n``
and ``values`` (per seed).

>>> inst = np.array([[0, 1, 1], [0, 1, 1]])
>>> outline(np.zeros((2, 3, 3), np.uint8), inst, color=(1, 0, 0))[..., 0].tolist()  # inner edge (not the image border)
[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
>>> label_colors(inst)[0, 0].tolist(), label_colors(inst).shape
([0.0, 0.0, 0.0], (2, 3, 3))
"""
from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from skimage.segmentation import find_boundaries

from qfcn.io import atomic_write_bytes

DPI = 72  # plots
PHOTO_DPI = 100  # grids of histology images: outlines must stay readable (issue 11)


def save(fig, path: str | Path, *, dpi: int = DPI) -> None:
    """Save a matplotlib figure as PNG at ``path`` (atomic, reproducible), close it, and, inside
    a Jupyter kernel, display the saved PNG itself, so that the notebook embeds the same bytes
    as ``figures/`` once (not a second, larger rendering)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    try:  # optional: only inside a Jupyter kernel is there anything to display
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - IPython comes with the notebook stack
        return
    if get_ipython() is not None:
        display(Image(data=buf.getvalue(), format="png"))


def mark_phases(ax, starts: Sequence[tuple[int, str]]) -> None:
    """Dotted vertical lines at the steps where training phases start, each labelled with its
    phases along the top of the axes: ``starts`` from :func:`qfcn.train.phase_starts`.

    >>> fig, ax = plt.subplots(); mark_phases(ax, [(21, "inq_1"), (31, "inq_2")])
    >>> [ln.get_xdata()[0] for ln in ax.lines], [t.get_text() for t in ax.texts]
    ([21, 31], ['inq_1', 'inq_2'])
    >>> plt.close(fig)
    """
    for step, phases in starts:
        ax.axvline(step, color="0.5", linewidth=0.6, linestyle=":")
        ax.annotate(phases, (step, 0.98), xycoords=("data", "axes fraction"), fontsize=7, rotation=90, va="top")


def outline(image: np.ndarray, instances: np.ndarray, color=(0.0, 1.0, 0.2), thick: bool = False) -> np.ndarray:
    """Image (H, W, 3) uint8 with the boundaries of every instance of ``instances`` (H, W) drawn
    in ``color`` (RGB in [0, 1]); touching instances keep the boundary between them.
    Returns float (H, W, 3) in [0, 1]."""
    out = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32).copy()
    edges = find_boundaries(instances, mode="thick" if thick else "inner")
    out[edges] = color
    return out


def label_colors(instances: np.ndarray, seed: int = 0) -> np.ndarray:
    """A random colour per instance (background black): (H, W, 3) float in [0, 1]."""
    rng = np.random.default_rng(seed)
    lut = rng.uniform(0.25, 1.0, size=(int(instances.max()) + 1, 3)).astype(np.float32)
    lut[0] = 0
    return lut[instances]


def _panels(rows: Sequence[dict], *, width: float = 3.6, height: float = 3.0, sharey: bool = True):
    names = list(dict.fromkeys(r["panel"] for r in rows))
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(width * max(1, len(names)), height),
                             sharey=sharey, squeeze=False)
    return fig, dict(zip(names, axes[0])), names


def _interval(ax, x: float, r: dict, *, horizontal: bool = False, color: str = "C0") -> None:
    """Mean (dot), 95% interval (bar, when defined) and per-seed values (small grey dots) at x."""
    lo, hi = r.get("low"), r.get("high")
    if horizontal:
        if lo is not None:
            ax.plot([lo, hi], [x, x], color=color, lw=2)
        ax.plot([r["mean"]], [x], "o", color=color)
        return
    if lo is not None:
        ax.plot([x, x], [lo, hi], color=color, lw=2)
    ax.plot([x], [r["mean"]], "o", color=color)
    vals = r.get("values") or []
    ax.plot(x + 0.12 + 0.04 * (np.arange(len(vals)) - (len(vals) - 1) / 2), vals, ".", color="0.5", ms=4)


def interval_panels(rows: Sequence[dict], path: str | Path, *, ylabel: str, what: str) -> str:
    """Means over seeds with 95% intervals and per-seed dots, one panel per ``panel``; n is printed
    under each label. Saves to ``path``; returns the caption (``what`` says what the labels are)."""
    rows = [r for r in rows if r.get("mean") is not None]
    fig, axes, names = _panels(rows, width=max(3.2, 0.9 * max(Counter(r["panel"] for r in rows).values(), default=1)))
    for name in names:
        ax, mine = axes[name], [r for r in rows if r["panel"] == name]
        for i, r in enumerate(mine):
            _interval(ax, i, r)
        ax.set_xticks(range(len(mine)), [f"{r['label']}\nn = {r['n']}" for r in mine], rotation=30, ha="right",
                      fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    next(iter(axes.values()), plt.gca()).set_ylabel(ylabel)
    save(fig, path)
    ns = sorted({r["n"] for r in rows})
    return (f"{ylabel}: {what}. Dot: mean over seeds; bar: 95% Student-t interval of the mean (clipped to [0, 1] for "
            f"F1 and Dice; none when n = 1); grey dots: the seeds. n = {', '.join(map(str, ns)) or '0'} seeds.")


def contrast_panels(entries: Sequence[dict], path: str | Path, *, xlabel: str) -> str:
    """Paired differences a − b (dot), their 95% interval (bar) and n and MDE (text), one row per
    ``label`` and one panel per ``panel``; a vertical line at 0. Returns the caption."""
    rows = [e for e in entries if e.get("mean") is not None]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, axes, names = _panels(rows, width=4.2, height=0.45 * len(labels) + 1.2)
    for name in names:
        ax = axes[name]
        ax.axvline(0, color="k", lw=0.7)
        for r in (r for r in rows if r["panel"] == name):
            y = labels.index(r["label"])
            _interval(ax, y, r, horizontal=True, color="C3" if r.get("verdict") in ("a better", "b better") else "C0")
            mde = f", MDE {r['mde']:.3f}" if r.get("mde") is not None else ""
            ax.annotate(f"n = {r['n']}{mde}", (1.0, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
    fig.subplots_adjust(wspace=0.5)  # room for the n / MDE notes right of each panel
    save(fig, path)
    return (f"{xlabel}: mean paired difference a − b over seeds (dot) and its 95% Student-t interval (bar; none when "
            "n = 1); red: the interval excludes 0. Right of each panel: n (paired seeds) and the minimum detectable "
            "difference at 80% power.")


def memory_panels(rows: Sequence[dict], path: str | Path, *, ylabel: str) -> str:
    """Score (mean with 95% interval) against bytes of one network (log x), one marker per
    ``label``, one panel per ``panel``; the legend outside the axes. Rows need ``bytes``."""
    rows = [r for r in rows if r.get("mean") is not None and r.get("bytes")]
    fig, axes, names = _panels(rows, width=4.0)
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for name in names:
        ax = axes[name]
        for r in (r for r in rows if r["panel"] == name):
            k = labels.index(r["label"])
            lo, hi = r.get("low"), r.get("high")
            yerr = [[r["mean"] - lo], [hi - r["mean"]]] if lo is not None else None
            ax.errorbar([r["bytes"] / 1024], [r["mean"]], yerr=yerr, fmt="os^vDP<>"[k % 8], color=f"C{k % 10}",
                        label=r["label"] if name == names[0] else None, capsize=3)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("KiB of one network (measured, log scale)")
    if names:
        axes[names[0]].set_ylabel(ylabel)
        fig.legend(loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)
    save(fig, path)
    ns = sorted({r["n"] for r in rows})
    return (f"{ylabel} against the measured size of one network; marker: mean over seeds, bar: 95% Student-t interval "
            f"(none when n = 1); n = {', '.join(map(str, ns)) or '0'} seeds.")


def distribution_panels(groups: Sequence[dict], path: str | Path, *, ylabel: str) -> str:
    """Per-image scores: a box (quartiles, whiskers 1.5 IQR) and every image as a dot, per ``label``
    and ``panel``; ``values`` are per-image scores (all seeds). Returns the caption."""
    groups = [g for g in groups if len(g["values"])]
    fig, axes, names = _panels(groups, width=max(3.2, 0.8 * len({g["label"] for g in groups})))
    for name in names:
        ax, mine = axes[name], [g for g in groups if g["panel"] == name]
        ax.boxplot([g["values"] for g in mine], positions=range(len(mine)), widths=0.5, showfliers=False)
        for i, g in enumerate(mine):
            jitter = np.linspace(-0.18, 0.18, len(g["values"])) if len(g["values"]) > 1 else [0.0]
            ax.plot(i + np.asarray(jitter), g["values"], ".", color="C0", alpha=0.35, ms=3)
        ax.set_xticks(range(len(mine)), [f"{g['label']}\n{len(g['values'])} images" for g in mine], rotation=30,
                      ha="right", fontsize=8)
        ax.set_title(name, fontsize=9)
    if names:
        axes[names[0]].set_ylabel(ylabel)
    save(fig, path)
    return (f"Per-image {ylabel} of each configuration's main result (every test image of every seed): box = "
            "quartiles, whiskers = 1.5 IQR, dots = images.")


def efficiency_lines(points: Sequence[dict], path: str | Path, *, ylabel: str = "object F1") -> str:
    """Score against the share of the pool annotated: one line per ``line`` (mean over seeds, dots),
    a 95% interval bar at each point and n beside it, one panel per ``panel``. Points need
    ``line``, ``panel``, ``share`` (in [0, 1]), ``mean``, ``low``, ``high`` (None: no interval), ``n``.
    Saves to ``path``; returns the caption (with the numbers of seeds).

    >>> import tempfile, os
    >>> pts = [dict(line="random, float", panel="Test A", share=s, mean=m, low=m - 0.1, high=m + 0.1, n=2)
    ...        for s, m in ((0.1, 0.5), (0.5, 0.7))]
    >>> d = tempfile.mkdtemp(); cap = efficiency_lines(pts, os.path.join(d, "e.png"))
    >>> os.path.getsize(os.path.join(d, "e.png")) > 0, "n = 2 seeds" in cap
    (True, True)
    """
    pts = [p for p in points if p.get("mean") is not None]
    fig, axes, names = _panels(pts, width=4.2, height=3.2)
    lines = list(dict.fromkeys(p["line"] for p in pts))
    for name in names:
        ax = axes[name]
        for k, line in enumerate(lines):
            mine = sorted((p for p in pts if p["panel"] == name and p["line"] == line), key=lambda p: p["share"])
            if not mine:
                continue
            x = 100 * np.array([p["share"] for p in mine])
            color, dx = f"C{k % 10}", 0.6 * (k - (len(lines) - 1) / 2)  # dodge the bars of different lines
            ax.plot(x + dx, [p["mean"] for p in mine], "o-" if "float" in line else "s--", color=color, ms=4,
                    label=line if name == names[0] else None)
            for xi, p in zip(x + dx, mine):
                if p.get("low") is not None:
                    ax.plot([xi, xi], [p["low"], p["high"]], color=color, lw=1.2, alpha=0.7)
                ax.annotate(f"{p['n']}", (xi, p["mean"]), xytext=(3, -9), textcoords="offset points", fontsize=6,
                            color=color)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("share of the pool annotated (%)")
        ax.set_xlim(0, 105)
        ax.grid(alpha=0.3)
    if names:
        axes[names[0]].set_ylabel(ylabel)
        fig.legend(loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)
    save(fig, path)
    ns = sorted({p["n"] for p in pts})
    return (f"{ylabel} against the share of the training pool annotated, one line per selection and final network "
            "(float or quantized); each point is the final ensemble retrained on the annotated set the suggestion "
            "loop had reached at that budget (100%: the whole pool, the same set for every selection). Marker: mean "
            "over seeds; bar: 95% Student-t interval (clipped to [0, 1]; none when n = 1); the small number: n "
            f"seeds. n = {', '.join(map(str, ns)) or '0'} seeds.")
