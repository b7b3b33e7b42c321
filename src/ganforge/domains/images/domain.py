"""The images domain: :class:`ImagesDomain` (load, decode, the conditions and scores of a run,
evaluation, saving and plotting) and the scores it reports, all on uint8 ``[N, H, W, C]``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from ganforge.config import DataConfig
from ganforge.domains.base import BaseDomain, Dataset, RunView, distance_line, modes_line, register_domain
from ganforge.domains.images.arrays import PixelEncoder, encode_pixels, grid_scale, image_grid, to_uint8_hwc
from ganforge.domains.images.files import IDX_NAME, iter_image_files, npz_image_shaped
from ganforge.domains.images.pictures import to_pil, write_comparison_png
from ganforge.domains.images.sources import BUILTIN_IMAGES, DATA_SEED, image_options, load_images, split_holdout
from ganforge.domains.images.tasks import (IMAGE_TASK_DEFAULTS, IMAGE_TASKS, derived_condition, label_accuracy,
                                           load_pairs, read_condition_images, reconstruction_scores)
from ganforge.errors import UsageError
from ganforge.io import atomic_write
from ganforge.metrics import energy_distance
from ganforge.metrics.extractors import check_images

EVAL_N = 1000  # images per side for the full pixel-space energy distance
QUICK_EVAL_N = 250  # ... and for the one logged during training


def feature_scores(real: np.ndarray, fake: np.ndarray, extractor: str) -> dict[str, Any]:
    """FID, KID and PRDC (k = 5) of ``fake`` against ``real`` on ``extractor``'s features, with
    the real-vs-real FID floor (two disjoint halves of ``real``) and the extractor's id.

    The real side (features, mean, covariance, floor) comes from the on-disk cache of
    :mod:`ganforge.metrics.cache` when it holds these exact images."""
    from ganforge.metrics import kernel_distance, prdc
    from ganforge.metrics.cache import real_statistics
    from ganforge.metrics.extractors import get_extractor
    from ganforge.metrics.features import feature_statistics, frechet_distance_from_statistics

    ext = get_extractor(extractor)
    n = min(len(real), len(fake))
    if n < 20:
        raise UsageError(f"feature scores need at least 20 images a side, got {n}; give --n 1000 or more")
    # a fixed shuffle: real sets are often stored sorted by class, and both the n real images and
    # the two halves of the floor must be class-balanced samples
    real = real[np.random.default_rng(DATA_SEED).permutation(len(real))[:n]]
    stats, f_fake = real_statistics(ext, real), ext(fake[:n])
    kid, kid_std = kernel_distance(stats.features, f_fake, subsets=100, subset_size=min(1000, n // 2))
    return {"extractor": ext.id, "fid": frechet_distance_from_statistics(stats.mu, stats.sigma, *feature_statistics(f_fake)),
            "fid_real_floor": stats.fid_floor, "kid": kid, "kid_std": kid_std,
            **{f"feature_{k}": v for k, v in prdc(stats.features, f_fake, k=5).items()}}


def pixel_statistics(real: np.ndarray, fake: np.ndarray, n: int) -> dict[str, float]:
    """Generated vs real uint8 images in pixel space, pixels scaled to [0, 1].

    - ``pixel_mean_gap``, ``pixel_std_gap``: fake minus real, over all pixels (brightness, contrast);
    - ``mean_image_rmse``: root-mean-square difference of the two per-pixel mean images;
    - ``energy_distance``: Székely & Rizzo's energy distance between up to ``n`` images a side
      (a fixed random subset), as flat vectors; 0 iff the distributions match. It is the
      V-statistic, slightly above 0 even for two samples of one distribution, so compare values
      computed with the same ``n``; and it is a pixel distance, blind to what makes images look real.

    Only the two subsets become floats: the moments come from exact integer sums of the uint8
    pixels, so a large hold-out costs no float64 copy.
    """
    rng = np.random.default_rng(DATA_SEED)
    real_sub = real[rng.permutation(len(real))[:n]].reshape(min(n, len(real)), -1) / 255.0
    fake_sub = fake[rng.permutation(len(fake))[:n]].reshape(min(n, len(fake)), -1) / 255.0
    (real_mean, real_std), (fake_mean, fake_std) = _pixel_moments(real), _pixel_moments(fake)
    mean_gap = (fake.mean(0, dtype=np.float64) - real.mean(0, dtype=np.float64)) / 255.0  # [H, W, C]
    return {
        "pixel_mean_gap": fake_mean - real_mean,
        "pixel_std_gap": fake_std - real_std,
        "mean_image_rmse": float(np.sqrt((mean_gap ** 2).mean())),
        "energy_distance": energy_distance(real_sub, fake_sub),
    }


def _pixel_moments(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of uint8 pixels scaled to [0, 1], from exact integer sums."""
    values = images.reshape(-1)
    total = squares = 0
    for start in range(0, values.size, 1 << 22):
        block = values[start:start + (1 << 22)].astype(np.int64)
        total, squares = total + int(block.sum()), squares + int(np.dot(block, block))
    mean = total / values.size
    return mean / 255.0, math.sqrt(max(squares / values.size - mean * mean, 0.0)) / 255.0


