"""The runs under a folder, one row each: ``ganforge runs [FOLDER]``, ``ganforge.runs(folder)``.

A run is a folder holding ``config.json``; runs are looked for in the folder itself, its
subfolders and theirs (``runs/00000-ring8``, ``sweeps/loss/ns``). Each row is read from what the
run directory holds, without loading networks or data:

- ``name`` (the path below the folder), ``data`` and ``domain``, ``loss`` (from ``config.json``);
- ``steps`` done (the last record of ``metrics.jsonl``, else ``summary.json``) of ``steps_total``;
- ``status``: ``running`` (a process holds the run's lock), else ``summary.json``'s status
  (``finished`` or ``diverged``), else ``stopped`` (killed or interrupted: ``--resume`` continues it),
  or ``damaged`` when ``config.json`` or ``summary.json`` cannot be read (``error`` says why);
- ``seconds`` in all (the summary's, else the last record's elapsed time), ``train_seconds`` of the
  training loop and ``eval_seconds`` of the final evaluation (summaries that split them; the table's
  ``train`` column falls back to ``seconds`` for older ones);
- ``features``: the id of the feature extractor the FID, KID and PRDC were computed with (scores on
  different extractors, or Inception in bf16 and in float32, do not compare; the table puts it beside ``fid``);
- the final metrics: every numeric score of the summary's evaluation, or for a run without a
  summary its last evaluation record, each its own key (``modes``, ``energy_distance``, ...). The
  table shows first the headline scores each domain names (``Domain.headline``: points' modes,
  a table's column shapes and detection AUC, series' discriminative and predictive scores, ...).

One damaged run never stops the listing: its row names the problem.

    >>> import ganforge
    >>> table = ganforge.runs("runs")                                   # doctest: +SKIP
    >>> table.sort_values("reverse_kl")[["name", "loss", "modes"]]      # doctest: +SKIP
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from ganforge.domains import DOMAINS
from ganforge.errors import UsageError
from ganforge.families import FAMILIES
from ganforge.rundir.store import METRICS_FILE, MetricsLog

RUN_MARK = "config.json"
SEARCH_DEPTH = 2  # levels of subfolders searched below the folder
TAIL_BYTES = 1 << 16  # the end of metrics.jsonl read for the last records (several log intervals)
BASE = ("name", "data", "domain", "loss", "steps", "steps_total", "status", "seconds", "train_seconds", "eval_seconds",
        "path", "error")
TABLE_BASE = ("name", "data", "domain", "loss", "steps", "status", "train", "eval")
# left out of the default columns (still available with --columns): counts and spreads, not scores
QUIET_METRICS = ("n", "repeats", "modes_total")
QUIET_SUFFIXES = ("_std", "_expected", "_real_floor")
MAX_METRIC_COLUMNS = 8
METRIC_WIDTH = 10
# sorted ascending by default: lower is better (distances, divergences, losses, time); else descending
LOWER_IS_BETTER = re.compile(r"distance|kl|fid|kid|mmd|l1|loss|seconds|time|auc|discriminative|predictive")
FEATURES = "features"  # the feature extractor's id of a run's FID/KID/PRDC (``--features``), e.g. inception-...-bf16
ALIASES = {"time": "seconds", "train": "train_seconds", "eval": "eval_seconds"}


def runs(folder: str | Path = "runs", frame: bool = True) -> Any:
    """The runs under ``folder`` (itself, its subfolders and theirs), one row per run.

    Args:
        folder: where the runs were written (``ganforge train --out``; default ``runs``).
        frame: a pandas DataFrame (columns: the fixed ones of :data:`BASE`, then one per metric,
            most common first); ``False`` gives a list of dicts.

    Returns:
        The rows, in name order. A missing metric is ``None`` (``NaN`` in the DataFrame).

    Raises:
        UsageError: ``folder`` does not exist.
    """
    rows = list_runs(folder)
    if not frame:
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=[*BASE, *metric_keys(rows)])


def list_runs(folder: str | Path = "runs") -> list[dict[str, Any]]:
    """One dict per run under ``folder`` (see :func:`runs`), in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"folder not found: {folder}; give the folder the runs were written to "
                         "(where 'ganforge train' or --out put them)")
    return [read_row(path, folder) for path in find_runs(folder)]


