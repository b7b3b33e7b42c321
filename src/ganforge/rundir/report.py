"""An HTML report of a run, or of several runs on the same axes: ``ganforge report RUN_DIR``.

The page is one self-contained file: plots are PNGs embedded as base64 data URIs, the style is
inline, there is no script and no reference to anything on the network, so it can be mailed,
archived or opened offline. It reads only what a run directory holds (see README, "What a run
directory holds"), so it works on a run that is still training or was killed: a record cut short
in ``metrics.jsonl`` is skipped, a missing ``summary.json`` or ``samples.png`` is said, not fatal.

    >>> import ganforge
    >>> ganforge.report("runs/ns", compare=["runs/minimax", "runs/wgan"])   # doctest: +SKIP
    PosixPath('runs/ns/report.html')
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ganforge.errors import UsageError
from ganforge.families import FAMILIES
from ganforge.io import atomic_write
from ganforge.rundir.store import METRICS_FILE, MetricsLog

REPORT_NAME = "report.html"
COMPARE_NAME = "compare.html"  # a comparison never overwrites the first run's own report
MAX_FRAMES = 6  # progress frames shown as a strip (evenly spaced, the last included)
MIN_PICTURE_WIDTH = 256  # pixels; smaller pictures are shown enlarged by a whole factor
MAX_GIF_BYTES = 8 << 20  # a larger progress.gif is left out: the page must stay quick to open
SKIPPED_EVAL_KEYS = ("n",)  # the sample count of an evaluation, not a score


@dataclass
class RunRecords:
    """What one run directory holds, read without loading its networks or data."""

    name: str
    path: Path
    config: dict[str, Any]
    logs: list[dict[str, Any]] = field(default_factory=list)  # monitor records (loss_d, d_real, ...)
    evals: list[dict[str, Any]] = field(default_factory=list)  # {"step": s, **metrics}
    warnings: list[tuple[int, str]] = field(default_factory=list)  # (step, text)
    summary: dict[str, Any] | None = None
    bad_lines: int = 0  # unreadable lines of metrics.jsonl (a record cut short by a kill)

    @property
    def last_step(self) -> int | None:
        steps = [r["step"] for r in self.logs + self.evals if isinstance(r.get("step"), int)]
        return max(steps, default=None)

    def status(self) -> str:
        if self.summary is not None:
            return f"{self.summary.get('status', 'finished')} at step {self.summary.get('steps', '?')}"
        last = self.last_step
        where = f"last record at step {last}" if last is not None else "no records yet"
        return f"no summary.json (still training, or stopped before the end); {where}"


def read_run(path: str | Path, name: str | None = None) -> RunRecords:
    """Read a run directory's config, metrics log, warnings and summary; a folder that is not a
    run raises a :class:`UsageError` naming the problem and the fix."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"run directory not found: {path}; give the folder that 'ganforge train' wrote")
    config = _read_json(path / "config.json", required=True)
    run = RunRecords(name=name or path.name or str(path), path=path, config=config,
                     summary=_read_json(path / "summary.json", required=False))
    try:
        log = MetricsLog(path / METRICS_FILE).read()
    except OSError as exc:
        raise UsageError(f"{path / METRICS_FILE} cannot be read ({exc}); the run is damaged") from None
    run.bad_lines = log.bad_lines
    run.evals = log.evals
    run.logs = log.game
    run.warnings = [(record.get("step"), str(text)) for record in run.logs for text in record.get("warnings") or []]
    listed = (run.summary or {}).get("warnings")
    for entry in listed if isinstance(listed, list) else []:  # the monitor's list, should the log lack one
        item = (entry.get("step"), str(entry.get("warning"))) if isinstance(entry, dict) else (None, str(entry))
        if item not in run.warnings:
            run.warnings.append(item)
    return run


