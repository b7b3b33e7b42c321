"""Class-conditional DCGAN (label embedding in G; projection or ACGAN D) and pix2pix (U-Net G, PatchGAN D)."""

import pytest
import torch
from torch import nn

from ganforge.config import ModelConfig, RunConfig, set_value
from ganforge.errors import UsageError
from ganforge.nets import get_net
from ganforge.nets.dcgan import (
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    dcgan_discriminator,
    dcgan_generator,
)
from ganforge.nets.mlp import (
    ConditionalMLPDiscriminator,
    ConditionalMLPGenerator,
    MLPDiscriminator,
    MLPGenerator,
    mlp_discriminator,
    mlp_generator,
)
from ganforge.nets.pix2pix import PatchDiscriminator, UNetGenerator, pix2pix_discriminator, pix2pix_generator
from ganforge.engine.loop import Trainer, build_players
from ganforge.engine.steps import NullCallbacks

SIZES = [(8, 8), (28, 28), (32, 32), (28, 56)]


def labels(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


# --- class-conditional DCGAN ----------------------------------------------------------------


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("kind", ["projection", "acgan"])
@pytest.mark.parametrize("upsample,downsample", [("transposed", "strided"), ("pixelshuffle", "avgpool")])
def test_conditional_dcgan_output_shapes(height, width, kind, upsample, downsample):
    torch.manual_seed(0)
    cfg = ModelConfig(g_width=8, d_width=8, g_norm="batch", d_norm="batch", cond_d=kind, upsample=upsample,
                      downsample=downsample)
    G = dcgan_generator(cfg, 16, (3, height, width), n_classes=10)
    D = dcgan_discriminator(cfg, (3, height, width), n_classes=10)
    assert isinstance(G, ConditionalDCGANGenerator) and isinstance(D, ConditionalDCGANDiscriminator)
    y = labels(0, 3, 9, 3, 1)
    x = G(torch.randn(5, 16), y)
    assert x.shape == (5, 3, height, width) and x.abs().max() <= 1
    out = D(x, y)
    if kind == "projection":
        assert isinstance(out, torch.Tensor) and out.shape == (5,)
    else:
        logits, class_logits = out
        assert logits.shape == (5,) and class_logits.shape == (5, 10)


def test_without_classes_the_builders_return_the_unconditional_nets_unchanged():
    cfg = ModelConfig(g_width=8, d_width=8, g_norm="batch", d_norm="batch")
    torch.manual_seed(3)
    G = dcgan_generator(cfg, 16, (1, 28, 28), n_classes=0)
    D = dcgan_discriminator(cfg, (1, 28, 28), n_classes=0)
    torch.manual_seed(3)
    G_ref = DCGANGenerator(16, 1, 28, 28, 8, "batch")
    D_ref = DCGANDiscriminator(1, 28, 28, 8, "batch")
    assert type(G) is DCGANGenerator and type(D) is DCGANDiscriminator
    for net, ref in ((G, G_ref), (D, D_ref)):
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))


def test_generator_reads_the_label():
    torch.manual_seed(0)
    G = ConditionalDCGANGenerator(16, 10, 1, 28, 28, base_width=8, norm="none")
    z = torch.randn(1, 16).expand(2, 16)
    x = G(z, labels(2, 7))
    assert not torch.allclose(x[0], x[1], atol=1e-4)  # same z, different labels
    assert G.embed_dim == 10 and G.stages[0][0].in_channels == 16 + 10
    assert ConditionalDCGANGenerator(16, 1000, 1, 8, 8, base_width=4, embed_dim=None).embed_dim == 50


def _phi(D: ConditionalDCGANDiscriminator, x: torch.Tensor) -> torch.Tensor:
    features = D.stages[:-1](x)
    return (D.stages[-1][0](features) if D.minibatch_stddev else features).flatten(1)


