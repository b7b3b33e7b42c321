"""The README's pictures: a short run of each domain, generated samples next to real data.

Trains one run per domain through the Python API (``ganforge.train``) and writes
``docs/pictures/{points,images,table,series}.png``:

- points: ``ring8`` with the defaults (20,000 steps), the run's own ``samples.png``;
- images: ``digits`` with the defaults (25,000 steps of its MLP recipe), the run's ``samples.png``;
- table: ``wine`` for 2,000 steps (its default is 500: 600 passes over its 160 training rows),
  the marginals of 2,000 generated rows against the 160 training rows
  (``ganforge.render.plots.table_marginals``; the run's own picture compares with the 18 held-out rows);
- series: ``sines`` for 1,500 steps (the default is 10,000), the run's ``samples.png``; TimeGAN's
  post-hoc scores are skipped (``data.metric_repeats=0``): only the picture is wanted.

A few minutes in all on 2 cores; not a timing, so a busy machine is fine:

    nice -n 19 python benchmarks/readme_pictures.py                 # all four
    nice -n 19 python benchmarks/readme_pictures.py --only points   # one picture

Each PNG is shrunk to at most ``--width`` pixels and stored with a 128-colour palette, so the
committed files stay a few tens of KB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

import ganforge
from ganforge.render.plots import table_marginals

ROOT = Path(__file__).resolve().parents[1]
TABLE_ROWS = 2000


def run_picture(run_dir: Path, out: Path) -> None:
    """The run's own picture: generated next to real, as ``ganforge train`` drew it."""
    shutil.copyfile(run_dir / "samples.png", out)


def table_picture(run_dir: Path, out: Path) -> None:
    """Marginals of ``TABLE_ROWS`` generated rows against every training row of the table."""
    run = ganforge.load(run_dir)
    data = run.load_data()
    samples = run.sample(TABLE_ROWS, seed=0)
    table_marginals(data.meta["frame"], samples, data.meta["kinds"], f"{data.name}: {TABLE_ROWS} generated rows", out)


# picture name -> (data set, settings, how the picture is drawn from the finished run)
PICTURES: dict[str, tuple[str, dict, Callable[[Path, Path], None]]] = {
    "points": ("ring8", {}, run_picture),
    "images": ("digits", {}, run_picture),
    "table": ("wine", {"train.steps": 2000}, table_picture),
    "series": ("sines", {"train.steps": 1500, "data.metric_repeats": 0}, run_picture),
}


def shrink(path: Path, width: int) -> None:
    """At most ``width`` pixels wide, a 128-colour palette, optimised: small enough to commit."""
    from PIL import Image

    with Image.open(path) as image:
        picture = image.convert("RGB")
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.Resampling.LANCZOS)
    picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, format="PNG", optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(PICTURES), default=sorted(PICTURES))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "pictures", help="folder of the PNGs")
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--width", type=int, default=900, help="largest width of a picture in pixels")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one suits these small nets, and a "
                        "busy machine: a starved thread stalls the others)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="readme-pictures-") as scratch:
        work = args.work or Path(scratch)
        for name in args.only:
            data, settings, draw = PICTURES[name]
            started = time.perf_counter()
            summary = ganforge.train(data, out=work / name, settings=settings)
            out = args.out / f"{name}.png"
            draw(Path(summary["run_dir"]), out)
            shrink(out, args.width)
            print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}  {data}, {summary['steps']} steps, "
                  f"{time.perf_counter() - started:.0f} s, {out.stat().st_size / 1024:.0f} KB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