def _read_json(path: Path, required: bool) -> dict[str, Any] | None:
    if not path.is_file():
        if required:
            raise UsageError(f"{path.parent} is not a ganforge run directory (no {path.name}); "
                             "give the folder that 'ganforge train' wrote")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if required:
            raise UsageError(f"{path} cannot be read ({exc}); the run is damaged") from None
        return None  # a damaged summary is reported as missing
    if not isinstance(data, dict):
        if required:
            raise UsageError(f"{path} does not hold a JSON object; the run is damaged")
        return None
    return data


def report(run_dir: str | Path, out: str | Path | None = None, compare: Iterable[str | Path] = (),
           draw: bool = False) -> Path:
    """Write the HTML report of ``run_dir`` (default ``RUN_DIR/report.html``), atomically.

    Args:
        run_dir: a run directory, finished, still training or interrupted.
        out: the HTML file to write.
        compare: more run directories whose curves are drawn on the same axes, each named by its
            folder in the legends (e.g. the same data trained with minimax, ns and wasserstein).
        draw: also draw fresh samples from each run's newest checkpoint (G_ema), e.g. to see the
            current generator of a run that has no ``samples.png`` yet. Loads the networks (and, for
            points, the data), so it costs a few seconds.

    Returns:
        The path written.
    """
    if isinstance(compare, (str, Path)):  # one run given bare, not its characters
        compare = [compare]
    paths = [Path(run_dir), *map(Path, compare)]
    runs = [read_run(p, name) for p, name in zip(paths, _names(paths))]
    out = Path(out) if out is not None else paths[0] / (COMPARE_NAME if len(paths) > 1 else REPORT_NAME)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name such as {out / REPORT_NAME}")
    page = render(runs, draw=draw)
    with atomic_write(out) as fh:
        fh.write(page)
    return out


