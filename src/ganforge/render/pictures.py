"""Pictures of the latent tools (Pillow): numbered candidate grids, the vector-arithmetic figure, the
progress frames of a run with their animated GIF, and the sample files of ``ganforge sample``.

Progress frames: while a run trains, the generator's moving average G_ema draws the same fixed
latents every ``train.snapshot_every`` steps into ``RUN/progress/step-XXXXXXXX.png``; at the end
(and on ``ganforge gif RUN``) they become ``RUN/progress.gif``. The latents come from their own
seed, never from the training RNG, so a resumed run continues the same frames, and the last frame
is exactly what ``ganforge sample RUN --n 64 --out grid.png`` draws (images; for points the
1,000 samples of ``ganforge sample RUN``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ganforge.errors import UsageError
from ganforge.io import atomic_write

FRAME_DIR = "progress"
GIF_NAME = "progress.gif"
FRAME_SEED = 0
FRAME_GRID = 64  # images: an 8x8 grid of the first 64 latents of seed 0
FRAME_POINTS = 1000  # vectors (points): a scatter of 1,000 samples over the real data
GIF_FRAME_MS = 200
GIF_HOLD_MS = 2000  # the last frame stays this long before the loop starts again
GIF_MIN_SIDE = 256  # small grids (8x8 digits) are enlarged, pixel for pixel, to at least this
_FRAME_NAME = re.compile(r"^step-(\d{8})\.png$")


# --- progress frames and the GIF ---------------------------------------------------------------

def frame_count(sample_shape: tuple[int, ...]) -> int:
    """How many fixed latents a progress frame shows: a grid for images, a scatter for vectors."""
    return FRAME_GRID if len(sample_shape) > 1 else FRAME_POINTS


def frame_path(run_path: Path, step: int) -> Path:
    return Path(run_path) / FRAME_DIR / f"step-{step:08d}.png"


def list_frames(run_path: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every progress frame of a run, by step."""
    folder = Path(run_path) / FRAME_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _FRAME_NAME.match(p.name))]
    return sorted(found)


def prune_frames(run_path: Path, after_step: int) -> int:
    """Delete the frames of steps after ``after_step`` (a resumed run redraws them); returns how many."""
    stale = [path for step, path in list_frames(run_path) if step > after_step]
    for path in stale:
        path.unlink()
    return len(stale)


def write_frame(domain: Any, samples: np.ndarray, dataset: Any, path: Path) -> None:
    """The domain's own picture of ``samples``: its ``.png`` sample file where it has one (images: a
    grid, small images enlarged as ``ganforge sample`` enlarges them), else its plot over the real
    data (points: a scatter)."""
    try:
        domain.save_samples(samples, path)
    except UsageError:  # the domain writes no picture files of samples (points: .npy/.csv only)
        domain.plot(samples, dataset, path)


def write_progress_gif(run_path: Path, out: Path | None = None, frame_ms: int = GIF_FRAME_MS,
                       hold_ms: int = GIF_HOLD_MS) -> tuple[Path, int]:
    """Assemble a run's progress frames into an endlessly looping GIF (default ``RUN/progress.gif``),
    each frame captioned with its step, the last one held for ``hold_ms``. Returns the path and the
    number of frames."""
    from PIL import Image

    if frame_ms < 10 or hold_ms < 10:
        raise UsageError(f"--frame-ms and --hold-ms must be >= 10 (GIF timing is in 10 ms units), got {frame_ms} "
                         f"and {hold_ms}")
    frames = list_frames(run_path)
    if not frames:
        raise UsageError(f"{run_path} has no progress frames in {FRAME_DIR}/; they are drawn while training when "
                         "train.snapshot_every > 0 (train a run, or resume this one)")
    pictures = []
    for step, path in frames:
        try:
            with Image.open(path) as image:
                picture = image.convert("RGB")
        except OSError as exc:
            raise UsageError(f"progress frame {path} cannot be read ({exc}); delete it and run 'ganforge gif' again") from None
        pictures.append(_captioned(_enlarged(picture, GIF_MIN_SIDE), f"step {step}"))
    size = pictures[0].size
    pictures = [p if p.size == size else p.resize(size, Image.Resampling.BILINEAR) for p in pictures]
    out = Path(out) if out is not None else Path(run_path) / GIF_NAME
    with atomic_write(out, "wb") as fh:
        pictures[0].save(fh, format="GIF", save_all=True, append_images=pictures[1:], loop=0,
                         duration=[frame_ms] * (len(pictures) - 1) + [hold_ms])
    return out, len(pictures)


