"""The layout's promises, checked on the source: short modules with true ``__all__`` lists, the
request path free of web types, and a measurement side that uses only public pieces."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import pipeserve_nb

PACKAGE = Path(pipeserve_nb.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")
MAX_LINES = 250


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """``(absolute module, names)`` of every ``from ... import ...`` in ``path``."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


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


REQUEST_PATH = ["request", "formation", "policy", "batch_queue", "batch_loop", "worker", "admission", "engine", "stats"]


@pytest.mark.parametrize("name", REQUEST_PATH)
def test_the_request_path_behind_the_app_knows_nothing_of_http(name: str) -> None:
    for target, _ in imports_of(PACKAGE / "_server" / f"{name}.py"):
        assert not target.startswith(("starlette", "uvicorn", "httpx")), f"{name} imports {target}"
        assert target not in ("pipeserve_nb._server.app", "pipeserve_nb._server.errors"), f"{name} imports {target}"


CLIENT_SIDE = sorted((PACKAGE / "_measure").glob("*.py")) + sorted((PACKAGE / "_live").glob("*.py"))


@pytest.mark.parametrize("path", CLIENT_SIDE, ids=module_name)
def test_the_measurement_side_uses_only_public_pieces_of_the_rest(path: Path) -> None:
    """The load generator and the live view are clients of the server: public pieces, the HTTP
    contract, the shared percentile and client helpers, and each other."""
    allowed = {
        *("pipeserve_nb._exceptions", "pipeserve_nb._options", "pipeserve_nb._percentile", "pipeserve_nb._wire"),
        "pipeserve_nb._client",
    }
    for target, names in imports_of(path):
        if not target.startswith("pipeserve_nb.") or target.startswith(("pipeserve_nb._measure", "pipeserve_nb._live")):
            continue
        if target in allowed:
            continue
        private = [n for n in names if n not in pipeserve_nb.__all__]
        assert not private, f"{module_name(path)} imports private {private} from {target}"


def test_the_models_know_nothing_of_the_server_or_the_measurements() -> None:
    for path in sorted((PACKAGE / "_models").glob("*.py")):
        for target, _ in imports_of(path):
            assert not target.startswith(("pipeserve_nb._server", "pipeserve_nb._measure")), (path.name, target)
