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


def write_variable_length_ts(path, n_cases: int = 30) -> None:
    """A UCR/UEA ``.ts`` file of ``n_cases`` two-channel sequences of 6 to 10 steps (class ``a``)."""
    import numpy as np

    rng = np.random.default_rng(0)
    cases = []
    for i in range(n_cases):
        n = 6 + i % 5
        cases.append(":".join(",".join(f"{v:.4f}" for v in rng.normal(size=n) + d) for d in (0, 5)) + ":a")
    path.write_text("@problemName var\n@dimensions 2\n@classLabel true a\n@data\n" + "\n".join(cases) + "\n")
