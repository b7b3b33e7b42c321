"""Each loss against values computed by hand from known logits, and the sign convention."""

import math

import pytest
import torch

from ganforge.losses import LOSSES, get_loss, gradient_penalty, r1_penalty

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def mean(values):
    return sum(values) / len(values)


def test_minimax_and_ns_share_the_discriminator_loss():
    expected = -mean([log_sigmoid(2.0), log_sigmoid(-1.0)]) - mean([math.log(1 - 1 / (1 + math.exp(-0.5))),
                                                                   math.log(1 - 1 / (1 + math.exp(3.0)))])
    for name in ("minimax", "ns"):
        assert get_loss(name).d(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_minimax_generator_is_log_one_minus_d():
    d = [1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(3.0))]
    expected = mean([math.log(1 - d[0]), math.log(1 - d[1])])
    assert get_loss("minimax").g(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_non_saturating_generator_is_minus_log_d():
    expected = -mean([log_sigmoid(0.5), log_sigmoid(-3.0)])
    assert get_loss("ns").g(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_wasserstein_and_wgan_gp_logit_terms():
    for name in ("wasserstein", "wgan-gp"):
        loss = get_loss(name)
        assert loss.d(REAL, FAKE).item() == pytest.approx(mean([0.5, -3.0]) - mean([2.0, -1.0]))
        assert loss.g(FAKE).item() == pytest.approx(-mean([0.5, -3.0]))
    assert get_loss("wgan-gp").penalty == "gp" and get_loss("wasserstein").penalty is None


def test_hinge():
    # relu(1 - 2) = 0, relu(1 + 1) = 2; relu(1 + 0.5) = 1.5, relu(1 - 3) = 0
    assert get_loss("hinge").d(REAL, FAKE).item() == pytest.approx(1.0 + 0.75)
    assert get_loss("hinge").g(FAKE).item() == pytest.approx(1.25)


def test_lsgan():
    # 0.5 * mean((r - 1)^2) + 0.5 * mean(f^2) = 0.5 * (1 + 4)/2 + 0.5 * (0.25 + 9)/2
    assert get_loss("lsgan").d(REAL, FAKE).item() == pytest.approx(1.25 + 2.3125)
    assert get_loss("lsgan").g(FAKE).item() == pytest.approx(0.5 * mean([0.25, 16.0]))


def test_label_targets_enter_the_bce_losses():
    real_t = torch.tensor([0.9, 0.9])
    got = get_loss("ns").d(REAL, FAKE, real_t, 0.0).item()
    bce = lambda x, t: -(t * log_sigmoid(x) + (1 - t) * log_sigmoid(-x))  # noqa: E731
    expected = mean([bce(2.0, 0.9), bce(-1.0, 0.9)]) + mean([bce(0.5, 0.0), bce(-3.0, 0.0)])
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sign_convention_higher_logit_means_more_real(name):
    """D's loss falls as real logits rise and fake logits fall; G's loss falls as fake logits rise."""
    loss = get_loss(name)
    lo, hi = torch.tensor([-0.5, 0.2]), torch.tensor([0.3, 0.9])
    assert loss.d(hi, lo) < loss.d(lo, lo)
    assert loss.d(hi, lo) < loss.d(hi, hi)
    assert loss.g(hi) < loss.g(lo)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_are_finite_for_extreme_logits(name):
    big = torch.tensor([80.0, -80.0])
    loss = get_loss(name)
    assert torch.isfinite(loss.d(big, big)) and torch.isfinite(loss.g(big))


class Linear(torch.nn.Module):
    """D(x) = w . x, whose input gradient is w everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))

    def forward(self, x):
        return x @ self.w


def test_gradient_penalty_of_a_linear_critic():
    D = Linear([3.0, 4.0])  # ||grad|| = 5 -> (5 - 1)^2 = 16 wherever it is evaluated
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert gradient_penalty(D, real, fake, torch.rand(6)).item() == pytest.approx(16.0, rel=1e-5)
    D = Linear([0.6, 0.8])  # unit norm: no penalty
    assert gradient_penalty(D, real, fake, torch.rand(6)).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_is_differentiable_in_the_critic():
    D = Linear([3.0, 4.0])
    gradient_penalty(D, torch.randn(4, 2), torch.randn(4, 2), torch.rand(4)).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 2 * 4 * (0.6, 0.8)
    torch.testing.assert_close(D.w.grad, torch.tensor([4.8, 6.4]))


def test_r1_penalty_of_a_linear_critic():
    D = Linear([3.0, 4.0])
    assert r1_penalty(D, torch.randn(5, 2)).item() == pytest.approx(0.5 * 25.0)


def test_unknown_loss_names_the_choices():
    from ganforge.errors import UsageError

    with pytest.raises(UsageError, match="choose one of"):
        get_loss("nonsense")
