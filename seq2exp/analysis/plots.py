"""Report figures (PNG + SVG): predicted vs measured hexbins, variant-effect panels, ISM maps, logos.

Figures are built on ``matplotlib.figure.Figure`` objects (no pyplot global state), so they work
headless and from several threads; every function returns the paths it wrote.
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

FORMATS = ("png", "svg")


def _save(fig: Figure, stem: str, formats=FORMATS) -> list[str]:
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


def _hexbin_axes(ax, x, y, xlabel, ylabel, title, text=None, gridsize=50, diagonal=True):
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    hb = ax.hexbin(x, y, gridsize=gridsize, cmap="viridis", mincnt=1, bins="log")
    if diagonal and x.size:
        lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.set_title(title, fontsize=12)
    if text:
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", ha="left", fontsize=10,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    return hb


def hexbin(panels: list[tuple[str, np.ndarray, np.ndarray, str]], stem: str, title: str | None = None,
           xlabel: str = "Measured expression", ylabel: str = "Predicted expression") -> list[str]:
    """Predicted vs measured density, one panel per (title, measured, predicted, text) side by side
    (e.g. the model next to another predictor, LegNet Figure 2; or one panel per number of
    substitutions, Figure 3). Counts are log-scaled, y = x is dashed, the text goes in a box."""
    fig = Figure(figsize=(4.6 * len(panels) + 0.8, 4.5))
    axes = [fig.add_subplot(1, len(panels), i) for i in range(1, len(panels) + 1)]
    for i, (ax, (label, y, p, text)) in enumerate(zip(axes, panels)):
        hb = _hexbin_axes(ax, y, p, xlabel, ylabel if i == 0 else "", label, text,
                          gridsize=50 if len(panels) < 3 else 35)
    fig.colorbar(hb, ax=axes, label="sequences per bin (log)", pad=0.02)
    if title:
        fig.suptitle(title, fontsize=13)
    return _save(fig, stem)


def metric_bars(rows: list[dict], stem: str, metric: str = "pearson") -> list[str]:
    """Grouped bars of one metric with CI whiskers: rows are {subset, predictor, value, lo, hi}."""
    subsets = list(dict.fromkeys(r["subset"] for r in rows))
    predictors = list(dict.fromkeys(r["predictor"] for r in rows))
    fig = Figure(figsize=(max(4.5, 1.4 * len(subsets) * max(1, len(predictors)) / 1.5), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(predictors))
    for j, pred in enumerate(predictors):
        vals = [next((r for r in rows if r["subset"] == s and r["predictor"] == pred), None) for s in subsets]
        xs = np.arange(len(subsets)) + (j - (len(predictors) - 1) / 2) * width
        v = np.array([r["value"] if r else np.nan for r in vals])
        lo = np.array([r["value"] - r["lo"] if r else np.nan for r in vals])
        hi = np.array([r["hi"] - r["value"] if r else np.nan for r in vals])
        ax.bar(xs, v, width, label=pred, yerr=np.nan_to_num(np.stack([lo, hi])), capsize=3)
    ax.set_xticks(np.arange(len(subsets)))
    ax.set_xticklabels(subsets, rotation=20, ha="right", fontsize=10)
    ax.set_ylabel(f"{metric} (95% bootstrap CI)", fontsize=11)
    ax.set_xlabel("test subset", fontsize=11)
    ax.set_title(f"{metric} per test subset", fontsize=12)
    ax.legend(fontsize=9, loc="lower right")
    return _save(fig, stem)


def ism_heatmap(matrix, seq: str, stem: str, title: str) -> list[str]:
    """Positions x A/C/G/T predicted effects (variant - reference), reference bases marked with a dot."""
    mat = np.asarray(matrix, dtype=float).T  # (4, L)
    positions = np.asarray(getattr(matrix, "index", np.arange(mat.shape[1])))
    fig = Figure(figsize=(max(6.0, 0.09 * mat.shape[1] + 2), 2.8))
    ax = fig.add_subplot(1, 1, 1)
    lim = np.nanmax(np.abs(mat)) or 1.0
    im = ax.imshow(mat, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                   extent=(positions[0] - 0.5, positions[-1] + 0.5, 3.5, -0.5))
    for pos in positions:
        ref = "ACGT".find(seq[pos]) if pos < len(seq) else -1
        if ref >= 0:
            ax.plot(pos, ref, "k.", ms=2)
    ax.set_yticks(range(4))
    ax.set_yticklabels(list("ACGT"))
    ax.set_xlabel("position in sequence (nt, 0-based)", fontsize=11)
    ax.set_ylabel("substituted base", fontsize=11)
    ax.set_title(title, fontsize=12)
    fig.colorbar(im, ax=ax, label="predicted effect", pad=0.01)
    return _save(fig, stem)


def saliency_logo(contrib: np.ndarray, stem: str, title: str, start: int = 0, end: int | None = None) -> list[str]:
    """Sequence logo of input x gradient (letter height = contribution of the base present; can be < 0)."""
    import logomaker
    import pandas as pd

    end = len(contrib) if end is None else end
    df = pd.DataFrame(np.asarray(contrib)[start:end], columns=list("ACGT"), index=np.arange(start, end))
    fig = Figure(figsize=(max(6.0, 0.11 * (end - start) + 1.5), 2.6))
    ax = fig.add_subplot(1, 1, 1)
    logomaker.Logo(df, ax=ax, color_scheme="classic")
    ax.axhline(0, color="0.5", lw=0.5)
    ax.set_xlabel("position in sequence (nt, 0-based)", fontsize=11)
    ax.set_ylabel("input x gradient", fontsize=11)
    ax.set_title(title, fontsize=12)
    return _save(fig, stem)


def motif_bars(table, stem: str, title: str = "Saliency on motif matches vs background") -> list[str]:
    """Mean |saliency| on each motif's matched positions next to the background (CRMnet Figure 5F/G)."""
    fig = Figure(figsize=(max(4.5, 1.1 * len(table) + 2), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    xs = np.arange(len(table))
    ax.bar(xs - 0.2, table["mean_abs_motif"], 0.4, label="motif positions")
    ax.bar(xs + 0.2, table["mean_abs_background"], 0.4, label="background", color="0.6")
    ax.set_xticks(xs)
    ax.set_xticklabels(table["motif"], rotation=20, ha="right", fontsize=10)
    ax.set_ylabel("mean |input x gradient|", fontsize=11)
    ax.set_xlabel("motif", fontsize=11)
    ax.set_title(title, fontsize=12)
    ax.legend(fontsize=9, loc="best", framealpha=0.9)
    return _save(fig, stem)