def _names(paths: Sequence[Path]) -> list[str]:
    """Folder names, or the paths as given where two runs share a folder name."""
    names = [p.resolve().name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


# --- the page ----------------------------------------------------------------------------------

def render(runs: Sequence[RunRecords], draw: bool = False) -> str:
    """The complete HTML page for one run, or for several compared on the same axes."""
    sections = [
        ("losses", "Losses", _curves(runs, "losses")),
        ("verdicts", "D(x) and D(G(z))", _curves(runs, "verdicts")),
        ("accuracy", "Discriminator accuracy", _curves(runs, "accuracy")),
        ("confusion", "Confusion matrix", _confusion_section(runs)),
        ("gradients", "Gradient norms", _curves(runs, "gradients")),
        ("diversity", "Sample diversity", _curves(runs, "diversity")),
        # runs with train.augment log ADA's probability and heuristic
        *([("augment", "Augmentation", _curves(runs, "augment"))]
          if any("aug_p" in r for run in runs for r in run.logs) else []),
        ("evaluation", "Evaluation metrics", _evaluation_section(runs)),
        ("samples", "Samples", _samples_section(runs, draw)),
        ("warnings", "Warnings", _warnings_section(runs)),
        ("summary", "Summary", _summary_section(runs)),
        ("config", "Configuration", _config_section(runs)),
    ]
    title = "ganforge report: " + (runs[0].name if len(runs) == 1 else " vs ".join(r.name for r in runs))
    toc = " · ".join(f'<a href="#{key}">{html.escape(heading)}</a>' for key, heading, _ in sections)
    body = "\n".join(f'<section id="{key}"><h2>{html.escape(heading)}</h2>\n{content}</section>'
                     for key, heading, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{_runs_table(runs)}\n<nav>{toc}</nav>\n{body}\n</body></html>\n")


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
nav { margin: 1em 0; } nav a { color: #2060a0; text-decoration: none; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: .2em .6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.differs td { background: #fff6d5; }
img { max-width: 100%; height: auto; } img.pixels { image-rendering: pixelated; }
figure { display: inline-block; margin: .4em 1em .8em 0; vertical-align: top; }
figcaption { font-size: .9em; color: #555; }
.note { color: #666; font-style: italic; }
.warning { color: #8a4b00; }
.confusion td { width: 7em; text-align: center; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; }
"""


def _runs_table(runs: Sequence[RunRecords]) -> str:
    rows = []
    for run in runs:
        data = run.config.get("data", {}).get("source", "?")
        loss = run.config.get("train", {}).get("loss", "?")
        family = FAMILIES.get(run.config.get("model", {}).get("family") or "gan")
        if family is not None and family.objective:  # the VAE baseline and TimeGAN train no GAN loss of train.loss
            loss = f"{family.name} ({family.objective_text})"
        notes = f"; {run.bad_lines} unreadable line(s) of metrics.jsonl skipped" if run.bad_lines else ""
        rows.append(f"<tr><td><b>{_e(run.name)}</b></td><td>{_e(run.path)}</td><td>{_e(data)}</td>"
                    f"<td>{_e(loss)}</td><td>{_e(run.status() + notes)}</td></tr>")
    return ("<table><tr><th>run</th><th>directory</th><th>data</th><th>loss</th><th>status</th></tr>"
            + "".join(rows) + "</table>")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str, mime: str = "image/png") -> str:
    return f'<img alt="{_e(alt)}" src="data:{mime};base64,{base64.b64encode(png).decode("ascii")}">'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


# --- curves ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Panel:
    """Monitor curves drawn together: one axes for a single run; for a comparison one axes per
    series, a line per run."""

    title: str
    series: tuple[tuple[str, str], ...]  # (key in a monitor record, label)
    about: str
    ylim: tuple[float, float] | None = None
    hline: tuple[float, str] | None = None  # (y, label), dashed
    log: bool = False


PANELS = {
    "losses": Panel("Losses", (("loss_d", "D loss"), ("loss_g", "G loss")),
                    "Each player's loss as its loss function (train.loss) defines it; different loss functions "
                    "are on different scales."),
    "verdicts": Panel("D(x) and D(G(z))", (("d_real", "D(x)"), ("d_fake", "D(G(z))")),
                      "D's mean probability that real (D(x)) and generated (D(G(z))) samples are real; at "
                      "the minimax game's equilibrium both are 0.5. For Wasserstein and hinge critics the sigmoid of "
                      "a score: only which side D leans to.",
                      ylim=(-0.02, 1.02), hline=(0.5, "equilibrium 0.5")),
    "accuracy": Panel("D accuracy", (("acc_real", "on real"), ("acc_fake", "on fake")),
                      "Fraction of real samples D calls real, and of generated samples it calls fake. Both "
                      "near 1 for long: D wins outright and G's gradient vanishes.",
                      ylim=(-0.02, 1.02), hline=(0.5, "chance 0.5")),
    "gradients": Panel("Gradient norms", (("grad_norm_d", "D"), ("grad_norm_g", "G")),
                       "Norm of each player's gradient, log scale; G's falling towards 0 means vanishing "
                       "gradients.", log=True),
    "diversity": Panel("Sample diversity", (("diversity", "diversity"),),
                       "Mean pairwise distance of G's samples on fixed latents relative to the data's; far "
                       "below 1 is mode collapse.", hline=(1.0, "the data's")),
    "augment": Panel("Augmentation", (("aug_p", "p"), ("ada_rt", "r_t")),
                     "p: the probability of each augmentation of D's inputs (train.augment), fixed or steered by "
                     "ADA; r_t = E[sign D(x_real)] on the augmented reals, ADA's overfitting heuristic, which ADA "
                     "steers towards train.ada_target (0.6 by default); near 1, D has memorised the real images.",
                     ylim=(-1.02, 1.02), hline=(0.0, "r_t of a D that cannot tell")),
}
# fixed margins: matplotlib's tight and constrained layouts measure every tick label, seconds a page
MARGINS = {"left": 0.08, "right": 0.98, "top": 0.88, "bottom": 0.16, "wspace": 0.25}
RUN_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
               "tab:gray", "tab:olive", "tab:cyan")


def _column(records: Sequence[dict[str, Any]], key: str, sub: str | None = None) -> tuple[list, list]:
    """Steps and values of ``key`` (or ``key[sub]``); a missing or non-numeric value is NaN (a gap)."""
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        steps.append(record.get("step"))
        values.append(float(value) if _is_number(value) else math.nan)
    return steps, values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _curves(runs: Sequence[RunRecords], key: str) -> str:
    from ganforge.render.plots import figure_png, pyplot

    panel = PANELS[key]
    if not any(r.logs for r in runs):
        return _note("No monitor records yet (one is written every train.log_every steps).")
    plt = pyplot()
    compare = len(runs) > 1
    n_axes = len(panel.series) if compare else 1
    fig, axes = plt.subplots(1, n_axes, figsize=(5.2 * n_axes if compare else 8, 3.4), dpi=100, squeeze=False)
    fig.subplots_adjust(**MARGINS)
    for i, (field_name, label) in enumerate(panel.series):
        ax = axes[0, i if compare else 0]
        for j, run in enumerate(runs):
            steps, values = _column(run.logs, field_name)
            if panel.log:
                values = [v if v > 0 else math.nan for v in values]  # log scale: 0 or less is a gap
            colour = RUN_COLOURS[(j if compare else i) % len(RUN_COLOURS)]
            ax.plot(steps, values, color=colour, linewidth=1.2, label=run.name if compare else label)
        if compare:
            ax.set_title(label)
    for ax in axes.flat:
        if panel.hline:
            ax.axhline(panel.hline[0], color="black", linestyle="--", linewidth=1, label=panel.hline[1])
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        if panel.log:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if not compare:
        axes[0, 0].set_title(panel.title)
    return _note(panel.about) + _img(figure_png(fig), panel.title)


def _confusion_section(runs: Sequence[RunRecords]) -> str:
    from ganforge.render.plots import figure_png, pyplot

    if not any(r.logs for r in runs):
        return _note("No monitor records yet.")
    cells = (("tp", "TP: real called real"), ("fn", "FN: real called fake"), ("fp", "FP: fake called real"),
             ("tn", "TN: fake called fake"))
    colours = ("tab:blue", "lightsteelblue", "tab:orange", "navajowhite")
    plt = pyplot()
    if len(runs) == 1:
        fig, ax = plt.subplots(figsize=(8, 3.4), dpi=100)
        fig.subplots_adjust(**{**MARGINS, "right": 0.72})  # the legend sits to the right
        steps = _column(runs[0].logs, "confusion", "tp")[0]
        ax.stackplot(steps, *[_column(runs[0].logs, "confusion", c)[1] for c, _ in cells],
                     labels=[label for _, label in cells], colors=colours)
        ax.axhline(0.5, color="black", linestyle="--", linewidth=1)
        ax.set(xlabel="step", ylabel="fraction of D's samples", ylim=(0, 1), title="Confusion matrix over time")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.4), dpi=100, sharey=True)
        fig.subplots_adjust(**MARGINS)
        for ax, (cell, label) in zip(axes, cells):
            for j, run in enumerate(runs):
                ax.plot(*_column(run.logs, "confusion", cell), color=RUN_COLOURS[j % len(RUN_COLOURS)],
                        linewidth=1.2, label=run.name)
            ax.set(title=label, xlabel="step", ylim=(-0.02, 0.52))
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
    about = _note("Fractions of D's minibatch (real = positive), half real and half generated: a perfect D has "
                  "TP = TN = 0.5; at the equilibrium each cell is 0.25.")
    return about + _img(figure_png(fig), "confusion matrix over time") + "".join(
        _confusion_table(run) for run in runs if run.logs)


def _confusion_table(run: RunRecords) -> str:
    last = run.logs[-1]
    conf = last.get("confusion") or {}
    cell = lambda k: f"{k.upper()} {conf[k]:.3f}" if _is_number(conf.get(k)) else f"{k.upper()} ?"  # noqa: E731
    return (f'<table class="confusion"><caption>{_e(run.name)}, step {_e(last.get("step"))}</caption>'
            f"<tr><th></th><th>D says real</th><th>D says fake</th></tr>"
            f"<tr><th>real</th><td>{cell('tp')}</td><td>{cell('fn')}</td></tr>"
            f"<tr><th>generated</th><td>{cell('fp')}</td><td>{cell('tn')}</td></tr></table>")


def _evaluation_section(runs: Sequence[RunRecords]) -> str:
    from ganforge.render.plots import figure_png, pyplot

    keys: list[str] = []
    for run in runs:
        for record in run.evals:
            keys += [k for k, v in record.items() if k != "step" and k not in SKIPPED_EVAL_KEYS
                     and _is_number(v) and k not in keys]
    if not keys:
        return _note("No evaluation records yet (written every train.eval_every steps and at the end).")
    plt = pyplot()
    columns = min(4, len(keys))
    rows = -(-len(keys) // columns)
    height = 2.6 * rows + (0.4 if len(runs) > 1 else 0)  # room for the runs' legend below
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, height), dpi=100, squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.35 / height, bottom=(0.75 if len(runs) > 1 else 0.35) / height,
                        wspace=0.3, hspace=0.55)
    for ax, key in zip(axes.flat, keys):
        for j, run in enumerate(runs):
            steps, values = _column(run.evals, key)
            ax.plot(steps, values, marker="o", markersize=3, linewidth=1.2, color=RUN_COLOURS[j % len(RUN_COLOURS)],
                    label=run.name)
        ax.set_title(key, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if len(runs) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", markersize=3, color=RUN_COLOURS[j % len(RUN_COLOURS)])
                   for j in range(len(runs))]
        fig.legend(handles, [run.name for run in runs], loc="lower center", ncol=len(runs), fontsize=9)
    about = _note("Every numeric score of the run's evaluation records, by step (nested values such as "
                  "per-mode counts are in the summary).")
    return about + _img(figure_png(fig), "evaluation metrics over time")


# --- pictures, warnings, summary, config --------------------------------------------------------

def _samples_section(runs: Sequence[RunRecords], draw: bool) -> str:
    from ganforge.render.pictures import GIF_NAME, list_frames

    parts = []
    for run in runs:
        figures = []
        if (picture := _picture(run.path / "samples.png")) is not None:
            figures.append(_figure(picture, "samples.png: the final EMA generator's samples"))
        frames = list_frames(run.path)
        for step, path in _spread(frames, MAX_FRAMES):
            if (picture := _picture(path)) is not None:
                figures.append(_figure(picture, f"progress frame, step {step}"))
        gif = run.path / GIF_NAME
        if gif.is_file() and gif.stat().st_size <= MAX_GIF_BYTES and (picture := _picture(gif)) is not None:
            figures.append(_figure(picture, f"{GIF_NAME}: the fixed latents across training", "image/gif"))
        if draw:
            figures.append(_drawn(run))
        if not figures:
            figures.append(_note("No pictures yet: samples.png is written at the end of training, progress frames "
                                 "every train.snapshot_every steps; 'ganforge report --draw' draws from the newest "
                                 "checkpoint."))
        heading = f"<h3>{_e(run.name)}</h3>" if len(runs) > 1 else ""
        parts.append(heading + "".join(figures))
    return "\n".join(parts)


def _spread(items: list, k: int) -> list:
    """Up to ``k`` items evenly spaced over ``items``, the first and last included."""
    if len(items) <= k:
        return items
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _picture(path: Path) -> tuple[bytes, int] | None:
    """The bytes and width of an image file that Pillow can read; None if it is missing or damaged."""
    from PIL import Image

    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            width = image.width
            image.verify()
    except Exception:  # noqa: BLE001 - any unreadable picture is left out, never fatal
        return None
    return data, width


def _figure(picture: tuple[bytes, int], caption: str, mime: str = "image/png") -> str:
    """An embedded picture with its caption; small ones (8x8 digit grids) enlarged pixel for pixel."""
    data, width = picture
    tag = _img(data, caption, mime)
    if width < MIN_PICTURE_WIDTH:
        tag = tag.replace("<img ", f'<img class="pixels" width="{width * -(-MIN_PICTURE_WIDTH // width)}" ', 1)
    return f"<figure>{tag}<figcaption>{_e(caption)}</figcaption></figure>"


def _drawn(run: RunRecords) -> str:
    """Samples of the fixed progress latents from the newest checkpoint's G_ema, as the run's own
    picture (an image grid, or a scatter over the data)."""
    import tempfile

    from ganforge.render.pictures import FRAME_SEED, frame_count
    from ganforge.rundir.run import Run

    try:
        loaded = Run(run.path)
        checkpoint = loaded.latest_checkpoint()
        samples = loaded.sample(frame_count(loaded.sample_shape), seed=FRAME_SEED)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "drawn.png"
            try:
                loaded.domain.save_samples(samples, path)
            except UsageError:  # no picture file of its own (points): a plot over the real data
                loaded.domain.plot(samples, loaded.load_data(), path)
            picture = _picture(path)
    except UsageError as exc:
        return _note(f"No samples drawn: {exc}")
    if picture is None:
        return _note("No samples drawn: the picture could not be written")
    return _figure(picture, f"drawn now from {checkpoint.name} (G_ema, seed {FRAME_SEED})")


def _warnings_section(runs: Sequence[RunRecords]) -> str:
    rows = [(run.name, step, text) for run in runs for step, text in run.warnings]
    if not rows:
        return _note("The monitor raised no warnings.")
    head = "<tr>" + ("<th>run</th>" if len(runs) > 1 else "") + "<th>step</th><th>warning</th></tr>"
    body = "".join("<tr>" + (f"<td>{_e(name)}</td>" if len(runs) > 1 else "")
                   + f'<td class="num">{_e(step)}</td><td class="warning">{_e(text)}</td></tr>'
                   for name, step, text in rows)
    return f"<p>{len(rows)} warning(s).</p><table>{head}{body}</table>"


def _summary_section(runs: Sequence[RunRecords]) -> str:
    summaries = [run.summary for run in runs]
    if all(s is None for s in summaries):
        return _note("No summary.json yet: it is written when training ends.")
    flat = [_flatten(s) if s is not None else {} for s in summaries]
    note = "".join(_note(f"{run.name}: no summary.json yet (written when training ends).")
                   for run, s in zip(runs, summaries) if s is None)
    return note + _key_table(runs, flat, mark_differences=False)


def _config_section(runs: Sequence[RunRecords]) -> str:
    flat = [_flatten(run.config) for run in runs]
    table = (f"<details><summary>all {len(_union_keys(flat))} settings</summary>"
             f"{_key_table(runs, flat, mark_differences=len(runs) > 1)}</details>")
    if len(runs) == 1:
        return _note("The resolved configuration (config.json).") + table
    keys = [k for k in _union_keys(flat) if len({json.dumps(f.get(k)) for f in flat}) > 1]
    differ = ", ".join(keys) if keys else "none"
    return _note(f"The resolved configurations (config.json); settings that differ (highlighted): {differ}.") + table


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _union_keys(flat: Sequence[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    return keys


def _key_table(runs: Sequence[RunRecords], flat: Sequence[dict[str, Any]], mark_differences: bool) -> str:
    names = [r.name for r in runs] if len(runs) > 1 else ["value"]
    head = "<tr><th>key</th>" + "".join(f"<th>{_e(name)}</th>" for name in names) + "</tr>"
    rows = []
    for key in _union_keys(flat):
        values = [f.get(key, "") for f in flat]
        differs = mark_differences and len({json.dumps(v) for v in values}) > 1
        cells = "".join(f'<td class="num">{_e(_format(v))}</td>' if _is_number(v) else f"<td>{_e(_format(v))}</td>"
                        for v in values)
        rows.append(f'<tr{" class=differs" if differs else ""}><td>{_e(key)}</td>{cells}</tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)
