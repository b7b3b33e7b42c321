import numpy as np
import pytest
import torch

from ganforge.domains.timeseries import sine_data
from ganforge.metrics.timeseries import (ParallelGRU, acf_distance, autocorrelation, cross_correlation,
                                         discriminative_score, discriminative_scores, predictive_score,
                                         timegan_scores, window_lengths, xcorr_distance)


def sines(n, seed, features=2, length=8):
    return sine_data(n, length, features, np.random.default_rng(seed))


def tf1_gru_reference(model: ParallelGRU, r: int, x: np.ndarray, length: int) -> np.ndarray:
    """TensorFlow 1's GRUCell written out in NumPy, run to ``length`` steps (dynamic_rnn's final state)."""
    p = {k: v.detach().double().numpy()[r] for k, v in model.named_parameters()}
    h = np.zeros((x.shape[0], model.hidden))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(length):
        gates = sig(np.concatenate([x[:, t], h], 1) @ np.concatenate([p["wx_gate"], p["wh_gate"]]) + p["b_gate"][0])
        reset, update = gates[:, : model.hidden], gates[:, model.hidden:]
        cand = np.tanh(np.concatenate([x[:, t], reset * h], 1) @ np.concatenate([p["wx_cand"], p["wh_cand"]])
                       + p["b_cand"][0])
        h = update * h + (1 - update) * cand
    return h @ p["w_head"] + p["b_head"][0]


def test_parallel_gru_is_tensorflow1_gru_cell_per_repeat_and_stops_at_each_length():
    torch.manual_seed(0)
    model = ParallelGRU(repeats=3, n_in=4, hidden=3, per_step=False).double()
    x = np.random.default_rng(0).normal(size=(3, 5, 7, 4))
    lengths = np.array([[7, 3, 5, 1, 7]] * 3)
    with torch.no_grad():
        out = model(torch.from_numpy(x), torch.from_numpy(lengths)).numpy()
    for r in range(3):
        for i in range(5):
            expected = tf1_gru_reference(model, r, x[r, i : i + 1], lengths[r, i])
            assert out[r, i] == pytest.approx(expected.item(), abs=1e-10)
    # TF1 initialisation: gate biases 1, candidate and head biases 0, Glorot bound on the gate kernel
    assert torch.all(model.b_gate == 1) and torch.all(model.b_cand == 0) and torch.all(model.b_head == 0)
    assert model.wx_gate.abs().max() <= np.sqrt(6 / (4 + 3 + 6))


def test_window_lengths_read_trailing_nan_rows():
    x = np.ones((3, 5, 2))
    x[1, 3:] = np.nan
    x[2, 1:] = np.nan
    assert window_lengths(x).tolist() == [5, 3, 1]


def test_discriminative_score_near_zero_for_the_same_process_and_large_for_another():
    real, same = sines(300, 0, features=4), sines(300, 1, features=4)
    # 100 of TimeGAN's 2,000 iterations: enough to see mirrored curves, not to tell two draws apart
    assert discriminative_score(real, same, iterations=100, seed=0) < 0.12
    assert discriminative_score(real, 1.0 - same, iterations=100, seed=0) > 0.2


def test_discriminative_scores_are_reproducible_and_repeats_differ():
    real, fake = sines(300, 0), np.clip(sines(300, 1) + 0.05, 0, 1)
    a = discriminative_scores(real, fake, repeats=3, iterations=30, seed=5)
    b = discriminative_scores(real, fake, repeats=3, iterations=30, seed=5)
    assert a.shape == (3,) and np.array_equal(a, b)
    assert len(set(a.tolist())) > 1  # own split, weights and minibatches per repeat


def test_predictive_score_is_lower_when_trained_on_the_real_process():
    real = sines(500, 0, features=3)
    good = predictive_score(real, sines(500, 1, features=3), iterations=150, seed=0)
    noise = predictive_score(real, np.random.default_rng(2).uniform(size=real.shape), iterations=150, seed=0)
    assert np.isfinite(good) and 0 < good < noise


def test_timegan_scores_report_mean_and_std_and_handle_variable_length_and_one_feature():
    real = sines(100, 0, features=1)
    fake = sines(100, 1, features=1)
    fake[::3, 5:] = np.nan  # shorter windows
    out = timegan_scores(real, fake, repeats=2, disc_iterations=20, pred_iterations=20)
    assert out["repeats"] == 2 and all(np.isfinite(out[k]) for k in ("discriminative", "predictive"))
    assert out["discriminative_std"] >= 0 and out["predictive_std"] >= 0


def test_autocorrelation_of_an_ar1_process_and_cross_correlation_of_linked_features():
    rng = np.random.default_rng(0)
    phi, n, length = 0.8, 2000, 30
    x = np.zeros((n, length))
    x[:, 0] = rng.normal(size=n) / np.sqrt(1 - phi**2)  # stationary start
    for t in range(1, length):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=n)
    acf = autocorrelation(x[..., None], 3)[:, 0]
    assert acf == pytest.approx([phi, phi**2, phi**3], abs=0.02)
    # lag 1 pooled over windows equals the correlation of all (x_t, x_t+1) pairs
    pairs = np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1]
    assert acf[0] == pytest.approx(pairs, abs=0.01)
    linked = np.stack([x, 2 * x + 1, rng.normal(size=x.shape)], axis=2)
    corr = cross_correlation(linked)
    assert corr[0, 1] == pytest.approx(1.0) and abs(corr[0, 2]) < 0.05


def test_distances_are_zero_for_identical_sets_and_grow_with_the_difference():
    x = sines(300, 0, features=3)
    assert acf_distance(x, x) == 0 and xcorr_distance(x, x) == 0
    noise = np.random.default_rng(0).uniform(size=x.shape)
    assert acf_distance(x, noise) > 0.5
    linked = x.copy()
    linked[..., 1] = linked[..., 0]
    assert xcorr_distance(x, linked) > 0.1
