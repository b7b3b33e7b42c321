import numpy as np
import pytest
import torch
from torch import nn

from ganforge.config import ModelConfig, RunConfig
from ganforge.errors import UsageError
from ganforge.nets import NETS, NetFamily
from ganforge.nets.dcgan import (
    DCGANDiscriminator,
    DCGANGenerator,
    dcgan_discriminator,
    dcgan_generator,
    plan_resolution,
    side_factors,
)
from ganforge.nets.layers import MinibatchStdDev


def _stage_shapes(stages: nn.Sequential, x: torch.Tensor) -> list[list[int]]:
    shapes = []
    for stage in stages:
        x = stage(x)
        shapes.append(list(x.shape))
    return shapes


def _tutorial_cfg() -> ModelConfig:
    return ModelConfig(g_width=64, d_width=64, g_norm="batch", d_norm="batch")


def test_28x28_follows_the_dcgan_tutorial_recipe():
    torch.manual_seed(0)
    G = dcgan_generator(_tutorial_cfg(), 100, (1, 28, 28))
    D = dcgan_discriminator(_tutorial_cfg(), (1, 28, 28))
    z = torch.randn(4, 100)
    assert _stage_shapes(G.stages, z[:, :, None, None]) == [[4, 256, 7, 7], [4, 128, 14, 14], [4, 1, 28, 28]]
    assert _stage_shapes(D.stages, torch.randn(4, 1, 28, 28)) == [[4, 64, 14, 14], [4, 128, 7, 7], [4]]
    first, up1, up2 = (stage[0] for stage in G.stages)
    assert isinstance(first, nn.ConvTranspose2d) and first.kernel_size == (7, 7) and first.in_channels == 100
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) and m.padding == (1, 1) for m in (up1, up2))
    assert isinstance(G.stages[-1][-1], nn.Tanh)
    # D: no norm on the first layer, LeakyReLU(0.2), a logit head and no sigmoid anywhere
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.stages[0].modules())
    assert isinstance(D.stages[1][1], nn.BatchNorm2d)
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.Sigmoid) for m in D.modules())
    assert D.stages[-1][0].kernel_size == (7, 7) and D.stages[-1][0].out_channels == 1


def test_64x64_at_g_width_32_is_the_tutorial_generator():
    G = DCGANGenerator(100, 3, 64, 64, base_width=32)
    D = DCGANDiscriminator(3, 64, 64, base_width=64)
    z = torch.randn(2, 100)[:, :, None, None]
    assert [s[1] for s in _stage_shapes(G.stages, z)] == [512, 256, 128, 64, 3]
    assert [s[1:] for s in _stage_shapes(D.stages, torch.randn(2, 3, 64, 64))][:4] == [
        [64, 32, 32], [128, 16, 16], [256, 8, 8], [512, 4, 4]]


@pytest.mark.parametrize("height,width", [(28, 28), (32, 32), (64, 64), (28, 56), (32, 64), (8, 8)])
@pytest.mark.parametrize("upsample,downsample", [("transposed", "strided"), ("pixelshuffle", "avgpool")])
def test_output_shapes_at_many_resolutions(height, width, upsample, downsample):
    torch.manual_seed(0)
    G = DCGANGenerator(16, 3, height, width, base_width=8, upsample=upsample)
    D = DCGANDiscriminator(3, height, width, base_width=8, downsample=downsample)
    x = G(torch.randn(5, 16))
    assert x.shape == (5, 3, height, width)
    assert D(x).shape == (5,)


def test_resampling_modes_use_the_named_layers():
    G = DCGANGenerator(8, 1, 28, 28, base_width=8, upsample="pixelshuffle")
    D = DCGANDiscriminator(1, 28, 28, base_width=8, downsample="avgpool")
    assert sum(isinstance(m, nn.PixelShuffle) for m in G.modules()) == 2
    assert not any(isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2) for m in G.modules())
    assert sum(isinstance(m, nn.AvgPool2d) for m in D.modules()) == 2


def test_generator_output_is_in_minus_one_one_even_when_saturated():
    G = DCGANGenerator(16, 1, 28, 28, base_width=8, norm="none")
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(50)
    x = G(torch.randn(8, 16) * 10)
    assert x.min() >= -1 and x.max() <= 1 and (x.abs() > 0.99).any()


