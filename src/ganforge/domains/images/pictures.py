"""Pictures of uint8 ``[N, H, W, C]`` images: PIL images, and PNGs of captioned grids side by side
(generated beside real images, with the conditions of a conditional run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ganforge.domains.images.arrays import image_grid
from ganforge.io import atomic_write


def to_pil(array: np.ndarray) -> Any:
    """uint8 ``[H, W, C]`` -> a PIL image (mode ``L`` for one channel, else ``RGB``)."""
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def write_comparison_png(fake: np.ndarray, real: np.ndarray, title: str, path: Path,
                         condition: np.ndarray | None = None, columns: int = 8) -> None:
    """Grids side by side with captions: the conditions (if any), generated and real images,
    ``columns`` wide, each enlarged (nearest) to at least 32 pixels and to the tallest panel's size."""
    panels = [(condition, "condition")] if condition is not None else []
    panels += [(fake, f"generated ({title})"), (real, "real")]
    write_panels_png(panels, path, columns)


def write_panels_png(panels: list[tuple[np.ndarray, str]], path: Path, columns: int = 8) -> None:
    """One PNG of ``(images, caption)`` panels left to right, each a grid ``columns`` wide enlarged
    (nearest) to at least 32 pixels and to the tallest panel's size."""
    from PIL import Image, ImageDraw

    display = max(32, max(images.shape[1] for images, _ in panels))
    grids = []
    for images, _ in panels:
        scale = max(1, int(np.ceil(display / images.shape[1])))  # 8x8 digits would be specks otherwise
        grid = to_pil(image_grid(images, columns=columns)).convert("RGB")
        grids.append(grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST))
    gap, header = 16, 24
    width = sum(g.width for g in grids) + gap * (len(grids) - 1)
    canvas = Image.new("RGB", (width, header + max(g.height for g in grids)), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for grid, (_, caption) in zip(grids, panels):
        canvas.paste(grid, (x, header))
        draw.text((x + 2, 5), caption, fill="black")
        x += grid.width + gap
    with atomic_write(path, "wb") as fh:
        canvas.save(fh, format="PNG")
