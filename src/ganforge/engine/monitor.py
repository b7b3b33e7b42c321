"""Watching the game: D's verdicts, the confusion matrix, gradient norms, and the alarms.

Each D step adds its logits' statistics into one small tensor on the device (no host sync in
the hot loop); every ``log_every`` generator steps the loop calls :meth:`Monitor.flush`, which
reads that tensor once and returns a record for ``metrics.jsonl`` plus any warnings.

Conventions: real is the positive class and D says "real" when its logit is > 0, i.e.
D(x) = sigmoid(logit) > 0.5. TP = real judged real, FN = real judged fake, FP = fake judged real,
TN = fake judged fake, as fractions of the samples seen in the interval. At the equilibrium of
the minimax game D(x) = D(G(z)) = 0.5 and both accuracies approach 0.5. For Wasserstein and hinge
critics the logit is a score, not a log-odds: the threshold 0 and the sigmoid are read only as
"which side D leans to".

D ahead (a small data set memorised): ADA's overfitting heuristic r_t = E[sign(D(x_real))]
(Karras et al. 2020) is (TP - FN) / real samples, logged as ``ada_rt`` with augmentation's ``aug_p``.
When D calls >= 90% of both real and generated samples right, or r_t >= 0.9 while D is not fooled,
for a stretch of log intervals, the monitor warns once and says what to try; while ADA steers p
(``ada_target`` given) it warns only once p has reached 1 and r_t still exceeds the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

# order of the accumulated statistics
_KEYS = ("loss_d", "d_real", "d_fake", "tp", "fp")


@dataclass
class Alarms:
    """How long a symptom must last (in log intervals) before it is reported."""

    d_wins_accuracy: float = 0.99
    d_wins_patience: int = 5
    collapse_ratio: float = 0.25
    collapse_patience: int = 2
    vanishing_grad: float = 1e-5
    vanishing_patience: int = 5
    d_ahead_accuracy: float = 0.9
    d_ahead_rt: float = 0.9
    d_ahead_patience: int = 5


@dataclass
class Monitor:
    device: torch.device
    alarms: Alarms = field(default_factory=Alarms)
    r1_weight: float = 0.0
    """The run's R1 weight, so the advice for a D that is ahead does not suggest what is already on."""

    def __post_init__(self) -> None:
        self._acc_d = torch.zeros(len(_KEYS), device=self.device, dtype=torch.float64)
        self._acc_g = torch.zeros((), device=self.device, dtype=torch.float64)  # G's losses, summed
        self._counts = [0, 0, 0]  # real and fake samples D judged, G steps: on the host, no device op
        self._streak = {"d_wins": 0, "collapse": 0, "vanishing": 0, "d_ahead": 0}
        self.warnings: list[dict] = []

    @torch.no_grad()
    def record_d(self, real_logits: Tensor, fake_logits: Tensor, loss_d: Tensor) -> None:
        # five sums on the device, one small add; the sample counts are known here, on the host
        stats = torch.stack([loss_d.detach().float(), torch.sigmoid(real_logits).sum(), torch.sigmoid(fake_logits).sum(),
                             (real_logits > 0).sum().float(), (fake_logits > 0).sum().float()])
        self._acc_d += stats  # loss_d summed per D step; divided by the D step count at flush
        self._counts[0] += real_logits.numel()
        self._counts[1] += fake_logits.numel()

    @torch.no_grad()
    def record_g(self, loss_g: Tensor) -> None:
        self._acc_g += loss_g.detach()
        self._counts[2] += 1

    def merge_ranks(self, shard) -> None:
        """On several ranks (a ``ganforge.engine.distributed.Shard``): sum every rank's statistics, so
        the record is that of the global batch; the losses, each rank's mean over its equal share,
        are averaged. Every rank then holds the same sums, and raises the same alarms."""
        if shard.world == 1:
            return
        shard.all_reduce_sum(self._acc_d)
        shard.all_reduce_sum(self._acc_g)
        counts = torch.tensor(self._counts, device=self.device, dtype=torch.float64)
        shard.all_reduce_sum(counts)
        self._counts = [int(n) for n in counts.tolist()]
        self._acc_d[0] /= shard.world  # loss_d: a sum of per-step means, divided by the D steps at flush
        # loss_g is divided by the summed count of G steps (world times the steps), so it is averaged already

    def flush(self, step: int, d_steps: int, grad_norm_d: float, grad_norm_g: float, diversity: float,
              augment_p: float | None = None, ada_target: float | None = None) -> dict:
        """Summarise the interval since the last flush; returns the log record (with ``warnings``).

        ``augment_p``: the probability of D's input augmentations when they are on (logged as
        ``aug_p``, with r_t as ``ada_rt``); ``ada_target``: r_t's target when ADA steers p."""
        acc = dict(zip(_KEYS, self._acc_d.tolist()))
        g_loss_sum, (real_seen, fake_seen, g_steps) = self._acc_g.item(), self._counts
        self._acc_d.zero_()
        self._acc_g.zero_()
        self._counts = [0, 0, 0]
        acc["fn"], acc["tn"] = real_seen - acc["tp"], fake_seen - acc["fp"]
        n_real, n_fake = float(max(real_seen, 1)), float(max(fake_seen, 1))
        record = {
            "step": step,
            "loss_d": acc["loss_d"] / max(d_steps, 1),
            "loss_g": g_loss_sum / max(g_steps, 1),
            "d_real": acc["d_real"] / n_real,
            "d_fake": acc["d_fake"] / n_fake,
            "acc_real": acc["tp"] / n_real,
            "acc_fake": acc["tn"] / n_fake,
            "confusion": {
                "tp": acc["tp"] / (n_real + n_fake),
                "fn": acc["fn"] / (n_real + n_fake),
                "fp": acc["fp"] / (n_real + n_fake),
                "tn": acc["tn"] / (n_real + n_fake),
            },
            "grad_norm_d": grad_norm_d,
            "grad_norm_g": grad_norm_g,
            "diversity": diversity,
        }
        rt = (acc["tp"] - acc["fn"]) / n_real
        if augment_p is not None:
            record.update(aug_p=augment_p, ada_rt=rt)
        record["warnings"] = self._alarms(record) + self._d_ahead_alarm(record, rt, augment_p, ada_target)
        return record

    @staticmethod
    def finite(record: dict, unchecked: tuple[str, ...] | list[str] = ()) -> bool:
        """Whether the losses and gradient norms are finite (leaving out the ``unchecked`` keys)."""
        keys = ("loss_d", "loss_g", "grad_norm_d", "grad_norm_g")
        return all(math.isfinite(record[k]) for k in keys if k not in unchecked)

    def _alarms(self, r: dict) -> list[str]:
        a, out = self.alarms, []
        d_wins = r["acc_real"] >= a.d_wins_accuracy and r["acc_fake"] >= a.d_wins_accuracy
        if self._bump("d_wins", d_wins) == a.d_wins_patience:
            out.append(
                f"D wins outright (real acc {r['acc_real']:.3f}, fake acc {r['acc_fake']:.3f}, "
                f"D(G(z)) = {r['d_fake']:.3f}) for {a.d_wins_patience} log intervals: G's gradient is vanishing; "
                "try loss=ns, label_smoothing=0.1, instance_noise=0.1, or a lower lr_d"
            )
        collapsed = r["diversity"] < a.collapse_ratio
        if self._bump("collapse", collapsed) == a.collapse_patience:
            out.append(
                f"sample diversity collapsed to {r['diversity']:.2f} of the data's (mode collapse): "
                "try pack=2, minibatch_stddev=true, or loss=wgan-gp"
            )
        vanishing = r["grad_norm_g"] < a.vanishing_grad
        if self._bump("vanishing", vanishing) == a.vanishing_patience:
            out.append(f"G's gradient norm is {r['grad_norm_g']:.2e}: vanishing gradients; try loss=ns or loss=wgan-gp")
        for text in out:
            self.warnings.append({"step": r["step"], "warning": text})
        return out

    def _d_ahead_alarm(self, r: dict, rt: float, augment_p: float | None, ada_target: float | None) -> list[str]:
        """D ahead for ``d_ahead_patience`` log intervals: once per stretch, what to try."""
        a = self.alarms
        both_right = r["acc_real"] >= a.d_ahead_accuracy and r["acc_fake"] >= a.d_ahead_accuracy
        not_fooled = r["acc_fake"] >= 0.5  # r_t near 1 because D calls everything real is not D ahead
        if ada_target is not None:  # ADA raises p against this itself, until p reaches 1
            ahead = augment_p is not None and augment_p >= 1 and (both_right or (not_fooled and rt > ada_target))
        else:
            ahead = both_right or (not_fooled and rt >= a.d_ahead_rt)
        if self._bump("d_ahead", ahead) != a.d_ahead_patience:
            return []
        text = (f"D is ahead: it calls {r['acc_real']:.0%} of real and {r['acc_fake']:.0%} of generated samples right "
                f"(r_t = E[sign D(x_real)] = {rt:.2f}) for {a.d_ahead_patience} log intervals, as when it memorises "
                f"a small data set; {_d_ahead_advice(augment_p, ada_target is not None, self.r1_weight)}")
        self.warnings.append({"step": r["step"], "warning": text})
        return [text]

    def _bump(self, name: str, active: bool) -> int:
        self._streak[name] = self._streak[name] + 1 if active else 0
        return self._streak[name]

    def state(self) -> dict:
        return {"streak": dict(self._streak), "warnings": list(self.warnings)}

    def load_state(self, state: dict) -> None:
        self._streak.update(state.get("streak", {}))
        self.warnings = list(state.get("warnings", []))


def _d_ahead_advice(augment_p: float | None, ada: bool, r1_weight: float = 0.0) -> str:
    r1 = (f"a stronger R1 penalty on real data (train.r1_weight, now {r1_weight:g})" if r1_weight > 0
          else "an R1 penalty on real data (train.r1_weight, e.g. 0.1)")
    slower_d = f"fewer or slower D steps (train.n_critic, train.lr_d), or {r1}"
    if augment_p is None:
        return f"try augmentation (train.augment=translation,cutout,color with train.ada=true), {slower_d}"
    if augment_p < 1 and not ada:
        return f"try train.ada=true (or a larger train.augment_p), {slower_d}"
    return f"augmentation is at p = 1 already: try {slower_d}, or more data"


def grad_norm(module: torch.nn.Module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


@torch.no_grad()
def diversity_ratio(fake: Tensor, real: Tensor) -> float:
    """Mean pairwise distance of generated samples over that of real samples (1 = as diverse as the data)."""
    fake_d = torch.pdist(fake.flatten(1).double()).mean()
    real_d = torch.pdist(real.flatten(1).double()).mean()
    return float(fake_d / real_d.clamp_min(1e-12))