# --- numbered candidates and the arithmetic figure ---------------------------------------------

def numbered_grid(images: np.ndarray, columns: int | None = None) -> Any:
    """uint8 ``[N, H, W, C]`` -> a PIL image: the grid of ``ganforge sample``, enlarged so that small
    images stay legible, with each sample's index in its top-left corner."""
    from PIL import ImageDraw

    from ganforge.domains.images.arrays import image_grid

    n, h, w, _ = images.shape
    scale = max(1, math.ceil(40 / min(h, w)))
    pad = 2
    columns = columns or int(np.ceil(np.sqrt(n)))
    grid = _to_rgb(image_grid(images, columns, pad=pad, scale=scale))
    draw, font = ImageDraw.Draw(grid), _font(11)
    for i in range(n):
        left, top = pad + (i % columns) * (w * scale + pad), pad + (i // columns) * (h * scale + pad)
        box = draw.textbbox((left + 1, top), str(i), font=font)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill="white")
        draw.text((left + 1, top), str(i), fill="black", font=font)
    return grid


def write_samples(domain: Any, samples: Any, out: Path, columns: int | None = None, scale: int | None = None) -> None:
    """The domain's sample file at ``out`` (``ganforge sample``); ``scale`` enlarges the tiles of a
    picture grid, for domains whose ``save_samples`` takes it (images), by default their own choice."""
    if scale is None:
        domain.save_samples(samples, Path(out), columns=columns)
    elif domain.grids:
        domain.save_samples(samples, Path(out), columns=columns, scale=scale)
    else:
        raise UsageError(f"--scale enlarges image grids; {domain.name} samples are not drawn as one (drop --scale)")


def write_candidates(domain: Any, samples: np.ndarray, out: Path) -> None:
    """The seeded batch whose indices an expression names: a numbered grid for images (``.png``),
    otherwise the domain's sample file (row ``i`` is index ``i``)."""
    out = Path(out)
    if out.suffix.lower() == ".png" and np.asarray(samples).ndim == 4:
        _save_png(numbered_grid(samples), out)
    else:
        domain.save_samples(samples, out)


def write_arithmetic(domain: Any, result: Any, out: Path) -> None:
    """Write a :class:`ganforge.render.latent.VectorArithmetic` with samples: for images a ``.png`` figure
    (:func:`arithmetic_figure`); otherwise the domain's sample file with the rows: each group's mean,
    then the result, then the neighbours."""
    out, samples = Path(out), result.samples
    if out.suffix.lower() == ".png" and np.asarray(samples["result"]).ndim == 4:
        _save_png(arithmetic_figure(result), out)
    else:
        domain.save_samples(np.concatenate([samples["means"], samples["result"], samples["neighbours"]]), out)


