"""FID parity with a published implementation: pytorch-fid's ``calculate_frechet_distance`` (the
port of the TTUR reference code that most papers' numbers come from), on the same features.

pytorch-fid imports torchvision at the top of ``fid_score.py`` (for its image transforms and its
Inception network), and there is no CPU torchvision here. The test does not import the module: it
reads the installed ``pytorch_fid/fid_score.py``, takes the one function's definition from its
syntax tree and runs it with the names it uses (``np`` and ``scipy.linalg``). The function's text
is pytorch-fid's own, byte for byte; nothing is stubbed. Install it without its dependencies:
``pip install --no-deps pytorch-fid==0.3.0``.
"""

import ast
import inspect
import warnings
from importlib import metadata

import numpy as np
import pytest
from scipy import linalg

from ganforge.metrics.features import feature_statistics, frechet_distance, frechet_distance_from_statistics

PYTORCH_FID = "pip install --no-deps pytorch-fid==0.3.0"


def _sqrtm_with_disp():
    """scipy's sqrtm; for a SciPy without its old ``disp`` argument (removed in 1.18), a wrapper
    that keeps pytorch-fid's ``sqrtm(m, disp=False) -> (root, error)`` call working."""
    if "disp" in inspect.signature(linalg.sqrtm).parameters:
        return linalg
    namespace = type("linalg", (), {})()
    namespace.sqrtm = lambda m, disp=True: linalg.sqrtm(m) if disp else (linalg.sqrtm(m), 0.0)
    return namespace


@pytest.fixture(scope="module")
def reference_fid():
    """pytorch-fid's ``calculate_frechet_distance(mu1, sigma1, mu2, sigma2)``, read from its source."""
    try:
        source = metadata.distribution("pytorch-fid").locate_file("pytorch_fid/fid_score.py").read_text()
    except (metadata.PackageNotFoundError, OSError):
        pytest.skip(f"the FID parity test reads pytorch-fid's formula: {PYTORCH_FID}")
    (node,) = [n for n in ast.parse(source).body
               if isinstance(n, ast.FunctionDef) and n.name == "calculate_frechet_distance"]
    assert "Dougal J. Sutherland" in ast.get_docstring(node)  # the stable version of the TTUR code
    namespace = {"np": np, "linalg": _sqrtm_with_disp()}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "pytorch_fid/fid_score.py", "exec"), namespace)

    def fid(a, b):
        with warnings.catch_warnings():  # SciPy 1.16-1.17 warn that sqrtm's disp is deprecated, and of
            warnings.simplefilter("ignore", DeprecationWarning)  # singular products (dead ReLU features)
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            return float(namespace["calculate_frechet_distance"](*feature_statistics(a), *feature_statistics(b)))

    return fid


def features(seed, n=300, d=24, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.abs(rng.normal(size=(n, d)) @ mixing) * scale + shift  # non-negative, as ReLU/pool features


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.2, 1.0), (0.0, 1.5), (0.5, 0.7)])
def test_fid_equals_pytorch_fid(reference_fid, shift, scale):
    a, b = features(1), features(2, shift=shift, scale=scale)
    assert frechet_distance(a, b) == pytest.approx(reference_fid(a, b), rel=1e-7, abs=1e-9)


def test_fid_equals_pytorch_fid_with_fewer_images_than_dimensions(reference_fid):
    """Singular covariances (rank < d), as with 2048 Inception features of a few hundred images."""
    a, b = features(3, n=40, d=64), features(4, n=50, d=64, shift=0.1)
    assert frechet_distance(a, b) == pytest.approx(reference_fid(a, b), rel=1e-6)


def test_fid_equals_pytorch_fid_on_digit_features(reference_fid):
    """The same check on real features: the digits-cnn extractor's 128 activations."""
    pytest.importorskip("ccexam", reason="pip install --no-deps ccexam==1.0.0")
    from ganforge.metrics.extractors import get_extractor

    rng = np.random.default_rng(5)
    ext = get_extractor("digits-cnn")
    a = ext(rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)).astype(np.float64)
    b = ext((rng.random(size=(200, 28, 28)) ** 3 * 255).astype(np.uint8)).astype(np.float64)  # darker
    ours = frechet_distance_from_statistics(*feature_statistics(a), *feature_statistics(b))
    assert ours == pytest.approx(reference_fid(a, b), rel=1e-6)
    assert ours > 1.0