@pytest.mark.parametrize("minibatch_stddev", [False, True])
def test_projection_adds_the_inner_product_of_the_label_embedding_with_the_features(minibatch_stddev):
    torch.manual_seed(0)
    D = ConditionalDCGANDiscriminator(10, 1, 28, 28, base_width=8, norm="none", minibatch_stddev=minibatch_stddev)
    x = torch.randn(4, 1, 28, 28)
    ya, yb = labels(0, 1, 2, 3), labels(5, 1, 9, 4)
    with torch.no_grad():
        a, b = D(x, ya), D(x, yb)
        phi = _phi(D, x)
        expected = ((D.embed(ya) - D.embed(yb)) * phi).sum(1)
    assert D.embed.weight.shape[1] == (8 * 2 + int(minibatch_stddev)) * 7 * 7
    assert (a - b)[1] == 0 and (a - b).abs()[[0, 2, 3]].min() > 0  # only the changed labels move the logit
    torch.testing.assert_close(a - b, expected)


def test_projection_d_with_a_zero_embedding_is_the_unconditional_d():
    torch.manual_seed(0)
    D = ConditionalDCGANDiscriminator(10, 1, 28, 28, base_width=8, norm="batch").eval()
    plain = DCGANDiscriminator(1, 28, 28, base_width=8, norm="batch").eval()
    missing, unexpected = plain.load_state_dict(D.state_dict(), strict=False)
    assert not missing and unexpected == ["embed.weight"]
    with torch.no_grad():
        D.embed.weight.zero_()
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(D(x, labels(1, 2, 3)), plain(x))


def test_acgan_head_classifies_x_alone():
    torch.manual_seed(0)
    D = ConditionalDCGANDiscriminator(7, 1, 32, 32, base_width=8, kind="acgan", minibatch_stddev=True).eval()
    x = torch.randn(4, 1, 32, 32)
    logits_a, class_a = D(x, labels(0, 1, 2, 3))
    logits_b, class_b = D(x, labels(6, 6, 6, 6))
    torch.testing.assert_close(logits_a, logits_b)
    torch.testing.assert_close(class_a, class_b)
    assert class_a.shape == (4, 7) and D.class_head.in_channels == 8 * 4  # the stddev channel is not in it


def test_spectral_norm_covers_the_projection_embedding_and_the_class_head():
    cfg = ModelConfig(d_width=8, spectral_norm=True)
    D = dcgan_discriminator(cfg, (1, 28, 28), n_classes=10)
    assert hasattr(D.embed, "parametrizations")
    assert all(hasattr(m, "parametrizations") for m in D.modules() if isinstance(m, nn.Conv2d))
    for _ in range(20):
        D(torch.randn(4, 1, 28, 28), labels(0, 1, 2, 3))
    assert torch.linalg.matrix_norm(D.embed.weight.detach(), ord=2).item() == pytest.approx(1.0, abs=0.05)
    cfg.cond_d = "acgan"
    assert hasattr(dcgan_discriminator(cfg, (1, 28, 28), n_classes=10).class_head, "parametrizations")
    assert not hasattr(dcgan_discriminator(ModelConfig(d_width=8), (1, 28, 28), n_classes=10).embed, "parametrizations")


@pytest.mark.parametrize("kind", ["projection", "acgan"])
def test_gradients_reach_g_through_a_conditional_d(kind):
    torch.manual_seed(0)
    cfg = ModelConfig(g_width=8, d_width=8, g_norm="batch", d_norm="batch", cond_d=kind)
    G = dcgan_generator(cfg, 16, (1, 16, 16), n_classes=4)
    D = dcgan_discriminator(cfg, (1, 16, 16), n_classes=4)
    y = labels(0, 1, 2, 3, 0, 1)
    out = D(G(torch.randn(6, 16), y), y)
    loss = out.sum() if kind == "projection" else out[0].sum() + out[1].logsumexp(1).sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


@pytest.mark.parametrize("bad", [labels(0, 10), labels(-1, 2), torch.tensor([0.0, 1.0]), labels(1, 2, 3)])
def test_bad_labels_raise_clear_errors(bad):
    G = ConditionalDCGANGenerator(8, 10, 1, 8, 8, base_width=4)
    D = ConditionalDCGANDiscriminator(10, 1, 8, 8, base_width=4, kind="acgan")
    with pytest.raises(ValueError, match=r"class labels.*(0\.\.9|\[2\])"):
        G(torch.randn(2, 8), bad)
    with pytest.raises(ValueError, match=r"class labels.*(0\.\.9|\[2\])"):
        D(torch.randn(2, 1, 8, 8), bad)


