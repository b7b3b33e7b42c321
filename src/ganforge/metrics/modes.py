"""Mode counts of images made of several class-labelled parts: the Stacked MNIST protocol.

Metz et al. 2017 (Unrolled GANs) §3.3.2, Srivastava et al. 2017 (VEEGAN) §5.2 and Lin et al. 2018
(PacGAN) §5: each generated image stacks K parts (the R, G and B channels of Stacked MNIST), a
pretrained classifier names the class of every part, and the tuple of K classes is the image's
mode (``classes^K`` modes: 1,000 for three digits). Reported on 26,000 samples: the number of
modes hit at least once, and KL(p || u) between the histogram p of the samples over the modes and
the uniform distribution u (natural log; empty modes add 0 to the sum), the same "reverse KL" as
:func:`ganforge.metrics.mixture.mixture_metrics`.

Both are sample statistics: a perfect generator scores fewer than all modes and a KL above 0 on
finitely many samples (about ``(M - 1) / (2 N)`` nats for M equally likely modes and N samples:
0.019 for 1,000 modes and 26,000 samples), so compare scores at the same N and next to real images'.
"""

from __future__ import annotations

import numpy as np


def stacked_modes(digits: np.ndarray, classes: int = 10) -> dict:
    """Modes of samples whose parts were classified as ``digits: int [N, K]`` (values in ``0..classes-1``).

    The mode of sample i is ``ravel_multi_index(digits[i])``: for K = 3 digits (R, G, B),
    ``100 * R + 10 * G + B``. Returns ``modes`` (hit at least once, int), ``modes_total``
    (``classes ** K``), ``reverse_kl`` (nats) and ``mode_counts`` (int64 ``[classes ** K]``).

    Where the KL comes from: for the histogram's own distribution p it splits exactly into
    ``reverse_kl_digits``, the sum over the K positions of KL(p_k || uniform) (digits over- or
    under-drawn in a channel whatever the others show), and ``reverse_kl_dependence`` =
    KL(p || p_1 x ... x p_K), the total correlation (triples drawn together more or less often than
    their digits' shares predict; for N samples of a perfect generator about
    ``(classes ** K - 1 - K (classes - 1)) / 2N`` from sampling alone). ``digit_shares`` is
    ``[K, classes]``: each position's share of each digit.
    """
    digits = np.asarray(digits)
    if digits.ndim != 2 or digits.shape[1] < 1 or len(digits) == 0:
        raise ValueError(f"expected class predictions [N, K] with N, K >= 1, got shape {list(digits.shape)}")
    if digits.dtype.kind not in "iu" or digits.min() < 0 or digits.max() >= classes:
        raise ValueError(f"class predictions must be integers in 0..{classes - 1}, "
                         f"got {digits.dtype} in {digits.min()}..{digits.max()}")
    total = classes ** digits.shape[1]
    mode = np.ravel_multi_index(tuple(digits.T.astype(np.int64)), (classes,) * digits.shape[1])
    counts = np.bincount(mode, minlength=total)
    p = counts[counts > 0] / len(digits)
    reverse_kl = float(np.sum(p * np.log(p * total)))
    shares = np.stack([np.bincount(column, minlength=classes) for column in digits.T.astype(np.int64)]) / len(digits)
    seen = shares[shares > 0]
    by_digit = float(np.sum(seen * np.log(seen * classes)))
    return {
        "modes": int((counts > 0).sum()),
        "modes_total": int(total),
        "reverse_kl": reverse_kl,
        "reverse_kl_digits": by_digit,
        "reverse_kl_dependence": max(reverse_kl - by_digit, 0.0),  # >= 0 exactly; max() drops rounding
        "digit_shares": shares,
        "mode_counts": counts,
    }
