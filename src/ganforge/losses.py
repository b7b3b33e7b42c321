"""GAN losses as pure functions of discriminator logits, and the gradient penalties.

Sign convention: a discriminator (critic) output is a *logit*, higher = more real. Every loss
returns a scalar to be **minimised** by the player it belongs to. For the probability-based
losses ``D(x) = sigmoid(logit)``, so ``log D(x) = -softplus(-logit)`` and
``log(1 - D(x)) = -softplus(logit)``, which are evaluated without ever forming a sigmoid.

References
- minimax and non-saturating: Goodfellow et al. 2014, "Generative Adversarial Nets", eq. 1 and §3.
- wasserstein: Arjovsky et al. 2017 (weight clipping is a loop option, ``train.weight_clip``).
- wgan-gp: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", eq. 3 (``gp`` below).
- hinge: Lim & Ye 2017; Miyato et al. 2018.
- lsgan: Mao et al. 2017, "Least Squares GANs", eq. 2 with a=0, b=1, c=1.
- r1: Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", eq. 9.

``real_target``/``fake_target`` carry the label tricks (smoothing, soft and flipped labels) for
the losses that have labels (minimax, ns, lsgan); they default to 1 and 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.registry import Registry

DLoss = Callable[..., Tensor]
GLoss = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Loss:
    name: str
    d: DLoss
    """d(real_logits, fake_logits, real_target=1, fake_target=0) -> scalar for D to minimise."""
    g: GLoss
    """g(fake_logits) -> scalar for G to minimise."""
    uses_labels: bool
    """Whether the label tricks (smoothing, soft labels, flips) mean anything for this loss."""
    penalty: str | None = None
    """A penalty the loss always carries (``gp`` for wgan-gp)."""


LOSSES: Registry[Loss] = Registry("loss")


def register_loss(name: str, *, uses_labels: bool, penalty: str | None = None):
    """Register ``d`` and ``g`` functions as the loss ``name``; used as a decorator on a namespace class."""

    def wrap(namespace: type) -> type:
        LOSSES[name] = Loss(name, namespace.d, namespace.g, uses_labels, penalty)
        return namespace

    return wrap


def get_loss(name: str) -> Loss:
    return LOSSES.get_entry(name)


def _bce(logits: Tensor, target: Tensor | float) -> Tensor:
    if not torch.is_tensor(target):
        target = torch.full_like(logits, float(target))
    return F.binary_cross_entropy_with_logits(logits, target)


def _bce_d(real_logits: Tensor, fake_logits: Tensor, real_target=1.0, fake_target=0.0) -> Tensor:
    """-[log D(x)] - [log(1 - D(G(z)))] with (possibly soft) targets; both GANs share this D loss."""
    return _bce(real_logits, real_target) + _bce(fake_logits, fake_target)


@register_loss("minimax", uses_labels=True)
class Minimax:
    """The saturating game of Goodfellow et al.: G minimises log(1 - D(G(z)))."""

    d = staticmethod(_bce_d)

    @staticmethod
    def g(fake_logits: Tensor) -> Tensor:
        return -F.softplus(fake_logits).mean()  # = mean log(1 - sigmoid(l))


@register_loss("ns", uses_labels=True)
class NonSaturating:
    """The non-saturating heuristic: G minimises -log D(G(z))."""

    d = staticmethod(_bce_d)

    @staticmethod
    def g(fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).mean()  # = mean -log sigmoid(l)


def _wasserstein_d(real_logits: Tensor, fake_logits: Tensor, real_target=1.0, fake_target=0.0) -> Tensor:
    return fake_logits.mean() - real_logits.mean()


def _wasserstein_g(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


@register_loss("wasserstein", uses_labels=False)
class Wasserstein:
    """Critic maximises E[D(x)] - E[D(G(z))]; weight clipping via ``train.weight_clip``."""

    d = staticmethod(_wasserstein_d)
    g = staticmethod(_wasserstein_g)


@register_loss("wgan-gp", uses_labels=False, penalty="gp")
class WassersteinGP:
    """The Wasserstein critic loss plus ``train.gp_weight`` times the gradient penalty."""

    d = staticmethod(_wasserstein_d)
    g = staticmethod(_wasserstein_g)


@register_loss("hinge", uses_labels=False)
class Hinge:
    @staticmethod
    def d(real_logits: Tensor, fake_logits: Tensor, real_target=1.0, fake_target=0.0) -> Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    g = staticmethod(_wasserstein_g)


@register_loss("lsgan", uses_labels=True)
class LeastSquares:
    @staticmethod
    def d(real_logits: Tensor, fake_logits: Tensor, real_target=1.0, fake_target=0.0) -> Tensor:
        return 0.5 * ((real_logits - real_target) ** 2).mean() + 0.5 * ((fake_logits - fake_target) ** 2).mean()

    @staticmethod
    def g(fake_logits: Tensor) -> Tensor:
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()


def _input_grad_sq_norm(D: Callable[[Tensor], Tensor], x: Tensor, grad_scale: float | None = None) -> Tensor:
    """Per-sample squared L2 norm of dD(x)/dx, kept in the graph so it can be back-propagated.

    ``grad_scale`` (mixed precision with a GradScaler): the gradient is taken of the scaled logits,
    so a float16 backward does not underflow, and unscaled in float32 before the norm (the "gradient
    penalty" recipe of the PyTorch AMP examples).
    """
    x = x.detach().requires_grad_(True)
    logits = D(x).sum()
    if grad_scale is None:
        (grad,) = torch.autograd.grad(logits, x, create_graph=True)
    else:
        (scaled,) = torch.autograd.grad(logits * grad_scale, x, create_graph=True)
        grad = scaled.float() / grad_scale
    return grad.flatten(1).pow(2).sum(1)


def gradient_penalty(D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor,
                     grad_scale: float | None = None) -> Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)|| - 1)^2] at x_hat = eps * real + (1 - eps) * fake.

    Args:
        real, fake: ``[N, ...]`` inputs to D (already packed); ``eps``: ``[N]`` in [0, 1];
        grad_scale: the GradScaler's scale under fp16 mixed precision (see ``_input_grad_sq_norm``).
    """
    shape = (-1,) + (1,) * (real.dim() - 1)
    x_hat = eps.view(shape) * real.detach() + (1 - eps.view(shape)) * fake.detach()
    norm = _input_grad_sq_norm(D, x_hat, grad_scale).add(1e-12).sqrt()
    return (norm - 1.0).pow(2).mean()


def r1_penalty(D: Callable[[Tensor], Tensor], real: Tensor, grad_scale: float | None = None) -> Tensor:
    """R1 = 0.5 * E[||grad D(x)||^2] on real data (multiply by gamma outside)."""
    return 0.5 * _input_grad_sq_norm(D, real, grad_scale).mean()