def test_dcgan_refuses_image_conditions_and_pix2pix_refuses_labels():
    with pytest.raises(UsageError, match="model.net=pix2pix"):
        dcgan_generator(ModelConfig(), 8, (1, 28, 28), cond_shape=[1, 14, 14])
    with pytest.raises(UsageError, match="model.net=pix2pix"):
        dcgan_discriminator(ModelConfig(), (1, 28, 28), cond_shape=[1, 14, 14])
    with pytest.raises(UsageError, match="model.net=dcgan"):
        pix2pix_generator(ModelConfig(), 8, (1, 28, 28), n_classes=10, cond_shape=[1, 14, 14])
    with pytest.raises(UsageError, match="cond_d"):
        dcgan_discriminator(ModelConfig(cond_d="bogus"), (1, 28, 28), n_classes=10)  # type: ignore[arg-type]


# --- pix2pix -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,cond_shape", [
    ((1, 28, 28), (1, 14, 14)),  # super-resolution x2
    ((1, 28, 28), (1, 7, 7)),  # super-resolution x4
    ((3, 32, 32), (1, 32, 32)),  # same-size pair, gray -> colour
    ((1, 28, 56), (1, 14, 28)),  # non-square
    ((3, 64, 64), (3, 16, 16)),
    ((1, 8, 8), (1, 4, 4)),
])
def test_pix2pix_output_shapes(shape, cond_shape):
    torch.manual_seed(0)
    cfg = ModelConfig(g_width=8, d_width=8, g_norm="batch", d_norm="batch")
    G = get_net("pix2pix").generator(cfg, 8, shape, cond_shape=list(cond_shape))
    D = get_net("pix2pix").discriminator(cfg, shape, cond_shape=list(cond_shape))
    c = torch.rand(3, *cond_shape) * 2 - 1
    x = G(torch.randn(3, 8), c)
    assert x.shape == (3, *shape) and x.abs().max() <= 1
    patches = D.patch_logits(x, c)
    assert patches.dim() == 4 and patches.shape[:2] == (3, 1) and patches.shape[2] >= 1
    torch.testing.assert_close(D(x, c), patches.mean(dim=(1, 2, 3)))  # one logit per sample: the patch mean


def test_unet_depth_padding_and_skips_at_28x28():
    G = UNetGenerator(8, 1, 28, 28, (1, 14, 14), base_width=8)
    assert G.depth == 3 and G.padded == (32, 32)  # 28 is padded to 32 for a 4x4 bottleneck, then cropped
    assert [level[-1].out_channels if isinstance(level[-1], nn.Conv2d) else level[1].out_channels
            for level in G.down] == [8, 16, 32]
    assert G.up[1][1].in_channels == 2 * 16 and G.up[2][1].in_channels == 2 * 8  # skip concatenations
    assert isinstance(G.up[-1][-1], nn.Tanh)
    assert UNetGenerator(8, 1, 32, 32, (1, 32, 32), base_width=8).depth == 4
    assert PatchDiscriminator(1, 28, 28, (1, 14, 14), base_width=8).patch_logits(
        torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 14, 14)).shape == (2, 1, 5, 5)


def test_pix2pix_output_depends_on_condition_and_latent():
    torch.manual_seed(0)
    G = UNetGenerator(8, 1, 28, 28, (1, 14, 14), base_width=8, norm="instance").eval()
    z, c = torch.randn(2, 8), torch.rand(2, 1, 14, 14) * 2 - 1
    base = G(z, c)
    assert (G(torch.randn(2, 8), c) - base).abs().max() > 1e-4
    assert (G(z, torch.flip(c, dims=[0])) - base).abs().max() > 1e-4


def test_gradients_reach_the_unet_through_the_patchgan():
    torch.manual_seed(0)
    cfg = ModelConfig(g_width=8, d_width=8, g_norm="batch", d_norm="none", spectral_norm=True)
    G = pix2pix_generator(cfg, 8, (3, 16, 16), cond_shape=[1, 8, 8])
    D = pix2pix_discriminator(cfg, (3, 16, 16), cond_shape=[1, 8, 8])
    assert all(hasattr(m, "parametrizations") for m in D.modules() if isinstance(m, nn.Conv2d))
    c = torch.randn(4, 1, 8, 8)
    D(G(torch.randn(4, 8), c), c).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


