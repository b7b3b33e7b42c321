"""Images at scale: uint8 all the way (encoded to floats one minibatch at a time), a decoded-size
cap, and the parallel decode into the memory-mapped cache (hit, invalidation, killed writes), with
same-seed and resume determinism of training on a folder."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ganforge
from ganforge.config import DataConfig, RunConfig, set_value
from ganforge.domains.base import holdout_indices
from ganforge.domains.images import ImagesDomain, cache, files
from ganforge.domains.images.arrays import RELEASE_EVERY, PixelEncoder, encode_pixels, encoded_to_pixels, prepare_pixels
from ganforge.domains.images.sources import DATA_SEED
from ganforge.engine.loop import Trainer, build_players
from ganforge.engine.steps import NullCallbacks
from ganforge.errors import UsageError
from ganforge.families.vae import VAETrainer
from ganforge.rundir.session import train

SMALL = {"model.g_width": 8, "model.d_width": 8, "train.batch": 16, "train.steps": 6, "train.log_every": 1,
         "train.ckpt_every": 3, "train.eval_every": 0, "train.snapshot_every": 0, "data.holdout": 0.2}


@pytest.fixture
def image_cache(tmp_path, monkeypatch):
    """A private cache folder for this test."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "images"


def _folder(root: Path, n: int = 30, size: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` colour PNGs in two class folders; returns their pixels in file order, uint8 [n, H, W, 3]."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    for i, img in enumerate(pixels):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "ab"[i % 2] / f"{i:03d}.png")
    order = sorted(range(n), key=lambda i: ("ab"[i % 2], i))  # the loaders' order: folder a, then b
    return pixels[order]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` colour pixels and holds almost none (read lazily, it opens fine)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _count_decodes(monkeypatch) -> list:
    calls = []
    decode = files.decode_image_bytes

    def counted(*args, **kwargs):
        calls.append(1)
        return decode(*args, **kwargs)

    monkeypatch.setattr(files, "decode_image_bytes", counted)
    return calls


# --- uint8 all the way ---------------------------------------------------------------------------


def test_encoding_is_the_float32_formula_and_rounds_back_exactly():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    expected = np.divide(pixels.numpy(), 255, dtype=np.float32) * np.float32(2) - np.float32(1)
    assert torch.equal(encode_pixels(pixels), torch.from_numpy(expected))  # bit for bit
    assert torch.equal(encoded_to_pixels(encode_pixels(pixels)), pixels)


def test_a_folder_trains_on_uint8_rows_encoded_per_minibatch(tmp_path, image_cache):
    pixels = _folder(tmp_path / "imgs")
    ds = ImagesDomain().load(DataConfig(source=str(tmp_path / "imgs"), holdout=0.2))
    assert ds.train.dtype == torch.uint8 and ds.train.shape == (24, 3, 8, 8)
    assert isinstance(ds.batch_transform, PixelEncoder)  # encode_pixels, giving back the mapped cache's pages
    assert ds.encoded().dtype == torch.float32 and torch.equal(ds.encoded(slice(2, 5)), encode_pixels(ds.train[2:5]))
    # the split is the fixed-seed one of the images in file order, cut from the cache's shuffled rows
    keep, hold = holdout_indices(30, 0.2, DATA_SEED)
    assert np.array_equal(ds.holdout, pixels[hold])
    assert np.array_equal(ImagesDomain().decode(ds.train, ds.state), pixels[keep])
    assert ds.meta["labels"].tolist() == [0 if i < 15 else 1 for i in keep]  # folder a holds the first 15 files


def test_a_big_image_is_never_held_as_floats(tmp_path, image_cache):
    big = np.random.default_rng(0).integers(0, 256, size=(1500, 1500, 3), dtype=np.uint8)  # 6.75 MB of pixels
    (tmp_path / "big").mkdir()
    Image.fromarray(big).save(tmp_path / "big" / "a.png")
    tracemalloc.start()
    try:
        loaded = files.load_image_folder(tmp_path / "big", size=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.pixels.dtype == torch.uint8 and loaded.pixels.shape == (1, 3, 64, 64)
    assert peak < 2 * big.nbytes  # float32 pixels alone would be 27 MB, float64 54 MB


def test_arrays_are_converted_a_chunk_at_a_time(tmp_path, monkeypatch):
    floats = np.random.default_rng(0).random((64, 32, 32, 3), dtype=np.float32)  # 786k values in [0, 1)
    expected = torch.from_numpy(np.rint(floats * 255).astype(np.uint8).transpose(0, 3, 1, 2))
    np.save(tmp_path / "floats.npy", floats)
    monkeypatch.setattr("ganforge.domains.images.arrays.CHUNK_VALUES", 1 << 16)
    for convert in (lambda: prepare_pixels(floats, "x"), lambda: files.load_image_array(tmp_path / "floats.npy").pixels):
        tracemalloc.start()
        try:
            pixels = convert()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert pixels.dtype == torch.uint8 and torch.equal(pixels, expected)
        assert peak < floats.nbytes  # the uint8 result and chunk temporaries: no float copy (an .npy is mapped)


def test_sixteen_bit_pngs_are_scaled_to_eight_bits(tmp_path, image_cache):
    values = np.array([[0, 257, 32896], [65535, 1000, 128]], dtype=np.uint16)
    (tmp_path / "deep").mkdir()
    Image.fromarray(values).save(tmp_path / "deep" / "a.png")  # mode I;16
    loaded = files.load_image_folder(tmp_path / "deep")
    assert loaded.pixels[0, 0].tolist() == [[0, 1, 128], [255, 4, 0]]  # round(v * 255 / 65535)


# --- the cap -------------------------------------------------------------------------------------


def test_an_image_above_the_cap_is_refused_from_its_header(tmp_path, image_cache, monkeypatch):
    calls = _count_decodes(monkeypatch)
    _folder(tmp_path / "imgs", n=4)
    (tmp_path / "imgs" / "a" / "huge.png").write_bytes(_png_header(9000, 9000))
    with pytest.raises(UsageError, match=r"huge\.png is 9000x9000 pixels \(81 megapixels\), beyond the limit of 64"):
        files.load_image_folder(tmp_path / "imgs")
    assert calls == []  # refused before any file was decoded
    (tmp_path / "imgs" / "a" / "huge.png").write_bytes(_png_header(20000, 20000))  # Pillow's own bomb check
    with pytest.raises(UsageError, match=r"huge\.png is larger than Pillow's decompression-bomb limit"):
        files.load_image_folder(tmp_path / "imgs")
    loaded = files.load_image_folder(tmp_path / "imgs", skip_bad=True)
    assert len(loaded) == 4 and loaded.skipped == [str(tmp_path / "imgs" / "a" / "huge.png")]


def test_the_cap_is_one_line_from_the_cli(tmp_path, cli):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "huge.png").write_bytes(_png_header(9000, 9000))
    proc = cli("train", str(tmp_path / "imgs"), "--dry-run")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "huge.png is 9000x9000 pixels" in proc.stderr
    assert "downscale or remove it" in proc.stderr and "Traceback" not in proc.stderr


# --- the cache -----------------------------------------------------------------------------------


def test_the_second_load_maps_the_cache_without_decoding(tmp_path, image_cache, monkeypatch):
    calls = _count_decodes(monkeypatch)
    pixels = _folder(tmp_path / "imgs")
    first = files.load_image_folder(tmp_path / "imgs")
    assert len(calls) == 30 and len(list(image_cache.glob("*.npy"))) == 1
    second = files.load_image_folder(tmp_path / "imgs")
    assert len(calls) == 30 and second.release_pages is not None  # nothing decoded again: mapped
    folder = cache.decode_folder(tmp_path / "imgs", list(files.iter_image_files(tmp_path / "imgs")), files.FileReader())
    assert folder.from_cache and cache.page_releaser(folder.pixels) is not None and len(calls) == 30  # mapped
    assert np.array_equal(second.pixels.permute(0, 2, 3, 1).numpy(), pixels)
    assert torch.equal(first.pixels, second.pixels) and np.array_equal(first.labels, second.labels)
    assert second.fingerprint == "sha256:" + files.tree_sha256(tmp_path / "imgs")  # the run's data fingerprint


def test_a_changed_file_invalidates_the_cache_even_with_the_same_size_and_mtime(tmp_path, image_cache, monkeypatch):
    calls = _count_decodes(monkeypatch)
    _folder(tmp_path / "imgs")
    before = files.load_image_folder(tmp_path / "imgs")
    target = tmp_path / "imgs" / "a" / "000.png"
    stat = target.stat()
    other = np.full((8, 8, 3), 7, dtype=np.uint8)
    Image.fromarray(other).save(target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the content changes, the mtime does not
    after = files.load_image_folder(tmp_path / "imgs")
    assert len(calls) == 60 and np.array_equal(after.pixels[0].permute(1, 2, 0).numpy(), other)
    assert torch.equal(after.pixels[1:], before.pixels[1:]) and before.fingerprint != after.fingerprint
    assert len(list(image_cache.glob("*.npy"))) == 1  # the stale entry was replaced
    files.load_image_folder(tmp_path / "imgs", size=4)  # other settings: another entry beside it
    assert len(list(image_cache.glob("*.npy"))) == 2 and len(calls) == 90


KILLED_WRITE = """
import os, signal, sys
from ganforge.domains.images import files
decode, calls = files.decode_image_bytes, []
def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == 20:  # killed in the middle of writing the cache entry
        os.kill(os.getpid(), signal.SIGKILL)
    return decode(*args, **kwargs)
files.decode_image_bytes = dying
files.load_image_folder(sys.argv[1])
"""


def test_a_killed_cache_write_is_never_used(tmp_path, image_cache, monkeypatch):
    pixels = _folder(tmp_path / "imgs")
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(tmp_path / "imgs")], capture_output=True,
                          text=True, env={**os.environ, "GANFORGE_CACHE": str(image_cache.parent)})
    assert proc.returncode == -9, proc.stderr
    assert list(image_cache.glob("*.npy")) == [] and len(list(image_cache.glob(".*.tmp"))) == 1
    calls = _count_decodes(monkeypatch)
    loaded = files.load_image_folder(tmp_path / "imgs").pixels.clone()  # a copy: the entry is damaged below
    assert len(calls) == 30 and np.array_equal(loaded.permute(0, 2, 3, 1).numpy(), pixels)
    # a damaged entry (cut short, or a description of other files) is decoded again too
    entry = next(image_cache.glob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:-100])
    assert torch.equal(files.load_image_folder(tmp_path / "imgs").pixels, loaded) and len(calls) == 60
    entry.with_suffix(".json").write_text(entry.with_suffix(".json").read_text().replace('"key": "', '"key": "0'))
    assert torch.equal(files.load_image_folder(tmp_path / "imgs").pixels, loaded) and len(calls) == 90


