"""The on-disk cache of real-image features: hits are exact, misses follow content, bad files are recomputed."""

import numpy as np
import pytest

from ganforge.metrics.cache import compute_real_statistics, real_statistics


class CountingExtractor:
    """A cheap deterministic stand-in for a feature network that counts the images it sees."""

    name = "stub"
    dim = 16

    def __init__(self, id="stub-0001"):
        self.id = id
        self.seen = 0
        self.projection = np.random.default_rng(0).normal(size=(64, self.dim))

    def __call__(self, images):
        self.seen += len(images)
        return (images.reshape(len(images), -1)[:, :64].astype(np.float64) @ self.projection).astype(np.float32)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


@pytest.fixture
def real():
    return np.random.default_rng(1).integers(0, 256, size=(40, 8, 8, 1), dtype=np.uint8)


def assert_same(a, b):
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.mu, b.mu)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    assert a.fid_floor == b.fid_floor


def test_hit_returns_identical_statistics_without_extracting(cache, real):
    ext = CountingExtractor()
    first = real_statistics(ext, real)
    assert not first.from_cache and ext.seen == 40 and len(list(cache.glob("stub-*.npz"))) == 1
    second = real_statistics(ext, real.copy())  # same content, another array
    assert second.from_cache and ext.seen == 40
    assert_same(first, second)
    assert_same(first, compute_real_statistics(ext(real)))  # the cache changes nothing


@pytest.mark.parametrize("change", ["one_pixel", "fewer_images", "other_order", "other_extractor"])
def test_changed_images_or_extractor_miss(cache, real, change):
    ext = CountingExtractor()
    real_statistics(ext, real)
    other = real.copy()
    if change == "one_pixel":
        other[7, 3, 3, 0] ^= 1
    elif change == "fewer_images":
        other = other[:-1]
    elif change == "other_order":
        other = other[::-1]
    else:
        ext = CountingExtractor(id="stub-0002")
    stats = real_statistics(ext, other)
    assert not stats.from_cache
    assert_same(stats, compute_real_statistics(ext(other)))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong_key", "wrong_shape", "nan"])
def test_corrupt_cache_file_is_recomputed_and_replaced(cache, real, damage):
    ext = CountingExtractor()
    good = real_statistics(ext, real)
    (path,) = cache.glob("*.npz")
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with np.load(path) as stored:
            arrays = dict(stored)
        if damage == "wrong_key":
            arrays["key"] = np.array("0" * 64)
        elif damage == "wrong_shape":
            arrays["features"] = arrays["features"][:-1]
        else:
            arrays["sigma"][0, 0] = np.nan
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    seen = ext.seen
    again = real_statistics(ext, real)
    assert not again.from_cache and ext.seen == seen + len(real)
    assert_same(good, again)
    assert real_statistics(ext, real).from_cache  # the bad file was overwritten with a good one


def test_cache_can_be_turned_off(tmp_path, monkeypatch, real):
    monkeypatch.setenv("GANFORGE_CACHE", "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    ext = CountingExtractor()
    assert not real_statistics(ext, real).from_cache and not real_statistics(ext, real).from_cache
    assert ext.seen == 80 and not any(tmp_path.rglob("*.npz"))


def test_unwritable_cache_warns_and_still_scores(tmp_path, monkeypatch, real):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GANFORGE_CACHE", str(blocker))
    ext = CountingExtractor()
    with pytest.warns(UserWarning, match="GANFORGE_CACHE"):
        stats = real_statistics(ext, real)
    assert_same(stats, compute_real_statistics(ext(real)))


def test_digit_scores_use_the_cache(cache):
    pytest.importorskip("ccexam", reason="pip install --no-deps ccexam==1.0.0")
    from ganforge.domains.images import feature_scores

    rng = np.random.default_rng(2)
    real = rng.integers(0, 256, size=(60, 28, 28, 1), dtype=np.uint8)
    fake = rng.integers(0, 256, size=(60, 28, 28, 1), dtype=np.uint8)
    first = feature_scores(real, fake, "digits-cnn")
    assert len(list(cache.glob("digits-cnn-*.npz"))) == 1
    assert feature_scores(real, fake, "digits-cnn") == first
