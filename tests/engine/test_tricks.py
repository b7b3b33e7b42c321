import pytest
import torch

from ganforge.config import TrainConfig
from ganforge.nets.layers import MinibatchStdDev
from ganforge.engine import tricks


def test_no_label_tricks_means_plain_targets():
    assert tricks.label_targets(TrainConfig(), 8, torch.Generator(), torch.device("cpu")) == (1.0, 0.0)


def test_one_sided_smoothing_changes_only_real_targets():
    real, fake = tricks.label_targets(TrainConfig(label_smoothing=0.1), 8, torch.Generator(), torch.device("cpu"))
    assert torch.allclose(real, torch.full((8,), 0.9)) and torch.equal(fake, torch.zeros(8))


def test_soft_labels_lie_in_the_ganhacks_ranges():
    real, fake = tricks.label_targets(TrainConfig(soft_labels=True), 10_000, torch.Generator().manual_seed(0),
                                      torch.device("cpu"))
    assert 0.7 <= real.min() and real.max() <= 1.2 and 0.0 <= fake.min() and fake.max() <= 0.3
    assert real.mean().item() == pytest.approx(0.95, abs=0.01)


def test_noisy_labels_flip_at_the_given_rate():
    real, fake = tricks.label_targets(TrainConfig(label_flip=0.2), 20_000, torch.Generator().manual_seed(0),
                                      torch.device("cpu"))
    assert (real == 0).float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert (fake == 1).float().mean().item() == pytest.approx(0.2, abs=0.01)


def test_instance_noise_decays_linearly_to_zero():
    cfg = TrainConfig(instance_noise=0.4, instance_noise_steps=100, steps=1000)
    assert tricks.instance_noise_std(cfg, 0) == pytest.approx(0.4)
    assert tricks.instance_noise_std(cfg, 50) == pytest.approx(0.2)
    assert tricks.instance_noise_std(cfg, 100) == 0.0 and tricks.instance_noise_std(cfg, 500) == 0.0
    assert tricks.instance_noise_std(TrainConfig(instance_noise=0.4, steps=200), 100) == pytest.approx(0.2)


def test_pack_concatenates_consecutive_samples():
    x = torch.arange(12.0).view(6, 2)
    packed = tricks.pack(x, 3)
    assert packed.shape == (2, 6)
    torch.testing.assert_close(packed[0], torch.tensor([0.0, 1, 2, 3, 4, 5]))
    images = torch.randn(8, 3, 4, 4)
    assert tricks.pack(images, 2).shape == (4, 6, 4, 4)
    torch.testing.assert_close(tricks.pack(images, 2)[1, 3:], images[3])


def test_minibatch_stddev_appends_group_statistic():
    x = torch.randn(8, 5)
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (8, 6)
    torch.testing.assert_close(out[:, :5], x)
    # sample i belongs to group {i % 2, i % 2 + 2, ...}: rows 0, 2, 4, 6 form one group
    group = x[[0, 2, 4, 6]]
    expected = group.var(dim=0, unbiased=False).add(1e-8).sqrt().mean()
    torch.testing.assert_close(out[0, 5], expected)
    torch.testing.assert_close(out[6, 5], expected)
    assert MinibatchStdDev()(torch.randn(6, 3, 4, 4)).shape == (6, 4, 4, 4)