def test_spectral_norm_wraps_every_conv_of_d_and_bounds_the_gain():
    torch.manual_seed(0)
    cfg = ModelConfig(d_width=8, spectral_norm=True)
    D = dcgan_discriminator(cfg, (1, 28, 28))
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(hasattr(m, "parametrizations") for m in convs)
    for _ in range(20):  # power iteration converges in training mode
        D(torch.randn(4, 1, 28, 28))
    weight = convs[1].weight.detach().flatten(1)
    assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=0.05)
    assert not any(hasattr(m, "parametrizations") for m in DCGANDiscriminator(1, 28, 28, 8).modules())


def test_minibatch_stddev_sits_before_the_last_block_and_sees_the_batch():
    torch.manual_seed(0)
    D = dcgan_discriminator(ModelConfig(d_width=8, minibatch_stddev=True), (1, 32, 32))
    assert isinstance(D.stages[-1][0], MinibatchStdDev) and D.stages[-1][1].in_channels == 8 * 4 + 1
    x = torch.randn(4, 1, 32, 32)
    y = x.clone()
    y[1:] *= 3  # other members of the batch change, sample 0 does not
    D.eval()
    assert not torch.allclose(D(x)[0], D(y)[0])
    D_plain = dcgan_discriminator(ModelConfig(d_width=8), (1, 32, 32)).eval()
    torch.testing.assert_close(D_plain(x)[0], D_plain(y)[0])


@pytest.mark.parametrize("norm", ["none", "batch", "instance", "layer"])
def test_norm_variants_run(norm):
    G = DCGANGenerator(8, 1, 12, 12, base_width=4, norm=norm)
    D = DCGANDiscriminator(1, 12, 12, base_width=4, norm=norm)
    assert D(G(torch.randn(3, 8))).shape == (3,)


def test_packing_is_folded_into_d_channels():
    D = dcgan_discriminator(ModelConfig(d_width=8), (2, 28, 28))  # pack=2 of gray images
    assert D(torch.randn(3, 2, 28, 28)).shape == (3,)


def test_resolution_plan_and_bad_sizes():
    assert side_factors(28) == (7, 2) and side_factors(32) == (4, 3) and side_factors(12) == (3, 2)
    assert plan_resolution(28, 56) == (7, 14, 2) and plan_resolution(32, 64) == (4, 8, 3)
    with pytest.raises(UsageError, match=r"30x30.*such as (28|32)"):
        DCGANGenerator(8, 1, 30, 30)
    with pytest.raises(UsageError, match="at least 6 pixels"):
        DCGANDiscriminator(1, 5, 5)
    with pytest.raises(UsageError, match="images"):
        dcgan_generator(ModelConfig(), 8, (784,))


def test_bad_inputs_raise_clear_shape_errors():
    G, D = DCGANGenerator(8, 1, 8, 8, 4), DCGANDiscriminator(1, 8, 8, 4)
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        G(torch.randn(2, 9))
    with pytest.raises(ValueError, match=r"\[N, 1, 8, 8\]"):
        D(torch.randn(2, 3, 8, 8))


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = dcgan_generator(ModelConfig(g_width=8), 16, (1, 28, 28))
    torch.manual_seed(3)
    b = dcgan_generator(ModelConfig(g_width=8), 16, (1, 28, 28))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_trains_end_to_end_on_digits(tmp_path, monkeypatch):
    """The owner's registration line, applied for this test only: a 3-step run on 8x8 digits."""
    import ganforge.domains.images  # noqa: F401  (registers the images domain)
    from ganforge.rundir.run import Run
    from ganforge.rundir.session import train

    monkeypatch.setitem(NETS, "dcgan", NetFamily(generator=dcgan_generator, discriminator=dcgan_discriminator))
    cfg = RunConfig()
    cfg.data.source = "digits"
    cfg.model.g_width = cfg.model.d_width = 8
    cfg.model.g_norm = cfg.model.d_norm = "batch"
    cfg.train.steps, cfg.train.batch, cfg.train.log_every, cfg.train.ckpt_every, cfg.train.eval_every = 3, 16, 1, 3, 0
    summary = train(cfg, out=tmp_path / "run", progress=False, echo=lambda *_: None)
    assert summary["status"] == "finished" and summary["domain"] == "images"
    assert np.isfinite(summary["eval"]["energy_distance"])
    samples = Run(tmp_path / "run").sample(5, seed=1)
    assert samples.shape == (5, 8, 8, 1) and samples.dtype == np.uint8
    assert (tmp_path / "run" / "samples.png").is_file() and np.load(tmp_path / "run" / "samples.npy").shape[1:] == (8, 8, 1)
