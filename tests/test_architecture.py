"""The layout's promises, checked on the source: which package and which layer may import which, modules
that list what they offer, and a request path free of web types. ``docs/architecture.md`` states these
rules in words; this file is their definition."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import pipeserve_nb

PACKAGE = Path(pipeserve_nb.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")
MAX_LINES = 400
"""A module is read in one sitting: a few hundred lines at most."""

SHARED = {"_exceptions", "_options", "_wire", "_percentile", "_client", "_nested"}
"""Small modules every package may import: the exception tree, how an option is declared, the HTTP
contract, the percentile definition, the client helpers, the opt-in nested loops."""

PACKAGES: dict[str, set[str]] = {
    "_models": set(),
    "_server": {"_models"},
    "_live": set(),
    "_measure": {"_live", "_server", "_models"},
    "_ray": {"_server", "_models", "_live"},
    "_teaching": {"_server", "_models", "_measure"},
}
"""Which of our packages each package may import at module level (besides itself and ``SHARED``).
``__init__``, ``asgi`` and ``__main__`` are entry points and may import anything."""

PUBLIC_ONLY: dict[str, set[str]] = {"_measure": {"_server", "_models"}}
"""Packages that may take only names of the public API (``pipeserve_nb.__all__``) from the packages
named: the measurement toolkit is a client of the server, as a user's notebook is (the live view is
its sibling, another client)."""

LAYERS = ["observe", "core", "edge", "run"]
"""``_server``'s layers, bottom up: each may import the layers below it, never one above."""

HTTP = ("starlette", "uvicorn", "httpx", "httptools")
WEB_FREE = {"observe", "core"}
"""Layers that import no web library: the request path behind the app knows nothing of HTTP."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(source: str, module: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """``(absolute module, names)`` of every import that runs when the module is imported (also under
    ``if``/``try``); imports inside functions run when called, and those under ``if TYPE_CHECKING:``
    never run: neither is counted."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found: list[tuple[str, list[str]]] = []
    statements = list(ast.parse(source).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            statements += node.orelse
        elif isinstance(node, (ast.If, ast.Try)):
            statements += [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            statements += [s for h in getattr(node, "handlers", []) for s in h.body]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            if node.level and not node.module:  # `from . import registry`: the names are modules
                found += [(f"{target}.{name}", []) for name in names]
            else:
                found.append((target, names))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


def _split(module: str) -> tuple[str, str | None]:
    """``(package, layer)`` of a module of ours: ``pipeserve_nb._server.core.engine`` -> ``("_server", "core")``."""
    parts = module.split(".")
    package = parts[1] if len(parts) > 1 else ""
    layer = parts[2] if package == "_server" and len(parts) > 2 and parts[2] in LAYERS else None
    return package, layer


def violations(module: str, imports: list[tuple[str, list[str]]]) -> list[str]:
    """Every import of ``module`` that breaks a rule above, in words."""
    package, layer = _split(module)
    if package not in PACKAGES:
        return []
    found = []
    for target, names in imports:
        if layer in WEB_FREE and target.split(".")[0] in HTTP:
            found.append(f"{module} imports {target}: the {layer} layer knows nothing of HTTP")
        if not target.startswith("pipeserve_nb.") and target != "pipeserve_nb":
            continue
        other, other_layer = _split(target)
        if other in SHARED or target == "pipeserve_nb":
            continue
        if other != package and other not in PACKAGES[package]:
            found.append(f"{module} imports {target}: {package} may import only {sorted(PACKAGES[package])}")
        elif other in PUBLIC_ONLY.get(package, set()):
            private = [n for n in names if n not in pipeserve_nb.__all__]
            if private or not names:
                found.append(f"{module} takes private {private or [target]} from {target}: public names only")
        above = layer is not None and other_layer is not None and LAYERS.index(other_layer) > LAYERS.index(layer)
        if package == "_server" and other == "_server" and above:
            found.append(f"{module} imports {target}: the {layer} layer is below {other_layer}")
    return found


def test_the_packages_import_each_other_without_a_cycle() -> None:
    """The allowed arrows between packages form no cycle: each package can be read knowing only those below it."""
    placed: list[str] = []
    while len(placed) < len(PACKAGES):
        ready = [p for p, allowed in PACKAGES.items() if p not in placed and allowed <= set(placed)]
        assert ready, f"a cycle among {sorted(set(PACKAGES) - set(placed))}"
        placed += sorted(ready)
    assert placed.index("_models") < placed.index("_server") < placed.index("_ray")


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_every_import_follows_the_package_and_layer_rules(path: Path) -> None:
    name = module_name(path)
    imports = module_level_imports(path.read_text(), name, path.name == "__init__.py")
    assert violations(name, imports) == []


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("pipeserve_nb._server.core.engine", "from ..edge.app import create_app", "core layer is below edge"),
        ("pipeserve_nb._server.observe.stats", "from ..core.request import clock", "observe layer is below core"),
        ("pipeserve_nb._server.core.batch_loop", "import starlette.responses", "knows nothing of HTTP"),
        ("pipeserve_nb._server.run.handle", "from ..._live.dashboard import Dashboard", "_server may import only"),
        ("pipeserve_nb._server.run.cli", "from ..._ray.mapping import RayPlacement", "_server may import only"),
        ("pipeserve_nb._models.loading", "from .._server.core.config import ServerConfig", "_models may import only"),
        ("pipeserve_nb._measure.sweep", "from .._server.core.engine import Engine", "public names only"),
        ("pipeserve_nb._server.core.engine", "if DEBUG:\n    from ..run.serve import serve", "below run"),
    ],
)
def test_the_rules_catch_an_arrow_the_wrong_way(module: str, source: str, broken: str) -> None:
    """Each rule fails on the upward arrow it forbids (and so would fail on a new one in the code)."""
    found = violations(module, module_level_imports(source, module, is_package=False))
    assert any(broken in v for v in found), found


