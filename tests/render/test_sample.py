import pytest
import torch

from ganforge.render.latent import latents, lerp, slerp


def test_latents_are_reproducible_and_truncated():
    assert torch.equal(latents(10, 4, seed=1), latents(10, 4, seed=1))
    z = latents(5000, 8, seed=0, truncation=0.5)
    assert z.abs().max() <= 0.5 and z.shape == (5000, 8)


def test_lerp_endpoints_and_midpoint():
    z0, z1 = torch.zeros(3), torch.ones(3)
    path = lerp(z0, z1, 5)
    assert path.shape == (5, 3)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    torch.testing.assert_close(path[2], torch.full((3,), 0.5))


def test_slerp_endpoints_and_norms():
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(64, generator=gen), torch.randn(64, generator=gen)
    path = slerp(z0, z1, 9)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    # the norm moves linearly from |z0| to |z1| along the arc
    expected = torch.linspace(float(z0.norm()), float(z1.norm()), 9)
    torch.testing.assert_close(path.norm(dim=1), expected)


def test_slerp_stays_on_the_sphere_for_equal_norms():
    z0 = torch.tensor([1.0, 0.0, 0.0])
    z1 = torch.tensor([0.0, 1.0, 0.0])
    path = slerp(z0, z1, 7)
    torch.testing.assert_close(path.norm(dim=1), torch.ones(7))
    # equal angles between consecutive points: the great-circle path at constant speed
    cos = (path[1:] * path[:-1]).sum(1)
    torch.testing.assert_close(cos, torch.full((6,), float(torch.cos(torch.tensor(torch.pi / 12)))))


def test_slerp_of_parallel_latents_falls_back_to_lerp():
    z = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(slerp(z, 2 * z, 3), lerp(z, 2 * z, 3))


def test_bad_truncation():
    with pytest.raises(ValueError):
        latents(3, 2, 0, truncation=0.0)
