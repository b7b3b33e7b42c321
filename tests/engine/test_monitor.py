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


# --- D ahead: a small data set memorised (issue 17) ----------------------------------------------

def interval(mon, step, acc_real, acc_fake, n=100, **augment):
    """One log interval in which D calls ``acc_real`` of the real and ``acc_fake`` of the fake samples right."""
    right_real, right_fake = round(acc_real * n), round(acc_fake * n)
    real = torch.tensor([2.0] * right_real + [-2.0] * (n - right_real))
    fake = torch.tensor([-2.0] * right_fake + [2.0] * (n - right_fake))
    mon.record_d(real, fake, torch.tensor(0.3))
    return mon.flush(step, 1, 1.0, 1.0, 1.0, **augment)


def ahead_warnings(records):
    return [w for r in records for w in r["warnings"] if "D is ahead" in w]


def test_warns_once_per_stretch_when_d_is_ahead_on_both_real_and_fake():
    mon = Monitor(torch.device("cpu"))  # the default stretch: 5 log intervals
    accuracies = [0.92, 0.99, 0.95, 0.97, 0.93, 0.96, 0.98]  # what a user's 200 images showed, never 99%
    records = [interval(mon, step, acc, acc) for step, acc in enumerate(accuracies, 1)]
    found = ahead_warnings(records)
    assert len(found) == 1 and "D is ahead" in records[4]["warnings"][0]
    assert "train.augment" in found[0] and "train.r1_weight" in found[0] and "train.n_critic" in found[0]
    records = [interval(mon, 8, 0.6, 0.6)] + [interval(mon, 9 + i, 0.95, 0.95) for i in range(5)]
    assert len(ahead_warnings(records)) == 1  # a new stretch after a balanced interval warns again
    assert [w["step"] for w in mon.warnings if "D is ahead" in w["warning"]] == [5, 13]


def test_no_warning_for_a_balanced_game_or_a_fooled_d():
    mon = Monitor(torch.device("cpu"))
    balanced = [interval(mon, step, 0.6 + 0.05 * (step % 3), 0.55) for step in range(1, 21)]
    assert balanced[-1]["acc_real"] == pytest.approx(0.7) and ahead_warnings(balanced) == []
    fooled = [interval(mon, step, 0.97, 0.1) for step in range(21, 41)]  # r_t 0.94, but G fools D
    assert ahead_warnings(fooled) == []
    one_sided = [interval(mon, step, 0.85, 0.97) for step in range(41, 61)]  # r_t 0.7: not ahead without ADA
    assert ahead_warnings(one_sided) == []


def test_high_rt_alone_warns_when_d_is_not_fooled():
    mon = Monitor(torch.device("cpu"), Alarms(d_ahead_patience=2))
    records = [interval(mon, step, 0.96, 0.8) for step in (1, 2)]  # r_t = 0.92 >= 0.9
    assert len(ahead_warnings(records)) == 1 and "r_t = E[sign D(x_real)] = 0.92" in records[1]["warnings"][0]


def test_records_carry_p_and_rt_only_with_augmentation():
    mon = Monitor(torch.device("cpu"))
    plain = interval(mon, 1, 0.8, 0.5)
    assert "aug_p" not in plain and "ada_rt" not in plain
    augmented = interval(mon, 2, 0.8, 0.5, augment_p=0.25)
    assert augmented["aug_p"] == 0.25 and augmented["ada_rt"] == pytest.approx(0.8 - 0.2)


def test_with_ada_warns_only_once_p_has_reached_1():
    mon = Monitor(torch.device("cpu"), Alarms(d_ahead_patience=3))
    ada = {"augment_p": 0.4, "ada_target": 0.6}
    steering = [interval(mon, step, 0.95, 0.95, **ada) for step in range(1, 7)]
    assert ahead_warnings(steering) == []  # ADA is raising p against it
    at_one = [interval(mon, step, 0.85, 0.7, augment_p=1.0, ada_target=0.6) for step in range(7, 10)]  # r_t 0.7
    found = ahead_warnings(at_one)
    assert len(found) == 1 and "p = 1 already" in found[0] and "train.r1_weight" in found[0]


def test_advice_follows_the_augmentation_in_use():
    mon = Monitor(torch.device("cpu"), Alarms(d_ahead_patience=1))
    fixed = interval(mon, 1, 0.95, 0.95, augment_p=0.5)
    assert "train.ada=true" in fixed["warnings"][0]


def test_d_ahead_streak_survives_a_checkpoint():
    mon = Monitor(torch.device("cpu"), Alarms(d_ahead_patience=3))
    interval(mon, 1, 0.95, 0.95)
    interval(mon, 2, 0.95, 0.95)
    again = Monitor(torch.device("cpu"), Alarms(d_ahead_patience=3))
    again.load_state(mon.state())
    assert len(ahead_warnings([interval(again, 3, 0.95, 0.95)])) == 1


@pytest.mark.parametrize("r1_weight, advice", [(0.0, "an R1 penalty on real data (train.r1_weight, e.g. 0.1)"),
                                               (0.1, "a stronger R1 penalty on real data (train.r1_weight, now 0.1)")])
def test_the_advice_for_a_d_ahead_does_not_suggest_an_r1_penalty_that_is_on(r1_weight, advice):
    mon = Monitor(torch.device("cpu"), r1_weight=r1_weight)
    found = ahead_warnings([interval(mon, step, 0.95, 0.95) for step in range(1, 6)])
    assert len(found) == 1 and advice in found[0]
