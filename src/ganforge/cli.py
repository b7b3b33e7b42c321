"""The ``ganforge`` command: a thin layer over the library; each subcommand calls one function.

Bad input never shows a traceback: it is one line on stderr, ``ganforge: error: <what> ; <fix>``,
and exit code 2. A run that diverges (NaN/inf) exits with code 3 and keeps its last good
checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import click

from ganforge.errors import TrainingDiverged, UsageError
from ganforge.io import atomic_write, output_errors

EXIT_USAGE = 2
EXIT_DIVERGED = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ganforge")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error on the terminal "
              "(else it is written to a log file that the error line names).")
def cli(debug) -> None:
    """Train, evaluate, diagnose and use generative adversarial networks."""
    _DEBUG["on"] = debug or _DEBUG["on"]


@cli.command()
@click.argument("data", required=False)
@click.option("--domain", default=None, help="Kind of data (points, images, series); inferred when omitted.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory to create (default runs/NNNNN-DATA).")
@click.option("--steps", type=int, default=None, help="Generator steps (each after n_critic D steps).")
@click.option("--batch", type=int, default=None, help="Minibatch size.")
@click.option("--seed", type=int, default=None, help="Seed of weights and training randomness.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="JSON or TOML config file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Dotted override, e.g. --set train.loss=hinge (repeatable).")
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Continue this run directory exactly where it stopped.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--skip-bad", is_flag=True, help="Images: skip and count unreadable files instead of stopping.")
def train(data, domain, out, steps, batch, seed, config_file, overrides, resume, dry_run, as_json, quiet, skip_bad) -> None:
    """Train a GAN on DATA (a built-in name, see 'ganforge datasets', or a file)."""
    from ganforge.config import RunConfig, load_config_file, merge_dict, parse_override, set_value
    from ganforge.rundir.resolve import resolve
    from ganforge.rundir.session import train as train_run

    if steps is not None and steps < 0:
        raise UsageError(f"--steps must be >= 0, got {steps}")
    if resume is not None:
        if data or domain or out or batch is not None or seed is not None or config_file or overrides or skip_bad:
            raise UsageError("--resume continues a run with its own config; only --steps may be given with it")
        if not resume.is_dir():
            raise UsageError(f"run directory not found: {resume}; give the folder 'ganforge train' wrote")
        summary = train_run(None, resume=resume, steps=steps, progress=not quiet, echo=_err)
        if summary is not None:  # None on the ranks other than 0 of a torchrun launch
            _print_summary(summary, as_json)
        return
    if not data:
        raise UsageError("give DATA (a built-in name or a file) or --resume RUN_DIR; 'ganforge datasets' lists the names")
    cfg = RunConfig()
    if config_file:
        merge_dict(cfg, load_config_file(config_file), str(config_file))
    for text in overrides:
        set_value(cfg, *parse_override(text))
    cfg.data.source = data
    for key, value in (("data.domain", domain), ("train.steps", steps), ("train.batch", batch), ("seed", seed)):
        if value is not None:
            set_value(cfg, key, value)
    if skip_bad:
        set_value(cfg, "data.skip_bad", True)
    if dry_run:
        resolve(cfg)  # loads the data: what is printed is exactly what would train
        click.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    summary = train_run(cfg, out=out, progress=not quiet, echo=_err)
    if summary is not None:
        _print_summary(summary, as_json)


class _SeedList(click.ParamType):
    """``--seeds``: seeds as ranges and commas, ``0-35`` or ``1,5,9-12`` -> ``[1, 5, 9, 10, 11, 12]``."""

    name = "seeds"
    MAX = 10_000
    _PART = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")

    def convert(self, value, param, ctx) -> list[int]:
        if isinstance(value, list):
            return value
        seeds: list[int] = []
        for part in str(value).split(","):
            match = self._PART.fullmatch(part)
            first, last = (int(match[1]), int(match[2] or match[1])) if match else (1, 0)
            if last < first:
                self.fail(f"'{value}' is not a list of seeds; give ranges and commas, e.g. 0-35 or 1,5,9-12",
                          param, ctx)
            if len(seeds) + last - first + 1 > self.MAX:
                self.fail(f"'{value}' names more than {self.MAX} seeds; give fewer", param, ctx)
            seeds.extend(range(first, last + 1))
        return seeds


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--n", "n", type=int, default=None, help="Number of samples [default: 1000, or one per --cond image].")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output file: .npy or .csv for points and series (series .npy is [N, length, features]); a .png grid, .npz or .npy for images.")
@click.option("--seed", type=int, default=None, help="Seed of the latents [default: 0].")
@click.option("--truncation", type=float, default=None, help="Redraw latent entries beyond this |z| (fidelity over diversity).")
@click.option("--label", default=None, help="Class-conditional runs: the class to draw (name or index) "
              "[default: every class in turn, one column each].")
@click.option("--cond", "cond_path", type=click.Path(path_type=Path), default=None,
              help="Image-conditional runs: source images to translate (folder, .npy/.npz or IDX) "
                   "[default: the run's held-out sources].")
@click.option("--seeds", type=_SeedList(), default=None, metavar="LIST",
              help="One sample per seed, each from its own seed, so a seed's image never depends on the rest of the "
                   "list (as StyleGAN2-ADA's generate.py): ranges and commas, e.g. 0-35 or 1,5,9-12; instead of --n "
                   "and --seed.")
@click.option("--scale", type=click.IntRange(min=1), default=None, metavar="K",
              help="Images: enlarge each tile of a .png grid K times, pixel for pixel; 1 = the images' own size "
                   "[default: small images to tiles of at least 64 px, the grid at most 1024 px wide].")
def sample(run_dir, n, out, seed, truncation, label, cond_path, seeds, scale) -> None:
    """Write N samples (or one per --seeds seed) from a trained (or interrupted) run."""
    from ganforge.render.pictures import write_samples
    from ganforge.rundir.run import Run

    _check_truncation(truncation)
    if seeds is not None and (n is not None or seed is not None):
        raise UsageError("--seeds draws one sample per seed; give it without --n and --seed")
    run = Run(run_dir)
    cond = None
    if cond_path is not None:
        cond = run.domain.read_conditions(run, cond_path)
        n = len(seeds) if seeds is not None else n or len(cond)
        if n > len(cond):
            raise UsageError(f"{n} samples are more than the {len(cond)} --cond images; give at most {len(cond)} "
                             "(--n or --seeds)")
    if seeds is not None:
        samples = run.sample_seeds(seeds, truncation=truncation, labels=label, cond=cond)
    else:
        samples = run.sample(1000 if n is None else n, seed=seed or 0, truncation=truncation, labels=label, cond=cond)
    columns = int(run.net_args["n_classes"]) if run.task == "class" and label is None else None
    with output_errors(out):
        write_samples(run.domain, samples, out, columns=columns, scale=scale)
    _say_checkpoint(run)
    _err(f"wrote {len(samples)} samples to {out}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output file: .npy/.csv rows for points; a .png grid (one row per pair) or .npz for images.")
@click.option("--pairs", type=int, default=4, show_default=True, help="Number of paths, each between two random latents.")
@click.option("--steps", type=int, default=8, show_default=True, help="Points per path, both ends included.")
@click.option("--mode", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True,
              help="Great-circle (slerp) or straight-line (lerp) path in latent space.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--truncation", type=float, default=None, help="Redraw endpoint latent entries beyond this |z|.")
def interpolate(run_dir, out, pairs, steps, mode, seed, truncation) -> None:
    """Walk the latent space between pairs of random latents and write what G makes along the way."""
    from ganforge.rundir.run import Run

    _check_truncation(truncation)
    run = Run(run_dir)
    samples = run.interpolate(pairs, steps, mode, seed, truncation)
    with output_errors(out):
        run.domain.save_samples(samples, out, columns=steps)
    _say_checkpoint(run)
    _err(f"wrote {pairs} {mode} paths of {steps} samples to {out}")


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--n", "n", type=int, default=2500, show_default=True, help="Number of generated samples to score.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--features", default=None, help="Images: also FID, KID and precision/recall on this extractor's "
              "features (digits-cnn, inception or inception-fp32).")
@click.option("--protocol", type=click.Choice(["fast", "full"]), default=None,
              help="Series and tables: 'full' is the papers' protocol (TimeGAN's 10 repeats, minutes; gradient-boosted "
                   "detection), 'fast' costs seconds [default: the run's data.eval_protocol, fast unless set].")
def evaluate(run_dir, n, seed, as_json, features, protocol) -> None:
    """Score a run's generator against its data (mode coverage, distances, precision/recall)."""
    from ganforge.rundir.run import Run

    if n < 10:
        raise UsageError(f"--n must be >= 10 for a meaningful score, got {n}")
    run = Run(run_dir)
    metrics = run.evaluate(n, seed, features=features, protocol=protocol)
    _say_checkpoint(run)
    if as_json:
        click.echo(json.dumps(_jsonable({**metrics, "checkpoint_step": run.checkpoint_step})))
    else:
        click.echo(_score_lines(metrics))