def test_decoder_dropout_sits_in_the_three_innermost_levels():
    G = UNetGenerator(8, 1, 64, 64, (1, 64, 64), base_width=4, dropout=0.5)
    assert [any(isinstance(m, nn.Dropout) for m in level) for level in G.up] == [True, True, True, False, False]


def test_pix2pix_usage_errors():
    with pytest.raises(UsageError, match="data.task=sr"):
        pix2pix_generator(ModelConfig(), 8, (1, 28, 28))
    with pytest.raises(UsageError, match="data.task=sr"):
        pix2pix_discriminator(ModelConfig(), (1, 28, 28))
    with pytest.raises(UsageError, match="integer factor"):
        pix2pix_generator(ModelConfig(), 8, (1, 28, 28), cond_shape=[1, 12, 12])
    with pytest.raises(UsageError, match="integer factor"):
        pix2pix_discriminator(ModelConfig(), (1, 28, 28), cond_shape=[1, 56, 56])
    with pytest.raises(UsageError, match="at least 6 pixels"):
        pix2pix_generator(ModelConfig(), 8, (1, 4, 4), cond_shape=[1, 2, 2])
    G = UNetGenerator(8, 1, 8, 8, (1, 4, 4), base_width=4)
    with pytest.raises(ValueError, match=r"\[2, 1, 4, 4\]"):
        G(torch.randn(2, 8), torch.randn(2, 1, 8, 8))


# --- through the training loop ------------------------------------------------------------


def _trainer(net: str, data: torch.Tensor, cond: torch.Tensor, net_args: dict, **settings) -> Trainer:
    cfg = RunConfig()
    for key, value in {"model.g_width": 8, "model.d_width": 8, "model.g_norm": "batch", "model.d_norm": "batch",
                       "train.batch": 16, "train.steps": 20, "train.log_every": 10, "train.ckpt_every": 20,
                       "train.lr_g": 2e-3, "train.lr_d": 2e-3, "train.beta1": 0.5, "train.beta2": 0.999,
                       "train.r1_weight": 0.0, **settings}.items():
        set_value(cfg, key, value)
    torch.manual_seed(0)
    players = build_players(cfg, net, 8, tuple(data.shape[1:]), torch.device("cpu"), net_args)
    return Trainer(cfg, players, data, torch.device("cpu"), NullCallbacks(), cond=cond)


def _run_and_check(trainer: Trainer) -> None:
    G0 = {k: v.clone() for k, v in trainer.p.G.state_dict().items()}
    trainer.run()
    record = trainer.callbacks.last
    assert record["step"] == 20
    assert all(torch.isfinite(torch.tensor(float(record[k]))) for k in ("loss_d", "loss_g", "d_real", "d_fake"))
    assert any(not torch.equal(G0[k], v) for k, v in trainer.p.G.state_dict().items())


@pytest.mark.parametrize("settings", [
    {"model.cond_d": "projection"},
    {"model.cond_d": "acgan", "train.aux_weight": 1.0},
    {"model.cond_d": "projection", "train.loss": "hinge", "model.spectral_norm": True, "model.d_norm": "none"},
    {"model.cond_d": "acgan", "train.loss": "wgan-gp", "model.d_norm": "layer", "train.n_critic": 2},
    {"model.cond_d": "projection", "train.r1_weight": 1.0, "train.r1_every": 4, "model.d_norm": "none"},
])
def test_class_conditional_dcgan_trains_in_the_loop(settings):
    gen = torch.Generator().manual_seed(0)
    data = torch.rand(128, 1, 16, 16, generator=gen) * 2 - 1
    y = torch.randint(4, (128,), generator=gen)
    _run_and_check(_trainer("dcgan", data, y, {"n_classes": 4}, **{"data.task": "class", **settings}))


@pytest.mark.parametrize("loss", ["ns", "lsgan"])
def test_pix2pix_trains_in_the_loop_with_l1(loss):
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(64, 1, 4, 4, generator=gen) * 2 - 1
    data = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)  # smooth
    cond = torch.nn.functional.avg_pool2d(data, 2)  # [64, 1, 8, 8]: super-resolution x2
    trainer = _trainer("pix2pix", data, cond, {"cond_shape": [1, 8, 8]}, **{
        "data.task": "sr", "train.l1_weight": 100.0, "train.loss": loss, "train.ema": 0.0, "model.g_norm": "instance"})
    G = trainer.p.G
    z = torch.randn(64, 8, generator=gen)

    def l1() -> float:
        G.eval()
        with torch.no_grad():
            distance = (G(z, cond) - data).abs().mean().item()
        G.train()
        return distance

    before = l1()
    _run_and_check(trainer)
    assert l1() < 0.8 * before  # the L1 term pulls G(z, c) onto the paired targets (0.36 -> 0.23 when written)


