"""Scores for sets of multivariate windows ``[N, L, F]``: the TimeGAN protocol and correlation distances.

Yoon, Jarrett & van der Schaar 2019 (TimeGAN), §5 and the authors' code
(``metrics/discriminative_metrics.py`` and ``metrics/predictive_metrics.py``), re-implemented in PyTorch:

- **discriminative score**: a post-hoc 1-layer GRU (hidden size ``int(F / 2)``, tanh) plus a linear
  logit on its last state is trained to tell real (1) from synthetic (0) windows: each set is split
  80/20 at random, 2,000 iterations of Adam (TensorFlow's defaults: lr 1e-3, betas 0.9/0.999) on
  minibatches of 128 real and 128 synthetic windows drawn without replacement, sigmoid
  cross-entropy; the score is ``|accuracy - 0.5|`` on the two held-out 20 %. 0 is best.
- **predictive score** ("train on synthetic, test on real"): a 1-layer GRU (hidden ``int(F / 2)``)
  with a sigmoid linear head on every step reads features ``0..F-2`` at steps ``0..L-2`` and predicts
  the last feature at steps ``1..L-1``; 5,000 iterations of Adam on synthetic minibatches of 128 with
  the L1 loss, then the mean absolute error on every real window (per window over its steps, then
  averaged). Lower is better; the same predictor trained on real data gives the floor.

TimeGAN reports the mean and the standard deviation of each score over 10 repeats; so does
:func:`timegan_scores`. The GRU is TensorFlow 1's ``GRUCell`` written out (:class:`ParallelGRU`,
same equations and initialisation), and all repeats train side by side in one graph, which on a
CPU costs little more than one: such tiny networks are bound by per-operation overhead.

Two cases the TimeGAN code does not handle are defined here: variable-length windows (NaN rows at
the end of a window mark its end; the GRU state stops at each window's own length, as
``dynamic_rnn`` with ``sequence_length`` does, and the predictive loss and MAE count only real
steps) and univariate data (F = 1: the predictor reads the series itself, hidden size 1).

Also here: the **autocorrelation distance** and the **cross-correlation distance** (as the ACF
and cross-correlation scores of Ni et al. 2020, Sig-Wasserstein GANs, and Wiese et al. 2020,
Quant GANs): mean absolute differences between the real and synthetic autocorrelations of each
feature at lags 1..K and between their lag-0 feature correlation matrices.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge import progress
from ganforge.metrics.extractors import num_threads

DISC_ITERATIONS = 2000
PRED_ITERATIONS = 5000
BATCH = 128
TRAIN_RATE = 0.8
LR = 1e-3


def window_lengths(x: np.ndarray) -> np.ndarray:
    """Valid steps of each window ``[N, L, F]``: the steps before the trailing all-NaN rows."""
    x = np.asarray(x)
    valid = ~np.isnan(x).all(axis=2)  # [N, L]
    # the length is one past the last valid step; an all-NaN window gets length 1 (kept, read as 0)
    last = np.where(valid.any(axis=1), x.shape[1] - np.argmax(valid[:, ::-1], axis=1), 1)
    return last.astype(np.int64)


def _tensor(x: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0)).to(device)


class ParallelGRU(nn.Module):
    """``repeats`` independent 1-layer GRUs with linear heads, trained side by side in one graph.

    The cell is TensorFlow 1's ``GRUCell`` (``r, u = sigmoid([x, h] W_g + b_g)``,
    ``c = tanh([x, r * h] W_c + b_c)``, ``h' = u * h + (1 - u) * c``) with its initialisation
    (Glorot-uniform kernels, gate bias 1, candidate bias 0), and the head is ``fully_connected``
    (Glorot, bias 0). The repeats share nothing but the Python loop: the loss is a sum of
    per-repeat losses and Adam is elementwise, so each repeat trains exactly as if alone, while
    the per-operation overhead that dominates such tiny networks on a CPU is paid once.
    """

    def __init__(self, repeats: int, n_in: int, hidden: int, per_step: bool) -> None:
        super().__init__()
        h = hidden
        gate_bound = math.sqrt(6.0 / (n_in + h + 2 * h))  # TF: gate kernel [in + h, 2h]
        cand_bound = math.sqrt(6.0 / (n_in + h + h))  # TF: candidate kernel [in + h, h]
        head_bound = math.sqrt(6.0 / (h + 1))

        def uniform(bound: float, *shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(repeats, *shape).uniform_(-bound, bound))

        self.wx_gate, self.wh_gate = uniform(gate_bound, n_in, 2 * h), uniform(gate_bound, h, 2 * h)
        self.wx_cand, self.wh_cand = uniform(cand_bound, n_in, h), uniform(cand_bound, h, h)
        self.b_gate = nn.Parameter(torch.ones(repeats, 1, 2 * h))
        self.b_cand = nn.Parameter(torch.zeros(repeats, 1, h))
        self.w_head, self.b_head = uniform(head_bound, h, 1), nn.Parameter(torch.zeros(repeats, 1, 1))
        self.hidden, self.per_step = h, per_step

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x: [R, B, L, n_in]``, ``lengths: [R, B]`` or None (all L) -> logits ``[R, B]`` from the
        state at each window's length, or ``[R, B, L]`` (one per step) with ``per_step``."""
        r, b, steps, n_in = x.shape
        flat = x.reshape(r, b * steps, n_in)
        x_gate = torch.baddbmm(self.b_gate, flat, self.wx_gate).view(r, b, steps, -1)
        x_cand = torch.baddbmm(self.b_cand, flat, self.wx_cand).view(r, b, steps, -1)
        h = x.new_zeros(r, b, self.hidden)
        outputs = []
        for t in range(steps):
            ru = torch.sigmoid(x_gate[:, :, t] + torch.bmm(h, self.wh_gate))
            reset, update = ru[..., : self.hidden], ru[..., self.hidden:]
            cand = torch.tanh(x_cand[:, :, t] + torch.bmm(reset * h, self.wh_cand))
            new_h = cand + update * (h - cand)
            # dynamic_rnn with sequence_length: the state stops at each window's own length
            h = new_h if lengths is None else torch.where((lengths > t)[..., None], new_h, h)
            if self.per_step:
                outputs.append(h)
        if self.per_step:
            hs = torch.stack(outputs, dim=2).view(r, b * steps, self.hidden)
            return torch.baddbmm(self.b_head, hs, self.w_head).view(r, b, steps)
        return torch.baddbmm(self.b_head, h, self.w_head).view(r, b)