@cli.command()
@click.argument("a")
@click.argument("b")
@click.option("--features", default="inception", show_default=True,
              help="Feature network: inception (the TF FID Inception-v3; any image size; bf16 on a CPU with native "
                   "bf16), inception-fp32 (the same in float32 everywhere) or digits-cnn (28x28 gray digits).")
@click.option("--n", "n", type=int, default=None, help="Images a side: a run draws N samples [default: as many as the "
              "other side holds, at most 10,000]; a folder or file holding more uses a fixed random N [default: all].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of a run's latents and of KID's subsets.")
@click.option("--batch", type=int, default=None, help="Images per forward pass of the feature network "
              "[default: its own, inception 32].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def fid(a, b, features, n, seed, batch, as_json) -> None:
    """FID, KID and precision/recall/density/coverage of the images A against the images B.

    A and B: an image folder, an .npy/.npz or IDX file, a built-in set (mnist) or a run directory
    (N samples from its generator). Precision is the share of A on B's manifold, recall the share
    of B on A's. The features of a folder or file are cached by content (GANFORGE_CACHE).

    \b
    ganforge fid runs/00003-mnist mnist --features digits-cnn
    ganforge fid generated/ real/ --json
    """
    from ganforge.rundir.compare import compare, format_comparison

    result = compare(a, b, features=features, n=n, seed=seed, batch=batch)
    click.echo(json.dumps(_jsonable(result)) if as_json else format_comparison(result))


@cli.command()
def datasets() -> None:
    """List the built-in data sets."""
    from ganforge.domains import all_builtin

    sets = all_builtin()
    width = max(map(len, sets), default=0)
    for name, (domain, text) in sets.items():
        click.echo(f"{name:<{width}}  {domain:<7} {text}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Images: a .png figure (or .npz/.npy rows); points: .npy/.csv rows: the group means, the result, "
                   "the neighbours.")
@click.option("--expr", default=None, metavar="EXPR",
              help='Groups joined by + and -: sample indices of the seeded batch ("3,7,9 - 1,4 + 12" = mean(z3, z7, z9) '
                   '- mean(z1, z4) + z12) or classes a classifier sees in the samples ("class:7 - class:1 + class:4"). '
                   "Without --expr: write the numbered batch to pick indices from.")
@click.option("--n", "n", type=int, default=64, show_default=True, help="Size of the seeded batch that indices point into.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--truncation", type=float, default=None, help="Redraw latent entries beyond this |z| (batch and pool).")
@click.option("--neighbours", type=int, default=8, show_default=True, help="Samples of the result plus small noise.")
@click.option("--noise", type=float, default=0.25, show_default=True, help="Std of the neighbours' Gaussian noise.")
@click.option("--pool", type=int, default=2000, show_default=True,
              help="class: groups: random latents whose samples are classified, then averaged per class.")
@click.option("--classifier", default="digits-cnn", show_default=True, help="class: groups: the classifier (28x28 gray digits).")
@click.option("--json", "as_json", is_flag=True, help="Print the groups and the result vector as one JSON object.")
def arithmetic(run_dir, out, expr, n, seed, truncation, neighbours, noise, pool, classifier, as_json) -> None:
    """Latent vector arithmetic: add and subtract mean latents of sample groups, and draw the result.

    \b
    1. ganforge arithmetic RUN --out batch.png              the numbered batch (--n 64, --seed 0)
    2. ganforge arithmetic RUN --out result.png --expr "3,7,9 - 1,4 + 12"
    """
    from ganforge.render.pictures import write_arithmetic, write_candidates
    from ganforge.rundir.run import Run

    _check_truncation(truncation)
    run = Run(run_dir)
    if expr is None:
        if as_json:
            raise UsageError("--json prints the result of an --expr; give --expr, or drop --json to write the batch")
        with output_errors(out):
            write_candidates(run.domain, run.sample(n, seed=seed, truncation=truncation), out)
        _err(f"wrote the numbered batch of {n} samples (seed {seed}) to {out}; now name indices with --expr")
        return
    result = run.arithmetic(expr, n, seed, truncation, neighbours, noise, pool, classifier)
    with output_errors(out):
        write_arithmetic(run.domain, result, out)
    summary = result.to_dict()
    _err(f"wrote {summary['expr']} (result norm {summary['norm']:.2f}) to {out}")
    if as_json:
        click.echo(json.dumps(summary))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="GIF to write (default RUN_DIR/progress.gif).")
