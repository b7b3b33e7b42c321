import pytest
import torch

from ganforge.engine.monitor import Alarms, Monitor, diversity_ratio


def test_confusion_matrix_and_accuracies_from_known_logits():
    mon = Monitor(torch.device("cpu"))
    real = torch.tensor([2.0, 1.0, -1.0, 3.0])   # 3 judged real (TP), 1 judged fake (FN)
    fake = torch.tensor([-2.0, 0.5, -0.1, -4.0])  # 1 judged real (FP), 3 judged fake (TN)
    mon.record_d(real, fake, torch.tensor(0.7))
    mon.record_g(torch.tensor(1.5))
    r = mon.flush(step=10, d_steps=1, grad_norm_d=1.0, grad_norm_g=2.0, diversity=1.0)
    assert r["acc_real"] == 0.75 and r["acc_fake"] == 0.75
    assert r["confusion"] == {"tp": 3 / 8, "fn": 1 / 8, "fp": 1 / 8, "tn": 3 / 8}
    assert r["d_real"] == pytest.approx(torch.sigmoid(real).mean().item())
    assert r["d_fake"] == pytest.approx(torch.sigmoid(fake).mean().item())
    assert r["loss_d"] == pytest.approx(0.7) and r["loss_g"] == pytest.approx(1.5)
    assert r["warnings"] == []


def test_accumulators_reset_after_flush():
    mon = Monitor(torch.device("cpu"))
    mon.record_d(torch.ones(4), -torch.ones(4), torch.tensor(1.0))
    mon.flush(1, 1, 1.0, 1.0, 1.0)
    mon.record_d(-torch.ones(4), torch.ones(4), torch.tensor(3.0))
    r = mon.flush(2, 1, 1.0, 1.0, 1.0)
    assert r["acc_real"] == 0.0 and r["loss_d"] == 3.0


def winning(mon, step):
    mon.record_d(torch.full((8,), 9.0), torch.full((8,), -9.0), torch.tensor(0.01))
    return mon.flush(step, 1, 1.0, 1.0, 1.0)["warnings"]


def test_warns_once_when_d_wins_for_a_long_stretch():
    mon = Monitor(torch.device("cpu"), Alarms(d_wins_patience=3))
    assert winning(mon, 1) == [] and winning(mon, 2) == []
    assert "D wins outright" in winning(mon, 3)[0]
    assert winning(mon, 4) == []  # not repeated every interval
    assert len(mon.warnings) == 1 and mon.warnings[0]["step"] == 3


def test_warns_on_collapsed_diversity_and_vanishing_gradients():
    mon = Monitor(torch.device("cpu"), Alarms(collapse_patience=1, vanishing_patience=1))
    mon.record_d(torch.zeros(4), torch.zeros(4), torch.tensor(0.0))
    warnings = mon.flush(1, 1, grad_norm_d=1.0, grad_norm_g=1e-9, diversity=0.05)["warnings"]
    assert any("collapsed" in w for w in warnings) and any("vanishing" in w for w in warnings)


def test_finite_check():
    assert not Monitor.finite({"loss_d": float("nan"), "loss_g": 0.0, "grad_norm_d": 0.0, "grad_norm_g": 0.0})
    assert Monitor.finite({"loss_d": 1.0, "loss_g": 0.0, "grad_norm_d": 0.0, "grad_norm_g": 0.0})


def test_diversity_ratio():
    real = torch.randn(200, 2)
    assert diversity_ratio(real.clone(), real) == pytest.approx(1.0)
    assert diversity_ratio(torch.zeros(200, 2) + 0.001 * torch.randn(200, 2), real) < 0.01