def find_runs(folder: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """Run directories: ``folder`` itself if it is one, else those among its subfolders, ``depth`` levels down."""
    if (folder / RUN_MARK).is_file():
        return [folder]
    if depth < 1:
        return []
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []  # an unreadable folder holds no run we can list
    return [run for child in children for run in find_runs(child, depth - 1)]


def read_row(path: Path, folder: Path) -> dict[str, Any]:
    """The row of one run directory; never raises for a damaged run (``error`` says what is wrong)."""
    row: dict[str, Any] = dict.fromkeys(BASE)
    row["name"] = path.relative_to(folder).as_posix() if path != folder else path.resolve().name
    row["path"] = str(path)
    problems: list[str] = []
    config = _read_json(path / RUN_MARK, problems)
    if config is not None:
        row["data"] = _get(config, "data", "source")
        row["domain"] = _get(config, "data", "domain")
        # a family with an objective of its own (the VAE's ELBO, TimeGAN's losses) trains no GAN loss
        family = FAMILIES.get(_get(config, "model", "family") or "gan")
        row["loss"] = family.name if family is not None and family.objective else _get(config, "train", "loss")
        row["steps_total"] = _get(config, "train", "steps")
    summary = _read_json(path / "summary.json", problems) if (path / "summary.json").exists() else None
    last_step, last_log, last_eval = _tail(path / METRICS_FILE, problems)
    running = is_locked(path)
    row["steps"] = last_step if last_step is not None else (summary or {}).get("steps")
    if running:
        row["status"] = "running"
    elif problems:
        row["status"] = "damaged"
    else:
        row["status"] = str(summary.get("status", "finished")) if summary is not None else "stopped"
    for key in ("seconds", "train_seconds", "eval_seconds"):
        value = (summary or {}).get(key) if not running else None
        row[key] = value if _is_number(value) else None
    if row["seconds"] is None:
        row["seconds"] = (last_log or {}).get("time")
    evaluation = (summary or {}).get("eval") if not running else None
    if not isinstance(evaluation, dict):
        evaluation = last_eval or {}
    for key, value in evaluation.items():
        if _is_number(value):
            row[f"eval.{key}" if key in BASE else key] = value
    if isinstance(evaluation.get("extractor"), str):  # which features the FID, KID and PRDC were computed on
        row[FEATURES] = evaluation["extractor"]
    row["error"] = "; ".join(problems) or None
    return row


def is_locked(path: Path) -> bool:
    """Whether a process is training into ``path`` now (it holds the lock on ``path/.lock``).

    The test takes a shared lock for an instant; a training started in that instant reports the run
    as busy, as it does for any other holder.
    """
    try:
        fd = os.open(path / ".lock", os.O_RDONLY)
    except OSError:
        return False  # no lock file: never trained, or written by hand
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def metric_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every metric key of the rows, the most common first (ties in the order first seen)."""
    counts = Counter(key for row in rows for key in row if key not in BASE)
    order = list(dict.fromkeys(key for row in rows for key in row if key not in BASE))
    return sorted(order, key=lambda key: -counts[key])


def default_columns(rows: Sequence[dict[str, Any]], width: int) -> list[str]:
    """The metric columns of the table that fit ``width``: first the headline scores of the rows'
    domains (``Domain.headline``; with several domains, the first of each, then the second of each,
    ...), then the most common other scores (no counts or spreads)."""
    present = metric_keys(rows)
    domains = [name for name, _ in Counter(row.get("domain") for row in rows).most_common() if name in DOMAINS]
    lists = [DOMAINS[name].headline for name in domains]
    headline = [keys[i] for i in range(max(map(len, lists), default=0)) for keys in lists if i < len(keys)]
    common = [k for k in present if k not in QUIET_METRICS and not k.endswith(QUIET_SUFFIXES)]
    keys = [k for k in dict.fromkeys(headline + common) if k in present]
    if FEATURES in keys and "fid" in keys:  # the extractor beside the FID: scores on different features never compare
        keys.remove(FEATURES)
        keys.insert(keys.index("fid"), FEATURES)
    room = width - sum(_base_widths(rows).values()) - 2 * len(TABLE_BASE)
    chosen: list[str] = []
    for key in keys[:MAX_METRIC_COLUMNS]:
        room -= max(len(key), METRIC_WIDTH) + 2
        if room < 0 and len(chosen) >= 2:
            break
        chosen.append(key)
    return chosen


def parse_columns(text: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    """``--columns a,b,c``: metric keys that some run reports."""
    columns = [c.strip() for c in text.split(",") if c.strip()]
    known = metric_keys(rows)
    unknown = [c for c in columns if c not in known]
    if unknown or not columns:
        raise UsageError(f"--columns: unknown metric {', '.join(unknown) or '(none given)'}; "
                         f"these runs report: {', '.join(known) or 'no metrics yet'}")
    return columns


def sort_rows(rows: list[dict[str, Any]], key: str, ascending: bool | None = None) -> list[dict[str, Any]]:
    """Rows sorted by ``key`` (a column of :data:`BASE`, ``time``, ``train``, ``eval``, or a metric); rows
    without a value last.

    The direction by default: text ascending; numbers descending, except where lower is better
    (distances, divergences, losses, FID/KID, AUC, time).
    """
    key = ALIASES.get(key, key)
    if key not in BASE and key not in metric_keys(rows):
        raise UsageError(f"--sort: unknown key '{key}'; choose one of {', '.join(BASE[:-2] + tuple(ALIASES))} "
                         f"or a metric: {', '.join(metric_keys(rows)) or 'none yet'}")
    def has_value(row: dict[str, Any]) -> bool:
        value = row.get(key)
        return value is not None and not (_is_number(value) and math.isnan(value))

    present = [r for r in rows if has_value(r)]
    missing = [r for r in rows if not has_value(r)]
    numeric = all(_is_number(r[key]) for r in present)
    if ascending is None:
        ascending = not numeric or bool(LOWER_IS_BETTER.search(key))
    value = (lambda r: float(r[key])) if numeric else (lambda r: str(r[key]))
    return sorted(present, key=value, reverse=not ascending) + missing


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """The rows as an aligned text table: the fixed columns, then ``columns`` (metrics), then any error."""
    headers = [*TABLE_BASE, *columns]
    cells = [[_cell(row, key) for key in headers] for row in rows]
    if any(row.get("error") for row in rows):
        headers.append("error")
        for line, row in zip(cells, rows):
            line.append(row.get("error") or "")
    widths = [max([len(h), *(len(line[i]) for line in cells)]) for i, h in enumerate(headers)]
    numeric = {"steps", "train", "eval", *columns}

    def fmt(line: list[str]) -> str:
        parts = [text.rjust(w) if h in numeric else text.ljust(w) for text, w, h in zip(line, widths, headers)]
        return "  ".join(parts).rstrip()

    return "\n".join([fmt(headers), *(fmt(line) for line in cells)])


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """The rows as CSV: every fixed column, then ``columns``; a missing value is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*BASE, *columns])
    for row in rows:
        writer.writerow(["" if row.get(k) is None else row[k] for k in (*BASE, *columns)])
    return out.getvalue()


