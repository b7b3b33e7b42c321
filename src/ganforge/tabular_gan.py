"""``TabularGAN``: the table domain from Python, in the shape CTGAN's users know.

    >>> import ganforge
    >>> gan = ganforge.TabularGAN(steps=3000, target="income").fit(df)          # doctest: +SKIP
    >>> synth = gan.sample(1000, conditions={"sex": "Female"})   # new rows each call  # doctest: +SKIP
    >>> same = gan.sample(1000, seed=7)                          # reproducible       # doctest: +SKIP
    >>> gan.save("models/adult")                                                # doctest: +SKIP
    >>> gan = ganforge.TabularGAN.load("models/adult")          # the model back      # doctest: +SKIP

A fitted model is an ordinary run directory (config, column encoders in ``data.json``, weights),
so ``ganforge sample DIR --out synth.csv`` and ``ganforge eval DIR`` work on it too, and
``ganforge.load(DIR)`` opens it as a :class:`~ganforge.rundir.run.Run` (whose ``sample`` is
seeded, 0 by default); ``TabularGAN.load(DIR)`` gives the ``TabularGAN`` back. The training rows
are never written into it.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ganforge.config import RunConfig, set_value
from ganforge.errors import UsageError
from ganforge.rundir.run import Run
from ganforge.render.latent import latents

if TYPE_CHECKING:
    import pandas as pd

MAX_REJECTION_ROUNDS = 50
SAMPLING_STREAM = 0x5A3B1E  # the sampling seeds' stream, apart from anything else seeded by ``seed``


class TabularGAN:
    """A conditional tabular GAN (CTGAN's encoding and networks on ganforge's engine).

    Args:
        steps: generator steps (default: 600 passes over the rows in minibatches of 500, at least 500).
        batch: minibatch size (a multiple of ``train.pack``, 10 by default).
        columns: column kinds that override the inferred ones, ``{"zip": "categorical"}`` or
            ``"zip:categorical,visits:integer"``.
        target: the column machine-learning efficacy predicts in ``evaluate``.
        seed: seed of the weights and of training.
        out: run directory to train into (default: a temporary directory removed with this object;
            ``save`` keeps a copy).
        settings: any other dotted settings, e.g. ``{"train.loss": "ns", "model.g_width": 512}``.
        config: a base ``RunConfig`` (copied, never changed).
        progress: show a progress bar with the losses while fitting.
    """

    def __init__(self, *, steps: int | None = None, batch: int | None = None, columns: dict | str | None = None,
                 target: str | None = None, seed: int = 0, out: str | Path | None = None,
                 settings: dict[str, Any] | None = None, config: RunConfig | None = None, progress: bool = True) -> None:
        cfg = copy.deepcopy(config) if config is not None else RunConfig()
        set_value(cfg, "data.domain", "table")
        set_value(cfg, "seed", seed)
        for key, value in (("train.steps", steps), ("train.batch", batch), ("data.target", target)):
            if value is not None:
                set_value(cfg, key, value)
        if columns:
            text = columns if isinstance(columns, str) else ",".join(f"{k}:{v}" for k, v in columns.items())
            set_value(cfg, "data.columns", text)
        for key, value in (settings or {}).items():
            set_value(cfg, key, value)
        self.config = cfg
        self.out = Path(out) if out is not None else None
        self.progress = progress
        self.run: Run | None = None
        self.summary: dict[str, Any] | None = None
        self._G: torch.nn.Module | None = None
        self.reset_sampling()

    def fit(self, data: "pd.DataFrame | str | Path") -> "TabularGAN":
        """Train on a DataFrame or a ``.csv``/``.parquet`` file; returns ``self``."""
        from ganforge.rundir.session import train as train_run
        from ganforge.domains.tabular import frame_source

        if self.out is not None:
            out = self.out
        else:  # a scratch directory that lives as long as this object; save() copies what is kept
            scratch = tempfile.mkdtemp(prefix="ganforge-table-")
            weakref.finalize(self, shutil.rmtree, scratch, ignore_errors=True)
            out = Path(scratch) / "run"
        cfg = copy.deepcopy(self.config)
        if isinstance(data, (str, Path)):
            cfg.data.source = str(data)
            self.summary = train_run(cfg, out=out, progress=self.progress)
        else:
            with frame_source(data) as source:
                cfg.data.source = source
                self.summary = train_run(cfg, out=out, progress=self.progress)
        self.run, self._G = Run(out), None
        return self

    @classmethod
    def load(cls, path: str | Path) -> "TabularGAN":
        """A fitted model from its directory (what ``save`` or ``ganforge train`` wrote)."""
        run = Run(path)
        if run.data_state.get("domain") != "table":
            raise UsageError(f"{path} holds a {run.data_state.get('domain')} run, not a table; use ganforge.load")
        gan = cls(config=run.config, progress=False)
        gan.run = run
        return gan

    def _fitted(self) -> Run:
        if self.run is None:
            raise UsageError("this TabularGAN is not fitted yet; call .fit(data) or TabularGAN.load(dir) first")
        return self.run

    def generator(self) -> torch.nn.Module:
        if self._G is None:
            self._G = self._fitted().generator()
        return self._G

    def reset_sampling(self) -> None:
        """Start the sequence of :meth:`sample` calls without ``seed`` again: the calls after this
        return the same tables as the calls after construction or :meth:`load` did (as SDV's
        ``reset_sampling``)."""
        self._sampling = np.random.default_rng([int(self.config.seed), SAMPLING_STREAM])

    def sample(self, n: int, conditions: dict[str, Any] | None = None, seed: int | None = None,
               truncation: float | None = None) -> "pd.DataFrame":
        """``n`` synthetic rows as a DataFrame with the training table's columns and dtypes.

        Each call without ``seed`` returns new rows, as CTGAN's and SDV's ``sample`` do; the
        sequence of such calls starts from the model's ``seed`` (the same script gives the same
        tables; see :meth:`reset_sampling`). With ``seed`` the rows are reproducible: the same
        ``seed`` gives the same rows on every call, in any process.

        ``conditions`` fixes values of categorical or boolean columns, e.g. ``{"sex": "Female"}``
        (``None`` asks for missing values where the column had them). The rarest condition is
        given to G as its conditional vector, so every row holds it; further conditions are met by
        keeping only the rows that satisfy them (rejection, as SDV does), and any rows still
        missing after that have those values set.
        """
        run = self._fitted()
        if n < 1:
            raise UsageError(f"n must be >= 1, got {n}")
        if seed is None:  # room for the rejection rounds' seeds (seed + round) below 2**31
            seed = int(self._sampling.integers(2**31 - MAX_REJECTION_ROUNDS - 1))
        if not conditions:
            return run.sample(n, seed=seed, truncation=truncation, G=self.generator())
        return sample_with_conditions(run, self.generator(), n, conditions, seed, truncation)

    def evaluate(self, real: "pd.DataFrame | None" = None, n: int = 2500, seed: int = 0,
                 protocol: str | None = None) -> dict[str, Any]:
        """Scores of ``n`` samples (drawn with ``seed``): against the training file's data (with its
        holdout; ``protocol`` ``fast`` or ``full`` as in :meth:`Run.evaluate`), or against ``real`` (a
        DataFrame, e.g. the one the model was fitted on) when given, with every score."""
        run = self._fitted()
        if real is None:
            return run.evaluate(n, seed, G=self.generator(), protocol=protocol)
        from ganforge.metrics.tabular import evaluate_tables

        kinds = {spec["name"]: spec["kind"] for spec in run.data_state["columns"]}
        return evaluate_tables(real, self.sample(n, seed=seed), target=run.data_state.get("target") or None,
                               kinds=kinds)

    def save(self, path: str | Path) -> Path:
        """Copy the fitted model to ``path`` (a new or empty directory) and return it."""
        run = self._fitted()
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise UsageError(f"{path} already exists and is not empty; give a new directory")
        if path.resolve() == run.path.resolve():
            return path
        staging = path.parent / f".{path.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(run.path, staging, ignore=shutil.ignore_patterns(".lock", "*.tmp"))
        if path.exists():
            path.rmdir()
        staging.rename(path)  # nothing half-copied is ever left at ``path``
        return path


def _condition_ids(state: dict, conditions: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """Each condition as ``(x offset, width, category index, condition id or -1)``, checked."""
    specs = {str(spec["name"]): spec for spec in state["columns"]}
    cond_spans = [tuple(span) for span in state["net_args"]["cond_spans"]]
    out, start, offsets = [], 0, {}
    for spec in state["columns"]:
        width = sum(w for _, w in _spans(spec))
        offsets[str(spec["name"])] = (start, width)
        start += width
    for name, value in conditions.items():
        spec = specs.get(str(name))
        if spec is None:
            raise UsageError(f"conditions: no column named '{name}'; the columns are {', '.join(specs)}")
        if spec["encoder"] != "onehot":
            raise UsageError(f"conditions: '{name}' is a {spec['kind']} column; conditions fix categorical or boolean "
                             "columns (declare it categorical with data.columns to condition on it)")
        categories = spec["categories"]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            if not spec["missing"]:
                raise UsageError(f"conditions: '{name}' never was missing in the training data")
            k = len(categories)
        else:
            matches = [i for i, c in enumerate(categories) if c == value or str(c) == str(value)]
            if not matches:
                shown = ", ".join(map(repr, categories[:10])) + (", ..." if len(categories) > 10 else "")
                raise UsageError(f"conditions: {value!r} is not a value of '{name}'; its values are {shown}")
            k = matches[0]
        x_start, width = offsets[str(name)]
        cond_id = -1
        if (x_start, width) in cond_spans:
            j = cond_spans.index((x_start, width))
            cond_id = sum(w for _, w in cond_spans[:j]) + k
        out.append((x_start, width, k, cond_id))
    return out


def _spans(spec: dict) -> list:
    from ganforge.domains.tabular import column_spans

    return column_spans(spec)


@torch.no_grad()
def sample_with_conditions(run: Run, G: torch.nn.Module, n: int, conditions: dict[str, Any], seed: int,
                           truncation: float | None) -> "pd.DataFrame":
    """``n`` rows holding every condition (see ``TabularGAN.sample``), reproducible by ``seed``."""
    state = run.data_state
    wanted = _condition_ids(state, conditions)
    probs = state["net_args"]["cond_probs"]
    device = next(G.parameters()).device
    given = [w for w in wanted if w[3] >= 0]
    primary = min(given, key=lambda w: probs[w[3]]) if given else None
    rest = [w for w in wanted if w is not primary]
    kept: list[torch.Tensor] = []
    have = 0
    for round_ in range(MAX_REJECTION_ROUNDS):
        m = max(256, 2 * (n - have))
        z = latents(m, run.config.model.z_dim, seed + round_, truncation, device)
        c = torch.full((m,), primary[3], dtype=torch.long, device=device) if primary else None
        x = torch.cat([G(zc, cc) for zc, cc in zip(z.split(4096), c.split(4096))] if c is not None
                      else [G(zc) for zc in z.split(4096)])
        ok = torch.ones(m, dtype=torch.bool, device=device)
        for start, width, k, _ in rest:
            ok &= x[:, start:start + width].argmax(dim=1) == k
        kept.append(x[ok][: n - have])
        have += int(kept[-1].shape[0])
        if have >= n:
            break
    if have < n:  # rare combinations: set the remaining rows' values
        z = latents(n - have, run.config.model.z_dim, seed + MAX_REJECTION_ROUNDS, truncation, device)
        x = G(z, torch.full((n - have,), primary[3], dtype=torch.long, device=device)) if primary else G(z)
        for start, width, k, _ in rest:
            x[:, start:start + width] = 0.0
            x[:, start + k] = 1.0
        kept.append(x)
    return run.domain.decode(torch.cat(kept)[:n], state)
