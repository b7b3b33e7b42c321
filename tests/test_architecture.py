"""The architecture's rules, checked on the source (shared/DESIGN.md): imports run one way, with no
circle between files (imports inside functions count too), and every module is importable by its
dotted path, with no public name hiding a module."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import ganforge

SRC = Path(ganforge.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _target(name: str) -> str:
    """The ganforge module an imported dotted name lives in (the longest prefix that is a module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str) -> set[str]:
    """Every ganforge module ``module`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {_target(a.name) for a in node.names if a.name.startswith("ganforge")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ganforge") and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else _target(node.module))
    found.discard(module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_no_import_circles():
    assert _cycles() == []


def test_the_check_sees_a_circle():
    """The cycle finder itself: a circle planted in a copy of the graph is found."""
    saved = dict(GRAPH)
    try:
        GRAPH["ganforge.errors"] = {"ganforge.config"}  # config imports errors: now a circle
        assert ["ganforge.config", "ganforge.errors"] in _cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


# Imports point down the layers: cli -> rundir -> families -> engine / nets / losses; domains and
# metrics are leaves used by rundir and families; render draws for rundir (its plots for domains too).
FORBIDDEN = {
    "ganforge.engine": ("ganforge.domains", "ganforge.families", "ganforge.rundir", "ganforge.render",
                        "ganforge.cli", "ganforge.tabular_gan"),
    "ganforge.nets": ("ganforge.engine", "ganforge.domains", "ganforge.families", "ganforge.rundir",
                      "ganforge.render", "ganforge.metrics", "ganforge.cli"),
    "ganforge.losses": ("ganforge.engine", "ganforge.nets", "ganforge.domains", "ganforge.families",
                        "ganforge.rundir", "ganforge.render", "ganforge.cli"),
    "ganforge.families": ("ganforge.rundir", "ganforge.render", "ganforge.cli"),
    "ganforge.domains": ("ganforge.engine", "ganforge.families", "ganforge.rundir", "ganforge.cli",
                         "ganforge.render.pictures", "ganforge.render.latent", "ganforge.render.tracking"),
    "ganforge.metrics": ("ganforge.engine", "ganforge.nets", "ganforge.domains", "ganforge.families",
                         "ganforge.rundir", "ganforge.render", "ganforge.cli"),
    "ganforge.render": ("ganforge.engine", "ganforge.families", "ganforge.rundir", "ganforge.cli"),
    "ganforge.rundir": ("ganforge.cli",),
}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_down(layer):
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() if _within(module, layer)
                   for target in targets for banned in FORBIDDEN[layer] if _within(target, banned))
    assert wrong == []


def test_the_rules_cover_every_module():
    """Every module is in a layer the rules name, or one of the top-level files that sit above them."""
    top = {"ganforge", "ganforge.__main__", "ganforge.cli", "ganforge.config", "ganforge.errors", "ganforge.io",
           "ganforge.registry", "ganforge.tabular_gan", "ganforge.progress"}
    loose = [m for m in MODULES if m not in top and not any(_within(m, layer) for layer in FORBIDDEN)]
    assert loose == []


def _submodules() -> list[str]:
    # __main__ runs the command line when imported
    return [info.name for info in pkgutil.walk_packages(ganforge.__path__, "ganforge.") if info.name != "ganforge.__main__"]


def test_every_module_imports_by_its_dotted_path():
    assert set(_submodules()) == set(MODULES) - {"ganforge", "ganforge.__main__"}
    for name in _submodules():
        importlib.import_module(name)


def test_no_public_name_hides_a_module():
    """``import ganforge.X.Y`` and ``from ganforge.X import Y`` must name the same module: a package's
    attribute with the name of one of its modules must be that module."""
    for name in _submodules():
        parent, _, child = name.rpartition(".")
        value = getattr(importlib.import_module(parent), child, None)
        assert value is importlib.import_module(name), f"{parent}.{child} is {value!r}, not the module"
