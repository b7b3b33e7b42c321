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