def test_a_lazy_or_type_only_import_is_not_an_arrow() -> None:
    lazy = "def demo():\n    from ..._teaching.demo import run_demo\n"
    assert module_level_imports(lazy, "pipeserve_nb._server.run.cli", is_package=False) == []
    typed = "if TYPE_CHECKING:\n    from ..._live.dashboard import Dashboard\n"
    assert module_level_imports(typed, "pipeserve_nb._server.run.handle", is_package=False) == []


def test_every_layer_of_the_server_is_a_folder() -> None:
    folders = sorted(p.name for p in (PACKAGE / "_server").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(LAYERS)
    loose = sorted(p.name for p in (PACKAGE / "_server").glob("*.py") if p.name != "__init__.py")
    assert loose == [], "every module of the server belongs to a layer"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_each_module_is_short_enough_to_read_in_one_sitting(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "__init__.py"], ids=module_name)
def test_each_module_lists_exactly_what_it_defines_for_others(path: Path) -> None:
    module = importlib.import_module(module_name(path))
    listed = getattr(module, "__all__", None)
    assert listed is not None, "a private module says what it offers in __all__"
    tree = ast.parse(path.read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    assigned = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign)) for t in _targets(n)}
    for name in listed:
        assert name in defined | assigned, f"{name} is in __all__ but not defined here"
    public = {name for name in defined if not name.startswith("_")}
    assert public <= set(listed), f"defined here but missing from __all__: {sorted(public - set(listed))}"


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.Name]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t for t in targets if isinstance(t, ast.Name)]


BENCHMARKS = sorted((PACKAGE.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_the_benchmarks_use_only_the_public_api(path: Path) -> None:
    """A benchmark measures what a user can run: it imports ``pipeserve_nb`` and its public names only."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeserve_nb"):
            assert node.module == "pipeserve_nb", f"{path.name} imports {node.module}"
            assert {a.name for a in node.names} <= set(pipeserve_nb.__all__), f"{path.name}: private names"
        elif isinstance(node, ast.Import):
            assert all(not a.name.startswith("pipeserve_nb.") for a in node.names), path.name