class ImagesDomain(BaseDomain):
    """Images: kept as uint8 ``[N, C, H, W]``, encoded per minibatch as float32 in [-1, 1] (see
    ``Dataset.batch_transform``), in the user's space uint8 ``[N, H, W, C]``."""

    name = "images"
    grids = True
    default_net = "dcgan"
    default_z_dim = 100
    headline = ("fid", "modes", "energy_distance")  # FID with --features; modes: stacked-mnist
    # the DCGAN recipe (Radford et al. 2016; PyTorch's DCGAN example): Adam 2e-4 with beta1 0.5,
    # batch norm in both nets, constant learning rate; the points recipe (lr 4e-3, R1) is for MLPs.
    # The G step reuses the last D step's fakes, as that example does: one G forward fewer a step
    # (1.13-1.21x the step rate at 2 threads) at the same MNIST FID per step (docs/BENCHMARKS.md, 2026-12-07)
    defaults: dict[str, Any] = {
        "model.g_width": 64, "model.d_width": 64, "model.g_norm": "batch", "model.d_norm": "batch",
        "train.batch": 64, "train.steps": 3000, "train.lr_g": 2e-4, "train.lr_d": 2e-4,
        "train.beta1": 0.5, "train.beta2": 0.999, "train.lr_decay": 0.0, "train.r1_weight": 0.0,
        "train.reuse_fakes": True, "train.snapshot_every": 500,
    }

    def builtin_names(self) -> dict[str, str]:
        return {name: spec.description for name, spec in BUILTIN_IMAGES.items()}

    def claims(self, path: Path) -> bool:
        """Folders holding PNG/JPEG files, ``.npy`` of 4 dimensions or of 3 that do not look like
        series windows (see ``timeseries.is_window_array``), ``.npz`` holding such an array, and
        IDX files named ``*-idx3-ubyte[.gz]``."""
        if path.is_dir():
            return next(iter_image_files(path), None) is not None
        suffix = path.suffix.lower()
        if suffix == ".npy":
            from ganforge.domains.timeseries import is_window_array

            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                return array.ndim == 4 or (array.ndim == 3 and not is_window_array(array.shape, array.dtype))
            except (ValueError, OSError):
                return False  # the points domain reports unreadable .npy files
        if suffix == ".npz":
            return npz_image_shaped(path)
        return bool(IDX_NAME.search(path.name))

    def load(self, cfg: DataConfig) -> Dataset:
        """Training images as uint8 pixels ``[N, C, H, W]`` (from a folder, a view of the
        memory-mapped decode cache), which ``Dataset.batch_transform`` encodes to float32 in [-1, 1]
        a minibatch at a time; the hold-out (the official test split of ``mnist``, else
        ``cfg.holdout`` of the images) as uint8 ``[M, H, W, C]``. The image-conditional tasks (sr,
        edges, pairs) train on float32 ``[N, C, H, W]`` in [-1, 1], what their conditions are made from.

        ``meta`` carries the training labels (int64 ``[N]`` or None) and the skipped files. With a
        conditional ``cfg.task`` the data set also carries the conditions (see ``tasks``).
        """
        task = cfg.task
        if task == "pairs":
            images, test, fingerprint, sources = load_pairs(cfg)
        else:
            images, test, fingerprint = load_images(cfg.source, **image_options(cfg), split_ready=True)
            if test is None:
                images, test = split_holdout(images, cfg.holdout)
            sources = None
        state = {
            "fingerprint": fingerprint,
            "shape": list(images.pixels.shape[1:]),
            "class_names": images.class_names,
            "skipped": len(images.skipped),
            "task": task,
        }
        holdout = to_uint8_hwc(test.pixels) if test is not None else None
        meta = {"labels": images.labels, "skipped_files": images.skipped}
        float_train = task in IMAGE_TASKS
        train = images.images if float_train else images.pixels
        if float_train:
            transform = None
        else:  # pixels mapped from the decode cache also give back the pages training has read
            transform = PixelEncoder(images.release_pages) if images.release_pages else encode_pixels
        dataset = Dataset(cfg.source, self.name, train, state, holdout, meta, batch_transform=transform)
        if task == "class":
            if images.labels is None or not images.class_names:
                raise UsageError(f"data.task=class needs labelled images, and '{cfg.source}' has no labels; use class "
                                 "sub-folders, an .npz with 'labels', an IDX labels file, or a built-in set")
            dataset.cond = torch.from_numpy(images.labels)
            dataset.holdout_cond = torch.from_numpy(test.labels) if test is not None and test.labels is not None else None
            state["net_args"] = {"n_classes": len(images.class_names)}
            if cfg.source in BUILTIN_IMAGES and BUILTIN_IMAGES[cfg.source].recipe:
                dataset.meta["defaults"] = dict(BUILTIN_IMAGES[cfg.source].recipe)
        elif task in IMAGE_TASKS:
            if sources is None:
                train_src = derived_condition(task, train, cfg.sr_factor)
                test_src = derived_condition(task, test.images, cfg.sr_factor) if test is not None else None
            else:
                train_src, test_src = sources
            dataset.cond, dataset.holdout_cond = train_src, test_src
            state["net_args"] = {"cond_shape": list(train_src.shape[1:])}
            dataset.meta["defaults"] = dict(IMAGE_TASK_DEFAULTS)
        elif task == "none" and cfg.source in BUILTIN_IMAGES and BUILTIN_IMAGES[cfg.source].recipe:
            dataset.meta["defaults"] = dict(BUILTIN_IMAGES[cfg.source].recipe)
        return dataset

    def decode(self, encoded: torch.Tensor, state: dict[str, Any]) -> np.ndarray:
        """``[N, C, H, W]`` in [-1, 1], or uint8 pixels as ``Dataset.train`` holds them, -> uint8 ``[N, H, W, C]``."""
        if encoded.dim() != 4 or ("shape" in state and list(encoded.shape[1:]) != list(state["shape"])):
            raise ValueError(f"expected encoded images [N, {', '.join(map(str, state.get('shape', ['C', 'H', 'W'])))}], "
                             f"got {list(encoded.shape)}")
        return to_uint8_hwc(encoded)

    def decode_parts(self, parts: Iterable[torch.Tensor], state: dict[str, Any]) -> np.ndarray:
        """Each part to uint8 as it comes: sampling 2,500 64x64 colour images held 0.25 GB of float
        outputs (and their concatenation) at once before; now one part's."""
        return np.concatenate([self.decode(part, state) for part in parts])

    def read_conditions(self, run: RunView, path: Path) -> torch.Tensor:
        """Source images for an image-conditional run, from a folder, ``.npy``/``.npz`` or IDX file."""
        if run.task not in IMAGE_TASKS:
            return super().read_conditions(run, path)
        return read_condition_images(path, run.net_args["cond_shape"])

    def conditions(self, run: RunView, n: int, labels: Any = None, cond: torch.Tensor | None = None,
                   dataset: Dataset | None = None) -> torch.Tensor | None:
        """Image-conditional runs (``data.task`` sr, edges or pairs): ``cond`` (encoded sources
        ``[n, C, h, w]``), by default the held-out sources of the run's data set in order (cycled when
        ``n`` is larger), so sample ``i`` pairs with held-out image ``i``. Other runs: see
        :meth:`BaseDomain.conditions`."""
        if run.task not in IMAGE_TASKS:
            return super().conditions(run, n, labels, cond, dataset)
        if labels is not None:
            raise UsageError(f"this run is image-conditional (data.task={run.task}); give --cond images, not --label")
        shape = list(run.net_args["cond_shape"])
        if cond is None:
            dataset = dataset or run.load_data()
            cond = dataset.holdout_cond if dataset.holdout_cond is not None else dataset.cond
            cond = cond[torch.arange(n) % len(cond)]
        if list(cond.shape[1:]) != shape:
            raise UsageError(f"condition images of shape {list(cond.shape[1:])} do not fit this run, which was trained "
                             f"on conditions of shape {shape}; resize them (channels x height x width)")
        return cond[:n]

    def score(self, run: RunView, n: int, seed: int, dataset: Dataset, G: nn.Module | None = None,
              quick: bool = False, features: str | None = None) -> dict[str, Any]:
        """Image-conditional runs: the outputs for the first ``n`` held-out sources (or training
        sources when nothing is held out), scored with their targets (``paired_l1``, ``psnr_db``).
        Other runs: see :meth:`BaseDomain.score`."""
        if run.task not in IMAGE_TASKS:
            return super().score(run, n, seed, dataset, G, quick, features)
        if dataset.holdout_cond is not None and dataset.holdout is not None:
            sources, targets = dataset.holdout_cond, dataset.holdout
        else:
            sources, targets = dataset.cond, self.decode(dataset.train, dataset.state)
        n = min(n, len(sources))
        samples = run.sample(n, seed, G=G, cond=sources[:n], dataset=dataset)
        return self.evaluate(samples, dataset, quick=quick, features=features, targets=targets[:n])

    def evaluate(self, samples: np.ndarray, dataset: Dataset, quick: bool = False,
                 features: str | None = None, labels: np.ndarray | None = None,
                 targets: np.ndarray | None = None) -> dict[str, Any]:
        """Pixel statistics of ``samples`` (uint8 ``[N, H, W, C]``) against held-out real images,
        and with ``features`` (an extractor name, e.g. ``digits-cnn``) FID, KID and
        precision/recall/density/coverage on that extractor's features.

        Conditional runs: ``labels`` (the class each sample was made for) adds, with a classifying
        extractor, ``label_accuracy``; ``targets`` (uint8, the real image paired with each sample's
        source) adds the paired ``paired_l1`` and ``psnr_db``.

        ``quick`` (during training) uses 250 images a side for the energy distance instead of 1,000.
        Feature scores come with ``fid_real_floor``: the FID between two disjoint halves of the real
        images, the value a perfect generator would score at this sample size. A built-in set with
        scores of its own adds them (``stacked-mnist``: modes hit of 1,000 and KL to uniform).
        """
        fake = check_images(samples, "samples")
        if dataset.holdout is not None and len(dataset.holdout) >= 10:
            real = dataset.holdout
        else:
            real = self.decode(dataset.train[:EVAL_N], dataset.state)
        if fake.shape[1:] != real.shape[1:]:
            raise UsageError(f"samples of shape {list(fake.shape[1:])} cannot be scored against real images of "
                             f"shape {list(real.shape[1:])}; sample from a run trained on this data")
        result = {"n": int(len(fake)), **pixel_statistics(real, fake, QUICK_EVAL_N if quick else EVAL_N)}
        if features:
            result.update(feature_scores(real, fake, features))
            if labels is not None:
                result["label_accuracy"] = label_accuracy(fake, labels, features)
        if targets is not None:
            result.update(reconstruction_scores(fake, check_images(targets, "targets")))
        builtin = BUILTIN_IMAGES.get(dataset.name)
        if builtin is not None and builtin.scores is not None:  # e.g. stacked-mnist's mode counts
            result.update(builtin.scores(fake, real))
        return result

    def save_samples(self, samples: np.ndarray, path: Path, columns: int | None = None,
                     scale: int | None = None) -> None:
        """``.png``: one grid image (``columns`` wide, else about square) of the images enlarged
        ``scale`` times (nearest; by default small images so that tiles are readable, see
        ``arrays.grid_scale``; 1 keeps their size); ``.npz``: the array under ``images``; ``.npy``: the array."""
        images = check_images(samples, "samples")
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".png", ".npz", ".npy"):
            raise UsageError(f"--out {path}: images are written as .png (a grid), .npz or .npy")
        if scale is not None and suffix != ".png":
            raise UsageError(f"--scale enlarges a .png grid; --out {path} keeps the images' own pixels (drop --scale)")
        grid = None
        if suffix == ".png":  # built before the file is opened: a refused --scale writes nothing
            scale = grid_scale(len(images), *images.shape[1:3], columns) if scale is None else scale
            grid = image_grid(images, columns, scale=scale)
        with atomic_write(path, "wb") as fh:
            if grid is not None:
                to_pil(grid).save(fh, format="PNG")
            elif suffix == ".npz":
                np.savez_compressed(fh, images=images)
            else:
                np.save(fh, images)

    def plot(self, samples: np.ndarray, dataset: Dataset, path: Path) -> None:
        """PNG: up to 64 generated images (left) beside up to 64 real ones (right).

        Class-conditional runs: one column per class (samples made for the classes in turn, the
        default of :meth:`conditions`). Image-conditional runs: the first held-out sources, the
        outputs for them (the default of :meth:`conditions`) and their real targets, row by row.
        """
        task = dataset.state["task"]
        fake = check_images(samples, "samples")
        real = dataset.holdout if dataset.holdout is not None else self.decode(dataset.train[:64], dataset.state)
        if task == "class":
            k = int(dataset.state["net_args"]["n_classes"])
            columns = k if k <= 16 else 8
            write_comparison_png(fake[: columns * max(1, 64 // columns)], real[:64], dataset.name, Path(path), columns=columns)
        elif task in IMAGE_TASKS and dataset.holdout_cond is not None and dataset.holdout is not None:
            n = min(32, len(fake), len(dataset.holdout_cond))
            write_comparison_png(fake[:n], dataset.holdout[:n], dataset.name, Path(path),
                                 condition=to_uint8_hwc(dataset.holdout_cond[:n]), columns=4)
        else:
            write_comparison_png(fake[:64], real[:64], dataset.name, Path(path))

    def summary_lines(self, scores: dict[str, Any]) -> list[str]:
        """Modes (stacked-mnist) and the distances."""
        return modes_line(scores) + distance_line(scores)


register_domain(ImagesDomain())