# --- reading a run ------------------------------------------------------------------------------

def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name} cannot be read ({exc})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} does not hold a JSON object")
        return None
    return data


def _get(config: dict[str, Any], section: str, key: str) -> Any:
    values = config.get(section)
    return values.get(key) if isinstance(values, dict) else None


def _tail(path: Path, problems: list[str]) -> tuple[int | None, dict | None, dict | None]:
    """The last step, the last monitor record and the last evaluation in the end of ``metrics.jsonl``."""
    try:
        records = MetricsLog(path).read(tail_bytes=TAIL_BYTES)
    except OSError as exc:
        problems.append(f"metrics.jsonl cannot be read ({exc})")
        return None, None, None
    game = records.game
    return records.last_step, game[-1] if game else None, records.last_eval


# --- formatting ---------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(row: dict[str, Any], key: str) -> str:
    if key == "steps":
        done, total = row.get("steps"), row.get("steps_total")
        return f"{'-' if done is None else done}/{'-' if total is None else total}"
    if key == "train":  # summaries from before the split: the whole time
        return _duration(row.get("train_seconds") if row.get("train_seconds") is not None else row.get("seconds"))
    if key == "eval":
        return _duration(row.get("eval_seconds"))
    if key == "data":
        source = row.get("data")
        return Path(str(source)).name if source else "-"  # a file's name, not its whole path
    value = row.get(key)
    if value is None:
        return "-"
    if key == FEATURES:  # the table shortens the extractor's 32-digit content hash (JSON and CSV keep it whole)
        return re.sub(r"\b([0-9a-f]{8})[0-9a-f]{24}\b", r"\1", str(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: Any) -> str:
    if not _is_number(seconds) or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _base_widths(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    return {key: max([len(key), *(len(_cell(row, key)) for row in rows)]) for key in TABLE_BASE}
