"""Plots written as PNG files (matplotlib, non-interactive backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_over_real(real: np.ndarray, fake: np.ndarray, centres: np.ndarray | None, title: str, path: Path) -> None:
    """Generated points (orange) over real points (blue), first two coordinates, mode centres as crosses."""
    from ganforge.io import atomic_write

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.scatter(real[:, 0], real[:, 1 if real.shape[1] > 1 else 0], s=2, alpha=0.35, color="tab:blue", label="real")
    ax.scatter(fake[:, 0], fake[:, 1 if fake.shape[1] > 1 else 0], s=2, alpha=0.6, color="tab:orange", label="generated")
    if centres is not None:
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", s=30, color="black", linewidths=1, label="mode centres")
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def table_marginals(real, fake, kinds: dict, title: str, path: Path, max_columns: int = 8) -> None:
    """Real (blue) and generated (orange) marginals of up to ``max_columns`` table columns:
    histograms for numbers, the 8 most frequent real values (and the missing share) for categories."""
    from ganforge.io import atomic_write

    plt = _pyplot()
    names = list(real.columns)[:max_columns]
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), dpi=80, squeeze=False)
    for ax, name in zip(axes.flat, names):
        kind = kinds.get(name, "categorical")
        if kind in ("continuous", "integer", "datetime"):
            r = _plot_numbers(real[name], kind)
            f = _plot_numbers(fake[name], kind)
            lo, hi = (np.nanmin(r), np.nanmax(r)) if np.isfinite(r).any() else (0.0, 1.0)
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
            for values, color, label in ((r, "tab:blue", "real"), (f, "tab:orange", "generated")):
                density, _ = np.histogram(values[np.isfinite(values)], bins=bins, density=True)
                ax.stairs(density, bins, fill=True, alpha=0.5, color=color, label=label)  # one artist, not 30 bars
        else:
            p, q = (_category_shares(frame[name]) for frame in (real, fake))
            top = list(p.index[:8])
            x = np.arange(len(top))
            ax.bar(x - 0.2, [p.get(v, 0.0) for v in top], width=0.4, color="tab:blue", label="real")
            ax.bar(x + 0.2, [q.get(v, 0.0) for v in top], width=0.4, color="tab:orange", label="generated")
            ax.set_xticks(x, [str(v)[:10] for v in top], rotation=45, ha="right", fontsize=6)
        ax.set_title(str(name)[:30], fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.15, top=0.88, wspace=0.3, hspace=0.6)  # tight_layout costs seconds
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def _plot_numbers(series, kind: str) -> np.ndarray:
    from ganforge.metrics.tabular import _numbers

    return _numbers(series, kind)


def _category_shares(series):
    """Share of each value, missing values counted as "(missing)"."""
    values = series.astype(object)
    return values.where(series.notna(), "(missing)").value_counts(normalize=True)
