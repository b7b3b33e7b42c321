"""Stacked MNIST, the 1,000-mode test of mode collapse on images (built-in set ``stacked-mnist``).

Each image is 3x28x28: its R, G and B channels are three MNIST digits drawn independently and
uniformly at random from the 60,000 training digits (Metz et al. 2017; Srivastava et al. 2017,
VEEGAN; Lin et al. 2018, PacGAN), so the data has 1,000 modes, one per digit triple, each about as
likely as the next (MNIST's own class balance makes the data's KL to uniform 0.004). The label of
an image is its mode, ``100 * d_R + 10 * d_G + d_B``.

- The training set has ``data.n`` images (default 100,000; PacGAN uses 128,000), drawn with a
  fixed seed, so a smaller ``n`` gives the first ``n`` images of a larger set. The size only sets
  how often each triple recurs (58 to 145 times at 100,000; 85 to 190 at 128,000), and a
  60-minute CPU run sees only a few epochs either way.
- The hold-out is 26,000 images (the number of samples PacGAN scores) stacked the same way from
  MNIST's 10,000 test digits, so real-image floors are computed on digits no model trained on.

Scores (:func:`stacked_scores`, reported by the images domain's ``evaluate``): every channel of
every image is classified by the ``digits-cnn`` extractor (ccexam's MNIST CNN), giving the
image's mode; modes hit and KL to uniform come from :func:`ganforge.metrics.modes.stacked_modes`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ganforge.domains.images.files import read_mnist
from ganforge.errors import UsageError
from ganforge.io import package_file
from ganforge.metrics.modes import stacked_modes

STACKED_SEED = 20170904  # fixed: the same stacks in every run and on every machine
TEST_N = 26_000  # PacGAN scores 26,000 samples; the hold-out is as large, for a floor at that size
SHAPE = (28, 28, 3)
_REAL_DIGITS: dict[tuple[str, str], np.ndarray] = {}  # real images' classified digits, by content


def stack_digits(images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images whose 3 channels are digits of ``images: uint8 [M, 28, 28]`` drawn independently
    and uniformly (with replacement) with ``seed``: uint8 ``[n, 3, 28, 28]`` and labels
    ``100 * d_R + 10 * d_G + d_B``, int64 ``[n]``."""
    index = np.random.default_rng(seed).integers(0, len(images), size=(n, 3))  # [n, (R, G, B)]
    digit = labels[index].astype(np.int64)
    return images[index], digit[:, 0] * 100 + digit[:, 1] * 10 + digit[:, 2]


def read_stacked_mnist(n: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(``n`` training images stacked from MNIST's training digits, ``TEST_N`` test images stacked
    from its test digits), each as uint8 ``[N, 3, 28, 28]`` and int64 labels in 0..999."""
    from ganforge.metrics.extractors import CCEXAM_INSTALL

    # the set exists to be scored: say now, not after the first hour of training, that the scorer is missing
    package_file("ccexam", "ccexam/weights/mnist.pth", "built-in data set 'stacked-mnist' (its mode counts)",
                 CCEXAM_INSTALL)
    (train_x, train_y), (test_x, test_y) = read_mnist()
    return stack_digits(train_x, train_y, n, STACKED_SEED), stack_digits(test_x, test_y, TEST_N, STACKED_SEED + 1)


def classify_channels(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[N, 28, 28, 3]`` -> the digit of every channel, int64 ``[N, 3]``, and the
    classifier's probability for that digit, float32 ``[N, 3]`` (its confidence)."""
    from ganforge.metrics.extractors import get_extractor

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != SHAPE or images.dtype != np.uint8:
        raise UsageError(f"stacked-mnist modes are counted on uint8 28x28 RGB images, got {images.dtype} "
                         f"{list(images.shape)}; train stacked-mnist without data.size or data.channels")
    channels = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(-1, 28, 28)  # [N * 3, 28, 28]: R, G, B, ...
    probs = get_extractor("digits-cnn").probabilities(channels)  # [N * 3, 10]
    digits = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), digits]
    return digits.reshape(-1, 3).astype(np.int64), confidence.reshape(-1, 3)


def _real_digits(real: np.ndarray) -> np.ndarray:
    """``classify_channels(real)[0]``, remembered by content: training evaluates against the same
    real images every time."""
    from ganforge.metrics.extractors import get_extractor

    digest = hashlib.blake2b(np.ascontiguousarray(real).data, digest_size=16).hexdigest()
    key = (digest, get_extractor("digits-cnn").id)
    if key not in _REAL_DIGITS:
        if len(_REAL_DIGITS) >= 4:
            _REAL_DIGITS.pop(next(iter(_REAL_DIGITS)))
        _REAL_DIGITS[key] = classify_channels(real)[0]
    return _REAL_DIGITS[key]


def stacked_scores(fake: np.ndarray, real: np.ndarray) -> dict[str, Any]:
    """Mode scores of generated images ``fake: uint8 [N, 28, 28, 3]``, and the same for
    ``min(N, len(real))`` real ones as the floor a perfect generator would score.

    Keys: ``modes`` (of ``modes_total`` = 1000) and ``reverse_kl`` of ``fake``, and the KL's two
    parts (``reverse_kl_digits``: digits uneven within channels; ``reverse_kl_dependence``: channels
    drawn together; see ``stacked_modes``), and ``digit_share_min`` / ``digit_share_max``: the
    rarest and the most common digit's share in any channel (0.1 each for even digits);
    ``digit_confidence``, the classifier's mean probability for the digits it read in ``fake``
    (real stacks of MNIST training digits score 0.9998); ``modes_real_floor`` and
    ``reverse_kl_real_floor`` of the real images; ``mode_classifier``, the classifier's id.
    """
    from ganforge.metrics.extractors import get_extractor

    digits, confidence = classify_channels(fake)
    scores = stacked_modes(digits)
    floor = stacked_modes(_real_digits(np.asarray(real)[:len(digits)]))
    return {
        "modes": scores["modes"],
        "modes_total": scores["modes_total"],
        "reverse_kl": scores["reverse_kl"],
        "reverse_kl_digits": scores["reverse_kl_digits"],
        "reverse_kl_dependence": scores["reverse_kl_dependence"],
        "digit_share_min": float(scores["digit_shares"].min()),
        "digit_share_max": float(scores["digit_shares"].max()),
        "digit_confidence": float(confidence.mean()),
        "modes_real_floor": floor["modes"],
        "reverse_kl_real_floor": floor["reverse_kl"],
        "reverse_kl_dependence_real_floor": floor["reverse_kl_dependence"],
        "mode_classifier": get_extractor("digits-cnn").id,
    }
