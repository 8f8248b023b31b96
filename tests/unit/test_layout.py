"""The layout of ARCHITECTURE.md holds: which folder may import which, no import cycle
when modules load, and a short top level."""

from __future__ import annotations

import ast
from pathlib import Path

import liteq

ROOT = Path(liteq.__file__).parent

#: Layer -> the layers its modules may import (ARCHITECTURE.md, "Import rule").
ALLOWED = {
    "support": {"support"},
    "core": {"core", "support"},
    "brokers": {"brokers", "core", "support"},
    "backends": {"backends", "brokers", "core", "support"},
    "process": {"process", "core", "support"},
    "ops": {"ops", "brokers", "core", "support"},
    "face": {"brokers"},
}
#: Imports made at call time across the rule, each commented where it is made.
EXCEPTIONS = {
    ("liteq.broker", "liteq.brokers.registry"),  # get_broker() builds the default broker
    # SqliteBroker.default_result_backend(): results kept in the broker's own file
    ("liteq.brokers.sqlite.broker", "liteq.results.backends.sqlite"),
}
ENTRY_POINTS = {"liteq", "liteq.__main__", "liteq.cli", "liteq.pool"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("liteq", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    if module in ("liteq.store", "liteq.redis_compat"):
        return "face"
    if len(parts) > 2 and parts[1] in ("results", "rate_limits") and parts[2] == "backends":
        return "backends"
    if len(parts) > 1 and parts[1] in ("support", "brokers", "process", "ops"):
        return parts[1]
    return "core"


def _imports(modules: dict[str, Path]) -> list[tuple[str, str, bool]]:
    """(importer, imported liteq module, made when the importer loads)."""
    found = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        at_load = {id(node) for node in _load_time(tree.body)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name.startswith("liteq") and name != module:
                    found.append((module, name, id(node) in at_load))
    return found


def _load_time(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements run when the module loads (not in functions, not TYPE_CHECKING)."""
    out = []
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        if isinstance(node, (ast.If, ast.Try)):
            out += _load_time(node.body) + _load_time(node.orelse)
            for handler in getattr(node, "handlers", []):
                out += _load_time(handler.body)
        else:
            out.append(node)
    return out


def test_every_import_follows_the_rule() -> None:
    broken = []
    for importer, imported, _ in _imports(_modules()):
        if importer in ENTRY_POINTS or (importer, imported) in EXCEPTIONS:
            continue
        mine, theirs = _layer(importer), _layer(imported)
        if theirs not in ALLOWED[mine]:
            broken.append(f"{importer} ({mine}) -> {imported} ({theirs})")
        elif mine == theirs == "brokers":
            own, other = importer.split(".")[2], imported.split(".")[2]
            # the modules of brokers/ itself (registry, inspect, failure) are shared
            folders = (ROOT / "brokers" / own).is_dir() and (ROOT / "brokers" / other).is_dir()
            if own != other and folders:
                broken.append(f"{importer} -> {imported}: one broker imports another")
    assert broken == []


def test_no_import_cycle_when_modules_load() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported, at_load in _imports(_modules()):
        if at_load:
            graph.setdefault(importer, set()).add(imported)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and not seen.add(nxt)
                               and reaches(nxt, goal, seen)):
                return True
        return False

    assert [m for m in graph if reaches(m, m, set())] == []


def test_the_top_level_stays_short() -> None:
    assert len(list(ROOT.glob("*.py"))) <= 22
