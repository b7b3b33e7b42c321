"""TimeGAN's five networks (Yoon, Jarrett & van der Schaar, NeurIPS 2019), all GRU stacks.

TimeGAN learns a latent space of series with an autoencoder and plays the adversarial game in
it, with a supervisor that predicts each latent step from the ones before:

- **embedder** E: ``x [N, L, C]`` -> ``h [N, L, W]`` in (0, 1) (GRU, linear, sigmoid);
- **recovery** R: ``h [N, L, W]`` -> ``x~ [N, L, C]`` in (0, 1), the series domain's scale;
- **generator** G: the latent sequence ``z [N, L, k]`` -> ``e^ [N, L, W]`` in (0, 1);
- **supervisor** S: ``h [N, L, W]`` -> the next step's ``h [N, L, W]`` in (0, 1), one layer fewer
  than the others (at least one), as in the paper's code;
- **discriminator** D: ``h [N, L, W]`` -> logits per step ``[N, L]`` (higher = more real); no sigmoid.

E, R, G and S have ``model.g_depth`` layers of ``model.g_width`` units (TimeGAN: 3 and 24), D
``model.d_depth`` of ``model.d_width``; the latent is ganforge's flat ``z [N, L * k]`` read as
``k = z_dim / L`` entries per step (as the other sequence generators read it, see
:mod:`ganforge.nets.sequence`).

What samples, and what a run saves as its generator, is :class:`TimeGANSampler`, ``R(S(G(z)))``:
registered as the net ``timegan``, so ``Run.generator()``, ``ganforge sample`` and ``ganforge
interpolate`` load it like any other G. It has no discriminator of windows: the registry's D
builder refuses, so the GAN loop (``model.family=gan``) cannot pick it up by mistake; the training
is :mod:`ganforge.families.timegan`.
"""

from __future__ import annotations

from torch import Tensor, nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets.sequence import latent_steps, window_shape
from ganforge.nets.registry import NetFamily, register_net


class StepNet(nn.Module):
    """A GRU stack with a linear map per step: ``[N, L, n_in] -> [N, L, n_out]``, through a
    sigmoid when ``squash`` (E, R, G, S) or as logits (D)."""

    def __init__(self, n_in: int, width: int, depth: int, n_out: int, squash: bool) -> None:
        super().__init__()
        self.rnn = nn.GRU(n_in, width, num_layers=depth, batch_first=True)
        self.out = nn.Linear(width, n_out)
        self.squash = squash

    def forward(self, x: Tensor) -> Tensor:
        hidden, _ = self.rnn(x)  # [N, L, width]
        y = self.out(hidden)  # [N, L, n_out]
        return y.sigmoid() if self.squash else y


def supervisor_depth(depth: int) -> int:
    """S has one layer fewer than the other nets (TimeGAN's code), but at least one."""
    return max(1, depth - 1)


class TimeGANSampler(nn.Module):
    """``x^ = R(S(G(z)))``: ``z [N, L * k]`` -> ``[N, L, C]`` in (0, 1), the generator a TimeGAN run saves."""

    def __init__(self, z_dim: int, length: int, channels: int, width: int, depth: int) -> None:
        super().__init__()
        self.length = length
        self.z_step = latent_steps(z_dim, length)
        self.generator = StepNet(self.z_step, width, depth, width, squash=True)
        self.supervisor = StepNet(width, width, supervisor_depth(depth), width, squash=True)
        self.recovery = StepNet(width, width, depth, channels, squash=True)

    def latent_sequence(self, z: Tensor) -> Tensor:
        """The flat latent ``[N, L * k]`` as ``L`` steps of ``k`` entries, ``[N, L, k]``."""
        return z.view(z.shape[0], self.length, self.z_step)

    def forward(self, z: Tensor) -> Tensor:
        e_hat = self.generator(self.latent_sequence(z))  # [N, L, W]
        return self.recovery(self.supervisor(e_hat))  # [N, L, C]


def embedder(m: ModelConfig, channels: int) -> StepNet:
    """E: ``[N, L, channels] -> [N, L, g_width]`` in (0, 1)."""
    return StepNet(channels, m.g_width, m.g_depth, m.g_width, squash=True)


def latent_discriminator(m: ModelConfig) -> StepNet:
    """D: ``[N, L, g_width] -> [N, L, 1]`` logits, one verdict per step."""
    return StepNet(m.g_width, m.d_width, m.d_depth, 1, squash=False)


def timegan_generator(m: ModelConfig, z_dim: int, shape: tuple[int, ...]) -> TimeGANSampler:
    length, channels = window_shape(shape, "timegan")
    return TimeGANSampler(z_dim, length, channels, m.g_width, m.g_depth)


def timegan_discriminator(m: ModelConfig, shape: tuple[int, ...]) -> nn.Module:
    raise UsageError("model.net=timegan is trained by TimeGAN's own loop, not the GAN game; set model.family=timegan")


# TimeGAN's R(S(G(z))), the generator a model.family=timegan run saves (ganforge.families.timegan trains it)
register_net("timegan", NetFamily(generator=timegan_generator, discriminator=timegan_discriminator))
