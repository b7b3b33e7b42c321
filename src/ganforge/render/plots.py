"""Plots written as PNG files (matplotlib, non-interactive backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """The PNG bytes of a figure, which is then closed (for pages that embed their plots)."""
    import io

    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def scatter_over_real(real: np.ndarray, fake: np.ndarray, centres: np.ndarray | None, title: str, path: Path) -> None:
    """Generated points (orange) over real points (blue), first two coordinates, mode centres as crosses."""
    from ganforge.io import atomic_write

    plt = pyplot()
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


def _save(fig, path: Path, plt) -> None:
    from ganforge.io import atomic_write

    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def table_marginals(real, fake, kinds: dict, title: str, path: Path, max_columns: int = 8) -> None:
    """Real (blue) and generated (orange) marginals of up to ``max_columns`` table columns:
    histograms for numbers, the 8 most frequent real values (and the missing share) for categories."""
    from ganforge.io import atomic_write

    plt = pyplot()
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


def series_grid(windows: np.ndarray, names: list[str], columns: int, path: Path) -> None:
    """One small line plot per window ``[N, L, F]`` (every feature a line), ``columns`` per row."""
    plt = pyplot()
    n = min(len(windows), 12 * columns)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.2 * rows), dpi=100, squeeze=False,
                             sharex=True, sharey=True)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            ax.plot(windows[i], linewidth=0.8)
    if names:
        fig.legend(names[: windows.shape[2]], loc="lower center", ncol=min(len(names), 6), fontsize=6, frameon=False)
    _save(fig, path, plt)


def series_vs_real(real: np.ndarray, fake: np.ndarray, title: str, path: Path) -> None:
    """Real (blue) vs generated (orange) windows ``[N, L, F]``: eight windows of the first feature,
    then TimeGAN's visualisation, PCA (fitted on the real windows) and t-SNE (perplexity 40, 300
    iterations) of the windows averaged over their features."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    plt = pyplot()
    def feature_mean(x: np.ndarray) -> np.ndarray:  # [N, L], as TimeGAN's visualization_metrics; 0 after the end
        count = (~np.isnan(x)).sum(axis=2)
        return np.where(count > 0, np.nansum(x, axis=2) / np.maximum(count, 1), 0.0)

    real_mean, fake_mean = feature_mean(real), feature_mean(fake)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), dpi=110)
    for x, colour, label in ((real, "tab:blue", "real"), (fake, "tab:orange", "generated")):
        for i in range(min(8, len(x))):
            axes[0].plot(x[i, :, 0], color=colour, alpha=0.6, linewidth=0.9, label=label if i == 0 else None)
    axes[0].set_title(f"{title}: first feature")
    axes[0].legend(fontsize=7)
    pca = PCA(n_components=2).fit(real_mean)
    tsne = TSNE(n_components=2, perplexity=min(40.0, (len(real_mean) + len(fake_mean) - 1) / 3), max_iter=300,
                init="pca", random_state=0).fit_transform(np.concatenate([real_mean, fake_mean]))
    for ax, (r, f), name in ((axes[1], (pca.transform(real_mean), pca.transform(fake_mean)), "PCA"),
                             (axes[2], (tsne[: len(real_mean)], tsne[len(real_mean):]), "t-SNE")):
        ax.scatter(r[:, 0], r[:, 1], s=3, alpha=0.3, color="tab:blue", label="real")
        ax.scatter(f[:, 0], f[:, 1], s=3, alpha=0.3, color="tab:orange", label="generated")
        ax.set_title(name)
        ax.legend(fontsize=7, markerscale=3)
    _save(fig, path, plt)


def _plot_numbers(series, kind: str) -> np.ndarray:
    from ganforge.metrics.tabular import _numbers

    return _numbers(series, kind)


def _category_shares(series):
    """Share of each value, missing values counted as "(missing)"."""
    values = series.astype(object)
    return values.where(series.notna(), "(missing)").value_counts(normalize=True)