def test_skipped_files_are_remembered_by_the_cache(tmp_path, image_cache, monkeypatch):
    _folder(tmp_path / "imgs")
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(good, format="PNG")
    (tmp_path / "imgs" / "b" / "cut.png").write_bytes(good.getvalue()[:60])  # its header reads, its data does not
    with pytest.raises(UsageError, match=r"cut\.png.*skip_bad"):
        files.load_image_folder(tmp_path / "imgs")
    loaded = files.load_image_folder(tmp_path / "imgs", skip_bad=True)
    assert len(loaded) == 30 and loaded.skipped == [str(tmp_path / "imgs" / "b" / "cut.png")]
    calls = _count_decodes(monkeypatch)
    with pytest.raises(UsageError, match=r"cut\.png.*skip_bad"):  # from the cache, without decoding
        files.load_image_folder(tmp_path / "imgs")
    assert torch.equal(files.load_image_folder(tmp_path / "imgs", skip_bad=True).pixels, loaded.pixels)
    assert calls == []


def test_parallel_decoding_gives_the_same_rows_as_one_process(tmp_path, monkeypatch):
    _folder(tmp_path / "imgs", n=40)
    monkeypatch.setenv("GANFORGE_CACHE", "off")
    alone = files.load_image_folder(tmp_path / "imgs", shuffle_seed=3)
    monkeypatch.setattr(cache, "CHUNK_FILES", 3)
    monkeypatch.setattr(cache, "worker_count", lambda n: 2)
    parallel = files.load_image_folder(tmp_path / "imgs", shuffle_seed=3)
    assert torch.equal(alone.pixels, parallel.pixels) and np.array_equal(alone.labels, parallel.labels)
    assert parallel.release_pages is None  # the cache is off: decoded into memory, nothing mapped


