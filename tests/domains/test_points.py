import numpy as np
import pytest
import torch

from ganforge.config import DataConfig
from ganforge.domains import get_domain, infer_domain
from ganforge.domains.points import GRID25_CENTRES, POINT_SETS, RING8_CENTRES, read_points_file
from ganforge.errors import UsageError


def test_pacgan_mixtures_exactly():
    assert np.allclose(RING8_CENTRES[2], [0.0, 1.0]) and np.allclose(np.linalg.norm(RING8_CENTRES, axis=1), 1.0)
    assert POINT_SETS["ring8"].std == 0.01 and POINT_SETS["grid25"].std == 0.05
    assert sorted(set(GRID25_CENTRES[:, 0])) == [-4, -2, 0, 2, 4] and len(GRID25_CENTRES) == 25
    x = POINT_SETS["grid25"].draw(50_000, np.random.default_rng(0))
    nearest = ((x[:, None, :] - GRID25_CENTRES[None]) ** 2).sum(-1).argmin(1)
    assert np.bincount(nearest, minlength=25).min() > 1800  # equal weights
    assert np.std(x - GRID25_CENTRES[nearest]) == pytest.approx(0.05, rel=0.02)


def test_builtin_sets_are_the_same_every_time_and_standardised():
    domain = get_domain("points")
    a = domain.load(DataConfig(source="moons", n=1000))
    b = domain.load(DataConfig(source="moons", n=1000))
    assert torch.equal(a.train, b.train) and a.train.shape == (1000, 2)
    torch.testing.assert_close(a.train.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.train.std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    decoded = domain.decode(a.train, a.state)
    assert np.allclose(decoded, POINT_SETS["moons"].draw(1000, np.random.default_rng(20140610)), atol=1e-5)


def test_gaussian2d_hints_a_four_number_latent():
    ds = get_domain("points").load(DataConfig(source="gaussian2d", n=500))
    assert ds.meta["z_dim"] == 4


def test_csv_with_header_and_npy(tmp_path):
    (tmp_path / "p.csv").write_text("x,y,z\n1,2,3\n4,5,6\n\n7,8,9\n")
    assert read_points_file(tmp_path / "p.csv").shape == (3, 3)
    np.save(tmp_path / "p.npy", np.arange(10.0))
    assert read_points_file(tmp_path / "p.npy").shape == (10, 1)
    assert infer_domain(str(tmp_path / "p.csv")).name == "points"


def test_user_file_holdout_split(tmp_path):
    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(200, 4)))
    ds = get_domain("points").load(DataConfig(source=str(tmp_path / "p.npy"), holdout=0.1))
    assert ds.train.shape == (180, 4) and ds.holdout.shape == (20, 4)
    assert ds.state["fingerprint"].startswith("sha256:")


@pytest.mark.parametrize("content,message", [
    ("1,2\n3\n", "ragged"),
    ("1,2\n3,abc\n", "non-numeric"),
    ("a,b\n", "no rows"),
])
def test_bad_csv(tmp_path, content, message):
    (tmp_path / "p.csv").write_text(content)
    with pytest.raises(UsageError, match=message):
        read_points_file(tmp_path / "p.csv")


def test_bad_arrays(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((4, 4, 4)))
    with pytest.raises(UsageError, match="2-D"):
        read_points_file(tmp_path / "cube.npy")
    np.save(tmp_path / "str.npy", np.array(["a", "b"]))
    with pytest.raises(UsageError, match="numbers"):
        read_points_file(tmp_path / "str.npy")
    np.save(tmp_path / "one.npy", np.zeros((1, 2)))
    with pytest.raises(UsageError, match="at least 2"):
        read_points_file(tmp_path / "one.npy")
