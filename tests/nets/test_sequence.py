import pytest
import torch

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets import get_net
from ganforge.engine.tricks import pack, packed_shape

SEQUENCE_NETS = ("gru", "lstm", "tcn")


def small() -> ModelConfig:
    return ModelConfig(g_width=16, d_width=16, g_depth=2, d_depth=2)


@pytest.mark.parametrize("net", SEQUENCE_NETS)
def test_shapes_range_and_gradients(net):
    torch.manual_seed(0)
    family = get_net(net)
    G = family.generator(small(), 24 * 3, (24, 5))
    D = family.discriminator(small(), (24, 5))
    x = G(torch.randn(7, 72))
    assert x.shape == (7, 24, 5) and x.min() >= 0 and x.max() <= 1  # the series domain's [0, 1]
    logits = D(x)
    assert logits.shape == (7,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.parameters())


@pytest.mark.parametrize("net", SEQUENCE_NETS)
def test_every_step_depends_on_the_latent_and_g_is_deterministic(net):
    torch.manual_seed(0)
    G = get_net(net).generator(small(), 8 * 2, (8, 3)).eval()
    z = torch.randn(4, 16)
    assert torch.equal(G(z), G(z))
    z2 = z.clone()
    z2[:, 0] += 1.0  # the first step's latent: the recurrent G also sees it through its initial state
    changed = (G(z2) - G(z)).abs().amax(dim=(0, 2))
    assert (changed > 0).all()


@pytest.mark.parametrize("net", SEQUENCE_NETS)
def test_packed_discriminator_reads_windows_joined_in_time(net):
    D = get_net(net).discriminator(small(), packed_shape((10, 2), 3))
    x = torch.rand(6, 10, 2)
    assert D(pack(x, 3)).shape == (2,)


@pytest.mark.parametrize("net", SEQUENCE_NETS)
def test_latent_must_be_a_multiple_of_the_window_and_samples_must_be_windows(net):
    with pytest.raises(UsageError, match="multiple of 24"):
        get_net(net).generator(small(), 50, (24, 5))
    with pytest.raises(UsageError, match="--domain series"):
        get_net(net).discriminator(small(), (1, 28, 28))


def test_tcn_norms_and_spectral_norm():
    m = small()
    m.d_norm, m.spectral_norm = "layer", True
    D = get_net("tcn").discriminator(m, (16, 4))
    assert D(torch.rand(3, 16, 4)).shape == (3,)
    m.g_norm = "batch"
    assert get_net("tcn").generator(m, 32, (16, 4))(torch.randn(5, 32)).shape == (5, 16, 4)
