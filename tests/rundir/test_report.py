"""``ganforge report``: a self-contained HTML page of a run (or of several compared), from whatever
the run directory holds; opened in headless Chromium when one is installed."""

import base64
import json
import io
import os
import re
import shutil
import subprocess

import pytest

import ganforge
from ganforge.cli import main
from ganforge.rundir.report import read_run

TINY = {"model.g_width": 32, "model.d_width": 32, "model.g_depth": 2, "model.d_depth": 2, "train.batch": 64,
        "train.steps": 40, "train.log_every": 5, "train.ckpt_every": 20, "train.eval_every": 20}
PLOT_SECTIONS = ("losses", "verdicts", "accuracy", "confusion", "gradients", "diversity", "evaluation", "samples")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny ring8 runs: non-saturating, least-squares, and one whose G barely learns (lr_g
    1e-9), so its samples stay collapsed and the monitor warns."""
    root = tmp_path_factory.mktemp("report-runs")
    settings = {"ns": {}, "lsgan": {"train.loss": "lsgan"}, "frozen": {"train.lr_g": 1e-9}}
    for name, extra in settings.items():
        ganforge.train("ring8", out=root / name, settings={**TINY, **extra})
    return {name: root / name for name in settings}


@pytest.fixture(scope="module")
def frozen_page(runs):
    path = ganforge.report(runs["frozen"], draw=True)
    return path, path.read_text(encoding="utf-8")


def section(page: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert match, f"no section {key}"
    return match.group(1)


def test_page_has_every_plot_embedded_and_nothing_remote(frozen_page, runs):
    from PIL import Image

    path, page = frozen_page
    assert path == runs["frozen"] / "report.html"
    for key in PLOT_SECTIONS:
        assert '<img alt=' in section(page, key) and "data:image/png;base64," in section(page, key), key
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith(("data:image/png;base64,", "data:image/gif;base64,")), src[:60]
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
            image.verify()  # every embedded picture decodes
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert "<script" not in page and "<link" not in page
    assert "drawn now from step-00000040" in section(page, "samples")
    config = section(page, "config")
    assert "train.lr_g" in config and "1e-09" in config and "model.g_width" in config
    warnings = section(page, "warnings")
    logged = read_run(runs["frozen"]).warnings
    assert logged and "sample diversity collapsed" in warnings
    for step, text in logged:
        assert f'<td class="num">{step}</td>' in warnings
    assert "finished at step 40" in page and "TP " in section(page, "confusion")
    assert "modes" in section(page, "summary")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_compare_overlays_runs_named_by_folder(runs, tmp_path, capsys):
    out = tmp_path / "game.html"
    code = main(["report", str(runs["ns"]), "--compare", str(runs["lsgan"]), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    assert "<h1>ganforge report: ns vs lsgan</h1>" in page
    heads = re.findall(r"<th>(\w+)</th>", section(page, "config"))
    assert "ns" in heads and "lsgan" in heads
    assert re.search(r"settings that differ \(highlighted\): [^<]*train\.loss", page)
    assert not (runs["ns"] / "report.html").exists()  # --out chose the file
    assert out.stat().st_mode & 0o044 == 0o044 & ~current_umask()  # readable as a file open() makes
    assert main(["report", str(runs["ns"]), "--compare", str(runs["lsgan"])]) == 0
    assert (runs["ns"] / "compare.html").is_file() and not (runs["ns"] / "report.html").exists()
    for key in PLOT_SECTIONS:
        assert "data:image/png;base64," in section(page, key), key


def test_interrupted_run_reports_what_exists(runs, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(runs["ns"], run, ignore=shutil.ignore_patterns("checkpoints", "report.html"))
    (run / "summary.json").unlink()
    (run / "samples.png").unlink()
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    cut = lines[-1][: len(lines[-1]) // 2]  # a record cut short by a kill
    (run / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n" + cut, encoding="utf-8")

    records = read_run(run)
    assert records.summary is None and records.bad_lines == 1
    assert len(records.logs) + len(records.evals) == len(lines) - 1
    page = ganforge.report(run).read_text(encoding="utf-8")
    assert "no summary.json (still training, or stopped before the end)" in page
    assert "1 unreadable line(s) of metrics.jsonl skipped" in page
    for key in ("losses", "verdicts", "confusion", "gradients"):
        assert "data:image/png;base64," in section(page, key), key
    assert "No summary.json yet" in section(page, "summary")


@pytest.mark.parametrize("case", ["empty folder", "missing folder", "folder of other files"])
def test_not_a_run_is_one_error_line_and_exit_2(tmp_path, capsys, case):
    target = tmp_path / "missing" if case == "missing folder" else tmp_path
    if case == "folder of other files":
        (tmp_path / "metrics.jsonl").write_text("{}\n", encoding="utf-8")
    code = main(["report", str(target)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("ganforge: error: ") and str(target) in lines[0] and "ganforge train" in lines[0]
    assert "Traceback" not in err and not (tmp_path / "report.html").exists()


def test_out_is_written_atomically(runs, tmp_path, monkeypatch):
    """A write that fails half-way leaves the previous report as it was, and no temporary file."""
    out = tmp_path / "r.html"
    out.write_text("previous", encoding="utf-8")
    # a lone surrogate cannot be encoded: the write fails after it has started
    from ganforge.rundir import report as module
    monkeypatch.setattr(module, "render", lambda runs, draw=False: "<html>" + "x" * 100_000 + "\ud800")
    with pytest.raises(UnicodeEncodeError):
        ganforge.report(runs["ns"], out=out)
    assert out.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def _browser() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


# Appended to a copy of the page (the report itself has no script): marks the body once every
# picture has loaded and decoded, so the dumped DOM says whether each one rendered.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = images.filter(i => i.complete && i.naturalWidth > 0);
  document.body.setAttribute("data-images", ok.length + "/" + images.length);
});
</script>"""


@pytest.mark.skipif(_browser() is None, reason="no Chromium installed (apt-get install chromium) to open the page in")
def test_page_renders_in_headless_chromium(frozen_page, tmp_path):
    path, page = frozen_page
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    flags = [_browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-extensions",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=60)
    n_images = page.count("<img ")
    marker = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert marker, dom.stderr[-2000:]
    assert marker.groups() == (str(n_images), str(n_images)), "some pictures did not render"
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line or "Failed to load" in line]
    assert not console, console

    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,4000", path.as_uri()],
                   capture_output=True, text=True, timeout=60)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        lo, hi = image.convert("L").getextrema()
        assert lo < 100 and hi > 200  # text and plots on a light page, not a blank one


def test_a_summary_with_damaged_warnings_still_reports(runs, tmp_path):
    """An edited summary.json whose warnings are not a list (found by benchmarks/faults.py) is read as
    having none: the page is written from the log."""
    run = tmp_path / "edited"
    shutil.copytree(runs["ns"], run)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    (run / "summary.json").write_text(json.dumps({**summary, "warnings": 5}), encoding="utf-8")
    assert "<html" in ganforge.report(run).read_text(encoding="utf-8")