def _hidden(dim: int) -> int:
    return max(1, dim // 2)


def _draw(n: int, repeats: int, batch: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """``[repeats, min(batch, n)]`` indices, each row a uniformly random subset (TimeGAN's batch_generator)."""
    keys = torch.rand(repeats, n, generator=gen)
    return keys.topk(min(batch, n), dim=1).indices.to(device)


def _rows(x: Tensor, idx: Tensor) -> Tensor:
    """``x: [R, n, ...]``, ``idx: [R, B]`` -> ``[R, B, ...]``."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], idx]


def _lengths_or_none(lengths: Tensor, full: int) -> Tensor | None:
    return None if bool((lengths == full).all()) else lengths


def _split(x: np.ndarray, repeats: int, gen: torch.Generator, device: torch.device):
    """Per repeat, a random 80/20 split of ``x``: stacked train and test windows and their lengths."""
    n = len(x)
    cut = int(n * TRAIN_RATE)
    perms = torch.rand(repeats, n, generator=gen).argsort(dim=1).numpy()
    data, lengths = _tensor(x, device), torch.from_numpy(window_lengths(x)).to(device)
    out = []
    for part in (perms[:, :cut], perms[:, cut:]):
        idx = torch.from_numpy(part).to(device)
        out.append((data[idx], lengths[idx]))  # [R, n_part, L, F], [R, n_part]
    return out


def discriminative_scores(real: np.ndarray, fake: np.ndarray, repeats: int = 1, iterations: int = DISC_ITERATIONS,
                          batch: int = BATCH, seed: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
    """TimeGAN's discriminative score ``|accuracy - 0.5|``, ``repeats`` times (module docstring).

    ``real: [N, L, F]`` and ``fake: [M, L, F]`` on the same scale (TimeGAN: [0, 1]); trailing
    all-NaN rows end a window early. Each repeat has its own split, initial weights and minibatches.
    Returns ``[repeats]`` scores.
    """
    real, fake = _check_pair(real, fake)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    steps, dim = real.shape[1], real.shape[2]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ParallelGRU(repeats, dim, _hidden(dim), per_step=False).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    (real_train, real_test), (fake_train, fake_test) = _split(real, repeats, gen, device), _split(fake, repeats, gen, device)
    idx_real = lambda: _draw(real_train[0].shape[1], repeats, batch, gen, device)  # noqa: E731
    idx_fake = lambda: _draw(fake_train[0].shape[1], repeats, batch, gen, device)  # noqa: E731
    with _scoring("discriminative", repeats, iterations) as bar:
        for _ in range(iterations):
            _disc_step(model, opt, real_train, fake_train, idx_real(), idx_fake(), steps)
            bar.update()
        with torch.no_grad():
            real_logits = model(real_test[0], _lengths_or_none(real_test[1], steps))
            fake_logits = model(fake_test[0], _lengths_or_none(fake_test[1], steps))
    correct = (real_logits > 0).sum(1) + (fake_logits <= 0).sum(1)
    accuracy = correct.double().cpu().numpy() / (real_logits.shape[1] + fake_logits.shape[1])
    return np.abs(accuracy - 0.5)


@contextlib.contextmanager
def _scoring(score: str, repeats: int, iterations: int) -> Iterator[Any]:
    """One thread (these GRUs are too small to share: a second thread only waits for its turn, and
    on a busy machine it made the scores ten times slower) and a progress line naming the score."""
    what = f"scoring: TimeGAN {score} score ({repeats} repeat{'s' if repeats != 1 else ''} side by side)"
    with num_threads(1), progress.task(what, total=iterations) as bar:
        yield bar


def _disc_step(model: ParallelGRU, opt: torch.optim.Optimizer, real_train: tuple[Tensor, Tensor],
               fake_train: tuple[Tensor, Tensor], i_real: Tensor, i_fake: Tensor, steps: int) -> None:
    """One Adam step of the post-hoc classifiers on minibatches ``i_real``/``i_fake`` ``[R, B]``."""
    # one forward over [real batch; fake batch]: the GRU treats batch rows independently
    x = torch.cat([_rows(real_train[0], i_real), _rows(fake_train[0], i_fake)], dim=1)
    lengths = torch.cat([_rows(real_train[1], i_real), _rows(fake_train[1], i_fake)], dim=1)
    logits = model(x, _lengths_or_none(lengths, steps))
    real_logits, fake_logits = logits[:, : i_real.shape[1]], logits[:, i_real.shape[1]:]
    # TimeGAN: the mean loss on the real batch plus the mean loss on the fake batch, per repeat
    loss = (F.softplus(-real_logits).mean(1) + F.softplus(fake_logits).mean(1)).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _predictive_io(x: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs ``[N, L-1, F-1]`` (features 0..F-2 at steps 0..L-2), targets ``[N, L-1]`` (feature
    F-1 at steps 1..L-1) and the number of input steps of each window; univariate data predict
    themselves."""
    lengths = np.maximum(window_lengths(x) - 1, 1)
    inputs = x[:, :-1, :-1] if x.shape[2] > 1 else x[:, :-1, :]
    return _tensor(inputs, device), _tensor(x[:, 1:, -1], device), torch.from_numpy(lengths).to(device)


def _step_mask(lengths: Tensor, steps: int) -> Tensor:
    return (torch.arange(steps, device=lengths.device) < lengths[..., None]).float()


def predictive_scores(real: np.ndarray, fake: np.ndarray, repeats: int = 1, iterations: int = PRED_ITERATIONS,
                      batch: int = BATCH, seed: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
    """TimeGAN's predictive score, ``repeats`` times: the MAE on every real window of a next-step
    GRU trained on ``fake`` (module docstring). Returns ``[repeats]`` scores."""
    real, fake = _check_pair(real, fake)
    if real.shape[1] < 2:
        raise ValueError("the predictive score needs windows of at least 2 steps")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    steps, dim = real.shape[1] - 1, real.shape[2]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ParallelGRU(repeats, max(dim - 1, 1), _hidden(dim), per_step=True).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x_fake, y_fake, len_fake = _predictive_io(fake, device)
    with _scoring("predictive", repeats, iterations) as bar:
        for _ in range(iterations):
            idx = _draw(len(x_fake), repeats, batch, gen, device)
            lengths = len_fake[idx]
            pred = torch.sigmoid(model(x_fake[idx], _lengths_or_none(lengths, steps)))
            mask = _step_mask(lengths, steps)
            loss = (((pred - y_fake[idx]).abs() * mask).sum((1, 2)) / mask.sum((1, 2))).sum()  # tf absolute_difference
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update()
        x_real, y_real, len_real = _predictive_io(real, device)
        mask = _step_mask(len_real, steps)
        errors = []
        with torch.no_grad():
            for chunk in torch.arange(len(x_real), device=device).split(4096):
                pred = torch.sigmoid(model(x_real[chunk].expand(repeats, -1, -1, -1),
                                           _lengths_or_none(len_real[chunk].expand(repeats, -1), steps)))
                errors.append(((pred - y_real[chunk]).abs() * mask[chunk]).sum(2) / mask[chunk].sum(1))
    return torch.cat(errors, dim=1).mean(1).double().cpu().numpy()  # per window, then over windows


def _check_pair(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 3 or fake.ndim != 3 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake must be [N, L, F] windows of one shape, got {real.shape} and {fake.shape}")
    if len(real) < 2 or len(fake) < 2:
        raise ValueError("need at least 2 real and 2 synthetic windows")
    return real, fake


def discriminative_score(real: np.ndarray, fake: np.ndarray, iterations: int = DISC_ITERATIONS, seed: int = 0,
                         device: torch.device | str = "cpu") -> float:
    """One run of :func:`discriminative_scores`."""
    return float(discriminative_scores(real, fake, 1, iterations, seed=seed, device=device)[0])


def predictive_score(real: np.ndarray, fake: np.ndarray, iterations: int = PRED_ITERATIONS, seed: int = 0,
                     device: torch.device | str = "cpu") -> float:
    """One run of :func:`predictive_scores`."""
    return float(predictive_scores(real, fake, 1, iterations, seed=seed, device=device)[0])


def timegan_scores(real: np.ndarray, fake: np.ndarray, repeats: int = 10, disc_iterations: int = DISC_ITERATIONS,
                   pred_iterations: int = PRED_ITERATIONS, seed: int = 0,
                   device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean and standard deviation over ``repeats`` of both TimeGAN scores (TimeGAN reports 10).

    Returns ``discriminative``, ``discriminative_std``, ``predictive``, ``predictive_std`` and ``repeats``.
    """
    disc = discriminative_scores(real, fake, repeats, disc_iterations, seed=seed, device=device)
    pred = predictive_scores(real, fake, repeats, pred_iterations, seed=seed, device=device)
    return {"discriminative": float(disc.mean()), "discriminative_std": float(disc.std()),
            "predictive": float(pred.mean()), "predictive_std": float(pred.std()), "repeats": repeats}


# ---------------------------------------------------------------------------------------------
# Correlation structure


def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation ``[max_lag, F]`` of each feature at lags 1..max_lag, pooled over windows.

    Each feature is centred and scaled by its mean and variance over all windows and steps; the
    lag-k value is the mean of ``x_t * x_{t+k}`` over every window and every pair of steps k apart
    (NaN steps skipped), i.e. the usual ACF estimator with the windows as independent replicates.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = np.nanmean(x, axis=(0, 1))
    std = np.nanstd(x, axis=(0, 1))
    z = (x - mean) / np.where(std > 0, std, 1.0)
    out = np.empty((max_lag, x.shape[2]))
    for k in range(1, max_lag + 1):
        products = z[:, :-k] * z[:, k:]
        count = (~np.isnan(products)).sum(axis=(0, 1))
        # NaN where no window is longer than k steps
        out[k - 1] = np.where(count > 0, np.nansum(products, axis=(0, 1)) / np.maximum(count, 1), np.nan)
    return out


def cross_correlation(x: np.ndarray) -> np.ndarray:
    """Lag-0 correlation matrix ``[F, F]`` of the features over every window and step (NaN steps skipped)."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1, x.shape[2])
    flat = flat[~np.isnan(flat).any(axis=1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(flat, rowvar=False)
    return np.nan_to_num(np.atleast_2d(corr), nan=0.0)  # a constant feature correlates with nothing


def acf_distance(real: np.ndarray, fake: np.ndarray, max_lag: int | None = None) -> float:
    """Mean absolute difference of :func:`autocorrelation` at lags 1..max_lag (default ``min(L - 1, 20)``)."""
    lag = max_lag or min(real.shape[1] - 1, 20)
    return float(np.mean(np.abs(np.nan_to_num(autocorrelation(real, lag) - autocorrelation(fake, lag)))))


def xcorr_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Mean absolute difference of the off-diagonal :func:`cross_correlation` entries (0 for one feature)."""
    dim = real.shape[2]
    if dim < 2:
        return 0.0
    off = ~np.eye(dim, dtype=bool)
    return float(np.mean(np.abs(cross_correlation(real) - cross_correlation(fake))[off]))