@click.option("--frame-ms", type=int, default=200, show_default=True, help="Milliseconds per frame.")
@click.option("--hold-ms", type=int, default=2000, show_default=True, help="Milliseconds the last frame is held.")
def gif(run_dir, out, frame_ms, hold_ms) -> None:
    """Rebuild the animated GIF of a run's fixed latents across training from RUN_DIR/progress/."""
    from ganforge.render.pictures import write_progress_gif
    from ganforge.rundir.run import Run

    run = Run(run_dir)  # a clear error for a folder that is not a run
    with output_errors(out or run.path / "progress.gif"):
        path, frames = write_progress_gif(run.path, out, frame_ms, hold_ms)
    _err(f"wrote {frames} frames to {path}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--compare", "compare", multiple=True, type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Another run whose curves are drawn on the same axes, named by its folder (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="HTML file to write (default RUN_DIR/report.html, RUN_DIR/compare.html with --compare).")
@click.option("--draw", is_flag=True, help="Also draw samples from each run's newest checkpoint (loads the networks).")
def report(run_dir, compare, out, draw) -> None:
    """Write a self-contained HTML page of a run: the game's curves, metrics, samples, warnings, config.

    \b
    ganforge report runs/ns                                          # runs/ns/report.html
    ganforge report runs/ns --compare runs/minimax --compare runs/wgan --out game.html
    """
    from ganforge.rundir.report import report as write_report

    with output_errors(out or Path(run_dir) / "report.html"):
        path = write_report(run_dir, out=out, compare=compare, draw=draw)
    _err(f"wrote {path}")


@cli.command(name="runs")
@click.argument("folder", type=click.Path(path_type=Path), default="runs", required=False)
@click.option("--sort", "sort_key", default=None, metavar="KEY",
              help="Sort by a column (name, loss, steps, status, train, eval, ...) or a metric (modes, "
                   "energy_distance, ...) [default: name].")
@click.option("--asc/--desc", "ascending", default=None,
              help="Sort direction [default: text ascending; scores descending, lower-is-better ones "
                   "(distances, KL, FID, losses, time) ascending].")
@click.option("--columns", default=None, metavar="A,B,C", help="The metric columns of the table and CSV "
              "[default: each domain's headline scores, then the most common others, as many as fit the terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print every row with all its metrics as one JSON array.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: the fixed columns, then the metric columns.")
def runs_command(folder, sort_key, ascending, columns, as_json, as_csv) -> None:
    """List the runs under FOLDER (default runs/), one row each: data, loss, steps, status, training and final
    evaluation time, and the final scores (each domain's headline scores first).

    \b
    ganforge runs                                   # runs/
    ganforge runs sweeps --sort reverse_kl          # lower is better: ascending
    ganforge runs --columns modes,hq_fraction --csv > runs.csv
    """
    import shutil

    from ganforge.rundir.runs import default_columns, list_runs, metric_keys, parse_columns, sort_rows, table, to_csv

    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    rows = list_runs(folder)
    if sort_key is not None:
        rows = sort_rows(rows, sort_key, ascending)
    elif ascending is not None:
        rows = sort_rows(rows, "name", ascending)
    if columns is not None and rows:
        chosen = parse_columns(columns, rows)
    elif as_csv:
        chosen = metric_keys(rows)
    else:
        chosen = default_columns(rows, shutil.get_terminal_size((120, 24)).columns)
    if as_json:
        click.echo(json.dumps(_jsonable(rows), indent=1))
    elif as_csv:
        click.echo(to_csv(rows, chosen), nl=False)
    elif not rows:
        click.echo(f"no runs under {folder} (a run is a folder with config.json, as 'ganforge train' writes)")
    else:
        click.echo(table(rows, chosen))


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def _score_lines(metrics: dict) -> str:
    """Scores as aligned ``name  value`` lines, nested ones (a table's columns, ML models) as ``outer.inner``."""
    def flat(values: dict, prefix: str = "") -> list[tuple[str, object]]:
        return [pair for key, value in values.items() for pair in
                (flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)])]

    pairs = flat(metrics)
    width = max((len(key) for key, _ in pairs), default=0)
    return "\n".join(f"{key:<{width}}  {_fmt(value)}" for key, value in pairs)


