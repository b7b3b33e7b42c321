"""Training on two processes (torchrun, gloo on the CPU) matches one process on the same global batch.

Every rank draws the global batch's random numbers and keeps its rows, and DDP averages the
gradients, so two processes compute what one does up to the order of float additions: measured
max |difference| about 1e-7 on the weights after 30 steps; the test allows 1e-5.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from conftest import TINY
from ganforge.errors import UsageError
from ganforge.engine.distributed import Shard

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this PyTorch has no torch.distributed with the gloo backend")

TOLERANCE = 1e-5
# lr_decay=0 and a fixed noise horizon: a 40-step run passes through the state of a 30-step run
SETTINGS = [*TINY, "train.ckpt_every=10", "train.lr_decay=0", "train.pack=2", "train.instance_noise=0.1",
            "train.instance_noise_steps=100", "train.soft_labels=true", "train.r1_every=4"]
ARGS = ["--quiet", "--seed", "11", *[a for kv in SETTINGS for a in ("--set", kv)]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ganforge(*args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()), "-m", "ganforge"] if nproc > 1 else ["-m", "ganforge"]
    proc = subprocess.run([sys.executable, *launcher, "train", *args], capture_output=True, text=True, env=env,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(run: Path, step: int) -> dict:
    return load_file(str(run / "checkpoints" / f"step-{step:08d}" / "weights.safetensors"))


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith("rng."):
            assert torch.equal(a[key], b[key]), key  # the same global random stream, bit for bit
        else:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=TOLERANCE, msg=key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    two, one = root / "two", root / "one"
    ganforge("ring8", "--out", str(two), "--steps", "30", *ARGS, nproc=2)
    ganforge("ring8", "--out", str(one), "--steps", "40", *ARGS)
    return two, one


def test_two_processes_match_one_on_the_same_global_batch(runs):
    two, one = runs
    assert_same_state(weights(two, 30), weights(one, 30))
    records_two = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    records_one = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    # rank 0 alone writes: one record per log step, with the statistics of the whole global batch
    assert [r["step"] for r in records_two] == [10, 20, 30, 30]
    for a, b in zip(records_two[:3], records_one[:3]):
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "acc_real", "acc_fake", "diversity"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    assert json.loads((two / "summary.json").read_text())["steps"] == 30
    assert not (two / "checkpoints" / "step-00000010").exists()  # the newest two, as for one process


def test_a_two_process_run_resumes_on_one_process(runs):
    two, one = runs
    proc = ganforge("--resume", str(two), "--steps", "40", "--quiet")
    assert "resuming" in proc.stderr and "from step 30 of 40" in proc.stderr
    assert json.loads((two / "summary.json").read_text())["steps"] == 40
    assert_same_state(weights(two, 40), weights(one, 40))


def test_each_rank_takes_its_rows_of_the_global_draw():
    draw = torch.arange(24).reshape(12, 2)  # two segments ([real; fake]) of a global batch of 6
    shards = [Shard(rank, 3).take(draw, segments=2) for rank in range(3)]
    assert [s[:, 0].tolist() for s in shards] == [[0, 2, 12, 14], [4, 6, 16, 18], [8, 10, 20, 22]]
    assert Shard().take(draw) is draw


def test_a_global_batch_the_ranks_cannot_share_is_a_usage_error():
    assert Shard(1, 4).local_batch(64, pack=2) == 16
    with pytest.raises(UsageError, match=r"train\.batch \(63\) is the global batch.*multiple of 2"):
        Shard(0, 2).local_batch(63)
    with pytest.raises(UsageError, match="train.pack"):
        Shard(0, 2).local_batch(64, pack=64)


def test_an_acgan_head_no_loss_reaches_trains_on_two_processes(tmp_path):
    # train.aux_weight=0 leaves the ACGAN classifier head without gradients; DDP must be told, or the
    # second D backward pass stops with "Expected to have finished reduction in the prior iteration"
    out = tmp_path / "acgan"
    ganforge("digits", "--out", str(out), "--steps", "4", "--quiet", "--set", "data.task=class",
             "--set", "model.cond_d=acgan", "--set", "train.aux_weight=0", "--set", "train.batch=16",
             "--set", "model.g_width=8", "--set", "model.d_width=8", "--set", "train.eval_every=0",
             "--set", "train.snapshot_every=0", nproc=2)
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
