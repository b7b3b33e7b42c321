import os
from importlib import metadata
import subprocess
import sys

import pytest
import torch

# Test networks are tiny: one thread is faster than two and immune to oversubscribed cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

# Small, fast networks for tests that train; every key is an ordinary --set override.
TINY = ["model.g_width=32", "model.d_width=32", "model.g_depth=2", "model.d_depth=2", "train.batch=64",
        "train.log_every=10", "train.ckpt_every=50", "train.eval_every=0"]


def run_cli(*args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh interpreter."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "ganforge", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


@pytest.fixture(autouse=True, scope="session")
def _private_feature_cache(tmp_path_factory):
    """Tests never read or fill the user's feature cache (~/.cache/ganforge); the CLI inherits it."""
    os.environ["GANFORGE_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))


@pytest.fixture
def cli():
    return run_cli


def installed(distribution: str) -> bool:
    """Whether a package is installed (optional data packages: tests that need one skip without it)."""
    try:
        metadata.distribution(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False