def arithmetic_figure(result: Any) -> Any:
    """The figure of the DCGAN paper (Radford et al. 2016, Fig. 7), as a PIL image: each group's
    members (up to three) stacked above the image of the group's mean latent, the means joined by
    their signs, ``=`` the result; below, the result's neighbours (result + small noise)."""
    from PIL import Image, ImageDraw

    from ganforge.domains.images.arrays import enlarge

    samples, groups = result.samples, result.groups
    h, w = samples["result"].shape[1:3]
    scale = max(1, math.ceil(48 / max(h, w)))

    def tile(image: np.ndarray) -> Any:
        return _to_rgb(enlarge(image[None], scale)[0])

    tw, th, pad, op_w, line = w * scale, h * scale, 6, 24, 16
    font = _font(12)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    captions = [f"{g.text} (n={len(m)})" for g, m in zip(groups, result.members)] + ["result"]
    widths = [max(tw, int(measure.textlength(c, font=font)) + 4) for c in captions]
    member_rows = max(len(m) for m in samples["members"])
    top = pad + line  # the title line
    mean_y = top + member_rows * (th + pad)
    # columns left to right: [sign] mean, sign, mean, ..., "=", result
    x, placed = pad, []
    for i, group in enumerate(groups):
        if i > 0 or group.sign < 0:
            placed.append(("op", x, "+" if group.sign > 0 else "-"))
            x += op_w
        placed.append(("group", x, i))
        x += widths[i] + pad
    placed.append(("op", x, "="))
    x += op_w
    placed.append(("result", x, None))
    top_width = x + widths[-1] + pad
    n_neighbours = len(samples["neighbours"])
    neighbour_y = mean_y + th + line + pad + line
    width = max(top_width, pad + n_neighbours * (tw + pad), 260)
    height = neighbour_y + (th + pad if n_neighbours else 0) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad), "expression: " + result.to_dict()["expr"], fill="black", font=font)
    if member_rows:  # members above the line, the images of the mean latents below it
        draw.line((pad, mean_y - pad // 2 - 1, top_width - pad, mean_y - pad // 2 - 1), fill=(160, 160, 160), width=1)
    for kind, left, what in placed:
        if kind == "op":
            _centred_text(draw, (left + op_w // 2, mean_y + th // 2), what, _font(24), middle=True)
            continue
        col_w = widths[what] if kind == "group" else widths[-1]
        centre = left + (col_w - tw) // 2
        if kind == "group":
            for r, member in enumerate(samples["members"][what]):
                canvas.paste(tile(member), (centre, top + r * (th + pad)))
            image, caption = samples["means"][what], captions[what]
        else:
            image, caption = samples["result"][0], captions[-1]
            draw.rectangle((centre - 3, mean_y - 3, centre + tw + 2, mean_y + th + 2), outline="red", width=2)
        canvas.paste(tile(image), (centre, mean_y))
        _centred_text(draw, (left + col_w // 2, mean_y + th + 2), caption, font)
    if n_neighbours:
        draw.text((pad, neighbour_y - line), "neighbours: result + noise", fill="black", font=font)
        for j, image in enumerate(samples["neighbours"]):
            canvas.paste(tile(image), (pad + j * (tw + pad), neighbour_y))
    return canvas


# --- helpers -----------------------------------------------------------------------------------

def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:
        return ImageFont.load_default()


def _centred_text(draw: Any, at: tuple[int, int], text: str, font: Any, middle: bool = False) -> None:
    """Text centred on ``at[0]``, below ``at[1]`` (or centred on it with ``middle``); no ``anchor``,
    which bitmap fonts (Pillow without FreeType) do not support."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    y = at[1] - (top + bottom) // 2 if middle else at[1] - top
    draw.text((at[0] - (left + right) // 2, y), text, fill="black", font=font)


def _to_rgb(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).convert("RGB")


def _enlarged(picture: Any, min_side: int) -> Any:
    from PIL import Image

    scale = max(1, math.ceil(min_side / min(picture.size)))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST) if scale > 1 else picture


def _captioned(picture: Any, caption: str) -> Any:
    from PIL import Image, ImageDraw

    strip = 18
    canvas = Image.new("RGB", (picture.width, picture.height + strip), "white")
    canvas.paste(picture, (0, strip))
    ImageDraw.Draw(canvas).text((4, 2), caption, fill="black", font=_font(12))
    return canvas


def _save_png(picture: Any, out: Path) -> None:
    with atomic_write(out, "wb") as fh:
        picture.save(fh, format="PNG")