# --- class-conditional MLP (the digits recipe's nets with data.task=class) ----------------------


def test_conditional_mlp_generator_reads_the_label_and_refuses_bad_ones():
    torch.manual_seed(0)
    G = mlp_generator(ModelConfig(g_width=16, g_depth=2), 8, (1, 8, 8), n_classes=10)
    assert isinstance(G, ConditionalMLPGenerator) and G.net[0].in_features == 8 + 10
    x = G(torch.randn(1, 8).expand(2, 8), labels(2, 7))
    assert x.shape == (2, 1, 8, 8) and not torch.allclose(x[0], x[1], atol=1e-4)  # same z, different labels
    with pytest.raises(ValueError, match=r"class labels.*0\.\.9"):
        G(torch.randn(2, 8), labels(0, 10))
    assert type(mlp_generator(ModelConfig(g_width=16), 8, (2,))) is MLPGenerator  # no classes: the plain net


@pytest.mark.parametrize("minibatch_stddev", [False, True])
def test_conditional_mlp_projection_is_the_inner_product_with_the_hidden_features(minibatch_stddev):
    torch.manual_seed(0)
    cfg = ModelConfig(d_width=16, d_depth=2, minibatch_stddev=minibatch_stddev)
    D = mlp_discriminator(cfg, (1, 8, 8), n_classes=10)
    assert isinstance(D, ConditionalMLPDiscriminator) and D.embed.weight.shape == (10, 16 + int(minibatch_stddev))
    x = torch.randn(4, 1, 8, 8)
    ya, yb = labels(0, 1, 2, 3), labels(5, 1, 9, 4)
    with torch.no_grad():
        a, b = D(x, ya), D(x, yb)
        expected = ((D.embed(ya) - D.embed(yb)) * D.features(x.flatten(1))).sum(1)
        D.embed.weight.zero_()
        plain = MLPDiscriminator(64, 16, 2, cfg.d_activation, cfg.d_norm, False, minibatch_stddev)
        plain.load_state_dict({k: v for k, v in D.state_dict().items() if k != "embed.weight"})
        torch.testing.assert_close(D(x, ya), plain(x))  # a zero embedding is the unconditional D
    assert (a - b)[1] == 0 and (a - b).abs()[[0, 2, 3]].min() > 0
    torch.testing.assert_close(a - b, expected)


def test_conditional_mlp_acgan_head_classifies_x_alone_and_gradients_reach_g():
    torch.manual_seed(0)
    cfg = ModelConfig(g_width=16, d_width=16, cond_d="acgan", minibatch_stddev=True)
    G = mlp_generator(cfg, 8, (1, 8, 8), n_classes=4)
    D = mlp_discriminator(cfg, (1, 8, 8), n_classes=4)
    x = torch.randn(4, 1, 8, 8)
    logits_a, class_a = D(x, labels(0, 1, 2, 3))
    logits_b, class_b = D(x, labels(3, 3, 3, 3))
    torch.testing.assert_close(logits_a, logits_b)
    torch.testing.assert_close(class_a, class_b)
    assert class_a.shape == (4, 4) and D.class_head.in_features == 16  # the stddev feature is not in it
    y = labels(0, 1, 2, 3)
    logits, class_logits = D(G(torch.randn(4, 8), y), y)
    (logits.sum() + class_logits.logsumexp(1).sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


@pytest.mark.parametrize("settings", [
    {"model.cond_d": "projection", "train.r1_weight": 0.1},
    {"model.cond_d": "acgan", "train.aux_weight": 1.0, "model.spectral_norm": True},
])
def test_class_conditional_mlp_trains_in_the_loop(settings):
    gen = torch.Generator().manual_seed(0)
    data = torch.rand(128, 1, 8, 8, generator=gen) * 2 - 1
    y = torch.randint(4, (128,), generator=gen)
    _run_and_check(_trainer("mlp", data, y, {"n_classes": 4}, **{"data.task": "class", **settings}))
