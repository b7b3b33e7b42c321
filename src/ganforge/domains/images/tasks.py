"""Conditional image tasks: what G is conditioned on, built from the loaded images (``data.task``).

- ``class``: the class label of each image (folder names, IDX/npz labels, the built-in sets' digits);
  G(z, y) and D(x, y), with a projection or an auxiliary-classifier D (``model.cond_d``).
- ``sr``: super-resolution. The condition is the image shrunk by ``data.sr_factor`` (bicubic with
  antialiasing, the usual way low-resolution inputs are made for SR benchmarks); G learns the
  way back up. Any image set becomes a training set: ``ganforge train mnist --set data.task=sr``.
- ``edges``: edges-to-image translation (pix2pix's edges2shoes, on any image set): the condition
  is the Sobel gradient magnitude of the gray image, scaled to [-1, 1].
- ``pairs``: paired image-to-image translation on pairs the user supplies: an ``.npz`` with
  arrays ``source`` and ``target`` (same N; any image layout the images domain reads), or a folder
  of side-by-side images in pix2pix's format (the left half is the source, the right half the
  target).

Conditions are stored encoded like images (float ``[N, C, h, w]`` in [-1, 1]) or as int64 labels,
with the run's ``net_args`` (``n_classes`` or ``cond_shape``) so the nets can be rebuilt for sampling.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.config import DataConfig
from ganforge.domains.base import holdout_indices
from ganforge.domains.images.arrays import ImageSet, parse_size, prepare
from ganforge.domains.images.files import files_sha256, load_image_folder, tree_sha256
from ganforge.domains.images.sources import DATA_SEED, image_options, load_images
from ganforge.errors import UsageError

IMAGE_TASKS = ("sr", "edges", "pairs")

# pix2pix (Isola et al. 2017): Adam 2e-4, beta1 0.5, L1 weight 100; a small latent injected into
# the U-Net (pix2pix itself relies on dropout for noise, which it found G largely ignores)
IMAGE_TASK_DEFAULTS: dict[str, Any] = {"model.net": "pix2pix", "model.z_dim": 8, "train.l1_weight": 100.0}


def shrink(images: torch.Tensor, factor: int) -> torch.Tensor:
    """``[N, C, H, W]`` in [-1, 1] -> ``[N, C, H/f, W/f]`` by antialiased bicubic resampling."""
    n, c, h, w = images.shape
    if h % factor or w % factor:
        raise UsageError(f"data.sr_factor={factor} does not divide the image size {h}x{w}; "
                         "pick a factor that does, or resize with data.size")
    small = F.interpolate(images, size=(h // factor, w // factor), mode="bicubic", antialias=True, align_corners=False)
    return small.clamp_(-1.0, 1.0)


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` in [-1, 1] -> ``[N, 1, H, W]``: the gray image's Sobel gradient magnitude,
    divided by its largest possible value and mapped to [-1, 1] (no edge = -1)."""
    gray = images.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=images.dtype)
    kernels = torch.stack([kx, kx.t()])[:, None]  # [2, 1, 3, 3]
    grad = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = grad.pow(2).sum(1, keepdim=True).sqrt() / (8.0 * 2 ** 0.5)  # the max for a [-1, 1] image
    return (magnitude.clamp(0.0, 1.0) * 2.0 - 1.0).contiguous()


def derived_condition(task: str, images: torch.Tensor, sr_factor: int) -> torch.Tensor:
    if task == "sr":
        return shrink(images, sr_factor)
    if task == "edges":
        return sobel_edges(images)
    raise ValueError(task)  # pragma: no cover - programming error


def read_pairs_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``source`` and ``target`` arrays of a pairs ``.npz``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.keys())
            if not {"source", "target"} <= keys:
                raise UsageError(f"{path}: a pairs file holds arrays 'source' and 'target'; found "
                                 f"{', '.join(sorted(keys)) or 'none'}")
            source, target = archive["source"], archive["target"]
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read {path} as a NumPy .npz ({exc}); give a valid .npz with 'source' and 'target'") from None
    if len(source) != len(target):
        raise UsageError(f"{path}: {len(source)} source images but {len(target)} targets; every source needs its target")
    return source, target


def split_side_by_side(images: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """pix2pix's format: each image is ``source | target`` side by side (width 2W)."""
    width = images.shape[-1]
    if width % 2:
        raise UsageError(f"{where}: side-by-side pairs need an even image width (source | target), got {width}")
    return images[..., : width // 2].contiguous(), images[..., width // 2:].contiguous()


def load_pairs(cfg: DataConfig) -> tuple[ImageSet, ImageSet | None, str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Image pairs for ``data.task=pairs``: (targets, held-out targets, fingerprint, (sources,
    held-out sources)). ``data.size`` is the size of each image of a pair."""
    options = image_options(cfg)
    path = Path(cfg.source)
    size = parse_size(options["size"])
    if path.is_dir():
        pair_size = (size[0], 2 * size[1]) if size else None
        both = load_image_folder(path, options["channels"], pair_size, options["resample"], options["skip_bad"])
        source, target = split_side_by_side(both.images, str(path))
        fingerprint = "sha256:" + tree_sha256(path)
    elif path.is_file() and path.suffix.lower() == ".npz":
        raw_source, raw_target = read_pairs_npz(path)
        source = prepare(raw_source, f"{path} 'source'", "auto", options["channels"], size, options["resample"])
        target = prepare(raw_target, f"{path} 'target'", "auto", options["channels"], size, options["resample"])
        fingerprint = "sha256:" + files_sha256(path)
    else:
        raise UsageError(f"data.task=pairs reads an .npz with arrays 'source' and 'target', or a folder of side-by-side "
                         f"source|target images; '{cfg.source}' is neither")
    keep_np, hold_np = holdout_indices(len(target), cfg.holdout, DATA_SEED)
    keep, hold = torch.from_numpy(keep_np), torch.from_numpy(hold_np)
    train, test = ImageSet(target[keep]), (ImageSet(target[hold]) if len(hold) else None)
    return train, test, fingerprint, (source[keep], source[hold] if len(hold) else None)


def label_accuracy(samples: np.ndarray, labels: np.ndarray, extractor: str) -> float:
    """Fraction of class-conditional samples that ``extractor``'s classifier assigns to their label."""
    from ganforge.metrics.extractors import get_extractor

    ext = get_extractor(extractor)
    if not hasattr(ext, "predict"):
        raise UsageError(f"the '{extractor}' extractor has no classifier head; label accuracy needs one (digits-cnn)")
    return float((ext.predict(samples) == labels).mean())


def reconstruction_scores(fake: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Paired scores of uint8 ``[N, H, W, C]`` outputs against their targets: mean absolute error
    (on [0, 1] pixels) and PSNR in dB (mean over images; an exact image counts as 100 dB)."""
    a = fake.astype(np.float64) / 255.0
    b = target.astype(np.float64) / 255.0
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    psnr = np.where(mse > 0, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-20)), 100.0)
    return {"paired_l1": float(np.abs(a - b).mean()), "psnr_db": float(psnr.mean())}


def read_condition_images(path: str | Path, cond_shape: list[int]) -> torch.Tensor:
    """Source images for an image-conditional run from any image source (folder, ``.npy``/``.npz``,
    IDX), converted to the run's condition channels and resized to its condition size; encoded."""
    channels, height, width = cond_shape
    images, _, _ = load_images(str(path), channels=channels, size=(height, width))
    return images.images