def _check_truncation(truncation: float | None) -> None:
    if truncation is not None and not (0 < truncation < math.inf):
        raise UsageError(f"--truncation must be a number > 0, got {truncation}; leave it out for no truncation")


def _say_checkpoint(run) -> None:
    """On stderr, which checkpoint a command used, when it is not the run's last step (a run still
    training, or one stopped early): ``Run.generator`` loads the newest one."""
    step, last = run.checkpoint_step, run.config.train.steps
    if step is not None and (step < last or run.is_training()):
        state = "the run is still training" if run.is_training() else "the run stopped there"
        _err(f"used the checkpoint of step {step} of {last} in {run.path} ({state})")


def _err(text: str) -> None:
    click.echo(text, err=True)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_jsonable(summary)))
        return
    from ganforge.domains import DOMAINS
    from ganforge.families import FAMILIES

    lines = [
        f"run        {summary['run_dir']}",
        f"data       {summary['data']} ({summary['domain']}), loss {summary['loss']}, {summary['steps']} steps "
        f"{_times(summary)} ({summary['samples_per_s']} real samples/s)",
    ]
    family = FAMILIES.get(summary.get("family", "gan"))  # summaries from before the family registry are a GAN's
    if family is not None:
        lines += family.summary_lines(summary.get("last_log", {}))
    domain = DOMAINS.get(summary.get("domain", ""))
    if domain is not None:
        lines += domain.summary_lines(summary.get("eval", {}))
    warnings = summary.get("warnings", [])
    lines.append(f"warnings   {len(warnings)}" + (f" (last: {warnings[-1]['warning']})" if warnings else ""))
    lines.append(f"files      {_run_files(Path(summary['run_dir']))}")
    lines += _next_commands(summary)
    click.echo("\n".join(lines))