# --- training on a folder ------------------------------------------------------------------------


def test_trainers_on_uint8_rows_match_training_on_encoded_floats(tmp_path, image_cache):
    _folder(tmp_path / "imgs", n=40)
    ds = ImagesDomain().load(DataConfig(source=str(tmp_path / "imgs")))
    cfg = RunConfig()
    for key, value in {**SMALL, "model.net": "dcgan", "model.z_dim": 8}.items():
        set_value(cfg, key, value)
    weights = []
    for data, transform in ((ds.train, encode_pixels), (ds.encoded(), None)):
        players = build_players(cfg, "dcgan", 8, ds.sample_shape, torch.device("cpu"))
        trainer = Trainer(cfg, players, data, torch.device("cpu"), NullCallbacks(), batch_transform=transform)
        trainer.t.steps = 2
        trainer.run()
        vae = VAETrainer(cfg, data, torch.device("cpu"), NullCallbacks(), {}, transform)
        vae.iteration()
        weights.append([*players.G.state_dict().values(), *vae.decoder.state_dict().values()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def _resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of the file at ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields[0]) > 8 and not fields[0].endswith(":"):  # a mapping's header
            inside = len(fields) >= 6 and fields[5] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads a mapping's resident size from /proc (Linux)")
def test_the_mapped_cache_gives_its_pages_back_and_reads_the_same_bytes_again(tmp_path):
    # RSS counts every page of a mapping the process has read: without this, an epoch of training
    # held the whole cache file resident (0.7 GB for 50,000 64x64 colour images)
    path = tmp_path / "pixels.npy"
    values = np.random.default_rng(0).integers(0, 256, size=(64, 3, 64, 64), dtype=np.uint8)  # 768 KiB
    np.save(path, values)
    mapped = cache.map_npy(path)
    assert mapped.flags.writeable and np.array_equal(mapped, values)  # reads every page
    assert _resident_kb(path) >= 760
    cache.page_releaser(mapped[10:20])()  # found through a view
    assert _resident_kb(path) == 0
    assert np.array_equal(mapped, values)  # read back from the page cache, unchanged
    assert cache.page_releaser(values) is None  # an array in memory has nothing to give back


def test_training_on_the_mapped_cache_is_the_same_with_pages_given_back_at_every_minibatch(tmp_path, image_cache):
    _folder(tmp_path / "imgs", n=40)
    ds = ImagesDomain().load(DataConfig(source=str(tmp_path / "imgs")))
    assert isinstance(ds.batch_transform, PixelEncoder) and ds.batch_transform.every == RELEASE_EVERY
    releases = []
    every_call = PixelEncoder(lambda: (releases.append(1), ds.batch_transform.release())[1], every=1)
    cfg = RunConfig()
    for key, value in {**SMALL, "model.net": "dcgan", "model.z_dim": 8}.items():
        set_value(cfg, key, value)
    weights = []
    for transform in (encode_pixels, every_call):
        players = build_players(cfg, "dcgan", 8, ds.sample_shape, torch.device("cpu"))
        trainer = Trainer(cfg, players, ds.train, torch.device("cpu"), NullCallbacks(), batch_transform=transform)
        trainer.t.steps = 3
        trainer.run()
        weights.append(list(players.G.state_dict().values()))
    assert len(releases) >= 3 and all(torch.equal(a, b) for a, b in zip(*weights))


def test_images_are_decoded_a_sampling_chunk_at_a_time_with_the_same_result():
    domain, state = ImagesDomain(), {"shape": [3, 4, 4]}
    encoded = torch.rand(10, 3, 4, 4) * 2 - 1
    whole = domain.decode(encoded, state)
    assert np.array_equal(domain.decode_parts(iter(encoded.split(3)), state), whole)
    assert whole.dtype == np.uint8 and whole.shape == (10, 4, 4, 3)


def test_same_seed_runs_on_a_folder_are_identical_and_resume_exactly(tmp_path, image_cache):
    _folder(tmp_path / "imgs", n=40)
    runs = [tmp_path / "one", tmp_path / "two"]
    for out in runs:
        ganforge.train(str(tmp_path / "imgs"), out=out, settings=SMALL, progress=False)
    final = [load_file(str(out / "checkpoints" / "step-00000006" / "weights.safetensors")) for out in runs]
    assert all(torch.equal(final[0][key], final[1][key]) for key in final[0])
    again = tmp_path / "again"
    shutil.copytree(runs[0], again)
    shutil.rmtree(again / "checkpoints" / "step-00000006")
    train(None, resume=again, progress=False, echo=lambda *_: None)
    resumed = load_file(str(again / "checkpoints" / "step-00000006" / "weights.safetensors"))
    assert final[0].keys() == resumed.keys()
    for key in final[0]:
        torch.testing.assert_close(resumed[key], final[0][key], rtol=0, atol=0, msg=key)