def _times(summary: dict) -> str:
    """``in 19.2 s of training + 8.1 s of final evaluation``, or the total of a summary without the split."""
    if "train_seconds" in summary and "eval_seconds" in summary:
        return f"in {summary['train_seconds']:.1f} s of training + {summary['eval_seconds']:.1f} s of final evaluation"
    return f"in {summary['seconds']:.1f} s"


def _run_files(path: Path) -> str:
    """What the run directory holds, as listed on disk: files, then folders with their file counts."""
    try:
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        return f"(cannot list {path}: {exc.strerror})"
    files = [p.name for p in entries if not p.is_dir()]
    folders = [f"{p.name}/ ({sum(1 for f in p.rglob('*') if f.is_file())} files)" for p in entries if p.is_dir()]
    return ", ".join(files + folders) + f" in {path}"


def _next_commands(summary: dict) -> list[str]:
    """The three commands a user runs next, with this run's path: more samples, the report, the scores."""
    import shlex

    run = shlex.quote(str(summary["run_dir"]))
    suffix = Path(summary.get("samples_file", "samples.npy")).suffix
    full = summary.get("eval", {}).get("protocol") == "fast"
    commands = [
        (f"ganforge sample {run} --n 1000 --out more{suffix}", "1,000 samples (another --seed: others)"),
        (f"ganforge report {run}", "report.html: the game's curves, the scores, the samples"),
        (f"ganforge eval {run}" + (" --protocol full" if full else ""),
         "the papers' full scoring protocol (minutes)" if full else "the scores again (--n, --features)"),
    ]
    width = max(len(command) for command, _ in commands)
    return [f"{'next' if i == 0 else '':<11}{command:<{width}}   # {why}" for i, (command, why) in enumerate(commands)]


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and turns every failure into one line and an exit code: 2 for bad
    input, 3 for a diverged run, 130 for Ctrl-C, 1 for an unexpected error (its traceback goes to a
    log file that the line names, or to the terminal with ``--debug`` or ``GANFORGE_DEBUG=1``)."""
    _DEBUG["on"] = os.environ.get("GANFORGE_DEBUG", "") not in ("", "0")
    try:
        cli.main(args=argv, prog_name="ganforge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort as exc:  # click's name for Ctrl-C, and for an EOFError from anywhere
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, KeyboardInterrupt):
            return _unexpected(cause)
        return _interrupted(cause)
    except click.UsageError as exc:  # unknown option, missing argument, bad type
        hint = f" (see 'ganforge {exc.ctx.info_name} --help')" if exc.ctx and exc.ctx.info_name != "ganforge" else " (see 'ganforge --help')"
        _err(f"ganforge: error: {exc.format_message()}{hint}")
        return EXIT_USAGE
    except UsageError as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank raises the same error: say it once
            _err(f"ganforge: error: {exc}")
        return EXIT_USAGE
    except TrainingDiverged as exc:
        _err(f"ganforge: training diverged: {exc}")
        return EXIT_DIVERGED
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except Exception as exc:  # the last resort: a bug, or a failure nothing above expected
        return _unexpected(exc)
    return 0


EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130
_DEBUG = {"on": False}
ERROR_LOG = "error.log"


def _interrupted(exc: BaseException | None) -> int:
    run_dir = getattr(exc, "ganforge_run_dir", None)  # set by the training session once its run exists
    _err("ganforge: interrupted" + (f"; continue with 'ganforge train --resume {run_dir}'" if run_dir else ""))
    return EXIT_INTERRUPTED


def _unexpected(exc: BaseException) -> int:
    """One line naming what failed, where in ganforge, and where its full traceback was written
    (``RUN_DIR/error.log`` for a training run, else ``last-error.log`` in ganforge's cache folder)."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    what = f"{type(exc).__name__}{': ' + first if first else ''}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f"{os.sep}ganforge{os.sep}" in f.filename]
    where = f" in {Path(frames[-1].filename).name}:{frames[-1].lineno} ({frames[-1].name})" if frames else ""
    if _DEBUG["on"]:
        _err(text.rstrip())
        _err(f"ganforge: unexpected error{where}: {what}")
        return EXIT_UNEXPECTED
    log = _write_error_log(text, getattr(exc, "ganforge_run_dir", None))
    said = f"the full traceback is in {log}" if log else "no log could be written; run again with --debug to see it"
    _err(f"ganforge: unexpected error{where}: {what}; {said} (please report it)")
    return EXIT_UNEXPECTED


def _write_error_log(text: str, run_dir: str | None) -> Path | None:
    """Write ``text`` to the run's ``error.log``, else to ``$GANFORGE_CACHE/last-error.log`` (default
    ``~/.cache/ganforge``); the path written, or None if neither can be written."""
    cache = os.environ.get("GANFORGE_CACHE", "")
    cache_dir = Path(cache) if cache not in ("", "off") else Path.home() / ".cache" / "ganforge"
    for path in ([Path(run_dir) / ERROR_LOG] if run_dir else []) + [cache_dir / "last-error.log"]:
        try:
            with atomic_write(path) as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return None


if __name__ == "__main__":
    sys.exit(main())
